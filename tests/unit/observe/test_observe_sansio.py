"""The aggregate and its Prometheus rendering are pure: no sockets, no event loop."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
FORBIDDEN = {"asyncio", "socket", "ssl", "selectors", "uvloop", "aiohttp"}


@pytest.mark.parametrize("module", ["edge/observe_aggregate.py", "edge/observe_metrics.py"])
def test_pure_module_imports_no_io(module: str) -> None:
    tree = ast.parse((ROOT / module).read_text(encoding="utf-8"))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    assert roots & FORBIDDEN == set()
