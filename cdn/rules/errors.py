"""The Rules package's error.

Every failure the package reports is a :class:`RulesError` (h11-style: one error type, nothing else
escapes ``parse_expression``/``compile_expression``/``compile_ruleset``).  Evaluation never raises:
all type errors are found once, at compile time.

Wire code choice: the API layer answers a rejected expression with Cloudflare error code **20217**
(the "filter parse error" family used by the Filters/Rulesets API; the exact code Cloudflare uses for
every rulesets validation failure is unconfirmed, edge adopts 20217 for all of them) and HTTP 400.
The message text mimics wirefilter's ``Filter parsing error (line:col): ...`` rendering, see
:meth:`RulesError.render`.
"""

from __future__ import annotations

#: Error code the API puts in ``errors[].code`` when it rejects an expression or a rule.
FILTER_PARSE_ERROR_CODE = 20217


class RulesError(Exception):
    """An expression or a rule is invalid.

    ``position`` is the 0-based character offset into the expression text (0 for errors that are
    not about the expression, e.g. an unknown action).  ``path`` names the rule attribute at fault
    (``"expression"``, ``"action"``, ``"action_parameters.response.status_code"``, ...).
    """

    code: int = FILTER_PARSE_ERROR_CODE

    def __init__(self, message: str, position: int = 0, *, path: str = "expression") -> None:
        super().__init__(message, position)
        self.message = message
        self.position = position
        self.path = path

    def __str__(self) -> str:
        return f"{self.message} at position {self.position}"

    def __repr__(self) -> str:
        return f"RulesError({self.message!r}, {self.position})"

    def render(self, text: str) -> str:
        """wirefilter-style report: ``Filter parsing error (1:5):``, the line, a caret, the message."""
        before = text[: self.position]
        line_no = before.count("\n") + 1
        line_start = before.rfind("\n") + 1
        line_end = text.find("\n", self.position)
        line = text[line_start : line_end if line_end >= 0 else len(text)]
        column = self.position - line_start
        return f"Filter parsing error ({line_no}:{column + 1}):\n{line}\n{' ' * column}^\n{self.message}"


class RulesetError(RulesError):
    """One or more rules of a ruleset are invalid; ``errors`` lists every one as (rule_index, error)."""

    def __init__(self, errors: tuple[tuple[int, RulesError], ...]) -> None:
        first_index, first = errors[0]
        summary = "; ".join(f"rules[{i}].{e.path}: {e}" for i, e in errors)
        super().__init__(summary, first.position, path=f"rules[{first_index}].{first.path}")
        self.errors = errors

    def __str__(self) -> str:
        return self.message
