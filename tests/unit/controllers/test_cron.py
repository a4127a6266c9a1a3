"""CronJob schedules: five fields, macros, @every, time zones (also as a TZ= prefix), missed starts."""

from __future__ import annotations

import datetime as dt

import pytest

from kapal import errors
from kapal.kube.controllers import cron

UTC = dt.UTC


def t(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def test_most_recent_and_missed():
    s = cron.parse("*/5 * * * *")
    latest, missed = cron.most_recent(s, t(2026, 1, 1, 0, 1), t(2026, 1, 1, 0, 17))
    assert latest == t(2026, 1, 1, 0, 15) and missed == 3
    assert cron.most_recent(s, t(2026, 1, 1, 0, 1), t(2026, 1, 1, 0, 4)) == (None, 0)
    assert s.next_after(t(2026, 1, 1, 0, 15)) == t(2026, 1, 1, 0, 20)


def test_time_zone_field_and_prefix():
    berlin = cron.parse("0 9 * * *", "Europe/Berlin")
    assert berlin.next_after(t(2026, 1, 1, 0, 0)) == t(2026, 1, 1, 8, 0)  # 09:00 CET
    assert berlin.next_after(t(2026, 7, 1, 0, 0)) == t(2026, 7, 1, 7, 0)  # 09:00 CEST
    prefixed = cron.parse("CRON_TZ=America/New_York 0 9 * * *")
    assert prefixed.next_after(t(2026, 1, 1, 0, 0)) == t(2026, 1, 1, 14, 0)


def test_macros_and_every():
    assert cron.parse("@hourly").next_after(t(2026, 1, 1, 0, 30)) == t(2026, 1, 1, 1, 0)
    assert cron.parse("@midnight").next_after(t(2026, 1, 1, 0, 30)) == t(2026, 1, 2, 0, 0)
    every = cron.parse("@every 90s")
    assert every.next_after(t(2026, 1, 1, 0, 0)) == t(2026, 1, 1, 0, 1, 30)


def test_too_many_missed_jumps_to_the_last():
    s = cron.parse("* * * * *")
    latest, missed = cron.most_recent(s, t(2026, 1, 1), t(2026, 1, 2))
    assert missed > cron.MAX_MISSED
    assert latest == t(2026, 1, 2)


@pytest.mark.parametrize("bad", ["61 * * * *", "* * *", "nonsense"])
def test_invalid_schedules(bad):
    with pytest.raises(errors.Invalid):
        cron.parse(bad)


def test_unknown_time_zone():
    with pytest.raises(errors.Invalid, match="Mars/Olympus"):
        cron.parse("* * * * *", "Mars/Olympus")


def test_job_name_is_minutes_since_epoch():
    assert cron.job_name("tick", t(2026, 1, 1, 0, 5)) == f"tick-{int(t(2026, 1, 1, 0, 5).timestamp()) // 60}"
