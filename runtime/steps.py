"""Host-side changes as Step objects: each knows how to do itself, undo itself, and say both as shell.

This module teaches the rule that keeps a host clean: write down the undo
before making the change. A Journal appends a step's record to a file and
only then runs it; teardown replays the records backwards. If pyrun is
killed at any point, the journal still names everything that may exist, and
`pyrun prune` can undo it. Because every down() is idempotent ("already
gone" is success, as in CNI's DEL), undoing a step that never happened, or
undoing twice, is harmless.

The same objects are printed as shell commands (`--explain`) and traced
while running (`-v`), so the explanation cannot drift from what runs.
"""
import dataclasses
import importlib
import json
import os
import sys
import time
from typing import Callable, ClassVar

from runtime.errors import PyrunError

_KINDS: dict[str, type["Step"]] = {}
# Where each kind is defined: `pyrun prune` replays journals without having run a container,
# so it imports only the modules the journals name (a --network none container needs no network code).
_MODULES = {"cgroup": "runtime.cgroups", "layer": "runtime.container", "lease": "runtime.network.ipam",
            "netns": "runtime.network.bridge", "veth": "runtime.network.bridge",
            "ebtables": "runtime.network.portguard", "iptables": "runtime.network.firewall", "hosts": "runtime.network.dns",
            "idrange": "runtime.userns"}


class Step:
    """A host-side change. Subclasses are dataclasses; their fields are the journal record."""

    kind: ClassVar[str]

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        _KINDS[cls.kind] = cls

    def up(self) -> None:
        raise NotImplementedError

    def down(self) -> Callable[[], None] | None:
        """Undo up(). A step that has left the work to a child process returns the function that waits for it."""
        raise NotImplementedError

    def shell_up(self) -> list[str]:
        """The commands a learner would type to do what up() does."""
        return []

    def shell_down(self) -> list[str]:
        return []

    def record(self) -> dict:
        return {"kind": self.kind, **dataclasses.asdict(self)}

    @staticmethod
    def from_record(record: dict) -> "Step":
        fields = dict(record)
        kind = fields.pop("kind")
        if kind not in _KINDS:
            importlib.import_module(_MODULES[kind])
        return _KINDS[kind](**fields)


class Journal:
    """An append-only list of steps taken, read back in reverse to undo them."""

    def __init__(self, path: str, trace: bool = False):
        self.path = path
        self.trace = trace

    def run(self, step: Step) -> None:
        try:
            with open(self.path, "a") as f:
                f.write(json.dumps(step.record()) + "\n")
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:  # a full state root: the step is not taken, and undo skips a line cut short
            raise PyrunError("journal", f"cannot write {self.path}: {e.strerror}") from None
        started = time.monotonic()
        step.up()
        self._trace(started, step.shell_up(), "")
        if os.environ.get("PYRUN_DEBUG_PAUSE_AFTER") == step.kind:
            _pause(step.kind)

    def _trace(self, started: float, commands: list[str], prefix: str) -> None:
        if self.trace:
            took = (time.monotonic() - started) * 1000
            for command in commands:
                print(f"pyrun: [{took:6.1f} ms] {prefix}{command}", file=sys.stderr)

    def steps(self) -> list[Step]:
        return [step for step in self._read() if isinstance(step, Step)]

    def _read(self) -> list:
        """The recorded steps, oldest first; a line that cannot be read is there as the error that says so.

        A last line cut short was being written when pyrun was killed: its step was never started."""
        try:
            with open(self.path) as f:
                lines = f.readlines()
        except FileNotFoundError:
            return []
        out: list = []
        for number, line in enumerate(lines, 1):
            try:
                if line.strip():
                    out.append(Step.from_record(json.loads(line)))
            except Exception as e:
                if line.endswith("\n"):
                    out.append(f"journal line {number} unreadable: {one_line(e)}")
        return out

    def undo(self) -> list[str]:
        """Undo every recorded step, newest first. Keeps going past failures and returns them.

        A step still finishing in a child process (iptables-restore) is waited for at the end: the kernel
        makes both an nftables rule deletion and a veth pair's deletion wait out an RCU grace period
        (~15 ms each), and done side by side they wait for one."""
        errors, unfinished = [], []
        for step in reversed(self._read()):
            if not isinstance(step, Step):
                errors.append(step)
                continue
            started = time.monotonic()
            try:
                finish = step.down()
                if finish:
                    unfinished.append((step, started, finish))
                else:
                    self._trace(started, step.shell_down(), "undo: ")
            except Exception as e:  # whatever one undo meets, the others still run
                errors.append(f"undo {step.kind}: {one_line(e)}")
        for step, started, finish in unfinished:
            try:
                finish()
                self._trace(started, step.shell_down(), "undo: ")
            except Exception as e:
                errors.append(f"undo {step.kind}: {one_line(e)}")
        if not errors:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
        return errors


def one_line(e: Exception) -> str:
    """E as part of one line: pyrun's and the kernel's errors say enough, anything else also says its type."""
    text = str(e) if isinstance(e, (OSError, PyrunError)) else f"{type(e).__name__}: {e}"
    return " ".join(text.split())


def _pause(kind: str) -> None:
    """The fault tests' seam: stop for good right after a step, so a test can SIGKILL pyrun there."""
    print(f"pyrun: paused after {kind} (PYRUN_DEBUG_PAUSE_AFTER)", file=sys.stderr, flush=True)
    while True:
        time.sleep(3600)
