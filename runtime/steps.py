"""Host-side changes as Step objects: each knows how to do itself, undo itself, and say both as shell.

This module teaches the rule that keeps a host clean: write down the undo
before making the change. A Journal appends a step's record to a file and
only then runs it; teardown replays the records backwards. If pyrun is
killed at any point, the journal still names everything that may exist, and
`pyrun prune` can undo it. Because every down() is idempotent ("already
gone" is success, as in CNI's DEL), undoing a step that never happened, or
undoing twice, is harmless.

A step's work is a list of actions, each paired with the shell command a
learner would type for it (Step.actions, Step.undo_actions). The same pairs
run the step, print it (`--explain`) and trace it while it runs
(`--verbose`: each command with the time its own action took), so the
explanation cannot drift from what runs; the steps' order is written once,
in recipe.py. Where pyrun does several changes as one kernel operation (an
iptables-restore batch, one netlink request with several attributes), the
pair's command is that one operation too, so that no line claims a time it
did not take.

A journal record is the step's fields, its kind, and the module that defines
it: `pyrun prune` replays journals without having run a container, and
imports only what they name (a --network none container needs no network
code). The registry below, filled as each Step class is defined, is the one
place that maps a kind to its code. A record whose module no longer defines
its kind (the step has moved since the journal was written) is read back
through every module's kinds (recipe.all_kinds), as one written before
records named their module is.
"""
import dataclasses
import importlib
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable  # not typing's: its import is ~3 ms of every pyrun-oci call

from runtime.errors import PyrunError

Action = tuple[str, Callable[[], object]]   # (command, what does it): its function may return a finisher
Trace = Callable[[str, float], None] | None  # told each command done, with the seconds it took

KINDS: dict[str, type["Step"]] = {}
_PRINTING = threading.Lock()   # a step run beside the others traces from its thread: one line at a time


class Step:
    """A host-side change. Subclasses are dataclasses; their fields are the journal record, and the first
    paragraph of their docstring is the title --explain gives them."""

    kind: str  # a class attribute of each subclass, its records' "kind": no field of the dataclass (Step is none)

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if cls.kind in KINDS and KINDS[cls.kind] is not cls:
            raise TypeError(f"step kind {cls.kind!r} is {KINDS[cls.kind].__name__}'s already")
        KINDS[cls.kind] = cls

    @classmethod
    def title(cls) -> str:
        """The docstring's first paragraph, on one line."""
        return " ".join((cls.__doc__ or cls.__name__).strip().split("\n\n")[0].split()).rstrip(".")

    def at(self, pid) -> "Step":
        """This step for the container whose PID 1 is PID: a step run once PID 1 exists (recipe.ATTACH) that
        needs it has a pid field, which the recipe leaves empty; --explain passes the shell's "$PID"."""
        if "pid" in {f.name for f in dataclasses.fields(self)}:
            return dataclasses.replace(self, pid=pid)
        return self

    def actions(self) -> list[Action]:
        """What up() does, as (command, function) pairs, in order: each function does what its command does."""
        raise NotImplementedError

    def undo_actions(self) -> list[Action]:
        """What down() does, likewise; idempotent, each of them."""
        return []

    def up(self, trace: Trace = None) -> None:
        perform(self.actions(), trace)

    def down(self, trace: Trace = None) -> Callable[[], None] | None:
        """Undo up(). A step that has left the work to a child process returns the function that waits for it."""
        return perform(self.undo_actions(), trace)

    def shell_up(self) -> list[str]:
        """The commands a learner would type to do what up() does."""
        return [command for command, _ in self.actions()]

    def shell_down(self) -> list[str]:
        return [command for command, _ in self.undo_actions()]

    def record(self) -> dict:
        return {"kind": self.kind, "module": type(self).__module__, **dataclasses.asdict(self)}

    @staticmethod
    def from_record(record: dict) -> "Step":
        fields = dict(record)
        kind, module = fields.pop("kind"), fields.pop("module", None)
        if kind not in KINDS and isinstance(module, str) and module.startswith("runtime."):
            importlib.import_module(module)
        if kind not in KINDS:  # a journal written before records named their module, or before its step moved
            importlib.import_module("runtime.recipe").all_kinds()
        return KINDS[kind](**fields)


