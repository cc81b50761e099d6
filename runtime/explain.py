"""pyrun run --explain: the same container, built by hand, as a shell script a learner can read and run.

Nothing is changed: the script is printed, not run. Its host-side commands
come from the very Step objects that `pyrun run` journals and runs (their
shell_up() and shell_down()), the bridge's from the same rule tables
(bridge.ensure_bridge_shell), and the container side's from rootfs.build_shell,
kept beside rootfs.build. Where the kernel interface has no shell command
(pyrun holds each published port's socket; it opens the container's terminal
in its own devpts), the script says so in a comment.

The output is two scripts: the setup, and below the TEARDOWN line the
teardown, which is the setup's steps undone in reverse, as `pyrun` does.
"""
import os
import shlex

from runtime import init, namespaces, rootfs, state, userns
from runtime.cgroups import Cgroup
from runtime.container import Layer
from runtime.network import dns
from runtime.spec import ContainerSpec

TEARDOWN = "# ======== TEARDOWN: run what follows to undo all of the above ========"
PID = "$PID"  # the shell variable that holds the container's first process
_UNSHARE = {"user": "--user", "mnt": "--mount", "uts": "--uts", "ipc": "--ipc", "net": "--net", "pid": "--pid"}  # namespaces.FLAGS


def explain(spec: ContainerSpec, root: str) -> str:
    cid = os.urandom(32).hex()
    cdir = state.container_dir(root, cid)
    hostname = spec.hostname or cid[:12]
    setup: list[tuple[str, list[str]]] = []
    steps = []  # the journaled steps, in order, for the teardown

    def step(title: str, obj=None, commands: list[str] = ()):
        if obj is not None:
            steps.append(obj)
            commands = obj.shell_up()
        setup.append((title, list(commands)))

    cgroup = Cgroup(cid, spec.resources.memory, spec.resources.cpus, spec.resources.pids_limit)
    step("a cgroup per controller, with the limits (runtime/cgroups.py)", cgroup)
    ids = userns.IdRange(userns.next_free(), cid) if spec.userns == "auto" else None
    if ids:
        step("--userns=auto: a range of host uids and gids of its own, one file per lease (runtime/userns.py)", ids)
    step("the writable layer: overlayfs upper, work and mount directories (runtime/container.py)",
         Layer(os.path.join(cdir, "layer"), ids.base if ids else None))
    network = _network(spec, root, cid)
    if network:
        step("the bridge, its address and pyrun's firewall chains, where missing (runtime/network/bridge.py)",
             commands=network["bridge"])
        if spec.ports:
            step("the published host ports: pyrun binds each one and holds it while the container runs "
                 "(a shell cannot hold a socket; check that they are free)",
                 commands=[f"! ss -H -l{'t' if p.proto == 'tcp' else 'u'}n 'sport = :{p.host_port}' | grep -q ."
                           for p in spec.ports])
        step("an address for the container, one file per lease (runtime/network/ipam.py)", network["lease"])
    etc, _ = dns.files(hostname, network["address"] if network else None, spec.network)
    step("/etc/hostname, /etc/hosts and /etc/resolv.conf for the container (runtime/network/dns.py)",
         commands=[line for name, text in etc.items()
                   for line in _heredoc(f"{dns.etc_dir(cdir)}/{name}", text.rstrip("\n").splitlines())])
    binds = [(f"{dns.etc_dir(cdir)}/{name}", f"/etc/{name}", False) for name in etc]
    step("the container's side, run in its new namespaces: rootfs, hostname, wait for the network, "
         "drop privileges, exec (runtime/rootfs.py, runtime/init.py)",
         commands=_heredoc(f"{cdir}/init.sh", _init_script(spec, cdir, hostname, binds, bool(network))))
    unshare = "unshare --fork --kill-child " + " ".join(_UNSHARE[kind]
                                                        for kind in namespaces.kinds(spec.network, spec.userns))
    joins = [f"echo $BASHPID > {shlex.quote(f'{path}/cgroup.procs')}" for path in cgroup.paths()]
    c = shlex.quote(cdir)
    step("start it: join the cgroup, then new namespaces; the first process's children are in the new "
         "PID namespace (runtime/process.py, runtime/init.py)",
         commands=["(", *[f"  {j}" for j in joins], f"  exec {unshare} sh {shlex.quote(f'{cdir}/init.sh')}",
                   f") > {shlex.quote(f'{cdir}/container.log')} 2>&1 < /dev/null &", "PID=$!",
                   "# wait until unshare(2) has happened: before it, /proc/$PID/ns/* are still the host's",
                   'until [ "$(readlink /proc/$PID/ns/mnt)" != "$(readlink /proc/$$/ns/mnt)" ]; do sleep 0.01; done',
                   "echo \"the container's first process is $PID\""])
    if ids:
        step("--userns=auto: pyrun writes the new user namespace's maps from the host, as root may without "
             "newuidmap (pyrun does it before the other namespaces are made: runtime/init.py)",
             commands=userns.shell_map(PID, ids, spec.rootfs))
    if network:
        for title, obj in network["attach"]:
            step(title, obj)

    members = [shlex.quote(f"{path}/cgroup.procs") for path in cgroup.paths()]
    teardown = [("stop the container: kill every process in its cgroup (pyrun tears down once it has exited)",
                 [f"xargs -r kill -9 < {members[0]}", f"while [ -s {members[0]} ]; do sleep 0.05; done"])]
    teardown += [(f"undo: {type(obj).__name__} ({obj.kind})", obj.shell_down()) for obj in reversed(steps)]
    teardown.append(("remove the container's directory", [f"rm -rf {c}"]))

    header = ["#!/bin/bash",
              # repr: a newline in the command would end the comment and run the rest as a command
              f"# pyrun run --explain: by hand, what `pyrun run` would do for {repr(shlex.join(spec.command))[1:-1]}",
              "# Run as root. pyrun has changed nothing; each numbered step is one of its own.",
              "set -euo pipefail",
              "umask 077   # pyrun's state is root's alone (runtime/state.py)",
              f"export CID={cid}   # the container's id (pyrun makes a new one each time)",
              f"export C={c.replace(cid, '$CID') if c == cdir else c}   # its state directory", ""]
    if ids:  # the container's root can follow no path through root's state directory, and make no device
        header[3:3] = ["# --userns=auto: to read, not to run: pyrun hands the container its mounts as file",
                       "# descriptors opened on the host, and binds the host's /dev nodes, where a shell cannot."]
    text = "\n".join(_numbered(setup) + ["", TEARDOWN, "set +e   # go on past what is already gone, as pyrun's teardown does", ""] + _numbered(teardown))
    if c != cdir:  # the state directory needed quoting, and $C inside quotes would not be expanded
        return "\n".join(header) + "\n" + text
    return "\n".join(header) + "\n" + text.replace(cdir, "$C").replace(cid, "$CID")


