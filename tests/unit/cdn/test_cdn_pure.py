"""Pure CDN modules: zone pick, Host check, header rewrite, CDN-Loop, error pages, ray ids."""

from __future__ import annotations

import json
import re

import pytest

from cdn import headers as hdr
from cdn.errors import (
    AccessDenied,
    DirectIPAccess,
    DnsResolutionError,
    EdgeError,
    HostSniMismatch,
    LoopDetected,
    OriginDnsError,
    OriginDown,
    OriginInvalidCertificate,
    render_error,
)
from cdn.ray import format_cf_ray, new_ray_id, parse_cf_ray
from cdn.server import origin_port_and_scheme
from cdn.zones import check_host, select_zone, split_host

ZONES = {"example.com": "Z1", "sub.example.com": "Z2", "example.org": "Z3"}


@pytest.mark.parametrize(
    ("name", "zone"),
    [
        ("example.com", "Z1"),
        ("EXAMPLE.COM.", "Z1"),
        ("www.example.com", "Z1"),
        ("spectrum.example.com", "Z1"),
        ("a.b.c.example.com", "Z1"),
        ("sub.example.com", "Z2"),
        ("x.sub.example.com", "Z2"),
        ("www.example.org", "Z3"),
        ("example.net", None),
        ("com", None),
        ("notexample.com", None),
        ("", None),
    ],
)
def test_select_zone(name: str, zone: str | None) -> None:
    assert select_zone(ZONES, name) == zone


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("www.example.com", ("www.example.com", None, False)),
        ("www.example.com:8443", ("www.example.com", 8443, False)),
        ("127.0.10.1", ("127.0.10.1", None, True)),
        ("127.0.10.1:80", ("127.0.10.1", 80, True)),
        ("[::1]:443", ("::1", 443, True)),
        ("::1", ("::1", None, True)),
        ("WWW.Example.COM.", ("www.example.com", None, False)),
    ],
)
def test_split_host(host: str, expected: tuple[str, int | None, bool]) -> None:
    assert split_host(host) == expected


@pytest.mark.parametrize(
    ("host", "sni", "outcome"),
    [
        ("www.example.com", "www.example.com", "Z1"),
        ("other.example.com", "www.example.com", "Z1"),  # same zone: allowed
        ("www.example.org", "www.example.com", HostSniMismatch),
        ("x.sub.example.com", "www.example.com", HostSniMismatch),  # deeper zone is another zone
        ("www.example.net", "www.example.com", DnsResolutionError),
        ("www.example.net", None, DnsResolutionError),
        ("127.0.10.1", None, DirectIPAccess),
        ("[::1]", "www.example.com", DirectIPAccess),
        ("", None, DirectIPAccess),
        ("www.example.org:80", None, "Z3"),
    ],
)
def test_check_host(host: str, sni: str | None, outcome: object) -> None:
    if isinstance(outcome, str):
        assert check_host(ZONES, host, sni).zone == outcome
    else:
        assert isinstance(outcome, type)
        with pytest.raises(outcome):
            check_host(ZONES, host, sni)


def test_error_codes_and_statuses() -> None:
    assert (DnsResolutionError.status, DnsResolutionError.code) == (409, 1001)
    assert (DirectIPAccess.status, DirectIPAccess.code) == (403, 1003)
    assert (HostSniMismatch.status, HostSniMismatch.code) == (403, 1013)
    assert (OriginDnsError.status, OriginDnsError.code) == (530, 1016)
    assert (AccessDenied.status, AccessDenied.code) == (403, 1020)
    assert issubclass(LoopDetected, EdgeError) and LoopDetected.code == 1000
    assert (OriginDown.status, OriginInvalidCertificate.status) == (521, 526)


def _triples(pairs: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes, bytes]]:
    return [(n, n.lower(), v) for n, v in pairs]


