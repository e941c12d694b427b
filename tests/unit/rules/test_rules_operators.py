"""Table tests: every operator, literal form, field and function against sample requests."""

from __future__ import annotations

import pytest
from rules_sample import make_request

from cdn.rules import RequestFields, compile_expression

REQ = make_request(
    host="api.Example.com",
    method="POST",
    path="/v1/Items/report.PDF",
    query="id=42&tag=a&tag=b&q=hello%20world&flag",
    version="HTTP/2",
    headers=(
        ("Host", "api.Example.com"),
        ("User-Agent", "curl/8.5.0"),
        ("X-Foo", "bar"),
        ("x-foo", "baz"),
        ("Cookie", "session=abc; theme=dark"),
        ("Cookie", "lang=en"),
        ("Referer", "https://ref.example.net/"),
        ("X-Forwarded-For", "203.0.113.9"),
        ("Content-Type", "application/json"),
    ),
    src_ip="192.0.2.77",
    edge_server_ip="2606:4700::6810:1",
    edge_server_port=8443,
    ssl=True,
    country="FR",
    ray_id="8a1b2c3d4e5f6789",
)


def check(expression: str, expected: bool, request: RequestFields = REQ) -> None:
    assert compile_expression(expression).evaluate(request) is expected, expression


CASES: list[tuple[str, bool]] = [
    # eq / ne, both spellings, all scalar types
    ('http.host eq "api.Example.com"', True),
    ('http.host == "api.example.com"', False),
    ('http.host ne "api.example.com"', True),
    ('http.host != "api.Example.com"', False),
    ("cf.edge.server_port eq 8443", True),
    ("cf.edge.server_port == 443", False),
    ("ip.src eq 192.0.2.77", True),
    ("ip.src == 192.0.2.78", False),
    ("ip.src ne 192.0.2.78", True),
    ("cf.edge.server_ip eq 2606:4700::6810:1", True),
    ("cf.edge.server_ip eq 2606:4700:0:0:0:0:6810:1", True),
    ("cf.edge.server_ip eq 104.16.0.1", False),
    # ordering
    ("cf.edge.server_port lt 9000", True),
    ("cf.edge.server_port < 8443", False),
    ("cf.edge.server_port le 8443", True),
    ("cf.edge.server_port <= 8442", False),
    ("cf.edge.server_port gt 8000", True),
    ("cf.edge.server_port > 8443", False),
    ("cf.edge.server_port ge 8443", True),
    ("cf.edge.server_port >= 8444", False),
    ('http.request.method lt "PUT"', True),
    ('http.request.method gt "PUT"', False),
    ("ip.src gt 192.0.2.1", True),
    ("ip.src lt 192.0.2.1", False),
    ("ip.src lt ::1", False),  # different families never order
    ("ip.src gt ::1", False),
    # contains
    ('http.request.uri.path contains "/Items/"', True),
    ('http.request.uri.path contains "/items/"', False),
    # matches / ~
    ('http.request.uri.path matches "^/v1/.*\\.PDF$"', True),
    ('http.request.uri.path ~ "(?i)\\.pdf$"', True),
    ('http.request.uri.path ~ "\\.pdf$"', False),
    ('http.user_agent matches "curl/[0-9]+"', True),
    ('http.user_agent matches r"curl/\\d+\\.\\d+"', True),
    ('http.user_agent matches "^curl\\/\\d"', True),
    ('http.request.full_uri matches "\\?id=42"', True),
    # wildcard (case-insensitive, whole value) / strict wildcard
    ('http.host wildcard "*.example.com"', True),
    ('http.host wildcard "api.*"', True),
    ('http.host wildcard "example.com"', False),
    ('http.host wildcard "*example"', False),
    ('http.host strict wildcard "*.example.com"', False),
    ('http.host strict wildcard "*.Example.com"', True),
    ('http.request.uri.path wildcard "/v1/*/report.pdf"', True),
    ('http.request.uri.path wildcard "/v1/*"', True),
    ('http.request.uri.path wildcard "/v1/\\\\*"', False),
    ('http.request.uri.path wildcard r"/v1/*/report.\\*"', False),
    ('http.referer wildcard "https://*.example.net/"', True),
    # in sets
    ('http.request.method in {"POST" "PUT"}', True),
    ('http.request.method in {"GET"}', False),
    ("cf.edge.server_port in {80 443 8000..8009}", False),
    ("cf.edge.server_port in {80 443 8440..8449}", True),
    ("ip.src in {192.0.2.0/24}", True),
    ("ip.src in {192.0.2.0/25 198.51.100.7}", True),
    ("ip.src in {192.0.2.128/25 198.51.100.7}", False),
    ("ip.src in {192.0.2.70..192.0.2.80}", True),
    ("ip.src in {192.0.2.78..192.0.2.80}", False),
    ("ip.src in {2001:db8::/32}", False),
    ("cf.edge.server_ip in {2606:4700::/32}", True),
    ("cf.edge.server_ip in {2606:4700::6810:0..2606:4700::6810:ffff}", True),
    ("ip.src in {0.0.0.0/0}", True),
    ("cf.edge.server_ip in {0.0.0.0/0}", False),
    ('ip.src.country in {"FR" "DE"}', True),
    # bitwise_and / &
    ("cf.edge.server_port bitwise_and 1", True),  # 8443 is odd
    ("cf.edge.server_port & 4", False),  # 8443 = 0b10000011111011
    ("cf.edge.server_port & 8", True),
    # booleans
    ("ssl", True),
    ("not ssl", False),
    ("!ssl", False),
    ("not not ssl", True),
    # logical operators, both spellings
    ('ssl and http.host contains "api"', True),
    ('ssl && http.host contains "www"', False),
    ('not ssl or http.host contains "api"', True),
    ('not ssl || http.host contains "www"', False),
    ('ssl xor http.host contains "api"', False),
    ('ssl ^^ http.host contains "www"', True),
    ("ssl xor ssl xor ssl", True),
    ("(ssl)", True),
    ("((not (ssl)))", False),
]


