"""ps, pause, resume, update: what an engine does to a running container through its cgroup (runc's verbs).

The OCI specification leaves these out of its operations; runc added them and
engines call them: `podman pause`, `ctr task ps`, Kubernetes' in-place
resize. Each works on the container's cgroup only, never on its processes
one by one:

    ps ID       the pids in its cgroup.procs (--format json: a JSON list, what containerd's shim reads)
    pause ID    freeze the cgroup: v1 freezer.state FROZEN, v2 cgroup.freeze 1; every process stops at once
    resume ID   thaw it: THAWED, 0
    update ID   new memory, cpu and pids limits, written as create writes them (cgroups.Cgroup)
"""
import dataclasses
import json
import os
import subprocess
import time

from runtime.errors import PyrunError
from runtime.oci import state as oci_state
from runtime.oci.lifecycle import cgroup_of, cgroup_pids, read_text

FREEZE_TIMEOUT = 5.0  # seconds for the kernel to stop every task (v1 reports FREEZING meanwhile)


def pids(root: str, cid: str) -> list[int]:
    oci_state.read(root, cid)
    return cgroup_pids(root, cid)


def ps(root: str, cid: str, fmt: str, ps_args: list[str]) -> str:
    """--format json: the pids as JSON; table: `ps PS_ARGS` (default -ef) limited to them, as runc prints it."""
    found = pids(root, cid)
    if fmt == "json":
        return json.dumps(found)
    r = subprocess.run(["ps", *(ps_args or ["-ef"])], capture_output=True, text=True)
    if r.returncode:
        raise PyrunError("ps", r.stderr.strip() or f"ps {' '.join(ps_args)} failed")
    lines = r.stdout.splitlines()
    column = lines[0].split().index("PID") if lines and "PID" in lines[0].split() else None
    if column is None:
        raise PyrunError("ps", "the ps output has no PID column; give options that print one, such as -ef")
    return "\n".join([lines[0], *[line for line in lines[1:] if int(line.split()[column]) in found]])


def pause(root: str, cid: str) -> None:
    record = oci_state.read(root, cid)
    if oci_state.status(root, record) != "running":
        raise PyrunError("container not running", "")
    _freeze(record, True)


def resume(root: str, cid: str) -> None:
    record = oci_state.read(root, cid)
    if oci_state.status(root, record) != "paused":
        raise PyrunError("container not paused", "")
    _freeze(record, False)


def _freeze(record: dict, frozen: bool) -> None:
    path = record.get("freezer")
    if not path:
        raise PyrunError("pause", "this host has no freezer cgroup (v1 freezer or v2 cgroup.freeze)")
    v1 = path.endswith("freezer.state")
    with open(path, "w") as f:
        f.write(("FROZEN" if frozen else "THAWED") if v1 else ("1" if frozen else "0"))
    # The write starts the freeze; it is done once every task has stopped (v1: FREEZING until then).
    want = ("FROZEN" if frozen else "THAWED") if v1 else f"frozen {int(frozen)}"
    where = path if v1 else os.path.join(os.path.dirname(path), "cgroup.events")
    deadline = time.monotonic() + FREEZE_TIMEOUT
    while want not in read_text(where).splitlines():
        if time.monotonic() > deadline:
            verb, done = ("pause", "frozen") if frozen else ("resume", "thawed")
            raise PyrunError(verb, f"{record['id']}: the cgroup is not {done} after {FREEZE_TIMEOUT:.0f} s")
        time.sleep(0.001)


def thaw(record: dict) -> None:
    """Let a frozen container's processes run (forgiving: for delete, whose SIGKILL waits on a frozen task)."""
    if oci_state.frozen(record):
        try:
            _freeze(record, False)
        except (OSError, PyrunError):
            pass


def update(root: str, cid: str, resources: dict) -> None:
    """linux.resources as config.json has them (memory, cpu, pids; checked by the same code), written over the
    container's limits. A limit left out stays as it is."""
    from runtime.oci.config_linux import resources as read_resources

    record = oci_state.read(root, cid)
    if oci_state.status(root, record) == "stopped":
        raise PyrunError("container not running", "")
    limits, devices = read_resources(resources)
    if devices:
        raise PyrunError("update", "linux.resources.devices: device rules are fixed at create")
    cgroup = dataclasses.replace(cgroup_of(root, cid), memory=limits.memory, cpus=limits.cpus,
                                 pids_limit=limits.pids_limit, devices=())
    for path, name, value in cgroup._limits():
        if not name.startswith("devices."):
            with open(os.path.join(path, name), "w") as f:
                f.write(str(value))
