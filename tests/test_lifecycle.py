"""Detached containers and the commands that act on them: ps, logs, exec, inspect, stop, kill, rm, prune."""
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from conftest import user_network, HOST_IP, STATE_ROOT, fetch, pty_session, pyrun, pyrun_bg, sh, snapshot, wait_for

HTTPD = "mkdir -p /www && echo hello from $(hostname) > /www/index.html && echo started && exec httpd -f -v -p 8000 -h /www"
def detached(rootfs: str, *args: str, name: str = "web") -> str:
    r = pyrun("run", "-d", "--name", name, *args[:-1], rootfs, "sh", "-c", args[-1])
    assert r.returncode == 0 and re.fullmatch(r"[0-9a-f]{64}\n", r.stdout), r.stderr
    return r.stdout.strip()


def inspect(ref: str) -> dict:
    r = pyrun("inspect", ref)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)[0]


def ps(*args: str) -> list[dict]:
    """pyrun ps's table as dicts, cut at the header's column starts."""
    lines = pyrun("ps", *args).stdout.splitlines()
    starts = [m.start() for m in re.finditer(r"\S+", lines[0])]

    def cut(line: str) -> list[str]:
        return [line[a:b].strip() for a, b in zip(starts, starts[1:] + [None])]

    return [dict(zip(cut(lines[0]), cut(line))) for line in lines[1:]]


@pytest.fixture
def web(busybox, clean_host):
    cid = detached(busybox, "-p", "8088:8000", HTTPD)
    wait_for(lambda: fetch(f"http://{HOST_IP}:8088/"), what="the detached web server")
    yield cid
    pyrun("rm", "-f", "web")


def test_run_d_returns_at_once_and_ps_shows_it(web):
    [row] = ps()
    record = inspect("web")
    assert row["NAME"] == "web" and row["ID"] == web[:12] and row["STATUS"] == "running"
    assert row["PID"] == str(record["State"]["Pid"]) and row["IP"] == record["NetworkSettings"]["IPAddress"]
    assert row["PORTS"] == "0.0.0.0:8088->8000/tcp" and row["COMMAND"].startswith("sh -c mkdir")
    assert fetch(f"http://{HOST_IP}:8088/") == f"hello from {web[:12]}\n"


def test_the_monitor_is_small_and_owns_the_container(web):
    record = json.load(open(os.path.join(STATE_ROOT, "containers", web, "state.json")))
    monitor = record["Monitor"]["Pid"]
    status = dict(line.split(":", 1) for line in open(f"/proc/{monitor}/status"))
    assert int(status["VmRSS"].split()[0]) < 16 * 1024  # kB: an interpreter, not all of pyrun
    assert f"PPid:\t{monitor}\n" in open(f"/proc/{record['State']['Pid']}/status").read()


def test_logs_show_the_containers_output(web):
    fetch(f"http://{HOST_IP}:8088/")
    out = wait_for(lambda: (o := pyrun("logs", "web").stdout) and "response:200" in o and o, what="the log")
    assert out.startswith("started\n")


def test_logs_follow_ends_when_the_container_does(busybox, clean_host):
    detached(busybox, "--rm", "for i in 1 2 3; do echo line $i; sleep 0.3; done", name="talker")
    r = pyrun("logs", "-f", "talker")
    assert r.stdout == "line 1\nline 2\nline 3\n", r.stderr


def test_logs_tail_shows_the_last_lines(busybox, clean_host, tmp_path):
    """docker logs --tail N / -n N: the last N lines, also with -f (then what comes after); 0 is none, all is all."""
    detached(busybox, "--rm", "-v", f"{tmp_path}:/go", "seq 1 100000; echo ready; "
             "until [ -e /go/now ]; do sleep 0.05; done; echo late", name="talker")
    try:
        wait_for(lambda: "ready" in pyrun("logs", "--tail", "1", "talker").stdout, timeout=30, what="the log")
        assert pyrun("logs", "--tail", "3", "talker").stdout == "99999\n100000\nready\n"
        assert pyrun("logs", "-n", "0", "talker").stdout == ""
        assert pyrun("logs", "--tail", "all", "talker").stdout.startswith("1\n2\n")
        follow = pyrun_bg("logs", "-f", "-n", "1", "talker")
        assert follow.stdout.readline() == "ready\n"
        (tmp_path / "now").touch()
        assert follow.communicate(timeout=30)[0] == "late\n"
    finally:
        pyrun("rm", "-f", "talker")


