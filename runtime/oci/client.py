"""pyrun run as an engine: the container handed to an OCI runtime's create, start and delete (runtime.md).

    pyrun run --runtime runc -p 8088:8000 ./rootfs python -m http.server

takes pyrun's own host-side steps (recipe.py: ports, address, writable
layer, /etc files, bridge, veth, rules) and hands the container itself to
an OCI runtime, as Docker hands it to runc through containerd. The runtime
is runc, crun, pyrun's own `pyrun-oci`, or any program with runc's command
line. What changes in the recipe:

    create   Overlay: the writable layer mounted on the host, the bundle's root
             Tini (--init): a copy of tini in the layer directory, bound at /sbin/docker-init
             Bundle: config.json, pyrun's flags as the runtime reads them (engine.py)
             (no Cgroup step: the runtime makes the cgroup config.json names)
    spawn    RuntimeContainer: `RUNTIME create --bundle B --pid-file F ID`, which returns with
             the container's process set up and blocked before execve
    attach   Unexposed: the overlay unmounted from the host, the container's mount namespace keeps it;
             DeviceRules: the devices cgroup cut back to pyrun's own rules (runc adds /dev/net/tun);
             netns name, veth, port guard, published ports, into that process's network
             namespace, as for pyrun's own PID 1 (CNI plugins do the same after runc create)
    go       `RUNTIME start ID`
    teardown the journal backwards, `RUNTIME delete --force ID` among it

pyrun makes itself a child subreaper before create, as podman's conmon and
containerd's shim do: when the runtime's own processes exit, the
container's process is re-parented to pyrun, which waits for it, so the
exit status pyrun reads is the program's own.
"""
import json
import os
import shlex
import shutil
import socket
import stat
import subprocess
import sys
from dataclasses import dataclass, field

from runtime import rootfs, userns
from runtime.errors import EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND, EXIT_PYRUN, PyrunError
from runtime.process import ContainerProcess
from runtime.signals import forward_to
from runtime.spec import BUILT_IN
from runtime.steps import Action, Step, heredoc
from runtime.syscalls import open_in_root

# pyrun-oci's verbs are this checkout's own functions (oci/lifecycle.py): pyrun calls them in its own process, as
# a library, instead of starting an interpreter for each (three of them, ~25 ms each). --explain prints them as the
# pyrun-oci commands that do the same from a shell.
IN_PROCESS = ["pyrun-oci"]
ROOTS_DIR = "/run/pyrun-roots"  # --userns=auto: the bundles' roots, host-wide, as /run/pyrun-users (Reachable)


def command(runtime: str) -> list[str]:
    """The command line that runs RUNTIME: pyrun-oci (IN_PROCESS), or a program on PATH or at a path."""
    if runtime == "pyrun-oci":
        return list(IN_PROCESS)
    found = shutil.which(runtime)
    if found is None:
        raise PyrunError("invalid --runtime", f"{runtime!r}: not found; expected pyrun-oci (the default), "
                                              f"{BUILT_IN}, or an OCI runtime's name on PATH or path (runc, crun)")
    return [os.path.abspath(found)]


# --init's PID 1, as Docker's docker-init: Debian's package tini, static, so that it runs in any rootfs.
TINI = "/usr/bin/tini-static"
INIT = "/sbin/docker-init"  # where Docker binds it in the container


def tini() -> str:
    """The tini --init copies from: PYRUN_INIT_PATH, as dockerd's --init-path, else Debian's tini-static."""
    path = os.environ.get("PYRUN_INIT_PATH") or TINI
    if not os.path.isfile(path):
        raise PyrunError("invalid --init", f"{path}: not a file; --init with --runtime runs tini as PID 1, as "
                                           "Docker does: install Debian's package tini (apt-get install tini), or "
                                           "name a static tini in PYRUN_INIT_PATH")
    return os.path.abspath(path)


def tini_copy(layer: str) -> str:
    """Where a --init container's own copy of tini is: in its layer directory (rootfs.Layer)."""
    return os.path.join(layer, "docker-init")


def runtime_root(state_root: str, runtime: str) -> str:
    """The runtime's --root: under pyrun's own, so that two state roots' containers never meet (Docker's
    /run/docker/runtime-runc/moby)."""
    return os.path.join(state_root, "runtimes", os.path.basename(runtime))


