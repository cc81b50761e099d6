"""CVE-2021-30465 and relatives: a mount target that is a symlink in the rootfs made runc mount over a host path.

pyrun resolves every mount target (bind mounts, /proc, /dev, /sys) with
openat2(RESOLVE_IN_ROOT), so a symlink or '..' in the rootfs is followed
inside the rootfs only, and mounts through /proc/self/fd/N of what it opened.
A target whose symlink points nowhere inside is refused. The host is unchanged.
Under --runtime pyrun resolves config.json's targets the same way before the
runtime reads it (oci/client.py), for runc's naive joins below /dev too.
"""
import os

import pytest

from conftest import RUNTIMES, pyrun


def run_sh(rootfs, script, *options, runtime="pyrun"):
    return pyrun("run", "--rm", "--runtime", runtime, "--network", "none", *options, rootfs, "sh", "-c", script)


def _copy(busybox: str, where) -> str:
    rootfs = where / "rootfs"
    os.system(f"cp -a {busybox} {rootfs}")
    return rootfs


def _mounted_under(path) -> bool:
    return any(line.split()[4].startswith(str(path)) for line in open("/proc/self/mountinfo"))


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_bind_target_symlink_cannot_escape(runtime, busybox, clean_host, tmp_path):
    """Symlinks in the rootfs are followed inside the rootfs, never out of it (CVE-2021-30465's class)."""
    escape = tmp_path / "escape-target"
    escape.mkdir()
    rootfs = _copy(busybox, tmp_path)
    os.symlink(str(escape), rootfs / "evil")           # absolute: names the host's directory
    os.symlink("../../../../../../..", rootfs / "up")  # relative: climbs past the rootfs
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    r = run_sh(str(rootfs), "ls /mnt2", "-v", f"{src}:/up/mnt2", runtime=runtime)
    assert (r.returncode, r.stdout) == (0, "f\n"), r.stderr  # '..' stops at the container's /
    r = run_sh(str(rootfs), "true", "-v", f"{src}:/evil/mnt", runtime=runtime)
    assert r.returncode == 125 and "/evil is a symlink" in r.stderr, r.stderr
    assert os.listdir(escape) == [], "a mount target was created on the host"


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("path", ["proc", "dev", "sys"])
def test_rootfs_whose_special_directory_is_a_symlink_to_the_host(runtime, busybox, clean_host, tmp_path, path):
    host_dir = tmp_path / "host-dir"
    host_dir.mkdir()
    (host_dir / "keep").write_text("host data")
    rootfs = _copy(busybox, tmp_path)
    os.system(f"rm -rf {rootfs}/{path}")
    os.symlink(str(host_dir), rootfs / path)  # absolute: on the host it names host-dir
    r = run_sh(str(rootfs), "ls /proc/1 >/dev/null && echo ran", runtime=runtime)
    assert r.returncode in (0, 125), r.stderr
    if r.returncode == 125:
        assert len(r.stderr.splitlines()) == 1 and "symlink" in r.stderr, r.stderr
    assert os.listdir(host_dir) == ["keep"] and (host_dir / "keep").read_text() == "host data"
    assert not _mounted_under(host_dir)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_rootfs_whose_dev_null_is_a_symlink_to_a_host_file(runtime, busybox, clean_host, tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    rootfs = _copy(busybox, tmp_path)
    os.system(f"rm -f {rootfs}/dev/null")
    os.symlink(str(victim), rootfs / "dev" / "null")
    r = run_sh(str(rootfs), "echo overwritten > /dev/null; ls -l /dev/null", runtime=runtime)
    assert r.returncode == 0 and r.stdout.startswith("c"), r.stdout + r.stderr  # a fresh /dev: a real device
    assert victim.read_text() == "precious\n"
