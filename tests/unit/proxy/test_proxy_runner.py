"""The sync loop's pacing: requests coalesce, runs keep a minimum distance, and idle loops still run."""

from __future__ import annotations

import asyncio

from kapal.kube.proxy.runner import BoundedFrequencyRunner


def run(coro):
    return asyncio.run(coro)


def test_requests_during_the_minimum_interval_coalesce_into_one_run():
    async def scenario():
        runs = []

        async def fn():
            runs.append(asyncio.get_running_loop().time())

        stop = asyncio.Event()
        r = BoundedFrequencyRunner("t", fn, min_interval=0.3, max_interval=60)
        task = asyncio.create_task(r.run(stop))
        r.request()
        await asyncio.sleep(0.05)
        for _ in range(10):
            r.request()
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.5)
        stop.set()
        await task
        return runs

    runs = run(scenario())
    assert len(runs) == 2  # the first request, then one run for the ten that came during the interval
    assert runs[1] - runs[0] >= 0.29


def test_idle_runner_still_runs_every_max_interval():
    async def scenario():
        count = 0

        async def fn():
            nonlocal count
            count += 1

        stop = asyncio.Event()
        r = BoundedFrequencyRunner("t", fn, min_interval=0.0, max_interval=0.1)
        task = asyncio.create_task(r.run(stop))
        await asyncio.sleep(0.35)
        stop.set()
        await task
        return count

    assert run(scenario()) >= 3


def test_failed_run_is_retried():
    async def scenario():
        calls = 0

        async def fn():
            nonlocal calls
            calls += 1
            if calls == 1:
                raise RuntimeError("iptables-restore failed")

        stop = asyncio.Event()
        r = BoundedFrequencyRunner("t", fn, min_interval=0.0, max_interval=60, retry=0.05)
        task = asyncio.create_task(r.run(stop))
        r.request()
        await asyncio.sleep(0.3)
        stop.set()
        await task
        return calls

    assert run(scenario()) == 2


def test_stop_ends_the_loop_promptly():
    async def scenario():
        async def fn():
            pass

        stop = asyncio.Event()
        r = BoundedFrequencyRunner("t", fn, min_interval=5.0, max_interval=60)
        task = asyncio.create_task(r.run(stop))
        r.request()
        await asyncio.sleep(0.01)
        r.request()  # would wait 5 s for the minimum interval
        await asyncio.sleep(0.01)
        stop.set()
        await asyncio.wait_for(task, 1.0)

    run(scenario())
