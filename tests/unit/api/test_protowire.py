"""Protobuf wire primitives: round trips and loud failures on malformed input."""

import pytest

from kapal.errors import Invalid
from kapal.kube.api import protowire


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 2**31, 2**63 - 1])
def test_varint_round_trip(value):
    data = protowire.encode_varint(value)
    assert protowire.read_varint(data, 0) == (value, len(data))


def test_negative_int64_is_ten_bytes_and_reads_back_signed():
    data = protowire.encode_varint(-1)
    assert len(data) == 10
    value, _ = protowire.read_varint(data, 0)
    assert protowire.signed64(value) == -1


def test_writer_output_parses_back_field_by_field():
    inner = protowire.Writer().string(1, "foo")
    data = protowire.Writer().varint(1, 150).message(2, inner).double(3, 1.5).boolean(4, True).getvalue()
    assert data[:3] == b"\x08\x96\x01"  # the protobuf documentation's own example: field 1 = 150
    got = list(protowire.fields(data))
    assert got[0] == (1, protowire.VARINT, 150)
    assert got[1] == (2, protowire.LENGTH, b"\n\x03foo")
    assert protowire.as_double(got[2][2]) == 1.5
    assert got[3] == (4, protowire.VARINT, 1)


@pytest.mark.parametrize("data, message", [
    (b"\x08", "truncated varint"),
    (b"\x12\x05ab", "claims 5 bytes"),
    (b"\x0b", "unsupported wire type 3"),
    (b"\x00\x01", "field number 0"),
    (b"\x09\x01\x02", "truncated fixed64"),
    (b"\x08" + b"\xff" * 11, "longer than 10 bytes"),
])
def test_malformed_input_raises_invalid(data, message):
    with pytest.raises(Invalid, match=message):
        list(protowire.fields(data))
