"""A pyrun-oci container process's last steps, PID 1's and exec's alike (config.md "process").

    limits (oom_score_adj, rlimits) -> terminal -> the program looked up -> seccomp built (loaded here
    without noNewPrivileges) -> session -> bounding set -> [PID 1: "ready", the exec FIFO]
    -> user -> capabilities -> no_new_privs -> only the kept fds -> cwd, umask, late rlimits
    -> seccomp loaded (with noNewPrivileges) -> execve

PID 1 (oci/init.py's _pid1) takes them around its wait for `start`; exec's intermediate takes them up
to the seccomp filter before it forks, and its child the rest (oci/init.py's exec_intermediate says why).
Every failure is reported over the sync socket as the step it happened at (At).
"""
import fcntl
import os
import resource
import select
import signal
import socket
import struct
import sys

import prctl

from runtime import init_shared, rootfs
from runtime.errors import EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND, EXIT_PYRUN, PyrunError
from runtime.oci.config import RLIMITS, SECCOMP_OVERLAPS, Process
from runtime.security import limit_bounding, make_undumpable, set_capabilities
from runtime.syscalls import MS_BIND


class At:
    """The step a process is at, and the sync socket it reports to if that step fails."""

    def __init__(self, step: str, sock):
        self.step, self.sock = step, sock


def prepare(sock, at: At, p: Process, profile: dict | None, rootfs: str | None = None):
    """PID 1's steps as root with every capability: limits, terminal, the program looked up, the filter built
    (and loaded now without noNewPrivileges, as loading then needs CAP_SYS_ADMIN), the bounding set cut."""
    late = limits(at, p)
    tty = None
    if p.terminal:
        at.step = "terminal"
        tty = _terminal(sock, p.console_size)
    program, syscall_filter = program_and_filter(at, p, profile, rootfs)
    session(at, tty)
    at.step = "capabilities (bounding)"
    limit_bounding(p.caps.bounding)
    return program, syscall_filter, late


def limits(at: At, p: Process) -> list:
    """oom_score_adj and the rlimits that may be set now (as root: raising one takes CAP_SYS_RESOURCE); return
    those to set once the fds are closed (_after_fds_closed)."""
    if p.oom_score_adj is not None:
        at.step = "oom_score_adj"
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(p.oom_score_adj))
    late = [limit for limit in p.rlimits if _after_fds_closed(*limit)]
    _set_rlimits(at, [limit for limit in p.rlimits if limit not in late])
    return late


def program_and_filter(at: At, p: Process, profile: dict | None, rootfs: str | None = None):
    """The program looked up, and the seccomp filter built, loaded at once without noNewPrivileges (loading it
    then takes CAP_SYS_ADMIN, so while we hold it); returns both."""
    at.step = f"exec {p.args[0]}"
    program = _look_up(p.args[0], p.path(), p.cwd, rootfs)
    at.step = "seccomp"
    syscall_filter = None
    if profile is not None:
        from runtime import seccomp  # imported already (_preload): the host's files are gone by now

        syscall_filter = seccomp.build(profile, p.caps.bounding, SECCOMP_OVERLAPS)
    if syscall_filter is not None and not p.no_new_privileges:
        syscall_filter.load()
    return program, syscall_filter


def session(at: At, tty: int | None) -> None:
    """A session of the program's own, with TTY as its controlling terminal and fds 0-2 if given."""
    at.step = "setsid"
    os.setsid()
    if tty is not None:
        os.login_tty(tty)
    for sig in (signal.SIGPIPE, signal.SIGXFSZ):  # Python ignores them; ignored stays ignored across execve
        signal.signal(sig, signal.SIG_DFL)


def become(at: At, p: Process, parent: int | None = None) -> None:
    """The config's user, capabilities and no_new_privs; PARENT: see _die_with."""
    at.step = f"user {p.uid}:{p.gid}"
    _switch_user(p.uid, p.gid, p.additional_gids)
    if parent is not None:
        at.step = "prctl(PR_SET_PDEATHSIG)"
        _die_with(parent)
    at.step = "capabilities"
    # An ambient capability must be permitted and inheritable; runc (gocapability) skips one that is not,
    # and runc's own default config.json asks for three that are not inheritable.
    set_capabilities(p.caps.effective, p.caps.permitted, p.caps.inheritable,
                     p.caps.ambient & p.caps.inheritable & p.caps.permitted)
    if p.no_new_privileges:
        prctl.set_no_new_privs(1)


def finish(at: At, p: Process, program: str, syscall_filter, late_rlimits: list, preserve_fds: int,
            before_exec=None, parent: int | None = None) -> None:
    """PID 1 once started: the config's user, capabilities and no_new_privs, BEFORE_EXEC (startContainer hooks,
    run as the program will, with its user and capabilities, before the fds are closed), then run."""
    become(at, p, parent)
    if before_exec:
        before_exec()
    run(at, p, program, syscall_filter if p.no_new_privileges else None, late_rlimits, preserve_fds,
         keep_sock=False)


def run(at: At, p: Process, program: str, syscall_filter, late_rlimits: list, preserve_fds: int,
         keep_sock: bool) -> None:
    """Only the kept fds; cwd, umask, LATE_RLIMITS (those limits left: _after_fds_closed), SYSCALL_FILTER if
    given (the one loaded last: with noNewPrivileges); execve.
    With KEEP_SOCK the sync socket stays open (close-on-exec) above the kept fds."""
    at.step = "close fds"
    at.sock = _keep_fds(preserve_fds, at.sock if keep_sock else None) or at.sock
    at.step = f"chdir({p.cwd})"
    os.chdir(p.cwd)  # once no host fd but the preserved ones is open (CVE-2024-21626)
    if not os.getcwd().startswith("/"):
        raise PyrunError(at.step, "the working directory is outside the container")
    os.umask(p.umask if p.umask is not None else 0o022)
    _set_rlimits(at, late_rlimits)
    if syscall_filter is not None:
        at.step = "seccomp"
        syscall_filter.load()
    at.step = f"exec {p.args[0]}"
    try:
        os.execve(program, list(p.args), dict(e.split("=", 1) for e in p.env))
    except FileNotFoundError:  # the program is there (_look_up found it): its #! interpreter or loader is not
        raise PyrunError(at.step, init_shared.not_found(program, p.path(), p.cwd, None), EXIT_NOT_FOUND) from None


