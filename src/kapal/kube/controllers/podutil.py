"""Pod facts controllers share: active, ready, available (ready for minReadySeconds), and pods made from a
template with an owner reference; deletions ranked as upstream's ActivePodsWithRanks ranks them."""

from __future__ import annotations

import datetime as dt
from typing import Any

from kapal.kube.client.clock import parse_time
from kapal.kube.controllers.ownership import owner_reference

Obj = dict[str, Any]


def is_active(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed") and not (
        pod["metadata"].get("deletionTimestamp"))


def is_terminal(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def condition(obj: Obj, kind: str) -> dict[str, Any] | None:
    for c in (obj.get("status") or {}).get("conditions") or ():
        if c.get("type") == kind:
            return c
    return None


def is_ready(pod: Obj) -> bool:
    c = condition(pod, "Ready")
    return c is not None and c.get("status") == "True"


def is_available(pod: Obj, min_ready_seconds: int, now: dt.datetime) -> bool:
    if not is_ready(pod):
        return False
    if min_ready_seconds <= 0:
        return True
    c = condition(pod, "Ready") or {}
    since = parse_time(c.get("lastTransitionTime"))
    return since is not None and since + dt.timedelta(seconds=min_ready_seconds) <= now


def pod_from_template(template: Obj, owner: Obj, namespace: str, *, generate_name: str | None = None,
                      name: str | None = None, extra_labels: dict[str, str] | None = None,
                      extra_annotations: dict[str, str] | None = None) -> Obj:
    tmeta = template.get("metadata") or {}
    meta: dict[str, Any] = {"namespace": namespace,
                            "labels": {**(tmeta.get("labels") or {}), **(extra_labels or {})},
                            "ownerReferences": [owner_reference(owner)]}
    annotations = {**(tmeta.get("annotations") or {}), **(extra_annotations or {})}
    if annotations:
        meta["annotations"] = annotations
    if tmeta.get("finalizers"):
        meta["finalizers"] = list(tmeta["finalizers"])
    if name:
        meta["name"] = name
    else:
        meta["generateName"] = generate_name or f"{owner['metadata']['name']}-"
    import json

    spec = json.loads(json.dumps(template.get("spec") or {}))
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


_PHASE_RANK = {"Pending": 0, "Unknown": 1, "Running": 2}


def deletion_rank(pod: Obj, colocated: dict[str, int]) -> tuple[Any, ...]:
    """Sort key: pods to delete first come first (unassigned, pending, not ready, crowded node, restarts, newest)."""
    spec, status, meta = pod.get("spec") or {}, pod.get("status") or {}, pod["metadata"]
    node = spec.get("nodeName") or ""
    restarts = max((c.get("restartCount") or 0 for c in status.get("containerStatuses") or ()), default=0)
    return (1 if node else 0, _PHASE_RANK.get(status.get("phase", "Pending"), 0), 1 if is_ready(pod) else 0,
            -colocated.get(node, 0), -restarts, _neg_time(meta.get("creationTimestamp")))


def _neg_time(text: str | None) -> float:
    t = parse_time(text)
    return -t.timestamp() if t else 0.0
