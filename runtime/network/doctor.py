"""pyrun doctor -p PORT: walk a published port's packet path and name the first hop that fails.

A packet from another host to HOST_IP:PORT, or from the host to
127.0.0.1:PORT, passes these in order; each check reads the kernel's own
state (sysctls, iptables-save, the container's /proc/net) and says what to
look at, so the walk doubles as a lesson in where packets go:

    1. a running container publishes PORT                  pyrun's records, checked against the kernel
    2. nat PREROUTING/OUTPUT jump to PYRUN-DNAT            iptables -t nat -S PREROUTING
    3. the DNAT rule for PORT in PYRUN-DNAT                iptables -t nat -S PYRUN-DNAT
    4. ip_forward is on                                    sysctl net.ipv4.ip_forward
    5. FORWARD reaches PYRUN-FORWARD before anything drops  iptables -S FORWARD (ufw, firewalld, Docker)
    6. the accept rule in PYRUN-PUBLISHED                  iptables -S PYRUN-PUBLISHED
    7. route_localnet on the bridge (127.0.0.1 only)       sysctl net.ipv4.conf.BRIDGE.route_localnet
    8. the bridge is up                                    ip link show BRIDGE
    9. the container's veth is plugged into the bridge, up  ip link show pvID
   10. the container's eth0 is up, with a default route    ip netns exec pyrun-NAME ip link / ip route
   11. something listens on the container's port, and not only on its 127.0.0.1
   12. a real connection: from the host, and from a throwaway namespace playing another machine,
       through the host's own address (for a port published on 127.0.0.1: that it is NOT reachable)

The last hop proves what the others only infer. Its "other machine" is a
network namespace with no name, joined to the host by a veth pair on
169.254.123.0/30, that exists only while doctor's probe process lives: if
doctor dies, the kernel removes the namespace and the veth pair with it.
"""
import json
import os
import socket
import subprocess

from runtime.errors import PyrunError
from runtime.network import firewall
from runtime.record import Record

_FOREIGN = ("ufw", "DOCKER", "FORWARD_", "f2b", "CILIUM", "KUBE")


def _sysctl(name: str) -> str:
    try:
        with open("/proc/sys/" + name.replace(".", "/")) as f:
            return f.read().strip()
    except FileNotFoundError:
        return "missing"


def _publisher(root: str, port: int) -> tuple[Record, str, str]:
    for record in Record.every(root):
        for container_port, host_ip, host_port in record.bindings():
            if host_port == port and record.status() == "running":
                return record, container_port, host_ip
    raise PyrunError("doctor", f"no running container publishes port {port} (see 'pyrun ps')")


def holder(port: int, proto: str) -> str:
    """Who holds the host's PORT, as `ss -lnp` names it: "pyrun-monitor (pid 42)"."""
    inodes = set()
    for table in (proto, proto + "6"):
        try:
            with open(f"/proc/net/{table}") as f:
                rows = [row.split() for row in f.read().splitlines()[1:]]
        except FileNotFoundError:
            continue
        inodes |= {row[9] for row in rows if int(row[1].rsplit(":", 1)[1], 16) == port}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if any(os.readlink(f"/proc/{pid}/fd/{fd}")[8:-1] in inodes for fd in os.listdir(f"/proc/{pid}/fd")):
                with open(f"/proc/{pid}/comm") as f:
                    return f"{f.read().strip()} (pid {pid})"
        except OSError:
            continue  # gone, or not ours to see
    return "nobody"


def _listening(pid: int, port: int, proto: str) -> set[str]:
    """The addresses a socket in PID's network namespace listens on at PORT (from /proc/PID/net/tcp)."""
    found = set()
    for table in (proto, proto + "6"):
        try:
            with open(f"/proc/{pid}/net/{table}") as f:
                rows = f.read().splitlines()[1:]
        except FileNotFoundError:
            continue
        for row in rows:
            local, state_ = row.split()[1], row.split()[3]
            address, hexport = local.rsplit(":", 1)
            if int(hexport, 16) != port or (proto == "tcp" and state_ != "0A"):  # 0A: LISTEN
                continue
            if len(address) == 8:
                found.add(".".join(str(int(address[i:i + 2], 16)) for i in (6, 4, 2, 0)))
            else:
                found.add("::" if int(address, 16) == 0 else "::1" if address.endswith("01000000") else "ipv6")
    return found


def _ip(args: list[str], pid: int | None = None) -> list:
    """`ip -j ARGS` (in PID's network namespace), parsed; [] if the object does not exist."""
    prefix = ["nsenter", f"--net=/proc/{pid}/ns/net"] if pid else []
    out = subprocess.run([*prefix, "ip", "-j", *args], capture_output=True, text=True)
    return json.loads(out.stdout or "[]") if out.returncode == 0 else []


