"""--preserve-fds N: the container's program gets create's fds 3..N+2, and no other fd beyond stdio."""
import os

from ocitools import Shim, cleanup, make_bundle, oci


def test_preserved_fds_reach_the_program_and_nothing_else_does(busybox, tmp_path):
    script = "echo $(ls /proc/self/fd); echo three >&3; echo four >&4; echo five >&5 || echo no fd 5"
    bundle = make_bundle(str(tmp_path / "b"), busybox, ["sh", "-c", script])
    pipes = {target: os.pipe() for target in (3, 4, 5)}
    shim = Shim(str(tmp_path), "--bundle", bundle, "--preserve-fds", "2", "--pid-file", str(tmp_path / "pid"),
                "fds1", fds={target: w for target, (_, w) in pipes.items()})
    try:
        for _, w in pipes.values():
            os.close(w)  # the shim has them now
        assert shim.created() == 0, shim.proc.stderr.read()
        assert oci("start", "fds1").returncode == 0
        assert shim.exit_of(int((tmp_path / "pid").read_text())) == 0
        shim.proc.wait(10)
        # ls lists 0-2, the two preserved, and the directory it reads (5); fd 5 of create's is not the container's.
        assert shim.proc.stdout.read().splitlines() == [b"0 1 2 3 4 5", b"no fd 5"]
        assert os.read(pipes[3][0], 100) == b"three\n"
        assert os.read(pipes[4][0], 100) == b"four\n"
        assert os.read(pipes[5][0], 100) == b""  # end of file: nothing in the container held its write end
    finally:
        for r, _ in pipes.values():
            os.close(r)
        shim.close()
        cleanup("fds1")


def test_without_preserve_fds_only_stdio_reaches_the_program(busybox, tmp_path):
    bundle = make_bundle(str(tmp_path / "b"), busybox, ["ls", "/proc/self/fd"])
    r, w = os.pipe()
    shim = Shim(str(tmp_path), "--bundle", bundle, "--pid-file", str(tmp_path / "pid"), "fds2", fds={3: w})
    try:
        os.close(w)
        assert shim.created() == 0, shim.proc.stderr.read()
        assert oci("start", "fds2").returncode == 0
        shim.proc.wait(10)
        assert sorted(shim.proc.stdout.read().split(), key=int) == [b"0", b"1", b"2", b"3"]  # 3: ls's own
        assert os.read(r, 100) == b""
    finally:
        os.close(r)
        shim.close()
        cleanup("fds2")
