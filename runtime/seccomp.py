"""seccomp: which system calls a container may make at all.

A seccomp filter is a small BPF program the kernel runs on every system call
of a process and of everything it execs; it cannot be removed, only made
stricter. Capabilities decide what a permitted call may touch; seccomp takes
away calls that no container needs and that have been the way out of many:
the kernel keyring is not namespaced (keyctl), open_by_handle_at opened host
files by inode (CVE-2014-3519, "shocker"), userfaultfd and bpf serve kernel
exploits, and unshare or mount inside a container reach kernel code written
for root on the host.

Profiles are in Docker's JSON format ("defaultAction", and "syscalls" rules
with "names", "action", "args", "includes"/"excludes" by capability), so
`--security-opt seccomp=PROFILE.json` takes Docker's own profiles. A profile
is loaded exactly as it reads or refused (load_profile): a rule that was
quietly dropped would allow what it was written to forbid. pyrun's
default has the same effect as Docker's: an allowlist of every system call
libseccomp knows for this architecture except those in REFUSED, some allowed
only with the capability that makes them harmless (GATED), and argument
checks for clone (no new namespaces), socket (no AF_VSOCK) and personality.
Everything else fails with EPERM. The filter is loaded by the container's
own process just before execve(2), after no_new_privs, which it requires.
"""
import errno
import json
import os
import platform
import re

import ctypes.util

# pyseccomp loads libseccomp as it is imported, which matters twice. It must happen before the fork,
# as the container's init has pivoted away from the host's libraries by the time it loads a filter;
# and find_library runs `ldconfig -p` per library (~15 ms each): the sonames are fixed, so name them.
_find_library = ctypes.util.find_library
ctypes.util.find_library = lambda name: {"c": "libc.so.6", "seccomp": "libseccomp.so.2"}.get(name) \
    or _find_library(name)
try:
    import pyseccomp
finally:
    ctypes.util.find_library = _find_library

from runtime.errors import PyrunError
from runtime.security import ALL_CAPS

REFUSED = {
    "keyctl", "add_key", "request_key",            # the kernel keyring is shared with the host
    "userfaultfd",                                   # stalls the kernel mid-copy: a staple of exploits
    "kexec_load", "kexec_file_load", "reboot",       # replace or stop the host's kernel
    "open_by_handle_at", "name_to_handle_at",        # open host files by handle (CVE-2014-3519)
    "bpf", "perf_event_open",                        # large kernel attack surface, host-wide data
    "init_module", "finit_module", "delete_module", "create_module", "query_module", "get_kernel_syms",
    "acct", "swapon", "swapoff", "iopl", "ioperm", "uselib", "ustat", "sysfs", "_sysctl", "nfsservctl",
    "vm86", "vm86old", "io_uring_setup", "io_uring_enter", "io_uring_register",
}
GATED = {  # allowed only when the container keeps the capability
    "CAP_SYS_ADMIN": {"unshare", "setns", "mount", "umount", "umount2", "pivot_root", "mount_setattr",
                      "move_mount", "open_tree", "fsopen", "fsconfig", "fsmount", "fspick", "quotactl",
                      "fanotify_init", "lookup_dcookie"},
    "CAP_SYS_TIME": {"settimeofday", "stime", "clock_settime", "clock_adjtime", "adjtimex"},
    "CAP_SYS_PTRACE": {"process_vm_readv", "process_vm_writev", "kcmp"},
    "CAP_SYS_NICE": {"mbind", "set_mempolicy", "get_mempolicy", "move_pages", "migrate_pages"},
    "CAP_SYSLOG": {"syslog"},
    "CAP_SYS_CHROOT": {"chroot"},
    "CAP_SYS_BOOT": set(),
}
NAMESPACE_FLAGS = 0x7E020000  # CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET
AF_VSOCK = 40
PERSONALITIES = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)  # Linux, UNAME26 and queries: not ADDR_NO_RANDOMIZE
ACTIONS = {"SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD",
           "SCMP_ACT_TRAP", "SCMP_ACT_LOG", "SCMP_ACT_TRACE"}
OPERATORS = {"SCMP_CMP_EQ", "SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_GT", "SCMP_CMP_GE",
             "SCMP_CMP_MASKED_EQ"}
_SPECIAL = {"clone", "clone3", "socket", "personality"}
NOT_A_SYSCALL = -1  # libseccomp's __NR_SCMP_ERROR: what resolving an unknown name gives


