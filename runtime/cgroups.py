"""Control groups: how the kernel limits memory, CPU time, process count and device access.

A cgroup is a directory; limits are files in it; a process joins by having
its pid written to cgroup.procs, and its children are born inside. On cgroup
v1 each controller (memory, cpu, pids) is its own mounted hierarchy; on
cgroup v2 there is one hierarchy, and a controller works in a cgroup only if
each ancestor enables it for its children. A machine may mix both, so the
hierarchy is chosen per controller: whichever has it. A v1 directory is made
through cgroupspy's tree of nodes, a v2 one with mkdir; pyrun writes the
limit files itself on both.

| limit        | cgroup v1                                   | cgroup v2            |
|--------------|---------------------------------------------|----------------------|
| --memory     | memory.limit_in_bytes                       | memory.max           |
| --cpus       | cpu.cfs_quota_us / cpu.cfs_period_us        | cpu.max "QUOTA PERIOD" |
| --pids-limit | pids.max                                    | pids.max             |
| OOM kills    | memory.oom_control: oom_kill N              | memory.events: oom_kill N |
| devices      | devices.deny "a", devices.allow "c 1:3 rwm" | an eBPF program (not loaded: CAP_MKNOD is dropped) |
"""
import errno
import os
import shlex
import signal
import time
from dataclasses import dataclass

from runtime.steps import Action, Step

CGROUP_ROOT = "/sys/fs/cgroup"
CONTROLLERS = ("memory", "cpu", "pids", "devices")
# The devices controller (v1) denies every device, then allows the ones /dev holds (rootfs.DEVICES) and
# the terminals: with CAP_MKNOD a container may still make a node for the host's disk ("m"), never open it.
DEVICE_RULES = ("a", "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm", "c 5:0 rwm", "c 5:2 rwm",
                "c 136:* rwm", "c *:* m", "b *:* m")
PARENT = os.environ.get("PYRUN_CGROUP_PARENT", "pyrun")  # the tests use their own
CPU_PERIOD_US = 100_000


def _v2_controllers() -> set[str]:
    try:
        with open(os.path.join(CGROUP_ROOT, "cgroup.controllers")) as f:
            return set(f.read().split())
    except FileNotFoundError:
        return set()


def hierarchy(controller: str) -> tuple[int, str]:
    """(version, mount point) of the hierarchy that has CONTROLLER."""
    v1 = os.path.join(CGROUP_ROOT, controller)
    if os.path.exists(os.path.join(v1, "cgroup.procs")):
        return 1, v1
    if controller in _v2_controllers():
        return 2, CGROUP_ROOT
    return 0, ""


def guards_devices() -> bool:
    """Can pyrun limit device access here? On cgroup v2 that takes an eBPF program, which pyrun does not load."""
    return hierarchy("devices")[0] == 1


def join_like(pid: int, model: int) -> None:
    """Put PID in every cgroup that MODEL is in, hierarchy by hierarchy: `pyrun exec`'s process in its
    container's, whichever runtime made them (runc exec does the same), so that it has PID 1's limits and
    device rules. A hierarchy MODEL is in but that is not mounted here is refused: PID would escape it."""
    with open("/proc/cgroups") as f:
        known = {line.split()[0] for line in f if not line.startswith("#")}
    mounts = {}  # the controllers of each cgroup mount (v2's: none) -> its mount point
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields, rest = line.split(" - ", 1)
            fstype, _, options = rest.split()[:3]
            if fstype in ("cgroup", "cgroup2"):
                names = frozenset(o for o in options.split(",") if fstype == "cgroup"
                                  and (o in known or o.startswith("name=")))
                mounts.setdefault(names, fields.split()[4])
    with open(f"/proc/{model}/cgroup") as f:
        member = [line.rstrip("\n").split(":", 2) for line in f if line.strip()]
    for _, controllers, path in member:
        names = frozenset(filter(None, controllers.split(",")))
        if names not in mounts:
            if path == "/":
                continue  # the hierarchy's root: nothing is limited there
            raise OSError(errno.ENOENT, f"{controllers or 'cgroup2'} hierarchy of pid {model} is not mounted here")
        _write(os.path.join(mounts[names], path.lstrip("/"), "cgroup.procs"), pid)


