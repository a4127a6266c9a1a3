"""Docker's json-file log format: records, long and partial lines, rotation, and reading it back."""

from __future__ import annotations

import json

from kapal.engine.jsonlog import (
    MAX_LINE,
    JsonFileWriter,
    LogFollower,
    docker_timestamp,
    log_files,
    parse_time_ns,
    read_records,
    rfc3339_nano,
)


def test_records_are_docker_json_lines(tmp_path):
    path = tmp_path / "c-json.log"
    w = JsonFileWriter(str(path))
    w.write("stdout", b"one\ntwo\n", now_ns=1_700_000_000_123_456_789)
    w.write("stderr", "é\n".encode(), now_ns=1_700_000_000_000_000_001)
    w.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines == [
        {"log": "one\n", "stream": "stdout", "time": "2023-11-14T22:13:20.123456789Z"},
        {"log": "two\n", "stream": "stdout", "time": "2023-11-14T22:13:20.123456789Z"},
        {"log": "é\n", "stream": "stderr", "time": "2023-11-14T22:13:20.000000001Z"},
    ]


def test_partial_lines_wait_for_their_newline_and_long_lines_are_cut(tmp_path):
    path = tmp_path / "log"
    w = JsonFileWriter(str(path))
    w.write("stdout", b"par")
    w.write("stdout", b"tial\nrest")
    w.write("stdout", b"x" * (MAX_LINE + 10) + b"\n")
    w.close()  # the end of the stream writes what is left
    logs = [json.loads(line)["log"] for line in path.read_text().splitlines()]
    assert logs[0] == "partial\n"
    assert logs[1] == "rest" + "x" * (MAX_LINE - 4)
    assert logs[2] == "x" * 14 + "\n"
    assert len(logs) == 3


def test_rotation_keeps_max_files_of_at_most_max_size(tmp_path):
    path = tmp_path / "log"
    w = JsonFileWriter(str(path), max_size=300, max_files=3)
    for i in range(40):
        w.write("stdout", f"line {i:02d}\n".encode(), now_ns=i)
    w.close()
    files = log_files(str(path))
    assert [f.rsplit("/", 1)[1] for f in files] == ["log.2", "log.1", "log"]
    assert all((tmp_path / f.rsplit("/", 1)[1]).stat().st_size <= 300 for f in files)
    records = read_records(str(path))
    numbers = [int(r.data.split()[1]) for r in records]
    assert numbers == list(range(40 - len(numbers), 40)) and numbers[-1] == 39


def test_single_file_rotation_truncates(tmp_path):
    path = tmp_path / "log"
    w = JsonFileWriter(str(path), max_size=200, max_files=1)
    for i in range(30):
        w.write("stdout", f"line {i}\n".encode())
    w.close()
    assert log_files(str(path)) == [str(path)] and path.stat().st_size <= 200


def test_read_filters_since_until_and_tail(tmp_path):
    path = tmp_path / "log"
    w = JsonFileWriter(str(path))
    for i in range(10):
        w.write("stdout" if i % 2 else "stderr", f"{i}\n".encode(), now_ns=i * 1000)
    w.close()
    assert [r.data for r in read_records(str(path), since_ns=3000, until_ns=6000)] == [b"3\n", b"4\n", b"5\n"]
    assert [r.data for r in read_records(str(path), tail=2)] == [b"8\n", b"9\n"]
    assert read_records(str(path), tail=0) == []
    assert read_records(str(path))[0].stream == "stderr"


def test_follower_reads_the_backlog_then_appends_across_a_rotation(tmp_path):
    path = tmp_path / "log"
    w = JsonFileWriter(str(path), max_size=150, max_files=2)
    w.write("stdout", b"a\n")
    f = LogFollower(str(path))
    assert [r.data for r in f.backlog()] == [b"a\n"]
    assert list(f.poll()) == []
    w.write("stdout", b"b\n")
    assert [r.data for r in f.poll()] == [b"b\n"]
    for i in range(5):  # rotates: the follower moves to the new file
        w.write("stdout", f"c{i}\n".encode())
    seen = [r.data for r in f.poll()] + [r.data for r in f.poll()]
    assert seen and seen[-1] == b"c4\n"
    f.close()
    w.close()


def test_time_formats():
    ns = 1_700_000_000_120_000_000
    assert rfc3339_nano(ns) == "2023-11-14T22:13:20.120000000Z"
    assert docker_timestamp(ns) == "2023-11-14T22:13:20.12Z"
    assert docker_timestamp(1_700_000_000_000_000_000) == "2023-11-14T22:13:20Z"
    assert parse_time_ns("2023-11-14T22:13:20.12Z") == ns
    assert parse_time_ns("2023-11-15T00:13:20.12+02:00") == ns
    assert parse_time_ns(rfc3339_nano(ns + 7)) == ns + 7
