"""The container's filesystem: overlay, pivot_root, and the pseudo-filesystems.

The pieces PID 1 builds its root from, in the order pid1.py lists them (pyrun's
PID 1) or a config.json's mounts give them (the OCI runtime's, oci/init.py).
They run inside the container's new mount namespace, so every mount here
disappears with the container and none is seen by the host:

- every inherited mount made private, so nothing propagates back to the host;
- a copy-on-write overlay on the rootfs (with --read-only too, made read-only
  once every mount point exists), so the rootfs directory itself is never written;
- every mount target resolved *inside* the new root with openat2(RESOLVE_IN_ROOT)
  (Root): a symlink in the rootfs cannot aim a mount at the host
  (CVE-2021-30465), and the mount goes to /proc/self/fd/N, the very file
  that was checked;
- pivot_root into it and the old root detached, so the host's tree is gone,
  not merely out of sight as with chroot;
- what /proc and /sys would tell about the host hidden (Docker's masked and
  read-only paths).

With --userns=auto (userns.py) PID 1 is the root of the container's
user namespace, an unprivileged uid on the host, so three things differ:
the rootfs and the binds arrive as detached mounts that pyrun made on the
host (the rootfs idmapped) and are attached with move_mount(2); the
kernel lets no one but the host's root make device nodes, so /dev's are
bind mounts of the host's; and with --network host the container does not
own the network namespace that sysfs shows, so /sys is the host's, bound
read-only.

One step here is the host's, made before the fork: the Layer, the overlay's
upper and work directories that mount_layer() stacks on the rootfs.
"""
import errno
import os
import stat
from dataclasses import dataclass
from shlex import quote

from runtime import tree
from runtime.errors import PyrunError
from runtime.steps import Action, Step
from runtime.syscalls import (MNT_DETACH, MOUNT_ATTR_RDONLY, MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_PRIVATE,
                              MS_RDONLY, MS_REC, MS_REMOUNT, mount, mount_setattr, move_mount, open_in_root,
                              pivot_root, umount2)

DEVICES = {"null": (1, 3), "zero": (1, 5), "full": (1, 7), "random": (1, 8), "urandom": (1, 9), "tty": (5, 0)}
DEV_LINKS = {"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1",
             "stderr": "/proc/self/fd/2", "ptmx": "pts/ptmx"}
MASKED = ("/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
          "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
          "/sys/devices/virtual/powercap")
READ_ONLY = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")
SAFE = MS_NOSUID | MS_NODEV | MS_NOEXEC  # for what holds no programs and no devices


def _fd_path(fd: int) -> str:
    return f"/proc/self/fd/{fd}"


class Root:
    """A directory that paths are resolved inside of, as the container will resolve them."""

    def __init__(self, path: str):
        self.path = path
        self.fd = os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)

    def close(self) -> None:
        os.close(self.fd)

    def target(self, path: str, directory: bool = True) -> int:
        """An O_PATH fd for PATH inside the root, creating it (and its parents) if missing."""
        parts = [p for p in path.split("/") if p]
        for depth in range(len(parts) + 1):
            sub = "/" + "/".join(parts[:depth])
            try:
                fd = open_in_root(self.fd, sub)
            except FileNotFoundError:
                parent = open_in_root(self.fd, "/" + "/".join(parts[:depth - 1]))
                if os.path.islink(f"/proc/self/fd/{parent}/{parts[depth - 1]}"):
                    os.close(parent)
                    raise PyrunError("mount target", f"{path}: {sub} is a symlink to a path missing in the "
                                                     "rootfs; expected a directory or a link to one inside it")
                try:
                    if directory or depth < len(parts):
                        os.mkdir(parts[depth - 1], 0o755, dir_fd=parent)
                    else:
                        os.close(os.open(parts[depth - 1], os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW
                                         | os.O_CLOEXEC, 0o644, dir_fd=parent))
                finally:
                    os.close(parent)
                fd = open_in_root(self.fd, sub)
            if depth < len(parts):
                os.close(fd)
        return fd

    def mount(self, source: str | None, path: str, fstype: str | None, flags: int = 0,
              data: str | None = None, directory: bool = True) -> None:
        fd = self.target(path, directory)
        try:
            mount(source, _fd_path(fd), fstype, flags, data)
        finally:
            os.close(fd)


def layer_dir(container_dir: str) -> str:
    """The Layer's directory, in the container's state directory."""
    return os.path.join(container_dir, "layer")


