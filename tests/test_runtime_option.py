"""pyrun run --runtime: pyrun as the engine, an OCI runtime (runc, pyrun-oci) making the container.

The same `pyrun run` command lines, with the container handed to a runtime
through a bundle: the published port answers the host and the world, exec,
exit codes, -t and -i behave as with pyrun's own runtime, no runtime process
stays between pyrun's monitor and the container, and a pyrun killed at any
step leaves nothing once pruned, the runtime's own state included, as does
`pyrun rm -f` while the runtime holds the container created and not started.
The runs there are --init's (tini's copy is a step too), and --init without
tini is refused as bad input.
"""
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys

import pytest
from conftest import (HOST_IP, REPO, STATE_ROOT, explained_config, fetch, pid_of, pty_session, pyrun, pyrun_bg,
                      running_record, snapshot, wait_for)

pytestmark = pytest.mark.skipif(not shutil.which("runc"), reason="runc is not installed: scripts/setup-engines")
RUNTIMES = ["runc", "pyrun-oci"]


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_published_server_exec_and_rm_through_the_runtime(runtime, debian, clean_host):
    r = pyrun("run", "-d", "--name", f"web-{runtime}", "--runtime", runtime, "-p", "8150:8000", debian,
              "python3", "-m", "http.server", "8000")
    assert r.returncode == 0, r.stderr
    try:
        record = wait_for(lambda: running_record(f"web-{runtime}"), what="the record")
        assert record["HostConfig"]["Runtime"] == runtime
        pid = record["State"]["Pid"]
        assert _parent(pid) == record["Monitor"]["Pid"]  # pyrun's monitor, not a runtime process, is its parent
        monitor = record["Monitor"]["Pid"]
        with open(f"/proc/{monitor}/task/{monitor}/children") as f:
            assert f.read().split() == [str(pid)]  # and nothing of the runtime's stays beside it
        assert "Directory listing" in wait_for(lambda: fetch(f"http://{HOST_IP}:8150/"), what="the host to reach it")
        assert "Directory listing" in (fetch(f"http://{HOST_IP}:8150/", netns="world") or "")
        e = pyrun("exec", f"web-{runtime}", "sh", "-c", "cat /etc/hostname; id -u; grep -c . /proc/net/dev")
        assert e.returncode == 0, e.stderr
        hostname, uid, links = e.stdout.split()
        assert (hostname, uid, links) == (record["Id"][:12], "0", "4")  # two header lines, lo and eth0
        with open(os.path.join(STATE_ROOT, "containers", record["Id"], "journal")) as f:
            kinds = [json.loads(line)["kind"] for line in f]
        assert {"overlay", "bundle", "runtime", "veth"} <= set(kinds) and "cgroup" not in kinds
    finally:
        assert pyrun("rm", "-f", f"web-{runtime}").returncode == 0
    assert not os.path.exists(pid_dir := f"/proc/{pid}") or "zombie" in open(f"{pid_dir}/status").read().lower()


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_exit_codes_are_the_commands_and_dockers(runtime, busybox, clean_host):
    base = ["run", "--rm", "--runtime", runtime, "--network", "none", busybox]
    assert pyrun(*base, "sh", "-c", "exit 3").returncode == 3
    missing = pyrun(*base, "no-such-program")
    assert missing.returncode == 127 and "no-such-program" in missing.stderr.splitlines()[-1]
    assert pyrun(*base, "/etc/passwd").returncode == 126


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_stdin_only_with_i(runtime, busybox, clean_host):
    base = ["run", "--rm", "--runtime", runtime, "--network", "none"]
    given = pyrun(*base, "-i", busybox, "cat", input="through stdin\n")
    assert (given.returncode, given.stdout) == (0, "through stdin\n"), given.stderr
    closed = pyrun(*base, busybox, "cat", input="not for it\n")
    assert (closed.returncode, closed.stdout) == (0, "")


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_t_gives_the_container_its_own_terminal(runtime, busybox, clean_host):
    s = pty_session("run", "--rm", "-it", "--runtime", runtime, "--network", "none", busybox, "sh")
    assert s.read_until(b"# "), s.out
    s.write(b"tty; echo term=$TERM; exit 4\n")
    assert s.wait() == 4
    assert b"/dev/pts/0" in s.out and b"term=xterm" in s.out


