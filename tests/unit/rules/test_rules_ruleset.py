"""Ruleset semantics: order, enabled, log, skip, custom block response, first terminating wins."""

from __future__ import annotations

from typing import Any

import pytest
from rules_sample import make_request

from cdn.rules import (
    BlockResponse,
    ListSpec,
    RulesError,
    RulesetError,
    RuleSpec,
    compile_ruleset,
)

REQ = make_request(host="spectrum.example.com", path="/wp-login.php", method="POST")
ALWAYS = "ssl"
NEVER = "not ssl"


def rule(rule_id: str, action: str, expression: str = ALWAYS, **kw: Any) -> RuleSpec:
    return RuleSpec(id=rule_id, action=action, expression=expression, description=f"rule {rule_id}", **kw)


def test_first_terminating_match_wins_and_stops() -> None:
    ruleset = compile_ruleset(
        [rule("r1", "log", NEVER), rule("r2", "managed_challenge"), rule("r3", "block")], ruleset_id="rs"
    )
    outcome = ruleset.evaluate(REQ)
    assert outcome.terminating is not None
    assert outcome.terminating.rule_id == "r2"
    assert outcome.terminating.action == "managed_challenge"
    assert outcome.terminating.description == "rule r2"
    assert outcome.terminating.match_index == 1
    assert [m.rule_id for m in outcome.matches] == ["r2"]
    assert outcome.evaluated == (("r1", False), ("r2", True))
    assert outcome.response is None


def test_no_match() -> None:
    outcome = compile_ruleset([rule("a", "block", NEVER), rule("b", "challenge", NEVER)]).evaluate(REQ)
    assert outcome.terminating is None
    assert outcome.matches == ()
    assert outcome.evaluated == (("a", False), ("b", False))


def test_empty_ruleset() -> None:
    outcome = compile_ruleset([]).evaluate(REQ)
    assert (outcome.terminating, outcome.matches, outcome.evaluated) == (None, (), ())


def test_disabled_rules_are_skipped_but_still_validated() -> None:
    ruleset = compile_ruleset([rule("off", "block", enabled=False), rule("on", "js_challenge")])
    outcome = ruleset.evaluate(REQ)
    assert outcome.terminating is not None and outcome.terminating.rule_id == "on"
    assert outcome.evaluated == (("on", True),)
    with pytest.raises(RulesetError):
        compile_ruleset([rule("off", "block", "http.hots eq 1", enabled=False)])


def test_log_records_and_continues() -> None:
    outcome = compile_ruleset([rule("l1", "log"), rule("l2", "log"), rule("b", "block")]).evaluate(REQ)
    assert [m.action for m in outcome.matches] == ["log", "log", "block"]
    assert outcome.terminating is not None and outcome.terminating.rule_id == "b"


def test_block_custom_response() -> None:
    response = {"status_code": 429, "content": '{"error":"nope"}', "content_type": "application/json"}
    outcome = compile_ruleset(
        [rule("b", "block", action_parameters={"response": response}, ref="my-ref")]
    ).evaluate(REQ)
    assert outcome.response == BlockResponse(429, '{"error":"nope"}', "application/json")
    assert outcome.terminating is not None
    assert outcome.terminating.ref == "my-ref"
    assert outcome.terminating.response == outcome.response


def test_skip_rest_of_ruleset() -> None:
    outcome = compile_ruleset(
        [rule("s", "skip", action_parameters={"ruleset": "current"}), rule("b", "block")]
    ).evaluate(REQ)
    assert outcome.terminating is None
    assert [m.rule_id for m in outcome.matches] == ["s"]
    assert outcome.evaluated == (("s", True),)
    assert outcome.matches[0].skip is not None and outcome.matches[0].skip.rest_of_ruleset


def test_skip_rest_of_phase() -> None:
    outcome = compile_ruleset(
        [rule("s", "skip", action_parameters={"phase": "current"}), rule("b", "block")]
    ).evaluate(REQ)
    assert outcome.terminating is None
    assert outcome.rest_of_phase_skipped


