"""TaintToleration: NoSchedule/NoExecute taints the pod does not tolerate rule a node out; untolerated
PreferNoSchedule taints lower its score."""

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


def tolerates(toleration: dict[str, Any], taint: dict[str, Any]) -> bool:
    """corev1 Toleration.ToleratesTaint."""
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key") or ""
    op = toleration.get("operator") or "Equal"
    if key != taint.get("key") and not (op == "Exists" and not key):
        return False
    if op == "Exists":
        return True
    return (toleration.get("value") or "") == (taint.get("value") or "")


def untolerated(taints: tuple[dict[str, Any], ...], tolerations: list[dict[str, Any]],
                effects: tuple[str, ...]) -> dict[str, Any] | None:
    for taint in taints:
        if taint.get("effect") not in effects:
            continue
        if not any(tolerates(t, taint) for t in tolerations):
            return taint
    return None


class TaintToleration:
    name = "TaintToleration"
    weight = 3

    def pre_filter(self, state: CycleState, pod: PodInfo, snapshot: Snapshot) -> Status | None:
        state.data[self.name] = (pod.pod.get("spec") or {}).get("tolerations") or []
        if not snapshot.tainted_nodes:
            state.skip_filters.add(self.name)
        return None

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        if not node.taints:
            return None
        taint = untolerated(node.taints, state.data[self.name], ("NoSchedule", "NoExecute"))
        if taint is None:
            return None
        return unresolvable(self.name, f"node(s) had untolerated taint {{{taint.get('key', '')}: "
                                       f"{taint.get('value', '')}}}")

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo], snapshot: Snapshot) -> bool:
        prefer = [t for t in state.data.get(self.name) or [] if t.get("effect") in (None, "", "PreferNoSchedule")]
        state.data[self.name + "/score"] = prefer
        return any(t.get("effect") == "PreferNoSchedule" for n in nodes for t in n.taints)

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        tolerations = state.data[self.name + "/score"]
        return sum(1 for taint in node.taints if taint.get("effect") == "PreferNoSchedule"
                   and not any(tolerates(t, taint) for t in tolerations))

    def score_nodes(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> list[int]:
        return score_each(self, state, pod, nodes)

    def normalize(self, state: CycleState, scores: list[int]) -> None:
        default_normalize(scores, reverse=True)
