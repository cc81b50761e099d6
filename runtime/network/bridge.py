"""The bridge network: a Linux bridge on the host, a veth pair per container, through netlink.

This is the seed blog's recipe as a program. The bridge pyrun0 is a virtual
switch with the gateway address; each container gets a veth pair, a virtual
cable whose host end is plugged into the bridge and whose other end is
created inside the container's network namespace as eth0. rtnl.py speaks
netlink, the same protocol `ip` uses, with no `ip` processes. A netlink
socket talks to the network namespace it was opened in, so to configure eth0
pyrun opens a second socket from inside the container's namespace (setns)
and steps back out.

    setup (host)                        undo
    bridge pyrun0, its own MAC, gateway stays, like docker0 ('pyrun network rm')
    route_localnet on the bridge        goes with the bridge
    IPv6 off on the bridge, each veth   goes with the link (pyrun sets up no IPv6: no RA is heard)
    ip_forward on; if pyrun turned it   stays while any pyrun bridge does; the last 'pyrun network rm'
      on, FORWARD's policy DROP         puts back what pyrun changed (an admin's own setting is kept)
    lease an address (ipam.py)          release it
    ip netns name for the container     unmount it
    its port's frame filter (portguard) delete its ebtables chain
    veth pair (its port in hairpin      delete the host end (the peer goes with it)
    mode, isolated with icc=false),
    eth0 addressed, route
    published ports (firewall.py)       delete the rules by their comment
"""
import contextlib
import hashlib
import ipaddress
import os
import shlex
import socket
import time
import zlib
from dataclasses import dataclass, field, replace

from runtime import state, syscalls
from runtime.errors import PyrunError
from runtime.namespaces import CLONE_NEWNET
from runtime.network import firewall, host, networks, rtnl
from runtime.network.networks import Network
from runtime.network.ports import PortMapping
from runtime.record import Record
from runtime.steps import Action, Step, Trace, perform

NETNS_DIR = "/run/netns"
_NSFS = os.stat("/proc/self/ns/net")  # every namespace file is on nsfs: its st_dev tells one from a plain file
# What enable_forwarding() changed, for restore_forwarding(): the host's, not one state root's.
FORWARDING = os.path.join(host.HOST_DIR, "forwarding.json")


def _sysctl(path: str, value: str) -> None:
    with open(f"/proc/sys/{path}", "w") as f:
        f.write(value)


def _read_sysctl(path: str) -> str:
    with open(f"/proc/sys/{path}") as f:
        return f.read().strip()


def no_ipv6(link: str) -> None:
    """Turn IPv6 off on LINK, in the network namespace this process is in (/proc/sys/net is always the
    opener's). pyrun sets up no IPv6, so nothing it makes may listen to a router advertisement: one from a
    container would give the host, or the container's neighbours, a default route and an address through
    the attacker (the class of CVE-2020-13401). disable_ipv6 also leaves the link without even a link-local
    address. Set it before the link comes up, so that not one packet is taken first."""
    if os.path.isdir("/proc/sys/net/ipv6"):   # not there when the kernel was booted with ipv6.disable=1
        _sysctl(f"net/ipv6/conf/{link}/disable_ipv6", "1")


def no_ipv6_shell(link: str) -> str:
    return f"sysctl -qw net.ipv6.conf.{link}.disable_ipv6=1"


def netlink() -> rtnl.Session:
    """A netlink session in this process's network namespace."""
    return rtnl.Session()


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


def exists(network: Network) -> bool:
    with netlink() as nl:
        return nl.index(network.bridge) is not None


def bridge_mac(name: str) -> str:
    """The bridge's own MAC, the same whenever a bridge of this name is made: a hash of the name, with the
    first byte's two low bits saying "locally administered, unicast". A bridge without an address of its
    own takes its lowest port's, and changes it when that port goes: the containers' cached gateway MAC
    then answers no more until their ARP entries time out (about a minute of failed requests)."""
    b = bytearray(hashlib.sha256(firewall.bridge_tag(name).encode()).digest()[:6])
    b[0] = (b[0] & 0b11111100) | 0b10
    return ":".join(f"{x:02x}" for x in b)


def ensure_bridge(network: Network) -> list[tuple[str, float]]:
    """Create the bridge, its address and its firewall chains if missing, under the host's lock; return
    what was missing, as the commands that made it, each with the seconds it took."""
    with host.locked():
        return _ensure_bridge(network)


