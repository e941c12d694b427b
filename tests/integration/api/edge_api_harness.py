"""The edge's admin API on a free port, driven by the official SDK over real sockets."""

from __future__ import annotations

import asyncio
import importlib.util
import socket
import sys
import types
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import cloudflare
import pytest
import pytest_asyncio

from edge.config import default_config_text
from edge.harness import EdgeHandle, open_edge

TOKEN = "edge-local-token"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(autouse=True)
def ca_stub(monkeypatch: pytest.MonkeyPatch) -> None:
    """`open_edge` creates the local CA through `certs.files`; while that package is not built yet,
    stand in a no-op for the duration of one test (the API never touches the CA)."""
    if "certs" in sys.modules or importlib.util.find_spec("certs") is not None:
        return
    pkg, files = types.ModuleType("certs"), types.ModuleType("certs.files")
    files.open_ca = lambda state_dir: None  # type: ignore[attr-defined]
    pkg.files = files  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "certs", pkg)
    monkeypatch.setitem(sys.modules, "certs.files", files)


def config_text(port: int) -> str:
    text = default_config_text()
    text = text.replace("port_offset: auto", "port_offset: 0").replace("port: 8900", f"port: {port}")
    assert f"port: {port}" in text and "port_offset: 0" in text
    return text


@dataclass
class Api:
    edge: EdgeHandle
    base_url: str
    clients: list[cloudflare.Cloudflare] = field(default_factory=list)

    def client(self, **auth: str) -> cloudflare.Cloudflare:
        if not auth:
            auth = {"api_token": TOKEN}
        made = cloudflare.Cloudflare(base_url=self.base_url, max_retries=0, **auth)  # type: ignore[arg-type]
        self.clients.append(made)  # closed at teardown: their pooled connections are sockets
        return made


@pytest_asyncio.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    port = _free_port()
    async with open_edge(config_text(port), state_dir=tmp_path / "state", roles=("api",)) as edge:
        await wait_role(edge, "api")
        handle = Api(edge, f"http://127.0.0.1:{port}/client/v4")
        try:
            yield handle
        finally:
            for made in handle.clients:
                made.close()


async def wait_role(edge: EdgeHandle, role: str, timeout: float = 10.0) -> None:
    """`open_edge` can return before `serve_roles` has even registered the expected roles (its
    readiness check passes vacuously on an empty set); wait for the role itself."""
    binds = edge.ctx.binds
    async with asyncio.timeout(timeout):
        while role not in binds.ready_roles:
            binds.changed.clear()
            await binds.changed.wait()
