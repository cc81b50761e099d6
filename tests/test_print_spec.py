"""pyrun run --print-spec: the flags as config.json, and three runtimes that run it alike.

An engine's translation is only right if a runtime given the config builds
the container the flags asked for. So each case runs the same probe three
ways and compares what the container's program sees: `pyrun run FLAGS`,
runc on the printed config, and pyrun-oci on the printed config. The
/etc files, which pyrun run writes in its create phase and --print-spec
does not, are written by the test, as an engine writes them.
"""
import json
import os
import shutil
import subprocess

import pytest
from conftest import pyrun, snapshot
from ocitools import copy_rootfs, run_bundle, running

from runtime.network import dns
from runtime.oci.bundle import INIT, TINI

PROBE = r"""
echo "ids $(id -u) $(id -g) $(id -G)"
echo "hostname $(hostname) $(cat /etc/hostname)"
env | grep -v -e '^PWD=' -e '^SHLVL=' | sort | sed 's/^/env /'
echo "cwd $(pwd)"
grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp):' /proc/self/status | tr -d '\t' | sed 's/^/status /'
echo "nofile $(ulimit -Sn) $(ulimit -Hn)"
awk '{print "mount", $5, substr($6, 1, 2)}' /proc/self/mountinfo | sort
echo "dev $(ls -A /dev | sort | tr '\n' ' ')"
if touch /written 2>/dev/null; then echo "root rw"; else echo "root ro"; fi
if unshare -U true 2>/dev/null; then echo "unshare allowed"; else echo "unshare refused"; fi
"""

CASES = {
    "defaults": [],
    "user, caps, limits, mounts": ["-u", "nobody", "-w", "/srv/app", "-e", "GREETING=hello world",
                                   "--cap-drop", "CHOWN", "--cap-add", "SYS_PTRACE", "--ulimit", "nofile=100:200",
                                   "--read-only", "--tmpfs", "/tmp:size=8m", "-v", "{data}:/data:ro",
                                   "-m", "64m", "--pids-limit", "50"],
    "seccomp unconfined, all caps": ["--security-opt", "seccomp=unconfined", "--cap-add", "ALL"],
}


def _print_spec(rootfs: str, flags: list[str], probe: str = PROBE) -> dict:
    r = pyrun("run", "--print-spec", "--network", "none", "--hostname", "probe", *flags, rootfs, "sh", "-c", probe)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _bundle(config: dict, busybox: str, path: str) -> str:
    """What an engine does with a config: a rootfs of its own (runc writes mount points into it), and the
    /etc files written where the config's mounts take them from."""
    os.makedirs(path)
    config = json.loads(json.dumps(config))
    config["root"]["path"] = copy_rootfs(busybox, os.path.join(path, "rootfs"))
    etc = os.path.join(path, "etc")
    os.mkdir(etc)
    dns.write_files(etc, config["hostname"], None, "none")
    for m in config["mounts"]:
        if m["destination"] in ("/etc/hostname", "/etc/hosts", "/etc/resolv.conf"):
            m["source"] = os.path.join(etc, os.path.basename(m["destination"]))
        if m["destination"] == INIT:  # --init: the engine's copy of its tini (oci/bundle.py's Tini)
            m["source"] = shutil.copy(TINI, os.path.join(path, "docker-init"))
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(config, f)
    return path


