"""PROXY protocol v1/v2 and Simple Proxy Protocol (SPP), sans-IO, byte-exact to the reference.

Parser contract (h11's three ways): `decode(data)` returns a `ProxyHeader` (its `length` says
how many bytes it occupied), or `NEED_MORE_DATA` when `data` is a valid prefix of a header, or
raises `ProxyProtocolError` as soon as the bytes cannot be a header. Nothing else escapes.
SPP works on whole datagrams, so `decode_spp` has no "need more data".
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import Final

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Endpoint = tuple[IPAddress, int]

V2_SIGNATURE: Final = b"\r\n\r\n\x00\r\nQUIT\n"
V1_PREFIX: Final = b"PROXY "
# haproxy's doc: a v1 line is at most 107 bytes including CRLF.
V1_MAX: Final = 107
# We refuse v2 headers whose address block + TLVs exceed this (haproxy's receive buffer advice).
V2_MAX_LEN: Final = 536
SPP_MAGIC: Final = 0x56EC
SPP_HEADER_LEN: Final = 38
_SPP = struct.Struct("!H16s16sHH")
_TRANSPORTS: Final = {0x1: "tcp", 0x2: "udp"}


class ProxyProtocolError(Exception):
    """The bytes are not a valid PROXY/SPP header; the message says what is wrong."""


class _NeedMoreData:
    _instance: _NeedMoreData | None = None

    def __new__(cls) -> _NeedMoreData:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NEED_MORE_DATA"


NEED_MORE_DATA: Final = _NeedMoreData()
NeedMoreData = _NeedMoreData


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    version: int  # 1 or 2
    command: str  # "PROXY" | "LOCAL" (v1 UNKNOWN decodes as LOCAL)
    transport: str  # "tcp" | "udp" | "unknown"
    src: Endpoint | None
    dst: Endpoint | None
    tlvs: tuple[tuple[int, bytes], ...] = ()
    length: int = 0

    @classmethod
    def proxied(cls, src: Endpoint, dst: Endpoint, *, transport: str = "tcp", version: int = 2) -> ProxyHeader:
        return cls(version, "PROXY", transport, src, dst)


@dataclass(frozen=True, slots=True)
class SppHeader:
    client: Endpoint
    proxy: Endpoint


def _same_family(src: Endpoint, dst: Endpoint) -> int:
    if src[0].version != dst[0].version:
        raise ProxyProtocolError("source and destination addresses must be of the same family")
    for _, port in (src, dst):
        if not 0 <= port <= 65535:
            raise ProxyProtocolError(f"port {port} out of range")
    return src[0].version


# ------------------------------------------------------------------------------------ encoders


def encode_v1(header: ProxyHeader) -> bytes:
    """`PROXY TCP4 src dst sport dport\\r\\n`, or `PROXY UNKNOWN\\r\\n` for a LOCAL header."""
    if header.command == "LOCAL" or header.src is None or header.dst is None:
        return b"PROXY UNKNOWN\r\n"
    if header.transport != "tcp":
        raise ProxyProtocolError("PROXY v1 carries TCP only")
    fam = _same_family(header.src, header.dst)
    line = f"PROXY TCP{fam} {header.src[0]} {header.dst[0]} {header.src[1]} {header.dst[1]}\r\n"
    return line.encode("ascii")


def encode_v2(header: ProxyHeader) -> bytes:
    """The binary v2 header: signature, 0x21 (or 0x20 LOCAL), family/transport, length, addresses, TLVs."""
    tlv_bytes = b"".join(struct.pack("!BH", t, len(v)) + v for t, v in header.tlvs)
    if header.command == "LOCAL" or header.src is None or header.dst is None:
        return V2_SIGNATURE + bytes([0x20, 0x00]) + struct.pack("!H", len(tlv_bytes)) + tlv_bytes
    fam = _same_family(header.src, header.dst)
    transport = {"tcp": 0x1, "udp": 0x2}.get(header.transport)
    if transport is None:
        raise ProxyProtocolError(f"unknown transport {header.transport!r}")
    family = 0x1 if fam == 4 else 0x2
    body = header.src[0].packed + header.dst[0].packed + struct.pack("!HH", header.src[1], header.dst[1])
    body += tlv_bytes
    return V2_SIGNATURE + bytes([0x21, (family << 4) | transport]) + struct.pack("!H", len(body)) + body


def encode_spp(header: SppHeader, payload: bytes = b"") -> bytes:
    """The 38-byte SPP header (IPv4 as ::ffff:a.b.c.d) followed by `payload`."""

    def mapped(ip: IPAddress) -> bytes:
        if ip.version == 4:
            return ipaddress.IPv6Address(b"\x00" * 10 + b"\xff\xff" + ip.packed).packed
        return ip.packed

    for _, port in (header.client, header.proxy):
        if not 0 <= port <= 65535:
            raise ProxyProtocolError(f"port {port} out of range")
    return _SPP.pack(SPP_MAGIC, mapped(header.client[0]), mapped(header.proxy[0]), header.client[1],
                     header.proxy[1]) + payload


# ------------------------------------------------------------------------------------ decoders


def looks_like_proxy_header(prefix: bytes) -> bool:
    """Cheap sniff: could these first bytes start a v1 or v2 header?"""
    if not prefix:
        return False
    n = min(len(prefix), len(V2_SIGNATURE))
    if prefix[:n] == V2_SIGNATURE[:n]:
        return True
    n = min(len(prefix), len(V1_PREFIX))
    return prefix[:n] == V1_PREFIX[:n]


def decode(data: bytes | bytearray | memoryview) -> ProxyHeader | _NeedMoreData:
    buf = bytes(data[: 16 + V2_MAX_LEN])
    if not buf:
        return NEED_MORE_DATA
    n = min(len(buf), len(V2_SIGNATURE))
    if buf[:n] == V2_SIGNATURE[:n]:
        return decode_v2(buf)
    n = min(len(buf), len(V1_PREFIX))
    if buf[:n] == V1_PREFIX[:n]:
        return decode_v1(buf)
    raise ProxyProtocolError("not a PROXY protocol header (no v1 or v2 signature)")


def _canonical_ip(text: str, version: int) -> IPAddress:
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        raise ProxyProtocolError(f"invalid address {text!r}") from None
    if ip.version != version:
        raise ProxyProtocolError(f"address {text!r} does not match TCP{version}")
    if str(ip) != text:
        raise ProxyProtocolError(f"address {text!r} is not in canonical form")
    return ip


def _port(text: str) -> int:
    if not text.isdigit() or (len(text) > 1 and text[0] == "0") or len(text) > 5:
        raise ProxyProtocolError(f"invalid port {text!r}")
    port = int(text)
    if port > 65535:
        raise ProxyProtocolError(f"port {port} out of range")
    return port


def decode_v1(buf: bytes) -> ProxyHeader | _NeedMoreData:
    end = buf.find(b"\r\n", 0, V1_MAX)
    if end < 0:
        if len(buf) >= V1_MAX:
            raise ProxyProtocolError("PROXY v1 line has no CRLF within 107 bytes")
        if b"\n" in buf or b"\r" in buf[:-1]:
            raise ProxyProtocolError("PROXY v1 line has a bare CR or LF")
        if any(b < 0x20 or b > 0x7E for b in buf if b not in (0x0D,)):
            raise ProxyProtocolError("PROXY v1 line has a non-ASCII byte")
        return NEED_MORE_DATA
    try:
        line = buf[:end].decode("ascii")
    except UnicodeDecodeError:
        raise ProxyProtocolError("PROXY v1 line has a non-ASCII byte") from None
    parts = line.split(" ")
    if parts[:2] == ["PROXY", "UNKNOWN"]:
        return ProxyHeader(1, "LOCAL", "unknown", None, None, (), end + 2)
    if len(parts) != 6 or parts[0] != "PROXY":
        raise ProxyProtocolError(f"malformed PROXY v1 line {line!r}")
    proto = parts[1]
    if proto not in ("TCP4", "TCP6"):
        raise ProxyProtocolError(f"unknown PROXY v1 protocol {proto!r}")
    version = 4 if proto == "TCP4" else 6
    src = (_canonical_ip(parts[2], version), _port(parts[4]))
    dst = (_canonical_ip(parts[3], version), _port(parts[5]))
    return ProxyHeader(1, "PROXY", "tcp", src, dst, (), end + 2)


def decode_v2(buf: bytes) -> ProxyHeader | _NeedMoreData:
    if len(buf) < 16:
        return NEED_MORE_DATA
    ver_cmd, fam_proto = buf[12], buf[13]
    if ver_cmd >> 4 != 0x2:
        raise ProxyProtocolError(f"PROXY v2 version nibble is {ver_cmd >> 4}, not 2")
    command = ver_cmd & 0x0F
    if command not in (0x0, 0x1):
        raise ProxyProtocolError(f"unknown PROXY v2 command {command}")
    (length,) = struct.unpack_from("!H", buf, 14)
    if length > V2_MAX_LEN:
        raise ProxyProtocolError(f"PROXY v2 header length {length} exceeds {V2_MAX_LEN}")
    total = 16 + length
    if len(buf) < total:
        return NEED_MORE_DATA
    family, proto = fam_proto >> 4, fam_proto & 0x0F
    if family not in (0x0, 0x1, 0x2, 0x3) or proto not in (0x0, 0x1, 0x2):
        raise ProxyProtocolError(f"unknown PROXY v2 family/transport byte 0x{fam_proto:02x}")
    body = buf[16:total]
    transport = _TRANSPORTS.get(proto, "unknown")
    src: Endpoint | None = None
    dst: Endpoint | None = None
    offset = 0
    if family in (0x1, 0x2):
        size = 4 if family == 0x1 else 16
        need = 2 * size + 4
        if length < need:
            raise ProxyProtocolError(f"PROXY v2 address block needs {need} bytes, length is {length}")
        make = ipaddress.IPv4Address if family == 0x1 else ipaddress.IPv6Address
        s_ip, d_ip = make(body[:size]), make(body[size : 2 * size])
        s_port, d_port = struct.unpack_from("!HH", body, 2 * size)
        src, dst = (s_ip, s_port), (d_ip, d_port)
        offset = need
    elif family == 0x3:
        offset = min(216, length)  # two 108-byte UNIX paths; addresses not kept
    tlvs: list[tuple[int, bytes]] = []
    while offset < length:
        if length - offset < 3:
            raise ProxyProtocolError("truncated PROXY v2 TLV")
        t = body[offset]
        (tlen,) = struct.unpack_from("!H", body, offset + 1)
        if offset + 3 + tlen > length:
            raise ProxyProtocolError("PROXY v2 TLV runs past the header")
        tlvs.append((t, bytes(body[offset + 3 : offset + 3 + tlen])))
        offset += 3 + tlen
    cmd = "PROXY" if command == 0x1 else "LOCAL"
    if cmd == "PROXY" and family == 0x0:
        cmd = "LOCAL"
    return ProxyHeader(2, cmd, transport, src, dst, tuple(tlvs), total)


def decode_spp(datagram: bytes | bytearray | memoryview) -> tuple[SppHeader, bytes]:
    """Split an SPP datagram into its header and payload; IPv4-mapped addresses come back as IPv4."""
    data = bytes(datagram)
    if len(data) < SPP_HEADER_LEN:
        raise ProxyProtocolError(f"SPP datagram of {len(data)} bytes is shorter than the 38-byte header")
    magic, c, p, cport, pport = _SPP.unpack_from(data)
    if magic != SPP_MAGIC:
        raise ProxyProtocolError(f"SPP magic is 0x{magic:04x}, not 0x56ec")

    def unmap(raw: bytes) -> IPAddress:
        ip = ipaddress.IPv6Address(raw)
        return ip.ipv4_mapped or ip

    return SppHeader((unmap(c), cport), (unmap(p), pport)), data[SPP_HEADER_LEN:]
