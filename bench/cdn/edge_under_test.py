"""Run the CDN role (with the integration tests' stand-in CA, resolver and origins) until killed.

Prints one line `READY <block> <ca path>` when serving. Used by bench/cdn/run.sh.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path
from typing import Any

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "integration" / "cdn"))

from cdn_env_harness import open_cdn_env


def _bench_record(data: dict[str, Any]) -> None:
    data["zones"][0]["dns_records"].append(
        {"name": "bench-edge.example.com", "type": "A", "content": "127.0.30.1", "proxied": True}
    )


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with open_cdn_env(Path(tmp), _bench_record) as env:
            print(f"READY {env.block} {env.ca.path}", flush=True)
            await asyncio.Event().wait()


if __name__ == "__main__":
    uvloop.install()
    asyncio.run(main())
