"""IP address management: one file per leased address, like CNI's host-local plugin.

A lease is the file /run/pyrun-net/ipam/BRIDGE/ADDRESS holding the container
id. It lives beside the state roots, not in one: a bridge is the host's, and
two state roots (--root) whose containers share pyrun0 must never hand out
the same address (CNI's host-local keeps /var/lib/cni/networks/NAME host-wide
for the same reason). Addresses are chosen under the host's lock (host.py)
and the file is created with O_EXCL, so fifty containers started at once get
fifty addresses. The gateway (the subnet's first address) and the broadcast
address are never handed out.
"""
import ipaddress
import os
import shlex
from dataclasses import dataclass

from runtime import leasefile
from runtime.errors import PyrunError
from runtime.network import host
from runtime.steps import Action, Step


def gateway(subnet: str) -> ipaddress.IPv4Address:
    """The bridge's own address: the subnet's first, as Docker's docker0 has 172.17.0.1."""
    return ipaddress.IPv4Network(subnet).network_address + 1


def lease_dir(network: str) -> str:
    return os.path.join(host.HOST_DIR, "ipam", network)


def leases(network: str) -> dict[str, str]:
    """address -> id of the container holding it, for every lease on NETWORK (a bridge), from any state root."""
    directory = lease_dir(network)
    out = {}
    for address in sorted(os.listdir(directory)) if os.path.isdir(directory) else []:
        try:
            with open(os.path.join(directory, address)) as f:
                out[address] = f.read().strip()
        except FileNotFoundError:
            continue  # released while we looked
    return out


def next_free(network: str, subnet: str) -> str:
    """The lowest address no lease holds. Call under host.locked()."""
    net = ipaddress.IPv4Network(subnet)
    directory = lease_dir(network)
    taken = {str(gateway(subnet))} | set(os.listdir(directory) if os.path.isdir(directory) else [])
    for address in net.hosts():
        if str(address) not in taken:
            return str(address)
    raise PyrunError("ipam", f"network {network} ({subnet}) has no free address: {len(taken) - 1} leases held; "
                             "remove stopped containers with 'pyrun prune'")


@dataclass
class Lease(Step):
    """An address for the container, one file per lease"""

    kind = "lease"
    network: str
    address: str
    cid: str

    @property
    def path(self) -> str:
        return os.path.join(lease_dir(self.network), self.address)

    def actions(self) -> list[Action]:
        return [(f"mkdir -p {shlex.quote(lease_dir(self.network))}",
                 lambda: os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)),
                (f"echo {self.cid} > {shlex.quote(self.path)}   # lease {self.address}: the file is the lease",
                 lambda: leasefile.take(self.path, self.cid))]

    def undo_actions(self) -> list[Action]:
        return [(f"rm {shlex.quote(self.path)}", lambda: leasefile.release(self.path, self.cid))]
