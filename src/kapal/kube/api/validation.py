"""Object validation, with upstream's field paths, reasons and wording.

`validate(r, obj, old)` runs after defaulting and returns every problem as a Cause(field, reason, message);
the message is what upstream prints after `<field>: ` (e.g. `Invalid value: "Foo": a lowercase RFC 1123
subdomain must consist of ...`). The API server answers 422 Invalid with them. Covered: names and
generateName per kind, labels, annotations, finalizers, owner references, required fields (from the schemas),
immutable fields on update, and the rules users meet for pods and templates, workloads, services, config
maps and secrets, RBAC, priority classes, disruption budgets, ingresses, namespaces and quotas.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kapal.errors import Invalid
from kapal.kube.api import schemas
from kapal.kube.meta.quantity import parse_quantity
from kapal.kube.meta.resources import ResourceType

Obj = dict[str, Any]


@dataclass(frozen=True)
class Cause:
    field: str
    reason: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


# --- upstream's error constructors ----------------------------------------------------------------------------


def _go(value: Any) -> str:
    """A value as Go's field errors print it (%q for strings, %v for numbers, %#v-like for the rest)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
        return "map[string]string{" + ", ".join(f"{json.dumps(k)}:{json.dumps(value[k])}" for k in sorted(value)) \
            + "}"
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "[]string{" + ", ".join(json.dumps(v) for v in value) + "}"
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def required(field: str, detail: str = "") -> Cause:
    return Cause(field, "FieldValueRequired", "Required value" + (f": {detail}" if detail else ""))


def invalid(field: str, value: Any, detail: str = "") -> Cause:
    return Cause(field, "FieldValueInvalid", f"Invalid value: {_go(value)}" + (f": {detail}" if detail else ""))


def not_supported(field: str, value: Any, supported: list[str]) -> Cause:
    values = ", ".join(json.dumps(v) for v in supported)
    return Cause(field, "FieldValueNotSupported", f"Unsupported value: {_go(value)}: supported values: {values}")


def duplicate(field: str, value: Any) -> Cause:
    return Cause(field, "FieldValueDuplicate", f"Duplicate value: {_go(value)}")


def forbidden(field: str, detail: str) -> Cause:
    return Cause(field, "FieldValueForbidden", f"Forbidden: {detail}")


def not_found(field: str, value: Any) -> Cause:
    return Cause(field, "FieldValueNotFound", f"Not found: {_go(value)}")


def too_long(field: str, limit: int) -> Cause:
    return Cause(field, "FieldValueTooLong", f"Too long: may not be more than {limit} bytes")


def invalid_repr(field: str, value_repr: str, detail: str) -> Cause:
    """Invalid value for Go structs, whose `%#v` rendering the caller spells out."""
    return Cause(field, "FieldValueInvalid", f"Invalid value: {value_repr}: {detail}")


def immutable(field: str, value: Any) -> Cause:
    return invalid(field, value, "field is immutable")


# --- names ----------------------------------------------------------------------------------------------------

_DNS1123_LABEL = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN = _DNS1123_LABEL + r"(\." + _DNS1123_LABEL + ")*"
_DNS1035_LABEL = "[a-z]([-a-z0-9]*[a-z0-9])?"
_QUALIFIED_NAME = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_VALUE = "(" + _QUALIFIED_NAME + ")?"
_CONFIG_KEY = "[-._a-zA-Z0-9]+"
_ENV_VAR_NAME = "[-._a-zA-Z][-._a-zA-Z0-9]*"


def _examples(*examples: str) -> str:
    return ",  or ".join(f"'{e}'" for e in examples)


def _regex_message(what: str, regex: str, *examples: str) -> str:
    return f"{what} (e.g. {_examples(*examples)}, regex used for validation is '{regex}')"


SUBDOMAIN_MESSAGE = _regex_message(
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must "
    "start and end with an alphanumeric character", _DNS1123_SUBDOMAIN, "example.com")
LABEL_MESSAGE = _regex_message(
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and "
    "end with an alphanumeric character", _DNS1123_LABEL, "my-name", "123-abc")
DNS1035_MESSAGE = _regex_message(
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic "
    "character, and end with an alphanumeric character", _DNS1035_LABEL, "my-name", "abc-123")
