"""Kubernetes `Status` answers turned into kapal.errors, keeping the Status for callers that branch on it.

The API server speaks HTTP codes and Status reasons; components speak kapal.errors. This is the one place
that translates, as lightkube's ApiError does: the exception carries `.code`, `.reason` and `.status`.
"""

from __future__ import annotations

import json
from typing import Any

from kapal import errors


class ResourceExpired(errors.KapalError):
    """410 Gone: the resourceVersion or continue token is older than the server's history; list again."""

    http_status = 410
    reason = "Expired"


class TooManyRequests(errors.Temporary):
    http_status = 429
    reason = "TooManyRequests"


_BY_REASON: dict[str, type[errors.KapalError]] = {
    "NotFound": errors.NotFound,
    "AlreadyExists": errors.AlreadyExists,
    "Conflict": errors.Conflict,
    "Invalid": errors.Invalid,
    "BadRequest": errors.Invalid,
    "Unauthorized": errors.Unauthorized,
    "Forbidden": errors.Forbidden,
    "Expired": ResourceExpired,
    "Gone": ResourceExpired,
    "TooManyRequests": TooManyRequests,
    "MethodNotAllowed": errors.Unsupported,
    "UnsupportedMediaType": errors.Unsupported,
    "NotAcceptable": errors.Unsupported,
    "ServiceUnavailable": errors.Temporary,
    "Timeout": errors.Temporary,
    "ServerTimeout": errors.Temporary,
}

_BY_CODE: dict[int, type[errors.KapalError]] = {
    400: errors.Invalid, 401: errors.Unauthorized, 403: errors.Forbidden, 404: errors.NotFound,
    405: errors.Unsupported, 409: errors.Conflict, 410: ResourceExpired, 415: errors.Unsupported,
    422: errors.Invalid, 429: TooManyRequests, 500: errors.Temporary, 502: errors.Temporary, 503: errors.Temporary,
    504: errors.Temporary,
}


def parse_status(body: bytes | str | dict[str, Any] | None) -> dict[str, Any]:
    """The Status object in a response body, or a minimal one when the body is not a Status."""
    if isinstance(body, dict):
        return body
    if body:
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            text = body.decode(errors="replace") if isinstance(body, bytes) else body
            return {"kind": "Status", "status": "Failure", "message": text.strip()[:500]}
        if isinstance(data, dict):
            return data
    return {"kind": "Status", "status": "Failure"}


def error_from_status(code: int, body: bytes | str | dict[str, Any] | None,
                      retry_after: str | None = None) -> errors.KapalError:
    """The kapal error for an HTTP failure: by the Status reason first, the HTTP code second."""
    st = parse_status(body)
    reason = str(st.get("reason") or "")
    cls = _BY_REASON.get(reason) or _BY_CODE.get(code) or errors.KapalError
    message = str(st.get("message") or f"the server answered {code} {reason}".strip())
    if issubclass(cls, errors.Temporary):
        delay = 1.0
        details = st.get("details") or {}
        if retry_after and retry_after.isdigit():
            delay = float(retry_after)
        elif isinstance(details.get("retryAfterSeconds"), int):
            delay = float(details["retryAfterSeconds"])
        err: errors.KapalError = cls(message, delay=delay)
    else:
        err = cls(message)
    err.code = code  # type: ignore[attr-defined]
    err.status = st  # type: ignore[attr-defined]
    err.status_reason = reason  # type: ignore[attr-defined]
    return err


def is_conflict(e: BaseException) -> bool:
    """A lost optimistic-concurrency race (409 Conflict, not AlreadyExists): re-read and retry."""
    return isinstance(e, errors.Conflict)
