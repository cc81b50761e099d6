"""One recipe (runtime/recipe.py): what --explain prints is what a run journals, and the script does what pyrun does.

The first tests need no root (pytest -m noroot runs them as any user): they read the recipe and the printed
script. The others run real containers and the printed scripts in the test sandbox, and compare what each
leaves on the (sandbox) host: links, addresses, routes, bridge ports, iptables, ebtables, sysctls, cgroups
and mounts, with the ids, which differ by design, replaced.
"""
import glob
import json
import os
import re
import subprocess
import sys
import time

import pytest

from conftest import user_network, CGROUP_PARENT, REPO, STATE_ROOT, pyrun, sh, snapshot, wait_for
from runtime import cgroups, explain, recipe, steps
from runtime.explain import TEARDOWN
from runtime.network import bridge
from runtime.network.networks import Network
from runtime.oci.bundle import Overlay
from runtime.spec import build_spec

CID = "c0ffee" * 10 + "abcd"
USERNET = ["--network", "recipenet"]
# The command lines of the check: the kinds --explain prints equal the kinds a real run journals.
CASES = {"bridge with a port": ["-p", "8140:80"], "user-defined network": USERNET, "none": ["--network", "none"],
         "host": ["--network", "host"], "init": ["--init"], "volume": ["-v", "/tmp:/mnt:ro"],
         "read-only": ["--read-only"], "limits": ["--memory", "64m", "--pids-limit", "50"],
         "userns": ["--userns", "auto"], "runtime runc": ["--runtime", "runc", "-p", "8143:80"],
         "runtime pyrun-oci": ["--runtime", "pyrun-oci", "--network", "none", "--memory", "64m"],
         "runtime init": ["--runtime", "pyrun-oci", "--network", "none", "--init"],
         "runtime userns": ["--runtime", "runc", "--userns", "auto", "--network", "none"]}


def printed_kinds(script: str) -> list[str]:
    """The [kind] of each numbered section of the setup script, in order."""
    return re.findall(r"^# \d+\. \[(\w+)\]", script.split(TEARDOWN)[0], re.M)


def cli_spec(args: list[str]):
    """ARGS as `pyrun run` parses them, by the same function."""
    options = {"-p": "publish", "--network": "network", "--memory": "memory", "--pids-limit": "pids_limit",
               "-v": "volumes", "--userns": "userns", "--runtime": "runtime"}
    kw, flags = {}, {"--init": "init", "--read-only": "read_only"}
    it = iter(args)
    for a in it:
        if a in flags:
            kw[flags[a]] = True
        else:
            key = options[a]
            kw[key] = [next(it)] if key in ("publish", "volumes") else next(it)
    return build_spec("/", ["true"], **kw)


@pytest.mark.noroot
def test_the_recipe_in_order_with_phases():
    """The default: pyrun the engine, pyrun-oci the runtime; and the built-in runtime's, which has no bundle."""
    net = Network("recipenet", "pr-0123456789ab", "10.195.0.0/24")
    port = ["--network", "recipenet", "-p", "8140:80"]
    plan = recipe.recipe(cli_spec(port), net, "/run/pyrun", CID, "web", "10.195.0.2")
    assert [(p.phase, p.step.kind) for p in plan] == [
        ("create", "ports"), ("create", "lease"), ("create", "layer"), ("create", "overlay"), ("create", "etc"),
        ("create", "hosts"), ("create", "bundle"), ("spawn", "bridge"), ("spawn", "runtime"),
        ("attach", "unexposed"), ("attach", "netns"), ("attach", "veth"),
        ("attach", "ebtables"), ("attach", "iptables")]
    none = recipe.recipe(cli_spec(["--network", "none"]), None, "/run/pyrun", CID, "web", None)
    assert [p.step.kind for p in none] == ["layer", "overlay", "etc", "bundle", "runtime", "unexposed"]

    plan = recipe.recipe(cli_spec([*port, "--runtime", "pyrun"]), net, "/run/pyrun", CID, "web", "10.195.0.2")
    assert [(p.phase, p.step.kind) for p in plan] == [
        ("create", "ports"), ("create", "lease"), ("create", "cgroup"), ("create", "layer"), ("create", "etc"),
        ("create", "hosts"), ("spawn", "bridge"), ("attach", "join"), ("attach", "netns"), ("attach", "veth"),
        ("attach", "ebtables"), ("attach", "iptables")]
    assert [p.step.kind for p in plan if p.beside] == ["join"]
    none = recipe.recipe(cli_spec(["--network", "none", "--runtime", "pyrun"]), None, "/run/pyrun", CID, "web", None)
    assert [p.step.kind for p in none] == ["cgroup", "layer", "etc", "join"]