def _link_checks(root: str, record: Record, bridge: str) -> list[tuple[bool, str, str]]:
    """The wire: the bridge, the veth pair and the container's side of it, as `ip link` shows them."""
    from runtime.network.veth import host_end, netns_name

    end, pid, inside = host_end(record.id), record.pid, f"ip netns exec {netns_name(record.name, root)}"
    br = (_ip(["link", "show", "dev", bridge]) or [{}])[0]
    veth = (_ip(["link", "show", "dev", end]) or [{}])[0]
    eth0 = (_ip(["link", "show", "dev", "eth0"], pid) or [{}])[0]
    gateway = record.gateway
    default = [r for r in _ip(["route", "show", "default"], pid) if r.get("gateway") == gateway]
    return [
        ("UP" in br.get("flags", []), f"the bridge {bridge} is up",
         f"the bridge {bridge} is down: nothing crosses it; ip link set {bridge} up"),
        (veth.get("master") == bridge, f"{end}, the host end of the container's veth pair, is plugged into {bridge}",
         f"{end} is not plugged into {bridge}" + (f" (its master is {veth['master']})" if veth.get("master") else "")
         + f": the bridge cannot forward to it; ip link set {end} master {bridge}" if veth else
         f"{end}, the host end of the container's veth pair, is missing: remove and run the container again"),
        ("UP" in veth.get("flags", []), f"{end} is up", f"{end} is down; ip link set {end} up"),
        ("UP" in eth0.get("flags", []), "the container's eth0 is up",
         f"the container's eth0 is down; {inside} ip link set eth0 up"),
        (bool(default), f"the container routes by default via {gateway}, so its replies find the way back",
         f"the container has no default route via {gateway}: its replies to other networks go nowhere; "
         f"{inside} ip route add default via {gateway}"),
    ]


def _connects(address: str, port: int, pid: int | None = None) -> bool:
    """Does a TCP connection to ADDRESS:PORT succeed within 2 s (from PID's network namespace)?"""
    if pid is None:
        try:
            socket.create_connection((address, port), timeout=2).close()
            return True
        except OSError:
            return False
    probe = f"import socket; socket.create_connection(({address!r}, {port}), timeout=2).close()"
    return subprocess.run(["nsenter", f"--net=/proc/{pid}/ns/net", "python3", "-c", probe],
                          capture_output=True).returncode == 0


_PROBE_HOST, _PROBE_PEER = "169.254.123.1", "169.254.123.2"


def _from_another_machine(address: str, port: int) -> bool:
    """Connect to the host's ADDRESS:PORT from a namespace of its own, as another machine would."""
    end = f"pyprobe{os.getpid()}"[:15]
    holder = subprocess.Popen(["unshare", "--net", "--kill-child", "sleep", "30"], stdin=subprocess.DEVNULL)
    try:
        mine = os.readlink("/proc/self/ns/net")
        while os.readlink(f"/proc/{holder.pid}/ns/net") == mine:  # until unshare(2) has happened
            pass
        inside = ["nsenter", f"--net=/proc/{holder.pid}/ns/net"]
        for command in (["ip", "link", "add", end, "type", "veth", "peer", "name", "eth0", "netns", str(holder.pid)],
                        ["ip", "addr", "add", f"{_PROBE_HOST}/30", "dev", end], ["ip", "link", "set", end, "up"],
                        [*inside, "ip", "link", "set", "eth0", "up"],
                        [*inside, "ip", "addr", "add", f"{_PROBE_PEER}/30", "dev", "eth0"],
                        [*inside, "ip", "route", "add", "default", "via", _PROBE_HOST]):
            subprocess.run(command, check=True, capture_output=True)
        return _connects(address, port, holder.pid)
    finally:
        holder.kill()
        holder.wait()
        subprocess.run(["ip", "link", "del", end], capture_output=True)  # gone with the namespace already


