"""The container side of the fork: from a copy of pyrun to the user's command.

Two processes run this file. The *intermediate* is forked by pyrun; it
unshares the namespaces and forks again, because a new PID namespace only
applies to children. Its child is the container's PID 1, the *init*, which
builds the container in this order and ends in execve(2):

    namespaces -> rootfs and hostname (pid1.py's actions, in their order) -> user looked up
    -> seccomp filter built -> ready -> (pyrun: go) -> parent-death signal -> terminal
    -> privileges and user -> close fds -> workdir -> rlimits -> seccomp filter loaded -> execve

pyrun wires the network and joins the cgroup while PID 1 builds the rootfs:
two CPUs, two processes, and the container starts sooner.

`pyrun exec` runs the same two processes, except that the intermediate joins
a running container's cgroups and namespaces with setns(2), and its child has no
actions to run (the rootfs and hostname are the container's already): joining a PID
namespace, like making one, applies only to children. The child is in the container's
PID namespace from its fork on, where a container process with CAP_SYS_PTRACE can seize
it: the intermediate, which the container cannot see, drops to the command's user,
capabilities and seccomp filter before it forks (_join).

With --userns=auto (userns.py) the intermediate first unshares only its user
namespace and waits while pyrun writes its uid_map and gid_map and sends the
rootfs as an idmapped mount; then it becomes the namespace's root and
unshares the rest, which the new user namespace then owns. Everything it
needs from the host's paths it opens before: its new root is an
unprivileged host uid, and the state directory is root's alone.

Both report to pyrun over the sync socket (sync.py). Nothing here returns:
each process ends in execve or _exit.
"""
import os
import resource
import signal
import socket

from runtime import cgroups, namespaces, pid1, seccomp, sync, syscalls, userns, users
from runtime.errors import EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND, EXIT_PYRUN, PyrunError
from runtime.init_shared import die_with_parent, fail, fork_init, not_found, open_pty, send_pty
from runtime.oci.config_process import DEFAULT_PATH
from runtime.security import drop_privileges, make_undumpable
from runtime.spec import ULIMITS, ContainerSpec

_SYNC_FD = 3  # where the sync socket sits while everything above it is closed
# What --init's PID 1 passes on to the command (explain.py's script traps the same).
INIT_FORWARDS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2,
                 signal.SIGWINCH)


def intermediate(sock: socket.socket, spec: ContainerSpec, actions: list[pid1.Action], hostname: str,
                 join: int | None = None, trace: bool = False) -> None:
    """Make the container's namespaces, or with JOIN enter those of PID JOIN (`pyrun exec`, whose ACTIONS are
    none), and fork. PID 1 runs ACTIONS (pid1.recipe); with TRACE it says how long each took."""
    kinds = namespaces.kinds(spec.network, spec.userns)
    if join is not None:
        return _join(sock, spec, hostname, join, kinds)

    def enter() -> None:
        if "user" in kinds:
            _enter_userns(sock, actions)
        namespaces.unshare([k for k in kinds if k != "user"])

    fork_init(sock, "unshare", enter,
              lambda null: _init(sock, spec, actions, hostname, null, trace))


def _join(sock, spec: ContainerSpec, hostname: str, target: int, kinds: list[str]) -> None:
    """`pyrun exec`: enter the cgroups and namespaces of the container whose PID 1 is TARGET and fork the
    process that execs the command, born no more privileged than the command will be.

    A process is in the container's PID namespace from its fork on, and a container process with
    CAP_SYS_PTRACE may seize it there, dumpable or not (ptrace(2)): a child that still held pyrun's
    capabilities, sat outside the container's cgroups or had no seccomp filter yet would run the
    container's code with all of that (tests/test_hostile_default.py). So this intermediate, which the
    container cannot see, does everything that takes privilege: the cgroups, the namespaces, the user
    looked up and the terminal opened in the container's root, the capabilities and user dropped to the
    command's, no_new_privs, the seccomp filter loaded; then it forks."""
    prepared = {}

    def enter() -> None:
        step = "cgroups"
        try:
            # PID 1's cgroups as the kernel lists them, not pyrun's journal: under --runtime the runtime made
            # them. Joined from the host's view of them, before the namespaces.
            cgroups.join_like(os.getpid(), target)
            step = "setns"
            namespaces.join(target, kinds)
            if "user" in kinds:
                userns.become_root()
            step = "user"
            who = users.resolve(spec.user) if spec.user else None  # in the container's root: its /etc/passwd
            pty = None
            if spec.tty:
                step = "open(/dev/pts/ptmx)"
                pty = open_pty()
            step = "seccomp"
            profile = seccomp.profile_for(spec.seccomp_setting, spec.seccomp)
            syscall_filter = seccomp.build(profile, spec.caps) if profile is not None else None
            step = "capabilities" if who is None else f"capabilities and user {spec.user}"
            drop_privileges(spec.caps, who)
            if syscall_filter is not None:
                step = "seccomp"
                syscall_filter.load()  # no_new_privs is on: the filter needs no privilege, and the fork inherits it
        except (OSError, PyrunError) as e:
            fail(sock, step, e)
        prepared.update(who=who, pty=pty)

    fork_init(sock, "setns", enter, lambda null: _joined(sock, spec, hostname, null, **prepared))


