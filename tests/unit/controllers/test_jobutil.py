"""Job arithmetic: completion index strings, how many pods to run, backoff and deadline checks."""

from __future__ import annotations

import datetime as dt

from kapal.kube.controllers import jobutil as ju


def job(**spec):
    return {"metadata": {"name": "j"}, "spec": spec, "status": {}}


def test_index_strings_round_trip():
    assert ju.parse_indexes("0-2,5,7-8") == {0, 1, 2, 5, 7, 8}
    assert ju.parse_indexes("0-9", limit=3) == {0, 1, 2}
    assert ju.format_indexes({0, 1, 2, 5, 7, 8}) == "0-2,5,7,8"
    assert ju.format_indexes([3]) == "3"
    assert ju.format_indexes([]) == ""


def test_want_active():
    assert ju.want_active(job(parallelism=2, completions=4), succeeded=0, active=0) == 2
    assert ju.want_active(job(parallelism=2, completions=4), succeeded=3, active=1) == 1
    assert ju.want_active(job(parallelism=3), succeeded=0, active=0) == 3  # a work queue
    assert ju.want_active(job(parallelism=3), succeeded=1, active=2) == 2  # no new work once one succeeded


def test_backoff_on_failure_counts_restarts():
    j = job(backoffLimit=2, template={"spec": {"restartPolicy": "OnFailure"}})
    pod = {"status": {"containerStatuses": [{"restartCount": 2}]}}
    assert ju.past_backoff_limit_on_failure(j, [pod])
    assert not ju.past_backoff_limit_on_failure(j, [{"status": {"containerStatuses": [{"restartCount": 1}]}}])
    never = job(backoffLimit=2, template={"spec": {"restartPolicy": "Never"}})
    assert not ju.past_backoff_limit_on_failure(never, [pod])


def test_deadline():
    j = job(activeDeadlineSeconds=10)
    j["status"]["startTime"] = "2026-01-01T00:00:00Z"
    assert ju.past_deadline(j, dt.datetime(2026, 1, 1, 0, 0, 4, tzinfo=dt.UTC)) == 6
    assert ju.past_deadline(j, dt.datetime(2026, 1, 1, 0, 0, 12, tzinfo=dt.UTC)) == -2
    assert ju.past_deadline(job(), dt.datetime(2026, 1, 1, tzinfo=dt.UTC)) is None


def test_set_condition_changes_only_on_news():
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    status: dict = {}
    assert ju.set_condition(status, ju.condition("Complete", "CompletionsReached", "done", now))
    assert not ju.set_condition(status, ju.condition("Complete", "CompletionsReached", "done", now))
    assert ju.is_finished({"status": status})
