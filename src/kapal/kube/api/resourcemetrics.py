"""metrics.k8s.io/v1beta1 NodeMetrics and PodMetrics, answered by asking the kubelets (metrics-server's job).

`kubectl top nodes|pods` lists these. Each request asks every Ready node's kubelet for
`/stats/summary?only_cpu_and_memory=true` (over the same TLS identity as the kubelet proxy, at the node's
InternalIP and kubeletEndpoint port), concurrently with a short timeout, and caches each node's answer for
`CACHE_SECONDS`. A node whose kubelet does not answer is left out, as metrics-server leaves it out.
Usage is the kubelet's: CPU in nanocores over the kubelet's sampling window, memory as the working set.

Read-only: get and list (label selectors on the pods' and nodes' own labels; fieldSelector metadata.name).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from kapal import errors
from kapal.kube.api import status
from kapal.kube.api.proxy import node_endpoint
from kapal.kube.api.rest import json_response
from kapal.kube.meta import selectors
from kapal.kube.meta.resources import lookup

if TYPE_CHECKING:
    from kapal.kube.api.authn import UserInfo
    from kapal.kube.api.requestinfo import RequestInfo
    from kapal.kube.api.rest import Rest

log = logging.getLogger(__name__)

GROUP = "metrics.k8s.io"
API_VERSION = "metrics.k8s.io/v1beta1"
CACHE_SECONDS = 2.0
KUBELET_TIMEOUT = 5.0
DEFAULT_WINDOW = "10s"

_NODES = lookup("", "v1", "nodes")
_PODS = lookup("", "v1", "pods")


def cpu_quantity(nano_cores: int) -> str:
    return f"{int(nano_cores)}n"


def memory_quantity(working_set: int) -> str:
    return f"{int(working_set) // 1024}Ki"


def _parse_time(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _window(cpu: dict[str, Any]) -> str:
    return DEFAULT_WINDOW if cpu.get("usageNanoCores") is not None else "0s"


def _usage(cpu: dict[str, Any] | None, memory: dict[str, Any] | None) -> dict[str, str] | None:
    if not cpu or not memory or cpu.get("usageNanoCores") is None or memory.get("workingSetBytes") is None:
        return None
    return {"cpu": cpu_quantity(cpu["usageNanoCores"]), "memory": memory_quantity(memory["workingSetBytes"])}


def node_metrics(node: dict[str, Any], summary: dict[str, Any]) -> dict[str, Any] | None:
    """NodeMetrics from the node's summary (None when the kubelet has no rates yet)."""
    stats = summary.get("node") or {}
    usage = _usage(stats.get("cpu"), stats.get("memory"))
    if usage is None:
        return None
    meta = node.get("metadata") or {}
    return {"kind": "NodeMetrics", "apiVersion": API_VERSION,
            "metadata": {"name": meta["name"], "creationTimestamp": _now(), "labels": dict(meta.get("labels") or {})},
            "timestamp": stats["cpu"].get("time") or _now(), "window": _window(stats["cpu"]), "usage": usage}


def pod_metrics(pod: dict[str, Any], stats: dict[str, Any]) -> dict[str, Any] | None:
    """PodMetrics from one pod entry of a summary; None unless every container has usage (as metrics-server)."""
    containers = []
    stamp = None
    for c in stats.get("containers") or ():
        usage = _usage(c.get("cpu"), c.get("memory"))
        if usage is None:
            return None
        stamp = stamp or (c.get("cpu") or {}).get("time")
        containers.append({"name": c["name"], "usage": usage})
    if not containers:
        return None
    meta = pod.get("metadata") or {}
    return {"kind": "PodMetrics", "apiVersion": API_VERSION,
            "metadata": {"name": meta["name"], "namespace": meta.get("namespace") or "default",
                         "creationTimestamp": _now(), "labels": dict(meta.get("labels") or {})},
            "timestamp": stamp or _now(), "window": DEFAULT_WINDOW, "containers": containers}


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ready(node: dict[str, Any]) -> bool:
    for cond in (node.get("status") or {}).get("conditions") or ():
        if cond.get("type") == "Ready":
            return cond.get("status") == "True"
    return False


