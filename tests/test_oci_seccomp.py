"""linux.seccomp: the spec's profile format, loaded through pyrun's seccomp module, with or without noNewPrivileges."""
import errno

import pytest

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
