"""--explain and --verbose: each step as the shell command a learner would type, and the script runs as printed."""
import os
import subprocess
from dataclasses import replace

from conftest import HOST_IP, STATE_ROOT, fetch, pyrun, snapshot, wait_for
from runtime import cgroups, pid1
from runtime.cgroups import Cgroup
from runtime.rootfs import Layer
from runtime.explain import TEARDOWN
from runtime.network import bridge, firewall, ipam, portguard, veth
from runtime.network.ports import PortMapping
from runtime.spec import build_spec

CID = "c0ffee" * 10 + "abcd"


def test_golden_cgroup():
    c = Cgroup(CID, memory=64 << 20, cpus=0.5, pids_limit=50)
    controllers = [m for m in ("cpu", "memory", "pids", "devices") if cgroups.hierarchy(m)[0]]
    base = {m: os.path.join(cgroups.hierarchy(m)[1], cgroups.PARENT, CID) for m in controllers}
    if cgroups.hierarchy("memory")[0] == 1:
        limits = [f"echo 100000 > {base['cpu']}/cpu.cfs_period_us", f"echo 50000 > {base['cpu']}/cpu.cfs_quota_us",
                  f"echo 67108864 > {base['memory']}/memory.limit_in_bytes", f"echo 50 > {base['pids']}/pids.max"]
    else:
        limits = [f"echo 50000 100000 > {base['cpu']}/cpu.max", f"echo 67108864 > {base['memory']}/memory.max",
                  f"echo 50 > {base['pids']}/pids.max"]
    if "devices" in base:
        limits += [f"echo a > {base['devices']}/devices.deny", f"echo 'c 1:3 rwm' > {base['devices']}/devices.allow",
                   f"echo 'c 136:* rwm' > {base['devices']}/devices.allow"]
        assert len([line for line in c.shell_up() if "/devices." in line]) == len(cgroups.DEVICE_RULES)
    paths = sorted(set(base.values()))
    assert set([f"mkdir -p {p}" for p in paths] + limits) <= set(c.shell_up())
    assert c.shell_down()[:2] == [
        f"xargs -r kill -9 < {paths[0]}/cgroup.procs",
        f"for i in $(seq 100); do rmdir {paths[0]} 2>/dev/null && break; sleep 0.05; done"]


def test_golden_layer_and_lease():
    assert Layer("/s/c/layer").shell_up() == [
        "mkdir -p -m 0700 /s/c/layer", "mkdir -m 0755 /s/c/layer/diff", "mkdir -m 0700 /s/c/layer/work /s/c/layer/merged",
        "mount --bind /s/c/layer /s/c/layer", "mount -o remount,bind,nosuid,nodev /s/c/layer"]
    assert Layer("/s/c/layer").shell_down() == ["umount -l /s/c/layer", "rm -rf /s/c/layer"]
    lease = ipam.Lease("pyrun0", "10.199.0.7", CID)
    leases = "/run/pyrun-net/ipam/pyrun0"
    assert lease.shell_up() == [f"mkdir -p {leases}",
                                f"echo {CID} > {leases}/10.199.0.7   # lease 10.199.0.7: the file is the lease"]
    assert lease.shell_down() == [f"rm {leases}/10.199.0.7"]


def test_golden_netns_and_veth():
    ns = veth.NetnsName("pyrun-web", 4242)
    assert ns.shell_up() == ["mkdir -p /run/netns", "touch /run/netns/pyrun-web",
                             "mount --bind /proc/4242/ns/net /run/netns/pyrun-web"]
    assert ns.shell_down() == ["umount /run/netns/pyrun-web", "rm /run/netns/pyrun-web"]
    pair = veth.Veth("pvc0ffeec0ffee", "pyrun0", "10.199.0.7", 16, "10.199.0.1",
                     veth.mac_address("10.199.0.7"), pid=4242)
    inside = "nsenter --net=/proc/4242/ns/net"
    assert pair.shell_up() == [
        "ip link add pvc0ffeec0ffee master pyrun0 type veth peer name eth0 address 02:42:0a:c7:00:07 netns 4242",
        "sysctl -qw net.ipv6.conf.pvc0ffeec0ffee.disable_ipv6=1",
        "ip link set pvc0ffeec0ffee up type bridge_slave hairpin on   # hairpin: back out of its own port, to its "
        "published ports",
        f"{inside} sysctl -qw net.ipv6.conf.eth0.disable_ipv6=1",
        f"{inside} ip link set lo up", f"{inside} ip addr add 10.199.0.7/16 dev eth0",
        f"{inside} ip link set eth0 up", f"{inside} ip route add default via 10.199.0.1"]
    assert pair.shell_down() == ["ip link del pvc0ffeec0ffee"]