@dataclass
class Overlay(Step):
    """The writable layer over the rootfs, mounted on the host: the bundle's root for the runtime

    With --userns=auto (ID_BASE) the rootfs is idmapped onto the range first, as podman's idmapped storage
    does: through the overlay the container's root owns the files host root owns on disk, before the runtime
    has made the container's user namespace (userns.py). The mount's user namespace is one of its own with
    the same maps, made for it (userns.namespace); the runtime makes the container's from uidMappings."""

    kind = "overlay"
    rootfs: str
    layer: str
    at: str | None = None           # the mount point, root.path: LAYER/merged if None (see Reachable)
    id_base: int | None = None

    @property
    def merged(self) -> str:
        return self.at or os.path.join(self.layer, "merged")

    @property
    def _lower(self) -> str:
        return self.rootfs if self.id_base is None else os.path.join(self.layer, "lower")

    def actions(self) -> list[Action]:
        """One mount, on directories opened for it (mount_layer). With an id range, the idmapped rootfs is attached at LAYER/lower for it and detached after it:
        overlayfs holds a private copy of each layer's mount."""
        q = shlex.quote
        overlay = (rootfs.mount_layer_shell(self._lower, self.layer, merged=self.merged),
                   lambda: rootfs.mount_layer(self._lower, self.layer, self.merged))
        if self.id_base is None:
            return [overlay]
        ids = userns.IdRange(self.id_base, "")
        return [(f"mount --bind -o X-mount.idmap=0:{ids.base}:{ids.size} {q(self.rootfs)} {q(self._lower)}   # "
                 f"a file of uid N on disk is host uid {ids.base}+N through it (util-linux 2.39)",
                 lambda: self._idmap(ids)),
                overlay,
                (f"umount {q(self._lower)}", lambda: rootfs.unmount(self._lower))]

    def _idmap(self, ids: "userns.IdRange") -> None:
        ns = userns.namespace(ids)
        try:
            rootfs.attach(userns.idmapped(self.rootfs, ns), self._lower)
        finally:
            os.close(ns)

    def undo_actions(self) -> list[Action]:
        out = [(f"umount -l {shlex.quote(self.merged)}", lambda: rootfs.unmount(self.merged))]
        if self.id_base is not None:  # pyrun stopped between the two mounts
            out.append((f"umount -l {shlex.quote(self._lower)}", lambda: rootfs.unmount(self._lower)))
        return out


@dataclass
class Reachable(Step):
    """A mount point for the bundle's root that the container's root can reach (--userns=auto)

    runc makes the container's mounts from inside its user namespace, as its root: host uid BASE, which has
    no capability over the host's files. runc 1.1 opens a bind mount's source before it enters the
    namespace, but not root.path: it bind-mounts root.path onto itself by its path (rootfs_linux.go,
    prepareRoot), and BASE may not search pyrun's state directories (0700, root's): "permission denied".
    podman chmods every directory above a container's root o+x for it (makeAccessible); pyrun keeps its
    state root's alone, and mounts the root under a host-wide directory of its own instead:
    ROOTS_DIR (0711: anyone may pass, no one but root list it) / ID (0710, group BASE: no one else
    passes) / root. pyrun-oci opens the rootfs before it enters the namespace and needs none of it, but
    an engine cannot know what its runtime does.
    """

    kind = "reachable"
    cid: str
    group: int   # the range's BASE: the container's root's gid on the host

    @property
    def path(self) -> str:
        return os.path.join(ROOTS_DIR, self.cid, "root")

    def actions(self) -> list[Action]:
        top = os.path.dirname(self.path)
        return [(f"mkdir -p -m 0711 {ROOTS_DIR}", lambda: _mkdir(ROOTS_DIR, 0o711)),
                (f"mkdir -m 0710 {top}", lambda: _mkdir(top, 0o710)),
                (f"chgrp {self.group} {top}   # the container's root's group, on the host",
                 lambda: os.chown(top, 0, self.group)),
                (f"mkdir -m 0700 {self.path}", lambda: _mkdir(self.path, 0o700))]

    def undo_actions(self) -> list[Action]:
        return [(f"rmdir {self.path} {os.path.dirname(self.path)}", self._remove)]

    def _remove(self) -> None:
        """rmdir, never a recursive removal, which would go into a root still mounted there; gone is done."""
        for path in (self.path, os.path.dirname(self.path)):
            try:
                os.rmdir(path)
            except FileNotFoundError:
                pass


