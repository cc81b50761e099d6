"""What the engine prepares on the host before the OCI runtime's create: the bundle and the root it names.

An OCI runtime is handed a bundle: a directory with config.json, whose
root.path is the container's root filesystem. pyrun run --runtime (client.py)
makes that root on the host, as containerd's snapshotter does for runc, and
takes it off the host again once the runtime holds it:

    Reachable   --userns=auto: a mount point the container's root (an unprivileged host uid) may reach
    Overlay     overlayfs: the writable layer over the rootfs, mounted on the host (with --userns=auto
                over the rootfs idmapped onto the range: open_tree(2), mount_setattr(2))
    Tini        --init: the container's own copy of tini, which the runtime binds at /sbin/docker-init
    Bundle      config.json (engine.py), each mount target resolved inside the root first
                (openat2(2) RESOLVE_IN_ROOT), as pyrun's own runtime resolves it
    Unexposed   after create: the overlay detached from the host's tree (umount2(2) MNT_DETACH); the
                container's mount namespace keeps it
"""
import json
import os
import shlex
import shutil
import stat
from dataclasses import dataclass

from runtime import rootfs, userns
from runtime.errors import PyrunError
from runtime.steps import Action, Step, heredoc
from runtime.syscalls import open_in_root

ROOTS_DIR = "/run/pyrun-roots"  # --userns=auto: the bundles' roots, host-wide, as /run/pyrun-users (Reachable)

# --init's PID 1, as Docker's docker-init: Debian's package tini, static, so that it runs in any rootfs.
TINI = "/usr/bin/tini-static"
INIT = "/sbin/docker-init"  # where Docker binds it in the container


def tini() -> str:
    """The tini --init copies from: PYRUN_INIT_PATH, as dockerd's --init-path, else Debian's tini-static."""
    path = os.environ.get("PYRUN_INIT_PATH") or TINI
    if not os.path.isfile(path):
        raise PyrunError("invalid --init", f"{path}: not a file; --init runs tini as PID 1, as Docker does "
                                           "(--runtime pyrun: pyrun's own reaper): install Debian's package tini "
                                           "(apt-get install tini), or name a static tini in PYRUN_INIT_PATH")
    return os.path.abspath(path)


def tini_copy(layer: str) -> str:
    """Where a --init container's own copy of tini is: in its layer directory (rootfs.Layer)."""
    return os.path.join(layer, "docker-init")


@dataclass
class Overlay(Step):
    """The writable layer over the rootfs, mounted on the host: the bundle's root for the runtime

    With --userns=auto (ID_BASE) the rootfs is idmapped onto the range first, as podman's idmapped storage
    does: through the overlay the container's root owns the files host root owns on disk, before the runtime
    has made the container's user namespace (userns.py). The mount's user namespace is one of its own with
    the same maps, made for it (userns.namespace); the runtime makes the container's from uidMappings."""

    kind = "overlay"
    rootfs: str
    layer: str
    at: str | None = None           # the mount point, root.path: LAYER/merged if None (see Reachable)
    id_base: int | None = None

    @property
    def merged(self) -> str:
        return self.at or os.path.join(self.layer, "merged")

    @property
    def _lower(self) -> str:
        return self.rootfs if self.id_base is None else os.path.join(self.layer, "lower")

    def actions(self) -> list[Action]:
        """One mount, on directories opened for it (mount_layer). With an id range, the idmapped rootfs is
        attached at LAYER/lower for it and detached after it: overlayfs holds a private copy of each layer's
        mount."""
        q = shlex.quote
        overlay = (rootfs.mount_layer_shell(self._lower, self.layer, merged=self.merged),
                   lambda: rootfs.mount_layer(self._lower, self.layer, self.merged))
        if self.id_base is None:
            return [overlay]
        ids = userns.IdRange(self.id_base, "")
        return [(f"mount --bind -o X-mount.idmap=0:{ids.base}:{ids.size} {q(self.rootfs)} {q(self._lower)}   # "
                 f"a file of uid N on disk is host uid {ids.base}+N through it (util-linux 2.39)",
                 lambda: self._idmap(ids)),
                overlay,
                (f"umount {q(self._lower)}", lambda: rootfs.unmount(self._lower))]

    def _idmap(self, ids: "userns.IdRange") -> None:
        ns = userns.namespace(ids)
        try:
            rootfs.attach(userns.idmapped(self.rootfs, ns), self._lower)
        finally:
            os.close(ns)

    def undo_actions(self) -> list[Action]:
        out = [(f"umount -l {shlex.quote(self.merged)}", lambda: rootfs.unmount(self.merged))]
        if self.id_base is not None:  # pyrun stopped between the two mounts
            out.append((f"umount -l {shlex.quote(self._lower)}", lambda: rootfs.unmount(self._lower)))
        return out


