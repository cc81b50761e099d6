"""CVE-2021-30465 and relatives: a mount target that is a symlink in the rootfs made runc mount over a host path.

pyrun resolves every mount target (bind mounts, /proc, /dev, /sys) with
openat2(RESOLVE_IN_ROOT), so a symlink or '..' in the rootfs is followed
inside the rootfs only, and mounts through /proc/self/fd/N of what it opened.
A target whose symlink points nowhere inside is refused. The host is unchanged.
"""
import os

import pytest

from conftest import pyrun


def run_sh(rootfs, script, *options):
    return pyrun("run", "--rm", "--network", "none", *options, rootfs, "sh", "-c", script)


def _copy(busybox: str, where) -> str:
    rootfs = where / "rootfs"
    os.system(f"cp -a {busybox} {rootfs}")
    return rootfs


def _mounted_under(path) -> bool:
    return any(line.split()[4].startswith(str(path)) for line in open("/proc/self/mountinfo"))


def test_bind_target_symlink_cannot_escape(busybox, clean_host, tmp_path):
    """Symlinks in the rootfs are followed inside the rootfs, never out of it (CVE-2021-30465's class)."""
    escape = tmp_path / "escape-target"
    escape.mkdir()
    rootfs = _copy(busybox, tmp_path)
    os.symlink(str(escape), rootfs / "evil")           # absolute: names the host's directory
    os.symlink("../../../../../../..", rootfs / "up")  # relative: climbs past the rootfs
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    r = run_sh(str(rootfs), "ls /mnt2", "-v", f"{src}:/up/mnt2")
    assert (r.returncode, r.stdout) == (0, "f\n"), r.stderr  # '..' stops at the container's /
    r = run_sh(str(rootfs), "true", "-v", f"{src}:/evil/mnt")
    assert r.returncode == 125 and "/evil is a symlink" in r.stderr, r.stderr
    assert os.listdir(escape) == [], "a mount target was created on the host"


@pytest.mark.parametrize("path", ["proc", "dev", "sys"])
def test_rootfs_whose_special_directory_is_a_symlink_to_the_host(busybox, clean_host, tmp_path, path):
    host_dir = tmp_path / "host-dir"
    host_dir.mkdir()
    (host_dir / "keep").write_text("host data")
    rootfs = _copy(busybox, tmp_path)
    os.system(f"rm -rf {rootfs}/{path}")
    os.symlink(str(host_dir), rootfs / path)  # absolute: on the host it names host-dir
    r = run_sh(str(rootfs), "ls /proc/1 >/dev/null && echo ran")
    assert r.returncode in (0, 125), r.stderr
    if r.returncode == 125:
        assert len(r.stderr.splitlines()) == 1 and "symlink" in r.stderr, r.stderr
    assert os.listdir(host_dir) == ["keep"] and (host_dir / "keep").read_text() == "host data"
    assert not _mounted_under(host_dir)


def test_rootfs_whose_dev_null_is_a_symlink_to_a_host_file(busybox, clean_host, tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    rootfs = _copy(busybox, tmp_path)
    os.system(f"rm -f {rootfs}/dev/null")
    os.symlink(str(victim), rootfs / "dev" / "null")
    r = run_sh(str(rootfs), "echo overwritten > /dev/null; ls -l /dev/null")
    assert r.returncode == 0 and r.stdout.startswith("c"), r.stdout + r.stderr  # a fresh /dev: a real device
    assert victim.read_text() == "precious\n"
