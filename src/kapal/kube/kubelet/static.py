"""Static pods: manifests in --pod-manifest-path, run by the kubelet itself, mirrored into the API.

Each YAML or JSON file (hidden files skipped) holds one Pod. The kubelet names it `<name>-<nodeName>`,
puts it in `default` unless it says otherwise, gives it a UID hashed from its content and this node
(so an unchanged file keeps its pod across kubelet restarts, a changed one replaces it), and marks it with
upstream's annotations: kubernetes.io/config.hash, .config.seen, .config.source=file. The mirror pod in
the API carries kubernetes.io/config.mirror=<hash> and is owned by the Node.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

HASH_ANNOTATION = "kubernetes.io/config.hash"
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
SEEN_ANNOTATION = "kubernetes.io/config.seen"
SOURCE_ANNOTATION = "kubernetes.io/config.source"


def _defaults(pod: dict[str, Any]) -> None:
    """The API server's pod defaults that matter to the kubelet (static pods never pass through it)."""
    spec = pod.setdefault("spec", {})
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    spec.setdefault("enableServiceLinks", True)
    for key in ("initContainers", "containers"):
        for c in spec.get(key) or []:
            image = c.get("image") or ""
            tail = image.rsplit("/", 1)[-1]
            c.setdefault("imagePullPolicy", "IfNotPresent" if ("@" in image or (":" in tail and not tail.endswith(
                ":latest"))) else "Always")
            c.setdefault("terminationMessagePath", "/dev/termination-log")
            c.setdefault("terminationMessagePolicy", "File")
            for p in c.get("ports") or []:
                p.setdefault("protocol", "TCP")
            c.setdefault("resources", {})
            limits = (c.get("resources") or {}).get("limits") or {}
            if limits:
                requests = c["resources"].setdefault("requests", {})
                for k, v in limits.items():
                    requests.setdefault(k, v)
    spec.setdefault("tolerations", [{"operator": "Exists", "effect": "NoExecute"}])


def load_manifest(path: Path, node: str) -> dict[str, Any]:
    """A pod from one manifest file, as the kubelet runs it. Raises ValueError with a reason on bad input."""
    import yaml

    text = path.read_text()
    try:
        docs = [d for d in yaml.safe_load_all(text) if d]
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not YAML or JSON: {e}") from e
    if len(docs) != 1 or not isinstance(docs[0], dict):
        raise ValueError(f"{path}: a static pod manifest holds exactly one object")
    pod = docs[0]
    if pod.get("kind") != "Pod" or pod.get("apiVersion") not in ("v1", None):
        raise ValueError(f"{path}: kind {pod.get('kind')!r} is not a v1 Pod")
    meta = pod.setdefault("metadata", {})
    if not meta.get("name"):
        raise ValueError(f"{path}: metadata.name is required")
    if not (pod.get("spec") or {}).get("containers"):
        raise ValueError(f"{path}: spec.containers must have at least one container")
    meta.setdefault("namespace", "default")
    _defaults(pod)
    raw = json.dumps(pod, sort_keys=True, separators=(",", ":"))
    digest = hashlib.md5((raw + node + str(path)).encode()).hexdigest()  # an identifier, not a secret
    meta["name"] = f"{meta['name']}-{node}"
    meta["uid"] = digest
    meta.setdefault("annotations", {}).update({HASH_ANNOTATION: digest, SOURCE_ANNOTATION: "file",
                                               SEEN_ANNOTATION: dt.datetime.now(dt.UTC).isoformat()})
    meta["creationTimestamp"] = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC).strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    pod["spec"]["nodeName"] = node
    pod["apiVersion"], pod["kind"] = "v1", "Pod"
    pod.setdefault("status", {})
    return pod


class StaticPodSource:
    """Scans the manifest directory; `scan()` returns uid -> pod for every valid manifest."""

    def __init__(self, directory: Path, node: str) -> None:
        self.directory = directory
        self.node = node
        self._cache: dict[str, tuple[tuple[float, int], dict[str, Any] | None]] = {}
        self.errors: dict[str, str] = {}

    def scan(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        try:
            entries = sorted(os.scandir(self.directory), key=lambda e: e.name)
        except FileNotFoundError:
            return out
        seen = set()
        for e in entries:
            if e.name.startswith(".") or not e.is_file():
                continue
            seen.add(e.path)
            st = e.stat()
            stamp = (st.st_mtime, st.st_size)
            cached = self._cache.get(e.path)
            if cached is not None and cached[0] == stamp:
                pod = cached[1]
            else:
                try:
                    pod = load_manifest(Path(e.path), self.node)
                    self.errors.pop(e.path, None)
                except (ValueError, OSError) as err:
                    if self.errors.get(e.path) != str(err):
                        log.warning("static pod manifest skipped: %s", err)
                    self.errors[e.path] = str(err)
                    pod = None
                self._cache[e.path] = (stamp, pod)
            if pod is not None:
                out[pod["metadata"]["uid"]] = pod
        for path in [p for p in self._cache if p not in seen]:
            del self._cache[path]
        return out


def mirror_of(pod: dict[str, Any], node_uid: str) -> dict[str, Any]:
    """The mirror pod to create in the API for a static pod."""
    meta = pod["metadata"]
    annotations = dict(meta.get("annotations") or {})
    annotations[MIRROR_ANNOTATION] = annotations.get(HASH_ANNOTATION, meta["uid"])
    mirror_meta = {"name": meta["name"], "namespace": meta["namespace"], "labels": meta.get("labels") or {},
                   "annotations": annotations}
    if node_uid:
        mirror_meta["ownerReferences"] = [{"apiVersion": "v1", "kind": "Node", "name": pod["spec"]["nodeName"],
                                           "uid": node_uid, "controller": True}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": mirror_meta, "spec": pod["spec"]}


def is_mirror(pod: dict[str, Any]) -> bool:
    return MIRROR_ANNOTATION in ((pod.get("metadata") or {}).get("annotations") or {})
