"""Connections from the CDN to origins: dial from the egress address, TLS per SSL mode, pooling.

- `OriginTarget` names one upstream: address, dial port (offset applied), TLS or not, SNI and
  whether the certificate is verified. Idle keep-alive connections are pooled per target key
  `(address, port, tls, sni, verify)`.
- `UpstreamPool.acquire(target)` returns a connected `UpstreamConnection` (an asyncio Protocol
  speaking h11 as the client), reusing an idle one when it can. Foreign errors are translated
  here, once: ECONNREFUSED -> 521, connect timeout -> 522, no route -> 523, a certificate that
  does not verify -> 526, any other TLS handshake failure -> 525, anything else -> 520.
- While a request is in flight the connection belongs to an `UpstreamOwner` (the client
  connection), which receives the origin's h11 events, raw bytes after a 101, flow-control
  signals and the loss of the connection.
"""

from __future__ import annotations

import asyncio
import errno
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, cast

import h11

from cdn.errors import (
    EdgeError,
    OriginConnectTimeout,
    OriginDown,
    OriginInvalidCertificate,
    OriginTLSHandshakeFailed,
    OriginUnknownError,
    OriginUnreachable,
)

# Idle connections kept per target; beyond this a released connection is closed.
MAX_IDLE_PER_TARGET = 256
# An idle pooled connection older than this is closed rather than reused (origins commonly
# close idle keep-alive connections after 60-75 s; reusing one at that moment races the close).
IDLE_TTL = 50.0
# The origin's response head (status line plus headers) may not exceed this (reference: 16 KB
# headers -> 520).
MAX_ORIGIN_HEAD = 16 * 1024 + 1024


@dataclass(frozen=True, slots=True)
class OriginTarget:
    address: str
    port: int  # the port actually dialled (port offset already applied)
    tls: bool
    sni: str | None
    verify: bool

    @property
    def key(self) -> tuple[str, int, bool, str | None, bool]:
        return (self.address, self.port, self.tls, self.sni, self.verify)

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"


@dataclass(slots=True)
class ConnectTimings:
    tcp_ms: int = 0
    tls_ms: int = 0
    reused: bool = False


class UpstreamOwner(Protocol):
    def upstream_events(self, up: UpstreamConnection) -> None: ...
    def upstream_raw(self, data: bytes) -> None: ...
    def upstream_eof(self) -> None: ...
    def upstream_lost(self, up: UpstreamConnection, exc: Exception | None) -> None: ...
    def upstream_pause_writing(self) -> None: ...
    def upstream_resume_writing(self) -> None: ...


