"""Authoritative answers, compiled once per snapshot and served by patching the query's ID.

Pure (sans-IO). `build_tables(snapshot)` compiles every zone into two views:

- public (any client): proxied A/AAAA/CNAME names answer A/AAAA with the CDN edge IPs at TTL 300
  (a proxied CNAME is flattened; every A/AAAA on a name with one proxied record counts as proxied;
  in a pending or paused zone proxied records answer as DNS-only);
  DNS-only records answer with their content and TTL (TTL 1 is "auto" = 300).
- internal (the CDN and Spectrum egress addresses): every record answers with its real content,
  CNAMEs are followed through the zones.

In both, a Spectrum app's hostname answers A/AAAA with the app's edge IPs at TTL 300.

Compilation: every owner name becomes a node, a dict from query type to a precompiled `Entry`
(header words for each RD/EDNS combination, and the answer, authority and additional sections
as bytes). Names inside the sections are written uncompressed except the owner that equals the
question name, which is the pointer to offset 12, so an entry is valid for any question name:
the same entries serve an exact name, a wildcard synthesis (RFC 4592: owner = the query name),
an NXDOMAIN anywhere in a zone and a referral below a delegation. A query is answered by
`ID + header + the query's own question bytes (its letter case kept) + tail`; nothing is built
per query. Names absent from the tables are resolved (closest encloser, wildcard, NXDOMAIN,
REFUSED) once and remembered in a bounded per-view cache.

Invariants (RFC 1034/1035/2308/4592/6891):
- AA is set on every answer from inside a zone except referrals; REFUSED for names outside
  every zone; NXDOMAIN and NODATA carry the zone's SOA in the authority section, with TTL
  min(SOA TTL, SOA MINIMUM).
- A message of fewer than 12 bytes, or one with QR set (a response: answering it could loop
  between two servers), is dropped: `answer` returns None. Any other malformed message gets
  FORMERR echoing its ID. An internal error gets SERVFAIL. Otherwise there is always an answer.
- Over UDP an answer larger than 512 bytes, or than the EDNS UDP payload size the query
  advertised, is sent truncated: TC set, the question (and OPT) only.
- EDNS: a query with an OPT record gets one back (our payload size, the DO bit copied);
  versions above 0 get BADVERS.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

from resolver.wire import (
    AA,
    BADVERS,
    CLASS_ANY,
    CLASS_IN,
    FORMERR,
    NOERROR,
    NOTIMP,
    NXDOMAIN,
    QNAME_POINTER,
    QR,
    RCODE_NAMES,
    RD,
    REFUSED,
    RR,
    SERVFAIL,
    TC,
    TYPE_A,
    TYPE_AAAA,
    TYPE_ANY,
    TYPE_AXFR,
    TYPE_CNAME,
    TYPE_IXFR,
    TYPE_NS,
    TYPE_SOA,
    ParsedQuery,
    QueryFormatError,
    encode_name,
    encode_rdata,
    is_below,
    parent_name,
    parse_query,
    soa_rdata,
    type_code,
    type_name,
)

PUBLIC: Final = "public"
INTERNAL: Final = "internal"

# Proxied and Spectrum answers, and TTL 1 ("automatic"), are answered at 300 s (Cloudflare's auto).
AUTO_TTL: Final = 300
# The synthesised SOA: its own TTL and its MINIMUM (the negative-caching TTL, RFC 2308).
SOA_TTL: Final = 1800
SOA_MINIMUM: Final = 300
NS_TTL: Final = 86400
# The UDP payload size we advertise in our OPT record (DNS flag day 2020's safe value).
OUR_UDP_SIZE: Final = 1232
# Plain-DNS UDP limit (RFC 1035 4.2.1) and the floor for a smaller EDNS size (RFC 6891 6.2.5).
UDP_LIMIT: Final = 512
# CNAME hops followed inside the zones before answering with the chain so far.
MAX_CHAIN: Final = 8
# Absent names (wildcard, NXDOMAIN, REFUSED) remembered per view; the cache empties when full.
ABSENT_CACHE_SIZE: Final = 16384
# Node key for "any type the node has no entry for": NODATA, a referral, NXDOMAIN or REFUSED.
OTHER: Final = -1

# The fast path's header: one question, no other records.
_ONE_QUESTION: Final = b"\x00\x01\x00\x00\x00\x00\x00\x00"
_CLASS_IN_BYTES: Final = b"\x00\x01"

Node = dict[int, "Entry"]


@dataclass(frozen=True, slots=True)
class Entry:
    """One precompiled answer. `heads[rd | edns << 1]` are the 10 header bytes after the ID."""

    heads: tuple[bytes, bytes, bytes, bytes]
    tail: bytes
    flags: int
    rcode: int
    rcode_name: str
    answers: tuple[str, ...]


def make_entry(
    rcode: int,
    *,
    authoritative: bool,
    answer: Iterable[RR] = (),
    authority: Iterable[RR] = (),
    additional: Iterable[RR] = (),
) -> Entry:
    an, ns, ar = list(answer), list(authority), list(additional)
    flags = QR | (AA if authoritative else 0) | rcode
    counts = (1, len(an), len(ns))
    heads = (
        struct.pack("!HHHHH", flags, *counts, len(ar)),
        struct.pack("!HHHHH", flags | RD, *counts, len(ar)),
        struct.pack("!HHHHH", flags, *counts, len(ar) + 1),
        struct.pack("!HHHHH", flags | RD, *counts, len(ar) + 1),
    )
    tail = b"".join(rr.encode() for rr in (*an, *ns, *ar))
    texts = tuple(f"{type_name(rr.rtype)} {rr.text}" for rr in an)
    return Entry(heads, tail, flags, rcode, RCODE_NAMES[rcode], texts)


REFUSED_ENTRY: Final = make_entry(REFUSED, authoritative=False)
REFUSED_NODE: Final[Node] = {OTHER: REFUSED_ENTRY}


# What the server sends and records for one query, as a plain tuple (built per query, so no
# NamedTuple): (wire, rcode name, answers as text, the question name as sent in wire form with
# its letter case (b"" if unparsed), the query type (-1 if unparsed)).
Reply = tuple[bytes, str, tuple[str, ...], bytes, int]


# --------------------------------------------------------------------------- views


class View:
    """One view's compiled answers.

    `names` maps a lower-case wire name to its node. `questions` maps a whole question as bytes
    (name, type, class IN; lower-cased) straight to its entry and type: every name with the
    common types, plus the absent names met so far (bounded). Types with a byte in "A".."Z"
    are left out of `questions`, since lower-casing the key would change them."""

    __slots__ = ("_absent", "_cache", "_static", "name", "names", "questions")

    def __init__(self, name: str, names: dict[bytes, Node], absent: _Finder) -> None:
        self.name = name
        self.names = names
        self._absent = absent
        self._cache: dict[bytes, Node] = {}
        self.questions: dict[bytes, _Hit]
        static: dict[bytes, _Hit] = {}
        for owner, node in names.items():
            for qtype in {*_COMMON_TYPES, *(t for t in node if t != OTHER)}:
                key = _question_key(owner, qtype)
                static[key] = _hit(key, node.get(qtype) or node[OTHER], qtype)
        self._static = static
        self.questions = dict(static)

    def node(self, qname: bytes) -> Node:
        """The node answering `qname` (lower-case wire form): exact, wildcard, NXDOMAIN,
        referral or REFUSED."""
        node = self.names.get(qname)
        if node is not None:
            return node
        node = self._cache.get(qname)
        if node is None:
            node = self._absent.node_for_absent(qname)
            if len(self._cache) >= ABSENT_CACHE_SIZE:
                self._cache.clear()
                self.questions = dict(self._static)
            self._cache[qname] = node
        return node

    def entry(self, qname: bytes, qtype: int) -> Entry:
        node = self.node(qname)
        return node.get(qtype) or node[OTHER]

    def remember(self, question: bytes, entry: Entry, qtype: int) -> None:
        """Add an answered question (lower-cased bytes) to `questions`, within the bound."""
        if len(self.questions) < len(self._static) + ABSENT_CACHE_SIZE:
            self.questions[question] = _hit(question, entry, qtype)


_COMMON_TYPES: Final = (1, 2, 5, 6, 12, 15, 16, 28, 33, 255, 257)

# A known question: its entry and type, and the whole reply after the ID for RD clear / set
# when the question is sent in lower case (most stubs, dnsperf).
_Hit = tuple[Entry, int, bytes, bytes]


def _hit(question: bytes, entry: Entry, qtype: int) -> _Hit:
    return (entry, qtype, entry.heads[0] + question + entry.tail, entry.heads[1] + question + entry.tail)


def _question_key(owner: bytes, qtype: int) -> bytes:
    """A question's key: the lower-case owner name, then type and class bytes as sent."""
    return owner + struct.pack("!HH", qtype, CLASS_IN)


