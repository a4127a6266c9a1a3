"""meta.k8s.io/v1 Table responses: the columns `kubectl get` prints for each kind, with upstream's cells.

`table(r, objects, wide=..., now=...)` returns the Table without `rows[].object` (the API server adds it
as `includeObject` asks). Columns with priority 1 are the `-o wide` ones; the server normally sends them all
(wide=True) and kubectl hides them unless asked. Kinds without their own printer get NAME and CREATED AT.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from kapal.kube.api.age import between, human_duration, since
from kapal.kube.meta.resources import ResourceType

Obj = dict[str, Any]
Column = tuple[str, str, str, int, str]  # name, type, format, priority, description

_NAME: Column = ("Name", "string", "name", 0, "Name must be unique within a namespace.")
_AGE: Column = ("Age", "string", "", 0, "Time since the object was created.")
_CONTAINERS: Column = ("Containers", "string", "", 1, "Names of each container in the template.")
_IMAGES: Column = ("Images", "string", "", 1, "Images referenced by each container in the template.")
_SELECTOR: Column = ("Selector", "string", "", 1, "Label selector of the pods this object manages.")


def _c(name: str, description: str, typ: str = "string", priority: int = 0, fmt: str = "") -> Column:
    return (name, typ, fmt, priority, description)


def table(r: ResourceType, objects: list[Obj], *, wide: bool = True, now: dt.datetime | None = None) -> Obj:
    now = now or dt.datetime.now(dt.UTC)
    columns, printer = _PRINTERS.get((r.group, r.kind), (_DEFAULT_COLUMNS, _default_row))
    keep = [i for i, c in enumerate(columns) if wide or c[3] == 0]
    rows = []
    for obj in objects:
        cells, conditions = printer(obj, now)
        row: Obj = {"cells": [cells[i] for i in keep]}
        if conditions:
            row["conditions"] = conditions
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {},
        "columnDefinitions": [{"name": columns[i][0], "type": columns[i][1], "format": columns[i][2],
                               "description": columns[i][4], "priority": columns[i][3]} for i in keep],
        "rows": rows,
    }


# --- helpers ----------------------------------------------------------------------------------------------------


def _meta(obj: Obj) -> Obj:
    return obj.get("metadata") or {}


def _spec(obj: Obj) -> Obj:
    value = obj.get("spec")
    return value if isinstance(value, dict) else {}


def _status(obj: Obj) -> Obj:
    value = obj.get("status")
    return value if isinstance(value, dict) else {}


def _age(obj: Obj, now: dt.datetime) -> str:
    return since(_meta(obj).get("creationTimestamp"), now)


def _list(value: Any) -> list[Obj]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def format_labels(labels: Any) -> str:
    """`a=b,c=d` sorted by key, or `<none>`."""
    if not isinstance(labels, dict) or not labels:
        return "<none>"
    return ",".join(f"{k}={labels[k]}" for k in sorted(labels))


def selector_string(selector: Any) -> str:
    """A LabelSelector as `app=web,tier in (a,b),!gone` (requirements sorted by key), "" when empty."""
    if not isinstance(selector, dict):
        return ""
    parts: list[tuple[str, str]] = []
    for key, value in (selector.get("matchLabels") or {}).items():
        parts.append((key, f"{key}={value}"))
    for expr in _list(selector.get("matchExpressions")):
        key, op, values = expr.get("key", ""), expr.get("operator"), sorted(expr.get("values") or [])
        if op == "In":
            parts.append((key, f"{key} in ({','.join(values)})"))
        elif op == "NotIn":
            parts.append((key, f"{key} notin ({','.join(values)})"))
        elif op == "Exists":
            parts.append((key, key))
        elif op == "DoesNotExist":
            parts.append((key, f"!{key}"))
    return ",".join(text for _, text in sorted(parts, key=lambda p: p[0]))


def format_selector(selector: Any) -> str:
    return selector_string(selector) or "<none>"


def _containers(pod_spec: Any) -> tuple[str, str]:
    containers = _list(pod_spec.get("containers") if isinstance(pod_spec, dict) else None)
    return ",".join(str(c.get("name", "")) for c in containers), ",".join(str(c.get("image", "")) for c in containers)


def _template_spec(spec: Obj) -> Obj:
    template = spec.get("template")
    return (template.get("spec") or {}) if isinstance(template, dict) else {}


def _more(items: list[str], total: int, limit: int, empty: str = "<unset>") -> str:
    text = ",".join(items[:limit])
    if total > limit:
        return f"{text} + {total - limit} more..."
    return text or empty


# --- pods ---------------------------------------------------------------------------------------------------------

_POD_COLUMNS = [
    _NAME,
    _c("Ready", "The aggregate readiness state of this pod for accepting traffic."),
    _c("Status", "The aggregate status of the containers in this pod."),
    _c("Restarts", "The number of times the containers in this pod have been restarted and when the last "
                   "container in this pod has restarted."),
    _AGE,
    _c("IP", "IP address allocated to the pod.", priority=1),
    _c("Node", "The node the pod is bound to.", priority=1),
    _c("Nominated Node", "The node the scheduler nominated for this pod while preempting.", priority=1),
    _c("Readiness Gates", "Readiness gates of the pod that are true, out of all of them.", priority=1),
]


def _restartable(container: Obj | None) -> bool:
    return bool(container) and container.get("restartPolicy") == "Always"


def _latest(current: str | None, candidate: str | None) -> str | None:
    if not candidate:
        return current
    if not current:
        return candidate
    from kapal.kube.api.age import parse_time

    try:
        return candidate if parse_time(candidate) > parse_time(current) else current
    except ValueError:
        return current


def pod_status(pod: Obj) -> tuple[str, str, int, str | None]:
    """(READY, STATUS, restarts, time of the last restart) as kubectl shows them."""
    spec, status = _spec(pod), _status(pod)
    containers = _list(spec.get("containers"))
    init_specs = {c.get("name"): c for c in _list(spec.get("initContainers"))}
    total = len(containers) + sum(1 for c in init_specs.values() if _restartable(c))
    ready = 0
    restarts = restartable_restarts = 0
    last_restart: str | None = None
    last_restartable: str | None = None
    phase = status.get("phase") or ""
    reason = status.get("reason") or phase
    for condition in _list(status.get("conditions")):
        if condition.get("type") == "PodScheduled" and condition.get("reason") == "SchedulingGated":
            reason = "SchedulingGated"

    initializing = False
    init_statuses = _list(status.get("initContainerStatuses"))
    for i, cs in enumerate(init_statuses):
        restarts += _int(cs.get("restartCount"))
        finished = ((cs.get("lastState") or {}).get("terminated") or {}).get("finishedAt")
        last_restart = _latest(last_restart, finished)
        restartable = _restartable(init_specs.get(cs.get("name")))
        if restartable:
            restartable_restarts += _int(cs.get("restartCount"))
            last_restartable = _latest(last_restartable, finished)
        state = cs.get("state") or {}
        terminated, waiting = state.get("terminated"), state.get("waiting")
        if isinstance(terminated, dict) and _int(terminated.get("exitCode")) == 0:
            continue
        if restartable and cs.get("started"):
            if cs.get("ready"):
                ready += 1
            continue
        if isinstance(terminated, dict):
            if terminated.get("reason"):
                reason = "Init:" + terminated["reason"]
            elif terminated.get("signal"):
                reason = f"Init:Signal:{terminated['signal']}"
            else:
                reason = f"Init:ExitCode:{_int(terminated.get('exitCode'))}"
        elif isinstance(waiting, dict) and waiting.get("reason") and waiting["reason"] != "PodInitializing":
            reason = "Init:" + waiting["reason"]
        else:
            reason = f"Init:{i}/{len(init_specs)}"
        initializing = True
        break

    initialized = any(c.get("type") == "Initialized" and c.get("status") == "True"
                      for c in _list(status.get("conditions")))
    if not initializing or initialized:
        restarts = restartable_restarts
        last_restart = last_restartable
        has_running = False
        for cs in reversed(_list(status.get("containerStatuses"))):
            restarts += _int(cs.get("restartCount"))
            finished = ((cs.get("lastState") or {}).get("terminated") or {}).get("finishedAt")
            last_restart = _latest(last_restart, finished)
            state = cs.get("state") or {}
            waiting, terminated = state.get("waiting"), state.get("terminated")
            if isinstance(waiting, dict) and waiting.get("reason"):
                reason = waiting["reason"]
            elif isinstance(terminated, dict) and terminated.get("reason"):
                reason = terminated["reason"]
            elif isinstance(terminated, dict):
                reason = (f"Signal:{terminated['signal']}" if terminated.get("signal")
                          else f"ExitCode:{_int(terminated.get('exitCode'))}")
            elif cs.get("ready") and isinstance(state.get("running"), dict):
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            pod_ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                            for c in _list(status.get("conditions")))
            reason = "Running" if pod_ready else "NotReady"

    deleting = _meta(pod).get("deletionTimestamp")
    if deleting and status.get("reason") == "NodeLost":
        reason = "Unknown"
    elif deleting and phase not in ("Succeeded", "Failed"):
        reason = "Terminating"
    return f"{ready}/{total}", reason, restarts, last_restart


def _pod_row(pod: Obj, now: dt.datetime) -> tuple[list[Any], list[Obj]]:
    ready, reason, restarts, last_restart = pod_status(pod)
    restarts_text = str(restarts)
    if restarts and last_restart:
        restarts_text = f"{restarts} ({since(last_restart, now)} ago)"
    spec, status = _spec(pod), _status(pod)
    ips = _list(status.get("podIPs"))
    ip = (ips[0].get("ip") if ips else status.get("podIP")) or "<none>"
    gates = _list(spec.get("readinessGates"))
    gates_text = "<none>"
    if gates:
        conditions = {c.get("type"): c.get("status") for c in _list(status.get("conditions"))}
        gates_text = f"{sum(1 for g in gates if conditions.get(g.get('conditionType')) == 'True')}/{len(gates)}"
    cells = [_meta(pod).get("name", ""), ready, reason, restarts_text, _age(pod, now), ip,
             spec.get("nodeName") or "<none>", status.get("nominatedNodeName") or "<none>", gates_text]
    conditions = []
    if status.get("phase") == "Succeeded":
        conditions = [{"type": "Completed", "status": "True", "reason": "Succeeded",
                       "message": "The pod has completed successfully."}]
    elif status.get("phase") == "Failed":
        conditions = [{"type": "Completed", "status": "True", "reason": "Failed", "message": "The pod failed."}]
    return cells, conditions


# --- workloads ------------------------------------------------------------------------------------------------

_DEPLOYMENT_COLUMNS = [
    _NAME, _c("Ready", "Number of the pod with ready state"),
    _c("Up-to-date", "Total number of pods targeted by this deployment that have the desired template."),
    _c("Available", "Total number of available pods targeted by this deployment."),
    _AGE, _CONTAINERS, _IMAGES, _SELECTOR,
]


def _deployment_row(obj: Obj, now: dt.datetime) -> tuple[list[Any], list[Obj]]:
    spec, status = _spec(obj), _status(obj)
    names, images = _containers(_template_spec(spec))
    return [_meta(obj).get("name", ""), f"{_int(status.get('readyReplicas'))}/{_int(spec.get('replicas'))}",
            _int(status.get("updatedReplicas")), _int(status.get("availableReplicas")), _age(obj, now),
            names, images, selector_string(spec.get("selector"))], []


_REPLICA_SET_COLUMNS = [
    _NAME, _c("Desired", "Number of desired pods.", "integer"),
    _c("Current", "Number of pods currently running.", "integer"),
    _c("Ready", "Number of pods with a Ready condition.", "integer"),
    _AGE, _CONTAINERS, _IMAGES, _SELECTOR,
]


def _replica_set_row(obj: Obj, now: dt.datetime) -> tuple[list[Any], list[Obj]]:
    spec, status = _spec(obj), _status(obj)
    names, images = _containers(_template_spec(spec))
    selector = spec.get("selector")
    selector_text = format_labels(selector) if obj.get("kind") == "ReplicationController" else \
        format_selector(selector)
    return [_meta(obj).get("name", ""), _int(spec.get("replicas")), _int(status.get("replicas")),
            _int(status.get("readyReplicas")), _age(obj, now), names, images, selector_text], []


_STATEFUL_SET_COLUMNS = [_NAME, _c("Ready", "Number of the pod with ready state"), _AGE, _CONTAINERS, _IMAGES]


def _stateful_set_row(obj: Obj, now: dt.datetime) -> tuple[list[Any], list[Obj]]:
    spec, status = _spec(obj), _status(obj)
    names, images = _containers(_template_spec(spec))
    return [_meta(obj).get("name", ""), f"{_int(status.get('readyReplicas'))}/{_int(spec.get('replicas'))}",
            _age(obj, now), names, images], []


_DAEMON_SET_COLUMNS = [
    _NAME, _c("Desired", "Number of nodes that should run the daemon pod.", "integer"),
    _c("Current", "Number of nodes running at least one daemon pod.", "integer"),
    _c("Ready", "Number of nodes with a ready daemon pod.", "integer"),
    _c("Up-to-date", "Number of nodes running the updated daemon pod.", "integer"),
    _c("Available", "Number of nodes with an available daemon pod.", "integer"),
    _c("Node Selector", "Node labels the pods require."), _AGE, _CONTAINERS, _IMAGES, _SELECTOR,
]


def _daemon_set_row(obj: Obj, now: dt.datetime) -> tuple[list[Any], list[Obj]]:
    spec, status = _spec(obj), _status(obj)
    pod_spec = _template_spec(spec)
    names, images = _containers(pod_spec)
    return [_meta(obj).get("name", ""), _int(status.get("desiredNumberScheduled")),
            _int(status.get("currentNumberScheduled")), _int(status.get("numberReady")),
            _int(status.get("updatedNumberScheduled")), _int(status.get("numberAvailable")),
            format_labels(pod_spec.get("nodeSelector")), _age(obj, now), names, images,
            format_selector(spec.get("selector"))], []


_JOB_COLUMNS = [
    _NAME, _c("Status", "Status of the job."), _c("Completions", "Succeeded pods out of the completions wanted."),
    _c("Duration", "Time required to complete the job."), _AGE, _CONTAINERS, _IMAGES, _SELECTOR,
]


def _condition_true(status: Obj, kind: str) -> bool:
    for condition in _list(status.get("conditions")):
        if condition.get("type") == kind:
            return condition.get("status") == "True"
    return False


def _job_row(obj: Obj, now: dt.datetime) -> tuple[list[Any], list[Obj]]:
    spec, status = _spec(obj), _status(obj)
    succeeded = _int(status.get("succeeded"))
    if spec.get("completions") is not None:
        completions = f"{succeeded}/{_int(spec.get('completions'))}"
    elif _int(spec.get("parallelism")) > 1:
        completions = f"{succeeded}/1 of {_int(spec.get('parallelism'))}"
    else:
        completions = f"{succeeded}/1"
    start, end = status.get("startTime"), status.get("completionTime")
    duration = "" if not start else (between(start, end) if end else since(start, now))
    if _condition_true(status, "Complete"):
        state = "Complete"
    elif _condition_true(status, "Failed"):
        state = "Failed"
    elif _meta(obj).get("deletionTimestamp"):
        state = "Terminating"
    elif _condition_true(status, "Suspended"):
        state = "Suspended"
    elif _condition_true(status, "FailureTarget"):
        state = "FailureTarget"
    else:
        state = "Running"
    names, images = _containers(_template_spec(spec))
    return [_meta(obj).get("name", ""), state, completions, duration, _age(obj, now), names, images,
            format_selector(spec.get("selector"))], []


_CRON_JOB_COLUMNS = [
    _NAME, _c("Schedule", "The schedule in Cron format."), _c("Timezone", "The time zone of the schedule."),
    _c("Suspend", "Whether new jobs are suspended.", "boolean"), _c("Active", "Number of running jobs.", "integer"),
    _c("Last Schedule", "When a job was last scheduled."), _AGE, _CONTAINERS, _IMAGES, _SELECTOR,
]


def _cron_job_row(obj: Obj, now: dt.datetime) -> tuple[list[Any], list[Obj]]:
    spec, status = _spec(obj), _status(obj)
    last = status.get("lastScheduleTime")
    job_spec = ((spec.get("jobTemplate") or {}).get("spec") or {}) if isinstance(spec.get("jobTemplate"), dict) \
        else {}
    names, images = _containers(_template_spec(job_spec))
    return [_meta(obj).get("name", ""), spec.get("schedule", ""), spec.get("timeZone") or "<none>",
            _bool_ptr(spec.get("suspend")), len(_list(status.get("active"))),
            since(last, now) if last else "<none>", _age(obj, now), names, images,
            format_selector(job_spec.get("selector"))], []


def _bool_ptr(value: Any) -> str:
    if value is None:
        return "<unset>"
    return "True" if value else "False"


# --- services and networking ---------------------------------------------------------------------------------

_SERVICE_COLUMNS = [
    _NAME, _c("Type", "How the service is exposed."), _c("Cluster-IP", "The service's virtual IP."),
    _c("External-IP", "Addresses outside the cluster that reach the service."),
    _c("Port(s)", "The ports the service exposes."), _AGE, _c("Selector", "Pods the service sends traffic to.",
                                                               priority=1),
]


def _lb_addresses(status: Obj) -> list[str]:
    out = set()
    for ingress in _list((status.get("loadBalancer") or {}).get("ingress")):
        if ingress.get("ip"):
            out.add(ingress["ip"])
        elif ingress.get("hostname"):
            out.add(ingress["hostname"])
    return sorted(out)


def _service_row(obj: Obj, now: dt.datetime) -> tuple[list[Any], list[Obj]]:
    spec, status = _spec(obj), _status(obj)
    kind = spec.get("type") or "ClusterIP"
    ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    external_ips = spec.get("externalIPs") or []
    if kind in ("ClusterIP", "NodePort"):
        external = ",".join(external_ips) or "<none>"
    elif kind == "LoadBalancer":
        lb = _lb_addresses(status)
        external = ",".join(lb + external_ips) or "<pending>"
    elif kind == "ExternalName":
        external = spec.get("externalName", "")
    else:
        external = "<unknown>"
    ports = []
    for p in _list(spec.get("ports")):
        protocol = p.get("protocol") or "TCP"
        node_port = _int(p.get("nodePort"))
        ports.append(f"{p.get('port')}:{node_port}/{protocol}" if node_port > 0 else f"{p.get('port')}/{protocol}")
    return [_meta(obj).get("name", ""), kind, ips[0] if ips else "<none>", external, ",".join(ports) or "<none>",
            _age(obj, now), format_labels(spec.get("selector"))], []


_ENDPOINTS_COLUMNS = [_NAME, _c("Endpoints", "Addresses and ports the service routes to."), _AGE]


def _endpoints_row(obj: Obj, now: dt.datetime) -> tuple[list[Any], list[Obj]]:
    subsets = _list(obj.get("subsets"))
    items: list[str] = []
    count = 0
    for subset in subsets:
        addresses = [a.get("ip", "") for a in _list(subset.get("addresses"))]
        ports = _list(subset.get("ports"))
        if not ports:
            count += len(addresses)
            items += addresses
            continue
        for port in ports:
            count += len(addresses)
            for ip in addresses:
                items.append(f"[{ip}]:{port.get('port')}" if ":" in ip else f"{ip}:{port.get('port')}")
    text = "<none>" if not subsets else _more(items, count, 3, "")
    return [_meta(obj).get("name", ""), text, _age(obj, now)], []


_ENDPOINT_SLICE_COLUMNS = [
    _NAME, _c("AddressType", "The type of addresses in the slice."), _c("Ports", "Ports of the slice."),
    _c("Endpoints", "Addresses of the slice."), _AGE,
]


def _endpoint_slice_row(obj: Obj, now: dt.datetime) -> tuple[list[Any], list[Obj]]:
    ports = [str(p["port"]) if p.get("port") is not None else (p.get("name") or "*") for p in _list(obj.get("ports"))]
    addresses = [a for e in _list(obj.get("endpoints")) for a in (e.get("addresses") or [])]
    return [_meta(obj).get("name", ""), obj.get("addressType", ""), _more(ports, len(ports), 3),
            _more(addresses, len(addresses), 3), _age(obj, now)], []


_INGRESS_COLUMNS = [
    _NAME, _c("Class", "The IngressClass that handles this ingress."),
    _c("Hosts", "Hosts that requests are matched against."), _c("Address", "Load-balancer addresses."),
    _c("Ports", "Ports the ingress listens on."), _AGE,
]


def _ingress_row(obj: Obj, now: dt.datetime) -> tuple[list[Any], list[Obj]]:
    spec, status = _spec(obj), _status(obj)
    rules = _list(spec.get("rules"))
    hosts = [r["host"] for r in rules if r.get("host")]
    if not hosts:
        host_text = "*"
    elif len(rules) > 3:
        host_text = ",".join(hosts[:3]) + f" + {len(rules) - 3} more..."
    else:
        host_text = ",".join(hosts)
    address = ",".join(_lb_addresses(status))
    return [_meta(obj).get("name", ""), spec.get("ingressClassName") or "<none>", host_text, address,
            "80, 443" if spec.get("tls") else "80", _age(obj, now)], []


_INGRESS_CLASS_COLUMNS = [_NAME, _c("Controller", "The controller that handles this class."),
                          _c("Parameters", "Resource with additional parameters."), _AGE]


def _ingress_class_row(obj: Obj, now: dt.datetime) -> tuple[list[Any], list[Obj]]:
    spec = _spec(obj)
    params = spec.get("parameters")
    text = "<none>"
    if isinstance(params, dict):
        text = str(params.get("kind", "")) + (f".{params['apiGroup']}" if params.get("apiGroup") else "") + \
            "/" + str(params.get("name", ""))
    return [_meta(obj).get("name", ""), spec.get("controller", ""), text, _age(obj, now)], []


_NETWORK_POLICY_COLUMNS = [_NAME, _c("Pod-Selector", "Pods the policy applies to."), _AGE]


def _network_policy_row(obj: Obj, now: dt.datetime) -> tuple[list[Any], list[Obj]]:
    return [_meta(obj).get("name", ""), format_selector(_spec(obj).get("podSelector")), _age(obj, now)], []


# --- cluster and config --------------------------------------------------------------------------------------

_NODE_COLUMNS = [
    _NAME, _c("Status", "The status of the node"), _c("Roles", "The roles of the node"), _AGE,
    _c("Version", "Kubelet version reported by the node."),
    _c("Internal-IP", "The node's internal address.", priority=1),
    _c("External-IP", "The node's external address.", priority=1),
    _c("OS-Image", "Operating system image reported by the node.", priority=1),
    _c("Kernel-Version", "Kernel version reported by the node.", priority=1),
    _c("Container-Runtime", "Container runtime version reported by the node.", priority=1),
]


def _node_row(obj: Obj, now: dt.datetime) -> tuple[list[Any], list[Obj]]:
    spec, status = _spec(obj), _status(obj)
    states = []
    for condition in _list(status.get("conditions")):
        if condition.get("type") == "Ready":
            states = ["Ready" if condition.get("status") == "True" else "NotReady"]
    if not states:
        states = ["Unknown"]
    if spec.get("unschedulable"):
        states.append("SchedulingDisabled")
    roles = set()
    for key, value in (_meta(obj).get("labels") or {}).items():
        if key.startswith("node-role.kubernetes.io/") and key[len("node-role.kubernetes.io/"):]:
            roles.add(key[len("node-role.kubernetes.io/"):])
        elif key == "kubernetes.io/role" and value:
            roles.add(value)
    info = status.get("nodeInfo") or {}

    def address(kind: str) -> str:
        for a in _list(status.get("addresses")):
            if a.get("type") == kind:
                return a.get("address", "")
        return "<none>"

    return [_meta(obj).get("name", ""), ",".join(states), ",".join(sorted(roles)) or "<none>", _age(obj, now),
            info.get("kubeletVersion", ""), address("InternalIP"), address("ExternalIP"),
            info.get("osImage") or "<unknown>", info.get("kernelVersion") or "<unknown>",
            info.get("containerRuntimeVersion") or "<unknown>"], []


_NAMESPACE_COLUMNS = [_NAME, _c("Status", "The status of the namespace"), _AGE]


def _namespace_row(obj: Obj, now: dt.datetime) -> tuple[list[Any], list[Obj]]:
    return [_meta(obj).get("name", ""), _status(obj).get("phase", ""), _age(obj, now)], []


_CONFIG_MAP_COLUMNS = [_NAME, _c("Data", "Number of keys in data and binaryData."), _AGE]


def _config_map_row(obj: Obj, now: dt.datetime) -> tuple[list[Any], list[Obj]]:
    return [_meta(obj).get("name", ""), len(obj.get("data") or {}) + len(obj.get("binaryData") or {}),
            _age(obj, now)], []


_SECRET_COLUMNS = [_NAME, _c("Type", "The type of the secret."), _c("Data", "Number of keys in data."), _AGE]


def _secret_row(obj: Obj, now: dt.datetime) -> tuple[list[Any], list[Obj]]:
    return [_meta(obj).get("name", ""), obj.get("type", ""), len(obj.get("data") or {}), _age(obj, now)], []


_SERVICE_ACCOUNT_COLUMNS = [_NAME, _c("Secrets", "Number of secrets the service account lists."), _AGE]


def _service_account_row(obj: Obj, now: dt.datetime) -> tuple[list[Any], list[Obj]]:
    return [_meta(obj).get("name", ""), len(_list(obj.get("secrets"))), _age(obj, now)], []


_EVENT_COLUMNS = [
    _c("Last Seen", "When the event was last seen."), _c("Type", "Normal or Warning."),
    _c("Reason", "Why the event happened, in one word."), _c("Object", "The object the event is about."),
    _c("Subobject", "The part of the object the event is about.", priority=1),
    _c("Source", "The component that reported the event.", priority=1), _c("Message", "What happened."),
    _c("First Seen", "When the event was first seen.", priority=1),
    _c("Count", "How often the event happened.", priority=1),
    _c("Name", "The event's name.", priority=1, fmt="name"),
]


def _event_row(obj: Obj, now: dt.datetime) -> tuple[list[Any], list[Obj]]:
    first = obj.get("firstTimestamp") or obj.get("deprecatedFirstTimestamp") or obj.get("eventTime")
    first_text = since(first, now)
    last = obj.get("lastTimestamp") or obj.get("deprecatedLastTimestamp")
    last_text = since(last, now) if last else first_text
    count = _int(obj.get("count") or obj.get("deprecatedCount"))
    series = obj.get("series")
    if isinstance(series, dict):
        last_text = since(series.get("lastObservedTime"), now)
        count = _int(series.get("count"))
    elif count == 0:
        count = 1
    involved = obj.get("involvedObject") or obj.get("regarding") or {}
    kind = str(involved.get("kind", "")).lower()
    target = f"{kind}/{involved['name']}" if involved.get("name") else kind
    source = obj.get("source") or obj.get("deprecatedSource") or {}
    component = source.get("component") or obj.get("reportingController") or obj.get("reportingComponent") or ""
    host = source.get("host") or obj.get("reportingInstance") or ""
    source_text = f"{component}, {host}" if host else component
    message = str(obj.get("message") or obj.get("note") or "").strip()
    return [last_text, obj.get("type", ""), obj.get("reason", ""), target, involved.get("fieldPath", ""),
            source_text, message, first_text, count, _meta(obj).get("name", "")], []


_ACCESS_MODES = (("ReadWriteOnce", "RWO"), ("ReadOnlyMany", "ROX"), ("ReadWriteMany", "RWX"),
                 ("ReadWriteOncePod", "RWOP"))


def _access_modes(modes: Any) -> str:
    modes = modes or []
    return ",".join(short for long, short in _ACCESS_MODES if long in modes)


_PV_COLUMNS = [
    _NAME, _c("Capacity", "Storage capacity of the volume."), _c("Access Modes", "How the volume can be mounted."),
    _c("Reclaim Policy", "What happens to the volume when released."), _c("Status", "Phase of the volume."),
    _c("Claim", "The claim bound to the volume."), _c("StorageClass", "StorageClass of the pv"),
    _c("VolumeAttributesClass", "VolumeAttributesClass of the pv"), _c("Reason", "Why the volume is in its phase."),
    _AGE, _c("VolumeMode", "Filesystem or Block.", priority=1),
]


def _storage_class_of(obj: Obj) -> str:
    annotations = _meta(obj).get("annotations") or {}
    return annotations.get("volume.beta.kubernetes.io/storage-class") or _spec(obj).get("storageClassName") or ""


def _pv_row(obj: Obj, now: dt.datetime) -> tuple[list[Any], list[Obj]]:
    spec, status = _spec(obj), _status(obj)
    claim = spec.get("claimRef")
    claim_text = f"{claim.get('namespace', '')}/{claim.get('name', '')}" if isinstance(claim, dict) else ""
    phase = "Terminating" if _meta(obj).get("deletionTimestamp") else status.get("phase", "")
    return [_meta(obj).get("name", ""), str((spec.get("capacity") or {}).get("storage", "0")),
            _access_modes(spec.get("accessModes")), spec.get("persistentVolumeReclaimPolicy", ""), phase,
            claim_text, _storage_class_of(obj), spec.get("volumeAttributesClassName") or "<unset>",
            status.get("reason", ""), _age(obj, now), spec.get("volumeMode") or "<unset>"], []


_PVC_COLUMNS = [
    _NAME, _c("Status", "Phase of the claim."), _c("Volume", "The volume bound to the claim."),
    _c("Capacity", "Capacity of the bound volume."), _c("Access Modes", "How the volume can be mounted."),
    _c("StorageClass", "StorageClass of the pvc"), _c("VolumeAttributesClass", "VolumeAttributesClass of the pvc"),
    _AGE, _c("VolumeMode", "Filesystem or Block.", priority=1),
]


def _pvc_row(obj: Obj, now: dt.datetime) -> tuple[list[Any], list[Obj]]:
    spec, status = _spec(obj), _status(obj)
    phase = "Terminating" if _meta(obj).get("deletionTimestamp") else status.get("phase", "")
    capacity = modes = ""
    if spec.get("volumeName"):
        capacity = str((status.get("capacity") or {}).get("storage", "0"))
        modes = _access_modes(status.get("accessModes"))
    return [_meta(obj).get("name", ""), phase, spec.get("volumeName", ""), capacity, modes, _storage_class_of(obj),
            spec.get("volumeAttributesClassName") or "<unset>", _age(obj, now),
            spec.get("volumeMode") or "<unset>"], []


_QUOTA_COLUMNS = [_NAME, _c("Request", "Used and hard request quotas."), _c("Limit", "Used and hard limit quotas."),
                  _AGE]


def _quota_row(obj: Obj, now: dt.datetime) -> tuple[list[Any], list[Obj]]:
    status = _status(obj)
    hard, used = status.get("hard") or {}, status.get("used") or {}
    requests, limits = [], []
    for name in sorted(hard):
        text = f"{name}: {used.get(name, '0')}/{hard[name]}"
        (limits if name.split(".")[0] == "limits" and "." in name else requests).append(text)
    return [_meta(obj).get("name", ""), ", ".join(requests), ", ".join(limits), _age(obj, now)], []


# --- other groups ------------------------------------------------------------------------------------------------

_HPA_COLUMNS = [
    _NAME, _c("Reference", "The scaled object."), _c("Targets", "Current and target metric values."),
    _c("MinPods", "Lower limit of replicas."), _c("MaxPods", "Upper limit of replicas."),
    _c("Replicas", "Current number of replicas."), _AGE,
]


def _hpa_targets(spec: Obj, status: Obj) -> str:
    if "metrics" not in spec and "targetCPUUtilizationPercentage" in spec:
        target = spec.get("targetCPUUtilizationPercentage")
        current = status.get("currentCPUUtilizationPercentage")
        current_text = f"{current}%" if current is not None else "<unknown>"
        return f"cpu: {current_text}/{target}%" if target is not None else f"cpu: {current_text}/<auto>"
    metrics = _list(spec.get("metrics"))
    if not metrics:
        return "<none>"
    statuses = _list(status.get("currentMetrics"))
    items = []
    for i, metric in enumerate(metrics):
        kind = metric.get("type")
        st = statuses[i] if i < len(statuses) else {}
        key = {"Resource": "resource", "ContainerResource": "containerResource", "Pods": "pods",
               "Object": "object", "External": "external"}.get(str(kind))
        source = metric.get(key) or {} if key else {}
        target = source.get("target") or {}
        current = ((st.get(key) or {}).get("current") or {}) if key else {}
        if kind in ("Resource", "ContainerResource"):
            name = source.get("name", "")
            if target.get("averageValue") is not None:
                items.append(f"{name}: {current.get('averageValue', '<unknown>')}/{target['averageValue']}")
            else:
                cur = f"{current['averageUtilization']}%" if current.get("averageUtilization") is not None \
                    else "<unknown>"
                tgt = f"{target['averageUtilization']}%" if target.get("averageUtilization") is not None \
                    else "<auto>"
                items.append(f"{name}: {cur}/{tgt}")
        elif kind == "Pods":
            items.append(f"{current.get('averageValue', '<unknown>')}/{target.get('averageValue', '')}")
        elif kind in ("Object", "External"):
            if target.get("averageValue") is not None:
                items.append(f"{current.get('averageValue', '<unknown>')}/{target['averageValue']} (avg)")
            else:
                items.append(f"{current.get('value', '<unknown>')}/{target.get('value', '')}")
        else:
            items.append("<unknown type>")
    if len(items) > 2:
        return ", ".join(items[:2]) + f" + {len(items) - 2} more..."
    return ", ".join(items)


def _hpa_row(obj: Obj, now: dt.datetime) -> tuple[list[Any], list[Obj]]:
    spec, status = _spec(obj), _status(obj)
    ref = spec.get("scaleTargetRef") or {}
    low = spec.get("minReplicas")
    return [_meta(obj).get("name", ""), f"{ref.get('kind', '')}/{ref.get('name', '')}", _hpa_targets(spec, status),
            str(low) if low is not None else "<unset>", _int(spec.get("maxReplicas")),
            _int(status.get("currentReplicas")), _age(obj, now)], []


_BINDING_COLUMNS = [
    _NAME, _c("Role", "The role the binding grants."), _AGE,
    _c("Users", "Users in the binding", priority=1), _c("Groups", "Groups in the binding", priority=1),
    _c("ServiceAccounts", "ServiceAccounts in the binding", priority=1),
]


def _binding_row(obj: Obj, now: dt.datetime) -> tuple[list[Any], list[Obj]]:
    ref = obj.get("roleRef") or {}
    users, groups, sas = [], [], []
    for subject in _list(obj.get("subjects")):
        kind = subject.get("kind")
        if kind == "User":
            users.append(subject.get("name", ""))
        elif kind == "Group":
            groups.append(subject.get("name", ""))
        elif kind == "ServiceAccount":
            sas.append(f"{subject.get('namespace', '')}/{subject.get('name', '')}")
    return [_meta(obj).get("name", ""), f"{ref.get('kind', '')}/{ref.get('name', '')}", _age(obj, now),
            ", ".join(users), ", ".join(groups), ", ".join(sas)], []


_CSR_COLUMNS = [
    _NAME, _AGE, _c("SignerName", "Who is asked to sign."), _c("Requestor", "Who asked."),
    _c("RequestedDuration", "The validity the requestor asked for."), _c("Condition", "Approval state."),
]


def _csr_row(obj: Obj, now: dt.datetime) -> tuple[list[Any], list[Obj]]:
    spec, status = _spec(obj), _status(obj)
    kinds = {c.get("type") for c in _list(status.get("conditions"))}
    state = "Denied" if "Denied" in kinds else "Approved" if "Approved" in kinds else "Pending"
    if "Failed" in kinds:
        state += ",Failed"
    if status.get("certificate"):
        state += ",Issued"
    seconds = spec.get("expirationSeconds")
    return [_meta(obj).get("name", ""), _age(obj, now), spec.get("signerName") or "<none>", spec.get("username", ""),
            human_duration(seconds) if isinstance(seconds, int) else "<none>", state], []


_LEASE_COLUMNS = [_NAME, _c("Holder", "Who holds the lease."), _AGE]


def _lease_row(obj: Obj, now: dt.datetime) -> tuple[list[Any], list[Obj]]:
    return [_meta(obj).get("name", ""), _spec(obj).get("holderIdentity") or "", _age(obj, now)], []


_PRIORITY_CLASS_COLUMNS = [
    _NAME, _c("Value", "The priority of pods in this class.", "integer"),
    _c("Global-Default", "Whether pods without a class get this one.", "boolean"), _AGE,
    _c("PreemptionPolicy", "Whether pods of this class preempt others.", priority=1),
]


def _priority_class_row(obj: Obj, now: dt.datetime) -> tuple[list[Any], list[Obj]]:
    return [_meta(obj).get("name", ""), _int(obj.get("value")), bool(obj.get("globalDefault")), _age(obj, now),
            obj.get("preemptionPolicy") or ""], []


_STORAGE_CLASS_COLUMNS = [
    _NAME, _c("Provisioner", "The volume plugin that provisions volumes."),
    _c("ReclaimPolicy", "What happens to released volumes."), _c("VolumeBindingMode", "When volumes are bound."),
    _c("AllowVolumeExpansion", "Whether volumes can grow."), _AGE,
]


def _storage_class_row(obj: Obj, now: dt.datetime) -> tuple[list[Any], list[Obj]]:
    annotations = _meta(obj).get("annotations") or {}
    name = _meta(obj).get("name", "")
    if "true" in (annotations.get("storageclass.kubernetes.io/is-default-class"),
                  annotations.get("storageclass.beta.kubernetes.io/is-default-class")):
        name += " (default)"
    return [name, obj.get("provisioner", ""), obj.get("reclaimPolicy") or "Delete",
            obj.get("volumeBindingMode") or "Immediate", bool(obj.get("allowVolumeExpansion")),
            _age(obj, now)], []


_PDB_COLUMNS = [
    _NAME, _c("Min Available", "The minimum number of pods that must be available."),
    _c("Max Unavailable", "The maximum number of pods that may be unavailable."),
    _c("Allowed Disruptions", "Calculated number of pods that may be disrupted at this time.", "integer"), _AGE,
]


def _pdb_row(obj: Obj, now: dt.datetime) -> tuple[list[Any], list[Obj]]:
    spec = _spec(obj)
    low, high = spec.get("minAvailable"), spec.get("maxUnavailable")
    return [_meta(obj).get("name", ""), str(low) if low is not None else "N/A",
            str(high) if high is not None else "N/A", _int(_status(obj).get("disruptionsAllowed")),
            _age(obj, now)], []


_RUNTIME_CLASS_COLUMNS = [_NAME, _c("Handler", "The runtime handler."), _AGE]


def _runtime_class_row(obj: Obj, now: dt.datetime) -> tuple[list[Any], list[Obj]]:
    return [_meta(obj).get("name", ""), obj.get("handler", ""), _age(obj, now)], []


_REVISION_COLUMNS = [_NAME, _c("Controller", "Controller of the object"), _c("Revision", "The revision number."),
                     _AGE]


def _revision_row(obj: Obj, now: dt.datetime) -> tuple[list[Any], list[Obj]]:
    controller = "<none>"
    for ref in _list(_meta(obj).get("ownerReferences")):
        if ref.get("controller"):
            group = str(ref.get("apiVersion", "")).rpartition("/")[0]
            kind = str(ref.get("kind", "")).lower() + (f".{group}" if group else "")
            controller = f"{kind}/{ref.get('name', '')}"
    return [_meta(obj).get("name", ""), controller, _int(obj.get("revision")), _age(obj, now)], []


_POD_TEMPLATE_COLUMNS = [_NAME, _c("Containers", "Names of each container in the template."),
                         _c("Images", "Images referenced by each container in the template."),
                         _c("Pod Labels", "The labels for the pod template.")]


def _pod_template_row(obj: Obj, now: dt.datetime) -> tuple[list[Any], list[Obj]]:
    template = obj.get("template") if isinstance(obj.get("template"), dict) else {}
    names, images = _containers(template.get("spec") or {})
    return [_meta(obj).get("name", ""), names, images, format_labels((template.get("metadata") or {}).get("labels"))
            ], []


_CSI_DRIVER_COLUMNS = [
    _NAME, _c("AttachRequired", "Whether volumes need attaching.", "boolean"),
    _c("PodInfoOnMount", "Whether pod information is passed on mount.", "boolean"),
    _c("StorageCapacity", "Whether capacity is tracked.", "boolean"),
    _c("TokenRequests", "Audiences of service account tokens the driver gets."),
    _c("RequiresRepublish", "Whether volumes are republished periodically.", "boolean"),
    _c("Modes", "Volume lifecycle modes."), _AGE,
]


def _csi_driver_row(obj: Obj, now: dt.datetime) -> tuple[list[Any], list[Obj]]:
    spec = _spec(obj)
    tokens = spec.get("tokenRequests")
    return [_meta(obj).get("name", ""), spec.get("attachRequired", True) is not False, bool(spec.get("podInfoOnMount")),
            bool(spec.get("storageCapacity")),
            ",".join(t.get("audience", "") for t in _list(tokens)) if tokens is not None else "<unset>",
            bool(spec.get("requiresRepublish")), ",".join(spec.get("volumeLifecycleModes") or []) or "<none>",
            _age(obj, now)], []


_CSI_NODE_COLUMNS = [_NAME, _c("Drivers", "Number of CSI drivers on the node.", "integer"), _AGE]


def _csi_node_row(obj: Obj, now: dt.datetime) -> tuple[list[Any], list[Obj]]:
    return [_meta(obj).get("name", ""), len(_list(_spec(obj).get("drivers"))), _age(obj, now)], []


_VOLUME_ATTACHMENT_COLUMNS = [
    _NAME, _c("Attacher", "The volume driver.", fmt="name"), _c("PV", "The persistent volume."),
    _c("Node", "The node the volume is attached to."), _c("Attached", "Whether it is attached.", "boolean"), _AGE,
]


def _volume_attachment_row(obj: Obj, now: dt.datetime) -> tuple[list[Any], list[Obj]]:
    spec = _spec(obj)
    return [_meta(obj).get("name", ""), spec.get("attacher", ""),
            (spec.get("source") or {}).get("persistentVolumeName") or "", spec.get("nodeName", ""),
            bool(_status(obj).get("attached")), _age(obj, now)], []


_CSI_CAPACITY_COLUMNS = [_NAME, _c("StorageClassName", "The storage class."), _c("Capacity", "Available capacity.")]


def _csi_capacity_row(obj: Obj, now: dt.datetime) -> tuple[list[Any], list[Obj]]:
    return [_meta(obj).get("name", ""), obj.get("storageClassName", ""), str(obj.get("capacity") or "<unset>")], []


_DEFAULT_COLUMNS = [_NAME, ("Created At", "date", "", 0, "Time when the object was created.")]


def _default_row(obj: Obj, now: dt.datetime) -> tuple[list[Any], list[Obj]]:
    return [_meta(obj).get("name", ""), _meta(obj).get("creationTimestamp", "")], []


Printer = Callable[[Obj, dt.datetime], tuple[list[Any], list[Obj]]]
_PRINTERS: dict[tuple[str, str], tuple[list[Column], Printer]] = {
    ("", "Pod"): (_POD_COLUMNS, _pod_row),
    ("", "PodTemplate"): (_POD_TEMPLATE_COLUMNS, _pod_template_row),
    ("", "ReplicationController"): (_REPLICA_SET_COLUMNS, _replica_set_row),
    ("", "Service"): (_SERVICE_COLUMNS, _service_row),
    ("", "Endpoints"): (_ENDPOINTS_COLUMNS, _endpoints_row),
    ("", "Node"): (_NODE_COLUMNS, _node_row),
    ("", "Namespace"): (_NAMESPACE_COLUMNS, _namespace_row),
    ("", "ConfigMap"): (_CONFIG_MAP_COLUMNS, _config_map_row),
    ("", "Secret"): (_SECRET_COLUMNS, _secret_row),
    ("", "ServiceAccount"): (_SERVICE_ACCOUNT_COLUMNS, _service_account_row),
    ("", "Event"): (_EVENT_COLUMNS, _event_row),
    ("events.k8s.io", "Event"): (_EVENT_COLUMNS, _event_row),
    ("", "PersistentVolume"): (_PV_COLUMNS, _pv_row),
    ("", "PersistentVolumeClaim"): (_PVC_COLUMNS, _pvc_row),
    ("", "ResourceQuota"): (_QUOTA_COLUMNS, _quota_row),
    ("apps", "Deployment"): (_DEPLOYMENT_COLUMNS, _deployment_row),
    ("apps", "ReplicaSet"): (_REPLICA_SET_COLUMNS, _replica_set_row),
    ("apps", "StatefulSet"): (_STATEFUL_SET_COLUMNS, _stateful_set_row),
    ("apps", "DaemonSet"): (_DAEMON_SET_COLUMNS, _daemon_set_row),
    ("apps", "ControllerRevision"): (_REVISION_COLUMNS, _revision_row),
    ("batch", "Job"): (_JOB_COLUMNS, _job_row),
    ("batch", "CronJob"): (_CRON_JOB_COLUMNS, _cron_job_row),
    ("autoscaling", "HorizontalPodAutoscaler"): (_HPA_COLUMNS, _hpa_row),
    ("networking.k8s.io", "Ingress"): (_INGRESS_COLUMNS, _ingress_row),
    ("networking.k8s.io", "IngressClass"): (_INGRESS_CLASS_COLUMNS, _ingress_class_row),
    ("networking.k8s.io", "NetworkPolicy"): (_NETWORK_POLICY_COLUMNS, _network_policy_row),
    ("discovery.k8s.io", "EndpointSlice"): (_ENDPOINT_SLICE_COLUMNS, _endpoint_slice_row),
    ("rbac.authorization.k8s.io", "RoleBinding"): (_BINDING_COLUMNS, _binding_row),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"): (_BINDING_COLUMNS, _binding_row),
    ("certificates.k8s.io", "CertificateSigningRequest"): (_CSR_COLUMNS, _csr_row),
    ("coordination.k8s.io", "Lease"): (_LEASE_COLUMNS, _lease_row),
    ("scheduling.k8s.io", "PriorityClass"): (_PRIORITY_CLASS_COLUMNS, _priority_class_row),
    ("storage.k8s.io", "StorageClass"): (_STORAGE_CLASS_COLUMNS, _storage_class_row),
    ("storage.k8s.io", "CSIDriver"): (_CSI_DRIVER_COLUMNS, _csi_driver_row),
    ("storage.k8s.io", "CSINode"): (_CSI_NODE_COLUMNS, _csi_node_row),
    ("storage.k8s.io", "VolumeAttachment"): (_VOLUME_ATTACHMENT_COLUMNS, _volume_attachment_row),
    ("storage.k8s.io", "CSIStorageCapacity"): (_CSI_CAPACITY_COLUMNS, _csi_capacity_row),
    ("policy", "PodDisruptionBudget"): (_PDB_COLUMNS, _pdb_row),
    ("node.k8s.io", "RuntimeClass"): (_RUNTIME_CLASS_COLUMNS, _runtime_class_row),
}
