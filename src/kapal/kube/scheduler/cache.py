"""The scheduler's view of the cluster: NodeInfos with the pods counted on them (bound, or assumed while their
binding is in flight), plus the indexes InterPodAffinity needs (pods by label, existing required anti-affinity
terms counted per topology pair).

An *assumed* pod is counted on its node the moment the scheduler picks the node, so the next pod already sees
the room it takes; the informer's update confirms it, a failed binding forgets it.
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from typing import Any

from kapal.kube.scheduler.nodeinfo import AffinityTerm, NodeInfo, PodInfo

ASSUME_TTL = 30.0
MAX_TERM_INDEXES = 512


class SchedulerCache:
    def __init__(self) -> None:
        self.nodes: dict[str, NodeInfo] = {}
        self._node_list: list[NodeInfo] | None = None
        self.pods: dict[str, PodInfo] = {}
        self.assumed: dict[str, float] = {}  # key -> monotonic deadline for the informer to confirm
        self.label_index: dict[tuple[str, str, str], set[str]] = {}
        self.namespace_pods: dict[str, set[str]] = {}
        self.anti_affinity: dict[tuple[Any, ...], tuple[AffinityTerm, Counter[tuple[str, str]]]] = {}
        self.scoring_affinity_pods: set[str] = set()  # pods with preferred terms or required affinity
        self.namespaces: dict[str, dict[str, str]] = {}
        # affinity term signature -> (term, pods it selects counted per topology pair), kept up to date
        self.term_index: OrderedDict[tuple[Any, ...], tuple[AffinityTerm, Counter[tuple[str, str]]]] = OrderedDict()
        self.unschedulable_nodes = 0
        self.tainted_nodes = 0  # nodes with NoSchedule or NoExecute taints
        self.label_nodes: dict[tuple[str, str], set[str]] = {}  # (label, value) -> nodes carrying it

    # --- snapshot protocol ------------------------------------------------------------------------------------------

    def node_infos(self) -> list[NodeInfo]:
        if self._node_list is None:
            self._node_list = [n for n in self.nodes.values() if n.node is not None]
        return self._node_list

    def get(self, name: str) -> NodeInfo | None:
        n = self.nodes.get(name)
        return n if n is not None and n.node is not None else None

    def namespace_labels(self) -> dict[str, dict[str, str]]:
        return self.namespaces

    # --- nodes ------------------------------------------------------------------------------------------------------

    def set_node(self, node: dict[str, Any]) -> tuple[NodeInfo, bool]:
        """Add or update; returns the NodeInfo and whether anything the filters read changed."""
        name = node["metadata"]["name"]
        info = self.nodes.get(name)
        if info is None:
            info = self.nodes[name] = NodeInfo(name)
        before = (info.allocatable, info.labels, info.taints, info.unschedulable, info.node is None)
        relabel = info.node is not None and info.labels != ((node.get("metadata") or {}).get("labels") or {})
        if relabel:
            for p in info.pods.values():
                self._index_anti_affinity(p, info, -1)
        if not before[4]:
            self._count_node(info, -1)
        info.set_node(node)
        self._count_node(info, +1)
        if relabel:
            for p in info.pods.values():
                self._index_anti_affinity(p, info, +1)
            self.term_index.clear()
        if before[4]:
            self._node_list = None
            for p in info.pods.values():
                self._index_anti_affinity(p, info, +1)
            if info.pods:
                self.term_index.clear()
        changed = before != (info.allocatable, info.labels, info.taints, info.unschedulable, False)
        return info, changed

    def _count_node(self, info: NodeInfo, sign: int) -> None:
        for pair in info.labels.items():
            if sign > 0:
                self.label_nodes.setdefault(pair, set()).add(info.name)
            else:
                names = self.label_nodes.get(pair)
                if names is not None:
                    names.discard(info.name)
                    if not names:
                        del self.label_nodes[pair]
        if info.unschedulable:
            self.unschedulable_nodes += sign
        if any(t.get("effect") in ("NoSchedule", "NoExecute") for t in info.taints):
            self.tainted_nodes += sign

    def set_namespace(self, name: str, labels: dict[str, str]) -> None:
        if self.namespaces.get(name) != labels:
            self.namespaces[name] = labels
            if any(t.namespace_selector is not None for t, _ in self.term_index.values()):
                self.term_index.clear()

    def remove_node(self, name: str) -> None:
        info = self.nodes.get(name)
        if info is None:
            return
        if info.node is not None:
            self._count_node(info, -1)
        if info.pods:
            self.term_index.clear()
        for p in info.pods.values():
            self._index_anti_affinity(p, info, -1)
        if info.pods:
            info.node = None  # pods still point here; keep the sums until they go
        else:
            del self.nodes[name]
        self._node_list = None

    # --- pods -------------------------------------------------------------------------------------------------------

    def add_pod(self, p: PodInfo) -> None:
        """Count a bound pod (or confirm an assumed one, wherever the informer says it landed)."""
        old = self.pods.get(p.key)
        if old is not None:
            self.remove_pod(p.key)
        self.assumed.pop(p.key, None)
        self._add(p)

    def assume(self, p: PodInfo, node_name: str) -> None:
        """Count the pod on node_name now; it never expires while its binding is in flight."""
        p.node_name = node_name
        self._add(p)
        self.assumed[p.key] = float("inf")

    def finish_binding(self, key: str) -> None:
        """The binding went through: the informer has ASSUME_TTL seconds to confirm it, else it is forgotten."""
        if key in self.assumed:
            self.assumed[key] = time.monotonic() + ASSUME_TTL

    def forget(self, key: str) -> None:
        if key in self.assumed:
            self.assumed.pop(key, None)
            self.remove_pod(key)

    def is_assumed(self, key: str) -> bool:
        return key in self.assumed

    def expire_assumed(self) -> list[str]:
        """Assumed pods whose binding was never confirmed in time: counted no more."""
        now = time.monotonic()
        gone = [k for k, deadline in self.assumed.items() if deadline < now]
        for k in gone:
            self.forget(k)
        return gone

    def remove_pod(self, key: str) -> PodInfo | None:
        p = self.pods.pop(key, None)
        if p is None:
            return None
        self.assumed.pop(key, None)
        info = self.nodes.get(p.node_name)
        if info is not None:
            if info.node is not None:
                self._index_anti_affinity(p, info, -1)
                self._index_terms(p, info, -1)
            info.remove_pod(key)
            if info.node is None and not info.pods:
                del self.nodes[p.node_name]
        for k, v in p.labels.items():
            keys = self.label_index.get((p.namespace, k, v))
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self.label_index[(p.namespace, k, v)]
        ns_pods = self.namespace_pods.get(p.namespace)
        if ns_pods is not None:
            ns_pods.discard(key)
        self.scoring_affinity_pods.discard(key)
        return p

    def _add(self, p: PodInfo) -> None:
        self.pods[p.key] = p
        info = self.nodes.get(p.node_name)
        if info is None:
            info = self.nodes[p.node_name] = NodeInfo(p.node_name)
        info.add_pod(p)
        if info.node is not None:
            self._index_anti_affinity(p, info, +1)
            self._index_terms(p, info, +1)
        for k, v in p.labels.items():
            self.label_index.setdefault((p.namespace, k, v), set()).add(p.key)
        self.namespace_pods.setdefault(p.namespace, set()).add(p.key)
        if p.affinity or p.preferred_affinity or p.preferred_anti_affinity:
            self.scoring_affinity_pods.add(p.key)

    def _index_anti_affinity(self, p: PodInfo, info: NodeInfo, sign: int) -> None:
        for term in p.anti_affinity:
            value = info.labels.get(term.topology_key)
            if value is None:
                continue
            sig = term.signature
            entry = self.anti_affinity.get(sig)
            if entry is None:
                if sign < 0:
                    continue
                entry = self.anti_affinity[sig] = (term, Counter())
            counter = entry[1]
            pair = (term.topology_key, value)
            counter[pair] += sign
            if counter[pair] <= 0:
                del counter[pair]
                if not counter:
                    del self.anti_affinity[sig]

    def _index_terms(self, p: PodInfo, info: NodeInfo, sign: int) -> None:
        if not self.term_index:
            return
        ns_labels = self.namespaces
        for term, counter in self.term_index.values():
            value = info.labels.get(term.topology_key)
            if value is None or not term.matches(p, ns_labels):
                continue
            pair = (term.topology_key, value)
            counter[pair] += sign
            if counter[pair] <= 0:
                del counter[pair]

    def nodes_in(self, pairs: Any) -> set[str]:
        """Names of the nodes in any of these topology domains ((label, value) pairs)."""
        label_nodes = self.label_nodes
        return {name for pair in pairs for name in label_nodes.get(pair, ())}

    def term_counts(self, term: AffinityTerm) -> Counter[tuple[str, str]]:
        """How many counted pods the term selects, per topology pair (topologyKey, node's value). Built once per
        distinct term and then kept up to date as pods come and go (so a pod's cost does not grow with the
        size of the group it avoids)."""
        sig = term.signature
        entry = self.term_index.get(sig)
        if entry is not None:
            self.term_index.move_to_end(sig)
            return entry[1]
        counts: Counter[tuple[str, str]] = Counter()
        for p in self.matching_pods(term):
            node = self.get(p.node_name)
            if node is None:
                continue
            value = node.labels.get(term.topology_key)
            if value is not None:
                counts[(term.topology_key, value)] += 1
        self.term_index[sig] = (term, counts)
        while len(self.term_index) > MAX_TERM_INDEXES:
            self.term_index.popitem(last=False)
        return counts

    def matching_pods(self, term: AffinityTerm) -> list[PodInfo]:
        """Counted pods the term selects, narrowed through the label index when the selector pins a label."""
        pin = next((r for r in term.selector.requirements if r.op in ("=", "==", "in")), None)
        if term.namespace_selector is not None:
            namespaces = [ns for ns in self.namespace_pods
                          if ns in term.namespaces or term.namespace_selector.matches(self.namespaces.get(ns, {}))]
        else:
            namespaces = list(term.namespaces)
        out = []
        for ns in namespaces:
            if pin is not None:
                keys: set[str] = set()
                for v in pin.values:
                    keys |= self.label_index.get((ns, pin.key, v), set())
            else:
                keys = self.namespace_pods.get(ns, set())
            for k in keys:
                p = self.pods[k]
                if term.selector.matches(p.labels):
                    out.append(p)
        return out
