"""What the container side of a fork does under either runtime: the built-in's (init.py) and pyrun-oci's
(oci/init.py) intermediates and PID 1s share these.

The intermediate forks PID 1 and reports its pid, because a new PID
namespace applies only to children; PID 1 opens its terminal in the
container's own devpts, asks to die with the process that made it
(prctl(PR_SET_PDEATHSIG)), and reports a failure over the sync socket
before it exits. Kept apart from init.py so that pyrun-oci's create, a
process of its own each time, imports none of the built-in's recipe.
"""
import fcntl
import os
import select
import signal
import socket
import stat
import struct
import sys

from runtime import sync
from runtime.errors import EXIT_PYRUN, PyrunError
from runtime.security import make_undumpable

_TIOCSPTLCK, _TIOCGPTPEER = 0x40045431, 0x5441  # asm-generic/ioctls.h
_PTMX = (5, 2)


def fork_init(sock: socket.socket, step: str, enter, child) -> None:
    """The intermediate's work: ENTER the namespaces, fork, report the child's pid and exit; the child calls
    CHILD(null). Shared with the OCI runtime (runtime/oci/init.py), whose namespaces come from config.json."""
    os.umask(0o022)  # Docker's, for the container's files; pyrun's own 0077 is for its state only
    try:
        make_undumpable()  # before setns: a process in the container must not reach into ours (CVE-2019-5736)
        # The host's, opened while still on the host: a running container's /dev/null may be a FIFO
        # (open would block for good) or a symlink to one of its files.
        null = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
        enter()
        step = "fork"
        sent, send = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(send)
            # Both processes write to the sync socket: PID 1 waits until the intermediate has said
            # "pid" and exited (end of file), so that pyrun never reads "ready" before "pid".
            os.read(sent, 1)
            os.close(sent)
            child(null)
        sync.send(sock, "pid", pid=pid)
    except (OSError, PyrunError) as e:
        fail(sock, step, e)
    os._exit(0)


def open_pty() -> tuple[int, int]:
    """A pseudo-terminal from the container's own devpts, so the shell's tty is /dev/pts/0 inside.

    A pty opened by pyrun on the host would belong to the host's devpts,
    where the container cannot name it: `tty` would say "not a tty". A
    running container may have swapped /dev/ptmx (a symlink into /dev/pts
    that pyrun made) for a FIFO or a link to a file, so pyrun opens the
    devpts's own ptmx, which no one can replace without mounting over it,
    without following a link or waiting, checks that it is the pty
    multiplexer, and asks it for the other side (TIOCGPTPEER) instead of
    opening a path again.
    """
    master = os.open("/dev/pts/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        st = os.fstat(master)
        if not stat.S_ISCHR(st.st_mode) or st.st_rdev != os.makedev(*_PTMX):
            raise PyrunError("open(/dev/pts/ptmx)", "not the pty multiplexer (character device 5:2)")
        os.set_blocking(master, True)
        fcntl.ioctl(master, _TIOCSPTLCK, struct.pack("i", 0))
        return master, fcntl.ioctl(master, _TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY)
    except BaseException:
        os.close(master)
        raise


def send_pty(sock, pty: tuple[int, int]) -> int:
    """Hand PTY's master (open_pty's pair) to pyrun, or to create, over SOCK and close ours; return the other
    side, the terminal the program gets."""
    master, tty = pty
    try:
        sync.send(sock, "pty", fds=[master])
    finally:
        os.close(master)
    return tty


def die_with_parent(sock) -> None:
    """Be killed when pyrun dies. Set now, not earlier: until the intermediate exited it was our parent."""
    import prctl

    prctl.set_pdeathsig(signal.SIGKILL)
    poll = select.poll()
    poll.register(sock, select.POLLIN | select.POLLHUP)
    if poll.poll(0):  # pyrun died before the setting took hold
        os._exit(EXIT_PYRUN)


def not_found(name: str, path: str, workdir: str, rootfs: str | None) -> str:
    """Why execve said ENOENT, for a user who expected Docker to bring the command along with an image; with
    ROOTFS (the directory the user gave pyrun run), what to do about it.

    Looked up in PID 1 after pivot_root: the paths are the container's, never the host's."""
    candidates = [name] if "/" in name else [os.path.join(d or ".", name) for d in path.split(":")]
    found = next((c for c in candidates if os.path.lexists(c)), None)
    if found is not None:  # the file is there: what is missing is its #! interpreter or its dynamic loader
        return f"{found} exists, but the interpreter on its #! line or its dynamic loader is missing from the rootfs"
    what = (f"executable file not found in $PATH ({path})" if "/" not in name else "no such file or directory"
            + ("" if name.startswith("/") else f" (from {workdir})"))
    if rootfs is None:
        return what
    return (f"{what}: the rootfs {rootfs} has no {name!r}; pyrun runs what the directory holds: "
            "scripts/build-rootfs DIR builds a Debian one with python3, scripts/build-busybox-rootfs DIR a tiny one")


def fail(sock, step: str, error: Exception, code: int = EXIT_PYRUN) -> None:
    detail = error.detail if isinstance(error, PyrunError) else (error.strerror or str(error))
    try:
        sync.send(sock, "error", step=step, detail=detail, code=code)
    except OSError:
        print(f"pyrun: {step}: {detail}", file=sys.stderr)
    os._exit(code)