def test_logs_tail_refuses_what_is_not_a_count(busybox, clean_host):
    r = pyrun("logs", "--tail", "-1", "nosuch")
    assert r.returncode == 125 and r.stderr == "pyrun: invalid --tail: '-1': expected a number of lines, or all\n"


def test_inspect_has_dockers_shape(web):
    record = inspect(web[:8])
    assert record["Id"] == web and record["Name"] == "web"
    assert {"Status", "Pid", "ExitCode", "OOMKilled", "StartedAt", "FinishedAt"} <= set(record["State"])
    settings = record["NetworkSettings"]
    assert settings["Gateway"] == "10.199.0.1" and settings["Ports"] == {
        "8000/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8088"}]}
    inside = pyrun("exec", "web", "cat", "/sys/class/net/eth0/address").stdout.strip()
    assert inside == settings["MacAddress"]
    assert record["Config"]["Cmd"][:2] == ["sh", "-c"]


def test_exec_joins_the_containers_namespaces_cgroup_and_privileges(web):
    pid = inspect("web")["State"]["Pid"]
    script = ("for ns in mnt uts ipc net pid; do readlink /proc/$$/ns/$ns; done; hostname; cat /proc/$$/cgroup; "
              "grep -E '^(CapInh|CapEff|CapBnd|CapAmb|NoNewPrivs)' /proc/$$/status; echo fds:; ls /proc/$$/fd; "
              "true")  # so that sh does not exec the ls in its own place
    r = pyrun("exec", "web", "sh", "-c", script)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[:5] == [os.readlink(f"/proc/{pid}/ns/{ns}") for ns in ("mnt", "uts", "ipc", "net", "pid")]
    assert lines[5] == web[:12]
    assert all(line in lines for line in open(f"/proc/{pid}/cgroup").read().splitlines())
    status = dict(line.split(":\t") for line in lines if ":\t" in line)
    assert status["CapInh"] == status["CapAmb"] == "0000000000000000"
    assert status["CapEff"] == status["CapBnd"] == "00000000a80425fb" and status["NoNewPrivs"] == "1"
    assert lines[lines.index("fds:") + 1:] == ["0", "1", "2"]  # no fd of pyrun's (CVE-2024-21626)


def test_exec_exit_status_and_errors(web):
    assert pyrun("exec", "web", "sh", "-c", "exit 3").returncode == 3
    r = pyrun("exec", "web", "no-such-command")
    assert r.returncode == 127 and "executable file not found" in r.stderr
    r = pyrun("exec", "-w", "/etc", "-e", "GREETING=hi", "web", "sh", "-c", "echo $GREETING; pwd")
    assert r.stdout == "hi\n/etc\n"


def test_exec_it_gives_a_terminal(web):
    session = pty_session("exec", "-it", "web", "sh")
    assert session.read_until(b"# ")
    session.write(b"tty; ps -o pid,comm | grep -c httpd\r")
    assert session.read_until(b"\n1\r\n"), session.out
    session.write(b"exit 4\r")
    assert session.wait() == 4
    assert b"/dev/pts/" in session.out


def test_stop_sends_sigterm_then_sigkill(busybox, clean_host):
    detached(busybox, "sleep 300", name="stubborn")  # PID 1 without a handler: SIGTERM is ignored
    started = time.monotonic()
    assert pyrun("stop", "-t", "1", "stubborn").returncode == 0
    assert time.monotonic() - started >= 1
    assert inspect("stubborn")["State"]["ExitCode"] == 137
    detached(busybox, "--init", "sleep 300", name="polite")  # --init passes SIGTERM on: sleep dies at once
    assert pyrun("stop", "polite").returncode == 0
    assert inspect("polite")["State"]["ExitCode"] == 143  # SIGTERM did it, not the SIGKILL 10 s later
    assert [row["STATUS"] for row in ps("-a")] == ["exited (143)", "exited (137)"]
    assert pyrun("stop", "polite").returncode == 0  # stopping a stopped container is no error
    assert pyrun("rm", "stubborn", "polite").returncode == 0
    assert ps("-a") == []


def test_kill_sends_the_signal_named(busybox, clean_host):
    detached(busybox, "trap 'echo got HUP; exit 7' HUP; echo ready; while true; do sleep 0.1; done", name="trapper")
    wait_for(lambda: "ready" in pyrun("logs", "trapper").stdout, what="the trap")
    assert pyrun("kill", "-s", "HUP", "trapper").returncode == 0
    wait_for(lambda: inspect("trapper")["State"]["Status"] == "exited", what="the exit")
    assert inspect("trapper")["State"]["ExitCode"] == 7
    assert "got HUP" in pyrun("logs", "trapper").stdout
    pyrun("rm", "trapper")


