"""Spectrum over real sockets: the default config's apps, PROXY/SPP, TLS modes, port ranges,
BYOIP addresses, the IP firewall, unowned ports, backpressure, half-close, reconfiguration
and the spectrum_events records."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from spectrum_harness import (
    RecordWaiter,
    add_apps,
    app_ip,
    default_data,
    pick_block,
    read_until_eof,
    running_edge,
    spectrum,
    udp_client,
)

from edge.config import build_config
from edge.harness import EdgeHandle
from spectrum.server import HIGH_WATER, READ_SIZE


@pytest.fixture
def block() -> int:
    return pick_block()


class PortReporter(asyncio.Protocol):
    """Test origin: writes 'port=<local port>\\n', then echoes."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport
        transport.write(f"port={transport.get_extra_info('sockname')[1]}\n".encode())  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)

    def eof_received(self) -> bool:
        return False  # flush the echo, send FIN and close: nothing is left half-open


class SpeakFirst(asyncio.Protocol):
    """Test origin: sends a greeting and half-closes at once, then counts what the client
    sends and, on the client's EOF, writes the count and closes."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport
        self.count = 0
        transport.write(b"origin says hi")  # type: ignore[attr-defined]
        transport.write_eof()  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.count += len(data)

    def eof_received(self) -> None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        pass


class CountingSink(asyncio.Protocol):
    """Sends nothing; on the client's EOF writes the number of bytes it got, then closes."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport
        self.count = 0

    def data_received(self, data: bytes) -> None:
        self.count += len(data)

    def eof_received(self) -> bool:
        self.transport.write(str(self.count).encode())
        self.transport.close()
        return True


def extra_apps(block: int) -> list[dict[str, Any]]:
    b = block
    return [
        {
            "protocol": "tcp/7200-7202",
            "dns": {"type": "CNAME", "name": "range.example.com"},
            "origin_direct": [f"tcp://127.{b}.31.2:8200-8202"],
        },
        {
            "protocol": "tcp/2222",
            "dns": {"type": "ADDRESS", "name": "byoip.example.com"},
            "edge_ips": {"type": "static", "ips": [f"127.{b}.21.5"]},
            "origin_direct": [f"tcp://127.{b}.30.2:22"],
        },
        {
            "protocol": "tcp/2223",
            "dns": {"type": "CNAME", "name": "fw.example.com"},
            "origin_direct": [f"tcp://127.{b}.30.2:22"],
            "ip_firewall": True,
        },
        {
            "protocol": "tcp/7100",
            "dns": {"type": "CNAME", "name": "first.example.com"},
            "origin_direct": [f"tcp://127.{b}.31.1:7100"],
        },
        {
            "protocol": "tcp/7101",
            "dns": {"type": "CNAME", "name": "sink.example.com"},
            "origin_direct": [f"tcp://127.{b}.31.1:7101"],
        },
        {
            "protocol": "tcp/7300",
            "dns": {"type": "CNAME", "name": "refused.example.com"},
            "origin_direct": [f"tcp://127.{b}.31.9:9", f"tcp://127.{b}.31.9:10"],
        },
        {
            "protocol": "tcp/7301",
            "dns": {"type": "CNAME", "name": "failover.example.com"},
            # First origin refuses, second answers: every connection must get through.
            "origin_direct": [f"tcp://127.{b}.31.9:9", f"tcp://127.{b}.30.2:22"],
        },
        {
            "protocol": "tcp/8443",
            "dns": {"type": "CNAME", "name": "flex.example.com"},
            "origin_direct": [f"tcp://127.{b}.30.1:80"],
            "tls": "flexible",
        },
        {
            "protocol": "tcp/9443",
            "dns": {"type": "CNAME", "name": "strict.example.com"},
            "origin_direct": [f"tcp://127.{b}.30.1:443"],
            "tls": "strict",
            "proxy_protocol": "v2",
        },
        {
            "protocol": "udp/5300",
            "dns": {"type": "CNAME", "name": "udp2.example.com"},
            "origin_direct": [f"udp://127.{b}.30.3:53"],
            "proxy_protocol": "v2",
        },
    ]