def failed(at: At, e: Exception) -> None:
    """Report E to create or exec (or, once the socket is closed, to the container's stderr) and exit with the
    code a shell would: 126 for a program that is not executable, 127 for a missing one."""
    if at.step.startswith("exec") and isinstance(e, PermissionError):
        init_shared.fail(at.sock, at.step, PyrunError(at.step, "permission denied"), EXIT_NOT_EXECUTABLE)
    # _look_up's 126 or 127, and finish's 127 for an execve that found no interpreter: pyrun run exits with it
    code = e.exit_code if at.step.startswith("exec") and isinstance(e, PyrunError) else 1
    init_shared.fail(at.sock, at.step, e, code)


def pty(size: tuple[int, int] | None) -> tuple[int, int]:
    """A pty from the container's devpts (init_shared.open_pty), of SIZE: (master, the other side)."""
    master, tty = init_shared.open_pty()
    try:
        if size:
            fcntl.ioctl(master, 0x5414, struct.pack("HHHH", size[0], size[1], 0, 0))  # TIOCSWINSZ
    except BaseException:
        os.close(master)
        os.close(tty)
        raise
    return master, tty


def _terminal(sock, size: tuple[int, int] | None) -> int:
    """PID 1's pty (pty); its master goes to create, for the console socket. It is also the container's
    /dev/console."""
    tty = init_shared.send_pty(sock, pty(size))
    root = rootfs.Root("/")
    try:  # the spec's /dev/console: the terminal itself
        root.mount(f"/proc/self/fd/{tty}", "/dev/console", None, MS_BIND, directory=False)
    finally:
        root.close()
    return tty


def _after_fds_closed(name: str, soft: int, hard: int) -> bool:
    """An RLIMIT_NOFILE that lowers the limit is set last, once only the kept fds are open: set with the others, a
    limit of 10 stopped PID 1's own steps ("Too many open files"). One that raises it is set with the others,
    while PID 1 still has CAP_SYS_RESOURCE to do so."""
    if name != "RLIMIT_NOFILE":
        return False
    now_soft, now_hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return _size(soft) <= _size(now_soft) and _size(hard) <= _size(now_hard)


def _size(limit: int) -> float:
    """RLIM_INFINITY as the largest limit: -1 to Python, 2**64-1 in config.json."""
    return float("inf") if limit in (resource.RLIM_INFINITY, 2 ** 64 - 1) else limit


def _set_rlimits(at: At, limits: list) -> None:
    for name, soft, hard in limits:
        at.step = f"setrlimit({name}, {soft}, {hard})"
        resource.setrlimit(RLIMITS[name], (soft, hard))


def _look_up(name: str, path: str, cwd: str, rootfs: str | None) -> str:
    """The program to exec, found now so that a missing one fails create, not the container after start.
    ROOTFS: the directory pyrun run was given (annotation org.pyrun.rootfs), named in the error's hint."""
    for candidate in [name] if "/" in name else [os.path.join(d or ".", name) for d in path.split(":")]:
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    if "/" in name and os.path.isfile(name):  # there, but not executable: runc's "permission denied", 126
        raise PyrunError(f"exec {name}", "permission denied", EXIT_NOT_EXECUTABLE)
    raise PyrunError(f"exec {name}", init_shared.not_found(name, path, cwd, rootfs), EXIT_NOT_FOUND)


def _switch_user(uid: int, gid: int, groups: tuple[int, ...]) -> None:
    prctl.set_keepcaps(True)  # the capabilities are the config's to set next, not setuid's to clear
    os.setgroups(list(groups))
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    make_undumpable()  # a change of uid resets it to fs.suid_dumpable, which may be 1: /proc/PID/exe is the host's
    prctl.set_keepcaps(False)


def _die_with(parent: int) -> None:
    """Be killed when pyrun run dies, as its own PID 1 is (init_shared.die_with_parent): a foreground container
    goes with the terminal's pyrun. Set after the user switch, which clears it; PARENT is the pidfd of the
    process we were re-parented to when the intermediate exited, readable once that process has exited."""
    prctl.set_pdeathsig(signal.SIGKILL)
    poll = select.poll()
    poll.register(parent, select.POLLIN)
    if poll.poll(0):  # pyrun died before the setting took hold
        os._exit(EXIT_PYRUN)
    os.close(parent)


def _keep_fds(preserve: int, sock=None):
    """Close every fd but stdin, stdout, stderr and the engine's 3..2+PRESERVE, which stay open across exec;
    SOCK moves to the fd above them, where execve closes it: returned as a socket there."""
    for fd in range(3, 3 + preserve):
        try:
            os.set_inheritable(fd, True)
        except OSError:
            pass  # the engine passed fewer than it said: nothing to keep there
    first = 3 + preserve
    if sock is not None:
        if sock.fileno() != first:
            os.dup2(sock.fileno(), first, inheritable=False)
            os.close(sock.detach())
            sock = socket.socket(fileno=first)
        first += 1
    os.closerange(first, os.sysconf("SC_OPEN_MAX"))
    sys.stdout.flush()
    return sock
