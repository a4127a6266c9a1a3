"""HPA autoscaling/v1 <-> v2 and Event core/v1 <-> events.k8s.io/v1, lossless both ways."""

import pytest

from kapal.errors import Unsupported
from kapal.kube.api.conversion import CONDITIONS_ANNOTATION, METRICS_ANNOTATION, convert
from kapal.kube.meta.resources import by_kind

HPA_V1 = by_kind("autoscaling/v1", "HorizontalPodAutoscaler")
HPA_V2 = by_kind("autoscaling/v2", "HorizontalPodAutoscaler")
EVENT = by_kind("v1", "Event")
EVENTS_V1 = by_kind("events.k8s.io/v1", "Event")

CPU = {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}
MEMORY = {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue",
                                                                        "averageValue": "500Mi"}}}


def test_hpa_v2_to_v1_keeps_the_cpu_target_and_parks_the_rest_in_annotations():
    v2 = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "h"},
          "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                   "minReplicas": 1, "maxReplicas": 5, "metrics": [CPU, MEMORY],
                   "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}},
          "status": {"currentReplicas": 2, "desiredReplicas": 3, "conditions": [{"type": "AbleToScale",
                                                                                 "status": "True"}],
                     "currentMetrics": [{"type": "Resource", "resource": {"name": "cpu", "current": {
                         "averageUtilization": 42, "averageValue": "100m"}}}]}}
    v1 = convert(v2, HPA_V2, HPA_V1)
    assert v1["apiVersion"] == "autoscaling/v1"
    assert v1["spec"] == {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                          "minReplicas": 1, "maxReplicas": 5, "targetCPUUtilizationPercentage": 70}
    assert v1["status"] == {"currentReplicas": 2, "desiredReplicas": 3, "currentCPUUtilizationPercentage": 42}
    assert METRICS_ANNOTATION in v1["metadata"]["annotations"]
    assert CONDITIONS_ANNOTATION in v1["metadata"]["annotations"]
    back = convert(v1, HPA_V1, HPA_V2)
    assert back["spec"] == v2["spec"]
    assert back["status"]["conditions"] == v2["status"]["conditions"]
    assert "annotations" not in back["metadata"]
    assert "annotations" not in v2["metadata"]  # input untouched


def test_hpa_v1_created_with_kubectl_autoscale_shape():
    v1 = {"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "web"},
          "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                   "maxReplicas": 3, "targetCPUUtilizationPercentage": 80}}
    v2 = convert(v1, HPA_V1, HPA_V2)
    assert v2["spec"]["metrics"] == [{"type": "Resource", "resource": {"name": "cpu", "target": {
        "type": "Utilization", "averageUtilization": 80}}}]
    assert "status" not in v2


def test_event_core_and_events_api_round_trip():
    core = {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "p.1", "namespace": "d"},
            "involvedObject": {"kind": "Pod", "name": "p", "namespace": "d"}, "reason": "Scheduled",
            "message": "assigned", "source": {"component": "default-scheduler"}, "type": "Normal", "count": 2,
            "firstTimestamp": "2024-01-01T00:00:00Z", "lastTimestamp": "2024-01-01T00:01:00Z",
            "reportingComponent": "default-scheduler", "reportingInstance": "s-1", "action": "Binding"}
    new = convert(core, EVENT, EVENTS_V1)
    assert new["apiVersion"] == "events.k8s.io/v1"
    assert new["regarding"] == core["involvedObject"] and new["note"] == "assigned"
    assert new["deprecatedSource"] == {"component": "default-scheduler"} and new["deprecatedCount"] == 2
    assert new["reportingController"] == "default-scheduler"
    assert convert(new, EVENTS_V1, EVENT) == core


def test_same_version_is_a_copy_and_unknown_pairs_are_refused():
    obj = {"metadata": {"name": "x"}}
    assert convert(obj, EVENT, EVENT) == obj and convert(obj, EVENT, EVENT) is not obj
    with pytest.raises(Unsupported, match="cannot convert HorizontalPodAutoscaler"):
        convert(obj, HPA_V2, EVENT)
