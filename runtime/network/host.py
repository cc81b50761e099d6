"""What belongs to the host's network rather than to one state root, and the lock that guards it.

A bridge, its addresses, pyrun's iptables chains, ip_forward and the names
in /run/netns are the host's, however many state roots (--root) use them.
So their records live here, beside the state roots and not inside one, and
every change to them is made under this one lock (taken after a root's
lock, never before, so that two pyrun processes cannot deadlock).
"""
import contextlib
import os

from runtime import state

HOST_DIR = "/run/pyrun-net"


@contextlib.contextmanager
def locked():
    """Serialise every pyrun process on this host, whatever its state root, that changes the host's network."""
    os.makedirs(HOST_DIR, mode=0o700, exist_ok=True)
    with state.locked(HOST_DIR):
        yield
