"""The async client against a real API server (in-process, small watch cache): paging, Status errors, a watch
resumed from a compacted resourceVersion (410 → ResourceExpired), an informer that re-lists and ends up with
exactly the server's objects, and two leader electors on one Lease."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import pytest

from kapal import errors
from kapal.kube.api.config import ApiServerConfig
from kapal.kube.api.server import ServerThread
from kapal.kube.client.client import ApiClient
from kapal.kube.client.config import ClientConfig
from kapal.kube.client.informer import EventHandler, Informer
from kapal.kube.client.kinds import CONFIGMAPS, LEASES, NAMESPACES
from kapal.kube.client.leaderelection import LeaderElectionConfig, LeaderElector
from kapal.kube.client.status import ResourceExpired
from kapal.kube.pki import load_kubeconfig


@pytest.fixture(scope="module")
def server():
    with tempfile.TemporaryDirectory(prefix="kapal-client-") as tmp:
        thread = ServerThread(ApiServerConfig(data_dir=Path(tmp), secure_port=0, bind_address="127.0.0.1",
                                              watch_cache_size=20, compaction_interval=3600))
        with thread as s:
            s.thread = thread
            yield s


def run(server, coro_fn):
    async def main():
        c = ApiClient(ClientConfig.from_kubeconfig(load_kubeconfig(server.admin_kubeconfig)))
        try:
            return await coro_fn(c)
        finally:
            await c.close()
    return asyncio.run(main())


def compact(server) -> None:
    async def go():
        backend = server.ctx.backend
        await backend.compact(await backend.current_revision())
    asyncio.run_coroutine_threadsafe(go(), server.thread._loop).result(10)


def cm(name: str, ns: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns}, "data": {"k": name}}


def test_paging_and_errors(server, unique):
    async def body(c: ApiClient):
        await c.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": unique}})
        await asyncio.gather(*(c.create(CONFIGMAPS, cm(f"c{i}", unique)) for i in range(25)))
        page = await c.list(CONFIGMAPS, unique, limit=10)
        assert len(page["items"]) == 10 and page["metadata"]["continue"]
        items, rv = await c.list_all(CONFIGMAPS, unique, page_size=7)
        assert sorted(i["metadata"]["name"] for i in items if i["metadata"]["name"] != "kube-root-ca.crt") == \
            sorted(f"c{i}" for i in range(25))
        assert rv and all(i["kind"] == "ConfigMap" for i in items)
        with pytest.raises(errors.NotFound, match='configmaps "nope" not found'):
            await c.get(CONFIGMAPS, "nope", unique)
        with pytest.raises(errors.AlreadyExists):
            await c.create(CONFIGMAPS, cm("c1", unique))
        stale = await c.get(CONFIGMAPS, "c1", unique)
        await c.patch(CONFIGMAPS, "c1", {"data": {"k": "changed"}}, unique)
        with pytest.raises(errors.Conflict):
            await c.replace(CONFIGMAPS, stale)
        with pytest.raises(errors.Invalid):
            await c.create(CONFIGMAPS, cm("Not_A_Name", unique))
    run(server, body)


def test_watch_from_a_compacted_revision_is_gone(server, unique):
    async def body(c: ApiClient):
        await c.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": unique}})
        first = await c.create(CONFIGMAPS, cm("old", unique))
        for i in range(40):  # push the revision out of the small watch cache
            await c.create(CONFIGMAPS, cm(f"x{i}", unique))
        compact(server)
        with pytest.raises(ResourceExpired):
            async for _ in c.watch(CONFIGMAPS, unique, resource_version=first["metadata"]["resourceVersion"],
                                   timeout_seconds=5):
                pass
    run(server, body)


def test_informer_relists_after_410_and_matches_the_server(server, unique):
    async def body(c: ApiClient):
        await c.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": unique}})
        for i in range(5):
            await c.create(CONFIGMAPS, cm(f"a{i}", unique))
        inf = Informer(c, CONFIGMAPS, unique)
        deleted: list[str] = []
        inf.add_handler(EventHandler(on_delete=lambda o: deleted.append(o["metadata"]["name"])))
        inf.start()
        await asyncio.wait_for(inf.wait_synced(), 10)
        # while the informer is stopped, the world moves on and history is compacted away
        await inf.stop()
        stale_rv = inf.resource_version
        await c.delete(CONFIGMAPS, "a0", unique)
        for i in range(40):
            await c.create(CONFIGMAPS, cm(f"b{i}", unique))
        compact(server)
        inf.resource_version = stale_rv
        inf._task = asyncio.create_task(inf._watch_until_expired())
        await asyncio.wait_for(inf._task, 10)  # returns on 410
        inf._task = None
        inf.start()  # list again
        for _ in range(100):
            if inf.relists >= 2:
                break
            await asyncio.sleep(0.05)
        items, _ = await c.list_all(CONFIGMAPS, unique)
        assert sorted(inf.indexer.keys()) == sorted(f"{unique}/{i['metadata']['name']}" for i in items)
        assert "a0" in deleted, "the relist noticed an object deleted while nobody watched"
        await inf.stop()
    run(server, body)


def test_two_electors_one_leader(server, unique):
    async def body(c: ApiClient):
        def config(identity: str) -> LeaderElectionConfig:
            return LeaderElectionConfig(unique, "default", identity=identity, lease_duration=3, renew_deadline=2,
                                        retry_period=0.5)

        a, b = LeaderElector(c, config("a")), LeaderElector(c, config("b"))
        leading = asyncio.Event()

        async def lead() -> None:
            leading.set()
            await asyncio.sleep(3600)

        task = asyncio.create_task(a.run(lead))
        await asyncio.wait_for(leading.wait(), 10)
        assert not await b.try_acquire_or_renew(), "the Lease is held"
        lease = await c.get(LEASES, unique, "default")
        assert lease["spec"]["holderIdentity"] == "a" and lease["spec"]["leaseDurationSeconds"] == 3
        task.cancel()  # releases the Lease
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await b.try_acquire_or_renew() and b.is_leader
        lease = await c.get(LEASES, unique, "default")
        assert lease["spec"]["holderIdentity"] == "b" and lease["spec"]["leaseTransitions"] == 1
    run(server, body)
