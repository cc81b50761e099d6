"""exec: another process in a running container, as podman exec and ctr task exec start one (runc's exec).

Checked from the host: the process's namespaces, cgroup, capabilities, no_new_privs and seccomp are the
container's (or the --process JSON's), its pid file holds its host pid, and without --detach exec waits and
exits with the program's code."""
import json
import os
import socket

from ocitools import Shim, oci, running

CONTAINER_NS = ("pid", "net", "ipc", "uts", "mnt", "cgroup")


def _ns(pid: int, name: str) -> str:
    return os.readlink(f"/proc/{pid}/ns/{name}")


def _status(pid: int, field: str) -> str:
    with open(f"/proc/{pid}/status") as f:
        return next(line.split(":", 1)[1].strip() for line in f if line.startswith(field + ":"))


def test_exec_waits_and_exits_with_the_programs_code(busybox, tmp_path):
    with running(busybox, str(tmp_path), "ex1", ["sleep", "60"]):
        r = oci("exec", "ex1", "sh", "-c", "cat /proc/1/cmdline; echo; hostname; echo err >&2; exit 7")
        assert r.returncode == 7, r.stderr
        assert r.stdout == "sleep\x0060\x00\npyrun\n" and r.stderr == "err\n"  # its PID 1 is the container's


def test_detached_exec_joins_the_containers_namespaces_and_cgroup(busybox, tmp_path):
    with running(busybox, str(tmp_path), "ex2", ["sleep", "60"]) as (_, pid1):
        shim = Shim(str(tmp_path), "--detach", "--pid-file", str(tmp_path / "exec.pid"), "ex2", "sleep", "30",
                    verb="exec")
        try:
            assert shim.created() == 0, shim.proc.stderr.read()  # exec has exited, the program runs
            pid = int((tmp_path / "exec.pid").read_text())
            assert [_ns(pid, n) for n in CONTAINER_NS] == [_ns(pid1, n) for n in CONTAINER_NS]
            assert open(f"/proc/{pid}/cgroup").read() == open(f"/proc/{pid1}/cgroup").read()
            assert os.readlink(f"/proc/{pid}/root") == "/"  # the container's root, as PID 1's
            assert os.stat(f"/proc/{pid}/root/bin/busybox").st_ino == os.stat(f"/proc/{pid1}/root/bin/busybox").st_ino
            with open(f"/proc/{pid}/cmdline") as f:
                assert f.read() == "sleep\x0030\x00"  # exec'd: no pyrun process in between
            ps = json.loads(oci("ps", "--format", "json", "ex2").stdout)
            assert sorted(ps) == sorted([pid1, pid])
            os.kill(pid, 9)
            assert shim.exit_of(pid) == -9  # reaped by the engine (the shim), not by pyrun
        finally:
            shim.close()


def test_the_process_json_sets_user_caps_env_cwd_and_no_new_privs(busybox, tmp_path):
    process = {"args": ["sh", "-c", "id -u; id -g; echo $GREETING; pwd; grep -E '^(CapEff|CapBnd|NoNewPrivs)' "
                                    "/proc/self/status"],
               "env": ["PATH=/bin:/usr/bin", "GREETING=hi"], "cwd": "/tmp", "user": {"uid": 65534, "gid": 65534},
               "capabilities": {k: ["CAP_KILL"] for k in ("bounding", "effective", "permitted", "inheritable",
                                                            "ambient")},  # ambient: a uid's caps across execve
               "noNewPrivileges": True}
    (tmp_path / "process.json").write_text(json.dumps(process))
    with running(busybox, str(tmp_path), "ex3", ["sleep", "60"]):
        r = oci("exec", "--process", str(tmp_path / "process.json"), "ex3")
        assert r.returncode == 0, r.stderr
        assert r.stdout.split("\n") == ["65534", "65534", "hi", "/tmp", "CapEff:\t0000000000000020",
                                        "CapBnd:\t0000000000000020", "NoNewPrivs:\t1", ""]


