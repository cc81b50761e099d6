"""containerd 1.6 runs its containers with pyrun-oci: `ctr run --runc-binary`, through its runc shim.

containerd is started by each test with a private config, root and state, in a throwaway PID and mount
namespace (inside the suite's network namespace), so that it, its shims and the containers die with it.
Installed by scripts/setup-engines; skipped without it.
"""
import glob
import os
import shutil
import subprocess
import tempfile
import textwrap

import pytest

from conftest import CGROUP_PARENT
from ocitools import copy_rootfs, runtime_script

pytestmark = pytest.mark.skipif(not shutil.which("containerd"), reason="containerd is not installed: "
                                                                        "scripts/setup-engines")

CONFIG = """\
version = 2
root = "{tmp}/root"
state = "{state}"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
                    "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "{state}/containerd.sock"
[ttrpc]
  address = "{state}/containerd.sock.ttrpc"
"""


@pytest.fixture
def ctr(tmp_path, busybox):
    """Run a bash script of ctr commands against a containerd of the test's own; $C is ctr, $B names pyrun-oci,
    cg NAME the cgroup option for container NAME, $F the busybox rootfs (last before the id)."""
    tmp = str(tmp_path)
    state = tempfile.mkdtemp(prefix="ctr-", dir="/run")  # short: its sockets' paths must fit in 108 bytes
    (tmp_path / "config.toml").write_text(CONFIG.format(tmp=tmp, state=state))
    runtime = runtime_script(f"{tmp}/pyrun-oci")
    copy_rootfs(busybox, f"{tmp}/rootfs")
    parent = f"/{CGROUP_PARENT}/ctr"

    def run(script: str, timeout: float = 120) -> subprocess.CompletedProcess:
        prelude = textwrap.dedent(f"""\
            containerd --config {tmp}/config.toml > {tmp}/containerd.log 2>&1 &
            for i in $(seq 100); do [ -S {state}/containerd.sock ] && break; sleep 0.05; done
            C="ctr --address {state}/containerd.sock"
            B="--runc-binary {runtime}"
            F="--rootfs {tmp}/rootfs"
            cg() {{ echo "--cgroup {parent}/$1"; }}
            """)
        return subprocess.run(["unshare", "--pid", "--fork", "--mount", "--mount-proc", "bash", "-c",
                               prelude + textwrap.dedent(script)], capture_output=True, text=True, timeout=timeout)
    yield run
    shutil.rmtree(state, ignore_errors=True)
    for d in sorted(glob.glob(f"/sys/fs/cgroup/*{parent}/**/", recursive=True), key=len, reverse=True):
        os.rmdir(d)


def test_run_rm_returns_the_exit_code(ctr):
    r = ctr("""
        $C run --rm $B $(cg c1) $F c1 sh -c 'echo hello from ctr; exit 3'; echo "exit $?"
        $C container ls -q | wc -l
    """)
    assert r.stdout.splitlines() == ["hello from ctr", "exit 3", "0"], r.stderr


def test_detached_task_kill_and_delete(ctr):
    r = ctr("""
        $C run -d $B $(cg d1) $F d1 sleep 100 >/dev/null
        $C task ls | awk '$1=="d1" {print $3}'
        $C task kill -s KILL d1; sleep 0.5
        $C task ls | awk '$1=="d1" {print $3}'
        $C task delete d1 >/dev/null; $C container delete d1; $C container ls -q | wc -l
    """)
    assert r.stdout.splitlines() == ["RUNNING", "STOPPED", "0"], r.stderr


def test_two_containers_share_one_network_namespace_as_a_pod(ctr):
    r = ctr("""
        $C run -d $B $(cg pause) $F pause sleep 100 >/dev/null
        pid=$($C task ls | awk '$1=="pause" {print $2}')
        readlink /proc/$pid/ns/net
        $C run --rm $B $(cg app) --with-ns network:/proc/$pid/ns/net $F app readlink /proc/self/ns/net
        $C task kill -s KILL pause; sleep 0.3; $C task delete pause >/dev/null; $C container delete pause
    """)
    lines = r.stdout.splitlines()
    assert len(lines) == 2 and lines[0] == lines[1] and lines[0].startswith("net:["), r.stderr


def test_task_exec_ps_pause_and_resume(ctr):
    r = ctr("""
        $C run -d $B $(cg e1) $F e1 sh -c 'sleep 100 & wait' >/dev/null
        $C task exec --exec-id x1 e1 sh -c 'echo exec sees $(cat /proc/1/cmdline | tr "\\0" " "); exit 4'
        echo "exec $?"
        $C task exec --exec-id x2 e1 sleep 100 & x2=$!
        sleep 1
        $C task ps e1 | tail -n +2 | wc -l
        $C task pause e1; $C task ls | awk '$1=="e1" {print $3}'
        $C task resume e1; $C task ls | awk '$1=="e1" {print $3}'
        $C task kill -s KILL e1; wait $x2; echo "exec x2 $?"
        sleep 0.3; $C task delete e1 >/dev/null; $C container delete e1; $C container ls -q | wc -l
    """)
    assert r.stdout.splitlines() == ["exec sees sh -c sleep 100 & wait", "exec 4", "3", "PAUSED", "RUNNING",
                                     "exec x2 137", "0"], r.stderr
