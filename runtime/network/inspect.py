"""pyrun network inspect: a network as the kernel sees it, in words, in a drawing, or as Graphviz dot.

Everything shown is read back from the kernel, not from pyrun's records
alone: the veth pair's interface indexes (the host end's "link" attribute is
the peer's ifindex inside the container: `ip -d link` prints it as
pvXXX@if2), the addresses, and pyrun's iptables rules with their packet and
byte counters (`iptables-save -c`), which show which rule a packet matched.
"""
from runtime.network import networks
from runtime.record import Record


def gather(root: str, name: str) -> dict:
    from runtime.network.bridge import netlink
    from runtime.network.veth import host_end, netns_name
    from runtime.network.doctor import holder

    net = networks.get(root, name, None)
    records = {r.id: r for r in Record.every(root)}
    containers = []
    with netlink() as nl:
        for cid in networks.holders(net):
            record = records.get(cid)
            if not record:
                continue
            end = host_end(cid)
            link = nl.link(end)
            containers.append({
                "name": record.name, "id": cid[:12], "host_end": end,
                "host_ifindex": link["index"] if link else None,
                "peer_ifindex": link.get_attr("IFLA_LINK") if link else None,
                "netns": netns_name(record.name, root), "ip": record.ip, "mac": record.mac,
                "ports": record.published(),
                # who holds each host port, as `ss -lnp` names it
                "held_by": [holder(host_port, port.split("/")[1]) for port, _, host_port in record.bindings()]})
    return {"network": net.name, "bridge": net.bridge, "subnet": net.subnet, "gateway": net.gateway,
            **net.policy, "options": net.options, "containers": containers, "rules": _rules(net, containers)}


def _rules(net: networks.Network, containers: list[dict]) -> list[str]:
    """pyrun's rules for this network and its containers, with [packets:bytes] counters."""
    import subprocess

    from runtime.network.firewall import bridge_tag, container_tag

    tags = [bridge_tag(net.bridge)] + [container_tag(c["id"]) for c in containers]
    out, table = [], ""
    for line in subprocess.run(["iptables-save", "-c"], capture_output=True, text=True).stdout.splitlines():
        if line.startswith("*"):
            table = line[1:]
        elif line.startswith("[") and any(t in line for t in tags):
            counters, rule = line.split(" ", 1)
            out.append(f"{counters:>14} {table:6} {rule}")
    return out


def text(info: dict) -> str:
    lines = [f"network {info['network']}: bridge {info['bridge']}, subnet {info['subnet']}, "
             f"gateway {info['gateway']} (the bridge's own address)",
             f"options {info['options']}: its containers reach " + ", ".join(_meaning(info)), ""]
    if not info["containers"]:
        lines.append("no containers")
    for c in info["containers"]:
        lines += [f"container {c['name']} ({c['id']})",
                  f"  veth pair: {c['host_end']} (ifindex {c['host_ifindex']}, on {info['bridge']})"
                  f" <-> eth0 (ifindex {c['peer_ifindex']}) in netns {c['netns']}",
                  f"  eth0: {c['ip']}, MAC {c['mac']}   see: ip netns exec {c['netns']} ip addr",
                  f"  published: {', '.join(f'{p} (held by {h})' for p, h in zip(c['ports'], c['held_by'])) or 'nothing'}"]
    lines += ["", "pyrun's rules for it, with [packets:bytes] (iptables-save -c):", *info["rules"], "",
              "topology:", *drawing(info)]
    return "\n".join(lines)


def _meaning(info: dict) -> list[str]:
    """What the network's options let its containers reach, in words."""
    return ["nothing beyond the bridge (internal)" if info["internal"] else "the world, through NAT",
            "each other" if info["icc"] else "not each other (icc=false: isolated bridge ports)",
            "the host's services" if info["host_access"] else "not the host's services (host_access=false)"]


def drawing(info: dict) -> list[str]:
    """An ASCII picture: the host, its bridge, and a veth pair ('=') to each container."""
    lines = ["  other hosts ---(host's own interfaces)--- [ host ]",
             f"                                              | {info['bridge']} {info['gateway']}"]
    for i, c in enumerate(info["containers"]):
        last = i == len(info["containers"]) - 1
        ports = f"  {', '.join(c['ports'])}" if c["ports"] else ""
        lines.append(f"                                              {'`' if last else '+'}-- {c['host_end']} ===="
                     f" eth0 {c['ip']} [{c['name']}]{ports}")
    return lines


def dot(info: dict) -> str:
    """Graphviz: `pyrun network inspect --format dot | dot -Tsvg > net.svg`."""
    out = ["graph pyrun {", "  rankdir=LR; node [shape=box];",
           f'  host [label="host"]; bridge [label="{info["bridge"]}\\n{info["gateway"]}"]; host -- bridge;']
    for c in info["containers"]:
        label = f'{c["name"]}\\neth0 {c["ip"]}' + "".join(f"\\n{p}" for p in c["ports"])
        out.append(f'  "{c["id"]}" [label="{label}"]; bridge -- "{c["id"]}" [label="{c["host_end"]}"];')
    out.append("}")
    return "\n".join(out)


def svg(info: dict) -> str:
    """The dot drawing rendered by Graphviz's dot, which must be installed (apt install graphviz)."""
    import subprocess

    from runtime.errors import PyrunError

    try:
        return subprocess.run(["dot", "-Tsvg"], input=dot(info), capture_output=True, text=True, check=True).stdout
    except FileNotFoundError:
        raise PyrunError("network inspect", "--format svg needs Graphviz's dot: apt install graphviz, "
                                            "or use --format dot") from None
