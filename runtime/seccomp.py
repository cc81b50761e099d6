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
`--security-opt seccomp=PROFILE.json` takes Docker's own profiles. pyrun's
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
           "SCMP_ACT_TRAP", "SCMP_ACT_LOG"}
OPERATORS = {"SCMP_CMP_EQ", "SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_GT", "SCMP_CMP_GE",
             "SCMP_CMP_MASKED_EQ"}
_SPECIAL = {"clone", "clone3", "socket", "personality"}


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


def load_profile(path: str) -> dict:
    def bad(why: str) -> PyrunError:
        return PyrunError("invalid --security-opt", f"seccomp={path}: {why}; expected a profile in Docker's format")

    try:
        with open(path) as f:
            profile = json.load(f)
    except OSError as e:
        raise bad(e.strerror) from None
    except json.JSONDecodeError as e:
        raise bad(f"not JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(profile, dict) or profile.get("defaultAction") not in ACTIONS:
        raise bad(f"defaultAction must be one of {', '.join(sorted(ACTIONS))}")
    for rule in profile.get("syscalls") or []:
        names = isinstance(rule, dict) and (rule.get("names") or ([rule["name"]] if rule.get("name") else None))
        if not names or rule.get("action") not in ACTIONS:
            raise bad(f"each syscalls rule needs names and an action, got {json.dumps(rule)[:80]}")
        for a in rule.get("args") or []:
            if a.get("op") not in OPERATORS or not isinstance(a.get("index"), int):
                raise bad(f"bad args entry {json.dumps(a)[:80]}")
    return profile


def profile_for(setting: str, read: dict | None) -> dict | None:
    """The profile a container's PID 1 loads: None for unconfined, the profile file READ on the host, or the
    default, which PID 1 computes itself (~3 ms of libseccomp's table, while pyrun waits for the cgroup)."""
    if setting == "unconfined":
        return None
    return default_profile() if setting == "default" else read


def _arch() -> str:
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


def _applies(rule: dict, caps: frozenset[str]) -> bool:
    caps = {f"CAP_{c}" for c in caps}
    inc, exc = rule.get("includes") or {}, rule.get("excludes") or {}
    if inc.get("caps") and not set(inc["caps"]) <= caps:
        return False
    if inc.get("arches") and _arch() not in inc["arches"]:
        return False
    if exc.get("caps") and set(exc["caps"]) & caps:
        return False
    return not (exc.get("arches") and _arch() in exc["arches"])


def build(profile: dict, caps: frozenset[str]):
    """PROFILE as a filter for a process with CAPS. Its load() installs it for the calling process and what it
    execs, and needs no_new_privs (or CAP_SYS_ADMIN). Building takes ~8 ms and loading ~2: PID 1 builds while
    pyrun wires the network, and loads last, just before execve."""
    def action(name: str, errno_ret: int | None):
        if name == "SCMP_ACT_ERRNO":
            return pyseccomp.ERRNO(errno_ret if errno_ret is not None else errno.EPERM)
        return {"SCMP_ACT_ALLOW": pyseccomp.ALLOW, "SCMP_ACT_KILL": pyseccomp.KILL_THREAD,
                "SCMP_ACT_KILL_THREAD": pyseccomp.KILL_THREAD, "SCMP_ACT_KILL_PROCESS": pyseccomp.KILL_PROCESS,
                "SCMP_ACT_TRAP": pyseccomp.TRAP, "SCMP_ACT_LOG": pyseccomp.LOG}[name]

    f = pyseccomp.SyscallFilter(defaction=action(profile["defaultAction"], profile.get("defaultErrnoRet")))
    for rule in profile.get("syscalls") or []:
        if not _applies(rule, caps):
            continue
        args = [pyseccomp.Arg(a["index"], getattr(pyseccomp, a["op"][len("SCMP_CMP_"):]), a.get("value", 0),
                              a.get("valueTwo", 0)) for a in rule.get("args") or []]
        for name in rule.get("names") or [rule["name"]]:
            try:
                f.add_rule(action(rule["action"], rule.get("errnoRet")), name, *args)
            except (ValueError, OSError, RuntimeError):
                continue  # not a system call on this architecture or kernel
    return f
