"""pyrun run as an engine: the container handed to an OCI runtime's create, start and delete (runtime.md).

    pyrun run --runtime runc -p 8088:8000 ./rootfs python -m http.server

takes pyrun's own host-side steps (recipe.py: ports, address, writable
layer, /etc files, bridge, veth, rules) and hands the container itself to
an OCI runtime, as Docker hands it to runc through containerd. The runtime
is pyrun's own `pyrun-oci` (the default: its verbs called in this process,
IN_PROCESS), runc, crun, or any program with runc's command line. What
changes in the recipe, against the built-in runtime's (--runtime pyrun):

    create   Overlay: the writable layer mounted on the host, the bundle's root
             Tini (--init): a copy of tini in the layer directory, bound at /sbin/docker-init
             Bundle: config.json, pyrun's flags as the runtime reads them (engine.py)
             (no Cgroup step: the runtime makes the cgroup config.json names)
    spawn    RuntimeContainer: `RUNTIME create --bundle B --pid-file F ID`, which returns with
             the container's process set up and blocked before execve
    attach   Unexposed: the overlay unmounted from the host, the container's mount namespace keeps it;
             DeviceRules: the devices cgroup cut back to pyrun's own rules (runc adds /dev/net/tun;
             not for pyrun-oci, which writes config.json's);
             netns name, veth, port guard, published ports, into that process's network
             namespace, as for pyrun's own PID 1 (CNI plugins do the same after runc create)
    go       `RUNTIME start ID`
    teardown the journal backwards, `RUNTIME delete --force ID` among it

Overlay, Tini, Bundle and Unexposed (and --userns=auto's Reachable) are the
bundle and its root, made on the host before create and taken off it after:
bundle.py. This module is the runtime's verbs and the process pyrun waits for.

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
import subprocess
import sys
from dataclasses import dataclass, field

from runtime.errors import EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND, EXIT_PYRUN, PyrunError
from runtime.process import ContainerProcess
from runtime.signals import forward_to
from runtime.spec import BUILT_IN
from runtime.steps import Action, Step

# pyrun-oci's verbs are this checkout's own functions (oci/lifecycle.py): pyrun calls them in its own process, as
# a library, instead of starting an interpreter for each (three of them, ~25 ms each). --explain prints them as the
# pyrun-oci commands that do the same from a shell.
IN_PROCESS = ["pyrun-oci"]


def command(runtime: str) -> list[str]:
    """The command line that runs RUNTIME: pyrun-oci (IN_PROCESS), or a program on PATH or at a path."""
    if runtime == "pyrun-oci":
        return list(IN_PROCESS)
    found = shutil.which(runtime)
    if found is None:
        raise PyrunError("invalid --runtime", f"{runtime!r}: not found; expected pyrun-oci (the default), "
                                              f"{BUILT_IN}, or an OCI runtime's name on PATH or path (runc, crun)")
    return [os.path.abspath(found)]


def runtime_root(state_root: str, runtime: str) -> str:
    """The runtime's --root: under pyrun's own, so that two state roots' containers never meet (Docker's
    /run/docker/runtime-runc/moby)."""
    return os.path.join(state_root, "runtimes", os.path.basename(runtime))


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
            # runc's 1 for any failure; Docker's 125: the runtime failed, not the command. 128+N is a signal to pyrun
            # itself while create ran (signals.abort_on_signals): reported as for any other step of the setup.
            if e.exit_code not in (EXIT_NOT_FOUND, EXIT_NOT_EXECUTABLE) and e.exit_code < 128:
                e.exit_code = EXIT_PYRUN
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
