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
load() checks all of it before anything exists.
"""
import json
import os
import re
import resource
from dataclasses import dataclass, field

from runtime import cgroups
from runtime.errors import PyrunError
from runtime.oci.state import OCI_VERSION
from runtime.security import ALL_CAPS, DEFAULT_CAPS
from runtime.spec import DEFAULT_PATH, Resources
from runtime.syscalls import MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_PRIVATE, MS_RDONLY, MS_REC

CLONE_NEWCGROUP = 0x02000000
DEFAULT_CPU_SHARES = 1024  # the kernel's for a new cgroup: a config that asks for it asks for nothing
# The spec's namespace names -> unshare(2) flags (namespaces.py has pyrun's own, by /proc/PID/ns names).
NAMESPACES = {"pid": 0x20000000, "network": 0x40000000, "mount": 0x00020000, "ipc": 0x08000000,
              "uts": 0x04000000, "cgroup": CLONE_NEWCGROUP, "user": 0x10000000}
# user_namespaces(7): at most 340 lines in one uid_map or gid_map, written at once in under a page; ids are
# 0 .. 4294966294 on both sides, as (uid_t)-1 means "no id".
MAX_MAP_LINES, MAX_MAP_BYTES, MAX_ID = 340, 4095, (1 << 32) - 2
RLIMITS = {name: getattr(resource, name) for name in dir(resource) if name.startswith("RLIMIT_")}
MS_SLAVE, MS_SHARED, MS_UNBINDABLE = 0x80000, 0x100000, 0x20000
# mount(8)'s option words as mount(2) flags: (set, clear). runc's table, less what pyrun does not do.
MOUNT_FLAGS = {
    "ro": (MS_RDONLY, 0), "rw": (0, MS_RDONLY), "nosuid": (MS_NOSUID, 0), "suid": (0, MS_NOSUID),
    "nodev": (MS_NODEV, 0), "dev": (0, MS_NODEV), "noexec": (MS_NOEXEC, 0), "exec": (0, MS_NOEXEC),
    "sync": (0x10, 0), "async": (0, 0x10), "dirsync": (0x80, 0), "mand": (0x40, 0), "nomand": (0, 0x40),
    "noatime": (0x400, 0), "atime": (0, 0x400), "nodiratime": (0x800, 0), "diratime": (0, 0x800),
    "relatime": (0x200000, 0), "norelatime": (0, 0x200000), "strictatime": (0x1000000, 0),
    "nostrictatime": (0, 0x1000000), "lazytime": (0x2000000, 0), "nolazytime": (0, 0x2000000),
    "silent": (0x8000, 0), "loud": (0, 0x8000),
}
PROPAGATION = {"private": MS_PRIVATE, "rprivate": MS_PRIVATE | MS_REC, "slave": MS_SLAVE, "rslave": MS_SLAVE | MS_REC,
               "shared": MS_SHARED, "rshared": MS_SHARED | MS_REC, "unbindable": MS_UNBINDABLE,
               "runbindable": MS_UNBINDABLE | MS_REC}
# The spec's hooks, in the order a container meets them (hooks.py runs them).
HOOKS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")
MOUNT_TYPES = ("bind", "proc", "sysfs", "tmpfs", "devpts", "mqueue", "cgroup")
# Namespaced sysctls (runc's list): any other would change the host's kernel, not the container's.
_SYSCTL_IPC = re.compile(r"kernel\.(msgmax|msgmnb|msgmni|sem|shmall|shmmax|shmmni|shm_rmid_forced)|fs\.mqueue\..+")
_ID = re.compile(r"[\w+.-]+")
# Two rules of a config.json for one call are left to libseccomp, as runc leaves them: engines' profiles rely on
# it (podman's names setns in its allow list and in a later ERRNO rule), and a runtime must run them as runc does.
SECCOMP_OVERLAPS = "libseccomp"


@dataclass(frozen=True)
class Capabilities:
    bounding: frozenset[str] = frozenset()
    effective: frozenset[str] = frozenset()
    permitted: frozenset[str] = frozenset()
    inheritable: frozenset[str] = frozenset()
    ambient: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Process:
    args: tuple[str, ...]
    env: tuple[str, ...]
    cwd: str
    uid: int = 0
    gid: int = 0
    additional_gids: tuple[int, ...] = ()
    umask: int | None = None
    terminal: bool = False
    console_size: tuple[int, int] | None = None   # (height, width)
    caps: Capabilities = field(default_factory=Capabilities)
    rlimits: tuple[tuple[str, int, int], ...] = ()  # (RLIMIT_NAME, soft, hard)
    no_new_privileges: bool = False
    oom_score_adj: int | None = None

    def path(self) -> str:
        """The PATH the executable is looked up in: the config's own, or the usual one (as runc does)."""
        for entry in self.env:
            if entry.startswith("PATH="):
                return entry[5:]
        return DEFAULT_PATH


