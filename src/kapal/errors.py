"""The one error vocabulary of kapal.

Core code raises these; each edge translates them exactly once: HTTP status
(Docker JSON, Kubernetes Status), or a process exit code. Messages are
written for the user: say what was wrong and what to do about it.
"""

from __future__ import annotations


class KapalError(Exception):
    """Base of every error kapal reports to a user."""

    http_status = 500
    reason = "InternalError"


class NotFound(KapalError):
    http_status = 404
    reason = "NotFound"


class AlreadyExists(KapalError):
    http_status = 409
    reason = "AlreadyExists"


class Conflict(KapalError):
    """The object changed meanwhile, or the operation clashes with its state."""

    http_status = 409
    reason = "Conflict"


class Invalid(KapalError):
    """The input is malformed or breaks a rule; the caller must change it."""

    http_status = 400
    reason = "BadRequest"


class FailedPrecondition(KapalError):
    """The world is not in a state that allows this (e.g. container not running)."""

    http_status = 409
    reason = "Conflict"


class Unsupported(KapalError):
    """kapal does not implement this option or feature; never ignored silently."""

    http_status = 501
    reason = "NotImplemented"


class Unauthorized(KapalError):
    http_status = 401
    reason = "Unauthorized"


class Forbidden(KapalError):
    http_status = 403
    reason = "Forbidden"


class Temporary(KapalError):
    """Retry later: a transient failure (busy resource, server starting)."""

    http_status = 503
    reason = "ServiceUnavailable"

    def __init__(self, message: str = "", delay: float = 1.0) -> None:
        super().__init__(message)
        self.delay = delay


# Docker CLI exit codes: 125 daemon/usage error, 126 cannot invoke, 127 not found.
EXIT_DAEMON_ERROR = 125
EXIT_CANNOT_INVOKE = 126
EXIT_NOT_FOUND = 127
