"""A config.json value of the right JSON type but out of what the field takes is a one-line error naming it.

test_oci_config_types.py checks each field's JSON type; this checks the
value, where the spec gives a range (uid_t's uint32, the rlimits' uint64,
-1 as "unlimited" and nothing below it), says "MUST generate an error" (a
namespace path of another type, a limit listed twice), or where runc refuses
it (kernel.hostname beside the hostname field). A value the kernel takes but
reads otherwise is here too: uid 4294967295 is (uid_t)-1, "leave it as it
is" to setresuid(2), so the program would run as root; the cgroupsPath "/."
is the hierarchy's root. Each is refused by config.load before anything
exists, and so by the real `create`: exit 1, the line on stderr and in the
json log, no state directory, cgroup or mount left.
"""
import json
import platform
import re
import shutil

import pytest

from conftest import pyrun
from ocitools import edit, make_bundle, refused_by_create

RLIMIT = {"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 1024}
# field (a path into `spec`'s config.json, as ocitools.put takes it) -> values it must refuse
BAD = {
    "process.user.uid": [-1, 4294967295, 1 << 32],
    "process.user.gid": [-1, 4294967295],
    "process.user.additionalGids.0": [-1, 1 << 32],
    "process.user.umask": [-1, 0o1000],
    "process.oomScoreAdj": [-1001, 1001],
    "process.consoleSize.height": [-1],
    "process.consoleSize.width": [65536],
    "process.rlimits.0.soft": [-1],
    "process.rlimits.0.hard": [1 << 64],
    "process.rlimits.1.type": ["RLIMIT_NOFILE"],  # the spec's default config has one already
    "root.path": ["", "nonexistent"],
    "hostname": ["h" * 65],
    "linux.namespaces.1.path": ["/proc/self/ns/ipc", "/etc/passwd", "/proc/self/ns"],  # [1] is the network one
    "linux.sysctl": [{"kernel.hostname": "other"}],
    "linux.cgroupsPath": ["/.", "/machine/a\nb"],
    "linux.resources.memory.limit": [-2],
    "linux.resources.cpu.quota": [999],
    "linux.resources.pids.limit": [-2],
    "linux.resources.devices.0.major": [-2],
    "linux.resources.devices.0.access": [""],
}
CASES = [(path, value) for path, values in BAD.items() for value in values]


def _field(path: str) -> str:
    """How an error names the field at PATH: process.rlimits[0].soft."""
    return re.sub(r"\.(\d+)", r"[\1]", path)


@pytest.mark.parametrize("i", range(len(CASES)), ids=[f"{i}-{path}" for i, (path, _) in enumerate(CASES)])
def test_a_value_out_of_range_fails_create_naming_it(busybox, tmp_path, clean_host, i):
    from runtime.errors import PyrunError
    from runtime.oci import config

    path, value = CASES[i]
    bundle = make_bundle(str(tmp_path / "b"), busybox, ["true"], edit(path, value))
    # In-process first: a create that took the value would go on with it (the cgroup "/." is the root, all of
    # whose processes delete --force kills).
    with pytest.raises(PyrunError):
        config.load(bundle, f"values{i}")
    err = refused_by_create(bundle, f"values{i}", str(tmp_path))
    assert err.startswith(f"pyrun-oci: config.json {_field(path)}") and "expected" in err, err
    if not isinstance(value, (dict, list)):
        assert json.dumps(value).strip('"') in err, err


SECCOMP = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64", "x86"]}  # Docker's name for i386
# pyrun run's profiles are Docker's: archMap's entry for this machine becomes config.json's architectures.
PROFILES = {"architectures": SECCOMP, "archMap": {"defaultAction": "SCMP_ACT_ALLOW", "archMap": [
    {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["x86"]}]}}


def test_an_unknown_seccomp_architecture_fails_create_naming_it(busybox, tmp_path, clean_host):
    bundle = make_bundle(str(tmp_path / "b"), busybox, ["true"], edit("linux.seccomp", SECCOMP))
    err = refused_by_create(bundle, "values-arch", str(tmp_path))
    assert err.startswith("pyrun-oci: config.json linux.seccomp: architectures[1]: 'x86'"), err
    assert "expected" in err and "SCMP_ARCH_X86" in err, err


@pytest.mark.parametrize("runtime", [[], ["--runtime", "pyrun"], ["--runtime", "runc"]], ids=["default", "own", "runc"])
@pytest.mark.parametrize("field", PROFILES)
def test_pyrun_run_refuses_an_unknown_seccomp_architecture(busybox, tmp_path, clean_host, runtime, field):
    """pyrun run's --security-opt profile becomes config.json's linux.seccomp: refused as the flag's, exit 125,
    whichever runtime (the default, pyrun-oci's create in pyrun's process; pyrun's own; runc), before anything
    exists."""
    if runtime[1:] == ["runc"] and not shutil.which("runc"):
        pytest.skip("runc is not installed")
    (tmp_path / "profile.json").write_text(json.dumps(PROFILES[field]))
    r = pyrun("run", *runtime, "--rm", "--network", "none", "--security-opt", f"seccomp={tmp_path}/profile.json",
              busybox, "true")
    assert r.returncode == 125 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith("pyrun: invalid --security-opt: seccomp=") and "'x86'" in r.stderr, r.stderr
    assert "expected" in r.stderr, r.stderr


@pytest.mark.noroot
def test_an_arch_map_without_sub_architectures_is_this_machines_architecture():
    """Docker's profiles write "subArchitectures": null (test_seccomp.py loads one): it is none, not a crash."""
    from runtime.oci import engine

    profile = {"defaultAction": "SCMP_ACT_ALLOW", "archMap": [{"architecture": engine._SCMP_ARCH["x86_64"],
                                                               "subArchitectures": None}]}
    arches = engine._seccomp(profile, frozenset()).get("architectures")
    assert arches == ([engine._SCMP_ARCH[platform.machine()]] if platform.machine() in engine._SCMP_ARCH else None)
