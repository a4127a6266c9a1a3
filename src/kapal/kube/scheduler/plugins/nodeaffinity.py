"""NodeAffinity: spec.nodeSelector and requiredDuringScheduling node affinity rule nodes out (terms are ORed,
expressions inside a term ANDed; matchFields knows metadata.name); preferred terms add their weights."""

from __future__ import annotations

from typing import Any

from kapal.kube.scheduler.framework import (
    CycleState,
    Snapshot,
    Status,
    default_normalize,
    score_each,
    unresolvable,
)
from kapal.kube.scheduler.nodeinfo import NodeInfo, PodInfo


def _expression(expr: dict[str, Any], value: str | None) -> bool:
    op = expr.get("operator")
    values = expr.get("values") or []
    if op == "In":
        return value is not None and value in values
    if op == "NotIn":
        return value is None or value not in values
    if op == "Exists":
        return value is not None
    if op == "DoesNotExist":
        return value is None
    if op in ("Gt", "Lt"):
        try:
            have, want = int(value or ""), int(values[0])
        except (ValueError, IndexError):
            return False
        return have > want if op == "Gt" else have < want
    return False


def term_matches(term: dict[str, Any], node: NodeInfo) -> bool:
    """A NodeSelectorTerm; an empty term matches nothing (as upstream)."""
    exprs, fields = term.get("matchExpressions") or [], term.get("matchFields") or []
    if not exprs and not fields:
        return False
    labels = node.labels
    for e in exprs:
        if not _expression(e, labels.get(e.get("key", ""))):
            return False
    for f in fields:
        value = node.name if f.get("key") == "metadata.name" else None
        if not _expression(f, value):
            return False
    return True


class NodeAffinity:
    name = "NodeAffinity"
    weight = 2
    mismatch = unresolvable(name, "node(s) didn't match Pod's node affinity/selector")

    def pre_filter(self, state: CycleState, pod: PodInfo, snapshot: Snapshot) -> Status | None:
        spec = pod.pod.get("spec") or {}
        selector = spec.get("nodeSelector") or {}
        required = (((spec.get("affinity") or {}).get("nodeAffinity") or {})
                    .get("requiredDuringSchedulingIgnoredDuringExecution") or {})
        terms = required.get("nodeSelectorTerms")
        if not selector and terms is None:
            state.skip_filters.add(self.name)
            return None
        state.data[self.name] = (tuple(selector.items()), terms)
        if terms is not None and len(terms) == 1:
            # a lone metadata.name In [...] term (DaemonSet pods): only those nodes need a look
            fields = terms[0].get("matchFields") or []
            if not terms[0].get("matchExpressions") and len(fields) == 1 and fields[0].get("operator") == "In" \
                    and fields[0].get("key") == "metadata.name":
                state.data[self.name + "/nodes"] = tuple(fields[0].get("values") or ())
        return None

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        selector, terms = state.data[self.name]
        labels = node.labels
        for k, v in selector:
            if labels.get(k) != v:
                return self.mismatch
        if terms is not None and not any(term_matches(t, node) for t in terms):
            return self.mismatch
        return None

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo], snapshot: Snapshot) -> bool:
        spec = pod.pod.get("spec") or {}
        preferred = (((spec.get("affinity") or {}).get("nodeAffinity") or {})
                     .get("preferredDuringSchedulingIgnoredDuringExecution") or [])
        state.data[self.name + "/preferred"] = preferred
        return bool(preferred)

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        total = 0
        for p in state.data[self.name + "/preferred"]:
            weight = int(p.get("weight") or 0)
            if weight and term_matches(p.get("preference") or {}, node):
                total += weight
        return total

    def score_nodes(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> list[int]:
        return score_each(self, state, pod, nodes)

    def normalize(self, state: CycleState, scores: list[int]) -> None:
        default_normalize(scores)
