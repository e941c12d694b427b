"""Fixtures for the API tests: see edge_api_harness."""

from edge_api_harness import api, ca_stub

__all__ = ["api", "ca_stub"]
