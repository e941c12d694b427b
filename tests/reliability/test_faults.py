"""Faults (issue 9, part 4): broken origins, a stopped resolver, config changes under traffic,
SIGTERM under load. Each fault asserts the code the CDN answers (reference section 6) or the
Spectrum close status (reference 8.3), and that unrelated connections survive."""

from __future__ import annotations

import contextlib
import datetime
import http.client
import json
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from reliability_harness import (
    SMALL_LIMITS,
    Healthy,
    api_call,
    base_config,
    edge_running,
    handle_of,
    pick_block,
    wait_for,
    zone_id,
)

from edge.pytest_plugin import EdgeFixture

# ----------------------------------------------------------------------------- fault origins


def _self_signed(tmp: Path, name: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / f"{name}.pem", tmp / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


class FaultOrigin:
    """A misbehaving origin on (address, port): the request path picks the fault.

    /reset-before-head  RST before any response byte        -> CDN 520 or 502
    /reset-mid-body     head + part of the body, then RST    -> client sees a cut response
    /garbage            a non-HTTP reply                     -> 520 or 502
    /empty              close without a byte                 -> 520 or 502
    anything else       200 "ok"
    With `tls`, the connection is wrapped first (for the bad-certificate case); with
    `handshake_garbage`, a TLS client gets plain garbage instead of a ServerHello (525).
    """

    def __init__(self, address: str, port: int, *, tls: ssl.SSLContext | None = None, handshake_garbage: bool = False):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((address, port))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.tls = tls
        self.handshake_garbage = handshake_garbage
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        try:
            if self.handshake_garbage:
                conn.recv(4096)
                conn.sendall(b"this is not a ServerHello\r\n" * 4)
                return
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                head += chunk
            target = head.split(b" ", 2)[1]
            if target == b"/reset-before-head":
                _rst(conn)
            elif target == b"/reset-mid-body":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000)
                _rst(conn)
            elif target == b"/garbage":
                conn.sendall(b"NOT HTTP AT ALL\r\n\r\n")
            elif target == b"/empty":
                pass
            else:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        except (OSError, ssl.SSLError):
            pass
        finally:
            with contextlib.suppress(OSError):
                conn.close()

    def close(self) -> None:
        self.stop.set()
        self.sock.close()
        self.thread.join(2)


def _rst(conn: socket.socket) -> None:
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    conn.close()


# ----------------------------------------------------------------------------- the module's edge


def _fault_config(block: int) -> dict[str, Any]:
    data = base_config(block)
    zone = data["zones"][0]
    zone["dns_records"] += [
        {"name": "refused.example.com", "type": "A", "content": f"127.{block}.31.9", "proxied": True, "ttl": 1},
        {"name": "faulty.example.com", "type": "A", "content": f"127.{block}.31.1", "proxied": True, "ttl": 1},
    ]
    zone["spectrum_apps"].append(
        {
            "protocol": "tcp/2222",
            "dns": {"type": "CNAME", "name": "dead.example.com"},
            "origin_direct": [f"tcp://127.{block}.31.9:2222"],
            "proxy_protocol": "off",
        }
    )
    data["zones"].append(
        {
            "name": "strict.test",
            "settings": {"ssl": "strict"},
            "dns_records": [
                {"name": "badcert.strict.test", "type": "A", "content": f"127.{block}.31.2", "proxied": True, "ttl": 1},
                {"name": "hsfail.strict.test", "type": "A", "content": f"127.{block}.31.3", "proxied": True, "ttl": 1},
                {"name": "good.strict.test", "type": "A", "content": f"127.{block}.30.1", "proxied": True, "ttl": 1},
            ],
        }
    )
    return data


@pytest.fixture(scope="module")
def fault_edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeFixture]:
    block = pick_block()
    tmp = tmp_path_factory.mktemp("faults")
    cert, key = _self_signed(tmp, "badcert.strict.test")
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    data = _fault_config(block)
    origins = [
        FaultOrigin(f"127.{block}.31.1", data["network"]["port_offset"] + 80),
        FaultOrigin(f"127.{block}.31.2", data["network"]["port_offset"] + 443, tls=tls),
        FaultOrigin(f"127.{block}.31.3", data["network"]["port_offset"] + 443, handshake_garbage=True),
    ]
    try:
        with edge_running(data, tmp / "state", block) as edge:
            yield edge
    finally:
        for origin in origins:
            origin.close()


@pytest.fixture
def neighbour(fault_edge: EdgeFixture) -> Iterator[Healthy]:
    with Healthy(fault_edge) as h:
        yield h


def _get(
    edge: EdgeFixture, host: str, path: str, *, tls: bool = False, timeout: float = 10
) -> tuple[int, dict[str, str], bytes]:
    return edge.request("GET", host, path, scheme="https" if tls else "http", timeout=timeout)


def _error_code(headers: dict[str, str], body: bytes) -> str:
    return headers.get("cf-error-code", "") or body.decode(errors="replace")


# ----------------------------------------------------------------------------- origin faults


