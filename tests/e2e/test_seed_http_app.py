"""The seed's rule lets the legitimate L7 path through: a Spectrum `http` app's traffic passes
the CDN pipeline a second time (cf.edge.server_ip = the Spectrum IP) and is not blocked, while
the same hostname reached through a CDN IP is."""

from __future__ import annotations

from typing import Any

import pytest

from edge.config import default_config_text, parse_yaml
from edge.pytest_plugin import EdgeFixture

pytestmark = pytest.mark.e2e
HOST = "app.example.com"


@pytest.fixture
def edge_config() -> Any:
    data = parse_yaml(default_config_text())
    zone = data["zones"][0]
    zone["spectrum_apps"].append({
        "protocol": "tcp/80", "dns": {"type": "CNAME", "name": HOST}, "traffic_type": "http",
        "origin_direct": ["tcp://127.0.30.1:80"],
    })
    zone["rulesets"]["http_request_firewall_custom"]["rules"] = [{
        "action": "block", "description": "L4-only via CDN", "enabled": True,
        "expression": f'(http.host eq "{HOST}" and not cf.edge.server_ip in {{127.0.20.0/24}})',
    }]
    return data


def test_http_app_passes_the_rule_on_its_spectrum_ip_and_is_blocked_via_the_cdn(edge: EdgeFixture) -> None:
    spectrum_ip = str(edge.snapshot.spectrum_hosts[HOST][0])
    status, headers, body = edge.request("GET", HOST, "/through-spectrum", scheme="http", address=spectrum_ip)
    assert status == 200, body
    assert headers["server"] == "cloudflare" and b"cf-connecting-ip" in body.lower()
    record = edge.events("http_requests")[-1]
    assert record["ClientRequestHost"] == HOST and record["SecurityAction"] in ("", "none", None)
    assert record["EdgeListenIP"] == spectrum_ip
    status, _, _ = edge.request("GET", HOST, "/through-cdn", scheme="http")
    assert status == 403
    assert edge.events("firewall_events")[-1]["ClientRequestHost"] == HOST
