"""/etc/hostname, /etc/hosts and /etc/resolv.conf: the files Docker writes for every container.

They are written in the container's state directory and bind-mounted over
the rootfs's own, so the rootfs is not changed and every container gets its
own. A resolver on the host's loopback (systemd-resolved's 127.0.0.53, a
local dnsmasq) is unreachable from the container's own network namespace, so
such nameservers are dropped, and if none is left pyrun falls back to
public resolvers, as Docker does; it says so on stderr.

On a user-defined network containers find each other by name, as on
Docker's user-defined networks: HostsEntry adds the others to a new
container's /etc/hosts and the new one to theirs. The files are bind mounts,
so they are rewritten in place (same inode), never replaced.
"""
import os
import shlex
import sys
from dataclasses import dataclass

from runtime import state
from runtime.record import Record
from runtime.steps import Action, Step, Trace, heredoc

NAMES = ("hostname", "hosts", "resolv.conf")
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


def files(hostname: str, address: str | None, network: str) -> tuple[dict[str, str], bool]:
    """The texts of /etc/hostname, /etc/hosts and /etc/resolv.conf; True when resolv.conf fell back."""
    try:
        with open(HOST_RESOLV_CONF) as f:
            host_resolv = f.read()
    except FileNotFoundError:
        host_resolv = ""
    resolv, fell_back = resolv_conf(host_resolv, network)
    return dict(zip(NAMES, (hostname + "\n", hosts(hostname, address), resolv))), fell_back


def etc_dir(container_dir: str) -> str:
    """Where a container's /etc files live on the host: in its layer directory, a nosuid,nodev mount
    (rootfs.Layer). They are writable binds, so a container can put a program in /etc/hosts and
    chmod 4755 it; there, that file is no setuid program on the host."""
    from runtime.rootfs import layer_dir

    return layer_dir(container_dir)


def write_files(directory: str, hostname: str, address: str | None, network: str) -> None:
    """Write the three files into DIRECTORY, as the EtcFiles step does."""
    EtcFiles(directory, hostname, address, network).up()


def _warn_fallback(fell_back: bool, network: str) -> None:
    if fell_back and network != "none":
        print(f"pyrun: the host's resolv.conf names no resolver reachable from a container; "
              f"using {', '.join(FALLBACK_NAMESERVERS)}", file=sys.stderr)


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def _append(path: str, lines: list[str]) -> None:
    with open(path, "a") as f:
        f.writelines(lines)


@dataclass
class EtcFiles(Step):
    """/etc/hostname, /etc/hosts and /etc/resolv.conf for the container, in its layer directory"""

    kind = "etc"
    directory: str
    hostname: str
    address: str | None
    network: str

    def binds(self) -> list[tuple[str, str, bool]]:
        """The bind mounts (source, target, readonly) that put them over the rootfs's own."""
        return [(os.path.join(self.directory, name), f"/etc/{name}", False) for name in NAMES]

    def up(self, trace: Trace = None) -> None:
        _warn_fallback(files(self.hostname, self.address, self.network)[1], self.network)
        super().up(trace)

    def actions(self) -> list[Action]:
        """Each file written, then opened to the container's own users (their 0700 directory keeps host users
        out)."""
        out = []
        for name, text in files(self.hostname, self.address, self.network)[0].items():
            path = os.path.join(self.directory, name)
            out += [("\n".join(heredoc(path, text.rstrip("\n").splitlines())), lambda p=path, t=text: _write(p, t)),
                    (f"chmod 0644 {shlex.quote(path)}", lambda p=path: os.chmod(p, 0o644))]
        return out


@dataclass
class HostsEntry(Step):
    """Containers on the same user-defined network list each other in /etc/hosts"""

    kind = "hosts"
    root: str
    bridge: str   # the network's bridge, which names its lease directory
    cid: str
    name: str
    address: str

    def _peers(self) -> list[tuple[str, str, str]]:
        """(hosts file, address, name) of every other container holding an address on the network."""
        from runtime.network import ipam

        out = []
        for address, cid in ipam.leases(self.bridge).items():
            if cid == self.cid:
                continue
            try:
                name = Record.load(self.root, cid).name
            except (FileNotFoundError, ValueError):
                continue
            out.append((os.path.join(etc_dir(state.container_dir(self.root, cid)), "hosts"), address, name))
        return out

    def _own(self) -> str:
        return os.path.join(etc_dir(state.container_dir(self.root, self.cid)), "hosts")

    def up(self, trace: Trace = None) -> None:
        with state.locked(self.root):  # the peers are read and written under it, in actions()
            super().up(trace)

    def down(self, trace: Trace = None) -> None:
        with state.locked(self.root):
            super().down(trace)

    def actions(self) -> list[Action]:
        """Its peers, all in one printf, appended to its own file; then it, to each of theirs."""
        peers = self._peers()
        own = [(f"printf '%s\\t%s\\n' {' '.join(f'{address} {name}' for _, address, name in peers)} "
                f">> {shlex.quote(self._own())}",
                lambda: _append(self._own(), [f"{address}\t{name}\n" for _, address, name in peers]))] if peers else []
        return own + [(f"printf '%s\\t%s\\n' {self.address} {self.name} >> {shlex.quote(path)}",
                       lambda p=path: _append(p, [f"{self.address}\t{self.name}\n"])) for path, _, _ in peers]

    def undo_actions(self) -> list[Action]:
        """Its line out of each peer's file, rewritten in place: the file is bind-mounted."""
        line = f"$(printf '%s\\t%s' {self.address} {self.name})"
        return [(f'grep -vx "{line}" {p} > {p}.new; cat {p}.new > {p}; rm {p}.new   # in place: the file is '
                 'bind-mounted', lambda path=path: self._forget(path))
                for path, p in ((path, shlex.quote(path)) for path, _, _ in self._peers())]

    def _forget(self, path: str) -> None:
        mine = f"{self.address}\t{self.name}\n"
        try:
            with open(path, "r+") as f:
                lines = [line for line in f if line != mine]
                f.seek(0)
                f.writelines(lines)
                f.truncate()
        except FileNotFoundError:
            pass
