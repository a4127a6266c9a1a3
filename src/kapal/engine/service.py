"""The engine as a library: images, volumes and containers behind one object.

This is the internal API the Docker API handlers call, and what the kubelet
calls directly (in-process, no HTTP): every method is synchronous and
thread-safe, raises kapal.errors, and returns plain data (Docker-shaped dicts
for what the Docker API returns verbatim, dataclasses otherwise).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from kapal.errors import Invalid, NotFound, Unsupported
from kapal.image import digest as digests
from kapal.image.content import LocalContentStore
from kapal.image.distribution import Distribution, Progress
from kapal.image.images import Image, ImageStore, new_config
from kapal.image.reference import Reference, is_image_id, parse, parse_tagged
from kapal.image.registry import Credentials, RegistryConfig
from kapal.image.snapshots import OverlaySnapshotter

from .changes import apply_changes
from .config import EngineConfig
from .events import EventLog
from .volumes import VolumeStore

log = logging.getLogger(__name__)

DEFAULT_CONTAINER_CONFIG = {
    "Hostname": "",
    "Domainname": "",
    "User": "",
    "AttachStdin": False,
    "AttachStdout": False,
    "AttachStderr": False,
    "Tty": False,
    "OpenStdin": False,
    "StdinOnce": False,
    "Env": None,
    "Cmd": None,
    "Image": "",
    "Volumes": None,
    "WorkingDir": "",
    "Entrypoint": None,
    "OnBuild": None,
    "Labels": None,
}


def docker_time(created: str) -> str:
    return created or "0001-01-01T00:00:00Z"


class Engine:
    """Composition root of the engine's stores (see docs/architecture.md)."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        root = Path(config.data_root)
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.content = LocalContentStore(root / "content")
        self.snapshots = OverlaySnapshotter(root / "snapshots")
        self.images = ImageStore(root / "image", self.content, self.snapshots)
        self.registry_config = RegistryConfig(list(config.insecure_registries), Path(config.certs_dir))
        self.distribution = Distribution(self.images, self.registry_config)
        self.volumes = VolumeStore(root / "volumes")
        self.events = EventLog()
        self.containers = None  # set by the container side (containers.py) when it is wired
        self._image_users: Callable[[str], list[str]] = lambda _image_id: []

    def set_image_users(self, fn: Callable[[str], list[str]]) -> None:
        """The container side tells which containers use an image (rmi refuses those)."""
        self._image_users = fn

    # ------------------------------------------------------------------ images

    def pull(
        self, image: str, tag: str = "", creds: Credentials | None = None, progress: Progress | None = None
    ) -> str:
        """`fromImage` + `tag` as the Docker API sends them; returns the image ID."""
        ref = parse(image)
        if tag:
            if tag.startswith("sha256:"):
                ref = ref.with_digest(digests.validate(tag))
            else:
                ref = ref.with_tag(tag)
        ref = ref.tagged_or_latest()
        return self.distribution.pull(ref, creds, progress)

    def push(self, name: str, tag: str = "", creds: Credentials | None = None, progress: Progress | None = None) -> str:
        ref = parse(name)
        if tag:
            ref = ref.with_tag(tag)
        if ref.tag is None and ref.digest is None:
            pushed = ""
            for r in self.image_refs(ref):
                pushed = self.distribution.push(r, creds, progress)
            if not pushed:
                raise NotFound(f"An image does not exist locally with the tag: {ref.familiar_name}")
            return pushed
        try:
            self.images.resolve_id(str(ref))
        except NotFound:
            raise NotFound(f"An image does not exist locally with the tag: {ref.familiar()}") from None
        return self.distribution.push(ref, creds, progress)

    def image_refs(self, name: Reference) -> list[Reference]:
        out = []
        for image in self.images.list():
            for tag in image.repo_tags:
                r = parse(tag)
                if r.name == name.name:
                    out.append(r)
        return sorted(out, key=str)

    def import_image(
        self, stream: BinaryIO, repo: str = "", tag: str = "", message: str = "", changes: list[str] | None = None
    ) -> str:
        """`docker import`: one layer from a rootfs tar (plain or compressed); returns the image ID."""
        ref = None
        if repo:
            ref = parse(repo)
            ref = ref.with_tag(tag) if tag else ref.tagged_or_latest()
        diff_id, _, _ = self.images.add_layer_from_tar(stream, None)
        cfg = apply_changes({}, changes or [])
        config = new_config(
            [diff_id], base={}, history=[], config=cfg, comment=message or "Imported from -", created_by=""
        )
        return self.images.add_image(config, ref)

    def commit_layer(
        self,
        base: Image | None,
        upper: Path,
        *,
        container_config: dict,
        repo: str = "",
        tag: str = "",
        author: str = "",
        comment: str = "",
        changes: list[str] | None = None,
        skip: Callable[[str], bool] | None = None,
        volume_dirs: list[str] | None = None,
        created_by: str = "",
    ) -> str:
        """A new image: base's layers + one made from `upper` (an overlay upperdir, whiteouts → `.wh.`)."""
        parent = base.top_chain_id if base else None
        only = {d.strip("/"): False for d in (volume_dirs or [])}
        diff_id, _, _ = self.images.add_layer_from_dir(upper, parent, skip=skip, only=only)
        diff_ids = [layer.diff_id for layer in base.layers] if base else []
        cfg = apply_changes(container_config, changes or [])
        config = new_config(
            [*diff_ids, diff_id],
            base=base.config if base else {},
            config=cfg,
            author=author,
            comment=comment,
            created_by=created_by,
        )
        ref = None
        if repo:
            ref = parse(repo)
            ref = ref.with_tag(tag) if tag else ref.tagged_or_latest()
        return self.images.add_image(config, ref)

    def tag(self, name: str, repo: str, tag: str = "") -> None:
        image_id = self.images.resolve_id(name)
        ref = parse(repo)
        if tag:
            ref = ref.with_tag(tag)
        self.images.tag(image_id, ref.tagged_or_latest())

    def remove_image(self, name: str, force: bool = False) -> list[dict]:
        return self.images.delete(name, force=force, users=self._image_users)

    def resolve_image(self, name: str) -> Image:
        return self.images.resolve(name)

    def image_inspect(self, name: str) -> dict:
        image = self.images.resolve(name)
        config = dict(DEFAULT_CONTAINER_CONFIG)
        config.update(image.config.get("config") or {})
        lowers = []
        for layer in reversed(image.layers):
            if self.snapshots.exists(layer.chain_id):
                lowers.append(str(self.snapshots.upper_dir(layer.chain_id)))
        graph: dict = {"Name": "overlay2", "Data": None}
        if lowers:
            graph["Data"] = {"MergedDir": "", "UpperDir": lowers[0], "LowerDir": ":".join(lowers[1:]), "WorkDir": ""}
        return {
            "Id": image.id,
            "RepoTags": list(image.repo_tags),
            "RepoDigests": list(image.repo_digests),
            "Parent": "",
            "Comment": _last_comment(image.config),
            "Created": docker_time(image.created),
            "DockerVersion": "",
            "Author": image.config.get("author", ""),
            "Config": config,
            "Architecture": image.config.get("architecture", ""),
            "Os": image.config.get("os", ""),
            "Size": image.size,
            "GraphDriver": graph,
            "RootFS": {"Type": "layers", "Layers": [layer.diff_id for layer in image.layers]},
            "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"},
        }

    def image_list(self, all_images: bool = False, filters: dict | None = None) -> list[dict]:
        out = []
        wanted_refs = (filters or {}).get("reference") or []
        dangling = (filters or {}).get("dangling") or []
        for unsupported in set(filters or {}) - {"reference", "dangling"}:
            raise Unsupported(f"image list filter {unsupported!r} is not supported (reference, dangling are)")
        for image in sorted(self.images.list(), key=lambda i: i.added, reverse=True):
            if wanted_refs and not any(_ref_matches(pattern, image) for pattern in wanted_refs):
                continue
            if dangling and (("true" in dangling) == bool(image.repo_tags)):
                continue
            from kapal.image.images import _unix

            out.append(
                {
                    "Id": image.id,
                    "ParentId": "",
                    "RepoTags": list(image.repo_tags),
                    "RepoDigests": list(image.repo_digests),
                    "Created": _unix(image.created),
                    "Size": image.size,
                    "SharedSize": -1,
                    "Labels": (image.config.get("config") or {}).get("Labels") or {},
                    "Containers": -1,
                }
            )
        return out

    def image_history(self, name: str) -> list[dict]:
        return self.images.history(self.images.resolve_id(name))

    # ------------------------------------------------------------------ volumes

    def volume_list(self) -> dict:
        return {"Volumes": [v.to_docker() for v in self.volumes.list()], "Warnings": None}

    def volume_remove(self, name: str, force: bool = False) -> None:
        users = self._volume_users(name)
        self.volumes.remove(name, users, force)

    def _volume_users(self, name: str) -> list[str]:
        if self.containers is None:
            return []
        return self.containers.volume_users(name)  # type: ignore[attr-defined]


def _last_comment(config: dict) -> str:
    hist = config.get("history") or []
    return (hist[-1].get("comment", "") if hist else "") or ""


def _ref_matches(pattern: str, image: Image) -> bool:
    import fnmatch

    for tag in image.repo_tags:
        name = tag.rsplit(":", 1)[0] if ":" in tag.rsplit("/", 1)[-1] else tag
        if fnmatch.fnmatch(tag, pattern) or fnmatch.fnmatch(name, pattern):
            return True
    return False


def check_reference(text: str) -> Reference:
    if is_image_id(text):
        raise Invalid(f"invalid reference format: {text!r} is an image ID")
    return parse_tagged(text)
