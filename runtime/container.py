"""A container's life, as a table of contents: create, start, wait, tear down.

    run(spec)
      tidy up after crashed pyruns       reconcile() below
      reserve an id and name             state.py
      the create phase                   recipe.py: lease, ports, cgroup, layer, /etc files (journaled)
      fork the container's PID 1         process.py -> init.py (PID 1 builds its rootfs meanwhile)
      the spawn phase                    recipe.py: the bridge, while the intermediate unshares
      the attach phase                   recipe.py: cgroup join (in a thread), netns, veth, rules
      wait "ready", say "go"             -> init.py execs the command
      wait, forwarding signals           process.py (run -d: monitor.py)
      tear down: the journal, backwards  finish() below, steps.py

Every host-side change is a step of recipe.py's list and goes through the
journal, so a failure anywhere (or a crash, see `pyrun prune`) is undone by
the same code path as a normal exit.

With -d, pyrun forks a monitor that does the same work with its output in a
log file, and exits as soon as the command runs. The monitor then replaces
itself (execve) with the small program in monitor.py, so that what stays
resident for each detached container is little more than an interpreter.
"""
import json
import os
import sys

from runtime import logfile, process, recipe, signals, state, tree
from runtime.cgroups import Cgroup
from runtime.errors import EXIT_TIMEOUT, PyrunError
from runtime.record import Record
from runtime.spec import BUILT_IN, ContainerSpec
from runtime.steps import Journal, one_line
from runtime.userns import IdRange

LOG = "container.log"
TRACE = "PYRUN_TRACE"  # run -d --verbose: the monitor traces the teardown too, into the log
EXIT_CODE = "exitcode"  # written in place at the exit, for `pyrun wait` (lifecycle.wait says why)


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
        record = Record.reserve(root, spec.name)
    cid = record.id
    spec = recipe.guard_devices(spec)
    record.describe(spec, recipe.hostname(spec, cid), remove, os.path.join(state.container_dir(root, cid), LOG),
                    log or dict(logfile.DEFAULTS))
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


def start(spec: ContainerSpec, net, root: str, record: Record, verbose: bool = False) -> process.ContainerProcess:
    """Set the container up, on the bridge network NET (None: --network none or host), and start its command;
    on failure undo everything and raise. The steps are recipe.py's, phase by phase."""
    cid, name = record.id, record.name
    cdir = state.container_dir(root, cid)
    journal = Journal(state.journal_path(root, cid), trace=verbose)
    proc = plan = None
    try:
        plan = recipe.create(journal, spec, net, root, cid, name)
        ids = recipe.find(plan, IdRange)
        if spec.runtime != BUILT_IN:  # an OCI runtime makes the container: pyrun is its engine (oci/client.py)
            from runtime.oci import client

            proc = client.spawn(plan, lambda: recipe.run(journal, plan, recipe.SPAWN), spec)
        else:
            proc = process.spawn(spec, recipe.inside(spec, plan, cid), record.hostname, ids=ids,
                                 meanwhile=lambda: recipe.run(journal, plan, recipe.SPAWN), trace=verbose)
        recipe.run(journal, plan, recipe.ATTACH, proc.pid)
        if net:
            from runtime.network import ipam, veth

            address = recipe.find(plan, ipam.Lease).address
            record.connect(net, address, veth.mac_address(address), recipe.find(plan, veth.NetnsName).path)
        proc.go()
        record.mark_running(proc.pid)
        if ids:
            record.mapped(ids.id_map)
        record.save(root)
        proc.held = _sockets(plan)
        return proc
    except BaseException:
        signals.ignore_signals()
        # If PID 1 failed, its error is the cause of whatever a host-side step on its namespaces hit meanwhile.
        reported = proc.reported_error() if proc is not None else None
        if proc is not None and proc.status is None:
            proc.kill()
            proc.reap()
        for sock in _sockets(plan):  # first: a run that ran out of file descriptors needs them back to undo
            sock.close()
        errors = journal.undo()
        _report("teardown of", name, errors)
        if not errors:  # else the journal stays, for the next reconcile and `pyrun rm` to try again
            _remove_dir(cdir, name)
        if reported:
            raise reported from None
        raise


def _sockets(plan) -> list:
    """The published ports' sockets that the plan's Ports step holds, if it has one."""
    ports = next((p.step for p in plan or [] if p.step.kind == "ports"), None)
    return ports.sockets if ports else []


