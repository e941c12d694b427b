"""cdn.clienthello: golden ClientHellos from `openssl s_client`, fed whole, byte at a time and
re-fragmented into several records; fuzzed: only a result, NEED_MORE_DATA or ClientHelloError.

Fixtures (captured from OpenSSL 3.0 `s_client` by a plain TCP listener):
- clienthello_openssl_sni.bin: `openssl s_client -servername www.example.com`
- clienthello_openssl_nosni.bin: `openssl s_client -noservername`
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdn.clienthello import (
    ALERT_HANDSHAKE_FAILURE,
    ALERT_UNRECOGNIZED_NAME,
    NEED_MORE_DATA,
    ClientHelloError,
    decode_sni,
    encode_alert,
)

FIXTURES = Path(__file__).parent / "fixtures"
WITH_SNI = (FIXTURES / "clienthello_openssl_sni.bin").read_bytes()
WITHOUT_SNI = (FIXTURES / "clienthello_openssl_nosni.bin").read_bytes()


def _message(record: bytes) -> bytes:
    """The handshake message inside a single-record capture."""
    return record[5 : 5 + int.from_bytes(record[3:5])]


def _records(message: bytes, sizes: list[int]) -> bytes:
    """`message` split into handshake records of the given fragment sizes (the rest in one)."""
    out = b""
    pos = 0
    for size in [*sizes, len(message)]:
        chunk = message[pos : pos + size]
        if not chunk:
            break
        out += b"\x16\x03\x01" + len(chunk).to_bytes(2) + chunk
        pos += len(chunk)
    return out


def _hello(extensions: bytes | None) -> bytes:
    body = b"\x03\x03" + bytes(32) + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00"
    if extensions is not None:
        body += len(extensions).to_bytes(2) + extensions
    message = b"\x01" + len(body).to_bytes(3) + body
    return _records(message, [])


def _sni_ext(*names: tuple[int, bytes]) -> bytes:
    entries = b"".join(bytes([kind]) + len(n).to_bytes(2) + n for kind, n in names)
    data = len(entries).to_bytes(2) + entries
    return b"\x00\x00" + len(data).to_bytes(2) + data


def test_golden_openssl_hellos() -> None:
    assert WITH_SNI[0] == 22 and len(WITH_SNI) == 5 + int.from_bytes(WITH_SNI[3:5])
    assert decode_sni(WITH_SNI) == "www.example.com"
    assert decode_sni(WITHOUT_SNI) is None


@pytest.mark.parametrize("capture", [WITH_SNI, WITHOUT_SNI], ids=["sni", "nosni"])
def test_every_prefix_needs_more_data(capture: bytes) -> None:
    for n in range(len(capture)):
        assert decode_sni(capture[:n]) is NEED_MORE_DATA, n


def test_bytes_after_the_hello_are_ignored() -> None:
    # The client may already have sent more (early data, a second record): not our business.
    assert decode_sni(WITH_SNI + b"\x17\x03\x03\x00\x05hello") == "www.example.com"


@pytest.mark.parametrize("sizes", [[1], [4], [10, 10, 10], [100], [1] * 50])
def test_hello_split_across_records(sizes: list[int]) -> None:
    data = _records(_message(WITH_SNI), sizes)
    assert decode_sni(data) == "www.example.com"
    for n in range(len(data)):
        assert decode_sni(data[:n]) is NEED_MORE_DATA, n


def test_synthetic_hellos() -> None:
    assert decode_sni(_hello(None)) is None
    assert decode_sni(_hello(b"")) is None
    assert decode_sni(_hello(_sni_ext((0, b"WWW.Example.COM.")))) == "www.example.com"
    # A name type other than host_name is skipped.
    assert decode_sni(_hello(_sni_ext((7, b"x"), (0, b"a.example.org")))) == "a.example.org"


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"GET / HTTP/1.1\r\n", "not handshake"),
        (b"\x16\x02\x00\x00\x05hello", "record version"),
        (b"\x16\x03\x01\x00\x00", "record length"),
        (b"\x16\x03\x01\x00\x04\x02\x00\x00\x00", "not ClientHello"),
        (_hello(_sni_ext((0, b"")))[:], "empty host_name"),
        (_hello(_sni_ext((0, "bücher.example".encode())))[:], "not ASCII"),
        (_hello(_sni_ext((0, b"a b")))[:], "invalid characters"),
        (_hello(_sni_ext((7, b"x"))), "without a host_name"),
        (_hello(_sni_ext((0, b"a.com")) + _sni_ext((0, b"b.com"))), "twice"),
    ],
)
def test_malformed_raises_its_own_error(data: bytes, why: str) -> None:
    with pytest.raises(ClientHelloError, match=why):
        decode_sni(data)


def test_second_record_not_handshake() -> None:
    data = _records(_message(WITH_SNI), [10])
    broken = data[:15] + b"\x17" + data[16:]
    with pytest.raises(ClientHelloError, match="not handshake"):
        decode_sni(broken)


def test_alert_records() -> None:
    assert encode_alert(ALERT_UNRECOGNIZED_NAME) == bytes.fromhex("15030300020270")
    assert encode_alert(ALERT_HANDSHAKE_FAILURE) == bytes.fromhex("15030300020228")


def _three_way(data: bytes) -> None:
    try:
        result = decode_sni(data)
    except ClientHelloError:
        return
    assert result is NEED_MORE_DATA or result is None or isinstance(result, str)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=400))
def test_fuzz_arbitrary_bytes(data: bytes) -> None:
    _three_way(data)
    _three_way(b"\x16\x03\x01" + data)


@settings(max_examples=400, deadline=None)
@given(st.integers(min_value=0, max_value=len(WITH_SNI) - 1), st.integers(min_value=0, max_value=255))
def test_fuzz_mutated_golden(position: int, value: int) -> None:
    data = bytearray(WITH_SNI)
    data[position] = value
    _three_way(bytes(data))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=64), max_size=20))
def test_fuzz_fragmentation(sizes: list[int]) -> None:
    assert decode_sni(_records(_message(WITH_SNI), sizes)) == "www.example.com"
