"""Recursive-descent parser: text -> :mod:`cdn.rules.ast` tree.

Grammar (tightest last)::

    expr     := xor ( ("or" | "||") xor )*
    xor      := and ( ("xor" | "^^") and )*
    and      := unary ( ("and" | "&&") unary )*
    unary    := ("not" | "!") unary | "(" expr ")" | simple
    simple   := value [ cmp_op rhs ]
    value    := ident [ "(" [arg ("," arg)*] ")" ] ( "[" (string | int | "*") "]" )*
    arg      := string | int | expr
    rhs      := literal | "{" set_item+ "}" | "$" list_name      (sets and lists only after "in")

English keywords are lowercase only (wirefilter).  The parser checks syntax only; field names,
function names and types are checked by :mod:`cdn.rules.compiler`.
"""

from __future__ import annotations

from collections.abc import Callable

from .ast import (
    Call,
    Compare,
    Field,
    Index,
    IntLit,
    Logical,
    Node,
    Not,
    SetItem,
    SetLit,
    StringLit,
    Unpack,
)
from .errors import RulesError
from .lexer import Scanner, Token, describe

# Maximum nesting of parentheses / not / calls; keeps recursion far from Python's limit.
MAX_DEPTH = 64

_COMPARISON_WORDS = {
    "eq": "eq", "==": "eq", "ne": "ne", "!=": "ne",
    "lt": "lt", "<": "lt", "le": "le", "<=": "le", "gt": "gt", ">": "gt", "ge": "ge", ">=": "ge",
    "contains": "contains", "matches": "matches", "~": "matches", "wildcard": "wildcard",
    "in": "in", "bitwise_and": "bitwise_and", "&": "bitwise_and",
}  # fmt: skip
_LOGICAL_WORDS = {"and": "and", "&&": "and", "xor": "xor", "^^": "xor", "or": "or", "||": "or"}
_NOT_WORDS = frozenset({"not", "!"})
#: Reserved words: never field or function names.
KEYWORDS = frozenset({
    "eq", "ne", "lt", "le", "gt", "ge", "contains", "matches", "wildcard", "strict", "in", "bitwise_and",
    "and", "xor", "or", "not",
})  # fmt: skip


def parse_expression(text: str) -> Node:
    """Parse a whole expression.  Returns the tree or raises :class:`RulesError`."""
    return _Parser(text).parse()