def test_golden_port_guard():
    guard = portguard.PortGuard(CID, "pvc0ffeec0ffee", "02:42:0a:c7:00:07", "10.199.0.7")
    chain = f"PYRUN-{CID[:12]}"
    # One batch, one command: ebtables-restore applies it as one change, as pyrun does.
    assert guard.shell_up() == ["\n".join([
        "ebtables-restore --noflush <<EOF", "*nat", f":{chain} RETURN",
        f"-A {chain} -s 02:42:0a:c7:00:07 -p ARP --arp-mac-src 02:42:0a:c7:00:07 --arp-ip-src 10.199.0.7 -j RETURN",
        f"-A {chain} -s 02:42:0a:c7:00:07 -p IPv4 --ip-src 10.199.0.7 -j RETURN",
        f"-A {chain} -j DROP",
        f"-A PREROUTING -i pvc0ffeec0ffee -j {chain}", "COMMIT", "EOF"])]
    assert guard.shell_down() == ["\n".join([
        "ebtables-restore --noflush <<EOF   # one gone already? pyrun then removes what is left", "*nat",
        f"-D PREROUTING -i pvc0ffeec0ffee -j {chain}", f"-F {chain}", f"-X {chain}", "COMMIT", "EOF"])]


def test_golden_published_port_rules():
    rules = firewall.ContainerRules(CID, "pyrun0", "10.199.0.7", [PortMapping(None, 8088, 8000, "tcp"),
                                                                 PortMapping("127.0.0.1", 5353, 53, "udp")])
    tag = f"-m comment --comment pyrun:{CID}"
    added = ["*filter",
             f"-A PYRUN-PUBLISHED -d 10.199.0.7/32 -o pyrun0 -p tcp -m tcp --dport 8000 -m conntrack --ctstate DNAT "
             f"{tag} -j ACCEPT", "COMMIT",
             "*nat",
             f"-A PYRUN-DNAT -p tcp -m tcp --dport 8088 {tag} -j DNAT --to-destination 10.199.0.7:8000",
             f"-A PYRUN-DNAT -d 127.0.0.1/32 -p udp -m udp --dport 5353 {tag} -j DNAT --to-destination 10.199.0.7:53",
             "COMMIT"]  # loopback only: no FORWARD accept
    assert rules.shell_up() == ["\n".join(["iptables-restore --noflush --wait <<EOF", *added, "EOF"])]
    assert rules.shell_down() == ["\n".join([
        f"iptables-restore --noflush --wait <<EOF   # one gone already? pyrun then deletes those still tagged "
        f"pyrun:{CID}", *[line.replace("-A ", "-D ", 1) for line in added], "EOF"])]


def test_golden_bridge_setup_is_idempotent_shell():
    cmds = bridge.Bridge("bridge", "pyrun0", "10.199.0.0/16").shell_up()
    mac = bridge.bridge_mac("pyrun0")
    assert cmds[:4] == [f"ip link show pyrun0 >/dev/null 2>&1 || ip link add pyrun0 address {mac} type bridge",
                        f"ip link set pyrun0 address {mac}   # its own MAC, never its lowest port's",
                        "sysctl -qw net.ipv6.conf.pyrun0.disable_ipv6=1",
                        "ip -4 addr show dev pyrun0 | grep -q 'inet 10.199.0.1/' || "
                        "ip addr add 10.199.0.1/16 dev pyrun0"]
    assert "iptables -t nat -C POSTROUTING -j PYRUN-POSTROUTING 2>/dev/null || " \
           "iptables -t nat -I POSTROUTING 1 -j PYRUN-POSTROUTING" in cmds
    assert len([c for c in cmds if "pyrun bridge pyrun0" in c]) == len(firewall.bridge_rules("pyrun0", "10.0.0.0/8"))