@dataclass(frozen=True)
class Mount:
    destination: str
    type: str                    # one of MOUNT_TYPES
    source: str                  # a bind mount's: an absolute host path
    flags: int = 0               # mount(2) flags from the options, MS_BIND|MS_REC for rbind
    data: str = ""               # the options that are the filesystem's own (mode=755, size=64k)
    propagation: int = 0
    cleared: int = 0             # what the options clear (rw, suid, ...): in a user namespace, a host mount's
                                 # read-only, nosuid, nodev, noexec are locked, and asking to clear one is an error


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


def bad(where: str, why: str) -> PyrunError:
    return PyrunError(f"config.json {where}", why)


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
    _expect(config, dict, "", "an object")
    version = config.get("ociVersion")
    if not isinstance(version, str) or not version.startswith("1."):
        raise bad("ociVersion", f"{version!r}: expected a 1.x version of the runtime specification")
    root = _expect(config.get("root"), dict, "root", "an object with path")
    rootfs = os.path.join(path, _expect(root.get("path"), str, "root.path", "a path"))
    if not os.path.isdir(rootfs):
        raise bad("root.path", f"{rootfs} is not a directory")
    linux = _expect(config.get("linux", {}), dict, "linux", "an object")
    _refuse(linux, "linux", ("devices", "intelRdt", "personality", "mountLabel",
                             "rootfsPropagation", "timeOffsets"), "pyrun does not do it yet")
    namespaces = _namespaces(linux.get("namespaces") or [])
    hostname = config.get("hostname") or None
    if hostname and ("uts", None) not in namespaces:
        raise bad("hostname", "setting a hostname needs a new uts namespace (the spec says so)")
    process = _process(_expect(config.get("process"), dict, "process", "an object"))
    uid_map, gid_map = _id_maps(linux, namespaces, process)
    limits, devices = resources(linux.get("resources") or {})
    if not resources_need_no_devices(process.caps.bounding):
        raise bad("process.capabilities", "CAP_MKNOD needs the cgroup v1 devices controller, which this host "
                                          "lacks; drop CAP_MKNOD")
    parent, name = _cgroups_path(linux.get("cgroupsPath"), cid)
    seccomp = linux.get("seccomp")
    if seccomp is not None:
        from runtime import seccomp as seccomp_module

        seccomp = seccomp_module.check_profile(seccomp, "config.json linux.seccomp")
        seccomp_module.build(seccomp, process.caps.bounding, SECCOMP_OVERLAPS)  # what libseccomp refuses, now
    sysctl = tuple(sorted((_expect(linux.get("sysctl") or {}, dict, "linux.sysctl", "an object")).items()))
    for key, value in sysctl:
        _check_sysctl(key, value, namespaces)
    return Bundle(
        path=path, rootfs=rootfs, readonly=bool(root.get("readonly")), process=process, hostname=hostname,
        mounts=tuple(_mount(m, f"mounts[{i}]", path) for i, m in enumerate(config.get("mounts") or [])),
        namespaces=namespaces, uid_map=uid_map, gid_map=gid_map, cgroup_parent=parent, cgroup_name=name,
        resources=limits, devices=devices,
        masked=tuple(_paths(linux.get("maskedPaths"), "linux.maskedPaths")),
        readonly_paths=tuple(_paths(linux.get("readonlyPaths"), "linux.readonlyPaths")),
        sysctl=sysctl, seccomp=seccomp,
        annotations=_expect(config.get("annotations") or {}, dict, "annotations", "an object"), config=config,
        hooks=_hooks(config.get("hooks") or {}))


