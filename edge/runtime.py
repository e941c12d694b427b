"""Runtime: start the roles on one loop, report binds for readiness, shut down in order.

Shutdown order (uvicorn's), in tiers (`SHUTDOWN_TIERS`): the drain hooks run (the CDN closes
its idle upstreams), then the CDN and the API stop accepting, ask their connections to finish
and are waited for; then Spectrum, which those requests may be going through; then the resolver
and the demo origins that everything depends on. So a request in flight still resolves and
reaches its origin. One `limits.shutdown_deadline` covers all tiers; what is left is aborted,
then the role tasks are cancelled. A second signal skips the waits.

Roles are `serve_*` coroutines taking a `RoleContext`; they run until cancelled and close what
they opened in `finally`. They register listeners through `open_tcp_listener` /
`open_udp_endpoint`, which record each bind's status and, on failure, the remedy.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import importlib
import os
import resource
import signal
import socket
import ssl as ssl_module
import sys
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import structlog

from edge.events import EventSink
from edge.store import Store

log = structlog.get_logger("edge.runtime")

ROLES: dict[str, str] = {
    "origins": "edge.origins:serve_origins",
    "resolver": "resolver.server:serve_resolver",
    "spectrum": "spectrum.server:serve_spectrum",
    "cdn": "cdn.server:serve_cdn",
    "api": "edge.admin:serve_admin",
}
ALL_ROLES = tuple(ROLES)
# Shutdown order: each tier stops accepting and drains before the next, because connections of
# an earlier tier depend on the later ones (the CDN dials Spectrum for the seed's hostname, and
# both resolve names and reach the demo origins). "": a connection registered without a role.
SHUTDOWN_TIERS: tuple[tuple[str, ...], ...] = (("cdn", "api", ""), ("spectrum",), ("resolver", "origins"))

# Accept errors that mean "out of resources" (trio's list): log, pause, keep serving.
OVERLOAD_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class Throttled:
    """A warning said at most once per `interval` seconds, with how many were held back: a
    flood of refused connections must not become a flood of log lines."""

    __slots__ = ("event", "held", "interval", "last")

    def __init__(self, event: str, interval: float = 1.0) -> None:
        self.event = event
        self.interval = interval
        self.last = float("-inf")
        self.held = 0

    def __call__(self, now: float, **fields: Any) -> None:
        if now - self.last < self.interval:
            self.held += 1
            return
        log.warning(self.event, suppressed=self.held, **fields)
        self.last, self.held = now, 0


class Connection(Protocol):
    def shutdown(self) -> None:
        """Finish the exchange in progress, then close (an idle connection closes at once)."""

    def abort(self) -> None:
        """Close now."""


class Connections:
    """Live connections of the process, for graceful shutdown and leak checks."""

    def __init__(self) -> None:
        self._live: dict[Connection, str] = {}
        self._changed = asyncio.Event()
        self._draining: set[str] | None = None  # None: not draining; else the roles being drained

    @property
    def draining(self) -> bool:
        return self._draining is not None

    def add(self, conn: Connection, role: str = "") -> None:
        self._live[conn] = role
        if self._draining is not None and (role in self._draining or "*" in self._draining):
            conn.shutdown()

    def discard(self, conn: Connection) -> None:
        self._live.pop(conn, None)
        self._changed.set()  # `wait_empty` counts again

    def __len__(self) -> int:
        return len(self._live)

    def count(self, roles: Iterable[str] | None = None) -> int:
        if roles is None:
            return len(self._live)
        wanted = set(roles)
        return sum(1 for role in self._live.values() if role in wanted)

    def shutdown_all(self, roles: Iterable[str] | None = None) -> None:
        """Ask the connections of `roles` (all when None) to finish; new ones are asked at once."""
        wanted = {"*"} if roles is None else set(roles)
        self._draining = (self._draining or set()) | wanted
        for conn, role in list(self._live.items()):
            if "*" in wanted or role in wanted:
                conn.shutdown()

    def abort_all(self) -> None:
        for conn in list(self._live):
            conn.abort()

    async def wait_empty(self, timeout: float, roles: Iterable[str] | None = None) -> bool:
        """Wait until no connection of `roles` (any role when None) is left; False on timeout."""
        wanted = None if roles is None else tuple(roles)
        try:
            async with asyncio.timeout(timeout):
                while self.count(wanted):
                    self._changed.clear()
                    await self._changed.wait()
            return True
        except TimeoutError:
            return False


@dataclass(slots=True)
class Bind:
    role: str
    name: str
    transport: str
    address: str
    port: int
    status: str = "pending"  # pending | bound | failed | closed
    reason: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "name": self.name,
            "transport": self.transport,
            "address": self.address,
            "port": self.port,
            "status": self.status,
            "reason": self.reason,
        }


class Binds:
    """Every listener the process tried to open, with its status: the truth behind /ready."""

    def __init__(self) -> None:
        self._binds: dict[tuple[str, str, str, int], Bind] = {}
        self._closers: dict[tuple[str, str, str, int], Callable[[], None]] = {}
        self.expected_roles: set[str] = set()
        self.ready_roles: set[str] = set()
        self.started = False  # set once every role to run is known (empty expected_roles is not ready)
        self.changed = asyncio.Event()

    def record(self, bind: Bind, closer: Callable[[], None] | None = None) -> None:
        key = (bind.role, bind.transport, bind.address, bind.port)
        self._binds[key] = bind
        if closer is not None:
            self._closers[key] = closer
        self.changed.set()

    def failed(self, bind: Bind, err: OSError, port_offset: int = 0) -> None:
        """Record a bind that failed, with the remedy for `err`, and log it."""
        bind.status, bind.reason = "failed", bind_remedy(err, bind.address, bind.port, port_offset)
        self.record(bind)
        log.error(
            "runtime.bind.failed",
            role=bind.role,
            name=bind.name,
            address=bind.address,
            port=bind.port,
            reason=bind.reason,
        )

    def bound(self, bind: Bind, closer: Callable[[], None]) -> None:
        bind.status = "bound"
        self.record(bind, closer)

    def forget(self, role: str, transport: str, address: str, port: int) -> None:
        key = (role, transport, address, port)
        self._binds.pop(key, None)
        self._closers.pop(key, None)

    def role_ready(self, role: str) -> None:
        self.ready_roles.add(role)
        self.changed.set()

    def all(self) -> list[Bind]:
        return list(self._binds.values())

    @property
    def ready(self) -> bool:
        return (
            self.started
            and self.expected_roles <= self.ready_roles
            and all(b.status == "bound" for b in self._binds.values())
        )

    def close_all(self, roles: Iterable[str] | None = None) -> None:
        """Close the listeners of `roles` (all when None)."""
        wanted = None if roles is None else set(roles)
        for key, closer in list(self._closers.items()):
            if wanted is not None and key[0] not in wanted:
                continue
            with contextlib.suppress(Exception):
                closer()
            bind = self._binds.get(key)
            if bind is not None:
                bind.status = "closed"
            del self._closers[key]


def bind_remedy(err: OSError, address: str, port: int, port_offset: int) -> str:
    """What the user should do about a failed bind, in one sentence."""
    if err.errno == errno.EACCES:
        return (
            f"permission denied binding {address}:{port}: ports below 1024 need root; run in docker compose,"
            f" or allow them with `sudo sysctl -w net.ipv4.ip_unprivileged_port_start=0`, or set"
            f" network.port_offset (e.g. `edge up --port-offset 10000`); current offset {port_offset}"
        )
    if err.errno == errno.EADDRNOTAVAIL:
        add = (
            f"sudo ifconfig lo0 alias {address} up"
            if sys.platform == "darwin"
            else f"sudo ip addr add {address}/32 dev lo"
        )
        return (
            f"address {address} is not available on this machine (Linux makes all of 127.0.0.0/8"
            f" local, macOS only 127.0.0.1): add it with `{add}`, or change the network section"
        )
    if err.errno == errno.EADDRINUSE:
        return (
            f"address {address}:{port} is already in use by another process"
            f" (find it with `ss -ltnup 'sport = :{port}'`), or set network.port_offset"
        )
    return f"cannot bind {address}:{port}: {err.strerror or err}"


def listen_socket(address: str, port: int, backlog: int = 1024) -> socket.socket:
    """A bound, listening, non-blocking TCP socket, for accept loops that must see a connection
    before any protocol does (to peek at a PROXY header). Closed again if any step fails."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def open_raw_listener(
    binds: Binds, *, role: str, name: str, address: str, port: int, port_offset: int = 0
) -> socket.socket | None:
    """`listen_socket` with its outcome recorded for /ready (None, recorded as failed, on error)."""
    bind = Bind(role, name, "tcp", address, port)
    try:
        sock = listen_socket(address, port)
    except OSError as e:
        binds.failed(bind, e, port_offset)
        return None
    binds.bound(bind, sock.close)
    return sock


