"""Manifests, indexes and image configs: OCI and Docker v2 schema 2.

Parsing accepts both families; `select_platform` picks linux/<this arch>
from an index or a manifest list. New manifests (push) are written in Docker
v2 schema 2, which every registry and client accepts.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass

from kapal.errors import Invalid, NotFound, Unsupported

from . import digest as digests

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"

MANIFEST_TYPES = (DOCKER_MANIFEST, OCI_MANIFEST)
INDEX_TYPES = (DOCKER_MANIFEST_LIST, OCI_INDEX)
ACCEPT = ", ".join([OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST])
LAYER_TYPES = (
    DOCKER_LAYER_GZIP,
    OCI_LAYER,
    OCI_LAYER_GZIP,
    OCI_LAYER_ZSTD,
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    DOCKER_FOREIGN_LAYER,
)

_GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x"}


def host_platform() -> tuple[str, str]:
    """(os, architecture) in OCI/Go spelling: ('linux', 'amd64') here."""
    machine = platform.machine()
    return "linux", _GO_ARCH.get(machine, machine)


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int

    @classmethod
    def from_json(cls, d: dict) -> Descriptor:
        try:
            return cls(d.get("mediaType", ""), digests.validate(d["digest"]), int(d["size"]))
        except (KeyError, TypeError, ValueError) as e:
            raise Invalid(f"malformed descriptor in manifest: {d!r}") from e

    def to_json(self) -> dict:
        return {"mediaType": self.media_type, "size": self.size, "digest": self.digest}


@dataclass(frozen=True)
class Manifest:
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]


def media_type_of(body: bytes, header_type: str | None) -> str:
    try:
        doc = json.loads(body)
    except ValueError as e:
        raise Invalid(f"manifest is not JSON: {e}") from e
    media = doc.get("mediaType") or (header_type or "").split(";")[0].strip()
    if not media:
        media = OCI_INDEX if "manifests" in doc else OCI_MANIFEST
    if doc.get("schemaVersion") == 1 or media == DOCKER_SCHEMA1_SIGNED:
        raise Unsupported("image manifest schema 1 is deprecated and not supported: re-push the image with schema 2")
    return media


def parse_manifest(body: bytes, media_type: str) -> Manifest:
    doc = json.loads(body)
    if media_type not in MANIFEST_TYPES:
        raise Unsupported(f"manifest media type {media_type!r} is not an image manifest kapal understands")
    layers = tuple(Descriptor.from_json(layer) for layer in doc.get("layers", []))
    for layer in layers:
        if layer.media_type and layer.media_type not in LAYER_TYPES:
            raise Unsupported(f"layer media type {layer.media_type!r} is not supported")
    return Manifest(media_type, Descriptor.from_json(doc["config"]), layers)


def select_platform(body: bytes, wanted: tuple[str, str] | None = None) -> Descriptor:
    """From an index / manifest list, the manifest for linux/<arch> (amd64 here)."""
    want_os, want_arch = wanted or host_platform()
    doc = json.loads(body)
    seen = []
    for entry in doc.get("manifests", []):
        plat = entry.get("platform") or {}
        seen.append(f"{plat.get('os')}/{plat.get('architecture')}")
        if plat.get("os") == want_os and plat.get("architecture") == want_arch:
            if want_arch == "arm64" and plat.get("variant") not in (None, "", "v8"):
                continue
            return Descriptor.from_json(entry)
    raise NotFound(f"no matching manifest for {want_os}/{want_arch} in the manifest list entries ({', '.join(seen)})")


def build_manifest(config: Descriptor, layers: list[Descriptor]) -> bytes:
    """A Docker v2 schema 2 manifest, serialised the way it is pushed (its digest is of these bytes)."""
    doc = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": config.to_json(),
        "layers": [layer.to_json() for layer in layers],
    }
    return json.dumps(doc, indent=3).encode()


def canonical_json(doc: dict) -> bytes:
    """Compact JSON with sorted keys: the bytes of configs kapal writes (and hence their digests)."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def diff_ids(config: dict) -> list[str]:
    rootfs = config.get("rootfs") or {}
    if rootfs.get("type") != "layers":
        raise Invalid("image config has no rootfs of type 'layers'")
    return [digests.validate(d) for d in rootfs.get("diff_ids") or []]
