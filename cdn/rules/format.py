"""Tree -> canonical expression text.

Canonical form: English operators, single spaces, the fewest parentheses that keep the tree,
strings double-quoted with ``\\"``, ``\\\\`` and ``\\xHH`` (for control characters) escapes; regexes
quoted when possible, else as raw strings.  Contract: ``parse(format(t)) == t`` for every tree
the parser can produce.
"""

from __future__ import annotations

import ipaddress

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
from .lexer import Scanner

_PRECEDENCE = {"or": 1, "xor": 2, "and": 3}


def format_expression(node: Node) -> str:
    return _format(node)


def _format(node: Node) -> str:
    if isinstance(node, Logical):
        prec = _PRECEDENCE[node.op]
        parts = []
        for item in node.items:
            text = _format(item)
            if isinstance(item, Logical) and _PRECEDENCE[item.op] <= prec:
                text = f"({text})"
            parts.append(text)
        return f" {node.op} ".join(parts)
    if isinstance(node, Not):
        inner = _format(node.operand)
        return f"not ({inner})" if isinstance(node.operand, Logical) else f"not {inner}"
    if isinstance(node, Compare):
        lhs = _format(node.lhs)
        if isinstance(node.lhs, Compare | Logical | Not):
            lhs = f"({lhs})"
        if node.op == "matches" and isinstance(node.rhs, StringLit):
            return f"{lhs} matches {format_regex(node.rhs.value)}"
        return f"{lhs} {node.op} {_format(node.rhs)}"
    if isinstance(node, Field):
        return node.name
    if isinstance(node, Index):
        key = format_string(node.key) if isinstance(node.key, str) else str(node.key)
        return f"{_format(node.target)}[{key}]"
    if isinstance(node, Unpack):
        return f"{_format(node.target)}[*]"
    if isinstance(node, Call):
        return f"{node.name}({', '.join(_format(arg) for arg in node.args)})"
    if isinstance(node, StringLit):
        return format_string(node.value)
    if isinstance(node, IntLit):
        return str(node.value)
    if isinstance(node, IpLit):
        if isinstance(node.value, ipaddress.IPv4Network | ipaddress.IPv6Network):
            return node.value.with_prefixlen
        return str(node.value)
    if isinstance(node, IntRange | IpRange):
        return f"{node.low}..{node.high}"
    if isinstance(node, SetLit):
        return "{" + " ".join(_format(item) for item in node.items) + "}"
    if isinstance(node, ListRef):
        return f"${node.name}"
    raise TypeError(f"not a Rules node: {node!r}")  # unreachable for well-typed callers


def format_string(value: str) -> str:
    out = ['"']
    for ch in value:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def format_regex(pattern: str) -> str:
    """Quote a regex so that the regex-mode reader gives ``pattern`` back."""
    out = ['"']
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            out.append(pattern[i : i + 2])
            i += 2
            continue
        out.append('\\"' if ch == '"' else ch)
        i += 1
    out.append('"')
    quoted = "".join(out)
    if _reads_back(quoted, pattern):
        return quoted
    hashes = 0
    while '"' + "#" * hashes in pattern:
        hashes += 1
    return f'r{"#" * hashes}"{pattern}"{"#" * hashes}'


def _reads_back(quoted: str, pattern: str) -> bool:
    scanner = Scanner(quoted)
    try:
        return scanner.read_string(regex=True) == pattern and scanner.pos == len(quoted)
    except RulesError:  # e.g. a trailing lone backslash: fall back to a raw string
        return False