@dataclass
class Reachable(Step):
    """A mount point for the bundle's root that the container's root can reach (--userns=auto)

    runc makes the container's mounts from inside its user namespace, as its root: host uid BASE, which has
    no capability over the host's files. runc 1.1 opens a bind mount's source before it enters the
    namespace, but not root.path: it bind-mounts root.path onto itself by its path (rootfs_linux.go,
    prepareRoot), and BASE may not search pyrun's state directories (0700, root's): "permission denied".
    podman chmods every directory above a container's root o+x for it (makeAccessible); pyrun keeps its
    state root's alone, and mounts the root under a host-wide directory of its own instead:
    ROOTS_DIR (0711: anyone may pass, no one but root list it) / ID (0710, group BASE: no one else
    passes) / root. pyrun-oci opens the rootfs before it enters the namespace and needs none of it, but
    an engine cannot know what its runtime does.
    """

    kind = "reachable"
    cid: str
    group: int   # the range's BASE: the container's root's gid on the host

    @property
    def path(self) -> str:
        return os.path.join(ROOTS_DIR, self.cid, "root")

    def actions(self) -> list[Action]:
        top = os.path.dirname(self.path)
        return [(f"mkdir -p -m 0711 {ROOTS_DIR}", lambda: _mkdir(ROOTS_DIR, 0o711)),
                (f"mkdir -m 0710 {top}", lambda: _mkdir(top, 0o710)),
                (f"chgrp {self.group} {top}   # the container's root's group, on the host",
                 lambda: os.chown(top, 0, self.group)),
                (f"mkdir -m 0700 {self.path}", lambda: _mkdir(self.path, 0o700))]

    def undo_actions(self) -> list[Action]:
        return [(f"rmdir {self.path} {os.path.dirname(self.path)}", self._remove)]

    def _remove(self) -> None:
        """rmdir, never a recursive removal, which would go into a root still mounted there; gone is done."""
        for path in (self.path, os.path.dirname(self.path)):
            try:
                os.rmdir(path)
            except FileNotFoundError:
                pass


def _mkdir(path: str, mode: int) -> None:
    try:
        os.mkdir(path)
    except FileExistsError:
        pass
    os.chmod(path, mode)  # not the umask's (pyrun's is 077); and an older one's made looser, tightened


@dataclass
class Unexposed(Step):
    """The container's root taken off the host's tree, now that the runtime holds it in the container's mount
    namespace: a setuid file the container makes is no way to root for a host user who reaches the layer

    The overlay was mounted on the host only for the runtime to find it at root.path. Left there, it would
    be a suid mount of the container's files under the state directory; detached, its only mounts are the
    container's own, and what the container writes is on the host only in the layer's diff/, a nosuid,nodev
    mount (rootfs.Layer)."""

    kind = "unexposed"
    merged: str

    def actions(self) -> list[Action]:
        """Its undo is nothing: there is nothing on the host to put back."""
        return [(f"umount -l {shlex.quote(self.merged)}   # the container's own mount namespace keeps its root",
                 lambda: rootfs.unmount(self.merged))]


@dataclass
class Tini(Step):
    """--init: a copy of tini, the container's own, which the runtime binds read-only at /sbin/docker-init

    Docker binds the host's docker-init itself. A read-only bind stops nobody with CAP_SYS_ADMIN (--cap-add
    ALL) in the host's user namespace: `mount -o remount,rw,bind /sbin/docker-init`, then chmod 4755 makes
    the host's file a setuid-root program that runs any command it is given (its contents are safe only
    while it runs: ETXTBSY). A copy in the layer directory is the container's alone, on a nosuid,nodev
    mount of the host (rootfs.Layer), like the /etc files beside it, and it goes with the layer: no undo
    of its own, which a container's chattr +i on it would fail (tree.remove_tree's does not)."""

    kind = "tini"
    source: str   # tini()
    path: str     # tini_copy()

    def actions(self) -> list[Action]:
        return [(f"install -m 0555 {shlex.quote(self.source)} {shlex.quote(self.path)}", self._copy)]

    def _copy(self) -> None:
        shutil.copyfile(self.source, self.path)
        os.chmod(self.path, 0o555)


