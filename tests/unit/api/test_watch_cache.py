"""The watch cache over the in-memory backend: lists, initial state, resumes, selector transitions, floors."""

from __future__ import annotations

import asyncio
import json

from kapal.kube.api.cache import Filter, WatchCache, object_key, split_key
from kapal.kube.meta.selectors import parse_field_selector, parse_label_selector
from kapal.kube.storage.memory import MemoryBackend

PODS = ("", "pods")


def _pod(name: str, ns: str = "a", labels: dict | None = None, node: str = "") -> bytes:
    return json.dumps({"kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": labels or {}},
                       "spec": {"nodeName": node}}).encode()


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 10))


async def _started(capacity: int = 100) -> tuple[MemoryBackend, WatchCache]:
    b = MemoryBackend()
    await b.create(object_key(PODS, "a", "p1"), _pod("p1", labels={"app": "web"}))
    c = WatchCache(b, capacity=capacity)
    await c.start()
    await c.ready.wait()
    return b, c


def test_keys_round_trip():
    assert split_key(object_key(PODS, "ns", "x")) == (PODS, "ns", "x")
    assert split_key(object_key(("apps", "deployments"), "ns", "d")) == (("apps", "deployments"), "ns", "d")
    assert split_key(object_key(("", "nodes"), None, "n1")) == (("", "nodes"), None, "n1")


def test_list_filters_by_namespace_labels_fields_and_pages():
    async def body():
        b, c = await _started()
        await b.create(object_key(PODS, "a", "p2"), _pod("p2", labels={"app": "db"}, node="n1"))
        await b.create(object_key(PODS, "b", "p3"), _pod("p3", "b", labels={"app": "web"}))
        assert await c.fresh()
        names = lambda entries: [e.obj["metadata"]["name"] for e in entries]  # noqa: E731
        assert names(c.list(PODS, Filter())[0]) == ["p1", "p2", "p3"]
        assert names(c.list(PODS, Filter(namespace="a"))[0]) == ["p1", "p2"]
        assert names(c.list(PODS, Filter(labels=parse_label_selector("app=web")))[0]) == ["p1", "p3"]
        fs = parse_field_selector("spec.nodeName=n1", PODS)
        assert names(c.list(PODS, Filter(fields=fs))[0]) == ["p2"]
        page, nxt = c.list(PODS, Filter(), limit=2)
        assert names(page) == ["p1", "p2"] and nxt == page[-1].key
        rest, nxt2 = c.list(PODS, Filter(), start=nxt + "\x00", limit=2)
        assert names(rest) == ["p3"] and nxt2 is None
        await c.stop()

    run(body())


def test_initial_state_then_live_events():
    async def body():
        b, c = await _started()
        w = c.subscribe(PODS, Filter(namespace="a"), None)
        assert w.pending.popleft()[0] == "ADDED"
        await b.create(object_key(PODS, "b", "elsewhere"), _pod("elsewhere", "b"))
        await b.create(object_key(PODS, "a", "p2"), _pod("p2"))
        assert await w.wait(2)
        kind, entry = w.pending.popleft()
        assert (kind, entry.obj["metadata"]["name"]) == ("ADDED", "p2")
        assert entry.obj["metadata"]["resourceVersion"] == str(entry.revision)
        await c.stop()

    run(body())


def test_resume_after_a_revision_replays_only_later_events():
    async def body():
        b, c = await _started()
        mark = await b.current_revision()
        kv = await b.create(object_key(PODS, "a", "p2"), _pod("p2"))
        await b.update(kv.key, _pod("p2", labels={"v": "2"}), kv.mod_revision)
        assert await c.fresh()
        w = c.subscribe(PODS, Filter(), mark)
        got = [w.pending.popleft()[0] for _ in range(2)]
        assert got == ["ADDED", "MODIFIED"] and not w.pending
        await c.stop()

    run(body())


def test_selector_transitions_become_added_and_deleted():
    async def body():
        b, c = await _started()
        w = c.subscribe(PODS, Filter(labels=parse_label_selector("app=web")), c.revision)
        key = object_key(PODS, "a", "p1")
        kv = await b.get(key)
        kv = await b.update(key, _pod("p1", labels={"app": "db"}), kv.mod_revision)
        assert await w.wait(2)
        kind, entry = w.pending.popleft()
        assert kind == "DELETED" and entry.obj["metadata"]["labels"] == {"app": "web"}
        assert entry.revision == kv.mod_revision
        await b.update(key, _pod("p1", labels={"app": "web"}), kv.mod_revision)
        assert await w.wait(2)
        assert w.pending.popleft()[0] == "ADDED"
        await c.stop()

    run(body())


def test_ring_floor_sends_old_resumes_to_storage():
    async def body():
        b, c = await _started(capacity=3)
        start = c.revision
        for i in range(6):
            await b.create(object_key(PODS, "a", f"x{i}"), _pod(f"x{i}"))
        assert await c.fresh()
        assert c.subscribe(PODS, Filter(), start) is None
        events = []
        async for ev in c.storage_events(PODS, start):
            events.append(ev.entry.obj["metadata"]["name"])
            if len(events) == 6:
                break
        assert events == [f"x{i}" for i in range(6)]
        await c.stop()

    run(body())


def test_overflowing_watcher_is_ended():
    async def body():
        b, c = await _started()
        c.watcher_queue = 2
        w = c.subscribe(PODS, Filter(), c.revision)
        for i in range(5):
            await b.create(object_key(PODS, "a", f"o{i}"), _pod(f"o{i}"))
        assert await c.fresh()
        assert w.overflowed and list(w.pending) == [None]
        await c.stop()

    run(body())
