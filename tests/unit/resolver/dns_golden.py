"""Golden-message helpers for the resolver tests: a zone with one record of every kind the
resolver answers, and DNS wire encoders written independently of `resolver.wire`."""

from __future__ import annotations

import ipaddress
import struct
from typing import Any

from edge.config import build_config
from edge.store import Snapshot, build_snapshot

GENERATION = 7

ZONE_CONFIG: dict[str, Any] = {
    "network": {
        "port_offset": 0,
        "cdn_ips": ["127.0.10.1", "127.0.10.2", "2001:db8:cf::1"],
    },
    "zones": [
        {
            "name": "example.com",
            "dns_records": [
                {"name": "www", "type": "A", "content": "192.0.2.1", "proxied": True, "ttl": 1},
                {"name": "origin", "type": "A", "content": "192.0.2.10", "ttl": 120},
                {"name": "v6", "type": "AAAA", "content": "2001:db8::1", "ttl": 300},
                {"name": "alias", "type": "CNAME", "content": "origin.example.com", "ttl": 600},
                {"name": "palias", "type": "CNAME", "content": "origin.example.com", "proxied": True},
                {"name": "dangling", "type": "CNAME", "content": "gone.example.com", "ttl": 300},
                {"name": "outside", "type": "CNAME", "content": "elsewhere.example.net", "ttl": 300},
                {"name": "@", "type": "TXT", "content": "v=spf1 -all", "ttl": 300},
                {"name": "@", "type": "MX", "content": "mail.example.com", "priority": 10, "ttl": 300},
                {"name": "@", "type": "CAA", "content": '0 issue "letsencrypt.org"', "ttl": 300},
                {"name": "_sip._tcp", "type": "SRV", "content": "10 5 5060 sip.example.com", "ttl": 300},
                {"name": "*.wild", "type": "A", "content": "192.0.2.50", "ttl": 300},
                {"name": "*.wild", "type": "TXT", "content": "wildcard", "ttl": 300},
                {"name": "deep.a.b", "type": "A", "content": "192.0.2.60", "ttl": 300},
                {"name": "sub", "type": "NS", "content": "ns.sub.example.com", "ttl": 3600},
                {"name": "ns.sub", "type": "A", "content": "192.0.2.53", "ttl": 3600},
            ]
            + [{"name": "many", "type": "A", "content": f"198.51.100.{i}", "ttl": 300} for i in range(1, 41)],
            "spectrum_apps": [
                {
                    "protocol": "tcp/22",
                    "dns": {"type": "CNAME", "name": "ssh.example.com"},
                    "origin_direct": ["tcp://192.0.2.22:22"],
                }
            ],
        }
    ],
}


def compile_snapshot(config: dict[str, Any] = ZONE_CONFIG, generation: int = GENERATION) -> Snapshot:
    return build_snapshot(build_config(config), generation, 0)


# --------------------------------------------------------------------------- independent encoders


def wname(name: str) -> bytes:
    """Wire form of a name, written independently of resolver.wire."""
    out = b""
    for label in name.rstrip(".").split("."):
        if label:
            out += bytes([len(label)]) + label.encode()
    return out + b"\x00"


def question(name: str, qtype: int, qclass: int = 1) -> bytes:
    return wname(name) + struct.pack("!HH", qtype, qclass)


def query(
    name: str,
    qtype: int,
    *,
    ident: int = 0x1234,
    rd: bool = True,
    edns: int | None = None,
    do: bool = False,
    version: int = 0,
) -> bytes:
    flags = 0x0100 if rd else 0
    head = struct.pack("!HHHHHH", ident, flags, 1, 0, 0, 1 if edns is not None else 0)
    msg = head + question(name, qtype)
    if edns is not None:
        msg += opt(edns, do=do, version=version)
    return msg


def opt(size: int, *, do: bool = False, ext_rcode: int = 0, version: int = 0) -> bytes:
    ttl = (ext_rcode << 24) | (version << 16) | (0x8000 if do else 0)
    return b"\x00" + struct.pack("!HHIH", 41, size, ttl, 0)


def rr(owner: bytes, rtype: int, ttl: int, rdata: bytes) -> bytes:
    return owner + struct.pack("!HHIH", rtype, 1, ttl, len(rdata)) + rdata


def a(ip: str) -> bytes:
    return ipaddress.ip_address(ip).packed


PTR = b"\xc0\x0c"  # the question name


def header(ident: int, flags: int, an: int = 0, ns: int = 0, ar: int = 0, qd: int = 1) -> bytes:
    return struct.pack("!HHHHHH", ident, flags, qd, an, ns, ar)


def soa_rdata(zone: str, serial: int = GENERATION) -> bytes:
    return wname(f"ns1.{zone}") + wname(f"dns.{zone}") + struct.pack("!IIIII", serial, 10000, 2400, 604800, 300)
