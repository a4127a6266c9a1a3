"""Networking: the CNI caller (bridge, host-local, loopback, portmap) and iptables helpers."""
