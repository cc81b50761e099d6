"""Bad input: one line naming the value and what is accepted, exit 125, nothing left behind."""
import os
import resource
import shutil
import subprocess
import sys
import tempfile

import pytest

from conftest import REPO, pyrun, sh

CASES = [
    (["/no/such/rootfs", "true"], "'/no/such/rootfs' does not exist"),
    (["/etc/passwd", "true"], "is not a directory"),
    (["--memory", "lots", "{rootfs}", "true"], "'lots': expected a number"),
    (["--memory", "1k", "{rootfs}", "true"], "the minimum is 6m"),
    (["--cpus", "-1", "{rootfs}", "true"], "'-1': expected a number from 0.01"),
    (["--cpus", "many", "{rootfs}", "true"], "'many'"),
    (["--pids-limit", "0", "{rootfs}", "true"], "'0': expected a whole number"),
    (["--cap-add", "FLY", "{rootfs}", "true"], "'FLY': not a capability"),
    (["-v", "nocolon", "{rootfs}", "true"], "expected HOST_PATH:CONTAINER_PATH"),
    (["-v", "/no/such/dir:/data", "{rootfs}", "true"], "does not exist"),
    (["-v", "/tmp:relative", "{rootfs}", "true"], "must be absolute"),
    (["-v", "/tmp:/../../etc", "{rootfs}", "true"], "may not contain '..'"),
    (["-v", "/tmp:/data:rx", "{rootfs}", "true"], "[:ro|rw]"),
    (["-e", "1BAD=x", "{rootfs}", "true"], "expected NAME=VALUE"),
    (["--network", "wifi", "{rootfs}", "true"], "expected one of bridge, none, host"),
    (["--name", "bad name", "{rootfs}", "true"], "'bad name'"),
    (["--hostname", "-bad-", "{rootfs}", "true"], "'-bad-'"),
    (["{rootfs}"], "no command given"),
    (["--no-such-flag", "{rootfs}", "true"], "no-such-flag"),
    (["-p", "0:80", "{rootfs}", "true"], "outside 1-65535"),
    (["-p", "70000:80", "{rootfs}", "true"], "outside 1-65535"),
    (["-p", "abc", "{rootfs}", "true"], "both a host and a container port"),
    (["-p", "80", "{rootfs}", "true"], "both a host and a container port"),
    (["-p", "8088:8000/sctp", "{rootfs}", "true"], "'sctp' is not supported"),
    (["-p", "9000-9002:9000-9001", "{rootfs}", "true"], "differ in size"),
    (["-p", "10.0.0.5:8088:8000", "{rootfs}", "true"], "the host has no such address"),
    (["-p", "8088:80", "-p", "8088:81", "{rootfs}", "true"], "published twice"),
    # pids.max takes at most PID_MAX_LIMIT; the kernel's EINVAL came back as a traceback.
    (["--pids-limit", "4294967296", "{rootfs}", "true"], "'4294967296': expected a whole number from 1 to 4194304"),
    (["", "true"], "invalid rootfs: '' is empty"),  # abspath("") is the current directory
    # "$" in re.match also matches before a trailing newline: each was accepted with the newline.
    (["--name", "web\n", "{rootfs}", "true"], "invalid --name: 'web\\n'"),
    (["--hostname", "web\n", "{rootfs}", "true"], "invalid --hostname: 'web\\n'"),
    (["--network", "web\n", "{rootfs}", "true"], "invalid --network: 'web\\n'"),
    (["-e", "KEY\n=1", "{rootfs}", "true"], "invalid -e: 'KEY\\n=1'"),
    (["-v", "/tmp:/", "{rootfs}", "true"], "'/tmp:/': the container path may not be /"),
    (["-v", "/tmp:/data/..", "{rootfs}", "true"], "may not contain '..'"),
    (["-v", "/tmp:/./", "{rootfs}", "true"], "the container path may not be /"),
    # A file over a directory, and the other way round: refused before anything exists.
    (["-v", "/etc/passwd:/etc", "{rootfs}", "true"], "the host path is a file and /etc in the rootfs is a directory"),
    (["-v", "/tmp:/etc/passwd", "{rootfs}", "true"], "the host path is a directory and /etc/passwd in the rootfs is a file"),
]


