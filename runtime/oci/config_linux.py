"""config-linux.md: the namespaces, id maps, cgroup, devices and sysctls a container is made with.

    namespaces              namespaces(7): each a type to make (unshare(2)) or a path to join (setns(2))
    uidMappings, gid...     user_namespaces(7): the lines of /proc/PID/uid_map and gid_map, checked as
                            the kernel checks them when create writes them
    cgroupsPath, resources  cgroups(7): the container's cgroup, its memory, cpu and pids limits
    resources.devices       the devices controller's rules (cgroup v1): which device nodes may be opened
    sysctl                  /proc/sys, only of a namespace the container makes
    maskedPaths, ...        paths PID 1 hides or makes read-only (rootfs.py)

linux.seccomp is read in config.load, with runtime/seccomp.py.
"""
import fcntl
import json
import os
import re

from runtime import cgroups
from runtime.cgroups import Resources
from runtime.oci.config_check import bad, expect, refuse, within
from runtime.oci.config_process import ID, Process

CLONE_NEWCGROUP = 0x02000000
DEFAULT_CPU_SHARES = 1024  # the kernel's for a new cgroup: a config that asks for it asks for nothing
# The spec's namespace names -> unshare(2) flags (namespaces.py has pyrun's own, by /proc/PID/ns names).
NAMESPACES = {"pid": 0x20000000, "network": 0x40000000, "mount": 0x00020000, "ipc": 0x08000000,
              "uts": 0x04000000, "cgroup": CLONE_NEWCGROUP, "user": 0x10000000}
# The spec's namespace names -> their files under /proc/PID/ns, which `exec` joins: the user namespace last,
# as until then the host's root may enter them all, whichever user namespace owns them.
PROC_NS = {"pid": "pid", "network": "net", "ipc": "ipc", "uts": "uts", "cgroup": "cgroup", "mount": "mnt",
           "user": "user"}
# user_namespaces(7): at most 340 lines in one uid_map or gid_map, written at once in under a page; ids are
# config_process.ID's on both sides.
MAX_MAP_LINES, MAX_MAP_BYTES, MAX_ID = 340, 4095, ID[1]
NS_GET_NSTYPE = 0xB703  # ioctl_ns(2): the CLONE_NEW* type of the namespace an fd is for
# The spec's limits are int64s with -1 for "unlimited" (a device's numbers: for "any"); the cgroup files take
# nothing below it. runc writes such a number and the kernel refuses it: taken for "unlimited", a limit is lost.
INT64 = (1 << 63) - 1
MIN_QUOTA_US = 1000  # the kernel refuses a cfs quota under 1 ms (EINVAL)
# Namespaced sysctls (runc's list): any other would change the host's kernel, not the container's.
_SYSCTL_IPC = re.compile(r"kernel\.(msgmax|msgmnb|msgmni|sem|shmall|shmmax|shmmni|shm_rmid_forced)|fs\.mqueue\..+")


def namespaces(entries) -> tuple:
    out = []
    for i, ns in enumerate(expect(entries, list, "linux.namespaces", "a list", [])):
        where = f"linux.namespaces[{i}]"
        kind = expect(expect(ns, dict, where, "an object with type").get("type"), str, f"{where}.type",
                      f"one of {', '.join(NAMESPACES)}")
        if kind not in NAMESPACES:
            raise bad(f"{where}.type", f"{kind!r}: expected one of {', '.join(NAMESPACES)}")
        if any(k == kind for k, _ in out):
            raise bad(where, f"the {kind} namespace is listed twice")
        path = expect(ns.get("path"), str, f"{where}.path", "the absolute path of a namespace", "") or None
        if path is not None and _type_of(path) != NAMESPACES[kind]:
            raise bad(f"{where}.path", f"{path!r}: expected the absolute path of a {kind} namespace, such as "
                                       f"/proc/PID/ns/{PROC_NS[kind]} or /run/netns/NAME")
        if kind == "mount" and path:
            raise bad(where, "pyrun builds the container's root in a new mount namespace; it cannot join one")
        out.append((kind, path))
    if ("mount", None) not in out:
        raise bad("linux.namespaces", "pyrun needs a new mount namespace (type mount) to build the root in")
    return tuple(out)


def _type_of(path: str) -> int | None:
    """The CLONE_NEW* type of the namespace file at PATH; None for a relative path or a file of no namespace.
    The spec's MUST: a path of another type would be joined as it (setns(2) with no type joins any), or fail
    late in the intermediate as EINVAL."""
    if not os.path.isabs(path):
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # O_NONBLOCK: a FIFO does not hold create
    except OSError:
        return None
    try:
        return fcntl.ioctl(fd, NS_GET_NSTYPE)
    except OSError:
        return None
    finally:
        os.close(fd)


