"""pyrun run --explain: the same container, built by hand, as a shell script a learner can read and run.

Nothing is changed: the script is printed, not run. Its host-side commands
are the shell_up() and shell_down() of the very steps `pyrun run` journals
and runs, in the order recipe.recipe() gives them; each is numbered and
named by its kind, as the journal names it. The container side (init.sh,
what PID 1 does) is the shell() of the very actions PID 1 runs, in the
order pid1.recipe() gives them, each [named] by its kind as --verbose traces
it; then what init.py does once told "go", from the same spec values it
reads. Where the kernel interface has
no shell command (pyrun holds each published port's socket; it loads a
seccomp filter), the script says so.

The output is two scripts, each of which runs on its own: the setup, and
below the TEARDOWN line the teardown, the setup's steps undone in reverse,
as `pyrun` does.
"""
import os
import re
import shlex

from runtime import init, namespaces, recipe, state, userns
from runtime.spec import ContainerSpec
from runtime.steps import heredoc

TEARDOWN = "# ======== TEARDOWN: run what follows to undo all of the above ========"
PID = "$PID"  # the shell variable that holds the container's first process
_UNSHARE = {"user": "--user", "mnt": "--mount", "uts": "--uts", "ipc": "--ipc", "net": "--net", "pid": "--pid"}  # namespaces.FLAGS


def explain(spec: ContainerSpec, root: str) -> str:
    spec = recipe.guard_devices(spec)  # what a run would run: the same capabilities
    cid, plan = recipe.would_run(spec, root)
    cdir = state.container_dir(root, cid)
    steps = [(p.phase, p.step.at(PID) if p.phase == recipe.ATTACH else p.step) for p in plan]
    c, go = shlex.quote(cdir), shlex.quote(f"{cdir}/go")

    setup = [_section(step) for phase, step in steps if phase == recipe.CREATE]
    made = next((step for _, step in steps if step.kind == "runtime"), None)
    if made is not None:  # --runtime: the container side is the OCI runtime's, from the bundle's config.json
        return _explain_runtime(spec, cid, cdir, steps, setup, made)
    setup.append(("the container's side, run in its new namespaces: rootfs, hostname, wait for \"go\", drop "
                  "privileges, exec (runtime/pid1.py, runtime/init.py)",
                  [f"mkfifo -m 0600 {go}   # pyrun's \"go\" (runtime/sync.py): PID 1 waits for it",
                   *heredoc(f"{cdir}/init.sh", _init_script(spec, cdir, recipe.hostname(spec, cid),
                                                             recipe.inside(spec, plan, cid)))]))
    unshare = "unshare --fork --kill-child " + " ".join(_UNSHARE[kind]
                                                        for kind in namespaces.kinds(spec.network, spec.userns))
    setup.append(("start it: new namespaces, and in them the first process (runtime/process.py, runtime/init.py)",
                  [f"{unshare} sh {shlex.quote(f'{cdir}/init.sh')} > {shlex.quote(f'{cdir}/container.log')} "
                   "2>&1 < /dev/null &",
                   "UNSHARE=$!",
                   "# PID 1 is unshare's child, forked once the namespaces exist: the pid pyrun calls the container's",
                   'until PID=$(cat /proc/$UNSHARE/task/$UNSHARE/children 2>/dev/null) && [ -n "$PID" ]; do',
                   '  kill -0 $UNSHARE 2>/dev/null || { echo "the container did not start: see its log" >&2; '
                   'exit 1; }; sleep 0.01; done',
                   "PID=${PID%% *}",
                   "echo \"the container's first process is $PID\""]))
    ids = recipe.find(plan, userns.IdRange)
    if ids:
        setup.append(("--userns=auto: pyrun writes the new user namespace's maps from the host, as root may without "
                      "newuidmap (pyrun does it before the other namespaces are made: runtime/init.py)",
                      userns.shell_map(PID, ids, spec.rootfs)))
    setup += [_section(step) for phase, step in steps if phase == recipe.SPAWN]
    setup += [_section(step) for phase, step in steps if phase == recipe.ATTACH]
    setup.append(("go: the container's command runs now (runtime/sync.py)",
                  [f"echo go 1<> {go}   # opened read-write: never waits, even for a PID 1 that has failed"]))

    members = [shlex.quote(f"{path}/cgroup.procs") for path in recipe.find(plan, recipe.Cgroup).paths()]
    teardown = [("stop the container: kill every process in its cgroup (pyrun tears down once it has exited)",
                 [f"xargs -r kill -9 < {members[0]}", f"while [ -s {members[0]} ]; do sleep 0.05; done"])]
    teardown += [(f"[{step.kind}] undo: {step.title()}", step.shell_down()) for _, step in reversed(steps)
                 if step.shell_down()]
    teardown.append(("remove the container's directory", [f"rm -rf {c}"]))

    # repr: a newline in the command would end the comment and run the rest as a command
    what = repr(shlex.join(spec.command))[1:-1]
    # --userns=auto: the container's root can follow no path through root's state directory, and make no device
    note = ["# --userns=auto: to read, not to run: pyrun hands the container its mounts as file",
            "# descriptors opened on the host, and binds the host's /dev nodes, where a shell cannot.", ""] if ids else []
    return "\n".join([_script(f"by hand, what `pyrun run` would do for {what}", cid, cdir, setup, note), TEARDOWN,
                      _script("undo what the setup above did, as pyrun's teardown does", cid, cdir, teardown,
                              ["set +e   # go on past what is already gone, as pyrun's teardown does", ""])])


