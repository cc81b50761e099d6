"""What an engine hands its runtime: `pyrun run`'s flags as an OCI config.json (runtime-spec config.md).

`docker run -m 64m -u 1000 ...` never reaches the kernel as flags: Docker
(through containerd) writes a config.json and hands it to runc, which only
knows config.json. `pyrun run --print-spec ...` shows the same translation
for pyrun's flags; `pyrun-oci` or runc can run what it prints.

    pyrun run flag           config.json field
    COMMAND, -e, -w          process.args, process.env (Docker's defaults first), process.cwd
    -u USER[:GROUP]          process.user: looked up in the rootfs's /etc/passwd and /etc/group, as
                             Docker looks it up in the image
    -t                       process.terminal
    --cap-add, --cap-drop    process.capabilities: bounding, effective, permitted (never inheritable:
                             CVE-2022-29162), of those pyrun holds (--cap-add ALL: all it has); with
                             -u a user other than root, bounding only (CVE-2022-24769), as Docker
    --ulimit                 process.rlimits
    (always)                 process.noNewPrivileges
    --read-only              root.readonly
    --hostname               hostname (else the id's first 12 characters, as Docker's)
    -v, --tmpfs              mounts, after /proc, /dev, /sys and the three /etc files pyrun writes:
                             each of PID 1's actions (pid1.py) says what it is in config.json
    --network, --userns      linux.namespaces; --userns=auto also linux.uidMappings, gidMappings
    -m, --cpus, --pids-limit linux.resources, with pyrun's device allowlist
    --security-opt seccomp   linux.seccomp: the profile with each rule's "includes"/"excludes"
                             (capabilities, architectures, kernels) decided here, as Docker does:
                             config.json's format has no conditions
    --init                   process.args after "/sbin/docker-init --", and that file in mounts: a bind,
                             read-only, of the container's own copy of tini (oci/bundle.py's Tini), as
                             Docker binds its docker-init
    --name                   annotations["org.pyrun.name"]
    ROOTFS                   annotations["org.pyrun.rootfs"] too: the directory an error's hint names

What the engine does around it is no field: the writable overlay on the
rootfs (pyrun run stacks one at the layer directory; root.path names the
rootfs itself, which a runtime given this config writes into unless
readonly), the bridge, veth and published ports (wired into the container's
network namespace once it exists), the /etc files' contents, the log and
the monitor, --rm, --timeout. --init is tini, as Docker's: it is the
command's PID 1, forwards it the signals it gets, reaps orphans and exits
with its status (128+N for a signal N). pyrun's own runtime keeps its own
reaper instead (init.py's _reap), which needs no file in the container.
"""
import os
import platform

from runtime import cgroups, init, namespaces, recipe, seccomp, security, users
from runtime.oci import bundle
from runtime.oci.config import OCI_VERSION
from runtime.rootfs import Layer
from runtime.spec import ContainerSpec

_NAMESPACES = {"pid": "pid", "mnt": "mount", "uts": "uts", "ipc": "ipc", "net": "network", "user": "user"}
# libseccomp's names for the architectures Docker's profile format calls amd64, arm64.
_SCMP_ARCH = {"x86_64": "SCMP_ARCH_X86_64", "aarch64": "SCMP_ARCH_AARCH64"}


def config(spec: ContainerSpec, plan: list, cid: str, root: str | None = None) -> dict:
    """SPEC as config.json, for container CID whose host-side steps are PLAN (recipe.recipe): its /etc files,
    cgroup and id range are the plan's. ROOT: the root.path, if not the rootfs itself (pyrun run --runtime: the
    writable layer mounted over it, bundle.Overlay)."""
    hostname = recipe.hostname(spec, cid)
    who = _identity(spec)
    env = init.environment(spec, hostname, who.home if who else "/root")
    # As a run does (security.drop_privileges limits to what pyrun holds): this VM's root has no SYS_RESOURCE.
    caps = [f"CAP_{c}" for c in sorted(spec.caps & security.held())]
    process = {
        "terminal": spec.tty,
        "user": {"uid": who.uid, "gid": who.gid, **({"additionalGids": list(who.groups)} if who else {})}
        if who else {"uid": 0, "gid": 0},
        "args": list(spec.command),
        "env": [f"{k}={v}" for k, v in env.items()],
        "cwd": spec.workdir,
        # A user other than root: the bounding set only, as Docker writes it since CVE-2022-24769. The uid change
        # would clear the others anyway; a config should not ask for capabilities its process must not hold.
        "capabilities": {"bounding": caps, **({"effective": caps, "permitted": caps} if not who or who.uid == 0
                                              else {"effective": [], "permitted": []})},
        "noNewPrivileges": True,
    }
    if spec.ulimits:
        process["rlimits"] = [{"type": f"RLIMIT_{u.name.upper()}", "soft": _limit(u.soft), "hard": _limit(u.hard)}
                              for u in spec.ulimits]
    linux = {
        "namespaces": [{"type": _NAMESPACES[k]} for k in namespaces.kinds(spec.network, spec.userns)],
        "resources": _resources(spec),
        "cgroupsPath": f"/{cgroups.PARENT}/{cid}",
    }
    ids = recipe.find(plan, recipe.userns.IdRange)
    if ids:
        linux["uidMappings"] = linux["gidMappings"] = [{"containerID": 0, "hostID": ids.base, "size": ids.size}]
    profile = seccomp.profile_for(spec.seccomp_setting, spec.seccomp)
    if profile is not None:
        linux["seccomp"] = _seccomp(profile, spec.caps)
    # The directory the user gave: root.path is pyrun run's overlay of it, which an error's hint should not name.
    annotations = {"org.pyrun.rootfs": spec.rootfs, **({"org.pyrun.name": spec.name} if spec.name else {})}
    out = {"ociVersion": OCI_VERSION, "process": process, "linux": linux}
    for action in recipe.inside(spec, plan, cid):  # the container side: PID 1's own list, each its fields
        action.oci(out)
    if spec.init:
        _init(out, bundle.tini_copy(recipe.find(plan, Layer).path))
    if root:
        out["root"]["path"] = root
    if annotations:
        out["annotations"] = annotations
    order = ("ociVersion", "process", "root", "hostname", "mounts", "linux", "annotations")  # as runc spec's
    return {key: out[key] for key in order if key in out}


