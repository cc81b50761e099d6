"""The user's rootfs is never modified, read-only or not.

With --read-only pyrun still has to make mount points for -v, the -w
directory and a missing /etc/hostname; they must not land in the image
directory. Checked from the host: a recursive listing of the rootfs with
every inode's mode, owner, size, mtime and ctime, before and after.
"""
import os
import shutil

import pytest

from conftest import pyrun

# Every guarantee here is the runtime's to keep: each test runs under each (conftest.RUNTIMES).
pytestmark = pytest.mark.usefixtures("each_runtime")


def _snapshot(top: str) -> list[tuple]:
    out = []
    for here, dirs, files in os.walk(top):
        for name in [""] + sorted(dirs) + sorted(files):
            path = os.path.join(here, name)
            st = os.lstat(path)
            link = os.readlink(path) if os.path.islink(path) else None
            out.append((os.path.relpath(path, top), st.st_mode, st.st_uid, st.st_gid, st.st_size,
                        st.st_mtime_ns, st.st_ctime_ns, link))
    return out


@pytest.mark.parametrize("read_only", [True, False], ids=["read-only", "writable"])
def test_the_rootfs_is_never_written(busybox, clean_host, tmp_path, read_only):
    rootfs = tmp_path / "rootfs"
    shutil.copytree(busybox, rootfs, symlinks=True)
    os.unlink(rootfs / "etc" / "hostname")
    data = tmp_path / "data"
    data.mkdir()
    (tmp_path / "one-file").write_text("bound\n")
    before = _snapshot(str(rootfs))
    r = pyrun("run", "--rm", "--network", "none", *(["--read-only"] if read_only else []),
              "-v", f"{data}:/new/mount/point", "-v", f"{tmp_path}/one-file:/etc/new-file:ro", "-w", "/newdir",
              str(rootfs), "sh", "-c", "pwd; cat /etc/hostname /etc/new-file >/dev/null; echo x > /written; true")
    assert r.returncode == 0 and r.stdout == "/newdir\n", r.stdout + r.stderr
    assert ("Read-only file system" in r.stderr) == read_only, r.stderr
    assert _snapshot(str(rootfs)) == before
