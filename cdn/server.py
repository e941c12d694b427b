"""The CDN role: TLS by SNI, HTTP/1.1 with h11, WAF, origin pulls, events (DESIGN section 2).

`serve_cdn(ctx)` binds, on every `network.cdn_ips` address, a TLS listener on each
`cdn_https_ports` port and a plain listener on each `cdn_http_ports` port (`listen_port`
applied), plus the Spectrum handoff listener (below); reports `role_ready("cdn")` once all are
bound, and runs until cancelled, closing them in `finally`.

TLS accept (`TlsAcceptor`, `start_tls`): the HTTPS listeners are our own accept loops. The
ClientHello is peeked (MSG_PEEK, `cdn.clienthello.decode_sni`) before any TLS byte is consumed:
no SNI -> a plaintext `handshake_failure` (40) alert record, a name under no zone ->
`unrecognized_name` (112), bytes that are no ClientHello -> `decode_error` (50), then close (the
loop's TLS transports drop an alert raised inside the handshake, so we send it ourselves).
Otherwise the socket goes to the loop's TLS with the zone's cached SSLContext directly (no SNI
callback); session tickets come from that context, so resumption works per zone.

Request walk (one `ClientConnection` per TCP connection, one `Exchange` per request):
SNI -> zone -> h11 request -> header limits (431) -> Host check
(1003 / 1001 / 1013) -> inbound proxy-chain check (1000, clients only) -> CDN-Loop limit (1000)
-> WAF custom rules (1020 / challenge / log) -> SSL mode (`off` redirects HTTPS to HTTP) ->
origin: the Spectrum app's origin for a handoff, else the Host re-resolved through the stub
resolver's internal view (NXDOMAIN/NoData -> 1016; a CDN address -> 1000; localhost or an
emulator-internal address -> 1002) -> pooled upstream
dialled from `network.cdn_egress_ip` (521/522/523/525/526) -> request head and streamed body
-> response head within `limits.origin_read_timeout` (524; garbage -> 520) -> streamed body.
Every request emits one `http_requests` record, a `firewall_events` record per WAF match, and a
`Trace` (`ctx.events.put_trace`; a `cdn.trace.CdnTrace`, formatted when read).

Hot path (a keep-alive request, measured with bench/cdn/run.sh): the walk runs synchronously in
`data_received` when the Host's origin address is cached (`ResolvedOrigin`, per snapshot, for
the DNS TTL) and an idle pooled upstream exists -- no task, no future; a DNS miss or a new
upstream connection spawns one task. The wait for the origin is callbacks plus the connection's
single lazily re-armed timer (header / idle / origin read / linger deadlines). The request head
and body go to the origin in one write, the response head, body and end to the client in one
write (one TLS record). h11 parses both sides; the events we hand it to serialise are built
without re-validation (`_request_event`, `_response_event`).

Spectrum handoff (HTTP/HTTPS apps, issue 5) -- the contract:
- Listener: plain TCP on `(network.cdn_ips[0], listen_port(HANDOFF_PORT))`. Spectrum dials
  `(str(snapshot.config.network.cdn_ips[0]), snapshot.dial_port(cdn_ips[0], HANDOFF_PORT))` from
  `network.spectrum_egress_ip` (connections from any other address are refused: the listener
  trusts the PROXY header, so only Spectrum may speak to it).
- First bytes: a PROXY v2 header (v1 also accepted), command PROXY, TCP, with
  src = the real client (ip, port) and dst = the Spectrum edge (ip, port) the client connected
  to; the dst port may be the logical app port or the listening port (offset applied): both
  are recognised. No TLVs are needed.
- Then the client's bytes, relayed unchanged in both directions: for `traffic_type: https`
  the raw TLS stream (the CDN terminates TLS with the zone's edge certificate, chosen by SNI,
  exactly as on its own listeners); for `traffic_type: http` plain HTTP/1.1.
- The CDN finds the app from the snapshot by (dst ip, dst port, tcp), runs the full pipeline
  with `ip.src` = PROXY src, `cf.edge.server_ip` = the Spectrum IP, `cf.edge.server_port` = the
  app port, and sends the request to the app's origin (`origin_direct`, port-range offset
  applied; or `origin_dns` resolved through the stub), not to the Host's DNS answer. Toward
  that origin: TLS for an https app when the zone's SSL mode is full/strict, plain otherwise.

Internal hop: a connection whose peer is `cdn_egress_ip` or `spectrum_egress_ip` (the CDN
re-entering itself, or Spectrum handing over) is exempt from the fact-22 inbound checks, and an
inbound CF-Connecting-IP is kept (it names the first pass's client). CDN-Loop is counted on
every pass, so a loop still ends at `limits.cdn_loop_limit` with 1000.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import ssl
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import h11
import structlog
from h11._headers import Headers

from cdn import headers as hdr
from cdn.clienthello import (
    ALERT_HANDSHAKE_FAILURE,
    ALERT_UNRECOGNIZED_NAME,
    MAX_CLIENT_HELLO,
    NEED_MORE_DATA,
    ClientHelloError,
    decode_sni,
    encode_alert,
)
from cdn.errors import (
    AccessDenied,
    BadGateway,
    ClientError,
    EdgeError,
    HeadersTooLarge,
    LoopDetected,
    OriginDnsError,
    OriginReadTimeout,
    OriginUnknownError,
    PayloadTooLarge,
    ProhibitedIP,
    RequestTimeout,
    RestrictedIP,
    render_challenge,
    render_error,
)
from cdn.ray import format_cf_ray, new_ray_id
from cdn.rules import RequestFields, RuleMatch, RulesetOutcome
from cdn.trace import CdnTrace
from cdn.upstream import (
    ConnectTimings,
    OriginTarget,
    UpstreamConnection,
    UpstreamPool,
    insecure_client_context,
)
from cdn.zones import HostMatch, check_host, select_zone
from edge.config import SpectrumApp, Zone
from edge.runtime import RoleContext, Throttled, open_tcp_listener
from edge.store import Snapshot

log = structlog.get_logger("cdn.server")

# The handoff listener's logical port (offset applied like every other port). Not one of
# Cloudflare's proxied ports, so it never collides with the edge listeners on the same IP.
HANDOFF_PORT = 2408
# How long the handoff listener waits for the PROXY header.
HANDOFF_HEADER_TIMEOUT = 5.0
# After an error answered before the request body was read, keep reading (and discarding) for
# this long before closing, so the client sees the response rather than a reset.
LINGER_SECONDS = 1.0
# Transport write-buffer marks: past `high` the other side stops reading (backpressure).
WRITE_HIGH = 256 * 1024
WRITE_LOW = 64 * 1024
TLS_HANDSHAKE_TIMEOUT = 10.0
# The first peek at a ClientHello reads this much (a typical hello is 0.3-2 KB); a bigger one is
# peeked again with room for MAX_CLIENT_HELLO.
CLIENT_HELLO_PEEK = 4096
# Connections accepted per wake-up of an HTTPS listener before yielding to the loop.
ACCEPT_BATCH = 64
# decode_error: the bytes on a TLS port were not a ClientHello.
ALERT_DECODE_ERROR = 50
# Origin addresses remembered per snapshot (ResolvedOrigin); past this the memo starts over.
MAX_CACHED_ORIGINS = 10_000

_IDLE, _SETUP, _BODY, _WAIT, _RAW, _CLOSING = range(6)

ACTION_CAMEL = {
    "managed_challenge": "managedChallenge",
    "js_challenge": "jsChallenge",
}
ACTION_FIREWALL = {
    "managed_challenge": "managedchallenge",
    "js_challenge": "jschallenge",
}
CHALLENGES = frozenset({"challenge", "js_challenge", "managed_challenge"})
_PROTOCOLS = {b"1.1": "HTTP/1.1", b"1.0": "HTTP/1.0"}
_END = h11.EndOfMessage()  # events are immutable: one instance serves every response


@dataclass(frozen=True, slots=True)
class Handoff:
    """A connection Spectrum handed over: who really connected, and to which app."""

    client: tuple[str, int]
    edge: tuple[str, int]  # Spectrum IP, logical app port
    app: SpectrumApp
    zone: Zone


class Exchange:
    """One request/response through the edge and what the logs need about it."""

    __slots__ = (
        "cf_ray",
        "dns_ms",
        "edge_request_host",
        "edge_server_ip",
        "emitted",
        "head_sent",
        "host",
        "loop_others",
        "loops",
        "method",
        "origin_done",
        "origin_ip",
        "origin_ms",
        "origin_request",
        "origin_start",
        "origin_status",
        "outcome",
        "path",
        "query",
        "ray_id",
        "read_timeout",
        "req_body",
        "req_done",
        "req_head_bytes",
        "request",
        "resp_body",
        "resp_done",
        "resp_head_bytes",
        "retryable",
        "start_ns",
        "status",
        "target",
        "timings",
        "trace",
        "up",
        "user_agent",
        "zone",
    )

    def __init__(self, request: h11.Request, ray_id: str, colo: str) -> None:
        self.request = request
        self.ray_id = ray_id
        self.cf_ray = format_cf_ray(ray_id, colo).encode()
        self.start_ns = time.time_ns()
        self.trace = CdnTrace(ray_id)
        target = request.target.decode("latin-1")
        path, _, query = target.partition("?")
        self.path = path
        self.query = query
        self.method = request.method.decode("latin-1")
        self.host = ""
        self.zone: Zone | None = None
        self.user_agent = ""
        self.status = 0
        self.origin_status = 0
        self.origin_ip = ""
        self.edge_server_ip = ""
        self.edge_request_host = ""
        self.dns_ms = 0
        self.origin_ms = 0
        self.origin_start = 0.0
        self.timings = ConnectTimings()
        self.target: OriginTarget | None = None
        self.up: UpstreamConnection | None = None
        self.origin_request: h11.Request | None = None
        self.loops = 0
        self.loop_others: list[bytes] = []
        self.read_timeout = 0.0
        self.head_sent = False
        self.req_done = False
        self.resp_done = False
        self.origin_done = False
        self.req_body = 0
        self.resp_body = 0
        self.req_head_bytes = 0
        self.resp_head_bytes = 0
        self.outcome: RulesetOutcome | None = None
        self.emitted = False
        self.retryable = False


def _request_event(method: bytes, target: bytes, headers: Headers) -> h11.Request:
    """An h11 Request without h11's re-validation (its regexes and a Host count over a Sequence
    walk: a measurable part of a proxied request). Safe because every part came out of h11's
    own parser or is a constant / value we format (cdn.headers)."""
    event = object.__new__(h11.Request)
    setattr_ = object.__setattr__
    setattr_(event, "method", method)
    setattr_(event, "target", target)
    setattr_(event, "headers", headers)
    setattr_(event, "http_version", b"1.1")
    return event


def _response_event(status: int, headers: Headers, reason: bytes) -> h11.Response:
    """An h11 Response without re-validation (see `_request_event`): the status came from h11's
    parser (a 3-digit code >= 200) and the headers from it or from cdn.headers."""
    event = object.__new__(h11.Response)
    setattr_ = object.__setattr__
    setattr_(event, "status_code", status)
    setattr_(event, "headers", headers)
    setattr_(event, "reason", reason)
    setattr_(event, "http_version", b"1.1")
    return event


def _active_rulesets(snapshot: Snapshot) -> dict[str, Any]:
    """Zone id -> compiled custom ruleset, for zones with at least one enabled rule (evaluating
    a ruleset whose rules are all disabled matches nothing, so it is skipped)."""
    return {zid: rs for zid, rs in snapshot.rulesets.items() if any(r.enabled for r in rs.rules)}


def _head_size(items: list[tuple[bytes, bytes, bytes]], first_line: int) -> int:
    return first_line + sum(len(n) + len(v) + 4 for n, _, v in items) + 2


class CdnRole:
    """State shared by every connection of the role: pool, resolver, certificates."""

    def __init__(self, ctx: RoleContext, *, resolver: Any, certificates: Any, pool: UpstreamPool) -> None:
        self.ctx = ctx
        self.store = ctx.store
        self.events = ctx.events
        self.resolver = resolver
        self.certificates = certificates
        self.pool = pool
        # Live client connections per listener (ip, logical port), for
        # limits.max_connections_per_listener.
        self.live: dict[tuple[str, int], int] = {}
        self.over_limit = Throttled("cdn.connection.over_limit")

    # -- TLS

    def zone_context(self, snapshot: Snapshot, zone: Zone) -> ssl.SSLContext:
        cache: dict[str, ssl.SSLContext] = snapshot.derived("cdn.tls_contexts", lambda _s: {})
        context = cache.get(zone.name)
        if context is None:
            context = self.certificates.ssl_context_for_zone(
                zone.name, extra_hosts=tuple(zone.settings.advanced_certificate_hosts)
            )
            context.set_alpn_protocols(["http/1.1"])
            cache[zone.name] = context
        return context

    def warm(self, snapshot: Snapshot) -> None:
        for zone in snapshot.config.zones:
            try:
                self.zone_context(snapshot, zone)
            except Exception:
                log.exception("cdn.tls.context_failed", zone=zone.name)

    # -- lookups

    def internal_peers(self, snapshot: Snapshot) -> frozenset[str]:
        def build(s: Snapshot) -> frozenset[str]:
            net = s.config.network
            return frozenset({str(net.cdn_egress_ip), str(net.spectrum_egress_ip)})

        return snapshot.derived("cdn.internal_peers", build)

    def country_header(self, zone: Zone) -> bytes:
        return zone.settings.ip_country.encode()

    # -- origin addresses

    def cached_origin(self, snapshot: Snapshot, host: str) -> ResolvedOrigin | None:
        """A checked origin address for `host` still within its DNS TTL under this snapshot."""
        cache: dict[str, ResolvedOrigin] = snapshot.derived("cdn.origins", _new_origin_cache)
        origin = cache.get(host)
        if origin is None:
            return None
        if time.monotonic() >= origin.expires:
            del cache[host]
            return None
        return origin

    def remember_origin(self, snapshot: Snapshot, host: str, origin: ResolvedOrigin) -> None:
        if origin.expires <= time.monotonic():
            return
        cache: dict[str, ResolvedOrigin] = snapshot.derived("cdn.origins", _new_origin_cache)
        if len(cache) >= MAX_CACHED_ORIGINS:
            cache.clear()
        cache[host] = origin


def _new_origin_cache(_snapshot: Snapshot) -> dict[str, ResolvedOrigin]:
    return {}


@dataclass(slots=True)
class ResolvedOrigin:
    """A Host's origin address as the resolver answered it, after the loop-guard checks.

    Kept per snapshot (so a config change drops it, as the stub resolver drops its cache) for
    the answer's TTL, never longer: a hit lets a request go to the origin without awaiting."""

    address: str
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address
    expires: float  # time.monotonic()
    view: str
    cname_chain: tuple[str, ...]
    spectrum: bool
    dial_ports: dict[int, int] = field(default_factory=dict)

    def dial(self, snapshot: Snapshot, port: int) -> int:
        dial = self.dial_ports.get(port)
        if dial is None:
            dial = self.dial_ports[port] = snapshot.dial_port(self.ip, port)
        return dial


