"""Syntax and type errors: always RulesError, at compile time, with the offending position."""

from __future__ import annotations

import pytest

from cdn.rules import ListSpec, RulesError, compile_expression, parse_expression

# (expression, position, a fragment of the message)
SYNTAX_ERRORS: list[tuple[str, int, str]] = [
    ("", 0, "empty expression"),
    ("   ", 3, "empty expression"),
    ('http.host eq "abc', 13, "unterminated string"),
    ('http.host eq r#"abc"', 13, "unterminated raw string"),
    ('http.host eq r"abc', 13, "unterminated raw string"),
    ('http.host eq "a\\qb"', 15, "invalid escape"),
    ('http.host eq "\\xZZ"', 14, "\\x escape"),
    ('http.host eq "\\18"', 14, "octal"),
    ("http.host eq", 12, "expected a literal value"),
    ('http.host "a"', 10, "expected a logical operator"),
    ('http.host EQ "a"', 10, "lowercase"),
    ("ssl AND ssl", 4, "lowercase"),
    ("NOT ssl", 4, "expected a logical operator"),
    ("ssl and", 7, "expected a field or a function"),
    ("ssl or or ssl", 7, "expected a field or a function"),
    ("(ssl", 4, "expected ')'"),
    ("ssl)", 3, "expected a logical operator"),
    ('"a" eq http.host', 0, "put the field first"),
    ("80 eq cf.edge.server_port", 0, "put the field first"),
    ('http.host = "a"', 10, "'=='"),
    ("ssl | ssl", 4, "'||'"),
    ("ssl # x", 4, "unexpected character"),
    ("ip.src eq 1.2.3.0/24", 10, "only allowed inside a set"),
    ("ip.src eq 1.2.3.4..1.2.3.9", 10, "only allowed inside a set"),
    ("cf.edge.server_port eq 80..90", 23, "only allowed inside a set"),
    ("cf.edge.server_port in {90..80}", 24, "reversed"),
    ("ip.src in {1.2.3.9..1.2.3.4}", 11, "reversed"),
    ("ip.src in {1.2.3.4..::9}", 11, "mixes IPv4 and IPv6"),
    ("ip.src in {1.2.3.0/24..1.2.4.0}", 11, "both ends"),
    ('ip.src in {1.2.3.4 "a"}', 19, "same type"),
    ("ip.src in {}", 10, "empty set"),
    ("ip.src in {1.2.3.4", 10, "unterminated set"),
    ("ip.src in 1.2.3.4", 10, "expected '{' or '$list'"),
    ("ip.src eq {1.2.3.4}", 10, "only allowed after 'in'"),
    ("ip.src in {1.2.3.4}{", 19, "expected a logical operator"),
    ('http.host in {"a""b"}', 17, "separated by whitespace"),
    ("ip.src eq 1.2.3", 10, "invalid literal"),
    ("ip.src eq 300.1.1.1", 10, "invalid literal"),
    ("ip.src in $Office", 11, "invalid list name"),
    ("cf.edge.server_port eq 99999999999999999999", 23, "out of range"),
    ('http.host strict contains "a"', 17, "expected 'wildcard' after 'strict'"),
    ("http.request.headers['x'][0] eq \"a\"", 21, "unexpected character"),
    ('http.request.headers[-1] eq "a"', 21, "non-negative integer"),
    ('http.request.headers["x"] [0 eq "a"', 29, "expected ']'"),
    ("lower(http.host", 15, "expected ')'"),
    ("lower(http.host,)", 16, "expected a field or a function"),
    ("not", 3, "expected a field or a function"),
    ("and", 0, "expected a field or a function"),
    ("(" * 100 + "ssl" + ")" * 100, 64, "nested deeper"),
]


@pytest.mark.parametrize(("expression", "position", "fragment"), SYNTAX_ERRORS)
def test_syntax_errors(expression: str, position: int, fragment: str) -> None:
    with pytest.raises(RulesError) as info:
        parse_expression(expression)
    assert info.value.position == position, str(info.value)
    assert fragment in info.value.message
    assert str(info.value) == f"{info.value.message} at position {position}"
    assert info.value.code == 20217


