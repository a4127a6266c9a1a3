"""API server benchmark: creates, gets, lists, updates and watch fan-out against `kapal apiserver`.

N concurrent clients over keep-alive HTTPS with the admin client certificate; raw SQLite inserts through
the storage backend in the same run are the ceiling. Prints throughput and p50/p99 per phase and the
goals (>= 500 creates/s and mutating p99 <= 100 ms at 50 clients; one event to 1,000 watchers in 100 ms).

Usage: bench/apiserver/run [--clients 50] [--objects 5000] [--watchers 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests/integration/apiserver"))
sys.path.insert(0, str(ROOT / "src"))

import aiohttp  # noqa: E402
from apiserver_harness import start_apiserver  # noqa: E402

from kapal.kube.pki import load_kubeconfig  # noqa: E402
from kapal.kube.storage.sqlite import SQLiteBackend  # noqa: E402

NS = "bench"


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def report(name: str, latencies: list[float], seconds: float) -> dict:
    rate = len(latencies) / seconds if seconds else 0.0
    row = {"phase": name, "ops": len(latencies), "ops_per_s": rate, "p50_ms": pct(latencies, 50) * 1000,
           "p99_ms": pct(latencies, 99) * 1000}
    print(f"  {name:<28} {len(latencies):>7} ops  {rate:>9.0f}/s  p50 {row['p50_ms']:7.1f} ms  "
          f"p99 {row['p99_ms']:7.1f} ms", flush=True)
    return row


async def run_clients(session: aiohttp.ClientSession, clients: int, jobs: list, fn) -> tuple[list[float], float]:
    queue: asyncio.Queue = asyncio.Queue()
    for j in jobs:
        queue.put_nowait(j)
    latencies: list[float] = []
    errors: list[str] = []

    async def worker() -> None:
        while True:
            try:
                job = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            t0 = time.perf_counter()
            status = await fn(session, job)
            latencies.append(time.perf_counter() - t0)
            if status >= 300:
                errors.append(str(status))

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    elapsed = time.perf_counter() - start
    if errors:
        print(f"  !! {len(errors)} requests failed, e.g. {errors[:3]}", flush=True)
    return latencies, elapsed


async def http_phases(url: str, ssl_ctx, clients: int, objects: int) -> list[dict]:
    rows = []
    conn = aiohttp.TCPConnector(ssl=ssl_ctx, limit=clients * 2)
    async with aiohttp.ClientSession(url, connector=conn) as s:
        async with s.post("/api/v1/namespaces", json={"metadata": {"name": NS}}) as r:
            assert r.status in (201, 409), await r.text()
        base = f"/api/v1/namespaces/{NS}/configmaps"

        async def warm(session, i):
            async with session.get("/readyz") as r:
                await r.read()
                return r.status

        await run_clients(s, clients, list(range(clients * 2)), warm)

        async def create(session, i):
            body = {"metadata": {"name": f"cm-{i}", "labels": {"bench": "yes", "shard": str(i % 10)}},
                    "data": {"key": "value" * 20, "index": str(i)}}
            async with session.post(base, json=body) as r:
                await r.read()
                return r.status

        lat, el = await run_clients(s, clients, list(range(objects)), create)
        rows.append(report(f"create ({clients} clients)", lat, el))

        async def get(session, i):
            async with session.get(f"{base}/cm-{i % objects}") as r:
                await r.read()
                return r.status

        lat, el = await run_clients(s, clients, list(range(objects)), get)
        rows.append(report(f"get ({clients} clients)", lat, el))

        async def update(session, i):
            patch = {"data": {"index": f"{i}-updated"}}
            async with session.patch(f"{base}/cm-{i % objects}", json=patch,
                                     headers={"Content-Type": "application/merge-patch+json"}) as r:
                await r.read()
                return r.status

        lat, el = await run_clients(s, clients, list(range(objects)), update)
        rows.append(report(f"patch ({clients} clients)", lat, el))

        async def list_small(session, i):
            async with session.get(base, params={"labelSelector": f"shard={i % 10}", "limit": "500"}) as r:
                await r.read()
                return r.status

        lat, el = await run_clients(s, min(clients, 10), list(range(200)), list_small)
        rows.append(report(f"list {objects // 10} by label (10)", lat, el))

        async def list_all(session, i):
            async with session.get(base) as r:
                await r.read()
                return r.status

        lat, el = await run_clients(s, 4, list(range(20)), list_all)
        rows.append(report(f"list all {objects} (4 clients)", lat, el))

        async def delete(session, i):
            async with session.delete(f"{base}/cm-{i}") as r:
                await r.read()
                return r.status

        lat, el = await run_clients(s, clients, list(range(objects)), delete)
        rows.append(report(f"delete ({clients} clients)", lat, el))
    return rows


async def watch_fanout(url: str, ssl_ctx, watchers: int, rounds: int = 5) -> dict:
    """Open `watchers` watches, write one object per round, time how long each event takes to reach all."""
    conn = aiohttp.TCPConnector(ssl=ssl_ctx, limit=watchers + 10)
    received: list[list[float]] = [[] for _ in range(rounds)]
    ready = 0
    all_ready = asyncio.Event()
    async with aiohttp.ClientSession(url, connector=conn, timeout=aiohttp.ClientTimeout(total=None)) as s:
        path = f"/api/v1/namespaces/{NS}/secrets"
        async with s.get(path) as r:
            rv = json.loads(await r.read())["metadata"]["resourceVersion"]

        async def watcher() -> None:
            nonlocal ready
            async with s.get(path, params={"watch": "1", "resourceVersion": rv, "timeoutSeconds": "300"}) as r:
                ready += 1
                if ready == watchers:
                    all_ready.set()
                async for line in r.content:
                    now = time.perf_counter()
                    at = line.find(b'"name":"w-')
                    if at < 0:
                        continue
                    i = int(line[at + 10:line.index(b'"', at + 10)])
                    received[i].append(now)
                    if i == rounds - 1:
                        return

        sem = asyncio.Semaphore(100)

        async def start_one() -> asyncio.Task:
            async with sem:
                return asyncio.create_task(watcher())

        t_connect = time.perf_counter()
        tasks = await asyncio.gather(*(start_one() for _ in range(watchers)))
        await asyncio.wait_for(all_ready.wait(), 120)
        connect_s = time.perf_counter() - t_connect
        await asyncio.sleep(0.5)
        delays: list[float] = []
        for i in range(rounds):
            t0 = time.perf_counter()
            async with s.post(path, json={"metadata": {"name": f"w-{i}"}}) as r:
                assert r.status == 201, await r.text()
            deadline = time.perf_counter() + 30
            while len(received[i]) < watchers and time.perf_counter() < deadline:
                await asyncio.sleep(0.001)
            if len(received[i]) < watchers:
                print(f"  !! round {i}: only {len(received[i])}/{watchers} watchers got the event", flush=True)
            delays.append(max(received[i]) - t0)
            await asyncio.sleep(0.2)
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)
    row = {"phase": f"watch fan-out to {watchers}", "watchers": watchers, "connect_s": connect_s,
           "all_delivered_ms_median": statistics.median(delays) * 1000, "all_delivered_ms_max": max(delays) * 1000}
    print(f"  watch fan-out: {watchers} watchers connected in {connect_s:.1f}s; one event reached all of them in "
          f"median {row['all_delivered_ms_median']:.1f} ms (max {row['all_delivered_ms_max']:.1f} ms, "
          f"{rounds} rounds)", flush=True)
    return row


async def sqlite_ceiling(path: Path, objects: int) -> dict:
    b = SQLiteBackend(path)
    value = json.dumps({"metadata": {"name": "x"}, "data": {"key": "value" * 20}}).encode()
    lat = []
    start = time.perf_counter()
    for i in range(objects):
        t0 = time.perf_counter()
        await b.create(f"/registry/core/configmaps/bench/raw-{i}", value)
        lat.append(time.perf_counter() - t0)
    el = time.perf_counter() - start
    await b.close()
    return report("raw SQLite create (ceiling)", lat, el)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--objects", type=int, default=5000)
    ap.add_argument("--watchers", type=int, default=1000)
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    tmp = Path(tempfile.mkdtemp(prefix="kapal-bench-apiserver-"))
    t0 = time.perf_counter()
    server = start_apiserver(tmp / "data")
    fresh_start = time.perf_counter() - t0
    print(f"kapal apiserver at {server.url} (SQLite in {tmp}); {os.cpu_count()} CPUs", flush=True)
    try:
        ctx = load_kubeconfig(server.kubeconfig).ssl_context()
        rows = asyncio.run(http_phases(server.url, ctx, args.clients, args.objects))
        rows.append(asyncio.run(watch_fanout(server.url, ctx, args.watchers)))
        rows.append(asyncio.run(sqlite_ceiling(tmp / "raw.db", args.objects)))
        server.stop()
        t0 = time.perf_counter()
        server = start_apiserver(tmp / "data")
        restart = time.perf_counter() - t0
        print(f"  time to ready (process start to serving): fresh data dir {fresh_start:.2f}s (creates the PKI), "
              f"restart with {args.objects * 3 + 20} revisions of history {restart:.2f}s", flush=True)
        rows.append({"phase": "startup", "fresh_s": fresh_start, "restart_s": restart})
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    create = rows[0]
    patch = next(r for r in rows if r["phase"].startswith("patch"))
    delete = next(r for r in rows if r["phase"].startswith("delete"))
    ceiling = next(r for r in rows if r["phase"].startswith("raw SQLite"))
    fan = next(r for r in rows if r["phase"].startswith("watch"))
    mutating_p99 = max(create["p99_ms"], patch["p99_ms"], delete["p99_ms"])
    print("\nsummary")
    print(f"  creates/s: {create['ops_per_s']:.0f} (goal >= 500); {create['ops_per_s'] / ceiling['ops_per_s']:.1%} "
          f"of the raw SQLite ceiling ({ceiling['ops_per_s']:.0f}/s)")
    print(f"  mutating p99: {mutating_p99:.1f} ms (goal <= 100 ms)")
    print(f"  watch fan-out: {fan['all_delivered_ms_median']:.1f} ms median to all {fan['watchers']} watchers "
          f"(goal <= 100 ms)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
