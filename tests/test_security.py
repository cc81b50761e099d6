"""Privileges: Docker's capability set, no_new_privs, and no inherited file descriptors."""
import pytest

from conftest import pyrun

# Every guarantee here is the runtime's to keep: each test runs under each (conftest.RUNTIMES).
pytestmark = pytest.mark.usefixtures("each_runtime")

# Docker's 14 default capabilities as the bitmask /proc/PID/status prints.
DOCKER_DEFAULT = "00000000a80425fb"


def status_fields(rootfs, *options) -> dict:
    r = pyrun("run", "--rm", "--network", "none", *options, rootfs, "cat", "/proc/self/status")
    assert r.returncode == 0, r.stderr
    return dict(line.split(":\t", 1) for line in r.stdout.splitlines() if ":\t" in line)


def test_capabilities_are_dockers_default(busybox, clean_host):
    s = status_fields(busybox)
    assert (s["CapBnd"], s["CapPrm"], s["CapEff"]) == (DOCKER_DEFAULT,) * 3
    assert (s["CapInh"], s["CapAmb"]) == ("0000000000000000",) * 2
    assert s["NoNewPrivs"] == "1"


def test_cap_add_and_drop(busybox, clean_host):
    s = status_fields(busybox, "--cap-add", "NET_ADMIN", "--cap-drop", "chown")
    bits = int(s["CapBnd"], 16)
    assert bits & (1 << 12) and not bits & (1 << 0)  # CAP_NET_ADMIN=12, CAP_CHOWN=0
    assert (s["CapInh"], s["CapAmb"]) == ("0000000000000000",) * 2  # CVE-2022-29162


def test_dropped_capability_is_enforced(busybox, clean_host):
    r = pyrun("run", "--rm", "--network", "none", "--cap-drop", "CHOWN", busybox, "chown", "nobody", "/tmp")
    assert r.returncode != 0 and "Operation not permitted" in r.stderr


def test_only_stdio_reaches_the_container(busybox, clean_host):
    r = pyrun("run", "--rm", "--network", "none", busybox, "ls", "/proc/self/fd")
    # ls itself opens one fd to read the directory.
    assert r.stdout.split() in (["0", "1", "2"], ["0", "1", "2", "3"]), r.stdout
    r = pyrun("run", "--rm", "--network", "none", busybox, "sh", "-c", "ls /proc/1/fd")
    assert r.stdout.split() == ["0", "1", "2"] or r.stdout.split()[:3] == ["0", "1", "2"]
