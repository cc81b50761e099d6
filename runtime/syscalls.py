"""The few Linux system calls that Python 3.11's os module does not wrap.

Containers are built from a handful of syscalls: unshare(2) and setns(2)
create and join namespaces, mount(2)/umount2(2) build the container's view of
the filesystem, pivot_root(2) makes that view its root, openat2(2) with
RESOLVE_IN_ROOT resolves a path the way the container would, so that a
symlink planted in the rootfs cannot point a mount at the host, and
mount_setattr(2) changes the flags of a whole tree of mounts at once, or
gives a mount an id mapping (--userns=auto). open_tree(2) copies a mount
tree into a file descriptor, detached from any directory, and move_mount(2)
attaches it, maybe in another mount namespace: that is how a mount made by
pyrun on the host reaches a container whose root cannot see the host's paths.

Each wrapper raises OSError naming the syscall and its argument, in crun's
style: "pivot_root(/run/pyrun/abc/merged): Invalid argument".
"""
import ctypes
import os

_libc = ctypes.CDLL(None, use_errno=True)

# Syscall numbers for the calls glibc 2.36 has no wrapper for.
_SYS = {
    "x86_64": {"pivot_root": 155, "open_tree": 428, "move_mount": 429, "openat2": 437, "mount_setattr": 442},
    "aarch64": {"pivot_root": 41, "open_tree": 428, "move_mount": 429, "openat2": 437, "mount_setattr": 442},
}[os.uname().machine]  # what platform.machine() returns, without importing platform (~1 ms)

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
MNT_DETACH = 0x2

MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8
MOUNT_ATTR_IDMAP = 0x100000
OPEN_TREE_CLONE = 0x1
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOVE_MOUNT_T_EMPTY_PATH = 0x40
AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000

RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_IN_ROOT = 0x10


def _check(result: int, call: str, arg: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{call}({arg}): {os.strerror(err)}")
    return result


def unshare(flags: int) -> None:
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare", hex(flags))


def setns(fd: int, nstype: int = 0, what: str = "") -> None:
    _check(_libc.setns(ctypes.c_int(fd), ctypes.c_int(nstype)), "setns", what or str(fd))


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0,
          data: str | None = None) -> None:
    enc = lambda s: s.encode() if s is not None else None  # noqa: E731
    _check(_libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)),
           "mount", f"{fstype or source} on {target}")


def umount2(target: str, flags: int = 0) -> None:
    _check(_libc.umount2(target.encode(), ctypes.c_int(flags)), "umount2", target)


def pivot_root(new_root: str, put_old: str) -> None:
    _check(_libc.syscall(_SYS["pivot_root"], new_root.encode(), put_old.encode()),
           "pivot_root", new_root)


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def open_in_root(root_fd: int, path: str, flags: int = os.O_PATH | os.O_CLOEXEC) -> int:
    """Open PATH as the container will see it: '..' and absolute symlinks stop at ROOT."""
    how = _OpenHow(flags, 0, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
    return _check(_libc.syscall(_SYS["openat2"], ctypes.c_int(root_fd), path.encode(),
                                ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how))),
                  "openat2", path)


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64), ("propagation", ctypes.c_uint64),
                ("userns_fd", ctypes.c_uint64)]


def mount_setattr(fd: int, attr_set: int, what: str = "", userns_fd: int = 0) -> None:
    """Set ATTR_SET (MOUNT_ATTR_*) on the mount FD is the root of and on every mount below it.

    With MOUNT_ATTR_IDMAP, USERNS_FD names the user namespace whose uid_map and gid_map the mount
    applies to its files' owners; the kernel allows it only on a detached mount (open_tree)."""
    attr = _MountAttr(attr_set, 0, 0, userns_fd)
    _check(_libc.syscall(_SYS["mount_setattr"], ctypes.c_int(fd), b"", ctypes.c_uint(AT_EMPTY_PATH | AT_RECURSIVE),
                         ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr))),
           "mount_setattr", what or str(fd))


def open_tree(path: str, recursive: bool = False) -> int:
    """A detached copy of the mount at PATH (with RECURSIVE, of the mounts below it too), as an fd."""
    flags = OPEN_TREE_CLONE | os.O_CLOEXEC | (AT_RECURSIVE if recursive else 0)
    return _check(_libc.syscall(_SYS["open_tree"], ctypes.c_int(AT_FDCWD), path.encode(), ctypes.c_uint(flags)),
                  "open_tree", path)


def move_mount(fd: int, target_fd: int, what: str = "") -> None:
    """Attach the detached mount FD on the file TARGET_FD is open on (an O_PATH fd)."""
    _check(_libc.syscall(_SYS["move_mount"], ctypes.c_int(fd), b"", ctypes.c_int(target_fd), b"",
                         ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH)),
           "move_mount", what or str(target_fd))
