"""pyrun run --runtime under attack: what pyrun itself adds around an OCI runtime's container must keep
README's Security guarantees, for each runtime (oci/client.py; the container side is the runtime's).

`pyrun exec` into such a container is pyrun's own process, not the runtime's: it has to end up as
confined as the container's PID 1, the cgroup included (the devices cgroup is what keeps a node made
with CAP_MKNOD from opening the host's disk). Each check is made from the host, on the real processes.
--init's tini is the engine's file: nothing the container does reaches the host's copy.
"""
import hashlib
import os
import shutil

import pytest

from conftest import RUNTIMES, pyrun, pyrun_bg, running_record, wait_for
from runtime.oci.bundle import TINI

CONFINEMENT = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp", "Seccomp_filters")


def _status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as f:
        fields = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
    return {key: fields.get(key) for key in CONFINEMENT}


def _cgroups(pid: int) -> list[str]:
    with open(f"/proc/{pid}/cgroup") as f:
        return sorted(f.read().split())


def _in_pidns_of(pid: int) -> list[int]:
    ns = os.readlink(f"/proc/{pid}/ns/pid")
    out = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.readlink(f"/proc/{entry}/ns/pid") == ns and int(entry) != pid:
                out.append(int(entry))
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return out


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except (FileNotFoundError, ProcessLookupError):
        return b""


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_an_exec_is_as_confined_as_pid_1(runtime, busybox, clean_host):
    name = f"confined-{runtime}"
    assert pyrun("run", "-d", "--name", name, "--runtime", runtime, "--network", "none", "-m", "64m",
                 "--pids-limit", "50", busybox, "sleep", "300").returncode == 0
    try:
        pid1 = wait_for(lambda: running_record(name), what="the container")["State"]["Pid"]
        execd = pyrun_bg("exec", name, "sleep", "299")
        try:
            found = wait_for(lambda: [p for p in _in_pidns_of(pid1) if _cmdline(p) == b"sleep\x00299\x00"],
                             what="the exec's process in the container")
            assert _status(found[0]) == _status(pid1)
            assert _cgroups(found[0]) == _cgroups(pid1)  # memory, pids and devices: the container's
        finally:
            execd.kill()
            execd.wait()
    finally:
        assert pyrun("rm", "-f", name).returncode == 0


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_an_exec_opens_no_device_outside_the_set(runtime, busybox, clean_host):
    # The host's kernel log and its tun device: both open here for root outside a devices cgroup (this
    # machine's block devices do not, so they would prove nothing).
    for node in ("/dev/kmsg", "/dev/net/tun"):
        os.close(os.open(node, os.O_RDWR))
    script = ("mknod /tmp/kmsg c 1 11 && mknod /tmp/tun c 10 200 || exit 9; for n in kmsg tun; do "
              "(exec 3<>/tmp/$n) 2>/dev/null && echo OPENED $n; done; echo done")
    name = f"mknod-{runtime}"
    assert pyrun("run", "-d", "--name", name, "--runtime", runtime, "--network", "none", busybox,
                 "sleep", "300").returncode == 0
    try:
        wait_for(lambda: running_record(name), what="the container")
        r = pyrun("exec", name, "sh", "-c", script)
        assert (r.returncode, r.stdout) == (0, "done\n"), r.stdout + r.stderr  # made (CAP_MKNOD), never opened
    finally:
        assert pyrun("rm", "-f", name).returncode == 0


