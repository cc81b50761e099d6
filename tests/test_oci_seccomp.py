"""linux.seccomp: the spec's profile format, loaded through pyrun's seccomp module, with or without noNewPrivileges."""
import errno
import json
import os
import shutil
import subprocess

import pytest

from conftest import CGROUP_PARENT
from ocitools import make_bundle, run_bundle


@pytest.mark.parametrize("nnp", [True, False])
def test_a_profile_that_refuses_mkdir(busybox, tmp_path, nnp):
    profile = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
               "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EACCES}]}

    def edit(c):
        c["linux"]["seccomp"] = profile
        c["process"]["noNewPrivileges"] = nnp
    bundle = make_bundle(str(tmp_path / "b"), busybox, ["sh", "-c", "mkdir /tmp/d 2>&1; touch /tmp/f && echo touch"],
                         edit)
    code, out, err = run_bundle(bundle, str(tmp_path), "sec1")
    assert code == 0, err
    assert out == "mkdir: can't create directory '/tmp/d': Permission denied\ntouch\n"


def _runc(bundle: str, cid: str) -> tuple[int, str]:
    """The same bundle run by runc, in a cgroup under the suite's parent."""
    path = os.path.join(bundle, "config.json")
    with open(path) as f:
        config = json.load(f)
    config["linux"]["cgroupsPath"] = f"/{CGROUP_PARENT}/{cid}"
    with open(path, "w") as f:
        json.dump(config, f)
    r = subprocess.run(["runc", "--root", "/run/runc-pyrun-test", "run", "--bundle", bundle, cid],
                       capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    return r.returncode, r.stdout + r.stderr


@pytest.mark.skipif(not shutil.which("runc"), reason="runc is not installed")
@pytest.mark.parametrize("first,then", [(errno.EACCES, errno.EPERM), (errno.EPERM, errno.EACCES),
                                        ("allow", errno.EACCES), (errno.EACCES, "allow")])
def test_two_rules_for_one_call_load_as_runc_loads_them(busybox, tmp_path, first, then):
    """A config.json may name a call in two rules (podman's default names setns twice): pyrun-oci hands them
    to libseccomp in order, as runc does, and the container sees what it sees under runc."""
    def rule(action):
        return {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_LOG" if action == "allow" else "SCMP_ACT_ERRNO",
                **({} if action == "allow" else {"errnoRet": action})}

    def edit(c):
        c["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [rule(first), rule(then)]}
    script = "mkdir /tmp/d 2>&1 && rmdir /tmp/d && echo made; grep Seccomp: /proc/self/status"
    bundle = make_bundle(str(tmp_path / "b"), busybox, ["sh", "-c", script], edit)
    code, out, err = run_bundle(bundle, str(tmp_path), "sec2")
    assert code == 0, err
    runc_code, runc_out = _runc(bundle, "sec2-runc")
    assert (code, out) == (runc_code, runc_out)
    assert out.endswith("Seccomp:\t2\n") and ("made" in out) == (first == "allow")  # libseccomp keeps the first
