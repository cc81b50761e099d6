"""Helpers for the tests of pyrun-oci (tests/test_oci_*.py): bundles, the command line, a miniature engine.

The tests drive `python -m runtime.oci` as an engine drives runc. An engine's
monitor (podman's conmon, containerd's shim) makes itself a child subreaper,
runs `create` with the container's stdio, and then waits for the container's
process, which is re-parented to it once create's intermediate exits; Shim
below does the same in a dozen lines, and reports each exit it reaps.
"""
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time

from conftest import REPO, parent_of, wait_for  # noqa: F401  (parent_of: its users import it from here)

OCI_ROOT = "/run/pyrun-oci"  # inside the suite's own mount namespace, with a tmpfs over /run


def oci(*args: str, timeout: float = 30, **kw) -> subprocess.CompletedProcess:
    """pyrun-oci ARGS, its output captured; give stdout and stderr (files) for a create that may succeed: its
    container's PID 1 keeps create's stdio, so captured pipes would not see EOF until it exits."""
    kw = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **kw}
    return subprocess.run([sys.executable, "-m", "runtime.oci", "--root", OCI_ROOT, *args], text=True,
                          timeout=timeout, cwd=REPO, **kw)


def copy_rootfs(busybox: str, dest: str) -> str:
    """A copy of the busybox rootfs at DEST, by hard links (runtimes create mount points in it)."""
    subprocess.run(["cp", "-al", busybox, dest], check=True)
    os.chmod(dest, 0o755)  # the fixture's is mkdtemp's 0700: no way in for uid 1000
    return dest


def runtime_script(path: str) -> str:
    """An executable at PATH that runs this checkout's pyrun-oci, for an engine's --runtime or --runc-binary."""
    with open(path, "w") as f:
        f.write(f"#!/bin/sh\nPYTHONPATH={REPO} exec {sys.executable} -m runtime.oci \"$@\"\n")
    os.chmod(path, 0o755)
    return path


def make_bundle(path: str, busybox: str, args: list[str], edit=None) -> str:
    """A bundle at PATH: a copy of the busybox rootfs (hard links) and `spec`'s config.json with ARGS, then EDIT."""
    os.makedirs(path)
    copy_rootfs(busybox, os.path.join(path, "rootfs"))
    r = oci("spec", "--bundle", path)
    assert r.returncode == 0, r.stderr
    with open(os.path.join(path, "config.json")) as f:
        config = json.load(f)
    config["process"]["args"] = args
    config["root"]["readonly"] = False
    if edit:
        edit(config)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(config, f)
    return path


def put(config: dict, path: str, value) -> None:
    """Set PATH ("mounts.0.options", digits index a list) in CONFIG, making the objects and lists on the way; an
    index one past a list's end appends."""
    *parents, last = [int(k) if k.isdigit() else k for k in path.split(".")]
    obj = config
    for key, after in zip(parents, [*parents[1:], last]):
        empty = [] if isinstance(after, int) else {}
        if isinstance(key, int):
            if key == len(obj):
                obj.append(empty)
            obj = obj[key]
        else:
            obj = obj.setdefault(key, empty)
    if isinstance(last, int) and last == len(obj):
        obj.append(value)
    else:
        obj[last] = value


def edit(*pairs):
    """A make_bundle edit that puts each PATH, VALUE of PAIRS."""
    def edit(config):
        for path, value in zip(pairs[::2], pairs[1::2]):
            put(config, path, value)
    return edit


def refused_by_create(bundle: str, cid: str, tmp: str) -> str:
    """The error of `create` for BUNDLE, which must fail as a bad config.json does: exit 1, one line on stderr,
    the same line as the --log json's only entry, nothing left behind (no state directory, no cgroup)."""
    log, err = os.path.join(tmp, f"{cid}.log.json"), os.path.join(tmp, f"{cid}.stderr")
    try:
        with open(err, "w") as stderr:
            r = oci("--log", log, "--log-format", "json", "create", "--bundle", bundle, cid,
                    stdout=subprocess.DEVNULL, stderr=stderr)
        with open(err) as f:
            err = f.read()
        assert r.returncode == 1 and err.startswith("pyrun-oci: ") and err.count("\n") == 1, err
        assert "Traceback" not in err, err
        with open(log) as f:
            entries = [json.loads(line) for line in f]
        assert [e["level"] for e in entries] == ["error"] and entries[0]["msg"] == err[len("pyrun-oci: "):-1]
        assert leftovers(cid) == []
        return err
    finally:
        cleanup(cid)


