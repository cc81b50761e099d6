"""A config.json field of the wrong JSON type is a one-line error naming it, never a Python traceback.

config.json comes from an engine or a hand: a number in place of a string, a
list where the spec has an object, `true` for a number or "false" for a
boolean (truthy in Python: a device rule that reads "allow": "false" would
allow). runc refuses each as Go's JSON decoder does; pyrun-oci reads each
field with config_check.expect, where it is read. The table runs the real
`pyrun-oci create`; the seeded mutations run config.load itself, hundreds of
times, in-process.
"""
import copy
import json
import os
import random

import pytest

from ocitools import edit as _edit, make_bundle, put, refused_by_create

USERNS = [{"type": "user"}]
MAPS = [{"containerID": 0, "hostID": 100000, "size": 65536}]
SECCOMP = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}
HOOK = {"path": "/bin/true", "args": ["true"], "env": ["A=1"], "timeout": 5}


def _userns(path: str, value):
    """A valid user namespace and its maps, then PATH (of linux.uid/gidMappings) set to VALUE."""
    def edit(config):
        config["linux"]["namespaces"] += USERNS
        config["linux"]["uidMappings"], config["linux"]["gidMappings"] = copy.deepcopy(MAPS), copy.deepcopy(MAPS)
        put(config, path, value)
    return edit


