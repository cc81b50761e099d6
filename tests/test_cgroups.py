"""cgroups: memory (OOM kill reported as 137), CPU quota, pids limit; removed when the container ends."""
import os

from conftest import CGROUP_PARENT, pyrun, pyrun_bg, running_record, wait_for


def test_memory_limit_oom_kills_with_137(busybox, clean_host):
    hog = "x=$(head -c 100000000 /dev/zero | tr '\\0' a); echo survived"
    r = pyrun("run", "--rm", "--network", "none", "--memory", "16m", busybox, "sh", "-c", hog)
    assert r.returncode == 137
    assert "survived" not in r.stdout
    assert "out of memory" in r.stderr


def test_pids_limit_stops_a_fork_loop(busybox, clean_host):
    script = "i=0; while [ $i -lt 100 ]; do sleep 5 & i=$((i+1)); echo $i; done"
    r = pyrun("run", "--rm", "--network", "none", "--pids-limit", "20", busybox, "sh", "-c", script)
    assert "can't fork" in r.stderr and r.returncode != 0
    assert int(r.stdout.split()[-1]) < 20  # sh itself is one of the twenty


def test_limits_are_written_to_the_cgroup(busybox, clean_host):
    p = pyrun_bg("run", "--rm", "--init", "--network", "none", "--name", "limited", "--memory", "64m", "--cpus", "0.5",
                 "--pids-limit", "50", busybox, "sleep", "30")
    try:
        record = wait_for(lambda: running_record("limited"), what="the container to run")
        cid = record["Id"]
        base = "/sys/fs/cgroup"
        assert _read(f"{base}/memory/{CGROUP_PARENT}/{cid}/memory.limit_in_bytes") == str(64 << 20)
        assert _read(f"{base}/cpu/{CGROUP_PARENT}/{cid}/cpu.cfs_quota_us") == "50000"
        assert _read(f"{base}/pids/{CGROUP_PARENT}/{cid}/pids.max") == "50"
        devices = _read(f"{base}/devices/{CGROUP_PARENT}/{cid}/devices.list").splitlines()
        assert "c 1:3 rwm" in devices and "b *:* m" in devices and "a *:* rwm" not in devices
        assert str(record["State"]["Pid"]) in _read(f"{base}/memory/{CGROUP_PARENT}/{cid}/cgroup.procs").split()
    finally:
        # Past the 10 s stop grace: a SIGTERM this soon after the start is now and then lost (seen 1 run in
        # 15; why is not yet known), and pyrun then kills at the grace's end. What is tested here is the
        # cgroup, made and then removed.
        p.terminate()
        p.wait(timeout=30)
    assert not os.path.exists(f"/sys/fs/cgroup/memory/{CGROUP_PARENT}/{cid}")


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()
