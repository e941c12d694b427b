"""spectrum.routing: the pure decisions (app lookup, port mapping, origin order, access rules,
listener diff), table-driven against snapshots built from real configs."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from edge.config import PortRange, build_config, default_config_text, parse_yaml
from edge.store import build_snapshot
from spectrum import records as rec
from spectrum.routing import (
    MAX_PORTS_PER_APP,
    OriginTarget,
    RouteKey,
    build_routes,
    check_access,
    compile_access_rules,
    diff_listeners,
    direct_targets,
    dns_port,
    dns_rdtypes,
    evaluate_access,
    failover_order,
    map_port,
    match_route,
    routes_for,
)

ip = ipaddress.ip_address


def snapshot_of(
    apps: list[dict[str, Any]], *, access_rules: list[dict[str, Any]] | None = None, offset: int = 0
) -> Any:
    data = {
        "zones": [
            {
                "name": "example.com",
                "spectrum_apps": apps,
                "access_rules": access_rules or [],
            }
        ]
    }
    return build_snapshot(build_config(data), 1, offset)


def default_snapshot() -> Any:
    return build_snapshot(build_config(parse_yaml(default_config_text())), 1, 0)


def app_ip(snapshot: Any, host: str) -> Any:
    return snapshot.spectrum_hosts[host][0]


# --------------------------------------------------------------------------- route table


def test_default_config_routes_by_ip_transport_port() -> None:
    s = default_snapshot()
    table = routes_for(s)
    ssh = app_ip(s, "ssh.example.com")
    udp = app_ip(s, "udp.example.com")
    spec = app_ip(s, "spectrum.example.com")
    r = match_route(table, ssh, "tcp", 22)
    assert r is not None and r.app.dns.name == "ssh.example.com"
    assert match_route(table, ssh, "udp", 22) is None
    assert match_route(table, ssh, "tcp", 23) is None
    r = match_route(table, udp, "udp", 53)
    assert r is not None and r.app.proxy_protocol == "simple"
    r = match_route(table, spec, "tcp", 443)
    assert r is not None and r.app.dns.name == "spectrum.example.com"
    assert match_route(table, ip("127.0.20.254"), "tcp", 22) is None


def test_routes_are_memoised_per_snapshot() -> None:
    s = default_snapshot()
    assert routes_for(s) is routes_for(s)


def test_unowned_cdn_ports_on_every_spectrum_ip() -> None:
    s = default_snapshot()
    table = build_routes(s)
    spec = app_ip(s, "spectrum.example.com")
    ssh = app_ip(s, "ssh.example.com")
    # 443 on the spectrum.example.com IP is the app's; 80 there is unowned (CDN may dial it).
    assert RouteKey(spec, "tcp", 443) in table.routes
    assert RouteKey(spec, "tcp", 443) not in table.unowned
    assert RouteKey(spec, "tcp", 80) in table.unowned
    assert RouteKey(ssh, "tcp", 443) in table.unowned
    assert RouteKey(ssh, "tcp", 8443) in table.unowned
    # Only TCP, only the CDN's ports.
    assert all(k.transport == "tcp" for k in table.unowned)
    assert RouteKey(ssh, "tcp", 23) not in table.unowned
    listeners = table.listeners()
    assert listeners[RouteKey(spec, "tcp", 443)] == "app"
    assert listeners[RouteKey(spec, "tcp", 80)] == "unowned"
    n_ips = len(s.spectrum_ip_set)
    assert len(table.unowned) == n_ips * 13 - 1  # 7 HTTP + 6 HTTPS ports per IP, minus the 443 app


def test_port_range_one_listener_per_port() -> None:
    s = snapshot_of(
        [
            {
                "protocol": "tcp/1000-1004",
                "dns": {"type": "CNAME", "name": "range.example.com"},
                "origin_direct": ["tcp://192.0.2.1:3000-3004"],
            }
        ]
    )
    table = build_routes(s)
    edge = app_ip(s, "range.example.com")
    keys = sorted(k.port for k in table.routes if k.ip == edge)
    assert keys == [1000, 1001, 1002, 1003, 1004]
    r = match_route(table, edge, "tcp", 1003)
    assert r is not None and r.range_first == 1000
    assert direct_targets(r) == (OriginTarget("tcp", ip("192.0.2.1"), 3003),)


def test_port_range_is_capped() -> None:
    s = snapshot_of(
        [
            {
                "protocol": "tcp/2000-4000",
                "dns": {"type": "CNAME", "name": "big.example.com"},
                "origin_direct": ["tcp://192.0.2.1:22"],
            }
        ]
    )
    table = build_routes(s)
    edge = app_ip(s, "big.example.com")
    ports = sorted(k.port for k in table.routes if k.ip == edge)
    assert len(ports) == MAX_PORTS_PER_APP and ports[0] == 2000 and ports[-1] == 2000 + MAX_PORTS_PER_APP - 1
    assert table.truncated and table.truncated[0][2:] == (2001, MAX_PORTS_PER_APP)


def test_static_byoip_app_listens_on_its_addresses() -> None:
    s = snapshot_of(
        [
            {
                "protocol": "tcp/2222",
                "dns": {"type": "ADDRESS", "name": "byoip.example.com"},
                "edge_ips": {"type": "static", "ips": ["127.0.21.5"]},
                "origin_direct": ["tcp://127.0.30.2:22"],
            }
        ]
    )
    r = match_route(routes_for(s), ip("127.0.21.5"), "tcp", 2222)
    assert r is not None and r.app.dns.name == "byoip.example.com"
    assert RouteKey(ip("127.0.21.5"), "tcp", 443) in build_routes(s).unowned


def test_two_apps_on_one_name_and_port_conflict_first_wins() -> None:
    s = snapshot_of(
        [
            {
                "protocol": "tcp/22",
                "dns": {"type": "CNAME", "name": "dup.example.com"},
                "origin_direct": ["tcp://192.0.2.1:22"],
            },
            {
                "protocol": "tcp/22-23",
                "dns": {"type": "CNAME", "name": "dup.example.com"},
                "origin_direct": ["tcp://192.0.2.2:22"],
            },
        ]
    )
    table = build_routes(s)
    edge = app_ip(s, "dup.example.com")
    r22 = match_route(table, edge, "tcp", 22)
    r23 = match_route(table, edge, "tcp", 23)
    assert r22 is not None and r23 is not None
    assert direct_targets(r22)[0].address == ip("192.0.2.1")
    assert direct_targets(r23)[0].address == ip("192.0.2.2")
    assert len(table.conflicts) == 1


# --------------------------------------------------------------------------- port mapping


@pytest.mark.parametrize(
    ("first", "port", "origin", "expected"),
    [
        (1000, 1005, PortRange(3000, 4000), 3005),
        (1000, 1000, PortRange(3000, 4000), 3000),
        (1000, 2000, PortRange(3000, 4000), 4000),
        (1000, 1500, PortRange(22, 22), 22),
        (22, 22, PortRange(22, 22), 22),
        (53, 53, PortRange(5353, 5353), 5353),
    ],
)
def test_map_port(first: int, port: int, origin: PortRange, expected: int) -> None:
    assert map_port(first, port, origin) == expected


def test_map_port_outside_range_is_an_error() -> None:
    with pytest.raises(ValueError):
        map_port(1000, 999, PortRange(3000, 3010))
    with pytest.raises(ValueError):
        map_port(1000, 1011, PortRange(3000, 3010))


def test_origin_dns_port_and_types() -> None:
    s = snapshot_of(
        [
            {
                "protocol": "tcp/1000-1009",
                "dns": {"type": "CNAME", "name": "od.example.com"},
                "origin_dns": {"name": "origin.example.com"},
                "origin_port": "3000-3009",
            },
            {
                "protocol": "tcp/80",
                "dns": {"type": "CNAME", "name": "od4.example.com"},
                "origin_dns": {"name": "origin.example.com", "type": "AAAA"},
                "origin_port": 8080,
            },
        ]
    )
    table = routes_for(s)
    r = match_route(table, app_ip(s, "od.example.com"), "tcp", 1007)
    assert r is not None and dns_port(r) == 3007 and dns_rdtypes(r) == ("A", "AAAA")
    r = match_route(table, app_ip(s, "od4.example.com"), "tcp", 80)
    assert r is not None and dns_port(r) == 8080 and dns_rdtypes(r) == ("AAAA",)


# --------------------------------------------------------------------------- origin order

T = [OriginTarget("tcp", ip(f"192.0.2.{i}"), 22) for i in (1, 2, 3)]


@pytest.mark.parametrize(
    ("turn", "first_three"),
    [(0, (1, 2, 3)), (1, (2, 3, 1)), (2, (3, 1, 2)), (3, (1, 2, 3)), (100, (2, 3, 1))],
)
def test_failover_order_rotates(turn: int, first_three: tuple[int, int, int]) -> None:
    order = failover_order(T, turn)
    assert tuple(int(str(t.address).rsplit(".", 1)[1]) for t in order) == first_three


def test_round_robin_spreads_evenly_and_always_lists_every_origin() -> None:
    firsts = [failover_order(T, n)[0] for n in range(300)]
    assert {t: firsts.count(t) for t in T} == dict.fromkeys(T, 100)
    for n in range(10):
        assert sorted(failover_order(T, n), key=str) == sorted(T, key=str)
    assert failover_order([], 5) == ()


def test_direct_targets_keep_config_order_and_map_ports() -> None:
    s = snapshot_of(
        [
            {
                "protocol": "tcp/1000-1001",
                "dns": {"type": "CNAME", "name": "lb.example.com"},
                "origin_direct": ["tcp://192.0.2.1:3000-3001", "tcp://[2001:db8::1]:22"],
            }
        ]
    )
    r = match_route(routes_for(s), app_ip(s, "lb.example.com"), "tcp", 1001)
    assert r is not None
    assert direct_targets(r) == (OriginTarget("tcp", ip("192.0.2.1"), 3001), OriginTarget("tcp", ip("2001:db8::1"), 22))


# --------------------------------------------------------------------------- access rules


def rule(mode: str, target: str, value: str) -> dict[str, Any]:
    return {"mode": mode, "configuration": {"target": target, "value": value}}


@pytest.mark.parametrize(
    ("rules", "client", "allowed", "matched"),
    [
        ([], "192.0.2.1", True, "ALLOW"),
        ([rule("block", "ip", "192.0.2.1")], "192.0.2.1", False, "BLOCK_IP"),
        ([rule("block", "ip", "192.0.2.1")], "192.0.2.2", True, "ALLOW"),
        ([rule("block", "ip_range", "192.0.2.0/24")], "192.0.2.77", False, "BLOCK_IP"),
        ([rule("block", "ip6", "2001:db8::1")], "2001:db8::1", False, "BLOCK_IP"),
        ([rule("block", "ip_range", "192.0.2.0/24")], "2001:db8::1", True, "ALLOW"),
        # the more specific rule decides
        (
            [rule("block", "ip_range", "192.0.2.0/24"), rule("whitelist", "ip", "192.0.2.9")],
            "192.0.2.9",
            True,
            "WHITELIST_IP",
        ),
        (
            [rule("whitelist", "ip_range", "192.0.0.0/16"), rule("block", "ip_range", "192.0.2.0/24")],
            "192.0.2.9",
            False,
            "BLOCK_IP",
        ),
        (
            [rule("whitelist", "ip_range", "192.0.0.0/16"), rule("block", "ip_range", "192.0.2.0/24")],
            "192.0.3.9",
            True,
            "WHITELIST_IP",
        ),
        # equal specificity: whitelist wins, whatever the order
        ([rule("block", "ip", "192.0.2.9"), rule("whitelist", "ip", "192.0.2.9")], "192.0.2.9", True, "WHITELIST_IP"),
        ([rule("whitelist", "ip", "192.0.2.9"), rule("block", "ip", "192.0.2.9")], "192.0.2.9", True, "WHITELIST_IP"),
        # country rules rank below IP rules; the zone's ip_country (XX) is every client's country
        ([rule("block", "country", "XX")], "192.0.2.9", False, "BLOCK_COUNTRY"),
        ([rule("block", "country", "XX"), rule("whitelist", "ip", "192.0.2.9")], "192.0.2.9", True, "WHITELIST_IP"),
        ([rule("whitelist", "country", "XX"), rule("block", "ip", "192.0.2.9")], "192.0.2.9", False, "BLOCK_IP"),
        ([rule("block", "country", "US")], "192.0.2.9", True, "ALLOW"),
        # challenges cannot be shown on a TCP stream; ASN rules never match
        ([rule("challenge", "ip", "192.0.2.9")], "192.0.2.9", True, "ALLOW"),
        ([rule("block", "asn", "AS13335")], "192.0.2.9", True, "ALLOW"),
    ],
)
def test_access_rules(rules: list[dict[str, Any]], client: str, allowed: bool, matched: str) -> None:
    s = snapshot_of(
        [
            {
                "protocol": "tcp/22",
                "dns": {"type": "CNAME", "name": "fw.example.com"},
                "origin_direct": ["tcp://192.0.2.1:22"],
                "ip_firewall": True,
            }
        ],
        access_rules=rules,
    )
    zone = s.config.zones[0]
    decision = evaluate_access(compile_access_rules(zone.access_rules), ip(client), country="XX")
    assert (decision.allowed, decision.matched) == (allowed, matched)
    route = match_route(routes_for(s), app_ip(s, "fw.example.com"), "tcp", 22)
    assert route is not None
    assert check_access(s, route, ip(client)) == decision


def test_access_rules_ignored_without_ip_firewall() -> None:
    s = snapshot_of(
        [
            {
                "protocol": "tcp/22",
                "dns": {"type": "CNAME", "name": "nofw.example.com"},
                "origin_direct": ["tcp://192.0.2.1:22"],
            }
        ],
        access_rules=[rule("block", "ip", "192.0.2.9")],
    )
    route = match_route(routes_for(s), app_ip(s, "nofw.example.com"), "tcp", 22)
    assert route is not None
    d = check_access(s, route, ip("192.0.2.9"))
    assert d.allowed and d.matched == "UNKNOWN"


# --------------------------------------------------------------------------- listener diff

A = RouteKey(ip("127.0.20.1"), "tcp", 22)
B = RouteKey(ip("127.0.20.1"), "udp", 53)
C = RouteKey(ip("127.0.20.2"), "tcp", 443)
D = RouteKey(ip("127.0.21.5"), "tcp", 2222)


@pytest.mark.parametrize(
    ("current", "desired", "to_open", "to_close"),
    [
        (set(), {A, B}, (A, B), ()),
        ({A, B}, {A, B}, (), ()),
        ({A, B}, {A}, (), (B,)),
        ({A, B}, {A, C, D}, (C, D), (B,)),
        ({A, B, C}, set(), (), (A, B, C)),
    ],
)
def test_diff_listeners(
    current: set[RouteKey], desired: set[RouteKey], to_open: tuple[RouteKey, ...], to_close: tuple[RouteKey, ...]
) -> None:
    diff = diff_listeners(current, desired)
    assert diff.to_open == to_open and diff.to_close == to_close


def test_diff_between_snapshots_adding_and_removing_apps() -> None:
    before = default_snapshot()
    data = parse_yaml(default_config_text())
    apps = data["zones"][0]["spectrum_apps"]
    data["zones"][0]["spectrum_apps"] = [a for a in apps if a["dns"]["name"] != "ssh.example.com"] + [
        {
            "protocol": "tcp/7000-7001",
            "dns": {"type": "CNAME", "name": "new.example.com"},
            "origin_direct": ["tcp://127.0.30.2:22"],
        }
    ]
    after = build_snapshot(build_config(data), 2, 0)
    diff = diff_listeners(routes_for(before).listeners(), routes_for(after).listeners())
    new_ip = after.spectrum_hosts["new.example.com"][0]
    ssh_ip = before.spectrum_hosts["ssh.example.com"][0]
    assert RouteKey(new_ip, "tcp", 7000) in diff.to_open and RouteKey(new_ip, "tcp", 7001) in diff.to_open
    assert RouteKey(ssh_ip, "tcp", 22) in diff.to_close
    # Listeners of the untouched apps are not in the diff.
    spec_ip = before.spectrum_hosts["spectrum.example.com"][0]
    key = RouteKey(spec_ip, "tcp", 443)
    assert key not in diff.to_open and key not in diff.to_close


# --------------------------------------------------------------------------- records


def test_records_have_reference_fields() -> None:
    facts = rec.ConnectionFacts(
        app_id="a" * 32,
        app_hostname="ssh.example.com",
        colo="LHR",
        client_ip="127.0.0.9",
        client_port=5555,
        edge_ip="127.0.20.7",
        edge_port=22,
        proto="tcp",
        proxy_protocol="v1",
        ip_firewall=False,
        tls_mode="off",
        connect_ns=1_000_000_000,
    )
    c = rec.connect_record(facts)
    assert c["Event"] == "connect" and c["Status"] == 0 and c["ConnectTimestamp"] == 1_000_000_000
    facts.client_bytes, facts.origin_bytes = 10, 20
    d = rec.close_record(facts, "disconnect", 200, 3_000_000_000)
    for name in (
        "Timestamp",
        "ConnectTimestamp",
        "DisconnectTimestamp",
        "Application",
        "ColoCode",
        "ClientIP",
        "ClientPort",
        "ClientProto",
        "OriginProto",
        "ClientBytes",
        "OriginBytes",
        "OriginIP",
        "OriginPort",
        "ProxyProtocol",
        "IpFirewall",
        "ClientMatchedIpFirewall",
        "OriginTlsMode",
        "Status",
        "AppHostname",
        "EdgeIP",
        "EdgePort",
        "DurationMs",
    ):
        assert name in d
    assert d["DurationMs"] == 2000.0 and d["ClientBytes"] == 10 and d["OriginBytes"] == 20


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (ConnectionRefusedError(), 521),
        (TimeoutError(), 522),
        (OSError(101, "Network is unreachable"), 523),
        (OSError(5, "EIO"), 520),
    ],
)
def test_connect_error_status(exc: BaseException, status: int) -> None:
    assert rec.connect_error_status(exc) == status


def test_handoff_port_matches_the_cdn_contract() -> None:
    cdn_server = pytest.importorskip("cdn.server")
    from spectrum.server import CDN_HANDOFF_PORT

    assert cdn_server.HANDOFF_PORT == CDN_HANDOFF_PORT