@pytest_asyncio.fixture
async def edge(block: int, tmp_path: Path) -> AsyncIterator[EdgeHandle]:
    data = add_apps(default_data(block), *extra_apps(block))
    data["zones"][0]["access_rules"] = [
        {"mode": "block", "configuration": {"target": "ip_range", "value": f"127.{block}.50.0/24"}},
        {"mode": "whitelist", "configuration": {"target": "ip", "value": f"127.{block}.50.7"}},
    ]
    loop = asyncio.get_running_loop()
    servers = [await loop.create_server(PortReporter, f"127.{block}.31.2", p) for p in (8200, 8201, 8202)]
    servers.append(await loop.create_server(SpeakFirst, f"127.{block}.31.1", 7100))
    servers.append(await loop.create_server(CountingSink, f"127.{block}.31.1", 7101))
    try:
        async with running_edge(data, tmp_path / "state") as handle:
            yield handle
    finally:
        for s in servers:
            s.close()


async def read_json_line(reader: asyncio.StreamReader) -> dict[str, Any]:
    async with asyncio.timeout(10):
        line = await reader.readline()
    result: dict[str, Any] = json.loads(line)
    return result


# --------------------------------------------------------------------------- TCP basics


@pytest.mark.asyncio
async def test_ssh_app_reaches_tcp_echo_from_egress_with_proxy_v1(edge: EdgeHandle, block: int) -> None:
    ip = app_ip(edge, "ssh.example.com")
    client_src = f"127.{block}.60.9"
    reader, writer = await asyncio.open_connection(ip, 22, local_addr=(client_src, 0))
    client_port = writer.get_extra_info("sockname")[1]
    report = await read_json_line(reader)
    assert report["origin"] == "tcp-echo"
    assert report["peer"]["ip"] == f"127.{block}.20.254"
    assert report["proxy"]["version"] == 1
    assert report["proxy"]["src"] == {"ip": client_src, "port": client_port}
    assert report["proxy"]["dst"] == {"ip": ip, "port": 22}
    writer.write(b"hello spectrum")
    writer.write_eof()
    assert await read_until_eof(reader) == b"hello spectrum"
    writer.close()
    waiter = RecordWaiter(edge)
    done = await waiter.wait(lambda r: r["Event"] == "disconnect" and r["ClientPort"] == client_port)
    connect = await waiter.wait(lambda r: r["Event"] == "connect" and r["ClientPort"] == client_port)
    assert connect["Status"] == 0 and connect["ClientIP"] == client_src
    assert done["Status"] == 200
    assert done["ClientBytes"] == len(b"hello spectrum")
    assert done["OriginBytes"] == len(json.dumps(report)) + 1 + len(b"hello spectrum")
    assert done["OriginIP"] == f"127.{block}.30.2" and done["OriginPort"] == 22
    assert done["ProxyProtocol"] == "v1" and done["ClientProto"] == "tcp" and done["OriginTlsMode"] == "off"
    assert done["AppHostname"] == "ssh.example.com" and done["EdgeIP"] == ip and done["EdgePort"] == 22
    assert done["Application"] == connect["Application"] != ""
    assert done["DisconnectTimestamp"] >= done["ConnectTimestamp"] and done["DurationMs"] >= 0
    assert done["ColoCode"] == "LHR"


