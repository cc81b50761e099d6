"""User-defined networks, network inspect and doctor: real bridges, real packets, the kernel's own state."""
import json
import shutil
import subprocess

import pytest

from conftest import pyrun, sh, snapshot, wait_for

HTTPD = "mkdir -p /www && echo hi > /www/index.html && exec httpd -f -p {listen} -h /www"


def up(rootfs: str, name: str, *options: str, script: str = "sleep 300") -> None:
    r = pyrun("run", "-d", "--init", "--name", name, *options, rootfs, "sh", "-c", script)
    assert r.returncode == 0, r.stderr


@pytest.fixture
def lab(clean_host):
    r = pyrun("network", "create", "--subnet", "10.123.0.0/24", "lab")
    assert r.returncode == 0 and r.stdout == "lab\n", r.stderr
    yield "lab"
    pyrun("network", "rm", "lab")


def test_containers_on_a_user_network_find_each_other_by_name(busybox, lab):
    up(busybox, "alpha", "--network", "lab")
    up(busybox, "beta", "--network", "lab")
    try:
        r = pyrun("exec", "alpha", "ping", "-c", "1", "-W", "2", "beta")
        assert r.returncode == 0 and "10.123.0." in r.stdout, r.stdout + r.stderr
        assert pyrun("exec", "beta", "ping", "-c", "1", "-W", "2", "alpha").returncode == 0
        row = next(line for line in pyrun("network", "ls").stdout.splitlines() if line.startswith("lab "))
        assert row.split()[2:] == ["10.123.0.0/24", "10.123.0.1", "2", "-"]  # "-": no options
    finally:
        pyrun("rm", "-f", "beta")
    assert "beta" not in pyrun("exec", "alpha", "cat", "/etc/hosts").stdout  # gone from the peer's file
    pyrun("rm", "-f", "alpha")


def test_network_rm_of_a_network_in_use_is_125(busybox, lab):
    up(busybox, "holder", "--network", "lab")
    before = snapshot()
    r = pyrun("network", "rm", "lab")
    assert r.returncode == 125 and "in use by holder" in r.stderr and snapshot() == before
    pyrun("rm", "-f", "holder")
    assert pyrun("network", "rm", "lab").returncode == 0
    assert "pr-" not in sh("ip -o link").stdout


BAD = [
    (["network", "create", "--subnet", "10.123.0.128/25", "other"], "overlaps network lab (10.123.0.0/24)"),
    (["network", "create", "--subnet", "10.199.0.0/24", "other"], "overlaps network bridge"),
    (["network", "create", "--subnet", "10.5.0.0/33", "other"], "'10.5.0.0/33'"),
    (["network", "create", "--subnet", "10.5.0.1/24", "other"], "has host bits set"),
    (["network", "create", "--subnet", "8.8.8.0/24", "other"], "expected a private IPv4 network"),
    (["network", "create", "--subnet", "10.6.0.0/24", "host"], "'host' is reserved"),
    (["network", "create", "--subnet", "10.6.0.0/24", "lab"], "'lab': a network of this name exists"),
    (["network", "create", "--subnet", "10.6.0.0/24", "bad name"], "'bad name': expected"),
    (["network", "rm", "nosuch"], "no such network: 'nosuch'"),
    (["network", "inspect", "--format", "png", "lab"], "'png': expected text, json, dot or svg"),
    (["doctor", "-p", "9999"], "no running container publishes port 9999"),
    (["doctor", "-p", "http"], "'http': expected a host port number"),
]


