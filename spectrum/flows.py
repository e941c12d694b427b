"""Sans-IO UDP flow table: flows keyed on the client address, time passed in.

Invariants:
- Entries are kept in last-seen order (an OrderedDict), so the idlest flow is first: expiry
  pops from the front and the single next deadline is the first entry's last-seen + idle.
- The table never holds more than `max_flows`; a new flow when it is full evicts the least
  recently seen one (a busy client is never refused because of idle ones; the glue closes what
  `put` returns).
- Nothing here reads a clock: `now` is monotonic seconds from the caller (aioquic's style).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@dataclass(slots=True)
class _Entry(Generic[V]):
    value: V
    created: float
    last_seen: float


class FlowTable(Generic[K, V]):
    def __init__(self, *, max_flows: int, idle_timeout: float) -> None:
        if max_flows < 1:
            raise ValueError("max_flows must be at least 1")
        if idle_timeout <= 0:
            raise ValueError("idle_timeout must be positive")
        self.max_flows = max_flows
        self.idle_timeout = idle_timeout
        self._entries: OrderedDict[K, _Entry[V]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def get(self, key: K, now: float) -> V | None:
        """The flow for `key`, marked as seen at `now`; None if there is none."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        entry.last_seen = now
        self._entries.move_to_end(key)
        return entry.value

    def peek(self, key: K) -> V | None:
        entry = self._entries.get(key)
        return None if entry is None else entry.value

    def put(self, key: K, value: V, now: float) -> list[V]:
        """Add (or replace) a flow seen at `now`; returns the flows evicted to make room."""
        evicted: list[V] = []
        old = self._entries.pop(key, None)
        if old is not None:
            evicted.append(old.value)
        while len(self._entries) >= self.max_flows:
            _, entry = self._entries.popitem(last=False)
            evicted.append(entry.value)
        self._entries[key] = _Entry(value, now, now)
        return evicted

    def remove(self, key: K) -> V | None:
        entry = self._entries.pop(key, None)
        return None if entry is None else entry.value

    def expire(self, now: float) -> list[V]:
        """Remove and return every flow idle for `idle_timeout` or longer at `now`."""
        expired: list[V] = []
        while self._entries:
            key, entry = next(iter(self._entries.items()))
            if entry.last_seen + self.idle_timeout > now:
                break
            del self._entries[key]
            expired.append(entry.value)
        return expired

    def next_deadline(self) -> float | None:
        """When the idlest flow expires; None for an empty table. The glue arms one timer for it."""
        if not self._entries:
            return None
        entry = next(iter(self._entries.values()))
        return entry.last_seen + self.idle_timeout

    def drain(self) -> list[V]:
        """Remove and return every flow (shutdown)."""
        values = [e.value for e in self._entries.values()]
        self._entries.clear()
        return values

    def created_at(self, key: K) -> float | None:
        entry = self._entries.get(key)
        return None if entry is None else entry.created
