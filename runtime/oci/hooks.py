"""Hooks: the engine's own programs, run at the points of the lifecycle config.md names.

An engine uses them to do what the runtime does not: podman's and CRI-O's
older network setup ran as prestart hooks, NVIDIA's toolkit makes GPUs
visible in createContainer, and poststop hooks clean up what a hook made.
Each hook gets the container's state (what `state` prints) on its stdin.

    create   prestart, createRuntime   in the runtime's namespaces, once the container's exist (before pivot_root)
             createContainer           in the container's namespaces, before pivot_root: the path is the host's
    start    startContainer            in the container, as its user, just before the program's execve
             poststart                 in the runtime's namespaces, once the program is exec'd, before start returns;
                                       a failure only warns
    delete   poststop                  once the container is gone, before delete returns; a failure only warns

A failing create-time hook fails create, which then leaves no container;
a failing startContainer hook stops the container. A hook's `timeout`
(seconds) kills it if it runs longer.
"""
import json
import subprocess


def run(hooks: dict, name: str, state: dict, cwd: str | None = None) -> None:
    """Run the NAME hooks in order with STATE on stdin; raise PyrunError for the first that fails."""
    from runtime.errors import PyrunError

    for hook in hooks.get(name) or ():
        where, path = f"{name} hook", hook["path"]
        try:
            r = subprocess.run(hook.get("args") or [hook["path"]], executable=hook["path"], cwd=cwd,
                               input=json.dumps(state).encode(), capture_output=True, timeout=hook.get("timeout"),
                               env=dict(e.split("=", 1) for e in hook["env"]) if "env" in hook else None)
        except subprocess.TimeoutExpired:
            raise PyrunError(where, f"{path}: killed after its timeout of {hook['timeout']} s") from None
        except OSError as e:
            raise PyrunError(where, f"{path}: {e.strerror}") from None
        if r.returncode:
            said = (r.stderr or r.stdout).decode(errors="replace").strip()[-500:]
            raise PyrunError(where, f"{path}: exit status {r.returncode}" + (f": {said}" if said else ""))


def run_warning(hooks: dict, name: str, state: dict, warn, cwd: str | None = None) -> None:
    """poststart and poststop: a failure is a warning, and the hooks after it still run (config.md)."""
    from runtime.errors import PyrunError

    for hook in hooks.get(name) or ():
        try:
            run({name: [hook]}, name, state, cwd)
        except PyrunError as e:
            warn(str(e))
