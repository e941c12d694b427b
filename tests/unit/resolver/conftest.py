from __future__ import annotations

import pytest
from dns_golden import compile_snapshot

from edge.store import Snapshot
from resolver.answers import Tables, build_tables


@pytest.fixture(scope="session")
def snapshot() -> Snapshot:
    return compile_snapshot()


@pytest.fixture(scope="session")
def tables(snapshot: Snapshot) -> Tables:
    return build_tables(snapshot)
