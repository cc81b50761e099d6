"""Networks: the default bridge and user-defined ones, each its own Linux bridge and subnet.

`pyrun network create --subnet 10.123.0.0/24 NAME` makes a bridge (named
pr-ID, within the 15 characters an interface name may have) with the
subnet's first address, pyrun's forwarding and NAT rules for it, and a record
STATE_ROOT/networks/NAME.json. Containers started with `--network NAME` get
addresses from it and, unlike on the default network (as in Docker), find
each other by name: each one's /etc/hosts lists the others (dns.HostsEntry).

A network's options say what its containers may reach besides each other
(firewall.bridge_rules turns them into rules, tagged with the bridge's name):

    --internal          no way out: nothing is forwarded from the bridge to any other interface, and no NAT;
                        no published ports (refused, as they could not work); no host services either
    --opt icc=false     containers on it cannot reach each other, only the gateway: each port on the bridge is
                        isolated (the kernel's bridge port isolation) and the host routes nothing between them
    --opt host_access=false
                        the host's own services, on any of its addresses, are out of reach from the network:
                        only replies to the host's connections come in. Off by default with --internal only;
                        the default network and user networks allow it, as Docker does

`pyrun network rm NAME` is the mirror image, refused while a container holds
an address on it. The default network "bridge" (pyrun0) is made on first
use and can be removed the same way; pyrun's chains go with the last bridge.
"""
import ipaddress
import os
from dataclasses import asdict, dataclass

from runtime import state
from runtime.errors import PyrunError
from runtime.network import ipam

DEFAULT_NAME = "bridge"
DEFAULT_BRIDGE = "pyrun0"
# A private /16 that is neither Docker's 172.17/16 nor Podman's 10.88/16.
DEFAULT_SUBNET = "10.199.0.0/16"


@dataclass(frozen=True)
class Network:
    name: str
    bridge: str
    subnet: str
    # The options, in the record; a record written before they existed reads as Docker's defaults.
    internal: bool = False
    icc: bool = True
    host_access: bool = True

    @property
    def policy(self) -> dict:
        """What firewall.bridge_rules() takes: the options that make rules."""
        return {"internal": self.internal, "icc": self.icc, "host_access": self.host_access}

    @property
    def options(self) -> str:
        """The options that differ from the default, as `network ls` shows them: "internal,icc=false"."""
        words = ["internal"] if self.internal else []
        words += [] if self.icc else ["icc=false"]
        if self.host_access == self.internal:  # its default is the opposite of internal's
            words.append(f"host_access={str(self.host_access).lower()}")
        return ",".join(words) or "-"

    @property
    def gateway(self) -> str:
        return str(ipam.gateway(self.subnet))

    @property
    def prefixlen(self) -> int:
        return ipaddress.IPv4Network(self.subnet).prefixlen

    @property
    def user_defined(self) -> bool:
        return self.name != DEFAULT_NAME


def default() -> Network:
    """The default network, on PYRUN_SUBNET if that is set: a bad value is refused before anything is made."""
    subnet = os.environ.get("PYRUN_SUBNET")
    return Network(DEFAULT_NAME, DEFAULT_BRIDGE, parse_subnet(subnet, "PYRUN_SUBNET") if subnet else DEFAULT_SUBNET)


def _path(root: str, name: str) -> str:
    return os.path.join(root, "networks", f"{name}.json")


def all_networks(root: str) -> list[Network]:
    directory = os.path.join(root, "networks")
    names = sorted(f[:-5] for f in os.listdir(directory) if f.endswith(".json")) if os.path.isdir(directory) else []
    return [default()] + [Network(**state.read_json(_path(root, n))) for n in names]


def get(root: str, name: str, option: str | None = "--network") -> Network:
    """The network NAME; an unknown one is bad input to OPTION, or with None to a NETWORK argument."""
    for net in all_networks(root):
        if net.name == name:
            return net
    if option is None:
        raise PyrunError("no such network", f"{name!r}; expected bridge or a name from 'pyrun network ls'")
    raise PyrunError(f"invalid {option}", f"{name!r}: no such network; expected one of bridge, none, host "
                                          "or a name from 'pyrun network ls'")


def parse_subnet(value: str, what: str = "--subnet") -> str:
    try:
        net = ipaddress.IPv4Network(value, strict=True)
    except ValueError as e:
        raise PyrunError(f"invalid {what}", f"{value!r}: {e}; expected an IPv4 network such as 10.123.0.0/24") \
            from None
    if not net.is_private or net.prefixlen > 30:  # a /30: the gateway and one container
        raise PyrunError(f"invalid {what}", f"{value!r}: expected a private IPv4 network of /30 or larger "
                                            "(10/8, 172.16/12 or 192.168/16)")
    return str(net)


# --opt KEY: the record's field. Docker's own key for icc is accepted too, so that its commands paste.
OPTIONS = {"icc": "icc", "com.docker.network.bridge.enable_icc": "icc", "host_access": "host_access"}
BOOLEANS = {"true": True, "1": True, "false": False, "0": False}


def parse_options(values: list[str], internal: bool) -> dict:
    """--internal and every --opt KEY=BOOL, as the record's fields."""
    out = {"internal": internal, "icc": True, "host_access": not internal}
    for value in values:
        key, _, text = value.partition("=")
        if key not in OPTIONS or text.lower() not in BOOLEANS:
            raise PyrunError("invalid --opt", f"{value!r}: expected icc=true|false or host_access=true|false")
        out[OPTIONS[key]] = BOOLEANS[text.lower()]
    return out


def holders(net: Network) -> list[str]:
    """The ids of the containers holding an address on NET, of this state root or another."""
    return list(ipam.leases(net.bridge).values())


def create(root: str, name: str, subnet: str, options: dict | None = None) -> Network:
    """Make the network's bridge and rules and record it. Call with a validated NAME, SUBNET and OPTIONS
    (parse_options)."""
    from runtime.network import bridge

    if name in ("none", "host"):
        raise PyrunError("network create", f"{name!r} is reserved: --network {name} needs no network")
    with state.locked(root):
        for net in all_networks(root):
            if net.name == name:
                raise PyrunError("network create", f"{name!r}: a network of this name exists")
            if ipaddress.IPv4Network(net.subnet).overlaps(ipaddress.IPv4Network(subnet)):
                raise PyrunError("network create", f"{subnet} overlaps network {net.name} ({net.subnet})")
        net = Network(name, f"pr-{os.urandom(6).hex()}", subnet, **(options or {}))
        bridge.ensure_bridge(net)  # refuses a subnet that overlaps one of the host's routes
        os.makedirs(os.path.join(root, "networks"), exist_ok=True)
        state.write_json(_path(root, name), asdict(net))
    return net


def remove(root: str, name: str) -> None:
    from runtime.network import bridge, host

    with state.locked(root), host.locked():  # the host's lock too: no other root leases on it meanwhile
        net = get(root, name, None)
        users = holders(net)
        if users:
            known = {r["Id"]: r["Name"] for r in state.all_records(root)}
            names = [known.get(cid, f"{cid[:12]} (of another --root)") for cid in users]
            raise PyrunError("network rm", f"network {name} is in use by {', '.join(names)}; remove them first")
        bridge.remove_bridge(net)
        if net.user_defined:
            os.unlink(_path(root, name))


def describe(root: str) -> list[dict]:
    return [{**asdict(n), "gateway": n.gateway, "containers": len(holders(n)), "options": n.options}
            for n in all_networks(root)]

