"""The demo origins over real sockets: they report exactly what they received."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from edge.harness import EdgeHandle, open_edge
from spectrum import proxy_protocol as pp

CONFIG = {"network": {"port_offset": 0}, "zones": [{"name": "example.com"}]}
V4 = ipaddress.IPv4Address


@pytest_asyncio.fixture
async def origins(tmp_path: Path) -> AsyncIterator[EdgeHandle]:
    async with open_edge(CONFIG, state_dir=tmp_path, roles=("origins",)) as handle:
        yield handle


async def http_exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> dict[str, object]:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
    body = await reader.readexactly(length)
    result: dict[str, object] = json.loads(body)
    return result


@pytest.mark.asyncio
async def test_http_echo_reports_headers_in_order_and_case(origins: EdgeHandle) -> None:
    reader, writer = await asyncio.open_connection("127.0.30.1", 80)
    req = b"POST /a?b=1 HTTP/1.1\r\nHost: www.example.com\r\nX-First: 1\r\nx-SECOND: 2\r\nContent-Length: 3\r\n\r\nabc"
    echo = await http_exchange(reader, writer, req)
    assert echo["method"] == "POST" and echo["target"] == "/a?b=1"
    assert echo["headers"] == [["Host", "www.example.com"], ["X-First", "1"], ["x-SECOND", "2"], ["Content-Length", "3"]]
    assert echo["body_bytes"] == 3 and echo["proxy"] is None and echo["tls"] is None
    # Keep-alive: a second request on the same connection.
    echo2 = await http_exchange(reader, writer, b"GET /two HTTP/1.1\r\nHost: x\r\n\r\n")
    assert echo2["target"] == "/two"
    writer.close()


@pytest.mark.asyncio
async def test_http_echo_strips_and_reports_a_proxy_v2_header(origins: EdgeHandle) -> None:
    reader, writer = await asyncio.open_connection("127.0.30.1", 80)
    header = pp.encode_v2(pp.ProxyHeader.proxied((V4("192.0.2.7"), 4242), (V4("127.0.20.5"), 80)))
    echo = await http_exchange(reader, writer, header + b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert echo["proxy"] == {"version": 2, "command": "PROXY", "transport": "tcp",
                             "src": {"ip": "192.0.2.7", "port": 4242}, "dst": {"ip": "127.0.20.5", "port": 80}}
    writer.close()


@pytest.mark.asyncio
async def test_https_echo_reports_sni_after_a_proxy_v1_header(origins: EdgeHandle) -> None:
    ctx = ssl.create_default_context(cafile=str(origins.ca_path))
    raw_reader, raw_writer = await asyncio.open_connection("127.0.30.1", 443)
    raw_writer.write(pp.encode_v1(pp.ProxyHeader.proxied((V4("192.0.2.8"), 1000), (V4("127.0.20.9"), 443),
                                                        transport="tcp", version=1)))
    await raw_writer.drain()
    await raw_writer.start_tls(ctx, server_hostname="spectrum.example.com")
    echo = await http_exchange(raw_reader, raw_writer, b"GET / HTTP/1.1\r\nHost: spectrum.example.com\r\n\r\n")
    assert echo["tls"]["sni"] == "spectrum.example.com"  # type: ignore[index]
    assert echo["proxy"]["version"] == 1  # type: ignore[index]
    assert echo["proxy"]["src"] == {"ip": "192.0.2.8", "port": 1000}  # type: ignore[index]
    raw_writer.close()


@pytest.mark.asyncio
async def test_tcp_echo_reports_then_echoes_and_half_closes(origins: EdgeHandle) -> None:
    reader, writer = await asyncio.open_connection("127.0.30.2", 22)
    report = json.loads(await reader.readline())
    assert report["origin"] == "tcp-echo" and report["proxy"] is None
    writer.write(b"hello")
    writer.write_eof()
    assert await reader.read() == b"hello"  # echo, then EOF: the half-close came back
    writer.close()


class Udp(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        self.queue.put_nowait(data)


@pytest.mark.asyncio
async def test_udp_echo_answers_spp_with_the_same_header(origins: EdgeHandle) -> None:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(Udp, remote_addr=("127.0.30.3", 53))
    try:
        header = pp.SppHeader((V4("192.0.2.1"), 5353), (V4("127.0.20.240"), 53))
        transport.sendto(pp.encode_spp(header, b"ping"))
        reply = await asyncio.wait_for(proto.queue.get(), 5)
        got, payload = pp.decode_spp(reply)
        assert got == header and payload == b"ping"
        transport.sendto(pp.encode_spp(header, b"whoami"))
        report = json.loads(pp.decode_spp(await asyncio.wait_for(proto.queue.get(), 5))[1])
        assert report["spp"]["client"] == {"ip": "192.0.2.1", "port": 5353}
    finally:
        transport.close()


@pytest.mark.asyncio
async def test_udp_echo_strips_proxy_v2_on_the_first_datagram(origins: EdgeHandle) -> None:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(Udp, remote_addr=("127.0.30.3", 53))
    try:
        v2 = pp.encode_v2(pp.ProxyHeader.proxied((V4("192.0.2.2"), 777), (V4("127.0.20.240"), 53), transport="udp"))
        transport.sendto(v2 + b"first")
        assert await asyncio.wait_for(proto.queue.get(), 5) == b"first"
        transport.sendto(b"whoami")
        report = json.loads(await asyncio.wait_for(proto.queue.get(), 5))
        assert report["proxy"]["transport"] == "udp" and report["proxy"]["src"]["port"] == 777
    finally:
        transport.close()


@pytest.mark.asyncio
async def test_a_garbage_prefix_does_not_harm_the_listener(origins: EdgeHandle) -> None:
    reader, writer = await asyncio.open_connection("127.0.30.1", 80)
    writer.write(b"PROXY NONSENSE\r\n")
    await writer.drain()
    # A malformed PROXY header: closed at once (FIN, or RST for the unread bytes), never hangs.
    with contextlib.suppress(ConnectionResetError):
        assert await reader.read() == b""
    writer.close()
    reader2, writer2 = await asyncio.open_connection("127.0.30.1", 80)
    echo = await http_exchange(reader2, writer2, b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
    assert echo["target"] == "/ok"
    writer2.close()
