"""A container cannot fill the state root through its stdout, and a full state root is one line (issue 16)."""
import glob
import json
import os
import subprocess
import tempfile
import time

import pytest

from conftest import pyrun, wait_for


@pytest.fixture
def small_root(clean_host):
    """A state root of its own on a 16 MB tmpfs, mounted in the tests' own mount namespace."""
    path = tempfile.mkdtemp(prefix="pyrun-small-root-")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs", path], check=True)
    yield path
    subprocess.run(["umount", path], check=True)
    os.rmdir(path)


def tree(path: str) -> list[tuple[str, int]]:
    return sorted((os.path.relpath(os.path.join(d, n), path), os.lstat(os.path.join(d, n)).st_size)
                  for d, dirs, names in os.walk(path) for n in dirs + names)


def log_sizes(root: str, kind: str = "") -> list[int]:
    """The sizes of the log's files, or with KIND ".times" of their time stamps (logfile.py). The monitor
    rotates them while we look: a file renamed between the listing and its stat is counted under its new
    name in the next look, not here."""
    sizes = []
    for name in glob.glob(f"{root}/containers/*/container.log*"):
        if name.endswith(".times") == bool(kind):
            try:
                sizes.append(os.path.getsize(name))
            except FileNotFoundError:
                continue
    return sizes


def test_a_flood_on_stdout_stays_within_max_size_times_max_file(busybox, small_root):
    # 400 MB of output, 25 times the state root: the log keeps the last 3 x 1 MiB of it.
    script = "i=0; while [ $i -lt 400 ]; do head -c 1048576 /dev/zero | tr '\\0' x; i=$((i+1)); done; echo; echo END"
    r = pyrun("--root", small_root, "run", "-d", "--read-only", "--network", "none", "--name", "flood",
              "--log-opt", "max-size=1m", "--log-opt", "max-file=3", busybox, "sh", "-c", script)
    assert r.returncode == 0, r.stderr
    seen = []

    def finished() -> bool:
        sizes, stamps = log_sizes(small_root), log_sizes(small_root, ".times")
        seen.append(sizes)
        assert len(stamps) <= 3 and all(size <= 1 << 18 for size in stamps), stamps  # a quarter of max-size
        return pyrun("--root", small_root, "logs", "flood").stdout.endswith("\nEND\n")

    wait_for(finished, timeout=120, what="the flood to end")
    assert all(len(s) <= 3 and all(size <= 1 << 20 for size in s) for s in seen), seen
    out = pyrun("--root", small_root, "logs", "flood").stdout
    assert 2 << 20 < len(out) <= 3 << 20 and set(out[:-5]) <= {"x", "\n"}  # the rotated files, oldest first
    r = pyrun("--root", small_root, "inspect", "flood")
    assert '"max-size": "1m"' in r.stdout and '"max-file": "3"' in r.stdout
    wait_for(lambda: "exited" in pyrun("--root", small_root, "ps", "-a").stdout, what="the teardown")
    assert pyrun("--root", small_root, "rm", "flood").returncode == 0


def test_logs_follow_reads_across_rotations(busybox, small_root):
    script = "i=0; while [ $i -lt 3000 ]; do echo line $i; i=$((i+1)); done"
    r = pyrun("--root", small_root, "run", "-d", "--network", "none", "--name", "talker", "--log-opt", "max-size=4k",
              "--log-opt", "max-file=100", busybox, "sh", "-c", "sleep 0.5; " + script)
    assert r.returncode == 0, r.stderr
    follow = pyrun("--root", small_root, "logs", "-f", "talker")
    assert follow.stdout == "".join(f"line {i}\n" for i in range(3000))  # 100 files of 4k hold it all
    assert len(log_sizes(small_root)) > 5
    assert pyrun("--root", small_root, "rm", "talker").returncode == 0


@pytest.mark.parametrize("value", ["max-size=0", "max-size=10q", "max-file=0", "max-file=x", "compress=1", "max-size"])
def test_bad_log_opts_are_125(busybox, clean_host, value):
    r = pyrun("run", "-d", "--log-opt", value, busybox, "true")
    assert r.returncode == 125 and len(r.stderr.splitlines()) == 1 and repr(value) in r.stderr, r.stderr


def test_a_full_state_root_is_one_line_and_leaves_nothing(busybox, small_root):
    assert pyrun("--root", small_root, "run", "--rm", "--network", "none", busybox, "true").returncode == 0
    with open(os.path.join(small_root, "filler"), "wb") as f:  # as a container's log once filled it
        try:
            while True:
                f.write(b"\0" * (1 << 20))
                f.flush()
        except OSError:
            pass
    before = tree(small_root)
    for args in (["run", "--network", "none", busybox, "true"], ["run", "-d", "--network", "none", busybox, "true"]):
        r = pyrun("--root", small_root, *args)
        assert r.returncode == 125 and len(r.stderr.splitlines()) == 1, r.stderr
        assert "No space left on device" in r.stderr, r.stderr
        assert tree(small_root) == before
    os.unlink(os.path.join(small_root, "filler"))
    # clean_host: no cgroup, mount or anything else left behind


def test_logs_tail_reaches_into_rotated_files(busybox, clean_host):
    """docker logs --tail N counts lines across the rotated files too, not only in the newest one."""
    r = pyrun("run", "-d", "--name", "chatty", "--log-opt", "max-size=1k", "--log-opt", "max-file=5", busybox,
              "sh", "-c", "i=1; while [ $i -le 150 ]; do echo line-$i; i=$((i+1)); done")
    assert r.returncode == 0, r.stderr
    assert pyrun("wait", "chatty").stdout == "0\n"
    record = json.loads(pyrun("inspect", "chatty").stdout)[0]
    assert os.path.exists(record["LogPath"] + ".1")  # it did rotate: the last 100 lines span two files
    out = pyrun("logs", "--tail", "100", "chatty").stdout
    assert out.splitlines() == [f"line-{i}" for i in range(51, 151)]
    assert pyrun("rm", "chatty").returncode == 0


def test_logs_timestamps_say_when_each_line_came(busybox, clean_host):
    """docker logs -t: each line after the time it was written, RFC 3339 in UTC, across rotated files too."""
    import calendar
    import re

    before = time.time()
    r = pyrun("run", "-d", "--name", "stamped", "--log-opt", "max-size=1k", "--log-opt", "max-file=3", busybox,
              "sh", "-c", "echo first; sleep 1.2; i=0; while [ $i -lt 200 ]; do echo line-$i; i=$((i+1)); done; "
                          "sleep 1.2; echo last")
    assert r.returncode == 0, r.stderr
    assert pyrun("wait", "stamped").stdout == "0\n"
    after = time.time()
    lines = pyrun("logs", "-t", "stamped").stdout.splitlines()
    assert len(lines) == 202 and lines[0].endswith(" first") and lines[-1].endswith(" last"), lines
    when = []
    for line in lines:
        m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.(\d{9})Z (.*)", line)
        assert m, line
        when.append(calendar.timegm(time.strptime(m[1], "%Y-%m-%dT%H:%M:%S")) + int(m[2]) / 1e9)
    assert before - 1 <= when[0] and when[-1] <= after + 1  # the wall clock's times, not zeros or made up
    assert when == sorted(when) and when[1] - when[0] >= 1.0 and when[-1] - when[-2] >= 1.0
    tail = pyrun("logs", "-t", "-n", "1", "stamped").stdout
    assert tail == lines[-1] + "\n"
    assert os.path.exists(json.loads(pyrun("inspect", "stamped").stdout)[0]["LogPath"] + ".1.times")  # it rotated
    assert pyrun("rm", "stamped").returncode == 0
