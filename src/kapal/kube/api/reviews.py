"""Create-only review kinds, answered and never stored: who am I, may I, what may I, is this token valid."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from kapal import errors
from kapal.kube.api.authn import UserInfo
from kapal.kube.api.authz import Attributes
from kapal.kube.api.requestinfo import RequestInfo
from kapal.kube.api.rest import json_response

if TYPE_CHECKING:
    from kapal.kube.api.rest import Rest


async def handle(rest: Rest, request: web.Request, info: RequestInfo, user: UserInfo) -> web.Response:
    r = info.resource
    assert r is not None
    if r.kind == "Binding":
        from kapal.kube.api import subresources

        return await subresources.binding(rest, request, info)
    warnings: list[str] = []
    obj = await rest.read_object(request, r, rest.validation_mode(request), warnings)
    spec = obj.get("spec") or {}
    if not isinstance(spec, dict):
        raise errors.Invalid("spec must be an object")
    out: dict[str, Any] = {"kind": r.kind, "apiVersion": r.api_version,
                           "metadata": {**(obj.get("metadata") or {}), "creationTimestamp": None}}
    if r.kind == "SelfSubjectReview":
        out["status"] = {"userInfo": user.as_dict()}
    elif r.kind == "TokenReview":
        out["spec"] = spec
        out["status"] = _token_review(rest, spec)
    elif r.kind in ("SelfSubjectAccessReview", "SubjectAccessReview", "LocalSubjectAccessReview"):
        subject = user
        if r.kind != "SelfSubjectAccessReview":
            if not spec.get("user") and not spec.get("groups"):
                raise errors.Invalid(f'{r.kind}.authorization.k8s.io "" is invalid: spec.user: Invalid value: "": '
                                     "at least one of user or group must be specified")
            extra = {k: list(v) for k, v in (spec.get("extra") or {}).items()}
            subject = UserInfo(spec.get("user", ""), spec.get("uid", ""), tuple(spec.get("groups") or ()), extra)
        if r.kind == "LocalSubjectAccessReview":
            ns = (spec.get("resourceAttributes") or {}).get("namespace")
            if ns != info.namespace:
                raise errors.Invalid(f'LocalSubjectAccessReview.authorization.k8s.io "" is invalid: '
                                     f'spec.resourceAttributes.namespace: Invalid value: "{ns}": must match '
                                     f'metadata.namespace')
        out["spec"] = spec
        out["status"] = _access_review(rest, subject, spec)
    elif r.kind == "SelfSubjectRulesReview":
        ns = spec.get("namespace", "")
        resource_rules, non_resource = rest.ctx.authorizer.rules_for(user, ns)
        out["spec"] = spec
        out["status"] = {"resourceRules": [_rule(x, resource=True) for x in resource_rules],
                         "nonResourceRules": [_rule(x, resource=False) for x in non_resource],
                         "incomplete": False}
    else:
        raise errors.Unsupported(f"{r.kind} is not implemented")
    return json_response(201, out, warnings)


def _rule(rule: dict[str, Any], resource: bool) -> dict[str, Any]:
    if not resource:
        return {"verbs": list(rule.get("verbs") or []), "nonResourceURLs": list(rule.get("nonResourceURLs") or [])}
    out = {"verbs": list(rule.get("verbs") or []), "apiGroups": list(rule.get("apiGroups") or []),
           "resources": list(rule.get("resources") or [])}
    if rule.get("resourceNames"):
        out["resourceNames"] = list(rule["resourceNames"])
    return out


def _access_review(rest: Rest, user: UserInfo, spec: dict[str, Any]) -> dict[str, Any]:
    ra = spec.get("resourceAttributes")
    nra = spec.get("nonResourceAttributes")
    if ra:
        attrs = Attributes(user=user, verb=ra.get("verb", ""), namespace=ra.get("namespace", "") or "",
                           api_group=ra.get("group", "") or "", api_version=ra.get("version", "") or "",
                           resource=ra.get("resource", "") or "", subresource=ra.get("subresource", "") or "",
                           name=ra.get("name", "") or "")
    elif nra:
        attrs = Attributes(user=user, verb=nra.get("verb", ""), is_resource=False, path=nra.get("path", ""))
    else:
        raise errors.Invalid("spec.resourceAttributes: Required value: exactly one of nonResourceAttributes or "
                             "resourceAttributes must be specified")
    allowed, reason = rest.ctx.authorizer.authorize(attrs)
    out: dict[str, Any] = {"allowed": allowed}
    if allowed and reason:
        out["reason"] = reason if reason != "allowed by RBAC" else "RBAC: allowed"
    return out


def _token_review(rest: Rest, spec: dict[str, Any]) -> dict[str, Any]:
    token = spec.get("token") or ""
    try:
        user = rest.ctx.authenticator.from_token(token)
    except errors.Unauthorized as e:
        return {"authenticated": False, "user": {}, "error": str(e) or "token is invalid"}
    out: dict[str, Any] = {"authenticated": True, "user": user.as_dict()}
    audiences = spec.get("audiences")
    if audiences:
        out["audiences"] = list(audiences)
    else:
        auds = rest.ctx.authenticator.audiences
        if auds:
            out["audiences"] = list(auds)
    return out

