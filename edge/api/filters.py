"""List filters for zones and DNS records, pure (reference 4.4 and 4.5)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from edge.api.errors import DNS_VALIDATION, INVALID_REQUEST, bad_request
from edge.api.paging import order_by
from edge.api.render import LOCAL_ACCOUNT_ID, LOCAL_ACCOUNT_NAME
from edge.config import DnsRecord, Zone

Predicate = Callable[[str], bool]

# Zone `name=<op>:<value>` operators (reference 4.4); the plain form is `equal`.
_ZONE_NAME_OPS: dict[str, Callable[[str, str], bool]] = {
    "equal": lambda v, q: v == q,
    "not_equal": lambda v, q: v != q,
    "starts_with": lambda v, q: v.startswith(q),
    "ends_with": lambda v, q: v.endswith(q),
    "contains": lambda v, q: q in v,
}


def text_predicate(spec: str) -> Predicate:
    """A zone-style `[op:]value` filter; `_case_sensitive` variants compare as given, the others
    ignore case."""
    op, sep, value = spec.partition(":")
    if not sep:
        op, value = "equal", spec
    case_sensitive = op.endswith("_case_sensitive")
    base = op.removesuffix("_case_sensitive")
    compare = _ZONE_NAME_OPS.get(base)
    if compare is None:
        # Not an operator: a value that happens to contain a colon.
        op, value, case_sensitive, compare = "equal", spec, False, _ZONE_NAME_OPS["equal"]
    if case_sensitive:
        return lambda v: compare(v, value)
    folded = value.lower()
    return lambda v: compare(v.lower(), folded)


def _match(checks: list[bool], query: Mapping[str, str], code: int) -> bool:
    mode = query.get("match", "all")
    if mode not in ("all", "any"):
        raise bad_request(f"match: must be all or any, got {mode!r}", code)
    if not checks:
        return True
    return all(checks) if mode == "all" else any(checks)


ZONE_ORDER: dict[str, Callable[[Zone], Any]] = {
    "name": lambda z: z.name,
    "status": lambda z: z.status,
    "account.id": lambda z: LOCAL_ACCOUNT_ID,
    "account.name": lambda z: LOCAL_ACCOUNT_NAME,
    "plan.id": lambda z: "",
}


def filter_zones(zones: Sequence[Zone], query: Mapping[str, str]) -> list[Zone]:
    """`name` ([op:]value), `status`, `account.id`, `account.name`, `match`, then `order`/`direction`."""
    name = query.get("name")
    status = query.get("status")
    if status is not None and status not in ("initializing", "pending", "active", "moved"):
        raise bad_request(f"status: must be one of initializing, pending, active, moved, got {status!r}")
    account_id = query.get("account.id")
    account_name = query.get("account.name")
    name_pred = text_predicate(name) if name is not None else None
    account_pred = text_predicate(account_name) if account_name is not None else None
    out = []
    for z in zones:
        checks = []
        if name_pred is not None:
            checks.append(name_pred(z.name))
        if status is not None:
            checks.append(z.status == status)
        if account_id is not None:
            checks.append(account_id == LOCAL_ACCOUNT_ID)
        if account_pred is not None:
            checks.append(account_pred(LOCAL_ACCOUNT_NAME))
        if _match(checks, query, INVALID_REQUEST):
            out.append(z)
    return order_by(out, query, ZONE_ORDER, code=INVALID_REQUEST)


_DOTTED_OPS: dict[str, Callable[[str, str], bool]] = {
    "exact": lambda v, q: v == q,
    "contains": lambda v, q: q in v,
    "startswith": lambda v, q: v.startswith(q),
    "endswith": lambda v, q: v.endswith(q),
}


def _dotted_checks(query: Mapping[str, str], field: str, value: str | None, *, is_name: bool) -> list[bool]:
    """`field`, `field.exact|contains|startswith|endswith`, and for comments `.present/.absent`;
    all case-insensitive."""
    checks = []
    for key, raw in query.items():
        if key == field:
            op = "exact"
        elif key.startswith(field + "."):
            op = key[len(field) + 1:]
        else:
            continue
        if op in ("present", "absent"):
            present = bool(value)
            checks.append(present if op == "present" else not present)
            continue
        compare = _DOTTED_OPS.get(op)
        if compare is None:
            raise bad_request(f"{key}: unknown filter operator {op!r}", DNS_VALIDATION)
        wanted = raw.lower()
        if is_name:
            wanted = wanted.rstrip(".")
        checks.append(compare((value or "").lower(), wanted))
    return checks


DNS_ORDER: dict[str, Callable[[DnsRecord], Any]] = {
    "type": lambda r: r.type,
    "name": lambda r: r.name,
    "content": lambda r: r.content,
    "ttl": lambda r: r.ttl,
    "proxied": lambda r: r.proxied,
}


def filter_records(records: Sequence[DnsRecord], query: Mapping[str, str]) -> list[DnsRecord]:
    """The DNS list filters of reference 4.5, combined with `match` (all|any), then ordered."""
    rtype = query.get("type")
    proxied_raw = query.get("proxied")
    proxied: bool | None = None
    if proxied_raw is not None:
        if proxied_raw.lower() not in ("true", "false"):
            raise bad_request(f"proxied: must be true or false, got {proxied_raw!r}", DNS_VALIDATION)
        proxied = proxied_raw.lower() == "true"
    search = query.get("search")
    out = []
    for r in records:
        checks: list[bool] = []
        checks += _dotted_checks(query, "name", r.name, is_name=True)
        checks += _dotted_checks(query, "content", r.content, is_name=False)
        checks += _dotted_checks(query, "comment", r.comment, is_name=False)
        if rtype is not None:
            checks.append(r.type == rtype.upper())
        if proxied is not None:
            checks.append(r.proxied == proxied)
        if search:
            s = search.lower()
            checks.append(s in r.name or s in r.content.lower() or s in (r.comment or "").lower())
        if _match(checks, query, DNS_VALIDATION):
            out.append(r)
    return order_by(out, query, DNS_ORDER, code=DNS_VALIDATION)