@dataclass
class Layer(Step):
    """The writable layer: overlayfs upper, work and mount directories, on a nosuid mount of its own

    Its directories are what mount_layer() below stacks on the rootfs.
    Whatever the container writes lands in diff/ on the host, setuid-root
    binaries and device nodes too (CVE-2021-41091's class). Two locks keep
    them from host users: the layer is 0700, and it is a nosuid,nodev bind
    mount of itself, so even with its directories opened up a setuid bit or
    a device node in it means nothing on the host. The container sees the
    files through its own overlay mount, whose flags are its own.

    With --userns=auto the directories belong to OWNER, the container's root
    on the host (userns.py): it mounts the overlay, from its own namespace,
    and writes its upper layer. lower/ is where the idmapped rootfs is
    attached for the overlay to stack on.
    """

    kind = "layer"
    path: str
    owner: int | None = None

    def _dirs(self) -> tuple:
        dirs = (("", 0o700), ("diff", 0o755), ("work", 0o700), ("merged", 0o700))
        return dirs if self.owner is None else dirs + (("lower", 0o700),)

    def actions(self) -> list[Action]:
        path, sub = quote(self.path), lambda d: quote(os.path.join(self.path, d))
        out = [(f"mkdir -p -m 0700 {path}", lambda: self._make(0o700, "")),
               (f"mkdir -m 0755 {sub('diff')}", lambda: self._make(0o755, "diff")),
               (f"mkdir -m 0700 {sub('work')} {sub('merged')}", lambda: self._make(0o700, "work", "merged"))]
        if self.owner is not None:
            subs = [d for d, _ in self._dirs() if d]
            out += [(f"mkdir -m 0700 {sub('lower')}", lambda: self._make(0o700, "lower")),
                    (f"chown {self.owner}:{self.owner} {path} {' '.join(map(sub, subs))}   # the container's root "
                     "on the host", lambda: self._chown("", *subs))]
        return out + [(f"mount --bind {path} {path}", lambda: mount(self.path, self.path, None, MS_BIND)),
                      (f"mount -o remount,bind,nosuid,nodev {path}",
                       lambda: mount(None, self.path, None, MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NODEV))]

    def _make(self, mode: int, *subs: str) -> None:
        for sub in subs:
            os.makedirs(os.path.join(self.path, sub), exist_ok=True)
            os.chmod(os.path.join(self.path, sub), mode)  # diff's mode is the container's / mode: not the umask's

    def _chown(self, *subs: str) -> None:
        for sub in subs:
            os.chown(os.path.join(self.path, sub), self.owner, self.owner)

    def undo_actions(self) -> list[Action]:
        path = quote(self.path)
        # The container filled it: no depth, link or name of its may stop the removal.
        return [(f"umount -l {path}", lambda: unmount(self.path)),
                (f"rm -rf {path}", lambda: tree.remove_tree(self.path))]


def unmount(path: str) -> None:
    """umount -l PATH, as an undo: already unmounted, or gone, is done."""
    try:
        umount2(path, MNT_DETACH)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOENT):  # not mounted (any more), or gone
            raise


def make_private() -> None:
    mount(None, "/", None, MS_REC | MS_PRIVATE)


def mount_layer_shell(lower: str, layer: str, options: str = "", merged: str | None = None) -> str:
    """mount_layer() as one command: the directories open as fds 3-5 of mount(8) alone, as the kernel gets them."""
    merged = merged or layer + "/merged"
    return ("mount -t overlay overlay -o lowerdir=/proc/self/fd/3,upperdir=/proc/self/fd/4,workdir=/proc/self/fd/5"
            f"{options} {quote(merged)} 3< {quote(lower)} 4< {quote(layer + '/diff')} 5< {quote(layer + '/work')}")


def mount_layer(rootfs: str | int, layer: str, merged: str | None = None) -> str:
    """Mount the container's root at MERGED (LAYER/merged if None) and return that path.

    An overlay also for --read-only: the mount points for -v, the -w
    directory and a missing /etc/hostname go to the layer, never into the
    user's rootfs, and build() makes the root read-only once they exist.

    overlayfs splits its options at ',' and lowerdir at ':', so a path pasted
    into them (a rootfs named img:tag, a --root holding ',') could stack host
    directories under the container's root. It gets /proc/self/fd/N of the
    directories instead: resolved by the kernel, never split.

    ROOTFS may be a detached mount (--userns=auto: pyrun's idmapped copy of the rootfs): overlayfs takes
    a layer from a mount in the mounter's namespace, so it is attached at LAYER/lower first. An overlay
    mounted in a user namespace keeps its own bookkeeping in user.* extended attributes (userxattr):
    trusted.* ones are the host root's alone.
    """
    merged = merged or os.path.join(layer, "merged")
    options = ""
    if isinstance(rootfs, int):
        attach(rootfs, os.path.join(layer, "lower"))
        rootfs, options = os.path.join(layer, "lower"), ",userxattr"
    fds = [os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
           for path in (rootfs, os.path.join(layer, "diff"), os.path.join(layer, "work"))]
    try:
        lower, upper, work = map(_fd_path, fds)
        mount("overlay", merged, "overlay", 0, f"lowerdir={lower},upperdir={upper},workdir={work}{options}")
    finally:
        for fd in fds:
            os.close(fd)
    return merged


