"""The resolver role on real sockets (127.0.0.2:53, port offset 0), with the store it follows.

`open_resolver(tmp_path, config)` starts the resolver role alone with `edge.harness.open_edge`
(store in `tmp_path`, readiness awaited, ordered shutdown) and yields a `ResolverEnv`.
Queries go through `dig` (run as a subprocess, so the loop keeps serving) or raw sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.config import build_config, default_config_text, parse_yaml
from edge.events import Record
from edge.harness import EdgeHandle, open_edge
from edge.runtime import RoleContext
from edge.store import Store

SERVER = "127.0.0.2"
PORT = 53
CDN_EGRESS = "127.0.10.254"

EXTRA_RECORDS: list[dict[str, Any]] = [
    {"name": "v6.example.com", "type": "AAAA", "content": "2001:db8::1", "ttl": 300},
    {"name": "alias.example.com", "type": "CNAME", "content": "origin.example.com", "ttl": 600},
    {"name": "example.com", "type": "MX", "content": "mail.example.com", "priority": 10, "ttl": 300},
    {"name": "example.com", "type": "CAA", "content": '0 issue "letsencrypt.org"', "ttl": 300},
    {"name": "_sip._tcp.example.com", "type": "SRV", "content": "10 5 5060 sip.example.com", "ttl": 300},
    {"name": "*.wild.example.com", "type": "A", "content": "192.0.2.50", "ttl": 300},
    *({"name": "many.example.com", "type": "A", "content": f"198.51.100.{i}", "ttl": 300} for i in range(1, 41)),
]


def resolver_config(**limits: Any) -> dict[str, Any]:
    """The built-in default config plus one record of each kind, port offset 0."""
    data: dict[str, Any] = parse_yaml(default_config_text())
    data["network"]["port_offset"] = 0
    data["zones"][0]["dns_records"] = [*data["zones"][0]["dns_records"], *copy.deepcopy(EXTRA_RECORDS)]
    if limits:
        data["limits"] = {**data.get("limits", {}), **limits}
    return data


@dataclass
class ResolverEnv:
    handle: EdgeHandle

    @property
    def ctx(self) -> RoleContext:
        return self.handle.ctx

    @property
    def store(self) -> Store:
        return self.handle.store

    def records(self) -> list[Record]:
        return self.handle.records("dns_queries")

    def apply(self, data: dict[str, Any]) -> None:
        self.store.apply(build_config(data), source="test")

    async def stop(self) -> None:
        """Stop the edge (the resolver's sockets close) before the block ends."""
        self.handle.stop.set()
        await self.handle.task


@contextlib.asynccontextmanager
async def open_resolver(state_dir: Path, config: dict[str, Any] | None = None) -> AsyncIterator[ResolverEnv]:
    """The resolver role alone, started by the lead's harness (readiness awaited, no sleeps)."""
    async with open_edge(
        config if config is not None else resolver_config(),
        state_dir=state_dir,
        roles=("resolver",),
        port_offset=0,
        ready_timeout=10,
    ) as handle:
        yield ResolverEnv(handle)


async def dig(*args: str, server: str = SERVER, port: int = PORT) -> str:
    proc = await asyncio.create_subprocess_exec(
        "dig",
        "+time=2",
        "+tries=1",
        f"@{server}",
        "-p",
        str(port),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    return out.decode()


async def dig_short(*args: str) -> list[str]:
    return sorted(line for line in (await dig("+short", *args)).splitlines() if line)


class _Catcher(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.queue.put_nowait(data)


async def udp_exchange(payload: bytes, *, timeout: float = 2.0, source: str = "127.0.0.1") -> bytes | None:
    """Send one datagram to the resolver; its answer, or None if none came within `timeout`."""
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(_Catcher, local_addr=(source, 0), remote_addr=(SERVER, PORT))
    try:
        transport.sendto(payload)
        try:
            async with asyncio.timeout(timeout):
                return await proto.queue.get()
        except TimeoutError:
            return None
    finally:
        transport.close()


def dns_query(name: str, qtype: int = 1, ident: int = 0x4242) -> bytes:
    out = struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\x00" + struct.pack("!HH", qtype, 1)
