"""DNS wire format pieces the resolver compiles answers from, and the general query parser.

Pure (no I/O). Names are written uncompressed (RFC 1035 allows it) so that every compiled piece
of a message is position independent; the one exception is the pointer to the question name at
offset 12 (`QNAME_POINTER`), which is valid in every response because the question always
starts there. dnslib is used only as a codec for the rarer record types' presentation format.

`parse_query(data)` has a three-way contract: it returns a `ParsedQuery`, returns None when the
bytes cannot even carry a header (shorter than 12 bytes: nothing to answer to), or raises
`QueryFormatError` (the sender's fault: the caller answers FORMERR with the query's ID).
"""

from __future__ import annotations

import ipaddress
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import dnslib
from dnslib.label import DNSBuffer

# Header flag bits (RFC 1035 4.1.1), as one 16-bit word.
QR: Final = 0x8000
AA: Final = 0x0400
TC: Final = 0x0200
RD: Final = 0x0100

NOERROR: Final = 0
FORMERR: Final = 1
SERVFAIL: Final = 2
NXDOMAIN: Final = 3
NOTIMP: Final = 4
REFUSED: Final = 5
BADVERS: Final = 16  # extended RCODE (RFC 6891 6.1.3): upper 8 bits in the OPT TTL, lower 4 in the header

RCODE_NAMES: Final[Mapping[int, str]] = {
    NOERROR: "NOERROR",
    FORMERR: "FORMERR",
    SERVFAIL: "SERVFAIL",
    NXDOMAIN: "NXDOMAIN",
    NOTIMP: "NOTIMP",
    REFUSED: "REFUSED",
    BADVERS: "BADVERS",
}

TYPE_A: Final = 1
TYPE_NS: Final = 2
TYPE_CNAME: Final = 5
TYPE_SOA: Final = 6
TYPE_PTR: Final = 12
TYPE_MX: Final = 15
TYPE_TXT: Final = 16
TYPE_AAAA: Final = 28
TYPE_SRV: Final = 33
TYPE_OPT: Final = 41
TYPE_CAA: Final = 257
TYPE_IXFR: Final = 251
TYPE_AXFR: Final = 252
TYPE_ANY: Final = 255

CLASS_IN: Final = 1
CLASS_ANY: Final = 255

QNAME_POINTER: Final = b"\xc0\x0c"

_TYPE_CODES: dict[str, int] = {str(name): int(code) for code, name in dnslib.QTYPE.forward.items()}
_TYPE_NAMES: dict[int, str] = {code: name for name, code in _TYPE_CODES.items()}


def type_code(name: str) -> int:
    """`"AAAA"` -> 28; `"TYPE65"` style is accepted; raises ValueError for an unknown mnemonic."""
    upper = name.upper()
    code = _TYPE_CODES.get(upper)
    if code is not None:
        return code
    if upper.startswith("TYPE") and upper[4:].isdigit():
        return int(upper[4:])
    raise ValueError(f"unknown DNS type {name!r}")


def type_name(code: int) -> str:
    """28 -> `"AAAA"`; unknown codes in RFC 3597 form, `"TYPE65000"`."""
    return _TYPE_NAMES.get(code) or f"TYPE{code}"


class QueryFormatError(Exception):
    """The query is malformed (the sender's fault); on the wire: FORMERR."""


# --------------------------------------------------------------------------- names


def encode_name(name: str) -> bytes:
    """A presentation name (no trailing dot needed, `""` or `"."` is the root) in wire form,
    uncompressed and lower-cased. Raises ValueError for an empty or over-long label."""
    name = name.rstrip(".").lower()
    if not name:
        return b"\x00"
    out = bytearray()
    for label in name.split("."):
        raw = label.encode("idna") if not label.isascii() else label.encode("ascii")
        if not 0 < len(raw) <= 63:
            raise ValueError(f"bad label {label!r} in {name!r}")
        out.append(len(raw))
        out += raw
    out.append(0)
    if len(out) > 255:
        raise ValueError(f"name {name!r} is longer than 255 bytes")
    return bytes(out)


