"""pyrun's state directory is root's alone (the class of Docker's CVE-2021-41091).

A container's writable layer lives under the state root on the host. If a
local user can reach it, a setuid-root binary the container left there is
root for that user, a device node it made is the device, and every record
tells the `-e` values (secrets) it was given. The attacker here is a real
unprivileged host user (uid 65534); the container is a real busybox one.
"""
import os
import stat
import subprocess
import tempfile

import pytest

from conftest import RUNTIMES, STATE_ROOT, pyrun, running_record, wait_for

# RUNTIMES: the same attacks on a container an OCI runtime made from pyrun's bundle (oci/client.py).
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
SECRET = "hunter2-db-password"
# The container makes a setuid-root copy of a binary (coreutils' id, bound in read-only: busybox drops
# its setuid privileges by itself) and a device node anyone may open, prints the secret, and stays up.
# /etc/hosts is a writable bind of a file in the state root: it gets a setuid program too.
PLANT = (f"cp /hostid /suid && chmod 4755 /suid && cat /hostid > /etc/hosts && chmod 4755 /etc/hosts && "
         f"mknod -m 666 /zero c 1 5 && echo log:$SECRET && sleep 300")


def as_nobody(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([*NOBODY, *argv], capture_output=True, text=True, timeout=10)


def _start(busybox: str, name: str, runtime: str = "pyrun") -> dict:
    # umask 0: pyrun's modes must not depend on the umask it was started with.
    r = pyrun("run", "-d", "--name", name, "--runtime", runtime, "--network", "none", "-e", f"SECRET={SECRET}",
              "-v", "/usr/bin/id:/hostid:ro", busybox, "sh", "-c", PLANT, preexec_fn=lambda: os.umask(0))
    assert r.returncode == 0, r.stderr
    record = wait_for(lambda: running_record(name), what=f"{name} to run")
    layer = os.path.join(STATE_ROOT, "containers", record["Id"], "layer", "diff")
    wait_for(lambda: os.path.exists(os.path.join(layer, "zero")), what="the container to plant its files")
    return record


def _attack(record: dict) -> list[str]:
    """What uid 65534 got out of the state root: empty when nothing."""
    cdir = os.path.join(STATE_ROOT, "containers", record["Id"])
    got = []
    hosts = [os.path.join(d, "hosts") for d in (cdir, os.path.join(cdir, "layer"))
             if os.path.exists(os.path.join(d, "hosts"))]
    # --runtime: the overlay was mounted on the host, at layer/merged, for the runtime to take as its root
    merged = [os.path.join(cdir, "layer", "merged", name) for name in ("suid", "zero")]
    for path in [os.path.join(cdir, "layer", "diff", "suid"), merged[0], *hosts]:
        r = as_nobody(path, "-u")
        if r.returncode == 0 and r.stdout.strip() != "65534":
            got.append(f"ran the container's setuid binary {os.path.basename(path)} as uid {r.stdout.strip()}")
    for path in (os.path.join(cdir, "layer", "diff", "zero"), merged[1]):
        r = as_nobody("head", "-c", "4", path)
        if r.returncode == 0:
            got.append(f"opened the container's device node {path}")
    for name in ("state.json", "container.log", "journal", "bundle/config.json"):
        r = as_nobody("cat", os.path.join(cdir, name))
        if r.returncode == 0:
            got.append(f"read {name}" + (" and the secret in it" if SECRET in r.stdout else ""))
    r = as_nobody("ls", os.path.join(STATE_ROOT, "containers"))
    if r.returncode == 0:
        got.append("listed the containers")
    for name in os.listdir(os.path.join(STATE_ROOT, "runtimes")) if os.path.isdir(os.path.join(STATE_ROOT, "runtimes")) else []:
        r = as_nobody("cat", os.path.join(STATE_ROOT, "runtimes", name, record["Id"], "state.json"))
        if r.returncode == 0:
            got.append(f"read {name}'s state" + (" and the secret in it" if SECRET in r.stdout else ""))
    return got


def _private(path: str) -> bool:
    return stat.S_IMODE(os.stat(path).st_mode) & 0o077 == 0


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_local_user_gets_nothing_from_the_state_root(runtime, busybox, clean_host):
    os.makedirs(os.path.join(STATE_ROOT, "containers"), exist_ok=True)
    os.chmod(STATE_ROOT, 0o755)  # as an earlier pyrun left it
    os.chmod(os.path.join(STATE_ROOT, "containers"), 0o755)
    record = _start(busybox, "planter", runtime)
    try:
        assert _attack(record) == []
        cdir = os.path.join(STATE_ROOT, "containers", record["Id"])
        everything = [STATE_ROOT, os.path.join(STATE_ROOT, "containers"), os.path.join(STATE_ROOT, "lock"),
                      cdir, os.path.join(cdir, "layer")]
        everything += [os.path.join(cdir, n) for n in os.listdir(cdir) if n not in ("hostname", "hosts", "resolv.conf")]
        assert [p for p in everything if not _private(p)] == []
        # The container's own users read the /etc files (bind mounts), so those are 0644 in a 0700 directory.
        r = pyrun("exec", "planter", "su", "-s", "/bin/cat", "nobody", "/etc/hostname", "/etc/resolv.conf")
        assert r.returncode == 0, r.stderr
    finally:
        assert pyrun("rm", "-f", "planter").returncode == 0


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_the_layer_is_nosuid_and_nodev_even_if_its_parents_are_opened(runtime, busybox, clean_host):
    """Directory modes are one lock; the layer's own nosuid,nodev mount is a second one. With --runtime, the
    overlay the runtime took as its root is no longer mounted on the host once the runtime holds it."""
    record = _start(busybox, "planter2", runtime)
    try:
        cdir = os.path.join(STATE_ROOT, "containers", record["Id"])
        for path in (STATE_ROOT, os.path.join(STATE_ROOT, "containers"), cdir, os.path.join(cdir, "layer"),
                     os.path.join(cdir, "layer", "merged")):
            os.chmod(path, 0o755)  # an admin "fixing" permissions
        got = _attack(record)
        assert not [g for g in got if "setuid" in g or "device" in g], got
        # The container sees its layer through its own overlay mount: the host mount's nodev does not reach it.
        r = pyrun("exec", "planter2", "head", "-c", "4", "/zero")
        assert (r.returncode, r.stdout) == (0, "\0" * 4), r.stdout + r.stderr
    finally:
        assert pyrun("rm", "-f", "planter2").returncode == 0
        assert _private(STATE_ROOT)  # the next pyrun command closed the root again


def test_a_root_owned_by_another_user_is_refused(tmp_path):
    """Its owner could replace what pyrun writes there with links to anywhere on the host."""
    root = tmp_path / "theirs"
    root.mkdir()
    os.chown(root, 65534, 65534)
    r = pyrun("--root", str(root), "ps")
    assert r.returncode == 125 and r.stderr.count("\n") == 1 and "owned by uid 65534" in r.stderr, r.stderr
    assert os.listdir(root) == []


@pytest.mark.parametrize("plant", ["a link", "their containers", "their parent"])
def test_a_root_in_a_shared_directory_is_no_way_in_for_a_local_user(tmp_path, plant):
    """`--root /tmp/x` (or PYRUN_ROOT): uid 65534 plants x as a link to a root-owned directory, which pyrun
    would chmod 0700 and fill; or the root is a directory others write to, where they made `containers`
    (pyrun's records and journals in their hands) and which pyrun would close to its other users; or a
    directory of theirs holds it, and they swap the state for such a link once pyrun has made it."""
    shared = tempfile.mkdtemp(prefix="pyrun-shared-", dir="/tmp")
    os.chmod(shared, 0o1777)  # as /tmp itself
    victim = tmp_path / "victim"
    victim.mkdir()
    os.chmod(victim, 0o755)
    (victim / "keep").write_text("root's own")
    try:
        root = {"a link": f"{shared}/x", "their containers": shared, "their parent": f"{shared}/theirs/x"}[plant]
        if plant == "a link":
            as_nobody("ln", "-s", str(victim), root)
        elif plant == "their containers":
            as_nobody("mkdir", f"{shared}/containers")
        else:
            as_nobody("mkdir", f"{shared}/theirs")
        r = pyrun("--root", root, "ps")
        if plant == "their parent":
            as_nobody("sh", "-c", f"mv -T {root} {root}.old; ln -s {victim} {root}")
            r = pyrun("--root", root, "ps")
        assert stat.S_IMODE(os.stat(victim).st_mode) == 0o755 and os.listdir(victim) == ["keep"]
        assert stat.S_IMODE(os.stat(shared).st_mode) == 0o1777
        if plant == "their containers":
            assert os.listdir(f"{shared}/containers") == []
        assert r.returncode == 125 and r.stderr.startswith("pyrun: invalid --root") and r.stderr.count("\n") == 1
    finally:
        subprocess.run(["rm", "-rf", shared])


def test_a_local_user_cannot_aim_pyrun_oci_s_log_at_a_root_file(tmp_path):
    """An engine's `--log /tmp/x.log` (runc's flag: the file is created or appended to): uid 65534 plants a link
    there to a file of root's, which root's pyrun-oci would append its error lines to. pyrun-oci still says
    the error, on stderr, and names the log it would not open."""
    from ocitools import oci

    shared = tempfile.mkdtemp(prefix="pyrun-shared-", dir="/tmp")
    os.chmod(shared, 0o1777)  # as /tmp itself
    victim = tmp_path / "victim"
    victim.write_text("root's own\n")
    log = f"{shared}/x.log"
    try:
        as_nobody("ln", "-s", str(victim), log)
        r = oci("--log", log, "--log-format", "json", "state", "nosuch")
        assert victim.read_text() == "root's own\n"
        assert r.returncode == 1 and 'container "nosuch" does not exist' in r.stderr, r.stderr
        assert f"--log {log}" in r.stderr, r.stderr
    finally:
        subprocess.run(["rm", "-rf", shared])