def test_origin_refuses_gives_521(fault_edge: EdgeFixture, neighbour: Healthy) -> None:
    status, headers, body = _get(fault_edge, "refused.example.com", "/")
    assert status == 521, (status, body[:200])
    assert "521" in _error_code(headers, body)
    neighbour.check()


@pytest.mark.parametrize("path", ["/reset-before-head", "/garbage", "/empty"])
def test_origin_broken_response_gives_520_or_502(fault_edge: EdgeFixture, neighbour: Healthy, path: str) -> None:
    status, _headers, body = _get(fault_edge, "faulty.example.com", path)
    assert status in {520, 502}, (path, status, body[:200])
    neighbour.check()


def test_origin_reset_mid_body_cuts_the_client_response(fault_edge: EdgeFixture, neighbour: Healthy) -> None:
    """The head (200) already went out: the edge must not pretend the body completed."""
    conn = http.client.HTTPConnection(fault_edge.cdn_ip, fault_edge.port(80), timeout=10)
    try:
        conn.request("GET", "/reset-mid-body", headers={"Host": "faulty.example.com"})
        resp = conn.getresponse()
        assert resp.status == 200
        with pytest.raises((http.client.IncompleteRead, ConnectionResetError)):
            resp.read()
    finally:
        conn.close()
    neighbour.check()


def test_origin_stall_gives_524(fault_edge: EdgeFixture, neighbour: Healthy) -> None:
    start = time.monotonic()
    status, headers, body = _get(fault_edge, "www.example.com", "/stall")
    elapsed = time.monotonic() - start
    assert status == 524, (status, body[:200])
    limit = float(SMALL_LIMITS["origin_read_timeout"])
    assert limit * 0.9 <= elapsed <= limit + 2.0, elapsed
    assert "524" in _error_code(headers, body)
    neighbour.check()


def test_strict_mode_bad_certificate_gives_526(fault_edge: EdgeFixture, neighbour: Healthy) -> None:
    status, _headers, body = _get(fault_edge, "badcert.strict.test", "/", tls=True)
    assert status == 526, (status, body[:200])
    neighbour.check()


def test_strict_mode_handshake_garbage_gives_525(fault_edge: EdgeFixture, neighbour: Healthy) -> None:
    status, _headers, body = _get(fault_edge, "hsfail.strict.test", "/", tls=True)
    assert status == 525, (status, body[:200])
    neighbour.check()


def test_strict_mode_good_origin_still_200(fault_edge: EdgeFixture) -> None:
    status, _headers, body = _get(fault_edge, "good.strict.test", "/", tls=True)
    assert status == 200, (status, body[:200])


def test_spectrum_origin_refused_closes_and_records_521(fault_edge: EdgeFixture, neighbour: Healthy) -> None:
    ip = str(fault_edge.snapshot.spectrum_hosts["dead.example.com"][0])
    with socket.create_connection((ip, fault_edge.port(2222)), timeout=5) as sock:
        sock.settimeout(5)
        port = sock.getsockname()[1]
        try:
            data = sock.recv(100)
        except ConnectionResetError:
            data = b""
    assert data == b""

    def closed_record() -> dict[str, Any] | None:
        for r in fault_edge.events("spectrum_events"):
            if r.get("ClientPort") == port and r.get("Event") != "connect":
                return dict(r)
        return None

    wait_for(lambda: closed_record() is not None, 5, "the spectrum close record")
    record = closed_record()
    assert record is not None and record["Status"] == 521, record
    neighbour.check()


# ----------------------------------------------------------------------------- store changes under traffic


def test_config_change_keeps_untouched_connections(fault_edge: EdgeFixture, neighbour: Healthy) -> None:
    zid = zone_id(fault_edge)
    before = int(fault_edge.snapshot.generation)
    spectrum = handle_of(fault_edge).ctx.extras["spectrum"]
    listeners_before = set(spectrum.tcp)
    status, reply = api_call(
        fault_edge,
        "POST",
        f"/zones/{zid}/dns_records",
        {"name": "added", "type": "A", "content": "192.0.2.7", "ttl": 60},
    )
    assert status == 200, reply
    wait_for(lambda: int(fault_edge.snapshot.generation) > before, 5, "the new generation")
    assert set(spectrum.tcp) == listeners_before
    # Mid-stream on the same connections: a CDN keep-alive request and a relay round-trip.
    neighbour.check()
    status2, reply2 = api_call(fault_edge, "DELETE", f"/zones/{zid}/dns_records/{reply['result']['id']}")
    assert status2 == 200, reply2
    neighbour.check()


# ----------------------------------------------------------------------------- resolver stopped


def test_resolver_stopped_cached_answers_serve_uncached_fail_1016(tmp_path: Path) -> None:
    block = pick_block()
    data = base_config(block)
    data["zones"][0]["dns_records"].append(
        {"name": "never.example.com", "type": "A", "content": f"127.{block}.30.1", "proxied": True, "ttl": 1}
    )
    state = tmp_path / "state"
    with edge_running(data, state, block, roles=("origins", "cdn", "api")) as front:
        with edge_running(data, state, block, roles=("resolver",)):
            status, _, _ = _get(front, "www.example.com", "/")
            assert status == 200
        # Resolver gone: the stub's cache still holds www (TTL not expired) ...
        status, _, body = _get(front, "www.example.com", "/")
        assert status == 200, body[:200]
        # ... and a name never asked fails as origin DNS error.
        status, headers, body = _get(front, "never.example.com", "/")
        assert status == 530, (status, body[:200])
        assert "1016" in _error_code(headers, body)


