"""ps: the processes in the container's cgroup, as JSON for containerd's shim or as a `ps -ef` table."""
import json

from ocitools import oci, running


def test_ps_lists_every_process_in_the_cgroup_and_only_those(busybox, tmp_path):
    with running(busybox, str(tmp_path), "ps1", ["sh", "-c", "sleep 61 & sleep 62 & wait"]) as (shim, pid):
        # exec'd over sh's redirection: a detached process keeps no end of the test's pipes
        r = oci("exec", "--detach", "ps1", "sh", "-c", "exec sleep 63 >/dev/null 2>&1")
        assert r.returncode == 0, r.stderr
        pids = json.loads(oci("ps", "--format", "json", "ps1").stdout)
        commands = sorted(open(f"/proc/{p}/cmdline").read().replace("\0", " ").strip() for p in pids)
        assert commands == ["sh -c sleep 61 & sleep 62 & wait", "sleep 61", "sleep 62", "sleep 63"]
        assert pid in pids
        table = oci("ps", "ps1").stdout.splitlines()
        assert table[0].split()[:2] == ["UID", "PID"] and len(table) == 5
        assert sorted(int(line.split()[1]) for line in table[1:]) == sorted(pids)
        r = oci("ps", "ps1", "-o", "pid,comm")
        assert r.stdout.split()[:2] == ["PID", "COMMAND"] and len(r.stdout.splitlines()) == 5, r.stderr


def test_ps_of_an_unknown_container():
    r = oci("ps", "nosuch")
    assert (r.returncode, r.stderr) == (1, 'pyrun-oci: container "nosuch" does not exist\n')
