"""pyrun's command line: parse, call the library, print. Nothing else lives here."""
import errno
import gc
import os
import sys
from typing import List, Optional

# pyrun is a short-lived command (a detached container's monitor is a fresh interpreter, monitor.py). The
# cyclic garbage collector would run dozens of times while typer, click and pyrun's modules are imported,
# for garbage that does not exist: ~6 ms of every start.
gc.disable()

import typer
from click.exceptions import ClickException  # typer 0.20 parses with click (pyproject.toml says why 0.20)

# Only typer and errors.py at module level: each command imports the modules it uses inside its function, so
# `pyrun ps` does not load run's (container, process, init, seccomp, spec, cgroups: ~10-20 ms at every start).
from runtime.errors import EXIT_PYRUN, PyrunError

# Help is click's plain text: option texts such as "[IP:]HOST:CONTAINER[/tcp|udp]" are not rich markup (read as
# markup, `run --help` was a traceback). typer 0.20 escapes "[default: /]" for rich whenever rich is installed,
# even with rich_markup_mode=None, and prints the backslash: its help code is told that rich is absent.
typer.core.HAS_RICH = False
# click suggests a close command name itself: typer's suggestion would say it a second time.
app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None, suggest_commands=False,
                  help="A small container runtime that shows its work.")
_ROOT: dict[str, Optional[str]] = {"root": None}
_CMD = {"allow_interspersed_args": False}


def _version(show: bool) -> None:
    if show:
        from importlib.metadata import version

        print(f"pyrun version {version('pyrun')}")
        raise typer.Exit()


@app.callback()
def _global(root: Optional[str] = typer.Option(None, "--root", envvar="PYRUN_ROOT",
                                              help="State directory (default /run/pyrun)."),
            _show_version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                               help="Print pyrun's version and exit.")):
    _ROOT["root"] = root


