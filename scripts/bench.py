"""pyrun side by side with runc and the CNI bridge/portmap plugins; run through scripts/bench, in the sandbox.

Every comparison alternates the two commands in the same invocation, after a
warm-up, and reports medians, so that a noisy machine moves both sides alike.
Prints a markdown table and writes bench-results.json.
"""
import argparse
import ctypes
import glob
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYRUN = [os.path.join(REPO, ".venv", "bin", "pyrun")]   # the command users type, as pip installed it
PYTHON = os.path.join(REPO, ".venv", "bin", "python")   # the interpreter that pyrun's command runs on
CNI_PATH = "/usr/lib/cni"
HOST_IP = "198.51.100.1"


def sh(*argv, check=True, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=check, capture_output=True, text=True, **kw)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def alternate(commands: dict, runs: int, warmup: int = 2) -> dict[str, float]:
    """Median wall time of each callable, run in turn RUNS times after WARMUP rounds."""
    for _ in range(warmup):
        for fn in commands.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, fn in commands.items():
            times[name].append(timed(fn))
    return {name: statistics.median(t) for name, t in times.items()}


class Runc:
    """A runc bundle over ROOTFS (runc spec, then adjusted), optionally in a named network namespace."""

    def __init__(self, rootfs: str):
        self.dir = tempfile.mkdtemp(prefix="pyrun-bench-bundle-")
        sh("runc", "spec", cwd=self.dir)
        self.rootfs = rootfs
        self.count = 0

    def run(self, netns: str | None = None) -> None:
        with open(os.path.join(self.dir, "config.json")) as f:
            config = json.load(f)
        config["process"].update(terminal=False, args=["/bin/true"])
        config["root"] = {"path": self.rootfs, "readonly": True}
        if netns:
            config["linux"]["namespaces"] = [n for n in config["linux"]["namespaces"] if n["type"] != "network"] + [
                {"type": "network", "path": f"/run/netns/{netns}"}]
        with open(os.path.join(self.dir, "config.json"), "w") as f:
            json.dump(config, f)
        self.count += 1
        sh("runc", "--root", "/run/runc-bench", "run", f"bench{os.getpid()}-{self.count}", cwd=self.dir)

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