@pytest.mark.noroot
def test_every_journal_record_names_what_reads_it_back():
    """A record is read back through the module it names, and only a module of pyrun's is imported."""
    net = Network("recipenet", "pr-0123456789ab", "10.195.0.0/24")
    plan = recipe.recipe(cli_spec(["--network", "recipenet", "-p", "8140:80"]), net, "/run/pyrun", CID, "web",
                         "10.195.0.2")
    for planned in plan:
        record = json.loads(json.dumps(planned.step.record()))
        assert record["module"] == type(planned.step).__module__
        assert steps.Step.from_record(record).record() == record
    code = ("import json, sys; from runtime.steps import Step; "
            "print(type(Step.from_record(json.loads(sys.argv[1]))).__name__)")
    for record, name in ((plan[-1].step.record(), "ContainerRules"),            # in a fresh interpreter: imported
                         ({"kind": "veth", **{k: v for k, v in plan[-3].step.record().items() if k != "module"}},
                          "Veth"),                                           # a journal of before the module key
                         ({**plan[-3].step.record(), "module": "runtime.network.bridge"},
                          "Veth"),                                           # one of before Veth left bridge.py
                         ({**Overlay("/rootfs", "/layer").record(), "module": "runtime.oci.client"},
                          "Overlay")):                                       # and Overlay client.py
        r = subprocess.run([sys.executable, "-c", code, json.dumps(record)], capture_output=True, text=True, cwd=REPO)
        assert r.stdout == f"{name}\n", r.stderr
    r = subprocess.run([sys.executable, "-c", code, json.dumps({"kind": "nosuch", "module": "os"})],
                       capture_output=True, text=True, cwd=REPO)
    assert "KeyError: 'nosuch'" in r.stderr  # a module outside pyrun's is never imported


@pytest.mark.noroot
@pytest.mark.parametrize("case", CASES)
def test_explain_prints_the_recipes_steps(case, tmp_path):
    args = CASES[case]
    net = Network("recipenet", "pr-0123456789ab", "10.195.0.0/24") if "recipenet" in args else None
    if net:
        os.makedirs(tmp_path / "networks")
        (tmp_path / "networks" / "recipenet.json").write_text(json.dumps(net.__dict__))
    elif "--network" not in args:
        net = Network("bridge", "pyrun0", "10.199.0.0/16")
    spec = cli_spec(args)
    out = explain.explain(spec, str(tmp_path))
    assert printed_kinds(out) == [p.step.kind for p in recipe.recipe(spec, net, str(tmp_path), CID, "x", "10.0.0.2")]


@pytest.mark.noroot
def test_explain_init_keeps_a_pid_1_that_forwards_signals(tmp_path):
    script = explain.explain(cli_spec(["--init", "--network", "none", "--runtime", "pyrun"]), str(tmp_path))
    init_sh = script[script.index("init.sh <<'EOF'"):]
    init_sh = init_sh[:init_sh.index("\nEOF\n")]
    assert "exec env -i" not in init_sh  # the shell does not hand PID 1 over to the command
    assert "  true &\nCHILD=$!" in init_sh and 'trap "kill -$s $CHILD" $s' in init_sh and "TERM" in init_sh


@pytest.mark.noroot
def test_explain_refuses_what_the_run_refuses(tmp_path):
    """-d with -t is refused by a run with 125; --explain of it too, instead of printing a script."""
    r = subprocess.run([sys.executable, "-m", "runtime", "--root", str(tmp_path), "run", "--explain", "-d", "-t",
                        str(tmp_path), "sh"], capture_output=True, text=True, cwd=REPO)
    assert (r.returncode, r.stdout) == (125, "") and "cannot be given -i or -t" in r.stderr


