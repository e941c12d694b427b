"""Fixture: a CDN role on real sockets (see cdn_env_harness)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
from cdn_env_harness import CdnEnv, open_cdn_env


@pytest_asyncio.fixture
async def cdn_env(tmp_path: Path) -> AsyncIterator[CdnEnv]:
    async with open_cdn_env(tmp_path) as env:
        yield env
