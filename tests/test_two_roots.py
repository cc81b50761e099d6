"""Two state roots (--root) on one host (issue 11 item 13): what is the host's is shared, and never taken away.

The bridge, its addresses and the names in /run/netns belong to the host,
not to one state root. Two roots run a container of the same name on pyrun0:
both must get addresses of their own, and removing one must leave the
other's netns name and network as they were. A name taken by someone else
('ip netns add') is refused, and left to its owner.
"""
import json
import os
import shutil

import pytest

from conftest import HOST_IP, fetch, pyrun, sh, wait_for
from test_networks import HTTPD

SECOND = "/run/pyrun-second"


@pytest.fixture
def second_root(clean_host):
    env = {**os.environ, "PYRUN_ROOT": SECOND}
    yield env
    pyrun("rm", "-f", "web", env=env)
    pyrun("prune", env=env)
    shutil.rmtree(SECOND, ignore_errors=True)


def settings(env: dict | None = None) -> dict:
    r = pyrun("inspect", "web", env=env)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)[0]["NetworkSettings"]


def test_two_roots_share_pyrun0_without_colliding(busybox, second_root):
    run = ("run", "-d", "--init", "--name", "web")
    assert pyrun(*run, "-p", "8101:8000", busybox, "sh", "-c", HTTPD.format(listen="8000")).returncode == 0
    try:
        r = pyrun(*run, "-p", "8102:8000", busybox, "sh", "-c", HTTPD.format(listen="8000"), env=second_root)
        assert r.returncode == 0, r.stderr
        first, second = settings(), settings(second_root)
        assert first["IPAddress"] != second["IPAddress"]
        assert first["SandboxKey"] != second["SandboxKey"]
        for port, s in ((8101, first), (8102, second)):
            wait_for(lambda: fetch(f"http://{HOST_IP}:{port}/", netns="world", timeout=1), what=f"port {port}")
            ns = os.path.basename(s["SandboxKey"])
            assert f"inet {s['IPAddress']}/" in sh(f"ip netns exec {ns} ip -4 -o addr show eth0").stdout
        r = pyrun("network", "rm", "bridge", env=second_root)  # the first root's container is on it
        assert r.returncode == 125 and "(of another --root)" in r.stderr, r.stderr

        assert pyrun("rm", "-f", "web", env=second_root).returncode == 0
        ns = os.path.basename(first["SandboxKey"])
        assert ns == "pyrun-web" and ns in sh("ip netns list").stdout
        assert f"inet {first['IPAddress']}/" in sh(f"ip netns exec {ns} ip -4 -o addr show eth0").stdout
        assert fetch(f"http://{HOST_IP}:8101/", netns="world") == "hi\n"
        assert fetch(f"http://{first['IPAddress']}:8000/") == "hi\n"
        assert os.listdir("/run/pyrun-net/ipam/pyrun0") == [first["IPAddress"]]
    finally:
        pyrun("rm", "-f", "web")


def test_a_netns_name_taken_by_someone_else_is_refused_and_left_alone(busybox, clean_host):
    try:
        sh("ip netns add pyrun-taken")
        theirs = os.stat("/run/netns/pyrun-taken").st_ino  # the namespace's own inode, on nsfs
        r = pyrun("run", "--rm", "--name", "taken", busybox, "true")
        assert r.returncode == 125 and len(r.stderr.splitlines()) == 1, r.stderr
        assert "/run/netns/pyrun-taken exists" in r.stderr and "choose another --name" in r.stderr, r.stderr
        assert os.stat("/run/netns/pyrun-taken").st_ino == theirs  # still mounted, still the admin's
    finally:
        sh("ip netns del pyrun-taken", check=False)
