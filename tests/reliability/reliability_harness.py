"""Shared set-up for the reliability suite (issue 9): private address blocks, configs with small
limits, raw-socket clients, and the "healthy neighbour" that every hostile case checks.

Addresses: the default plan moved to a free 127.B.0.0/16 block with B in 200-240 (away from the
other suites), port offset 0 when ports below 1024 can be bound (root), else 10000.
The edge runs in-process on its own thread (`edge.pytest_plugin.run_edge`), so the tests use
plain blocking sockets with timeouts; nothing here sleeps to synchronise: every wait is a
bounded poll of a condition or a blocking read with a deadline.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dnslib import DNSRecord

from edge.config import default_config_text, parse_yaml
from edge.harness import EdgeHandle
from edge.pytest_plugin import EdgeFixture, relocate, run_edge
from edge.store import privileged_ports_available

BLOCK_RANGE = range(200, 241)

# Small limits so every timeout-driven case finishes in a second or two.
SMALL_LIMITS: dict[str, Any] = {
    "max_header_bytes": 8192,
    "max_header_count": 30,
    "header_timeout": 1.0,
    "keepalive_timeout": 30.0,
    "origin_connect_timeout": 2.0,
    "origin_read_timeout": 1.5,
    "udp_idle_timeout": 30.0,
    "max_udp_flows": 8,
    "dns_tcp_idle_timeout": 1.0,
    "shutdown_deadline": 5.0,
}


def _free(address: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((address, port))
        except OSError:
            return False
        return True


_used_blocks: set[int] = set()


def pick_block() -> int:
    """A second octet in 200-240 whose admin and demo-origin addresses are free (and that this
    process has not handed out yet: a just-closed block may still hold sockets in TIME_WAIT)."""
    offset = 0 if privileged_ports_available() else 10000
    for block in BLOCK_RANGE:
        if block in _used_blocks:
            continue
        if _free(f"127.{block}.0.1", 8900 + offset) and _free(f"127.{block}.30.2", 22 + offset):
            _used_blocks.add(block)
            return block
    _used_blocks.clear()
    for block in BLOCK_RANGE:
        if _free(f"127.{block}.0.1", 8900 + offset):
            _used_blocks.add(block)
            return block
    raise RuntimeError("no free 127.B.0.0/16 block in 200-240")


def base_config(block: int, **limits: Any) -> dict[str, Any]:
    """The built-in default config moved to 127.<block>, with SMALL_LIMITS and overrides."""
    data: dict[str, Any] = relocate(parse_yaml(default_config_text()), block)
    data["network"]["port_offset"] = 0 if privileged_ports_available() else 10000
    data["limits"] = {**SMALL_LIMITS, **limits}
    return data


@contextlib.contextmanager
def edge_running(
    data: dict[str, Any], state_dir: Path, block: int, roles: tuple[str, ...] | None = None
) -> Iterator[EdgeFixture]:
    with run_edge(data, state_dir, block=block, roles=roles) as fixture:
        yield fixture


def handle_of(edge: EdgeFixture) -> EdgeHandle:
    handle = edge._handle
    assert isinstance(handle, EdgeHandle)
    return handle


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, step: float = 0.02) -> None:
    """Poll `predicate` until true (bounded); AssertionError naming `what` otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(step)  # a bounded poll of a condition, not a synchronising sleep
    assert predicate(), f"timed out after {timeout}s waiting for {what}"


# ----------------------------------------------------------------------------- raw clients


@dataclass
class RawResult:
    data: bytes
    closed: bool  # the server closed (EOF or reset) before our deadline
    reset: bool
    elapsed: float

    @property
    def status(self) -> int | None:
        if not self.data.startswith(b"HTTP/"):
            return None
        try:
            return int(self.data.split(b" ", 2)[1])
        except (IndexError, ValueError):
            return None

    @property
    def body(self) -> bytes:
        return self.data.partition(b"\r\n\r\n")[2]


def _read(sock: socket.socket, timeout: float, complete: Callable[[bytes], bool]) -> RawResult:
    """Read until `complete(data so far)`, the peer closes, or `timeout` passes."""
    start = time.monotonic()
    deadline = start + timeout
    buf = b""
    closed = reset = False
    while not complete(buf):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        except (ConnectionResetError, BrokenPipeError):
            closed = reset = True
            break
        except ssl.SSLError:
            closed = True
            break
        if not chunk:
            closed = True
            break
        buf += chunk
    return RawResult(buf, closed, reset, time.monotonic() - start)


def read_until_closed(sock: socket.socket, timeout: float) -> RawResult:
    return _read(sock, timeout, lambda _data: False)


def _one_response(data: bytes) -> bool:
    """A whole HTTP response with a Content-Length body is in `data`."""
    head, sep, rest = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    length = None
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    return length is not None and len(rest) >= length


def read_response(sock: socket.socket, timeout: float) -> RawResult:
    """Read one HTTP response (head + Content-Length body), or until close/timeout."""
    return _read(sock, timeout, _one_response)


def tls_client_context(edge: EdgeFixture) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(edge.ca_path))


def open_cdn(edge: EdgeFixture, *, tls: bool, host: str = "www.example.com", timeout: float = 5.0) -> socket.socket:
    port = edge.port(443 if tls else 80)
    sock = socket.create_connection((edge.cdn_ip, port), timeout=timeout)
    if tls:
        return tls_client_context(edge).wrap_socket(sock, server_hostname=host)
    return sock


