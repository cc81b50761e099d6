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
    -> pivot_root (oci/init_root.py) -> hostname, lo, sysctl -> masked paths -> keyring
    -> oom_score_adj, rlimits -> terminal -> look up the program -> seccomp built -> bounding set
    -> "ready" ... start opens the FIFO ... -> user -> capabilities -> no_new_privs -> [startContainer
    hooks] -> close fds but 0-2 and --preserve-fds -> cwd -> seccomp loaded -> execve (oci/init_process.py)

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

This file is the two processes' order; PID 1's root (init_root.py) and the
last steps every container process takes (init_process.py) are beside it.
"""
import ctypes
import fcntl
import os
import platform
import socket
import struct

import _prctl  # noqa: F401  (security.py's: imported now, as after pivot_root the host's modules are gone)

from runtime import init_shared, rootfs, sync, syscalls, userns
from runtime.errors import PyrunError
from runtime.oci import init_process, init_root
from runtime.oci.config import NAMESPACES, Bundle, Process
from runtime.oci.config_linux import PROC_NS
from runtime.security import limit_bounding, make_undumpable
from runtime.syscalls import MS_RDONLY, MS_REC

_KEYCTL = {"x86_64": 250, "aarch64": 219}[platform.machine()]
_KEYCTL_JOIN_SESSION_KEYRING = 1
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1
_libc = ctypes.CDLL(None, use_errno=True)


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

    PARENT (pyrun run's, a pidfd of the engine): PID 1 is killed when that process dies
    (init_process._die_with)."""
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
                    trees[i] = [(path, init_root.is_v1(path), syscalls.open_tree(path)) for path in cgroup_dirs]
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


def _pid1(sock, b: Bundle, fifo: int, preserve_fds: int, cgroup_dirs: list[str], pivot: bool,
          keyring: str | None, trees: dict, parent: int | None = None) -> None:
    p = b.process
    at = init_process.At("rootfs", sock)
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
        init_root.build_root(b, cgroup_dirs, pivot, create_container_hooks if b.syncs_hooks() else None, trees)
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
                init_root.remount(root, "/", MS_RDONLY, 0 if b.has("user") else None)
        finally:
            root.close()
        if keyring:
            at.step = "keyctl(JOIN_SESSION_KEYRING)"
            _join_keyring(keyring)
        program, syscall_filter, late = init_process.prepare(sock, at, p, b.seccomp,
                                                             rootfs=b.annotations.get("org.pyrun.rootfs"))
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
        init_process.finish(at, p, program, syscall_filter, late, preserve_fds, before_exec=start_hooks, parent=parent)
    except (OSError, PyrunError) as e:
        init_process.failed(at, e)


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
        at = init_process.At("exec", sock)
        try:
            late = init_process.limits(at, p)
            pty = None
            if p.terminal:
                at.step = "terminal"
                pty = init_process.pty(p.console_size)
            program, syscall_filter = init_process.program_and_filter(at, p, profile)
            at.step = "capabilities (bounding)"
            limit_bounding(p.caps.bounding)
            init_process.become(at, p)
            if syscall_filter is not None and p.no_new_privileges:
                at.step = "seccomp"
                syscall_filter.load()  # before the fork too: the child is never unfiltered in the container
        except (OSError, PyrunError) as e:
            init_process.failed(at, e)
        prepared.update(pty=pty, program=program, late=late)

    init_shared.fork_init(sock, "setns", enter, lambda _null: _exec_child(sock, p, preserve_fds, **prepared))


def _exec_child(sock, p: Process, preserve_fds: int, pty: tuple[int, int] | None, program: str,
                late: list) -> None:
    """The process `exec` adds, already the program's user with its capabilities and filter
    (exec_intermediate): its terminal and session, then execve. Its sync socket stays open to the end: exec
    learns of any error, and end of file means the program runs."""
    at = init_process.At("exec", sock)
    try:
        tty = init_shared.send_pty(sock, pty) if pty is not None else None
        init_process.session(at, tty)
        init_process.run(at, p, program, None, late, preserve_fds, keep_sock=True)
    except (OSError, PyrunError) as e:
        init_process.failed(at, e)


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


def _wait_for_start(fifo: int) -> None:
    """Block until `start` opens the exec FIFO for reading; tell it we are going by writing one byte.

    FIFO is an O_PATH fd opened on the host before the fork: reopened through /proc/self/fd, it reaches the
    FIFO in the state directory, which the container's root no longer shows. The written end stays open
    until init_process._keep_fds closes it, just before execve: `start` reads end of file there, for its poststart
    hooks, which config.md puts after the program is executed (and so after startContainer's)."""
    fd = os.open(f"/proc/self/fd/{fifo}", os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, b"0")
    except BaseException:
        os.close(fd)
        raise
    finally:
        os.close(fifo)
