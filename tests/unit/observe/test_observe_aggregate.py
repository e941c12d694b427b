"""The analytics aggregate: synthetic records in, counters out (no sockets, injected clocks)."""

from __future__ import annotations

from typing import Any

import pytest

from edge.config import default_config
from edge.observe_aggregate import (
    MAX_HOSTS_PER_ZONE,
    OTHER,
    Aggregator,
    normalise_host,
    timestamp_ns,
)
from edge.store import Snapshot, build_snapshot

SNAPSHOT = build_snapshot(default_config(), 1, 0)
CDN_IP = "127.0.10.1"
SPECTRUM_HOST = "spectrum.example.com"
SPECTRUM_IP = str(SNAPSHOT.spectrum_hosts[SPECTRUM_HOST][0])
APP_ID = next(a.id for a in SNAPSHOT.config.zones[0].spectrum_apps if a.dns.name == SPECTRUM_HOST) or ""


class Clock:
    def __init__(self, t: float = 1_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def make(snapshot: Snapshot = SNAPSHOT) -> tuple[Aggregator, Clock]:
    clock = Clock()
    return Aggregator(lambda: snapshot, clock=clock, wall=clock), clock


def http(host: str, edge_ip: str, *, status: int = 200, ray: str = "0123456789abcdef", **more: Any) -> dict[str, Any]:
    return {"ClientRequestHost": host, "EdgeListenIP": edge_ip, "EdgeListenPort": 443, "EdgeResponseStatus": status,
            "ZoneName": "example.com", "RayID": ray, "ClientRequestMethod": "GET", "ClientRequestURI": "/",
            "OriginResponseStatus": status, "SecurityAction": "", **more}


@pytest.mark.parametrize(
    ("host", "edge_ip", "kind", "spectrum_host", "misdirected"),
    [
        (SPECTRUM_HOST, CDN_IP, "cdn", True, 1),  # flow C: the misdirected request
        (SPECTRUM_HOST, SPECTRUM_IP, "spectrum", True, 0),  # flow B: an HTTP app on its Spectrum IP
        ("www.example.com", CDN_IP, "cdn", False, 0),  # an ordinary proxied name
        ("www.example.com", "127.0.30.1", "other", False, 0),
        (SPECTRUM_HOST, "", "unknown", True, 0),  # the CDN did not say where it arrived
        (SPECTRUM_HOST, "not-an-ip", "unknown", True, 0),
    ],
)
def test_http_request_is_classified_by_arrival_ip(
    host: str, edge_ip: str, kind: str, spectrum_host: bool, misdirected: int
) -> None:
    agg, _ = make()
    agg.ingest("http_requests", http(host, edge_ip))
    zone = agg.zones["example.com"]
    hs = zone.hosts[host]
    assert (hs.requests, dict(hs.by_edge_kind), hs.spectrum_host, hs.misdirected) == (
        1, {kind: 1}, spectrum_host, misdirected)
    assert zone.misdirected == misdirected == agg.misdirected
    assert agg.recent_requests[-1]["misdirected"] is bool(misdirected)


def test_counts_by_status_and_security_action() -> None:
    agg, _ = make()
    agg.ingest("http_requests", http(SPECTRUM_HOST, CDN_IP, status=403, SecurityAction="block",
                                     SecurityRuleID="r1", OriginResponseStatus=0))
    agg.ingest("http_requests", http(SPECTRUM_HOST, CDN_IP, status=200))
    agg.ingest("http_requests", http("www.example.com", CDN_IP, status=502))
    zone = agg.zones["example.com"]
    assert dict(zone.by_status) == {403: 1, 200: 1, 502: 1}
    assert dict(zone.by_security_action) == {"block": 1, "none": 2}
    assert dict(zone.hosts[SPECTRUM_HOST].by_security_action) == {"block": 1, "none": 1}
    assert agg.http_series[("example.com", SPECTRUM_HOST, 403, "cdn", "block")] == 1
    assert agg.edge_ips[CDN_IP].requests == 3 and agg.edge_ips[CDN_IP].kind == "cdn"


def test_host_is_normalised_and_zone_derived_when_missing() -> None:
    agg, _ = make()
    record = http("Spectrum.Example.com.:443", CDN_IP)
    del record["ZoneName"]
    agg.ingest("http_requests", record)
    assert list(agg.zones) == ["example.com"]
    assert agg.zones["example.com"].hosts[SPECTRUM_HOST].misdirected == 1


@pytest.mark.parametrize(
    "record",
    [
        {},
        {"EdgeResponseStatus": "abc", "EdgeListenIP": 12, "ClientRequestHost": None},
        {"EdgeStartTimestamp": "yesterday", "EdgeEndTimestamp": -5, "RayID": 7},
        {"ClientRequestHost": "[::1]:443", "EdgeListenIP": "::1"},
    ],
)
def test_odd_records_are_counted_not_raised(record: dict[str, Any]) -> None:
    agg, _ = make()
    agg.ingest("http_requests", record)
    assert agg.errors == 0
    assert sum(z.requests for z in agg.zones.values()) == 1


def test_ingest_never_raises_even_when_the_snapshot_does() -> None:
    def broken() -> Snapshot:
        raise RuntimeError("store gone")

    agg = Aggregator(broken)
    agg.ingest("http_requests", http(SPECTRUM_HOST, CDN_IP))
    assert agg.errors == 1
    assert agg.ingested["http_requests"] == 1


def test_host_table_is_bounded() -> None:
    agg, _ = make()
    for i in range(MAX_HOSTS_PER_ZONE + 50):
        agg.ingest("http_requests", http(f"h{i}.example.com", CDN_IP))
    hosts = agg.zones["example.com"].hosts
    assert len(hosts) == MAX_HOSTS_PER_ZONE + 1
    assert hosts[OTHER].requests == 50


def test_firewall_events_by_rule_and_ray_index() -> None:
    agg, _ = make()
    ray = "fedcba9876543210"
    agg.ingest("firewall_events", {"Action": "block", "RuleID": "r1", "Description": "L4-only Spectrum host via CDN",
                                   "ClientRequestHost": SPECTRUM_HOST, "RayID": ray + "-LHR",
                                   "Source": "firewallcustom"})
    agg.ingest("http_requests", http(SPECTRUM_HOST, CDN_IP, status=403, ray=ray, SecurityAction="block"))
    zone = agg.zones["example.com"]
    assert zone.firewall_events == 1 and dict(zone.firewall_by_action) == {"block": 1}
    rule = zone.rules["r1"]
    assert (rule.count, rule.description, rule.source, dict(rule.hosts)) == (
        1, "L4-only Spectrum host via CDN", "firewallcustom", {SPECTRUM_HOST: 1})
    entry = agg.rays[ray]
    assert entry["request"]["status"] == 403
    assert [f["rule_id"] for f in entry["firewall_events"]] == ["r1"]
    assert agg.firewall_series[("example.com", "block", "firewallcustom")] == 1


def spectrum(event: str, **more: Any) -> dict[str, Any]:
    return {"Event": event, "Application": APP_ID, "ClientIP": "127.0.10.254", "ClientPort": 40000, **more}


def test_spectrum_connections_bytes_and_durations() -> None:
    agg, clock = make()
    start = 1_700_000_000_000_000_000
    agg.ingest("spectrum_events", spectrum("connect", ConnectTimestamp=start))
    assert agg.apps[APP_ID].connections == 1 and agg.apps[APP_ID].closed == 0
    agg.ingest("spectrum_events", spectrum("disconnect", ConnectTimestamp=start, DisconnectTimestamp=start + 250_000_000,
                                           ClientBytes=100, OriginBytes=2_000, Status=200))
    app = agg.apps[APP_ID]
    assert (app.connections, app.closed, app.bytes_ingress, app.bytes_egress) == (1, 1, 100, 2_000)
    assert app.duration_ms_sum == pytest.approx(250.0)
    assert app.last_client == "127.0.10.254:40000"
    assert agg.spectrum_current([APP_ID]) == [
        {"appID": APP_ID, "bytesIngress": 100, "bytesEgress": 2_000, "connections": 1, "durationAvg": 250.0}]
    assert agg.spectrum_current([APP_ID], only={"someone-else"}) == []
    clock.t += 61  # Cloudflare's "current" is the last minute
    assert agg.spectrum_current([APP_ID]) == []
    assert agg.apps[APP_ID].connections == 1  # totals stay


def test_spectrum_record_without_event_is_one_whole_connection() -> None:
    agg, _ = make()
    agg.ingest("spectrum_events", {"Application": APP_ID, "ClientBytes": 5, "OriginBytes": 7,
                                   "ConnectTimestamp": "2024-01-01T00:00:00Z",
                                   "DisconnectTimestamp": "2024-01-01T00:00:01.5Z"})
    app = agg.apps[APP_ID]
    assert (app.connections, app.closed, app.bytes_ingress, app.bytes_egress) == (1, 1, 5, 7)
    assert app.duration_ms_sum == pytest.approx(1500.0)


def test_spectrum_error_event_closes_the_connection() -> None:
    agg, _ = make()
    agg.ingest("spectrum_events", spectrum("connect"))
    agg.ingest("spectrum_events", spectrum("originError", Status=521))
    app = agg.apps[APP_ID]
    assert (app.connections, app.closed) == (1, 1)
    assert app.by_event_status[("originError", 521)] == 1


def test_dns_queries() -> None:
    agg, _ = make()
    for view, rcode in [("internal", "NOERROR"), ("internal", "NOERROR"), ("public", "NXDOMAIN")]:
        agg.ingest("dns_queries", {"QueryName": "spectrum.example.com.", "QueryType": "A", "View": view,
                                   "ResponseCode": rcode, "SourceIP": "127.0.10.254"})
    assert dict(agg.dns.by_view_rcode) == {("internal", "NOERROR"): 2, ("public", "NXDOMAIN"): 1}
    assert agg.dns.names[SPECTRUM_HOST] == 3


def test_as_json_lists_configured_zones_and_apps_before_traffic() -> None:
    agg, _ = make()
    doc = agg.as_json(SNAPSHOT)
    assert [z["zone"] for z in doc["zones"]] == ["example.com"]
    apps = {a["hostname"]: a for a in doc["spectrum"]["apps"]}
    assert set(apps) == {"spectrum.example.com", "ssh.example.com", "udp.example.com"}
    assert apps[SPECTRUM_HOST]["edge_ips"] == [SPECTRUM_IP] and apps[SPECTRUM_HOST]["connections"] == 0
    assert doc["network"]["spectrum_hosts"][SPECTRUM_HOST] == [SPECTRUM_IP]
    assert doc["network"]["cdn_ips"] == ["127.0.10.1", "127.0.10.2"]


def test_as_json_marks_the_misdirected_host() -> None:
    agg, _ = make()
    agg.ingest("http_requests", http(SPECTRUM_HOST, CDN_IP))
    agg.ingest("http_requests", http(SPECTRUM_HOST, SPECTRUM_IP))
    agg.ingest("http_requests", http("www.example.com", CDN_IP))
    doc = agg.as_json(SNAPSHOT)
    hosts = {h["host"]: h for h in doc["zones"][0]["hosts"]}
    assert hosts[SPECTRUM_HOST]["spectrum_host"] is True
    assert hosts[SPECTRUM_HOST]["misdirected"] == 1
    assert hosts[SPECTRUM_HOST]["by_edge_kind"] == {"cdn": 1, "spectrum": 1}
    assert hosts["www.example.com"]["spectrum_host"] is False
    assert doc["totals"]["misdirected"] == 1
    assert doc["recent_requests"][0]["host"] == "www.example.com"  # newest first


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1_700_000_000_123_456_789, 1_700_000_000_123_456_789),
        (1_700_000_000, 1_700_000_000_000_000_000),
        (1_700_000_000_123, 1_700_000_000_123_000_000),
        ("1700000000123456789", 1_700_000_000_123_456_789),
        ("2023-11-14T22:13:20.123456789Z", 1_700_000_000_123_456_789),
        ("2023-11-14T23:13:20+01:00", 1_700_000_000_000_000_000),
        ("soon", None),
        (None, None),
        (True, None),
        (-1, None),
    ],
)
def test_timestamp_ns(value: Any, expected: int | None) -> None:
    assert timestamp_ns(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("WWW.Example.COM", "www.example.com"), ("a.example.com:8443", "a.example.com"),
     ("a.example.com.", "a.example.com"), ("[2001:db8::1]:443", "2001:db8::1"), ("2001:db8::1", "2001:db8::1"),
     (None, "")],
)
def test_normalise_host(value: Any, expected: str) -> None:
    assert normalise_host(value) == expected
