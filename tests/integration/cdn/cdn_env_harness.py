"""A CDN role on real sockets, with stand-ins for the packages it meets (CA, stub resolver, origins).

The stand-ins follow the contracts of `certs.files.EdgeCertificates`, `resolver.stub.StubResolver`
and the demo origins, and are injected through `ctx.extras` (see `cdn.server.serve_cdn`), so these
tests run whether or not those packages are installed. Addresses: the default plan moved to a free
127.B.0.0/16 block, port offset 0 (the tests run as root).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import ipaddress
import json
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h11
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cdn.server import serve_cdn
from edge.config import build_config, default_config_text, parse_yaml
from edge.events import EventSink
from edge.pytest_plugin import free_block, relocate
from edge.runtime import Binds, Connections, RoleContext
from edge.store import Store

# ----------------------------------------------------------------------------- certificates


class TestCA:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "edge test CA")])
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.path = directory / "ca.pem"
        self.path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, label: str, names: list[str], *, self_signed: bool = False) -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
        sans: list[x509.GeneralName] = []
        for n in names:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(n)))
            except ValueError:
                sans.append(x509.DNSName(n))
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject if self_signed else self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        )
        cert = builder.sign(key if self_signed else self.key, hashes.SHA256())
        cert_path, key_path = self.dir / f"{label}.pem", self.dir / f"{label}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        return cert_path, key_path

    def server_context(self, label: str, names: list[str], *, self_signed: bool = False) -> ssl.SSLContext:
        cert, key = self.issue(label, names, self_signed=self_signed)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        return context

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.path))
        return context


class StandInEdgeCertificates:
    """`certs.files.EdgeCertificates` contract: apex + one-label wildcard (+ extras)."""

    def __init__(self, ca: TestCA) -> None:
        self.ca = ca
        self.issued: list[str] = []

    def ssl_context_for_zone(self, zone_name: str, extra_hosts: tuple[str, ...] = ()) -> ssl.SSLContext:
        self.issued.append(zone_name)
        return self.ca.server_context(f"edge-{zone_name}", [zone_name, f"*.{zone_name}", *extra_hosts])


# ----------------------------------------------------------------------------- resolver


class NoSuchName(Exception):
    pass


class NoData(Exception):
    pass


@dataclass
class Resolution:
    addresses: tuple[Any, ...]
    ttl: int = 300
    view: str = "internal"
    cname_chain: tuple[str, ...] = ()
    elapsed_ms: float = 0.0
    from_cache: bool = False


class StandInResolver:
    """`resolver.stub.StubResolver` contract, internal view, answered from the snapshot."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.queries: list[str] = []

    async def resolve(self, name: str, rdtype: str = "A") -> Resolution:
        self.queries.append(name)
        snap = self.store.current
        if name in snap.spectrum_hosts:
            return Resolution(tuple(ip for ip in snap.spectrum_hosts[name] if ip.version == 4))
        found = False
        for zone in snap.config.zones:
            for rec in zone.dns_records:
                if rec.name == name:
                    found = True
                    if rec.type == rdtype:
                        return Resolution((ipaddress.ip_address(rec.content),))
        if found:
            raise NoData(name)
        raise NoSuchName(name)

    async def aclose(self) -> None:
        return None


# ----------------------------------------------------------------------------- origins


@dataclass
class OriginLog:
    peers: list[tuple[str, int]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)