@app.command(context_settings=_CMD)
def run(
    rootfs: str = typer.Argument(..., help="Directory holding the container's root filesystem."),
    command: List[str] = typer.Argument(None, help="Command and arguments to run inside."),
    name: Optional[str] = typer.Option(None, "--name"),
    hostname: Optional[str] = typer.Option(None, "--hostname"),
    env: List[str] = typer.Option([], "-e", "--env", help="NAME=VALUE, or NAME to pass the host's value."),
    workdir: str = typer.Option("/", "-w", "--workdir"),
    volume: List[str] = typer.Option([], "-v", "--volume", help="HOST_PATH:CONTAINER_PATH[:ro|rw]"),
    network: Optional[str] = typer.Option(None, "--network", help="bridge (the default), none, host or a network."),
    publish: List[str] = typer.Option([], "-p", "--publish", help="[IP:]HOST:CONTAINER[/tcp|udp]"),
    memory: Optional[str] = typer.Option(None, "-m", "--memory", help="Memory limit, e.g. 64m."),
    cpus: Optional[str] = typer.Option(None, "--cpus", help="CPUs' worth of time, e.g. 0.5."),
    pids_limit: Optional[str] = typer.Option(None, "--pids-limit"),
    cap_add: List[str] = typer.Option([], "--cap-add"),
    cap_drop: List[str] = typer.Option([], "--cap-drop"),
    security_opt: List[str] = typer.Option([], "--security-opt",
                                           help="seccomp=unconfined, seccomp=PROFILE.json (Docker's format)."),
    user: Optional[str] = typer.Option(None, "-u", "--user",
                                       help="USER[:GROUP], names or numbers from the rootfs's /etc/passwd."),
    read_only: Optional[bool] = typer.Option(None, "--read-only/--no-read-only",
                                             help="Mount the rootfs read-only, no writable layer."),
    tmpfs: List[str] = typer.Option([], "--tmpfs", help="PATH[:OPTIONS], e.g. /tmp:size=64m,mode=1777 "
                                                        "(noexec,nosuid,nodev unless exec, suid, dev)."),
    ulimit: List[str] = typer.Option([], "--ulimit", help="NAME=SOFT[:HARD], e.g. nofile=1024 or nproc=64:128."),
    timeout: Optional[str] = typer.Option(None, "--timeout",
                                          help="Stop the command after so many seconds; exit 124 (0: no limit)."),
    stop_timeout: Optional[str] = typer.Option(None, "--stop-timeout",
                                               help="Seconds from SIGTERM to SIGKILL when stopped (default 10)."),
    init: Optional[bool] = typer.Option(None, "--init/--no-init", help="Run a reaper as PID 1 that forwards signals."),
    sandbox: bool = typer.Option(False, "--sandbox", help="For untrusted code: --userns=auto, nobody, no capabilities, read-only "
                                                          "with a 64m /tmp, no network, 256m, 64 pids, 1 CPU, "
                                                          "60 s, --init. A flag given wins (README)."),
    interactive: bool = typer.Option(False, "-i", "--interactive", help="Keep stdin open."),
    tty: bool = typer.Option(False, "-t", "--tty", help="Give the container a pseudo-terminal."),
    userns: Optional[str] = typer.Option(None, "--userns", help="host (the default): root inside is the host's "
                                                                "root; auto (--sandbox's): an unprivileged host "
                                                                "uid range of its own."),
    runtime: Optional[str] = typer.Option(None, "--runtime", envvar="PYRUN_RUNTIME",  # dockerd's --default-runtime
                                          help="The OCI runtime pyrun hands the container to: pyrun-oci (the "
                                               "default), runc, crun or a path; or pyrun, built in: no bundle "
                                               "(docs/oci.md)."),
    rm: bool = typer.Option(False, "--rm", help="Remove the container's record when it exits."),
    detach: bool = typer.Option(False, "-d", "--detach", help="Run in the background; print the id."),
    log_opt: List[str] = typer.Option([], "--log-opt", help="A detached container's log: max-size=SIZE (10m), "
                                                             "max-file=COUNT (2), as Docker's json-file."),
    verbose: bool = typer.Option(False, "--verbose",
                                 help="Print each step as it is done: the host's, then PID 1's in the container."),
    explain: bool = typer.Option(False, "--explain", help="Change nothing; print the same work as a shell script."),
    print_spec: bool = typer.Option(False, "--print-spec", help="Change nothing; print the OCI config.json this "
                                                                "run would hand a runtime (docs/oci.md)."),
):
    """Run COMMAND in a new container made from ROOTFS."""
    from runtime import container, logfile, spec as specmod

    if not (explain or print_spec):
        _require_root()
    _refuse_options_after_rootfs(rootfs, command or [])
    spec = specmod.build_spec(
        rootfs, command or [], name=name, hostname=hostname, env=env, workdir=workdir, volumes=volume,
        network=network, publish=publish, memory=memory, cpus=cpus, pids_limit=pids_limit,
        cap_add=cap_add, cap_drop=cap_drop, read_only=read_only, init=init, interactive=interactive, tty=tty,
        security_opt=security_opt, user=user, tmpfs=tmpfs, ulimit=ulimit, stop_timeout=stop_timeout,
        timeout=timeout, sandbox=sandbox, userns=userns, runtime=runtime)
    log = logfile.parse_log_opts(log_opt)
    if detach and (interactive or tty):  # before --explain: it explains a run that would happen, or refuses
        raise PyrunError("invalid -d", "a detached container cannot be given -i or -t (pyrun has no attach)")
    if explain:
        from runtime import explain as explainmod, state

        print(explainmod.explain(spec, state.state_root(_ROOT["root"])))
        return
    if print_spec:
        import json

        from runtime import state
        from runtime.oci import engine

        print(json.dumps(engine.print_spec(spec, state.state_root(_ROOT["root"])), indent=2))
        return
    sys.exit(container.run(spec, _root(), remove=rm, verbose=verbose, detach=detach, log=log))


