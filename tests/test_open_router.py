"""The host as an open router (issue 11 item 7): a neighbour routes through the host into a LAN behind it.

The sandbox host gets a second link, to a namespace "lan" (192.0.2.0/24)
with a web server in it: the office network behind a machine that runs
pyrun. "world" is told that 192.0.2.0/24 is reached via the host, as any
machine on the host's link can tell itself. Forwarding is off before pyrun
starts, as on a fresh Debian host; once pyrun has turned it on for its
containers, the neighbour must still not get through to the LAN.
"""
import subprocess
import sys

import pytest

from conftest import HOST_IP, INTERNET_IP, fetch, pyrun, sh, wait_for
from test_network_bridge import HTTPD, container

LAN_GATEWAY, LAN_SERVER = "192.0.2.1", "192.0.2.2"
LAN_URL = f"http://{LAN_SERVER}:8000/"


@pytest.fixture
def lan(busybox, tmp_path):
    (tmp_path / "index.html").write_text("the lan\n")
    sh("ip netns add lan && ip link add lan0 type veth peer name eth0 netns lan")
    sh(f"ip addr add {LAN_GATEWAY}/24 dev lan0 && ip link set lan0 up")
    sh(f"ip netns exec lan sh -c 'ip link set lo up; ip addr add {LAN_SERVER}/24 dev eth0; ip link set eth0 up; "
       f"ip route add default via {LAN_GATEWAY}'")
    sh(f"ip netns exec world ip route add 192.0.2.0/24 via {HOST_IP}")
    # busybox's httpd, run on the host from the test rootfs (python's http.server looks up its own name first)
    server = subprocess.Popen(["ip", "netns", "exec", "lan", f"{busybox}/bin/busybox", "httpd", "-f",
                               "-p", f"{LAN_SERVER}:8000", "-h", str(tmp_path)])
    try:
        wait_for(lambda: fetch(LAN_URL, timeout=1), what="the lan's server, from the host")
        yield
    finally:
        server.kill()
        server.wait()
        sh("ip netns exec world ip route del 192.0.2.0/24", check=False)
        sh("ip link del lan0", check=False)
        sh("ip netns del lan", check=False)


def forwarding() -> tuple[str, str]:
    """(net.ipv4.ip_forward, filter FORWARD's policy) on the sandbox host."""
    policy = sh("iptables -S FORWARD").stdout.splitlines()[0].split()[2]
    return sh("sysctl -n net.ipv4.ip_forward").stdout.strip(), policy


def host_without_pyrun(ip_forward: int) -> None:
    """A host with no pyrun network yet, forwarding as its admin set it and FORWARD's policy ACCEPT."""
    assert pyrun("network", "rm", "bridge").returncode in (0, 125)  # pyrun0 may not exist yet
    assert "PYRUN" not in sh("iptables-save").stdout
    sh(f"sysctl -qw net.ipv4.ip_forward={ip_forward} && iptables -P FORWARD ACCEPT")


def world_sees(busybox) -> str:
    """What a container's connection to the internet looks like from there: its source address."""
    server = subprocess.Popen(
        ["ip", "netns", "exec", "world", sys.executable, "-c",
         "import socket; s = socket.create_server(('203.0.113.1', 9001)); print('ready', flush=True); "
         "c, a = s.accept(); c.sendall(a[0].encode() + b'\\n'); c.close()"], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline() == "ready\n"
        return pyrun("run", "--rm", busybox, "sh", "-c", f"nc -w 3 {INTERNET_IP} 9001").stdout
    finally:
        server.kill()
        server.wait()


def test_a_neighbour_cannot_route_through_the_host_into_a_lan_behind_it(busybox, lan, clean_host):
    host_without_pyrun(ip_forward=0)
    assert fetch(LAN_URL, netns="world", timeout=1) is None  # before pyrun: the host routes nothing
    with container(busybox, HTTPD.format(port=8000), "-p", "8097:8000", ready_url=f"http://{HOST_IP}:8097/"):
        assert fetch(LAN_URL, netns="world", timeout=1) is None  # the attack: through the host into the lan
        assert forwarding() == ("1", "DROP")
        assert fetch(f"http://{HOST_IP}:8097/", netns="world") is not None  # pyrun's own traffic still flows
        assert world_sees(busybox) == f"{HOST_IP}\n"
        assert fetch(LAN_URL) == "the lan\n"  # the host itself still reaches its lan: that is not forwarding
    assert pyrun("network", "rm", "bridge").returncode == 0
    assert forwarding() == ("0", "ACCEPT")  # pyrun's last network puts back what pyrun changed


def test_forwarding_the_admin_turned_on_stays_as_they_set_it(busybox, lan, clean_host):
    host_without_pyrun(ip_forward=1)  # this host is a router on purpose
    try:
        assert world_sees(busybox) == f"{HOST_IP}\n"
        assert forwarding() == ("1", "ACCEPT")
        assert fetch(LAN_URL, netns="world") == "the lan\n"  # the admin's routing is not pyrun's to break
        assert pyrun("network", "rm", "bridge").returncode == 0
        assert forwarding() == ("1", "ACCEPT")
    finally:
        sh("sysctl -qw net.ipv4.ip_forward=0")
