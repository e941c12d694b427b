"""The dashboard in headless Chromium: what a person sees after the seed's traffic.

Chromium runs the page's JavaScript (`--virtual-time-budget`), then dumps the DOM, which the
test reads by element ids and data attributes; a screenshot is checked to be a real PNG.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest
from observe_harness import (
    RAY_MISDIRECTED,
    SPECTRUM_HOST,
    Node,
    admin_base,
    cdn_ip,
    emit_seed_traffic,
    parse_dom,
    spectrum_app_id,
    spectrum_ip,
    start_edge,
)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Chromium is not installed (DEBIAN_FRONTEND=noninteractive apt-get install -y chromium)")

CHROMIUM_TIMEOUT = 60.0


async def chromium(tmp_path: Path, *args: str) -> bytes:
    """Run headless Chromium to completion without blocking the loop the edge serves on."""
    assert CHROMIUM is not None
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-dev-shm-usage", "--no-proxy-server", f"--user-data-dir={profile}", *args]
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE, env=env)
    try:
        async with asyncio.timeout(CHROMIUM_TIMEOUT):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    return out


async def dump_dom(tmp_path: Path, url: str) -> Node:
    html = await chromium(tmp_path, "--virtual-time-budget=3000", "--dump-dom", url)
    return parse_dom(html.decode())


def host_row(dom: Node, host: str) -> Node:
    rows = [n for n in dom.by_id("hosts").by_attr("data-host", host) if n.tag == "tr"]
    assert len(rows) == 1, f"one row for {host} expected, found {len(rows)}"
    return rows[0]


@pytest.mark.asyncio
async def test_dashboard_marks_the_spectrum_hostname_that_arrived_on_a_cdn_ip(tmp_path: Path) -> None:
    async with start_edge(tmp_path / "state") as edge:
        emit_seed_traffic(edge)
        dom = await dump_dom(tmp_path, admin_base(edge) + "/")

        assert dom.by_id("status").attrs["data-state"] == "ok"
        row = host_row(dom, SPECTRUM_HOST)
        assert row.attrs["data-spectrum-host"] == "true"
        assert row.attrs["data-misdirected"] == "2"
        assert "misdirected" in row.attrs["class"].split()
        text = " ".join(row.text().split())
        assert "Spectrum hostname" in text
        assert "arrived on CDN IP (2): misdirected" in text
        arrivals = {n.attrs["data-arrival"]: " ".join(n.text().split()) for n in row.by_attr("data-arrival")}
        assert arrivals == {"cdn": "CDN IP 2", "spectrum": "Spectrum IP 1"}
        assert row.by_attr("data-badge", "spectrum-hostname")

        www = host_row(dom, "www.example.com")
        assert www.attrs["data-spectrum-host"] == "false" and www.attrs["data-misdirected"] == "0"
        assert "Spectrum hostname" not in www.text() and not www.by_attr("data-flag")

        assert dom.by_id("t-misdirected").text() == "2"
        assert spectrum_ip(edge) in dom.by_attr("data-network", "spectrum")[0].text()
        assert cdn_ip(edge) in dom.by_attr("data-network", "cdn")[0].text()

        apps = {n.attrs["data-app"]: n for n in dom.by_id("spectrum-apps").by_attr("data-app")}
        app = apps[spectrum_app_id(edge)]
        assert app.attrs["data-connections"] == "1" and "1.2 KiB" in app.text()

        waf = dom.by_id("waf-rules").by_attr("data-rule", "a" * 32)
        assert waf and "L4-only Spectrum host via CDN" in waf[0].text()
        assert {n.attrs["data-action"] for n in dom.by_id("waf-chart").by_attr("data-action")} == {"none", "block"}
        assert {n.attrs["data-status"] for n in dom.by_id("status-chart").by_attr("data-status")} == {"200", "403"}

        recent = dom.by_id("recent").by_attr("data-ray", RAY_MISDIRECTED)
        assert len(recent) == 1 and "misdirected" in recent[0].attrs["class"].split()


@pytest.mark.asyncio
async def test_dashboard_opens_a_trace(tmp_path: Path) -> None:
    async with start_edge(tmp_path / "state") as edge:
        emit_seed_traffic(edge)
        dom = await dump_dom(tmp_path, f"{admin_base(edge)}/#trace={RAY_MISDIRECTED}")
    panel = dom.by_id("trace-panel")
    assert "hidden" not in panel.attrs and panel.attrs["data-state"] == "ok"
    assert dom.by_id("trace-ray").text() == RAY_MISDIRECTED
    steps = [n for n in panel.by_attr("data-stage") if n.tag == "li"]
    assert [s.attrs["data-stage"] for s in steps] == ["sni", "host", "waf", "dns", "upstream", "spectrum", "origin"]
    decision = steps[3].find_all(lambda n: n.attrs.get("class") == "decision")[0].text()
    terms = [n.text() for n in steps[3].walk() if n.tag in ("dt", "dd")]
    details = dict(zip(terms[::2], terms[1::2], strict=True))
    assert decision == spectrum_ip(edge)
    assert details["view"] == "internal" and details["answer"] == f'["{spectrum_ip(edge)}"]'
    assert "Spectrum hostname on a CDN IP: misdirected" in dom.by_id("trace-summary").text()


@pytest.mark.asyncio
async def test_dashboard_screenshot(tmp_path: Path) -> None:
    shot = tmp_path / "dashboard.png"
    async with start_edge(tmp_path / "state") as edge:
        emit_seed_traffic(edge)
        await chromium(tmp_path, "--virtual-time-budget=3000", "--hide-scrollbars", f"--screenshot={shot}",
                       "--window-size=1280,1000", admin_base(edge) + "/")
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 20_000  # a rendered page, not a blank one
    keep = os.environ.get("EDGE_DASHBOARD_SCREENSHOT")
    if keep:
        shutil.copyfile(shot, keep)
