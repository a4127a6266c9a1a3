"""State files: ids, atomic writes, and status derived from the world."""

from __future__ import annotations

import os

import pytest

from kapal.errors import AlreadyExists, Invalid, NotFound
from kapal.runtime import state


def test_ids_are_checked():
    for good in ("abc", "a-b_c.d+e", "0" * 64):
        state.check_id(good)
    for bad in ("", ".", "..", "a/b", "a b", "é"):
        with pytest.raises(Invalid):
            state.check_id(bad)


def test_reserve_save_load_remove(tmp_path):
    store = state.StateStore(str(tmp_path / "root"))
    store.reserve("c1")
    with pytest.raises(AlreadyExists):
        store.reserve("c1")
    assert store.ids() == []  # not a container until state.json exists
    store.save("c1", {"id": "c1", "pid": 0})
    assert store.load("c1") == {"id": "c1", "pid": 0}
    assert store.ids() == ["c1"]
    assert [p for p in os.listdir(store.dir("c1")) if p.startswith(".")] == []  # no temp files left
    store.remove("c1")
    with pytest.raises(NotFound):
        store.load("c1")


def test_status_is_derived_from_the_world(tmp_path):
    store = state.StateStore(str(tmp_path))
    store.reserve("c")
    me = {"pid": os.getpid(), "init_start": None, "cgroup_paths": {}}
    assert state.status(store, "c", me) == state.RUNNING
    os.mkfifo(store.fifo("c"))
    assert state.status(store, "c", me) == state.CREATED
    assert state.status(store, "c", me | {"pid": 0}) == state.STOPPED
    assert state.status(store, "c", me | {"init_start": 1}) == state.STOPPED  # the PID was reused
    assert state.status(store, "c", me, frozen=True) == state.CREATED
    os.unlink(store.fifo("c"))
    assert state.status(store, "c", me, frozen=True) == state.PAUSED


def test_rfc3339():
    assert state.rfc3339(0) == "1970-01-01T00:00:00.000000000Z"
