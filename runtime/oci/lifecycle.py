"""The OCI lifecycle, host side: create, start, kill, delete (runtime.md "Lifecycle" and "Operations").

    create ID   config.json read and checked; state dir, exec FIFO and cgroup made (journaled);
                PID 1 forked and set up (oci/init.py); pid file written; create exits
    start ID    open the FIFO for reading: PID 1, blocked writing to it, execs the user's program
    kill ID SIG signal PID 1 (--all: every process in its cgroup)
    delete ID   a created or stopped container: kill what is left, undo the journal, remove the state

Each call is a new, short-lived process: all a container is between calls is
its state directory and the kernel's word on its process (oci/state.py). The
engine, not pyrun, waits for the container's process: `create` forks the
intermediate without being a subreaper, so PID 1 is re-parented to the
engine's subreaper when the intermediate exits.

Host-side changes go through the same Journal as `pyrun run`'s (steps.py):
what a failed create made is undone at once, what a container holds is
undone at delete, by the same code.

Each verb imports what only it needs inside its function: every call is a
Python process of its own, an engine makes several per container, and
`start` has no use for the cgroup code or the sync socket.
"""
import contextlib
import os
import signal
import sys
import time

from runtime import state
from runtime.errors import PyrunError
from runtime.oci import state as oci_state

START_TIMEOUT = 10.0  # seconds `start` waits for a created container's PID 1 to take the FIFO


def create(root: str, cid: str, bundle: str, pid_file: str | None = None, console_socket: str | None = None,
           preserve_fds: int = 0, pivot: bool = True, new_keyring: bool = True, warn=None, stdin: int | None = None,
           console=None, die_with_parent: bool = False) -> None:
    """Create container CID from BUNDLE. pyrun run calls this in its own process
    (oci/client.py): STDIN, if given, is the container's stdin instead of ours, CONSOLE, if given, takes the
    terminal's master instead of a --console-socket, and with DIE_WITH_PARENT the container is killed when
    the calling process dies (an engine's runtime outlives no engine: that is pyrun run's foreground)."""
    from runtime import sync
    from runtime.oci import config as oci_config  # only create reads a config: the other verbs start faster
    from runtime.steps import Journal

    oci_config.check_id(cid)
    b = oci_config.load(bundle, cid)
    if b.process.terminal != bool(console_socket or console):
        raise PyrunError("--console-socket", "process.terminal is true: give --console-socket" if b.process.terminal
                         else "given, but process.terminal is false: there is no terminal to send")
    state.ensure_root(root)
    cdir = state.container_dir(root, cid)
    with state.locked(root):
        try:
            os.mkdir(cdir, 0o700)
        except FileExistsError:
            raise PyrunError(f"container with id exists: {cid}", "") from None
    journal = Journal(state.journal_path(root, cid))
    pid = None
    try:
        record = oci_state.new(cid, bundle, b.rootfs, b.annotations)
        record["hooks"] = {name: b.hooks[name] for name in ("poststart", "poststop") if b.hooks.get(name)}
        state.write_json(oci_state.record_path(root, cid), record)
        fifo_path = oci_state.fifo_path(root, cid)
        os.mkfifo(fifo_path, 0o600)
        os.chmod(fifo_path, 0o622)  # PID 1 may open it after becoming process.user
        state.write_json(oci_state.config_path(root, cid), b.config)  # exec's process comes from it
        cgroup = b.cgroup()
        record["freezer"] = oci_state.freezer_file(cgroup)
        fifo = os.open(fifo_path, os.O_PATH | os.O_CLOEXEC)
        try:
            keyring = f"_ses.{cid}" if new_keyring else None

            def intermediate(theirs) -> None:
                # Imported by the intermediate, while create moves it into the cgroup (below); PID 1 is forked
                # from it, with the module, before pivot_root, after which there is no host to import from.
                from runtime.oci import init as oci_init

                parent = os.pidfd_open(os.getppid()) if die_with_parent else None
                oci_init.intermediate(theirs, b, fifo, preserve_fds, cgroup.paths(), pivot, keyring, parent)
            pid, sock = _spawn(intermediate, cgroup, map_ids=_map_ids(b) if b.makes("user") else None,
                               make_cgroup=lambda: journal.run(cgroup), stdin=stdin)
        finally:
            os.close(fifo)
        with sock:
            if b.syncs_hooks():  # PID 1 waits before pivot_root: the runtime's hooks run now, then its own
                from runtime.oci import hooks

                sync.expect(sock, "hooks")
                record["pid"] = pid
                now = oci_state.shown(root, record)
                for name in ("prestart", "createRuntime"):
                    hooks.run(b.hooks, name, now, cwd=b.path)
                sync.send(sock, "state", state=now)
            if b.process.terminal:
                master = sync.expect(sock, "pty")["fds"][0]
                if console:
                    console(master)
                else:
                    _send_console(console_socket, master)
            sync.expect(sock, "ready")
        record.update(status="created", pid=pid, process={"Pid": pid, "StartTime": state.start_time(pid)})
        state.write_json(oci_state.record_path(root, cid), record)
        if pid_file:
            _write_pid_file(pid_file, pid)
    except BaseException:
        if pid is not None:
            _kill(pid, signal.SIGKILL)
        journal.undo()
        if pid is not None:  # the container existed: its poststop hooks undo what the others made (config.md)
            from runtime.oci import hooks

            hooks.run_warning(b.hooks, "poststop", {**oci_state.shown(root, record), "status": "stopped", "pid": 0},
                              warn or _warn, cwd=b.path)
        _remove_tree(cdir)
        raise


