"""Event records (Logpush datasets) and request traces.

Every request and connection produces one record whose field names follow Cloudflare's Logpush
datasets (`http_requests`, `firewall_events`, `spectrum_events`, plus `dns_queries`). A record
is logged as one JSON line through structlog (`event="edge.record.emitted"`, `dataset=...`),
kept in a bounded in-memory ring per dataset (for analytics, the dashboard and tests), handed
to subscribers, and optionally appended to `<state_dir>/logs/<dataset>.ndjson` like Logpush.
"""

from __future__ import annotations

import json
import os
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import structlog

DATASETS = ("http_requests", "firewall_events", "spectrum_events", "dns_queries")

# How many records per dataset and how many traces the process keeps in memory.
RING_SIZE = 10_000
TRACE_LIMIT = 5_000

Record = dict[str, Any]
Listener = Callable[[str, Record], None]


@dataclass(slots=True)
class TraceStep:
    """One decision a request met: `stage` (sni, host, waf, dns, upstream, spectrum, origin...)."""

    stage: str
    decision: str
    detail: dict[str, Any] = field(default_factory=dict)
    at_ms: float = 0.0


@dataclass(slots=True)
class Trace:
    ray_id: str
    started: float = field(default_factory=time.monotonic)
    steps: list[TraceStep] = field(default_factory=list)

    def add(self, stage: str, decision: str, **detail: Any) -> None:
        self.steps.append(TraceStep(stage, decision, detail, round((time.monotonic() - self.started) * 1000, 3)))

    def as_json(self) -> dict[str, Any]:
        return {
            "ray_id": self.ray_id,
            "steps": [{"stage": s.stage, "decision": s.decision, "at_ms": s.at_ms, **s.detail} for s in self.steps],
        }


class EventSink:
    """Where roles put their records. One per process; passed in, never global."""

    def __init__(self, *, log_dir: Path | None = None, log_records: bool = True) -> None:
        self._rings: dict[str, deque[Record]] = {d: deque(maxlen=RING_SIZE) for d in DATASETS}
        self._listeners: list[Listener] = []
        self._log = structlog.get_logger("edge.events")
        self._log_records = log_records
        self._files: dict[str, IO[str]] = {}
        self._log_dir = log_dir
        self._traces: OrderedDict[str, Trace] = OrderedDict()
        self.counts: dict[str, int] = dict.fromkeys(DATASETS, 0)
        if log_dir is not None:
            log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)

    def emit(self, dataset: str, record: Record) -> None:
        self._rings.setdefault(dataset, deque(maxlen=RING_SIZE)).append(record)
        self.counts[dataset] = self.counts.get(dataset, 0) + 1
        if self._log_records:
            self._log.info("edge.record.emitted", dataset=dataset, record=record)
        if self._log_dir is not None:
            f = self._files.get(dataset)
            if f is None:
                path = self._log_dir / f"{dataset}.ndjson"
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                f = self._files[dataset] = os.fdopen(fd, "a", buffering=1, encoding="utf-8")
            f.write(json.dumps(record, separators=(",", ":"), default=str) + "\n")
        for listener in self._listeners:
            listener(dataset, record)

    def records(self, dataset: str) -> list[Record]:
        return list(self._rings.get(dataset, ()))

    def iter_records(self, dataset: str) -> Iterator[Record]:
        return iter(list(self._rings.get(dataset, ())))

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def put_trace(self, trace: Trace) -> None:
        self._traces[trace.ray_id] = trace
        while len(self._traces) > TRACE_LIMIT:
            self._traces.popitem(last=False)

    def trace(self, ray_id: str) -> Trace | None:
        return self._traces.get(ray_id.split("-", 1)[0])

    def recent_traces(self, limit: int = 50) -> list[Trace]:
        return list(self._traces.values())[-limit:]

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()


def rfc3339_nanos(ns: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns / 1e9)) + f".{ns % 1_000_000_000:09d}Z"


def now_ns() -> int:
    return time.time_ns()


def merged(base: Mapping[str, Any], **more: Any) -> Record:
    out = dict(base)
    out.update(more)
    return out