def test_golden_rootfs():
    spec = build_spec("/", ["true"], workdir="/srv")
    actions = pid1.recipe(spec, "/s/c/layer", [("/data", "/mnt", True)], "web")
    assert [a.kind for a in actions] == ["private", "overlay", "proc", "dev", "sys", "bind", "workdir", "pivot", "mask",
                                         "hostname"]
    cmds = [c for a in actions for c in a.shell()]
    assert cmds[:4] == ["mount --make-rprivate /",
                        "mount -t overlay overlay -o lowerdir=/proc/self/fd/3,upperdir=/proc/self/fd/4,"
                        "workdir=/proc/self/fd/5 /s/c/layer/merged 3< / 4< /s/c/layer/diff 5< /s/c/layer/work",
                        "cd /s/c/layer/merged", "mount -t proc -o nosuid,nodev,noexec proc proc"]
    assert "mknod -m 666 dev/null c 1 3" in cmds and "ln -s pts/ptmx dev/ptmx" in cmds
    assert cmds[cmds.index("mount --rbind /data ./mnt") + 1] == \
        'findmnt -Rno TARGET ./mnt | while IFS= read -r m; do mount -o remount,bind,ro "$m"; done'
    assert cmds.index("mkdir -p ./srv") < cmds.index("pivot_root . .") < cmds.index("cd /")
    assert any(c.startswith("if [ -d /proc/kcore ]") for c in cmds[cmds.index("cd /"):])  # masked after the pivot
    assert cmds[-1] == "hostname web"
    userns = pid1.recipe(replace(spec, userns="auto", read_only=True), "/s/c/layer", [], "web")
    assert [a.kind for a in userns][-2:] == ["readonly", "hostname"]
    cmds = [c for a in userns for c in a.shell()]
    assert "touch dev/null && mount --bind /dev/null dev/null" in cmds and not any("mknod" in c for c in cmds)
    assert any(c.endswith(",userxattr /s/c/layer/merged 3< /s/c/layer/lower 4< /s/c/layer/diff 5< /s/c/layer/work")
               for c in cmds)  # on pyrun's idmapped mount of the rootfs


def test_explain_changes_nothing(debian, clean_host):
    before = snapshot()
    r = pyrun("run", "--explain", "-p", "8087:8000", debian, "python", "-m", "http.server", "8000")
    assert r.returncode == 0 and TEARDOWN in r.stdout, r.stderr
    assert snapshot() == before


def test_the_explained_script_runs_as_printed(debian, clean_host):
    """bash runs the printed setup; the world reaches the server through the published port; the teardown
    leaves nothing."""
    out = pyrun("run", "--explain", "--name", "byhand", "-p", "8087:8000", debian,
                "python", "-m", "http.server", "8000").stdout
    setup, teardown = out.split(TEARDOWN)
    r = subprocess.run(["bash", "-c", setup], capture_output=True, text=True, timeout=60)
    try:
        assert r.returncode == 0, r.stderr
        fetched = wait_for(lambda: fetch(f"http://{HOST_IP}:8087/", "world"), timeout=20, what="the server")
        assert "Directory listing" in fetched
        assert fetch("http://127.0.0.1:8087/")  # the host reaches its own published port
        ns = subprocess.run(["ip", "netns", "exec", "pyrun-byhand", "ip", "-4", "-o", "addr", "show", "eth0"],
                            capture_output=True, text=True)
        assert "10.199." in ns.stdout  # the blog's commands work against it
    finally:
        t = subprocess.run(["bash", "-c", teardown], capture_output=True, text=True, timeout=60)  # on its own
    assert t.returncode == 0, t.stderr
    assert not os.listdir(os.path.join(STATE_ROOT, "containers"))


def test_verbose_prints_each_step_with_its_time(busybox, clean_host):
    r = pyrun("run", "--rm", "--verbose", "-p", "8086:80", busybox, "true")
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    assert any(" ms] ip link add pv" in line for line in lines)
    assert any(" ms] undo: ip link del pv" in line for line in lines)
    batch = lines.index(next(line for line in lines if " ms] iptables-restore --noflush --wait <<EOF" in line))
    assert any(line.endswith(" -j DNAT --to-destination 10.199.0.2:80") for line in lines[batch:])  # under it