_SHIM = r"""
import json, os, subprocess, sys
import prctl
prctl.set_child_subreaper(1)
keep = []
for pair in os.environ.get("SHIM_FDS", "").split():  # SOURCE:TARGET, the fds create gets at TARGET
    source, target = map(int, pair.split(":"))
    os.dup2(source, target)
    os.close(source)
    keep.append(target)
report = open(sys.argv[1], "w", buffering=1)
r = subprocess.run(sys.argv[2:], pass_fds=keep)
report.write(json.dumps({"create": r.returncode}) + "\n")
for fd in keep:
    os.close(fd)
while True:
    try:
        pid, status = os.wait()
    except ChildProcessError:
        break
    report.write(json.dumps({"pid": pid, "code": os.waitstatus_to_exitcode(status)}) + "\n")
"""


class Shim:
    """`create ARGS` (or VERB ARGS: exec) under a subreaper of the test's own, with the stdio the test chooses;
    FDS maps the numbers create gets (3, 4, ...) to the test's fds; PREFIX, a command that execs the rest of its
    arguments, runs pyrun-oci (an attacker's look at its pid before it runs)."""

    def __init__(self, tmp: str, *create_args: str, fds: dict[int, int] | None = None, verb: str = "create",
                 prefix: tuple[str, ...] = (), **popen):
        fds = fds or {}
        self.report = os.path.join(tmp, f"shim-{time.monotonic_ns()}.jsonl")
        popen.setdefault("stdin", subprocess.DEVNULL)
        popen.setdefault("stdout", subprocess.PIPE)
        popen.setdefault("stderr", subprocess.PIPE)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _SHIM, self.report, *prefix, sys.executable, "-m", "runtime.oci", "--root",
             OCI_ROOT, verb, *create_args], cwd=REPO, pass_fds=tuple(fds.values()),
            env={**os.environ, "SHIM_FDS": " ".join(f"{source}:{target}" for target, source in fds.items())},
            **popen)

    def events(self) -> list[dict]:
        try:
            with open(self.report) as f:
                return [json.loads(line) for line in f if line.strip()]
        except FileNotFoundError:
            return []

    def created(self, timeout: float = 30) -> int:
        """create's exit code, once it has exited."""
        return wait_for(lambda: next(([e["create"]] for e in self.events() if "create" in e), None),
                        timeout, "create to exit")[0]

    def exit_of(self, pid: int, timeout: float = 10) -> int:
        """The exit code of PID, which the shim reaped as its subreaper."""
        return wait_for(lambda: next(([e["code"]] for e in self.events() if e.get("pid") == pid), None),
                        timeout, f"the shim to reap {pid}")[0]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream:
                stream.close()


@contextlib.contextmanager
def running(busybox: str, tmp: str, cid: str, args: list[str], edit=None):
    """A started container CID running ARGS: (its shim, its pid); deleted afterwards, whatever happened."""
    bundle = make_bundle(os.path.join(tmp, f"bundle-{cid}"), busybox, args, edit)
    shim = Shim(tmp, "--bundle", bundle, "--pid-file", os.path.join(tmp, f"{cid}.pid"), cid)
    try:
        assert shim.created() == 0, shim.proc.stderr.read()
        r = oci("start", cid)
        assert r.returncode == 0, r.stderr
        with open(os.path.join(tmp, f"{cid}.pid")) as f:
            yield shim, int(f.read())
    finally:
        shim.close()
        cleanup(cid)


def state(cid: str) -> dict:
    r = oci("state", cid)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def leftovers(cid: str) -> list[str]:
    """What a container CID may have left on the host: its state directory and its cgroups."""
    from conftest import _cgroup_dirs

    out = [p for p in [os.path.join(OCI_ROOT, "containers", cid)] if os.path.exists(p)]
    return out + [d for d in _cgroup_dirs() if d.rstrip("/").endswith("/" + cid)]


def cleanup(cid: str) -> None:
    oci("delete", "--force", cid)
    shutil.rmtree(os.path.join(OCI_ROOT, "containers", cid), ignore_errors=True)


def run_bundle(bundle: str, tmp: str, cid: str, timeout: float = 20) -> tuple[int, str, str]:
    """create, start and wait for BUNDLE's program, then delete it: (exit code, stdout, stderr)."""
    shim = Shim(tmp, "--bundle", bundle, "--pid-file", os.path.join(tmp, f"{cid}.pid"), cid)
    try:
        if shim.created() != 0:
            shim.proc.wait(timeout)
            return -1, "", shim.proc.stderr.read().decode()
        r = oci("start", cid)
        assert r.returncode == 0, r.stderr
        with open(os.path.join(tmp, f"{cid}.pid")) as f:
            code = shim.exit_of(int(f.read()), timeout)
        r = oci("delete", cid)
        assert r.returncode == 0, r.stderr
        out, err = shim.proc.communicate(timeout=timeout)
        return code, out.decode(), err.decode()
    finally:
        shim.close()
        cleanup(cid)
