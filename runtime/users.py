"""-u/--user: who the command runs as, looked up as Docker (runc's libcontainer/user) does.

USER[:GROUP], each a name or a number. Names are looked up in the
container's own /etc/passwd and /etc/group, never the host's: the lookup
runs in the container's process, after pivot_root (or setns for exec),
and opens the files with openat2(RESOLVE_IN_ROOT): a rootfs whose
/etc/passwd is a symlink, a FIFO or /proc/self/fd/N reads nothing of the
host's and cannot block pyrun.

    USER given as  uid                       gid                     groups (setgroups)
    name           its passwd entry's        its passwd entry's      gid + the /etc/group lists naming it
    number         the number                its passwd entry's, or 0 gid + the lists naming its entry
    USER:GROUP     as above                  GROUP (name or number)  gid alone

HOME is the passwd entry's home directory ("/" without one), unless -e sets it.
A user that is not root keeps no capabilities: setuid(2) from 0 clears the
permitted and effective sets, and execve(2) of a file without file capabilities
gives none back, while the bounding set stays (Docker: CapEff 0, CapBnd its 14).
"""
import os
import re
import stat
from dataclasses import dataclass

from runtime.errors import PyrunError
from runtime.syscalls import open_in_root

_PART = r"[^:\s]+"
_MAX_ID = (1 << 32) - 2  # (uid_t)-1 means "unchanged" to setresuid(2)
_MAX_FILE = 4 << 20      # a passwd file larger than this is a container's attack, not a user database


@dataclass(frozen=True)
class Identity:
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str


def parse(value: str) -> str:
    """Check -u's syntax (names are looked up in the container, at its start)."""
    if not re.fullmatch(f"{_PART}(:{_PART})?", value) or any(p.isdigit() and int(p) > _MAX_ID
                                                             for p in value.split(":")):
        raise PyrunError("invalid --user", f"{value!r}: expected USER[:GROUP], each a name or a number from 0 "
                                           f"to {_MAX_ID} (e.g. 1000:1000 or nobody)")
    return value


def resolve(value: str, root: int | None = None) -> Identity:
    """The identity -u VALUE names, in the container whose root is this process's root, or the directory ROOT
    (an fd: `pyrun run --print-spec` looks it up in the rootfs from the host)."""
    user, _, group = value.partition(":")
    here = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC) if root is None else root
    try:
        passwd, groups = _entries(here, "/etc/passwd"), _entries(here, "/etc/group")
    finally:
        if root is None:
            os.close(here)
    entry = next((e for e in passwd if len(e) >= 7 and (e[2] == user if user.isdigit() else e[0] == user)), None)
    if entry is None and not user.isdigit():
        raise PyrunError("user", f"unable to find user {user}: no matching entries in passwd file")
    uid, gid, home = (int(entry[2]), _number(entry[3]), entry[5]) if entry else (int(user), 0, "/")
    if group:
        match = next((g for g in groups if len(g) >= 3 and (g[2] == group if group.isdigit() else g[0] == group)),
                     None)
        if match is None and not group.isdigit():
            raise PyrunError("user", f"unable to find group {group}: no matching entries in group file")
        gid = _number(match[2]) if match else int(group)
        extra = []
    else:
        name = entry[0] if entry else None
        extra = [_number(g[2]) for g in groups if len(g) >= 4 and name and name in g[3].split(",")]
    return Identity(uid, gid, tuple(dict.fromkeys([gid, *extra])), home or "/")


def _number(text: str) -> int:
    if not text.isdigit() or int(text) > _MAX_ID:
        raise PyrunError("user", f"{text!r} in the container's user database is not a uid or gid")
    return int(text)


def _entries(root: int, path: str) -> list[list[str]]:
    """The colon-separated lines of PATH in the container; none if it is missing or not a regular file."""
    try:
        fd = open_in_root(root, path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return []  # runc too treats a missing file as empty: numbers still work
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return []
        data = os.read(fd, _MAX_FILE)
    finally:
        os.close(fd)
    return [line.split(":") for line in data.decode(errors="replace").splitlines()
            if line and not line.startswith("#")]


def become(who: Identity) -> None:
    """Take WHO's groups, gid and uid, in that order: setgid needs the uid still 0, setgroups too."""
    os.setgroups(list(who.groups))
    os.setresgid(who.gid, who.gid, who.gid)
    os.setresuid(who.uid, who.uid, who.uid)
