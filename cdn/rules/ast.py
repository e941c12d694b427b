"""Syntax tree of a Rules expression.

Nodes are frozen, slotted dataclasses.  ``pos`` (0-based offset of the node's first character, or of
the operator for :class:`Compare`) is excluded from equality so that ``parse(format(parse(x))) ==
parse(x)`` holds although the canonical text has different offsets.  Parentheses leave no node.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Canonical (English) comparison operators.  ``strict wildcard`` is one operator.
COMPARISON_OPS = (
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "contains",
    "matches",
    "wildcard",
    "strict wildcard",
    "in",
    "bitwise_and",
)
LOGICAL_OPS = ("and", "xor", "or")


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Index:
    """``target["key"]`` (Map) or ``target[0]`` (Array)."""

    target: Node
    key: str | int
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Unpack:
    """``target[*]``: every element of an Array or every value of a Map."""

    target: Node
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Call:
    name: str
    args: tuple[Node, ...]
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class StringLit:
    """A string literal; after ``matches`` the value is the regex source."""

    value: str
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class IntLit:
    value: int
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class IpLit:
    """An address, or a CIDR (a network, only inside a set)."""

    value: IPAddress | IPNetwork
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class IntRange:
    low: int
    high: int
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class IpRange:
    low: IPAddress
    high: IPAddress
    pos: int = field(default=0, compare=False)


SetItem = StringLit | IntLit | IpLit | IntRange | IpRange


@dataclass(frozen=True, slots=True)
class SetLit:
    items: tuple[SetItem, ...]
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class ListRef:
    """``$name``: a named account list (only after ``in``)."""

    name: str
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Compare:
    lhs: Node
    op: str  # one of COMPARISON_OPS
    rhs: Node
    pos: int = field(default=0, compare=False)  # offset of the operator


@dataclass(frozen=True, slots=True)
class Not:
    operand: Node
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Logical:
    """``items[0] op items[1] op ...``; a chain of one operator is one node (at least two items)."""

    op: str  # one of LOGICAL_OPS
    items: tuple[Node, ...]
    pos: int = field(default=0, compare=False)


Literal = StringLit | IntLit | IpLit | IntRange | IpRange | SetLit | ListRef
Node = Field | Index | Unpack | Call | Compare | Not | Logical | Literal
