"""`edge trace` against a running admin listener and a stand-in CDN listener (real TLS).

The stand-in answers like the CDN (a `cf-ray` header); the trace for that ray is the one the
CDN would have stored. When the real CDN, resolver and Spectrum roles exist, the last test
runs the seed's misdirected request end to end instead.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from observe_harness import (
    FULL_EDGE,
    RAY_MISDIRECTED,
    SPECTRUM_HOST,
    admin_base,
    cdn_ip,
    emit_seed_traffic,
    make_ca,
    spectrum_ip,
    start_edge,
)

from edge.cli import main as edge_main
from edge.trace_cli import run_trace


@asynccontextmanager
async def fake_cdn(address: str, context: ssl.SSLContext | None, ray: str | None) -> AsyncIterator[int]:
    """A listener that answers every request once, like the CDN would, with `cf-ray: <ray>-LHR`."""
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            seen.append(head)
            extra = f"CF-Ray: {ray}-LHR\r\n" if ray else ""
            writer.write(f"HTTP/1.1 200 OK\r\n{extra}Content-Length: 2\r\nConnection: close\r\n\r\nok".encode())
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, address, 0, ssl=context)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


def args(url: str, **kw: object) -> argparse.Namespace:
    base: dict[str, object] = {"url": url, "resolve": [], "cacert": None, "state_dir": None, "api": None,
                               "json": False}
    base.update(kw)
    return argparse.Namespace(**base)


async def trace(ns: argparse.Namespace) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = await asyncio.to_thread(run_trace, ns, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.asyncio
async def test_trace_prints_the_path_as_a_tree(tmp_path: Path) -> None:
    ca = make_ca()
    async with start_edge(tmp_path / "state") as edge:
        emit_seed_traffic(edge)
        address = cdn_ip(edge)
        server_ctx = ca.server_context([SPECTRUM_HOST], tmp_path)
        async with fake_cdn(address, server_ctx, RAY_MISDIRECTED) as port:
            code, out, err = await trace(args(
                f"https://{SPECTRUM_HOST}:{port}/", resolve=[f"{SPECTRUM_HOST}:{port}:{address}"],
                cacert=str(ca.write(tmp_path / "ca.pem")), state_dir=str(edge.state_dir)))
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == f"GET https://{SPECTRUM_HOST}:{port}/"
    assert lines[1].startswith(f"  connected to {address}:{port} (TLSv1.")
    assert f"cf-ray: {RAY_MISDIRECTED}-LHR" in out
    assert f"path of ray {RAY_MISDIRECTED} (colo LHR)" in out
    assert f"arrived on CDN IP {address}:443  <- Spectrum hostname on a CDN IP: misdirected" in out
    stages = [line.split()[1] for line in lines if line.startswith(("├──", "└──"))]
    assert stages == ["sni", "host", "waf", "dns", "upstream", "spectrum", "origin"]
    assert f"├── dns       {spectrum_ip(edge)}" in out
    assert "view: internal" in out


@pytest.mark.asyncio
async def test_trace_json_and_the_cli_entry_point(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async with start_edge(tmp_path / "state") as edge:
        emit_seed_traffic(edge)
        capsys.readouterr()  # the edge's own start-up log lines
        async with fake_cdn(cdn_ip(edge), None, RAY_MISDIRECTED) as port:
            argv = ["trace", f"http://{SPECTRUM_HOST}:{port}/x?y=1", "--resolve",
                    f"{SPECTRUM_HOST}:{port}:{cdn_ip(edge)}", "--api", admin_base(edge), "--json"]
            code = await asyncio.to_thread(edge_main, argv)
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["response"]["status"] == 200 and doc["ray_id"] == f"{RAY_MISDIRECTED}-LHR"
    assert doc["request"]["path"] == "/x?y=1" and doc["request"]["address"] == cdn_ip(edge)
    assert [s["stage"] for s in doc["trace"]["steps"]][-1] == "origin"
    assert doc["problem"] is None


@pytest.mark.asyncio
async def test_untrusted_certificate_is_a_clear_failure(tmp_path: Path) -> None:
    async with start_edge(tmp_path / "state") as edge:
        other = make_ca("someone else")
        server_ctx = make_ca().server_context([SPECTRUM_HOST], tmp_path)
        async with fake_cdn(cdn_ip(edge), server_ctx, RAY_MISDIRECTED) as port:
            code, out, err = await trace(args(
                f"https://{SPECTRUM_HOST}:{port}/", resolve=[f"{SPECTRUM_HOST}:{port}:{cdn_ip(edge)}"],
                cacert=str(other.write(tmp_path / "other.pem"))))
    assert code == 1 and out == ""
    assert err.startswith(f"edge trace: TLS certificate of {cdn_ip(edge)}:{port} (SNI {SPECTRUM_HOST}) not trusted")
    assert "Traceback" not in err


@pytest.mark.asyncio
async def test_refused_connection_and_missing_files(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on: bound, never listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        code, out, err = await trace(args(f"http://www.example.com:{port}/",
                                          resolve=[f"www.example.com:{port}:127.0.0.1"]))
    assert code == 1 and out == "" and err == f"edge trace: cannot connect to 127.0.0.1:{port}: Connection refused\n"
    code, _, err = await trace(args("https://www.example.com/", cacert=str(tmp_path / "missing.pem")))
    assert code == 1 and "no such file" in err
    code, _, err = await trace(args("gopher://www.example.com/"))
    assert code == 2 and "only http:// and https://" in err


@pytest.mark.asyncio
async def test_response_without_cf_ray_and_unknown_trace(tmp_path: Path) -> None:
    async with start_edge(tmp_path / "state") as edge:
        async with fake_cdn(cdn_ip(edge), None, None) as port:
            code, out, err = await trace(args(f"http://a.example.com:{port}/",
                                              resolve=[f"a.example.com:{port}:{cdn_ip(edge)}"],
                                              api=admin_base(edge)))
        assert code == 0 and "HTTP/1.1 200 OK" in out and "no cf-ray header" in err
        async with fake_cdn(cdn_ip(edge), None, "00000000000000ff") as port:
            code, out, err = await trace(args(f"http://a.example.com:{port}/",
                                              resolve=[f"a.example.com:{port}:{cdn_ip(edge)}"],
                                              api=admin_base(edge)))
        assert code == 0 and "cf-ray: 00000000000000ff-LHR" in out
        assert "trace 00000000000000ff-LHR not available" in err and "HTTP 404" in err


@pytest.mark.asyncio
@pytest.mark.skipif(not FULL_EDGE, reason="needs the certs, cdn, resolver and spectrum packages (not built yet)")
async def test_misdirected_request_end_to_end(tmp_path: Path) -> None:
    roles = ("origins", "resolver", "spectrum", "cdn", "api")
    async with start_edge(tmp_path / "state", roles) as edge, aiohttp.ClientSession() as s:
        port = edge.snapshot.listen_port(443)
        code, out, err = await trace(args(
            f"https://{SPECTRUM_HOST}:{port}/", resolve=[f"{SPECTRUM_HOST}:{port}:{cdn_ip(edge)}"],
            state_dir=str(edge.state_dir)))
        assert code == 0, err
        assert "path of ray" in out and "misdirected" in out, out
        async with s.get(admin_base(edge) + "/analytics") as resp:
            doc = await resp.json()
        host = {h["host"]: h for h in doc["zones"][0]["hosts"]}[SPECTRUM_HOST]
        assert host["spectrum_host"] is True and host["misdirected"] >= 1


@pytest.mark.asyncio
@pytest.mark.skipif(not FULL_EDGE, reason="needs the certs, cdn, resolver and spectrum packages (not built yet)")
async def test_without_resolve_the_emulators_names_go_through_its_resolver(tmp_path: Path) -> None:
    roles = ("origins", "resolver", "spectrum", "cdn", "api")
    async with start_edge(tmp_path / "state", roles) as edge:
        port = edge.snapshot.listen_port(443)
        code, out, err = await trace(args(f"https://www.example.com:{port}/", state_dir=str(edge.state_dir)))
        assert code == 0, err
        assert f"www.example.com resolved by the emulator's resolver: {cdn_ip(edge)}" in err
        assert "HTTP/1.1 200 OK" in out and "path of ray" in out, out


def test_an_unreachable_admin_api_is_exit_1() -> None:
    from edge.trace_cli import fetch_trace

    with socket.socket() as s:  # bound, never listening: refused
        s.bind(("127.0.0.1", 0))
        result = fetch_trace(f"http://127.0.0.1:{s.getsockname()[1]}", "00000000000000ff", wait=0)
    assert result.failed and result.problem and "cannot reach the admin API" in result.problem


def test_console_command_reports_failures_without_a_traceback(tmp_path: Path) -> None:
    import subprocess
    import sys

    with socket.socket() as s:  # bound, never listening: the connection is refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "edge", "trace", f"https://www.example.com:{port}/",
                               "--resolve", f"www.example.com:{port}:127.0.0.1", "--state-dir", str(tmp_path)],
                              capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr == f"edge trace: cannot connect to 127.0.0.1:{port}: Connection refused\n"
    assert not (tmp_path / "edge.db").exists()  # tracing never creates state