class Journal:
    """An append-only list of steps taken, read back in reverse to undo them."""

    def __init__(self, path: str, trace: bool = False):
        self.path = path
        self.trace = trace

    def run(self, step: Step) -> None:
        self._record(step)
        self._up(step)

    def _record(self, step: Step) -> None:
        try:
            with open(self.path, "a") as f:
                f.write(json.dumps(step.record()) + "\n")
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:  # a full state root: the step is not taken, and undo skips a line cut short
            raise PyrunError("journal", f"cannot write {self.path}: {e.strerror}") from None

    def _up(self, step: Step) -> None:
        step.up(self._tracer(""))
        if os.environ.get("PYRUN_DEBUG_PAUSE_AFTER") == step.kind:
            _pause(step.kind)

    def run_beside(self, step: Step) -> Callable[[], None]:
        """run(STEP) in a thread, while the caller goes on with the next steps; returns the function that
        waits for it and raises what it raised. The record is written here, in order with the others."""
        self._record(step)
        failed = []

        def call() -> None:
            try:
                self._up(step)
            except BaseException as e:
                failed.append(e)

        thread = threading.Thread(target=call)
        thread.start()

        def wait() -> None:
            thread.join()
            if failed:
                raise failed[0]
        return wait

    def _tracer(self, prefix: str) -> Trace:
        """With --verbose, the function that prints each command done with its time; the lines of one command
        (a heredoc) after the first are indented under it."""
        if not self.trace:
            return None

        def trace(command: str, seconds: float) -> None:
            took = f"[{seconds * 1000:6.1f} ms]"
            first, *rest = command.split("\n")
            lines = [f"pyrun: {took} {prefix}{first}"] + [f"pyrun: {' ' * len(took)} {line}" for line in rest]
            with _PRINTING:
                print("\n".join(lines), file=sys.stderr, flush=True)
        return trace

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
        errors, unfinished, trace = [], [], self._tracer("undo: ")
        for step in reversed(self._read()):
            if not isinstance(step, Step):
                errors.append(step)
                continue
            try:
                finish = step.down(trace)
                if finish:
                    unfinished.append((step, finish))
            except Exception as e:  # whatever one undo meets, the others still run
                errors.append(f"undo {step.kind}: {one_line(e)}")
        for step, finish in unfinished:
            try:
                finish()
            except Exception as e:
                errors.append(f"undo {step.kind}: {one_line(e)}")
        if not errors:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
        return errors


def perform(actions: Iterable[Action], trace: Trace = None) -> Callable[[], None] | None:
    """Do ACTIONS in order, telling TRACE each command with the time its own function took. A function that
    returns a finisher (a child process still at work) is timed until it is finished: the returned function
    finishes them all, or is None when none was left."""
    unfinished = []
    for command, do in actions:
        started = time.monotonic()
        finish = do()
        if callable(finish):
            unfinished.append((command, started, finish))
        elif trace:
            trace(command, time.monotonic() - started)
    if not unfinished:
        return None

    def wait() -> None:
        for command, started, finish in unfinished:
            finish()
            if trace:
                trace(command, time.monotonic() - started)
    return wait


def fed(command: str, lines: list[str], comment: str = "") -> str:
    """COMMAND reading LINES from a heredoc: one command, however many lines. COMMENT goes at the end of its
    first line (before the heredoc's marker, it would hide the marker too).

    Lines that hold nothing the shell expands get a plain marker: the same lines, and in a script of
    explain.py's, where the container's id is written $CID, the id again. Others get a quoted one."""
    quoted = any(c in line for line in lines for c in "$`\\")
    return "\n".join(_heredoc(command, lines, comment, quoted))


def heredoc(path: str, lines: list[str]) -> list[str]:
    """The command that writes LINES to PATH, as they are, as lines."""
    import shlex

    return _heredoc(f"cat > {shlex.quote(path)}", lines)


def _heredoc(command: str, lines: list[str], comment: str = "", quoted: bool = True) -> list[str]:
    end = "EOF"
    while end in "\n".join(lines).split("\n"):  # a line equal to the delimiter would end it; the rest would run
        end += "_"
    marker = f"'{end}'" if quoted else end   # quoted, the shell expands nothing in the lines
    return [f"{command} <<{marker}{comment and '   # ' + comment}", *lines, end]


def one_line(e: Exception) -> str:
    """E as part of one line: pyrun's and the kernel's errors say enough, anything else also says its type."""
    text = str(e) if isinstance(e, (OSError, PyrunError)) else f"{type(e).__name__}: {e}"
    return " ".join(text.split())


def _pause(kind: str) -> None:
    """The fault tests' seam: stop for good right after a step, so a test can SIGKILL pyrun there."""
    print(f"pyrun: paused after {kind} (PYRUN_DEBUG_PAUSE_AFTER)", file=sys.stderr, flush=True)
    while True:
        time.sleep(3600)
