"""Spectrum's pure decisions: which app owns a connection, where it goes, whether it may pass,
and which listeners a snapshot needs. No I/O here; `spectrum.server` does the sockets.

Rules (reference section 0 facts 4, 5; section 2.3; section 8.3):

- An app is selected by the connection's local (edge IP, transport, port) alone. Ports are the
  logical (Cloudflare) ports; the port offset is the server's business.
- A port range maps by offset: edge 1000-2000 -> origin 3000-4000, a hit on 1005 goes to 3005.
  An origin with a single port takes every edge port of the range.
- Several `origin_direct` entries spread connections round-robin (the caller passes a turn
  counter); the rest of the list, in rotation order, is the failover order on refusal.
- Listeners: one per (edge IP, transport, port); a port range binds at most
  `MAX_PORTS_PER_APP` ports per app and IP (the rest are not bound, and the route table says
  so in `truncated`). On every Spectrum edge IP in use, the CDN's HTTP and HTTPS ports that no
  app owns are also bound (TCP): they complete the handshake and close at once, as the real
  edge does for an unconfigured port, so a CDN that dials there sees a close, not a refusal.
- IP access rules apply only to apps with `ip_firewall: true`. The most specific matching rule
  decides (an IP beats a range, a longer prefix beats a shorter one, any IP rule beats the
  country); at equal specificity `whitelist` beats `block` (Cloudflare: an allowlisted address
  "will never be blocked"). Challenge modes cannot be shown on a TCP stream and are ignored
  (Spectrum honours allow/block only, reference 2.2). ASN rules never match (no ASN data).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from edge.config import AccessRule, IPAddress, PortRange, SpectrumApp, Zone

# A port range binds this many ports per app and edge IP at most: 1024 sockets per app keeps a
# typo like tcp/1-65535 from eating the process's file descriptors. Ports past the cap are not
# bound; `RouteTable.truncated` names the apps cut short (the server logs them).
MAX_PORTS_PER_APP = 1024

Transport = Literal["tcp", "udp"]
ListenerKind = Literal["app", "unowned"]


@dataclass(frozen=True, slots=True)
class RouteKey:
    """A listener's identity: edge IP, transport and logical (Cloudflare) port."""

    ip: IPAddress
    transport: str
    port: int


@dataclass(frozen=True, slots=True)
class OriginTarget:
    """One origin to dial: address and logical port (dial_port applies the offset if owned)."""

    transport: str
    address: IPAddress
    port: int


@dataclass(frozen=True, slots=True)
class Route:
    """The app that owns one (edge IP, transport, port)."""

    zone: Zone
    app: SpectrumApp
    key: RouteKey
    range_first: int  # first port of the app's edge range (for offset mapping)
    # origin_direct for this port, parsed once per snapshot (empty for origin_dns apps).
    targets: tuple[OriginTarget, ...] = ()

    @property
    def app_id(self) -> str:
        return self.app.id or ""


@dataclass(frozen=True, slots=True)
class RouteTable:
    """Every route of a snapshot, plus the listeners it needs."""

    routes: Mapping[RouteKey, Route]
    # TCP ports on Spectrum IPs that no app owns but the CDN may dial: handshake, then close.
    unowned: frozenset[RouteKey]
    # (app id, edge IP, ports requested, ports bound) for ranges cut at MAX_PORTS_PER_APP.
    truncated: tuple[tuple[str, IPAddress, int, int], ...] = ()
    # (key, app id kept, app id dropped) when two apps claim the same listener.
    conflicts: tuple[tuple[RouteKey, str, str], ...] = ()

    def listeners(self) -> dict[RouteKey, ListenerKind]:
        out: dict[RouteKey, ListenerKind] = dict.fromkeys(self.routes, "app")
        for key in self.unowned:
            out.setdefault(key, "unowned")
        return out