@pytest.mark.parametrize(("expression", "expected"), CASES)
def test_operator_table(expression: str, expected: bool) -> None:
    check(expression, expected)


PRECEDENCE: list[tuple[str, bool]] = [
    # not > and: "not a and b" == "(not a) and b"
    ("not ssl and ssl", False),
    ("not (ssl and not ssl)", True),
    # and > xor: "a xor b and c" == "a xor (b and c)"
    ("ssl xor ssl and not ssl", True),
    ("(ssl xor ssl) and not ssl", False),
    # xor > or: "a or b xor c" == "a or (b xor c)"
    ("not ssl or ssl xor ssl", False),
    ("(not ssl or ssl) xor ssl", False),
    ("ssl or ssl xor ssl", True),
    ("(ssl or ssl) xor ssl", False),
    # and > or
    ("ssl or ssl and not ssl", True),
    ("(ssl or ssl) and not ssl", False),
    # comparison is an atom under not
    ('not http.host eq "x"', True),
    ('not http.host eq "x" and not ssl', False),
]


@pytest.mark.parametrize(("expression", "expected"), PRECEDENCE)
def test_precedence(expression: str, expected: bool) -> None:
    check(expression, expected)


FIELDS: list[tuple[str, bool]] = [
    ('http.request.uri eq "/v1/Items/report.PDF?id=42&tag=a&tag=b&q=hello%20world&flag"', True),
    ('raw.http.request.uri eq "/v1/Items/report.PDF?id=42&tag=a&tag=b&q=hello%20world&flag"', True),
    ('http.request.uri.path eq "/v1/Items/report.PDF"', True),
    ('raw.http.request.uri.path eq "/v1/Items/report.PDF"', True),
    ('http.request.uri.path.extension eq "pdf"', True),
    ('raw.http.request.uri.path.extension eq "pdf"', True),
    ('http.request.uri.query eq "id=42&tag=a&tag=b&q=hello%20world&flag"', True),
    (
        'http.request.full_uri eq "https://api.Example.com/v1/Items/report.PDF?id=42&tag=a&tag=b&q=hello%20world&flag"',
        True,
    ),
    ('raw.http.request.full_uri contains "https://"', True),
    ('http.request.method eq "POST"', True),
    ('http.request.version eq "HTTP/2"', True),
    ('http.user_agent eq "curl/8.5.0"', True),
    ('http.referer eq "https://ref.example.net/"', True),
    ('http.cookie eq "session=abc; theme=dark; lang=en"', True),
    ('http.x_forwarded_for eq "203.0.113.9"', True),
    ('http.request.headers["x-foo"][0] eq "bar"', True),
    ('http.request.headers["x-foo"][1] eq "baz"', True),
    ('http.request.headers["X-Foo"][0] eq "bar"', False),  # keys are lowercased
    ('http.request.headers["content-type"][0] eq "application/json"', True),
    ('any(http.request.headers.names[*] eq "X-Foo")', True),
    ('any(http.request.headers.names[*] eq "x-foo")', True),
    ('any(http.request.headers.names[*] eq "content-type")', False),  # names keep their case
    ('any(http.request.headers.values[*] eq "baz")', True),
    ('http.request.headers.names[0] eq "Host"', True),
    ('http.request.uri.args["tag"][1] eq "b"', True),
    ('http.request.uri.args["q"][0] eq "hello%20world"', True),  # no decoding
    ('http.request.uri.args["flag"][0] eq ""', True),
    ('any(http.request.uri.args.names[*] eq "id")', True),
    ('any(http.request.uri.args.values[*] eq "42")', True),
    ('raw.http.request.uri.args["id"][0] eq "42"', True),
    ('http.request.cookies["theme"][0] eq "dark"', True),
    ('http.request.cookies["lang"][0] eq "en"', True),
    ('ip.src.country eq "FR"', True),
    ('ip.geoip.country eq "FR"', True),
    ('cf.ray_id eq "8a1b2c3d4e5f6789"', True),
    ("http.request.timestamp.sec eq 1700000000", True),
    ("http.request.timestamp.msec eq 1700000000000", True),
    ("http.request.timestamp.sec gt 1600000000", True),
    ("cf.client.bot", False),
    ("cf.threat_score eq 0", True),
    ("ip.src.asnum eq 0", True),
    ('cf.worker.upstream_zone eq ""', True),
]


