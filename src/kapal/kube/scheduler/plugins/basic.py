"""NodeName, NodeUnschedulable and NodePorts: checks that need no precomputation beyond the node's own fields."""

from __future__ import annotations

from kapal.kube.scheduler.framework import CycleState, Snapshot, Status, unresolvable, unschedulable
from kapal.kube.scheduler.nodeinfo import NodeInfo, PodInfo
from kapal.kube.scheduler.plugins.tainttoleration import tolerates

UNSCHEDULABLE_TAINT = {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}


class NodeName:
    name = "NodeName"
    _fail = unresolvable(name, "node(s) didn't match the requested node name")

    def pre_filter(self, state: CycleState, pod: PodInfo, snapshot: Snapshot) -> Status | None:
        if not pod.node_name:
            state.skip_filters.add(self.name)
        return None

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        return None if node.name == pod.node_name else self._fail


class NodeUnschedulable:
    name = "NodeUnschedulable"
    _fail = unresolvable(name, "node(s) were unschedulable")

    def pre_filter(self, state: CycleState, pod: PodInfo, snapshot: Snapshot) -> Status | None:
        tolerations = (pod.pod.get("spec") or {}).get("tolerations") or ()
        tolerated = any(tolerates(t, UNSCHEDULABLE_TAINT) for t in tolerations)
        if tolerated or not snapshot.unschedulable_nodes:
            state.skip_filters.add(self.name)
        state.data[self.name] = tolerated
        return None

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        if node.unschedulable and not state.data[self.name]:
            return self._fail
        return None


def ports_conflict(want: tuple[str, str, int], used: dict[tuple[str, str, int], int]) -> bool:
    ip, proto, port = want
    if want in used:
        return True
    for uip, uproto, uport in used:
        if uport == port and uproto == proto and (ip == "0.0.0.0" or uip == "0.0.0.0"):
            return True
    return False


class NodePorts:
    name = "NodePorts"
    _fail = unschedulable(name, "node(s) didn't have free ports for the requested pod ports")

    def pre_filter(self, state: CycleState, pod: PodInfo, snapshot: Snapshot) -> Status | None:
        if not pod.ports:
            state.skip_filters.add(self.name)
        return None

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        if node.ports and any(ports_conflict(p, node.ports) for p in pod.ports):
            return self._fail
        return None
