"""The container's stdin, stdout and stderr are create's (the engine's pipes), the very same files."""
import os
import subprocess

from ocitools import Shim, cleanup, make_bundle, oci


def test_program_reads_and_writes_the_pipes_create_was_given(busybox, tmp_path):
    script = "read line; echo \"out: $line\"; echo \"err: $line\" >&2; cat"
    bundle = make_bundle(str(tmp_path / "b"), busybox, ["sh", "-c", script])
    shim = Shim(str(tmp_path), "--bundle", bundle, "--pid-file", str(tmp_path / "pid"), "io1",
                stdin=subprocess.PIPE)
    try:
        assert shim.created() == 0
        assert oci("start", "io1").returncode == 0
        out, err = shim.proc.communicate(b"hello\nrest of the input\n", timeout=10)
        assert out == b"out: hello\nrest of the input\n"
        assert err == b"err: hello\n"
        assert shim.exit_of(int((tmp_path / "pid").read_text())) == 0
    finally:
        shim.close()
        cleanup("io1")


def test_stdio_are_the_same_open_files_not_copies(busybox, tmp_path):
    """No pyrun process copies bytes in between: the program's fd 1 is the engine's pipe itself."""
    bundle = make_bundle(str(tmp_path / "b"), busybox, ["sleep", "60"])
    shim = Shim(str(tmp_path), "--bundle", bundle, "--pid-file", str(tmp_path / "pid"), "io2")
    try:
        assert shim.created() == 0
        pid = int((tmp_path / "pid").read_text())
        assert oci("start", "io2").returncode == 0
        for fd in (1, 2):
            assert os.stat(f"/proc/{pid}/fd/{fd}").st_ino == os.stat(f"/proc/{shim.proc.pid}/fd/{fd}").st_ino
    finally:
        shim.close()
        cleanup("io2")