def _map_ids(b):
    """The host's side of a new user namespace: its maps, written from here (userns.write_maps)."""
    from runtime.userns import write_maps

    return lambda intermediate: write_maps(intermediate, b.map_text("uid"), b.map_text("gid"))


def _spawn(intermediate_does, cgroup=None, map_ids=None, make_cgroup=None, stdin: int | None = None):
    """Fork the intermediate, which calls INTERMEDIATE_DOES(its sync socket); return (the pid of the process it
    forked, our sync socket). create is no subreaper (see the module's docstring): that process is the
    engine's once the intermediate has exited. With MAP_IDS, the intermediate stops once it has unshared its
    user namespace ("userns") until MAP_IDS(its pid) has written the namespace's maps ("mapped").

    With CGROUP, the intermediate is moved into it from here, as runc's parent moves its child, and told
    "joined": on cgroup v1 the kernel makes the first move wait out an RCU grace period (~12 ms), and the
    intermediate imports the container side meanwhile, on the other CPU, instead of before the fork. MAKE_CGROUP,
    if given, makes the cgroup first, after the fork: its imports (cgroupspy's) overlap the intermediate's too.
    STDIN, if given, becomes the intermediate's fd 0, and so the container's."""
    from runtime import sync

    ours, theirs = sync.channel()
    intermediate = os.fork()
    if intermediate == 0:
        try:
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
                signal.signal(sig, signal.SIG_DFL)
            ours.close()
            if stdin is not None:
                os.dup2(stdin, 0)
            intermediate_does(theirs)
        except BaseException:
            import traceback

            traceback.print_exc()  # a bug in pyrun: say where, the container's stderr is the engine's
        finally:
            os._exit(1)
    theirs.close()
    try:
        if make_cgroup is not None:
            make_cgroup()
        if cgroup is not None:
            cgroup.join(intermediate)
            sync.send(ours, "joined")
        if map_ids:
            sync.expect(ours, "userns")
            map_ids(intermediate)
            sync.send(ours, "mapped")
        return sync.expect(ours, "pid")["pid"], ours
    except BaseException:
        ours.close()
        raise
    finally:
        os.waitpid(intermediate, 0)


def _send_console(path: str, master: int) -> None:
    """The pty's master to the engine, over its console socket with SCM_RIGHTS (runc's protocol)."""
    import socket

    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(path)
            socket.send_fds(s, [b"/dev/ptmx"], [master])
    except OSError as e:
        raise PyrunError("--console-socket", f"{path}: {e.strerror}") from None
    finally:
        os.close(master)


