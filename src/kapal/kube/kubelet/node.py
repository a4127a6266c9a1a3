"""The Node object: registration, status (capacity, allocatable, conditions, addresses, node info, images)
and the heartbeat Lease in kube-node-lease, as the upstream kubelet keeps them.

Status is patched every node_status_update_frequency when something changed and at least every
node_status_report_frequency; the Lease is renewed every quarter of its duration.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import platform
import shutil
from dataclasses import dataclass
from typing import Any

from kapal import __version__, errors
from kapal.kube.client.client import ApiClient
from kapal.kube.client.clock import format_micro_time, format_time
from kapal.kube.client.kinds import LEASES, NODES
from kapal.kube.meta.quantity import parse_quantity

from .config import KUBELET_VERSION, KubeletConfig

log = logging.getLogger(__name__)

LEASE_NAMESPACE = "kube-node-lease"
MAX_IMAGES = 50


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def memory_total() -> int:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def arch() -> str:
    m = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}.get(m, m)


def os_image() -> str:
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return "Linux"


def _ki(n: int) -> str:
    return f"{n // 1024}Ki"


@dataclass(frozen=True)
class Machine:
    cpus: int
    memory: int
    storage: int

    @classmethod
    def probe(cls, root_dir: str) -> Machine:
        os.makedirs(root_dir, exist_ok=True)
        return cls(os.cpu_count() or 1, memory_total(), shutil.disk_usage(root_dir).total)


def capacity(m: Machine, max_pods: int) -> dict[str, str]:
    return {"cpu": str(m.cpus), "memory": _ki(m.memory), "pods": str(max_pods), "ephemeral-storage": _ki(m.storage),
            "hugepages-1Gi": "0", "hugepages-2Mi": "0"}


def allocatable(m: Machine, max_pods: int, reserved: dict[str, str], eviction_memory: str) -> dict[str, str]:
    cpu_m = m.cpus * 1000 - int(parse_quantity(reserved.get("cpu", "0")) * 1000)
    mem = m.memory - int(parse_quantity(reserved.get("memory", "0"))) - int(parse_quantity(eviction_memory or "0"))
    storage = int(m.storage * 0.9) - int(parse_quantity(reserved.get("ephemeral-storage", "0")))
    cpu = str(cpu_m // 1000) if cpu_m % 1000 == 0 else f"{cpu_m}m"
    return {"cpu": cpu, "memory": _ki(max(0, mem)), "pods": str(max_pods), "ephemeral-storage": str(max(0, storage)),
            "hugepages-1Gi": "0", "hugepages-2Mi": "0"}


def node_info(runtime_version: str) -> dict[str, str]:
    uname = os.uname()
    return {"machineID": _read("/etc/machine-id"), "systemUUID": _read("/sys/class/dmi/id/product_uuid").lower(),
            "bootID": _read("/proc/sys/kernel/random/boot_id"), "kernelVersion": uname.release,
            "osImage": os_image(), "containerRuntimeVersion": f"kapal://{runtime_version or __version__}",
            "kubeletVersion": KUBELET_VERSION, "kubeProxyVersion": "", "operatingSystem": "linux",
            "architecture": arch()}


def _condition(kind: str, ok: bool, reason: str, message: str, old: dict[str, Any] | None,
               now: str) -> dict[str, Any]:
    value = "True" if ok else "False"
    since = (old or {}).get("lastTransitionTime") if (old or {}).get("status") == value else now
    return {"type": kind, "status": value, "lastHeartbeatTime": now, "lastTransitionTime": since or now,
            "reason": reason, "message": message}


def conditions(old: list[dict[str, Any]], ready: bool, not_ready_reason: str, memory_pressure: bool = False,
               disk_pressure: bool = False, pid_pressure: bool = False,
               now: dt.datetime | None = None) -> list[dict[str, Any]]:
    t = format_time(now or dt.datetime.now(dt.UTC))
    prev = {c.get("type"): c for c in old or []}
    return [
        _condition("MemoryPressure", memory_pressure, "KubeletHasInsufficientMemory" if memory_pressure else
                   "KubeletHasSufficientMemory", "kubelet has insufficient memory available" if memory_pressure else
                   "kubelet has sufficient memory available", prev.get("MemoryPressure"), t),
        _condition("DiskPressure", disk_pressure, "KubeletHasDiskPressure" if disk_pressure else
                   "KubeletHasNoDiskPressure", "kubelet has disk pressure" if disk_pressure else
                   "kubelet has no disk pressure", prev.get("DiskPressure"), t),
        _condition("PIDPressure", pid_pressure, "KubeletHasInsufficientPID" if pid_pressure else
                   "KubeletHasSufficientPID", "kubelet has insufficient PID available" if pid_pressure else
                   "kubelet has sufficient PID available", prev.get("PIDPressure"), t),
        _condition("Ready", ready, "KubeletReady" if ready else "KubeletNotReady",
                   "kubelet is posting ready status" if ready else not_ready_reason, prev.get("Ready"), t),
    ]


def images_list(images: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for img in sorted(images, key=lambda i: int(i.get("Size") or 0), reverse=True)[:MAX_IMAGES]:
        names = [d for d in img.get("RepoDigests") or [] if "<none>" not in d]
        names += [t for t in img.get("RepoTags") or [] if "<none>" not in t]
        if not names:
            names = [img.get("Id", "")]
        out.append({"names": names, "sizeBytes": int(img.get("Size") or 0)})
    return out


class NodeAgent:
    """Keeps this node's Node object and Lease current."""

    def __init__(self, client: ApiClient, config: KubeletConfig, node_ip: str, hostname: str, machine: Machine,
                 kubelet_port: int) -> None:
        self.client = client
        self.config = config
        self.node_ip = node_ip
        self.hostname = hostname
        self.machine = machine
        self.kubelet_port = kubelet_port
        self.node: dict[str, Any] | None = None
        self.last_status: dict[str, Any] | None = None
        self.last_report = 0.0
        self.runtime_version = ""

    def labels(self) -> dict[str, str]:
        a = arch()
        return {"kubernetes.io/hostname": self.config.node_name, "kubernetes.io/os": "linux",
                "kubernetes.io/arch": a, "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": a,
                **self.config.node_labels}

    def initial_node(self) -> dict[str, Any]:
        spec: dict[str, Any] = {}
        if self.config.register_with_taints:
            spec["taints"] = self.config.register_with_taints
        if self.config.pod_cidr:
            spec["podCIDR"] = self.config.pod_cidr
            spec["podCIDRs"] = [self.config.pod_cidr]
        if self.config.provider_id:
            spec["providerID"] = self.config.provider_id
        return {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": self.config.node_name, "labels": self.labels(),
                             "annotations": {"volumes.kubernetes.io/controller-managed-attach-detach": "true",
                                             "node.alpha.kubernetes.io/ttl": "0"}},
                "spec": spec, "status": self.status([], ready=False, not_ready_reason="kubelet is starting")}

    def status(self, images: list[dict[str, Any]], *, ready: bool, not_ready_reason: str,
               old: dict[str, Any] | None = None) -> dict[str, Any]:
        c = self.config
        return {
            "capacity": capacity(self.machine, c.max_pods),
            "allocatable": allocatable(self.machine, c.max_pods, c.system_reserved, c.eviction_hard_memory),
            "conditions": conditions((old or {}).get("conditions") or [], ready, not_ready_reason),
            "addresses": [{"type": "InternalIP", "address": self.node_ip},
                          {"type": "Hostname", "address": self.hostname}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.kubelet_port}},
            "nodeInfo": node_info(self.runtime_version),
            "images": images_list(images),
        }

    async def register(self) -> dict[str, Any]:
        try:
            self.node = await self.client.create(NODES, self.initial_node())
            log.info("node %s registered", self.config.node_name)
        except errors.AlreadyExists:
            node = await self.client.get(NODES, self.config.node_name)
            labels = {**(node["metadata"].get("labels") or {}), **self.labels()}
            patch: dict[str, Any] = {"metadata": {"labels": labels}}
            if self.config.pod_cidr and not (node.get("spec") or {}).get("podCIDR"):
                patch["spec"] = {"podCIDR": self.config.pod_cidr, "podCIDRs": [self.config.pod_cidr]}
            self.node = await self.client.patch(NODES, self.config.node_name, patch)
            log.info("node %s already registered: reusing it", self.config.node_name)
        return self.node

    async def update_status(self, images: list[dict[str, Any]], ready: bool, not_ready_reason: str,
                            force: bool = False) -> None:
        import time

        old = (self.node or {}).get("status") or {}
        status = self.status(images, ready=ready, not_ready_reason=not_ready_reason, old=old)
        changed = _without_heartbeats(status) != _without_heartbeats(old)
        if not changed and not force and time.monotonic() - self.last_report < \
                self.config.node_status_report_frequency:
            return
        self.node = await self.client.patch(NODES, self.config.node_name, {"status": status}, subresource="status",
                                            patch_type="strategic")
        self.last_report = time.monotonic()

    async def renew_lease(self) -> None:
        now = format_micro_time(dt.datetime.now(dt.UTC))
        name = self.config.node_name
        spec = {"holderIdentity": name, "leaseDurationSeconds": self.config.node_lease_duration, "renewTime": now}
        try:
            await self.client.patch(LEASES, name, {"spec": spec}, LEASE_NAMESPACE)
        except errors.NotFound:
            owner = []
            if self.node is not None:
                owner = [{"apiVersion": "v1", "kind": "Node", "name": name, "uid": self.node["metadata"]["uid"]}]
            lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                     "metadata": {"name": name, "namespace": LEASE_NAMESPACE, "ownerReferences": owner},
                     "spec": spec}
            try:
                await self.client.create(LEASES, lease, LEASE_NAMESPACE)
            except errors.AlreadyExists:
                await self.client.patch(LEASES, name, {"spec": spec}, LEASE_NAMESPACE)


def _without_heartbeats(status: dict[str, Any]) -> str:
    import json

    s = json.loads(json.dumps(status))
    for c in s.get("conditions") or []:
        c.pop("lastHeartbeatTime", None)
        c.pop("lastTransitionTime", None)
    return json.dumps(s, sort_keys=True)
