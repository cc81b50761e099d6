"""Signals and the process that owns a container: what each phase does with one.

A signal to pyrun (or to a detached container's monitor) means one thing in
each phase, and none of them is "die half-way": during setup it aborts the
setup (the journal undoes what was done), while the command runs it is
forwarded to the container's PID 1, and during teardown it is ignored, so
the teardown always finishes. The monitor imports this module, so it imports
nothing heavy.

While the command runs, SIGTERM and SIGINT also *stop* it, as `pyrun stop`
does: PID 1 gets only the signals it has a handler for, so a command that
ignores the forwarded one is killed (SIGKILL) once the stop timeout has
passed. That is what makes `timeout 3 pyrun run ...` end. --timeout starts
the same stop by itself, with SIGALRM from an interval timer: one timer,
first the time limit, then the grace period.
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


_STOP = {"pid": 0, "grace": 10.0, "stopping": False, "timed_out": False, "deadline": None}
STOPPING = (signal.SIGTERM, signal.SIGINT)


def forward_to(pid: int, grace: float = 10.0, timeout: float | None = None) -> None:
    """Running phase: pass each signal on to PID; SIGTERM and SIGINT stop it: SIGKILL GRACE seconds later.
    With TIMEOUT, the stop starts by itself after TIMEOUT seconds (timed_out() then says so)."""
    import time

    _STOP.update(pid=pid, grace=grace, stopping=False, timed_out=False,
                 deadline=time.monotonic() + timeout if timeout else None)
    for sig in FORWARDED:
        signal.signal(sig, _forward)
    signal.signal(signal.SIGALRM, _alarm)
    if timeout:
        signal.setitimer(signal.ITIMER_REAL, timeout)


def _send(sig: int) -> None:
    try:
        os.kill(_STOP["pid"], sig)
    except ProcessLookupError:
        pass


def _forward(sig: int, _frame) -> None:
    _send(sig)
    if sig in STOPPING:
        _stop()


def _alarm(_sig, _frame) -> None:
    if _STOP["stopping"]:
        _send(signal.SIGKILL)  # the grace period is over
    else:
        _STOP["timed_out"] = True
        _send(signal.SIGTERM)
        _stop()


def _stop() -> None:
    """Start the grace period, once: a second SIGTERM does not put off the SIGKILL."""
    if _STOP["stopping"]:
        return
    _STOP["stopping"] = True
    if _STOP["grace"] > 0:
        signal.setitimer(signal.ITIMER_REAL, _STOP["grace"])
    else:
        _send(signal.SIGKILL)


def timed_out() -> bool:
    """Did --timeout end the command?"""
    return _STOP["timed_out"]


def deadline() -> float | None:
    """When --timeout ends the command, in time.monotonic() seconds (the same clock in every process)."""
    return _STOP["deadline"] if not _STOP["stopping"] else None


def ignore_signals() -> None:
    """Teardown phase: the command is gone and the host must be restored whatever the user sends."""
    signal.setitimer(signal.ITIMER_REAL, 0)  # a timer outlives execve(2): the monitor's exec must not meet it
    for sig in (*FORWARDED, signal.SIGALRM):
        signal.signal(sig, signal.SIG_IGN)  # not a Python handler: the interpreter resets those as it exits
