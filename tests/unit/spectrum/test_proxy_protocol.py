"""PROXY v1/v2 and SPP codecs: golden bytes written by hand from reference 3, incremental
feeding, a table of invalid inputs, and property tests."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_address

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spectrum import proxy_protocol as pp
from spectrum.proxy_protocol import (
    NEED_MORE_DATA,
    NeedMoreData,
    ProxyHeader,
    ProxyProtocolError,
    SppHeader,
    decode,
    decode_spp,
    encode,
    encode_spp,
    encode_v1,
    encode_v1_unknown,
    encode_v2,
    encode_v2_local,
    looks_like_proxy_header,
)

# No example database: the tree stays untouched and runs stay reproducible.
FAST = settings(max_examples=300, database=None, suppress_health_check=[HealthCheck.too_slow])


def a(text: str, port: int) -> tuple[IPv4Address | IPv6Address, int]:
    return ip_address(text), port


def h(text: str) -> bytes:
    """Hex with spaces and newlines, as written in a packet diagram."""
    return bytes.fromhex(text)


SIG = "0d0a0d0a 000d0a51 5549540a"  # v2 signature, reference 3.4 bytes 0-11

# --- golden fixtures --------------------------------------------------------------------------

# "PROXY TCP4 192.0.2.0 192.0.2.255 42300 443\r\n" (the reference's own example)
V1_TCP4 = h(
    "50524f585920 5443503420"  # "PROXY " "TCP4 "
    "3139322e302e322e30 20"  # "192.0.2.0 "
    "3139322e302e322e323535 20"  # "192.0.2.255 "
    "3432333030 20"  # "42300 "
    "343433 0d0a"  # "443" CRLF
)
V1_TCP4_HEADER = ProxyHeader(1, "PROXY", "tcp", a("192.0.2.0", 42300), a("192.0.2.255", 443), (), 44)

# "PROXY TCP6 2001:db8::1 2001:db8::ff 51000 8443\r\n"
V1_TCP6 = h(
    "50524f585920 5443503620"  # "PROXY " "TCP6 "
    "323030313a6462383a3a31 20"  # "2001:db8::1 "
    "323030313a6462383a3a6666 20"  # "2001:db8::ff "
    "3531303030 20"  # "51000 "
    "38343433 0d0a"  # "8443" CRLF
)
V1_TCP6_HEADER = ProxyHeader(1, "PROXY", "tcp", a("2001:db8::1", 51000), a("2001:db8::ff", 8443), (), 48)

V1_UNKNOWN = h("50524f585920 554e4b4e4f574e 0d0a")  # "PROXY UNKNOWN\r\n"
V1_UNKNOWN_HEADER = ProxyHeader(1, "LOCAL", "unknown", None, None, (), 15)

V2_TCP4 = h(
    SIG + "21"  # version 2, command PROXY
    "11"  # AF_INET, STREAM
    "000c"  # 12 bytes follow
    "c0000201 c6336407"  # 192.0.2.1 -> 198.51.100.7
    "dc04 01bb"  # 56324 -> 443
)
V2_TCP4_HEADER = ProxyHeader(2, "PROXY", "tcp", a("192.0.2.1", 56324), a("198.51.100.7", 443), (), 28)

V2_TCP6 = h(
    SIG + "21 21 0024"  # PROXY, AF_INET6 STREAM, 36 bytes
    "20010db8 00000000 00000000 00000001"  # 2001:db8::1
    "20010db8 00000000 00000000 00000002"  # 2001:db8::2
    "04d2 01bb"  # 1234 -> 443
)
V2_TCP6_HEADER = ProxyHeader(2, "PROXY", "tcp", a("2001:db8::1", 1234), a("2001:db8::2", 443), (), 52)

V2_UDP4 = h(
    SIG + "21 12 000c"  # PROXY, AF_INET DGRAM, 12 bytes
    "cb007105 c000020a"  # 203.0.113.5 -> 192.0.2.10
    "14e9 0035"  # 5353 -> 53
)
V2_UDP4_HEADER = ProxyHeader(2, "PROXY", "udp", a("203.0.113.5", 5353), a("192.0.2.10", 53), (), 28)

V2_UDP6 = h(
    SIG + "21 22 0024"  # PROXY, AF_INET6 DGRAM, 36 bytes
    "20010db8 00010000 00000000 00000005"  # 2001:db8:1::5
    "20010db8 00000000 00000000 00000053"  # 2001:db8::53
    "9c40 0035"  # 40000 -> 53
)
V2_UDP6_HEADER = ProxyHeader(2, "PROXY", "udp", a("2001:db8:1::5", 40000), a("2001:db8::53", 53), (), 52)

V2_LOCAL = h(SIG + "20 00 0000")  # version 2, command LOCAL, UNSPEC, no body
V2_LOCAL_HEADER = ProxyHeader(2, "LOCAL", "unknown", None, None, (), 16)

V2_TLV = h(
    SIG + "21 11 001d"  # PROXY, AF_INET STREAM, 12 + 14 + 3 = 29 bytes
    "c0000201 c6336407 dc04 01bb"  # as V2_TCP4
    "02 000b 6578616d706c652e636f6d"  # PP2_TYPE_AUTHORITY "example.com"
    "04 0000"  # PP2_TYPE_NOOP, empty
)
V2_TLV_HEADER = ProxyHeader(
    2,
    "PROXY",
    "tcp",
    a("192.0.2.1", 56324),
    a("198.51.100.7", 443),
    ((pp.PP2_TYPE_AUTHORITY, b"example.com"), (pp.PP2_TYPE_NOOP, b"")),
    45,
)

SPP_V4 = h(
    "56ec"  # magic
    "00000000 00000000 0000ffff c0000201"  # client ::ffff:192.0.2.1
    "00000000 00000000 0000ffff c6336407"  # proxy ::ffff:198.51.100.7
    "14e9 0035"  # 5353, 53
    "6869"  # payload "hi"
)
SPP_V4_HEADER = SppHeader(client=a("192.0.2.1", 5353), proxy=a("198.51.100.7", 53))

SPP_V6 = h(
    "56ec"
    "20010db8 00000000 00000000 00000001"  # client 2001:db8::1
    "20010db8 00000000 00000000 00000053"  # proxy 2001:db8::53
    "9c40 01bb"  # 40000, 443
    "00ff"  # payload
)
SPP_V6_HEADER = SppHeader(client=a("2001:db8::1", 40000), proxy=a("2001:db8::53", 443))

GOLDEN_PROXY = [
    pytest.param(V1_TCP4, V1_TCP4_HEADER, id="v1-tcp4"),
    pytest.param(V1_TCP6, V1_TCP6_HEADER, id="v1-tcp6"),
    pytest.param(V1_UNKNOWN, V1_UNKNOWN_HEADER, id="v1-unknown"),
    pytest.param(V2_TCP4, V2_TCP4_HEADER, id="v2-tcp4"),
    pytest.param(V2_TCP6, V2_TCP6_HEADER, id="v2-tcp6"),
    pytest.param(V2_UDP4, V2_UDP4_HEADER, id="v2-udp4"),
    pytest.param(V2_UDP6, V2_UDP6_HEADER, id="v2-udp6"),
    pytest.param(V2_LOCAL, V2_LOCAL_HEADER, id="v2-local"),
    pytest.param(V2_TLV, V2_TLV_HEADER, id="v2-tlv"),
]


# --- encode == golden -------------------------------------------------------------------------


def test_encode_v1_golden() -> None:
    assert encode_v1(a("192.0.2.0", 42300), a("192.0.2.255", 443)) == V1_TCP4
    assert encode_v1(a("2001:db8::1", 51000), a("2001:db8::ff", 8443)) == V1_TCP6
    assert encode_v1_unknown() == V1_UNKNOWN


def test_encode_v2_golden() -> None:
    assert encode_v2(a("192.0.2.1", 56324), a("198.51.100.7", 443)) == V2_TCP4
    assert encode_v2(a("2001:db8::1", 1234), a("2001:db8::2", 443), "tcp") == V2_TCP6
    assert encode_v2(a("203.0.113.5", 5353), a("192.0.2.10", 53), "udp") == V2_UDP4
    assert encode_v2(a("2001:db8:1::5", 40000), a("2001:db8::53", 53), transport="udp") == V2_UDP6
    assert encode_v2_local() == V2_LOCAL
    tlvs = [(pp.PP2_TYPE_AUTHORITY, b"example.com"), (pp.PP2_TYPE_NOOP, b"")]
    assert encode_v2(a("192.0.2.1", 56324), a("198.51.100.7", 443), "tcp", tlvs) == V2_TLV


@pytest.mark.parametrize(("wire", "header"), GOLDEN_PROXY)
def test_encode_header_golden(wire: bytes, header: ProxyHeader) -> None:
    """`encode(header)` (and the header forms of encode_v1/encode_v2) give the golden bytes."""
    assert encode(header) == wire
    if header.version == 1:
        assert encode_v1(header) == wire
    else:
        assert encode_v2(header) == wire


def test_encode_spp_golden() -> None:
    assert encode_spp(a("192.0.2.1", 5353), a("198.51.100.7", 53), b"hi") == SPP_V4
    assert encode_spp(a("2001:db8::1", 40000), a("2001:db8::53", 443), b"\x00\xff") == SPP_V6
    # the header-object forms used by the UDP glue
    assert encode_spp(SPP_V4_HEADER) == SPP_V4[: pp.SPP_HEADER_LEN]
    assert encode_spp(SPP_V4_HEADER, b"hi") == SPP_V4
    assert encode_spp(SPP_V6_HEADER, payload=b"\x00\xff") == SPP_V6
    # IPv4 given as an IPv4-mapped IPv6 address encodes identically
    assert encode_spp(a("::ffff:192.0.2.1", 5353), a("::ffff:198.51.100.7", 53), b"hi") == SPP_V4


def test_proxied_and_local_constructors_know_their_length() -> None:
    assert ProxyHeader.proxied(a("192.0.2.1", 56324), a("198.51.100.7", 443)) == V2_TCP4_HEADER
    assert ProxyHeader.proxied(a("203.0.113.5", 5353), a("192.0.2.10", 53), transport="udp") == V2_UDP4_HEADER
    assert ProxyHeader.proxied(a("192.0.2.0", 42300), a("192.0.2.255", 443), version=1) == V1_TCP4_HEADER
    assert ProxyHeader.local() == V2_LOCAL_HEADER
    assert ProxyHeader.local(version=1) == V1_UNKNOWN_HEADER


# --- decode(golden) == expected ---------------------------------------------------------------


@pytest.mark.parametrize(("wire", "header"), GOLDEN_PROXY)
def test_decode_golden(wire: bytes, header: ProxyHeader) -> None:
    assert header.length == len(wire)
    assert decode(wire) == header
    assert decode(bytearray(wire)) == header
    assert decode(memoryview(wire)) == header
    if header.version == 1:
        assert pp.decode_v1(wire) == header
    else:
        assert pp.decode_v2(wire) == header


@pytest.mark.parametrize(
    ("wire", "header", "payload"),
    [(SPP_V4, SPP_V4_HEADER, b"hi"), (SPP_V6, SPP_V6_HEADER, b"\x00\xff")],
    ids=["spp-v4-mapped", "spp-v6"],
)
def test_decode_spp_golden(wire: bytes, header: SppHeader, payload: bytes) -> None:
    assert decode_spp(wire) == (header, payload)
    assert decode_spp(memoryview(wire)) == (header, payload)
    got, _ = decode_spp(wire)
    assert isinstance(got.client[0], type(header.client[0]))  # mapped comes back as IPv4Address


def test_decode_spp_header_only_and_empty_payload() -> None:
    assert decode_spp(SPP_V4[:38]) == (SPP_V4_HEADER, b"")


# --- incremental feeding ----------------------------------------------------------------------


@pytest.mark.parametrize(("wire", "header"), GOLDEN_PROXY)
def test_every_prefix_needs_more_data(wire: bytes, header: ProxyHeader) -> None:
    for n in range(len(wire)):
        assert decode(wire[:n]) is NEED_MORE_DATA, n
    assert decode(wire) == header


@pytest.mark.parametrize(("wire", "header"), GOLDEN_PROXY)
def test_byte_at_a_time_feeding(wire: bytes, header: ProxyHeader) -> None:
    """A caller that appends one byte at a time and retries sees exactly one header."""
    payload = b"GET / HTTP/1.1\r\n\r\n"
    stream = wire + payload
    buf = bytearray()
    result: ProxyHeader | NeedMoreData = NEED_MORE_DATA
    fed = 0
    while result is NEED_MORE_DATA:
        buf.append(stream[fed])
        fed += 1
        result = decode(buf)
    assert result == header
    assert fed == len(wire)
    assert isinstance(result, ProxyHeader)
    assert stream[result.length :] == payload


@pytest.mark.parametrize(("wire", "header"), GOLDEN_PROXY)
def test_split_at_every_offset(wire: bytes, header: ProxyHeader) -> None:
    """Two reads split anywhere: the first never yields a header early, the joined one does,
    and `length` leaves the trailing payload untouched."""
    payload = b"\r\n\r\nPROXY \x00payload"
    stream = wire + payload
    for cut in range(len(stream) + 1):
        first = decode(stream[:cut])
        if cut < len(wire):
            assert first is NEED_MORE_DATA, cut
        else:
            assert first == header, cut
        joined = decode(stream[:cut] + stream[cut:])
        assert joined == header
        assert isinstance(joined, ProxyHeader)
        assert stream[joined.length :] == payload


def test_v1_longest_lines_are_accepted() -> None:
    ip = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe"
    tcp6 = f"PROXY TCP6 {ip} {ip} 65535 65535\r\n".encode()
    assert len(tcp6) == 104
    header = decode(tcp6)
    assert isinstance(header, ProxyHeader)
    assert header.src == a(ip, 65535)
    # haproxy's worst case: UNKNOWN followed by a full TCP6-like tail is exactly 107 bytes
    unknown = f"PROXY UNKNOWN {ip} {ip} 65535 65535\r\n".encode()
    assert len(unknown) == pp.V1_MAX_LEN == 107
    assert decode(unknown) == ProxyHeader(1, "LOCAL", "unknown", None, None, (), 107)


def test_v1_unknown_ignores_rest_of_line() -> None:
    line = b"PROXY UNKNOWN ffff::1 whatever 1 2\r\n"
    assert decode(line + b"data") == ProxyHeader(1, "LOCAL", "unknown", None, None, (), len(line))


def test_v1_accepts_uppercase_and_mapped_dotted_ipv6() -> None:
    header = decode(b"PROXY TCP6 2001:DB8::1 ::ffff:192.0.2.1 1 2\r\n")
    assert isinstance(header, ProxyHeader)
    assert header.src == a("2001:db8::1", 1)
    assert header.dst == a("::ffff:192.0.2.1", 2)


def test_v2_unspec_family_with_proxy_command_has_no_addresses() -> None:
    wire = h(SIG + "21 00 0003 aabbcc")  # the block is ignored for AF_UNSPEC
    assert decode(wire) == ProxyHeader(2, "PROXY", "unknown", None, None, (), 19)


def test_v2_local_discards_block_and_family() -> None:
    wire = h(SIG + "20 11 000c c0000201 c6336407 dc04 01bb")
    assert decode(wire + b"x") == ProxyHeader(2, "LOCAL", "unknown", None, None, (), 28)


# --- invalid inputs ---------------------------------------------------------------------------

INVALID = [
    # v2
    pytest.param(h("0d0a0d0a000d0a515549540b"), id="v2-bad-signature-last-byte"),
    pytest.param(h("0d0a0d0b"), id="v2-bad-signature-early"),
    pytest.param(h(SIG + "11 11 000c") + bytes(12), id="v2-version-nibble-1"),
    pytest.param(h(SIG + "31"), id="v2-version-nibble-3"),
    pytest.param(h(SIG + "22"), id="v2-command-2"),
    pytest.param(h(SIG + "21 41"), id="v2-family-4"),
    pytest.param(h(SIG + "21 13"), id="v2-transport-3"),
    pytest.param(h(SIG + "21 01"), id="v2-unspec-family-with-stream"),
    pytest.param(h(SIG + "21 10"), id="v2-inet-unspec-transport-byte-not-defined"),
    pytest.param(h(SIG + "21 31 00d8"), id="v2-af-unix-refused"),
    pytest.param(h(SIG + "21 11 000b"), id="v2-length-shorter-than-ipv4-block"),
    pytest.param(h(SIG + "21 21 0023"), id="v2-length-shorter-than-ipv6-block"),
    pytest.param(h(SIG + "21 11 000e c0000201 c6336407 dc04 01bb 02 00"), id="v2-truncated-tlv-header"),
    pytest.param(h(SIG + "21 11 0010 c0000201 c6336407 dc04 01bb 02 0005 41"), id="v2-tlv-past-end"),
    # neither
    pytest.param(b"GET / HTTP/1.1\r\n", id="http-request"),
    pytest.param(b"\x16\x03\x01", id="tls-client-hello"),
    pytest.param(b"\x00", id="nul"),
    pytest.param(b"proxy TCP4 1.2.3.4 1.2.3.4 1 2\r\n", id="v1-lowercase-signature"),
    # v1
    pytest.param(b"PROXX", id="v1-bad-signature-prefix"),
    pytest.param(b"PROXYTCP4", id="v1-no-space-after-proxy"),
    pytest.param(b"PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n", id="v1-two-spaces-after-proxy"),
    pytest.param(b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", id="v1-two-spaces-before-src"),
    pytest.param(b"PROXY TCP4 1.2.3.4 5.6.7.8 1  2\r\n", id="v1-two-spaces-before-dport"),
    pytest.param(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", id="v1-trailing-space"),
    pytest.param(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", id="v1-too-many-fields"),
    pytest.param(b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", id="v1-too-few-fields"),
    pytest.param(b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", id="v1-protocol-tcp5"),
    pytest.param(b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", id="v1-protocol-udp4"),
    pytest.param(b"PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", id="v1-protocol-lowercase"),
    pytest.param(b"PROXY UNKNOWNX\r\n", id="v1-unknown-with-suffix"),
    pytest.param(b"PROXY\r\n", id="v1-no-protocol"),
    pytest.param(b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", id="v1-ipv4-leading-zero"),
    pytest.param(b"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", id="v1-ipv4-three-octets"),
    pytest.param(b"PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n", id="v1-ipv4-octet-256"),
    pytest.param(b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", id="v1-port-leading-zero"),
    pytest.param(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 00\r\n", id="v1-port-double-zero"),
    pytest.param(b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", id="v1-port-65536"),
    pytest.param(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 100000\r\n", id="v1-port-six-digits"),
    pytest.param(b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n", id="v1-port-plus-sign"),
    pytest.param(b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", id="v1-port-negative"),
    pytest.param(b"PROXY TCP4 1.2.3.4 5.6.7.8 0x10 2\r\n", id="v1-port-hex"),
    pytest.param(b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n", id="v1-ipv6-in-tcp4"),
    pytest.param(b"PROXY TCP4 1.2.3.4 ::1 1 2\r\n", id="v1-ipv6-dst-in-tcp4"),
    pytest.param(b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", id="v1-ipv4-in-tcp6"),
    pytest.param(b"PROXY TCP6 ::1 ::0001 1 2\r\n", id="v1-ipv6-not-canonical-zeros"),
    pytest.param(b"PROXY TCP6 0:0:0:0:0:0:0:1 ::1 1 2\r\n", id="v1-ipv6-not-compressed"),
    pytest.param(b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", id="v1-ipv6-zone"),
    pytest.param(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", id="v1-lf-only"),
    pytest.param(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX", id="v1-cr-without-lf"),
    pytest.param(b"PROXY TCP4 1.2.3.4\r5.6.7.8 1 2\r\n", id="v1-stray-cr"),
    pytest.param(b"PROXY TCP4 1.2.3.4 5.6.7.8 \xff 2\r\n", id="v1-non-ascii"),
    pytest.param(b"PROXY UNKNOWN " + b"x" * 100, id="v1-no-crlf-within-107"),
    pytest.param(b"PROXY UNKNOWN " + b"x" * 92 + b"\r\n", id="v1-crlf-ends-at-byte-108"),
]


@pytest.mark.parametrize("data", INVALID)
def test_invalid_inputs_raise(data: bytes) -> None:
    with pytest.raises(ProxyProtocolError):
        decode(data)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"G", id="first-byte"),
        pytest.param(b"PROXY  ", id="double-space-after-proxy"),
        pytest.param(b"PROXY TCP4 1.2.3.4 ::", id="colon-in-tcp4-address"),
        pytest.param(b"PROXY TCP4 1.2.3.4 5.6.7.8 01", id="port-leading-zero"),
        pytest.param(b"PROXY TCP4 1.2.3.4 5.6.7.8 65536", id="port-over-65535"),
        pytest.param(b"PROXY TCP7", id="protocol"),
        pytest.param(h(SIG + "12"), id="v2-version"),
        pytest.param(h(SIG + "21 51"), id="v2-family"),
        pytest.param(h("0d0a0d0a00") + b"X", id="v2-signature"),
    ],
)
def test_garbage_is_refused_as_soon_as_provable(data: bytes) -> None:
    """Refusal does not wait for CRLF or the full length when the prefix already proves it."""
    with pytest.raises(ProxyProtocolError):
        decode(data)


@pytest.mark.parametrize(
    "data",
    [
        b"PROXY TCP4 1.2.3.4 5.6.7.8 0",  # "0" is a whole port if a space or CRLF follows
        b"PROXY TCP4 1.2.3.4 5.6.7.8 6553",  # could still become 65535
        b"PROXY TCP6 ::ffff:1.2.3.4",  # dotted tail allowed for IPv4-mapped
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r",  # CR, LF may follow
        b"PROXY UNKNOWN anything at all",
    ],
)
def test_valid_prefixes_need_more_data(data: bytes) -> None:
    assert decode(data) is NEED_MORE_DATA


def test_v1_final_cr_judges_the_line() -> None:
    assert decode(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r") is NEED_MORE_DATA
    with pytest.raises(ProxyProtocolError):
        decode(b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r")


def test_v1_needs_more_data_up_to_106_bytes_without_crlf() -> None:
    assert decode(b"PROXY UNKNOWN " + b"x" * 92) is NEED_MORE_DATA  # 106 bytes
    with pytest.raises(ProxyProtocolError, match="107"):
        decode(b"PROXY UNKNOWN " + b"x" * 93)  # 107 bytes, no CRLF


@pytest.mark.parametrize(
    "datagram",
    [
        pytest.param(b"", id="empty"),
        pytest.param(SPP_V4[:37], id="37-bytes"),
        pytest.param(b"\x56\xed" + SPP_V4[2:], id="bad-magic"),
        pytest.param(b"\xec\x56" + SPP_V4[2:], id="magic-little-endian"),
    ],
)
def test_decode_spp_invalid(datagram: bytes) -> None:
    with pytest.raises(ProxyProtocolError):
        decode_spp(datagram)


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda: encode_v1(a("1.2.3.4", 1), a("::1", 2)), id="v1-mixed-families"),
        pytest.param(lambda: encode_v1(a("1.2.3.4", 65536), a("1.2.3.4", 2)), id="v1-port-65536"),
        pytest.param(lambda: encode_v1(a("1.2.3.4", -1), a("1.2.3.4", 2)), id="v1-port-negative"),
        pytest.param(lambda: encode_v1((IPv6Address("fe80::1%eth0"), 1), a("::1", 2)), id="v1-zone"),
        pytest.param(lambda: encode_v1(("1.2.3.4", 1), a("1.2.3.4", 2)), id="v1-string-address"),  # type: ignore[arg-type]
        pytest.param(lambda: encode_v2(a("::1", 1), a("1.2.3.4", 2)), id="v2-mixed-families"),
        pytest.param(lambda: encode_v2(a("1.2.3.4", 1), a("1.2.3.4", 2), "sctp"), id="v2-transport"),
        pytest.param(lambda: encode_v2(a("1.2.3.4", 1), a("1.2.3.4", 2), "tcp", [(256, b"")]), id="v2-tlv-type"),
        pytest.param(
            lambda: encode_v2(a("1.2.3.4", 1), a("1.2.3.4", 2), "tcp", [(0xE0, bytes(0xFFF1))]), id="v2-body-too-long"
        ),
        pytest.param(lambda: encode_spp(a("1.2.3.4", 70000), a("1.2.3.4", 2)), id="spp-port"),
        pytest.param(
            lambda: ProxyHeader.proxied(a("1.2.3.4", 1), a("1.2.3.4", 2), version=1, transport="udp"), id="v1-udp"
        ),
        pytest.param(lambda: encode(ProxyHeader(3, "PROXY", "tcp", None, None)), id="version-3"),
    ],
)
def test_encoders_refuse_what_the_wire_cannot_carry(call: object) -> None:
    assert callable(call)
    with pytest.raises(ProxyProtocolError):
        call()


# --- sniffing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("wire", "header"), GOLDEN_PROXY)
def test_looks_like_proxy_header_on_every_prefix(wire: bytes, header: ProxyHeader) -> None:
    for n in range(1, min(len(wire), 16) + 1):
        assert looks_like_proxy_header(wire[:n]), n


@pytest.mark.parametrize(
    "data", [b"", b"GET / HTTP/1.1", b"\x16\x03\x01\x02\x00", b"PROXX", SPP_V4[:16], h(SIG + "11")]
)
def test_looks_like_proxy_header_rejects(data: bytes) -> None:
    assert not looks_like_proxy_header(data)


# --- properties -------------------------------------------------------------------------------

ports = st.integers(0, 65535)
v4 = st.tuples(st.ip_addresses(v=4), ports)
v6 = st.tuples(st.ip_addresses(v=6), ports)
pairs = st.one_of(st.tuples(v4, v4), st.tuples(v6, v6))
tlv_lists = st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=40)), max_size=4)


@FAST
@given(pairs, st.binary(max_size=20))
def test_v1_round_trip(pair: tuple[pp.Address, pp.Address], payload: bytes) -> None:
    src, dst = pair
    wire = encode_v1(src, dst)
    assert len(wire) <= pp.V1_MAX_LEN
    header = decode(wire + payload)
    assert header == ProxyHeader(1, "PROXY", "tcp", src, dst, (), len(wire))


@FAST
@given(pairs, st.sampled_from(["tcp", "udp"]), tlv_lists, st.binary(max_size=20))
def test_v2_round_trip(
    pair: tuple[pp.Address, pp.Address], transport: str, tlvs: list[tuple[int, bytes]], payload: bytes
) -> None:
    src, dst = pair
    wire = encode_v2(src, dst, transport, tlvs)
    assert decode(wire + payload) == ProxyHeader(2, "PROXY", transport, src, dst, tuple(tlvs), len(wire))
    assert ProxyHeader.proxied(src, dst, transport=transport, tlvs=tlvs) == decode(wire)


def _unmapped(ip: IPv4Address | IPv6Address) -> IPv4Address | IPv6Address:
    return ip.ipv4_mapped if isinstance(ip, IPv6Address) and ip.ipv4_mapped is not None else ip


@FAST
@given(st.one_of(v4, v6), st.one_of(v4, v6), st.binary(max_size=64))
def test_spp_round_trip(client: pp.Address, proxy: pp.Address, payload: bytes) -> None:
    wire = encode_spp(client, proxy, payload)
    assert len(wire) == pp.SPP_HEADER_LEN + len(payload)
    header, got = decode_spp(wire)
    assert got == payload
    assert header.client == (_unmapped(client[0]), client[1])
    assert header.proxy == (_unmapped(proxy[0]), proxy[1])


v1_alphabet = st.sampled_from([*b"PROXY TCP46UNKW0123456789abcdef:.\r\n", 0xFF])
fuzz_inputs = st.one_of(
    st.binary(max_size=140),
    st.binary(max_size=140).map(lambda b: pp.V2_SIGNATURE + b),
    st.binary(max_size=60).map(lambda b: h(SIG + "21") + b),
    st.lists(v1_alphabet, max_size=120).map(lambda xs: b"PROXY " + bytes(xs)),
    st.lists(v1_alphabet, max_size=60).map(lambda xs: b"PROXY TCP4 " + bytes(xs)),
    st.lists(v1_alphabet, max_size=90).map(lambda xs: b"PROXY TCP6 " + bytes(xs)),
)


def _outcome(data: bytes) -> ProxyHeader | NeedMoreData | ProxyProtocolError:
    try:
        result = decode(data)
    except ProxyProtocolError as e:
        return e
    assert result is NEED_MORE_DATA or isinstance(result, ProxyHeader)
    return result


@FAST
@given(fuzz_inputs)
def test_fuzz_decode_only_three_outcomes_and_they_are_consistent(data: bytes) -> None:
    """Over all prefixes: need-more-data, then (maybe) one header that stays the same or an
    error that stays an error; a header's own bytes decode to it and one byte less does not."""
    outcomes = [_outcome(data[:n]) for n in range(len(data) + 1)]
    settled: ProxyHeader | ProxyProtocolError | None = None
    for n, got in enumerate(outcomes):
        if settled is None:
            if not isinstance(got, NeedMoreData):
                settled = got
            continue
        if isinstance(settled, ProxyProtocolError):
            assert isinstance(got, ProxyProtocolError), (n, data[:n])
        else:
            assert got == settled, (n, data[:n])
    if isinstance(settled, ProxyHeader):
        assert decode(data[: settled.length]) == settled
        assert decode(data[: settled.length - 1]) is NEED_MORE_DATA
        assert looks_like_proxy_header(data[:16])


@FAST
@given(st.one_of(st.binary(max_size=80), st.binary(max_size=80).map(lambda b: b"\x56\xec" + b)))
def test_fuzz_decode_spp(datagram: bytes) -> None:
    try:
        header, payload = decode_spp(datagram)
    except ProxyProtocolError:
        assert len(datagram) < pp.SPP_HEADER_LEN or datagram[:2] != b"\x56\xec"
        return
    assert payload == datagram[pp.SPP_HEADER_LEN :]
    assert encode_spp(header, payload) == datagram  # mapped <-> IPv4 is lossless on the wire


def test_need_more_data_is_a_singleton_that_narrows() -> None:
    assert list(NeedMoreData) == [NEED_MORE_DATA]
    assert repr(NEED_MORE_DATA) == "NEED_MORE_DATA"
    result = decode(V2_TCP4)
    if result is NEED_MORE_DATA:
        pytest.fail("whole header")
    assert result.length == 28  # mypy --strict accepts this: `is` narrowed the union
