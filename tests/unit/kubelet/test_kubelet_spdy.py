"""SPDY/3.1 framing: the preset dictionary, header compression across the two contexts, frame round trips."""

from __future__ import annotations

import zlib

import pytest

from kapal.errors import Invalid
from kapal.kube.kubelet import spdy


def test_dictionary_is_the_spec_one():
    # 1423 bytes; zlib names a preset dictionary by its Adler-32, which the peer checks.
    assert len(spdy.DICTIONARY) == 1423
    assert zlib.adler32(spdy.DICTIONARY) == 0xE3C6A7C2
    assert spdy.DICTIONARY.startswith(b"\x00\x00\x00\x07options") and spdy.DICTIONARY.endswith(b"enq=0.")


def test_header_blocks_share_one_context_per_direction():
    client, server = spdy.FrameCodec(), spdy.FrameCodec()
    frames = []
    for i in range(3):  # later blocks only decode with the state the earlier ones left
        wire = client.encode(spdy.SynStream(2 * i + 1, {"streamtype": ["stdout"], "port": [str(8000 + i)]}))
        frames += server.feed(wire)
    assert [f.headers for f in frames] == [{"streamtype": ["stdout"], "port": [str(8000 + i)]} for i in range(3)]
    assert [f.stream_id for f in frames] == [1, 3, 5]


def test_compressed_blocks_name_the_dictionary():
    block = spdy.HeaderBlocks().compress({"streamtype": ["error"]})
    d = zlib.decompressobj()
    with pytest.raises(zlib.error):
        d.decompress(block)  # needs the preset dictionary
    assert int.from_bytes(block[2:6], "big") == zlib.adler32(spdy.DICTIONARY)


def test_frames_arrive_in_pieces():
    a, b = spdy.FrameCodec(), spdy.FrameCodec()
    wire = (a.encode(spdy.SynReply(1)) + a.encode(spdy.Data(1, b"hello")) + a.encode(spdy.Data(1, b"", spdy.FLAG_FIN))
            + a.encode(spdy.Ping(7)) + a.encode(spdy.RstStream(3, spdy.CANCEL)) + a.encode(spdy.GoAway(5))
            + a.encode(spdy.WindowUpdate(1, 1000)) + a.encode(spdy.Settings([(0, 7, 65536)])))
    got = []
    for i in range(len(wire)):
        got += b.feed(wire[i:i + 1])
    kinds = [type(f).__name__ for f in got]
    assert kinds == ["SynReply", "Data", "Data", "Ping", "RstStream", "GoAway", "WindowUpdate", "Settings"]
    assert got[1].data == b"hello" and not got[1].fin and got[2].fin
    assert got[3].id == 7 and got[5].last_good_stream_id == 5 and got[7].entries == [(0, 7, 65536)]


def test_wrong_version_is_refused():
    frame = bytearray(spdy.FrameCodec().encode(spdy.Ping(1)))
    frame[1] = 2
    with pytest.raises(Invalid, match="version 2"):
        spdy.FrameCodec().feed(bytes(frame))


def test_multiple_values_travel_nul_separated():
    a, b = spdy.FrameCodec(), spdy.FrameCodec()
    (f,) = b.feed(a.encode(spdy.HeadersFrame(1, {"X-Many": ["a", "b"]})))
    assert f.headers == {"x-many": ["a", "b"]}
