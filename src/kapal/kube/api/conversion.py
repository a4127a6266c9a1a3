"""Conversion between API versions that share one stored form.

Stored forms: HorizontalPodAutoscaler as autoscaling/v2, Event as core/v1. autoscaling/v1 has room only for a
CPU utilization target; everything else a v2 object holds travels in upstream's `autoscaling.alpha.kubernetes.io/*`
annotations so that v2 → v1 → v2 loses nothing.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from kapal.errors import Invalid, Unsupported
from kapal.kube.meta.resources import ResourceType

Obj = dict[str, Any]

METRICS_ANNOTATION = "autoscaling.alpha.kubernetes.io/metrics"
CURRENT_METRICS_ANNOTATION = "autoscaling.alpha.kubernetes.io/current-metrics"
CONDITIONS_ANNOTATION = "autoscaling.alpha.kubernetes.io/conditions"
BEHAVIOR_ANNOTATION = "autoscaling.alpha.kubernetes.io/behavior"
_HPA_ANNOTATIONS = (METRICS_ANNOTATION, CURRENT_METRICS_ANNOTATION, CONDITIONS_ANNOTATION, BEHAVIOR_ANNOTATION)


def convert(obj: Obj, r_from: ResourceType, r_to: ResourceType) -> Obj:
    """`obj` (of r_from's version) in r_to's version; a copy, never the input."""
    if (r_from.group, r_from.version) == (r_to.group, r_to.version):
        return copy.deepcopy(obj)
    converter = _CONVERTERS.get((r_from.api_version, r_to.api_version, r_from.kind))
    if converter is None or r_from.kind != r_to.kind:
        raise Unsupported(f"kapal cannot convert {r_from.kind} from {r_from.api_version} to {r_to.api_version}")
    out = converter(copy.deepcopy(obj))
    out["apiVersion"] = r_to.api_version
    out["kind"] = r_to.kind
    return _ordered(out)


def _ordered(obj: Obj) -> Obj:
    head = {k: obj[k] for k in ("apiVersion", "kind", "metadata") if k in obj}
    return {**head, **{k: v for k, v in obj.items() if k not in head}}


# --- HorizontalPodAutoscaler ----------------------------------------------------------------------------------


def _is_cpu_utilization(metric: Any) -> bool:
    if not isinstance(metric, dict) or metric.get("type") != "Resource":
        return False
    resource = metric.get("resource") or {}
    target = resource.get("target") or {}
    return resource.get("name") == "cpu" and target.get("type") == "Utilization" \
        and target.get("averageUtilization") is not None


def _hpa_v2_to_v1(obj: Obj) -> Obj:
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    annotations = dict((obj.get("metadata") or {}).get("annotations") or {})
    v1_spec: Obj = {k: spec[k] for k in ("scaleTargetRef", "minReplicas", "maxReplicas") if k in spec}
    others = []
    for metric in spec.get("metrics") or []:
        if _is_cpu_utilization(metric) and "targetCPUUtilizationPercentage" not in v1_spec:
            v1_spec["targetCPUUtilizationPercentage"] = metric["resource"]["target"]["averageUtilization"]
        else:
            others.append(metric)
    if others:
        annotations[METRICS_ANNOTATION] = json.dumps(others, separators=(",", ":"))
    if spec.get("behavior"):
        annotations[BEHAVIOR_ANNOTATION] = json.dumps(spec["behavior"], separators=(",", ":"))
    v1_status: Obj = {k: status[k] for k in ("observedGeneration", "lastScaleTime", "currentReplicas",
                                             "desiredReplicas") if k in status}
    current_others = []
    for metric in status.get("currentMetrics") or []:
        resource = (metric or {}).get("resource") or {}
        current = resource.get("current") or {}
        if metric.get("type") == "Resource" and resource.get("name") == "cpu" \
                and current.get("averageUtilization") is not None \
                and "currentCPUUtilizationPercentage" not in v1_status:
            v1_status["currentCPUUtilizationPercentage"] = current["averageUtilization"]
        else:
            current_others.append(metric)
    if current_others:
        annotations[CURRENT_METRICS_ANNOTATION] = json.dumps(current_others, separators=(",", ":"))
    if status.get("conditions"):
        annotations[CONDITIONS_ANNOTATION] = json.dumps(status["conditions"], separators=(",", ":"))
    out = {k: v for k, v in obj.items() if k not in ("spec", "status")}
    out["metadata"] = dict(obj.get("metadata") or {})
    if annotations:
        out["metadata"]["annotations"] = annotations
    out["spec"] = v1_spec
    if "status" in obj:
        out["status"] = v1_status
    return out


def _annotation_json(annotations: Obj, key: str) -> Any:
    text = annotations.pop(key, None)
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        raise Invalid(f"metadata.annotations[{key}]: not valid JSON") from None


def _hpa_v1_to_v2(obj: Obj) -> Obj:
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    meta = dict(obj.get("metadata") or {})
    annotations = dict(meta.get("annotations") or {})
    metrics = []
    if spec.get("targetCPUUtilizationPercentage") is not None:
        metrics.append({"type": "Resource", "resource": {"name": "cpu", "target": {
            "type": "Utilization", "averageUtilization": spec["targetCPUUtilizationPercentage"]}}})
    metrics += _annotation_json(annotations, METRICS_ANNOTATION) or []
    v2_spec: Obj = {k: spec[k] for k in ("scaleTargetRef", "minReplicas", "maxReplicas") if k in spec}
    if metrics:
        v2_spec["metrics"] = metrics
    behavior = _annotation_json(annotations, BEHAVIOR_ANNOTATION)
    if behavior:
        v2_spec["behavior"] = behavior
    v2_status: Obj = {k: status[k] for k in ("observedGeneration", "lastScaleTime", "currentReplicas",
                                             "desiredReplicas") if k in status}
    current = []
    if status.get("currentCPUUtilizationPercentage") is not None:
        current.append({"type": "Resource", "resource": {"name": "cpu", "current": {
            "averageUtilization": status["currentCPUUtilizationPercentage"]}}})
    current += _annotation_json(annotations, CURRENT_METRICS_ANNOTATION) or []
    if current:
        v2_status["currentMetrics"] = current
    conditions = _annotation_json(annotations, CONDITIONS_ANNOTATION)
    if conditions:
        v2_status["conditions"] = conditions
    if annotations:
        meta["annotations"] = annotations
    else:
        meta.pop("annotations", None)
    out = {k: v for k, v in obj.items() if k not in ("spec", "status", "metadata")}
    out["metadata"] = meta
    out["spec"] = v2_spec
    if "status" in obj:
        out["status"] = v2_status
    return out


# --- Event ----------------------------------------------------------------------------------------------------

# core/v1 name → events.k8s.io/v1 name; the others are shared.
_EVENT_RENAMES = {
    "involvedObject": "regarding",
    "message": "note",
    "reportingComponent": "reportingController",
    "source": "deprecatedSource",
    "firstTimestamp": "deprecatedFirstTimestamp",
    "lastTimestamp": "deprecatedLastTimestamp",
    "count": "deprecatedCount",
}
_EVENT_SHARED = ("metadata", "eventTime", "series", "reportingInstance", "action", "reason", "related", "type")


def _event_core_to_events(obj: Obj) -> Obj:
    out = {k: obj[k] for k in _EVENT_SHARED if k in obj}
    for old, new in _EVENT_RENAMES.items():
        if obj.get(old) not in (None, "", {}):
            out[new] = obj[old]
    return out


def _event_events_to_core(obj: Obj) -> Obj:
    out = {k: obj[k] for k in _EVENT_SHARED if k in obj}
    for old, new in _EVENT_RENAMES.items():
        if obj.get(new) not in (None, "", {}):
            out[old] = obj[new]
    return out


_CONVERTERS = {
    ("autoscaling/v2", "autoscaling/v1", "HorizontalPodAutoscaler"): _hpa_v2_to_v1,
    ("autoscaling/v1", "autoscaling/v2", "HorizontalPodAutoscaler"): _hpa_v1_to_v2,
    ("v1", "events.k8s.io/v1", "Event"): _event_core_to_events,
    ("events.k8s.io/v1", "v1", "Event"): _event_events_to_core,
}
