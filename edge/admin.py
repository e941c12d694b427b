"""The admin listener (role `api`): `/ready`, `/health`, `/ca.pem`, the Cloudflare API under
`/client/v4` (edge.api), the dashboard, traces and metrics (edge.observe).

aiohttp serves it: a well-kept asyncio HTTP framework whose AppRunner runs on our loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import time

import structlog
from aiohttp import web

from certs.files import write_atomic
from edge.harness import ready_report
from edge.runtime import Bind, RoleContext

log = structlog.get_logger("edge.admin")
CTX_KEY = web.AppKey("ctx", RoleContext)
STARTED_KEY = web.AppKey("started", float)

# Optional route modules; each exposes `register(app: web.Application, ctx: RoleContext) -> None`.
ROUTE_MODULES = ("edge.api", "edge.observe")


async def ready(request: web.Request) -> web.Response:
    report = ready_report(request.app[CTX_KEY])
    return web.json_response(report, status=200 if report["ready"] else 503)


def _udp_flows(ctx: RoleContext) -> int:
    """Live Spectrum UDP flows in this process (0 when the spectrum role runs elsewhere)."""
    spectrum = ctx.extras.get("spectrum")
    listeners = getattr(spectrum, "udp", {})
    return sum(len(listener.flows) for listener in listeners.values())


def _udp_dropped(ctx: RoleContext) -> int:
    """Datagrams Spectrum dropped in this process (a full socket queue, no route, a bad SPP reply)."""
    spectrum = ctx.extras.get("spectrum")
    listeners = getattr(spectrum, "udp", {})
    return sum(listener.dropped_total() for listener in listeners.values())


async def health(request: web.Request) -> web.Response:
    ctx = request.app[CTX_KEY]
    return web.json_response(
        {
            "status": "ok",
            "uptime_s": round(time.monotonic() - request.app[STARTED_KEY], 3),
            "generation": ctx.store.current.generation,
            "connections": len(ctx.connections),
            "udp_flows": _udp_flows(ctx),
            "udp_dropped": _udp_dropped(ctx),
            "tasks": len(asyncio.all_tasks()),
            "records": ctx.events.counts,
        }
    )


async def ca_pem(request: web.Request) -> web.Response:
    path = request.app[CTX_KEY].state_dir / "ca" / "ca.pem"
    try:
        body = path.read_bytes()
    except OSError:
        return web.Response(status=404, text="no CA yet\n")
    return web.Response(body=body, content_type="application/x-pem-file")


def build_app(ctx: RoleContext) -> web.Application:
    app = web.Application(client_max_size=4 * 1024 * 1024)
    app[CTX_KEY] = ctx
    app[STARTED_KEY] = time.monotonic()
    app.router.add_get("/ready", ready)
    app.router.add_get("/health", health)
    app.router.add_get("/ca.pem", ca_pem)
    for name in ROUTE_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:
                continue
            raise
        module.register(app, ctx)
    return app


async def serve_admin(ctx: RoleContext) -> None:
    snapshot = ctx.store.current
    api = snapshot.config.api
    address, port = str(api.address), snapshot.listen_port(api.port)
    runner = web.AppRunner(build_app(ctx), access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    bind = Bind("api", "admin", "tcp", address, port)
    try:
        site = web.TCPSite(runner, address, port, reuse_address=True)
        try:
            await site.start()
        except OSError as e:
            ctx.binds.failed(bind, e, snapshot.port_offset)
            await asyncio.Event().wait()
        ctx.binds.bound(bind, lambda: None)
        # Where this admin listener really is (port offset included), for `edge trace` and scripts.
        host = f"[{address}]" if ":" in address else address
        write_atomic(ctx.state_dir / "admin.url", f"http://{host}:{port}\n".encode(), 0o644)
        ctx.binds.role_ready("api")
        await asyncio.Event().wait()
    finally:
        with contextlib.suppress(Exception):
            await runner.cleanup()
