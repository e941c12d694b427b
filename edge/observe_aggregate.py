"""The in-memory analytics aggregate behind `/analytics`, `/metrics`, the dashboard and
Spectrum's `analytics/aggregate/current`. Sans-IO: records in, counters out; time is injected.

Contract:
- `Aggregator.ingest(dataset, record)` is an `EventSink` listener. It is O(1) per record and
  never raises: a record with missing or odd fields is counted with placeholder values
  (`""` host, status 0, edge kind `unknown`), because an exception here would surface inside
  the role that emitted the record.
- Label cardinality is bounded. Host names come from clients (the CDN accepts any name under a
  zone), so each table keeps at most a fixed number of distinct keys and folds the rest into
  `OTHER`; memory stays bounded whatever a scanner sends.
- An arrival edge IP is classified once (`cdn`, `spectrum`, `other`, `unknown`) against the
  snapshot live when the record arrives. A *misdirected* request is one for a Spectrum
  hostname that arrived on a CDN edge IP (reference section 9.2, flow C).
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import structlog

log = structlog.get_logger("edge.observe")

# Distinct keys kept per table before folding into OTHER (memory and Prometheus series bound).
MAX_ZONES = 256
MAX_HOSTS_PER_ZONE = 512
MAX_EDGE_IPS = 1024
MAX_APPS = 4096
MAX_RULES_PER_ZONE = 512
MAX_SERIES = 20_000
MAX_DNS_LABELS = 64
OTHER = "(other)"

# Recent-item rings for the dashboard; the ray index lets /trace show the request's record.
RECENT_REQUESTS = 200
RECENT_EVENTS = 100
RAY_INDEX = 5_000

# Cloudflare's "current" Spectrum aggregate covers the last minute of usage.
CURRENT_WINDOW_S = 60

# Spectrum events that end a connection (reference 8.3: one connect, then one of these).
CLOSING_EVENTS = frozenset({"disconnect", "clientFiltered", "tlsError", "resolveOrigin", "originError"})

EDGE_KINDS = ("cdn", "spectrum", "other", "unknown")


class NetworkView(Protocol):
    """What the aggregator reads from the live snapshot (`edge.store.Snapshot` satisfies it)."""

    @property
    def spectrum_hosts(self) -> Mapping[str, Any]: ...

    def is_cdn_ip(self, ip: Any) -> bool: ...

    def is_spectrum_ip(self, ip: Any) -> bool: ...

    def zone_for_host(self, host: str) -> Any: ...


# --------------------------------------------------------------------------- field coercion


def as_int(value: Any, default: int = 0) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return int(value.strip())
    return default


def as_str(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


_RFC3339 = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)?$")


def timestamp_ns(value: Any) -> int | None:
    """A Logpush timestamp (unixnano, unix seconds or millis, or RFC 3339) as unix nanoseconds."""
    if isinstance(value, str) and not value.strip().lstrip("-").isdigit():
        m = _RFC3339.match(value.strip())
        if not m:
            return None
        tz = m.group(3) or "Z"
        try:
            base = datetime.fromisoformat(m.group(1) + ("+00:00" if tz == "Z" else tz))
        except ValueError:
            return None
        frac = (m.group(2) or "").ljust(9, "0")
        return int(base.timestamp()) * 1_000_000_000 + int(frac)
    if value is None or isinstance(value, bool):
        return None
    n = as_int(value, -1)
    if n < 0:
        return None
    if n < 10**11:  # seconds
        return n * 1_000_000_000
    if n < 10**14:  # milliseconds
        return n * 1_000_000
    if n < 10**17:  # microseconds
        return n * 1_000
    return n


def normalise_host(value: Any) -> str:
    """Host header -> lower-case name without port or trailing dot (`[::1]:443` -> `::1`)."""
    host = as_str(value).strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[1:end] if end > 0 else host
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


def short_ray(value: Any) -> str:
    return as_str(value).split("-", 1)[0].lower()


# --------------------------------------------------------------------------- bounded tables


def bounded_key(table: Mapping[str, Any], key: str, limit: int) -> str:
    """`key` if the table has it or has room, else OTHER."""
    if key in table or len(table) < limit:
        return key
    return OTHER


@dataclass(slots=True)
class HostStats:
    requests: int = 0
    misdirected: int = 0
    spectrum_host: bool = False
    by_status: Counter[int] = field(default_factory=Counter)
    by_edge_kind: Counter[str] = field(default_factory=Counter)
    by_edge_ip: Counter[str] = field(default_factory=Counter)
    by_security_action: Counter[str] = field(default_factory=Counter)
    last_ray: str = ""
    last_seen: float = 0.0


@dataclass(slots=True)
class EdgeIpStats:
    kind: str
    requests: int = 0


@dataclass(slots=True)
class RuleStats:
    rule_id: str
    description: str = ""
    source: str = ""
    count: int = 0
    by_action: Counter[str] = field(default_factory=Counter)
    hosts: Counter[str] = field(default_factory=Counter)


@dataclass(slots=True)
class ZoneStats:
    requests: int = 0
    misdirected: int = 0
    hosts: dict[str, HostStats] = field(default_factory=dict)
    by_status: Counter[int] = field(default_factory=Counter)
    by_edge_kind: Counter[str] = field(default_factory=Counter)
    by_security_action: Counter[str] = field(default_factory=Counter)
    firewall_events: int = 0
    firewall_by_action: Counter[str] = field(default_factory=Counter)
    rules: dict[str, RuleStats] = field(default_factory=dict)


@dataclass(slots=True)
class WindowBucket:
    second: int
    connections: int = 0
    bytes_ingress: int = 0
    bytes_egress: int = 0
    duration_ms_sum: float = 0.0
    durations: int = 0


@dataclass(slots=True)
class AppStats:
    app_id: str
    zone: str = ""
    name: str = ""
    connections: int = 0
    closed: int = 0
    bytes_ingress: int = 0
    bytes_egress: int = 0
    duration_ms_sum: float = 0.0
    durations: int = 0
    by_event: Counter[str] = field(default_factory=Counter)
    by_status: Counter[int] = field(default_factory=Counter)
    by_event_status: Counter[tuple[str, int]] = field(default_factory=Counter)
    last_client: str = ""
    last_seen: float = 0.0
    window: deque[WindowBucket] = field(default_factory=lambda: deque(maxlen=CURRENT_WINDOW_S + 2))

    def bucket(self, now: float) -> WindowBucket:
        second = int(now)
        if self.window and self.window[-1].second == second:
            return self.window[-1]
        b = WindowBucket(second)
        self.window.append(b)
        return b

    def current(self, now: float) -> WindowBucket:
        """Sum of the buckets within the last CURRENT_WINDOW_S seconds."""
        out = WindowBucket(int(now))
        floor = now - CURRENT_WINDOW_S
        for b in self.window:
            if b.second + 1 > floor:
                out.connections += b.connections
                out.bytes_ingress += b.bytes_ingress
                out.bytes_egress += b.bytes_egress
                out.duration_ms_sum += b.duration_ms_sum
                out.durations += b.durations
        return out


@dataclass(slots=True)
class DnsStats:
    queries: int = 0
    by_view_rcode: Counter[tuple[str, str]] = field(default_factory=Counter)
    by_qtype: Counter[str] = field(default_factory=Counter)
    names: Counter[str] = field(default_factory=Counter)


# --------------------------------------------------------------------------- the aggregator


class Aggregator:
    """Counters over the event stream. Build one per process; subscribe `ingest` to the sink."""

    def __init__(self, network: Callable[[], NetworkView], *,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time) -> None:
        self._network = network
        self._clock = clock
        self._wall = wall
        self.zones: dict[str, ZoneStats] = {}
        self.apps: dict[str, AppStats] = {}
        self.dns = DnsStats()
        self.ingested: Counter[str] = Counter()
        self.misdirected = 0
        # (zone, host, status, edge_kind, security_action) -> requests, for /metrics.
        self.http_series: Counter[tuple[str, str, int, str, str]] = Counter()
        # (zone, action, source) -> firewall events.
        self.firewall_series: Counter[tuple[str, str, str]] = Counter()
        self.edge_ips: dict[str, EdgeIpStats] = {}
        self.recent_requests: deque[dict[str, Any]] = deque(maxlen=RECENT_REQUESTS)
        self.recent_firewall: deque[dict[str, Any]] = deque(maxlen=RECENT_EVENTS)
        self.recent_spectrum: deque[dict[str, Any]] = deque(maxlen=RECENT_EVENTS)
        self.rays: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._kinds: dict[str, str] = {}
        self._kinds_for: object = None
        self.errors = 0

    # ---------------------------------------------------------------- ingest

    def ingest(self, dataset: str, record: Mapping[str, Any]) -> None:
        """EventSink listener: count one record. Never raises (see the module contract)."""
        try:
            self.ingested[dataset] += 1
            if dataset == "http_requests":
                self._http(record)
            elif dataset == "firewall_events":
                self._firewall(record)
            elif dataset == "spectrum_events":
                self._spectrum(record)
            elif dataset == "dns_queries":
                self._dns(record)
        except Exception:
            self.errors += 1
            if self.errors <= 10:  # say it, but do not flood the log from a hot path
                log.exception("observe.record.failed", dataset=dataset)

    def classify_ip(self, ip: str) -> str:
        """`cdn`, `spectrum`, `other` or `unknown`, against the live snapshot (memoised per snapshot)."""
        if not ip:
            return "unknown"
        net = self._network()
        if net is not self._kinds_for:
            self._kinds, self._kinds_for = {}, net
        kind = self._kinds.get(ip)
        if kind is None:
            try:
                addr = ipaddress.ip_address(ip.strip("[]"))
            except ValueError:
                kind = "unknown"
            else:
                kind = "cdn" if net.is_cdn_ip(addr) else "spectrum" if net.is_spectrum_ip(addr) else "other"
            if len(self._kinds) < MAX_EDGE_IPS:
                self._kinds[ip] = kind
        return kind

    def _zone(self, name: str) -> ZoneStats:
        key = bounded_key(self.zones, name, MAX_ZONES)
        zone = self.zones.get(key)
        if zone is None:
            zone = self.zones[key] = ZoneStats()
        return zone

    def _zone_name(self, record: Mapping[str, Any], host: str) -> str:
        name = as_str(record.get("ZoneName")).lower()
        if name:
            return name
        zone = self._network().zone_for_host(host) if host else None
        return as_str(getattr(zone, "name", "")) if zone is not None else ""

    def _ray_entry(self, ray: str) -> dict[str, Any]:
        entry = self.rays.get(ray)
        if entry is None:
            entry = self.rays[ray] = {"request": None, "firewall_events": [], "spectrum_events": []}
            if len(self.rays) > RAY_INDEX:
                self.rays.popitem(last=False)
        return entry

    def _http(self, r: Mapping[str, Any]) -> None:
        now = self._wall()
        host = normalise_host(r.get("ClientRequestHost"))
        zone_name = self._zone_name(r, host)
        status = as_int(r.get("EdgeResponseStatus"))
        edge_ip = as_str(r.get("EdgeListenIP"))
        kind = self.classify_ip(edge_ip)
        action = as_str(r.get("SecurityAction")) or "none"
        spectrum_host = host in self._network().spectrum_hosts
        misdirected = spectrum_host and kind == "cdn"
        ray = short_ray(r.get("RayID"))

        zone = self._zone(zone_name)
        zone.requests += 1
        zone.by_status[status] += 1
        zone.by_edge_kind[kind] += 1
        zone.by_security_action[action] += 1
        hkey = bounded_key(zone.hosts, host, MAX_HOSTS_PER_ZONE)
        hs = zone.hosts.get(hkey)
        if hs is None:
            hs = zone.hosts[hkey] = HostStats()
        hs.requests += 1
        hs.spectrum_host = spectrum_host
        hs.by_status[status] += 1
        hs.by_edge_kind[kind] += 1
        hs.by_security_action[action] += 1
        ikey = bounded_key(hs.by_edge_ip, edge_ip, 64)
        hs.by_edge_ip[ikey] += 1
        hs.last_ray = ray
        hs.last_seen = now
        if misdirected:
            hs.misdirected += 1
            zone.misdirected += 1
            self.misdirected += 1

        ip_key = bounded_key(self.edge_ips, edge_ip, MAX_EDGE_IPS)
        slot = self.edge_ips.get(ip_key)
        if slot is None:
            slot = self.edge_ips[ip_key] = EdgeIpStats(kind if ip_key != OTHER else "other")
        slot.requests += 1

        series = (zone_name, hkey, status, kind, action)
        if series in self.http_series or len(self.http_series) < MAX_SERIES:
            self.http_series[series] += 1
        else:
            self.http_series[(zone_name, OTHER, status, kind, action)] += 1

        start = timestamp_ns(r.get("EdgeStartTimestamp"))
        end = timestamp_ns(r.get("EdgeEndTimestamp"))
        summary = {
            "ray_id": ray,
            "time": (start / 1e9) if start else now,
            "zone": zone_name,
            "host": host,
            "method": as_str(r.get("ClientRequestMethod")),
            "uri": as_str(r.get("ClientRequestURI")),
            "status": status,
            "origin_status": as_int(r.get("OriginResponseStatus")),
            "origin_ip": as_str(r.get("OriginIP")),
            "client_ip": as_str(r.get("ClientIP")),
            "edge_ip": edge_ip,
            "edge_port": as_int(r.get("EdgeListenPort")),
            "edge_kind": kind,
            "spectrum_host": spectrum_host,
            "misdirected": misdirected,
            "security_action": action,
            "security_rule_id": as_str(r.get("SecurityRuleID")),
            "duration_ms": round((end - start) / 1e6, 3) if start and end and end >= start else None,
            "origin_duration_ms": r.get("OriginResponseDurationMs"),
        }
        self.recent_requests.append(summary)
        if ray:
            self._ray_entry(ray)["request"] = summary

    def _firewall(self, r: Mapping[str, Any]) -> None:
        host = normalise_host(r.get("ClientRequestHost"))
        zone_name = self._zone_name(r, host)
        action = as_str(r.get("Action")) or "unknown"
        source = as_str(r.get("Source"))
        rule_id = as_str(r.get("RuleID"))
        zone = self._zone(zone_name)
        zone.firewall_events += 1
        zone.firewall_by_action[action] += 1
        rkey = bounded_key(zone.rules, rule_id, MAX_RULES_PER_ZONE)
        rs = zone.rules.get(rkey)
        if rs is None:
            rs = zone.rules[rkey] = RuleStats(rkey)
        rs.count += 1
        rs.by_action[action] += 1
        rs.description = as_str(r.get("Description")) or rs.description
        rs.source = source or rs.source
        rs.hosts[bounded_key(rs.hosts, host, 64)] += 1
        key = (zone_name, action, source)
        if key in self.firewall_series or len(self.firewall_series) < MAX_SERIES:
            self.firewall_series[key] += 1
        ray = short_ray(r.get("RayID"))
        item = {"ray_id": ray, "time": self._wall(), "zone": zone_name, "host": host, "action": action,
                "source": source, "rule_id": rule_id, "description": as_str(r.get("Description"))}
        self.recent_firewall.append(item)
        if ray:
            entry = self._ray_entry(ray)
            if len(entry["firewall_events"]) < 16:
                entry["firewall_events"].append(item)

    def _spectrum(self, r: Mapping[str, Any]) -> None:
        now = self._clock()
        app_id = as_str(r.get("Application"))
        key = bounded_key(self.apps, app_id, MAX_APPS)
        app = self.apps.get(key)
        if app is None:
            app = self.apps[key] = AppStats(key)
        app.name = as_str(r.get("AppName") or r.get("Hostname") or r.get("ClientTlsClientHelloServerName")) \
            or app.name
        app.zone = as_str(r.get("ZoneName")) or app.zone
        event = as_str(r.get("Event"))
        status = as_int(r.get("Status"))
        app.by_event[event or "unknown"] += 1
        app.by_status[status] += 1
        app.by_event_status[(event or "unknown", status)] += 1
        app.last_seen = self._wall()
        client = as_str(r.get("ClientIP"))
        if client:
            port = r.get("ClientPort")
            app.last_client = f"{client}:{port}" if port not in (None, "", 0) else client
        bucket = app.bucket(now)
        # A record without Event is a whole connection in one line: count it as both ends.
        opens = event in ("connect", "")
        closes = event in CLOSING_EVENTS or event == ""
        if opens:
            app.connections += 1
            bucket.connections += 1
        duration_ms: float | None = None
        if closes:
            app.closed += 1
            ingress, egress = as_int(r.get("ClientBytes")), as_int(r.get("OriginBytes"))
            app.bytes_ingress += ingress
            app.bytes_egress += egress
            bucket.bytes_ingress += ingress
            bucket.bytes_egress += egress
            start = timestamp_ns(r.get("ConnectTimestamp"))
            end = timestamp_ns(r.get("DisconnectTimestamp") or r.get("Timestamp"))
            if start and end and end >= start:
                duration_ms = (end - start) / 1e6
                app.duration_ms_sum += duration_ms
                app.durations += 1
                bucket.duration_ms_sum += duration_ms
                bucket.durations += 1
        ray = short_ray(r.get("RayID"))
        item = {"time": self._wall(), "app_id": app_id, "event": event, "status": status,
                "client": app.last_client, "origin_ip": as_str(r.get("OriginIP")),
                "origin_port": as_int(r.get("OriginPort")), "client_bytes": as_int(r.get("ClientBytes")),
                "origin_bytes": as_int(r.get("OriginBytes")),
                "duration_ms": round(duration_ms, 3) if duration_ms is not None else None, "ray_id": ray}
        self.recent_spectrum.append(item)
        if ray:
            entry = self._ray_entry(ray)
            if len(entry["spectrum_events"]) < 16:
                entry["spectrum_events"].append(item)

    def _dns(self, r: Mapping[str, Any]) -> None:
        d = self.dns
        d.queries += 1
        view = as_str(r.get("View")) or "unknown"
        rcode = as_str(r.get("ResponseCode")) or "unknown"
        key = (view, rcode)
        if key in d.by_view_rcode or len(d.by_view_rcode) < MAX_DNS_LABELS:
            d.by_view_rcode[key] += 1
        else:
            d.by_view_rcode[(OTHER, OTHER)] += 1
        qtype = as_str(r.get("QueryType")) or "unknown"
        d.by_qtype[bounded_key(d.by_qtype, qtype, MAX_DNS_LABELS)] += 1
        name = as_str(r.get("QueryName")).lower().rstrip(".")
        d.names[bounded_key(d.names, name, MAX_HOSTS_PER_ZONE)] += 1

    # ---------------------------------------------------------------- read

    def spectrum_current(self, app_ids: Iterable[str], *, only: set[str] | None = None) -> list[dict[str, Any]]:
        """Cloudflare's `aggregate/current` result: the last minute, per app that saw traffic."""
        now = self._clock()
        out: list[dict[str, Any]] = []
        for app_id in app_ids:
            if only is not None and app_id not in only:
                continue
            app = self.apps.get(app_id)
            if app is None:
                continue
            w = app.current(now)
            if not (w.connections or w.bytes_ingress or w.bytes_egress or w.durations):
                continue
            out.append({
                "appID": app_id,
                "bytesIngress": w.bytes_ingress,
                "bytesEgress": w.bytes_egress,
                "connections": w.connections,
                "durationAvg": round(w.duration_ms_sum / w.durations, 3) if w.durations else 0,
            })
        return out

    def as_json(self, snapshot: Any, *, records: Mapping[str, int] | None = None) -> dict[str, Any]:
        """The whole aggregate (our own shape, served at /analytics)."""
        config = snapshot.config
        spectrum_hosts: Mapping[str, Iterable[Any]] = snapshot.spectrum_hosts
        hosts_json = {h: [str(ip) for ip in ips] for h, ips in spectrum_hosts.items()}
        zone_ids = {z.name: z.id for z in config.zones}
        names = [z.name for z in config.zones] + [n for n in self.zones if n not in zone_ids]
        zones = [self._zone_json(n, zone_ids.get(n), hosts_json) for n in names]

        apps: list[dict[str, Any]] = []
        seen: set[str] = set()
        for z in config.zones:
            for a in z.spectrum_apps:
                app_id = a.id or ""
                seen.add(app_id)
                apps.append(self._app_json(app_id, {
                    "zone": z.name, "zone_id": z.id, "hostname": a.dns.name, "protocol": a.protocol,
                    "traffic_type": a.traffic_type, "configured": True,
                    "edge_ips": [str(ip) for ip in snapshot.app_ips.get(app_id, ())],
                }))
        for app_id, st in self.apps.items():
            if app_id not in seen:
                apps.append(self._app_json(app_id, {
                    "zone": st.zone, "zone_id": None, "hostname": st.name, "protocol": "",
                    "traffic_type": "", "configured": False, "edge_ips": []}))

        ordered = sorted(self.edge_ips.items(), key=lambda kv: (-kv[1].requests, kv[0]))
        edge_ips = [{"ip": ip, "kind": s.kind, "requests": s.requests} for ip, s in ordered]
        dns = self.dns
        net = config.network
        return {
            "generated_at": self._wall(),
            "generation": snapshot.generation,
            "colo": net.colo,
            "records": dict(records if records is not None else self.ingested),
            "network": {
                "cdn_ips": [str(ip) for ip in net.cdn_ips],
                "spectrum_pool": str(net.spectrum_ips),
                "spectrum_ips": sorted({str(ip) for ips in snapshot.app_ips.values() for ip in ips}),
                "spectrum_hosts": hosts_json,
            },
            "totals": {
                "http_requests": sum(z.requests for z in self.zones.values()),
                "misdirected": self.misdirected,
                "firewall_events": sum(z.firewall_events for z in self.zones.values()),
                "spectrum_connections": sum(a.connections for a in self.apps.values()),
                "dns_queries": dns.queries,
            },
            "zones": zones,
            "edge_ips": edge_ips,
            "spectrum": {"apps": apps},
            "dns": {
                "queries": dns.queries,
                "by_view_rcode": [{"view": v, "rcode": c, "queries": n}
                                  for (v, c), n in dns.by_view_rcode.most_common()],
                "by_qtype": dict(dns.by_qtype.most_common()),
                "top_names": [{"name": k, "queries": n} for k, n in dns.names.most_common(20)],
            },
            "recent_requests": list(reversed(self.recent_requests)),
            "recent_firewall_events": list(reversed(self.recent_firewall)),
            "recent_spectrum_events": list(reversed(self.recent_spectrum)),
        }

    def _zone_json(self, name: str, zone_id: str | None, spectrum_hosts: Mapping[str, list[str]]) -> dict[str, Any]:
        z = self.zones.get(name) or ZoneStats()
        hosts = []
        for host, hs in sorted(z.hosts.items(), key=lambda kv: (-kv[1].requests, kv[0])):
            spectrum = host in spectrum_hosts or hs.spectrum_host
            hosts.append({
                "host": host,
                "requests": hs.requests,
                "spectrum_host": spectrum,
                "spectrum_ips": spectrum_hosts.get(host, []),
                "misdirected": hs.misdirected,
                "by_edge_kind": _kinds(hs.by_edge_kind),
                "by_edge_ip": dict(hs.by_edge_ip.most_common()),
                "by_status": _statuses(hs.by_status),
                "by_security_action": dict(hs.by_security_action.most_common()),
                "last_ray": hs.last_ray,
                "last_seen": hs.last_seen,
            })
        rules = [{"rule_id": r.rule_id, "description": r.description, "source": r.source, "events": r.count,
                  "by_action": dict(r.by_action.most_common()), "hosts": dict(r.hosts.most_common(10))}
                 for r in sorted(z.rules.values(), key=lambda rule: rule.count, reverse=True)]
        return {
            "zone": name,
            "zone_id": zone_id,
            "requests": z.requests,
            "misdirected": z.misdirected,
            "by_status": _statuses(z.by_status),
            "by_edge_kind": _kinds(z.by_edge_kind),
            "by_security_action": dict(z.by_security_action.most_common()),
            "hosts": hosts,
            "firewall": {"events": z.firewall_events, "by_action": dict(z.firewall_by_action.most_common()),
                         "rules": rules},
        }

    def _app_json(self, app_id: str, meta: dict[str, Any]) -> dict[str, Any]:
        st = self.apps.get(app_id) or AppStats(app_id)
        w = st.current(self._clock())
        return {
            "app_id": app_id,
            **meta,
            "connections": st.connections,
            "open": max(st.connections - st.closed, 0),
            "closed": st.closed,
            "bytes_ingress": st.bytes_ingress,
            "bytes_egress": st.bytes_egress,
            "duration_avg_ms": round(st.duration_ms_sum / st.durations, 3) if st.durations else None,
            "by_event": dict(st.by_event.most_common()),
            "by_status": _statuses(st.by_status),
            "last_client": st.last_client,
            "last_seen": st.last_seen,
            "current": {"connections": w.connections, "bytes_ingress": w.bytes_ingress,
                        "bytes_egress": w.bytes_egress},
        }


def _statuses(c: Counter[int]) -> dict[str, int]:
    return {str(k): v for k, v in sorted(c.items())}


def _kinds(c: Counter[str]) -> dict[str, int]:
    return {k: c.get(k, 0) for k in EDGE_KINDS if c.get(k, 0)}
