"""Resource exhaustion: a container that forks or allocates without end is stopped at its own limits."""
import subprocess

import pytest

from conftest import CGROUP_PARENT, RUNTIMES, pyrun, pyrun_bg, running_record, wait_for

BOMB = "bomb() { bomb | bomb & }; bomb; sleep 3; echo survived"


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_fork_bomb_is_contained_by_pids_limit(runtime, busybox, clean_host):
    p = pyrun_bg("run", "--rm", "--runtime", runtime, "--init", "--network", "none", "--name", "bomber",
                 "--pids-limit", "64",
                 busybox, "sh", "-c", BOMB)
    try:
        record = wait_for(lambda: running_record("bomber"), what="the bomb")
        pids = f"/sys/fs/cgroup/pids/{CGROUP_PARENT}/{record['Id']}"
        # pids.events counts the forks the limit refused: "max N"
        wait_for(lambda: int(open(f"{pids}/pids.events").read().split()[1]) > 0, what="the limit to bite")
        assert int(open(f"{pids}/pids.current").read()) <= 64
        # The host still starts processes while the bomb runs.
        assert subprocess.run(["true"], timeout=10).returncode == 0
    finally:
        pyrun("kill", "bomber")
        p.wait(timeout=30)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_memory_hog_is_oom_killed_alone(runtime, busybox, clean_host):
    neighbour = pyrun_bg("run", "--rm", "--runtime", runtime, "--init", "--network", "none", "--name",
                         "neighbour", busybox, "sleep", "30")
    try:
        wait_for(lambda: running_record("neighbour"), what="the neighbour")
        hog = "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived"
        r = pyrun("run", "--rm", "--runtime", runtime, "--network", "none", "--memory", "16m", busybox, "sh", "-c", hog)
        assert r.returncode == 137 and "out of memory" in r.stderr and "survived" not in r.stdout
        assert neighbour.poll() is None and running_record("neighbour")  # the other container lives on
    finally:
        pyrun("stop", "neighbour")
        neighbour.wait(timeout=30)