class SummaryCache:
    """Per-node summaries, fetched at most every CACHE_SECONDS, shared by concurrent requests."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[float, dict[str, Any] | None]] = {}
        self._inflight: dict[str, asyncio.Future[dict[str, Any] | None]] = {}

    async def get(self, rest: Rest, node: dict[str, Any]) -> dict[str, Any] | None:
        name = node["metadata"]["name"]
        entry = self._entries.get(name)
        if entry is not None and time.monotonic() - entry[0] < CACHE_SECONDS:
            return entry[1]
        running = self._inflight.get(name)
        if running is not None:
            return await asyncio.shield(running)
        fut: asyncio.Future[dict[str, Any] | None] = asyncio.get_running_loop().create_future()
        self._inflight[name] = fut
        try:
            summary = await _fetch(rest, node)
            self._entries[name] = (time.monotonic(), summary)
            fut.set_result(summary)
            return summary
        except BaseException as e:
            fut.set_exception(e)
            fut.exception()  # retrieved: waiters re-raise it themselves
            raise
        finally:
            del self._inflight[name]


async def _fetch(rest: Rest, node: dict[str, Any]) -> dict[str, Any] | None:
    from kapal.kube.api.proxy import kubelet_ssl

    name = node["metadata"]["name"]
    try:
        host, port = node_endpoint(node)
    except errors.KapalError as e:
        log.info("metrics: %s", e)
        return None
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port, ssl=kubelet_ssl(rest)),
                                                KUBELET_TIMEOUT)
    except (OSError, TimeoutError) as e:
        log.info("metrics: node %s: kubelet at %s:%d unreachable: %s", name, host, port, e)
        return None
    try:
        writer.write(f"GET /stats/summary?only_cpu_and_memory=true HTTP/1.1\r\nHost: {host}:{port}\r\n"
                     "Accept: application/json\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), KUBELET_TIMEOUT)
    except (OSError, TimeoutError) as e:
        log.info("metrics: node %s: reading the summary failed: %s", name, e)
        return None
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].split()
    if len(status_line) < 2 or status_line[1] != b"200":
        log.info("metrics: node %s: kubelet answered %s", name, head.split(b"\r\n", 1)[0].decode(errors="replace"))
        return None
    if b"transfer-encoding: chunked" in head.lower():
        body = _dechunk(body)
    try:
        return json.loads(body)
    except ValueError:
        log.info("metrics: node %s: the summary is not JSON", name)
        return None


def _dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += data[:size]
        data = data[size + 2:]
    return out


def _cache(rest: Rest) -> SummaryCache:
    cache = rest.ctx.extra.get("metrics-summaries")
    if cache is None:
        cache = rest.ctx.extra["metrics-summaries"] = SummaryCache()
    return cache


def _objects(rest: Rest, r: Any, namespace: str | None = None) -> list[dict[str, Any]]:
    return [e.obj for e in rest.ctx.cache.resource(r.storage_key).items.values()
            if namespace is None or (e.obj.get("metadata") or {}).get("namespace") == namespace]


async def _summaries(rest: Rest, nodes: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    nodes = [n for n in nodes if _ready(n)]
    got = await asyncio.gather(*(_cache(rest).get(rest, n) for n in nodes), return_exceptions=True)
    return [(n, s) for n, s in zip(nodes, got, strict=True) if isinstance(s, dict)]


def _list(kind: str, items: list[dict[str, Any]], self_link: str) -> dict[str, Any]:
    return {"kind": f"{kind}List", "apiVersion": API_VERSION, "metadata": {}, "items": items}


def _filters(request: web.Request) -> tuple[Any, Any]:
    labels = selectors.parse_label_selector(request.query.get("labelSelector"))
    fields = request.query.get("fieldSelector") or ""
    names = {}
    for clause in filter(None, fields.split(",")):
        key, op, value = clause.partition("==") if "==" in clause else clause.partition("=")
        if key.strip() not in ("metadata.name", "metadata.namespace") or "!" in key:
            raise errors.Invalid(f'field label not supported: {key.strip()}')
        names[key.strip()] = value.strip()
    return labels, names


async def handle(rest: Rest, request: web.Request, info: RequestInfo, user: UserInfo) -> web.Response:
    if info.verb not in ("get", "list"):
        raise status.MethodNotAllowed("the server does not allow this method on the requested resource")
    labels, fields = _filters(request)
    assert _NODES is not None and _PODS is not None
    nodes = _objects(rest, _NODES)
    if info.plural == "nodes":
        wanted = [n for n in nodes if (info.name is None or n["metadata"]["name"] == info.name)
                  and labels.matches((n.get("metadata") or {}).get("labels") or {})
                  and fields.get("metadata.name", n["metadata"]["name"]) == n["metadata"]["name"]]
        items = [m for n, s in await _summaries(rest, wanted) if (m := node_metrics(n, s)) is not None]
        if info.name is not None:
            if not items:
                raise errors.NotFound(f'nodemetrics.metrics.k8s.io "{info.name}" not found')
            return json_response(200, items[0])
        return json_response(200, _list("NodeMetrics", sorted(items, key=lambda m: m["metadata"]["name"]),
                                        request.path))
    pods = {(p["metadata"].get("namespace"), p["metadata"]["name"]): p for p in _objects(rest, _PODS, info.namespace)}
    items = []
    for _, summary in await _summaries(rest, nodes):
        for entry in summary.get("pods") or ():
            ref = entry.get("podRef") or {}
            pod = pods.get((ref.get("namespace"), ref.get("name")))
            if pod is None or (pod["metadata"].get("uid") and ref.get("uid") and pod["metadata"]["uid"] != ref["uid"]):
                continue
            meta = pod["metadata"]
            if info.name is not None and meta["name"] != info.name:
                continue
            if not labels.matches(meta.get("labels") or {}):
                continue
            if any(meta.get(k.split(".", 1)[1]) != v for k, v in fields.items()):
                continue
            m = pod_metrics(pod, entry)
            if m is not None:
                items.append(m)
    if info.name is not None:
        if not items:
            raise errors.NotFound(f'podmetrics.metrics.k8s.io "{info.name}" not found')
        return json_response(200, items[0])
    items.sort(key=lambda m: (m["metadata"]["namespace"], m["metadata"]["name"]))
    return json_response(200, _list("PodMetrics", items, request.path))
