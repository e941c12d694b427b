"""The resolver role: authoritative DNS over UDP and TCP on `network.resolver`.

`serve_resolver(ctx)` binds UDP and TCP on `(network.resolver, listen_port(resolver_port))`,
reports `role_ready("resolver")`, and runs until cancelled. Every query is answered from
`ctx.store.current` (a config change is visible on the next query) by `resolver.answers`, and
produces one `dns_queries` record. The view is chosen by the source address: the CDN and
Spectrum egress addresses get the internal view, everyone else the public one.

TCP (RFC 7766): length-framed, any number of queries per connection (answered in order), closed
after `limits.dns_tcp_idle_timeout` without a query. Connections are registered with
`ctx.connections`: `shutdown()` closes at once (answers are written synchronously, so there is
never an exchange in progress), `abort()` drops the connection.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Final, cast

import structlog

from edge.runtime import RoleContext, Throttled, open_tcp_listener, open_udp_endpoint, open_udp_socket
from resolver import batch
from resolver.answers import Tables, View, respond, servfail, tables_for
from resolver.framing import FramingError, TcpFramer, encode_frame
from resolver.wire import name_text, type_name

log = structlog.get_logger("resolver.server")

ROLE: Final = "resolver"
# Query names rendered as text for the records, remembered by their wire bytes (bounded).
_NAME_CACHE_SIZE: Final = 4096
_TYPE_TEXT: Final = {code: type_name(code) for code in range(1, 300)}


class _Resolver:
    """What the UDP endpoint and every TCP connection share: the store, tables and the sink."""

    def __init__(self, ctx: RoleContext) -> None:
        self.ctx = ctx
        self._emit = ctx.events.emit
        self._snapshot: Any = None
        self._tables: Tables | None = None
        self._names: dict[bytes, str] = {}
        self._public: View
        self._internal: View
        self._internal_sources: frozenset[str] = frozenset()
        self.tcp_live = 0  # open TCP connections, for limits.max_connections_per_listener
        self.over_limit = Throttled("resolver.tcp.over_limit")

    def tables(self) -> Tables:
        snapshot = self.ctx.store.current
        if snapshot is not self._snapshot or self._tables is None:
            tables = tables_for(snapshot)
            if tables.problems:
                log.warning("resolver.records.skipped", generation=snapshot.generation, problems=list(tables.problems))
            self._snapshot, self._tables = snapshot, tables
            self._public, self._internal = tables.public, tables.internal
            self._internal_sources = tables.internal_sources
        return self._tables

    def answer(self, data: bytes, ip: str, port: int, transport: str) -> bytes | None:
        """The response to send (None: drop), after recording the exchange."""
        started = time.perf_counter_ns()
        try:
            snapshot = self.ctx.store.current
            if snapshot is not self._snapshot:
                self.tables()
            view = self._internal if ip in self._internal_sources else self._public
            reply = respond(view, data, udp=transport == "udp")
        except Exception:
            log.exception("resolver.query.failed", source=ip)
            view = self._public
            reply = servfail(data)
        if reply is None:
            return None
        wire, rcode_name, answers, qname, qtype = reply
        name = self._names.get(qname)
        if name is None:
            name = self._name_text(qname)
        self._emit(
            "dns_queries",
            {
                "Timestamp": time.time_ns(),
                "SourceIP": ip,
                "SourcePort": port,
                "QueryName": name,
                "QueryType": _TYPE_TEXT.get(qtype) or (type_name(qtype) if qtype >= 0 else ""),
                "View": view.name,
                "ResponseCode": rcode_name,
                "Answers": list(answers),
                "DurationUs": (time.perf_counter_ns() - started) / 1000,
                "Transport": transport,
            },
        )
        return wire

    def answer_batch(self, queries: list[bytes], peers: list[tuple[str, int]]) -> list[bytes | None]:
        """`answer` for a batch of UDP queries read together: they share the receive time (the
        records' Timestamp) and the snapshot; DurationUs runs from the batch's receipt."""
        started = time.perf_counter_ns()
        received = time.time_ns()
        snapshot = self.ctx.store.current
        if snapshot is not self._snapshot:
            self.tables()
        public, internal, sources = self._public, self._internal, self._internal_sources
        names, emit, types = self._names, self._emit, _TYPE_TEXT
        out: list[bytes | None] = []
        for data, (ip, port) in zip(queries, peers, strict=True):
            view = internal if ip in sources else public
            try:
                reply = respond(view, data)
            except Exception:  # respond never raises; this is the belt to its braces
                log.exception("resolver.query.failed", source=ip)
                reply = servfail(data)
            if reply is None:
                out.append(None)
                continue
            wire, rcode_name, answers, qname, qtype = reply
            out.append(wire)
            name = names.get(qname)
            if name is None:
                name = self._name_text(qname)
            emit(
                "dns_queries",
                {
                    "Timestamp": received,
                    "SourceIP": ip,
                    "SourcePort": port,
                    "QueryName": name,
                    "QueryType": types.get(qtype) or (type_name(qtype) if qtype >= 0 else ""),
                    "View": view.name,
                    "ResponseCode": rcode_name,
                    "Answers": list(answers),
                    "DurationUs": (time.perf_counter_ns() - started) / 1000,
                    "Transport": "udp",
                },
            )
        return out

    def _name_text(self, qname: bytes) -> str:
        name = name_text(qname) if qname else ""
        if len(self._names) >= _NAME_CACHE_SIZE:
            self._names.clear()
        self._names[qname] = name
        return name


class _UdpServer(asyncio.DatagramProtocol):
    def __init__(self, resolver: _Resolver) -> None:
        self._resolver = resolver
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's is not a subclass; open_udp_endpoint has enlarged its buffers.
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        wire = self._resolver.answer(data, addr[0], addr[1], "udp")
        if wire is not None and self._transport is not None:
            self._transport.sendto(wire, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors for earlier answers (the client went away): nothing to do.
        pass


class _TcpConnection(asyncio.Protocol):
    """One DNS-over-TCP client: queries answered in order until idle, EOF or shutdown."""

    def __init__(self, resolver: _Resolver) -> None:
        self._resolver = resolver
        self._framer = TcpFramer()
        self._transport: asyncio.Transport | None = None
        self._peer: tuple[str, int] = ("", 0)
        self._timer: asyncio.TimerHandle | None = None
        self._last = 0.0
        self._idle = 10.0
        self._counted = False
        self._loop = asyncio.get_running_loop()

    # ---------------------------------------------------------------- protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        peer = self._transport.get_extra_info("peername")
        if peer:
            self._peer = (str(peer[0]), int(peer[1]))
        self._idle = float(self._resolver.ctx.store.current.config.limits.dns_tcp_idle_timeout)
        self._last = self._loop.time()
        self._timer = self._loop.call_later(self._idle, self._check_idle)
        limit = self._resolver.ctx.store.current.config.limits.max_connections_per_listener
        if self._resolver.tcp_live >= limit:
            self._resolver.over_limit(self._loop.time(), limit=limit)
            self._transport.abort()
            self._transport = None
            self._timer.cancel()
            return
        self._resolver.tcp_live += 1
        self._counted = True
        self._resolver.ctx.connections.add(self, "resolver")

    def data_received(self, data: bytes) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        self._last = self._loop.time()
        try:
            messages = self._framer.feed(data)
        except FramingError:
            transport.close()
            return
        ip, port = self._peer
        for message in messages:
            wire = self._resolver.answer(message, ip, port, "tcp")
            if wire is None:
                # Too short to carry an ID: nothing can be answered, and the stream is suspect.
                transport.close()
                return
            transport.write(encode_frame(wire))

    def eof_received(self) -> bool:
        return False  # every query read so far has been answered; close after the writes

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._counted:
            self._counted = False
            self._resolver.tcp_live -= 1
        self._resolver.ctx.connections.discard(self)

    def pause_writing(self) -> None:
        # The client is not reading its answers: stop reading its queries until it does.
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.resume_reading()

    # ---------------------------------------------------------------- lifecycle

    def _check_idle(self) -> None:
        self._timer = None
        if self._transport is None or self._transport.is_closing():
            return
        remaining = self._last + self._idle - self._loop.time()
        if remaining <= 0:
            log.debug("resolver.tcp.idle_closed", peer=self._peer[0])
            self._transport.close()
        else:
            self._timer = self._loop.call_later(remaining, self._check_idle)

    def shutdown(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()


def _open_batch_udp(
    ctx: RoleContext, address: str, port: int, resolver: _Resolver, port_offset: int
) -> Callable[[], None] | None:
    """Bind UDP with `open_udp_socket` (same bind record, same remedy on failure), served by
    `resolver.batch` from the loop's reader callback. Returns the closer, or None on failure."""
    server: list[batch.BatchSocket] = []  # set once the socket exists; the reader runs later
    handler = resolver.answer_batch

    def on_readable() -> None:
        try:
            server[0].serve(handler)
        except Exception:
            log.exception("resolver.udp.failed")

    opened = open_udp_socket(
        ctx.binds, role=ROLE, name="dns", address=address, port=port, on_readable=on_readable, port_offset=port_offset
    )
    if opened is None:
        return None
    sock, close = opened
    server.append(batch.BatchSocket(sock))
    return close


async def serve_resolver(ctx: RoleContext) -> None:
    """Serve DNS on the resolver address until cancelled (see the module docstring)."""
    snapshot = ctx.store.current
    net = snapshot.config.network
    address = str(net.resolver)
    port = snapshot.listen_port(net.resolver_port)
    resolver = _Resolver(ctx)
    resolver.tables()  # compile now, so the first query does not pay for it
    udp: Callable[[], None] | None
    if batch.available() and not ctx.extras.get("resolver.asyncio_udp"):
        udp = _open_batch_udp(ctx, address, port, resolver, snapshot.port_offset)
    else:
        endpoint = await open_udp_endpoint(
            ctx.binds,
            role=ROLE,
            name="dns",
            address=address,
            port=port,
            factory=lambda: _UdpServer(resolver),
            port_offset=snapshot.port_offset,
        )
        udp = endpoint.close if endpoint is not None else None
    tcp = await open_tcp_listener(
        ctx.binds,
        role=ROLE,
        name="dns",
        address=address,
        port=port,
        factory=lambda: _TcpConnection(resolver),
        port_offset=snapshot.port_offset,
    )
    try:
        if udp is not None and tcp is not None:
            log.info("resolver.listeners.bound", address=address, port=port)
            ctx.binds.role_ready(ROLE)
        # A failed bind is recorded with its remedy; readiness reports it. Run until cancelled.
        await asyncio.Event().wait()
    finally:
        if udp is not None:
            udp()
        if tcp is not None:
            tcp.close()