QUALIFIED_NAME_MESSAGE = _regex_message(
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character", _QUALIFIED_NAME, "MyName", "my.name", "123-abc")
LABEL_VALUE_MESSAGE = _regex_message(
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must "
    "start and end with an alphanumeric character", _LABEL_VALUE, "MyValue", "my_value", "12345")
CONFIG_KEY_MESSAGE = _regex_message(
    "a valid config key must consist of alphanumeric characters, '-', '_' or '.'", _CONFIG_KEY,
    "key.name", "KEY_NAME", "key-name")
ENV_VAR_MESSAGE = _regex_message(
    "a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and "
    "must not start with a digit", _ENV_VAR_NAME, "my.env-name", "MY_ENV.NAME", "MyEnvName1")


def _max_len(limit: int) -> str:
    return f"must be no more than {limit} characters"


def is_dns1123_subdomain(value: str) -> list[str]:
    errs = []
    if len(value) > 253:
        errs.append(_max_len(253))
    if not re.fullmatch(_DNS1123_SUBDOMAIN, value):
        errs.append(SUBDOMAIN_MESSAGE)
    return errs


def is_dns1123_label(value: str) -> list[str]:
    errs = []
    if len(value) > 63:
        errs.append(_max_len(63))
    if not re.fullmatch(_DNS1123_LABEL, value):
        errs.append(LABEL_MESSAGE)
    return errs


def is_dns1035_label(value: str) -> list[str]:
    errs = []
    if len(value) > 63:
        errs.append(_max_len(63))
    if not re.fullmatch(_DNS1035_LABEL, value):
        errs.append(DNS1035_MESSAGE)
    return errs


def is_qualified_name(value: str) -> list[str]:
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            return ["prefix part must be non-empty"]
        errs = is_dns1123_subdomain(prefix)
        if errs:
            return ["prefix part " + e for e in errs]
    else:
        return ["a qualified name " + _regex_message(
            "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric "
            "character", _QUALIFIED_NAME, "MyName", "my.name", "123-abc")
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"]
    if not name:
        return ["name part must be non-empty"]
    errs = []
    if len(name) > 63:
        errs.append("name part " + _max_len(63))
    if not re.fullmatch(_QUALIFIED_NAME, name):
        errs.append(QUALIFIED_NAME_MESSAGE)
    return errs


def is_label_value(value: str) -> list[str]:
    errs = []
    if len(value) > 63:
        errs.append(_max_len(63))
    if not re.fullmatch(_LABEL_VALUE, value):
        errs.append(LABEL_VALUE_MESSAGE)
    return errs


def is_path_segment_name(value: str) -> list[str]:
    if value in (".", ".."):
        return [f"may not be '{value}'"]
    return [f"may not contain '{c}'" for c in "/%" if c in value]


def _prefix_of(fn: Callable[[str], list[str]]) -> Callable[[str, bool], list[str]]:
    """A name check that, for generateName prefixes, ignores one trailing dash (as upstream masks it)."""
    def check(value: str, prefix: bool) -> list[str]:
        if prefix and value.endswith("-"):
            value = value[:-1] + "a"
        return fn(value)
    return check


def _cron_job_name(value: str, prefix: bool) -> list[str]:
    errs = _prefix_of(is_dns1123_subdomain)(value, prefix)
    if len(value) > 52 and not prefix:
        errs.insert(0, _max_len(52))
    return errs


_SUBDOMAIN = _prefix_of(is_dns1123_subdomain)
_NAME_RULES: dict[tuple[str, str], Callable[[str, bool], list[str]]] = {
    ("", "Namespace"): _prefix_of(is_dns1123_label),
    ("", "Service"): _prefix_of(is_dns1035_label),
    ("batch", "CronJob"): _cron_job_name,
    ("rbac.authorization.k8s.io", "Role"): _prefix_of(is_path_segment_name),
    ("rbac.authorization.k8s.io", "ClusterRole"): _prefix_of(is_path_segment_name),
    ("rbac.authorization.k8s.io", "RoleBinding"): _prefix_of(is_path_segment_name),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"): _prefix_of(is_path_segment_name),
}
_UNVALIDATED_GROUPS = ("authentication.k8s.io", "authorization.k8s.io")


# --- the entry point ------------------------------------------------------------------------------------------


def validate(r: ResourceType, obj: Obj, old: Obj | None = None) -> list[Cause]:
    """Every rule `obj` breaks (after defaulting); `old` is the stored object on update."""
    if r.group in _UNVALIDATED_GROUPS or r.kind == "Binding":
        return []
    if not isinstance(obj, dict):
        return [invalid("", obj, "must be an object")]
    causes: list[Cause] = []
    causes += _object_meta(r, obj, old)
    rule = _KIND_RULES.get((r.group, r.kind))
    if rule is not None:
        causes += rule(obj, old)
    # Schema-required fields the kind's own rules did not already report, in their wording.
    reported = {c.field for c in causes}
    causes += [c for c in _required_fields(obj, schemas.for_resource(r), "", _REQUIRED_SKIP.get(r.kind, ()))
               if c.field not in reported]
    seen: set[tuple[str, str]] = set()
    out = []
    for c in causes:
        if (c.field, c.message) not in seen:
            seen.add((c.field, c.message))
            out.append(c)
    return out


def _object_meta(r: ResourceType, obj: Obj, old: Obj | None) -> list[Cause]:
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        return [required("metadata")]
    causes: list[Cause] = []
    check = _NAME_RULES.get((r.group, r.kind), _SUBDOMAIN)
    name, generate = meta.get("name"), meta.get("generateName")
    if generate:
        causes += [invalid("metadata.generateName", generate, m) for m in check(str(generate), True)]
    if not name:
        if not generate:
            causes.append(required("metadata.name", "name or generateName is required"))
    else:
        causes += [invalid("metadata.name", name, m) for m in check(str(name), False)]
    causes += validate_labels(meta.get("labels"), "metadata.labels")
    causes += _annotations(meta.get("annotations"), "metadata.annotations")
    for i, finalizer in enumerate(meta.get("finalizers") or []):
        causes += [invalid(f"metadata.finalizers[{i}]", finalizer, m) for m in is_qualified_name(str(finalizer))]
    controllers = 0
    for i, ref in enumerate(meta.get("ownerReferences") or []):
        path = f"metadata.ownerReferences[{i}]"
        if not isinstance(ref, dict):
            continue
        for key in ("apiVersion", "kind", "name", "uid"):
            if not ref.get(key):
                causes.append(invalid(f"{path}.{key}", ref.get(key) or "", f"{key} must not be empty"))
        if ref.get("controller"):
            controllers += 1
    if controllers > 1:
        causes.append(invalid("metadata.ownerReferences", meta.get("ownerReferences"),
                              "Only one reference can have Controller set to true"))
    if old is not None:
        old_meta = old.get("metadata") or {}
        for key in ("name", "namespace", "uid"):
            if old_meta.get(key) and meta.get(key) and meta.get(key) != old_meta.get(key):
                causes.append(immutable(f"metadata.{key}", meta.get(key)))
    return causes


def validate_labels(labels: Any, path: str) -> list[Cause]:
    if not isinstance(labels, dict):
        return []
    causes = []
    for key, value in labels.items():
        causes += [invalid(path, key, m) for m in is_qualified_name(str(key))]
        causes += [invalid(path, value, m) for m in is_label_value(str(value if value is not None else ""))]
    return causes


def _annotations(annotations: Any, path: str) -> list[Cause]:
    if not isinstance(annotations, dict):
        return []
    causes = []
    total = 0
    for key, value in annotations.items():
        causes += [invalid(path, key, m) for m in is_qualified_name(str(key).lower())]
        total += len(str(key)) + len(str(value if value is not None else ""))
    if total > 256 * 1024:
        causes.append(too_long(path, 256 * 1024))
    return causes


# Required fields the generic schema pass must not report (zero-valued structs upstream accepts).
_REQUIRED_SKIP = {"NetworkPolicy": (".spec.podSelector",)}


def _required_fields(value: Any, schema: dict[str, Any], path: str, skip: tuple[str, ...]) -> list[Cause]:
    """`Required value` for missing strings, objects and lists the schema requires (never under status)."""
    s = schemas.resolve(schema)
    causes: list[Cause] = []
    if isinstance(value, dict):
        props = s.get("properties")
        if props is None:
            extra = s.get("additionalProperties")
            if isinstance(extra, dict):
                for key, sub in value.items():
                    causes += _required_fields(sub, extra, f"{path}[{key}]", skip)
            return causes
        for key in s.get("required", ()):
            if value.get(key) is None and key in props and f"{path}.{key}" not in skip:
                if schemas.types(props[key]) & {"integer", "number", "boolean"}:
                    continue
                causes.append(required(f"{path}.{key}".lstrip(".")))
        for key, sub in value.items():
            if key == "status" and not path:
                continue
            if key in props:
                causes += _required_fields(sub, props[key], f"{path}.{key}", skip)
    elif isinstance(value, list) and isinstance(s.get("items"), dict):
        for i, sub in enumerate(value):
            causes += _required_fields(sub, s["items"], f"{path}[{i}]", skip)
    return causes


# --- pods -------------------------------------------------------------------------------------------------------

_RESTART_POLICIES = ["Always", "Never", "OnFailure"]
_DNS_POLICIES = ["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"]
_PULL_POLICIES = ["Always", "IfNotPresent", "Never"]
_PROTOCOLS = ["SCTP", "TCP", "UDP"]
_TERMINATION_MESSAGE_POLICIES = ["FallbackToLogsOnError", "File"]
_VOLUME_SOURCES = ("hostPath", "emptyDir", "gcePersistentDisk", "awsElasticBlockStore", "gitRepo", "secret", "nfs",
                   "iscsi", "glusterfs", "persistentVolumeClaim", "rbd", "flexVolume", "cinder", "cephfs", "flocker",
                   "downwardAPI", "fc", "azureFile", "configMap", "vsphereVolume", "quobyte", "azureDisk",
                   "photonPersistentDisk", "projected", "portworxVolume", "scaleIO", "storageos", "csi", "ephemeral",
                   "image")


def _list(value: Any) -> list[Obj]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _port_in_range(field: str, port: Any) -> list[Cause]:
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        return [invalid(field, port, "must be between 1 and 65535, inclusive")]
    return []


def _port_name(field: str, name: str) -> list[Cause]:
    errs = []
    if len(name) > 15:
        errs.append("must be no more than 15 characters")
    if not re.fullmatch("[-a-z0-9]+", name):
        errs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if not re.search("[a-z]", name):
        errs.append("must contain at least one letter (a-z)")
    if "--" in name:
        errs.append("must not contain consecutive hyphens")
    if name.startswith("-") or name.endswith("-"):
        errs.append("must not begin or end with a hyphen")
    return [invalid(field, name, e) for e in errs]


def _non_negative(field: str, value: Any) -> list[Cause]:
    if isinstance(value, int) and not isinstance(value, bool) and value < 0:
        return [invalid(field, value, "must be greater than or equal to 0")]
    return []


def validate_pod_spec(spec: Any, path: str, restart_policies: list[str] | None = None) -> list[Cause]:
    if not isinstance(spec, dict):
        return [required(path)]
    causes: list[Cause] = []
    volumes: set[str] = set()
    for i, v in enumerate(_list(spec.get("volumes"))):
        vpath = f"{path}.volumes[{i}]"
        name = v.get("name")
        if name:
            causes += [invalid(f"{vpath}.name", name, m) for m in is_dns1123_label(str(name))]
            if name in volumes:
                causes.append(duplicate(f"{vpath}.name", name))
            volumes.add(name)
        sources = [s for s in _VOLUME_SOURCES if v.get(s) is not None]
        if not sources:
            causes.append(required(vpath, "must specify a volume type"))
        elif len(sources) > 1:
            causes.append(forbidden(f"{vpath}.{sources[1]}", "may not specify more than 1 volume type"))
    containers = _list(spec.get("containers"))
    if not containers and spec.get("containers") is not None:
        causes.append(required(f"{path}.containers"))
    names: set[str] = set()
    for key in ("initContainers", "containers"):
        for i, c in enumerate(_list(spec.get(key))):
            causes += _container(c, f"{path}.{key}[{i}]", names, volumes)
    policy = spec.get("restartPolicy")
    allowed = restart_policies or _RESTART_POLICIES
    if policy not in allowed:
        causes.append(required(f"{path}.restartPolicy") if policy is None
                      else not_supported(f"{path}.restartPolicy", policy, allowed))
    dns = spec.get("dnsPolicy")
    if dns is not None and dns not in _DNS_POLICIES:
        causes.append(not_supported(f"{path}.dnsPolicy", dns, _DNS_POLICIES))
    causes += _non_negative(f"{path}.terminationGracePeriodSeconds", spec.get("terminationGracePeriodSeconds"))
    deadline = spec.get("activeDeadlineSeconds")
    if isinstance(deadline, int) and deadline <= 0:
        causes.append(invalid(f"{path}.activeDeadlineSeconds", deadline, "must be between 1 and 2147483647, "
                                                                          "inclusive"))
    node_selector = spec.get("nodeSelector")
    if isinstance(node_selector, dict):
        causes += validate_labels(node_selector, f"{path}.nodeSelector")
    sa = spec.get("serviceAccountName")
    if sa:
        causes += [invalid(f"{path}.serviceAccountName", sa, m) for m in is_dns1123_subdomain(str(sa))]
    hostname = spec.get("hostname")
    if hostname:
        causes += [invalid(f"{path}.hostname", hostname, m) for m in is_dns1123_label(str(hostname))]
    for i, t in enumerate(_list(spec.get("tolerations"))):
        op = t.get("operator")
        if op not in (None, "", "Equal", "Exists"):
            causes.append(not_supported(f"{path}.tolerations[{i}].operator", op, ["Equal", "Exists"]))
        effect = t.get("effect")
        if effect not in (None, "", "NoSchedule", "PreferNoSchedule", "NoExecute"):
            causes.append(not_supported(f"{path}.tolerations[{i}].effect", effect,
                                        ["NoExecute", "NoSchedule", "PreferNoSchedule"]))
    return causes


def _container(c: Obj, path: str, names: set[str], volumes: set[str]) -> list[Cause]:
    causes: list[Cause] = []
    name = c.get("name")
    if name:
        causes += [invalid(f"{path}.name", name, m) for m in is_dns1123_label(str(name))]
        if name in names:
            causes.append(duplicate(f"{path}.name", name))
        names.add(name)
    if not c.get("image") and path.split(".")[-1].startswith(("containers", "initContainers")):
        causes.append(required(f"{path}.image"))
    for key, values in (("imagePullPolicy", _PULL_POLICIES),
                        ("terminationMessagePolicy", _TERMINATION_MESSAGE_POLICIES)):
        if c.get(key) is not None and c[key] not in values:
            causes.append(not_supported(f"{path}.{key}", c[key], values))
    port_names: set[str] = set()
    for i, p in enumerate(_list(c.get("ports"))):
        ppath = f"{path}.ports[{i}]"
        if p.get("name"):
            causes += _port_name(f"{ppath}.name", str(p["name"]))
            if p["name"] in port_names:
                causes.append(duplicate(f"{ppath}.name", p["name"]))
            port_names.add(p["name"])
        if not p.get("containerPort"):
            causes.append(required(f"{ppath}.containerPort"))
        else:
            causes += _port_in_range(f"{ppath}.containerPort", p["containerPort"])
        if p.get("hostPort"):
            causes += _port_in_range(f"{ppath}.hostPort", p["hostPort"])
        if p.get("protocol") is not None and p["protocol"] not in _PROTOCOLS:
            causes.append(not_supported(f"{ppath}.protocol", p["protocol"], _PROTOCOLS))
    for i, env in enumerate(_list(c.get("env"))):
        ename = env.get("name")
        if ename and not re.fullmatch(_ENV_VAR_NAME, str(ename)):
            causes.append(invalid(f"{path}.env[{i}].name", ename, ENV_VAR_MESSAGE))
    mounts: set[str] = set()
    for i, m in enumerate(_list(c.get("volumeMounts"))):
        mpath = f"{path}.volumeMounts[{i}]"
        if m.get("name") and m["name"] not in volumes:
            causes.append(not_found(f"{mpath}.name", m["name"]))
        mount_path = m.get("mountPath")
        if mount_path:
            if mount_path in mounts:
                causes.append(invalid(f"{mpath}.mountPath", mount_path, "must be unique"))
            mounts.add(mount_path)
    causes += _resources(c.get("resources"), f"{path}.resources")
    for key in ("livenessProbe", "readinessProbe", "startupProbe"):
        probe = c.get(key)
        if isinstance(probe, dict):
            handlers = [h for h in ("exec", "httpGet", "tcpSocket", "grpc") if probe.get(h) is not None]
            if not handlers:
                causes.append(required(f"{path}.{key}", "must specify a handler type"))
            elif len(handlers) > 1:
                causes.append(forbidden(f"{path}.{key}.{handlers[1]}", "may not specify more than 1 handler type"))
            for field in ("timeoutSeconds", "periodSeconds", "successThreshold", "failureThreshold"):
                causes += _non_negative(f"{path}.{key}.{field}", probe.get(field))
            if key in ("livenessProbe", "startupProbe") and probe.get("successThreshold") not in (None, 1):
                causes.append(invalid(f"{path}.{key}.successThreshold", probe["successThreshold"], "must be 1"))
    return causes


def _resources(resources: Any, path: str) -> list[Cause]:
    if not isinstance(resources, dict):
        return []
    causes: list[Cause] = []
    parsed: dict[str, dict[str, Any]] = {}
    for key in ("limits", "requests"):
        values = resources.get(key)
        if not isinstance(values, dict):
            continue
        parsed[key] = {}
        for name, quantity in values.items():
            try:
                q = parse_quantity(quantity)
            except Invalid as e:
                causes.append(invalid(f"{path}.{key}[{name}]", quantity, str(e)))
                continue
            if q < 0:
                causes.append(invalid(f"{path}.{key}[{name}]", quantity, "must be greater than or equal to 0"))
            parsed[key][name] = q
    limits, requests = parsed.get("limits", {}), parsed.get("requests", {})
    for name, request in requests.items():
        if name in limits and request > limits[name]:
            causes.append(invalid(f"{path}.requests", resources["requests"][name],
                                  f"must be less than or equal to {name} limit of {resources['limits'][name]}"))
    return causes


def _pod(obj: Obj, old: Obj | None) -> list[Cause]:
    causes = validate_pod_spec(obj.get("spec"), "spec")
    if old is not None and isinstance(obj.get("spec"), dict) and isinstance(old.get("spec"), dict):
        causes += _pod_update(obj["spec"], old["spec"])
    return causes


def _pod_update(new: Obj, old: Obj) -> list[Cause]:
    def mutable_view(spec: Obj) -> Obj:
        view = {k: v for k, v in spec.items()
                if k not in ("activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds",
                             "ephemeralContainers", "schedulingGates")}
        for key in ("containers", "initContainers"):
            view[key] = [{k: v for k, v in c.items() if k not in ("image", "resources")} if isinstance(c, dict)
                         else c for c in spec.get(key) or []]
        return view
    if mutable_view(new) != mutable_view(old):
        return [forbidden("spec", "pod updates may not change fields other than `spec.containers[*].image`,"
                                  "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` "
                                  "(only additions to existing tolerations),`spec.terminationGracePeriodSeconds` "
                                  "(allow it to be set to 1 if it was previously negative)")]
    return []


# --- workloads ----------------------------------------------------------------------------------------------


def _selector_repr(selector: Any) -> str:
    if not isinstance(selector, dict):
        return "nil"
    labels = selector.get("matchLabels")
    exprs = selector.get("matchExpressions")
    labels_repr = _go(labels) if labels else "map[string]string(nil)"
    exprs_repr = "[]v1.LabelSelectorRequirement(nil)" if not exprs else json.dumps(exprs, separators=(",", ":"))
    return f"v1.LabelSelector{{MatchLabels:{labels_repr}, MatchExpressions:{exprs_repr}}}"


def _selector_matches(selector: Obj, labels: dict[str, str]) -> bool:
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in _list(selector.get("matchExpressions")):
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        present = key in labels
        if op == "In" and (not present or labels[key] not in values):
            return False
        if op == "NotIn" and present and labels[key] in values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
    return True


def validate_label_selector(selector: Any, path: str) -> list[Cause]:
    if not isinstance(selector, dict):
        return []
    causes = validate_labels(selector.get("matchLabels"), f"{path}.matchLabels")
    for i, expr in enumerate(_list(selector.get("matchExpressions"))):
        epath = f"{path}.matchExpressions[{i}]"
        op, values = expr.get("operator"), expr.get("values") or []
        if op in ("In", "NotIn") and not values:
            causes.append(required(f"{epath}.values", "must be specified when `operator` is 'In' or 'NotIn'"))
        elif op in ("Exists", "DoesNotExist") and values:
            causes.append(forbidden(f"{epath}.values",
                                    "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"))
        elif op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            causes.append(invalid(f"{epath}.operator", op, "not a valid selector operator"))
        if expr.get("key"):
            causes += [invalid(f"{epath}.key", expr["key"], m) for m in is_qualified_name(str(expr["key"]))]
    return causes


def _replicated(obj: Obj, old: Obj | None, kind: str, restart: list[str] | None = None,
                selector_required: bool = True) -> list[Cause]:
    """Selector/template rules shared by Deployments, ReplicaSets, StatefulSets, DaemonSets."""
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [required("spec")]
    causes: list[Cause] = []
    selector = spec.get("selector")
    template = spec.get("template") if isinstance(spec.get("template"), dict) else None
    if selector is None:
        if selector_required:
            causes.append(required("spec.selector"))
    elif isinstance(selector, dict):
        causes += validate_label_selector(selector, "spec.selector")
        if not selector.get("matchLabels") and not selector.get("matchExpressions"):
            causes.append(invalid_repr("spec.selector", _selector_repr(selector),
                                       f"empty selector is invalid for {kind}"))
        elif template is not None:
            labels = (template.get("metadata") or {}).get("labels") or {}
            if not _selector_matches(selector, labels):
                causes.append(invalid("spec.template.metadata.labels", labels,
                                      "`selector` does not match template `labels`"))
    causes += _non_negative("spec.replicas", spec.get("replicas"))
    causes += _non_negative("spec.minReadySeconds", spec.get("minReadySeconds"))
    causes += _non_negative("spec.revisionHistoryLimit", spec.get("revisionHistoryLimit"))
    if template is not None:
        causes += validate_labels((template.get("metadata") or {}).get("labels"), "spec.template.metadata.labels")
        causes += validate_pod_spec(template.get("spec"), "spec.template.spec", restart or ["Always"])
    elif kind != "replicaset" or spec.get("replicas"):
        causes.append(required("spec.template"))
    if old is not None and isinstance(old.get("spec"), dict) and old["spec"].get("selector") is not None \
            and selector != old["spec"].get("selector"):
        causes.append(invalid_repr("spec.selector", _selector_repr(selector), "field is immutable"))
    return causes


def _int_or_percent(field: str, value: Any) -> tuple[list[Cause], int | None, bool]:
    if isinstance(value, int) and not isinstance(value, bool):
        return _non_negative(field, value), value, False
    if isinstance(value, str):
        m = re.fullmatch(r"(\d+)%", value)
        if not m:
            return [invalid(field, value, "a valid percent string must be a numeric string followed by an ending "
                                          "'%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')")], \
                None, True
        pct = int(m.group(1))
        if pct > 100:
            return [invalid(field, value, "must not be greater than 100%")], pct, True
        return [], pct, True
    return [], None, False


def _deployment(obj: Obj, old: Obj | None) -> list[Cause]:
    causes = _replicated(obj, old, "deployment")
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
    strategy = spec.get("strategy") if isinstance(spec.get("strategy"), dict) else {}
    kind = strategy.get("type")
    if kind not in (None, "Recreate", "RollingUpdate"):
        causes.append(not_supported("spec.strategy.type", kind, ["Recreate", "RollingUpdate"]))
    rolling = strategy.get("rollingUpdate")
    if kind == "Recreate" and rolling is not None:
        causes.append(forbidden("spec.strategy.rollingUpdate",
                                "may not be specified when strategy `type` is 'Recreate'"))
    if kind == "RollingUpdate" and isinstance(rolling, dict):
        c1, surge, _ = _int_or_percent("spec.strategy.rollingUpdate.maxSurge", rolling.get("maxSurge"))
        c2, unavailable, pct = _int_or_percent("spec.strategy.rollingUpdate.maxUnavailable",
                                               rolling.get("maxUnavailable"))
        causes += c1 + c2
        if surge == 0 and unavailable == 0:
            causes.append(invalid("spec.strategy.rollingUpdate.maxUnavailable", rolling.get("maxUnavailable"),
                                  "may not be 0 when `maxSurge` is 0"))
    deadline, ready = spec.get("progressDeadlineSeconds"), spec.get("minReadySeconds") or 0
    if isinstance(deadline, int) and deadline <= ready:
        causes.append(invalid("spec.progressDeadlineSeconds", deadline, "must be greater than minReadySeconds"))
    return causes


def _replica_set(obj: Obj, old: Obj | None) -> list[Cause]:
    return _replicated(obj, old, "replicaset")


def _daemon_set(obj: Obj, old: Obj | None) -> list[Cause]:
    causes = _replicated(obj, old, "daemonset")
    strategy = ((obj.get("spec") or {}).get("updateStrategy") or {})
    if isinstance(strategy, dict) and strategy.get("type") not in (None, "OnDelete", "RollingUpdate"):
        causes.append(not_supported("spec.updateStrategy.type", strategy["type"], ["OnDelete", "RollingUpdate"]))
    return causes


def _stateful_set(obj: Obj, old: Obj | None) -> list[Cause]:
    causes = _replicated(obj, old, "statefulset")
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
    policy = spec.get("podManagementPolicy")
    if policy not in (None, "OrderedReady", "Parallel"):
        causes.append(not_supported("spec.podManagementPolicy", policy, ["OrderedReady", "Parallel"]))
    strategy = spec.get("updateStrategy") if isinstance(spec.get("updateStrategy"), dict) else {}
    if strategy.get("type") not in (None, "OnDelete", "RollingUpdate"):
        causes.append(not_supported("spec.updateStrategy.type", strategy["type"], ["OnDelete", "RollingUpdate"]))
    if old is not None and isinstance(old.get("spec"), dict):
        mutable = ("replicas", "ordinals", "template", "updateStrategy", "persistentVolumeClaimRetentionPolicy",
                   "minReadySeconds")
        if {k: v for k, v in spec.items() if k not in mutable} != \
                {k: v for k, v in old["spec"].items() if k not in mutable}:
            causes.append(forbidden("spec", "updates to statefulset spec for fields other than 'replicas', "
                                            "'ordinals', 'template', 'updateStrategy', "
                                            "'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are "
                                            "forbidden"))
    return causes


def _replication_controller(obj: Obj, old: Obj | None) -> list[Cause]:
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
    causes = _non_negative("spec.replicas", spec.get("replicas"))
    selector = spec.get("selector") or {}
    causes += validate_labels(selector, "spec.selector")
    template = spec.get("template")
    if isinstance(template, dict):
        labels = (template.get("metadata") or {}).get("labels") or {}
        if selector and any(labels.get(k) != v for k, v in selector.items()):
            causes.append(invalid("spec.template.metadata.labels", labels,
                                  "`selector` does not match template `labels`"))
        causes += validate_pod_spec(template.get("spec"), "spec.template.spec", ["Always"])
    return causes


def _job_spec(spec: Any, path: str, old_spec: Any = None) -> list[Cause]:
    if not isinstance(spec, dict):
        return [required(path)]
    causes: list[Cause] = []
    for key in ("parallelism", "completions", "backoffLimit", "activeDeadlineSeconds", "ttlSecondsAfterFinished"):
        causes += _non_negative(f"{path}.{key}", spec.get(key))
    mode = spec.get("completionMode")
    if mode not in (None, "NonIndexed", "Indexed"):
        causes.append(not_supported(f"{path}.completionMode", mode, ["NonIndexed", "Indexed"]))
    if mode == "Indexed" and spec.get("completions") is None:
        causes.append(required(f"{path}.completions", "when completion mode is Indexed"))
    template = spec.get("template")
    if isinstance(template, dict):
        pod_spec = template.get("spec")
        policy = pod_spec.get("restartPolicy") if isinstance(pod_spec, dict) else None
        if policy not in ("OnFailure", "Never"):
            causes.append(not_supported(f"{path}.template.spec.restartPolicy", policy, ["OnFailure", "Never"]))
        causes += [c for c in validate_pod_spec(pod_spec, f"{path}.template.spec", ["OnFailure", "Never", policy])
                   if not c.field.endswith(".restartPolicy")]
        selector = spec.get("selector")
        labels = (template.get("metadata") or {}).get("labels") or {}
        causes += validate_labels(labels, f"{path}.template.metadata.labels")
        if isinstance(selector, dict) and not _selector_matches(selector, labels):
            causes.append(invalid(f"{path}.template.metadata.labels", labels,
                                  "`selector` does not match template `labels`"))
    if isinstance(old_spec, dict):
        if old_spec.get("selector") is not None and spec.get("selector") != old_spec.get("selector"):
            causes.append(invalid_repr(f"{path}.selector", _selector_repr(spec.get("selector")),
                                       "field is immutable"))
        if spec.get("completions") != old_spec.get("completions") and spec.get("completionMode") != "Indexed":
            causes.append(immutable(f"{path}.completions", spec.get("completions")))
        if spec.get("completionMode") != old_spec.get("completionMode"):
            causes.append(immutable(f"{path}.completionMode", spec.get("completionMode")))
        if spec.get("template") != old_spec.get("template") and not old_spec.get("suspend"):
            causes.append(invalid_repr(f"{path}.template", "core.PodTemplateSpec{...}", "field is immutable"))
    return causes


def _job(obj: Obj, old: Obj | None) -> list[Cause]:
    return _job_spec(obj.get("spec"), "spec", (old or {}).get("spec") if old is not None else None)


def _cron_job(obj: Obj, old: Obj | None) -> list[Cause]:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [required("spec")]
    causes: list[Cause] = []
    schedule = spec.get("schedule")
    if isinstance(schedule, str) and schedule:
        error = _cron_error(schedule)
        if error:
            causes.append(invalid("spec.schedule", schedule, error))
        if "TZ=" in schedule or "CRON_TZ=" in schedule:
            causes.append(invalid("spec.schedule", schedule, "cannot use TZ or CRON_TZ in schedule, use timeZone "
                                                             "field instead"))
    policy = spec.get("concurrencyPolicy")
    if policy not in (None, "Allow", "Forbid", "Replace"):
        causes.append(not_supported("spec.concurrencyPolicy", policy, ["Allow", "Forbid", "Replace"]))
    for key in ("startingDeadlineSeconds", "successfulJobsHistoryLimit", "failedJobsHistoryLimit"):
        causes += _non_negative(f"spec.{key}", spec.get(key))
    zone = spec.get("timeZone")
    if isinstance(zone, str):
        causes += _time_zone(zone)
    template = spec.get("jobTemplate")
    if isinstance(template, dict):
        causes += validate_labels((template.get("metadata") or {}).get("labels"), "spec.jobTemplate.metadata.labels")
        causes += _job_spec(template.get("spec"), "spec.jobTemplate.spec")
    return causes


_CRON_MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")


def _cron_error(schedule: str) -> str | None:
    text = schedule.strip()
    if text.startswith("@"):
        if text in _CRON_MACROS or text.startswith("@every "):
            return None
        return f"unrecognized descriptor: {text}"
    fields = text.split()
    if len(fields) != 5:
        return f"expected exactly 5 fields, found {len(fields)}: [{' '.join(fields)}]"
    try:
        import croniter

        croniter.croniter(text)
    except Exception as e:  # croniter raises several error types for bad fields
        return f"failed to parse schedule: {e}"
    return None


def _time_zone(zone: str) -> list[Cause]:
    import zoneinfo

    try:
        zoneinfo.ZoneInfo(zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return [invalid("spec.timeZone", zone, "unknown time zone " + zone)]
    return []


def _hpa(obj: Obj, old: Obj | None) -> list[Cause]:
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
    causes: list[Cause] = []
    low, high = spec.get("minReplicas"), spec.get("maxReplicas")
    if isinstance(low, int) and low < 1:
        causes.append(invalid("spec.minReplicas", low, "must be greater than or equal to 1"))
    if isinstance(high, int):
        if high < 1:
            causes.append(invalid("spec.maxReplicas", high, "must be greater than 0"))
        if isinstance(low, int) and high < low:
            causes.append(invalid("spec.maxReplicas", high, "must be greater than or equal to `minReplicas`"))
    return causes


# --- core kinds -----------------------------------------------------------------------------------------------


_SERVICE_TYPES = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"]


def _service(obj: Obj, old: Obj | None) -> list[Cause]:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [required("spec")]
    causes: list[Cause] = []
    kind = spec.get("type", "ClusterIP")
    if kind not in _SERVICE_TYPES:
        causes.append(not_supported("spec.type", kind, _SERVICE_TYPES))
    ports = _list(spec.get("ports"))
    headless = spec.get("clusterIP") == "None"
    if kind == "ExternalName":
        name = spec.get("externalName")
        if not name:
            causes.append(required("spec.externalName"))
        else:
            causes += [invalid("spec.externalName", name, m) for m in is_dns1123_subdomain(str(name).rstrip("."))]
    elif not ports and not headless:
        causes.append(required("spec.ports"))
    names: set[str] = set()
    seen_ports: set[tuple[Any, Any]] = set()
    for i, p in enumerate(ports):
        path = f"spec.ports[{i}]"
        name = p.get("name")
        if len(ports) > 1 and not name:
            causes.append(required(f"{path}.name"))
        elif name:
            causes += [invalid(f"{path}.name", name, m) for m in is_dns1123_label(str(name))]
            if name in names:
                causes.append(duplicate(f"{path}.name", name))
            names.add(name)
        causes += _port_in_range(f"{path}.port", p.get("port"))
        protocol = p.get("protocol")
        if protocol is not None and protocol not in _PROTOCOLS:
            causes.append(not_supported(f"{path}.protocol", protocol, _PROTOCOLS))
        key = (p.get("port"), protocol or "TCP")
        if key in seen_ports:
            causes.append(duplicate(path, {"port": key[0], "protocol": key[1]}))
        seen_ports.add(key)
        target = p.get("targetPort")
        if isinstance(target, int) and not isinstance(target, bool):
            causes += _port_in_range(f"{path}.targetPort", target)
        elif isinstance(target, str):
            causes += _port_name(f"{path}.targetPort", target)
        node_port = p.get("nodePort")
        if node_port:
            if kind in ("ClusterIP", "ExternalName"):
                causes.append(forbidden(f"{path}.nodePort", f"may not be used when `type` is '{kind}'"))
            else:
                causes += _port_in_range(f"{path}.nodePort", node_port)
    affinity = spec.get("sessionAffinity")
    if affinity is not None and affinity not in ("ClientIP", "None"):
        causes.append(not_supported("spec.sessionAffinity", affinity, ["ClientIP", "None"]))
    selector = spec.get("selector")
    if isinstance(selector, dict):
        causes += validate_labels(selector, "spec.selector")
    if old is not None and isinstance(old.get("spec"), dict):
        old_spec = old["spec"]
        old_ips = old_spec.get("clusterIPs") or ([old_spec["clusterIP"]] if old_spec.get("clusterIP") else [])
        new_ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
        if old_ips and new_ips and old_ips[0] != new_ips[0] and kind != "ExternalName" and \
                old_spec.get("type") != "ExternalName":
            causes.append(invalid("spec.clusterIPs[0]", new_ips, "may not change once set"))
    return causes


_CONFIG_LIMIT = 1024 * 1024


def _data_keys(obj: Obj) -> list[Cause]:
    causes: list[Cause] = []
    data = obj.get("data") if isinstance(obj.get("data"), dict) else {}
    binary = obj.get("binaryData") if isinstance(obj.get("binaryData"), dict) else {}
    total = 0
    for field, values in (("data", data), ("binaryData", binary)):
        for key, value in values.items():
            errs = []
            if len(key) > 253:
                errs.append(_max_len(253))
            if not re.fullmatch(_CONFIG_KEY, key):
                errs.append(CONFIG_KEY_MESSAGE)
            if key in (".", ".."):
                errs.append(f"must not be '{key}'")
            elif key.startswith(".."):
                errs.append("must not start with '..'")
            causes += [invalid(f"{field}[{key}]", key, e) for e in errs]
            total += len(key) + len(str(value or ""))
    for key in data:
        if key in binary:
            causes.append(invalid(f"data[{key}]", key, "duplicate of key present in binaryData"))
    if total > _CONFIG_LIMIT:
        causes.append(too_long("", _CONFIG_LIMIT))
    return causes


def _immutable_data(obj: Obj, old: Obj | None) -> list[Cause]:
    if old is None or not old.get("immutable"):
        return []
    causes = []
    for key in ("data", "binaryData"):
        if obj.get(key) != old.get(key):
            causes.append(forbidden(key, "field is immutable when `immutable` is set"))
    if not obj.get("immutable"):
        causes.append(forbidden("immutable", "field is immutable when `immutable` is set"))
    return causes


def _config_map(obj: Obj, old: Obj | None) -> list[Cause]:
    return _data_keys(obj) + _immutable_data(obj, old)


_SECRET_KEYS = {
    "kubernetes.io/dockerconfigjson": (".dockerconfigjson",),
    "kubernetes.io/dockercfg": (".dockercfg",),
    "kubernetes.io/tls": ("tls.crt", "tls.key"),
    "kubernetes.io/basic-auth": (),
    "kubernetes.io/ssh-auth": ("ssh-privatekey",),
}


def _secret(obj: Obj, old: Obj | None) -> list[Cause]:
    causes = _data_keys(obj) + _immutable_data(obj, old)
    kind = obj.get("type") or "Opaque"
    data = obj.get("data") if isinstance(obj.get("data"), dict) else {}
    for key in _SECRET_KEYS.get(kind, ()):
        if key not in data:
            causes.append(required(f"data[{key}]"))
    if kind == "kubernetes.io/service-account-token":
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        if not annotations.get("kubernetes.io/service-account.name"):
            causes.append(required("metadata.annotations[kubernetes.io/service-account.name]"))
    if old is not None and (old.get("type") or "Opaque") != kind:
        causes.append(immutable("type", kind))
    return causes


def _namespace(obj: Obj, old: Obj | None) -> list[Cause]:
    causes: list[Cause] = []
    for i, finalizer in enumerate((obj.get("spec") or {}).get("finalizers") or []):
        causes += [invalid(f"spec.finalizers[{i}]", finalizer, m) for m in is_qualified_name(str(finalizer))]
    return causes


def _resource_quota(obj: Obj, old: Obj | None) -> list[Cause]:
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
    causes: list[Cause] = []
    for name, quantity in (spec.get("hard") or {}).items():
        try:
            if parse_quantity(quantity) < 0:
                causes.append(invalid(f"spec.hard[{name}]", quantity, "must be greater than or equal to 0"))
        except Invalid as e:
            causes.append(invalid(f"spec.hard[{name}]", quantity, str(e)))
    scopes = ["BestEffort", "CrossNamespacePodAffinity", "NotBestEffort", "NotTerminating", "PriorityClass",
              "Terminating", "VolumeAttributesClass"]
    for i, scope in enumerate(spec.get("scopes") or []):
        if scope not in scopes:
            causes.append(not_supported(f"spec.scopes[{i}]", scope, scopes))
    return causes


def _limit_range(obj: Obj, old: Obj | None) -> list[Cause]:
    causes: list[Cause] = []
    for i, item in enumerate(_list((obj.get("spec") or {}).get("limits"))):
        kind = item.get("type")
        kinds = ["Container", "PersistentVolumeClaim", "Pod"]
        if kind not in kinds:
            causes.append(not_supported(f"spec.limits[{i}].type", kind, kinds))
    return causes


def _persistent_volume_claim(obj: Obj, old: Obj | None) -> list[Cause]:
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
    causes: list[Cause] = []
    if not spec.get("accessModes"):
        causes.append(required("spec.accessModes", "at least 1 access mode is required"))
    modes = ["ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"]
    for mode in spec.get("accessModes") or []:
        if mode not in modes:
            causes.append(not_supported("spec.accessModes", mode, modes))
    storage = ((spec.get("resources") or {}).get("requests") or {}).get("storage")
    if storage is None:
        causes.append(required("spec.resources[storage]"))
    if old is not None and isinstance(old.get("spec"), dict):
        frozen = ("accessModes", "selector", "storageClassName", "volumeMode", "dataSource", "dataSourceRef")
        for key in frozen:
            if old["spec"].get(key) is not None and spec.get(key) != old["spec"].get(key):
                causes.append(forbidden("spec", "spec is immutable after creation except resources.requests and "
                                                "volumeAttributesClassName for bound claims"))
                break
    return causes


def _event(obj: Obj, old: Obj | None) -> list[Cause]:
    return []


# --- other groups ---------------------------------------------------------------------------------------------


def _rules(obj: Obj, namespaced: bool) -> list[Cause]:
    causes: list[Cause] = []
    for i, rule in enumerate(_list(obj.get("rules"))):
        path = f"rules[{i}]"
        if not rule.get("verbs"):
            causes.append(required(f"{path}.verbs", "verbs must contain at least one value"))
        urls = rule.get("nonResourceURLs")
        if urls:
            if namespaced:
                causes.append(invalid(f"{path}.nonResourceURLs", urls,
                                      "namespaced rules cannot apply to non-resource URLs"))
            if rule.get("apiGroups") or rule.get("resources") or rule.get("resourceNames"):
                causes.append(invalid(f"{path}.nonResourceURLs", urls,
                                      "rules cannot apply to both regular resources and non-resource URLs"))
            continue
        if not rule.get("apiGroups"):
            causes.append(required(f"{path}.apiGroups", "resource rules must supply at least one api group"))
        if not rule.get("resources"):
            causes.append(required(f"{path}.resources", "resource rules must supply at least one resource"))
    return causes


def _role(obj: Obj, old: Obj | None) -> list[Cause]:
    return _rules(obj, namespaced=True)


def _cluster_role(obj: Obj, old: Obj | None) -> list[Cause]:
    return _rules(obj, namespaced=False)


def _binding(obj: Obj, old: Obj | None, cluster: bool) -> list[Cause]:
    causes: list[Cause] = []
    ref = obj.get("roleRef") if isinstance(obj.get("roleRef"), dict) else {}
    kinds = ["ClusterRole"] if cluster else ["ClusterRole", "Role"]
    if ref:
        if ref.get("apiGroup") != "rbac.authorization.k8s.io":
            causes.append(not_supported("roleRef.apiGroup", ref.get("apiGroup"), ["rbac.authorization.k8s.io"]))
        if ref.get("kind") not in kinds:
            causes.append(not_supported("roleRef.kind", ref.get("kind"), kinds))
    for i, subject in enumerate(_list(obj.get("subjects"))):
        path = f"subjects[{i}]"
        kind = subject.get("kind")
        if kind not in ("Group", "ServiceAccount", "User"):
            causes.append(not_supported(f"{path}.kind", kind, ["Group", "ServiceAccount", "User"]))
        elif kind == "ServiceAccount":
            if subject.get("apiGroup"):
                causes.append(not_supported(f"{path}.apiGroup", subject["apiGroup"], [""]))
            if cluster and not subject.get("namespace"):
                causes.append(required(f"{path}.namespace"))
            if subject.get("name"):
                causes += [invalid(f"{path}.name", subject["name"], m)
                           for m in is_dns1123_subdomain(str(subject["name"]))]
        elif subject.get("apiGroup") != "rbac.authorization.k8s.io":
            causes.append(not_supported(f"{path}.apiGroup", subject.get("apiGroup"), ["rbac.authorization.k8s.io"]))
    if old is not None and isinstance(old.get("roleRef"), dict) and ref != old["roleRef"]:
        role_ref = (f'rbac.RoleRef{{APIGroup:"{ref.get("apiGroup", "")}", Kind:"{ref.get("kind", "")}", '
                    f'Name:"{ref.get("name", "")}"}}')
        causes.append(invalid_repr("roleRef", role_ref, "cannot change roleRef"))
    return causes


def _priority_class(obj: Obj, old: Obj | None) -> list[Cause]:
    causes: list[Cause] = []
    name = str((obj.get("metadata") or {}).get("name") or "")
    value = obj.get("value")
    if name.startswith("system-") and name not in ("system-cluster-critical", "system-node-critical"):
        causes.append(forbidden("metadata.name", "priority class names with 'system-' prefix are reserved"))
    if isinstance(value, int) and value > 1_000_000_000 and not name.startswith("system-"):
        causes.append(forbidden("value", "maximum allowed value of a user defined priority is 1000000000"))
    policy = obj.get("preemptionPolicy")
    if policy not in (None, "Never", "PreemptLowerPriority"):
        causes.append(not_supported("preemptionPolicy", policy, ["Never", "PreemptLowerPriority"]))
    if old is not None:
        if value != old.get("value"):
            causes.append(forbidden("value", "may not be changed in an update."))
        if policy != old.get("preemptionPolicy") and old.get("preemptionPolicy") is not None:
            causes.append(immutable("preemptionPolicy", policy))
    return causes


def _pod_disruption_budget(obj: Obj, old: Obj | None) -> list[Cause]:
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
    causes: list[Cause] = []
    if spec.get("minAvailable") is not None and spec.get("maxUnavailable") is not None:
        causes.append(invalid_repr("spec", "policy.PodDisruptionBudgetSpec{...}",
                                   "minAvailable and maxUnavailable cannot be both set"))
    for key in ("minAvailable", "maxUnavailable"):
        causes += _int_or_percent(f"spec.{key}", spec.get(key))[0]
    causes += validate_label_selector(spec.get("selector"), "spec.selector")
    policy = spec.get("unhealthyPodEvictionPolicy")
    if policy not in (None, "AlwaysAllow", "IfHealthyBudget"):
        causes.append(not_supported("spec.unhealthyPodEvictionPolicy", policy, ["AlwaysAllow", "IfHealthyBudget"]))
    return causes


def _backend(backend: Any, path: str) -> list[Cause]:
    if not isinstance(backend, dict):
        return []
    causes: list[Cause] = []
    service, resource = backend.get("service"), backend.get("resource")
    if service is not None and resource is not None:
        causes.append(invalid(path, "networking.IngressBackend{...}", "cannot set both service and resource "
                                                                      "backends"))
    elif service is None and resource is None:
        causes.append(invalid(path, "", "one backend (service or resource) must be specified"))
    if isinstance(service, dict):
        if service.get("name"):
            causes += [invalid(f"{path}.service.name", service["name"], m)
                       for m in is_dns1035_label(str(service["name"]))]
        port = service.get("port") if isinstance(service.get("port"), dict) else {}
        if port.get("name") and port.get("number"):
            causes.append(invalid(f"{path}.service.port", port, "cannot set both port name & port number"))
        elif port.get("number") is not None:
            causes += _port_in_range(f"{path}.service.port.number", port["number"])
        elif port.get("name"):
            causes += _port_name(f"{path}.service.port.name", str(port["name"]))
        else:
            causes.append(required(f"{path}.service.port", "port name or number is required"))
    return causes


def _ingress(obj: Obj, old: Obj | None) -> list[Cause]:
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
    causes: list[Cause] = []
    if not spec.get("defaultBackend") and not spec.get("rules"):
        causes.append(invalid_repr("spec.rules", "[]networking.IngressRule(nil)",
                                   "either `defaultBackend` or `rules` must be specified"))
    causes += _backend(spec.get("defaultBackend"), "spec.defaultBackend")
    for i, rule in enumerate(_list(spec.get("rules"))):
        host = rule.get("host")
        if host:
            check = host[2:] if host.startswith("*.") else host
            causes += [invalid(f"spec.rules[{i}].host", host, m) for m in is_dns1123_subdomain(check)]
        http = rule.get("http")
        for j, p in enumerate(_list(http.get("paths") if isinstance(http, dict) else None)):
            ppath = f"spec.rules[{i}].http.paths[{j}]"
            kind = p.get("pathType")
            if kind is None:
                causes.append(required(f"{ppath}.pathType", "pathType must be specified"))
            elif kind not in ("Exact", "ImplementationSpecific", "Prefix"):
                causes.append(not_supported(f"{ppath}.pathType", kind, ["Exact", "ImplementationSpecific",
                                                                        "Prefix"]))
            path_value = p.get("path")
            if kind in ("Exact", "Prefix") and not str(path_value or "").startswith("/"):
                causes.append(invalid(f"{ppath}.path", path_value or "", "must be an absolute path"))
            causes += _backend(p.get("backend"), f"{ppath}.backend")
    for i, tls in enumerate(_list(spec.get("tls"))):
        for j, host in enumerate(tls.get("hosts") or []):
            check = host[2:] if str(host).startswith("*.") else str(host)
            causes += [invalid(f"spec.tls[{i}].hosts[{j}]", host, m) for m in is_dns1123_subdomain(check)]
    return causes


def _network_policy(obj: Obj, old: Obj | None) -> list[Cause]:
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
    causes = validate_label_selector(spec.get("podSelector"), "spec.podSelector")
    for i, kind in enumerate(spec.get("policyTypes") or []):
        if kind not in ("Egress", "Ingress"):
            causes.append(not_supported(f"spec.policyTypes[{i}]", kind, ["Egress", "Ingress"]))
    return causes


def _storage_class(obj: Obj, old: Obj | None) -> list[Cause]:
    causes: list[Cause] = []
    policy = obj.get("reclaimPolicy")
    if policy not in (None, "Delete", "Retain"):
        causes.append(not_supported("reclaimPolicy", policy, ["Delete", "Retain"]))
    mode = obj.get("volumeBindingMode")
    if mode not in (None, "Immediate", "WaitForFirstConsumer"):
        causes.append(not_supported("volumeBindingMode", mode, ["Immediate", "WaitForFirstConsumer"]))
    if old is not None:
        for key in ("provisioner", "parameters", "reclaimPolicy", "volumeBindingMode"):
            if obj.get(key) != old.get(key):
                causes.append(forbidden(key, "updates to " + key + " are forbidden."))
    return causes


def _lease(obj: Obj, old: Obj | None) -> list[Cause]:
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
    causes: list[Cause] = []
    duration = spec.get("leaseDurationSeconds")
    if isinstance(duration, int) and duration <= 0:
        causes.append(invalid("spec.leaseDurationSeconds", duration, "must be greater than 0"))
    return causes


def _endpoint_slice(obj: Obj, old: Obj | None) -> list[Cause]:
    kind = obj.get("addressType")
    kinds = ["FQDN", "IPv4", "IPv6"]
    causes: list[Cause] = []
    if kind is not None and kind not in kinds:
        causes.append(not_supported("addressType", kind, kinds))
    if old is not None and old.get("addressType") != kind:
        causes.append(immutable("addressType", kind))
    return causes


def _csr(obj: Obj, old: Obj | None) -> list[Cause]:
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
    signer = spec.get("signerName")
    causes: list[Cause] = []
    if isinstance(signer, str) and signer and "/" not in signer:
        causes.append(invalid("spec.signerName", signer, "must be a fully qualified domain and path of the form "
                                                         "'example.com/signer-name'"))
    return causes


def _node(obj: Obj, old: Obj | None) -> list[Cause]:
    """As upstream's node update rules: podCIDRs and providerID may only go from unset to a value."""
    if old is None:
        return []
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
    old_spec = old.get("spec") if isinstance(old.get("spec"), dict) else {}
    causes: list[Cause] = []
    old_cidrs = old_spec.get("podCIDRs") or ([old_spec["podCIDR"]] if old_spec.get("podCIDR") else [])
    cidrs = spec.get("podCIDRs") or ([spec["podCIDR"]] if spec.get("podCIDR") else [])
    if old_cidrs and cidrs != old_cidrs:
        causes.append(forbidden("spec.podCIDRs", 'node updates may not change podCIDR except from "" to valid'))
    if old_spec.get("providerID") and spec.get("providerID") != old_spec.get("providerID"):
        causes.append(forbidden("spec.providerID", 'node updates may not change providerID except from "" to valid'))
    return causes


_KIND_RULES: dict[tuple[str, str], Callable[[Obj, Obj | None], list[Cause]]] = {
    ("", "Node"): _node,
    ("", "Pod"): _pod,
    ("", "Service"): _service,
    ("", "ConfigMap"): _config_map,
    ("", "Secret"): _secret,
    ("", "Namespace"): _namespace,
    ("", "ResourceQuota"): _resource_quota,
    ("", "LimitRange"): _limit_range,
    ("", "PersistentVolumeClaim"): _persistent_volume_claim,
    ("", "ReplicationController"): _replication_controller,
    ("", "PodTemplate"): lambda obj, old: validate_pod_spec((obj.get("template") or {}).get("spec"),
                                                            "template.spec"),
    ("", "Event"): _event,
    ("apps", "Deployment"): _deployment,
    ("apps", "ReplicaSet"): _replica_set,
    ("apps", "StatefulSet"): _stateful_set,
    ("apps", "DaemonSet"): _daemon_set,
    ("batch", "Job"): _job,
    ("batch", "CronJob"): _cron_job,
    ("autoscaling", "HorizontalPodAutoscaler"): _hpa,
    ("rbac.authorization.k8s.io", "Role"): _role,
    ("rbac.authorization.k8s.io", "ClusterRole"): _cluster_role,
    ("rbac.authorization.k8s.io", "RoleBinding"): lambda obj, old: _binding(obj, old, cluster=False),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"): lambda obj, old: _binding(obj, old, cluster=True),
    ("scheduling.k8s.io", "PriorityClass"): _priority_class,
    ("policy", "PodDisruptionBudget"): _pod_disruption_budget,
    ("networking.k8s.io", "Ingress"): _ingress,
    ("networking.k8s.io", "NetworkPolicy"): _network_policy,
    ("storage.k8s.io", "StorageClass"): _storage_class,
    ("coordination.k8s.io", "Lease"): _lease,
    ("discovery.k8s.io", "EndpointSlice"): _endpoint_slice,
    ("certificates.k8s.io", "CertificateSigningRequest"): _csr,
}
