"""ContainerSpec: everything a container is, parsed and validated before anything is touched.

A runtime that fails half way through setup has to undo what it did; one that
refuses bad input up front has nothing to undo. Every parser here raises
PyrunError naming the value and what would have been accepted.
"""
import os
import re
from dataclasses import dataclass, field

from runtime import users
from runtime.cgroups import Resources
from runtime.errors import PyrunError
from runtime.network.ports import PortMapping, check_fd_budget, parse_port
from runtime.security import ALL_CAPS, DEFAULT_CAPS

NETWORK_MODES = ("bridge", "none", "host")
USERNS_MODES = ("host", "auto")
BUILT_IN = "pyrun"  # runtime/init.py makes the container in pyrun's own process: no bundle, no OCI verbs
# --runtime's default: pyrun run is the engine, pyrun-oci's create, start and delete (oci/lifecycle.py, called in
# pyrun's process) make the container from the config.json the flags become, as Docker hands one to runc.
DEFAULT_RUNTIME = "pyrun-oci"
# Matched with fullmatch: "$" in re.match also matches before a trailing newline ("web\n").
_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}")
_HOSTNAME = re.compile(r"[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*")
_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
# --sandbox: each part, unless its own flag is given (README, "Running untrusted code"). Also: no capabilities
# but those --cap-add names, and, as always, no_new_privs and the default seccomp profile.
SANDBOX = {"user": "65534:65534", "network": "none", "read_only": True, "init": True, "tmpfs": "/tmp:size=64m",
           "memory": "256m", "pids_limit": "64", "cpus": "1", "timeout": "60",
           "userns": "auto"}
MIN_MEMORY = 6 << 20  # Docker's floor: below this the runtime itself cannot start
MAX_PIDS = 1 << 22    # PID_MAX_LIMIT on 64-bit: the most pids.max accepts, and more pids than Linux can have


@dataclass(frozen=True)
class BindMount:
    source: str      # absolute host path
    target: str      # absolute path inside the container, no '..'
    readonly: bool = False


@dataclass(frozen=True)
class Tmpfs:
    target: str                # absolute path inside the container, no '..'
    flags: tuple[str, ...]     # of ro, nosuid, nodev, noexec
    data: str                  # tmpfs's own options, made of numbers pyrun checked: "size=67108864,mode=1777"

    def options(self) -> str:
        return ",".join([*self.flags, *filter(None, [self.data])])


@dataclass(frozen=True)
class Ulimit:
    name: str                  # Docker's name: nofile, nproc, ... (ULIMITS)
    soft: int                  # -1: unlimited (RLIM_INFINITY)
    hard: int


# Docker's --ulimit names and the kernel's RLIMIT_* numbers (asm-generic/resource.h).
ULIMITS = {"cpu": 0, "fsize": 1, "data": 2, "stack": 3, "core": 4, "rss": 5, "nproc": 6, "nofile": 7, "memlock": 8,
           "as": 9, "locks": 10, "sigpending": 11, "msgqueue": 12, "nice": 13, "rtprio": 14, "rttime": 15}
_TMPFS_FLAGS = {"ro": ("ro", True), "rw": ("ro", False), "noexec": ("noexec", True), "exec": ("noexec", False),
                "nosuid": ("nosuid", True), "suid": ("nosuid", False), "nodev": ("nodev", True), "dev": ("nodev", False)}
_TMPFS_DATA = {"size": r"(\d+)([kmg]?)", "nr_inodes": r"(\d+)([kmg]?)", "mode": r"[0-7]{3,4}", "uid": r"\d+",
               "gid": r"\d+"}


