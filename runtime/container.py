"""A container's life, as a table of contents: create, start, wait, tear down.

    run(spec)
      reserve an id and name             state.py
      cgroup: create, set limits         cgroups.py        (journaled)
      writable layer: create             Layer below       (journaled)
      network: lease an address          network/          (journaled)
      /etc/hosts, hostname, resolv.conf  network/dns.py
      fork the container, wait "ready"   process.py -> init.py
      network: wire veth, NAT rules      network/          (journaled)
      cgroup: join PID 1, say "go"       -> init.py execs the command
      wait, forwarding signals           process.py
      tear down: the journal, backwards  steps.py

Every host-side change goes through the journal, so a failure anywhere (or a
crash, see `pyrun prune`) is undone by the same code path as a normal exit.
"""
import os
import shutil
import sys
import time
from dataclasses import dataclass

from runtime import process, state
from runtime.cgroups import Cgroup
from runtime.network import dns
from runtime.spec import ContainerSpec
from runtime.steps import Journal, Step


@dataclass
class Layer(Step):
    """The container's copy-on-write layer: overlayfs upper and work directories, and the mount point."""

    kind = "layer"
    path: str

    def up(self) -> None:
        for sub in ("diff", "work", "merged"):
            os.makedirs(os.path.join(self.path, sub), exist_ok=True)

    def down(self) -> None:
        shutil.rmtree(self.path, ignore_errors=False, onerror=_ignore_missing)

    def shell_up(self) -> list[str]:
        return [f"mkdir -p {self.path}/diff {self.path}/work {self.path}/merged"]

    def shell_down(self) -> list[str]:
        return [f"rm -rf {self.path}"]


def _ignore_missing(_func, _path, exc_info) -> None:
    if not isinstance(exc_info[1], FileNotFoundError):
        raise exc_info[1]


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def run(spec: ContainerSpec, root: str, remove: bool = False, verbose: bool = False) -> int:
    """Run SPEC in the foreground and return its exit code."""
    state.ensure_root(root)
    with state.locked(root):
        cid, name = state.new_container(root, spec.name)
    cdir = state.container_dir(root, cid)
    record_path = os.path.join(cdir, "state.json")
    record = state.read_json(record_path)
    journal = Journal(os.path.join(cdir, "journal"), trace=verbose)
    hostname = spec.hostname or cid[:12]
    proc = network = None
    started = False
    process.abort_on_signals()
    try:
        cgroup = Cgroup(cid, spec.resources.memory, spec.resources.cpus, spec.resources.pids_limit)
        journal.run(cgroup)
        layer = os.path.join(cdir, "layer")
        journal.run(Layer(layer))
        network = _network(spec, root, cid, name, journal)
        binds = dns.write_files(cdir, hostname, network.address if network else None, spec.network)
        binds += [(m.source, m.target, m.readonly) for m in spec.mounts]
        proc = process.spawn(spec, layer, binds, hostname)
        if network:
            network.attach(proc.pid, journal)
        cgroup.join(proc.pid)
        proc.go()
        started = True
        record.update(Config={"Cmd": list(spec.command), "Hostname": hostname},
                      State={"Status": "running", "Pid": proc.pid, "StartedAt": _now()})
        state.write_json(record_path, record)
        code = proc.wait()
        oom = code == 137 and cgroup.oom_killed()
        if oom:
            print(f"pyrun: container {name} was killed by the kernel: out of memory "
                  f"(--memory {spec.resources.memory >> 20}m)", file=sys.stderr)
        record["State"].update(Status="exited", ExitCode=code, OOMKilled=oom, FinishedAt=_now())
        return code
    finally:
        process.ignore_signals()
        if proc is not None:
            if proc.status is None:
                proc.kill()
                proc.reap()
        errors = journal.undo()
        if network:
            network.close()
        for error in errors:
            print(f"pyrun: teardown: {error}", file=sys.stderr)
        if remove or not started:
            shutil.rmtree(cdir, ignore_errors=True)
        else:
            state.write_json(record_path, record)


def prune(root: str) -> list[str]:
    """Remove every container whose monitor is gone, undoing what its journal says; return their names.

    A monitor killed with SIGKILL leaves its journal behind: replaying it here
    restores the host exactly. Containers still owned by a live pyrun are left alone.
    """
    pruned = []
    for record in state.all_records(root):
        if state.alive(record.get("Monitor")):
            continue
        cdir = state.container_dir(root, record["Id"])
        errors = Journal(os.path.join(cdir, "journal")).undo()
        for error in errors:
            print(f"pyrun: prune {record['Name']}: {error}", file=sys.stderr)
        if not errors:
            shutil.rmtree(cdir, ignore_errors=True)
            pruned.append(record["Name"])
    return pruned


def _network(spec: ContainerSpec, root: str, cid: str, name: str, journal: Journal):
    if spec.network != "bridge":
        return None
    from runtime.network import bridge

    return bridge.BridgeNetwork.prepare(spec, root, cid, name, journal)