def _write(path: str, value) -> None:
    with open(path, "w") as f:
        f.write(str(value))


@dataclass(frozen=True)
class Resources:
    """The limits a cgroup enforces, as --memory, --cpus and --pids-limit (or config.json's linux.resources)
    give them; None sets no limit."""
    memory: int | None = None       # bytes
    cpus: float | None = None       # CPUs' worth of time per period
    pids_limit: int | None = None


@dataclass
class Cgroup(Step):
    """A cgroup per controller hierarchy, named pyrun/ID, with the limits

    PARENT is the path above it in each hierarchy: pyrun's own, or the directory part of an OCI config's
    cgroupsPath (the parents stay, as pyrun's own parent does)."""

    kind = "cgroup"
    cid: str
    memory: int | None = None
    cpus: float | None = None
    pids_limit: int | None = None
    parent: str = PARENT
    devices: tuple = ()  # an OCI config's device rules, ("allow"|"deny", "c 5:1 rwm"), before pyrun's own allows
    controllers: tuple = CONTROLLERS  # pyrun-oci adds freezer, for pause and resume

    def dirs(self) -> dict[str, tuple[int, str]]:
        """controller -> (version, directory); controllers sharing a v2 hierarchy share a directory."""
        out = {}
        for controller in self.controllers:
            version, mount = hierarchy(controller)
            if version:
                out[controller] = (version, os.path.join(mount, self.parent, self.cid))
        return out

    def _limits(self) -> list[tuple[str, str, object]]:
        """(directory, file, value) for each limit asked for, in the order they are written."""
        out = []
        for controller, (version, path) in self.dirs().items():
            if controller == "memory" and self.memory:
                out.append((path, "memory.limit_in_bytes" if version == 1 else "memory.max", self.memory))
            if controller == "cpu" and self.cpus:
                quota = int(self.cpus * CPU_PERIOD_US)
                if version == 1:
                    out += [(path, "cpu.cfs_period_us", CPU_PERIOD_US), (path, "cpu.cfs_quota_us", quota)]
                else:
                    out.append((path, "cpu.max", f"{quota} {CPU_PERIOD_US}"))
            if controller == "pids" and self.pids_limit:
                out.append((path, "pids.max", self.pids_limit))
            if controller == "devices":  # deny all; a config's rules; pyrun's allowlist last, as runc adds its own
                out += [(path, "devices.deny", DEVICE_RULES[0])]
                out += [(path, f"devices.{verb}", rule) for verb, rule in self.devices]
                out += [(path, "devices.allow", rule) for rule in DEVICE_RULES[1:]]
        return out

    def actions(self) -> list[Action]:
        """On v2, the ancestors enable each controller first; then a directory per hierarchy, and the limits."""
        out, made = [], {CGROUP_ROOT}
        for controller, (version, _) in self.dirs().items():
            for directory, value in self._enable_v2(controller) if version == 2 else []:
                if directory not in made:
                    made.add(directory)
                    out.append((f"mkdir -p {shlex.quote(directory)}",
                                lambda d=directory: os.makedirs(d, exist_ok=True)))
                control = os.path.join(directory, "cgroup.subtree_control")
                out.append((f"echo {value} > {shlex.quote(control)}", lambda f=control, v=value: _write(f, v)))
        made_v2 = set()
        for controller, (version, path) in self.dirs().items():
            if version == 1:
                out.append((f"mkdir -p {shlex.quote(path)}", lambda c=controller: self._make_v1(c)))
            elif path not in made_v2:  # controllers sharing v2's hierarchy share one directory
                made_v2.add(path)
                out.append((f"mkdir -p {shlex.quote(path)}", lambda p=path: os.makedirs(p, exist_ok=True)))
        return out + self.limit_actions()

    def limit_actions(self) -> list[Action]:
        """The limits written into the directories, which exist."""
        return [(f"echo {shlex.quote(str(value))} > {shlex.quote(f'{path}/{name}')}",
                 lambda f=os.path.join(path, name), v=value: _write(f, v)) for path, name, value in self._limits()]

    def _make_v1(self, controller: str) -> None:
        """PARENT/ID in CONTROLLER's v1 hierarchy, each level a cgroupspy node (made only where missing)."""
        from cgroupspy.nodes import Node

        node = Node(controller.encode(), parent=Node(CGROUP_ROOT.encode()))
        for name in [n for n in self.parent.split("/") if n] + [self.cid]:
            node = node.create_cgroup(name)

    def _enable_v2(self, controller: str) -> list[tuple[str, str]]:
        """On v2 a controller works in a child only if every ancestor lists it in cgroup.subtree_control:
        (directory, value) for each write, top down."""
        directories = [CGROUP_ROOT]
        for name in [n for n in self.parent.split("/") if n]:
            directories.append(os.path.join(directories[-1], name))
        return [(directory, f"+{controller}") for directory in directories]

    def paths(self) -> list[str]:
        """Its directories, one per hierarchy (controllers sharing a v2 hierarchy share one)."""
        return sorted({path for _, path in self.dirs().values()})

    def join(self, pid: int) -> None:
        """PID into each of its directories (pyrun exec; a run's PID 1 joins by the CgroupJoin step)."""
        for path in self.paths():
            _write(os.path.join(path, "cgroup.procs"), pid)

    def oom_killed(self) -> bool:
        version, path = self.dirs().get("memory", (0, ""))
        name = "memory.oom_control" if version == 1 else "memory.events"
        try:
            with open(os.path.join(path, name)) as f:
                counts = dict(line.split() for line in f if line.strip())
        except FileNotFoundError:
            return False
        return int(counts.get("oom_kill", 0)) > 0

    def undo_actions(self) -> list[Action]:
        """Kill what is left inside (the kernel refuses to remove a cgroup with members), then remove it."""
        out = []
        for path in self.paths():
            out += [(f"xargs -r kill -9 < {shlex.quote(f'{path}/cgroup.procs')}", lambda p=path: _kill_members(p)),
                    (f"for i in $(seq 100); do rmdir {shlex.quote(path)} 2>/dev/null && break; sleep 0.05; done",
                     lambda p=path: remove(p))]
        return out


