"""pyrun doctor against real breakages of the wire: each fault is made by hand, as an admin or a stray
script would make it, and doctor must name that hop, with the command that mends it, and exit 1."""
import subprocess

import pytest

from conftest import pyrun, running_record, sh, wait_for
from test_networks import HTTPD, up


def _doctor(port: int) -> tuple[int, list[str]]:
    r = pyrun("doctor", "-p", str(port))
    return r.returncode, r.stdout.splitlines()


@pytest.fixture
def served(busybox, clean_host):
    up(busybox, "served", "-p", "8084:8000", script=HTTPD.format(listen="8000"))
    wait_for(lambda: _doctor(8084)[0] == 0, what="a healthy path")
    yield "pv" + running_record("served")["Id"][:12]
    pyrun("rm", "-f", "served")


def test_a_healthy_path_ends_with_real_connections(served):
    code, lines = _doctor(8084)
    assert code == 0 and all(" ok " in line for line in lines), lines
    assert lines[-2].endswith("the host connects to 127.0.0.1:8084")
    assert lines[-1].endswith("another machine connects to the host's address, port 8084")


INSIDE = "ip netns exec pyrun-served"
GATEWAY = "ip route add default via 10.199.0.1"


@pytest.mark.parametrize("breakage,repair,named", [
    ("ip link set {veth} down", "ip link set {veth} up", "{veth} is down; ip link set {veth} up"),
    (f"{INSIDE} ip link set eth0 down", f"{INSIDE} ip link set eth0 up; {INSIDE} {GATEWAY}",
     f"the container's eth0 is down; {INSIDE} ip link set eth0 up"),
    ("ip link set pyrun0 down", "ip link set pyrun0 up", "the bridge pyrun0 is down"),
    ("ip link set {veth} nomaster", "ip link set {veth} master pyrun0",
     "{veth} is not plugged into pyrun0: the bridge cannot forward to it; ip link set {veth} master pyrun0"),
    (f"{INSIDE} ip route del default", f"{INSIDE} {GATEWAY}",
     f"the container has no default route via 10.199.0.1: its replies to other networks go nowhere; "
     f"{INSIDE} {GATEWAY}"),
    ("iptables -I PYRUN-FORWARD 1 -j DROP", "iptables -D PYRUN-FORWARD 1",
     "a rule that is not pyrun's drops in its chain: PYRUN-FORWARD -j DROP"),
    # Nothing doctor reads shows this one: only the real connection from outside finds it.
    ("iptables -t raw -I PREROUTING -p tcp --dport 8084 -j DROP", "iptables -t raw -D PREROUTING 1",
     "another machine cannot connect to the host's address, port 8084, although the host itself can"),
], ids=["veth-down", "eth0-down", "bridge-down", "nomaster", "no-default-route", "drop-in-pyrun-chain", "probe"])
def test_doctor_names_the_broken_hop_and_its_fix(served, breakage, repair, named):
    veth = served
    sh(breakage.format(veth=veth))
    try:
        code, lines = _doctor(8084)
    finally:
        subprocess.run(repair.format(veth=veth), shell=True)
    assert code == 1 and lines[-1].split(" ", 2)[1] == "FAIL" and named.format(veth=veth) in lines[-1], lines
    wait_for(lambda: _doctor(8084)[0] == 0, what="the path mended by the printed command")


def test_doctor_proves_a_loopback_port_stays_private(busybox, clean_host):
    up(busybox, "private", "-p", "127.0.0.1:8085:8000", script=HTTPD.format(listen="8000"))
    try:
        code, lines = wait_for(lambda: (d := _doctor(8085)) and d[0] == 0 and d, what="a healthy path")
        assert lines[-1].endswith("another machine cannot reach port 8085: it is published on 127.0.0.1 only")
    finally:
        pyrun("rm", "-f", "private")


def test_ss_and_doctor_name_who_holds_a_published_port(served):
    """A learner asking the kernel who owns port 8084 finds pyrun's monitor, as docker-proxy in Docker."""
    monitor = running_record("served")["Monitor"]["Pid"]
    assert f'users:(("pyrun-monitor",pid={monitor},' in sh("ss -Hltnp 'sport = :8084'").stdout
    assert f"pyrun-monitor (pid {monitor}) holds the port" in _doctor(8084)[1][0]
    assert f"0.0.0.0:8084->8000/tcp (held by pyrun-monitor (pid {monitor}))" in pyrun("network", "inspect").stdout