@pytest.mark.noroot
def test_cgroup_v2_shell_enables_the_controllers_as_up_does(tmp_path, monkeypatch):
    """On cgroup v2 a limit file exists only once the parents enable its controller in cgroup.subtree_control.
    The tree is a directory standing in for /sys/fs/cgroup: what up() writes there, bash writes by shell_up()."""
    for tree in ("up", "shell"):
        os.makedirs(tmp_path / tree)
        (tmp_path / tree / "cgroup.controllers").write_text("cpu memory pids\n")
    monkeypatch.setattr(cgroups, "CGROUP_ROOT", str(tmp_path / "up"))
    monkeypatch.setattr(cgroups, "PARENT", "pyrun")
    group = cgroups.Cgroup(CID, memory=64 << 20, pids_limit=50, parent="pyrun")
    group.up()
    monkeypatch.setattr(cgroups, "CGROUP_ROOT", str(tmp_path / "shell"))
    commands = group.shell_up()
    assert any("cgroup.subtree_control" in c for c in commands)
    subprocess.run(["bash", "-ec", "\n".join(commands)], check=True)

    def tree(top):
        return {os.path.relpath(os.path.join(d, f), top): open(os.path.join(d, f)).read().strip()
                for d, _, files in os.walk(top) for f in files}

    assert tree(tmp_path / "shell") == tree(tmp_path / "up")


# From here on: real containers in the sandbox, as root.

@pytest.fixture(scope="module")
def recipenet():
    with user_network("recipenet", "10.195.0.0/24"):
        yield


def journal_kinds(cid: str) -> list[str]:
    with open(os.path.join(STATE_ROOT, "containers", cid, "journal")) as f:
        return [json.loads(line)["kind"] for line in f]


@pytest.mark.parametrize("case", CASES)
def test_explain_prints_the_kinds_a_run_journals(case, busybox, recipenet, clean_host):
    args = CASES[case]
    r = pyrun("run", "-d", "--name", "kinds", *args, busybox, "sleep", "300")
    assert r.returncode == 0, r.stderr
    try:
        journaled = journal_kinds(r.stdout.strip())
    finally:
        pyrun("rm", "-f", "kinds")
    out = pyrun("run", "--explain", "--name", "kinds", *args, busybox, "sleep", "300")
    assert out.returncode == 0, out.stderr
    assert printed_kinds(out.stdout) == journaled


def traced_actions(stderr: str) -> list[tuple[str, list[str]]]:
    """What `run --verbose` says PID 1 did: (kind, commands) of each action, as PID 1 reported them."""
    out = []
    for line in stderr.splitlines():
        m = re.match(r"pyrun: (\[ *[\d.]+ ms\]| +) PID 1 \[(\w+)\] (.*)$", line)
        if m and m.group(1).startswith("["):
            out.append((m.group(2), [m.group(3)]))
        elif m:
            assert out[-1][0] == m.group(2), line
            out[-1][1].append(m.group(3))
    return out


def explained_actions(script: str) -> list[tuple[str, list[str]]]:
    """The actions of the printed init.sh: (kind, commands) of each, up to the wait for "go"."""
    init_sh = script[script.index("init.sh <<'EOF'"):]
    out = []
    for line in init_sh[:init_sh.index("\nread -r _ <&9")].splitlines()[4:]:
        m = re.match(r"# \[(\w+)\]", line)
        if m:
            out.append((m.group(1), []))
        else:
            out[-1][1].append(line)
    return out


def ids_replaced(actions: list[tuple[str, list[str]]], cid: str) -> list[tuple[str, list[str]]]:
    """ACTIONS with the container's id, short or long, as ID, and its state directory ($C) spelled out."""
    def ids(command: str) -> str:
        return command.replace("$C/", f"{STATE_ROOT}/containers/{cid}/").replace(cid, "ID").replace(cid[:12], "ID")

    return [(kind, [ids(c) for c in commands]) for kind, commands in actions]


def test_explain_prints_the_actions_pid_1_runs(busybox, tmp_path, clean_host):
    """The container side of --explain (init.sh) is the list PID 1 runs: the kinds PID 1 reports having done
    under --verbose, in its order, and the same commands for each, but for the ids. The built-in runtime's:
    pyrun-oci's container side is tests/test_oci_explain.py's."""
    (tmp_path / "file").write_text("x")
    cases = [["-v", f"{tmp_path}:/mnt", "-v", f"{tmp_path}/file:/etc/conf:ro", "-w", "/work/here"],
             ["--read-only", "--tmpfs", "/run:size=1m", "--tmpfs", "/scratch", "-v", f"{tmp_path}:/data"],
             ["-u", "1000:1000", "--init", "--hostname", "box"],
             ["--userns", "auto", "--network", "host", "-v", f"{tmp_path}:/mnt:ro", "--read-only"]]
    for args in cases:
        args = ["--runtime", "pyrun", *(["--network", "none"] if "--network" not in args else []), *args]
        r = pyrun("run", "--rm", "--verbose", *args, busybox, "true")
        assert r.returncode == 0, r.stderr
        ran = ids_replaced(traced_actions(r.stderr), re.search(r"containers/([0-9a-f]{64})/layer", r.stderr)[1])
        script = pyrun("run", "--explain", *args, busybox, "true").stdout
        printed = ids_replaced(explained_actions(script), script_id(script))
        assert [k for k, _ in ran] == [k for k, _ in printed], args
        assert ran == printed, args
        assert "pivot" in dict(ran) and ("readonly" in dict(ran)) == ("--read-only" in args)
        assert len([k for k, _ in ran if k == "bind"]) == 3 + args.count("-v")  # the /etc files, then -v's