async def open_tcp_listener(
    binds: Binds,
    *,
    role: str,
    name: str,
    address: str,
    port: int,
    factory: Callable[[], asyncio.BaseProtocol],
    ssl: ssl_module.SSLContext | None = None,
    backlog: int = 1024,
    port_offset: int = 0,
) -> asyncio.AbstractServer | None:
    """Bind a TCP listener and record the outcome. Returns None (recorded as failed) on error."""
    bind = Bind(role, name, "tcp", address, port)
    loop = asyncio.get_running_loop()
    try:
        server = await loop.create_server(
            factory, host=address, port=port, ssl=ssl, backlog=backlog, reuse_address=True, start_serving=True
        )
    except OSError as e:
        binds.failed(bind, e, port_offset)
        return None
    binds.bound(bind, server.close)
    return server


# UDP receive/send buffers: a burst from many flows must not overflow the kernel's default
# (~208 KiB, about 150 datagrams) before the loop reads. Capped by net.core.rmem_max/wmem_max.
UDP_BUFFER_BYTES = 4 * 1024 * 1024


def enlarge_socket_buffers(sock: Any) -> None:
    """Best effort: raise SO_RCVBUF/SO_SNDBUF of a datagram socket (or uvloop's pseudo-socket)."""
    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        with contextlib.suppress(OSError, AttributeError):
            sock.setsockopt(socket.SOL_SOCKET, option, UDP_BUFFER_BYTES)


