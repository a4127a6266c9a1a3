"""Networking: the CNI caller (bridge, host-local, loopback, portmap), netns files, iptables and sysctl helpers.

Modules: `cni` (CniRunner: ADD/DEL/CHECK of a plugin chain), `bridge`
(BridgeNetwork, PortMapping, Attachment), `netns` (create/remove/call_in),
`iptables` (Iptables, RestoreBatch), `sysctl`. The main names resolve lazily
from here (PEP 562), so importing the package costs nothing.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "bridge": ("BridgeNetwork", "PortMapping", "Attachment", "free_host_port", "host_port_in_use",
               "remove_unused_portmap_chains", "ENGINE_NETWORK", "ENGINE_BRIDGE", "ENGINE_SUBNET"),
    "cni": ("CniRunner", "RuntimeConf", "CNI_VERSION"),
    "iptables": ("Iptables", "RestoreBatch"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'kapal.network' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
