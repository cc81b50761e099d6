"""PID 1's recipe: the container side of a run, one list that PID 1 runs, --verbose traces and --explain prints.

recipe.py lists the host's steps; this lists what PID 1 does in its new mount and UTS namespaces before it
says "ready": it builds the container's filesystem out of rootfs.py's pieces, and names the container.

    private     every inherited mount made private: nothing propagates back to the host
    overlay     a copy-on-write overlay on the rootfs (also for --read-only): the new root
    proc, dev, sys   the pseudo-filesystems
    bind        the /etc files pyrun wrote, then each -v
    tmpfs       each --tmpfs, a mount of its own, so that --read-only leaves it writable
    workdir     -w's directory, made if missing, as Docker does
    pivot       pivot_root into the new root, the old one detached
    mask        what /proc and /sys would tell about the host, hidden or read-only
    readonly    --read-only: the root remounted read-only, once every mount point in it exists
    hostname    sethostname(2), in the container's UTS namespace

Each action has do(), which PID 1 runs (init.py), and shell(), the commands a learner would type for it:
from the new root's directory until pivot_root, from / after. --explain prints them as init.sh;
`run --verbose` prints them with the time PID 1 took for each, which it sends with "ready". A mount
target is resolved inside the new root (rootfs.Root: openat2 with RESOLVE_IN_ROOT, CVE-2021-30465); the
shell cannot, and trusts the rootfs not to hold hostile symlinks.

PID 1 runs after pivot_root, where the host's modules cannot be imported any more: everything do() calls is
imported with this module, before the fork. With --userns=auto the intermediate hands PID 1 the rootfs
and the binds' sources as mounts it opened on the host (Overlay.lower, Bind.tree, userns.py); pyrun's own
copy of the list, which --verbose prints, names the paths they came from.

To add an action, write its class (kind, do, shell; its docstring's first paragraph is its title) and its
line in recipe() below.
"""
import os
import socket
import sys
import time
from shlex import quote
from typing import ClassVar

from runtime.rootfs import (DEV_LINKS, DEVICES, MASKED, READ_ONLY, SAFE, Root, bind, make_devices, make_private,
                            mask_host_paths, mount_layer, mount_layer_shell, pivot)
from runtime.spec import ContainerSpec, Tmpfs as TmpfsOption
from runtime.steps import Step
from runtime.syscalls import MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY, MS_REMOUNT, mount

