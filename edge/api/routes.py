"""HTTP handlers for `/client/v4`: parse, call a pure function, answer in the envelope.

Reads use this process's live snapshot; writes go through `Store.update` (validated against the
newest persisted config, atomic, persisted, swapped in) and answer only after it returns, so a
change is live before the client hears about it.
"""

from __future__ import annotations

import json
import os
import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from aiohttp import web

from cdn.rules import FILTER_PARSE_ERROR_CODE
from edge.api import changes
from edge.api.errors import (
    AUTH_ERROR,
    DNS_VALIDATION,
    ENTRYPOINT_MISSING,
    INTERNAL,
    INVALID_REQUEST,
    MALFORMED_JSON,
    METHOD_NOT_ALLOWED,
    NO_ROUTE,
    RECORD_NOT_FOUND,
    ApiError,
    Json,
    Missing,
    bad_request,
    failure,
    not_found,
    problems_error,
    success,
)
from edge.api.filters import filter_records, filter_zones
from edge.api.paging import cursor_page, order_by, paginate, parse_int, parse_page
from edge.api.render import (
    render_app,
    render_item,
    render_list,
    render_record,
    render_ruleset,
    render_setting,
    render_zone,
    setting_ids,
)
from edge.config import ConfigError, EdgeConfig, RulesList, SpectrumApp, Zone
from edge.runtime import RoleContext
from edge.store import Snapshot

log = structlog.get_logger("edge.api")

PREFIX = "/client/v4"
_HEX32 = frozenset("0123456789abcdef")
# Bulk operation ids this process handed out (writes are synchronous, so each is complete).
_MAX_OPERATIONS = 1000

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ChangeFn = Callable[[EdgeConfig], EdgeConfig]


@dataclass
class ApiState:
    ctx: RoleContext
    operations: OrderedDict[str, str] = field(default_factory=OrderedDict)

    @property
    def snapshot(self) -> Snapshot:
        return self.ctx.store.current

    def commit(self, change: ChangeFn, *, default_code: int) -> Snapshot:
        """Apply `change` through the store; a rejected config becomes a 400 listing every problem."""
        try:
            snapshot = self.ctx.store.update(change, source="api")
        except ConfigError as e:
            raise problems_error(e.problems, default_code) from None
        log.info("api.change.applied", generation=snapshot.generation)
        return snapshot

    def new_operation(self, now: str) -> str:
        op_id = secrets.token_hex(16)
        self.operations[op_id] = now
        while len(self.operations) > _MAX_OPERATIONS:
            self.operations.popitem(last=False)
        return op_id


STATE_KEY = web.AppKey("api_state", ApiState)


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def reply(result: Any, result_info: Json | None = None) -> web.Response:
    return web.json_response(success(result, result_info))


async def read_body(request: web.Request) -> Any:
    """The JSON body; an empty body is `{}`; anything unparsable is a 400 that says why."""
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except UnicodeDecodeError:
        raise bad_request("Malformed JSON in request body: not UTF-8", MALFORMED_JSON) from None
    except RecursionError:
        raise bad_request("Malformed JSON in request body: nested too deeply", MALFORMED_JSON) from None
    except json.JSONDecodeError as e:
        raise bad_request(f"Malformed JSON in request body: {e.msg} at line {e.lineno} column {e.colno}",
                          MALFORMED_JSON) from None


def state(request: web.Request) -> ApiState:
    return request.config_dict[STATE_KEY]


def query(request: web.Request) -> dict[str, str]:
    return {k: request.query[k] for k in request.query}


def zone_of(snapshot: Snapshot, zone_id: str) -> Zone:
    zone = snapshot.zones_by_id.get(zone_id)
    if zone is None:
        raise Missing("zone")
    return zone


# --------------------------------------------------------------------------- middlewares


def _authorised(request: web.Request, snapshot: Snapshot) -> bool:
    api = snapshot.config.api
    token = os.environ.get("EDGE_API_TOKEN") or api.token
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return secrets.compare_digest(value.strip().encode(), token.encode())
    email, key = request.headers.get("X-Auth-Email"), request.headers.get("X-Auth-Key")
    # An empty `api.key` in the config turns the email + key scheme off (never "empty matches").
    if email is not None and key is not None and api.key and key.strip():
        return (secrets.compare_digest(email.strip().lower().encode(), api.email.lower().encode())
                and secrets.compare_digest(key.strip().encode(), api.key.encode()))
    return False


