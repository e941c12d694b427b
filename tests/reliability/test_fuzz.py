"""Property fuzzing of every sans-IO parser (issue 9, part 3).

The contract under test is h11's three-way one: a parser returns a value, returns "need more
data", or raises its package's own error; nothing else escapes. Short runs in CI
(max_examples ~200); raise them with EDGE_FUZZ_EXAMPLES (see bench/soak/README.md).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import string
import struct
from typing import Any
from unittest import mock

import dnslib
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cdn.rules import RulesError, compile_expression, parse_expression
from cdn.rules.fields import RequestFields
from edge.config import ConfigError, EdgeConfig, build_config, default_config_text, parse_yaml
from edge.store import Store
from resolver import answers
from spectrum import proxy_protocol as pp

EXAMPLES = int(os.environ.get("EDGE_FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"

# ----------------------------------------------------------------------------- PROXY v1 / v2 / SPP


def _v2_like() -> st.SearchStrategy[bytes]:
    """Mostly-valid v2 headers with fuzzed version/command, family, length and body."""
    return st.builds(
        lambda vc, fam, body, length_delta, tail: (
            V2_SIG + bytes([vc, fam]) + struct.pack("!H", max(0, min(65535, len(body) + length_delta))) + body + tail
        ),
        st.integers(0, 255),
        st.sampled_from([0x00, 0x11, 0x12, 0x21, 0x22, 0x31, 0x32, 0x99]),
        st.binary(max_size=80),
        st.integers(-8, 8),
        st.binary(max_size=16),
    )


def _v1_like() -> st.SearchStrategy[bytes]:
    token = st.sampled_from([b"TCP4", b"TCP6", b"UNKNOWN", b"UDP4", b"", b"tcp4"])
    ip = st.one_of(
        st.ip_addresses(v=4).map(lambda a: str(a).encode()),
        st.ip_addresses(v=6).map(lambda a: str(a).encode()),
        st.binary(max_size=20),
    )
    port = st.one_of(st.integers(0, 70000).map(lambda n: str(n).encode()), st.binary(max_size=6))
    sep = st.sampled_from([b" ", b"  ", b"\t"])
    end = st.sampled_from([b"\r\n", b"\n", b"\r", b"", b"\r\nGET / HTTP/1.1\r\n"])
    return st.builds(
        lambda t, s, a, b, p, q, e: b"PROXY" + s + t + s + a + s + b + s + p + s + q + e,
        token,
        sep,
        ip,
        ip,
        port,
        port,
        end,
    )


@FUZZ
@given(st.one_of(st.binary(max_size=300), _v2_like(), _v1_like()))
@example(V2_SIG + b"\x21\x11\x00\x0c" + bytes(12))
@example(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n")
def test_proxy_decode_contract(data: bytes) -> None:
    try:
        out = pp.decode(data)
    except pp.ProxyProtocolError:
        return
    if isinstance(out, pp.NeedMoreData):
        # A proper prefix of a header: every shorter prefix is also "need more" (or an error
        # found as early as possible, never a header).
        for cut in range(len(data)):
            try:
                shorter = pp.decode(data[:cut])
            except pp.ProxyProtocolError:
                continue
            assert isinstance(shorter, pp.NeedMoreData), (cut, shorter)
        return
    assert isinstance(out, pp.ProxyHeader)
    assert 0 < out.length <= len(data)
    # The header alone decodes to the same thing; payload bytes after it are never looked at.
    again = pp.decode(bytes(data[: out.length]) + b"\xff" * 7)
    assert again == out


@FUZZ
@given(st.one_of(_v2_like(), _v1_like()))
@example(V2_SIG + b"\x21\x11\x00\x0c" + bytes(12) + b"payload")
def test_proxy_decode_byte_at_a_time(data: bytes) -> None:
    """Fed growing prefixes of a valid header, the decoder says need-more until the header is
    whole, then gives the same header for every longer prefix."""
    try:
        whole = pp.decode(data)
    except pp.ProxyProtocolError:
        return
    if not isinstance(whole, pp.ProxyHeader):
        return
    for cut in range(len(data) + 1):
        out = pp.decode(data[:cut])
        if cut < whole.length:
            assert isinstance(out, pp.NeedMoreData), (cut, out)
        else:
            assert out == whole, cut


@FUZZ
@given(
    st.one_of(
        st.binary(max_size=120),
        st.builds(lambda b: b"\x56\xec" + b, st.binary(max_size=100)),
    )
)
def test_decode_spp_contract(data: bytes) -> None:
    try:
        header, payload = pp.decode_spp(data)
    except pp.ProxyProtocolError:
        assert len(data) < 38 or data[:2] != b"\x56\xec"
        return
    assert len(data) >= 38 and data[:2] == b"\x56\xec"
    assert payload == data[38:]
    assert isinstance(header, pp.SppHeader)
    for ip, port in (header.client, header.proxy):
        assert isinstance(ip, ipaddress.IPv4Address | ipaddress.IPv6Address)
        assert 0 <= port <= 65535


# ----------------------------------------------------------------------------- resolver answers


def _tables() -> Any:
    import tempfile
    from pathlib import Path

    config = build_config(parse_yaml(default_config_text()))
    with tempfile.TemporaryDirectory() as d:
        store = Store(Path(d), port_offset=0)
        try:
            store.open_config(config, source="file")
            snapshot = store.current
        finally:
            store.close()
    return answers.build_tables(snapshot)


TABLES = _tables()
NAMES = [
    "www.example.com",
    "example.com",
    "spectrum.example.com",
    "nope.example.com",
    "a.b.c.example.com",
    "other.test",
    ".",
]


def _internal_error(data: bytes) -> Any:
    raise AssertionError(f"answers.respond hit its internal-error path for {data!r}")


@FUZZ
@given(st.binary(max_size=600), st.booleans())
@example(b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01", True)
def test_resolver_answers_random_bytes(data: bytes, udp: bool) -> None:
    """Never raises, never takes the SERVFAIL-on-exception path; answers carry the query id."""
    with mock.patch.object(answers, "servfail", _internal_error):
        for view in (TABLES.public, TABLES.internal):
            out = answers.answer(view, data, udp=udp)
            if out is None:
                continue
            assert len(out) >= 12 and out[2] & 0x80, out[:12]
            assert out[:2] == data[:2]
            if udp:
                assert len(out) <= 4096


@st.composite
def _queries(draw: st.DrawFn) -> bytes:
    name = draw(
        st.one_of(
            st.sampled_from(NAMES),
            st.from_regex(r"[a-z0-9*_-]{1,20}(\.[a-z0-9-]{1,12}){0,3}\.example\.com", fullmatch=True),
        )
    )
    qtype = draw(
        st.sampled_from(["A", "AAAA", "CNAME", "TXT", "MX", "NS", "SOA", "ANY", "HTTPS", "SRV", "CAA", "PTR", "AXFR"])
    )
    header = dnslib.DNSHeader(id=draw(st.integers(0, 65535)), rd=draw(st.integers(0, 1)))
    q = dnslib.DNSRecord(header, q=dnslib.DNSQuestion(name, getattr(dnslib.QTYPE, qtype)))
    if draw(st.booleans()):
        q.add_ar(dnslib.EDNS0(udp_len=draw(st.integers(0, 65535)), flags="do" if draw(st.booleans()) else ""))
    wire = bytearray(q.pack())
    if draw(st.booleans()):
        # Flip one header or question byte.
        i = draw(st.integers(2, len(wire) - 1))
        wire[i] ^= draw(st.integers(1, 255))
    if draw(st.booleans()):
        wire[4 + draw(st.integers(0, 7))] = draw(st.integers(0, 255))
    return bytes(wire)


@FUZZ
@given(_queries(), st.booleans())
def test_resolver_answers_well_formed_queries(data: bytes, udp: bool) -> None:
    with mock.patch.object(answers, "servfail", _internal_error):
        for view in (TABLES.public, TABLES.internal):
            out = answers.answer(view, data, udp=udp)
            if out is None:
                continue
            assert out[:2] == data[:2] and out[2] & 0x80
            rcode = out[3] & 0x0F
            assert rcode in {0, 1, 3, 4, 5}, rcode
            if rcode == 0 and not out[2] & 0x02:
                dnslib.DNSRecord.parse(out)  # a full answer is well-formed DNS


# ----------------------------------------------------------------------------- rules language

FIELD_NAMES = [
    "http.host",
    "ip.src",
    "cf.edge.server_ip",
    "http.request.uri.path",
    "http.request.method",
    "cf.edge.server_port",
    "ssl",
    'http.request.headers["x"]',
    "http.user_agent",
]
TOKENS = [
    *FIELD_NAMES,
    "eq",
    "ne",
    "==",
    "!=",
    "in",
    "contains",
    "matches",
    "wildcard",
    "strict",
    "lt",
    "gt",
    "ge",
    "le",
    "and",
    "or",
    "not",
    "xor",
    "&&",
    "||",
    "!",
    "(",
    ")",
    "{",
    "}",
    "[",
    "]",
    "*",
    ",",
    '"a"',
    '"spectrum.example.com"',
    '"\\x"',
    "1",
    "443",
    "-1",
    "99999999999999999999",
    "10.0.0.0/8",
    "127.0.0.1",
    "::1",
    "1..10",
    "$list",
    "lower(",
    "len(",
    "any(",
    "all(",
    "starts_with(",
    'r"x"',
    "#",
]


@FUZZ
@given(st.one_of(st.text(max_size=120), st.lists(st.sampled_from(TOKENS), max_size=14).map(" ".join)))
@example('(http.host eq "spectrum.example.com" and not cf.edge.server_ip in {127.0.20.0/24})')
def test_rules_parse_and_compile_contract(text: str) -> None:
    with contextlib.suppress(RulesError):
        parse_expression(text)
    try:
        compiled = compile_expression(text)
    except RulesError:
        return
    request = RequestFields(
        host="www.example.com",
        method="GET",
        path="/",
        query="",
        version="HTTP/1.1",
        scheme="https",
        headers=(("X", "y"), ("User-Agent", "curl")),
        src_ip=ipaddress.ip_address("127.0.0.1"),
        edge_server_ip=ipaddress.ip_address("127.0.10.1"),
        edge_server_port=443,
        ssl=True,
    )
    assert compiled.evaluate(request) in (True, False)


# ----------------------------------------------------------------------------- config build

JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True) | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(string.ascii_lowercase + "_", max_size=12), children, max_size=5)
    ),
    max_leaves=20,
)

SECTION_KEYS = {
    "api": ["address", "port", "token"],
    "network": ["resolver", "cdn_ips", "spectrum_ips", "port_offset", "colo", "cdn_http_ports"],
    "limits": ["max_header_bytes", "header_timeout", "max_udp_flows", "shutdown_deadline"],
    "origins": ["enabled", "http_echo"],
}


@st.composite
def _configs(draw: st.DrawFn) -> Any:
    """Random JSON-ish data, plus data shaped like the config with fuzzed leaves."""
    if draw(st.booleans()):
        return draw(JSONISH)
    base: dict[str, Any] = parse_yaml(default_config_text())
    for section, keys in SECTION_KEYS.items():
        if draw(st.booleans()):
            base.setdefault(section, {})
            base[section][draw(st.sampled_from(keys))] = draw(JSONISH)
    zone = base["zones"][0]
    choice = draw(st.integers(0, 4))
    if choice == 1:
        rec = dict(draw(st.sampled_from(zone["dns_records"])))
        rec[draw(st.sampled_from(["name", "type", "content", "ttl", "proxied", "id"]))] = draw(JSONISH)
        zone["dns_records"].append(rec)
    elif choice == 2:
        app = dict(draw(st.sampled_from(zone["spectrum_apps"])))
        app[draw(st.sampled_from(["protocol", "dns", "origin_direct", "proxy_protocol", "tls", "edge_ips"]))] = draw(
            JSONISH
        )
        zone["spectrum_apps"].append(app)
    elif choice == 3:
        rule = dict(zone["rulesets"]["http_request_firewall_custom"]["rules"][0])
        rule[draw(st.sampled_from(["expression", "action", "enabled", "action_parameters"]))] = draw(JSONISH)
        zone["rulesets"]["http_request_firewall_custom"]["rules"].append(rule)
    elif choice == 4:
        base["zones"].append({"name": draw(JSONISH), "dns_records": draw(JSONISH)})
    return base


@FUZZ
@given(_configs())
def test_build_config_contract(data: Any) -> None:
    try:
        config = build_config(data)
    except ConfigError as e:
        assert e.problems, "ConfigError without problems"
        for problem in e.problems:
            assert isinstance(problem.message, str) and problem.message
        return
    assert isinstance(config, EdgeConfig)
