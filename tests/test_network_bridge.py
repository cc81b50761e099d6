"""The bridge network, end to end: real containers, real packets between namespaces.

"world" (198.51.100.2) is another machine on the host's link, and 203.0.113.1
behind it is the internet; the sandbox host is 198.51.100.1 (conftest.py).
"""
import contextlib
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import (HOST_IP, INTERNET_IP, REPO, WORLD_IP, fetch, pyrun, pyrun_bg, running_record, sh,
                      wait_for)

HTTPD = "mkdir -p /www && echo hello from $(hostname) > /www/index.html && exec httpd -f -p {port} -h /www"


@contextlib.contextmanager
def container(rootfs: str, script: str, *options: str, name: str | None = None, ready_url: str | None = None):
    """A running container (with --init, so SIGTERM stops it); yields its state record."""
    name = name or f"t{os.urandom(4).hex()}"
    p = pyrun_bg("run", "--rm", "--init", "--name", name, *options, rootfs, "sh", "-c", script)
    try:
        record = wait_for(lambda: running_record(name) if p.poll() is None else _died(p), what=f"container {name}")
        record["ip"] = record["NetworkSettings"]["IPAddress"]
        if ready_url:
            wait_for(lambda: fetch(ready_url.format(ip=record["ip"]), timeout=1), what=ready_url)
        yield record
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _died(p):
    raise AssertionError(f"pyrun exited with {p.returncode}: {p.stderr.read()}")


@pytest.fixture
def web(busybox, clean_host):
    with container(busybox, HTTPD.format(port=8000), "-p", "8088:8000",
                   ready_url=f"http://{HOST_IP}:8088/") as record:
        yield record


def test_published_port_from_another_machine(web):
    assert fetch(f"http://{HOST_IP}:8088/", netns="world") == f"hello from {web['Id'][:12]}\n"


def test_published_port_from_the_host_itself(web):
    assert fetch("http://127.0.0.1:8088/") == f"hello from {web['Id'][:12]}\n"
    assert fetch(f"http://{HOST_IP}:8088/") == f"hello from {web['Id'][:12]}\n"


def test_container_ip_from_the_host(web):
    assert fetch(f"http://{web['ip']}:8000/") == f"hello from {web['Id'][:12]}\n"


def test_from_another_container_direct_and_hairpin(busybox, web):
    script = f"wget -q -O - http://{web['ip']}:8000/; wget -q -O - http://{HOST_IP}:8088/"
    r = pyrun("run", "--rm", busybox, "sh", "-c", script)
    assert r.stdout == f"hello from {web['Id'][:12]}\n" * 2, r.stderr


def test_outbound_traffic_leaves_with_the_hosts_address(busybox, clean_host):
    server = subprocess.Popen(
        ["ip", "netns", "exec", "world", sys.executable, "-c",
         "import socket; s = socket.create_server(('203.0.113.1', 9000)); c, a = s.accept(); "
         "c.sendall(a[0].encode() + b'\\n'); c.close()"], stderr=subprocess.PIPE)
    try:
        time.sleep(0.3)
        r = pyrun("run", "--rm", busybox, "sh", "-c", f"nc {INTERNET_IP} 9000")
        assert r.stdout == f"{HOST_IP}\n", r.stderr  # SNAT: the world sees the host, not 10.199.x.y
    finally:
        server.kill()
        server.wait()


def test_loopback_published_port_is_private(busybox, clean_host):
    with container(busybox, HTTPD.format(port=8000), "-p", "127.0.0.1:8089:8000",
                   ready_url="http://127.0.0.1:8089/") as record:
        assert fetch("http://127.0.0.1:8089/") == f"hello from {record['Id'][:12]}\n"
        assert fetch(f"http://{HOST_IP}:8089/", netns="world", timeout=1) is None
        assert fetch(f"http://{HOST_IP}:8089/", timeout=1) is None


