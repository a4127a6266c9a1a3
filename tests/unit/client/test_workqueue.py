"""The work queue's promises: a key is queued once however often it is added, never handed to two workers at once,
re-queued when added while processing, delayed adds fire in time order, failures back off exponentially."""

from __future__ import annotations

import asyncio

import pytest

from kapal import errors
from kapal.kube.client.workqueue import (
    BucketLimiter,
    ItemExponentialLimiter,
    MaxOfLimiter,
    ShutDown,
    WorkQueue,
    run_worker,
)


def run(coro):
    return asyncio.run(coro)


def test_adds_are_deduplicated():
    async def main():
        q = WorkQueue("t")
        for _ in range(5):
            q.add("a")
        q.add("b")
        assert len(q) == 2
        assert await q.get() == "a"
        assert await q.get() == "b"
    run(main())


def test_key_added_while_processing_comes_back_after_done():
    async def main():
        q = WorkQueue("t")
        q.add("a")
        key = await q.get()
        q.add("a")
        assert len(q) == 0, "a key being processed must not be handed to a second worker"
        q.done(key)
        assert len(q) == 1
        assert await q.get() == "a"
    run(main())


def test_no_two_workers_hold_the_same_key():
    async def main():
        q = WorkQueue("t")
        holding: set[str] = set()
        overlaps = []
        handled = []

        async def sync(key: str) -> None:
            if key in holding:
                overlaps.append(key)
            holding.add(key)
            await asyncio.sleep(0.001)
            holding.discard(key)
            handled.append(key)

        workers = [asyncio.create_task(run_worker(q, sync)) for _ in range(4)]
        for i in range(200):
            q.add(f"k{i % 7}")
            await asyncio.sleep(0)
        await asyncio.sleep(0.1)
        q.shut_down()
        await asyncio.gather(*workers)
        assert overlaps == []
        assert set(handled) == {f"k{i}" for i in range(7)}
    run(main())


def test_add_after_keeps_the_earliest_and_fires_in_order():
    async def main():
        q = WorkQueue("t")
        q.add_after("late", 0.05)
        q.add_after("early", 0.01)
        q.add_after("early", 0.2)  # a later add of a pending key does not postpone it
        assert len(q) == 0
        assert await asyncio.wait_for(q.get(), 1) == "early"
        assert await asyncio.wait_for(q.get(), 1) == "late"
    run(main())


def test_get_raises_shutdown():
    async def main():
        q = WorkQueue("t")
        waiter = asyncio.create_task(q.get())
        await asyncio.sleep(0)
        q.shut_down()
        with pytest.raises(ShutDown):
            await waiter
    run(main())


def test_exponential_backoff_per_item_is_capped_and_forgotten():
    lim = ItemExponentialLimiter(0.005, 1000.0)
    delays = [lim.when("x") for _ in range(5)]
    assert delays == [0.005, 0.01, 0.02, 0.04, 0.08]
    assert lim.when("y") == 0.005
    for _ in range(40):
        last = lim.when("x")
    assert last == 1000.0
    assert lim.retries("x") == 45
    lim.forget("x")
    assert lim.when("x") == 0.005


def test_token_bucket_limits_a_burst():
    lim = BucketLimiter(qps=10, burst=3)
    delays = [lim.when(str(i)) for i in range(5)]
    assert delays[:3] == [0, 0, 0]
    assert delays[3] == pytest.approx(0.1, abs=0.02)
    assert delays[4] == pytest.approx(0.2, abs=0.02)


def test_max_of_limiters():
    lim = MaxOfLimiter(ItemExponentialLimiter(1.0, 100.0), BucketLimiter(1000, 1000))
    assert lim.when("a") == 1.0
    assert lim.when("a") == 2.0
    assert lim.retries("a") == 2


def test_worker_retries_failures_then_forgets_on_success():
    async def main():
        q = WorkQueue("t", ItemExponentialLimiter(0.001, 0.01))
        attempts = []

        async def sync(key: str) -> None:
            attempts.append(key)
            if len(attempts) < 3:
                raise errors.Conflict("try again")

        q.add("a")
        worker = asyncio.create_task(run_worker(q, sync))
        for _ in range(100):
            await asyncio.sleep(0.01)
            if len(attempts) >= 3:
                break
        q.shut_down()
        await worker
        assert attempts == ["a", "a", "a"]
        assert q.num_requeues("a") == 0
    run(main())
