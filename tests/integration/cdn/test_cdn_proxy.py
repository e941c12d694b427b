"""The CDN over real sockets: real TLS, real curl, stand-in origins."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import ssl
from pathlib import Path
from typing import Any

import pytest
from cdn_env_harness import CdnEnv, open_cdn_env

pytestmark = pytest.mark.asyncio


def origin_headers(body: bytes) -> dict[str, str]:
    return {k: v for k, v in json.loads(body)["headers"]}


async def test_https_reaches_origin_with_cf_headers(cdn_env: CdnEnv) -> None:
    status, headers, body = await cdn_env.curl("www.example.com", "/hello?x=1", "-H", "X-Forwarded-For: 203.0.113.7")
    assert status == 200
    assert headers["server"] == "cloudflare"
    assert re.fullmatch(r"[0-9a-f]{16}-LHR", headers["cf-ray"])
    assert headers["cf-cache-status"] == "DYNAMIC"
    assert headers["x-origin"] == "yes"
    report = json.loads(body)
    assert report["tls"] is True  # zone ssl full: TLS to the origin on 443
    assert report["peer"] == cdn_env.egress_ip
    sent = origin_headers(body)
    assert sent["CF-Connecting-IP"] == "127.0.0.1"
    assert sent["X-Forwarded-For"] == "203.0.113.7,127.0.0.1"
    assert sent["X-Forwarded-Proto"] == "https"
    assert sent["CF-Visitor"] == '{"scheme":"https"}'
    assert sent["CF-Ray"] == headers["cf-ray"]
    assert sent["CDN-Loop"] == "cloudflare; loops=1"
    assert sent["CF-IPCountry"] == "XX"
    assert sent["Host"] == "www.example.com"
    rec = cdn_env.records("http_requests")[-1]
    assert rec["ClientRequestHost"] == "www.example.com"
    assert rec["ClientRequestURI"] == "/hello?x=1" and rec["ClientRequestPath"] == "/hello"
    assert rec["EdgeResponseStatus"] == 200 and rec["OriginResponseStatus"] == 200
    assert rec["RayID"] == headers["cf-ray"].split("-")[0]
    assert rec["EdgeServerIP"] == cdn_env.egress_ip
    assert rec["EdgeListenIP"] == cdn_env.cdn_ip and rec["EdgeListenPort"] == 443
    assert rec["OriginIP"] == cdn_env.ip(30, 1)
    assert rec["CacheCacheStatus"] == "dynamic"
    assert rec["ClientSSLProtocol"].startswith("TLSv1.")
    assert rec["EdgeEndTimestamp"] >= rec["EdgeStartTimestamp"]
    trace = cdn_env.events.trace(rec["RayID"])
    assert trace is not None
    stages = [s.stage for s in trace.steps]
    assert stages[:3] == ["sni", "host", "dns"] and "upstream" in stages and "origin" in stages


async def test_name_without_record_gets_tls_then_1016(cdn_env: CdnEnv) -> None:
    status, headers, body = await cdn_env.curl("nothing-here.example.com")
    assert status == 530
    assert body == b"error code: 1016"
    assert headers["cf-error-code"] == "1016"
    status, _, _ = await cdn_env.curl("txtonly.example.com")
    assert status == 530


async def test_unknown_sni_fails_handshake(cdn_env: CdnEnv) -> None:
    cases = [
        (["-servername", "nosuch.unknown.test"], "tlsv1 unrecognized name", "alert number 112"),
        (["-noservername"], "handshake failure", "alert number 40"),
    ]
    for args, reason, number in cases:
        proc = await asyncio.create_subprocess_exec(
            "openssl", "s_client", "-connect", f"{cdn_env.cdn_ip}:443", *args,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        text = (out + err).decode()
        assert proc.returncode != 0
        # The edge answers the ClientHello with the alert itself (cdn.clienthello) and closes.
        assert reason in text and number in text, text
        assert "BEGIN CERTIFICATE" not in text
    # A healthy handshake on the same listener still works.
    proc = await asyncio.create_subprocess_exec(
        "openssl", "s_client", "-connect", f"{cdn_env.cdn_ip}:443", "-servername", "www.example.com",
        "-CAfile", str(cdn_env.ca.path), "-verify_return_error",
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    assert b"Verify return code: 0 (ok)" in out


async def test_unknown_sni_alert_reaches_python_client(cdn_env: CdnEnv) -> None:
    context = cdn_env.ca.client_context()
    context.check_hostname = False
    with pytest.raises(ssl.SSLError, match="UNRECOGNIZED_NAME"):
        await asyncio.open_connection(cdn_env.cdn_ip, 443, ssl=context, server_hostname="nosuch.unknown.test")
    # Plain HTTP on the TLS port: not a ClientHello, so a decode_error alert and a close.
    reader, writer = await asyncio.open_connection(cdn_env.cdn_ip, 443)
    writer.write(b"GET / HTTP/1.1\r\nHost: www.example.com\r\n\r\n")
    data = await asyncio.wait_for(reader.read(), 5)
    assert data == bytes.fromhex("15030300020232")
    writer.close()
    await writer.wait_closed()


async def test_host_checks_1001_1003_1013(cdn_env: CdnEnv) -> None:
    status, _, body = await cdn_env.curl("www.example.com", "/", "-H", "Host: www.example.org")
    assert (status, body) == (403, b"error code: 1013")
    status, _, body = await cdn_env.curl("www.example.com", "/", "-H", "Host: origin.example.com")
    assert status == 200  # another name in the same zone: allowed
    status, _, body = await cdn_env.curl("www.nozone.test", scheme="http", port=80)
    assert (status, body) == (409, b"error code: 1001")
    status, _, body = await cdn_env.curl("www.example.com", "/", "-H", f"Host: {cdn_env.cdn_ip}", scheme="http", port=80)
    assert (status, body) == (403, b"error code: 1003")
    status, headers, body = await cdn_env.curl("www.nozone.test", "/", "-H", "Accept: application/json", scheme="http", port=80)
    assert json.loads(body)["error_code"] == 1001
    status, headers, body = await cdn_env.curl("www.nozone.test", "/", "-A", "Mozilla/5.0", scheme="http", port=80)
    assert b"Cloudflare Ray ID" in body and headers["cf-ray"].split("-")[0].encode() in body


async def test_plain_http_uses_host(cdn_env: CdnEnv) -> None:
    status, _, body = await cdn_env.curl("www.example.com", "/p", scheme="http", port=80)
    assert status == 200
    report = json.loads(body)
    assert report["tls"] is False
    assert origin_headers(body)["X-Forwarded-Proto"] == "http"


@pytest.mark.parametrize(
    ("host", "tls_to_origin"),
    [("www.flex.test", False), ("good.strict.test", True), ("www.example.com", True)],
)
async def test_ssl_modes(cdn_env: CdnEnv, host: str, tls_to_origin: bool) -> None:
    status, _, body = await cdn_env.curl(host)
    assert status == 200
    assert json.loads(body)["tls"] is tls_to_origin


async def test_ssl_off_redirects_https(cdn_env: CdnEnv) -> None:
    status, headers, _ = await cdn_env.curl("www.off.test", "/a?b=1")
    assert status == 301 and headers["location"] == "http://www.off.test/a?b=1"
    status, _, body = await cdn_env.curl("www.off.test", scheme="http", port=80)
    assert status == 200 and json.loads(body)["tls"] is False


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("refused.example.com", 521),
        ("notls.example.com", 525),
        ("selfsigned.strict.test", 526),
        ("wrongname.strict.test", 526),
        ("loop.example.com", 403),
    ],
)
async def test_origin_errors(cdn_env: CdnEnv, host: str, status: int) -> None:
    got, headers, _ = await cdn_env.curl(host)
    assert got == status
    rec = cdn_env.records("http_requests")[-1]
    assert rec["EdgeResponseStatus"] == status and rec["OriginResponseStatus"] == 0
    if host == "loop.example.com":
        assert headers["cf-error-code"] == "1000"


async def test_524_when_origin_stalls(cdn_env: CdnEnv) -> None:
    status, _, _ = await cdn_env.curl("www.example.com", "/stall")
    assert status == 524


async def test_522_connect_timeout(cdn_env: CdnEnv) -> None:
    # A listener that never accepts, with its accept queue filled: Linux drops further SYNs.
    import socket

    addr = (cdn_env.ip(30, 8), 443)
    lsock = socket.socket()
    lsock.bind(addr)
    lsock.listen(0)
    fillers = []
    try:
        for _ in range(4):
            s = socket.socket()
            s.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                s.connect(addr)
            fillers.append(s)
        status, _, _ = await cdn_env.curl("blackhole.example.com")
        assert status == 522
    finally:
        for s in fillers:
            s.close()
        lsock.close()


async def test_keepalive_several_requests_one_connection(cdn_env: CdnEnv) -> None:
    url = "https://www.example.com/k"
    proc = await asyncio.create_subprocess_exec(
        "curl", "-sS", "--resolve", f"www.example.com:443:{cdn_env.cdn_ip}", "--cacert", str(cdn_env.ca.path),
        "-o", "/dev/null", "-o", "/dev/null", "-o", "/dev/null", "-w", "%{http_code} %{num_connects}\n",
        url, url, url, stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    # One TLS connection for three requests: the reuses open none.
    assert out.decode().split("\n")[:3] == ["200 1", "200 0", "200 0"]
    recs = cdn_env.records("http_requests")[-3:]
    assert len({r["ClientSrcPort"] for r in recs}) == 1
    # ... and the origin side was pooled too: one origin connection served all three.
    assert len(cdn_env.origin_log.peers) == 1


async def test_chunked_upload_streamed(cdn_env: CdnEnv, tmp_path: object) -> None:
    payload = b"x" * 3_000_000
    proc = await asyncio.create_subprocess_exec(
        "curl", "-sS", "--resolve", f"www.example.com:443:{cdn_env.cdn_ip}", "--cacert", str(cdn_env.ca.path),
        "-H", "Transfer-Encoding: chunked", "--data-binary", "@-", "https://www.example.com/up",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate(payload)
    report = json.loads(out)
    assert report["body_len"] == len(payload)
    assert origin_headers(out)["Transfer-Encoding"] == "chunked"


async def test_expect_100_continue(cdn_env: CdnEnv) -> None:
    ctx = ssl.create_default_context(cafile=str(cdn_env.ca.path))
    reader, writer = await asyncio.open_connection(cdn_env.cdn_ip, 443, ssl=ctx, server_hostname="www.example.com")
    writer.write(b"POST /c HTTP/1.1\r\nHost: www.example.com\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    line = await reader.readline()
    assert line.startswith(b"HTTP/1.1 100")
    await reader.readline()
    writer.write(b"hello")
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    length = int(re.search(rb"(?i)content-length: (\d+)", head).group(1))  # type: ignore[union-attr]
    body = await reader.readexactly(length)
    assert json.loads(body)["body_len"] == 5
    assert "Expect" not in origin_headers(body)
    writer.close()


async def test_upgrade_relayed_raw(cdn_env: CdnEnv) -> None:
    reader, writer = await asyncio.open_connection(cdn_env.cdn_ip, 80)
    writer.write(b"GET /ws HTTP/1.1\r\nHost: www.example.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101")
    assert b"cf-ray" in head.lower()
    writer.write(b"\x81\x05hello raw bytes")
    echoed = await reader.readexactly(len(b"\x81\x05hello raw bytes"))
    assert echoed == b"\x81\x05hello raw bytes"
    writer.close()
    rec = cdn_env.records("http_requests")[-1]
    assert rec["EdgeResponseStatus"] == 101


async def test_431_for_too_many_or_too_large_headers(cdn_env: CdnEnv) -> None:
    many = [a for i in range(60) for a in ("-H", f"X-H{i}: v")]
    status, _, _ = await cdn_env.curl("www.example.com", "/", *many)
    assert status == 431
    status, _, _ = await cdn_env.curl("www.example.com", "/", "-H", "X-Big: " + "a" * 9000)
    assert status == 431


async def test_header_timeout_closes_slowloris(cdn_env: CdnEnv) -> None:
    reader, writer = await asyncio.open_connection(cdn_env.cdn_ip, 80)
    writer.write(b"GET / HTTP/1.1\r\nHost: www.exa")
    async with asyncio.timeout(5):
        data = await reader.read()  # until the edge closes (limits.header_timeout = 1 s)
    assert data.startswith(b"HTTP/1.1 408")
    writer.close()


async def test_inbound_proxy_headers_refused_with_1000(cdn_env: CdnEnv) -> None:
    status, _, body = await cdn_env.curl("www.example.com", "/", "-H", "CF-Connecting-IP: 1.2.3.4")
    assert (status, body) == (403, b"error code: 1000")
    status, _, body = await cdn_env.curl("www.example.com", "/", "-H", "CDN-Loop: cloudflare; loops=16")
    assert (status, body) == (403, b"error code: 1000")


async def test_seed_misdirected_request_reaches_spectrum_ip(cdn_env: CdnEnv) -> None:
    spectrum_ip = str(cdn_env.store.current.spectrum_hosts["spectrum.example.com"][0])
    status, _, body = await cdn_env.curl("spectrum.example.com", "/seed")
    assert status == 200
    assert cdn_env.spectrum_log.peers and cdn_env.spectrum_log.peers[-1][0] == cdn_env.egress_ip
    assert json.loads(body)["peer"] == cdn_env.egress_ip
    rec = cdn_env.records("http_requests")[-1]
    assert rec["ClientRequestHost"] == "spectrum.example.com"
    assert rec["OriginIP"] == spectrum_ip
    assert rec["EdgeServerIP"] == cdn_env.egress_ip


async def test_waf_block_seed_rule(tmp_path: Path) -> None:
    def enable(data: dict[str, Any]) -> None:
        rules = data["zones"][0]["rulesets"]["http_request_firewall_custom"]["rules"]
        rules[0]["enabled"] = True
        rules.append({"action": "log", "description": "log all", "expression": 'http.host ne ""', "enabled": True})
        rules.insert(0, {"action": "log", "description": "log first", "expression": "http.request.method ne \"\"", "enabled": True})

    async with open_cdn_env(tmp_path, enable) as env:
        status, _, body = await env.curl("spectrum.example.com", "/blocked")
        assert (status, body) == (403, b"error code: 1020")
        assert not env.spectrum_log.peers  # never reached the origin
        rec = env.records("http_requests")[-1]
        assert rec["SecurityAction"] == "block"
        assert rec["SecurityRuleDescription"] == "L4-only Spectrum host via CDN"
        assert rec["SecuritySources"] == ["firewallCustom", "firewallCustom"]
        assert rec["OriginResponseStatus"] == 0 and rec["CacheCacheStatus"] == "unknown"
        fw = env.records("firewall_events")
        assert [e["Action"] for e in fw] == ["log", "block"]
        assert [e["MatchIndex"] for e in fw] == [1, 0]
        assert fw[-1]["Source"] == "firewallcustom" and fw[-1]["Kind"] == "firewall"
        assert fw[-1]["EdgeServerIP"] == env.cdn_ip and fw[-1]["RayID"] == rec["RayID"]
        # www is not blocked, only logged
        status, _, _ = await env.curl("www.example.com")
        assert status == 200
        assert env.records("http_requests")[-1]["SecurityActions"] == ["log", "log"]


async def test_stale_pooled_connection_retried_once(tmp_path: Path) -> None:
    """An origin that closes a kept-alive connection instead of answering its second request:
    the edge retries the (bodiless) request once on a new connection; the client sees a 200."""

    writers: list[asyncio.StreamWriter] = []

    async def origin(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            await reader.readuntil(b"\r\n\r\n")  # the reused connection's request: no answer
        writer.close()

    def record(data: dict[str, Any]) -> None:
        block = data["network"]["resolver"].split(".")[1]
        data["zones"][0]["dns_records"].append(
            {"name": "flaky.example.com", "type": "A", "content": f"127.{block}.30.9", "proxied": True}
        )

    async with open_cdn_env(tmp_path, record) as env:
        server = await asyncio.start_server(origin, env.ip(30, 9), 80)
        try:
            for _ in range(2):
                status, _, body = await env.curl("flaky.example.com", "/x", scheme="http", port=80)
                assert (status, body) == (200, b"ok")
            rec = env.records("http_requests")[-1]
            trace = env.events.trace(rec["RayID"])
            assert trace is not None
            decisions = [(s.stage, s.decision) for s in trace.steps]
            assert ("origin", "reused") in decisions
            assert ("origin", "stale_reused_connection") in decisions
            assert decisions[-2:] == [("origin", "responded"), ("response", "sent")]
        finally:
            server.close()
            for writer in writers:
                writer.close()
                with contextlib.suppress(ConnectionError):
                    await writer.wait_closed()


async def test_incomplete_client_hello_closed_after_header_timeout(tmp_path: Path) -> None:
    def short(data: dict[str, Any]) -> None:
        data.setdefault("limits", {})["header_timeout"] = 1.0

    hello = (Path(__file__).parents[2] / "unit" / "cdn" / "fixtures" / "clienthello_openssl_sni.bin").read_bytes()
    async with open_cdn_env(tmp_path, short) as env:
        reader, writer = await asyncio.open_connection(env.cdn_ip, 443)
        writer.write(hello[:40])
        loop = asyncio.get_running_loop()
        start = loop.time()
        assert await asyncio.wait_for(reader.read(), 5) == b""
        assert 0.8 <= loop.time() - start <= 3.0
        writer.close()
        await writer.wait_closed()
        # A zero-length handshake record is no ClientHello: decode_error, at once.
        reader, writer = await asyncio.open_connection(env.cdn_ip, 443)
        writer.write(b"\x16\x03\x01\x00\x00")
        assert await asyncio.wait_for(reader.read(), 1) == bytes.fromhex("15030300020232")
        writer.close()
        await writer.wait_closed()


async def test_status_line_has_the_standard_reason_phrase(cdn_env: CdnEnv) -> None:
    """Cloudflare normalises the reason phrase (the stand-in origin may send none)."""
    for host, line in (("www.example.com", b"HTTP/1.1 200 OK\r\n"), ("1.2.3.4", b"HTTP/1.1 403 Forbidden\r\n")):
        cmd = ["curl", "-sS", "--max-time", "20", "-D", "-", "-o", "/dev/null", "-H", f"Host: {host}",
               f"http://{cdn_env.cdn_ip}:80/"]
        proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        assert out.startswith(line), out[:100]
