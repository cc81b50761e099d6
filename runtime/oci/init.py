"""The container side of `create`: from config.json to a process blocked just before execve (runtime.md).

The OCI lifecycle splits pyrun's one "go" in two commands. `create` must
return with the container's process fully set up, in its namespaces, with
its rootfs, limits and privileges, but not yet running the user's program;
`start` lets it run. So PID 1 does everything runtime/init.py's PID 1 does,
in the order the config asks for, says "ready" to `create` (which exits),
and then waits on the exec FIFO: opening a FIFO for writing blocks until
someone opens it for reading, and that someone is `start` (as runc's
exec.fifo). Until then, nothing of the user's has run.

    join namespaces by path -> make the rest -> fork PID 1 (runtime/init.fork_init)
    PID 1: mounts in config order -> devices -> [create: prestart, createRuntime hooks; createContainer hooks]
    -> pivot_root -> hostname, lo, sysctl -> masked paths
    -> keyring, oom_score_adj, rlimits -> terminal -> look up the program -> seccomp built
    -> bounding set -> "ready" ... start opens the FIFO ... -> user -> capabilities -> no_new_privs
    -> [startContainer hooks] -> close fds but 0-2 and --preserve-fds -> cwd -> seccomp loaded -> execve

`exec` adds a process to a running container: its intermediate joins the
container's cgroup, namespaces and root (/proc/PID/ns/*, /proc/PID/root)
and forks, and the child takes the same steps as PID 1 from the limits on,
with the --process JSON (or the container's own process) for its config.

Nothing of pyrun stays between the engine and this process: the
intermediate exits, `create` is not a subreaper, so PID 1's parent becomes
the engine's subreaper (conmon, containerd's shim), which reaps it and reads
its exit status as the container's.
"""
import ctypes
import fcntl
import os
import platform
import resource
import signal
import socket
import struct
import sys

import _prctl  # noqa: F401  (security.py's: imported now, as after pivot_root the host's modules are gone)
import prctl

from runtime import init, rootfs, seccomp, sync, syscalls
from runtime.errors import EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND, PyrunError
from runtime.oci import hooks
from runtime.oci.config import NAMESPACES, RLIMITS, SECCOMP_OVERLAPS, Bundle, Mount, Process
from runtime.security import limit_bounding, set_capabilities
from runtime.syscalls import MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY, MS_REC, MS_REMOUNT, mount

MS_MOVE = 0x2000
_KEYCTL = {"x86_64": 250, "aarch64": 219}[platform.machine()]
_KEYCTL_JOIN_SESSION_KEYRING = 1
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1
_libc = ctypes.CDLL(None, use_errno=True)
# The spec's namespace names -> their files under /proc/PID/ns, which `exec` joins.
PROC_NS = {"pid": "pid", "network": "net", "ipc": "ipc", "uts": "uts", "cgroup": "cgroup", "mount": "mnt"}


def _join_cgroup(dirs: list[str]) -> None:
    """Move this process into the cgroup directories DIRS ("0" in cgroup.procs: the writer itself)."""
    for path in dirs:
        with open(os.path.join(path, "cgroup.procs"), "w") as f:
            f.write("0")


def intermediate(sock, bundle: Bundle, fifo: int, preserve_fds: int, cgroup_dirs: list[str], pivot: bool,
                 keyring: str | None) -> None:
    """Once create has moved us into the cgroup, join the namespaces the config names by path, make the
    others, fork PID 1."""
    def enter() -> None:
        sync.expect(sock, "joined")  # first: PID 1 is born in the cgroup, and a new cgroup namespace is rooted there
        for kind, path in bundle.namespaces:  # joined first: how a pod's containers share one netns
            if path:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    syscalls.setns(fd, NAMESPACES[kind], path)
                finally:
                    os.close(fd)
        flags = 0
        for kind, path in bundle.namespaces:
            flags |= NAMESPACES[kind] if path is None else 0
        syscalls.unshare(flags)

    init.fork_init(sock, "namespaces", enter,
                   lambda _null: _pid1(sock, bundle, fifo, preserve_fds, cgroup_dirs, pivot, keyring))


class _At:
    """The step a process is at, and the sync socket it reports to if that step fails."""

    def __init__(self, step: str, sock):
        self.step, self.sock = step, sock


