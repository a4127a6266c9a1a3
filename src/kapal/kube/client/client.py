"""The async API client: one HTTPS session, URLs from the resource registry, Status failures as kapal.errors.

Requests are data (method, path, query, body); every verb funnels through `request`, watches through `watch`.
Objects are plain JSON dicts, as the server sends them. The session is created lazily on the running loop.

    client = ApiClient(ClientConfig.from_kubeconfig(path))
    pod = await client.get(PODS, "web-0", "default")
    async for ev in client.watch(PODS, "default", resource_version=rv): ...
    await client.close()
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp

from kapal import errors
from kapal.kube.client.config import ClientConfig
from kapal.kube.client.status import ResourceExpired, error_from_status
from kapal.kube.meta.resources import ResourceType

log = logging.getLogger(__name__)

MAX_CONNECTIONS = 32

PATCH_TYPES = {
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "json": "application/json-patch+json",
    "apply": "application/apply-patch+yaml",
}


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class WatchEvent:
    type: str  # ADDED, MODIFIED, DELETED, BOOKMARK
    object: dict[str, Any]


class TokenBucket:
    """Client-side throttling (client-go's flowcontrol): `qps` tokens a second, at most `burst` saved up."""

    def __init__(self, qps: float, burst: int) -> None:
        self.qps = qps
        self.burst = max(1, burst)
        self.tokens = float(self.burst)
        self.stamp = time.monotonic()

    def reserve(self) -> float:
        """Take a token; the delay before it may be used."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.qps)
        self.stamp = now
        self.tokens -= 1
        return 0.0 if self.tokens >= 0 else -self.tokens / self.qps

    async def wait(self) -> None:
        delay = self.reserve()
        if delay > 0:
            await asyncio.sleep(delay)


class ApiClient:
    def __init__(self, config: ClientConfig, *, connector: aiohttp.BaseConnector | None = None) -> None:
        self.config = config
        self._connector = connector
        self._session: aiohttp.ClientSession | None = None
        self._watch_session: aiohttp.ClientSession | None = None
        self._headers = {"User-Agent": config.user_agent, "Accept": "application/json"}
        if config.token:
            self._headers["Authorization"] = f"Bearer {config.token}"
        self._bucket = TokenBucket(config.qps, config.burst or int(config.qps * 2) or 1) if config.qps > 0 else None
        self._extra: dict[str, Any] = {}
        if config.tls_server_name:
            self._extra["server_hostname"] = config.tls_server_name

    @property
    def session(self) -> aiohttp.ClientSession:
        """Requests share a bounded pool of keep-alive connections (HTTP/1.1 has no multiplexing: a burst of
        500 creates must not open 500 TLS connections)."""
        if self._session is None or self._session.closed:
            self._session = self._new_session(self._connector, MAX_CONNECTIONS)
        return self._session

    @property
    def watch_session(self) -> aiohttp.ClientSession:
        """Watches hold their connection for minutes: their own unbounded pool, so they never starve requests."""
        if self._watch_session is None or self._watch_session.closed:
            self._watch_session = self._new_session(None, 0)
        return self._watch_session

    def _new_session(self, connector: aiohttp.BaseConnector | None, limit: int) -> aiohttp.ClientSession:
        owner = connector is None
        connector = connector or aiohttp.TCPConnector(
            ssl=self.config.ssl_context if self.config.ssl_context is not None else False, limit=limit,
            keepalive_timeout=60)
        return aiohttp.ClientSession(
            base_url=None, connector=connector, connector_owner=owner, headers=self._headers,
            json_serialize=json.dumps, timeout=aiohttp.ClientTimeout(total=None, sock_connect=10))

    def set_token(self, token: str) -> None:
        """Swap the bearer token (refreshed service-account tokens); later requests use the new one."""
        self._headers["Authorization"] = f"Bearer {token}"
        for session in (self._session, self._watch_session):
            if session is not None:
                session.headers["Authorization"] = f"Bearer {token}"

    async def close(self) -> None:
        for session in (self._session, self._watch_session):
            if session is not None:
                await session.close()
        self._session = self._watch_session = None

    # --- the one request path -------------------------------------------------------------------------------------

    async def request(self, method: str, path: str, *, params: dict[str, Any] | None = None, body: Any = None,
                      content_type: str = "application/json", timeout: float | None = 60.0) -> Any:
        """Send one request; the decoded JSON answer, or a kapal error made from the Status."""
        if self._bucket is not None:
            await self._bucket.wait()
        data = body if isinstance(body, bytes) or body is None else dumps(body)
        headers = {"Content-Type": content_type} if data is not None else None
        try:
            async with self.session.request(
                    method, self.config.server + path, params=_query(params), data=data, headers=headers,
                    timeout=aiohttp.ClientTimeout(total=timeout), **self._extra) as resp:
                raw = await resp.read()
                if resp.status >= 400:
                    raise error_from_status(resp.status, raw, resp.headers.get("Retry-After"))
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError) as e:
            raise errors.Temporary(f"{method} {path}: cannot reach the API server at {self.config.server}: "
                                   f"{e or type(e).__name__}") from e
        if not raw:
            return {}
        return json.loads(raw)

    # --- verbs ----------------------------------------------------------------------------------------------------

    async def get(self, r: ResourceType, name: str, namespace: str | None = None,
                  subresource: str | None = None) -> dict[str, Any]:
        return await self.request("GET", r.path(namespace, name, subresource))

    async def list(self, r: ResourceType, namespace: str | None = None, *, label_selector: str | None = None,
                   field_selector: str | None = None, limit: int | None = None, continue_: str | None = None,
                   resource_version: str | None = None, timeout: float | None = 120.0) -> dict[str, Any]:
        """One page of a list (the whole list without `limit`)."""
        params = {"labelSelector": label_selector, "fieldSelector": field_selector, "limit": limit,
                  "continue": continue_, "resourceVersion": resource_version}
        return await self.request("GET", r.path(namespace), params=params, timeout=timeout)

    async def list_all(self, r: ResourceType, namespace: str | None = None, *, label_selector: str | None = None,
                       field_selector: str | None = None, page_size: int = 500) -> tuple[list[dict[str, Any]], str]:
        """Every item and the list's resourceVersion, page by page; an expired continue token restarts unpaged."""
        items: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            try:
                page = await self.list(r, namespace, label_selector=label_selector, field_selector=field_selector,
                                       limit=page_size or None, continue_=token)
            except ResourceExpired:
                if token is None:
                    raise
                page = await self.list(r, namespace, label_selector=label_selector, field_selector=field_selector)
                return _with_kind(page.get("items") or [], r), str(page["metadata"].get("resourceVersion", ""))
            items.extend(page.get("items") or [])
            meta = page.get("metadata") or {}
            token = meta.get("continue") or None
            if not token:
                return _with_kind(items, r), str(meta.get("resourceVersion", ""))

    async def create(self, r: ResourceType, obj: dict[str, Any], namespace: str | None = None, *,
                     subresource: str | None = None, name: str | None = None,
                     field_manager: str | None = None) -> dict[str, Any]:
        ns = namespace if namespace is not None else (obj.get("metadata") or {}).get("namespace")
        path = r.path(ns, name, subresource) if subresource else r.path(ns)
        return await self.request("POST", path, params={"fieldManager": field_manager}, body=obj)

    async def replace(self, r: ResourceType, obj: dict[str, Any], *, subresource: str | None = None,
                      field_manager: str | None = None) -> dict[str, Any]:
        """PUT the object (metadata.resourceVersion makes it a compare-and-swap)."""
        meta = obj["metadata"]
        return await self.request("PUT", r.path(meta.get("namespace"), meta["name"], subresource),
                                  params={"fieldManager": field_manager}, body=obj)

    async def replace_status(self, r: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        return await self.replace(r, obj, subresource="status")

    async def patch(self, r: ResourceType, name: str, patch: Any, namespace: str | None = None, *,
                    patch_type: str = "merge", subresource: str | None = None, field_manager: str | None = None,
                    force: bool | None = None) -> dict[str, Any]:
        params = {"fieldManager": field_manager, "force": force}
        return await self.request("PATCH", r.path(namespace, name, subresource), params=params, body=patch,
                                  content_type=PATCH_TYPES[patch_type])

    async def delete(self, r: ResourceType, name: str, namespace: str | None = None, *,
                     propagation_policy: str | None = None, grace_period_seconds: int | None = None,
                     uid: str | None = None, resource_version: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if propagation_policy:
            body["propagationPolicy"] = propagation_policy
        if grace_period_seconds is not None:
            body["gracePeriodSeconds"] = grace_period_seconds
        if uid or resource_version:
            body["preconditions"] = {k: v for k, v in (("uid", uid), ("resourceVersion", resource_version)) if v}
        return await self.request("DELETE", r.path(namespace, name), body=body)

    async def watch(self, r: ResourceType, namespace: str | None = None, *, resource_version: str | None = None,
                    label_selector: str | None = None, field_selector: str | None = None,
                    timeout_seconds: int = 300, bookmarks: bool = True) -> AsyncIterator[WatchEvent]:
        """Events after resource_version until the server ends the stream; raises ResourceExpired on 410."""
        params = {"watch": "1", "resourceVersion": resource_version, "labelSelector": label_selector,
                  "fieldSelector": field_selector, "timeoutSeconds": timeout_seconds,
                  "allowWatchBookmarks": "true" if bookmarks else None}
        if self._bucket is not None:
            await self._bucket.wait()
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=timeout_seconds + 90)
        try:
            async with self.watch_session.get(self.config.server + r.path(namespace), params=_query(params),
                                        timeout=timeout, **self._extra) as resp:
                if resp.status >= 400:
                    raise error_from_status(resp.status, await resp.read(), resp.headers.get("Retry-After"))
                buffer = b""
                async for chunk in resp.content.iter_any():
                    buffer += chunk
                    if b"\n" not in chunk:
                        continue
                    *lines, buffer = buffer.split(b"\n")
                    for line in lines:
                        if line.strip():
                            yield _event(line, r)
                if buffer.strip():
                    yield _event(buffer, r)
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError) as e:
            raise errors.Temporary(f"watch {r.plural}: connection to {self.config.server} lost: "
                                   f"{e or type(e).__name__}") from e


def _query(params: dict[str, Any] | None) -> dict[str, str] | None:
    if not params:
        return None
    out = {}
    for k, v in params.items():
        if v is None or v == "":
            continue
        out[k] = ("true" if v else "false") if isinstance(v, bool) else str(v)
    return out or None


def _with_kind(items: list[dict[str, Any]], r: ResourceType) -> list[dict[str, Any]]:
    """List items come without kind/apiVersion; put them back so objects look the same however they arrived."""
    for item in items:
        item.setdefault("kind", r.kind)
        item.setdefault("apiVersion", r.api_version)
    return items


def _event(line: bytes, r: ResourceType) -> WatchEvent:
    data = json.loads(line)
    kind = data.get("type", "")
    obj = data.get("object") or {}
    if kind == "ERROR":
        code = int(obj.get("code") or 500)
        raise error_from_status(code, obj)
    return WatchEvent(kind, obj)