def host_state(cid: str) -> dict:
    """What pyrun changes on the host, with CID (and its 12-character short form) replaced by ID, and what the
    kernel numbers or picks on its own (interface indexes, netns ids, counters, timers, a veth's host-end MAC)
    left out."""
    def ids(text: str) -> str:
        return text.replace(cid, "ID").replace(cid[:12], "ID")

    # What pyrun sets on a link: its name, kind, master, MAC and mtu, up or not. The kernel's own (carrier,
    # offload sizes a bridge takes from its ports, timers) follow the ports, which are compared themselves.
    links = sorted(json.dumps([link["ifname"], link.get("linkinfo", {}).get("info_kind"), link.get("master"),
                               "RANDOM" if link["ifname"] == f"pv{cid[:12]}" else link.get("address"),
                               link["mtu"], "UP" in link["flags"],
                               link.get("linkinfo", {}).get("info_slave_data", {}).get("hairpin")])
                   for link in json.loads(sh("ip -j -d link").stdout))
    sysctls = {path: open(path).read().strip() for pattern in ("/proc/sys/net/ipv4/ip_forward",
                                                               "/proc/sys/net/ipv4/conf/*/route_localnet",
                                                               "/proc/sys/net/ipv6/conf/*/disable_ipv6")
               for path in glob.glob(pattern)}
    limits = {path: open(path).read().strip() for d in glob.glob(f"/sys/fs/cgroup/*/{CGROUP_PARENT}/*/")
              + glob.glob(f"/sys/fs/cgroup/{CGROUP_PARENT}/*/")
              for name in ("memory.limit_in_bytes", "memory.max", "pids.max", "devices.list")
              for path in glob.glob(os.path.join(d, name))}
    state = {
        "links": sorted(links),
        "addr": sorted(re.sub(r"^\d+: ", "", line) for line in sh("ip -o addr").stdout.splitlines()),
        "routes": [line.replace(" linkdown", "") for line in sh("ip route").stdout.splitlines()],
        "bridge ports": sorted(re.sub(r"^\d+: ", "", line) for line in sh("bridge link").stdout.splitlines()),
        "iptables": [re.sub(r" \[\d+:\d+\]$", "", line) for line in sh("iptables-save").stdout.splitlines()
                     if not line.startswith("#")],
        "ebtables": [line for line in sh("ebtables-save").stdout.splitlines() if not line.startswith("#")],
        "sysctls": sysctls, "cgroups": limits,
        "netns": sorted(os.listdir("/run/netns")),
        "leases": sorted(glob.glob("/run/pyrun-net/ipam/*/*")),
        "mounts": sorted(line.split()[4] for line in open("/proc/self/mountinfo")),
    }
    return json.loads(ids(json.dumps(state)))


def differences(got: dict, want: dict) -> dict:
    """Per kind of state: what only GOT has, and what only WANT has."""
    def items(v):
        return [f"{k}={x}" for k, x in v.items()] if isinstance(v, dict) else v

    return {key: {"only the script's": [x for x in items(got[key]) if x not in items(want[key])],
                  "only pyrun's": [x for x in items(want[key]) if x not in items(got[key])]}
            for key in got if got[key] != want[key]}


def script_id(script: str) -> str:
    return re.search(r"^export CID=([0-9a-f]{64})", script, re.M).group(1)


