"""`pyrun exec` opens nothing the container could have swapped.

A running container owns its /dev: it may replace /dev/null with a FIFO
(opening it for reading blocks until a writer comes, so exec hung for good)
or with a symlink to a file, and /dev/ptmx with either. exec's stdin comes
from the host's /dev/null, opened before joining the container, and its
terminal from the devpts's own ptmx, checked to be the pty multiplexer, whose
other side it gets with TIOCGPTPEER rather than by a path.
"""
import os
import stat
import subprocess

import pytest

from conftest import pyrun, running_record, wait_for

# Every guarantee here is the runtime's to keep: each test runs under each (conftest.RUNTIMES).
pytestmark = pytest.mark.usefixtures("each_runtime")

VICTIM = "/etc/victim"


def _hostile(busybox: str, name: str, swap: str, path: str) -> str:
    """A running container that has replaced PATH by SWAP; returns PATH as the host sees it."""
    replace = {"fifo": f"mkfifo {path}", "symlink": f"ln -s {VICTIM} {path}"}[swap]
    r = pyrun("run", "-d", "--name", name, "--network", "none", busybox, "sh", "-c",
              f"echo precious > {VICTIM}; rm -f {path}; {replace}; exec sleep 300")
    assert r.returncode == 0, r.stderr
    pid = wait_for(lambda: running_record(name), what=f"{name} to run")["State"]["Pid"]
    seen = f"/proc/{pid}/root{path}"
    check = stat.S_ISFIFO if swap == "fifo" else stat.S_ISLNK
    wait_for(lambda: os.path.lexists(seen) and check(os.lstat(seen).st_mode), what=f"{path} to be swapped")
    return f"/proc/{pid}/root{VICTIM}"


def _exec(*args: str) -> subprocess.CompletedProcess:
    try:
        return pyrun("exec", *args, timeout=15, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        pytest.fail(f"pyrun exec {' '.join(args)} hung")


@pytest.mark.parametrize("swap", ["fifo", "symlink"])
def test_exec_does_not_open_the_containers_dev_null(busybox, clean_host, swap):
    victim = _hostile(busybox, "nulled", swap, "/dev/null")
    try:
        r = _exec("nulled", "cat")  # without -i, stdin is /dev/null: cat sees its end at once
        assert (r.returncode, r.stdout) == (0, ""), r.stdout + r.stderr
        with open(victim) as f:
            assert f.read() == "precious\n"
    finally:
        assert pyrun("rm", "-f", "nulled").returncode == 0


@pytest.mark.parametrize("swap", ["fifo", "symlink"])
def test_exec_t_does_not_open_the_containers_dev_ptmx(busybox, clean_host, swap):
    victim = _hostile(busybox, "ptmxed", swap, "/dev/ptmx")
    try:
        r = _exec("-t", "ptmxed", "tty")
        assert r.returncode == 0 and r.stdout.startswith("/dev/pts/"), r.stdout + r.stderr
        with open(victim) as f:
            assert f.read() == "precious\n"
    finally:
        assert pyrun("rm", "-f", "ptmxed").returncode == 0
