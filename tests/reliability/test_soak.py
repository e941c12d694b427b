"""The soak at CI size (issue 9, part 1): bench/soak/run.py with --scale 0.1 (1,000 TCP
connections through Spectrum, 100 concurrent UDP flows, 200 HTTPS keep-alive connections through
the CDN, all at once) against an `edge up` subprocess. The full run is documented in
bench/soak/README.md."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

RUN = Path(__file__).resolve().parents[2] / "bench" / "soak" / "run.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("edge_soak_run", RUN)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_soak_ci_size() -> None:
    soak = _load()
    report = soak.main(["--scale", "0.1", "--rounds", "2", "--time-limit", "60", "--settle", "15", "--json"])
    counts = report["counts"]
    assert report["errors"] == {}, report
    assert report["completed"]["tcp"] == 2 * counts["tcp"], report
    assert report["completed"]["https-connections"] == 2 * counts["https_connections"], report
    # UDP on loopback at this rate: loss is allowed by UDP but should be rare; corruption never.
    udp = report["udp"]
    assert udp["received"] >= 0.95 * udp["sent"], udp
    assert udp["lost"] <= udp["kernel_rcvbuf_errors"] + udp["kernel_no_ports"] + udp["spectrum_dropped"], udp
    edge = report["edge"]
    for r in edge["rounds"]:
        assert r["after"]["connections"] == 0 and r["after"]["udp_flows"] == 0, edge
        assert r["after"]["tasks"] <= edge["baseline"]["tasks"] + soak.TASK_ALLOWANCE, edge
    assert edge["after"]["fds"] <= edge["baseline"]["fds"] + soak.POOL_FD_ALLOWANCE, edge
    assert edge["cwd_untouched"] and edge["exit_code"] == 0, edge
    assert report["ok"], report
