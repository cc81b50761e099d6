"""A detached container's log, bounded as Docker's json-file driver bounds it: --log-opt max-size, max-file.

The container's stdout and stderr are a pipe, not the log file itself: were
they the file, nothing could stop a container from filling the state root
(and, with it, every other container's records). Its monitor copies the pipe
into the log, and when the next bytes would take the file past max-size it
rotates, keeping max-file files in all:

    container.log      being written
    container.log.1    the one before
    ...                up to container.log.(max-file - 1); the oldest is dropped

So a container's log never takes more than max-size x max-file bytes. Bytes
are copied as they come: a line may be split across two files, and
`pyrun logs` reads the files oldest first, so it shows the stream whole.
A write that fails (a full state root) drops those bytes, never the copying:
a container whose log cannot be written must not block on its stdout.

Beside each file, FILE.times says when its bytes came, for `pyrun logs -t`:
16 bytes (offset, time in ns) when a write comes 100 ms after the last one
stamped, or 64 bytes later and a millisecond after it; and no more once it
is a quarter of max-size, so the log's bound is at most 1.25 x what it says.

The monitor imports this module, so it imports nothing but os and time.
"""
import os
import time

# Docker's json-file keeps everything unless told; a log here lives in /run (memory) by default, so it is
# bounded unless told: 10 MiB in each of 2 files, which always leaves the last 10 MiB to read.
DEFAULTS = {"max-size": "10m", "max-file": "2"}


def parse_log_opts(options: list[str]) -> dict[str, str]:
    """--log-opt KEY=VALUE ... -> the log's config, defaults filled in; bad input is a PyrunError."""
    from runtime.errors import PyrunError

    config = dict(DEFAULTS)
    for option in options:
        key, equals, value = option.partition("=")
        if key not in DEFAULTS or not equals:
            raise PyrunError("invalid --log-opt", f"{option!r}: expected max-size=SIZE or max-file=COUNT")
        config[key] = value
        try:
            bounds(config)  # the defaults are good: what is wrong now is this option
        except ValueError:
            raise PyrunError("invalid --log-opt", f"{option!r}: expected max-size from 1k to 100g (e.g. 10m), "
                                                  "or max-file from 1 to 100") from None
    return config


def bounds(config: dict[str, str]) -> tuple[int, int]:
    """(max-size in bytes, max-file) from the log's config; ValueError if either is out of range."""
    from runtime.spec import _UNITS

    size, count = config["max-size"].strip().lower(), int(config["max-file"])
    unit = size[-1:] if size[-1:] in _UNITS else ""
    max_size = int(size[:len(size) - len(unit)]) * _UNITS[unit]
    if not (1 << 10 <= max_size <= 100 << 30 and 1 <= count <= 100):
        raise ValueError(config)
    return max_size, count


def files(path: str) -> list[str]:
    """The log's files that exist, oldest first."""
    rotated = []
    n = 1
    while os.path.exists(f"{path}.{n}"):
        rotated.append(f"{path}.{n}")
        n += 1
    return rotated[::-1] + [path]


class Writer:
    """Appends to the log at PATH, rotating it so that no file grows past MAX_SIZE and MAX_FILE are kept."""

    def __init__(self, path: str, max_size: int, max_file: int):
        self.path, self.max_size, self.max_file = path, max_size, max_file
        self.fd = self.times = -1
        self._open()

    def _open(self) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
        try:
            self.fd = os.open(self.path, flags, 0o600)
            self.size = os.fstat(self.fd).st_size
            self.times = os.open(self.path + ".times", flags, 0o600)
            self.times_size = os.fstat(self.times).st_size
        except OSError:
            self.fd, self.size = -1, 0  # the next rotation tries again
        self.stamped, self.last = self.size, 0

    def _stamp(self) -> None:
        """Say when the bytes from here on came (see above for how often)."""
        now = time.time_ns()
        since = now - self.last
        if self.times < 0 or self.times_size * 4 >= self.max_size or since < 1_000_000:
            return
        if since >= 100_000_000 or self.size - self.stamped >= 64 or not self.last:
            try:
                self.times_size += os.write(self.times, self.size.to_bytes(8, "little") + now.to_bytes(8, "little"))
            except OSError:
                pass  # a full root: the log's bytes are dropped too
            self.stamped, self.last = self.size, now

    def write(self, data: bytes) -> None:
        while data:
            if self.size >= self.max_size:
                self._rotate()
            room = self.max_size - self.size
            chunk, data = data[:room], data[room:]
            self._stamp()
            try:
                written = os.write(self.fd, chunk) if self.fd >= 0 else len(chunk)
            except OSError:
                written = len(chunk)  # dropped (see above), but counted: the next rotation may free the space
            self.size += written
            data = chunk[written:] + data

    def _rotate(self) -> None:
        for fd in (self.fd, self.times):
            if fd >= 0:
                os.close(fd)
        try:
            for n in range(self.max_file - 1, 0, -1):
                older = f"{self.path}.{n - 1}" if n > 1 else self.path
                for suffix in ("", ".times"):
                    if os.path.exists(older + suffix):
                        os.replace(older + suffix, f"{self.path}.{n}{suffix}")
            if self.max_file == 1:
                os.unlink(self.path)
                os.unlink(self.path + ".times")
        except OSError:
            pass
        self._open()


def stamps(path: str) -> list[tuple[int, int]]:
    """(offset, time in ns) of the log file PATH, from PATH.times; [] if it has none."""
    try:
        with open(path + ".times", "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return []
    return [(int.from_bytes(data[i:i + 8], "little"), int.from_bytes(data[i + 8:i + 16], "little"))
            for i in range(0, len(data) - 15, 16)]
