"""Ages print as kubectl prints them."""

import datetime as dt

import pytest

from kapal.kube.api.age import human_duration, parse_time, since


@pytest.mark.parametrize("seconds, text", [
    (-5, "<invalid>"), (-1, "0s"), (0, "0s"), (59, "59s"), (119, "119s"), (120, "2m"), (125, "2m5s"),
    (599, "9m59s"), (600, "10m"), (179 * 60, "179m"), (3 * 3600, "3h"), (3 * 3600 + 60 * 20, "3h20m"),
    (8 * 3600, "8h"), (47 * 3600, "47h"), (48 * 3600, "2d"), (52 * 3600, "2d4h"), (8 * 86400, "8d"),
    (729 * 86400, "729d"), (2 * 365 * 86400, "2y"), (3 * 365 * 86400 + 10 * 86400, "3y10d"),
    (9 * 365 * 86400, "9y"),
])
def test_human_duration(seconds, text):
    assert human_duration(seconds) == text


def test_since_reads_rfc3339_with_fractions_and_offsets():
    now = dt.datetime(2024, 1, 1, 12, 0, 0, tzinfo=dt.UTC)
    assert since("2024-01-01T11:55:00Z", now) == "5m"
    assert since("2024-01-01T11:59:30.123456789Z", now) == "29s"
    assert since("2024-01-01T13:00:00+02:00", now) == "60m"
    assert since(None, now) == "<unknown>" and since("garbage", now) == "<unknown>"
    assert parse_time("2024-01-01T00:00:00.5Z").microsecond == 500000
