"""Docker API: /events, /system/df, /networks (bridge, host, none)."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter

from aiohttp import web

from kapal.errors import Unsupported

from .api import COMMON_HEADERS, Router, engine_of, filters_of, flag, in_thread, json_response
from .events import matches
from .routes_containers import _time_ns, manager


async def events(request: web.Request) -> web.StreamResponse:
    log = engine_of(request).events
    filters = filters_of(request)
    since_text, until_text = request.query.get("since"), request.query.get("until")
    since = _time_ns(since_text) if since_text else None
    until = _time_ns(until_text) if until_text else 0
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[dict] = asyncio.Queue()

    def listener(event: dict) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, event)

    backlog = log.subscribe(listener, since)
    resp = web.StreamResponse(headers={**COMMON_HEADERS, "Content-Type": "application/json"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    try:
        for event in backlog:
            if (not until or event["timeNano"] < until) and matches(event, filters):
                await resp.write((json.dumps(event) + "\n").encode())
        while True:
            timeout = None
            if until:
                timeout = (until - time.time_ns()) / 1e9
                if timeout <= 0:
                    break
            try:
                event = await asyncio.wait_for(queue.get(), timeout)
            except TimeoutError:
                break
            if until and event["timeNano"] >= until:
                break
            if matches(event, filters):
                await resp.write((json.dumps(event) + "\n").encode())
        await resp.write_eof()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        log.unsubscribe(listener)
    return resp


def disk_usage(request: web.Request) -> dict:
    engine = engine_of(request)
    mgr = manager(request)
    images = engine.images.list()
    users = Counter(c.doc["Image"] for c in mgr.all())
    layer_users: Counter[str] = Counter()
    for image in images:
        for layer in {layer.chain_id: layer for layer in image.layers}.values():
            layer_users[layer.chain_id] += 1
    layer_sizes = {layer.chain_id: layer.size for image in images for layer in image.layers}
    from kapal.image.images import _unix

    image_docs = []
    for image in sorted(images, key=lambda i: i.added, reverse=True):
        shared = sum(layer.size for layer in image.layers if layer_users[layer.chain_id] > 1)
        image_docs.append(
            {
                "Id": image.id,
                "ParentId": "",
                "RepoTags": list(image.repo_tags),
                "RepoDigests": list(image.repo_digests),
                "Created": _unix(image.created),
                "Size": image.size,
                "SharedSize": shared,
                "VirtualSize": image.size,
                "Labels": (image.config.get("config") or {}).get("Labels") or {},
                "Containers": users.get(image.id, 0),
            }
        )
    containers = mgr.list(True, None, True)
    volumes = []
    for vol in engine.volumes.list():
        doc = vol.to_docker()
        doc["UsageData"] = {"Size": engine.volumes.usage(vol.name), "RefCount": len(mgr.volume_users(vol.name))}
        volumes.append(doc)
    return {
        "LayersSize": sum(layer_sizes.values()),
        "Images": image_docs,
        "Containers": containers,
        "Volumes": volumes,
        "BuildCache": [],
    }


async def system_df(request: web.Request) -> web.StreamResponse:
    return json_response(await in_thread(request, disk_usage, request))


def _members(request: web.Request) -> list[tuple[str, str, dict | None]]:
    return [(c.id, c.name, c.private.get("network") if c.running else None) for c in manager(request).all()]


async def network_list(request: web.Request) -> web.StreamResponse:
    networks = engine_of(request).containers.networks  # type: ignore[union-attr]
    docs = await in_thread(request, networks.docker_networks, _members(request))
    filters = filters_of(request)
    for key, values in filters.items():
        if key == "name":
            docs = [d for d in docs if any(v in d["Name"] for v in values)]
        elif key == "id":
            docs = [d for d in docs if any(d["Id"].startswith(v) for v in values)]
        elif key == "driver":
            docs = [d for d in docs if d["Driver"] in values]
        elif key in ("type", "scope"):
            continue
        else:
            raise Unsupported(f"network list filter {key!r} is not supported (name, id, driver are)")
    if not flag(request, "verbose"):
        for d in docs:
            d["Containers"] = {}
    return json_response(docs)


async def network_inspect(request: web.Request) -> web.StreamResponse:
    networks = engine_of(request).containers.networks  # type: ignore[union-attr]
    return json_response(await in_thread(request, networks.find, request.match_info["id"], _members(request)))


async def network_create(request: web.Request) -> web.StreamResponse:
    raise Unsupported(
        "creating networks is not supported by kapal: containers use bridge (the default), host or none"
    )


async def network_delete(request: web.Request) -> web.StreamResponse:
    networks = engine_of(request).containers.networks  # type: ignore[union-attr]
    doc = await in_thread(request, networks.find, request.match_info["id"], [])
    raise Unsupported(f"{doc['Name']} is a pre-defined network and cannot be removed")


async def network_connect(request: web.Request) -> web.StreamResponse:
    raise Unsupported("connecting a container to another network is not supported by kapal")


async def networks_prune(request: web.Request) -> web.StreamResponse:
    return json_response({"NetworksDeleted": None})  # bridge, host and none are pre-defined


async def build_prune(request: web.Request) -> web.StreamResponse:
    return json_response({"CachesDeleted": None, "SpaceReclaimed": 0})  # kapal does not build images (yet)


def register(r: Router) -> None:
    r.add("POST", "/networks/prune", networks_prune)
    r.add("POST", "/build/prune", build_prune)
    r.add("GET", "/events", events)
    r.add("GET", "/system/df", system_df)
    r.add("GET", "/networks", network_list)
    r.add("POST", "/networks/create", network_create)
    r.add("GET", "/networks/{id}", network_inspect)
    r.add("DELETE", "/networks/{id}", network_delete)
    r.add("POST", "/networks/{id}/connect", network_connect)
    r.add("POST", "/networks/{id}/disconnect", network_connect)