def _init(config: dict, tini: str) -> None:
    """--init as Docker writes it: tini is PID 1 and the command its child, and TINI (the container's own copy,
    bundle.Tini) is bound read-only at /sbin/docker-init, after every other mount. tini runs as process.user,
    as Docker's does."""
    bundle.tini()  # --print-spec's check; a run's is its spec's (spec.parse_runtime)
    config["process"]["args"] = [bundle.INIT, "--", *config["process"]["args"]]
    config.setdefault("mounts", []).append({"destination": bundle.INIT, "type": "bind", "source": tini,
                                            "options": ["bind", "ro", "nosuid", "nodev"]})


def _identity(spec: ContainerSpec) -> "users.Identity | None":
    """-u, looked up in the rootfs's own files on the host, as Docker does in the image (users.py resolves
    the same way in PID 1, after pivot_root)."""
    if not spec.user:
        return None
    root = os.open(spec.rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return users.resolve(spec.user, root)
    finally:
        os.close(root)


def _limit(n: int) -> int:
    return 2 ** 64 - 1 if n == -1 else n  # RLIM_INFINITY, as config.json writes it


def _resources(spec: ContainerSpec) -> dict:
    """The cgroup's limits (cgroups.Cgroup), and its device rules in config.json's form."""
    res = spec.resources
    out: dict = {"devices": [_device(rule) for rule in cgroups.DEVICE_RULES]}
    if res.memory:
        out["memory"] = {"limit": res.memory}
    if res.cpus:
        out["cpu"] = {"quota": int(res.cpus * cgroups.CPU_PERIOD_US), "period": cgroups.CPU_PERIOD_US}
    if res.pids_limit:
        out["pids"] = {"limit": res.pids_limit}
    return out


def _device(rule: str) -> dict:
    """cgroup v1's "c 1:3 rwm" (or "a": every device) as config.json's allow/type/major/minor/access; the first
    of DEVICE_RULES denies, the others allow."""
    if rule == "a":
        return {"allow": False, "access": "rwm"}
    kind, numbers, access = rule.split()
    major, minor = numbers.split(":")
    out = {"allow": True, "type": kind, "access": access}
    for key, value in (("major", major), ("minor", minor)):
        if value != "*":
            out[key] = int(value)
    return out


def _seccomp(profile: dict, caps: frozenset[str]) -> dict:
    """Docker's profile format as config.json's: the rules that apply to a container with CAPS on this host,
    without their conditions; archMap's entry for this machine as architectures."""
    out = {key: profile[key] for key in ("defaultAction", "defaultErrnoRet", "flags") if key in profile}
    arches = profile.get("architectures")
    if arches is None and profile.get("archMap"):
        native = _SCMP_ARCH.get(platform.machine())
        entry = next((a for a in profile["archMap"] if a.get("architecture") == native), None)
        arches = [native, *(entry.get("subArchitectures") or [])] if entry else None
    if arches:
        out["architectures"] = arches
    out["syscalls"] = []
    for rule in profile.get("syscalls", []):
        if not seccomp.applies(rule, caps):
            continue
        names = rule.get("names") or [rule["name"]]
        kept = {"names": names, "action": rule["action"]}
        kept.update({key: rule[key] for key in ("errnoRet", "args") if rule.get(key) is not None})
        out["syscalls"].append(kept)
    return out


def print_spec(spec: ContainerSpec, root: str) -> dict:
    """`pyrun run --print-spec`: the config.json a run of SPEC would hand its runtime, nothing changed. The id,
    address and id range are the ones a run would take now, as --explain's are."""
    spec = recipe.guard_devices(spec)
    cid, plan = recipe.would_run(spec, root)
    return config(spec, plan, cid)

