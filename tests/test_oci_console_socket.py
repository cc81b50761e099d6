"""process.terminal: the pty is made in the container's devpts, its master sent over --console-socket."""
import os
import socket

from ocitools import Shim, cleanup, make_bundle, oci


def test_the_master_of_the_containers_pty_arrives_on_the_console_socket(busybox, tmp_path):
    path = str(tmp_path / "console.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)

    def edit(c):
        c["process"].update(terminal=True, consoleSize={"height": 30, "width": 100})
    bundle = make_bundle(str(tmp_path / "b"), busybox, ["sh", "-c", "tty; stty size; read x; echo got $x; echo on console >/dev/console"], edit)
    shim = Shim(str(tmp_path), "--bundle", bundle, "--console-socket", path, "--pid-file", str(tmp_path / "pid"),
                "tty1")
    try:
        listener.settimeout(20)
        conn, _ = listener.accept()
        _, fds, _, _ = socket.recv_fds(conn, 1024, 1)
        conn.close()
        master = fds[0]
        assert shim.created() == 0, shim.proc.stderr.read()
        assert oci("start", "tty1").returncode == 0
        out = b""
        while b"30 100" not in out:  # written only once read waits: the tty would echo it among the output
            out += os.read(master, 1024)
        os.write(master, b"hello\n")
        while b"on console" not in out:
            try:
                chunk = os.read(master, 1024)
            except OSError:  # EIO: the container's side is closed
                break
            if not chunk:
                break
            out += chunk
        os.close(master)
        assert out.replace(b"\r", b"").split(b"\n")[:2] == [b"/dev/pts/0", b"30 100"]
        assert b"got hello\r\non console" in out
    finally:
        listener.close()
        shim.close()
        cleanup("tty1")


def test_a_console_socket_without_a_terminal_is_an_error(busybox, tmp_path):
    bundle = make_bundle(str(tmp_path / "b"), busybox, ["true"])
    r = oci("create", "--bundle", bundle, "--console-socket", str(tmp_path / "s"), "tty2")
    assert r.returncode == 1 and "process.terminal is false" in r.stderr
