"""The pipe between pyrun and the container while it is being born.

pyrun and the processes it forks talk over a SOCK_SEQPACKET socketpair: one
send is one message, a small JSON object. The container side's end is
close-on-exec, so a successful execve(2) closes it and pyrun reads EOF.

| from         | message                           | meaning                                        |
|--------------|-----------------------------------|------------------------------------------------|
| intermediate | {"type": "pid", "pid": N}         | the container's PID 1 is host pid N            |
| init         | {"type": "pty"} + the master's fd | -t: the terminal, made in the container's devpts |
| init         | {"type": "ready"}                 | rootfs built, hostname set; waiting to be told |
| pyrun        | {"type": "go"}                    | network wired, cgroup joined: exec the command |
| any child    | {"type": "error", "step", "detail", "code"} | setup failed; the child exits with code |
| (EOF)        |                                   | the command was exec'd (or the child died)     |
"""
import json
import socket

from runtime.errors import PyrunError


def channel() -> tuple[socket.socket, socket.socket]:
    """(pyrun's end, the container's end); neither survives an exec."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


def send(sock: socket.socket, type_: str, fds: list[int] = (), **fields) -> None:
    socket.send_fds(sock, [json.dumps({"type": type_, **fields}).encode()], list(fds))


def recv(sock: socket.socket) -> dict | None:
    """The next message, or None at EOF. File descriptors sent with it are in msg["fds"]."""
    data, fds, _, _ = socket.recv_fds(sock, 65536, 4)
    if not data:
        return None
    return {**json.loads(data), "fds": fds}


def expect(sock: socket.socket, type_: str) -> dict:
    """The next message, which must be TYPE; an error message is raised as PyrunError."""
    msg = recv(sock)
    if msg is None:
        raise PyrunError("container setup", f"the container process exited before sending {type_!r}")
    if msg["type"] == "error":
        raise PyrunError(msg["step"], msg["detail"], msg["code"])
    if msg["type"] != type_:
        raise PyrunError("container setup", f"expected {type_!r} from the container, got {msg['type']!r}")
    return msg
