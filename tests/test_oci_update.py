"""update --resources: new memory, cpu and pids limits for a running container, from a file or stdin."""
import json

import pytest

from conftest import CGROUP_PARENT
from ocitools import oci, running


def _cg(controller: str, cid: str, name: str) -> str:
    return open(f"/sys/fs/cgroup/{controller}/{CGROUP_PARENT}/{cid}/{name}").read().strip()


def test_update_from_a_file_and_from_stdin(busybox, tmp_path):
    with running(busybox, str(tmp_path), "up1", ["sleep", "60"]):
        (tmp_path / "r.json").write_text(json.dumps({"memory": {"limit": 64 << 20}, "cpu": {"quota": 50000}}))
        r = oci("update", "--resources", str(tmp_path / "r.json"), "up1")
        assert r.returncode == 0, r.stderr
        assert _cg("memory", "up1", "memory.limit_in_bytes") == str(64 << 20)
        assert _cg("cpu", "up1", "cpu.cfs_quota_us") == "50000"
        r = oci("update", "--resources", "-", "up1", input=json.dumps({"pids": {"limit": 7}}))
        assert r.returncode == 0, r.stderr
        assert _cg("pids", "up1", "pids.max") == "7"
        assert _cg("memory", "up1", "memory.limit_in_bytes") == str(64 << 20)  # left out: left as it was


def test_a_lowered_pids_limit_holds_inside_the_container(busybox, tmp_path):
    with running(busybox, str(tmp_path), "up2", ["sleep", "60"]):
        assert oci("update", "-r", "-", "up2", input='{"pids": {"limit": 4}}').returncode == 0
        r = oci("exec", "up2", "sh", "-c", "for i in 1 2 3 4 5 6; do sleep 5 & done 2>&1; kill $(jobs -p) 2>/dev/null")
        assert "can't fork" in r.stdout + r.stderr or "Resource temporarily unavailable" in r.stdout + r.stderr


@pytest.mark.parametrize("resources,message", [
    ({"memory": {"swap": 1}}, "linux.resources.memory.swap"),
    ({"devices": [{"allow": True, "access": "rwm"}]}, "fixed at create"),
    ({"blockIO": {"weight": 10}}, "linux.resources.blockIO"),
])
def test_update_refuses_what_it_cannot_set(busybox, tmp_path, resources, message):
    with running(busybox, str(tmp_path), "up3", ["sleep", "60"]):
        r = oci("update", "-r", "-", "up3", input=json.dumps(resources))
        assert r.returncode == 1 and message in r.stderr, r.stderr
