"""API writes as pure functions `EdgeConfig -> EdgeConfig`.

Each function takes the newest config, the parsed request body and `now` (RFC 3339), and returns
the changed config plus the id of the object it wrote. They check what only they know (the body's
shape, the object exists, fields that may not change) and raise `ApiError` or `Missing`; checks
across objects (duplicate records, Spectrum names, rule expressions, ...) are the store's
`build_config`, run on the whole result.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from cdn.rules import FILTER_PARSE_ERROR_CODE
from edge.api.errors import (
    DNS_VALIDATION,
    INVALID_REQUEST,
    SPECTRUM_UNKNOWN_FIELD,
    ZONE_EXISTS,
    ApiError,
    Missing,
    bad_request,
    problems_error,
)
from edge.api.render import item_id, item_key
from edge.config import (
    DnsRecord,
    EdgeConfig,
    ListItem,
    Problem,
    Rule,
    Ruleset,
    Rulesets,
    RulesList,
    SpectrumApp,
    Zone,
    ZoneSettings,
    _problems_from,
    stable_id,
)

M = TypeVar("M", bound=BaseModel)
Json = dict[str, Any]

PHASE = "http_request_firewall_custom"
# Read-only fields a client may echo back from a GET; the server owns them.
_RECORD_READ_ONLY = frozenset({"id", "created_on", "modified_on", "proxiable", "meta", "zone_id", "zone_name",
                               "locked", "comment_modified_on", "tags_modified_on"})
# Write-only request options Cloudflare takes on records and the emulator has no use for.
_RECORD_IGNORED = frozenset({"private_routing", "include_shadow_metadata"})
_APP_READ_ONLY = frozenset({"id", "created_on", "modified_on"})
_RULE_READ_ONLY = frozenset({"version", "last_updated"})


def validate(model: type[M], data: Any, default_code: int, *, prefix: str = "") -> M:
    """The body as `model`, or a 400 listing every problem with its path."""
    if not isinstance(data, dict):
        raise bad_request(f"{prefix or 'body'}: expected a JSON object, got {type(data).__name__}", default_code)
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise problems_error(_problems_from(e, prefix), default_code) from None


def require_object(body: Any, what: str = "body") -> Json:
    if not isinstance(body, dict):
        raise bad_request(f"{what}: expected a JSON object, got {type(body).__name__}")
    return body


def fqdn(name: str, zone: str) -> str:
    """Relative names and `@` are under the zone, as in Cloudflare's UI and API."""
    name = name.lower().rstrip(".")
    if name in ("@", ""):
        return zone
    if name == zone or name.endswith("." + zone):
        return name
    return f"{name}.{zone}"


def unique_id(taken: set[str], *parts: str) -> str:
    """`stable_id(*parts)`, salted until it is not in `taken`."""
    candidate = stable_id(*parts)
    n = 1
    while candidate in taken:
        candidate = stable_id(*parts, str(n))
        n += 1
    return candidate


# --------------------------------------------------------------------------- zones


def zone_position(config: EdgeConfig, zone_id: str) -> int:
    for i, z in enumerate(config.zones):
        if z.id == zone_id:
            return i
    raise Missing("zone")


def replace_zone(config: EdgeConfig, index: int, zone: Zone) -> EdgeConfig:
    zones = list(config.zones)
    zones[index] = zone
    return config.model_copy(update={"zones": tuple(zones)})


def _zone_fields(now: str) -> Json:
    """Timestamps the Zone model can hold (modified_on only if the config model has it)."""
    return {"modified_on": now} if "modified_on" in Zone.model_fields else {}


