"""The stub client against the running resolver: views, cache, TTL, generation flush, TCP
fallback, typed errors, timeouts."""

from __future__ import annotations

import asyncio
import ipaddress
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from resolver_env import CDN_EGRESS, ResolverEnv, open_resolver, resolver_config

from edge.config import build_config
from edge.store import Store
from resolver.stub import (
    NoData,
    NoSuchName,
    ResolveError,
    ResolveFailed,
    ResolveRefused,
    ResolveTimeout,
    StubResolver,
)

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def env(tmp_path: Path) -> AsyncIterator[ResolverEnv]:
    async with open_resolver(tmp_path) as e:
        yield e


@pytest_asyncio.fixture
async def stub(env: ResolverEnv) -> AsyncIterator[StubResolver]:
    s = StubResolver(env.store, source_ip=CDN_EGRESS)
    try:
        yield s
    finally:
        await s.aclose()


async def test_internal_view_answer(env: ResolverEnv, stub: StubResolver) -> None:
    res = await stub.resolve("www.example.com")
    assert res.addresses == (ipaddress.ip_address("127.0.30.1"),)
    assert (res.ttl, res.view, res.cname_chain, res.from_cache) == (300, "internal", (), False)
    assert res.elapsed_ms > 0
    assert env.records()[-1]["View"] == "internal"


async def test_public_view_when_asking_from_elsewhere(env: ResolverEnv) -> None:
    stub = StubResolver(env.store, source_ip="127.0.0.1")
    try:
        res = await stub.resolve("www.example.com")
        assert sorted(map(str, res.addresses)) == ["127.0.10.1", "127.0.10.2"] and res.view == "public"
    finally:
        await stub.aclose()


async def test_spectrum_hostname(env: ResolverEnv, stub: StubResolver) -> None:
    res = await stub.resolve("Spectrum.Example.com.")
    assert res.addresses == env.store.current.spectrum_hosts["spectrum.example.com"]


async def test_cname_chain(stub: StubResolver) -> None:
    res = await stub.resolve("alias.example.com")
    assert res.cname_chain == ("origin.example.com",)
    assert res.addresses == (ipaddress.ip_address("127.0.30.1"),)
    assert res.ttl == 300  # the smallest TTL along the chain (CNAME 600, A 300)


async def test_cache_serves_until_the_ttl_then_asks_again(env: ResolverEnv, stub: StubResolver) -> None:
    first = await stub.resolve("origin.example.com", now=1000.0)
    asked = len(env.records())
    cached = await stub.resolve("origin.example.com", now=1299.5)
    assert cached.from_cache and cached.addresses == first.addresses and cached.ttl == 0
    assert len(env.records()) == asked  # no query went out
    fresh = await stub.resolve("origin.example.com", now=1300.0)
    assert not fresh.from_cache and len(env.records()) == asked + 1


async def test_cache_dropped_when_the_generation_changes(env: ResolverEnv, stub: StubResolver) -> None:
    await stub.resolve("origin.example.com", now=0.0)
    assert (await stub.resolve("origin.example.com", now=1.0)).from_cache
    data = resolver_config()
    for r in data["zones"][0]["dns_records"]:
        if r["name"] == "origin.example.com":
            r["content"] = "127.0.30.7"
    env.apply(data)
    res = await stub.resolve("origin.example.com", now=2.0)
    assert not res.from_cache and res.addresses == (ipaddress.ip_address("127.0.30.7"),)


async def test_tcp_fallback_on_truncation(env: ResolverEnv, stub: StubResolver) -> None:
    res = await stub.resolve("many.example.com")
    assert len(res.addresses) == 40
    assert [r["Transport"] for r in env.records()[-2:]] == ["udp", "tcp"]


async def test_resolve_addresses_falls_back_to_aaaa(stub: StubResolver) -> None:
    res = await stub.resolve_addresses("v6.example.com")
    assert res.addresses == (ipaddress.ip_address("2001:db8::1"),)
    v4 = await stub.resolve_addresses("origin.example.com")
    assert v4.addresses == (ipaddress.ip_address("127.0.30.1"),)


@pytest.mark.parametrize(
    ("name", "rdtype", "error"),
    [
        ("nope.example.com", "A", NoSuchName),
        ("origin.example.com", "AAAA", NoData),
        ("example.com", "A", NoData),
        ("example.org", "A", ResolveRefused),
    ],
)
async def test_typed_errors(stub: StubResolver, name: str, rdtype: str, error: type[ResolveError]) -> None:
    with pytest.raises(error) as info:
        await stub.resolve(name, rdtype)
    assert isinstance(info.value, ResolveError) and info.value.name == name.lower()


async def test_negative_answers_are_not_cached(env: ResolverEnv, stub: StubResolver) -> None:
    for _ in range(2):
        with pytest.raises(NoSuchName):
            await stub.resolve("nope.example.com")
    assert [r["QueryName"] for r in env.records()[-2:]] == ["nope.example.com"] * 2


async def test_only_address_types(stub: StubResolver) -> None:
    with pytest.raises(ValueError):
        await stub.resolve("example.com", "TXT")


async def test_timeout_when_the_server_is_stopped(env: ResolverEnv) -> None:
    stub = StubResolver(env.store, source_ip=CDN_EGRESS, tries=2, timeout=0.1)
    try:
        assert (await stub.resolve("www.example.com")).addresses
        await env.stop()
        with pytest.raises(ResolveTimeout, match="after 2 tries"):
            await stub.resolve("origin.example.com")
        # A cached answer is still served until its TTL.
        assert (await stub.resolve("www.example.com")).from_cache
    finally:
        await stub.aclose()


class _ServFail(asyncio.DatagramProtocol):
    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        flags = 0x8002 | (struct.unpack_from("!H", data, 2)[0] & 0x0100)
        self.transport.sendto(data[:2] + struct.pack("!H", flags) + data[4:], addr)


async def test_servfail_is_resolve_failed(tmp_path: Path) -> None:
    data = resolver_config()
    data["network"]["resolver"] = "127.0.0.9"
    data["network"]["resolver_port"] = 5353
    store = Store(tmp_path, port_offset=0)
    store.open_config(build_config(data), source="test")
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(_ServFail, local_addr=("127.0.0.9", 5353))
    stub = StubResolver(store, source_ip=CDN_EGRESS)
    try:
        with pytest.raises(ResolveFailed, match="SERVFAIL"):
            await stub.resolve("www.example.com")
    finally:
        await stub.aclose()
        transport.close()
        store.close()


async def test_closed_stub_refuses(env: ResolverEnv) -> None:
    stub = StubResolver(env.store, source_ip=CDN_EGRESS)
    await stub.aclose()
    with pytest.raises(ResolveError):
        await stub.resolve("www.example.com")
