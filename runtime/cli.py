"""pyrun's command line: parse, call the library, print. Nothing else lives here."""
import sys
from typing import List, Optional

import typer

try:  # typer 0.2x carries its own copy of click
    from typer._click.exceptions import ClickException
except ImportError:
    from click.exceptions import ClickException

from runtime.errors import EXIT_PYRUN, PyrunError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="A small container runtime that shows its work.")
_ROOT: dict[str, Optional[str]] = {"root": None}
_CMD = {"allow_interspersed_args": False}


@app.callback()
def _global(root: Optional[str] = typer.Option(None, "--root", envvar="PYRUN_ROOT",
                                              help="State directory (default /run/pyrun).")):
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
    network: str = typer.Option("bridge", "--network", help="bridge, none or host."),
    publish: List[str] = typer.Option([], "-p", "--publish", help="[IP:]HOST:CONTAINER[/tcp|udp]"),
    memory: Optional[str] = typer.Option(None, "-m", "--memory", help="Memory limit, e.g. 64m."),
    cpus: Optional[str] = typer.Option(None, "--cpus", help="CPUs' worth of time, e.g. 0.5."),
    pids_limit: Optional[str] = typer.Option(None, "--pids-limit"),
    cap_add: List[str] = typer.Option([], "--cap-add"),
    cap_drop: List[str] = typer.Option([], "--cap-drop"),
    read_only: bool = typer.Option(False, "--read-only", help="Mount the rootfs read-only, no writable layer."),
    init: bool = typer.Option(False, "--init", help="Run a reaper as PID 1 that forwards signals."),
    interactive: bool = typer.Option(False, "-i", "--interactive", help="Keep stdin open."),
    tty: bool = typer.Option(False, "-t", "--tty", help="Give the container a pseudo-terminal."),
    rm: bool = typer.Option(False, "--rm", help="Remove the container's record when it exits."),
    verbose: bool = typer.Option(False, "--verbose", help="Print each host-side step as it is done."),
):
    """Run COMMAND in a new container made from ROOTFS."""
    from runtime import container, spec as specmod, state

    spec = specmod.build_spec(
        rootfs, command or [], name=name, hostname=hostname, env=env, workdir=workdir, volumes=volume,
        network=network, publish=publish, memory=memory, cpus=cpus, pids_limit=pids_limit,
        cap_add=cap_add, cap_drop=cap_drop, read_only=read_only, init=init, interactive=interactive, tty=tty)
    sys.exit(container.run(spec, state.state_root(_ROOT["root"]), remove=rm, verbose=verbose))


@app.command()
def prune():
    """Remove stopped containers and everything a crashed pyrun left on the host."""
    from runtime import container, state

    for name in container.prune(state.state_root(_ROOT["root"])):
        print(name)


def main() -> None:
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
