"""Local volumes: directories under `<data-root>/volumes/<name>/_data`, bind-mounted into containers.

Anonymous volumes (`-v /test`) get a 64-hex name; named ones are created on
first use. A volume in use by a container cannot be removed.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from kapal.errors import AlreadyExists, Conflict, Invalid, NotFound, Unsupported

_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")


@dataclass(frozen=True)
class Volume:
    name: str
    mountpoint: Path
    created: str
    labels: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)
    anonymous: bool = False

    def to_docker(self) -> dict:
        return {
            "CreatedAt": self.created,
            "Driver": "local",
            "Labels": self.labels or None,
            "Mountpoint": str(self.mountpoint),
            "Name": self.name,
            "Options": self.options or None,
            "Scope": "local",
        }


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class VolumeStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()

    def _meta(self, name: str) -> Path:
        return self.root / name / "meta.json"

    def create(
        self,
        name: str | None = None,
        *,
        driver: str = "local",
        labels: dict[str, str] | None = None,
        options: dict[str, str] | None = None,
        exist_ok: bool = True,
    ) -> Volume:
        if driver not in ("", "local"):
            raise Unsupported(f"volume driver {driver!r} is not supported: kapal has the 'local' driver only")
        if options:
            raise Unsupported(f"volume options {sorted(options)} are not supported by the local driver of kapal")
        anonymous = not name
        name = name or secrets.token_hex(32)
        if not _NAME.match(name):
            raise Invalid(
                f'create {name}: "{name}" includes invalid characters for a local volume name, '
                "only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )
        with self._lock:
            if self._meta(name).exists():
                if not exist_ok:
                    raise AlreadyExists(f"volume {name} already exists")
                return self.get(name)
            (self.root / name / "_data").mkdir(parents=True, exist_ok=True)
            os.chmod(self.root / name / "_data", 0o755)
            meta = {"created": _now(), "labels": labels or {}, "anonymous": anonymous}
            tmp = self._meta(name).with_suffix(".tmp")
            tmp.write_text(json.dumps(meta))
            os.rename(tmp, self._meta(name))
            return self.get(name)

    def get(self, name: str) -> Volume:
        try:
            meta = json.loads(self._meta(name).read_text())
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"get {name}: no such volume") from None
        return Volume(name, self.root / name / "_data", meta["created"], meta.get("labels", {}), {}, meta["anonymous"])

    def list(self) -> list[Volume]:
        out = []
        for entry in sorted(self.root.iterdir()):
            if (entry / "meta.json").exists():
                out.append(self.get(entry.name))
        return out

    def remove(self, name: str, users: list[str] | None = None, force: bool = False) -> None:
        with self._lock:
            self.get(name)
            if users:
                raise Conflict(f"remove {name}: volume is in use - [{', '.join(users)}]")
            doomed = self.root / f".{name}-removing"
            os.rename(self.root / name, doomed)
        shutil.rmtree(doomed, ignore_errors=True)

    def usage(self, name: str) -> int:
        from kapal.image.snapshots import dir_usage

        return dir_usage(self.get(name).mountpoint)
