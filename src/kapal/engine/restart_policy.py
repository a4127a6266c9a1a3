"""Restart policies as dockerd applies them: which exits bring a container back, and after how long.

`no` never; `always` after any exit; `unless-stopped` unless the user stopped it; `on-failure[:N]` after a
non-zero exit, at most N times (0: no limit). Restarts wait 100 ms, doubling each time up to a minute;
a run of 10 s or more starts the wait again at 100 ms. A stop or kill by the user cancels the pending
decision (the engine's own shutdown does not count as the user's).
"""

from __future__ import annotations

from kapal.errors import Invalid

NAMES = ("no", "always", "on-failure", "unless-stopped")
FIRST_DELAY = 0.1
MAX_DELAY = 60.0
RESET_AFTER = 10.0


def normalize(policy: dict | None, auto_remove: bool = False) -> dict:
    """HostConfig.RestartPolicy checked as dockerd checks it, with Name "" read as "no"."""
    policy = policy or {}
    name = policy.get("Name") or "no"
    try:
        count = int(policy.get("MaximumRetryCount") or 0)
    except (TypeError, ValueError):
        raise Invalid(f"invalid restart policy: maximum retry count {policy.get('MaximumRetryCount')!r} "
                      "is not a number") from None
    if name not in NAMES:
        raise Invalid(f"invalid restart policy: unknown policy '{name}'; use one of 'no', 'always', "
                      "'on-failure', or 'unless-stopped'")
    if name == "on-failure" and count < 0:
        raise Invalid("invalid restart policy: maximum retry count cannot be negative")
    if name != "on-failure" and count:
        message = "invalid restart policy: maximum retry count can only be used with 'on-failure'"
        raise Invalid(message + (" and cannot be negative" if count < 0 else ""))
    if auto_remove and name != "no":
        raise Invalid("can't create 'AutoRemove' container with restart policy")
    return {"Name": name, "MaximumRetryCount": count}


def wants_restart(policy: dict, exit_code: int, manually_stopped: bool, restart_count: int) -> bool:
    name = (policy or {}).get("Name") or "no"
    if name == "always":
        return True
    if name == "unless-stopped":
        return not manually_stopped
    if name == "on-failure":
        limit = int(policy.get("MaximumRetryCount") or 0)
        return exit_code != 0 and (limit == 0 or restart_count < limit)
    return False


class Backoff:
    """One container's restart decisions: the next delay, or None; `cancel()` (a user's stop) ends them."""

    def __init__(self) -> None:
        self.delay = 0.0
        self.cancelled = False

    def next(self, policy: dict, exit_code: int, manually_stopped: bool, ran_seconds: float,
             restart_count: int) -> float | None:
        if ((policy or {}).get("Name") or "no") == "no" or self.cancelled:
            return None
        if ran_seconds >= RESET_AFTER:
            self.delay = 0.0
        self.delay = FIRST_DELAY if self.delay == 0 else min(self.delay * 2, MAX_DELAY)
        if not wants_restart(policy, exit_code, manually_stopped, restart_count):
            return None
        return self.delay

    def cancel(self) -> None:
        self.cancelled = True

    def reset(self) -> None:
        self.delay = 0.0
        self.cancelled = False
