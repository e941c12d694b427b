"""Fixtures for the reliability suite: one edge per module on a private 127.B block (200-240)
with small limits, and the healthy neighbour each hostile case must leave unharmed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from reliability_harness import Healthy, base_config, edge_running, pick_block

from edge.pytest_plugin import EdgeFixture


@pytest.fixture(scope="module")
def rel_edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeFixture]:
    block = pick_block()
    with edge_running(base_config(block), tmp_path_factory.mktemp("rel-state"), block) as edge:
        yield edge


@pytest.fixture
def healthy(rel_edge: EdgeFixture) -> Iterator[Healthy]:
    with Healthy(rel_edge) as neighbour:
        yield neighbour