async def _origin_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, log: OriginLog) -> None:
    conn = h11.Connection(h11.SERVER)
    peer = writer.get_extra_info("peername")
    if len(log.peers) < 1000:
        log.peers.append((peer[0], peer[1]))
    sslobj = writer.get_extra_info("ssl_object")
    try:
        while True:
            request: h11.Request | None = None
            body = b""
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await reader.read(65536)
                    conn.receive_data(data)
                    continue
                if isinstance(event, h11.Request):
                    request = event
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)) or event is h11.PAUSED:
                    break
            if request is None:
                return
            report = {
                "peer": peer[0],
                "method": request.method.decode(),
                "target": request.target.decode(),
                "headers": [[n.decode(), v.decode()] for n, v in request.headers.raw_items()],
                "body_len": len(body),
                "body_sha256": hashlib.sha256(body).hexdigest(),
                "tls": bool(sslobj),
            }
            if len(log.requests) < 1000:
                log.requests.append(report)
            if request.target == b"/stall":
                await asyncio.Event().wait()
            if conn.their_state is h11.MIGHT_SWITCH_PROTOCOL:
                writer.write(
                    conn.send(
                        h11.InformationalResponse(
                            status_code=101, headers=[("Connection", "Upgrade"), ("Upgrade", "websocket")]
                        )
                    )
                )
                rest = conn.trailing_data[0]
                if rest:
                    writer.write(rest)
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
                return
            if request.target.startswith(b"/bytes/"):
                payload = b"x" * int(request.target[7:])
            else:
                payload = json.dumps(report).encode()
            writer.write(
                conn.send(
                    h11.Response(
                        status_code=200,
                        headers=[("Content-Type", "application/json"), ("Content-Length", str(len(payload))),
                                 ("Server", "stand-in"), ("X-Origin", "yes")],
                    )
                )
            )
            writer.write(conn.send(h11.Data(data=payload)))
            writer.write(conn.send(h11.EndOfMessage()))
            await writer.drain()
            if conn.our_state is h11.MUST_CLOSE:
                return
            conn.start_next_cycle()
    except (ConnectionError, h11.ProtocolError, ssl.SSLError):
        return
    finally:
        writer.close()


# ----------------------------------------------------------------------------- the environment


@dataclass
class CdnEnv:
    block: int
    store: Store
    events: EventSink
    ctx: RoleContext
    ca: TestCA
    resolver: StandInResolver
    origin_log: OriginLog
    spectrum_log: OriginLog
    servers: list[asyncio.AbstractServer]

    def ip(self, third: int, fourth: int) -> str:
        return f"127.{self.block}.{third}.{fourth}"

    @property
    def cdn_ip(self) -> str:
        return self.ip(10, 1)

    @property
    def egress_ip(self) -> str:
        return self.ip(10, 254)

    def records(self, dataset: str) -> list[dict[str, Any]]:
        return self.events.records(dataset)

    async def curl(self, host: str, path: str = "/", *args: str, port: int = 443, scheme: str = "https",
                   ip: str | None = None) -> tuple[int, dict[str, str], bytes]:
        """Run real curl; returns (status, lower-cased headers of the final response, body)."""
        address = ip or self.cdn_ip
        cmd = [
            "curl", "-sS", "--max-time", "20", "-D", "-", "--resolve", f"{host}:{port}:{address}",
            "--cacert", str(self.ca.path), *args, f"{scheme}://{host}:{port}{path}",
        ]
        proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        assert proc.returncode == 0, (cmd, err.decode())
        return parse_curl(out)


def parse_curl(out: bytes) -> tuple[int, dict[str, str], bytes]:
    status, headers, rest = 0, {}, out
    while rest.startswith(b"HTTP/"):
        head, _, rest = rest.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.decode("latin-1").partition(":")
            headers[k.strip().lower()] = v.strip()
    return status, headers, rest


ZONE_EXTRAS = """
  - name: strict.test
    settings: {ssl: strict}
    dns_records:
      - {name: good.strict.test, type: A, content: 127.0.30.1, proxied: true}
      - {name: selfsigned.strict.test, type: A, content: 127.0.30.6, proxied: true}
      - {name: wrongname.strict.test, type: A, content: 127.0.30.7, proxied: true}
  - name: flex.test
    settings: {ssl: flexible}
    dns_records:
      - {name: www.flex.test, type: A, content: 127.0.30.1, proxied: true}
  - name: off.test
    settings: {ssl: "off"}
    dns_records:
      - {name: www.off.test, type: A, content: 127.0.30.1, proxied: true}
  - name: example.org
    dns_records:
      - {name: www.example.org, type: A, content: 127.0.30.1, proxied: true}
"""

