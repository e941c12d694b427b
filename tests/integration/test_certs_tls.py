"""Issued certificates verified by the real clients: `openssl s_client -verify_return_error` and curl."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from certs.files import EdgeCertificates, open_ca


class TlsServer:
    """A tiny TLS server on 127.0.0.1 answering one HTTP response per connection."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)  # bound and listening before any client starts: readiness by construction
        self.port = self.sock.getsockname()[1]
        self.context = context
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            try:
                with self.context.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(4096)
                    tls.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
            except (OSError, ssl.SSLError):
                conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[TlsServer, Path]]:
    ca, ca_path = open_ca(tmp_path)
    ctx = EdgeCertificates(tmp_path, ca).ssl_context_for_zone("example.com", ["*.dev.example.com"])
    srv = TlsServer(ctx)
    yield srv, ca_path
    srv.close()


@pytest.mark.parametrize(
    ("name", "verifies"),
    [("example.com", True), ("www.example.com", True), ("x.dev.example.com", True), ("a.b.example.com", False)],
)
def test_openssl_verifies_apex_and_wildcard_only(server: tuple[TlsServer, Path], name: str, verifies: bool) -> None:
    if shutil.which("openssl") is None:
        pytest.fail("openssl is not installed")
    srv, ca_path = server
    proc = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{srv.port}", "-servername", name, "-CAfile", str(ca_path),
         "-verify_return_error", "-verify_hostname", name],
        input="", capture_output=True, text=True, timeout=30,
    )
    if verifies:
        assert proc.returncode == 0, proc.stderr
        assert "Verify return code: 0 (ok)" in proc.stdout
    else:
        assert proc.returncode != 0
        assert "hostname mismatch" in proc.stdout + proc.stderr


def test_curl_trusts_the_local_ca(server: tuple[TlsServer, Path]) -> None:
    srv, ca_path = server
    proc = subprocess.run(
        ["curl", "-sS", "--cacert", str(ca_path), "--resolve", f"www.example.com:{srv.port}:127.0.0.1",
         f"https://www.example.com:{srv.port}/"],
        capture_output=True, text=True, timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "ok"
