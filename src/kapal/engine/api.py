"""The Docker Engine API on aiohttp: routing with /vX.Y prefixes, errors as Docker JSON, JSON streams.

Handlers call the synchronous Engine in threads; this module is the only
place kapal errors become HTTP statuses for the Docker API.
"""

from __future__ import annotations

import asyncio
import json
import logging
import platform
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiohttp import web

from kapal import __version__
from kapal.errors import Invalid, KapalError

from .config import API_VERSION, MIN_API_VERSION
from .service import Engine

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ENGINE_KEY: web.AppKey[Engine] = web.AppKey("engine", Engine)
EXECUTOR_KEY: web.AppKey[ThreadPoolExecutor] = web.AppKey("executor", ThreadPoolExecutor)

COMMON_HEADERS = {
    "Api-Version": API_VERSION,
    "Docker-Experimental": "false",
    "Ostype": "linux",
    "Server": f"kapal/{__version__} (linux)",
}


def _version_tuple(v: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in v.split("."))
    except ValueError:
        return (0,)


def error_response(status: int, message: str) -> web.Response:
    return json_response({"message": message}, status=status)


def _dumps(obj: Any) -> str:
    return json.dumps(obj) + "\n"


@web.middleware
async def docker_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    version = request.match_info.get("version")
    if version is not None and _version_tuple(version) < _version_tuple(MIN_API_VERSION):
        return error_response(
            400,
            f"client version {version} is too old. Minimum supported API version is {MIN_API_VERSION}, "
            "please upgrade your client to a newer version",
        )
    try:
        resp = await handler(request)
    except KapalError as e:
        return error_response(e.http_status, str(e))
    except web.HTTPException as e:
        if e.status >= 400 and e.content_type != "application/json":
            return error_response(e.status, e.text or e.reason)
        raise
    except (ValueError, json.JSONDecodeError) as e:
        log.exception("bad request %s %s", request.method, request.path)
        return error_response(400, str(e))
    except Exception as e:
        log.exception("error in %s %s", request.method, request.path)
        return error_response(500, f"{type(e).__name__}: {e}")
    if not resp.prepared:
        for k, v in COMMON_HEADERS.items():
            resp.headers.setdefault(k, v)
    return resp


def json_response(data: Any, status: int = 200) -> web.Response:
    """JSON with `Content-Type: application/json` exactly (no charset): the docker CLI compares it verbatim."""
    headers = {**COMMON_HEADERS, "Content-Type": "application/json"}
    return web.Response(body=_dumps(data).encode(), status=status, headers=headers)


def engine_of(request: web.Request) -> Engine:
    return request.app[ENGINE_KEY]


async def in_thread(request: web.Request, fn: Callable[..., Any], *args: Any) -> Any:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(request.app[EXECUTOR_KEY], lambda: fn(*args))


def flag(request: web.Request, name: str, default: bool = False) -> bool:
    value = request.query.get(name)
    if value is None:
        return default
    return value.lower() in ("1", "true", "yes")


def filters_of(request: web.Request) -> dict[str, list[str]]:
    raw = request.query.get("filters")
    if not raw:
        return {}
    try:
        doc = json.loads(raw)
    except ValueError as e:
        raise Invalid(f"invalid filter: {e}") from e
    out: dict[str, list[str]] = {}
    for key, value in doc.items():
        out[key] = [k for k, v in value.items() if v] if isinstance(value, dict) else list(value)
    return out


async def json_body(request: web.Request) -> dict:
    if not request.can_read_body:
        return {}
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except ValueError as e:
        raise Invalid(f"invalid JSON body: {e}") from e


