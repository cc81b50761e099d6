"""pyrun-oci create --explain: what create and start would do for a bundle, as a bash script.

Nothing is changed. The bundle is read and checked by the same code as
create (config.load), and its host side is the very Cgroup step create
journals; the container side follows config.json field by field in the
order runtime/oci/init.py takes them: the cgroup joined, the namespaces
joined by path then made, the mounts in the config's order, the default
devices, pivot_root, masked and read-only paths, the hostname, sysctls, then
"wait for start" and the exec with the process's user, capabilities,
rlimits and cwd. Where the kernel interface has no shell command (a seccomp
filter, a user namespace's maps written from outside it), the script says so.
tests/test_oci_explain.py runs the script and compares the container it
makes with the one create makes.
"""
import os
import shlex

from runtime import pid1
from runtime.explain import TEARDOWN, numbered, with_variables
from runtime.oci import config as oci_config
from runtime.oci.config import Bundle
from runtime.oci.config_mounts import PROPAGATION
from runtime.rootfs import DEVICES
from runtime.steps import heredoc

q = shlex.quote
# config.json's namespace types as util-linux's unshare and nsenter options.
_OPTION = {"pid": "pid", "network": "net", "mount": "mount", "ipc": "ipc", "uts": "uts", "cgroup": "cgroup",
           "user": "user"}


def explain(root: str, cid: str, bundle: str) -> str:
    from runtime import state

    oci_config.check_id(cid)
    b = oci_config.load(bundle, cid)
    cdir = state.container_dir(root, cid)
    cgroup = b.cgroup()
    go = f"{cdir}/exec.fifo"
    setup = [(f"[{cgroup.kind}] {cgroup.title()} (runtime/cgroups.py)", cgroup.shell_up()),
             ("the container's side, run in its new namespaces: mounts, pivot_root, hostname, wait for start, "
              "exec (runtime/oci/init.py)",
              [f"mkdir -p -m 0700 {q(cdir)}",
               f"mkfifo -m 0600 {q(go)}   # the exec FIFO: PID 1 waits on it until start (runtime/oci/init.py)",
               *heredoc(f"{cdir}/init.sh", _init_script(b, go, cgroup.paths()))]),
             ("start it: the cgroup, the namespaces given by path, then new ones, and in them PID 1 "
              "(runtime/oci/init.py intermediate)", _start(b, cdir, cgroup.paths()))]
    for name in ("prestart", "createRuntime"):
        setup += _hooks(b, name, "create runs them while PID 1 waits before pivot_root; here, before start")
    setup.append(("start: PID 1 execs the program now (runtime/oci/lifecycle.py start)",
                  [f"echo 0 > {q(go)}   # blocks until PID 1 opens it: the FIFO is the rendezvous"]))
    setup += _hooks(b, "poststart", "after the program is executed")
    teardown = [("delete: kill what is left in its cgroup, remove the cgroup and the state",
                 [f"xargs -r kill -9 < {q(cgroup.paths()[0] + '/cgroup.procs')}",
                  f"while [ -s {q(cgroup.paths()[0] + '/cgroup.procs')} ]; do sleep 0.05; done",
                  *cgroup.shell_down(), f"rm -rf {q(cdir)}"])]
    teardown += _hooks(b, "poststop", "at delete")
    return "\n".join([_script(f"by hand, what `pyrun-oci create` and `start` would do for the bundle {b.path}", cid,
                              cdir, setup), TEARDOWN,
                      _script("undo what the setup above did, as `pyrun-oci delete` does", cid, cdir, teardown,
                              ["set +e   # go on past what is already gone, as delete does", ""])])


def _script(what: str, cid: str, cdir: str, sections: list, first: list[str] = ()) -> str:
    body = "\n".join([*first, *numbered(sections)])
    if q(cdir) == cdir:
        body = with_variables(body, cdir, cid)
    return "\n".join(["#!/bin/bash", f"# pyrun-oci create --explain: {what}",
                      "# Run as root. pyrun-oci has changed nothing.", "set -euo pipefail",
                      f"export CID={q(cid)}   # the container's id, as the engine gave it",
                      f"export C={q(cdir) if q(cdir) != cdir else cdir.replace(cid, '$CID')}   # its state directory",
                      "", body])