def _numbered(sections: list[tuple[str, list[str]]]) -> list[str]:
    out = []
    for number, (title, commands) in enumerate(sections, 1):
        out += [f"# {number}. {title}", *commands, ""]
    return out


def _heredoc(path: str, lines: list[str]) -> list[str]:
    end = "EOF"
    while end in "\n".join(lines).split("\n"):  # a line equal to the delimiter would end it; the rest would run
        end += "_"
    return [f"mkdir -p {shlex.quote(os.path.dirname(path))}", f"cat > {shlex.quote(path)} <<'{end}'", *lines, end]


def _init_script(spec: ContainerSpec, cdir: str, hostname: str, binds: list, wait_for_network: bool) -> list[str]:
    binds = binds + [(m.source, m.target, m.readonly) for m in spec.mounts]
    out = ["set -e", "umask 022   # the container's, as Docker's (runtime/init.py)", *rootfs.build_shell(spec.rootfs, os.path.join(cdir, "layer"), spec.read_only, binds,
                                          spec.workdir, spec.tmpfs)]
    out.append(f"hostname {hostname}")
    if wait_for_network:  # pyrun's "go" (runtime/sync.py): the host has plugged in eth0
        out.append("until grep -q eth0: /proc/net/dev; do sleep 0.05; done")
    env = init.environment(spec, hostname)
    who = []
    if spec.user:
        out += _user_shell(spec.user)
        who = ["--reuid=$U", "--regid=$G", "--groups=$SGIDS"]
        if "HOME" not in dict(spec.env):
            env["HOME"] = "$HOME_"
    caps = ",".join(f"+{c.lower()}" for c in sorted(spec.caps))
    out += [f"cd {shlex.quote(spec.workdir)}",
            "# setpriv is util-linux's, from the rootfs: the bounding set becomes the container's capabilities",
            "# (pyrun also loads a seccomp filter here, with libseccomp; no shell command does that: see"
            " runtime/seccomp.py)" if spec.seccomp_setting != "unconfined" else "# (seccomp: unconfined)",
            f"exec env -i {' '.join(_assign(k, v) for k, v in env.items())} \\",
            f"  setpriv --no-new-privs --inh-caps=-all --bounding-set=-all{',' + caps if caps else ''}"
            f"{''.join(' ' + w for w in who)} -- \\",
            *([f"  prlimit {' '.join(_prlimit(u) for u in spec.ulimits)} -- \\"] if spec.ulimits else []),
            f"  {shlex.join(spec.command)}"]
    return out


