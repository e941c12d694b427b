"""The API v4 envelope and the one error type handlers raise.

Every answer under `/client/v4` is `{success, errors, messages, result[, result_info]}`
(reference 1.1). A refused request raises `ApiError`, which carries the HTTP status and one
`{code, message}` per problem; the middleware renders it. Statuses are chosen so the SDK never
retries a deterministic refusal: 400, 403, 404, 405 only (408, 409, 429 and 5xx are retried).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from edge.config import Problem

# Cloudflare's codes (reference 1.1) and the ones this API adopts where Cloudflare's are unknown.
AUTH_ERROR = 10000
NO_ROUTE = 7000
BAD_IDENTIFIER = 7003
RECORD_NOT_FOUND = 81044
MALFORMED_JSON = 6007
METHOD_NOT_ALLOWED = 10405
INVALID_REQUEST = 10001  # adopted: a generic "invalid request" for problems without their own code
DNS_VALIDATION = 1004  # Cloudflare's "DNS Validation Error"
SPECTRUM_UNKNOWN_FIELD = 10012  # reference 2.2: fields Spectrum does not take
ENTRYPOINT_MISSING = 10003
ZONE_EXISTS = 1061
INTERNAL = 10002

Json = dict[str, Any]


class ApiError(Exception):
    """A refused request: HTTP status plus the `errors` list of the envelope."""

    def __init__(self, status: int, errors: Sequence[tuple[int, str]]) -> None:
        super().__init__("; ".join(f"{m} ({c})" for c, m in errors))
        self.status = status
        self.errors = tuple(errors)

    @classmethod
    def one(cls, status: int, code: int, message: str) -> ApiError:
        return cls(status, [(code, message)])

    def body(self) -> Json:
        return failure([{"code": c, "message": m} for c, m in self.errors])


def not_found(path: str) -> ApiError:
    return ApiError.one(404, BAD_IDENTIFIER,
                        f"Could not route to {path}, perhaps your object identifier is invalid?")


def bad_request(message: str, code: int = INVALID_REQUEST) -> ApiError:
    return ApiError.one(400, code, message)


# The part of a whole-config path that only says which zone the object lives in.
_ZONE_PREFIX = re.compile(r"^zones\[\d+\]\.(rulesets\.http_request_firewall_custom\.)?")
# The stored position of a record, app or access rule means nothing to an API caller, who sent
# one object: its problems are named by field ("ttl: ..."), or by nothing.
_OBJECT_PREFIX = re.compile(r"^(dns_records|spectrum_apps|access_rules)\[\d+\]\.?")


class Missing(Exception):
    """An object named in the path does not exist; the middleware answers 404 with the path."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


def problems_error(problems: Iterable[Problem], default_code: int) -> ApiError:
    """One error per Problem, each with its code (or `default_code`); the message starts with the
    problem's path, without the prefixes that only locate the zone and the stored object."""
    errors = []
    for p in problems:
        path = _OBJECT_PREFIX.sub("", _ZONE_PREFIX.sub("", p.path))
        message = f"{path}: {p.message}" if path else p.message
        errors.append((p.code if p.code is not None else default_code, message))
    if not errors:
        errors.append((default_code, "invalid request"))
    return ApiError(400, errors)


def success(result: Any, result_info: Json | None = None) -> Json:
    body: Json = {"success": True, "errors": [], "messages": [], "result": result}
    if result_info is not None:
        body["result_info"] = result_info
    return body


def failure(errors: list[Json]) -> Json:
    return {"success": False, "errors": errors, "messages": [], "result": None}
