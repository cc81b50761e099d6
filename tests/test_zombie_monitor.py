"""A killed monitor that nobody has reaped yet is dead, not running (issue 14)."""
import json
import os
import signal
import subprocess
import sys

from conftest import REPO, STATE_ROOT, pyrun, sh, wait_for

# A parent that adopts what its children leave behind (a child subreaper, as a service manager or a
# container engine is) and never reaps it: the monitor of the `pyrun run -d` it runs becomes its child.
NEGLECTFUL_PARENT = f"""
import ctypes, subprocess, sys, time
ctypes.CDLL(None).prctl(36, 1)  # PR_SET_CHILD_SUBREAPER
r = subprocess.run([sys.executable, "-m", "runtime", *sys.argv[1:]], cwd={REPO!r}, capture_output=True, text=True)
print(r.returncode, r.stdout.strip(), r.stderr.strip(), flush=True)
time.sleep(600)
"""


def stat_of(pid: int) -> list[str]:
    """/proc/PID/stat after the command name: state, parent, ..."""
    return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()


def test_a_zombie_monitor_is_dead_and_its_container_cleaned_up(busybox, clean_host):
    parent = subprocess.Popen([sys.executable, "-c", NEGLECTFUL_PARENT, "run", "-d", "--name", "undead",
                               "-p", "8130:8000", busybox, "sleep", "300"], stdout=subprocess.PIPE, text=True)
    try:
        code, cid, err = (parent.stdout.readline().rstrip("\n").split(" ", 2) + [""])[:3]
        assert code == "0", err
        monitor = json.load(open(os.path.join(STATE_ROOT, "containers", cid, "state.json")))["Monitor"]["Pid"]
        assert stat_of(monitor)[1] == str(parent.pid)  # adopted when `pyrun run -d` exited
        os.kill(monitor, signal.SIGKILL)
        wait_for(lambda: stat_of(monitor)[0] == "Z", what="the monitor to be a zombie")

        [row] = [line for line in pyrun("ps", "-a").stdout.splitlines() if line.startswith("undead ")]
        assert row.split()[2] == "dead", row
        assert "pyrun:" in sh("iptables-save").stdout  # its rules are still there...
        r = pyrun("run", "--rm", "--network", "none", busybox, "true")  # ...until the next run reconciles
        assert r.returncode == 0 and r.stderr == "", r.stderr
        assert "pyrun:" not in sh("iptables-save").stdout
        assert stat_of(monitor)[0] == "Z"  # still unreaped: pyrun decided from the kernel's word, not the pid's
        assert pyrun("rm", "undead").returncode == 0
    finally:
        parent.kill()  # its zombies go to init, which reaps them
        parent.wait()
