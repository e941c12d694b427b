"""Cloudflare's API v4 under `/client/v4` on the admin listener (role `api`).

Zones (+ settings), DNS records, Spectrum apps, the WAF custom-rules entry point ruleset and
its rules, and account-level IP lists, in the shapes the official SDK expects (reference
sections 1, 2 and 4). Every write goes through `Store.update`, so the API and the config file
reject the same things and a change is live before the response is sent.

Layout: `routes` is the thin HTTP layer; `changes` (config -> config), `render` (config objects
-> JSON), `filters` and `paging` are pure and unit-tested.
"""

from __future__ import annotations

from aiohttp import web

from edge.api.routes import install
from edge.runtime import RoleContext


def register(app: web.Application, ctx: RoleContext) -> None:
    """Add the API to the admin app; its middleware (auth, envelope) covers only `/client/v4`."""
    install(app, ctx)


__all__ = ["register"]
