"""A container's life, as a table of contents: create, start, wait, tear down.

    run(spec)
      tidy up after crashed pyruns       reconcile() below
      reserve an id and name             state.py
      cgroup: create, set limits         cgroups.py        (journaled)
      writable layer: create             Layer below       (journaled)
      network: lease an address          network/          (journaled)
      /etc/hosts, hostname, resolv.conf  network/dns.py
      fork the container's PID 1         process.py -> init.py (PID 1 builds its rootfs meanwhile)
      network: ensure the bridge         network/          (while the intermediate unshares)
      network: wire veth, NAT rules      network/          (journaled)
      cgroup: join PID 1                 (in a thread, while the network is wired)
      wait "ready", say "go"             -> init.py execs the command
      wait, forwarding signals           process.py (run -d: monitor.py)
      tear down: the journal, backwards  finish() below, steps.py

Every host-side change goes through the journal, so a failure anywhere (or a
crash, see `pyrun prune`) is undone by the same code path as a normal exit.

With -d, pyrun forks a monitor that does the same work with its output in a
log file, and exits as soon as the command runs. The monitor then replaces
itself (execve) with the small program in monitor.py, so that what stays
resident for each detached container is little more than an interpreter.
"""
import contextlib
import errno
import json
import os
import shlex
import sys
import threading
import time
from dataclasses import dataclass, replace

from runtime import logfile, process, signals, state, tree, userns
from runtime.cgroups import Cgroup
from runtime.errors import EXIT_TIMEOUT, PyrunError
from runtime.network import dns
from runtime.spec import BindMount, ContainerSpec, Resources, Ulimit
from runtime.steps import Journal, Step, one_line
from runtime.syscalls import MNT_DETACH, MS_BIND, MS_NODEV, MS_NOSUID, MS_REMOUNT, mount, umount2

LOG = "container.log"
EXIT_CODE = "exitcode"  # written in place at the exit, for `pyrun wait` (lifecycle.wait says why)


@dataclass
class Layer(Step):
    """The container's copy-on-write layer: overlayfs upper and work directories, and the mount point.

    Whatever the container writes lands in diff/ on the host, setuid-root
    binaries and device nodes too (CVE-2021-41091's class). Two locks keep
    them from host users: the layer is 0700, and it is a nosuid,nodev bind
    mount of itself, so even with its directories opened up a setuid bit or
    a device node in it means nothing on the host. The container sees the
    files through its own overlay mount, whose flags are its own.

    With --userns=auto the directories belong to OWNER, the container's root
    on the host (userns.py): it mounts the overlay, from its own namespace,
    and writes its upper layer. lower/ is where the idmapped rootfs is
    attached for the overlay to stack on.
    """

    kind = "layer"
    path: str
    owner: int | None = None

    def _dirs(self) -> tuple:
        dirs = (("", 0o700), ("diff", 0o755), ("work", 0o700), ("merged", 0o700))
        return dirs if self.owner is None else dirs + (("lower", 0o700),)

    def up(self) -> None:
        for sub, mode in self._dirs():
            os.makedirs(os.path.join(self.path, sub), exist_ok=True)
            os.chmod(os.path.join(self.path, sub), mode)  # diff's mode is the container's / mode: not the umask's
            if self.owner is not None:
                os.chown(os.path.join(self.path, sub), self.owner, self.owner)
        mount(self.path, self.path, None, MS_BIND)
        mount(None, self.path, None, MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NODEV)

    def down(self) -> None:
        try:
            umount2(self.path, MNT_DETACH)
        except OSError as e:
            if e.errno not in (errno.EINVAL, errno.ENOENT):  # not mounted (any more), or gone
                raise
        tree.remove_tree(self.path)  # the container filled it: no depth, link or name of its may stop this

    def shell_up(self) -> list[str]:
        path = shlex.quote(self.path)
        out = [f"mkdir -p -m 0700 {path}", f"mkdir -m 0755 {shlex.quote(self.path + '/diff')}",
               f"mkdir -m 0700 {shlex.quote(self.path + '/work')} {shlex.quote(self.path + '/merged')}"]
        if self.owner is not None:
            subs = " ".join(shlex.quote(f"{self.path}/{d}") for d, _ in self._dirs() if d)
            out += [f"mkdir -m 0700 {shlex.quote(self.path + '/lower')}",
                    f"chown {self.owner}:{self.owner} {path} {subs}   # the container's root on the host"]
        return out + [f"mount --bind {path} {path}", f"mount -o remount,bind,nosuid,nodev {path}"]

    def shell_down(self) -> list[str]:
        path = shlex.quote(self.path)
        return [f"umount -l {path}", f"rm -rf {path}"]


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def run(spec: ContainerSpec, root: str, remove: bool = False, verbose: bool = False, detach: bool = False,
        log: dict | None = None) -> int:
    """Run SPEC; return its exit code, or with DETACH print its id and return 0 once it runs, its output
    going to a log bounded by LOG (logfile.parse_log_opts)."""
    state.ensure_root(root)
    net = None
    if spec.network not in ("none", "host"):
        from runtime.network import networks

        net = networks.get(root, spec.network)  # an unknown network is bad input: fail before anything exists
    reconcile(root)
    with state.locked(root):
        cid, name = state.new_container(root, spec.name)
    cdir = state.container_dir(root, cid)
    record = state.read_json(state.record_path(root, cid))
    spec = _guard_devices(spec)
    record.update(_describe(spec, cid, remove, cdir))
    record["HostConfig"]["LogConfig"] = {"Type": "file", "Config": log or dict(logfile.DEFAULTS)}
    if detach:
        return _detach(spec, net, root, record, verbose)
    signals.abort_on_signals()
    proc = start(spec, net, root, record, verbose)
    try:
        proc.wait()
    finally:
        signals.ignore_signals()
        if proc.status is None:
            proc.kill()
        code = finish(root, cid, proc.reap(), verbose, signals.timed_out())
    return code


