"""A container fills its writable layer to defeat the host's teardown; one container's broken teardown
must not stop any other command (issue 11)."""
import glob
import json
import os
import signal
import tempfile

import pytest

from conftest import STATE_ROOT, pyrun, sh, snapshot, wait_for

# Every guarantee here is the runtime's to keep: each test runs under each (conftest.RUNTIMES).
pytestmark = pytest.mark.usefixtures("each_runtime")

# Every line is something that has stopped a naive `rm -r` somewhere: depth past PATH_MAX and past
# Python's recursion limit, symlinks to the host's files, a FIFO and a device node (never to be opened),
# 20,000 files, names with newlines, directories nobody may enter, a whiteout, a hard link.
NASTIES = r"""
set -e
p=; i=0; while [ $i -lt 1500 ]; do p=$p/d; i=$((i+1)); done
mkdir -p /a$p /b$p; cd /a$p
ln -s {canary} link; ln -s {canary}/keep file-link; ln -s / root; mkfifo fifo
cd /; mv /a /b$p/; mv /b /deep  # 3002 levels, 6000 characters: no path can name the bottom
ln -s {canary} /escape; mkdir /dir-of-links; ln -s {canary} /dir-of-links/d
mkdir /many; cd /many; seq 20000 | xargs touch; cd /
mkdir "/new$(printf '\nline')"; touch "/new$(printf '\nline')/$(printf 'a\nb')"
mkdir -p /locked/inner; touch /locked/inner/f; chmod 000 /locked/inner/f /locked/inner /locked
mkfifo /fifo; mknod /disk b 8 0 2>/dev/null || true
rm /etc/passwd; ln /bin/busybox /hardlink
echo done
"""


@pytest.fixture
def canary():
    """A host directory the container's symlinks point at: teardown must leave it alone."""
    path = tempfile.mkdtemp(prefix="pyrun-canary-")
    open(os.path.join(path, "keep"), "w").close()
    yield path
    os.unlink(os.path.join(path, "keep"))
    os.rmdir(path)


def record_of(name: str) -> dict:
    return next(r for r in map(json.load, map(open, glob.glob(f"{STATE_ROOT}/containers/*/state.json")))
                if r["Name"] == name)


def layer_of(name: str) -> str:
    return os.path.join(STATE_ROOT, "containers", record_of(name)["Id"], "layer")


@pytest.mark.parametrize("detach", [False, True], ids=["foreground", "detached"])
def test_nothing_in_the_layer_defeats_its_removal(busybox, canary, clean_host, detach):
    args = ["-d"] if detach else []
    r = pyrun("run", *args, "--name", "nasty", "--network", "none", busybox, "sh", "-c",
              NASTIES.format(canary=canary), timeout=120)
    assert r.returncode == 0, r.stderr
    if detach:
        wait_for(lambda: record_of("nasty")["State"]["Status"] == "exited", timeout=60,
                 what="the container's teardown")
    else:
        assert r.stdout == "done\n" and r.stderr == ""
    assert not os.path.exists(layer_of("nasty"))  # seen from the host: the whole layer is gone
    assert os.listdir(canary) == ["keep"]
    r = pyrun("rm", "nasty")
    assert r.returncode == 0 and r.stderr == "", r.stderr


def test_chattr_flags_do_not_pin_the_layer(debian, canary, clean_host):
    # CAP_LINUX_IMMUTABLE is not in the default set; given it, a container can make its files undeletable.
    script = ("set -e; mkdir -p /frozen/d; touch /frozen/f /frozen/d/x /frozen/log; chattr +i /frozen/d /frozen/f; "
              "chattr +a /frozen/log; chattr +i /; lsattr -d /frozen/f / | cut -c5")
    default = pyrun("run", "--rm", "--network", "none", debian, "sh", "-c", script)
    assert default.returncode != 0 and "Operation not permitted" in default.stderr
    r = pyrun("run", "--name", "frozen", "--cap-add", "LINUX_IMMUTABLE", "--network", "none", debian,
              "sh", "-c", script)
    assert r.returncode == 0 and r.stdout == "i\ni\n" and r.stderr == "", r.stderr
    assert not os.path.exists(layer_of("frozen"))
    assert pyrun("rm", "frozen").returncode == 0


def test_one_broken_teardown_does_not_stop_the_others(busybox, clean_host):
    """Nothing a container writes makes its undo fail any more, so the host breaks its journal instead."""
    before = clean_host
    ids = {}
    for name in ("broken", "fine"):
        r = pyrun("run", "-d", "--name", name, "-p", f"{8110 + len(ids)}:8000", busybox, "sleep", "300")
        assert r.returncode == 0, r.stderr
        ids[name] = r.stdout.strip()
    cdir = os.path.join(STATE_ROOT, "containers", ids["broken"])
    with open(os.path.join(cdir, "journal"), "a") as f:
        # Not JSON; a kind nobody knows; a step whose undo raises TypeError, not OSError.
        f.write('{"kind": "layer", "pa\n{"kind": "nosuch"}\n{"kind": "layer", "path": 7}\n')
    for name in ids:  # their monitors die unannounced: the next command's reconcile undoes the journals
        record = json.load(open(os.path.join(STATE_ROOT, "containers", ids[name], "state.json")))
        os.kill(record["Monitor"]["Pid"], signal.SIGKILL)
        wait_for(lambda: not os.path.exists(f"/proc/{record['Monitor']['Pid']}"), what="the monitor to be reaped")

    r = pyrun("run", "--rm", "--network", "none", busybox, "echo", "still works")
    assert r.returncode == 0 and r.stdout == "still works\n", r.stderr
    [line] = r.stderr.splitlines()  # one line, naming the container, saying each failure
    assert line.startswith("pyrun: cleaning up after broken: ") and line.count("journal line") == 2, line
    assert "undo layer: TypeError" in line
    # Every step the journal could name was undone, the broken container's as well as the other's.
    after = snapshot()
    assert {k: after[k] for k in ("iptables", "leases", "cgroups", "netns")} == \
           {k: before[k] for k in ("iptables", "leases", "cgroups", "netns")}

    r = pyrun("run", "--rm", "--network", "none", busybox, "true")
    assert r.returncode == 0 and r.stderr == "", r.stderr  # reported once, not at every run
    r = pyrun("rm", "fine")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    r = pyrun("rm", "broken")
    assert r.returncode == 125 and len(r.stderr.splitlines()) == 1 and "pyrun: rm: broken: undo layer: TypeError" in r.stderr
    r = pyrun("prune")
    assert r.returncode == 0 and r.stdout == "" and r.stderr.startswith("pyrun: prune: broken: "), r.stderr
    sh(f"rm -r {cdir}")  # what the error leaves to the admin