@dataclass(frozen=True)
class ContainerSpec:
    rootfs: str
    command: tuple[str, ...]
    name: str | None = None
    hostname: str | None = None
    env: tuple[tuple[str, str], ...] = ()
    workdir: str = "/"
    mounts: tuple[BindMount, ...] = ()
    network: str = "bridge"
    ports: tuple[PortMapping, ...] = ()
    resources: Resources = field(default_factory=Resources)
    caps: frozenset[str] = DEFAULT_CAPS
    read_only: bool = False
    init: bool = False
    interactive: bool = False
    tty: bool = False
    seccomp_setting: str = "default"   # as given: default, unconfined or a profile's path
    seccomp: dict | None = None        # a profile file's contents, read on the host before the fork
    user: str | None = None            # -u USER[:GROUP], looked up in the container (users.py); None: root
    tmpfs: tuple[Tmpfs, ...] = ()
    ulimits: tuple[Ulimit, ...] = ()
    stop_timeout: float = 10.0         # seconds from SIGTERM to SIGKILL when pyrun stops it (Docker's 10)
    sandbox: bool = False              # --sandbox: recorded for inspect; its parts are in the fields above
    timeout: float | None = None       # --timeout: seconds the command may run; None: no limit
    userns: str = "host"               # host: root is the host's root; auto: a host uid range of its own (userns.py)
    runtime: str = DEFAULT_RUNTIME     # or BUILT_IN, or another OCI runtime that makes the container from a bundle (oci/client.py)


def parse_memory(value: str) -> int:
    m = re.fullmatch(r"(\d+)([bkmg]?)", value.strip().lower())
    if not m:
        raise PyrunError("invalid --memory", f"{value!r}: expected a number with an optional unit b, k, m or g (e.g. 64m)")
    size = int(m[1]) * _UNITS[m[2]]
    if size < MIN_MEMORY:
        raise PyrunError("invalid --memory", f"{value!r}: the minimum is 6m")
    return size


def parse_cpus(value: str) -> float:
    try:
        cpus = float(value)
    except ValueError:
        cpus = -1.0
    ncpu = os.cpu_count() or 1
    if not (0.01 <= cpus <= ncpu):
        raise PyrunError("invalid --cpus", f"{value!r}: expected a number from 0.01 to {ncpu} (this machine's CPUs)")
    return cpus


def parse_pids_limit(value: str) -> int | None:
    try:
        limit = int(value)
    except ValueError:
        limit = 0
    if limit == -1:
        return None
    if not 1 <= limit <= MAX_PIDS:
        raise PyrunError("invalid --pids-limit", f"{value!r}: expected a whole number from 1 to {MAX_PIDS}, "
                                                 "or -1 for no limit")
    return limit


def parse_env(value: str) -> tuple[str, str] | None:
    key, eq, val = value.partition("=")
    if not _ENV_KEY.fullmatch(key):
        raise PyrunError("invalid -e", f"{value!r}: expected NAME=VALUE or NAME, NAME made of letters, digits and _")
    if not eq:  # Docker's "-e NAME": pass the host's value through, if it has one
        return (key, os.environ[key]) if key in os.environ else None
    return key, val


def _container_path(value: str, path: str, option: str) -> str:
    if not path.startswith("/"):
        raise PyrunError(f"invalid {option}", f"{value!r}: the container path {path!r} must be absolute")
    if ".." in path.split("/"):
        raise PyrunError(f"invalid {option}", f"{value!r}: the container path {path!r} may not contain '..'")
    return os.path.normpath(path)


def parse_workdir(value: str) -> str:
    return _container_path(value, value, "-w")


def parse_volume(value: str) -> BindMount:
    parts = value.split(":")
    mode = parts.pop() if len(parts) == 3 else "rw"
    if len(parts) != 2 or not all(parts) or mode not in ("ro", "rw"):
        raise PyrunError("invalid -v", f"{value!r}: expected HOST_PATH:CONTAINER_PATH[:ro|rw]")
    source = os.path.abspath(parts[0])
    if not os.path.exists(source):
        raise PyrunError("invalid -v", f"{value!r}: the host path {source} does not exist")
    target = _container_path(value, parts[1], "-v")
    if target == "/":
        raise PyrunError("invalid -v", f"{value!r}: the container path may not be / (the container's root is "
                                       f"ROOTFS); bind below it, e.g. {parts[0]}:/data")
    return BindMount(source, target, mode == "ro")