@pytest.mark.asyncio
async def test_nc_to_ssh_app(edge: EdgeHandle, block: int) -> None:
    if shutil.which("nc") is None:
        pytest.skip("nc not installed")
    ip = app_ip(edge, "ssh.example.com")
    proc = await asyncio.create_subprocess_exec(
        "nc", "-N", "-w", "5", ip, "22", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(proc.communicate(b"ping\n"), 15)
    first, rest = out.split(b"\n", 1)
    report = json.loads(first)
    assert report["peer"]["ip"] == f"127.{block}.20.254" and report["proxy"]["version"] == 1
    assert rest == b"ping\n"


@pytest.mark.asyncio
async def test_tls_off_app_passes_tls_through_to_https_echo(edge: EdgeHandle, block: int) -> None:
    ip = app_ip(edge, "spectrum.example.com")
    proc = await asyncio.create_subprocess_exec(
        "curl",
        "-sk",
        "--max-time",
        "10",
        "--resolve",
        f"spectrum.example.com:443:{ip}",
        "https://spectrum.example.com/",
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    report = json.loads(out)
    assert report["origin"] == "https-echo"
    assert report["tls"]["sni"] == "spectrum.example.com"
    assert report["peer"]["ip"] == f"127.{block}.20.254"
    assert report["proxy"] is None


@pytest.mark.asyncio
async def test_unowned_port_on_spectrum_ip_accepts_then_closes(edge: EdgeHandle) -> None:
    ip = app_ip(edge, "ssh.example.com")
    before = len(edge.records("spectrum_events"))
    for port in (80, 443, 8080):
        reader, writer = await asyncio.open_connection(ip, port)
        assert await read_until_eof(reader, timeout=5) == b""
        writer.close()
    assert len(edge.records("spectrum_events")) == before  # no app, no record
    # A port that is neither an app's nor a CDN port is not bound at all.
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection(ip, 23)


@pytest.mark.asyncio
async def test_origin_refused_closes_with_521(edge: EdgeHandle) -> None:
    ip = app_ip(edge, "refused.example.com")
    reader, writer = await asyncio.open_connection(ip, 7300)
    port = writer.get_extra_info("sockname")[1]
    assert await read_until_eof(reader) == b""
    writer.close()
    rec = await RecordWaiter(edge).wait(lambda r: r["Event"] == "disconnect" and r["ClientPort"] == port)
    assert rec["Status"] == 521


@pytest.mark.asyncio
async def test_failover_to_the_next_origin_on_refusal(edge: EdgeHandle) -> None:
    ip = app_ip(edge, "failover.example.com")
    for _ in range(4):  # round-robin puts the refusing origin first every other time
        reader, writer = await asyncio.open_connection(ip, 7301)
        report = await read_json_line(reader)
        assert report["origin"] == "tcp-echo"
        writer.close()


# --------------------------------------------------------------------------- half-close


@pytest.mark.asyncio
async def test_half_close_client_first(edge: EdgeHandle) -> None:
    ip = app_ip(edge, "sink.example.com")
    reader, writer = await asyncio.open_connection(ip, 7101)
    writer.write(b"x" * 100_000)
    writer.write_eof()  # client -> origin ends; origin -> client must stay open
    assert await read_until_eof(reader) == b"100000"
    writer.close()


@pytest.mark.asyncio
async def test_half_close_origin_first(edge: EdgeHandle) -> None:
    ip = app_ip(edge, "first.example.com")
    reader, writer = await asyncio.open_connection(ip, 7100)
    # The origin greets and half-closes; the client sees EOF but can still send.
    assert await read_until_eof(reader) == b"origin says hi"
    writer.write(b"still talking")
    await writer.drain()
    writer.write_eof()
    port = writer.get_extra_info("sockname")[1]
    rec = await RecordWaiter(edge).wait(lambda r: r["Event"] == "disconnect" and r["ClientPort"] == port)
    assert rec["ClientBytes"] == len(b"still talking") and rec["Status"] == 200
    writer.close()


# --------------------------------------------------------------------------- ranges, BYOIP, firewall


@pytest.mark.asyncio
async def test_port_range_maps_by_offset(edge: EdgeHandle) -> None:
    ip = app_ip(edge, "range.example.com")
    for edge_port, origin_port in ((7200, 8200), (7201, 8201), (7202, 8202)):
        reader, writer = await asyncio.open_connection(ip, edge_port)
        async with asyncio.timeout(10):
            assert await reader.readline() == f"port={origin_port}\n".encode()
        writer.close()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection(ip, 7203)


@pytest.mark.asyncio
async def test_static_byoip_app_listens_on_its_address(edge: EdgeHandle, block: int) -> None:
    reader, writer = await asyncio.open_connection(f"127.{block}.21.5", 2222)
    report = await read_json_line(reader)
    assert report["origin"] == "tcp-echo" and report["proxy"] is None
    writer.close()


@pytest.mark.asyncio
async def test_ip_firewall_blocks_and_whitelist_wins(edge: EdgeHandle, block: int) -> None:
    ip = app_ip(edge, "fw.example.com")
    waiter = RecordWaiter(edge)
    # Blocked range: closed at once, clientFiltered / 403 / BLOCK_IP.
    reader, writer = await asyncio.open_connection(ip, 2223, local_addr=(f"127.{block}.50.9", 0))
    port = writer.get_extra_info("sockname")[1]
    # Closed at once (a reset or a FIN): either way no byte of the origin reaches the client.
    with contextlib.suppress(ConnectionResetError):
        assert await read_until_eof(reader) == b""
    writer.close()
    rec = await waiter.wait(lambda r: r["ClientPort"] == port and r["Event"] == "clientFiltered")
    assert rec["Status"] == 403 and rec["ClientMatchedIpFirewall"] == "BLOCK_IP" and rec["IpFirewall"] is True
    # The whitelisted address inside the blocked range passes (more specific rule wins).
    reader, writer = await asyncio.open_connection(ip, 2223, local_addr=(f"127.{block}.50.7", 0))
    assert (await read_json_line(reader))["origin"] == "tcp-echo"
    port = writer.get_extra_info("sockname")[1]
    writer.close()
    rec = await waiter.wait(lambda r: r["ClientPort"] == port and r["Event"] == "disconnect")
    assert rec["ClientMatchedIpFirewall"] == "WHITELIST_IP"
    # Outside every rule: allowed.
    reader, writer = await asyncio.open_connection(ip, 2223, local_addr=(f"127.{block}.51.1", 0))
    assert (await read_json_line(reader))["origin"] == "tcp-echo"
    writer.close()
    # The same rules do not apply to an app without ip_firewall.
    reader, writer = await asyncio.open_connection(
        app_ip(edge, "ssh.example.com"), 22, local_addr=(f"127.{block}.50.9", 0)
    )
    assert (await read_json_line(reader))["origin"] == "tcp-echo"
    writer.close()


# --------------------------------------------------------------------------- TLS modes


async def curl_json(*args: str) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        "curl", "-sS", "--max-time", "10", *args, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0, out
    result: dict[str, Any] = json.loads(out)
    return result


@pytest.mark.asyncio
async def test_tls_flexible_terminates_at_the_edge(edge: EdgeHandle, block: int) -> None:
    ip = app_ip(edge, "flex.example.com")
    report = await curl_json(
        "--cacert", str(edge.ca_path), "--resolve", f"flex.example.com:8443:{ip}", "https://flex.example.com:8443/"
    )
    assert report["origin"] == "http-echo" and report["tls"] is None
    assert report["peer"]["ip"] == f"127.{block}.20.254"


@pytest.mark.asyncio
async def test_tls_strict_verifies_origin_with_app_sni_and_sends_proxy_v2(edge: EdgeHandle, block: int) -> None:
    ip = app_ip(edge, "strict.example.com")
    report = await curl_json(
        "--cacert", str(edge.ca_path), "--resolve", f"strict.example.com:9443:{ip}", "https://strict.example.com:9443/"
    )
    assert report["origin"] == "https-echo"
    assert report["tls"]["sni"] == "strict.example.com"
    assert report["proxy"]["version"] == 2 and report["proxy"]["dst"] == {"ip": ip, "port": 9443}


@pytest.mark.asyncio
async def test_tls_handshake_failure_is_status_443(edge: EdgeHandle) -> None:
    ip = app_ip(edge, "flex.example.com")
    reader, writer = await asyncio.open_connection(ip, 8443)
    port = writer.get_extra_info("sockname")[1]
    writer.write(b"this is not a ClientHello\r\n\r\n")
    await read_until_eof(reader)
    writer.close()
    rec = await RecordWaiter(edge).wait(lambda r: r["Event"] == "disconnect" and r["ClientPort"] == port)
    assert rec["Status"] == 443


# --------------------------------------------------------------------------- UDP


@pytest.mark.asyncio
async def test_udp_app_with_spp(edge: EdgeHandle, block: int) -> None:
    ip = app_ip(edge, "udp.example.com")
    transport, client = await udp_client((ip, 53), (f"127.{block}.60.3", 0))
    try:
        me = transport.get_extra_info("sockname")
        transport.sendto(b"whoami")
        report = json.loads(await client.recv())  # the SPP header was checked and stripped
        assert report["origin"] == "udp-echo"
        assert report["peer"]["ip"] == f"127.{block}.20.254"
        assert report["spp"] == {"client": {"ip": me[0], "port": me[1]}, "proxy": {"ip": ip, "port": 53}}
        for payload in (b"one", b"two" * 100):  # (asyncio drops an empty sendto)
            transport.sendto(payload)
            assert await client.recv() == payload
    finally:
        transport.close()
    rec = await RecordWaiter(edge).wait(lambda r: r["Event"] == "connect" and r["ClientPort"] == me[1])
    assert rec["ClientProto"] == "udp" and rec["ProxyProtocol"] == "simple"


@pytest.mark.asyncio
async def test_udp_app_with_proxy_v2_on_first_datagram(edge: EdgeHandle, block: int) -> None:
    ip = app_ip(edge, "udp2.example.com")
    transport, client = await udp_client((ip, 5300))
    try:
        me = transport.get_extra_info("sockname")
        transport.sendto(b"hello")
        assert await client.recv() == b"hello"  # the origin stripped the v2 header
        transport.sendto(b"whoami")
        report = json.loads(await client.recv())
        assert report["proxy"]["version"] == 2 and report["proxy"]["transport"] == "udp"
        assert report["proxy"]["src"] == {"ip": me[0], "port": me[1]}
        assert report["proxy"]["dst"] == {"ip": ip, "port": 5300}
    finally:
        transport.close()


# --------------------------------------------------------------------------- bulk, backpressure


@pytest.mark.asyncio
async def test_100mb_byte_exact_with_slow_reader_and_bounded_buffers(edge: EdgeHandle) -> None:
    ip = app_ip(edge, "ssh.example.com")
    server = spectrum(edge)
    reader, writer = await asyncio.open_connection(ip, 22, limit=1 << 16)
    await read_json_line(reader)
    total = 100 * 1024 * 1024
    block = bytes(range(256)) * 4096  # 1 MiB
    sent = hashlib.sha256()
    got = hashlib.sha256()
    received = 0
    max_buffered = 0

    async def send() -> None:
        for _ in range(total // len(block)):
            sent.update(block)
            writer.write(block)
            await writer.drain()
        writer.write_eof()

    sender = asyncio.create_task(send())
    # Slow reader: read nothing until the relay has stopped reading from the origin because
    # the client's side is full (backpressure engaged), checking the relay's buffers meanwhile.
    async with asyncio.timeout(20):
        while True:
            relays = server.relays()
            max_buffered = max([max_buffered, *(r.buffered() for r in relays)])
            if any(r.origin.paused for r in relays):
                break
            await asyncio.sleep(0.01)
    assert not sender.done()  # 100 MB cannot fit anywhere: the sender is held back
    chunks = 0
    while True:
        data = await reader.read(64 * 1024)
        if not data:
            break
        got.update(data)
        received += len(data)
        chunks += 1
        if chunks % 16 == 0:
            max_buffered = max([max_buffered, *(r.buffered() for r in server.relays())])
    await sender
    writer.close()
    assert received == total
    assert got.hexdigest() == sent.hexdigest()
    # Per direction at most the high-water mark plus one read (and the kernel holds the rest).
    assert 0 < max_buffered <= 2 * (HIGH_WATER + READ_SIZE), max_buffered


# --------------------------------------------------------------------------- reconfiguration


@pytest.mark.asyncio
async def test_reconfiguration_during_a_transfer(edge: EdgeHandle, block: int) -> None:
    server = spectrum(edge)
    ssh_ip = app_ip(edge, "ssh.example.com")
    old_spec_ip = app_ip(edge, "spectrum.example.com")
    reader, writer = await asyncio.open_connection(ssh_ip, 22)
    await read_json_line(reader)
    writer.write(b"a" * 1_000_000)
    await writer.drain()
    assert len(await reader.readexactly(1_000_000)) == 1_000_000

    # New config: spectrum.example.com removed, a new app added, everything else the same.
    data = edge.snapshot.config.model_dump(mode="json", exclude_none=True)
    apps = data["zones"][0]["spectrum_apps"]
    apps[:] = [a for a in apps if a["dns"]["name"] != "spectrum.example.com"]
    apps.append(
        {
            "protocol": "tcp/7400",
            "dns": {"type": "CNAME", "name": "late.example.com"},
            "origin_direct": [f"tcp://127.{block}.30.2:22"],
        }
    )
    snapshot = edge.store.apply(build_config(data), source="test")
    await asyncio.wait_for(server.wait_generation(snapshot.generation), 10)

    # The running transfer goes on, on the same connection.
    writer.write(b"b" * 1_000_000)
    writer.write_eof()
    assert await read_until_eof(reader) == b"b" * 1_000_000
    writer.close()
    # The new app is bound; the removed app's listener (and its IP's unowned ports) are gone.
    r2, w2 = await asyncio.open_connection(app_ip(edge, "late.example.com"), 7400)
    assert (await read_json_line(r2))["origin"] == "tcp-echo"
    w2.close()
    for port in (443, 80):
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection(old_spec_ip, port)
    binds = {(b.address, b.port) for b in edge.ctx.binds.all() if b.role == "spectrum"}
    assert (old_spec_ip, 443) not in binds and (app_ip(edge, "late.example.com"), 7400) in binds


@pytest.mark.asyncio
async def test_idle_timeout_closes_the_relay(block: int, tmp_path: Path) -> None:
    data = default_data(block)
    data["limits"] = {"spectrum_idle_timeout": 0.3}
    async with running_edge(data, tmp_path / "state") as handle:
        reader, writer = await asyncio.open_connection(app_ip(handle, "ssh.example.com"), 22)
        await read_json_line(reader)
        assert await read_until_eof(reader, timeout=5) == b""  # closed by the edge when idle
        writer.close()


@pytest.mark.asyncio
async def test_udp_flow_expires_when_idle(block: int, tmp_path: Path) -> None:
    data = default_data(block)
    data["limits"] = {"udp_idle_timeout": 0.2}
    async with running_edge(data, tmp_path / "state") as handle:
        ip = app_ip(handle, "udp.example.com")
        transport, client = await udp_client((ip, 53))
        try:
            me = transport.get_extra_info("sockname")
            transport.sendto(b"ping")
            assert await client.recv() == b"ping"
            # The flow's timer fires at its deadline and the disconnect record follows.
            rec = await RecordWaiter(handle).wait(lambda r: r["Event"] == "disconnect" and r["ClientPort"] == me[1])
            assert rec["Status"] == 200 and rec["ClientBytes"] == 4 and rec["OriginBytes"] == 4
            assert rec["ClientProto"] == "udp" and rec["ProxyProtocol"] == "simple"
            assert len(spectrum(handle).udp) >= 1 and all(len(u.flows) == 0 for u in spectrum(handle).udp.values())
            # A new datagram opens a new flow.
            transport.sendto(b"again")
            assert await client.recv() == b"again"
        finally:
            transport.close()


@pytest.mark.asyncio
async def test_http_app_is_handed_to_the_cdn(block: int, tmp_path: Path) -> None:
    pytest.importorskip("cdn.server")
    data = add_apps(
        default_data(block),
        {
            "protocol": "tcp/8880",
            "dns": {"type": "CNAME", "name": "web.example.com"},
            "origin_direct": [f"tcp://127.{block}.30.1:80"],
            "traffic_type": "http",
        },
    )
    data["zones"][0]["settings"]["ssl"] = "off"
    async with running_edge(data, tmp_path / "state", roles=("origins", "spectrum", "cdn")) as handle:
        ip = app_ip(handle, "web.example.com")
        reader, writer = await asyncio.open_connection(ip, 8880, local_addr=(f"127.{block}.60.8", 0))
        port = writer.get_extra_info("sockname")[1]
        writer.write(b"GET /via-cdn HTTP/1.1\r\nHost: web.example.com\r\nConnection: close\r\n\r\n")
        response = await read_until_eof(reader)
        writer.close()
        head, _, body = response.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        assert b"cf-ray" in head.lower()
        report = json.loads(body)
        assert report["target"] == "/via-cdn"
        headers = {k.lower(): v for k, v in report["headers"]}
        assert headers["cf-connecting-ip"] == f"127.{block}.60.8"
        rec = await RecordWaiter(handle).wait(lambda r: r["Event"] == "disconnect" and r["ClientPort"] == port)
        assert rec["Status"] == 200 and rec["ProxyProtocol"] == "v2"
        http = [r for r in handle.records("http_requests") if r.get("ClientRequestHost") == "web.example.com"]
        assert http and http[-1]["ClientIP"] == f"127.{block}.60.8"  # the real client, from PROXY v2
