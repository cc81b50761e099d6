"""User namespaces (--userns=auto): the container's root is an unprivileged host uid.

Without a user namespace, root in the container is the host's uid 0, held
back only by capabilities and seccomp: a kernel or runtime bug is a host-root
bug. With --userns=auto the container gets a user namespace whose ids are a
range of host ids no one else holds:

    container uid/gid 0 .. 65535   <->   host uid/gid BASE .. BASE+65535

Its root has every capability over the namespaces it owns (it may mount,
set its hostname, configure its own eth0) and none over the host's: on the
host it is uid BASE, a user who owns nothing. pyrun, root on the host, keeps
every capability over the container's namespaces, and so still wires its
network and cgroup from outside.

    setup                                                 undo
    lease a range: /run/pyrun-users/BASE (IdRange)        remove the file
    the layer's directories owned by BASE                 the layer goes
    intermediate: unshare(CLONE_NEWUSER), says "userns"
    pyrun: /proc/PID/uid_map, gid_map: "0 BASE 65536"
    pyrun: the rootfs as an idmapped mount, sent with "mapped"
    intermediate: setresuid(0): host uid BASE; unshares the rest, forks PID 1

The rootfs is never chowned. pyrun gives the container an *idmapped* copy
of its mount (mount_setattr(2), MOUNT_ATTR_IDMAP): through it, a file owned
by uid N on disk is owned by host uid BASE+N, which is N inside. The
writable layer is an overlay over that mount, its upper and work
directories owned by BASE, so what the container writes is the container
root's on the host too. Only pyrun can make that mount: it needs
CAP_SYS_ADMIN over the host's filesystem, which the intermediate gave up
when it entered its namespace.

With --runtime (oci/client.py) the OCI runtime makes the user namespace,
from config.json's uidMappings, and pyrun has no process in it to idmap
the rootfs by. It does what podman does with idmapped storage: the mount
is made before the runtime runs, by a user namespace of pyrun's own with
the same maps (namespace() below: a child unshares it, pyrun maps it and
keeps its fd, the child exits), attached at the layer's lower/, and the
overlay is mounted over it on the host, upper and work owned by BASE. The
runtime takes that overlay for the container's root. runc bind-mounts it
from inside the user namespace, as host uid BASE, by its path: it is
mounted where BASE alone may reach it (oci/bundle.py's Reachable).

    setup (--runtime)                                     undo
    lease a range; the layer's directories owned by BASE  (as above)
    /run/pyrun-roots/ID/root, ID of group BASE            rmdir
    a user namespace "0 BASE 65536": the rootfs idmapped
      by it at layer/lower; the overlay on it at .../root umount
    config.json: linux.uidMappings, gidMappings
    RUNTIME create: the namespace, its maps, the mounts
    the overlay unmounted from the host (oci/bundle.py's Unexposed)

-v binds are *not* idmapped: the container sees their files' host owners
through its map, so host root's files (and anyone's outside the range) are
nobody's (65534) inside, a root-only file stays unreadable, and what the
container creates there belongs to host uid BASE+N. To give a container a
directory of its own, chown it to its BASE (`pyrun inspect` shows the
mapping) or make it world-writable.

A range is one file per lease, as ipam's addresses are: chosen under a
host-wide lock, created with O_EXCL, holding the container's id. Bases are
multiples of 100000 (65536 ids and a gap), skipping any range that overlaps
a host user's subordinate ids (/etc/subuid, /etc/subgid, which podman and
newuidmap hand out) or a uid or gid that /etc/passwd or /etc/group names.
"""
import os
import shlex
from dataclasses import dataclass

from runtime import leasefile, state, sync, syscalls
from runtime.errors import PyrunError
from runtime.namespaces import CLONE_NEWUSER
from runtime.steps import Action, Step

USERS_DIR = "/run/pyrun-users"
SIZE = 65536
STRIDE = 100000
_MAX_ID = (1 << 32) - 2  # 4294967295 is (uid_t)-1, "no uid"


def _reserved() -> list[range]:
    """Host ids a container's range must not overlap: subordinate ranges, and every named user and group."""
    out = []
    for path in ("/etc/subuid", "/etc/subgid"):
        try:
            with open(path) as f:
                for line in f:
                    fields = line.strip().split(":")
                    if len(fields) == 3 and fields[1].isdigit() and fields[2].isdigit():
                        out.append(range(int(fields[1]), int(fields[1]) + int(fields[2])))
        except FileNotFoundError:
            continue
    for path in ("/etc/passwd", "/etc/group"):
        try:
            with open(path) as f:
                for line in f:
                    fields = line.split(":")
                    if len(fields) > 2 and fields[2].isdigit():
                        out.append(range(int(fields[2]), int(fields[2]) + 1))
        except FileNotFoundError:
            continue
    return out


def next_free() -> int:
    """The lowest base no lease holds and no host user's ids overlap. Call under locked()."""
    taken = {int(name) for name in (os.listdir(USERS_DIR) if os.path.isdir(USERS_DIR) else []) if name.isdigit()}
    reserved = _reserved()
    for base in range(STRIDE, _MAX_ID - SIZE, STRIDE):
        if base not in taken and not any(r.start < base + SIZE and base < r.stop for r in reserved):
            return base
    raise PyrunError("userns", f"no free range of {SIZE} host ids: {len(taken)} are leased in {USERS_DIR}; "
                               "remove stopped containers with 'pyrun prune'")


def locked():
    """Serialise every pyrun process on this host, whatever its state root, that hands out id ranges."""
    os.makedirs(USERS_DIR, mode=0o700, exist_ok=True)
    return state.locked(USERS_DIR)


