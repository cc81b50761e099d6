"""The container record (runtime/record.py): its shape is spelled in one module, and the layers import downwards.

These need no root: they parse pyrun's own source, read a record back the way exec does, and check
status() against real processes of this test's own making.
"""
import ast
import dataclasses
import glob
import json
import os
import subprocess

import pytest

from conftest import REPO
from runtime import state
from runtime.record import Record
from runtime.cgroups import Resources
from runtime.spec import build_spec

# What runtime/network/ may not import: the layers above it (a network module that reads containers goes
# through record.py, which state.py alone backs).
UPWARD = {"runtime.container", "runtime.lifecycle", "runtime.cli"}
# The record's keys, which no module but record.py may look up. ("Pid" and "StartTime" are state.py's: a
# process identity, which the record holds two of.)
KEYS = {"Id", "Name", "Created", "Path", "Args", "LogPath", "State", "Config", "HostConfig", "NetworkSettings",
        "Monitor", "Init", "Status", "Running", "ExitCode", "OOMKilled", "StartedAt", "FinishedAt", "Image", "Cmd",
        "Env", "Hostname", "WorkingDir", "Tty", "OpenStdin", "User", "StopTimeout", "NetworkMode", "AutoRemove",
        "ReadonlyRootfs", "Capabilities", "SecurityOpt", "UsernsMode", "Binds", "Memory", "NanoCpus", "PidsLimit",
        "Sandbox", "Timeout", "Tmpfs", "Ulimits", "LogConfig", "IDMappings", "IPAddress", "IPPrefixLen", "Gateway",
        "MacAddress", "SandboxKey", "Ports", "HostIp", "HostPort"}


def _modules(pattern: str) -> dict[str, ast.Module]:
    paths = sorted(glob.glob(os.path.join(REPO, pattern)))
    return {os.path.relpath(p, REPO): ast.parse(open(p).read(), p) for p in paths}


def imported(tree: ast.Module) -> set[str]:
    """Every module TREE imports, at the top or inside a function: "from runtime import x" as runtime.x."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return out


@pytest.mark.noroot
def test_network_modules_import_nothing_above_them():
    modules = _modules("runtime/network/*.py")
    assert len(modules) > 5
    upward = {path: sorted(imported(tree) & UPWARD) for path, tree in modules.items() if imported(tree) & UPWARD}
    assert upward == {}


@pytest.mark.noroot
def test_the_import_check_sees_imports_inside_functions():
    tree = ast.parse("def f():\n    from runtime import lifecycle\n    from runtime.container import run\n")
    assert imported(tree) & UPWARD == {"runtime.lifecycle", "runtime.container"}


def spelled_keys(tree: ast.Module) -> list[tuple[int, str]]:
    """(line, key) for each record[KEY] and record.get(KEY) in TREE whose KEY is one of the record's."""
    out = []
    for node in ast.walk(tree):
        key = None
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
            key = node.slice.value
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr in ("get", "setdefault", "pop", "update") and node.args
              and isinstance(node.args[0], ast.Constant)):
            key = node.args[0].value
        if key in KEYS:
            out.append((node.lineno, key))
    return out


@pytest.mark.noroot
def test_only_record_py_spells_the_records_keys():
    modules = {**_modules("runtime/*.py"), **_modules("runtime/network/*.py")}
    assert spelled_keys(modules.pop("runtime/record.py"))  # the check sees the one module that does
    assert {path: spelled_keys(tree) for path, tree in modules.items() if spelled_keys(tree)} == {}


def _described(spec, **kw) -> Record:
    record = Record({"Id": "ab" * 32, "Name": spec.name or "abababababab", "State": {"Status": "created"}})
    record.describe(spec, **{"hostname": "box", "remove": True, "log_path": "/x/container.log",
                             "log_config": {"max-size": "1m"}, **kw})
    return Record(json.loads(json.dumps(record.data)))  # as a later pyrun reads it from state.json


@pytest.mark.noroot
def test_what_exec_needs_reads_back_as_it_was_given():
    spec = build_spec("/", ["sh", "-c", "echo a=b"], name="web", hostname="box", env=["A=b=c", "EMPTY="],
                      workdir="/srv", volumes=["/tmp:/mnt:ro", "/var:/v"], init=True, read_only=True,
                      interactive=True, tty=True, cap_drop=["NET_RAW"], cap_add=["SYS_PTRACE"], user="1:2",
                      ulimit=["nofile=10:20"], stop_timeout="3", security_opt=["seccomp=unconfined"],
                      publish=["8080:80"], memory="64m", tmpfs=["/run"], timeout="9")
    back = _described(spec).spec()
    # Ports and limits are the host's business, done before exec: the record does not give them back.
    assert back == dataclasses.replace(spec, ports=(), resources=Resources(), tmpfs=(), timeout=None)


@pytest.mark.noroot
def test_the_record_on_disk_is_dockers_shape():
    spec = build_spec("/", ["true"], publish=["127.0.0.1:8080:80/udp", "8081:81"], memory="64m")
    record = _described(spec)
    data = record.data
    assert data["NetworkSettings"]["Ports"] == {"80/udp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}],
                                                "81/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8081"}]}
    assert data["HostConfig"]["Memory"] == 64 << 20 and data["HostConfig"]["AutoRemove"] is True
    assert data["HostConfig"]["LogConfig"] == {"Type": "file", "Config": {"max-size": "1m"}}
    assert data["Config"]["Cmd"] == ["true"] and data["Path"] == "true" and data["LogPath"] == "/x/container.log"
    assert record.published() == ["127.0.0.1:8080->80/udp", "0.0.0.0:8081->81/tcp"]
    assert record.bindings() == [("80/udp", "127.0.0.1", 8080), ("81/tcp", "0.0.0.0", 8081)]


def _exited_process() -> dict:
    """The identity of a process that has exited and been reaped."""
    child = subprocess.Popen(["true"])
    identity = {"Pid": child.pid, "StartTime": state.start_time(child.pid)}
    child.wait()
    return identity


@pytest.mark.noroot
def test_status_believes_the_kernel_not_the_record():
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        pid1 = {"Pid": sleeper.pid, "StartTime": state.start_time(sleeper.pid)}
        record = Record({"Id": "cd" * 32, "Name": "c", "State": {"Status": "created"}, "Monitor": state.me()})
        assert record.status() == "created"
        record.mark_running(sleeper.pid)
        assert (record.status(), record.pid, record.init) == ("running", sleeper.pid, pid1)
        assert record.shown()["State"]["Running"] is True and "Init" not in record.shown()
        record.data["Init"] = {**pid1, "StartTime": pid1["StartTime"] + 1}  # the same pid, another process
        assert record.status() == "stopping"
        record.data["Init"] = pid1
        record.monitor = _exited_process()
        assert record.status() == "dead" and record.shown()["State"] == {**record.data["State"], "Status": "dead",
                                                                          "Running": False}
        record.mark_exited(3, False)
        assert (record.status(), record.exit_code) == ("exited", 3)
    finally:
        sleeper.kill()
        sleeper.wait()
