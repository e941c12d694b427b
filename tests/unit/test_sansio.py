"""Protocol logic is sans-IO: the pure modules import nothing from asyncio, socket or ssl."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {"asyncio", "socket", "ssl", "selectors", "uvloop"}

PURE_MODULES = [
    "edge/config.py",
    "edge/observe_aggregate.py",
    "edge/observe_metrics.py",
    "spectrum/proxy_protocol.py",
    "spectrum/flows.py",
    "certs/issue.py",
    "resolver/answers.py",
    "cdn/zones.py",
    "cdn/headers.py",
    "cdn/errors.py",
    *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "cdn" / "rules").glob("*.py")),
]


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("module", PURE_MODULES)
def test_pure_module_imports_no_io(module: str) -> None:
    path = ROOT / module
    assert path.exists(), f"{module} is listed as a pure module but does not exist"
    assert imported_roots(path) & FORBIDDEN == set()
