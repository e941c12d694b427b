"""The README's experiments, run verbatim against a running emulator, so the README cannot rot.

Every ```sh block of the "Experiments" section runs as one bash script, in order, in a folder
of its own (with the project's `.venv` linked in) while `edge up` runs on a fresh state
directory there. Each `# → text` comment in a block is an expectation: the block's output must
contain those texts, in that order.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e

SECTION = re.compile(r"^## Experiments.*?$(.*?)^## ", re.S | re.M)
BLOCK = re.compile(r"^```sh\n(.*?)^```", re.S | re.M)
EXPECT = re.compile(r"#\s*→\s*(.+?)\s*$")


def readme_blocks() -> list[tuple[str, list[str]]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = SECTION.search(text)
    assert section, "README has no Experiments section"
    blocks = []
    for code in BLOCK.findall(section.group(1)):
        expectations = [m.group(1) for line in code.splitlines() if (m := EXPECT.search(line))]
        blocks.append((code, expectations))
    return blocks


def test_readme_has_experiments() -> None:
    blocks = readme_blocks()
    assert len(blocks) >= 6
    assert all(expect for _, expect in blocks[1:])


@pytest.fixture
def running_edge(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("the README's experiments use the real ports (root or a container)")
    (tmp_path / ".venv").symlink_to(Path(sys.executable).parent.parent)
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "edge"), "up", "--state-dir", str(tmp_path / ".edge"), "--log-format",
         "json"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        end = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            try:
                with urllib.request.urlopen("http://127.0.0.1:8900/ready", timeout=1) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < end, "edge did not become ready"
            time.sleep(0.1)  # polling readiness of a process we just started
        yield tmp_path
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()


def test_readme_experiments_run_verbatim(running_edge: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLOUDFLARE_", "SSL_CERT", "REQUESTS_CA"))}
    # The blocks are pasted into one shell: the first activates .venv for those after it.
    env["PATH"] = f"{running_edge / '.venv' / 'bin'}:{env.get('PATH', '')}"
    for code, expectations in readme_blocks():
        proc = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", code], cwd=running_edge, env=env,
                              capture_output=True, text=True, timeout=120)
        output = proc.stdout + proc.stderr
        assert proc.returncode == 0, f"block failed ({proc.returncode}):\n{code}\n--- output:\n{output}"
        position = 0
        for expected in expectations:
            found = output.find(expected, position)
            assert found >= 0, f"expected {expected!r} in the output of:\n{code}\n--- output:\n{output}"
            position = found + len(expected)
