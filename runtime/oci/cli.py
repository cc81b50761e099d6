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
      create --bundle B [--pid-file F] [--console-socket S] [--preserve-fds N] [--no-pivot] [--no-new-keyring] [--explain] ID
      start ID | state ID | kill [--all] ID [SIGNAL] | delete [--force] ID
      exec [--process FILE] [--detach] [--pid-file F] [--tty] [--console-socket S] [--preserve-fds N]
           [--cwd D] [--env K=V]... [--user UID[:GID]] [--cap CAP]... [--no-new-privs] ID [ARGS...]
      ps [--format table|json] ID [PS_ARGS...] | pause ID | resume ID | update --resources FILE|- ID | features
"""
import errno
import gc
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
        import datetime

        time = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds")
        line = json.dumps({"level": level, "msg": msg, "time": time}) if self.fmt == "json" \
            else f"time={json.dumps(time)} level={level} msg={json.dumps(msg)}"
        try:
            # O_NOFOLLOW: a log in a shared directory such as /tmp may be a link another user planted to a file of
            # root's, which this process (root) would append to.
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        except OSError as e:
            why = "a symbolic link, not followed" if e.errno == errno.ELOOP else e.strerror
            print(f"pyrun-oci: warning: --log {self.path}: {why}; messages go to stderr only", file=sys.stderr)
            self.path = None
            return
        with open(fd, "a") as f:
            f.write(line + "\n")

    def debug(self, msg: str) -> None:
        if self.debug_on:
            self.write("debug", msg)
            if not self.path:
                print(f"pyrun-oci: debug: {msg}", file=sys.stderr)


def parse_signal(value: str) -> int:
    """9, KILL or SIGKILL (any case), as runc takes them."""
    if value.isdigit() and 0 < int(value) < signal.NSIG:
        return int(value)
    name = value.upper()
    name = name if name.startswith("SIG") else f"SIG{name}"
    if isinstance(getattr(signal.Signals, name, None), signal.Signals):
        return getattr(signal.Signals, name).value
    raise PyrunError("invalid signal", f"{value!r}: expected a number or a name such as TERM, SIGKILL")


# The command line as a table, not argparse: every engine call is a Python process of its own, and
# building argparse's parser for a dozen verbs (its gettext look-ups, shutil for the terminal width)
# cost ~10 ms of each, as much as starting the interpreter. An option is (names, kind, default): kind
# "flag" (True when given), "value", "int", "append" (one value each time), or a tuple of the choices.
_GLOBAL = [(("--root",), "value", DEFAULT_ROOT), (("--log",), "value", None),
           (("--log-format",), ("text", "json"), "text"), (("--systemd-cgroup",), "flag", False),
           (("--debug",), "flag", False), (("--version", "-v"), "flag", False)]
_PID_FILE, _CONSOLE, _PRESERVE = (("--pid-file",), "value", None), (("--console-socket",), "value", None), \
    (("--preserve-fds",), "int", 0)
# verb -> (its options, its positional arguments: "name", "name?" optional, "*name" the rest of the line)
_VERBS = {
    "spec": ([(("--bundle", "-b"), "value", "."), (("--rootless",), "flag", False)], []),
    "create": ([(("--bundle", "-b"), "value", "."), _PID_FILE, _CONSOLE, _PRESERVE,
                (("--no-pivot",), "flag", False), (("--no-new-keyring",), "flag", False),
                (("--explain",), "flag", False)], ["id"]),  # --explain: print what create and start would do
    **{verb: ([], ["id"]) for verb in ("start", "state", "pause", "resume")},
    "exec": ([(("--process", "-p"), "value", None), (("--detach", "-d"), "flag", False), _PID_FILE,
              (("--tty", "-t"), "flag", False), _CONSOLE, _PRESERVE, (("--cwd",), "value", None),
              (("--env", "-e"), "append", None), (("--user", "-u"), "value", None), (("--cap", "-c"), "append", None),
              (("--no-new-privs",), "flag", False), (("--ignore-paused",), "flag", False)], ["id", "*args"]),
    "ps": ([(("--format", "-f"), ("table", "json"), "table")], ["id", "*ps_args"]),
    "update": ([(("--resources", "-r"), "value", None)], ["id"]),
    "features": ([], []),
    "kill": ([(("--all", "-a"), "flag", False)], ["id", "signal?"]),
    "delete": ([(("--force", "-f"), "flag", False)], ["id"]),
}
_REQUIRED = {("update", "resources")}


def _dest(names: tuple) -> str:
    return names[0].lstrip("-").replace("-", "_")


class Args:
    """The parsed command line: an attribute for each option and argument, named as argparse would."""

    def __init__(self, options: list):
        self.verb = None
        self.add(options)

    def add(self, options: list) -> None:
        for names, kind, default in options:
            setattr(self, _dest(names), [] if kind == "append" else default)


def parse(argv: list[str]) -> Args:
    """The global options, the verb, its options and arguments, as runc takes them: `--flag value` or
    `--flag=value`, options before the arguments or among them; after a verb's fixed arguments, a "*rest"
    takes the rest of the line as it is (exec's program and its arguments)."""
    args = Args(_GLOBAL)
    options, fixed, rest, given = _GLOBAL, [], None, 0
    i = 0
    while i < len(argv):
        word = argv[i]
        i += 1
        if rest and given == len(fixed):
            setattr(args, rest, argv[i - 1:])
            break
        if word in ("-h", "--help"):
            import textwrap

            print(textwrap.dedent(__doc__.split("\n\n")[-1]).rstrip())  # the usage lines above are the help
            sys.exit(0)
        if word.startswith("-") and word != "-":
            name, eq, value = word.partition("=")
            kinds = [(names, kind) for names, kind, _ in options if name in names]
            if not kinds:
                raise _usage_error(args.verb, f"unrecognized option {name}")
            names, kind = kinds[0]
            if kind == "flag" and eq:
                raise _usage_error(args.verb, f"option {name} takes no value")
            if kind != "flag" and not eq:
                if i == len(argv):
                    raise _usage_error(args.verb, f"option {name} expects a value")
                value, i = argv[i], i + 1
            setattr(args, _dest(names), True if kind == "flag" else
                    _value(args.verb, name, kind, value, getattr(args, _dest(names))))
        elif args.verb is None:
            if word not in _VERBS:
                raise _usage_error(None, f"unknown command {word!r}; expected one of {', '.join(_VERBS)}")
            args.verb = word
            verb_options, positionals = _VERBS[word]
            options = verb_options  # the global ones go before the verb, as runc's
            args.add(verb_options)
            fixed = [p for p in positionals if not p.startswith("*")]
            rest = next((p[1:] for p in positionals if p.startswith("*")), None)
            for name in fixed:
                setattr(args, name.rstrip("?"), "TERM" if name == "signal?" else None)  # kill's default
            if rest:
                setattr(args, rest, [])
        elif given < len(fixed):
            setattr(args, fixed[given].rstrip("?"), word)
            given += 1
        else:
            raise _usage_error(args.verb, f"unrecognized argument {word!r}")
    missing = [name.upper() for name in fixed[given:] if not name.endswith("?")]
    missing += [f"--{name}" for verb, name in _REQUIRED if verb == args.verb and getattr(args, name) is None]
    if missing:
        raise _usage_error(args.verb, f"the following arguments are required: {', '.join(missing)}")
    return args


def _value(verb: str | None, name: str, kind, value: str, before):
    if kind == "int":
        try:
            return int(value)
        except ValueError:
            raise _usage_error(verb, f"option {name}: invalid int value: {value!r}") from None
    if kind == "append":
        return [*before, value]
    if isinstance(kind, tuple) and value not in kind:
        raise _usage_error(verb, f"option {name}: invalid choice: {value!r} (choose from {', '.join(kind)})")
    return value


def _usage_error(verb: str | None, message: str) -> PyrunError:
    """One line, exit 1, as every other error."""
    return PyrunError("usage", f"{verb + ': ' if verb else ''}{message} (see pyrun-oci --help)")


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
    from runtime.oci import config_process, lifecycle

    if args.preserve_fds < 0:
        raise PyrunError("invalid --preserve-fds", f"{args.preserve_fds}: expected 0 or more")
    if args.ignore_paused:
        raise PyrunError("--ignore-paused", "not supported: resume the container first")
    if bool(args.process) == bool(args.args):
        raise PyrunError("exec", "give the command either as ARGS or in --process FILE, not both" if args.process
                         else "no command given: give ARGS or --process FILE")
    caps = [c if c.startswith("CAP_") else f"CAP_{c}" for c in args.cap]
    saved = config_of(root, args.id)
    process = config_process.exec_process(saved, _json_arg(args.process, "--process") if args.process else None,
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
    """Run the command line ARGV and end the process with its exit status, at once (os._exit, once stdout and
    stderr are flushed): every call is a process of its own, and the interpreter's orderly shutdown, which
    frees each module one by one, was ~5-10 ms of a create. Nothing is left to do at exit: files are closed
    where they are written, and no thread runs. The cyclic garbage collector is off for the same reason: in
    a process this short it only walks the objects of each module imported (~3 ms of a create), and what
    reference counting leaves the exit frees."""
    gc.disable()
    code = _main(argv)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            code = code or 1
    os._exit(code)


def _main(argv: list[str] | None) -> int:
    log = Log(None, "text", False)
    try:
        args = parse(sys.argv[1:] if argv is None else argv)
        log = Log(args.log, args.log_format, args.debug)
        if args.version:
            from runtime.oci.state import OCI_VERSION

            print(f"pyrun-oci version {VERSION}\nspec: {OCI_VERSION}")
            return 0
        if args.systemd_cgroup:
            raise PyrunError("--systemd-cgroup", "not supported: pyrun drives cgroupfs itself; configure the engine "
                                                 "with cgroup_manager = \"cgroupfs\"")
        if not args.verb:
            raise PyrunError("pyrun-oci", "no command given; expected spec, create, start, state, kill, delete, exec, "
                                          "ps, pause, resume, update or features")
        if os.geteuid() != 0:
            raise PyrunError("pyrun-oci", "must run as root")
        log.debug(f"{args.verb} {getattr(args, 'id', '')}".strip())
        return run(args, log) or 0  # exec's: the exit status of the program it waited for
    except PyrunError as e:
        log.write("error", str(e))
        return 1
    except OSError as e:
        log.write("error", f"{e.filename or ''}: {e.strerror}" if e.filename else str(e))
        return 1
