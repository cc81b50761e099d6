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
    8. something listens on the container's port, and not only on its 127.0.0.1
"""
from runtime import state
from runtime.errors import PyrunError
from runtime.network import firewall

_FOREIGN = ("ufw", "DOCKER", "FORWARD_", "f2b", "CILIUM", "KUBE")


def _sysctl(name: str) -> str:
    try:
        with open("/proc/sys/" + name.replace(".", "/")) as f:
            return f.read().strip()
    except FileNotFoundError:
        return "missing"


def _publisher(root: str, port: int) -> tuple[dict, str, str]:
    from runtime.lifecycle import status

    for record in state.all_records(root):
        for container_port, binds in record.get("NetworkSettings", {}).get("Ports", {}).items():
            for b in binds:
                if int(b["HostPort"]) == port and status(record) == "running":
                    return record, container_port, b["HostIp"]
    raise PyrunError("doctor", f"no running container publishes port {port} (see 'pyrun ps')")


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


def walk(root: str, port: int) -> list[tuple[bool, str]]:
    """(ok, what) for each hop in order, stopping at the first that fails."""
    from runtime.network import networks
    from runtime.network.bridge import netns_name

    record, container_port, host_ip = _publisher(root, port)
    net = networks.get(root, record["HostConfig"]["NetworkMode"])
    address = record["NetworkSettings"]["IPAddress"]
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
    dnat = [line for line in nat if line.startswith("-A PYRUN-DNAT") and f"--dport {port} " in line
            and f"pyrun:{record['Id']}" in line]
    checks = [
        (True, f"container {record['Name']} publishes {host_ip}:{port} -> {address}:{container_port}", ""),
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
        (host_ip.startswith("127.") or any(line.startswith("-A PYRUN-PUBLISHED") and f"-d {address}/32" in line
                                           and f"--dport {cport} " in line for line in filt),
         f"PYRUN-PUBLISHED accepts DNAT'd packets to {address}:{cport}",
         f"no accept rule for {address}:{cport} in PYRUN-PUBLISHED: forwarded packets end in the DROP"),
        (_sysctl(f"net.ipv4.conf.{net.bridge}.route_localnet") == "1",
         f"route_localnet is on for {net.bridge}: 127.0.0.1:{port} from the host can be DNAT'd",
         f"route_localnet is off for {net.bridge}: the host's own 127.0.0.1:{port} cannot reach the container; "
         f"sysctl -w net.ipv4.conf.{net.bridge}.route_localnet=1"),
    ]
    for ok, good, bad in checks:
        if not hop(ok, good, bad):
            return steps
    listening = _listening(record["State"]["Pid"], int(cport), proto)
    reachable = listening & {"0.0.0.0", "::", address}
    hop(bool(reachable), f"the container listens on {', '.join(sorted(reachable))}:{cport}/{proto}",
        f"in the container {('only ' + ', '.join(sorted(listening)) + ' listens') if listening else 'nothing listens'}"
        f" on port {cport}/{proto}: a server must listen on 0.0.0.0 (or {address}) to be reached through "
        f"the bridge; see ip netns exec {netns_name(record['Name'], root)} ss -lnt")
    return steps


def report(root: str, port: int) -> int:
    steps = walk(root, port)
    for number, (ok, what) in enumerate(steps, 1):
        print(f"{number}. {'ok  ' if ok else 'FAIL'} {what}")
    return 0 if all(ok for ok, _ in steps) else 1

