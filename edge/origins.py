"""Built-in demo origins (role `origins`), so every experiment has something to hit.

- HTTP echo and HTTPS echo: answer JSON describing exactly what they received: peer address,
  the PROXY header if one came (v1 or v2, stripped before HTTP/TLS), TLS SNI and version,
  method, target, headers in order and original case, body size and SHA-256. Extra paths:
  `/bytes/N` answers N bytes (for benchmarks), `/status/NNN` answers that status, `/stall`
  never answers (for 524 tests), `/echo` streams the request body back. A WebSocket-style
  `Upgrade` gets `101` and then a raw byte echo.
- TCP echo: first writes one JSON line (`peer`, `proxy`), then echoes every byte; a half-close
  from the client is echoed as a half-close.
- UDP echo: strips an SPP header (and answers with the same header, as Spectrum requires) or a
  PROXY v2 header (first datagram of a flow), then echoes the payload unchanged; the payload
  `whoami` is answered with the JSON report instead.

Each stream listener peeks at a new connection for a PROXY header (MSG_PEEK, so no TLS byte is
consumed), strips it, then hands the socket to the loop (with TLS for the HTTPS echo).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import ipaddress
import json
import socket
import ssl
from collections.abc import Callable
from http import HTTPStatus
from typing import Any, cast

import h11
import structlog

from edge.runtime import Bind, RoleContext, enlarge_udp_buffers, open_raw_listener
from spectrum import proxy_protocol as pp

log = structlog.get_logger("edge.origins")

# A PROXY v1 line is at most 107 bytes; a v2 header is 16 bytes plus its length field (we cap
# what we accept at 16 + 536, haproxy's recommended receive buffer for v2 with TLVs).
_PEEK_LIMIT = 16 + 536
# How long a new connection may stay silent before we stop looking for a PROXY header and hand
# it over as is. Spectrum writes its header at once on connect, so a server-speaks-first origin
# (the TCP echo) only needs a short wait; HTTP clients always speak first.
_PROXY_WAIT = 5.0
_PROXY_WAIT_SERVER_FIRST = 0.25


def header_json(header: pp.ProxyHeader | None) -> dict[str, Any] | None:
    if header is None:
        return None
    return {
        "version": header.version,
        "command": header.command,
        "transport": header.transport,
        "src": {"ip": str(header.src[0]), "port": header.src[1]} if header.src else None,
        "dst": {"ip": str(header.dst[0]), "port": header.dst[1]} if header.dst else None,
    }


def _addr(pair: Any) -> dict[str, Any] | None:
    if not pair:
        return None
    return {"ip": str(pair[0]), "port": int(pair[1])}


async def _wait_readable(sock: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()
    fd = sock.fileno()

    def ready() -> None:
        if not fut.done():
            fut.set_result(None)

    loop.add_reader(fd, ready)
    try:
        await fut
    finally:
        loop.remove_reader(fd)


async def strip_proxy_header(sock: socket.socket, wait: float = _PROXY_WAIT) -> pp.ProxyHeader | None:
    """Peek at a new connection; if it starts with a PROXY header, consume exactly that header.
    A connection silent for `wait` seconds has no header."""
    try:
        return await _strip(sock, wait)
    except TimeoutError:
        return None


async def _strip(sock: socket.socket, wait: float) -> pp.ProxyHeader | None:
    async with asyncio.timeout(wait):
        while True:
            await _wait_readable(sock)
            try:
                data = sock.recv(_PEEK_LIMIT, socket.MSG_PEEK)
            except BlockingIOError:
                continue
            if not data:
                return None
            if not pp.looks_like_proxy_header(data[:16]):
                return None
            result = pp.decode(data)  # a malformed header raises: the connection is closed, as haproxy does
            if isinstance(result, pp.ProxyHeader):
                sock.recv(result.length)
                return result
            if len(data) >= _PEEK_LIMIT:
                return None


class _SniRecorder:
    """Remembers the SNI each TLS handshake offered (sni_callback sees the SSLObject)."""

    def __init__(self) -> None:
        self.names: dict[int, str | None] = {}

    def callback(self, sslobj: Any, name: str | None, _ctx: ssl.SSLContext) -> None:
        self.names[id(sslobj)] = name
        if len(self.names) > 10_000:
            self.names.clear()


class HttpEcho(asyncio.Protocol):
    def __init__(self, origin: str, proxy: pp.ProxyHeader | None, sni: _SniRecorder | None) -> None:
        self.origin = origin
        self.proxy = proxy
        self.sni = sni
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=64 * 1024)
        self.transport: asyncio.Transport | None = None
        self.request: h11.Request | None = None
        self.body_bytes = 0
        self.body_hash = hashlib.sha256()
        self.echo_body = False
        self.upgraded = False
        self.tls: dict[str, Any] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        sslobj = transport.get_extra_info("ssl_object")
        if sslobj is not None:
            name = self.sni.names.pop(id(sslobj), None) if self.sni else None
            self.tls = {"sni": name, "version": sslobj.version(), "alpn": sslobj.selected_alpn_protocol()}

    def data_received(self, data: bytes) -> None:
        if self.upgraded:
            assert self.transport is not None
            self.transport.write(data)
            return
        self.conn.receive_data(data)
        self._drive()

    def eof_received(self) -> bool | None:
        if self.upgraded:
            assert self.transport is not None
            if self.transport.can_write_eof():
                self.transport.write_eof()
            return True
        self.conn.receive_data(b"")
        self._drive()
        return None

    def _send(self, event: Any) -> None:
        assert self.transport is not None
        data = self.conn.send(event)
        if data:
            self.transport.write(data)

    def _drive(self) -> None:
        assert self.transport is not None
        while True:
            try:
                event = self.conn.next_event()
            except h11.RemoteProtocolError as e:
                with contextlib.suppress(h11.LocalProtocolError):
                    self._send(
                        h11.Response(
                            status_code=e.error_status_hint,
                            headers=[("content-length", "0"), ("connection", "close")],
                            reason=HTTPStatus(e.error_status_hint).phrase,
                        )
                    )
                self.transport.close()
                return
            if event is h11.NEED_DATA or event is h11.PAUSED:
                if event is h11.PAUSED and self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
                    self.conn.start_next_cycle()
                    continue
                return
            if isinstance(event, h11.Request):
                self._on_request(event)
            elif isinstance(event, h11.Data):
                self.body_bytes += len(event.data)
                self.body_hash.update(event.data)
                if self.echo_body:
                    self._send(h11.Data(data=event.data))
            elif isinstance(event, h11.EndOfMessage):
                self._on_end()
                if self.upgraded:
                    return
            elif isinstance(event, h11.ConnectionClosed):
                self.transport.close()
                return

    def _on_request(self, req: h11.Request) -> None:
        self.request = req
        self.body_bytes = 0
        self.body_hash = hashlib.sha256()
        target = req.target.decode("latin-1")
        self.echo_body = target.startswith("/echo")
        if self.echo_body:
            self._send(
                h11.Response(
                    status_code=200,
                    reason="OK",
                    headers=[
                        ("content-type", "application/octet-stream"),
                        ("transfer-encoding", "chunked"),
                        ("x-echo-origin", self.origin),
                    ],
                )
            )
        elif any(k.lower() == b"expect" for k, _ in req.headers.raw_items()):
            self._send(h11.InformationalResponse(status_code=100, headers=[]))

    def _report(self) -> dict[str, Any]:
        req = self.request
        assert req is not None and self.transport is not None
        return {
            "origin": self.origin,
            "peer": _addr(self.transport.get_extra_info("peername")),
            "local": _addr(self.transport.get_extra_info("sockname")),
            "proxy": header_json(self.proxy),
            "tls": self.tls,
            "method": req.method.decode(),
            "target": req.target.decode("latin-1"),
            "http_version": req.http_version.decode(),
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in req.headers.raw_items()],
            "body_bytes": self.body_bytes,
            "body_sha256": self.body_hash.hexdigest(),
        }

    def _on_end(self) -> None:
        req = self.request
        assert req is not None and self.transport is not None
        target = req.target.decode("latin-1")
        if self.echo_body:
            self._send(h11.EndOfMessage())
            return
        headers = {k.lower(): v.lower() for k, v in req.headers.raw_items()}
        if headers.get(b"upgrade") and b"upgrade" in headers.get(b"connection", b""):
            self._send(
                h11.InformationalResponse(
                    status_code=101, headers=[(b"upgrade", headers[b"upgrade"]), (b"connection", b"upgrade")]
                )
            )
            self.upgraded = True
            trailing, _closed = self.conn.trailing_data
            if trailing:
                self.transport.write(trailing)
            return
        if target == "/stall":
            return
        status, body, ctype = 200, b"", "application/json"
        if target.startswith("/bytes/"):
            try:
                n = max(0, min(int(target[len("/bytes/") :].split("?")[0]), 1 << 30))
            except ValueError:
                n = 0
            body, ctype = (b"0123456789abcdef" * (n // 16 + 1))[:n], "application/octet-stream"
        elif target.startswith("/status/"):
            try:
                status = int(target[len("/status/") :].split("?")[0])
            except ValueError:
                status = 400
            if not 200 <= status <= 599:
                status = 400
            body = json.dumps(self._report()).encode() + b"\n"
        else:
            body = json.dumps(self._report(), indent=1).encode() + b"\n"
        self._send(
            h11.Response(
                status_code=status,
                headers=[("content-type", ctype), ("content-length", str(len(body))), ("x-echo-origin", self.origin)],
                reason=_phrase(status),
            )
        )
        self._send(h11.Data(data=body))
        self._send(h11.EndOfMessage())
        if self.conn.our_state is h11.MUST_CLOSE:
            self.transport.close()
        elif self.conn.their_state is h11.DONE:
            self.conn.start_next_cycle()
            self._drive()


class TcpEcho(asyncio.Protocol):
    def __init__(self, proxy: pp.ProxyHeader | None) -> None:
        self.proxy = proxy
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        report = {
            "origin": "tcp-echo",
            "peer": _addr(transport.get_extra_info("peername")),
            "local": _addr(transport.get_extra_info("sockname")),
            "proxy": header_json(self.proxy),
        }
        self.transport.write(json.dumps(report).encode() + b"\n")

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def eof_received(self) -> bool:
        # The client is done sending: returning False makes the transport flush the echo, send
        # our FIN and close, so the half-close comes back and nothing stays half-open.
        return False


class UdpEcho(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.flows: dict[Any, pp.ProxyHeader] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        assert self.transport is not None
        prefix = b""
        report: dict[str, Any] = {"origin": "udp-echo", "peer": _addr(addr), "proxy": None, "spp": None}
        payload = data
        try:
            if len(data) >= pp.SPP_HEADER_LEN and data[:2] == b"\x56\xec":
                spp, payload = pp.decode_spp(data)
                prefix = data[: pp.SPP_HEADER_LEN]
                report["spp"] = {"client": _addr(spp.client), "proxy": _addr(spp.proxy)}
            elif pp.looks_like_proxy_header(data[:16]):
                result = pp.decode(data)
                if isinstance(result, pp.ProxyHeader):
                    self.flows[addr] = result
                    if len(self.flows) > 10_000:
                        self.flows.clear()
                    payload = data[result.length :]
        except pp.ProxyProtocolError as e:
            report["error"] = str(e)
        report["proxy"] = header_json(self.flows.get(addr))
        if payload == b"whoami":
            payload = json.dumps(report).encode()
        self.transport.sendto(prefix + payload, addr)


async def serve_stream_origin(
    ctx: RoleContext,
    name: str,
    address: str,
    port: int,
    factory: Callable[[pp.ProxyHeader | None], asyncio.Protocol],
    tls: ssl.SSLContext | None = None,
    proxy_wait: float = _PROXY_WAIT,
) -> None:
    """Accept loop with PROXY-header stripping; runs until cancelled."""
    sock = open_raw_listener(ctx.binds, role="origins", name=name, address=address, port=port,
                             port_offset=ctx.store.current.port_offset)
    if sock is None:
        return
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()

    live: set[asyncio.Transport] = set()  # uvloop's TLS transports can't be weakly referenced

    async def handle(conn: socket.socket) -> None:
        try:
            header = await strip_proxy_header(conn, proxy_wait)
            transport, _ = await loop.connect_accepted_socket(
                lambda: factory(header), conn, ssl=tls, ssl_handshake_timeout=10.0 if tls else None
            )
            live.add(transport)
            if len(live) > 256:
                live.difference_update([t for t in live if t.is_closing()])
        except (OSError, TimeoutError, ssl.SSLError, pp.ProxyProtocolError) as e:
            log.debug("origins.connection.failed", origin=name, error=repr(e))
            conn.close()

    try:
        while True:
            try:
                conn, _ = await loop.sock_accept(sock)
            except OSError as e:
                if sock.fileno() < 0:
                    return
                log.warning("origins.accept.failed", origin=name, error=str(e))
                await asyncio.sleep(0.1)
                continue
            conn.setblocking(False)
            task = asyncio.create_task(handle(conn))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
    finally:
        sock.close()
        for t in tasks:
            t.cancel()
        for transport in list(live):
            transport.abort()  # the demo origins stop last, after the other roles drained


def origin_tls_context(ctx: RoleContext) -> tuple[ssl.SSLContext, _SniRecorder]:
    """TLS for the HTTPS echo: a certificate from the local CA for every zone's apex and
    one-label wildcard, plus the origin's own address (so `strict` mode verifies)."""
    from certs.files import open_ca, write_issued
    from certs.issue import issue

    snapshot = ctx.store.current
    ca, _ = open_ca(ctx.state_dir)
    names = ["localhost"]
    for zone in snapshot.config.zones:
        names += [zone.name, f"*.{zone.name}", *zone.settings.advanced_certificate_hosts]
    o = snapshot.config.origins
    ips = [ipaddress.ip_address(str(o.https_echo.address)), ipaddress.ip_address("127.0.0.1")]
    now = datetime.datetime.now(datetime.UTC)
    cert = issue(ca, names, now, ips=ips)
    cert_path, key_path = write_issued(cert, ctx.state_dir / "origins", "https-echo")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    context.set_alpn_protocols(["http/1.1"])
    recorder = _SniRecorder()
    context.sni_callback = recorder.callback
    return context, recorder