def build_routes(snapshot: Any) -> RouteTable:
    """The route table of a snapshot (`edge.store.Snapshot`); see `routes_for` for the memo."""
    net = snapshot.config.network
    routes: dict[RouteKey, Route] = {}
    truncated: list[tuple[str, IPAddress, int, int]] = []
    conflicts: list[tuple[RouteKey, str, str]] = []
    for listener in snapshot.spectrum_listeners:
        first, last = listener.first_port, listener.last_port
        want = last - first + 1
        bound_last = min(last, first + MAX_PORTS_PER_APP - 1)
        if bound_last < last:
            truncated.append((listener.app.id or "", listener.ip, want, bound_last - first + 1))
        origins = listener.app.origins()
        for port in range(first, bound_last + 1):
            key = RouteKey(listener.ip, listener.transport, port)
            existing = routes.get(key)
            if existing is not None:
                if existing.app_id != (listener.app.id or ""):
                    conflicts.append((key, existing.app_id, listener.app.id or ""))
                continue
            targets = tuple(OriginTarget(o.transport, o.address, map_port(first, port, o.ports)) for o in origins)
            routes[key] = Route(listener.zone, listener.app, key, first, targets)
    cdn_ports = (*net.cdn_http_ports, *net.cdn_https_ports)
    unowned = set()
    for ip in snapshot.spectrum_ip_set:
        for port in cdn_ports:
            key = RouteKey(ip, "tcp", port)
            if key not in routes:
                unowned.add(key)
    return RouteTable(routes, frozenset(unowned), tuple(truncated), tuple(conflicts))


def routes_for(snapshot: Any) -> RouteTable:
    """The snapshot's route table, built once per snapshot."""
    table: RouteTable = snapshot.derived("spectrum.routes", build_routes)
    return table


def match_route(table: RouteTable, ip: IPAddress, transport: str, port: int) -> Route | None:
    """The app owning a connection's local (IP, transport, logical port), or None."""
    return table.routes.get(RouteKey(ip, transport, port))


# --------------------------------------------------------------------------- listener diff


@dataclass(frozen=True, slots=True)
class ListenerDiff:
    to_open: tuple[RouteKey, ...]
    to_close: tuple[RouteKey, ...]


def _order(keys: Iterable[RouteKey]) -> tuple[RouteKey, ...]:
    return tuple(sorted(keys, key=lambda k: (k.ip.version, int(k.ip), k.transport, k.port)))


def diff_listeners(current: Iterable[RouteKey], desired: Iterable[RouteKey]) -> ListenerDiff:
    """Listeners to close (first) and to open; the ones in both are left alone, whatever kind
    they are now (a listener looks its route up per connection, so a port that changes owner,
    or goes from unowned to owned, keeps its socket)."""
    cur, want = set(current), set(desired)
    return ListenerDiff(to_open=_order(want - cur), to_close=_order(cur - want))


# --------------------------------------------------------------------------- origins


def map_port(edge_first: int, edge_port: int, origin_ports: PortRange) -> int:
    """Edge port -> origin port: offset within equal-length ranges; a single origin port maps all."""
    if len(origin_ports) == 1:
        return origin_ports.first
    offset = edge_port - edge_first
    if not 0 <= offset < len(origin_ports):
        raise ValueError(f"edge port {edge_port} is outside the origin range {origin_ports} (from {edge_first})")
    return origin_ports.first + offset


def direct_targets(route: Route) -> tuple[OriginTarget, ...]:
    """The app's origin_direct entries for this route's port, in configuration order."""
    if route.targets or route.app.origin_direct is None:
        return route.targets
    return tuple(
        OriginTarget(o.transport, o.address, map_port(route.range_first, route.key.port, o.ports))
        for o in route.app.origins()
    )


def dns_port(route: Route) -> int | None:
    """The origin port for an origin_dns app (None for SRV without origin_port)."""
    ports = route.app.origin_ports()
    if ports is None:
        return None
    return map_port(route.range_first, route.key.port, ports)


def dns_rdtypes(route: Route) -> tuple[str, ...]:
    """Record types to ask for an origin_dns app, in order ("" = A then AAAA)."""
    od = route.app.origin_dns
    if od is None:
        return ()
    if od.type == "":
        return ("A", "AAAA")
    return (od.type,)


def failover_order(targets: Sequence[OriginTarget], turn: int) -> tuple[OriginTarget, ...]:
    """Round-robin: `turn` picks the first target; the others follow in rotation as failover."""
    n = len(targets)
    if n == 0:
        return ()
    start = turn % n
    return tuple(targets[start:]) + tuple(targets[:start])