@pytest.mark.parametrize("args,message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_network_input_is_125_and_changes_nothing(lab, args, message):
    before, networks = snapshot(), pyrun("network", "ls").stdout
    r = pyrun(*args)
    assert r.returncode == 125 and message in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
    assert snapshot() == before and pyrun("network", "ls").stdout == networks


def test_network_rm_bridge_removes_pyrun0_and_pyruns_chains(busybox, clean_host):
    assert pyrun("run", "--rm", busybox, "true").returncode == 0  # the default bridge exists now
    assert pyrun("network", "rm", "bridge").returncode == 0
    assert "pyrun0" not in sh("ip -o link").stdout and "PYRUN" not in sh("iptables-save").stdout
    assert pyrun("run", "--rm", busybox, "true").returncode == 0  # and comes back on first use
    assert "pyrun0" in sh("ip -o link").stdout


def test_network_inspect_reads_the_veth_pair_from_the_kernel(busybox, clean_host):
    up(busybox, "seen", "-p", "8085:80")
    try:
        info = json.loads(pyrun("network", "inspect", "--format", "json").stdout)
        [c] = [c for c in info["containers"] if c["name"] == "seen"]
        host_index = sh(f"ip -o link show dev {c['host_end']}").stdout.split(":")[0]
        peer_index = sh("ip netns exec pyrun-seen cat /sys/class/net/eth0/ifindex").stdout.strip()
        assert (str(c["host_ifindex"]), str(c["peer_ifindex"])) == (host_index, peer_index)
        assert c["ports"] == ["0.0.0.0:8085->80/tcp"] and c["ip"].startswith("10.199.")
        assert any("--dport 8085" in rule and "PYRUN-DNAT" in rule for rule in info["rules"])
        text = pyrun("network", "inspect").stdout
        assert f"{c['host_end']} ==== eth0 {c['ip']} [seen]" in text
        assert pyrun("network", "inspect", "--format", "dot").stdout.startswith("graph pyrun {")
        r = pyrun("network", "inspect", "--format", "svg")
        if shutil.which("dot"):
            assert r.returncode == 0 and "<svg" in r.stdout, r.stderr
        else:
            assert r.returncode == 125 and "needs Graphviz's dot" in r.stderr
    finally:
        pyrun("rm", "-f", "seen")


def _doctor(port: int) -> tuple[int, str]:
    r = pyrun("doctor", "-p", str(port))
    return r.returncode, r.stdout


@pytest.fixture
def served(busybox, clean_host):
    up(busybox, "served", "-p", "8084:8000", script=HTTPD.format(listen="8000"))
    wait_for(lambda: _doctor(8084)[0] == 0, what="a healthy path")
    yield
    pyrun("rm", "-f", "served")


def test_doctor_finds_nothing_wrong_with_a_healthy_port(served):
    code, out = _doctor(8084)
    assert code == 0 and out.count(" ok ") == 16 and "FAIL" not in out


def test_doctor_names_a_server_listening_on_127_0_0_1_only(busybox, clean_host):
    up(busybox, "shy", "-p", "8083:8000", script=HTTPD.format(listen="127.0.0.1:8000"))
    try:
        code, out = wait_for(lambda: (d := _doctor(8083)) and "listens" in d[1] and d, what="the server")
        assert code == 1 and "FAIL in the container only 127.0.0.1 listens on port 8000/tcp" in out
    finally:
        pyrun("rm", "-f", "shy")


@pytest.mark.parametrize("breakage,repair,named", [
    ("sysctl -qw net.ipv4.ip_forward=0", "sysctl -qw net.ipv4.ip_forward=1", "net.ipv4.ip_forward is off"),
    ("iptables -I FORWARD 1 -j DROP", "iptables -D FORWARD 1", "FORWARD does not reach PYRUN-FORWARD first"),
    ("sysctl -qw net.ipv4.conf.pyrun0.route_localnet=0", "sysctl -qw net.ipv4.conf.pyrun0.route_localnet=1",
     "route_localnet is off for pyrun0"),
    ("iptables -t nat -S PYRUN-DNAT | grep -- '--dport 8084' | sed 's/^-A/-D/' | xargs -L1 iptables -t nat", "true",
     "no DNAT rule for port 8084"),
], ids=["ip_forward", "forward-drop", "route_localnet", "dnat"])
def test_doctor_names_the_first_broken_hop(served, breakage, repair, named):
    sh(breakage)
    try:
        code, out = _doctor(8084)
    finally:
        subprocess.run(repair, shell=True)
    assert code == 1 and out.splitlines()[-1].split(" ", 2)[1] == "FAIL" and named in out.splitlines()[-1], out