def _hooks(hooks) -> dict:
    """config.md's hooks: each an absolute path, args (argv, with its [0]), env (NAME=VALUE), timeout > 0."""
    out = {}
    for name, entries in _expect(hooks, dict, "hooks", "an object").items():
        if name not in HOOKS:
            continue  # a hook the spec adds later: unknown, so ignored, as the spec says
        checked = []
        for i, hook in enumerate(_expect(entries or [], list, f"hooks.{name}", "a list of hooks")):
            where = f"hooks.{name}[{i}]"
            hook = _expect(hook, dict, where, "an object with path")
            path = _expect(hook.get("path"), str, f"{where}.path", "an absolute path")
            if not path.startswith("/"):
                raise bad(f"{where}.path", f"{path!r}: expected an absolute path")
            entry = {"path": path}
            if hook.get("args") is not None:
                args = _expect(hook["args"], list, f"{where}.args", "a list of strings")
                if not all(isinstance(a, str) for a in args):
                    raise bad(f"{where}.args", "expected a list of strings")
                entry["args"] = args
            if hook.get("env") is not None:
                env = _expect(hook["env"], list, f"{where}.env", "a list of NAME=VALUE strings")
                if not all(isinstance(e, str) and "=" in e for e in env):
                    raise bad(f"{where}.env", "expected a list of NAME=VALUE strings")
                entry["env"] = env
            if hook.get("timeout") is not None:
                timeout = _expect(hook["timeout"], int, f"{where}.timeout", "a number of seconds")
                if timeout <= 0:
                    raise bad(f"{where}.timeout", f"{timeout}: expected a number of seconds above 0")
                entry["timeout"] = timeout
            checked.append(entry)
        out[name] = checked
    return out


# What a --process file leaves out comes from the container's own process, as runc fills it in.
INHERITED = ("capabilities", "noNewPrivileges", "rlimits", "oomScoreAdj", "apparmorProfile", "selinuxLabel")


def exec_process(config: dict, given: dict | None, args: list[str], tty: bool, cwd: str | None, env: list[str],
                 user: str | None, caps: list[str], no_new_privs: bool) -> Process:
    """`exec`'s process: the --process JSON (config.md's process object), or the container's own process with
    ARGS and the flags, as runc builds it; checked as create checks the container's."""
    if given is not None:
        p = {**{k: config["process"][k] for k in INHERITED if k in config["process"]},
             **_expect(given, dict, "--process", "a process object")}
    else:
        p = {**config["process"], "args": args, "terminal": tty}
        p.pop("consoleSize", None)
        p["env"] = [*(p.get("env") or []), *env]
        if cwd:
            p["cwd"] = cwd
        if user:
            uid, _, gid = user.partition(":")
            if not uid.isdigit() or not (gid.isdigit() or not gid):
                raise PyrunError("invalid --user", f"{user!r}: expected UID[:GID], numbers")
            p["user"] = {"uid": int(uid), "gid": int(gid or 0)}
        if caps:
            sets = {**(p.get("capabilities") or {})}
            for name in ("bounding", "effective", "permitted"):
                sets[name] = sorted({*(sets.get(name) or []), *caps})
            p["capabilities"] = sets
        if no_new_privs:
            p["noNewPrivileges"] = True
    return _process(p)


def _expect(value, kind, where: str, what: str):
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise bad(where or "the file", f"expected {what}, got {json.dumps(value)[:60]}")
    return value


def _refuse(obj: dict, where: str, fields, why: str) -> None:
    for name in fields:
        if obj.get(name):
            raise bad(f"{where}.{name}", f"{why}; leave it out")


def _process(p: dict) -> Process:
    args = _expect(p.get("args"), list, "process.args", "a list of strings, the command")
    if not args or not all(isinstance(a, str) for a in args):
        raise bad("process.args", "expected a non-empty list of strings, the command and its arguments")
    env = _expect(p.get("env") or [], list, "process.env", "a list of NAME=VALUE strings")
    for entry in env:
        if not isinstance(entry, str) or "=" not in entry:
            raise bad("process.env", f"{entry!r}: expected NAME=VALUE")
    cwd = _expect(p.get("cwd"), str, "process.cwd", "an absolute path")
    if not cwd.startswith("/"):
        raise bad("process.cwd", f"{cwd!r}: expected an absolute path")
    _refuse(p, "process", ("apparmorProfile",) if _lsm_enabled("apparmor") else (), "pyrun loads no AppArmor profile")
    _refuse(p, "process", ("selinuxLabel",) if _lsm_enabled("selinux") else (), "pyrun sets no SELinux label")
    _refuse(p, "process", ("ioPriority", "scheduler", "execCPUAffinity"), "pyrun does not set it yet")
    user = _expect(p.get("user") or {}, dict, "process.user", "an object with uid and gid")
    ids = [_expect(user.get(k, 0), int, f"process.user.{k}", "a number") for k in ("uid", "gid")]
    gids = _expect(user.get("additionalGids") or [], list, "process.user.additionalGids", "a list of numbers")
    umask = user.get("umask")
    size = p.get("consoleSize")
    return Process(
        args=tuple(args), env=tuple(env), cwd=os.path.normpath(cwd), uid=ids[0], gid=ids[1],
        additional_gids=tuple(_expect(g, int, "process.user.additionalGids", "numbers") for g in gids),
        umask=_expect(umask, int, "process.user.umask", "a number") if umask is not None else None,
        terminal=bool(p.get("terminal")),
        console_size=(int(size.get("height", 0)), int(size.get("width", 0))) if size else None,
        caps=_capabilities(p.get("capabilities") or {}), rlimits=_rlimits(p.get("rlimits") or []),
        no_new_privileges=bool(p.get("noNewPrivileges")),
        oom_score_adj=_expect(p["oomScoreAdj"], int, "process.oomScoreAdj", "a number")
        if p.get("oomScoreAdj") is not None else None)