def start(spec: ContainerSpec, net, root: str, record: dict, verbose: bool = False) -> process.ContainerProcess:
    """Set the container up, on the bridge network NET (None: --network none or host), and start its command;
    on failure undo everything and raise."""
    cid, name = record["Id"], record["Name"]
    cdir = state.container_dir(root, cid)
    journal = Journal(state.journal_path(root, cid), trace=verbose)
    hostname = record["Config"]["Hostname"]
    proc = network = None
    try:
        cgroup = Cgroup(cid, spec.resources.memory, spec.resources.cpus, spec.resources.pids_limit)
        journal.run(cgroup)
        ids = userns.lease(cid, journal) if spec.userns == "auto" else None
        layer = os.path.join(cdir, "layer")
        journal.run(Layer(layer, ids.base if ids else None))
        network = _network(spec, net, root, cid, name, journal)
        binds = dns.write_files(dns.etc_dir(cdir), hostname, network.address if network else None, spec.network)
        if network and network.net.user_defined:
            journal.run(dns.HostsEntry(root, network.net.bridge, cid, name, network.address))
        binds += [(m.source, m.target, m.readonly) for m in spec.mounts]
        proc = process.spawn(spec, layer, binds, hostname, ids=ids, meanwhile=network.ensure_bridge if network else None)
        # Moving a process into a v1 cgroup waits out an RCU grace period in the kernel (~14 ms, on no CPU):
        # the network is wired meanwhile.
        with _meanwhile(cgroup.join, proc.pid):
            if network:
                network.attach(proc.pid, journal)
                record["NetworkSettings"].update(network.settings())
        proc.go()
        record["State"] = {"Status": "running", "Running": True, "Pid": proc.pid, "ExitCode": 0,
                           "OOMKilled": False, "StartedAt": now(), "FinishedAt": ""}
        record["Init"] = {"Pid": proc.pid, "StartTime": state.start_time(proc.pid)}
        if ids:  # podman's inspect names them so
            record["HostConfig"]["IDMappings"] = {"UidMap": [ids.id_map], "GidMap": [ids.id_map]}
        state.write_json(state.record_path(root, cid), record)
        proc.held = network.sockets if network else []
        return proc
    except BaseException as e:
        signals.ignore_signals()
        reported = proc.reported_error() if proc is not None and not isinstance(e, PyrunError) else None
        if proc is not None and proc.status is None:
            proc.kill()
            proc.reap()
        if network:
            network.close()  # first: a run that ran out of file descriptors needs them back to undo
        errors = journal.undo()
        _report("teardown of", name, errors)
        if not errors:  # else the journal stays, for the next reconcile and `pyrun rm` to try again
            _remove_dir(cdir, name)
        if reported:
            raise reported from None
        raise


