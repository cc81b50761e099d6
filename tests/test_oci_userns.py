"""linux.uidMappings/gidMappings: a user namespace whose root is an unprivileged host uid (config-linux.md).

Checked from the host: the container's process runs as the mapped host uid, its uid_map and gid_map are the
config's, its root is denied what that host uid is denied, exec enters the same user namespace, and a
mapping the kernel would refuse (or that holds no uid for the process) fails create and leaves nothing.
The rootfs is the busybox one, owned by host root and never chowned: its files are nobody's inside.
"""
import os
import shutil
import subprocess

import pytest

from ocitools import Shim, cleanup, leftovers, make_bundle, oci, run_bundle, running

BASE = 200000
MAP = [{"containerID": 0, "hostID": BASE, "size": 65536}]


def _userns(c, uid_map=MAP, gid_map=MAP) -> None:
    c["linux"]["namespaces"].append({"type": "user"})
    c["linux"]["uidMappings"], c["linux"]["gidMappings"] = uid_map, gid_map


def _status(pid: int, field: str) -> list[str]:
    with open(f"/proc/{pid}/status") as f:
        return next(line.split(":", 1)[1].split() for line in f if line.startswith(field + ":"))


def _map(pid: int, kind: str) -> list[list[str]]:
    with open(f"/proc/{pid}/{kind}_map") as f:
        return [line.split() for line in f]


def test_the_process_runs_as_the_mapped_host_uid(busybox, tmp_path):
    def edit(c):
        _userns(c, gid_map=[{"containerID": 0, "hostID": BASE + 70000, "size": 65536}])
        c["process"]["user"] = {"uid": 1000, "gid": 1000, "additionalGids": [5]}
    with running(busybox, str(tmp_path), "uns1", ["sleep", "60"], edit) as (_, pid):
        assert _status(pid, "Uid") == [str(BASE + 1000)] * 4
        assert _status(pid, "Gid") == [str(BASE + 71000)] * 4
        assert _status(pid, "Groups") == [str(BASE + 70005)]
        assert _map(pid, "uid") == [["0", str(BASE), "65536"]]
        assert _map(pid, "gid") == [["0", str(BASE + 70000), "65536"]]
        with open(f"/proc/{pid}/setgroups") as f:
            assert f.read() == "allow\n"  # written by host root: no need to deny setgroups(2)
        for ns in ("pid", "net", "ipc", "uts", "mnt", "user"):
            assert os.readlink(f"/proc/{pid}/ns/{ns}") != os.readlink(f"/proc/self/ns/{ns}"), ns


def test_the_mounts_work_inside_and_the_devices_are_the_hosts(busybox, tmp_path):
    """proc, sysfs, mqueue, devpts, tmpfs and the cgroup mount, as the namespace's root; no mknod there."""
    script = ("id -u; cat /proc/self/uid_map | tr -s ' '; ls /sys/class/net; ls -d /dev/mqueue /sys/fs/cgroup; "
              "echo x > /dev/null && head -c3 /dev/zero | wc -c; ls -ln /bin/busybox | tr -s ' ' | cut -d' ' -f3; "
              "mknod /tmp/null c 1 3 2>/dev/null || echo no mknod; hostname")
    bundle = make_bundle(str(tmp_path / "b"), busybox, ["sh", "-c", script], _userns)
    code, out, err = run_bundle(bundle, str(tmp_path), "uns2")
    assert code == 0, err
    assert out.splitlines() == ["0", f" 0 {BASE} 65536", "lo", "/dev/mqueue", "/sys/fs/cgroup", "3", "65534",
                                "no mknod", "pyrun"]


def test_a_read_only_root_and_the_hosts_network_without_a_network_namespace(busybox, tmp_path):
    """Without a network namespace of its own the container's root may not mount sysfs (the netns is host
    root's): /sys is the host's, bound read-only, as runc binds it."""
    def edit(c):
        _userns(c)
        c["root"]["readonly"] = True
        c["linux"]["namespaces"] = [ns for ns in c["linux"]["namespaces"] if ns["type"] != "network"]
    script = "touch /x 2>/dev/null || echo read-only; touch /sys/x 2>/dev/null || echo sys read-only; ls /sys/class/net"
    bundle = make_bundle(str(tmp_path / "b"), busybox, ["sh", "-c", script], edit)
    code, out, err = run_bundle(bundle, str(tmp_path), "uns11")
    assert code == 0, err
    assert out.splitlines() == ["read-only", "sys read-only", *sorted(os.listdir("/sys/class/net"))]


