"""The pipe between pyrun and the container while it is being born.

pyrun and the processes it forks talk over a SOCK_SEQPACKET socketpair: one
send is one message, a small JSON object. The container side's end is
close-on-exec, so a successful execve(2) closes it and pyrun reads EOF.

| from         | message                           | meaning                                        |
|--------------|-----------------------------------|------------------------------------------------|
| intermediate | {"type": "userns"}                | --userns=auto: it has unshared its user namespace, and waits |
| pyrun        | {"type": "mapped"} + the rootfs's idmapped mount as an fd | uid_map, gid_map written: become root there, unshare the rest |
| pyrun-oci    | {"type": "joined"}                | create has moved the intermediate into the container's cgroup |
| intermediate | {"type": "pid", "pid": N}         | the container's PID 1 is host pid N            |
| init         | {"type": "pty"} + the master's fd | -t: the terminal, made in the container's devpts |
| init         | {"type": "ready"}, "took" with --verbose | rootfs built, hostname set; waiting to be told; took: [kind, ms] of each pid1.py action |
| pyrun        | {"type": "go"}                    | network wired, cgroup joined: exec the command |
| any child    | {"type": "error", "step", "detail", "code"} | setup failed; the child exits with code |
| (EOF)        |                                   | the command was exec'd (or the child died)     |

A message is at most MAX_MESSAGE bytes: a longer string field (an error that names a 70,000-character
command) is shortened before it is sent, and a message that arrives cut short is an error, never
half a JSON object.
"""
import json
import socket

from runtime.errors import PyrunError

MAX_MESSAGE = 65536
MAX_FIELD = 2048  # characters of one string field; a handful of fields stay far below MAX_MESSAGE


def channel() -> tuple[socket.socket, socket.socket]:
    """(pyrun's end, the container's end); neither survives an exec."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


def send(sock: socket.socket, type_: str, fds: list[int] = (), **fields) -> None:
    fields = {key: shorten(value) if isinstance(value, str) else value for key, value in fields.items()}
    socket.send_fds(sock, [json.dumps({"type": type_, **fields}).encode()], list(fds))


def shorten(text: str, limit: int = MAX_FIELD) -> str:
    """TEXT, or its start and how long it was: enough to recognise the value without pasting all of it."""
    return text if len(text) <= limit else f"{text[:limit // 2]}... ({len(text)} characters)"


def recv(sock: socket.socket) -> dict | None:
    """The next message, or None at EOF. File descriptors sent with it are in msg["fds"]."""
    data, fds, flags, _ = socket.recv_fds(sock, MAX_MESSAGE, 4)
    if flags & socket.MSG_TRUNC:
        raise PyrunError("container setup", f"a message from the container was longer than {MAX_MESSAGE} bytes")
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
