"""Hooks from config.json, each at its point of the lifecycle and in its namespaces, state JSON on stdin.

Every hook here appends a line to a log on the host: its name, its mount namespace, and the state it read.
startContainer's runs inside the container (its path is the container's), the others from the host's."""
import json
import os
import time

from ocitools import Shim, cleanup, leftovers, make_bundle, oci, state

HOOK = """#!/bin/sh
echo "$1 $(readlink /proc/self/ns/mnt) $A $(cat)" >> "$2"
exit ${3:-0}
"""
ENV = ["PATH=/usr/bin:/bin", "A=from-env"]


def _setup(tmp_path, busybox, args, hooks):
    out = tmp_path / "out"
    out.mkdir()
    host_hook = tmp_path / "hook"
    host_hook.write_text(HOOK)
    host_hook.chmod(0o755)

    def edit(c):
        c["mounts"].append({"destination": "/out", "type": "bind", "source": str(out), "options": ["rbind", "rw"]})
        c["hooks"] = hooks(str(host_hook), str(out / "log"))
    bundle = make_bundle(str(tmp_path / "b"), busybox, args, edit)
    (tmp_path / "b" / "rootfs" / "hook").write_text(HOOK)
    (tmp_path / "b" / "rootfs" / "hook").chmod(0o755)
    return bundle, out / "log"


def _log(path) -> list[tuple[str, str, str, dict]]:
    """(hook, its mount namespace, $A, the state it read) for each hook that ran; the program's lines skipped."""
    return list(_parse(open(path).read().splitlines())) if os.path.exists(path) else []


def _hook(path: str, name: str, log: str, code: int = 0, **extra) -> dict:
    return {"path": path, "args": ["hook", name, log, str(code)], "env": ENV, **extra}


def _mnt(pid) -> str:
    return os.readlink(f"/proc/{pid}/ns/mnt")


def test_each_hook_runs_at_its_point_in_its_namespace_with_the_state(busybox, tmp_path):
    def hooks(host, log):
        h = {name: [_hook(host, name, log)] for name in ("prestart", "createRuntime", "createContainer",
                                                          "poststart", "poststop")}
        h["startContainer"] = [_hook("/hook", "startContainer", "/out/log")]  # the container's path
        return h
    # The program outlives poststart, which runs once it is exec'd: the state it reads says running.
    bundle, log = _setup(tmp_path, busybox, ["sh", "-c", "echo program >> /out/log; sleep 1"], hooks)
    shim = Shim(str(tmp_path), "--bundle", bundle, "--pid-file", str(tmp_path / "pid"), "hk1")
    try:
        assert shim.created() == 0, shim.proc.stderr.read()
        pid = int((tmp_path / "pid").read_text())
        container_mnt = _mnt(pid)
        created = _log(log)
        assert [e[0] for e in created] == ["prestart", "createRuntime", "createContainer"]
        assert oci("start", "hk1").returncode == 0
        assert shim.exit_of(pid) == 0
        assert oci("delete", "hk1").returncode == 0
        lines = [line.split()[0] for line in open(log).read().splitlines()]
        assert lines.index("program") > lines.index("startContainer")
        entries = _log(log)
        names = [e[0] for e in entries]
        assert names == ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"]
        host_mnt = _mnt(os.getpid())
        for name, ns, env, st in entries:
            assert ns == (container_mnt if name in ("createContainer", "startContainer") else host_mnt), name
            assert env == "from-env" and st["id"] == "hk1" and st["bundle"] == bundle
            assert (st["status"], st["pid"]) == {"poststart": ("running", pid), "poststop": ("stopped", 0),
                                                 "startContainer": ("created", pid)}.get(name, ("creating", pid))
        assert leftovers("hk1") == []
    finally:
        shim.close()
        cleanup("hk1")


def _parse(lines):
    for line in lines:
        if not line.startswith("program"):
            name, ns, env, text = line.split(" ", 3)
            yield name, ns, env, json.loads(text)


