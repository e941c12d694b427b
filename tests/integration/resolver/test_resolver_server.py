"""The resolver on 127.0.0.2:53, asked with dig and raw sockets."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import dnslib
import pytest
import pytest_asyncio
from resolver_env import (
    CDN_EGRESS,
    PORT,
    SERVER,
    ResolverEnv,
    dig,
    dig_short,
    dns_query,
    open_resolver,
    resolver_config,
    udp_exchange,
)

from edge.config import build_config
from edge.events import EventSink
from edge.runtime import Binds, Connections, RoleContext
from edge.store import Store
from resolver.framing import TcpFramer, encode_frame
from resolver.server import serve_resolver

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def env(tmp_path: Path) -> AsyncIterator[ResolverEnv]:
    async with open_resolver(tmp_path) as e:
        yield e


async def test_public_view_answers_cdn_ips(env: ResolverEnv) -> None:
    assert await dig_short("www.example.com") == ["127.0.10.1", "127.0.10.2"]
    rec = env.records()[-1]
    assert rec["View"] == "public" and rec["QueryName"] == "www.example.com" and rec["QueryType"] == "A"
    assert rec["ResponseCode"] == "NOERROR" and rec["Answers"] == ["A 127.0.10.1", "A 127.0.10.2"]
    assert rec["Transport"] == "udp" and rec["SourceIP"] == "127.0.0.1" and rec["SourcePort"] > 0
    assert isinstance(rec["Timestamp"], int) and rec["DurationUs"] >= 0


async def test_internal_view_from_the_cdn_egress(env: ResolverEnv) -> None:
    assert await dig_short("-b", CDN_EGRESS, "www.example.com") == ["127.0.30.1"]
    rec = env.records()[-1]
    assert rec["View"] == "internal" and rec["SourceIP"] == CDN_EGRESS
    assert await dig_short("-b", "127.0.20.254", "www.example.com") == ["127.0.30.1"]


async def test_spectrum_hostname_in_both_views(env: ResolverEnv) -> None:
    (ip,) = env.store.current.spectrum_hosts["spectrum.example.com"]
    assert await dig_short("spectrum.example.com") == [str(ip)]
    assert await dig_short("-b", CDN_EGRESS, "spectrum.example.com") == [str(ip)]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("origin.example.com", "A"), ["127.0.30.1"]),
        (("v6.example.com", "AAAA"), ["2001:db8::1"]),
        (("alias.example.com", "A"), ["127.0.30.1", "origin.example.com."]),
        (("alias.example.com", "CNAME"), ["origin.example.com."]),
        (("example.com", "TXT"), ['"v=spf1 -all"']),
        (("example.com", "MX"), ["10 mail.example.com."]),
        (("_sip._tcp.example.com", "SRV"), ["10 5 5060 sip.example.com."]),
        (("example.com", "CAA"), ['0 issue "letsencrypt.org"']),
        (("example.com", "NS"), ["ns1.example.com.", "ns2.example.com."]),
        (("ns1.example.com", "A"), ["127.0.0.2"]),
        (("anything.wild.example.com", "A"), ["192.0.2.50"]),
    ],
)
async def test_record_types(env: ResolverEnv, args: tuple[str, str], expected: list[str]) -> None:
    assert await dig_short(*args) == expected


async def test_soa_serial_is_the_generation(env: ResolverEnv) -> None:
    (soa,) = await dig_short("example.com", "SOA")
    assert soa == f"ns1.example.com. dns.example.com. {env.store.current.generation} 10000 2400 604800 300"


async def test_authoritative_flag(env: ResolverEnv) -> None:
    out = await dig("www.example.com")
    assert "flags: qr aa rd;" in out


async def test_nxdomain_with_soa(env: ResolverEnv) -> None:
    out = await dig("nope.example.com")
    assert "status: NXDOMAIN" in out
    assert "AUTHORITY SECTION:\nexample.com.\t\t300\tIN\tSOA\tns1.example.com. dns.example.com." in out
    assert env.records()[-1]["ResponseCode"] == "NXDOMAIN"


async def test_nodata_with_soa(env: ResolverEnv) -> None:
    out = await dig("origin.example.com", "AAAA")
    assert "status: NOERROR" in out and "ANSWER: 0, AUTHORITY: 1" in out


async def test_refused_outside_the_zones(env: ResolverEnv) -> None:
    out = await dig("example.org")
    assert "status: REFUSED" in out
    assert env.records()[-1]["ResponseCode"] == "REFUSED"


async def test_formerr_for_garbage_with_a_header(env: ResolverEnv) -> None:
    garbage = b"\xbe\xef\x01\x00\x00\x07\xff\xff" + b"\x13" * 12  # QR clear, 7 questions, junk
    out = await udp_exchange(garbage)
    assert out is not None
    assert out[:2] == b"\xbe\xef" and out[3] & 0x0F == 1 and out[2] & 0x80
    assert env.records()[-1]["ResponseCode"] == "FORMERR"


async def test_short_garbage_is_dropped(env: ResolverEnv) -> None:
    before = len(env.records())
    assert await udp_exchange(b"\x01\x02\x03", timeout=0.3) is None
    # The resolver is still answering, and recorded nothing for the dropped datagram.
    assert await udp_exchange(dns_query("www.example.com")) is not None
    assert len(env.records()) == before + 1


async def test_edns_echo(env: ResolverEnv) -> None:
    out = await dig("+bufsize=4096", "origin.example.com")
    assert "EDNS: version: 0, flags:; udp: 1232" in out
    do = await dig("+dnssec", "origin.example.com")
    assert "EDNS: version: 0, flags: do; udp: 1232" in do


async def test_udp_truncation_then_tcp(env: ResolverEnv) -> None:
    out = await dig("+ignore", "+noedns", "many.example.com")
    flags = out.split(";; flags:")[1].split(";")[0].split()
    assert "tc" in flags and "ANSWER: 0" in out
    full = await dig_short("+noedns", "many.example.com")  # dig retries over TCP on TC
    assert len(full) == 40
    assert env.records()[-1]["Transport"] == "tcp"


async def test_tcp_two_queries_on_one_connection_with_dig(env: ResolverEnv) -> None:
    out = await dig("+tcp", "+keepopen", "www.example.com", "origin.example.com")
    assert out.count("status: NOERROR") == 2
    tcp = [r for r in env.records() if r["Transport"] == "tcp"]
    assert [r["QueryName"] for r in tcp] == ["www.example.com", "origin.example.com"]
    assert tcp[0]["SourcePort"] == tcp[1]["SourcePort"]


async def test_tcp_pipelined_queries_raw(env: ResolverEnv) -> None:
    reader, writer = await asyncio.open_connection(SERVER, PORT)
    try:
        writer.write(
            encode_frame(dns_query("www.example.com", ident=1)) + encode_frame(dns_query("example.com", 16, ident=2))
        )
        framer = TcpFramer()
        got: list[bytes] = []
        async with asyncio.timeout(5):
            while len(got) < 2:
                got += framer.feed(await reader.read(4096))
        assert [struct.unpack_from("!H", m)[0] for m in got] == [1, 2]
        assert str(dnslib.DNSRecord.parse(got[1]).rr[0].rdata) == '"v=spf1 -all"'
    finally:
        writer.close()
        await writer.wait_closed()


async def test_tcp_idle_timeout(tmp_path: Path) -> None:
    async with open_resolver(tmp_path, resolver_config(dns_tcp_idle_timeout=0.2)):
        reader, writer = await asyncio.open_connection(SERVER, PORT)
        try:
            async with asyncio.timeout(5):
                assert await reader.read(10) == b""  # closed by the server when idle
        finally:
            writer.close()


async def test_tcp_connections_are_registered_and_shut_down(env: ResolverEnv) -> None:
    reader, writer = await asyncio.open_connection(SERVER, PORT)
    try:
        writer.write(encode_frame(dns_query("www.example.com")))
        (length,) = struct.unpack("!H", await reader.readexactly(2))
        assert dnslib.DNSRecord.parse(await reader.readexactly(length)).header.a == 2
        assert len(env.ctx.connections) == 1
        env.ctx.connections.shutdown_all()
        async with asyncio.timeout(5):
            assert await reader.read(10) == b""
            await env.ctx.connections.wait_empty(5)
        assert len(env.ctx.connections) == 0
    finally:
        writer.close()


async def test_store_change_is_visible_on_the_next_query(env: ResolverEnv) -> None:
    assert await dig_short("www.example.com") == ["127.0.10.1", "127.0.10.2"]
    data = resolver_config()
    for r in data["zones"][0]["dns_records"]:
        if r["name"] == "www.example.com":
            r.update(proxied=False, content="127.0.30.9", ttl=60)
    env.apply(data)
    assert await dig_short("www.example.com") == ["127.0.30.9"]
    (soa,) = await dig_short("example.com", "SOA")
    assert soa.split()[2] == str(env.store.current.generation)


async def test_case_is_echoed(env: ResolverEnv) -> None:
    out = await udp_exchange(dns_query("WwW.ExAmPlE.CoM"))
    assert out is not None
    msg = dnslib.DNSRecord.parse(out)
    assert str(msg.q.qname) == "WwW.ExAmPlE.CoM." and len(msg.rr) == 2
    assert env.records()[-1]["QueryName"] == "WwW.ExAmPlE.CoM"


async def test_asyncio_udp_endpoint_fallback(tmp_path: Path) -> None:
    """Without recvmmsg (or with `resolver.asyncio_udp` set) UDP is an asyncio datagram endpoint."""
    data = resolver_config()
    data["network"]["resolver_port"] = 5354
    store = Store(tmp_path, port_offset=0)
    store.open_config(build_config(data), source="test")
    ctx = RoleContext(
        store=store,
        events=EventSink(log_records=False),
        binds=Binds(),
        connections=Connections(),
        state_dir=tmp_path,
        roles=("resolver",),
        extras={"resolver.asyncio_udp": True},
    )
    task = asyncio.create_task(serve_resolver(ctx))
    try:
        async with asyncio.timeout(10):
            while "resolver" not in ctx.binds.ready_roles:
                ctx.binds.changed.clear()
                await ctx.binds.changed.wait()
        out = await dig("+short", "-b", CDN_EGRESS, "www.example.com", port=5354)
        assert out.split() == ["127.0.30.1"]
        assert ctx.events.records("dns_queries")[-1]["View"] == "internal"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        ctx.binds.close_all()
        store.close()
