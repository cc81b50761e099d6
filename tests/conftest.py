"""The tests' throwaway host: every test runs in network and mount namespaces of its own.

At start-up this pytest process unshares a new network namespace and a new
mount namespace, then lets scripts/sandbox (the demo's sandbox too) furnish
them: a tmpfs over /run, and a second namespace, "world", joined to the
sandbox host by a veth pair on documentation addresses, playing another
machine (198.51.100.2) and the internet (203.0.113.1). The bridge, veth
pairs, iptables rules, named netns and pyrun's state all live and die inside
the sandbox: the machine's own network is never touched.
"""
import contextlib
import glob
import json
import os
import pty
import re
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from runtime import syscalls  # noqa: E402
from runtime.namespaces import CLONE_NEWNET, CLONE_NEWNS  # noqa: E402

HOST_IP = "198.51.100.1"     # the sandbox host's address on the "wan" link
WORLD_IP = "198.51.100.2"    # another machine on the same link
INTERNET_IP = "203.0.113.1"  # a host beyond it, on the "internet"
STATE_ROOT = "/run/pyrun"
# The runtimes pyrun run can hand a container to: its built-in one, runc, and pyrun-oci (the default; oci/client.py).
# Tests of a guarantee that every runtime must keep run under each: with a runtime parameter passed as --runtime,
# or, for a whole file, pytestmark = pytest.mark.usefixtures("each_runtime").
RUNTIMES = ["pyrun", *(["runc"] if shutil.which("runc") else []), "pyrun-oci"]
LEASES = "/run/pyrun-net/ipam/pyrun0"  # the default network's leases, host-wide (network/ipam.py)
ID_RANGES, ROOTS = "/run/pyrun-users", "/run/pyrun-roots"


@pytest.fixture(params=RUNTIMES)
def each_runtime(request, monkeypatch):
    """The test once per runtime: every pyrun run it makes, without a --runtime of its own, uses this one (as
    dockerd's --default-runtime, PYRUN_RUNTIME)."""
    monkeypatch.setenv("PYRUN_RUNTIME", request.param)
    return request.param


