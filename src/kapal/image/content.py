"""Content-addressable blob store: blobs/sha256/<hex> under the data root.

A write goes to a temp file in `ingest/`, is hashed while it streams, checked
against the expected digest, fsynced and renamed into place; the directory is
fsynced too. A killed writer or a full disk leaves at most a temp file that the
next start sweeps, never a blob whose name lies about its content.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from kapal.errors import Invalid, NotFound

from . import digest as digests


@dataclass(frozen=True)
class BlobInfo:
    digest: str
    size: int


class ContentStore(Protocol):
    """Blobs by digest. Writers verify before a blob becomes visible."""

    def exists(self, digest: str) -> bool: ...
    def info(self, digest: str) -> BlobInfo: ...
    def open(self, digest: str) -> BinaryIO: ...
    def read(self, digest: str) -> bytes: ...
    def writer(self, expected: str | None = None, expected_size: int | None = None) -> BlobWriter: ...
    def put(self, data: bytes) -> str: ...
    def delete(self, digest: str) -> None: ...
    def list(self) -> Iterator[BlobInfo]: ...


class BlobWriter:
    """A streaming ingest: write(), then commit() (verify, fsync, rename) or abort()."""

    def __init__(self, store: LocalContentStore, expected: str | None, expected_size: int | None) -> None:
        self._store = store
        self.expected = digests.validate(expected) if expected else None
        self.expected_size = expected_size
        self._hash = hashlib.sha256()
        self.size = 0
        fd, name = tempfile.mkstemp(dir=store.ingest_dir, prefix="blob-")
        self._file = os.fdopen(fd, "wb", buffering=0)
        self._path = Path(name)
        self.digest: str | None = None

    def write(self, data: bytes | memoryview) -> int:
        self._hash.update(data)
        self.size += len(data)
        view = memoryview(data)
        while view:
            view = view[self._file.write(view) :]  # a short write (disk full) must not lose bytes silently
        return len(data)

    def commit(self) -> str:
        actual = "sha256:" + self._hash.hexdigest()
        try:
            if self.expected and actual != self.expected:
                raise Invalid(
                    f"digest mismatch: expected {self.expected}, got {actual} ({self.size} bytes): content rejected"
                )
            if self.expected_size is not None and self.size != self.expected_size:
                raise Invalid(f"size mismatch for {actual}: expected {self.expected_size} bytes, got {self.size}")
            os.fsync(self._file.fileno())
            self._file.close()
            target = self._store.path(actual)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.rename(self._path, target)
            _fsync_dir(target.parent)
        except BaseException:
            self.abort()
            raise
        self.digest = actual
        return actual

    def abort(self) -> None:
        if not self._file.closed:
            self._file.close()
        self._path.unlink(missing_ok=True)

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.digest is None:
            self.abort()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalContentStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.blobs_dir = self.root / "blobs" / "sha256"
        self.ingest_dir = self.root / "ingest"
        self.blobs_dir.mkdir(parents=True, exist_ok=True)
        self.ingest_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        for leftover in self.ingest_dir.iterdir():
            leftover.unlink(missing_ok=True)

    def path(self, digest: str) -> Path:
        return self.blobs_dir / digests.hex_of(digest)

    def exists(self, digest: str) -> bool:
        return self.path(digest).exists()

    def info(self, digest: str) -> BlobInfo:
        try:
            return BlobInfo(digest, self.path(digest).stat().st_size)
        except FileNotFoundError:
            raise NotFound(f"content {digest} not found") from None

    def open(self, digest: str) -> BinaryIO:
        try:
            return open(self.path(digest), "rb")
        except FileNotFoundError:
            raise NotFound(f"content {digest} not found") from None

    def read(self, digest: str) -> bytes:
        with self.open(digest) as f:
            return f.read()

    def writer(self, expected: str | None = None, expected_size: int | None = None) -> BlobWriter:
        return BlobWriter(self, expected, expected_size)

    def put(self, data: bytes) -> str:
        digest = digests.of_bytes(data)
        if self.exists(digest):
            return digest
        with self.writer(digest, len(data)) as w:
            w.write(data)
            return w.commit()

    def delete(self, digest: str) -> None:
        self.path(digest).unlink(missing_ok=True)

    def list(self) -> Iterator[BlobInfo]:
        for entry in os.scandir(self.blobs_dir):
            yield BlobInfo("sha256:" + entry.name, entry.stat().st_size)