@pytest.mark.parametrize("args,message", CASES, ids=[" ".join(a) for a, _ in CASES])
def test_bad_input_is_refused_cleanly(busybox, clean_host, args, message):
    network = [] if "-p" in args else ["--network", "none"]
    r = pyrun("run", "--rm", *network, *[a.replace("{rootfs}", busybox) for a in args])
    assert r.returncode == 125, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pyrun: "), r.stderr
    assert message in lines[0]
    assert r.stdout == ""


def one_line(r, code: int = 125) -> str:
    assert r.returncode == code, (r.returncode, r.stderr[-2000:])
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pyrun: "), r.stderr[-2000:]
    return lines[0]


def test_a_file_bound_over_a_symlinked_directory_is_the_container_error(busybox, clean_host, tmp_path):
    """Through a symlink the clash is found only as PID 1 builds its rootfs, while pyrun wires the bridge: the
    error was the netns mount's traceback (PID 1 had gone), not the bind's."""
    rootfs = str(tmp_path / "rootfs")
    shutil.copytree(busybox, rootfs, symlinks=True)
    os.symlink("/etc", os.path.join(rootfs, "conf"))
    line = one_line(pyrun("run", "--rm", "-v", "/etc/passwd:/conf", rootfs, "true"))
    assert line.startswith("pyrun: rootfs: mount(/etc/passwd") and "Not a directory" in line, line


def test_a_70000_character_command_name_is_one_short_line(busybox, clean_host):
    """The error naming it did not fit the sync socket's 64 KiB and arrived as half a JSON object."""
    line = one_line(pyrun("run", "--rm", "--network", "none", busybox, "a" * 70000), code=127)  # not in $PATH
    assert line.startswith("pyrun: exec " + "a" * 100) and "(70005 characters)" in line and len(line) < 4096, line


def _nofile(limit: int):
    return lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))


PORTS = "9000-9399:9000-9399"  # 400 ports, a socket each


def test_more_ports_than_open_files_is_refused_up_front(busybox, clean_host):
    """With `ulimit -n 100` the 101st socket failed, and so did teardown: cgroups, layer, journal and record
    were left behind."""
    line = one_line(pyrun("run", "--rm", "-p", PORTS, busybox, "true", preexec_fn=_nofile(100)))
    assert "400 published ports need 464 open files" in line and "the limit is 100" in line, line


def test_running_out_of_file_descriptors_while_reserving_ports_leaves_nothing(busybox, clean_host):
    """The limit allows the ports, but pyrun inherits 300 open files: the sockets run out half way."""
    inherited = [os.open("/dev/null", os.O_RDONLY) for _ in range(300)]
    try:
        line = one_line(pyrun("run", "--rm", "-p", PORTS, busybox, "true", pass_fds=inherited,
                              preexec_fn=_nofile(600)))
    finally:
        for fd in inherited:
            os.close(fd)
    assert "cannot hold 400 published ports, one socket each: Too many open files" in line, line


@pytest.mark.parametrize("args", [["network", "inspect", "nosuch"], ["network", "rm", "nosuch"]])
def test_an_unknown_network_argument_is_not_called_an_option(clean_host, args):
    """No --network was given: the error named one."""
    line = one_line(pyrun(*args))
    assert line == "pyrun: no such network: 'nosuch'; expected bridge or a name from 'pyrun network ls'", line


@pytest.mark.parametrize("args,suggestion", [(["stpo"], "'stop'"), (["network", "lss"], "'ls'")])
def test_a_mistyped_command_is_suggested_once(clean_host, args, suggestion):
    line = one_line(pyrun(*args))
    assert line.count("Did you mean") == 1 and suggestion in line, line


NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


@pytest.mark.parametrize("args", [["ps"], ["run", "--rm", "--network", "none", "{rootfs}", "true"], ["network", "ls"],
                                  ["prune"], ["rm", "-f", "web"], ["exec", "web", "true"], ["network", "inspect"]])
@pytest.mark.parametrize("writable_root", [False, True], ids=["default root", "writable PYRUN_ROOT"])
def test_a_user_who_is_not_root_is_told_so(clean_host, args, writable_root):
    """A real unprivileged user: it was told the state root is read-only, or (with a root of its own) got a
    traceback from the cgroup it could not make."""
    env = dict(os.environ)
    env.pop("PYRUN_ROOT", None)
    mine = tempfile.mkdtemp(prefix="pyrun-nobody-")  # under /tmp, where the user can reach it
    try:
        if writable_root:
            os.chmod(mine, 0o777)
            env["PYRUN_ROOT"] = os.path.join(mine, "state")
        r = subprocess.run([*NOBODY, sys.executable, "-m", "runtime", *[a.replace("{rootfs}", mine) for a in args]],
                           capture_output=True, text=True, timeout=60, cwd=REPO, env=env)
        assert (r.returncode, r.stderr, r.stdout) == (125, "pyrun: must run as root\n", ""), r.stderr[-2000:]
        assert os.listdir(mine) == []
    finally:
        shutil.rmtree(mine)


@pytest.mark.parametrize("subnet,message", [
    ("10.300.0.0/16", "invalid PYRUN_SUBNET: '10.300.0.0/16': Octet 300"),
    ("garbage", "invalid PYRUN_SUBNET: 'garbage'"),
    ("8.8.8.0/24", "invalid PYRUN_SUBNET: '8.8.8.0/24': expected a private IPv4 network"),
])
def test_bad_pyrun_subnet_is_refused_cleanly(busybox, clean_host, subnet, message):
    r = pyrun("run", "--rm", "-p", "8099:80", busybox, "true", env={**os.environ, "PYRUN_SUBNET": subnet})
    assert r.returncode == 125 and len(r.stderr.splitlines()) == 1 and message in r.stderr, r.stderr


def test_pyrun_subnet_other_than_the_bridges_is_refused(busybox, clean_host):
    # pyrun0 would get a second address with no NAT rule: the new container's traffic would go nowhere.
    assert pyrun("run", "--rm", busybox, "true").returncode == 0  # pyrun0 exists, on 10.199.0.0/16
    addresses = sh("ip -4 -o addr show pyrun0").stdout
    r = pyrun("run", "--rm", "-p", "8099:80", busybox, "true", env={**os.environ, "PYRUN_SUBNET": "10.198.0.0/16"})
    assert r.returncode == 125 and len(r.stderr.splitlines()) == 1, r.stderr
    assert ("PYRUN_SUBNET 10.198.0.0/16 is not 10.199.0.0/16, the subnet bridge pyrun0 is on; to change it, "
            "remove the network first: 'pyrun network rm bridge'") in r.stderr, r.stderr
    assert sh("ip -4 -o addr show pyrun0").stdout == addresses


def test_a_route_over_the_bridges_subnet_is_refused_on_every_run(busybox, clean_host):
    assert pyrun("run", "--rm", busybox, "true").returncode == 0  # pyrun0 exists already
    sh("ip route add 10.199.128.0/24 via 198.51.100.2")  # the admin's route, added later, into pyrun's subnet
    try:
        r = pyrun("run", "--rm", busybox, "true")
        assert r.returncode == 125 and len(r.stderr.splitlines()) == 1, r.stderr
        assert "subnet 10.199.0.0/16 overlaps the route to 10.199.128.0/24" in r.stderr, r.stderr
    finally:
        sh("ip route del 10.199.128.0/24")