@dataclass(frozen=True, slots=True)
class Tables:
    """Both views of one snapshot, and which source addresses get the internal view."""

    generation: int
    public: View
    internal: View
    internal_sources: frozenset[str]
    problems: tuple[str, ...] = field(default=())

    def view_for(self, source_ip: str) -> View:
        return self.internal if source_ip in self.internal_sources else self.public


# --------------------------------------------------------------------------- answering


def answer(view: View, query: bytes, *, udp: bool = True) -> bytes | None:
    """The response to `query` in `view`, or None when it is dropped (see the module contract)."""
    reply = respond(view, query, udp=udp)
    return None if reply is None else reply[0]


def respond(view: View, data: bytes, *, udp: bool = True) -> Reply | None:
    """`answer` with what the server records about the exchange. Never raises."""
    try:
        if type(data) is not bytes:
            data = bytes(data)
        n = len(data)
        # Fast path: a plain query (QR 0, opcode 0, one question, nothing else), its question
        # known as a whole; then the same query shape with a name to look up.
        if n > 16 and data[4:12] == _ONE_QUESTION and not data[2] & 0xF8:
            question = data[12:]
            key = question[:-4].lower() + question[-4:]  # the name is case-insensitive, the type is not
            hit = view.questions.get(key)
            if hit is not None:
                entry, qtype, body0, body1 = hit
                if question == key:
                    wire = data[:2] + (body1 if data[2] & 1 else body0)
                    if udp and len(wire) > UDP_LIMIT:
                        wire = _truncated(data[:2], entry.flags | (RD & (data[2] << 8)), question, None)
                    return (wire, entry.rcode_name, entry.answers, question[:-4], qtype)
            else:
                i = 12
                while True:
                    length = data[i]
                    if length == 0 or length > 63:
                        break
                    i += length + 1
                    if i >= n:
                        break
                if not (i < n and data[i] == 0 and i + 5 == n and data[i + 3 : i + 5] == _CLASS_IN_BYTES and i < 268):
                    return _respond_general(view, data, udp)
                qtype = (data[i + 1] << 8) | data[i + 2]
                if qtype in (TYPE_AXFR, TYPE_IXFR):
                    return _respond_general(view, data, udp)
                entry = view.entry(key[:-4], qtype)
                view.remember(key, entry, qtype)
            wire = data[:2] + entry.heads[data[2] & 1] + question + entry.tail
            if udp and len(wire) > UDP_LIMIT:
                wire = _truncated(data[:2], entry.flags | (RD & (data[2] << 8)), question, None)
            return (wire, entry.rcode_name, entry.answers, question[:-4], qtype)
        return _respond_general(view, data, udp)
    except Exception:
        return servfail(data)