def create_zone(config: EdgeConfig, body: Any, now: str) -> tuple[EdgeConfig, str]:
    data = require_object(body)
    unknown = set(data) - {"name", "account", "type", "jump_start"}
    if unknown:
        raise problems_error([Problem(k, "unknown field") for k in sorted(unknown)], INVALID_REQUEST)
    if "name" not in data:
        raise bad_request("name: Field required")
    account = data.get("account")
    if account is not None and not isinstance(account, dict):
        raise bad_request("account: expected an object like {\"id\": \"...\"}")
    ztype = data.get("type", "full")
    if ztype not in ("full", "partial", "secondary", "internal"):
        raise bad_request(f"type: must be one of full, partial, secondary, internal, got {ztype!r}")
    fields: Json = {"name": data["name"], "created_on": now, **_zone_fields(now)}
    if "type" in Zone.model_fields:
        fields["type"] = ztype
    elif ztype != "full":
        raise bad_request(f"type: this edge serves full zones only, got {ztype!r}")
    zone = validate(Zone, fields, INVALID_REQUEST)
    if any(z.name == zone.name for z in config.zones):
        raise bad_request(f"{zone.name} already exists", ZONE_EXISTS)
    zone = zone.model_copy(update={"id": unique_id({z.id or "" for z in config.zones}, "zone", zone.name)})
    return config.model_copy(update={"zones": (*config.zones, zone)}), zone.id or ""


# Zone fields PATCH may set, with the value the emulator implies when its config cannot store them.
_ZONE_PATCHABLE: dict[str, Any] = {"paused": False, "type": "full", "vanity_name_servers": [], "plan": None}


def edit_zone(config: EdgeConfig, zone_id: str, body: Any, now: str) -> EdgeConfig:
    data = require_object(body)
    index = zone_position(config, zone_id)
    zone = config.zones[index]
    problems = []
    update: Json = {}
    for key, value in data.items():
        if key not in _ZONE_PATCHABLE:
            problems.append(Problem(key, "unknown field, or a field this edge cannot change"))
        elif key in Zone.model_fields:
            update[key] = value
        elif key != "plan" and value != _ZONE_PATCHABLE[key]:
            problems.append(Problem(key, f"this edge does not store {key}; only {_ZONE_PATCHABLE[key]!r} is accepted"))
    if problems:
        raise problems_error(problems, INVALID_REQUEST)
    if update:
        merged = {**zone.model_dump(mode="json", exclude_none=True), **update, **_zone_fields(now)}
        zone = validate(Zone, merged, INVALID_REQUEST)
    return replace_zone(config, index, zone)


def delete_zone(config: EdgeConfig, zone_id: str) -> EdgeConfig:
    index = zone_position(config, zone_id)
    zones = config.zones[:index] + config.zones[index + 1:]
    return config.model_copy(update={"zones": zones})


def edit_setting(config: EdgeConfig, zone_id: str, setting_id: str, body: Any, now: str) -> EdgeConfig:
    if setting_id not in ZoneSettings.model_fields:
        raise Missing("setting")
    data = require_object(body)
    unknown = set(data) - {"value", "enabled", "id"}
    if unknown:
        raise problems_error([Problem(k, "unknown field") for k in sorted(unknown)], INVALID_REQUEST)
    if "value" not in data:
        raise bad_request("value: Field required")
    index = zone_position(config, zone_id)
    zone = config.zones[index]
    merged = {**zone.settings.model_dump(mode="json"), setting_id: data["value"]}
    try:
        settings = ZoneSettings.model_validate(merged)
    except ValidationError as e:
        raise problems_error(_problems_from(e), INVALID_REQUEST) from None
    zone = zone.model_copy(update={"settings": settings, **_zone_fields(now)})
    return replace_zone(config, index, zone)


# --------------------------------------------------------------------------- DNS records


def _record_body(body: Any, zone: Zone) -> Json:
    data = require_object(body)
    out = {k: v for k, v in data.items() if k not in _RECORD_READ_ONLY and k not in _RECORD_IGNORED}
    if isinstance(out.get("name"), str):
        out["name"] = fqdn(out["name"], zone.name)
    if out.get("tags") is None:
        out.pop("tags", None)
    if out.get("settings") is None:
        out.pop("settings", None)
    return out