def _prlimit(u) -> str:
    """util-linux's prlimit has Docker's names (runtime/spec.py ULIMITS); run last, after setpriv, as pyrun's
    setrlimit(2) comes after the change of user."""
    soft, hard = ("unlimited" if n == -1 else str(n) for n in (u.soft, u.hard))
    return f"--{u.name}={soft}:{hard}"


def _assign(key: str, value: str) -> str:
    return f'{key}="$HOME_"' if value == "$HOME_" and key == "HOME" else shlex.quote(f"{key}={value}")


def _user_shell(user: str) -> list[str]:
    """-u's lookup (runtime/users.py) with the rootfs's own id and getent, which read its /etc/passwd now."""
    name, _, group = user.partition(":")
    name, group = shlex.quote(name), group and shlex.quote(group)
    out = ["# -u: the user's ids, groups and home from the container's /etc/passwd and /etc/group (runtime/users.py)",
           f"U={name}" if name.isdigit() else f"U=$(id -u {name})",
           f"HOME_=$(getent passwd \"$U\" | cut -d: -f6); HOME_=${{HOME_:-/}}"]
    if group:
        out += [f"G={group}" if group.isdigit() else f"G=$(getent group {group} | cut -d: -f3)", 'SGIDS="$G"']
    else:  # a number without a passwd entry is gid 0, as in Docker
        out += ['G=$(id -g "$U" 2>/dev/null || echo 0)',
                'SGIDS=$( (id -G "$U" 2>/dev/null || echo "$G") | tr " " ,)']
    return out


def _network(spec: ContainerSpec, root: str, cid: str) -> dict | None:
    if spec.network in ("none", "host"):
        return None
    from runtime.network import bridge, ipam, networks

    net = networks.get(root, spec.network)
    address = ipam.next_free(net.bridge, net.subnet)  # what a run would lease now; nothing is taken
    wiring = bridge.BridgeNetwork(spec, net, root, cid, spec.name or cid[:12], address, [])
    titles = {"netns": "a name for its network namespace, so that `ip netns exec` finds it",
              "veth": "the veth pair: one end on the bridge, the other as the container's eth0 with its address "
                      "and default route",
              "ebtables": "its port on the bridge passes only frames from its own MAC and address (no ARP "
                          "spoofing)",
              "iptables": "the published ports: DNAT and accept rules tagged with the container's id"}
    return {"bridge": bridge.ensure_bridge_shell(net), "address": address,
            "lease": ipam.Lease(net.bridge, address, cid),
            "attach": [(titles[s.kind], s) for s in wiring.steps(PID)]}