def _opt(ext_rcode: int, do: bool) -> bytes:
    ttl = (ext_rcode << 24) | (0x8000 if do else 0)
    return b"\x00" + struct.pack("!HHIH", 41, OUR_UDP_SIZE, ttl, 0)


def _truncated(ident: bytes, flags: int, question: bytes, opt: bytes | None) -> bytes:
    return (
        ident
        + struct.pack("!HHHHH", (flags | TC) & 0xFFFF, 1, 0, 0, 1 if opt is not None else 0)
        + question
        + (opt or b"")
    )


def _respond_general(view: View, data: bytes, udp: bool) -> Reply | None:
    try:
        q = parse_query(data)
    except QueryFormatError:
        return _formerr(data)
    if q is None or q.flags & QR:
        return None
    rd = q.flags & RD
    opt = _opt(0, q.do) if q.edns else None
    if q.opcode != 0:
        return _bare(q, NOTIMP, opt)
    if q.edns and q.edns_version > 0:
        return _bare(q, BADVERS & 0xF, _opt(BADVERS >> 4, q.do), rcode_name=RCODE_NAMES[BADVERS])
    if q.qclass not in (CLASS_IN, CLASS_ANY) or q.qtype in (TYPE_AXFR, TYPE_IXFR):
        entry = REFUSED_ENTRY
    else:
        entry = view.entry(q.qname, q.qtype)
    head = entry.heads[(1 if rd else 0) | (2 if opt is not None else 0)]
    wire = q.ident + head + q.question + entry.tail + (opt or b"")
    limit = q.udp_size if udp else 65535
    if len(wire) > limit:
        wire = _truncated(q.ident, entry.flags | rd, q.question, opt)
    return (wire, entry.rcode_name, entry.answers, q.question[:-4], q.qtype)


