"""Records and traces from the roles of other processes, for the process that serves the API.

With the roles split across processes on one state directory (`edge up --roles ...`, the compose
`split` profile), analytics, the dashboard and `/trace` live in the process that runs `api`,
while the records are made where the traffic is. So the `api` process binds a Unix datagram
socket at `<state-dir>/events.sock` (`open_event_inbox`), and a process that runs cdn, spectrum
or resolver without api sends it every record and trace (`EventForwarder`), batched once per
loop tick, each datagram under `MAX_DATAGRAM` bytes. Nothing waits on it: a full socket, or no
api process listening, drops the batch, and the drop is counted (`EventForwarder.dropped`).

The wire format (`encode_batch` / `decode_batch`) is pure: one JSON object per datagram,
`{"r": [[dataset, record], ...], "t": [trace.as_json(), ...]}`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import structlog

from edge.events import EventSink, Record, Trace, TraceStep

log = structlog.get_logger("edge.event_link")

SOCKET_NAME = "events.sock"
MAX_DATAGRAM = 60_000  # under the default Unix datagram limit (net.core.wmem_default)
READ_BATCH = 64


# ----------------------------------------------------------------------------- wire format (pure)


def encode_batch(records: list[tuple[str, Record]], traces: list[dict[str, Any]]) -> list[bytes]:
    """The batch as datagrams of at most MAX_DATAGRAM bytes each (an item larger than that on
    its own is left out: a record is a few hundred bytes, a trace a few KiB)."""
    out: list[bytes] = []
    items = [("r", orjson.dumps(list(item), default=str)) for item in records]
    items += [("t", orjson.dumps(trace, default=str)) for trace in traces]
    current: dict[str, list[bytes]] = {"r": [], "t": []}
    size = 16

    def flush() -> None:
        nonlocal size
        if current["r"] or current["t"]:
            out.append(b'{"r":[' + b",".join(current["r"]) + b'],"t":[' + b",".join(current["t"]) + b"]}")
        current["r"], current["t"] = [], []
        size = 16

    for kind, blob in items:
        if len(blob) + 16 > MAX_DATAGRAM:
            continue
        if size + len(blob) + 1 > MAX_DATAGRAM:
            flush()
        current[kind].append(blob)
        size += len(blob) + 1
    flush()
    return out


def decode_batch(data: bytes) -> tuple[list[tuple[str, Record]], list[Trace]] | None:
    """A datagram back into records and traces; None if it is not one of ours."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict):
        return None
    records: list[tuple[str, Record]] = []
    for item in doc.get("r", ()):
        if isinstance(item, list) and len(item) == 2 and isinstance(item[0], str) and isinstance(item[1], dict):
            records.append((item[0], item[1]))
    traces: list[Trace] = []
    for item in doc.get("t", ()):
        if isinstance(item, dict) and isinstance(item.get("ray_id"), str):
            traces.append(trace_from_json(item))
    return records, traces


def trace_from_json(doc: dict[str, Any]) -> Trace:
    steps = []
    for raw in doc.get("steps", ()):
        if not isinstance(raw, dict):
            continue
        detail = dict(raw)
        stage = str(detail.pop("stage", ""))
        decision = str(detail.pop("decision", ""))
        at_ms = detail.pop("at_ms", 0.0)
        steps.append(TraceStep(stage, decision, detail, float(at_ms) if isinstance(at_ms, int | float) else 0.0))
    return Trace(ray_id=str(doc["ray_id"]), steps=steps)


# ----------------------------------------------------------------------------- I/O


class EventForwarder:
    """Sends this process's records and traces to the api process's inbox, once per loop tick."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.records: list[tuple[str, Record]] = []
        self.traces: list[dict[str, Any]] = []
        self.scheduled = False
        self.sent = 0
        self.dropped = 0

    def record(self, dataset: str, record: Record) -> None:
        self.records.append((dataset, record))
        self._schedule()

    def trace(self, trace: Trace) -> None:
        self.traces.append(trace.as_json())
        self._schedule()

    def _schedule(self) -> None:
        if self.scheduled:
            return
        try:
            asyncio.get_running_loop().call_soon(self.flush)
            self.scheduled = True
        except RuntimeError:  # no loop: send at once
            self.flush()

    def flush(self) -> None:
        self.scheduled = False
        records, traces = self.records, self.traces
        if not records and not traces:
            return
        self.records, self.traces = [], []
        for datagram in encode_batch(records, traces):
            try:
                self.sock.sendto(datagram, self.path)
                self.sent += 1
            except OSError:  # no api process (ENOENT, ECONNREFUSED) or its queue is full (EAGAIN)
                self.dropped += 1

    def close(self) -> None:
        self.flush()
        self.sock.close()


def open_event_forwarder(events: EventSink, state_dir: Path) -> Callable[[], None]:
    """Forward `events` to the inbox in `state_dir`; returns the closer."""
    forwarder = EventForwarder(state_dir / SOCKET_NAME)
    events.forward_to(forwarder.record, forwarder.trace)

    def close() -> None:
        events.forward_to(None, None)
        forwarder.close()
        if forwarder.dropped:
            log.info("edge.events.forward_dropped", batches=forwarder.dropped, sent=forwarder.sent)

    return close


def open_event_inbox(events: EventSink, state_dir: Path) -> Callable[[], None] | None:
    """Bind the inbox and feed what arrives into `events` (ring, analytics, traces; not logged
    again: the sending process logged it). None, with a warning, if it cannot be bound."""
    path = state_dir / SOCKET_NAME
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # a stale socket from an earlier run
        sock.bind(str(path))
        os.chmod(path, 0o600)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    except OSError as e:
        sock.close()
        log.warning(
            "edge.events.inbox_unavailable",
            path=str(path),
            error=str(e),
            effect="records of roles in other processes will not reach analytics, the dashboard or /trace",
        )
        return None

    def on_readable() -> None:
        for _ in range(READ_BATCH):
            try:
                data = sock.recv(MAX_DATAGRAM + 1024)
            except BlockingIOError:
                return
            except OSError:
                return
            batch = decode_batch(data)
            if batch is None:
                continue
            records, traces = batch
            for dataset, record in records:
                events.ingest(dataset, record)
            for trace in traces:
                events.put_trace(trace)

    loop = asyncio.get_running_loop()
    fd = sock.fileno()
    loop.add_reader(fd, on_readable)

    def close() -> None:
        loop.remove_reader(fd)
        sock.close()
        with contextlib.suppress(OSError):
            path.unlink()

    return close