@dataclass
class IdRange(Step):
    """Host uids and gids BASE .. BASE+SIZE-1, the container's 0 .. SIZE-1: the file is the lease."""

    kind = "idrange"
    base: int
    cid: str
    size: int = SIZE

    @property
    def path(self) -> str:
        return os.path.join(USERS_DIR, str(self.base))

    @property
    def id_map(self) -> str:
        """uid_map's and gid_map's line: inside, outside, count."""
        return f"0 {self.base} {self.size}"

    def actions(self) -> list[Action]:
        return [(f"mkdir -p -m 0700 {USERS_DIR}", lambda: os.makedirs(USERS_DIR, mode=0o700, exist_ok=True)),
                (f"echo {self.cid} > {shlex.quote(self.path)}   # host ids {self.base}-{self.base + self.size - 1}: "
                 "the file is the lease", lambda: leasefile.take(self.path, self.cid, 0o600))]

    def undo_actions(self) -> list[Action]:
        return [(f"rm {shlex.quote(self.path)}", lambda: leasefile.release(self.path, self.cid))]


def lease(cid: str, journal) -> IdRange:
    with locked():
        ids = IdRange(next_free(), cid)
        journal.run(ids)
    return ids


def map_ids(sock, pid: int, ids: IdRange, rootfs: str) -> None:
    """pyrun's side of "userns" -> "mapped": PID has unshared its user namespace; give it its ids and its
    root filesystem, idmapped. Only a process with CAP_SYS_ADMIN over the host's filesystems may make
    that mount, and the intermediate no longer has it."""
    sync.expect(sock, "userns")
    write_maps(pid, ids.id_map + "\n", ids.id_map + "\n")
    ns = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    try:
        tree = idmapped(rootfs, ns)
        try:
            sync.send(sock, "mapped", fds=[tree])
        finally:
            os.close(tree)
    finally:
        os.close(ns)


def idmapped(path: str, ns: int) -> int:
    """A detached copy of the mount at PATH through which a file's owner is what the user namespace NS maps
    it to. One mount, not those below it: overlayfs's lowerdir has none either."""
    tree = syscalls.open_tree(path)
    try:
        syscalls.mount_setattr(tree, syscalls.MOUNT_ATTR_IDMAP, path, userns_fd=ns)
    except OSError as e:
        os.close(tree)
        raise PyrunError("userns", f"{e.strerror}: this kernel or the filesystem holding {path} cannot "
                                   "make an idmapped mount (Linux 5.12; ext4, xfs, btrfs, tmpfs 6.3); "
                                   "run with --userns=host") from None
    return tree


def namespace(ids: IdRange) -> int:
    """A new user namespace with IDS's maps, as an fd: what an idmapped mount made before the container's
    own namespace exists needs (pyrun run --runtime, oci/bundle.py's Overlay). A namespace is made by a
    process: a child unshares it and waits while its maps are written from here and its file opened, then
    exits; the fd keeps the namespace."""
    ours, theirs = sync.channel()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            ours.close()
            syscalls.unshare(CLONE_NEWUSER)
            sync.send(theirs, "userns")  # as the intermediate says it (init._enter_userns)
            sync.recv(theirs)  # end of file: the namespace is held
            code = 0
        finally:
            os._exit(code)
    theirs.close()
    try:
        try:
            sync.expect(ours, "userns")
        except PyrunError:
            raise PyrunError("userns", "the child that makes the range's user namespace exited: "
                                       "unshare(CLONE_NEWUSER) failed") from None
        write_maps(pid, ids.id_map + "\n", ids.id_map + "\n")
        return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        ours.close()
        os.waitpid(pid, 0)


def write_maps(pid: int, uid_map: str, gid_map: str) -> None:
    """Give PID's new user namespace its ids, from the host (also pyrun-oci's linux.uidMappings/gidMappings).

    One write each, as the kernel requires. pyrun is root with CAP_SETUID and CAP_SETGID over the parent
    namespace, so it may map any host ids, needs no newuidmap, and leaves /proc/PID/setgroups at "allow":
    "deny" is required only of an unprivileged writer, and would forbid the container's setgroups(2)."""
    for name, text in (("uid_map", uid_map), ("gid_map", gid_map)):
        try:
            with open(f"/proc/{pid}/{name}", "w") as f:
                f.write(text)
        except OSError as e:
            raise PyrunError(f"write /proc/{pid}/{name}", f"{e.strerror}: the kernel refused "
                                                          f"{text.strip()!r}") from None


def become_root() -> None:
    """In a user namespace just entered: become its uid and gid 0 (host BASE), with no supplementary groups.

    Until then the process is still host uid 0, which the namespace does not map: files it created would
    have no owner the kernel could write down."""
    os.setresgid(0, 0, 0)
    os.setgroups([])
    os.setresuid(0, 0, 0)


def shell_map(pid: str, ids: IdRange, rootfs: str) -> list[str]:
    """What map_ids() does, for --explain."""
    return [f"echo '{ids.id_map}' > /proc/{pid}/uid_map   # container ids 0-{ids.size - 1} are host ids "
            f"{ids.base}-{ids.base + ids.size - 1}",
            f"echo '{ids.id_map}' > /proc/{pid}/gid_map",
            "# and its rootfs, idmapped: pyrun hands the container a detached mount (open_tree(2), then",
            f"# mount_setattr(2) MOUNT_ATTR_IDMAP with /proc/{pid}/ns/user), which no shell command makes; the",
            f"# nearest is: mount --bind -o X-mount.idmap=/proc/{pid}/ns/user {shlex.quote(rootfs)} DIR"]
