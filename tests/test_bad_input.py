"""Bad input: one line naming the value and what is accepted, exit 125, nothing left behind."""
import pytest

from conftest import pyrun

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