def _bare(q: ParsedQuery, rcode: int, opt: bytes | None, *, rcode_name: str | None = None) -> Reply:
    """A reply with the question (and OPT) only, e.g. NOTIMP or BADVERS."""
    flags = QR | (q.opcode << 11) | (q.flags & RD) | rcode
    wire = q.ident + struct.pack("!HHHHH", flags, 1, 0, 0, 1 if opt else 0) + q.question + (opt or b"")
    return (wire, rcode_name or RCODE_NAMES[rcode], (), q.question[:-4], q.qtype)


def _header_only(data: bytes, rcode: int) -> bytes:
    flags = (data[2] << 8) & 0x7900  # opcode and RD kept, QR set below
    return data[:2] + struct.pack("!HHHHH", QR | flags | rcode, 0, 0, 0, 0)


def _formerr(data: bytes) -> Reply | None:
    if len(data) < 12:
        return None
    return (_header_only(data, FORMERR), RCODE_NAMES[FORMERR], (), b"", -1)


def servfail(data: bytes) -> Reply | None:
    """Always an answer: an internal error is SERVFAIL, echoing the ID (and question, if sound)."""
    try:
        if len(data) < 12 or data[2] & 0x80:
            return None
        try:
            q = parse_query(data)
        except Exception:
            q = None
        if q is None:
            return (_header_only(data, SERVFAIL), RCODE_NAMES[SERVFAIL], (), b"", -1)
        return _bare(q, SERVFAIL, _opt(0, q.do) if q.edns else None)
    except Exception:
        return None


# --------------------------------------------------------------------------- compiling


class _Found(NamedTuple):
    kind: str  # "node" | "wild" | "nx" | "referral" | "refused"
    apex: bytes
    owner: bytes  # the node's owner (the wildcard owner for "wild"; the cut for "referral")


@dataclass
class _ViewData:
    """One view's records before compilation: owner -> type -> RRs (owner field unset)."""

    rrsets: dict[bytes, dict[int, list[RR]]] = field(default_factory=dict)
    apexes: set[bytes] = field(default_factory=set)
    delegations: set[bytes] = field(default_factory=set)
    existing: set[bytes] = field(default_factory=set)

    def add(self, owner: bytes, rr: RR) -> None:
        bucket = self.rrsets.setdefault(owner, {}).setdefault(rr.rtype, [])
        if all(o.rdata != rr.rdata for o in bucket):
            bucket.append(rr)


