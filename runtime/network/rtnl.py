"""rtnetlink: the socket protocol `ip` speaks to the kernel, one message per change.

Every request is a netlink message: a header (RTM_NEWLINK, RTM_NEWADDR, ...,
with flags such as CREATE|EXCL), a fixed struct (ifinfmsg: family, type,
index, flags) and typed attributes (IFLA_IFNAME "eth0", IFLA_MASTER 3, ...).
The kernel answers each request with an acknowledgement or an errno, and a
dump request with messages until NLMSG_DONE. A netlink socket belongs to the
network namespace it was opened in, whatever namespace its owner moves to
later: that is how pyrun configures a container's eth0 from the outside.

pyroute2 encodes and decodes the messages. pyrun loads only its three
rtnetlink message classes: the package's own __init__ imports every protocol
pyroute2 knows, asyncio included, which takes longer (~190 ms) than the rest
of a container's start.
"""
import importlib
import importlib.util
import os
import socket
import struct
import sys

from runtime.errors import PyrunError

NETLINK_ROUTE = 0
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP = 0x1, 0x4, 0x300
NLM_F_EXCL, NLM_F_CREATE = 0x200, 0x400
NLMSG_ERROR, NLMSG_DONE = 2, 3
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_GETADDR = 20, 22
RTM_NEWROUTE, RTM_GETROUTE = 24, 26
IFF_UP = 0x1
RT_TABLE_MAIN, RTPROT_BOOT, RTN_UNICAST = 254, 3, 1
_HEADER = struct.Struct("=IHHII")   # struct nlmsghdr: length, type, flags, sequence, port id


def _messages():
    """pyroute2's ifinfmsg, ifaddrmsg and rtmsg, imported without running pyroute2/__init__.py."""
    if "pyroute2" not in sys.modules:
        # An unexecuted module object for the package: its submodules import as usual from its path.
        sys.modules["pyroute2"] = importlib.util.module_from_spec(importlib.util.find_spec("pyroute2"))
    return tuple(importlib.import_module(f"pyroute2.netlink.rtnl.{m}").__dict__[m]
                 for m in ("ifinfmsg", "ifaddrmsg", "rtmsg"))


