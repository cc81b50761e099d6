"""Bad input: one line naming the value and what is accepted, exit 125, nothing left behind."""
import os

import pytest

from conftest import pyrun, sh

CASES = [
    (["/no/such/rootfs", "true"], "'/no/such/rootfs' does not exist"),
    (["/etc/passwd", "true"], "is not a directory"),
    (["--memory", "lots", "{rootfs}", "true"], "'lots': expected a number"),
    (["--memory", "1k", "{rootfs}", "true"], "the minimum is 6m"),
    (["--cpus", "-1", "{rootfs}", "true"], "'-1': expected a number from 0.01"),
    (["--cpus", "many", "{rootfs}", "true"], "'many'"),
    (["--pids-limit", "0", "{rootfs}", "true"], "'0': expected a whole number"),
    (["--cap-add", "FLY", "{rootfs}", "true"], "'FLY': not a capability"),
    (["-v", "nocolon", "{rootfs}", "true"], "expected HOST_PATH:CONTAINER_PATH"),
    (["-v", "/no/such/dir:/data", "{rootfs}", "true"], "does not exist"),
    (["-v", "/tmp:relative", "{rootfs}", "true"], "must be absolute"),
    (["-v", "/tmp:/../../etc", "{rootfs}", "true"], "may not contain '..'"),
    (["-v", "/tmp:/data:rx", "{rootfs}", "true"], "[:ro|rw]"),
    (["-e", "1BAD=x", "{rootfs}", "true"], "expected NAME=VALUE"),
    (["--network", "wifi", "{rootfs}", "true"], "expected one of bridge, none, host"),
    (["--name", "bad name", "{rootfs}", "true"], "'bad name'"),
    (["--hostname", "-bad-", "{rootfs}", "true"], "'-bad-'"),
    (["{rootfs}"], "no command given"),
    (["--no-such-flag", "{rootfs}", "true"], "no-such-flag"),
    (["-p", "0:80", "{rootfs}", "true"], "outside 1-65535"),
    (["-p", "70000:80", "{rootfs}", "true"], "outside 1-65535"),
    (["-p", "abc", "{rootfs}", "true"], "both a host and a container port"),
    (["-p", "80", "{rootfs}", "true"], "both a host and a container port"),
    (["-p", "8088:8000/sctp", "{rootfs}", "true"], "'sctp' is not supported"),
    (["-p", "9000-9002:9000-9001", "{rootfs}", "true"], "differ in size"),
    (["-p", "10.0.0.5:8088:8000", "{rootfs}", "true"], "the host has no such address"),
    (["-p", "8088:80", "-p", "8088:81", "{rootfs}", "true"], "published twice"),
]


@pytest.mark.parametrize("args,message", CASES, ids=[" ".join(a) for a, _ in CASES])
def test_bad_input_is_refused_cleanly(busybox, clean_host, args, message):
    network = [] if "-p" in args else ["--network", "none"]
    r = pyrun("run", "--rm", *network, *[a.replace("{rootfs}", busybox) for a in args])
    assert r.returncode == 125, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pyrun: "), r.stderr
    assert message in lines[0]
    assert r.stdout == ""


@pytest.mark.parametrize("subnet,message", [
    ("10.300.0.0/16", "invalid PYRUN_SUBNET: '10.300.0.0/16': Octet 300"),
    ("garbage", "invalid PYRUN_SUBNET: 'garbage'"),
    ("8.8.8.0/24", "invalid PYRUN_SUBNET: '8.8.8.0/24': expected a private IPv4 network"),
])
def test_bad_pyrun_subnet_is_refused_cleanly(busybox, clean_host, subnet, message):
    r = pyrun("run", "--rm", "-p", "8099:80", busybox, "true", env={**os.environ, "PYRUN_SUBNET": subnet})
    assert r.returncode == 125 and len(r.stderr.splitlines()) == 1 and message in r.stderr, r.stderr


def test_pyrun_subnet_other_than_the_bridges_is_refused(busybox, clean_host):
    # pyrun0 would get a second address with no NAT rule: the new container's traffic would go nowhere.
    assert pyrun("run", "--rm", busybox, "true").returncode == 0  # pyrun0 exists, on 10.199.0.0/16
    addresses = sh("ip -4 -o addr show pyrun0").stdout
    r = pyrun("run", "--rm", "-p", "8099:80", busybox, "true", env={**os.environ, "PYRUN_SUBNET": "10.198.0.0/16"})
    assert r.returncode == 125 and len(r.stderr.splitlines()) == 1, r.stderr
    assert ("PYRUN_SUBNET 10.198.0.0/16 is not 10.199.0.0/16, the subnet bridge pyrun0 is on; to change it, "
            "remove the network first: 'pyrun network rm bridge'") in r.stderr, r.stderr
    assert sh("ip -4 -o addr show pyrun0").stdout == addresses


def test_a_route_over_the_bridges_subnet_is_refused_on_every_run(busybox, clean_host):
    assert pyrun("run", "--rm", busybox, "true").returncode == 0  # pyrun0 exists already
    sh("ip route add 10.199.128.0/24 via 198.51.100.2")  # the admin's route, added later, into pyrun's subnet
    try:
        r = pyrun("run", "--rm", busybox, "true")
        assert r.returncode == 125 and len(r.stderr.splitlines()) == 1, r.stderr
        assert "subnet 10.199.0.0/16 overlaps the route to 10.199.128.0/24" in r.stderr, r.stderr
    finally:
        sh("ip route del 10.199.128.0/24")
