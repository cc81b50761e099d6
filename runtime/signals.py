"""Signals and the process that owns a container: what each phase does with one.

A signal to pyrun (or to a detached container's monitor) means one thing in
each phase, and none of them is "die half-way": during setup it aborts the
setup (the journal undoes what was done), while the command runs it is
forwarded to the container's PID 1, and during teardown it is ignored, so
the teardown always finishes. The monitor imports this module, so it imports
nothing heavy.
"""
import os
import signal

from runtime.errors import PyrunError

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)


def exit_code(status: int) -> int:
    """A wait status as a shell reports it: the exit code, or 128+N for a death by signal N."""
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def abort_on_signals() -> None:
    """Setup phase: a signal raises PyrunError, so the caller's teardown runs."""
    def abort(sig: int, _frame) -> None:
        raise PyrunError("run", f"interrupted by {signal.Signals(sig).name} before the command started", 128 + sig)

    for sig in FORWARDED:
        signal.signal(sig, abort)


def forward_to(pid: int) -> None:
    """Running phase: pass each signal on to PID."""
    def forward(sig: int, _frame) -> None:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass

    for sig in FORWARDED:
        signal.signal(sig, forward)


def ignore_signals() -> None:
    """Teardown phase: the command is gone and the host must be restored whatever the user sends."""
    for sig in FORWARDED:
        signal.signal(sig, signal.SIG_IGN)  # not a Python handler: the interpreter resets those as it exits