def test_a_failing_create_time_hook_leaves_no_container(busybox, tmp_path, clean_host):
    def hooks(host, log):
        return {"createRuntime": [_hook(host, "createRuntime", log, 3)], "poststop": [_hook(host, "poststop", log)]}
    bundle, log = _setup(tmp_path, busybox, ["sh", "-c", "echo program >> /out/log"], hooks)
    r = oci("create", "--bundle", bundle, "hk2")
    assert r.returncode == 1 and "createRuntime hook" in r.stderr and "exit status 3" in r.stderr, r.stderr
    assert [e[0] for e in _log(log)] == ["createRuntime", "poststop"]  # and the program never ran
    assert leftovers("hk2") == []


def test_a_failing_create_container_hook_fails_create(busybox, tmp_path, clean_host):
    def hooks(host, log):
        return {"createContainer": [_hook(host, "createContainer", log, 4)]}
    bundle, log = _setup(tmp_path, busybox, ["true"], hooks)
    r = oci("create", "--bundle", bundle, "hk3")
    assert r.returncode == 1 and "createContainer hook" in r.stderr and "exit status 4" in r.stderr, r.stderr
    assert leftovers("hk3") == []


def test_a_hook_past_its_timeout_is_killed_and_fails_create(busybox, tmp_path, clean_host):
    def hooks(host, log):
        return {"prestart": [{"path": "/bin/sleep", "args": ["sleep", "30"], "timeout": 1}]}
    bundle, _ = _setup(tmp_path, busybox, ["true"], hooks)
    started = time.monotonic()
    r = oci("create", "--bundle", bundle, "hk4")
    assert r.returncode == 1 and "killed after its timeout of 1 s" in r.stderr, r.stderr
    assert time.monotonic() - started < 10
    assert leftovers("hk4") == []


def test_poststart_and_poststop_failures_only_warn(busybox, tmp_path):
    def hooks(host, log):
        return {"poststart": [_hook(host, "poststart", log, 5)],
                "poststop": [_hook(host, "poststop-1", log, 6), _hook(host, "poststop-2", log)]}
    bundle, log = _setup(tmp_path, busybox, ["sleep", "60"], hooks)
    shim = Shim(str(tmp_path), "--bundle", bundle, "--pid-file", str(tmp_path / "pid"), "hk5")
    try:
        assert shim.created() == 0, shim.proc.stderr.read()
        r = oci("start", "hk5")
        assert r.returncode == 0 and "warning: poststart hook" in r.stderr and "exit status 5" in r.stderr
        assert state("hk5")["status"] == "running"
        r = oci("delete", "--force", "hk5")
        assert r.returncode == 0 and "warning: poststop hook" in r.stderr and "exit status 6" in r.stderr
        assert [e[0] for e in _log(log)] == ["poststart", "poststop-1", "poststop-2"]  # the rest still ran
        assert leftovers("hk5") == []
    finally:
        shim.close()
        cleanup("hk5")


def test_a_failing_start_container_hook_stops_the_container_before_its_program(busybox, tmp_path):
    def hooks(host, log):
        return {"startContainer": [_hook("/hook", "startContainer", "/out/log", 7)]}
    bundle, log = _setup(tmp_path, busybox, ["sh", "-c", "echo program >> /out/log"], hooks)
    shim = Shim(str(tmp_path), "--bundle", bundle, "--pid-file", str(tmp_path / "pid"), "hk6")
    try:
        assert shim.created() == 0, shim.proc.stderr.read()
        pid = int((tmp_path / "pid").read_text())
        assert oci("start", "hk6").returncode == 0  # as runc's: the hook runs in the container, after start
        assert shim.exit_of(pid) == 1
        assert [line.split()[0] for line in open(log).read().splitlines()] == ["startContainer"]
        shim.proc.wait(10)
        assert b"startContainer hook: /hook: exit status 7" in shim.proc.stderr.read()
    finally:
        shim.close()
        cleanup("hk6")
