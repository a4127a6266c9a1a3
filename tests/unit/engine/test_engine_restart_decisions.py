"""Restart policies decide as dockerd's restart manager: which exits restart, the backoff, the checks."""

from __future__ import annotations

import pytest

from kapal.engine.restart_policy import Backoff, normalize, wants_restart
from kapal.errors import Invalid

ALWAYS = {"Name": "always", "MaximumRetryCount": 0}
UNLESS = {"Name": "unless-stopped", "MaximumRetryCount": 0}


def on_failure(n: int) -> dict:
    return {"Name": "on-failure", "MaximumRetryCount": n}


def test_which_exits_restart():
    assert wants_restart(ALWAYS, 0, manually_stopped=True, restart_count=99)
    assert wants_restart(UNLESS, 0, manually_stopped=False, restart_count=0)
    assert not wants_restart(UNLESS, 1, manually_stopped=True, restart_count=0)
    assert wants_restart(on_failure(0), 1, False, 1000)
    assert not wants_restart(on_failure(0), 0, False, 0)
    assert wants_restart(on_failure(3), 1, False, 2)
    assert not wants_restart(on_failure(3), 1, False, 3)
    assert not wants_restart({"Name": "no"}, 1, False, 0)


def test_backoff_doubles_to_a_minute_and_resets_after_ten_seconds_of_running():
    b = Backoff()
    delays = [b.next(ALWAYS, 1, False, 0.5, i) for i in range(12)]
    assert delays[:4] == [0.1, 0.2, 0.4, 0.8]
    assert delays[-1] == 60.0 and max(delays) == 60.0
    assert b.next(ALWAYS, 1, False, 10.0, 12) == 0.1
    assert b.next(ALWAYS, 1, False, 1.0, 13) == 0.2


def test_a_users_stop_cancels_until_reset():
    b = Backoff()
    b.cancel()
    assert b.next(ALWAYS, 137, False, 1, 0) is None
    b.reset()
    assert b.next(ALWAYS, 137, False, 1, 0) == 0.1
    assert b.next({"Name": "no"}, 1, False, 1, 0) is None


@pytest.mark.parametrize("policy,normal", [
    (None, {"Name": "no", "MaximumRetryCount": 0}),
    ({"Name": ""}, {"Name": "no", "MaximumRetryCount": 0}),
    ({"Name": "on-failure", "MaximumRetryCount": 5}, on_failure(5)),
    ({"Name": "unless-stopped"}, UNLESS),
])
def test_normalize(policy, normal):
    assert normalize(policy) == normal


@pytest.mark.parametrize("policy,auto_remove,message", [
    ({"Name": "always", "MaximumRetryCount": 2}, False, "can only be used with 'on-failure'"),
    ({"Name": "on-failure", "MaximumRetryCount": -1}, False, "cannot be negative"),
    ({"Name": "never"}, False, "unknown policy 'never'"),
    ({"Name": "on-failure"}, True, "can't create 'AutoRemove' container with restart policy"),
])
def test_dockerds_refusals(policy, auto_remove, message):
    with pytest.raises(Invalid, match=message):
        normalize(policy, auto_remove)
