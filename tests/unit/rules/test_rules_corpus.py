"""Expressions from Cloudflare's docs and the seed scenario, with expected outcomes."""

from __future__ import annotations

import pytest
from rules_sample import make_request

from cdn.rules import ListSpec, RequestFields, compile_expression, format_expression, parse_expression
from cdn.rules.ast import Compare, Field, IntLit, Logical, Not, StringLit

SEED = (
    '(http.host eq "spectrum.example.com" and '
    "not cf.edge.server_ip in {203.0.113.10 2001:db8::10 198.51.100.0/24})"
)

# The misdirected request of reference 9.2 C: Spectrum host on a CDN edge IP.
MISDIRECTED = make_request(host="spectrum.example.com", edge_server_ip="104.16.0.1", edge_server_port=443)
VIA_SPECTRUM = make_request(host="spectrum.example.com", edge_server_ip="203.0.113.10", edge_server_port=443)
VIA_SPECTRUM_V6 = make_request(host="spectrum.example.com", edge_server_ip="2001:db8::10")
VIA_BYOIP = make_request(host="spectrum.example.com", edge_server_ip="198.51.100.200")
OTHER_HOST = make_request(host="www.example.com", edge_server_ip="104.16.0.1")
WP_LOGIN = make_request(path="/wp-login.php", method="POST", ssl=False, scheme="http", edge_server_port=80)
WITH_FOO = make_request(headers=(("X-Foo", "qux"), ("x-foo", "bar")))
PORT_8005 = make_request(edge_server_port=8005)
FROM_LIST = make_request(src_ip="192.0.2.33")

CORPUS: list[tuple[str, RequestFields, bool]] = [
    (SEED, MISDIRECTED, True),
    (SEED, VIA_SPECTRUM, False),
    (SEED, VIA_SPECTRUM_V6, False),
    (SEED, VIA_BYOIP, False),
    (SEED, OTHER_HOST, False),
    (
        '(lower(http.host) eq "spectrum.example.com" and not cf.edge.server_ip in {203.0.113.10})',
        make_request(host="Spectrum.Example.com"),
        True,
    ),
    ('http.host eq "spectrum.example.com" and not cf.edge.server_port in {443 8443}', MISDIRECTED, False),
    ('http.host eq "spectrum.example.com" and not cf.edge.server_ip in $spectrum_ips', MISDIRECTED, True),
    ('http.host eq "spectrum.example.com" and not cf.edge.server_ip in $spectrum_ips', VIA_BYOIP, False),
    ('http.request.uri.path contains "/wp-login.php"', WP_LOGIN, True),
    ('http.request.uri.path contains "/wp-login.php"', MISDIRECTED, False),
    ("ip.src in {192.0.2.0/24 198.51.100.7}", make_request(), True),
    ("ip.src in {192.0.2.0/24 198.51.100.7}", FROM_LIST, True),
    ("ip.src in {192.0.2.0/24 198.51.100.7}", make_request(src_ip="198.51.100.8"), False),
    ('any(http.request.headers["x-foo"][*] == "bar")', WITH_FOO, True),
    ('any(http.request.headers["x-foo"][*] == "bar")', make_request(), False),
    ('lower(http.host) wildcard "*.example.com"', make_request(host="WWW.EXAMPLE.COM"), True),
    ('lower(http.host) wildcard "*.example.com"', make_request(host="example.com"), False),
    ('http.request.method in {"POST" "PUT"} and not ssl', WP_LOGIN, True),
    ('http.request.method in {"POST" "PUT"} and not ssl', make_request(method="POST"), False),
    ("cf.edge.server_port in {80 443 8000..8009}", PORT_8005, True),
    ("cf.edge.server_port in {80 443 8000..8009}", make_request(edge_server_port=8010), False),
    ("ip.src in $office_network", FROM_LIST, True),
    ("ip.src in $office_network", make_request(), False),
    ("http.host in $blocked_hosts", make_request(host="Shop.Bad.example"), True),
    ("http.host in $blocked_hosts", make_request(host="bad.example"), False),
    ("http.host in $blocked_hosts", make_request(host="evil.example"), True),
    ("ip.src.asnum in $asns", make_request(), True),
    ('http.request.uri.path matches "^/api/v[0-9]+/"', make_request(path="/api/v2/users"), True),
    ('http.request.full_uri wildcard "https://www.example.com/*"', make_request(), True),
    ('not http.request.uri.path.extension in {"php" "asp"}', WP_LOGIN, False),
    ('http.user_agent contains "Mozilla" and not cf.client.bot', make_request(), True),
    (
        'ip.src.country in {"CN" "RU"} or http.request.uri.query contains "union select"',
        make_request(),
        False,
    ),
    (
        'any(lower(http.request.headers.names[*])[*] == "content-type")',
        make_request(headers=(("Content-Type", "text/plain"),)),
        True,
    ),
    (
        'starts_with(http.request.uri.path, "/admin") and not ip.src in {10.0.0.0/8}',
        make_request(path="/admin/users"),
        True,
    ),
    ('ends_with(http.request.uri.path, ".env")', make_request(path="/.env"), True),
    ("len(http.request.uri.query) gt 10", make_request(query="a=123456789"), True),
    ('http.request.uri.args["debug"][0] eq "1"', make_request(query="x=2&debug=1"), True),
    ('url_decode(http.request.uri.query) contains "<script>"', make_request(query="q=%3Cscript%3E"), True),
]

