"""The bridge network: a Linux bridge on the host, a veth pair per container, through netlink.

This is the seed blog's recipe as a program. The bridge pyrun0 is a virtual
switch with the gateway address; each container gets a veth pair, a virtual
cable whose host end is plugged into the bridge and whose other end is
created inside the container's network namespace as eth0 (veth.py). rtnl.py
speaks netlink, the same protocol `ip` uses, with no `ip` processes. This
module is the bridge itself, made once and kept, and the networks that name
one (create_network, remove_network).

    setup (host)                        undo
    bridge pyrun0, its own MAC, gateway stays, like docker0 ('pyrun network rm')
    route_localnet on the bridge        goes with the bridge
    IPv6 off on the bridge, each veth   goes with the link (pyrun sets up no IPv6: no RA is heard)
    ip_forward on; if pyrun turned it   stays while any pyrun bridge does; the last 'pyrun network rm'
      on, FORWARD's policy DROP         puts back what pyrun changed (an admin's own setting is kept)
    published host ports held           closed (hostports.py)
    lease an address (ipam.py)          release it
    ip netns name for the container     unmount it (veth.py)
    its port's frame filter (portguard) delete its ebtables chain
    veth pair (its port in hairpin      delete the host end (the peer goes with it) (veth.py)
    mode, isolated with icc=false),
    eth0 addressed, route
    published ports (firewall.py)       delete the rules by their comment
"""
import hashlib
import ipaddress
import os
import time
from dataclasses import dataclass

from runtime import state
from runtime.errors import PyrunError
from runtime.network import firewall, host, networks, rtnl
from runtime.network.networks import Network
from runtime.record import Record
from runtime.steps import Action, Step, Trace, perform

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

