"""Subresources: status and the other partial writes, scale, binding, eviction, token, and the kubelet streams.

Partial writes (status, finalize, approval, ephemeralcontainers, resize)
reuse the main update/patch path with a merge rule from objects.py; the
others are small request/response protocols of their own.
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any

from aiohttp import web

from kapal import errors
from kapal.kube.api import codec, objects, pure, status
from kapal.kube.api.authn import UserInfo
from kapal.kube.api.cache import Filter
from kapal.kube.api.requestinfo import RequestInfo
from kapal.kube.api.rest import json_response, storage_resource
from kapal.kube.api.status import Cause
from kapal.kube.api.store import resource_version
from kapal.kube.meta.resources import lookup
from kapal.kube.meta.selectors import label_selector_from_dict

if TYPE_CHECKING:
    from kapal.kube.api.rest import Rest

SCALE = lookup("autoscaling", "v1", "horizontalpodautoscalers")
PODS = lookup("", "v1", "pods")
PDBS = lookup("policy", "v1", "poddisruptionbudgets")
SERVICEACCOUNTS = lookup("", "v1", "serviceaccounts")
_STREAMS = ("log", "exec", "attach", "portforward", "proxy")
_PARTIAL = ("status", "finalize", "approval", "ephemeralcontainers", "resize")


async def handle(rest: Rest, request: web.Request, info: RequestInfo, user: UserInfo) -> web.StreamResponse:
    r = info.resource
    assert r is not None and info.name
    sub = info.subresource
    method = request.method
    if sub in _STREAMS:
        from kapal.kube.api import proxy

        return await proxy.handle(rest, request, info, user)
    if sub in _PARTIAL:
        if method == "GET" and sub != "finalize":
            return await rest.get(request, info)
        if method == "PUT":
            return await rest.update(request, info, user)
        if method == "PATCH" and sub != "finalize":
            return await rest.patch(request, info, user)
    elif sub == "scale":
        if method == "GET":
            return await get_scale(rest, request, info)
        if method in ("PUT", "PATCH"):
            return await write_scale(rest, request, info)
    elif sub == "binding" and method == "POST":
        return await binding(rest, request, info)
    elif sub == "eviction" and method == "POST":
        return await eviction(rest, request, info)
    elif sub == "token" and method == "POST":
        return await token(rest, request, info)
    raise status.MethodNotAllowed("the server does not allow this method on the requested resource")


# --- scale --------------------------------------------------------------------------------------------------------

def selector_string(selector: Any) -> str:
    if not selector:
        return ""
    if "matchLabels" not in selector and "matchExpressions" not in selector:
        return ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
    return str(label_selector_from_dict(selector))


def scale_of(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj["metadata"]
    spec, st = obj.get("spec") or {}, obj.get("status") or {}
    scale_meta = {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp") if k in meta}
    return {"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": scale_meta,
            "spec": {"replicas": int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1)},
            "status": {"replicas": int(st.get("replicas") or 0), "selector": selector_string(spec.get("selector"))}}


async def get_scale(rest: Rest, request: web.Request, info: RequestInfo) -> web.Response:
    r = info.resource
    assert r is not None and info.name
    obj = await rest.ctx.store.get(storage_resource(r), info.namespace, info.name)
    return json_response(200, scale_of(obj))


async def write_scale(rest: Rest, request: web.Request, info: RequestInfo) -> web.Response:
    r = info.resource
    assert r is not None and info.name
    srs = storage_resource(r)
    dry = rest.dry_run(request)
    manager = rest.field_manager(request)
    ctype = codec.media_type(request.headers.get("Content-Type"))
    data = await rest.read_body(request)
    body = codec.decode_body(ctype, data, patch=request.method == "PATCH").body

    async def change(current: dict[str, Any]) -> dict[str, Any]:
        scale = scale_of(current)
        if request.method == "PUT":
            new_scale = codec.require_object(body, "Scale object")
        elif ctype == codec.JSON_PATCH:
            new_scale = pure.json_patch(scale, body)
        else:
            new_scale = pure.merge_patch(scale, codec.require_object(body, "patch object"))
        rv = (new_scale.get("metadata") or {}).get("resourceVersion")
        if rv and request.method == "PUT" and rv != current["metadata"]["resourceVersion"]:
            raise status.conflict(r, info.name or "", status.STALE)
        replicas = (new_scale.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise status.invalid(SCALE, info.name or "", [Cause("spec.replicas", "FieldValueInvalid",
                                                                f"Invalid value: {replicas}: must be greater than or "
                                                                "equal to 0")])
        new = objects_copy(current)
        new.setdefault("spec", {})["replicas"] = replicas
        return await rest.update_object(srs, current, new, manager, dry, operation="Update")

    result = await rest.ctx.store.guaranteed_update(srs, info.namespace, info.name, change)
    return json_response(200, scale_of(result))


def objects_copy(obj: dict[str, Any]) -> dict[str, Any]:
    import json

    return json.loads(json.dumps(obj))


# --- binding ------------------------------------------------------------------------------------------------------

async def binding(rest: Rest, request: web.Request, info: RequestInfo, pod_name: str | None = None) -> web.Response:
    body = codec.require_object(codec.decode_body(request.headers.get("Content-Type"),
                                                  await rest.read_body(request)).body, "Binding object")
    name = pod_name or info.name or (body.get("metadata") or {}).get("name") or ""
    target = body.get("target") or {}
    node = target.get("name")
    if not node:
        raise status.invalid(lookup("", "v1", "bindings"), name,
                             [Cause("target.name", "FieldValueRequired", "Required value")])
    dry = rest.dry_run(request)
    manager = rest.field_manager(request)
    pods_binding = lookup("", "v1", "pods")
    assert pods_binding is not None

    async def change(current: dict[str, Any]) -> dict[str, Any]:
        meta = current["metadata"]
        if meta.get("deletionTimestamp"):
            raise status.conflict(pods_binding, name, f"pod {name} is being deleted, cannot be assigned to a host")
        have = (current.get("spec") or {}).get("nodeName")
        if have:
            raise errors.Conflict(f'Operation cannot be fulfilled on pods/binding "{name}": pod {name} is already '
                                  f'assigned to node "{have}"')
        uid = (body.get("metadata") or {}).get("uid")
        if uid and uid != meta.get("uid"):
            raise status.conflict(pods_binding, name, "Precondition failed: UID in precondition: "
                                                      f"{uid}, UID in object meta: {meta.get('uid')}")
        new = objects_copy(current)
        new.setdefault("spec", {})["nodeName"] = node
        conditions = [c for c in (new.setdefault("status", {}).get("conditions") or [])
                      if c.get("type") != "PodScheduled"]
        conditions.append({"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                           "lastTransitionTime": objects.timestamp()})
        new["status"]["conditions"] = conditions
        rev = resource_version(current)
        new["metadata"]["resourceVersion"] = str(rev)
        new = pure.track_update(current, new, pods_binding, manager, "Update", "binding")
        if dry:
            return new
        return await rest.ctx.store.update(pods_binding, new, rev)

    await rest.ctx.store.guaranteed_update(pods_binding, info.namespace, name, change)
    return json_response(201, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                                "code": 201})


# --- eviction -----------------------------------------------------------------------------------------------------

async def eviction(rest: Rest, request: web.Request, info: RequestInfo) -> web.Response:
    assert info.name and PODS is not None and PDBS is not None
    body = codec.require_object(codec.decode_body(request.headers.get("Content-Type"),
                                                  await rest.read_body(request)).body, "Eviction object")
    name = (body.get("metadata") or {}).get("name") or info.name
    if name != info.name:
        raise errors.Invalid(f"name in URL does not match name in Eviction object: {info.name} != {name}")
    opts = dict(body.get("deleteOptions") or {})
    if rest.dry_run(request):
        opts["dryRun"] = ["All"]
    pod = await rest.ctx.store.get(PODS, info.namespace, name)
    phase = (pod.get("status") or {}).get("phase")
    if not pod["metadata"].get("deletionTimestamp") and phase not in ("Succeeded", "Failed", "Pending"):
        labels = pod["metadata"].get("labels") or {}
        await rest.ctx.cache.fresh()
        pdbs, _ = rest.ctx.cache.list(PDBS.storage_key, Filter(namespace=info.namespace))
        matching = [e.obj for e in pdbs if label_selector_from_dict((e.obj.get("spec") or {}).get("selector"))
                    .matches(labels)]
        if len(matching) > 1:
            raise errors.Invalid("This pod has more than one PodDisruptionBudget, which the eviction subresource "
                                 "does not support.")
        if matching:
            pdb = matching[0]
            allowed = int((pdb.get("status") or {}).get("disruptionsAllowed") or 0)
            if allowed <= 0:
                err = status.TooManyRequests("Cannot evict pod as it would violate the pod's disruption budget.")
                err.causes = [Cause("", "DisruptionBudget",  # type: ignore[attr-defined]
                                    f"The disruption budget {pdb['metadata']['name']} needs "
                                    f"{(pdb.get('status') or {}).get('desiredHealthy', 0)} healthy pods and has "
                                    f"{(pdb.get('status') or {}).get('currentHealthy', 0)} currently")]
                raise err
            if not opts.get("dryRun"):
                await _consume_disruption(rest, pdb, name)
    await rest.delete_object(PODS, info.namespace, name, opts)
    return json_response(201, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                                "code": 201})


async def _consume_disruption(rest: Rest, pdb: dict[str, Any], pod: str) -> None:
    assert PDBS is not None
    meta = pdb["metadata"]

    async def change(current: dict[str, Any]) -> dict[str, Any]:
        new = objects_copy(current)
        st = new.setdefault("status", {})
        allowed = int(st.get("disruptionsAllowed") or 0)
        if allowed <= 0:
            raise status.TooManyRequests("Cannot evict pod as it would violate the pod's disruption budget.")
        st["disruptionsAllowed"] = allowed - 1
        st.setdefault("disruptedPods", {})[pod] = objects.timestamp()
        return await rest.ctx.store.update(PDBS, new, resource_version(current))

    await rest.ctx.store.guaranteed_update(PDBS, meta.get("namespace"), meta["name"], change)


# --- serviceaccounts/token ----------------------------------------------------------------------------------------

async def token(rest: Rest, request: web.Request, info: RequestInfo) -> web.Response:
    assert info.name and SERVICEACCOUNTS is not None
    ctx = rest.ctx
    if ctx.signer is None:
        raise errors.Unsupported("serviceaccounts/token needs --service-account-signing-key-file")
    body = codec.require_object(codec.decode_body(request.headers.get("Content-Type"),
                                                  await rest.read_body(request)).body, "TokenRequest object")
    spec = body.get("spec") or {}
    sa = await ctx.store.get(SERVICEACCOUNTS, info.namespace, info.name)
    tr = lookup("authentication.k8s.io", "v1", "tokenreviews")
    assert tr is not None
    expiration = spec.get("expirationSeconds") or 3600
    if not isinstance(expiration, int) or expiration < 600:
        raise status.invalid(SERVICEACCOUNTS, info.name, [Cause(
            "spec.expirationSeconds", "FieldValueInvalid",
            f"Invalid value: {expiration}: may not specify a duration less than 10 minutes")])
    if ctx.config.service_account_max_token_expiration:
        expiration = min(expiration, ctx.config.service_account_max_token_expiration)
    audiences = spec.get("audiences") or ctx.authenticator.audiences or ctx.config.service_account_issuer[:1]
    now = int(time.time())
    k8s: dict[str, Any] = {"namespace": info.namespace,
                           "serviceaccount": {"name": info.name, "uid": sa["metadata"]["uid"]}}
    ref = spec.get("boundObjectRef")
    if ref:
        kind = ref.get("kind")
        target = {"Pod": PODS, "Secret": lookup("", "v1", "secrets"), "Node": lookup("", "v1", "nodes")}.get(kind)
        if target is None:
            raise status.invalid(SERVICEACCOUNTS, info.name, [Cause(
                "spec.boundObjectRef.kind", "FieldValueNotSupported",
                f'Unsupported value: "{kind}": supported values: "Pod", "Secret", "Node"')])
        bound = await ctx.store.get(target, info.namespace if target.namespaced else None, ref.get("name", ""))
        if ref.get("uid") and ref["uid"] != bound["metadata"]["uid"]:
            raise errors.Conflict(f"the UID in the bound object reference ({ref['uid']}) does not match the UID in "
                                  f"record. The object might have been deleted and then recreated")
        k8s[kind.lower()] = {"name": bound["metadata"]["name"], "uid": bound["metadata"]["uid"]}
        if kind == "Pod" and (bound.get("spec") or {}).get("nodeName"):
            node = ctx.store.cached(lookup("", "v1", "nodes"), None, bound["spec"]["nodeName"])  # type: ignore[arg-type]
            if node is not None:
                k8s["node"] = {"name": node.obj["metadata"]["name"], "uid": node.obj["metadata"].get("uid", "")}
    claims = {"aud": audiences, "exp": now + expiration, "iat": now, "iss": ctx.signer.issuer,
              "jti": str(uuid.uuid4()), "kubernetes.io": k8s, "nbf": now,
              "sub": f"system:serviceaccount:{info.namespace}:{info.name}"}
    jwt = ctx.signer.sign(claims)
    out = {"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
           "metadata": {"name": info.name, "namespace": info.namespace, "creationTimestamp": None},
           "spec": {"audiences": audiences, "expirationSeconds": expiration,
                    "boundObjectRef": ref},
           "status": {"token": jwt, "expirationTimestamp": objects.timestamp(
               objects.now().fromtimestamp(now + expiration, tz=objects.now().tzinfo))}}
    if ref is None:
        out["spec"].pop("boundObjectRef")
    return json_response(201, out)

