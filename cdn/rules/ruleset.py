"""A WAF custom-rules ruleset (phase ``http_request_firewall_custom``): validate, compile, evaluate.

Semantics (reference 4.6):

* rules run in order; disabled rules are compiled (so errors surface) but never evaluated;
* ``log`` records the match and continues;
* ``skip`` with ``ruleset: "current"`` or ``phase: "current"`` stops this ruleset; with
  ``rules: {<this ruleset id>: [ids]}`` the named later rules are not evaluated; ``phases``,
  ``products``, ``rulesets`` and rules of other rulesets are recorded in the outcome for the CDN;
* the first terminating action (block, challenge, js_challenge, managed_challenge) ends evaluation;
* ``block`` may carry ``response: {status_code (400-499), content, content_type}``.

Other actions of the phase (``execute``) are not supported by edge and are rejected.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .compiler import NO_LISTS, CompiledExpression, compile_expression
from .errors import RulesError, RulesetError
from .fields import EvalContext, RequestFields
from .sets import ListSpec

PHASE = "http_request_firewall_custom"
TERMINATING_ACTIONS = frozenset({"block", "challenge", "js_challenge", "managed_challenge"})
ACTIONS = TERMINATING_ACTIONS | {"log", "skip"}
BLOCK_CONTENT_TYPES = frozenset({"text/html", "text/plain", "application/json", "text/xml"})
# Cloudflare accepts custom block status codes in 400-499 only.
BLOCK_STATUS_MIN, BLOCK_STATUS_MAX = 400, 499
SKIP_PHASES = frozenset({"http_ratelimit", "http_request_sbfm", "http_request_firewall_managed"})
SKIP_PRODUCTS = frozenset({"zoneLockdown", "uaBlock", "bic", "hot", "securityLevel", "rateLimit", "waf"})
_T = TypeVar("_T")
_SKIP_KEYS = ("ruleset", "phase", "phases", "products", "rulesets", "rules")


@dataclass(frozen=True, slots=True)
class RuleSpec:
    id: str
    action: str
    expression: str
    description: str = ""
    enabled: bool = True
    ref: str = ""
    action_parameters: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BlockResponse:
    status_code: int
    content: str
    content_type: str


@dataclass(frozen=True, slots=True)
class SkipSpec:
    """What a ``skip`` rule skips once it matches."""

    rest_of_ruleset: bool = False  # ruleset: "current"
    rest_of_phase: bool = False  # phase: "current"
    phases: tuple[str, ...] = ()
    products: tuple[str, ...] = ()
    rulesets: tuple[str, ...] = ()
    rules: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (ruleset_id, rule ids)


@dataclass(frozen=True, slots=True)
class RuleMatch:
    rule_id: str
    action: str
    description: str
    ref: str
    match_index: int  # position of the rule in the ruleset, 0-based
    response: BlockResponse | None = None
    skip: SkipSpec | None = None


@dataclass(frozen=True, slots=True)
class RulesetOutcome:
    terminating: RuleMatch | None
    matches: tuple[RuleMatch, ...]
    response: BlockResponse | None
    evaluated: tuple[tuple[str, bool], ...]
    skipped_phases: tuple[str, ...] = ()
    skipped_products: tuple[str, ...] = ()
    skipped_rulesets: tuple[str, ...] = ()
    skipped_rules: tuple[tuple[str, str], ...] = ()  # (ruleset_id, rule_id) of other rulesets
    rest_of_phase_skipped: bool = False


@dataclass(frozen=True, slots=True)
class _CompiledRule:
    spec: RuleSpec
    expression: CompiledExpression
    match: RuleMatch
    terminating: bool
    skip_own: frozenset[str]  # rule ids of this ruleset the rule skips


class CompiledRuleset:
    __slots__ = ("_rules", "rules", "ruleset_id")

    def __init__(
        self, ruleset_id: str, rules: tuple[RuleSpec, ...], compiled: tuple[_CompiledRule, ...]
    ) -> None:
        self.ruleset_id = ruleset_id
        self.rules = rules
        self._rules = compiled  # enabled rules only

    def evaluate(self, request: RequestFields) -> RulesetOutcome:
        context = EvalContext(request)
        evaluated: list[tuple[str, bool]] = []
        matches: list[RuleMatch] = []
        skipped: set[str] = set()
        skips: list[SkipSpec] = []
        terminating: RuleMatch | None = None
        for rule in self._rules:
            if skipped and rule.spec.id in skipped:
                continue
            matched = rule.expression.evaluate_context(context)
            evaluated.append((rule.spec.id, matched))
            if not matched:
                continue
            matches.append(rule.match)
            if rule.terminating:
                terminating = rule.match
                break
            skip = rule.match.skip
            if skip is not None:
                skips.append(skip)
                if skip.rest_of_ruleset or skip.rest_of_phase:
                    break
                skipped |= rule.skip_own
        if not skips:
            return RulesetOutcome(
                terminating, tuple(matches), terminating.response if terminating else None, tuple(evaluated)
            )
        return RulesetOutcome(
            terminating,
            tuple(matches),
            terminating.response if terminating else None,
            tuple(evaluated),
            skipped_phases=_unique(p for s in skips for p in s.phases),
            skipped_products=_unique(p for s in skips for p in s.products),
            skipped_rulesets=_unique(r for s in skips for r in s.rulesets),
            skipped_rules=_unique(
                (rs, r) for s in skips for rs, ids in s.rules if rs != self.ruleset_id for r in ids
            ),
            rest_of_phase_skipped=any(s.rest_of_phase for s in skips),
        )

    def __repr__(self) -> str:
        return f"CompiledRuleset({self.ruleset_id!r}, {len(self.rules)} rules)"


def compile_ruleset(
    rules: Sequence[RuleSpec], lists: Mapping[str, ListSpec] = NO_LISTS, ruleset_id: str = ""
) -> CompiledRuleset:
    """Validate and compile every rule; raises :class:`RulesetError` listing every problem found."""
    errors: list[tuple[int, RulesError]] = []
    compiled: list[_CompiledRule] = []
    for index, spec in enumerate(rules):
        rule_errors: list[RulesError] = []
        expression: CompiledExpression | None = None
        try:
            expression = compile_expression(spec.expression, lists)
        except RulesError as exc:
            rule_errors.append(exc)
        response: BlockResponse | None = None
        skip: SkipSpec | None = None
        try:
            response, skip = validate_action(spec.action, spec.action_parameters)
        except RulesError as exc:
            rule_errors.append(exc)
        errors.extend((index, e) for e in rule_errors)
        if rule_errors or expression is None or not spec.enabled:
            continue
        match = RuleMatch(spec.id, spec.action, spec.description, spec.ref, index, response, skip)
        own = frozenset(r for rs, ids in skip.rules if rs == ruleset_id for r in ids) if skip else frozenset()
        compiled.append(_CompiledRule(spec, expression, match, spec.action in TERMINATING_ACTIONS, own))
    if errors:
        raise RulesetError(tuple(errors))
    return CompiledRuleset(ruleset_id, tuple(rules), tuple(compiled))


def validate_action(action: str, params: Mapping[str, Any]) -> tuple[BlockResponse | None, SkipSpec | None]:
    """Check ``action`` and its ``action_parameters``; returns the parsed block response or skip."""
    if action not in ACTIONS:
        raise RulesError(f"action '{action}' is not supported in phase {PHASE}", path="action")
    if not isinstance(params, Mapping):
        raise RulesError("action_parameters must be an object", path="action_parameters")
    if action == "block":
        _no_extra(params, ("response",))
        return (_block_response(params["response"]) if params.get("response") is not None else None), None
    if action == "skip":
        return None, _skip(params)
    if params:
        raise RulesError(f"action '{action}' takes no action_parameters", path="action_parameters")
    return None, None


def _no_extra(params: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    for key in params:
        if key not in allowed:
            raise RulesError(f"unknown action parameter '{key}'", path=f"action_parameters.{key}")


def _block_response(response: Any) -> BlockResponse:
    path = "action_parameters.response"
    if not isinstance(response, Mapping):
        raise RulesError("response must be an object", path=path)
    for key in response:
        if key not in ("status_code", "content", "content_type"):
            raise RulesError(f"unknown response field '{key}'", path=f"{path}.{key}")
    status = response.get("status_code")
    if isinstance(status, bool) or not isinstance(status, int):
        raise RulesError("status_code must be an integer", path=f"{path}.status_code")
    if not BLOCK_STATUS_MIN <= status <= BLOCK_STATUS_MAX:
        raise RulesError(
            f"status_code {status} is out of range: must be in {BLOCK_STATUS_MIN}-{BLOCK_STATUS_MAX}",
            path=f"{path}.status_code",
        )
    content = response.get("content")
    if not isinstance(content, str):
        raise RulesError("content must be a string", path=f"{path}.content")
    content_type = response.get("content_type")
    if content_type not in BLOCK_CONTENT_TYPES:
        allowed = ", ".join(sorted(BLOCK_CONTENT_TYPES))
        raise RulesError(f"content_type must be one of {allowed}", path=f"{path}.content_type")
    return BlockResponse(status, content, str(content_type))


def _skip(params: Mapping[str, Any]) -> SkipSpec:
    _no_extra(params, _SKIP_KEYS)
    if not params:
        raise RulesError(
            "skip needs action_parameters: one of " + ", ".join(_SKIP_KEYS), path="action_parameters"
        )
    for key in ("ruleset", "phase"):
        if key in params and params[key] != "current":
            raise RulesError(f'{key} must be "current"', path=f"action_parameters.{key}")
    phases = _str_list(params, "phases", SKIP_PHASES)
    products = _str_list(params, "products", SKIP_PRODUCTS)
    rulesets = _str_list(params, "rulesets", None)
    rules_param = params.get("rules", {})
    if not isinstance(rules_param, Mapping):
        raise RulesError("rules must map ruleset ids to lists of rule ids", path="action_parameters.rules")
    rules: list[tuple[str, tuple[str, ...]]] = []
    for ruleset_id, ids in rules_param.items():
        if not isinstance(ruleset_id, str) or not _is_str_list(ids):
            raise RulesError(
                "rules must map ruleset ids to lists of rule ids", path="action_parameters.rules"
            )
        rules.append((ruleset_id, tuple(ids)))
    return SkipSpec(
        rest_of_ruleset="ruleset" in params,
        rest_of_phase="phase" in params,
        phases=phases,
        products=products,
        rulesets=rulesets,
        rules=tuple(rules),
    )


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)


def _str_list(params: Mapping[str, Any], key: str, allowed: frozenset[str] | None) -> tuple[str, ...]:
    value = params.get(key, ())
    if not _is_str_list(value):
        raise RulesError(f"{key} must be a list of strings", path=f"action_parameters.{key}")
    for item in value:
        if allowed is not None and item not in allowed:
            raise RulesError(
                f"unknown {key[:-1]} '{item}': expected one of {', '.join(sorted(allowed))}",
                path=f"action_parameters.{key}",
            )
    return tuple(value)


def _unique(items: Iterable[_T]) -> tuple[_T, ...]:
    return tuple(dict.fromkeys(items))
