"""`edge trace`: argument parsing and the tree it prints, from synthetic traces."""

from __future__ import annotations

from typing import Any

import pytest

from edge.trace_cli import (
    Response,
    Target,
    TraceError,
    TraceResult,
    parse_resolve,
    parse_target,
    render_report,
    render_steps,
)

STEPS: list[dict[str, Any]] = [
    {"stage": "sni", "decision": "zone example.com", "at_ms": 0.1, "sni": "spectrum.example.com"},
    {"stage": "waf", "decision": "no rule matched", "at_ms": 0.4, "rules": ["r1"]},
    {"stage": "dns", "decision": "127.0.20.249", "at_ms": 1.25, "view": "internal", "ttl": 300},
    {"stage": "upstream", "decision": "connected", "at_ms": 2},
    {"stage": "spectrum", "decision": "app a0ede8f6", "at_ms": 2.5},
    {"stage": "origin", "decision": "200", "at_ms": 5.0},
]


def test_steps_render_as_a_tree() -> None:
    assert render_steps(STEPS) == [
        "├── sni       zone example.com  +0.1 ms",
        "│             sni: spectrum.example.com",
        "├── waf       no rule matched  +0.4 ms",
        '│             rules: ["r1"]',
        "├── dns       127.0.20.249  +1.2 ms",
        "│             view: internal",
        "│             ttl: 300",
        "├── upstream  connected  +2.0 ms",
        "├── spectrum  app a0ede8f6  +2.5 ms",
        "└── origin    200  +5.0 ms",
    ]


def test_missing_and_odd_step_fields() -> None:
    assert render_steps([]) == ["└── (no steps recorded)"]
    assert render_steps([{"decision": "x", "at_ms": "soon", "detail": {"a": 1}}]) == [
        "└── ?  x", '       detail: {"a":1}']


def response(**more: Any) -> Response:
    base: dict[str, Any] = dict(status=200, reason="OK", version="HTTP/1.1",
                                headers=[("CF-Ray", "0123456789abcdef-LHR")], body_bytes=12,
                                peer="127.0.10.1:443", tls_version="TLSv1.3", connect_ms=1.0, total_ms=3.0)
    base.update(more)
    return Response(**base)


def test_report_shows_where_it_arrived_and_the_path() -> None:
    target = parse_target("https://spectrum.example.com/", parse_resolve(["spectrum.example.com:443:127.0.10.1"]))
    trace = {"ray_id": "0123456789abcdef", "colo": "LHR", "steps": STEPS, "records": {
        "request": {"edge_kind": "cdn", "edge_ip": "127.0.10.1", "edge_port": 443, "misdirected": True,
                    "spectrum_host": True, "zone": "example.com", "status": 200, "origin_ip": "127.0.20.249",
                    "origin_status": 200, "security_action": "none"},
        "firewall_events": [{"action": "log", "rule_id": "r9", "description": "watch"}]}}
    text = render_report(target, response(), TraceResult("http://api", "0123456789abcdef-LHR", trace))
    assert text.splitlines()[:4] == [
        "GET https://spectrum.example.com/",
        "  connected to 127.0.10.1:443 (TLSv1.3, SNI spectrum.example.com) in 1.0 ms",
        "  HTTP/1.1 200 OK in 3.0 ms, 12 body bytes",
        "  cf-ray: 0123456789abcdef-LHR",
    ]
    assert "path of ray 0123456789abcdef (colo LHR)" in text
    assert "  arrived on CDN IP 127.0.10.1:443  <- Spectrum hostname on a CDN IP: misdirected" in text
    assert "  WAF log: rule r9 watch" in text
    assert text.rstrip().endswith("└── origin    200  +5.0 ms")


def test_report_without_trace_shows_the_response() -> None:
    target = parse_target("http://www.example.com:8080/x?y=1", {})
    text = render_report(target, response(headers=[], tls_version=None), TraceResult("", None))
    assert "cf-ray: (none)" in text and "path of ray" not in text


@pytest.mark.parametrize(
    ("url", "resolves", "expected"),
    [
        ("https://spectrum.example.com/", ["spectrum.example.com:443:127.0.10.1"],
         Target("https://spectrum.example.com/", "https", "spectrum.example.com", 443, "/", "127.0.10.1")),
        ("http://www.example.com:8080/a?b=c", ["www.example.com:8080:[::1]"],
         Target("http://www.example.com:8080/a?b=c", "http", "www.example.com", 8080, "/a?b=c", "::1")),
        ("https://WWW.example.com", ["*:443:127.0.10.2,127.0.10.1"],
         Target("https://WWW.example.com", "https", "www.example.com", 443, "/", "127.0.10.2")),
        ("https://www.example.com/", ["www.example.com:80:127.0.10.1"],  # other port: not used
         Target("https://www.example.com/", "https", "www.example.com", 443, "/", "www.example.com")),
    ],
)
def test_parse_target(url: str, resolves: list[str], expected: Target) -> None:
    assert parse_target(url, parse_resolve(resolves)) == expected


def test_host_header_carries_a_non_default_port() -> None:
    assert parse_target("https://a.example.com:8443/", {}).host_header == "a.example.com:8443"
    assert parse_target("https://a.example.com/", {}).host_header == "a.example.com"


@pytest.mark.parametrize(
    ("url", "resolves"),
    [("ftp://x/", []), ("https:///nohost", []), ("https://x:99999/", []), ("https://x/", ["x:443"]),
     ("https://x/", ["x:https:127.0.0.1"]), ("https://x/", [":443:127.0.0.1"])],
)
def test_usage_errors_exit_2(url: str, resolves: list[str]) -> None:
    with pytest.raises(TraceError) as e:
        parse_target(url, parse_resolve(resolves))
    assert e.value.exit_code == 2
