"""Namespaces: what a container can see.

unshare(2) moves the calling process into new namespaces, except the PID
namespace: a new PID namespace applies to the caller's children, so the
process that becomes PID 1 must be forked after the unshare. setns(2) joins
an existing namespace through a /proc/PID/ns/* file; that is how `pyrun
exec` enters a running container and how `ip netns` names one.

| namespace | flag          | the container gets its own ...        |
|-----------|---------------|----------------------------------------|
| mnt       | CLONE_NEWNS   | mount table (rootfs.py builds it)      |
| uts       | CLONE_NEWUTS  | hostname                               |
| ipc       | CLONE_NEWIPC  | System V IPC and POSIX message queues  |
| net       | CLONE_NEWNET  | interfaces, routes, firewall, ports    |
| pid       | CLONE_NEWPID  | process numbers, starting from 1       |
| user      | CLONE_NEWUSER | uids and gids, and capabilities over the namespaces it owns (--userns=auto, userns.py) |

A user namespace comes first: every namespace made after it is owned by it,
which is what lets the container's root (an unprivileged uid on the host)
mount its filesystems and set its hostname. Joining, too, starts with it.
"""
import os

from runtime import syscalls

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWNET = 0x40000000
CLONE_NEWPID = 0x20000000
CLONE_NEWUSER = 0x10000000

FLAGS = {"user": CLONE_NEWUSER, "mnt": CLONE_NEWNS, "uts": CLONE_NEWUTS, "ipc": CLONE_NEWIPC, "net": CLONE_NEWNET, "pid": CLONE_NEWPID}


def kinds(network: str, userns: str = "host") -> list[str]:
    """The namespaces a container gets, the user namespace first; --network host shares the host's network
    namespace, --userns=host (the default) its user namespace."""
    return [k for k in FLAGS if not (k == "net" and network == "host") and not (k == "user" and userns == "host")]


def unshare(names: list[str]) -> None:
    flags = 0
    for name in names:
        flags |= FLAGS[name]
    syscalls.unshare(flags)


def join(pid: int, names: list[str]) -> None:
    """Enter PID's namespaces. Open them all first: after joining mnt, /proc is the container's."""
    fds = [(name, os.open(f"/proc/{pid}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC)) for name in names]
    try:
        for name, fd in fds:
            syscalls.setns(fd, FLAGS[name], f"/proc/{pid}/ns/{name}")
    finally:
        for _, fd in fds:
            os.close(fd)