def test_origin_headers_golden() -> None:
    inbound = _triples(
        [
            (b"Host", b"www.example.com"),
            (b"User-Agent", b"curl/8"),
            (b"Connection", b"keep-alive, X-Private"),
            (b"X-Private", b"secret"),
            (b"Keep-Alive", b"timeout=5"),
            (b"X-Forwarded-For", b"203.0.113.1, 198.51.100.101"),
            (b"Expect", b"100-continue"),
            (b"X-Real-IP", b"1.2.3.4"),
            (b"Content-Length", b"5"),
            (b"X-Mixed-Case", b"Kept"),
            (b"CF-Ray", b"forged"),
        ]
    )
    out = hdr.build_origin_headers(
        inbound,
        client_ip="198.51.100.102",
        connecting_ip="198.51.100.102",
        scheme="https",
        cf_ray=b"0123456789abcdef-LHR",
        country=b"GB",
        loops=1,
    )
    assert [(n, v) for n, _, v in out] == [
        (b"Host", b"www.example.com"),
        (b"User-Agent", b"curl/8"),
        (b"Content-Length", b"5"),
        (b"X-Mixed-Case", b"Kept"),
        (b"CF-Connecting-IP", b"198.51.100.102"),
        (b"X-Forwarded-For", b"203.0.113.1, 198.51.100.101,198.51.100.102"),  # client text kept, ours appended
        (b"X-Forwarded-Proto", b"https"),
        (b"CF-Visitor", b'{"scheme":"https"}'),
        (b"CF-Ray", b"0123456789abcdef-LHR"),
        (b"CF-IPCountry", b"GB"),
        (b"CDN-Loop", b"cloudflare; loops=1"),
        (b"Connection", b"Keep-Alive"),
    ]
    assert all(lower == raw.lower() for raw, lower, _ in out)


def test_origin_headers_without_xff_chunked_upgrade_and_trusted_hop() -> None:
    inbound = _triples(
        [
            (b"Host", b"a.example.com"),
            (b"Transfer-Encoding", b"chunked"),
            (b"CF-Connecting-IP", b"192.0.2.9"),
            (b"Connection", b"Upgrade"),
            (b"Upgrade", b"websocket"),
        ]
    )
    out = dict(
        (n, v)
        for n, _, v in hdr.build_origin_headers(
            inbound,
            client_ip="127.0.10.254",
            connecting_ip="127.0.10.254",
            scheme="http",
            cf_ray=b"r",
            country=b"XX",
            loops=2,
            chunked=True,
            upgrade=b"websocket",
            trusted=True,
        )
    )
    assert out[b"CF-Connecting-IP"] == b"192.0.2.9"  # kept on the internal hop
    assert out[b"X-Forwarded-For"] == b"192.0.2.9"
    assert out[b"Transfer-Encoding"] == b"chunked"
    assert out[b"Connection"] == b"upgrade" and out[b"Upgrade"] == b"websocket"
    assert out[b"CDN-Loop"] == b"cloudflare; loops=2"
    untrusted = dict(
        (n, v)
        for n, _, v in hdr.build_origin_headers(
            inbound,
            client_ip="198.51.100.7",
            connecting_ip="198.51.100.7",
            scheme="http",
            cf_ray=b"r",
            country=b"XX",
            loops=1,
        )
    )
    assert untrusted[b"CF-Connecting-IP"] == b"198.51.100.7"


@pytest.mark.parametrize(
    ("pairs", "violation"),
    [
        ([(b"Host", b"x")], None),
        ([(b"X-Forwarded-For", b"1.2.3.4")], None),
        ([(b"CF-Connecting-IP", b"1.2.3.4")], "CF-Connecting-IP"),
        ([(b"X-Forwarded-For", b"1.2.3.4"), (b"x-forwarded-for", b"5.6.7.8")], "two X-Forwarded-For"),
        ([(b"X-Forwarded-For", b"1.2.3.4," * 13)], "longer than 100"),
    ],
)
def test_inbound_violation(pairs: list[tuple[bytes, bytes]], violation: str | None) -> None:
    why = hdr.inbound_violation(_triples(pairs))
    if violation is None:
        assert why is None
    else:
        assert why is not None and violation in why


@pytest.mark.parametrize(
    ("values", "loops", "others"),
    [
        ([], 0, []),
        ([b"cloudflare; loops=1"], 1, []),
        ([b"cloudflare; loops=3, fastly"], 3, [b"fastly"]),
        ([b"akamai;v=1", b"Cloudflare"], 1, [b"akamai;v=1"]),
        ([b"cloudflare; loops=2; subreqs=1", b"cloudflare"], 3, []),
    ],
)
def test_parse_cdn_loop(values: list[bytes], loops: int, others: list[bytes]) -> None:
    assert hdr.parse_cdn_loop(values) == (loops, others)


