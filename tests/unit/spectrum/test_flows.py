"""UDP flow table: time is passed in, so every deadline is exact."""

from __future__ import annotations

import ast
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spectrum.flows import Flow, FlowTable

Key = tuple[str, int]
IDLE = 30.0


def table(max_flows: int = 100, idle_timeout: float = IDLE) -> FlowTable[Key, str]:
    return FlowTable(max_flows=max_flows, idle_timeout=idle_timeout)


def client(n: int) -> Key:
    return ("192.0.2.1", 10_000 + n)


def test_new_table_is_empty() -> None:
    t = table()
    assert len(t) == 0
    assert t.next_deadline() is None
    assert t.expire(1e9) == []
    assert t.drain() == []
    assert t.get(client(1), 0.0) is None
    assert (t.max_flows, t.idle_timeout) == (100, IDLE)


@pytest.mark.parametrize(("max_flows", "idle"), [(0, 1.0), (-1, 1.0), (1, 0.0), (1, -5.0), (1, float("nan"))])
def test_bad_limits_are_refused(max_flows: int, idle: float) -> None:
    with pytest.raises(ValueError):
        FlowTable[Key, str](max_flows=max_flows, idle_timeout=idle)


def test_put_creates_and_get_marks_seen() -> None:
    t = table()
    assert t.put(client(1), "flow-1", 100.0) == []
    assert client(1) in t and len(t) == 1
    record = t.flow(client(1))
    assert record is not None
    assert (record.key, record.data, record.created, record.last_seen) == (client(1), "flow-1", 100.0, 100.0)
    assert t.created_at(client(1)) == 100.0
    assert t.next_deadline() == 130.0
    assert t.peek(client(1)) == "flow-1"
    assert t.next_deadline() == 130.0  # peek does not count as activity
    assert t.get(client(1), 110.0) == "flow-1"
    assert t.next_deadline() == 140.0
    assert record.created == 100.0 and record.last_seen == 110.0


def test_lookup_or_create() -> None:
    t = table()
    made: list[Key] = []

    def make(key: Key) -> str:
        made.append(key)
        return f"flow-{key[1]}"

    flow, created, evicted = t.lookup_or_create(client(1), 5.0, make)
    assert created and evicted == [] and flow.data == "flow-10001" and flow.created == 5.0
    again, created, evicted = t.lookup_or_create(client(1), 7.0, make)
    assert again is flow and not created and evicted == []
    assert flow.last_seen == 7.0 and flow.created == 5.0
    assert made == [client(1)]


def test_lookup_or_create_leaves_table_unchanged_when_make_fails() -> None:
    t = table(max_flows=1)
    t.put(client(1), "old", 0.0)

    def boom(key: Key) -> str:
        raise RuntimeError("origin socket failed")

    with pytest.raises(RuntimeError):
        t.lookup_or_create(client(2), 1.0, boom)
    assert list(f.key for f in t) == [client(1)]


def test_touch_counts_both_directions() -> None:
    t = table()
    t.put(client(1), "f", 0.0)
    flow = t.touch(client(1), 1.0, inbound_bytes=100)
    assert flow is not None
    t.touch(client(1), 2.0, inbound_bytes=0)  # an empty datagram is still a datagram
    t.touch(client(1), 3.0, outbound_bytes=40)
    t.touch(client(1), 4.0)  # activity only
    assert (flow.client_bytes, flow.datagrams_in, flow.origin_bytes, flow.datagrams_out) == (100, 2, 40, 1)
    assert flow.last_seen == 4.0
    assert t.next_deadline() == 34.0
    assert t.touch(client(2), 5.0, inbound_bytes=1) is None
    assert len(t) == 1


def test_first_sent_belongs_to_the_glue() -> None:
    t = table()
    flow, _, _ = t.lookup_or_create(client(1), 0.0, lambda k: "f")
    assert flow.first_sent is False
    flow.first_sent = True
    t.touch(client(1), 1.0, inbound_bytes=10)
    assert t.flow(client(1)) is flow and flow.first_sent is True


