"""The commands that act on containers already made: ps, logs, exec, inspect, stop, kill, rm.

Each is one plain function over the containers' records (record.py) and the
kernel. None of them trusts a record alone: a container is running only if
its monitor and its PID 1 are both still the processes the record names
(same pid, same start time: Record.status), so a crash or a reused pid cannot fool `ps`.
Signals go to PID 1; the container's monitor sees it exit and tears down.
"""
import calendar
import json
import os
import signal
import sys
import time

from runtime import state
from runtime.errors import PyrunError
from runtime.record import Record

# runtime.container (and with it process, init, seccomp, spec, cgroups: ~10 ms of imports) is imported inside
# the functions that need it, so that ps, logs, inspect, kill and stop do not pay for it.

def find(root: str, ref: str) -> Record:
    """The record named REF: a name, an id, or an unambiguous prefix of an id."""
    records = Record.every(root)
    for record in records:
        if ref in (record.name, record.id):
            return record
    matches = [r for r in records if ref and r.id.startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise PyrunError("no such container", f"{ref!r} is ambiguous: it begins the ids of "
                                              f"{', '.join(r.name for r in matches)}; give more of the id")
    raise PyrunError("no such container", f"{ref!r}: no container has this name or id (see 'pyrun ps -a')")


def running(root: str, ref: str, action: str) -> Record:
    record = find(root, ref)
    now = record.status()
    if now != "running":
        raise PyrunError(action, f"container {record.name} is not running (it is {now})")
    return record


def listed(root: str, show_all: bool = False) -> list[Record]:
    """The records `ps` lists: only running containers unless SHOW_ALL, newest first."""
    return [r for r in sorted(Record.every(root), key=lambda r: r.created, reverse=True)
            if show_all or r.status() == "running"]


def ps(root: str, show_all: bool = False) -> list[dict]:
    """One row per container (only running ones unless SHOW_ALL), newest first."""
    rows = []
    for record in listed(root, show_all):
        now = record.status()
        rows.append({"NAME": record.name, "ID": record.id[:12],
                     "STATUS": f"exited ({record.exit_code})" if now == "exited" else now,
                     "PID": str(record.pid) if now == "running" else "",
                     "IP": record.ip if now == "running" else "",
                     "PORTS": ", ".join(record.published()), "COMMAND": " ".join(record.command),
                     "CREATED": _ago(record.created)})
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
    return [find(root, ref).shown() for ref in refs]


def logs(root: str, ref: str, follow: bool = False, tail: int | None = None, timestamps: bool = False) -> None:
    """Copy the container's log to stdout, its rotated files first (logfile.py), or only its last TAIL lines;
    with FOLLOW, keep copying until the container has exited; with TIMESTAMPS, each line after its time."""
    from runtime import logfile

    record = find(root, ref)
    path = record.log_path
    if not path or not os.path.exists(path):
        raise PyrunError("logs", f"container {record.name} has no log: only 'pyrun run -d' keeps one "
                                 "(a foreground container writes to the terminal)")
    out = sys.stdout.buffer
    log = _tail(logfile.files(path), tail) if tail is not None else None
    stamp = _Stamps().mark if timestamps else lambda _log, data: data
    try:
        while True:
            data = log.read(65536) if log else b""
            if data:
                out.write(stamp(log, data))
                out.flush()
                continue
            later = _after(logfile.files(path), log)
            if later:  # the file read to its end was rotated (or it is the start): on to the next one
                if log:
                    log.close()
                log = later
                continue
            if not follow or not _still_there(root, record):
                if log:
                    out.write(stamp(log, log.read()))  # what was written between the last read and the exit
                return
            time.sleep(0.1)
    finally:
        if log:
            log.close()


class _Stamps:
    """`docker logs -t`: the time each line came, RFC 3339 with nanoseconds, before it; read from the
    .times file beside each log file (logfile.py), which says when each stretch of its bytes came."""

    def __init__(self):
        self.name, self.entries, self.at_line_start = None, [], True

    def mark(self, log, data: bytes) -> bytes:
        start = log.tell() - len(data)
        if log.name != self.name or not self.entries or self.entries[-1][0] < start + len(data):
            from runtime import logfile

            self.name, self.entries = log.name, logfile.stamps(log.name)  # it grows while the container runs
        out, line = [], 0
        for end in [i + 1 for i in range(len(data)) if data[i] == 10] + [len(data)]:  # 10: b"\n"
            if line < end:
                out.append(self._at(start + line) + data[line:end] if line or self.at_line_start else data[line:end])
            line = end
        self.at_line_start = data.endswith(b"\n")
        return b"".join(out)

    def _at(self, offset: int) -> bytes:
        import bisect

        i = bisect.bisect_right(self.entries, (offset, float("inf"))) - 1
        ns = self.entries[max(i, 0)][1] if self.entries else 0
        return (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + f".{ns % 10**9:09d}Z ").encode()


def _after(names: list[str], log):
    """The log file that follows LOG among NAMES (oldest first), open; None if LOG is the newest."""
    inodes = []
    for name in names:
        try:
            inodes.append(os.stat(name).st_ino)
        except FileNotFoundError:
            inodes.append(None)  # between a rename and the new file: look again next time
    if log is None or os.fstat(log.fileno()).st_ino not in inodes:
        following = names  # the start, or we were so slow that ours has been dropped: the oldest there is
    else:
        following = names[inodes.index(os.fstat(log.fileno()).st_ino) + 1:]
    for name in following:
        try:
            return open(name, "rb")
        except FileNotFoundError:
            continue
    return None


def parse_tail(value: str) -> int | None:
    """docker logs --tail: a number of lines, or "all"."""
    if value == "all":
        return None
    if not value.isdigit():
        raise PyrunError("invalid --tail", f"{value!r}: expected a number of lines, or all")
    return int(value)


def _tail(names: list[str], lines: int):
    """The log file (open, at the right offset) where the last LINES lines of the files NAMES (oldest first)
    begin: from the newest back, as many files as it takes."""
    for i in range(len(names) - 1, -1, -1):
        try:
            log = open(names[i], "rb")
        except FileNotFoundError:
            continue
        offset, missing = _last_lines(log, lines, continued=i < len(names) - 1)
        if not missing or i == 0:
            log.seek(offset)
            return log
        log.close()
        lines = missing
    return None


def _last_lines(log, lines: int, continued: bool = False) -> tuple[int, int]:
    """Where the last LINES lines of LOG begin, and how many lines short of LINES the file is: read from the
    end backwards, not the whole file. A last line that has no newline yet counts as a line, unless LOG is
    CONTINUED in a later file (rotation cuts where a write ended, not at a line): that line was counted there."""
    end = log.seek(0, os.SEEK_END)
    if lines == 0:
        return end, 0
    if end == 0:
        return end, lines
    log.seek(end - 1)
    newlines = lines + (continued or log.read(1) == b"\n")  # the newline that ends the last line begins no line
    pos = end
    while pos > 0:
        start = max(0, pos - 65536)
        log.seek(start)
        block = log.read(pos - start)
        i = len(block)
        while (i := block.rfind(b"\n", 0, i)) != -1:
            newlines -= 1
            if newlines == 0:
                return start + i + 1, 0
        pos = start
    return 0, newlines - 1  # the file's start begins a line too


def _still_there(root: str, record: Record) -> bool:
    """Is the container still being set up, running, or being torn down by a live monitor?"""
    return _status_now(root, record) in ("created", "running", "stopping")


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


def kill(root: str, ref: str, sig: signal.Signals = signal.SIGKILL) -> Record:
    """Send SIG to the running container REF's PID 1."""
    record = running(root, ref, "kill")
    _signal(record.init, sig)
    return record


def _signal(process: dict | None, sig: signal.Signals) -> None:
    """Send SIG to PROCESS (a record's PID 1 or its monitor) if it is still that process; if it has exited
    meanwhile, do nothing."""
    if not process:
        return
    # pidfd_open pins the process: if it died after the check below, the signal cannot reach a newcomer.
    try:
        pidfd = os.pidfd_open(process["Pid"])
    except ProcessLookupError:
        return
    try:
        if state.alive(process):
            signal.pidfd_send_signal(pidfd, sig)
    except ProcessLookupError:
        pass
    finally:
        os.close(pidfd)


def wait_gone(root: str, record: Record, timeout: float) -> bool:
    """Wait until the container's monitor has finished its teardown; False if TIMEOUT passed first."""
    return _wait(lambda: not _still_there(root, record), timeout)


def _wait(done, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if done():
            return True
        time.sleep(0.02)
    return False


def stop(root: str, ref: str, timeout: float | None = None) -> None:
    """SIGTERM, then SIGKILL after TIMEOUT seconds (default: its --stop-timeout), as `docker stop` does;
    returns once torn down.

    Stopping a container that is not running is not an error: it may have exited a moment ago.
    """
    record = find(root, ref)
    if timeout is None:
        timeout = record.stop_timeout
    if record.status() == "created":
        _abort_setup(root, record, timeout)
        record = _current(root, record)
    if not record or record.status() != "running":
        return
    _signal(record.init, signal.SIGTERM)  # it may exit on its own meanwhile: no error then
    if not wait_gone(root, record, timeout):
        _signal(record.init, signal.SIGKILL)
        wait_gone(root, record, 30)


def _abort_setup(root: str, record: Record, timeout: float) -> None:
    """Stop the pyrun that is still setting the container up.

    SIGTERM makes it undo what it has done and remove the container (signals.abort_on_signals). One that
    has not ended within TIMEOUT is killed, and its journal undone here, as any dead pyrun's is. If the
    command has started meanwhile, the container is running now, and the caller goes on to stop it."""
    _signal(record.monitor, signal.SIGTERM)
    if not _wait(lambda: _status_now(root, record) != "created", timeout):
        _signal((_current(root, record) or record).monitor, signal.SIGKILL)
        _wait(lambda: _status_now(root, record) != "created", 1)
    if _status_now(root, record) == "dead":
        from runtime import container

        container.reconcile(root)


def _current(root: str, record: Record) -> Record | None:
    """The record as it is now; None once the container is gone."""
    try:
        return Record.load(root, record.id)
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _status_now(root: str, record: Record) -> str | None:
    now = _current(root, record)
    return now.status() if now else None


def rm(root: str, ref: str, force: bool = False) -> None:
    """Remove a container that is not running; with FORCE, kill it first."""
    from runtime import container

    record = find(root, ref)
    now = record.status()
    if now in ("running", "created", "stopping"):
        if not force:
            raise PyrunError("rm", f"container {record.name} is {now}: stop it first, or use 'pyrun rm -f'")
        if now == "created":
            _abort_setup(root, record, 2)
        _signal((_current(root, record) or record).init, signal.SIGKILL)  # its command may have started meanwhile
        if not wait_gone(root, record, 30):
            raise PyrunError("rm", f"container {record.name} did not stop within 30 s")
    if os.path.isdir(state.container_dir(root, record.id)):
        container.remove(root, record)


def exec_in(root: str, ref: str, command: list[str], env: list[tuple[str, str]], workdir: str | None,
            interactive: bool, tty: bool, user: str | None = None) -> int:
    """Run COMMAND in the running container REF: its namespaces, cgroup, capabilities and no_new_privs, as
    USER (default: the container's -u)."""
    from dataclasses import replace

    from runtime import process, signals

    record = running(root, ref, "exec")
    base = record.spec()
    spec = replace(base, command=tuple(command), env=base.env + tuple(env), workdir=workdir or base.workdir,
                   interactive=interactive, tty=tty, init=False, user=user or base.user)
    signals.abort_on_signals()
    proc = process.spawn(spec, [], spec.hostname, join=record.pid)  # born in PID 1's cgroups (init._join)
    try:
        proc.go()
        return proc.wait()
    finally:
        if proc.status is None:
            proc.kill()
            proc.reap()


def docker_row(record: Record) -> dict:
    """A container as `docker ps --format` names its fields (.ID, .Names, .Status, ...)."""
    now = record.status()
    shown = {"running": f"Up {_ago(record.started_at).removesuffix(' ago')}",
             "exited": f"Exited ({record.exit_code}) {_ago(record.finished_at)}"}.get(now, now.capitalize())
    return {"ID": record.id[:12], "Names": record.name, "Image": record.image,
            "Command": json.dumps(" ".join(record.command)), "CreatedAt": record.created,
            "RunningFor": _ago(record.created), "Ports": ", ".join(record.published()),
            "Status": shown, "State": now, "Networks": record.network, "Mounts": ",".join(record.binds)}


PS_HEADERS = {"ID": "CONTAINER ID", "Names": "NAMES", "Image": "IMAGE", "Command": "COMMAND",
              "CreatedAt": "CREATED AT", "RunningFor": "CREATED"}


def wait(root: str, ref: str) -> int:
    """Block until the container REF has exited; return its exit code, as `docker wait` prints it.

    A --rm container's record is gone as soon as it has exited, so the code is read from the file
    finish() writes it to before removing anything: opened here first, it stays readable once unlinked."""
    from runtime import container

    record = find(root, ref)
    try:
        code = os.open(os.path.join(state.container_dir(root, record.id), container.EXIT_CODE),
                       os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except FileNotFoundError:  # removed since find()
        code = None
    try:
        while True:
            try:
                record = Record.load(root, record.id)
            except (FileNotFoundError, json.JSONDecodeError):
                break
            if record.status() in ("exited", "dead"):
                break
            time.sleep(0.01)
        said = os.pread(code, 16, 0).decode().strip() if code is not None else ""
    finally:
        if code is not None:
            os.close(code)
    if said.lstrip("-").isdigit():
        return int(said)
    return record.exit_code if record.status() == "exited" else -1  # dead: nobody saw it end


def port(record: Record, private: str | None = None) -> list[str]:
    """`docker port`: every mapping as '8000/tcp -> 0.0.0.0:8088', or PRIVATE's host addresses."""
    if private is None:
        return [f"{p} -> {ip}:{host_port}" for p, ip, host_port in record.bindings()]
    key = private if "/" in private else f"{private}/tcp"
    found = [f"{ip}:{host_port}" for p, ip, host_port in record.bindings() if p == key]
    if not found:
        raise PyrunError("port", f"no public port '{key}' published for {record.name}")
    return found


def pids(record: Record) -> list[int]:
    """The host pids of every process in the container: those in its PID 1's PID namespace."""
    pid = record.pid
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
