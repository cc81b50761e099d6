"""Networks that keep untrusted code in (issue 15): --internal, --opt icc=false, --opt host_access=false.

Every test is an attack from a real container: it tries the world (203.0.113.1
in the "world" namespace), services the test runs on the sandbox host itself
(on all its addresses: 198.51.100.1 and each bridge's gateway), a container on
another network, and its neighbours; what it gets is read back, and where
the attack sends without expecting an answer, the victim's own counters are
read from the host.
"""
import contextlib
import subprocess

import pytest

from conftest import HOST_IP, INTERNET_IP, fetch, pyrun, running_record, sh, snapshot, wait_for
from test_network_isolation import SERVE, get
from test_networks import up

JAIL_GATEWAY = "10.124.0.1"


def network(name: str, subnet: str, *options: str):
    r = pyrun("network", "create", "--subnet", subnet, *options, name)
    assert r.returncode == 0 and r.stdout == f"{name}\n", r.stderr


@pytest.fixture
def jail(clean_host):
    network("jail", "10.124.0.0/24", "--internal")
    yield "jail"
    assert pyrun("network", "rm", "jail").returncode == 0


@contextlib.contextmanager
def httpd(busybox: str, tmp_path, text: str, listen: str, netns: str | None = None):
    """busybox's httpd serving TEXT, run on the sandbox host (or in NETNS) from the test rootfs."""
    root = tmp_path / text
    root.mkdir()
    (root / "index.html").write_text(f"{text}\n")
    prefix = ["ip", "netns", "exec", netns] if netns else []
    server = subprocess.Popen([*prefix, f"{busybox}/bin/busybox", "httpd", "-f", "-p", listen, "-h", str(root)])
    try:
        address, port = listen.rsplit(":", 1) if ":" in listen else ("127.0.0.1", listen)
        wait_for(lambda: fetch(f"http://{address}:{port}/", netns=netns, timeout=1), what=f"{text}'s server")
        yield
    finally:
        server.kill()
        server.wait()


@pytest.fixture
def services(busybox, tmp_path):
    """A service on every address of the sandbox host (port 7777), and one on the internet (9001)."""
    with httpd(busybox, tmp_path, "host", "7777"), httpd(busybox, tmp_path, "world", f"{INTERNET_IP}:9001", "world"):
        yield


def ip(name: str) -> str:
    return running_record(name)["NetworkSettings"]["IPAddress"]


def pings(name: str, address: str) -> bool:
    return pyrun("exec", name, "ping", "-c", "1", "-W", "2", address, timeout=30).returncode == 0


def test_an_internal_network_keeps_its_containers_in(busybox, jail, services):
    up(busybox, "inmate", "--network", jail, script=SERVE.format(text="inmate"))
    up(busybox, "cellmate", "--network", jail, script=SERVE.format(text="cellmate"))
    up(busybox, "outsider", "-p", "8096:8000", script=SERVE.format(text="outsider"))
    try:
        for name in ("inmate", "cellmate", "outsider"):
            wait_for(lambda: get(name, ip(name), 8000), what=f"{name}'s own server")
        # The same attempts from the default network get through: the services are up, and the default
        # network keeps Docker's behaviour (the host's services are reachable).
        assert get("outsider", INTERNET_IP, 9001) == "world\n" and get("outsider", HOST_IP, 7777) == "host\n"
        # The attacks: the world, the host's services on each of its addresses, another network's container
        # (straight, and through its published port on the host), ICMP as well as TCP.
        assert get("inmate", INTERNET_IP, 9001) is None and not pings("inmate", INTERNET_IP)
        assert get("inmate", HOST_IP, 7777) is None and get("inmate", JAIL_GATEWAY, 7777) is None
        assert not pings("inmate", JAIL_GATEWAY)
        assert get("inmate", ip("outsider"), 8000) is None
        assert get("inmate", HOST_IP, 8096) is None  # DNAT'd: it must not be a way out either
        # ... and in: from another network's container and from the world (told the route through the host).
        assert get("outsider", ip("inmate"), 8000) is None
        sh(f"ip netns exec world ip route add 10.124.0.0/24 via {HOST_IP}")
        try:
            assert fetch(f"http://{ip('inmate')}:8000/", netns="world", timeout=1) is None
        finally:
            sh("ip netns exec world ip route del 10.124.0.0/24")
        # What still works: its neighbour, by name, and the host reaching in (as with Docker's internal networks).
        assert get("inmate", "cellmate", 8000) == "cellmate\n" and pings("inmate", "cellmate")
        assert fetch(f"http://{ip('inmate')}:8000/") == "inmate\n"
    finally:
        pyrun("rm", "-f", "inmate", "cellmate", "outsider")


def test_a_published_port_on_an_internal_network_is_refused(busybox, jail):
    before = snapshot()
    r = pyrun("run", "--rm", "--network", jail, "-p", "8095:8000", busybox, "true")
    assert r.returncode == 125 and len(r.stderr.splitlines()) == 1, r.stderr
    assert "0.0.0.0:8095->8000/tcp: network jail is --internal" in r.stderr
    assert snapshot() == before


def icmp_echoes_received(name: str) -> int:
    """The Icmp InEchos counter of container NAME's network namespace, read from the host."""
    lines = [line.split() for line in sh(f"ip netns exec pyrun-{name} cat /proc/net/snmp").stdout.splitlines()
             if line.startswith("Icmp:")]
    return int(lines[1][lines[0].index("InEchos")])


