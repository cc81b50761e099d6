"""The container's filesystem: overlay, pivot_root, /proc, /dev, /sys, masks, bind mounts."""
import os

from conftest import pyrun


def run_sh(rootfs, script, *options):
    return pyrun("run", "--rm", "--network", "none", *options, rootfs, "sh", "-c", script)


def test_hostname(busybox, clean_host):
    r = pyrun("run", "--rm", "--network", "none", "--hostname", "box", busybox, "hostname")
    assert (r.returncode, r.stdout) == (0, "box\n")
    assert run_sh(busybox, "cat /etc/hostname", "--hostname", "box").stdout == "box\n"


def test_env_and_workdir(busybox, clean_host):
    r = run_sh(busybox, "echo $GREETING; pwd", "-e", "GREETING=hi", "-w", "/tmp")
    assert (r.returncode, r.stdout) == (0, "hi\n/tmp\n")


def test_missing_workdir_is_created(busybox, clean_host):
    assert run_sh(busybox, "pwd", "-w", "/srv/app").stdout == "/srv/app\n"


def test_host_mounts_are_invisible(busybox, clean_host):
    mounts = run_sh(busybox, "cat /proc/self/mountinfo").stdout
    targets = {line.split()[4] for line in mounts.splitlines()}
    assert "/" in targets and "/proc" in targets
    assert not any(t.startswith(("/work", "/sys/fs/cgroup", "/boot")) for t in targets), targets
    # The old root is detached, not merely hidden as with chroot.
    assert REPO_MARKER not in run_sh(busybox, "ls -a /").stdout


REPO_MARKER = ".pyrun-rootfs"


def test_rootfs_is_unchanged_by_the_container(busybox, clean_host):
    before = sorted(os.listdir(busybox))
    r = run_sh(busybox, "echo new > /created; rm /bin/ls; echo x >> /etc/passwd; ls /created")
    assert r.returncode == 0 and r.stdout == "/created\n", r.stderr
    assert sorted(os.listdir(busybox)) == before
    assert os.path.lexists(os.path.join(busybox, "bin", "ls"))
    assert "x\n" not in open(os.path.join(busybox, "etc", "passwd")).read()


def test_read_only_rootfs(busybox, clean_host):
    r = run_sh(busybox, "touch /created", "--read-only")
    assert r.returncode != 0 and "Read-only file system" in r.stderr
    assert run_sh(busybox, "touch /tmp/../dev/shm/ok && echo ok", "--read-only").stdout == "ok\n"


def test_dev_has_only_the_standard_devices(busybox, clean_host):
    r = run_sh(busybox, "ls /dev; for l in fd stdin stdout stderr ptmx; do readlink /dev/$l; done")
    listed = set(r.stdout.split())
    assert {"null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "mqueue"} <= listed
    assert not {"vda", "sda", "mem", "kmsg"} & listed
    assert {"/proc/self/fd", "/proc/self/fd/0", "pts/ptmx"} <= listed
    assert run_sh(busybox, "head -c 4 /dev/zero | wc -c").stdout.strip() == "4"


def test_proc_sys_and_sys_are_read_only(busybox, clean_host):
    r = run_sh(busybox, "echo 0 > /proc/sys/net/ipv4/ip_forward")
    assert r.returncode != 0 and "Read-only" in r.stderr
    r = run_sh(busybox, "echo x > /sys/kernel/uevent_helper")
    assert r.returncode != 0


def test_masked_paths_are_empty(busybox, clean_host):
    r = run_sh(busybox, "for p in /proc/keys /proc/timer_list /proc/interrupts /proc/kcore; do "
                        "[ -e $p ] && wc -c < $p; done; ls /sys/firmware | wc -l")
    assert set(r.stdout.split()) <= {"0"}, r.stdout


def test_mount_is_refused_inside(busybox, clean_host):
    r = run_sh(busybox, "mount -t tmpfs none /tmp")
    assert r.returncode != 0 and "permission denied" in r.stderr.lower(), r.stderr


def test_bind_mount_read_write_and_read_only(busybox, clean_host, tmp_path):
    (tmp_path / "in.txt").write_text("from host\n")
    r = run_sh(busybox, "cat /data/in.txt; echo back > /data/out.txt", "-v", f"{tmp_path}:/data")
    assert r.stdout == "from host\n"
    assert (tmp_path / "out.txt").read_text() == "back\n"
    r = run_sh(busybox, "echo no > /data/ro.txt", "-v", f"{tmp_path}:/data:ro")
    assert r.returncode != 0 and not (tmp_path / "ro.txt").exists()
