"""pyrun-oci's lifecycle as an engine drives it: create, state, start, state, delete (runtime.md "Lifecycle")."""
import os
import time

import pytest

from conftest import wait_for
from ocitools import Shim, cleanup, leftovers, make_bundle, oci, parent_of, state


@pytest.fixture
def out(tmp_path):
    path = tmp_path / "out"
    path.mkdir()
    return str(path)


def _bind(host: str, target: str):
    return lambda c: c["mounts"].append({"destination": target, "type": "bind", "source": host,
                                         "options": ["rbind", "rw"]})


def test_create_blocks_until_start_then_delete_leaves_nothing(busybox, tmp_path, out, clean_host):
    bundle = make_bundle(str(tmp_path / "b"), busybox, ["sh", "-c", "echo ran > /out/marker; echo hello"],
                         _bind(out, "/out"))
    shim = Shim(str(tmp_path), "--bundle", bundle, "--pid-file", str(tmp_path / "pid"), "life1")
    try:
        assert shim.created() == 0, shim.proc.stderr.read()
        pid = int((tmp_path / "pid").read_text())
        s = state("life1")
        assert (s["status"], s["pid"], s["id"], s["bundle"]) == ("created", pid, "life1", bundle)
        assert s["rootfs"] == os.path.join(bundle, "rootfs") and s["ociVersion"].startswith("1.") and s["created"]
        time.sleep(0.5)
        assert not os.path.exists(os.path.join(out, "marker")), "the program ran before start"

        r = oci("start", "life1")
        assert r.returncode == 0, r.stderr
        assert shim.exit_of(pid) == 0
        assert open(os.path.join(out, "marker")).read() == "ran\n"
        s = state("life1")
        assert (s["status"], s["pid"]) == ("stopped", 0)

        r = oci("delete", "life1")
        assert r.returncode == 0, r.stderr
        r = oci("state", "life1")
        assert r.returncode == 1 and 'container "life1" does not exist' in r.stderr
        assert leftovers("life1") == []
        shim.proc.wait(10)
        assert shim.proc.stdout.read() == b"hello\n"  # the container's stdout was create's
    finally:
        shim.close()
        cleanup("life1")


def test_no_pyrun_process_stays_between_engine_and_container(busybox, tmp_path):
    """The container's PID 1 is the engine's child (its subreaper's): create and the intermediate are gone."""
    bundle = make_bundle(str(tmp_path / "b"), busybox, ["sleep", "60"])
    shim = Shim(str(tmp_path), "--bundle", bundle, "--pid-file", str(tmp_path / "pid"), "life2")
    try:
        assert shim.created() == 0, shim.proc.stderr.read()
        pid = int((tmp_path / "pid").read_text())
        assert parent_of(pid) == shim.proc.pid
        children = [int(p) for p in os.listdir("/proc") if p.isdigit() and _ppid(int(p)) == shim.proc.pid]
        assert children == [pid]
        assert oci("start", "life2").returncode == 0
        assert parent_of(pid) == shim.proc.pid

        def cmdline() -> str:
            with open(f"/proc/{pid}/cmdline") as f:
                return f.read().split("\0")[0]
        # start returns once PID 1 has taken its byte, as runc's does; PID 1's execve comes a moment later
        wait_for(lambda: cmdline() == "sleep", 5, "PID 1 to exec sleep")  # PID 1 is the program itself, not pyrun
        r = oci("kill", "life2", "KILL")
        assert r.returncode == 0, r.stderr
        assert shim.exit_of(pid) == -9  # the engine sees the container's own status
        assert state("life2")["status"] == "stopped"
        assert oci("delete", "life2").returncode == 0
    finally:
        shim.close()
        cleanup("life2")


def _ppid(pid: int) -> int | None:
    try:
        return parent_of(pid)
    except (FileNotFoundError, ProcessLookupError):
        return None


@pytest.mark.parametrize("sig,code", [("9", -9), ("SIGKILL", -9), ("KILL", -9), (None, 3), ("usr1", 4)])
def test_kill_names_signals_as_runc_does(busybox, tmp_path, sig, code):
    """kill ID [SIGNAL]: a number, NAME or SIGNAME, TERM by default. PID 1 gets a signal it has a handler for."""
    script = "trap 'exit 3' TERM; trap 'exit 4' USR1; echo up; while :; do sleep 0.05; done"
    bundle = make_bundle(str(tmp_path / "b"), busybox, ["sh", "-c", script])
    shim = Shim(str(tmp_path), "--bundle", bundle, "--pid-file", str(tmp_path / "pid"), "life3")
    try:
        assert shim.created() == 0, shim.proc.stderr.read()
        pid = int((tmp_path / "pid").read_text())
        assert oci("start", "life3").returncode == 0
        assert shim.proc.stdout.readline() == b"up\n"  # its traps are set
        r = oci("kill", "life3", *([sig] if sig else []))
        assert r.returncode == 0, r.stderr
        assert shim.exit_of(pid) == code
    finally:
        shim.close()
        cleanup("life3")


def test_kill_all_signals_every_process_in_the_cgroup(busybox, tmp_path):
    bundle = make_bundle(str(tmp_path / "b"), busybox, ["sh", "-c", "sleep 60 & sleep 61 & echo up; wait"])
    shim = Shim(str(tmp_path), "--bundle", bundle, "--pid-file", str(tmp_path / "pid"), "life4")
    try:
        assert shim.created() == 0, shim.proc.stderr.read()
        pid = int((tmp_path / "pid").read_text())
        assert oci("start", "life4").returncode == 0
        assert shim.proc.stdout.readline() == b"up\n"
        assert oci("kill", "--all", "life4", "KILL").returncode == 0
        assert shim.exit_of(pid) == -9
    finally:
        shim.close()
        cleanup("life4")


def test_delete_of_a_created_container_kills_it(busybox, tmp_path, clean_host):
    bundle = make_bundle(str(tmp_path / "b"), busybox, ["true"])
    shim = Shim(str(tmp_path), "--bundle", bundle, "--pid-file", str(tmp_path / "pid"), "life5")
    try:
        assert shim.created() == 0, shim.proc.stderr.read()
        pid = int((tmp_path / "pid").read_text())
        r = oci("delete", "life5")
        assert r.returncode == 0, r.stderr
        assert shim.exit_of(pid) == -9
        assert leftovers("life5") == []
    finally:
        shim.close()
        cleanup("life5")
