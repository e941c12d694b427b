"""Page-number pagination and ordering, pure.

The SDK's auto-pager (`V4PagePaginationArray`, reference 4.3) asks for page 2, 3, ... until a page
comes back with an empty `result`; `result_info` is never read. So a page past the end must be
`[]`, never the last page again.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from edge.api.errors import ApiError, Json, bad_request

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PageRequest:
    page: int
    per_page: int


def parse_int(query: Mapping[str, str], key: str, default: int, *, minimum: int, maximum: int,
              code: int) -> int:
    """A positive integer query parameter; "2.0" (a float-typed SDK argument) is accepted.
    Values above `maximum` are clamped; garbage or values below `minimum` are a 400."""
    raw = query.get(key)
    if raw is None or raw == "":
        return default
    try:
        number = float(raw)
    except ValueError:
        raise bad_request(f"{key}: {raw!r} is not a number", code) from None
    if not math.isfinite(number) or number != int(number) or number < minimum:
        raise bad_request(f"{key}: must be an integer >= {minimum}, got {raw!r}", code)
    return min(int(number), maximum)


def parse_page(query: Mapping[str, str], *, default_per_page: int, max_per_page: int, code: int) -> PageRequest:
    page = parse_int(query, "page", 1, minimum=1, maximum=10**9, code=code)
    per_page = parse_int(query, "per_page", default_per_page, minimum=1, maximum=max_per_page, code=code)
    return PageRequest(page, per_page)


def paginate(items: Sequence[T], req: PageRequest) -> tuple[list[T], Json]:
    """The requested page and its `result_info`; past the end the page is empty."""
    start = (req.page - 1) * req.per_page
    chunk = list(items[start:start + req.per_page])
    total = len(items)
    info: Json = {
        "page": req.page,
        "per_page": req.per_page,
        "count": len(chunk),
        "total_count": total,
        "total_pages": math.ceil(total / req.per_page) if total else 0,
    }
    return chunk, info


def order_by(items: Sequence[T], query: Mapping[str, str], keys: Mapping[str, Callable[[T], Any]],
             *, code: int) -> list[T]:
    """Sort by `order` (one of `keys`) in `direction` (asc|desc); no `order` keeps config order.
    The sort is stable, so ties keep config order too."""
    direction = query.get("direction", "asc")
    if direction not in ("asc", "desc"):
        raise bad_request(f"direction: must be asc or desc, got {direction!r}", code)
    order = query.get("order")
    if order is None or order == "":
        return list(items)
    key = keys.get(order)
    if key is None:
        raise bad_request(f"order: must be one of {', '.join(keys)}, got {order!r}", code)
    return sorted(items, key=key, reverse=direction == "desc")


def cursor_page(items: Sequence[T], cursor: str | None, per_page: int) -> tuple[list[T], str]:
    """Cursor pagination (list items): the cursor is the offset of the next item, opaque to clients.
    Returns the page and the next cursor ("" at the end)."""
    try:
        start = int(cursor) if cursor else 0
    except ValueError:
        raise bad_request(f"cursor: {cursor!r} is not a cursor this API issued") from None
    if start < 0:
        raise bad_request(f"cursor: {cursor!r} is not a cursor this API issued")
    chunk = list(items[start:start + per_page])
    end = start + len(chunk)
    return chunk, (str(end) if end < len(items) else "")


__all__ = ["ApiError", "PageRequest", "cursor_page", "order_by", "paginate", "parse_int", "parse_page"]
