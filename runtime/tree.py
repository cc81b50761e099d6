"""Removing a directory tree that someone else filled: a container's writable layer.

Whatever a container wrote, its teardown must be able to remove. shutil.rmtree
recurses once per level and builds paths that grow with the depth: a few
thousand nested directories make it raise RecursionError (or ENAMETOOLONG,
or EMFILE for a walk that holds a descriptor per level). remove_tree keeps
its cost flat whatever the shape of the tree: it never descends more than
one level. A directory's files are unlinked and its subdirectories are
moved (rename(2), within the tree) up to the top, where each is emptied in
turn; the tree is flattened as it is removed, with three descriptors open.

What it does not do, so that the tree cannot turn it against the host:

- follow a symlink: every name is opened O_NOFOLLOW relative to its parent's
  descriptor, never by a path;
- open anything but directories, and regular files whose chattr +i/+a
  flags it clears (a container with CAP_LINUX_IMMUTABLE can set them): a
  FIFO or a device node the container made is unlinked, never opened;
- cross into another mount: a mount point in the tree (which only the
  host's root can make) is left where it is, and said.
"""
import errno
import fcntl
import itertools
import os
import stat
import sys

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FS_IOC_GETFLAGS, _FS_IOC_SETFLAGS = 0x80086601, 0x40086602
_FROZEN = 0x10 | 0x20  # FS_IMMUTABLE_FL, FS_APPEND_FL: unlink and rename fail with EPERM while set
_PASSES = 10  # a directory still not empty after this many listings is being written to as we go


def remove_tree(path: str) -> None:
    """Remove the directory PATH and everything below it; already gone is success."""
    try:
        top = os.open(path, _DIR)
    except FileNotFoundError:
        return
    try:
        mount = _mount_id(top)
        fresh = (f".pyrun-rm-{n}" for n in itertools.count())  # names for directories moved up
        while _clear(top, top, mount, fresh):
            pass  # a directory moved up while the top was being listed may not have been listed
    finally:
        os.close(top)
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass


def _clear(fd: int, top: int, mount: int, fresh) -> bool:
    """One pass over directory FD: unlink its files; remove its subdirectories if FD is the top, else move
    them up there. Returns whether FD had anything in it."""
    found = False
    with os.scandir(fd) as entries:
        for entry in entries:
            found = True
            if not entry.is_dir(follow_symlinks=False):
                _thawing(lambda: os.unlink(entry.name, dir_fd=fd), fd, entry.name)
            elif fd == top:
                _remove_dir(top, entry.name, mount, fresh)
            else:
                _move_up(fd, entry.name, top, fresh)
    return found


def _remove_dir(top: int, name: str, mount: int, fresh) -> None:
    try:
        fd = os.open(name, _DIR, dir_fd=top)
    except FileNotFoundError:
        return
    try:
        if _mount_id(fd) != mount:
            raise OSError(errno.EBUSY, f"{name} is a mount point: left in place")
        for _ in range(_PASSES):
            if not _clear(fd, top, mount, fresh):
                break
        else:
            raise OSError(errno.ENOTEMPTY, f"{name} is still being written to")
    finally:
        os.close(fd)
    _thawing(lambda: os.rmdir(name, dir_fd=top), top, name)


def _move_up(fd: int, name: str, top: int, fresh) -> None:
    for new in fresh:
        try:
            _thawing(lambda: os.rename(name, new, src_dir_fd=fd, dst_dir_fd=top), fd, name)
            return
        except OSError as e:
            # The top held that name already (a directory that was not empty, or a file): take the next.
            # An empty directory there is replaced, which is as good as removing it.
            if e.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
                raise


def _thawing(operation, parent: int, name: str) -> None:
    """Do OPERATION on NAME in PARENT; if chattr flags forbid it, clear them on both and do it again."""
    try:
        operation()
    except FileNotFoundError:
        pass
    except PermissionError:
        _thaw(parent)
        _thaw_entry(parent, name)
        try:
            operation()
        except FileNotFoundError:
            pass


def _thaw_entry(parent: int, name: str) -> None:
    """Clear NAME's immutable and append-only flags, if it is a regular file or a directory (opening anything
    else could reach a device driver, and nothing else can carry the flags)."""
    try:
        mode = os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            return
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC, dir_fd=parent)
    except OSError:
        return  # the retry says what is wrong
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
            _thaw(fd)
    finally:
        os.close(fd)


def _thaw(fd: int) -> None:
    try:
        flags = int.from_bytes(fcntl.ioctl(fd, _FS_IOC_GETFLAGS, bytes(4)), sys.byteorder)
        if flags & _FROZEN:
            fcntl.ioctl(fd, _FS_IOC_SETFLAGS, (flags & ~_FROZEN).to_bytes(4, sys.byteorder))
    except OSError:
        pass  # a filesystem without the flags: the retry says what is wrong


def _mount_id(fd: int) -> int:
    """The id of the mount FD is on; a bind mount of the same filesystem has the same st_dev, not this."""
    with open(f"/proc/self/fdinfo/{fd}") as f:
        for line in f:
            if line.startswith("mnt_id:"):
                return int(line.split()[1])
    raise OSError(errno.ENOTSUP, "/proc/self/fdinfo has no mnt_id")