def _hostile_copy(busybox: str, where, link: str, to: str) -> str:
    """A copy of BUSYBOX whose LINK is an absolute symlink to TO, a directory both in the copy and on the host:
    followed inside the rootfs it stays there, followed from the host it is the host's."""
    rootfs = where / "rootfs"
    shutil.copytree(busybox, rootfs, symlinks=True)
    shutil.rmtree(rootfs / link.lstrip("/"), ignore_errors=True)
    os.makedirs(str(rootfs) + to)
    os.symlink(to, str(rootfs) + link)
    return str(rootfs)


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("link", ["/dev", "/etc", "/data"])
def test_a_mount_target_symlinked_to_a_host_directory_changes_nothing_on_the_host(runtime, link, busybox,
                                                                                 clean_host, tmp_path):
    """/dev: the runtime writes its links (fd, stdin, ptmx) below it; /etc: the hosts, hostname and resolv.conf
    binds; /data: a -v target. Each either stays inside the rootfs or is refused, never written on the host."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep").write_text("host data")
    rootfs = _hostile_copy(busybox, tmp_path, link, str(victim))
    src = tmp_path / "src"
    src.mkdir()
    r = pyrun("run", "--rm", "--runtime", runtime, "--network", "none", "-v", f"{src}:/data/mnt", rootfs,
              "sh", "-c", "echo planted > /dev/planted 2>/dev/null; ls /data/mnt >/dev/null")
    assert r.returncode in (0, 125), r.stderr
    assert os.listdir(victim) == ["keep"] and (victim / "keep").read_text() == "host data"
    with open("/proc/self/mountinfo") as f:
        assert not [line for line in f if str(victim) in line.split()[4]]


# i386's getpid through int 0x80, from a 64-bit process: the kernel runs it from its 32-bit table, and a filter
# for x86_64 alone sees another architecture.
I386_GETPID = """
import ctypes, mmap
m = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
m.write(bytes([0xb8, 20, 0, 0, 0, 0xcd, 0x80, 0xc3]))  # mov eax, 20; int 0x80; ret
print("ran", ctypes.CFUNCTYPE(ctypes.c_int)(ctypes.addressof(ctypes.c_char.from_buffer(m)))(), flush=True)
"""


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="int 0x80 is x86's")
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_system_call_through_the_32_bit_entry_is_killed(runtime, debian, clean_host):
    unconfined = pyrun("run", "--rm", "--runtime", runtime, "--network", "none", "--security-opt",
                       "seccomp=unconfined", debian, "python3", "-c", I386_GETPID)
    assert unconfined.stdout.startswith("ran "), unconfined.stderr  # this kernel has the 32-bit entry
    r = pyrun("run", "--rm", "--runtime", runtime, "--network", "none", debian, "python3", "-c", I386_GETPID)
    assert (r.returncode, r.stdout) == (128 + 31, ""), r.stdout + r.stderr  # SIGSYS


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("name", ["passwd", "group"])
def test_a_fifo_for_the_user_files_neither_blocks_the_start(runtime, name, busybox, clean_host, tmp_path):
    """runc opens /etc/passwd and /etc/group in the container before the command, with or without -u: a FIFO
    there held its create, and pyrun, for good. pyrun's own runtime and pyrun-oci, which read neither, run the
    container; for runc pyrun refuses it."""
    rootfs = tmp_path / "rootfs"
    shutil.copytree(busybox, rootfs, symlinks=True)
    (rootfs / "etc" / name).unlink()
    os.mkfifo(rootfs / "etc" / name)
    r = pyrun("run", "--rm", "--runtime", runtime, "--network", "none", str(rootfs), "echo", "ran", timeout=20)
    if runtime in ("pyrun", "pyrun-oci"):
        assert (r.returncode, r.stdout) == (0, "ran\n"), r.stderr
    else:
        assert r.returncode == 125 and r.stderr.splitlines() == [
            f"pyrun: rootfs: /etc/{name} is not a regular file (mode prw-r--r--): the runtime reads it before the "
            "command runs; expected a file or none"], r.stderr


TINI_ATTACK = """mount -o remount,rw,bind /sbin/docker-init
grep ' /sbin/docker-init ' /proc/self/mountinfo | cut -d' ' -f6
chmod 4755 /sbin/docker-init; chown 1000:1000 /sbin/docker-init; touch /sbin/docker-init
echo planted >> /sbin/docker-init
true"""


def _fingerprint(path) -> tuple:
    st = os.stat(path)
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    return digest, st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns, st.st_ctime_ns, os.listxattr(path)


@pytest.mark.skipif(not os.path.exists(TINI), reason=f"{TINI} is not installed: scripts/setup")
@pytest.mark.parametrize("runtime", [r for r in RUNTIMES if r != "pyrun"])  # pyrun's own --init binds no file
def test_a_root_container_with_every_capability_cannot_change_the_hosts_tini(runtime, busybox, clean_host,
                                                                              tmp_path):
    """--init's tini is bound read-only, which CAP_SYS_ADMIN undoes: the container remounts it writable and
    chmods it setuid, chowns, touches and writes it. The host's file, read from the host, is as it was."""
    tini = tmp_path / "tini-static"  # the engine's tini (dockerd's --init-path): a copy, not the machine's own
    shutil.copy2(TINI, tini)
    before = _fingerprint(tini)
    r = pyrun("run", "--rm", "--init", "--runtime", runtime, "--cap-add", "ALL", "--network", "none", busybox,
              "sh", "-c", TINI_ATTACK, env={**os.environ, "PYRUN_INIT_PATH": str(tini)})
    assert r.returncode == 0 and r.stdout.startswith("rw,"), r.stdout + r.stderr  # the remount took: it is writable
    assert _fingerprint(tini) == before
