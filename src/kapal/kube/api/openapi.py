"""OpenAPI documents built from the resource registry (paths) and the Kubernetes JSON schemas (components).

kubectl reads them for create/apply/replace/edit (is `fieldValidation` a parameter of the kind's PATCH
operation? then the server validates), for explain, and for strategic-merge patch metadata:

- v3: `/openapi/v3` lists one document per group-version; each document's PATCH operations carry
  `x-kubernetes-group-version-kind` and `fieldValidation` (kubectl looks at exactly those).
- v2: one swagger 2.0 document for every group, as JSON or as the gnostic protobuf that kubectl ≤1.28 and
  `kubectl explain --output=plaintext-openapiv2` ask for (see gnostic.py).

Documents are built once per process and cached; callers must not mutate them.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from kapal.errors import NotFound
from kapal.kube.api import schemas
from kapal.kube.meta import resources as registry
from kapal.kube.meta.resources import ResourceType

V3_PREFIX = "/openapi/v3/"
_META = "io.k8s.apimachinery.pkg.apis.meta.v1."
_PROTOBUF = "application/vnd.kubernetes.protobuf"
_RESPONSE_TYPES = ("application/json", "application/yaml", _PROTOBUF)
_PATCH_TYPES = ("application/apply-patch+yaml", "application/json-patch+json", "application/merge-patch+json",
                "application/strategic-merge-patch+json")

# Query parameters, each with its JSON type and a short description of our own.
_PARAMS: dict[str, tuple[str, str]] = {
    "pretty": ("string", "If 'true', the output is pretty printed."),
    "allowWatchBookmarks": ("boolean", "Ask for BOOKMARK watch events; the server may send them."),
    "continue": ("string", "The continue token from a previous paginated list, to fetch the next page."),
    "fieldSelector": ("string", "Restrict the returned objects by their fields. Defaults to everything."),
    "labelSelector": ("string", "Restrict the returned objects by their labels. Defaults to everything."),
    "limit": ("integer", "The most objects to return in one list call; more remain behind a continue token."),
    "resourceVersion": ("string", "Which version of the data a get, list or watch may be served from."),
    "resourceVersionMatch": ("string", "How resourceVersion is applied to list calls: Exact or NotOlderThan."),
    "sendInitialEvents": ("boolean", "With watch=true, start the watch with synthetic events for the current state."),
    "timeoutSeconds": ("integer", "Timeout for the list/watch call, in seconds."),
    "watch": ("boolean", "Watch for changes to the described resources instead of listing them."),
    "dryRun": ("string", "When present (only value: All), the change is checked but not persisted."),
    "fieldManager": ("string", "The name of the actor making the change, recorded in managedFields."),
    "fieldValidation": ("string", "What to do with unknown or duplicate fields in the request body: Ignore, "
                                  "Warn (the default) or Strict."),
    "force": ("boolean", "Take ownership of conflicting fields in an apply request; only for apply patches."),
    "gracePeriodSeconds": ("integer", "Seconds before the object is deleted; zero means immediately."),
    "ignoreStoreReadErrorWithClusterBreakingPotential": (
        "boolean", "Delete an object that cannot be read from storage; may break the cluster."),
    "orphanDependents": ("boolean", "Deprecated: use propagationPolicy. Orphan the dependents of this object."),
    "propagationPolicy": ("string", "Whether and how dependents are garbage collected: Orphan, Background "
                                    "or Foreground."),
    "container": ("string", "The container to use; defaults to the only container when there is one."),
    "follow": ("boolean", "Follow the log stream of the pod."),
    "insecureSkipTLSVerifyBackend": ("boolean", "Do not verify the kubelet's serving certificate when fetching logs."),
    "limitBytes": ("integer", "Stop returning log output after this many bytes."),
    "previous": ("boolean", "Return the logs of the previous, terminated container."),
    "sinceSeconds": ("integer", "Only return logs newer than this many seconds."),
    "stream": ("string", "Which log stream to return: All, Stdout or Stderr."),
    "tailLines": ("integer", "The number of lines from the end of the log to show."),
    "timestamps": ("boolean", "Prefix every line of log output with an RFC3339 timestamp."),
    "command": ("string", "The command to execute; repeat the parameter for each argument."),
    "stdin": ("boolean", "Redirect the standard input stream of the pod for this call."),
    "stdout": ("boolean", "Redirect the standard output stream of the pod for this call."),
    "stderr": ("boolean", "Redirect the standard error stream of the pod for this call."),
    "tty": ("boolean", "Allocate a terminal for this call."),
    "ports": ("integer", "The pod ports to forward; repeat the parameter for each port."),
    "path": ("string", "The path to proxy to."),
}
_PATH_PARAMS = {"name": "the name of the {kind}", "namespace": "object name and auth scope, such as for teams "
                                                                  "and projects", "path": "path to the resource"}
_LIST_PARAMS = ("allowWatchBookmarks", "continue", "fieldSelector", "labelSelector", "limit", "resourceVersion",
                "resourceVersionMatch", "sendInitialEvents", "timeoutSeconds", "watch")
_WRITE_PARAMS = ("dryRun", "fieldManager", "fieldValidation")
_DELETE_PARAMS = ("dryRun", "gracePeriodSeconds", "ignoreStoreReadErrorWithClusterBreakingPotential",
                  "orphanDependents", "propagationPolicy")
_LOG_PARAMS = ("container", "follow", "insecureSkipTLSVerifyBackend", "limitBytes", "previous", "sinceSeconds",
               "stream", "tailLines", "timestamps")


@dataclass(frozen=True)
class Operation:
    """One HTTP operation, neutral between swagger 2.0 and OpenAPI 3."""

    method: str
    action: str
    operation_id: str
    description: str
    gvk: tuple[str, str, str] | None
    query: tuple[str, ...] = ()
    body: str | None = None  # definition name; "Patch" bodies take the patch content types
    response: str | None = None  # definition name; None for plain-text or empty responses
    response_text: bool = False
    created: bool = False  # 201/202 answers as well as 200


@dataclass
class PathItem:
    path_params: tuple[str, ...]
    kind: str
    ops: list[Operation] = field(default_factory=list)


def _group_camel(group: str) -> str:
    if not group:
        return "Core"
    parts = group.removesuffix(".k8s.io").split(".")
    return "".join(p[:1].upper() + p[1:] for p in parts)


def _tag(group: str, version: str) -> str:
    camel = _group_camel(group)
    return f"{camel[:1].lower()}{camel[1:]}_{version}"


def _prefix(group: str, version: str) -> str:
    return f"/api/{version}" if not group else f"/apis/{group}/{version}"


# Subresources: (definition of body/response, gvk, methods).
_SCALE = "io.k8s.api.autoscaling.v1.Scale"
_SUBRESOURCE_KIND = {
    "scale": (_SCALE, ("autoscaling", "v1", "Scale")),
    "eviction": ("io.k8s.api.policy.v1.Eviction", ("policy", "v1", "Eviction")),
    "binding": ("io.k8s.api.core.v1.Binding", ("", "v1", "Binding")),
    "token": ("io.k8s.api.authentication.v1.TokenRequest", ("authentication.k8s.io", "v1", "TokenRequest")),
}
_CONNECT = {"exec": ("PodExecOptions", ("command", "container", "stderr", "stdin", "stdout", "tty")),
            "attach": ("PodAttachOptions", ("container", "stderr", "stdin", "stdout", "tty")),
            "portforward": ("PodPortForwardOptions", ("ports",)),
            "proxy": ("ProxyOptions", ("path",))}


def _operations(group: str, version: str) -> dict[str, PathItem]:
    out: dict[str, PathItem] = {}
    prefix = _prefix(group, version)
    gv = _group_camel(group) + version[:1].upper() + version[1:]
    for r in registry.by_group_version(group, version):
        if r.group not in registry.COMPUTED_GROUPS:  # their schemas are not among the published ones
            _resource_operations(r, prefix, gv, out)
    return dict(sorted(out.items()))


def _resource_operations(r: ResourceType, prefix: str, gv: str, out: dict[str, PathItem]) -> None:
    verbs = set(r.verbs)
    gvk = (r.group, r.version, r.kind)
    obj = r.schema_name
    lst = obj + "List"
    nsd = "Namespaced" if r.namespaced else ""
    base = prefix + ("/namespaces/{namespace}" if r.namespaced else "") + "/" + r.plural
    scope = ("namespace",) if r.namespaced else ()
    name_scope = (*scope, "name")
    coll = out.setdefault(base, PathItem(scope, r.kind))
    if "list" in verbs:
        coll.ops.append(Operation("get", "list", f"list{gv}{nsd}{r.kind}", f"list or watch objects of kind {r.kind}",
                                  gvk, _LIST_PARAMS, response=lst))
    if "create" in verbs:
        coll.ops.append(Operation("post", "post", f"create{gv}{nsd}{r.kind}", f"create a {r.kind}", gvk,
                                  _WRITE_PARAMS, body=obj, response=obj, created=True))
    if "deletecollection" in verbs:
        coll.ops.append(Operation("delete", "deletecollection", f"delete{gv}Collection{nsd}{r.kind}",
                                  f"delete collection of {r.kind}", gvk, _DELETE_PARAMS + _LIST_PARAMS,
                                  body=_META + "DeleteOptions", response=_META + "Status"))
    if r.namespaced and "list" in verbs:
        every = out.setdefault(prefix + "/" + r.plural, PathItem((), r.kind))
        every.ops.append(Operation("get", "list", f"list{gv}{r.kind}ForAllNamespaces",
                                   f"list or watch objects of kind {r.kind}", gvk, _LIST_PARAMS, response=lst))
    if verbs & {"get", "update", "patch", "delete"}:
        item = out.setdefault(base + "/{name}", PathItem(name_scope, r.kind))
        if "get" in verbs:
            item.ops.append(Operation("get", "get", f"read{gv}{nsd}{r.kind}", f"read the specified {r.kind}",
                                      gvk, response=obj))
        if "update" in verbs:
            item.ops.append(Operation("put", "put", f"replace{gv}{nsd}{r.kind}", f"replace the specified {r.kind}",
                                      gvk, _WRITE_PARAMS, body=obj, response=obj, created=True))
        if "patch" in verbs:
            item.ops.append(Operation("patch", "patch", f"patch{gv}{nsd}{r.kind}",
                                      f"partially update the specified {r.kind}", gvk, (*_WRITE_PARAMS, "force"),
                                      body=_META + "Patch", response=obj, created=True))
        if "delete" in verbs:
            item.ops.append(Operation("delete", "delete", f"delete{gv}{nsd}{r.kind}", f"delete a {r.kind}", gvk,
                                      _DELETE_PARAMS, body=_META + "DeleteOptions", response=_META + "Status",
                                      created=True))
    for sub in r.subresources:
        _subresource_operations(r, sub, base + "/{name}/" + sub, gv, nsd, name_scope, out)


def _subresource_operations(r: ResourceType, sub: str, path: str, gv: str, nsd: str,
                            scope: tuple[str, ...], out: dict[str, PathItem]) -> None:
    camel = sub[:1].upper() + sub[1:]
    suffix = f"{nsd}{r.kind}{camel}"
    if sub in _CONNECT:
        options, params = _CONNECT[sub]
        item = out.setdefault(path, PathItem(scope, r.kind))
        gvk = (r.group, r.version, f"{r.kind}{options}" if options == "ProxyOptions" else options)
        for method in ("get", "post"):
            item.ops.append(Operation(method, "connect", f"connect{gv}{method.capitalize()}{suffix}",
                                      f"connect {method.upper()} requests to {sub} of {r.kind}", gvk, params,
                                      response_text=True))
        return
    item = out.setdefault(path, PathItem(scope, r.kind))
    if sub == "log":
        item.ops.append(Operation("get", "get", f"read{gv}{suffix}", f"read log of the specified {r.kind}",
                                  (r.group, r.version, r.kind), _LOG_PARAMS, response_text=True))
        return
    definition, gvk = _SUBRESOURCE_KIND.get(sub, (r.schema_name, (r.group, r.version, r.kind)))
    if sub in ("eviction", "binding", "token"):
        item.ops.append(Operation("post", "post", f"create{gv}{suffix}", f"create {camel} of a {r.kind}", gvk,
                                  _WRITE_PARAMS, body=definition, response=definition, created=True))
        return
    if sub != "finalize":
        item.ops.append(Operation("get", "get", f"read{gv}{suffix}", f"read {sub} of the specified {r.kind}", gvk,
                                  response=definition))
    item.ops.append(Operation("put", "put", f"replace{gv}{suffix}", f"replace {sub} of the specified {r.kind}", gvk,
                              _WRITE_PARAMS, body=definition, response=definition, created=True))
    if sub != "finalize":
        item.ops.append(Operation("patch", "patch", f"patch{gv}{suffix}",
                                  f"partially update {sub} of the specified {r.kind}", gvk, (*_WRITE_PARAMS, "force"),
                                  body=_META + "Patch", response=definition, created=True))


# --- schema conversion (kubernetes-validate's JSON Schema → OpenAPI) ----------------------------------------


def _convert(node: Any, ref_prefix: str, v2: bool) -> Any:
    """One schema node in OpenAPI form: `$ref`s re-pointed, nullable type lists collapsed to one type."""
    if isinstance(node, list):
        return [_convert(x, ref_prefix, v2) for x in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "$ref":
            continue
        if key == "type" and isinstance(value, list):
            real = [t for t in value if t != "null"]
            if real:
                out["type"] = real[0]
            continue
        if key == "properties":
            out[key] = {name: _convert(sub, ref_prefix, v2) for name, sub in value.items()}
            continue
        out[key] = _convert(value, ref_prefix, v2)
    name = schemas.ref_name(node)
    if name is not None:
        ref = {"$ref": ref_prefix + name}
        if not out:
            return ref
        if v2:
            return {**ref, **out}
        return {"allOf": [ref], **out}
    if v2 and "oneOf" in out:
        out.pop("oneOf")
        out["type"] = "string"
    return out


def _definition_for(name: str, ref_prefix: str, v2: bool) -> dict[str, Any]:
    node = _convert(schemas.definition(name), ref_prefix, v2)
    props = node.get("properties")
    if props and node.get("x-kubernetes-group-version-kind"):
        for key in ("apiVersion", "kind"):
            if key in props:
                props[key] = {k: v for k, v in props[key].items() if k != "enum"}
    if name.endswith("IntOrString"):
        node["format"] = "int-or-string"
    return node


def _referenced(roots: set[str]) -> list[str]:
    """Every definition reachable from `roots`, sorted."""
    seen: set[str] = set()
    todo = [n for n in roots if n in schemas.definitions()]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        _collect_refs(schemas.definition(name), todo)
    return sorted(seen)


def _collect_refs(node: Any, into: list[str]) -> None:
    if isinstance(node, dict):
        name = schemas.ref_name(node)
        if name is not None:
            into.append(name)
        for value in node.values():
            if isinstance(value, dict | list):
                _collect_refs(value, into)
    elif isinstance(node, list):
        for value in node:
            _collect_refs(value, into)


def _gvk_dict(gvk: tuple[str, str, str]) -> dict[str, str]:
    return {"group": gvk[0], "kind": gvk[2], "version": gvk[1]}


# --- v3 -------------------------------------------------------------------------------------------------------


def _v3_param(name: str, where: str = "query", kind: str = "") -> dict[str, Any]:
    if where == "path":
        return {"name": name, "in": "path", "description": _PATH_PARAMS[name].format(kind=kind), "required": True,
                "schema": {"type": "string", "uniqueItems": True}}
    typ, desc = _PARAMS[name]
    return {"name": name, "in": "query", "description": desc, "schema": {"type": typ, "uniqueItems": True}}


def _v3_content(definition: str | None, types: tuple[str, ...]) -> dict[str, Any]:
    schema = {"$ref": "#/components/schemas/" + definition} if definition else {"type": "string"}
    return {t: {"schema": schema} for t in types}


def _v3_operation(op: Operation, tag: str) -> dict[str, Any]:
    out: dict[str, Any] = {"tags": [tag], "description": op.description, "operationId": op.operation_id}
    if op.query:
        out["parameters"] = [_v3_param(p) for p in op.query]
    if op.body:
        types = _PATCH_TYPES if op.body.endswith(".Patch") else ("*/*",)
        out["requestBody"] = {"content": _v3_content(op.body, types), "required": op.body.endswith(".Patch")
                              or op.method in ("post", "put")}
    if op.response_text:
        ok = {"description": "OK", "content": {"*/*": {"schema": {"type": "string"}}}}
    else:
        ok = {"description": "OK", "content": _v3_content(op.response, _RESPONSE_TYPES)}
    return _finish_operation(out, op, ok)


def _finish_operation(out: dict[str, Any], op: Operation, ok: dict[str, Any]) -> dict[str, Any]:
    """The responses and kubernetes extensions both OpenAPI versions give an operation."""
    responses: dict[str, Any] = {"200": ok}
    if op.created:
        responses["201"] = {**ok, "description": "Created"}
        if op.method in ("post", "delete"):
            responses["202"] = {**ok, "description": "Accepted"}
    responses["401"] = {"description": "Unauthorized"}
    out["responses"] = responses
    out["x-kubernetes-action"] = op.action
    if op.gvk:
        out["x-kubernetes-group-version-kind"] = _gvk_dict(op.gvk)
    return out


def _known_group_version(group: str, version: str) -> None:
    if not registry.by_group_version(group, version):
        raise NotFound(f"no OpenAPI document for group version {(group + '/' + version).lstrip('/')!r}")


@functools.cache
def v3_document(group: str, version: str) -> dict[str, Any]:
    """The OpenAPI 3.0 document of one group-version (`/openapi/v3/apis/<g>/<v>` or `/openapi/v3/api/v1`)."""
    _known_group_version(group, version)
    tag = _tag(group, version)
    paths: dict[str, Any] = {}
    roots: set[str] = {_META + "Status", _META + "DeleteOptions", _META + "Patch", _META + "WatchEvent",
                       _META + "APIResourceList"}
    for path, item in _operations(group, version).items():
        entry: dict[str, Any] = {}
        for op in item.ops:
            entry[op.method] = _v3_operation(op, tag)
            roots.update(d for d in (op.body, op.response) if d)
        entry["parameters"] = [*(_v3_param(p, "path", item.kind) for p in item.path_params), _v3_param("pretty")]
        paths[path] = entry
    components = {name: _definition_for(name, "#/components/schemas/", False) for name in _referenced(roots)}
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": schemas.KUBERNETES_VERSION},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"BearerToken": {"type": "apiKey", "description": "Bearer Token authentication",
                                                "name": "authorization", "in": "header"}},
        },
    }


@functools.cache
def v3_document_bytes(group: str, version: str) -> bytes:
    return json.dumps(v3_document(group, version), separators=(",", ":")).encode()


@functools.cache
def v3_hash(group: str, version: str) -> str:
    """Content hash of a document, as the `?hash=` in the index (uppercase hex SHA-512, as upstream)."""
    return hashlib.sha512(v3_document_bytes(group, version)).hexdigest().upper()


def v3_path(group: str, version: str) -> str:
    """The index key of a group-version: `api/v1` or `apis/apps/v1`."""
    return f"api/{version}" if not group else f"apis/{group}/{version}"


def v3_index(base_url_prefix: str = "") -> dict[str, Any]:
    """`/openapi/v3`: every group-version document with its `serverRelativeURL` (`?hash=` makes it cacheable)."""
    out: dict[str, Any] = {}
    for group, versions in registry.groups().items():
        for version in versions:
            key = v3_path(group, version)
            out[key] = {"serverRelativeURL": f"{base_url_prefix}{V3_PREFIX}{key}?hash={v3_hash(group, version)}"}
    return {"paths": dict(sorted(out.items()))}


def v3_lookup(path: str) -> tuple[str, str]:
    """(group, version) for a `/openapi/v3/...` request path such as `apis/apps/v1`; NotFound otherwise."""
    parts = path.strip("/").removeprefix("openapi/v3/").split("/")
    if len(parts) == 2 and parts[0] == "api":
        group, version = "", parts[1]
    elif len(parts) == 3 and parts[0] == "apis":
        group, version = parts[1], parts[2]
    else:
        raise NotFound(f"no OpenAPI v3 document at {path!r}")
    _known_group_version(group, version)
    return group, version


# --- v2 -------------------------------------------------------------------------------------------------------


def _v2_param(name: str, where: str = "query", kind: str = "") -> dict[str, Any]:
    if where == "path":
        return {"uniqueItems": True, "type": "string", "description": _PATH_PARAMS[name].format(kind=kind),
                "name": name, "in": "path", "required": True}
    typ, desc = _PARAMS[name]
    return {"uniqueItems": True, "type": typ, "description": desc, "name": name, "in": "query"}


def _v2_operation(op: Operation, tag: str) -> dict[str, Any]:
    out: dict[str, Any] = {"description": op.description}
    if op.body and op.body.endswith(".Patch"):
        out["consumes"] = list(_PATCH_TYPES)
    else:
        out["consumes"] = ["*/*"]
    out["produces"] = ["*/*"] if op.response_text else list(_RESPONSE_TYPES)
    out["schemes"] = ["https"]
    out["tags"] = [tag]
    out["operationId"] = op.operation_id
    params = []
    if op.body:
        params.append({"name": "body", "in": "body", "required": True,
                       "schema": {"$ref": "#/definitions/" + op.body}})
    params += [_v2_param(p) for p in op.query]
    if params:
        out["parameters"] = params
    ok: dict[str, Any] = {"description": "OK"}
    ok["schema"] = {"type": "string"} if op.response_text else {"$ref": "#/definitions/" + (op.response or "")}
    return _finish_operation(out, op, ok)


@functools.cache
def v2_document() -> dict[str, Any]:
    """The swagger 2.0 document of every group-version (`/openapi/v2` as JSON)."""
    paths: dict[str, Any] = {}
    roots: set[str] = {_META + "Status", _META + "DeleteOptions", _META + "Patch", _META + "WatchEvent",
                       _META + "APIResourceList"}
    for group, versions in registry.groups().items():
        for version in versions:
            tag = _tag(group, version)
            for path, item in _operations(group, version).items():
                entry: dict[str, Any] = {}
                for op in item.ops:
                    entry[op.method] = _v2_operation(op, tag)
                    roots.update(d for d in (op.body, op.response) if d)
                entry["parameters"] = [*(_v2_param(p, "path", item.kind) for p in item.path_params),
                                       _v2_param("pretty")]
                paths[path] = entry
    definitions = {name: _definition_for(name, "#/definitions/", True) for name in _referenced(roots)}
    return {
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": schemas.KUBERNETES_VERSION},
        "paths": dict(sorted(paths.items())),
        "definitions": definitions,
        "securityDefinitions": {"BearerToken": {"description": "Bearer Token authentication", "type": "apiKey",
                                                "name": "authorization", "in": "header"}},
        "security": [{"BearerToken": []}],
    }


@functools.cache
def v2_document_bytes() -> bytes:
    return json.dumps(v2_document(), separators=(",", ":")).encode()


@functools.cache
def v2_protobuf() -> bytes:
    """`/openapi/v2` for `Accept: application/com.github.proto-openapi.spec.v2@v1.0+protobuf`."""
    from kapal.kube.api import gnostic

    return gnostic.encode_document(v2_document())


# What kubectl asks for (Accept) and what the answer must say: Go's mime parser rejects the '@' of the former,
# so upstream answers with application/octet-stream.
V2_PROTOBUF_CONTENT_TYPE = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
V2_PROTOBUF_RESPONSE_CONTENT_TYPE = "application/octet-stream"
