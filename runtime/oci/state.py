"""The OCI state: what `state ID` prints, and how the runtime knows a container's status (runtime.md).

    creating   create is still setting it up
    created    its process exists, namespaces and rootfs built, blocked before exec: waiting for start
    running    start has let it exec the user's program, which has not exited yet
    paused     running, but its cgroup is frozen (pause; resume thaws it)
    stopped    its process has exited (or create died half way); only delete is left

The runtime keeps no process of its own beside the container (engines such
as conmon and containerd's shim are the container's parent and reap it), so
the status is read off the kernel on every call, never remembered: the
process (by pid and start time, so a reused pid does not count; a zombie has
exited), the exec FIFO, which exists from create until start (see
lifecycle.py), and the freezer cgroup's state. Records live under --root as containers/ID/state.json, written
with runtime/state.py's atomic helpers.
"""
import os
import time

from runtime import state
from runtime.errors import PyrunError

OCI_VERSION = "1.0.2"  # the runtime specification's version pyrun-oci follows
FIFO = "exec.fifo"


def record_path(root: str, cid: str) -> str:
    return state.record_path(root, cid)


def fifo_path(root: str, cid: str) -> str:
    return os.path.join(state.container_dir(root, cid), FIFO)


def config_path(root: str, cid: str) -> str:
    """config.json as create read it: the bundle's may change or go, the container's does not."""
    return os.path.join(state.container_dir(root, cid), "config.json")


def freezer_file(cgroup) -> str | None:
    """The file that freezes the container's cgroup: v1's freezer.state (FROZEN/THAWED), v2's cgroup.freeze
    (1/0); None where neither exists."""
    dirs = cgroup.dirs()
    if "freezer" in dirs:
        return os.path.join(dirs["freezer"][1], "freezer.state")
    v2 = [path for version, path in dirs.values() if version == 2]
    return os.path.join(v2[0], "cgroup.freeze") if v2 else None


def frozen(record: dict) -> bool:
    try:
        with open(record.get("freezer") or "") as f:
            return f.read().strip() in ("FROZEN", "1")
    except FileNotFoundError:
        return False


def read(root: str, cid: str) -> dict:
    """Container CID's record, or runc's error for an unknown id."""
    try:
        return state.read_json(record_path(root, cid))
    except (FileNotFoundError, NotADirectoryError):
        raise PyrunError(f'container "{cid}" does not exist', "") from None


def new(cid: str, bundle: str, rootfs: str, annotations: dict) -> dict:
    return {"ociVersion": OCI_VERSION, "id": cid, "status": "creating", "pid": 0, "bundle": bundle,
            "rootfs": rootfs, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "owner": "", "annotations": annotations,
            "creator": state.me(), "process": None}


def exited(pid: int, start_time: int | None) -> bool:
    """Has the process PID that started at START_TIME exited? A zombie has: only its parent's wait is left."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return fields[0] in ("Z", "X") or int(fields[19]) != start_time


def status(root: str, record: dict) -> str:
    if record["status"] == "creating":
        return "creating" if state.alive(record["creator"]) else "stopped"
    process = record["process"]
    if exited(process["Pid"], process["StartTime"]):
        return "stopped"
    if os.path.exists(fifo_path(root, record["id"])):
        return "created"
    return "paused" if frozen(record) else "running"


def shown(root: str, record: dict) -> dict:
    """The state as the spec defines it (runtime.md "State"), for `state ID` and for hooks."""
    now = status(root, record)
    out = {"ociVersion": record["ociVersion"], "id": record["id"], "pid": 0 if now == "stopped" else record["pid"],
           "status": now, "bundle": record["bundle"], "rootfs": record["rootfs"], "created": record["created"],
           "owner": record["owner"]}
    if record.get("annotations"):
        out["annotations"] = record["annotations"]
    return out
