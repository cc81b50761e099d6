"""-v SRC:DST:ro is read-only all the way down, as Docker 25+ makes it.

A bind mount made read-only with MS_REMOUNT|MS_RDONLY changes only its top
mount: whatever is mounted below SRC on the host stays writable inside. With
`-v /:/host:ro` that is /host/proc/sys/kernel/core_pattern, a host escape.
pyrun sets the flag on every mount of the tree with mount_setattr(2).
"""
import contextlib
import os
import subprocess

import pytest

from conftest import RUNTIMES, pyrun


@contextlib.contextmanager
def tree_with_submount(tmp_path):
    """SRC with a tmpfs mounted at SRC/sub, in the test's own mount namespace (conftest.py)."""
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(src / "sub")], check=True)
    try:
        yield src
    finally:
        subprocess.run(["umount", str(src / "sub")], check=True)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_mount_below_a_read_only_bind_is_read_only_too(runtime, busybox, clean_host, tmp_path):
    with tree_with_submount(tmp_path) as src:
        r = pyrun("run", "--rm", "--runtime", runtime, "--network", "none", "-v", f"{src}:/data:ro", busybox,
                  "sh", "-c",
                  "echo pwned > /data/sub/planted; echo pwned > /data/top; grep ' /data' /proc/mounts")
        assert r.stderr.count("Read-only file system") == 2, r.stderr
        assert os.listdir(src / "sub") == [] and os.listdir(src) == ["sub"]
        assert [line.split()[3].split(",")[0] for line in r.stdout.splitlines()] == ["ro", "ro"], r.stdout


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_the_hosts_proc_under_a_read_only_root_bind_is_not_writable(runtime, busybox, clean_host):
    """The issue's example, probed by opening core_pattern for writing (busybox's test -w trusts root):
    nothing is ever written to it."""
    r = pyrun("run", "--rm", "--runtime", runtime, "--network", "none", "-v", "/:/host:ro", busybox, "sh", "-c",
              "(: >> /host/proc/sys/kernel/core_pattern) 2>/dev/null && echo writable || echo read-only")
    assert (r.returncode, r.stdout) == (0, "read-only\n"), r.stderr


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_writable_bind_keeps_its_submounts_writable(runtime, busybox, clean_host, tmp_path):
    with tree_with_submount(tmp_path) as src:
        r = pyrun("run", "--rm", "--runtime", runtime, "--network", "none", "-v", f"{src}:/data", busybox, "sh", "-c",
                  "echo ok > /data/sub/written")
        assert r.returncode == 0, r.stderr
        assert (src / "sub" / "written").read_text() == "ok\n"
