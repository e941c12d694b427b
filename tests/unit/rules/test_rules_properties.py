"""Hypothesis properties: format/parse round trip over generated trees; the parser's contract."""

from __future__ import annotations

import ipaddress

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rules_sample import make_request

from cdn.rules import FIELDS, RulesError, compile_expression, format_expression, parse_expression
from cdn.rules.ast import (
    Call,
    Compare,
    Field,
    Index,
    IntLit,
    IntRange,
    IpLit,
    IpRange,
    ListRef,
    Logical,
    Node,
    Not,
    SetLit,
    StringLit,
    Unpack,
)
from cdn.rules.parser import KEYWORDS

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)

identifiers = st.one_of(
    st.sampled_from(sorted(FIELDS)),
    st.from_regex(r"[a-z_][a-z0-9_]{0,6}(\.[a-z0-9_]{1,5}){0,2}", fullmatch=True).filter(
        lambda s: s not in KEYWORDS
    ),
)
strings = st.text(max_size=12)
ipv4 = st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address)
ipv6 = st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address)
addresses = st.one_of(ipv4, ipv6)


@st.composite
def networks(draw: st.DrawFn) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    address = draw(addresses)
    prefix = draw(st.integers(0, address.max_prefixlen))
    return ipaddress.ip_network(f"{address}/{prefix}", strict=False)


@st.composite
def int_ranges(draw: st.DrawFn) -> IntRange:
    a, b = sorted((draw(INT64), draw(INT64)))
    return IntRange(a, b)


@st.composite
def ip_ranges(draw: st.DrawFn) -> IpRange:
    bits = draw(st.sampled_from([32, 128]))
    low, high = sorted((draw(st.integers(0, 2**bits - 1)), draw(st.integers(0, 2**bits - 1))))
    make = ipaddress.IPv4Address if bits == 32 else ipaddress.IPv6Address
    return IpRange(make(low), make(high))


string_sets = st.lists(strings.map(StringLit), min_size=1, max_size=4)
int_sets = st.lists(st.one_of(INT64.map(IntLit), int_ranges()), min_size=1, max_size=4)
ip_sets = st.lists(
    st.one_of(addresses.map(IpLit), networks().map(IpLit), ip_ranges()), min_size=1, max_size=4
)
sets = st.one_of(string_sets, int_sets, ip_sets).map(lambda items: SetLit(tuple(items)))
list_refs = st.from_regex(r"[a-z0-9_]{1,8}", fullmatch=True).map(ListRef)
scalars = st.one_of(strings.map(StringLit), INT64.map(IntLit), addresses.map(IpLit))

OPS = ["eq", "ne", "lt", "le", "gt", "ge", "contains", "wildcard", "strict wildcard", "bitwise_and"]


def values(children: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
    """Left-hand-side values: fields, calls, indexing; call arguments may be any expression."""
    base: st.SearchStrategy[Node] = identifiers.map(Field)
    args = st.lists(st.one_of(strings.map(StringLit), INT64.map(IntLit), children), max_size=3)
    calls = st.builds(Call, identifiers, args.map(tuple))
    head = st.one_of(base, calls)
    keys = st.one_of(strings, st.integers(0, 2**31))

    @st.composite
    def indexed(draw: st.DrawFn) -> Node:
        node = draw(head)
        for step in draw(st.lists(st.one_of(keys, st.none()), max_size=2)):
            node = Unpack(node) if step is None else Index(node, step)
        return node

    return indexed()


@st.composite
def comparisons(draw: st.DrawFn, children: st.SearchStrategy[Node]) -> Node:
    lhs = draw(values(children))
    op = draw(st.sampled_from([*OPS, "in", "matches"]))
    rhs: Node
    if op == "in":
        rhs = draw(st.one_of(sets, list_refs))
    elif op == "matches":
        rhs = StringLit(draw(st.text(max_size=12)))
    else:
        rhs = draw(scalars)
    return Compare(lhs, op, rhs)


def expressions() -> st.SearchStrategy[Node]:
    def extend(children: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
        return st.one_of(
            comparisons(children),
            values(children),
            children.map(Not),
            st.builds(
                Logical,
                st.sampled_from(["and", "or", "xor"]),
                st.lists(children, min_size=2, max_size=3).map(tuple),
            ),
        )

    leaves = st.one_of(identifiers.map(Field), comparisons(st.nothing()))
    return st.recursive(leaves, extend, max_leaves=8)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(expressions())
def test_format_then_parse_gives_the_same_tree(tree: Node) -> None:
    text = format_expression(tree)
    assert parse_expression(text) == tree, text
    # The canonical text is a fixed point.
    assert format_expression(parse_expression(text)) == text


TOKENS = [
    "http.host", "ip.src", "ssl", "cf.edge.server_port", "http.request.headers", "lower(", "any(", "len(",
    "(", ")", "[", "]", "[*]", "{", "}", ",", "eq", "==", "ne", "in", "not", "!", "and", "&&", "or", "xor",
    "matches", "wildcard", "strict", "contains", "&", "<", ">=", '"a"', '"*.x"', 'r#"q"#', "1", "80..90",
    "1.2.3.4", "10.0.0.0/8", "::1", "2001:db8::/32", "$list", "\\", '"', "r#", "-", "..", "*", "AND",
]  # fmt: skip

soup = st.lists(st.sampled_from(TOKENS), max_size=12).map(" ".join)
arbitrary_text = st.one_of(
    st.text(max_size=60), soup, st.text(alphabet='()[]{}"\\r#$*.,:/0123456789abcdefgin ', max_size=40)
)


@settings(max_examples=1000)
@given(arbitrary_text)
def test_parse_returns_a_node_or_raises_rules_error(text: str) -> None:
    try:
        node = parse_expression(text)
    except RulesError as exc:
        assert 0 <= exc.position <= len(text)
        return
    # Whatever parses must also format and reparse to itself.
    assert parse_expression(format_expression(node)) == node


REQUEST = make_request(headers=(("X-Foo", "bar"), ("Cookie", "a=b")), query="a=1")


@settings(max_examples=1000)
@given(arbitrary_text)
def test_compile_returns_or_raises_rules_error_and_evaluate_never_raises(text: str) -> None:
    try:
        compiled = compile_expression(text)
    except RulesError as exc:
        assert 0 <= exc.position <= len(text)
        return
    assert compiled.evaluate(REQUEST) in (True, False)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(expressions())
def test_compile_generated_trees_never_raises_anything_else(tree: Node) -> None:
    text = format_expression(tree)
    try:
        compiled = compile_expression(text)
    except RulesError:
        return
    assert compiled.evaluate(REQUEST) in (True, False)
