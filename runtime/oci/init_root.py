"""PID 1's root under pyrun-oci: config.json's mounts, made in its order, then pivot_root (config.md "mounts").

Each mount's target is resolved inside the new root (rootfs.Root, openat2 RESOLVE_IN_ROOT), so that a
symlink in the rootfs cannot send a mount to the host's paths; binds keep their options by remounting,
as mount(2) ignores most flags of a first MS_BIND; a cgroup mount is a tmpfs with the container's own
cgroup directories bound in, read-only. With a user namespace the bind sources and the root itself come
as detached mounts opened on the host (open_tree(2)), as the namespace's root may not reach them.
Run by PID 1 (oci/init.py's _pid1) before it reports "ready".
"""
import os
import stat

from runtime import rootfs, syscalls
from runtime.errors import PyrunError
from runtime.oci.config import Bundle, Mount
from runtime.syscalls import MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY, MS_REC, MS_REMOUNT, mount

MS_MOVE = 0x2000
# statvfs(3)'s flags a user namespace may not clear on a mount it was handed (mount_namespaces(7), "locked"),
# and the atime ones, of which a remount must name the one the mount has: as mount(2) flags.
_LOCKED = ((os.ST_RDONLY, MS_RDONLY), (os.ST_NOSUID, MS_NOSUID), (os.ST_NODEV, MS_NODEV), (os.ST_NOEXEC, MS_NOEXEC))
_MS_NOATIME, _MS_RELATIME, _MS_STRICTATIME = 0x400, 0x200000, 0x1000000


def build_root(b: Bundle, cgroup_dirs: list[str], pivot: bool, before_pivot=None, trees: dict | None = None) -> None:
    """The config's mounts, in its order, resolved inside the root (rootfs.Root), BEFORE_PIVOT, then pivot_root.

    TREES (a user namespace): the detached rootfs ("/") and bind sources (by index) the intermediate took."""
    trees = trees or {}
    userns = b.has("user")
    rootfs.make_private()
    if "/" in trees:  # attached over the working directory, the rootfs (see intermediate()); named through its fd
        here = os.open(".", os.O_PATH | os.O_CLOEXEC)
        try:
            syscalls.move_mount(trees["/"], here, b.rootfs)
        finally:
            os.close(here)
        new_root = f"/proc/self/fd/{trees['/']}"
    else:
        mount(b.rootfs, b.rootfs, None, MS_BIND | MS_REC)  # pivot_root needs the new root to be a mount
        new_root = b.rootfs
    root = rootfs.Root(new_root)
    try:
        for i, m in enumerate(b.mounts):
            try:
                _mount(root, m, i, cgroup_dirs, trees, userns)
            except PermissionError as e:
                if not userns:
                    raise
                raise PyrunError(f"mount {m.destination}", f"{m.destination}: {e.strerror}: the user namespace's root "
                                 f"is host uid {_host_id(b.uid_map)} and may not make (or reach) this mount point; "
                                 "the engine chowns the rootfs to the mapped ids, or makes the mount points") from None

        os.close(root.target("/dev"))
        rootfs.make_devices(root, exist_ok=True, userns=userns)  # the spec's default devices, where the config has none
        os.close(root.target(b.process.cwd))      # runc creates a missing cwd, as Docker does
    finally:
        root.close()
    if before_pivot:
        before_pivot()
    if pivot:
        rootfs.pivot(new_root)
    else:  # --no-pivot, for a root on ramfs (pivot_root refuses it): weaker, the old root is only out of sight
        os.chdir(new_root)
        mount(".", "/", None, MS_MOVE)
        os.chroot(".")
        os.chdir("/")
    if "/" in trees:
        os.close(trees["/"])


def _mount(root: rootfs.Root, m: Mount, i: int, cgroup_dirs: list[str], trees: dict, userns: bool) -> None:
    """config.json's mounts[I]."""
    if m.type == "cgroup":
        _mount_cgroup(root, m, trees.get(i) or [(path, is_v1(path), None) for path in cgroup_dirs], userns)
    elif m.type == "bind":
        _bind(root, m, trees.get(i), userns)
    elif m.type == "sysfs" and userns:
        try:
            root.mount(m.source, m.destination, m.type, m.flags, m.data or None)
        except PermissionError:  # the network namespace is not the container's: the host's /sys, as runc binds it
            _bind(root, Mount(m.destination, "bind", "/sys", MS_BIND | MS_REC | m.flags), None, userns)
    else:
        root.mount(m.source, m.destination, m.type, m.flags, m.data or None)
    if m.propagation:
        root.mount(None, m.destination, None, m.propagation, directory=os.path.isdir(m.source))


