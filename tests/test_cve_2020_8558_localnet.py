"""CVE-2020-8558: with route_localnet on, a neighbour could send packets to 127.0.0.1:PORT over the wire and
reach services published only on the host's loopback. pyrun turns route_localnet on for its bridge only, never
DNATs 127.0.0.0/8 in PREROUTING, and drops bridge traffic to 127/8 that is not a reply.

The attack is real: "world" forges TCP SYNs to 127.0.0.1:PORT with raw frames addressed to the host's MAC.
The DNAT rule's own packet counter shows whether any of them was translated toward the container.
"""
import re
import subprocess
import sys

from conftest import HOST_IP, pyrun, sh, wait_for

FORGE = r"""
import socket, struct, sys
port, host_mac, my_mac = int(sys.argv[1]), sys.argv[2], sys.argv[3]
def csum(b):
    b += b"\0" * (len(b) % 2)
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xFFFF)
    return ~(s + (s >> 16)) & 0xFFFF
src, dst = socket.inet_aton("198.51.100.2"), socket.inet_aton("127.0.0.1")
tcp = struct.pack("!HHIIBBHHH", 40000, port, 1, 0, 5 << 4, 0x02, 64240, 0, 0)
tcp = tcp[:16] + struct.pack("!H", csum(src + dst + struct.pack("!BBH", 0, 6, len(tcp)) + tcp)) + tcp[18:]
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0, 64, 6, 0, src, dst)
ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
frame = bytes.fromhex(host_mac.replace(":", "")) + bytes.fromhex(my_mac.replace(":", "")) + b"\x08\x00" + ip + tcp
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
for _ in range(10):
    s.send(frame)
print("sent")
"""


def _mac(command: str) -> str:
    return re.search(r"link/ether ([0-9a-f:]{17})", sh(command).stdout).group(1)


def _dnat_packets(port: int) -> int:
    for line in sh("iptables-save -c -t nat").stdout.splitlines():
        if "-A PYRUN-DNAT" in line and f"--dport {port} " in line:
            return int(line[1:].split(":")[0])
    raise AssertionError(f"no DNAT rule for port {port}")


def _forge(port: int) -> None:
    r = subprocess.run(["ip", "netns", "exec", "world", sys.executable, "-c", FORGE, str(port),
                        _mac("ip -o link show wan"), _mac("ip netns exec world ip -o link show eth0")],
                       capture_output=True, text=True)
    assert r.stdout == "sent\n", r.stderr


def _container(busybox: str, name: str, publish: str):
    script = "mkdir -p /www && echo hi > /www/index.html && exec httpd -f -p 8000 -h /www"
    r = pyrun("run", "-d", "--name", name, "-p", publish, busybox, "sh", "-c", script)
    assert r.returncode == 0, r.stderr


def test_forged_packets_to_a_loopback_published_port_are_not_translated(busybox, clean_host):
    _container(busybox, "private", "127.0.0.1:8071:8000")
    try:
        _forge(8071)
        assert _dnat_packets(8071) == 0  # not one of the forged SYNs reached the DNAT rule
        # The control: the host's own connection to 127.0.0.1:8071 is translated, and counted.
        wait_for(lambda: sh("wget -q -O - http://127.0.0.1:8071/", check=False).stdout == "hi\n", what="the port")
        assert _dnat_packets(8071) > 0
    finally:
        pyrun("rm", "-f", "private")


def test_forged_packets_to_127_0_0_1_do_not_reach_a_port_published_everywhere(busybox, clean_host):
    _container(busybox, "public", "8072:8000")
    try:
        _forge(8072)
        assert _dnat_packets(8072) == 0
        wait_for(lambda: subprocess.run(["ip", "netns", "exec", "world", "wget", "-q", "-O", "-",
                                         f"http://{HOST_IP}:8072/"], capture_output=True, text=True).stdout == "hi\n",
                 what="the port from the world")
        assert _dnat_packets(8072) > 0  # the same port, asked for properly, is translated
    finally:
        pyrun("rm", "-f", "public")
