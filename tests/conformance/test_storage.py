"""The storage Protocol's contract: every backend (memory, sqlite, later etcd) passes the same tests.

A new backend adds one entry to BACKENDS.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable

import pytest

from kapal.errors import AlreadyExists, Conflict, NotFound
from kapal.kube.storage import Backend, Compacted, Event, open_backend


def _sqlite(tmp_path) -> Backend:
    return open_backend(f"sqlite://{tmp_path}/state.db")


def _memory(tmp_path) -> Backend:
    return open_backend("memory://")


BACKENDS: dict[str, Callable[..., Backend]] = {"memory": _memory, "sqlite": _sqlite}


@pytest.fixture(params=sorted(BACKENDS))
def make_backend(request, tmp_path):
    made: list[Backend] = []

    def make() -> Backend:
        b = BACKENDS[request.param](tmp_path)
        made.append(b)
        return b

    yield make
    for b in made:
        asyncio.run(b.close())


def async_test(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return asyncio.run(asyncio.wait_for(fn(*args, **kwargs), 20))

    return wrapper


async def _collect(stream, n: int, timeout: float = 5.0) -> list[Event]:
    out: list[Event] = []

    async def take():
        async for ev in stream:
            out.append(ev)
            if len(out) >= n:
                return

    await asyncio.wait_for(take(), timeout)
    return out


@async_test
async def test_create_get_and_revisions_increase(make_backend):
    b = make_backend()
    assert await b.current_revision() == 0
    kv1 = await b.create("/r/a", b"1")
    kv2 = await b.create("/r/b", b"2")
    assert kv2.mod_revision > kv1.mod_revision
    assert kv1.create_revision == kv1.mod_revision
    got = await b.get("/r/a")
    assert got is not None and got.value == b"1" and got.mod_revision == kv1.mod_revision
    assert await b.get("/r/missing") is None
    assert await b.current_revision() == kv2.mod_revision


@async_test
async def test_create_existing_is_refused(make_backend):
    b = make_backend()
    await b.create("/r/a", b"1")
    with pytest.raises(AlreadyExists):
        await b.create("/r/a", b"again")


@async_test
async def test_update_is_compare_and_swap(make_backend):
    b = make_backend()
    kv = await b.create("/r/a", b"1")
    kv2 = await b.update("/r/a", b"2", kv.mod_revision)
    assert kv2.value == b"2" and kv2.create_revision == kv.create_revision
    with pytest.raises(Conflict):
        await b.update("/r/a", b"stale", kv.mod_revision)
    with pytest.raises(NotFound):
        await b.update("/r/none", b"x", 1)
    got = await b.get("/r/a")
    assert got.value == b"2"


@async_test
async def test_delete_then_recreate(make_backend):
    b = make_backend()
    kv = await b.create("/r/a", b"1")
    with pytest.raises(Conflict):
        await b.delete("/r/a", kv.mod_revision + 100)
    gone = await b.delete("/r/a", kv.mod_revision)
    assert gone.value == b"1" and gone.mod_revision > kv.mod_revision
    assert await b.get("/r/a") is None
    with pytest.raises(NotFound):
        await b.delete("/r/a")
    again = await b.create("/r/a", b"new")
    assert again.create_revision > gone.mod_revision


@async_test
async def test_list_prefix_order_limit_and_past_revision(make_backend):
    b = make_backend()
    for name in ("c", "a", "b"):
        await b.create(f"/r/x/{name}", name.encode())
    await b.create("/r/y/z", b"other")
    await b.create("/r/x0", b"not under /r/x/")
    res = await b.list("/r/x/")
    assert [kv.key for kv in res.items] == ["/r/x/a", "/r/x/b", "/r/x/c"]
    assert res.revision == await b.current_revision() and not res.more
    page = await b.list("/r/x/", limit=2)
    assert [kv.key for kv in page.items] == ["/r/x/a", "/r/x/b"] and page.more
    rest = await b.list("/r/x/", revision=page.revision, start="/r/x/b\x00")
    assert [kv.key for kv in rest.items] == ["/r/x/c"] and not rest.more
    before = await b.current_revision()
    a = await b.get("/r/x/a")
    await b.update("/r/x/a", b"changed", a.mod_revision)
    await b.delete("/r/x/b")
    past = await b.list("/r/x/", revision=before)
    assert [(kv.key, kv.value) for kv in past.items] == [("/r/x/a", b"a"), ("/r/x/b", b"b"), ("/r/x/c", b"c")]
    now = await b.list("/r/x/")
    assert [(kv.key, kv.value) for kv in now.items] == [("/r/x/a", b"changed"), ("/r/x/c", b"c")]
    assert await b.count("/r/x/") == 2


@async_test
async def test_watch_replays_history_then_follows_live(make_backend):
    b = make_backend()
    kv = await b.create("/w/a", b"1")
    start = kv.mod_revision
    await b.update("/w/a", b"2", kv.mod_revision)
    await b.create("/other/a", b"not watched")
    stream = b.watch("/w/", start - 1)
    first = await _collect(stream, 2)
    assert [(e.type, e.kv.value) for e in first] == [("ADDED", b"1"), ("MODIFIED", b"2")]
    assert first[1].prev is not None and first[1].prev.value == b"1"
    await b.delete("/w/a")
    await b.create("/w/b", b"3")
    more = await _collect(stream, 2)
    assert [(e.type, e.kv.key) for e in more] == [("DELETED", "/w/a"), ("ADDED", "/w/b")]
    assert more[0].kv.value == b"2"
    revs = [e.kv.mod_revision for e in first + more]
    assert revs == sorted(set(revs))
    await stream.aclose()


@async_test
async def test_watch_concurrent_writes_no_gaps_no_duplicates(make_backend):
    b = make_backend()
    start = await b.current_revision()
    stream = b.watch("/s/", start)
    n = 200

    async def writer(i: int):
        for j in range(n // 4):
            await b.create(f"/s/{i}-{j}", b"x")
            await asyncio.sleep(0)

    consumer = asyncio.create_task(_collect(stream, n))
    await asyncio.gather(*(writer(i) for i in range(4)))
    events = await consumer
    revs = [e.kv.mod_revision for e in events]
    assert revs == sorted(revs) and len(set(revs)) == n
    assert {e.kv.key for e in events} == {f"/s/{i}-{j}" for i in range(4) for j in range(n // 4)}
    await stream.aclose()


@async_test
async def test_compaction_keeps_live_values_and_expires_old_watches(make_backend):
    b = make_backend()
    kv = await b.create("/c/a", b"1")
    kv = await b.update("/c/a", b"2", kv.mod_revision)
    await b.create("/c/b", b"x")
    await b.delete("/c/b")
    mid = await b.current_revision()
    await b.create("/c/d", b"after")
    await b.compact(mid)
    assert await b.compacted_revision() == mid
    assert (await b.get("/c/a")).value == b"2"
    assert [kv.key for kv in (await b.list("/c/")).items] == ["/c/a", "/c/d"]
    assert [kv.key for kv in (await b.list("/c/", revision=mid)).items] == ["/c/a"]
    with pytest.raises(Compacted):
        await b.list("/c/", revision=mid - 1)
    with pytest.raises(Compacted):
        await _collect(b.watch("/c/", 1), 1)
    events = await _collect(b.watch("/c/", mid), 1)
    assert events[0].kv.key == "/c/d"
    updated = await b.update("/c/a", b"3", kv.mod_revision)
    assert updated.value == b"3"
    await b.create("/c/b", b"recreated")
    assert await b.current_revision() > mid


@async_test
async def test_many_watchers_each_see_every_event(make_backend):
    b = make_backend()
    start = await b.current_revision()
    streams = [b.watch("/m/", start) for _ in range(20)]
    tasks = [asyncio.create_task(_collect(s, 3)) for s in streams]
    await asyncio.sleep(0.01)
    for i in range(3):
        await b.create(f"/m/{i}", b"v")
    results = await asyncio.gather(*tasks)
    assert all([e.kv.key for e in r] == ["/m/0", "/m/1", "/m/2"] for r in results)
    for s in streams:
        await s.aclose()
