"""pyrun-oci: the OCI runtime's command line, as runc's, which engines already know how to drive.

The OCI runtime specification defines the operations (create, start,
state, kill, delete) but not a command line; runc's became the one every
engine speaks, so pyrun-oci follows it: global options before the verb,
`--flag value` or `--flag=value`, exit status 0 or 1, and errors written to
stderr and, with --log, appended to a log file, in --log-format json as one
{"level", "msg", "time"} object a line (the engine reads the last error
line to say why a container did not start).

    pyrun-oci [--root DIR] [--log FILE] [--log-format text|json] [--debug] VERB ...
      spec [--bundle B]                  write a default config.json
      create --bundle B [--pid-file F] [--console-socket S] [--preserve-fds N] [--no-pivot] [--no-new-keyring] ID
      start ID | state ID | kill [--all] ID [SIGNAL] | delete [--force] ID
      exec [--process FILE] [--detach] [--pid-file F] [--tty] [--console-socket S] [--preserve-fds N]
           [--cwd D] [--env K=V]... [--user UID[:GID]] [--cap CAP]... [--no-new-privs] ID [ARGS...]
      ps [--format table|json] ID [PS_ARGS...] | pause ID | resume ID | update --resources FILE|- ID | features
"""
import argparse
import datetime
import json
import os
import signal
import sys

from runtime.errors import PyrunError

DEFAULT_ROOT = "/run/pyrun-oci"
VERSION = "0.1.0"


class Log:
    """Where messages go: stderr always, the --log file too (created or appended), in runc's two formats."""

    def __init__(self, path: str | None, fmt: str, debug: bool):
        self.path, self.fmt, self.debug_on = path, fmt, debug

    def write(self, level: str, msg: str) -> None:
        if level in ("error", "warning"):
            print(f"pyrun-oci: {'warning: ' if level == 'warning' else ''}{msg}", file=sys.stderr)
        if not self.path:
            return
        time = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds")
        line = json.dumps({"level": level, "msg": msg, "time": time}) if self.fmt == "json" \
            else f"time={json.dumps(time)} level={level} msg={json.dumps(msg)}"
        with open(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600), "a") as f:
            f.write(line + "\n")

    def debug(self, msg: str) -> None:
        if self.debug_on:
            self.write("debug", msg)
            if not self.path:
                print(f"pyrun-oci: debug: {msg}", file=sys.stderr)


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # a usage error is an error like any other: one line, exit 1
        raise PyrunError("usage", f"{message} (see {self.prog} --help)")


def parse_signal(value: str) -> int:
    """9, KILL or SIGKILL (any case), as runc takes them."""
    if value.isdigit() and 0 < int(value) < signal.NSIG:
        return int(value)
    name = value.upper()
    name = name if name.startswith("SIG") else f"SIG{name}"
    if isinstance(getattr(signal.Signals, name, None), signal.Signals):
        return getattr(signal.Signals, name).value
    raise PyrunError("invalid signal", f"{value!r}: expected a number or a name such as TERM, SIGKILL")


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="pyrun-oci", description="pyrun as an OCI runtime (runc's command line)")
    p.add_argument("--root", default=DEFAULT_ROOT, help=f"state directory (default {DEFAULT_ROOT})")
    p.add_argument("--log", help="append log lines to this file")
    p.add_argument("--log-format", choices=("text", "json"), default="text")
    p.add_argument("--systemd-cgroup", action="store_true", help="not supported: pyrun drives cgroupfs")
    p.add_argument("--debug", action="store_true")
    p.add_argument("--version", "-v", action="store_true")
    verbs = p.add_subparsers(dest="verb", parser_class=_Parser)
    spec = verbs.add_parser("spec", help="write a default config.json")
    spec.add_argument("--bundle", "-b", default=".")
    spec.add_argument("--rootless", action="store_true")
    create = verbs.add_parser("create", help="create a container, blocked before its program runs")
    create.add_argument("--bundle", "-b", default=".")
    create.add_argument("--pid-file")
    create.add_argument("--console-socket")
    create.add_argument("--preserve-fds", type=int, default=0)
    create.add_argument("--no-pivot", action="store_true")
    create.add_argument("--no-new-keyring", action="store_true")
    create.add_argument("--explain", action="store_true", help="change nothing: print what create and start "
                                                               "would do, as a bash script")
    create.add_argument("id")
    for name, text in (("start", "run the created container's program"), ("state", "print its state as JSON"),
                       ("pause", "freeze every process of the container"), ("resume", "thaw a paused container")):
        verbs.add_parser(name, help=text).add_argument("id")
    exe = verbs.add_parser("exec", help="run another process in a running container")
    exe.add_argument("--process", "-p", help="the process as config.json's process object (a file, or - for stdin)")
    exe.add_argument("--detach", "-d", action="store_true")
    exe.add_argument("--pid-file")
    exe.add_argument("--tty", "-t", action="store_true")
    exe.add_argument("--console-socket")
    exe.add_argument("--preserve-fds", type=int, default=0)
    exe.add_argument("--cwd")
    exe.add_argument("--env", "-e", action="append", default=[])
    exe.add_argument("--user", "-u")
    exe.add_argument("--cap", "-c", action="append", default=[])
    exe.add_argument("--no-new-privs", action="store_true")
    exe.add_argument("--ignore-paused", action="store_true", help="not supported: resume the container first")
    exe.add_argument("id")
    exe.add_argument("args", nargs=argparse.REMAINDER)
    ps = verbs.add_parser("ps", help="the processes in the container's cgroup")
    ps.add_argument("--format", "-f", choices=("table", "json"), default="table")
    ps.add_argument("id")
    ps.add_argument("ps_args", nargs=argparse.REMAINDER)
    update = verbs.add_parser("update", help="change the container's memory, cpu and pids limits")
    update.add_argument("--resources", "-r", required=True, help="linux.resources as JSON: a file, or - for stdin")
    update.add_argument("id")
    verbs.add_parser("features", help="what this runtime supports, as JSON")
    kill = verbs.add_parser("kill", help="send a signal (default TERM)")
    kill.add_argument("--all", "-a", action="store_true")
    kill.add_argument("id")
    kill.add_argument("signal", nargs="?", default="TERM")
    delete = verbs.add_parser("delete", help="remove a created or stopped container")
    delete.add_argument("--force", "-f", action="store_true")
    delete.add_argument("id")
    return p


