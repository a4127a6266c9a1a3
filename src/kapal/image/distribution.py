"""Pull and push: registry ↔ content store + snapshots, with Docker's progress messages.

A pull resolves the reference (index → linux/amd64 manifest), fetches the
config, then downloads layers in parallel; each layer streams once through
the blob writer (compressed digest), the decompressor, the diffID hash and
the safe extractor. A blob becomes visible only once verified, so a killed
pull or a full disk leaves nothing corrupt and the next pull starts over.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import BinaryIO

from kapal.errors import Invalid, KapalError

from . import digest as digests
from . import manifests as mf
from .images import ImageStore
from .reference import Reference, parse
from .registry import Credentials, RegistryClient, RegistryConfig
from .singleflight import SingleFlight

log = logging.getLogger(__name__)

Progress = Callable[[dict], None]
MAX_CONCURRENT_DOWNLOADS = 3
MAX_CONCURRENT_UPLOADS = 5


def _bar(current: int, total: int, width: int = 50) -> str:
    if total <= 0:
        return ""
    filled = min(width, int(width * current / total))
    arrow = ">" if filled < width else ""
    bar = "=" * max(0, filled - (1 if arrow else 0)) + arrow + " " * (width - filled)
    return f"[{bar}] {_human(current)}/{_human(total)}"


def _human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.3g}{unit}" if unit != "B" else f"{int(n)}B"
        n /= 1000
    return f"{n}"


class _Throttle:
    """Emits a progress message at most every ~1% or 512 KiB."""

    def __init__(self, emit: Progress, layer_id: str, status: str, total: int) -> None:
        self.emit, self.id, self.status, self.total = emit, layer_id, status, total
        self.current = 0
        self._last = 0
        self._step = max(512 * 1024, total // 100)

    def __call__(self, n: int) -> None:
        self.current += n
        if self.current - self._last >= self._step or (self.total and self.current >= self.total):
            self._last = self.current
            self.emit(
                {
                    "status": self.status,
                    "progressDetail": {"current": self.current, "total": self.total},
                    "progress": _bar(self.current, self.total),
                    "id": self.id,
                }
            )


class Distribution:
    """Pull/push for an ImageStore, with engine-wide registry settings."""

    def __init__(self, store: ImageStore, config: RegistryConfig | None = None) -> None:
        self.store = store
        self.config = config or RegistryConfig()
        self._pool = ThreadPoolExecutor(max_workers=MAX_CONCURRENT_DOWNLOADS * 2, thread_name_prefix="layer")
        self._small_blobs: SingleFlight[bytes] = SingleFlight()

    def client(self, ref: Reference, creds: Credentials | None) -> RegistryClient:
        return RegistryClient(ref.domain, creds, self.config)

    # ------------------------------------------------------------------ pull

    def pull(self, ref: Reference, creds: Credentials | None = None, progress: Progress | None = None) -> str:
        """Pull ref (tag or digest) into the store; returns the image ID. Emits Docker progress messages."""
        emit = progress or (lambda _m: None)
        client = self.client(ref, creds)
        target = ref.digest or ref.tag or "latest"
        body, media_type, header_digest = client.get_manifest(ref.path, target)
        emit({"status": f"Pulling from {ref.path}", "id": ref.tag or ref.digest})
        manifest_digest = digests.of_bytes(body)
        if ref.digest and manifest_digest != ref.digest:
            raise Invalid(f"manifest digest mismatch: asked for {ref.digest}, the registry sent {manifest_digest}")
        self.store.content.put(body)
        if media_type in mf.INDEX_TYPES:
            chosen = mf.select_platform(body)
            body, media_type, _ = client.get_manifest(ref.path, chosen.digest)
            if digests.of_bytes(body) != chosen.digest:
                raise Invalid(f"manifest digest mismatch for {chosen.digest}")
            self.store.content.put(body)
        manifest = mf.parse_manifest(body, media_type)
        config_bytes = self._fetch_small_blob(client, ref.path, manifest.config)
        config = json.loads(config_bytes)
        diff_ids = mf.diff_ids(config)
        if len(diff_ids) != len(manifest.layers):
            raise Invalid(
                f"image config lists {len(diff_ids)} layers, the manifest {len(manifest.layers)}: the image is broken"
            )
        chains = digests.chain_ids(diff_ids)
        new_layers = self._pull_layers(client, ref, manifest.layers, diff_ids, chains, emit)
        known = self.store.lookup_ref(ref.tagged_or_latest()) if ref.tag or not ref.digest else None
        image_id = self.store.add_image(config_bytes, ref, manifest_digest)
        emit({"status": f"Digest: {manifest_digest}"})
        shown = ref.familiar()
        if new_layers or known != image_id:
            emit({"status": f"Status: Downloaded newer image for {shown}"})
        else:
            emit({"status": f"Status: Image is up to date for {shown}"})
        del header_digest
        return image_id

    def _fetch_small_blob(self, client: RegistryClient, repo: str, desc: mf.Descriptor) -> bytes:
        def fetch() -> bytes:
            if self.store.content.exists(desc.digest):
                return self.store.content.read(desc.digest)
            data = client.open_blob(repo, desc.digest).read()
            if digests.of_bytes(data) != desc.digest:
                raise Invalid(f"digest mismatch for {desc.digest} from {client.host}/{repo}: content rejected")
            self.store.content.put(data)
            return data

        return self._small_blobs.do(desc.digest, fetch)[0]

    def _pull_layers(self, client, ref, layers, diff_ids, chains, emit: Progress) -> int:
        for i, desc in enumerate(layers):
            layer_id = digests.short(desc.digest)
            if self.store.layer_exists(chains[i]):
                emit({"status": "Already exists", "progressDetail": {}, "id": layer_id})
            else:
                emit({"status": "Pulling fs layer", "progressDetail": {}, "id": layer_id})
        futures = []
        cancelled = threading.Event()
        for i, desc in enumerate(layers):
            if self.store.layer_exists(chains[i]):
                continue
            parent = chains[i - 1] if i else None
            futures.append(
                self._pool.submit(self._pull_one, client, ref, desc, diff_ids[i], chains[i], parent, emit, cancelled)
            )
        errors = []
        pulled = 0
        for f in futures:
            try:
                pulled += 1 if f.result() else 0
            except BaseException as e:
                cancelled.set()
                errors.append(e)
        if errors:
            raise errors[0]
        return pulled

    def _pull_one(self, client, ref, desc: mf.Descriptor, diff_id, chain_id, parent, emit: Progress, cancelled) -> bool:
        layer_id = digests.short(desc.digest)
        download = _Throttle(emit, layer_id, "Downloading", desc.size)

        @contextmanager
        def opener() -> Iterator[BinaryIO]:
            if self.store.content.exists(desc.digest):
                with self.store.content.open(desc.digest) as f:
                    yield f
                return
            resp = client.open_blob(ref.path, desc.digest)
            with self.store.content.writer(desc.digest, desc.size) as writer:
                tee = _TeeReader(resp, writer.write, download)
                yield tee  # type: ignore[misc]
                tee.drain()
                emit({"status": "Verifying Checksum", "progressDetail": {}, "id": layer_id})
                writer.commit()
                emit({"status": "Download complete", "progressDetail": {}, "id": layer_id})

        did = self.store.unpack_layer(chain_id, parent, diff_id, opener, blob=desc, cancelled=cancelled)
        emit({"status": "Pull complete", "progressDetail": {}, "id": layer_id})
        return did

    # ------------------------------------------------------------------ push

    def push(self, ref: Reference, creds: Credentials | None = None, progress: Progress | None = None) -> str:
        """Push the image tagged ref; returns the manifest digest."""
        emit = progress or (lambda _m: None)
        image = self.store.resolve(str(ref))
        client = self.client(ref, creds)
        repo = ref.path
        tag = ref.tag or "latest"
        emit({"status": f"The push refers to repository [{ref.name}]"})
        blobs = [self.store.ensure_layer_blob(layer) for layer in image.layers]
        for blob in reversed(blobs):
            emit({"status": "Preparing", "progressDetail": {}, "id": digests.short(blob.digest)})
        sources = self._mount_sources(ref, image.id)
        futures = [self._pool.submit(self._push_blob, client, repo, blob, emit, sources) for blob in blobs]
        for f in futures:
            f.result()
        config_desc = mf.Descriptor(mf.DOCKER_CONFIG, image.id, len(image.config_bytes))
        if not client.blob_exists(repo, image.id, "pull,push"):
            client.upload_blob(repo, image.id, len(image.config_bytes), _BytesReader(image.config_bytes))
        oci = any(b.media_type.startswith("application/vnd.oci") for b in blobs)
        if oci:
            config_desc = mf.Descriptor(mf.OCI_CONFIG, image.id, len(image.config_bytes))
            body = json.dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": mf.OCI_MANIFEST,
                    "config": config_desc.to_json(),
                    "layers": [b.to_json() for b in blobs],
                },
                indent=3,
            ).encode()
            media_type = mf.OCI_MANIFEST
        else:
            body = mf.build_manifest(config_desc, blobs)
            media_type = mf.DOCKER_MANIFEST
        manifest_digest = digests.of_bytes(body)
        self.store.content.put(body)
        client.put_manifest(repo, tag, body, media_type)
        self.store.record_manifest(image.id, ref, manifest_digest)
        emit({"status": f"{tag}: digest: {manifest_digest} size: {len(body)}"})
        emit({"progressDetail": {}, "aux": {"Tag": tag, "Digest": manifest_digest, "Size": len(body)}})
        return manifest_digest

    def _mount_sources(self, ref: Reference, skip_image: str) -> dict[str, str]:
        """Blob digest → another repository on the same registry that has it (for cross-repo mounts)."""
        out: dict[str, str] = {}
        for image in self.store.list():
            repos = {parse(r).path for r in image.repo_tags + image.repo_digests if parse(r).domain == ref.domain}
            repos.discard(ref.path)
            if not repos:
                continue
            for layer in image.layers:
                if layer.blob is not None:
                    out.setdefault(layer.blob.digest, sorted(repos)[0])
        return out

    def _push_blob(
        self, client: RegistryClient, repo: str, blob: mf.Descriptor, emit: Progress, sources: dict[str, str]
    ) -> None:
        layer_id = digests.short(blob.digest)
        if client.blob_exists(repo, blob.digest, "pull,push"):
            emit({"status": "Layer already exists", "progressDetail": {}, "id": layer_id})
            return
        source = sources.get(blob.digest)
        if source is not None:
            try:
                if client.mount_blob(repo, blob.digest, source):
                    emit({"status": f"Mounted from {source}", "progressDetail": {}, "id": layer_id})
                    return
            except KapalError:
                pass  # a registry that refuses mounts gets the blob uploaded
        emit({"status": "Waiting", "progressDetail": {}, "id": layer_id})
        pushing = _Throttle(emit, layer_id, "Pushing", blob.size)
        with self.store.content.open(blob.digest) as f:
            client.upload_blob(repo, blob.digest, blob.size, _ProgressReader(f, pushing))
        emit({"status": "Pushed", "progressDetail": {}, "id": layer_id})


class _TeeReader:
    def __init__(self, raw, sink, progress) -> None:
        self._raw, self._sink, self._progress = raw, sink, progress

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        if data:
            self._sink(data)
            self._progress(len(data))
        return data

    def drain(self) -> None:
        while self.read(1 << 20):
            pass


class _ProgressReader:
    def __init__(self, raw, progress) -> None:
        self._raw, self._progress = raw, progress

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        if data:
            self._progress(len(data))
        return data


class _BytesReader:
    def __init__(self, data: bytes) -> None:
        self._data, self._pos = data, 0

    def read(self, n: int = -1) -> bytes:
        end = len(self._data) if n < 0 else self._pos + n
        out = self._data[self._pos : end]
        self._pos += len(out)
        return out

    def seek(self, pos: int) -> None:
        self._pos = pos
