"""--sandbox: a hostile script tries everything at once; the host checks that each limit held.

The script runs as `pyrun run --sandbox` would run someone else's code. It
writes outside /tmp, fork-bombs, connects to the world and to a service on
the host, checks its capabilities, and finally loops past its time limit
ignoring SIGTERM. Everything is checked from the host: /proc/PID/status,
the container's process count, the listeners' accept counts, the layer on
disk, pyrun's exit code, and that nothing is left behind.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import threading

import pytest

from conftest import HOST_IP, INTERNET_IP, RUNTIMES, STATE_ROOT, pyrun, pyrun_bg, running_record, wait_for

HOSTILE = r"""
echo x > /evil; echo x > /etc/evil; mkdir /usr/evil
echo x > /tmp/fine && echo tmp-ok
nc -w 2 {internet} 7777 </dev/null && echo reached-world
nc -w 2 {host} 7778 </dev/null && echo reached-host
( while :; do sleep 300 & done ) 2>/dev/null
echo bombed
trap '' TERM INT
while :; do :; done
"""


def sandbox(runtime: str) -> list[str]:
    """--sandbox under RUNTIME: pyrun's own, or an OCI runtime given pyrun's bundle (oci/client.py), --init's
    PID 1 then tini."""
    return ["--sandbox", "--runtime", runtime]


class Listener:
    """A TCP service that counts the connections it accepts, in the sandbox host or the "world" namespace."""

    def __init__(self, address: str, port: int, netns: str | None = None):
        self.accepted = 0
        if netns:  # a server in another network namespace: a child process there
            code = ("import socket,sys; s=socket.create_server((sys.argv[1], int(sys.argv[2]))); print('up', "
                    "flush=True); s.settimeout(60)\nwhile True:\n  c,_=s.accept(); print('accepted', flush=True)")
            self.proc = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-c", code, address, str(port)],
                                         stdout=subprocess.PIPE, text=True)
            assert self.proc.stdout.readline() == "up\n"
            threading.Thread(target=self._count_lines, daemon=True).start()
        else:
            self.proc = None
            self.sock = socket.create_server((address, port))
            self.sock.settimeout(0.2)
            self.stopped = False
            self.thread = threading.Thread(target=self._accept, daemon=True)
            self.thread.start()

    def _count_lines(self):
        for line in self.proc.stdout:
            self.accepted += line == "accepted\n"

    def _accept(self):
        while not self.stopped:
            try:
                self.sock.accept()[0].close()
                self.accepted += 1
            except OSError:
                continue

    def close(self):
        if self.proc:
            self.proc.kill()
            self.proc.wait()
        else:
            self.stopped = True
            self.thread.join()  # first: a poll(2) in accept would hold the socket listening after close
            self.sock.close()


def host_status(pid: int) -> dict:
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_hostile_script_under_sandbox_is_held_and_killed_at_its_timeout(runtime, busybox, clean_host):
    world, host = Listener(INTERNET_IP, 7777, "world"), Listener(HOST_IP, 7778)
    from runtime import lifecycle
    from runtime.record import Record

    p = pyrun_bg("run", "--rm", *sandbox(runtime), "--name", "hostile", "--timeout", "8", "--stop-timeout", "1", busybox,
                 "sh", "-c", HOSTILE.format(internet=INTERNET_IP, host=HOST_IP))
    try:
        record = wait_for(lambda: running_record("hostile"), what="the container to run")
        lines = iter(p.stdout.readline, "")
        assert next(lines) == "tmp-ok\n"
        assert next(lines) == "bombed\n"  # the fork bomb ran into its limit and the script went on
        pids = lifecycle.pids(Record(record))
        assert 10 < len(pids) <= 64  # --pids-limit 64: the bomb forked, but only so far
        base = int(record["HostConfig"]["IDMappings"]["UidMap"][0].split()[1])  # --userns=auto
        assert base >= 65536
        for pid in pids[:3]:
            try:
                s = host_status(pid)
            except FileNotFoundError:
                continue
            nobody = str(base + 65534)  # nobody of its own user namespace: no host user's uid
            assert s["Uid"].split() == [nobody] * 4 and s["Gid"].split() == [nobody] * 4
            assert s["CapEff"] == s["CapPrm"] == s["CapBnd"] == "0000000000000000" and s["NoNewPrivs"] == "1"
        root = f"/proc/{record['Init']['Pid']}/root"
        assert not any(os.path.exists(f"{root}{path}") for path in ("/evil", "/etc/evil", "/usr/evil"))
        diff = os.path.join(STATE_ROOT, "containers", record["Id"], "layer", "diff")
        landed = sorted(os.path.relpath(os.path.join(d, f), diff) for d, _, files in os.walk(diff) for f in files)
        # under a runtime, only --init's mount point, which pyrun makes for tini's bind (oci/bundle.py's Bundle)
        assert landed == ([] if runtime == "pyrun" else ["sbin/docker-init"])
        p.wait(timeout=30)  # --timeout 8, then SIGKILL one second after the ignored SIGTERM
    finally:
        p.kill()
        world.close()
        host.close()
    assert p.returncode == 124, p.stderr.read()
    assert "reached" not in p.stdout.read()
    assert world.accepted == host.accepted == 0


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_setuid_binary_does_not_make_it_root(runtime, debian, clean_host, tmp_path):
    """A setuid-root python in the container: without no_new_privs it would run with euid 0."""
    suid = tmp_path / "pysuid"
    shutil.copy(os.path.join(debian, "usr", "bin", "python3"), suid)
    os.chmod(suid, 0o4755)
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o777)
    r = pyrun("run", "--rm", *sandbox(runtime), "-v", f"{suid}:/usr/local/bin/pysuid:ro", "-v", f"{out}:/out", debian,
              "pysuid", "-c", "import os; open('/out/made', 'w').write(str(os.geteuid())); "
              "print(open('/proc/self/uid_map').read())")
    assert r.returncode == 0, r.stderr
    made = os.stat(out / "made")
    base = int(r.stdout.split()[1])  # --userns=auto: nobody inside is host uid BASE+65534
    assert base >= 65536 and (made.st_uid, made.st_gid) == (base + 65534, base + 65534)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_the_sandbox_defaults_as_the_record_shows_them(runtime, busybox, clean_host):
    assert pyrun("run", "-d", *sandbox(runtime), "--name", "sb", busybox, "sleep", "300").returncode == 0
    try:
        r = pyrun("inspect", "-f", "{{json .HostConfig}}|{{.Config.User}}", "sb")
        host, user = r.stdout.strip().split("|")
        host = json.loads(host)
        assert user == "65534:65534"
        assert (host["NetworkMode"], host["ReadonlyRootfs"], host["Init"], host["Capabilities"]) == \
            ("none", True, True, [])
        assert (host["Memory"], host["PidsLimit"], host["NanoCpus"], host["Timeout"]) == (256 << 20, 64, 10**9, 60)
        assert host["Tmpfs"] == {"/tmp": "noexec,nosuid,nodev,size=67108864"} and host["Sandbox"] is True
        assert host["UsernsMode"] == "auto" and host["IDMappings"]["UidMap"][0].startswith("0 ")
    finally:
        pyrun("rm", "-f", "sb")


def test_each_part_is_overridden_by_its_own_flag(busybox):
    from runtime.spec import build_spec

    s = build_spec(busybox, ["true"], sandbox=True, user="1000", network="bridge", read_only=False, init=False,
                   memory="1g", pids_limit="-1", cpus="0.5", timeout="0", cap_add=["NET_BIND_SERVICE"],
                   tmpfs=["/tmp:size=1g"], userns="host")
    assert (s.user, s.network, s.read_only, s.init, s.timeout) == ("1000", "bridge", False, False, None)
    assert s.userns == "host" and build_spec(busybox, ["true"], sandbox=True).userns == "auto"
    assert (s.resources.memory, s.resources.pids_limit, s.resources.cpus) == (1 << 30, None, 0.5)
    assert s.caps == {"NET_BIND_SERVICE"} and [t.data for t in s.tmpfs] == ["size=1073741824"]
    # A bind at /tmp takes the place of the sandbox's tmpfs.
    assert build_spec(busybox, ["true"], sandbox=True, volumes=[f"{busybox}:/tmp"]).tmpfs == ()
    # Without --sandbox nothing changes.
    plain = build_spec(busybox, ["true"])
    assert (plain.user, plain.network, plain.read_only, plain.init, plain.timeout, plain.tmpfs, plain.userns) == \
        (None, "bridge", False, False, None, (), "host")


@pytest.mark.parametrize("args", [["-p", "8080:80"]])
def test_publishing_needs_a_network_given(busybox, clean_host, args):
    r = pyrun("run", "--rm", "--sandbox", *args, busybox, "true")
    assert r.returncode == 125 and "ports are published only with --network bridge, not 'none'" in r.stderr


def test_fifty_sandboxed_runs_at_once_each_in_a_uid_range_of_its_own(busybox, clean_host, tmp_path):
    """Fifty at once on two CPUs, all alive together (each waits for the test's go): every one finishes, each
    as root of a host uid range no other running one shares, and nothing is left behind (clean_host)."""
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    os.chmod(tmp_path, 0o755)  # the containers' root is an unprivileged host uid: it must be let through
    script = "id -u; cat /proc/self/uid_map; while [ ! -e /b/go ]; do sleep 0.1; done"
    runs = [pyrun_bg("run", "--rm", "--sandbox", "--timeout", "240", "-u", "0", "-v", f"{barrier}:/b:ro", busybox,
                     "sh", "-c", script) for _ in range(50)]
    try:
        wait_for(lambda: len(pyrun("ps", "-q").stdout.split()) == 50, timeout=240, what="fifty running at once")
    finally:
        (barrier / "go").touch()
    bases = []
    for proc in runs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        uid, mapping = out.splitlines()[:2]
        inside, outside, count = map(int, mapping.split())
        assert (uid, inside, count) == ("0", 0, 65536) and outside >= 65536, out  # root inside, not outside
        bases.append(outside)
    spans = sorted((b, b + 65536) for b in bases)
    assert all(end <= start for (_, end), (start, _) in zip(spans, spans[1:])), spans  # no two overlap
