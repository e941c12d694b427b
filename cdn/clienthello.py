"""Peek at a TLS ClientHello's server name before any TLS library sees the connection (sans-IO).

`decode_sni(data)` takes the first bytes a client sent on a TLS port and returns:
- the SNI host name (`str`, lower-case, no trailing dot) when the ClientHello carries one,
- `None` when the ClientHello is complete and has no `server_name` extension,
- `NEED_MORE_DATA` when `data` is a valid prefix of a ClientHello that is not complete yet,
or raises `ClientHelloError` when the bytes are not a TLS ClientHello (or a malformed one).
Nothing else escapes. The ClientHello may be split across several handshake records (RFC 8446
5.1); records are reassembled up to `MAX_CLIENT_HELLO` bytes.

`encode_alert(description)` is the plaintext fatal alert record the edge answers with when it
will not serve the name (RFC 8446 6: content type 21, legacy version 0x0303, length 2, level 2).
"""

from __future__ import annotations

from typing import Final

# Content types and handshake types (RFC 8446 B.1, B.3).
_HANDSHAKE: Final = 22
_CLIENT_HELLO: Final = 1
_EXT_SERVER_NAME: Final = 0
_HOST_NAME: Final = 0
# A record's plaintext fragment may not exceed 2^14 bytes (RFC 8446 5.1).
_MAX_RECORD: Final = 1 << 14
# The largest ClientHello we reassemble: post-quantum key shares make ~2 KB common; 64 KB is far
# beyond any real client and bounds what a peer can make us buffer.
MAX_CLIENT_HELLO: Final = 64 * 1024

ALERT_HANDSHAKE_FAILURE: Final = 40
ALERT_UNRECOGNIZED_NAME: Final = 112


class ClientHelloError(Exception):
    """The peer's bytes are not a (well-formed) TLS ClientHello."""


class _NeedMoreData:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_MORE_DATA"


NEED_MORE_DATA: Final = _NeedMoreData()


def encode_alert(description: int) -> bytes:
    """A fatal TLS alert record (plaintext, as sent before any keys exist)."""
    return bytes((21, 3, 3, 0, 2, 2, description))


def _handshake_bytes(data: bytes) -> bytes | _NeedMoreData:
    """The ClientHello handshake message (type, length, body), reassembled from records."""
    out = bytearray()
    offset = 0
    need: int | None = None  # total handshake message length, once its header is in
    while need is None or len(out) < need:
        if len(data) - offset < 5:
            if offset < len(data) and data[offset] != _HANDSHAKE:
                raise ClientHelloError(f"record type {data[offset]}, not handshake")
            return NEED_MORE_DATA
        ctype, major, length = data[offset], data[offset + 1], int.from_bytes(data[offset + 3 : offset + 5])
        if ctype != _HANDSHAKE:
            raise ClientHelloError(f"record type {ctype}, not handshake")
        if major != 3:
            raise ClientHelloError(f"record version {major}.{data[offset + 2]}")
        if length == 0 or length > _MAX_RECORD:
            raise ClientHelloError(f"record length {length}")
        fragment = data[offset + 5 : offset + 5 + length]
        out += fragment
        if need is None and len(out) >= 4:
            if out[0] != _CLIENT_HELLO:
                raise ClientHelloError(f"handshake type {out[0]}, not ClientHello")
            need = 4 + int.from_bytes(out[1:4])
            if need > MAX_CLIENT_HELLO:
                raise ClientHelloError(f"ClientHello of {need} bytes")
        if len(fragment) < length:
            if need is not None and len(out) >= need:
                break  # the message is complete; the rest of the record does not matter
            return NEED_MORE_DATA
        offset += 5 + length
    if need is None:  # pragma: no cover - the loop only ends with need set
        return NEED_MORE_DATA
    return bytes(out[:need])


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = data
        self.pos = pos

    def take(self, n: int, what: str) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise ClientHelloError(f"ClientHello truncated in {what}")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def u8(self, what: str) -> int:
        return self.take(1, what)[0]

    def u16(self, what: str) -> int:
        return int.from_bytes(self.take(2, what))

    def vector(self, length_bytes: int, what: str) -> bytes:
        n = int.from_bytes(self.take(length_bytes, what))
        return self.take(n, what)

    def done(self) -> bool:
        return self.pos >= len(self.data)


def _server_name(ext: bytes) -> str:
    r = _Reader(ext)
    names = _Reader(r.vector(2, "server_name_list"))
    if not r.done():
        raise ClientHelloError("bytes after server_name_list")
    while not names.done():
        kind = names.u8("server name type")
        name = names.vector(2, "host_name")
        if kind != _HOST_NAME:
            continue
        if not name:
            raise ClientHelloError("empty host_name")
        try:
            text = name.decode("ascii")
        except UnicodeDecodeError:
            raise ClientHelloError("host_name is not ASCII") from None
        if not text.isprintable() or " " in text:
            raise ClientHelloError("host_name has invalid characters")
        text = text.lower().rstrip(".")
        if not text:
            raise ClientHelloError("host_name is only dots")
        return text
    raise ClientHelloError("server_name without a host_name")


def decode_sni(data: bytes) -> str | _NeedMoreData | None:
    """See the module docstring."""
    message = _handshake_bytes(data)
    if isinstance(message, _NeedMoreData):
        return message
    r = _Reader(message, 4)
    r.take(2, "legacy_version")
    r.take(32, "random")
    if len(r.vector(1, "legacy_session_id")) > 32:
        raise ClientHelloError("legacy_session_id longer than 32 bytes")
    suites = r.vector(2, "cipher_suites")
    if not suites or len(suites) % 2:
        raise ClientHelloError("bad cipher_suites length")
    if not r.vector(1, "legacy_compression_methods"):
        raise ClientHelloError("no compression methods")
    if r.done():
        return None  # no extensions at all (an old client)
    extensions = _Reader(r.vector(2, "extensions"))
    if not r.done():
        raise ClientHelloError("bytes after the extensions")
    sni: str | None = None
    seen: set[int] = set()
    while not extensions.done():
        etype = extensions.u16("extension type")
        body = extensions.vector(2, "extension data")
        if etype in seen:
            raise ClientHelloError(f"extension {etype} twice")
        seen.add(etype)
        if etype == _EXT_SERVER_NAME:
            sni = _server_name(body)
    return sni


__all__ = [
    "ALERT_HANDSHAKE_FAILURE",
    "ALERT_UNRECOGNIZED_NAME",
    "MAX_CLIENT_HELLO",
    "NEED_MORE_DATA",
    "ClientHelloError",
    "decode_sni",
    "encode_alert",
]