def _record_id(zone: Zone, record: DnsRecord) -> str:
    content = record.content.lower().rstrip(".") if record.type in ("CNAME", "NS", "MX", "PTR") else record.content
    return unique_id({r.id or "" for r in zone.dns_records}, "record", zone.name, record.name, record.type, content)


def record_position(zone: Zone, record_id: str) -> int:
    for i, r in enumerate(zone.dns_records):
        if r.id == record_id:
            return i
    raise Missing("record")


def create_record(config: EdgeConfig, zone_id: str, body: Any, now: str) -> tuple[EdgeConfig, str]:
    index = zone_position(config, zone_id)
    zone = config.zones[index]
    record = validate(DnsRecord, _record_body(body, zone), DNS_VALIDATION)
    record = record.model_copy(update={"id": _record_id(zone, record), "created_on": now, "modified_on": now})
    zone = zone.model_copy(update={"dns_records": (*zone.dns_records, record)})
    return replace_zone(config, index, zone), record.id or ""


def write_record(config: EdgeConfig, zone_id: str, record_id: str, body: Any, now: str, *,
                 partial: bool) -> EdgeConfig:
    """PUT (`partial=False`: the body is the whole record) or PATCH (merge into the current one)."""
    index = zone_position(config, zone_id)
    zone = config.zones[index]
    ri = record_position(zone, record_id)
    old = zone.dns_records[ri]
    data = _record_body(body, zone)
    if partial:
        current = old.model_dump(mode="json", exclude_none=True, exclude=set(_RECORD_READ_ONLY))
        data = {**current, **data}
    record = validate(DnsRecord, data, DNS_VALIDATION)
    update: Json = {"id": old.id, "created_on": old.created_on or now, "modified_on": now}
    if record.comment != old.comment:
        update["comment_modified_on"] = now
    if record.tags != old.tags:
        update["tags_modified_on"] = now
    records = list(zone.dns_records)
    records[ri] = record.model_copy(update=update)
    return replace_zone(config, index, zone.model_copy(update={"dns_records": tuple(records)}))


def delete_record(config: EdgeConfig, zone_id: str, record_id: str) -> EdgeConfig:
    index = zone_position(config, zone_id)
    zone = config.zones[index]
    ri = record_position(zone, record_id)
    records = zone.dns_records[:ri] + zone.dns_records[ri + 1:]
    return replace_zone(config, index, zone.model_copy(update={"dns_records": records}))


# --------------------------------------------------------------------------- Spectrum apps


def _app_body(body: Any, zone: Zone) -> Json:
    data = require_object(body)
    out = {k: v for k, v in data.items() if k not in _APP_READ_ONLY}
    unknown = set(out) - set(SpectrumApp.model_fields)
    if unknown:
        raise ApiError(400, [(SPECTRUM_UNKNOWN_FIELD, f"{k}: unknown field") for k in sorted(unknown)])
    dns = out.get("dns")
    if isinstance(dns, dict) and isinstance(dns.get("name"), str):
        out["dns"] = {**dns, "name": fqdn(dns["name"], zone.name)}
    od = out.get("origin_dns")
    if isinstance(od, dict) and isinstance(od.get("name"), str):
        out["origin_dns"] = {**od, "name": fqdn(od["name"], zone.name)}
    return out


def app_position(zone: Zone, app_id: str) -> int:
    for i, a in enumerate(zone.spectrum_apps):
        if a.id == app_id:
            return i
    raise Missing("app")


