"""Kubernetes `Status` errors, worded and coded as upstream's API server words them.

Core code raises kapal.errors; this module adds the few HTTP-only failures
(405, 406, 413, 415, 422, 429, 504) and the constructors that give common
errors their upstream message and `details`, then turns any exception
into a (code, Status) pair exactly once, at the edge.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from kapal import errors
from kapal.kube.meta.resources import ResourceType

log = logging.getLogger(__name__)


class InvalidObject(errors.Invalid):
    """422: the object breaks validation rules; carries field causes."""

    http_status = 422
    reason = "Invalid"


class MethodNotAllowed(errors.KapalError):
    http_status = 405
    reason = "MethodNotAllowed"


class NotAcceptable(errors.KapalError):
    http_status = 406
    reason = "NotAcceptable"


class Gone(errors.KapalError):
    http_status = 410
    reason = "Expired"


class RequestEntityTooLarge(errors.KapalError):
    http_status = 413
    reason = "RequestEntityTooLarge"


class UnsupportedMediaType(errors.KapalError):
    http_status = 415
    reason = "UnsupportedMediaType"


class TooManyRequests(errors.KapalError):
    http_status = 429
    reason = "TooManyRequests"


class ServerTimeout(errors.KapalError):
    http_status = 504
    reason = "Timeout"


@dataclass(frozen=True)
class Cause:
    field: str
    reason: str
    message: str

    def as_dict(self) -> dict[str, str]:
        d = {"reason": self.reason, "message": self.message}
        if self.field:
            d["field"] = self.field
        return d


def qualified(r: ResourceType, sub: str = "") -> str:
    """`pods`, `deployments.apps`, `pods/status`: how upstream names a resource in messages."""
    res = r.plural + (f"/{sub}" if sub else "")
    return f"{res}.{r.group}" if r.group else res


def _details(err: errors.KapalError, **details: Any) -> errors.KapalError:
    err.details = {k: v for k, v in details.items() if v not in (None, "")}  # type: ignore[attr-defined]
    return err


def not_found(r: ResourceType, name: str) -> errors.NotFound:
    return _details(errors.NotFound(f'{qualified(r)} "{name}" not found'),  # type: ignore[return-value]
                    name=name, group=r.group, kind=r.plural)


def already_exists(r: ResourceType, name: str) -> errors.AlreadyExists:
    return _details(errors.AlreadyExists(f'{qualified(r)} "{name}" already exists'),  # type: ignore[return-value]
                    name=name, group=r.group, kind=r.plural)


class StaleRevision(errors.Conflict):
    """A compare-and-swap lost: the object moved on since it was read (retry with a fresh read)."""


def conflict(r: ResourceType, name: str, why: str, cls: type[errors.Conflict] = errors.Conflict) -> errors.Conflict:
    return _details(cls(f'Operation cannot be fulfilled on {qualified(r)} "{name}": {why}'),  # type: ignore[return-value]
                    name=name, group=r.group, kind=r.plural)


STALE = "the object has been modified; please apply your changes to the latest version and try again"


def cause_text(c: Cause) -> str:
    return c.message if not c.field or c.message.startswith(c.field + ":") else f"{c.field}: {c.message}"


def invalid(r: ResourceType, name: str, causes: list[Cause]) -> InvalidObject:
    kind = f"{r.kind}.{r.group}" if r.group else r.kind
    texts = [cause_text(c) for c in causes]
    body = texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
    err = InvalidObject(f'{kind} "{name}" is invalid: {body}')
    err.causes = causes  # type: ignore[attr-defined]
    return _details(err, name=name, group=r.group, kind=r.kind)  # type: ignore[return-value]


def forbidden(user: str, verb: str, r: ResourceType | None, resource: str, group: str, namespace: str | None,
              name: str | None, sub: str = "", why: str = "") -> errors.Forbidden:
    """`pods "x" is forbidden: User "u" cannot get resource "pods" in API group "" in the namespace "n"`."""
    res = resource + (f"/{sub}" if sub else "")
    subject = f"{res}.{group}" if group else res
    if name:
        subject += f' "{name}"'
    scope = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
    message = (f'{subject} is forbidden: User "{user}" cannot {verb} resource "{res}" in API group "{group}" {scope}'
               + (f": {why}" if why else ""))
    return _details(errors.Forbidden(message), name=name, group=group, kind=resource)  # type: ignore[return-value]


def forbidden_admission(r: ResourceType, name: str, why: str) -> errors.Forbidden:
    subject = qualified(r) + (f' "{name}"' if name else "")
    return _details(errors.Forbidden(f"{subject} is forbidden: {why}"),  # type: ignore[return-value]
                    name=name, group=r.group, kind=r.plural)


def status_body(err: BaseException) -> tuple[int, dict[str, Any]]:
    """The HTTP code and the Status object for any exception (unknown ones become a 500 and are logged)."""
    if isinstance(err, errors.KapalError):
        code, reason, message = err.http_status, err.reason, str(err) or err.reason
        if isinstance(err, errors.Unsupported):
            code, reason = 400, "BadRequest"
    else:
        log.exception("internal error", exc_info=err)
        code, reason, message = 500, "InternalError", f"Internal error occurred: {err}"
    body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                            "message": message, "reason": reason, "code": code}
    details = dict(getattr(err, "details", None) or {})
    causes = getattr(err, "causes", None)
    if causes:
        details["causes"] = [c.as_dict() if isinstance(c, Cause) else c for c in causes]
    retry = getattr(err, "retry_after", None)
    if retry:
        details["retryAfterSeconds"] = retry
    if details:
        body["details"] = details
    if reason == "BadRequest" and code == 400 and not details:
        body.pop("details", None)
    return code, body


def success(r: ResourceType | None, name: str, uid: str = "") -> dict[str, Any]:
    details: dict[str, Any] = {"name": name}
    if r is not None:
        if r.group:
            details["group"] = r.group
        details["kind"] = r.plural
    if uid:
        details["uid"] = uid
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}
