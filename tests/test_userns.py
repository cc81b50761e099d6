"""--userns=auto, attacked and checked from the host: root in the container is an unprivileged host uid of a
range its own, the rootfs stays as it was, and everything else (network, ports, exec, -t, limits, seccomp,
crash recovery) keeps working under it.

The attacks on the user namespace itself run under each runtime (RUNTIMES): pyrun's own, and an OCI runtime
given pyrun's bundle (runc, pyrun-oci), whose rootfs pyrun idmaps on the host (runtime/oci/client.py)."""
import ctypes
import errno
import os
import shutil
import signal
import struct
import subprocess
import tempfile

import pytest

from conftest import (CGROUP_PARENT, HOST_IP, RUNTIMES, fetch, pty_session, pyrun, pyrun_bg, running_record,
                      snapshot, wait_for)
USERS = "/run/pyrun-users"  # runtime/userns.py: one file per leased range
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]  # a real unprivileged host user


_libc = ctypes.CDLL(None, use_errno=True)
_CLONE_NEWUSER, _OPEN_TREE_CLONE, _AT_EMPTY_PATH, _MOUNT_ATTR_IDMAP = 0x10000000, 1, 0x1000, 0x100000
_SYS_OPEN_TREE, _SYS_MOUNT_SETATTR = 428, 442  # the same on x86_64 and aarch64


def _idmapped_mounts_work(path: str) -> bool:
    """Can this kernel, on the filesystem holding PATH, make an idmapped mount? (Linux 5.12 and a filesystem
    that allows it.) A child unshares a user namespace; this process maps it and tries. Its own system
    calls, not pyrun's: the answer must be the kernel's."""
    ready_r, ready_w = os.pipe()
    done_r, done_w = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            os.close(ready_r)
            os.close(done_w)
            if _libc.unshare(_CLONE_NEWUSER) == 0:
                os.write(ready_w, b"x")
            os.read(done_r, 1)
        finally:
            os._exit(0)
    os.close(ready_w)
    os.close(done_r)
    try:
        if os.read(ready_r, 1) != b"x":  # the child could not unshare a user namespace
            return False
        for name in ("uid_map", "gid_map"):
            with open(f"/proc/{child}/{name}", "w") as f:
                f.write("0 100000 65536\n")
        ns = os.open(f"/proc/{child}/ns/user", os.O_RDONLY)
        tree = _libc.syscall(_SYS_OPEN_TREE, -100, path.encode(), _OPEN_TREE_CLONE | os.O_CLOEXEC)
        try:
            attr = struct.pack("QQQQ", _MOUNT_ATTR_IDMAP, 0, 0, ns)  # struct mount_attr
            return tree >= 0 and _libc.syscall(_SYS_MOUNT_SETATTR, tree, b"", _AT_EMPTY_PATH, attr, len(attr)) == 0
        finally:
            os.close(ns)
            if tree >= 0:
                os.close(tree)
    finally:
        os.close(done_w)
        os.close(ready_r)
        os.waitpid(child, 0)


@pytest.fixture(scope="module", autouse=True)
def _needs_idmapped_mounts(busybox):
    if not _idmapped_mounts_work(busybox):
        pytest.skip(f"this kernel ({os.uname().release}) cannot make idmapped mounts on the filesystem holding "
                    f"{busybox}: --userns=auto needs them")


def leases() -> dict[int, str]:
    """base -> container id, for every leased range."""
    out = {}
    for name in os.listdir(USERS) if os.path.isdir(USERS) else []:
        if name.isdigit():
            with open(os.path.join(USERS, name)) as f:
                out[int(name)] = f.read()
    return out


def host_ids(pid: int) -> tuple[list[int], list[int]]:
    """The Uid and Gid lines of /proc/PID/status as the host sees them: real, effective, saved, filesystem."""
    with open(f"/proc/{pid}/status") as f:
        fields = dict(line.split(":", 1) for line in f)
    return [int(x) for x in fields["Uid"].split()], [int(x) for x in fields["Gid"].split()]


