"""The stub resolver the CDN and Spectrum use to find origins through the local resolver.

    stub = StubResolver(store, source_ip=str(net.cdn_egress_ip))
    resolution = await stub.resolve("spectrum.example.com", "A")
    resolution.addresses  # (IPv4Address('127.0.20.x'),)

Queries go from `source_ip` (the caller's egress address, so the resolver answers from its
internal view) to the resolver's address and port in the current snapshot (port offset
applied), over UDP with `tries` attempts of `timeout` seconds each; a truncated answer is asked
again over TCP. Answers are cached for their TTL (the smallest TTL along the CNAME chain) and
served from the cache until then, never after; the whole cache is dropped when the store's
generation changes. Negative answers are not cached.

Errors (all `ResolveError`): `NoSuchName` (NXDOMAIN), `NoData` (the name has no address of that
type), `ResolveTimeout` (no answer after every try), `ResolveRefused` (REFUSED: the name is in
no zone), `ResolveFailed` (SERVFAIL, FORMERR or a malformed answer). Foreign errors (OSError,
dnslib's) are translated here, at the I/O boundary.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import secrets
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Final

import dnslib

from edge.config import IPAddress
from edge.store import Snapshot, Store
from resolver.answers import INTERNAL, PUBLIC
from resolver.framing import FramingError, TcpFramer, encode_frame
from resolver.wire import NOERROR, NXDOMAIN, REFUSED, TC, encode_name, type_code

DEFAULT_TRIES: Final = 3
DEFAULT_TIMEOUT: Final = 0.5
# Address types the stub answers with.
_ADDRESS_TYPES: Final = {"A": 1, "AAAA": 28}


class ResolveError(Exception):
    """A name could not be resolved; `name` and `rdtype` say which lookup."""

    def __init__(self, message: str, *, name: str = "", rdtype: str = "") -> None:
        super().__init__(message)
        self.name = name
        self.rdtype = rdtype


class NoSuchName(ResolveError):
    """NXDOMAIN: the name does not exist."""


class NoData(ResolveError):
    """The name exists but has no record of the asked type."""


class ResolveTimeout(ResolveError):
    """The resolver did not answer in any of the tries."""


class ResolveRefused(ResolveError):
    """REFUSED: the resolver is not authoritative for the name."""


class ResolveFailed(ResolveError):
    """SERVFAIL (or another error code, or an answer that could not be read)."""


@dataclass(frozen=True, slots=True)
class Resolution:
    addresses: tuple[IPAddress, ...]
    ttl: int  # seconds left (the full TTL on a fresh answer)
    view: str  # "internal" or "public": the view the resolver answers `source_ip` from
    cname_chain: tuple[str, ...]  # the CNAME targets followed, in order, without trailing dots
    elapsed_ms: float
    from_cache: bool


@dataclass(frozen=True, slots=True)
class _Cached:
    expires: float
    resolution: Resolution


class _UdpExchange(asyncio.DatagramProtocol):
    """Waits for the datagram answering one query (matching ID and question)."""

    def __init__(self, ident: int, question: bytes) -> None:
        self.ident = ident
        self.question = question
        self.answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.error: OSError | None = None

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if self.answer.done() or len(data) < 12 + len(self.question):
            return
        ident, flags = struct.unpack_from("!HH", data)
        # Our question is lower case; the resolver echoes it as sent.
        if ident != self.ident or not flags & 0x8000 or data[12 : 12 + len(self.question)].lower() != self.question:
            return  # not ours: keep waiting (RFC 5452)
        self.answer.set_result(bytes(data))

    def error_received(self, exc: Exception) -> None:
        if isinstance(exc, OSError):
            self.error = exc


class StubResolver:
    """See the module docstring. One per caller; `aclose()` when done."""

    def __init__(
        self,
        store: Store,
        *,
        source_ip: str | IPAddress,
        tries: int = DEFAULT_TRIES,
        timeout: float = DEFAULT_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self.source_ip = str(source_ip)
        self.tries = max(1, tries)
        self.timeout = timeout
        self._clock = clock
        self._cache: dict[tuple[str, str], _Cached] = {}
        self._generation = store.current.generation
        self._unsubscribe: Callable[[], None] | None = store.subscribe(self._on_snapshot)
        self._closed = False

    # ---------------------------------------------------------------- cache

    def _on_snapshot(self, snapshot: Snapshot) -> None:
        if snapshot.generation != self._generation:
            self._generation = snapshot.generation
            self._cache.clear()

    def flush(self) -> None:
        self._cache.clear()

    # ---------------------------------------------------------------- API

    async def resolve(self, name: str, rdtype: str = "A", *, now: float | None = None) -> Resolution:
        """Addresses of `name` (`rdtype` "A" or "AAAA"); raises a `ResolveError` (module docstring).
        `now` is the time on the stub's clock (default `clock()`), for TTL checks."""
        if self._closed:
            raise ResolveFailed("the stub resolver is closed", name=name, rdtype=rdtype)
        rdtype = rdtype.upper()
        if rdtype not in _ADDRESS_TYPES:
            raise ValueError(f"the stub resolves addresses (A, AAAA), not {rdtype!r}")
        qname = name.lower().rstrip(".")
        snapshot = self._store.current
        self._on_snapshot(snapshot)
        t = self._clock() if now is None else now
        key = (qname, rdtype)
        cached = self._cache.get(key)
        if cached is not None:
            if t < cached.expires:
                left = max(0, int(cached.expires - t))
                return replace(cached.resolution, ttl=left, elapsed_ms=0.0, from_cache=True)
            del self._cache[key]
        started = time.perf_counter()
        wire = await self._exchange(snapshot, qname, rdtype)
        resolution = self._interpret(snapshot, wire, qname, rdtype, started)
        # Only cache if the generation did not change while asking.
        if resolution.ttl > 0 and self._generation == snapshot.generation:
            self._cache[key] = _Cached(t + resolution.ttl, resolution)
        return resolution

    async def resolve_addresses(self, name: str, *, now: float | None = None) -> Resolution:
        """A, then AAAA if there is no A: the first that has addresses."""
        try:
            return await self.resolve(name, "A", now=now)
        except NoData:
            return await self.resolve(name, "AAAA", now=now)

    async def aclose(self) -> None:
        self._closed = True
        self._cache.clear()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    # ---------------------------------------------------------------- exchange

    def _view(self, snapshot: Snapshot) -> str:
        net = snapshot.config.network
        return INTERNAL if self.source_ip in (str(net.cdn_egress_ip), str(net.spectrum_egress_ip)) else PUBLIC

    async def _exchange(self, snapshot: Snapshot, qname: str, rdtype: str) -> bytes:
        net = snapshot.config.network
        server = (str(net.resolver), snapshot.dial_port(net.resolver, net.resolver_port))
        try:
            question = encode_name(qname) + struct.pack("!HH", type_code(rdtype), 1)
        except ValueError as e:
            raise NoSuchName(f"{qname!r} is not a valid name: {e}", name=qname, rdtype=rdtype) from None
        ident = secrets.randbits(16)
        query = struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + question
        loop = asyncio.get_running_loop()
        try:
            transport, protocol = await loop.create_datagram_endpoint(
                lambda: _UdpExchange(ident, question), local_addr=(self.source_ip, 0), remote_addr=server
            )
        except OSError as e:
            raise ResolveFailed(
                f"cannot send to the resolver {server[0]}:{server[1]} from {self.source_ip}: {e}",
                name=qname,
                rdtype=rdtype,
            ) from e
        last_error: OSError | None = None
        try:
            for _ in range(self.tries):
                transport.sendto(query)
                # An ICMP error (resolver not listening) is noted, and the try still waits its
                # full timeout: the resolver may be restarting.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.timeout):
                        await asyncio.shield(protocol.answer)
                if protocol.answer.done():
                    wire = protocol.answer.result()
                    if struct.unpack_from("!H", wire, 2)[0] & TC:
                        return await self._exchange_tcp(server, query, question, qname, rdtype)
                    return wire
                last_error = protocol.error or last_error
        finally:
            transport.close()
        why = f" ({last_error.strerror or last_error})" if last_error is not None else ""
        raise ResolveTimeout(
            f"no answer from the resolver {server[0]}:{server[1]} for {qname} {rdtype}"
            f" after {self.tries} tries of {self.timeout}s{why}",
            name=qname,
            rdtype=rdtype,
        )

    async def _exchange_tcp(
        self, server: tuple[str, int], query: bytes, question: bytes, qname: str, rdtype: str
    ) -> bytes:
        try:
            async with asyncio.timeout(self.timeout * self.tries):
                reader, writer = await asyncio.open_connection(server[0], server[1], local_addr=(self.source_ip, 0))
                try:
                    writer.write(encode_frame(query))
                    await writer.drain()
                    framer = TcpFramer()
                    while True:
                        data = await reader.read(65537)
                        if not data:
                            raise ResolveFailed(
                                f"the resolver closed the TCP connection for {qname} {rdtype}",
                                name=qname,
                                rdtype=rdtype,
                            )
                        for message in framer.feed(data):
                            if message[:2] == query[:2] and message[12 : 12 + len(question)].lower() == question:
                                return message
                finally:
                    writer.close()
                    with contextlib.suppress(OSError):
                        await writer.wait_closed()
        except TimeoutError:
            raise ResolveTimeout(
                f"no TCP answer from the resolver {server[0]}:{server[1]} for {qname} {rdtype}",
                name=qname,
                rdtype=rdtype,
            ) from None
        except (OSError, FramingError) as e:
            raise ResolveFailed(
                f"TCP to the resolver {server[0]}:{server[1]} failed for {qname} {rdtype}: {e}",
                name=qname,
                rdtype=rdtype,
            ) from e

    def _interpret(self, snapshot: Snapshot, wire: bytes, qname: str, rdtype: str, started: float) -> Resolution:
        try:
            message = dnslib.DNSRecord.parse(wire)
        except Exception as e:
            raise ResolveFailed(f"unreadable answer for {qname} {rdtype}: {e}", name=qname, rdtype=rdtype) from e
        rcode = int(message.header.rcode)
        if rcode == NXDOMAIN:
            raise NoSuchName(f"{qname}: no such name (NXDOMAIN)", name=qname, rdtype=rdtype)
        if rcode == REFUSED:
            raise ResolveRefused(f"{qname}: refused (no zone serves it)", name=qname, rdtype=rdtype)
        if rcode != NOERROR:
            name = dnslib.RCODE.get(rcode, str(rcode))
            raise ResolveFailed(f"{qname} {rdtype}: the resolver answered {name}", name=qname, rdtype=rdtype)
        want = _ADDRESS_TYPES[rdtype]
        current = qname
        chain: list[str] = []
        ttls: list[int] = []
        addresses: list[IPAddress] = []
        for _ in range(16):
            owned = [rr for rr in message.rr if str(rr.rname).lower().rstrip(".") == current]
            found = [rr for rr in owned if rr.rtype == want]
            if found:
                for rr in found:
                    addresses.append(ipaddress.ip_address(str(rr.rdata)))
                    ttls.append(int(rr.ttl))
                break
            cnames = [rr for rr in owned if rr.rtype == 5]
            if not cnames:
                break
            current = str(cnames[0].rdata).lower().rstrip(".")
            ttls.append(int(cnames[0].ttl))
            if current in chain:
                break
            chain.append(current)
        if not addresses:
            raise NoData(f"{qname} has no {rdtype} record", name=qname, rdtype=rdtype)
        return Resolution(
            addresses=tuple(addresses),
            ttl=min(ttls),
            view=self._view(snapshot),
            cname_chain=tuple(chain),
            elapsed_ms=round((time.perf_counter() - started) * 1000, 3),
            from_cache=False,
        )