def test_bad_runtime_is_refused_before_anything_exists(busybox, clean_host, tmp_path):
    before = snapshot()
    missing = str(tmp_path / "no-tini")
    for args, says in ((["--runtime", "no-such-runtime"], "'no-such-runtime': not found"),
                       # --init binds tini: without it, the path and the package to install
                       (["--runtime", "runc", "--init"], f"invalid --init: {missing}: not a file; --init runs "
                                                         "tini as PID 1, as Docker does (--runtime pyrun: pyrun's "
                                                         "own reaper): install Debian's package tini")):
        r = pyrun("run", *args, "--network", "none", busybox, "true", env={**os.environ, "PYRUN_INIT_PATH": missing})
        assert r.returncode == 125 and r.stdout == "", r
        assert len(r.stderr.splitlines()) == 1 and says in r.stderr, r.stderr
    assert snapshot() == before


def _kinds(runtime: str, userns: str) -> list[str]:
    """The kinds a --runtime run journals, from the recipe itself (pyrun-oci's has no devicerules)."""
    from runtime import recipe
    from runtime.network.networks import Network
    from runtime.spec import build_spec

    spec = build_spec("/", ["true"], publish=["8151:8000"], runtime=runtime, init=True, userns=userns)
    return [p.step.kind for p in recipe.recipe(spec, Network("bridge", "pyrun0", "10.199.0.0/16"), STATE_ROOT,
                                                "0" * 64, "fault", "10.199.0.2")]


def _gone_everywhere(runtime: str, before: dict) -> None:
    """The host as BEFORE, the runtime's own state for the container gone, and its process."""
    wait_for(lambda: snapshot() == before, timeout=5, what="the host to be as before")
    root = os.path.join(STATE_ROOT, "runtimes", runtime)
    if runtime == "runc":
        listed = subprocess.run(["runc", "--root", root, "list", "-q"], capture_output=True, text=True)
        assert listed.returncode == 0 and listed.stdout == "", listed
    else:  # pyrun-oci has no list: a directory per container (runtime/oci/state.py)
        kept = os.path.join(root, "containers")
        assert not os.path.isdir(kept) or os.listdir(kept) == []
    wait_for(lambda: pid_of("sleep 7283") is None, timeout=5, what="the container's process to be gone")


@contextlib.contextmanager
def _held(runtime: str, kind: str, name: str, *options: str):
    """A pyrun paused after step KIND for the body; killed after it if it is still there."""
    p = _paused(runtime, kind, name, *options)
    try:
        yield p
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def _paused(runtime: str, kind: str, name: str, *options: str):
    p = pyrun_bg("run", "--name", name, "--runtime", runtime, "--init", "-p", "8151:8000", *options, BUSYBOX[0],
                 "sleep", "7283", env={**os.environ, "PYRUN_DEBUG_PAUSE_AFTER": kind})
    assert p.stderr.readline() == f"pyrun: paused after {kind} (PYRUN_DEBUG_PAUSE_AFTER)\n"
    return p


BUSYBOX = []  # the session's busybox rootfs, for _paused (set by the tests that take the fixture)


@pytest.mark.parametrize("runtime,userns,kind", [(r, u, k) for r in RUNTIMES for u in ("host", "auto")
                                                 for k in _kinds(r, u)] if shutil.which("runc") else [])
