"""SPDY/3.1 framing, as kubectl's streams (exec, attach, port-forward before WebSockets) speak it.

Only what a Kubernetes stream server needs: the eight control frames and data
frames (draft 3.1, section 2), and header blocks compressed with zlib over the
SPDY/3 preset dictionary (section 2.6.10.1), one compression context per
direction for the life of the connection. The peer is moby/spdystream, which
does no flow control: window updates and settings are read and ignored, never
sent.

    codec = FrameCodec()
    for frame in codec.feed(bytes_from_the_peer): ...
    transport.write(codec.encode(SynReply(stream_id=1)))
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

from kapal.errors import Invalid

VERSION = 3
FLAG_FIN = 0x01
FLAG_UNIDIRECTIONAL = 0x02

SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = 1, 2, 3, 4, 6, 7, 8, 9

# RST_STREAM status codes
PROTOCOL_ERROR, INVALID_STREAM, REFUSED_STREAM, UNSUPPORTED_VERSION, CANCEL, INTERNAL_ERROR = 1, 2, 3, 4, 5, 6

MAX_FRAME_LENGTH = (1 << 24) - 1

# The preset dictionary: the spec's list of length-prefixed header words, then a run of common values.
_WORDS = (
    "options", "head", "post", "put", "delete", "trace", "accept", "accept-charset", "accept-encoding",
    "accept-language", "accept-ranges", "age", "allow", "authorization", "cache-control", "connection",
    "content-base", "content-encoding", "content-language", "content-length", "content-location", "content-md5",
    "content-range", "content-type", "date", "etag", "expect", "expires", "from", "host", "if-match",
    "if-modified-since", "if-none-match", "if-range", "if-unmodified-since", "last-modified", "location",
    "max-forwards", "pragma", "proxy-authenticate", "proxy-authorization", "range", "referer", "retry-after",
    "server", "te", "trailer", "transfer-encoding", "upgrade", "user-agent", "vary", "via", "warning",
    "www-authenticate", "method", "get", "status", "200 OK", "version", "HTTP/1.1", "url", "public", "set-cookie",
    "keep-alive", "origin",
)
_STATUS_CODES = (100, 101, 201, 202, 205, 206, 300, 302, 303, 304, 305, 306, 307, 402, 405, 406, 407, 408, 409, 410,
                 411, 412, 413, 414, 415, 416, 417, 502, 504, 505)
_TAIL = (
    "203 Non-Authoritative Information", "204 No Content", "301 Moved Permanently", "400 Bad Request",
    "401 Unauthorized", "403 Forbidden", "404 Not Found", "500 Internal Server Error", "501 Not Implemented",
    "503 Service Unavailable", "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 ",
    "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT", "chunked,text/html,image/png,image/jpg,image/gif,application/xml,",
    "application/xhtml+xml,text/plain,text/javascript,public", "privatemax-age=gzip,deflate,sdch",
    "charset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
)


def _dictionary() -> bytes:
    words = b"".join(struct.pack(">I", len(w)) + w.encode() for w in _WORDS)
    return words + "".join(str(c) for c in _STATUS_CODES).encode() + "".join(_TAIL).encode()


DICTIONARY = _dictionary()

Headers = dict[str, list[str]]


@dataclass
class SynStream:
    stream_id: int
    headers: Headers = field(default_factory=dict)
    flags: int = 0
    associated_to: int = 0
    priority: int = 0


@dataclass
class SynReply:
    stream_id: int
    headers: Headers = field(default_factory=dict)
    flags: int = 0


@dataclass
class RstStream:
    stream_id: int
    status: int = CANCEL


@dataclass
class Settings:
    entries: list[tuple[int, int, int]] = field(default_factory=list)  # (flags, id, value)
    flags: int = 0


@dataclass
class Ping:
    id: int


@dataclass
class GoAway:
    last_good_stream_id: int = 0
    status: int = 0


@dataclass
class HeadersFrame:
    stream_id: int
    headers: Headers = field(default_factory=dict)
    flags: int = 0


@dataclass
class WindowUpdate:
    stream_id: int
    delta: int


@dataclass
class Data:
    stream_id: int
    data: bytes = b""
    flags: int = 0

    @property
    def fin(self) -> bool:
        return bool(self.flags & FLAG_FIN)


Frame = SynStream | SynReply | RstStream | Settings | Ping | GoAway | HeadersFrame | WindowUpdate | Data


class HeaderBlocks:
    """The two zlib contexts of one connection: ours for what we send, the peer's for what we read."""

    def __init__(self) -> None:
        self._out = zlib.compressobj(zlib.Z_BEST_COMPRESSION, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY,
                                     DICTIONARY)
        self._in = zlib.decompressobj(zdict=DICTIONARY)

    def compress(self, headers: Headers) -> bytes:
        raw = [struct.pack(">I", len(headers))]
        for name, values in headers.items():
            key = name.lower().encode()
            value = "\x00".join(values).encode()
            raw += [struct.pack(">I", len(key)), key, struct.pack(">I", len(value)), value]
        return self._out.compress(b"".join(raw)) + self._out.flush(zlib.Z_SYNC_FLUSH)

    def decompress(self, block: bytes) -> Headers:
        try:
            raw = self._in.decompress(block)
        except zlib.error as e:
            raise Invalid(f"SPDY header block does not decompress: {e}") from e
        return parse_header_block(raw)


