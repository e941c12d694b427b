"""The declarative config: the edge's addresses and the zones, in Cloudflare's API v4 shapes.

Objects inside a zone (`dns_records`, `spectrum_apps`, `rulesets`, `access_rules`) use the field
names and values of Cloudflare's API, so an API export pastes in, and the admin API validates
with these same models. Read-only fields that exports carry (`id`, `created_on`, `meta`, ...)
are accepted; anything else is an error that names the field.

Contract: `load_config(text)` returns a fully validated, normalised `EdgeConfig` (every object
has its id, every name is a lower-case FQDN) or raises `ConfigError` listing every problem at
once, each with its path and, where Cloudflare has one, its error code.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _parse_ip(value: Any) -> IPAddress:
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected an IP address string, got {type(value).__name__}")
    try:
        return ipaddress.ip_address(value.strip())
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 or IPv6 address") from None


def _parse_network(value: Any) -> IPNetwork:
    if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected a CIDR string, got {type(value).__name__}")
    try:
        return ipaddress.ip_network(value.strip(), strict=True)
    except ValueError as e:
        raise ValueError(f"{value!r} is not a CIDR: {e}") from None


IP = Annotated[IPAddress, PlainValidator(_parse_ip), PlainSerializer(str, return_type=str)]
CIDR = Annotated[IPNetwork, PlainValidator(_parse_network), PlainSerializer(str, return_type=str)]

# Cloudflare's proxied ports (reference fact 23).
CF_HTTP_PORTS: tuple[int, ...] = (80, 8080, 8880, 2052, 2082, 2086, 2095)
CF_HTTPS_PORTS: tuple[int, ...] = (443, 2053, 2083, 2087, 2096, 8443)

PROXIABLE_TYPES = frozenset({"A", "AAAA", "CNAME"})
RECORD_TYPES = frozenset(
    {
        "A",
        "AAAA",
        "CAA",
        "CERT",
        "CNAME",
        "DNSKEY",
        "DS",
        "HTTPS",
        "LOC",
        "MX",
        "NAPTR",
        "NS",
        "OPENPGPKEY",
        "PTR",
        "SMIMEA",
        "SRV",
        "SSHFP",
        "SVCB",
        "TLSA",
        "TXT",
        "URI",
        "SOA",
    }
)
_HOSTNAME_RE = re.compile(r"^(\*\.)?([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z0-9_]([a-z0-9-]{0,61}[a-z0-9])?$")


class ConfigError(Exception):
    """A config (file or API body) was rejected; `problems` lists every one, each with its path."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass(frozen=True, slots=True)
class Problem:
    path: str
    message: str
    code: int | None = None

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        code = f" ({self.code})" if self.code is not None else ""
        return f"{where}{self.message}{code}"


def _cf_error(code: int, message: str) -> PydanticCustomError:
    # The code rides in the context so the formatter can print it after the message.
    return PydanticCustomError("cloudflare", message, {"cf_code": code})


def stable_id(*parts: str) -> str:
    """A 32-hex id derived from the object's identity, so file objects keep their id across reloads."""
    return hashlib.md5("|".join(parts).encode(), usedforsecurity=False).hexdigest()


def is_hostname(name: str) -> bool:
    return len(name) <= 253 and bool(_HOSTNAME_RE.match(name))


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)


class _CfModel(_Model):
    """A Cloudflare API object: accepts the read-only fields an export carries."""

    id: str | None = Field(default=None, pattern=r"^[0-9a-f]{32}$")
    created_on: str | None = None
    modified_on: str | None = None


# --------------------------------------------------------------------------- top-level sections


class ApiConfig(_Model):
    address: IP = ipaddress.IPv4Address("127.0.0.1")
    port: int = Field(default=8900, ge=1, le=65535)
    token: str = Field(default="edge-local-token", min_length=1)
    email: str = "user@example.com"
    key: str = "edge-local-key"