class ClientConnection(asyncio.Protocol):
    """One client connection: h11 server side, bridging to a pooled upstream per request."""

    def __init__(
        self,
        role: CdnRole,
        *,
        tls: bool,
        listen_ip: str,
        listen_port: int,
        handoff: Handoff | None = None,
        sni: str | None = None,
    ) -> None:
        self.role = role
        self.tls = tls
        self.listen_ip = listen_ip
        self.listen_port = listen_port  # logical (no offset)
        self.handoff = handoff
        limits = role.store.current.config.limits
        self.limits = limits
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.max_header_bytes)
        self.transport: asyncio.Transport | None = None
        self.phase = _IDLE
        self.exchange: Exchange | None = None
        self.up: UpstreamConnection | None = None
        self.client_ip = ""
        self.client_port = 0
        self.peer_ip = ""
        self.sni: str | None = sni  # from the peeked ClientHello (see TlsAcceptor)
        self.tls_version = "none"
        self.internal = False
        self.draining = False
        self._paused: set[str] = set()
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._deadline = 0.0
        self._on_deadline: Callable[[], None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._registered = False
        self._counted: tuple[str, int] | None = None
        self._got_bytes = False
        self._out: list[bytes] | None = None  # client writes being gathered (upstream_events)
        self._ips: dict[str, ipaddress.IPv4Address | ipaddress.IPv6Address] = {}

    def _ip(self, text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        """The connection's addresses as ipaddress objects, parsed once per connection."""
        cache = self._ips
        ip = cache.get(text)
        if ip is None:
            ip = cache[text] = ipaddress.ip_address(text)
        return ip

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self.transport.set_write_buffer_limits(high=WRITE_HIGH, low=WRITE_LOW)
        peer = self.transport.get_extra_info("peername") or ("", 0)
        self.peer_ip, peer_port = str(peer[0]), int(peer[1])
        if self.handoff is not None:
            self.client_ip, self.client_port = self.handoff.client
            self.listen_ip, self.listen_port = self.handoff.edge
            self.internal = True
        else:
            self.client_ip, self.client_port = self.peer_ip, peer_port
            self.internal = self.peer_ip in self.role.internal_peers(self.role.store.current)
        if self.handoff is None:
            key = (self.listen_ip, self.listen_port)
            live = self.role.live
            count = live.get(key, 0)
            if count >= self.limits.max_connections_per_listener:
                self.role.over_limit(self._loop.time(), listener=f"{key[0]}:{key[1]}", limit=count)
                self.phase = _CLOSING
                self.transport.abort()
                return
            live[key] = count + 1
            self._counted = key
        if self.tls:
            sslobj = transport.get_extra_info("ssl_object")
            if sslobj is not None:
                self.tls_version = sslobj.version() or "none"
        self.role.ctx.connections.add(self, "cdn")
        self._registered = True
        self._arm(self.limits.header_timeout, self._on_header_timeout)

    def data_received(self, data: bytes) -> None:
        phase = self.phase
        if phase == _RAW:
            if self.up is not None:
                self.up.write_raw(data)
            return
        if phase == _CLOSING:
            return
        if not self._got_bytes:
            self._got_bytes = True
            if phase == _IDLE:
                self._arm(self.limits.header_timeout, self._on_header_timeout)
        self.conn.receive_data(data)
        if phase in (_IDLE, _BODY):
            self._process()
        elif phase == _WAIT:
            self._pause("pipeline")

    def eof_received(self) -> bool | None:
        if self.phase == _RAW:
            up = self.up
            if up is not None and up.transport is not None and up.transport.can_write_eof():
                up.transport.write_eof()
                return True
            return None
        if self.phase == _CLOSING:
            return None
        self.conn.receive_data(b"")
        if self.phase in (_IDLE, _BODY):
            self._process()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._drop_timer()
        self.phase = _CLOSING
        counted, self._counted = self._counted, None
        if counted is not None:
            left = self.role.live.get(counted, 1) - 1
            if left > 0:
                self.role.live[counted] = left
            else:
                self.role.live.pop(counted, None)
        if self._registered:
            self.role.ctx.connections.discard(self)
            self._registered = False
        if self._task is not None and not self._task.done():
            self._task.cancel()
        up, self.up = self.up, None
        if up is not None:
            up.owner = None
            up.abort()
        ex = self.exchange
        if ex is not None and not ex.emitted:
            if not ex.status:
                ex.status = 499  # client closed before the response completed
            self._emit(ex)

    def pause_writing(self) -> None:
        if self.up is not None:
            self.up.pause_reading()

    def resume_writing(self) -> None:
        if self.up is not None:
            self.up.resume_reading()

    # ------------------------------------------------------------------ runtime.Connection

    def shutdown(self) -> None:
        self.draining = True
        if self.phase == _IDLE and not self._got_bytes:
            self._close()

    def abort(self) -> None:
        if self.up is not None:
            self.up.abort()
        if self.transport is not None:
            self.transport.abort()

    # ------------------------------------------------------------------ flow control, timers

    def _pause(self, reason: str) -> None:
        if not self._paused and self.transport is not None:
            self.transport.pause_reading()
        self._paused.add(reason)

    def _resume(self, reason: str) -> None:
        if reason in self._paused:
            self._paused.discard(reason)
            if not self._paused and self.transport is not None and not self.transport.is_closing():
                self.transport.resume_reading()

    # One deadline per connection (header, idle, origin read or linger timeout), served by at
    # most one loop timer: re-arming to a later deadline keeps the pending timer, which on firing
    # early re-arms itself for the current deadline. A keep-alive request thus costs no timer
    # creation or cancellation (call_later is a measurable part of a request).

    def _arm(self, delay: float, callback: Callable[[], None]) -> None:
        loop = self._loop
        deadline = loop.time() + delay
        self._deadline = deadline
        self._on_deadline = callback
        timer = self._timer
        if timer is not None:
            if timer.when() <= deadline:
                return
            timer.cancel()
        self._timer = loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        callback = self._on_deadline
        if callback is None:
            return
        if self._loop.time() < self._deadline:
            self._timer = self._loop.call_at(self._deadline, self._on_timer)
            return
        self._on_deadline = None
        callback()

    def _cancel_timer(self) -> None:
        """Forget the deadline (the pending loop timer, if any, will find nothing to do)."""
        self._on_deadline = None

    def _drop_timer(self) -> None:
        self._on_deadline = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_header_timeout(self) -> None:
        if self.phase != _IDLE:
            return
        if self._got_bytes:
            log.debug("cdn.request.header_timeout", client=self.client_ip)
            self._local_error_no_exchange(RequestTimeout("request headers not received in time"))
        else:
            self._close()

    def _close(self) -> None:
        self.phase = _CLOSING
        self._drop_timer()
        if self.transport is not None:
            self.transport.close()

    def _linger_close(self) -> None:
        """Close after an early answer: stop writing, drain what the client still sends."""
        self.phase = _CLOSING
        transport = self.transport
        if transport is None:
            return
        self._paused.clear()
        transport.resume_reading()
        if transport.can_write_eof():
            with contextlib.suppress(OSError, RuntimeError):
                transport.write_eof()
        self._arm(LINGER_SECONDS, self._close)

    # ------------------------------------------------------------------ client events

    def _process(self) -> None:
        conn = self.conn
        while True:
            phase = self.phase
            if phase != _IDLE and phase != _BODY:
                return
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as e:
                self._on_client_protocol_error(e)
                return
            if event is h11.NEED_DATA:
                return
            etype = type(event)
            if etype is h11.Request:
                assert isinstance(event, h11.Request)
                if _ambiguous_framing(event):
                    # CL.TE smuggling shape: answered 400 and closed, as Cloudflare does.
                    self._local_error_no_exchange(
                        ClientError("request has both Content-Length and Transfer-Encoding")
                    )
                    return
                self._start(event)
                return
            if etype is h11.Data:
                assert isinstance(event, h11.Data)
                ex = self.exchange
                if ex is not None:
                    ex.req_body += len(event.data)
                    if ex.req_body > self.limits.max_request_body_bytes:
                        self._body_too_large(ex)
                        return
                if self.up is not None:
                    self.up.send(event)
                continue
            if etype is h11.EndOfMessage:
                ex = self.exchange
                if self.up is not None:
                    self.up.send(event)
                if ex is not None:
                    ex.req_done = True
                self.phase = _WAIT
                if ex is not None and ex.resp_done:
                    self._finish(ex)
                return
            if event is h11.PAUSED:
                return
            if etype is h11.ConnectionClosed:
                if self.exchange is not None and self.up is not None:
                    self.up.abort()
                self._close()
                return
            return

    def _body_too_large(self, ex: Exchange) -> None:
        """A streamed (chunked) body went over the limit: 413 if the origin has not answered yet,
        else the origin's answer is cut; the connection closes either way."""
        up, self.up = self.up, None
        if up is not None:
            up.owner = None
            up.abort()
        self.draining = True
        if self.conn.our_state is h11.SEND_RESPONSE:
            self._answer_error(ex, PayloadTooLarge(f"request body over {self.limits.max_request_body_bytes} bytes"))
        else:
            self._close()

    def _on_client_protocol_error(self, e: h11.RemoteProtocolError) -> None:
        if self.phase == _BODY:
            # A broken body mid-stream: the origin got half a request; drop both.
            if self.up is not None:
                self.up.abort()
            self._close()
            return
        status = e.error_status_hint
        err = _client_error(status, str(e))
        self._local_error_no_exchange(err)

    def _local_error_no_exchange(self, err: EdgeError) -> None:
        """Answer a request that never became an Exchange (bad syntax, too large, timeout)."""
        ray_id = new_ray_id()
        snapshot = self.role.store.current
        colo = snapshot.config.network.colo
        page = render_error(err, ray_id=format_cf_ray(ray_id, colo), colo=colo, client_ip=self.client_ip)
        cf_ray = format_cf_ray(ray_id, colo).encode()
        items = hdr.edge_response_headers(cf_ray, page.content_type.encode(), len(page.body), _triples(page.headers))
        items.append((b"Connection", b"connection", b"close"))
        head = b"HTTP/1.1 %d %s\r\n" % (page.status, hdr.REASONS.get(page.status, b""))
        head += b"".join(raw + b": " + v + b"\r\n" for raw, _, v in items) + b"\r\n"
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(head + page.body)
        record = self._base_record(ray_id, snapshot)
        record.update(EdgeResponseStatus=page.status, EdgeResponseBytes=len(head) + len(page.body))
        self.role.events.emit("http_requests", record)
        self._linger_close()

    def _start(self, request: h11.Request) -> None:
        self._cancel_timer()
        self._got_bytes = False
        self.phase = _SETUP
        self._pause("setup")
        snapshot = self.role.store.current
        ex = Exchange(request, new_ray_id(), snapshot.config.network.colo)
        self.exchange = ex
        try:
            self._walk(ex, snapshot)
        except EdgeError as e:
            self._answer_error(ex, e)
        except Exception as e:
            log.exception("cdn.request.failed", ray=ex.ray_id)
            self._answer_error(ex, BadGateway(repr(e)))

    async def _run(self, ex: Exchange, step: Coroutine[Any, Any, None]) -> None:
        """The asynchronous legs of a request (a DNS miss, a new upstream connection)."""
        try:
            await step
        except EdgeError as e:
            self._answer_error(ex, e)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.exception("cdn.request.failed", ray=ex.ray_id)
            self._answer_error(ex, BadGateway(repr(e)))

    def _spawn(self, ex: Exchange, step: Coroutine[Any, Any, None]) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(ex, step))

    # ------------------------------------------------------------------ the walk
    #
    # Synchronous as long as nothing has to wait: a cached origin address and an idle pooled
    # upstream take a request from its head to the origin without a task or a future; only a
    # DNS miss or a new upstream connection spawns a task (`_spawn`). The wait for the origin's
    # answer is callbacks (`upstream_events`) plus the connection's timer.

    def _walk(self, ex: Exchange, snapshot: Snapshot) -> None:
        match = self._check(ex, snapshot)
        if match is None:
            return
        if self.handoff is None:
            origin = self.role.cached_origin(snapshot, match.host)
            if origin is not None:
                ex.trace.add(
                    "dns",
                    "answered",
                    name=match.host,
                    addresses=[origin.address],
                    view=origin.view,
                    cname_chain=list(origin.cname_chain),
                    from_cache=True,
                    ms=0,
                )
                if origin.spectrum:
                    ex.trace.add("dns", "spectrum", address=origin.address)
                port, use_tls = origin_port_and_scheme(match.zone.settings.ssl, self.tls, self.listen_port)
                if not self._to_origin(ex, snapshot, match, origin.address, origin.dial(snapshot, port), port, use_tls):
                    self._spawn(ex, self._connect_and_send(ex, snapshot, retry=False))
                return
        self._spawn(ex, self._walk_async(ex, snapshot, match))

    async def _walk_async(self, ex: Exchange, snapshot: Snapshot, match: HostMatch[Zone]) -> None:
        if self.handoff is not None:
            address, port, use_tls = await self._handoff_origin(ex, snapshot)
            dial = snapshot.dial_port(ipaddress.ip_address(address), port)
        else:
            origin = await self._resolve_origin(ex, snapshot, match.host)
            address = origin.address
            port, use_tls = origin_port_and_scheme(match.zone.settings.ssl, self.tls, self.listen_port)
            dial = origin.dial(snapshot, port)
        if not self._to_origin(ex, snapshot, match, address, dial, port, use_tls):
            await self._connect_and_send(ex, snapshot, retry=False)

    def _check(self, ex: Exchange, snapshot: Snapshot) -> HostMatch[Zone] | None:
        """Host, loop and WAF checks; None when the request was answered here (WAF, redirect)."""
        request = ex.request
        limits = snapshot.config.limits
        items: list[tuple[bytes, bytes, bytes]] = request.headers._full_items
        ex.req_head_bytes = _head_size(items, len(request.method) + len(request.target) + 12)
        if len(items) > limits.max_header_count or ex.req_head_bytes > limits.max_header_bytes:
            raise HeadersTooLarge(f"{len(items)} headers, {ex.req_head_bytes} bytes")
        declared = hdr.first_value(items, b"content-length")
        if declared and declared.isdigit() and int(declared) > limits.max_request_body_bytes:
            raise PayloadTooLarge(f"Content-Length {int(declared)} over {limits.max_request_body_bytes}")
        ex.user_agent = hdr.first_value(items, b"user-agent").decode("latin-1")
        host_header = hdr.first_value(items, b"host").decode("latin-1")
        trace = ex.trace
        if self.tls:
            trace.add("sni", "zone", sni=self.sni)
        if not host_header and self.sni:
            host_header = self.sni
        try:
            match = check_host(snapshot.zones_by_name, host_header, self.sni if self.tls else None)
        except EdgeError as e:
            ex.host = host_header
            trace.add("host", "refused", host=host_header, sni=self.sni, code=e.code)
            raise
        zone = match.zone
        ex.zone, ex.host = zone, match.host
        trace.add("host", "accepted", host=match.host, zone=zone.name, sni=self.sni)
        if not self.internal:
            why = hdr.inbound_violation(items)
            if why is not None:
                trace.add("loop", "refused", reason=why)
                raise ProhibitedIP(why)
        loops, loop_others = hdr.parse_cdn_loop(hdr.header_values(items, b"cdn-loop"))
        if loops >= limits.cdn_loop_limit:
            trace.add("loop", "refused", loops=loops, limit=limits.cdn_loop_limit)
            raise LoopDetected(f"CDN-Loop says {loops} passes (limit {limits.cdn_loop_limit})")
        ex.loops, ex.loop_others = loops, loop_others
        # WAF (reference section 2 step 4: after the Host check, before the origin).
        ruleset = snapshot.derived("cdn.active_rulesets", _active_rulesets).get(zone.id or "")
        if ruleset is not None:
            fields = RequestFields(
                host=match.host,
                method=ex.method,
                path=ex.path,
                query=ex.query,
                version="HTTP/" + request.http_version.decode(),
                scheme="https" if self.tls else "http",
                headers=tuple((n.decode("latin-1"), v.decode("latin-1")) for n, _, v in items),
                src_ip=self._ip(self.client_ip),
                edge_server_ip=self._ip(self.listen_ip),
                edge_server_port=self.listen_port,
                ssl=self.tls,
                ray_id=ex.ray_id,
                country=zone.settings.ip_country,
                timestamp_sec=ex.start_ns // 1_000_000_000,
            )
            outcome = ruleset.evaluate(fields)
            ex.outcome = outcome
            for rule_id, matched in outcome.evaluated:
                trace.add("waf", "match" if matched else "no_match", rule=rule_id)
            if outcome.terminating is not None:
                self._answer_waf(ex, outcome.terminating, outcome)
                return None
        if zone.settings.ssl == "off" and self.tls:
            self._answer_redirect(ex, f"http://{match.host}{request.target.decode('latin-1')}")
            return None
        return match

    def _to_origin(
        self,
        ex: Exchange,
        snapshot: Snapshot,
        match: HostMatch[Zone],
        address: str,
        dial: int,
        port: int,
        use_tls: bool,
    ) -> bool:
        """Build the origin request and send it on an idle pooled upstream (True), or leave it in
        `ex` for `_connect_and_send` (False)."""
        settings = match.zone.settings
        verify = use_tls and settings.ssl == "strict"
        target = OriginTarget(address, dial, use_tls, match.host if use_tls else None, verify)
        ex.target = target
        ex.origin_ip = address
        ex.edge_server_ip = str(snapshot.config.network.cdn_egress_ip)
        ex.edge_request_host = match.host
        ex.trace.add(
            "upstream",
            "selected",
            address=address,
            port=port,
            dial_port=dial,
            scheme=target.scheme,
            ssl_mode=settings.ssl,
            verify=verify,
        )
        request = ex.request
        items: list[tuple[bytes, bytes, bytes]] = request.headers._full_items
        # Headers toward the origin.
        chunked = hdr.first_value(items, b"transfer-encoding").lower().endswith(b"chunked")
        upgrade: bytes | None = None
        if b"upgrade" in hdr.connection_tokens(items):
            up_value = hdr.first_value(items, b"upgrade")
            upgrade = up_value or None
        out = hdr.build_origin_headers(
            items,
            client_ip=self.client_ip,
            connecting_ip=self.client_ip,
            scheme="https" if self.tls else "http",
            cf_ray=ex.cf_ray,
            country=self.role.country_header(match.zone),
            loops=ex.loops + 1,
            loop_others=ex.loop_others,
            chunked=chunked,
            upgrade=upgrade,
            trusted=self.internal,
        )
        ex.origin_request = _request_event(request.method, request.target, Headers(out))
        no_body = not chunked and hdr.first_value(items, b"content-length", b"0") in (b"0", b"")
        ex.retryable = no_body and upgrade is None
        up = self.role.pool.take_idle(target)
        if up is None:
            return False
        ex.timings = ConnectTimings(reused=True)
        ex.trace.add("origin", "reused")
        self._send_upstream(ex, snapshot, up, retry=False)
        return True

    async def _resolve_origin(self, ex: Exchange, snapshot: Snapshot, host: str) -> ResolvedOrigin:
        # resolver.stub's errors are matched by name: NoSuchName / NoData are "no answer", any
        # other ResolveError (timeout, refused, failed) is a failed lookup; all answer 1016.
        t0 = time.monotonic()
        try:
            try:
                resolution = await self.role.resolver.resolve(host, "A")
            except Exception as e:
                if type(e).__name__ != "NoData":
                    raise
                resolution = await self.role.resolver.resolve(host, "AAAA")
        except asyncio.CancelledError:
            raise
        except Exception as e:
            ex.dns_ms = round((time.monotonic() - t0) * 1000)
            kind = type(e).__name__
            ex.trace.add("dns", "no_answer" if kind in ("NoSuchName", "NoData") else "failed", name=host, error=kind)
            raise OriginDnsError(f"{host}: {kind}") from e
        ex.dns_ms = round((time.monotonic() - t0) * 1000)
        addresses = [str(a) for a in resolution.addresses]
        ex.trace.add(
            "dns",
            "answered",
            name=host,
            addresses=addresses,
            view=getattr(resolution, "view", ""),
            cname_chain=[str(c) for c in getattr(resolution, "cname_chain", ())],
            from_cache=getattr(resolution, "from_cache", False),
            ms=ex.dns_ms,
        )
        if not addresses:
            raise OriginDnsError(f"{host}: empty answer")
        address = addresses[0]
        ip = ipaddress.ip_address(address)
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # the loop guard and 1002 see ::ffff:a.b.c.d as a.b.c.d
        net = snapshot.config.network
        if snapshot.is_cdn_ip(ip) or ip == net.cdn_egress_ip:
            ex.trace.add("dns", "prohibited", address=address, reason="CDN edge address (loop guard)")
            raise ProhibitedIP(f"{host} resolves to the CDN address {address}")
        if snapshot.is_restricted_origin(ip):
            ex.trace.add("dns", "prohibited", address=address, reason="local or emulator-internal address")
            raise RestrictedIP(f"{host} resolves to the restricted address {address}")
        spectrum = snapshot.is_spectrum_ip(ip)
        if spectrum:
            ex.trace.add("dns", "spectrum", address=address)
        origin = ResolvedOrigin(
            address,
            ip,
            time.monotonic() + max(0, int(getattr(resolution, "ttl", 0))),
            str(getattr(resolution, "view", "")),
            tuple(str(c) for c in getattr(resolution, "cname_chain", ())),
            spectrum,
        )
        self.role.remember_origin(snapshot, host, origin)
        return origin

    async def _handoff_origin(self, ex: Exchange, snapshot: Snapshot) -> tuple[str, int, bool]:
        handoff = self.handoff
        assert handoff is not None
        app = handoff.app
        edge_port = handoff.edge[1]
        zone_ssl = handoff.zone.settings.ssl
        use_tls = app.traffic_type == "https" and zone_ssl in ("full", "strict")
        shift = edge_port - app.ports.first
        origins = app.origins()
        if origins:
            origin = origins[0]
            port = origin.ports.first + shift if len(origin.ports) > 1 else origin.ports.first
            ex.trace.add("spectrum", "handoff_origin", app=app.id, address=str(origin.address), port=port)
            return str(origin.address), port, use_tls
        assert app.origin_dns is not None
        address = (await self._resolve_origin(ex, snapshot, app.origin_dns.name)).address
        ports = app.origin_ports()
        port = edge_port if ports is None else (ports.first + shift if len(ports) > 1 else ports.first)
        ex.trace.add("spectrum", "handoff_origin", app=app.id, address=address, port=port)
        return address, port, use_tls

    async def _connect_and_send(self, ex: Exchange, snapshot: Snapshot, *, retry: bool) -> None:
        """Dial a new upstream for `ex.target` and send the request on it. `retry`: the request
        (bodiless) already went to a stale pooled connection; its end was consumed then."""
        target = ex.target
        assert target is not None
        limits = snapshot.config.limits
        ex.timings = ConnectTimings()
        try:
            up = await self.role.pool.connect(
                target,
                local_ip=str(snapshot.config.network.cdn_egress_ip),
                timeout=limits.origin_connect_timeout,
                timings=ex.timings,
            )
        except EdgeError as e:
            ex.trace.add("origin", "connect_failed", code=e.code, error=e.detail)
            raise
        ex.trace.add(
            "origin", "connected", tcp_ms=ex.timings.tcp_ms, tls_ms=ex.timings.tls_ms, tls=up.tls_version or None
        )
        self._send_upstream(ex, snapshot, up, retry=retry)

    def _send_upstream(self, ex: Exchange, snapshot: Snapshot, up: UpstreamConnection, *, retry: bool) -> None:
        if self.phase == _CLOSING:  # the client went away meanwhile
            self.role.pool.release(up) if up.reusable() else up.close()
            return
        assert ex.origin_request is not None
        ex.up = up
        self.up = up
        up.owner = self
        ex.origin_start = time.monotonic()
        # One write for the head and whatever of the body is already here.
        up.cork()
        try:
            try:
                up.send(ex.origin_request)
            except h11.LocalProtocolError as e:
                raise BadGateway(f"cannot send request: {e}") from e
            if retry:
                up.send(_END)
            else:
                self._begin_body()
        finally:
            up.uncork()
        if not ex.head_sent and self.up is up:
            timeout = snapshot.config.limits.origin_read_timeout
            ex.read_timeout = timeout
            self._arm(timeout, self._on_origin_timeout)

    def _on_origin_timeout(self) -> None:
        ex, up = self.exchange, self.up
        if ex is None or ex.head_sent:
            return
        ex.trace.add("origin", "read_timeout", seconds=ex.read_timeout)
        self.up = None
        if up is not None:
            up.owner = None
            up.abort()
        self._answer_error(ex, OriginReadTimeout(f"no response in {ex.read_timeout}s"))

    def _begin_body(self) -> None:
        """Start relaying the client's body (or its end) to the upstream."""
        self.phase = _BODY
        if self.conn.they_are_waiting_for_100_continue:
            self._send_client(h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue"))
        self._resume("setup")
        self._process()

    # ------------------------------------------------------------------ upstream callbacks

    def upstream_events(self, up: UpstreamConnection) -> None:
        ex = self.exchange
        if ex is None or self.up is not up:
            return
        # What the origin's bytes produce toward the client (head, body, end) goes out in one
        # transport write, so one TLS record; flushed before anything that closes or finishes.
        self._out = []
        try:
            self._upstream_events(ex, up)
        finally:
            self._flush()

    def _upstream_events(self, ex: Exchange, up: UpstreamConnection) -> None:
        uconn = up.conn
        while True:
            try:
                event = uconn.next_event()
            except h11.RemoteProtocolError as e:
                self._flush()
                self._upstream_broken(ex, up, OriginUnknownError(f"bad response: {e}"))
                return
            if event is h11.NEED_DATA:
                return
            etype = type(event)
            if etype is h11.Data:
                assert isinstance(event, h11.Data)
                ex.resp_body += len(event.data)
                self._send_client(event)
                continue
            if etype is h11.Response:
                assert isinstance(event, h11.Response)
                self._relay_head(ex, event)
                continue
            if etype is h11.EndOfMessage:
                ex.origin_done = True
                self._send_client(_END)
                self._flush()
                ex.resp_done = True
                if ex.req_done or self.conn.their_state is h11.DONE:
                    self._finish(ex)
                return
            if etype is h11.InformationalResponse:
                assert isinstance(event, h11.InformationalResponse)
                if event.status_code == 101:
                    self._flush()
                    self._switch_protocols(ex, up, event)
                    return
                continue  # 1xx other than 101 (100, 103) are not relayed
            if event is h11.PAUSED:
                return
            if etype is h11.ConnectionClosed:
                self._flush()
                self._upstream_broken(ex, up, OriginUnknownError("origin closed the connection"))
                return

    def _relay_head(self, ex: Exchange, response: h11.Response) -> None:
        ex.origin_status = response.status_code
        ex.status = response.status_code
        ex.origin_ms = round((time.monotonic() - ex.origin_start) * 1000)
        items = hdr.build_client_headers(response.headers._full_items, cf_ray=ex.cf_ray)
        reason = hdr.REASONS.get(response.status_code, response.reason)
        ex.resp_head_bytes = _head_size(items, 13 + len(reason))
        ex.trace.add("origin", "responded", status=response.status_code, ms=ex.origin_ms)
        self._send_client(_response_event(response.status_code, Headers(items), reason))
        ex.head_sent = True
        self._cancel_timer()  # the origin read timeout

    def _switch_protocols(self, ex: Exchange, up: UpstreamConnection, event: h11.InformationalResponse) -> None:
        ex.origin_status = ex.status = 101
        ex.origin_ms = round((time.monotonic() - ex.origin_start) * 1000)
        items = hdr.build_client_headers(event.headers._full_items, cf_ray=ex.cf_ray, switching=True)
        try:
            self._send_client(
                h11.InformationalResponse(status_code=101, headers=Headers(items), reason=event.reason, _parsed=True)
            )
        except h11.LocalProtocolError as e:
            self._upstream_broken(ex, up, OriginUnknownError(f"unexpected 101: {e}"))
            return
        ex.head_sent = True
        self._cancel_timer()  # the origin read timeout
        ex.trace.add("origin", "switched_protocols", status=101)
        self.phase = _RAW
        up.raw = True
        self._emit(ex)
        client_rest = self.conn.trailing_data[0]
        origin_rest = up.conn.trailing_data[0]
        if client_rest:
            up.write_raw(client_rest)
        if origin_rest and self.transport is not None:
            self.transport.write(origin_rest)
        self._paused.clear()
        if self.transport is not None:
            self.transport.resume_reading()

    def upstream_raw(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def upstream_eof(self) -> None:
        transport = self.transport
        if transport is not None and transport.can_write_eof():
            transport.write_eof()
        else:
            self._close()

    def upstream_lost(self, up: UpstreamConnection, exc: Exception | None) -> None:
        ex = self.exchange
        if self.up is up:
            self.up = None
        if self.phase == _RAW:
            self._close()
            return
        if ex is None or ex.resp_done:
            return
        self._upstream_broken(
            ex, up, OriginUnknownError(f"origin connection lost: {exc!r}" if exc else "origin closed")
        )

    def upstream_pause_writing(self) -> None:
        self._pause("upstream")

    def upstream_resume_writing(self) -> None:
        self._resume("upstream")

    def _upstream_broken(self, ex: Exchange, up: UpstreamConnection, err: EdgeError) -> None:
        if self.up is up:
            self.up = None
        up.owner = None
        up.abort()
        if not ex.head_sent:
            if self.phase == _CLOSING or ex.resp_done:
                return
            self._cancel_timer()  # the origin read timeout
            if ex.timings.reused and up.bytes_in_cycle == 0 and ex.retryable:
                # A pooled connection the origin had closed: once more on a new one.
                ex.trace.add("origin", "stale_reused_connection")
                ex.up = None
                self._spawn(ex, self._connect_and_send(ex, self.role.store.current, retry=True))
            else:
                ex.trace.add("origin", "bad_response", error=err.detail)
                self._answer_error(ex, err)
            return
        # Mid-body: the client already has a head; all we can do is cut the connection.
        ex.trace.add("origin", "broken_mid_response", error=err.detail)
        self._emit(ex)
        if self.transport is not None:
            self.transport.abort()

    # ------------------------------------------------------------------ answers

    def _send_client(self, event: Any) -> None:
        data = self.conn.send(event)
        if data:
            out = self._out
            if out is not None:
                out.append(data)
            elif self.transport is not None:
                self.transport.write(data)

    def _flush(self) -> None:
        out, self._out = self._out, None
        if out and self.transport is not None:
            self.transport.write(b"".join(out) if len(out) > 1 else out[0])

    def _answer_local(
        self, ex: Exchange, status: int, content_type: bytes, body: bytes, extra: list[tuple[bytes, bytes, bytes]]
    ) -> None:
        if self.conn.our_state is not h11.SEND_RESPONSE:
            if self.transport is not None:
                self.transport.abort()
            return
        items = hdr.edge_response_headers(ex.cf_ray, content_type, len(body), extra)
        if self.draining:  # this answer ends the connection: say so
            items.append((b"Connection", b"connection", b"close"))
        ex.status = status
        ex.resp_head_bytes = _head_size(items, 13 + len(hdr.REASONS.get(status, b"")))
        ex.resp_body = len(body)
        self._send_client(
            h11.Response(status_code=status, headers=Headers(items), reason=hdr.REASONS.get(status, b""), _parsed=True)
        )
        if body and ex.request.method != b"HEAD":
            self._send_client(h11.Data(data=body))
        self._send_client(_END)
        ex.resp_done = True
        up, self.up = self.up, None
        if up is not None:
            up.owner = None
            up.abort()
        if self.phase in (_SETUP, _BODY):
            self._drain_buffered_body(ex)
        self._finish(ex)

    def _drain_buffered_body(self, ex: Exchange) -> None:
        """Consume a body already buffered (so keep-alive survives an early answer)."""
        if self.conn.they_are_waiting_for_100_continue:
            return
        while True:
            try:
                event = self.conn.next_event()
            except h11.RemoteProtocolError:
                return
            if isinstance(event, h11.Data):
                ex.req_body += len(event.data)
                continue
            if isinstance(event, h11.EndOfMessage):
                ex.req_done = True
            return

    def _answer_error(self, ex: Exchange, err: EdgeError) -> None:
        if isinstance(err, HeadersTooLarge):
            self.draining = True  # 431 closes the connection, whichever limit was passed
        snapshot = self.role.store.current
        colo = snapshot.config.network.colo
        items = ex.request.headers._full_items
        page = render_error(
            err,
            ray_id=format_cf_ray(ex.ray_id, colo),
            colo=colo,
            client_ip=self.client_ip,
            accept=hdr.first_value(items, b"accept").decode("latin-1"),
            user_agent=ex.user_agent,
        )
        ex.trace.add("response", "edge_error", status=page.status, code=err.code, detail=err.detail)
        self._answer_local(ex, page.status, page.content_type.encode(), page.body, list(_triples(page.headers)))

    def _answer_waf(self, ex: Exchange, rule: RuleMatch, outcome: RulesetOutcome) -> None:
        ex.trace.add("waf", rule.action, rule=rule.rule_id, description=rule.description)
        if rule.action in CHALLENGES:
            body = render_challenge(ray_id=ex.cf_ray.decode(), client_ip=self.client_ip)
            extra = [
                (b"cf-mitigated", b"cf-mitigated", b"challenge"),
                (b"cf-error-type", b"cf-error-type", b"managed_challenge"),
            ]
            self._answer_local(ex, 403, b"text/html; charset=UTF-8", body, extra)
            return
        response = outcome.response
        if response is not None:
            self._answer_local(ex, response.status_code, response.content_type.encode(), response.content.encode(), [])
            return
        self._answer_error(ex, AccessDenied(f"rule {rule.rule_id}"))

    def _answer_redirect(self, ex: Exchange, location: str) -> None:
        ex.trace.add("ssl", "redirect_to_http", location=location)
        body = b""
        extra = [(b"Location", b"location", location.encode("latin-1"))]
        self._answer_local(ex, 301, b"text/plain", body, extra)

    # ------------------------------------------------------------------ end of an exchange

    def _finish(self, ex: Exchange) -> None:
        up, self.up = self.up, None
        if up is not None:
            self.role.pool.release(up)
        if not ex.emitted:
            self._emit(ex)
        self.exchange = None
        conn = self.conn
        if self.draining or conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
            if conn.their_state in (h11.DONE, h11.MUST_CLOSE, h11.CLOSED):
                self._close()
            else:
                self._linger_close()  # the request body is still coming: drain it, then close
            return
        try:
            conn.start_next_cycle()
        except h11.LocalProtocolError:
            self._close()
            return
        self.phase = _IDLE
        self._paused.discard("pipeline")
        self._resume("setup")
        self._got_bytes = bool(conn.trailing_data[0])
        if self._got_bytes:
            self._arm(self.limits.header_timeout, self._on_header_timeout)
            self._process()
        else:
            self._arm(self.limits.keepalive_timeout, self._on_idle_timeout)

    def _on_idle_timeout(self) -> None:
        if self.phase == _IDLE and not self._got_bytes:
            self._close()

    # ------------------------------------------------------------------ records

    def _base_record(self, ray_id: str, snapshot: Snapshot) -> dict[str, Any]:
        now = time.time_ns()
        return {
            "RayID": ray_id,
            "ZoneName": "",
            "ClientIP": self.client_ip,
            "ClientSrcPort": self.client_port,
            "ClientCountry": "xx",
            "ClientRequestHost": "",
            "ClientRequestMethod": "",
            "ClientRequestURI": "",
            "ClientRequestPath": "",
            "ClientRequestProtocol": "HTTP/1.1",
            "ClientRequestScheme": "https" if self.tls else "http",
            "ClientRequestUserAgent": "",
            "ClientRequestReferer": "",
            "ClientRequestBytes": 0,
            "ClientRequestSource": "eyeball",
            "ClientSSLProtocol": self.tls_version if self.tls else "none",
            "ClientTLSServerName": self.sni or "",
            "EdgeColoCode": snapshot.config.network.colo,
            "EdgeStartTimestamp": now,
            "EdgeEndTimestamp": now,
            "EdgeResponseStatus": 0,
            "EdgeResponseBytes": 0,
            "EdgeResponseContentType": "",
            "EdgeServerIP": "",
            "EdgeRequestHost": "",
            "EdgeListenIP": self.listen_ip,
            "EdgeListenPort": self.listen_port,
            "SpectrumHandoff": self.handoff is not None,
            "OriginIP": "",
            "OriginResponseStatus": 0,
            "OriginResponseDurationMs": 0,
            "OriginDNSResponseTimeMs": 0,
            "OriginTCPHandshakeDurationMs": 0,
            "OriginTLSHandshakeDurationMs": 0,
            "OriginSSLProtocol": "none",
            "CacheCacheStatus": "unknown",
            "SecurityAction": "",
            "SecurityRuleID": "",
            "SecurityRuleDescription": "",
            "SecurityActions": [],
            "SecurityRuleIDs": [],
            "SecuritySources": [],
        }

    def _emit(self, ex: Exchange) -> None:
        if ex.emitted:
            return
        ex.emitted = True
        snapshot = self.role.store.current
        request = ex.request
        up_tls = ex.up.tls_version if ex.up is not None and ex.target is not None and ex.target.tls else ""
        origin = bool(ex.origin_start)
        # One literal with every field (the same fields, in the same order, as _base_record).
        record: dict[str, Any] = {
            "RayID": ex.ray_id,
            "ZoneName": ex.zone.name if ex.zone is not None else "",
            "ClientIP": self.client_ip,
            "ClientSrcPort": self.client_port,
            "ClientCountry": "xx",
            "ClientRequestHost": ex.host,
            "ClientRequestMethod": ex.method,
            "ClientRequestURI": request.target.decode("latin-1"),
            "ClientRequestPath": ex.path,
            "ClientRequestProtocol": _PROTOCOLS.get(request.http_version) or "HTTP/" + request.http_version.decode(),
            "ClientRequestScheme": "https" if self.tls else "http",
            "ClientRequestUserAgent": ex.user_agent,
            "ClientRequestReferer": hdr.first_value(request.headers._full_items, b"referer").decode("latin-1"),
            "ClientRequestBytes": ex.req_head_bytes + ex.req_body,
            "ClientRequestSource": "eyeball",
            "ClientSSLProtocol": self.tls_version if self.tls else "none",
            "ClientTLSServerName": self.sni or "",
            "EdgeColoCode": snapshot.config.network.colo,
            "EdgeStartTimestamp": ex.start_ns,
            "EdgeEndTimestamp": time.time_ns(),
            "EdgeResponseStatus": ex.status,
            "EdgeResponseBytes": ex.resp_head_bytes + ex.resp_body,
            "EdgeResponseContentType": "",
            "EdgeServerIP": ex.edge_server_ip if origin else "",
            "EdgeRequestHost": ex.edge_request_host,
            "EdgeListenIP": self.listen_ip,
            "EdgeListenPort": self.listen_port,
            "SpectrumHandoff": self.handoff is not None,
            "OriginIP": ex.origin_ip if origin else "",
            "OriginResponseStatus": ex.origin_status,
            "OriginResponseDurationMs": ex.origin_ms,
            "OriginDNSResponseTimeMs": ex.dns_ms,
            "OriginTCPHandshakeDurationMs": ex.timings.tcp_ms,
            "OriginTLSHandshakeDurationMs": ex.timings.tls_ms,
            "OriginSSLProtocol": up_tls or "none",
            "CacheCacheStatus": "dynamic" if ex.origin_status else "unknown",
            "SecurityAction": "",
            "SecurityRuleID": "",
            "SecurityRuleDescription": "",
            "SecurityActions": [],
            "SecurityRuleIDs": [],
            "SecuritySources": [],
        }
        outcome = ex.outcome
        if outcome is not None and outcome.matches:
            if outcome.terminating is not None:
                t = outcome.terminating
                record.update(
                    SecurityAction=ACTION_CAMEL.get(t.action, t.action),
                    SecurityRuleID=t.rule_id,
                    SecurityRuleDescription=t.description,
                )
            record.update(
                SecurityActions=[ACTION_CAMEL.get(m.action, m.action) for m in outcome.matches],
                SecurityRuleIDs=[m.rule_id for m in outcome.matches],
                SecuritySources=["firewallCustom" for _ in outcome.matches],
            )
            n = len(outcome.matches)
            for i, m in enumerate(outcome.matches):
                self.role.events.emit(
                    "firewall_events",
                    {
                        "Action": ACTION_FIREWALL.get(m.action, m.action),
                        "ClientIP": self.client_ip,
                        "ClientRequestHost": ex.host,
                        "ClientRequestMethod": ex.method,
                        "ClientRequestPath": ex.path,
                        "ClientRequestQuery": ("?" + ex.query) if ex.query else "",
                        "ClientRequestProtocol": record["ClientRequestProtocol"],
                        "ClientRequestScheme": record["ClientRequestScheme"],
                        "ClientRequestUserAgent": ex.user_agent,
                        "ClientCountry": "xx",
                        "EdgeColoCode": record["EdgeColoCode"],
                        "EdgeResponseStatus": ex.status,
                        "OriginResponseStatus": ex.origin_status,
                        "EdgeServerIP": self.listen_ip,
                        "EdgeListenPort": self.listen_port,
                        "RayID": ex.ray_id,
                        "RuleID": m.rule_id,
                        "Ref": m.ref,
                        "Description": m.description,
                        "Source": "firewallcustom",
                        "Kind": "firewall",
                        "MatchIndex": n - 1 - i,
                        "Datetime": ex.start_ns,
                        "ZoneName": record["ZoneName"],
                    },
                )
        ex.trace.add("response", "sent", status=ex.status, bytes=record["EdgeResponseBytes"])
        self.role.events.emit("http_requests", record)
        self.role.events.put_trace(ex.trace)


def _triples(pairs: tuple[tuple[bytes, bytes], ...]) -> list[tuple[bytes, bytes, bytes]]:
    return [(n, n.lower(), v) for n, v in pairs]


def _ambiguous_framing(request: h11.Request) -> bool:
    """Both Content-Length and Transfer-Encoding (RFC 9112 6.3: a smuggling shape)."""
    cl = te = False
    for name, _ in request.headers:
        if name == b"content-length":
            cl = True
        elif name == b"transfer-encoding":
            te = True
    return cl and te


def _client_error(status: int, detail: str) -> EdgeError:
    return HeadersTooLarge(detail) if status == 431 else ClientError(detail)


def origin_port_and_scheme(ssl_mode: str, client_tls: bool, edge_port: int) -> tuple[int, bool]:
    """(origin port, TLS?) for an SSL mode (reference 7.3): off -> HTTP on the edge port;
    flexible -> HTTP, 443 -> 80, other HTTPS ports fall back to full; full/strict -> the client's
    scheme on the edge port."""
    if ssl_mode == "off":
        return edge_port, False
    if ssl_mode == "flexible":
        if not client_tls:
            return edge_port, False
        if edge_port == 443:
            return 80, False
        return edge_port, True
    return edge_port, client_tls


# ---------------------------------------------------------------------------- TLS accept


class SniRefused(Exception):
    """A ClientHello the edge will not serve: the alert record to answer with, and why."""

    def __init__(self, alert: int, reason: str) -> None:
        super().__init__(reason)
        self.alert = alert
        self.reason = reason


def select_tls_context(role: CdnRole, snapshot: Snapshot, sni: str | None) -> ssl.SSLContext:
    """The zone's server context for a peeked SNI; SniRefused (with the alert) otherwise."""
    if not sni:
        raise SniRefused(ALERT_HANDSHAKE_FAILURE, "no SNI")
    zone = select_zone(snapshot.zones_by_name, sni)
    if zone is None:
        raise SniRefused(ALERT_UNRECOGNIZED_NAME, "no zone for the SNI")
    try:
        return role.zone_context(snapshot, zone)
    except Exception as e:
        log.exception("cdn.tls.context_failed", zone=zone.name)
        raise SniRefused(ssl.ALERT_DESCRIPTION_INTERNAL_ERROR, "no certificate") from e


async def peek_sni(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> str | None:
    """The SNI of the ClientHello waiting on `sock` (None without one), read with MSG_PEEK so the
    TLS layer still gets every byte. ClientHelloError for anything else; ConnectionError when the
    peer closes first. The caller bounds the wait."""
    limit = CLIENT_HELLO_PEEK
    delay = 0.001
    while True:
        try:
            data = sock.recv(limit, socket.MSG_PEEK)
        except BlockingIOError:
            await _wait_readable(loop, sock)
            continue
        if not data:
            raise ConnectionError("closed before the ClientHello")
        result = decode_sni(data)
        if result is not NEED_MORE_DATA:
            assert result is None or isinstance(result, str)
            return result
        if len(data) >= limit:
            if limit >= MAX_CLIENT_HELLO + 64:
                raise ClientHelloError("ClientHello too large")
            limit = MAX_CLIENT_HELLO + 64
            continue
        # Part of the hello is in: the socket stays readable while we only peek, so poll.
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.05)


def refuse_tls(sock: socket.socket, alert: int) -> None:
    """Answer a ClientHello with a fatal alert record and close. The hello is read first: closing
    with unread bytes would send a reset, and the client might lose the alert."""
    _drain(sock)
    with contextlib.suppress(OSError):
        sock.send(encode_alert(alert))
        sock.shutdown(socket.SHUT_WR)
    sock.close()


def _drain(sock: socket.socket) -> None:
    """Read what the peer already sent (non-blocking), so a close sends FIN, not a reset."""
    with contextlib.suppress(OSError):
        while sock.recv(MAX_CLIENT_HELLO + 64):
            pass


async def start_tls(
    role: CdnRole, sock: socket.socket, factory: Callable[[str | None], asyncio.Protocol], *, where: str
) -> None:
    """Peek the SNI, answer an alert when no zone serves it, else hand `sock` to the loop's TLS
    with that zone's context (no SNI callback needed). Owns `sock` until the loop takes it."""
    loop = asyncio.get_running_loop()
    sni: str | None = None
    # The ClientHello, then the handshake, each within limits.header_timeout: a client that
    # stalls mid-hello is closed like one that stalls mid-headers.
    deadline = min(TLS_HANDSHAKE_TIMEOUT, role.store.current.config.limits.header_timeout)
    try:
        async with asyncio.timeout(deadline):
            sni = await peek_sni(loop, sock)
        context = select_tls_context(role, role.store.current, sni)
    except asyncio.CancelledError:
        sock.close()
        raise
    except SniRefused as e:
        log.debug("cdn.tls.sni_refused", sni=sni, reason=e.reason, alert=e.alert, listener=where)
        refuse_tls(sock, e.alert)
        return
    except ClientHelloError as e:
        log.debug("cdn.tls.not_a_client_hello", error=str(e), listener=where)
        refuse_tls(sock, ALERT_DECODE_ERROR)
        return
    except (OSError, TimeoutError) as e:  # ConnectionError is an OSError
        log.debug("cdn.tls.no_client_hello", error=repr(e), listener=where)
        _drain(sock)
        sock.close()
        return
    try:
        await loop.connect_accepted_socket(
            lambda: factory(sni), sock, ssl=context, ssl_handshake_timeout=deadline
        )
    except (OSError, TimeoutError, ssl.SSLError) as e:
        # The transport owns (and has closed) the socket by now.
        log.debug("cdn.tls.handshake_failed", sni=sni, error=repr(e), listener=where)


class TlsAcceptor:
    """An HTTPS listener: accepts in batches from the loop's reader callback and runs
    `start_tls` for each connection. `close()` stops accepting and drops pending handshakes."""

    def __init__(self, role: CdnRole, sock: socket.socket, listen_ip: str, listen_port: int) -> None:
        self.role = role
        self.sock = sock
        self.listen_ip = listen_ip
        self.listen_port = listen_port  # logical
        self.name = f"{listen_ip}:{listen_port}"
        self.loop = asyncio.get_running_loop()
        self.tasks: set[asyncio.Task[None]] = set()
        self.closed = False
        self.loop.add_reader(sock.fileno(), self._on_acceptable)

    def _factory(self, sni: str | None) -> asyncio.Protocol:
        return ClientConnection(self.role, tls=True, listen_ip=self.listen_ip, listen_port=self.listen_port, sni=sni)

    def _on_acceptable(self) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                conn, _addr = self.sock.accept()
            except BlockingIOError:
                return
            except OSError as e:
                # Overload (EMFILE, ENFILE, ENOBUFS, ENOMEM): pause accepting, keep serving.
                log.warning("cdn.tls.accept_failed", error=str(e), listener=self.name)
                self.loop.remove_reader(self.sock.fileno())
                self.loop.call_later(0.1, self._resume)
                return
            live = self.role.live.get((self.listen_ip, self.listen_port), 0) + len(self.tasks)
            if live >= self.role.store.current.config.limits.max_connections_per_listener:
                # Handshakes in progress count too: a flood of silent TLS clients is bounded here.
                self.role.over_limit(self.loop.time(), listener=self.name, limit=live)
                conn.close()
                continue
            conn.setblocking(False)
            task = self.loop.create_task(start_tls(self.role, conn, self._factory, where=self.name))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    def _resume(self) -> None:
        if not self.closed and self.sock.fileno() >= 0:
            self.loop.add_reader(self.sock.fileno(), self._on_acceptable)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.sock.fileno() >= 0:
            self.loop.remove_reader(self.sock.fileno())
        self.sock.close()
        for task in self.tasks:
            task.cancel()


# ---------------------------------------------------------------------------- handoff listener


def find_handoff_app(snapshot: Snapshot, ip: str, port: int) -> tuple[SpectrumApp, Zone, int] | None:
    """The HTTP/HTTPS Spectrum app listening on (ip, port) and its logical port; `port` may be
    logical or offset."""
    address = ipaddress.ip_address(ip)
    for candidate in (port, port - snapshot.port_offset):
        for listener in snapshot.spectrum_listeners:
            if (
                listener.transport == "tcp"
                and listener.ip == address
                and listener.first_port <= candidate <= listener.last_port
                and listener.app.traffic_type in ("http", "https")
            ):
                return listener.app, listener.zone, candidate
        if snapshot.port_offset == 0:
            break
    return None


async def _read_proxy_header(sock: socket.socket) -> Any:
    """Consume exactly the PROXY header from `sock` (peeking first, so nothing else is read)."""
    from spectrum import proxy_protocol as pp

    loop = asyncio.get_running_loop()
    async with asyncio.timeout(HANDOFF_HEADER_TIMEOUT):
        while True:
            await _wait_readable(loop, sock)
            data = sock.recv(16 + 536, socket.MSG_PEEK)
            if not data:
                raise ConnectionError("closed before the PROXY header")
            result = pp.decode(data)
            if result is pp.NEED_MORE_DATA:
                if len(data) >= 16 + 536:
                    raise ValueError("PROXY header too long")
                continue
            sock.recv(result.length)
            return result


async def _wait_readable(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
    fut: asyncio.Future[None] = loop.create_future()

    def ready() -> None:
        if not fut.done():
            fut.set_result(None)

    loop.add_reader(sock.fileno(), ready)
    try:
        await fut
    finally:
        loop.remove_reader(sock.fileno())


async def serve_handoff(role: CdnRole, sock: socket.socket) -> None:
    """Accept loop of the handoff listener (module docstring); runs until cancelled."""
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()

    async def handle(conn: socket.socket, peer: str) -> None:
        snapshot = role.store.current
        try:
            if peer != str(snapshot.config.network.spectrum_egress_ip):
                log.warning("cdn.handoff.refused", peer=peer, reason="not the Spectrum egress address")
                conn.close()
                return
            header = await _read_proxy_header(conn)
            src, dst = header.src, header.dst
            if src is None or dst is None:
                raise ValueError("PROXY header without addresses (LOCAL command)")
            found = find_handoff_app(snapshot, str(dst[0]), int(dst[1]))
            if found is None:
                log.warning("cdn.handoff.no_app", dst=f"{dst[0]}:{dst[1]}")
                conn.close()
                return
            app, zone, port = found
            handoff = Handoff((str(src[0]), int(src[1])), (str(dst[0]), port), app, zone)
            edge_ip = str(dst[0])
            if app.traffic_type == "https":

                def factory(sni: str | None) -> asyncio.Protocol:
                    return ClientConnection(
                        role, tls=True, listen_ip=edge_ip, listen_port=port, handoff=handoff, sni=sni
                    )

                await start_tls(role, conn, factory, where="spectrum-handoff")
                return
            await loop.connect_accepted_socket(
                lambda: ClientConnection(role, tls=False, listen_ip=edge_ip, listen_port=port, handoff=handoff), conn
            )
        except (OSError, TimeoutError, ValueError, ssl.SSLError) as e:
            log.debug("cdn.handoff.failed", error=repr(e))
            conn.close()

    try:
        while True:
            try:
                conn, addr = await loop.sock_accept(sock)
            except OSError as e:
                if sock.fileno() < 0:
                    return
                log.warning("cdn.handoff.accept_failed", error=str(e))
                await asyncio.sleep(0.1)  # overload (EMFILE...): pause, keep serving
                continue
            conn.setblocking(False)
            task = loop.create_task(handle(conn, str(addr[0])))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
    finally:
        for t in tasks:
            t.cancel()


def _listen(address: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        sock.listen(1024)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


# ---------------------------------------------------------------------------- the role


def _open_certificates(state_dir: Path) -> tuple[Any, Any]:
    from certs.files import EdgeCertificates, client_ssl_context, open_ca

    ca, _ = open_ca(state_dir)
    certificates = EdgeCertificates(state_dir, ca)
    return certificates, lambda: client_ssl_context(state_dir)


async def serve_cdn(ctx: RoleContext) -> None:
    """Role "cdn": the edge listeners and the handoff listener, until cancelled."""
    from edge.runtime import Bind, listen_socket

    snapshot = ctx.store.current
    net = snapshot.config.network
    # Seams for tests and embedders: ctx.extras may supply "cdn.certificates" (an object with
    # ssl_context_for_zone), "cdn.verify_context" (a factory of the strict-mode client context)
    # and "cdn.resolver" (an object with async resolve(name, rdtype) and aclose()).
    if "cdn.certificates" in ctx.extras:
        certificates, verify_factory = ctx.extras["cdn.certificates"], ctx.extras["cdn.verify_context"]
    else:
        certificates, verify_factory = _open_certificates(ctx.state_dir)
    verify_cache: list[ssl.SSLContext] = []

    def verify_context() -> ssl.SSLContext:
        if not verify_cache:
            context: ssl.SSLContext = verify_factory()
            context.set_alpn_protocols(["http/1.1"])
            verify_cache.append(context)
        return verify_cache[0]

    pool = UpstreamPool(insecure_context=insecure_client_context(), verify_context=verify_context)
    resolver = ctx.extras.get("cdn.resolver")
    if resolver is None:
        from resolver.stub import StubResolver

        resolver = StubResolver(ctx.store, source_ip=str(net.cdn_egress_ip))
    role = CdnRole(ctx, resolver=resolver, certificates=certificates, pool=pool)
    ctx.drain_hooks.append(pool.drain)
    role.warm(snapshot)
    unsubscribe = ctx.store.subscribe(role.warm)
    servers: list[asyncio.AbstractServer] = []
    acceptors: list[TlsAcceptor] = []
    handoff_sock: socket.socket | None = None
    handoff_task: asyncio.Task[None] | None = None
    try:
        for ip in net.cdn_ips:
            address = str(ip)
            for port in net.cdn_http_ports:

                def factory(address: str = address, port: int = port) -> asyncio.Protocol:
                    return ClientConnection(role, tls=False, listen_ip=address, listen_port=port)

                server = await open_tcp_listener(
                    ctx.binds,
                    role="cdn",
                    name=f"http-{address}-{port}",
                    address=address,
                    port=snapshot.listen_port(port),
                    factory=factory,
                    backlog=4096,
                    port_offset=snapshot.port_offset,
                )
                if server is not None:
                    servers.append(server)
            for port in net.cdn_https_ports:
                # HTTPS: our own accept loop, so the ClientHello's SNI is peeked before TLS starts
                # (an unknown name gets its alert; a known one its zone's context directly).
                dial = snapshot.listen_port(port)
                bind = Bind("cdn", f"https-{address}-{port}", "tcp", address, dial)
                try:
                    sock = listen_socket(address, dial, backlog=4096)
                except OSError as e:
                    ctx.binds.failed(bind, e, snapshot.port_offset)
                    continue
                acceptor = TlsAcceptor(role, sock, address, port)
                acceptors.append(acceptor)
                ctx.binds.bound(bind, acceptor.close)
        handoff_address = str(net.cdn_ips[0])
        handoff_port = snapshot.listen_port(HANDOFF_PORT)
        bind = Bind("cdn", "spectrum-handoff", "tcp", handoff_address, handoff_port)
        try:
            handoff_sock = _listen(handoff_address, handoff_port)
        except OSError as e:
            ctx.binds.failed(bind, e, snapshot.port_offset)
        else:
            ctx.binds.bound(bind, handoff_sock.close)
            handoff_task = asyncio.create_task(serve_handoff(role, handoff_sock), name="cdn-handoff")
        ctx.binds.role_ready("cdn")
        log.info("cdn.role.ready", listeners=len(servers) + len(acceptors), colo=net.colo)
        await asyncio.Event().wait()
    finally:
        unsubscribe()
        for server in servers:
            server.close()
        for acceptor in acceptors:
            acceptor.close()
        if handoff_task is not None:
            handoff_task.cancel()
        if handoff_sock is not None:
            handoff_sock.close()
        await pool.aclose()
        with contextlib.suppress(Exception):
            await resolver.aclose()


__all__ = [
    "HANDOFF_PORT",
    "CdnRole",
    "ClientConnection",
    "Handoff",
    "find_handoff_app",
    "origin_port_and_scheme",
    "serve_cdn",
]