def _refuse_options_after_rootfs(rootfs: str, command: List[str]) -> None:
    """As IMAGE in `docker run`, ROOTFS ends run's options: in `pyrun run ./rootfs -p 8080:80 python` the command
    would be "-p". No command is named like one of run's options, so a first word that is one is this mistake;
    later words are the command's own (sh -c '-p')."""
    import shlex

    import click

    ctx = click.get_current_context()
    params = {o: p for p in ctx.command.get_params(ctx) for o in p.opts if o.startswith("-")}

    def option(word: str):  # the option WORD is or starts with (-p8080:80, --publish=8080:80, -it), if any
        return params.get(word.partition("=")[0]) or (params.get(word[:2]) if not word.startswith("--") else None)

    moved = []
    while command and command[0].startswith("-") and (param := option(command[0])) is not None:
        word = command.pop(0)
        takes_value = not getattr(param, "is_flag", False) and "=" not in word and word in param.opts
        moved += [word] + ([command.pop(0)] if takes_value and command else [])
    if moved:
        example = shlex.join(["pyrun", "run", *moved, rootfs, *command]) + ("" if command else " COMMAND")
        raise PyrunError("invalid command", f"{moved[0]!r} is one of run's options, written after ROOTFS where the "
                                            f"command goes; options go before ROOTFS (as before IMAGE in docker run): "
                                            f"{example}")


@app.command("ps")
def ps(all_: bool = typer.Option(False, "-a", "--all", help="Include containers that are not running."),
       quiet: bool = typer.Option(False, "-q", "--quiet", help="Print only the ids."),
       format_: Optional[str] = typer.Option(None, "--format",
                                             help="A template per container, e.g. '{{.Names}} {{.Status}}', "
                                                  "or 'table {{.ID}}\\t{{.Names}}'.")):
    """List containers."""
    from runtime import lifecycle

    if quiet or format_ is not None:
        from runtime import template

        rows = [lifecycle.docker_row(r) for r in lifecycle.listed(_root(), all_)]
        if quiet:
            lines = [r["ID"] for r in rows]
        elif format_.startswith("table"):
            lines = template.table(template.parse(format_[5:].lstrip()), rows, lifecycle.PS_HEADERS)
        else:
            parts = template.parse(format_)
            lines = [template.render(parts, r) for r in rows]
        for line in lines:
            print(line)
        return
    rows = lifecycle.ps(_root(), all_)
    columns = ["NAME", "ID", "STATUS", "PID", "IP", "PORTS", "COMMAND", "CREATED"]
    widths = {c: max([len(c)] + [len(r[c]) for r in rows]) for c in columns}
    for row in [dict(zip(columns, columns))] + rows:
        print("  ".join(row[c].ljust(widths[c]) for c in columns).rstrip())


@app.command()
def logs(container_: str = typer.Argument(..., metavar="CONTAINER"),
         follow: bool = typer.Option(False, "-f", "--follow", help="Keep printing until the container exits."),
         tail: str = typer.Option("all", "-n", "--tail", help="Lines to show from the end of the log, or all."),
         timestamps: bool = typer.Option(False, "-t", "--timestamps",
                                         help="Put the time each line came before it (to within 100 ms).")):
    """Print what a detached container wrote to stdout and stderr."""
    from runtime import lifecycle

    lifecycle.logs(_root(), container_, follow, lifecycle.parse_tail(tail), timestamps)


@app.command("exec", context_settings=_CMD)
def exec_(container_: str = typer.Argument(..., metavar="CONTAINER"),
          command: List[str] = typer.Argument(..., help="Command and arguments to run inside."),
          env: List[str] = typer.Option([], "-e", "--env", help="NAME=VALUE, or NAME to pass the host's value."),
          workdir: Optional[str] = typer.Option(None, "-w", "--workdir"),
          interactive: bool = typer.Option(False, "-i", "--interactive", help="Keep stdin open."),
          tty: bool = typer.Option(False, "-t", "--tty", help="Give the command a pseudo-terminal."),
          user: Optional[str] = typer.Option(None, "-u", "--user", help="USER[:GROUP] (default: the container's).")):
    """Run a command in a running container."""
    from runtime import lifecycle, spec as specmod

    pairs = [kv for kv in map(specmod.parse_env, env) if kv]
    if workdir is not None:
        workdir = specmod.parse_workdir(workdir)
    if user is not None:
        from runtime import users

        user = users.parse(user)
    sys.exit(lifecycle.exec_in(_root(), container_, command, pairs, workdir, interactive, tty, user))


