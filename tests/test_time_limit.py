"""Time limits: a command that ignores SIGTERM (PID 1 does, without a handler) still ends, and nothing is left.

Each test bounds its own wait: a pyrun that does not stop the container
would run for good, and the test fails by its subprocess timeout.
"""
import signal
import subprocess
import sys

import pytest

from conftest import REPO, pyrun, pyrun_bg, running_record, wait_for

BUSY = ["sh", "-c", "while :; do :; done"]
TRAPS = ["sh", "-c", "trap 'echo bye; exit 3' TERM; echo ready; while :; do :; done"]


def test_timeout_1_stops_a_container_that_ignores_sigterm(busybox, clean_host):
    """`timeout 2 pyrun run ...`: SIGTERM to pyrun, forwarded, then SIGKILL after --stop-timeout."""
    r = subprocess.run(["timeout", "2", sys.executable, "-m", "runtime", "run", "--rm", "--network", "none",
                        "--stop-timeout", "1", busybox, *BUSY], cwd=REPO, capture_output=True, text=True, timeout=20)
    assert r.returncode == 124, r.stderr  # timeout(1)'s own code: it had to send its signal


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_to_a_foreground_pyrun_stops_the_container(busybox, clean_host, sig):
    p = pyrun_bg("run", "--rm", "--network", "none", "--name", "busy", "--stop-timeout", "1", busybox,
                 "sh", "-c", "trap '' INT TERM; while :; do :; done")
    try:
        wait_for(lambda: running_record("busy"), what="the container to run")
        p.send_signal(sig)
        p.wait(timeout=15)
    finally:
        p.kill()
    assert p.returncode == 128 + signal.SIGKILL, p.stderr.read()


def test_a_command_that_handles_sigterm_exits_its_own_way(busybox, clean_host):
    p = pyrun_bg("run", "--rm", "--network", "none", "--name", "traps", busybox, *TRAPS)
    try:
        assert p.stdout.readline() == "ready\n"
        p.terminate()
        p.wait(timeout=15)  # well within the default 10 s stop timeout
    finally:
        p.kill()
    assert p.returncode == 3 and p.stdout.read() == "bye\n"


@pytest.mark.parametrize("command, output", [(BUSY, ""), (TRAPS, "ready\nbye\n")], ids=["busy", "traps"])
def test_timeout_ends_a_foreground_run_with_124(busybox, clean_host, command, output):
    r = pyrun("run", "--rm", "--network", "none", "--name", "slow", "--timeout", "1", "--stop-timeout", "1",
              busybox, *command, timeout=20)
    assert r.returncode == 124 and r.stdout == output, r.stdout + r.stderr
    assert r.stderr == "pyrun: container slow exceeded --timeout 1s\n"


def test_timeout_ends_a_detached_run_with_124(busybox, clean_host):
    r = pyrun("run", "-d", "--network", "none", "--name", "slow-d", "--timeout", "1.5", "--stop-timeout", "1",
              busybox, *BUSY)
    assert r.returncode == 0, r.stderr
    try:
        w = pyrun("wait", "slow-d", timeout=20)  # the monitor enforces it, with no pyrun in the foreground
        assert w.stdout == "124\n", w.stderr
        assert pyrun("logs", "slow-d").stdout == "pyrun: container slow-d exceeded --timeout 1.5s\n"
        assert pyrun("inspect", "-f", "{{.State.ExitCode}} {{.State.Status}}", "slow-d").stdout == "124 exited\n"
    finally:
        pyrun("rm", "-f", "slow-d")


def test_a_run_within_its_timeout_keeps_its_exit_code(busybox, clean_host):
    r = pyrun("run", "--rm", "--network", "none", "--timeout", "30", busybox, "sh", "-c", "exit 7")
    assert r.returncode == 7 and r.stderr == ""


def test_stop_waits_the_containers_stop_timeout(busybox, clean_host):
    assert pyrun("run", "-d", "--network", "none", "--name", "st", "--stop-timeout", "1", busybox,
                 *BUSY).returncode == 0
    try:
        r = pyrun("stop", "st", timeout=8)  # Docker's 10 s default would not be over yet
        assert r.returncode == 0 and running_record("st") is None
        assert pyrun("inspect", "-f", "{{.State.ExitCode}}", "st").stdout == "137\n"
    finally:
        pyrun("rm", "-f", "st")


@pytest.mark.parametrize("args, message", [
    (["--timeout", "-1"], "invalid --timeout: '-1': expected a number of seconds"),
    (["--timeout", "soon"], "invalid --timeout: 'soon'"),
    (["--stop-timeout", "nan"], "invalid --stop-timeout: 'nan'"),
])
def test_bad_time_limits_are_125_and_leave_nothing(busybox, clean_host, args, message):
    r = pyrun("run", "--rm", *args, busybox, "true")
    assert r.returncode == 125 and message in r.stderr, r.stderr