class _Finder:
    """Name lookup over one view's records; compiles nodes and remembers them by owner."""

    def __init__(self, data: _ViewData) -> None:
        self.data = data
        self.nodes: dict[bytes, Node] = {}
        self._nx: dict[bytes, Node] = {}
        self._referrals: dict[bytes, Node] = {}

    # ----------------------------------------------------------------- lookup

    def apex_of(self, name: bytes) -> bytes | None:
        w: bytes | None = name
        while w is not None:
            if w in self.data.apexes:
                return w
            w = parent_name(w)
        return None

    def find(self, name: bytes) -> _Found:
        d = self.data
        apex = self.apex_of(name)
        if apex is None:
            return _Found("refused", b"", b"")
        cut = None
        w: bytes | None = name
        while w is not None and w != apex:
            if w in d.delegations:
                cut = w  # keep climbing: the topmost delegation is the one the zone knows
            w = parent_name(w)
        if cut is not None:
            return _Found("referral", apex, cut)
        if name in d.existing:
            return _Found("node", apex, name)
        w = parent_name(name)
        while w is not None and w not in d.existing:
            w = parent_name(w)
        if w is not None:
            wild = b"\x01*" + w
            if wild in d.rrsets:
                return _Found("wild", apex, wild)
        return _Found("nx", apex, b"")

    # ----------------------------------------------------------------- entries

    def soa(self, apex: bytes, *, negative: bool) -> RR:
        rr = self.data.rrsets[apex][TYPE_SOA][0]
        ttl = min(SOA_TTL, SOA_MINIMUM) if negative else rr.ttl
        return RR(apex, TYPE_SOA, ttl, rr.rdata, rr.text)

    def nx_node(self, apex: bytes) -> Node:
        node = self._nx.get(apex)
        if node is None:
            node = {OTHER: make_entry(NXDOMAIN, authoritative=True, authority=[self.soa(apex, negative=True)])}
            self._nx[apex] = node
        return node

    def referral_node(self, cut: bytes) -> Node:
        node = self._referrals.get(cut)
        if node is None:
            d = self.data
            ns = [rr.with_owner(cut) for rr in d.rrsets[cut][TYPE_NS]]
            glue: list[RR] = []
            for rr in ns:
                target = rr.rdata
                if is_below(target, cut):
                    for t in (TYPE_A, TYPE_AAAA):
                        glue += [g.with_owner(target) for g in d.rrsets.get(target, {}).get(t, [])]
            node = {OTHER: make_entry(NOERROR, authoritative=False, authority=ns, additional=glue)}
            self._referrals[cut] = node
        return node

    def node_for(self, found: _Found) -> Node:
        if found.kind == "refused":
            return REFUSED_NODE
        if found.kind == "nx":
            return self.nx_node(found.apex)
        if found.kind == "referral":
            return self.referral_node(found.owner)
        return self.compile_node(found.owner, found.apex)

    def node_for_absent(self, name: bytes) -> Node:
        return self.node_for(self.find(name))

    def compile_node(self, owner: bytes, apex: bytes) -> Node:
        node = self.nodes.get(owner)
        if node is not None:
            return node
        rrsets = self.data.rrsets.get(owner, {})
        types = set(rrsets) | {TYPE_ANY}
        if TYPE_CNAME in rrsets:
            types |= {TYPE_A, TYPE_AAAA} | self._chain_end_types(rrsets)
        node = {t: self.compose(owner, apex, t) for t in types}
        node[OTHER] = self.compose(owner, apex, 0)  # type 0 matches nothing: NODATA (after any CNAME)
        self.nodes[owner] = node
        return node

    def _chain_end_types(self, rrsets: Mapping[int, list[RR]]) -> set[int]:
        out: set[int] = set()
        seen: set[bytes] = set()
        current = rrsets
        for _ in range(MAX_CHAIN):
            cname = current.get(TYPE_CNAME)
            if not cname:
                out |= set(current)
                break
            target = cname[0].rdata
            if target in seen:
                break
            seen.add(target)
            found = self.find(target)
            if found.kind not in ("node", "wild"):
                break
            current = self.data.rrsets.get(found.owner, {})
        return out

    def compose(self, owner: bytes, apex: bytes, qtype: int) -> Entry:
        """The answer for `qtype` at the node `owner`, the first owner written as the question."""
        d = self.data
        answer: list[RR] = []
        authority: list[RR] = []
        rcode = NOERROR
        write_as = QNAME_POINTER
        current, current_apex = d.rrsets.get(owner, {}), apex
        seen = {owner}
        for _ in range(MAX_CHAIN + 1):
            if qtype == TYPE_ANY:
                answer += [rr.with_owner(write_as) for t in sorted(current) for rr in current[t]]
                break
            rrs = current.get(qtype)
            if rrs:
                answer += [rr.with_owner(write_as) for rr in rrs]
                break
            cname = current.get(TYPE_CNAME)
            if not cname:
                authority = [self.soa(current_apex, negative=True)]
                break
            answer.append(cname[0].with_owner(write_as))
            target = cname[0].rdata
            if target in seen:
                break  # a loop: answer with the chain so far
            seen.add(target)
            found = self.find(target)
            if found.kind == "nx":
                rcode = NXDOMAIN  # RFC 6604: the RCODE is the last name's
                authority = [self.soa(found.apex, negative=True)]
                break
            if found.kind not in ("node", "wild"):
                break  # outside the zones or delegated: the CNAME is the whole answer
            write_as = target
            current, current_apex = d.rrsets.get(found.owner, {}), found.apex
        return make_entry(rcode, authoritative=True, answer=answer, authority=authority)