@app.command()
def inspect(containers: List[str] = typer.Argument(..., metavar="CONTAINER..."),
            format_: Optional[str] = typer.Option(None, "-f", "--format",
                                                  help="A template, e.g. '{{.State.Status}}' or '{{json .Config}}'.")):
    """Print containers' records as JSON, in Docker's shape."""
    import json

    from runtime import lifecycle

    if format_ is None:
        print(json.dumps(lifecycle.inspect(_root(), containers), indent=4))
        return
    from runtime import template

    parts = template.parse(format_)
    _each(containers, lambda root, ref: print(template.render(parts, lifecycle.inspect(root, [ref])[0])),
          echo=False)


@app.command()
def wait(containers: List[str] = typer.Argument(..., metavar="CONTAINER...")):
    """Block until containers stop, then print their exit codes."""
    from runtime import lifecycle

    _each(containers, lambda root, ref: print(lifecycle.wait(root, ref)), echo=False)


@app.command()
def port(container_: str = typer.Argument(..., metavar="CONTAINER"),
         private: Optional[str] = typer.Argument(None, metavar="[PRIVATE_PORT[/PROTO]]")):
    """List a container's published ports, or the host addresses of one of them."""
    from runtime import lifecycle

    for line in lifecycle.port(lifecycle.find(_root(), container_), private):
        print(line)


@app.command(context_settings=_CMD)
def top(container_: str = typer.Argument(..., metavar="CONTAINER"),
        ps_args: List[str] = typer.Argument(None, metavar="[ps OPTIONS]")):
    """Show a container's processes, with the host's ps (default -ef)."""
    from runtime import lifecycle

    print(lifecycle.top(_root(), container_, ps_args or []))


@app.command()
def cp(source: str = typer.Argument(..., metavar="SRC"), dest: str = typer.Argument(..., metavar="DEST")):
    """Copy files between a running container and the host: CONTAINER:PATH HOSTPATH, or back."""
    from runtime import copy

    copy.copy(_root(), source, dest)


@app.command()
def stop(containers: List[str] = typer.Argument(..., metavar="CONTAINER..."),
         time_: Optional[str] = typer.Option(None, "-t", "--time", help="Seconds to wait after SIGTERM before "
                                                                       "SIGKILL (default: its --stop-timeout).")):
    """Stop containers: SIGTERM, then SIGKILL after the timeout."""
    from runtime import lifecycle

    timeout = lifecycle.parse_timeout(time_) if time_ is not None else None
    _each(containers, lambda root, ref: lifecycle.stop(root, ref, timeout))


@app.command()
def kill(containers: List[str] = typer.Argument(..., metavar="CONTAINER..."),
         signal_: str = typer.Option("KILL", "-s", "--signal", help="Signal name or number.")):
    """Send a signal to containers' PID 1."""
    from runtime import lifecycle

    sig = lifecycle.parse_signal(signal_)
    _each(containers, lambda root, ref: lifecycle.kill(root, ref, sig))


@app.command()
def rm(containers: List[str] = typer.Argument(..., metavar="CONTAINER..."),
       force: bool = typer.Option(False, "-f", "--force", help="Kill the container first if it runs.")):
    """Remove containers."""
    from runtime import lifecycle

    _each(containers, lambda root, ref: lifecycle.rm(root, ref, force))


network_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, suggest_commands=False,
                          help="Bridge networks: the default 'bridge' and your own.")
app.add_typer(network_app, name="network")


@network_app.command("ls")
def network_ls():
    """List networks."""
    from runtime.network import networks

    rows = networks.describe(_root())
    print(f"{'NAME':<16}{'BRIDGE':<17}{'SUBNET':<20}{'GATEWAY':<16}{'CONTAINERS':<12}OPTIONS")
    for r in rows:
        print(f"{r['name']:<16}{r['bridge']:<17}{r['subnet']:<20}{r['gateway']:<16}{r['containers']:<12}"
              f"{r['options']}")


