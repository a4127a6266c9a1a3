"""Docker API: /volumes."""

from __future__ import annotations

from aiohttp import web

from .api import Router, engine_of, filters_of, flag, in_thread, json_body, json_response


async def volume_list(request: web.Request) -> web.StreamResponse:
    filters = filters_of(request)
    engine = engine_of(request)
    doc = await in_thread(request, engine.volume_list)
    if "name" in filters:
        doc["Volumes"] = [v for v in doc["Volumes"] if any(n in v["Name"] for n in filters["name"])]
    return json_response(doc)


async def volume_create(request: web.Request) -> web.StreamResponse:
    body = await json_body(request)
    engine = engine_of(request)
    vol = await in_thread(
        request,
        lambda: engine.volumes.create(
            body.get("Name") or None,
            driver=body.get("Driver") or "local",
            labels=body.get("Labels") or None,
            options=body.get("DriverOpts") or None,
        ),
    )
    engine.events.emit("volume", "create", vol.name, {"driver": "local"})
    return json_response(vol.to_docker(), status=201)


async def volume_inspect(request: web.Request) -> web.StreamResponse:
    engine = engine_of(request)
    vol = await in_thread(request, engine.volumes.get, request.match_info["name"])
    return json_response(vol.to_docker())


async def volume_delete(request: web.Request) -> web.StreamResponse:
    engine = engine_of(request)
    await in_thread(request, engine.volume_remove, request.match_info["name"], flag(request, "force"))
    engine.events.emit("volume", "destroy", request.match_info["name"], {"driver": "local"})
    return web.Response(status=204)


async def volume_prune(request: web.Request) -> web.StreamResponse:
    engine = engine_of(request)

    def prune() -> dict:
        deleted, reclaimed = [], 0
        for vol in engine.volumes.list():
            if not vol.anonymous and not flag(request, "all") and "all=true" not in request.query.get("filters", ""):
                continue
            if engine._volume_users(vol.name):
                continue
            reclaimed += engine.volumes.usage(vol.name)
            engine.volumes.remove(vol.name)
            deleted.append(vol.name)
        return {"VolumesDeleted": deleted, "SpaceReclaimed": reclaimed}

    return json_response(await in_thread(request, prune))


def register(r: Router) -> None:
    r.add("GET", "/volumes", volume_list)
    r.add("POST", "/volumes/create", volume_create)
    r.add("POST", "/volumes/prune", volume_prune)
    r.add("GET", "/volumes/{name}", volume_inspect)
    r.add("DELETE", "/volumes/{name}", volume_delete)