def attach(tree: int, path: str) -> None:
    """Attach the detached mount TREE (open_tree(2)) at PATH, and close it."""
    target = os.open(path, os.O_PATH | os.O_CLOEXEC)
    try:
        move_mount(tree, target, path)
    finally:
        os.close(target)
        os.close(tree)


def make_devices(root: Root, exist_ok: bool = False, userns: bool = False) -> None:
    """The device nodes and links every container's /dev has. EXIST_OK: keep those there already (an OCI
    config.json may bind its own, and the runtime adds only what is missing). USERNS: mknod(2) of a device
    is the host root's alone, so bind the host's nodes instead, as rootless podman does."""
    dev = open_in_root(root.fd, "/dev", os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for name, (major, minor) in DEVICES.items():
            try:
                if userns:
                    os.close(os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o666, dir_fd=dev))
                    mount(f"/dev/{name}", f"{_fd_path(dev)}/{name}", None, MS_BIND)
                    continue
                os.mknod(name, stat.S_IFCHR | 0o666, os.makedev(major, minor), dir_fd=dev)
            except FileExistsError:
                if not exist_ok:
                    raise
                continue
            os.chmod(name, 0o666, dir_fd=dev)  # mknod's mode is filtered by the umask
        for name, target in DEV_LINKS.items():
            try:
                os.symlink(target, name, dir_fd=dev)
            except FileExistsError:
                if not exist_ok:
                    raise
    finally:
        os.close(dev)


def bind(root: Root, source: str | int, target: str, readonly: bool) -> None:
    """Bind SOURCE, a path or (a user namespace) a detached copy of its mounts, at TARGET."""
    if isinstance(source, int):
        directory = stat.S_ISDIR(os.fstat(source).st_mode)
        fd = root.target(target, directory)
        try:
            move_mount(source, fd, target)
        finally:
            os.close(fd)
            os.close(source)
    else:
        directory = os.path.isdir(source)
        root.mount(source, target, None, MS_BIND | MS_REC, directory=directory)
    if readonly:
        read_only_tree(root, target, directory)


def read_only_tree(root: Root, path: str, directory: bool = True) -> None:
    """Make the mount at PATH read-only, and every mount below it.

    A remount with MS_RDONLY changes only the top mount: with -v /:/host:ro,
    /host/proc would stay writable, and with it the host's core_pattern. The
    tree was made private first (make_private), so nothing mounted on the host
    later can propagate into it writable.
    """
    fd = root.target(path, directory)  # opened after the bind: the new mount, not the file under it
    try:
        mount_setattr(fd, MOUNT_ATTR_RDONLY, path)
    except OSError as e:
        if e.errno != errno.ENOSYS:
            raise
        raise PyrunError("mount_setattr", f"{path}: this kernel cannot make a bind mount read-only with the "
                                          "mounts below it (mount_setattr(2), Linux 5.12); refusing the :ro "
                                          "bind rather than leaving them writable") from None
    finally:
        os.close(fd)


def pivot(new_root: str) -> None:
    """Make NEW_ROOT the root. pivot_root(".", ".") stacks the old root on top of the new; detach it."""
    os.chdir(new_root)
    pivot_root(".", ".")
    umount2(".", MNT_DETACH)
    os.chdir("/")


def mask_host_paths(root: Root, masked=MASKED, read_only=READ_ONLY) -> None:
    """Hide MASKED, make READ_ONLY read-only (Docker's lists, or an OCI config's maskedPaths/readonlyPaths)."""
    for path in masked:
        try:
            fd = open_in_root(root.fd, path)
        except FileNotFoundError:
            continue
        try:
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                mount("tmpfs", _fd_path(fd), "tmpfs", MS_RDONLY, "size=0")
            else:
                mount("/dev/null", _fd_path(fd), None, MS_BIND)
        finally:
            os.close(fd)
    for path in read_only:
        try:
            fd = open_in_root(root.fd, path)
        except FileNotFoundError:
            continue
        try:
            mount(_fd_path(fd), _fd_path(fd), None, MS_BIND | MS_REC)
        finally:
            os.close(fd)
        # The remount must name the new bind mount, not the file under it: open the path again.
        root.mount(None, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY | SAFE)