def _ensure_bridge(network: Network) -> list[tuple[str, float]]:
    name, subnet, gateway = network.bridge, network.subnet, network.gateway
    mac, done = bridge_mac(name), []

    def did(command: str, seconds: float) -> None:
        done.append((command, seconds))

    with netlink() as nl:
        link = nl.link(name)
        addresses = nl.addresses(link["index"]) if link is not None else []
        _check_subnet(network, addresses, [ipaddress.IPv4Network(f"{dst}/{prefixlen}")
                                           for dst, prefixlen in nl.routes() if prefixlen])
        if link is None:
            perform([(f"ip link add {name} address {mac} type bridge", lambda: nl.add_bridge(name, mac)),
                     (no_ipv6_shell(name), lambda: no_ipv6(name))], did)
        else:
            if link.get_attr("IFLA_ADDRESS") != mac:  # a bridge made by an older pyrun
                perform([(f"ip link set {name} address {mac}", lambda: nl.set_address(link["index"], mac))], did)
            no_ipv6(name)   # a bridge made by an older pyrun gets it too (dropping what IPv6 it took)
        index = link["index"] if link is not None else nl.index(name)
        if gateway not in addresses:
            perform([(f"ip addr add {gateway}/{network.prefixlen} dev {name}",
                      lambda: nl.add_address(index, gateway, network.prefixlen)),
                     (f"ip link set {name} up", lambda: nl.up(index))], did)
        else:
            nl.up(index)
    # Lets the host's 127.0.0.1 be DNAT'd to a container; on this bridge only, never on 'all'.
    if _read_sysctl(f"net/ipv4/conf/{name}/route_localnet") != "1":
        perform([(f"sysctl -qw net.ipv4.conf.{name}.route_localnet=1",
                  lambda: _sysctl(f"net/ipv4/conf/{name}/route_localnet", "1"))], did)
    current = firewall.save()
    missing = firewall.missing_bridge_setup(current, name, subnet, network.policy)
    if missing:  # one batch: its one time
        perform([(firewall.restore_shell(missing), lambda: firewall.restore(missing))], did)
    enable_forwarding(current, did)
    return done


def _check_subnet(network: Network, addresses: list[str], routes: list[ipaddress.IPv4Network]) -> None:
    """Refuse, on every run, a subnet other than the one the bridge is on (a second address on it would
    get no NAT rule), or one that overlaps any route but the bridge's own (routes come and go)."""
    net = ipaddress.IPv4Network(network.subnet)
    for address in addresses:
        if address != network.gateway:
            # The subnet the bridge is on is its connected route: the most specific one holding its address.
            old = max((r for r in routes if ipaddress.IPv4Address(address) in r), key=lambda r: r.prefixlen,
                      default=address)
            what = f"network {network.name}'s subnet" if network.user_defined else "PYRUN_SUBNET"
            raise PyrunError("bridge", f"{what} {network.subnet} is not {old}, the subnet bridge {network.bridge} "
                                       f"is on; to change it, remove the network first: 'pyrun network rm "
                                       f"{network.name}', once no container uses it")
    own = net if network.gateway in addresses else None
    for route in routes:
        if route.overlaps(net) and route != own:
            raise PyrunError("bridge", f"subnet {network.subnet} overlaps the route to {route}; "
                                       "choose a free private subnet (PYRUN_SUBNET for the default)")


def remove_bridge(network: Network) -> None:
    """ensure_bridge's mirror: the bridge and its rules; with the host's last pyrun bridge, whichever state
    root made the others, pyrun's chains and jumps too, and what enable_forwarding() changed. Call under
    host.locked(), with the check that no container holds an address on it."""
    with netlink() as nl:
        nl.delete(network.bridge)
    firewall.restore(firewall.rules_tagged(firewall.save(), firewall.bridge_tag(network.bridge)))
    current = firewall.save()
    if not firewall.rules_tagged(current, firewall.BRIDGE_TAG, prefix=True):
        firewall.remove_chains(current)
        restore_forwarding(current)


