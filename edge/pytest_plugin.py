"""pytest plugin (entry point `pytest11: edge`): the `edge` fixture runs the emulator for a test.

    def test_my_app(edge):
        status, headers, body = edge.request("GET", "www.example.com", "/")
        assert status == 200
        assert edge.events("http_requests")[-1]["ClientRequestHost"] == "www.example.com"

The emulator runs in-process on its own thread and loop, on a free 127.B.0.0/16 block (the
default plan's addresses with the second octet replaced), so tests never collide with an
`edge up` on the same machine. Configure it with the `edge_config` fixture (a dict, YAML text
or None for the built-in default) and `edge_block` (a fixed second octet, or None for a free one).
Without permission for ports below 1024, the documented port offset (10000) is applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import re
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge.config import default_config_text, parse_yaml
from edge.events import Record

_ADDRESS = re.compile(r"\b127\.0\.(\d{1,3})\.(\d{1,3})\b")


def relocate(data: Any, block: int) -> Any:
    """The config with every 127.0.x.y address moved to 127.<block>.x.y (strings and CIDRs)."""
    text = json.dumps(data)
    text = _ADDRESS.sub(lambda m: f"127.{block}.{m.group(1)}.{m.group(2)}", text)
    return json.loads(text)


def free_block(start: int = 100) -> int:
    """A second octet whose admin address 127.B.0.1:8900 is free."""
    for block in range(start, 250):
        with socket.socket() as s:
            try:
                s.bind((f"127.{block}.0.1", 8900))
            except OSError:
                continue
            return block
    raise RuntimeError("no free 127.B.0.0/16 block")


class EdgeFixture:
    """A running emulator: addresses, CA, clients and the records tests produce."""

    def __init__(self, handle: Any, loop: asyncio.AbstractEventLoop, log_tail: list[str]) -> None:
        self._handle = handle
        self._loop = loop
        self.log_tail = log_tail

    @property
    def snapshot(self) -> Any:
        return self._handle.snapshot

    @property
    def ca_path(self) -> Path:
        path: Path = self._handle.ca_path
        return path

    @property
    def cdn_ip(self) -> str:
        return str(self.snapshot.config.network.cdn_ips[0])

    @property
    def resolver(self) -> tuple[str, int]:
        net = self.snapshot.config.network
        return str(net.resolver), self.snapshot.listen_port(net.resolver_port)

    def port(self, port: int) -> int:
        """The port actually in use for a logical (Cloudflare) port."""
        return int(self.snapshot.listen_port(port))

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_path))

    def url(self, host: str, path: str = "/", *, scheme: str = "https") -> str:
        port = self.port(443 if scheme == "https" else 80)
        return f"{scheme}://{host}:{port}{path}"

    def resolve_args(self, host: str, port: int = 443, address: str | None = None) -> list[str]:
        """curl arguments pinning `host` to the CDN edge IP: ["--resolve", "h:p:ip", "--cacert", CA]."""
        return ["--resolve", f"{host}:{self.port(port)}:{address or self.cdn_ip}", "--cacert", str(self.ca_path)]

    def request(
        self,
        method: str,
        host: str,
        path: str = "/",
        *,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        scheme: str = "https",
        address: str | None = None,
        port: int | None = None,
        timeout: float = 10.0,
    ) -> tuple[int, dict[str, str], bytes]:
        """One HTTP request to the edge IP (SNI and Host = host); returns (status, headers, body)."""
        target = address or self.cdn_ip
        real_port = self.port(port or (443 if scheme == "https" else 80))
        conn: http.client.HTTPConnection
        if scheme == "https":
            conn = _PinnedHTTPS(target, host, real_port, self.ssl_context(), timeout)
        else:
            conn = http.client.HTTPConnection(target, real_port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers={"Host": host, **(headers or {})})
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    @property
    def api_base(self) -> str:
        api = self.snapshot.config.api
        return f"http://{api.address}:{self.port(api.port)}/client/v4"

    @property
    def api_token(self) -> str:
        return str(self.snapshot.config.api.token)

    def cloudflare(self) -> Any:
        """An official `cloudflare.Cloudflare` client pointed at the emulator's API."""
        import cloudflare

        return cloudflare.Cloudflare(api_token=self.api_token, base_url=self.api_base)

    def events(self, dataset: str) -> list[Record]:
        records: list[Record] = self._handle.records(dataset)
        return records

    def call(self, fn: Any, *args: Any) -> Any:
        """Run a callable on the emulator's loop thread (for store changes from a test)."""
        return asyncio.run_coroutine_threadsafe(_call(fn, *args), self._loop).result(30)


async def _call(fn: Any, *args: Any) -> Any:
    return fn(*args)


class _PinnedHTTPS(http.client.HTTPSConnection):
    """HTTPS to a fixed address with SNI and certificate check for `server_name`."""

    def __init__(self, address: str, server_name: str, port: int, context: ssl.SSLContext, timeout: float) -> None:
        super().__init__(address, port, context=context, timeout=timeout)
        self._server_name = server_name
        self._context = context

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self._server_name)


@contextlib.contextmanager
def run_edge(
    config: Any, state_dir: Path, *, block: int | None = None, roles: tuple[str, ...] | None = None
) -> Iterator[EdgeFixture]:
    """Start the emulator on a background thread; yields when it is ready."""
    import uvloop

    from edge.harness import EdgeStartError, open_edge
    from edge.runtime import ALL_ROLES
    from edge.store import privileged_ports_available

    data = parse_yaml(config) if isinstance(config, str) else config
    if data is None:
        data = parse_yaml(default_config_text())
    block = free_block() if block is None else block
    data = relocate(data, block)
    offset = None if privileged_ports_available() else 10000
    loop = uvloop.new_event_loop()
    started = threading.Event()
    stop: asyncio.Event | None = None
    box: dict[str, Any] = {}
    log_tail: list[str] = []

    async def main() -> None:
        nonlocal stop
        stop = asyncio.Event()
        try:
            async with open_edge(data, state_dir=state_dir, roles=roles or ALL_ROLES, port_offset=offset) as handle:
                box["handle"] = handle
                started.set()
                await stop.wait()
        except BaseException as e:
            box["error"] = e
            started.set()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), name="edge-fixture", daemon=True)
    thread.start()
    started.wait(60)
    try:
        if "error" in box:
            err = box["error"]
            raise EdgeStartError(f"edge fixture did not start: {err}\nlog tail:\n" + "\n".join(log_tail[-30:]))
        yield EdgeFixture(box["handle"], loop, log_tail)
    finally:
        if stop is not None:
            loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        loop.close()


@pytest.fixture
def edge_config() -> Any:
    """Override in a test module or conftest: a dict, YAML text, or None (the built-in default)."""
    return None


@pytest.fixture
def edge_block() -> int | None:
    """Override to pin the 127.B.0.0/16 block; None picks a free one."""
    return None


@pytest.fixture
def edge(edge_config: Any, edge_block: int | None, tmp_path: Path) -> Iterator[EdgeFixture]:
    with run_edge(edge_config, tmp_path / "edge-state", block=edge_block) as fixture:
        yield fixture
