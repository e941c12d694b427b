"""Prometheus exposition of the aggregate: families, labels, escaping, a parseable document."""

from __future__ import annotations

import re

from edge.config import default_config
from edge.observe_aggregate import Aggregator
from edge.observe_metrics import escape_label, render_metrics, sample
from edge.store import build_snapshot

SNAPSHOT = build_snapshot(default_config(), 1, 0)
APP_ID = SNAPSHOT.config.zones[0].spectrum_apps[0].id or ""

# One exposition line: a comment, or name{labels} value.
LINE = re.compile(
    r'^(# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* .+'
    r'|[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\.)*",?)*\})? -?[0-9.e+]+)$'
)


def aggregate() -> Aggregator:
    agg = Aggregator(lambda: SNAPSHOT)
    agg.ingest("http_requests", {"ClientRequestHost": "spectrum.example.com", "EdgeListenIP": "127.0.10.1",
                                 "EdgeResponseStatus": 200, "ZoneName": "example.com", "RayID": "0" * 16})
    agg.ingest("http_requests", {"ClientRequestHost": "spectrum.example.com", "EdgeListenIP": "127.0.10.1",
                                 "EdgeResponseStatus": 403, "ZoneName": "example.com", "SecurityAction": "block"})
    agg.ingest("firewall_events", {"Action": "block", "Source": "firewallcustom", "RuleID": "r1",
                                   "ClientRequestHost": "spectrum.example.com"})
    agg.ingest("spectrum_events", {"Event": "connect", "Application": APP_ID})
    agg.ingest("spectrum_events", {"Event": "disconnect", "Application": APP_ID, "ClientBytes": 10,
                                   "OriginBytes": 20, "Status": 200, "ConnectTimestamp": 1_700_000_000_000_000_000,
                                   "DisconnectTimestamp": 1_700_000_002_000_000_000})
    agg.ingest("dns_queries", {"View": "internal", "ResponseCode": "NOERROR", "QueryType": "A"})
    return agg


def test_document_is_valid_exposition_with_each_family_declared_once() -> None:
    text = render_metrics(aggregate(), {"http_requests": 2, "dns_queries": 1},
                          app_names={APP_ID: "spectrum.example.com"})
    assert text.endswith("\n")
    lines = text.splitlines()
    bad = [line for line in lines if not LINE.match(line)]
    assert bad == []
    types = [line.split()[2] for line in lines if line.startswith("# TYPE")]
    assert len(types) == len(set(types))
    assert "edge_http_requests_total" in types and "edge_spectrum_connection_duration_seconds" in types


def test_samples() -> None:
    text = render_metrics(aggregate(), {"http_requests": 2}, app_names={APP_ID: "spectrum.example.com"})
    expected = [
        'edge_records_total{dataset="http_requests"} 2',
        'edge_http_requests_total{zone="example.com",host="spectrum.example.com",status="200",edge_kind="cdn",'
        'security_action="none"} 1',
        'edge_http_requests_total{zone="example.com",host="spectrum.example.com",status="403",edge_kind="cdn",'
        'security_action="block"} 1',
        'edge_http_misdirected_requests_total{zone="example.com",host="spectrum.example.com"} 2',
        'edge_firewall_events_total{zone="example.com",action="block",source="firewallcustom"} 1',
        f'edge_spectrum_connections_total{{app="{APP_ID}",hostname="spectrum.example.com"}} 1',
        f'edge_spectrum_connections_open{{app="{APP_ID}",hostname="spectrum.example.com"}} 0',
        f'edge_spectrum_bytes_total{{app="{APP_ID}",direction="ingress"}} 10',
        f'edge_spectrum_bytes_total{{app="{APP_ID}",direction="egress"}} 20',
        f'edge_spectrum_events_total{{app="{APP_ID}",event="disconnect",status="200"}} 1',
        f'edge_spectrum_connection_duration_seconds_sum{{app="{APP_ID}"}} 2',
        f'edge_spectrum_connection_duration_seconds_count{{app="{APP_ID}"}} 1',
        'edge_dns_queries_total{view="internal",rcode="NOERROR"} 1',
    ]
    lines = set(text.splitlines())
    assert [e for e in expected if e not in lines] == []


def test_families_are_declared_before_any_traffic() -> None:
    text = render_metrics(Aggregator(lambda: SNAPSHOT), {})
    assert "# TYPE edge_http_requests_total counter" in text
    assert "# TYPE edge_spectrum_connections_total counter" in text
    assert "edge_observe_record_errors_total 0" in text


def test_label_values_are_escaped() -> None:
    assert escape_label('a"b\\c\nd') == 'a\\"b\\\\c\\nd'
    assert sample("m", {"host": 'x"y'}, 1.5) == 'm{host="x\\"y"} 1.5'
    agg = Aggregator(lambda: SNAPSHOT)
    agg.ingest("http_requests", {"ClientRequestHost": 'evil"\nhost\\', "ZoneName": "example.com"})
    text = render_metrics(agg, {})
    assert [line for line in text.splitlines() if not LINE.match(line)] == []
