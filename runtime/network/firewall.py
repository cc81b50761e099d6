"""iptables: forwarding, outbound NAT and published ports, the seed blog's rules done right.

Every rule lives in a chain pyrun owns, reached by one jump from a built-in
chain, and carries a comment: "pyrun bridge NAME" for the network's rules,
"pyrun:ID" for a container's. A container's rules are added in one
`iptables-restore --noflush` batch (atomic, one exec) and removed by their
comment, so pyrun never touches a rule it does not own.

The chains, and how they differ from the seed's rules:

filter FORWARD -> PYRUN-FORWARD
    (if pyrun is what turned ip_forward on, FORWARD's policy is DROP, as Docker
    makes it: the host forwards nothing but what these chains accept)
    every packet                -> PYRUN-INTERNAL   first, DNAT'd or not, for --internal networks only:
      PYRUN-INTERNAL  -i BR ! -o BR  DROP    nothing leaves: not to the world, not to another network,
                                             not even to a published port (that is DNAT'd: still a way out)
      PYRUN-INTERNAL  ! -i BR -o BR  DROP    nothing comes in from anywhere else
    not DNAT'd                  -> PYRUN-ISOLATION-1   first, as Docker's isolation chains:
      PYRUN-ISOLATION-1  -i BR ! -o BR  -> PYRUN-ISOLATION-2   from one pyrun network ...
      PYRUN-ISOLATION-2  -o BR          DROP                   ... into another: never directly;
                                         only through a published port, which is DNAT'd (and so skips this)
    -o BR conntrack RELATED,ESTABLISHED  ACCEPT   replies to the containers' connections
    -i BR ! -o BR                         ACCEPT   containers -> the world (not another pyrun network:
                                                   the isolation chains above dropped that); not --internal
    -i BR -o BR                           ACCEPT   container -> container; with icc=false instead:
    -i BR -o BR                           DROP       what a container routes to a neighbour through the
                                                   gateway, a published port's DNAT'd traffic too (its
                                                   frames straight to the neighbour never get here: the
                                                   bridge's isolated ports drop them; and br_netfilter
                                                   bridges a DNAT to the same bridge at layer 2, where
                                                   they drop it too: one answer either way)
    -o BR -> PYRUN-PUBLISHED                       per container: DNAT'd traffic to a published port
    -o BR                                 DROP     nothing else reaches a container from outside,
                                                   even from a host that routes the subnet to us
filter INPUT -> PYRUN-INPUT
    -i BR -d 127.0.0.0/8 (not DNAT/reply) DROP     route_localnet is on for BR; without this a
                                                   container could reach the host's 127.0.0.1
    -i BR (not DNAT/reply)                DROP     host_access=false (--internal's default): no service on
                                                   any of the host's addresses, the gateway's included
nat PREROUTING  (! -d 127/8, dst LOCAL) -> PYRUN-DNAT   from other hosts and from containers
nat OUTPUT      (dst LOCAL)             -> PYRUN-DNAT   from the host itself, 127.0.0.1 included
    per container: [-d IP] -p PROTO --dport HOST  DNAT --to CONTAINER_IP:PORT
    The seed's rules caught every packet to the port, whatever its destination;
    --dst-type LOCAL limits them to packets for this host. PREROUTING skips
    127/8 so a neighbour's forged packet to 127.0.0.1 is never DNAT'd
    (CVE-2020-8558), and a port published on 127.0.0.1 is DNAT'd from OUTPUT only.
nat POSTROUTING -> PYRUN-POSTROUTING
    -s SUBNET ! -o BR   MASQUERADE   containers -> the world leave with the host's address; not --internal
    -s 127/8 -o BR      MASQUERADE   the host's 127.0.0.1 cannot be a source on a wire
    -s SUBNET -o BR, DNAT'd  MASQUERADE   hairpin: a container reaching a published port
"""
import subprocess
from dataclasses import dataclass, field
from typing import Callable

from runtime.errors import PyrunError
from runtime.network.ports import PortMapping
from runtime.steps import Action, Step, fed

CHAINS = {"filter": ("PYRUN-FORWARD", "PYRUN-INTERNAL", "PYRUN-ISOLATION-1", "PYRUN-ISOLATION-2", "PYRUN-PUBLISHED",
                     "PYRUN-INPUT"),
          "nat": ("PYRUN-DNAT", "PYRUN-POSTROUTING")}
JUMPS = (("filter", "FORWARD", "-j PYRUN-FORWARD"),
         # Ahead of every bridge's accept rules, however many bridges come and go.
         ("filter", "PYRUN-FORWARD", "-m conntrack ! --ctstate DNAT -j PYRUN-ISOLATION-1"),
         ("filter", "PYRUN-FORWARD", "-j PYRUN-INTERNAL"),
         ("filter", "INPUT", "-j PYRUN-INPUT"),
         ("nat", "PREROUTING", "! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j PYRUN-DNAT"),
         ("nat", "OUTPUT", "-m addrtype --dst-type LOCAL -j PYRUN-DNAT"),
         ("nat", "POSTROUTING", "-j PYRUN-POSTROUTING"))