def _joined(sock, spec: ContainerSpec, hostname: str, null: int, who: users.Identity | None,
            pty: tuple[int, int] | None) -> None:
    """The process `pyrun exec` forked into the container (_join): its terminal, ready, go, execve."""
    step = "ready"
    try:
        tty = send_pty(sock, pty) if pty is not None else None
        sync.send(sock, "ready")
        if sync.recv(sock) is None:
            os._exit(EXIT_PYRUN)  # pyrun went away before saying go
        step = "prctl(PR_SET_PDEATHSIG)"
        die_with_parent(sock)
        _exec(sock, spec, hostname, tty, null, None, who, dropped=True)
    except (OSError, PyrunError) as e:
        fail(sock, step, e)


def _enter_userns(sock, actions: list[pid1.Action]) -> None:
    """--userns=auto: the host's paths first, then the user namespace ("userns"), then its ids ("mapped").

    Gives ACTIONS the binds' sources as detached copies of their mounts, and the overlay the idmapped rootfs
    pyrun sent, its layer a path from the working directory: this process's copy of them (pyrun's own, which
    --verbose prints, keeps the paths). The working directory is the one path that needs no lookup from the
    host's root: unshare(CLONE_NEWNS) carries it over into the new mount namespace."""
    overlay = next(a for a in actions if isinstance(a, pid1.Overlay))
    for bind in (a for a in actions if isinstance(a, pid1.Bind)):
        bind.tree = syscalls.open_tree(bind.source, recursive=True)
    os.chdir(overlay.layer)
    namespaces.unshare(["user"])
    sync.send(sock, "userns")
    overlay.layer, overlay.lower = ".", sync.expect(sock, "mapped")["fds"][0]
    userns.become_root()
    make_undumpable()  # a change of uid resets it to fs.suid_dumpable: say it again rather than rely on that


def _init(sock, spec: ContainerSpec, actions: list[pid1.Action], hostname: str, null: int,
          trace: bool = False) -> None:
    """PID 1 (or, with no ACTIONS, a process joining a running container): set up, wait for go, exec.

    NULL is the host's /dev/null, for a stdin that is not kept open."""
    step = "rootfs"
    try:
        took = []
        with pid1.Build() as build:
            for action in actions:
                step = action.step
                took.append([action.kind, build.run(action)])
        step = "user"
        who = users.resolve(spec.user) if spec.user else None  # in the container's root: its /etc/passwd
        tty = None
        if spec.tty:
            step = "open(/dev/pts/ptmx)"
            tty = send_pty(sock, open_pty())
        step = "seccomp"
        profile = seccomp.profile_for(spec.seccomp_setting, spec.seccomp)
        syscall_filter = seccomp.build(profile, spec.caps) if profile is not None else None
        sync.send(sock, "ready", **({"took": took} if trace else {}))
        if sync.recv(sock) is None:
            os._exit(EXIT_PYRUN)  # pyrun went away before saying go
        step = "prctl(PR_SET_PDEATHSIG)"
        die_with_parent(sock)
        if spec.init:
            _reap(sock, spec, hostname, tty, null, syscall_filter, who)
        _exec(sock, spec, hostname, tty, null, syscall_filter, who)
    except (OSError, PyrunError) as e:
        fail(sock, step, e)


def environment(spec: ContainerSpec, hostname: str, home: str = "/root") -> dict[str, str]:
    """The command's environment: Docker's defaults, then -e (explain.py prints the same).

    HOME is the user's home directory from the container's /etc/passwd (users.py)."""
    env = {"PATH": DEFAULT_PATH, "HOSTNAME": hostname, "HOME": home}
    if spec.tty:
        env["TERM"] = "xterm"
    env.update(spec.env)
    return env