class Cni:
    """The bridge (host-local IPAM, ipMasq) and portmap plugins, invoked as a CNI runtime does."""

    def __init__(self, port: int):
        self.port = port
        self.plugins = [
            {"type": "bridge", "bridge": "cni-bench0", "isGateway": True, "ipMasq": True,
             "ipam": {"type": "host-local", "subnet": "10.198.0.0/16", "dataDir": "/run/cni-bench-ipam"}},
            {"type": "portmap", "capabilities": {"portMappings": True},
             "runtimeConfig": {"portMappings": [{"hostPort": port, "containerPort": 8000, "protocol": "tcp"}]}},
        ]

    def _call(self, command: str, plugin: dict, netns: str, prev: dict | None) -> dict:
        conf = {"cniVersion": "1.0.0", "name": "bench", **plugin}
        if prev is not None:
            conf["prevResult"] = prev
        env = {"CNI_COMMAND": command, "CNI_CONTAINERID": netns, "CNI_NETNS": f"/run/netns/{netns}",
               "CNI_IFNAME": "eth0", "CNI_PATH": CNI_PATH, "PATH": os.environ["PATH"]}
        r = subprocess.run([os.path.join(CNI_PATH, plugin["type"])], input=json.dumps(conf), env=env,
                           capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError(f"CNI {plugin['type']} {command}: {r.stdout}{r.stderr}")
        return json.loads(r.stdout) if r.stdout.strip() else {}

    def add(self, netns: str) -> dict:
        result = None
        for plugin in self.plugins:
            result = self._call("ADD", plugin, netns, result)
        return result

    def delete(self, netns: str, result: dict) -> None:
        for plugin in reversed(self.plugins):
            self._call("DEL", plugin, netns, result)


def bench_start(busybox: str, runs: int) -> list[dict]:
    # The CLI's own start: `pyrun ps` with no containers against the bare interpreter it runs on, and the floor
    # that pyrun's choice of CLI library sets, the interpreter importing typer. Each run is short and at the
    # mercy of the machine's noise: three times as many runs as the container rows.
    cli = alternate({
        "pyrun": lambda: sh(*PYRUN, "ps"),
        "python": lambda: sh(PYTHON, "-c", "pass"),
        "typer": lambda: sh(PYTHON, "-c", "import typer"),
    }, 3 * runs)
    runc = Runc(busybox)
    floor = ["unshare", "--fork", "--pid", "--mount", "--net", "--uts", "--ipc", "--mount-proc", "chroot", busybox,
             "/bin/true"]
    none = alternate({
        "pyrun": lambda: sh(*PYRUN, "run", "--rm", "--network", "none", busybox, "/bin/true"),
        "runc": runc.run,
        "unshare": lambda: sh(*floor),
    }, runs)
    cni = Cni(18081)
    counter = [0]

    def reference():
        counter[0] += 1
        netns = f"bench-{counter[0]}"
        sh("ip", "netns", "add", netns)
        result = cni.add(netns)
        runc.run(netns)
        cni.delete(netns, result)
        sh("ip", "netns", "del", netns)

    bridge = alternate({
        "pyrun": lambda: sh(*PYRUN, "run", "--rm", "-p", "18080:8000", busybox, "/bin/true"),
        "runc+CNI": reference,
    }, runs)
    runc.close()
    return [
        {"what": "`pyrun ps`, no containers", "pyrun": cli["pyrun"], "reference": cli["python"],
         "reference_name": "`python -c pass`, same interpreter", "floor": cli["typer"], "floor_name": "import typer",
         "target": 4.0},
        {"what": "start to exit, no network", "pyrun": none["pyrun"], "reference": none["runc"],
         "reference_name": "runc run", "floor": none["unshare"], "target": 3.0},
        {"what": "start to exit, bridge + 1 published port", "pyrun": bridge["pyrun"],
         "reference": bridge["runc+CNI"], "reference_name": "runc + CNI bridge/portmap ADD+DEL", "target": 0.75},
    ]


def oci_command(directory: str) -> str:
    """pyrun-oci as pip installs it (a Python script that imports runtime.oci.cli and calls main), but of this
    checkout, written into DIRECTORY: the command an engine is given. Not `python -m runtime.oci` under a
    shell, which cost a shell and runpy (~4 ms) per call, that no engine's call pays."""
    path = os.path.join(directory, "pyrun-oci")
    with open(path, "w") as f:
        f.write(f"#!{PYTHON}\nimport sys\nsys.path.insert(0, {REPO!r})\nfrom runtime.oci.cli import main\nmain()\n")
    os.chmod(path, 0o755)
    return path


class OciBundle:
    """One /bin/true bundle over ROOTFS (runc spec's config.json) for both runtimes, driven as an engine drives
    them: create with a pid file, start, wait as the child subreaper the container is re-parented to, delete."""

    def __init__(self, rootfs: str):
        self.dir = tempfile.mkdtemp(prefix="pyrun-bench-oci-")
        sh("runc", "spec", cwd=self.dir)
        with open(os.path.join(self.dir, "config.json")) as f:
            self.config = json.load(f)
        self.config["process"].update(terminal=False, args=["/bin/true"])
        self.config["root"] = {"path": rootfs, "readonly": True}
        self.count = 0
        ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: the containers' PID 1s are ours to wait

    def run(self, runtime: list[str], root: str) -> None:
        self.count += 1
        cid = f"oci{os.getpid()}-{self.count}"
        config = {**self.config, "linux": {**self.config["linux"],
                                           "cgroupsPath": f"/{os.environ['PYRUN_CGROUP_PARENT']}/{cid}"}}
        with open(os.path.join(self.dir, "config.json"), "w") as f:
            json.dump(config, f)
        pid_file = os.path.join(self.dir, "pid")
        with tempfile.TemporaryFile() as err:  # not a pipe: the container holds create's stdio until it exits
            for verb in (["create", "--bundle", self.dir, "--pid-file", pid_file], ["start"]):
                r = subprocess.run([*runtime, "--root", root, *verb, cid], stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=err, cwd=REPO)
                if r.returncode:
                    err.seek(0)
                    raise RuntimeError(f"{runtime[-1]} {verb[0]}: {err.read().decode()}")
        with open(pid_file) as f:
            os.waitpid(int(f.read()), 0)
        sh(*runtime, "--root", root, "delete", cid, cwd=REPO)

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


class Containerd:
    """A containerd of the bench's own (config, root and state its own) for `ctr run --rm`."""

    def __init__(self):
        self.root = tempfile.mkdtemp(prefix="pyrun-bench-containerd-")
        self.state = tempfile.mkdtemp(prefix="ctr-", dir="/run")  # short: socket paths must fit in 108 bytes
        self.socket = os.path.join(self.state, "containerd.sock")
        config = os.path.join(self.root, "config.toml")
        with open(config, "w") as f:
            f.write(f'version = 2\nroot = "{self.root}/root"\nstate = "{self.state}"\n'
                    'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
                    f'[grpc]\n  address = "{self.socket}"\n[ttrpc]\n  address = "{self.socket}.ttrpc"\n')
        self.proc = subprocess.Popen(["containerd", "--config", config], stdout=subprocess.DEVNULL,
                                     stderr=open(os.path.join(self.root, "containerd.log"), "w"))
        for _ in range(200):
            if os.path.exists(self.socket):
                break
            time.sleep(0.05)
        self.wrapper = oci_command(self.root)
        self.count = 0

    def run(self, rootfs: str, runtime: str | None) -> None:
        self.count += 1
        cid = f"ctr{os.getpid()}-{self.count}"
        sh("ctr", "--address", self.socket, "run", "--rm", *(["--runc-binary", runtime] if runtime else []),
           "--cgroup", f"/{os.environ['PYRUN_CGROUP_PARENT']}/{cid}", "--rootfs", rootfs, cid, "/bin/true",
           stdin=subprocess.DEVNULL)

    def close(self) -> None:
        self.proc.terminate()  # the one we started; its shims exited with their containers (--rm)
        self.proc.wait()
        shutil.rmtree(self.state, ignore_errors=True)
        shutil.rmtree(self.root, ignore_errors=True)


def bench_oci(busybox: str, runs: int) -> list[dict]:
    """pyrun-oci against runc, as engines call them: the OCI verbs alone, and under containerd's `ctr run`."""
    bundle = OciBundle(busybox)
    try:
        pyrun_oci = [oci_command(bundle.dir)]
        verbs = alternate({"pyrun-oci": lambda: bundle.run(pyrun_oci, "/run/pyrun-oci-bench"),
                           "runc": lambda: bundle.run(["runc"], "/run/runc-oci-bench")}, runs)
    finally:
        bundle.close()
    rows = [{"what": "OCI create + start + wait + delete, /bin/true", "pyrun": verbs["pyrun-oci"],
             "reference": verbs["runc"], "reference_name": "runc", "target": 3.0, "pyrun_name": "pyrun-oci"}]
    if not shutil.which("containerd"):
        print("bench: containerd is not installed (scripts/setup-engines): no `ctr run` row", file=sys.stderr)
        return rows
    containerd = Containerd()
    try:
        ctr = alternate({"pyrun-oci": lambda: containerd.run(busybox, containerd.wrapper),
                         "runc": lambda: containerd.run(busybox, None)}, runs)
    finally:
        containerd.close()
    rows.append({"what": "`ctr run --rm`, /bin/true", "pyrun": ctr["pyrun-oci"], "reference": ctr["runc"],
                 "reference_name": "ctr run with runc", "target": 2.0, "pyrun_name": "pyrun-oci"})
    return rows


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))