@pytest.mark.parametrize("case", ["bridge with a port", "user-defined network", "init", "runtime runc"])
def test_the_explained_scripts_leave_the_host_as_pyrun_does(case, debian, recipenet, clean_host):
    """The setup script leaves what a running container leaves; the teardown script what pyrun's teardown does."""
    args = [*CASES[case], "--memory", "64m"]
    r = pyrun("run", "-d", "--name", "byhand", *args, debian, "sleep", "300")
    assert r.returncode == 0, r.stderr
    try:
        running = host_state(r.stdout.strip())
    finally:
        assert pyrun("rm", "-f", "byhand").returncode == 0
    after_pyrun = host_state("none")
    out = pyrun("run", "--explain", "--name", "byhand", *args, debian, "sleep", "300")
    setup, teardown = out.stdout.split(TEARDOWN)
    cid = script_id(setup)
    s = subprocess.run(["bash", "-c", setup], capture_output=True, text=True, timeout=60)
    try:
        assert s.returncode == 0, s.stderr
        assert not differences(host_state(cid), running)
    finally:
        t = subprocess.run(["bash", "-c", teardown], capture_output=True, text=True, timeout=60)
    assert t.returncode == 0, t.stderr
    assert not differences(host_state(cid), after_pyrun)


def test_the_explained_script_stops_at_a_port_already_taken(busybox, clean_host):
    """pyrun's own monitor holds the port (it listens on it, and binds the UDP one): the script sees it, says
    so and stops before it changes anything, as `pyrun run` would."""
    r = pyrun("run", "-d", "--name", "holder", "-p", "8141:80", "-p", "8142:53/udp", busybox, "sleep", "300")
    assert r.returncode == 0, r.stderr
    try:
        for port in ("8141:80", "8142:53/udp"):
            before = snapshot()
            setup = pyrun("run", "--explain", "-p", port, busybox, "true").stdout.split(TEARDOWN)[0]
            s = subprocess.run(["bash", "-c", setup], capture_output=True, text=True, timeout=60)
            proto = "udp" if "udp" in port else "tcp"
            assert s.returncode == 1 and s.stderr == \
                f"host port {port.split(':')[0]}/{proto} is already in use (ss -lnp shows by whom)\n", s.stderr
            assert snapshot() == before
    finally:
        pyrun("rm", "-f", "holder")


TIMED = re.compile(r"pyrun: \[ *(\d+\.\d) ms\] (.*)")
UNDER = "pyrun: " + " " * 12   # a heredoc's lines after its first, under the command


def traced(stderr: str) -> list[tuple[float, str]]:
    """(milliseconds, command) for each host-side command --verbose printed, a heredoc one command with its
    lines. (What PID 1 did, "PID 1 [kind] ...", is pid1.py's, traced and tested there.)"""
    out = []
    for line in stderr.splitlines():
        timed = TIMED.match(line)
        if timed and not timed.group(2).startswith("PID 1 ["):
            out.append((float(timed.group(1)), timed.group(2)))
        elif timed or line.startswith(UNDER + "PID 1 ["):
            out.append((0.0, "PID 1"))   # ends the command before it
        elif line.startswith(UNDER) and out:
            out[-1] = (out[-1][0], out[-1][1] + "\n" + line[len(UNDER):])
    return [(ms, command) for ms, command in out if command != "PID 1"]


def explained(script: str) -> list[tuple[str, list[str]]]:
    """(kind, commands) of each numbered [kind] section of SCRIPT, a heredoc one command with its lines."""
    sections, current, marker = [], None, None
    for line in script.splitlines():
        if marker:
            if current is not None:
                current[-1] += "\n" + line
            marker = None if line == marker else marker
            continue
        header = re.match(r"# \d+\. (?:\[(\w+)\])?", line)
        if header or line == "":
            current = [] if header and header.group(1) else None
            if current is not None:
                sections.append((header.group(1), current))
        elif current is not None:
            current.append(line)
        opened = re.search(r"<<'?(EOF_*)\b", line)
        marker = opened.group(1) if opened and not header else None
    return sections


def same_commands(trace: list[str], sections: list[tuple[str, list[str]]]) -> None:
    """TRACE holds each section's commands, in the section's order, and nothing else. (A step run beside the
    others, and an undo finished at the end, interleave with the rest: each step keeps its own order.)"""
    printed = [command for _, commands in sections for command in commands]
    assert sorted(trace) == sorted(printed), {"traced only": [c for c in trace if c not in printed],
                                              "printed only": [c for c in printed if c not in trace]}
    assert len(set(printed)) == len(printed)
    for kind, commands in sections:
        assert [c for c in trace if c in commands] == commands, kind