def test_rm_of_a_running_container_needs_force(web):
    r = pyrun("rm", "web")
    assert r.returncode == 125 and "stop it first" in r.stderr and ps()[0]["STATUS"] == "running"
    assert pyrun("rm", "-f", "web").returncode == 0
    assert ps("-a") == [] and fetch(f"http://{HOST_IP}:8088/") is None


def test_run_d_rm_removes_itself(busybox, clean_host):
    detached(busybox, "--rm", "sleep 0.5", name="brief")
    wait_for(lambda: ps("-a") == [], what="the container to remove itself")


def test_foreground_container_can_be_stopped_from_outside(busybox, clean_host):
    p = pyrun_bg("run", "--rm", "--init", "--name", "fg", busybox, "sleep", "300")
    wait_for(lambda: [r for r in ps() if r["NAME"] == "fg"], what="the container")
    assert pyrun("stop", "fg").returncode == 0
    assert p.wait(timeout=10) == 143


def test_a_killed_monitor_is_cleaned_up_by_the_next_run(busybox, clean_host):
    cid = detached(busybox, "-p", "8096:8000", HTTPD, name="orphan")
    monitor = json.load(open(os.path.join(STATE_ROOT, "containers", cid, "state.json")))["Monitor"]["Pid"]
    os.kill(monitor, signal.SIGKILL)
    wait_for(lambda: ps("-a")[0]["STATUS"] == "dead", what="ps to see the monitor is gone")
    assert "pyrun:" in sh("iptables-save").stdout  # its rules are still there...
    r = pyrun("run", "--rm", "-p", "8096:8000", busybox, "true")  # ...until the next run tidies up
    assert r.returncode == 0, r.stderr
    assert ps("-a")[0]["STATUS"] == "dead" and "pyrun:" not in sh("iptables-save").stdout
    assert pyrun("rm", "orphan").returncode == 0


FAULT_RUN = ["--network", "faultnet", "-p", "8097:8000"]


def _kinds() -> list[str]:
    """Every kind of step FAULT_RUN journals, taken from the recipe itself: a step added there is tested here."""
    from runtime import recipe
    from runtime.network.networks import Network
    from runtime.spec import build_spec

    spec = build_spec("/", ["true"], network="faultnet", publish=["8097:8000"])
    return [p.step.kind for p in recipe.recipe(spec, Network("faultnet", "pr-fault", "10.196.0.0/24"), STATE_ROOT,
                                                "0" * 64, "fault", "10.196.0.2")]


@pytest.fixture(scope="module")
def faultnet():
    with user_network("faultnet", "10.196.0.0/24"):
        yield


@pytest.mark.parametrize("kind", _kinds())
def test_sigkill_after_each_setup_step_then_prune_leaves_nothing(busybox, faultnet, kind):
    before = snapshot()
    p = pyrun_bg("run", "--name", f"fault-{kind}", *FAULT_RUN, busybox, "true",
                 env={**os.environ, "PYRUN_DEBUG_PAUSE_AFTER": kind})
    assert p.stderr.readline() == f"pyrun: paused after {kind} (PYRUN_DEBUG_PAUSE_AFTER)\n"
    p.kill()
    p.wait()
    r = pyrun("prune")
    assert r.returncode == 0 and r.stdout == f"fault-{kind}\n", r.stderr
    wait_for(lambda: snapshot() == before, timeout=5, what="the host to be as before")


def test_teardown_twice_is_harmless(busybox, clean_host):
    cid = detached(busybox, "-p", "8098:8000", "sleep 300", name="twice")
    journal = open(os.path.join(STATE_ROOT, "containers", cid, "journal")).read()
    assert pyrun("rm", "-f", "twice").returncode == 0
    # Replay the removed container's journal, as a second teardown would.
    os.makedirs(os.path.join(STATE_ROOT, "containers", cid))
    with open(os.path.join(STATE_ROOT, "containers", cid, "journal"), "w") as f:
        f.write(journal)
    with open(os.path.join(STATE_ROOT, "containers", cid, "state.json"), "w") as f:
        json.dump({"Id": cid, "Name": "twice", "State": {"Status": "exited"}}, f)
    r = pyrun("rm", "twice")
    assert r.returncode == 0 and r.stderr == ""