def create_app(config: EdgeConfig, zone_id: str, body: Any, now: str) -> tuple[EdgeConfig, str]:
    index = zone_position(config, zone_id)
    zone = config.zones[index]
    app = validate(SpectrumApp, _app_body(body, zone), INVALID_REQUEST)
    app_id = unique_id({a.id or "" for a in zone.spectrum_apps}, "spectrum", zone.name, app.protocol, app.dns.name)
    app = app.model_copy(update={"id": app_id, "created_on": now, "modified_on": now})
    zone = zone.model_copy(update={"spectrum_apps": (*zone.spectrum_apps, app)})
    return replace_zone(config, index, zone), app_id


def write_app(config: EdgeConfig, zone_id: str, app_id: str, body: Any, now: str, *, partial: bool) -> EdgeConfig:
    index = zone_position(config, zone_id)
    zone = config.zones[index]
    ai = app_position(zone, app_id)
    old = zone.spectrum_apps[ai]
    data = _app_body(body, zone)
    if partial:
        current = old.model_dump(mode="json", exclude_none=True, exclude=set(_APP_READ_ONLY))
        data = {**current, **data}
    app = validate(SpectrumApp, data, INVALID_REQUEST)
    if app.dns.type != old.dns.type:
        raise bad_request(f"dns.type: cannot change from {old.dns.type} to {app.dns.type} on update", 11004)
    apps = list(zone.spectrum_apps)
    apps[ai] = app.model_copy(update={"id": old.id, "created_on": old.created_on or now, "modified_on": now})
    return replace_zone(config, index, zone.model_copy(update={"spectrum_apps": tuple(apps)}))


def delete_app(config: EdgeConfig, zone_id: str, app_id: str) -> EdgeConfig:
    index = zone_position(config, zone_id)
    zone = config.zones[index]
    ai = app_position(zone, app_id)
    apps = zone.spectrum_apps[:ai] + zone.spectrum_apps[ai + 1:]
    return replace_zone(config, index, zone.model_copy(update={"spectrum_apps": apps}))


# --------------------------------------------------------------------------- rulesets

_RULE_CONTENT = ("action", "expression", "description", "enabled", "action_parameters", "logging", "categories")


def _rule_changed(old: Rule, new: Rule) -> bool:
    # `ref` renders as the id when unset, so a rule echoed back from a GET is unchanged.
    return ((old.ref or old.id) != (new.ref or new.id)
            or any(getattr(old, f) != getattr(new, f) for f in _RULE_CONTENT))


def _parse_rule(data: Any, prefix: str) -> Rule:
    if not isinstance(data, dict):
        raise bad_request(f"{prefix}: expected a JSON object, got {type(data).__name__}", FILTER_PARSE_ERROR_CODE)
    fields = {k: v for k, v in data.items() if k not in _RULE_READ_ONLY}
    if fields.get("id") == "":
        fields.pop("id")
    return validate(Rule, fields, FILTER_PARSE_ERROR_CODE, prefix=prefix)


def _version_rules(zone: Zone, old: Ruleset | None, rules: Sequence[Rule], version: str, now: str) -> tuple[Rule, ...]:
    """Give new rules an id, version "1" and `now`; changed rules the next version and `now`;
    unchanged ones keep both."""
    before = {r.id: r for r in (old.rules if old else ())}
    taken = set(before) - {None}
    taken_ids: set[str] = {t for t in taken if t}
    out = []
    for i, rule in enumerate(rules):
        prev = before.get(rule.id) if rule.id else None
        if prev is None:
            rid = rule.id or unique_id(taken_ids, "rule", zone.name, version, str(i), rule.expression, rule.action)
            taken_ids.add(rid)
            out.append(rule.model_copy(update={"id": rid, "version": "1", "last_updated": now}))
        elif _rule_changed(prev, rule):
            out.append(rule.model_copy(update={"version": _next(prev.version), "last_updated": now}))
        else:
            out.append(rule.model_copy(update={"version": prev.version or "1",
                                               "last_updated": prev.last_updated or now}))
    ids = [r.id for r in out]
    dupes = sorted({i for i in ids if ids.count(i) > 1 and i})
    if dupes:
        raise bad_request(f"rules: rule id {dupes[0]} is used twice", FILTER_PARSE_ERROR_CODE)
    return tuple(out)


