"""pause and resume: the container's freezer cgroup, checked by a counter that stops and goes on."""
import os
import time

from ocitools import oci, running, state


def _count(path) -> int:
    text = open(path).read().split()
    return int(text[-1]) if text else 0


def test_pause_stops_every_process_and_resume_lets_them_go_on(busybox, tmp_path):
    out = tmp_path / "out"
    out.mkdir()

    def bind(c):
        c["mounts"].append({"destination": "/out", "type": "bind", "source": str(out), "options": ["rbind", "rw"]})
    script = "i=0; while :; do i=$((i+1)); echo $i >> /out/n; sleep 0.01; done"
    with running(busybox, str(tmp_path), "pz1", ["sh", "-c", script], bind) as (_, pid):
        time.sleep(0.2)
        r = oci("pause", "pz1")
        assert r.returncode == 0, r.stderr
        assert state("pz1")["status"] == "paused"
        frozen = _count(out / "n")
        time.sleep(0.3)
        assert _count(out / "n") == frozen, "a paused container went on running"
        r = oci("pause", "pz1")
        assert (r.returncode, r.stderr) == (1, "pyrun-oci: container not running\n")
        r = oci("resume", "pz1")
        assert r.returncode == 0, r.stderr
        assert state("pz1")["status"] == "running"
        time.sleep(0.3)
        assert _count(out / "n") > frozen
        r = oci("resume", "pz1")
        assert (r.returncode, r.stderr) == (1, "pyrun-oci: container not paused\n")


def test_a_paused_container_is_deleted_by_force(busybox, tmp_path):
    with running(busybox, str(tmp_path), "pz2", ["sleep", "60"]) as (shim, pid):
        assert oci("pause", "pz2").returncode == 0
        r = oci("delete", "pz2")
        assert r.returncode == 1 and "that is not stopped: paused" in r.stderr
        r = oci("delete", "--force", "pz2")
        assert r.returncode == 0, r.stderr
        assert shim.exit_of(pid) == -9
        assert not os.path.exists(f"/proc/{pid}")
