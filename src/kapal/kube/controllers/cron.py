"""CronJob schedules, pure: parse a standard five-field schedule (or @hourly-style macros, or `@every 90s`) in a
time zone (spec.timeZone, or a CRON_TZ=/TZ= prefix), and find the most recent start due and the next one."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass

from croniter import croniter

from kapal import errors

MAX_MISSED = 100


@dataclass(frozen=True)
class Schedule:
    expression: str
    tz: dt.tzinfo
    every: dt.timedelta | None = None

    def next_after(self, t: dt.datetime) -> dt.datetime:
        if self.every is not None:
            return t + self.every
        return croniter(self.expression, t.astimezone(self.tz)).get_next(dt.datetime).astimezone(dt.UTC)


def _duration(text: str) -> dt.timedelta:
    units = {"h": 3600, "m": 60, "s": 1}
    total, num = 0.0, ""
    for ch in text.strip():
        if ch.isdigit() or ch == ".":
            num += ch
        elif ch in units and num:
            total += float(num) * units[ch]
            num = ""
        else:
            raise errors.Invalid(f"invalid duration in @every: {text!r}")
    if num or total <= 0:
        raise errors.Invalid(f"invalid duration in @every: {text!r}")
    return dt.timedelta(seconds=total)


def parse(schedule: str, time_zone: str | None = None) -> Schedule:
    text = schedule.strip()
    zone = time_zone
    for prefix in ("CRON_TZ=", "TZ="):
        if text.startswith(prefix):
            zone_text, _, text = text[len(prefix):].partition(" ")
            zone = zone or zone_text
            text = text.strip()
    try:
        tz: dt.tzinfo = zoneinfo.ZoneInfo(zone) if zone else dt.UTC
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as e:
        raise errors.Invalid(f'unknown time zone "{zone}"') from e
    if text.startswith("@every "):
        return Schedule(text, tz, _duration(text[len("@every "):]))
    if text == "@midnight":
        text = "@daily"
    if not croniter.is_valid(text):
        raise errors.Invalid(f"unparseable schedule {schedule!r}: expected five fields (minute hour "
                             "day-of-month month day-of-week) or a macro like @hourly")
    return Schedule(text, tz)


def most_recent(schedule: Schedule, earliest: dt.datetime, now: dt.datetime) -> tuple[dt.datetime | None, int]:
    """The latest start time in (earliest, now] and how many starts fell in that window (missed ones included)."""
    latest: dt.datetime | None = None
    missed = 0
    t = schedule.next_after(earliest)
    while t <= now:
        latest = t
        missed += 1
        if missed > MAX_MISSED:
            # too many to walk one by one: jump to the last one before now
            back = croniter(schedule.expression, (now + dt.timedelta(seconds=1)).astimezone(schedule.tz)) \
                if schedule.every is None else None
            if back is not None:
                latest = back.get_prev(dt.datetime).astimezone(dt.UTC)
            else:
                assert schedule.every is not None
                steps = int((now - t) / schedule.every)
                latest = t + steps * schedule.every
            break
        t = schedule.next_after(t)
    return latest, missed


def job_name(cronjob_name: str, scheduled: dt.datetime) -> str:
    """NAME-<minutes since the epoch>: the same start always gets the same Job name (no duplicates)."""
    return f"{cronjob_name}-{int(scheduled.timestamp()) // 60}"
