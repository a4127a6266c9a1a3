"""Bootstrap tokens as the cluster-bootstrap library defines them, and the detached JWS that signs cluster-info.

A token is `[a-z0-9]{6}.[a-z0-9]{16}`: a public id and a secret. It lives as the Secret
`kube-system/bootstrap-token-<id>` of type `bootstrap.kubernetes.io/token`. A joining node trusts the
`cluster-info` ConfigMap (kube-public) because it carries `jws-kubeconfig-<id>`: an HS256 JWS over the
ConfigMap's `kubeconfig` with the token secret (zero-padded to 32 bytes) as key, protected header
`{"alg":"HS256","kid":"<id>"}`, payload left out ("header..signature", RFC 7515 appendix F).
Both kubeadm and the controller manager's bootstrap signer produce exactly these bytes, so a signature
computed here is the one upstream's `kubeadm join` recomputes and compares.

Pure functions, no I/O: used by `kapal adm` and by the bootstrap-signer and token-cleaner controllers.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass
from typing import Any

from kapal.errors import Invalid

SECRET_TYPE = "bootstrap.kubernetes.io/token"
SECRET_PREFIX = "bootstrap-token-"
NAMESPACE = "kube-system"
JWS_PREFIX = "jws-kubeconfig-"
GROUP_PREFIX = "system:bootstrappers:"
USAGES = ("signing", "authentication")

TOKEN_RE = re.compile(r"^([a-z0-9]{6})\.([a-z0-9]{16})$")
TOKEN_ID_RE = re.compile(r"^[a-z0-9]{6}$")
_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


def generate_token() -> str:
    """A fresh random token id.secret."""
    pick = secrets.choice
    return "".join(pick(_ALPHABET) for _ in range(6)) + "." + "".join(pick(_ALPHABET) for _ in range(16))


def split_token(token: str) -> tuple[str, str]:
    m = TOKEN_RE.match(token)
    if not m:
        raise Invalid(f'the bootstrap token "{token}" was not of the form "[a-z0-9]{{6}}.[a-z0-9]{{16}}"')
    return m.group(1), m.group(2)


def secret_name(token_id: str) -> str:
    return SECRET_PREFIX + token_id


def _rfc3339(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class BootstrapTokenInfo:
    """What a bootstrap-token Secret says."""

    token_id: str
    secret: str
    description: str = ""
    expires: dt.datetime | None = None
    usages: tuple[str, ...] = USAGES
    groups: tuple[str, ...] = ()

    @property
    def token(self) -> str:
        return f"{self.token_id}.{self.secret}"

    def expired(self, now: dt.datetime | None = None) -> bool:
        return self.expires is not None and self.expires <= (now or dt.datetime.now(dt.UTC))

    def to_secret(self) -> dict[str, Any]:
        """The Secret object (stringData) kubeadm creates for this token."""
        data = {"token-id": self.token_id, "token-secret": self.secret}
        if self.description:
            data["description"] = self.description
        if self.expires is not None:
            data["expiration"] = _rfc3339(self.expires)
        for usage in self.usages:
            data[f"usage-bootstrap-{usage}"] = "true"
        if self.groups:
            data["auth-extra-groups"] = ",".join(self.groups)
        return {"apiVersion": "v1", "kind": "Secret", "type": SECRET_TYPE,
                "metadata": {"name": secret_name(self.token_id), "namespace": NAMESPACE},
                "stringData": data}


def _secret_value(secret: dict[str, Any], key: str) -> str:
    string_data = secret.get("stringData") or {}
    if key in string_data:
        return str(string_data[key])
    raw = (secret.get("data") or {}).get(key)
    if raw is None:
        return ""
    try:
        return base64.b64decode(raw).decode()
    except (ValueError, UnicodeDecodeError):
        return ""


def from_secret(secret: dict[str, Any]) -> BootstrapTokenInfo:
    """Parse a bootstrap-token Secret; Invalid when it is not one or is malformed."""
    name = (secret.get("metadata") or {}).get("name", "")
    if secret.get("type") != SECRET_TYPE:
        raise Invalid(f"secret {name!r} is not of type {SECRET_TYPE}")
    token_id = _secret_value(secret, "token-id")
    if not TOKEN_ID_RE.match(token_id):
        raise Invalid(f"bootstrap token secret {name!r} has an invalid token-id {token_id!r}")
    if name != secret_name(token_id):
        raise Invalid(f"bootstrap token secret name {name!r} does not match its token-id {token_id!r}")
    token_secret = _secret_value(secret, "token-secret")
    if not re.fullmatch(r"[a-z0-9]{16}", token_secret):
        raise Invalid(f"bootstrap token secret {name!r} has an invalid token-secret")
    expires = None
    expiration = _secret_value(secret, "expiration")
    if expiration:
        try:
            expires = dt.datetime.fromisoformat(expiration.replace("Z", "+00:00"))
        except ValueError:
            raise Invalid(f"bootstrap token secret {name!r} has an unparsable expiration {expiration!r}") from None
    usages = tuple(u for u in USAGES if _secret_value(secret, f"usage-bootstrap-{u}") == "true")
    groups = tuple(g.strip() for g in _secret_value(secret, "auth-extra-groups").split(",") if g.strip())
    return BootstrapTokenInfo(token_id, token_secret, _secret_value(secret, "description"), expires, usages, groups)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def detached_jws(content: str, token_id: str, token_secret: str) -> str:
    """The compact JWS over `content` with the payload elided: `<header>..<signature>`."""
    header = _b64url(json.dumps({"alg": "HS256", "kid": token_id}, separators=(",", ":")).encode())
    payload = _b64url(content.encode())
    key = token_secret.encode().ljust(32, b"\0")
    signature = hmac.new(key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}..{_b64url(signature)}"


def detached_jws_valid(signature: str, content: str, token_id: str, token_secret: str) -> bool:
    return hmac.compare_digest(signature, detached_jws(content, token_id, token_secret))
