"""seccomp: the system calls containers have used to get out are refused with EPERM, from inside a real container."""
import errno
import json

import pyseccomp
import pytest

from conftest import pyrun, snapshot

# Every guarantee here is the runtime's to keep: each test runs under each (conftest.RUNTIMES).
pytestmark = pytest.mark.usefixtures("each_runtime")

PROBE = """
import ctypes, json, sys

libc = ctypes.CDLL(None, use_errno=True)
out = {}
for name, nr, args in json.loads(sys.argv[1]):
    ctypes.set_errno(0)
    r = libc.syscall(nr, *[ctypes.c_long(a) for a in args])
    out[name] = 0 if r >= 0 else ctypes.get_errno()
print(json.dumps(out))
"""

CLONE_NEWUTS, CLONE_NEWNS, SIGCHLD = 0x04000000, 0x00020000, 17
CALLS = {  # name: arguments that do no harm if the call were allowed
    "keyctl": [0, 0, 0, 0, 0], "add_key": [0, 0, 0, 0, 0], "request_key": [0, 0, 0, 0],
    "userfaultfd": [0], "kexec_load": [0, 0, 0, 0], "kexec_file_load": [-1, -1, 0, 0, 0],
    "open_by_handle_at": [-1, 0, 0], "bpf": [0, 0, 0], "perf_event_open": [0, 0, -1, -1, 0],
    "unshare": [CLONE_NEWUTS], "setns": [-1, 0], "mount": [0, 0, 0, 0, 0], "umount2": [0, 0],
    "pivot_root": [0, 0], "socket": [40, 1, 0],  # AF_VSOCK
    "personality": [0x0040000],  # ADDR_NO_RANDOMIZE: switching address randomisation off
}


def probe(rootfs: str, *options: str, calls: dict = CALLS) -> dict:
    table = [(name, pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, name), args)
             for name, args in calls.items()]
    r = pyrun("run", "--rm", "--network", "none", *options, rootfs, "python", "-c", PROBE, json.dumps(table))
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_refused_system_calls_fail_with_eperm(debian, clean_host):
    assert probe(debian) == {name: errno.EPERM for name in CALLS}


def test_unconfined_lets_them_through_to_the_kernel(debian, clean_host):
    # The control: without the filter the same calls reach the kernel, which answers otherwise.
    results = probe(debian, "--security-opt", "seccomp=unconfined")
    for name in ("keyctl", "add_key", "request_key", "socket", "personality"):
        assert results[name] != errno.EPERM, (name, results[name])


def test_clone_with_namespace_flags_is_refused_plain_fork_is_not(debian, clean_host):
    calls = {"clone": [CLONE_NEWNS | SIGCHLD, 0, 0, 0, 0]}
    assert probe(debian, calls=calls) == {"clone": errno.EPERM}
    script = "import os; pid = os.fork(); os._exit(0) if pid == 0 else print(os.waitpid(pid, 0)[1])"
    r = pyrun("run", "--rm", "--network", "none", debian, "python", "-c", script)
    assert r.stdout == "0\n", r.stderr


def test_cap_sys_admin_allows_unshare_as_docker_does(debian, clean_host):
    assert probe(debian, "--cap-add", "SYS_ADMIN", calls={"unshare": [CLONE_NEWUTS]}) == {"unshare": 0}


def test_the_filter_is_on_for_run_and_exec(busybox, clean_host):
    r = pyrun("run", "--rm", "--network", "none", busybox, "grep", "^Seccomp:", "/proc/self/status")
    assert r.stdout.split() == ["Seccomp:", "2"]
    r = pyrun("run", "--rm", "--network", "none", "--security-opt", "seccomp=unconfined", busybox,
              "grep", "^Seccomp:", "/proc/self/status")
    assert r.stdout.split() == ["Seccomp:", "0"]
    assert pyrun("run", "-d", "--name", "filtered", "--network", "none", busybox, "sleep", "60").returncode == 0
    try:
        r = pyrun("exec", "filtered", "grep", "^Seccomp:", "/proc/self/status")
        assert r.stdout.split() == ["Seccomp:", "2"]
    finally:
        pyrun("rm", "-f", "filtered")


