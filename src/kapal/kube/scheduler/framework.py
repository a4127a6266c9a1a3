"""The scheduling framework's seams, as upstream's: PreFilter → Filter (per node) → PreScore → Score (per
feasible node) → NormalizeScore, each plugin weighted. A filter returns None for "fits", else a Status whose
reasons are the words users read in FailedScheduling events ("3 Insufficient cpu").

Glossary: *Unschedulable* — the node could fit if something changed (preemption may help);
*UnschedulableAndUnresolvable* — no eviction would help (wrong labels, taints, node name).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from kapal.kube.scheduler.nodeinfo import NodeInfo, PodInfo

UNSCHEDULABLE = 2
UNRESOLVABLE = 3
MAX_NODE_SCORE = 100


@dataclass(frozen=True)
class Status:
    code: int
    reasons: tuple[str, ...]
    plugin: str = ""

    @property
    def resolvable(self) -> bool:
        return self.code == UNSCHEDULABLE


def unschedulable(plugin: str, *reasons: str) -> Status:
    return Status(UNSCHEDULABLE, reasons, plugin)


def unresolvable(plugin: str, *reasons: str) -> Status:
    return Status(UNRESOLVABLE, reasons, plugin)


@dataclass
class CycleState:
    """Per-pod scratch space plugins fill in PreFilter/PreScore and read per node."""

    data: dict[str, Any] = field(default_factory=dict)
    skip_filters: set[str] = field(default_factory=set)
    skip_scores: set[str] = field(default_factory=set)


class Snapshot(Protocol):
    """The cluster as the scheduler sees it during one cycle."""

    unschedulable_nodes: int
    tainted_nodes: int

    def node_infos(self) -> list[NodeInfo]: ...
    def get(self, name: str) -> NodeInfo | None: ...
    def namespace_labels(self) -> dict[str, dict[str, str]]: ...


class FilterPlugin(Protocol):
    name: str

    def pre_filter(self, state: CycleState, pod: PodInfo, snapshot: Snapshot) -> Status | None:
        """Prepare; add self.name to state.skip_filters when nothing in the pod concerns this plugin.
        A Status fails the pod on every node at once."""
        ...

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None: ...


class ScorePlugin(Protocol):
    name: str
    weight: int

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo], snapshot: Snapshot) -> bool:
        """False when the plugin would score every node the same (it is then skipped)."""
        ...

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int: ...

    def score_nodes(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> list[int]:
        """Every node's score at once (plugins may loop faster than one call per node)."""
        ...

    def normalize(self, state: CycleState, scores: list[int]) -> None:
        """Scale raw scores to 0..MAX_NODE_SCORE in place."""
        ...


def score_each(plugin: ScorePlugin, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> list[int]:
    score = plugin.score
    return [score(state, pod, node) for node in nodes]


def default_normalize(scores: list[int], reverse: bool = False) -> None:
    """Upstream's DefaultNormalizeScore: scale to 0..100 by the maximum, optionally reversed."""
    if not scores:
        return
    top = max(scores)
    if top == 0:
        if reverse:
            scores[:] = [MAX_NODE_SCORE] * len(scores)
        return
    for i, s in enumerate(scores):
        v = MAX_NODE_SCORE * s // top
        scores[i] = MAX_NODE_SCORE - v if reverse else v
