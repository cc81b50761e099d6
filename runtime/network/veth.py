"""A container on the bridge: its network namespace named, and the veth pair that plugs it in.

Each container gets a veth pair, a virtual cable whose host end is plugged
into the bridge (bridge.py) and whose other end is created inside the
container's network namespace as eth0. A netlink socket talks to the network
namespace it was opened in, so to configure eth0 pyrun opens a second socket
from inside the container's namespace (setns(2): netlink_in) and steps back
out. The namespace gets a name too, /run/netns/NAME, a bind mount of
/proc/PID/ns/net, by which `ip netns exec NAME` finds it (NetnsName).

    setup (host)                        undo
    ip netns name for the container     unmount it
    veth pair (its port in hairpin      delete the host end (the peer goes with it)
    mode, isolated with icc=false),
    eth0 addressed, route
"""
import contextlib
import ipaddress
import os
import shlex
import zlib
from dataclasses import dataclass, replace

from runtime import state, syscalls
from runtime.errors import PyrunError
from runtime.namespaces import CLONE_NEWNET
from runtime.network.bridge import netlink, no_ipv6, no_ipv6_shell
from runtime.steps import Action, Step, Trace

NETNS_DIR = "/run/netns"
_NSFS = os.stat("/proc/self/ns/net")  # every namespace file is on nsfs: its st_dev tells one from a plain file


@contextlib.contextmanager
def in_netns(pid: int):
    """Run the body in PID's network namespace, and step back out whatever happens."""
    home = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    there = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        syscalls.setns(there, CLONE_NEWNET, f"/proc/{pid}/ns/net")
        try:
            yield
        finally:
            syscalls.setns(home, CLONE_NEWNET, "/proc/self/ns/net")
    finally:
        os.close(there)
        os.close(home)


class netlink_in:
    """A netlink session opened inside PID's network namespace; pyrun itself steps straight back out."""

    def __init__(self, pid: int):
        self.pid = pid

    def __enter__(self):
        with in_netns(self.pid):
            self.nl = netlink()
        return self.nl

    def __exit__(self, *exc):
        self.nl.close()


@dataclass
class NetnsName(Step):
    """A name for its network namespace, so that `ip netns exec NAME` finds it

    /run/netns/NAME is bound to the container's network namespace.

    /run/netns is the host's: the name may be taken by another state root's
    container or by `ip netns add`. up() takes it only if it is free, and the
    file it creates holds the container's id; down() unmounts only the
    namespace NETNS (as /proc/PID/ns/net names it: "net:[INODE]") and removes
    only a file holding its id, so it never takes away another's name.
    """

    kind = "netns"
    name: str
    pid: int | str | None = None
    cid: str = ""
    netns: str = ""

    @property
    def path(self) -> str:
        return os.path.join(NETNS_DIR, self.name)

    def actions(self) -> list[Action]:
        path = shlex.quote(self.path)
        return [(f"mkdir -p {NETNS_DIR}", lambda: os.makedirs(NETNS_DIR, exist_ok=True)),
                (f"touch {path}", self._take),
                (f"mount --bind /proc/{self.pid}/ns/net {path}",
                 lambda: syscalls.mount(f"/proc/{self.pid}/ns/net", self.path, None, syscalls.MS_BIND))]

    def _take(self) -> None:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
        except FileExistsError:
            raise PyrunError("netns", f"{self.path} exists: the name {self.name} is taken, by another container "
                                      "(of another --root?) or by 'ip netns add'; choose another --name") from None
        with os.fdopen(fd, "w") as f:
            f.write(self.cid)

    def undo_actions(self) -> list[Action]:
        path = shlex.quote(self.path)
        return [(f"umount {path}", self._unmount), (f"rm {path}", self._remove)]

    def _unmount(self) -> None:
        try:
            mounted = os.stat(self.path)
        except FileNotFoundError:
            return
        if self.netns and f"net:[{mounted.st_ino}]" == self.netns and mounted.st_dev == _NSFS.st_dev:
            syscalls.umount2(self.path, syscalls.MNT_DETACH)

    def _remove(self) -> None:
        try:
            with open(self.path) as f:
                ours = f.read() == self.cid != ""
        except OSError:
            ours = False  # gone, or a namespace still mounted there (not ours), which reads as EINVAL
        if ours:
            os.unlink(self.path)

    def at(self, pid) -> "NetnsName":
        """Its undo unmounts only this namespace: the one PID 1 is in, named before the name is taken."""
        netns = os.readlink(f"/proc/{pid}/ns/net") if isinstance(pid, int) else ""
        return replace(self, pid=pid, netns=netns)