def _write_pid_file(path: str, pid: int) -> None:
    """Digits only, no newline, renamed into place: an engine polling for it never reads half of it.

    The temporary file beside it has a name no one can guess and is made by us (O_EXCL, O_NOFOLLOW): the
    directory may be /tmp, where a local user who knew the name would plant a link to a file of root's,
    which we would write the pid into, or a file of their own, which the rename would make the pid file."""
    path = os.path.abspath(path)
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.{os.urandom(8).hex()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        with open(fd, "w", closefd=False) as f:
            f.write(str(pid))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    finally:
        os.close(fd)


def exec_(root: str, cid: str, process, detach: bool, pid_file: str | None = None,
          console_socket: str | None = None, preserve_fds: int = 0) -> int | None:
    """Run PROCESS (a config.Process) in the container: setns into PID 1's namespaces, join its cgroup, the
    container's seccomp profile. With DETACH, return once the program runs (the engine, a subreaper, reaps
    it); without, wait for it as its subreaper and return its exit code."""
    import prctl

    from runtime import sync
    from runtime.oci import init as oci_init

    record = oci_state.read(root, cid)
    status = oci_state.status(root, record)
    if status not in ("created", "running"):
        raise PyrunError(f"cannot exec in a {status} container", f"{cid}" + (": resume it first" if status == "paused"
                                                                              else ""))
    if process.terminal != bool(console_socket):
        raise PyrunError("--console-socket", "the process has a terminal: give --console-socket" if process.terminal
                         else "given, but the process has no terminal to send")
    profile = (state.read_json(oci_state.config_path(root, cid)).get("linux") or {}).get("seccomp")
    if profile is not None:
        from runtime import seccomp

        profile = seccomp.check_profile(profile, "config.json linux.seccomp")
    if not detach:
        prctl.set_child_subreaper(1)  # the program is re-parented to us when the intermediate exits
    dirs = cgroup_of(root, cid).paths()
    pid, sock = _spawn(lambda theirs: oci_init.exec_intermediate(theirs, record["pid"], process, profile,
                                                                 preserve_fds, dirs))
    with sock:
        try:
            if process.terminal:
                _send_console(console_socket, sync.expect(sock, "pty")["fds"][0])
            message = sync.recv(sock)  # end of file: the program has been exec'd (or was killed)
            if message is not None and message["type"] == "error":
                raise PyrunError(message["step"], message["detail"], message["code"])
            if message is not None:
                raise PyrunError("exec", f"expected the program to run, got {message['type']!r} from the container")
        except BaseException:
            _kill(pid, signal.SIGKILL)
            if not detach:
                os.waitpid(pid, 0)
            raise
    if pid_file:
        _write_pid_file(pid_file, pid)
    if detach:
        return None
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    return 128 - code if code < 0 else code  # killed by signal N: 128+N, as a shell (and runc) says


def start(root: str, cid: str, warn=None, until_exec: bool = False) -> None:
    """Let CID's PID 1 exec its program. With UNTIL_EXEC (pyrun run's) or poststart hooks, return only once PID 1
    is at its execve, its user and capabilities the program's: runc's start returns as soon as PID 1 goes."""
    record = oci_state.read(root, cid)
    status = oci_state.status(root, record)
    if status != "created":
        raise PyrunError(f"cannot start a container that is {status}", f"{cid} (start needs one just created)")
    import select

    path = oci_state.fifo_path(root, cid)
    # O_NONBLOCK: the open returns at once; the byte arrives once PID 1 has opened its end. poll(2) wakes us
    # for the byte or for PID 1's exit (its pidfd), whichever comes first.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    pidfd = _pidfd(record["process"])
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        if pidfd is not None:
            poller.register(pidfd, select.POLLIN)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                if os.read(fd, 1):
                    break
            except BlockingIOError:
                pass
            process = record["process"]
            if pidfd is None or oci_state.exited(process["Pid"], process["StartTime"]) or time.monotonic() > deadline:
                raise PyrunError("start", f"{cid}: the container's process exited before it could start")
            poller.poll(max(0.0, deadline - time.monotonic()) * 1000)
        if until_exec or record.get("hooks", {}).get("poststart"):
            os.set_blocking(fd, True)
            while os.read(fd, 1):  # end of file: PID 1 is at its execve (init._wait_for_start)
                pass
    finally:
        os.close(fd)
        if pidfd is not None:
            os.close(pidfd)
    os.unlink(path)  # no FIFO: the status is running from now on
    if record.get("hooks", {}).get("poststart"):
        from runtime.oci import hooks

        hooks.run_warning(record["hooks"], "poststart", oci_state.shown(root, record), warn or _warn,
                          cwd=record["bundle"])


def kill(root: str, cid: str, sig: int, all_processes: bool = False) -> None:
    record = oci_state.read(root, cid)
    if oci_state.status(root, record) not in ("created", "running", "paused"):
        raise PyrunError("container not running", "")
    if not all_processes:
        return _signal(record["process"], sig)
    for pid in cgroup_pids(root, cid):
        _kill(pid, sig)


def cgroup_pids(root: str, cid: str) -> list[int]:
    """Every process in the container's cgroup (kill --all, ps), in every hierarchy it has."""
    return sorted({int(p) for path in cgroup_of(root, cid).paths() for p in read_text(f"{path}/cgroup.procs").split()})


def delete(root: str, cid: str, force: bool = False, warn=None) -> None:
    try:
        record = oci_state.read(root, cid)
    except PyrunError:
        if force:
            return
        raise
    import runtime.cgroups  # noqa: F401  (the Cgroup step, which the journal names)
    from runtime.steps import Journal

    status = oci_state.status(root, record)
    if status in ("running", "paused") and not force:
        raise PyrunError(f"cannot delete container {cid} that is not stopped", status)
    if status in ("created", "running", "paused"):
        pidfd = _pidfd(record["process"])
        try:
            if pidfd is not None:
                _send(pidfd, signal.SIGKILL)
            if status == "paused":  # also if PID 1 is gone: the journal's cgroup undo kills the rest, once thawed
                from runtime.oci.manage import thaw

                thaw(record)  # a frozen task dies only once it runs again
            if pidfd is not None:
                import select

                select.select([pidfd], [], [], 5)  # readable once it has exited
        finally:
            if pidfd is not None:
                os.close(pidfd)
    with state.locked(root):
        errors = Journal(state.journal_path(root, cid)).undo()  # the cgroup kills what is left inside it
        if errors:
            raise PyrunError("delete", f"{cid}: " + "; ".join(errors))
        _remove_tree(state.container_dir(root, cid))
    if record.get("hooks", {}).get("poststop"):
        from runtime.oci import hooks

        hooks.run_warning(record["hooks"], "poststop", {**oci_state.shown(root, record), "status": "stopped"},
                          warn or _warn, cwd=record["bundle"])


def cgroup_of(root: str, cid: str) -> "Cgroup":
    from runtime.cgroups import Cgroup
    from runtime.steps import Journal

    for step in Journal(state.journal_path(root, cid)).steps():
        if isinstance(step, Cgroup):
            return step
    raise PyrunError("cgroup", f"{cid} has no cgroup")


def read_text(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""


def _remove_tree(path: str) -> None:
    """Remove the directory PATH and all in it, whatever is left (shutil.rmtree's import was ~2 ms of delete)."""
    for top, dirs, files in os.walk(path, topdown=False):
        for name in files + dirs:
            entry = os.path.join(top, name)
            try:
                os.rmdir(entry) if name in dirs and not os.path.islink(entry) else os.unlink(entry)
            except OSError:
                pass
    try:
        os.rmdir(path)
    except OSError:
        pass


def _warn(message: str) -> None:
    print(f"pyrun-oci: warning: {message}", file=sys.stderr)


def _pidfd(process: dict) -> int | None:
    """A pidfd for PROCESS ({"Pid", "StartTime"}), which poll(2) finds readable once the process has exited;
    None if it has exited already (checked after the open: a reused pid is not taken for it)."""
    try:
        fd = os.pidfd_open(process["Pid"])
    except ProcessLookupError:
        return None
    if oci_state.exited(process["Pid"], process["StartTime"]):
        os.close(fd)
        return None
    return fd


def _signal(process: dict, sig: int) -> None:
    """SIG to PROCESS ({"Pid", "StartTime"}) through a pidfd opened and then checked to be that process: by its
    number alone, a container's PID 1 that has exited since the status was read may be another's pid now."""
    pidfd = _pidfd(process)
    if pidfd is not None:
        try:
            _send(pidfd, sig)
        finally:
            os.close(pidfd)


def _send(pidfd: int, sig: int) -> None:
    try:
        signal.pidfd_send_signal(pidfd, sig)
    except ProcessLookupError:  # it has exited meanwhile
        pass


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
