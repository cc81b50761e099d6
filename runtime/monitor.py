"""The monitor of a detached container: the one process that stays behind for `pyrun run -d`.

It is the container's parent (a child subreaper keeps that across the
execve(2) that started this program), so it alone can wait(2) for PID 1 and
learn its exit status. Until then it does nothing, and it imports nothing
that waiting does not need: one of these stays resident per container.
When PID 1 exits, it loads the rest of pyrun and tears down what the
journal names, exactly as a foreground `pyrun run` does.

    python -m runtime.monitor STATE_ROOT CONTAINER_ID PID STOP_TIMEOUT [DEADLINE]

It enforces --timeout too: DEADLINE is when, in time.monotonic() seconds.
"""
import os
import sys
import time

from runtime import signals


def main(root: str, cid: str, pid: int, grace: float = 10.0, deadline: float | None = None) -> None:
    with open("/proc/self/comm", "w") as f:  # what ps and `ss -ltnp` call it, instead of "python3"
        f.write("pyrun-monitor")
    # What a user sends the monitor is meant for the container; SIGTERM stops it as `pyrun stop` does.
    signals.forward_to(pid, grace, max(deadline - time.monotonic(), 0.001) if deadline else None)
    _, status = os.waitpid(pid, 0)
    signals.ignore_signals()
    from runtime import container

    container.finish(root, cid, signals.exit_code(status), timed_out=signals.timed_out())


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), *(float(a) for a in sys.argv[4:] if a))