async def serve_origins(ctx: RoleContext) -> None:
    snapshot = ctx.store.current
    o = snapshot.config.origins
    if not o.enabled:
        ctx.binds.role_ready("origins")
        await asyncio.Event().wait()
    tls, recorder = origin_tls_context(ctx)
    lp = snapshot.listen_port
    udp_bind = Bind("origins", "udp-echo", "udp", str(o.udp_echo.address), lp(o.udp_echo.port))
    loop = asyncio.get_running_loop()
    udp: asyncio.DatagramTransport | None = None
    try:
        udp, _ = await loop.create_datagram_endpoint(UdpEcho, local_addr=(str(o.udp_echo.address), lp(o.udp_echo.port)))
        enlarge_udp_buffers(udp)
        ctx.binds.bound(udp_bind, udp.close)
    except OSError as e:
        ctx.binds.failed(udp_bind, e, snapshot.port_offset)
    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(
                serve_stream_origin(
                    ctx,
                    "http-echo",
                    str(o.http_echo.address),
                    lp(o.http_echo.port),
                    lambda h: HttpEcho("http-echo", h, None),
                )
            )
            tg.create_task(
                serve_stream_origin(
                    ctx,
                    "https-echo",
                    str(o.https_echo.address),
                    lp(o.https_echo.port),
                    lambda h: HttpEcho("https-echo", h, recorder),
                    tls=tls,
                )
            )
            tg.create_task(
                serve_stream_origin(
                    ctx, "tcp-echo", str(o.tcp_echo.address), lp(o.tcp_echo.port), TcpEcho,
                    proxy_wait=_PROXY_WAIT_SERVER_FIRST,
                )
            )
            await asyncio.sleep(0)
            ctx.binds.role_ready("origins")
    finally:
        if udp is not None:
            udp.close()


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""