# (edit, the start of the error after "config.json ") for each section's fields.
CASES = [
    (_edit("process.args", "sh"), "process.args"),
    (_edit("process.args", ["sh", 1]), "process.args"),
    (_edit("process.env", "PATH=/bin"), "process.env"),
    (_edit("process.env", [1]), "process.env"),
    (_edit("process.env", False), "process.env"),
    (_edit("process.cwd", 1), "process.cwd"),
    (_edit("process.user", [0, 0]), "process.user"),
    (_edit("process.user.uid", True), "process.user.uid"),
    (_edit("process.user.gid", "0"), "process.user.gid"),
    (_edit("process.user.additionalGids", ["1"]), "process.user.additionalGids[0]"),
    (_edit("process.user.umask", "022"), "process.user.umask"),
    (_edit("process.terminal", "false"), "process.terminal"),
    (_edit("process.noNewPrivileges", 1), "process.noNewPrivileges"),
    (_edit("process.capabilities", ["CAP_KILL"]), "process.capabilities"),
    (_edit("process.capabilities.bounding", "CAP_KILL"), "process.capabilities.bounding"),
    (_edit("process.capabilities.effective", [1]), "process.capabilities.effective"),
    (_edit("process.rlimits", {"type": "RLIMIT_NOFILE", "soft": 1, "hard": 1}), "process.rlimits"),
    (_edit("process.rlimits", [["RLIMIT_NOFILE", 1, 1]]), "process.rlimits[0]"),
    (_edit("process.rlimits.0.type", ["RLIMIT_NOFILE"]), "process.rlimits[0].type"),
    (_edit("process.rlimits.0.soft", "1024"), "process.rlimits[0].soft"),
    (_edit("process.rlimits.0.hard", True), "process.rlimits[0].hard"),
    (_edit("process.consoleSize", [24, 80]), "process.consoleSize"),
    (_edit("process.consoleSize", {"height": "24", "width": 80}), "process.consoleSize.height"),
    (_edit("process.oomScoreAdj", "100"), "process.oomScoreAdj"),
    (_edit("process.oomScoreAdj", True), "process.oomScoreAdj"),
    (_edit("root", "rootfs"), "root"),
    (_edit("root.path", 1), "root.path"),
    (_edit("root.readonly", "false"), "root.readonly"),
    (_edit("hostname", 1), "hostname"),
    (_edit("hostname", ["pyrun"]), "hostname"),
    (_edit("mounts", {"destination": "/proc", "type": "proc"}), "mounts"),
    (_edit("mounts", False), "mounts"),
    (_edit("mounts.0", "proc"), "mounts[0]"),
    (_edit("mounts.0.destination", 1), "mounts[0].destination"),
    (_edit("mounts.1.options", "nosuid"), "mounts[1].options"),
    (_edit("mounts.1.options.0", 1), "mounts[1].options[0]"),
    (_edit("mounts.1.options.0", ["nosuid"]), "mounts[1].options[0]"),
    (_edit("mounts.0.type", ["proc"]), "mounts[0].type"),
    (_edit("mounts.0.type", 1), "mounts[0].type"),
    (_edit("mounts.0.source", 1), "mounts[0].source"),
    (_edit("mounts", [{"destination": "/x", "type": "bind", "source": 1, "options": ["rbind"]}]), "mounts[0].source"),
    (_edit("linux", ["namespaces"]), "linux"),
    (_edit("linux.namespaces", {"type": "mount"}), "linux.namespaces"),
    (_edit("linux.namespaces.0", "pid"), "linux.namespaces[0]"),
    (_edit("linux.namespaces.0.type", []), "linux.namespaces[0].type"),
    (_edit("linux.namespaces.0.type", 1), "linux.namespaces[0].type"),
    (_edit("linux.namespaces.1.path", 1), "linux.namespaces[1].path"),
    (_userns("linux.uidMappings", MAPS[0]), "linux.uidMappings"),
    (_userns("linux.uidMappings.0", [0, 100000, 65536]), "linux.uidMappings[0]"),
    (_userns("linux.uidMappings.0.hostID", "100000"), "linux.uidMappings[0].hostID"),
    (_userns("linux.gidMappings.0.size", True), "linux.gidMappings[0].size"),
    (_edit("linux.resources", [{"memory": {}}]), "linux.resources"),
    (_edit("linux.resources.memory", 1 << 28), "linux.resources.memory"),
    (_edit("linux.resources.memory", {"limit": "x"}), "linux.resources.memory.limit"),
    (_edit("linux.resources.memory", {"limit": True}), "linux.resources.memory.limit"),
    (_edit("linux.resources.memory", {"limit": [1 << 28]}), "linux.resources.memory.limit"),
    (_edit("linux.resources.cpu", "50%"), "linux.resources.cpu"),
    (_edit("linux.resources.cpu", {"quota": "50000"}), "linux.resources.cpu.quota"),
    (_edit("linux.resources.cpu", {"period": "100000"}), "linux.resources.cpu.period"),
    (_edit("linux.resources.cpu", {"shares": True}), "linux.resources.cpu.shares"),
    (_edit("linux.resources.pids", 100), "linux.resources.pids"),
    (_edit("linux.resources.pids", {"limit": "100"}), "linux.resources.pids.limit"),
    (_edit("linux.resources.pids", {"limit": True}), "linux.resources.pids.limit"),
    (_edit("linux.resources.devices", {"allow": False}), "linux.resources.devices"),
    (_edit("linux.resources.devices.0", "a"), "linux.resources.devices[0]"),
    (_edit("linux.resources.devices.0.allow", "false"), "linux.resources.devices[0].allow"),
    (_edit("linux.resources.devices.0.access", 1), "linux.resources.devices[0].access"),
    (_edit("linux.resources.devices.0.type", ["c"]), "linux.resources.devices[0].type"),
    (_edit("linux.resources.devices", [{"allow": False, "type": "c", "major": "1", "minor": 3}]),
     "linux.resources.devices[0].major"),
    (_edit("linux.sysctl", ["net.ipv4.ip_forward=1"]), "linux.sysctl"),
    (_edit("linux.sysctl", {"net.ipv4.ip_forward": 1}), "linux.sysctl.net.ipv4.ip_forward"),
    (_edit("linux.sysctl", {"kernel.x\ny": 1}), "linux.sysctl.kernel.x\\ny"),  # the key's newline, escaped
    (_edit("linux.maskedPaths", "/proc/kcore"), "linux.maskedPaths"),
    (_edit("linux.maskedPaths.0", 1), "linux.maskedPaths[0]"),
    (_edit("linux.readonlyPaths", [["/proc/sys"]]), "linux.readonlyPaths[0]"),
    (_edit("linux.cgroupsPath", 1), "linux.cgroupsPath"),
    (_edit("linux.seccomp", ["SCMP_ACT_ALLOW"]), "linux.seccomp"),
    (_edit("linux.seccomp", {**SECCOMP, "defaultAction": ["SCMP_ACT_ALLOW"]}), "linux.seccomp: defaultAction"),
    (_edit("linux.seccomp", {**SECCOMP, "syscalls": [{"names": ["mkdir"], "action": ["SCMP_ACT_ERRNO"]}]}),
     "linux.seccomp: syscalls[0] (mkdir) action"),
    (_edit("linux.seccomp", {**SECCOMP, "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ERRNO",
                                                      "args": [{"index": 0, "value": 8, "op": {}}]}]}),
     "linux.seccomp: syscalls[0] (personality) args[0] op"),
    (_edit("linux.seccomp", {**SECCOMP, "syscalls": {"names": ["mkdir"]}}), "linux.seccomp: syscalls"),
    (_edit("hooks", [HOOK]), "hooks"),
    (_edit("hooks", {"prestart": HOOK}), "hooks.prestart"),
    (_edit("hooks", {"prestart": ["/bin/true"]}), "hooks.prestart[0]"),
    (_edit("hooks", {"prestart": [{**HOOK, "path": 1}]}), "hooks.prestart[0].path"),
    (_edit("hooks", {"poststart": [{**HOOK, "args": "true"}]}), "hooks.poststart[0].args"),
    (_edit("hooks", {"poststop": [{**HOOK, "env": [1]}]}), "hooks.poststop[0].env"),
    (_edit("hooks", {"createRuntime": [{**HOOK, "timeout": "5"}]}), "hooks.createRuntime[0].timeout"),
    (_edit("hooks", {"createContainer": [{**HOOK, "timeout": True}]}), "hooks.createContainer[0].timeout"),
    (_edit("annotations", ["org.example=1"]), "annotations"),
    (_edit("annotations", {"org.example": 1}), "annotations.org.example"),
]