def _ttl(ttl: int) -> int:
    return AUTO_TTL if ttl == 1 else ttl


def _address_rrs(ips: Iterable[ipaddress.IPv4Address | ipaddress.IPv6Address]) -> list[RR]:
    out = []
    for ip in ips:
        rtype = TYPE_A if ip.version == 4 else TYPE_AAAA
        out.append(RR(b"", rtype, AUTO_TTL, ip.packed, str(ip)))
    return out


def _collect(snapshot: Any, view: str, problems: list[str]) -> _ViewData:
    config = snapshot.config
    net = config.network
    d = _ViewData()
    spectrum_hosts: Mapping[str, tuple[Any, ...]] = snapshot.spectrum_hosts
    cdn_rrs = _address_rrs(net.cdn_ips)
    # Shorter zones first, so a more specific zone's names win where two zones overlap.
    for zone in sorted(config.zones, key=lambda z: len(z.name)):
        apex = encode_name(zone.name)
        d.apexes.add(apex)
        zone_proxies = zone.status == "active" and not zone.paused
        by_name: dict[str, list[Any]] = {}
        for r in zone.dns_records:
            by_name.setdefault(r.name, []).append(r)
        for host in spectrum_hosts:
            if (host == zone.name or host.endswith("." + zone.name)) and snapshot.zone_for_host(host) is zone:
                by_name.setdefault(host, [])
        for name, records in by_name.items():
            try:
                owner = encode_name(name)
            except ValueError as e:
                problems.append(f"{zone.name}: {name}: {e}")
                continue
            spectrum_ips = spectrum_hosts.get(name)
            # A pending or paused zone's proxied records behave as DNS-only (Cloudflare).
            proxied = (
                view == PUBLIC and zone_proxies and any(r.proxied and r.type in ("A", "AAAA", "CNAME") for r in records)
            )
            for r in records:
                if r.type == "SOA":
                    continue  # the zone's SOA is synthesised
                if (spectrum_ips is not None or proxied) and r.type in ("A", "AAAA", "CNAME"):
                    continue  # answered with the Spectrum app's or the CDN's addresses below
                try:
                    rdata, text = encode_rdata(r.type, r.content, priority=r.priority, data=r.data)
                    d.add(owner, RR(b"", type_code(r.type), _ttl(r.ttl), rdata, text))
                except Exception as e:  # a record the codec refuses is left out, not fatal
                    problems.append(f"{zone.name}: {name} {r.type} {r.content!r}: {e}")
                    d.rrsets.setdefault(owner, {})  # its name still exists: NODATA, not NXDOMAIN
            if spectrum_ips is not None:
                for rr in _address_rrs(spectrum_ips):
                    d.add(owner, rr)
            elif proxied:
                for rr in cdn_rrs:
                    d.add(owner, rr)
        # The synthesised SOA, and NS ns1/ns2.<zone> (with addresses) when the apex has none.
        soa, soa_text = soa_rdata(zone.name, snapshot.generation, SOA_MINIMUM)
        d.add(apex, RR(b"", TYPE_SOA, SOA_TTL, soa, soa_text))
        if TYPE_NS not in d.rrsets.get(apex, {}):
            for label in ("ns1", "ns2"):
                host = f"{label}.{zone.name}"
                d.add(apex, RR(b"", TYPE_NS, NS_TTL, encode_name(host), host + "."))
                ns_owner = encode_name(host)
                if ns_owner not in d.rrsets and net.resolver is not None:
                    d.add(ns_owner, _address_rrs([net.resolver])[0])
        for owner in list(d.rrsets):
            if owner != apex and is_below(owner, apex) and TYPE_NS in d.rrsets[owner]:
                d.delegations.add(owner)
    # Every owner exists, and so does every name between it and its apex (empty non-terminals).
    for owner in d.rrsets:
        w: bytes | None = owner
        while w is not None and w not in d.existing:
            d.existing.add(w)
            if w in d.apexes:
                break
            w = parent_name(w)
    return d