def test_unpublished_port_is_dropped_even_when_routed(busybox, clean_host):
    sh(f"ip netns exec world ip route add 10.199.0.0/16 via {HOST_IP}")
    try:
        with container(busybox, HTTPD.format(port=8000) + " & " + HTTPD.format(port=8001),
                       "-p", "8090:8000", ready_url=f"http://{HOST_IP}:8090/") as record:
            assert fetch(f"http://{record['ip']}:8001/", netns="world", timeout=1) is None
            assert fetch(f"http://{record['ip']}:8000/", netns="world", timeout=1) is None  # only via DNAT
            assert fetch(f"http://{HOST_IP}:8090/", netns="world") is not None
    finally:
        sh(f"ip netns exec world ip route del 10.199.0.0/16 via {HOST_IP}")


def test_forward_policy_drop_host(busybox, clean_host):
    policy = sh("iptables -S FORWARD").stdout.split()[2]  # DROP already if pyrun turned ip_forward on
    sh("iptables -P FORWARD DROP")
    try:
        with container(busybox, HTTPD.format(port=8000), "-p", "8091:8000",
                       ready_url=f"http://{HOST_IP}:8091/") as record:
            assert fetch(f"http://{HOST_IP}:8091/", netns="world") == f"hello from {record['Id'][:12]}\n"
    finally:
        sh(f"iptables -P FORWARD {policy}")


def test_port_range(busybox, clean_host):
    script = HTTPD.format(port=9000) + " & " + HTTPD.format(port=9001) + "; wait"
    with container(busybox, script, "-p", "9000-9001:9000-9001", ready_url=f"http://{HOST_IP}:9001/"):
        assert fetch(f"http://{HOST_IP}:9000/", netns="world") is not None
        assert fetch(f"http://{HOST_IP}:9001/", netns="world") is not None


UDP_ECHO = ("import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('', 5000)); "
            "print('ready', flush=True); d, a = s.recvfrom(100); s.sendto(d.upper() + a[0].encode(), a)")
UDP_ASK = ("import socket, sys; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1); "
           "s.sendto(b'ping from ', (sys.argv[1], 5001)); print(s.recv(100).decode())")


def test_udp_published_port(debian, clean_host):
    with container(debian, f"python -c \"{UDP_ECHO}\"", "-p", "5001:5000/udp"):
        for _ in range(50):
            r = sh(f"ip netns exec world {sys.executable} -c \"{UDP_ASK}\" {HOST_IP}", check=False)
            if r.returncode == 0:
                break
            time.sleep(0.1)
        # The container saw the world's own address: inbound traffic keeps its source.
        assert r.stdout == f"PING FROM {WORLD_IP}\n", r.stderr


def test_port_held_by_another_container_is_refused(web, busybox):
    r = pyrun("run", "--rm", "-p", "8088:80", busybox, "true")
    assert r.returncode == 125 and "8088" in r.stderr and "already in use" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert fetch(f"http://{HOST_IP}:8088/", netns="world") is not None  # the first still works


def test_port_held_by_a_host_process_is_refused(busybox, clean_host):
    import socket
    with socket.create_server(("0.0.0.0", 8092)):
        r = pyrun("run", "--rm", "-p", "8092:80", busybox, "true")
    assert r.returncode == 125 and "already in use" in r.stderr


def test_nothing_left_after_sigkill_and_prune(busybox, clean_host):
    p = pyrun_bg("run", "--rm", "--name", "crashy", "-p", "8093:8000", busybox, "sleep", "300")
    wait_for(lambda: running_record("crashy"), what="the container")
    assert "pyrun:" in sh("iptables-save").stdout
    p.kill()
    p.wait()
    r = pyrun("prune")
    assert r.returncode == 0 and "crashy" in r.stdout, r.stderr


def test_signals_during_teardown_do_not_interrupt_it(busybox, clean_host):
    # PID 1 without a handler ignores SIGTERM, so the container ends on its own, and the
    # signals keep coming while pyrun removes its rules and veth: it must finish the job.
    p = pyrun_bg("run", "--rm", "--name", "pelted", "-p", "8094:8000", busybox, "sleep", "1")
    wait_for(lambda: running_record("pelted"), what="the container")
    while p.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p.pid, signal.SIGTERM)
        time.sleep(0.002)
    assert p.returncode == 0, p.stderr.read()