BRIDGE_TAG = "pyrun bridge "  # + the bridge's name: a network's rules; every pyrun bridge's begin so


def bridge_tag(bridge: str) -> str:
    """The comment on BRIDGE's rules."""
    return f"{BRIDGE_TAG}{bridge}"


def container_tag(cid: str) -> str:
    """The comment on a container's rules (and the mark `pyrun network inspect` and `doctor` look for)."""
    return f"pyrun:{cid}"


def _tag(text: str) -> str:
    return f'-m comment --comment "{text}"' if " " in text else f"-m comment --comment {text}"


def bridge_rules(bridge: str, subnet: str, internal: bool = False, icc: bool = True,
                 host_access: bool = True) -> list[tuple[str, str]]:
    """(table, rule) for a bridge network with these options (networks.Network.policy), in order."""
    tag = _tag(bridge_tag(bridge))
    out = [("filter", f"-A PYRUN-INTERNAL -i {bridge} ! -o {bridge} {tag} -j DROP"),
           ("filter", f"-A PYRUN-INTERNAL ! -i {bridge} -o {bridge} {tag} -j DROP")] if internal else []
    out += [
        ("filter", f"-A PYRUN-ISOLATION-1 -i {bridge} ! -o {bridge} {tag} -j PYRUN-ISOLATION-2"),
        ("filter", f"-A PYRUN-ISOLATION-2 -o {bridge} {tag} -j DROP"),
        ("filter", f"-A PYRUN-FORWARD -o {bridge} -m conntrack --ctstate RELATED,ESTABLISHED {tag} -j ACCEPT")]
    if not internal:
        out.append(("filter", f"-A PYRUN-FORWARD -i {bridge} ! -o {bridge} {tag} -j ACCEPT"))
    out += [
        ("filter", f"-A PYRUN-FORWARD -i {bridge} -o {bridge} {tag} -j ACCEPT") if icc else
        ("filter", f"-A PYRUN-FORWARD -i {bridge} -o {bridge} {tag} -j DROP"),
        ("filter", f"-A PYRUN-FORWARD -o {bridge} {tag} -j PYRUN-PUBLISHED"),
        ("filter", f"-A PYRUN-FORWARD -o {bridge} {tag} -j DROP"),
        ("filter", f"-A PYRUN-INPUT -i {bridge} -d 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT "
                   f"{tag} -j DROP")]
    if not host_access:
        out.append(("filter", f"-A PYRUN-INPUT -i {bridge} -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT "
                              f"{tag} -j DROP"))
    if not internal:
        out.append(("nat", f"-A PYRUN-POSTROUTING -s {subnet} ! -o {bridge} {tag} -j MASQUERADE"))
    out += [
        ("nat", f"-A PYRUN-POSTROUTING -s 127.0.0.0/8 -o {bridge} {tag} -j MASQUERADE"),
        ("nat", f"-A PYRUN-POSTROUTING -s {subnet} -o {bridge} -m conntrack --ctstate DNAT {tag} -j MASQUERADE"),
    ]
    return out


def container_rules(cid: str, bridge: str, address: str, ports: list[PortMapping]) -> list[tuple[str, str]]:
    tag = _tag(container_tag(cid))
    rules = []
    for p in ports:
        match = f"-p {p.proto} -m {p.proto}"
        dest = f"-d {p.host_ip}/32 " if p.host_ip else ""
        rules.append(("nat", f"-A PYRUN-DNAT {dest}{match} --dport {p.host_port} {tag} "
                             f"-j DNAT --to-destination {address}:{p.container_port}"))
        if not p.loopback_only:  # from OUTPUT only: such packets never cross FORWARD
            rules.append(("filter", f"-A PYRUN-PUBLISHED -d {address}/32 -o {bridge} {match} "
                                    f"--dport {p.container_port} -m conntrack --ctstate DNAT {tag} -j ACCEPT"))
    return rules


def _start(argv: list[str], stdin: str = "") -> Callable[[], str]:
    """Start ARGV reading STDIN; the returned function waits for it and returns its output, or raises
    PyrunError with its first line of errors."""
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
    except FileNotFoundError:
        raise PyrunError(argv[0], "not installed; run scripts/setup") from None
    with proc.stdin:
        proc.stdin.write(stdin)

    def wait() -> str:
        with proc.stdout, proc.stderr:
            out, error = proc.stdout.read(), proc.stderr.read()
        if proc.wait():
            raise PyrunError(argv[0], (error.strip() or f"exit status {proc.returncode}").splitlines()[0])
        return out
    return wait


def save() -> dict[str, list[str]]:
    """The current rules, table -> lines of iptables-save."""
    tables: dict[str, list[str]] = {}
    current = None
    for line in _start(["iptables-save"])().splitlines():
        if line.startswith("*"):
            current = tables.setdefault(line[1:], [])
        elif current is not None and line != "COMMIT" and not line.startswith("#"):
            current.append(line)
    return tables