def _start(b: Bundle, cdir: str, cgroups: list[str]) -> list[str]:
    joined = " ".join(f"--{_OPTION[kind]}={q(path)}" for kind, path in b.namespaces if path)
    made = " ".join(f"--{_OPTION[kind]}" for kind, path in b.namespaces if not path)
    joins = "".join(f"echo $$ > {q(path + '/cgroup.procs')}; " for path in cgroups)
    out = []
    if b.has("user"):
        out += ["# a user namespace: pyrun-oci writes its uid_map and gid_map from the host before the other",
                "# namespaces are made (runtime/oci/init.py); unshare's --map-users/--map-groups do the same:",
                f"#   {' '.join(f'--map-users={c}:{h}:{n}' for c, h, n in b.uid_map)} "
                f"{' '.join(f'--map-groups={c}:{h}:{n}' for c, h, n in b.gid_map)}"]
    enter = f"nsenter {joined} " if joined else ""
    out += [f"sh -c {q(joins + f'exec {enter}unshare --fork --kill-child {made} sh {cdir}/init.sh')} "
            "< /dev/null &",
            "UNSHARE=$!",
            "# PID 1 is unshare's child, forked once the namespaces exist: the pid the state calls the container's",
            'until PID=$(cat /proc/$UNSHARE/task/$UNSHARE/children 2>/dev/null) && [ -n "$PID" ]; do sleep 0.01; done',
            "PID=${PID%% *}"]
    return out


def _hooks(b: Bundle, name: str, when: str) -> list:
    hooks = b.hooks.get(name) or []
    if not hooks:
        return []
    status = {"poststart": "running", "poststop": "stopped"}.get(name, "created")
    state = (f"printf '{{\"ociVersion\": \"1.0.2\", \"id\": \"%s\", \"status\": \"{status}\", \"pid\": %s, "
             f"\"bundle\": \"%s\"}}' \"$CID\" \"${{PID:-0}}\" {q(b.path)}")
    return [(f"the {name} hooks ({when}): each gets the container's state as JSON on stdin (runtime/oci/hooks.py)",
             [f"{state} | {shlex.join([h['path'], *h.get('args', [])[1:]])}" for h in hooks])]


def _init_script(b: Bundle, go: str, cgroups: list[str]) -> list[str]:
    p = b.process
    out = ["set -e", f"exec 9< {q(os.path.dirname(go))}   # the state directory, held open across pivot_root",
           "mount --make-rprivate /",
           f"mount --rbind {q(b.rootfs)} {q(b.rootfs)}   # pivot_root needs the new root to be a mount",
           f"cd {q(b.rootfs)}"]
    if b.makes("network"):
        out.append("ip link set lo up   # as runc does: a new network namespace's lo is down (the host's ip, here)")
    for m, given in zip(b.mounts, b.config.get("mounts") or []):
        out += _mount(m, given.get("options") or [], cgroups)
    out += ["# the default devices, where the config binds none (runtime/rootfs.py make_devices)",
            *[f"[ -e dev/{n} ] || mknod -m 666 dev/{n} c {major} {minor}" for n, (major, minor) in DEVICES.items()],
            *([f"mkdir -p {q('.' + p.cwd)}   # a missing cwd is made, as runc does"] if p.cwd != "/" else [])]
    # What pyrun's own PID 1 does the same way, in its own words (pid1.py's actions).
    out += pid1.Pivot().shell() + pid1.Mask(b.masked, b.readonly_paths).shell()
    if b.readonly:
        out += pid1.ReadOnly().shell()
    if b.hostname:
        out += pid1.Hostname(b.hostname).shell()
    out += [f"echo {q(value)} > /proc/sys/{key.replace('.', '/')}" for key, value in b.sysctl]
    out.append(f"read -r _ < /proc/self/fd/9/{os.path.basename(go)}; exec 9<&-   # wait for start: the open "
               "blocks until start opens the FIFO's other end, whoever comes first")
    if b.seccomp is not None:
        out.append("# (pyrun-oci loads config.json's seccomp filter here, with libseccomp; no shell command does that)")
    caps = lambda names: ",".join(f"+{c.lower()}" for c in sorted(names)) or "-all"  # noqa: E731
    limits = " ".join(f"--{name[7:].lower()}={_n(soft)}:{_n(hard)}" for name, soft, hard in p.rlimits)
    env = " ".join(q(e) for e in p.env)
    umask = f"umask {p.umask:04o}; " if p.umask is not None else ""
    groups = ",".join(map(str, p.additional_gids)) or "-"
    out += [f"cd {q(p.cwd)}", f"{umask}exec env -i {env} \\",
            *([f"  prlimit {limits} -- \\"] if limits else []),
            f"  setpriv --reuid={p.uid} --regid={p.gid} "
            f"{'--clear-groups' if groups == '-' else '--groups=' + groups} "
            f"--bounding-set=-all{',' + caps(p.caps.bounding) if p.caps.bounding else ''} "
            f"--inh-caps=-all{',' + caps(p.caps.inheritable) if p.caps.inheritable else ''} "
            f"--ambient-caps=-all{',' + caps(p.caps.ambient & p.caps.inheritable) if p.caps.ambient else ''}"
            f"{' --no-new-privs' if p.no_new_privileges else ''} -- \\",
            f"  {shlex.join(p.args)}"]
    return out