def _lsm_enabled(name: str) -> bool:
    """Is the security module NAME on? Where it is off, runc ignores its field, and so does pyrun."""
    try:
        with open("/sys/kernel/security/lsm") as f:
            return name in f.read().split(",")
    except OSError:
        return False


def _capabilities(caps: dict) -> Capabilities:
    sets = {}
    for name in ("bounding", "effective", "permitted", "inheritable", "ambient"):
        names = set()
        for value in _expect(caps.get(name) or [], list, f"process.capabilities.{name}", "a list of names"):
            short = value.removeprefix("CAP_") if isinstance(value, str) and value.startswith("CAP_") else None
            if short not in ALL_CAPS:
                raise bad(f"process.capabilities.{name}", f"{value!r} is not a capability; expected a name such "
                                                          "as CAP_NET_ADMIN")
            names.add(short)
        sets[name] = frozenset(names)
    return Capabilities(**sets)


def _rlimits(rlimits: list) -> tuple:
    out = []
    for i, r in enumerate(rlimits):
        where = f"process.rlimits[{i}]"
        r = _expect(r, dict, where, "an object with type, soft and hard")
        if r.get("type") not in RLIMITS:
            raise bad(f"{where}.type", f"{r.get('type')!r} is not a limit; expected one of {', '.join(sorted(RLIMITS))}")
        soft, hard = (_expect(r.get(k), int, f"{where}.{k}", "a number") for k in ("soft", "hard"))
        if soft > hard:
            raise bad(where, f"soft limit {soft} is above the hard limit {hard}")
        out.append((r["type"], soft, hard))
    return tuple(out)


def _namespaces(entries: list) -> tuple:
    out = []
    for i, ns in enumerate(_expect(entries, list, "linux.namespaces", "a list")):
        where = f"linux.namespaces[{i}]"
        kind = _expect(ns, dict, where, "an object with type").get("type")
        if kind not in NAMESPACES:
            raise bad(f"{where}.type", f"{kind!r}: expected one of {', '.join(NAMESPACES)}")
        if any(k == kind for k, _ in out):
            raise bad(where, f"the {kind} namespace is listed twice")
        path = ns.get("path") or None
        if path is not None and (not os.path.isabs(path) or not os.path.exists(path)):
            raise bad(f"{where}.path", f"{path!r}: expected the absolute path of an existing namespace, such as "
                                       "/proc/PID/ns/net or /run/netns/NAME")
        if kind == "mount" and path:
            raise bad(where, "pyrun builds the container's root in a new mount namespace; it cannot join one")
        out.append((kind, path))
    if ("mount", None) not in out:
        raise bad("linux.namespaces", "pyrun needs a new mount namespace (type mount) to build the root in")
    return tuple(out)


