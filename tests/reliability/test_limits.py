"""Limits (issue 9, part 5): each limit in LimitsConfig enforced where it claims, and overload
(EMFILE) logged and survived."""

from __future__ import annotations

import contextlib
import json
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from reliability_harness import (
    base_config,
    edge_running,
    handle_of,
    open_cdn,
    read_response,
    read_until_closed,
    wait_for,
)

from edge.pytest_plugin import EdgeFixture

H = b"Host: www.example.com\r\n"

LIMITS = {
    "keepalive_timeout": 1.0,
    "spectrum_idle_timeout": 1.0,
    "udp_idle_timeout": 1.0,
    "max_connections_per_listener": 4,
    "max_header_count": 10,
    "max_header_bytes": 2048,
    "cdn_loop_limit": 3,
    "max_request_body_bytes": 4096,
}


@pytest.fixture(scope="module")
def lim_edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeFixture]:
    from reliability_harness import pick_block

    block = pick_block()
    with edge_running(base_config(block, **LIMITS), tmp_path_factory.mktemp("limits"), block) as edge:
        yield edge


def _headers(n: int) -> bytes:
    return b"".join(b"X-H%d: v\r\n" % i for i in range(n))


def test_max_header_count_boundary(lim_edge: EdgeFixture) -> None:
    # Host counts as one header: exactly the limit passes, one more is 431.
    limit = int(LIMITS["max_header_count"])
    for extra, expected in ((limit - 1, 200), (limit, 431)):
        with open_cdn(lim_edge, tls=False) as sock:
            sock.sendall(b"GET /bytes/1 HTTP/1.1\r\n" + H + _headers(extra) + b"\r\n")
            result = read_response(sock, 3)
        assert result.status == expected, (extra, result.data[:200])
        if expected == 431:
            assert b"\r\nConnection: close\r\n" in result.data.split(b"\r\n\r\n")[0] + b"\r\n", result.data[:300]


