"""The bridge has a MAC of its own: removing one container never cuts the others off from their gateway.

A Linux bridge without an address set takes the lowest MAC among its ports.
The containers cache that MAC as their gateway's; when the container whose
port it was goes, the bridge takes another, and every other container sends
to a MAC no one answers to until its ARP entry times out (about 52 s of
failed requests, measured). Here A's port is given the lowest MAC there can
be, B's traffic through NAT to "the internet" is seen working, A is removed,
and each of B's next requests must succeed within its own timeout.
"""
import re

from conftest import INTERNET_IP, pyrun, sh


def _mac(link: str) -> str:
    return re.search(r"link/ether ([0-9a-f:]{17})", sh(f"ip -o link show {link}").stdout).group(1)


def _own(mac: str) -> bool:
    """A MAC someone chose: locally administered and unicast (a bridge left without ports has 00:00:...)."""
    return int(mac[:2], 16) & 0b11 == 0b10


def _ping(name: str) -> bool:
    return pyrun("exec", name, "ping", "-c", "1", "-W", "2", INTERNET_IP).returncode == 0


def test_removing_a_container_does_not_stall_the_others(busybox, clean_host):
    for name in ("first", "second"):
        r = pyrun("run", "-d", "--init", "--name", name, busybox, "sleep", "300")
        assert r.returncode == 0, r.stderr
        if name == "first":
            # A's port now has the lowest MAC a port can have: a bridge without a MAC of its own takes it.
            first_port = sh("ip -o link show master pyrun0").stdout.split(": ")[1].split("@")[0]
            sh(f"ip link set {first_port} address 02:00:00:00:00:01")
    try:
        bridge_mac = _mac("pyrun0")
        assert _ping("second")   # B's ARP cache now holds its gateway's MAC
        assert pyrun("rm", "-f", "first").returncode == 0
        assert [_ping("second") for _ in range(5)] == [True] * 5
        assert _mac("pyrun0") == bridge_mac
    finally:
        for name in ("first", "second"):
            pyrun("rm", "-f", name)


def test_the_bridge_mac_is_its_own_and_stable(busybox, clean_host):
    """Not any port's, and the same however the bridge is made again."""
    r = pyrun("run", "--rm", busybox, "true")
    assert r.returncode == 0, r.stderr
    mac = _mac("pyrun0")
    assert _own(mac), mac
    r = pyrun("run", "-d", "--init", "--name", "port", busybox, "sleep", "300")
    try:
        port = sh("ip -o link show master pyrun0").stdout.split(": ")[1].split("@")[0]
        sh(f"ip link set {port} address 00:00:00:00:00:01")   # lower than any
        assert _mac("pyrun0") == mac
    finally:
        pyrun("rm", "-f", "port")


def test_a_bridge_made_without_a_mac_of_its_own_gets_one(busybox, clean_host):
    """A bridge from an older pyrun (or made by hand, as the seed blog does) is given its MAC at the next run."""
    assert pyrun("run", "--rm", busybox, "true").returncode == 0
    mac = _mac("pyrun0")
    assert _own(mac), mac
    assert pyrun("network", "rm", "bridge").returncode == 0
    sh("ip link add pyrun0 type bridge")
    assert _mac("pyrun0") != mac
    assert pyrun("run", "--rm", busybox, "true").returncode == 0
    assert _mac("pyrun0") == mac
