"""The shared store: atomic swap, rejection leaves everything untouched, two processes share it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from edge.config import ConfigError, EdgeConfig, build_config, default_config
from edge.store import Snapshot, Store, config_to_data


def with_record(config: EdgeConfig, name: str, content: str) -> EdgeConfig:
    data = config_to_data(config)
    data["zones"][0]["dns_records"].append({"name": name, "type": "A", "content": content, "ttl": 300})
    return build_config(data)


def test_fresh_state_dir_starts_on_the_default_config(tmp_path: Path) -> None:
    store = Store(tmp_path, port_offset=0)
    snap = store.open_config()
    assert snap.generation == 1
    assert snap.config == default_config()
    assert snap.zone_for_host("a.b.www.example.com") is snap.zones_by_name["example.com"]
    assert snap.zone_for_host("example.org") is None
    store.close()


def test_apply_swaps_and_notifies_after_the_swap(tmp_path: Path) -> None:
    store = Store(tmp_path, port_offset=0)
    store.open_config()
    seen: list[tuple[int, int]] = []
    store.subscribe(lambda s: seen.append((s.generation, store.current.generation)))
    new = store.apply(with_record(store.current.config, "new", "192.0.2.7"), source="test")
    assert new is store.current and new.generation == 2
    assert seen == [(2, 2)]
    store.close()


def test_rejected_update_changes_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path, port_offset=0)
    before = store.open_config()

    def bad(config: EdgeConfig) -> EdgeConfig:
        zone = config.zones[0]
        twice = zone.model_copy(update={"dns_records": (*zone.dns_records, zone.dns_records[0])})
        return config.model_copy(update={"zones": (twice,)})

    with pytest.raises(ConfigError) as info:
        store.update(bad, source="test")
    assert "record already exists" in str(info.value)
    assert store.current is before
    assert store.latest_generation() == before.generation
    store.close()


def test_persisted_config_survives_restart(tmp_path: Path) -> None:
    store = Store(tmp_path, port_offset=0)
    store.open_config()
    store.update(lambda c: with_record(c, "kept", "192.0.2.9"), source="api")
    store.close()
    again = Store(tmp_path, port_offset=0)
    snap = again.open_config()
    assert any(r.name == "kept.example.com" for r in snap.config.zones[0].dns_records)
    again.close()


def test_snapshot_derived_is_computed_once_per_snapshot(tmp_path: Path) -> None:
    store = Store(tmp_path, port_offset=0)
    snap = store.open_config()
    calls: list[int] = []

    def factory(s: Snapshot) -> int:
        calls.append(s.generation)
        return len(calls)

    assert snap.derived("k", factory) == 1
    assert snap.derived("k", factory) == 1
    new = store.apply(with_record(snap.config, "x", "192.0.2.1"), source="test")
    assert new.derived("k", factory) == 2
    store.close()


def test_dynamic_spectrum_ips_are_stable_and_in_the_pool(tmp_path: Path) -> None:
    a = Store(tmp_path / "a", port_offset=0).open_config()
    b = Store(tmp_path / "b", port_offset=0).open_config()
    assert a.app_ips == b.app_ips
    pool = a.config.network.spectrum_ips
    for ips in a.app_ips.values():
        assert all(ip in pool and ip != a.config.network.spectrum_egress_ip for ip in ips)
    assert len(a.spectrum_ip_set) == 3


CHILD = textwrap.dedent("""
    import asyncio, sys, time
    from pathlib import Path
    from edge.logs import configure_logging
    from edge.store import Store

    configure_logging("json", stream=sys.stderr)

    async def main() -> None:
        store = Store(Path(sys.argv[1]), port_offset=0)
        start = store.open_config().generation
        seen = asyncio.Event()
        store.subscribe(lambda s: (print(f"seen {s.generation} {time.time():.6f}", flush=True), seen.set()))
        watch = asyncio.create_task(store.serve_watch())
        print(f"ready {start}", flush=True)
        async with asyncio.timeout(10):
            await seen.wait()
        watch.cancel()

    asyncio.run(main())
""")


def test_second_process_sees_a_change_within_100ms(tmp_path: Path) -> None:
    store = Store(tmp_path, port_offset=0)
    store.open_config()
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().split()[0] == "ready"
        t0 = time.time()
        store.update(lambda c: with_record(c, "shared", "192.0.2.10"), source="api")
        line = child.stdout.readline().split()
        assert line[:2] == ["seen", str(store.current.generation)]
        assert float(line[2]) - t0 < 0.1
        assert child.wait(timeout=10) == 0
    finally:
        child.kill()
        child.wait()
        if child.stdout is not None:
            child.stdout.close()
        store.close()
