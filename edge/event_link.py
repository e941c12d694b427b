"""Records and traces from the roles of other processes, for the process that serves the API.

With the roles split across processes on one state directory (`edge up --roles ...`, the compose
`split` profile), analytics, the dashboard and `/trace` live in the process that runs `api`,
while the records are made where the traffic is. So the `api` process listens on a Unix stream
socket at `<state-dir>/events.sock` (`open_event_inbox`), and a process that runs cdn, spectrum
or resolver without api sends it every record and trace (`EventForwarder`), batched once per
loop tick as length-prefixed frames. Nothing waits on it: the transport buffers while the api
process is slow, up to `MAX_QUEUED` bytes; beyond that, or while no api process listens (retried
every `RETRY_SECONDS`), batches are dropped and counted (`EventForwarder.dropped`).

The batch format (`encode_batch` / `decode_batch`) is pure: one JSON object per frame,
`{"r": [[dataset, record], ...], "t": [trace.as_json(), ...]}`, at most `MAX_FRAME` bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import structlog

from edge.events import DATASETS, EventSink, Record, Trace, TraceStep

log = structlog.get_logger("edge.event_link")

SOCKET_NAME = "events.sock"
MAX_FRAME = 60_000  # bytes of one batch: records and traces are split across frames
MAX_SOCKET_PATH = 108  # sun_path, including the terminating NUL


# ----------------------------------------------------------------------------- wire format (pure)


def encode_batch(records: list[tuple[str, Record]], traces: list[dict[str, Any]]) -> list[bytes]:
    """The batch as frames of at most MAX_FRAME bytes each (an item larger than that on its own
    is left out: a record is a few hundred bytes, a trace a few KiB)."""
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
        if len(blob) + 16 > MAX_FRAME:
            continue
        if size + len(blob) + 1 > MAX_FRAME:
            flush()
        current[kind].append(blob)
        size += len(blob) + 1
    flush()
    return out


def decode_batch(data: bytes) -> tuple[list[tuple[str, Record]], list[Trace]] | None:
    """A frame back into records and traces; None if it is not one of ours."""
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

FRAME_HEADER = 4  # big-endian length of the JSON batch that follows
MAX_QUEUED = 8 * 1024 * 1024  # bytes a forwarder holds while the api process is slow or away
RETRY_SECONDS = 1.0  # between connection attempts to an absent api process


class _Inbox(asyncio.Protocol):
    """One forwarding process's stream of length-prefixed batches."""

    def __init__(self, events: EventSink, live: set[asyncio.BaseTransport]) -> None:
        self.events = events
        self.live = live
        self.transport: asyncio.BaseTransport | None = None
        self.buf = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.live.add(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.live.discard(self.transport)

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        while len(buf) >= FRAME_HEADER:
            size = int.from_bytes(buf[:FRAME_HEADER], "big")
            if len(buf) < FRAME_HEADER + size:
                return
            frame = bytes(buf[FRAME_HEADER : FRAME_HEADER + size])
            del buf[: FRAME_HEADER + size]
            try:
                batch = decode_batch(frame)
                if batch is None:
                    continue
                records, traces = batch
                for dataset, record in records:
                    if dataset in DATASETS:
                        self.events.ingest(dataset, record)
                for trace in traces:
                    self.events.put_trace(trace)
            except Exception:  # one bad batch (or a failing listener) must not stop the rest
                log.exception("edge.events.inbox_batch_failed")


class EventForwarder:
    """Sends this process's records and traces to the api process's inbox, once per loop tick,
    over a Unix stream connection (transport-buffered, so a slow reader loses nothing until
    MAX_QUEUED bytes wait). An absent api process is retried every RETRY_SECONDS; what cannot
    be held is dropped and counted."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.records: list[tuple[str, Record]] = []
        self.traces: list[dict[str, Any]] = []
        self.scheduled = False
        self.transport: asyncio.WriteTransport | None = None
        self.connecting: asyncio.Task[None] | None = None
        self.retry_at = 0.0
        self.queued: list[bytes] = []
        self.queued_bytes = 0
        self.sent = 0
        self.dropped = 0
        self.closed = False

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
        except RuntimeError:  # no loop: nothing can be sent; drop, counted
            self.dropped += len(self.records) + len(self.traces)
            self.records, self.traces = [], []

    def flush(self) -> None:
        self.scheduled = False
        records, traces = self.records, self.traces
        if records or traces:
            self.records, self.traces = [], []
            for blob in encode_batch(records, traces):
                self._queue(len(blob).to_bytes(FRAME_HEADER, "big") + blob)
        self._send()

    def _queue(self, frame: bytes) -> None:
        if self.queued_bytes + len(frame) > MAX_QUEUED:
            self.dropped += 1
            return
        self.queued.append(frame)
        self.queued_bytes += len(frame)

    def _send(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            self.transport = None
            self._connect()
            return
        if not self.queued:
            return
        if transport.get_write_buffer_size() > MAX_QUEUED:
            return  # the api process is not reading: hold (bounded by _queue)
        transport.write(b"".join(self.queued))
        self.sent += len(self.queued)
        self.queued, self.queued_bytes = [], 0

    def _connect(self) -> None:
        if self.closed or self.connecting is not None:
            return
        loop = asyncio.get_running_loop()
        if loop.time() < self.retry_at:
            return
        self.connecting = loop.create_task(self._open())

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await loop.create_unix_connection(asyncio.Protocol, self.path)
        except OSError:
            self.retry_at = loop.time() + RETRY_SECONDS
            return
        finally:
            self.connecting = None
        if self.closed:
            transport.close()
            return
        self.transport = transport
        self._send()

    def close(self) -> None:
        self.flush()
        self.closed = True
        if self.connecting is not None:
            self.connecting.cancel()
        if self.transport is not None:
            self.transport.close()  # writes what is buffered, then closes
        self.dropped += len(self.queued)


def open_event_forwarder(events: EventSink, state_dir: Path) -> Callable[[], None]:
    """Forward `events` to the inbox in `state_dir`; returns the closer."""
    path = state_dir / SOCKET_NAME
    if not _fits(path):
        log.warning("edge.events.forward_unavailable", path=str(path), error="path too long for a Unix socket",
                    effect="records of this process will not reach the api process's analytics or /trace")
        return lambda: None
    forwarder = EventForwarder(path)
    events.forward_to(forwarder.record, forwarder.trace)

    def close() -> None:
        events.forward_to(None, None)
        forwarder.close()
        if forwarder.dropped:
            log.warning("edge.events.forward_dropped", batches=forwarder.dropped, sent=forwarder.sent)

    return close


def _fits(path: Path) -> bool:
    """Whether `path` fits a Unix socket address."""
    return len(os.fsencode(path)) < MAX_SOCKET_PATH


async def open_event_inbox(events: EventSink, state_dir: Path) -> Callable[[], None] | None:
    """Listen for forwarding processes and feed what they send into `events` (ring, analytics,
    traces; not logged again: the sending process logged it). None, with a warning, if the
    socket cannot be had (another live api process owns it, or the path is too long)."""
    path = state_dir / SOCKET_NAME
    loop = asyncio.get_running_loop()

    def unavailable(why: str) -> None:
        log.warning(
            "edge.events.inbox_unavailable",
            path=str(path),
            error=why,
            effect="records of roles in other processes will not reach analytics, the dashboard or /trace",
        )

    if not _fits(path):
        unavailable("path too long for a Unix socket")
        return None
    if path.exists():
        # Stale (a crashed process) or live (another api process on this state dir)?
        try:
            transport, _ = await loop.create_unix_connection(asyncio.Protocol, str(path))
        except OSError:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        else:
            transport.close()
            unavailable("another process serving the api on this state directory owns it")
            return None
    try:
        live: set[asyncio.BaseTransport] = set()
        server = await loop.create_unix_server(lambda: _Inbox(events, live), str(path))
        os.chmod(path, 0o600)
        owned = os.stat(path)
    except OSError as e:
        unavailable(str(e))
        return None

    def close() -> None:
        server.close()
        for transport in list(live):
            transport.close()
        with contextlib.suppress(OSError):
            now = os.stat(path)
            if (now.st_dev, now.st_ino) == (owned.st_dev, owned.st_ino):  # still ours
                path.unlink()

    return close
