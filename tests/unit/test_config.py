"""Config validation: a table of valid and invalid configs with the exact messages."""

from __future__ import annotations

import textwrap

import pytest

from edge.config import ConfigError, build_config, default_config, default_config_text, load_config

BASE_ZONE = {"name": "example.com"}


def zone(**parts: object) -> dict[str, object]:
    return {"zones": [{**BASE_ZONE, **parts}]}


def app(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "protocol": "tcp/22",
        "dns": {"type": "CNAME", "name": "ssh.example.com"},
        "origin_direct": ["tcp://192.0.2.1:22"],
    }
    base.update(fields)
    return base


INVALID: list[tuple[str, dict[str, object], list[str]]] = [
    ("unknown top-level field", {"bogus": 1}, ["bogus: unknown field"]),
    (
        "bad cdn ip",
        {"network": {"cdn_ips": ["127.0.10.1", "nope"]}},
        ["network.cdn_ips[1]: 'nope' is not an IPv4 or IPv6 address"],
    ),
    (
        "pool not a cidr",
        {"network": {"spectrum_ips": "127.0.20.1/24"}},
        ["network.spectrum_ips: '127.0.20.1/24' is not a CIDR: 127.0.20.1/24 has host bits set"],
    ),
    (
        "bad ssl mode",
        zone(settings={"ssl": "medium"}),
        ["zones[0].settings.ssl: Input should be 'off', 'flexible', 'full' or 'strict'"],
    ),
    (
        "zone name",
        {"zones": [{"name": "localhost"}]},
        ["zones[0].name: zone name 'localhost' is not a domain like example.com"],
    ),
    (
        "A record content",
        zone(dns_records=[{"name": "www", "type": "A", "content": "1.2.3"}]),
        ["zones[0].dns_records[0]: content for A record must be an IPv4 address, got '1.2.3' (9005)"],
    ),
    (
        "proxied TXT",
        zone(dns_records=[{"name": "t", "type": "TXT", "content": "x", "proxied": True}]),
        ["zones[0].dns_records[0]: TXT records cannot be proxied (9004)"],
    ),
    (
        "ttl",
        zone(dns_records=[{"name": "www", "type": "A", "content": "192.0.2.1", "ttl": 5}]),
        ["zones[0].dns_records[0].ttl: ttl must be 1 (automatic) or between 30 and 86400"],
    ),
    (
        "duplicate record",
        zone(
            dns_records=[
                {"name": "www", "type": "A", "content": "192.0.2.1"},
                {"name": "www.example.com", "type": "A", "content": "192.0.2.1"},
            ]
        ),
        ["zones[0].dns_records[1]: record already exists (same as dns_records[0]) (81057)"],
    ),
    (
        "cname clash",
        zone(
            dns_records=[
                {"name": "www", "type": "A", "content": "192.0.2.1"},
                {"name": "www", "type": "CNAME", "content": "x.example.net"},
            ]
        ),
        ["zones[0].dns_records[1]: an A, AAAA, or CNAME record with that host already exists (81053)"],
    ),
    (
        "origins exclusive",
        zone(spectrum_apps=[app(origin_dns={"name": "o.example.com"})]),
        [
            "zones[0].spectrum_apps[0]: exactly one of origin_direct and origin_dns is required; they are exclusive (11000)"
        ],
    ),
    (
        "edge_ips vs dns type",
        zone(spectrum_apps=[app(dns={"type": "ADDRESS", "name": "ssh.example.com"})]),
        ["zones[0].spectrum_apps[0]: edge_ips type dynamic requires dns type CNAME (11004)"],
    ),
    (
        "reversed range",
        zone(spectrum_apps=[app(protocol="tcp/2000-1000")]),
        ["zones[0].spectrum_apps[0].protocol: port range 2000-1000 is reversed"],
    ),
    (
        "range lengths",
        zone(spectrum_apps=[app(protocol="tcp/1000-1010", origin_direct=["tcp://192.0.2.1:3000-3005"])]),
        ["zones[0].spectrum_apps[0]: origin port range 3000-3005 has 6 ports but protocol range 1000-1010 has 11"],
    ),
    (
        "origin_port without origin_dns",
        zone(spectrum_apps=[app(origin_port=22)]),
        ["zones[0].spectrum_apps[0]: origin_port is only allowed with origin_dns"],
    ),
    (
        "origin_dns needs port",
        zone(spectrum_apps=[app(origin_direct=None, origin_dns={"name": "o.example.com"})]),
        ["zones[0].spectrum_apps[0]: origin_dns of a non-SRV type needs origin_port (11001)"],
    ),
    (
        "bad origin",
        zone(spectrum_apps=[app(origin_direct=["tcp://192.0.2.1"])]),
        [
            "zones[0].spectrum_apps[0].origin_direct: 'tcp://192.0.2.1' is not an origin address like tcp://192.0.2.1:22 (11002)"
        ],
    ),
    (
        "spp on tcp",
        zone(spectrum_apps=[app(proxy_protocol="simple")]),
        ["zones[0].spectrum_apps[0]: proxy_protocol simple (SPP) is only for UDP apps"],
    ),
    (
        "cross-zone origin_dns",
        zone(spectrum_apps=[app(origin_direct=None, origin_dns={"name": "o.example.net"}, origin_port=22)]),
        [
            "zones[0].spectrum_apps[0].origin_dns.name: o.example.net is not in the zone example.com;"
            " origin_dns must be a record of the same zone (11050)"
        ],
    ),
    (
        "spectrum name owned by a record",
        zone(
            dns_records=[{"name": "ssh", "type": "A", "content": "192.0.2.1", "proxied": True}], spectrum_apps=[app()]
        ),
        [
            "zones[0].spectrum_apps[0].dns.name: ssh.example.com already has a A record; Spectrum owns its hostname (81053)"
        ],
    ),
]


