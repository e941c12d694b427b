"""Event records (Logpush datasets) and request traces.

Every request and connection produces one record whose field names follow Cloudflare's Logpush
datasets (`http_requests`, `firewall_events`, `spectrum_events`, plus `dns_queries`). A record
is logged as one JSON line through structlog (`event="edge.record.emitted"`, `dataset=...`),
kept in a bounded in-memory ring per dataset (for analytics, the dashboard and tests), handed
to subscribers, and optionally appended to `<state_dir>/logs/<dataset>.ndjson` like Logpush.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, BinaryIO

import orjson
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


class _BatchedLines:
    """A structlog logger target that collects rendered lines and writes them in one call per
    event-loop tick (a record per request is too many for a write and flush each)."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._pending: list[bytes] = []
        self._scheduled = False

    def msg(self, message: bytes) -> None:
        self._pending.append(message)
        if self._scheduled:
            return
        try:
            asyncio.get_running_loop().call_soon(self.flush)
            self._scheduled = True
        except RuntimeError:  # no loop running (a script, a test): write at once
            self.flush()

    def flush(self) -> None:
        self._scheduled = False
        if not self._pending:
            return
        lines, self._pending = self._pending, []
        try:
            self._stream.write(b"\n".join(lines) + b"\n")
            self._stream.flush()
        except (OSError, ValueError):
            pass  # stdout closed (a pipe reader went away): records still reach the ring and files

    info = msg


def record_logger(target: _BatchedLines) -> Any:
    """The records' own structlog pipeline: timestamp, level, JSON via orjson, batched writes.
    The general log chain costs ~14 µs a line; this one ~4 µs, which a per-request record needs."""
    return structlog.wrap_logger(
        target,
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(serializer=lambda obj, **_: orjson.dumps(obj, default=str)),
        ],
        cache_logger_on_first_use=True,
    )


class EventSink:
    """Where roles put their records. One per process; passed in, never global.

    `log_records`: log each record as a JSON line (`event="edge.record.emitted"`, `dataset`,
    `record`) on `stream` (stdout by default); `log_dir`: also append it to
    `<log_dir>/<dataset>.ndjson`, like Logpush."""

    def __init__(self, *, log_dir: Path | None = None, log_records: bool = True,
                 stream: BinaryIO | None = None) -> None:
        self._rings: dict[str, deque[Record]] = {d: deque(maxlen=RING_SIZE) for d in DATASETS}
        self._listeners: list[Listener] = []
        self._lines = _BatchedLines(stream or sys.stdout.buffer) if log_records else None
        self._log = record_logger(self._lines) if self._lines is not None else None
        self._files: dict[str, IO[bytes]] = {}
        self._log_dir = log_dir
        self._traces: OrderedDict[str, Trace] = OrderedDict()
        self._forward: Listener | None = None
        self._forward_trace: Callable[[Trace], None] | None = None
        self.counts: dict[str, int] = dict.fromkeys(DATASETS, 0)
        if log_dir is not None:
            log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)

    def emit(self, dataset: str, record: Record) -> None:
        ring = self._rings.get(dataset)
        if ring is None:
            ring = self._rings[dataset] = deque(maxlen=RING_SIZE)
        ring.append(record)
        self.counts[dataset] = self.counts.get(dataset, 0) + 1
        if self._log is not None:
            self._log.info("edge.record.emitted", dataset=dataset, record=record)
        if self._log_dir is not None:
            f = self._files.get(dataset)
            if f is None:
                path = self._log_dir / f"{dataset}.ndjson"
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                f = self._files[dataset] = os.fdopen(fd, "ab", buffering=0)
            f.write(orjson.dumps(record, default=str) + b"\n")
        for listener in self._listeners:
            listener(dataset, record)
        if self._forward is not None:
            self._forward(dataset, record)

    def ingest(self, dataset: str, record: Record) -> None:
        """A record another process made (`edge.event_link`): kept and analysed here, not logged
        or written again (its own process did that)."""
        ring = self._rings.get(dataset)
        if ring is None:
            ring = self._rings[dataset] = deque(maxlen=RING_SIZE)
        ring.append(record)
        self.counts[dataset] = self.counts.get(dataset, 0) + 1
        for listener in self._listeners:
            listener(dataset, record)

    def forward_to(self, record: Listener | None, trace: Callable[[Trace], None] | None) -> None:
        """Also hand every record and trace to these (None: stop)."""
        self._forward, self._forward_trace = record, trace

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
        if self._forward_trace is not None:
            self._forward_trace(trace)

    def trace(self, ray_id: str) -> Trace | None:
        return self._traces.get(ray_id.split("-", 1)[0])

    def recent_traces(self, limit: int = 50) -> list[Trace]:
        return list(self._traces.values())[-limit:]

    def close(self) -> None:
        if self._lines is not None:
            self._lines.flush()
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