def raw_http(
    edge: EdgeFixture, payload: bytes, *, tls: bool = False, host: str = "www.example.com", timeout: float = 5.0
) -> RawResult:
    """Send `payload` on a fresh connection to the CDN and read until it closes (or timeout)."""
    with open_cdn(edge, tls=tls, host=host, timeout=timeout) as sock:
        try:
            sock.sendall(payload)
        except (BrokenPipeError, ConnectionResetError):
            return RawResult(b"", True, True, 0.0)
        return read_until_closed(sock, timeout)


class PinnedHTTPS(http.client.HTTPSConnection):
    """HTTPS keep-alive connection to a fixed address with SNI/cert check for `server_name`."""

    def __init__(self, address: str, server_name: str, port: int, context: ssl.SSLContext, timeout: float) -> None:
        super().__init__(address, port, context=context, timeout=timeout)
        self._server_name = server_name
        self._ctx = context

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), self.timeout)
        self.sock = self._ctx.wrap_socket(sock, server_hostname=self._server_name)


def keepalive(edge: EdgeFixture, host: str = "www.example.com", timeout: float = 10.0) -> PinnedHTTPS:
    return PinnedHTTPS(edge.cdn_ip, host, edge.port(443), tls_client_context(edge), timeout)


def echo_roundtrip(conn: http.client.HTTPConnection, body: bytes, host: str = "www.example.com") -> bytes:
    conn.request("POST", "/echo", body=body, headers={"Host": host, "Content-Type": "application/octet-stream"})
    resp = conn.getresponse()
    data = resp.read()
    assert resp.status == 200, (resp.status, data[:200])
    return data


# ----------------------------------------------------------------------------- DNS


def dns_query_bytes(name: str, qtype: str = "A", ident: int = 0x1234) -> bytes:
    q = DNSRecord.question(name, qtype)
    q.header.id = ident
    packed: bytes = q.pack()
    return packed


def dns_udp(edge: EdgeFixture, payload: bytes, timeout: float = 2.0) -> bytes | None:
    address = edge.resolver
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(payload, address)
        try:
            data, _ = s.recvfrom(65535)
        except TimeoutError:
            return None
        return data


def dns_answers(data: bytes) -> list[str]:
    record = DNSRecord.parse(data)
    return [str(rr.rdata) for rr in record.rr]


def dns_rcode(data: bytes) -> int:
    return data[3] & 0x0F


def check_dns_healthy(edge: EdgeFixture, name: str = "www.example.com") -> None:
    reply = dns_udp(edge, dns_query_bytes(name, "A", 0x4242))
    assert reply is not None, "resolver did not answer a valid query"
    assert dns_rcode(reply) == 0
    assert dns_answers(reply) == [edge.cdn_ip, str(edge.snapshot.config.network.cdn_ips[1])]


# ----------------------------------------------------------------------------- admin API


def admin_base(edge: EdgeFixture) -> str:
    return edge.api_base.removesuffix("/client/v4")


def api_call(
    edge: EdgeFixture,
    method: str,
    path: str,
    body: Any = None,
    *,
    raw: bytes | None = None,
    token: str | None = "<config>",
    timeout: float = 10.0,
) -> tuple[int, Any]:
    """One API v4 call; returns (status, parsed JSON or text)."""
    url = edge.api_base + path
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if token is not None:
        req.add_header("Authorization", f"Bearer {edge.api_token if token == '<config>' else token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, text = resp.status, resp.read()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text.decode(errors="replace")


def zone_id(edge: EdgeFixture, name: str = "example.com") -> str:
    status, body = api_call(edge, "GET", f"/zones?name={name}")
    assert status == 200, body
    zid: str = body["result"][0]["id"]
    return zid


def health(edge: EdgeFixture) -> dict[str, Any]:
    with urllib.request.urlopen(admin_base(edge) + "/health", timeout=5) as resp:
        data: dict[str, Any] = json.loads(resp.read())
    return data


# ----------------------------------------------------------------------------- healthy neighbour


class Healthy:
    """Connections opened before a hostile case and used after it: a CDN HTTPS keep-alive
    connection, a Spectrum TCP relay to the TCP echo, and a resolver query."""

    def __init__(self, edge: EdgeFixture) -> None:
        self.edge = edge
        self.cdn = keepalive(edge)
        assert echo_roundtrip(self.cdn, b"before") == b"before"
        ssh_ip = str(edge.snapshot.spectrum_hosts["ssh.example.com"][0])
        self.relay = socket.create_connection((ssh_ip, edge.port(22)), timeout=5)
        self.relay_file = self.relay.makefile("rb")
        banner = json.loads(self.relay_file.readline())
        assert "peer" in banner, banner
        self.relay.sendall(b"ping-before\n")
        assert self.relay_file.readline() == b"ping-before\n"

    def check(self) -> None:
        """Both connections still work, byte-exact, and the resolver answers."""
        assert echo_roundtrip(self.cdn, b"after" * 100) == b"after" * 100
        self.relay.sendall(b"ping-after\n")
        assert self.relay_file.readline() == b"ping-after\n"
        check_dns_healthy(self.edge)

    def close(self) -> None:
        self.cdn.close()
        self.relay_file.close()
        self.relay.close()

    def __enter__(self) -> Healthy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def dns_tcp_frame(payload: bytes) -> bytes:
    return len(payload).to_bytes(2, "big") + payload


def dns_tcp_exchange(edge: EdgeFixture, data: bytes, timeout: float = 3.0) -> RawResult:
    with socket.create_connection(edge.resolver, timeout=timeout) as s:
        s.sendall(data)
        return read_until_closed(s, timeout)
