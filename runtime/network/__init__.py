"""The container's network: a bridge, a veth pair per container, and iptables NAT."""