class Session:
    """One rtnetlink socket in the network namespace this process is in when it is opened."""

    def __init__(self):
        self.ifinfmsg, self.ifaddrmsg, self.rtmsg = _messages()
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
        self.sock.bind((0, 0))
        self.seq = 0

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def _request(self, what: str, cls, kind: int, flags: int, fields: dict, attrs: list, dump=False) -> list:
        """Send one request; return the kernel's answer, or raise NetlinkError naming WHAT and the errno.

        A dump ends with NLMSG_DONE; any other request asks for an acknowledgement
        (NLMSG_ERROR with errno 0), which follows the answer to a get."""
        self.seq += 1
        msg = cls()
        msg.update(fields)
        msg["attrs"] = attrs
        msg["header"]["type"] = kind
        msg["header"]["flags"] = NLM_F_REQUEST | flags | (NLM_F_DUMP if dump else NLM_F_ACK)
        msg["header"]["sequence_number"] = self.seq
        msg.encode()
        self.sock.send(msg.data)
        replies = []
        while True:
            data, offset = self.sock.recv(1 << 16), 0
            while offset < len(data):
                length, reply_kind, _, seq, _ = _HEADER.unpack_from(data, offset)
                if seq == self.seq:
                    if reply_kind == NLMSG_ERROR:
                        errno = -struct.unpack_from("=i", data, offset + _HEADER.size)[0]
                        if errno:
                            raise NetlinkError(what, errno)
                        return replies
                    if reply_kind == NLMSG_DONE:
                        return replies
                    reply = cls(data[offset:offset + length])
                    reply.decode()
                    replies.append(reply)
                offset += length

    # Links: ip link

    def link(self, name: str):
        """The link called NAME (`ip link show NAME`), or None."""
        try:
            return self._request(f"ip link show {name}", self.ifinfmsg, RTM_GETLINK, 0, {},
                                 [("IFLA_IFNAME", name)])[0]
        except NetlinkError as e:
            if e.errno == 19:   # ENODEV
                return None
            raise

    def index(self, name: str) -> int | None:
        link = self.link(name)
        return link["index"] if link else None

    def add_bridge(self, name: str, mac: str) -> None:
        """A bridge with MAC as its own address (without one, a bridge takes its lowest port's)."""
        self._new_link(f"ip link add {name} address {mac} type bridge", name, "bridge", [],
                       [("IFLA_ADDRESS", mac)])

    def set_address(self, index: int, mac: str) -> None:
        self._request(f"ip link set {index} address {mac}", self.ifinfmsg, RTM_NEWLINK, 0, {"index": index},
                      [("IFLA_ADDRESS", mac)])

    def add_veth(self, name: str, master: int, peer: str, peer_mac: str, peer_netns_pid: int) -> None:
        """A veth pair: NAME here, plugged into MASTER; PEER created inside PID's network namespace. Both down."""
        peer_attrs = [("IFLA_IFNAME", peer), ("IFLA_ADDRESS", peer_mac), ("IFLA_NET_NS_PID", peer_netns_pid)]
        self._new_link(f"ip link add {name} master {master} type veth peer name {peer}", name, "veth",
                       [("VETH_INFO_PEER", {"attrs": peer_attrs})], [("IFLA_MASTER", master)])

    def _new_link(self, what: str, name: str, kind: str, data: list, attrs: list) -> None:
        """Links are created down, so that what must hold before traffic flows (sysctls) can be set first."""
        info = [("IFLA_INFO_KIND", kind)] + ([("IFLA_INFO_DATA", {"attrs": data})] if data else [])
        attrs = [("IFLA_IFNAME", name), ("IFLA_LINKINFO", {"attrs": info})] + attrs
        self._request(what, self.ifinfmsg, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, {}, attrs)

    def up_hairpin(self, index: int, isolated: bool = False) -> None:
        """Bring bridge port INDEX up in hairpin mode: the bridge may send a frame back out of the port it came
        in by (a container's request to its own published port, DNAT'd back to it). ISOLATED: the bridge never
        forwards a frame from this port to another isolated port, only to the bridge itself and to ports that
        are not isolated."""
        brport = [("IFLA_BRPORT_MODE", 1)] + ([("IFLA_BRPORT_ISOLATED", 1)] if isolated else [])
        port = [("IFLA_INFO_SLAVE_KIND", "bridge"), ("IFLA_INFO_SLAVE_DATA", {"attrs": brport})]
        what = "hairpin on isolated on" if isolated else "hairpin on"
        self._request(f"ip link set {index} type bridge_slave {what} up", self.ifinfmsg, RTM_NEWLINK, 0,
                      {"index": index, "flags": IFF_UP, "change": IFF_UP}, [("IFLA_LINKINFO", {"attrs": port})])

    def up(self, index: int) -> None:
        self._request(f"ip link set {index} up", self.ifinfmsg, RTM_NEWLINK, 0,
                      {"index": index, "flags": IFF_UP, "change": IFF_UP}, [])

    def delete(self, name: str) -> bool:
        """Delete the link NAME (a veth pair goes with either end); False if there was none."""
        try:
            self._request(f"ip link del {name}", self.ifinfmsg, RTM_DELLINK, 0, {}, [("IFLA_IFNAME", name)])
        except NetlinkError as e:
            if e.errno == 19:   # ENODEV
                return False
            raise
        return True

    # Addresses and routes: ip addr, ip route

    def addresses(self, index: int) -> list[str]:
        """The IPv4 addresses of link INDEX."""
        dump = self._request("ip -4 addr show", self.ifaddrmsg, RTM_GETADDR, 0,
                             {"family": socket.AF_INET}, [], dump=True)
        return [m.get_attr("IFA_LOCAL") for m in dump if m["index"] == index]

    def add_address(self, index: int, address: str, prefixlen: int) -> None:
        self._request(f"ip addr add {address}/{prefixlen} dev {index}", self.ifaddrmsg, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL,
                      {"family": socket.AF_INET, "prefixlen": prefixlen, "index": index},
                      [("IFA_LOCAL", address), ("IFA_ADDRESS", address)])

    def routes(self) -> list[tuple[str, int]]:
        """(destination, prefix length) of every IPv4 route in the main table."""
        dump = self._request("ip -4 route show", self.rtmsg, RTM_GETROUTE, 0, {"family": socket.AF_INET}, [],
                             dump=True)
        return [(m.get_attr("RTA_DST") or "0.0.0.0", m["dst_len"]) for m in dump
                if (m.get_attr("RTA_TABLE") or m["table"]) == RT_TABLE_MAIN]

    def add_default_route(self, gateway: str) -> None:
        self._request(f"ip route add default via {gateway}", self.rtmsg, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL,
                      {"family": socket.AF_INET, "table": RT_TABLE_MAIN, "proto": RTPROT_BOOT, "type": RTN_UNICAST},
                      [("RTA_GATEWAY", gateway)])


class NetlinkError(PyrunError):
    """The kernel refused a request: names the request as the `ip` command that sends it, and the errno."""

    def __init__(self, what: str, errno: int):
        super().__init__("netlink", f"{what}: {os.strerror(errno)}")
        self.errno = errno
