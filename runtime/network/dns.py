"""/etc/hostname, /etc/hosts and /etc/resolv.conf: the files Docker writes for every container.

They are written in the container's state directory and bind-mounted over
the rootfs's own, so the rootfs is not changed and every container gets its
own. A resolver on the host's loopback (systemd-resolved's 127.0.0.53, a
local dnsmasq) is unreachable from the container's own network namespace, so
such nameservers are dropped, and if none is left pyrun falls back to
public resolvers, as Docker does; it says so on stderr.
"""
import os
import sys

FALLBACK_NAMESERVERS = ("8.8.8.8", "8.8.4.4")
HOST_RESOLV_CONF = "/etc/resolv.conf"


def resolv_conf(host_text: str, network: str) -> tuple[str, bool]:
    """The container's resolv.conf from the host's; True when the fallback was needed."""
    if network == "host":
        return host_text, False
    lines, servers = [], 0
    for line in host_text.splitlines():
        words = line.split()
        if words[:1] == ["nameserver"] and len(words) > 1:
            if words[1].startswith("127.") or words[1] == "::1":
                continue
            servers += 1
        lines.append(line)
    if servers:
        return "\n".join(lines) + "\n", False
    lines += [f"nameserver {ip}" for ip in FALLBACK_NAMESERVERS]
    return "\n".join(lines) + "\n", True


def hosts(hostname: str, address: str | None) -> str:
    text = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
    if address:
        return text + f"{address}\t{hostname}\n"
    return text + f"127.0.1.1\t{hostname}\n"


def write_files(directory: str, hostname: str, address: str | None, network: str) -> list[tuple[str, str, bool]]:
    """Write the three files into DIRECTORY; return the bind mounts (source, target, readonly)."""
    try:
        with open(HOST_RESOLV_CONF) as f:
            host_resolv = f.read()
    except FileNotFoundError:
        host_resolv = ""
    resolv, fell_back = resolv_conf(host_resolv, network)
    if fell_back and network != "none":
        print(f"pyrun: the host's resolv.conf names no resolver reachable from a container; "
              f"using {', '.join(FALLBACK_NAMESERVERS)}", file=sys.stderr)
    files = {"hostname": hostname + "\n", "hosts": hosts(hostname, address), "resolv.conf": resolv}
    binds = []
    for name, text in files.items():
        path = os.path.join(directory, name)
        with open(path, "w") as f:
            f.write(text)
        binds.append((path, f"/etc/{name}", False))
    return binds