def _id_maps(linux: dict, namespaces, process: Process) -> tuple[tuple, tuple]:
    """linux.uidMappings and gidMappings, checked as the kernel will check them when create writes them, and
    against the ids process.user needs: a mistake is an error naming the field, not a failed write later."""
    maps = {}
    for kind in ("uid", "gid"):
        where = f"linux.{kind}Mappings"
        entries = _expect(linux.get(f"{kind}Mappings") or [], list, where, "a list of containerID, hostID, size")
        if entries and not any(k == "user" for k, _ in namespaces):
            raise bad(where, "mappings need a user namespace: add {\"type\": \"user\"} to linux.namespaces")
        if not entries and ("user", None) in namespaces:
            raise bad(where, "a new user namespace needs its mappings, such as [{\"containerID\": 0, \"hostID\": "
                             "100000, \"size\": 65536}]")
        if len(entries) > MAX_MAP_LINES:
            raise bad(where, f"{len(entries)} mappings: the kernel takes at most {MAX_MAP_LINES}")
        out = []
        for i, entry in enumerate(entries):
            entry = _expect(entry, dict, f"{where}[{i}]", "an object with containerID, hostID and size")
            inside, outside, size = (_expect(entry.get(k), int, f"{where}[{i}].{k}", "a number")
                                     for k in ("containerID", "hostID", "size"))
            for name, first in (("containerID", inside), ("hostID", outside)):
                if first < 0 or size < 1 or first + size - 1 > MAX_ID:
                    raise bad(f"{where}[{i}]", f"{name} {first} and size {size}: expected ids within 0-{MAX_ID} "
                                               "and a size of at least 1")
            for j, (other_in, other_out, other_size) in enumerate(out):
                for name, a, b in (("containerID", inside, other_in), ("hostID", outside, other_out)):
                    if a < b + other_size and b < a + size:
                        raise bad(f"{where}[{i}]", f"its {name} range {a}-{a + size - 1} overlaps "
                                                   f"{where}[{j}]'s {b}-{b + other_size - 1}")
            out.append((inside, outside, size))
        if len("".join(f"{a} {b} {c}\n" for a, b, c in out)) > MAX_MAP_BYTES:
            raise bad(where, f"the mappings come to more than the {MAX_MAP_BYTES} bytes the kernel reads at once")
        maps[kind] = tuple(out)
    for kind, ids in (("uid", [process.uid]), ("gid", [process.gid, *process.additional_gids])):
        for n in ids if maps[kind] else ():
            if not any(inside <= n < inside + size for inside, _, size in maps[kind]):
                raise bad(f"linux.{kind}Mappings", f"no mapping holds container {kind} {n}, which process.user "
                                                   "runs as")
    return maps["uid"], maps["gid"]


def _mount(m, where: str, bundle: str) -> Mount:
    m = _expect(m, dict, where, "an object with destination, type, source and options")
    dest = _expect(m.get("destination"), str, f"{where}.destination", "an absolute path")
    if not dest.startswith("/") or ".." in dest.split("/"):
        raise bad(f"{where}.destination", f"{dest!r}: expected an absolute path without '..'")
    options = _expect(m.get("options") or [], list, f"{where}.options", "a list of strings")
    flags, clear, data, propagation = 0, 0, [], 0
    for option in options:
        if option in MOUNT_FLAGS:
            flags |= MOUNT_FLAGS[option][0]
            clear |= MOUNT_FLAGS[option][1]
        elif option in PROPAGATION:
            propagation = PROPAGATION[option]
        elif option in ("bind", "rbind"):
            flags |= MS_BIND | (MS_REC if option == "rbind" else 0)
        elif isinstance(option, str) and option and option not in ("defaults",):
            data.append(option)
    kind = m.get("type") or ("bind" if flags & MS_BIND else None)
    if flags & MS_BIND:
        kind = "bind"
    if kind not in MOUNT_TYPES:
        raise bad(f"{where}.type", f"{kind!r}: pyrun mounts {', '.join(MOUNT_TYPES)}")
    source = m.get("source") or kind
    if kind == "bind":
        if data:
            raise bad(f"{where}.options", f"{data[0]!r}: not an option for a bind mount; expected mount flags "
                                          "such as ro, nosuid, rbind or rprivate")
        flags |= MS_BIND
        source = os.path.join(bundle, source)  # a relative source is the bundle's (the spec's rule)
        if not os.path.exists(source):
            raise bad(f"{where}.source", f"{source} does not exist")
    _refuse(m, where, ("uidMappings", "gidMappings"), "pyrun makes no idmapped mounts from a config.json")
    return Mount(os.path.normpath(dest), kind, source, flags & ~clear, ",".join(data), propagation, clear)


