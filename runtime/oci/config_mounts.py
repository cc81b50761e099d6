"""config.md's mounts: each entry read into the mount(2) call PID 1 makes, in the config's order.

    "options": ["rbind", "ro", "nosuid", "rprivate", "mode=755"]
        rbind            MS_BIND | MS_REC: a bind mount of the source's whole tree
        ro, nosuid, ...  mount(2) flags, set (ro) or cleared (rw): MOUNT_FLAGS
        rprivate, ...    the propagation type, a second mount(2) call (mount_namespaces(7))
        mode=755, ...    the filesystem's own options: mount(2)'s data (not for a bind mount)

A relative bind source is the bundle's; every bind source must exist when
create runs. PID 1 resolves each destination inside the root (init.py).
"""
import os
from dataclasses import dataclass

from runtime.oci.config_check import bad, expect, refuse
from runtime.syscalls import MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_PRIVATE, MS_RDONLY, MS_REC

MS_SLAVE, MS_SHARED, MS_UNBINDABLE = 0x80000, 0x100000, 0x20000
# mount(8)'s option words as mount(2) flags: (set, clear). runc's table, less what pyrun does not do.
MOUNT_FLAGS = {
    "ro": (MS_RDONLY, 0), "rw": (0, MS_RDONLY), "nosuid": (MS_NOSUID, 0), "suid": (0, MS_NOSUID),
    "nodev": (MS_NODEV, 0), "dev": (0, MS_NODEV), "noexec": (MS_NOEXEC, 0), "exec": (0, MS_NOEXEC),
    "sync": (0x10, 0), "async": (0, 0x10), "dirsync": (0x80, 0), "mand": (0x40, 0), "nomand": (0, 0x40),
    "noatime": (0x400, 0), "atime": (0, 0x400), "nodiratime": (0x800, 0), "diratime": (0, 0x800),
    "relatime": (0x200000, 0), "norelatime": (0, 0x200000), "strictatime": (0x1000000, 0),
    "nostrictatime": (0, 0x1000000), "lazytime": (0x2000000, 0), "nolazytime": (0, 0x2000000),
    "silent": (0x8000, 0), "loud": (0, 0x8000),
    "rro": (MS_RDONLY, 0),  # runc's recursive read-only: pyrun-oci makes every rbind,ro recursive (init_root._bind)
}
PROPAGATION = {"private": MS_PRIVATE, "rprivate": MS_PRIVATE | MS_REC, "slave": MS_SLAVE, "rslave": MS_SLAVE | MS_REC,
               "shared": MS_SHARED, "rshared": MS_SHARED | MS_REC, "unbindable": MS_UNBINDABLE,
               "runbindable": MS_UNBINDABLE | MS_REC}
MOUNT_TYPES = ("bind", "proc", "sysfs", "tmpfs", "devpts", "mqueue", "cgroup")


@dataclass(frozen=True)
class Mount:
    destination: str
    type: str                    # one of MOUNT_TYPES
    source: str                  # a bind mount's: an absolute host path
    flags: int = 0               # mount(2) flags from the options, MS_BIND|MS_REC for rbind
    data: str = ""               # the options that are the filesystem's own (mode=755, size=64k)
    propagation: int = 0
    cleared: int = 0             # what the options clear (rw, suid, ...): in a user namespace, a host mount's
                                 # read-only, nosuid, nodev, noexec are locked, and asking to clear one is an error


def read(m, where: str, bundle: str) -> Mount:
    """The mount WHERE (mounts[I]) of the bundle directory BUNDLE checked into a Mount."""
    m = expect(m, dict, where, "an object with destination, type, source and options")
    dest = expect(m.get("destination"), str, f"{where}.destination", "an absolute path")
    if not dest.startswith("/") or ".." in dest.split("/"):
        raise bad(f"{where}.destination", f"{dest!r}: expected an absolute path without '..'")
    options = expect(m.get("options"), list, f"{where}.options", "a list of strings", [])
    flags, clear, data, propagation = 0, 0, [], 0
    for j, option in enumerate(options):
        if expect(option, str, f"{where}.options[{j}]", "an option such as ro, nosuid or mode=755") in MOUNT_FLAGS:
            flags |= MOUNT_FLAGS[option][0]
            clear |= MOUNT_FLAGS[option][1]
        elif option in PROPAGATION:
            propagation = PROPAGATION[option]
        elif option in ("bind", "rbind"):
            flags |= MS_BIND | (MS_REC if option == "rbind" else 0)
        elif option and option not in ("defaults",):
            data.append(option)
    kind = expect(m.get("type"), str, f"{where}.type", f"one of {', '.join(MOUNT_TYPES)}", "") or \
        ("bind" if flags & MS_BIND else None)
    if flags & MS_BIND:
        kind = "bind"
    if kind not in MOUNT_TYPES:
        raise bad(f"{where}.type", f"{kind!r}: pyrun mounts {', '.join(MOUNT_TYPES)}")
    source = expect(m.get("source"), str, f"{where}.source", "a path", "") or kind
    if kind == "bind":
        if data:
            raise bad(f"{where}.options", f"{data[0]!r}: not an option for a bind mount; expected mount flags "
                                          "such as ro, nosuid, rbind or rprivate")
        flags |= MS_BIND
        source = os.path.join(bundle, source)  # a relative source is the bundle's (the spec's rule)
        if not os.path.exists(source):
            raise bad(f"{where}.source", f"{source} does not exist")
    refuse(m, where, ("uidMappings", "gidMappings"), "pyrun makes no idmapped mounts from a config.json")
    return Mount(os.path.normpath(dest), kind, source, flags & ~clear, ",".join(data), propagation, clear)