def _host_state() -> dict:
    rules = [line for line in sh("iptables-save").stdout.splitlines() if "pyrun:" in line]
    links = [line.split(":")[1].strip() for line in sh("ip", "-o", "link").stdout.splitlines()
             if ": pyrun0:" not in line]
    leases = os.listdir("/run/pyrun-net/ipam/pyrun0") if os.path.isdir("/run/pyrun-net/ipam/pyrun0") else []
    parent = os.environ["PYRUN_CGROUP_PARENT"]  # the containers' cgroups, in every hierarchy (v1 and v2)
    cgroups = glob.glob(f"/sys/fs/cgroup/*/{parent}/*/") + glob.glob(f"/sys/fs/cgroup/{parent}/*/")
    netns = os.listdir("/run/netns")
    return {"rules": rules, "links": links, "leases": leases, "cgroups": cgroups, "netns": netns}


def bench_scale(busybox: str, count: int) -> dict:
    """Start COUNT detached containers one after another; compare the medians of the first, middle and last
    five starts (one start alone is at the mercy of the machine's noise)."""
    before = _host_state()
    starts = []
    for i in range(count):
        starts.append(timed(lambda: sh(*PYRUN, "run", "-d", "--name", f"scale{i}", "-p", f"{20000 + i}:8000",
                                       busybox, "sleep", "3600")))
    rules = len([line for line in sh("iptables-save").stdout.splitlines() if "pyrun" in line])
    records = json.loads(sh(*PYRUN, "inspect", *[f"scale{i}" for i in range(count)]).stdout)
    rss = []
    for r in records:
        with open(f"/run/pyrun/containers/{r['Id']}/state.json") as f:
            rss.append(_rss_kib(json.load(f)["Monitor"]["Pid"]))
    for i in range(count):
        sh(*PYRUN, "rm", "-f", f"scale{i}")
    after = _host_state()
    residue = sum(len(set(after[k]) ^ set(before[k])) for k in before)
    window = max(1, min(5, count // 3))
    middle = max(0, count // 2 - window // 2)
    groups = {f"{a + 1}-{a + window}": statistics.median(starts[a:a + window])
              for a in (0, middle, count - window)}
    first, last = groups[f"1-{window}"], groups[f"{count - window + 1}-{count}"]
    return {"containers": count, "start_s": groups, "last_vs_first": last / first, "firewall_rules": rules,
            "monitor_rss_mib_median": statistics.median(rss) / 1024, "monitor_rss_mib_max": max(rss) / 1024,
            "residue": residue}


SINK = ("import socket\ns = socket.create_server(('', 8000))\nwhile True:\n    c, _ = s.accept()\n"
        "    while c.recv(1 << 20):\n        pass\n    c.close()")


def _send(where: list[str], host: str, port: int, megabytes: int) -> float:
    """MiB/s of MEGABYTES sent over one TCP connection from namespace WHERE."""
    code = ("import socket, sys, time; c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10); "
            "b = b'x' * (1 << 20); t = time.perf_counter()\n"
            "for _ in range(int(sys.argv[3])): c.sendall(b)\n"
            "c.shutdown(socket.SHUT_WR); c.recv(1); print(int(sys.argv[3]) / (time.perf_counter() - t))")
    r = sh(*where, sys.executable, "-c", code, host, str(port), str(megabytes))
    return float(r.stdout)


def bench_data(debian: str, megabytes: int, rounds: int) -> dict:
    """Median MiB/s of ROUNDS transfers on each path, the paths taking turns, into one container.

    Each published path is paired with a direct one over the same hops. pyrun's
    firewall lets no other host reach a container except through a published
    port, so for the world's direct path the bench, on its throwaway host, routes
    the subnet from the world and accepts that one port ahead of pyrun's chain."""
    world = ["ip", "netns", "exec", "world"]
    cid = sh(*PYRUN, "run", "-d", "-p", "18090:8000", debian, "python", "-c", SINK).stdout.strip()
    ip = json.loads(sh(*PYRUN, "inspect", cid).stdout)[0]["NetworkSettings"]["IPAddress"]
    opening = ["FORWARD", "-d", f"{ip}/32", "-p", "tcp", "--dport", "8000", "-j", "ACCEPT"]
    sh(*world, "ip", "route", "add", f"{ip}/32", "via", HOST_IP)
    sh("iptables", "-I", *opening)
    try:
        for _ in range(100):
            if sh("ip", "netns", "exec", f"pyrun-{cid[:12]}", "ss", "-Hlnt", "sport = :8000").stdout:
                break
            time.sleep(0.05)
        paths = {"world -> host:port": (world, HOST_IP, 18090), "world -> container": (world, ip, 8000),
                 "host -> 127.0.0.1:port": ([], "127.0.0.1", 18090), "host -> container": ([], ip, 8000)}
        results: dict[str, list[float]] = {name: [] for name in paths}
        for _ in range(rounds):
            for name, (where, host, port) in paths.items():
                results[name].append(_send(where, host, port, megabytes))
    finally:
        sh("iptables", "-D", *opening)
        sh(*world, "ip", "route", "del", f"{ip}/32")
        sh(*PYRUN, "rm", "-f", cid)
    out = {name: statistics.median(v) for name, v in results.items()}
    # Each round's published transfer ran next to its direct one: the median of those ratios is steadier than the
    # ratio of medians on a machine whose speed drifts.
    for who, published in (("world", "host:port"), ("host", "127.0.0.1:port")):
        out[f"{who} ratio"] = statistics.median(p / d for p, d in zip(results[f"{who} -> {published}"],
                                                                      results[f"{who} -> container"]))
    return out


def bench_teardown(busybox: str, runs: int) -> dict:
    cni = Cni(18082)
    times: dict[str, list[float]] = {"pyrun rm -f": [], "CNI DEL": []}
    for i in range(runs + 1):
        sh(*PYRUN, "run", "-d", "--name", "td", "-p", "18083:8000", busybox, "sleep", "3600")
        t = timed(lambda: sh(*PYRUN, "rm", "-f", "td"))
        netns = f"td-{i}"
        sh("ip", "netns", "add", netns)
        result = cni.add(netns)
        c = timed(lambda: cni.delete(netns, result))
        sh("ip", "netns", "del", netns)
        if i:  # the first round warms up
            times["pyrun rm -f"].append(t)
            times["CNI DEL"].append(c)
    return {name: statistics.median(v) for name, v in times.items()}


def bench_sandbox(busybox: str, runs: int, count: int) -> dict:
    """What --sandbox costs at start against a plain run without a network, and how many sandboxed containers
    fit in a GiB: each one's monitor (resident) plus what its cgroup charges (the container's own memory)."""
    times = alternate({
        "sandbox": lambda: sh(*PYRUN, "run", "--rm", "--sandbox", busybox, "/bin/true"),
        "plain": lambda: sh(*PYRUN, "run", "--rm", "--network", "none", busybox, "/bin/true"),
    }, runs)
    before = _host_state()
    names = [f"sandbox{i}" for i in range(count)]
    for name in names:
        sh(*PYRUN, "run", "-d", "--sandbox", "--timeout", "600", "--name", name, busybox, "sleep", "3600")
    per = []
    for record in json.loads(sh(*PYRUN, "inspect", *names).stdout):
        with open(f"/run/pyrun/containers/{record['Id']}/state.json") as f:
            monitor = _rss_kib(json.load(f)["Monitor"]["Pid"]) << 10
        charged = [p for p in (f"/sys/fs/cgroup/memory/{os.environ['PYRUN_CGROUP_PARENT']}/{record['Id']}/"
                               "memory.usage_in_bytes",
                               f"/sys/fs/cgroup/{os.environ['PYRUN_CGROUP_PARENT']}/{record['Id']}/memory.current")
                   if os.path.exists(p)]
        with open(charged[0]) as f:
            per.append(monitor + int(f.read()))
    sh(*PYRUN, "rm", "-f", *names)
    after = _host_state()
    return {"sandbox_s": times["sandbox"], "plain_s": times["plain"], "containers": count,
            "mib_each": statistics.mean(per) / (1 << 20), "per_gib": (1 << 30) / statistics.mean(per),
            "residue": sum(len(set(after[k]) ^ set(before[k])) for k in before)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--scale", type=int, default=100)
    parser.add_argument("--megabytes", type=int, default=512)
    parser.add_argument("--transfers", type=int, default=7, help="TCP transfers per path")
    parser.add_argument("--only", default="start,oci,scale,data,teardown,sandbox", help="which rows, comma-separated")
    parser.add_argument("--busybox", required=True)
    parser.add_argument("--debian", required=True)
    parser.add_argument("--out", default=os.path.join(REPO, "bench-results.json"))
    args = parser.parse_args()
    results = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.node()} {platform.machine()}, "
               f"{os.cpu_count()} CPUs, kernel {platform.release()}", "runs": args.runs}
    only = args.only.split(",")
    if "start" in only:
        results["start"] = bench_start(args.busybox, args.runs)
    if "oci" in only:
        results["oci"] = bench_oci(args.busybox, args.runs)
    if "scale" in only:
        results["scale"] = bench_scale(args.busybox, args.scale)
    if "data" in only:
        results["data_mib_s"] = bench_data(args.debian, args.megabytes, args.transfers)
    if "teardown" in only:
        results["teardown_s"] = bench_teardown(args.busybox, args.runs)
    if "sandbox" in only:
        results["sandbox"] = bench_sandbox(args.busybox, args.runs, min(args.scale, 20))
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)
    print(table(results))


def table(r: dict) -> str:
    out = [f"Measured {r['date']} on {r['machine']}; medians of {r['runs']} alternating runs after a warm-up.", "",
           "| measure | pyrun | reference | ratio | target | met |", "|---|---|---|---|---|---|"]
    for s in r.get("start", []) + r.get("oci", []):
        ratio = s["pyrun"] / s["reference"]
        name = f"{s['pyrun_name']}: " if "pyrun_name" in s else ""
        out.append(f"| {s['what']} | {name}{s['pyrun'] * 1000:.0f} ms | {s['reference_name']}: "
                   f"{s['reference'] * 1000:.0f} ms"
                   + (f" ({s.get('floor_name', 'unshare')} floor {s['floor'] * 1000:.0f} ms)" if "floor" in s else "")
                   + f" | {ratio:.2f}x | <= {s['target']}x | {'yes' if ratio <= s['target'] else 'no'} |")
    sc = r.get("scale")
    if sc:
        starts = ", ".join(f"#{k}: {v * 1000:.0f} ms" for k, v in sc["start_s"].items())
        out.append(f"| {sc['containers']} detached containers, median start of {starts} | last/first | | "
                   f"{sc['last_vs_first']:.2f}x | <= 1.2x | {'yes' if sc['last_vs_first'] <= 1.2 else 'no'} |")
        out.append(f"| monitor resident memory per container | {sc['monitor_rss_mib_median']:.1f} MiB (max "
                   f"{sc['monitor_rss_mib_max']:.1f}) | bare python ~9 MiB | | <= 12 MiB | "
                   f"{'yes' if sc['monitor_rss_mib_max'] <= 12 else 'no'} |")
        out.append(f"| firewall rules with {sc['containers']} containers | {sc['firewall_rules']} | | | | |")
        out.append(f"| residue after removing all | {sc['residue']} | | | 0 | "
                   f"{'yes' if sc['residue'] == 0 else 'no'} |")
    d = r.get("data_mib_s")
    if d:
        for who, published in (("world", "host:port"), ("host", "127.0.0.1:port")):
            pub, direct, ratio = d[f"{who} -> {published}"], d[f"{who} -> container"], d[f"{who} ratio"]
            out.append(f"| TCP throughput from the {who}: through {published} | {pub:.0f} MiB/s | straight to the "
                       f"container's address: {direct:.0f} MiB/s | {ratio:.2f} (per round) | >= 0.9 | "
                       f"{'yes' if ratio >= 0.9 else 'no'} |")
    t = r.get("teardown_s")
    if t:
        out.append(f"| teardown of a running container with one port | {t['pyrun rm -f'] * 1000:.0f} ms | "
                   f"CNI DEL: {t['CNI DEL'] * 1000:.0f} ms | {t['pyrun rm -f'] / t['CNI DEL']:.2f}x | | |")
    sb = r.get("sandbox")
    if sb:
        out.append(f"| start to exit, --sandbox (user namespace, no caps, read-only, limits) | "
                   f"{sb['sandbox_s'] * 1000:.0f} ms | plain --network none run: {sb['plain_s'] * 1000:.0f} ms | "
                   f"{sb['sandbox_s'] / sb['plain_s']:.2f}x | | |")
        out.append(f"| sandboxed containers per GiB ({sb['containers']} detached, monitor resident + cgroup charge) | "
                   f"{sb['per_gib']:.0f} ({sb['mib_each']:.1f} MiB each) | | | | |")
        out.append(f"| residue after removing the sandboxed ones | {sb['residue']} | | | 0 | "
                   f"{'yes' if sb['residue'] == 0 else 'no'} |")
    return "\n".join(out)


if __name__ == "__main__":
    main()
