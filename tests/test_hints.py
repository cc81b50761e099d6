"""Where a Docker user's habit misleads, pyrun says what it expected instead, in one line."""
import os
import shutil
import subprocess
import sys

import pytest

from conftest import REPO, pyrun


def pyrun_in(cwd, *args: str) -> subprocess.CompletedProcess:
    """pyrun run from another directory, where a relative ROOTFS such as "alpine" is looked up."""
    return subprocess.run([sys.executable, "-m", "runtime", *args], capture_output=True, text=True, timeout=60,
                          cwd=cwd, env={**os.environ, "PYTHONPATH": REPO})


def one_line(r, code: int) -> str:
    assert r.returncode == code, (r.returncode, r.stderr[-2000:])
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pyrun: "), r.stderr[-2000:]
    assert r.stdout == ""
    return lines[0]


@pytest.mark.parametrize("kind", ["empty", "busybox"])
def test_a_rootfs_without_the_command_says_so_and_how_to_build_one(busybox, clean_host, tmp_path, kind):
    """`exec python: executable file not found in $PATH` read as a fault of pyrun's, not of the directory."""
    rootfs = busybox if kind == "busybox" else str(tmp_path)
    line = one_line(pyrun("run", "--rm", "--network", "none", rootfs, "python", "-V"), 127)
    assert "exec python: executable file not found in $PATH (/usr/local/sbin:" in line, line
    assert f"the rootfs {rootfs} has no 'python';" in line, line
    assert "scripts/build-rootfs" in line and "scripts/build-busybox-rootfs" in line, line


def test_the_search_is_the_containers_own_path(busybox, clean_host):
    """-e PATH changes where execvp looks, and the message says where it looked; a path is named as given."""
    line = one_line(pyrun("run", "--rm", "--network", "none", "-e", "PATH=/nowhere:/also", busybox, "sh"), 127)
    assert "not found in $PATH (/nowhere:/also): the rootfs" in line, line
    line = one_line(pyrun("run", "--rm", "--network", "none", busybox, "/usr/bin/python3"), 127)
    assert f"no such file or directory: the rootfs {busybox} has no '/usr/bin/python3';" in line, line


def test_a_script_whose_interpreter_is_missing_is_not_called_missing(busybox, clean_host, tmp_path):
    """execve says ENOENT for a missing #! interpreter too: the script is there, and the message must say so.
    The lookup is the container's: the host has a /bin/sh, the rootfs has not."""
    rootfs = str(tmp_path / "rootfs")
    os.makedirs(f"{rootfs}/bin")
    with open(f"{rootfs}/bin/hello", "w") as f:
        f.write("#!/bin/sh\necho hello\n")
    os.chmod(f"{rootfs}/bin/hello", 0o755)
    line = one_line(pyrun("run", "--rm", "--network", "none", rootfs, "hello"), 127)
    assert "/bin/hello exists, but the interpreter on its #! line or its dynamic loader is missing" in line, line


@pytest.mark.parametrize("image", ["alpine", "python:3.12", "docker.io/library/nginx:latest",
                                   "localhost:5000/team/app@sha256:" + "a" * 64])
def test_an_image_name_is_told_to_export_a_directory(clean_host, tmp_path, image):
    r = pyrun_in(tmp_path, "run", "--rm", "--network", "none", image, "sh")
    line = one_line(r, 125)
    assert f"invalid rootfs: {image!r} does not exist: pyrun runs a directory, not an image" in line, line
    assert f"docker export $(docker create {image}) | tar -x -C DIR" in line and "scripts/build-rootfs" in line


def test_a_directory_named_like_an_image_is_a_rootfs(busybox, clean_host, tmp_path):
    shutil.copytree(busybox, tmp_path / "alpine", symlinks=True)
    r = pyrun_in(tmp_path, "run", "--rm", "--network", "none", "alpine", "echo", "ok")
    assert (r.returncode, r.stdout) == (0, "ok\n"), r.stderr


@pytest.mark.parametrize("args,example", [
    (["-p", "8080:80", "python", "-m", "http.server"], "pyrun run -p 8080:80 {rootfs} python -m http.server"),
    (["--publish=8080:80", "-d", "sh"], "pyrun run --publish=8080:80 -d {rootfs} sh"),
    (["-it", "sh"], "pyrun run -it {rootfs} sh"),
    (["-e", "A=1", "--name", "web"], "pyrun run -e A=1 --name web {rootfs} COMMAND"),
])
def test_options_after_rootfs_are_told_to_go_before_it(busybox, clean_host, args, example):
    """Without the check -p became the command: `exec -p: executable file not found`, 127."""
    line = one_line(pyrun("run", "--rm", "--network", "none", busybox, *args), 125)
    assert f"invalid command: {args[0]!r} is one of run's options" in line, line
    assert line.endswith(example.format(rootfs=busybox)), line


def test_only_the_first_word_of_the_command_is_checked(busybox, clean_host):
    r = pyrun("run", "--rm", "--network", "none", busybox, "sh", "-c", "echo -p", "-p")
    assert (r.returncode, r.stdout) == (0, "-p\n"), r.stderr
