"""config.md's process: what the container's program runs as, read from config.json.

    args, env, cwd           the execve(2) and the chdir(2) PID 1 ends with
    user                     setgroups(2), setgid, setuid; umask(2)
    capabilities             capabilities(7): the five sets, by name (CAP_NET_ADMIN)
    rlimits                  setrlimit(2): soft at most hard
    noNewPrivileges          PR_SET_NO_NEW_PRIVS: no execve gains a privilege again
    oomScoreAdj              /proc/PID/oom_score_adj
    terminal, consoleSize    a pty, sent to the engine's console socket

`create` reads the container's process here (config.load), `exec` a second
one (exec_process): the --process JSON, or the container's own changed by
exec's flags, as runc builds it.
"""
import os
import resource
from dataclasses import dataclass, field

from runtime.errors import PyrunError
from runtime.oci.config_check import bad, expect, refuse, within
from runtime.security import ALL_CAPS

# Docker's and runc's PATH for a process whose environment names none.
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
RLIMITS = {name: getattr(resource, name) for name in dir(resource) if name.startswith("RLIMIT_")}
# What a --process file leaves out comes from the container's own process, as runc fills it in.
INHERITED = ("capabilities", "noNewPrivileges", "rlimits", "oomScoreAdj", "apparmorProfile", "selinuxLabel")
# The ranges the kernel takes. An id is a uint32 in the spec's Go types, but (uid_t)-1 means "leave it unchanged"
# to setresuid(2): a uid of 4294967295 would run the program as root.
ID = (0, (1 << 32) - 2, "an id from 0 to 4294967294")
UMASK = (0, 0o777, "a mode mask from 0 to 511 (0o777); umask(2) drops other bits")
OOM_SCORE_ADJ = (-1000, 1000, "a number from -1000 to 1000 (proc(5)'s oom_score_adj)")
CONSOLE = (0, 0xFFFF, "a number of characters from 0 to 65535 (struct winsize)")
RLIMIT = (0, (1 << 64) - 1, "a number from 0 to 18446744073709551615 (RLIM_INFINITY, unlimited)")  # uint64


@dataclass(frozen=True)
class Capabilities:
    bounding: frozenset[str] = frozenset()
    effective: frozenset[str] = frozenset()
    permitted: frozenset[str] = frozenset()
    inheritable: frozenset[str] = frozenset()
    ambient: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Process:
    args: tuple[str, ...]
    env: tuple[str, ...]
    cwd: str
    uid: int = 0
    gid: int = 0
    additional_gids: tuple[int, ...] = ()
    umask: int | None = None
    terminal: bool = False
    console_size: tuple[int, int] | None = None   # (height, width)
    caps: Capabilities = field(default_factory=Capabilities)
    rlimits: tuple[tuple[str, int, int], ...] = ()  # (RLIMIT_NAME, soft, hard)
    no_new_privileges: bool = False
    oom_score_adj: int | None = None

    def path(self) -> str:
        """The PATH the executable is looked up in: the config's own, or the usual one (as runc does)."""
        for entry in self.env:
            if entry.startswith("PATH="):
                return entry[5:]
        return DEFAULT_PATH


def read(p: dict) -> Process:
    """A config.md process object checked into a Process, or PyrunError naming the field."""
    args = expect(p.get("args"), list, "process.args", "a list of strings, the command")
    if not args or not all(isinstance(a, str) for a in args):
        raise bad("process.args", "expected a non-empty list of strings, the command and its arguments")
    env = expect(p.get("env"), list, "process.env", "a list of NAME=VALUE strings", [])
    for entry in env:
        if not isinstance(entry, str) or "=" not in entry:
            raise bad("process.env", f"{entry!r}: expected NAME=VALUE")
    cwd = expect(p.get("cwd"), str, "process.cwd", "an absolute path")
    if not cwd.startswith("/"):
        raise bad("process.cwd", f"{cwd!r}: expected an absolute path")
    refuse(p, "process", ("apparmorProfile",) if _lsm_enabled("apparmor") else (), "pyrun loads no AppArmor profile")
    refuse(p, "process", ("selinuxLabel",) if _lsm_enabled("selinux") else (), "pyrun sets no SELinux label")
    refuse(p, "process", ("ioPriority", "scheduler", "execCPUAffinity"), "pyrun does not set it yet")
    user = expect(p.get("user"), dict, "process.user", "an object with uid and gid", {})
    ids = [within(user.get(k), f"process.user.{k}", *ID, default=0) for k in ("uid", "gid")]
    gids = expect(user.get("additionalGids"), list, "process.user.additionalGids", "a list of numbers", [])
    size = expect(p.get("consoleSize"), dict, "process.consoleSize", "an object with height and width", {})
    return Process(
        args=tuple(args), env=tuple(env), cwd=os.path.normpath(cwd), uid=ids[0], gid=ids[1],
        additional_gids=tuple(within(g, f"process.user.additionalGids[{i}]", *ID) for i, g in enumerate(gids)),
        umask=within(user.get("umask"), "process.user.umask", *UMASK, default=None),
        terminal=expect(p.get("terminal"), bool, "process.terminal", "true or false", False),
        console_size=tuple(within(size.get(k), f"process.consoleSize.{k}", *CONSOLE, default=0)
                           for k in ("height", "width")) if size else None,
        caps=_capabilities(p.get("capabilities")), rlimits=_rlimits(p.get("rlimits")),
        no_new_privileges=expect(p.get("noNewPrivileges"), bool, "process.noNewPrivileges", "true or false", False),
        oom_score_adj=within(p.get("oomScoreAdj"), "process.oomScoreAdj", *OOM_SCORE_ADJ, default=None))