def create_network(root: str, name: str, subnet: str, options: dict | None = None) -> Network:
    """Make the network's bridge and rules and record it. Call with a validated NAME, SUBNET and OPTIONS
    (networks.parse_options)."""
    if name in ("none", "host"):
        raise PyrunError("network create", f"{name!r} is reserved: --network {name} needs no network")
    with state.locked(root):
        for net in networks.all_networks(root):
            if net.name == name:
                raise PyrunError("network create", f"{name!r}: a network of this name exists")
            if ipaddress.IPv4Network(net.subnet).overlaps(ipaddress.IPv4Network(subnet)):
                raise PyrunError("network create", f"{subnet} overlaps network {net.name} ({net.subnet})")
        net = Network(name, f"pr-{os.urandom(6).hex()}", subnet, **(options or {}))
        ensure_bridge(net)  # refuses a subnet that overlaps one of the host's routes
        networks.add(root, net)
    return net


def remove_network(root: str, name: str) -> None:
    with state.locked(root), host.locked():  # the host's lock too: no other root leases on it meanwhile
        net = networks.get(root, name, None)
        users = networks.holders(net)
        if users:
            known = {r.id: r.name for r in Record.every(root)}
            names = [known.get(cid, f"{cid[:12]} (of another --root)") for cid in users]
            raise PyrunError("network rm", f"network {name} is in use by {', '.join(names)}; remove them first")
        remove_bridge(net)
        networks.forget(root, net)


def enable_forwarding(current: dict[str, list[str]], trace: Trace = None) -> bool:
    """Turn ip_forward on, which a bridge network needs (CURRENT: an iptables-save); TRACE is told the commands.

    If it was off, pyrun is what makes this host a router, and it does what
    Docker does then: FORWARD's policy becomes DROP. The host then forwards
    only what PYRUN-FORWARD accepts, its containers' traffic, and not a
    neighbour's packets bound for another network behind the host. What
    pyrun changes is written down before it changes it. If forwarding was
    on already, it and the policy are the admin's choice and stay as they are.
    """
    if _read_sysctl("net/ipv4/ip_forward") == "1":
        return False
    state.write_json(FORWARDING, {"ip_forward": "0", "forward_policy": firewall.policy(current, "FORWARD")})
    # The policy first, before forwarding starts: never a moment as an open router.
    perform([("iptables -P FORWARD DROP", lambda: firewall.set_policy("FORWARD", "DROP")),
             ("sysctl -qw net.ipv4.ip_forward=1", lambda: _sysctl("net/ipv4/ip_forward", "1"))], trace)
    return True


def restore_forwarding(current: dict[str, list[str]]) -> None:
    """enable_forwarding()'s mirror, with the last bridge: forwarding off again, and the policy as it was
    unless someone has changed it since."""
    try:
        saved = state.read_json(FORWARDING)
    except FileNotFoundError:
        return  # pyrun did not turn forwarding on: nothing of this is its to undo
    _sysctl("net/ipv4/ip_forward", saved["ip_forward"])
    if firewall.policy(current, "FORWARD") == "DROP":
        firewall.set_policy("FORWARD", saved["forward_policy"])
    os.unlink(FORWARDING)


@dataclass
class Bridge(Step):
    """The bridge, its address and pyrun's firewall chains, where missing (kept: as Docker keeps docker0)"""

    kind = "bridge"
    network: str   # networks.Network's fields: its name, bridge, subnet and options
    bridge: str
    subnet: str
    internal: bool = False
    icc: bool = True
    host_access: bool = True

    def net(self) -> Network:
        return Network(self.network, self.bridge, self.subnet, self.internal, self.icc, self.host_access)

    def up(self, trace: Trace = None) -> None:
        """What was missing, each command with its time; if nothing was, the time the looking took."""
        started = time.monotonic()
        done = ensure_bridge(self.net())
        for command, seconds in done if trace else ():
            trace(command, seconds)
        if trace and not done:
            trace(f"# {self.bridge}, its address and pyrun's chains and rules are there already",
                  time.monotonic() - started)

    def shell_up(self) -> list[str]:
        """What ensure_bridge() does, as commands that, like it, change only what is missing."""
        name, subnet, gateway, prefix = self.bridge, self.subnet, self.net().gateway, self.net().prefixlen
        mac = bridge_mac(name)
        cmds = [f"ip link show {name} >/dev/null 2>&1 || ip link add {name} address {mac} type bridge",
                f"ip link set {name} address {mac}   # its own MAC, never its lowest port's",
                no_ipv6_shell(name),
                f"ip -4 addr show dev {name} | grep -q 'inet {gateway}/' || ip addr add {gateway}/{prefix} dev {name}",
                f"ip link set {name} up",
                f"sysctl -qw net.ipv4.conf.{name}.route_localnet=1   # this bridge only, never 'all'"]
        for table, chains in firewall.CHAINS.items():
            cmds += [f"iptables -t {table} -N {chain} 2>/dev/null || true" for chain in chains]
        for table, chain, rule in firewall.JUMPS:
            cmds.append(f"iptables -t {table} -C {chain} {rule} 2>/dev/null || "
                        f"iptables -t {table} -I {chain} 1 {rule}")
        for table, rule in firewall.bridge_rules(name, subnet, **self.net().policy):
            check = rule.replace("-A ", "-C ", 1)
            cmds.append(f"iptables -t {table} {check} 2>/dev/null || iptables -t {table} {rule}")
        cmds.append("[ \"$(sysctl -n net.ipv4.ip_forward)\" = 1 ] || { iptables -P FORWARD DROP; "
                    "sysctl -qw net.ipv4.ip_forward=1; }   # pyrun turns it on: not a router for anyone else")
        return cmds

    def undo_actions(self) -> list[Action]:
        """Nothing: the bridge stays for the next container, as docker0 does; `pyrun network rm` removes it."""
        return [(f"# {self.bridge} stays, with its rules and pyrun's chains, as Docker keeps docker0: "
                 f"'pyrun network rm {self.network}' removes it", lambda: None)]


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