def parse_tmpfs(value: str) -> Tmpfs:
    """--tmpfs PATH[:OPTIONS], as Docker: noexec,nosuid,nodev unless OPTIONS say exec, suid or dev."""
    path, _, options = value.partition(":")
    target = _container_path(value, path, "--tmpfs")
    if target == "/":
        raise PyrunError("invalid --tmpfs", f"{value!r}: the container path may not be /; use --read-only with "
                                            "a --tmpfs below it, e.g. /tmp")
    flags = {"ro": False, "noexec": True, "nosuid": True, "nodev": True}
    data = {}
    for option in filter(None, options.split(",")):
        key, eq, number = option.partition("=")
        if not eq and key in _TMPFS_FLAGS:
            flag, on = _TMPFS_FLAGS[key]
            flags[flag] = on
        elif eq and key in _TMPFS_DATA and (m := re.fullmatch(_TMPFS_DATA[key], number.lower())):
            data[key] = str(int(m[1]) * _UNITS[m[2]]) if m.groups() else number
        else:
            raise PyrunError("invalid --tmpfs", f"{value!r}: {option!r} is not an option pyrun knows; expected "
                                                "size=N[k|m|g], mode=OCTAL, uid=N, gid=N, nr_inodes=N, ro, rw, "
                                                "exec, noexec, suid, nosuid, dev or nodev")
    return Tmpfs(target, tuple(f for f, on in flags.items() if on), ",".join(f"{k}={v}" for k, v in data.items()))


def parse_ulimit(value: str) -> Ulimit:
    """--ulimit NAME=SOFT[:HARD], as Docker (HARD defaults to SOFT; -1 or unlimited: no limit)."""
    import resource

    name, _, limits = value.partition("=")
    soft, _, hard = limits.partition(":")
    numbers = [-1 if v == "unlimited" else int(v) if re.fullmatch(r"-1|\d+", v) else None for v in (soft, hard or soft)]
    if name not in ULIMITS or None in numbers:
        raise PyrunError("invalid --ulimit", f"{value!r}: expected NAME=SOFT[:HARD], numbers or -1 (unlimited), "
                                             f"NAME one of {', '.join(ULIMITS)}")
    soft, hard = numbers
    if hard != -1 and (soft == -1 or soft > hard):
        raise PyrunError("invalid --ulimit", f"{value!r}: the soft limit is above the hard limit")
    own = resource.getrlimit(ULIMITS[name])[1]  # without CAP_SYS_RESOURCE a hard limit only ever goes down
    if own != resource.RLIM_INFINITY and (hard == -1 or hard > own):
        raise PyrunError("invalid --ulimit", f"{value!r}: the hard limit is above pyrun's own ({name}={own}), "
                                             "which pyrun cannot raise; give at most that")
    return Ulimit(name, soft, hard)


