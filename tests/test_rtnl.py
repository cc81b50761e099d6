"""rtnl.py against the kernel: every request it sends, read back with `ip`, and its errors.

The test process runs in the sandbox's network namespace (conftest.py), so
the links made here vanish with it.
"""
import json
import subprocess
import sys

import pytest

from conftest import REPO, sh
from runtime.network import rtnl
from runtime.network.veth import netlink_in


def ip_json(*args: str, netns_pid: int | None = None):
    prefix = ["nsenter", f"--net=/proc/{netns_pid}/ns/net"] if netns_pid else []
    return json.loads(subprocess.run(prefix + ["ip", "-j", *args], check=True, capture_output=True,
                                     text=True).stdout)


@pytest.fixture
def netns_holder():
    """A process alone in a new network namespace, as a container's PID 1 is before its network is wired."""
    p = subprocess.Popen(["unshare", "--net", "sleep", "60"])
    try:
        yield p.pid
    finally:
        p.kill()
        p.wait()


def test_bridge_veth_address_and_route_as_ip_shows_them(netns_holder):
    with rtnl.Session() as nl:
        nl.add_bridge("rt-br0", "02:00:00:00:be:ef")
        try:
            bridge = nl.index("rt-br0")
            nl.up(bridge)
            nl.add_address(bridge, "10.197.0.1", 24)
            assert nl.addresses(bridge) == ["10.197.0.1"]
            assert ("10.197.0.0", 24) in nl.routes()   # the kernel's route for the address's subnet
            nl.add_veth("rt-host", bridge, "eth0", "02:42:0a:c5:00:02", netns_holder)
            [host] = ip_json("-d", "link", "show", "rt-host")
            assert host["master"] == "rt-br0" and "UP" not in host["flags"]   # created down: sysctls go first
            nl.up_hairpin(nl.index("rt-host"))

            [host] = ip_json("-d", "link", "show", "rt-host")
            assert host["master"] == "rt-br0" and "UP" in host["flags"]
            assert host["linkinfo"]["info_slave_data"]["hairpin"] is True
            [peer] = ip_json("link", "show", "eth0", netns_pid=netns_holder)
            assert peer["address"] == "02:42:0a:c5:00:02"
            assert nl.link("rt-host").get_attr("IFLA_LINK") == peer["ifindex"]   # the pair, seen from here
            [br] = ip_json("link", "show", "rt-br0")
            assert br["address"] == "02:00:00:00:be:ef"   # its own, not its port's
            nl.set_address(bridge, "02:00:00:00:be:e0")
            assert ip_json("link", "show", "rt-br0")[0]["address"] == "02:00:00:00:be:e0"

            # The container's side, through a socket opened in its namespace.
            with netlink_in(netns_holder) as inside:
                eth0 = inside.index("eth0")
                inside.add_address(eth0, "10.197.0.2", 24)
                inside.up(eth0)
                inside.add_default_route("10.197.0.1")
            [route] = ip_json("route", "show", "default", netns_pid=netns_holder)
            assert route["gateway"] == "10.197.0.1" and route["dev"] == "eth0"

            assert nl.delete("rt-host") is True
            assert nl.delete("rt-host") is False   # forgiving, like CNI's DEL
            assert sh(f"nsenter --net=/proc/{netns_holder}/ns/net ip link show eth0", check=False).returncode != 0
        finally:
            nl.delete("rt-br0")
    assert sh("ip link show rt-br0", check=False).returncode != 0


def test_refusals_name_the_request_and_the_errno():
    with rtnl.Session() as nl:
        assert nl.index("no-such-link") is None
        nl.add_bridge("rt-br1", "02:00:00:00:be:ef")
        try:
            with pytest.raises(rtnl.NetlinkError) as refused:
                nl.add_bridge("rt-br1", "02:00:00:00:be:ef")
            assert str(refused.value) == \
                "netlink: ip link add rt-br1 address 02:00:00:00:be:ef type bridge: File exists"
            assert refused.value.errno == 17
        finally:
            nl.delete("rt-br1")


def test_pyroute2_package_init_is_not_run():
    """The point of rtnl.py: a session costs pyroute2's three message modules, not the whole package."""
    probe = ("import sys; from runtime.network import rtnl; rtnl.Session().close(); "
             "print(sorted(m for m in ('asyncio', 'pyroute2.iproute', 'pyroute2.ndb', 'pyroute2.ipdb') "
             "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"