@pytest.mark.parametrize("options,expected", [
    (["bind", "ro"], "created"),              # the remount keeps the host mount's nosuid, nodev (locked)
    (["bind", "rw"], "created"),
    (["bind", "suid"], "nosuid, nodev or noexec, which a user namespace cannot undo"),
])
def test_a_bind_from_a_nosuid_host_mount_keeps_its_locked_flags(busybox, tmp_path, options, expected):
    source = tmp_path / "m"
    source.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "nosuid,nodev,size=1m", "tmpfs", str(source)], check=True)
    try:
        def edit(c):
            os.mkdir(os.path.join(bundle, "rootfs", "m"))
            c["mounts"].append({"destination": "/m", "type": "bind", "source": str(source), "options": options})
            _userns(c)
        bundle = str(tmp_path / "b")
        make_bundle(bundle, busybox, ["sh", "-c", "grep ' /m ' /proc/self/mounts | cut -d' ' -f4"], edit)
        code, out, err = run_bundle(bundle, str(tmp_path), "uns12")
        if expected == "created":
            assert code == 0, err
            assert set(out.strip().split(",")) >= {"nosuid", "nodev", "ro" if "ro" in options else "rw"}
        else:
            assert code == -1 and expected in err and err.count("\n") == 1, err
    finally:
        subprocess.run(["umount", str(source)], check=True)


def test_root_inside_cannot_read_a_host_roots_file(busybox, tmp_path):
    """A host file of root's, mode 0600, bound in: the container's root is host uid BASE, which may not read
    it. A file of BASE's own, same mode, it may read; and without the user namespace root reads both."""
    secret, own = tmp_path / "secret", tmp_path / "own"
    for path in (secret, own):
        path.write_text(f"{path.name}\n")
        path.chmod(0o600)
    os.chown(own, BASE, BASE)

    def binds(bundle: str, userns: bool):
        def edit(c):
            for name in ("secret", "own"):  # made by the engine: the namespace's root may not, in root's rootfs
                open(os.path.join(bundle, "rootfs", name), "w").close()
            c["mounts"] += [{"destination": "/secret", "type": "bind", "source": str(secret),
                             "options": ["rbind", "ro"]},
                            {"destination": "/own", "type": "bind", "source": str(own), "options": ["bind", "nosuid"]}]
            if userns:
                _userns(c)
        return make_bundle(bundle, busybox, ["sh", "-c", "cat /own; cat /secret || echo denied; "
                                                         "ls -ln /secret | tr -s ' ' | cut -d' ' -f3"], edit)
    code, out, err = run_bundle(binds(str(tmp_path / "b"), True), str(tmp_path), "uns3")
    assert (code, out) == (0, "own\ndenied\n65534\n"), err
    assert "Permission denied" in err
    code, out, err = run_bundle(binds(str(tmp_path / "host"), False), str(tmp_path), "uns4")
    assert (code, out) == (0, "own\nsecret\n0\n"), err


def test_a_mount_point_the_namespaces_root_cannot_make_is_a_clear_error(busybox, tmp_path, clean_host):
    def edit(c):
        c["mounts"].append({"destination": "/data", "type": "bind", "source": str(tmp_path), "options": ["rbind"]})
        _userns(c)
    bundle = make_bundle(str(tmp_path / "b"), busybox, ["true"], edit)
    code, out, err = run_bundle(bundle, str(tmp_path), "uns10")
    assert code == -1 and err.count("\n") == 1, err
    assert f"/data: Permission denied: the user namespace's root is host uid {BASE}" in err
    assert leftovers("uns10") == []


def test_exec_enters_the_containers_user_namespace(busybox, tmp_path):
    with running(busybox, str(tmp_path), "uns5", ["sleep", "60"], _userns) as (_, pid1):
        shim = Shim(str(tmp_path), "--detach", "--pid-file", str(tmp_path / "exec.pid"), "uns5", "sleep", "30",
                    verb="exec")
        try:
            assert shim.created() == 0, shim.proc.stderr.read()
            pid = int((tmp_path / "exec.pid").read_text())
            assert os.readlink(f"/proc/{pid}/ns/user") == os.readlink(f"/proc/{pid1}/ns/user")
            assert _status(pid, "Uid") == [str(BASE)] * 4  # not the host's root
            os.kill(pid, 9)
        finally:
            shim.close()
        r = oci("exec", "uns5", "sh", "-c", "id -u; cat /proc/self/uid_map | tr -s ' '")
        assert (r.returncode, r.stdout) == (0, f"0\n 0 {BASE} 65536\n"), r.stderr


