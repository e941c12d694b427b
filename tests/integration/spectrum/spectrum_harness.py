"""Shared set-up for the Spectrum integration tests: the built-in default config moved to a
private 127.B.0.0/16 block (so runs never collide with `edge up` or other suites), the edge
started in-process with the origins and spectrum roles, and small socket helpers."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from edge.config import default_config_text, parse_yaml
from edge.events import Record
from edge.harness import EdgeHandle, open_edge
from edge.pytest_plugin import relocate
from spectrum.server import SpectrumServer


def pick_block(start: int = 180) -> int:
    """A second octet whose demo-origin addresses are free on this machine."""
    for block in range(start, 250):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((f"127.{block}.30.2", 22))
            except OSError:
                continue
            return block
    raise RuntimeError("no free 127.B.0.0/16 block")


def default_data(block: int) -> dict[str, Any]:
    data: dict[str, Any] = relocate(parse_yaml(default_config_text()), block)
    data["network"]["port_offset"] = 0
    return data


def add_apps(data: dict[str, Any], *apps: dict[str, Any]) -> dict[str, Any]:
    data["zones"][0].setdefault("spectrum_apps", []).extend(apps)
    return data


@contextlib.asynccontextmanager
async def running_edge(
    data: dict[str, Any], state_dir: Path, roles: tuple[str, ...] = ("origins", "spectrum")
) -> AsyncIterator[EdgeHandle]:
    async with open_edge(data, state_dir=state_dir, roles=roles) as handle:
        yield handle


def spectrum(handle: EdgeHandle) -> SpectrumServer:
    server = handle.ctx.extras["spectrum"]
    assert isinstance(server, SpectrumServer)
    return server


def app_ip(handle: EdgeHandle, host: str) -> str:
    return str(handle.snapshot.spectrum_hosts[host][0])


class RecordWaiter:
    """Wait (on an event, not a clock) for a spectrum_events record matching a predicate."""

    def __init__(self, handle: EdgeHandle) -> None:
        self.handle = handle

    async def wait(self, predicate: Callable[[Record], bool], timeout: float = 10.0) -> Record:
        for r in self.handle.records("spectrum_events"):
            if predicate(r):
                return r
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Record] = loop.create_future()

        def listener(dataset: str, record: Record) -> None:
            if dataset == "spectrum_events" and predicate(record) and not fut.done():
                fut.set_result(record)

        unsubscribe = self.handle.events.subscribe(listener)
        try:
            async with asyncio.timeout(timeout):
                return await fut
        finally:
            unsubscribe()


async def read_until_eof(reader: asyncio.StreamReader, timeout: float = 10.0) -> bytes:
    async with asyncio.timeout(timeout):
        return await reader.read()


def v4(text: str) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(text)


class UdpClient(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.queue.put_nowait(data)

    async def recv(self, timeout: float = 5.0) -> bytes:
        async with asyncio.timeout(timeout):
            return await self.queue.get()


async def udp_client(
    remote: tuple[str, int], local: tuple[str, int] | None = None
) -> tuple[asyncio.DatagramTransport, UdpClient]:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(UdpClient, remote_addr=remote, local_addr=local)
    return transport, proto
