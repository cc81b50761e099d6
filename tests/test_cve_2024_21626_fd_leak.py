"""CVE-2024-21626: runc leaked a host directory fd into the container; `-w /proc/self/fd/N` then put the
container's working directory on the host's filesystem. pyrun closes every fd above 2 before it
changes directory, in PID 1 and in exec's process alike."""
import pytest

from conftest import pyrun

# Every guarantee here is the runtime's to keep: each test runs under each (conftest.RUNTIMES).
pytestmark = pytest.mark.usefixtures("each_runtime")


def test_pid_1_holds_only_stdio(busybox, clean_host):
    r = pyrun("run", "--rm", "--network", "none", busybox, "sh", "-c", "ls /proc/1/fd; true")
    assert r.stdout.split() == ["0", "1", "2"], r.stdout


def test_an_exec_process_holds_only_stdio(busybox, clean_host):
    assert pyrun("run", "-d", "--name", "fds", "--network", "none", busybox, "sleep", "60").returncode == 0
    try:
        r = pyrun("exec", "fds", "sh", "-c", "ls /proc/$$/fd; true")
        assert r.stdout.split() == ["0", "1", "2"], r.stdout
        r = pyrun("exec", "-w", "/proc/self/fd/7", "fds", "pwd")
        assert r.returncode != 0 or r.stdout.startswith("/proc/")
    finally:
        pyrun("rm", "-f", "fds")


@pytest.mark.parametrize("fd", range(3, 12))
def test_workdir_through_a_leaked_fd_cannot_reach_the_host(busybox, clean_host, fd):
    # If fd N were a host directory, `pwd` would print a host path and `ls ..` would list the host.
    r = pyrun("run", "--rm", "--network", "none", "-w", f"/proc/self/fd/{fd}", busybox, "sh", "-c", "pwd; ls ..")
    assert r.returncode != 0 or r.stdout.startswith("/proc/"), r.stdout
    assert "pyrun-busybox" not in r.stdout and "tests" not in r.stdout.split()