@pytest.mark.parametrize(("data", "expected"), [(d, e) for _, d, e in INVALID], ids=[n for n, _, _ in INVALID])
def test_invalid_configs_name_path_and_problem(data: dict[str, object], expected: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        build_config(data)
    assert [str(p) for p in info.value.problems] == expected


def test_every_problem_is_reported_at_once() -> None:
    data = {
        "bogus": 1,
        "network": {"colo": "lhr"},
        "zones": [
            {
                "name": "example.com",
                "settings": {"ssl": "x"},
                "spectrum_apps": [app(origin_dns={"name": "o.example.com"}), app(protocol="tcp/9-1")],
            }
        ],
    }
    with pytest.raises(ConfigError) as info:
        build_config(data)
    paths = [p.path for p in info.value.problems]
    assert paths == [
        "network.colo",
        "zones[0].settings.ssl",
        "zones[0].spectrum_apps[0]",
        "zones[0].spectrum_apps[1].protocol",
        "bogus",
    ]


def test_yaml_syntax_error_names_line_and_column() -> None:
    with pytest.raises(ConfigError) as info:
        load_config("zones:\n  - name: [unclosed\n")
    (problem,) = info.value.problems
    assert str(problem).startswith("YAML syntax error at line 3, column 1")


def test_not_a_mapping() -> None:
    with pytest.raises(ConfigError, match="the config must be a mapping, got list"):
        load_config("- 1\n- 2\n")


def test_default_config_is_the_seed_scenario() -> None:
    config = default_config()
    (z,) = config.zones
    assert z.name == "example.com"
    assert z.settings.ssl == "full"
    records = {(r.name, r.type): r for r in z.dns_records}
    assert records[("www.example.com", "A")].proxied is True
    assert records[("origin.example.com", "A")].proxied is False
    apps = {a.dns.name: a for a in z.spectrum_apps}
    assert apps["spectrum.example.com"].protocol == "tcp/443"
    assert apps["ssh.example.com"].protocol == "tcp/22"
    assert apps["udp.example.com"].transport == "udp"
    rs = z.custom_ruleset
    assert rs is not None and len(rs.rules) == 1
    assert rs.rules[0].enabled is False and "cf.edge.server_ip" in rs.rules[0].expression


def test_defaults_follow_cloudflare() -> None:
    config = build_config(zone(spectrum_apps=[app()]))
    a = config.zones[0].spectrum_apps[0]
    assert (a.proxy_protocol, a.tls, a.traffic_type, a.argo_smart_routing, a.ip_firewall) == (
        "off",
        "off",
        "direct",
        False,
        False,
    )
    assert a.edge_ips.type == "dynamic" and a.edge_ips.connectivity == "all"
    assert a.id is not None and len(a.id) == 32


def test_ids_are_stable_and_names_expanded() -> None:
    data = zone(
        dns_records=[
            {"name": "@", "type": "A", "content": "192.0.2.1"},
            {"name": "www", "type": "CNAME", "content": "Example.COM."},
        ]
    )
    a, b = build_config(data), build_config(data)
    assert [r.id for r in a.zones[0].dns_records] == [r.id for r in b.zones[0].dns_records]
    assert [r.name for r in a.zones[0].dns_records] == ["example.com", "www.example.com"]
    assert a.zones[0].dns_records[1].content == "example.com"


def test_api_export_fields_paste_in() -> None:
    exported = {
        "id": "023e105f4ecef8ad9ca31a8372d0c353",
        "name": "www.example.com",
        "type": "A",
        "content": "192.0.2.1",
        "proxiable": True,
        "proxied": True,
        "ttl": 1,
        "locked": False,
        "zone_id": "023e105f4ecef8ad9ca31a8372d0c353",
        "zone_name": "example.com",
        "created_on": "2014-01-01T05:20:00.12345Z",
        "modified_on": "2014-01-01T05:20:00.12345Z",
        "meta": {"auto_added": False},
        "comment": None,
        "tags": [],
        "settings": {},
    }
    config = build_config(zone(dns_records=[exported]))
    assert config.zones[0].dns_records[0].id == exported["id"]


def test_legacy_boolean_proxy_protocol_means_off() -> None:
    config = build_config(zone(spectrum_apps=[app(proxy_protocol=False)]))
    assert config.zones[0].spectrum_apps[0].proxy_protocol == "off"


def test_check_round_trips_through_json() -> None:
    from edge.store import config_to_data

    config = load_config(default_config_text())
    again = build_config(config_to_data(config))
    assert again == config


def test_invalid_rule_expression_is_caught_at_load() -> None:
    text = textwrap.dedent("""
        zones:
          - name: example.com
            rulesets:
              http_request_firewall_custom:
                rules:
                  - {action: block, expression: 'http.host eq "a"'}
                  - {action: block, expression: 'ip.src eq 10.0.0.0/8'}
    """)
    with pytest.raises(ConfigError) as info:
        load_config(text)
    (problem,) = info.value.problems
    assert problem.path == "zones[0].rulesets.http_request_firewall_custom.rules[1].expression"
    assert "position" in str(problem)


def test_restricted_origins_for_1002() -> None:
    import ipaddress

    from edge.config import default_config
    from edge.store import build_snapshot

    snapshot = build_snapshot(default_config(), 1, 0)
    restricted = ["127.0.0.1", "::1", "::ffff:127.0.0.1", "127.0.0.2", "127.0.10.254", "127.0.20.254", "0.0.0.0",
                  "0.1.2.3", "169.254.1.1", "fe80::1", "224.0.0.1", "255.255.255.255", "::"]
    allowed = ["127.0.30.1", "127.0.20.249", "192.0.2.1", "::ffff:127.0.30.1", "2001:db8::1"]
    for text in restricted:
        assert snapshot.is_restricted_origin(ipaddress.ip_address(text)), text
    for text in allowed:
        assert not snapshot.is_restricted_origin(ipaddress.ip_address(text)), text


def test_throttled_warning_says_how_many_it_held_back() -> None:
    from structlog.testing import capture_logs

    from edge.runtime import Throttled

    warn = Throttled("x.over_limit", interval=1.0)
    with capture_logs() as logs:
        for t in (0.0, 0.1, 0.5, 0.99, 1.0, 1.5, 2.2):
            warn(t, limit=4)
    assert [(e["event"], e["suppressed"]) for e in logs] == [("x.over_limit", 0), ("x.over_limit", 3),
                                                              ("x.over_limit", 1)]


def test_a_key_given_twice_is_an_error_with_its_line() -> None:
    from edge.config import ConfigError, load_config

    with pytest.raises(ConfigError) as err:
        load_config("api:\n  port: 8900\n  port: 9000\n")
    assert [p.message for p in err.value.problems] == [
        "YAML syntax error at line 3, column 3: duplicate key 'port' (given twice in the same mapping)"
    ]


def test_overlapping_addresses_are_problems() -> None:
    from edge.config import ConfigError, load_config

    with pytest.raises(ConfigError) as err:
        load_config("network: {cdn_ips: [127.0.0.2], spectrum_ips: 127.0.10.0/24}")
    assert [(p.path, p.message) for p in err.value.problems] == [
        ("network.cdn_ips[0]", "127.0.0.2 is also network.resolver"),
        ("network.cdn_egress_ip", "127.0.10.254 is inside the spectrum_ips pool 127.0.10.0/24"),
    ]


def test_a_list_field_given_a_scalar_says_list_and_port_offset_defaults_to_auto() -> None:
    from edge.config import ConfigError, load_config

    with pytest.raises(ConfigError) as err:
        load_config("zones: abc")
    assert [(p.path, p.message) for p in err.value.problems] == [("zones", "should be a list")]
    assert load_config("").network.port_offset == "auto"


def test_records_the_resolver_cannot_encode_are_refused_with_1004() -> None:
    from edge.config import ConfigError, load_config

    text = """zones:
  - name: example.com
    dns_records:
      - {name: h1.example.com, type: HTTPS, content: '1 . alpn="h3,h2"', ttl: 300}
      - {name: s1.example.com, type: SVCB, data: {priority: 1, target: ., value: alpn=h2}, ttl: 300}
      - {name: t1.example.com, type: TLSA, data: {usage: 3, selector: 1}, ttl: 300}
      - {name: x.example.com, type: HTTPS, content: 'nonsense here', ttl: 300}
"""
    with pytest.raises(ConfigError) as err:
        load_config(text)
    assert [(p.path, p.code) for p in err.value.problems] == [
        ("zones[0].dns_records[2].content", 1004),
        ("zones[0].dns_records[3].content", 1004),
    ]
    assert "TLSA record data is missing matching_type, certificate" in err.value.problems[0].message
