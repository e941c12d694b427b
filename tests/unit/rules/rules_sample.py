"""Sample requests shared by the rules tests (not a test module)."""

from __future__ import annotations

import dataclasses
import ipaddress
from typing import Any

from cdn.rules import RequestFields

BASE = RequestFields(
    host="www.example.com",
    method="GET",
    path="/index.html",
    query="",
    version="HTTP/1.1",
    scheme="https",
    headers=(
        ("Host", "www.example.com"),
        ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64)"),
        ("Accept", "text/html"),
    ),
    src_ip=ipaddress.ip_address("198.51.100.7"),
    edge_server_ip=ipaddress.ip_address("104.16.0.1"),
    edge_server_port=443,
    ssl=True,
    ray_id="230b030023ae2822",
    country="DE",
    timestamp_sec=1_700_000_000,
)


def make_request(**changes: Any) -> RequestFields:
    """BASE with changes; ``src_ip``/``edge_server_ip`` may be given as text."""
    for key in ("src_ip", "edge_server_ip"):
        if isinstance(changes.get(key), str):
            changes[key] = ipaddress.ip_address(changes[key])
    return dataclasses.replace(BASE, **changes)