def _lsm_enabled(name: str) -> bool:
    """Is the security module NAME on? Where it is off, runc ignores its field, and so does pyrun."""
    try:
        with open("/sys/kernel/security/lsm") as f:
            return name in f.read().split(",")
    except OSError:
        return False


def _capabilities(caps) -> Capabilities:
    caps = expect(caps, dict, "process.capabilities", "an object of the five sets, such as bounding", {})
    sets = {}
    for name in ("bounding", "effective", "permitted", "inheritable", "ambient"):
        names = set()
        for value in expect(caps.get(name), list, f"process.capabilities.{name}", "a list of names", []):
            short = value.removeprefix("CAP_") if isinstance(value, str) and value.startswith("CAP_") else None
            if short not in ALL_CAPS:
                raise bad(f"process.capabilities.{name}", f"{value!r} is not a capability; expected a name such "
                                                          "as CAP_NET_ADMIN")
            names.add(short)
        sets[name] = frozenset(names)
    return Capabilities(**sets)


def _rlimits(rlimits) -> tuple:
    out = []
    for i, r in enumerate(expect(rlimits, list, "process.rlimits", "a list of limits", [])):
        where = f"process.rlimits[{i}]"
        r = expect(r, dict, where, "an object with type, soft and hard")
        kind = expect(r.get("type"), str, f"{where}.type", "a limit's name, such as RLIMIT_NOFILE")
        if kind not in RLIMITS:
            raise bad(f"{where}.type", f"{kind!r} is not a limit; expected one of {', '.join(sorted(RLIMITS))}")
        if any(kind == other for other, _, _ in out):  # which one would win is the order of setrlimit calls
            raise bad(f"{where}.type", f"{kind!r} is listed twice; expected each limit once (the spec says so)")
        soft, hard = (within(r.get(k), f"{where}.{k}", *RLIMIT) for k in ("soft", "hard"))
        if soft > hard:
            raise bad(where, f"soft limit {soft} is above the hard limit {hard}")
        out.append((kind, soft, hard))
    return tuple(out)


def exec_process(config: dict, given: dict | None, args: list[str], tty: bool, cwd: str | None, env: list[str],
                 user: str | None, caps: list[str], no_new_privs: bool) -> Process:
    """`exec`'s process: the --process JSON (config.md's process object), or the container's own process with
    ARGS and the flags, as runc builds it; checked as create checks the container's."""
    if given is not None:
        p = {**{k: config["process"][k] for k in INHERITED if k in config["process"]},
             **expect(given, dict, "--process", "a process object")}
    else:
        p = {**config["process"], "args": args, "terminal": tty}
        p.pop("consoleSize", None)
        p["env"] = [*(p.get("env") or []), *env]
        if cwd:
            p["cwd"] = cwd
        if user:
            uid, _, gid = user.partition(":")
            if not uid.isdigit() or not (gid.isdigit() or not gid):
                raise PyrunError("invalid --user", f"{user!r}: expected UID[:GID], numbers")
            p["user"] = {"uid": int(uid), "gid": int(gid or 0)}
        if caps:
            sets = {**(p.get("capabilities") or {})}
            for name in ("bounding", "effective", "permitted"):
                sets[name] = sorted({*(sets.get(name) or []), *caps})
            p["capabilities"] = sets
        if no_new_privs:
            p["noNewPrivileges"] = True
    return read(p)
