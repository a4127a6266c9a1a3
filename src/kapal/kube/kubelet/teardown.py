"""Remove everything a kubelet put on the node (`kapal down`, later `kapal adm reset`).

Run it once the pods' containers are gone (or the engine is stopped): for every pod directory the sandbox
(CNI DEL, namespace files, the shm tmpfs), the volumes, the pod cgroup; then the kubepods tree, the pod
bridge with its NAT rules and leases, and portmap's chains if nobody uses them any more. Idempotent.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from pathlib import Path

from kapal import errors
from kapal.linux.mount import MNT_DETACH, umount, unmount_tree
from kapal.linux.namespaces import unpin

from .cgroups import PodCgroups
from .podfiles import ClusterDns
from .sandbox import SandboxManager
from .volumes import VolumeManager

log = logging.getLogger(__name__)


def _network(root_dir: Path, bridge: str):  # type: ignore[no-untyped-def]
    """The pod network as the kubelet recorded it (network.json), or None when it never made one."""
    import json

    from kapal.network.bridge import BridgeNetwork

    try:
        rec = json.loads((root_dir / "cni" / "network.json").read_text())
    except (FileNotFoundError, ValueError):
        rec = _from_bridge(bridge)  # the record is gone (a deleted directory): ask the bridge itself
        if rec is None:
            return None
    return BridgeNetwork("kubepods", rec.get("bridge") or bridge, rec["subnet"], root_dir / "cni",
                         nat_exclude=rec.get("nat_exclude") or [])


def _from_bridge(bridge: str) -> dict | None:
    """The pod network's subnet from the bridge's own address (its gateway), for rules that must go."""
    import ipaddress
    import subprocess

    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", bridge], capture_output=True, text=True)
    for line in out.stdout.splitlines():
        fields = line.split()
        if "inet" in fields:
            net = ipaddress.ip_interface(fields[fields.index("inet") + 1]).network
            return {"bridge": bridge, "subnet": str(net),
                    "nat_exclude": [str(net.supernet(new_prefix=min(net.prefixlen, 16)))]}
    return None


def teardown_node(root_dir: Path, *, cgroup_root: str = "/", bridge: str = "kapal-cni0") -> list[str]:
    """Undo the kubelet's work on this host; returns what could not be removed (empty when all went)."""
    problems: list[str] = []
    network = _network(root_dir, bridge)
    sandboxes = SandboxManager(root_dir, network, ClusterDns())
    volumes = VolumeManager(root_dir / "pods", None)
    cgroups = PodCgroups(cgroup_root)
    for uid in sandboxes.known():
        try:
            state = sandboxes.load(uid)
            if state is not None:
                sandboxes.destroy(state)
            else:  # no record: undo what the layout says is there
                if network is not None:
                    with contextlib.suppress(errors.KapalError):
                        network.cleanup(f"pod-{uid}")
                pod_dir = Path(sandboxes.pod_dir(uid))
                for ns in ("net", "ipc", "uts"):
                    with contextlib.suppress(OSError):
                        unpin(str(pod_dir / "ns" / ns))
                if os.path.ismount(pod_dir / "shm"):
                    umount(str(pod_dir / "shm"), MNT_DETACH)
            volumes.unmount_all(uid)
            cgroups.destroy(uid)
            sandboxes.remove_pod_dir(uid)
        except (errors.KapalError, OSError) as e:
            problems.append(f"pod {uid}: {e}")
    try:
        cgroups.teardown()
    except (errors.KapalError, OSError) as e:
        problems.append(f"kubepods cgroups: {e}")
    try:
        if network is not None:
            network.teardown()
        from kapal.network.bridge import remove_unused_portmap_chains

        remove_unused_portmap_chains()
    except (errors.KapalError, OSError) as e:
        problems.append(f"pod network: {e}")
    problems += unmount_tree(root_dir, include_root=False)[1]
    if not problems:
        for name in ("pods", "cni"):
            shutil.rmtree(root_dir / name, ignore_errors=True)
        if os.path.isdir(root_dir / "pods"):
            problems.append(f"{root_dir / 'pods'} is still there")
    return problems