def _is_api_path(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


@web.middleware
async def envelope_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Under `/client/v4` (routes of other modules included): authenticate, then turn every
    refusal into the envelope; nothing else escapes. Other paths pass through untouched."""
    if not _is_api_path(request.path):
        return await handler(request)
    try:
        if not _authorised(request, state(request).snapshot):
            raise ApiError.one(403, AUTH_ERROR, "Authentication error")
        return await handler(request)
    except ApiError as e:
        log.info("api.request.rejected", method=request.method, path=request.path, status=e.status,
                 errors=[c for c, _ in e.errors])
        return web.json_response(e.body(), status=e.status)
    except Missing as e:
        if e.kind == "record":
            err = ApiError.one(404, RECORD_NOT_FOUND, "Record does not exist.")
        else:
            err = not_found(request.path)
        return web.json_response(err.body(), status=404)
    except web.HTTPNotFound:
        return web.json_response(failure([{"code": NO_ROUTE, "message": "No route for that URI"}]), status=404)
    except web.HTTPMethodNotAllowed as e:
        allowed = ", ".join(sorted(e.allowed_methods))
        message = f"Method {request.method} not allowed; allowed: {allowed}"
        return web.json_response(failure([{"code": METHOD_NOT_ALLOWED, "message": message}]), status=405)
    except web.HTTPRequestEntityTooLarge:
        return web.json_response(failure([{"code": INVALID_REQUEST, "message": "request body too large"}]),
                                 status=413)
    except web.HTTPException:
        raise
    except Exception:
        # A bug, never user input: log it, and answer in the envelope all the same.
        log.exception("api.request.failed", method=request.method, path=request.path)
        return web.json_response(failure([{"code": INTERNAL, "message": "internal error"}]), status=500)


# --------------------------------------------------------------------------- zones


async def list_zones(request: web.Request) -> web.Response:
    q = query(request)
    zones = filter_zones(state(request).snapshot.config.zones, q)
    page, info = paginate(zones, parse_page(q, default_per_page=20, max_per_page=50, code=INVALID_REQUEST))
    return reply([render_zone(z) for z in page], info)


async def create_zone(request: web.Request) -> web.Response:
    body, now = await read_body(request), now_rfc3339()
    created: list[str] = []

    def change(config: EdgeConfig) -> EdgeConfig:
        new, zone_id = changes.create_zone(config, body, now)
        created.append(zone_id)
        return new

    snap = state(request).commit(change, default_code=INVALID_REQUEST)
    return reply(render_zone(zone_of(snap, created[-1])))


async def get_zone(request: web.Request) -> web.Response:
    return reply(render_zone(zone_of(state(request).snapshot, request.match_info["zone_id"])))


async def edit_zone(request: web.Request) -> web.Response:
    zone_id, body, now = request.match_info["zone_id"], await read_body(request), now_rfc3339()
    snap = state(request).commit(lambda c: changes.edit_zone(c, zone_id, body, now), default_code=INVALID_REQUEST)
    return reply(render_zone(zone_of(snap, zone_id)))


async def delete_zone(request: web.Request) -> web.Response:
    zone_id = request.match_info["zone_id"]
    state(request).commit(lambda c: changes.delete_zone(c, zone_id), default_code=INVALID_REQUEST)
    return reply({"id": zone_id})


async def list_settings(request: web.Request) -> web.Response:
    zone = zone_of(state(request).snapshot, request.match_info["zone_id"])
    return reply([render_setting(zone, s) for s in setting_ids()])


async def get_setting(request: web.Request) -> web.Response:
    zone = zone_of(state(request).snapshot, request.match_info["zone_id"])
    setting_id = request.match_info["setting_id"]
    if setting_id not in setting_ids():
        raise Missing("setting")
    return reply(render_setting(zone, setting_id))


async def edit_setting(request: web.Request) -> web.Response:
    zone_id, setting_id = request.match_info["zone_id"], request.match_info["setting_id"]
    body, now = await read_body(request), now_rfc3339()
    snap = state(request).commit(lambda c: changes.edit_setting(c, zone_id, setting_id, body, now),
                                 default_code=INVALID_REQUEST)
    return reply(render_setting(zone_of(snap, zone_id), setting_id))


# --------------------------------------------------------------------------- DNS records


def _record_reply(snap: Snapshot, zone_id: str, record_id: str) -> web.Response:
    zone = zone_of(snap, zone_id)
    for r in zone.dns_records:
        if r.id == record_id:
            return reply(render_record(zone, r))
    raise Missing("record")


async def list_records(request: web.Request) -> web.Response:
    q = query(request)
    zone = zone_of(state(request).snapshot, request.match_info["zone_id"])
    records = filter_records(zone.dns_records, q)
    page, info = paginate(records, parse_page(q, default_per_page=100, max_per_page=5000, code=DNS_VALIDATION))
    return reply([render_record(zone, r) for r in page], info)


async def create_record(request: web.Request) -> web.Response:
    zone_id, body, now = request.match_info["zone_id"], await read_body(request), now_rfc3339()
    created: list[str] = []

    def change(config: EdgeConfig) -> EdgeConfig:
        new, record_id = changes.create_record(config, zone_id, body, now)
        created.append(record_id)
        return new

    snap = state(request).commit(change, default_code=DNS_VALIDATION)
    return _record_reply(snap, zone_id, created[-1])


async def get_record(request: web.Request) -> web.Response:
    return _record_reply(state(request).snapshot, request.match_info["zone_id"], request.match_info["record_id"])


def _write_record(partial: bool) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        zone_id, record_id = request.match_info["zone_id"], request.match_info["record_id"]
        body, now = await read_body(request), now_rfc3339()
        snap = state(request).commit(
            lambda c: changes.write_record(c, zone_id, record_id, body, now, partial=partial),
            default_code=DNS_VALIDATION)
        return _record_reply(snap, zone_id, record_id)

    return handler


async def delete_record(request: web.Request) -> web.Response:
    zone_id, record_id = request.match_info["zone_id"], request.match_info["record_id"]
    state(request).commit(lambda c: changes.delete_record(c, zone_id, record_id), default_code=DNS_VALIDATION)
    return reply({"id": record_id})


# --------------------------------------------------------------------------- Spectrum apps

APP_ORDER: Mapping[str, Callable[[SpectrumApp], Any]] = {
    "protocol": lambda a: a.protocol,
    "app_id": lambda a: a.id or "",
    "created_on": lambda a: a.created_on or "",
    "modified_on": lambda a: a.modified_on or a.created_on or "",
    "dns": lambda a: a.dns.name,
}


def _app_reply(snap: Snapshot, zone_id: str, app_id: str) -> web.Response:
    for a in zone_of(snap, zone_id).spectrum_apps:
        if a.id == app_id:
            return reply(render_app(a))
    raise Missing("app")


async def list_apps(request: web.Request) -> web.Response:
    q = query(request)
    zone = zone_of(state(request).snapshot, request.match_info["zone_id"])
    apps = order_by(zone.spectrum_apps, q, APP_ORDER, code=INVALID_REQUEST)
    page, info = paginate(apps, parse_page(q, default_per_page=20, max_per_page=100, code=INVALID_REQUEST))
    return reply([render_app(a) for a in page], info)


async def create_app(request: web.Request) -> web.Response:
    zone_id, body, now = request.match_info["zone_id"], await read_body(request), now_rfc3339()
    created: list[str] = []

    def change(config: EdgeConfig) -> EdgeConfig:
        new, app_id = changes.create_app(config, zone_id, body, now)
        created.append(app_id)
        return new

    snap = state(request).commit(change, default_code=INVALID_REQUEST)
    return _app_reply(snap, zone_id, created[-1])


async def get_app(request: web.Request) -> web.Response:
    return _app_reply(state(request).snapshot, request.match_info["zone_id"], request.match_info["app_id"])


def _write_app(partial: bool) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        zone_id, app_id = request.match_info["zone_id"], request.match_info["app_id"]
        body, now = await read_body(request), now_rfc3339()
        snap = state(request).commit(lambda c: changes.write_app(c, zone_id, app_id, body, now, partial=partial),
                                     default_code=INVALID_REQUEST)
        return _app_reply(snap, zone_id, app_id)

    return handler


async def delete_app(request: web.Request) -> web.Response:
    zone_id, app_id = request.match_info["zone_id"], request.match_info["app_id"]
    state(request).commit(lambda c: changes.delete_app(c, zone_id, app_id), default_code=INVALID_REQUEST)
    return reply({"id": app_id})


# --------------------------------------------------------------------------- rulesets


def _ruleset_reply(snap: Snapshot, zone_id: str, ruleset_id: str | None = None) -> web.Response:
    rs = zone_of(snap, zone_id).custom_ruleset
    if rs is None or (ruleset_id is not None and rs.id != ruleset_id):
        raise Missing("ruleset")
    return reply(render_ruleset(rs))


async def list_rulesets(request: web.Request) -> web.Response:
    zone = zone_of(state(request).snapshot, request.match_info["zone_id"])
    found = [render_ruleset(zone.custom_ruleset, with_rules=False)] if zone.custom_ruleset is not None else []
    # CursorPagination (reference 4.3): an empty cursor ends the SDK's iteration.
    return reply(found, {"cursor": "", "count": len(found), "total_count": len(found), "page": 1,
                         "per_page": max(len(found), 1), "total_pages": 1})


async def get_entrypoint(request: web.Request) -> web.Response:
    phase = request.match_info["phase"]
    zone = zone_of(state(request).snapshot, request.match_info["zone_id"])
    rs = zone.custom_ruleset
    if phase != changes.PHASE or rs is None:
        raise ApiError.one(404, ENTRYPOINT_MISSING, f"could not find entrypoint ruleset in the {phase} phase")
    return reply(render_ruleset(rs))


async def put_entrypoint(request: web.Request) -> web.Response:
    zone_id, phase = request.match_info["zone_id"], request.match_info["phase"]
    body, now = await read_body(request), now_rfc3339()
    snap = state(request).commit(lambda c: changes.put_entrypoint(c, zone_id, phase, body, now),
                                 default_code=FILTER_PARSE_ERROR_CODE)
    return _ruleset_reply(snap, zone_id)


async def get_ruleset(request: web.Request) -> web.Response:
    return _ruleset_reply(state(request).snapshot, request.match_info["zone_id"], request.match_info["ruleset_id"])


async def put_ruleset(request: web.Request) -> web.Response:
    zone_id, ruleset_id = request.match_info["zone_id"], request.match_info["ruleset_id"]
    body, now = await read_body(request), now_rfc3339()

    def change(config: EdgeConfig) -> EdgeConfig:
        zone = config.zones[changes.zone_position(config, zone_id)]
        if zone.custom_ruleset is None or zone.custom_ruleset.id != ruleset_id:
            raise Missing("ruleset")
        return changes.put_entrypoint(config, zone_id, changes.PHASE, body, now)

    snap = state(request).commit(change, default_code=FILTER_PARSE_ERROR_CODE)
    return _ruleset_reply(snap, zone_id)


async def delete_ruleset(request: web.Request) -> web.StreamResponse:
    zone_id, ruleset_id = request.match_info["zone_id"], request.match_info["ruleset_id"]
    state(request).commit(lambda c: changes.delete_ruleset(c, zone_id, ruleset_id),
                          default_code=FILTER_PARSE_ERROR_CODE)
    return web.Response(status=204)


async def create_rule(request: web.Request) -> web.Response:
    zone_id, ruleset_id = request.match_info["zone_id"], request.match_info["ruleset_id"]
    body, now = await read_body(request), now_rfc3339()

    def change(config: EdgeConfig) -> EdgeConfig:
        return changes.create_rule(config, zone_id, ruleset_id, body, now)[0]

    snap = state(request).commit(change, default_code=FILTER_PARSE_ERROR_CODE)
    return _ruleset_reply(snap, zone_id)


async def edit_rule(request: web.Request) -> web.Response:
    m = request.match_info
    zone_id, ruleset_id, rule_id = m["zone_id"], m["ruleset_id"], m["rule_id"]
    body, now = await read_body(request), now_rfc3339()
    snap = state(request).commit(lambda c: changes.edit_rule(c, zone_id, ruleset_id, rule_id, body, now),
                                 default_code=FILTER_PARSE_ERROR_CODE)
    return _ruleset_reply(snap, zone_id)


async def delete_rule(request: web.Request) -> web.Response:
    m = request.match_info
    zone_id, ruleset_id, rule_id = m["zone_id"], m["ruleset_id"], m["rule_id"]
    now = now_rfc3339()
    snap = state(request).commit(lambda c: changes.delete_rule(c, zone_id, ruleset_id, rule_id, now),
                                 default_code=FILTER_PARSE_ERROR_CODE)
    return _ruleset_reply(snap, zone_id)


# --------------------------------------------------------------------------- lists


def _account(request: web.Request) -> None:
    """Lists live in the one local account; any 32-hex account id names it."""
    account_id = request.match_info["account_id"]
    if len(account_id) != 32 or not set(account_id) <= _HEX32:
        raise Missing("account")


def _list_of(snap: Snapshot, list_id: str) -> RulesList:
    for lst in snap.config.lists:
        if lst.id == list_id:
            return lst
    raise Missing("list")


async def list_lists(request: web.Request) -> web.Response:
    _account(request)
    config = state(request).snapshot.config
    return reply([render_list(config, lst) for lst in config.lists])


async def create_list(request: web.Request) -> web.Response:
    _account(request)
    body, now = await read_body(request), now_rfc3339()
    created: list[str] = []

    def change(config: EdgeConfig) -> EdgeConfig:
        new, list_id = changes.create_list(config, body, now)
        created.append(list_id)
        return new

    snap = state(request).commit(change, default_code=INVALID_REQUEST)
    return reply(render_list(snap.config, _list_of(snap, created[-1])))


async def get_list(request: web.Request) -> web.Response:
    _account(request)
    snap = state(request).snapshot
    return reply(render_list(snap.config, _list_of(snap, request.match_info["list_id"])))


async def update_list(request: web.Request) -> web.Response:
    _account(request)
    list_id, body, now = request.match_info["list_id"], await read_body(request), now_rfc3339()
    snap = state(request).commit(lambda c: changes.update_list(c, list_id, body, now), default_code=INVALID_REQUEST)
    return reply(render_list(snap.config, _list_of(snap, list_id)))


async def delete_list(request: web.Request) -> web.Response:
    _account(request)
    list_id = request.match_info["list_id"]
    state(request).commit(lambda c: changes.delete_list(c, list_id), default_code=INVALID_REQUEST)
    return reply({"id": list_id})


async def list_items(request: web.Request) -> web.Response:
    _account(request)
    q = query(request)
    lst = _list_of(state(request).snapshot, request.match_info["list_id"])
    items = list(lst.items)
    search = q.get("search")
    if search:
        items = [i for i in items if search.lower() in render_item(lst, i).get("ip", "").lower()
                 or search.lower() in json.dumps(i.hostname or {}).lower() or search == str(i.asn)]
    per_page = parse_int(q, "per_page", 25, minimum=1, maximum=500, code=INVALID_REQUEST)
    page, after = cursor_page(items, q.get("cursor"), per_page)
    cursors = {"after": after} if after else {}
    return reply([render_item(lst, i) for i in page], {"cursors": cursors, "count": len(page)})


async def get_item(request: web.Request) -> web.Response:
    _account(request)
    lst = _list_of(state(request).snapshot, request.match_info["list_id"])
    for item in lst.items:
        rendered = render_item(lst, item)
        if rendered["id"] == request.match_info["item_id"]:
            return reply(rendered)
    raise Missing("item")


def _write_items(kind: str) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        _account(request)
        list_id, body, now = request.match_info["list_id"], await read_body(request), now_rfc3339()

        def change(config: EdgeConfig) -> EdgeConfig:
            if kind == "delete":
                return changes.delete_items(config, list_id, body, now)
            return changes.write_items(config, list_id, body, now, replace=kind == "replace")

        api = state(request)
        api.commit(change, default_code=INVALID_REQUEST)
        # Cloudflare's item writes are asynchronous; ours are done already (reference 4.7).
        return reply({"operation_id": api.new_operation(now_rfc3339())})

    return handler


async def get_operation(request: web.Request) -> web.Response:
    _account(request)
    op_id = request.match_info["operation_id"]
    completed = state(request).operations.get(op_id)
    if completed is None:
        raise Missing("operation")
    return reply({"id": op_id, "status": "completed", "completed": completed})


# --------------------------------------------------------------------------- routing


class _Router:
    """Adds routes under PREFIX on the admin app's router."""

    def __init__(self, app: web.Application) -> None:
        self._router = app.router

    def add_route(self, method: str, path: str, handler: Handler) -> None:
        self._router.add_route(method, PREFIX + path, handler)


def install(app: web.Application, ctx: RoleContext) -> None:
    """Add the API's routes and middleware to the admin app.

    The routes live on the admin app itself under PREFIX (not a sub-application, whose router
    aiohttp freezes when mounted), so other modules may add `/client/v4/...` routes after this;
    the middleware covers them too: auth and envelope by path prefix."""
    app[STATE_KEY] = ApiState(ctx)
    app.middlewares.append(envelope_middleware)
    r = _Router(app)
    r.add_route("GET", "/zones", list_zones)
    r.add_route("POST", "/zones", create_zone)
    r.add_route("GET", "/zones/{zone_id}", get_zone)
    r.add_route("PATCH", "/zones/{zone_id}", edit_zone)
    r.add_route("DELETE", "/zones/{zone_id}", delete_zone)
    r.add_route("GET", "/zones/{zone_id}/settings", list_settings)
    r.add_route("GET", "/zones/{zone_id}/settings/{setting_id}", get_setting)
    r.add_route("PATCH", "/zones/{zone_id}/settings/{setting_id}", edit_setting)

    r.add_route("GET", "/zones/{zone_id}/dns_records", list_records)
    r.add_route("POST", "/zones/{zone_id}/dns_records", create_record)
    r.add_route("GET", "/zones/{zone_id}/dns_records/{record_id}", get_record)
    r.add_route("PUT", "/zones/{zone_id}/dns_records/{record_id}", _write_record(partial=False))
    r.add_route("PATCH", "/zones/{zone_id}/dns_records/{record_id}", _write_record(partial=True))
    r.add_route("DELETE", "/zones/{zone_id}/dns_records/{record_id}", delete_record)

    r.add_route("GET", "/zones/{zone_id}/spectrum/apps", list_apps)
    r.add_route("POST", "/zones/{zone_id}/spectrum/apps", create_app)
    r.add_route("GET", "/zones/{zone_id}/spectrum/apps/{app_id}", get_app)
    r.add_route("PUT", "/zones/{zone_id}/spectrum/apps/{app_id}", _write_app(partial=False))
    r.add_route("PATCH", "/zones/{zone_id}/spectrum/apps/{app_id}", _write_app(partial=True))
    r.add_route("DELETE", "/zones/{zone_id}/spectrum/apps/{app_id}", delete_app)

    r.add_route("GET", "/zones/{zone_id}/rulesets", list_rulesets)
    r.add_route("GET", "/zones/{zone_id}/rulesets/phases/{phase}/entrypoint", get_entrypoint)
    r.add_route("PUT", "/zones/{zone_id}/rulesets/phases/{phase}/entrypoint", put_entrypoint)
    r.add_route("GET", "/zones/{zone_id}/rulesets/{ruleset_id}", get_ruleset)
    r.add_route("PUT", "/zones/{zone_id}/rulesets/{ruleset_id}", put_ruleset)
    r.add_route("DELETE", "/zones/{zone_id}/rulesets/{ruleset_id}", delete_ruleset)
    r.add_route("POST", "/zones/{zone_id}/rulesets/{ruleset_id}/rules", create_rule)
    r.add_route("PATCH", "/zones/{zone_id}/rulesets/{ruleset_id}/rules/{rule_id}", edit_rule)
    r.add_route("DELETE", "/zones/{zone_id}/rulesets/{ruleset_id}/rules/{rule_id}", delete_rule)

    lists = "/accounts/{account_id}/rules/lists"
    r.add_route("GET", lists, list_lists)
    r.add_route("POST", lists, create_list)
    r.add_route("GET", lists + "/bulk_operations/{operation_id}", get_operation)
    r.add_route("GET", lists + "/{list_id}", get_list)
    r.add_route("PUT", lists + "/{list_id}", update_list)
    r.add_route("DELETE", lists + "/{list_id}", delete_list)
    r.add_route("GET", lists + "/{list_id}/items", list_items)
    r.add_route("POST", lists + "/{list_id}/items", _write_items("append"))
    r.add_route("PUT", lists + "/{list_id}/items", _write_items("replace"))
    r.add_route("DELETE", lists + "/{list_id}/items", _write_items("delete"))
    r.add_route("GET", lists + "/{list_id}/items/{item_id}", get_item)