def test_cdn_loop_value() -> None:
    assert hdr.cdn_loop_value(4, [b"fastly"]) == b"fastly, cloudflare; loops=4"


def test_client_headers() -> None:
    origin = _triples(
        [
            (b"Content-Type", b"text/plain"),
            (b"Server", b"nginx"),
            (b"Transfer-Encoding", b"chunked"),
            (b"X-Accel-Redirect", b"/x"),
            (b"Connection", b"keep-alive"),
            (b"Set-Cookie", b"a=1"),
        ]
    )
    out = [(n, v) for n, _, v in hdr.build_client_headers(origin, cf_ray=b"abc-LHR")]
    assert out == [
        (b"Content-Type", b"text/plain"),
        (b"Set-Cookie", b"a=1"),
        (b"Server", b"cloudflare"),
        (b"CF-Ray", b"abc-LHR"),
        (b"CF-Cache-Status", b"DYNAMIC"),
    ]
    switching = hdr.build_client_headers(
        _triples([(b"Connection", b"Upgrade"), (b"Upgrade", b"websocket")]), cf_ray=b"r", switching=True
    )
    assert (b"Upgrade", b"upgrade", b"websocket") in switching


def test_error_page_formats() -> None:
    err = DnsResolutionError("x")
    plain = render_error(err, ray_id="0123456789abcdef-LHR", colo="LHR", client_ip="192.0.2.1", user_agent="curl/8")
    assert plain.status == 409
    assert plain.content_type.startswith("text/plain")
    assert plain.body == b"error code: 1001"
    assert (b"cf-error-type", b"1xxx") in plain.headers
    assert (b"cf-error-code", b"1001") in plain.headers
    page = render_error(
        err,
        ray_id="0123456789abcdef-LHR",
        colo="LHR",
        client_ip="192.0.2.1",
        accept="text/html,*/*",
        user_agent="Mozilla/5.0",
    )
    assert page.content_type.startswith("text/html")
    for needle in (b"1001", b"DNS resolution error", b"0123456789abcdef-LHR", b"192.0.2.1"):
        assert needle in page.body
    js = render_error(err, ray_id="r-LHR", colo="LHR", client_ip="192.0.2.1", accept="application/json")
    data = json.loads(js.body)
    assert data["error_code"] == 1001 and data["ray_id"] == "r-LHR" and data["client_ip"] == "192.0.2.1"
    five = render_error(OriginDown(), ray_id="r-LHR", colo="LHR", client_ip="192.0.2.1", user_agent="curl/8")
    assert five.status == 521 and five.content_type.startswith("text/html") and b"Web server is down" in five.body
    assert (b"cf-error-type", b"5xx") in five.headers


def test_ray_ids() -> None:
    seen = {new_ray_id() for _ in range(1000)}
    assert len(seen) == 1000
    for ray in seen:
        assert re.fullmatch(r"[0-9a-f]{16}", ray)
    header = format_cf_ray("230b030023ae2822", "SJC")
    assert header == "230b030023ae2822-SJC"
    assert parse_cf_ray(header) == ("230b030023ae2822", "SJC")
    with pytest.raises(ValueError):
        parse_cf_ray("xyz-SJC")


@pytest.mark.parametrize(
    ("mode", "tls", "port", "expected"),
    [
        ("off", False, 80, (80, False)),
        ("off", False, 8080, (8080, False)),
        ("flexible", True, 443, (80, False)),
        ("flexible", True, 8443, (8443, True)),  # flexible only works on 443: falls back to full
        ("flexible", False, 8080, (8080, False)),
        ("full", True, 443, (443, True)),
        ("full", False, 80, (80, False)),
        ("strict", True, 2053, (2053, True)),
    ],
)
def test_origin_port_and_scheme(mode: str, tls: bool, port: int, expected: tuple[int, bool]) -> None:
    assert origin_port_and_scheme(mode, tls, port) == expected
