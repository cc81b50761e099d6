"""Device access: with Docker's CAP_MKNOD a container can make a node for the host's disk, but never open it."""
import os

import pytest

from conftest import RUNTIMES, pyrun


def _block_devices() -> list[tuple[int, int, str]]:
    out = []
    for line in open("/proc/partitions").read().splitlines()[2:]:
        major, minor, _, name = line.split()
        out.append((int(major), int(minor), name))
    return out


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_no_block_device_of_the_host_can_be_read(runtime, busybox, clean_host):
    devices = _block_devices()
    assert devices, "this host shows no block devices in /proc/partitions"
    script = "".join(f"mknod /tmp/{n} b {ma} {mi} 2>/dev/null; head -c 512 /tmp/{n} >/dev/null 2>&1 && echo READ {n}; "
                     for ma, mi, n in devices) + "echo done"
    r = pyrun("run", "--rm", "--runtime", runtime, "--network", "none", busybox, "sh", "-c", script)
    assert r.stdout == "done\n", r.stdout  # no "READ" line: every device refused


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_the_standard_devices_work(runtime, busybox, clean_host):
    script = ("head -c 4 /dev/zero | od -An -tx1; head -c 4 /dev/urandom | wc -c; echo x > /dev/null; "
              "echo y > /dev/full 2>/dev/null || echo full")
    r = pyrun("run", "--rm", "--runtime", runtime, "--network", "none", busybox, "sh", "-c", script)
    assert r.stdout.split() == ["00", "00", "00", "00", "4", "full"], r.stdout + r.stderr


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_node_for_a_character_device_outside_the_set_is_refused(runtime, busybox, clean_host):
    # /dev/mem (1:1), /dev/kmsg (1:11): the host's memory and kernel log; /dev/net/tun (10:200) and
    # /dev/console (5:1), which runc before 1.2 allows whatever config.json says. Each is only opened.
    r = pyrun("run", "--rm", "--runtime", runtime, "--network", "none", busybox, "sh", "-c",
              "for n in 1:1 1:11 10:200 5:1; do mknod /tmp/n c ${n%:*} ${n#*:} && (: <> /tmp/n) && echo opened $n; "
              "rm /tmp/n; done")
    assert r.stdout == "" and r.stderr.count("Operation not permitted") == 4, r.stdout + r.stderr
    assert os.path.exists("/dev/null")
