"""The API's pure parts: pagination, filters, rendering and config changes."""

from __future__ import annotations

from typing import Any

import pytest

from edge.api import changes
from edge.api.errors import ApiError, Missing, problems_error
from edge.api.filters import filter_records, filter_zones, text_predicate
from edge.api.paging import PageRequest, cursor_page, order_by, paginate, parse_page
from edge.api.render import EPOCH, LOCAL_ACCOUNT_ID, render_record, render_ruleset, render_zone
from edge.config import ConfigError, DnsRecord, EdgeConfig, Problem, build_config, default_config
from edge.store import config_to_data

NOW = "2026-01-02T03:04:05.000000Z"
LATER = "2026-01-02T03:04:06.000000Z"


def rebuilt(config: EdgeConfig) -> EdgeConfig:
    """What the store does with a change's result: re-validate the whole config."""
    return build_config(config_to_data(config))


def zone_id(config: EdgeConfig, name: str = "example.com") -> str:
    return next(z.id or "" for z in config.zones if z.name == name)


# --------------------------------------------------------------------------- paging


@pytest.mark.parametrize(("page", "per_page", "expected", "count", "pages"), [
    (1, 2, [0, 1], 2, 3),
    (3, 2, [4], 1, 3),
    (4, 2, [], 0, 3),  # past the end: empty, so the SDK's auto-pager stops
    (99, 2, [], 0, 3),
    (1, 100, [0, 1, 2, 3, 4], 5, 1),
])
def test_paginate(page: int, per_page: int, expected: list[int], count: int, pages: int) -> None:
    chunk, info = paginate(list(range(5)), PageRequest(page, per_page))
    assert chunk == expected
    assert info == {"page": page, "per_page": per_page, "count": count, "total_count": 5, "total_pages": pages}


def test_paginate_empty_list() -> None:
    assert paginate([], PageRequest(1, 20)) == ([], {"page": 1, "per_page": 20, "count": 0, "total_count": 0,
                                                    "total_pages": 0})


def test_parse_page_defaults_clamps_and_rejects() -> None:
    assert parse_page({}, default_per_page=20, max_per_page=50, code=1) == PageRequest(1, 20)
    assert parse_page({"page": "2.0", "per_page": "500"}, default_per_page=20, max_per_page=50,
                      code=1) == PageRequest(2, 50)
    for bad in ({"page": "0"}, {"page": "x"}, {"per_page": "1.5"}, {"page": "nan"}):
        with pytest.raises(ApiError) as e:
            parse_page(bad, default_per_page=20, max_per_page=50, code=1)
        assert e.value.status == 400 and e.value.errors[0][0] == 1


def test_order_by() -> None:
    keys = {"n": lambda x: x}
    assert order_by([3, 1, 2], {}, keys, code=1) == [3, 1, 2]
    assert order_by([3, 1, 2], {"order": "n"}, keys, code=1) == [1, 2, 3]
    assert order_by([3, 1, 2], {"order": "n", "direction": "desc"}, keys, code=1) == [3, 2, 1]
    with pytest.raises(ApiError):
        order_by([1], {"order": "zz"}, keys, code=1)
    with pytest.raises(ApiError):
        order_by([1], {"direction": "up"}, keys, code=1)


def test_cursor_page_walks_to_the_end() -> None:
    seen, cursor = [], ""
    for _ in range(10):
        chunk, cursor = cursor_page(list("abcde"), cursor, 2)
        seen += chunk
        if not cursor:
            break
    assert seen == list("abcde") and cursor == ""
    with pytest.raises(ApiError):
        cursor_page([1], "garbage", 2)


# --------------------------------------------------------------------------- filters


def records(*specs: tuple[str, str, str]) -> list[DnsRecord]:
    return [DnsRecord(name=n, type=t, content=c, proxied=t == "A" and n.startswith("www"))
            for n, t, c in specs]


RECS = records(("www.example.com", "A", "192.0.2.1"), ("api.example.com", "A", "192.0.2.2"),
               ("example.com", "TXT", "v=spf1 -all"), ("mail.example.com", "CNAME", "mx.example.net"))


