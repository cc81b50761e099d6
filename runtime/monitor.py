"""The monitor of a detached container: the one process that stays behind for `pyrun run -d`.

It is the container's parent (a child subreaper keeps that across the
execve(2) that started this program), so it alone can wait(2) for PID 1 and
learn its exit status. Until then it copies the container's stdout and
stderr (a pipe, PIPE below) into the log, bounded (logfile.py), and it
imports nothing else: one of these stays resident per container. When PID 1
exits, it loads the rest of pyrun and tears down what the journal names,
exactly as a foreground `pyrun run` does.

    python -m runtime.monitor STATE_ROOT CONTAINER_ID PID LOG PIPE MAX_SIZE MAX_FILE STOP_TIMEOUT [DEADLINE]

It enforces --timeout too: DEADLINE is when, in time.monotonic() seconds.
"""
import os
import select
import sys
import time

from runtime import logfile, signals

_DRAIN = 16  # reads of what is left in the pipe once PID 1 has gone: the rest of its processes are dying


def main(root: str, cid: str, pid: int, log: logfile.Writer, pipe: int, grace: float = 10.0,
         deadline: float | None = None) -> None:
    with open("/proc/self/comm", "w") as f:  # what ps and `ss -ltnp` call it, instead of "python3"
        f.write("pyrun-monitor")
    # What a user sends the monitor is meant for the container; SIGTERM stops it as `pyrun stop` does.
    signals.forward_to(pid, grace, max(deadline - time.monotonic(), 0.001) if deadline else None)
    _copy(pipe, log, pid)
    _, status = os.waitpid(pid, 0)
    signals.ignore_signals()
    if log.fd >= 0:  # the teardown's own words go to the log as it is now, not to a file rotated away
        os.dup2(log.fd, 1)
        os.dup2(log.fd, 2)
    from runtime import container

    container.finish(root, cid, signals.exit_code(status), timed_out=signals.timed_out())


def _copy(pipe: int, log: logfile.Writer, pid: int) -> None:
    """Copy PIPE into LOG until PID 1 has exited (a process of the container's that outlived it could
    otherwise keep the pipe open, and the teardown waiting, for ever)."""
    pidfd = os.pidfd_open(pid)
    poll = select.poll()
    poll.register(pipe, select.POLLIN)
    poll.register(pidfd, select.POLLIN)
    while True:
        ready = dict(poll.poll())
        if pipe in ready:
            data = os.read(pipe, 65536)
            if data:
                log.write(data)
            else:
                poll.unregister(pipe)  # every writer has closed it
        if pidfd in ready:
            break
    os.set_blocking(pipe, False)
    for _ in range(_DRAIN):
        try:
            data = os.read(pipe, 65536)
        except BlockingIOError:
            break
        if not data:
            break
        log.write(data)
    os.close(pipe)
    os.close(pidfd)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), logfile.Writer(sys.argv[4], int(sys.argv[6]), int(sys.argv[7])),
         int(sys.argv[5]), *(float(a) for a in sys.argv[8:] if a))
