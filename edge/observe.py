"""Observability on the admin listener: analytics, Prometheus metrics, traces, records, dashboard.

`register(app, ctx)` (called by `edge.admin.build_app`) creates one `Aggregator`, subscribes it
to `ctx.events` (O(1) per record; unsubscribed when the app is cleaned up) and adds:

- `GET /client/v4/zones/{zone_id}/spectrum/analytics/aggregate/current`: Cloudflare's shape, the
  last minute per app. It passes through the API's auth middleware like any `/client/v4` route.
- `GET /analytics`: the whole aggregate as JSON (our own shape).
- `GET /metrics`: Prometheus text exposition.
- `GET /trace/{ray}`: the request's trace (`ray` with or without `-COLO`) and the records logged
  for it; 404 JSON if unknown.
- `GET /traces?limit=N`: the newest traces, newest first (ray id and stages).
- `GET /records/{dataset}?limit=N&Field=value`: the newest N records of a dataset, oldest first,
  optionally only those whose fields equal the given values.
- `GET /` and `/static/*`: the live dashboard.

Everything but the `/client/v4` route is open: the admin listener is loopback-only.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import re
from pathlib import Path
from typing import Any

from aiohttp import web

from edge.events import DATASETS, RING_SIZE
from edge.observe_aggregate import Aggregator, short_ray
from edge.observe_metrics import CONTENT_TYPE, render_metrics
from edge.runtime import RoleContext

STATIC_DIR = Path(__file__).with_name("static")
AGGREGATOR_KEY = web.AppKey("observe_aggregator", Aggregator)
CONTEXT_KEY = web.AppKey("observe_ctx", RoleContext)

API_PREFIX = "/client/v4"
SPECTRUM_CURRENT = "/zones/{zone_id}/spectrum/analytics/aggregate/current"
RAY_RE = re.compile(r"^[0-9a-fA-F]{16}(?:-[A-Za-z]{3})?$")
DEFAULT_RECORDS_LIMIT = 100
NO_STORE = {"Cache-Control": "no-store"}
# The dashboard shows client-controlled strings (Host headers): no inline script, no remote code.
DASHBOARD_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                 "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")

_dumps = functools.partial(json.dumps, default=str, separators=(",", ":"))


def json_response(data: Any, *, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=_dumps, headers=NO_STORE)


def cf_envelope(result: Any, *, status: int = 200, errors: list[dict[str, Any]] | None = None) -> web.Response:
    """Cloudflare API v4 envelope (reference 1.1)."""
    ok = not errors
    body = {"success": ok, "errors": errors or [], "messages": [], "result": result if ok else None}
    return json_response(body, status=status)


def register(app: web.Application, ctx: RoleContext) -> None:
    """Create the aggregator on `ctx.events` and add the observability routes to the admin app."""
    agg = Aggregator(lambda: ctx.store.current)
    unsubscribe = ctx.events.subscribe(agg.ingest)
    ctx.extras["observe"] = agg
    app[AGGREGATOR_KEY] = agg
    app[CONTEXT_KEY] = ctx

    async def on_cleanup(_: web.Application) -> None:
        unsubscribe()
        if ctx.extras.get("observe") is agg:
            del ctx.extras["observe"]

    app.on_cleanup.append(on_cleanup)
    mount_cloudflare_routes(app)
    r = app.router
    r.add_get("/analytics", analytics)
    r.add_get("/metrics", metrics)
    r.add_get("/trace/{ray}", trace)
    r.add_get("/traces", traces)
    r.add_get("/records/{dataset}", records)
    r.add_get("/", dashboard)
    if STATIC_DIR.is_dir():
        r.add_static("/static/", STATIC_DIR, append_version=False)


def mount_cloudflare_routes(app: web.Application) -> None:
    """Add the `/client/v4` route where the API's auth middleware covers it.

    `edge.api` mounts its own sub-application at `/client/v4`; aiohttp resolves a path under a
    sub-application's prefix only inside it (a route on the parent would be shadowed and skip
    its middleware), so the route goes into that sub-application when there is one."""
    for resource in app.router.resources():
        info = resource.get_info()
        sub = info.get("app")
        if isinstance(sub, web.Application) and info.get("prefix") == API_PREFIX:
            if not any(r.canonical == SPECTRUM_CURRENT for r in sub.router.resources()):
                sub.router.add_get(SPECTRUM_CURRENT, spectrum_current)
            return
    app.router.add_get(API_PREFIX + SPECTRUM_CURRENT, spectrum_current)


# --------------------------------------------------------------------------- handlers


async def spectrum_current(request: web.Request) -> web.Response:
    ctx, agg = request.config_dict[CONTEXT_KEY], request.config_dict[AGGREGATOR_KEY]
    snapshot = ctx.store.current
    zone_id = request.match_info["zone_id"]
    zone = snapshot.zones_by_id.get(zone_id)
    if zone is None:
        return cf_envelope(None, status=404, errors=[{
            "code": 7003,
            "message": f"Could not route to {request.path}, perhaps your object identifier is invalid?"}])
    colo = request.query.get("colo_name") or request.query.get("coloName")
    if colo and colo.upper() != snapshot.config.network.colo:
        return cf_envelope([])
    wanted = request.query.get("appID") or request.query.get("app_id_param") or request.query.get("app_id")
    only = {a.strip() for a in wanted.split(",") if a.strip()} if wanted else None
    app_ids = [a.id or "" for a in zone.spectrum_apps]
    return cf_envelope(agg.spectrum_current(app_ids, only=only))


async def analytics(request: web.Request) -> web.Response:
    ctx, agg = request.config_dict[CONTEXT_KEY], request.config_dict[AGGREGATOR_KEY]
    return json_response(agg.as_json(ctx.store.current, records=ctx.events.counts))


async def metrics(request: web.Request) -> web.Response:
    ctx, agg = request.config_dict[CONTEXT_KEY], request.config_dict[AGGREGATOR_KEY]
    names = {a.id or "": a.dns.name for z in ctx.store.current.config.zones for a in z.spectrum_apps}
    text = render_metrics(agg, ctx.events.counts, app_names=names)
    return web.Response(body=text.encode(), headers={"Content-Type": CONTENT_TYPE, **NO_STORE})


async def trace(request: web.Request) -> web.Response:
    ctx, agg = request.config_dict[CONTEXT_KEY], request.config_dict[AGGREGATOR_KEY]
    ray = request.match_info["ray"].strip()
    if not RAY_RE.match(ray):
        return json_response({"error": "not a ray id: expected 16 hex digits, optionally with -COLO",
                              "ray_id": ray}, status=400)
    found = ctx.events.trace(ray.lower())
    if found is None:
        return json_response({"error": "unknown ray id (not seen by this process, or expired)",
                              "ray_id": short_ray(ray)}, status=404)
    body = found.as_json()
    body["colo"] = ctx.store.current.config.network.colo
    entry = agg.rays.get(short_ray(ray))
    body["records"] = entry if entry is not None else {"request": None, "firewall_events": [],
                                                       "spectrum_events": []}
    rid = short_ray(ray)
    request_record = next((r for r in reversed(ctx.events.records("http_requests")) if r.get("RayID") == rid), None)
    if request_record is not None:
        hop = spectrum_hop(request_record, ctx.events.records("spectrum_events"), ctx.store.current)
        if hop:
            body["records"] = {**body["records"], "spectrum_events": hop}
            steps = list(body["steps"])
            # Spectrum's hop belongs right after the CDN dialled it.
            at = next((i + 1 for i, st in enumerate(steps) if st.get("stage") == "origin"), len(steps))
            body["steps"] = [*steps[:at], *spectrum_steps(hop, configured_origins(ctx.store.current)), *steps[at:]]
    return json_response(body)


def spectrum_hop(
    request: dict[str, Any], spectrum_records: list[dict[str, Any]], snapshot: Any
) -> list[dict[str, Any]]:
    """The Spectrum connection(s) a CDN request went through, when its origin was a Spectrum IP.

    Spectrum sees only bytes (often TLS), never the ray id, so the hop is found the way a
    person would: a connection from the CDN egress address to that Spectrum IP and port that was
    open when the request was sent (matched on the CDN's local port too when the trace has it)."""
    origin_ip = str(request.get("OriginIP") or "")
    if not origin_ip:
        return []
    try:
        if not snapshot.is_spectrum_ip(ipaddress.ip_address(origin_ip)):
            return []
    except ValueError:
        return []
    egress = str(request.get("EdgeServerIP") or "")
    start = int(request.get("EdgeStartTimestamp") or 0)
    end = int(request.get("EdgeEndTimestamp") or 0) or start
    local_port = request.get("OriginLocalPort")
    # The latest record of each connection (a disconnect carries the origin and byte counts).
    latest: dict[tuple[Any, Any], dict[str, Any]] = {}
    for r in spectrum_records:
        if r.get("EdgeIP") != origin_ip or r.get("ClientIP") != egress:
            continue
        if local_port is not None and r.get("ClientPort") != local_port:
            continue
        latest[(r.get("ClientPort"), r.get("ConnectTimestamp"))] = r
    found = []
    for r in latest.values():
        opened = int(r.get("ConnectTimestamp") or r.get("Timestamp") or 0)
        ended = int(r.get("DisconnectTimestamp") or 0)
        if opened <= end and (ended == 0 or ended >= start):
            found.append(r)
    return found[-1:] if local_port is not None else found[-3:]


def configured_origins(snapshot: Any) -> dict[str, str]:
    """Each Spectrum app's configured origin, by app id (for a connection still open: its
    connect record was written before the origin was dialled)."""
    out: dict[str, str] = {}
    for zone in snapshot.config.zones:
        for app in zone.spectrum_apps:
            if app.origin_direct:
                text = ", ".join(u.split("://", 1)[-1] for u in app.origin_direct)
            elif app.origin_dns is not None:
                text = f"{app.origin_dns.name}:{app.origin_port}" if app.origin_port else app.origin_dns.name
            else:
                continue
            out[str(app.id)] = text
    return out


def spectrum_steps(hop: list[dict[str, Any]], configured: dict[str, str] | None = None) -> list[dict[str, Any]]:
    steps = []
    for r in hop:
        if r.get("OriginIP"):
            origin = f"{r.get('OriginIP')}:{r.get('OriginPort')}"
        else:
            app_origin = (configured or {}).get(str(r.get("Application")))
            origin = f"{app_origin} (the app's origin; connection still open)" if app_origin else "(connection open)"
        steps.append({
            "stage": "spectrum",
            "decision": "relayed",
            "owner": "spectrum",
            "app": r.get("Application"),
            "hostname": r.get("AppHostname"),
            "edge": f"{r.get('EdgeIP')}:{r.get('EdgePort')}",
            "client": f"{r.get('ClientIP')}:{r.get('ClientPort')} (the CDN egress: who connected)",
            "proxy_protocol": r.get("ProxyProtocol"),
            "origin": origin,
            "event": r.get("Event"),
            "tls": r.get("OriginTlsMode"),
        })
    if len(hop) > 1:
        steps[0]["note"] = "several open connections from the CDN matched; the request used one of them"
    return steps


async def traces(request: web.Request) -> web.Response:
    ctx = request.config_dict[CONTEXT_KEY]
    limit = _limit(request, 50)
    if isinstance(limit, web.Response):
        return limit
    items = [{"ray_id": t.ray_id, "steps": len(t.steps),
              "stages": [s.stage for s in t.steps]} for t in reversed(ctx.events.recent_traces(limit))]
    return json_response(items)


async def records(request: web.Request) -> web.Response:
    ctx = request.config_dict[CONTEXT_KEY]
    dataset = request.match_info["dataset"]
    if dataset not in DATASETS:
        return json_response({"error": f"unknown dataset {dataset!r}", "datasets": list(DATASETS)}, status=404)
    limit = _limit(request, DEFAULT_RECORDS_LIMIT)
    if isinstance(limit, web.Response):
        return limit
    filters = {k: v for k, v in request.query.items() if k != "limit"}
    rows = ctx.events.records(dataset)
    if filters:
        rows = [r for r in rows if all(_field_text(r.get(k)) == v for k, v in filters.items())]
    return json_response(rows[-limit:])


async def dashboard(request: web.Request) -> web.StreamResponse:
    index = STATIC_DIR / "index.html"
    if not index.is_file():
        return web.Response(status=404, text="dashboard assets are not installed\n")
    return web.FileResponse(index, headers={"Content-Security-Policy": DASHBOARD_CSP, **NO_STORE})


def _limit(request: web.Request, default: int) -> int | web.Response:
    text = request.query.get("limit")
    if text is None:
        return default
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        return json_response({"error": f"limit must be a positive integer, got {text!r}"}, status=400)
    return min(n, RING_SIZE)


def _field_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)
