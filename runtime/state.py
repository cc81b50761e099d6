"""The state directory: what pyrun remembers about containers between commands.

Layout under the state root (--root, PYRUN_ROOT, default /run/pyrun):

    lock                      flock(2)ed while names or addresses are handed out
    containers/ID/state.json  the container's record, replaced atomically (its shape: record.py)
    containers/ID/journal     host-side steps taken, for teardown (steps.py)
    containers/ID/...         writable layer, /etc files, log

Address leases are not here but host-wide, in /run/pyrun-net (network/host.py).

The state is root's alone: the root and every directory pyrun makes in it
are 0700, its files 0600, whatever umask pyrun was started with. Records hold
the -e values (secrets), and a container's writable layer holds whatever the
container put there, setuid-root binaries and device nodes among them.

Writes go to a temporary file that is renamed over the old one, so a reader
(or a crash) sees the old record or the new one, never half of each.

A record's word is checked against the kernel before it is believed: the
processes it names ({"Pid", "StartTime"}) must still exist with the same
start time, or they have died and the pid may have been reused.

The detached container's monitor imports this module, so it stays light:
no tempfile, no secrets (each would pull in hashlib and OpenSSL).
"""
import contextlib
import fcntl
import json
import os
import stat

from runtime.errors import PyrunError

DEFAULT_ROOT = "/run/pyrun"


def state_root(option: str | None = None) -> str:
    return os.path.abspath(option or os.environ.get("PYRUN_ROOT") or DEFAULT_ROOT)


def ensure_root(root: str) -> None:
    """Make ROOT ready for this pyrun process, and everything it creates from now on private to root."""
    os.umask(0o077)  # the container's processes get Docker's 0022 back (init.py)
    try:
        _check_path(_existing(os.path.dirname(os.path.abspath(root))))  # before anything is made in it
        os.makedirs(root, 0o700, exist_ok=True)
        _check_path(root, itself=True)
        if not os.access(root, os.W_OK):  # root may write anywhere, but not on a read-only mount
            raise PermissionError(30, "Read-only file system")
        os.makedirs(os.path.join(root, "containers"), 0o700, exist_ok=True)
        _check_path(os.path.join(root, "containers"), itself=True)
        for path in (root, os.path.join(root, "containers")):
            os.chmod(path, 0o700)  # also when an earlier pyrun, or an admin, made it looser
    except OSError as e:
        raise PyrunError("invalid --root", f"{root!r}: {e.strerror}; expected a writable directory "
                                           "owned by root, in directories no other user may change") from None


def _check_path(path: str, itself: bool = False) -> None:
    """PATH, and every directory and link on the way to it, are ours (or root's) and no one else may replace
    them: the state's owner could swap what pyrun writes (records, journals, whose undo pyrun runs as root) for
    links to anywhere. A directory others may write to is no way to it either, unless it is sticky, as /tmp
    (others may not rename or remove what is not theirs), and then not as the state directory ITSELF, where
    they may have planted a `containers` of their own; and a symlink of theirs there (`--root /tmp/x`, x
    their link to /etc) would have pyrun chmod 0700 whatever it points to."""
    me = os.geteuid()
    given = os.path.abspath(path)
    for prefix in [given, *_ancestors(given)]:  # the path as given: a link on it is followed by every later lookup
        st = os.lstat(prefix)
        if stat.S_ISLNK(st.st_mode) and st.st_uid not in (0, me):
            raise PermissionError(1, f"{prefix} is a symlink owned by uid {st.st_uid}")
    real = os.path.realpath(given)
    for prefix in [real, *_ancestors(real)]:
        st = os.stat(prefix)
        if st.st_uid not in (0, me):
            raise PermissionError(1, f"{prefix} is owned by uid {st.st_uid}")
        if st.st_mode & 0o022 and (itself and prefix == real or not st.st_mode & stat.S_ISVTX):
            raise PermissionError(1, f"{prefix} may be written by other users (mode {stat.filemode(st.st_mode)})")


def _existing(path: str) -> str:
    """PATH, or its nearest ancestor that exists (makedirs makes the rest, ours)."""
    while not os.path.lexists(path):
        path = os.path.dirname(path)
    return path


def _ancestors(path: str) -> list[str]:
    out = []
    while path != os.path.dirname(path):
        path = os.path.dirname(path)
        out.append(path)
    return out


_HELD: set[tuple[int, str]] = set()


@contextlib.contextmanager
def locked(root: str):
    """Serialise every pyrun process that hands out names or addresses under ROOT.

    A process that holds the lock already goes on: a step's undo that takes it (dns.HostsEntry) also runs
    from `pyrun rm` and `prune`, which hold it around the whole journal. (A second flock on a new open
    file would wait for the first, in the same process, for ever.)"""
    held = (os.getpid(), root)
    if held in _HELD:
        yield
        return
    fd = os.open(os.path.join(root, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        _HELD.add(held)
        yield
    finally:
        _HELD.discard(held)
        os.close(fd)


def write_json(path: str, data: dict) -> None:
    tmp = os.path.join(os.path.dirname(path), f".tmp-{os.getpid()}-{os.path.basename(path)}")
    try:
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600), "w") as f:
            json.dump(data, f, indent=1)
        os.replace(tmp, path)
    except OSError as e:  # a full state root, most likely: say so in one line, and leave no half-written file
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise PyrunError("state", f"cannot write {path}: {e.strerror}") from None


def read_json(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def container_dir(root: str, cid: str) -> str:
    return os.path.join(root, "containers", cid)


def record_path(root: str, cid: str) -> str:
    """Where container CID's record lives: containers/ID/state.json."""
    return os.path.join(container_dir(root, cid), "state.json")


def journal_path(root: str, cid: str) -> str:
    """Where container CID's journal of host-side steps lives (steps.Journal): containers/ID/journal."""
    return os.path.join(container_dir(root, cid), "journal")


def all_records(root: str) -> list[dict]:
    records = []
    base = os.path.join(root, "containers")
    for cid in sorted(os.listdir(base)) if os.path.isdir(base) else []:
        try:
            records.append(read_json(record_path(root, cid)))
        except (FileNotFoundError, json.JSONDecodeError):
            continue  # a container being created or removed right now
    return records


def _stat(pid: int) -> list[str]:
    """/proc/PID/stat's fields after the command name (which may hold spaces and parentheses): state first."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return []


def start_time(pid: int) -> int | None:
    """When PID started, in clock ticks since boot: with the pid, it names one process for good."""
    try:
        return int(_stat(pid)[19])
    except (IndexError, ValueError):
        return None


def alive(process: dict | None) -> bool:
    """Is {"Pid", "StartTime"} still the same running process? A reused pid does not count, nor a zombie
    (dead, waiting for a parent that may never reap it) or a process being reaped right now."""
    if not process:
        return False
    fields = _stat(process["Pid"])
    return len(fields) > 19 and fields[0] not in ("Z", "X") and fields[19] == str(process["StartTime"])


def me() -> dict:
    return {"Pid": os.getpid(), "StartTime": start_time(os.getpid())}
