"""--help works for every command and subcommand, and names each of its options.

The command tree is read from the app itself, so a command added later is covered without touching this file."""
import json
import subprocess
import sys

import pytest

from conftest import REPO, pyrun

# Read in a child: importing runtime.cli has effects of its own (it switches the garbage collector off).
WALK = """
import json, click, typer.main
from runtime.cli import app

def walk(command, path=()):
    yield {"path": path, "options": [o for p in command.params if isinstance(p, click.Option)
                                     for o in p.opts + p.secondary_opts],
           "subcommands": sorted(getattr(command, "commands", {}))}
    for name, sub in getattr(command, "commands", {}).items():
        yield from walk(sub, path + (name,))

print(json.dumps(list(walk(typer.main.get_command(app)))))
"""
TREE = json.loads(subprocess.run([sys.executable, "-c", WALK], capture_output=True, text=True, check=True,
                                 cwd=REPO).stdout)


@pytest.mark.parametrize("command", TREE, ids=[" ".join(c["path"]) or "pyrun" for c in TREE])
def test_help_renders_and_names_every_option(command):
    r = pyrun(*command["path"], "--help")
    assert r.returncode == 0 and r.stderr == "", r.stderr[-2000:]
    assert r.stdout.startswith("Usage: "), r.stdout
    for name in command["options"] + command["subcommands"]:
        assert name in r.stdout, (name, r.stdout)
    assert "\\[" not in r.stdout, "markup escapes printed as text"


def test_the_tree_is_the_whole_cli():
    names = {" ".join(c["path"]) for c in TREE}
    assert {"", "run", "exec", "network", "network inspect"} <= names, names