@pytest.mark.parametrize("case", ["bridge with a port", "user-defined network", "userns"])
def test_verbose_traces_each_command_explain_prints_with_its_own_time(case, busybox, recipenet, clean_host):
    """Each command --verbose prints has its own time, and a step's traced commands, up and undo, are the ones
    --explain prints for it, in its order. (The bridge is there already: it traces that it is, and its kept
    undo.)"""
    args = [*CASES[case], "--name", "traced", "--hostname", "traced"]
    network = ["--network", "recipenet"] if "recipenet" in args else []
    assert pyrun("run", "-d", "--name", "peer", *network, busybox, "sleep", "300").returncode == 0
    try:
        script = pyrun("run", "--explain", *args, busybox, "true").stdout
        started = time.monotonic()
        r = pyrun("run", "--rm", "--verbose", *args, busybox, "true")
        took = (time.monotonic() - started) * 1000
    finally:
        pyrun("rm", "-f", "peer")
    assert r.returncode == 0, r.stderr
    lines = traced(r.stderr)
    # (a) a line without its own time is only ever a heredoc's, under the command that has it
    for _, command in lines:
        assert "\n" not in command or re.search(r"<<'?(EOF_*)\b.*\n(.*\n)*\1$", command), command
    setup = [c for ms, c in lines if not c.startswith("undo: ")]
    assert sum(ms for ms, c in lines) < took  # no time counted twice
    # (b) with the run's own id, state directory and PID 1 named as the script names them
    cid = re.search(r"\b[0-9a-f]{64}\b", r.stderr).group(0)
    sid = script_id(script)
    pid = re.search(r"mount --bind /proc/(\d+)/ns/net", r.stderr).group(1)

    def named(command: str) -> str:
        command = command.replace(os.path.join(STATE_ROOT, "containers", cid), "$C").replace(cid, "$CID")
        command = command.replace(cid[:12], sid[:12])   # the veth's and the chain's names
        return re.sub(rf"(/proc/|echo |netns ){pid}\b", r"\1$PID", command)

    there = [c for c in setup if re.match(r"# \S+, its address and pyrun's chains and rules are there already$", c)]
    assert len(there) == 1
    # The bundle's config.json is a quoted heredoc (nothing in it expands): it names the script's own directory.
    script = script.replace(os.path.join(STATE_ROOT, "containers", sid), "$C").replace(sid, "$CID")
    up, down = script.split(TEARDOWN)
    same_commands([named(c) for c in setup if c not in there], [s for s in explained(up) if s[0] != "bridge"])
    same_commands([named(c[len("undo: "):]) for _, c in lines if c.startswith("undo: ")], explained(down))


def test_verbose_shows_the_bridge_made_on_a_fresh_host_and_a_detached_teardown(busybox, clean_host):
    assert pyrun("network", "rm", "bridge").returncode == 0  # as on a host pyrun has never run on
    r = pyrun("run", "--rm", "--verbose", busybox, "true")
    assert r.returncode == 0, r.stderr
    made = [c for _, c in traced(r.stderr)]
    mac = bridge.bridge_mac("pyrun0")
    # Each change with its own time; the chains and rules one iptables-restore batch, applied as one.
    assert made[made.index(f"ip link add pyrun0 address {mac} type bridge"):][:5] == [
        f"ip link add pyrun0 address {mac} type bridge", "sysctl -qw net.ipv6.conf.pyrun0.disable_ipv6=1",
        "ip addr add 10.199.0.1/16 dev pyrun0", "ip link set pyrun0 up",
        "sysctl -qw net.ipv4.conf.pyrun0.route_localnet=1"]
    batch = next(c for c in made if c.startswith("iptables-restore --noflush --wait <<EOF\n*filter\n"))
    assert "\n-A PYRUN-POSTROUTING -s 10.199.0.0/16 ! -o pyrun0 " in batch
    again = pyrun("run", "--rm", "--verbose", busybox, "true").stderr
    assert "pyrun0, its address and pyrun's chains and rules are there already" in again
    assert "ip link add pyrun0" not in again
    # run -d: the monitor traces the teardown into the container's log, each command with its time.
    cid = pyrun("run", "-d", "--verbose", "--name", "traced", busybox, "true").stdout.strip()
    wait_for(lambda: pyrun("inspect", "traced").stdout.count('"exited"'), what="the container to exit")
    log = open(os.path.join(STATE_ROOT, "containers", cid, "container.log")).read()
    undone = [c for _, c in traced(log) if c.startswith("undo: ")]
    assert f"undo: ip link del pv{cid[:12]}" in undone and any(c.startswith("undo: ebtables-restore") for c in undone)
    assert pyrun("rm", "traced").returncode == 0