def _host_id(id_map: tuple) -> str:
    """Which host id container id 0 is, for a message."""
    return next((str(outside) for inside, outside, _ in id_map if inside == 0), "(none: 0 is not mapped)")


def _bind(root: rootfs.Root, m: Mount, tree: int | None = None, userns: bool = False) -> None:
    """A bind mount: of M.source, or (a user namespace) of TREE, the detached copy of it the intermediate took."""
    if tree is None:
        directory = os.path.isdir(m.source)
        root.mount(m.source, m.destination, None, m.flags & (MS_BIND | MS_REC), directory=directory)
    else:
        directory = stat.S_ISDIR(os.fstat(tree).st_mode)
        rootfs.bind(root, tree, m.destination, readonly=False)
    extra = m.flags & ~(MS_BIND | MS_REC)
    if extra or (userns and m.cleared):  # a bind mount takes its flags only from a second, remounting call
        remount(root, m.destination, extra, m.cleared if userns else None, directory)
    if m.flags & MS_RDONLY and m.flags & MS_REC:
        rootfs.read_only_tree(root, m.destination, directory)  # rbind,ro: read-only all the way down


def remount(root: rootfs.Root, path: str, flags: int, cleared: int | None, directory: bool = True) -> None:
    """Bind-remount PATH with FLAGS. With CLEARED (in a user namespace) keep the flags the mount has that the
    kernel locks, as runc keeps them, and refuse to clear one (CLEARED: the config's rw, suid, dev, exec)."""
    if cleared is not None:
        fd = root.target(path, directory)
        try:
            has = os.fstatvfs(fd).f_flag
        finally:
            os.close(fd)
        for st, ms in _LOCKED:
            if has & st and cleared & ms:
                raise PyrunError(f"mount {path}", "the host's mount under it is read-only, nosuid, nodev or noexec, "
                                                  "which a user namespace cannot undo; drop rw, suid, dev, exec")
            flags |= ms if has & st else 0
        if not flags & (_MS_NOATIME | _MS_RELATIME | _MS_STRICTATIME):
            flags |= (_MS_NOATIME if has & os.ST_NOATIME else _MS_RELATIME if has & os.ST_RELATIME
                      else _MS_STRICTATIME)
    root.mount(None, path, None, MS_BIND | MS_REMOUNT | flags, directory=directory)


def is_v1(cgroup_dir: str) -> bool:
    return not os.path.exists(os.path.join(cgroup_dir, "cgroup.controllers"))


def _mount_cgroup(root: rootfs.Root, m: Mount, sources: list[tuple[str, bool, int | None]],
                  userns: bool = False) -> None:
    """The container's own cgroup, as a tree like the host's /sys/fs/cgroup (cgroup v1: one per controller).
    SOURCES: each cgroup directory, whether it is v1, and (a user namespace) its detached copy, bound instead."""
    flags = m.flags & (MS_NOSUID | MS_NODEV | MS_NOEXEC)
    v1 = any(is_v1 for _, is_v1, _ in sources)
    if v1:
        root.mount("tmpfs", m.destination, "tmpfs", flags, "mode=755")
    for path, is_v1, tree in sources:
        controller = os.path.relpath(path, "/sys/fs/cgroup").split("/")[0]
        target = f"{m.destination}/{controller}" if is_v1 else m.destination
        if tree is None:
            root.mount(path, target, None, MS_BIND)
        else:
            rootfs.bind(root, tree, target, readonly=False)
        remount(root, target, flags | (m.flags & MS_RDONLY), m.cleared if userns else None)
    if v1 and m.flags & MS_RDONLY:
        root.mount(None, m.destination, None, MS_REMOUNT | flags | MS_RDONLY, "mode=755")
