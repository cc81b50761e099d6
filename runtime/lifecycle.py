"""The commands that act on containers already made: ps, logs, exec, inspect, stop, kill, rm.

Each is one plain function over the state directory (state.py) and the
kernel. None of them trusts a record alone: a container is running only if
its monitor and its PID 1 are both still the processes the record names
(same pid, same start time), so a crash or a reused pid cannot fool `ps`.
Signals go to PID 1; the container's monitor sees it exit and tears down.
"""
import calendar
import json
import os
import signal
import sys
import time
from dataclasses import replace

from runtime import container, state
from runtime.container import EXIT_CODE
from runtime.errors import PyrunError


def find(root: str, ref: str) -> dict:
    """The record named REF: a name, an id, or an unambiguous prefix of an id."""
    records = state.all_records(root)
    for record in records:
        if ref in (record["Name"], record["Id"]):
            return record
    matches = [r for r in records if ref and r["Id"].startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise PyrunError("no such container", f"{ref!r} is ambiguous: it begins the ids of "
                                              f"{', '.join(r['Name'] for r in matches)}; give more of the id")
    raise PyrunError("no such container", f"{ref!r}: no container has this name or id (see 'pyrun ps -a')")


def status(record: dict) -> str:
    """created, running, stopping, exited or dead, checked against the processes themselves."""
    said = record["State"]["Status"]
    if said in ("exited", "dead"):
        return said
    if not state.alive(record.get("Monitor")):
        return "dead"  # its pyrun was killed: `pyrun prune` or the next `pyrun run` cleans up
    if said == "running" and not state.alive(record.get("Init")):
        return "stopping"  # PID 1 is gone; the monitor is tearing down
    return said


def running(root: str, ref: str, action: str) -> dict:
    record = find(root, ref)
    now = status(record)
    if now != "running":
        raise PyrunError(action, f"container {record['Name']} is not running (it is {now})")
    return record


def ps(root: str, show_all: bool = False) -> list[dict]:
    """One row per container (only running ones unless SHOW_ALL), newest first."""
    rows = []
    for record in sorted(state.all_records(root), key=lambda r: r.get("Created", ""), reverse=True):
        now = status(record)
        if now != "running" and not show_all:
            continue
        st = record["State"]
        net = record.get("NetworkSettings", {})
        rows.append({"NAME": record["Name"], "ID": record["Id"][:12],
                     "STATUS": f"exited ({st['ExitCode']})" if now == "exited" else now,
                     "PID": str(st.get("Pid", "")) if now == "running" else "",
                     "IP": net.get("IPAddress", "") if now == "running" else "",
                     "PORTS": ", ".join(container.published(record)), "COMMAND": " ".join(record.get("Config", {}).get("Cmd", [])),
                     "CREATED": _ago(record.get("Created"))})
    return rows


def _ago(stamp: str | None) -> str:
    if not stamp:
        return ""
    seconds = int(time.time() - calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")))
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}{'s' if seconds // size > 1 else ''} ago"
    return f"{max(seconds, 0)} seconds ago"


def inspect(root: str, refs: list[str]) -> list[dict]:
    """Docker's inspect shape; State.Status is checked against the kernel, as in ps."""
    out = []
    for ref in refs:
        record = find(root, ref)
        shown = {k: v for k, v in record.items() if k not in ("Monitor", "Init")}
        now = status(record)
        shown["State"] = {**record["State"], "Status": now, "Running": now == "running"}
        out.append(shown)
    return out


def logs(root: str, ref: str, follow: bool = False) -> None:
    """Copy the container's log to stdout; with FOLLOW, keep copying until the container has exited."""
    record = find(root, ref)
    try:
        log = open(record["LogPath"], "rb")
    except FileNotFoundError:
        raise PyrunError("logs", f"container {record['Name']} has no log: only 'pyrun run -d' keeps one "
                                 "(a foreground container writes to the terminal)") from None
    out = sys.stdout.buffer
    with log:
        while True:
            data = log.read(65536)
            if data:
                out.write(data)
                out.flush()
                continue
            if not follow or not _still_there(root, record):
                out.write(log.read())  # what was written between the last read and the exit
                return
            time.sleep(0.1)


def _still_there(root: str, record: dict) -> bool:
    """Is the container still being set up, running, or being torn down by a live monitor?"""
    try:
        return status(state.read_json(state.record_path(root, record["Id"]))) in ("created", "running", "stopping")
    except (FileNotFoundError, json.JSONDecodeError):
        return False


def parse_signal(value: str) -> signal.Signals:
    name = value.upper()
    try:
        return signal.Signals(int(name)) if name.isdigit() else signal.Signals[name if name.startswith("SIG")
                                                                              else "SIG" + name]
    except (KeyError, ValueError):
        raise PyrunError("invalid --signal", f"{value!r}: expected a signal name or number, "
                                             "e.g. SIGTERM, TERM, HUP or 9") from None


def parse_timeout(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1
    if not 0 <= seconds <= 86400:
        raise PyrunError("invalid --time", f"{value!r}: expected a number of seconds from 0 to 86400")
    return seconds


def kill(root: str, ref: str, sig: signal.Signals = signal.SIGKILL) -> dict:
    """Send SIG to the running container REF's PID 1."""
    record = running(root, ref, "kill")
    _signal(record, sig)
    return record


def _signal(record: dict, sig: signal.Signals) -> None:
    """Send SIG to the record's PID 1 if it is still that process; if it has exited meanwhile, do nothing."""
    init = record.get("Init")
    if not init:
        return
    # pidfd_open pins the process: if it died after the check below, the signal cannot reach a newcomer.
    try:
        pidfd = os.pidfd_open(init["Pid"])
    except ProcessLookupError:
        return
    try:
        if state.alive(init):
            signal.pidfd_send_signal(pidfd, sig)
    except ProcessLookupError:
        pass
    finally:
        os.close(pidfd)


def wait_gone(root: str, record: dict, timeout: float) -> bool:
    """Wait until the container's monitor has finished its teardown; False if TIMEOUT passed first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _still_there(root, record):
            return True
        time.sleep(0.02)
    return False


def stop(root: str, ref: str, timeout: float | None = None) -> None:
    """SIGTERM, then SIGKILL after TIMEOUT seconds (default: its --stop-timeout), as `docker stop` does;
    returns once torn down.

    Stopping a container that is not running is not an error: it may have exited a moment ago.
    """
    record = find(root, ref)
    if status(record) != "running":
        return
    if timeout is None:
        timeout = record["Config"].get("StopTimeout", 10)
    _signal(record, signal.SIGTERM)  # it may exit on its own meanwhile: no error then
    if not wait_gone(root, record, timeout):
        _signal(record, signal.SIGKILL)
        wait_gone(root, record, 30)


def rm(root: str, ref: str, force: bool = False) -> None:
    """Remove a container that is not running; with FORCE, kill it first."""
    record = find(root, ref)
    now = status(record)
    if now in ("running", "created", "stopping"):
        if not force:
            raise PyrunError("rm", f"container {record['Name']} is {now}: stop it first, or use 'pyrun rm -f'")
        _signal(record, signal.SIGKILL)
        if not wait_gone(root, record, 30):
            raise PyrunError("rm", f"container {record['Name']} did not stop within 30 s")
    if os.path.isdir(state.container_dir(root, record["Id"])):
        container.remove(root, record)


def exec_in(root: str, ref: str, command: list[str], env: list[tuple[str, str]], workdir: str | None,
            interactive: bool, tty: bool, user: str | None = None) -> int:
    """Run COMMAND in the running container REF: its namespaces, cgroup, capabilities and no_new_privs, as
    USER (default: the container's -u)."""
    from runtime import process, signals
    from runtime.cgroups import Cgroup
    from runtime.steps import Journal

    record = running(root, ref, "exec")
    base = container.spec_from(record)
    spec = replace(base, command=tuple(command), env=base.env + tuple(env), workdir=workdir or base.workdir,
                   interactive=interactive, tty=tty, init=False, user=user or base.user)
    journal = Journal(state.journal_path(root, record["Id"]))
    signals.abort_on_signals()
    proc = process.spawn(spec, "", [], spec.hostname, join=record["Init"]["Pid"])
    try:
        for step in journal.steps():
            if isinstance(step, Cgroup):
                step.join(proc.pid)
        proc.go()
        return proc.wait()
    finally:
        if proc.status is None:
            proc.kill()
            proc.reap()


def docker_row(record: dict) -> dict:
    """A container as `docker ps --format` names its fields (.ID, .Names, .Status, ...)."""
    now, st = status(record), record["State"]
    shown = {"running": f"Up {_ago(st.get('StartedAt')).removesuffix(' ago')}",
             "exited": f"Exited ({st.get('ExitCode')}) {_ago(st.get('FinishedAt'))}"}.get(now, now.capitalize())
    config = record.get("Config", {})
    return {"ID": record["Id"][:12], "Names": record["Name"], "Image": config.get("Image", ""),
            "Command": json.dumps(" ".join(config.get("Cmd", []))), "CreatedAt": record.get("Created", ""),
            "RunningFor": _ago(record.get("Created")), "Ports": ", ".join(container.published(record)),
            "Status": shown, "State": now, "Networks": record.get("HostConfig", {}).get("NetworkMode", ""),
            "Mounts": ",".join(record.get("HostConfig", {}).get("Binds", []))}


PS_HEADERS = {"ID": "CONTAINER ID", "Names": "NAMES", "Image": "IMAGE", "Command": "COMMAND",
              "CreatedAt": "CREATED AT", "RunningFor": "CREATED"}


def wait(root: str, ref: str) -> int:
    """Block until the container REF has exited; return its exit code, as `docker wait` prints it.

    A --rm container's record is gone as soon as it has exited, so the code is read from the file
    finish() writes it to before removing anything: opened here first, it stays readable once unlinked."""
    record = find(root, ref)
    try:
        code = os.open(os.path.join(state.container_dir(root, record["Id"]), EXIT_CODE),
                       os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except FileNotFoundError:  # removed since find()
        code = None
    try:
        while True:
            try:
                record = state.read_json(state.record_path(root, record["Id"]))
            except (FileNotFoundError, json.JSONDecodeError):
                break
            if status(record) in ("exited", "dead"):
                break
            time.sleep(0.01)
        said = os.pread(code, 16, 0).decode().strip() if code is not None else ""
    finally:
        if code is not None:
            os.close(code)
    if said.lstrip("-").isdigit():
        return int(said)
    return record["State"]["ExitCode"] if status(record) == "exited" else -1  # dead: nobody saw it end


def port(record: dict, private: str | None = None) -> list[str]:
    """`docker port`: every mapping as '8000/tcp -> 0.0.0.0:8088', or PRIVATE's host addresses."""
    ports = record.get("NetworkSettings", {}).get("Ports", {})
    if private is None:
        return [f"{p} -> {b['HostIp']}:{b['HostPort']}" for p, binds in ports.items() for b in binds]
    key = private if "/" in private else f"{private}/tcp"
    if not ports.get(key):
        raise PyrunError("port", f"no public port '{key}' published for {record['Name']}")
    return [f"{b['HostIp']}:{b['HostPort']}" for b in ports[key]]


def pids(record: dict) -> list[int]:
    """The host pids of every process in the container: those in its PID 1's PID namespace."""
    pid = record["Init"]["Pid"]
    try:
        ns = os.readlink(f"/proc/{pid}/ns/pid")
    except FileNotFoundError:
        return []
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.readlink(f"/proc/{entry}/ns/pid") == ns:
                    out.append(int(entry))
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue  # it exited while we looked, or it is not ours to see (the machine's own init)
    return sorted(out)


def top(root: str, ref: str, ps_args: list[str]) -> str:
    """`docker top`: the host's ps (default -ef) limited to the container's processes."""
    import subprocess

    record = running(root, ref, "top")
    mine = set(map(str, pids(record)))
    out = subprocess.run(["ps", *(ps_args or ["-ef"])], capture_output=True, text=True)
    if out.returncode:
        raise PyrunError("top", f"ps {' '.join(ps_args)}: {(out.stderr.strip() or 'failed').splitlines()[0]}")
    header, *lines = out.stdout.splitlines() or [""]
    if "PID" not in header.split():
        raise PyrunError("top", f"ps {' '.join(ps_args)}: its output has no PID column")
    column = header.split().index("PID")
    return "\n".join([header] + [line for line in lines if len(line.split()) > column and line.split()[column] in mine])
