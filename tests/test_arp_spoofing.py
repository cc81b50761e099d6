"""One container must not take over another's address: its bridge port sends only from its own MAC and IP.

NET_RAW is in the default capabilities, so a container can write any Ethernet
frame. The attacker here, B, tries each way to pass for its victim A, whose
port 8089 is published to the world:
  - gratuitous ARP claiming A's address with B's MAC, which the host believes
    at once (a gratuitous ARP overrides its neighbour entry);
  - frames from A's MAC, which teach the bridge that A now sits on B's port;
  - IPv4 from A's address, which the host would take as A's.
The effect is read from the host and the world: the host's neighbour entry
and the bridge's forwarding entry for A, A's published port from the world,
and what a UDP server on the host received.
"""
import json
import socket

from conftest import HOST_IP, fetch, pyrun, sh, wait_for

ATTACK = r"""
import socket, struct, sys, time
victim_ip, victim_mac, gateway, port = sys.argv[1], bytes.fromhex(sys.argv[2].replace(":", "")), sys.argv[3], int(sys.argv[4])
def csum(b):
    b += b"\0" * (len(b) % 2)
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xFFFF)
    return ~(s + (s >> 16)) & 0xFFFF
def arp(src_mac, sender_mac, op):
    vip = socket.inet_aton(victim_ip)
    return (b"\xff" * 6 + src_mac + b"\x08\x06" + struct.pack("!HHBBH", 1, 0x0800, 6, 4, op)
            + sender_mac + vip + b"\0" * 6 + vip)
def udp(src_mac, src_ip, text):
    src, dst = socket.inet_aton(src_ip), socket.inet_aton(gateway)
    body = struct.pack("!HHHH", 40000, port, 8 + len(text), 0) + text
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), 1, 0, 64, 17, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    return gateway_mac + src_mac + b"\x08\x00" + ip + body
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
mine = s.getsockname()[4]
my_ip = socket.inet_ntoa(__import__("fcntl").ioctl(s.fileno(), 0x8915, struct.pack("256s", b"eth0"))[20:24])
# The gateway's MAC, as this container's own kernel resolved it.
socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"hello", (gateway, port))
time.sleep(0.5)
gateway_mac = bytes.fromhex(next(l.split()[3] for l in open("/proc/net/arp") if l.startswith(gateway + " ")).replace(":", ""))
for _ in range(30):
    s.send(arp(victim_mac, victim_mac, 1))           # from the victim's own MAC: the bridge learns it here
    s.send(arp(mine, mine, 1))                       # gratuitous request: victim's IP is at my MAC
    s.send(arp(mine, mine, 2))                       # gratuitous reply, the same claim
    s.send(udp(mine, victim_ip, b"forged"))          # IPv4 from the victim's address
    time.sleep(0.1)
s.send(udp(mine, my_ip, b"honest"))                  # the control: from my own address, this one arrives
print("sent")
"""


def _neighbour_mac(ip: str) -> str | None:
    for line in sh("ip neigh show dev pyrun0").stdout.splitlines():
        fields = line.split()
        if fields[0] == ip and "lladdr" in fields:
            return fields[fields.index("lladdr") + 1]
    return None


def _port_of(mac: str) -> str | None:
    """The bridge port the bridge forwards MAC's frames to."""
    for line in sh("bridge fdb show br pyrun0").stdout.splitlines():
        if line.startswith(mac + " dev "):
            return line.split()[2]
    return None


def test_a_container_cannot_take_over_anothers_address(busybox, debian, clean_host):
    script = "mkdir -p /www && echo victim > /www/index.html && exec httpd -f -p 8000 -h /www"
    r = pyrun("run", "-d", "--init", "--name", "victim", "-p", "8089:8000", busybox, "sh", "-c", script)
    assert r.returncode == 0, r.stderr
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        # The attacker's container is up first: its port joining the bridge is not what disturbs the host.
        r = pyrun("run", "-d", "--init", "--name", "attacker", debian, "sleep", "300")
        assert r.returncode == 0, r.stderr
        server.bind(("10.199.0.1", 9099))
        server.setblocking(False)
        wait_for(lambda: fetch(f"http://{HOST_IP}:8089/", netns="world", timeout=1) == "victim\n",
                 what="the victim's port")
        record = json.loads(pyrun("inspect", "victim").stdout)[0]
        ip, mac, cid = record["NetworkSettings"]["IPAddress"], record["NetworkSettings"]["MacAddress"], record["Id"]
        victim_port = f"pv{cid[:12]}"
        assert _neighbour_mac(ip) == mac and _port_of(mac) == victim_port   # as it should be, before

        r = pyrun("exec", "attacker", "python3", "-c", ATTACK, ip, mac, "10.199.0.1", "9099")
        assert r.stdout == "sent\n", r.stderr

        received = set()
        while True:
            try:
                data, (source, _) = server.recvfrom(100)
            except BlockingIOError:
                break
            received.add((data.decode(), source))
        assert "honest" in {data for data, _ in received}, f"the control did not arrive: {received}"
        taken = {"the host's neighbour entry for the victim": _neighbour_mac(ip),
                 "the bridge port for the victim's MAC": _port_of(mac),
                 "the victim's port from the world": fetch(f"http://{HOST_IP}:8089/", netns="world", timeout=2),
                 "a packet from the victim's address reached the host": ("forged", ip) in received}
        assert taken == {"the host's neighbour entry for the victim": mac,
                         "the bridge port for the victim's MAC": victim_port,
                         "the victim's port from the world": "victim\n",
                         "a packet from the victim's address reached the host": False}
    finally:
        server.close()
        for name in ("attacker", "victim"):
            pyrun("rm", "-f", name)


def test_the_guard_goes_with_the_container_even_when_half_of_it_was_removed_by_hand(busybox, clean_host):
    """The guard's undo forgives what is gone already, as every undo does; clean_host checks nothing is left."""
    r = pyrun("run", "-d", "--init", "--name", "guarded", busybox, "sleep", "300")
    assert r.returncode == 0, r.stderr
    cid = json.loads(pyrun("inspect", "guarded").stdout)[0]["Id"]
    jump = f"PREROUTING -i pv{cid[:12]} -j PYRUN-{cid[:12]}"
    assert f"-A {jump}" in sh("ebtables-save -t nat").stdout
    sh(f"ebtables -t nat -D {jump}")
    assert pyrun("rm", "-f", "guarded").returncode == 0
