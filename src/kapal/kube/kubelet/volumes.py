"""Pod volumes on the node, under <root>/pods/<uid>/volumes/<plugin>/<name>, as the upstream kubelet lays them out.

    emptyDir        kubernetes.io~empty-dir   a directory (0777), or a tmpfs for medium Memory (sizeLimit)
    hostPath        (none)                    the host path itself, after the type check
    secret          kubernetes.io~secret      a tmpfs holding the keys as files (atomicwriter)
    configMap       kubernetes.io~configmap   a directory holding the keys as files (atomicwriter)
    downwardAPI     kubernetes.io~downward-api
    projected       kubernetes.io~projected   a tmpfs: secrets, configMaps, downward API items and a
                                              bound service-account token (TokenRequest, refreshed before expiry)
    persistentVolumeClaim                     the bound PV's hostPath or local path

`mount_all` makes them before the pod's first container and raises `VolumeError` with upstream's
words (`MountVolume.SetUp failed for volume "x" : secret "y" not found`); `refresh` re-projects the API-backed
ones (the pod worker calls it every few seconds, so a changed Secret reaches the files within a minute);
`unmount_all` undoes everything.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import shutil
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kapal import errors
from kapal.kube.client.client import ApiClient
from kapal.kube.client.kinds import CONFIGMAPS, SECRETS, SERVICEACCOUNTS, resource
from kapal.kube.meta.quantity import parse_quantity
from kapal.linux.mount import MNT_DETACH, MS_NODEV, MS_NOSUID, mount, umount

from . import atomicwriter
from .atomicwriter import FileProjection
from .downward import field_value, resource_value

log = logging.getLogger(__name__)

PVCS = resource("", "persistentvolumeclaims")
PVS = resource("", "persistentvolumes")
PLUGIN_DIRS = {
    "emptyDir": "kubernetes.io~empty-dir", "secret": "kubernetes.io~secret", "configMap": "kubernetes.io~configmap",
    "downwardAPI": "kubernetes.io~downward-api", "projected": "kubernetes.io~projected",
}
READ_ONLY_KINDS = ("secret", "configMap", "downwardAPI", "projected")
DEFAULT_MODE = 0o644
TOKEN_REFRESH_FRACTION = 0.8
TOKEN_REFRESH_AFTER = 24 * 3600


class VolumeError(errors.KapalError):
    """A volume could not be set up; the message is what `kubectl describe` shows under FailedMount."""

    reason = "FailedMount"


@dataclass(frozen=True)
class MountedVolume:
    name: str
    kind: str
    host_path: str
    read_only: bool = False


def volume_kind(vol: dict[str, Any]) -> str:
    kinds = [k for k in vol if k != "name"]
    return kinds[0] if kinds else "emptyDir"


def _failed(name: str, message: str) -> VolumeError:
    return VolumeError(f'MountVolume.SetUp failed for volume "{name}" : {message}')


def _mode(value: Any, default: int) -> int:
    if value is None:
        return default
    mode = int(value)
    if not 0 <= mode <= 0o777:
        raise errors.Invalid(f"file mode {mode} must be between 0 and 0777")
    return mode


def _is_mount(path: str) -> bool:
    return os.path.ismount(path)


def _mount_tmpfs(path: str, size: int | None = None) -> None:
    os.makedirs(path, exist_ok=True)
    if not _is_mount(path):
        data = "mode=0755" + (f",size={size}" if size else "")
        mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, data)


class VolumeManager:
    def __init__(self, pods_dir: str | Path, client: ApiClient | None, *, allocatable: dict[str, str] | None = None,
                 default_audience: str | None = None) -> None:
        self.pods_dir = Path(pods_dir)
        self.client = client
        self.allocatable = allocatable or {}
        self.default_audience = default_audience
        self._tokens: dict[tuple[str, str, str], tuple[float, float, bytes]] = {}  # -> (issued, expiry, token)

    def volumes_dir(self, uid: str) -> Path:
        return self.pods_dir / uid / "volumes"

    def volume_path(self, uid: str, vol: dict[str, Any]) -> str:
        kind = volume_kind(vol)
        return str(self.volumes_dir(uid) / PLUGIN_DIRS[kind] / vol["name"])

    # ---- set up ------------------------------------------------------------------------------------------------

    async def mount_all(self, pod: dict[str, Any]) -> dict[str, MountedVolume]:
        out = {}
        for vol in (pod.get("spec") or {}).get("volumes") or []:
            out[vol["name"]] = await self.mount(pod, vol)
        return out

    async def mount(self, pod: dict[str, Any], vol: dict[str, Any]) -> MountedVolume:
        kind = volume_kind(vol)
        name = vol["name"]
        uid = pod["metadata"]["uid"]
        fs_group = ((pod.get("spec") or {}).get("securityContext") or {}).get("fsGroup")
        if kind == "hostPath":
            path = await asyncio.to_thread(check_host_path, name, vol["hostPath"])
            return MountedVolume(name, kind, path)
        if kind == "persistentVolumeClaim":
            return await self._claim(pod, vol)
        if kind not in PLUGIN_DIRS:
            raise _failed(name, f"volume type {kind!r} is not supported by kapal's kubelet (supported: emptyDir, "
                                "hostPath, secret, configMap, downwardAPI, projected, persistentVolumeClaim with a "
                                "hostPath or local volume)")
        path = self.volume_path(uid, vol)
        if kind == "emptyDir":
            await asyncio.to_thread(self._empty_dir, name, path, vol.get("emptyDir") or {}, fs_group)
            return MountedVolume(name, kind, path)
        payload = await self._payload(pod, vol)
        if payload is None:  # optional and absent: an empty volume, as upstream
            payload = {}
        await asyncio.to_thread(self._project, kind, path, payload, fs_group)
        return MountedVolume(name, kind, path, read_only=True)

    def _empty_dir(self, name: str, path: str, spec: dict[str, Any], fs_group: int | None) -> None:
        medium = spec.get("medium") or ""
        if medium == "Memory":
            size = None
            if spec.get("sizeLimit"):
                size = int(parse_quantity(spec["sizeLimit"]))
            _mount_tmpfs(path, size)
        elif medium in ("", "Default"):
            os.makedirs(path, exist_ok=True)
        else:
            raise _failed(name, f"emptyDir medium {medium!r} is not supported (\"\" or Memory)")
        os.chmod(path, 0o777)
        if fs_group is not None:
            os.chown(path, -1, int(fs_group))
            os.chmod(path, 0o777 | stat.S_ISGID)

    def _project(self, kind: str, path: str, payload: dict[str, FileProjection], fs_group: int | None) -> bool:
        if kind in ("secret", "projected"):
            _mount_tmpfs(path)
        else:
            os.makedirs(path, exist_ok=True)
        if fs_group is not None:
            payload = {k: FileProjection(v.data, v.mode | 0o040, v.uid, int(fs_group)) for k, v in payload.items()}
        return atomicwriter.write(path, payload)

    async def _claim(self, pod: dict[str, Any], vol: dict[str, Any]) -> MountedVolume:
        name = vol["name"]
        claim = vol["persistentVolumeClaim"].get("claimName", "")
        if self.client is None:
            raise _failed(name, "no API server to look up the claim")
        try:
            pvc = await self.client.get(PVCS, claim, pod["metadata"].get("namespace"))
        except errors.NotFound:
            raise _failed(name, f'persistentvolumeclaim "{claim}" not found') from None
        pv_name = (pvc.get("spec") or {}).get("volumeName")
        if not pv_name:
            raise _failed(name, f'persistentvolumeclaim "{claim}" is not bound yet')
        pv = await self.client.get(PVS, pv_name)
        spec = pv.get("spec") or {}
        source = (spec.get("hostPath") or {}).get("path") or (spec.get("local") or {}).get("path")
        if not source:
            raise _failed(name, f"persistent volume {pv_name} is neither hostPath nor local; kapal's kubelet "
                                "mounts only those")
        if spec.get("hostPath"):
            source = await asyncio.to_thread(check_host_path, name, spec["hostPath"])
        return MountedVolume(name, "persistentVolumeClaim", source,
                             read_only=bool(vol["persistentVolumeClaim"].get("readOnly")))

    # ---- payloads from the API ---------------------------------------------------------------------------------

    async def _get(self, r: Any, name: str, namespace: str) -> dict[str, Any] | None:
        if self.client is None:
            raise errors.FailedPrecondition("no API server to read from (standalone kubelet)")
        try:
            return await self.client.get(r, name, namespace)
        except errors.NotFound:
            return None

    async def _payload(self, pod: dict[str, Any], vol: dict[str, Any]) -> dict[str, FileProjection] | None:
        kind = volume_kind(vol)
        spec = vol.get(kind) or {}
        name = vol["name"]
        ns = pod["metadata"].get("namespace") or "default"
        if kind == "secret":
            return await self._keys(name, "secret", SECRETS, spec.get("secretName", ""), ns, spec,
                                    _mode(spec.get("defaultMode"), DEFAULT_MODE))
        if kind == "configMap":
            return await self._keys(name, "configmap", CONFIGMAPS, spec.get("name", ""), ns, spec,
                                    _mode(spec.get("defaultMode"), DEFAULT_MODE))
        if kind == "downwardAPI":
            return self._downward(pod, name, spec.get("items") or [], _mode(spec.get("defaultMode"), DEFAULT_MODE))
        if kind == "projected":
            default = _mode(spec.get("defaultMode"), DEFAULT_MODE)
            out: dict[str, FileProjection] = {}
            for source in spec.get("sources") or []:
                if "secret" in source:
                    s = source["secret"]
                    out.update(await self._keys(name, "secret", SECRETS, s.get("name", ""), ns, s, default) or {})
                elif "configMap" in source:
                    s = source["configMap"]
                    out.update(await self._keys(name, "configmap", CONFIGMAPS, s.get("name", ""), ns, s, default)
                               or {})
                elif "downwardAPI" in source:
                    out.update(self._downward(pod, name, source["downwardAPI"].get("items") or [], default))
                elif "serviceAccountToken" in source:
                    out.update(await self._token(pod, name, source["serviceAccountToken"], default))
                else:
                    kinds = ", ".join(k for k in source)
                    raise _failed(name, f"projected source {kinds} is not supported by kapal's kubelet")
            return out
        raise _failed(name, f"volume type {kind!r} has no payload")

    async def _keys(self, vol_name: str, what: str, r: Any, obj_name: str, ns: str, spec: dict[str, Any],
                    default_mode: int) -> dict[str, FileProjection] | None:
        optional = bool(spec.get("optional"))
        obj = await self._get(r, obj_name, ns)
        if obj is None:
            if optional:
                return None
            raise _failed(vol_name, f'{what} "{obj_name}" not found')
        data: dict[str, bytes] = {}
        if what == "secret":
            for k, v in (obj.get("data") or {}).items():
                data[k] = base64.b64decode(v)
        else:
            for k, v in (obj.get("data") or {}).items():
                data[k] = v.encode()
            for k, v in (obj.get("binaryData") or {}).items():
                data[k] = base64.b64decode(v)
        items = spec.get("items")
        out: dict[str, FileProjection] = {}
        if not items:
            for k, v in data.items():
                out[k] = FileProjection(v, default_mode)
            return out
        for item in items:
            key = item.get("key", "")
            if key not in data:
                if optional:
                    continue
                kind_word = "secret" if what == "secret" else "configmap"
                raise _failed(vol_name, f"references non-existent {kind_word} key: {key}")
            out[item.get("path") or key] = FileProjection(data[key], _mode(item.get("mode"), default_mode))
        return out

    def _downward(self, pod: dict[str, Any], vol_name: str, items: list[dict[str, Any]],
                  default_mode: int) -> dict[str, FileProjection]:
        out = {}
        for item in items:
            try:
                if item.get("fieldRef"):
                    value = field_value(pod, item["fieldRef"].get("fieldPath", ""))
                elif item.get("resourceFieldRef"):
                    ref = item["resourceFieldRef"]
                    value = resource_value(pod, ref.get("containerName", ""), ref.get("resource", ""),
                                           ref.get("divisor"), self.allocatable)
                else:
                    continue
            except errors.Invalid as e:
                raise _failed(vol_name, str(e)) from e
            out[item["path"]] = FileProjection(value.encode(), _mode(item.get("mode"), default_mode))
        return out

    async def _token(self, pod: dict[str, Any], vol_name: str, spec: dict[str, Any],
                     default_mode: int) -> dict[str, FileProjection]:
        meta = pod["metadata"]
        key = (meta["uid"], vol_name, spec.get("path", "token"))
        expiration = int(spec.get("expirationSeconds") or 3600)
        cached = self._tokens.get(key)
        now = time.time()
        if cached is not None:
            issued, expiry, token = cached
            if now < issued + min((expiry - issued) * TOKEN_REFRESH_FRACTION, TOKEN_REFRESH_AFTER):
                return {key[2]: FileProjection(token, default_mode)}
        if self.client is None:
            raise _failed(vol_name, "no API server to request a service-account token from")
        sa = (pod.get("spec") or {}).get("serviceAccountName") or "default"
        body: dict[str, Any] = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                                "spec": {"expirationSeconds": expiration,
                                         "boundObjectRef": {"kind": "Pod", "apiVersion": "v1",
                                                            "name": meta["name"], "uid": meta["uid"]}}}
        if spec.get("audience"):
            body["spec"]["audiences"] = [spec["audience"]]
        try:
            out = await self.client.create(SERVICEACCOUNTS, body, meta.get("namespace"), subresource="token",
                                           name=sa)
        except errors.KapalError as e:
            raise _failed(vol_name, f'failed to fetch token: {e}') from e
        token = out["status"]["token"].encode()
        expiry = _parse_expiry(out["status"].get("expirationTimestamp"), now + expiration)
        self._tokens[key] = (now, expiry, token)
        return {key[2]: FileProjection(token, default_mode)}

    # ---- refresh and tear down ---------------------------------------------------------------------------------

    async def refresh(self, pod: dict[str, Any]) -> list[str]:
        """Re-project the API-backed volumes; names of the volumes that changed. Failures keep the old files."""
        changed = []
        uid = pod["metadata"]["uid"]
        fs_group = ((pod.get("spec") or {}).get("securityContext") or {}).get("fsGroup")
        for vol in (pod.get("spec") or {}).get("volumes") or []:
            kind = volume_kind(vol)
            if kind not in READ_ONLY_KINDS:
                continue
            try:
                payload = await self._payload(pod, vol)
                if payload is None:
                    payload = {}
                if await asyncio.to_thread(self._project, kind, self.volume_path(uid, vol), payload, fs_group):
                    changed.append(vol["name"])
            except errors.KapalError as e:
                log.info("pod %s/%s: refreshing volume %s: %s", pod["metadata"].get("namespace"),
                         pod["metadata"]["name"], vol["name"], e)
        return changed

    def forget(self, uid: str) -> None:
        for key in [k for k in self._tokens if k[0] == uid]:
            del self._tokens[key]

    def unmount_all(self, uid: str) -> None:
        """Unmount every tmpfs below the pod's volumes and remove the volume directories (synchronous)."""
        self.forget(uid)
        base = self.volumes_dir(uid)
        if not base.exists():
            return
        prefix = str(base) + "/"
        with open("/proc/self/mountinfo") as f:
            mounts = [line.split()[4].replace("\\040", " ") for line in f]
        for m in sorted((m for m in mounts if m.startswith(prefix)), reverse=True):
            with contextlib.suppress(OSError):
                umount(m, MNT_DETACH)
        with open("/proc/self/mountinfo") as f:
            if any(line.split()[4].startswith(prefix) for line in f):
                raise errors.Temporary(f"volumes of pod {uid} are still mounted")
        shutil.rmtree(base, ignore_errors=True)