@dataclass
class CgroupJoin(Step):
    """Put PID 1 in the container's cgroup, before its command runs: what it starts is born inside"""

    kind = "join"
    cid: str
    pid: int | str | None = None
    parent: str = PARENT

    def actions(self) -> list[Action]:
        procs = [os.path.join(path, "cgroup.procs") for path in Cgroup(self.cid, parent=self.parent).paths()]
        return [(f"echo {self.pid} > {shlex.quote(f)}", lambda f=f: _write(f, self.pid)) for f in procs]


@dataclass
class DeviceRules(Step):
    """The devices cgroup an OCI runtime made, cut back to pyrun's own rules before the container's command runs

    config.json's device rules only add to a runtime's own defaults: runc before 1.2 appends an allow for
    /dev/net/tun, so that a container with CAP_MKNOD could open the host's tun device. The v1 controller
    takes a deny of everything, then pyrun's allows (DEVICE_RULES), whoever wrote the rules before."""

    kind = "devicerules"
    cid: str
    parent: str = PARENT

    def actions(self) -> list[Action]:
        return Cgroup(self.cid, parent=self.parent, controllers=("devices",)).limit_actions()  # undo: runtime's delete


def remove(path: str, seconds: float = 1.0) -> None:
    """Remove the cgroup directory PATH, killing what is still inside, retrying for SECONDS.

    The kernel refuses to remove a cgroup with members: processes that escaped
    the pid namespace's end, or are still dying. Gone already is success.
    """
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError:
            _kill_members(path)
            time.sleep(0.01)
    os.rmdir(path)  # let the error out, naming the path


def _kill_members(path: str) -> None:
    try:
        with open(os.path.join(path, "cgroup.procs")) as f:
            pids = [int(p) for p in f.read().split()]
    except FileNotFoundError:
        return
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