def test_skip_not_matching_has_no_effect() -> None:
    outcome = compile_ruleset(
        [rule("s", "skip", NEVER, action_parameters={"ruleset": "current"}), rule("b", "block")]
    ).evaluate(REQ)
    assert outcome.terminating is not None and outcome.terminating.rule_id == "b"


def test_skip_named_rules_of_this_ruleset() -> None:
    ruleset = compile_ruleset(
        [
            rule("b0", "log"),
            rule("s", "skip", action_parameters={"rules": {"rs1": ["b1", "b3"], "managed": ["m1"]}}),
            rule("b1", "block"),
            rule("l2", "log"),
            rule("b3", "challenge"),
            rule("b4", "block"),
        ],
        ruleset_id="rs1",
    )
    outcome = ruleset.evaluate(REQ)
    assert outcome.evaluated == (("b0", True), ("s", True), ("l2", True), ("b4", True))
    assert outcome.terminating is not None and outcome.terminating.rule_id == "b4"
    assert outcome.skipped_rules == (("managed", "m1"),)


def test_skip_rules_of_another_ruleset_does_not_skip_here() -> None:
    ruleset = compile_ruleset(
        [rule("s", "skip", action_parameters={"rules": {"other": ["b"]}}), rule("b", "block")],
        ruleset_id="rs1",
    )
    outcome = ruleset.evaluate(REQ)
    assert outcome.terminating is not None and outcome.terminating.rule_id == "b"
    assert outcome.skipped_rules == (("other", "b"),)


def test_skip_products_and_phases_are_recorded() -> None:
    params = {"products": ["waf", "rateLimit"], "phases": ["http_ratelimit"], "rulesets": ["abc"]}
    outcome = compile_ruleset(
        [
            rule("s", "skip", action_parameters=params),
            rule("s2", "skip", action_parameters={"products": ["waf"]}),
        ]
    ).evaluate(REQ)
    assert outcome.skipped_products == ("waf", "rateLimit")
    assert outcome.skipped_phases == ("http_ratelimit",)
    assert outcome.skipped_rulesets == ("abc",)
    assert outcome.terminating is None
    assert len(outcome.matches) == 2


def test_lists_are_passed_to_expressions() -> None:
    lists = {"office": ListSpec("office", "ip", ("198.51.100.0/24",))}
    ruleset = compile_ruleset([rule("b", "block", "not ip.src in $office")], lists)
    assert ruleset.evaluate(REQ).terminating is None
    assert ruleset.evaluate(make_request(src_ip="192.0.2.1")).terminating is not None


INVALID: list[tuple[str, dict[str, Any], str, str]] = [
    ("allow", {}, "action", "not supported"),
    ("execute", {"id": "x"}, "action", "not supported"),
    ("Block", {}, "action", "not supported"),
    ("challenge", {"response": {}}, "action_parameters", "takes no action_parameters"),
    ("log", {"x": 1}, "action_parameters", "takes no action_parameters"),
    ("block", {"foo": 1}, "action_parameters.foo", "unknown action parameter"),
    ("block", {"response": "x"}, "action_parameters.response", "must be an object"),
    (
        "block",
        {"response": {"status_code": 403, "content": "x"}},
        "action_parameters.response.content_type",
        "content_type",
    ),
    (
        "block",
        {"response": {"status_code": 403, "content": "x", "content_type": "image/png"}},
        "action_parameters.response.content_type",
        "content_type must be one of",
    ),
    (
        "block",
        {"response": {"status_code": 503, "content": "x", "content_type": "text/html"}},
        "action_parameters.response.status_code",
        "out of range",
    ),
    (
        "block",
        {"response": {"status_code": 399, "content": "x", "content_type": "text/html"}},
        "action_parameters.response.status_code",
        "out of range",
    ),
    (
        "block",
        {"response": {"status_code": "403", "content": "x", "content_type": "text/html"}},
        "action_parameters.response.status_code",
        "integer",
    ),
    (
        "block",
        {"response": {"status_code": True, "content": "x", "content_type": "text/html"}},
        "action_parameters.response.status_code",
        "integer",
    ),
    (
        "block",
        {"response": {"status_code": 403, "content": 1, "content_type": "text/html"}},
        "action_parameters.response.content",
        "content must be a string",
    ),
    (
        "block",
        {"response": {"status_code": 403, "content": "", "content_type": "text/html", "x": 1}},
        "action_parameters.response.x",
        "unknown response field",
    ),
    ("skip", {}, "action_parameters", "skip needs"),
    ("skip", {"ruleset": "other"}, "action_parameters.ruleset", '"current"'),
    ("skip", {"phase": "http_ratelimit"}, "action_parameters.phase", '"current"'),
    ("skip", {"products": ["WAF"]}, "action_parameters.products", "unknown product 'WAF'"),
    ("skip", {"products": "waf"}, "action_parameters.products", "list of strings"),
    ("skip", {"phases": ["http_request_origin"]}, "action_parameters.phases", "unknown phase"),
    ("skip", {"rules": ["a"]}, "action_parameters.rules", "must map ruleset ids"),
    ("skip", {"rules": {"rs": "a"}}, "action_parameters.rules", "must map ruleset ids"),
    ("skip", {"unknown": 1}, "action_parameters.unknown", "unknown action parameter"),
]


