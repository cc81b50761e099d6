"""CVE-2022-29162: runc filled the inheritable capability set, so a program with file capabilities could
gain them past the bounding set's intent. pyrun leaves inheritable and ambient empty, whatever is added."""
import pytest

from conftest import pyrun

# Every guarantee here is the runtime's to keep: each test runs under each (conftest.RUNTIMES).
pytestmark = pytest.mark.usefixtures("each_runtime")


@pytest.mark.parametrize("options", [[], ["--cap-add", "NET_ADMIN"], ["--cap-add", "ALL"]],
                         ids=["default", "cap-add NET_ADMIN", "cap-add ALL"])
def test_inheritable_and_ambient_stay_empty(busybox, clean_host, options):
    r = pyrun("run", "--rm", "--network", "none", *options, busybox, "grep", "-E", "^Cap(Inh|Amb|Eff)", "/proc/self/status")
    caps = dict(line.split(":\t") for line in r.stdout.splitlines())
    assert caps["CapInh"] == caps["CapAmb"] == "0000000000000000", r.stdout
    assert caps["CapEff"] != "0000000000000000"  # the set itself is there


def test_exec_gets_the_same_empty_sets(busybox, clean_host):
    assert pyrun("run", "-d", "--name", "capped", "--cap-add", "NET_ADMIN", "--network", "none", busybox,
                 "sleep", "60").returncode == 0
    try:
        r = pyrun("exec", "capped", "grep", "-E", "^Cap(Inh|Amb)", "/proc/self/status")
        assert r.stdout.split() == ["CapInh:", "0000000000000000", "CapAmb:", "0000000000000000"], r.stdout
    finally:
        pyrun("rm", "-f", "capped")