def _next(version: str | None) -> str:
    try:
        return str(int(version or "0") + 1)
    except ValueError:
        return "1"


def _with_ruleset(config: EdgeConfig, index: int, zone: Zone, ruleset: Ruleset) -> EdgeConfig:
    zone = zone.model_copy(update={"rulesets": Rulesets(http_request_firewall_custom=ruleset)})
    return replace_zone(config, index, zone)


def _new_ruleset(zone: Zone, old: Ruleset | None, rules: Sequence[Rule], now: str, **fields: Any) -> Ruleset:
    version = _next(old.version) if old else "1"
    base = old or Ruleset(id=stable_id("ruleset", zone.name, PHASE))
    versioned = _version_rules(zone, old, rules, version, now)
    return base.model_copy(update={**fields, "version": version, "last_updated": now, "rules": versioned})


def put_entrypoint(config: EdgeConfig, zone_id: str, phase: str, body: Any, now: str) -> EdgeConfig:
    """PUT .../phases/{phase}/entrypoint: replace the rules, create the ruleset if missing."""
    if phase != PHASE:
        raise bad_request(f"phase {phase!r} is not supported by this edge; only {PHASE}", FILTER_PARSE_ERROR_CODE)
    data = require_object(body)
    allowed = {"rules", "name", "description", "kind", "phase", "id", "version", "last_updated"}
    unknown = set(data) - allowed
    if unknown:
        raise problems_error([Problem(k, "unknown field") for k in sorted(unknown)], FILTER_PARSE_ERROR_CODE)
    if data.get("kind", "zone") != "zone":
        raise bad_request("kind: a zone entry point ruleset has kind zone", FILTER_PARSE_ERROR_CODE)
    if data.get("phase", PHASE) != PHASE:
        raise bad_request(f"phase: must be {PHASE}", FILTER_PARSE_ERROR_CODE)
    raw_rules = data.get("rules", [])
    if not isinstance(raw_rules, list):
        raise bad_request("rules: expected a list", FILTER_PARSE_ERROR_CODE)
    rules: list[Rule] = []
    problems: list[tuple[int, str]] = []
    for i, raw in enumerate(raw_rules):
        try:
            rules.append(_parse_rule(raw, f"rules[{i}]"))
        except ApiError as e:
            problems.extend(e.errors)
    if problems:
        raise ApiError(400, problems)
    index = zone_position(config, zone_id)
    zone = config.zones[index]
    fields = {k: data[k] for k in ("name", "description") if isinstance(data.get(k), str)}
    return _with_ruleset(config, index, zone, _new_ruleset(zone, zone.custom_ruleset, rules, now, **fields))


def _ruleset_at(config: EdgeConfig, zone_id: str, ruleset_id: str) -> tuple[int, Zone, Ruleset]:
    index = zone_position(config, zone_id)
    zone = config.zones[index]
    rs = zone.custom_ruleset
    if rs is None or rs.id != ruleset_id:
        raise Missing("ruleset")
    return index, zone, rs


def _place(rules: list[Rule], rule: Rule, position: Any) -> list[Rule]:
    """Insert per `position` ({before: id} | {after: id} | {index: n}, index 1 = first; an empty
    before/after means first/last); no position appends."""
    if position is None:
        return [*rules, rule]
    if not isinstance(position, dict) or len(position) != 1:
        raise bad_request("position: expected one of {before: id}, {after: id}, {index: n}", FILTER_PARSE_ERROR_CODE)
    (kind, value), = position.items()
    ids = [r.id for r in rules]
    if kind == "index":
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise bad_request("position.index: expected an integer >= 1", FILTER_PARSE_ERROR_CODE)
        at = min(value - 1, len(rules))
    elif kind in ("before", "after"):
        if not isinstance(value, str):
            raise bad_request(f"position.{kind}: expected a rule id", FILTER_PARSE_ERROR_CODE)
        if value == "":
            at = 0 if kind == "before" else len(rules)
        elif value not in ids:
            raise bad_request(f"position.{kind}: no rule {value} in this ruleset", FILTER_PARSE_ERROR_CODE)
        else:
            at = ids.index(value) + (1 if kind == "after" else 0)
    else:
        raise bad_request(f"position.{kind}: unknown; use before, after or index", FILTER_PARSE_ERROR_CODE)
    return [*rules[:at], rule, *rules[at:]]


