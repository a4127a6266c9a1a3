"""ServiceAccount controller (a `default` ServiceAccount in every active namespace, back within moments of
being deleted) and the token controller (fills legacy `kubernetes.io/service-account-token` Secrets that
users create, and only those: since 1.24 no Secret is made unasked)."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

from kapal import errors
from kapal.kube.client.informer import EventHandler
from kapal.kube.client.kinds import NAMESPACES, SECRETS, SERVICEACCOUNTS
from kapal.kube.client.store import copy_object, split_key
from kapal.kube.controllers.base import Controller, ControllerContext

Obj = dict[str, Any]
TOKEN_TYPE = "kubernetes.io/service-account-token"
SA_NAME = "kubernetes.io/service-account.name"
SA_UID = "kubernetes.io/service-account.uid"
LEGACY_ISSUER = "kubernetes/serviceaccount"


class ServiceAccountController(Controller):
    name = "serviceaccount-controller"
    workers = 1
    wanted = ("default",)

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.namespaces = self.informer(NAMESPACES)
        self.accounts = self.informer(SERVICEACCOUNTS)
        self.watch(self.namespaces, EventHandler(on_add=self.enqueue, on_update=lambda _o, n: self.enqueue(n)))
        self.watch(self.accounts, EventHandler(on_delete=lambda sa: self.queue.add(sa["metadata"]["namespace"])))

    async def sync(self, key: str) -> None:
        ns = self.namespaces.indexer.get(key)
        if ns is None or ns["metadata"].get("deletionTimestamp") or (ns.get("status") or {}).get(
                "phase") == "Terminating":
            return
        for name in self.wanted:
            if self.accounts.indexer.get(f"{key}/{name}") is not None:
                continue
            try:
                await self.client.create(SERVICEACCOUNTS, {"apiVersion": "v1", "kind": "ServiceAccount",
                                                           "metadata": {"name": name, "namespace": key}})
            except errors.AlreadyExists:
                pass
            except errors.Forbidden as e:
                if "being terminated" not in str(e):
                    raise


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class LegacyTokenSigner:
    """RS256 JWTs with the legacy claims the API server accepts for secret-based tokens."""

    def __init__(self, key_file: Path) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        from kapal.kube.pki.certs import private_key_from_pem

        key = private_key_from_pem(key_file.read_bytes())
        if not isinstance(key, rsa.RSAPrivateKey):
            raise errors.Invalid(f"{key_file}: only RSA service-account signing keys are supported")
        self.key = key
        der = key.public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
        self.kid = _b64url(hashlib.sha256(der).digest())

    def sign(self, namespace: str, secret: str, sa: str, uid: str) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        header = {"alg": "RS256", "kid": self.kid}
        claims = {"iss": LEGACY_ISSUER, "kubernetes.io/serviceaccount/namespace": namespace,
                  "kubernetes.io/serviceaccount/secret.name": secret,
                  "kubernetes.io/serviceaccount/service-account.name": sa,
                  "kubernetes.io/serviceaccount/service-account.uid": uid,
                  "sub": f"system:serviceaccount:{namespace}:{sa}"}
        signing_input = (_b64url(json.dumps(header, separators=(",", ":")).encode()) + "." +
                         _b64url(json.dumps(claims, separators=(",", ":")).encode()))
        signature = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return signing_input + "." + _b64url(signature)


class TokenController(Controller):
    name = "serviceaccount-token-controller"
    workers = 5

    def __init__(self, ctx: ControllerContext, signer: LegacyTokenSigner, root_ca: bytes | None) -> None:
        super().__init__(ctx)
        self.signer = signer
        self.root_ca = root_ca
        self.secrets = self.informer(SECRETS)
        self.accounts = self.informer(SERVICEACCOUNTS)
        self.watch(self.secrets, EventHandler(on_add=self._secret, on_update=lambda _o, n: self._secret(n)))
        self.watch(self.accounts, EventHandler(on_delete=self._account_deleted))

    def _secret(self, secret: Obj) -> None:
        if secret.get("type") == TOKEN_TYPE:
            self.enqueue(secret)

    def _account_deleted(self, sa: Obj) -> None:
        ns = sa["metadata"]["namespace"]
        for s in self.secrets.indexer.list(ns):
            if s.get("type") == TOKEN_TYPE and (s["metadata"].get("annotations") or {}).get(SA_NAME) == \
                    sa["metadata"]["name"]:
                self.enqueue(s)

    async def sync(self, key: str) -> None:
        secret = self.secrets.indexer.get(key)
        if secret is None or secret.get("type") != TOKEN_TYPE or secret["metadata"].get("deletionTimestamp"):
            return
        ns, name = split_key(key)
        assert ns is not None
        annotations = secret["metadata"].get("annotations") or {}
        sa_name = annotations.get(SA_NAME)
        sa = self.accounts.indexer.get(f"{ns}/{sa_name}") if sa_name else None
        if sa is None or (annotations.get(SA_UID) and annotations[SA_UID] != sa["metadata"]["uid"]):
            if sa_name and self.accounts.has_synced():
                try:
                    live = await self.client.get(SERVICEACCOUNTS, sa_name, ns)
                except errors.NotFound:
                    live = None
                if live is None or (annotations.get(SA_UID) and annotations[SA_UID] != live["metadata"]["uid"]):
                    await self.client.delete(SECRETS, name, ns, uid=secret["metadata"]["uid"])
            return
        data = secret.get("data") or {}
        if data.get("token") and data.get("namespace") and (data.get("ca.crt") or not self.root_ca):
            return
        fresh = copy_object(secret)
        fresh["metadata"].setdefault("annotations", {})[SA_UID] = sa["metadata"]["uid"]
        token = self.signer.sign(ns, name, sa_name or "", sa["metadata"]["uid"])
        new_data = dict(data)
        new_data["token"] = base64.b64encode(token.encode()).decode()
        new_data["namespace"] = base64.b64encode(ns.encode()).decode()
        if self.root_ca:
            new_data["ca.crt"] = base64.b64encode(self.root_ca).decode()
        fresh["data"] = new_data
        await self.client.replace(SECRETS, fresh)
