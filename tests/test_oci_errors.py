"""Every verb's error cases, with runc's messages, which engines match on; exit status 1, nothing left behind."""
import json
import os

import pytest

from ocitools import Shim, cleanup, edit as _set, leftovers, make_bundle, oci, state


@pytest.mark.parametrize("verb", [["start"], ["state"], ["kill"], ["kill", "--all"], ["delete"]])
def test_an_unknown_id_does_not_exist(verb):
    r = oci(*verb, "nosuch")
    assert (r.returncode, r.stderr) == (1, 'pyrun-oci: container "nosuch" does not exist\n')


def test_delete_force_of_an_unknown_id_succeeds():
    r = oci("delete", "--force", "nosuch")
    assert (r.returncode, r.stderr) == (0, "")


@pytest.fixture
def running(busybox, tmp_path):
    """A started `sleep 60`, and its shim."""
    bundle = make_bundle(str(tmp_path / "b"), busybox, ["sleep", "60"])
    shim = Shim(str(tmp_path), "--bundle", bundle, "--pid-file", str(tmp_path / "pid"), "err1")
    assert shim.created() == 0, shim.proc.stderr.read()
    assert oci("start", "err1").returncode == 0
    yield shim, int((tmp_path / "pid").read_text())
    shim.close()
    cleanup("err1")


def test_start_twice_is_an_error(running):
    r = oci("start", "err1")
    assert r.returncode == 1 and "cannot start a container that is running" in r.stderr
    assert state("err1")["status"] == "running"


def test_delete_refuses_a_running_container_without_force(running):
    shim, pid = running
    r = oci("delete", "err1")
    assert r.returncode == 1 and "cannot delete container err1 that is not stopped: running" in r.stderr
    assert state("err1")["status"] == "running"
    r = oci("delete", "--force", "err1")
    assert r.returncode == 0, r.stderr
    assert shim.exit_of(pid) == -9
    assert leftovers("err1") == []


def test_stopped_container_cannot_be_started_or_killed(running):
    shim, pid = running
    assert oci("kill", "err1", "KILL").returncode == 0
    shim.exit_of(pid)
    r = oci("kill", "err1")
    assert (r.returncode, r.stderr) == (1, "pyrun-oci: container not running\n")
    r = oci("start", "err1")
    assert r.returncode == 1 and "cannot start a container that is stopped" in r.stderr


def test_an_id_in_use_is_refused_and_the_first_container_untouched(running, busybox, tmp_path):
    bundle = make_bundle(str(tmp_path / "b2"), busybox, ["true"])
    r = oci("create", "--bundle", bundle, "err1")
    assert r.returncode == 1 and "container with id exists: err1" in r.stderr
    assert state("err1")["status"] == "running"


@pytest.mark.parametrize("cid", ["../x", "a/b", ".", "..", "a b"])
def test_an_id_that_is_not_a_name_is_refused(busybox, tmp_path, cid):
    bundle = make_bundle(str(tmp_path / "b"), busybox, ["true"])
    r = oci("create", "--bundle", bundle, cid)
    assert r.returncode == 1 and "invalid container id" in r.stderr


