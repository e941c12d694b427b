"""Membership tests for ``in {...}`` sets and ``in $list`` named lists, built once per expression.

IP sets are kept as one hash set of masked integers per prefix length, so a lookup costs one
shift and one set probe per distinct prefix length, whatever the size of the list.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from .ast import IPAddress, IPNetwork

LIST_KINDS = ("ip", "hostname", "asn", "redirect")


@dataclass(frozen=True, slots=True)
class ListSpec:
    """An account list as the config store holds it.

    ``kind`` is ``"ip"`` (items: IPs or CIDRs), ``"hostname"`` (items: hostnames, ``*.`` wildcards
    allowed), ``"asn"`` (items: AS numbers as text) or ``"redirect"`` (not usable in expressions).
    """

    name: str
    kind: str
    items: tuple[str, ...]


class IpSet:
    __slots__ = ("_ranges", "_v4", "_v6")

    def __init__(
        self, networks: Iterable[IPNetwork | IPAddress], ranges: Iterable[tuple[IPAddress, IPAddress]] = ()
    ) -> None:
        by_len: dict[tuple[int, int], set[int]] = {}
        for item in networks:
            net = ipaddress.ip_network(item)
            shift = net.max_prefixlen - net.prefixlen
            by_len.setdefault((net.version, shift), set()).add(int(net.network_address) >> shift)
        # Longest prefixes (smallest shift) first: exact addresses are the common case.
        self._v4 = tuple((shift, frozenset(s)) for (v, shift), s in sorted(by_len.items()) if v == 4)
        self._v6 = tuple((shift, frozenset(s)) for (v, shift), s in sorted(by_len.items()) if v == 6)
        self._ranges = tuple((low.version, int(low), int(high)) for low, high in ranges)

    def __contains__(self, addr: object) -> bool:
        if not isinstance(addr, ipaddress.IPv4Address | ipaddress.IPv6Address):
            return False
        n = int(addr)
        for shift, values in self._v4 if addr.version == 4 else self._v6:
            if n >> shift in values:
                return True
        return any(v == addr.version and low <= n <= high for v, low, high in self._ranges)


class IntSet:
    __slots__ = ("_ranges", "_values")

    def __init__(self, values: Iterable[int], ranges: Iterable[tuple[int, int]] = ()) -> None:
        self._values = frozenset(values)
        self._ranges = tuple(ranges)

    def __contains__(self, value: object) -> bool:
        if not isinstance(value, int):
            return False
        return value in self._values or any(low <= value <= high for low, high in self._ranges)


class HostnameSet:
    """Case-insensitive hostnames; an item ``*.example.com`` matches every subdomain of example.com."""

    __slots__ = ("_exact", "_suffixes")

    def __init__(self, hostnames: Iterable[str]) -> None:
        exact: set[str] = set()
        suffixes: set[str] = set()
        for host in hostnames:
            host = host.lower().rstrip(".")
            if host.startswith("*."):
                suffixes.add(host[1:])
            else:
                exact.add(host)
        self._exact = frozenset(exact)
        self._suffixes = tuple(sorted(suffixes))

    def __contains__(self, value: object) -> bool:
        if not isinstance(value, str):
            return False
        host = value.lower().rstrip(".")
        return host in self._exact or any(host.endswith(s) for s in self._suffixes)
