"""PodTopologySpread: a pod's topologySpreadConstraints. DoNotSchedule constraints rule out nodes where placing
the pod would make (matching pods in its domain + 1) − (the emptiest eligible domain) exceed maxSkew;
ScheduleAnyway constraints prefer emptier domains. Domains are the values of topologyKey on the nodes that
match the pod's nodeSelector/required affinity (nodeAffinityPolicy: Honor, upstream's default); matching pods
are counted per domain through the scheduler cache's term index. Cluster-level default constraints are not
applied (upstream adds soft hostname/zone spreading for pods of Services and controllers).
"""

from __future__ import annotations

from typing import Any

from kapal.kube.meta.selectors import LabelSelector, Requirement, label_selector_from_dict
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
from kapal.kube.scheduler.nodeinfo import AffinityTerm, NodeInfo, PodInfo
from kapal.kube.scheduler.plugins.nodeaffinity import term_matches

_SKEW = unschedulable("PodTopologySpread", "node(s) didn't match pod topology spread constraints")
_MISSING = unresolvable("PodTopologySpread", "node(s) didn't match pod topology spread constraints (missing "
                                             "required label)")


def _eligible(pod: PodInfo, node: NodeInfo) -> bool:
    spec = pod.pod.get("spec") or {}
    for k, v in (spec.get("nodeSelector") or {}).items():
        if node.labels.get(k) != v:
            return False
    terms = ((((spec.get("affinity") or {}).get("nodeAffinity") or {})
              .get("requiredDuringSchedulingIgnoredDuringExecution") or {}).get("nodeSelectorTerms"))
    return terms is None or any(term_matches(t, node) for t in terms)


def _constraints(pod: PodInfo, mode: str) -> list[tuple[dict[str, Any], AffinityTerm]]:
    out = []
    for c in (pod.pod.get("spec") or {}).get("topologySpreadConstraints") or ():
        if c.get("whenUnsatisfiable", "DoNotSchedule") != mode:
            continue
        selector = label_selector_from_dict(c.get("labelSelector"))
        extra = tuple(Requirement(k, "=", (pod.labels[k],)) for k in c.get("matchLabelKeys") or ()
                      if k in pod.labels)
        if extra:
            selector = LabelSelector(selector.requirements + extra, selector.nothing)
        out.append((c, AffinityTerm(selector, frozenset((pod.namespace,)), None, c.get("topologyKey", ""))))
    return out


class PodTopologySpread:
    name = "PodTopologySpread"
    weight = 2

    def __init__(self, cache: SchedulerCache) -> None:
        self.cache = cache

    def _domains(self, pod: PodInfo, key: str, nodes: list[NodeInfo]) -> set[str]:
        return {n.labels[key] for n in nodes if key in n.labels and _eligible(pod, n)}

    def pre_filter(self, state: CycleState, pod: PodInfo, snapshot: Snapshot) -> Status | None:
        hard = _constraints(pod, "DoNotSchedule")
        if not hard:
            state.skip_filters.add(self.name)
            return None
        nodes = self.cache.node_infos()
        prepared = []
        for c, term in hard:
            counts = self.cache.term_counts(term)
            domains = self._domains(pod, term.topology_key, nodes)
            values = [counts.get((term.topology_key, d), 0) for d in domains]
            min_domains = int(c.get("minDomains") or 1)
            low = 0 if len(domains) < min_domains else min(values, default=0)
            self_match = 1 if term.selector.matches(pod.labels) else 0
            prepared.append((term.topology_key, counts, low, int(c.get("maxSkew", 1)), self_match))
        state.data[self.name] = prepared
        return None

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        for key, counts, low, max_skew, self_match in state.data[self.name]:
            value = node.labels.get(key)
            if value is None:
                return _MISSING
            if counts.get((key, value), 0) + self_match - low > max_skew:
                return _SKEW
        return None

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo], snapshot: Snapshot) -> bool:
        soft = _constraints(pod, "ScheduleAnyway")
        state.data[self.name + "/score"] = [(term.topology_key, self.cache.term_counts(term)) for _, term in soft]
        return bool(soft)

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        total = 0
        for key, counts in state.data[self.name + "/score"]:
            value = node.labels.get(key)
            total += counts.get((key, value), 0) if value is not None else 1000
        return total

    def score_nodes(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> list[int]:
        return score_each(self, state, pod, nodes)

    def normalize(self, state: CycleState, scores: list[int]) -> None:
        """Fewer matching pods in the domain is better: scale (max - s) / (max - min)."""
        if not scores:
            return
        lo, hi = min(scores), max(scores)
        for i, s in enumerate(scores):
            scores[i] = MAX_NODE_SCORE * (hi - s) // (hi - lo) if hi > lo else MAX_NODE_SCORE