def _pid1(sock, b: Bundle, fifo: int, preserve_fds: int, cgroup_dirs: list[str], pivot: bool,
          keyring: str | None) -> None:
    p = b.process
    at = _At("rootfs", sock)
    hook_state = {}

    def create_container_hooks() -> None:
        """Stop for create's prestart and createRuntime hooks; then run createContainer's, here (config.md)."""
        at.step = "hooks"
        sync.send(sock, "hooks")
        hook_state.update(sync.expect(sock, "state")["state"])
        at.step = "createContainer hook"
        hooks.run(b.hooks, "createContainer", hook_state, cwd=b.path)
        at.step = "rootfs"

    try:
        _build_root(b, cgroup_dirs, pivot, create_container_hooks if b.syncs_hooks() else None)
        if b.hostname:
            at.step = "sethostname"
            socket.sethostname(b.hostname)
        if b.makes("network"):
            at.step = "loopback"
            _loopback_up()  # as runc does: a new network namespace's lo is down
        for key, value in b.sysctl:
            at.step = f"sysctl {key}"
            with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
                f.write(value)
        at.step = "masked paths"
        root = rootfs.Root("/")
        try:
            rootfs.mask_host_paths(root, b.masked, b.readonly_paths)
        finally:
            root.close()
        if b.readonly:
            at.step = "root.readonly"
            mount(None, "/", None, MS_BIND | MS_REMOUNT | MS_RDONLY)
        if keyring:
            at.step = "keyctl(JOIN_SESSION_KEYRING)"
            _join_keyring(keyring)
        program, syscall_filter = _prepare(sock, at, p, b.seccomp, console=True)
        sync.send(sock, "ready")
        sock.close()  # create exits now; from here on errors go to the container's stderr
        at.step = "exec.fifo"
        _wait_for_start(fifo)  # as root still: /proc/self/fd of a non-dumpable process is root's alone
        start_hooks = None
        if b.hooks.get("startContainer"):
            def start_hooks() -> None:
                at.step = "startContainer hook"
                hooks.run(b.hooks, "startContainer", {**hook_state, "status": "created"}, cwd="/")
        _finish(at, p, program, syscall_filter, preserve_fds, keep_sock=False, before_exec=start_hooks)
    except (OSError, PyrunError) as e:
        _failed(at, e)


