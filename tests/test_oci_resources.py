"""linux.resources and cgroupsPath: the limits land in the container's cgroup, which delete removes."""
import glob

from conftest import CGROUP_PARENT
from ocitools import Shim, cleanup, leftovers, make_bundle, oci


def test_memory_cpu_and_pids_limits_are_written_to_the_containers_cgroup(busybox, tmp_path, clean_host):
    def edit(c):
        c["linux"]["resources"].update(memory={"limit": 64 << 20}, cpu={"quota": 50000, "period": 100000},
                                       pids={"limit": 20})
    bundle = make_bundle(str(tmp_path / "b"), busybox, ["sleep", "60"], edit)
    shim = Shim(str(tmp_path), "--bundle", bundle, "--pid-file", str(tmp_path / "pid"), "res1")
    try:
        assert shim.created() == 0, shim.proc.stderr.read()
        pid = int((tmp_path / "pid").read_text())
        base = f"/sys/fs/cgroup/%s/{CGROUP_PARENT}/res1/%s"
        assert int(open(base % ("memory", "memory.limit_in_bytes")).read()) == 64 << 20
        assert open(base % ("cpu", "cpu.cfs_quota_us")).read().strip() == "50000"
        assert open(base % ("pids", "pids.max")).read().strip() == "20"
        assert str(pid) in open(base % ("memory", "cgroup.procs")).read().split()  # PID 1 was born in it
        assert oci("delete", "--force", "res1").returncode == 0
        assert leftovers("res1") == []
    finally:
        shim.close()
        cleanup("res1")


def test_cgroups_path_places_the_cgroup(busybox, tmp_path):
    bundle = make_bundle(str(tmp_path / "b"), busybox, ["true"],
                         lambda c: c["linux"].update(cgroupsPath=f"/{CGROUP_PARENT}/pod-a/res2"))
    shim = Shim(str(tmp_path), "--bundle", bundle, "res2")
    try:
        assert shim.created() == 0, shim.proc.stderr.read()
        assert glob.glob(f"/sys/fs/cgroup/memory/{CGROUP_PARENT}/pod-a/res2/")
        assert oci("delete", "res2").returncode == 0
        assert not glob.glob(f"/sys/fs/cgroup/*/{CGROUP_PARENT}/pod-a/res2/")
    finally:
        shim.close()
        cleanup("res2")
        for d in glob.glob(f"/sys/fs/cgroup/*/{CGROUP_PARENT}/pod-a/"):  # the parent it asked for stays, as runc's
            import os
            os.rmdir(d)


def test_device_rules_come_before_pyruns_allowlist(busybox, tmp_path):
    """containerd's configs list the devices they allow; pyrun writes them, then its own allowlist, as runc."""
    def edit(c):
        c["linux"]["resources"]["devices"] = [{"allow": False, "access": "rwm"},
                                              {"allow": True, "type": "c", "major": 10, "minor": 200, "access": "rw"}]
    bundle = make_bundle(str(tmp_path / "b"), busybox, ["true"], edit)
    shim = Shim(str(tmp_path), "--bundle", bundle, "res3")
    try:
        assert shim.created() == 0, shim.proc.stderr.read()
        rules = open(f"/sys/fs/cgroup/devices/{CGROUP_PARENT}/res3/devices.list").read().split("\n")
        assert "c 10:200 rw" in rules and "c 1:3 rwm" in rules and "a *:* rwm" not in rules
    finally:
        shim.close()
        cleanup("res3")