def id_maps(linux: dict, namespaces, process: Process) -> tuple[tuple, tuple]:
    """linux.uidMappings and gidMappings, checked as the kernel will check them when create writes them, and
    against the ids process.user needs: a mistake is an error naming the field, not a failed write later."""
    maps = {}
    for kind in ("uid", "gid"):
        where = f"linux.{kind}Mappings"
        entries = expect(linux.get(f"{kind}Mappings"), list, where, "a list of containerID, hostID, size", [])
        if entries and not any(k == "user" for k, _ in namespaces):
            raise bad(where, "mappings need a user namespace: add {\"type\": \"user\"} to linux.namespaces")
        if not entries and ("user", None) in namespaces:
            raise bad(where, "a new user namespace needs its mappings, such as [{\"containerID\": 0, \"hostID\": "
                             "100000, \"size\": 65536}]")
        if len(entries) > MAX_MAP_LINES:
            raise bad(where, f"{len(entries)} mappings: the kernel takes at most {MAX_MAP_LINES}")
        out = []
        for i, entry in enumerate(entries):
            entry = expect(entry, dict, f"{where}[{i}]", "an object with containerID, hostID and size")
            inside, outside, size = (expect(entry.get(k), int, f"{where}[{i}].{k}", "a number")
                                     for k in ("containerID", "hostID", "size"))
            for name, first in (("containerID", inside), ("hostID", outside)):
                if first < 0 or size < 1 or first + size - 1 > MAX_ID:
                    raise bad(f"{where}[{i}]", f"{name} {first} and size {size}: expected ids within 0-{MAX_ID} "
                                               "and a size of at least 1")
            for j, (other_in, other_out, other_size) in enumerate(out):
                for name, a, b in (("containerID", inside, other_in), ("hostID", outside, other_out)):
                    if a < b + other_size and b < a + size:
                        raise bad(f"{where}[{i}]", f"its {name} range {a}-{a + size - 1} overlaps "
                                                   f"{where}[{j}]'s {b}-{b + other_size - 1}")
            out.append((inside, outside, size))
        if len("".join(f"{a} {b} {c}\n" for a, b, c in out)) > MAX_MAP_BYTES:
            raise bad(where, f"the mappings come to more than the {MAX_MAP_BYTES} bytes the kernel reads at once")
        maps[kind] = tuple(out)
    for kind, ids in (("uid", [process.uid]), ("gid", [process.gid, *process.additional_gids])):
        for n in ids if maps[kind] else ():
            if not any(inside <= n < inside + size for inside, _, size in maps[kind]):
                raise bad(f"linux.{kind}Mappings", f"no mapping holds container {kind} {n}, which process.user "
                                                   "runs as")
    return maps["uid"], maps["gid"]


def resources(r) -> tuple[Resources, tuple]:
    r = expect(r, dict, "linux.resources", "an object", {})
    refuse(r, "linux.resources", ("blockIO", "hugepageLimits", "network", "rdma", "unified"),
           "pyrun limits only memory, cpu, pids and devices")
    memory = expect(r.get("memory"), dict, "linux.resources.memory", "an object", {})
    refuse(memory, "linux.resources.memory", ("reservation", "swap", "kernel", "kernelTCP", "swappiness",
                                              "disableOOMKiller", "useHierarchy", "checkBeforeUpdate"),
           "pyrun sets only limit")
    cpu = expect(r.get("cpu"), dict, "linux.resources.cpu", "an object", {})
    shares = expect(cpu.get("shares"), int, "linux.resources.cpu.shares", "a number", None)
    if shares not in (None, DEFAULT_CPU_SHARES):
        raise bad("linux.resources.cpu.shares", f"{shares}: pyrun leaves the kernel's {DEFAULT_CPU_SHARES}")
    refuse(cpu, "linux.resources.cpu", ("realtimeRuntime", "realtimePeriod", "cpus", "mems", "idle"),
           "pyrun sets only quota and period (and shares at the default)")
    quota = expect(cpu.get("quota"), int, "linux.resources.cpu.quota", "a number of microseconds", 0)
    if 0 < quota < MIN_QUOTA_US:
        raise bad("linux.resources.cpu.quota", f"{quota}: expected -1 (unlimited), 0 (unset) or at least "
                                               f"{MIN_QUOTA_US} µs, the kernel's least")
    period = expect(cpu.get("period"), int, "linux.resources.cpu.period", "a number of microseconds", None)
    if period not in (None, cgroups.CPU_PERIOD_US):
        raise bad("linux.resources.cpu.period", f"{period}: pyrun's period is {cgroups.CPU_PERIOD_US} µs")
    devices = expect(r.get("devices"), list, "linux.resources.devices", "a list of rules", [])
    pids = expect(r.get("pids"), dict, "linux.resources.pids", "an object", {})
    limit = within(pids.get("limit"), "linux.resources.pids.limit", -1, INT64,
                   "-1 (unlimited), 0 (unset) or a number of tasks", default=0)
    mem = within(memory.get("limit"), "linux.resources.memory.limit", -1, INT64,
                 "-1 (unlimited), 0 (unset) or a number of bytes", default=0)
    return Resources(  # 0 and -1 (the spec's "unlimited") set no limit
        memory=mem if mem > 0 else None, cpus=quota / cgroups.CPU_PERIOD_US if quota > 0 else None,
        pids_limit=limit if limit > 0 else None,
    ), tuple(_device_rule(rule, f"linux.resources.devices[{i}]") for i, rule in enumerate(devices))


