"""A container's port on the bridge sends only from the container's own MAC and its leased address.

A bridge believes what it is told: NET_RAW is among a container's default
capabilities, so any container can write Ethernet frames that say they come
from another one. A gratuitous ARP "10.199.0.2 is at my MAC" makes the host
send the victim's traffic to the attacker; a frame from the victim's MAC
teaches the bridge that the victim now sits on the attacker's port; an IPv4
packet from the victim's address passes for the victim's. Docker's defaults
allow all three. pyrun drops them where they enter the bridge.

ebtables filters frames on a bridge as iptables filters packets (Debian's
iptables package ships it, on nftables). Its nat table's PREROUTING chain
sees each frame coming in from a port before the bridge learns its source or
decides where it goes, whether to the host or to another container. Each
container gets a chain of its own, named from its id, jumped to for frames
in from its veth's host end:

    ebtables -t nat -A PREROUTING -i pvID -j PYRUN-ID
    PYRUN-ID (policy RETURN):
      -s MAC -p ARP --arp-mac-src MAC --arp-ip-src IP  RETURN   ARP about its own address, from its own MAC
      -s MAC -p IPv4 --ip-src IP                       RETURN   IPv4 from its own address and MAC
      -j DROP                                                   all else: other sources, IPv6 (pyrun sets
                                                                up none), VLAN tags, other protocols
"""
from dataclasses import dataclass
from typing import Callable

from runtime.errors import PyrunError
from runtime.network.firewall import _start
from runtime.steps import Action, Step, fed

RESTORE = ["ebtables-restore", "--noflush"]


def _restore(lines: list[str]) -> Callable[[], str]:
    """Start one atomic ebtables-restore batch into the nat table that flushes nothing; returns its waiter."""
    return _start(RESTORE, "".join(f"{line}\n" for line in _batch(lines)))


def _batch(lines: list[str]) -> list[str]:
    return ["*nat", *lines, "COMMIT"]


@dataclass
class PortGuard(Step):
    """Its port on the bridge passes only frames from its own MAC and address (no ARP spoofing): a chain of
    its own and the jump to it"""

    kind = "ebtables"
    cid: str
    port: str      # the veth's host end, the container's port on the bridge
    mac: str
    address: str

    @property
    def chain(self) -> str:
        return f"PYRUN-{self.cid[:12]}"

    def rules(self) -> list[str]:
        """The chain's rules, then the jump to it."""
        own = f"-s {self.mac}"
        return [f"-A {self.chain} {own} -p ARP --arp-mac-src {self.mac} --arp-ip-src {self.address} -j RETURN",
                f"-A {self.chain} {own} -p IPv4 --ip-src {self.address} -j RETURN",
                f"-A {self.chain} -j DROP",
                f"-A PREROUTING -i {self.port} -j {self.chain}"]

    def _undo(self) -> list[str]:
        return [f"-D PREROUTING -i {self.port} -j {self.chain}", f"-F {self.chain}", f"-X {self.chain}"]

    def _setup(self) -> list[str]:
        return [f":{self.chain} RETURN"] + self.rules()

    def actions(self) -> list[Action]:
        return [(fed(" ".join(RESTORE), _batch(self._setup())), lambda: _restore(self._setup())())]

    def undo_actions(self) -> list[Action]:
        """Remove the jump and the chain in one batch, in the background: a finisher waits for it. If either is
        gone already (the batch then changes nothing), the finisher removes whichever is still there, as CNI's
        DEL forgives what is missing."""
        return [(fed(" ".join(RESTORE), _batch(self._undo()), "one gone already? pyrun then removes what is left"),
                 self._remove)]

    def _remove(self) -> Callable[[], None]:
        batch = _restore(self._undo())

        def finish() -> None:
            try:
                batch()
            except PyrunError:
                current = _start(["ebtables-save", "-t", "nat"])().splitlines()
                jump, flush, delete = self._undo()
                left = [jump] if "-A" + jump[2:] in current else []
                if f":{self.chain} RETURN" in current:
                    left += [flush, delete]
                if left:
                    _restore(left)()
        return finish
