"""Networking: the CNI caller (bridge, host-local, loopback, portmap), netns files, iptables and sysctl helpers.

Modules: `cni` (CniRunner: ADD/DEL/CHECK of a plugin chain), `bridge`
(BridgeNetwork, PortMapping, Attachment), `netns` (create/remove/call_in),
`iptables` (Iptables, RestoreBatch), `sysctl`.
"""
