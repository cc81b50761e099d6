"""features: what pyrun-oci supports, in runc's JSON, and each claim true of config.json."""
import json

from ocitools import oci


def test_features_prints_runcs_fields():
    r = oci("features")
    assert r.returncode == 0, r.stderr
    f = json.loads(r.stdout)
    assert f["ociVersionMin"] == "1.0.0" and f["ociVersionMax"].startswith("1.")
    assert {"ro", "nosuid", "rbind", "rprivate"} <= set(f["mountOptions"])
    assert sorted(f["linux"]["namespaces"]) == ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"]
    assert "CAP_SYS_ADMIN" in f["linux"]["capabilities"]
    assert f["linux"]["cgroup"]["systemd"] is False
    assert "SCMP_ACT_ERRNO" in f["linux"]["seccomp"]["actions"] and f["linux"]["seccomp"]["enabled"]
    assert isinstance(f["hooks"], list)
