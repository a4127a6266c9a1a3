"""Layer compression: sniffed from the first bytes, streamed in large chunks.

gzip (also multi-member), zstd, bzip2, xz and plain tar. Readers are file-like
(`read(n)`) so the tar parser pulls data through decompression and hashing in
one pass.
"""

from __future__ import annotations

import bz2
import hashlib
import lzma
import zlib
from enum import StrEnum
from typing import BinaryIO

from kapal.errors import Invalid

CHUNK = 1 << 20


class Compression(StrEnum):
    NONE = "none"
    GZIP = "gzip"
    ZSTD = "zstd"
    BZIP2 = "bzip2"
    XZ = "xz"


def sniff(head: bytes) -> Compression:
    if head.startswith(b"\x1f\x8b"):
        return Compression.GZIP
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return Compression.ZSTD
    if head.startswith(b"BZh"):
        return Compression.BZIP2
    if head.startswith(b"\xfd7zXZ\x00"):
        return Compression.XZ
    return Compression.NONE


class PeekReader:
    """Lets a caller look at the first bytes of a stream without consuming them."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._head = b""

    def peek(self, n: int) -> bytes:
        while len(self._head) < n:
            more = self._raw.read(n - len(self._head))
            if not more:
                break
            self._head += more
        return self._head[:n]

    def read(self, n: int = -1) -> bytes:
        if self._head:
            if n < 0:
                data, self._head = self._head + self._raw.read(), b""
                return data
            data, self._head = self._head[:n], self._head[n:]
            if len(data) < n:
                data += self._raw.read(n - len(data))
            return data
        return self._raw.read(n)


class HashingReader:
    """Counts and hashes every byte that passes through (a diffID or a blob digest)."""

    def __init__(self, raw, sink=None) -> None:
        self._raw = raw
        self._hash = hashlib.sha256()
        self._sink = sink
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        if data:
            self._hash.update(data)
            self.size += len(data)
            if self._sink is not None:
                self._sink(data)
        return data

    def drain(self) -> None:
        while self.read(CHUNK):
            pass

    @property
    def digest(self) -> str:
        return "sha256:" + self._hash.hexdigest()


class _DecompressReader:
    """zlib/bz2/lzma decompressor driven by read(n); restarts for concatenated members."""

    def __init__(self, raw, factory) -> None:
        self._raw = raw
        self._factory = factory
        self._d = factory()
        self._buf = bytearray()
        self._eof = False

    def _fill(self, want: int) -> None:
        while len(self._buf) < want and not self._eof:
            if self._d.eof:
                rest = self._d.unused_data
                self._d = self._factory()
                if not rest:
                    rest = self._raw.read(CHUNK)
                    if not rest:
                        self._eof = True
                        return
                self._buf += self._d.decompress(rest)
                continue
            chunk = self._raw.read(CHUNK)
            if not chunk:
                if not self._d.eof:
                    raise Invalid("compressed layer is truncated: the stream ended before the compressed data did")
                self._eof = True
                return
            self._buf += self._d.decompress(chunk)

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            self._fill(1 << 62)
        else:
            self._fill(n)
        if n < 0 or n >= len(self._buf):
            data = bytes(self._buf)
            self._buf.clear()
            return data
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data


class _ZstdReader:
    def __init__(self, raw) -> None:
        import zstandard

        self._r = zstandard.ZstdDecompressor().stream_reader(raw, read_size=CHUNK, read_across_frames=True)

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            chunks = []
            while chunk := self._r.read(CHUNK):
                chunks.append(chunk)
            return b"".join(chunks)
        out = bytearray()
        while len(out) < n:
            chunk = self._r.read(n - len(out))
            if not chunk:
                break
            out += chunk
        return bytes(out)


def decompressed(raw: BinaryIO) -> tuple[Compression, object]:
    """Wrap a stream so that read() yields the uncompressed tar, whatever the compression."""
    peek = PeekReader(raw)
    kind = sniff(peek.peek(6))
    if kind is Compression.GZIP:
        return kind, _DecompressReader(peek, lambda: zlib.decompressobj(16 + zlib.MAX_WBITS))
    if kind is Compression.ZSTD:
        return kind, _ZstdReader(peek)
    if kind is Compression.BZIP2:
        return kind, _DecompressReader(peek, bz2.BZ2Decompressor)
    if kind is Compression.XZ:
        return kind, _DecompressReader(peek, lzma.LZMADecompressor)
    return kind, peek


class GzipWriter:
    """Compresses into a sink as data arrives: one gzip member, level 1..9."""

    def __init__(self, sink, level: int = 6) -> None:
        self._sink = sink
        self._c = zlib.compressobj(level, zlib.DEFLATED, 16 + zlib.MAX_WBITS)

    def write(self, data: bytes) -> int:
        out = self._c.compress(data)
        if out:
            self._sink(out)
        return len(data)

    def close(self) -> None:
        self._sink(self._c.flush())
