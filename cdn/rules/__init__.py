"""Cloudflare's Rules language (a wirefilter subset) for WAF custom rules, sans-IO.

Parse and type-check once (:func:`compile_expression`, :func:`compile_ruleset`), evaluate many
times against :class:`RequestFields`.  Every failure is a :class:`RulesError` carrying the character
position and the API error code (see :mod:`cdn.rules.errors` for the code choice).
"""

from __future__ import annotations

from .ast import Node
from .compiler import CompiledExpression, compile_expression
from .errors import FILTER_PARSE_ERROR_CODE, RulesError, RulesetError
from .fields import FIELDS, RequestFields
from .format import format_expression
from .functions import FUNCTIONS
from .parser import parse_expression
from .ruleset import (
    ACTIONS,
    PHASE,
    TERMINATING_ACTIONS,
    BlockResponse,
    CompiledRuleset,
    RuleMatch,
    RulesetOutcome,
    RuleSpec,
    SkipSpec,
    compile_ruleset,
    validate_action,
)
from .sets import ListSpec

__all__ = [
    "ACTIONS",
    "FIELDS",
    "FILTER_PARSE_ERROR_CODE",
    "FUNCTIONS",
    "PHASE",
    "TERMINATING_ACTIONS",
    "BlockResponse",
    "CompiledExpression",
    "CompiledRuleset",
    "ListSpec",
    "Node",
    "RequestFields",
    "RuleMatch",
    "RuleSpec",
    "RulesError",
    "RulesetError",
    "RulesetOutcome",
    "SkipSpec",
    "compile_expression",
    "compile_ruleset",
    "format_expression",
    "parse_expression",
    "validate_action",
]