# ----------------------------------------------------------------------------- SIGTERM under load


def _write_config(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data))


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "edge exited while starting"
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as resp:
            if resp.status == 200:
                return
        time.sleep(0.05)  # bounded readiness poll
    raise AssertionError("edge not ready")




@pytest.mark.parametrize(
    "origins_apart",
    [
        pytest.param(True, id="origins-in-another-process"),
        pytest.param(False, id="all-roles"),
    ],
)
def test_sigterm_under_load_drains_in_flight(tmp_path: Path, origins_apart: bool) -> None:
    block = pick_block()
    data = base_config(block)
    deadline = float(data["limits"]["shutdown_deadline"])
    config = tmp_path / "edge.yaml"
    _write_config(config, data)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    roles = ["--roles", "resolver,spectrum,cdn,api"] if origins_apart else []
    with contextlib.ExitStack() as stack:
        if origins_apart:
            stack.enter_context(edge_running(data, tmp_path / "state", block, roles=("origins",)))
        _sigterm_under_load(tmp_path, cwd, config, data, block, deadline, roles)


def _sigterm_under_load(
    tmp_path: Path, cwd: Path, config: Path, data: dict[str, Any], block: int, deadline: float, roles: list[str]
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge", "up", "--config", str(config), "--state-dir", str(tmp_path / "state"), *roles],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        admin = f"http://127.{block}.0.1:{8900 + int(data['network']['port_offset'])}"
        _wait_ready(admin + "/ready", proc, 30)
        ca = (tmp_path / "state" / "ca" / "ca.pem").read_bytes()
        ctx = ssl.create_default_context(cadata=ca.decode())
        cdn_ip = f"127.{block}.10.1"
        port = 443 + int(data["network"]["port_offset"])
        n = 16
        started = threading.Barrier(n + 1, timeout=20)
        go = threading.Event()
        results: list[tuple[int, bool]] = []
        lock = threading.Lock()

        def client(i: int) -> None:
            payload = (b"%04d" % i) * 4096
            try:
                sock = ctx.wrap_socket(
                    socket.create_connection((cdn_ip, port), timeout=15), server_hostname="www.example.com"
                )
                with sock:
                    sock.sendall(
                        b"POST /echo HTTP/1.1\r\nHost: www.example.com\r\nContent-Length: %d\r\n\r\n" % len(payload)
                        + payload[:1000]
                    )
                    started.wait()
                    go.wait(20)
                    sock.sendall(payload[1000:])
                    resp = http.client.HTTPResponse(sock)
                    try:
                        resp.begin()
                        body = resp.read()
                    finally:
                        resp.close()
                    with lock:
                        results.append((resp.status, body == payload))
            except Exception as e:  # recorded as a failure below
                with lock:
                    results.append((-1, repr(e) == ""))

        threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        started.wait()
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)

        # Stopped accepting: a new connection is refused soon (bounded poll).
        def refused() -> bool:
            try:
                socket.create_connection((cdn_ip, port), timeout=0.5).close()
            except OSError:
                return True
            return False

        wait_for(refused, 5, "the listener to close")
        go.set()
        for t in threads:
            t.join(30)
        rc = proc.wait(timeout=deadline + 10)
        elapsed = time.monotonic() - t0
        assert rc == 0, rc
        assert elapsed <= deadline + 3, elapsed
        assert len(results) == n
        assert all(status == 200 and ok for status, ok in results), results
        assert list(cwd.iterdir()) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_sigterm_idle_exits_fast(tmp_path: Path) -> None:
    block = pick_block()
    data = base_config(block)
    config = tmp_path / "edge.yaml"
    _write_config(config, data)
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge", "up", "--config", str(config), "--state-dir", str(tmp_path / "state")],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_ready(f"http://127.{block}.0.1:{8900 + int(data['network']['port_offset'])}/ready", proc, 30)
        # An idle keep-alive connection must not hold shutdown for the whole deadline.
        with contextlib.closing(keepalive_raw(block, data)) as idle:
            assert idle is not None
            t0 = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            rc = proc.wait(timeout=20)
        assert rc == 0
        assert time.monotonic() - t0 < float(data["limits"]["shutdown_deadline"]), "idle connection held shutdown"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def keepalive_raw(block: int, data: dict[str, Any]) -> socket.socket:
    """A plain-HTTP keep-alive connection that has completed one request and is now idle."""
    sock = socket.create_connection((f"127.{block}.10.1", 80 + int(data["network"]["port_offset"])), timeout=5)
    sock.sendall(b"GET /bytes/10 HTTP/1.1\r\nHost: www.example.com\r\n\r\n")
    resp = http.client.HTTPResponse(sock)
    resp.begin()
    assert resp.read() == b"x" * 10 or resp.status == 200
    return sock
