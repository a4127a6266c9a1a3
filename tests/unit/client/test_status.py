"""Status answers become the kapal error a caller can branch on, keeping the server's message and Status."""

from __future__ import annotations

import pytest

from kapal import errors
from kapal.kube.client.status import ResourceExpired, TooManyRequests, error_from_status


@pytest.mark.parametrize(("code", "reason", "cls"), [
    (404, "NotFound", errors.NotFound),
    (409, "AlreadyExists", errors.AlreadyExists),
    (409, "Conflict", errors.Conflict),
    (422, "Invalid", errors.Invalid),
    (400, "BadRequest", errors.Invalid),
    (401, "Unauthorized", errors.Unauthorized),
    (403, "Forbidden", errors.Forbidden),
    (410, "Expired", ResourceExpired),
    (410, "Gone", ResourceExpired),
    (429, "TooManyRequests", TooManyRequests),
    (503, "ServiceUnavailable", errors.Temporary),
    (500, "InternalError", errors.Temporary),
    (405, "MethodNotAllowed", errors.Unsupported),
])
def test_reason_picks_the_error(code, reason, cls):
    body = {"kind": "Status", "status": "Failure", "reason": reason, "code": code, "message": f"m {reason}"}
    e = error_from_status(code, body)
    assert type(e) is cls
    assert str(e) == f"m {reason}"
    assert e.code == code
    assert e.status["reason"] == reason


def test_code_decides_without_a_status():
    e = error_from_status(404, b"404 page not found\n")
    assert isinstance(e, errors.NotFound)
    assert str(e) == "404 page not found"


def test_retry_after_sets_the_delay():
    e = error_from_status(429, {"reason": "TooManyRequests", "message": "slow down"}, retry_after="3")
    assert isinstance(e, errors.Temporary)
    assert e.delay == 3.0
