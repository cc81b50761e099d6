"""Published ports: "-p [IP:]HOST:CONTAINER[/tcp|udp]" parsed into PortMapping.

A published port is a DNAT rule: traffic to HOST port on a local address is
rewritten to the container's address and CONTAINER port (see firewall.py).
"""
import ipaddress
import resource
from dataclasses import dataclass

from runtime.errors import PyrunError

ACCEPTED = "[IP:]HOST:CONTAINER[/tcp|udp], ports 1-65535, ranges as 9000-9002:9000-9002"
# pyrun holds one socket per published port (hostports.Ports) and needs about 20 more file descriptors to
# set up and, above all, to undo: pipes for iptables, netlink, the journal. 64 leaves room.
FDS_OF_ITS_OWN = 64


@dataclass(frozen=True)
class PortMapping:
    host_ip: str | None   # None: every local address, like Docker's 0.0.0.0
    host_port: int
    container_port: int
    proto: str = "tcp"

    @property
    def loopback_only(self) -> bool:
        return self.host_ip is not None and ipaddress.IPv4Address(self.host_ip).is_loopback

    def __str__(self) -> str:
        ip = f"{self.host_ip}:" if self.host_ip else "0.0.0.0:"
        return f"{ip}{self.host_port}->{self.container_port}/{self.proto}"


def _bad(value: str, why: str) -> PyrunError:
    return PyrunError("invalid -p", f"{value!r}: {why}; expected {ACCEPTED}")


def _port_range(text: str, value: str) -> range:
    first, _, last = text.partition("-")
    try:
        lo, hi = int(first), int(last or first)
    except ValueError:
        raise _bad(value, f"{text!r} is not a port number") from None
    if not (1 <= lo <= hi <= 65535):
        raise _bad(value, f"port {text} is outside 1-65535")
    return range(lo, hi + 1)


def parse_port(value: str) -> list[PortMapping]:
    spec, _, proto = value.partition("/")
    proto = proto or "tcp"
    if proto not in ("tcp", "udp"):
        raise _bad(value, f"protocol {proto!r} is not supported")
    parts = spec.rsplit(":", 2)
    if len(parts) == 2:
        host_ip, host, container = None, *parts
    elif len(parts) == 3:
        host_ip, host, container = parts
        try:
            ip = ipaddress.ip_address(host_ip)
        except ValueError:
            raise _bad(value, f"{host_ip!r} is not an IP address") from None
        if ip.version != 4:
            raise _bad(value, "only IPv4 bind addresses are supported")
        host_ip = None if ip.is_unspecified else str(ip)
    else:
        raise _bad(value, "both a host and a container port are needed")
    hosts, containers = _port_range(host, value), _port_range(container, value)
    if len(hosts) != len(containers):
        raise _bad(value, f"host range {host} and container range {container} differ in size")
    return [PortMapping(host_ip, h, c, proto) for h, c in zip(hosts, containers)]


def check_fd_budget(ports: list[PortMapping]) -> None:
    """Refuse, before anything exists, more ports than the open-files limit lets pyrun hold and still undo."""
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if limit != resource.RLIM_INFINITY and len(ports) + FDS_OF_ITS_OWN > limit:
        raise PyrunError("invalid -p", f"{len(ports)} published ports need {len(ports) + FDS_OF_ITS_OWN} open "
                                       f"files (one socket each, and {FDS_OF_ITS_OWN} for pyrun), but the limit is "
                                       f"{limit}: publish fewer ports or raise it (ulimit -n)")
