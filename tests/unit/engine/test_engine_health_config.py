"""Health check configuration as dockerd and the Dockerfile parser read it: HEALTHCHECK instructions, Go
durations, the merge of a run's settings over the image's, the probe command, the create checks."""

from __future__ import annotations

import pytest

from kapal.engine import health
from kapal.engine.changes import apply_changes
from kapal.errors import Invalid


def test_healthcheck_instructions():
    assert apply_changes({}, ["HEALTHCHECK --interval=5s --timeout=3s --start-period=1m --retries=4 CMD curl -f x"]) \
        == {"Healthcheck": {"Test": ["CMD-SHELL", "curl -f x"], "Interval": 5 * 10**9, "Timeout": 3 * 10**9,
                            "StartPeriod": 60 * 10**9, "Retries": 4}}
    assert health.parse_instruction('CMD ["pg_isready", "-q"]') == {"Test": ["CMD", "pg_isready", "-q"]}
    assert health.parse_instruction("none") == {"Test": ["NONE"]}
    for bad in ("--bogus=1 CMD true", "CMD", "RUN true", "--retries=0 CMD true", "--interval=5 CMD true"):
        with pytest.raises(Invalid):
            health.parse_instruction(bad)


def test_go_durations_both_ways():
    assert [health.parse_go_duration(t) for t in ("200ms", "1m30s", "1.5s", "0", "2h")] == \
        [200_000_000, 90 * 10**9, 1_500_000_000, 0, 7200 * 10**9]
    assert [health.go_duration(s) for s in (0.2, 30, 60, 90)] == ["200ms", "30s", "1m0s", "1m30s"]


def test_the_runs_settings_go_over_the_images_field_by_field():
    image = {"Test": ["CMD", "true"], "Interval": 5, "Retries": 2}
    assert health.merge(image, None) == image
    assert health.merge(image, {"Test": None, "Interval": 7, "Timeout": 0}) == \
        {"Test": ["CMD", "true"], "Interval": 7, "Timeout": 0, "Retries": 2}
    assert health.merge(image, {"Test": ["NONE"]})["Test"] == ["NONE"]


def test_probe_commands():
    assert health.probe_command({"Test": ["CMD-SHELL", "exit 1"]}) == ["/bin/sh", "-c", "exit 1"]
    assert health.probe_command({"Test": ["CMD", "true", "x"]}) == ["true", "x"]
    assert health.probe_command({"Test": ["NONE"]}) is None and health.probe_command(None) is None


@pytest.mark.parametrize(("check", "words"), [
    ({"Test": ["CMD", "true"], "Interval": 500_000}, "Interval in Healthcheck cannot be less than 1ms"),
    ({"Test": ["CMD", "true"], "Timeout": 10}, "Timeout in Healthcheck cannot be less than 1ms"),
    ({"Test": ["CMD", "true"], "Retries": -1}, "Retries in Healthcheck cannot be negative"),
    ({"Test": ["CMD", "true"], "StartInterval": 1}, "StartInterval in Healthcheck cannot be less than 1ms"),
])
def test_create_checks(check, words):
    with pytest.raises(Invalid, match=words):
        health.validate(check)


def test_status_words():
    assert health.status_suffix({"Health": {"Status": "starting"}}) == " (health: starting)"
    assert health.status_suffix({"Health": {"Status": "healthy"}}) == " (healthy)"
    assert health.status_suffix({}) == "" and health.list_status({}) == "none"