def finish(root: str, cid: str, code: int, verbose: bool = False, timed_out: bool = False) -> int:
    """PID 1 has exited with CODE (or was stopped at its --timeout): record how, undo the journal, keep or
    remove the record."""
    cdir = state.container_dir(root, cid)
    record = Record.load(root, cid)
    if timed_out:
        print(f"pyrun: container {record.name} exceeded --timeout {record.timeout:g}s",
              file=sys.stderr)
        code = EXIT_TIMEOUT
    journal = Journal(state.journal_path(root, cid), trace=verbose)
    # Only a SIGKILL may be the OOM killer's: read the journal for the cgroup then, not on every exit. Under
    # --runtime the runtime made it, at the cgroupsPath config.json named (oci/engine.py): pyrun's own path.
    oom = code == 137 and any(s.oom_killed() for s in [s for s in journal.steps() if isinstance(s, Cgroup)]
                              or [Cgroup(cid)])
    if oom:
        memory = record.memory >> 20
        print(f"pyrun: container {record.name} was killed by the kernel: out of memory (--memory {memory}m)",
              file=sys.stderr)
    errors = journal.undo()
    _report("teardown of", record.name, errors)
    record.mark_exited(code, oom)
    with open(os.open(os.path.join(cdir, EXIT_CODE), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600),
              "w") as f:
        f.write(str(code))
    if record.auto_remove and not errors:  # a failed undo keeps its journal for `pyrun rm`
        _remove_dir(cdir, record.name)
    else:
        record.save(root)
    return code


def _detach(spec: ContainerSpec, net, root: str, record: Record, verbose: bool) -> int:
    """run -d: fork the monitor, wait until it has started the command (or failed), print the id."""
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
        raise PyrunError("run -d", f"the monitor died while starting the container; see {record.log_path}")
    report = json.loads(report)
    if "error" in report:
        raise PyrunError(report["step"], report["error"], report["code"])
    print(record.id)
    return 0


def _become_monitor(spec: ContainerSpec, net, root: str, record: Record, verbose: bool, tell: int) -> None:
    """The forked monitor: detach from the terminal, start the container, then exec monitor.py."""
    try:
        signals.abort_on_signals()
        os.setsid()
        log = os.open(record.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        null = os.open(os.devnull, os.O_RDONLY)
        output, into = os.pipe()
        os.dup2(null, 0)
        os.dup2(into, 1)
        os.dup2(into, 2)  # the container inherits these: its output goes through the monitor into the log
        os.close(into)
        sys.stdout = sys.stderr = open(log, "w", buffering=1, closefd=False)  # pyrun's own words go to the log
        record.monitor = state.me()
        record.save(root)
        proc = start(spec, net, root, record, verbose)
    except BaseException as e:
        if not os.path.exists(state.journal_path(root, record.id)):  # start() never began: remove what is here
            _remove_dir(state.container_dir(root, record.id), record.name)
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
    max_size, max_file = logfile.bounds(record.log_config)
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    deadline = signals.deadline()  # the --timeout goes on in the monitor: the same moment, not a new count
    os.execve(sys.executable, [sys.executable, "-m", "runtime.monitor", root, record.id, str(proc.pid),
                               record.log_path, str(output), str(max_size), str(max_file),
                               str(spec.stop_timeout), repr(deadline) if deadline else ""],
              {**os.environ, "PYTHONPATH": here, **({TRACE: "1"} if verbose else {})})


def reconcile(root: str) -> list[Record]:
    """Undo what crashed pyruns left: the journal of every container whose monitor died unannounced.

    Cheap enough for every `pyrun run`: a directory listing and a stat of
    /proc per container. The records stay, marked "dead", for ps -a and rm.
    A container whose undo fails is reported (once: it is marked dead all the
    same) and the others, and the command that called this, go on.
    """
    dead = []
    for record in Record.every(root):
        try:
            if _reconcile(root, record):
                dead.append(record)
        except Exception as e:
            _report("cleaning up after", record.name, [one_line(e)])
    return dead


def _reconcile(root: str, record: Record) -> bool:
    if record.said in ("exited", "dead") or state.alive(record.monitor):
        return False
    with state.locked(root):  # two reconcilers must not undo the same journal at once
        if not os.path.exists(state.record_path(root, record.id)):
            return False
        _report("cleaning up after", record.name, Journal(state.journal_path(root, record.id)).undo())
        record.mark_dead()
        record.save(root)
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


def remove(root: str, record: Record) -> None:
    """Remove a container that no longer runs: undo whatever its journal still names, then its directory."""
    cdir = state.container_dir(root, record.id)
    with state.locked(root):
        errors = Journal(state.journal_path(root, record.id)).undo()
        if errors:
            raise PyrunError("rm", f"{record.name}: " + "; ".join(errors))
        try:
            tree.remove_tree(cdir)
        except OSError as e:
            raise PyrunError("rm", f"{record.name}: {e}") from None


def prune(root: str) -> list[str]:
    """Remove every container that is not running, undoing what its journal says; return their names.

    A monitor killed with SIGKILL leaves its journal behind: replaying it here
    restores the host exactly. Containers still owned by a live pyrun are left alone.
    """
    reconcile(root)
    pruned = []
    for record in Record.every(root):
        if state.alive(record.monitor):
            continue
        try:
            remove(root, record)
            pruned.append(record.name)
        except PyrunError as e:
            print(f"pyrun: prune: {e.detail}", file=sys.stderr)
    return pruned