# --------------------------------------------------------------------------- IP access rules

# ClientMatchedIpFirewall values (reference 8.3).
MatchedFirewall = Literal[
    "UNKNOWN", "ALLOW", "BLOCK_IP", "BLOCK_COUNTRY", "BLOCK_ASN", "WHITELIST_IP", "WHITELIST_COUNTRY", "WHITELIST_ASN"
]

# Specificity of a country rule: below any IP rule (an IPv4 /0 would be 0, so use -1).
_COUNTRY_SPECIFICITY = -1


@dataclass(frozen=True, slots=True)
class AccessDecision:
    allowed: bool
    matched: MatchedFirewall
    rule_id: str = ""
    reason: str = ""


@dataclass(frozen=True, slots=True)
class CompiledAccessRule:
    rule_id: str
    mode: str  # block | whitelist
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None
    country: str | None
    specificity: int = field(default=0)


def compile_access_rules(rules: Iterable[AccessRule]) -> tuple[CompiledAccessRule, ...]:
    """The zone's rules Spectrum can apply (block/whitelist on ip, ip6, ip_range, country),
    most specific first, whitelist before block at equal specificity."""
    out = []
    for rule in rules:
        if rule.mode not in ("block", "whitelist"):
            continue
        target = rule.configuration.target
        if target == "country":
            out.append(
                CompiledAccessRule(
                    rule.id or "", rule.mode, None, rule.configuration.value.upper(), _COUNTRY_SPECIFICITY
                )
            )
            continue
        net = rule.network()
        if net is None:  # asn: no ASN data for local clients
            continue
        out.append(CompiledAccessRule(rule.id or "", rule.mode, net, None, net.prefixlen))
    out.sort(key=lambda r: (-r.specificity, 0 if r.mode == "whitelist" else 1))
    return tuple(out)


def evaluate_access(rules: Sequence[CompiledAccessRule], client: IPAddress, *, country: str = "XX") -> AccessDecision:
    """The decision for one client: the first (most specific) matching rule, or ALLOW."""
    for rule in rules:
        if rule.network is not None:
            if client.version != rule.network.version or client not in rule.network:
                continue
            if rule.mode == "whitelist":
                return AccessDecision(True, "WHITELIST_IP", rule.rule_id, f"whitelist {rule.network}")
            return AccessDecision(False, "BLOCK_IP", rule.rule_id, f"block {rule.network}")
        if rule.country is not None and rule.country == country.upper():
            if rule.mode == "whitelist":
                return AccessDecision(True, "WHITELIST_COUNTRY", rule.rule_id, f"whitelist country {rule.country}")
            return AccessDecision(False, "BLOCK_COUNTRY", rule.rule_id, f"block country {rule.country}")
    return AccessDecision(True, "ALLOW", "", "no rule matched")


def access_rules_for(snapshot: Any, zone: Zone) -> tuple[CompiledAccessRule, ...]:
    """The zone's compiled rules, memoised per snapshot."""
    table: dict[str, tuple[CompiledAccessRule, ...]] = snapshot.derived(
        "spectrum.access_rules",
        lambda s: {z.id or "": compile_access_rules(z.access_rules) for z in s.config.zones},
    )
    return table.get(zone.id or "", ())


def check_access(snapshot: Any, route: Route, client: IPAddress) -> AccessDecision:
    """IP firewall for one connection: UNKNOWN (allowed) when the app has ip_firewall off."""
    if not route.app.ip_firewall:
        return AccessDecision(True, "UNKNOWN", "", "ip_firewall off")
    return evaluate_access(access_rules_for(snapshot, route.zone), client, country=route.zone.settings.ip_country)


__all__ = [
    "MAX_PORTS_PER_APP",
    "AccessDecision",
    "CompiledAccessRule",
    "ListenerDiff",
    "OriginTarget",
    "Route",
    "RouteKey",
    "RouteTable",
    "build_routes",
    "check_access",
    "compile_access_rules",
    "diff_listeners",
    "direct_targets",
    "dns_port",
    "dns_rdtypes",
    "evaluate_access",
    "failover_order",
    "map_port",
    "match_route",
    "routes_for",
]
