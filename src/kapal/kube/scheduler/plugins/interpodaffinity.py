"""InterPodAffinity: required pod affinity and anti-affinity (the incoming pod's and, symmetrically, the
anti-affinity of pods already placed), counted per topology pair (topologyKey, the node's value for it) once
per pod in PreFilter so that each node costs a few dictionary lookups; preferred terms score."""

from __future__ import annotations

from collections import Counter

from kapal.kube.scheduler.cache import SchedulerCache
from kapal.kube.scheduler.framework import (
    MAX_NODE_SCORE,
    CycleState,
    Snapshot,
    Status,
    score_each,
    unresolvable,
    unschedulable,
)
from kapal.kube.scheduler.nodeinfo import NodeInfo, PodInfo

EXISTING_ANTI = "node(s) didn't satisfy existing pods anti-affinity rules"
ANTI = "node(s) didn't match pod anti-affinity rules"
AFFINITY = "node(s) didn't match pod affinity rules"
HARD_POD_AFFINITY_WEIGHT = 1
_EXISTING_ANTI = unschedulable("InterPodAffinity", EXISTING_ANTI)
_ANTI = unschedulable("InterPodAffinity", ANTI)
_AFFINITY = unresolvable("InterPodAffinity", AFFINITY)


class InterPodAffinity:
    name = "InterPodAffinity"
    weight = 2

    def __init__(self, cache: SchedulerCache) -> None:
        self.cache = cache

    def pre_filter(self, state: CycleState, pod: PodInfo, snapshot: Snapshot) -> Status | None:
        cache = self.cache
        ns_labels = cache.namespaces
        existing: Counter[tuple[str, str]] = Counter()
        for term, counter in cache.anti_affinity.values():
            if term.matches(pod, ns_labels):
                existing.update(counter)
        if not existing and not pod.affinity and not pod.anti_affinity:
            state.skip_filters.add(self.name)
            return None
        anti = [cache.term_counts(t) for t in pod.anti_affinity]
        affinity = [cache.term_counts(t) for t in pod.affinity]
        # The first pod of a group that selects itself may go anywhere its topology keys exist.
        self_match = bool(pod.affinity) and all(not c for c in affinity) and all(
            t.matches(pod, ns_labels) for t in pod.affinity)
        state.data[self.name] = (existing, anti, affinity, self_match)
        if not pod.affinity:
            # Anti-affinity only: the nodes it rules out are known up front, the others need no check.
            pairs = set(existing)  # counters drop pairs that reach zero
            for counts in anti:
                pairs.update(counts)
            state.data[self.name + "/excluded"] = cache.nodes_in(pairs)
            state.skip_filters.add(self.name)
        return None

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        """Upstream's order: the pod's affinity, then its anti-affinity, then existing pods' anti-affinity."""
        existing, anti, affinity, self_match = state.data[self.name]
        labels = node.labels
        for term, counts in zip(pod.affinity, affinity):
            value = labels.get(term.topology_key)
            if value is None:
                return _AFFINITY
            if not counts.get((term.topology_key, value)) and not self_match:
                return _AFFINITY
        for term, counts in zip(pod.anti_affinity, anti):
            value = labels.get(term.topology_key)
            if value is not None and counts.get((term.topology_key, value)):
                return _ANTI
        if existing:
            for pair in labels.items():
                if existing.get(pair):
                    return _EXISTING_ANTI
        return None

    # --- scoring ----------------------------------------------------------------------------------------------------

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo], snapshot: Snapshot) -> bool:
        cache = self.cache
        scores: Counter[tuple[str, str]] = Counter()
        for term in pod.preferred_affinity:
            scores.update({k: v * term.weight for k, v in cache.term_counts(term).items()})
        for term in pod.preferred_anti_affinity:
            scores.update({k: -v * term.weight for k, v in cache.term_counts(term).items()})
        ns_labels = cache.namespaces
        for key in cache.scoring_affinity_pods:
            other = cache.pods[key]
            node = cache.get(other.node_name)
            if node is None:
                continue
            for terms, sign in ((other.preferred_affinity, 1), (other.preferred_anti_affinity, -1),
                                (other.affinity, 0)):
                for term in terms:
                    value = node.labels.get(term.topology_key)
                    if value is None or not term.matches(pod, ns_labels):
                        continue
                    weight = term.weight * sign if sign else HARD_POD_AFFINITY_WEIGHT
                    scores[(term.topology_key, value)] += weight
        scores = Counter({k: v for k, v in scores.items() if v})
        state.data[self.name + "/score"] = scores
        return bool(scores)

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        scores: dict[tuple[str, str], int] = state.data[self.name + "/score"]
        return sum(scores.get(pair, 0) for pair in node.labels.items())

    def score_nodes(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> list[int]:
        return score_each(self, state, pod, nodes)

    def normalize(self, state: CycleState, scores: list[int]) -> None:
        if not scores:
            return
        lo, hi = min(scores), max(scores)
        span = hi - lo
        for i, s in enumerate(scores):
            scores[i] = (s - lo) * MAX_NODE_SCORE // span if span else 0

