"""Capabilities and no_new_privs: what root inside a container may still do.

Root in a container is the host's uid 0, held back by capabilities. After
execve(2) a root process's permitted set is its inheritable set plus the
bounding set, so limiting the bounding set to Docker's 14 default
capabilities and emptying the inheritable set is what makes the limit stick.
The ambient set is always a subset of permitted and inheritable, so emptying
the inheritable set empties it too (CVE-2022-29162 was a runtime that did not).
no_new_privs stops setuid binaries and file capabilities from giving any back.
"""
import ctypes
import functools
import os

# Capability numbers are kernel ABI (linux/capability.h); python-prctl stops at BPF.
CAP_NUMBERS = {name: number for number, name in enumerate((
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
    "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
    "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
    "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
    "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
    "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
))}
ALL_CAPS = frozenset(CAP_NUMBERS)

# Docker's default set (moby's oci/caps/defaults.go).
DEFAULT_CAPS = frozenset({
    "CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID",
    "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE",
})

_PR_SET_DUMPABLE = 4
_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_RAISE = 47, 2
_libc = ctypes.CDLL(None, use_errno=True)


def make_undumpable() -> None:
    """Hide this process's memory and /proc/PID/exe from the container (CVE-2019-5736).

    Until execve the process is a copy of pyrun, whose /proc/PID/exe is the
    host's Python interpreter; a dumpable process would let a container
    process open it. execve of the user's command makes it dumpable again.
    """
    _libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)


def drop_privileges(caps: frozenset[str], user=None) -> None:
    """Limit every capability set to CAPS, become USER (a users.Identity) if given, and turn on no_new_privs.

    Needs CAP_SETPCAP, CAP_SETUID and CAP_SETGID, so do it last. The bounding set goes first and the user's
    ids next, while the effective set is still whole, so that --cap-drop SETUID cannot stop -u (runc orders
    it so too). A user that is not root leaves setuid(2) with no permitted or effective capabilities."""
    import prctl

    limit_bounding(caps)
    keep = sorted(CAP_NUMBERS[name] for name in caps)
    if user is not None:
        from runtime.users import become

        become(user)
        make_undumpable()  # a change of ids resets it (to fs.suid_dumpable): keep /proc/PID/exe hidden
    prctl.cap_inheritable.limit()
    prctl.cap_effective.limit(*keep)  # limit, not set: --cap-add ALL keeps what pyrun holds (this VM: no SYS_RESOURCE)
    prctl.cap_permitted.limit(*keep)
    prctl.set_no_new_privs(1)


def held() -> frozenset[str]:
    """The capabilities this process holds (effective): what --cap-add ALL gives a container here."""
    with open("/proc/self/status") as f:
        mask = int(next(line for line in f if line.startswith("CapEff:")).split()[1], 16)
    return frozenset(name for name, number in CAP_NUMBERS.items() if mask >> number & 1)


def limit_bounding(caps: frozenset[str]) -> None:
    """Drop every capability not in CAPS from the bounding set: no execve can give it back."""
    import _prctl

    keep = {CAP_NUMBERS[name] for name in caps}
    for number in range(_last_cap() + 1):
        if number not in keep:
            _prctl.prctl(_prctl.PR_CAPBSET_DROP, number)


@functools.cache  # read while root: a process that has just become another user may no longer read it
def _last_cap() -> int:
    with open("/proc/sys/kernel/cap_last_cap") as f:
        return int(f.read())


def set_capabilities(effective: frozenset[str], permitted: frozenset[str], inheritable: frozenset[str] = frozenset(),
                     ambient: frozenset[str] = frozenset()) -> None:
    """Set the process's capability sets to exactly these, in one capset(2), as an OCI config asks: after a
    switch to another uid the effective set is empty and must be raised, not only limited. A capability the
    process does not hold is refused by the kernel (EPERM); an ambient one must be permitted and inheritable."""
    import _prctl

    every = range(_last_cap() + 1)
    sets = [{CAP_NUMBERS[name] for name in names} for names in (effective, permitted, inheritable)]
    _prctl.set_caps(*[sorted(s) for s in sets], *[[n for n in every if n not in s] for s in sets])
    for number in sorted(CAP_NUMBERS[name] for name in ambient):  # python-prctl has no ambient set
        if _libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_RAISE, number, 0, 0) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"prctl(PR_CAP_AMBIENT_RAISE, {number}): {os.strerror(err)}")
