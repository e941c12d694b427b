"""PROXY protocol v1/v2 and Simple Proxy Protocol (SPP), sans-IO (reference 3).

Parsers follow h11's three-way contract and nothing else escapes them:

* return a value (`ProxyHeader`, or `(SppHeader, payload)` for SPP);
* return the singleton `NEED_MORE_DATA` (the only instance of `NeedMoreData`) while the bytes
  so far are a valid proper prefix of a header; parsers keep no state, so the caller reads
  more and calls again with the whole buffer;
* raise `ProxyProtocolError` as soon as the input provably cannot start a valid header.

Test the result with `result is NEED_MORE_DATA` or `isinstance(result, ProxyHeader)`.
`ProxyHeader.length` is how many leading bytes the header occupied; the payload follows it.

Encoders raise `ProxyProtocolError` too when the values cannot go on the wire (mixed address
families, a port outside 0-65535, an unknown transport, more than 65535 bytes of TLVs).

Addresses are `ipaddress` objects throughout; text exists only on the v1 wire.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import AddressValueError, IPv4Address, IPv6Address
from typing import Final, overload

__all__ = [
    "NEED_MORE_DATA",
    "PP2_TYPE_ALPN",
    "PP2_TYPE_AUTHORITY",
    "PP2_TYPE_CRC32C",
    "PP2_TYPE_NETNS",
    "PP2_TYPE_NOOP",
    "PP2_TYPE_SSL",
    "PP2_TYPE_UNIQUE_ID",
    "SPP_HEADER_LEN",
    "SPP_MAGIC",
    "V1_MAX_LEN",
    "V2_HEADER_LEN",
    "V2_SIGNATURE",
    "Address",
    "IPAddress",
    "NeedMoreData",
    "ProxyHeader",
    "ProxyProtocolError",
    "SppHeader",
    "decode",
    "decode_spp",
    "decode_v1",
    "decode_v2",
    "encode",
    "encode_spp",
    "encode_v1",
    "encode_v1_unknown",
    "encode_v2",
    "encode_v2_local",
    "looks_like_proxy_header",
]

IPAddress = IPv4Address | IPv6Address
Address = tuple[IPv4Address | IPv6Address, int]
TLV = tuple[int, bytes]
Buffer = bytes | bytearray | memoryview


class ProxyProtocolError(Exception):
    """The only error of this module: the bytes are not a valid header, or the values given to
    an encoder cannot be put on the wire. The message says what is wrong."""


class NeedMoreData(enum.Enum):
    """Type of `NEED_MORE_DATA`: the input is a valid proper prefix of a header.

    A one-member Enum (the PEP 484 sentinel idiom) so that `if result is NEED_MORE_DATA:`
    narrows `ProxyHeader | NeedMoreData` to `ProxyHeader` for type checkers."""

    NEED_MORE_DATA = "NEED_MORE_DATA"

    def __repr__(self) -> str:
        return "NEED_MORE_DATA"


NEED_MORE_DATA: Final = NeedMoreData.NEED_MORE_DATA

# --- PROXY v1 (reference 3.3) ---------------------------------------------------------------

# 107 bytes including CRLF is the longest v1 line haproxy allows for ("PROXY UNKNOWN" followed
# by two 39-character IPv6 addresses and two 5-digit ports); a receiver must find CRLF within
# them. The longest TCP6 line is 104.
V1_MAX_LEN: Final = 107
_V1_PROTOCOLS: Final = (b"TCP4", b"TCP6", b"UNKNOWN")
# Longest address texts, to refuse a partial address early: "255.255.255.255" and
# "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255" (IPv6 with a dotted IPv4 tail).
_V1_MAX_V4_TEXT: Final = 15
_V1_MAX_V6_TEXT: Final = 45
_V4_CHARS: Final = frozenset(b"0123456789.")
_V6_CHARS: Final = frozenset(b"0123456789abcdefABCDEF:.")
_DIGITS: Final = frozenset(b"0123456789")
_PORT_DIGITS_MAX: Final = 5  # "65535"

# --- PROXY v2 (reference 3.4) ---------------------------------------------------------------

V2_SIGNATURE: Final = b"\r\n\r\n\x00\r\nQUIT\n"
V2_HEADER_LEN: Final = 16  # signature(12) + version/command(1) + family/transport(1) + length(2)
_V2_VERSION: Final = 0x2
_V2_CMD_LOCAL: Final = 0x0
_V2_CMD_PROXY: Final = 0x1
_V2_AF_UNSPEC: Final = 0x0
_V2_AF_INET: Final = 0x1
_V2_AF_INET6: Final = 0x2
_V2_AF_UNIX: Final = 0x3
_V2_TRANSPORT_NAMES: Final = {0x0: "unknown", 0x1: "tcp", 0x2: "udp"}
_V2_TRANSPORT_CODES: Final = {"tcp": 0x1, "udp": 0x2}
# The only family/transport bytes the spec defines; "other values ... must be rejected as
# invalid by receivers" (haproxy proxy-protocol.txt 2.2).
_V2_VALID_FAMILY_BYTES: Final = frozenset({0x00, 0x11, 0x12, 0x21, 0x22, 0x31, 0x32})
# Address block per family: src addr + dst addr + src port + dst port (UNIX: two 108-byte paths).
_V2_ADDR_LEN: Final = {_V2_AF_UNSPEC: 0, _V2_AF_INET: 12, _V2_AF_INET6: 36, _V2_AF_UNIX: 216}
_V2_MAX_BODY: Final = 0xFFFF  # the length field is 16 bits
_TLV_HEADER_LEN: Final = 3  # type(1) + length(2, BE)

PP2_TYPE_ALPN: Final = 0x01
PP2_TYPE_AUTHORITY: Final = 0x02
PP2_TYPE_CRC32C: Final = 0x03
PP2_TYPE_NOOP: Final = 0x04
PP2_TYPE_UNIQUE_ID: Final = 0x05
PP2_TYPE_SSL: Final = 0x20
PP2_TYPE_NETNS: Final = 0x30

# --- SPP (reference 3.2) --------------------------------------------------------------------

SPP_MAGIC: Final = 0x56EC
SPP_HEADER_LEN: Final = 38
_SPP: Final = struct.Struct("!H16s16sHH")  # magic, client addr, proxy addr, client port, proxy port
# IPv4 travels as an IPv4-mapped IPv6 address (RFC 4291 2.5.5.2): ten zero bytes, then 0xffff.
_V4_MAPPED_PREFIX: Final = b"\x00" * 10 + b"\xff\xff"

_PORT_MAX: Final = 0xFFFF


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """A decoded (or to-be-encoded) PROXY header.

    `command` is "PROXY" or "LOCAL"; v1 `UNKNOWN` decodes as "LOCAL" too (both mean "use the
    real connection endpoints"). `transport` is "tcp", "udp" or "unknown". `src`/`dst` are
    None exactly when the header carries no addresses (LOCAL, UNKNOWN, v2 AF_UNSPEC).
    `length` is the number of bytes the header occupies on the wire.
    """

    version: int
    command: str
    transport: str
    src: Address | None
    dst: Address | None
    tlvs: tuple[TLV, ...] = ()
    length: int = 0

    @classmethod
    def proxied(
        cls,
        src: Address,
        dst: Address,
        *,
        transport: str = "tcp",
        version: int = 2,
        tlvs: Iterable[TLV] = (),
    ) -> ProxyHeader:
        """A PROXY-command header for src -> dst, `length` set to its encoded size (so it
        equals what `decode(encode(header))` returns). Raises ProxyProtocolError for anything
        the encoders refuse (v1 carries neither UDP nor TLVs)."""
        tlv_tuple = tuple((kind, bytes(value)) for kind, value in tlvs)
        header = cls(version, "PROXY", transport, src, dst, tlv_tuple)
        return cls(version, "PROXY", transport, src, dst, tlv_tuple, len(encode(header)))

    @classmethod
    def local(cls, *, version: int = 2) -> ProxyHeader:
        """A LOCAL (v2) or UNKNOWN (v1) header, `length` set to its encoded size."""
        header = cls(version, "LOCAL", "unknown", None, None)
        return cls(version, "LOCAL", "unknown", None, None, (), len(encode(header)))


@dataclass(frozen=True, slots=True)
class SppHeader:
    """The 38-byte SPP header: `client` is the UDP client, `proxy` the Spectrum address and
    port the datagram was sent to. Decoded IPv4-mapped addresses come back as IPv4Address."""

    client: Address
    proxy: Address


# === validation helpers ======================================================================


def _check_address(addr: Address, what: str) -> Address:
    try:
        ip, port = addr
    except (TypeError, ValueError):
        raise ProxyProtocolError(f"{what} must be an (ip, port) pair, got {addr!r}") from None
    if not isinstance(ip, IPv4Address | IPv6Address):
        raise ProxyProtocolError(f"{what} address must be an IPv4Address or IPv6Address, got {ip!r}")
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= _PORT_MAX:
        raise ProxyProtocolError(f"{what} port must be an integer in 0-65535, got {port!r}")
    return ip, port


def _check_pair(src: Address, dst: Address) -> tuple[IPAddress, int, IPAddress, int]:
    src_ip, src_port = _check_address(src, "source")
    dst_ip, dst_port = _check_address(dst, "destination")
    if src_ip.version != dst_ip.version:
        raise ProxyProtocolError(
            f"source and destination are of different families (IPv{src_ip.version} and IPv{dst_ip.version})"
        )
    return src_ip, src_port, dst_ip, dst_port


def _as_bytes(data: Buffer, limit: int | None = None) -> bytes:
    view = data if limit is None else data[:limit]
    return view if isinstance(view, bytes) else bytes(view)


# === sniff and decode ========================================================================


def looks_like_proxy_header(prefix: Buffer) -> bool:
    """True when `prefix` could be the start of a PROXY v1 or v2 header: a cheap sniff that
    checks the signature (and the v2 version nibble), nothing more; False when empty.
    `decode` has the final word."""
    head = _as_bytes(prefix, V2_HEADER_LEN)
    if not head:
        return False
    if head[0] == V2_SIGNATURE[0]:
        n = min(len(head), len(V2_SIGNATURE))
        if head[:n] != V2_SIGNATURE[:n]:
            return False
        return len(head) == n or head[n] >> 4 == _V2_VERSION
    n = min(len(head), 6)
    return head[:n] == b"PROXY "[:n]


def decode(data: Buffer) -> ProxyHeader | NeedMoreData:
    """Decode the PROXY v1 or v2 header at the start of `data` (detection as reference 3.4:
    the first byte tells the versions apart).

    Returns the header, or NEED_MORE_DATA while `data` is a valid proper prefix of one, and
    raises ProxyProtocolError as soon as `data` cannot start a valid header. Bytes after
    `ProxyHeader.length` are payload and are not looked at."""
    if len(data) == 0:
        return NEED_MORE_DATA
    first = data[0]
    if first == V2_SIGNATURE[0]:
        return decode_v2(data)
    if first == ord("P"):
        return decode_v1(data)
    raise ProxyProtocolError(f"not a PROXY protocol header (first byte 0x{first:02x})")


# --- v1 ---------------------------------------------------------------------------------------


def decode_v1(data: Buffer) -> ProxyHeader | NeedMoreData:
    """Decode a PROXY v1 line (reference 3.3) at the start of `data`; contract as `decode`.

    Strict grammar: `PROXY SP (TCP4|TCP6) SP src SP dst SP sport SP dport CRLF`, or
    `PROXY SP UNKNOWN [SP anything] CRLF`. Exactly one space between tokens; ports decimal
    0-65535 without leading zeros; IPv4 as four dotted decimals without leading zeros; IPv6
    in RFC 5952 text (any case) or `::ffff:a.b.c.d` when IPv4-mapped, never with a %zone;
    the protocol token matches both families; CRLF ends within the first 107 bytes. A
    partial line is checked as far as it goes, so garbage is refused before its CRLF."""
    head = _as_bytes(data, V1_MAX_LEN)
    end = head.find(b"\r\n")
    if end < 0:
        if b"\n" in head:
            raise ProxyProtocolError("PROXY v1 line contains LF without CR")
        cr = head.find(b"\r")
        if cr >= 0 and cr != len(head) - 1:
            raise ProxyProtocolError("PROXY v1 line contains CR not followed by LF")
        if len(head) >= V1_MAX_LEN:
            raise ProxyProtocolError(f"PROXY v1 line has no CRLF within the first {V1_MAX_LEN} bytes")
        if cr >= 0:
            # A final CR: if LF follows, the line is exactly what precedes the CR, so judge
            # it in full now; if anything else follows, the line is invalid anyway.
            _parse_v1_line(head[:cr], complete=True)
        else:
            _parse_v1_line(head, complete=False)
        return NEED_MORE_DATA
    line = head[:end]
    if b"\r" in line or b"\n" in line:
        raise ProxyProtocolError("PROXY v1 line contains a stray CR or LF")
    parsed = _parse_v1_line(line, complete=True)
    if parsed is None:  # unreachable: a complete line is either parsed or refused
        raise ProxyProtocolError("PROXY v1 line is incomplete")
    proto, src, dst = parsed
    if proto == b"UNKNOWN":
        return ProxyHeader(1, "LOCAL", "unknown", None, None, (), end + 2)
    return ProxyHeader(1, "PROXY", "tcp", src, dst, (), end + 2)


def _parse_v1_line(line: bytes, *, complete: bool) -> tuple[bytes, Address | None, Address | None] | None:
    """Check a v1 line without its CRLF and return (protocol, src, dst). With complete=False
    `line` is only a prefix (its last token may be partial): raise if no continuation can be
    valid, else return None."""
    tokens = line.split(b" ")
    last = len(tokens) - 1

    def whole(i: int) -> bool:
        return complete or i < last

    if whole(0):
        if tokens[0] != b"PROXY":
            raise ProxyProtocolError("PROXY v1 line does not start with 'PROXY '")
    elif not b"PROXY".startswith(tokens[0]):
        raise ProxyProtocolError("not a PROXY protocol header (bad v1 signature)")
    if len(tokens) == 1:
        if complete:
            raise ProxyProtocolError("PROXY v1 line has no protocol")
        return None

    proto = tokens[1]
    if whole(1):
        if not proto:
            raise ProxyProtocolError("PROXY v1 fields must be separated by exactly one space")
        if proto not in _V1_PROTOCOLS:
            raise ProxyProtocolError(f"PROXY v1 protocol must be TCP4, TCP6 or UNKNOWN, got {proto!r}")
        if proto == b"UNKNOWN":
            # "the receiver must ignore anything presented before the CRLF" (haproxy 2.1).
            return (proto, None, None) if complete else None
    elif not any(p.startswith(proto) for p in _V1_PROTOCOLS):
        raise ProxyProtocolError(f"PROXY v1 protocol must be TCP4, TCP6 or UNKNOWN, got {proto!r}...")
    if len(tokens) > 6:
        raise ProxyProtocolError("PROXY v1 line has too many fields")
    if complete and len(tokens) < 6:
        raise ProxyProtocolError(f"PROXY v1 line has {len(tokens)} fields, expected 6")

    ips: list[IPAddress] = []
    for i in range(2, min(len(tokens), 4)):
        if whole(i):
            ips.append(_parse_v1_ip(tokens[i], proto))
        else:
            _check_partial_v1_ip(tokens[i], proto)
    ports: list[int] = []
    for i in range(4, len(tokens)):
        if whole(i):
            ports.append(_parse_v1_port(tokens[i]))
        else:
            _check_partial_v1_port(tokens[i])
    if not complete:
        return None
    return proto, (ips[0], ports[0]), (ips[1], ports[1])


def _parse_v1_ip(text: bytes, proto: bytes) -> IPAddress:
    if not text:
        raise ProxyProtocolError("PROXY v1 fields must be separated by exactly one space")
    try:
        s = text.decode("ascii")
    except UnicodeDecodeError:
        raise ProxyProtocolError(f"PROXY v1 address {text!r} is not ASCII") from None
    family = proto.decode()
    try:
        if proto == b"TCP4":
            ip4 = IPv4Address(s)
            if str(ip4) != s:
                raise ProxyProtocolError(f"PROXY v1 address {s!r} is not in canonical form ({ip4})")
            return ip4
        ip6 = IPv6Address(s)
    except AddressValueError:
        raise ProxyProtocolError(f"PROXY v1 address {s!r} is not a valid {family} address") from None
    low = s.lower()
    mapped = ip6.ipv4_mapped
    if ip6.scope_id is not None or (low != str(ip6) and (mapped is None or low != f"::ffff:{mapped}")):
        raise ProxyProtocolError(f"PROXY v1 address {s!r} is not in canonical form ({ip6})")
    return ip6


def _check_partial_v1_ip(text: bytes, proto: bytes) -> None:
    if proto == b"TCP4":
        chars, limit = _V4_CHARS, _V1_MAX_V4_TEXT
    elif proto == b"TCP6":
        chars, limit = _V6_CHARS, _V1_MAX_V6_TEXT
    else:  # unreachable: a field can only follow a whole protocol token
        raise ProxyProtocolError("PROXY v1 protocol token is incomplete")
    if len(text) > limit or not chars.issuperset(text):
        raise ProxyProtocolError(f"PROXY v1 address {text!r}... cannot be a {proto.decode()} address")


def _parse_v1_port(text: bytes) -> int:
    if not text:
        raise ProxyProtocolError("PROXY v1 fields must be separated by exactly one space")
    _check_partial_v1_port(text)
    port = int(text)
    if port > _PORT_MAX:
        raise ProxyProtocolError(f"PROXY v1 port {port} is out of range 0-65535")
    return port


def _check_partial_v1_port(text: bytes) -> None:
    if not _DIGITS.issuperset(text):
        raise ProxyProtocolError(f"PROXY v1 port {text!r} is not a decimal number")
    if len(text) > 1 and text[0] == ord("0"):
        raise ProxyProtocolError(f"PROXY v1 port {text!r} has a leading zero")
    if len(text) > _PORT_DIGITS_MAX or (len(text) == _PORT_DIGITS_MAX and int(text) > _PORT_MAX):
        raise ProxyProtocolError(f"PROXY v1 port {text!r} is out of range 0-65535")


# --- v2 ---------------------------------------------------------------------------------------


def decode_v2(data: Buffer) -> ProxyHeader | NeedMoreData:
    """Decode a PROXY v2 header (reference 3.4) at the start of `data`; contract as `decode`.

    Accepts command LOCAL (address block and family byte ignored, src/dst None, transport
    "unknown") and command PROXY with AF_UNSPEC (src/dst None, block ignored) or AF_INET /
    AF_INET6 over STREAM ("tcp"), DGRAM ("udp") or UNSPEC ("unknown"). AF_UNIX is refused:
    Spectrum never sends it and ProxyHeader has no place for paths. TLVs after the address
    block come back in wire order; a truncated TLV is an error. Every field is checked as
    soon as its byte arrives."""
    head = _as_bytes(data, V2_HEADER_LEN)
    n = min(len(head), len(V2_SIGNATURE))
    if head[:n] != V2_SIGNATURE[:n]:
        raise ProxyProtocolError("not a PROXY protocol header (bad v2 signature)")
    if len(head) == n:
        return NEED_MORE_DATA
    ver_cmd = head[12]
    if ver_cmd >> 4 != _V2_VERSION:
        raise ProxyProtocolError(f"PROXY v2 version nibble must be 2, got {ver_cmd >> 4}")
    command = ver_cmd & 0x0F
    if command not in (_V2_CMD_LOCAL, _V2_CMD_PROXY):
        raise ProxyProtocolError(f"PROXY v2 command must be LOCAL (0) or PROXY (1), got {command}")
    if len(head) < 14:
        return NEED_MORE_DATA
    fam_byte = head[13]
    family, transport_code = fam_byte >> 4, fam_byte & 0x0F
    if command == _V2_CMD_PROXY:
        if fam_byte not in _V2_VALID_FAMILY_BYTES:
            raise ProxyProtocolError(f"PROXY v2 family/transport byte 0x{fam_byte:02x} is not defined")
        if family == _V2_AF_UNIX:
            raise ProxyProtocolError("PROXY v2 AF_UNIX addresses are not supported")
    if len(head) < V2_HEADER_LEN:
        return NEED_MORE_DATA
    body_len = int.from_bytes(head[14:16], "big")
    addr_len = _V2_ADDR_LEN[family] if command == _V2_CMD_PROXY else 0
    if body_len < addr_len:
        raise ProxyProtocolError(f"PROXY v2 length {body_len} is shorter than the {addr_len}-byte address block")
    total = V2_HEADER_LEN + body_len
    if len(data) < total:
        return NEED_MORE_DATA
    if command == _V2_CMD_LOCAL:
        # "the receiver must ... discard the protocol block including the family" (haproxy 2.2).
        return ProxyHeader(2, "LOCAL", "unknown", None, None, (), total)
    transport = _V2_TRANSPORT_NAMES[transport_code]
    if family == _V2_AF_UNSPEC:
        # "the receiver should ignore address information" (haproxy 2.2), so the block too.
        return ProxyHeader(2, "PROXY", transport, None, None, (), total)
    body = _as_bytes(data[V2_HEADER_LEN:total])
    src: Address
    dst: Address
    if family == _V2_AF_INET:
        s_ip, d_ip, s_port, d_port = struct.unpack_from("!4s4sHH", body)
        src, dst = (IPv4Address(s_ip), s_port), (IPv4Address(d_ip), d_port)
    else:
        s_ip, d_ip, s_port, d_port = struct.unpack_from("!16s16sHH", body)
        src, dst = (IPv6Address(s_ip), s_port), (IPv6Address(d_ip), d_port)
    return ProxyHeader(2, "PROXY", transport, src, dst, _decode_tlvs(body[addr_len:]), total)


def _decode_tlvs(block: bytes) -> tuple[TLV, ...]:
    tlvs: list[TLV] = []
    i = 0
    while i < len(block):
        if len(block) - i < _TLV_HEADER_LEN:
            raise ProxyProtocolError(f"PROXY v2 TLV at offset {i} is truncated")
        kind = block[i]
        size = int.from_bytes(block[i + 1 : i + 3], "big")
        start = i + _TLV_HEADER_LEN
        if start + size > len(block):
            raise ProxyProtocolError(f"PROXY v2 TLV 0x{kind:02x} at offset {i} runs past the header")
        tlvs.append((kind, block[start : start + size]))
        i = start + size
    return tuple(tlvs)


# === encode ==================================================================================


@overload
def encode_v1(src: ProxyHeader, /) -> bytes: ...
@overload
def encode_v1(src: Address, dst: Address) -> bytes: ...
def encode_v1(src: Address | ProxyHeader, dst: Address | None = None) -> bytes:
    """`PROXY TCP4|TCP6 src dst sport dport\\r\\n`. Mixed families, a %zone, or a port
    outside 0-65535 raise. Also accepts one `ProxyHeader` (LOCAL gives `PROXY UNKNOWN`)."""
    if isinstance(src, ProxyHeader):
        if src.command == "LOCAL":
            return encode_v1_unknown()
        if src.transport != "tcp" or src.tlvs:
            raise ProxyProtocolError("PROXY v1 carries only TCP and no TLVs")
        if src.src is None or src.dst is None:
            raise ProxyProtocolError("a PROXY-command header needs src and dst")
        return encode_v1(src.src, src.dst)
    if dst is None:
        raise ProxyProtocolError("encode_v1 needs a destination address")
    src_ip, src_port, dst_ip, dst_port = _check_pair(src, dst)
    for ip in (src_ip, dst_ip):
        if isinstance(ip, IPv6Address) and ip.scope_id is not None:
            raise ProxyProtocolError(f"PROXY v1 cannot carry a scoped IPv6 address ({ip})")
    proto = "TCP4" if src_ip.version == 4 else "TCP6"
    return f"PROXY {proto} {src_ip} {dst_ip} {src_port} {dst_port}\r\n".encode("ascii")


def encode_v1_unknown() -> bytes:
    """The short form `PROXY UNKNOWN\\r\\n` (the receiver uses the real endpoints)."""
    return b"PROXY UNKNOWN\r\n"


@overload
def encode_v2(src: ProxyHeader, /) -> bytes: ...
@overload
def encode_v2(src: Address, dst: Address, transport: str = ..., tlvs: Iterable[TLV] = ...) -> bytes: ...
def encode_v2(
    src: Address | ProxyHeader,
    dst: Address | None = None,
    transport: str = "tcp",
    tlvs: Iterable[TLV] = (),
) -> bytes:
    """A PROXY v2 header: signature, 0x21 (v2, PROXY), family INET/INET6 from the addresses
    with transport "tcp" (STREAM) or "udp" (DGRAM), body length (BE), addresses, ports, then
    `tlvs` as type(1) length(2, BE) value. Also accepts one `ProxyHeader` (LOCAL gives
    `encode_v2_local()`)."""
    if isinstance(src, ProxyHeader):
        if src.command == "LOCAL":
            return encode_v2_local()
        if src.src is None or src.dst is None:
            raise ProxyProtocolError("a PROXY-command header needs src and dst")
        return encode_v2(src.src, src.dst, src.transport, src.tlvs)
    if dst is None:
        raise ProxyProtocolError("encode_v2 needs a destination address")
    src_ip, src_port, dst_ip, dst_port = _check_pair(src, dst)
    code = _V2_TRANSPORT_CODES.get(transport)
    if code is None:
        raise ProxyProtocolError(f"PROXY v2 transport must be 'tcp' or 'udp', got {transport!r}")
    family = _V2_AF_INET if src_ip.version == 4 else _V2_AF_INET6
    parts = [src_ip.packed, dst_ip.packed, struct.pack("!HH", src_port, dst_port)]
    for kind, value in tlvs:
        if not isinstance(kind, int) or not 0 <= kind <= 0xFF:
            raise ProxyProtocolError(f"PROXY v2 TLV type must be 0-255, got {kind!r}")
        if len(value) > _V2_MAX_BODY:
            raise ProxyProtocolError(f"PROXY v2 TLV 0x{kind:02x} is {len(value)} bytes, more than 65535")
        parts += (struct.pack("!BH", kind, len(value)), bytes(value))
    body = b"".join(parts)
    if len(body) > _V2_MAX_BODY:
        raise ProxyProtocolError(f"PROXY v2 body is {len(body)} bytes, more than 65535")
    ver_cmd = _V2_VERSION << 4 | _V2_CMD_PROXY
    return V2_SIGNATURE + bytes((ver_cmd, family << 4 | code)) + len(body).to_bytes(2, "big") + body


def encode_v2_local() -> bytes:
    """A PROXY v2 LOCAL header (0x20, AF_UNSPEC/UNSPEC, length 0), as health checks send."""
    return V2_SIGNATURE + bytes((_V2_VERSION << 4 | _V2_CMD_LOCAL, 0x00)) + b"\x00\x00"


def encode(header: ProxyHeader) -> bytes:
    """Encode `header` in its own version (1 or 2); see `encode_v1` and `encode_v2`."""
    if header.version == 1:
        return encode_v1(header)
    if header.version == 2:
        return encode_v2(header)
    raise ProxyProtocolError(f"unknown PROXY protocol version {header.version!r}")


# === SPP =====================================================================================


@overload
def encode_spp(client: SppHeader, /, *, payload: Buffer = ...) -> bytes: ...
@overload
def encode_spp(client: SppHeader, payload: Buffer, /) -> bytes: ...
@overload
def encode_spp(client: Address, proxy: Address, payload: Buffer = ...) -> bytes: ...
def encode_spp(
    client: Address | SppHeader,
    proxy: Address | Buffer | None = None,
    payload: Buffer = b"",
) -> bytes:
    """The 38-byte SPP header (reference 3.2) followed by `payload`; IPv4 is written as
    `::ffff:a.b.c.d`. Call as `encode_spp(client, proxy, payload=b"")` or
    `encode_spp(SppHeader(client, proxy), payload=b"")`."""
    if isinstance(client, SppHeader):
        if proxy is not None:
            if not isinstance(proxy, bytes | bytearray | memoryview):
                raise ProxyProtocolError("encode_spp(SppHeader, payload): payload must be bytes")
            payload = proxy
        client_addr, proxy_addr = client.client, client.proxy
    elif proxy is None or isinstance(proxy, bytes | bytearray | memoryview):
        raise ProxyProtocolError("encode_spp needs a proxy (ip, port) address")
    else:
        client_addr, proxy_addr = client, proxy
    c_ip, c_port = _check_address(client_addr, "client")
    p_ip, p_port = _check_address(proxy_addr, "proxy")
    return _SPP.pack(SPP_MAGIC, _spp_address(c_ip), _spp_address(p_ip), c_port, p_port) + bytes(payload)


def _spp_address(ip: IPAddress) -> bytes:
    return _V4_MAPPED_PREFIX + ip.packed if isinstance(ip, IPv4Address) else ip.packed


def _spp_ip(raw: bytes) -> IPAddress:
    if raw[:12] == _V4_MAPPED_PREFIX:
        return IPv4Address(raw[12:])
    return IPv6Address(raw)


def decode_spp(datagram: Buffer) -> tuple[SppHeader, bytes]:
    """Split an SPP datagram into its header and payload.

    A datagram is always whole, so there is no NEED_MORE_DATA: fewer than 38 bytes or a
    magic other than 0x56EC raise ProxyProtocolError. IPv4-mapped addresses come back as
    IPv4Address (so an IPv6Address('::ffff:a.b.c.d') put in decodes as the IPv4 form)."""
    if len(datagram) < SPP_HEADER_LEN:
        raise ProxyProtocolError(f"SPP datagram of {len(datagram)} bytes is shorter than the 38-byte header")
    magic, c_raw, p_raw, c_port, p_port = _SPP.unpack(_as_bytes(datagram, SPP_HEADER_LEN))
    if magic != SPP_MAGIC:
        raise ProxyProtocolError(f"SPP magic must be 0x56ec, got 0x{magic:04x}")
    header = SppHeader(client=(_spp_ip(c_raw), c_port), proxy=(_spp_ip(p_raw), p_port))
    return header, _as_bytes(datagram[SPP_HEADER_LEN:])
