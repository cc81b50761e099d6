"""-u/--user: the command runs as that user on the host, with no capabilities, whatever it tries.

Every check reads the host's view: /proc/PID/status of the container's
processes, and the owner of a file it made in a -v bind.
"""
import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import REPO, RUNTIMES, STATE_ROOT, pyrun, running_record, wait_for

DOCKER_DEFAULT = "00000000a80425fb"
NONE = "0000000000000000"


def host_status(pid: int) -> dict:
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def detached(*args: str, name: str) -> dict:
    r = pyrun("run", "-d", "--network", "none", "--name", name, *args)
    assert r.returncode == 0, r.stderr
    return wait_for(lambda: running_record(name), what=f"{name} to run")


def in_container(record: dict, marker: str) -> int:
    """The host pid of the process in RECORD's container whose command line is MARKER (not pyrun before exec)."""
    from runtime import lifecycle
    from runtime.record import Record

    def find():
        for pid in lifecycle.pids(Record(record)):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if f.read().rstrip(b"\0") == marker.encode():
                        return pid
            except FileNotFoundError:
                continue
        return None
    return wait_for(find, what=f"a process running {marker}")


# Under every runtime, read as soon as pyrun says the container runs: by then its command is the user's, with no
# capabilities (pyrun-oci's start returned while PID 1 was still root, and this flaked).
@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("user, ids, groups", [("1000:1000", (1000, 1000), "1000"),
                                               ("nobody", (65534, 65534), "65534"),
                                               ("4242", (4242, 0), "0")])
def test_the_process_runs_as_the_user_on_the_host(busybox, clean_host, tmp_path, user, ids, groups, runtime):
    data = tmp_path / "data"
    data.mkdir(mode=0o777)
    data.chmod(0o777)
    record = detached("--runtime", runtime, "-u", user, "-v", f"{data}:/data", busybox, "sh", "-c",
                      "touch /data/made; exec sleep 300", name="as-user")
    try:
        s = host_status(record["Init"]["Pid"])
        assert s["Uid"].split() == [str(ids[0])] * 4 and s["Gid"].split() == [str(ids[1])] * 4
        assert s["Groups"].split() == groups.split()
        # Docker's result: nothing effective or permitted, the bounding set unchanged, no_new_privs.
        assert (s["CapEff"], s["CapPrm"], s["CapInh"], s["CapAmb"]) == (NONE,) * 4
        assert s["CapBnd"] == DOCKER_DEFAULT and s["NoNewPrivs"] == "1"
        made = wait_for(lambda: os.path.exists(data / "made") and os.stat(data / "made"), what="the file")
        assert (made.st_uid, made.st_gid) == ids
    finally:
        pyrun("rm", "-f", "as-user")


def test_without_capabilities_root_owned_files_stay_shut(busybox, clean_host):
    """Root's files in the rootfs: no DAC_OVERRIDE or CHOWN any more. The layer on the host stays empty."""
    record = detached("-u", "1000", busybox, "sh", "-c",
                      "echo x >> /etc/passwd; chown 1000 /etc/group; touch /root-owned; exec sleep 300", name="dac")
    try:
        in_container(record, "sleep\x00300")
        diff = os.path.join(STATE_ROOT, "containers", record["Id"], "layer", "diff")
        assert sorted(os.listdir(diff)) in ([], ["etc"])
        assert not os.path.exists(os.path.join(diff, "etc", "passwd"))
        assert not os.path.exists(os.path.join(diff, "etc", "group"))
    finally:
        pyrun("rm", "-f", "dac")


def test_home_comes_from_the_containers_passwd(busybox, clean_host, tmp_path):
    rootfs = tmp_path / "rootfs"
    shutil.copytree(busybox, rootfs, symlinks=True)
    with open(rootfs / "etc" / "passwd", "a") as f:
        f.write("ada:x:1234:1234:Ada:/home/ada:/bin/sh\n")
    with open(rootfs / "etc" / "group", "a") as f:
        f.write("ada:x:1234:\nstaff:x:50:root,ada\naudio:x:29:ada\n")
    r = pyrun("run", "--rm", "--network", "none", "-u", "ada", str(rootfs), "sh", "-c", 'id -u; id -G; echo $HOME')
    uid, gids, home = r.stdout.splitlines()
    assert r.returncode == 0 and (uid, sorted(gids.split()), home) == ("1234", ["1234", "29", "50"], "/home/ada"), \
        r.stdout + r.stderr
    # An explicit group replaces the supplementary ones, as in Docker.
    r = pyrun("run", "--rm", "--network", "none", "-u", "ada:staff", str(rootfs), "id", "-G")
    assert r.stdout.split() == ["50"], r.stdout + r.stderr