@contextlib.contextmanager
def _meanwhile(function, *args):
    """Call FUNCTION(*ARGS) in a thread while the with-block runs; wait for it at the end and raise what it
    raised (the block's own exception, if any, wins)."""
    failed = []

    def call() -> None:
        try:
            function(*args)
        except BaseException as e:
            failed.append(e)

    thread = threading.Thread(target=call)
    thread.start()
    try:
        yield
    finally:
        thread.join()
    if failed:
        raise failed[0]


def finish(root: str, cid: str, code: int, verbose: bool = False, timed_out: bool = False) -> int:
    """PID 1 has exited with CODE (or was stopped at its --timeout): record how, undo the journal, keep or
    remove the record."""
    cdir = state.container_dir(root, cid)
    record = state.read_json(state.record_path(root, cid))
    if timed_out:
        print(f"pyrun: container {record['Name']} exceeded --timeout {record['HostConfig']['Timeout']:g}s",
              file=sys.stderr)
        code = EXIT_TIMEOUT
    journal = Journal(state.journal_path(root, cid), trace=verbose)
    # Only a SIGKILL may be the OOM killer's: read the journal for the cgroup then, not on every exit.
    oom = code == 137 and any(s.oom_killed() for s in journal.steps() if isinstance(s, Cgroup))
    if oom:
        memory = record["HostConfig"]["Memory"] >> 20
        print(f"pyrun: container {record['Name']} was killed by the kernel: out of memory (--memory {memory}m)",
              file=sys.stderr)
    errors = journal.undo()
    _report("teardown of", record["Name"], errors)
    record["State"].update(Status="exited", Running=False, ExitCode=code, OOMKilled=oom, FinishedAt=now())
    with open(os.open(os.path.join(cdir, EXIT_CODE), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600),
              "w") as f:
        f.write(str(code))
    if record["HostConfig"]["AutoRemove"] and not errors:  # a failed undo keeps its journal for `pyrun rm`
        _remove_dir(cdir, record["Name"])
    else:
        state.write_json(state.record_path(root, cid), record)
    return code


def _detach(spec: ContainerSpec, net, root: str, record: dict, verbose: bool) -> int:
    """run -d: fork the monitor, wait until it has started the command (or failed), print the id."""
    cid = record["Id"]
    told, tell = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    monitor = os.fork()
    if monitor == 0:
        os.close(told)
        _become_monitor(spec, net, root, record, verbose, tell)
    # Until the monitor has put itself in the record, the record names this process: what stops it (stop,
    # rm -f) is meant for the setup the monitor is doing.
    signals.forward_to(monitor)
    os.close(tell)
    with os.fdopen(told) as f:
        report = f.read()
    if not report:
        raise PyrunError("run -d", f"the monitor died while starting the container; see {record['LogPath']}")
    report = json.loads(report)
    if "error" in report:
        raise PyrunError(report["step"], report["error"], report["code"])
    print(cid)
    return 0