def parse_seconds(value: str, option: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1
    if not 0 <= seconds <= 86400 * 365:
        raise PyrunError(f"invalid {option}", f"{value!r}: expected a number of seconds from 0 to 31536000")
    return seconds


def _check_mount_points(mounts: tuple[BindMount, ...], tmpfs: tuple[Tmpfs, ...]) -> None:
    seen = set()
    for target in [m.target for m in mounts] + [t.target for t in tmpfs]:
        if target in seen:
            raise PyrunError("invalid --tmpfs" if target in {t.target for t in tmpfs} else "invalid -v",
                             f"{target}: two mounts at the same container path; give one")
        seen.add(target)


def _check_bind_kinds(rootfs: str, mounts: tuple[BindMount, ...]) -> None:
    """A file cannot be bound over a directory, nor a directory over a file: say so now, not half way through
    setup. Paths that are missing, or lead through a symlink, are resolved inside the container later."""
    for m in mounts:
        inside = os.path.join(rootfs, m.target.lstrip("/"))
        if os.path.realpath(inside) != inside or not os.path.lexists(inside):
            continue
        if os.path.isdir(m.source) != os.path.isdir(inside):
            kinds = ("directory", "file") if os.path.isdir(m.source) else ("file", "directory")
            raise PyrunError("invalid -v", f"'{m.source}:{m.target}': the host path is a {kinds[0]} and {m.target} "
                                           f"in the rootfs is a {kinds[1]}; bind a {kinds[1]} there")


def parse_caps(add: list[str], drop: list[str], base: frozenset[str] = DEFAULT_CAPS) -> frozenset[str]:
    def names(values: list[str], option: str) -> set[str]:
        out = set()
        for value in values:
            name = value.upper().removeprefix("CAP_")
            if name == "ALL":
                out |= ALL_CAPS
            elif name in ALL_CAPS:
                out.add(name)
            else:
                raise PyrunError(f"invalid {option}", f"{value!r}: not a capability; expected a name such as NET_ADMIN or ALL")
        return out
    return frozenset((base | names(add, "--cap-add")) - names(drop, "--cap-drop"))


# Docker's image reference: [registry[:port]/]name[/name...][:tag][@digest], names in lower case.
_IMAGE = re.compile(r"([a-z0-9.-]+(:\d+)?/)?[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*"
                    r"(:[\w][\w.-]{0,127})?(@sha256:[0-9a-f]{64})?")


def parse_rootfs(value: str) -> str:
    if not value:  # abspath("") is the current directory
        raise PyrunError("invalid rootfs", "'' is empty; expected a directory holding a root filesystem")
    path = os.path.abspath(value)
    if not os.path.exists(path) and _IMAGE.fullmatch(value) and not value.startswith("."):
        raise PyrunError("invalid rootfs", f"{value!r} does not exist: pyrun runs a directory, not an image; "
                                           f"make one with 'docker export $(docker create {value}) | tar -x -C DIR' "
                                           "(or podman), or scripts/build-rootfs DIR")
    if not os.path.isdir(path):
        what = "does not exist" if not os.path.exists(path) else "is not a directory"
        raise PyrunError("invalid rootfs", f"{value!r} {what}; expected a directory holding a root filesystem")
    return path


def parse_name(value: str, option: str = "--name") -> str:
    if not _NAME.fullmatch(value):
        raise PyrunError(f"invalid {option}", f"{value!r}: expected 1-63 of [a-zA-Z0-9_.-], starting with a letter or digit")
    return value


def parse_hostname(value: str) -> str:
    if len(value) > 64 or not _HOSTNAME.fullmatch(value):
        raise PyrunError("invalid --hostname", f"{value!r}: expected a DNS name of at most 64 characters")
    return value


def parse_network(value: str) -> str:
    """bridge, none, host, or the name of a network made with `pyrun network create` (checked in run)."""
    if value not in NETWORK_MODES and not _NAME.fullmatch(value):
        raise PyrunError("invalid --network", f"{value!r}: expected one of {', '.join(NETWORK_MODES)} "
                                              "or a network's name")
    return value


def parse_userns(value: str) -> str:
    if value not in USERNS_MODES:
        raise PyrunError("invalid --userns", f"{value!r}: expected host (root in the container is the host's root) "
                                             "or auto (a range of unprivileged host uids of its own)")
    return value


def parse_runtime(value: str, init: bool | None) -> str:
    """--runtime: pyrun's own, or an OCI runtime (runc, crun, pyrun-oci: oci/client.py), which config.json
    must tell everything, and the files pyrun hands it."""
    if value == BUILT_IN:
        return value
    if not value or "\0" in value:
        raise PyrunError("invalid --runtime", f"{value!r}: expected {BUILT_IN}, pyrun-oci, or an OCI runtime's name "
                                              "or path (runc, crun)")
    from runtime.oci import bundle, client

    client.command(value)  # a runtime that is not there is bad input: refused before anything exists
    if init:
        bundle.tini()  # and so is an --init without the tini it binds
    return value


def build_spec(rootfs: str, command: list[str], *, name: str | None = None, hostname: str | None = None,
               env: list[str] = (), workdir: str = "/", volumes: list[str] = (), network: str | None = None,
               publish: list[str] = (), memory: str | None = None, cpus: str | None = None,
               pids_limit: str | None = None, cap_add: list[str] = (), cap_drop: list[str] = (),
               read_only: bool | None = None, init: bool | None = None, interactive: bool = False,
               tty: bool = False, security_opt: list[str] = (), user: str | None = None, tmpfs: list[str] = (),
               ulimit: list[str] = (), stop_timeout: str | None = None, timeout: str | None = None,
               sandbox: bool = False, userns: str | None = None, runtime: str | None = None) -> ContainerSpec:
    """Parse the command line's strings into a ContainerSpec, or raise PyrunError.

    None is "not given": the default, or with SANDBOX the sandbox's (SANDBOX above), so a flag given wins."""
    if not command:
        raise PyrunError("invalid command", "no command given; expected ROOTFS COMMAND [ARG...]")
    if sandbox:
        user, network, read_only, init, memory, pids_limit, cpus, timeout, userns = (
            SANDBOX[key] if value is None else value for key, value in (
                ("user", user), ("network", network), ("read_only", read_only), ("init", init), ("memory", memory),
                ("pids_limit", pids_limit), ("cpus", cpus), ("timeout", timeout), ("userns", userns)))
    network = network or "bridge"
    network = parse_network(network)
    ports = tuple(p for value in publish for p in parse_port(value))
    if ports and network in ("none", "host"):
        raise PyrunError("invalid -p", f"ports are published only with --network bridge, not {network!r}")
    seen = {}
    for p in ports:
        key = (p.host_port, p.proto)
        if key in seen:
            raise PyrunError("invalid -p", f"host port {p.host_port}/{p.proto} is published twice ({seen[key]} and {p})")
        seen[key] = p
    check_fd_budget(ports)
    runtime = parse_runtime(runtime or DEFAULT_RUNTIME, init)
    rootfs, mounts = parse_rootfs(rootfs), tuple(map(parse_volume, volumes))
    _check_bind_kinds(rootfs, mounts)
    tmpfs = tuple(map(parse_tmpfs, tmpfs))
    _check_mount_points(mounts, tmpfs)
    if sandbox and "/tmp" not in [m.target for m in mounts] + [t.target for t in tmpfs]:
        tmpfs += (parse_tmpfs(SANDBOX["tmpfs"]),)
    return ContainerSpec(
        rootfs=rootfs,
        command=tuple(command),
        name=parse_name(name) if name is not None else None,
        hostname=parse_hostname(hostname) if hostname is not None else None,
        env=tuple(kv for kv in map(parse_env, env) if kv),
        workdir=parse_workdir(workdir),
        mounts=mounts,
        network=network,
        ports=ports,
        resources=Resources(
            memory=parse_memory(memory) if memory is not None else None,
            cpus=parse_cpus(cpus) if cpus is not None else None,
            pids_limit=parse_pids_limit(pids_limit) if pids_limit is not None else None,
        ),
        caps=(caps := parse_caps(list(cap_add), list(cap_drop), frozenset() if sandbox else DEFAULT_CAPS)),
        read_only=bool(read_only), init=bool(init), interactive=interactive, tty=tty, sandbox=sandbox,
        user=users.parse(user) if user is not None else None,
        stop_timeout=parse_seconds(stop_timeout, "--stop-timeout") if stop_timeout is not None else 10.0,
        timeout=parse_seconds(timeout, "--timeout") or None if timeout is not None else None,  # 0: no limit
        tmpfs=tmpfs, ulimits=tuple({u.name: u for u in map(parse_ulimit, ulimit)}.values()),  # the last one wins
        userns=parse_userns(userns or "host"), runtime=runtime,
        **parse_security_opts(security_opt, caps),
    )


def parse_security_opts(values: list[str], caps: frozenset[str] | None = None) -> dict:
    """The seccomp fields of a ContainerSpec from --security-opt values (the last seccomp= wins).

    Every profile file named is read, once, and the one used is built for CAPS, so that a bad one fails
    here, before anything exists."""
    from runtime import seccomp

    settings = [s for s in map(seccomp.parse_option, values) if s is not None] or ["default"]
    files = [seccomp.load_profile(s) if s not in ("default", "unconfined") else None for s in settings]
    if files[-1] is not None and caps is not None:
        seccomp.check(settings[-1], files[-1], caps)
    return {"seccomp_setting": settings[-1], "seccomp": files[-1]}