def exec_intermediate(sock, target: int, p: Process, profile: dict | None, preserve_fds: int,
                      cgroup_dirs: list[str]) -> None:
    """`exec`: join the cgroup, the namespaces and the root of the container whose PID 1 is TARGET, fork."""
    def enter() -> None:
        _join_cgroup(cgroup_dirs)  # first, while its cgroupfs is the host's to name
        # Opened before any is joined: after the mount namespace, /proc/TARGET is the container's view.
        fds = [(kind, os.open(f"/proc/{target}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC))
               for kind, name in PROC_NS.items()]
        root = os.open(f"/proc/{target}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for kind, fd in fds:
                if os.fstat(fd).st_ino != os.stat(f"/proc/self/ns/{PROC_NS[kind]}").st_ino:
                    syscalls.setns(fd, NAMESPACES[kind], f"/proc/{target}/ns/{PROC_NS[kind]}")
            # The container's root as PID 1 sees it (with --no-pivot too, where the namespace's root is not it).
            os.fchdir(root)
            os.chroot(".")
            os.chdir("/")
        finally:
            for _, fd in fds:
                os.close(fd)
            os.close(root)

    init.fork_init(sock, "setns", enter, lambda _null: _exec_child(sock, p, profile, preserve_fds))


def _exec_child(sock, p: Process, profile: dict | None, preserve_fds: int) -> None:
    """The process `exec` adds: PID 1's privileges and filter from the same config, then execve. Its sync
    socket stays open to the end: exec learns of any error, and end of file means the program runs."""
    at = _At("exec", sock)
    try:
        program, syscall_filter = _prepare(sock, at, p, profile, console=False)
        _finish(at, p, program, syscall_filter, preserve_fds, keep_sock=True)
    except (OSError, PyrunError) as e:
        _failed(at, e)


def _prepare(sock, at: _At, p: Process, profile: dict | None, console: bool):
    """What is done as root with every capability: limits, terminal, the program looked up, the filter built
    (and loaded now without noNewPrivileges, as loading then needs CAP_SYS_ADMIN), the bounding set cut."""
    if p.oom_score_adj is not None:
        at.step = "oom_score_adj"
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(p.oom_score_adj))
    for name, soft, hard in p.rlimits:
        at.step = f"setrlimit({name}, {soft}, {hard})"
        resource.setrlimit(RLIMITS[name], (soft, hard))
    tty = None
    if p.terminal:
        at.step = "terminal"
        tty = _terminal(sock, p.console_size, console)
    at.step = f"exec {p.args[0]}"
    program = _look_up(p.args[0], p.path())
    at.step = "seccomp"
    syscall_filter = seccomp.build(profile, p.caps.bounding, SECCOMP_OVERLAPS) if profile is not None else None
    if syscall_filter is not None and not p.no_new_privileges:
        syscall_filter.load()
    at.step = "setsid"
    os.setsid()
    if tty is not None:
        os.login_tty(tty)
    for sig in (signal.SIGPIPE, signal.SIGXFSZ):  # Python ignores them; ignored stays ignored across execve
        signal.signal(sig, signal.SIG_DFL)
    at.step = "capabilities (bounding)"
    limit_bounding(p.caps.bounding)
    return program, syscall_filter


def _finish(at: _At, p: Process, program: str, syscall_filter, preserve_fds: int, keep_sock: bool,
            before_exec=None) -> None:
    """The config's user, capabilities and no_new_privs; only the kept fds; cwd, umask, the filter; execve.
    With KEEP_SOCK the sync socket stays open (close-on-exec) above the kept fds. BEFORE_EXEC (startContainer
    hooks) runs as the program will, with its user and capabilities, before the fds are closed."""
    at.step = f"user {p.uid}:{p.gid}"
    _switch_user(p.uid, p.gid, p.additional_gids)
    at.step = "capabilities"
    # An ambient capability must be permitted and inheritable; runc (gocapability) skips one that is not,
    # and runc's own default config.json asks for three that are not inheritable.
    set_capabilities(p.caps.effective, p.caps.permitted, p.caps.inheritable,
                     p.caps.ambient & p.caps.inheritable & p.caps.permitted)
    if p.no_new_privileges:
        prctl.set_no_new_privs(1)
    if before_exec:
        before_exec()
    at.step = "close fds"
    at.sock = _keep_fds(preserve_fds, at.sock if keep_sock else None) or at.sock
    at.step = f"chdir({p.cwd})"
    os.chdir(p.cwd)  # once no host fd but the preserved ones is open (CVE-2024-21626)
    if not os.getcwd().startswith("/"):
        raise PyrunError(at.step, "the working directory is outside the container")
    os.umask(p.umask if p.umask is not None else 0o022)
    if syscall_filter is not None and p.no_new_privileges:
        at.step = "seccomp"
        syscall_filter.load()
    at.step = f"exec {p.args[0]}"
    os.execve(program, list(p.args), dict(e.split("=", 1) for e in p.env))


def _failed(at: _At, e: Exception) -> None:
    """Report E to create or exec (or, once the socket is closed, to the container's stderr) and exit with the
    code a shell would: 126 for a program that is not executable, 127 for a missing one."""
    if at.step.startswith("exec") and isinstance(e, PermissionError):
        init._fail(at.sock, at.step, PyrunError(at.step, "permission denied"), EXIT_NOT_EXECUTABLE)
    code = EXIT_NOT_FOUND if at.step.startswith("exec") and isinstance(e, FileNotFoundError) else 1
    init._fail(at.sock, at.step, e, code)


def _build_root(b: Bundle, cgroup_dirs: list[str], pivot: bool, before_pivot=None) -> None:
    """The config's mounts, in its order, resolved inside the root (rootfs.Root), BEFORE_PIVOT, then pivot_root."""
    rootfs.make_private()
    mount(b.rootfs, b.rootfs, None, MS_BIND | MS_REC)  # pivot_root needs the new root to be a mount
    root = rootfs.Root(b.rootfs)
    try:
        for m in b.mounts:
            if m.type == "cgroup":
                _mount_cgroup(root, m, cgroup_dirs)
            elif m.type == "bind":
                _bind(root, m)
            else:
                root.mount(m.source, m.destination, m.type, m.flags, m.data or None)
            if m.propagation:
                root.mount(None, m.destination, None, m.propagation, directory=os.path.isdir(m.source))
        os.close(root.target("/dev"))
        rootfs.make_devices(root, exist_ok=True)  # the spec's default devices, where the config has none
        os.close(root.target(b.process.cwd))      # runc creates a missing cwd, as Docker does
    finally:
        root.close()
    if before_pivot:
        before_pivot()
    if pivot:
        rootfs.pivot(b.rootfs)
    else:  # --no-pivot, for a root on ramfs (pivot_root refuses it): weaker, the old root is only out of sight
        os.chdir(b.rootfs)
        mount(b.rootfs, "/", None, MS_MOVE)
        os.chroot(".")
        os.chdir("/")


def _bind(root: rootfs.Root, m: Mount) -> None:
    directory = os.path.isdir(m.source)
    root.mount(m.source, m.destination, None, m.flags & (MS_BIND | MS_REC), directory=directory)
    extra = m.flags & ~(MS_BIND | MS_REC)
    if extra:  # a bind mount takes its flags only from a second, remounting call
        root.mount(None, m.destination, None, MS_BIND | MS_REMOUNT | extra, directory=directory)
    if m.flags & MS_RDONLY and m.flags & MS_REC:
        rootfs.read_only_tree(root, m.destination, directory)  # rbind,ro: read-only all the way down


def _mount_cgroup(root: rootfs.Root, m: Mount, cgroup_dirs: list[str]) -> None:
    """The container's own cgroup, as a tree like the host's /sys/fs/cgroup (cgroup v1: one per controller)."""
    flags = m.flags & (MS_NOSUID | MS_NODEV | MS_NOEXEC)
    v1 = [path for path in cgroup_dirs if not os.path.exists(os.path.join(path, "cgroup.controllers"))]
    if v1:
        root.mount("tmpfs", m.destination, "tmpfs", flags, "mode=755")
    for path in cgroup_dirs:
        controller = os.path.relpath(path, "/sys/fs/cgroup").split("/")[0]
        target = f"{m.destination}/{controller}" if path in v1 else m.destination
        root.mount(path, target, None, MS_BIND)
        root.mount(None, target, None, MS_BIND | MS_REMOUNT | flags | (m.flags & MS_RDONLY))
    if v1 and m.flags & MS_RDONLY:
        root.mount(None, m.destination, None, MS_REMOUNT | flags | MS_RDONLY, "mode=755")


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        flags = struct.unpack("16sH", fcntl.ioctl(s, _SIOCGIFFLAGS, struct.pack("16sH22x", b"lo", 0))[:18])[1]
        fcntl.ioctl(s, _SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | _IFF_UP))


def _join_keyring(name: str) -> None:
    """A session keyring of the container's own: the keyring is not namespaced, and the host's is not its."""
    if _libc.syscall(_KEYCTL, _KEYCTL_JOIN_SESSION_KEYRING, name.encode()) < 0:
        err = ctypes.get_errno()
        if err != 38:  # ENOSYS: a kernel without keys has nothing to share
            raise OSError(err, os.strerror(err))


def _terminal(sock, size: tuple[int, int] | None, console: bool) -> int:
    """A pty from the container's devpts (init._open_pty); its master goes to create (or exec), for the console
    socket. PID 1's is also the container's /dev/console."""
    master, tty = init._open_pty()
    try:
        if size:
            fcntl.ioctl(master, 0x5414, struct.pack("HHHH", size[0], size[1], 0, 0))  # TIOCSWINSZ
        sync.send(sock, "pty", fds=[master])
    finally:
        os.close(master)
    if not console:
        return tty
    root = rootfs.Root("/")
    try:  # the spec's /dev/console: the terminal itself
        root.mount(f"/proc/self/fd/{tty}", "/dev/console", None, MS_BIND, directory=False)
    finally:
        root.close()
    return tty


def _look_up(name: str, path: str) -> str:
    """The program to exec, found now so that a missing one fails create, not the container after start."""
    for candidate in [name] if "/" in name else [os.path.join(d or ".", name) for d in path.split(":")]:
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    if "/" in name:
        raise PyrunError(f"exec {name}", "no such file or directory, or not executable", EXIT_NOT_FOUND)
    raise PyrunError(f"exec {name}", "executable file not found in $PATH", EXIT_NOT_FOUND)


def _switch_user(uid: int, gid: int, groups: tuple[int, ...]) -> None:
    prctl.set_keepcaps(True)  # the capabilities are the config's to set next, not setuid's to clear
    os.setgroups(list(groups))
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    prctl.set_keepcaps(False)


def _wait_for_start(fifo: int) -> None:
    """Block until `start` opens the exec FIFO for reading; tell it we are going by writing one byte.

    FIFO is an O_PATH fd opened on the host before the fork: reopened through /proc/self/fd, it reaches the
    FIFO in the state directory, which the container's root no longer shows. The written end stays open
    until _keep_fds closes it, just before execve: `start` reads end of file there, for its poststart
    hooks, which config.md puts after the program is executed (and so after startContainer's)."""
    fd = os.open(f"/proc/self/fd/{fifo}", os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, b"0")
    except BaseException:
        os.close(fd)
        raise
    finally:
        os.close(fifo)


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
