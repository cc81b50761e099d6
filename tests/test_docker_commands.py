"""The everyday Docker commands: ps -q/--format, inspect -f, wait, port, top, cp, --version, and several
names at once. Each is checked against a real container, in Docker's output shape."""
import json
import os
import re
import stat
import subprocess
import tempfile

import pytest

from conftest import pyrun, running_record, wait_for
from test_lifecycle import HTTPD, detached

SLEEP = "echo started; exec sleep 1000"


@pytest.fixture
def web(busybox, clean_host):
    cid = detached(busybox, "-p", "8088:8000", "-p", "127.0.0.1:5353:53/udp", HTTPD)
    wait_for(lambda: running_record("web"), what="web to run")
    yield cid
    pyrun("rm", "-f", "web")


def test_ps_quiet_and_format(web):
    assert pyrun("ps", "-q").stdout == web[:12] + "\n"
    assert pyrun("ps", "--format", "{{.Names}} {{.State}} {{.ID}}").stdout == f"web running {web[:12]}\n"
    lines = pyrun("ps", "--format", r"table {{.ID}}\t{{.Names}}\t{{.Ports}}").stdout.splitlines()
    assert re.fullmatch(r"CONTAINER ID   NAMES   PORTS", lines[0])
    assert lines[1].startswith(f"{web[:12]}   web     ") and "0.0.0.0:8088->8000/tcp" in lines[1]
    assert re.fullmatch(r"Up \d+ seconds?", pyrun("ps", "--format", "{{.Status}}").stdout.strip())


def test_inspect_format(web):
    r = pyrun("inspect", "-f", "{{.State.Status}} {{.NetworkSettings.IPAddress}}", "web")
    assert re.fullmatch(r"running 10\.199\.\d+\.\d+\n", r.stdout), r.stderr
    config = json.loads(pyrun("inspect", "--format", "{{json .Config}}", "web").stdout)
    assert config["Cmd"][:2] == ["sh", "-c"]
    assert pyrun("inspect", "-f", "{{.NoSuchField}}", "web").stdout == "<no value>\n"


@pytest.mark.parametrize("template", ["{{range .Mounts}}{{.}}{{end}}", "{{.State.Status", "{{printf .Name}}"])
def test_inspect_format_refuses_what_it_cannot_read(web, template):
    r = pyrun("inspect", "-f", template, "web")
    assert r.returncode == 125 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and "invalid --format" in r.stderr, r.stderr


def test_port(web):
    assert sorted(pyrun("port", "web").stdout.splitlines()) == ["53/udp -> 127.0.0.1:5353",
                                                                "8000/tcp -> 0.0.0.0:8088"]
    assert pyrun("port", "web", "8000").stdout == "0.0.0.0:8088\n"
    assert pyrun("port", "web", "53/udp").stdout == "127.0.0.1:5353\n"
    r = pyrun("port", "web", "8001")
    assert r.returncode == 125 and "no public port '8001/tcp' published for web" in r.stderr


def test_top_lists_the_containers_processes_only(web):
    pid = running_record("web")["State"]["Pid"]
    lines = pyrun("top", "web").stdout.splitlines()
    assert lines[0].split()[:2] == ["UID", "PID"]
    assert [line.split()[1] for line in lines[1:]] == [str(pid)]
    assert "httpd" in lines[1]
    assert pyrun("top", "web", "-o", "pid,comm").stdout.split() == ["PID", "COMMAND", str(pid), "httpd"]


def test_wait_prints_the_exit_code(busybox, clean_host):
    detached(busybox, "sleep 0.5; exit 3", name="w")
    r = pyrun("wait", "w")
    assert (r.returncode, r.stdout) == (0, "3\n"), r.stderr
    assert pyrun("wait", "w").stdout == "3\n"  # already exited: at once
    pyrun("rm", "w")


def test_wait_on_an_auto_removed_container(busybox, clean_host):
    r = pyrun("run", "-d", "--rm", "--name", "gone", busybox, "sh", "-c", "sleep 0.5; exit 7")
    assert r.returncode == 0, r.stderr
    assert pyrun("wait", "gone").stdout == "7\n"
    assert pyrun("inspect", "gone").returncode == 125  # and it is removed


def test_several_names_go_on_past_an_unknown_one(busybox, clean_host):
    for name in ("a", "c"):
        detached(busybox, SLEEP, name=name)
    r = pyrun("rm", "-f", "a", "nosuch", "c")
    assert r.returncode == 125
    assert r.stdout.split() == ["a", "c"]
    assert "nosuch" in r.stderr and r.stderr.count("\n") == 1
    assert pyrun("ps", "-aq").stdout == ""