@network_app.command("create")
def network_create(name: str = typer.Argument(...),
                   subnet: str = typer.Option(..., "--subnet", help="A private IPv4 subnet, e.g. 10.123.0.0/24."),
                   internal: bool = typer.Option(False, "--internal",
                                                 help="No way out: no world, no other network, no host services."),
                   opt: List[str] = typer.Option([], "-o", "--opt", metavar="KEY=BOOL",
                                                 help="icc=false: its containers cannot reach each other; "
                                                      "host_access=false: nor the host's services.")):
    """Create a bridge network; containers on it find each other by name."""
    from runtime import spec as specmod
    from runtime.network import bridge, networks

    net = bridge.create_network(_root(), specmod.parse_name(name, "network name"), networks.parse_subnet(subnet),
                                networks.parse_options(opt, internal))
    print(net.name)


@network_app.command("rm")
def network_rm(names: List[str] = typer.Argument(..., metavar="NETWORK...")):
    """Remove networks no container uses: the bridge, its rules, and pyrun's chains with the last one."""
    from runtime.network import bridge

    _each(names, bridge.remove_network)


@network_app.command("inspect")
def network_inspect(name: str = typer.Argument("bridge"),
                    format_: str = typer.Option("text", "--format", help="text, json, dot or svg (Graphviz).")):
    """A network as the kernel sees it: veth pairs, addresses, rules with counters, a drawing."""
    import json

    from runtime.network import inspect as netinspect

    if format_ not in ("text", "json", "dot", "svg"):
        raise PyrunError("invalid --format", f"{format_!r}: expected text, json, dot or svg")
    info = netinspect.gather(_root(), name)
    print({"text": netinspect.text, "dot": netinspect.dot, "svg": netinspect.svg,
           "json": lambda i: json.dumps(i, indent=2)}[format_](info))


@app.command()
def doctor(publish: str = typer.Option(..., "-p", "--publish", help="The published host port to check.")):
    """Walk a published port's packet path and name the first hop that fails."""
    from runtime.network import doctor as doc

    try:
        port = int(publish)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise PyrunError("invalid -p", f"{publish!r}: expected a host port number from 1 to 65535")
    sys.exit(doc.report(_root(), port))


@app.command()
def prune():
    """Remove stopped containers and everything a crashed pyrun left on the host."""
    from runtime import container

    for name in container.prune(_root()):
        print(name)


def _each(refs: List[str], action, echo: bool = True) -> None:
    """As docker does with several containers: act on each in turn and print its name when done; one that
    fails is reported and the others are still done, and the exit code says that one failed."""
    root = _root()
    failed = None
    for ref in refs:
        try:
            action(root, ref)
        except PyrunError as e:
            print(f"pyrun: {e}", file=sys.stderr)
            failed = e
            continue
        if echo:
            print(ref, flush=True)
    if failed:
        sys.exit(failed.exit_code)


def _root() -> str:
    """The state root, for a command that changes or reads the host's containers: only root may."""
    from runtime import state

    _require_root()
    root = state.state_root(_ROOT["root"])
    state.ensure_root(root)
    return root


def _require_root() -> None:
    if os.geteuid() != 0:  # else the first thing to fail is the state root, or a cgroup with a traceback
        raise PyrunError("must run as root", "")


def main() -> None:
    try:
        try:
            app(standalone_mode=False)
        except PyrunError as e:
            print(f"pyrun: {e}", file=sys.stderr)
            sys.exit(e.exit_code)
        except ClickException as e:  # a usage error: pyrun's own, so 125 like any other
            print(f"pyrun: {e.format_message()}", file=sys.stderr)
            sys.exit(EXIT_PYRUN)
        except typer.Abort:
            sys.exit(130)
        except OSError as e:  # a full state root wherever pyrun writes it: one line, as for any error of pyrun's
            if e.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            print(f"pyrun: {e.filename or 'state'}: {e.strerror}", file=sys.stderr)
            sys.exit(EXIT_PYRUN)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 0 if e.code is None else 1
        if code == 1 and not isinstance(e.code, int):
            print(e.code, file=sys.stderr)  # as the interpreter does for sys.exit("message")
    else:
        code = 0
    _exit(code)


def _exit(code: int) -> None:
    """Exit without the interpreter's teardown of every module and object (~17 ms): pyrun has closed and
    waited for all it opened and started, and the kernel frees the rest."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass  # a reader that went away (pyrun ps | head) or a closed stream: nothing left to say
    os._exit(code)
