"""The observability routes on a running admin listener, fed with the seed's records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest
from observe_harness import (
    RAY_BLOCKED,
    RAY_MISDIRECTED,
    RAY_WWW,
    SPECTRUM_HOST,
    admin_base,
    available,
    cdn_ip,
    emit_seed_traffic,
    spectrum_app_id,
    spectrum_ip,
    start_edge,
)


async def get(session: aiohttp.ClientSession, url: str, **kw: Any) -> tuple[int, Any, aiohttp.ClientResponse]:
    async with session.get(url, **kw) as resp:
        if resp.content_type == "application/json":
            return resp.status, await resp.json(), resp
        return resp.status, await resp.text(), resp


@pytest.mark.asyncio
async def test_analytics_shows_the_misdirected_request(tmp_path: Path) -> None:
    async with start_edge(tmp_path / "state") as edge, aiohttp.ClientSession() as s:
        base = admin_base(edge)
        status, before, _ = await get(s, base + "/analytics")
        assert status == 200 and before["totals"]["http_requests"] == 0
        emit_seed_traffic(edge)
        status, doc, resp = await get(s, base + "/analytics")
        assert status == 200 and resp.headers["Cache-Control"] == "no-store"
        zone = doc["zones"][0]
        hosts = {h["host"]: h for h in zone["hosts"]}
        spectrum = hosts[SPECTRUM_HOST]
        assert spectrum["spectrum_host"] is True
        assert spectrum["spectrum_ips"] == [spectrum_ip(edge)]
        assert spectrum["by_edge_kind"] == {"cdn": 2, "spectrum": 1}
        assert spectrum["misdirected"] == 2  # allowed and blocked alike arrived on a CDN IP
        assert spectrum["by_edge_ip"] == {cdn_ip(edge): 2, spectrum_ip(edge): 1}
        assert spectrum["by_security_action"] == {"none": 2, "block": 1}
        assert hosts["www.example.com"]["spectrum_host"] is False and hosts["www.example.com"]["misdirected"] == 0
        assert zone["by_status"] == {"200": 3, "403": 1}
        assert zone["firewall"]["rules"][0]["description"] == "L4-only Spectrum host via CDN"
        assert doc["totals"] == {"http_requests": 4, "misdirected": 2, "firewall_events": 1,
                                 "spectrum_connections": 1, "dns_queries": 2}
        assert doc["records"]["http_requests"] == 4
        apps = {a["app_id"]: a for a in doc["spectrum"]["apps"]}
        app = apps[spectrum_app_id(edge)]
        assert (app["hostname"], app["connections"], app["open"], app["bytes_ingress"], app["bytes_egress"],
                app["duration_avg_ms"]) == (SPECTRUM_HOST, 1, 0, 310, 1200, 40.0)
        assert [r["ray_id"] for r in doc["recent_requests"]] == [RAY_WWW, "8f00c0ffee000003", RAY_BLOCKED,
                                                                 RAY_MISDIRECTED]


@pytest.mark.asyncio
async def test_metrics(tmp_path: Path) -> None:
    async with start_edge(tmp_path / "state") as edge, aiohttp.ClientSession() as s:
        emit_seed_traffic(edge)
        status, text, resp = await get(s, admin_base(edge) + "/metrics")
        assert status == 200
        assert resp.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        lines = set(text.splitlines())
        app = spectrum_app_id(edge)
        for expected in [
            'edge_records_total{dataset="http_requests"} 4',
            'edge_http_requests_total{zone="example.com",host="spectrum.example.com",status="200",'
            'edge_kind="cdn",security_action="none"} 1',
            'edge_http_requests_total{zone="example.com",host="spectrum.example.com",status="200",'
            'edge_kind="spectrum",security_action="none"} 1',
            'edge_http_misdirected_requests_total{zone="example.com",host="spectrum.example.com"} 2',
            f'edge_spectrum_connections_total{{app="{app}",hostname="spectrum.example.com"}} 1',
            f'edge_spectrum_bytes_total{{app="{app}",direction="ingress"}} 310',
            'edge_dns_queries_total{view="internal",rcode="NOERROR"} 1',
        ]:
            assert expected in lines


@pytest.mark.asyncio
async def test_trace_by_ray_with_and_without_colo(tmp_path: Path) -> None:
    async with start_edge(tmp_path / "state") as edge, aiohttp.ClientSession() as s:
        base = admin_base(edge)
        emit_seed_traffic(edge)
        status, plain, _ = await get(s, f"{base}/trace/{RAY_MISDIRECTED}")
        assert status == 200
        status, with_colo, _ = await get(s, f"{base}/trace/{RAY_MISDIRECTED.upper()}-LHR")
        assert status == 200 and with_colo == plain
        assert plain["ray_id"] == RAY_MISDIRECTED
        assert [st["stage"] for st in plain["steps"]] == ["sni", "host", "waf", "dns", "upstream", "spectrum",
                                                          "origin"]
        dns = plain["steps"][3]
        assert (dns["decision"], dns["view"]) == (spectrum_ip(edge), "internal")
        request = plain["records"]["request"]
        assert (request["edge_kind"], request["misdirected"], request["status"]) == ("cdn", True, 200)

        status, blocked, _ = await get(s, f"{base}/trace/{RAY_BLOCKED}")
        assert [f["action"] for f in blocked["records"]["firewall_events"]] == ["block"]

        status, body, _ = await get(s, f"{base}/trace/{'0' * 16}")
        assert status == 404 and body["ray_id"] == "0" * 16 and "unknown" in body["error"]
        status, body, _ = await get(s, f"{base}/trace/not-a-ray")
        assert status == 400

        status, recent, _ = await get(s, f"{base}/traces?limit=2")
        assert status == 200 and [t["ray_id"] for t in recent] == [RAY_WWW, RAY_BLOCKED]


@pytest.mark.asyncio
async def test_records(tmp_path: Path) -> None:
    async with start_edge(tmp_path / "state") as edge, aiohttp.ClientSession() as s:
        base = admin_base(edge)
        emit_seed_traffic(edge)
        status, rows, _ = await get(s, f"{base}/records/http_requests?limit=2")
        assert status == 200 and [r["RayID"] for r in rows] == ["8f00c0ffee000003", RAY_WWW]
        status, rows, _ = await get(s, f"{base}/records/http_requests")
        assert len(rows) == 4
        status, rows, _ = await get(s, f"{base}/records/http_requests?RayID={RAY_BLOCKED}")
        assert [r["EdgeResponseStatus"] for r in rows] == [403]
        status, rows, _ = await get(s, f"{base}/records/spectrum_events?Event=disconnect")
        assert [r["ClientBytes"] for r in rows] == [310]
        status, body, _ = await get(s, f"{base}/records/nope")
        assert status == 404 and "http_requests" in body["datasets"]
        for bad in ("0", "-3", "x"):
            status, body, _ = await get(s, f"{base}/records/http_requests?limit={bad}")
            assert status == 400, bad


@pytest.mark.asyncio
async def test_spectrum_current_is_cloudflare_shaped_behind_the_api_token(tmp_path: Path) -> None:
    async with start_edge(tmp_path / "state") as edge, aiohttp.ClientSession() as s:
        emit_seed_traffic(edge)
        zone_id = edge.snapshot.config.zones[0].id
        url = f"{admin_base(edge)}/client/v4/zones/{zone_id}/spectrum/analytics/aggregate/current"
        auth = {"Authorization": f"Bearer {edge.snapshot.config.api.token}"}
        if available("edge.api"):
            status, body, _ = await get(s, url)
            assert status == 403 and body["success"] is False and body["errors"][0]["code"] == 10000
        status, body, _ = await get(s, url, headers=auth)
        assert status == 200
        assert body == {"success": True, "errors": [], "messages": [], "result": [
            {"appID": spectrum_app_id(edge), "bytesIngress": 310, "bytesEgress": 1200, "connections": 1,
             "durationAvg": 40.0}]}
        status, body, _ = await get(s, url + "?appID=" + "f" * 32, headers=auth)
        assert body["result"] == []
        status, body, _ = await get(s, url + "?colo_name=SJC", headers=auth)
        assert body["result"] == []
        status, body, _ = await get(s, url.replace(zone_id or "", "0" * 32), headers=auth)
        assert status == 404 and body["success"] is False and body["errors"][0]["code"] == 7003


@pytest.mark.asyncio
async def test_dashboard_assets_are_served_locally(tmp_path: Path) -> None:
    async with start_edge(tmp_path / "state") as edge, aiohttp.ClientSession() as s:
        base = admin_base(edge)
        status, html, resp = await get(s, base + "/")
        assert status == 200 and resp.content_type == "text/html"
        assert "default-src 'self'" in resp.headers["Content-Security-Policy"]
        assert 'src="/static/dashboard.js"' in html and "http://" not in html and "https://" not in html
        for asset in ("dashboard.js", "dashboard.css"):
            status, body, _ = await get(s, f"{base}/static/{asset}")
            assert status == 200 and len(body) > 1000
            assert "https://" not in body.replace("http://www.w3.org/2000/svg", "")


@pytest.mark.asyncio
async def test_aggregator_follows_only_its_own_app(tmp_path: Path) -> None:
    async with start_edge(tmp_path / "state") as edge:
        aggregator = edge.ctx.extras["observe"]
        edge.events.emit("http_requests", {"ClientRequestHost": SPECTRUM_HOST, "EdgeListenIP": cdn_ip(edge)})
        assert aggregator.misdirected == 1
    assert "observe" not in edge.ctx.extras  # unsubscribed when the admin app was cleaned up
    edge.events.emit("http_requests", {"ClientRequestHost": SPECTRUM_HOST, "EdgeListenIP": cdn_ip(edge)})
    assert aggregator.misdirected == 1
