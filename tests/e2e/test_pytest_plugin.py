"""The README's pytest example, copied into a fresh project and run with pytest as a user would."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


def readme_example() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    m = re.search(r"<!-- pytest-example:begin -->\n```python\n(.*?)```\n<!-- pytest-example:end -->", text, re.S)
    assert m, "README has no pytest example"
    return m.group(1)


def test_readme_pytest_example_passes_in_a_fresh_project(tmp_path: Path) -> None:
    (tmp_path / "test_edge_example.py").write_text(readme_example())
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error::ResourceWarning", str(tmp_path)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "2 passed" in proc.stdout
