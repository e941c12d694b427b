"""Timing of a typical 10-rule zone ruleset (not collected by pytest).

Run from the repository root:  .venv/bin/python bench/rules/bench_rules.py
Prints microseconds per request (one EvalContext per request, as the CDN does).
"""


from __future__ import annotations

import ipaddress
import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from cdn.rules import ListSpec, RequestFields, RuleSpec, compile_ruleset

RULES = [
    RuleSpec("r0", "skip", 'ip.src in $office and http.request.uri.path wildcard "/admin/*"', action_parameters={"ruleset": "current"}),
    RuleSpec("r1", "block", '(http.host eq "spectrum.example.com" and not cf.edge.server_ip in {203.0.113.10 2001:db8::10 198.51.100.0/24})'),
    RuleSpec("r2", "block", 'http.request.uri.path contains "/wp-login.php" or http.request.uri.path.extension in {"php" "asp" "env"}'),
    RuleSpec("r3", "managed_challenge", 'ip.src.country in {"CN" "RU" "KP"} and not cf.client.bot'),
    RuleSpec("r4", "block", 'http.user_agent matches "(?i)(sqlmap|nikto|masscan|zgrab)"'),
    RuleSpec("r5", "log", 'any(http.request.headers["x-debug"][*] eq "1")'),
    RuleSpec("r6", "block", 'http.request.method in {"TRACE" "TRACK" "CONNECT"}'),
    RuleSpec("r7", "js_challenge", 'lower(http.host) wildcard "*.staging.example.com" and not ssl'),
    RuleSpec("r8", "block", 'cf.edge.server_port in {8000..8009 2052 2082} and not ip.src in {10.0.0.0/8 192.168.0.0/16}'),
    RuleSpec("r9", "block", 'url_decode(http.request.uri.query) contains "<script" or len(http.request.uri.query) gt 2048'),
]  # fmt: skip
LISTS = {"office": ListSpec("office", "ip", tuple(f"198.18.{i}.0/24" for i in range(200)))}

REQUEST = RequestFields(
    host="www.example.com",
    method="GET",
    path="/products/index.html",
    query="page=2&sort=price",
    version="HTTP/1.1",
    scheme="https",
    headers=(
        ("Host", "www.example.com"),
        ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36"),
        ("Accept", "text/html,application/xhtml+xml"),
        ("Accept-Language", "en-US,en;q=0.9"),
        ("Accept-Encoding", "gzip, br"),
        ("Cookie", "session=abc123; theme=dark"),
        ("Referer", "https://www.example.com/"),
    ),
    src_ip=ipaddress.ip_address("203.0.113.77"),
    edge_server_ip=ipaddress.ip_address("104.16.0.1"),
    edge_server_port=443,
    ssl=True,
    ray_id="230b030023ae2822",
    country="DE",
    timestamp_sec=1_700_000_000,
)


def main() -> None:
    ruleset = compile_ruleset(RULES, LISTS, ruleset_id="zone-entrypoint")
    outcome = ruleset.evaluate(REQUEST)
    assert outcome.terminating is None and len(outcome.evaluated) == 10, outcome
    number = 20_000
    best = min(timeit.repeat(lambda: ruleset.evaluate(REQUEST), number=number, repeat=5))
    print(
        f"{len(RULES)}-rule ruleset, all rules evaluated, no match: {best / number * 1e6:.2f} us per request"
    )


if __name__ == "__main__":
    main()