def enlarge_udp_buffers(transport: asyncio.BaseTransport) -> None:
    """`enlarge_socket_buffers` for a datagram transport's socket."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        enlarge_socket_buffers(sock)


async def open_udp_endpoint(
    binds: Binds,
    *,
    role: str,
    name: str,
    address: str,
    port: int,
    factory: Callable[[], asyncio.DatagramProtocol],
    port_offset: int = 0,
) -> asyncio.DatagramTransport | None:
    bind = Bind(role, name, "udp", address, port)
    loop = asyncio.get_running_loop()
    try:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        transport, _ = await loop.create_datagram_endpoint(factory, local_addr=(address, port), family=family)
        enlarge_udp_buffers(transport)
    except OSError as e:
        binds.failed(bind, e, port_offset)
        return None
    binds.bound(bind, transport.close)
    return transport


def open_udp_socket(
    binds: Binds,
    *,
    role: str,
    name: str,
    address: str,
    port: int,
    on_readable: Callable[[], None],
    port_offset: int = 0,
) -> tuple[socket.socket, Callable[[], None]] | None:
    """A bound, non-blocking UDP socket served by `on_readable` from the loop's reader callback
    (for roles that read in batches and write with plain `sendto`, without a transport).
    The outcome is recorded like `open_udp_endpoint`. Returns the socket and its closer (which
    also stops the reader), or None on failure."""
    bind = Bind(role, name, "udp", address, port)
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        enlarge_socket_buffers(sock)
        sock.bind((address, port))
    except OSError as e:
        sock.close()
        binds.failed(bind, e, port_offset)
        return None
    loop = asyncio.get_running_loop()
    fd = sock.fileno()
    loop.add_reader(fd, on_readable)
    closed = False

    def close() -> None:
        nonlocal closed
        if not closed:
            closed = True
            loop.remove_reader(fd)
            sock.close()

    binds.bound(bind, close)
    return sock, close


@dataclass
class RoleContext:
    """What every role gets: the store, the event sink, the bind registry, live connections."""

    store: Store
    events: EventSink
    binds: Binds
    connections: Connections
    state_dir: Path
    roles: tuple[str, ...]
    extras: dict[str, Any] = field(default_factory=dict)
    # Called once when shutdown starts, before connections are asked to finish (the CDN closes
    # its idle pooled upstreams here, so the Spectrum relays they hold can end).
    drain_hooks: list[Callable[[], None]] = field(default_factory=list)

    @property
    def snapshot(self) -> Any:
        return self.store.current


RoleFn = Callable[[RoleContext], Coroutine[Any, Any, None]]


def load_role(name: str) -> RoleFn | None:
    target = ROLES[name]
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and (module_name == e.name or module_name.startswith(e.name + ".")):
            log.warning("runtime.role.unavailable", role=name, reason=f"{module_name} is not built yet")
            return None
        raise
    fn: RoleFn = getattr(module, attr)
    return fn


# Settings read once when the listeners are bound: a change needs a restart (Spectrum's app
# listeners, zones, records, rules and limits follow the store at once).
BOUND_AT_START = (
    ("network", ("resolver", "resolver_port", "cdn_ips", "cdn_http_ports", "cdn_https_ports", "cdn_egress_ip",
                 "spectrum_egress_ip", "port_offset")),
    ("api", ("address", "port")),
    ("origins", None),
    ("logs", None),
)


def restart_needed(before: Any, after: Any) -> list[str]:
    """The start-time settings that differ between two configs, as dotted names."""
    changed = []
    for section, names in BOUND_AT_START:
        old, new = getattr(before, section), getattr(after, section)
        if names is None:
            if old != new:
                changed.append(section)
            continue
        changed += [f"{section}.{n}" for n in names if getattr(old, n) != getattr(new, n)]
    return changed


def _warn_on_restart_needed(ctx: RoleContext) -> Callable[[], None]:
    started = ctx.store.current.config
    said: list[str] = []

    def check(snapshot: Any) -> None:
        changed = restart_needed(started, snapshot.config)
        if changed == said:  # said once per different set, not on every later change
            return
        said[:] = changed
        if changed:
            log.warning(
                "edge.config.restart_needed",
                changed=changed,
                effect="these take effect at the next `edge up`; the rest of the change is live",
            )

    return ctx.store.subscribe(check)


async def serve_roles(ctx: RoleContext, *, stop: asyncio.Event, force: asyncio.Event) -> list[str]:
    """Run the roles until `stop` is set (or a role fails), then shut down in order.

    Returns the names of the roles that failed (empty on a clean stop)."""
    # Roles split across processes: records and traces go to the process serving the API.
    from edge.event_link import open_event_forwarder, open_event_inbox

    link_close: Callable[[], None] | None = None
    if "api" in ctx.roles:
        link_close = await open_event_inbox(ctx.events, ctx.state_dir)
    elif set(ctx.roles) & {"cdn", "spectrum", "resolver"}:
        link_close = open_event_forwarder(ctx.events, ctx.state_dir)
    unwatch_restart = _warn_on_restart_needed(ctx)
    try:
        return await _serve_roles(ctx, stop=stop, force=force)
    finally:
        unwatch_restart()
        if link_close is not None:
            link_close()


async def _serve_roles(ctx: RoleContext, *, stop: asyncio.Event, force: asyncio.Event) -> list[str]:
    failed: list[str] = []
    tasks: list[asyncio.Task[None]] = []
    ctx.binds.expected_roles = set()
    for name in ctx.roles:
        fn = load_role(name)
        if fn is None:
            continue
        ctx.binds.expected_roles.add(name)
        tasks.append(asyncio.create_task(fn(ctx), name=f"role-{name}"))
    ctx.binds.started = True
    ctx.binds.changed.set()
    watch = asyncio.create_task(ctx.store.serve_watch(), name="store-watch")
    fd_watch = asyncio.create_task(watch_descriptors(), name="fd-watch")
    stopper = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
        for t in done:
            if t is not stopper:
                role = t.get_name().removeprefix("role-")
                failed.append(role)
                exc = t.exception()
                log.error("runtime.role.failed", role=role, error=repr(exc) if exc else "returned", exc_info=exc)
        loop = asyncio.get_running_loop()
        end = loop.time() + float(ctx.store.current.config.limits.shutdown_deadline)
        for hook in ctx.drain_hooks:
            try:
                hook()
            except Exception:
                log.exception("runtime.shutdown.hook_failed")
        for tier in SHUTDOWN_TIERS:
            # 1. stop accepting; 2. ask connections to finish; 3. wait up to the deadline
            # (a second signal cuts it short)
            ctx.binds.close_all(tier)
            ctx.connections.shutdown_all(tier)
            if force.is_set():
                break
            waiter = asyncio.create_task(ctx.connections.wait_empty(max(end - loop.time(), 0.0), tier))
            forcer = asyncio.create_task(force.wait())
            await asyncio.wait([waiter, forcer], return_when=asyncio.FIRST_COMPLETED)
            forcer.cancel()
            waiter.cancel()
        ctx.binds.close_all()
        ctx.connections.shutdown_all()
        if len(ctx.connections):
            log.warning("runtime.shutdown.aborting", connections=len(ctx.connections))
        # 4. abort the rest
        ctx.connections.abort_all()
    finally:
        stopper.cancel()
        watch.cancel()
        fd_watch.cancel()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, watch, fd_watch, stopper, return_exceptions=True)
    return failed


async def watch_descriptors(interval: float = 1.0) -> None:
    """Log descriptor exhaustion (EMFILE) as `runtime.overload`, and its end.

    uvloop's listeners never report EMFILE: libuv accepts with a reserve descriptor and closes
    the connection at once, silently. So the process watches its own descriptor count against
    RLIMIT_NOFILE: above 90% (or when even listing them fails with EMFILE) it warns once with the
    remedy; below 80% it says the overload is over."""
    fd_dir = "/proc/self/fd"
    if not os.path.isdir(fd_dir):
        return
    over = False
    while True:
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        try:
            count = len(os.listdir(fd_dir))
        except OSError as e:
            if e.errno not in OVERLOAD_ERRNOS:
                return
            count = soft
        if soft > 0 and soft != resource.RLIM_INFINITY:
            if not over and count >= soft * 0.9:
                over = True
                log.warning(
                    "runtime.overload",
                    error="EMFILE (Too many open files): new connections are being refused",
                    descriptors=count,
                    limit=soft,
                    remedy="raise the open-files limit (ulimit -n, or nofile in docker compose ulimits)",
                )
            elif over and count < soft * 0.8:
                over = False
                log.info("runtime.overload.cleared", descriptors=count, limit=soft)
        await asyncio.sleep(interval)


def install_signal_handlers(stop: asyncio.Event, force: asyncio.Event) -> Callable[[], None]:
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            log.warning("runtime.signal.forced", signal=signal.Signals(signum).name)
            force.set()
        else:
            log.info("runtime.signal.received", signal=signal.Signals(signum).name)
            stop.set()

    sigs: Iterable[int] = (signal.SIGINT, signal.SIGTERM)
    for s in sigs:
        loop.add_signal_handler(s, on_signal, s)

    def remove() -> None:
        for s in sigs:
            loop.remove_signal_handler(s)

    return remove


def sighup_reloader(reload: Callable[[], None]) -> Callable[[], None]:
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGHUP, reload)

    def remove() -> None:
        loop.remove_signal_handler(signal.SIGHUP)

    return remove