def test_thirty_named_containers_started_and_stopped_in_parallel(busybox, clean_host):
    names = [f"par{i}" for i in range(30)]
    starts = [pyrun_bg("run", "-d", "--init", "--name", n, busybox, "sleep", "300") for n in names]
    assert [p.wait(timeout=120) for p in starts] == [0] * 30, [p.stderr.read() for p in starts if p.returncode]
    rows = ps()
    assert sorted(r["NAME"] for r in rows) == sorted(names) and len({r["IP"] for r in rows}) == 30
    stops = [pyrun_bg("stop", n) for n in names]
    assert [p.wait(timeout=120) for p in stops] == [0] * 30, [p.stderr.read() for p in stops if p.returncode]
    assert {r["STATUS"] for r in ps("-a")} == {"exited (143)"}
    removes = [pyrun_bg("rm", n) for n in names]
    assert [p.wait(timeout=120) for p in removes] == [0] * 30
    assert ps("-a") == []


def test_soak_200_sequential_runs_stay_flat(busybox, clean_host):
    fds_before = len(os.listdir("/proc/self/fd"))
    for i in range(200):
        r = pyrun("run", "--rm", "-p", "8099:8000", busybox, "true")
        assert r.returncode == 0, f"run {i}: {r.stderr}"
    assert len(os.listdir("/proc/self/fd")) == fds_before
    # clean_host compares links, addresses, routes, rules, netns, leases, cgroups, mounts and records.


BAD = [
    (["inspect", "nosuch"], "'nosuch': no container has this name or id"),
    (["logs", "nosuch"], "no container has this name or id"),
    (["stop", "nosuch"], "no container has this name or id"),
    (["exec", "nosuch", "true"], "no container has this name or id"),
    (["kill", "-s", "SIGNOPE", "web"], "'SIGNOPE': expected a signal name or number"),
    (["stop", "-t", "soon", "web"], "'soon': expected a number of seconds"),
    (["run", "-d", "--name", "web", "{rootfs}", "true"], "'web' is already in use"),
    (["run", "-d", "-t", "{rootfs}", "sh"], "cannot be given -i or -t"),
    (["rm", "web"], "is running: stop it first"),
    (["--root", "/proc/pyrun", "ps"], "'/proc/pyrun'"),
]


@pytest.mark.parametrize("args,message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_125_and_changes_nothing(web, busybox, args, message):
    before = snapshot()
    r = pyrun(*[a.format(rootfs=busybox) for a in args])
    assert r.returncode == 125 and message in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
    assert snapshot() == before and ps()[0]["STATUS"] == "running"


def test_exec_into_a_stopped_container_is_125(busybox, clean_host):
    subprocess.run([sys.executable, "-m", "runtime", "run", "--name", "done", busybox, "true"], check=True)
    r = pyrun("exec", "done", "true")
    assert r.returncode == 125 and "container done is not running (it is exited)" in r.stderr
    pyrun("rm", "done")


def test_ambiguous_id_prefix_is_125(busybox, clean_host):
    # Among 17 ids two share a first digit: pigeonhole, not luck.
    procs = [pyrun_bg("run", "--network", "none", busybox, "true") for _ in range(17)]
    [p.wait(timeout=60) for p in procs]
    ids = [r["ID"] for r in ps("-a")]
    digit = next(d for d in "0123456789abcdef" if sum(i.startswith(d) for i in ids) > 1)
    r = pyrun("inspect", digit)
    assert r.returncode == 125 and "ambiguous" in r.stderr
    assert pyrun("prune").returncode == 0 and ps("-a") == []


def test_rm_f_and_stop_racing_with_exit(busybox, clean_host):
    # Each container exits on its own at about the moment it is removed or stopped: never an error.
    names = [f"racer{i}" for i in range(12)]
    for i, n in enumerate(names):
        assert pyrun("run", "-d", "--name", n, "--network", "none", busybox, "sleep", f"0.{i % 4 + 2}").returncode == 0
    stops = [pyrun_bg("stop", n) for n in names[::2]]
    removes = [pyrun_bg("rm", "-f", n) for n in names[1::2]]
    for p in stops + removes:
        assert p.wait(timeout=60) == 0, p.stderr.read()
    assert pyrun("rm", *names[::2]).returncode == 0
    assert ps("-a") == []
