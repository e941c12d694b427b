"""The shared config store: immutable snapshots, swapped atomically, persisted in SQLite.

Invariants:
- `Store.current` is always a complete, validated `Snapshot`; it is replaced by one assignment.
- A change is validated off to the side (`build_config`), written to SQLite in one transaction,
  swapped in, and only then are subscribers told. A rejected change raises `ConfigError` and
  leaves the live snapshot and the database untouched.
- Every process on the same state directory shares the database; `serve_watch` polls the newest
  generation (a cheap indexed query) and swaps in changes made by other processes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import ipaddress
import json
import socket
import sqlite3
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import structlog

from edge.config import (
    ConfigError,
    EdgeConfig,
    IPAddress,
    Problem,
    SpectrumApp,
    Zone,
    build_config,
    list_specs,
    rule_specs,
)

log = structlog.get_logger("edge.store")
T = TypeVar("T")

# How many old generations the database keeps (for `edge` debugging; the live one is the newest).
_KEEP_GENERATIONS = 50


def privileged_ports_available() -> bool:
    """Whether this process may bind ports below 1024: asks the kernel by trying one (root without
    CAP_NET_BIND_SERVICE can't, a user can when ip_unprivileged_port_start allows)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        probe.bind(("127.0.0.1", 1))
    except PermissionError:
        return False
    except OSError:
        return True  # in use or similar: the permission itself was granted
    finally:
        probe.close()
    return True


def resolve_port_offset(config: EdgeConfig) -> int:
    offset = config.network.port_offset
    if offset == "auto":
        return 0 if privileged_ports_available() else 10000
    return offset


_THIS_NETWORK = ipaddress.IPv4Network("0.0.0.0/8")

@dataclass(frozen=True, slots=True)
class SpectrumListener:
    """One (edge IP, transport, port range) an app listens on."""

    zone: Zone
    app: SpectrumApp
    ip: IPAddress
    transport: str
    first_port: int
    last_port: int


def assign_dynamic_ips(config: EdgeConfig) -> dict[str, tuple[IPAddress, ...]]:
    """Edge IPs per Spectrum app id. Dynamic apps get one pool address per hostname, derived from
    the hostname's hash (so the same app keeps its address across restarts and processes);
    apps sharing a hostname share it; static apps get their listed IPs."""
    net = config.network
    pool = net.spectrum_ips
    reserved = {net.spectrum_egress_ip, *net.cdn_ips, net.cdn_egress_ip, net.resolver}
    hosts = [h for h in (pool.hosts() if pool.num_addresses <= 65536 else []) if h not in reserved]
    for zone in config.zones:
        for app in zone.spectrum_apps:
            if app.edge_ips.type == "static":
                reserved.update(app.edge_ips.ips or ())
    hosts = [h for h in hosts if h not in reserved]
    names = sorted({a.dns.name for z in config.zones for a in z.spectrum_apps if a.edge_ips.type == "dynamic"})
    by_name: dict[str, IPAddress] = {}
    taken: set[int] = set()
    for name in names:
        if not hosts:
            break
        start = int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big") % len(hosts)
        i = start
        while i in taken and len(taken) < len(hosts):
            i = (i + 1) % len(hosts)
        taken.add(i)
        by_name[name] = hosts[i]
    out: dict[str, tuple[IPAddress, ...]] = {}
    for zone in config.zones:
        for app in zone.spectrum_apps:
            if app.edge_ips.type == "static":
                out[app.id or ""] = tuple(app.edge_ips.ips or ())
            elif app.dns.name in by_name:
                out[app.id or ""] = (by_name[app.dns.name],)
    return out


@dataclass(frozen=True)
class Snapshot:
    """One immutable view of the whole config, with the indexes every role needs prebuilt."""

    config: EdgeConfig
    generation: int
    port_offset: int
    zones_by_name: Mapping[str, Zone]
    zones_by_id: Mapping[str, Zone]
    app_ips: Mapping[str, tuple[IPAddress, ...]]
    spectrum_listeners: tuple[SpectrumListener, ...]
    spectrum_hosts: Mapping[str, tuple[IPAddress, ...]]
    spectrum_ip_set: frozenset[IPAddress]
    rulesets: Mapping[str, Any]  # zone id -> cdn.rules.CompiledRuleset
    # Per-snapshot memo for derived, deterministic data (compiled DNS answers, TLS contexts...).
    _derived: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def derived(self, key: str, factory: Callable[[Snapshot], T]) -> T:
        """Compute once per snapshot. Roles cache their compiled forms here, not in globals."""
        try:
            return self._derived[key]  # type: ignore[no-any-return]
        except KeyError:
            value = factory(self)
            self._derived[key] = value
            return value

    def zone_for_host(self, host: str) -> Zone | None:
        """Longest zone suffix wins: exact name or any name under it."""
        name = host.lower().rstrip(".")
        while True:
            zone = self.zones_by_name.get(name)
            if zone is not None:
                return zone
            dot = name.find(".")
            if dot < 0:
                return None
            name = name[dot + 1 :]

    def owned_address(self, ip: IPAddress) -> bool:
        """An address the emulator itself serves on (port offset applies when dialling it)."""
        net = self.config.network
        o = self.config.origins
        return (
            ip in net.cdn_ips
            or ip in self.spectrum_ip_set
            or ip == net.resolver
            or (ip.version == net.spectrum_ips.version and ip in net.spectrum_ips)
            or ip in (o.http_echo.address, o.https_echo.address, o.tcp_echo.address, o.udp_echo.address)
            or ip == self.config.api.address
        )

    def listen_port(self, port: int) -> int:
        return port + self.port_offset

    def dial_port(self, ip: IPAddress, port: int) -> int:
        return port + self.port_offset if self.owned_address(ip) else port

    def is_cdn_ip(self, ip: IPAddress) -> bool:
        return ip in self.config.network.cdn_ips

    def is_restricted_origin(self, ip: IPAddress) -> bool:
        """Addresses the CDN refuses to dial as an origin (1002): localhost, the emulator's own
        service addresses, and addresses that are not a host's (0.0.0.0/8, unspecified,
        multicast, broadcast, link-local); IPv4-mapped IPv6 addresses as their IPv4 address."""

        def build(s: Snapshot) -> frozenset[IPAddress]:
            net, api = s.config.network, s.config.api
            return frozenset(
                {
                    ipaddress.ip_address("127.0.0.1"),
                    ipaddress.ip_address("::1"),
                    ipaddress.ip_address("255.255.255.255"),
                    api.address,
                    net.resolver,
                    net.cdn_egress_ip,
                    net.spectrum_egress_ip,
                }
            )

        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
        if ip.is_unspecified or ip.is_multicast or ip.is_link_local or ip in _THIS_NETWORK:
            return True
        restricted: frozenset[IPAddress] = self.derived("store.restricted_origins", build)
        return ip in restricted

    def is_spectrum_ip(self, ip: IPAddress) -> bool:
        net = self.config.network
        return ip in self.spectrum_ip_set or (ip.version == net.spectrum_ips.version and ip in net.spectrum_ips)


def build_snapshot(config: EdgeConfig, generation: int, port_offset: int) -> Snapshot:
    from cdn.rules import compile_ruleset

    app_ips = assign_dynamic_ips(config)
    listeners = []
    hosts: dict[str, list[IPAddress]] = {}
    for zone in config.zones:
        for app in zone.spectrum_apps:
            ips = app_ips.get(app.id or "", ())
            for ip in ips:
                ports = app.ports
                listeners.append(SpectrumListener(zone, app, ip, app.transport, ports.first, ports.last))
                bucket = hosts.setdefault(app.dns.name, [])
                if ip not in bucket:
                    bucket.append(ip)
    lists = list_specs(config)
    rulesets = {}
    for zone in config.zones:
        rs = zone.custom_ruleset
        if rs is not None:
            rulesets[zone.id or ""] = compile_ruleset(rule_specs(rs), lists, ruleset_id=rs.id or "")
    return Snapshot(
        config=config,
        generation=generation,
        port_offset=port_offset,
        zones_by_name={z.name: z for z in config.zones},
        zones_by_id={z.id or "": z for z in config.zones},
        app_ips=app_ips,
        spectrum_listeners=tuple(listeners),
        spectrum_hosts={k: tuple(v) for k, v in hosts.items()},
        spectrum_ip_set=frozenset(ip for ips in app_ips.values() for ip in ips),
        rulesets=rulesets,
    )


def config_to_data(config: EdgeConfig) -> dict[str, Any]:
    data: dict[str, Any] = config.model_dump(mode="json", exclude_none=True)
    return data


Subscriber = Callable[[Snapshot], None]


class Store:
    """Holds the live snapshot of one state directory and keeps it in step with the database."""

    def __init__(self, state_dir: Path, *, port_offset: int | None = None) -> None:
        self.state_dir = state_dir
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = state_dir / "edge.db"
        self._db = sqlite3.connect(self.path, isolation_level=None, timeout=10.0, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS snapshots (generation INTEGER PRIMARY KEY AUTOINCREMENT,"
            " config TEXT NOT NULL, source TEXT NOT NULL, created REAL NOT NULL)"
        )
        self._fixed_offset = port_offset
        self._subscribers: list[Subscriber] = []
        self._current: Snapshot | None = None

    # ------------------------------------------------------------------ reading

    @property
    def current(self) -> Snapshot:
        if self._current is None:
            raise RuntimeError("the store has no snapshot yet; call open_config() first")
        return self._current

    def _latest_row(self) -> tuple[int, str] | None:
        row = self._db.execute("SELECT generation, config FROM snapshots ORDER BY generation DESC LIMIT 1").fetchone()
        return (int(row[0]), str(row[1])) if row else None

    def latest_generation(self) -> int:
        row = self._db.execute("SELECT max(generation) FROM snapshots").fetchone()
        return int(row[0] or 0)

    def _offset_for(self, config: EdgeConfig) -> int:
        return self._fixed_offset if self._fixed_offset is not None else resolve_port_offset(config)

    def open_config(self, config: EdgeConfig | None = None, *, source: str = "file") -> Snapshot:
        """Start the store: with `config`, make it the live one (persisted); without, load the
        newest persisted config, or the built-in default on a fresh state directory."""
        if config is not None:
            return self.apply(config, source=source)
        row = self._latest_row()
        if row is None:
            from edge.config import default_config

            return self.apply(default_config(), source="default")
        generation, text = row
        config = build_config(json.loads(text))
        self._swap(build_snapshot(config, generation, self._offset_for(config)))
        return self.current

    # ------------------------------------------------------------------ writing

    def apply(self, config: EdgeConfig, *, source: str) -> Snapshot:
        """Make a validated config live: persist, swap, notify. Raises ConfigError, changing nothing."""
        snapshot = self._prepare(config, generation=0)
        data = json.dumps(config_to_data(config), separators=(",", ":"))
        cur = self._db.execute(
            "INSERT INTO snapshots (config, source, created) VALUES (?, ?, ?)", (data, source, time.time())
        )
        generation = int(cur.lastrowid or 0)
        self._prune(generation)
        return self._swap(_with_generation(snapshot, generation))

    def update(self, change: Callable[[EdgeConfig], EdgeConfig], *, source: str) -> Snapshot:
        """Read-modify-write against the newest persisted config, serialised across processes.

        `change` may raise ConfigError (or any error it owns) to refuse; nothing is written then."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            row = self._latest_row()
            base = build_config(json.loads(row[1])) if row else self.current.config
            new = change(base)
            # Re-validate the whole result: the API and the file reject the same things.
            new = build_config(config_to_data(new))
            snapshot = self._prepare(new, generation=0)
            data = json.dumps(config_to_data(new), separators=(",", ":"))
            cur = self._db.execute(
                "INSERT INTO snapshots (config, source, created) VALUES (?, ?, ?)", (data, source, time.time())
            )
            generation = int(cur.lastrowid or 0)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._prune(generation)
        return self._swap(_with_generation(snapshot, generation))

    def _prepare(self, config: EdgeConfig, generation: int) -> Snapshot:
        try:
            return build_snapshot(config, generation, self._offset_for(config))
        except ConfigError:
            raise
        except Exception as e:  # a compile step refused something validation let through
            raise ConfigError([Problem("", f"config could not be compiled: {e}")]) from e

    def _prune(self, generation: int) -> None:
        self._db.execute("DELETE FROM snapshots WHERE generation <= ?", (generation - _KEEP_GENERATIONS,))

    def _swap(self, snapshot: Snapshot) -> Snapshot:
        self._current = snapshot  # the one assignment that makes it live
        log.info("store.snapshot.swapped", generation=snapshot.generation, zones=len(snapshot.config.zones))
        for callback in list(self._subscribers):
            try:
                callback(snapshot)
            except Exception:
                log.exception("store.subscriber.failed")
        return snapshot

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    def refresh(self) -> bool:
        """Swap in a newer generation written by another process; True if one was found."""
        row = self._latest_row()
        if row is None or (self._current is not None and row[0] <= self._current.generation):
            return False
        generation, text = row
        try:
            config = build_config(json.loads(text))
        except ConfigError as e:
            log.error("store.refresh.rejected", generation=generation, problems=[str(p) for p in e.problems])
            return False
        self._swap(build_snapshot(config, generation, self._offset_for(config)))
        return True

    async def serve_watch(self, interval: float = 0.03) -> None:
        """Follow changes made by other processes on the same state directory until cancelled."""
        while True:
            await asyncio.sleep(interval)
            try:
                self.refresh()
            except sqlite3.Error as e:
                log.warning("store.watch.failed", error=str(e))

    def close(self) -> None:
        self._db.close()


def _with_generation(snapshot: Snapshot, generation: int) -> Snapshot:
    return dataclasses.replace(snapshot, generation=generation, _derived={})


def parse_ip(text: str) -> IPAddress:
    return ipaddress.ip_address(text)