@pytest.mark.parametrize("options,seccomp", [
    (["--security-opt", "seccomp=unconfined", "--security-opt", "no-new-privileges"], "0"),
    (["--security-opt", "no-new-privileges", "--security-opt", "seccomp=unconfined"], "0"),
    (["--security-opt", "no-new-privileges"], "2"),
])
def test_no_new_privileges_leaves_seccomp_as_it_is(busybox, clean_host, options, seccomp):
    """no-new-privileges is always on; saying so must not turn a filter on (or off)."""
    r = pyrun("run", "--rm", "--network", "none", *options, busybox, "grep", "-E", "^(Seccomp|NoNewPrivs):",
              "/proc/self/status")
    assert r.stdout.split() == ["NoNewPrivs:", "1", "Seccomp:", seccomp], r.stdout + r.stderr


def test_a_docker_format_profile_file(busybox, clean_host, tmp_path):
    profile = tmp_path / "no-mkdir.json"
    profile.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EACCES}]}))
    r = pyrun("run", "--rm", "--network", "none", "--security-opt", f"seccomp={profile}", busybox,
              "sh", "-c", "mkdir /tmp/x || echo refused; echo still here")
    assert r.stdout == "refused\nstill here\n" and "Permission denied" in r.stderr


BAD = [
    (["--security-opt", "seccomp=/no/such.json"], "seccomp=/no/such.json: cannot read it: No such file or directory"),
    (["--security-opt", "seccomp={tmp}/garbage.json"], "not JSON"),
    (["--security-opt", "seccomp={tmp}/wrong.json"], "defaultAction: expected one of"),
    (["--security-opt", "seccomp={tmp}/bare.json"], "syscalls[0]: expected a rule object with names and an action, "
                                                    "got \"mkdir\""),
    (["--security-opt", "apparmor=unconfined"], "'apparmor=unconfined': expected seccomp=unconfined"),
]


@pytest.mark.parametrize("options,message", BAD, ids=[o[1] for o, _ in BAD])
def test_bad_security_opt_is_125_and_leaves_nothing(busybox, clean_host, tmp_path, options, message):
    (tmp_path / "garbage.json").write_text("{ not json")
    (tmp_path / "wrong.json").write_text(json.dumps({"defaultAction": "SCMP_ACT_MAYBE"}))
    (tmp_path / "bare.json").write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": ["mkdir"]}))
    before = snapshot()
    r = pyrun("run", "--rm", *[o.format(tmp=tmp_path) for o in options], busybox, "true")
    assert r.returncode == 125 and message in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
    assert snapshot() == before


def block_mkdir(**rule) -> dict:
    return {"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EACCES, **rule}]}


def check(index, value, op="SCMP_CMP_NE") -> dict:
    return {"index": index, "value": value, "op": op}


# Profiles that mean to block mkdir but say it in a way libseccomp cannot load exactly. Each was once loaded
# without the broken part (or the rule), which let mkdir through; or ended in a traceback.
MALFORMED = {
    "names is a string": ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": "mkdir", "action": "SCMP_ACT_ERRNO"}]}, "syscalls[0] names: expected a list"),
    "name and names": ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"name": "mkdir", "names": ["rmdir"], "action": "SCMP_ACT_ERRNO"}]}, "has both name and names"),
    "a name in capitals": ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["MKDIR", "MKDIRAT"], "action": "SCMP_ACT_ERRNO"}]}, "got [\"MKDIR\""),
    "argument index 6": (block_mkdir(args=[check(6, 0)]), "args[0] index: expected an argument number from 0 to 5"),
    "argument index as a string": (block_mkdir(args=[check("1", 0)]), "args[0] index: expected"),
    "negative value": (block_mkdir(args=[check(1, -1, "SCMP_CMP_GT")]), "args[0] value: expected a whole number"),
    "value above 2**64-1": (block_mkdir(args=[check(1, 2 ** 64, "SCMP_CMP_LT")]), "args[0] value: expected"),
    "valueTwo a string": (block_mkdir(args=[{**check(1, 0o7777, "SCMP_CMP_MASKED_EQ"), "valueTwo": "0"}]),
                          "args[0] valueTwo: expected a whole number"),
    "unknown op": (block_mkdir(args=[check(1, 0, "SCMP_CMP_ANY")]), "args[0] op: expected one of"),
    "args an object": (block_mkdir(args=check(1, 0)), "args: expected a list of argument checks"),
    "args entry a list": (block_mkdir(args=[[1, 0, "SCMP_CMP_NE"]]), "args[0]: expected an object"),
    "one argument checked twice": (block_mkdir(args=[check(1, 0o777), check(1, 0o700)]), "checks argument 1 twice"),
    "unknown action": ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir"], "action": "SCMP_ACT_DENY"}]}, "action: expected one of"),
    "errnoRet out of range": (block_mkdir(errnoRet=70000), "errnoRet: expected an errno from 0 to 4095"),
    "defaultErrnoRet a string": ({**block_mkdir(), "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": "1"},
                                 "defaultErrnoRet: expected an errno"),
    "a capability misspelt": (block_mkdir(includes={"caps": ["CAP_CHOWNN"]}), "'CAP_CHOWNN' is not a capability"),
    "an architecture misspelt": (block_mkdir(includes={"arches": ["amd46"]}), "'amd46' is not an architecture"),
    "caps a string": (block_mkdir(includes={"caps": "CAP_CHOWN"}), "includes caps: expected a list of strings"),
    "syscalls misspelt": ({"defaultAction": "SCMP_ACT_ALLOW", "syscall": block_mkdir()["syscalls"]},
                          "unknown field 'syscall'"),
    "a rule field misspelt": (block_mkdir(include={"caps": ["CAP_CHOWN"]}), "unknown field 'include'"),
    # libseccomp keeps one of two rules for a call when their actions differ: here the LOG rule, allowing mkdir.
    "two actions for one call": ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_LOG"}, *block_mkdir()["syscalls"]]},
        "syscalls[1] (mkdir): conflicts with syscalls[0] (mkdir)"),
}


