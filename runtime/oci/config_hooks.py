"""config.md's hooks: the programs the runtime runs at points of the container's life, read from config.json.

    prestart, createRuntime   create, once the namespaces and mounts exist: in the runtime's namespaces
    createContainer           then, in the container's, before pivot_root
    startContainer            start, just before the program's execve(2), as its user
    poststart, poststop       after start; once the container is gone

Each is execv(2)'s path and args, its env exactly, and a timeout after which
it is killed; hooks.py runs them with the state JSON on stdin.
"""
from runtime.oci.config_check import bad, expect

# The spec's hooks, in the order a container meets them (hooks.py runs them).
HOOKS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")


def read(hooks) -> dict:
    """config.md's hooks: each an absolute path, args (argv, with its [0]), env (NAME=VALUE), timeout > 0."""
    out = {}
    for name, entries in expect(hooks, dict, "hooks", "an object", {}).items():
        if name not in HOOKS:
            continue  # a hook the spec adds later: unknown, so ignored, as the spec says
        checked = []
        for i, hook in enumerate(expect(entries, list, f"hooks.{name}", "a list of hooks", [])):
            where = f"hooks.{name}[{i}]"
            hook = expect(hook, dict, where, "an object with path")
            path = expect(hook.get("path"), str, f"{where}.path", "an absolute path")
            if not path.startswith("/"):
                raise bad(f"{where}.path", f"{path!r}: expected an absolute path")
            entry = {"path": path}
            if hook.get("args") is not None:
                args = expect(hook["args"], list, f"{where}.args", "a list of strings")
                if not all(isinstance(a, str) for a in args):
                    raise bad(f"{where}.args", "expected a list of strings")
                entry["args"] = args
            if hook.get("env") is not None:
                env = expect(hook["env"], list, f"{where}.env", "a list of NAME=VALUE strings")
                if not all(isinstance(e, str) and "=" in e for e in env):
                    raise bad(f"{where}.env", "expected a list of NAME=VALUE strings")
                entry["env"] = env
            if hook.get("timeout") is not None:
                timeout = expect(hook["timeout"], int, f"{where}.timeout", "a number of seconds")
                if timeout <= 0:
                    raise bad(f"{where}.timeout", f"{timeout}: expected a number of seconds above 0")
                entry["timeout"] = timeout
            checked.append(entry)
        out[name] = checked
    return out
