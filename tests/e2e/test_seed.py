"""The seed, end to end with the real clients: the misdirected request, its records and trace,
the same hostname on its Spectrum IP, and the WAF rule that cures it (through the pytest plugin)."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from typing import Any

import pytest

from edge.pytest_plugin import EdgeFixture

pytestmark = pytest.mark.e2e


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["curl", "-sS", *args], capture_output=True, text=True, timeout=30)


def admin_get(edge: EdgeFixture, path: str) -> Any:
    api = edge.snapshot.config.api
    with urllib.request.urlopen(f"http://{api.address}:{edge.port(api.port)}{path}", timeout=10) as resp:
        return json.loads(resp.read())


def test_misdirected_request_goes_cdn_then_spectrum_and_is_recorded(edge: EdgeFixture) -> None:
    host = "spectrum.example.com"
    spectrum_ip = str(edge.snapshot.spectrum_hosts[host][0])
    net = edge.snapshot.config.network
    out = curl("-i", *edge.resolve_args(host), edge.url(host, "/seed"))
    assert out.returncode == 0, out.stderr
    head, _, body = out.stdout.partition("\n\n")  # text mode folds CRLF
    assert "server: cloudflare" in head.lower() and "cf-ray:" in head.lower()
    echo = json.loads(body)
    # The HTTPS echo behind Spectrum saw Spectrum's egress as its peer and the CDN's headers.
    assert echo["origin"] == "https-echo"
    assert echo["peer"]["ip"] == str(net.spectrum_egress_ip)
    assert echo["tls"]["sni"] == host
    sent = {k.lower(): v for k, v in echo["headers"]}
    assert sent["cdn-loop"] == "cloudflare; loops=1"
    assert sent["cf-connecting-ip"] == "127.0.0.1"
    request = edge.events("http_requests")[-1]
    assert request["ClientRequestHost"] == host
    assert request["OriginIP"] == spectrum_ip
    assert request["EdgeServerIP"] == str(net.cdn_egress_ip)
    spectrum = [r for r in edge.events("spectrum_events") if r.get("EdgeIP") == spectrum_ip]
    assert spectrum and spectrum[0]["ClientIP"] == str(net.cdn_egress_ip)  # Spectrum's client is the CDN
    trace = admin_get(edge, f"/trace/{request['RayID']}")
    stages = [s["stage"] for s in trace["steps"]]
    assert stages[:2] == ["sni", "host"] and "dns" in stages and "spectrum" in stages
    dns = next(s for s in trace["steps"] if s["stage"] == "dns")
    assert dns["view"] == "internal" and dns["addresses"] == [spectrum_ip]


def test_same_hostname_on_its_spectrum_ip_is_plain_l4(edge: EdgeFixture) -> None:
    host = "spectrum.example.com"
    spectrum_ip = str(edge.snapshot.spectrum_hosts[host][0])
    before = len(edge.events("http_requests"))
    out = curl(*edge.resolve_args(host, address=spectrum_ip), edge.url(host, "/direct"))
    assert out.returncode == 0, out.stderr
    echo = json.loads(out.stdout)
    assert echo["tls"]["sni"] == host
    assert not any(k.lower() == "cf-ray" for k, _ in echo["headers"])  # no CDN on this path
    assert len(edge.events("http_requests")) == before  # and no L7 record


def test_the_waf_rule_blocks_the_cdn_path_and_keeps_the_spectrum_path(edge: EdgeFixture) -> None:
    host = "spectrum.example.com"
    spectrum_ip = str(edge.snapshot.spectrum_hosts[host][0])
    pool = str(edge.snapshot.config.network.spectrum_ips)
    cf = edge.cloudflare()
    zone = next(iter(cf.zones.list(name="example.com")))
    cf.rulesets.phases.update("http_request_firewall_custom", zone_id=zone.id, rules=[{
        "action": "block", "description": "L4-only Spectrum host via CDN", "enabled": True,
        "expression": f'(http.host eq "{host}" and not cf.edge.server_ip in {{{pool}}})'}])
    blocked = curl("-o", "/dev/null", "-w", "%{http_code}", *edge.resolve_args(host), edge.url(host, "/"))
    assert blocked.stdout == "403"
    firewall = edge.events("firewall_events")[-1]
    assert (firewall["Action"], firewall["Source"], firewall["Kind"]) == ("block", "firewallcustom", "firewall")
    request = edge.events("http_requests")[-1]
    assert request["SecurityAction"] == "block" and request["OriginResponseStatus"] == 0
    direct = curl(*edge.resolve_args(host, address=spectrum_ip), edge.url(host, "/"))
    assert json.loads(direct.stdout)["origin"] == "https-echo"
