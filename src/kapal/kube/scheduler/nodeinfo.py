"""What the scheduler knows about pods and nodes, precomputed once per object so that filtering a node is a few
integer comparisons: requests in milli-CPU and bytes, host ports, labels, taints, affinity terms.

Glossary: *requests* are what the pod's containers ask for (max of the init containers and the sum of the app
containers, plus overhead); *non-zero requests* count a container asking for nothing as 100m CPU and 200 MB,
as upstream's scoring does so that empty pods still spread.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from kapal.kube.meta.quantity import milli, whole
from kapal.kube.meta.selectors import LabelSelector, label_selector_from_dict

DEFAULT_MILLI_CPU = 100
DEFAULT_MEMORY = 200 * 1024 * 1024
BASIC_RESOURCES = ("cpu", "memory", "ephemeral-storage", "pods")


@lru_cache(maxsize=4096)
def _milli(value: str) -> int:
    return milli(value)


@lru_cache(maxsize=4096)
def _whole(value: str) -> int:
    return whole(value)


def quantity(name: str, value: Any) -> int:
    """cpu in milli-units, everything else in whole units."""
    text = str(value)
    return _milli(text) if name == "cpu" else _whole(text)


@dataclass(frozen=True)
class AffinityTerm:
    """One pod (anti-)affinity term with its selector parsed; `signature` identifies equal terms of many pods."""

    selector: LabelSelector
    namespaces: frozenset[str]
    namespace_selector: LabelSelector | None
    topology_key: str
    weight: int = 0

    @property
    def signature(self) -> tuple[str, tuple[str, ...], str, str]:
        return (str(self.selector) + ("!" if self.selector.nothing else ""), tuple(sorted(self.namespaces)),
                "" if self.namespace_selector is None else str(self.namespace_selector) or "*", self.topology_key)

    def matches(self, pod: PodInfo, namespace_labels: dict[str, dict[str, str]] | None = None) -> bool:
        if self.namespace_selector is not None:
            if pod.namespace not in self.namespaces:
                labels = (namespace_labels or {}).get(pod.namespace)
                if labels is None or not self.namespace_selector.matches(labels):
                    return False
        elif pod.namespace not in self.namespaces:
            return False
        return self.selector.matches(pod.labels)


def _terms(raw: list[dict[str, Any]] | None, namespace: str, weighted: bool) -> tuple[AffinityTerm, ...]:
    out = []
    for item in raw or ():
        term = item.get("podAffinityTerm") if weighted else item
        if not term:
            continue
        ns_sel_raw = term.get("namespaceSelector")
        namespaces = frozenset(term.get("namespaces") or ())
        ns_sel = label_selector_from_dict(ns_sel_raw) if ns_sel_raw is not None else None
        if not namespaces and ns_sel is None:
            namespaces = frozenset((namespace,))
        selector = label_selector_from_dict(term.get("labelSelector"))
        out.append(AffinityTerm(selector, namespaces, ns_sel, term.get("topologyKey", ""),
                                int(item.get("weight", 0)) if weighted else 0))
    return tuple(out)


@dataclass(eq=False)
class PodInfo:
    key: str
    uid: str
    namespace: str
    name: str
    labels: dict[str, str]
    node_name: str
    priority: int
    requests: dict[str, int]
    cpu: int
    memory: int
    nonzero_cpu: int
    nonzero_memory: int
    ports: tuple[tuple[str, str, int], ...]
    affinity: tuple[AffinityTerm, ...] = ()
    anti_affinity: tuple[AffinityTerm, ...] = ()
    preferred_affinity: tuple[AffinityTerm, ...] = ()
    preferred_anti_affinity: tuple[AffinityTerm, ...] = ()
    pod: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def has_affinity(self) -> bool:
        return bool(self.affinity or self.anti_affinity or self.preferred_affinity or self.preferred_anti_affinity)


def container_requests(containers: list[dict[str, Any]] | None) -> list[dict[str, int]]:
    out = []
    for c in containers or ():
        req = (c.get("resources") or {}).get("requests")
        if req is None:
            # upstream defaults requests to limits when only limits are given
            req = (c.get("resources") or {}).get("limits") or {}
        out.append({k: quantity(k, v) for k, v in req.items()})
    return out


def pod_requests(spec: dict[str, Any], nonzero: bool = False) -> dict[str, int]:
    """Effective requests: max(sum of containers (+ sidecar inits), each init container) + overhead."""
    total: dict[str, int] = {}
    for req in container_requests(spec.get("containers")):
        if nonzero:
            req = {**req, "cpu": req.get("cpu") or DEFAULT_MILLI_CPU, "memory": req.get("memory") or DEFAULT_MEMORY}
        for k, v in req.items():
            total[k] = total.get(k, 0) + v
    sidecars: dict[str, int] = {}
    for c, req in zip(spec.get("initContainers") or (), container_requests(spec.get("initContainers"))):
        if nonzero:
            req = {**req, "cpu": req.get("cpu") or DEFAULT_MILLI_CPU, "memory": req.get("memory") or DEFAULT_MEMORY}
        if c.get("restartPolicy") == "Always":
            for k, v in req.items():
                sidecars[k] = sidecars.get(k, 0) + v
                total[k] = total.get(k, 0) + v
            continue
        for k, v in req.items():
            need = v + sidecars.get(k, 0)
            if need > total.get(k, 0):
                total[k] = need
    for k, v in (spec.get("overhead") or {}).items():
        total[k] = total.get(k, 0) + quantity(k, v)
    return total


def pod_info(pod: dict[str, Any], key: str) -> PodInfo:
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    requests = pod_requests(spec)
    nonzero = pod_requests(spec, nonzero=True) if spec.get("containers") else {}
    ports = []
    for c in spec.get("containers") or ():
        for p in c.get("ports") or ():
            if p.get("hostPort"):
                ports.append((p.get("hostIP") or "0.0.0.0", p.get("protocol") or "TCP", int(p["hostPort"])))
    aff = spec.get("affinity") or {}
    pa, paa = aff.get("podAffinity") or {}, aff.get("podAntiAffinity") or {}
    ns = meta.get("namespace", "")
    return PodInfo(
        key=key, uid=meta.get("uid", ""), namespace=ns, name=meta.get("name", ""),
        labels=meta.get("labels") or {}, node_name=spec.get("nodeName") or "", priority=int(spec.get("priority") or 0),
        requests=requests, cpu=requests.get("cpu", 0), memory=requests.get("memory", 0),
        nonzero_cpu=nonzero.get("cpu", DEFAULT_MILLI_CPU), nonzero_memory=nonzero.get("memory", DEFAULT_MEMORY),
        ports=tuple(ports),
        affinity=_terms(pa.get("requiredDuringSchedulingIgnoredDuringExecution"), ns, False),
        anti_affinity=_terms(paa.get("requiredDuringSchedulingIgnoredDuringExecution"), ns, False),
        preferred_affinity=_terms(pa.get("preferredDuringSchedulingIgnoredDuringExecution"), ns, True),
        preferred_anti_affinity=_terms(paa.get("preferredDuringSchedulingIgnoredDuringExecution"), ns, True),
        pod=pod,
    )


class NodeInfo:
    """A node and the pods the scheduler counts on it (bound or assumed), with their sums kept up to date."""

    __slots__ = ("name", "node", "allocatable", "alloc_cpu", "alloc_memory", "alloc_pods", "requested", "req_cpu",
                 "req_memory", "nonzero_cpu", "nonzero_memory", "pods", "ports", "labels", "taints",
                 "unschedulable", "images", "affinity_pods", "generation", "ready")

    def __init__(self, name: str) -> None:
        self.name = name
        self.node: dict[str, Any] | None = None
        self.allocatable: dict[str, int] = {}
        self.alloc_cpu = self.alloc_memory = self.alloc_pods = 0
        self.requested: dict[str, int] = {}
        self.req_cpu = self.req_memory = 0
        self.nonzero_cpu = self.nonzero_memory = 0
        self.pods: dict[str, PodInfo] = {}
        self.ports: dict[tuple[str, str, int], int] = {}
        self.labels: dict[str, str] = {}
        self.taints: tuple[dict[str, Any], ...] = ()
        self.unschedulable = False
        self.images: dict[str, int] = {}
        self.affinity_pods = 0
        self.generation = 0
        self.ready = True

    def set_node(self, node: dict[str, Any]) -> None:
        self.node = node
        status, spec = node.get("status") or {}, node.get("spec") or {}
        alloc = status.get("allocatable") or status.get("capacity") or {}
        self.allocatable = {k: quantity(k, v) for k, v in alloc.items()}
        self.alloc_cpu = self.allocatable.get("cpu", 0)
        self.alloc_memory = self.allocatable.get("memory", 0)
        self.alloc_pods = self.allocatable.get("pods", 0)
        self.labels = (node.get("metadata") or {}).get("labels") or {}
        self.taints = tuple(spec.get("taints") or ())
        self.unschedulable = bool(spec.get("unschedulable"))
        images: dict[str, int] = {}
        for img in status.get("images") or ():
            for n in img.get("names") or ():
                images[n] = int(img.get("sizeBytes") or 0)
        self.images = images
        self.generation += 1

    def add_pod(self, p: PodInfo) -> None:
        if p.key in self.pods:
            self.remove_pod(p.key)
        self.pods[p.key] = p
        for k, v in p.requests.items():
            self.requested[k] = self.requested.get(k, 0) + v
        self.req_cpu += p.cpu
        self.req_memory += p.memory
        self.nonzero_cpu += p.nonzero_cpu
        self.nonzero_memory += p.nonzero_memory
        for port in p.ports:
            self.ports[port] = self.ports.get(port, 0) + 1
        if p.has_affinity:
            self.affinity_pods += 1
        self.generation += 1

    def remove_pod(self, key: str) -> PodInfo | None:
        p = self.pods.pop(key, None)
        if p is None:
            return None
        for k, v in p.requests.items():
            self.requested[k] = self.requested.get(k, 0) - v
        self.req_cpu -= p.cpu
        self.req_memory -= p.memory
        self.nonzero_cpu -= p.nonzero_cpu
        self.nonzero_memory -= p.nonzero_memory
        for port in p.ports:
            n = self.ports.get(port, 0) - 1
            if n > 0:
                self.ports[port] = n
            else:
                self.ports.pop(port, None)
        if p.has_affinity:
            self.affinity_pods -= 1
        self.generation += 1
        return p