def test_version():
    r = pyrun("--version")
    assert r.returncode == 0 and re.fullmatch(r"pyrun version \d+\.\d+\.\d+\n", r.stdout)


# cp: the container tries to turn the copy against the host.

@pytest.fixture
def box(busybox, clean_host):
    cid = detached(busybox, SLEEP, name="box")
    wait_for(lambda: running_record("box"), what="box to run")
    yield running_record("box")
    pyrun("rm", "-f", "box")


def in_box(script: str) -> str:
    r = pyrun("exec", "box", "sh", "-c", script)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_cp_both_ways_with_directories_and_modes(box):
    work = tempfile.mkdtemp()
    os.makedirs(f"{work}/tree/sub")
    with open(f"{work}/tree/sub/f", "w") as f:
        f.write("hello")
    os.chmod(f"{work}/tree/sub/f", 0o751)
    os.symlink("sub/f", f"{work}/tree/link")
    assert pyrun("cp", f"{work}/tree", "box:/tmp").returncode == 0
    assert in_box("cat /tmp/tree/sub/f; stat -c %a /tmp/tree/sub/f; readlink /tmp/tree/link") == "hello751\nsub/f\n"
    in_box("echo back > /tmp/tree/new")
    r = pyrun("cp", "box:/tmp/tree/.", f"{work}/out")
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(f"{work}/out")) == ["link", "new", "sub"]
    assert open(f"{work}/out/new").read() == "back\n"
    subprocess.run(["rm", "-rf", work])


def test_cp_into_a_container_never_writes_through_its_symlinks(box):
    """The container points /tmp/evil at the host's /etc and /tmp/file at a host file: the copy must land
    inside the container, and the host files stay as they were."""
    work = tempfile.mkdtemp()
    victim = os.path.join(work, "victim")
    with open(victim, "w") as f:
        f.write("host data")
    with open(f"{work}/payload", "w") as f:
        f.write("from the container's user")
    in_box(f"ln -s {work} /tmp/evil; ln -s {victim} /tmp/file; mkfifo /tmp/fifo")
    assert pyrun("cp", f"{work}/payload", "box:/tmp/evil/victim").returncode in (0, 125)
    assert pyrun("cp", f"{work}/payload", "box:/tmp/file").returncode == 0
    r = subprocess.run(["timeout", "10", *pyrun_argv(), "cp", f"{work}/payload", "box:/tmp/fifo"])
    assert r.returncode != 124  # a FIFO in the container does not make pyrun wait
    assert open(victim).read() == "host data"
    assert in_box("cat /tmp/file") == "from the container's user"  # the link was replaced, inside
    subprocess.run(["rm", "-rf", work])


def test_cp_out_of_a_container_resolves_its_links_inside_it(box):
    """/tmp/shadow -> /etc/shadow in the container: cp copies the link, never the host's file; a setuid
    program the container made comes out without its setuid bit; a device node is refused."""
    work = tempfile.mkdtemp()
    in_box("ln -s /etc/shadow /tmp/shadow; mkdir /tmp/d; ln -s ../../../../etc/shadow /tmp/d/up;"
           "cp /bin/busybox /tmp/suid; chmod 4755 /tmp/suid; mknod /tmp/disk b 8 0 || true")
    assert pyrun("cp", "box:/tmp/shadow", f"{work}/s").returncode == 0
    assert os.readlink(f"{work}/s") == "/etc/shadow"  # a link, as docker cp copies it
    assert pyrun("cp", "box:/tmp/d/up/../etc/hostname", f"{work}/h").returncode in (0, 125)
    if os.path.exists(f"{work}/h"):
        assert open(f"{work}/h").read() == in_box("cat /etc/hostname")  # the container's, not the host's
    assert pyrun("cp", "box:/tmp/suid", f"{work}/suid").returncode == 0
    assert not os.stat(f"{work}/suid").st_mode & (stat.S_ISUID | stat.S_ISGID)
    if "disk" in in_box("ls /tmp"):
        r = pyrun("cp", "box:/tmp/disk", f"{work}/disk")
        assert r.returncode == 125 and not os.path.exists(f"{work}/disk")
    subprocess.run(["rm", "-rf", work])


def test_cp_errors(box):
    for args, message in ((["box:/nosuch", "/tmp/x"], "No such file"), (["/etc/hostname", "/tmp/x"], "exactly one"),
                          (["nobox:/etc", "/tmp"], "no such container")):
        r = pyrun("cp", *args)
        assert r.returncode == 125 and message in r.stderr and r.stderr.count("\n") == 1, r.stderr


def pyrun_argv() -> list[str]:
    import sys

    return [sys.executable, "-m", "runtime"]
