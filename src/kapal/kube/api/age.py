"""Ages as kubectl prints them (`45s`, `5m12s`, `3h20m`, `2d4h`, `400d`, `3y10d`)."""

from __future__ import annotations

import datetime as dt


def human_duration(seconds: float) -> str:
    """Upstream's HumanDuration: precise when short, coarser as durations grow."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 60 * 2:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        rest = s % 60
        return f"{minutes}m" if rest == 0 else f"{minutes}m{rest}s"
    if minutes < 60 * 3:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h" if rest == 0 else f"{hours}h{rest}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d" if rest == 0 else f"{hours // 24}d{rest}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        years = hours // 24 // 365
        return f"{years}y" if days == 0 else f"{years}y{days}d"
    return f"{hours // 24 // 365}y"


def parse_time(value: str) -> dt.datetime:
    """An RFC 3339 timestamp (`2024-01-02T03:04:05Z`, optional fraction or offset) as an aware datetime."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    if "." in text:
        head, _, tail = text.partition(".")
        digits = "".join(ch for ch in tail if ch.isdigit())
        zone = tail[len(digits):]
        text = f"{head}.{digits[:6].ljust(6, '0')}{zone}"
    t = dt.datetime.fromisoformat(text)
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def since(timestamp: str | None, now: dt.datetime) -> str:
    """Age of `timestamp` at `now`, or `<unknown>` when there is none (or it cannot be read)."""
    if not timestamp:
        return "<unknown>"
    try:
        then = parse_time(timestamp)
    except ValueError:
        return "<unknown>"
    return human_duration((now - then).total_seconds())


def between(start: str | None, end: str | None) -> str:
    if not start or not end:
        return ""
    try:
        return human_duration((parse_time(end) - parse_time(start)).total_seconds())
    except ValueError:
        return ""
