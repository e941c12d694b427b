"""The Spectrum role: listeners on (edge IP, transport, port), TCP relays, UDP flows.

`serve_spectrum(ctx)` binds one listener per (edge IP, transport, port) of the live snapshot
(`spectrum.routing.routes_for`), plus, on every Spectrum edge IP, the CDN's HTTP/HTTPS ports no
app owns (handshake, then close: reference 2.3 "unconfigured port"). It reports ready once the
first set is bound and then follows the store: on every swap it closes removed listeners
first, opens new ones, and leaves the rest (and their connections) alone. A listener looks its
app up per connection in the snapshot current at accept time; the connection keeps that app
until it ends. The server object is published as `ctx.extras["spectrum"]` (tests and the
bench read its counters; `wait_generation` waits for a reconcile).

TCP relay (`TcpRelay`): two `asyncio.BufferedProtocol` sides reading into one shared 1 MiB
buffer (safe: every read leaves it synchronously in `buffer_updated`, so an idle connection
holds no buffer at all). When the other side's transport has nothing queued, the read is
written straight from the shared buffer to its socket (`os.write`, plain TCP only) and only
what the socket did not take is copied into the transport; otherwise the read is copied and
queued behind what is already there, so the byte order holds. Backpressure both ways: a
side's transport past `HIGH_WATER` pauses reading on the other side until it drains below
`LOW_WATER`, so a relay buffers at most about HIGH_WATER + one read per direction. A
half-close is propagated (`write_eof` on the other side) and the connection ends when both
directions have ended. Idle timeout
`limits.spectrum_idle_timeout`; origin connect timeout `limits.origin_connect_timeout`;
origins are dialled from `network.spectrum_egress_ip` (uvloop's create_connection with
local_addr; when a PROXY header must precede an origin TLS handshake, a socket of our own with
IP_BIND_ADDRESS_NO_PORT), several origins round-robin with failover on a failed connect.
The PROXY header (v1/v2) goes out once, before any payload (and before origin TLS):
src = whoever connected (for the CDN's misdirected hop that is the CDN egress), dst = the
Spectrum edge IP and the app's (logical) port.

`tls` (TCP apps): off = bytes through; flexible = TLS terminated here with the zone's edge
certificate, plain to the origin; full = TLS both sides, origin not verified; strict = origin
verified against the local CA with SNI = the app hostname.

`traffic_type` http/https: the connection is handed to the CDN (see `HANDOFF_CONTRACT`).

UDP: per listener a `spectrum.flows.FlowTable` (bounded by `limits.max_udp_flows`, idle
`limits.udp_idle_timeout`, one timer armed at its next deadline), one connected origin socket
per flow bound to the egress address. `proxy_protocol: simple` puts SPP on every datagram both
ways (the origin's reply header is checked and stripped); `v2` prefixes the first datagram of
a flow.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import ipaddress
import os
import socket
import ssl
import time
from typing import TYPE_CHECKING, Any, cast

import structlog

from edge.config import IPAddress, Zone
from edge.runtime import RoleContext, Throttled, open_tcp_listener, open_udp_socket
from spectrum import proxy_protocol as pp
from spectrum import records as rec
from spectrum.routing import (
    AccessDecision,
    OriginTarget,
    Route,
    RouteKey,
    check_access,
    diff_listeners,
    direct_targets,
    dns_port,
    dns_rdtypes,
    failover_order,
    match_route,
    routes_for,
)

if TYPE_CHECKING:
    from spectrum.udp import UdpListener

log = structlog.get_logger("spectrum.server")

# One read at most this big; the buffer is shared by every relay of the server (an idle
# connection holds none). Measured on one 2 GiB transfer (bench/spectrum, 2 cores): 64 KiB
# ~960 MB/s with the relay at 100% CPU; 256 KiB ~1,200-1,350; 1 MiB ~1,500-1,650 (fewer
# read/write calls per byte; the relay then waits on the client and origin, below 100% CPU).
READ_SIZE = 1024 * 1024
# Per-direction write-buffer limits: past HIGH_WATER the other side stops reading until the
# buffer drains below LOW_WATER. 256 KiB keeps a loopback pipe full without letting a slow
# reader pin more than ~320 KiB per direction.
HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024
# Listen backlog: bursts of new connections (the conn/s benchmark) queue here.
BACKLOG = 4096
# TLS handshake limit toward the client and the origin.
TLS_HANDSHAKE_TIMEOUT = 10.0
# Linux: choose the source port at connect() time, so many egress connections from one
# address do not exhaust ephemeral ports through bind(port=0). Used on the PROXY-header path;
# the plain path uses create_connection(local_addr=...) because it costs a third less per
# connection (measured: 4.7k vs 3.2k connections/s under the profiler).
_IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)

# The CDN's handoff listener port (logical; `cdn.server.HANDOFF_PORT`, the CDN's contract):
# Spectrum dials (network.cdn_ips[0], dial_port(cdn_ips[0], CDN_HANDOFF_PORT)).
CDN_HANDOFF_PORT = 2408

HANDOFF_CONTRACT = """\
Spectrum -> CDN handoff for traffic_type http/https apps (the CDN's contract, cdn/server.py).
Spectrum connects from network.spectrum_egress_ip to (network.cdn_ips[0],
dial_port(cdn_ips[0], 2408)), writes a PROXY v2 header (command PROXY, TCP; src = the real
client address and port, dst = the Spectrum edge IP and the app's logical port), then relays
the client's bytes unchanged both ways (the TLS stream for https apps, plain HTTP for http
apps). The CDN runs its pipeline with ip.src = src, cf.edge.server_ip/port = dst, and sends the
request to the app's origin (found by dst in the snapshot)."""

_NO_FIREWALL = AccessDecision(True, "UNKNOWN", "", "ip_firewall off")

_PENDING = 1  # reading paused: the origin is not connected yet
_BACKPRESSURE = 2  # reading paused: the other side's write buffer is full


def _ip(text: str) -> IPAddress:
    return ipaddress.ip_address(text.split("%", 1)[0])


# --------------------------------------------------------------------------- TCP relay


def _raw_fd(transport: asyncio.Transport) -> int:
    """The descriptor of a plain TCP transport (bytes may be written to it directly), else -1."""
    if transport.get_extra_info("sslcontext") is not None:
        return -1
    sock = transport.get_extra_info("socket")
    return int(sock.fileno()) if sock is not None else -1


class _Side(asyncio.BufferedProtocol):
    """One end of a relay. The client side is made by the listener, the origin side by the relay."""

    __slots__ = ("eof", "fd", "is_client", "lost", "nbytes", "paused", "relay", "transport")

    def __init__(self, relay: TcpRelay | None, is_client: bool) -> None:
        self.relay = relay
        self.is_client = is_client
        self.transport: asyncio.Transport | None = None
        self.fd = -1  # the plain-TCP socket's descriptor (direct writes), -1 under TLS
        self.eof = False
        self.lost = False
        self.paused = 0
        self.nbytes = 0

    # -- reading control
    def pause(self, reason: int) -> None:
        if not self.paused and self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()
        self.paused |= reason

    def resume(self, reason: int) -> None:
        was = self.paused
        self.paused &= ~reason
        if was and not self.paused and self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    # -- protocol callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not registered as asyncio.Transport subclasses.
        self.transport = transport = cast(asyncio.Transport, transport)
        transport.set_write_buffer_limits(high=HIGH_WATER, low=LOW_WATER)
        self.fd = _raw_fd(transport)
        relay = self.relay
        if relay is not None and not self.is_client:
            relay.origin_made()

    def get_buffer(self, sizehint: int) -> memoryview:
        assert self.relay is not None
        return self.relay.server.view

    def buffer_updated(self, nbytes: int) -> None:
        relay = self.relay
        assert relay is not None
        view = relay.server.view
        self.nbytes += nbytes
        relay.last_activity = relay.loop.time()
        other = relay.origin if self.is_client else relay.client
        transport = other.transport
        if transport is None or relay.pending is not None:
            relay.hold(view[:nbytes].tobytes())
            return
        sent = 0
        if other.fd >= 0 and transport.get_write_buffer_size() == 0 and not transport.is_closing():
            # Nothing queued: write straight from the shared buffer (no copy); only what the
            # socket did not take is copied into the transport's buffer. An error other than
            # "would block" is left for the transport to meet and report on the next write.
            with contextlib.suppress(OSError):
                sent = os.write(other.fd, view[:nbytes])
            if sent == nbytes:
                return
        transport.write(view[sent:nbytes].tobytes())

    def eof_received(self) -> bool | None:
        self.eof = True
        assert self.relay is not None
        return self.relay.on_eof(self)

    def pause_writing(self) -> None:
        assert self.relay is not None
        other = self.relay.origin if self.is_client else self.relay.client
        other.pause(_BACKPRESSURE)

    def resume_writing(self) -> None:
        assert self.relay is not None
        other = self.relay.origin if self.is_client else self.relay.client
        other.resume(_BACKPRESSURE)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.relay is not None:
            self.relay.on_lost(self, exc)


class _ClientSide(_Side):
    """Made per accepted connection; creates its relay in connection_made."""

    __slots__ = ("listener",)

    def __init__(self, listener: TcpListener) -> None:
        super().__init__(None, True)
        self.listener = listener

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not registered as asyncio.Transport subclasses.
        self.transport = transport = cast(asyncio.Transport, transport)
        self.fd = _raw_fd(transport)
        self.listener.accepted(self, transport)

    def get_buffer(self, sizehint: int) -> memoryview:
        if self.relay is None:  # an unowned port: nothing is read; closing
            return self.listener.server.view
        return self.relay.server.view

    def buffer_updated(self, nbytes: int) -> None:
        if self.relay is not None:
            super().buffer_updated(nbytes)

    def eof_received(self) -> bool | None:
        if self.relay is None:
            return None
        return super().eof_received()


class TcpRelay:
    """One client connection and its origin connection (a `Connection` for the runtime)."""

    __slots__ = (
        "client",
        "ended",
        "facts",
        "last_activity",
        "listener",
        "loop",
        "origin",
        "pending",
        "route",
        "server",
        "status",
        "task",
        "timer",
        "tls_client",
    )

    def __init__(self, listener: TcpListener, client: _ClientSide, route: Route, facts: rec.ConnectionFacts) -> None:
        self.listener = listener
        self.server = listener.server
        self.loop = self.server.loop
        self.route = route
        self.facts = facts
        self.client: _Side = client
        self.origin = _Side(self, False)
        self.pending: bytearray | None = None  # client bytes read before the origin was ready
        self.status: int | None = None
        self.ended = False
        self.task: asyncio.Task[None] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.last_activity = self.loop.time()
        self.tls_client = False

    # -- runtime Connection
    def shutdown(self) -> None:
        """Relays finish on their own (a byte stream has no request boundary to stop at)."""

    def abort(self) -> None:
        self._set_status(rec.STATUS_INTERNAL if self.status is None else self.status)
        self._abort_all()

    # -- buffered bytes (debug hook for tests and the bench)
    def buffered(self) -> int:
        total = len(self.pending) if self.pending is not None else 0
        for side in (self.client, self.origin):
            if side.transport is not None and not side.lost:
                total += side.transport.get_write_buffer_size()
        return total

    # -- lifecycle
    def start(self) -> None:
        self.client.pause(_PENDING)
        self.task = self.loop.create_task(self._open())
        self.task.add_done_callback(self._opened)

    def _opened(self, task: asyncio.Task[None]) -> None:
        self.task = None
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("spectrum.connection.failed", app=self.facts.app_id, error=repr(exc))
            self._set_status(rec.STATUS_INTERNAL)
            self._abort_all()

    async def _open(self) -> None:
        app = self.route.app
        mode = app.tls if app.traffic_type == "direct" else "off"
        if mode != "off" and not await self._client_tls():
            return
        targets: tuple[OriginTarget, ...]
        proxy: bytes = b""
        ssl_ctx: ssl.SSLContext | None = None
        sni: str | None = None
        if app.traffic_type != "direct":
            handoff = self.server.handoff_address()
            if handoff is None:
                log.warning("spectrum.handoff.unavailable", app=self.facts.app_id, contract=HANDOFF_CONTRACT)
                self._fail(rec.STATUS_ORIGIN_UNKNOWN)
                return
            targets = (OriginTarget("tcp", handoff[0], handoff[1]),)
            proxy = self.server.proxy_header("v2", self.facts)
            dial_raw = True
        else:
            status_or_targets = await self.server.origin_targets(self.route)
            if isinstance(status_or_targets, int):
                self._fail(status_or_targets)
                return
            targets = failover_order(status_or_targets, self.server.turn(self.facts.app_id))
            if app.proxy_protocol in ("v1", "v2"):
                proxy = self.server.proxy_header(app.proxy_protocol, self.facts)
            if mode in ("full", "strict"):
                ssl_ctx = self.server.origin_ssl(mode)
                sni = app.dns.name
            dial_raw = False
        timeout = self.server.snapshot.config.limits.origin_connect_timeout
        last: BaseException | None = None
        for target in targets:
            if self.ended:
                return
            port = target.port if dial_raw else self.server.dial_port(target.address, target.port)
            self.facts.origin_ip, self.facts.origin_port = str(target.address), target.port
            try:
                await self.server.dial(self.origin, target.address, port, timeout, ssl_ctx, sni, proxy)
                return
            except (OSError, TimeoutError) as e:
                last = e
                log.info(
                    "spectrum.origin.connect_failed",
                    app=self.facts.app_id,
                    origin=f"{target.address}:{port}",
                    error=repr(e),
                )
                continue
        self._fail(rec.connect_error_status(last) if last is not None else rec.STATUS_ORIGIN_UNKNOWN)

    async def _client_tls(self) -> bool:
        transport = self.client.transport
        assert transport is not None
        try:
            context = self.server.edge_ssl(self.route.zone)
        except Exception as e:
            log.error("spectrum.tls.unavailable", app=self.facts.app_id, error=repr(e))
            self._fail(rec.STATUS_INTERNAL)
            return False
        # The raw transport must not deliver bytes to us while TLS takes over.
        self.client.paused = 0
        self.client.fd = -1  # from here on every byte to the client goes through TLS
        try:
            new = await self.loop.start_tls(
                transport, self.client, context, server_side=True, ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT
            )
        except (OSError, TimeoutError, ConnectionError) as e:
            log.info("spectrum.tls.client_failed", app=self.facts.app_id, error=repr(e))
            self._fail(rec.STATUS_CLIENT_TLS_FAILED)
            return False
        self.client.transport = cast(asyncio.Transport, new)
        self.tls_client = True
        if self.pending is None:
            self.client.pause(_PENDING)
        return True

    def origin_made(self) -> None:
        """The origin is connected (and its TLS done): send what waited, start relaying."""
        origin = self.origin.transport
        assert origin is not None
        if self.ended or self.client.lost:
            origin.abort()
            return
        if self.pending is not None:
            origin.write(bytes(self.pending))
            self.pending = None
        if self.client.eof:
            self._propagate_eof(self.origin)
        self.client.resume(_PENDING)
        self.last_activity = self.loop.time()
        self.timer = self.loop.call_later(self.server.idle_timeout, self._idle_check)

    def hold(self, data: bytes) -> None:
        """Keep client bytes until the origin is connected."""
        if self.pending is None:
            self.pending = bytearray()
        self.pending += data
        if len(self.pending) >= HIGH_WATER:
            self.client.pause(_PENDING)
        if self.origin.transport is not None and not self.origin.lost:
            # Cannot happen today (origin_made flushes as it connects); kept as a safety net.
            self.origin.transport.write(bytes(self.pending))
            self.pending = None

    def on_eof(self, side: _Side) -> bool | None:
        other = self.origin if side is self.client else self.client
        if other.transport is not None and not other.lost:
            if side is self.client and self.pending is not None:
                pass  # written with the pending bytes when the origin connects
            else:
                self._propagate_eof(other)
        if self.client.eof and self.origin.eof:
            self._close_all()
            return None
        # SSL transports cannot stay half-open; asyncio warns if asked to.
        if side.transport is not None and side.transport.get_extra_info("sslcontext") is not None:
            return None
        return True

    def _propagate_eof(self, to: _Side) -> None:
        transport = to.transport
        assert transport is not None
        if transport.can_write_eof():
            transport.write_eof()
        else:
            transport.close()

    def on_lost(self, side: _Side, exc: Exception | None) -> None:
        if exc is not None and self.status is None:
            self._set_status(rec.client_loss_status(exc) if side is self.client else rec.origin_loss_status(exc))
        other = self.origin if side is self.client else self.client
        if other.transport is not None and not other.lost:
            if exc is not None:
                other.transport.abort()
            else:
                other.transport.close()
        if side is self.client and self.task is not None:
            self.task.cancel()
        if self.client.lost and (self.origin.lost or self.origin.transport is None):
            self._finish()

    def _idle_check(self) -> None:
        self.timer = None
        if self.ended:
            return
        idle = self.server.idle_timeout
        elapsed = self.loop.time() - self.last_activity
        if elapsed >= idle:
            log.info("spectrum.connection.idle_closed", app=self.facts.app_id, idle=idle)
            self._set_status(rec.STATUS_NORMAL)
            self._abort_all()
        else:
            self.timer = self.loop.call_later(idle - elapsed, self._idle_check)

    def _fail(self, status: int) -> None:
        self._set_status(status)
        self._close_all()
        if self.client.transport is None or self.client.lost:
            self._finish()

    def _set_status(self, status: int) -> None:
        if self.status is None:
            self.status = status

    def _close_all(self) -> None:
        for side in (self.client, self.origin):
            if side.transport is not None and not side.lost:
                side.transport.close()

    def _abort_all(self) -> None:
        for side in (self.client, self.origin):
            if side.transport is not None and not side.lost:
                side.transport.abort()

    def _finish(self) -> None:
        if self.ended:
            return
        self.ended = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.task is not None:
            self.task.cancel()
        self.facts.client_bytes = self.client.nbytes
        self.facts.origin_bytes = self.origin.nbytes
        status = rec.STATUS_NORMAL if self.status is None else self.status
        self.server.emit(rec.close_record(self.facts, "disconnect", status, time.time_ns()))
        self.listener.released(self)


class TcpListener:
    """One bound TCP (edge IP, port); routes each accepted connection by the live snapshot."""

    def __init__(self, server: SpectrumServer, key: RouteKey) -> None:
        self.server = server
        self.key = key
        self.live: set[TcpRelay] = set()
        self.handle: asyncio.AbstractServer | None = None
        self.bound_port = 0

    def factory(self) -> asyncio.BaseProtocol:
        return _ClientSide(self)

    def accepted(self, client: _ClientSide, transport: asyncio.Transport) -> None:
        server = self.server
        snapshot = server.snapshot
        route = match_route(routes_for(snapshot), self.key.ip, "tcp", self.key.port)
        if route is None:
            # Reference 2.3: on a Spectrum IP every handshake completes; no app -> close at once.
            log.debug("spectrum.connection.unowned", edge=f"{self.key.ip}:{self.key.port}")
            transport.close()
            return
        limit = snapshot.config.limits.max_connections_per_listener
        if len(self.live) >= limit:
            server.over_limit(server.loop.time(), edge=f"{self.key.ip}:{self.key.port}", limit=limit)
            transport.abort()
            return
        peer = transport.get_extra_info("peername") or ("0.0.0.0", 0)
        app = route.app
        facts = rec.ConnectionFacts(
            app_id=route.app_id,
            app_hostname=app.dns.name,
            colo=snapshot.config.network.colo,
            client_ip=str(peer[0]),
            client_port=int(peer[1]),
            edge_ip=str(self.key.ip),
            edge_port=self.key.port,
            proto="tcp",
            proxy_protocol=app.proxy_protocol if app.traffic_type == "direct" else "v2",
            ip_firewall=app.ip_firewall,
            tls_mode=app.tls,
            connect_ns=time.time_ns(),
        )
        relay = TcpRelay(self, client, route, facts)
        client.relay = relay
        transport.set_write_buffer_limits(high=HIGH_WATER, low=LOW_WATER)
        self.live.add(relay)
        server.ctx.connections.add(relay, "spectrum")
        server.emit(rec.connect_record(facts))
        decision = check_access(snapshot, route, _ip(facts.client_ip)) if app.ip_firewall else _NO_FIREWALL
        facts.matched_firewall = decision.matched
        if not decision.allowed:
            log.info("spectrum.connection.filtered", app=facts.app_id, client=facts.client_ip, rule=decision.rule_id)
            relay.ended = True
            transport.abort()
            server.emit(rec.close_record(facts, "clientFiltered", rec.STATUS_FILTERED, time.time_ns()))
            self.released(relay)
            return
        relay.start()

    def released(self, relay: TcpRelay) -> None:
        self.live.discard(relay)
        self.server.ctx.connections.discard(relay)

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None


# --------------------------------------------------------------------------- server


class SpectrumServer:
    """The listeners of one process, reconciled against the store."""

    def __init__(self, ctx: RoleContext) -> None:
        self.ctx = ctx
        self.loop = asyncio.get_running_loop()
        self.over_limit = Throttled("spectrum.connection.over_limit")
        self.buffer = bytearray(READ_SIZE)
        self.view = memoryview(self.buffer)
        self.tcp: dict[RouteKey, TcpListener] = {}
        self.udp: dict[RouteKey, UdpListener] = {}
        self.generation = -1
        self._generation_changed = asyncio.Event()
        self._turns: dict[str, int] = {}
        self._edge_ssl: dict[tuple[int, str], ssl.SSLContext] = {}
        self._origin_ssl: dict[str, ssl.SSLContext] = {}
        self._resolver: Any = None
        self._udp_dns: dict[tuple[str, int], tuple[float, tuple[OriginTarget, ...]]] = {}
        self._udp_resolving: set[tuple[str, int]] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def snapshot(self) -> Any:
        return self.ctx.store.current

    @property
    def idle_timeout(self) -> float:
        return float(self.snapshot.config.limits.spectrum_idle_timeout)

    @property
    def egress(self) -> IPAddress:
        ip: IPAddress = self.snapshot.config.network.spectrum_egress_ip
        return ip

    def emit(self, record: dict[str, Any]) -> None:
        self.ctx.events.emit("spectrum_events", record)

    def relays(self) -> list[TcpRelay]:
        return [r for listener in self.tcp.values() for r in listener.live]

    def turn(self, app_id: str) -> int:
        n = self._turns.get(app_id, 0)
        self._turns[app_id] = n + 1
        return n

    # -- reconcile

    async def reconcile(self) -> None:
        snapshot = self.snapshot
        table = routes_for(snapshot)
        for app_id, ip, want, bound in table.truncated:
            log.warning("spectrum.listener.range_truncated", app=app_id, ip=str(ip), ports=want, bound=bound)
        for key, kept, dropped in table.conflicts:
            log.warning(
                "spectrum.listener.conflict", edge=f"{key.transport}/{key.ip}:{key.port}", kept=kept, dropped=dropped
            )
        desired = table.listeners()
        current = {*self.tcp, *self.udp}
        diff = diff_listeners(current, desired)
        for key in diff.to_close:
            self._close_listener(key)
        for key in diff.to_open:
            await self._open_listener(key, snapshot, desired[key])
        self.generation = snapshot.generation
        self._generation_changed.set()
        self._generation_changed = asyncio.Event()
        if diff.to_open or diff.to_close:
            log.info(
                "spectrum.listeners.reconciled",
                generation=snapshot.generation,
                opened=len(diff.to_open),
                closed=len(diff.to_close),
                total=len(self.tcp) + len(self.udp),
            )

    async def wait_generation(self, generation: int) -> None:
        while self.generation < generation:
            await self._generation_changed.wait()

    def _bound_port(self, key: RouteKey) -> int:
        port: int = self.snapshot.listen_port(key.port)
        return port

    async def _open_listener(self, key: RouteKey, snapshot: Any, kind: str) -> None:
        route = match_route(routes_for(snapshot), key.ip, key.transport, key.port)
        name = route.app.dns.name if route is not None else f"unowned-{key.port}"
        port = self._bound_port(key)
        if key.transport == "tcp":
            listener = TcpListener(self, key)
            handle = await open_tcp_listener(
                self.ctx.binds,
                role="spectrum",
                name=name,
                address=str(key.ip),
                port=port,
                factory=listener.factory,
                backlog=BACKLOG,
                port_offset=snapshot.port_offset,
            )
            if handle is not None:
                listener.handle, listener.bound_port = handle, port
                self.tcp[key] = listener
        else:
            from spectrum.udp import UdpListener  # imports the flow table and codecs

            udp = UdpListener(self, key)
            opened = open_udp_socket(
                self.ctx.binds,
                role="spectrum",
                name=name,
                address=str(key.ip),
                port=port,
                on_readable=udp.on_readable,
                port_offset=snapshot.port_offset,
            )
            if opened is not None:
                udp.serve(*opened)
                udp.bound_port = port
                self.udp[key] = udp

    def _close_listener(self, key: RouteKey) -> None:
        """Stop accepting on one listener; its live TCP connections keep running (UDP flows end)."""
        if key.transport == "tcp":
            listener = self.tcp.pop(key, None)
            if listener is None:
                return
            port = listener.bound_port
            listener.close()
        else:
            udp = self.udp.pop(key, None)
            if udp is None:
                return
            port = udp.bound_port
            udp.close()
        self.ctx.binds.forget("spectrum", key.transport, str(key.ip), port)

    def close(self) -> None:
        for key in [*self.tcp, *self.udp]:
            self._close_listener(key)
        for task in list(self._tasks):
            task.cancel()

    # -- origins

    async def origin_targets(self, route: Route) -> tuple[OriginTarget, ...] | int:
        """The app's origins for this route, or a close Status when they cannot be found."""
        app = route.app
        if app.origin_dns is None:
            return direct_targets(route)
        port = dns_port(route)
        if port is None:
            log.warning("spectrum.origin.srv_unsupported", app=route.app_id)
            return rec.STATUS_ORIGIN_NOT_RESOLVED
        resolver = self._stub()
        if resolver is None:
            return rec.STATUS_RESOLVE_INTERNAL
        stub = importlib.import_module("resolver.stub")
        no_answer = (stub.NoSuchName, stub.NoData)

        addresses: list[IPAddress] = []
        for rdtype in dns_rdtypes(route):
            try:
                res = await resolver.resolve(app.origin_dns.name, rdtype)
            except no_answer:
                continue
            except stub.ResolveError as e:
                log.warning("spectrum.origin.resolve_failed", app=route.app_id, error=repr(e))
                return rec.STATUS_RESOLVE_INTERNAL
            addresses += [a if not isinstance(a, str) else ipaddress.ip_address(a) for a in res.addresses]
        if not addresses:
            return rec.STATUS_ORIGIN_NOT_RESOLVED
        return tuple(OriginTarget(app.transport, a, port) for a in addresses)

    def udp_targets(self, route: Route) -> tuple[OriginTarget, ...]:
        """Origins for a new UDP flow, without waiting: origin_direct at once; origin_dns from
        the last resolution (refreshed in the background at its TTL; until the first answer
        arrives new flows are refused and their datagrams dropped)."""
        if route.app.origin_dns is None:
            return direct_targets(route)
        key = (route.app_id, route.key.port)
        cached = self._udp_dns.get(key)
        now = self.loop.time()
        if (cached is None or cached[0] <= now) and key not in self._udp_resolving:
            self._udp_resolving.add(key)
            task = self.loop.create_task(self._resolve_udp(route, key))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return cached[1] if cached is not None else ()

    async def _resolve_udp(self, route: Route, key: tuple[str, int]) -> None:
        try:
            result = await self.origin_targets(route)
            ttl = float(route.app.origin_dns.ttl) if route.app.origin_dns is not None else 600.0
            if not isinstance(result, int):
                self._udp_dns[key] = (self.loop.time() + ttl, result)
        finally:
            self._udp_resolving.discard(key)

    def _stub(self) -> Any:
        if self._resolver is None:
            try:
                stub = importlib.import_module("resolver.stub")
            except ImportError:
                log.error("spectrum.origin.no_resolver", reason="resolver.stub is not available")
                return None
            self._resolver = stub.StubResolver(self.ctx.store, source_ip=self.egress)
        return self._resolver

    async def dial(
        self,
        protocol: asyncio.BaseProtocol,
        address: IPAddress,
        port: int,
        timeout: float,
        ssl_ctx: ssl.SSLContext | None,
        sni: str | None,
        preamble: bytes = b"",
    ) -> None:
        """Connect `protocol` to address:port from the egress address and write `preamble` (the
        PROXY header) on the raw socket first, so it precedes a TLS handshake to the origin too.
        Raises OSError or TimeoutError."""
        # Our own socket even without a preamble: IP_BIND_ADDRESS_NO_PORT lets the kernel pick
        # the egress port at connect time instead of searching for one at bind time (much
        # cheaper at a high connection rate).
        egress = self.egress
        family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            if egress.version == address.version:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_IP, _IP_BIND_ADDRESS_NO_PORT, 1)
                sock.bind((str(egress), 0))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            async with asyncio.timeout(timeout):
                await self.loop.sock_connect(sock, (str(address), port))
                if preamble:
                    await self.loop.sock_sendall(sock, preamble)
                await self.loop.create_connection(
                    lambda: protocol,
                    sock=sock,
                    ssl=ssl_ctx,
                    server_hostname=sni if ssl_ctx is not None else None,
                    ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT if ssl_ctx is not None else None,
                )
        except BaseException:
            sock.close()
            raise

    def proxy_header(self, version: str, facts: rec.ConnectionFacts) -> bytes:
        """PROXY v1/v2 for a TCP connection: src = who connected, dst = edge IP and app port."""
        src = (_ip(facts.client_ip), facts.client_port)
        dst = (_ip(facts.edge_ip), facts.edge_port)
        if version == "v1":
            return pp.encode_v1(src, dst)
        return pp.encode_v2(src, dst, "tcp")

    def dial_port(self, address: IPAddress, port: int) -> int:
        """`snapshot.dial_port`, memoised per snapshot (it is on every connection's path)."""
        memo: dict[tuple[IPAddress, int], int] = self.snapshot.derived("spectrum.dial_ports", lambda _s: {})
        value = memo.get((address, port))
        if value is None:
            value = memo[(address, port)] = int(self.snapshot.dial_port(address, port))
        return value

    def handoff_address(self) -> tuple[IPAddress, int] | None:
        """The CDN's handoff listener (address, dial port), or None when there is no CDN IP."""
        snapshot = self.snapshot
        cdn_ips = snapshot.config.network.cdn_ips
        if not cdn_ips:
            return None
        address: IPAddress = cdn_ips[0]
        return (address, int(snapshot.dial_port(address, CDN_HANDOFF_PORT)))

    # -- TLS

    def edge_ssl(self, zone: Zone) -> ssl.SSLContext:
        key = (self.snapshot.generation, zone.name)
        context = self._edge_ssl.get(key)
        if context is None:
            from certs.files import EdgeCertificates, open_ca

            ca, _ = open_ca(self.ctx.state_dir)
            certs = self.ctx.extras.get("spectrum.edge_certificates")
            if certs is None:
                certs = self.ctx.extras["spectrum.edge_certificates"] = EdgeCertificates(self.ctx.state_dir, ca)
            context = certs.ssl_context_for_zone(zone.name, zone.settings.advanced_certificate_hosts)
            assert isinstance(context, ssl.SSLContext)
            self._edge_ssl = {k: v for k, v in self._edge_ssl.items() if k[0] == key[0]}
            self._edge_ssl[key] = context
        return context

    def origin_ssl(self, mode: str) -> ssl.SSLContext:
        context = self._origin_ssl.get(mode)
        if context is None:
            if mode == "strict":
                from certs.files import client_ssl_context

                context = client_ssl_context(self.ctx.state_dir)
            else:
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            self._origin_ssl[mode] = context
        return context


async def serve_spectrum(ctx: RoleContext) -> None:
    """Role `spectrum`: run until cancelled (listeners follow the store)."""
    server = SpectrumServer(ctx)
    ctx.extras["spectrum"] = server
    changed = asyncio.Event()
    loop = server.loop

    def on_swap(_snapshot: Any) -> None:
        loop.call_soon_threadsafe(changed.set)

    unsubscribe = ctx.store.subscribe(on_swap)
    try:
        await server.reconcile()
        ctx.binds.role_ready("spectrum")
        while True:
            await changed.wait()
            changed.clear()
            await server.reconcile()
    finally:
        unsubscribe()
        server.close()


__all__ = ["HANDOFF_CONTRACT", "SpectrumServer", "TcpListener", "TcpRelay", "serve_spectrum"]
