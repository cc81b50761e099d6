"""--pid-file: the container's host pid, digits only, no newline, in place before create exits; in a directory
anyone may write to (/tmp), what a local user plants there neither redirects root's write nor owns the file."""
import os
import stat
import subprocess
import tempfile

import pytest

from ocitools import Shim, cleanup, make_bundle, state

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


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


@pytest.mark.parametrize("plant", ["symlink", "file"])
def test_a_local_user_cannot_redirect_or_own_the_pid_file(busybox, tmp_path, plant):
    """uid 65534 learns pyrun-oci's pid before it runs and plants, where the pid file's temporary file would go
    (.NAME.PID beside it), a link to a root-only file, or a file of its own that root's rename would make the
    pid file: the engine's to trust, the attacker's to rewrite with any pid the engine then signals."""
    victim = tmp_path / "victim"
    victim.write_text("root's own\n")
    shared = tempfile.mkdtemp(prefix="pyrun-shared-", dir="/tmp")
    os.chmod(shared, 0o1777)  # as /tmp itself
    announce, gate = tmp_path / "pid", tmp_path / "gate"
    os.mkfifo(gate)
    bundle = make_bundle(str(tmp_path / "b"), busybox, ["sleep", "60"])
    pid_file = os.path.join(shared, "c.pid")
    wait = ["sh", "-c", f'echo $$ > {announce}; read go < {gate}; exec "$@"', "sh"]
    shim = Shim(str(tmp_path), "--bundle", bundle, f"--pid-file={pid_file}", "pidplant", prefix=tuple(wait))
    try:
        with open(gate, "w") as go:  # opened once sh waits on it: its pid is written by then
            planted = os.path.join(shared, f".c.pid.{announce.read_text().strip()}")
            made = ["ln", "-s", str(victim), planted] if plant == "symlink" else ["touch", planted]
            subprocess.run([*NOBODY, *made], check=True)
            go.write("go\n")
        assert shim.created() == 0, shim.proc.stderr.read()
        assert victim.read_text() == "root's own\n"
        st = os.lstat(pid_file)
        assert st.st_uid == 0 and stat.S_ISREG(st.st_mode), "the pid file is not root's own regular file"
        assert int(open(pid_file).read()) == state("pidplant")["pid"]
    finally:
        shim.close()
        cleanup("pidplant")
        subprocess.run(["rm", "-rf", shared])