def known_syscalls() -> list[str]:
    """Every system call libseccomp can name on this architecture."""
    names = []
    for number in range(1024):
        try:
            names.append(pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, number).decode())
        except Exception:  # a gap in the table
            continue
    return names


def default_profile() -> dict:
    gated = set().union(*GATED.values())
    plain = sorted(set(known_syscalls()) - REFUSED - gated - _SPECIAL)

    def arg(value: int, op: str, two: int = 0, index: int = 0) -> dict:
        return {"index": index, "value": value, "valueTwo": two, "op": op}

    return {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": errno.EPERM, "syscalls": [
        {"names": plain, "action": "SCMP_ACT_ALLOW"},
        *[{"names": sorted(names), "action": "SCMP_ACT_ALLOW", "includes": {"caps": [cap]}}
          for cap, names in GATED.items() if names],
        {"names": ["clone"], "action": "SCMP_ACT_ALLOW", "args": [arg(NAMESPACE_FLAGS, "SCMP_CMP_MASKED_EQ", 0)],
         "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
        {"names": ["clone", "clone3"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
        # clone3 passes its flags in memory, where a filter cannot look: ENOSYS makes libc fall back to clone.
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOSYS,
         "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
        {"names": ["socket"], "action": "SCMP_ACT_ALLOW", "args": [arg(AF_VSOCK, "SCMP_CMP_NE")]},
        *[{"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [arg(p, "SCMP_CMP_EQ")]}
          for p in PERSONALITIES],
    ]}


def parse_option(value: str) -> str | None:
    """--security-opt: seccomp=unconfined, seccomp=default or seccomp=PATH; None for no-new-privileges, which
    is always on and leaves seccomp as it is."""
    key, _, setting = value.partition("=")
    if value in ("no-new-privileges", "no-new-privileges:true", "no-new-privileges=true"):
        return None
    if key != "seccomp" or not setting:
        raise PyrunError("invalid --security-opt", f"{value!r}: expected seccomp=unconfined, seccomp=PROFILE.json "
                                                   "or no-new-privileges")
    return setting if setting in ("unconfined", "default") else os.path.abspath(setting)


# Docker's profile format, field by field. A field pyrun does not know is refused, never ignored: a typo such as
# "syscall" for "syscalls", or "include" for "includes", would otherwise drop rules without a word.
PROFILE_FIELDS = {"defaultAction", "defaultErrnoRet", "architectures", "archMap", "syscalls", "flags",
                  "listenerPath", "listenerMetadata"}
RULE_FIELDS = {"name", "names", "action", "errnoRet", "args", "comment", "includes", "excludes"}
FILTER_FIELDS = {"caps", "arches", "minKernel"}
ARG_FIELDS = {"index", "value", "valueTwo", "op"}
ARCHES = {"amd64", "arm64", "x86", "x32", "arm", "mips", "mipsle", "mips64", "mips64le", "mips64n32",
          "mips64len32", "ppc", "ppc64", "ppc64le", "s390", "s390x", "riscv64", "loong64"}
SCMP_ARCHES = tuple(f"SCMP_ARCH_{a}" for a in (
    "X86", "X86_64", "X32", "ARM", "AARCH64", "MIPS", "MIPS64", "MIPS64N32", "MIPSEL", "MIPSEL64", "MIPSEL64N32", "PPC",
    "PPC64", "PPC64LE", "S390", "S390X", "PARISC", "PARISC64", "RISCV64", "LOONGARCH64", "M68K", "SH", "SHEB"))
MAX_ERRNO = 4095     # the kernel turns larger SECCOMP_RET_ERRNO data into 4095
MAX_ARGS = 6         # a system call has six argument registers
U64 = (1 << 64) - 1  # a comparison's value is one register's worth
_SYSCALL = re.compile(r"[a-z_][a-z0-9_]*")


class ProfileError(PyrunError):
    def __init__(self, path: str, where: str, why: str):
        super().__init__("invalid --security-opt", f"seccomp={path}: {where}: {why}")


def load_profile(path: str) -> dict:
    """The profile at PATH, checked field by field against Docker's format.

    Every part that pyrun could not load exactly as written is an error naming the rule and the field, so
    that a profile is never weaker than it reads. One thing is skipped on purpose, as Docker does: a
    system call name libseccomp does not know (a newer call, or another architecture's), so that one
    profile serves every kernel; build() leaves it out of the filter."""
    try:
        with open(path) as f:
            profile = json.load(f)
    except OSError as e:
        raise ProfileError(path, "cannot read it", e.strerror) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ProfileError(path, "not JSON", getattr(e, "msg", str(e))) from None
    return _checked(profile, lambda where, why: ProfileError(path, where, why))


def check_profile(profile, where: str) -> dict:
    """A profile given as JSON rather than a file (an OCI config.json's linux.seccomp), checked as load_profile
    checks one; WHERE names it in the errors."""
    return _checked(profile, lambda field, why: PyrunError(where, f"{field}: {why}"))


def _checked(profile, bad) -> dict:
    if not isinstance(profile, dict):
        raise bad("the profile", f"expected a JSON object in Docker's format, got {_shown(profile)}")
    _known_fields(profile, PROFILE_FIELDS, "the profile", bad)
    if not _one_of(profile.get("defaultAction"), ACTIONS):
        raise bad("defaultAction", f"expected one of {', '.join(sorted(ACTIONS))}, "
                                   f"got {_shown(profile.get('defaultAction'))}")
    _errno(profile, "defaultAction", "defaultErrnoRet", "defaultErrnoRet", bad)
    if profile.get("listenerPath") or profile.get("flags"):
        field = "listenerPath" if profile.get("listenerPath") else "flags"
        raise bad(field, "pyrun has no seccomp agent and sets no filter flags; leave it out")
    _architectures(profile.get("architectures"), "architectures", bad)
    if profile.get("archMap") is not None and not isinstance(profile["archMap"], list):
        raise bad("archMap", f"expected a list, got {_shown(profile['archMap'])}")
    for i, entry in enumerate(profile.get("archMap") or []):  # pyrun run's config.json takes this machine's
        if not isinstance(entry, dict):
            raise bad(f"archMap[{i}]", f"expected an object with architecture, subArchitectures; got {_shown(entry)}")
        _architectures([entry.get("architecture")], f"archMap[{i}] architecture", bad)
        _architectures(entry.get("subArchitectures"), f"archMap[{i}] subArchitectures", bad)
    rules = profile.get("syscalls")
    rules = [] if rules is None else rules  # null is unset; false or {} is no list of rules
    if not isinstance(rules, list):
        raise bad("syscalls", f"expected a list of rules, got {_shown(rules)}")
    return {**profile, "syscalls": [_rule(rule, f"syscalls[{i}]", bad) for i, rule in enumerate(rules)]}


def _rule(rule, where: str, bad) -> dict:
    if not isinstance(rule, dict):
        raise bad(where, f"expected a rule object with names and an action, got {_shown(rule)}")
    names = rule.get("names")
    if "name" in rule:
        if names is not None:
            raise bad(where, "has both name and names; use names")
        names = [rule["name"]]
    # A name shaped like no system call (a typo in case or spacing) would be skipped as unknown to libseccomp.
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and _SYSCALL.fullmatch(n) for n in names):
        raise bad(f"{where} names", f"expected a list of system call names such as [\"mkdir\"], got {_shown(names)}")
    where = f"{where} ({', '.join(names[:2])}{', ...' if len(names) > 2 else ''})"
    _known_fields(rule, RULE_FIELDS, where, bad)
    if not _one_of(rule.get("action"), ACTIONS):
        raise bad(f"{where} action", f"expected one of {', '.join(sorted(ACTIONS))}, got {_shown(rule.get('action'))}")
    _errno(rule, "action", "errnoRet", f"{where} errnoRet", bad)
    for field in ("includes", "excludes"):
        _filter(rule.get(field), f"{where} {field}", bad)
    args = rule.get("args")
    args = [] if args is None else args
    if not isinstance(args, list):
        raise bad(f"{where} args", f"expected a list of argument checks, got {_shown(args)}")
    args = [_arg(a, f"{where} args[{i}]", bad) for i, a in enumerate(args)]
    indexes = [a["index"] for a in args]
    if len(set(indexes)) != len(indexes):
        # libseccomp refuses two checks of one argument in a rule; runc then splits them into separate rules,
        # which allows the call if EITHER check holds. Neither is what the rule says.
        raise bad(f"{where} args", f"checks argument {max(indexes, key=indexes.count)} twice; libseccomp can "
                                   "check each argument once per rule: write one rule per check")
    return {**rule, "names": names, "args": args}


def _arg(arg, where: str, bad) -> dict:
    if not isinstance(arg, dict):
        raise bad(where, f"expected an object with index, value and op, got {_shown(arg)}")
    _known_fields(arg, ARG_FIELDS, where, bad)
    if not _whole(arg.get("index"), 0, MAX_ARGS - 1):
        raise bad(f"{where} index", f"expected an argument number from 0 to {MAX_ARGS - 1}, got {_shown(arg.get('index'))}")
    for field in ("value", "valueTwo"):
        if (field in arg or field == "value") and not _whole(arg.get(field), 0, U64):
            raise bad(f"{where} {field}", f"expected a whole number from 0 to 2**64-1, got {_shown(arg.get(field))}")
    if not _one_of(arg.get("op"), OPERATORS):
        raise bad(f"{where} op", f"expected one of {', '.join(sorted(OPERATORS))}, got {_shown(arg.get('op'))}")
    return {"valueTwo": 0, **arg}


def _filter(spec, where: str, bad) -> None:
    """includes/excludes: which capabilities, architectures and kernel a rule is for."""
    if spec is None:
        return
    if not isinstance(spec, dict):
        raise bad(where, f"expected an object with caps, arches or minKernel, got {_shown(spec)}")
    _known_fields(spec, FILTER_FIELDS, where, bad)
    caps = _strings(spec.get("caps"), f"{where} caps", bad)
    unknown = [c for c in caps if c.removeprefix("CAP_") not in ALL_CAPS or not c.startswith("CAP_")]
    if unknown:
        raise bad(f"{where} caps", f"{unknown[0]!r} is not a capability; expected names such as CAP_SYS_ADMIN")
    unknown = [a for a in _strings(spec.get("arches"), f"{where} arches", bad) if a not in ARCHES]
    if unknown:
        raise bad(f"{where} arches", f"{unknown[0]!r} is not an architecture; expected one of {', '.join(sorted(ARCHES))}")
    if "minKernel" in spec and not (isinstance(spec["minKernel"], str) and _kernel(spec["minKernel"])):
        raise bad(f"{where} minKernel", f"expected a kernel version such as \"4.8\", got {_shown(spec['minKernel'])}")


def _architectures(names, where: str, bad) -> None:
    """libseccomp's names (the spec's list, as of libseccomp 2.6): runc refuses any other, and the filter would
    not be the one asked for."""
    for i, name in enumerate(_strings(names, where, bad)):
        if name not in SCMP_ARCHES:
            raise bad(f"{where}[{i}]", f"{name!r} is not an architecture; expected one of {', '.join(SCMP_ARCHES)}")


def _errno(obj: dict, action_field: str, field: str, where: str, bad) -> None:
    if obj.get(field) is None:
        return
    if obj[action_field] not in ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE"):
        raise bad(where, f"is only for SCMP_ACT_ERRNO and SCMP_ACT_TRACE, not {obj[action_field]}")
    if not _whole(obj[field], 0, MAX_ERRNO):
        raise bad(where, f"expected an errno from 0 to {MAX_ERRNO}, got {_shown(obj[field])}")


def _known_fields(obj: dict, known: set, where: str, bad) -> None:
    unknown = sorted(set(obj) - known)
    if unknown:
        raise bad(where, f"unknown field {unknown[0]!r}; expected {', '.join(sorted(known))}")


def _strings(value, where: str, bad) -> list:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise bad(where, f"expected a list of strings, got {_shown(value)}")
    return value


def _one_of(value, names: set) -> bool:
    """Is VALUE one of NAMES? A list or an object (unhashable) is not, rather than a TypeError."""
    return isinstance(value, str) and value in names


def _whole(value, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _kernel(version: str) -> tuple[int, ...]:
    """"5.15.0-91-amd64" -> (5, 15); () if VERSION does not start like a kernel version."""
    parts = re.match(r"(\d+)\.(\d+)", version)
    return (int(parts[1]), int(parts[2])) if parts else ()


def _shown(value) -> str:
    return json.dumps(value)[:60]


def profile_for(setting: str, read: dict | None) -> dict | None:
    """The profile a container's PID 1 loads: None for unconfined, the profile file READ on the host, or the
    default, which PID 1 computes itself (~3 ms of libseccomp's table, while pyrun waits for the cgroup)."""
    if setting == "unconfined":
        return None
    return default_profile() if setting == "default" else read


def _arch() -> str:
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


def applies(rule: dict, caps: frozenset[str]) -> bool:
    """Whether RULE's includes/excludes (capabilities, architecture, kernel) admit it for a process with CAPS here."""
    caps = {f"CAP_{c}" for c in caps}
    inc, exc = rule.get("includes") or {}, rule.get("excludes") or {}
    if inc.get("caps") and not set(inc["caps"]) <= caps:
        return False
    if inc.get("arches") and _arch() not in inc["arches"]:
        return False
    if inc.get("minKernel") and _kernel(os.uname().release) < _kernel(inc["minKernel"]):
        return False
    if exc.get("caps") and set(exc["caps"]) & caps:
        return False
    if exc.get("minKernel") and _kernel(os.uname().release) >= _kernel(exc["minKernel"]):
        return False
    return not (exc.get("arches") and _arch() in exc["arches"])


def check(path: str, profile: dict, caps: frozenset[str]) -> None:
    """Build PROFILE (read from PATH) on the host as the container will, so that what libseccomp refuses is
    refused before anything is set up."""
    try:
        build(profile, caps)
    except PyrunError as e:
        raise ProfileError(path, *e.detail.split(": ", 1)) from None


def build(profile: dict, caps: frozenset[str], overlaps: str = "refuse"):
    """PROFILE (as load_profile or default_profile returns it) as a filter for a process with CAPS. Its
    load() installs it for the calling process and what it execs, and needs no_new_privs (or CAP_SYS_ADMIN).
    Building takes ~8 ms and loading ~2: PID 1 builds while pyrun wires the network, and loads last, just
    before execve. A rule libseccomp refuses is an error: a filter without it would allow what it forbids.

    OVERLAPS is what two rules that give one call different actions do: "refuse" them (pyrun's own
    profiles: a rule that is dropped without a word is a hole), or leave them to "libseccomp", which keeps
    the first unconditional one (measured, libseccomp 2.5.4), as runc does for an OCI config.json."""
    def action(name: str, errno_ret: int | None):
        if name == "SCMP_ACT_ERRNO":
            return pyseccomp.ERRNO(errno_ret if errno_ret is not None else errno.EPERM)
        if name == "SCMP_ACT_TRACE":
            return pyseccomp.TRACE(errno_ret or 0)
        return {"SCMP_ACT_ALLOW": pyseccomp.ALLOW, "SCMP_ACT_KILL": pyseccomp.KILL_THREAD,
                "SCMP_ACT_KILL_THREAD": pyseccomp.KILL_THREAD, "SCMP_ACT_KILL_PROCESS": pyseccomp.KILL_PROCESS,
                "SCMP_ACT_TRAP": pyseccomp.TRAP, "SCMP_ACT_LOG": pyseccomp.LOG}[name]

    default = action(profile["defaultAction"], profile.get("defaultErrnoRet"))
    f = pyseccomp.SyscallFilter(defaction=default)
    first = {}  # system call number -> (action, unconditional, where) of each rule that names it
    for i, rule in enumerate(profile.get("syscalls") or []):
        if not applies(rule, caps):
            continue
        act = action(rule["action"], rule.get("errnoRet"))
        args = [pyseccomp.Arg(a["index"], getattr(pyseccomp, a["op"][len("SCMP_CMP_"):]), a["value"], a["valueTwo"])
                for a in rule.get("args") or []]
        for name in rule["names"]:
            where = f"syscalls[{i}] ({name})"
            number = pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, name)
            if number == NOT_A_SYSCALL:
                continue  # unknown to this libseccomp: skipped, as Docker does (see load_profile)
            for other_act, unconditional, other in first.setdefault(number, []):
                # libseccomp keeps one of two rules for a call when either has no args and their actions
                # differ, whichever the order: the other is dropped without a word.
                if overlaps == "refuse" and other_act != act and (unconditional or not args):
                    raise PyrunError("seccomp", f"{where}: conflicts with {other}, which gives {name} another "
                                                "action; libseccomp would keep only one of them")
            first[number].append((act, not args, where))
            if act == default:
                continue  # the default already does it (and libseccomp refuses such a rule with EACCES)
            try:
                f.add_rule(act, number, *args)
            except OSError as e:
                raise PyrunError("seccomp", f"{where}: libseccomp refused the rule ({e.strerror})") from None
    return f