def name_text(wire: bytes) -> str:
    """An uncompressed wire name to text without the trailing dot (the root is `"."`). Bytes that
    are not printable ASCII, dots and backslashes inside a label are escaped as in zone files."""
    labels: list[str] = []
    i = 0
    n = len(wire)
    while i < n:
        length = wire[i]
        if length == 0:
            break
        raw = wire[i + 1 : i + 1 + length]
        i += 1 + length
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:
            text = ""
        if text and text.isprintable() and "." not in text and "\\" not in text and " " not in text:
            labels.append(text)
        else:
            labels.append("".join(_escape_byte(b) for b in raw))
    return ".".join(labels) if labels else "."


def _escape_byte(b: int) -> str:
    if b in (0x2E, 0x5C):  # "." and "\"
        return "\\" + chr(b)
    if 0x21 <= b <= 0x7E:
        return chr(b)
    return f"\\{b:03d}"


def parent_name(wire: bytes) -> bytes | None:
    """The wire name with its first label removed; None for the root."""
    if wire == b"\x00":
        return None
    return wire[1 + wire[0] :]


def is_below(wire: bytes, ancestor: bytes) -> bool:
    """Whether `wire` is `ancestor` or under it (both lower-cased wire names)."""
    if wire == ancestor:
        return True
    if not wire.endswith(ancestor):
        return False
    # The suffix must start at a label boundary.
    i = 0
    cut = len(wire) - len(ancestor)
    while i < cut:
        i += 1 + wire[i]
    return i == cut


# --------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class RR:
    """One resource record ready to write: `owner` is wire form or `QNAME_POINTER`."""

    owner: bytes
    rtype: int
    ttl: int
    rdata: bytes
    text: str  # presentation form of the data, for logs (`"A 192.0.2.1"`)

    def encode(self) -> bytes:
        return self.owner + struct.pack("!HHIH", self.rtype, CLASS_IN, self.ttl, len(self.rdata)) + self.rdata

    def with_owner(self, owner: bytes) -> RR:
        return RR(owner, self.rtype, self.ttl, self.rdata, self.text)


class _PlainBuffer(DNSBuffer):  # type: ignore[misc]
    """dnslib's buffer without name compression, so packed rdata stands alone."""

    def encode_name(self, name: Any) -> None:
        self.encode_name_nocompress(name)


def _txt_strings(content: str) -> list[bytes]:
    """TXT content as character-strings: `"a" "b"` (quoted, with escapes) or plain text cut
    into 255-byte pieces (Cloudflare accepts both forms)."""
    text = content.strip()
    if text.startswith('"'):
        out: list[bytes] = []
        i = 0
        while i < len(text):
            if text[i].isspace():
                i += 1
                continue
            if text[i] != '"':
                raise ValueError(f"TXT content {content!r}: text outside quotes")
            i += 1
            cur = bytearray()
            while i < len(text) and text[i] != '"':
                if text[i] == "\\" and i + 1 < len(text):
                    nxt = text[i + 1 : i + 4]
                    if nxt.isdigit() and len(nxt) == 3:
                        cur.append(int(nxt))
                        i += 4
                        continue
                    i += 1
                cur += text[i].encode()
                i += 1
            if i >= len(text):
                raise ValueError(f"TXT content {content!r}: unterminated quote")
            i += 1
            out.extend(bytes(cur[j : j + 255]) for j in range(0, max(len(cur), 1), 255))
        return out or [b""]
    raw = text.encode()
    return [raw[j : j + 255] for j in range(0, max(len(raw), 1), 255)]


