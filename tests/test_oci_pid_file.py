"""--pid-file: the container's host pid, digits only, no newline, in place before create exits."""
import os

from ocitools import Shim, cleanup, make_bundle, state


def test_pid_file_holds_the_host_pid_of_the_container_process(busybox, tmp_path):
    bundle = make_bundle(str(tmp_path / "b"), busybox, ["sleep", "60"])
    pid_file = tmp_path / "run" / "c.pid"
    pid_file.parent.mkdir()
    shim = Shim(str(tmp_path), "--bundle", bundle, f"--pid-file={pid_file}", "pid1")
    try:
        assert shim.created() == 0, shim.proc.stderr.read()
        text = pid_file.read_text()  # create has exited: the file must be complete already
        assert text.isdigit(), repr(text)
        pid = int(text)
        assert state("pid1")["pid"] == pid
        with open(f"/proc/{pid}/status") as f:
            nspid = [line.split()[1:] for line in f if line.startswith("NSpid:")][0]
        assert nspid == [str(pid), "1"]  # the host's number for the container's PID 1
        assert os.listdir(pid_file.parent) == ["c.pid"]  # written beside and renamed: no temporary file left
    finally:
        shim.close()
        cleanup("pid1")