def start(rootfs: str, name: str, *options: str, command: str = "sleep 300", runtime: str = "pyrun") -> dict:
    r = pyrun("run", "-d", "--userns=auto", "--runtime", runtime, "--name", name, *options, rootfs, "sh", "-c",
              command)
    assert r.returncode == 0, r.stderr
    return wait_for(lambda: running_record(name), what=f"{name} to run")


def base_of(record: dict) -> int:
    uid_map = record["HostConfig"]["IDMappings"]["UidMap"]
    assert uid_map == record["HostConfig"]["IDMappings"]["GidMap"]
    inside, base, size = map(int, uid_map[0].split())
    assert (inside, size) == (0, 65536)
    return base


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_root_inside_is_an_unprivileged_uid_outside(runtime, busybox, clean_host):
    record = start(busybox, "unpriv", runtime=runtime)
    try:
        base = base_of(record)
        pid = record["State"]["Pid"]
        uids, gids = host_ids(pid)
        assert base >= 65536 and uids == [base] * 4 and gids == [base] * 4
        for kind in ("uid", "gid"):  # the kernel's own word, read from the host
            with open(f"/proc/{pid}/{kind}_map") as f:
                assert f.read().split() == ["0", str(base), "65536"]
        assert os.readlink(f"/proc/{pid}/ns/user") != os.readlink("/proc/self/ns/user")
        assert leases() == {base: record["Id"]}
        r = pyrun("exec", "unpriv", "sh", "-c", "id -u; id -g; cat /proc/self/uid_map")
        assert r.stdout.split() == ["0", "0", "0", str(base), "65536"], r.stderr
    finally:
        pyrun("rm", "-f", "unpriv")
    assert leases() == {}


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_files_made_in_a_bind_belong_to_the_mapped_uid(runtime, busybox, tmp_path, clean_host):
    """-v binds are not idmapped: the container writes as host uid BASE+N, and host root's files are nobody's."""
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o777)
    r = pyrun("run", "--rm", "--userns=auto", "--runtime", runtime, "--network", "none", "-v", f"{out}:/out",
              busybox, "sh", "-c",
              "touch /out/made; mkdir /out/dir; chown 7:8 /out/dir; stat -c '%u %g' /out; cat /proc/self/uid_map")
    assert r.returncode == 0, r.stderr
    seen, uid_map = r.stdout.splitlines()
    assert seen == "65534 65534"  # the directory is host root's: nobody's, inside
    base = int(uid_map.split()[1])
    assert (os.stat(out / "made").st_uid, os.stat(out / "made").st_gid) == (base, base)
    assert (os.stat(out / "dir").st_uid, os.stat(out / "dir").st_gid) == (base + 7, base + 8)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_root_only_host_file_stays_root_only(runtime, busybox, tmp_path, clean_host):
    secret = tmp_path / "secret"
    secret.write_text("the host's secret\n")
    secret.chmod(0o600)
    public = tmp_path / "public"
    public.write_text("root's file\n")
    public.chmod(0o644)
    r = pyrun("run", "--rm", "--userns=auto", "--runtime", runtime, "--network", "none", "-v", f"{secret}:/secret",
              "-v", f"{public}:/public", busybox, "sh", "-c",
              "cat /secret; echo cat=$?; echo mine > /public; echo write=$?; chmod 666 /public; echo chmod=$?")
    assert "the host's secret" not in r.stdout + r.stderr
    assert "cat=1" in r.stdout and "write=1" in r.stdout and "chmod=1" in r.stdout, r.stdout + r.stderr
    assert public.read_text() == "root's file\n" and os.stat(public).st_mode & 0o777 == 0o644


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_setuid_root_file_it_makes_is_no_way_to_host_root(runtime, busybox, clean_host):
    """The container's root makes a setuid-root copy of coreutils' id in a bind: on the host the file is host
    uid BASE's, and a host user who runs it gets euid BASE, not 0."""
    out = tempfile.mkdtemp(prefix="pyrun-suid-")  # not under pytest's 0700 tmp: the host user must reach it
    try:
        os.chmod(out, 0o777)
        r = pyrun("run", "--rm", "--userns=auto", "--runtime", runtime, "--network", "none", "-v", f"{out}:/out",
                  "-v", "/usr/bin/id:/hostid:ro", busybox, "sh", "-c",
                  "cp /hostid /out/suid && chown 0:0 /out/suid && chmod 4755 /out/suid && cat /proc/self/uid_map")
        assert r.returncode == 0, r.stderr
        base = int(r.stdout.split()[1])
        made = os.stat(os.path.join(out, "suid"))
        assert (made.st_uid, made.st_gid, made.st_mode & 0o7777) == (base, base, 0o4755)
        ran = subprocess.run([*NOBODY, os.path.join(out, "suid"), "-u"], capture_output=True, text=True, timeout=10)
        assert (ran.returncode, ran.stdout) == (0, f"{base}\n"), ran.stderr
    finally:
        shutil.rmtree(out)


