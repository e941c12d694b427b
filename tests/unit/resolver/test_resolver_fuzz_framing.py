"""Property tests: `answer()` on any bytes returns bytes or None and never raises; the TCP
framer reassembles messages fed in any split."""

from __future__ import annotations

import struct

import dnslib
import pytest
from dns_golden import query
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resolver.answers import Tables, answer
from resolver.framing import FramingError, TcpFramer, encode_frame
from resolver.wire import name_text

_SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@_SETTINGS
@given(data=st.binary(max_size=600), udp=st.booleans())
def test_answer_on_arbitrary_bytes(tables: Tables, data: bytes, udp: bool) -> None:
    for view in (tables.public, tables.internal):
        out = answer(view, data, udp=udp)
        assert out is None or isinstance(out, bytes)
        if out is not None:
            assert out[:2] == data[:2] and out[2] & 0x80  # the ID echoed, a response


_labels = st.lists(
    st.sampled_from(["www", "WWW", "x", "wild", "*", "sub", "example", "com", "org", "a" * 63, "\x00", "."]), max_size=6
)


@_SETTINGS
@given(
    labels=_labels,
    qtype=st.integers(0, 65535),
    qclass=st.sampled_from([1, 3, 255, 0]),
    flags=st.integers(0, 0xFFFF),
    counts=st.tuples(st.integers(0, 2), st.integers(0, 2), st.integers(0, 2), st.integers(0, 2)),
    tail=st.binary(max_size=40),
)
def test_answer_on_query_shaped_bytes(
    tables: Tables,
    labels: list[str],
    qtype: int,
    qclass: int,
    flags: int,
    counts: tuple[int, int, int, int],
    tail: bytes,
) -> None:
    name = b"".join(bytes([len(lab.encode())]) + lab.encode() for lab in labels) + b"\x00"
    data = struct.pack("!HHHHHH", 77, flags, *counts) + name + struct.pack("!HH", qtype, qclass) + tail
    out = answer(tables.public, data)
    if out is not None:
        msg = dnslib.DNSRecord.parse(out)
        assert msg.header.id == 77 and msg.header.qr


def test_answer_to_a_valid_query_parses(tables: Tables) -> None:
    out = answer(tables.public, query("www.example.com", 1))
    assert out is not None and dnslib.DNSRecord.parse(out).header.a == 2


# --------------------------------------------------------------------------- framing


def test_frames_split_at_every_offset() -> None:
    messages = [b"\x01" * 12, b"\x02" * 30, b"\x03" * 300]
    stream = b"".join(encode_frame(m) for m in messages)
    for cut in range(len(stream) + 1):
        framer = TcpFramer()
        got = framer.feed(stream[:cut]) + framer.feed(stream[cut:])
        assert got == messages and framer.pending == 0


def test_frames_byte_at_a_time() -> None:
    messages = [b"a" * 17, b"b" * 256]
    framer = TcpFramer()
    got: list[bytes] = []
    for b in b"".join(encode_frame(m) for m in messages):
        got += framer.feed(bytes([b]))
    assert got == messages


def test_zero_length_frame_is_an_error() -> None:
    with pytest.raises(FramingError):
        TcpFramer().feed(b"\x00\x00")


def test_encode_frame_limits() -> None:
    assert encode_frame(b"xyz") == b"\x00\x03xyz"
    with pytest.raises(ValueError):
        encode_frame(b"x" * 65536)


@given(st.lists(st.binary(min_size=1, max_size=300), max_size=5), st.data())
def test_frames_any_split(messages: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(encode_frame(m) for m in messages)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    framer = TcpFramer()
    got: list[bytes] = []
    prev = 0
    for c in [*cuts, len(stream)]:
        got += framer.feed(stream[prev:c])
        prev = c
    assert got == messages


def test_name_text_escapes() -> None:
    assert name_text(b"\x03www\x07example\x03com\x00") == "www.example.com"
    assert name_text(b"\x00") == "."
    assert name_text(b"\x03a.b\x02\x00\xff\x00") == "a\\.b.\\000\\255"