def test_sigkill_after_each_step_then_prune_leaves_nothing_the_runtimes_state_included(userns, kind, runtime,
                                                                                         busybox):
    """With --userns=auto also the id range's lease, the idmapped rootfs and the overlay mounted on the host, the
    root's directory in /run/pyrun-roots (snapshot() has them all)."""
    BUSYBOX[:] = [busybox]
    before = snapshot()
    p = _paused(runtime, kind, f"rtfault-{kind}", f"--userns={userns}")
    p.send_signal(signal.SIGKILL)
    p.wait()
    r = pyrun("prune")
    assert r.returncode == 0 and r.stdout == f"rtfault-{kind}\n", r.stderr
    _gone_everywhere(runtime, before)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_the_userns_root_on_the_host_is_reachable_by_the_containers_root_alone(runtime, busybox):
    """Paused once the overlay is mounted on the host for the runtime (under /run/pyrun-roots, Reachable): the
    container's root, host uid BASE, may reach it, as runc needs; another host user may not, nor list who is
    there; pyrun's state directory stays closed to both."""
    BUSYBOX[:] = [busybox]
    before = snapshot()
    with _held(runtime, "overlay", "unsreach", "--userns=auto") as p:
        [cid] = os.listdir(os.path.join(STATE_ROOT, "containers"))
        [base] = [int(n) for n in os.listdir("/run/pyrun-users") if n.isdigit()]
        root = f"/run/pyrun-roots/{cid}/root"

        def as_user(uid: int, *argv: str) -> subprocess.CompletedProcess:
            return subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *argv],
                                  capture_output=True, text=True, timeout=10)
        owner = as_user(base, "stat", "-c", "%u", f"{root}/bin/busybox")
        assert (owner.returncode, owner.stdout) == (0, f"{base}\n"), owner.stderr  # and idmapped: BASE+0
        for argv in (["stat", f"{root}/bin/busybox"], ["ls", "/run/pyrun-roots"], ["ls", root]):
            assert as_user(65534, *argv).returncode != 0, argv
        assert as_user(base, "ls", os.path.join(STATE_ROOT, "containers", cid)).returncode != 0
        p.send_signal(signal.SIGKILL)
        p.wait()
    assert pyrun("prune").returncode == 0
    _gone_everywhere(runtime, before)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_userns_run_the_runtime_fails_leaves_nothing(runtime, busybox, clean_host):
    """The runtime's create fails (no such program): exit 127, and the lease, mounts and directories are undone."""
    r = pyrun("run", "--rm", "--userns=auto", "--runtime", runtime, "--network", "none", busybox, "no-such-program")
    assert r.returncode == 127 and "no-such-program" in r.stderr.splitlines()[-1], r.stderr


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("kind", ["bundle", "runtime", "unexposed"])
@pytest.mark.parametrize("verb", [["rm", "-f"], ["stop"]], ids=" ".join)
def test_rm_f_or_stop_while_the_runtime_holds_a_created_container_leaves_nothing(verb, kind, runtime, busybox):
    """rm -f or stop of a container pyrun is still setting up: after its bundle, after the runtime's create
    (the process made and waiting for start), after the root is off the host's tree: pyrun undoes it all, the runtime's delete
    included, and the command never runs. kill is refused, as Docker refuses it for a created container."""
    BUSYBOX[:] = [busybox]
    before = snapshot()
    with _held(runtime, kind, "rtcreated") as p:
        k = pyrun("kill", "rtcreated")
        assert (k.returncode, k.stderr) == (125, "pyrun: kill: container rtcreated is not running (it is created)\n")
        r = pyrun(*verb, "rtcreated")
        assert r.returncode == 0, r.stderr
        p.wait(timeout=10)
    _gone_everywhere(runtime, before)
    assert pyrun("ps", "-a", "-q").stdout == ""


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_created_container_killed_before_start_is_undone_all_the_same(runtime, busybox):
    """The runtime's process dies between create and start (the OOM killer, an admin): stop still undoes the
    container, the runtime's delete of a container whose process is gone included."""
    BUSYBOX[:] = [busybox]
    before = snapshot()
    with _held(runtime, "runtime", "rtkilled") as p:
        [cid] = os.listdir(os.path.join(STATE_ROOT, "containers"))
        with open(os.path.join(STATE_ROOT, "containers", cid, "runtime.pid")) as f:
            os.kill(int(f.read()), signal.SIGKILL)
        r = pyrun("stop", "rtkilled")
        assert r.returncode == 0, r.stderr
        p.wait(timeout=10)
    _gone_everywhere(runtime, before)
    assert pyrun("ps", "-a", "-q").stdout == ""


def test_explain_shows_the_runtimes_verbs(busybox):
    """--explain --runtime prints the engine's side around `runc create` and `runc start`, and the bundle."""
    out = subprocess.run([sys.executable, "-m", "runtime", "run", "--explain", "--runtime", "runc", "--network",
                          "none", busybox, "true"], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert " create --bundle " in out.stdout and " start $CID" in out.stdout and " delete --force $CID" in out.stdout
    assert explained_config(out.stdout)["process"]["args"] == ["true"]  # config.json, as the runtime will read it