def _become_monitor(spec: ContainerSpec, net, root: str, record: dict, verbose: bool, tell: int) -> None:
    """The forked monitor: detach from the terminal, start the container, then exec monitor.py."""
    try:
        signals.abort_on_signals()
        os.setsid()
        log = os.open(record["LogPath"], os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        null = os.open(os.devnull, os.O_RDONLY)
        output, into = os.pipe()
        os.dup2(null, 0)
        os.dup2(into, 1)
        os.dup2(into, 2)  # the container inherits these: its output goes through the monitor into the log
        os.close(into)
        sys.stdout = sys.stderr = open(log, "w", buffering=1, closefd=False)  # pyrun's own words go to the log
        record["Monitor"] = state.me()
        state.write_json(state.record_path(root, record["Id"]), record)
        proc = start(spec, net, root, record, verbose)
    except BaseException as e:
        if not os.path.exists(state.journal_path(root, record["Id"])):  # start() never began: remove what is here
            _remove_dir(state.container_dir(root, record["Id"]), record["Name"])
        step, detail, code = (e.step, e.detail, e.exit_code) if isinstance(e, PyrunError) else ("run -d", repr(e), 125)
        os.write(tell, json.dumps({"step": step, "error": detail, "code": code}).encode())
        os._exit(code)
    os.write(tell, b'{"ok": true}')
    os.close(tell)
    for sock in proc.held:  # the published ports stay reserved for as long as the monitor lives
        os.set_inheritable(sock.fileno(), True)
    signals.ignore_signals()
    os.chdir("/")  # hold no directory of the user's busy
    os.dup2(log, 1)  # the monitor must not hold the pipe's other end, or it would never see it close
    os.dup2(log, 2)
    os.set_inheritable(output, True)
    max_size, max_file = logfile.bounds(record["HostConfig"]["LogConfig"]["Config"])
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    deadline = signals.deadline()  # the --timeout goes on in the monitor: the same moment, not a new count
    os.execve(sys.executable, [sys.executable, "-m", "runtime.monitor", root, record["Id"], str(proc.pid),
                               record["LogPath"], str(output), str(max_size), str(max_file),
                               str(spec.stop_timeout), repr(deadline) if deadline else ""],
              {**os.environ, "PYTHONPATH": here})


def _guard_devices(spec: ContainerSpec) -> ContainerSpec:
    """Without the devices controller nothing stops a node made with CAP_MKNOD from opening the host's disk."""
    from runtime import cgroups

    if "MKNOD" not in spec.caps or cgroups.guards_devices():
        return spec
    print("pyrun: no cgroup v1 devices controller here (cgroup v2 needs an eBPF program, which pyrun does not "
          "load): dropping CAP_MKNOD", file=sys.stderr)
    return replace(spec, caps=spec.caps - {"MKNOD"})


def _describe(spec: ContainerSpec, cid: str, remove: bool, cdir: str) -> dict:
    """The record's description of SPEC, in Docker's inspect shape; spec_from() reads it back."""
    return {
        "Created": now(),
        "Path": spec.command[0],
        "Args": list(spec.command[1:]),
        "LogPath": os.path.join(cdir, LOG),
        "Config": {"Image": spec.rootfs, "Cmd": list(spec.command), "Env": [f"{k}={v}" for k, v in spec.env],
                   "Hostname": spec.hostname or cid[:12], "WorkingDir": spec.workdir,
                   "Tty": spec.tty, "OpenStdin": spec.interactive, "User": spec.user or "",
                   "StopTimeout": spec.stop_timeout},
        "HostConfig": {"NetworkMode": spec.network, "AutoRemove": remove, "Init": spec.init,
                       "ReadonlyRootfs": spec.read_only, "Capabilities": sorted(spec.caps),
                       "SecurityOpt": [f"seccomp={spec.seccomp_setting}"], "UsernsMode": spec.userns,
                       "Binds": [f"{m.source}:{m.target}{':ro' if m.readonly else ''}" for m in spec.mounts],
                       "Memory": spec.resources.memory or 0, "NanoCpus": int((spec.resources.cpus or 0) * 1e9),
                       "PidsLimit": spec.resources.pids_limit or 0,
                       "Sandbox": spec.sandbox, "Timeout": spec.timeout or 0, "Tmpfs": {t.target: t.options() for t in spec.tmpfs},
                       "Ulimits": [{"Name": u.name, "Soft": u.soft, "Hard": u.hard} for u in spec.ulimits]},
        "NetworkSettings": {"IPAddress": "", "Gateway": "", "MacAddress": "", "Ports": _ports(spec)},
    }


def spec_from(record: dict) -> ContainerSpec:
    """The ContainerSpec that _describe() wrote down (ports and limits aside): what exec needs."""
    from runtime.spec import parse_security_opts

    config, host = record["Config"], record["HostConfig"]
    return ContainerSpec(
        rootfs=config["Image"], command=tuple(config["Cmd"]), name=record["Name"], hostname=config["Hostname"],
        env=tuple(tuple(e.split("=", 1)) for e in config["Env"]), workdir=config["WorkingDir"],
        mounts=tuple(BindMount(*b.split(":")[:2], b.endswith(":ro")) for b in host["Binds"]),
        network=host["NetworkMode"], resources=Resources(), caps=frozenset(host["Capabilities"]),
        read_only=host["ReadonlyRootfs"], init=host["Init"], interactive=config["OpenStdin"], tty=config["Tty"],
        userns=host.get("UsernsMode", "host"),
        user=config.get("User") or None, stop_timeout=config.get("StopTimeout", 10.0), ulimits=tuple(Ulimit(u["Name"], u["Soft"], u["Hard"])
                                                       for u in host.get("Ulimits", [])),
        **parse_security_opts(host["SecurityOpt"]))


def _ports(spec: ContainerSpec) -> dict:
    ports: dict = {}
    for p in spec.ports:
        ports.setdefault(f"{p.container_port}/{p.proto}", []).append(
            {"HostIp": p.host_ip or "0.0.0.0", "HostPort": str(p.host_port)})
    return ports


def reconcile(root: str) -> list[dict]:
    """Undo what crashed pyruns left: the journal of every container whose monitor died unannounced.

    Cheap enough for every `pyrun run`: a directory listing and a stat of
    /proc per container. The records stay, marked "dead", for ps -a and rm.
    A container whose undo fails is reported (once: it is marked dead all the
    same) and the others, and the command that called this, go on.
    """
    dead = []
    for record in state.all_records(root):
        try:
            if _reconcile(root, record):
                dead.append(record)
        except Exception as e:
            _report("cleaning up after", record.get("Name", record.get("Id")), [one_line(e)])
    return dead


def _reconcile(root: str, record: dict) -> bool:
    if record["State"]["Status"] in ("exited", "dead") or state.alive(record.get("Monitor")):
        return False
    with state.locked(root):  # two reconcilers must not undo the same journal at once
        if not os.path.exists(state.record_path(root, record["Id"])):
            return False
        _report("cleaning up after", record["Name"], Journal(state.journal_path(root, record["Id"])).undo())
        record["State"].update(Status="dead", Running=False, FinishedAt=record["State"].get("FinishedAt") or now())
        state.write_json(state.record_path(root, record["Id"]), record)
    return True


def _remove_dir(cdir: str, name: str) -> None:
    try:
        tree.remove_tree(cdir)
    except OSError as e:
        _report("removing", name, [str(e)])


def _report(what: str, name: str, errors: list[str]) -> None:
    """One line for one container's failed teardown, however many of its steps failed."""
    if errors:
        print(f"pyrun: {what} {name}: {'; '.join(errors)}", file=sys.stderr)


def remove(root: str, record: dict) -> None:
    """Remove a container that no longer runs: undo whatever its journal still names, then its directory."""
    cdir = state.container_dir(root, record["Id"])
    with state.locked(root):
        errors = Journal(state.journal_path(root, record["Id"])).undo()
        if errors:
            raise PyrunError("rm", f"{record['Name']}: " + "; ".join(errors))
        try:
            tree.remove_tree(cdir)
        except OSError as e:
            raise PyrunError("rm", f"{record['Name']}: {e}") from None


def prune(root: str) -> list[str]:
    """Remove every container that is not running, undoing what its journal says; return their names.

    A monitor killed with SIGKILL leaves its journal behind: replaying it here
    restores the host exactly. Containers still owned by a live pyrun are left alone.
    """
    reconcile(root)
    pruned = []
    for record in state.all_records(root):
        if state.alive(record.get("Monitor")):
            continue
        try:
            remove(root, record)
            pruned.append(record["Name"])
        except PyrunError as e:
            print(f"pyrun: prune: {e.detail}", file=sys.stderr)
    return pruned


def _network(spec: ContainerSpec, net, root: str, cid: str, name: str, journal: Journal):
    if net is None:
        return None
    from runtime.network import bridge

    return bridge.BridgeNetwork.prepare(spec, net, root, cid, name, journal)