def resources(r: dict) -> tuple[Resources, tuple]:
    _expect(r, dict, "linux.resources", "an object")
    _refuse(r, "linux.resources", ("blockIO", "hugepageLimits", "network", "rdma", "unified"),
            "pyrun limits only memory, cpu, pids and devices")
    memory = _expect(r.get("memory") or {}, dict, "linux.resources.memory", "an object")
    _refuse(memory, "linux.resources.memory", ("reservation", "swap", "kernel", "kernelTCP", "swappiness",
                                               "disableOOMKiller", "useHierarchy", "checkBeforeUpdate"),
            "pyrun sets only limit")
    cpu = _expect(r.get("cpu") or {}, dict, "linux.resources.cpu", "an object")
    if cpu.get("shares") not in (None, DEFAULT_CPU_SHARES):
        raise bad("linux.resources.cpu.shares", f"{cpu['shares']}: pyrun leaves the kernel's {DEFAULT_CPU_SHARES}")
    _refuse(cpu, "linux.resources.cpu", ("realtimeRuntime", "realtimePeriod", "cpus", "mems", "idle"),
            "pyrun sets only quota and period (and shares at the default)")
    quota, period = cpu.get("quota"), cpu.get("period")
    if period not in (None, cgroups.CPU_PERIOD_US):
        raise bad("linux.resources.cpu.period", f"{period}: pyrun's period is {cgroups.CPU_PERIOD_US} µs")
    if quota is not None and quota > 0:
        _expect(quota, int, "linux.resources.cpu.quota", "a number of microseconds")
    devices = [_device_rule(rule, f"linux.resources.devices[{i}]") for i, rule in enumerate(r.get("devices") or [])]
    limit = (r.get("pids") or {}).get("limit")
    mem = memory.get("limit")
    return Resources(
        memory=_expect(mem, int, "linux.resources.memory.limit", "bytes") if mem and mem > 0 else None,
        cpus=quota / cgroups.CPU_PERIOD_US if quota and quota > 0 else None,
        pids_limit=_expect(limit, int, "linux.resources.pids.limit", "a number") if limit and limit > 0 else None,
    ), tuple(devices)


def _device_rule(rule, where: str) -> tuple[str, str]:
    """A device cgroup rule as cgroup v1 writes it: ("allow", "c 1:3 rwm"). pyrun's own allowlist is added
    after the config's, as runc adds its own: a config's "deny all" first leaves exactly those."""
    rule = _expect(rule, dict, where, "an object with allow, type, major, minor and access")
    kind, access = rule.get("type") or "a", rule.get("access") or "rwm"
    if kind not in ("a", "b", "c") or not set(access) <= set("rwm"):
        raise bad(where, f"expected type a, b or c and access made of r, w, m, got {json.dumps(rule)}")
    number = lambda key: "*" if rule.get(key) in (None, -1) else str(_expect(rule[key], int, f"{where}.{key}", "a number"))  # noqa: E731
    text = "a" if kind == "a" else f"{kind} {number('major')}:{number('minor')} {access}"
    return ("allow" if rule.get("allow") else "deny", text)


def resources_need_no_devices(bounding: frozenset[str]) -> bool:
    """Without the v1 devices controller a container with CAP_MKNOD could make and open the host's disk."""
    return "MKNOD" not in bounding or cgroups.guards_devices()


def _cgroups_path(value, cid: str) -> tuple[str, str]:
    """(parent, name) of the container's cgroup in each hierarchy; pyrun's own parent without cgroupsPath."""
    if not value:
        return cgroups.PARENT, cid
    if ":" in value:
        raise bad("linux.cgroupsPath", f"{value!r} is systemd's slice:prefix:name form; pyrun drives cgroupfs, "
                                       "give a path such as /machine/ID")
    parts = [p for p in value.split("/") if p]
    if not parts or ".." in parts:
        raise bad("linux.cgroupsPath", f"{value!r}: expected a path such as /machine/ID")
    return "/".join(parts[:-1]), parts[-1]


def _paths(values, where: str) -> list[str]:
    values = _expect(values or [], list, where, "a list of absolute paths")
    for v in values:
        if not isinstance(v, str) or not v.startswith("/"):
            raise bad(where, f"{v!r}: expected an absolute path")
    return values


def _check_sysctl(key: str, value, namespaces) -> None:
    if not isinstance(value, str):
        raise bad(f"linux.sysctl.{key}", "expected a string value")
    if _SYSCTL_IPC.fullmatch(key) and ("ipc", None) in namespaces:
        return
    if key.startswith("net.") and ("network", None) in namespaces:
        return
    if key in ("kernel.hostname", "kernel.domainname") and ("uts", None) in namespaces:
        return
    raise bad(f"linux.sysctl.{key}", "not a sysctl of a namespace the container makes; it would change the host")


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
