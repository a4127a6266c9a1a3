"""Bootstrap tokens (off by default, as upstream; kubeadm turns them on): the bootstrap signer signs the
kube-public/cluster-info ConfigMap's kubeconfig with every signing token (a detached JWS, HS256, key id = the
token id) so `join` can check it; the token cleaner deletes bootstrap token Secrets past their expiration."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
from typing import Any

from kapal import errors
from kapal.kube.client.clock import parse_time
from kapal.kube.client.informer import EventHandler
from kapal.kube.client.kinds import CONFIGMAPS, SECRETS
from kapal.kube.client.store import copy_object, split_key
from kapal.kube.controllers.base import Controller, ControllerContext

Obj = dict[str, Any]
TOKEN_TYPE = "bootstrap.kubernetes.io/token"
JWS_PREFIX = "jws-kubeconfig-"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _data(secret: Obj, key: str) -> str:
    raw = (secret.get("data") or {}).get(key)
    return base64.b64decode(raw).decode() if raw else ""


def detached_jws(content: str, token_id: str, token_secret: str) -> str:
    """header..signature (payload detached), HS256 keyed by the token secret."""
    header = _b64url(json.dumps({"alg": "HS256", "kid": token_id}, separators=(",", ":")).encode())
    payload = _b64url(content.encode())
    mac = hmac.new(token_secret.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}..{_b64url(mac)}"


def expired(secret: Obj, now: dt.datetime) -> bool:
    when = parse_time(_data(secret, "expiration"))
    return when is not None and when <= now


def signing_tokens(secrets: list[Obj], now: dt.datetime) -> dict[str, str]:
    out = {}
    for s in secrets:
        if s.get("type") != TOKEN_TYPE or expired(s, now) or _data(s, "usage-bootstrap-signing") != "true":
            continue
        token_id, token_secret = _data(s, "token-id"), _data(s, "token-secret")
        if token_id and token_secret and s["metadata"]["name"] == f"bootstrap-token-{token_id}":
            out[token_id] = token_secret
    return out


class BootstrapSigner(Controller):
    name = "bootstrap-signer-controller"
    workers = 1

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.configmaps = self.informer(CONFIGMAPS, "kube-public")
        self.secrets = self.informer(SECRETS, "kube-system")
        everything = EventHandler(on_add=self._poke, on_update=lambda _o, n: self._poke(n), on_delete=self._poke)
        self.watch(self.configmaps, everything)
        self.watch(self.secrets, everything)

    def _poke(self, _obj: Obj) -> None:
        self.queue.add("kube-public/cluster-info")

    async def sync(self, key: str) -> None:
        cm = self.configmaps.indexer.get(key)
        if cm is None:
            return
        content = (cm.get("data") or {}).get("kubeconfig")
        if content is None:
            return
        tokens = signing_tokens(self.secrets.indexer.list(), dt.datetime.now(dt.UTC))
        data = {k: v for k, v in (cm.get("data") or {}).items() if not k.startswith(JWS_PREFIX)}
        for token_id, token_secret in tokens.items():
            data[JWS_PREFIX + token_id] = detached_jws(content, token_id, token_secret)
        if data == cm.get("data"):
            return
        fresh = copy_object(cm)
        fresh["data"] = data
        await self.client.replace(CONFIGMAPS, fresh)


class TokenCleaner(Controller):
    name = "token-cleaner-controller"
    workers = 1

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.secrets = self.informer(SECRETS, "kube-system")
        self.watch(self.secrets, self.enqueue_handler())

    async def sync(self, key: str) -> None:
        s = self.secrets.indexer.get(key)
        if s is None or s.get("type") != TOKEN_TYPE:
            return
        when = parse_time(_data(s, "expiration"))
        if when is None:
            return
        left = (when - dt.datetime.now(dt.UTC)).total_seconds()
        if left > 0:
            self.queue.add_after(key, left + 0.1)
            return
        ns, name = split_key(key)
        try:
            await self.client.delete(SECRETS, name, ns, uid=s["metadata"]["uid"])
        except (errors.NotFound, errors.Conflict):
            pass