def test_expiry_is_exactly_at_the_deadline() -> None:
    t = table()
    t.put(client(1), "a", 100.0)
    t.put(client(2), "b", 105.0)
    assert t.next_deadline() == 130.0
    assert t.expire(129.999) == []
    assert t.expire(130.0) == ["a"]  # last_seen + idle_timeout, inclusive
    assert t.next_deadline() == 135.0
    assert t.expire(134.0) == []
    assert t.expire(135.0) == ["b"]
    assert t.next_deadline() is None and len(t) == 0


def test_activity_postpones_expiry() -> None:
    t = table()
    t.put(client(1), "a", 0.0)
    t.put(client(2), "b", 1.0)
    t.touch(client(1), 20.0, outbound_bytes=5)  # replies from the origin count too
    assert t.next_deadline() == 31.0
    assert t.expire(31.0) == ["b"]
    assert t.next_deadline() == 50.0
    assert t.expire(49.0) == []


def test_expire_flows_returns_records_idlest_first() -> None:
    t = table()
    for n in range(5):
        t.put(client(n), f"f{n}", float(n))
    t.touch(client(0), 4.5, inbound_bytes=7)
    assert [r.key for r in t.expire_flows(33.0)] == [client(1), client(2), client(3)]
    records = t.expire_flows(34.5)
    assert [r.key for r in records] == [client(4), client(0)]
    assert all(isinstance(r, Flow) for r in records)
    assert records[-1].client_bytes == 7
    assert len(t) == 0


def test_lru_eviction_at_max_flows() -> None:
    t = table(max_flows=3)
    assert t.put(client(1), "a", 0.0) == []
    assert t.put(client(2), "b", 1.0) == []
    assert t.put(client(3), "c", 2.0) == []
    t.get(client(1), 3.0)  # "a" is now the most recently seen
    assert t.put(client(4), "d", 4.0) == ["b"]  # least recently seen goes
    assert len(t) == 3
    assert [f.data for f in t] == ["c", "a", "d"]
    _, created, evicted = t.lookup_or_create(client(5), 5.0, lambda k: "e")
    assert created and evicted == ["c"]
    assert t.next_deadline() == 33.0  # "a", seen at 3.0


def test_max_flows_one() -> None:
    t = table(max_flows=1)
    t.put(client(1), "a", 0.0)
    assert t.put(client(2), "b", 1.0) == ["a"]
    assert [f.data for f in t] == ["b"]


def test_put_replacing_a_key_hands_back_the_old_value() -> None:
    t = table(max_flows=2)
    t.put(client(1), "old", 0.0)
    t.put(client(2), "other", 1.0)
    assert t.put(client(1), "new", 2.0) == ["old"]  # not an eviction of "other": same key
    assert len(t) == 2
    assert t.put(client(1), "new", 3.0) == []  # the very same value is not handed back to close
    flow = t.flow(client(1))
    assert flow is not None and flow.created == 3.0


def test_remove_and_drain() -> None:
    t = table()
    for n in range(3):
        t.put(client(n), f"f{n}", float(n))
    assert t.remove(client(1)) == "f1"
    assert t.remove(client(1)) is None
    assert t.next_deadline() == 30.0
    assert t.drain() == ["f0", "f2"]
    assert len(t) == 0 and t.next_deadline() is None


def test_time_never_runs_backwards_inside_the_table() -> None:
    """A stale `now` counts as the latest seen, so the idlest-first order (and with it the
    O(1) deadline) stays true."""
    t = table()
    t.put(client(1), "a", 10.0)
    t.put(client(2), "b", 5.0)  # stale: recorded as 10.0
    t.touch(client(1), 3.0)  # stale: recorded as 10.0, and now "a" is the most recent
    assert [(f.data, f.last_seen) for f in t] == [("b", 10.0), ("a", 10.0)]
    assert t.next_deadline() == 40.0
    assert t.expire(40.0) == ["b", "a"]