@pytest.mark.parametrize(("query", "names"), [
    ({}, ["www.example.com", "api.example.com", "example.com", "mail.example.com"]),
    ({"name": "WWW.example.com."}, ["www.example.com"]),
    ({"name.exact": "api.example.com"}, ["api.example.com"]),
    ({"name.contains": "ai"}, ["mail.example.com"]),
    ({"name.startswith": "a"}, ["api.example.com"]),
    ({"name.endswith": ".example.com"}, ["www.example.com", "api.example.com", "mail.example.com"]),
    ({"type": "a"}, ["www.example.com", "api.example.com"]),
    ({"content.endswith": ".2"}, ["api.example.com"]),
    ({"proxied": "true"}, ["www.example.com"]),
    ({"type": "TXT", "proxied": "true"}, []),
    ({"type": "TXT", "proxied": "true", "match": "any"}, ["www.example.com", "example.com"]),
    ({"order": "name"}, ["api.example.com", "example.com", "mail.example.com", "www.example.com"]),
    ({"order": "type", "direction": "desc"}, ["example.com", "mail.example.com", "www.example.com",
                                              "api.example.com"]),
])
def test_filter_records(query: dict[str, str], names: list[str]) -> None:
    assert [r.name for r in filter_records(RECS, query)] == names


@pytest.mark.parametrize("query", [{"proxied": "maybe"}, {"name.like": "x"}, {"match": "some"}, {"order": "x"}])
def test_filter_records_rejects_bad_queries(query: dict[str, str]) -> None:
    with pytest.raises(ApiError) as e:
        filter_records(RECS, query)
    assert e.value.status == 400


@pytest.mark.parametrize(("spec", "value", "expected"), [
    ("example.com", "EXAMPLE.com", True),
    ("contains:AMP", "example.com", True),
    ("contains_case_sensitive:AMP", "example.com", False),
    ("starts_with:ex", "example.com", True),
    ("ends_with:.net", "example.com", False),
    ("not_equal:example.com", "example.com", False),
    ("weird:thing", "weird:thing", True),
])
def test_text_predicate(spec: str, value: str, expected: bool) -> None:
    assert text_predicate(spec)(value) is expected


def test_filter_zones() -> None:
    config = build_config({"zones": [{"name": "b.com"}, {"name": "a.com", "status": "pending"}]})
    assert [z.name for z in filter_zones(config.zones, {"name": "a.com"})] == ["a.com"]
    assert [z.name for z in filter_zones(config.zones, {"status": "active"})] == ["b.com"]
    assert [z.name for z in filter_zones(config.zones, {"order": "name"})] == ["a.com", "b.com"]
    assert [z.name for z in filter_zones(config.zones, {"account.id": LOCAL_ACCOUNT_ID})] == ["b.com", "a.com"]
    assert filter_zones(config.zones, {"account.id": "f" * 32}) == []
    with pytest.raises(ApiError):
        filter_zones(config.zones, {"status": "sleeping"})


# --------------------------------------------------------------------------- rendering


def test_render_zone_has_every_sdk_field() -> None:
    zone = default_config().zones[0]
    body = render_zone(zone)
    for key in ("id", "account", "created_on", "development_mode", "meta", "modified_on", "name", "name_servers",
                "original_dnshost", "original_name_servers", "original_registrar", "owner", "plan", "status",
                "type", "paused", "permissions", "activated_on"):
        assert key in body, key
    assert body["account"]["id"] == LOCAL_ACCOUNT_ID and body["created_on"] == EPOCH


def test_render_record() -> None:
    config = default_config()
    zone = config.zones[0]
    body = render_record(zone, zone.dns_records[0])
    assert body["name"] == "www.example.com" and body["proxiable"] is True and body["proxied"] is True
    assert body["zone_id"] == zone.id and body["zone_name"] == "example.com" and body["ttl"] == 1
    assert body["tags"] == [] and body["settings"] == {} and body["comment"] is None
    txt = render_record(zone, zone.dns_records[2])
    assert txt["proxiable"] is False


def test_render_ruleset_rules_carry_id_version_and_ref() -> None:
    rs = default_config().zones[0].custom_ruleset
    assert rs is not None
    body = render_ruleset(rs)
    assert body["kind"] == "zone" and body["version"] == "1" and body["phase"] == "http_request_firewall_custom"
    rule = body["rules"][0]
    assert rule["ref"] == rule["id"] and rule["version"] == "1" and rule["enabled"] is False
    assert "rules" not in render_ruleset(rs, with_rules=False)


