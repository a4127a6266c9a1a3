"""Snapshots: the directories that image layers and containers' rw layers live in.

Glossary (as containerd's): a *key* names an active or view snapshot; a *name*
names a committed one; a *parent* is always a committed snapshot. Lifecycle:

- unpack a layer: `prepare(key)` → write the layer into the directory that
  `mounts(key)` describes → `commit(chain_id, key, parent=previous_chain_id)`.
  On overlay a layer's directory never depends on its parent's contents, so
  the layers of an image unpack in parallel and get their parent at commit.
- run a container: `prepare(ctr_id + "-init", chain_id)` → write /etc/hosts…
  → `commit(ctr_id + "-init", …)`; `prepare(ctr_id, ctr_id + "-init")` → mount.
- commit a container: read the upper directory of `mounts(ctr_id)`.

Snapshotters return `Mount` descriptions as data and never call mount(2):
mounting is the caller's job (the engine, through the linux layer).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from kapal.errors import AlreadyExists, FailedPrecondition, Invalid, NotFound, Unsupported

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
_FLAG_OPTIONS = frozenset({"ro", "rw", "bind", "rbind"})


@dataclass(frozen=True)
class Mount:
    """What to mount, as mount(8) takes it: `mount -t type -o options source target`."""

    type: str
    source: str
    options: tuple[str, ...] = ()

    def option(self, key: str) -> str | None:
        prefix = key + "="
        for opt in self.options:
            if opt.startswith(prefix):
                return opt[len(prefix) :]
        return None

    @property
    def data(self) -> str:
        """Options as the data argument of mount(2) (flags such as ro/rbind excluded)."""
        return ",".join(o for o in self.options if o not in _FLAG_OPTIONS)


class Kind(StrEnum):
    ACTIVE = "active"
    VIEW = "view"
    COMMITTED = "committed"


@dataclass(frozen=True)
class SnapshotInfo:
    key: str
    kind: Kind
    parent: str | None
    id: str
    created: float
    labels: dict[str, str] = field(default_factory=dict)


class Snapshotter(Protocol):
    """Layered directories with copy-on-write views; see the module docstring for the lifecycle."""

    def prepare(self, key: str, parent: str | None = None, labels: dict[str, str] | None = None) -> list[Mount]: ...
    def view(self, key: str, parent: str) -> list[Mount]: ...
    def mounts(self, key: str) -> list[Mount]: ...
    def commit(self, name: str, key: str, parent: str | None = None, labels: dict[str, str] | None = None) -> None: ...
    def remove(self, key: str) -> None: ...
    def stat(self, key: str) -> SnapshotInfo: ...
    def walk(self) -> Iterator[SnapshotInfo]: ...
    def usage(self, key: str) -> int: ...
    def upper_dir(self, key: str) -> Path: ...
    def lower_dirs(self, key: str) -> list[Path]: ...


def _atomic_write_json(path: Path, data: object) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(data, f)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)


def dir_usage(path: Path) -> int:
    """Bytes used by files under path, hardlinks counted once (like `du`)."""
    total, seen = 0, set()
    for dirpath, dirnames, filenames in os.walk(path):
        for name in filenames + dirnames:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except FileNotFoundError:
                continue
            if st.st_nlink > 1:
                if (st.st_dev, st.st_ino) in seen:
                    continue
                seen.add((st.st_dev, st.st_ino))
            total += st.st_blocks * 512
    return total


class OverlaySnapshotter:
    """Snapshots as `<root>/<n>/fs` directories stacked with overlayfs.

    Mount options must fit in one page (4096 bytes): each layer costs
    len("<root>/<n>/fs:"), so at the default data root
    (`/var/lib/kapal/engine/snapshots`) about 100 layers stack; deeper images
    are refused with a message rather than failing in the kernel.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._meta_path = self.root / "metadata.json"
        self._lock = threading.RLock()
        if self._meta_path.exists():
            self._meta = json.loads(self._meta_path.read_text())
        else:
            self._meta = {"next": 1, "snapshots": {}}
        known = {s["id"] for s in self._meta["snapshots"].values()}
        for entry in self.root.iterdir():
            if entry.is_dir() and entry.name not in known:
                shutil.rmtree(entry, ignore_errors=True)  # a removal or prepare that was cut short

    def _save(self) -> None:
        _atomic_write_json(self._meta_path, self._meta)

    def _get(self, key: str) -> dict:
        try:
            return self._meta["snapshots"][key]
        except KeyError:
            raise NotFound(f"snapshot {key} does not exist") from None

    def _info(self, key: str, rec: dict) -> SnapshotInfo:
        return SnapshotInfo(key, Kind(rec["kind"]), rec["parent"], rec["id"], rec["created"], dict(rec["labels"]))

    def _dir(self, rec: dict) -> Path:
        return self.root / rec["id"] / "fs"

    def _chain(self, parent: str | None) -> list[Path]:
        out = []
        while parent is not None:
            rec = self._get(parent)
            out.append(self._dir(rec))
            parent = rec["parent"]
        return out

    def _create(self, key: str, parent: str | None, kind: Kind, labels: dict[str, str] | None) -> None:
        with self._lock:
            if key in self._meta["snapshots"]:
                raise AlreadyExists(f"snapshot {key} already exists")
            if parent is not None and self._get(parent)["kind"] != Kind.COMMITTED:
                raise FailedPrecondition(f"parent snapshot {parent} is not committed")
            sid = str(self._meta["next"])
            self._meta["next"] += 1
            path = self.root / sid
            path.mkdir()
            (path / "fs").mkdir(mode=0o755)
            if kind is Kind.ACTIVE:
                (path / "work").mkdir(mode=0o700)
            rec = {"id": sid, "kind": kind.value, "parent": parent, "created": time.time(), "labels": labels or {}}
            self._meta["snapshots"][key] = rec
            self._save()

    def prepare(self, key: str, parent: str | None = None, labels: dict[str, str] | None = None) -> list[Mount]:
        self._create(key, parent, Kind.ACTIVE, labels)
        return self.mounts(key)

    def view(self, key: str, parent: str) -> list[Mount]:
        self._create(key, parent, Kind.VIEW, None)
        return self.mounts(key)

    def mounts(self, key: str) -> list[Mount]:
        with self._lock:
            rec = self._get(key)
            kind = Kind(rec["kind"])
            lowers = self._chain(rec["parent"])
            own = self.root / rec["id"]
        if kind is Kind.VIEW:
            if len(lowers) == 1:
                return [Mount("bind", str(lowers[0]), ("ro", "rbind"))]
            return [self._overlay([f"lowerdir={':'.join(map(str, lowers))}"], ro=True)]
        if kind is Kind.COMMITTED:
            raise Invalid(f"snapshot {key} is committed: prepare or view a child to mount it")
        if not lowers:
            return [Mount("bind", str(own / "fs"), ("rw", "rbind"))]
        return [
            self._overlay(
                [f"lowerdir={':'.join(map(str, lowers))}", f"upperdir={own / 'fs'}", f"workdir={own / 'work'}"],
                ro=False,
            )
        ]

    def _overlay(self, options: list[str], ro: bool) -> Mount:
        opts = tuple(options + ["index=off"] + (["ro"] if ro else []))
        data = ",".join(o for o in opts if o != "ro")
        if len(data) >= PAGE_SIZE:
            depth = options[0].count(":") + 1
            raise Unsupported(
                f"image too deep for one overlay mount: {depth} layers need {len(data)} bytes of mount options, "
                f"more than a page ({PAGE_SIZE}); use a shorter --data-root or flatten the image"
            )
        return Mount("overlay", "overlay", opts)

    def commit(self, name: str, key: str, parent: str | None = None, labels: dict[str, str] | None = None) -> None:
        with self._lock:
            rec = self._get(key)
            if rec["kind"] != Kind.ACTIVE:
                raise FailedPrecondition(f"snapshot {key} is not active: only active snapshots are committed")
            if name in self._meta["snapshots"]:
                raise AlreadyExists(f"snapshot {name} already exists")
            if parent is not None:
                if rec["parent"] not in (None, parent):
                    raise Invalid(f"snapshot {key} has parent {rec['parent']}, cannot commit it onto {parent}")
                if self._get(parent)["kind"] != Kind.COMMITTED:
                    raise FailedPrecondition(f"parent snapshot {parent} is not committed")
                rec["parent"] = parent
            shutil.rmtree(self.root / rec["id"] / "work", ignore_errors=True)
            rec["kind"] = Kind.COMMITTED.value
            if labels:
                rec["labels"].update(labels)
            del self._meta["snapshots"][key]
            self._meta["snapshots"][name] = rec
            self._save()

    def remove(self, key: str) -> None:
        self.remove_chain([key])

    def remove_chain(self, keys: list[str]) -> None:
        """Remove snapshots, children before parents, with one metadata write (a container's rw, init and
        init-prep snapshots go together); keys that do not exist are skipped, unless there is only one."""
        doomed: list[Path] = []
        with self._lock:
            present = [k for k in keys if k in self._meta["snapshots"]]
            if len(keys) == 1 and not present:
                self._get(keys[0])
            for key in present:
                children = [k for k, r in self._meta["snapshots"].items() if r["parent"] == key]
                if children:
                    raise FailedPrecondition(f"snapshot {key} is the parent of {', '.join(sorted(children))}")
                rec = self._meta["snapshots"].pop(key)
                doomed.append(self.root / rec["id"])
            if not doomed:
                return
            self._save()
            moved = []
            for path in doomed:
                target = path.with_name(f"{path.name}-removing")
                os.rename(path, target)
                moved.append(target)
        for path in moved:
            shutil.rmtree(path, ignore_errors=True)

    def stat(self, key: str) -> SnapshotInfo:
        with self._lock:
            return self._info(key, self._get(key))

    def walk(self) -> Iterator[SnapshotInfo]:
        with self._lock:
            items = list(self._meta["snapshots"].items())
        for key, rec in items:
            yield self._info(key, rec)

    def usage(self, key: str) -> int:
        with self._lock:
            path = self._dir(self._get(key))
        return dir_usage(path)

    def upper_dir(self, key: str) -> Path:
        """The directory this snapshot's own changes live in (the layer contents once committed)."""
        with self._lock:
            return self._dir(self._get(key))

    def lower_dirs(self, key: str) -> list[Path]:
        """The directories of the parent chain, topmost first."""
        with self._lock:
            return self._chain(self._get(key)["parent"])

    def exists(self, key: str) -> bool:
        with self._lock:
            return key in self._meta["snapshots"]


def as_dict(info: SnapshotInfo) -> dict:
    return asdict(info)