@pytest.mark.parametrize("edit,message", [
    (_set("process.capabilities.bounding", ["CAP_NOPE"]), "'CAP_NOPE' is not a capability"),
    (_set("process.rlimits", [{"type": "RLIMIT_NOPE", "soft": 1, "hard": 1}]), "'RLIMIT_NOPE' is not a limit"),
    (_set("process.rlimits", [{"type": "RLIMIT_NOFILE", "soft": 2, "hard": 1}]), "above the hard limit"),
    (_set("process.args", []), "process.args"),
    (_set("process.cwd", "relative"), "process.cwd"),
    (_set("linux.namespaces", [{"type": "mount"}, {"type": "uts"}, {"type": "user"}]),
     "a new user namespace needs its mappings"),
    (_set("linux.namespaces", [{"type": "pid"}]), "needs a new mount namespace"),
    (_set("linux.namespaces", [{"type": "mount"}, {"type": "net", "path": "/nonexistent"}]), "'net'"),
    (_set("linux.uidMappings", [{"containerID": 0, "hostID": 1000, "size": 1}]), "linux.uidMappings"),
    (_set("linux.resources.memory", {"swap": 1 << 30}), "linux.resources.memory.swap"),
    (_set("linux.resources.cpu", {"shares": 512}), "linux.resources.cpu.shares"),
    (_set("linux.resources.devices", [{"allow": True, "type": "x"}]), "linux.resources.devices[0]"),
    (_set("linux.sysctl", {"kernel.panic": "1"}), "it would change the host"),
    (_set("linux.namespaces", [{"type": "mount"}, {"type": "uts"},
                               {"type": "network", "path": "/proc/self/ns/net"}],  # the runtime's own: the host's
          "linux.sysctl", {"net.ipv4.ping_group_range": "1 0"}),
     "it would change the host"),
    (_set("linux.cgroupsPath", "system.slice:pyrun:x"), "systemd"),
    (_set("hooks", {"prestart": [{"path": "bin/true"}]}), "hooks.prestart[0].path"),
    (_set("hooks", {"poststop": [{"path": "/bin/true", "timeout": 0}]}), "hooks.poststop[0].timeout"),
    (_set("mounts", [{"destination": "/x", "type": "overlay", "source": "o"}]), "'overlay'"),
    (_set("mounts", [{"destination": "/x", "type": "bind", "source": "/nonexistent"}]), "does not exist"),
    (_set("linux.seccomp", {"defaultAction": "SCMP_ACT_NOPE"}), "linux.seccomp"),
    (_set("ociVersion", "0.9"), "ociVersion"),
    (_set("process.args", ["/nonexistent"]), "exec /nonexistent"),
    (_set("process.args", ["nosuchprogram"]), "executable file not found in $PATH"),
])
def test_a_config_pyrun_cannot_honour_fails_create_and_leaves_nothing(busybox, tmp_path, edit, message, clean_host):
    bundle = make_bundle(str(tmp_path / "b"), busybox, ["true"], edit)
    shim = Shim(str(tmp_path), "--bundle", bundle, "--pid-file", str(tmp_path / "pid"), "err2")
    try:
        assert shim.created() == 1
        shim.proc.wait(10)  # the shim exits once it has no child left: no container process remains
        err = shim.proc.stderr.read().decode()
        assert message in err and err.count("\n") == 1, err
        assert not os.path.exists(tmp_path / "pid")
        assert leftovers("err2") == []
    finally:
        shim.close()
        cleanup("err2")


def test_an_unknown_field_is_ignored_as_the_spec_says(busybox, tmp_path):
    bundle = make_bundle(str(tmp_path / "b"), busybox, ["true"], lambda c: c.update(futureField={"x": 1}))
    shim = Shim(str(tmp_path), "--bundle", bundle, "err3")
    try:
        assert shim.created() == 0, shim.proc.stderr.read()
    finally:
        shim.close()
        cleanup("err3")


def test_terminal_without_console_socket_is_an_error(busybox, tmp_path):
    bundle = make_bundle(str(tmp_path / "b"), busybox, ["true"], _set("process.terminal", True))
    r = oci("create", "--bundle", bundle, "err4")
    assert r.returncode == 1 and "--console-socket" in r.stderr
    assert leftovers("err4") == []


def test_systemd_cgroup_is_a_clear_error(busybox, tmp_path):
    r = oci("--systemd-cgroup", "create", "--bundle", str(tmp_path), "err5")
    assert r.returncode == 1 and "--systemd-cgroup: not supported" in r.stderr


def test_errors_go_to_the_log_as_json_lines(tmp_path):
    log = tmp_path / "log.json"
    r = oci("--log", str(log), "--log-format=json", "start", "nosuch")
    assert r.returncode == 1
    line = json.loads(log.read_text().splitlines()[-1])
    assert line["level"] == "error" and line["msg"] == 'container "nosuch" does not exist'
    assert line["time"].endswith("+00:00") and "T" in line["time"]  # RFC 3339
    oci("--log", str(log), "--log-format", "text", "state", "nosuch")
    assert log.read_text().splitlines()[-1].endswith('level=error msg="container \\"nosuch\\" does not exist"')


def test_version_and_usage_errors():
    r = oci("--version")
    assert r.returncode == 0 and r.stdout.startswith("pyrun-oci version") and "spec: 1." in r.stdout
    r = oci("create")
    assert r.returncode == 1 and "required" in r.stderr
    r = oci("kill", "x", "NOSIG")
    assert r.returncode == 1 and "invalid signal" in r.stderr
