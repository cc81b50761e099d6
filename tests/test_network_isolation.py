"""pyrun's networks are isolated from each other (issue 11 item 8), as Docker's isolation chains make them.

A container on the default network attacks one on a user-defined network,
and back: an unpublished port on the other network must stay out of reach,
while a published port is reached as the world reaches it, through the host's
address, and both containers still reach the internet.
"""
from conftest import HOST_IP, INTERNET_IP, pyrun, running_record, wait_for
from test_networks import lab, up  # noqa: F401  (lab is a fixture)

SERVE = "mkdir -p /www && echo {text} > /www/index.html && httpd -p 8000 -h /www && exec httpd -f -p 8001 -h /www"


def get(container: str, address: str, port: int) -> str | None:
    """The page at ADDRESS:PORT as CONTAINER gets it, or None. (busybox-static's wget crashes with -T.)"""
    request = f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {address} {port}"
    r = pyrun("exec", container, "sh", "-c", request, timeout=30)
    return r.stdout.splitlines()[-1] + "\n" if " 200 OK" in r.stdout else None


def test_a_container_reaches_another_network_only_through_its_published_ports(busybox, lab):  # noqa: F811
    up(busybox, "front", script=SERVE.format(text="front"))
    up(busybox, "back", "--network", lab, "-p", "8098:8001", script=SERVE.format(text="back"))
    try:
        front, back = (running_record(n)["NetworkSettings"]["IPAddress"] for n in ("front", "back"))
        wait_for(lambda: get("back", back, 8000), what="back's own server")
        wait_for(lambda: get("front", front, 8000), what="front's own server")
        # The attack, both ways: straight to the other network's container, on a port it never published.
        assert get("front", back, 8000) is None
        assert get("front", back, 8001) is None  # published on the host, not on its address
        assert get("back", front, 8000) is None
        # A published port is for everyone, the other network's containers too: through the host's address.
        assert get("front", HOST_IP, 8098) == "back\n"
        for name in ("front", "back"):
            r = pyrun("exec", name, "ping", "-c", "1", "-W", "2", INTERNET_IP)
            assert r.returncode == 0, f"{name} cannot reach the internet: {r.stdout}{r.stderr}"
    finally:
        pyrun("rm", "-f", "front", "back")
