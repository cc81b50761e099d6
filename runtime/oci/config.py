"""config.json: the OCI runtime specification's config.md, read into what pyrun can run.

A bundle is a directory holding config.json and (usually) the root
filesystem it names. An engine (podman, containerd) writes the bundle and
hands it to the runtime; everything the container is comes from that file:
the process (args, env, cwd, user, capabilities, rlimits), the root, the
mounts in order, the namespaces to make or join, the cgroup's limits, the
paths to mask, the seccomp filter.

The spec's rule for the unknown: a property the runtime does not know MUST be
ignored (configs grow new fields faster than runtimes), but a property it
knows and cannot honour must be an error: a container that runs without the
limit or the filter it was promised is worse than one that does not start.
So every field the spec defines is either honoured here or refused by name;
load() checks all of it before anything exists, a section at a time:

    config_process.py   process: what the program runs as (capabilities, rlimits, user)
    config_mounts.py    mounts: mount(2) flags and propagation, in the config's order
    config_linux.py     linux: namespaces, id maps, cgroup and devices, sysctl, masked paths
    config_hooks.py     hooks: what runs at each point of the container's life
    config_check.py     expect, refuse, bad: the words each section is checked in

This module holds the rest: root, hostname, annotations, the Bundle
they make, and the default config `pyrun-oci spec` prints.
"""
import json
import os
import re
from dataclasses import dataclass, field

from runtime import cgroups
from runtime.cgroups import Resources
from runtime.errors import PyrunError
from runtime.oci import config_hooks, config_linux, config_mounts, config_process
from runtime.oci.config_check import bad, expect, refuse
from runtime.oci.config_hooks import HOOKS  # noqa: F401  (features.py's, by this name)
from runtime.oci.config_linux import NAMESPACES  # noqa: F401  (init.py's, by this name)
from runtime.oci.config_mounts import Mount
from runtime.oci.config_process import DEFAULT_PATH, RLIMITS, Process  # noqa: F401  (RLIMITS: init_process.py's)
from runtime.oci.state import OCI_VERSION
from runtime.security import DEFAULT_CAPS

_ID = re.compile(r"[\w+.-]+")
HOST_NAME_MAX = 64
# Two rules of a config.json for one call are left to libseccomp, as runc leaves them: engines' profiles rely on
# it (podman's names setns in its allow list and in a later ERRNO rule), and a runtime must run them as runc does.
SECCOMP_OVERLAPS = "libseccomp"


@dataclass(frozen=True)
class Bundle:
    path: str                    # the bundle directory, absolute
    rootfs: str
    readonly: bool
    process: Process
    hostname: str | None = None
    mounts: tuple[Mount, ...] = ()
    namespaces: tuple[tuple[str, str | None], ...] = ()   # (type, path to join or None to make one)
    uid_map: tuple[tuple[int, int, int], ...] = ()   # linux.uidMappings: (containerID, hostID, size)
    gid_map: tuple[tuple[int, int, int], ...] = ()
    cgroup_parent: str = cgroups.PARENT
    cgroup_name: str = ""
    resources: Resources = field(default_factory=Resources)
    devices: tuple[tuple[str, str], ...] = ()   # linux.resources.devices as cgroup v1 rules
    masked: tuple[str, ...] = ()
    readonly_paths: tuple[str, ...] = ()
    sysctl: tuple[tuple[str, str], ...] = ()
    seccomp: dict | None = None
    annotations: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)  # config.json as read: `exec` takes its process from it
    hooks: dict = field(default_factory=dict)   # name -> [{"path", "args", "env", "timeout"}], checked

    def syncs_hooks(self) -> bool:
        """Must PID 1 stop before pivot_root for create to run hooks, and learn the state they get?"""
        return any(self.hooks.get(name) for name in ("prestart", "createRuntime", "createContainer",
                                                     "startContainer"))

    def cgroup(self):
        """The Cgroup step create journals for this bundle (pyrun-oci adds freezer, for pause and resume)."""
        return cgroups.Cgroup(self.cgroup_name, self.resources.memory, self.resources.cpus, self.resources.pids_limit,
                              parent=self.cgroup_parent, devices=self.devices,
                              controllers=(*cgroups.CONTROLLERS, "freezer"))

    def makes(self, kind: str) -> bool:
        return (kind, None) in self.namespaces

    def has(self, kind: str) -> bool:
        return any(k == kind for k, _ in self.namespaces)

    def map_text(self, kind: str) -> str:
        """uid_map's or gid_map's content: one "inside outside count" line a mapping."""
        return "".join(f"{inside} {outside} {size}\n" for inside, outside, size in getattr(self, f"{kind}_map"))


def check_id(cid: str) -> str:
    """A container id names a directory under --root: nothing that could climb out of it."""
    if not _ID.fullmatch(cid) or cid in (".", ".."):
        raise PyrunError("invalid container id", f"{cid!r}: expected letters, digits and + - . _")
    return cid