def _parse_expiry(text: str | None, default: float) -> float:
    if not text:
        return default
    import datetime as dt

    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return default


_HOST_PATH_TYPES = ("", "DirectoryOrCreate", "Directory", "FileOrCreate", "File", "Socket", "CharDevice",
                    "BlockDevice")


def check_host_path(vol_name: str, spec: dict[str, Any]) -> str:
    """The hostPath type check (and creation for *OrCreate), with upstream's messages."""
    path = spec.get("path") or ""
    kind = spec.get("type") or ""
    if kind not in _HOST_PATH_TYPES:
        raise _failed(vol_name, f'hostPath type "{kind}" is not supported')
    if not os.path.isabs(path):
        raise _failed(vol_name, f"hostPath path {path!r} must be absolute")
    if kind == "DirectoryOrCreate":
        if not os.path.exists(path):
            os.makedirs(path, mode=0o755, exist_ok=True)
        kind = "Directory"
    elif kind == "FileOrCreate":
        if not os.path.exists(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "a"):
                pass
            os.chmod(path, 0o644)
        kind = "File"
    if not kind:
        return path
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise _failed(vol_name, f"hostPath type check failed: {path} is not a {_NOUN[kind]}") from None
    checks = {"Directory": stat.S_ISDIR, "File": stat.S_ISREG, "Socket": stat.S_ISSOCK, "CharDevice": stat.S_ISCHR,
              "BlockDevice": stat.S_ISBLK}
    if not checks[kind](st.st_mode):
        raise _failed(vol_name, f"hostPath type check failed: {path} is not a {_NOUN[kind]}")
    return path


_NOUN = {"Directory": "directory", "File": "file", "Socket": "socket", "CharDevice": "character device",
         "BlockDevice": "block device"}