def _exec(sock, spec: ContainerSpec, hostname: str, tty: int | None, null: int, syscall_filter,
          who: users.Identity | None = None, dropped: bool = False) -> None:
    """The command's session, terminal, privileges (unless DROPPED already: _join), fds, cwd, limits, filter;
    execve."""
    step = "setsid"
    try:
        os.setsid()
        if tty is not None:
            step = "ioctl(TIOCSCTTY)"
            os.login_tty(tty)  # the pty becomes the controlling terminal and fds 0, 1 and 2
        elif not spec.interactive:
            os.dup2(null, 0)
        # Python ignores these; an ignored signal stays ignored across execve.
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
        env = environment(spec, hostname, who.home if who else "/root")
        if not dropped:
            step = "capabilities" if who is None else f"capabilities and user {spec.user}"
            drop_privileges(spec.caps, who)
            if who is not None:
                die_with_parent(sock)  # a change of uid cleared the parent-death signal
        step = "close fds"
        sock = _close_fds(sock)
        # chdir only once no host fd is open: -w /proc/self/fd/N must not reach the host (CVE-2024-21626).
        step = f"chdir({spec.workdir})"
        os.chdir(spec.workdir)
        if not os.getcwd().startswith("/"):
            raise PyrunError(step, "the working directory is outside the container")
        # Once every fd is closed and no file is opened any more: --ulimit nofile=3 must not stop pyrun's own
        # work, and the fd sweep above must not stop at a lowered limit. Lowered only (spec.parse_ulimit).
        for u in spec.ulimits:
            step = f"setrlimit({u.name}={u.soft}:{u.hard})"
            resource.setrlimit(ULIMITS[u.name], (u.soft, u.hard))
        if syscall_filter is not None:
            step = "seccomp"  # last: from here on only the profile's system calls work, execve among them
            syscall_filter.load()
        step = f"exec {spec.command[0]}"
        os.execvpe(spec.command[0], list(spec.command), env)
    except FileNotFoundError as e:
        if not step.startswith("exec"):
            fail(sock, step, e)
        fail(sock, step, PyrunError(step, _not_found(spec, env["PATH"])), EXIT_NOT_FOUND)
    except PermissionError as e:
        if not step.startswith("exec"):
            fail(sock, step, e)
        fail(sock, step, PyrunError(step, "permission denied: not an executable file"), EXIT_NOT_EXECUTABLE)
    except (OSError, PyrunError) as e:
        fail(sock, step, e)


def _not_found(spec: ContainerSpec, path: str) -> str:
    return not_found(spec.command[0], path, spec.workdir, spec.rootfs)


def _close_fds(sock: socket.socket) -> socket.socket:
    """Close every fd but 0, 1, 2 and the sync socket, which execve will close."""
    os.dup2(sock.fileno(), _SYNC_FD, inheritable=False)
    if sock.fileno() != _SYNC_FD:
        os.close(sock.detach())
        sock = socket.socket(fileno=_SYNC_FD)
    os.closerange(_SYNC_FD + 1, os.sysconf("SC_OPEN_MAX"))
    return sock


def _reap(sock, spec: ContainerSpec, hostname: str, tty: int | None, null: int, syscall_filter,
          who: users.Identity | None) -> None:
    """--init: stay as PID 1, run the command as a child, forward signals, reap orphans.

    PID 1 gets only the signals it has handlers for, so without an init a
    command that ignores SIGTERM cannot be stopped politely, and orphans
    become zombies nobody waits for.
    """
    child = os.fork()
    if child == 0:
        _exec(sock, spec, hostname, tty, null, syscall_filter, who)
    if tty is not None:
        os.close(tty)
    # As the command's user too (as Docker's tini is): a root reaper without CAP_KILL could not signal it.
    drop_privileges(spec.caps, who)
    if who is not None:
        die_with_parent(sock)
    sock.close()
    os.closerange(3, os.sysconf("SC_OPEN_MAX"))
    for sig in INIT_FORWARDS:
        signal.signal(sig, lambda s, _f: os.kill(child, s))
    while True:
        pid, status = os.wait()
        if pid == child:
            code = os.waitstatus_to_exitcode(status)
            os._exit(128 - code if code < 0 else code)
