"""The words of a FailedScheduling event, exactly as upstream's FitError puts them:

    0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: 3 No preemption victims
    found for incoming pod.

Reasons are counted over nodes ("2 Insufficient cpu, 1 node(s) were unschedulable"), sorted as strings.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from kapal.kube.scheduler.framework import Status

NO_NODES = "no nodes available to schedule pods"
NOT_HELPFUL = "Preemption is not helpful for scheduling"
NO_VICTIMS = "No preemption victims found for incoming pod"


def histogram(reasons: Iterable[str]) -> str:
    counts = Counter(reasons)
    return ", ".join(sorted(f"{n} {reason}" for reason, n in counts.items()))


def fit_error_message(num_nodes: int, statuses: dict[str, Status], prefilter: Status | None = None,
                      preemption: dict[str, str] | None = None) -> str:
    """`statuses`: node name → why it failed; `preemption`: node name → why preemption could not help there."""
    msg = f"0/{num_nodes} nodes are available:"
    if prefilter is not None:
        msg += f" {', '.join(prefilter.reasons)}."
    else:
        reasons = histogram(r for st in statuses.values() for r in st.reasons)
        if reasons:
            msg += f" {reasons}."
    if preemption is not None:
        msg += f" preemption: 0/{num_nodes} nodes are available: {histogram(preemption.values())}."
    return msg


def preemption_reasons(statuses: dict[str, Status], has_victims: dict[str, bool]) -> dict[str, str]:
    """Why preemption failed per node: nothing can be evicted to fix it, or there was nobody to evict."""
    return {node: NOT_HELPFUL if not st.resolvable else (NO_VICTIMS if not has_victims.get(node) else NO_VICTIMS)
            for node, st in statuses.items()}