def _owners(path: str) -> dict:
    out = {}
    for directory, dirs, files in os.walk(path):
        for name in [*dirs, *files, ""] if directory == path else [*dirs, *files]:
            st = os.lstat(os.path.join(directory, name))
            out[os.path.join(directory, name)] = (st.st_uid, st.st_gid, st.st_mode)
    return out


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_the_rootfs_is_never_chowned_nor_written(runtime, busybox, clean_host):
    before = _owners(busybox)
    r = pyrun("run", "--rm", "--userns=auto", "--runtime", runtime, "--network", "none", busybox, "sh", "-c",
              "stat -c '%u %g' /bin/busybox /etc/passwd; echo x > /bin/planted; chown 5:5 /etc/passwd; "
              "chmod 4777 /bin/busybox; cat /proc/self/uid_map")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[:2] == ["0 0", "0 0"]  # the idmapped rootfs: the files' owners, as they are on disk
    assert int(lines[2].split()[1]) != 0
    assert _owners(busybox) == before
    assert not os.path.exists(os.path.join(busybox, "bin", "planted"))


def test_two_containers_get_ranges_that_do_not_overlap(busybox, clean_host):
    try:
        a, b = start(busybox, "range-a"), start(busybox, "range-b")
        base_a, base_b = base_of(a), base_of(b)
        assert abs(base_a - base_b) >= 65536
        assert host_ids(a["State"]["Pid"])[0][0] == base_a and host_ids(b["State"]["Pid"])[0][0] == base_b
        assert leases() == {base_a: a["Id"], base_b: b["Id"]}
    finally:
        pyrun("rm", "-f", "range-a", "range-b")
    assert leases() == {}


def test_the_range_is_released_at_exit(busybox, clean_host):
    r = pyrun("run", "--rm", "--userns=auto", "--network", "none", busybox, "cat", "/proc/self/uid_map")
    assert r.returncode == 0 and int(r.stdout.split()[1]) >= 65536, r.stderr
    assert leases() == {}


@pytest.mark.parametrize("kind", ["idrange", "layer", "veth"])
def test_sigkill_of_pyrun_then_prune_releases_the_range(busybox, kind):
    before = snapshot()
    p = pyrun_bg("run", "--userns=auto", "--name", f"ufault-{kind}", busybox, "true",
                 env={**os.environ, "PYRUN_DEBUG_PAUSE_AFTER": kind})
    assert p.stderr.readline() == f"pyrun: paused after {kind} (PYRUN_DEBUG_PAUSE_AFTER)\n"
    assert len(leases()) == 1
    p.kill()
    p.wait()
    r = pyrun("prune")
    assert r.returncode == 0 and r.stdout == f"ufault-{kind}\n", r.stderr
    assert leases() == {}
    wait_for(lambda: snapshot() == before, timeout=5, what="the host to be as before")


