"""`pyrun stop` and `pyrun rm -f` of a container that is still being set up stop it, at once (issue 15)."""
import glob
import os
import time

import pytest

from conftest import STATE_ROOT, pyrun, pyrun_bg, wait_for

PAUSED = "pyrun: paused after {kind} (PYRUN_DEBUG_PAUSE_AFTER)\n"


def paused_run(busybox: str, kind: str, detach: bool):
    """A `pyrun run` held in its setup right after step KIND (steps.py's seam)."""
    p = pyrun_bg("run", *(["-d"] if detach else []), "--name", "setup", "-p", "8120:8000", busybox, "sleep", "300",
                 env={**os.environ, "PYRUN_DEBUG_PAUSE_AFTER": kind})
    if detach:  # the monitor sets the container up, with its output in the log
        wait_for(lambda: any(PAUSED.format(kind=kind) in open(log).read()
                             for log in glob.glob(f"{STATE_ROOT}/containers/*/container.log")),
                 what="the monitor to pause")
    else:
        assert p.stderr.readline() == PAUSED.format(kind=kind)
    return p


@pytest.mark.parametrize("detach", [False, True], ids=["foreground", "detached"])
# cgroup: pyrun-oci's own step, inside its create (the default runtime's, called in pyrun's process)
@pytest.mark.parametrize("kind", ["layer", "cgroup", "iptables"])
@pytest.mark.parametrize("action", [["rm", "-f"], ["stop"]], ids=["rm -f", "stop"])
def test_a_container_in_setup_is_stopped_and_gone(busybox, clean_host, action, kind, detach):
    p = paused_run(busybox, kind, detach)
    started = time.monotonic()
    r = pyrun(*action, "setup", timeout=20)
    took = time.monotonic() - started
    assert r.returncode == 0 and r.stdout == "setup\n", r.stderr
    assert took < 5, f"{' '.join(action)} took {took:.1f} s"
    assert p.wait(timeout=10) == 143  # the setup was aborted by the SIGTERM, as a user's ^C would
    assert "interrupted by SIGTERM before the command started" in p.stderr.read()
    assert pyrun("ps", "-a").stdout.splitlines()[1:] == []
    # clean_host: no cgroup, layer, lease, veth, netns, rule or record is left


def test_a_setup_that_ignores_sigterm_is_killed_and_undone(busybox, clean_host):
    """A pyrun that cannot act on SIGTERM (here: stopped) is killed after the timeout, and its journal undone."""
    p = paused_run(busybox, "iptables", detach=False)
    os.kill(p.pid, 19)  # SIGSTOP: SIGTERM now waits, SIGKILL does not
    started = time.monotonic()
    r = pyrun("stop", "-t", "1", "setup", timeout=20)
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - started < 5
    assert p.wait(timeout=10) == -9
    assert pyrun("rm", "setup").returncode == 0  # its record stays, dead, as for any killed pyrun