def sh(command: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(command, shell=True, check=check, capture_output=True, text=True, **kw)


def _enter_sandbox() -> None:
    if os.geteuid() != 0:
        pytest.exit("pyrun's tests need root: run ./scripts/test as root", returncode=1)
    syscalls.unshare(CLONE_NEWNET | CLONE_NEWNS)
    # A child shares this process's new namespaces: scripts/sandbox sets them up and exits.
    subprocess.run([os.path.join(REPO, "scripts", "sandbox"), "true"], check=True,
                   env={**os.environ, "PYRUN_SANDBOX": "inside"})


# cgroups are not namespaced: the suite gets a parent cgroup of its own, removed at the end.
CGROUP_PARENT = f"pyrun-test-{os.getpid()}"
os.environ["PYRUN_CGROUP_PARENT"] = CGROUP_PARENT


def _hierarchies() -> list[str]:
    """Every cgroup hierarchy's root: /sys/fs/cgroup itself on a pure v2 host, else each mount under it. All
    of them, not only those pyrun sets limits in: an OCI config's cgroupsPath and the engines join every one
    (blkio, cpuset, name=systemd, the v2 one), and each such parent is the suite's to remove."""
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        return ["/sys/fs/cgroup"]
    return [p for p in sorted(glob.glob("/sys/fs/cgroup/*/")) if os.path.ismount(p)]


_CGROUP_PARENTS = [os.path.join(h, CGROUP_PARENT) for h in _hierarchies()]


def pytest_configure(config):
    config.addinivalue_line("markers", "noroot: needs no root and no sandbox (pytest -m noroot runs these alone, "
                                       "as any user)")
    if os.geteuid() != 0 and config.option.markexpr == "noroot":
        return  # parsing and printed scripts: nothing here touches a kernel object
    config.created_cgroup_parents = [p for p in _CGROUP_PARENTS if not os.path.exists(p)]
    _enter_sandbox()
    os.environ["PYRUN_ROOT"] = STATE_ROOT


def pytest_unconfigure(config):
    """Remove the suite's parent cgroups, once the last container's processes are gone from them."""
    from runtime import cgroups

    for path in getattr(config, "created_cgroup_parents", []):
        try:
            # A container a failed test left running would keep its cgroup, and so the parent, busy; its
            # processes are the suite's own, and killing them lets its monitor tear it down.
            for leftover in glob.glob(f"{path}/*/"):
                cgroups.remove(leftover, seconds=10)
            cgroups.remove(path, seconds=10)
        except OSError as e:
            print(f"pyrun tests: could not remove {path}: {e.strerror}", file=sys.stderr)


@pytest.fixture(scope="session")
def busybox():
    """A tiny busybox rootfs, built in about a second."""
    path = tempfile.mkdtemp(prefix="pyrun-busybox-")
    subprocess.run([os.path.join(REPO, "scripts", "build-busybox-rootfs"), path], check=True)
    yield path
    shutil.rmtree(path)


@pytest.fixture(scope="session")
def debian():
    """The demo image: Debian 12 with python3 (scripts/build-rootfs builds it once)."""
    subprocess.run([os.path.join(REPO, "scripts", "build-rootfs")], check=True, stdout=subprocess.DEVNULL)
    return os.path.join(REPO, "rootfs")


def pyrun(*args: str, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    """Run the pyrun command line, as a user would."""
    return subprocess.run([sys.executable, "-m", "runtime", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, **kw)


def pyrun_bg(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "runtime", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=REPO, **kw)


@contextlib.contextmanager
def user_network(name: str, subnet: str):
    """A user-defined network for the body (pyrun network create), removed after it."""
    r = pyrun("network", "create", "--subnet", subnet, name)
    assert r.returncode == 0, r.stderr
    try:
        yield
    finally:
        pyrun("network", "rm", name)


class PtySession:
    """pyrun on a pseudo-terminal of the test's own, as a user at a terminal runs it."""

    def __init__(self, *args: str):
        self.pid, self.master = pty.fork()
        if self.pid == 0:
            os.chdir(REPO)
            os.execv(sys.executable, [sys.executable, "-m", "runtime", *args])
        self.out = b""

    def read_until(self, marker: bytes, timeout: float = 10) -> bool:
        deadline = time.monotonic() + timeout
        while marker not in self.out and time.monotonic() < deadline:
            try:
                self.out += os.read(self.master, 4096)
            except OSError:  # EIO: pyrun has exited
                break
        return marker in self.out

    def write(self, data: bytes) -> None:
        os.write(self.master, data)

    def wait(self) -> int:
        """Read to the end, then return pyrun's exit code."""
        self.read_until(b"\xff")
        _, status = os.waitpid(self.pid, 0)
        os.close(self.master)
        return os.waitstatus_to_exitcode(status)


def pty_session(*args: str) -> PtySession:
    return PtySession(*args)


_GET = "import sys, urllib.request as u; sys.stdout.write(u.urlopen(sys.argv[1], timeout=float(sys.argv[2])).read().decode())"


def fetch(url: str, netns: str | None = None, timeout: float = 2) -> str | None:
    """GET url from the sandbox host, or from namespace NETNS (e.g. "world"); None if it fails.

    Python's urllib, not busybox wget: busybox-static's wget crashes on a refused connection."""
    prefix = ["ip", "netns", "exec", netns] if netns else []
    r = subprocess.run([*prefix, sys.executable, "-c", _GET, url, str(timeout)], capture_output=True, text=True,
                       timeout=timeout + 10)
    return r.stdout if r.returncode == 0 else None


def explained_config(script: str) -> dict:
    """The bundle's config.json in a `pyrun run --explain` script, the heredoc it is written with."""
    return json.loads(script.split("config.json <<'EOF'\n")[1].split("\nEOF\n")[0])


def pid_of(cmdline: str, parent: int | None = None) -> int | None:
    """A process whose command line is CMDLINE (its words joined by spaces), among PARENT's children if given:
    other suites' containers may run the same command on this machine."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if f.read().replace(b"\0", b" ").strip() == cmdline.encode() and \
                        (parent is None or parent_of(int(pid)) == parent):
                    return int(pid)
        except (FileNotFoundError, ProcessLookupError):  # gone meanwhile
            continue
    return None


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def wait_for(predicate, timeout: float = 10, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def running_record(name: str) -> dict | None:
    """The state record of the running container called NAME, if there is one yet."""
    base = os.path.join(STATE_ROOT, "containers")
    for cid in os.listdir(base) if os.path.isdir(base) else []:
        try:
            with open(os.path.join(base, cid, "state.json")) as f:
                record = json.load(f)
        except (FileNotFoundError, json.JSONDecodeError):
            continue
        if record.get("Name") == name and record.get("State", {}).get("Status") == "running":
            return record
    return None


def _cgroup_dirs() -> list[str]:
    """The containers' cgroups under the suite's parent, in every hierarchy (v1 and v2)."""
    return sorted(glob.glob(f"/sys/fs/cgroup/{CGROUP_PARENT}/*/") + glob.glob(f"/sys/fs/cgroup/*/{CGROUP_PARENT}/*/"))


_KEPT = r"(pyrun0|pr-[0-9a-f]{12})"  # the bridges pyrun keeps: the default network's, and user-defined ones'


def snapshot() -> dict:
    """Everything on the (sandbox) host that pyrun may change, less what it leaves by design:
    the bridges (pyrun0, and a user-defined network's pr-ID) and pyrun's chains with their bridge rules
    stay, as Docker's do."""
    iptables = [line for line in sh("iptables-save").stdout.splitlines() if not line.startswith("#")]
    return {
        # A bridge port's timers tick, and a bridge's state settles, on their own.
        "links": [re.sub(r"\w+_timer +[\d.]+ | state [A-Z]+ ", " ", line)
                  for line in sh("ip -d -o link").stdout.splitlines() if not re.search(rf": {_KEPT}:", line)],
        "addr": [line for line in sh("ip -o addr").stdout.splitlines() if not re.search(rf" {_KEPT} ", line)],
        # and its route says linkdown while it has no port, a moment after its last one went
        "routes": [line for line in sh("ip route").stdout.splitlines() if not re.search(rf" {_KEPT} ", line)],
        "iptables": [line for line in iptables if "pyrun:" in line],
        "ebtables": [line for line in sh("ebtables-save").stdout.splitlines() if "PYRUN-" in line],
        "netns": sorted(os.listdir("/run/netns")),
        "leases": sorted(os.listdir(LEASES)) if os.path.isdir(LEASES) else [],
        "cgroups": _cgroup_dirs(),
        "mounts": sorted(line.split()[4] for line in open("/proc/self/mountinfo")),
        "containers": sorted(os.listdir(os.path.join(STATE_ROOT, "containers")))
        if os.path.isdir(os.path.join(STATE_ROOT, "containers")) else [],
        # --userns=auto: the leased id ranges (runtime/userns.py; its lock stays), and under --runtime the
        # bundles' roots (runtime/oci/bundle.py's Reachable)
        "id ranges": sorted(n for n in os.listdir(ID_RANGES) if n.isdigit()) if os.path.isdir(ID_RANGES) else [],
        "roots": sorted(os.listdir(ROOTS)) if os.path.isdir(ROOTS) else [],
    }


@pytest.fixture
def clean_host():
    """Asserts that the test left the host as it found it."""
    before = snapshot()
    yield before
    after = snapshot()
    changes = {key: {"left behind": [x for x in after[key] if x not in before[key]],
                     "gone": [x for x in before[key] if x not in after[key]]}
               for key in before if after[key] != before[key]}
    if changes:
        pyrun("prune")  # so that the next test starts clean and reports only its own residue
    assert not changes, f"the host changed: {json.dumps(changes, indent=1)}"