def policy(current: dict[str, list[str]], chain: str) -> str:
    """The policy of CURRENT's (an iptables-save's) built-in filter CHAIN: ACCEPT or DROP. A table no rule has
    used yet is not listed at all, and its chains have the kernel's default policy, ACCEPT."""
    return next((line.split()[1] for line in current.get("filter", []) if line.startswith(f":{chain} ")), "ACCEPT")


def set_policy(chain: str, target: str) -> None:
    _start(["iptables", "--wait", "-P", chain, target])()


def restore(lines: list[tuple[str, str]]) -> None:
    """Apply (table, line) pairs in one atomic iptables-restore batch that flushes nothing."""
    start_restore(lines)()


RESTORE = ["iptables-restore", "--noflush", "--wait"]


def start_restore(lines: list[tuple[str, str]]) -> Callable[[], str]:
    """restore() in the background: returns the function that waits for it and raises if it failed."""
    text = "".join(f"{line}\n" for line in _batch(lines))
    return _start(RESTORE, text) if text else lambda: ""


def restore_shell(lines: list[tuple[str, str]], comment: str = "") -> str:
    """restore(LINES) as one command: iptables-restore reading the batch from a heredoc."""
    return fed(" ".join(RESTORE), _batch(lines), comment)


def _batch(lines: list[tuple[str, str]]) -> list[str]:
    """iptables-restore's input for (table, line) pairs: each table's lines, then COMMIT, which applies them."""
    out = []
    for table in ("filter", "nat"):
        body = [line for t, line in lines if t == table]
        if body:
            out += [f"*{table}", *body, "COMMIT"]
    return out


def missing_bridge_setup(current: dict[str, list[str]], bridge: str, subnet: str,
                         policy: dict | None = None) -> list[tuple[str, str]]:
    """What is missing of the chains, jumps and BRIDGE's rules (with POLICY, bridge_rules' options). Declaring
    an existing chain would flush it."""
    out = [(table, f":{c} - [0:0]") for table, c in _chains(current, present=False)]
    for table, chain, rule in JUMPS:
        if f"-A {chain} {rule}" not in current.get(table, []):
            out.append((table, f"-I {chain} 1 {rule}"))
    if not rules_tagged(current, bridge_tag(bridge)):
        out += bridge_rules(bridge, subnet, **(policy or {}))
    return out


def remove_chains(current: dict[str, list[str]]) -> None:
    """Undo the chains and jumps missing_bridge_setup() adds: the jumps first, then the emptied chains."""
    jumps = [(table, f"-D {chain} {rule}") for table, chain, rule in JUMPS
             if f"-A {chain} {rule}" in current.get(table, [])]
    chains = _chains(current, present=True)
    restore(jumps + [(table, f"-F {c}") for table, c in chains] + [(table, f"-X {c}") for table, c in chains])


def _chains(current: dict[str, list[str]], present: bool) -> list[tuple[str, str]]:
    """(table, chain) for pyrun's chains that CURRENT (an iptables-save) has, or with PRESENT false, lacks."""
    return [(table, c) for table, names in CHAINS.items() for c in names
            if any(line.startswith(f":{c} ") for line in current.get(table, [])) == present]


def rules_tagged(current: dict[str, list[str]], tag: str, prefix: bool = False) -> list[tuple[str, str]]:
    """Delete commands for every rule whose comment is exactly TAG, or with PREFIX begins with it."""
    out = []
    for table, lines in current.items():
        for line in lines:
            if line.startswith("-A ") and (f"--comment {tag} " in line or f'--comment "{tag}" ' in line
                                           or prefix and f'--comment "{tag}' in line):
                out.append((table, "-D " + line[3:]))
    return out


@dataclass
class ContainerRules(Step):
    """The published ports: DNAT and accept rules tagged with the container's id, added and removed as one
    batch"""

    kind = "iptables"
    cid: str
    bridge: str
    address: str
    ports: list = field(default_factory=list)   # PortMapping fields as dicts, for the journal

    def mappings(self) -> list[PortMapping]:
        return [PortMapping(**p) if isinstance(p, dict) else p for p in self.ports]

    def _rules(self, undo: bool = False) -> list[tuple[str, str]]:
        rules = container_rules(self.cid, self.bridge, self.address, self.mappings())
        return [(t, r.replace("-A ", "-D ", 1)) for t, r in rules] if undo else rules

    def actions(self) -> list[Action]:
        return [(restore_shell(self._rules()), lambda: restore(self._rules()))]

    def undo_actions(self) -> list[Action]:
        """Delete the rules up() added, in one batch, in the background: a finisher waits for it. If any is gone
        already (the batch then deletes nothing), the finisher deletes whatever still carries the container's
        tag instead, as CNI's DEL forgives what is missing."""
        return [(restore_shell(self._rules(undo=True), "one gone already? pyrun then deletes "
                                                       f"those still tagged {container_tag(self.cid)}"), self._delete)]

    def _delete(self) -> Callable[[], None]:
        batch = start_restore(self._rules(undo=True))

        def finish() -> None:
            try:
                batch()
            except PyrunError:
                restore(rules_tagged(save(), container_tag(self.cid)))
        return finish