def test_problems_error_strips_the_zone_prefix_and_keeps_codes() -> None:
    err = problems_error([Problem("zones[0].dns_records[3]", "record already exists", 81057),
                          Problem("zones[2].rulesets.http_request_firewall_custom.rules[1].expression", "bad", None)],
                         20217)
    assert err.status == 400
    assert err.errors == ((81057, "record already exists"), (20217, "rules[1].expression: bad"))
    field = problems_error([Problem("zones[0].spectrum_apps[7].origin_port", "only with origin_dns", 11004)], 1004)
    assert field.errors == ((11004, "origin_port: only with origin_dns"),)


# --------------------------------------------------------------------------- changes


def test_create_zone_and_refuse_a_duplicate() -> None:
    config = default_config()
    new, zid = changes.create_zone(config, {"name": "Example.NET", "account": {"id": LOCAL_ACCOUNT_ID}}, NOW)
    new = rebuilt(new)
    zone = next(z for z in new.zones if z.id == zid)
    assert zone.name == "example.net" and zone.created_on == NOW and len(zid) == 32
    with pytest.raises(ApiError) as e:
        changes.create_zone(new, {"name": "example.net"}, NOW)
    assert e.value.errors[0][0] == 1061
    with pytest.raises(ApiError):
        changes.create_zone(config, {"name": "localhost"}, NOW)
    with pytest.raises(ApiError):
        changes.create_zone(config, {"name": "x.org", "colour": "red"}, NOW)


def test_edit_zone_and_settings() -> None:
    config = default_config()
    zid = zone_id(config)
    paused = changes.edit_zone(config, zid, {"paused": True}, NOW).zones[0]
    assert paused.paused is True and paused.modified_on == NOW
    with pytest.raises(ApiError):
        changes.edit_zone(config, zid, {"name": "other.com"}, NOW)
    new = changes.edit_setting(config, zid, "ssl", {"value": "strict"}, NOW)
    assert new.zones[0].settings.ssl == "strict"
    with pytest.raises(ApiError):
        changes.edit_setting(config, zid, "ssl", {"value": "medium"}, NOW)
    with pytest.raises(Missing):
        changes.edit_setting(config, zid, "nope", {"value": 1}, NOW)
    with pytest.raises(Missing):
        changes.delete_zone(config, "0" * 32)
    assert changes.delete_zone(config, zid).zones == ()


def test_record_create_put_patch_delete() -> None:
    config = default_config()
    zid = zone_id(config)
    new, rid = changes.create_record(config, zid, {"name": "api", "type": "A", "content": "192.0.2.5", "ttl": 1,
                                                   "id": "f" * 32, "zone_name": "ignored"}, NOW)
    new = rebuilt(new)
    rec = next(r for r in new.zones[0].dns_records if r.id == rid)
    assert (rec.name, rec.created_on, rec.modified_on) == ("api.example.com", NOW, NOW)
    assert rid != "f" * 32  # the server owns ids

    put = rebuilt(changes.write_record(new, zid, rid, {"name": "api", "type": "TXT", "content": "hi", "ttl": 60},
                                       LATER, partial=False))
    rec = next(r for r in put.zones[0].dns_records if r.id == rid)
    assert (rec.type, rec.content, rec.ttl, rec.created_on, rec.modified_on) == ("TXT", "hi", 60, NOW, LATER)

    patched = changes.write_record(put, zid, rid, {"comment": "note"}, LATER, partial=True)
    rec = next(r for r in patched.zones[0].dns_records if r.id == rid)
    assert (rec.type, rec.content, rec.comment, rec.comment_modified_on) == ("TXT", "hi", "note", LATER)

    with pytest.raises(ApiError) as e:
        changes.write_record(put, zid, rid, {"ttl": 5}, LATER, partial=True)
    assert e.value.errors[0][1].startswith("ttl:")
    with pytest.raises(Missing) as missing:
        changes.write_record(put, zid, "0" * 32, {}, LATER, partial=True)
    assert missing.value.kind == "record"
    gone = changes.delete_record(put, zid, rid)
    assert all(r.id != rid for r in gone.zones[0].dns_records)