@pytest.mark.parametrize(("action", "params", "path", "fragment"), INVALID)
def test_invalid_actions(action: str, params: dict[str, Any], path: str, fragment: str) -> None:
    with pytest.raises(RulesetError) as info:
        compile_ruleset([rule("ok", "block"), rule("bad", action, action_parameters=params)])
    ((index, error),) = info.value.errors
    assert index == 1
    assert error.path == path
    assert fragment in error.message


@pytest.mark.parametrize("content_type", ["text/html", "text/plain", "application/json", "text/xml"])
@pytest.mark.parametrize("status", [400, 403, 418, 499])
def test_valid_block_responses(content_type: str, status: int) -> None:
    response = {"status_code": status, "content": "<b>no</b>", "content_type": content_type}
    outcome = compile_ruleset([rule("b", "block", action_parameters={"response": response})]).evaluate(REQ)
    assert outcome.response == BlockResponse(status, "<b>no</b>", content_type)


def test_every_bad_rule_is_reported() -> None:
    rules = [
        rule("a", "block", "http.hots eq 1"),
        rule("b", "block"),
        rule("c", "nope", "ip.src eq 1.2.3.0/24"),
        rule("d", "log", ""),
    ]
    with pytest.raises(RulesetError) as info:
        compile_ruleset(rules)
    errors = info.value.errors
    assert [(i, e.path) for i, e in errors] == [
        (0, "expression"),
        (2, "expression"),
        (2, "action"),
        (3, "expression"),
    ]
    assert errors[0][1].position == 0 and "unknown field 'http.hots'" in errors[0][1].message
    assert errors[1][1].position == 10
    assert isinstance(info.value, RulesError)  # one root error type
    assert info.value.code == 20217
    assert "rules[0].expression: unknown field 'http.hots' at position 0" in str(info.value)
    assert "rules[2].action" in str(info.value)


def test_outcome_and_rule_match_are_frozen() -> None:
    outcome = compile_ruleset([rule("b", "block")]).evaluate(REQ)
    with pytest.raises(AttributeError):
        outcome.terminating = None  # type: ignore[misc]
    assert outcome.terminating is not None
    with pytest.raises(AttributeError):
        outcome.terminating.action = "log"  # type: ignore[misc]


def test_ruleset_shares_lazy_context_across_rules() -> None:
    ruleset = compile_ruleset(
        [
            rule("h1", "log", 'http.request.headers["user-agent"][0] contains "Mozilla"'),
            rule("h2", "log", 'any(http.request.headers["accept"][*] eq "text/html")'),
            rule("h3", "block", 'http.request.uri.args["a"][0] eq "1"'),
        ]
    )
    outcome = ruleset.evaluate(make_request(query="a=1"))
    assert [m.rule_id for m in outcome.matches] == ["h1", "h2", "h3"]