EXAMPLE_RECORDS = [
    {"name": "loop.example.com", "type": "A", "content": "127.0.10.2", "proxied": True},
    {"name": "refused.example.com", "type": "A", "content": "127.0.30.9", "proxied": True},
    {"name": "notls.example.com", "type": "A", "content": "127.0.30.5", "proxied": True},
    {"name": "blackhole.example.com", "type": "A", "content": "127.0.30.8", "proxied": True},
    {"name": "txtonly.example.com", "type": "TXT", "content": "hello", "ttl": 300},
]


def build_env_config(block: int, tweak: Callable[[dict[str, Any]], None] | None = None) -> Any:
    data = parse_yaml(default_config_text())
    data["zones"] += parse_yaml("zones:" + ZONE_EXTRAS)["zones"]
    data["zones"][0]["dns_records"] += EXAMPLE_RECORDS
    data["network"]["port_offset"] = 0
    data["origins"]["enabled"] = False
    data["limits"] = {"origin_connect_timeout": 1.0, "origin_read_timeout": 1.5, "header_timeout": 1.0,
                      "keepalive_timeout": 5.0, "max_header_bytes": 8192, "max_header_count": 50}
    if tweak is not None:
        tweak(data)
    return build_config(relocate(data, block))


@contextlib.asynccontextmanager
async def open_cdn_env(tmp_path: Path, tweak: Callable[[dict[str, Any]], None] | None = None) -> AsyncIterator[CdnEnv]:
    block = free_block(150)
    config = build_env_config(block, tweak)
    store = Store(tmp_path / "state", port_offset=0)
    store.open_config(config)
    events = EventSink(log_records=False)
    ca = TestCA(tmp_path)
    resolver = StandInResolver(store)
    ctx = RoleContext(store=store, events=events, binds=Binds(), connections=Connections(),
                      state_dir=tmp_path / "state", roles=("cdn",))
    ctx.extras.update({
        "cdn.certificates": StandInEdgeCertificates(ca),
        "cdn.verify_context": ca.client_context,
        "cdn.resolver": resolver,
    })
    origin_log, spectrum_log = OriginLog(), OriginLog()
    servers: list[asyncio.AbstractServer] = []
    o = f"127.{block}.30"
    origin_tls = ca.server_context("origin", ["good.strict.test", "www.example.com", "*.example.com", "localhost"])
    spectrum_ip = str(store.current.spectrum_hosts["spectrum.example.com"][0])
    plans: list[tuple[str, int, ssl.SSLContext | None, OriginLog]] = [
        (f"{o}.1", 80, None, origin_log),
        (f"{o}.1", 443, origin_tls, origin_log),
        (f"{o}.5", 443, None, origin_log),  # plain HTTP where TLS is expected: 525
        (f"{o}.6", 443, ca.server_context("self", ["selfsigned.strict.test"], self_signed=True), origin_log),
        (f"{o}.7", 443, ca.server_context("wrong", ["someone-else.test"]), origin_log),
        (spectrum_ip, 443, ca.server_context("spectrum", ["spectrum.example.com"]), spectrum_log),
    ]
    for host, port, tls, log in plans:
        servers.append(await asyncio.start_server(
            lambda r, w, log=log: _origin_connection(r, w, log), host, port, ssl=tls, reuse_address=True))
    ctx.binds.expected_roles = {"cdn"}
    task = asyncio.create_task(serve_cdn(ctx))
    try:
        async with asyncio.timeout(10):
            while "cdn" not in ctx.binds.ready_roles:
                if task.done():
                    task.result()
                ctx.binds.changed.clear()
                await ctx.binds.changed.wait()
        failed = [b for b in ctx.binds.all() if b.status != "bound"]
        assert not failed, failed
        yield CdnEnv(block, store, events, ctx, ca, resolver, origin_log, spectrum_log, servers)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        ctx.connections.abort_all()
        for s in servers:
            s.close()
        store.close()
