"""config.json's root and mounts: binds with their options, tmpfs, the cgroup tree, readonly and masked paths."""
import os

from ocitools import make_bundle, run_bundle


def _run(busybox, tmp_path, script: str, edit=None) -> tuple[int, str, str]:
    bundle = make_bundle(str(tmp_path / "b"), busybox, ["sh", "-c", script], edit)
    return run_bundle(bundle, str(tmp_path), "mnt1")


def _mount(dest: str, kind: str, source: str, *options: str):
    return lambda c: c["mounts"].append({"destination": dest, "type": kind, "source": source,
                                         "options": list(options)})


def test_bind_mounts_honour_ro_and_rw(busybox, tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "f").write_text("host\n")

    def edit(c):
        _mount("/ro", "bind", str(tmp_path / "data"), "rbind", "ro")(c)
        _mount("/rw", "bind", str(tmp_path / "data"), "bind", "nosuid")(c)
    code, out, err = _run(busybox, tmp_path, "cat /ro/f; echo x > /ro/g || echo refused; echo written > /rw/g", edit)
    assert code == 0, err
    assert out == "host\nrefused\n"
    assert (tmp_path / "data" / "g").read_text() == "written\n"


def test_a_relative_bind_source_is_the_bundles(busybox, tmp_path):
    def edit(c):
        c["mounts"].append({"destination": "/etc/greeting", "type": "bind", "source": "greeting",
                            "options": ["bind", "ro"]})
    bundle = make_bundle(str(tmp_path / "b"), busybox, ["cat", "/etc/greeting"], edit)
    (tmp_path / "b" / "greeting").write_text("from the bundle\n")
    code, out, err = run_bundle(bundle, str(tmp_path), "mnt2")
    assert (code, out) == (0, "from the bundle\n"), err


def test_tmpfs_with_its_options(busybox, tmp_path):
    code, out, err = _run(busybox, tmp_path, "grep ' /scratch ' /proc/mounts",
                          _mount("/scratch", "tmpfs", "tmpfs", "nosuid", "nodev", "size=1m", "mode=750"))
    assert code == 0, err
    source, target, kind, options = out.split()[:4]
    assert (target, kind) == ("/scratch", "tmpfs")
    assert {"nosuid", "nodev", "size=1024k", "mode=750"} <= set(options.split(","))


def test_readonly_root(busybox, tmp_path):
    code, out, err = _run(busybox, tmp_path, "touch /x || echo refused; touch /dev/shm/ok && echo shm ok",
                          lambda c: c["root"].update(readonly=True))
    assert (code, out) == (0, "refused\nshm ok\n"), err
    assert not os.path.exists(tmp_path / "b" / "rootfs" / "x")


def test_masked_and_readonly_paths_are_the_configs(busybox, tmp_path):
    def edit(c):
        c["linux"]["maskedPaths"] = ["/proc/kcore", "/etc/secret"]
        c["linux"]["readonlyPaths"] = ["/proc/sys"]
    bundle = make_bundle(str(tmp_path / "b"), busybox, ["sh", "-c", "cat /etc/secret; echo 1 > "
                                                        "/proc/sys/kernel/ns_last_pid || echo refused"], edit)
    (tmp_path / "b" / "rootfs" / "etc" / "secret").write_text("hidden\n")
    code, out, err = run_bundle(bundle, str(tmp_path), "mnt3")
    assert (code, out) == (0, "refused\n"), err


def test_the_cgroup_mount_shows_the_containers_own_cgroup(busybox, tmp_path):
    def edit(c):
        c["linux"]["resources"]["memory"] = {"limit": 50 << 20}
    code, out, err = _run(busybox, tmp_path, "cat /sys/fs/cgroup/memory/memory.limit_in_bytes; "
                                             "echo 1 > /sys/fs/cgroup/memory/memory.limit_in_bytes || echo refused",
                          edit)
    assert (code, out) == (0, f"{50 << 20}\nrefused\n"), err