TYPE_ERRORS: list[tuple[str, int, str]] = [
    ('http.hots eq "a"', 0, "unknown field 'http.hots'"),
    ('ssl and http.hots eq "a"', 8, "unknown field 'http.hots'"),
    ("foo(http.host)", 0, "unknown function 'foo'"),
    ("http.host eq 1", 13, "expected a String value, found an integer"),
    ("http.host eq 1.2.3.4", 13, "expected a String value, found an IP address"),
    ('ip.src eq "1.2.3.4"', 10, "expected an IP value, found a string"),
    ('cf.edge.server_port eq "80"', 23, "expected an Int value, found a string"),
    ('ip.src in {"1.2.3.4"}', 11, "expected an IP value in the set, found a string"),
    ("http.host in {1 2}", 14, "expected a String value in the set, found an integer"),
    ("cf.edge.server_port in {1.2.3.4}", 24, "expected an Int value in the set, found an IP address"),
    ("cf.edge.server_port in {80..90 1.2.3.4}", 31, "same type"),
    ('cf.edge.server_port contains "8"', 20, "operator 'contains' is not defined for Int"),
    ('ip.src matches "1"', 7, "operator 'matches' is not defined for IP"),
    ('ip.src wildcard "1*"', 7, "operator 'wildcard' is not defined for IP"),
    ("http.host bitwise_and 1", 10, "operator 'bitwise_and' is not defined for String"),
    ("http.host & 1", 10, "operator 'bitwise_and' is not defined for String"),
    ("ssl eq 1", 4, "a Bool can't be compared"),
    ('http.request.headers eq "a"', 21, "Map<Array<String>> can't be compared"),
    ('http.request.headers["a"] eq "a"', 26, "Array<String> can't be compared"),
    ("http.host", 0, "expected a Bool expression, found String"),
    ("not cf.edge.server_port", 4, "expected a Bool expression, found Int"),
    ("ssl and lower(http.host)", 8, "expected a Bool expression"),
    ('http.request.headers.names[*] eq "a"', 0, "wrap the comparison in any() or all()"),
    ("http.request.headers.names[*]", 26, "[*] can only be used"),
    ("any(http.request.headers.names)", 4, "takes an Array<Bool>"),
    ("any(http.request.headers.names[*])", 4, "takes an Array<Bool>"),
    ('lower(http.request.headers.names[*]) eq "a"', 37, "Array<String> can't be compared"),
    ('concat("a", http.request.headers.names[*]) eq "a"', 38, "[*] can only be used"),
    ('http.request.headers.names[*][0] eq "a"', 29, "can't index after [*]"),
    ('http.request.headers.names[*][*] eq "a"', 29, "[*] can't be applied twice"),
    ('http.host[0] eq "a"', 9, "String can't be indexed"),
    ('http.request.headers[0][0] eq "a"', 20, "needs a quoted string key"),
    ('http.request.headers.names["a"] eq "a"', 26, "needs an integer index"),
    ("ssl[*]", 3, "[*] needs an Array or a Map"),
    ('http.host matches "("', 18, "invalid regular expression"),
    ('http.host matches "a{2,1}"', 18, "invalid regular expression"),
    ('http.host wildcard "**.example.com"', 19, "'**' is not allowed"),
    ('http.host strict wildcard "a**"', 26, "'**' is not allowed"),
    ('http.host wildcard r"a\\b"', 19, "only '*' and '\\' can be escaped"),
    ('http.host wildcard r"a\\"', 19, "only '*' and '\\' can be escaped"),
    ("cf.edge.server_ip lt 10.0.0.0/8", 21, "only allowed inside a set"),
    ('starts_with("abc", http.host)', 12, "must be a field or a function, not a literal"),
    ('ends_with("abc", "c")', 10, "not a literal"),
    ("starts_with(http.host)", 0, "starts_with() takes 2 arguments, found 1"),
    ('lower(http.host, "a") eq "a"', 0, "lower() takes 1 argument, found 2"),
    ('lower() eq "a"', 0, "lower() takes 1 argument, found 0"),
    ('concat(http.host) eq "a"', 0, "concat() takes at least 2 arguments"),
    ('url_decode(http.host, "r", "u") eq "a"', 0, "url_decode() takes 1 to 2 arguments"),
    ('url_decode(http.host, "x") eq "a"', 22, 'made of "r" and "u"'),
    ('url_decode(http.host, http.host) eq "a"', 22, 'made of "r" and "u"'),
    ('lower(cf.edge.server_port) eq "a"', 6, "argument 1 of lower() must be String, found Int"),
    ("starts_with(http.host, 1)", 23, "argument 2 of starts_with() must be String"),
    ("len(cf.edge.server_port) eq 1", 4, "must be a String, an Array or a Map"),
    ('concat(http.host, cf.edge.server_port) eq "a"', 18, "argument 2 of concat() must be String"),
    ('substring(http.host, "1") eq "a"', 21, "argument 2 of substring() must be Int"),
    ('to_string(http.request.headers) eq "a"', 10, "argument 1 of to_string()"),
    ("cidr(ip.src, 33, 64) eq 1.2.3.4", 13, "integer literal in 1..32"),
    ("cidr(ip.src, cf.edge.server_port, 64) eq 1.2.3.4", 13, "integer literal"),
    ("ip.src in $office", 10, "unknown list '$office'"),
    ("http.host in $office", 13, "holds ip items"),
    ("ip.src in $redirects", 10, "can't be used in an expression"),
    ("ip.src in $broken", 10, "invalid item"),
]

LISTS = {
    "office": ListSpec("office", "ip", ("192.0.2.0/24",)),
    "redirects": ListSpec("redirects", "redirect", ()),
    "broken": ListSpec("broken", "ip", ("not-an-ip",)),
}


@pytest.mark.parametrize(("expression", "position", "fragment"), TYPE_ERRORS)
def test_type_errors(expression: str, position: int, fragment: str) -> None:
    lists = (
        {k: v for k, v in LISTS.items() if k != "office"}
        if "$office" in expression and "ip.src" in expression
        else LISTS
    )
    with pytest.raises(RulesError) as info:
        compile_expression(expression, lists)
    assert fragment in info.value.message, info.value.message
    assert info.value.position == position, str(info.value)


def test_render_points_at_the_error() -> None:
    with pytest.raises(RulesError) as info:
        compile_expression('ssl and\n  http.hots eq "a"')
    assert info.value.render('ssl and\n  http.hots eq "a"') == (
        "Filter parsing error (2:3):\n  http.hots eq \"a\"\n  ^\nunknown field 'http.hots'"
    )


def test_parse_does_not_check_names_or_types() -> None:
    # Syntax only: names and types are the compiler's job.
    parse_expression("http.hots eq 1 and nope(x)")
    parse_expression('ip.src eq "a"')