@pytest.mark.parametrize("br_netfilter", ["1", "0"], ids=["br_netfilter", "no-br_netfilter"])
def test_icc_false_keeps_neighbours_apart(busybox, clean_host, br_netfilter):
    """Without br_netfilter, frames between two ports of a bridge never meet iptables: only the bridge's
    isolated ports stop them."""
    saved = sh("sysctl -n net.bridge.bridge-nf-call-iptables").stdout.strip()
    sh(f"sysctl -qw net.bridge.bridge-nf-call-iptables={br_netfilter}")
    network("apart", "10.125.0.0/24", "--opt", "icc=false")
    try:
        up(busybox, "one", "--network", "apart", "--cap-add", "NET_ADMIN", script=SERVE.format(text="one"))
        up(busybox, "two", "--network", "apart", "-p", "8094:8000", script=SERVE.format(text="two"))
        for name in ("one", "two"):
            wait_for(lambda: get(name, ip(name), 8000), what=f"{name}'s own server")
        assert get("one", "two", 8000) is None and get("two", "one", 8000) is None
        echoes = icmp_echoes_received("two")
        assert not pings("one", "two") and not pings("two", "one")
        # Another way round: "one" routes to its neighbour through the gateway, which the bridge lets it reach.
        assert pyrun("exec", "one", "ip", "route", "add", f"{ip('two')}/32", "via", "10.125.0.1").returncode == 0
        pyrun("exec", "one", "ping", "-c", "3", "-W", "1", ip("two"), timeout=30)
        assert icmp_echoes_received("two") == echoes  # not one echo request got there
        # Nor through its published port on the host's address (DNAT'd back onto the bridge), as in Docker.
        assert get("one", HOST_IP, 8094) is None
        # What still works: the world, and the published port, for everyone off the network.
        assert pings("one", INTERNET_IP) and pings("two", INTERNET_IP)
        assert fetch(f"http://{HOST_IP}:8094/", netns="world") == "two\n"
    finally:
        pyrun("rm", "-f", "one", "two")
        pyrun("network", "rm", "apart")
        sh(f"sysctl -qw net.bridge.bridge-nf-call-iptables={saved}")


def test_host_access_false_keeps_the_hosts_services_out_of_reach(busybox, clean_host, services):
    network("guarded", "10.126.0.0/24", "--opt", "host_access=false")
    try:
        up(busybox, "guest", "--network", "guarded", "-p", "8093:8000", script=SERVE.format(text="guest"))
        wait_for(lambda: get("guest", ip("guest"), 8000), what="its own server")
        assert get("guest", HOST_IP, 7777) is None and get("guest", "10.126.0.1", 7777) is None
        assert get("guest", "10.199.0.1", 7777) is None  # another of the host's addresses, the default bridge's
        assert not pings("guest", "10.126.0.1")
        assert get("guest", INTERNET_IP, 9001) == "world\n"
        assert get("guest", HOST_IP, 8093) == "guest\n"  # its own published port, DNAT'd back: hairpin works
        assert fetch(f"http://{HOST_IP}:8093/", netns="world") == "guest\n"
    finally:
        pyrun("rm", "-f", "guest")
        pyrun("network", "rm", "guarded")


def test_network_ls_and_inspect_show_the_options(clean_host):
    network("quiet", "10.127.0.0/24", "--internal", "-o", "com.docker.network.bridge.enable_icc=false")
    try:
        row = next(line for line in pyrun("network", "ls").stdout.splitlines() if line.startswith("quiet "))
        assert row.split()[-1] == "internal,icc=false"
        text = pyrun("network", "inspect", "quiet").stdout
        assert "reach nothing beyond the bridge (internal), not each other" in text
        assert "PYRUN-INTERNAL" in text and "MASQUERADE" in text  # the hairpin's, not the way out
        assert not any("! -o" in line and "MASQUERADE" in line for line in text.splitlines())
    finally:
        pyrun("network", "rm", "quiet")


def test_explain_prints_the_networks_rules(busybox, clean_host):
    network("shown", "10.127.0.0/24", "--internal", "--opt", "icc=false")
    try:
        out = pyrun("run", "--explain", "--network", "shown", busybox, "true").stdout
        assert "-A PYRUN-INTERNAL" in out and "isolated on" in out
        assert not any("MASQUERADE" in line and "! -o" in line for line in out.splitlines())
    finally:
        pyrun("network", "rm", "shown")


@pytest.mark.parametrize("options,message", [
    (["--opt", "icc"], "'icc': expected icc=true|false or host_access=true|false"),
    (["--opt", "icc=maybe"], "'icc=maybe': expected"),
    (["-o", "mtu=1400"], "'mtu=1400': expected"),
])
def test_bad_network_options_are_125_and_change_nothing(clean_host, options, message):
    before = snapshot()
    r = pyrun("network", "create", "--subnet", "10.128.0.0/24", *options, "bad")
    assert r.returncode == 125 and message in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
    assert snapshot() == before and " bad " not in pyrun("network", "ls").stdout


def test_sandboxed_code_on_an_internal_network_reaches_its_peer_and_nothing_else(busybox, jail, services):
    """--sandbox's network is none; --network NAME of an internal network gives it a peer, a grader say."""
    up(busybox, "grader", "--network", jail, script=SERVE.format(text="grader"))
    wait_for(lambda: get("grader", ip("grader"), 8000), what="the grader's server")
    attempts = " ".join([f"{INTERNET_IP}:9001", f"{HOST_IP}:7777", f"{JAIL_GATEWAY}:7777", "grader:8000"])
    script = (f"for a in {attempts}; do printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 ${{a%:*}} ${{a#*:}} "
              "| tail -n 1 | sed \"s|^|$a |\"; done; id -u")
    try:
        r = pyrun("run", "--rm", "--sandbox", "--network", jail, busybox, "sh", "-c", script)
        assert r.returncode == 0 and r.stdout == "grader:8000 grader\n65534\n", r.stdout + r.stderr
    finally:
        pyrun("rm", "-f", "grader")