def encode_rdata(
    rtype: str, content: str, *, priority: int | None = None, data: Mapping[str, Any] | None = None
) -> tuple[bytes, str]:
    """A record's data (Cloudflare API shapes: `content`, `priority`, `data`) in wire form and
    presentation form. Raises ValueError when the content does not fit the type."""
    t = rtype.upper()
    if t == "A":
        ip4 = ipaddress.IPv4Address(content)
        return ip4.packed, str(ip4)
    if t == "AAAA":
        ip6 = ipaddress.IPv6Address(content)
        return ip6.packed, str(ip6)
    if t in ("CNAME", "NS", "PTR"):
        target = content.rstrip(".").lower()
        return encode_name(target), target + "."
    if t == "MX":
        parts = content.split()
        if len(parts) == 2:
            pref, host = int(parts[0]), parts[1]
        else:
            pref, host = (priority if priority is not None else 0), content
        host = host.rstrip(".").lower()
        return struct.pack("!H", pref) + encode_name(host), f"{pref} {host}."
    if t == "TXT":
        strings = _txt_strings(content)
        wire = b"".join(bytes([len(s)]) + s for s in strings)
        return wire, " ".join('"' + s.decode("utf-8", "replace").replace('"', '\\"') + '"' for s in strings)
    if t == "SRV":
        if data:
            prio, weight, port, target = (
                int(data.get("priority", priority or 0)),
                int(data["weight"]),
                int(data["port"]),
                str(data["target"]),
            )
        else:
            parts = content.split()
            if len(parts) == 4:
                prio, weight, port, target = int(parts[0]), int(parts[1]), int(parts[2]), parts[3]
            elif len(parts) == 3:
                prio, weight, port, target = priority or 0, int(parts[0]), int(parts[1]), parts[2]
            else:
                raise ValueError(f"SRV content {content!r} is not 'priority weight port target'")
        target = target.rstrip(".").lower() or "."
        wire = struct.pack("!HHH", prio, weight, port) + encode_name(target)
        return wire, f"{prio} {weight} {port} {target.rstrip('.')}."
    if t == "CAA":
        if data:
            flags, tag, value = int(data.get("flags", 0)), str(data["tag"]), str(data["value"])
        else:
            parts = content.split(None, 2)
            if len(parts) != 3:
                raise ValueError(f"CAA content {content!r} is not 'flags tag value'")
            flags, tag, value = int(parts[0]), parts[1], parts[2].strip().strip('"')
        tag_b, value_b = tag.encode(), value.encode()
        return bytes([flags, len(tag_b)]) + tag_b + value_b, f'{flags} {tag} "{value}"'
    # Anything else: dnslib's zone-file parser, packed without compression. The API's `data`
    # object (how the SDK writes HTTPS, SVCB, TLSA, SSHFP, DS...) is read in presentation order.
    text = content.strip() or _content_from_data(t, data)
    if t in ("HTTPS", "SVCB"):
        text = _QUOTED_PARAM.sub(r"=\1", text)  # alpn="h3,h2" as Cloudflare writes it -> alpn=h3,h2
    try:
        # SVCB has HTTPS's format (RFC 9460); dnslib only parses the latter.
        rr = dnslib.RR.fromZone(f"x. 300 IN {'HTTPS' if t == 'SVCB' else t} {text}")[0]
    except Exception as e:
        raise ValueError(f"{t} content {text!r} cannot be read: {e}") from None
    buf = _PlainBuffer()
    rr.rdata.pack(buf)
    return bytes(buf.data), str(rr.rdata)


# The fields of the API's `data` object for each type, in presentation (zone file) order.
DATA_FIELDS: Final[dict[str, tuple[str, ...]]] = {
    "HTTPS": ("priority", "target", "value"),
    "SVCB": ("priority", "target", "value"),
    "TLSA": ("usage", "selector", "matching_type", "certificate"),
    "SSHFP": ("algorithm", "type", "fingerprint"),
    "DS": ("key_tag", "algorithm", "digest_type", "digest"),
    "DNSKEY": ("flags", "protocol", "algorithm", "public_key"),
    "CERT": ("type", "key_tag", "algorithm", "certificate"),
    "NAPTR": ("order", "preference", "flags", "service", "regex", "replacement"),
}
_QUOTED_DATA: Final = {("NAPTR", "flags"), ("NAPTR", "service"), ("NAPTR", "regex")}
_QUOTED_PARAM: Final = re.compile(r'="([^"]*)"')


def _content_from_data(t: str, data: Mapping[str, Any] | None) -> str:
    fields = DATA_FIELDS.get(t)
    if not data or fields is None:
        raise ValueError(f"{t} record needs content" + (f" or data {{{', '.join(fields)}}}" if fields else ""))
    missing = [f for f in fields if f not in data]
    if missing:
        raise ValueError(f"{t} record data is missing {', '.join(missing)}")
    parts = []
    for f in fields:
        value = str(data[f])
        parts.append(f'"{value}"' if (t, f) in _QUOTED_DATA else value)
    return " ".join(parts)