def _mkdir(path: str, mode: int) -> None:
    try:
        os.mkdir(path)
    except FileExistsError:
        pass
    os.chmod(path, mode)  # not the umask's (pyrun's is 077); and an older one's made looser, tightened


@dataclass
class Unexposed(Step):
    """The container's root taken off the host's tree, now that the runtime holds it in the container's mount
    namespace: a setuid file the container makes is no way to root for a host user who reaches the layer

    The overlay was mounted on the host only for the runtime to find it at root.path. Left there, it would
    be a suid mount of the container's files under the state directory; detached, its only mounts are the
    container's own, and what the container writes is on the host only in the layer's diff/, a nosuid,nodev
    mount (rootfs.Layer)."""

    kind = "unexposed"
    merged: str

    def actions(self) -> list[Action]:
        """Its undo is nothing: there is nothing on the host to put back."""
        return [(f"umount -l {shlex.quote(self.merged)}   # the container's own mount namespace keeps its root",
                 lambda: rootfs.unmount(self.merged))]


@dataclass
class Tini(Step):
    """--init: a copy of tini, the container's own, which the runtime binds read-only at /sbin/docker-init

    Docker binds the host's docker-init itself. A read-only bind stops nobody with CAP_SYS_ADMIN (--cap-add
    ALL) in the host's user namespace: `mount -o remount,rw,bind /sbin/docker-init`, then chmod 4755 makes
    the host's file a setuid-root program that runs any command it is given (its contents are safe only
    while it runs: ETXTBSY). A copy in the layer directory is the container's alone, on a nosuid,nodev
    mount of the host (rootfs.Layer), like the /etc files beside it, and it goes with the layer: no undo
    of its own, which a container's chattr +i on it would fail (tree.remove_tree's does not)."""

    kind = "tini"
    source: str   # tini()
    path: str     # tini_copy()

    def actions(self) -> list[Action]:
        return [(f"install -m 0555 {shlex.quote(self.source)} {shlex.quote(self.path)}", self._copy)]

    def _copy(self) -> None:
        shutil.copyfile(self.source, self.path)
        os.chmod(self.path, 0o555)


