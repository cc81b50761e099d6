"""The host side of the fork: start the container's processes, then be their monitor.

pyrun forks the intermediate (init.py), which unshares and forks PID 1 and
exits. pyrun makes itself a child subreaper first, so PID 1 is re-parented
to pyrun, not to the host's init, and pyrun can wait for it. Between "pid"
and "go" (sync.py) the container is a process with namespaces but no
command yet: while it builds its rootfs, pyrun wires the network and joins
it to the cgroup, then waits for its "ready".

As the monitor, pyrun forwards the signals a user sends it, copies a
pseudo-terminal's bytes both ways for -t, and turns the wait status into an
exit code: the command's own, or 128+N for a death by signal N (signals.py).
"""
import errno
import fcntl
import os
import select
import signal
import sys
import termios
import traceback
import tty as ttymod

from runtime import init, pid1, sync, userns
from runtime.errors import EXIT_PYRUN, PyrunError
from runtime.signals import FORWARDED, exit_code, forward_to
from runtime.spec import ContainerSpec

class ContainerProcess:
    def __init__(self, pid: int, sock, tty: bool, traced: list | None = None):
        self.pid = pid
        self.traced = traced            # --verbose: the pid1.Action list PID 1 runs, to print with its times
        self.sock = sock
        self.tty = tty
        self.status: int | None = None
        self.master: int | None = None  # -t: pyrun's end of the container's terminal
        self.held: list = []            # what must stay open while it runs: published ports' sockets
        self.grace = 10.0               # --stop-timeout: SIGTERM to SIGKILL, when pyrun is told to stop
        self.timeout: float | None = None  # --timeout

    def go(self) -> None:
        """Wait until PID 1 is ready, then let it exec the command; raises PyrunError (exit 126/127/125) if
        either failed.

        Signals are forwarded from here on, and the --timeout runs: the command may be running before go()
        returns.
        """
        try:
            if self.tty:
                self.master = sync.expect(self.sock, "pty")["fds"][0]
            ready = sync.expect(self.sock, "ready")
            if self.traced is not None:
                pid1.trace(self.traced, ready["took"])
        except PyrunError:  # PID 1 failed and is exiting, or a signal aborts the setup while it waits for "go"
            self.kill()
            self.reap()
            self.sock.close()
            raise
        forward_to(self.pid, self.grace, self.timeout)
        sync.send(self.sock, "go")
        try:
            msg = sync.recv(self.sock)
        finally:
            self.sock.close()
        if msg is not None and msg["type"] == "error":
            self.reap()
            raise PyrunError(msg["step"], msg["detail"], msg["code"])

    def reported_error(self) -> PyrunError | None:
        """The error PID 1 sent before it died, if it did. It is why a host-side step on its namespaces failed
        meanwhile (its netns was gone), and the one worth reporting. Never waits."""
        while self.sock.fileno() != -1 and select.select([self.sock], [], [], 0)[0]:
            msg = sync.recv(self.sock)
            if msg is None:
                return None
            for fd in msg["fds"]:
                os.close(fd)
            if msg["type"] == "error":
                return PyrunError(msg["step"], msg["detail"], msg["code"])
        return None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            pass

    def reap(self) -> int:
        if self.status is None:
            _, self.status = os.waitpid(self.pid, 0)
        return exit_code(self.status)

    def wait(self) -> int:
        """Forward signals and, with a pty, the terminal, until PID 1 exits; return its exit code."""
        if self.master is not None:
            _pump_terminal(self.master)
        return self.reap()


def spawn(spec: ContainerSpec, actions: list, hostname: str, join: int | None = None,
          meanwhile=None, ids=None, trace: bool = False) -> ContainerProcess:
    """Fork the container's processes; return once PID 1 exists. It runs ACTIONS (pid1.recipe: it builds
    the container) while the caller wires its network and cgroup, and waits for go(); with TRACE, go()
    prints them with the time each took.

    MEANWHILE, if given, is called while the intermediate makes the namespaces,
    which pyrun would otherwise spend waiting. With JOIN (`pyrun exec`), the
    process joins the namespaces of the container whose PID 1 is JOIN instead
    of making new ones, and is not PID 1. With IDS (--userns=auto, a userns.IdRange), pyrun maps the
    intermediate's new user namespace to those host ids before it makes the others.
    """
    import prctl

    prctl.set_child_subreaper(1)
    ours, theirs = sync.channel()
    sys.stdout.flush()
    sys.stderr.flush()
    intermediate = os.fork()
    if intermediate == 0:
        for sig in FORWARDED:  # not Python's handlers: a signal now must act as it will on the command
            signal.signal(sig, signal.SIG_DFL)
        ours.close()
        try:
            init.intermediate(theirs, spec, actions, hostname, join, trace)
        except BaseException:  # a bug's exception must not unwind into pyrun's own code and run its teardown
            traceback.print_exc()
        os._exit(EXIT_PYRUN)
    theirs.close()
    if ids is not None:
        try:
            userns.map_ids(ours, intermediate, ids, spec.rootfs)
        except BaseException:
            os.kill(intermediate, signal.SIGKILL)  # it waits for "mapped", or has failed and is exiting
            os.waitpid(intermediate, 0)
            ours.close()
            raise
    failed = None
    try:
        if meanwhile:
            meanwhile()
    except BaseException as e:
        failed = e
    try:
        pid = sync.expect(ours, "pid")["pid"]
    finally:
        os.waitpid(intermediate, 0)
    proc = ContainerProcess(pid, ours, spec.tty, actions if trace else None)
    proc.grace, proc.timeout = spec.stop_timeout, spec.timeout
    if failed:
        proc.kill()
        proc.reap()
        ours.close()
        raise failed
    return proc


def _copy_window_size(master: int) -> None:
    try:
        size = fcntl.ioctl(sys.stdin.fileno(), termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(master, termios.TIOCSWINSZ, size)
    except OSError:
        pass  # stdin is not a terminal: keep the pty's default size


def _pump_terminal(master: int) -> None:
    """Copy stdin to the pty and the pty to stdout until the container closes its side."""
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    saved = termios.tcgetattr(stdin) if os.isatty(stdin) else None
    if saved:
        ttymod.setraw(stdin)
    previous = signal.signal(signal.SIGWINCH, lambda _s, _f: _copy_window_size(master))
    _copy_window_size(master)
    readers = [master, stdin]
    try:
        while True:
            try:
                ready, _, _ = select.select(readers, [], [])
            except InterruptedError:
                continue
            if master in ready:
                try:
                    data = os.read(master, 65536)
                except OSError as e:  # EIO: every fd of the pty's other side is closed
                    if e.errno != errno.EIO:
                        raise
                    data = b""
                if not data:
                    return
                os.write(stdout, data)
            if stdin in ready:
                data = os.read(stdin, 65536)
                if data:
                    os.write(master, data)
                else:
                    readers.remove(stdin)
                    os.write(master, b"\x04")  # stdin ended: send the pty an end-of-file
    finally:
        signal.signal(signal.SIGWINCH, previous)
        if saved:
            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
        os.close(master)