def parse_header_block(raw: bytes) -> Headers:
    try:
        (count,) = struct.unpack_from(">I", raw, 0)
        pos = 4
        out: Headers = {}
        for _ in range(count):
            (n,) = struct.unpack_from(">I", raw, pos)
            name = raw[pos + 4:pos + 4 + n].decode()
            pos += 4 + n
            (v,) = struct.unpack_from(">I", raw, pos)
            value = raw[pos + 4:pos + 4 + v].decode()
            pos += 4 + v
            out.setdefault(name.lower(), []).extend(value.split("\x00"))
    except (struct.error, UnicodeDecodeError) as e:
        raise Invalid(f"malformed SPDY header block: {e}") from e
    return out


def _control(kind: int, flags: int, payload: bytes) -> bytes:
    if len(payload) > MAX_FRAME_LENGTH:
        raise Invalid(f"SPDY control frame of {len(payload)} bytes is too large")
    return struct.pack(">HHI", 0x8000 | VERSION, kind, (flags << 24) | len(payload)) + payload


class FrameCodec:
    """Incremental reader and writer of frames for one connection (either side)."""

    def __init__(self) -> None:
        self.headers = HeaderBlocks()
        self._buf = bytearray()

    # ---- writing -----------------------------------------------------------------------------------------------

    def encode(self, frame: Frame) -> bytes:
        if isinstance(frame, Data):
            out = bytearray()
            data = frame.data
            while True:  # split what does not fit in one frame; FIN only on the last piece
                piece, data = data[:MAX_FRAME_LENGTH], data[MAX_FRAME_LENGTH:]
                flags = frame.flags if not data else frame.flags & ~FLAG_FIN
                out += struct.pack(">II", frame.stream_id & 0x7FFFFFFF, (flags << 24) | len(piece)) + piece
                if not data:
                    return bytes(out)
        if isinstance(frame, SynStream):
            body = struct.pack(">IIBB", frame.stream_id, frame.associated_to, (frame.priority & 7) << 5, 0)
            return _control(SYN_STREAM, frame.flags, body + self.headers.compress(frame.headers))
        if isinstance(frame, SynReply):
            return _control(SYN_REPLY, frame.flags, struct.pack(">I", frame.stream_id)
                            + self.headers.compress(frame.headers))
        if isinstance(frame, HeadersFrame):
            return _control(HEADERS, frame.flags, struct.pack(">I", frame.stream_id)
                            + self.headers.compress(frame.headers))
        if isinstance(frame, RstStream):
            return _control(RST_STREAM, 0, struct.pack(">II", frame.stream_id, frame.status))
        if isinstance(frame, Ping):
            return _control(PING, 0, struct.pack(">I", frame.id))
        if isinstance(frame, GoAway):
            return _control(GOAWAY, 0, struct.pack(">II", frame.last_good_stream_id, frame.status))
        if isinstance(frame, WindowUpdate):
            return _control(WINDOW_UPDATE, 0, struct.pack(">II", frame.stream_id, frame.delta))
        if isinstance(frame, Settings):
            body = struct.pack(">I", len(frame.entries)) + b"".join(
                struct.pack(">II", (f << 24) | i, v) for f, i, v in frame.entries)
            return _control(SETTINGS, frame.flags, body)
        raise TypeError(f"not a SPDY frame: {frame!r}")

    # ---- reading -----------------------------------------------------------------------------------------------

    def feed(self, data: bytes) -> list[Frame]:
        """Frames completed by `data`; a partial frame waits for the next call."""
        self._buf += data
        frames: list[Frame] = []
        while len(self._buf) >= 8:
            word, flags_len = struct.unpack_from(">II", self._buf, 0)
            length = flags_len & 0xFFFFFF
            if len(self._buf) < 8 + length:
                break
            flags = flags_len >> 24
            payload = bytes(self._buf[8:8 + length])
            del self._buf[:8 + length]
            if word & 0x80000000:
                version, kind = (word >> 16) & 0x7FFF, word & 0xFFFF
                if version != VERSION:
                    raise Invalid(f"SPDY version {version} is not supported (3 is)")
                frame = self._control(kind, flags, payload)
                if frame is not None:
                    frames.append(frame)
            else:
                frames.append(Data(word & 0x7FFFFFFF, payload, flags))
        return frames

    def _control(self, kind: int, flags: int, p: bytes) -> Frame | None:
        try:
            if kind == SYN_STREAM:
                sid, assoc, pri = struct.unpack_from(">IIB", p, 0)
                return SynStream(sid & 0x7FFFFFFF, self.headers.decompress(p[10:]), flags, assoc & 0x7FFFFFFF,
                                 pri >> 5)
            if kind == SYN_REPLY:
                (sid,) = struct.unpack_from(">I", p, 0)
                return SynReply(sid & 0x7FFFFFFF, self.headers.decompress(p[4:]), flags)
            if kind == HEADERS:
                (sid,) = struct.unpack_from(">I", p, 0)
                return HeadersFrame(sid & 0x7FFFFFFF, self.headers.decompress(p[4:]), flags)
            if kind == RST_STREAM:
                sid, st = struct.unpack_from(">II", p, 0)
                return RstStream(sid & 0x7FFFFFFF, st)
            if kind == PING:
                return Ping(struct.unpack_from(">I", p, 0)[0])
            if kind == GOAWAY:
                last, st = struct.unpack_from(">II", p, 0) if len(p) >= 8 else (*struct.unpack_from(">I", p, 0), 0)
                return GoAway(last & 0x7FFFFFFF, st)
            if kind == WINDOW_UPDATE:
                sid, delta = struct.unpack_from(">II", p, 0)
                return WindowUpdate(sid & 0x7FFFFFFF, delta & 0x7FFFFFFF)
            if kind == SETTINGS:
                (n,) = struct.unpack_from(">I", p, 0)
                entries = []
                for i in range(n):
                    fid, value = struct.unpack_from(">II", p, 4 + 8 * i)
                    entries.append((fid >> 24, fid & 0xFFFFFF, value))
                return Settings(entries, flags)
        except struct.error as e:
            raise Invalid(f"malformed SPDY control frame of type {kind}: {e}") from e
        return None  # unknown control frames are ignored, as the spec asks
