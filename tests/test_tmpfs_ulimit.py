"""--tmpfs and --ulimit: the container fills, opens, forks and writes past its limits; the host checks they held."""
import os
import subprocess

import pytest

from conftest import STATE_ROOT, explained_config, pyrun, running_record, wait_for

FILL = "dd if=/dev/zero of=/tmp/fill bs=64k count=1000; sync; exec sleep 300"


def detached(*args: str, name: str) -> dict:
    r = pyrun("run", "-d", "--network", "none", "--name", name, *args)
    assert r.returncode == 0, r.stderr
    return wait_for(lambda: running_record(name), what=f"{name} to run")


def mount_at(pid: int, target: str) -> list[str] | None:
    """The mountinfo fields of the mount at TARGET in PID's mount namespace, as the host reads them."""
    with open(f"/proc/{pid}/mountinfo") as f:
        found = [line.split() for line in f if line.split()[4] == target]
    return found[-1] if found else None


def test_read_only_with_a_tmpfs_writes_there_and_nowhere_else(busybox, clean_host):
    record = detached("--read-only", "--tmpfs", "/tmp", busybox, "sh", "-c",
                      "echo a > /tmp/a && echo ok > /tmp/ok; echo b > /b; echo c > /etc/c; exec sleep 300", name="ro")
    try:
        pid = record["Init"]["Pid"]
        wait_for(lambda: os.path.exists(f"/proc/{pid}/root/tmp/ok"), what="the write to /tmp")
        fields = mount_at(pid, "/tmp")
        assert fields[fields.index("-") + 1] == "tmpfs"
        assert {"nosuid", "nodev", "noexec"} <= set(fields[5].split(","))  # Docker's defaults for --tmpfs
        assert not os.path.exists(f"/proc/{pid}/root/b") and not os.path.exists(f"/proc/{pid}/root/etc/c")
        diff = os.path.join(STATE_ROOT, "containers", record["Id"], "layer", "diff")
        assert os.listdir(diff) == []  # the tmpfs's files are in memory, not in the layer on the host
    finally:
        pyrun("rm", "-f", "ro")


def test_the_size_limit_holds(busybox, clean_host):
    record = detached("--tmpfs", "/tmp:size=1m,mode=1770", busybox, "sh", "-c", FILL, name="fill")
    try:
        pid = record["Init"]["Pid"]
        wait_for(lambda: os.path.exists(f"/proc/{pid}/root/tmp/fill") and
                 os.stat(f"/proc/{pid}/root/tmp/fill").st_size > 0 and
                 os.statvfs(f"/proc/{pid}/root/tmp").f_bfree == 0, what="the tmpfs to fill")
        fs = os.statvfs(f"/proc/{pid}/root/tmp")
        assert fs.f_blocks * fs.f_frsize == 1 << 20
        assert os.stat(f"/proc/{pid}/root/tmp/fill").st_size <= 1 << 20
        assert oct(os.stat(f"/proc/{pid}/root/tmp").st_mode & 0o7777) == "0o1770"
    finally:
        pyrun("rm", "-f", "fill")


def test_a_tmpfs_is_noexec_unless_told(busybox, clean_host):
    run = "cp /bin/busybox /tmp/busybox && /tmp/busybox true && echo ran"
    r = pyrun("run", "--rm", "--network", "none", "--tmpfs", "/tmp", busybox, "sh", "-c", run)
    assert "ran" not in r.stdout and "Permission denied" in r.stderr, r.stdout + r.stderr
    r = pyrun("run", "--rm", "--network", "none", "--tmpfs", "/tmp:exec", busybox, "sh", "-c", run)
    assert r.stdout == "ran\n", r.stderr


def test_ulimit_nofile_stops_the_eleventh_fd(debian, clean_host):
    count = ("import os\nn = 3\ntry:\n    while True:\n        os.open('/dev/null', os.O_RDONLY); n += 1\n"
             "except OSError as e:\n    print(n, e.errno)")
    r = pyrun("run", "--rm", "--network", "none", "--ulimit", "nofile=10", debian, "python3", "-c", count)
    assert r.returncode == 0 and r.stdout.split() == ["10", "24"], r.stdout + r.stderr  # EMFILE at the 11th
    record = detached("--ulimit", "nofile=10:20", debian, "sleep", "300", name="nofile")
    try:
        with open(f"/proc/{record['Init']['Pid']}/limits") as f:
            assert next(line for line in f if line.startswith("Max open files")).split()[3:5] == ["10", "20"]
    finally:
        pyrun("rm", "-f", "nofile")