def soa_rdata(zone: str, serial: int, minimum: int) -> tuple[bytes, str]:
    """The synthesised SOA: mname ns1.<zone>, rname dns.<zone> (RFC 1035 3.3.13)."""
    mname, rname = f"ns1.{zone}", f"dns.{zone}"
    refresh, retry, expire = 10000, 2400, 604800
    wire = (
        encode_name(mname)
        + encode_name(rname)
        + struct.pack("!IIIII", serial & 0xFFFFFFFF, refresh, retry, expire, minimum)
    )
    return wire, f"{mname}. {rname}. {serial} {refresh} {retry} {expire} {minimum}"


# --------------------------------------------------------------------------- queries


@dataclass(frozen=True, slots=True)
class ParsedQuery:
    """The parts of a query an answer depends on. `question` is the question's bytes as sent
    (name, type, class), so the answer echoes the sender's letter case (0x20 bits)."""

    ident: bytes
    flags: int
    opcode: int
    qname: bytes  # lower-cased wire form
    qtype: int
    qclass: int
    question: bytes
    edns: bool
    edns_version: int
    udp_size: int  # the sender's EDNS UDP payload size, 512 without EDNS
    do: bool


def _skip_name(data: bytes, i: int) -> int:
    """Offset after a (possibly compressed) name starting at `i`."""
    n = len(data)
    while True:
        if i >= n:
            raise QueryFormatError("name runs past the end")
        length = data[i]
        if length == 0:
            return i + 1
        if length & 0xC0 == 0xC0:
            if i + 2 > n:
                raise QueryFormatError("truncated compression pointer")
            return i + 2
        if length & 0xC0:
            raise QueryFormatError("unknown label type")
        i += 1 + length


def question_end(data: bytes) -> int:
    """Offset just after the uncompressed question name at offset 12; raises QueryFormatError."""
    n = len(data)
    i = 12
    while True:
        if i >= n:
            raise QueryFormatError("question name runs past the end")
        length = data[i]
        if length == 0:
            i += 1
            break
        if length > 63:
            # Compression in the question could only point into the header.
            raise QueryFormatError("compressed or extended label in the question")
        i += 1 + length
    if i - 12 > 255:
        raise QueryFormatError("question name longer than 255 bytes")
    return i


def parse_query(data: bytes) -> ParsedQuery | None:
    """The general parser (any section counts, EDNS); see the module contract."""
    n = len(data)
    if n < 12:
        return None
    ident = data[:2]
    flags, qdcount, ancount, nscount, arcount = struct.unpack_from("!HHHHH", data, 2)
    opcode = (flags >> 11) & 0xF
    if qdcount != 1:
        raise QueryFormatError(f"QDCOUNT is {qdcount}, a query asks one question")
    qend = question_end(data)
    if qend + 4 > n:
        raise QueryFormatError("question runs past the end")
    qname = data[12:qend].lower()
    qtype, qclass = struct.unpack_from("!HH", data, qend)
    question = data[12 : qend + 4]
    i = qend + 4
    for _ in range(ancount + nscount):
        i = _skip_name(data, i)
        if i + 10 > n:
            raise QueryFormatError("record header runs past the end")
        (rdlength,) = struct.unpack_from("!H", data, i + 8)
        i += 10 + rdlength
        if i > n:
            raise QueryFormatError("record data runs past the end")
    edns = False
    version = 0
    udp_size = 512
    do = False
    for _ in range(arcount):
        start = i
        i = _skip_name(data, i)
        if i + 10 > n:
            raise QueryFormatError("record header runs past the end")
        rtype, rclass, ttl, rdlength = struct.unpack_from("!HHIH", data, i)
        i += 10 + rdlength
        if i > n:
            raise QueryFormatError("record data runs past the end")
        if rtype == TYPE_OPT:
            if edns:
                raise QueryFormatError("more than one OPT record")  # RFC 6891 6.1.1
            if data[start] != 0:
                raise QueryFormatError("OPT owner is not the root")
            edns = True
            udp_size = max(512, rclass)
            version = (ttl >> 16) & 0xFF
            do = bool(ttl & 0x8000)
    # Trailing bytes after the last record are tolerated (some stacks pad).
    return ParsedQuery(ident, flags, opcode, qname, qtype, qclass, question, edns, version, udp_size, do)