LISTS = {
    "spectrum_ips": ListSpec("spectrum_ips", "ip", ("203.0.113.10", "198.51.100.0/24", "2001:db8::/64")),
    "office_network": ListSpec("office_network", "ip", ("192.0.2.0/26", "2001:db8:1::/48")),
    "blocked_hosts": ListSpec("blocked_hosts", "hostname", ("evil.example", "*.bad.example")),
    "asns": ListSpec("asns", "asn", ("0", "13335")),
}


@pytest.mark.parametrize(("expression", "request_", "expected"), CORPUS)
def test_corpus(expression: str, request_: RequestFields, expected: bool) -> None:
    compiled = compile_expression(expression, LISTS)
    assert compiled.evaluate(request_) is expected
    # Canonical text compiles to the same decision.
    assert compile_expression(format_expression(compiled.ast), LISTS).evaluate(request_) is expected


def test_seed_tree_shape() -> None:
    tree = parse_expression(SEED)
    assert isinstance(tree, Logical) and tree.op == "and"
    host, negated = tree.items
    assert host == Compare(Field("http.host"), "eq", StringLit("spectrum.example.com"))
    assert isinstance(negated, Not) and isinstance(negated.operand, Compare)
    assert negated.operand.op == "in"
    assert format_expression(tree) == SEED[1:-1]


CANONICAL: list[tuple[str, str]] = [
    ('http.host == "a"', 'http.host eq "a"'),
    ("ssl&&!ssl||ssl^^ssl", "ssl and not ssl or ssl xor ssl"),
    ("(ssl or ssl) and ssl", "(ssl or ssl) and ssl"),
    ("ssl or (ssl and ssl)", "ssl or ssl and ssl"),
    ("ssl and (ssl and ssl)", "ssl and (ssl and ssl)"),
    ("((ssl))", "ssl"),
    ("not (ssl)", "not ssl"),
    ("!(ssl || ssl)", "not (ssl or ssl)"),
    ("http.host ~ 'x'".replace("'", '"'), 'http.host matches "x"'),
    ('http.host   strict   wildcard r#"a"b"#', 'http.host strict wildcard "a\\"b"'),
    ('http.host eq "\\x41\\101"', 'http.host eq "AA"'),
    ('http.host eq "\\x01"', 'http.host eq "\\x01"'),
    ('http.host matches r"\\d+\\."', 'http.host matches "\\d+\\."'),
    ('http.host matches r#"a\\"b"#', 'http.host matches r#"a\\"b"#'),
    ("ip.src in { 10.0.0.1/8  ::ffff:0:0/96 }", "ip.src in {10.0.0.0/8 ::ffff:0:0/96}"),
    ("cf.edge.server_port & 3", "cf.edge.server_port bitwise_and 3"),
    ("cf.edge.server_port in {-5..-3 7}", "cf.edge.server_port in {-5..-3 7}"),
]


@pytest.mark.parametrize(("text", "canonical"), CANONICAL)
def test_canonical_format(text: str, canonical: str) -> None:
    assert format_expression(parse_expression(text)) == canonical
    assert parse_expression(canonical) == parse_expression(text)


def test_precedence_tree_shapes() -> None:
    a = Field("a")
    assert parse_expression("a or b xor c and not d") == Logical(
        "or", (a, Logical("xor", (Field("b"), Logical("and", (Field("c"), Not(Field("d")))))))
    )
    assert parse_expression("a and b and c") == Logical("and", (a, Field("b"), Field("c")))
    assert parse_expression("not a eq 1") == Not(Compare(a, "eq", IntLit(1)))


def test_positions_are_recorded_but_not_compared() -> None:
    tree = parse_expression('  ssl and http.host eq "x"')
    assert isinstance(tree, Logical)
    assert tree.items[0].pos == 2
    compare = tree.items[1]
    assert isinstance(compare, Compare) and compare.pos == 20 and compare.lhs.pos == 10
    assert tree == parse_expression('ssl and http.host eq "x"')
