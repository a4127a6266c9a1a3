"""NodeResourcesFit (filter: requests vs allocatable; score: LeastAllocated) and
NodeResourcesBalancedAllocation (score: cpu and memory used in similar proportions)."""

from __future__ import annotations

from functools import lru_cache

from kapal.kube.scheduler.framework import MAX_NODE_SCORE, CycleState, Snapshot, Status, unschedulable
from kapal.kube.scheduler.nodeinfo import NodeInfo, PodInfo

_TOO_MANY = "Too many pods"


@lru_cache(maxsize=256)
def _insufficient(reasons: tuple[str, ...]) -> Status:
    return unschedulable("NodeResourcesFit", *reasons)


class NodeResourcesFit:
    name = "NodeResourcesFit"
    weight = 1

    def pre_filter(self, state: CycleState, pod: PodInfo, snapshot: Snapshot) -> Status | None:
        state.data[self.name] = tuple((k, v) for k, v in pod.requests.items()
                                      if v > 0 and k not in ("cpu", "memory", "pods"))
        return None

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        reasons: list[str] | None = None
        if len(node.pods) + 1 > node.alloc_pods:
            reasons = [_TOO_MANY]
        cpu, mem = pod.cpu, pod.memory
        if cpu and cpu > node.alloc_cpu - node.req_cpu:
            reasons = (reasons or []) + ["Insufficient cpu"]
        if mem and mem > node.alloc_memory - node.req_memory:
            reasons = (reasons or []) + ["Insufficient memory"]
        for k, v in state.data[self.name]:
            if v > node.allocatable.get(k, 0) - node.requested.get(k, 0):
                reasons = (reasons or []) + [f"Insufficient {k}"]
        if reasons:
            return _insufficient(tuple(reasons))
        return None

    def filter_batch(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo], want: int,
                     statuses: dict[str, Status]) -> tuple[list[NodeInfo], int]:
        """filter() over `nodes` in one loop, stopping after `want` fit: (feasible, nodes looked at). For pods
        that only this plugin concerns (most pods), this is the whole filter phase."""
        feasible: list[NodeInfo] = []
        cpu, mem = pod.cpu, pod.memory
        scalars = state.data[self.name]
        looked = 0
        for n in nodes:
            looked += 1
            if len(n.pods) + 1 > n.alloc_pods or (cpu and cpu > n.alloc_cpu - n.req_cpu) or (
                    mem and mem > n.alloc_memory - n.req_memory) or scalars:
                st = self.filter(state, pod, n)
                if st is not None:
                    statuses[n.name] = st
                    continue
            feasible.append(n)
            if len(feasible) >= want:
                break
        return feasible, looked

    # LeastAllocated: the more room left (counting empty pods as 100m / 200 MB), the better.
    def pre_score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo], snapshot: Snapshot) -> bool:
        return True

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        total = 0
        alloc = node.alloc_cpu
        if alloc:
            used = node.nonzero_cpu + pod.nonzero_cpu
            total += (alloc - used) * MAX_NODE_SCORE // alloc if used <= alloc else 0
        alloc = node.alloc_memory
        if alloc:
            used = node.nonzero_memory + pod.nonzero_memory
            total += (alloc - used) * MAX_NODE_SCORE // alloc if used <= alloc else 0
        return total // 2

    def score_nodes(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> list[int]:
        pc, pm = pod.nonzero_cpu, pod.nonzero_memory
        out = []
        for n in nodes:
            total = 0
            alloc = n.alloc_cpu
            if alloc:
                used = n.nonzero_cpu + pc
                if used <= alloc:
                    total += (alloc - used) * 100 // alloc
            alloc = n.alloc_memory
            if alloc:
                used = n.nonzero_memory + pm
                if used <= alloc:
                    total += (alloc - used) * 100 // alloc
            out.append(total // 2)
        return out

    def normalize(self, state: CycleState, scores: list[int]) -> None:
        pass


class NodeResourcesBalancedAllocation:
    name = "NodeResourcesBalancedAllocation"
    weight = 1

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo], snapshot: Snapshot) -> bool:
        return True

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        fc = (node.req_cpu + pod.cpu) / node.alloc_cpu if node.alloc_cpu else 0.0
        fm = (node.req_memory + pod.memory) / node.alloc_memory if node.alloc_memory else 0.0
        fc, fm = min(fc, 1.0), min(fm, 1.0)
        return int((1.0 - abs(fc - fm) / 2) * MAX_NODE_SCORE)

    def score_nodes(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> list[int]:
        pc, pm = pod.cpu, pod.memory
        out = []
        for n in nodes:
            fc = (n.req_cpu + pc) / n.alloc_cpu if n.alloc_cpu else 0.0
            fm = (n.req_memory + pm) / n.alloc_memory if n.alloc_memory else 0.0
            if fc > 1.0:
                fc = 1.0
            if fm > 1.0:
                fm = 1.0
            out.append(int((1.0 - abs(fc - fm) / 2) * 100))
        return out

    def normalize(self, state: CycleState, scores: list[int]) -> None:
        pass

