"""The image store: configs, tags and digests, layers unpacked once into snapshots.

An image's ID is the digest of its config. Its layers are committed snapshots
named by chain ID, shared by every image whose chain includes them; the
compressed blobs they came from stay in the content store so that a pushed
image keeps its digests. Removing an image frees the snapshots and blobs that
nothing else uses.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from kapal.errors import Conflict, Invalid, NotFound

from . import digest as digests
from . import manifests as mf
from .archive import apply_layer, write_layer
from .compression import CHUNK, GzipWriter, HashingReader, decompressed
from .content import LocalContentStore
from .reference import Reference, is_image_id, parse, parse_tagged
from .singleflight import SingleFlight
from .snapshots import OverlaySnapshotter

log = logging.getLogger(__name__)

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class Layer:
    diff_id: str
    chain_id: str
    size: int
    blob: mf.Descriptor | None


@dataclass(frozen=True)
class Image:
    id: str
    config: dict
    layers: tuple[Layer, ...]
    repo_tags: tuple[str, ...]
    repo_digests: tuple[str, ...]
    added: float
    config_bytes: bytes = field(repr=False, default=b"")

    @property
    def size(self) -> int:
        return sum(layer.size for layer in self.layers)

    @property
    def top_chain_id(self) -> str | None:
        return self.layers[-1].chain_id if self.layers else None

    @property
    def created(self) -> str:
        return self.config.get("created") or ""


LayerOpener = Callable[[], AbstractContextManager[BinaryIO]]


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)


class ImageStore:
    def __init__(self, root: Path, content: LocalContentStore, snapshotter: OverlaySnapshotter) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.content = content
        self.snapshots = snapshotter
        self._path = self.root / "images.json"
        self._lock = threading.RLock()
        self._flights: SingleFlight[str] = SingleFlight()
        self._committed = threading.Condition(self._lock)
        if self._path.exists():
            self._state = json.loads(self._path.read_text())
        else:
            self._state = {"images": {}, "refs": {}, "layers": {}}
        for info in list(self.snapshots.walk()):
            if info.key.startswith(("extract-", "import-")):
                self.snapshots.remove(info.key)  # an unpack cut short by a crash: never committed, never used

    # ---------------------------------------------------------------- state

    def _save(self) -> None:
        _atomic_write(self._path, json.dumps(self._state, indent=1).encode())

    def _image(self, image_id: str) -> Image:
        rec = self._state["images"][image_id]
        raw = self.content.read(image_id)
        config = json.loads(raw)
        diff = mf.diff_ids(config)
        chains = digests.chain_ids(diff)
        layers = []
        for d, c in zip(diff, chains):
            lrec = self._state["layers"].get(d, {})
            blob = mf.Descriptor(**lrec["blob"]) if lrec.get("blob") else None
            layers.append(Layer(d, c, lrec.get("size", 0), blob))
        refs = sorted(r for r, i in self._state["refs"].items() if i == image_id)
        tags = tuple(parse(r).familiar() for r in refs if "@" not in r)
        repo_digests = tuple(parse(r).familiar() for r in refs if "@" in r)
        return Image(image_id, config, tuple(layers), tags, repo_digests, rec["added"], raw)

    def list(self) -> list[Image]:
        with self._lock:
            return [self._image(i) for i in self._state["images"]]

    def get(self, image_id: str) -> Image:
        with self._lock:
            if image_id not in self._state["images"]:
                raise NotFound(f"No such image: {image_id}")
            return self._image(image_id)

    def resolve_id(self, name: str) -> str:
        """Docker's lookup: full or `sha256:` ID, a unique ID prefix, then a reference (tag or digest)."""
        with self._lock:
            images = self._state["images"]
            if is_image_id(name):
                full = "sha256:" + name.removeprefix("sha256:")
                if full in images:
                    return full
            else:
                ref = None
                try:
                    ref = parse_tagged(name)
                except Invalid:
                    pass
                if ref is not None and str(ref) in self._state["refs"]:
                    return self._state["refs"][str(ref)]
                if ref is not None and ref.tag and ref.digest:
                    by_digest = str(ref.with_digest(ref.digest))
                    if by_digest in self._state["refs"]:
                        return self._state["refs"][by_digest]
            short = name.removeprefix("sha256:")
            if 1 <= len(short) < 64 and all(c in "0123456789abcdef" for c in short):
                matches = [i for i in images if i[7:].startswith(short)]
                if len(matches) == 1:
                    return matches[0]
        raise NotFound(f"No such image: {name}")

    def resolve(self, name: str) -> Image:
        return self.get(self.resolve_id(name))

    def lookup_ref(self, ref: Reference) -> str | None:
        with self._lock:
            return self._state["refs"].get(str(ref))

    # ---------------------------------------------------------------- layers

    def layer_exists(self, chain_id: str) -> bool:
        return self.snapshots.exists(chain_id)

    def unpack_layer(
        self,
        chain_id: str,
        parent: str | None,
        diff_id: str,
        opener: LayerOpener,
        progress: Callable[[int], None] | None = None,
        blob: mf.Descriptor | None = None,
        cancelled: threading.Event | None = None,
    ) -> bool:
        """Make sure the snapshot `chain_id` exists; returns False when it was already there.

        Concurrent callers for one chain ID share one download and unpack. The
        layer unpacks into its own directory at once; its commit waits for the
        parent's, so the layers of an image unpack in parallel.
        """

        def work() -> str:
            if self.snapshots.exists(chain_id):
                return "exists"
            key = f"extract-{uuid.uuid4().hex[:12]}"
            self.snapshots.prepare(key)
            try:
                with opener() as stream:
                    target = self.snapshots.upper_dir(key)
                    result = apply_layer(stream, target, expected_diff_id=diff_id, progress=progress)
                with self._committed:
                    while parent is not None and not self.snapshots.exists(parent):
                        if cancelled is not None and cancelled.is_set():
                            raise Invalid(f"layer {chain_id} not committed: the pull of a layer below it failed")
                        self._committed.wait(timeout=0.5)
                    self.snapshots.commit(chain_id, key, parent=parent)
                    self._record_layer(diff_id, result.size, blob)
                    self._committed.notify_all()
            except BaseException:
                if self.snapshots.exists(key):
                    self.snapshots.remove(key)
                raise
            return "unpacked"

        if self.snapshots.exists(chain_id):
            return False
        outcome, shared = self._flights.do(chain_id, work)
        return outcome == "unpacked" and not shared

    def _record_layer(self, diff_id: str, size: int, blob: mf.Descriptor | None) -> None:
        with self._lock:
            rec = self._state["layers"].setdefault(diff_id, {})
            rec["size"] = size
            if blob is not None:
                rec["blob"] = {"media_type": blob.media_type, "digest": blob.digest, "size": blob.size}
            self._save()

    def layer_blob(self, diff_id: str) -> mf.Descriptor | None:
        with self._lock:
            rec = self._state["layers"].get(diff_id, {}).get("blob")
        if rec and self.content.exists(rec["digest"]):
            return mf.Descriptor(**rec)
        return None

    def ensure_layer_blob(self, layer: Layer) -> mf.Descriptor:
        """The compressed blob a layer came from (kept so that pushes keep digests)."""
        blob = self.layer_blob(layer.diff_id)
        if blob is None:
            raise NotFound(
                f"the compressed blob of layer {layer.diff_id} is not in the store: pull or import the image again"
            )
        return blob

    def add_layer_from_tar(self, tar_stream: BinaryIO, parent: str | None) -> tuple[str, str, int]:
        """Store an uncompressed or compressed layer tar: blob (gzip) + snapshot. Returns (diff_id, chain_id, size)."""
        _, plain = decompressed(tar_stream)
        with self.content.writer() as w:
            gz = GzipWriter(w.write, level=1)
            tee = HashingReader(plain, sink=gz.write)
            key = f"import-{uuid.uuid4().hex[:12]}"
            self.snapshots.prepare(key)
            try:
                result = apply_layer(tee, self.snapshots.upper_dir(key))
                tee.drain()
                gz.close()
                blob_digest = w.commit()
                diff_id = result.diff_id
                chain_id = diff_id if parent is None else digests.of_bytes(f"{parent} {diff_id}".encode())
                with self._committed:
                    if self.snapshots.exists(chain_id):
                        self.snapshots.remove(key)
                    else:
                        self.snapshots.commit(chain_id, key, parent=parent)
                    self._committed.notify_all()
            except BaseException:
                if self.snapshots.exists(key):
                    self.snapshots.remove(key)
                raise
        blob = mf.Descriptor(mf.DOCKER_LAYER_GZIP, blob_digest, self.content.info(blob_digest).size)
        self._record_layer(diff_id, result.size, blob)
        return diff_id, chain_id, result.size

    def add_layer_from_dir(self, directory: Path, parent: str | None, **write_options) -> tuple[str, str, int]:
        """A new layer from a directory in overlay format (an upperdir): `.wh.` entries come back on export."""
        with tempfile.TemporaryFile(dir=self.root) as tmp:
            write_layer(directory, tmp, **write_options)
            tmp.seek(0)
            return self.add_layer_from_tar(tmp, parent)

    # ---------------------------------------------------------------- images

    def add_image(self, config_bytes: bytes, ref: Reference | None = None, manifest_digest: str | None = None) -> str:
        """Register an image whose layers are all unpacked; tags `ref`, records its manifest digest."""
        config = json.loads(config_bytes)
        chains = digests.chain_ids(mf.diff_ids(config))
        for c in chains:
            if not self.snapshots.exists(c):
                raise Invalid(f"image config refers to layer {c}, which is not unpacked")
        image_id = self.content.put(config_bytes)
        with self._lock:
            self._state["images"].setdefault(image_id, {"added": time.time()})
            if ref is not None:
                if ref.tag:
                    self._state["refs"][str(Reference(ref.domain, ref.path, ref.tag))] = image_id
            if manifest_digest is not None and ref is not None:
                self._state["refs"][str(Reference(ref.domain, ref.path, None, manifest_digest))] = image_id
            self._save()
        return image_id

    def record_manifest(self, image_id: str, name: Reference, manifest_digest: str) -> None:
        with self._lock:
            self._state["refs"][str(Reference(name.domain, name.path, None, manifest_digest))] = image_id
            self._save()

    def manifest_digest_for(self, image_id: str, name: Reference) -> str | None:
        with self._lock:
            for r, i in self._state["refs"].items():
                if i == image_id and "@" in r and r.split("@")[0] == name.name:
                    return r.split("@", 1)[1]
        return None

    def tag(self, image_id: str, ref: Reference) -> None:
        if not ref.tag:
            ref = ref.tagged_or_latest()
        if ref.digest:
            raise Invalid("refusing to create a tag with a digest reference")
        with self._lock:
            if image_id not in self._state["images"]:
                raise NotFound(f"No such image: {image_id}")
            self._state["refs"][str(ref)] = image_id
            self._save()

    def delete(self, name: str, *, force: bool = False, users: Callable[[str], list[str]] = lambda _: []) -> list[dict]:
        """`docker rmi` semantics; returns Docker's [{"Untagged": …}, {"Deleted": …}] list."""
        with self._lock:
            image_id = self.resolve_id(name)
            refs = [r for r, i in self._state["refs"].items() if i == image_id]
            by_id = is_image_id(name) or (name not in refs and not any(parse(r).familiar() == name for r in refs))
            try:
                named = parse_tagged(name) if not is_image_id(name) else None
            except Invalid:
                named = None
            if named is not None and str(named) in self._state["refs"]:
                by_id = False
            out: list[dict] = []
            users_now = users(image_id)
            if not by_id and named is not None:
                tag_refs = [r for r in refs if "@" not in r]
                if len(tag_refs) > 1 or (str(named) not in tag_refs and "@" in str(named) and len(refs) > 1):
                    del self._state["refs"][str(named)]
                    self._save()
                    return [{"Untagged": named.familiar()}]
                if users_now and not force:
                    raise Conflict(
                        f'conflict: unable to remove repository reference "{name}" (must force) - container '
                        f"{users_now[0][:12]} is using its referenced image {image_id[7:19]}"
                    )
            else:
                repos = {parse(r).name for r in refs}
                if len(repos) > 1 and not force:
                    raise Conflict(
                        f"conflict: unable to delete {image_id[7:19]} (must be forced) - image is referenced in "
                        "multiple repositories"
                    )
                if users_now:
                    raise Conflict(
                        f"conflict: unable to delete {image_id[7:19]} (cannot be forced) - image is being used by "
                        f"running container {users_now[0][:12]}"
                        if not force
                        else f"conflict: unable to delete {image_id[7:19]} (must be forced) - image is being used by "
                        f"container {users_now[0][:12]}"
                    )
            for r in sorted(refs):
                out.append({"Untagged": parse(r).familiar()})
                del self._state["refs"][r]
            if users_now:
                self._save()
                return out
            del self._state["images"][image_id]
            self._save()
            out.append({"Deleted": image_id})
            for chain in self.collect_garbage():
                out.append({"Deleted": chain})
            return out

    def collect_garbage(self) -> list[str]:
        """Remove layer snapshots and blobs that no image (nor a snapshot on top) uses; returns removed chain IDs."""
        removed: list[str] = []
        with self._lock:
            wanted_chains: set[str] = set()
            wanted_blobs: set[str] = set()
            wanted_diffs: set[str] = set()
            for image_id in self._state["images"]:
                image = self._image(image_id)
                wanted_blobs.add(image_id)
                for layer in image.layers:
                    wanted_chains.add(layer.chain_id)
                    wanted_diffs.add(layer.diff_id)
                    if layer.blob:
                        wanted_blobs.add(layer.blob.digest)
            for r in self._state["refs"]:
                if "@" in r:
                    wanted_blobs.add(r.split("@", 1)[1])
            infos = {i.key: i for i in self.snapshots.walk()}
            parents = {i.parent for i in infos.values() if i.parent}
            changed = True
            while changed:
                changed = False
                for key, info in list(infos.items()):
                    if info.kind != "committed" or key in wanted_chains or key in parents:
                        continue
                    if not key.startswith("sha256:"):
                        continue
                    self.snapshots.remove(key)
                    removed.append(key)
                    del infos[key]
                    parents = {i.parent for i in infos.values() if i.parent}
                    changed = True
            for diff in list(self._state["layers"]):
                if diff not in wanted_diffs:
                    del self._state["layers"][diff]
            self._save()
            for blob in self.content.list():
                if blob.digest not in wanted_blobs:
                    self.content.delete(blob.digest)
        return removed

    def history(self, image_id: str) -> list[dict]:
        """`docker history` rows, newest first: Id (for the layer-carrying top entry), Created, CreatedBy, Size…"""
        image = self.get(image_id)
        hist = image.config.get("history") or [{"created_by": ""} for _ in image.layers]
        sizes = [layer.size for layer in image.layers]
        rows = []
        layer_index = 0
        for entry in hist:
            empty = entry.get("empty_layer", False)
            size = 0
            if not empty and layer_index < len(sizes):
                size = sizes[layer_index]
                layer_index += 1
            rows.append(
                {
                    "Id": "<missing>",
                    "Created": _unix(entry.get("created")),
                    "CreatedBy": entry.get("created_by", ""),
                    "Tags": None,
                    "Size": size,
                    "Comment": entry.get("comment", ""),
                }
            )
        rows.reverse()
        if rows:
            rows[0]["Id"] = image.id
            rows[0]["Tags"] = list(image.repo_tags) or None
        return rows

    def iter_ids(self) -> Iterator[str]:
        with self._lock:
            yield from list(self._state["images"])