def load(bundle: str, cid: str) -> Bundle:
    """Read BUNDLE/config.json into a Bundle, or raise PyrunError naming the field."""
    path = os.path.abspath(bundle)
    try:
        with open(os.path.join(path, "config.json")) as f:
            config = json.load(f)
    except OSError as e:
        raise PyrunError("config.json", f"{os.path.join(path, 'config.json')}: {e.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PyrunError("config.json", f"not JSON: {e}") from None
    expect(config, dict, "", "an object")
    version = config.get("ociVersion")
    if not isinstance(version, str) or not version.startswith("1."):
        raise bad("ociVersion", f"{version!r}: expected a 1.x version of the runtime specification")
    root = expect(config.get("root"), dict, "root", "an object with path")
    given = expect(root.get("path"), str, "root.path", "a path")
    rootfs = os.path.join(path, given)  # "" would be the bundle itself, config.json and all: the spec REQUIRES one
    if not given or not os.path.isdir(rootfs):
        seen = f"{given!r} ({rootfs}) is not a directory" if given else "''"
        raise bad("root.path", f"{seen}: expected the root filesystem's directory, absolute or in the bundle "
                               "(such as rootfs)")
    linux = expect(config.get("linux"), dict, "linux", "an object", {})
    refuse(linux, "linux", ("devices", "intelRdt", "personality", "mountLabel",
                            "rootfsPropagation", "timeOffsets"), "pyrun does not do it yet")
    namespaces = config_linux.namespaces(linux.get("namespaces"))
    hostname = expect(config.get("hostname"), str, "hostname", "a string", "") or None
    if hostname and ("uts", None) not in namespaces:
        raise bad("hostname", "setting a hostname needs a new uts namespace (the spec says so)")
    if hostname and len(hostname.encode()) > HOST_NAME_MAX:  # sethostname(2)'s EINVAL, late in PID 1
        raise bad("hostname", f"{hostname!r}: expected at most {HOST_NAME_MAX} bytes")
    process = config_process.read(expect(config.get("process"), dict, "process", "an object"))
    uid_map, gid_map = config_linux.id_maps(linux, namespaces, process)
    limits, devices = config_linux.resources(linux.get("resources"))
    if not config_linux.resources_need_no_devices(process.caps.bounding):
        raise bad("process.capabilities", "CAP_MKNOD needs the cgroup v1 devices controller, which this host "
                                          "lacks; drop CAP_MKNOD")
    parent, name = config_linux.cgroups_path(linux.get("cgroupsPath"), cid)
    seccomp = linux.get("seccomp")
    if seccomp is not None:
        from runtime import seccomp as seccomp_module

        seccomp = seccomp_module.check_profile(seccomp, "config.json linux.seccomp")
        seccomp_module.build(seccomp, process.caps.bounding, SECCOMP_OVERLAPS)  # what libseccomp refuses, now
    sysctl = tuple(sorted(expect(linux.get("sysctl"), dict, "linux.sysctl", "an object", {}).items()))
    for key, value in sysctl:
        config_linux.check_sysctl(key, value, namespaces)
    return Bundle(
        path=path, rootfs=rootfs, readonly=expect(root.get("readonly"), bool, "root.readonly", "true or false", False),
        process=process, hostname=hostname,
        mounts=tuple(config_mounts.read(m, f"mounts[{i}]", path)
                     for i, m in enumerate(expect(config.get("mounts"), list, "mounts", "a list of mounts", []))),
        namespaces=namespaces, uid_map=uid_map, gid_map=gid_map, cgroup_parent=parent, cgroup_name=name,
        resources=limits, devices=devices,
        masked=tuple(config_linux.paths(linux.get("maskedPaths"), "linux.maskedPaths")),
        readonly_paths=tuple(config_linux.paths(linux.get("readonlyPaths"), "linux.readonlyPaths")),
        sysctl=sysctl, seccomp=seccomp,
        annotations=_annotations(config.get("annotations")), config=config,
        hooks=config_hooks.read(config.get("hooks")))


def _annotations(annotations) -> dict:
    """config.md's annotations: a map of strings to strings (the state `state` prints has them as given)."""
    annotations = expect(annotations, dict, "annotations", "an object of strings", {})
    for key, value in annotations.items():
        expect(value, str, f"annotations.{key}", "a string")
    return annotations


def default() -> dict:
    """`pyrun-oci spec`'s config.json: runc's, with Docker's capabilities and pyrun's masked paths."""
    from runtime.rootfs import MASKED, READ_ONLY

    caps = [f"CAP_{c}" for c in sorted(DEFAULT_CAPS - {"MKNOD"} if not cgroups.guards_devices() else DEFAULT_CAPS)]
    safe = ["nosuid", "noexec", "nodev"]
    return {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": False, "user": {"uid": 0, "gid": 0}, "args": ["sh"],
            "env": [f"PATH={DEFAULT_PATH}", "TERM=xterm"], "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "pyrun",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": [*safe, "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": safe},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": [*safe, "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": [*safe, "relatime", "ro"]},
        ],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
            "maskedPaths": list(MASKED),
            "readonlyPaths": list(READ_ONLY),
        },
    }