@pytest.mark.parametrize(("expression", "expected"), FIELDS)
def test_fields(expression: str, expected: bool) -> None:
    check(expression, expected)


MISSING: list[tuple[str, bool]] = [
    # absent map keys and out-of-range indexes: every comparison is false, ne included
    ('http.request.headers["x-absent"][0] eq "a"', False),
    ('http.request.headers["x-absent"][0] ne "a"', False),
    ('not http.request.headers["x-absent"][0] eq "a"', True),
    ('http.request.headers["x-foo"][5] eq "a"', False),
    ('http.request.headers["x-foo"][5] ne "a"', False),
    ('http.request.headers["x-foo"][5] contains "a"', False),
    ('http.request.headers["x-foo"][5] matches "a"', False),
    ('http.request.headers["x-foo"][5] wildcard "*"', False),
    ('http.request.headers["x-foo"][5] in {"a"}', False),
    ('http.request.headers["x-foo"][5] lt "zzz"', False),
    ('any(http.request.headers["x-absent"][*] eq "a")', False),
    ('all(http.request.headers["x-absent"][*] eq "a")', False),
    ('lower(http.request.headers["x-absent"][0]) eq ""', False),
    ('len(http.request.headers["x-absent"]) eq 0', False),
    ('starts_with(http.request.headers["x-absent"][0], "")', False),
    ('not starts_with(http.request.headers["x-absent"][0], "")', True),
    ('concat(http.request.headers["x-absent"][0], "a") eq "a"', False),
    ('http.user_agent eq ""', False),
]


@pytest.mark.parametrize(("expression", "expected"), MISSING)
def test_missing_values(expression: str, expected: bool) -> None:
    check(expression, expected)


def test_absent_simple_headers_are_empty_strings() -> None:
    bare = make_request(headers=())
    for name in ("http.user_agent", "http.referer", "http.cookie", "http.x_forwarded_for"):
        check(f'{name} eq ""', True, bare)
    check("len(http.request.headers.names) eq 0", True, bare)


FUNCTIONS: list[tuple[str, bool]] = [
    ('lower(http.host) eq "api.example.com"', True),
    ('upper(http.host) eq "API.EXAMPLE.COM"', True),
    ('lower(http.host) wildcard "*.example.com"', True),
    ('starts_with(http.request.uri.path, "/v1/")', True),
    ('starts_with(http.request.uri.path, "/v2/")', False),
    ('ends_with(http.request.uri.path, ".PDF")', True),
    ('ends_with(lower(http.request.uri.path), ".pdf")', True),
    ("len(http.host) eq 15", True),
    ('len(http.request.headers["x-foo"]) eq 2', True),
    ("len(http.request.headers.names) eq 9", True),
    ("len(http.request.headers) eq 7", True),  # distinct lowercased names
    ('concat(http.host, "/", http.request.method) eq "api.Example.com/POST"', True),
    ('concat("x", http.request.method) eq "xPOST"', True),
    ('any(concat(http.request.headers["x-foo"], http.request.headers["cookie"])[*] eq "lang=en")', True),
    ('any(http.request.headers["x-foo"][*] eq "baz")', True),
    ('all(http.request.headers["x-foo"][*] eq "baz")', False),
    ('all(starts_with(http.request.headers["x-foo"][*], "ba"))', True),
    ('any(lower(http.request.headers.names[*])[*] eq "content-type")', True),
    ('any(upper(http.request.headers["x-foo"][*])[*] in {"BAZ"})', True),
    ("any(len(http.request.headers[*])[*] gt 1)", True),
    ('url_decode(http.request.uri.args["q"][0]) eq "hello world"', True),
    ('url_decode(http.request.uri.query) contains "q=hello world"', True),
    ('url_decode("a+b%2Bc") eq "a b+c"', True),
    ('url_decode(http.request.uri.args["q"][0], "r") eq "hello world"', True),
    ('substring(http.host, 0, 3) eq "api"', True),
    ('substring(http.host, -3) eq "com"', True),
    ('substring(http.host, 4) eq "Example.com"', True),
    ('substring(http.host, 4, -4) eq "Example"', True),
    ('to_string(cf.edge.server_port) eq "8443"', True),
    ('to_string(ssl) eq "true"', True),
    ('to_string(ip.src) eq "192.0.2.77"', True),
    ("cidr(ip.src, 24, 64) eq 192.0.2.0", True),
    ("cidr(cf.edge.server_ip, 24, 32) eq 2606:4700::", True),
    ("cidr6(cf.edge.server_ip, 16) eq 2606::", True),
    ("cidr6(ip.src, 16) eq 192.0.2.77", True),
]