def test_twenty_parallel_containers_get_distinct_addresses(busybox, clean_host):
    with contextlib.ExitStack() as stack:
        records = [stack.enter_context(container(busybox, HTTPD.format(port=80), "-p", f"{7000 + i}:80"))
                   for i in range(20)]
        assert len({r["ip"] for r in records}) == 20
        for i, r in enumerate(records):
            wait_for(lambda: fetch(f"http://{HOST_IP}:{7000 + i}/", netns="world", timeout=1),
                     what=f"port {7000 + i}")


def test_fifty_containers_started_at_once_get_fifty_addresses(busybox, clean_host, tmp_path):
    # Each container writes its address to a shared directory and stays until all fifty have,
    # so every lease is held at the same time.
    script = ("ip -o -4 addr show eth0 | awk '{print $4}' > /sync/$(hostname); "
              "for i in $(seq 600); do [ $(ls /sync | wc -l) -ge 50 ] && exit 0; sleep 0.1; done; exit 1")
    procs = [pyrun_bg("run", "--rm", "-v", f"{tmp_path}:/sync", busybox, "sh", "-c", script) for _ in range(50)]
    codes = [p.wait(timeout=120) for p in procs]
    assert codes == [0] * 50, [p.stderr.read() for p in procs if p.returncode]
    addresses = [f.read_text() for f in tmp_path.iterdir()]
    assert len(addresses) == 50 and len(set(addresses)) == 50, sorted(addresses)


def test_full_subnet_is_a_clear_error_and_leaves_nothing(busybox, clean_host):
    # A /30 holds a single container. It gets a sandbox of its own so its bridge cannot disturb pyrun0.
    pyrun_cmd = f"{sys.executable} -m runtime"
    script = f"""
        {pyrun_cmd} run --rm --name first {busybox} sleep 2 &
        while [ ! -e /run/pyrun-net/ipam/pyrun0/10.198.0.2 ]; do sleep 0.05; done
        {pyrun_cmd} run --rm -p 8095:80 {busybox} true; echo "second: $?"
        echo "leases: $(ls /run/pyrun-net/ipam/pyrun0) rules: $(iptables-save | grep -c pyrun:)"
        wait $!; echo "first: $?"
    """
    r = sh(f"{REPO}/scripts/sandbox sh -c '{script}'", cwd=REPO, env={**os.environ, "PYRUN_SUBNET": "10.198.0.0/30"})
    out = r.stdout + r.stderr
    assert "pyrun: ipam: network pyrun0 (10.198.0.0/30) has no free address" in out
    assert "second: 125" in out and "leases: 10.198.0.2 rules: 0" in out and "first: 0" in out, out


def test_bridge_subnet_over_a_host_route_is_a_clear_error_and_leaves_nothing(busybox, clean_host):
    # The bridge is made while the container's namespaces are (process.spawn's meanwhile), so this error
    # comes after the fork: PID 1 must be gone with everything else. A sandbox of its own has no pyrun0 yet.
    script = f"""
        ip route add 10.197.0.0/24 via {WORLD_IP}
        {sys.executable} -m runtime run --rm -p 8096:80 {busybox} true; echo "run: $?"
        echo "containers: $(ls /run/pyrun/containers | wc -l) leases: $(ls /run/pyrun-net/ipam/pyrun0 | wc -l)"
        echo "rules: $(iptables-save | grep -c pyrun:) netns: $(ls /run/netns)"
        ip link show pyrun0 2>/dev/null || echo "no pyrun0"
    """
    r = sh(f"{REPO}/scripts/sandbox sh -c '{script}'", cwd=REPO, env={**os.environ, "PYRUN_SUBNET": "10.197.0.0/16"})
    out = r.stdout + r.stderr
    assert ("pyrun: bridge: subnet 10.197.0.0/16 overlaps the route to 10.197.0.0/24; choose a free private "
            "subnet (PYRUN_SUBNET for the default)") in out, out
    assert "run: 125" in out and "containers: 0 leases: 0" in out and "rules: 0 netns: world" in out, out
    assert "no pyrun0" in out, out