async def stream_job(request: web.Request, job: Callable[[Callable[[dict], None]], Any]) -> web.StreamResponse:
    """Run job(emit) in a thread; its messages go out as a chunked JSON stream, errors as errorDetail.

    As dockerd does, nothing is sent until the first message: a job that fails before that
    (an unknown image, refused credentials) gets a plain error status instead of a 200 stream.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[dict | None] = asyncio.Queue()

    def emit(msg: dict) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, msg)

    def run() -> Any:
        try:
            return job(emit)
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, None)

    future = loop.run_in_executor(request.app[EXECUTOR_KEY], run)
    msg = await queue.get()
    if msg is None:
        await future  # a failure before any message raises here: the middleware answers with its status
    resp = web.StreamResponse(headers={**COMMON_HEADERS, "Content-Type": "application/json"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    client_gone = False
    while msg is not None:
        if not client_gone:
            try:
                await resp.write((json.dumps(msg) + "\r\n").encode())
            except ConnectionError:
                client_gone = True
        msg = await queue.get()
    try:
        await future
    except Exception as e:
        text = str(e) if isinstance(e, KapalError) else f"{type(e).__name__}: {e}"
        if not isinstance(e, KapalError):
            log.exception("streamed job failed")
        if not client_gone:
            await resp.write((json.dumps({"errorDetail": {"message": text}, "error": text}) + "\r\n").encode())
    if not client_gone:
        await resp.write_eof()
    return resp


class Router:
    """Registers each route with and without the /vX.Y prefix."""

    def __init__(self, app: web.Application) -> None:
        self.app = app

    def add(self, method: str, path: str, handler: Handler) -> None:
        self.app.router.add_route(method, path, handler)
        self.app.router.add_route(method, r"/v{version:[0-9]+\.[0-9]+}" + path, handler)


# ---------------------------------------------------------------- system


async def ping(request: web.Request) -> web.StreamResponse:
    headers = {
        **COMMON_HEADERS,
        "Builder-Version": "",
        "Cache-Control": "no-cache, no-store, must-revalidate",
        "Pragma": "no-cache",
        "Swarm": "inactive",
        "Content-Type": "text/plain; charset=utf-8",
    }
    return web.Response(text="OK", headers=headers)


def version_doc() -> dict:
    kernel = platform.release()
    details = {
        "ApiVersion": API_VERSION,
        "Arch": _arch(),
        "BuildTime": "",
        "Experimental": "false",
        "GitCommit": "",
        "GoVersion": f"python{platform.python_version()}",
        "KernelVersion": kernel,
        "MinAPIVersion": MIN_API_VERSION,
        "Os": "linux",
    }
    return {
        "Platform": {"Name": "kapal engine"},
        "Components": [{"Name": "Engine", "Version": __version__, "Details": details}],
        "Version": __version__,
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "",
        "GoVersion": f"python{platform.python_version()}",
        "Os": "linux",
        "Arch": _arch(),
        "KernelVersion": kernel,
        "BuildTime": "",
    }


def _arch() -> str:
    from kapal.image.manifests import host_platform

    return host_platform()[1]


async def version(request: web.Request) -> web.StreamResponse:
    return json_response(version_doc())


def _mem_total() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


async def info(request: web.Request) -> web.StreamResponse:
    import os

    engine = engine_of(request)
    images = await in_thread(request, engine.images.list)
    mgr = engine.containers
    containers = mgr.list_all() if mgr is not None else []  # type: ignore[attr-defined]
    running = sum(1 for c in containers if c.get("State") == "running")
    paused = sum(1 for c in containers if c.get("State") == "paused")
    runtime = getattr(getattr(mgr, "runtime", None), "name", engine.config.runtime)
    lxcfs = getattr(getattr(mgr, "lxcfs", None), "dir", None)
    bridge = getattr(getattr(mgr, "networks", None), "bridge", None)
    return json_response(
        {
            "ID": "",
            "Containers": len(containers),
            "ContainersRunning": running,
            "ContainersPaused": paused,
            "ContainersStopped": len(containers) - running - paused,
            "Images": len(images),
            "Driver": "overlay2",
            "DriverStatus": [["Backing Filesystem", "extfs"], ["Supports d_type", "true"]],
            "Plugins": {"Volume": ["local"], "Network": ["bridge", "host", "null"], "Log": ["json-file"]},
            "MemoryLimit": True,
            "SwapLimit": os.path.exists("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"),
            "CpuCfsPeriod": True,
            "CpuCfsQuota": True,
            "CPUShares": True,
            "CPUSet": True,
            "PidsLimit": True,
            "IPv4Forwarding": True,
            "Debug": False,
            "LoggingDriver": "json-file",
            "CgroupDriver": "cgroupfs",
            "CgroupVersion": "2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "1",
            "DockerRootDir": str(engine.root),
            "KernelVersion": platform.release(),
            "OperatingSystem": "kapal",
            "OSType": "linux",
            "Architecture": platform.machine(),
            "NCPU": os.cpu_count(),
            "MemTotal": _mem_total(),
            "Name": platform.node(),
            "ServerVersion": __version__,
            "Runtimes": {runtime: {"path": runtime}},
            "DefaultRuntime": runtime,
            "LiveRestoreEnabled": bool(getattr(mgr, "live_restore", False)),
            "InitBinary": "docker-init",
            "RegistryConfig": {
                "InsecureRegistryCIDRs": ["127.0.0.0/8", "::1/128"],
                "IndexConfigs": {},
                "Mirrors": [],
            },
            "Swarm": {"LocalNodeState": "inactive"},
            "SecurityOptions": ["name=seccomp,profile=builtin", "name=no-new-privileges"],
            "Labels": [f"kapal.lxcfs={lxcfs or 'off'}", f"kapal.bridge={bridge.bridge if bridge else ''}"],
            "Warnings": None if lxcfs else ["WARNING: lxcfs is off: containers see the host's /proc/meminfo"],
        }
    )


def build_app(engine: Engine, executor: ThreadPoolExecutor | None = None) -> web.Application:
    app = web.Application(middlewares=[docker_middleware], client_max_size=1 << 40)
    app[ENGINE_KEY] = engine
    app[EXECUTOR_KEY] = executor or ThreadPoolExecutor(max_workers=32, thread_name_prefix="api")
    r = Router(app)
    r.add("GET", "/_ping", ping)
    r.add("HEAD", "/_ping", ping)
    r.add("GET", "/version", version)
    r.add("GET", "/info", info)
    from . import routes_images, routes_volumes

    routes_images.register(r)
    routes_volumes.register(r)
    if engine.containers is not None:
        from . import routes_containers, routes_exec, routes_system

        routes_containers.register(r)
        routes_exec.register(r)
        routes_system.register(r)
    return app