def test_exec_flags_build_on_the_containers_process(busybox, tmp_path):
    with running(busybox, str(tmp_path), "ex4", ["sleep", "60"]):
        r = oci("exec", "--cwd", "/etc", "--env", "A=1", "--user", "1000:1001", "ex4", "sh", "-c",
                "echo $A $(id -u):$(id -g) $PWD; grep CapBnd /proc/self/status")
        assert r.returncode == 0, r.stderr
        bounding = int(r.stdout.split()[-1], 16)
        assert r.stdout.split()[:3] == ["1", "1000:1001", "/etc"]
        assert bounding and not bounding & (1 << 21)  # the container's bounding set: no CAP_SYS_ADMIN


def test_exec_loads_the_containers_seccomp_profile(busybox, tmp_path):
    def edit(c):
        c["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW",
                                 "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}
    with running(busybox, str(tmp_path), "ex5", ["sleep", "60"], edit):
        r = oci("exec", "ex5", "sh", "-c", "grep Seccomp: /proc/self/status; mkdir /tmp/d || echo refused")
        assert r.stdout.split("\n")[0] == "Seccomp:\t2" and "refused" in r.stdout, r.stderr
        assert not os.path.exists(tmp_path / "bundle-ex5" / "rootfs" / "tmp" / "d")


def test_exec_with_a_terminal_sends_its_master_over_the_console_socket(busybox, tmp_path):
    path = str(tmp_path / "console.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    with running(busybox, str(tmp_path), "ex6", ["sleep", "60"]):
        shim = Shim(str(tmp_path), "--detach", "--tty", "--console-socket", path, "--pid-file",
                    str(tmp_path / "exec.pid"), "ex6", "sh", "-c", "tty; echo $(ls /dev/pts); read x; echo got $x",
                    verb="exec")
        try:
            listener.settimeout(20)
            conn, _ = listener.accept()
            _, fds, _, _ = socket.recv_fds(conn, 1024, 1)
            conn.close()
            assert shim.created() == 0, shim.proc.stderr.read()
            os.write(fds[0], b"hello\n")
            out = b""
            while b"got hello" not in out:
                try:
                    chunk = os.read(fds[0], 1024)
                except OSError:
                    break
                out += chunk
            os.close(fds[0])
            assert out.replace(b"\r", b"").split(b"\n")[:2] == [b"/dev/pts/0", b"0 ptmx"]  # the container's devpts
            assert b"got hello" in out
        finally:
            listener.close()
            shim.close()


def test_preserved_fds_reach_the_exec_process_and_nothing_else(busybox, tmp_path):
    r3, w3 = os.pipe()
    with running(busybox, str(tmp_path), "ex7", ["sleep", "60"]):
        shim = Shim(str(tmp_path), "--preserve-fds", "1", "ex7", "sh", "-c", "ls /proc/self/fd; echo three >&3",
                    verb="exec", fds={3: w3})
        try:
            os.close(w3)
            assert shim.created() == 0, shim.proc.stderr.read()
            assert sorted(shim.proc.stdout.read().split(), key=int) == [b"0", b"1", b"2", b"3", b"4"]  # 4: ls's own
            assert os.read(r3, 100) == b"three\n"
        finally:
            os.close(r3)
            shim.close()


def test_exec_errors(busybox, tmp_path):
    r = oci("exec", "nosuch", "true")
    assert (r.returncode, r.stderr) == (1, 'pyrun-oci: container "nosuch" does not exist\n')
    with running(busybox, str(tmp_path), "ex8", ["sleep", "60"]) as (shim, pid):
        r = oci("exec", "ex8")
        assert r.returncode == 1 and "no command given" in r.stderr
        r = oci("exec", "ex8", "/nonexistent")
        assert r.returncode == 1 and "no such file" in r.stderr, r.stderr  # an error of exec, as any other
        r = oci("exec", "--user", "nobody", "ex8", "true")
        assert r.returncode == 1 and "expected UID[:GID]" in r.stderr
        r = oci("exec", "--user", "4294967295", "ex8", "true")  # setresuid's "unchanged": the flag is named
        assert r.returncode == 1 and "invalid --user: '4294967295'" in r.stderr, r.stderr
        r = oci("exec", "--tty", "ex8", "true")
        assert r.returncode == 1 and "give --console-socket" in r.stderr
        assert oci("ps", "--format", "json", "ex8").stdout.strip() == f"[{pid}]"  # nothing left running
        oci("kill", "ex8", "KILL")
        shim.exit_of(pid)
        r = oci("exec", "ex8", "true")
        assert r.returncode == 1 and "cannot exec in a stopped container" in r.stderr
