"""The local CA's certificates verified by real clients over real sockets on 127.0.0.1:
`openssl s_client -verify_return_error -verify_hostname`, curl, and Python's ssl with
`client_ssl_context`. Readiness: `asyncio.start_server` returns with the socket bound and
listening, and only then does a client start; no sleeps anywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import ssl
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from certs.files import EdgeCertificates, client_ssl_context, issue_origin_certificate, open_ca, server_ssl_context

RESPONSE = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 3\r\nconnection: close\r\n\r\nok\n"
TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class Served:
    port: int
    ca_path: Path


async def _respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A tiny HTTPS responder: one fixed response per request head, then close."""
    try:
        with contextlib.suppress(asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ssl.SSLError):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(RESPONSE)
            await writer.drain()
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await writer.wait_closed()


@contextlib.asynccontextmanager
async def serving(context: ssl.SSLContext) -> AsyncIterator[int]:
    """Serve `context` on 127.0.0.1 at a free port; the port is listening when this yields."""
    server = await asyncio.start_server(_respond, "127.0.0.1", 0, ssl=context)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


@contextlib.asynccontextmanager
async def edge_server(state_dir: Path, zone: str, extra_hosts: Sequence[str] = ()) -> AsyncIterator[Served]:
    ca, ca_path = open_ca(state_dir)
    context = EdgeCertificates(state_dir, ca).ssl_context_for_zone(zone, extra_hosts)
    async with serving(context) as port:
        yield Served(port, ca_path)


async def run(*argv: str) -> tuple[int, str]:
    """Run a client with stdin at EOF (like `</dev/null`); its exit status and stdout + stderr."""
    tool = shutil.which(argv[0])
    if tool is None:
        pytest.fail(f"{argv[0]} is not installed; the integration tests need the real client")
    proc = await asyncio.create_subprocess_exec(
        tool,
        *argv[1:],
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


async def s_client(served: Served, name: str, *extra: str) -> tuple[int, str]:
    return await run(
        "openssl",
        "s_client",
        "-connect",
        f"127.0.0.1:{served.port}",
        "-servername",
        name,
        "-verify_return_error",
        "-CAfile",
        str(served.ca_path),
        "-verify_hostname",
        name,
        *extra,
    )


# ----------------------------------------------------------------------------- openssl s_client


@pytest.mark.asyncio
@pytest.mark.parametrize("name", ["example.com", "www.example.com", "WWW.Example.COM"])
async def test_openssl_verifies_apex_and_one_label_wildcard(tmp_path: Path, name: str) -> None:
    async with edge_server(tmp_path, "example.com") as served:
        status, out = await s_client(served, name)
    assert status == 0, out
    assert "Verify return code: 0 (ok)" in out
    assert f"Verified peername: {name.lower()}" in out or "Verified peername: *.example.com" in out


@pytest.mark.asyncio
@pytest.mark.parametrize("name", ["a.b.example.com", "example.org", "x.dev.example.com"])
async def test_openssl_refuses_names_the_universal_certificate_does_not_cover(tmp_path: Path, name: str) -> None:
    async with edge_server(tmp_path, "example.com") as served:
        status, out = await s_client(served, name)
    assert status != 0, out
    assert "hostname mismatch" in out
    assert "Verify return code: 0 (ok)" not in out


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("name", "verifies"),
    [("x.dev.example.com", True), ("www.example.com", True), ("example.com", True), ("y.x.dev.example.com", False)],
)
async def test_openssl_with_an_extra_deeper_wildcard(tmp_path: Path, name: str, verifies: bool) -> None:
    async with edge_server(tmp_path, "example.com", ["*.dev.example.com"]) as served:
        status, out = await s_client(served, name)
    if verifies:
        assert status == 0, out
        assert "Verify return code: 0 (ok)" in out
    else:
        assert status != 0, out
        assert "hostname mismatch" in out


@pytest.mark.asyncio
async def test_openssl_negotiates_tls12_and_alpn_http11(tmp_path: Path) -> None:
    async with edge_server(tmp_path, "example.com") as served:
        status, out = await s_client(served, "www.example.com", "-tls1_2", "-alpn", "h2,http/1.1")
    assert status == 0, out
    assert "Verify return code: 0 (ok)" in out
    assert "ALPN protocol: http/1.1" in out
    assert "Protocol  : TLSv1.2" in out


@pytest.mark.asyncio
async def test_openssl_refuses_a_certificate_from_another_ca(tmp_path: Path) -> None:
    async with edge_server(tmp_path / "one", "example.com") as served:
        _, other_ca = open_ca(tmp_path / "two")
        status, out = await s_client(Served(served.port, other_ca), "www.example.com")
    assert status != 0, out
    assert "Verify return code: 0 (ok)" not in out


# ----------------------------------------------------------------------------- curl


@pytest.mark.asyncio
async def test_curl_trusts_the_local_ca(tmp_path: Path) -> None:
    async with edge_server(tmp_path, "example.com") as served:
        status, out = await run(
            "curl",
            "-sS",
            "--fail",
            "--cacert",
            str(served.ca_path),
            "--resolve",
            f"www.example.com:{served.port}:127.0.0.1",
            "-w",
            "%{http_version}",
            f"https://www.example.com:{served.port}/",
        )
    assert status == 0, out
    assert out == "ok\n1.1"


@pytest.mark.asyncio
async def test_curl_refuses_an_uncovered_name(tmp_path: Path) -> None:
    async with edge_server(tmp_path, "example.com") as served:
        status, out = await run(
            "curl",
            "-sS",
            "--cacert",
            str(served.ca_path),
            "--resolve",
            f"a.b.example.com:{served.port}:127.0.0.1",
            f"https://a.b.example.com:{served.port}/",
        )
    assert status == 60, out  # CURLE_PEER_FAILED_VERIFICATION
    assert "a.b.example.com" in out


@pytest.mark.asyncio
async def test_curl_verifies_an_origin_certificate_by_ip(tmp_path: Path) -> None:
    _, ca_path = open_ca(tmp_path)
    cert_path, key_path = issue_origin_certificate(tmp_path, ["origin.example.net"], ips=["127.0.0.1"])
    async with serving(server_ssl_context(cert_path, key_path)) as port:
        status, out = await run("curl", "-sS", "--fail", "--cacert", str(ca_path), f"https://127.0.0.1:{port}/")
    assert status == 0, out
    assert out == "ok\n"


# ----------------------------------------------------------------------------- Python's ssl (strict mode)


async def fetch(port: int, context: ssl.SSLContext, server_hostname: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname=server_hostname)
    try:
        writer.write(f"GET / HTTP/1.1\r\nhost: {server_hostname}\r\n\r\n".encode())
        await writer.drain()
        return await reader.read()
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await writer.wait_closed()


@pytest.mark.asyncio
async def test_client_ssl_context_verifies_like_strict_mode(tmp_path: Path) -> None:
    async with edge_server(tmp_path, "example.com") as served:
        context = client_ssl_context(tmp_path)
        body = await asyncio.wait_for(fetch(served.port, context, "www.example.com"), TIMEOUT)
        assert body == RESPONSE
        with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
            await asyncio.wait_for(fetch(served.port, context, "a.b.example.com"), TIMEOUT)