def test_duplicate_record_is_refused_by_the_whole_config_check() -> None:
    config = default_config()
    new, _ = changes.create_record(config, zone_id(config), {"name": "www", "type": "A", "content": "127.0.30.1"},
                                   NOW)
    with pytest.raises(ConfigError) as e:
        rebuilt(new)
    assert [p.code for p in e.value.problems] == [81057]


def app_body(**fields: Any) -> dict[str, Any]:
    return {"protocol": "tcp/2222", "dns": {"type": "CNAME", "name": "git"},
            "origin_direct": ["tcp://127.0.30.2:22"], **fields}


def test_app_create_update_delete() -> None:
    config = default_config()
    zid = zone_id(config)
    new, aid = changes.create_app(config, zid, app_body(), NOW)
    new = rebuilt(new)
    app = next(a for a in new.zones[0].spectrum_apps if a.id == aid)
    assert app.dns.name == "git.example.com" and app.proxy_protocol == "off" and app.created_on == NOW
    patched = rebuilt(changes.write_app(new, zid, aid, {"tls": "full"}, LATER, partial=True))
    app = next(a for a in patched.zones[0].spectrum_apps if a.id == aid)
    assert (app.tls, app.origin_direct, app.created_on, app.modified_on) == (
        "full", ("tcp://127.0.30.2:22",), NOW, LATER)
    put = changes.write_app(patched, zid, aid, app_body(protocol="tcp/2223"), LATER, partial=False)
    app = next(a for a in put.zones[0].spectrum_apps if a.id == aid)
    assert (app.protocol, app.tls) == ("tcp/2223", "off")
    with pytest.raises(ApiError) as e:
        changes.write_app(put, zid, aid, {"dns": {"type": "ADDRESS", "name": "git"},
                                          "edge_ips": {"type": "static", "ips": ["127.0.20.9"]}}, LATER, partial=True)
    assert e.value.errors[0][0] == 11004
    assert all(a.id != aid for a in changes.delete_app(put, zid, aid).zones[0].spectrum_apps)


@pytest.mark.parametrize(("fields", "code"), [
    ({"origin_dns": {"name": "origin", "type": "A"}, "origin_port": 22}, 11000),
    ({"origin_direct": ["tcp://nowhere:22"]}, 11002),
    ({"spp": True}, 10012),
])
def test_app_errors_carry_spectrum_codes(fields: dict[str, Any], code: int) -> None:
    config = default_config()
    with pytest.raises(ApiError) as e:
        changes.create_app(config, zone_id(config), app_body(**fields), NOW)
    assert e.value.errors[0][0] == code


def test_entrypoint_put_versions_rules() -> None:
    config = build_config({"zones": [{"name": "example.org"}]})
    zid = zone_id(config, "example.org")
    rules = [{"action": "block", "expression": 'http.host eq "a.example.org"'},
             {"action": "log", "expression": 'http.host eq "b.example.org"'}]
    first = rebuilt(changes.put_entrypoint(config, zid, "http_request_firewall_custom", {"rules": rules}, NOW))
    rs = first.zones[0].custom_ruleset
    assert rs is not None and rs.version == "1" and rs.last_updated == NOW
    assert [(r.version, r.last_updated) for r in rs.rules] == [("1", NOW), ("1", NOW)]
    echoed = render_ruleset(rs)["rules"]
    echoed[1]["enabled"] = False
    second = rebuilt(changes.put_entrypoint(first, zid, "http_request_firewall_custom", {"rules": echoed}, LATER))
    rs2 = second.zones[0].custom_ruleset
    assert rs2 is not None and rs2.version == "2"
    assert [r.id for r in rs2.rules] == [r.id for r in rs.rules]
    assert [(r.version, r.last_updated) for r in rs2.rules] == [("1", NOW), ("2", LATER)]
    with pytest.raises(ApiError):
        changes.put_entrypoint(config, zid, "http_request_firewall_managed", {"rules": []}, NOW)
    with pytest.raises(ApiError) as e:
        changes.put_entrypoint(config, zid, "http_request_firewall_custom",
                               {"rules": [{"action": "explode", "expression": "true"}, "x"]}, NOW)
    assert [m.split(":")[0] for _, m in e.value.errors] == ["rules[0].action", "rules[1]"]


