"""The fields a rule can read, their types, and how each is taken from one request.

:class:`RequestFields` is what the CDN hands over (built once per request).  :class:`EvalContext`
wraps it for one evaluation and computes derived views (lowercased header map, query arguments,
cookies) lazily, at most once per request, however many rules read them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from .types import BOOL, INT, IP, STRING, Type, array_of, map_of


@dataclass(frozen=True, slots=True)
class RequestFields:
    """What one HTTP request offers to rules.  ``path`` excludes the query; ``query`` has no ``?``."""

    host: str
    method: str
    path: str
    query: str
    version: str  # "HTTP/1.1", "HTTP/2", "HTTP/3"
    scheme: str  # "http" | "https"
    headers: tuple[tuple[str, str], ...]  # in order, original case
    src_ip: ipaddress.IPv4Address | ipaddress.IPv6Address
    edge_server_ip: ipaddress.IPv4Address | ipaddress.IPv6Address
    edge_server_port: int
    ssl: bool
    ray_id: str = ""
    country: str = "XX"
    timestamp_sec: int = 0


class EvalContext:
    """One request under evaluation; derived values are computed on first use and kept."""

    __slots__ = ("_args", "_cookies", "_headers", "request")

    def __init__(self, request: RequestFields) -> None:
        self.request = request
        self._headers: dict[str, tuple[str, ...]] | None = None
        self._args: dict[str, tuple[str, ...]] | None = None
        self._cookies: dict[str, tuple[str, ...]] | None = None

    @property
    def headers(self) -> dict[str, tuple[str, ...]]:
        """Header values by lowercased name, repeats kept in order."""
        if self._headers is None:
            grouped: dict[str, list[str]] = {}
            for name, value in self.request.headers:
                grouped.setdefault(name.lower(), []).append(value)
            self._headers = {name: tuple(values) for name, values in grouped.items()}
        return self._headers

    @property
    def args(self) -> dict[str, tuple[str, ...]]:
        """Query arguments by name (no decoding, as Cloudflare's ``http.request.uri.args``)."""
        if self._args is None:
            self._args = _group(_split_query(self.request.query))
        return self._args

    @property
    def cookies(self) -> dict[str, tuple[str, ...]]:
        """Cookies by URL-decoded name, from every Cookie header."""
        if self._cookies is None:
            pairs: list[tuple[str, str]] = []
            for header in self.headers.get("cookie", ()):
                for part in header.split(";"):
                    name, sep, value = part.strip().partition("=")
                    if name and sep:
                        pairs.append((unquote(name), value))
            self._cookies = _group(pairs)
        return self._cookies

    def header(self, name: str, sep: str | None = None) -> str:
        """The first value of header ``name`` (lowercase), or all joined with ``sep``; "" if absent."""
        values = self.headers.get(name)
        if not values:
            return ""
        return values[0] if sep is None else sep.join(values)


def _split_query(query: str) -> list[tuple[str, str]]:
    pairs = []
    for part in query.split("&"):
        if part:
            name, _, value = part.partition("=")
            pairs.append((name, value))
    return pairs


def _group(pairs: list[tuple[str, str]]) -> dict[str, tuple[str, ...]]:
    grouped: dict[str, list[str]] = {}
    for name, value in pairs:
        grouped.setdefault(name, []).append(value)
    return {name: tuple(values) for name, values in grouped.items()}


def _uri(c: EvalContext) -> str:
    r = c.request
    return f"{r.path}?{r.query}" if r.query else r.path


def _full_uri(c: EvalContext) -> str:
    r = c.request
    return f"{r.scheme}://{r.host}{_uri(c)}"


def path_extension(path: str) -> str:
    """Lowercased extension without the dot: "" for ``/foo``, ``/.mp3`` and ``/foo.``."""
    segment = path.rpartition("/")[2]
    stem, dot, ext = segment.rpartition(".")
    return ext.lower() if dot and stem else ""


Getter = Callable[[EvalContext], Any]


@dataclass(frozen=True, slots=True)
class FieldDef:
    name: str
    type: Type
    get: Getter


_STRINGS = array_of(STRING)
_STRING_MAP = map_of(_STRINGS)

_RAW_ALIASES = (
    "http.request.uri",
    "http.request.uri.path",
    "http.request.uri.query",
    "http.request.full_uri",
    "http.request.uri.path.extension",
    "http.request.uri.args",
    "http.request.uri.args.names",
    "http.request.uri.args.values",
)

_DEFS: list[tuple[str, Type, Getter]] = [
    ("http.host", STRING, lambda c: c.request.host),
    ("http.request.uri", STRING, _uri),
    ("http.request.uri.path", STRING, lambda c: c.request.path),
    ("http.request.uri.path.extension", STRING, lambda c: path_extension(c.request.path)),
    ("http.request.uri.query", STRING, lambda c: c.request.query),
    ("http.request.full_uri", STRING, _full_uri),
    ("http.request.method", STRING, lambda c: c.request.method),
    ("http.request.version", STRING, lambda c: c.request.version),
    ("http.user_agent", STRING, lambda c: c.header("user-agent")),
    ("http.referer", STRING, lambda c: c.header("referer")),
    ("http.cookie", STRING, lambda c: c.header("cookie", "; ")),
    ("http.x_forwarded_for", STRING, lambda c: c.header("x-forwarded-for", ", ")),
    ("http.request.headers", _STRING_MAP, lambda c: c.headers),
    ("http.request.headers.names", _STRINGS, lambda c: tuple(n for n, _ in c.request.headers)),
    ("http.request.headers.values", _STRINGS, lambda c: tuple(v for _, v in c.request.headers)),
    ("http.request.cookies", _STRING_MAP, lambda c: c.cookies),
    ("http.request.uri.args", _STRING_MAP, lambda c: c.args),
    ("http.request.uri.args.names", _STRINGS, lambda c: tuple(n for n, _ in _split_query(c.request.query))),
    ("http.request.uri.args.values", _STRINGS, lambda c: tuple(v for _, v in _split_query(c.request.query))),
    ("http.request.timestamp.sec", INT, lambda c: c.request.timestamp_sec),
    ("http.request.timestamp.msec", INT, lambda c: c.request.timestamp_sec * 1000),
    ("ip.src", IP, lambda c: c.request.src_ip),
    ("ip.src.country", STRING, lambda c: c.request.country),
    ("ip.geoip.country", STRING, lambda c: c.request.country),
    # Geo and bot data edge does not have: constant, "unknown" values.
    ("ip.src.asnum", INT, lambda c: 0),
    ("ip.geoip.asnum", INT, lambda c: 0),
    ("ip.src.continent", STRING, lambda c: ""),
    ("ip.geoip.continent", STRING, lambda c: ""),
    ("ip.src.city", STRING, lambda c: ""),
    ("ip.src.region_code", STRING, lambda c: ""),
    ("ip.src.is_in_european_union", BOOL, lambda c: False),
    ("cf.client.bot", BOOL, lambda c: False),
    ("cf.threat_score", INT, lambda c: 0),
    ("cf.tls_version", STRING, lambda c: ""),
    ("cf.tls_cipher", STRING, lambda c: ""),
    ("cf.worker.upstream_zone", STRING, lambda c: ""),
    ("cf.edge.server_ip", IP, lambda c: c.request.edge_server_ip),
    ("cf.edge.server_port", INT, lambda c: c.request.edge_server_port),
    ("cf.ray_id", STRING, lambda c: c.request.ray_id),
    ("ssl", BOOL, lambda c: c.request.ssl),
]

#: Every field a rule may name, by name.  ``raw.*`` variants read the same (un-normalised) values.
FIELDS: dict[str, FieldDef] = {name: FieldDef(name, type_, get) for name, type_, get in _DEFS}
FIELDS.update(
    {f"raw.{name}": FieldDef(f"raw.{name}", FIELDS[name].type, FIELDS[name].get) for name in _RAW_ALIASES}
)
