"""Secret, ConfigMap, downward API and projected volume contents, swapped in atomically (upstream's AtomicWriter).

Layout of a volume directory:

    ..2026_11_26_10_15_00.123456789/   the current files (a fresh timestamped directory per change)
    ..data -> ..2026_11_26_10_15_00.123456789
    token -> ..data/token               one symlink per top-level entry the user sees

An update writes a new timestamped directory, points `..data_tmp` at it and renames that over `..data`
(rename(2) is atomic), then fixes the top-level symlinks and removes the old directory. A reader that
opened `token` through the symlink sees either the old contents or the new, never a mix.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import posixpath
import shutil
from dataclasses import dataclass
from pathlib import Path

from kapal.errors import Invalid

DATA_DIR = "..data"
DATA_TMP = "..data_tmp"


@dataclass(frozen=True)
class FileProjection:
    data: bytes
    mode: int = 0o644
    uid: int = -1  # -1: leave as created
    gid: int = -1


def validate_path(path: str) -> None:
    """User paths: relative, no `..` element, not starting with `..`, at most 4096 bytes (upstream's rules)."""
    if not path:
        raise Invalid("invalid path: must not be empty")
    if len(path) > 4096:
        raise Invalid(f"invalid path: must be less than or equal to 4096 characters: {path[:40]}...")
    if posixpath.isabs(path):
        raise Invalid(f"invalid path: must be relative path: {path}")
    if ".." in path.split("/"):
        raise Invalid(f"invalid path: must not contain '..': {path}")
    if path.startswith(".."):
        raise Invalid(f"invalid path: must not start with '..': {path}")


def _timestamp_dir() -> str:
    now = dt.datetime.now(dt.UTC)
    return now.strftime("..%Y_%m_%d_%H_%M_%S.") + f"{now.microsecond:06d}{os.getpid() % 1000:03d}"


def _current(target: Path) -> dict[str, FileProjection] | None:
    data = target / DATA_DIR
    if not data.is_symlink():
        return None
    out: dict[str, FileProjection] = {}
    base = target / os.readlink(data)
    for root, _dirs, files in os.walk(base):
        for name in files:
            full = Path(root) / name
            rel = str(full.relative_to(base))
            st = full.stat()
            out[rel] = FileProjection(full.read_bytes(), st.st_mode & 0o7777, st.st_uid, st.st_gid)
    return out


def _same(old: dict[str, FileProjection] | None, new: dict[str, FileProjection]) -> bool:
    if old is None or set(old) != set(new):
        return False
    for k, v in new.items():
        o = old[k]
        if o.data != v.data or o.mode != v.mode or (v.uid >= 0 and o.uid != v.uid) or (v.gid >= 0 and o.gid != v.gid):
            return False
    return True


def write(target: str | os.PathLike[str], payload: dict[str, FileProjection]) -> bool:
    """Make `target` hold exactly `payload`; True when anything changed."""
    for path in payload:
        validate_path(path)
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    old = _current(target)
    if _same(old, payload):
        return False
    old_dir = os.readlink(target / DATA_DIR) if (target / DATA_DIR).is_symlink() else None
    ts = _timestamp_dir()
    ts_path = target / ts
    ts_path.mkdir(mode=0o755)
    for rel, f in payload.items():
        full = ts_path / rel
        full.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        with open(full, "wb") as out:
            out.write(f.data)
        if f.uid >= 0 or f.gid >= 0:
            os.chown(full, f.uid, f.gid)
        os.chmod(full, f.mode)
    tmp = target / DATA_TMP
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.symlink(ts, tmp)
    os.replace(tmp, target / DATA_DIR)
    wanted = {p.split("/", 1)[0] for p in payload}
    for top in wanted:
        link = target / top
        if link.is_symlink() and os.readlink(link) == posixpath.join(DATA_DIR, top):
            continue
        if link.exists() and not link.is_symlink():
            shutil.rmtree(link) if link.is_dir() else link.unlink()
        elif link.is_symlink():
            link.unlink()
        os.symlink(posixpath.join(DATA_DIR, top), link)
    for entry in os.listdir(target):
        if entry.startswith(".."):
            continue
        if entry not in wanted and (target / entry).is_symlink():
            (target / entry).unlink()
    if old_dir and old_dir != ts:
        shutil.rmtree(target / old_dir, ignore_errors=True)
    return True
