"""A lease as a file: its name is what is leased, its content the container holding it.

Used for addresses (network/ipam.py) and id ranges (userns.py). The file is
created with O_EXCL, so of two pyruns choosing the same free name one gets
an error instead of a shared lease. The journal records a lease before it is
taken, so release() frees only a file that holds the same container's id:
never another's that took the name meanwhile.
"""
import os


def take(path: str, holder: str, mode: int = 0o644) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(holder)


def release(path: str, holder: str) -> None:
    """Remove PATH if HOLDER holds it; gone already is success."""
    try:
        with open(path) as f:
            ours = f.read().strip() == holder
    except FileNotFoundError:
        return
    if ours:
        os.unlink(path)
