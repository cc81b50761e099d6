"""Published host ports, held: each one bound (bind(2)) while the container runs, as docker-proxy holds them.

The DNAT rules (firewall.py) send a published port's traffic to the
container, but nothing in them keeps a host process or another container
from taking the same port. Binding it is the check that it is free (the
bind fails if anyone holds it, or if the host has no such address), and
holding the socket keeps it so; a TCP port listens, so that `ss -ltnp`
names its owner. The socket never gets a connection: the rules send every
one to the container first. An --internal network takes no -p at all
(check_published).
"""
import socket
from dataclasses import dataclass, field

from runtime.errors import PyrunError
from runtime.network.networks import Network
from runtime.network.ports import PortMapping
from runtime.steps import Action, Step, Trace


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