class UpstreamConnection(asyncio.Protocol):
    """One connection to an origin. h11 (client side) until a 101, raw bytes after."""

    def __init__(self, pool: UpstreamPool | None, key: tuple[str, int, bool, str | None, bool]) -> None:
        self.pool = pool
        self.key = key
        self.conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_ORIGIN_HEAD)
        self.transport: asyncio.Transport | None = None
        self.owner: UpstreamOwner | None = None
        self.closed = False
        self.raw = False
        self.bytes_in_cycle = 0
        self.idle_since = 0.0
        self.tls_version = ""
        self._out: list[bytes] | None = None  # see cork()

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.bytes_in_cycle += len(data)
        owner = self.owner
        if owner is None:  # bytes on an idle connection: the origin is misbehaving; drop it
            self.close()
            return
        if self.raw:
            owner.upstream_raw(data)
            return
        self.conn.receive_data(data)
        owner.upstream_events(self)

    def eof_received(self) -> bool | None:
        owner = self.owner
        if owner is None:
            self.close()
            return None
        if self.raw:
            owner.upstream_eof()
            return True  # keep our write side open: the client may still send
        self.conn.receive_data(b"")
        owner.upstream_events(self)
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.pool is not None:
            self.pool.discard(self)
        owner, self.owner = self.owner, None
        if owner is not None:
            owner.upstream_lost(self, exc)

    def pause_writing(self) -> None:
        if self.owner is not None:
            self.owner.upstream_pause_writing()

    def resume_writing(self) -> None:
        if self.owner is not None:
            self.owner.upstream_resume_writing()

    # -- use

    def send(self, event: Any) -> None:
        data = self.conn.send(event)
        if data:
            out = self._out
            if out is not None:
                out.append(data)
            elif self.transport is not None:
                self.transport.write(data)

    def cork(self) -> None:
        """Gather what `send` produces until `uncork`, then write it at once (one segment)."""
        if self._out is None:
            self._out = []

    def uncork(self) -> None:
        out, self._out = self._out, None
        if out and self.transport is not None and not self.closed:
            self.transport.write(b"".join(out) if len(out) > 1 else out[0])

    def write_raw(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def pause_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def reusable(self) -> bool:
        return (
            not self.closed and not self.raw and self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE
        )

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


def _translate_connect_error(e: BaseException) -> EdgeError:
    if isinstance(e, ConnectionRefusedError):
        return OriginDown(str(e))
    if isinstance(e, TimeoutError):
        return OriginConnectTimeout("no SYN-ACK in time")
    if isinstance(e, OSError) and e.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return OriginUnreachable(str(e))
    return OriginUnknownError(f"connect failed: {e!r}")


def _translate_tls_error(e: BaseException) -> EdgeError:
    if isinstance(e, ssl.SSLCertVerificationError):
        return OriginInvalidCertificate(e.verify_message or str(e))
    return OriginTLSHandshakeFailed(repr(e))


class UpstreamPool:
    """Keep-alive connections to origins, keyed by target. Owned by the CDN role; `aclose()`."""

    def __init__(
        self,
        *,
        insecure_context: ssl.SSLContext,
        verify_context: Callable[[], ssl.SSLContext],
    ) -> None:
        self._idle: dict[tuple[str, int, bool, str | None, bool], list[UpstreamConnection]] = {}
        self._insecure = insecure_context
        self._verify = verify_context
        self._all: set[UpstreamConnection] = set()
        self._draining = False

    def take_idle(self, target: OriginTarget) -> UpstreamConnection | None:
        bucket = self._idle.get(target.key)
        now = time.monotonic()
        while bucket:
            up = bucket.pop()
            if up.closed or up.transport is None or up.transport.is_closing():
                continue
            if now - up.idle_since > IDLE_TTL:
                up.close()
                continue
            return up
        return None

    async def connect(
        self, target: OriginTarget, *, local_ip: str, timeout: float, timings: ConnectTimings
    ) -> UpstreamConnection:
        loop = asyncio.get_running_loop()
        up = UpstreamConnection(self, target.key)
        t0 = time.monotonic()
        try:
            async with asyncio.timeout(timeout):
                transport, _ = await loop.create_connection(
                    lambda: up, host=target.address, port=target.port, local_addr=(local_ip, 0)
                )
        except (OSError, TimeoutError) as e:
            raise _translate_connect_error(e) from e
        t1 = time.monotonic()
        timings.tcp_ms = round((t1 - t0) * 1000)
        self._all.add(up)
        if target.tls:
            context = self._verify() if target.verify else self._insecure
            try:
                new = await loop.start_tls(
                    transport, up, context, server_hostname=target.sni, ssl_handshake_timeout=timeout
                )
            except (OSError, ssl.SSLError, TimeoutError, ConnectionError) as e:
                transport.abort()
                self._all.discard(up)
                raise _translate_tls_error(e) from e
            if new is None:
                transport.abort()
                self._all.discard(up)
                raise OriginTLSHandshakeFailed("origin closed during the TLS handshake")
            up.transport = new
            sslobj = new.get_extra_info("ssl_object")
            up.tls_version = sslobj.version() if sslobj is not None else ""
            timings.tls_ms = round((time.monotonic() - t1) * 1000)
        return up

    def release(self, up: UpstreamConnection) -> None:
        """Back to the pool if it can carry another request; closed otherwise."""
        up.owner = None
        if self._draining or not up.reusable():
            up.close()
            return
        up.conn.start_next_cycle()
        up.bytes_in_cycle = 0
        up.idle_since = time.monotonic()
        bucket = self._idle.setdefault(up.key, [])
        if len(bucket) >= MAX_IDLE_PER_TARGET:
            up.close()
            return
        bucket.append(up)

    def discard(self, up: UpstreamConnection) -> None:
        self._all.discard(up)
        bucket = self._idle.get(up.key)
        if bucket and up in bucket:
            bucket.remove(up)

    def idle_count(self) -> int:
        return sum(len(b) for b in self._idle.values())

    def drain(self) -> None:
        """Shutdown has begun: close the idle connections and pool no more (an idle upstream to
        Spectrum would otherwise hold a relay open until the shutdown deadline)."""
        self._draining = True
        for bucket in list(self._idle.values()):
            for up in list(bucket):
                up.close()
        self._idle.clear()

    async def aclose(self) -> None:
        for up in list(self._all):
            up.close()
        self._idle.clear()
        self._all.clear()


def insecure_client_context() -> ssl.SSLContext:
    """SSL mode `full`: TLS to the origin without certificate checks."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx
