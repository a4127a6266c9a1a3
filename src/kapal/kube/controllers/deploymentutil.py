"""The arithmetic of Deployments, pure: maxSurge/maxUnavailable, how far to scale the new and old ReplicaSets,
proportional scaling, revisions and their annotations, pod-template-hash, status and conditions.

Follows upstream's deployment/util package; ReplicaSets are plain dicts here.

Glossary: *new RS* — the ReplicaSet whose pod template equals the Deployment's (ignoring pod-template-hash);
*old RSs* — every other ReplicaSet the Deployment controls; *revision* — the
`deployment.kubernetes.io/revision` annotation, one more than the highest so far when a template becomes new.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any

Obj = dict[str, Any]

HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
ROLLBACK_TO = "deprecated.deployment.rollback.to"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
# Annotations of the Deployment that are not copied onto its ReplicaSets.
SKIPPED_ANNOTATIONS = frozenset({LAST_APPLIED, REVISION, REVISION_HISTORY, DESIRED_REPLICAS, MAX_REPLICAS,
                                 ROLLBACK_TO})

# Condition reasons (upstream's words).
NEW_RS_CREATED = "NewReplicaSetCreated"
FOUND_NEW_RS = "FoundNewReplicaSet"
NEW_RS_AVAILABLE = "NewReplicaSetAvailable"
RS_UPDATED = "ReplicaSetUpdated"
TIMED_OUT = "ProgressDeadlineExceeded"
PAUSED = "DeploymentPaused"
RESUMED = "DeploymentResumed"
FAILED_RS_CREATE = "ReplicaSetCreateError"
MIN_AVAILABLE = "MinimumReplicasAvailable"
MIN_UNAVAILABLE = "MinimumReplicasUnavailable"

_SAFE = "bcdfghjklmnpqrstvwxz2456789"


# --- intOrString -----------------------------------------------------------------------------------------------------

def scaled_value(value: int | str | None, total: int, round_up: bool, default: str = "25%") -> int:
    """intstr.GetScaledValueFromIntOrPercent."""
    if value is None:
        value = default
    if isinstance(value, int):
        return value
    text = str(value)
    if not text.endswith("%"):
        return int(text)
    pct = int(text[:-1])
    exact = pct * total / 100
    return math.ceil(exact) if round_up else math.floor(exact)


def replicas(obj: Obj) -> int:
    return int((obj.get("spec") or {}).get("replicas", 1) if (obj.get("spec") or {}).get("replicas") is not None
               else 1)


def _rolling(d: Obj) -> dict[str, Any] | None:
    strategy = (d.get("spec") or {}).get("strategy") or {}
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        return None
    return strategy.get("rollingUpdate") or {}


def resolve_fenceposts(d: Obj) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) as numbers: surge rounds up, unavailable down; never both zero."""
    ru = _rolling(d)
    if ru is None:
        return 0, 0
    want = replicas(d)
    surge = scaled_value(ru.get("maxSurge"), want, True)
    unavailable = scaled_value(ru.get("maxUnavailable"), want, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def max_surge(d: Obj) -> int:
    return resolve_fenceposts(d)[0] if _rolling(d) is not None else 0


def max_unavailable(d: Obj) -> int:
    if _rolling(d) is None or replicas(d) == 0:
        return 0
    return min(resolve_fenceposts(d)[1], replicas(d))


# --- ReplicaSet sets -------------------------------------------------------------------------------------------------

def rs_replicas(rs: Obj | None) -> int:
    return 0 if rs is None else int((rs.get("spec") or {}).get("replicas") or 0)


def status_of(rs: Obj | None, field: str) -> int:
    return 0 if rs is None else int((rs.get("status") or {}).get(field) or 0)


def total_replicas(rss: list[Obj]) -> int:
    return sum(rs_replicas(rs) for rs in rss)


def actual_replicas(rss: list[Obj]) -> int:
    return sum(status_of(rs, "replicas") for rs in rss)


def available_replicas(rss: list[Obj]) -> int:
    return sum(status_of(rs, "availableReplicas") for rs in rss)


def ready_replicas(rss: list[Obj]) -> int:
    return sum(status_of(rs, "readyReplicas") for rs in rss)


def active(rss: list[Obj]) -> list[Obj]:
    return [rs for rs in rss if rs_replicas(rs) > 0]


def _created(rs: Obj) -> tuple[str, str]:
    return (rs["metadata"].get("creationTimestamp") or "", rs["metadata"]["name"])


def by_creation(rss: list[Obj]) -> list[Obj]:
    return sorted(rss, key=_created)


def by_size_newer(rss: list[Obj]) -> list[Obj]:
    """Largest first; among equals, newer first."""
    return sorted(by_creation(rss)[::-1], key=lambda rs: -rs_replicas(rs))


def by_size_older(rss: list[Obj]) -> list[Obj]:
    """Largest first; among equals, older first."""
    return sorted(by_creation(rss), key=lambda rs: -rs_replicas(rs))


# --- templates and hashes --------------------------------------------------------------------------------------------

def semantic(value: Any) -> Any:
    """The value as apimachinery's Semantic.DeepEqual sees it: null, empty maps and empty lists are absent
    (kubectl sends a template's `creationTimestamp: null`; the server may have dropped it)."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            v = semantic(v)
            if v is not None and v != {} and v != []:
                out[k] = v
        return out
    if isinstance(value, list):
        return [semantic(v) for v in value]
    return value


def _without_hash(template: Obj) -> Obj:
    t = json.loads(json.dumps(template or {}))
    labels = (t.get("metadata") or {}).get("labels")
    if labels is not None:
        labels.pop(HASH_LABEL, None)
    return semantic(t)


def equal_ignore_hash(a: Obj, b: Obj) -> bool:
    return _without_hash(a) == _without_hash(b)


def fnv32a(data: bytes) -> int:
    h = 0x811C9DC5
    for byte in data:
        h ^= byte
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def safe_encode(text: str) -> str:
    """rand.SafeEncodeString: digits mapped onto consonants and digits that never spell words."""
    return "".join(_SAFE[ord(ch) % len(_SAFE)] for ch in text)


def pod_template_hash(template: Obj, collision_count: int | None = None) -> str:
    """A stable name suffix for a template (FNV-32a of its canonical JSON, plus the collision count)."""
    data = json.dumps(_without_hash(template), sort_keys=True, separators=(",", ":")).encode()
    if collision_count:
        data += collision_count.to_bytes(4, "little")
    return safe_encode(str(fnv32a(data)))


def find_new(d: Obj, rss: list[Obj]) -> Obj | None:
    """The oldest ReplicaSet whose template equals the Deployment's."""
    template = (d.get("spec") or {}).get("template") or {}
    for rs in by_creation(rss):
        if equal_ignore_hash((rs.get("spec") or {}).get("template") or {}, template):
            return rs
    return None


def find_old(d: Obj, rss: list[Obj], new_rs: Obj | None) -> list[Obj]:
    uid = new_rs["metadata"]["uid"] if new_rs else None
    return [rs for rs in rss if rs["metadata"]["uid"] != uid]


def revision(obj: Obj | None) -> int:
    if obj is None:
        return 0
    try:
        return int(((obj.get("metadata") or {}).get("annotations") or {}).get(REVISION, "0"))
    except ValueError:
        return 0


def max_revision(rss: list[Obj]) -> int:
    return max((revision(rs) for rs in rss), default=0)


def new_rs_annotations(d: Obj, rs: Obj, new_revision: int, exists: bool, history_limit: int = 0) -> tuple[dict, bool]:
    """SetNewReplicaSetAnnotations: copy the Deployment's annotations, move the revision forward (remembering
    the old one in revision-history), record desired/max replicas. Returns (annotations, changed)."""
    annotations = dict((rs.get("metadata") or {}).get("annotations") or {})
    before = dict(annotations)
    for k, v in ((d.get("metadata") or {}).get("annotations") or {}).items():
        if k not in SKIPPED_ANNOTATIONS:
            annotations[k] = v
    old = annotations.get(REVISION, "")
    try:
        old_num = int(old) if old else 0
    except ValueError:
        old_num = 0
    if old_num < new_revision:
        annotations[REVISION] = str(new_revision)
        if old and exists:
            history = [h for h in annotations.get(REVISION_HISTORY, "").split(",") if h]
            history.append(old)
            if history_limit > 0:
                history = history[-history_limit:]
            annotations[REVISION_HISTORY] = ",".join(history)
    if not exists:
        annotations[DESIRED_REPLICAS] = str(replicas(d))
        annotations[MAX_REPLICAS] = str(replicas(d) + max_surge(d))
    return annotations, annotations != before


def replicas_annotations(rs: Obj, desired: int, maximum: int) -> tuple[dict, bool]:
    annotations = dict((rs.get("metadata") or {}).get("annotations") or {})
    before = dict(annotations)
    annotations[DESIRED_REPLICAS] = str(desired)
    annotations[MAX_REPLICAS] = str(maximum)
    return annotations, annotations != before


def annotation_int(obj: Obj, key: str) -> int | None:
    try:
        return int(((obj.get("metadata") or {}).get("annotations") or {})[key])
    except (KeyError, ValueError):
        return None


# --- rolling update --------------------------------------------------------------------------------------------------

def new_rs_new_replicas(d: Obj, all_rss: list[Obj], new_rs: Obj) -> int:
    """How many replicas the new RS may have now: up to replicas+maxSurge pods in total (Recreate: all)."""
    if _rolling(d) is None:
        return replicas(d)
    current = total_replicas(all_rss)
    max_total = replicas(d) + max_surge(d)
    if current >= max_total:
        return rs_replicas(new_rs)
    scale_up = min(max_total - current, replicas(d) - rs_replicas(new_rs))
    return rs_replicas(new_rs) + scale_up


def max_old_scale_down(d: Obj, all_rss: list[Obj], new_rs: Obj | None) -> int:
    """How many old replicas may go now without dropping below replicas-maxUnavailable available pods,
    counting the new RS's unavailable pods against the budget."""
    min_available = replicas(d) - max_unavailable(d)
    new_unavailable = rs_replicas(new_rs) - status_of(new_rs, "availableReplicas")
    return total_replicas(all_rss) - min_available - new_unavailable


def cleanup_unhealthy(old_rss: list[Obj], budget: int) -> list[tuple[Obj, int]]:
    """Scale old RSs down by their unavailable replicas first, oldest first, within the budget."""
    plan, total = [], 0
    for rs in by_creation(old_rss):
        if total >= budget:
            break
        want = rs_replicas(rs)
        if want == 0 or status_of(rs, "availableReplicas") >= want:
            continue  # (upstream errors out when the status lags and counts more than spec)
        down = min(budget - total, want - status_of(rs, "availableReplicas"))
        plan.append((rs, want - down))
        total += down
    return plan


def settled_available(rss: list[Obj]) -> int:
    """Available replicas, each RS counted at most at its spec.replicas: a status written just after a scale-down
    still counts the pods being deleted, and trusting it would let a second scale-down go too far."""
    return sum(min(status_of(rs, "availableReplicas"), rs_replicas(rs)) for rs in rss)


def scale_down_old(d: Obj, all_rss: list[Obj], old_rss: list[Obj]) -> list[tuple[Obj, int]]:
    """Then scale old RSs down while more than replicas-maxUnavailable pods are available, oldest first."""
    min_available = replicas(d) - max_unavailable(d)
    available = settled_available(all_rss)
    if available <= min_available:
        return []
    budget, total, plan = available - min_available, 0, []
    for rs in by_creation(old_rss):
        if total >= budget:
            break
        want = rs_replicas(rs)
        if want == 0:
            continue
        down = min(want, budget - total)
        plan.append((rs, want - down))
        total += down
    return plan


# --- proportional scaling (a scale while a rollout is in progress) ---------------------------------------------------

def is_saturated(d: Obj, rs: Obj | None) -> bool:
    if rs is None:
        return False
    return (annotation_int(rs, DESIRED_REPLICAS) == replicas(d) and rs_replicas(rs) == replicas(d)
            and status_of(rs, "availableReplicas") == replicas(d))


def active_or_latest(new_rs: Obj | None, old_rss: list[Obj]) -> Obj | None:
    if new_rs is None and not old_rss:
        return None
    ordered = by_creation(old_rss + ([new_rs] if new_rs else []))[::-1]
    live = active(ordered)
    if not live:
        return new_rs if new_rs is not None else ordered[0]
    if len(live) == 1:
        return live[0]
    return None


def rs_fraction(rs: Obj, d: Obj) -> int:
    if replicas(d) == 0:
        return -rs_replicas(rs)
    deployment_replicas = replicas(d) + max_surge(d)
    annotated = annotation_int(rs, MAX_REPLICAS)
    if annotated is None:
        annotated = int((d.get("status") or {}).get("replicas") or 0)
    if annotated == 0:
        return 0
    size = rs_replicas(rs) * deployment_replicas / annotated
    return int(math.floor(size + 0.5)) - rs_replicas(rs)


def proportion(rs: Obj, d: Obj, to_add: int, added: int) -> int:
    if rs_replicas(rs) == 0 or to_add == 0 or to_add == added:
        return 0
    fraction = rs_fraction(rs, d)
    allowed = to_add - added
    return min(fraction, allowed) if to_add > 0 else max(fraction, allowed)


def proportional_sizes(d: Obj, all_active: list[Obj]) -> dict[str, int]:
    """New sizes for every active RS after the Deployment's replicas changed mid-rollout."""
    allowed = replicas(d) + max_surge(d) if replicas(d) > 0 else 0
    to_add = allowed - total_replicas(all_active)
    ordered = by_size_newer(all_active) if to_add > 0 else by_size_older(all_active)
    sizes, added = {}, 0
    for rs in ordered:
        if to_add != 0:
            p = proportion(rs, d, to_add, added)
            sizes[rs["metadata"]["name"]] = rs_replicas(rs) + p
            added += p
        else:
            sizes[rs["metadata"]["name"]] = rs_replicas(rs)
    if to_add != 0 and ordered:
        first = ordered[0]["metadata"]["name"]
        sizes[first] = max(0, sizes[first] + to_add - added)
    return sizes


# --- status and conditions --------------------------------------------------------------------------------------------

def ts(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def get_condition(status: Obj, kind: str) -> dict[str, Any] | None:
    for c in status.get("conditions") or ():
        if c.get("type") == kind:
            return c
    return None


def new_condition(kind: str, status: str, reason: str, message: str, now: dt.datetime) -> dict[str, Any]:
    t = ts(now)
    return {"type": kind, "status": status, "lastUpdateTime": t, "lastTransitionTime": t, "reason": reason,
            "message": message}


def set_condition(status: Obj, cond: dict[str, Any]) -> None:
    """SetDeploymentCondition: nothing if status and reason are unchanged; keep lastTransitionTime while the
    status stays the same."""
    current = get_condition(status, cond["type"])
    if current is not None and current.get("status") == cond["status"] and current.get("reason") == cond["reason"]:
        return
    if current is not None and current.get("status") == cond["status"]:
        cond = {**cond, "lastTransitionTime": current.get("lastTransitionTime", cond["lastTransitionTime"])}
    status["conditions"] = [c for c in status.get("conditions") or () if c.get("type") != cond["type"]] + [cond]


def remove_condition(status: Obj, kind: str) -> None:
    if "conditions" in status:
        status["conditions"] = [c for c in status["conditions"] if c.get("type") != kind]


def calculate_status(d: Obj, all_rss: list[Obj], new_rs: Obj | None, now: dt.datetime) -> Obj:
    available = available_replicas(all_rss)
    want = replicas(d)
    old = d.get("status") or {}
    status: Obj = {
        "observedGeneration": d["metadata"].get("generation", 0),
        "replicas": actual_replicas(all_rss),
        "updatedReplicas": status_of(new_rs, "replicas"),
        "readyReplicas": ready_replicas(all_rss),
        "availableReplicas": available,
        "unavailableReplicas": max(0, want - available),
    }
    if old.get("collisionCount") is not None:
        status["collisionCount"] = old["collisionCount"]
    if old.get("conditions"):
        status["conditions"] = json.loads(json.dumps(old["conditions"]))
    if available >= want - max_unavailable(d):
        set_condition(status, new_condition("Available", "True", MIN_AVAILABLE, "Deployment has minimum availability.",
                                            now))
    else:
        set_condition(status, new_condition("Available", "False", MIN_UNAVAILABLE,
                                            "Deployment does not have minimum availability.", now))
    return status


def complete(d: Obj, status: Obj) -> bool:
    want = replicas(d)
    return (int(status.get("updatedReplicas") or 0) == want and int(status.get("replicas") or 0) == want
            and int(status.get("availableReplicas") or 0) == want
            and int(status.get("observedGeneration") or 0) >= int(d["metadata"].get("generation") or 0))


def progressing(d: Obj, new_status: Obj) -> bool:
    old = d.get("status") or {}

    def g(s: Obj, f: str) -> int:
        return int(s.get(f) or 0)

    old_old = g(old, "replicas") - g(old, "updatedReplicas")
    new_old = g(new_status, "replicas") - g(new_status, "updatedReplicas")
    return (g(new_status, "updatedReplicas") > g(old, "updatedReplicas") or new_old < old_old
            or g(new_status, "readyReplicas") > g(old, "readyReplicas")
            or g(new_status, "availableReplicas") > g(old, "availableReplicas"))


def has_progress_deadline(d: Obj) -> bool:
    deadline = (d.get("spec") or {}).get("progressDeadlineSeconds")
    return deadline is not None and deadline != 2**31 - 1


def timed_out(d: Obj, status: Obj, now: dt.datetime) -> bool:
    if not has_progress_deadline(d):
        return False
    cond = get_condition(status, "Progressing")
    if cond is None or cond.get("reason") == NEW_RS_AVAILABLE:
        return False
    if cond.get("reason") == TIMED_OUT:
        return True
    since = dt.datetime.fromisoformat(str(cond.get("lastUpdateTime")).replace("Z", "+00:00"))
    return since + dt.timedelta(seconds=int(d["spec"]["progressDeadlineSeconds"])) < now


def strip_zero(status: Obj) -> Obj:
    """Go's omitempty on DeploymentStatus counters: zero counts are not written."""
    return {k: v for k, v in status.items() if v not in (0, None, []) or k == "observedGeneration"}