def test_names_are_never_looked_up_on_the_host(busybox, clean_host, tmp_path):
    """A user the host has (root's own 'daemon', 'bin', ...) but the container does not is refused."""
    host_only = next(line.split(":")[0] for line in open("/etc/passwd") if line.split(":")[0] not in ("root", "nobody"))
    r = pyrun("run", "--rm", "--network", "none", "-u", host_only, busybox, "id")
    assert r.returncode == 125
    assert f"unable to find user {host_only}: no matching entries in passwd file" in r.stderr


@pytest.mark.parametrize("trap", ["fifo", "symlink-out", "magic-link"])
def test_a_hostile_passwd_neither_blocks_nor_reads_the_host(busybox, clean_host, tmp_path, trap):
    rootfs = tmp_path / "rootfs"
    shutil.copytree(busybox, rootfs, symlinks=True)
    passwd = rootfs / "etc" / "passwd"
    passwd.unlink()
    if trap == "fifo":
        os.mkfifo(passwd)  # an open(2) that waits for a writer would hang pyrun's start for good
    elif trap == "symlink-out":
        os.symlink("../../../../../../../etc/passwd", passwd)  # the host's, if resolved on the host
    else:
        os.symlink("/proc/self/root/etc/passwd", passwd)
    host_only = next(line.split(":")[0] for line in open("/etc/passwd") if line.split(":")[0] not in ("root", "nobody"))
    r = pyrun("run", "--rm", "--network", "none", "-u", host_only, str(rootfs), "id", timeout=20)
    assert r.returncode == 125 and "no matching entries in passwd file" in r.stderr, r.stderr
    # (not busybox's id: it would read the FIFO itself)
    r = pyrun("run", "--rm", "--network", "none", "-u", "777", str(rootfs), "grep", "^Uid", "/proc/self/status",
              timeout=20)
    assert r.returncode == 0 and r.stdout.split()[1:] == ["777"] * 4, r.stderr


@pytest.mark.parametrize("args, message", [
    (["-u", "nosuch"], "unable to find user nosuch: no matching entries in passwd file"),
    (["-u", "nobody:nosuch"], "unable to find group nosuch: no matching entries in group file"),
    (["-u", "a:b:c"], "invalid --user: 'a:b:c': expected USER[:GROUP]"),
    (["-u", ""], "invalid --user: '': expected USER[:GROUP]"),
    (["-u", "4294967295"], "invalid --user: '4294967295'"),
])
def test_bad_users_are_125_and_leave_nothing(busybox, clean_host, args, message):
    r = pyrun("run", "--rm", *args, busybox, "id")
    assert r.returncode == 125 and message in r.stderr, r.stderr


def test_cap_drop_all_still_becomes_the_user(busybox, clean_host):
    """setuid(2) needs CAP_SETUID: pyrun changes ids before it empties the effective set."""
    r = pyrun("run", "--rm", "--network", "none", "--cap-drop", "ALL", "-u", "1000:1000", busybox, "id", "-u")
    assert r.returncode == 0 and r.stdout == "1000\n", r.stderr


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_init_runs_as_the_user_too_and_still_stops(runtime, busybox, clean_host):
    """pyrun's reaper, or with --runtime tini, as Docker's: PID 1 is the command's user, not root."""
    record = detached("--init", "--runtime", runtime, "--cap-drop", "ALL", "-u", "1000:1000", busybox, "sleep", "300",
                      name="init-user")
    try:
        child = in_container(record, "sleep\x00300")
        for pid in (record["Init"]["Pid"], child):
            s = host_status(pid)
            assert s["Uid"].split() == ["1000"] * 4 and s["CapEff"] == NONE
        # The reaper forwards SIGTERM to a process of its own uid: no CAP_KILL needed.
        r = pyrun("stop", "-t", "20", "init-user", timeout=30)
        assert r.returncode == 0
        assert running_record("init-user") is None
        assert json.loads(pyrun("inspect", "init-user").stdout)[0]["State"]["ExitCode"] == 143
    finally:
        pyrun("rm", "-f", "init-user")


def test_exec_runs_as_the_user_given_or_the_containers(busybox, clean_host):
    record = detached("-u", "1000", busybox, "sleep", "300", name="exec-user")
    try:
        execs = [subprocess.Popen([sys.executable, "-m", "runtime", "exec", *u, "exec-user", "sleep", marker],
                                  cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for u, marker in ((["-u", "2000:3000"], "1234.5"), ([], "1234.6"))]
        try:
            s = host_status(in_container(record, "sleep\x001234.5"))
            assert s["Uid"].split()[0] == "2000" and s["Gid"].split()[0] == "3000" and s["CapEff"] == NONE
            assert host_status(in_container(record, "sleep\x001234.6"))["Uid"].split()[0] == "1000"
        finally:
            for p in execs:
                p.kill()
                p.wait()
        r = pyrun("exec", "-u", "nosuch", "exec-user", "id")
        assert r.returncode == 125 and "unable to find user nosuch" in r.stderr
    finally:
        pyrun("rm", "-f", "exec-user")
