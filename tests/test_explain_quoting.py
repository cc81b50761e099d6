"""--explain with hostile names: the printed script runs what pyrun would run, and nothing else.

The attack: a learner runs the explained script as root, as the docs invite. Every value pyrun
interpolates (the rootfs path, -v sources and targets, -w, the command, the state root) is chosen so that
an unquoted copy would run `touch pwned-N`, or end a heredoc early and run the rest on the host.
"""
import os
import subprocess
import tempfile

from conftest import pyrun
from runtime.explain import TEARDOWN


def test_hostile_names_in_the_explained_script_run_nothing(debian, clean_host):
    work = tempfile.mkdtemp(prefix="pyrun-quoting-")
    rootfs = os.path.join(work, "img$(touch pwned-1)`touch pwned-2`")
    os.symlink(debian, rootfs)  # pyrun keeps the path as given: the hostile name is what it prints
    source = os.path.join(work, "data; touch pwned-3")
    os.mkdir(source)
    root = os.path.join(work, "state $(touch pwned-4)")
    command = ["sh", "-c", "echo ran > /data/out\nEOF\ntouch pwned-5\n", "x\ntouch pwned-6"]
    out = pyrun("--root", root, "run", "--explain", "--network", "none", "-v", f"{source}:/data",
                "-w", "/w $(touch pwned-7)", rootfs, *command)
    assert out.returncode == 0, out.stderr
    setup, teardown = out.stdout.split(TEARDOWN)
    r = subprocess.run(["bash", "-c", setup + "\nwait $UNSHARE"], capture_output=True, text=True, timeout=60, cwd=work)
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
