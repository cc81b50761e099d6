"""The container's process: PID 1, exit codes, signals, --init, the terminal.

--init is pyrun's own reaper with pyrun's runtime, and tini (Docker's docker-init) with --runtime: the
tests of it run under each (conftest.RUNTIMES).
"""
import json
import os
import signal
import subprocess
import sys

import pytest

from conftest import REPO, RUNTIMES, pty_session, pyrun, pyrun_bg, running_record, wait_for
from ocitools import parent_of


def test_command_is_pid_1(busybox, clean_host):
    r = pyrun("run", "--rm", "--network", "none", busybox, "sh", "-c", "echo $$")
    assert (r.returncode, r.stdout) == (0, "1\n")


def test_python_is_pid_1_in_debian(debian, clean_host):
    r = pyrun("run", "--rm", "--network", "none", debian, "python", "-c", "import os; print(os.getpid())")
    assert (r.returncode, r.stdout) == (0, "1\n"), r.stderr


def test_no_host_processes_visible(busybox, clean_host):
    r = pyrun("run", "--rm", "--network", "none", busybox, "sh", "-c", "ls /proc | grep -E '^[0-9]+$'")
    pids = r.stdout.split()
    # sh is 1, ls and grep are its children: nothing of the host's hundreds of processes.
    assert "1" in pids and len(pids) <= 3, pids


def test_exit_status_is_the_commands(busybox, clean_host):
    assert pyrun("run", "--rm", "--network", "none", busybox, "true").returncode == 0
    assert pyrun("run", "--rm", "--network", "none", busybox, "sh", "-c", "exit 3").returncode == 3


def test_command_not_found_is_127(busybox, clean_host):
    r = pyrun("run", "--rm", "--network", "none", busybox, "no-such-command")
    assert r.returncode == 127
    assert r.stderr.strip().startswith("pyrun: exec no-such-command: executable file not found in $PATH (")


def test_not_executable_is_126(busybox, clean_host):
    r = pyrun("run", "--rm", "--network", "none", busybox, "/etc/passwd")
    assert r.returncode == 126
    assert "/etc/passwd" in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_killed_by_signal_is_128_plus_n(runtime, busybox, clean_host):
    # PID 1 is immune to its own signals, so --init puts the shell one level down.
    base = ["run", "--rm", "--init", "--runtime", runtime, "--network", "none", busybox, "sh", "-c"]
    assert pyrun(*base, "kill -KILL $$").returncode == 137
    assert pyrun(*base, "kill -TERM $$").returncode == 143
    assert pyrun(*base, "exit 3").returncode == 3


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_sigterm_to_pyrun_reaches_the_command(runtime, busybox, clean_host):
    p = pyrun_bg("run", "--rm", "--init", "--runtime", runtime, "--network", "none", busybox, "sh", "-c",
                 "echo up; sleep 30")
    assert p.stdout.readline() == "up\n"
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=10) == 143


def test_sigint_to_pyrun_reaches_a_handler(busybox, clean_host):
    script = "trap 'echo got INT; exit 7' INT; echo up; while true; do sleep 0.1; done"
    p = pyrun_bg("run", "--rm", "--network", "none", busybox, "sh", "-c", script)
    assert p.stdout.readline() == "up\n"
    p.send_signal(signal.SIGINT)
    assert p.wait(timeout=10) == 7
    assert p.stdout.read() == "got INT\n"


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_init_reaps_orphans_and_stop_is_polite(runtime, busybox, clean_host):
    """An orphan is re-parented to PID 1, which reaps it once it dies: no zombie stays in the host's /proc.
    The command is no PID 1 (after exec, a sleep that waits for nobody), so `stop`'s SIGTERM kills it."""
    name = f"reaper-{runtime}"
    r = pyrun("run", "-d", "--init", "--runtime", runtime, "--network", "none", "--name", name, "--stop-timeout",
              "30", busybox, "sh", "-c", "sh -c 'sleep 7391 &'; exec sleep 300")
    assert r.returncode == 0, r.stderr
    try:
        record = wait_for(lambda: running_record(name), what="the container")
        init = record["Init"]["Pid"]
        orphan = wait_for(lambda: _pid_of("sleep 7391"), what="the orphan")
        wait_for(lambda: parent_of(orphan) == init, what="PID 1 to take in the orphan (once its sh is gone)")
        os.kill(orphan, signal.SIGKILL)
        wait_for(lambda: not os.path.exists(f"/proc/{orphan}"), what="PID 1 to reap the orphan")
        assert pyrun("stop", name).returncode == 0
        inspect = pyrun("inspect", name)
        assert json.loads(inspect.stdout)[0]["State"]["ExitCode"] == 143  # SIGTERM did it, not a SIGKILL
    finally:
        pyrun("rm", "-f", name)


def test_container_dies_with_pyrun(busybox, clean_host):
    p = pyrun_bg("run", "--rm", "--network", "none", "--name", "orphan-test", busybox, "sleep", "300")
    # pyrun's child (its subreaper's): another test's container may run a sleep 300 too
    pid = wait_for(lambda: _pid_of("sleep 300", parent=p.pid), what="the container's sleep")
    p.kill()
    p.wait()
    wait_for(lambda: not os.path.exists(f"/proc/{pid}"), what="the container to die with pyrun")
    # pyrun was SIGKILLed: the host-side leftovers are `pyrun prune`'s job (crash recovery).
    subprocess.run([sys.executable, "-m", "runtime", "prune"], cwd=REPO, capture_output=True)


def _pid_of(cmdline: str, parent: int | None = None) -> int | None:
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if f.read().replace(b"\0", b" ").strip() == cmdline.encode() and \
                        (parent is None or parent_of(int(pid)) == parent):
                    return int(pid)
        except (FileNotFoundError, ProcessLookupError, NotADirectoryError):
            continue
    return None


def test_tty_gives_an_interactive_shell(busybox, clean_host):
    session = pty_session("run", "--rm", "-it", "--network", "none", busybox, "sh")
    assert session.read_until(b"# "), session.out
    session.write(b"tty; echo cols=$(stty size)\r")
    assert session.read_until(b"cols="), session.out
    session.write(b"exit 5\r")
    assert session.wait() == 5
    assert b"/dev/pts/" in session.out, session.out
