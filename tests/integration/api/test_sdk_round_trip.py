"""The official SDK (5.9, synchronous, run in a thread) against the edge's API over real sockets.

Each test reads like a session at a terminal: create, list, update, delete, and the errors a
client meets, with the exact Cloudflare codes.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from typing import Any

import cloudflare
import httpx
import pytest
from edge_api_harness import TOKEN, Api

from edge.api.render import LOCAL_ACCOUNT_ID
from edge.store import Store


def first_error(exc: cloudflare.APIStatusError) -> dict[str, Any]:
    body = exc.body
    assert isinstance(body, dict)
    errors = body["errors"]
    assert isinstance(errors, list) and errors
    first: dict[str, Any] = errors[0]
    return first


@pytest.mark.asyncio
async def test_zone_and_dns_records_round_trip(api: Api) -> None:
    cf = api.client()
    zone = await asyncio.to_thread(cf.zones.create, account={"id": LOCAL_ACCOUNT_ID}, name="example.net",
                                   type="full")
    assert zone.name == "example.net" and len(zone.id) == 32 and zone.account.id == LOCAL_ACCOUNT_ID
    assert zone.created_on is not None and zone.status == "active"
    assert zone.id in api.edge.store.current.zones_by_id  # live before the answer

    listed = await asyncio.to_thread(lambda: [z.name for z in cf.zones.list(name="example.net")])
    assert listed == ["example.net"]
    contains = await asyncio.to_thread(lambda: sorted(z.name for z in cf.zones.list(name="contains:example")))
    assert contains == ["example.com", "example.net"]
    got = await asyncio.to_thread(cf.zones.get, zone_id=zone.id)
    assert got is not None and got.id == zone.id

    ssl = await asyncio.to_thread(cf.zones.settings.edit, setting_id="ssl", zone_id=zone.id, value="strict")
    assert ssl is not None
    assert api.edge.store.current.zones_by_id[zone.id].settings.ssl == "strict"

    # Five records, two per page: the auto-pager asks for pages 1, 2, 3, 4 and stops on the empty one.
    for i in range(5):
        await asyncio.to_thread(cf.dns.records.create, zone_id=zone.id, name=f"host{i}", type="A",
                                content=f"192.0.2.{i + 1}", ttl=1, proxied=False)
    names = await asyncio.to_thread(
        lambda: [r.name for r in cf.dns.records.list(zone_id=zone.id, per_page=2)])
    assert names == [f"host{i}.example.net" for i in range(5)]
    page3 = await asyncio.to_thread(cf.dns.records.list, zone_id=zone.id, per_page=2, page=4)
    assert page3.result == []

    exact = await asyncio.to_thread(
        lambda: [r.content for r in cf.dns.records.list(zone_id=zone.id, name={"exact": "host3.example.net"})])
    assert exact == ["192.0.2.4"]
    ends = await asyncio.to_thread(
        lambda: [r.name for r in cf.dns.records.list(zone_id=zone.id, content={"endswith": ".5"}, type="A")])
    assert ends == ["host4.example.net"]

    record = await asyncio.to_thread(cf.dns.records.create, zone_id=zone.id, name="www.example.net", type="A",
                                     content="127.0.30.1", ttl=1, proxied=True, comment="web")
    assert record.proxied is True and record.proxiable is True and record.ttl == 1 and record.comment == "web"

    dup = await asyncio.to_thread(_expect, cloudflare.BadRequestError, cf.dns.records.create, zone_id=zone.id,
                                  name="www.example.net", type="A", content="127.0.30.1", ttl=1)
    assert first_error(dup)["code"] == 81057
    clash = await asyncio.to_thread(_expect, cloudflare.BadRequestError, cf.dns.records.create, zone_id=zone.id,
                                    name="www", type="CNAME", content="origin.example.net", ttl=1)
    assert first_error(clash)["code"] == 81053

    put = await asyncio.to_thread(cf.dns.records.update, record.id, zone_id=zone.id, name="www", type="A",
                                  content="127.0.30.2", ttl=300, proxied=False)
    assert (put.id, put.content, put.ttl, put.proxied, put.comment) == (record.id, "127.0.30.2", 300, False, None)
    patched = await asyncio.to_thread(cf.dns.records.edit, record.id, zone_id=zone.id, name="www.example.net",
                                      type="A", ttl=300, comment="patched")
    assert (patched.content, patched.comment) == ("127.0.30.2", "patched")
    live = [r for r in api.edge.store.current.zones_by_id[zone.id].dns_records if r.id == record.id]
    assert [(r.content, r.comment) for r in live] == [("127.0.30.2", "patched")]

    deleted = await asyncio.to_thread(cf.dns.records.delete, record.id, zone_id=zone.id)
    assert deleted is not None and deleted.id == record.id
    missing = await asyncio.to_thread(_expect, cloudflare.NotFoundError, cf.dns.records.get, record.id,
                                      zone_id=zone.id)
    assert first_error(missing)["code"] == 81044

    gone = await asyncio.to_thread(cf.zones.delete, zone_id=zone.id)
    assert gone is not None and gone.id == zone.id
    unknown = await asyncio.to_thread(_expect, cloudflare.NotFoundError, cf.zones.get, zone_id=zone.id)
    assert first_error(unknown)["code"] == 7003


def _expect(kind: type[cloudflare.APIStatusError], fn: Any, *args: Any, **kwargs: Any) -> cloudflare.APIStatusError:
    try:
        fn(*args, **kwargs)
    except kind as e:
        return e
    raise AssertionError(f"{fn} did not raise {kind.__name__}")


@pytest.mark.asyncio
async def test_spectrum_app_round_trip(api: Api) -> None:
    cf = api.client()
    zone_id = api.edge.snapshot.zones_by_name["example.com"].id or ""
    app = await asyncio.to_thread(cf.spectrum.apps.create, zone_id=zone_id, protocol="tcp/2222",
                                  dns={"type": "CNAME", "name": "git.example.com"}, traffic_type="direct",
                                  origin_direct=["tcp://127.0.30.2:22"])
    assert app is not None and len(app.id) == 32
    assert app.created_on is not None and app.modified_on is not None
    raw = app.model_dump()
    assert (raw["proxy_protocol"], raw["tls"], raw["ip_firewall"]) == ("off", "off", False)
    assert (raw["edge_ips"]["type"], raw["edge_ips"]["connectivity"]) == ("dynamic", "all")
    ips = api.edge.store.current.app_ips[app.id]
    assert ips and all(ip in ipaddress.ip_network("127.0.20.0/24") for ip in ips)

    apps = await asyncio.to_thread(lambda: [a.id for a in cf.spectrum.apps.list(zone_id=zone_id, per_page=1)])
    assert len(apps) == 4 and apps[-1] == app.id
    by_dns = await asyncio.to_thread(cf.spectrum.apps.list, zone_id=zone_id, order="dns", direction="desc")
    # Names udp > ssh > spectrum > git: descending by dns puts the new app last.
    assert [a.id for a in by_dns.result][-1] == app.id

    updated = await asyncio.to_thread(cf.spectrum.apps.update, app.id, zone_id=zone_id, protocol="tcp/2222",
                                      dns={"type": "CNAME", "name": "git.example.com"}, traffic_type="direct",
                                      origin_direct=["tcp://127.0.30.2:22"], proxy_protocol="v2")
    assert updated is not None and updated.model_dump()["proxy_protocol"] == "v2"
    assert updated.created_on == app.created_on

    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=api.base_url, headers=headers) as http:
        resp = await http.patch(f"/zones/{zone_id}/spectrum/apps/{app.id}", json={"tls": "full"})
        assert resp.status_code == 200, resp.text
        assert resp.json()["result"]["tls"] == "full" and resp.json()["result"]["proxy_protocol"] == "v2"

    both = await asyncio.to_thread(_expect, cloudflare.BadRequestError, cf.spectrum.apps.create, zone_id=zone_id,
                                   protocol="tcp/2223", dns={"type": "CNAME", "name": "x.example.com"},
                                   traffic_type="direct", origin_direct=["tcp://127.0.30.2:22"],
                                   origin_dns={"name": "origin.example.com"}, origin_port=22)
    assert first_error(both)["code"] == 11000
    static = await asyncio.to_thread(_expect, cloudflare.BadRequestError, cf.spectrum.apps.create, zone_id=zone_id,
                                     protocol="tcp/2224", dns={"type": "CNAME", "name": "y.example.com"},
                                     traffic_type="direct", origin_direct=["tcp://127.0.30.2:22"],
                                     edge_ips={"type": "static", "ips": ["127.0.20.9"]})
    assert first_error(static)["code"] == 11004

    deleted = await asyncio.to_thread(cf.spectrum.apps.delete, app.id, zone_id=zone_id)
    assert deleted is not None and deleted.id == app.id
    assert app.id not in api.edge.store.current.app_ips


@pytest.mark.asyncio
async def test_a_spectrum_name_rejects_a_manual_proxied_record(api: Api) -> None:
    cf = api.client()
    zone_id = api.edge.snapshot.zones_by_name["example.com"].id or ""
    err = await asyncio.to_thread(_expect, cloudflare.BadRequestError, cf.dns.records.create, zone_id=zone_id,
                                  name="spectrum.example.com", type="A", content="127.0.30.1", ttl=1, proxied=True)
    assert first_error(err)["code"] == 81053
    assert "Spectrum" in first_error(err)["message"]


@pytest.mark.asyncio
async def test_waf_entrypoint_and_rules(api: Api) -> None:
    cf = api.client()
    snap = api.edge.snapshot
    zone = snap.zones_by_name["example.com"]
    fresh = await asyncio.to_thread(cf.zones.create, account={"id": LOCAL_ACCOUNT_ID}, name="waf.test")
    missing = await asyncio.to_thread(_expect, cloudflare.NotFoundError, cf.rulesets.phases.get,
                                      "http_request_firewall_custom", zone_id=fresh.id)
    assert first_error(missing) == {"code": 10003,
                                    "message": "could not find entrypoint ruleset in the http_request_firewall_custom phase"}
    listed = await asyncio.to_thread(lambda: list(cf.rulesets.list(zone_id=fresh.id)))
    assert listed == []

    # 5.9 types these results `Union[Ruleset, Optional[object]]` and hands back plain dicts.
    created = plain(await asyncio.to_thread(
        cf.rulesets.phases.update, "http_request_firewall_custom", zone_id=fresh.id,
        rules=[{"action": "block", "expression": 'http.host eq "a.waf.test"', "description": "a"}]))
    assert (created["version"], created["kind"], len(created["rules"])) == ("1", "zone", 1)
    assert fresh.id in api.edge.store.current.rulesets  # compiled and live

    rs = plain(await asyncio.to_thread(
        cf.rulesets.phases.update, "http_request_firewall_custom", zone_id=zone.id,
        rules=[{"action": "block", "expression": '(http.host eq "spectrum.example.com" and not '
                                                  'cf.edge.server_ip in {127.0.20.0/24})', "enabled": True},
               {"action": "log", "expression": 'http.request.uri.path eq "/x"'}]))
    assert rs["version"] == "2" and [r["action"] for r in rs["rules"]] == ["block", "log"]
    first_id, second_id = rs["rules"][0]["id"], rs["rules"][1]["id"]
    live = api.edge.store.current.zones_by_id[zone.id or ""].custom_ruleset
    assert live is not None and [r.id for r in live.rules] == [first_id, second_id]

    bad = await asyncio.to_thread(_expect, cloudflare.BadRequestError, cf.rulesets.phases.update,
                                  "http_request_firewall_custom", zone_id=zone.id,
                                  rules=[{"action": "block", "expression": 'http.host eq "x" and'}])
    err = first_error(bad)
    assert err["code"] == 20217 and err["message"].startswith("rules[0].expression:") and "position" in err["message"]

    appended = plain(await asyncio.to_thread(cf.rulesets.rules.create, rs["id"], zone_id=zone.id, action="block",
                                             expression="ip.src eq 192.0.2.1", position={"before": first_id}))
    assert appended["version"] == "3" and appended["rules"][0]["expression"] == "ip.src eq 192.0.2.1"
    new_id = appended["rules"][0]["id"]
    edited = plain(await asyncio.to_thread(cf.rulesets.rules.edit, new_id, ruleset_id=rs["id"], zone_id=zone.id,
                                           action="block", expression="ip.src eq 192.0.2.2", enabled=False))
    assert [r["id"] for r in edited["rules"]] == [new_id, first_id, second_id]
    assert (edited["rules"][0]["enabled"], edited["rules"][0]["version"]) == (False, "2")
    after_delete = plain(await asyncio.to_thread(cf.rulesets.rules.delete, new_id, ruleset_id=rs["id"],
                                                 zone_id=zone.id))
    assert [r["id"] for r in after_delete["rules"]] == [first_id, second_id] and after_delete["version"] == "5"

    got = plain(await asyncio.to_thread(cf.rulesets.get, rs["id"], zone_id=zone.id))
    assert got["version"] == "5"
    listed_ids = await asyncio.to_thread(lambda: [plain(r)["id"] for r in cf.rulesets.list(zone_id=zone.id)])
    assert listed_ids == [rs["id"]]


def plain(obj: Any) -> dict[str, Any]:
    if isinstance(obj, dict):
        return obj
    dumped: dict[str, Any] = obj.model_dump()
    return dumped


@pytest.mark.asyncio
async def test_lists_and_bulk_operations(api: Api) -> None:
    cf = api.client()
    account = "0123456789abcdef0123456789abcdef"
    lst = await asyncio.to_thread(cf.rules.lists.create, account_id=account, kind="ip", name="office",
                                  description="office ranges")
    assert lst is not None and lst.num_items == 0
    op = await asyncio.to_thread(cf.rules.lists.items.create, lst.id, account_id=account,
                                 body=[{"ip": "192.0.2.0/24", "comment": "hq"}, {"ip": "198.51.100.7"}])
    assert op is not None
    status = await asyncio.to_thread(cf.rules.lists.bulk_operations.get, op.operation_id, account_id=account)
    assert status is not None and status.model_dump()["status"] == "completed"
    items = await asyncio.to_thread(lambda: [i.model_dump().get("ip") for i in
                                             cf.rules.lists.items.list(lst.id, account_id=account, per_page=1)])
    assert items == ["192.0.2.0/24", "198.51.100.7"]
    assert [x.name for x in api.edge.store.current.config.lists] == ["office"]

    # A rule may now use the list.
    zone_id = api.edge.snapshot.zones_by_name["example.com"].id or ""
    await asyncio.to_thread(cf.rulesets.phases.update, "http_request_firewall_custom", zone_id=zone_id,
                            rules=[{"action": "block", "expression": "not ip.src in $office"}])
    got = await asyncio.to_thread(cf.rules.lists.get, lst.id, account_id=account)
    assert got is not None and got.num_items == 2 and got.num_referencing_filters == 1

    await asyncio.to_thread(cf.rules.lists.items.update, lst.id, account_id=account, body=[{"ip": "203.0.113.1"}])
    first = await asyncio.to_thread(lambda: list(cf.rules.lists.items.list(lst.id, account_id=account)))
    item_id = first[0].model_dump()["id"]
    await asyncio.to_thread(cf.rules.lists.items.delete, lst.id, account_id=account, items=[{"id": item_id}])
    assert api.edge.store.current.config.lists[0].items == ()
    updated = await asyncio.to_thread(cf.rules.lists.update, lst.id, account_id=account, description="new")
    assert updated is not None and updated.description == "new"
    assert [x.name for x in await asyncio.to_thread(lambda: list(cf.rules.lists.list(account_id=account)))] == [
        "office"]


@pytest.mark.asyncio
async def test_auth(api: Api) -> None:
    bad = api.client(api_token="wrong")
    err = await asyncio.to_thread(_expect, cloudflare.PermissionDeniedError, lambda: list(bad.zones.list()))
    assert first_error(err) == {"code": 10000, "message": "Authentication error"}
    by_key = api.client(api_email="user@example.com", api_key="edge-local-key")
    assert await asyncio.to_thread(lambda: [z.name for z in by_key.zones.list()]) == ["example.com"]
    async with httpx.AsyncClient(base_url=api.base_url.removesuffix("/client/v4")) as http:
        assert (await http.get("/ready")).status_code == 200
        assert (await http.get("/health")).status_code == 200
        anonymous = await http.get("/client/v4/zones")
        assert anonymous.status_code == 403 and anonymous.json()["errors"][0]["code"] == 10000


@pytest.mark.asyncio
async def test_env_token_overrides_the_config(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGE_API_TOKEN", "from-env")
    await asyncio.to_thread(_expect, cloudflare.PermissionDeniedError, lambda: list(api.client().zones.list()))
    assert await asyncio.to_thread(lambda: len(list(api.client(api_token="from-env").zones.list()))) == 1


@pytest.mark.asyncio
async def test_malformed_requests_are_400_with_every_problem(api: Api) -> None:
    zone_id = api.edge.snapshot.zones_by_name["example.com"].id
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=api.base_url, headers=headers) as http:
        r = await http.get("/no/such/thing")
        assert r.status_code == 404 and r.json() == {
            "success": False, "errors": [{"code": 7000, "message": "No route for that URI"}],
            "messages": [], "result": None}
        r = await http.post(f"/zones/{zone_id}/dns_records", content=b'{"name": ')
        assert r.status_code == 400 and r.json()["errors"][0]["code"] == 6007
        assert "Malformed JSON" in r.json()["errors"][0]["message"]
        r = await http.post(f"/zones/{zone_id}/dns_records",
                            json={"name": "x", "type": "A", "content": "1.2.3.4", "ttl": "soon", "colour": "red"})
        assert r.status_code == 400
        assert [e["message"].split(":")[0] for e in r.json()["errors"]] == ["ttl", "colour"]
        r = await http.post(f"/zones/{zone_id}/dns_records", json=["not", "an", "object"])
        assert r.status_code == 400
        r = await http.get(f"/zones/{zone_id}/dns_records", params={"page": "zero"})
        assert r.status_code == 400
        r = await http.get("/zones/0123456789abcdef0123456789abcdef/dns_records")
        assert r.status_code == 404 and r.json()["errors"][0]["code"] == 7003
        r = await http.delete(f"/zones/{zone_id}/spectrum/apps/0123456789abcdef0123456789abcdef")
        assert r.status_code == 404 and r.json()["errors"][0]["code"] == 7003
        r = await http.request("PUT", "/zones")
        assert r.status_code == 405 and r.json()["success"] is False
        r = await http.patch(f"/zones/{zone_id}/settings/ssl", json={"value": "medium"})
        assert r.status_code == 400 and r.json()["errors"][0]["message"].startswith("ssl:")
        r = await http.post(f"/zones/{zone_id}/spectrum/apps",
                            json={"protocol": "tcp/1", "dns": {"type": "CNAME", "name": "z.example.com"},
                                  "origin_direct": ["tcp://127.0.30.2:1"], "spp": True})
        assert r.status_code == 400 and r.json()["errors"][0]["code"] == 10012
        assert api.edge.store.current.generation == 1  # nothing above changed the config


@pytest.mark.asyncio
async def test_a_second_process_sees_an_api_change_within_100ms(api: Api) -> None:
    other = Store(api.edge.state_dir)
    try:
        other.open_config()
        before = other.current.generation
        zone_id = api.edge.snapshot.zones_by_name["example.com"].id or ""
        cf = api.client()
        await asyncio.to_thread(cf.dns.records.create, zone_id=zone_id, name="fresh", type="A",
                                content="192.0.2.99", ttl=1)
        deadline = time.monotonic() + 0.1
        seen = False
        while time.monotonic() < deadline and not seen:
            seen = other.refresh()
        assert seen, "the second store did not see the change within 100 ms"
        assert other.current.generation > before
        names = {r.name for r in other.current.zones_by_name["example.com"].dns_records}
        assert "fresh.example.com" in names
    finally:
        other.close()


WEIRD_BODIES: list[bytes] = [
    b"", b"null", b"[]", b"[1, 2]", b'"text"', b"42", b"{}", b'{"name": null}', b'{"name": 5, "type": []}',
    b'{"rules": {"a": 1}}', b'{"rules": [null]}', b'{"value": {"x": [1]}}', b'{"position": {"index": true}}',
    b'[{"ip": 5}]', b'{"items": [5]}', b"\xff\xfe", b"[" * 100_000, b'{"ttl": NaN}',
    b'{"dns": "x", "protocol": 5, "origin_direct": "tcp://1.2.3.4:1"}',
]


@pytest.mark.asyncio
async def test_no_body_makes_a_5xx(api: Api) -> None:
    """User input is never answered with 5xx (the SDK would retry it) and always with the envelope."""
    snap = api.edge.snapshot
    zone = snap.zones_by_name["example.com"]
    z = zone.id
    rs = zone.custom_ruleset
    assert rs is not None
    rule = rs.rules[0].id
    app, record = zone.spectrum_apps[0].id, zone.dns_records[0].id
    lists = "/accounts/0123456789abcdef0123456789abcdef/rules/lists"
    targets = [
        ("POST", "/zones"), ("PATCH", f"/zones/{z}"), ("PATCH", f"/zones/{z}/settings/ssl"),
        ("POST", f"/zones/{z}/dns_records"), ("PUT", f"/zones/{z}/dns_records/{record}"),
        ("PATCH", f"/zones/{z}/dns_records/{record}"), ("POST", f"/zones/{z}/spectrum/apps"),
        ("PUT", f"/zones/{z}/spectrum/apps/{app}"), ("PATCH", f"/zones/{z}/spectrum/apps/{app}"),
        ("PUT", f"/zones/{z}/rulesets/phases/http_request_firewall_custom/entrypoint"),
        ("POST", f"/zones/{z}/rulesets/{rs.id}/rules"), ("PATCH", f"/zones/{z}/rulesets/{rs.id}/rules/{rule}"),
        ("POST", lists), ("PUT", lists + "/nope"), ("POST", lists + "/nope/items"),
    ]
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    async with httpx.AsyncClient(base_url=api.base_url, headers=headers) as http:
        for method, path in targets:
            for body in WEIRD_BODIES:
                r = await http.request(method, path, content=body)
                assert r.status_code < 500, (method, path, body[:40], r.text)
                envelope = r.json()
                assert set(envelope) >= {"success", "errors", "messages", "result"}
                if r.status_code >= 400:
                    assert envelope["errors"] and all(isinstance(e["code"], int) for e in envelope["errors"])