@dataclass
class Bundle(Step):
    """The bundle: config.json, the container as the runtime will read it (made by runtime/oci/engine.py)"""

    kind = "bundle"
    path: str
    config: dict
    user_files: bool = True  # refuse an /etc/passwd or /etc/group that is no file: runc opens both; pyrun-oci neither

    def actions(self) -> list[Action]:
        config = heredoc(os.path.join(self.path, "config.json"), json.dumps(self.config, indent=2).splitlines())
        return [("# each mount target resolved inside the rootfs, as PID 1 resolves them (openat2 RESOLVE_IN_ROOT);"
                 " /dev, /proc, /sys directories" + (", /etc/passwd and /etc/group files" if self.user_files else ""),
                 self._check),
                (f"mkdir -p -m 0700 {shlex.quote(self.path)}",
                 lambda: os.makedirs(self.path, mode=0o700, exist_ok=True)),
                ("\n".join(config), self._write)]

    def _check(self) -> None:
        _resolve_targets(self.config)
        if self.user_files:
            _check_user_files(self.config["root"]["path"])

    def _write(self) -> None:
        with open(os.open(os.path.join(self.path, "config.json"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
                          0o600), "w") as f:
            json.dump(self.config, f, indent=2)

    def undo_actions(self) -> list[Action]:
        return [(f"rm -rf {shlex.quote(self.path)}", lambda: shutil.rmtree(self.path, ignore_errors=True))]


# Paths a runtime writes below by name, joined to root.path on the host's side (runc's /dev/fd, /dev/ptmx links):
# a symlink there in the rootfs would be followed on the host, whatever the runtime does with its mounts.
_RUNTIMES_OWN = ("/dev", "/proc", "/sys")


def _resolve_targets(config: dict) -> None:
    """Each mount destination in CONFIG resolved inside root.path, as pyrun's own runtime resolves it
    (rootfs.Root.target: made if missing, a symlink to nothing inside refused), and written back resolved:
    no runtime then meets a symlink on its way to a mount target. /dev, /proc and /sys must be directories.
    A destination below an earlier one is on that mount, not in the rootfs: the runtime's to resolve."""
    root = rootfs.Root(config["root"]["path"])
    done: list[str] = []
    try:
        for m in config.get("mounts", []):
            dest = os.path.normpath(m["destination"])
            if any(dest.startswith(d.rstrip("/") + "/") for d in done):
                done.append(dest)
                continue
            fd = root.target(dest, m["type"] != "bind" or os.path.isdir(m["source"]))
            try:
                inside = os.path.relpath(os.readlink(f"/proc/self/fd/{fd}"), root.path)
                resolved = "/" if inside == "." else "/" + inside
            finally:
                os.close(fd)
            if resolved != dest and (dest in _RUNTIMES_OWN or resolved in _RUNTIMES_OWN):
                raise PyrunError("mount target", f"{dest}: a symlink to {resolved} in the rootfs; expected a "
                                                 "directory (the runtime writes below it from the host's side)")
            m["destination"] = resolved
            done.append(dest)
    finally:
        root.close()


def _check_user_files(root: str) -> None:
    """The rootfs's /etc/passwd and /etc/group: regular files, or none. runc opens them in the container before
    the command runs, whatever -u says (to set HOME), and a FIFO there would hold its create, and pyrun, for
    good. pyrun's own runtime reads them only as users.py does: a FIFO is no file to it."""
    fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for path in ("/etc/passwd", "/etc/group"):
            try:
                found = open_in_root(fd, path)
            except OSError:
                continue  # missing, or a link the runtime's own lookup will fail on too
            try:
                mode = os.fstat(found).st_mode
            finally:
                os.close(found)
            if not stat.S_ISREG(mode):
                raise PyrunError("rootfs", f"{path} is not a regular file (mode {stat.filemode(mode)}): the runtime "
                                           "reads it before the command runs; expected a file or none")
    finally:
        os.close(fd)