def _device_rule(rule, where: str) -> tuple[str, str]:
    """A device cgroup rule as cgroup v1 writes it: ("allow", "c 1:3 rwm"). pyrun's own allowlist is added
    after the config's, as runc adds its own: a config's "deny all" first leaves exactly those."""
    rule = expect(rule, dict, where, "an object with allow, type, major, minor and access")
    kind = expect(rule.get("type"), str, f"{where}.type", "a, b or c", "") or "a"
    # Left out, access is all of it; given empty, it is none, as runc reads it (as "rwm", an allow would open all).
    access = expect(rule.get("access"), str, f"{where}.access", "letters of r, w, m", None)
    if access == "":
        raise bad(f"{where}.access", "'': expected letters of r, w, m (leave access out for all three)")
    access = access or "rwm"
    if kind not in ("a", "b", "c") or not set(access) <= set("rwm"):
        raise bad(where, f"expected type a, b or c and access made of r, w, m, got {json.dumps(rule)}")
    numbers = {key: within(rule.get(key), f"{where}.{key}", -1, INT64, "-1 (any) or a device number from 0",
                           default=-1) for key in ("major", "minor")}
    number = lambda key: "*" if numbers[key] == -1 else str(numbers[key])  # noqa: E731
    text = "a" if kind == "a" else f"{kind} {number('major')}:{number('minor')} {access}"
    # "allow": "false" is a string, truthy: taken for true, it would open what the rule closes.
    return ("allow" if expect(rule.get("allow"), bool, f"{where}.allow", "true or false", False) else "deny", text)


def resources_need_no_devices(bounding: frozenset[str]) -> bool:
    """Without the v1 devices controller a container with CAP_MKNOD could make and open the host's disk."""
    return "MKNOD" not in bounding or cgroups.guards_devices()


def cgroups_path(value, cid: str) -> tuple[str, str]:
    """(parent, name) of the container's cgroup in each hierarchy; pyrun's own parent without cgroupsPath."""
    if not expect(value, str, "linux.cgroupsPath", "a path such as /machine/ID", ""):
        return cgroups.PARENT, cid
    if ":" in value:
        raise bad("linux.cgroupsPath", f"{value!r} is systemd's slice:prefix:name form; pyrun drives cgroupfs, "
                                       "give a path such as /machine/ID")
    # "." is dropped as runc's CleanPath drops it: "/." would otherwise name the hierarchy's root as the
    # container's own cgroup, whose every process delete kills. The kernel refuses a name with a newline.
    parts = [p for p in value.split("/") if p not in ("", ".")]
    if not parts or ".." in parts or "\n" in value:
        raise bad("linux.cgroupsPath", f"{value!r}: expected a path such as /machine/ID, below the root, without "
                                       "'..' or a newline")
    return "/".join(parts[:-1]), parts[-1]


def paths(values, where: str) -> list[str]:
    values = expect(values, list, where, "a list of absolute paths", [])
    for i, v in enumerate(values):
        if not expect(v, str, f"{where}[{i}]", "an absolute path").startswith("/"):
            raise bad(f"{where}[{i}]", f"{v!r}: expected an absolute path")
    return values


def check_sysctl(key: str, value, namespaces) -> None:
    """A sysctl of a namespace the container has, made or joined (a pod's containers set net.* in the pod's
    network namespace), but not the runtime's own: that one is the host's, as runc says."""
    expect(value, str, f"linux.sysctl.{key}", "a string value")
    if _SYSCTL_IPC.fullmatch(key) and _separate(namespaces, "ipc"):
        return
    if key.startswith("net.") and _separate(namespaces, "network"):
        return
    if key == "kernel.hostname":  # runc's rule: it would undo, or be undone by, the hostname field
        raise bad(f"linux.sysctl.{key}", f"{value!r}: expected the container's hostname in the hostname field")
    if key == "kernel.domainname" and _separate(namespaces, "uts"):
        return
    raise bad(f"linux.sysctl.{key}", "not a sysctl of a namespace the container has; it would change the host's")


def _separate(namespaces, kind: str) -> bool:
    """Does the container get a KIND namespace of its own: a new one, or one joined by a path that is not the one
    this process is in?"""
    ours = os.stat(f"/proc/self/ns/{PROC_NS[kind]}")
    for k, path in namespaces:
        if k == kind:
            if path is None:
                return True
            joined = os.stat(path)  # the path was checked to be a namespace of KIND already (namespaces())
            return (joined.st_dev, joined.st_ino) != (ours.st_dev, ours.st_ino)
    return False