def _unix(created: str | None) -> int:
    if not created:
        return 0
    from datetime import datetime

    try:
        return int(datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp())
    except ValueError:
        text = created.replace("Z", "")
        if "." in text:
            head, frac = text.split(".", 1)
            text = f"{head}.{frac[:6]}"
        try:
            return int(datetime.fromisoformat(text + "+00:00").timestamp())
        except ValueError:
            return 0


def now_rfc3339() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_config(
    diff_ids: list[str],
    *,
    base: dict | None = None,
    history: list[dict] | None = None,
    config: dict | None = None,
    author: str = "",
    comment: str = "",
    created_by: str = "",
) -> bytes:
    """An image config (Docker/OCI) for diff_ids, appending one history entry."""
    from .manifests import host_platform

    os_name, arch = host_platform()
    doc = dict(base or {})
    created = now_rfc3339()
    doc.update({"architecture": arch, "os": os_name, "created": created})
    doc["rootfs"] = {"type": "layers", "diff_ids": diff_ids}
    doc["config"] = config if config is not None else (base or {}).get("config", {})
    if author:
        doc["author"] = author
    else:
        doc.pop("author", None)
    hist = list(history if history is not None else (base or {}).get("history", []))
    entry = {"created": created, "created_by": created_by}
    if author:
        entry["author"] = author
    if comment:
        entry["comment"] = comment
    hist.append(entry)
    doc["history"] = hist
    for key in ("container", "container_config", "docker_version", "parent", "id"):
        doc.pop(key, None)
    return mf.canonical_json(doc)


def read_all(stream: BinaryIO) -> bytes:
    chunks = []
    while chunk := stream.read(CHUNK):
        chunks.append(chunk)
    return b"".join(chunks)