DNS_SERVER = r"""
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("203.0.113.1", 53))
print("ready", flush=True)
while True:  # answers every A query with 192.0.2.55, anything else with no records
    query, peer = s.recvfrom(512)
    qtype = query[query.index(b"\0", 12) + 1:][:2]
    answer = b"\xc0\x0c\0\x01\0\x01\0\0\0\x3c\0\x04" + bytes([192, 0, 2, 55]) if qtype == b"\0\x01" else b""
    counts = b"\0\x01" + (b"\0\x01" if answer else b"\0\0") + b"\0\0\0\0"
    s.sendto(query[:2] + b"\x81\x80" + counts + query[12:] + answer, peer)
"""


def test_dns_through_the_hosts_resolver(debian, clean_host, tmp_path):
    # The host's resolver is a server on "the internet"; the container reaches it through SNAT.
    resolver = subprocess.Popen(["ip", "netns", "exec", "world", sys.executable, "-c", DNS_SERVER],
                                stdout=subprocess.PIPE, text=True)
    fake = tmp_path / "resolv.conf"
    fake.write_text(f"nameserver {INTERNET_IP}\n")
    try:
        assert resolver.stdout.readline() == "ready\n"
        sh(f"mount --bind {fake} /etc/resolv.conf")  # only in the test's own mount namespace
        try:
            r = pyrun("run", "--rm", debian, "python", "-c",
                      "import socket; print(socket.gethostbyname('demo.pyrun.test'))")
        finally:
            sh("umount /etc/resolv.conf")
        assert r.stdout == "192.0.2.55\n", r.stderr
    finally:
        resolver.kill()
        resolver.wait()


def test_resolv_conf_falls_back_from_a_loopback_resolver(busybox, clean_host, tmp_path):
    fake = tmp_path / "resolv.conf"
    fake.write_text("nameserver 127.0.0.53\noptions edns0\n")
    sh(f"mount --bind {fake} /etc/resolv.conf")  # only in the test's own mount namespace
    try:
        r = pyrun("run", "--rm", busybox, "cat", "/etc/resolv.conf")
    finally:
        sh("umount /etc/resolv.conf")
    assert "127.0.0.53" not in r.stdout and "nameserver 8.8.8.8" in r.stdout
    assert "using 8.8.8.8" in r.stderr


def test_hosts_file_names_the_container(web, busybox):
    r = pyrun("run", "--rm", "--hostname", "peer", busybox, "cat", "/etc/hosts")
    assert "\tpeer\n" in r.stdout and "10.199." in r.stdout


def test_network_host_shares_the_hosts_interfaces(busybox, clean_host):
    r = pyrun("run", "--rm", "--network", "host", busybox, "ip", "-o", "addr")
    assert HOST_IP in r.stdout, r.stderr


def test_network_none_has_only_loopback(busybox, clean_host):
    r = pyrun("run", "--rm", "--network", "none", busybox, "ip", "-o", "link")
    assert [line.split(":")[1].strip() for line in r.stdout.splitlines()] == ["lo"], r.stdout


def test_teardown_forgives_a_rule_removed_by_hand(busybox, clean_host):
    # The exact-delete batch fails when one rule is missing; the rest are then removed by their tag.
    with container(busybox, HTTPD.format(port=8000), "-p", "8079:8000", "-p", "8078:8000") as record:
        sh(f"iptables -t nat -S PYRUN-DNAT | grep -- '--dport 8079 ' | grep {record['Id']} | sed 's/^-A/-D/' "
           "| xargs -L1 iptables -t nat")
        assert "--dport 8078 " in sh("iptables -t nat -S PYRUN-DNAT").stdout
    # clean_host: nothing of the container is left
