"""pyrun cp: files into and out of a running container, every path resolved inside its root.

The container's root is /proc/PID/root, its PID 1's view of its own mount
namespace. A path in the container is never handed to the host's own path
walk: a container can replace any directory with a symlink to /etc at any
moment (the class of Docker's CVE-2019-14271 and the `docker cp` symlink
races). So each container path is opened with openat2(RESOLVE_IN_ROOT |
RESOLVE_NO_MAGICLINKS), which ends every '..' and absolute symlink at the
container's root, and everything below it is reached through directory fds
already held, with O_NOFOLLOW: what is checked is what is used.

As `docker cp` (and `cp -a`): a directory is copied with its contents, a
symlink as a symlink, modes are kept; SRC/. copies a directory's contents.
Files copied out lose their setuid and setgid bits: a container must not be
able to hand the host a setuid-root program. Devices, FIFOs and sockets are
not copied (a FIFO would block the copy).
"""
import os
import stat

from runtime import state, syscalls
from runtime.errors import PyrunError
from runtime.record import Record

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_CHUNK = 1 << 20


def parse(value: str) -> tuple[str | None, str]:
    """'CONTAINER:PATH' -> (CONTAINER, PATH); a host path -> (None, PATH). As docker: a path with a ':'
    before any '/' names a container; write ./a:b for a host file called a:b."""
    ref, colon, path = value.partition(":")
    if colon and ref and "/" not in ref:
        if not path:
            raise PyrunError("invalid cp", f"{value!r}: expected CONTAINER:PATH with a path after the ':'")
        return ref, path
    return None, value


def copy(root: str, source: str, dest: str) -> None:
    """`pyrun cp SRC DEST`, one of them CONTAINER:PATH."""
    from runtime import lifecycle

    (src_ref, src), (dst_ref, dst) = parse(source), parse(dest)
    if (src_ref is None) == (dst_ref is None):
        raise PyrunError("invalid cp", f"{source!r} {dest!r}: exactly one of SRC and DEST must be "
                                       "CONTAINER:PATH (and '-' for a tar stream is not supported)")
    record = lifecycle.running(root, src_ref or dst_ref, "cp")
    inside = _container_root(record)
    try:
        src_dir, name = _open_parent(inside if src_ref else None, src)
        try:
            dst_dir, target = _destination(inside if dst_ref else None, dst, src)
            try:
                # Out of the container, no setuid or setgid bit: the container chose those files.
                _copy_entry(src_dir, name, dst_dir, target, stat.S_ISUID | stat.S_ISGID if src_ref else 0)
            except OSError as e:
                raise PyrunError("cp", f"{source}: {e.strerror}") from None
            finally:
                os.close(dst_dir)
        finally:
            os.close(src_dir)
    finally:
        os.close(inside)


def _container_root(record: Record) -> int:
    fd = os.open(f"/proc/{record.pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    if not state.alive(record.init):  # the pid was reused between the check and the open
        os.close(fd)
        raise PyrunError("cp", f"container {record.name} is not running")
    return fd


def _open_dir(inside: int | None, path: str) -> int:
    """A directory fd for PATH: resolved in the container's root INSIDE, or (None) on the host."""
    if inside is None:
        return os.open(path, _DIR & ~os.O_NOFOLLOW)
    return syscalls.open_in_root(inside, path, _DIR & ~os.O_NOFOLLOW)


def _absolute(inside: int | None, path: str) -> str:
    return os.path.normpath(os.path.abspath(path) if inside is None else "/" + path)


def _open_parent(inside: int | None, path: str) -> tuple[int, str]:
    """(fd of PATH's directory, PATH's last name, or '.' for a directory's contents)."""
    parent, name = os.path.split(_absolute(inside, path))
    if path.endswith("/.") or not name:
        parent, name = _absolute(inside, path), "."
    try:
        return _open_dir(inside, parent), name
    except OSError as e:
        raise PyrunError("cp", f"{parent}: {e.strerror}") from None


def _destination(inside: int | None, dest: str, source: str) -> tuple[int, str]:
    """Where the copy goes, as docker cp decides: into DEST if it is a directory, else DEST itself."""
    try:
        fd = _open_dir(inside, _absolute(inside, dest))
    except (NotADirectoryError, FileNotFoundError) as e:
        if dest.endswith("/"):
            raise PyrunError("cp", f"{dest}: {e.strerror}") from None
        return _open_parent(inside, dest)
    name = os.path.basename(os.path.normpath(source))
    return fd, "." if source.endswith("/.") or name in ("", "/") else name


def _copy_entry(src_dir: int, name: str, dst_dir: int, target: str, strip: int) -> None:
    """Copy SRC_DIR/NAME to DST_DIR/TARGET ('.': into DST_DIR itself) without following a symlink."""
    info = os.stat(name, dir_fd=src_dir, follow_symlinks=False)
    mode = stat.S_IMODE(info.st_mode) & ~strip
    if stat.S_ISLNK(info.st_mode):
        link = os.readlink(name, dir_fd=src_dir)
        _put(dst_dir, target, lambda tmp: os.symlink(link, tmp, dir_fd=dst_dir))
    elif stat.S_ISREG(info.st_mode):
        _put(dst_dir, target, lambda tmp: _copy_file(src_dir, name, dst_dir, tmp, mode))
    elif stat.S_ISDIR(info.st_mode):
        src = os.open(name, _DIR, dir_fd=src_dir)
        try:
            if target != ".":
                try:
                    os.mkdir(target, 0o700, dir_fd=dst_dir)
                except FileExistsError:
                    pass
            dst = os.open(target, _DIR, dir_fd=dst_dir)  # O_NOFOLLOW: a symlink swapped in fails here
            try:
                for entry in os.listdir(src):
                    _copy_entry(src, entry, dst, entry, strip)
                if target != ".":
                    os.chmod(dst, mode)
            finally:
                os.close(dst)
        finally:
            os.close(src)
    else:
        raise PyrunError("cp", f"{name}: not copied: only files, directories and symlinks are")


def _copy_file(src_dir: int, name: str, dst_dir: int, tmp: str, mode: int) -> None:
    # Opened as a path first and checked: opening a device or a FIFO can itself have effects (or block).
    path = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=src_dir)
    try:
        if not stat.S_ISREG(os.fstat(path).st_mode):
            raise PyrunError("cp", f"{name}: changed while being copied; not a regular file now")
        src = os.open(f"/proc/self/fd/{path}", os.O_RDONLY | os.O_CLOEXEC)  # the very file checked
    finally:
        os.close(path)
    try:
        dst = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                      dir_fd=dst_dir)
        try:
            while data := os.read(src, _CHUNK):
                os.write(dst, data)
            os.fchmod(dst, mode)
        finally:
            os.close(dst)
    finally:
        os.close(src)


def _put(dst_dir: int, target: str, make) -> None:
    """Make TARGET in DST_DIR under a fresh name, then rename it over TARGET: whatever TARGET was (a FIFO,
    a device node, a symlink to the host's files), it is replaced, never opened."""
    tmp = f".pyrun-cp-{os.getpid()}-{target}"[:255]
    try:
        make(tmp)
        os.rename(tmp, target, src_dir_fd=dst_dir, dst_dir_fd=dst_dir)
    except BaseException as e:
        try:
            os.unlink(tmp, dir_fd=dst_dir)
        except FileNotFoundError:
            pass
        if isinstance(e, OSError):
            raise PyrunError("cp", f"{target}: {e.strerror}") from None
        raise