def create_rule(config: EdgeConfig, zone_id: str, ruleset_id: str, body: Any, now: str) -> tuple[EdgeConfig, str]:
    index, zone, rs = _ruleset_at(config, zone_id, ruleset_id)
    data = dict(require_object(body))
    position = data.pop("position", None)
    rule = _parse_rule(data, "")
    if rule.id and any(r.id == rule.id for r in rs.rules):
        raise bad_request(f"id: rule {rule.id} already exists in this ruleset", FILTER_PARSE_ERROR_CODE)
    rules = _place(list(rs.rules), rule, position)
    new = _new_ruleset(zone, rs, rules, now)
    placed = next(r for r, orig in zip(new.rules, rules, strict=True) if orig is rule)
    return _with_ruleset(config, index, zone, new), placed.id or ""


def edit_rule(config: EdgeConfig, zone_id: str, ruleset_id: str, rule_id: str, body: Any, now: str) -> EdgeConfig:
    index, zone, rs = _ruleset_at(config, zone_id, ruleset_id)
    ri = next((i for i, r in enumerate(rs.rules) if r.id == rule_id), None)
    if ri is None:
        raise Missing("rule")
    data = dict(require_object(body))
    position = data.pop("position", None)
    old = rs.rules[ri]
    current = old.model_dump(mode="json", exclude_none=True, exclude=set(_RULE_READ_ONLY))
    rule = _parse_rule({**current, **data, "id": rule_id}, "")
    rest = [r for r in rs.rules if r.id != rule_id]
    rules = _place(rest, rule, position) if position is not None else [*rest[:ri], rule, *rest[ri:]]
    return _with_ruleset(config, index, zone, _new_ruleset(zone, rs, rules, now))


def delete_rule(config: EdgeConfig, zone_id: str, ruleset_id: str, rule_id: str, now: str) -> EdgeConfig:
    index, zone, rs = _ruleset_at(config, zone_id, ruleset_id)
    if not any(r.id == rule_id for r in rs.rules):
        raise Missing("rule")
    rules = [r for r in rs.rules if r.id != rule_id]
    return _with_ruleset(config, index, zone, _new_ruleset(zone, rs, rules, now))


def delete_ruleset(config: EdgeConfig, zone_id: str, ruleset_id: str) -> EdgeConfig:
    index, zone, _ = _ruleset_at(config, zone_id, ruleset_id)
    return replace_zone(config, index, zone.model_copy(update={"rulesets": Rulesets()}))


# --------------------------------------------------------------------------- lists


def list_position(config: EdgeConfig, list_id: str) -> int:
    for i, lst in enumerate(config.lists):
        if lst.id == list_id:
            return i
    raise Missing("list")


def _replace_list(config: EdgeConfig, index: int, lst: RulesList) -> EdgeConfig:
    lists = list(config.lists)
    lists[index] = lst
    return config.model_copy(update={"lists": tuple(lists)})


