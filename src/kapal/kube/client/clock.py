"""Time as components see it: the wall clock, or one running N times faster so tests can watch a CronJob fire
every minute within seconds (a `ScaledClock` starts at the real time and runs `speed` times faster)."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> dt.datetime:
        """The current time, timezone-aware (UTC)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Sleep `seconds` of this clock's time."""
        ...

    def real_seconds(self, seconds: float) -> float:
        """How long `seconds` of this clock's time last in real time."""
        ...


class RealClock:
    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def real_seconds(self, seconds: float) -> float:
        return seconds


class ScaledClock:
    def __init__(self, speed: float, start: dt.datetime | None = None) -> None:
        if speed <= 0:
            raise ValueError("clock speed must be positive")
        self.speed = speed
        self._origin = start or dt.datetime.now(dt.UTC)
        self._mono = time.monotonic()

    def now(self) -> dt.datetime:
        return self._origin + dt.timedelta(seconds=(time.monotonic() - self._mono) * self.speed)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self.speed)

    def real_seconds(self, seconds: float) -> float:
        return seconds / self.speed


def clock_for(speed: float | None) -> Clock:
    return RealClock() if not speed or speed == 1 else ScaledClock(speed)


def format_time(t: dt.datetime) -> str:
    """RFC 3339 with second precision, as metav1.Time serialises."""
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_micro_time(t: dt.datetime) -> str:
    """RFC 3339 with microseconds, as metav1.MicroTime serialises (Lease renewTime, events.k8s.io eventTime)."""
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