@dataclass
class Ports(Step):
    """The published host ports: pyrun binds each one and holds it while the container runs"""

    kind = "ports"
    ports: list = field(default_factory=list)   # PortMapping fields as dicts, for the journal

    def __post_init__(self):
        self.sockets: list[socket.socket] = []

    def mappings(self) -> list[PortMapping]:
        return [PortMapping(**p) if isinstance(p, dict) else p for p in self.ports]

    def up(self, trace: Trace = None) -> None:
        """Bind every published host port, as Docker does, and hold the sockets while the container lives.

        The bind is the check: it fails if a host process or another container
        holds the port, or if the host has no such address.
        """
        try:
            super().up(trace)
        except BaseException:  # whatever failed, the sockets go: undoing the rest needs file descriptors too
            self.down()
            raise

    def actions(self) -> list[Action]:
        """A shell cannot hold a socket: the script checks the ports are free, pyrun's own among them (its
        monitor listens on each TCP port it publishes; a UDP port shows as bound)."""
        return [(f"if ss -H -l{'t' if p.proto == 'tcp' else 'u'}n 'sport = :{p.host_port}' | grep -q .; then "
                 f"echo 'host port {p.host_port}/{p.proto} is already in use (ss -lnp shows by whom)' >&2; exit 1; fi",
                 lambda p=p: self._hold(p)) for p in self.mappings()]

    def _hold(self, p: PortMapping) -> None:
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM if p.proto == "tcp" else socket.SOCK_DGRAM)
        except OSError as e:
            raise PyrunError("invalid -p", f"cannot hold {len(self.ports)} published ports, one socket each: "
                                           f"{e.strerror} (ulimit -n)") from None
        self.sockets.append(sock)
        try:
            sock.bind((p.host_ip or "0.0.0.0", p.host_port))
            if p.proto == "tcp":
                # Listening shows the reservation to `ss -ltnp` with its owner, as docker-proxy does.
                # It never gets a connection: the DNAT rules send every one to the container first.
                sock.listen(0)
        except OSError as e:
            why = {98: "is already in use (by a host process or another container)",
                   99: "cannot be bound: the host has no such address"}.get(e.errno, e.strerror)
            raise PyrunError("invalid -p", f"{p}: host port {p.host_ip or '0.0.0.0'}:{p.host_port}/"
                                           f"{p.proto} {why}") from None

    def down(self, trace: Trace = None) -> None:
        """Close the sockets (no command: a shell holds none); a pyrun that has died has closed them already."""
        while self.sockets:
            self.sockets.pop().close()


def check_published(spec, net: Network) -> None:
    """Refuse -p on an --internal network: nothing may reach its containers from outside, so a published port
    could never answer. (Docker accepts it and the port then silently does nothing.)"""
    if spec.ports and net.internal:
        raise PyrunError("invalid -p", f"{spec.ports[0]}: network {net.name} is --internal: nothing reaches its "
                                       "containers from outside; publish on another network")