FORK = """import os, time
for _ in range(20):
    try:
        if os.fork() == 0:
            time.sleep(300)
    except BlockingIOError:
        pass
time.sleep(300)"""


def test_ulimit_nproc_holds_for_a_user(debian, clean_host):
    """RLIMIT_NPROC counts the host's processes of the uid (root is exempt in the kernel, so -u)."""
    uid = 4243
    assert not _processes_of(uid)
    record = detached("-u", str(uid), "--ulimit", "nproc=5", debian, "python3", "-c", FORK, name="nproc")
    try:
        wait_for(lambda: os.path.exists(f"/proc/{record['Init']['Pid']}") and len(_processes_of(uid)) >= 5,
                 what="the processes")
        assert len(_processes_of(uid)) == 5
    finally:
        pyrun("rm", "-f", "nproc")
    assert not _processes_of(uid)


def _processes_of(uid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and os.stat(f"/proc/{entry}").st_uid == uid:
                out.append(int(entry))
        except FileNotFoundError:
            continue
    return out


def test_ulimit_fsize_stops_the_write(busybox, clean_host, tmp_path):
    r = pyrun("run", "--rm", "--network", "none", "--ulimit", "fsize=1024", "-v", f"{tmp_path}:/data", busybox,
              "dd", "if=/dev/zero", "of=/data/big", "bs=512", "count=10")
    # SIGXFSZ, or EFBIG where it is ignored (as PID 1 ignores a signal it has no handler for)
    assert r.returncode in (128 + 25, 1), r.stderr
    assert os.path.getsize(tmp_path / "big") == 1024


@pytest.mark.parametrize("args, message", [
    (["--tmpfs", "tmp"], "invalid --tmpfs: 'tmp': the container path 'tmp' must be absolute"),
    (["--tmpfs", "/"], "invalid --tmpfs: '/': the container path may not be /"),
    (["--tmpfs", "/tmp:size=lots"], "'size=lots' is not an option pyrun knows"),
    (["--tmpfs", "/tmp:uid=0,nr_inodes=1,bogus"], "'bogus' is not an option pyrun knows"),
    (["--tmpfs", "/tmp", "--tmpfs", "/tmp"], "invalid --tmpfs: /tmp: two mounts at the same container path"),
    (["--ulimit", "nofile"], "invalid --ulimit: 'nofile': expected NAME=SOFT[:HARD]"),
    (["--ulimit", "files=10"], "NAME one of cpu, fsize"),
    (["--ulimit", "nofile=20:10"], "the soft limit is above the hard limit"),
    (["--ulimit", "nofile=-1"], "the hard limit is above pyrun's own (nofile=20000)"),
    (["--ulimit", f"nofile=10:{1 << 30}"], "the hard limit is above pyrun's own"),
])
def test_bad_tmpfs_and_ulimit_are_125_and_leave_nothing(busybox, clean_host, args, message):
    r = pyrun("run", "--rm", *args, busybox, "true")
    assert r.returncode == 125 and message in r.stderr, r.stderr


def test_explain_prints_the_tmpfs_and_prlimit(busybox):
    args = ["--network", "none", "--tmpfs", "/tmp:size=64m,exec", "--ulimit", "nofile=64", "--ulimit", "core=0:-1",
            busybox, "true"]
    r = pyrun("run", "--explain", "--runtime", "pyrun", *args)  # the built-in's PID 1, as shell commands
    assert r.returncode == 0, r.stderr
    assert "mount -t tmpfs -o nosuid,nodev,size=67108864 tmpfs ./tmp" in r.stdout
    assert "prlimit --nofile=64:64 --core=0:unlimited -- " in r.stdout
    subprocess.run(["bash", "-n"], input=r.stdout, text=True, check=True)
    r = pyrun("run", "--explain", *args)  # the default's: both in the bundle's config.json
    config = explained_config(r.stdout)
    assert {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
            "options": ["nosuid", "nodev", "size=67108864"]} in config["mounts"]
    assert config["process"]["rlimits"] == [{"type": "RLIMIT_NOFILE", "soft": 64, "hard": 64},
                                            {"type": "RLIMIT_CORE", "soft": 0, "hard": 2 ** 64 - 1}]
