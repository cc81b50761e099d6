"""podman 4.3 runs its containers with pyrun-oci (`podman --runtime`), as it would with runc.

Each test runs its podman commands in one throwaway PID and mount namespace of its own (inside the
suite's network namespace), so that conmon and the containers die with it whatever happens; podman's
storage, run directory and config are the test's own, under its tmp_path. Installed by
scripts/setup-engines; skipped without it.
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

pytestmark = pytest.mark.skipif(not shutil.which("podman"), reason="podman is not installed: scripts/setup-engines")

# This VM's bounding set lacks CAP_SYS_RESOURCE, so podman's default rlimits (nproc 1048576) cannot be set, by
# runc or crun either: its ulimits are set within the machine's ceiling (docs/oci.md). Its default seccomp
# profile is loaded, as runc loads it.
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{tmp}/events.log"
"""
STORAGE_CONF = """\
[storage]
driver = "vfs"
graphroot = "{tmp}/storage"
runroot = "{run}"
"""


@pytest.fixture
def podman(tmp_path, busybox):
    """Run a bash script of podman commands ($P run $O ...) in a throwaway PID + mount namespace."""
    tmp = str(tmp_path)
    (tmp_path / "containers.conf").write_text(CONTAINERS_CONF.format(tmp=tmp))
    # A short run directory: conmon's sockets live there, and a long pytest path makes podman wait ~20 s per run.
    run_dir = tempfile.mkdtemp(prefix="podman-", dir="/run")
    (tmp_path / "storage.conf").write_text(STORAGE_CONF.format(tmp=tmp, run=run_dir))
    runtime = runtime_script(f"{tmp}/pyrun-oci")
    copy_rootfs(busybox, f"{tmp}/rootfs")
    parent = f"/{CGROUP_PARENT}/podman"

    def run(script: str, timeout: float = 120) -> subprocess.CompletedProcess:
        prelude = (f"P='podman --runtime {runtime} --cgroup-manager cgroupfs'\n"
                   f"O='--network none --cgroup-parent {parent} --rootfs {tmp}/rootfs'\n")
        return subprocess.run(["unshare", "--pid", "--fork", "--mount", "--mount-proc", "bash", "-c",
                               prelude + textwrap.dedent(script)], capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "CONTAINERS_CONF": f"{tmp}/containers.conf",
                                   "CONTAINERS_STORAGE_CONF": f"{tmp}/storage.conf"})
    yield run
    shutil.rmtree(run_dir, ignore_errors=True)
    for d in sorted(glob.glob(f"/sys/fs/cgroup/*{parent}/**/", recursive=True), key=len, reverse=True):
        os.rmdir(d)  # conmon's and the containers' cgroups, made under the suite's parent by podman


def test_run_rm_prints_and_returns_the_exit_code(podman):
    r = podman("""
        $P run --rm $O sh -c 'echo hello from podman; cat /proc/1/cmdline; echo; exit 7'; echo "exit $?"
        $P ps -a -q | wc -l
    """)
    assert r.stdout.splitlines() == ["hello from podman", "sh\0-c\0echo hello from podman; cat /proc/1/cmdline; "
                                     "echo; exit 7\0", "exit 7", "0"], r.stderr


def test_interactive_and_terminal(podman):
    r = podman("""
        echo piped | $P run --rm -i $O cat
        $P run --rm -t $O tty </dev/null
    """)
    assert r.stdout.replace("\r", "").splitlines() == ["piped", "/dev/pts/0"], r.stderr


def test_detached_stop_kill_and_rm_force(podman):
    r = podman("""
        id=$($P run -d $O sh -c 'trap "exit 5" TERM; while :; do sleep 0.1; done')
        sleep 0.5
        $P ps --format '{{.Status}}' | cut -d' ' -f1
        $P stop -t 5 $id >/dev/null; $P inspect -f '{{.State.ExitCode}}' $id
        $P rm $id >/dev/null
        id=$($P run -d $O sleep 100); $P kill $id >/dev/null; $P wait $id; $P rm $id >/dev/null
        id=$($P run -d $O sleep 100); $P rm -f -t 0 $id >/dev/null; echo "rm -f $?"
        $P ps -a -q | wc -l
    """)
    assert r.stdout.splitlines() == ["Up", "5", "137", "rm -f 0", "0"], r.stderr


def test_exec_pause_and_unpause(podman):
    r = podman("""
        id=$($P run -d $O sh -c 'i=0; while :; do i=$((i+1)); echo $i > /tmp/m; mv /tmp/m /tmp/n; sleep 0.01; done')
        sleep 0.3
        $P exec $id sh -c 'echo exec in $(hostname) sees $(cat /proc/1/cmdline | tr "\\0" " " | cut -c1-5); exit 3'
        echo "exec $?"
        echo piped | $P exec -i $id cat
        $P exec -t $id tty </dev/null | tr -d '\\r'
        $P pause $id >/dev/null; $P inspect -f '{{.State.Status}}' $id
        a=$($P exec $id cat /tmp/n 2>/dev/null || echo refused); echo "exec while paused: $a"
        n1=$(cat /proc/$($P inspect -f '{{.State.Pid}}' $id)/root/tmp/n); sleep 0.3
        n2=$(cat /proc/$($P inspect -f '{{.State.Pid}}' $id)/root/tmp/n); [ "$n1" = "$n2" ] && echo frozen
        $P unpause $id >/dev/null; $P inspect -f '{{.State.Status}}' $id
        sleep 0.3; n3=$($P exec $id cat /tmp/n); [ "$n3" -gt "$n2" ] && echo thawed
        $P rm -f -t 0 $id >/dev/null; $P ps -a -q | wc -l
    """)
    lines = r.stdout.splitlines()
    assert lines[0].startswith("exec in ") and lines[0].endswith(" sees sh -c"), r.stderr
    assert lines[1:] == ["exec 3", "piped", "/dev/pts/0", "paused", "exec while paused: refused", "frozen",
                         "running", "thawed", "0"], r.stderr


def test_podmans_default_seccomp_profile_is_loaded(podman):
    r = podman("""
        $P run --rm $O sh -c 'grep Seccomp: /proc/self/status'
        $P run --rm --security-opt seccomp=unconfined $O sh -c 'grep Seccomp: /proc/self/status'
    """)
    assert r.stdout.splitlines() == ["Seccomp:\t2", "Seccomp:\t0"], r.stderr
