"""docs/walkthrough.md works as written: its `sh` blocks, in order, on the sandbox host the demo uses.

Each block runs in bash with -euo pipefail, from a directory where ./rootfs is the demo image, and `pyrun`
is this checkout's. The walkthrough's own last block removes its container; the test removes it too if a
block failed first."""
import os
import re
import subprocess
import sys

from conftest import REPO, fetch, pyrun, wait_for

WALKTHROUGH = os.path.join(REPO, "docs", "walkthrough.md")


def sh_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```sh\n(.*?)^```$", markdown, re.M | re.S)


def test_the_walkthrough_runs_as_written(debian, clean_host, tmp_path):
    blocks = sh_blocks(open(WALKTHROUGH).read())
    assert len(blocks) >= 8 and "run -d --name web" in blocks[0]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "pyrun").write_text(f'#!/bin/sh\nPYTHONPATH={REPO} exec {sys.executable} -m runtime "$@"\n')
    (bin_dir / "pyrun").chmod(0o755)
    (tmp_path / "rootfs").symlink_to(debian)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    try:
        for i, block in enumerate(blocks):
            r = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=tmp_path, env=env,
                               capture_output=True, text=True, timeout=120)
            assert r.returncode == 0, f"block {i + 1}:\n{block}\nexit {r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
            assert "Traceback" not in r.stdout + r.stderr, f"block {i + 1}:\n{block}\n{r.stdout}\n{r.stderr}"
            if i == 0:  # a reader types the next command more slowly than the server starts
                wait_for(lambda: fetch("http://127.0.0.1:8088/"), timeout=30, what="web's server")
            if "socket.create_connection" in block:
                assert "203.0.113.1:80: Connection refused" in r.stdout, r.stdout
    finally:
        pyrun("rm", "-f", "web")
