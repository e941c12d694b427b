"""Config objects to API v4 JSON, pure.

Every field the SDK's response models declare is present (reference 4.2: the Python SDK tolerates
gaps, stricter clients do not). Objects that came from the config file carry no timestamps;
they render with `EPOCH`.
"""

from __future__ import annotations

import re
from typing import Any

from edge.config import (
    PROXIABLE_TYPES,
    DnsRecord,
    EdgeConfig,
    ListItem,
    Rule,
    Ruleset,
    RulesList,
    SpectrumApp,
    Zone,
    ZoneSettings,
    stable_id,
)

Json = dict[str, Any]

# The single local account every zone and list belongs to (any 32-hex account id is accepted).
LOCAL_ACCOUNT_ID = stable_id("account", "local")
LOCAL_ACCOUNT_NAME = "edge local account"
EPOCH = "1970-01-01T00:00:00Z"
NAME_SERVERS = ("ns1.edge.local", "ns2.edge.local")
FREE_PLAN: Json = {
    "id": "0feeeeeeeeeeeeeeeeeeeeeeeeeeeeee", "name": "Enterprise Website", "price": 0, "currency": "USD",
    "frequency": "", "is_subscribed": True, "can_subscribe": False, "legacy_id": "enterprise",
    "legacy_discount": False, "externally_managed": False,
}
ZONE_PERMISSIONS = ("#zone:read", "#zone:edit", "#dns_records:read", "#dns_records:edit",
                    "#zone_settings:read", "#zone_settings:edit")


def zone_modified_on(zone: Zone) -> str:
    return getattr(zone, "modified_on", None) or zone.created_on or EPOCH


def render_zone(zone: Zone) -> Json:
    created = zone.created_on or EPOCH
    return {
        "id": zone.id,
        "name": zone.name,
        "status": zone.status,
        "paused": bool(getattr(zone, "paused", False)),
        "type": getattr(zone, "type", None) or "full",
        "development_mode": 0,
        "account": {"id": LOCAL_ACCOUNT_ID, "name": LOCAL_ACCOUNT_NAME},
        "owner": {"id": None, "name": None, "type": "user"},
        "meta": {"cdn_only": False, "custom_certificate_quota": 0, "dns_only": False,
                 "foundation_dns": False, "page_rule_quota": 100, "phishing_detected": False, "step": 2},
        "plan": dict(FREE_PLAN),
        "name_servers": list(NAME_SERVERS),
        "original_dnshost": None,
        "original_name_servers": None,
        "original_registrar": None,
        "vanity_name_servers": [],
        "permissions": list(ZONE_PERMISSIONS),
        "activated_on": created,
        "created_on": created,
        "modified_on": zone_modified_on(zone),
        "cname_suffix": None,
        "verification_key": None,
        "tenant": {"id": None, "name": None},
        "tenant_unit": {"id": None},
    }


def render_setting(zone: Zone, setting_id: str) -> Json:
    value = getattr(zone.settings, setting_id)
    if isinstance(value, tuple):
        value = list(value)
    return {"id": setting_id, "value": value, "editable": True, "modified_on": zone_modified_on(zone)}


def setting_ids() -> tuple[str, ...]:
    return tuple(ZoneSettings.model_fields)


def render_record(zone: Zone, record: DnsRecord) -> Json:
    meta: Json = {"auto_added": False, "managed_by_apps": False, "managed_by_argo_tunnel": False}
    if record.meta:
        meta.update(record.meta)
    body: Json = {
        "id": record.id,
        "zone_id": zone.id,
        "zone_name": zone.name,
        "name": record.name,
        "type": record.type,
        "content": record.content,
        "proxiable": record.type in PROXIABLE_TYPES,
        "proxied": record.proxied,
        "ttl": record.ttl,
        "locked": False,
        "comment": record.comment,
        "tags": list(record.tags),
        "settings": dict(record.settings),
        "meta": meta,
        "created_on": record.created_on or EPOCH,
        "modified_on": record.modified_on or record.created_on or EPOCH,
        "comment_modified_on": record.comment_modified_on,
        "tags_modified_on": record.tags_modified_on,
    }
    if record.priority is not None:
        body["priority"] = record.priority
    if record.data is not None:
        body["data"] = dict(record.data)
    return body


def render_app(app: SpectrumApp) -> Json:
    body: Json = app.model_dump(mode="json", exclude_none=True)
    body["created_on"] = app.created_on or EPOCH
    body["modified_on"] = app.modified_on or app.created_on or EPOCH
    return body


def render_rule(rule: Rule, ruleset: Ruleset) -> Json:
    body: Json = {
        "id": rule.id,
        "version": rule.version or "1",
        "action": rule.action,
        "expression": rule.expression,
        "description": rule.description,
        "enabled": rule.enabled,
        "last_updated": rule.last_updated or ruleset.last_updated or EPOCH,
        "ref": rule.ref or rule.id,
    }
    if rule.action_parameters is not None:
        body["action_parameters"] = rule.action_parameters
    if rule.logging is not None:
        body["logging"] = rule.logging.model_dump(mode="json")
    if rule.categories is not None:
        body["categories"] = list(rule.categories)
    return body


def render_ruleset(ruleset: Ruleset, *, with_rules: bool = True) -> Json:
    body: Json = {
        "id": ruleset.id,
        "name": ruleset.name,
        "description": ruleset.description,
        "kind": ruleset.kind,
        "phase": ruleset.phase,
        "version": ruleset.version,
        "last_updated": ruleset.last_updated or EPOCH,
    }
    if with_rules:
        body["rules"] = [render_rule(r, ruleset) for r in ruleset.rules]
    return body


def referencing_filters(config: EdgeConfig, name: str) -> int:
    """How many rules mention `$name` (Cloudflare's num_referencing_filters)."""
    pattern = re.compile(r"\$" + re.escape(name) + r"\b")
    return sum(1 for z in config.zones if z.custom_ruleset is not None
               for r in z.custom_ruleset.rules if pattern.search(r.expression))


def render_list(config: EdgeConfig, lst: RulesList) -> Json:
    return {
        "id": lst.id,
        "name": lst.name,
        "kind": lst.kind,
        "description": lst.description,
        "num_items": len(lst.items),
        "num_referencing_filters": referencing_filters(config, lst.name),
        "created_on": lst.created_on or EPOCH,
        "modified_on": lst.modified_on or lst.created_on or EPOCH,
    }


def render_item(lst: RulesList, item: ListItem) -> Json:
    body: Json = {
        "id": item.id or item_id(lst, item),
        "comment": item.comment,
        "created_on": item.created_on or lst.created_on or EPOCH,
        "modified_on": item.modified_on or item.created_on or lst.created_on or EPOCH,
    }
    if item.ip is not None:
        body["ip"] = item.ip
    if item.hostname is not None:
        body["hostname"] = dict(item.hostname)
    if item.asn is not None:
        body["asn"] = item.asn
    return body


def item_key(item: ListItem) -> str:
    """What makes two items of a list the same item (Cloudflare upserts by value)."""
    if item.ip is not None:
        return "ip:" + item.ip
    if item.hostname is not None:
        return "hostname:" + str(item.hostname.get("url_hostname", ""))
    return "asn:" + str(item.asn)


def item_id(lst: RulesList, item: ListItem) -> str:
    return stable_id("list_item", lst.id or lst.name, item_key(item))
