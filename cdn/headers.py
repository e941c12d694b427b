"""Header rewriting toward the origin and toward the client (reference 7.1, 7.2, fact 22).

Headers travel as h11's internal triples `(raw_name, lower_name, value)` (bytes), so the
original case and order survive and h11 can write them without re-validating (they came out of
h11's parser, and the ones we add are constants or values we format).

Toward the origin (`build_origin_headers`): hop-by-hop headers (RFC 9110 7.6.1 plus the names
the `Connection` header lists, `Expect` (the edge answers 100-continue itself) and `X-Real-IP`)
are removed; the Cloudflare headers the client might have forged are removed; everything else is
kept in order; then `CF-Connecting-IP`, `X-Forwarded-For` (client value + the connecting IP,
comma without space, fact 19), `X-Forwarded-Proto`, `CF-Visitor`, `CF-Ray`, `CF-IPCountry`,
`CDN-Loop` (`cloudflare; loops=N`), `Connection` (`Keep-Alive`, or `upgrade` with `Upgrade`)
and `Transfer-Encoding: chunked` when the client sent a chunked body are appended.
`Accept-Encoding` is passed through unchanged (Cloudflare forces `gzip, br` and decompresses
for clients that did not ask; the emulator has no decompressor, so it does not force it).

Toward the client (`build_client_headers`): hop-by-hop and `X-Accel-*` headers from the origin
and its `Server` / `CF-Ray` / `CF-Cache-Status` are dropped; `Server: cloudflare`, `CF-Ray`,
`CF-Cache-Status: DYNAMIC` are appended.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from http import HTTPStatus

Triple = tuple[bytes, bytes, bytes]

HOP_BY_HOP: frozenset[bytes] = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authenticate",
        b"proxy-authorization",
    }
)

# Removed from the client's request: hop-by-hop, the 100-continue handshake (done by the edge),
# X-Real-IP (reference 7.1), and the headers the edge sets itself (a client may not forge them).
_DROP_TOWARD_ORIGIN: frozenset[bytes] = HOP_BY_HOP | {
    b"expect",
    b"x-real-ip",
    b"cf-connecting-ip",
    b"x-forwarded-for",
    b"x-forwarded-proto",
    b"cf-visitor",
    b"cf-ray",
    b"cf-ipcountry",
    b"cdn-loop",
}

_DROP_TOWARD_CLIENT: frozenset[bytes] = HOP_BY_HOP | {
    b"server",
    b"cf-ray",
    b"cf-cache-status",
    b"x-accel-buffering",
    b"x-accel-charset",
    b"x-accel-limit-rate",
    b"x-accel-redirect",
}

_NEVER_LISTED = frozenset({b"host", b"content-length"})

# Precomputed header triples (the names in the case Cloudflare sends them).
_CF_CONNECTING_IP = (b"CF-Connecting-IP", b"cf-connecting-ip")
_XFF = (b"X-Forwarded-For", b"x-forwarded-for")
_XFP = (b"X-Forwarded-Proto", b"x-forwarded-proto")
_CF_VISITOR = (b"CF-Visitor", b"cf-visitor")
_CF_RAY = (b"CF-Ray", b"cf-ray")
_CF_IPCOUNTRY = (b"CF-IPCountry", b"cf-ipcountry")
_CDN_LOOP = (b"CDN-Loop", b"cdn-loop")
VISITOR = {"http": b'{"scheme":"http"}', "https": b'{"scheme":"https"}'}
PROTO = {"http": b"http", "https": b"https"}
CONNECTION_KEEP_ALIVE: Triple = (b"Connection", b"connection", b"Keep-Alive")
CONNECTION_UPGRADE: Triple = (b"Connection", b"connection", b"upgrade")
CHUNKED: Triple = (b"Transfer-Encoding", b"transfer-encoding", b"chunked")
SERVER_CLOUDFLARE: Triple = (b"Server", b"server", b"cloudflare")
CACHE_DYNAMIC: Triple = (b"CF-Cache-Status", b"cf-cache-status", b"DYNAMIC")

# Fact 22: an inbound XFF longer than this is a proxy chain, refused with 1000.
MAX_INBOUND_XFF = 100


def header_values(items: Iterable[Triple], lower_name: bytes) -> list[bytes]:
    return [v for _, n, v in items if n == lower_name]


def first_value(items: Iterable[Triple], lower_name: bytes, default: bytes = b"") -> bytes:
    for _, n, v in items:
        if n == lower_name:
            return v
    return default


def connection_tokens(items: Iterable[Triple]) -> frozenset[bytes]:
    tokens: set[bytes] = set()
    for _, n, v in items:
        if n == b"connection":
            tokens.update(t.strip().lower() for t in v.split(b",") if t.strip())
    return frozenset(tokens)


def inbound_violation(items: Sequence[Triple]) -> str | None:
    """Why a client request must be refused with 1000 (fact 22), or None.

    Applies to clients only: the internal CDN->Spectrum->CDN hop carries these headers legitimately."""
    xff = 0
    for _, n, v in items:
        if n == b"cf-connecting-ip":
            return "request already carries CF-Connecting-IP"
        if n == b"x-forwarded-for":
            xff += 1
            if xff > 1:
                return "request carries two X-Forwarded-For headers"
            if len(v) > MAX_INBOUND_XFF:
                return f"X-Forwarded-For longer than {MAX_INBOUND_XFF} characters"
    return None


def parse_cdn_loop(values: Iterable[bytes]) -> tuple[int, list[bytes]]:
    """(how many times the request already went through `cloudflare`, the other CDNs' entries).

    `cloudflare; loops=3` counts 3; a bare `cloudflare` entry counts 1 (RFC 8586 lists one
    entry per pass)."""
    loops = 0
    others: list[bytes] = []
    for value in values:
        for entry in value.split(b","):
            entry = entry.strip()
            if not entry:
                continue
            name, _, params = entry.partition(b";")
            if name.strip().lower() != b"cloudflare":
                others.append(entry)
                continue
            count = 1
            for param in params.split(b";"):
                key, _, val = param.strip().partition(b"=")
                if key.strip().lower() == b"loops" and val.strip().isdigit():
                    count = int(val.strip())
            loops += count
    return loops, others


def cdn_loop_value(loops: int, others: Sequence[bytes] = ()) -> bytes:
    ours = b"cloudflare; loops=" + str(loops).encode()
    return b", ".join([*others, ours])


def build_origin_headers(
    items: Sequence[Triple],
    *,
    client_ip: str,
    connecting_ip: str,
    scheme: str,
    cf_ray: bytes,
    country: bytes,
    loops: int,
    loop_others: Sequence[bytes] = (),
    chunked: bool = False,
    upgrade: bytes | None = None,
    trusted: bool = False,
) -> list[Triple]:
    """The request headers toward the origin (module docstring).

    `client_ip` feeds CF-Connecting-IP; `connecting_ip` is appended to an inbound XFF (for a
    client they are the same). With `trusted` (the internal hop), an inbound CF-Connecting-IP
    is kept: it names the real client of the first pass. `loops` is this pass's count."""
    drop = _DROP_TOWARD_ORIGIN
    # Names `Connection` lists are hop-by-hop too, but never the framing or the Host.
    listed = connection_tokens(items) - _NEVER_LISTED
    out: list[Triple] = []
    xff: list[bytes] = []
    inbound_cip = b""
    for item in items:
        n = item[1]
        if n in drop or n in listed:
            if n == b"x-forwarded-for":
                xff.append(item[2])
            elif n == b"cf-connecting-ip" and trusted and not inbound_cip:
                inbound_cip = item[2]
            continue
        out.append(item)
    cip = inbound_cip or client_ip.encode()
    xff_value = b",".join(v.strip() for v in xff) + b"," + connecting_ip.encode() if xff else cip
    out.append((*_CF_CONNECTING_IP, cip))
    out.append((*_XFF, xff_value))
    out.append((*_XFP, PROTO[scheme]))
    out.append((*_CF_VISITOR, VISITOR[scheme]))
    out.append((*_CF_RAY, cf_ray))
    out.append((*_CF_IPCOUNTRY, country))
    out.append((*_CDN_LOOP, cdn_loop_value(loops, loop_others)))
    if upgrade is not None:
        out.append(CONNECTION_UPGRADE)
        out.append((b"Upgrade", b"upgrade", upgrade))
    else:
        out.append(CONNECTION_KEEP_ALIVE)
    if chunked:
        out.append(CHUNKED)
    return out


def build_client_headers(items: Sequence[Triple], *, cf_ray: bytes, switching: bool = False) -> list[Triple]:
    """The origin's response headers toward the client (module docstring). With `switching`
    (a 101), `Connection` and `Upgrade` are kept: they are the handshake."""
    out: list[Triple] = []
    drop = _DROP_TOWARD_CLIENT
    for item in items:
        n = item[1]
        if n in drop and not (switching and n in (b"connection", b"upgrade")):
            continue
        out.append(item)
    out.append(SERVER_CLOUDFLARE)
    out.append((*_CF_RAY, cf_ray))
    out.append(CACHE_DYNAMIC)
    return out


def edge_response_headers(
    cf_ray: bytes, content_type: bytes, length: int, extra: Iterable[Triple] = ()
) -> list[Triple]:
    """Headers of a response the edge generates (error pages, WAF blocks)."""
    out: list[Triple] = [
        (b"Content-Type", b"content-type", content_type),
        (b"Content-Length", b"content-length", str(length).encode()),
        *extra,
        SERVER_CLOUDFLARE,
        (*_CF_RAY, cf_ray),
    ]
    return out


# Reason phrases toward the client: the standard ones (Cloudflare normalises whatever the origin
# sent), and none for Cloudflare's own 52x codes.
REASONS: dict[int, bytes] = {
    **{status.value: status.phrase.encode() for status in HTTPStatus},
    413: b"Payload Too Large",
    520: b"",
    521: b"",
    522: b"",
    523: b"",
    524: b"",
    525: b"",
    526: b"",
    530: b"",
}
