"""No path is ever parsed as mount options.

overlayfs takes its layers in one string: options split at ',' and lowerdir
at ':'. A rootfs whose path holds either, pasted in, adds layers or options of
its own choosing: below, a rootfs named like an image (`img:tag`) stacks a
host directory under the container's root, and one holding ',' replaces the
lowerdir. pyrun gives overlayfs /proc/self/fd/N of directories it opened, so
the path is resolved, never split. The same holds for --root's path (the
upper and work directories).
"""
import os
import shutil

import pytest

from conftest import pyrun

# Every guarantee here is the runtime's to keep: each test runs under each (conftest.RUNTIMES).
pytestmark = pytest.mark.usefixtures("each_runtime")

MARKER = "host-only secret\n"


def _rootfs_at(busybox: str, path) -> str:
    shutil.copytree(busybox, path, symlinks=True)
    return str(path)


def _host_secret(tmp_path) -> str:
    secret = tmp_path / "host-secret"
    secret.mkdir()
    (secret / "marker").write_text(MARKER)
    return str(secret)


def _reads_marker(rootfs: str, *options: str) -> str:
    r = pyrun(*options, "run", "--rm", "--network", "none", rootfs, "sh", "-c", "cat /marker 2>/dev/null; echo ran")
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_a_colon_in_the_rootfs_path_adds_no_layer(busybox, clean_host, tmp_path):
    secret = _host_secret(tmp_path)
    _rootfs_at(busybox, tmp_path / "img")  # what "img:<secret>" would split into, and the host's directory
    rootfs = _rootfs_at(busybox, tmp_path / f"img:{secret}")  # a real directory: "img:" then secret's path
    assert _reads_marker(rootfs) == "ran\n"


def test_a_comma_in_the_rootfs_path_adds_no_option(busybox, clean_host, tmp_path):
    secret = _host_secret(tmp_path)
    other = _rootfs_at(busybox, tmp_path / "other")
    (tmp_path / "r").mkdir()
    rootfs = _rootfs_at(busybox, tmp_path / f"r,lowerdir={other}:{secret}")
    assert _reads_marker(rootfs) == "ran\n"


def test_a_state_root_with_a_comma_and_a_colon_works(busybox, clean_host, tmp_path):
    root = tmp_path / "state,x:y"
    assert _reads_marker(busybox, "--root", str(root)) == "ran\n"
    assert os.listdir(root / "containers") == []
