"""--change instructions for import/commit, and the small CLI formatters that must match Docker's."""

from __future__ import annotations

import sys
import threading
import time

import pytest

from kapal.cli.docker import human_duration, human_size, table
from kapal.engine.changes import apply_changes
from kapal.engine.ocispec import command_of, merge_env
from kapal.errors import Unsupported
from kapal.image.singleflight import SingleFlight


def test_changes_apply_like_dockerfile_instructions():
    cfg = apply_changes(
        {"Env": ["PATH=/bin", "A=1"]},
        ['CMD ["sh", "-c", "x"]', "ENV A=2 B=3", "WORKDIR /w", "EXPOSE 80", "LABEL k=v", "ENTRYPOINT echo hi"],
    )
    assert cfg["Cmd"] == ["sh", "-c", "x"]
    assert cfg["Env"] == ["PATH=/bin", "A=2", "B=3"]
    assert cfg["WorkingDir"] == "/w" and cfg["ExposedPorts"] == {"80/tcp": {}} and cfg["Labels"] == {"k": "v"}
    assert cfg["Entrypoint"] == ["/bin/sh", "-c", "echo hi"]
    with pytest.raises(Unsupported, match="RUN is not a valid change command"):
        apply_changes({}, ["RUN make"])


def test_command_and_env_follow_docker_rules():
    image = {"Entrypoint": ["/ep"], "Cmd": ["default"]}
    assert command_of(image, {}) == ["/ep", "default"]
    assert command_of(image, {"Cmd": ["x"]}) == ["/ep", "x"]
    assert command_of(image, {"Entrypoint": ["/other"]}) == ["/other"]
    assert merge_env(None, ["A=1"])[0].startswith("PATH=/usr/local/sbin")
    assert merge_env(["PATH=/x", "A=1"], ["A=2"]) == ["PATH=/x", "A=2"]


@pytest.mark.parametrize(
    "size, text", [(0, "0B"), (999, "999B"), (1000, "1kB"), (2_130_000, "2.13MB"), (4_260_000_000, "4.26GB")]
)
def test_human_size(size, text):
    assert human_size(size) == text


@pytest.mark.parametrize(
    "seconds, text",
    [
        (0.5, "Less than a second"),
        (1, "1 second"),
        (59, "59 seconds"),
        (60, "About a minute"),
        (3600, "About an hour"),
        (7200, "2 hours"),
        (3 * 86400, "3 days"),
        (20 * 86400, "2 weeks"),
    ],
)
def test_human_duration(seconds, text):
    assert human_duration(seconds) == text


def test_table_matches_docker_tabwriter():
    out = table(["REPOSITORY", "TAG", "SIZE"], [["busybox", "latest", "4MB"]])
    assert out.splitlines() == ["REPOSITORY   TAG       SIZE", "busybox      latest    4MB"]


def _waiting_in_do(thread: threading.Thread) -> bool:
    """The thread is blocked inside SingleFlight.do, waiting for the leader's outcome."""
    frame = sys._current_frames().get(thread.ident or -1)
    names = []
    while frame is not None:
        names.append(frame.f_code.co_name)
        frame = frame.f_back
    return "do" in names and "wait" in names


def test_single_flight_runs_once_for_concurrent_callers():
    flight: SingleFlight[int] = SingleFlight()
    calls = []
    release = threading.Event()

    def work() -> int:
        calls.append(1)
        assert release.wait(10)
        return 42

    results = []

    def call() -> None:
        results.append(flight.do("k", work))

    leader = threading.Thread(target=call)
    leader.start()
    deadline = time.monotonic() + 10
    while not calls and time.monotonic() < deadline:
        time.sleep(0.005)
    followers = [threading.Thread(target=call) for _ in range(4)]
    for t in followers:
        t.start()
    # the leader is held in work() until every follower waits on its flight (no timing assumption)
    while not all(_waiting_in_do(t) for t in followers) and time.monotonic() < deadline:
        time.sleep(0.005)
    release.set()
    for t in (leader, *followers):
        t.join(10)
    assert len(calls) == 1
    assert sorted(shared for _, shared in results) == [False, True, True, True, True]
    assert {value for value, _ in results} == {42}