@pytest.mark.parametrize("name", MALFORMED)
def test_a_profile_pyrun_cannot_load_exactly_is_refused(busybox, clean_host, tmp_path, name):
    """Attack: mkdir must never run because a rule meant to stop it was quietly dropped."""
    profile, message = MALFORMED[name]
    (tmp_path / "profile.json").write_text(json.dumps(profile))
    shared = tmp_path / "shared"
    shared.mkdir()
    r = pyrun("run", "--rm", "--network", "none", "-v", f"{shared}:/data", "--security-opt",
              f"seccomp={tmp_path}/profile.json", busybox, "mkdir", "/data/made")
    assert not (shared / "made").exists(), "mkdir ran in the container"
    assert r.returncode == 125, (r.returncode, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("pyrun: invalid --security-opt: seccomp=") and message in lines[0], \
        r.stderr


def test_a_correct_profile_blocks_mkdir_and_unknown_names_are_skipped(busybox, clean_host, tmp_path):
    """The same profile written right is loaded and holds, checked from the host. A name this libseccomp does
    not know is skipped, as Docker does, so that one profile serves newer kernels too; and Docker's own
    fields (comment, empty includes, minKernel, arches, archMap, architectures) load."""
    profile = block_mkdir(names=["mkdir", "mkdirat", "a_call_from_the_future"], comment="no new directories",
                          includes={"minKernel": "3.10"}, excludes={"arches": ["s390x"], "caps": ["CAP_SYS_ADMIN"]},
                          args=[check(1, 0o7777 + 1, "SCMP_CMP_LT")])
    profile.update(architectures=["SCMP_ARCH_X86_64"], archMap=[{"architecture": "SCMP_ARCH_X86_64",
                                                                 "subArchitectures": None}])
    (tmp_path / "profile.json").write_text(json.dumps(profile))
    shared = tmp_path / "shared"
    shared.mkdir()
    r = pyrun("run", "--rm", "--network", "none", "-v", f"{shared}:/data", "--security-opt",
              f"seccomp={tmp_path}/profile.json", busybox, "sh", "-c", "mkdir /data/made; touch /data/touched")
    assert "Permission denied" in r.stderr and r.returncode == 0, (r.returncode, r.stderr)
    assert not (shared / "made").exists() and (shared / "touched").exists()
    # The control: the exclusion for CAP_SYS_ADMIN is honoured, and then mkdir reaches the kernel.
    r = pyrun("run", "--rm", "--network", "none", "-v", f"{shared}:/data", "--cap-add", "SYS_ADMIN",
              "--security-opt", f"seccomp={tmp_path}/profile.json", busybox, "mkdir", "/data/made")
    assert r.returncode == 0 and (shared / "made").is_dir(), r.stderr
