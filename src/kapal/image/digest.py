"""Content digests (`sha256:<hex>`) and layer chain IDs."""

from __future__ import annotations

import hashlib
import re

from kapal.errors import Invalid

_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")


def validate(digest: str) -> str:
    if not _DIGEST.match(digest):
        raise Invalid(f"unsupported or malformed digest {digest!r}: kapal accepts sha256:<64 hex>")
    return digest


def of_bytes(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def hex_of(digest: str) -> str:
    return validate(digest).split(":", 1)[1]


def chain_ids(diff_ids: list[str]) -> list[str]:
    """OCI chain IDs: ChainID(L0) = DiffID(L0); ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln))."""
    out: list[str] = []
    for diff_id in diff_ids:
        out.append(diff_id if not out else of_bytes(f"{out[-1]} {diff_id}".encode()))
    return out


def short(digest: str, length: int = 12) -> str:
    return digest.removeprefix("sha256:")[:length]
