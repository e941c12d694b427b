"""Sans-IO UDP flow table: one entry per client address of a listener, time passed in.

Invariants (every method keeps them):

* Nothing here reads a clock. `now` is the caller's monotonic seconds (aioquic's style); a
  `now` smaller than one already seen is treated as the latest seen, so time never runs
  backwards inside the table.
* Entries are kept in last-seen order (an OrderedDict, idlest first). Since time never runs
  backwards, the first entry always has the earliest deadline: `next_deadline` is O(1) and
  `expire` is O(1) per expired flow, however many flows there are.
* A flow expires at exactly `last_seen + idle_timeout` (`now >= deadline`).
* The table never holds more than `max_flows`. A new flow when it is full **evicts the least
  recently seen flow** rather than being refused: a live client is never turned away because
  of idle ones, and the evicted flow is handed back so the glue closes its origin socket.

The table stores one value `V` per flow (the glue's own flow object: origin socket, counters,
whatever it needs) inside a `Flow` record that also keeps the table's bookkeeping. Methods
that remove flows return the values (`put`, `expire`, `drain`, `remove`), which is what the
glue closes; `expire_flows` and `flow` give the records for callers that want the counters.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["Flow", "FlowTable"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@dataclass(slots=True, eq=False)
class Flow(Generic[K, V]):
    """One flow's record. `inbound` is client -> origin, `outbound` origin -> client.

    `first_sent` is for the glue to set once the first datagram went to the origin (PROXY v2
    is prepended to that one only, reference 3.1); the table never changes it."""

    key: K
    data: V
    created: float
    last_seen: float
    client_bytes: int = 0
    origin_bytes: int = 0
    datagrams_in: int = 0
    datagrams_out: int = 0
    first_sent: bool = False


class FlowTable(Generic[K, V]):
    """Flows of one listener keyed on the client address; see the module docstring."""

    __slots__ = ("_flows", "_idle_timeout", "_max_flows", "_now")

    def __init__(self, *, max_flows: int, idle_timeout: float) -> None:
        """Raise ValueError unless max_flows >= 1 and idle_timeout > 0 (a programming error,
        not a wire one: config validation should have caught it)."""
        if max_flows < 1:
            raise ValueError(f"max_flows must be at least 1, got {max_flows}")
        if not idle_timeout > 0:
            raise ValueError(f"idle_timeout must be positive, got {idle_timeout}")
        self._max_flows = max_flows
        self._idle_timeout = float(idle_timeout)
        self._flows: OrderedDict[K, Flow[K, V]] = OrderedDict()  # idlest first
        self._now = float("-inf")  # the latest `now` seen

    @property
    def max_flows(self) -> int:
        return self._max_flows

    @property
    def idle_timeout(self) -> float:
        return self._idle_timeout

    def __len__(self) -> int:
        return len(self._flows)

    def __contains__(self, key: object) -> bool:
        return key in self._flows

    def __iter__(self) -> Iterator[Flow[K, V]]:
        """The flow records, idlest first (do not add or remove while iterating)."""
        return iter(self._flows.values())

    def _clock(self, now: float) -> float:
        if now > self._now:
            self._now = now
        return self._now

    def _seen(self, flow: Flow[K, V], now: float) -> None:
        flow.last_seen = self._clock(now)
        self._flows.move_to_end(flow.key)

    def _make_room(self) -> list[V]:
        evicted: list[V] = []
        while len(self._flows) >= self._max_flows:
            _, flow = self._flows.popitem(last=False)
            evicted.append(flow.data)
        return evicted

    # -- lookups

    def get(self, key: K, now: float) -> V | None:
        """The value of the flow for `key`, marking it seen at `now`; None if there is none."""
        flow = self._flows.get(key)
        if flow is None:
            return None
        self._seen(flow, now)
        return flow.data

    def peek(self, key: K) -> V | None:
        """The value of the flow for `key` without marking it seen; None if there is none."""
        flow = self._flows.get(key)
        return None if flow is None else flow.data

    def flow(self, key: K) -> Flow[K, V] | None:
        """The record of the flow for `key` without marking it seen; None if there is none."""
        return self._flows.get(key)

    def created_at(self, key: K) -> float | None:
        flow = self._flows.get(key)
        return None if flow is None else flow.created

    # -- adding

    def put(self, key: K, value: V, now: float) -> list[V]:
        """Add a new flow for `key` seen (and created) at `now`; return the values the glue
        must close: the least recently seen flows evicted to stay within `max_flows`, and the
        flow `key` had before, if any (and if its value is not `value` itself)."""
        old = self._flows.pop(key, None)
        evicted = [] if old is None or old.data is value else [old.data]
        evicted += self._make_room()
        at = self._clock(now)
        self._flows[key] = Flow(key, value, at, at)
        return evicted

    def lookup_or_create(self, key: K, now: float, make: Callable[[K], V]) -> tuple[Flow[K, V], bool, list[V]]:
        """The flow for `key` marked seen at `now`, or a new one whose value is `make(key)`.

        Returns (flow, created, evicted values); `evicted` is non-empty only when a new flow
        pushed the least recently seen ones out. `make` runs before anything is evicted, so
        if it raises the table is unchanged."""
        flow = self._flows.get(key)
        if flow is not None:
            self._seen(flow, now)
            return flow, False, []
        value = make(key)
        evicted = self._make_room()
        at = self._clock(now)
        flow = Flow(key, value, at, at)
        self._flows[key] = flow
        return flow, True, evicted

    # -- activity

    def touch(
        self,
        key: K,
        now: float,
        *,
        inbound_bytes: int | None = None,
        outbound_bytes: int | None = None,
    ) -> Flow[K, V] | None:
        """Mark the flow for `key` seen at `now` and count traffic: `inbound_bytes` given
        (even 0, an empty datagram) counts one client -> origin datagram of that size,
        `outbound_bytes` one origin -> client datagram. Returns the record, or None when the
        flow is gone (expired or evicted meanwhile); then nothing changes."""
        flow = self._flows.get(key)
        if flow is None:
            return None
        self._seen(flow, now)
        if inbound_bytes is not None:
            flow.client_bytes += inbound_bytes
            flow.datagrams_in += 1
        if outbound_bytes is not None:
            flow.origin_bytes += outbound_bytes
            flow.datagrams_out += 1
        return flow

    # -- removal and time

    def remove(self, key: K) -> V | None:
        """Remove the flow for `key` and return its value; None if there is none."""
        flow = self._flows.pop(key, None)
        return None if flow is None else flow.data

    def expire_flows(self, now: float) -> list[Flow[K, V]]:
        """Remove and return the records of every flow whose deadline (last_seen +
        idle_timeout) is at or before `now`, idlest first."""
        self._clock(now)
        expired: list[Flow[K, V]] = []
        flows = self._flows
        idle = self._idle_timeout
        while flows:
            key = next(iter(flows))
            if flows[key].last_seen + idle > now:
                break
            expired.append(flows.pop(key))
        return expired

    def expire(self, now: float) -> list[V]:
        """Remove every flow idle for `idle_timeout` or longer at `now`; return their values."""
        return [flow.data for flow in self.expire_flows(now)]

    def next_deadline(self) -> float | None:
        """When the next flow expires (the single time the glue should arm a timer for);
        None for an empty table. Changes only through `put`, `get`, `touch`,
        `lookup_or_create` or removals, so re-read it after calling those."""
        for flow in self._flows.values():
            return flow.last_seen + self._idle_timeout
        return None

    def drain(self) -> list[V]:
        """Remove every flow (listener shutdown) and return their values, idlest first."""
        values = [flow.data for flow in self._flows.values()]
        self._flows.clear()
        return values
