"""The protocol buffers wire format: varints, tags and length-delimited fields, both directions.

Only what kapal needs to read Kubernetes request bodies and to write the gnostic OpenAPI v2 document:
no descriptors, no generated code. Field numbers and types live with the callers.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from kapal.errors import Invalid

VARINT, FIXED64, LENGTH, START_GROUP, END_GROUP, FIXED32 = 0, 1, 2, 3, 4, 5


def read_varint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    """(value, next position) of the varint at `pos`."""
    result = shift = 0
    end = len(buf)
    while True:
        if pos >= end:
            raise Invalid("protobuf: truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise Invalid("protobuf: varint longer than 10 bytes")


def fields(buf: bytes | memoryview) -> Iterator[tuple[int, int, int | bytes]]:
    """Every (field number, wire type, value) of one message; LENGTH values are bytes, others ints."""
    buf = memoryview(buf)
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise Invalid("protobuf: field number 0 is not allowed")
        if wire == VARINT:
            value, pos = read_varint(buf, pos)
            yield number, wire, value
        elif wire == LENGTH:
            size, pos = read_varint(buf, pos)
            if pos + size > end:
                raise Invalid(f"protobuf: field {number} claims {size} bytes, only {end - pos} left")
            yield number, wire, bytes(buf[pos:pos + size])
            pos += size
        elif wire == FIXED64:
            if pos + 8 > end:
                raise Invalid("protobuf: truncated fixed64")
            yield number, wire, int.from_bytes(buf[pos:pos + 8], "little")
            pos += 8
        elif wire == FIXED32:
            if pos + 4 > end:
                raise Invalid("protobuf: truncated fixed32")
            yield number, wire, int.from_bytes(buf[pos:pos + 4], "little")
            pos += 4
        else:
            raise Invalid(f"protobuf: unsupported wire type {wire} for field {number}")


def signed64(value: int) -> int:
    """A varint read as int64/int32 (two's complement)."""
    return value - (1 << 64) if value >= 1 << 63 else value


def zigzag(value: int) -> int:
    return (value >> 1) ^ -(value & 1)


def as_double(value: int) -> float:
    return struct.unpack("<d", value.to_bytes(8, "little"))[0]


def as_float(value: int) -> float:
    return struct.unpack("<f", value.to_bytes(4, "little"))[0]


def encode_varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


class Writer:
    """Builds one message; nested messages are written by a child Writer and added with `message`."""

    __slots__ = ("_parts",)

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def _key(self, number: int, wire: int) -> None:
        self._parts.append(encode_varint(number << 3 | wire))

    def varint(self, number: int, value: int) -> Writer:
        self._key(number, VARINT)
        self._parts.append(encode_varint(value))
        return self

    def boolean(self, number: int, value: bool) -> Writer:
        return self.varint(number, 1 if value else 0)

    def double(self, number: int, value: float) -> Writer:
        self._key(number, FIXED64)
        self._parts.append(struct.pack("<d", value))
        return self

    def raw(self, number: int, data: bytes) -> Writer:
        self._key(number, LENGTH)
        self._parts.append(encode_varint(len(data)))
        self._parts.append(data)
        return self

    def string(self, number: int, value: str) -> Writer:
        return self.raw(number, value.encode())

    def message(self, number: int, child: Writer | bytes) -> Writer:
        return self.raw(number, child.getvalue() if isinstance(child, Writer) else child)

    def getvalue(self) -> bytes:
        return b"".join(self._parts)