def test_bridge_network_and_a_published_port(busybox, clean_host):
    record = start(busybox, "uweb", "-p", "8093:80",
                   command="echo served-from-a-userns > /tmp/index.html && exec httpd -f -p 80 -h /tmp")
    try:
        assert wait_for(lambda: fetch(f"http://{HOST_IP}:8093/", "world"), what="the server") == \
            "served-from-a-userns\n"
        assert fetch("http://127.0.0.1:8093/") == "served-from-a-userns\n"
        assert host_ids(record["State"]["Pid"])[0][0] == base_of(record)
    finally:
        pyrun("rm", "-f", "uweb")


def test_exec_joins_the_user_namespace_first(busybox, clean_host):
    record = start(busybox, "uexec")
    try:
        base = base_of(record)
        p = pyrun_bg("exec", "uexec", "sleep", "31.4159")
        procs = f"/sys/fs/cgroup/pids/{CGROUP_PARENT}/{record['Id']}/cgroup.procs"

        def exec_pid():
            for pid in open(procs).read().split():
                try:
                    if open(f"/proc/{pid}/cmdline").read() == "sleep\x0031.4159\x00":
                        return int(pid)
                except FileNotFoundError:
                    continue
        pid = wait_for(exec_pid, what="the exec'd process")
        assert host_ids(pid) == ([base] * 4, [base] * 4)
        assert os.readlink(f"/proc/{pid}/ns/user") == os.readlink(f"/proc/{record['State']['Pid']}/ns/user")
        os.kill(pid, signal.SIGKILL)
        p.wait(timeout=10)
    finally:
        pyrun("rm", "-f", "uexec")


def test_limits_hold_under_it(busybox, clean_host):
    record = start(busybox, "ulimits", "--pids-limit", "6", "-m", "32m")
    try:
        cgroup = f"/sys/fs/cgroup/pids/{CGROUP_PARENT}/{record['Id']}"
        assert str(record["State"]["Pid"]) in open(f"{cgroup}/cgroup.procs").read().split()
        assert open(f"{cgroup}/pids.max").read().strip() == "6"
        r = pyrun("exec", "ulimits", "sh", "-c", "for i in 1 2 3 4 5 6 7 8; do sleep 30 & done; wait")
        assert "can't fork" in r.stderr, r.stderr
    finally:
        pyrun("rm", "-f", "ulimits")


def test_seccomp_still_refuses_what_it_refuses(debian, clean_host):
    from test_seccomp import CALLS, probe

    assert probe(debian, "--userns=auto") == {name: errno.EPERM for name in CALLS}


def test_a_terminal_works(busybox, clean_host):
    s = pty_session("run", "--rm", "-t", "--userns=auto", "--network", "none", busybox, "sh", "-c",
                    "tty; id -u")
    assert s.read_until(b"\n0\r\n"), s.out
    assert b"/dev/pts/0" in s.out
    assert s.wait() == 0


def test_twenty_at_once_each_in_its_own_range(busybox, clean_host):
    runs = [pyrun_bg("run", "--rm", "--userns=auto", busybox, "sh", "-c", "cat /proc/self/uid_map; sleep 2")
            for _ in range(20)]
    outputs = [p.communicate(timeout=120) for p in runs]
    assert [p.returncode for p in runs] == [0] * 20, [err for _, err in outputs if err]
    bases = [int(out.split()[1]) for out, _ in outputs]
    assert len(set(bases)) == 20 and all(b >= 65536 and b % 100000 == 0 for b in bases), bases
    assert leases() == {}


def test_bad_userns_is_refused(busybox, clean_host):
    r = pyrun("run", "--userns=keep-id", busybox, "true")
    assert r.returncode == 125
    assert r.stderr.strip().count("\n") == 0 and "'keep-id'" in r.stderr and "auto" in r.stderr


def test_explain_prints_the_maps(busybox, clean_host):
    r = pyrun("run", "--explain", "--runtime", "pyrun", "--userns=auto", busybox, "true")  # the built-in's unshare
    assert r.returncode == 0, r.stderr
    assert "--user --mount" in r.stdout
    assert "> /proc/$PID/uid_map" in r.stdout and "> /proc/$PID/gid_map" in r.stdout
    assert f"> {USERS}/100000" in r.stdout and f"rm {USERS}/100000" in r.stdout
    assert leases() == {}
