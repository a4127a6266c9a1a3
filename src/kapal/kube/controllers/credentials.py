"""--use-service-account-credentials: each controller acts as its own service account kube-system/<name>
(deployment-controller, job-controller, …), bound by the default RBAC policy to exactly what it needs.

The manager's own identity creates the ServiceAccount if missing and asks for a token (TokenRequest, one
hour), renewed at 80 % of its life. The per-controller clients share one connection pool whose TLS context
carries only the CA, so the server authenticates them by their bearer tokens.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import aiohttp

from kapal import errors
from kapal.kube.client.client import ApiClient
from kapal.kube.client.kinds import SERVICEACCOUNTS

log = logging.getLogger(__name__)

TOKEN_SECONDS = 3600
NAMESPACE = "kube-system"


class ServiceAccountCredentials:
    def __init__(self, root: ApiClient) -> None:
        self.root = root
        self._connector: aiohttp.TCPConnector | None = None
        self._clients: dict[str, ApiClient] = {}
        self._refreshers: list[asyncio.Task[None]] = []
        self._pending: dict[str, asyncio.Future[ApiClient]] = {}

    async def client_for(self, name: str) -> ApiClient:
        """The client acting as kube-system/<name>; concurrent callers for one name share one token request."""
        if name in self._clients:
            return self._clients[name]
        pending = self._pending.get(name)
        if pending is None:
            pending = self._pending[name] = asyncio.ensure_future(self._new_client(name))
            pending.add_done_callback(lambda _f: self._pending.pop(name, None))
        return await asyncio.shield(pending)

    async def _new_client(self, name: str) -> ApiClient:
        token, lifetime = await self._token(name)
        if self._connector is None:
            ssl_ctx = self.root.config.ca_only_ssl()
            self._connector = aiohttp.TCPConnector(ssl=ssl_ctx if ssl_ctx is not None else False, limit=0)
        client = ApiClient(self.root.config.with_token(token, f"kube-controller-manager/kapal/{name}"),
                           connector=self._connector)
        self._clients[name] = client
        self._refreshers.append(asyncio.create_task(self._refresh(name, client, lifetime)))
        return client

    async def _token(self, name: str) -> tuple[str, float]:
        try:
            await self.root.get(SERVICEACCOUNTS, name, NAMESPACE)
        except errors.NotFound:
            try:
                await self.root.create(SERVICEACCOUNTS, {"apiVersion": "v1", "kind": "ServiceAccount",
                                                         "metadata": {"name": name, "namespace": NAMESPACE}})
            except errors.AlreadyExists:
                pass
        answer: dict[str, Any] = await self.root.create(
            SERVICEACCOUNTS, {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                              "spec": {"expirationSeconds": TOKEN_SECONDS}},
            NAMESPACE, name=name, subresource="token")
        token = answer["status"]["token"]
        expires = answer["status"].get("expirationTimestamp")
        lifetime = float(TOKEN_SECONDS)
        if expires:
            import datetime as dt

            at = dt.datetime.fromisoformat(expires.replace("Z", "+00:00"))
            lifetime = max(60.0, (at - dt.datetime.now(dt.UTC)).total_seconds())
        return token, lifetime

    async def _refresh(self, name: str, client: ApiClient, lifetime: float) -> None:
        while True:
            await asyncio.sleep(lifetime * 0.8)
            started = time.monotonic()
            while True:
                try:
                    token, lifetime = await self._token(name)
                    client.set_token(token)
                    break
                except errors.KapalError as e:
                    log.warning("renewing the token of %s/%s failed: %s", NAMESPACE, name, e)
                    if time.monotonic() - started > lifetime:
                        raise
                    await asyncio.sleep(5)

    async def close(self) -> None:
        for p in list(self._pending.values()):
            p.cancel()
        await asyncio.gather(*self._pending.values(), return_exceptions=True)
        for t in self._refreshers:
            t.cancel()
        await asyncio.gather(*self._refreshers, return_exceptions=True)
        for c in self._clients.values():
            await c.close()
        if self._connector is not None:
            await self._connector.close()