def _n(n: int) -> str:
    return "unlimited" if n >= 2 ** 63 else str(n)


def _mount(m, options: list[str], cgroups: list[str]) -> list[str]:
    """config.json's mount M as mount(8) commands, from the new root's directory."""
    here = q("." + m.destination)
    plain = [o for o in options if o not in PROPAGATION and o not in ("bind", "rbind")]
    propagation = [f"mount --make-{o} {here}" for o in options if o in PROPAGATION]
    if m.type == "bind":
        make = [f"mkdir -p {here}"] if os.path.isdir(m.source) else \
            [f"[ -e {here} ] || {{ mkdir -p {q('.' + os.path.dirname(m.destination))}; touch {here}; }}"]
        recursive = "rbind" in options
        out = [*make, f"mount {'--rbind' if recursive else '--bind'} {q(m.source)} {here}"]
        if plain:
            out.append(f"mount -o remount,bind,{','.join(plain)} {here}")
        if recursive and "ro" in plain:  # rbind,ro: read-only all the way down, as mount_setattr(2) does
            out.append(f"findmnt -Rno TARGET {here} | while IFS= read -r m; do mount -o remount,bind,ro \"$m\"; done")
        return out + propagation
    if m.type == "cgroup":  # as init_root._mount_cgroup: v1, a tmpfs with a directory per controller
        safe = ",".join(o for o in plain if o in ("nosuid", "nodev", "noexec")) or "defaults"
        ro = ",ro" if "ro" in plain else ""
        v1 = [path for path in cgroups if not os.path.exists(os.path.join(path, "cgroup.controllers"))]
        out = [f"mkdir -p {here}", "# the container's own cgroup directories, bound (runtime/oci/init.py)"]
        if v1:
            out.append(f"mount -t tmpfs -o {safe},mode=755 tmpfs {here}")
        for path in cgroups:
            target = f"{here}/{os.path.relpath(path, '/sys/fs/cgroup').split('/')[0]}" if path in v1 else here
            out += [f"mkdir -p {target}", f"mount --bind {q(path)} {target}",
                    f"mount -o remount,bind,{safe}{ro} {target}"]
        if v1 and ro:
            out.append(f"mount -o remount,{safe},ro,mode=755 {here}")
        return out + propagation
    opts = f" -o {q(','.join(plain))}" if plain else ""
    return [f"mkdir -p {here}", f"mount -t {m.type}{opts} {q(m.source)} {here}", *propagation]