@dataclass
class Bundle(Step):
    """The bundle: config.json, the container as the runtime will read it (made by runtime/oci/engine.py)"""

    kind = "bundle"
    path: str
    config: dict
    user_files: bool = True  # refuse an /etc/passwd or /etc/group that is no file: runc opens both; pyrun-oci neither

    def actions(self) -> list[Action]:
        config = heredoc(os.path.join(self.path, "config.json"), json.dumps(self.config, indent=2).splitlines())
        return [("# each mount target resolved inside the rootfs, as PID 1 resolves them (openat2 RESOLVE_IN_ROOT);"
                 " /dev, /proc, /sys directories" + (", /etc/passwd and /etc/group files" if self.user_files else ""),
                 self._check),
                (f"mkdir -p -m 0700 {shlex.quote(self.path)}",
                 lambda: os.makedirs(self.path, mode=0o700, exist_ok=True)),
                ("\n".join(config), self._write)]

    def _check(self) -> None:
        _resolve_targets(self.config)
        if self.user_files:
            _check_user_files(self.config["root"]["path"])

    def _write(self) -> None:
        with open(os.open(os.path.join(self.path, "config.json"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
                          0o600), "w") as f:
            json.dump(self.config, f, indent=2)

    def undo_actions(self) -> list[Action]:
        return [(f"rm -rf {shlex.quote(self.path)}", lambda: shutil.rmtree(self.path, ignore_errors=True))]


# Paths a runtime writes below by name, joined to root.path on the host's side (runc's /dev/fd, /dev/ptmx links):
# a symlink there in the rootfs would be followed on the host, whatever the runtime does with its mounts.
_RUNTIMES_OWN = ("/dev", "/proc", "/sys")


def _resolve_targets(config: dict) -> None:
    """Each mount destination in CONFIG resolved inside root.path, as pyrun's own runtime resolves it
    (rootfs.Root.target: made if missing, a symlink to nothing inside refused), and written back resolved:
    no runtime then meets a symlink on its way to a mount target. /dev, /proc and /sys must be directories.
    A destination below an earlier one is on that mount, not in the rootfs: the runtime's to resolve."""
    root = rootfs.Root(config["root"]["path"])
    done: list[str] = []
    try:
        for m in config.get("mounts", []):
            dest = os.path.normpath(m["destination"])
            if any(dest.startswith(d.rstrip("/") + "/") for d in done):
                done.append(dest)
                continue
            fd = root.target(dest, m["type"] != "bind" or os.path.isdir(m["source"]))
            try:
                inside = os.path.relpath(os.readlink(f"/proc/self/fd/{fd}"), root.path)
                resolved = "/" if inside == "." else "/" + inside
            finally:
                os.close(fd)
            if resolved != dest and (dest in _RUNTIMES_OWN or resolved in _RUNTIMES_OWN):
                raise PyrunError("mount target", f"{dest}: a symlink to {resolved} in the rootfs; expected a "
                                                 "directory (the runtime writes below it from the host's side)")
            m["destination"] = resolved
            done.append(dest)
    finally:
        root.close()


def _check_user_files(root: str) -> None:
    """The rootfs's /etc/passwd and /etc/group: regular files, or none. runc opens them in the container before
    the command runs, whatever -u says (to set HOME), and a FIFO there would hold its create, and pyrun, for
    good. pyrun's own runtime reads them only as users.py does: a FIFO is no file to it."""
    fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for path in ("/etc/passwd", "/etc/group"):
            try:
                found = open_in_root(fd, path)
            except OSError:
                continue  # missing, or a link the runtime's own lookup will fail on too
            try:
                mode = os.fstat(found).st_mode
            finally:
                os.close(found)
            if not stat.S_ISREG(mode):
                raise PyrunError("rootfs", f"{path} is not a regular file (mode {stat.filemode(mode)}): the runtime "
                                           "reads it before the command runs; expected a file or none")
    finally:
        os.close(fd)


@dataclass
class RuntimeContainer(Step):
    """The container, made by the OCI runtime: created now, started at "go", deleted at teardown"""

    kind = "runtime"
    runtime: list[str]     # the command line that runs it (command())
    root: str              # its --root
    cid: str
    bundle: str
    interactive: bool = False
    tty: bool = False
    pid: int | None = field(default=None, compare=False)
    master: int | None = field(default=None, compare=False, repr=False)  # -t: the console, from the runtime

    def _verb(self, *args: str) -> list[str]:
        return [*self.runtime, "--root", self.root, "--log", self._log, "--log-format", "json", *args]

    def _shown(self, *args: str) -> str:
        """The verb as --explain prints it: without the json log, which only pyrun reads."""
        return shlex.join([*self.runtime, "--root", self.root, *args])

    def _beside(self, name: str) -> str:
        """A file of the runtime's in the container's state directory, beside the bundle."""
        return os.path.join(os.path.dirname(self.bundle), name)

    @property
    def _log(self) -> str:
        return self._beside("runtime.log")

    @property
    def _pid_file(self) -> str:
        return self._beside("runtime.pid")

    @property
    def _console(self) -> str:
        return self._beside("console.sock")

    def actions(self) -> list[Action]:
        tty = f" --console-socket {shlex.quote(self._console)}" if self.tty else ""
        log = shlex.quote(self._beside("container.log"))
        return [("# the container's stdio is create's: here a log, as a detached pyrun's (a terminal: the socket's)",
                 lambda: None),
                (f"{self._shown('create', '--bundle', self.bundle, '--pid-file', self._pid_file)}{tty} {self.cid} "
                 f"> {log} 2>&1 < /dev/null", self._create),
                (f"PID=$(cat {shlex.quote(self._pid_file)})   # its process, blocked before execve until start",
                 self._read_pid)]

    @property
    def in_process(self) -> bool:
        return self.runtime == IN_PROCESS

    def _create(self) -> None:
        if self.in_process:
            return self._create_here()
        args = ["create", "--bundle", self.bundle, "--pid-file", self._pid_file]
        listener = None
        if self.tty:
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(self._console)
            listener.listen(1)
            args += ["--console-socket", self._console]
        try:
            # The container inherits create's stdio: pyrun's own, but stdin without -i is /dev/null.
            create = subprocess.Popen(self._verb(*args, self.cid), stdout=None, stderr=None,
                                      stdin=None if self.interactive or self.tty else subprocess.DEVNULL)
            if listener is not None:
                self.master = _receive_console(listener, create)
            code = create.wait()
        finally:
            if listener is not None:
                listener.close()
                os.unlink(self._console)
        if code != 0:
            if self.master is not None:
                os.close(self.master)
            raise _failed("create", self._log, code)

    def _create_here(self) -> None:
        """pyrun-oci's create as a call: the container's stdin /dev/null unless -i, its console handed back."""
        from runtime.oci import lifecycle

        null = None if self.interactive or self.tty else os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        try:
            lifecycle.create(self.root, self.cid, self.bundle, self._pid_file, stdin=null, warn=_warn,
                             console=(lambda master: setattr(self, "master", master)) if self.tty else None,
                             die_with_parent=True)
        except PyrunError as e:
            if e.exit_code not in (EXIT_NOT_FOUND, EXIT_NOT_EXECUTABLE):
                e.exit_code = EXIT_PYRUN  # runc's 1 for any failure; Docker's 125: the runtime failed, not the command
            raise
        finally:
            if null is not None:
                os.close(null)

    def _read_pid(self) -> None:
        with open(self._pid_file) as f:
            self.pid = int(f.read())

    def start(self) -> None:
        if self.in_process:
            from runtime.oci import lifecycle

            return lifecycle.start(self.root, self.cid, warn=_warn, until_exec=True)  # "running": the command's own
        code = subprocess.run(self._verb("start", self.cid), stdin=subprocess.DEVNULL).returncode
        if code != 0:
            raise _failed("start", self._log, code)

    def undo_actions(self) -> list[Action]:
        return [(f"{self._shown('delete', '--force')} {self.cid}", self._delete)]

    def _delete(self) -> None:
        # --force: kills what is still running; a container the runtime does not know is already gone (runc's
        # and pyrun-oci's delete --force exit 0 then).
        if self.in_process:
            from runtime.oci import lifecycle

            return lifecycle.delete(self.root, self.cid, force=True, warn=_warn)
        r = subprocess.run(self._verb("delete", "--force", self.cid), stdin=subprocess.DEVNULL,
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise _failed("delete", self._log, r.returncode)

    def shell_start(self) -> list[str]:
        return [f"{self._shown('start')} {self.cid}"]


def _warn(message: str) -> None:
    print(f"pyrun: warning: {message}", file=sys.stderr)


def _receive_console(listener: socket.socket, create: subprocess.Popen) -> int | None:
    """The pty master the runtime sends over the console socket (SCM_RIGHTS), while create runs; None if create
    exits without sending one (its error is in the log)."""
    listener.settimeout(0.05)
    while True:
        try:
            conn, _ = listener.accept()
        except socket.timeout:
            if create.poll() is not None:
                return None
            continue
        with conn:
            conn.settimeout(10)
            _, fds, _, _ = socket.recv_fds(conn, 4096, 1)
        if fds:
            return fds[0]


def _failed(verb: str, log: str, code: int) -> PyrunError:
    """The runtime's own last error (its json log, as engines read it), with Docker's exit codes: 127 for a
    command not found, 126 for one that cannot run, 125 for anything else."""
    message = f"exited {code}"
    try:
        with open(log) as f:
            for line in f:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if entry.get("level") in ("error", "fatal"):
                    message = entry.get("msg", message)
    except FileNotFoundError:
        pass
    lowered = message.lower()
    exit_code = 125
    if "executable file not found" in lowered or "no such file or directory" in lowered and "exec" in lowered:
        exit_code = EXIT_NOT_FOUND
    elif "permission denied" in lowered and "exec" in lowered:
        exit_code = EXIT_NOT_EXECUTABLE
    return PyrunError(f"runtime {verb}", " ".join(message.split()), exit_code)


class RuntimeProcess(ContainerProcess):
    """The container's process as the runtime made it: pyrun waits for it as for its own PID 1."""

    def __init__(self, made: RuntimeContainer, tty: bool):
        super().__init__(made.pid, None, tty)
        self.made = made
        self.master = made.master

    def go(self) -> None:
        forward_to(self.pid, self.grace, self.timeout)
        try:
            self.made.start()
        except PyrunError:
            self.kill()
            self.reap()
            raise

    def reported_error(self) -> None:
        return None


def spawn(plan: list, run_spawn, spec) -> RuntimeProcess:
    """The spawn phase (RUN_SPAWN: the bridge, then the runtime's create), pyrun as a subreaper meanwhile."""
    import prctl

    from runtime.recipe import find

    prctl.set_child_subreaper(1)
    run_spawn()
    proc = RuntimeProcess(find(plan, RuntimeContainer), spec.tty)
    proc.grace, proc.timeout = spec.stop_timeout, spec.timeout
    return proc