def test_a_second_container_joins_the_first_ones_user_namespace(busybox, tmp_path):
    with running(busybox, str(tmp_path), "uns6", ["sleep", "60"], _userns) as (_, pid1):
        userns = f"/proc/{pid1}/ns/user"

        def edit(c, maps=MAP):
            c["linux"]["namespaces"].append({"type": "user", "path": userns})
            c["linux"]["uidMappings"] = c["linux"]["gidMappings"] = maps
        bundle = make_bundle(str(tmp_path / "b"), busybox, ["sh", "-c", "readlink /proc/self/ns/user; id -u"], edit)
        code, out, err = run_bundle(bundle, str(tmp_path), "uns7")
        assert (code, out) == (0, f"{os.readlink(userns)}\n0\n"), err
        other = [{"containerID": 0, "hostID": BASE + 100000, "size": 65536}]
        bundle = make_bundle(str(tmp_path / "c"), busybox, ["true"], lambda c: edit(c, other))
        code, out, err = run_bundle(bundle, str(tmp_path), "uns8")
        assert code == -1 and "the user namespace joined maps" in err and err.count("\n") == 1, err
        assert leftovers("uns8") == []


def _maps(**entry) -> list[dict]:
    return [{"containerID": 0, "hostID": BASE, "size": 65536, **entry}]


@pytest.mark.parametrize("edit,message", [
    (lambda c: c["linux"].update(uidMappings=MAP, gidMappings=MAP), "mappings need a user namespace"),
    (lambda c: c["linux"]["namespaces"].append({"type": "user"}), "a new user namespace needs its mappings"),
    (lambda c: _userns(c, uid_map=[{"containerID": i, "hostID": BASE + i, "size": 1} for i in range(341)]),
     "341 mappings: the kernel takes at most 340"),
    (lambda c: _userns(c, uid_map=MAP + [{"containerID": 1000, "hostID": 900000, "size": 10}]),
     "its containerID range 1000-1009 overlaps linux.uidMappings[0]'s 0-65535"),
    (lambda c: _userns(c, gid_map=MAP + [{"containerID": 70000, "hostID": BASE + 65535, "size": 10}]),
     "linux.gidMappings[1]: its hostID range"),
    (lambda c: _userns(c, uid_map=_maps(hostID=4294967295 - 100)), "hostID 4294967195 and size 65536"),
    (lambda c: _userns(c, uid_map=_maps(hostID=-1)), "hostID -1"),
    (lambda c: _userns(c, uid_map=_maps(size=0)), "a size of at least 1"),
    (lambda c: _userns(c, uid_map=_maps(size="65536")), "linux.uidMappings[0].size"),
    (lambda c: (_userns(c), c["process"]["user"].update(uid=70000)), "container uid 70000"),
    (lambda c: (_userns(c), c["process"]["user"].update(additionalGids=[5, 65536])), "container gid 65536"),
])
def test_a_mapping_pyrun_cannot_honour_fails_create_and_leaves_nothing(busybox, tmp_path, edit, message, clean_host):
    bundle = make_bundle(str(tmp_path / "b"), busybox, ["true"], edit)
    shim = Shim(str(tmp_path), "--bundle", bundle, "--pid-file", str(tmp_path / "pid"), "uns9")
    try:
        assert shim.created() == 1
        shim.proc.wait(10)
        err = shim.proc.stderr.read().decode()
        assert message in err and err.count("\n") == 1, err
        assert not os.path.exists(tmp_path / "pid")
        assert leftovers("uns9") == []
    finally:
        shim.close()
        cleanup("uns9")


from test_oci_podman import podman  # noqa: E402,F401  (the fixture: podman in a throwaway PID and mount namespace)


@pytest.mark.skipif(not shutil.which("podman"), reason="podman is not installed: scripts/setup-engines")
def test_podman_run_with_uidmap(podman, busybox, tmp_path):
    """podman 4.3 hands --uidmap to the runtime as linux.uidMappings and a user namespace; it chowns an image's
    layers to the mapped ids, but not a --rootfs directory: here the test does, on a copy of its own."""
    mapped = str(tmp_path / "mapped")
    subprocess.run(["cp", "-a", busybox, mapped], check=True)
    subprocess.run(["chown", "-R", f"{BASE}:{BASE}", mapped], check=True)
    r = podman(f"""
        M="$(echo $O | sed 's| --rootfs .*||') --uidmap 0:{BASE}:65536 --gidmap 0:{BASE}:65536 --rootfs {mapped}"
        $P run --rm $M \\
            sh -c 'id -u; cat /proc/self/uid_map | tr -s " "; ls -ln /bin/busybox | tr -s " " | cut -d" " -f3'
        echo "exit $?"
        pid=$($P run -d $M sleep 60 | xargs $P inspect -f '{{{{.State.Pid}}}}')
        grep ^Uid: /proc/$pid/status | tr -s '\\t' ' '
        $P rm -f -t 0 -a >/dev/null; $P ps -a -q | wc -l
    """)
    assert r.stdout.splitlines() == ["0", f" 0 {BASE} 65536", "0", "exit 0", f"Uid: {BASE} {BASE} {BASE} {BASE}",
                                     "0"], r.stderr