def test_invalid_expression_is_refused_with_position() -> None:
    config = default_config()
    new = changes.put_entrypoint(config, zone_id(config), "http_request_firewall_custom",
                                 {"rules": [{"action": "block", "expression": "http.host eq"}]}, NOW)
    with pytest.raises(ConfigError) as e:
        rebuilt(new)
    err = problems_error(e.value.problems, 20217)
    code, message = err.errors[0]
    assert code == 20217 and message.startswith("rules[0].expression:") and "position" in message


def test_rule_create_edit_delete_and_positions() -> None:
    config = default_config()
    zid = zone_id(config)
    rs = config.zones[0].custom_ruleset
    assert rs is not None and rs.id is not None
    first = rs.rules[0].id or ""
    after, a = changes.create_rule(config, zid, rs.id, {"action": "log", "expression": "true"}, NOW)
    before, b = changes.create_rule(after, zid, rs.id, {"action": "log", "expression": "ip.src eq 192.0.2.1",
                                                        "position": {"before": first}}, NOW)
    indexed, c = changes.create_rule(before, zid, rs.id, {"action": "log", "expression": "false",
                                                          "position": {"index": 2}}, NOW)
    rules = indexed.zones[0].custom_ruleset.rules  # type: ignore[union-attr]
    assert [r.id for r in rules] == [b, c, first, a]
    assert indexed.zones[0].custom_ruleset.version == "4"  # type: ignore[union-attr]
    moved = changes.edit_rule(indexed, zid, rs.id, a, {"position": {"index": 1}, "description": "moved"}, LATER)
    rules = moved.zones[0].custom_ruleset.rules  # type: ignore[union-attr]
    assert [r.id for r in rules] == [a, b, c, first] and rules[0].description == "moved" and rules[0].version == "2"
    deleted = changes.delete_rule(moved, zid, rs.id, b, LATER)
    assert [r.id for r in deleted.zones[0].custom_ruleset.rules] == [a, c, first]  # type: ignore[union-attr]
    with pytest.raises(Missing):
        changes.delete_rule(moved, zid, rs.id, "0" * 32, LATER)
    with pytest.raises(Missing):
        changes.create_rule(config, zid, "0" * 32, {"action": "log", "expression": "true"}, NOW)
    with pytest.raises(ApiError):
        changes.create_rule(config, zid, rs.id, {"action": "log", "expression": "true",
                                                 "position": {"after": "0" * 32}}, NOW)


def test_lists_and_items() -> None:
    config = default_config()
    new, lid = changes.create_list(config, {"name": "office", "kind": "ip"}, NOW)
    new = changes.write_items(new, lid, [{"ip": "192.0.2.0/24", "comment": "a"}, {"ip": "198.51.100.1"}], NOW,
                              replace=False)
    new = changes.write_items(new, lid, [{"ip": "192.0.2.0/24", "comment": "b"}], LATER, replace=False)
    new = rebuilt(new)
    items = new.lists[0].items
    assert [(i.ip, i.comment) for i in items] == [("192.0.2.0/24", "b"), ("198.51.100.1", "")]
    assert items[0].created_on == NOW and items[0].id and len({i.id for i in items}) == 2
    replaced = changes.write_items(new, lid, [{"ip": "203.0.113.0/24"}], LATER, replace=True)
    assert [i.ip for i in replaced.lists[0].items] == ["203.0.113.0/24"]
    emptied = changes.delete_items(replaced, lid, {"items": [{"id": replaced.lists[0].items[0].id}]}, LATER)
    assert emptied.lists[0].items == ()
    with pytest.raises(ApiError):
        changes.create_list(new, {"name": "office"}, NOW)
    with pytest.raises(ApiError):
        changes.write_items(new, lid, {"ip": "x"}, NOW, replace=False)
    with pytest.raises(ConfigError):
        rebuilt(changes.write_items(new, lid, [{"ip": "not-an-ip"}], NOW, replace=False))
    assert changes.update_list(new, lid, {"description": "d"}, NOW).lists[0].description == "d"
    assert changes.delete_list(new, lid).lists == ()
