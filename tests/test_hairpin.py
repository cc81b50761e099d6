"""A container reaches its own published port through the host, as every other container does.

Its request goes out of its port to the host, is DNAT'd back to it and must
come back in by the port it left by. Routed by the host, that is a new frame
from the bridge and needs nothing; but with bridge netfilter on (br_netfilter
loaded, as Docker loads it: then every new network namespace has
bridge-nf-call-iptables=1) the DNAT happens on the bridge itself, and a bridge
sends a frame back out of the port it came in by only in hairpin mode. Both
addresses, from the publishing container itself, with bridge netfilter off
and on.
"""
import pytest

from conftest import HOST_IP, fetch, pyrun, wait_for


SETTING = "/proc/sys/net/bridge/bridge-nf-call-iptables"   # per network namespace: the sandbox's own


@pytest.mark.parametrize("bridge_netfilter", ["0", "1"], ids=["routed", "bridge-netfilter"])
def test_a_container_reaches_its_own_published_port(busybox, clean_host, bridge_netfilter):
    script = "mkdir -p /www && echo self > /www/index.html && exec httpd -f -p 8000 -h /www"
    r = pyrun("run", "-d", "--init", "--name", "web", "-p", "8088:8000", busybox, "sh", "-c", script)
    assert r.returncode == 0, r.stderr
    try:
        try:
            with open(SETTING) as f:
                before = f.read().strip()
        except FileNotFoundError:
            pytest.skip("br_netfilter is not loaded")
        with open(SETTING, "w") as f:
            f.write(bridge_netfilter)
        try:
            wait_for(lambda: fetch(f"http://{HOST_IP}:8088/", timeout=1) == "self\n", what="the port")
            for address in (HOST_IP, "10.199.0.1"):
                # (busybox-static's wget -T crashes: timeout(1) bounds it instead)
                r = pyrun("exec", "web", "timeout", "3", "wget", "-q", "-O", "-", f"http://{address}:8088/")
                assert r.stdout == "self\n", f"{address}:8088 from the container itself: {r.stderr}"
        finally:
            with open(SETTING, "w") as f:
                f.write(before)
    finally:
        pyrun("rm", "-f", "web")
