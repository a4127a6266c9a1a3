"""Docker API: /images (pull, import, list, inspect, history, tag, push, remove)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from kapal.errors import Invalid, Unsupported
from kapal.image.registry import Credentials

from .api import Router, engine_of, filters_of, flag, in_thread, json_response, stream_job


class BodyReader:
    """A blocking file-like view of a request body, for handlers running in threads."""

    def __init__(self, request: web.Request, loop: asyncio.AbstractEventLoop) -> None:
        self._content = request.content
        self._loop = loop

    def read(self, n: int = -1) -> bytes:
        size = n if n > 0 else 1 << 20
        coro = self._content.read(size) if n > 0 else self._content.read()
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()


async def image_create(request: web.Request) -> web.StreamResponse:
    engine = engine_of(request)
    q = request.query
    from_image, from_src = q.get("fromImage"), q.get("fromSrc")
    if from_image:
        if q.get("platform") and q.get("platform") not in ("linux/amd64", "linux", "amd64"):
            raise Unsupported(f"pulling for platform {q.get('platform')!r} is not supported")
        creds = Credentials.from_x_registry_auth(request.headers.get("X-Registry-Auth"))
        tag = q.get("tag", "")

        def pull(emit) -> str:
            image_id = engine.pull(from_image, tag, creds, emit)
            name = f"{from_image}:{tag}" if tag and not tag.startswith("sha256:") else from_image
            engine.events.emit("image", "pull", name, {"name": from_image})
            return image_id

        return await stream_job(request, pull)
    if from_src:
        if from_src != "-":
            raise Unsupported("importing from a URL is not supported: use `import FILE` or stdin (fromSrc=-)")
        reader = BodyReader(request, asyncio.get_running_loop())
        changes = q.getall("changes", [])

        def do_import(emit) -> str:
            image_id = engine.import_image(reader, q.get("repo", ""), q.get("tag", ""), q.get("message", ""), changes)
            emit({"status": image_id})
            engine.events.emit("image", "import", image_id, {"name": q.get("repo", "")})
            return image_id

        return await stream_job(request, do_import)
    raise Invalid("images/create needs fromImage (pull) or fromSrc (import)")


async def image_list(request: web.Request) -> web.StreamResponse:
    engine = engine_of(request)
    return json_response(await in_thread(request, engine.image_list, flag(request, "all"), filters_of(request)))


async def image_inspect(request: web.Request) -> web.StreamResponse:
    engine = engine_of(request)
    return json_response(await in_thread(request, engine.image_inspect, request.match_info["name"]))


async def image_history(request: web.Request) -> web.StreamResponse:
    engine = engine_of(request)
    return json_response(await in_thread(request, engine.image_history, request.match_info["name"]))


async def image_tag(request: web.Request) -> web.StreamResponse:
    engine = engine_of(request)
    repo = request.query.get("repo")
    if not repo:
        raise Invalid("repository name must be given (repo=…)")
    await in_thread(request, engine.tag, request.match_info["name"], repo, request.query.get("tag", ""))
    tag = request.query.get("tag") or "latest"
    engine.events.emit("image", "tag", request.match_info["name"], {"name": f"{repo}:{tag}"})
    return web.Response(status=201)


async def image_push(request: web.Request) -> web.StreamResponse:
    engine = engine_of(request)
    creds = Credentials.from_x_registry_auth(request.headers.get("X-Registry-Auth"))
    name, tag = request.match_info["name"], request.query.get("tag", "")

    def push(emit) -> str:
        digest = engine.push(name, tag, creds, emit)
        engine.events.emit("image", "push", f"{name}:{tag}" if tag else name, {"name": name})
        return digest

    return await stream_job(request, push)


async def image_delete(request: web.Request) -> web.StreamResponse:
    engine = engine_of(request)
    result = await in_thread(request, engine.remove_image, request.match_info["name"], flag(request, "force"))
    for item in result:
        for action, ident in item.items():
            engine.events.emit("image", action.lower(), ident, {"name": request.match_info["name"]})
    return json_response(result)


async def images_prune(request: web.Request) -> web.StreamResponse:
    """Unused images: dangling ones (no tag), or every unused one with filters dangling=false."""
    engine = engine_of(request)
    filters = filters_of(request)
    only_dangling = "false" not in (filters.get("dangling") or ["true"])
    for key in set(filters) - {"dangling"}:
        raise Unsupported(f"image prune filter {key!r} is not supported (dangling is)")

    def prune() -> dict:
        deleted: list[dict] = []
        reclaimed = 0
        for image in engine.images.list():
            if (only_dangling and image.repo_tags) or engine._image_users(image.id):
                continue
            reclaimed += image.size
            deleted += engine.remove_image(image.id, force=True)
        return {"ImagesDeleted": deleted or None, "SpaceReclaimed": reclaimed}

    return json_response(await in_thread(request, prune))


def register(r: Router) -> None:
    r.add("POST", "/images/prune", images_prune)
    r.add("POST", "/images/create", image_create)
    r.add("GET", "/images/json", image_list)
    r.add("GET", "/images/{name:.+}/json", image_inspect)
    r.add("GET", "/images/{name:.+}/history", image_history)
    r.add("POST", "/images/{name:.+}/tag", image_tag)
    r.add("POST", "/images/{name:.+}/push", image_push)
    r.add("DELETE", "/images/{name:.+}", image_delete)
