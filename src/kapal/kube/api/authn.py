"""Who is asking: x509 client certificates, bearer tokens (static file, bootstrap, service account), impersonation.

Each authenticator answers a UserInfo, None (not mine), or raises
Unauthorized (mine, but invalid). Every authenticated user is also in
`system:authenticated`.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kapal.errors import Invalid, Unauthorized
from kapal.kube.api import tokens
from kapal.kube.api.cache import WatchCache

log = logging.getLogger(__name__)

AUTHENTICATED = "system:authenticated"
UNAUTHENTICATED = "system:unauthenticated"
ANONYMOUS = "system:anonymous"
MASTERS = "system:masters"
BOOTSTRAP_TOKEN = re.compile(r"^([a-z0-9]{6})\.([a-z0-9]{16})$")
LEGACY_ISSUER = "kubernetes/serviceaccount"


@dataclass(frozen=True, eq=False)
class UserInfo:
    name: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: dict[str, list[str]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"username": self.name, "groups": list(self.groups)}
        if self.uid:
            d["uid"] = self.uid
        if self.extra:
            d["extra"] = self.extra
        return d

    @property
    def key(self) -> tuple[str, tuple[str, ...]]:
        return self.name, self.groups


def with_authenticated(user: UserInfo) -> UserInfo:
    if AUTHENTICATED in user.groups or user.name == ANONYMOUS:
        return user
    return UserInfo(user.name, user.uid, (*user.groups, AUTHENTICATED), user.extra)


def anonymous() -> UserInfo:
    return UserInfo(ANONYMOUS, groups=(UNAUTHENTICATED,))


def load_token_file(path: str | Path) -> dict[str, UserInfo]:
    """--token-auth-file: CSV `token,user,uid,"group1,group2"`."""
    users: dict[str, UserInfo] = {}
    with open(path, newline="") as f:
        for lineno, row in enumerate(csv.reader(f), 1):
            if not row or row[0].startswith("#"):
                continue
            if len(row) < 3:
                raise Invalid(f"{path}:{lineno}: need at least token,user,uid")
            groups = tuple(g.strip() for g in row[3].split(",") if g.strip()) if len(row) > 3 else ()
            users[row[0].strip()] = UserInfo(row[1].strip(), row[2].strip(), groups)
    return users


def _secret_data(secret: dict[str, Any], key: str) -> str:
    value = (secret.get("data") or {}).get(key)
    if value is None:
        return ""
    try:
        return base64.b64decode(value).decode()
    except (ValueError, UnicodeDecodeError):
        return ""


class Authenticator:
    def __init__(self, cache: WatchCache, *, sa_keys: list[Any] | None = None, issuers: list[str] | None = None,
                 audiences: list[str] | None = None, static_tokens: dict[str, UserInfo] | None = None,
                 bootstrap_tokens: bool = True) -> None:
        self.cache = cache
        self.bootstrap_tokens = bootstrap_tokens
        self.sa_keys = tokens.key_ring(sa_keys or [])
        self.issuers = issuers or []
        self.audiences = audiences or self.issuers[:1]
        self.static_tokens = static_tokens or {}

    def from_certificate(self, peercert: dict[str, Any] | None) -> UserInfo | None:
        if not peercert:
            return None
        cn, orgs = "", []
        for rdn in peercert.get("subject", ()):
            for k, v in rdn:
                if k == "commonName":
                    cn = v
                elif k == "organizationName":
                    orgs.append(v)
        if not cn:
            return None
        return with_authenticated(UserInfo(cn, groups=tuple(orgs)))

    def from_token(self, token: str) -> UserInfo:
        user = self.static_tokens.get(token)
        if user is not None:
            return with_authenticated(user)
        m = BOOTSTRAP_TOKEN.match(token)
        if m and self.bootstrap_tokens:
            return self._bootstrap(m.group(1), m.group(2))
        if tokens.looks_like_jwt(token) and self.sa_keys:
            return self._service_account(token)
        raise Unauthorized("Unauthorized")

    def _bootstrap(self, token_id: str, secret_part: str) -> UserInfo:
        entry = self.cache.get(("", "secrets"), "kube-system", f"bootstrap-token-{token_id}")
        if entry is None:
            raise Unauthorized("Unauthorized")
        s = entry.obj
        if s.get("type") != "bootstrap.kubernetes.io/token" or (s.get("metadata") or {}).get("deletionTimestamp"):
            raise Unauthorized("Unauthorized")
        if _secret_data(s, "token-secret") != secret_part or _secret_data(s, "token-id") not in ("", token_id):
            raise Unauthorized("Unauthorized")
        if _secret_data(s, "usage-bootstrap-authentication") != "true":
            raise Unauthorized("Unauthorized")
        expiration = _secret_data(s, "expiration")
        if expiration:
            try:
                when = dt.datetime.fromisoformat(expiration.replace("Z", "+00:00"))
            except ValueError:
                raise Unauthorized("Unauthorized") from None
            if when.timestamp() < time.time():
                raise Unauthorized("Unauthorized")
        extra = [g.strip() for g in _secret_data(s, "auth-extra-groups").split(",") if g.strip()]
        groups = ("system:bootstrappers", *[g for g in extra if g.startswith("system:bootstrappers:")])
        return with_authenticated(UserInfo(f"system:bootstrap:{token_id}", groups=groups))

    def _service_account(self, token: str) -> UserInfo:
        claims = tokens.verify(token, self.sa_keys)
        iss = claims.get("iss")
        if iss == LEGACY_ISSUER:
            ns = claims.get("kubernetes.io/serviceaccount/namespace", "")
            name = claims.get("kubernetes.io/serviceaccount/service-account.name", "")
            uid = claims.get("kubernetes.io/serviceaccount/service-account.uid", "")
            secret = claims.get("kubernetes.io/serviceaccount/secret.name", "")
            if secret and self.cache.get(("", "secrets"), ns, secret) is None:
                raise Unauthorized("Unauthorized")
            return self._sa_user(ns, name, uid, {})
        if iss not in self.issuers:
            raise Unauthorized("Unauthorized")
        aud = claims.get("aud")
        auds = aud if isinstance(aud, list) else [aud]
        if self.audiences and not set(auds) & set(self.audiences):
            raise Unauthorized("invalid bearer token, token audiences don't match")
        k8s = claims.get("kubernetes.io") or {}
        ns = k8s.get("namespace", "")
        sa = k8s.get("serviceaccount") or {}
        extra: dict[str, list[str]] = {}
        pod = k8s.get("pod")
        if pod:
            entry = self.cache.get(("", "pods"), ns, pod.get("name", ""))
            if entry is None or (entry.obj.get("metadata") or {}).get("uid") != pod.get("uid"):
                raise Unauthorized("Unauthorized")
            extra["authentication.kubernetes.io/pod-name"] = [pod.get("name", "")]
            extra["authentication.kubernetes.io/pod-uid"] = [pod.get("uid", "")]
        secret = k8s.get("secret")
        if secret:
            entry = self.cache.get(("", "secrets"), ns, secret.get("name", ""))
            if entry is None or (entry.obj.get("metadata") or {}).get("uid") != secret.get("uid"):
                raise Unauthorized("Unauthorized")
        node = k8s.get("node")
        if node:
            extra["authentication.kubernetes.io/node-name"] = [node.get("name", "")]
            extra["authentication.kubernetes.io/node-uid"] = [node.get("uid", "")]
        if claims.get("jti"):
            extra["authentication.kubernetes.io/credential-id"] = [f"JTI={claims['jti']}"]
        return self._sa_user(ns, sa.get("name", ""), sa.get("uid", ""), extra)

    def _sa_user(self, ns: str, name: str, uid: str, extra: dict[str, list[str]]) -> UserInfo:
        entry = self.cache.get(("", "serviceaccounts"), ns, name)
        if entry is None or (uid and (entry.obj.get("metadata") or {}).get("uid") != uid):
            raise Unauthorized("Unauthorized")
        groups = ("system:serviceaccounts", f"system:serviceaccounts:{ns}")
        return with_authenticated(UserInfo(f"system:serviceaccount:{ns}:{name}", uid, groups, extra))

    def authenticate(self, authorization: str | None, peercert: dict[str, Any] | None) -> UserInfo | None:
        """The user a request authenticates as; None when it carries no credentials at all."""
        if authorization:
            scheme, _, value = authorization.partition(" ")
            if scheme.lower() == "bearer" and value.strip():
                return self.from_token(value.strip())
            if scheme.lower() == "basic":
                raise Unauthorized("basic authentication is not supported")
        return self.from_certificate(peercert)
