"""Type-check an expression once and turn it into nested Python closures.

Everything that can be decided without a request is decided here: field lookups are bound, sets
become hash sets, regexes and wildcards are compiled, list names are resolved.  A compiled
expression never raises at evaluation time; a missing value (absent map key, index out of range)
makes every comparison against it false.

``[*]`` (unpack) is accepted as the outermost part of a function's first argument (the function is
then applied to each element and returns an Array) and on the left of a comparison (which then
returns Array<Bool>, for ``any()``/``all()``).
"""

from __future__ import annotations

import ipaddress
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import reduce
from types import MappingProxyType
from typing import Any

from .ast import (
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
from .errors import RulesError
from .fields import FIELDS, EvalContext, RequestFields
from .functions import FUNCTIONS, Arg
from .parser import parse_expression
from .sets import HostnameSet, IntSet, IpSet, ListSpec
from .types import BOOL, INT, IP, STRING, Type, array_of

Run = Callable[[EvalContext], Any]
Predicate = Callable[[Any], bool]

NO_LISTS: Mapping[str, ListSpec] = MappingProxyType({})

# Which operators apply to which scalar type (reference 5.2; ordering on IPs as wirefilter allows).
_OPS_BY_TYPE: dict[Type, frozenset[str]] = {
    STRING: frozenset(
        {"eq", "ne", "lt", "le", "gt", "ge", "contains", "matches", "wildcard", "strict wildcard", "in"}
    ),
    INT: frozenset({"eq", "ne", "lt", "le", "gt", "ge", "in", "bitwise_and"}),
    IP: frozenset({"eq", "ne", "lt", "le", "gt", "ge", "in"}),
}
_ORDERING = {"lt": operator.lt, "le": operator.le, "gt": operator.gt, "ge": operator.ge}
_LIST_KIND_TYPE = {"ip": IP, "hostname": STRING, "asn": INT}


@dataclass(frozen=True, slots=True)
class _Typed:
    type: Type
    run: Run
    each: bool = False  # the value is the elements of an unpacked ([*]) Array or Map
    literal: Node | None = None


class CompiledExpression:
    """A type-checked expression, ready to evaluate against any number of requests."""

    __slots__ = ("_run", "ast", "text")

    def __init__(self, text: str, ast: Node, run: Run) -> None:
        self.text = text
        self.ast = ast
        self._run = run

    def evaluate(self, request: RequestFields) -> bool:
        return self._run(EvalContext(request)) is True

    def evaluate_context(self, context: EvalContext) -> bool:
        """Evaluate with a shared per-request context (a ruleset evaluates all its rules on one)."""
        return self._run(context) is True

    def __repr__(self) -> str:
        return f"CompiledExpression({self.text!r})"


def compile_expression(text: str, lists: Mapping[str, ListSpec] = NO_LISTS) -> CompiledExpression:
    """Parse, type-check and compile ``text``.  Raises :class:`RulesError`."""
    node = parse_expression(text)
    return CompiledExpression(text, node, compile_node(node, lists))


def compile_node(node: Node, lists: Mapping[str, ListSpec] = NO_LISTS) -> Run:
    """Compile an already parsed tree (must be Bool-typed)."""
    return _Compiler(lists).boolean(node)


class _Compiler:
    def __init__(self, lists: Mapping[str, ListSpec]) -> None:
        self.lists = lists

    # -- boolean context -----------------------------------------------------------------------

    def boolean(self, node: Node) -> Run:
        if isinstance(node, Not):
            inner = self.boolean(node.operand)
            return lambda c: inner(c) is not True
        if isinstance(node, Logical):
            return self.logical(node)
        typed = self.value(node)
        if typed.each:
            raise RulesError("[*] can only be used in a function's first argument", _unpack_pos(node))
        if typed.type != BOOL:
            hint = ": wrap the comparison in any() or all()" if typed.type == array_of(BOOL) else ""
            raise RulesError(f"expected a Bool expression, found {typed.type}{hint}", start_of(node))
        if isinstance(node, Index):
            run = typed.run
            return lambda c: run(c) is True
        return typed.run

    def logical(self, node: Logical) -> Run:
        runs = [self.boolean(item) for item in node.items]
        if node.op == "and":
            return reduce(_and, runs)
        if node.op == "or":
            return reduce(_or, runs)
        return reduce(_xor, runs)

    # -- values --------------------------------------------------------------------------------

    def value(self, node: Node) -> _Typed:
        if isinstance(node, Field):
            field = FIELDS.get(node.name)
            if field is None:
                raise RulesError(f"unknown field '{node.name}'", node.pos)
            return _Typed(field.type, field.get)
        if isinstance(node, Compare):
            return self.compare(node)
        if isinstance(node, Call):
            return self.call(node)
        if isinstance(node, Index):
            return self.index(node)
        if isinstance(node, Unpack):
            target = self.value(node.target)
            if target.each:
                raise RulesError("[*] can't be applied twice", node.pos)
            elem = target.type.elem
            if elem is None:
                raise RulesError(f"[*] needs an Array or a Map, found {target.type}", node.pos)
            get = target.run
            if target.type.kind == "Map":
                return _Typed(elem, lambda c: None if (m := get(c)) is None else tuple(m.values()), each=True)
            return _Typed(elem, get, each=True)
        if isinstance(node, StringLit):
            value = node.value
            return _Typed(STRING, lambda c: value, literal=node)
        if isinstance(node, IntLit):
            number = node.value
            return _Typed(INT, lambda c: number, literal=node)
        if isinstance(node, Not | Logical):
            return _Typed(BOOL, self.boolean(node))
        raise RulesError("a literal can't be used here", node.pos)

    def index(self, node: Index) -> _Typed:
        target = self.value(node.target)
        if target.each:
            raise RulesError("can't index after [*]", node.pos)
        get, key, elem = target.run, node.key, target.type.elem
        if target.type.kind == "Map" and isinstance(key, str) and elem is not None:
            return _Typed(elem, lambda c: None if (m := get(c)) is None else m.get(key))
        if target.type.kind == "Array" and isinstance(key, int) and elem is not None:
            return _Typed(elem, lambda c: a[key] if (a := get(c)) is not None and key < len(a) else None)
        wanted = {"Map": "a quoted string key", "Array": "an integer index"}.get(target.type.kind)
        if wanted is None:
            raise RulesError(f"{target.type} can't be indexed", node.pos)
        raise RulesError(f"{target.type} needs {wanted}", node.pos)

    def call(self, node: Call) -> _Typed:
        fn = FUNCTIONS.get(node.name)
        if fn is None:
            raise RulesError(f"unknown function '{node.name}'", node.pos)
        count = len(node.args)
        if count < fn.min_args or (fn.max_args is not None and count > fn.max_args):
            if fn.max_args == fn.min_args:
                wanted = f"{fn.min_args}"
            elif fn.max_args is None:
                wanted = f"at least {fn.min_args}"
            else:
                wanted = f"{fn.min_args} to {fn.max_args}"
            plural = "" if wanted == "1" else "s"
            raise RulesError(f"{node.name}() takes {wanted} argument{plural}, found {count}", node.pos)
        typed = [self.value(arg) for arg in node.args]
        for arg, t in zip(node.args[1:], typed[1:], strict=True):
            if t.each:
                raise RulesError("[*] can only be used in a function's first argument", _unpack_pos(arg))
        args = tuple(Arg(t.type, start_of(a), t.literal) for a, t in zip(node.args, typed, strict=True))
        result, impl = fn.check(args, node.pos)
        missing = fn.missing
        runs = [t.run for t in typed]
        first, rest = runs[0], runs[1:]

        def apply(value: Any, c: EvalContext) -> Any:
            if value is None:
                return missing
            values = [r(c) for r in rest]
            if any(v is None for v in values):
                return missing
            return impl(value, *values)

        if typed[0].each:
            return _Typed(
                array_of(result),
                lambda c: None if (xs := first(c)) is None else tuple(apply(x, c) for x in xs),
            )
        if not rest:
            return _Typed(result, lambda c: missing if (v := first(c)) is None else impl(v))
        return _Typed(result, lambda c: apply(first(c), c))

    # -- comparisons ---------------------------------------------------------------------------

    def compare(self, node: Compare) -> _Typed:
        lhs = self.value(node.lhs)
        if lhs.literal is not None:
            raise RulesError("the left side of a comparison must be a field or a function", node.lhs.pos)
        ops = _OPS_BY_TYPE.get(lhs.type)
        if ops is None:
            if lhs.type == BOOL:
                raise RulesError("a Bool can't be compared: use it alone or with 'not'", node.pos)
            raise RulesError(f"{lhs.type} can't be compared: index it with [...] or [*]", node.pos)
        if node.op not in ops:
            raise RulesError(f"operator '{node.op}' is not defined for {lhs.type}", node.pos)
        get = lhs.run
        if not lhs.each and node.op in ("eq", "in"):
            # Hot path without the extra predicate call: None (missing) never equals a literal and is
            # never a member of a set.
            if node.op == "in":
                members = self.members(node.rhs, lhs.type)
                return _Typed(BOOL, lambda c: get(c) in members)
            lit = self.scalar(node.rhs, lhs.type)
            return _Typed(BOOL, lambda c: get(c) == lit)
        pred = self.predicate(node, lhs.type)
        if lhs.each:
            return _Typed(
                array_of(BOOL), lambda c: None if (xs := get(c)) is None else tuple(pred(x) for x in xs)
            )
        return _Typed(BOOL, lambda c: pred(get(c)))

    def predicate(self, node: Compare, type_: Type) -> Predicate:
        op, rhs = node.op, node.rhs
        if op == "in":
            members = self.members(rhs, type_)
            return lambda v: v in members
        lit = self.scalar(rhs, type_)
        if op == "eq":
            return lambda v: v == lit
        if op == "ne":
            return lambda v: v is not None and v != lit
        if op in _ORDERING:
            cmp = _ORDERING[op]
            if type_ == IP:
                version = lit.version
                return lambda v: v is not None and v.version == version and cmp(v, lit)
            return lambda v: v is not None and cmp(v, lit)
        if op == "contains":
            return lambda v: v is not None and lit in v
        if op == "bitwise_and":
            return lambda v: v is not None and v & lit != 0
        if op == "matches":
            try:
                regex = re.compile(lit)
            except re.error as exc:
                raise RulesError(f"invalid regular expression: {exc.msg}", rhs.pos) from None
            search = regex.search
            return lambda v: v is not None and search(v) is not None
        # wildcard / strict wildcard
        match = compile_wildcard(lit, rhs.pos, case_sensitive=op == "strict wildcard")
        return lambda v: v is not None and match(v) is not None

    def scalar(self, rhs: Node, type_: Type) -> Any:
        if type_ == STRING and isinstance(rhs, StringLit):
            return rhs.value
        if type_ == INT and isinstance(rhs, IntLit):
            return rhs.value
        if type_ == IP and isinstance(rhs, IpLit):
            if isinstance(rhs.value, ipaddress.IPv4Network | ipaddress.IPv6Network):
                raise RulesError(f"CIDR {rhs.value} is only allowed inside a set: use 'in {{...}}'", rhs.pos)
            return rhs.value
        raise RulesError(f"expected {_a(type_)} value, found {_describe_literal(rhs)}", rhs.pos)

    def members(self, rhs: Node, type_: Type) -> IpSet | IntSet | HostnameSet | frozenset[str]:
        if isinstance(rhs, ListRef):
            return self.named_list(rhs, type_)
        if not isinstance(rhs, SetLit):
            raise RulesError("expected a set '{...}' or a list '$name' after 'in'", rhs.pos)
        for item in rhs.items:
            ok = (
                (type_ == STRING and isinstance(item, StringLit))
                or (type_ == INT and isinstance(item, IntLit | IntRange))
                or (type_ == IP and isinstance(item, IpLit | IpRange))
            )
            if not ok:
                raise RulesError(
                    f"expected {_a(type_)} value in the set, found {_describe_literal(item)}", item.pos
                )
        if type_ == STRING:
            return frozenset(item.value for item in rhs.items if isinstance(item, StringLit))
        if type_ == INT:
            return IntSet(
                (item.value for item in rhs.items if isinstance(item, IntLit)),
                ((item.low, item.high) for item in rhs.items if isinstance(item, IntRange)),
            )
        return IpSet(
            (item.value for item in rhs.items if isinstance(item, IpLit)),
            ((item.low, item.high) for item in rhs.items if isinstance(item, IpRange)),
        )

    def named_list(self, ref: ListRef, type_: Type) -> IpSet | IntSet | HostnameSet:
        spec = self.lists.get(ref.name)
        if spec is None:
            raise RulesError(f"unknown list '${ref.name}'", ref.pos)
        wanted = _LIST_KIND_TYPE.get(spec.kind)
        if wanted is None:
            raise RulesError(
                f"list '${ref.name}' of kind '{spec.kind}' can't be used in an expression", ref.pos
            )
        if wanted != type_:
            raise RulesError(
                f"list '${ref.name}' holds {spec.kind} items, which can't match {_a(type_)}", ref.pos
            )
        if spec.kind == "hostname":
            return HostnameSet(spec.items)
        try:
            if spec.kind == "asn":
                return IntSet(int(item) for item in spec.items)
            return IpSet(ipaddress.ip_network(item.strip(), strict=False) for item in spec.items)
        except ValueError as exc:
            raise RulesError(f"list '${ref.name}' has an invalid item: {exc}", ref.pos) from None


def compile_wildcard(pattern: str, pos: int, *, case_sensitive: bool) -> Callable[[str], Any]:
    """``*`` matches any run of characters, ``\\*`` and ``\\\\`` are literal; the whole value must match."""
    parts: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            if pattern.startswith("**", i):
                raise RulesError("'**' is not allowed in a wildcard pattern", pos)
            parts.append(".*")
        elif ch == "\\":
            nxt = pattern[i + 1 : i + 2]
            if nxt not in ("*", "\\"):
                raise RulesError("in a wildcard pattern only '*' and '\\' can be escaped", pos)
            parts.append(re.escape(nxt))
            i += 1
        else:
            parts.append(re.escape(ch))
        i += 1
    flags = re.DOTALL if case_sensitive else re.DOTALL | re.IGNORECASE | re.ASCII
    return re.compile("".join(parts), flags).fullmatch


def _and(a: Run, b: Run) -> Run:
    return lambda c: a(c) and b(c)


def _or(a: Run, b: Run) -> Run:
    return lambda c: a(c) or b(c)


def _xor(a: Run, b: Run) -> Run:
    return lambda c: a(c) is not b(c)


def _a(type_: Type) -> str:
    return f"an {type_}" if type_ in (INT, IP) else f"a {type_}"


def _describe_literal(node: Node) -> str:
    names = {
        StringLit: "a string", IntLit: "an integer", IntRange: "an integer range", IpRange: "an IP range",
        SetLit: "a set", ListRef: "a list",
    }  # fmt: skip
    if isinstance(node, IpLit):
        return (
            "a CIDR"
            if isinstance(node.value, ipaddress.IPv4Network | ipaddress.IPv6Network)
            else "an IP address"
        )
    return names.get(type(node), "an expression")


def start_of(node: Node) -> int:
    """Offset of the first character of ``node``'s text."""
    while True:
        if isinstance(node, Index | Unpack):
            node = node.target
        elif isinstance(node, Compare):
            node = node.lhs
        elif isinstance(node, Logical):
            node = node.items[0]
        else:
            return node.pos


def _unpack_pos(node: Node) -> int:
    while not isinstance(node, Unpack):
        if isinstance(node, Index | Unpack):
            node = node.target
        elif isinstance(node, Compare):
            node = node.lhs
        elif isinstance(node, Call) and node.args:
            node = node.args[0]
        else:
            return node.pos
    return node.pos
