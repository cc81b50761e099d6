"""--explain with hostile names: the printed script runs what pyrun would run, and nothing else.

The attack: a learner runs the explained script as root, as the docs invite. Every value pyrun
interpolates (the rootfs path, -v sources and targets, -w, the command, the state root) is chosen so that
an unquoted copy would run `touch pwned-N`, or end a heredoc early and run the rest on the host.
"""
import os
import subprocess
import tempfile

import pytest

from conftest import pyrun, wait_for
from runtime.explain import TEARDOWN


# Each runtime's script: the built-in's ends with PID 1 running in the foreground of `unshare`, pyrun-oci's with
# the container started by `pyrun-oci start` (its config.json a heredoc that carries the names too).
@pytest.mark.parametrize("runtime", ["pyrun", "pyrun-oci"])
def test_hostile_names_in_the_explained_script_run_nothing(debian, clean_host, runtime):
    work = tempfile.mkdtemp(prefix="pyrun-quoting-")
    rootfs = os.path.join(work, "img$(touch pwned-1)`touch pwned-2`")
    os.symlink(debian, rootfs)  # pyrun keeps the path as given: the hostile name is what it prints
    source = os.path.join(work, "data; touch pwned-3")
    os.mkdir(source)
    root = os.path.join(work, "state $(touch pwned-4)")
    command = ["sh", "-c", "echo ran > /data/out\nEOF\ntouch pwned-5\n", "x\ntouch pwned-6"]
    out = pyrun("--root", root, "run", "--explain", "--runtime", runtime, "--network", "none", "-v", f"{source}:/data",
                "-w", "/w $(touch pwned-7)", rootfs, *command)
    assert out.returncode == 0, out.stderr
    setup, teardown = out.stdout.split(TEARDOWN)
    wait = "\nwait $UNSHARE" if runtime == "pyrun" else ""
    r = subprocess.run(["bash", "-c", setup + wait], capture_output=True, text=True, timeout=60, cwd=work)
    if runtime != "pyrun":  # started, not waited for: the teardown's delete --force would kill it
        out_file = os.path.join(source, "out")
        wait_for(lambda: os.path.exists(out_file) and open(out_file).read() == "ran\n", what="the command to write")
    t = subprocess.run(["bash", "-c", teardown], capture_output=True, text=True, timeout=60,
                       cwd=work)
    pwned = [name for name in os.listdir(work) if name.startswith("pwned")]
    pwned += [name for name in os.listdir(source) if name.startswith("pwned")]
    assert not pwned, f"the explained script ran injected commands: {pwned}\n{setup}"
    assert r.returncode == 0, r.stderr
    assert t.returncode == 0, t.stderr
    # The script did the real work with the hostile paths: the command ran in that rootfs with that bind.
    with open(os.path.join(source, "out")) as f:
        assert f.read() == "ran\n"
    subprocess.run(["rm", "-rf", work], check=True)
