"""Prometheus text exposition (format 0.0.4) of the analytics aggregate, served at `/metrics`.

Every family is written with its `# HELP` and `# TYPE` lines even when it has no samples yet,
so a scraper sees the same families from the first scrape on. Label values are escaped as the
format requires (backslash, double quote, newline).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from edge.observe_aggregate import Aggregator

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def format_value(value: float) -> str:
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return repr(float(value))


def sample(name: str, labels: Mapping[str, Any], value: float) -> str:
    if labels:
        inner = ",".join(f'{k}="{escape_label(str(v))}"' for k, v in labels.items())
        return f"{name}{{{inner}}} {format_value(value)}"
    return f"{name} {format_value(value)}"


class Exposition:
    """Collects families in order and renders them as one text document."""

    def __init__(self) -> None:
        self._lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str,
               samples: Iterable[tuple[Mapping[str, Any], float]], *, suffix: str = "") -> None:
        self._lines.append(f"# HELP {name} {help_text}")
        self._lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            self._lines.append(sample(name + suffix, labels, value))

    def add_samples(self, name: str, samples: Iterable[tuple[Mapping[str, Any], float]]) -> None:
        """More samples of the family just declared (a summary's `_sum` and `_count`)."""
        for labels, value in samples:
            self._lines.append(sample(name, labels, value))

    def render(self) -> str:
        return "\n".join(self._lines) + "\n"


def render_metrics(agg: Aggregator, records: Mapping[str, int], *,
                   app_names: Mapping[str, str] | None = None) -> str:
    """The aggregate as Prometheus text. `records` is the sink's per-dataset record count;
    `app_names` maps a Spectrum app id to its hostname (a label for people, from the config)."""
    names = dict(app_names or {})
    for app_id, st in agg.apps.items():
        names.setdefault(app_id, st.name)
    out = Exposition()
    out.family("edge_records_total", "counter", "Event records emitted, by Logpush dataset.",
               (({"dataset": d}, n) for d, n in sorted(records.items())))
    out.family(
        "edge_http_requests_total", "counter",
        "L7 requests logged by the CDN, by zone, host, edge status, arrival edge IP kind and security action.",
        (({"zone": z, "host": h, "status": s, "edge_kind": k, "security_action": a}, n)
         for (z, h, s, k, a), n in sorted(agg.http_series.items())))
    out.family(
        "edge_http_misdirected_requests_total", "counter",
        "Requests for a Spectrum hostname that arrived on a CDN edge IP (the seed's misdirected request).",
        (({"zone": zone, "host": host}, hs.misdirected)
         for zone, zs in sorted(agg.zones.items()) for host, hs in sorted(zs.hosts.items()) if hs.misdirected))
    out.family("edge_http_requests_by_edge_ip_total", "counter", "L7 requests by the edge IP they arrived on.",
               (({"edge_ip": ip, "edge_kind": s.kind}, s.requests) for ip, s in sorted(agg.edge_ips.items())))
    out.family("edge_firewall_events_total", "counter", "WAF firewall events, by zone, action and source.",
               (({"zone": z, "action": a, "source": s}, n) for (z, a, s), n in sorted(agg.firewall_series.items())))
    apps = sorted(agg.apps.items())
    out.family("edge_spectrum_connections_total", "counter", "Spectrum connections opened, by app id.",
               (({"app": a, "hostname": names.get(a, "")}, st.connections) for a, st in apps))
    out.family("edge_spectrum_connections_open", "gauge", "Spectrum connections opened and not yet closed.",
               (({"app": a, "hostname": names.get(a, "")}, max(st.connections - st.closed, 0)) for a, st in apps))
    out.family("edge_spectrum_bytes_total", "counter",
               "Spectrum bytes by direction: ingress read from clients, egress read from origins.",
               (({"app": a, "direction": d}, v) for a, st in apps
                for d, v in (("ingress", st.bytes_ingress), ("egress", st.bytes_egress))))
    out.family("edge_spectrum_events_total", "counter", "Spectrum events by app, event and status code.",
               (({"app": a, "event": ev, "status": s}, n) for a, st in apps
                for (ev, s), n in sorted(st.by_event_status.items())))
    out.family("edge_spectrum_connection_duration_seconds", "summary",
               "Duration of closed Spectrum connections.",
               (({"app": a}, st.duration_ms_sum / 1000) for a, st in apps), suffix="_sum")
    out.add_samples("edge_spectrum_connection_duration_seconds_count",
                    (({"app": a}, st.durations) for a, st in apps))
    out.family("edge_dns_queries_total", "counter", "DNS queries answered, by view and response code.",
               (({"view": v, "rcode": c}, n) for (v, c), n in sorted(agg.dns.by_view_rcode.items())))
    out.family("edge_dns_queries_by_type_total", "counter", "DNS queries answered, by query type.",
               (({"qtype": t}, n) for t, n in sorted(agg.dns.by_qtype.items())))
    out.family("edge_observe_record_errors_total", "counter",
               "Records the aggregator could not count (see the log).", [({}, agg.errors)])
    return out.render()

