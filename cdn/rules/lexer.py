"""Scanner for the Rules language.

Like wirefilter, scanning is context dependent: between operators the scanner yields tokens
(identifiers, punctuation, operators, quoted strings, integers); after a comparison operator the
parser asks for one literal (:meth:`Scanner.read_value`) or a set item, whose shape (IPv6 address vs.
integer vs. range) is decided by its characters alone.  Contract: every method returns a value or
raises :class:`RulesError` with the offset of the offending character; nothing else escapes.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from .ast import IntLit, IntRange, IpLit, IpRange, ListRef, StringLit
from .errors import RulesError

# wirefilter limits raw strings to 255 '#' (rhs_types/bytes.rs).
MAX_RAW_HASHES = 255
# wirefilter's Int is an i64.
INT_MIN, INT_MAX = -(2**63), 2**63 - 1

_WHITESPACE = " \t\r\n"
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*")
_INT = re.compile(r"-?[0-9]+")
# Characters an integer, IP, CIDR or range literal may contain.
_VALUE_RUN = re.compile(r"(?:-?[0-9A-Fa-f:./])+")
_LIST_NAME = re.compile(r"[a-z0-9_]+")
_OCTAL = frozenset("01234567")
_HEX = frozenset("0123456789abcdefABCDEF")

# Longest first, so "&&" wins over "&".
_PUNCT = (
    "==", "!=", "<=", ">=", "&&", "||", "^^",
    "<", ">", "~", "&", "!", "(", ")", "[", "]", "{", "}", ",", "*",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # "ident" | "string" | "int" | "punct" | "eof"
    text: str  # identifier / punctuation text, or the source text of a literal
    pos: int
    value: str | int | None = None  # decoded string or integer


def describe(token: Token) -> str:
    if token.kind == "eof":
        return "end of input"
    return f"'{token.text}'"


class Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def skip_whitespace(self) -> None:
        text, pos = self.text, self.pos
        while pos < len(text) and text[pos] in _WHITESPACE:
            pos += 1
        self.pos = pos

    def next_token(self) -> Token:
        self.skip_whitespace()
        text, start = self.text, self.pos
        if start >= len(text):
            return Token("eof", "", start)
        ch = text[start]
        if ch == '"' or (ch == "r" and text.startswith(('r"', "r#"), start)):
            value = self.read_string()
            return Token("string", text[start : self.pos], start, value)
        m = _INT.match(text, start)
        if m:
            self.pos = m.end()
            return Token("int", m.group(), start, _to_int(m.group(), start))
        m = _IDENT.match(text, start)
        if m:
            self.pos = m.end()
            return Token("ident", m.group(), start)
        for punct in _PUNCT:
            if text.startswith(punct, start):
                self.pos = start + len(punct)
                return Token("punct", punct, start)
        if ch == "=":
            raise RulesError("unexpected '=', use '==' or 'eq' for equality", start)
        if ch in "|^":
            raise RulesError(f"unexpected '{ch}', logical operators are '||' and '^^'", start)
        raise RulesError(f"unexpected character {ch!r}", start)

    # -- strings -------------------------------------------------------------------------------

    def read_string(self, *, regex: bool = False) -> str:
        """Read a quoted or raw string at the current position.

        With ``regex`` the quoted form keeps backslash escapes for the regex engine and only turns
        ``\\"`` into ``"`` (wirefilter reads the right side of ``matches`` that way).
        """
        text, start = self.text, self.pos
        if text.startswith("r", start):
            return self._read_raw_string()
        if not text.startswith('"', start):
            raise RulesError("expected a quoted string", start)
        out: list[str] = []
        pos = start + 1
        while True:
            if pos >= len(text):
                raise RulesError("unterminated string", start)
            ch = text[pos]
            if ch == '"':
                self.pos = pos + 1
                return "".join(out)
            if ch != "\\":
                out.append(ch)
                pos += 1
                continue
            if pos + 1 >= len(text):
                raise RulesError("unterminated string", start)
            esc = text[pos + 1]
            if regex:
                out.append('"' if esc == '"' else "\\" + esc)
                pos += 2
            elif esc in '"\\':
                out.append(esc)
                pos += 2
            elif esc == "x":
                digits = text[pos + 2 : pos + 4]
                if len(digits) != 2 or not set(digits) <= _HEX:
                    raise RulesError("invalid \\x escape, expected two hex digits", pos)
                out.append(chr(int(digits, 16)))
                pos += 4
            elif esc in _OCTAL:
                digits = text[pos + 1 : pos + 4]
                if len(digits) != 3 or not set(digits) <= _OCTAL or int(digits, 8) > 0xFF:
                    raise RulesError("invalid octal escape, expected three octal digits", pos)
                out.append(chr(int(digits, 8)))
                pos += 4
            else:
                raise RulesError(f"invalid escape '\\{esc}' in string", pos)

    def _read_raw_string(self) -> str:
        text, start = self.text, self.pos
        pos = start + 1
        while pos < len(text) and text[pos] == "#":
            pos += 1
        hashes = pos - start - 1
        if hashes > MAX_RAW_HASHES:
            raise RulesError(f"raw string has more than {MAX_RAW_HASHES} '#'", start)
        if pos >= len(text) or text[pos] != '"':
            raise RulesError("expected '\"' after r and '#'", pos)
        terminator = '"' + "#" * hashes
        end = text.find(terminator, pos + 1)
        if end < 0:
            raise RulesError("unterminated raw string", start)
        self.pos = end + len(terminator)
        return text[pos + 1 : end]

    # -- right-hand-side values ----------------------------------------------------------------

    def read_value(
        self, *, regex: bool = False, in_set: bool = False
    ) -> StringLit | IntLit | IpLit | IntRange | IpRange:
        """One literal: string, integer, IP; inside a set also CIDR and ``a..b`` ranges."""
        self.skip_whitespace()
        text, start = self.text, self.pos
        if text.startswith(('"', 'r"', "r#"), start):
            return StringLit(self.read_string(regex=regex), start)
        m = _VALUE_RUN.match(text, start)
        if not m:
            found = "end of input" if start >= len(text) else repr(text[start])
            raise RulesError(f"expected a literal value, found {found}", start)
        self.pos = m.end()
        run = m.group()
        if ".." in run:
            low_text, _, high_text = run.partition("..")
            low = _scalar(low_text, start)
            high = _scalar(high_text, start + len(low_text) + 2)
            if not in_set:
                raise RulesError("ranges are only allowed inside a set: use 'in {...}'", start)
            if isinstance(low, int) and isinstance(high, int):
                if low > high:
                    raise RulesError(f"range {run} is reversed", start)
                return IntRange(low, high, start)
            if isinstance(low, int | ipaddress.IPv4Network | ipaddress.IPv6Network) or isinstance(
                high, int | ipaddress.IPv4Network | ipaddress.IPv6Network
            ):
                raise RulesError(f"invalid range {run!r}: both ends must be integers or IP addresses", start)
            if low.version != high.version:
                raise RulesError(f"range {run} mixes IPv4 and IPv6", start)
            if int(low) > int(high):
                raise RulesError(f"range {run} is reversed", start)
            return IpRange(low, high, start)
        value = _scalar(run, start)
        if isinstance(value, int):
            return IntLit(value, start)
        if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network) and not in_set:
            raise RulesError(f"CIDR {run} is only allowed inside a set: use 'in {{{run}}}'", start)
        return IpLit(value, start)

    def read_list_ref(self) -> ListRef:
        start = self.pos
        m = _LIST_NAME.match(self.text, start + 1)
        if not m or (m.end() < len(self.text) and (self.text[m.end()].isalnum())):
            raise RulesError("invalid list name: use lowercase letters, digits and '_'", start + 1)
        self.pos = m.end()
        return ListRef(m.group(), start)


def _to_int(text: str, pos: int) -> int:
    # Check the length first: int() refuses strings longer than 4300 digits with a ValueError.
    if len(text.lstrip("-").lstrip("0")) > 19:
        raise RulesError(f"integer {text[:24]} is out of range", pos)
    value = int(text)
    if not INT_MIN <= value <= INT_MAX:
        raise RulesError(f"integer {text} is out of range", pos)
    return value


def _scalar(
    text: str, pos: int
) -> int | ipaddress.IPv4Address | ipaddress.IPv6Address | ipaddress.IPv4Network | ipaddress.IPv6Network:
    if _INT.fullmatch(text):
        return _to_int(text, pos)
    try:
        if "/" in text:
            return ipaddress.ip_network(text, strict=False)
        return ipaddress.ip_address(text)
    except ValueError:
        raise RulesError(f"invalid literal {text!r}: expected an integer or an IP address", pos) from None