@dataclass
class Veth(Step):
    """The veth pair: one end on the bridge, the other as the container's eth0 with its address and default
    route"""

    kind = "veth"
    host_end: str
    bridge: str
    address: str
    prefixlen: int
    gateway: str
    mac: str
    # icc=false: the bridge forwards nothing from this port to another isolated one, only to and from the
    # bridge itself (the gateway). The kernel does it at layer 2, with or without br_netfilter loaded.
    isolated: bool = False
    pid: int | str | None = None

    def up(self, trace: Trace = None) -> None:
        """A netlink session on each side, the container's opened from inside its namespace."""
        with netlink() as self._host, netlink_in(self.pid) as self._inside:
            super().up(trace)

    def actions(self) -> list[Action]:
        """Each a netlink request of its own: the pair is made with its host end on the bridge already, and that
        end comes up with its port's flags in one."""
        ns, end = f"nsenter --net=/proc/{self.pid}/ns/net", self.host_end
        host, inside = (lambda: self._host), (lambda: self._inside)   # the sessions up() opens: none to explain
        port = "hairpin on" + (" isolated on" if self.isolated else "")
        return [(f"ip link add {end} master {self.bridge} type veth peer name eth0 address {self.mac} netns {self.pid}",
                 lambda: host().add_veth(end, host().index(self.bridge), "eth0", self.mac, self.pid)),
                (no_ipv6_shell(end), lambda: no_ipv6(end)),
                (f"ip link set {end} up type bridge_slave {port}   # hairpin: back out of its own port, to its "
                 "published ports" + ("; isolated (icc=false): no frame to another such port" if self.isolated else ""),
                 lambda: host().up_hairpin(host().index(end), self.isolated)),
                (f"{ns} {no_ipv6_shell('eth0')}", self._no_ipv6_inside),
                (f"{ns} ip link set lo up", lambda: inside().up(inside().index("lo"))),
                (f"{ns} ip addr add {self.address}/{self.prefixlen} dev eth0",
                 lambda: inside().add_address(inside().index("eth0"), self.address, self.prefixlen)),
                (f"{ns} ip link set eth0 up", lambda: inside().up(inside().index("eth0"))),
                (f"{ns} ip route add default via {self.gateway}", lambda: inside().add_default_route(self.gateway))]

    def _no_ipv6_inside(self) -> None:
        with in_netns(self.pid):
            no_ipv6("eth0")

    def undo_actions(self) -> list[Action]:
        return [(f"ip link del {self.host_end}", self._delete)]

    def _delete(self) -> None:
        with netlink() as nl:
            nl.delete(self.host_end)


def host_end(cid: str) -> str:
    """The host end of a container's veth pair, named from its id within 15 characters."""
    return f"pv{cid[:12]}"


def netns_name(name: str, root: str) -> str:
    """The container's network namespace as `ip netns` lists it. A name is unique within a state root, and
    /run/netns is the host's: a container of any root but the default has its root's mark in the name,
    after an '@', which no container name has. (zlib, not hashlib: the monitor loads this module.)"""
    if root == state.DEFAULT_ROOT:
        return f"pyrun-{name}"
    return f"pyrun-{name}@{zlib.crc32(root.encode()):08x}"


def mac_address(address: str) -> str:
    """Docker's scheme: 02:42 (locally administered) and then the four bytes of the IPv4 address."""
    return "02:42:" + ":".join(f"{b:02x}" for b in ipaddress.IPv4Address(address).packed)
