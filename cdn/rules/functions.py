"""Functions of the Rules language usable in WAF custom rules: signatures and implementations.

Each :class:`FunctionDef` checks its arguments' types once (at compile time) and returns the result
type plus a plain Python implementation over already evaluated argument values.  Missing-value
handling and ``[*]`` mapping are done by the compiler: an implementation never sees ``None``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from .ast import IntLit, Node, StringLit
from .errors import RulesError
from .types import BOOL, INT, IP, STRING, Type, array_of

Impl = Callable[..., Any]

# ASCII-only case mapping: Cloudflare's lower()/upper() leave non-ASCII bytes alone.
_TO_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_TO_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_PERCENT_U = re.compile(r"%u([0-9A-Fa-f]{4})")
# url_decode(x, "r") stops after this many rounds even if the value keeps changing.
MAX_DECODE_ROUNDS = 16


@dataclass(frozen=True, slots=True)
class Arg:
    """One compiled argument as a signature check sees it."""

    type: Type
    pos: int
    literal: Node | None  # the literal node when the argument is a literal


Check = Callable[[tuple[Arg, ...], int], tuple[Type, Impl]]


@dataclass(frozen=True, slots=True)
class FunctionDef:
    name: str
    min_args: int
    max_args: int | None  # None: variadic
    check: Check
    missing: Any = None  # result when an argument is missing (False for Bool functions)


def ascii_lower(value: str) -> str:
    return value.lower() if value.isascii() else value.translate(_TO_LOWER)


def ascii_upper(value: str) -> str:
    return value.upper() if value.isascii() else value.translate(_TO_UPPER)


def byte_length(value: Any) -> int:
    if isinstance(value, str):
        return len(value) if value.isascii() else len(value.encode("utf-8", "replace"))
    return len(value)


def url_decode(value: str, flags: str = "") -> str:
    """``%XX`` and ``+`` decode; flag ``u`` also decodes ``%uXXXX``; flag ``r`` repeats until stable."""
    rounds = MAX_DECODE_ROUNDS if "r" in flags else 1
    for _ in range(rounds):
        decoded = value
        if "u" in flags:
            decoded = _PERCENT_U.sub(lambda m: chr(int(m.group(1), 16)), decoded)
        decoded = unquote_plus(decoded)
        if decoded == value:
            break
        value = decoded
    return value


def substring(value: str, start: int, end: int | None = None) -> str:
    """Byte indexes into the UTF-8 form; negative indexes count from the end."""
    if value.isascii():
        return value[start:end]
    return value.encode("utf-8", "replace")[start:end].decode("utf-8", "replace")


def to_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _type_error(arg: Arg, index: int, name: str, expected: str) -> RulesError:
    return RulesError(f"argument {index + 1} of {name}() must be {expected}, found {arg.type}", arg.pos)


def _expect(args: tuple[Arg, ...], index: int, name: str, *types: Type) -> None:
    if args[index].type not in types:
        raise _type_error(args[index], index, name, " or ".join(str(t) for t in types))


def _not_literal(args: tuple[Arg, ...], name: str) -> None:
    if args[0].literal is not None:
        raise RulesError(
            f"the first argument of {name}() must be a field or a function, not a literal", args[0].pos
        )


def _string_fn(name: str, impl: Impl) -> Check:
    def check(args: tuple[Arg, ...], pos: int) -> tuple[Type, Impl]:
        _expect(args, 0, name, STRING)
        return STRING, impl

    return check


def _affix(name: str, impl: Impl) -> Check:
    def check(args: tuple[Arg, ...], pos: int) -> tuple[Type, Impl]:
        _not_literal(args, name)
        _expect(args, 0, name, STRING)
        _expect(args, 1, name, STRING)
        return BOOL, impl

    return check


def _check_len(args: tuple[Arg, ...], pos: int) -> tuple[Type, Impl]:
    if args[0].type != STRING and args[0].type.kind not in ("Array", "Map"):
        raise _type_error(args[0], 0, "len", "a String, an Array or a Map")
    return INT, byte_length


def _check_concat(args: tuple[Arg, ...], pos: int) -> tuple[Type, Impl]:
    first = args[0].type
    if first != STRING and first.kind != "Array":
        raise _type_error(args[0], 0, "concat", "a String or an Array")
    for i, arg in enumerate(args):
        if arg.type != first:
            raise _type_error(arg, i, "concat", str(first))
    if first == STRING:
        return STRING, lambda *values: "".join(values)
    return first, lambda *values: tuple(v for value in values for v in value)


def _quantifier(name: str, impl: Impl) -> Check:
    def check(args: tuple[Arg, ...], pos: int) -> tuple[Type, Impl]:
        if args[0].type != array_of(BOOL):
            raise RulesError(
                f'{name}() takes an Array<Bool>, e.g. {name}(http.request.headers["x"][*] == "v"), '
                f"found {args[0].type}",
                args[0].pos,
            )
        return BOOL, impl

    return check


def _check_url_decode(args: tuple[Arg, ...], pos: int) -> tuple[Type, Impl]:
    _expect(args, 0, "url_decode", STRING)
    if len(args) == 1:
        return STRING, url_decode
    flags = args[1].literal
    if not isinstance(flags, StringLit) or not set(flags.value) <= {"r", "u"}:
        raise RulesError(
            'the second argument of url_decode() must be a literal made of "r" and "u"', args[1].pos
        )
    return STRING, url_decode


def _check_substring(args: tuple[Arg, ...], pos: int) -> tuple[Type, Impl]:
    _expect(args, 0, "substring", STRING)
    for i in range(1, len(args)):
        _expect(args, i, "substring", INT)
    return STRING, substring


def _check_to_string(args: tuple[Arg, ...], pos: int) -> tuple[Type, Impl]:
    _expect(args, 0, "to_string", INT, BOOL, IP, STRING)
    return STRING, to_string


def _literal_int(args: tuple[Arg, ...], index: int, name: str, low: int, high: int) -> int:
    node = args[index].literal
    if not isinstance(node, IntLit) or not low <= node.value <= high:
        raise RulesError(
            f"argument {index + 1} of {name}() must be an integer literal in {low}..{high}", args[index].pos
        )
    return node.value


def _check_cidr(args: tuple[Arg, ...], pos: int) -> tuple[Type, Impl]:
    _expect(args, 0, "cidr", IP)
    v4 = _literal_int(args, 1, "cidr", 1, 32)
    v6 = _literal_int(args, 2, "cidr", 1, 128)

    def cidr(ip: Any, *_: Any) -> Any:
        bits = v4 if ip.version == 4 else v6
        return ipaddress.ip_network(f"{ip}/{bits}", strict=False).network_address

    return IP, cidr


def _check_cidr6(args: tuple[Arg, ...], pos: int) -> tuple[Type, Impl]:
    _expect(args, 0, "cidr6", IP)
    v6 = _literal_int(args, 1, "cidr6", 1, 128)

    def cidr6(ip: Any, *_: Any) -> Any:
        if ip.version == 4:
            return ip
        return ipaddress.ip_network(f"{ip}/{v6}", strict=False).network_address

    return IP, cidr6


FUNCTIONS: dict[str, FunctionDef] = {
    f.name: f
    for f in (
        FunctionDef("lower", 1, 1, _string_fn("lower", ascii_lower)),
        FunctionDef("upper", 1, 1, _string_fn("upper", ascii_upper)),
        FunctionDef("starts_with", 2, 2, _affix("starts_with", str.startswith), missing=False),
        FunctionDef("ends_with", 2, 2, _affix("ends_with", str.endswith), missing=False),
        FunctionDef("len", 1, 1, _check_len),
        FunctionDef("concat", 2, None, _check_concat),
        FunctionDef("any", 1, 1, _quantifier("any", lambda xs: any(x is True for x in xs)), missing=False),
        FunctionDef("all", 1, 1, _quantifier("all", lambda xs: all(x is True for x in xs)), missing=False),
        FunctionDef("url_decode", 1, 2, _check_url_decode),
        FunctionDef("substring", 2, 3, _check_substring),
        FunctionDef("to_string", 1, 1, _check_to_string),
        FunctionDef("cidr", 3, 3, _check_cidr),
        FunctionDef("cidr6", 2, 2, _check_cidr6),
    )
}
