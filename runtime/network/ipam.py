"""IP address management: one file per leased address, like CNI's host-local plugin.

A lease is the file STATE_ROOT/ipam/NETWORK/ADDRESS holding the container id.
Addresses are chosen under the state root's lock and the file is created
with O_EXCL, so fifty containers started at once get fifty addresses. The
gateway (the subnet's first address) and the broadcast address are never
handed out.
"""
import ipaddress
import os
import shlex
from dataclasses import dataclass

from runtime.errors import PyrunError
from runtime.steps import Step


def gateway(subnet: str) -> ipaddress.IPv4Address:
    """The bridge's own address: the subnet's first, as Docker's docker0 has 172.17.0.1."""
    return ipaddress.IPv4Network(subnet).network_address + 1


def lease_dir(root: str, network: str) -> str:
    return os.path.join(root, "ipam", network)


def leases(root: str, network: str) -> dict[str, str]:
    """address -> id of the container holding it, for every lease on NETWORK."""
    directory = lease_dir(root, network)
    out = {}
    for address in sorted(os.listdir(directory)) if os.path.isdir(directory) else []:
        try:
            with open(os.path.join(directory, address)) as f:
                out[address] = f.read().strip()
        except FileNotFoundError:
            continue  # released while we looked
    return out


def next_free(root: str, network: str, subnet: str) -> str:
    """The lowest address no lease holds. Call under state.locked(root)."""
    net = ipaddress.IPv4Network(subnet)
    directory = lease_dir(root, network)
    taken = {str(gateway(subnet))} | set(os.listdir(directory) if os.path.isdir(directory) else [])
    for address in net.hosts():
        if str(address) not in taken:
            return str(address)
    raise PyrunError("ipam", f"network {network} ({subnet}) has no free address: {len(taken) - 1} leases held; "
                             "remove stopped containers with 'pyrun prune'")


@dataclass
class Lease(Step):
    kind = "lease"
    root: str
    network: str
    address: str
    cid: str

    @property
    def path(self) -> str:
        return os.path.join(lease_dir(self.root, self.network), self.address)

    def up(self) -> None:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        with os.fdopen(fd, "w") as f:
            f.write(self.cid)

    def down(self) -> None:
        try:
            with open(self.path) as f:
                holder = f.read().strip()
        except FileNotFoundError:
            return
        if holder == self.cid:  # the journal records a lease before taking it: never free another's
            os.unlink(self.path)

    def shell_up(self) -> list[str]:
        return [f"mkdir -p {shlex.quote(lease_dir(self.root, self.network))}",
                f"echo {self.cid} > {shlex.quote(self.path)}   # lease {self.address}: the file is the lease"]

    def shell_down(self) -> list[str]:
        return [f"rm {shlex.quote(self.path)}"]