def _explain_runtime(spec: ContainerSpec, cid: str, cdir: str, steps: list, setup: list, made) -> str:
    """The script of `pyrun run --runtime R`: pyrun's host side around the runtime's create, start and delete."""
    setup += [_section(step) for phase, step in steps if phase == recipe.SPAWN]
    setup += [_section(step) for phase, step in steps if phase == recipe.ATTACH]
    setup.append(("go: the runtime lets the container's process exec its command (runtime/oci/client.py)",
                  made.shell_start()))
    teardown = [(f"[{step.kind}] undo: {step.title()}", step.shell_down()) for _, step in reversed(steps)
                if step.shell_down()]
    teardown.append(("remove the container's directory", [f"rm -rf {shlex.quote(cdir)}"]))
    what = repr(shlex.join(spec.command))[1:-1]
    return "\n".join([_script(f"by hand, what `pyrun run --runtime {spec.runtime}` would do for {what}", cid, cdir,
                               setup), TEARDOWN,
                      _script("undo what the setup above did, as pyrun's teardown does", cid, cdir, teardown,
                              ["set +e   # go on past what is already gone, as pyrun's teardown does", ""])])


def _script(what: str, cid: str, cdir: str, sections: list, first: list[str] = ()) -> str:
    """A script that runs on its own: its header sets what its commands use."""
    body = "\n".join([*first, *numbered(sections)])
    c = shlex.quote(cdir)
    if c == cdir:  # else the state directory needed quoting, and $C inside quotes would not be expanded
        body, c = with_variables(body, cdir, cid), cdir.replace(cid, "$CID")
    return "\n".join(["#!/bin/bash",
                      f"# pyrun run --explain: {what}",
                      "# Run as root. pyrun has changed nothing; each numbered step is one of its own, [named] as "
                      "its journal names it.",
                      "set -euo pipefail",
                      "umask 077   # pyrun's state is root's alone (runtime/state.py)",
                      f"export CID={cid}   # the container's id (pyrun makes a new one each time)",
                      f"export C={c}   # its state directory", "", body])


def with_variables(body: str, cdir: str, cid: str) -> str:
    """$C and $CID for the state directory and the id in the commands, not in a heredoc's text: a quoted heredoc
    expands nothing, and a file such as config.json must say the paths themselves."""
    out, end = [], None
    for line in body.split("\n"):
        if end is None:
            out.append(line.replace(cdir, "$C").replace(cid, "$CID"))
            found = re.search(r"<<'(\w+)'$", line)
            end = found and found[1]
        else:
            out.append(line)
            end = None if line == end else end
    return "\n".join(out)


def _section(step) -> tuple[str, list[str]]:
    source = type(step).__module__.replace(".", "/") + ".py"
    return f"[{step.kind}] {step.title()} ({source})", step.shell_up()


def numbered(sections: list[tuple[str, list[str]]]) -> list[str]:
    out = []
    for number, (title, commands) in enumerate(sections, 1):
        out += [f"# {number}. {title}", *commands, ""]
    return out