def run(args, log: Log) -> int | None:
    from runtime.oci import lifecycle, state

    warn = lambda message: log.write("warning", message)  # noqa: E731
    root = os.path.abspath(args.root)
    if args.verb == "spec":
        from runtime.oci import config

        if args.rootless:
            raise PyrunError("spec --rootless", "pyrun runs containers as root only")
        path = os.path.join(args.bundle, "config.json")
        if os.path.exists(path):
            raise PyrunError("spec", f"{path} exists; remove it first")
        with open(path, "w") as f:
            json.dump(config.default(), f, indent="\t")
            f.write("\n")
    elif args.verb == "create" and args.explain:
        from runtime.oci import explain

        print(explain.explain(root, args.id, args.bundle))
    elif args.verb == "create":
        if args.preserve_fds < 0:
            raise PyrunError("invalid --preserve-fds", f"{args.preserve_fds}: expected 0 or more")
        lifecycle.create(root, args.id, args.bundle, args.pid_file, args.console_socket, args.preserve_fds,
                         pivot=not args.no_pivot, new_keyring=not args.no_new_keyring, warn=warn)
    elif args.verb == "start":
        lifecycle.start(root, args.id, warn)
    elif args.verb == "state":
        print(json.dumps(state.shown(root, state.read(root, args.id)), indent=2))
    elif args.verb == "kill":
        lifecycle.kill(root, args.id, parse_signal(args.signal), args.all)
    elif args.verb == "delete":
        lifecycle.delete(root, args.id, args.force, warn)
    elif args.verb == "exec":
        return _exec(root, args)
    elif args.verb in ("ps", "pause", "resume", "update"):
        from runtime.oci import manage

        if args.verb == "ps":
            print(manage.ps(root, args.id, args.format, args.ps_args))
        elif args.verb == "update":
            manage.update(root, args.id, _json_arg(args.resources, "--resources"))
        else:
            getattr(manage, args.verb)(root, args.id)
    elif args.verb == "features":
        from runtime.oci.features import features

        print(json.dumps(features(), indent=2))


def _json_arg(value: str, flag: str):
    """The JSON in file VALUE, or on stdin for -."""
    try:
        if value == "-":
            return json.load(sys.stdin)
        with open(value) as f:
            return json.load(f)
    except OSError as e:
        raise PyrunError(flag, f"{value}: {e.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PyrunError(flag, f"{value}: not JSON: {e}") from None


def _exec(root: str, args) -> int:
    from runtime.oci import config, lifecycle

    if args.preserve_fds < 0:
        raise PyrunError("invalid --preserve-fds", f"{args.preserve_fds}: expected 0 or more")
    if args.ignore_paused:
        raise PyrunError("--ignore-paused", "not supported: resume the container first")
    if bool(args.process) == bool(args.args):
        raise PyrunError("exec", "give the command either as ARGS or in --process FILE, not both" if args.process
                         else "no command given: give ARGS or --process FILE")
    caps = [c if c.startswith("CAP_") else f"CAP_{c}" for c in args.cap]
    saved = config_of(root, args.id)
    process = config.exec_process(saved, _json_arg(args.process, "--process") if args.process else None,
                                  args.args, args.tty, args.cwd, args.env, args.user, caps, args.no_new_privs)
    code = lifecycle.exec_(root, args.id, process, args.detach, args.pid_file, args.console_socket,
                           args.preserve_fds)
    return code or 0


def config_of(root: str, cid: str) -> dict:
    """The container's config.json, as create read it."""
    from runtime import state
    from runtime.oci import state as oci_state

    oci_state.read(root, cid)  # runc's error for an unknown id
    return state.read_json(oci_state.config_path(root, cid))


def main(argv: list[str] | None = None) -> None:
    log = Log(None, "text", False)
    try:
        args = parser().parse_args(argv)
        log = Log(args.log, args.log_format, args.debug)
        if args.version:
            from runtime.oci.state import OCI_VERSION

            print(f"pyrun-oci version {VERSION}\nspec: {OCI_VERSION}")
            return
        if args.systemd_cgroup:
            raise PyrunError("--systemd-cgroup", "not supported: pyrun drives cgroupfs itself; configure the engine "
                                                 "with cgroup_manager = \"cgroupfs\"")
        if not args.verb:
            raise PyrunError("pyrun-oci", "no command given; expected spec, create, start, state, kill, delete, exec, "
                                          "ps, pause, resume, update or features")
        if os.geteuid() != 0:
            raise PyrunError("pyrun-oci", "must run as root")
        log.debug(f"{args.verb} {getattr(args, 'id', '')}".strip())
        code = run(args, log)
        if code:
            sys.exit(code)  # exec's: the exit status of the program it waited for
    except PyrunError as e:
        log.write("error", str(e))
        sys.exit(1)
    except OSError as e:
        log.write("error", f"{e.filename or ''}: {e.strerror}" if e.filename else str(e))
        sys.exit(1)
