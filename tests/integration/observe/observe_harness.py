"""Shared set-up for the observability integration tests: an in-process edge on a free
127.B.0.0/16 block, synthetic records for the seed's flows, a throw-away CA, a DOM reader."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import importlib.util
import ipaddress
import ssl
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edge.config import default_config_text, parse_yaml
from edge.events import EventSink, Trace
from edge.harness import EdgeHandle, coerce_config, open_edge, open_store, wait_ready
from edge.pytest_plugin import free_block, relocate
from edge.runtime import ROLES, Binds, Connections, RoleContext, serve_roles
from edge.store import privileged_ports_available

SPECTRUM_HOST = "spectrum.example.com"
RAY_MISDIRECTED = "8f00c0ffee000001"
RAY_BLOCKED = "8f00c0ffee000002"
RAY_VIA_SPECTRUM = "8f00c0ffee000003"
RAY_WWW = "8f00c0ffee000004"


def available(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


FULL_EDGE = all(available(m) for m in ("certs.files", "cdn.server", "resolver.server", "spectrum.server"))


@contextlib.asynccontextmanager
async def start_edge(state_dir: Path, roles: Sequence[str] = ("api",)) -> AsyncIterator[EdgeHandle]:
    """`open_edge` on a free address block. Until the `certs` package exists, the same steps
    without the CA (the api role does not need it)."""
    data = relocate(parse_yaml(default_config_text()), free_block())
    offset = None if privileged_ports_available() else 10000
    if available("certs.files"):
        async with open_edge(data, state_dir=state_dir, roles=roles, port_offset=offset) as handle:
            await roles_ready(handle.ctx, roles)
            yield handle
        return

    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    store = open_store(state_dir, coerce_config(data), port_offset=offset)
    events = EventSink(log_records=False)
    ctx = RoleContext(store=store, events=events, binds=Binds(), connections=Connections(),
                      state_dir=state_dir, roles=tuple(roles))
    stop, force = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(serve_roles(ctx, stop=stop, force=force))
    try:
        await wait_ready(ctx, task, 20.0)
        await roles_ready(ctx, roles)
        yield EdgeHandle(ctx, stop, force, task)
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await task
        events.close()
        store.close()


async def roles_ready(ctx: RoleContext, roles: Sequence[str], timeout: float = 20.0) -> None:
    """Wait (on the bind registry's change event) until every buildable role reported ready.

    `wait_ready` alone can return before `serve_roles` has registered the expected roles (it sees
    an empty expectation as met), so the tests also wait for the roles by name."""
    wanted = {r for r in roles if available(ROLES[r].partition(":")[0])}
    async with asyncio.timeout(timeout):
        while not wanted <= ctx.binds.ready_roles:
            failed = [b.as_json() for b in ctx.binds.all() if b.status == "failed"]
            if failed:
                raise AssertionError(f"binds failed: {failed}")
            ctx.binds.changed.clear()
            await ctx.binds.changed.wait()


def admin_base(handle: EdgeHandle) -> str:
    api = handle.snapshot.config.api
    return f"http://{api.address}:{handle.snapshot.listen_port(api.port)}"


def spectrum_ip(handle: EdgeHandle) -> str:
    return str(handle.snapshot.spectrum_hosts[SPECTRUM_HOST][0])


def cdn_ip(handle: EdgeHandle) -> str:
    return str(handle.snapshot.config.network.cdn_ips[0])


def spectrum_app_id(handle: EdgeHandle) -> str:
    for zone in handle.snapshot.config.zones:
        for app in zone.spectrum_apps:
            if app.dns.name == SPECTRUM_HOST:
                return app.id or ""
    raise AssertionError("the default config has no spectrum.example.com app")


def seed_trace(handle: EdgeHandle, ray: str, steps: Sequence[tuple[str, str, dict[str, Any]]]) -> Trace:
    trace = Trace(ray)
    for stage, decision, detail in steps:
        trace.add(stage, decision, **detail)
    handle.events.put_trace(trace)
    return trace


def misdirected_steps(handle: EdgeHandle) -> list[tuple[str, str, dict[str, Any]]]:
    sip, app = spectrum_ip(handle), spectrum_app_id(handle)
    return [
        ("sni", "zone example.com", {"sni": SPECTRUM_HOST, "zone": "example.com"}),
        ("host", "same zone", {"host": SPECTRUM_HOST}),
        ("waf", "no rule matched", {"evaluated": 1}),
        ("dns", sip, {"view": "internal", "qname": SPECTRUM_HOST, "answer": [sip]}),
        ("upstream", f"{sip}:443", {"kind": "spectrum", "loop_guard": "allowed: Spectrum IP"}),
        ("spectrum", f"app {app}", {"app": app, "client": "cdn egress"}),
        ("origin", "200", {"status": 200}),
    ]


def emit_seed_traffic(handle: EdgeHandle) -> None:
    """Records (and traces) of the seed's flows, as the CDN, Spectrum and resolver log them."""
    ev, cip, sip, app = handle.events, cdn_ip(handle), spectrum_ip(handle), spectrum_app_id(handle)
    egress = str(handle.snapshot.config.network.cdn_egress_ip)
    t0 = 1_700_000_000_000_000_000

    def http(ray: str, host: str, edge_ip: str, status: int, **more: Any) -> dict[str, Any]:
        return {"RayID": ray, "ZoneName": "example.com", "ClientIP": "127.0.0.1", "ClientRequestHost": host,
                "ClientRequestMethod": "GET", "ClientRequestURI": "/", "EdgeResponseStatus": status,
                "EdgeListenIP": edge_ip, "EdgeListenPort": 443, "EdgeStartTimestamp": t0,
                "EdgeEndTimestamp": t0 + 3_000_000, "OriginIP": sip if host == SPECTRUM_HOST else "127.0.30.1",
                "OriginResponseStatus": status, "SecurityAction": "", "SecurityRuleID": "",
                "OriginResponseDurationMs": 2, **more}

    # Flow C: the misdirected request (CDN IP, Spectrum hostname), forwarded into Spectrum.
    ev.emit("dns_queries", {"QueryName": SPECTRUM_HOST, "QueryType": "A", "View": "internal",
                            "ResponseCode": "NOERROR", "SourceIP": egress})
    ev.emit("spectrum_events", {"Event": "connect", "Application": app, "ClientIP": egress, "ClientPort": 41000,
                                "ConnectTimestamp": t0, "Status": 0})
    ev.emit("spectrum_events", {"Event": "disconnect", "Application": app, "ClientIP": egress, "ClientPort": 41000,
                                "ClientBytes": 310, "OriginBytes": 1200, "OriginIP": "127.0.30.1",
                                "OriginPort": 443, "Status": 200, "ConnectTimestamp": t0,
                                "DisconnectTimestamp": t0 + 40_000_000})
    ev.emit("http_requests", http(RAY_MISDIRECTED, SPECTRUM_HOST, cip, 200))
    seed_trace(handle, RAY_MISDIRECTED, misdirected_steps(handle))
    # Flow D: the same request once the recommended WAF rule is on.
    ev.emit("firewall_events", {"Action": "block", "RuleID": "a" * 32, "Description": "L4-only Spectrum host via CDN",
                                "ClientRequestHost": SPECTRUM_HOST, "RayID": RAY_BLOCKED, "Source": "firewallcustom"})
    ev.emit("http_requests", http(RAY_BLOCKED, SPECTRUM_HOST, cip, 403, SecurityAction="block",
                                  SecurityRuleID="a" * 32, OriginResponseStatus=0, OriginIP=""))
    seed_trace(handle, RAY_BLOCKED, [("sni", "zone example.com", {}), ("waf", "block", {"rule": "a" * 32})])
    # Flow B: the same name arriving on its Spectrum IP (an HTTP app's second pass).
    ev.emit("http_requests", http(RAY_VIA_SPECTRUM, SPECTRUM_HOST, sip, 200))
    # An ordinary proxied name.
    ev.emit("dns_queries", {"QueryName": "www.example.com", "QueryType": "A", "View": "public",
                            "ResponseCode": "NOERROR", "SourceIP": "127.0.0.1"})
    ev.emit("http_requests", http(RAY_WWW, "www.example.com", cip, 200))
    seed_trace(handle, RAY_WWW, [("sni", "zone example.com", {}), ("origin", "200", {"status": 200})])


# --------------------------------------------------------------------------- a throw-away CA


@dataclass
class TestCA:
    cert_pem: bytes
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    def write(self, path: Path) -> Path:
        path.write_bytes(self.cert_pem)
        return path

    def server_context(self, names: Sequence[str], directory: Path) -> ssl.SSLContext:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        sans: list[x509.GeneralName] = []
        for n in names:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(n)))
            except ValueError:
                sans.append(x509.DNSName(n))
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
                .issuer_name(self.cert.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName(sans), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .sign(self.key, hashes.SHA256()))
        cert_path, key_path = directory / "leaf.pem", directory / "leaf.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cert_path, key_path)
        return ctx


def make_ca(name: str = "observe test CA") -> TestCA:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return TestCA(cert.public_bytes(serialization.Encoding.PEM), key, cert)


# --------------------------------------------------------------------------- reading a dumped DOM

VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
                  "track", "wbr"})


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node | str] = field(default_factory=list)

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def walk(self) -> list[Node]:
        out = [self]
        for c in self.children:
            if isinstance(c, Node):
                out.extend(c.walk())
        return out

    def find_all(self, pred: Callable[[Node], bool]) -> list[Node]:
        return [n for n in self.walk() if pred(n)]

    def by_attr(self, name: str, value: str | None = None) -> list[Node]:
        return self.find_all(lambda n: name in n.attrs and (value is None or n.attrs[name] == value))

    def by_id(self, ident: str) -> Node:
        found = self.by_attr("id", ident)
        if len(found) != 1:
            raise AssertionError(f"expected one element #{ident}, found {len(found)}")
        return found[0]


class _DomBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Node(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse_dom(html: str) -> Node:
    builder = _DomBuilder()
    builder.feed(html)
    builder.close()
    return builder.root
