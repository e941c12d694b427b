"""Start the whole edge (or some roles) in-process: for tests, the pytest plugin and `edge up`.

`open_edge(...)` is an async context manager: it builds the store in `state_dir`, creates the
local CA, starts the selected roles on the running loop, waits until `/ready` would answer 200
(every listener bound, every role ready), and yields an `EdgeHandle`. On exit it shuts down in
order and closes everything it opened. A readiness failure raises `EdgeStartError` with every
failed bind and its remedy.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.config import ConfigError, EdgeConfig, build_config, load_config
from edge.events import EventSink, Record
from edge.runtime import ALL_ROLES, Binds, Connections, RoleContext, serve_roles
from edge.store import Snapshot, Store


class EdgeStartError(Exception):
    """The edge did not become ready; the message lists every failed bind with its remedy."""


@dataclass
class EdgeHandle:
    ctx: RoleContext
    stop: asyncio.Event
    force: asyncio.Event
    task: asyncio.Task[list[str]]

    @property
    def store(self) -> Store:
        return self.ctx.store

    @property
    def snapshot(self) -> Snapshot:
        return self.ctx.store.current

    @property
    def events(self) -> EventSink:
        return self.ctx.events

    @property
    def state_dir(self) -> Path:
        return self.ctx.state_dir

    @property
    def ca_path(self) -> Path:
        return self.ctx.state_dir / "ca" / "ca.pem"

    def records(self, dataset: str) -> list[Record]:
        return self.ctx.events.records(dataset)

    def ready_report(self) -> dict[str, Any]:
        return ready_report(self.ctx)


def ready_report(ctx: RoleContext) -> dict[str, Any]:
    binds = ctx.binds
    return {
        "ready": binds.ready,
        "generation": ctx.store.current.generation,
        "port_offset": ctx.store.current.port_offset,
        "roles": {r: ("ready" if r in binds.ready_roles else "starting") for r in sorted(binds.expected_roles)},
        "binds": [b.as_json() for b in binds.all()],
    }


def coerce_config(config: EdgeConfig | str | dict[str, Any] | None) -> EdgeConfig | None:
    if config is None or isinstance(config, EdgeConfig):
        return config
    if isinstance(config, str):
        return load_config(config)
    return build_config(config)


async def wait_ready(ctx: RoleContext, task: asyncio.Task[list[str]] | None, timeout: float) -> None:
    binds = ctx.binds
    try:
        async with asyncio.timeout(timeout):
            while True:
                failed = [b for b in binds.all() if b.status == "failed"]
                if failed:
                    raise EdgeStartError(
                        "\n".join(f"{b.role} {b.transport} {b.address}:{b.port}: {b.reason}" for b in failed)
                    )
                if binds.ready:
                    return
                if task is not None and task.done():
                    exc = task.exception()
                    why = repr(exc) if exc else f"role(s) failed: {', '.join(task.result())}"
                    raise EdgeStartError(f"the edge stopped while starting: {why}")
                binds.changed.clear()
                await binds.changed.wait()
    except TimeoutError:
        waiting = sorted(binds.expected_roles - binds.ready_roles)
        raise EdgeStartError(f"not ready after {timeout}s; roles still starting: {waiting}") from None


def open_store(
    state_dir: Path,
    config: EdgeConfig | None,
    *,
    port_offset: int | None = None,
    source: str = "file",
    initial: EdgeConfig | None = None,
) -> Store:
    """The store of `state_dir`, live on `config` if given; otherwise on what the state directory
    holds, or `initial` (then the built-in default) when it holds nothing yet."""
    store = Store(state_dir, port_offset=port_offset)
    try:
        if config is None and initial is not None and store.latest_generation() == 0:
            config, source = initial, "init"
        store.open_config(config, source=source)
    except BaseException:
        store.close()
        raise
    return store


@contextlib.asynccontextmanager
async def open_edge(
    config: EdgeConfig | str | dict[str, Any] | None = None,
    *,
    state_dir: Path,
    roles: Sequence[str] = ALL_ROLES,
    port_offset: int | None = None,
    ready_timeout: float = 20.0,
    log_records: bool = False,
    log_dir: Path | None = None,
) -> AsyncIterator[EdgeHandle]:
    """Run the edge in-process until the block exits. Raises ConfigError or EdgeStartError."""
    cfg = coerce_config(config)
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    from certs.files import open_ca

    open_ca(state_dir)
    store = open_store(state_dir, cfg, port_offset=port_offset)
    events = EventSink(log_dir=log_dir, log_records=log_records)
    ctx = RoleContext(
        store=store, events=events, binds=Binds(), connections=Connections(), state_dir=state_dir, roles=tuple(roles)
    )
    stop, force = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(serve_roles(ctx, stop=stop, force=force), name="edge")
    try:
        await wait_ready(ctx, task, ready_timeout)
        yield EdgeHandle(ctx, stop, force, task)
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await task
        # Transports close their sockets in a loop callback: let those run before the loop may end.
        for _ in range(3):
            await asyncio.sleep(0)
        events.close()
        store.close()


__all__ = ["ConfigError", "EdgeHandle", "EdgeStartError", "open_edge", "ready_report", "wait_ready"]