class _Parser:
    def __init__(self, text: str) -> None:
        self.scanner = Scanner(text)
        self.depth = 0
        self.tok: Token = self.scanner.next_token()

    def advance(self) -> Token:
        tok = self.tok
        self.tok = self.scanner.next_token()
        return tok

    def parse(self) -> Node:
        if self.tok.kind == "eof":
            raise RulesError("empty expression", self.tok.pos)
        node = self.parse_or()
        if self.tok.kind != "eof":
            raise self.unexpected("expected a logical operator ('and', 'or', 'xor')")
        return node

    def unexpected(self, expectation: str) -> RulesError:
        tok = self.tok
        if tok.kind == "ident" and tok.text.lower() in KEYWORDS and tok.text not in KEYWORDS:
            return RulesError(
                f"operators must be lowercase: use '{tok.text.lower()}', not '{tok.text}'", tok.pos
            )
        return RulesError(f"{expectation}, found {describe(tok)}", tok.pos)

    def is_word(self, words: dict[str, str] | frozenset[str]) -> bool:
        return self.tok.kind in ("ident", "punct") and self.tok.text in words

    # -- logical -------------------------------------------------------------------------------

    def parse_or(self) -> Node:
        return self._chain("or", self.parse_xor)

    def parse_xor(self) -> Node:
        return self._chain("xor", self.parse_and)

    def parse_and(self) -> Node:
        return self._chain("and", self.parse_unary)

    def _chain(self, op: str, operand: Callable[[], Node]) -> Node:
        first = operand()
        items = [first]
        while self.is_word(_LOGICAL_WORDS) and _LOGICAL_WORDS[self.tok.text] == op:
            self.advance()
            items.append(operand())
        if len(items) == 1:
            return first
        return Logical(op, tuple(items), _pos(first))

    def parse_unary(self) -> Node:
        self.enter()
        try:
            tok = self.tok
            if self.is_word(_NOT_WORDS):
                self.advance()
                return Not(self.parse_unary(), tok.pos)
            if tok.kind == "punct" and tok.text == "(":
                self.advance()
                node = self.parse_or()
                self.expect(")")
                return node
            return self.parse_simple()
        finally:
            self.depth -= 1

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise RulesError(f"expression nested deeper than {MAX_DEPTH} levels", self.tok.pos)

    def expect(self, punct: str) -> Token:
        if self.tok.kind == "punct" and self.tok.text == punct:
            return self.advance()
        raise self.unexpected(f"expected '{punct}'")

    # -- comparisons ---------------------------------------------------------------------------

    def parse_simple(self) -> Node:
        lhs = self.parse_value()
        tok = self.tok
        if self.is_word(_COMPARISON_WORDS):
            op = _COMPARISON_WORDS[tok.text]
        elif tok.kind == "ident" and tok.text == "strict":
            op = "strict wildcard"
        else:
            return lhs
        # The right-hand side is read straight from the scanner: self.tok is the operator and the
        # scanner sits just after it.
        if op == "strict wildcard":
            follower = self.scanner.next_token()
            if not (follower.kind == "ident" and follower.text == "wildcard"):
                raise RulesError("expected 'wildcard' after 'strict'", follower.pos)
        rhs = self.parse_rhs(op)
        self.tok = self.scanner.next_token()
        return Compare(lhs, op, rhs, tok.pos)

    def parse_rhs(self, op: str) -> Node:
        scanner = self.scanner
        scanner.skip_whitespace()
        text, start = scanner.text, scanner.pos
        if op == "in":
            if text.startswith("$", start):
                return scanner.read_list_ref()
            if not text.startswith("{", start):
                raise RulesError("expected '{' or '$list' after 'in'", start)
            scanner.pos += 1
            items: list[SetItem] = []
            while True:
                scanner.skip_whitespace()
                if text.startswith("}", scanner.pos):
                    scanner.pos += 1
                    break
                if scanner.pos >= len(text):
                    raise RulesError("unterminated set, expected '}'", start)
                items.append(scanner.read_value(in_set=True))
                if scanner.pos < len(text) and text[scanner.pos] not in " \t\r\n}":
                    raise RulesError("set items must be separated by whitespace", scanner.pos)
            if not items:
                raise RulesError("empty set", start)
            first_kind = _set_kind(items[0])
            for item in items[1:]:
                if _set_kind(item) != first_kind:
                    raise RulesError("all items of a set must have the same type", item.pos)
            return SetLit(tuple(items), start)
        if text.startswith(("{", "$"), start):
            raise RulesError(f"sets and lists are only allowed after 'in', not after '{op}'", start)
        return scanner.read_value(regex=op == "matches")

    # -- values --------------------------------------------------------------------------------

    def parse_value(self) -> Node:
        tok = self.tok
        if tok.kind != "ident" or tok.text in KEYWORDS:
            if tok.kind in ("string", "int"):
                raise RulesError("a literal can't start a comparison: put the field first", tok.pos)
            raise self.unexpected("expected a field or a function")
        self.advance()
        node: Node
        if self.tok.kind == "punct" and self.tok.text == "(":
            self.advance()
            node = Call(tok.text, self.parse_args(), tok.pos)
        else:
            node = Field(tok.text, tok.pos)
        while self.tok.kind == "punct" and self.tok.text == "[":
            bracket = self.advance()
            key = self.tok
            if key.kind == "punct" and key.text == "*":
                self.advance()
                self.expect("]")
                node = Unpack(node, bracket.pos)
                continue
            if key.kind == "string" and isinstance(key.value, str):
                index: str | int = key.value
            elif key.kind == "int" and isinstance(key.value, int) and key.value >= 0:
                index = key.value
            else:
                raise self.unexpected("expected a quoted string, a non-negative integer or '*' in '[...]'")
            self.advance()
            self.expect("]")
            node = Index(node, index, bracket.pos)
        return node

    def parse_args(self) -> tuple[Node, ...]:
        self.enter()
        try:
            args: list[Node] = []
            if self.tok.kind == "punct" and self.tok.text == ")":
                self.advance()
                return ()
            while True:
                tok = self.tok
                if tok.kind == "string" and isinstance(tok.value, str):
                    self.advance()
                    args.append(StringLit(tok.value, tok.pos))
                elif tok.kind == "int" and isinstance(tok.value, int):
                    self.advance()
                    args.append(IntLit(tok.value, tok.pos))
                else:
                    args.append(self.parse_or())
                if self.tok.kind == "punct" and self.tok.text == ",":
                    self.advance()
                    continue
                self.expect(")")
                return tuple(args)
        finally:
            self.depth -= 1


def _set_kind(item: SetItem) -> str:
    return {"StringLit": "string", "IntLit": "int", "IntRange": "int"}.get(type(item).__name__, "ip")


def _pos(node: Node) -> int:
    return node.pos