def _apex_flatten(d: _ViewData, finder: _Finder) -> None:
    """A CNAME at a zone apex is always flattened (Cloudflare): answered as the A/AAAA at the end
    of its chain, when that end is inside the zones; otherwise the CNAME stays."""
    for apex in d.apexes:
        rrsets = d.rrsets.get(apex, {})
        cname = rrsets.get(TYPE_CNAME)
        if not cname:
            continue
        target: Mapping[int, list[RR]] = {}
        seen = {apex}
        name = cname[0].rdata
        for _ in range(MAX_CHAIN):
            if name in seen:
                break
            seen.add(name)
            found = finder.find(name)
            if found.kind not in ("node", "wild"):
                break
            target = d.rrsets.get(found.owner, {})
            if TYPE_CNAME not in target:
                break
            name = target[TYPE_CNAME][0].rdata
        addresses = [rr for t in (TYPE_A, TYPE_AAAA) for rr in target.get(t, [])]
        if addresses and TYPE_CNAME not in target:
            del rrsets[TYPE_CNAME]
            for rr in addresses:
                d.add(apex, rr)


def _compile_view(snapshot: Any, view: str, problems: list[str]) -> View:
    d = _collect(snapshot, view, problems)
    finder = _Finder(d)
    _apex_flatten(d, finder)
    finder.nodes.clear()
    names: dict[bytes, Node] = {}
    for owner in d.existing:
        names[owner] = finder.node_for(finder.find(owner))
    return View(view, names, finder)


def build_tables(snapshot: Any) -> Tables:
    """Compile a snapshot (`edge.store.Snapshot`); use through `snapshot.derived(TABLES_KEY, build_tables)`."""
    problems: list[str] = []
    net = snapshot.config.network
    return Tables(
        generation=snapshot.generation,
        public=_compile_view(snapshot, PUBLIC, problems),
        internal=_compile_view(snapshot, INTERNAL, problems),
        internal_sources=frozenset({str(net.cdn_egress_ip), str(net.spectrum_egress_ip)}),
        problems=tuple(dict.fromkeys(problems)),
    )


TABLES_KEY: Final = "resolver.tables"


def tables_for(snapshot: Any) -> Tables:
    """The snapshot's compiled tables (built on first use, once per snapshot)."""
    tables: Tables = snapshot.derived(TABLES_KEY, build_tables)
    return tables