_TMPFS_FLAGS = {"ro": MS_RDONLY, "nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC}


def recipe(spec: ContainerSpec, layer: str, binds: list[tuple[str, str, bool]], hostname: str) -> list["Action"]:
    """What PID 1 does for SPEC, in order, on the Layer at LAYER. BINDS: (source, target, readonly), the /etc
    files and -v's (recipe.inside). Nothing is done here: the actions are only made."""
    userns = spec.userns != "host"
    actions = [Private(), Overlay(spec.rootfs, layer, userns), Proc(), Dev(userns), Sys(userns)]
    actions += [Bind(source, target, readonly) for source, target, readonly in binds]
    actions += [Tmpfs(t) for t in spec.tmpfs]
    if spec.workdir != "/":
        actions.append(Workdir(spec.workdir))
    actions += [Pivot(), Mask()]
    if spec.read_only:
        actions.append(ReadOnly())
    return actions + [Hostname(hostname)]


class Build:
    """What the actions share while PID 1 runs them: the new root, as the directory its paths resolve in."""

    def __init__(self):
        self.merged: str | None = None
        self.root: Root | None = None

    def run(self, action: "Action") -> float:
        """Do ACTION; return the milliseconds it took (for --verbose)."""
        started = time.monotonic()
        action.do(self)
        return round((time.monotonic() - started) * 1000, 2)

    def __enter__(self) -> "Build":
        return self

    def __exit__(self, *_) -> None:
        if self.root is not None:
            self.root.close()


class Action:
    """A change PID 1 makes in its own namespaces; the first paragraph of its docstring is the title init.sh
    gives it. No undo: the namespaces die with the container. Plain classes, not dataclasses: every run
    defines them, and a dozen dataclasses would add a millisecond or more to each start."""

    kind: ClassVar[str]
    step: ClassVar[str] = "rootfs"  # what an error names (pyrun: rootfs: ...)
    title = vars(Step)["title"]     # as a host step's

    def do(self, build: Build) -> None:
        raise NotImplementedError

    def shell(self) -> list[str]:
        raise NotImplementedError

    def oci(self, config: dict) -> None:
        """Put this action into CONFIG, an OCI config.json (`pyrun run --print-spec`, oci/engine.py): what a
        runtime given it does instead. Nothing, for what every runtime does anyway (private, pivot, workdir)."""


class Private(Action):
    """Every mount made private: nothing mounted in the container propagates back to the host"""

    kind = "private"

    def do(self, build: Build) -> None:
        make_private()

    def shell(self) -> list[str]:
        return ["mount --make-rprivate /"]


class Overlay(Action):
    """The new root: a copy-on-write overlay on the rootfs, whose upper layer is the container's (rootfs.Layer)"""

    kind = "overlay"

    def __init__(self, rootfs: str, layer: str, userns: bool = False):
        self.rootfs, self.layer, self.userns = rootfs, layer, userns
        self.lower: int | None = None  # --userns=auto, in PID 1's copy: pyrun's idmapped mount of the rootfs

    def do(self, build: Build) -> None:
        build.merged = mount_layer(self.rootfs if self.lower is None else self.lower, self.layer)
        build.root = Root(build.merged)

    def shell(self) -> list[str]:
        lower = self.rootfs if not self.userns else f"{self.layer}/lower"
        # overlayfs would split a path at ',' or ':': it gets the directories as open files instead.
        return [*([f"# --userns=auto: pyrun's idmapped mount of {quote(self.rootfs)} (runtime/userns.py), attached "
                   f"at {quote(lower)}"] if self.userns else []),
                mount_layer_shell(lower, self.layer, ",userxattr" if self.userns else ""),
                f"cd {quote(f'{self.layer}/merged')}"]

    def oci(self, config: dict) -> None:
        config["root"] = {"path": self.rootfs, "readonly": False}  # the rootfs itself (an engine: its own overlay)


class Proc(Action):
    """/proc: the processes of the container's own PID namespace"""

    kind = "proc"

    def do(self, build: Build) -> None:
        build.root.mount("proc", "/proc", "proc", SAFE)

    def shell(self) -> list[str]:
        return ["mount -t proc -o nosuid,nodev,noexec proc proc"]

    def oci(self, config: dict) -> None:
        _mount(config, "/proc", "proc", "proc", ["nosuid", "noexec", "nodev"])


class Dev(Action):
    """/dev: a tmpfs with a handful of device nodes, its own devpts, shm and mqueue

    With --userns=auto the nodes are binds of the host's: mknod(2) of a device is the host root's alone."""

    kind = "dev"

    def __init__(self, userns: bool = False):
        self.userns = userns

    def do(self, build: Build) -> None:
        root = build.root
        root.mount("tmpfs", "/dev", "tmpfs", MS_NOSUID, "mode=755,size=65536k")
        make_devices(root, userns=self.userns)
        root.mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
                   "newinstance,ptmxmode=0666,mode=0620,gid=5")
        root.mount("shm", "/dev/shm", "tmpfs", SAFE, "mode=1777,size=65536k")
        root.mount("mqueue", "/dev/mqueue", "mqueue", SAFE)

    def shell(self) -> list[str]:
        out = ["mount -t tmpfs -o nosuid,mode=755,size=65536k tmpfs dev"]
        if self.userns:
            out += [f"touch dev/{name} && mount --bind /dev/{name} dev/{name}" for name in DEVICES]
        else:
            out += [f"mknod -m 666 dev/{name} c {major} {minor}" for name, (major, minor) in DEVICES.items()]
        return out + [f"ln -s {target} dev/{name}" for name, target in DEV_LINKS.items()] + [
            "mkdir dev/pts dev/shm dev/mqueue",
            "mount -t devpts -o nosuid,noexec,newinstance,ptmxmode=0666,mode=0620,gid=5 devpts dev/pts",
            "mount -t tmpfs -o nosuid,nodev,noexec,mode=1777,size=65536k shm dev/shm",
            "mount -t mqueue -o nosuid,nodev,noexec mqueue dev/mqueue"]

    def oci(self, config: dict) -> None:  # the device nodes and links are every runtime's own defaults
        _mount(config, "/dev", "tmpfs", "tmpfs", ["nosuid", "mode=755", "size=65536k"])
        _mount(config, "/dev/pts", "devpts", "devpts",
               ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"])
        _mount(config, "/dev/shm", "tmpfs", "shm", ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"])
        _mount(config, "/dev/mqueue", "mqueue", "mqueue", ["nosuid", "noexec", "nodev"])


class Sys(Action):
    """/sys, read-only

    With --userns=auto and --network host the container does not own the network namespace that sysfs
    shows: it gets the host's /sys, bound read-only."""

    kind = "sys"

    def __init__(self, userns: bool = False):
        self.userns = userns

    def do(self, build: Build) -> None:
        try:
            build.root.mount("sysfs", "/sys", "sysfs", SAFE | MS_RDONLY)
        except PermissionError:
            if not self.userns:
                raise
            Bind("/sys", "/sys", True).do(build)

    def shell(self) -> list[str]:
        out = ["mount -t sysfs -o ro,nosuid,nodev,noexec sysfs sys"]
        if self.userns:
            out = [out[0] + " || {   # --network host: the host's network namespace is not the container's",
                   *("  " + line for line in Bind("/sys", "/sys", True).shell()), "}"]
        return out

    def oci(self, config: dict) -> None:  # a runtime binds the host's /sys itself where it may not mount one
        _mount(config, "/sys", "sysfs", "sysfs", ["nosuid", "noexec", "nodev", "ro"])


class Bind(Action):
    """A host file or directory bound into the container, with every mount below it; :ro makes them all read-only"""

    kind = "bind"

    def __init__(self, source: str, target: str, readonly: bool):
        self.source, self.target, self.readonly = source, target, readonly
        self.tree: int | None = None  # --userns=auto, in PID 1's copy: the source's mounts, detached (open_tree(2))

    def do(self, build: Build) -> None:
        bind(build.root, self.source if self.tree is None else self.tree, self.target, self.readonly)

    def shell(self) -> list[str]:
        here = quote(f".{self.target}")
        if os.path.isdir(self.source):  # Docker creates a missing mount point, as Root.target() does
            out = [f"mkdir -p {here}"]
        else:
            out = [f"[ -e {here} ] || {{ mkdir -p {quote(f'.{os.path.dirname(self.target)}')}; touch {here}; }}"]
        out.append(f"mount --rbind {quote(self.source)} {here}")
        if self.readonly:  # every mount below it too, as mount_setattr(2) with AT_RECURSIVE does
            out.append(f"findmnt -Rno TARGET {here} | while IFS= read -r m; do mount -o remount,bind,ro \"$m\"; done")
        return out

    def oci(self, config: dict) -> None:
        # "ro" makes only the top mount read-only in runc and crun; "rro" (mount_setattr AT_RECURSIVE) every
        # mount below it too, as pyrun's own bind does.
        _mount(config, self.target, "bind", self.source, ["rbind", *(("ro", "rro") if self.readonly else ("rw",))])


class Tmpfs(Action):
    """A --tmpfs: memory-backed, and writable also under --read-only"""

    kind = "tmpfs"

    def __init__(self, option: TmpfsOption):
        self.option = option

    def do(self, build: Build) -> None:
        flags = 0
        for name in self.option.flags:
            flags |= _TMPFS_FLAGS[name]
        build.root.mount("tmpfs", self.option.target, "tmpfs", flags, self.option.data or None)

    def shell(self) -> list[str]:
        here = quote(f".{self.option.target}")
        return [f"mkdir -p {here}", f"mount -t tmpfs -o {self.option.options()} tmpfs {here}"]

    def oci(self, config: dict) -> None:
        _mount(config, self.option.target, "tmpfs", "tmpfs",
               [*self.option.flags, *filter(None, self.option.data.split(","))])


class Workdir(Action):
    """The working directory, made if the rootfs lacks it, as Docker does (PID 1 changes to it last)"""

    kind = "workdir"

    def __init__(self, path: str):
        self.path = path

    def do(self, build: Build) -> None:
        os.close(build.root.target(self.path))

    def shell(self) -> list[str]:
        return [f"mkdir -p {quote(f'.{self.path}')}"]


class Pivot(Action):
    """pivot_root into the new root and detach the old one: the host's tree is gone, not merely out of sight"""

    kind = "pivot"

    def do(self, build: Build) -> None:
        build.root.close()
        build.root = None
        pivot(build.merged)
        build.root = Root("/")

    def shell(self) -> list[str]:
        return ["pivot_root . .", "umount -l .   # the old root, stacked on top by pivot_root", "cd /"]


class Mask(Action):
    """What /proc and /sys would tell about the host: Docker's masked paths hidden, its read-only ones read-only"""

    kind = "mask"

    def __init__(self, masked=MASKED, read_only=READ_ONLY):  # or an OCI config's (oci/explain.py)
        self.masked, self.read_only = masked, read_only

    def do(self, build: Build) -> None:
        mask_host_paths(build.root, self.masked, self.read_only)

    def shell(self) -> list[str]:
        return ([f"if [ -d {quote(path)} ]; then mount -t tmpfs -o ro,size=0 tmpfs {quote(path)}; "
                 f"elif [ -e {quote(path)} ]; then mount --bind /dev/null {quote(path)}; fi" for path in self.masked]
                + [f"if [ -e {quote(path)} ]; then mount --rbind {quote(path)} {quote(path)} && "
                   f"mount -o remount,bind,ro,nosuid,nodev,noexec {quote(path)}; fi" for path in self.read_only])

    def oci(self, config: dict) -> None:
        config.setdefault("linux", {}).update(maskedPaths=list(self.masked), readonlyPaths=list(self.read_only))


class ReadOnly(Action):
    """--read-only: the overlay remounted read-only, now that every mount point in it exists"""

    kind = "readonly"

    def do(self, build: Build) -> None:
        mount(None, "/", None, MS_BIND | MS_REMOUNT | MS_RDONLY)

    def shell(self) -> list[str]:
        return ["mount -o remount,bind,ro /"]

    def oci(self, config: dict) -> None:
        config["root"]["readonly"] = True


class Hostname(Action):
    """The container's hostname, in its own UTS namespace"""

    kind = "hostname"
    step = "sethostname"

    def __init__(self, name: str):
        self.name = name

    def do(self, build: Build) -> None:
        socket.sethostname(self.name)

    def shell(self) -> list[str]:
        return [f"hostname {quote(self.name)}"]

    def oci(self, config: dict) -> None:
        config["hostname"] = self.name


def _mount(config: dict, destination: str, kind: str, source: str, options: list[str]) -> None:
    config.setdefault("mounts", []).append({"destination": destination, "type": kind, "source": source,
                                            "options": options})


def trace(actions: list[Action], took: list) -> None:
    """--verbose: what PID 1 did, as it reported it with "ready" (TOOK: [kind, milliseconds] of each action
    it ran), each action's commands from pyrun's copy of ACTIONS, the time on the first."""
    for action, (kind, ms) in zip(actions, took):
        stamp = f"[{ms:6.1f} ms]"
        for command in action.shell():
            print(f"pyrun: {stamp} PID 1 [{kind}] {command}", file=sys.stderr, flush=True)
            stamp = " " * len(stamp)
