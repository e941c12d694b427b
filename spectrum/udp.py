"""Spectrum UDP: one `UdpListener` per (edge IP, udp, port), one origin socket per client flow.

A flow is keyed by the client's (address, port). Its first datagram routes it (by the snapshot
current then; the flow keeps that app), checks the IP firewall (when the app has it on),
opens a connected, non-blocking UDP socket bound to `network.spectrum_egress_ip` and emits the
`connect` record. The flow table (`spectrum.flows.FlowTable`, time passed in) bounds the flows
per listener (`limits.max_udp_flows`) and expires idle ones (`limits.udp_idle_timeout`, both
directions count as activity); the listener arms one timer at the table's next deadline. An
expired or evicted flow closes its socket and emits `disconnect` (Status 200).

PROXY: `simple` prefixes every datagram to the origin with SPP (client, edge) and requires the
origin's replies to carry the same header, which is checked and stripped (a reply without it,
or with another flow's header, is dropped and counted); `v2` prefixes the first datagram of a
flow with a PROXY v2 DGRAM header.

Datagrams are never queued in user space: a socket that would block drops the datagram, as a
full network queue would.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog

from spectrum import proxy_protocol as pp
from spectrum import records as rec
from spectrum.flows import FlowTable
from spectrum.routing import Route, RouteKey, check_access, failover_order, match_route, routes_for

if TYPE_CHECKING:
    from spectrum.server import SpectrumServer

log = structlog.get_logger("spectrum.udp")

# Largest UDP payload; replies are read with this buffer size.
MAX_DATAGRAM = 65535
# Datagrams read from one origin socket per readiness callback, so one busy flow cannot
# starve the others.
READ_BATCH = 64
# A flow's origin socket: room for an origin's burst of answers (a limit, not an allocation).
FLOW_RCVBUF = 1024 * 1024


class UdpFlow:
    """One client flow: its origin socket and counters."""

    __slots__ = (
        "client",
        "dropped",
        "facts",
        "fd",
        "header",
        "listener",
        "proxy",
        "sent_first",
        "sock",
    )

    def __init__(
        self,
        listener: UdpListener,
        client: tuple[str, int],
        sock: socket.socket,
        facts: rec.ConnectionFacts,
        proxy: str,
        header: bytes,
    ) -> None:
        self.listener = listener
        self.client = client
        self.sock = sock
        self.fd = sock.fileno()
        self.facts = facts
        self.proxy = proxy
        self.header = header  # SPP header (simple) or PROXY v2 header (v2, first datagram only)
        self.sent_first = False
        self.dropped = 0

    def send(self, data: bytes) -> None:
        self.facts.client_bytes += len(data)
        if self.proxy == "simple" or (self.proxy == "v2" and not self.sent_first):
            data = self.header + data
        self.sent_first = True
        try:
            self.sock.send(data)
        except OSError:  # BlockingIOError (queue full), ECONNREFUSED (ICMP from an earlier send)
            self.dropped += 1

    def on_readable(self) -> None:
        listener = self.listener
        out = listener.sock
        sock = self.sock
        spp = self.proxy == "simple"
        hlen = len(self.header)
        got = False
        for _ in range(READ_BATCH):
            try:
                data = sock.recv(MAX_DATAGRAM)
            except BlockingIOError:
                break
            except OSError:  # ICMP port unreachable and friends: the origin is not there
                self.dropped += 1
                break
            got = True
            if spp:
                # The origin must answer with the same SPP header (reference 3.2).
                if data[:hlen] != self.header:
                    self.dropped += 1
                    continue
                data = data[hlen:]
            self.facts.origin_bytes += len(data)
            if out is not None:
                try:
                    out.sendto(data, self.client)
                except OSError:  # a full send queue (BlockingIOError) or a gone client
                    self.dropped += 1
        if got:
            listener.touch(self.client)

    def close(self) -> None:
        loop = self.listener.server.loop
        loop.remove_reader(self.fd)
        self.sock.close()


class UdpListener:
    """One bound (edge IP, udp, port) with its flow table. The socket is read in batches from the
    loop's reader callback and written with plain `sendto` (no transport, no user-space queue)."""

    def __init__(self, server: SpectrumServer, key: RouteKey) -> None:
        self.server = server
        self.key = key
        self.sock: socket.socket | None = None
        self.closer: Callable[[], None] | None = None
        limits = server.snapshot.config.limits
        self.idle = float(limits.udp_idle_timeout)
        self.flows: FlowTable[tuple[str, int], UdpFlow] = FlowTable(
            max_flows=int(limits.max_udp_flows), idle_timeout=self.idle
        )
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at: float | None = None
        self.dropped = 0
        self.bound_port = 0

    def serve(self, sock: socket.socket, closer: Callable[[], None]) -> None:
        self.sock, self.closer = sock, closer

    # -- the socket
    def on_readable(self) -> None:
        sock = self.sock
        if sock is None:
            return
        recvfrom = sock.recvfrom
        flows = self.flows
        now = self.server.loop.time()  # one clock reading per batch
        for _ in range(READ_BATCH):
            try:
                data, addr = recvfrom(MAX_DATAGRAM)
            except BlockingIOError:
                return
            except OSError as e:  # ICMP errors reported on the listener: nothing to do
                log.debug("spectrum.udp.error", edge=f"{self.key.ip}:{self.key.port}", error=repr(e))
                return
            client = addr if len(addr) == 2 else (addr[0], addr[1])
            flow = flows.get(client, now)
            if flow is None:
                flow = self._open_flow(client, now)
                if flow is None:
                    self.dropped += 1
                    continue
            flow.send(data)

    # -- flows
    def _open_flow(self, client: tuple[str, int], now: float) -> UdpFlow | None:
        server = self.server
        snapshot = server.snapshot
        route = match_route(routes_for(snapshot), self.key.ip, "udp", self.key.port)
        if route is None:
            return None
        app = route.app
        client_ip = ipaddress.ip_address(client[0].split("%", 1)[0])
        facts = rec.ConnectionFacts(
            app_id=route.app_id,
            app_hostname=app.dns.name,
            colo=snapshot.config.network.colo,
            client_ip=str(client_ip),
            client_port=client[1],
            edge_ip=str(self.key.ip),
            edge_port=self.key.port,
            proto="udp",
            proxy_protocol=app.proxy_protocol,
            ip_firewall=app.ip_firewall,
            tls_mode="off",
            connect_ns=time.time_ns(),
        )
        decision = check_access(snapshot, route, client_ip)
        facts.matched_firewall = decision.matched
        if not decision.allowed:
            server.emit(rec.connect_record(facts))
            server.emit(rec.close_record(facts, "clientFiltered", rec.STATUS_FILTERED, time.time_ns()))
            return None
        sock = self._origin_socket(route, facts)
        if sock is None:
            return None
        src = (client_ip, client[1])
        dst = (self.key.ip, self.key.port)
        header = b""
        if app.proxy_protocol == "simple":
            header = pp.encode_spp(pp.SppHeader(client=src, proxy=dst))
        elif app.proxy_protocol == "v2":
            header = pp.encode_v2(pp.ProxyHeader.proxied(src, dst, transport="udp"))
        flow = UdpFlow(self, client, sock, facts, app.proxy_protocol, header)
        for evicted in self.flows.put(client, flow, now):
            self._closed(evicted, "evicted")
        server.loop.add_reader(flow.fd, flow.on_readable)
        server.emit(rec.connect_record(facts))
        self._arm()
        return flow

    def _origin_socket(self, route: Route, facts: rec.ConnectionFacts) -> socket.socket | None:
        server = self.server
        targets = server.udp_targets(route)
        if not targets:
            server.emit(rec.connect_record(facts))
            server.emit(rec.close_record(facts, "disconnect", rec.STATUS_ORIGIN_NOT_RESOLVED, time.time_ns()))
            return None
        target = failover_order(targets, server.turn(route.app_id))[0]
        port = server.dial_port(target.address, target.port)
        facts.origin_ip, facts.origin_port = str(target.address), target.port
        family = socket.AF_INET6 if target.address.version == 6 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, FLOW_RCVBUF)
            egress = server.egress
            if egress.version == target.address.version:
                sock.bind((str(egress), 0))
            sock.connect((str(target.address), port))
        except OSError as e:
            sock.close()
            log.warning("spectrum.udp.origin_failed", app=route.app_id, error=repr(e))
            server.emit(rec.connect_record(facts))
            server.emit(rec.close_record(facts, "disconnect", rec.connect_error_status(e), time.time_ns()))
            return None
        return sock

    def touch(self, client: tuple[str, int]) -> None:
        self.flows.get(client, self.server.loop.time())

    def _arm(self) -> None:
        deadline = self.flows.next_deadline()
        if deadline is None:
            return
        if self.timer is not None and self.timer_at is not None and self.timer_at <= deadline:
            return
        if self.timer is not None:
            self.timer.cancel()
        self.timer_at = deadline
        self.timer = self.server.loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self.timer = None
        self.timer_at = None
        for flow in self.flows.expire(self.server.loop.time()):
            self._closed(flow, "idle")
        self._arm()

    def dropped_total(self) -> int:
        """Datagrams dropped here (no route, a full socket, a bad SPP reply), live flows included."""
        return self.dropped + sum(record.data.dropped for record in self.flows)

    def _closed(self, flow: UdpFlow, reason: str) -> None:
        flow.close()
        self.dropped += flow.dropped
        log.debug("spectrum.flow.closed", app=flow.facts.app_id, client=flow.client, reason=reason)
        self.server.emit(rec.close_record(flow.facts, "disconnect", rec.STATUS_NORMAL, time.time_ns()))

    def close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        for flow in self.flows.drain():
            self._closed(flow, "listener closed")
        closer, self.closer, self.sock = self.closer, None, None
        if closer is not None:
            closer()
