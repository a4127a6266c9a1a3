"""DefaultPreemption, simplified: when no node fits a pod, find the node where evicting the fewest pods of
lower priority (the lowest priorities first) makes it fit, evict them and nominate that node.

Victims are found with the filters that read only the node (resources, ports, taints, affinity to the node);
pod (anti-)affinity and PodDisruptionBudgets are not weighed, which upstream does.
"""

from __future__ import annotations

from dataclasses import dataclass

from kapal.kube.scheduler.framework import CycleState, FilterPlugin, Status
from kapal.kube.scheduler.nodeinfo import NodeInfo, PodInfo

NODE_ONLY = ("NodeUnschedulable", "NodeName", "TaintToleration", "NodeAffinity", "NodePorts", "NodeResourcesFit")


@dataclass
class Candidate:
    node: str
    victims: list[PodInfo]

    @property
    def rank(self) -> tuple[int, int, int]:
        top = max(v.priority for v in self.victims)
        return (top, len(self.victims), sum(v.priority for v in self.victims))


def _fits(filters: list[FilterPlugin], state: CycleState, pod: PodInfo, node: NodeInfo) -> bool:
    for f in filters:
        if f.name in state.skip_filters or f.name not in NODE_ONLY:
            continue
        if f.filter(state, pod, node) is not None:
            return False
    return True


def victims_on(filters: list[FilterPlugin], state: CycleState, pod: PodInfo, node: NodeInfo) -> list[PodInfo] | None:
    lower = [p for p in node.pods.values() if p.priority < pod.priority]
    if not lower or node.node is None:
        return None
    trial = NodeInfo(node.name)
    trial.set_node(node.node)
    for p in node.pods.values():
        if p.priority >= pod.priority:
            trial.add_pod(p)
    if not _fits(filters, state, pod, trial):
        return None
    victims = []
    for p in sorted(lower, key=lambda v: -v.priority):
        trial.add_pod(p)
        if not _fits(filters, state, pod, trial):
            trial.remove_pod(p.key)
            victims.append(p)
    return victims or None


def find_candidate(filters: list[FilterPlugin], state: CycleState, pod: PodInfo, nodes: list[NodeInfo],
                   statuses: dict[str, Status]) -> tuple[Candidate | None, dict[str, bool]]:
    """The best node to preempt on, and per failed node whether it had any possible victims."""
    best: Candidate | None = None
    found: dict[str, bool] = {}
    by_name = {n.name: n for n in nodes}
    for name, st in statuses.items():
        node = by_name.get(name)
        if node is None or not st.resolvable:
            continue
        victims = victims_on(filters, state, pod, node)
        found[name] = victims is not None
        if victims is None:
            continue
        c = Candidate(name, victims)
        if best is None or c.rank < best.rank:
            best = c
    return best, found