def walk(root: str, port: int) -> list[tuple[bool, str]]:
    """(ok, what) for each hop in order, stopping at the first that fails."""
    from runtime.network import networks
    from runtime.network.veth import netns_name

    record, container_port, host_ip = _publisher(root, port)
    net = networks.get(root, record.network)
    address = record.ip
    cport, proto = container_port.split("/")
    tables = firewall.save()
    nat, filt = tables.get("nat", []), tables.get("filter", [])
    steps: list[tuple[bool, str]] = []

    def hop(ok: bool, good: str, bad: str) -> bool:
        steps.append((ok, good if ok else bad))
        return ok

    forward = [line for line in filt if line.startswith("-A FORWARD ")]
    ours = next((i for i, line in enumerate(forward) if line.endswith("-j PYRUN-FORWARD")), None)
    in_the_way = [line for line in forward[:ours] if any(x in line for x in ("DROP", "REJECT", *_FOREIGN))] \
        if ours is not None else []
    # pyrun's own chain may hold a rule someone else put there; pyrun's rules all carry its comment.
    foreign = [line for line in filt if line.startswith(("-A PYRUN-FORWARD ", "-A PYRUN-PUBLISHED "))
               and "pyrun" not in line.split("--comment", 1)[-1] and ("DROP" in line or "REJECT" in line)]
    dnat = [line for line in nat if line.startswith("-A PYRUN-DNAT") and f"--dport {port} " in line
            and firewall.container_tag(record.id) in line]
    checks = [
        (True, f"container {record.name} publishes {host_ip}:{port} -> {address}:{container_port}; "
               f"{holder(port, proto)} holds the port (ss -lnp 'sport = :{port}')", ""),
        (all(f"-A {c} {r}" in nat for t, c, r in firewall.JUMPS if t == "nat" and c in ("PREROUTING", "OUTPUT")),
         "nat PREROUTING and OUTPUT jump to PYRUN-DNAT for local destinations",
         "nat PREROUTING or OUTPUT has no jump to PYRUN-DNAT: see iptables -t nat -S PREROUTING; "
         "'pyrun run' adds it again"),
        (bool(dnat), f"DNAT rule: {dnat[0][3:] if dnat else ''}",
         f"no DNAT rule for port {port} in PYRUN-DNAT: see iptables -t nat -S PYRUN-DNAT"),
        (_sysctl("net.ipv4.ip_forward") == "1", "net.ipv4.ip_forward = 1: the host routes between interfaces",
         "net.ipv4.ip_forward is off: the host does not forward packets to the bridge; "
         "sysctl -w net.ipv4.ip_forward=1"),
        (ours is not None and not in_the_way, "FORWARD jumps to PYRUN-FORWARD before anything that drops",
         "FORWARD does not reach PYRUN-FORWARD first: " + ("; ".join(in_the_way) if in_the_way else "no jump")
         + " (a host firewall such as ufw, firewalld or Docker's chains is in the way); see iptables -S FORWARD"),
        (not foreign, "pyrun's chains hold only pyrun's rules",
         f"a rule that is not pyrun's drops in its chain: {foreign[0][3:] if foreign else ''}; "
         f"iptables -D {foreign[0][3:] if foreign else ''}"),
        (host_ip.startswith("127.") or any(line.startswith("-A PYRUN-PUBLISHED") and f"-d {address}/32" in line
                                           and f"--dport {cport} " in line for line in filt),
         f"PYRUN-PUBLISHED accepts DNAT'd packets to {address}:{cport}",
         f"no accept rule for {address}:{cport} in PYRUN-PUBLISHED: forwarded packets end in the DROP"),
        (_sysctl(f"net.ipv4.conf.{net.bridge}.route_localnet") == "1",
         f"route_localnet is on for {net.bridge}: 127.0.0.1:{port} from the host can be DNAT'd",
         f"route_localnet is off for {net.bridge}: the host's own 127.0.0.1:{port} cannot reach the container; "
         f"sysctl -w net.ipv4.conf.{net.bridge}.route_localnet=1"),
        *_link_checks(root, record, net.bridge),
    ]
    for ok, good, bad in checks:
        if not hop(ok, good, bad):
            return steps
    listening = _listening(record.pid, int(cport), proto)
    reachable = listening & {"0.0.0.0", "::", address}
    hop(bool(reachable), f"the container listens on {', '.join(sorted(reachable))}:{cport}/{proto}",
        f"in the container {('only ' + ', '.join(sorted(listening)) + ' listens') if listening else 'nothing listens'}"
        f" on port {cport}/{proto}: a server must listen on 0.0.0.0 (or {address}) to be reached through "
        f"the bridge; see ip netns exec {netns_name(record.name, root)} ss -lnt")
    if not reachable or proto != "tcp":
        return steps  # a UDP server need not answer anything doctor could send
    specific = host_ip not in ("", "0.0.0.0")
    local = host_ip if specific else "127.0.0.1"
    if not hop(_connects(local, port), f"the host connects to {local}:{port}",
               f"the host cannot connect to {local}:{port} although every hop above looks right"):
        return steps
    outside = _from_another_machine(host_ip if specific and not host_ip.startswith("127.") else _PROBE_HOST, port)
    if host_ip.startswith("127."):
        hop(not outside, f"another machine cannot reach port {port}: it is published on {host_ip} only",
            f"another machine reaches port {port}, which is published on {host_ip} only (CVE-2020-8558)")
    else:
        hop(outside, f"another machine connects to the host's address, port {port}",
            f"another machine cannot connect to the host's address, port {port}, although the host itself can")
    return steps


def report(root: str, port: int) -> int:
    steps = walk(root, port)
    for number, (ok, what) in enumerate(steps, 1):
        print(f"{number}. {'ok  ' if ok else 'FAIL'} {what}")
    return 0 if all(ok for ok, _ in steps) else 1