def _runc(bundle: str, cid: str) -> tuple[int, str, str]:
    r = subprocess.run(["runc", "--root", "/run/runc-test", "run", "--bundle", bundle, cid],
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    subprocess.run(["runc", "--root", "/run/runc-test", "delete", "--force", cid], capture_output=True)
    return r.returncode, r.stdout, r.stderr


@pytest.mark.skipif(not shutil.which("runc"), reason="runc is not installed: scripts/setup-engines")
@pytest.mark.parametrize("case", CASES)
def test_pyrun_runc_and_pyrun_oci_build_the_same_container(case, busybox, tmp_path, clean_host):
    data = tmp_path / "data"
    data.mkdir()
    flags = [f.format(data=data) for f in CASES[case]]
    rootfs = copy_rootfs(busybox, str(tmp_path / "rootfs"))
    config = _print_spec(rootfs, flags)

    r = pyrun("run", "--rm", "--network", "none", "--hostname", "probe", *flags, rootfs, "sh", "-c", PROBE)
    assert r.returncode == 0, r.stderr
    seen = {"pyrun run": r.stdout}
    code, out, err = _runc(_bundle(config, busybox, str(tmp_path / "runc")), "spec-runc")
    assert code == 0, err
    seen["runc"] = out
    code, out, err = run_bundle(_bundle(config, busybox, str(tmp_path / "oci")), str(tmp_path), "spec-oci")
    assert code == 0, err
    seen["pyrun-oci"] = out

    lines = {who: sorted(text.splitlines()) for who, text in seen.items()}
    assert lines["runc"] == lines["pyrun run"], _diff(lines, "runc")
    assert lines["pyrun-oci"] == lines["pyrun run"], _diff(lines, "pyrun-oci")
    # The probe saw the flags, not just three runtimes agreeing on nothing.
    facts = "\n".join(lines["pyrun run"])
    if case == "user, caps, limits, mounts":
        assert "ids 65534 65534 65534" in facts and "cwd /srv/app" in facts and "env GREETING=hello world" in facts
        assert "nofile 100 200" in facts and "root ro" in facts and "mount /data ro" in facts
    if case == "defaults":
        assert "ids 0 0 0" in facts and "root rw" in facts and "status Seccomp:2" in facts
        assert "unshare refused" in facts
    if case == "seccomp unconfined, all caps":
        assert "status Seccomp:0" in facts


INIT_PROBE = "[ $$ != 1 ] && echo 'not PID 1'; tr '\\0' ' ' < /proc/1/cmdline; echo; kill -TERM $$"


@pytest.mark.skipif(not shutil.which("runc"), reason="runc is not installed: scripts/setup-engines")
def test_init_is_dockers_tini_and_the_runtimes_run_it(busybox, tmp_path, clean_host):
    """--init as Docker writes it: /sbin/docker-init -- COMMAND, that file a read-only bind of tini. runc and
    pyrun-oci given the config run the command under tini as pyrun run --init runs it under its own reaper:
    not as PID 1, so that the SIGTERM it sends itself is its death, 143."""
    config = _print_spec(busybox, ["--init"], INIT_PROBE)
    assert config["process"]["args"] == [INIT, "--", "sh", "-c", INIT_PROBE]
    [init] = [m for m in config["mounts"] if m["destination"] == INIT]
    assert init["type"] == "bind" and init["options"] == ["bind", "ro", "nosuid", "nodev"]
    assert init["source"].endswith("/layer/docker-init")  # the copy a run would make (no noexec: it runs)
    assert set(config["annotations"]) == {"org.pyrun.rootfs"}  # no --init annotation: tini is the whole of it

    r = pyrun("run", "--rm", "--init", "--network", "none", busybox, "sh", "-c", INIT_PROBE)
    assert (r.returncode, r.stdout.splitlines()[0]) == (143, "not PID 1"), r.stderr
    ran = {"runc": _runc(_bundle(config, busybox, str(tmp_path / "runc")), "init-runc"),
           "pyrun-oci": run_bundle(_bundle(config, busybox, str(tmp_path / "oci")), str(tmp_path), "init-oci")}
    for who, (code, out, err) in ran.items():
        assert code == 143, (who, out, err)
        assert out.splitlines() == ["not PID 1", f"{INIT} -- sh -c {INIT_PROBE} "], (who, out)


def _diff(lines: dict, other: str) -> str:
    mine, theirs = set(lines["pyrun run"]), set(lines[other])
    return f"only pyrun run: {sorted(mine - theirs)}; only {other}: {sorted(theirs - mine)}"


def test_the_printed_limits_are_the_ones_the_cgroup_gets(busybox, tmp_path, clean_host):
    """-m, --cpus and --pids-limit reach the kernel through the printed config, read from the host."""
    from runtime import cgroups

    config = _print_spec(busybox, ["-m", "48m", "--cpus", "0.5", "--pids-limit", "33"])
    before = snapshot()
    assert before["containers"] == [] and before["cgroups"] == []  # --print-spec made nothing

    def edit(c):
        c["linux"]["resources"] = config["linux"]["resources"]

    with running(busybox, str(tmp_path), "spec-limits", ["sleep", "30"], edit):
        files = {"memory": ("memory.limit_in_bytes", "memory.max"), "pids": ("pids.max", "pids.max"),
                 "cpu": ("cpu.cfs_quota_us", "cpu.max")}
        seen = {}
        for controller, (v1, v2) in files.items():
            version, mount = cgroups.hierarchy(controller)
            with open(os.path.join(mount, cgroups.PARENT, "spec-limits", v1 if version == 1 else v2)) as f:
                seen[controller] = f.read().split()[0]
    assert seen == {"memory": str(48 << 20), "pids": "33", "cpu": "50000"}
