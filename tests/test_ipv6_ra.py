"""A container's IPv6 router advertisement must reconfigure no one (the class of CVE-2020-13401).

pyrun sets up no IPv6, so nothing on its bridge may listen to one: an RA from a
container once gave the host a default route and an address via the
container, and a neighbouring container a default route via the attacker.
The attacker here is a real container with the default capabilities: NET_RAW
lets it write a whole Ethernet frame (so it needs no IPv6 of its own), an RA
with a prefix to autoconfigure from and a router lifetime. The effect is read
from the host: the sandbox host's and the neighbour's routes and addresses.
"""
from conftest import pyrun, sh, wait_for

PREFIX = "2001:db8:bad"   # documentation space

RA = r"""
import socket, struct, time
def csum(b):
    b += b"\0" * (len(b) % 2)
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xFFFF)
    return ~(s + (s >> 16)) & 0xFFFF
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
mac = s.getsockname()[4]
src, dst = socket.inet_pton(socket.AF_INET6, "fe80::bad"), socket.inet_pton(socket.AF_INET6, "ff02::1")
# ICMPv6 134: hop limit 64, no flags, router lifetime 1800 s; then the options:
# source link-layer address, and a prefix /64 with on-link and autonomous (SLAAC) set.
ra = struct.pack("!BBHBBHII", 134, 0, 0, 64, 0, 1800, 0, 0) + struct.pack("!BB6s", 1, 1, mac)
ra += struct.pack("!BBBBIII16s", 3, 4, 64, 0xC0, 86400, 14400, 0,
                  socket.inet_pton(socket.AF_INET6, "PREFIX::"))
ra = ra[:2] + struct.pack("!H", csum(src + dst + struct.pack("!I3xB", len(ra), 58) + ra)) + ra[4:]
ip6 = struct.pack("!IHBB16s16s", 6 << 28, len(ra), 58, 255, src, dst)   # hop limit 255, as RFC 4861 asks
frame = b"\x33\x33\x00\x00\x00\x01" + mac + b"\x86\xdd" + ip6 + ra
for _ in range(5):
    s.send(frame)
    time.sleep(0.2)
print("sent")
""".replace("PREFIX", PREFIX)


def _ipv6_state(netns: str | None = None) -> str:
    prefix = f"ip netns exec {netns} " if netns else ""
    return sh(f"{prefix}ip -6 route show table all; {prefix}ip -6 addr show").stdout


def test_a_containers_router_advertisement_reconfigures_neither_host_nor_neighbour(busybox, debian, clean_host):
    r = pyrun("run", "-d", "--init", "--name", "neighbour", busybox, "sleep", "300")
    assert r.returncode == 0, r.stderr
    try:
        # The neighbour's eth0 is up and addressed (IPv4) before the attack, as a victim would be.
        wait_for(lambda: "inet 10.199." in sh("ip netns exec pyrun-neighbour ip -4 addr show eth0").stdout,
                 what="the neighbour's eth0")
        r = pyrun("run", "--rm", debian, "python3", "-c", RA)
        assert r.stdout == "sent\n", r.stderr
        # The kernel handles an RA as it arrives; give a slow machine a moment all the same.
        sh("sleep 1")
        taken = {where: [line for line in _ipv6_state(netns).splitlines() if PREFIX in line or "default" in line]
                 for where, netns in (("the host", None), ("the neighbour", "pyrun-neighbour"))}
        assert taken == {"the host": [], "the neighbour": []}, "an RA from a container reconfigured them"
    finally:
        pyrun("rm", "-f", "neighbour")


def test_no_ipv6_on_the_bridge_the_ports_or_eth0(busybox, clean_host):
    """The class, not the example: nothing pyrun makes has IPv6 on, so no later IPv6 packet is taken either."""
    r = pyrun("run", "-d", "--init", "--name", "v6", busybox, "sleep", "300")
    assert r.returncode == 0, r.stderr
    try:
        cid = pyrun("inspect", "v6").stdout.split('"Id": "')[1][:12]
        for netns, link in ((None, "pyrun0"), (None, f"pv{cid}"), ("pyrun-v6", "eth0")):
            prefix = f"ip netns exec {netns} " if netns else ""
            assert sh(f"{prefix}sysctl -n net.ipv6.conf.{link}.disable_ipv6").stdout == "1\n", (netns, link)
            assert "inet6" not in sh(f"{prefix}ip -6 addr show dev {link}").stdout, (netns, link)
    finally:
        pyrun("rm", "-f", "v6")
