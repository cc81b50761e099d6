"""The monitor of a detached container: the one process that stays behind for `pyrun run -d`.

It is the container's parent (a child subreaper keeps that across the
execve(2) that started this program), so it alone can wait(2) for PID 1 and
learn its exit status. Until then it does nothing, and it imports nothing
that waiting does not need: one of these stays resident per container.
When PID 1 exits, it loads the rest of pyrun and tears down what the
journal names, exactly as a foreground `pyrun run` does.

    python -m runtime.monitor STATE_ROOT CONTAINER_ID PID
"""
import os
import sys

from runtime import signals


def main(root: str, cid: str, pid: int) -> None:
    with open("/proc/self/comm", "w") as f:  # what ps and `ss -ltnp` call it, instead of "python3"
        f.write("pyrun-monitor")
    signals.forward_to(pid)  # what a user sends the monitor is meant for the container
    _, status = os.waitpid(pid, 0)
    signals.ignore_signals()
    from runtime import container

    container.finish(root, cid, signals.exit_code(status))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
