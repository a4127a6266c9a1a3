"""Service-account JWTs (RS256): signing bound tokens for TokenRequest, verifying any we or kubeadm issued.

The key id is upstream's: base64url(sha256(DER SubjectPublicKeyInfo)), so
tokens from a real cluster's sa.key verify here and ours verify there.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from kapal.errors import Invalid, Unauthorized
from kapal.kube.pki.certs import private_key_from_pem


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def key_id(public_key: rsa.RSAPublicKey) -> str:
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return _b64url(hashlib.sha256(der).digest())


def load_private_key(path: str | Path) -> rsa.RSAPrivateKey:
    key = private_key_from_pem(Path(path).read_bytes())
    if not isinstance(key, rsa.RSAPrivateKey):
        raise Invalid(f"{path}: only RSA service-account signing keys are supported")
    return key


def load_public_keys(path: str | Path) -> list[rsa.RSAPublicKey]:
    """Every RSA public key in a PEM file: public keys, private keys (their public half) or certificates."""
    from cryptography import x509

    data = Path(path).read_bytes()
    keys: list[rsa.RSAPublicKey] = []
    for block in data.split(b"-----END ")[:-1]:
        start = block.rfind(b"-----BEGIN ")
        if start < 0:
            continue
        label = block[start + 11:block.index(b"-----", start + 11)]
        pem = block[start:] + b"-----END " + label + b"-----\n"
        if b"PRIVATE KEY" in label:
            k = private_key_from_pem(pem).public_key()
        elif label == b"CERTIFICATE":
            k = x509.load_pem_x509_certificate(pem).public_key()
        else:
            k = serialization.load_pem_public_key(pem)
        if isinstance(k, rsa.RSAPublicKey):
            keys.append(k)
    if not keys:
        raise Invalid(f"{path}: no RSA public key found")
    return keys


@dataclass
class Signer:
    key: rsa.RSAPrivateKey
    issuer: str

    def sign(self, claims: dict[str, Any]) -> str:
        header = {"alg": "RS256", "kid": key_id(self.key.public_key())}
        signing_input = (_b64url(json.dumps(header, separators=(",", ":")).encode()) + "." +
                         _b64url(json.dumps(claims, separators=(",", ":")).encode()))
        sig = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return signing_input + "." + _b64url(sig)


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and token.startswith("eyJ")


def key_ring(keys: list[rsa.RSAPublicKey]) -> dict[str, rsa.RSAPublicKey]:
    return {key_id(k): k for k in keys}


def verify(token: str, keys: dict[str, rsa.RSAPublicKey], now: float | None = None) -> dict[str, Any]:
    """The claims of a token signed by one of `keys` (by key id) and not expired; Unauthorized otherwise."""
    try:
        h64, c64, s64 = token.split(".")
        header = json.loads(_unb64url(h64))
        claims = json.loads(_unb64url(c64))
        sig = _unb64url(s64)
    except (ValueError, json.JSONDecodeError):
        raise Unauthorized("malformed token") from None
    if not isinstance(header, dict) or header.get("alg") != "RS256" or not isinstance(claims, dict):
        raise Unauthorized("unsupported token signature algorithm")
    kid = header.get("kid")
    candidates = [keys[kid]] if kid in keys else ([] if kid else list(keys.values()))
    for k in candidates:
        try:
            k.verify(sig, (h64 + "." + c64).encode(), padding.PKCS1v15(), hashes.SHA256())
            break
        except InvalidSignature:
            continue
    else:
        raise Unauthorized("invalid bearer token, token signature is invalid")
    t = time.time() if now is None else now
    if "exp" in claims and isinstance(claims["exp"], (int, float)) and t > claims["exp"]:
        raise Unauthorized("invalid bearer token, token has expired")
    if "nbf" in claims and isinstance(claims["nbf"], (int, float)) and t + 60 < claims["nbf"]:
        raise Unauthorized("invalid bearer token, token not yet valid")
    return claims
