"""linux.namespaces: new ones, and joining one by path, which is how a pod's containers share a network."""
import os
import subprocess

from ocitools import Shim, cleanup, make_bundle, oci, run_bundle


def test_a_second_container_joins_the_first_ones_network_namespace(busybox, tmp_path):
    """A pod: the engine makes the first container (the pause container) and points the others at its netns."""
    first = make_bundle(str(tmp_path / "pause"), busybox, ["sleep", "60"])
    shim = Shim(str(tmp_path), "--bundle", first, "--pid-file", str(tmp_path / "pause.pid"), "pod-pause")
    try:
        assert shim.created() == 0, shim.proc.stderr.read()
        pause = int((tmp_path / "pause.pid").read_text())
        assert oci("start", "pod-pause").returncode == 0
        netns = f"/proc/{pause}/ns/net"

        def edit(c):
            c["linux"]["namespaces"] = [ns if ns["type"] != "network" else {"type": "network", "path": netns}
                                        for ns in c["linux"]["namespaces"]]
            c["linux"]["sysctl"] = {"net.ipv4.ip_unprivileged_port_start": "80"}  # the pod's, as podman sets it
        bundle = make_bundle(str(tmp_path / "app"), busybox, ["readlink", "/proc/self/ns/net"], edit)
        code, out, err = run_bundle(bundle, str(tmp_path), "pod-app")
        assert code == 0, err
        assert out.strip() == os.readlink(netns)
        assert os.readlink(netns) != os.readlink("/proc/self/ns/net")
        seen = subprocess.run(["nsenter", f"--net={netns}", "cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start"],
                              capture_output=True, text=True)
        assert seen.stdout == "80\n", seen
        with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as f:
            assert f.read() != "80\n"  # the test's own network namespace kept its value
    finally:
        shim.close()
        cleanup("pod-pause")


def test_a_new_network_namespace_has_loopback_up_and_nothing_else(busybox, tmp_path):
    bundle = make_bundle(str(tmp_path / "b"), busybox, ["sh", "-c", "ls /sys/class/net; ping -c1 -W2 127.0.0.1 "
                                                        ">/dev/null && echo lo up"])
    code, out, err = run_bundle(bundle, str(tmp_path), "ns1")
    assert (code, out) == (0, "lo\nlo up\n"), err


def test_hostname_and_the_host_network_without_a_network_namespace(busybox, tmp_path):
    def edit(c):
        c["hostname"] = "oci-box"
        c["linux"]["namespaces"] = [ns for ns in c["linux"]["namespaces"] if ns["type"] != "network"]
    bundle = make_bundle(str(tmp_path / "b"), busybox, ["sh", "-c", "hostname; readlink /proc/self/ns/net"], edit)
    code, out, err = run_bundle(bundle, str(tmp_path), "ns2")
    assert code == 0, err
    assert out.splitlines() == ["oci-box", os.readlink("/proc/self/ns/net")]
