"""Which zone a connection or request belongs to: by TLS SNI, then by Host (reference 7.5).

- `select_zone(zones_by_name, name)`: the exact zone name, else the longest zone the name is
  under (so `a.sub.example.com` prefers zone `sub.example.com` over `example.com`). Any name
  under a zone is accepted, with or without a DNS record (fact 1).
- `check_host(zones_by_name, host_header, sni)`: the request's zone, or the edge error:
  1003 for an IP (or missing) Host, 1001 for a Host under no zone, 1013 for a Host under another
  zone than the SNI's. A Host other than the SNI but in the same zone is allowed (section 11).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

from cdn.errors import DirectIPAccess, DnsResolutionError, HostSniMismatch

Z = TypeVar("Z")


def normalise_name(name: str) -> str:
    return name.strip().lower().rstrip(".")


def select_zone(zones_by_name: Mapping[str, Z], name: str) -> Z | None:
    """Exact zone name first, then the longest zone suffix; None when no zone owns the name."""
    name = normalise_name(name)
    while name:
        zone = zones_by_name.get(name)
        if zone is not None:
            return zone
        dot = name.find(".")
        if dot < 0:
            return None
        name = name[dot + 1 :]
    return None


def split_host(host_header: str) -> tuple[str, int | None, bool]:
    """(name, port or None, is_ip) from a Host header value; `[v6]:port` and `v4:port` handled."""
    value = host_header.strip()
    port: int | None = None
    if value.startswith("["):
        end = value.find("]")
        name = value[1:end] if end > 0 else value[1:]
        rest = value[end + 1 :] if end > 0 else ""
        if rest.startswith(":") and rest[1:].isdigit():
            port = int(rest[1:])
        return name.lower(), port, _is_ip(name)
    if value.count(":") == 1:
        name, _, p = value.partition(":")
        if p.isdigit():
            port = int(p)
        value = name
    elif value.count(":") > 1:  # bare IPv6 without brackets
        return value.lower(), None, _is_ip(value)
    name = normalise_name(value)
    return name, port, _is_ip(name)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class HostMatch(Generic[Z]):
    zone: Z
    host: str  # normalised name, without port


def check_host(zones_by_name: Mapping[str, Z], host_header: str, sni: str | None) -> HostMatch[Z]:
    """The zone serving this request; raises DirectIPAccess, DnsResolutionError or HostSniMismatch.

    `sni` is the TLS server name (None on plain HTTP); both are matched against the same zones."""
    host, _port, is_ip = split_host(host_header)
    if not host or is_ip:
        raise DirectIPAccess(f"Host {host_header!r} is not a hostname")
    zone = select_zone(zones_by_name, host)
    if zone is None:
        raise DnsResolutionError(f"no zone owns {host!r}")
    if sni is not None and zone is not select_zone(zones_by_name, sni):
        raise HostSniMismatch(f"Host {host!r} is not in the SNI's zone")
    return HostMatch(zone, host)