def test_ten_thousand_flows_expire_quickly() -> None:
    t: FlowTable[Key, int] = FlowTable(max_flows=10_000, idle_timeout=60.0)
    start = time.perf_counter()
    for n in range(10_000):
        t.put(("198.51.100.1", n), n, n * 0.001)
    for n in range(0, 10_000, 2):  # half of them stay busy
        t.touch(("198.51.100.1", n), 30.0, inbound_bytes=1)
    for _ in range(10_000):
        t.next_deadline()
    assert t.next_deadline() == pytest.approx(60.001)
    assert t.expire(60.0) == []
    gone = t.expire(89.999)
    assert len(gone) == 5_000 and all(n % 2 == 1 for n in gone)
    assert t.next_deadline() == 90.0
    assert len(t.expire(90.0)) == 5_000
    # The full cycle is a few tens of milliseconds; a quadratic scan would be ~100x slower.
    assert time.perf_counter() - start < 1.0
    assert len(t) == 0


def test_eviction_stays_cheap_under_churn() -> None:
    t: FlowTable[int, int] = FlowTable(max_flows=10_000, idle_timeout=60.0)
    start = time.perf_counter()
    evicted = 0
    for n in range(50_000):
        evicted += len(t.put(n, n, float(n)))
    assert len(t) == 10_000 and evicted == 40_000
    assert time.perf_counter() - start < 1.0


# --- model-based --------------------------------------------------------------------------

ops = st.lists(
    st.tuples(
        st.sampled_from(["put", "get", "touch", "remove", "expire"]),
        st.integers(0, 6),  # key
        st.floats(0, 5, allow_nan=False),  # time step
    ),
    max_size=60,
)


@settings(max_examples=300, database=None)
@given(ops, st.integers(1, 5))
def test_matches_a_naive_model(steps: list[tuple[str, int, float]], max_flows: int) -> None:
    """Against a dict scanned in full every time: same contents in the same order, same
    values handed back, same deadlines and expiries, never more than max_flows."""
    idle = 4.0
    t: FlowTable[int, str] = FlowTable(max_flows=max_flows, idle_timeout=idle)
    model: dict[int, tuple[float, str]] = {}  # key -> (last_seen, value); order = recency
    now = 0.0
    for i, (op, key, step) in enumerate(steps):
        now += step
        if op == "put":
            value = f"v{i}"
            handed_back = [model.pop(key)[1]] if key in model else []
            while len(model) >= max_flows:
                handed_back.append(model.pop(next(iter(model)))[1])
            model[key] = (now, value)
            assert t.put(key, value, now) == handed_back
            assert len(t) <= max_flows
        elif op in ("get", "touch"):
            found = t.get(key, now) if op == "get" else t.touch(key, now)
            assert (found is not None) == (key in model)
            if key in model:
                model[key] = (now, model.pop(key)[1])
        elif op == "remove":
            assert t.remove(key) == (model.pop(key)[1] if key in model else None)
        else:
            due = [k for k, (seen, _) in model.items() if seen + idle <= now]
            assert t.expire(now) == [model.pop(k)[1] for k in due]
        assert [(f.key, f.last_seen, f.data) for f in t] == [(k, s, v) for k, (s, v) in model.items()]
        assert t.next_deadline() == (min(s for s, _ in model.values()) + idle if model else None)


# --- sans-IO -----------------------------------------------------------------------------------

FORBIDDEN = {"asyncio", "socket", "ssl", "selectors", "uvloop", "time"}
SPECTRUM = Path(__file__).resolve().parents[3] / "spectrum"


@pytest.mark.parametrize("name", ["proxy_protocol.py", "flows.py"])
def test_module_source_imports_no_io(name: str) -> None:
    tree = ast.parse((SPECTRUM / name).read_text(encoding="utf-8"))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    assert roots & FORBIDDEN == set()


def test_importing_the_modules_loads_no_io_module() -> None:
    """In a fresh interpreter, importing both modules pulls in none of asyncio, socket, ssl."""
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "import spectrum.proxy_protocol, spectrum.flows\n"
        "print(' '.join(sorted(set(sys.modules) - before)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=SPECTRUM.parent, capture_output=True, text=True, check=True
    ).stdout.split()
    assert "spectrum.proxy_protocol" in out
    assert {"asyncio", "socket", "ssl", "selectors"} & set(out) == set()