def test_max_header_bytes_boundary(lim_edge: EdgeFixture) -> None:
    limit = int(LIMITS["max_header_bytes"])
    small = b"GET /bytes/1 HTTP/1.1\r\n" + H + b"X-Pad: " + b"a" * (limit // 2) + b"\r\n\r\n"
    big = b"GET /bytes/1 HTTP/1.1\r\n" + H + b"X-Pad: " + b"a" * (limit + 10) + b"\r\n\r\n"
    for payload, expected in ((small, 200), (big, 431)):
        with open_cdn(lim_edge, tls=False) as sock:
            sock.sendall(payload)
            result = read_response(sock, 3)
        assert result.status == expected, (len(payload), result.data[:200])


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_max_request_body_bytes_declared(lim_edge: EdgeFixture, tls: bool) -> None:
    limit = int(LIMITS["max_request_body_bytes"])
    with open_cdn(lim_edge, tls=tls) as sock:
        sock.sendall(b"POST /bytes/1 HTTP/1.1\r\n" + H + b"Content-Length: %d\r\n\r\n" % limit + b"a" * limit)
        assert read_response(sock, 3).status == 200
        sock.sendall(b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: %d\r\n\r\n" % (limit + 1))
        result = read_response(sock, 3)
    assert result.status == 413, result.data[:200]
    assert b"Payload Too Large" in result.data


def test_max_request_body_bytes_streamed(lim_edge: EdgeFixture) -> None:
    limit = int(LIMITS["max_request_body_bytes"])
    with open_cdn(lim_edge, tls=False) as sock:
        head = b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
        chunk = b"400\r\n" + b"b" * 1024 + b"\r\n"
        sock.sendall(head + chunk * (limit // 1024 + 1))
        result = read_until_closed(sock, 5)
    assert result.closed
    assert result.data.startswith(b"HTTP/1.1 413 "), result.data[:200]
    records = [r for r in lim_edge.events("http_requests") if r.get("EdgeResponseStatus") == 413]
    assert records, "no http_requests record for the 413"


def test_keepalive_timeout_closes_idle_connection(lim_edge: EdgeFixture) -> None:
    limit = float(LIMITS["keepalive_timeout"])
    with open_cdn(lim_edge, tls=True) as sock:
        sock.sendall(b"GET /bytes/5 HTTP/1.1\r\n" + H + b"\r\n")
        first = read_response(sock, 3)
        assert first.status == 200 and not first.closed
        result = read_until_closed(sock, limit + 3)
    assert result.closed, "idle keep-alive connection not closed"
    assert result.elapsed <= limit + 1.5, result.elapsed


def test_cdn_loop_limit(lim_edge: EdgeFixture) -> None:
    limit = int(LIMITS["cdn_loop_limit"])
    status, headers, body = lim_edge.request(
        "GET", "www.example.com", "/", headers={"CDN-Loop": f"cloudflare; loops={limit}"}
    )
    assert status == 403 and b"1000" in body + headers.get("cf-error-code", "").encode(), (status, body[:200])
    status, _, _ = lim_edge.request("GET", "www.example.com", "/", headers={"CDN-Loop": "cloudflare; loops=1"})
    assert status == 200


def test_spectrum_idle_timeout_closes_relay(lim_edge: EdgeFixture) -> None:
    limit = float(LIMITS["spectrum_idle_timeout"])
    ssh_ip = str(lim_edge.snapshot.spectrum_hosts["ssh.example.com"][0])
    with socket.create_connection((ssh_ip, lim_edge.port(22)), timeout=5) as sock:
        f = sock.makefile("rb")
        assert f.readline().startswith(b"{")
        result = read_until_closed(sock, limit + 3)
        f.close()
    assert result.closed, "idle Spectrum relay not closed"
    assert result.elapsed <= limit + 1.5, result.elapsed


def test_udp_idle_timeout_expires_flows(lim_edge: EdgeFixture) -> None:
    server = handle_of(lim_edge).ctx.extras["spectrum"]
    udp_ip = str(lim_edge.snapshot.spectrum_hosts["udp.example.com"][0])
    listener = next(lst for key, lst in server.udp.items() if str(key.ip) == udp_ip)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(3)
        s.sendto(b"hello", (udp_ip, lim_edge.port(53)))
        assert s.recvfrom(100)[0] == b"hello"
        assert len(listener.flows) >= 1
        t0 = time.monotonic()
        wait_for(lambda: len(listener.flows) == 0, float(LIMITS["udp_idle_timeout"]) + 3, "idle UDP flows to expire")
        assert time.monotonic() - t0 <= float(LIMITS["udp_idle_timeout"]) + 1.5


def test_max_connections_per_listener_spectrum(lim_edge: EdgeFixture) -> None:
    limit = int(LIMITS["max_connections_per_listener"])
    ssh_ip = str(lim_edge.snapshot.spectrum_hosts["ssh.example.com"][0])
    socks = []
    try:
        for _ in range(limit):
            s = socket.create_connection((ssh_ip, lim_edge.port(22)), timeout=5)
            s.makefile("rb").readline()
            socks.append(s)
        extra = socket.create_connection((ssh_ip, lim_edge.port(22)), timeout=5)
        socks.append(extra)
        result = read_until_closed(extra, 3)
        assert result.closed and not result.data, result
    finally:
        for s in socks:
            s.close()




def test_max_connections_per_listener_cdn(lim_edge: EdgeFixture) -> None:
    limit = int(LIMITS["max_connections_per_listener"])
    socks = []
    try:
        for _ in range(limit):
            s = open_cdn(lim_edge, tls=False)
            s.sendall(b"GET /bytes/1 HTTP/1.1\r\n" + H + b"\r\n")
            assert read_response(s, 3).status == 200
            socks.append(s)
        extra = open_cdn(lim_edge, tls=False)
        socks.append(extra)
        extra.sendall(b"GET /bytes/1 HTTP/1.1\r\n" + H + b"\r\n")
        result = read_response(extra, 3)
        assert result.status is None and result.closed, result.data[:100]
    finally:
        for s in socks:
            s.close()


def test_max_connections_per_listener_counts_tls_handshakes(lim_edge: EdgeFixture) -> None:
    """Silent clients on the HTTPS port (no ClientHello yet) count against the limit."""
    import ssl

    limit = int(LIMITS["max_connections_per_listener"])
    address = (lim_edge.cdn_ip, lim_edge.port(443))
    silent = [socket.create_connection(address, timeout=5) for _ in range(limit)]
    try:
        refused = False
        try:
            with open_cdn(lim_edge, tls=True, timeout=3) as extra:
                extra.sendall(b"GET /bytes/1 HTTP/1.1\r\n" + H + b"\r\n")
                refused = read_response(extra, 3).status is None
        except (OSError, ssl.SSLError):
            refused = True
        assert refused, "a TLS client past the limit was served"
    finally:
        for s in silent:
            s.close()

    def served() -> bool:
        with contextlib.suppress(OSError), open_cdn(lim_edge, tls=True, timeout=3) as sock:
            sock.sendall(b"GET /bytes/1 HTTP/1.1\r\n" + H + b"\r\n")
            return read_response(sock, 3).status == 200
        return False

    wait_for(served, 5, "HTTPS to be served again below the limit", step=0.05)


def test_max_connections_per_listener_resolver_tcp(lim_edge: EdgeFixture) -> None:
    import dnslib

    limit = int(LIMITS["max_connections_per_listener"])
    query = dnslib.DNSRecord.question("www.example.com", "A").pack()
    framed = len(query).to_bytes(2, "big") + query
    socks = []
    try:
        for _ in range(limit):
            s = socket.create_connection(lim_edge.resolver, timeout=5)
            s.sendall(framed)
            answer = s.recv(4096)
            assert len(answer) > 2 and dnslib.DNSRecord.parse(answer[2:]).header.rcode == 0
            socks.append(s)
        extra = socket.create_connection(lim_edge.resolver, timeout=5)
        socks.append(extra)
        with contextlib.suppress(OSError):
            extra.sendall(framed)
        result = read_until_closed(extra, 3)
        assert result.closed and not result.data, result
        # One closes: a new connection is served again.
        socks.pop(0).close()

        def served() -> bool:
            with socket.create_connection(lim_edge.resolver, timeout=5) as s:
                s.sendall(framed)
                with contextlib.suppress(OSError):
                    return len(s.recv(4096)) > 2
            return False

        wait_for(served, 5, "the resolver to accept again below the limit", step=0.05)
    finally:
        for s in socks:
            s.close()


# ----------------------------------------------------------------------------- EMFILE


@dataclass
class FloodOutcome:
    held: int
    log: str
    alive_during: bool
    served_after: bool


@pytest.fixture(scope="module")
def emfile_flood(tmp_path_factory: pytest.TempPathFactory) -> FloodOutcome:
    """An `edge up` subprocess with RLIMIT_NOFILE 400 gets 600 connections to a CDN port (more
    than it has descriptors), held while we look at its log, then released."""
    from reliability_harness import pick_block

    tmp_path = tmp_path_factory.mktemp("emfile")
    block = pick_block()
    data = base_config(block, header_timeout=5.0)
    config = tmp_path / "edge.yaml"
    config.write_text(json.dumps(data))
    log_path = tmp_path / "edge.log"
    nofile = 400

    def lower_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    offset = int(data["network"]["port_offset"])
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "edge",
                "up",
                "--config",
                str(config),
                "--state-dir",
                str(tmp_path / "state"),
                "--log-format",
                "json",
            ],
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=lower_limit,
        )
    held: list[socket.socket] = []
    address = (f"127.{block}.10.1", 80 + offset)

    def overload_logged() -> bool:
        text = log_path.read_text()
        return "EMFILE" in text or "Too many open files" in text or "overload" in text

    def serves() -> bool:
        with contextlib.suppress(OSError), socket.create_connection(address, timeout=2) as s:
            s.sendall(b"GET /bytes/3 HTTP/1.1\r\nHost: www.example.com\r\nConnection: close\r\n\r\n")
            return read_until_closed(s, 3).status == 200
        return False

    try:
        import urllib.request

        def ready() -> bool:
            assert proc.poll() is None, log_path.read_text()[-3000:]
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"http://127.{block}.0.1:{8900 + offset}/ready", timeout=1) as r,
            ):
                return bool(r.status == 200)
            return False

        wait_for(ready, 30, "edge ready", step=0.1)
        for _ in range(nofile + 200):
            try:
                held.append(socket.create_connection(address, timeout=2))
            except OSError:
                break
        with contextlib.suppress(AssertionError):
            wait_for(overload_logged, 5, "an overload log line", step=0.1)
        alive_during = proc.poll() is None
        count = len(held)
        for s in held:
            s.close()
        held.clear()
        served = False
        with contextlib.suppress(AssertionError):
            wait_for(serves, 15, "the edge to serve again after the flood", step=0.2)
            served = True
        return FloodOutcome(count, log_path.read_text(), alive_during, served)
    finally:
        for s in held:
            s.close()
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def test_emfile_flood_is_survived(emfile_flood: FloodOutcome) -> None:
    assert emfile_flood.held > 400, emfile_flood.held
    assert emfile_flood.alive_during, emfile_flood.log[-2000:]
    assert emfile_flood.served_after, emfile_flood.log[-2000:]




def test_emfile_flood_is_logged(emfile_flood: FloodOutcome) -> None:
    text = emfile_flood.log
    assert "EMFILE" in text or "Too many open files" in text or "overload" in text, text[-1500:]