class NetworkConfig(_Model):
    resolver: IP = ipaddress.IPv4Address("127.0.0.2")
    resolver_port: int = Field(default=53, ge=1, le=65535)
    cdn_ips: tuple[IP, ...] = (ipaddress.IPv4Address("127.0.10.1"), ipaddress.IPv4Address("127.0.10.2"))
    cdn_http_ports: tuple[int, ...] = CF_HTTP_PORTS
    cdn_https_ports: tuple[int, ...] = CF_HTTPS_PORTS
    cdn_egress_ip: IP = ipaddress.IPv4Address("127.0.10.254")
    spectrum_ips: CIDR = ipaddress.IPv4Network("127.0.20.0/24")
    spectrum_egress_ip: IP = ipaddress.IPv4Address("127.0.20.254")
    # Added to every listener port and every connection to one of the emulator's own addresses,
    # so the whole plan runs unprivileged ("auto": 10000 when ports < 1024 can't be bound).
    port_offset: int | Literal["auto"] = "auto"
    colo: str = Field(default="LHR", pattern=r"^[A-Z]{3}$")

    @field_validator("cdn_http_ports", "cdn_https_ports")
    @classmethod
    def _ports(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        for p in v:
            if not 1 <= p <= 65535:
                raise ValueError(f"port {p} out of range 1-65535")
        if len(set(v)) != len(v):
            raise ValueError("duplicate port")
        return v

    @field_validator("port_offset")
    @classmethod
    def _offset(cls, v: int | str) -> int | str:
        if isinstance(v, int) and not 0 <= v <= 50000:
            raise ValueError("port_offset must be between 0 and 50000, or 'auto'")
        return v


class OriginAddress(_Model):
    address: IP
    port: int = Field(ge=1, le=65535)


class OriginsConfig(_Model):
    enabled: bool = True
    http_echo: OriginAddress = OriginAddress(address=ipaddress.IPv4Address("127.0.30.1"), port=80)
    https_echo: OriginAddress = OriginAddress(address=ipaddress.IPv4Address("127.0.30.1"), port=443)
    tcp_echo: OriginAddress = OriginAddress(address=ipaddress.IPv4Address("127.0.30.2"), port=22)
    udp_echo: OriginAddress = OriginAddress(address=ipaddress.IPv4Address("127.0.30.3"), port=53)


class LimitsConfig(_Model):
    max_header_bytes: int = Field(default=32 * 1024, ge=1024, le=1024 * 1024)
    max_header_count: int = Field(default=100, ge=1, le=10_000)
    # Cloudflare's upload limit on the Free and Pro plans: a larger request body gets 413.
    max_request_body_bytes: int = Field(default=100 * 1024 * 1024, ge=1024, le=1 << 40)
    header_timeout: float = Field(default=10.0, gt=0, le=600)
    keepalive_timeout: float = Field(default=75.0, gt=0, le=3600)
    origin_connect_timeout: float = Field(default=19.0, gt=0, le=600)
    origin_read_timeout: float = Field(default=100.0, gt=0, le=6000)
    spectrum_idle_timeout: float = Field(default=300.0, gt=0, le=86400)
    udp_idle_timeout: float = Field(default=30.0, gt=0, le=3600)
    max_udp_flows: int = Field(default=10_000, ge=1, le=1_000_000)
    max_connections_per_listener: int = Field(default=20_000, ge=1, le=1_000_000)
    cdn_loop_limit: int = Field(default=16, ge=1, le=64)
    shutdown_deadline: float = Field(default=10.0, ge=0, le=600)
    dns_tcp_idle_timeout: float = Field(default=10.0, gt=0, le=600)


class LogsConfig(_Model):
    # Log every event record (http_requests, firewall_events, spectrum_events, dns_queries) as a
    # JSON line on stdout. Costs ~4 µs a record; turn off for benchmarks, the ring, analytics
    # and Logpush files still get every record.
    records: bool = True
    # Also append each record to <state-dir>/logs/<dataset>.ndjson, like Logpush.
    logpush: bool = False


# --------------------------------------------------------------------------- zone objects


class ZoneSettings(_Model):
    ssl: Literal["off", "flexible", "full", "strict"] = "full"
    # Cloudflare's advanced certificates: deeper names the edge certificate also covers.
    advanced_certificate_hosts: tuple[str, ...] = ()
    ip_country: str = Field(default="XX", pattern=r"^[A-Z0-9]{2}$")
    always_use_https: Literal["on", "off"] = "off"


class DnsRecord(_CfModel):
    name: str = Field(min_length=1, max_length=255)
    type: str
    content: str = ""
    proxied: bool = False
    ttl: int = 1
    priority: int | None = Field(default=None, ge=0, le=65535)
    comment: str | None = None
    tags: tuple[str, ...] = ()
    settings: Mapping[str, Any] = Field(default_factory=dict)
    data: Mapping[str, Any] | None = None
    # Read-only fields seen in API exports.
    proxiable: bool | None = None
    meta: Mapping[str, Any] | None = None
    zone_id: str | None = None
    zone_name: str | None = None
    locked: bool | None = None
    comment_modified_on: str | None = None
    tags_modified_on: str | None = None

    @field_validator("type")
    @classmethod
    def _type(cls, v: str) -> str:
        v = v.upper()
        if v not in RECORD_TYPES:
            raise ValueError(f"unsupported record type {v!r}")
        return v

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return v.lower().rstrip(".")

    @field_validator("ttl")
    @classmethod
    def _ttl(cls, v: int) -> int:
        if v != 1 and not 30 <= v <= 86400:
            raise ValueError("ttl must be 1 (automatic) or between 30 and 86400")
        return v

    @model_validator(mode="after")
    def _content(self) -> DnsRecord:
        t, c = self.type, self.content
        if self.proxied and t not in PROXIABLE_TYPES:
            raise _cf_error(9004, f"{t} records cannot be proxied")
        if t == "A":
            try:
                ipaddress.IPv4Address(c)
            except ValueError:
                raise _cf_error(9005, f"content for A record must be an IPv4 address, got {c!r}") from None
        elif t == "AAAA":
            try:
                ipaddress.IPv6Address(c)
            except ValueError:
                raise _cf_error(9006, f"content for AAAA record must be an IPv6 address, got {c!r}") from None
        elif t in ("CNAME", "NS", "PTR"):
            if not is_hostname(c.lower().rstrip(".")):
                raise _cf_error(9007, f"content for {t} record must be a hostname, got {c!r}")
        elif t == "MX":
            if not is_hostname(c.lower().rstrip(".")):
                raise _cf_error(9007, f"content for MX record must be a hostname, got {c!r}")
        elif t == "SRV":
            if not c and not self.data:
                raise ValueError("SRV record needs content 'priority weight port target' or data")
        elif not c and not self.data:
            raise ValueError(f"{t} record needs content")
        return self


class SpectrumDns(_Model):
    type: Literal["CNAME", "ADDRESS"]
    name: str

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        v = v.lower().rstrip(".")
        if not is_hostname(v):
            raise ValueError(f"{v!r} is not a hostname")
        return v


class OriginDns(_Model):
    name: str
    ttl: int = Field(default=600, ge=600)
    type: Literal["", "A", "AAAA", "SRV"] = ""

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        v = v.lower().rstrip(".")
        if not is_hostname(v):
            raise ValueError(f"{v!r} is not a hostname")
        return v


class EdgeIps(_Model):
    type: Literal["dynamic", "static"] = "dynamic"
    connectivity: Literal["all", "ipv4", "ipv6"] | None = None
    ips: tuple[IP, ...] | None = None


@dataclass(frozen=True, slots=True)
class PortRange:
    first: int
    last: int

    def __len__(self) -> int:
        return self.last - self.first + 1

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and self.first <= port <= self.last

    def __str__(self) -> str:
        return str(self.first) if self.first == self.last else f"{self.first}-{self.last}"


def parse_port_range(text: str) -> PortRange:
    """`22` or `1000-2000`; raises ValueError with the reason."""
    m = re.fullmatch(r"(\d{1,5})(?:-(\d{1,5}))?", text)
    if not m:
        raise ValueError(f"{text!r} is not a port or port range")
    first = int(m.group(1))
    last = int(m.group(2)) if m.group(2) else first
    for p in (first, last):
        if not 1 <= p <= 65535:
            raise ValueError(f"port {p} out of range 1-65535")
    if last < first:
        raise ValueError(f"port range {first}-{last} is reversed")
    return PortRange(first, last)


@dataclass(frozen=True, slots=True)
class OriginDirect:
    transport: str
    address: IPAddress
    ports: PortRange


def parse_origin_direct(uri: str) -> OriginDirect:
    m = re.fullmatch(r"(tcp|udp)://(\[[0-9a-fA-F:.]+\]|[0-9.]+):([0-9-]+)", uri)
    if not m:
        raise ValueError(f"{uri!r} is not an origin address like tcp://192.0.2.1:22")
    host = m.group(2).strip("[]")
    address = ipaddress.ip_address(host)
    return OriginDirect(m.group(1), address, parse_port_range(m.group(3)))


class SpectrumApp(_CfModel):
    protocol: str
    dns: SpectrumDns
    traffic_type: Literal["direct", "http", "https"] = "direct"
    origin_direct: tuple[str, ...] | None = None
    origin_dns: OriginDns | None = None
    origin_port: int | str | None = None
    proxy_protocol: Literal["off", "v1", "v2", "simple"] = "off"
    tls: Literal["off", "flexible", "full", "strict"] = "off"
    ip_firewall: bool = False
    argo_smart_routing: bool = False
    edge_ips: EdgeIps = EdgeIps(type="dynamic", connectivity="all")

    @field_validator("proxy_protocol", mode="before")
    @classmethod
    def _legacy_pp(cls, v: Any) -> Any:
        # The BYOIP page's legacy body sends booleans; false means off.
        if v is False:
            return "off"
        if v is True:
            return "v1"
        return v

    @field_validator("protocol")
    @classmethod
    def _protocol(cls, v: str) -> str:
        m = re.fullmatch(r"(tcp|udp)/(.+)", v.lower())
        if not m:
            raise ValueError(f"protocol {v!r} must look like tcp/22, udp/53 or tcp/1000-2000")
        parse_port_range(m.group(2))
        return v.lower()

    @field_validator("origin_direct")
    @classmethod
    def _origins(cls, v: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if v is None:
            return v
        if not v:
            raise _cf_error(11002, "origin_direct needs at least one address")
        for uri in v:
            try:
                parse_origin_direct(uri)
            except ValueError as e:
                raise _cf_error(11002, str(e)) from None
        return v

    @property
    def transport(self) -> str:
        return self.protocol.split("/", 1)[0]

    @property
    def ports(self) -> PortRange:
        return parse_port_range(self.protocol.split("/", 1)[1])

    def origins(self) -> tuple[OriginDirect, ...]:
        return tuple(parse_origin_direct(u) for u in self.origin_direct or ())

    def origin_ports(self) -> PortRange | None:
        if self.origin_port is None:
            return None
        return parse_port_range(str(self.origin_port))

    @model_validator(mode="after")
    def _rules(self) -> SpectrumApp:
        if (self.origin_direct is None) == (self.origin_dns is None):
            raise _cf_error(11000, "exactly one of origin_direct and origin_dns is required; they are exclusive")
        if self.edge_ips.type == "dynamic" and self.dns.type != "CNAME":
            raise _cf_error(11004, "edge_ips type dynamic requires dns type CNAME")
        if self.edge_ips.type == "static":
            if self.dns.type != "ADDRESS":
                raise _cf_error(11004, "edge_ips type static requires dns type ADDRESS")
            if not self.edge_ips.ips:
                raise ValueError("edge_ips type static needs ips")
        if self.origin_port is not None and self.origin_dns is None:
            raise ValueError("origin_port is only allowed with origin_dns")
        if self.origin_dns is not None and self.origin_dns.type != "SRV" and self.origin_port is None:
            raise _cf_error(11001, "origin_dns of a non-SRV type needs origin_port")
        edge = self.ports
        if self.origin_port is not None:
            try:
                op = parse_port_range(str(self.origin_port))
            except ValueError as e:
                raise ValueError(f"origin_port: {e}") from None
            if len(op) != len(edge) and len(op) != 1:
                raise ValueError(
                    f"origin_port range {op} has {len(op)} ports but protocol range {edge} has {len(edge)}"
                )
        for o in self.origins():
            if o.transport != self.transport:
                raise _cf_error(11002, f"origin {o.transport}://... does not match protocol {self.transport}")
            if len(o.ports) != 1 and len(o.ports) != len(edge):
                raise ValueError(
                    f"origin port range {o.ports} has {len(o.ports)} ports but protocol range {edge} has {len(edge)}"
                )
        if self.transport == "udp":
            if self.proxy_protocol == "v1":
                raise ValueError("proxy_protocol v1 is not offered for UDP apps (use v2 or simple)")
            if self.tls != "off":
                raise ValueError("tls is only for TCP apps")
            if self.traffic_type != "direct":
                raise ValueError("traffic_type http/https needs a TCP protocol")
        elif self.proxy_protocol == "simple":
            raise ValueError("proxy_protocol simple (SPP) is only for UDP apps")
        return self


class BlockResponse(_Model):
    status_code: int = Field(ge=400, le=499)
    content: str = Field(max_length=10 * 1024)
    content_type: Literal["text/html", "text/plain", "application/json", "text/xml"] = "text/html"


class RuleLogging(_Model):
    enabled: bool = True


class Rule(_Model):
    id: str | None = Field(default=None, pattern=r"^[0-9a-f]{32}$")
    action: Literal["block", "challenge", "js_challenge", "managed_challenge", "log", "skip"]
    expression: str = Field(min_length=1, max_length=4096)
    description: str = ""
    enabled: bool = True
    ref: str = ""
    action_parameters: Mapping[str, Any] | None = None
    logging: RuleLogging | None = None
    version: str | None = None
    last_updated: str | None = None
    categories: tuple[str, ...] | None = None

    @model_validator(mode="after")
    def _params(self) -> Rule:
        params = self.action_parameters or {}
        if self.action == "block" and "response" in params:
            try:
                BlockResponse.model_validate(params["response"])
            except ValidationError as e:
                first = e.errors()[0]
                loc = ".".join(str(x) for x in first["loc"])
                raise ValueError(f"action_parameters.response.{loc}: {first['msg']}") from None
        if self.action == "skip" and not params:
            raise ValueError("skip needs action_parameters (ruleset, phase, phases, products or rules)")
        return self


class Ruleset(_Model):
    id: str | None = Field(default=None, pattern=r"^[0-9a-f]{32}$")
    name: str = "default"
    description: str = ""
    kind: Literal["zone"] = "zone"
    phase: Literal["http_request_firewall_custom"] = "http_request_firewall_custom"
    version: str = "1"
    last_updated: str | None = None
    rules: tuple[Rule, ...] = ()


class Rulesets(_Model):
    http_request_firewall_custom: Ruleset | None = None


class AccessRuleConfiguration(_Model):
    target: Literal["ip", "ip6", "ip_range", "asn", "country"]
    value: str


class AccessRule(_CfModel):
    mode: Literal["block", "whitelist", "challenge", "js_challenge", "managed_challenge"]
    configuration: AccessRuleConfiguration
    notes: str = ""
    allowed_modes: tuple[str, ...] | None = None
    scope: Mapping[str, Any] | None = None

    @model_validator(mode="after")
    def _value(self) -> AccessRule:
        t, v = self.configuration.target, self.configuration.value
        try:
            if t == "ip":
                ipaddress.IPv4Address(v)
            elif t == "ip6":
                ipaddress.IPv6Address(v)
            elif t == "ip_range":
                ipaddress.ip_network(v, strict=True)
        except ValueError as e:
            raise ValueError(f"configuration.value {v!r} is not a valid {t}: {e}") from None
        return self

    def network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
        t, v = self.configuration.target, self.configuration.value
        if t in ("ip", "ip6", "ip_range"):
            return ipaddress.ip_network(v, strict=False)
        return None


class Zone(_Model):
    id: str | None = Field(default=None, pattern=r"^[0-9a-f]{32}$")
    name: str
    status: Literal["active", "pending", "initializing", "moved"] = "active"
    type: Literal["full", "partial", "secondary", "internal"] = "full"
    paused: bool = False
    created_on: str | None = None
    modified_on: str | None = None
    settings: ZoneSettings = ZoneSettings()
    dns_records: tuple[DnsRecord, ...] = ()
    spectrum_apps: tuple[SpectrumApp, ...] = ()
    rulesets: Rulesets = Rulesets()
    access_rules: tuple[AccessRule, ...] = ()

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        v = v.lower().rstrip(".")
        if not is_hostname(v) or "." not in v or v.startswith("*"):
            raise ValueError(f"zone name {v!r} is not a domain like example.com")
        return v

    @property
    def custom_ruleset(self) -> Ruleset | None:
        return self.rulesets.http_request_firewall_custom


class ListItem(_Model):
    ip: str | None = None
    hostname: Mapping[str, Any] | None = None
    asn: int | None = None
    comment: str = ""
    id: str | None = None
    created_on: str | None = None
    modified_on: str | None = None


class RulesList(_CfModel):
    name: str = Field(pattern=r"^[a-z0-9_]{1,50}$")
    kind: Literal["ip", "hostname", "asn"] = "ip"
    description: str = ""
    items: tuple[ListItem, ...] = ()
    num_items: int | None = None
    num_referencing_filters: int | None = None

    @model_validator(mode="after")
    def _items(self) -> RulesList:
        for i, item in enumerate(self.items):
            if self.kind == "ip":
                if item.ip is None:
                    raise ValueError(f"items[{i}]: an ip list item needs ip")
                try:
                    ipaddress.ip_network(item.ip, strict=False)
                except ValueError as e:
                    raise ValueError(f"items[{i}].ip: {e}") from None
        return self


class EdgeConfig(_Model):
    api: ApiConfig = ApiConfig()
    network: NetworkConfig = NetworkConfig()
    origins: OriginsConfig = OriginsConfig()
    limits: LimitsConfig = LimitsConfig()
    logs: LogsConfig = LogsConfig()
    lists: tuple[RulesList, ...] = ()
    zones: tuple[Zone, ...] = ()


# --------------------------------------------------------------------------- loading and checks


def _format_loc(loc: Iterable[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def problems_from(error: ValidationError, prefix: str = "") -> list[Problem]:
    problems = []
    for e in error.errors(include_url=False):
        # Union members repeat an error once per member type; keep the path without the type tag.
        loc = [p for p in e["loc"] if not (isinstance(p, str) and ("[" in p or p in _UNION_TAGS))]
        path = _format_loc(loc)
        if prefix:
            path = prefix + ("." + path if path and not path.startswith("[") else path)
        ctx = e.get("ctx") or {}
        code = ctx.get("cf_code") if isinstance(ctx, dict) else None
        msg = e["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        if e["type"] == "extra_forbidden":
            msg = "unknown field"
        elif e["type"] == "tuple_type":
            msg = "should be a list"  # tuples are how the snapshot keeps lists; YAML has lists
        problems.append(Problem(path, msg, code if isinstance(code, int) else None))
    # Drop exact duplicates produced by union branches, keep order.
    seen: set[tuple[str, str]] = set()
    unique = []
    for p in problems:
        if (p.path, p.message) not in seen:
            seen.add((p.path, p.message))
            unique.append(p)
    return unique


_UNION_TAGS = {
    "IPv4Address",
    "IPv6Address",
    "IPv4Network",
    "IPv6Network",
    "int",
    "str",
    "function-after",
    "literal['auto']",
    "bool",
    "tuple",
    "dict",
}


class _StrictLoader(yaml.SafeLoader):
    """safe_load that refuses a key given twice in one mapping (PyYAML keeps the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, list | dict):
                continue  # unhashable: the schema reports it
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (given twice in the same mapping)", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str) -> Any:
    """YAML text to plain data; a syntax error or a duplicate key becomes a ConfigError with
    line and column."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass: safe
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "?"
        raise ConfigError([Problem("", f"YAML syntax error at {where}: {e.problem}")]) from None
    except yaml.YAMLError as e:
        raise ConfigError([Problem("", f"YAML error: {e}")]) from None


def load_config(text: str) -> EdgeConfig:
    data = parse_yaml(text)
    if data is None:
        data = {}
    return build_config(data)


def build_config(data: Any) -> EdgeConfig:
    """Plain data (from YAML or JSON) to a validated, normalised config, or ConfigError."""
    if not isinstance(data, dict):
        raise ConfigError([Problem("", f"the config must be a mapping, got {type(data).__name__}")])
    try:
        config = EdgeConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(problems_from(e)) from None
    config = normalise(config)
    problems = check_semantics(config)
    if problems:
        raise ConfigError(problems)
    return config


def default_config_text() -> str:
    return resources.files("edge").joinpath("default.yaml").read_text(encoding="utf-8")


def default_config() -> EdgeConfig:
    return load_config(default_config_text())


def _fqdn(name: str, zone: str) -> str:
    if name in ("@", ""):
        return zone
    if name == zone or name.endswith("." + zone):
        return name
    return f"{name}.{zone}"


def _short_fqdn(name: str, zone: str) -> str:
    """Hostnames in Spectrum apps are FQDNs; only `@` and a single label are made relative."""
    return _fqdn(name, zone) if name in ("@", "") or "." not in name else name


def normalise(config: EdgeConfig) -> EdgeConfig:
    """Fill ids and expand relative names; pure and idempotent."""
    zones = []
    for zone in config.zones:
        zid = zone.id or stable_id("zone", zone.name)
        records = []
        for r in zone.dns_records:
            name = _fqdn(r.name, zone.name)
            content = r.content.lower().rstrip(".") if r.type in ("CNAME", "NS", "MX", "PTR") else r.content
            rid = r.id or stable_id("record", zone.name, name, r.type, content)
            records.append(r.model_copy(update={"name": name, "content": content, "id": rid}))
        apps = []
        for a in zone.spectrum_apps:
            aid = a.id or stable_id("spectrum", zone.name, a.protocol, a.dns.name)
            dns = a.dns.model_copy(update={"name": _short_fqdn(a.dns.name, zone.name)})
            od = a.origin_dns
            if od is not None:
                od = od.model_copy(update={"name": _short_fqdn(od.name, zone.name)})
            apps.append(a.model_copy(update={"id": aid, "dns": dns, "origin_dns": od}))
        rulesets = zone.rulesets
        rs = zone.custom_ruleset
        if rs is not None:
            rules = []
            for i, rule in enumerate(rs.rules):
                rule_id = rule.id or stable_id("rule", zone.name, str(i), rule.expression, rule.action)
                rules.append(rule.model_copy(update={"id": rule_id, "version": rule.version or "1"}))
            rs = rs.model_copy(update={"id": rs.id or stable_id("ruleset", zone.name, rs.phase), "rules": tuple(rules)})
            rulesets = Rulesets(http_request_firewall_custom=rs)
        access = [
            ar.model_copy(
                update={
                    "id": ar.id
                    or stable_id("access", zone.name, ar.configuration.target, ar.configuration.value, ar.mode)
                }
            )
            for ar in zone.access_rules
        ]
        zones.append(
            zone.model_copy(
                update={
                    "id": zid,
                    "dns_records": tuple(records),
                    "spectrum_apps": tuple(apps),
                    "rulesets": rulesets,
                    "access_rules": tuple(access),
                }
            )
        )
    lists = [lst.model_copy(update={"id": lst.id or stable_id("list", lst.name)}) for lst in config.lists]
    return config.model_copy(update={"zones": tuple(zones), "lists": tuple(lists)})


def zone_for_name(zones: Sequence[Zone], name: str) -> Zone | None:
    """The zone a hostname falls under: longest zone suffix wins."""
    best: Zone | None = None
    for z in zones:
        if (name == z.name or name.endswith("." + z.name)) and (best is None or len(z.name) > len(best.name)):
            best = z
    return best


# Record types whose content the model's validators check themselves.
_CHECKED_BY_MODEL = frozenset({"A", "AAAA", "CNAME", "NS", "PTR", "MX", "SOA"})


def check_semantics(config: EdgeConfig) -> list[Problem]:
    """Checks across objects; every problem, each with its path."""
    from cdn.rules import RulesetError, compile_ruleset
    from resolver.wire import encode_rdata

    problems: list[Problem] = []
    net = config.network
    if net.cdn_egress_ip in net.cdn_ips:
        problems.append(Problem("network.cdn_egress_ip", "must not be one of cdn_ips"))
    if net.spectrum_egress_ip in net.cdn_ips:
        problems.append(Problem("network.spectrum_egress_ip", "must not be one of cdn_ips"))
    for i, ip in enumerate(net.cdn_ips):
        if ip in net.spectrum_ips:
            problems.append(
                Problem(f"network.cdn_ips[{i}]", f"{ip} is inside the spectrum_ips pool {net.spectrum_ips}")
            )
        for name, taken in (("network.resolver", net.resolver), ("api.address", config.api.address)):
            if ip == taken:
                problems.append(Problem(f"network.cdn_ips[{i}]", f"{ip} is also {name}"))
    for name, addr in (
        ("network.resolver", net.resolver),
        ("api.address", config.api.address),
        ("network.cdn_egress_ip", net.cdn_egress_ip),
    ):
        if addr.version == net.spectrum_ips.version and addr in net.spectrum_ips:
            problems.append(Problem(name, f"{addr} is inside the spectrum_ips pool {net.spectrum_ips}"))
    offset = net.port_offset if isinstance(net.port_offset, int) else 0
    for section, ports in (("cdn_http_ports", net.cdn_http_ports), ("cdn_https_ports", net.cdn_https_ports)):
        for p in ports:
            if p + offset > 65535:
                problems.append(Problem(f"network.{section}", f"port {p} + port_offset {offset} exceeds 65535"))
    both = set(net.cdn_http_ports) & set(net.cdn_https_ports)
    if both:
        problems.append(Problem("network.cdn_https_ports", f"ports {sorted(both)} are also HTTP ports"))

    seen_zones: dict[str, int] = {}
    for zi, zone in enumerate(config.zones):
        if zone.name in seen_zones:
            problems.append(
                Problem(f"zones[{zi}].name", f"zone {zone.name} is already defined at zones[{seen_zones[zone.name]}]")
            )
        seen_zones.setdefault(zone.name, zi)

    lists = list_specs(config)
    seen_lists: set[str] = set()
    for li, lst in enumerate(config.lists):
        if lst.name in seen_lists:
            problems.append(Problem(f"lists[{li}].name", f"list {lst.name} is defined twice"))
        seen_lists.add(lst.name)

    listeners: dict[tuple[str, str, int], str] = {}
    spectrum_names: dict[str, str] = {}
    for zi, zone in enumerate(config.zones):
        zp = f"zones[{zi}]"
        for hi, host in enumerate(zone.settings.advanced_certificate_hosts):
            h = host.lower()
            if not (h.endswith("." + zone.name)) or not is_hostname(h):
                problems.append(
                    Problem(
                        f"{zp}.settings.advanced_certificate_hosts[{hi}]", f"{host!r} is not a name under {zone.name}"
                    )
                )
        # DNS records (reference 4.5: duplicates 81057, CNAME clashes 81053/81054).
        by_name: dict[str, list[tuple[int, DnsRecord]]] = {}
        for ri, r in enumerate(zone.dns_records):
            rp = f"{zp}.dns_records[{ri}]"
            if not (r.name == zone.name or r.name.endswith("." + zone.name)):
                problems.append(Problem(f"{rp}.name", f"{r.name} is not under the zone {zone.name}"))
                continue
            if not is_hostname(r.name):
                problems.append(Problem(f"{rp}.name", f"{r.name!r} is not a valid DNS name"))
            if r.type not in _CHECKED_BY_MODEL:
                try:  # what the resolver will serve: a record it cannot encode is refused here
                    encode_rdata(r.type, r.content, priority=r.priority, data=r.data)
                except (ValueError, KeyError, TypeError) as e:
                    problems.append(Problem(f"{rp}.content", f"invalid {r.type} record: {e}", 1004))
            for oi, other in by_name.get(r.name, []):
                if other.type == r.type and other.content == r.content:
                    problems.append(Problem(rp, f"record already exists (same as dns_records[{oi}])", 81057))
                elif other.type == "CNAME" and r.type in ("A", "AAAA", "CNAME"):
                    problems.append(Problem(rp, "a CNAME record with that host already exists", 81054))
                elif r.type == "CNAME" and other.type in ("A", "AAAA", "CNAME"):
                    problems.append(Problem(rp, "an A, AAAA, or CNAME record with that host already exists", 81053))
                elif "NS" in (r.type, other.type) and r.name != zone.name and r.type != other.type:
                    problems.append(Problem(rp, "an NS record cannot share its name with other records", 81053))
            by_name.setdefault(r.name, []).append((ri, r))
        # Spectrum apps.
        for ai, app in enumerate(zone.spectrum_apps):
            ap = f"{zp}.spectrum_apps[{ai}]"
            name = app.dns.name
            if not (name == zone.name or name.endswith("." + zone.name)):
                problems.append(Problem(f"{ap}.dns.name", f"{name} is not under the zone {zone.name}", 16001))
            for _, r in by_name.get(name, []):
                if r.type in PROXIABLE_TYPES:
                    problems.append(
                        Problem(
                            f"{ap}.dns.name", f"{name} already has a {r.type} record; Spectrum owns its hostname", 81053
                        )
                    )
                    break
            owner = spectrum_names.get(name)
            if owner is not None and owner != zone.name:
                problems.append(Problem(f"{ap}.dns.name", f"{name} is owned by zone {owner}", 16001))
            spectrum_names[name] = zone.name
            if app.origin_dns is not None:
                od = app.origin_dns.name
                if not (od == zone.name or od.endswith("." + zone.name)):
                    problems.append(
                        Problem(
                            f"{ap}.origin_dns.name",
                            f"{od} is not in the zone {zone.name}; origin_dns must be a record of the same zone",
                            11050,
                        )
                    )
            if app.edge_ips.type == "static":
                for ii, ip in enumerate(app.edge_ips.ips or ()):
                    if ip in net.cdn_ips or ip in (
                        net.cdn_egress_ip,
                        net.spectrum_egress_ip,
                        net.resolver,
                        config.api.address,
                    ):
                        problems.append(
                            Problem(f"{ap}.edge_ips.ips[{ii}]", f"{ip} is already used by the edge itself", 11033)
                        )
                    for port in range(app.ports.first, app.ports.last + 1):
                        key = (str(ip), app.transport, port)
                        if key in listeners and listeners[key] != ap:
                            problems.append(
                                Problem(ap, f"{app.transport}/{port} on {ip} is already used by {listeners[key]}")
                            )
                            break
                        listeners[key] = ap
        # Rules: full compile with the lists, so type errors surface here, not per request.
        rs = zone.custom_ruleset
        if rs is not None:
            try:
                compile_ruleset(rule_specs(rs), lists, ruleset_id=rs.id or "")
            except RulesetError as e:
                for index, err in e.errors:
                    problems.append(
                        Problem(
                            f"{zp}.rulesets.http_request_firewall_custom.rules[{index}].expression", str(err), err.code
                        )
                    )
    return problems


def rule_specs(ruleset: Ruleset) -> list[Any]:
    """The ruleset's rules as the rules engine's RuleSpec objects."""
    from cdn.rules import RuleSpec

    return [
        RuleSpec(
            id=r.id or "",
            action=r.action,
            expression=r.expression,
            description=r.description,
            enabled=r.enabled,
            ref=r.ref,
            action_parameters=dict(r.action_parameters or {}),
        )
        for r in ruleset.rules
    ]


def list_specs(config: EdgeConfig) -> dict[str, Any]:
    from cdn.rules import ListSpec

    return {lst.name: ListSpec(lst.name, lst.kind, tuple(item.ip or "" for item in lst.items)) for lst in config.lists}


_problems_from = problems_from  # the name edge.api imported first
