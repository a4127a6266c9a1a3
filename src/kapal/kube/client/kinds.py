"""The resource types components talk about, looked up once from the registry in kapal.kube.meta.resources."""

from __future__ import annotations

from kapal.kube.meta.resources import ResourceType, lookup


def resource(group: str, plural: str, version: str = "v1") -> ResourceType:
    r = lookup(group, version, plural)
    if r is None:
        raise KeyError(f"no resource {plural!r} in group {group!r} version {version!r}")
    return r


PODS = resource("", "pods")
NODES = resource("", "nodes")
NAMESPACES = resource("", "namespaces")
SERVICES = resource("", "services")
ENDPOINTS = resource("", "endpoints")
EVENTS = resource("", "events")
CONFIGMAPS = resource("", "configmaps")
SECRETS = resource("", "secrets")
SERVICEACCOUNTS = resource("", "serviceaccounts")
REPLICATIONCONTROLLERS = resource("", "replicationcontrollers")
DEPLOYMENTS = resource("apps", "deployments")
REPLICASETS = resource("apps", "replicasets")
DAEMONSETS = resource("apps", "daemonsets")
STATEFULSETS = resource("apps", "statefulsets")
CONTROLLERREVISIONS = resource("apps", "controllerrevisions")
JOBS = resource("batch", "jobs")
CRONJOBS = resource("batch", "cronjobs")
LEASES = resource("coordination.k8s.io", "leases")
ENDPOINTSLICES = resource("discovery.k8s.io", "endpointslices")
PRIORITYCLASSES = resource("scheduling.k8s.io", "priorityclasses")
