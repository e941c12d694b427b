"""Ray ids: 16 lower-case hex digits; on the wire (`cf-ray`) followed by `-` and the colo.

Cloudflare's ray ids are not guaranteed unique; ours are 64 random bits, so collisions in one
emulator run are negligible. Logpush `RayID` carries the hex part only (reference section 11).
"""

from __future__ import annotations

import random
import re

_RAY_RE = re.compile(r"^([0-9a-f]{16})(?:-([A-Z]{3}))?$")
_rand = random.Random()


def new_ray_id() -> str:
    """16 hex digits, no colo."""
    return f"{_rand.getrandbits(64):016x}"


def format_cf_ray(ray_id: str, colo: str) -> str:
    """The `cf-ray` header value: `230b030023ae2822-SJC`."""
    return f"{ray_id}-{colo}"


def parse_cf_ray(value: str) -> tuple[str, str]:
    """(ray id, colo) from `cf-ray` text (colo "" when absent); ValueError if malformed."""
    m = _RAY_RE.match(value.strip())
    if m is None:
        raise ValueError(f"{value!r} is not a ray id")
    return m.group(1), m.group(2) or ""