def _init_script(spec: ContainerSpec, cdir: str, hostname: str, actions: list) -> list[str]:
    """PID 1's ACTIONS (pid1.py), each [named] by its kind, then what it does once told "go"."""
    out = ["set -e", "umask 022   # the container's, as Docker's (runtime/init.py)",
           f"exec 9<> {shlex.quote(f'{cdir}/go')}   # held open across pivot_root: the host says \"go\" in it"]
    for before, action in zip([None, *actions], actions):  # a kind's title once, where a run of it begins
        title = "" if type(before) is type(action) else f" {action.title()}"
        out += [f"# [{action.kind}]{title}", *action.shell()]
    out += ["read -r _ <&9; exec 9<&-   # wait for \"go\": the host has wired the network and joined the cgroup"]
    env = init.environment(spec, hostname)
    who = []
    if spec.user:
        out += _user_shell(spec.user)
        who = ["--reuid=$U", "--regid=$G", "--groups=$SGIDS"]
        if "HOME" not in dict(spec.env):
            env["HOME"] = "$HOME_"
    caps = ",".join(f"+{c.lower()}" for c in sorted(spec.caps))
    command = [f"env -i {' '.join(_assign(k, v) for k, v in env.items())} \\",
               f"  setpriv --no-new-privs --inh-caps=-all --bounding-set=-all{',' + caps if caps else ''}"
               f"{''.join(' ' + w for w in who)} -- \\",
               *([f"  prlimit {' '.join(_prlimit(u) for u in spec.ulimits)} -- \\"] if spec.ulimits else []),
               f"  {shlex.join(spec.command)}"]
    out += [f"cd {shlex.quote(spec.workdir)}",
            "# setpriv is util-linux's, from the rootfs: the bounding set becomes the container's capabilities",
            "# (pyrun also loads a seccomp filter here, with libseccomp; no shell command does that: see"
            " runtime/seccomp.py)" if spec.seccomp_setting != "unconfined" else "# (seccomp: unconfined)"]
    if not spec.init:
        return out + ["exec " + command[0], *command[1:]]
    signals = " ".join(s.name[3:] for s in init.INIT_FORWARDS)
    return out + ["# --init: this shell stays PID 1, runs the command as its child, passes signals on and reaps "
                  "orphans (runtime/init.py _reap; pyrun's PID 1 also drops its own privileges)",
                  *command[:-1], command[-1] + " &",
                  "CHILD=$!",
                  f'for s in {signals}; do trap "kill -$s $CHILD" $s; done',
                  "set +e",
                  'while :; do wait "$CHILD"; code=$?; kill -0 "$CHILD" 2>/dev/null || exit "$code"; done']


def _prlimit(u) -> str:
    """util-linux's prlimit has Docker's names (runtime/spec.py ULIMITS); run last, after setpriv, as pyrun's
    setrlimit(2) comes after the change of user."""
    soft, hard = ("unlimited" if n == -1 else str(n) for n in (u.soft, u.hard))
    return f"--{u.name}={soft}:{hard}"


def _assign(key: str, value: str) -> str:
    return f'{key}="$HOME_"' if value == "$HOME_" and key == "HOME" else shlex.quote(f"{key}={value}")


def _user_shell(user: str) -> list[str]:
    """-u's lookup (runtime/users.py) with the rootfs's own id and getent, which read its /etc/passwd now."""
    name, _, group = user.partition(":")
    name, group = shlex.quote(name), group and shlex.quote(group)
    out = ["# -u: the user's ids, groups and home from the container's /etc/passwd and /etc/group (runtime/users.py)",
           f"U={name}" if name.isdigit() else f"U=$(id -u {name})",
           f"HOME_=$(getent passwd \"$U\" | cut -d: -f6); HOME_=${{HOME_:-/}}"]
    if group:
        out += [f"G={group}" if group.isdigit() else f"G=$(getent group {group} | cut -d: -f3)", 'SGIDS="$G"']
    else:  # a number without a passwd entry is gid 0, as in Docker
        out += ['G=$(id -g "$U" 2>/dev/null || echo 0)',
                'SGIDS=$( (id -G "$U" 2>/dev/null || echo "$G") | tr " " ,)']
    return out
