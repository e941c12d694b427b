"""`spectrum_events` records (reference 8.3), built from one connection's facts. Pure.

One connection gives one `connect` record (Status 0) when it is accepted and routed, then one
closing record: `disconnect` (Status 200 on a normal close, or the close code: 521 origin
refused, 522 origin connect timeout, 444 origin reset, 499 client reset, ...), or
`clientFiltered` (Status 403) when the IP firewall blocked the client. Timestamps are Unix
nanoseconds. Extra fields beyond Logpush: `AppHostname`, `EdgeIP`, `EdgePort`, `DurationMs`.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import Any

# Status codes (reference 8.3; not HTTP codes).
STATUS_OPENED = 0
STATUS_NORMAL = 200
STATUS_FILTERED = 403
STATUS_ORIGIN_RESET = 444
STATUS_ORIGIN_TIMEOUT = 445
STATUS_ORIGIN_UNREACHABLE = 446
STATUS_ORIGIN_IO = 447
STATUS_ORIGIN_EPIPE = 448
STATUS_CLIENT_TLS_FAILED = 443
STATUS_CLIENT_IO = 490
STATUS_CLIENT_TIMEOUT = 497
STATUS_CLIENT_EPIPE = 498
STATUS_CLIENT_RESET = 499
STATUS_INTERNAL = 500
STATUS_ORIGIN_UNKNOWN = 520
STATUS_ORIGIN_REFUSED = 521
STATUS_ORIGIN_CONNECT_TIMEOUT = 522
STATUS_ORIGIN_NETUNREACH = 523
STATUS_RESOLVE_INTERNAL = 530
STATUS_ORIGIN_NOT_RESOLVED = 531


def connect_error_status(exc: BaseException) -> int:
    """Close code for a failed origin connect (reference 8.3: 520-524; TLS failures of TCP apps
    report 521/522, not 525, per reference 2.3)."""
    if isinstance(exc, TimeoutError):
        return STATUS_ORIGIN_CONNECT_TIMEOUT
    if isinstance(exc, ConnectionRefusedError):
        return STATUS_ORIGIN_REFUSED
    if isinstance(exc, OSError):
        if exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
            return STATUS_ORIGIN_NETUNREACH
        if exc.errno == errno.ECONNREFUSED:
            return STATUS_ORIGIN_REFUSED
        if exc.errno == errno.ETIMEDOUT:
            return STATUS_ORIGIN_CONNECT_TIMEOUT
        if type(exc).__name__.startswith("SSL") or "ssl" in type(exc).__module__:
            return STATUS_ORIGIN_REFUSED
    return STATUS_ORIGIN_UNKNOWN


def origin_loss_status(exc: BaseException | None) -> int:
    """Close code when the origin side of an established relay broke."""
    if exc is None:
        return STATUS_NORMAL
    if isinstance(exc, ConnectionResetError):
        return STATUS_ORIGIN_RESET
    if isinstance(exc, BrokenPipeError):
        return STATUS_ORIGIN_EPIPE
    if isinstance(exc, TimeoutError):
        return STATUS_ORIGIN_TIMEOUT
    if isinstance(exc, OSError) and exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return STATUS_ORIGIN_UNREACHABLE
    return STATUS_ORIGIN_IO


def client_loss_status(exc: BaseException | None) -> int:
    """Close code when the client side of an established relay broke."""
    if exc is None:
        return STATUS_NORMAL
    if isinstance(exc, ConnectionResetError):
        return STATUS_CLIENT_RESET
    if isinstance(exc, BrokenPipeError):
        return STATUS_CLIENT_EPIPE
    if isinstance(exc, TimeoutError):
        return STATUS_CLIENT_TIMEOUT
    return STATUS_CLIENT_IO


@dataclass(slots=True)
class ConnectionFacts:
    """What one Spectrum connection (or UDP flow) knows about itself, filled in as it goes."""

    app_id: str
    app_hostname: str
    colo: str
    client_ip: str
    client_port: int
    edge_ip: str
    edge_port: int
    proto: str  # tcp | udp
    proxy_protocol: str
    ip_firewall: bool
    tls_mode: str
    connect_ns: int
    matched_firewall: str = "UNKNOWN"
    origin_ip: str = ""
    origin_port: int = 0
    client_bytes: int = 0
    origin_bytes: int = 0


def connect_record(f: ConnectionFacts) -> dict[str, Any]:
    return _record(f, "connect", STATUS_OPENED, f.connect_ns, None)


def close_record(f: ConnectionFacts, event: str, status: int, disconnect_ns: int) -> dict[str, Any]:
    return _record(f, event, status, disconnect_ns, disconnect_ns)


def _record(f: ConnectionFacts, event: str, status: int, ts: int, disconnect_ns: int | None) -> dict[str, Any]:
    return {
        "Event": event,
        "Timestamp": ts,
        "ConnectTimestamp": f.connect_ns,
        "DisconnectTimestamp": disconnect_ns if disconnect_ns is not None else 0,
        "Application": f.app_id,
        "ColoCode": f.colo,
        "ClientIP": f.client_ip,
        "ClientPort": f.client_port,
        "ClientProto": f.proto,
        "OriginProto": f.proto,
        "ClientBytes": f.client_bytes,
        "OriginBytes": f.origin_bytes,
        "OriginIP": f.origin_ip,
        "OriginPort": f.origin_port,
        "ProxyProtocol": f.proxy_protocol,
        "IpFirewall": f.ip_firewall,
        "ClientMatchedIpFirewall": f.matched_firewall,
        "OriginTlsMode": f.tls_mode,
        "Status": status,
        "AppHostname": f.app_hostname,
        "EdgeIP": f.edge_ip,
        "EdgePort": f.edge_port,
        "DurationMs": round((disconnect_ns - f.connect_ns) / 1e6, 3) if disconnect_ns is not None else 0,
    }
