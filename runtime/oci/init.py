"""The container side of `create`: from config.json to a process blocked just before execve (runtime.md).

The OCI lifecycle splits pyrun's one "go" in two commands. `create` must
return with the container's process fully set up, in its namespaces, with
its rootfs, limits and privileges, but not yet running the user's program;
`start` lets it run. So PID 1 does everything runtime/init.py's PID 1 does,
in the order the config asks for, says "ready" to `create` (which exits),
and then waits on the exec FIFO: opening a FIFO for writing blocks until
someone opens it for reading, and that someone is `start` (as runc's
exec.fifo). Until then, nothing of the user's has run.

    join namespaces by path -> [new user namespace: create writes its maps] -> make the rest
    -> fork PID 1 (runtime/init_shared.fork_init)
    PID 1: mounts in config order -> devices -> [create: prestart, createRuntime hooks; createContainer hooks]
    -> pivot_root -> hostname, lo, sysctl -> masked paths
    -> keyring, oom_score_adj, rlimits -> terminal -> look up the program -> seccomp built
    -> bounding set -> "ready" ... start opens the FIFO ... -> user -> capabilities -> no_new_privs
    -> [startContainer hooks] -> close fds but 0-2 and --preserve-fds -> cwd -> seccomp loaded -> execve

`exec` adds a process to a running container: its intermediate joins the
container's cgroup, namespaces and root (/proc/PID/ns/*, /proc/PID/root),
takes the same steps as PID 1 from the limits to the seccomp filter, with
the --process JSON (or the container's own process) for its config, and
only then forks: the child, in the container's PID namespace from its birth,
takes its session and terminal and execs. A container process with
CAP_SYS_PTRACE may seize anything in that namespace; nothing there ever
holds more than the program will.

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
import select
import signal
import socket
import stat
import struct
import sys

import _prctl  # noqa: F401  (security.py's: imported now, as after pivot_root the host's modules are gone)
import prctl

from runtime import init_shared, rootfs, sync, syscalls, userns
from runtime.errors import EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND, EXIT_PYRUN, PyrunError
from runtime.oci.config import NAMESPACES, RLIMITS, SECCOMP_OVERLAPS, Bundle, Mount, Process
from runtime.security import limit_bounding, make_undumpable, set_capabilities
from runtime.syscalls import MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY, MS_REC, MS_REMOUNT, mount

MS_MOVE = 0x2000
_KEYCTL = {"x86_64": 250, "aarch64": 219}[platform.machine()]
_KEYCTL_JOIN_SESSION_KEYRING = 1
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1
_libc = ctypes.CDLL(None, use_errno=True)
# The spec's namespace names -> their files under /proc/PID/ns, which `exec` joins: the user namespace last,
# as until then the host's root may enter them all, whichever user namespace owns them.
PROC_NS = {"pid": "pid", "network": "net", "ipc": "ipc", "uts": "uts", "cgroup": "cgroup", "mount": "mnt",
           "user": "user"}


def _join_cgroup(dirs: list[str]) -> None:
    """Move this process into the cgroup directories DIRS ("0" in cgroup.procs: the writer itself)."""
    for path in dirs:
        with open(os.path.join(path, "cgroup.procs"), "w") as f:
            f.write("0")


def intermediate(sock, bundle: Bundle, fifo: int, preserve_fds: int, cgroup_dirs: list[str], pivot: bool,
                 keyring: str | None, parent: int | None = None) -> None:
    """Once create has moved us into the cgroup, join the namespaces the config names by path, make the
    others, fork PID 1.

    With a user namespace, in runc's order: join those given by path (the user namespace last of them:
    until then the host's root may enter any), unshare a new user namespace and wait while create writes
    its maps, become its root, and make the other namespaces, which it then owns. Its root is an
    unprivileged host uid that may not even reach the bundle: the rootfs and the bind mounts' sources are
    taken first, as detached mounts (open_tree(2)), and the rootfs is attached over the working directory,
    which unshare(CLONE_NEWNS) carries into the new mount namespace (runtime/init.py's _enter_userns).

    PARENT (pyrun run's, a pidfd of the engine): PID 1 is killed when that process dies (see _die_with)."""
    trees = {}
    _preload(bundle.seccomp, bundle.hooks)

    def enter() -> None:
        sync.expect(sock, "joined")  # first: PID 1 is born in the cgroup, and a new cgroup namespace is rooted there
        if bundle.has("user"):
            trees["/"] = syscalls.open_tree(bundle.rootfs, recursive=True)
            for i, m in enumerate(bundle.mounts):
                if m.type == "bind":
                    trees[i] = syscalls.open_tree(m.source, recursive=bool(m.flags & MS_REC))
                elif m.type == "cgroup":  # the container's cgroup directories are root's, mode 0700
                    trees[i] = [(path, _is_v1(path), syscalls.open_tree(path)) for path in cgroup_dirs]
            os.chdir(bundle.rootfs)
        # Opened before any is joined; joined first: how a pod's containers share one netns.
        joins = [(kind, path, os.open(path, os.O_RDONLY | os.O_CLOEXEC))
                 for kind, path in sorted(bundle.namespaces, key=lambda ns: ns[0] == "user") if path]
        for kind, path, fd in joins:
            try:
                syscalls.setns(fd, NAMESPACES[kind], path)
            finally:
                os.close(fd)
        if bundle.makes("user"):
            syscalls.unshare(NAMESPACES["user"])
            sync.send(sock, "userns")
            sync.expect(sock, "mapped")
        elif bundle.has("user"):
            _check_joined_maps(bundle)
        if bundle.has("user"):
            userns.become_root()
            make_undumpable()  # a change of uid resets it to fs.suid_dumpable
        flags = 0
        for kind, path in bundle.namespaces:
            flags |= NAMESPACES[kind] if path is None and kind != "user" else 0
        syscalls.unshare(flags)

    init_shared.fork_init(sock, "namespaces", enter, lambda _null: _pid1(sock, bundle, fifo, preserve_fds, cgroup_dirs,
                                                                         pivot, keyring, trees, parent))


def _preload(profile: dict | None, hooks: dict | None = None) -> None:
    """Import now, while the host's files are in reach, what PID 1 needs after pivot_root, and only what this
    container needs: the seccomp module (it loads libseccomp) for a filter, the hooks module (subprocess)
    for createContainer or startContainer hooks. Most configs an engine hands over have neither, and the
    two imports were a good part of what a create cost."""
    if profile is not None:
        import runtime.seccomp  # noqa: F401
    if hooks and (hooks.get("createContainer") or hooks.get("startContainer")):
        import runtime.oci.hooks  # noqa: F401


def _check_joined_maps(b: Bundle) -> None:
    """A user namespace joined by path has its maps already: the config's, if it gives any, must be them."""
    for kind in ("uid", "gid"):
        given = b.map_text(kind)
        with open(f"/proc/self/{kind}_map") as f:  # read from inside: the ids are the host's
            actual = "".join(" ".join(line.split()) + "\n" for line in f)
        if given and given != actual:
            raise PyrunError(f"linux.{kind}Mappings", f"the user namespace joined maps {actual.strip()!r}, not the "
                                                      f"config's {given.strip()!r}")


class _At:
    """The step a process is at, and the sync socket it reports to if that step fails."""

    def __init__(self, step: str, sock):
        self.step, self.sock = step, sock


def _pid1(sock, b: Bundle, fifo: int, preserve_fds: int, cgroup_dirs: list[str], pivot: bool,
          keyring: str | None, trees: dict, parent: int | None = None) -> None:
    p = b.process
    at = _At("rootfs", sock)
    hook_state = {}

    def create_container_hooks() -> None:
        """Stop for create's prestart and createRuntime hooks; then run createContainer's, here (config.md)."""
        at.step = "hooks"
        sync.send(sock, "hooks")
        hook_state.update(sync.expect(sock, "state")["state"])
        at.step = "createContainer hook"
        from runtime.oci import hooks  # imported already (_preload)

        hooks.run(b.hooks, "createContainer", hook_state, cwd=b.path)
        at.step = "rootfs"

    try:
        _build_root(b, cgroup_dirs, pivot, create_container_hooks if b.syncs_hooks() else None, trees)
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
            if b.readonly:
                at.step = "root.readonly"
                _remount(root, "/", MS_RDONLY, 0 if b.has("user") else None)
        finally:
            root.close()
        if keyring:
            at.step = "keyctl(JOIN_SESSION_KEYRING)"
            _join_keyring(keyring)
        program, syscall_filter, late = _prepare(sock, at, p, b.seccomp, rootfs=b.annotations.get("org.pyrun.rootfs"))
        sync.send(sock, "ready")
        sock.close()  # create exits now; from here on errors go to the container's stderr
        at.step = "exec.fifo"
        _wait_for_start(fifo)  # as root still: /proc/self/fd of a non-dumpable process is root's alone
        start_hooks = None
        if b.hooks.get("startContainer"):
            def start_hooks() -> None:
                from runtime.oci import hooks  # imported already (_preload)

                at.step = "startContainer hook"
                hooks.run(b.hooks, "startContainer", {**hook_state, "status": "created"}, cwd="/")
        _finish(at, p, program, syscall_filter, late, preserve_fds, before_exec=start_hooks, parent=parent)
    except (OSError, PyrunError) as e:
        _failed(at, e)


def exec_intermediate(sock, target: int, p: Process, profile: dict | None, preserve_fds: int,
                      cgroup_dirs: list[str]) -> None:
    """`exec`: join the cgroup, the namespaces and the root of the container whose PID 1 is TARGET, take the
    process's limits, user, capabilities and seccomp filter, and fork the process that execs its program.

    All that takes privilege is done here, before the fork, by a process the container cannot see: the child
    is in the container's PID namespace from its birth, where a container process with CAP_SYS_PTRACE may
    seize it, dumpable or not (ptrace(2)), and would run its own code with whatever the child still held
    (runtime/init.py's _join says the same for pyrun exec; tests/test_hostile_default.py)."""
    prepared = {}
    _preload(profile)

    def enter() -> None:
        _join_cgroup(cgroup_dirs)  # first, while its cgroupfs is the host's to name
        # Opened before any is joined: after the mount namespace, /proc/TARGET is the container's view.
        fds = [(kind, os.open(f"/proc/{target}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC))
               for kind, name in PROC_NS.items()]
        root = os.open(f"/proc/{target}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            ours = {kind: os.stat(f"/proc/self/ns/{name}").st_ino for kind, name in PROC_NS.items()}
            joined = set()
            for kind, fd in fds:
                if os.fstat(fd).st_ino != ours[kind]:
                    syscalls.setns(fd, NAMESPACES[kind], f"/proc/{target}/ns/{PROC_NS[kind]}")
                    joined.add(kind)
            if "user" in joined:  # host root's uid is nobody there: be the namespace's root, as PID 1 was
                userns.become_root()
                make_undumpable()
            # The container's root as PID 1 sees it (with --no-pivot too, where the namespace's root is not it).
            os.fchdir(root)
            os.chroot(".")
            os.chdir("/")
        finally:
            for _, fd in fds:
                os.close(fd)
            os.close(root)
        at = _At("exec", sock)
        try:
            late = _limits(at, p)
            pty = None
            if p.terminal:
                at.step = "terminal"
                pty = _pty(p.console_size)
            program, syscall_filter = _program(at, p, profile)
            at.step = "capabilities (bounding)"
            limit_bounding(p.caps.bounding)
            _become(at, p)
            if syscall_filter is not None and p.no_new_privileges:
                at.step = "seccomp"
                syscall_filter.load()  # before the fork too: the child is never unfiltered in the container
        except (OSError, PyrunError) as e:
            _failed(at, e)
        prepared.update(pty=pty, program=program, late=late)

    init_shared.fork_init(sock, "setns", enter, lambda _null: _exec_child(sock, p, preserve_fds, **prepared))


def _exec_child(sock, p: Process, preserve_fds: int, pty: tuple[int, int] | None, program: str,
                late: list) -> None:
    """The process `exec` adds, already the program's user with its capabilities and filter
    (exec_intermediate): its terminal and session, then execve. Its sync socket stays open to the end: exec
    learns of any error, and end of file means the program runs."""
    at = _At("exec", sock)
    try:
        tty = None
        if pty is not None:
            master, tty = pty
            sync.send(sock, "pty", fds=[master])
            os.close(master)
        _session(at, tty)
        _run(at, p, program, None, late, preserve_fds, keep_sock=True)
    except (OSError, PyrunError) as e:
        _failed(at, e)


def _prepare(sock, at: _At, p: Process, profile: dict | None, rootfs: str | None = None):
    """PID 1's steps as root with every capability: limits, terminal, the program looked up, the filter built
    (and loaded now without noNewPrivileges, as loading then needs CAP_SYS_ADMIN), the bounding set cut."""
    late = _limits(at, p)
    tty = None
    if p.terminal:
        at.step = "terminal"
        tty = _terminal(sock, p.console_size)
    program, syscall_filter = _program(at, p, profile, rootfs)
    _session(at, tty)
    at.step = "capabilities (bounding)"
    limit_bounding(p.caps.bounding)
    return program, syscall_filter, late


def _limits(at: _At, p: Process) -> list:
    """oom_score_adj and the rlimits that may be set now (as root: raising one takes CAP_SYS_RESOURCE); return
    those to set once the fds are closed (_after_fds_closed)."""
    if p.oom_score_adj is not None:
        at.step = "oom_score_adj"
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(p.oom_score_adj))
    late = [limit for limit in p.rlimits if _after_fds_closed(*limit)]
    _set_rlimits(at, [limit for limit in p.rlimits if limit not in late])
    return late


def _program(at: _At, p: Process, profile: dict | None, rootfs: str | None = None):
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


def _session(at: _At, tty: int | None) -> None:
    """A session of the program's own, with TTY as its controlling terminal and fds 0-2 if given."""
    at.step = "setsid"
    os.setsid()
    if tty is not None:
        os.login_tty(tty)
    for sig in (signal.SIGPIPE, signal.SIGXFSZ):  # Python ignores them; ignored stays ignored across execve
        signal.signal(sig, signal.SIG_DFL)


def _become(at: _At, p: Process, parent: int | None = None) -> None:
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


def _finish(at: _At, p: Process, program: str, syscall_filter, late_rlimits: list, preserve_fds: int,
            before_exec=None, parent: int | None = None) -> None:
    """PID 1 once started: the config's user, capabilities and no_new_privs, BEFORE_EXEC (startContainer hooks,
    run as the program will, with its user and capabilities, before the fds are closed), then _run."""
    _become(at, p, parent)
    if before_exec:
        before_exec()
    _run(at, p, program, syscall_filter if p.no_new_privileges else None, late_rlimits, preserve_fds,
         keep_sock=False)


def _run(at: _At, p: Process, program: str, syscall_filter, late_rlimits: list, preserve_fds: int,
         keep_sock: bool) -> None:
    """Only the kept fds; cwd, umask, LATE_RLIMITS (those _limits left: _after_fds_closed), SYSCALL_FILTER if
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


def _failed(at: _At, e: Exception) -> None:
    """Report E to create or exec (or, once the socket is closed, to the container's stderr) and exit with the
    code a shell would: 126 for a program that is not executable, 127 for a missing one."""
    if at.step.startswith("exec") and isinstance(e, PermissionError):
        init_shared.fail(at.sock, at.step, PyrunError(at.step, "permission denied"), EXIT_NOT_EXECUTABLE)
    # _look_up's 126 or 127, and _finish's 127 for an execve that found no interpreter: pyrun run exits with it
    code = e.exit_code if at.step.startswith("exec") and isinstance(e, PyrunError) else 1
    init_shared.fail(at.sock, at.step, e, code)


def _build_root(b: Bundle, cgroup_dirs: list[str], pivot: bool, before_pivot=None, trees: dict | None = None) -> None:
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
        _mount_cgroup(root, m, trees.get(i) or [(path, _is_v1(path), None) for path in cgroup_dirs], userns)
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
        _remount(root, m.destination, extra, m.cleared if userns else None, directory)
    if m.flags & MS_RDONLY and m.flags & MS_REC:
        rootfs.read_only_tree(root, m.destination, directory)  # rbind,ro: read-only all the way down


# statvfs(3)'s flags a user namespace may not clear on a mount it was handed (mount_namespaces(7), "locked"),
# and the atime ones, of which a remount must name the one the mount has: as mount(2) flags.
_LOCKED = ((os.ST_RDONLY, MS_RDONLY), (os.ST_NOSUID, MS_NOSUID), (os.ST_NODEV, MS_NODEV), (os.ST_NOEXEC, MS_NOEXEC))
_MS_NOATIME, _MS_RELATIME, _MS_STRICTATIME = 0x400, 0x200000, 0x1000000


def _remount(root: rootfs.Root, path: str, flags: int, cleared: int | None, directory: bool = True) -> None:
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


def _is_v1(cgroup_dir: str) -> bool:
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
        _remount(root, target, flags | (m.flags & MS_RDONLY), m.cleared if userns else None)
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


def _pty(size: tuple[int, int] | None) -> tuple[int, int]:
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
    """PID 1's pty (_pty); its master goes to create, for the console socket. It is also the container's
    /dev/console."""
    master, tty = _pty(size)
    try:
        sync.send(sock, "pty", fds=[master])
    finally:
        os.close(master)
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


def _set_rlimits(at: _At, limits: list) -> None:
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
