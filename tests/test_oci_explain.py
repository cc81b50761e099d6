"""pyrun-oci create --explain: the script for a bundle makes the container create and start make.

The same bundle twice: once by pyrun-oci create and start, once by the
explained script, run with bash. The container's program sees the same ids,
hostname, environment, cwd, capability sets, no_new_privs, rlimits, mounts
with ro/rw, and read-only root; the explained teardown leaves the host as
delete does.
"""
import json
import os
import subprocess

import pytest
from conftest import snapshot
from ocitools import OCI_ROOT, make_bundle, oci, run_bundle

from runtime.explain import TEARDOWN

PROBE = r"""
echo "ids $(id -u) $(id -g) $(id -G)"
echo "hostname $(hostname)"
env | grep -v -e '^PWD=' -e '^SHLVL=' -e '^_=' | sort | sed 's/^/env /'
echo "cwd $(pwd)"
grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs):' /proc/self/status | tr -d '\t' | sed 's/^/status /'
echo "nofile $(ulimit -Sn) $(ulimit -Hn)"
awk '{print "mount", $5, substr($6, 1, 2)}' /proc/self/mountinfo | sort
if touch /written 2>/dev/null; then echo "root rw"; else echo "root ro"; fi
if [ -e /data/marker ]; then echo "bind seen"; fi
"""

CASES = {
    "root, limits, mounts": lambda c, data: (
        c["process"].update(env=["PATH=/usr/bin:/bin", "GREETING=hello there"], cwd="/srv/work",
                            rlimits=[{"type": "RLIMIT_NOFILE", "soft": 123, "hard": 456}]),
        c["process"]["capabilities"].update(bounding=["CAP_CHOWN", "CAP_KILL", "CAP_SETUID", "CAP_SETGID",
                                                      "CAP_SETPCAP"],
                                            effective=["CAP_CHOWN", "CAP_KILL", "CAP_SETUID", "CAP_SETGID",
                                                       "CAP_SETPCAP"],
                                            permitted=["CAP_CHOWN", "CAP_KILL", "CAP_SETUID", "CAP_SETGID",
                                                       "CAP_SETPCAP"]),
        c["root"].update(readonly=True), c.update(hostname="explained"),
        c["mounts"].extend([{"destination": "/data", "type": "bind", "source": data, "options": ["rbind", "ro"]},
                            {"destination": "/scratch", "type": "tmpfs", "source": "tmpfs",
                             "options": ["nosuid", "size=1m"]}])),
    "a user with groups": lambda c, data: (
        c["process"].update(user={"uid": 1000, "gid": 1000, "additionalGids": [5, 7]}, noNewPrivileges=False),
        c["root"].update(readonly=False)),
}


def _bundle(debian: str, path: str, case: str, data: str) -> str:
    return make_bundle(path, debian, ["sh", "-c", PROBE], lambda c: CASES[case](c, data))


@pytest.mark.parametrize("case", CASES)
def test_the_explained_script_makes_the_container_create_makes(case, debian, tmp_path, clean_host):
    data = tmp_path / "data"
    data.mkdir()
    (data / "marker").write_text("x")
    code, made, err = run_bundle(_bundle(debian, str(tmp_path / "real"), case, str(data)), str(tmp_path), "xreal")
    assert code == 0, err

    bundle = _bundle(debian, str(tmp_path / "byhand"), case, str(data))
    before = snapshot()
    r = oci("create", "--explain", "--bundle", bundle, "xhand")
    assert r.returncode == 0, r.stderr
    assert snapshot() == before and not os.path.exists(f"{OCI_ROOT}/containers/xhand")  # explain changed nothing
    setup, teardown = r.stdout.split(TEARDOWN)
    s = subprocess.run(["bash", "-c", setup], capture_output=True, text=True, timeout=60)
    t = subprocess.run(["bash", "-c", teardown], capture_output=True, text=True, timeout=60)
    assert s.returncode == 0, s.stderr
    assert t.returncode == 0, t.stderr
    mine, theirs = sorted(made.splitlines()), sorted(s.stdout.splitlines())
    assert theirs == mine, f"only create's: {sorted(set(mine) - set(theirs))}; " \
                           f"only the script's: {sorted(set(theirs) - set(mine))}"
    facts = "\n".join(mine)
    if case == "root, limits, mounts":
        assert "hostname explained" in facts and "root ro" in facts and "nofile 123 456" in facts
        assert "mount /data ro" in facts and "bind seen" in facts and "env GREETING=hello there" in facts
    else:
        assert "ids 1000 1000 1000 5 7" in facts and "status NoNewPrivs:0" in facts, facts


def test_explain_refuses_what_create_refuses(debian, tmp_path, clean_host):
    """A bad config.json is the same one-line error, and nothing is made."""
    bundle = _bundle(debian, str(tmp_path / "bad"), "a user with groups", str(tmp_path))
    with open(os.path.join(bundle, "config.json")) as f:
        config = json.load(f)
    config["process"]["capabilities"]["bounding"] = ["CAP_NO_SUCH"]
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(config, f)
    r = oci("create", "--explain", "--bundle", bundle, "xbad")
    create = oci("create", "--bundle", bundle, "xbad")
    assert r.returncode == create.returncode == 1 and r.stdout == ""
    assert "CAP_NO_SUCH" in r.stderr and r.stderr == create.stderr and len(r.stderr.splitlines()) == 1


def test_the_explained_hooks_get_the_state_as_json(debian, tmp_path, clean_host):
    seen = tmp_path / "prestart.json"
    bundle = _bundle(debian, str(tmp_path / "hooks"), "a user with groups", str(tmp_path))
    with open(os.path.join(bundle, "config.json")) as f:
        config = json.load(f)
    config["hooks"] = {"prestart": [{"path": "/bin/sh", "args": ["sh", "-c", f"cat > {seen}"]}]}
    config["process"]["args"] = ["true"]
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(config, f)
    setup, teardown = oci("create", "--explain", "--bundle", bundle, "xhook").stdout.split(TEARDOWN)
    s = subprocess.run(["bash", "-c", setup], capture_output=True, text=True, timeout=60)
    subprocess.run(["bash", "-c", teardown], capture_output=True, text=True, timeout=60)
    assert s.returncode == 0, s.stderr
    state = json.loads(seen.read_text())
    assert state["id"] == "xhook" and state["pid"] > 1 and state["bundle"] == bundle and state["status"] == "created"