@pytest.mark.parametrize(("expression", "expected"), FUNCTIONS)
def test_functions(expression: str, expected: bool) -> None:
    check(expression, expected)


@pytest.mark.parametrize(
    ("encoded", "flags", "decoded"),
    [
        ("%2541", "", "%41"),
        ("%2541", "r", "A"),
        ("%u0041BC", "u", "ABC"),
        ("%u0041BC", "", "%u0041BC"),
        ("%252541", "ur", "A"),
        ("%C3%A9", "", "\u00e9"),
    ],
)
def test_url_decode_flags(encoded: str, flags: str, decoded: str) -> None:
    flag_arg = f', "{flags}"' if flags else ""
    request = make_request(query=f"x={encoded}")
    check(f'url_decode(http.request.uri.args["x"][0]{flag_arg}) eq "{decoded}"', True, request)
    check(f'url_decode("{encoded}"{flag_arg}) eq "{decoded}"', True)


def test_lower_is_ascii_only() -> None:
    request = make_request(host="\u00c9COLE.example")
    check('lower(http.host) eq "\u00c9cole.example"', True, request)
    check("len(http.host) eq 14", True, request)  # byte length: É is two bytes


@pytest.mark.parametrize(
    ("path", "extension"),
    [
        ("/foo", ""),
        ("/.mp3", ""),
        ("/foo.", ""),
        ("/a/b.tar.GZ", "gz"),
        ("/a.b/c", ""),
        ("/", ""),
        ("/x.js", "js"),
    ],
)
def test_path_extension(path: str, extension: str) -> None:
    check(f'http.request.uri.path.extension eq "{extension}"', True, make_request(path=path))


STRINGS: list[tuple[str, bool]] = [
    ('http.user_agent eq "curl/8.5.0"', True),
    ('http.user_agent eq r"curl/8.5.0"', True),
    ('http.user_agent eq r#"curl/8.5.0"#', True),
    ('http.user_agent eq r##"curl/8.5.0"##', True),
    ('http.user_agent eq "\\x63url/8.5.0"', True),
    ('http.user_agent eq "\\143url/8.5.0"', True),
    ('http.request.headers["x-q"][0] eq "a\\"b"', True),
    ('http.request.headers["x-q"][0] eq r#"a"b"#', True),
    ('http.request.headers["x-b"][0] eq "c:\\\\dir"', True),
    ('http.request.headers["x-b"][0] eq r"c:\\dir"', True),
    ('http.request.headers["x-b"][0] matches "^c:\\\\dir$"', True),
    ('http.request.headers["x-b"][0] matches r"^c:\\\\dir$"', True),
    ('http.request.headers["x-b"][0] strict wildcard r"c:\\\\*"', True),
    ('http.request.headers["x-b"][0] strict wildcard "c:\\\\\\\\*"', True),
    ('http.request.headers["x-s"][0] wildcard "a\\\\*b"', True),
    ('http.request.headers["x-s"][0] wildcard r"a\\*b"', True),
    ('http.request.headers["x-s"][0] wildcard r"a\\*"', False),
    ('http.request.headers["x-s"][0] wildcard "A*"', True),
    ('http.request.headers["x-s"][0] strict wildcard "A*"', False),
]


@pytest.mark.parametrize(("expression", "expected"), STRINGS)
def test_string_literals(expression: str, expected: bool) -> None:
    request = make_request(
        headers=(("User-Agent", "curl/8.5.0"), ("X-Q", 'a"b'), ("X-B", "c:\\dir"), ("X-S", "a*b"))
    )
    check(expression, expected, request)


def test_evaluate_returns_plain_bool_and_is_repeatable() -> None:
    compiled = compile_expression('http.request.headers["x-foo"][0] eq "bar"')
    for _ in range(3):
        assert compiled.evaluate(REQ) is True
        assert compiled.evaluate(make_request()) is False
