"""CVE-2019-5736: a container process reopened the runtime's own binary through /proc/PID/exe and overwrote it.

pyrun's processes that enter a container (the --init reaper, and exec's
process until it execs) run the host's Python interpreter. They make
themselves non-dumpable before they join or make the namespaces, so the
kernel refuses other processes /proc/PID/exe, and the interpreter on the
host cannot be reached, let alone written.
"""
import hashlib
import os
import sys

from conftest import pyrun, pyrun_bg, wait_for

ATTACK = r"""
import os, sys
results = []
for how in ("readlink", "open O_PATH", "open O_WRONLY", "open O_RDONLY"):
    try:
        if how == "readlink":
            os.readlink("/proc/1/exe")
        else:
            flags = {"open O_PATH": os.O_PATH, "open O_WRONLY": os.O_WRONLY, "open O_RDONLY": os.O_RDONLY}[how]
            os.close(os.open("/proc/1/exe", flags))
        results.append(how + ": ALLOWED")
    except OSError as e:
        results.append(how + ": " + e.strerror)
print("\n".join(results))
"""


def _digest(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_the_init_reaper_running_hosts_python_cannot_be_reopened(debian, clean_host):
    interpreter = os.path.realpath(sys.executable)
    before = _digest(interpreter)
    # The built-in's --init keeps pyrun's Python as PID 1 inside the container: exactly the process the attack
    # reopens. (Through an OCI runtime PID 1 is tini, the container's own copy: test_runtime_attacks.py.)
    r = pyrun("run", "--rm", "--runtime", "pyrun", "--init", "--network", "none", debian, "python", "-c", ATTACK)
    assert r.returncode == 0, r.stderr
    assert "ALLOWED" not in r.stdout and r.stdout.count("Permission denied") == 4, r.stdout
    assert _digest(interpreter) == before


WATCHER = r"""
import os
target = tuple(map(int, os.environ["HOST_INTERPRETER"].split(":")))  # (st_dev, st_ino), from the host
escapes = []
print("watching", flush=True)
while not os.path.exists("/tmp/stop"):  # the test makes it once its execs are done
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) in (1, os.getpid()):
            continue
        try:
            fd = os.open(f"/proc/{pid}/exe", os.O_PATH)
        except OSError:
            continue  # EACCES: a non-dumpable pyrun process; ENOENT: gone
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) == target:
            escapes.append(pid)  # the host's interpreter, reopened from inside the container
        os.close(fd)
print("escapes:", escapes)
"""


def test_processes_entering_with_exec_cannot_be_reopened(debian, clean_host):
    interpreter = os.path.realpath(sys.executable)
    before = _digest(interpreter)
    st = os.stat(interpreter)
    p = pyrun_bg("run", "--rm", "--network", "none", "-e", f"HOST_INTERPRETER={st.st_dev}:{st.st_ino}", debian,
                 "python", "-c", WATCHER)
    try:
        assert p.stdout.readline() == "watching\n"
        name = wait_for(lambda: [r for r in ps_names() if r], what="the watcher")[0]
        for _ in range(15):  # each exec passes through the container as a copy of pyrun's Python
            assert pyrun("exec", name, "true").returncode == 0
        assert pyrun("exec", name, "touch", "/tmp/stop").returncode == 0
        out, _ = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    assert out.strip() == "escapes: []"
    assert _digest(interpreter) == before


def ps_names() -> list[str]:
    return [line.split()[0] for line in pyrun("ps").stdout.splitlines()[1:]]