def create_list(config: EdgeConfig, body: Any, now: str) -> tuple[EdgeConfig, str]:
    data = require_object(body)
    unknown = set(data) - {"name", "kind", "description"}
    if unknown:
        raise problems_error([Problem(k, "unknown field") for k in sorted(unknown)], INVALID_REQUEST)
    lst = validate(RulesList, {**data, "created_on": now, "modified_on": now}, INVALID_REQUEST)
    if any(other.name == lst.name for other in config.lists):
        raise bad_request(f"name: a list named {lst.name} already exists", INVALID_REQUEST)
    lst = lst.model_copy(update={"id": unique_id({x.id or "" for x in config.lists}, "list", lst.name)})
    return config.model_copy(update={"lists": (*config.lists, lst)}), lst.id or ""


def update_list(config: EdgeConfig, list_id: str, body: Any, now: str) -> EdgeConfig:
    data = require_object(body)
    unknown = set(data) - {"description"}
    if unknown:
        raise problems_error([Problem(k, "unknown field; only description can change") for k in sorted(unknown)],
                             INVALID_REQUEST)
    description = data.get("description", "")
    if not isinstance(description, str):
        raise bad_request("description: expected a string")
    index = list_position(config, list_id)
    lst = config.lists[index].model_copy(update={"description": description, "modified_on": now})
    return _replace_list(config, index, lst)


def delete_list(config: EdgeConfig, list_id: str) -> EdgeConfig:
    index = list_position(config, list_id)
    return config.model_copy(update={"lists": config.lists[:index] + config.lists[index + 1:]})


def _parse_items(lst: RulesList, body: Any, now: str) -> list[ListItem]:
    if isinstance(body, dict) and isinstance(body.get("items"), list):
        body = body["items"]  # the older `{items: [...]}` form
    if not isinstance(body, list):
        raise bad_request(f"body: expected a JSON array of items, got {type(body).__name__}")
    items: list[ListItem] = []
    problems: list[tuple[int, str]] = []
    for i, raw in enumerate(body):
        try:
            item = validate(ListItem, {k: v for k, v in raw.items() if k not in ("id", "created_on", "modified_on")}
                            if isinstance(raw, dict) else raw, INVALID_REQUEST, prefix=f"[{i}]")
        except ApiError as e:
            problems.extend(e.errors)
            continue
        items.append(item.model_copy(update={"id": item_id(lst, item), "created_on": now, "modified_on": now}))
    if problems:
        raise ApiError(400, problems)
    return items


def _upsert(existing: Sequence[ListItem], new: Sequence[ListItem]) -> tuple[ListItem, ...]:
    """Cloudflare keys items by value: an item already in the list takes the new comment."""
    by_key: dict[str, ListItem] = {item_key(i): i for i in existing}
    for item in new:
        old = by_key.get(item_key(item))
        by_key[item_key(item)] = (item if old is None
                                  else item.model_copy(update={"created_on": old.created_on or item.created_on}))
    return tuple(by_key.values())


def write_items(config: EdgeConfig, list_id: str, body: Any, now: str, *, replace: bool) -> EdgeConfig:
    """POST (append/upsert) or PUT (`replace=True`: the body is the whole list)."""
    index = list_position(config, list_id)
    lst = config.lists[index]
    new = _parse_items(lst, body, now)
    items = _upsert((), new) if replace else _upsert(lst.items, new)
    return _replace_list(config, index, lst.model_copy(update={"items": items, "modified_on": now}))


def delete_items(config: EdgeConfig, list_id: str, body: Any, now: str) -> EdgeConfig:
    """DELETE with `{items: [{id}]}`; ids that are not in the list are ignored, as Cloudflare does."""
    index = list_position(config, list_id)
    lst = config.lists[index]
    data = require_object(body)
    raw = data.get("items")
    if not isinstance(raw, list) or not all(isinstance(i, dict) and isinstance(i.get("id"), str) for i in raw):
        raise bad_request("items: expected a list of {\"id\": \"...\"}")
    doomed = {i["id"] for i in raw}
    kept = tuple(i for i in lst.items if (i.id or item_id(lst, i)) not in doomed)
    return _replace_list(config, index, lst.model_copy(update={"items": kept, "modified_on": now}))