@pytest.mark.parametrize("i", range(len(CASES)), ids=[f"{i}-{field}" for i, (_, field) in enumerate(CASES)])
def test_a_wrongly_typed_field_fails_create_naming_it(busybox, tmp_path, i):
    edit, field = CASES[i]
    err = refused_by_create(make_bundle(str(tmp_path / "b"), busybox, ["true"], edit), f"types{i}", str(tmp_path))
    assert err.startswith(f"pyrun-oci: config.json {field}") and "expected" in err, err


def _full_config(bundle: str) -> dict:
    """`spec`'s config with every section pyrun-oci reads filled in, valid: the mutations' starting point."""
    from runtime.oci import config

    c = config.default()
    c["root"]["readonly"] = False
    p = c["process"]
    p["user"] = {"uid": 0, "gid": 0, "additionalGids": [1, 2], "umask": 18}
    p["consoleSize"] = {"height": 24, "width": 80}
    p["oomScoreAdj"] = 100
    p["capabilities"].update(inheritable=[], ambient=[])
    c["mounts"].append({"destination": "/data", "type": "bind", "source": "data", "options": ["rbind", "ro"]})
    linux = c["linux"]
    linux["namespaces"] = [{"type": t} for t in ("pid", "network", "uts", "mount", "user", "cgroup")]
    linux["namespaces"].append({"type": "ipc", "path": "/proc/self/ns/ipc"})
    linux["uidMappings"], linux["gidMappings"] = copy.deepcopy(MAPS), copy.deepcopy(MAPS)
    linux["resources"] = {"memory": {"limit": 1 << 28}, "cpu": {"quota": 50000, "period": 100000, "shares": 1024},
                          "pids": {"limit": 100},
                          "devices": [{"allow": False, "access": "rwm"},
                                      {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"}]}
    linux["sysctl"] = {"net.ipv4.ip_forward": "1"}
    linux["cgroupsPath"] = "/machine/types"
    linux["seccomp"] = {**SECCOMP, "architectures": ["SCMP_ARCH_X86_64"], "syscalls": [
        *SECCOMP["syscalls"], {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
                               "args": [{"index": 0, "value": 8, "valueTwo": 0, "op": "SCMP_CMP_EQ"}]}]}
    c["hooks"] = {name: [dict(HOOK)] for name in ("prestart", "createRuntime", "poststop")}
    c["annotations"] = {"org.example": "1"}
    return c


def _fields(obj, path=()):
    """Every field and entry of OBJ, as the path of keys and indexes to it."""
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    for key, value in items:
        yield (*path, key)
        yield from _fields(value, (*path, key))


def _json_type(value) -> str:
    return {bool: "boolean", int: "number", float: "number", str: "string", list: "array",
            dict: "object"}.get(type(value), "null")


# A value of each JSON type, the awkward ones included: unhashable, empty, bool against int.
VALUES = {"null": [None], "boolean": [True, False], "number": [0, 1, -1, 1 << 40, 1.5],
          "string": ["", "x", "/x", "CAP_KILL", "1"], "array": [[], ["x"], [1], [[]], [{}]],
          "object": [{}, {"x": 1}, {"type": []}, {"path": 1}]}


@pytest.mark.noroot
def test_random_wrongly_typed_fields_load_or_are_a_pyrun_error(tmp_path):
    from runtime.errors import PyrunError
    from runtime.oci import config

    os.makedirs(tmp_path / "rootfs")
    os.makedirs(tmp_path / "data")
    base = _full_config(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps(base))
    config.load(str(tmp_path), "types")  # the starting point is valid
    fields = list(_fields(base))
    rng = random.Random(20240611)
    crashes, loaded = [], 0
    for _ in range(400):
        path = rng.choice(fields)
        mutated = copy.deepcopy(base)
        parent = mutated
        for key in path[:-1]:
            parent = parent[key]
        kind = rng.choice([k for k in VALUES if k != _json_type(parent[path[-1]])])
        parent[path[-1]] = copy.deepcopy(rng.choice(VALUES[kind]))
        (tmp_path / "config.json").write_text(json.dumps(mutated))
        try:
            config.load(str(tmp_path), "types")
            loaded += 1
        except PyrunError as e:
            if "\n" in str(e):
                crashes.append((path, parent[path[-1]], f"a message of more than one line: {e}"))
        except Exception as e:  # noqa: BLE001 (what this test looks for)
            crashes.append((path, parent[path[-1]], f"{type(e).__name__}: {e}"))
    assert crashes == [], f"{len(crashes)} of 400 mutations crashed config.load: {crashes[:10]}"
    assert loaded < 400  # the mutations do reach the checks
