"""Roles in separate processes on one state directory: the process serving the API still sees
the records and traces of the roles running elsewhere (edge.event_link), so analytics, the
dashboard's data and `/trace` work in the compose `split` profile too.

Two emulators run here on one state directory and one 127.B block, each on its own thread and
loop with its own event sink, exactly as two processes would: A runs api and the demo origins,
B runs the resolver, the CDN and Spectrum."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from edge.pytest_plugin import EdgeFixture, free_block, run_edge


def _get(edge: EdgeFixture, path: str) -> tuple[int, Any]:
    base = edge.api_base.removesuffix("/client/v4")
    request = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {edge.api_token}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        e.close()
        return e.code, None


def _wait(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)  # bounded poll of a condition
    raise AssertionError(f"timed out waiting for {what}")


def test_api_process_sees_records_and_traces_of_the_other_process(tmp_path: Path) -> None:
    block = free_block(150)
    state = tmp_path / "state"
    with (
        run_edge(None, state, block=block, roles=("api", "origins")) as api,
        run_edge(None, state, block=block, roles=("resolver", "cdn", "spectrum")) as traffic,
    ):
        status, headers, body = traffic.request("GET", "spectrum.example.com", "/")
        assert status == 200 and b"https-echo" in body
        ray = headers["cf-ray"].split("-")[0]
        # The request was made in the traffic process...
        assert any(r["RayID"] == ray for r in traffic.events("http_requests"))

        # ...and its trace is served by the api process, with Spectrum's hop joined.
        def trace() -> Any:
            code, doc = _get(api, f"/trace/{ray}")
            if code != 200 or not doc["records"]["spectrum_events"]:
                return None
            return doc

        doc = _wait(trace, 10, "the trace at the api process")
        stages = [s["stage"] for s in doc["steps"]]
        assert stages[:3] == ["sni", "host", "dns"] and "spectrum" in stages, stages
        assert doc["records"]["request"]["host"] == "spectrum.example.com"
        assert any(r["RayID"] == ray for r in api.events("http_requests"))
        assert any(r.get("Event") == "connect" for r in api.events("spectrum_events"))
        # DNS queries answered by the other process's resolver count here too.
        assert api.events("dns_queries") or _wait(lambda: api.events("dns_queries"), 5, "dns_queries")
        # Nothing is logged twice: the api process ingests without re-emitting.
        assert not any(r["RayID"] == ray for r in api.events("firewall_events"))


@pytest.mark.asyncio
async def test_forwarder_holds_records_until_the_api_process_listens(tmp_path: Path) -> None:
    """Records made while no api process listens are held (bounded) and delivered once it does;
    a second inbox on the same state directory does not take over a live one's socket."""
    from edge.event_link import SOCKET_NAME, EventForwarder, open_event_inbox
    from edge.events import EventSink

    forwarder = EventForwarder(tmp_path / SOCKET_NAME)
    forwarder.record("dns_queries", {"n": 1})
    forwarder.flush()  # nobody listens: held, a reconnect is scheduled
    assert forwarder.queued and forwarder.transport is None
    sink = EventSink(log_records=False)
    close = await open_event_inbox(sink, tmp_path)
    assert close is not None
    try:
        assert await open_event_inbox(EventSink(log_records=False), tmp_path) is None  # live: not taken over
        forwarder.record("dns_queries", {"n": 2})
        deadline = asyncio.get_running_loop().time() + 10
        while len(sink.records("dns_queries")) < 2:
            assert asyncio.get_running_loop().time() < deadline, "records not delivered"
            forwarder.flush()
            await asyncio.sleep(0.05)  # bounded poll while the forwarder reconnects
        assert [r["n"] for r in sink.records("dns_queries")] == [1, 2]
        assert forwarder.dropped == 0
    finally:
        forwarder.close()
        close()
    assert not (tmp_path / SOCKET_NAME).exists()
