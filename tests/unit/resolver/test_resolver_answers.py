"""Golden wire messages for every answer kind: the expected bytes are built independently and
compared exactly (ID patched, question echoed as sent)."""

from __future__ import annotations

import struct

import dnslib
import pytest
from dns_golden import (
    GENERATION,
    PTR,
    ZONE_CONFIG,
    a,
    compile_snapshot,
    header,
    opt,
    query,
    question,
    rr,
    soa_rdata,
    wname,
)

from edge.store import Snapshot
from resolver.answers import Tables, answer, build_tables, respond, tables_for

A, NS, CNAME, SOA, MX, TXT, AAAA, SRV, CAA, ANY, HTTPS = 1, 2, 5, 6, 15, 16, 28, 33, 257, 255, 65
QR_AA_RD = 0x8500
QR_RD = 0x8100


def ask(tables: Tables, view: str, name: str, qtype: int, **kw: object) -> bytes:
    out = answer(getattr(tables, view), query(name, qtype, **kw))  # type: ignore[arg-type]
    assert out is not None
    return out


# --------------------------------------------------------------------------- views


def test_public_proxied_a_answers_cdn_ips_at_ttl_300(tables: Tables) -> None:
    expected = (
        header(0x1234, QR_AA_RD, an=2)
        + question("www.example.com", A)
        + rr(PTR, A, 300, a("127.0.10.1"))
        + rr(PTR, A, 300, a("127.0.10.2"))
    )
    assert ask(tables, "public", "www.example.com", A) == expected


def test_public_proxied_name_answers_aaaa_with_cdn_v6(tables: Tables) -> None:
    expected = (
        header(0x1234, QR_AA_RD, an=1) + question("www.example.com", AAAA) + rr(PTR, AAAA, 300, a("2001:db8:cf::1"))
    )
    assert ask(tables, "public", "www.example.com", AAAA) == expected


def test_internal_proxied_a_answers_real_content_ttl_auto(tables: Tables) -> None:
    expected = header(0x1234, QR_AA_RD, an=1) + question("www.example.com", A) + rr(PTR, A, 300, a("192.0.2.1"))
    assert ask(tables, "internal", "www.example.com", A) == expected


def test_unproxied_a_keeps_its_ttl_in_both_views(tables: Tables) -> None:
    expected = header(0x1234, QR_AA_RD, an=1) + question("origin.example.com", A) + rr(PTR, A, 120, a("192.0.2.10"))
    assert ask(tables, "public", "origin.example.com", A) == expected
    assert ask(tables, "internal", "origin.example.com", A) == expected


def test_proxied_cname_is_flattened_publicly_and_followed_internally(tables: Tables) -> None:
    public = (
        header(0x1234, QR_AA_RD, an=2)
        + question("palias.example.com", A)
        + rr(PTR, A, 300, a("127.0.10.1"))
        + rr(PTR, A, 300, a("127.0.10.2"))
    )
    assert ask(tables, "public", "palias.example.com", A) == public
    internal = (
        header(0x1234, QR_AA_RD, an=2)
        + question("palias.example.com", A)
        + rr(PTR, CNAME, 300, wname("origin.example.com"))
        + rr(wname("origin.example.com"), A, 120, a("192.0.2.10"))
    )
    assert ask(tables, "internal", "palias.example.com", A) == internal


def test_spectrum_hostname_answers_app_ip_in_both_views(tables: Tables, snapshot: Snapshot) -> None:
    (ip,) = snapshot.spectrum_hosts["ssh.example.com"]
    expected = header(0x1234, QR_AA_RD, an=1) + question("ssh.example.com", A) + rr(PTR, A, 300, ip.packed)
    assert ask(tables, "public", "ssh.example.com", A) == expected
    assert ask(tables, "internal", "ssh.example.com", A) == expected


def test_view_for_source_address(tables: Tables) -> None:
    assert tables.view_for("127.0.10.254") is tables.internal
    assert tables.view_for("127.0.20.254") is tables.internal
    assert tables.view_for("127.0.0.1") is tables.public


def test_tables_are_compiled_once_per_snapshot() -> None:
    snap = compile_snapshot()
    assert tables_for(snap) is tables_for(snap)
    assert tables_for(compile_snapshot()) is not tables_for(snap)


# --------------------------------------------------------------------------- record types


def test_cname_chain_answered_with_the_chain(tables: Tables) -> None:
    expected = (
        header(0x1234, QR_AA_RD, an=2)
        + question("alias.example.com", A)
        + rr(PTR, CNAME, 600, wname("origin.example.com"))
        + rr(wname("origin.example.com"), A, 120, a("192.0.2.10"))
    )
    assert ask(tables, "public", "alias.example.com", A) == expected


def test_cname_query_type_answers_the_cname_only(tables: Tables) -> None:
    expected = (
        header(0x1234, QR_AA_RD, an=1)
        + question("alias.example.com", CNAME)
        + rr(PTR, CNAME, 600, wname("origin.example.com"))
    )
    assert ask(tables, "public", "alias.example.com", CNAME) == expected


def test_cname_to_a_missing_name_is_nxdomain_with_the_chain(tables: Tables) -> None:
    expected = (
        header(0x1234, 0x8503, an=1, ns=1)
        + question("dangling.example.com", A)
        + rr(PTR, CNAME, 300, wname("gone.example.com"))
        + rr(wname("example.com"), SOA, 300, soa_rdata("example.com"))
    )
    assert ask(tables, "public", "dangling.example.com", A) == expected


def test_cname_out_of_the_zones_is_the_whole_answer(tables: Tables) -> None:
    expected = (
        header(0x1234, QR_AA_RD, an=1)
        + question("outside.example.com", A)
        + rr(PTR, CNAME, 300, wname("elsewhere.example.net"))
    )
    assert ask(tables, "public", "outside.example.com", A) == expected


def test_txt(tables: Tables) -> None:
    expected = header(0x1234, QR_AA_RD, an=1) + question("example.com", TXT) + rr(PTR, TXT, 300, b"\x0bv=spf1 -all")
    assert ask(tables, "public", "example.com", TXT) == expected


def test_mx(tables: Tables) -> None:
    rdata = struct.pack("!H", 10) + wname("mail.example.com")
    expected = header(0x1234, QR_AA_RD, an=1) + question("example.com", MX) + rr(PTR, MX, 300, rdata)
    assert ask(tables, "public", "example.com", MX) == expected


def test_srv(tables: Tables) -> None:
    rdata = struct.pack("!HHH", 10, 5, 5060) + wname("sip.example.com")
    expected = header(0x1234, QR_AA_RD, an=1) + question("_sip._tcp.example.com", SRV) + rr(PTR, SRV, 300, rdata)
    assert ask(tables, "public", "_sip._tcp.example.com", SRV) == expected


def test_caa(tables: Tables) -> None:
    rdata = b"\x00\x05issueletsencrypt.org"
    expected = header(0x1234, QR_AA_RD, an=1) + question("example.com", CAA) + rr(PTR, CAA, 300, rdata)
    assert ask(tables, "public", "example.com", CAA) == expected


def test_aaaa(tables: Tables) -> None:
    expected = header(0x1234, QR_AA_RD, an=1) + question("v6.example.com", AAAA) + rr(PTR, AAAA, 300, a("2001:db8::1"))
    assert ask(tables, "public", "v6.example.com", AAAA) == expected


def test_soa_is_synthesised_with_the_generation_as_serial(tables: Tables) -> None:
    expected = (
        header(0x1234, QR_AA_RD, an=1) + question("example.com", SOA) + rr(PTR, SOA, 1800, soa_rdata("example.com"))
    )
    assert ask(tables, "public", "example.com", SOA) == expected


def test_apex_ns_synthesised_with_addresses(tables: Tables) -> None:
    expected = (
        header(0x1234, QR_AA_RD, an=2)
        + question("example.com", NS)
        + rr(PTR, NS, 86400, wname("ns1.example.com"))
        + rr(PTR, NS, 86400, wname("ns2.example.com"))
    )
    assert ask(tables, "public", "example.com", NS) == expected
    ns1 = header(0x1234, QR_AA_RD, an=1) + question("ns1.example.com", A) + rr(PTR, A, 300, a("127.0.0.2"))
    assert ask(tables, "public", "ns1.example.com", A) == ns1


def test_any_answers_every_rrset_at_the_name(tables: Tables) -> None:
    msg = dnslib.DNSRecord.parse(ask(tables, "public", "example.com", ANY))
    assert {dnslib.QTYPE[r.rtype] for r in msg.rr} == {"NS", "SOA", "MX", "TXT", "CAA"}


def test_uncommon_type_falls_back_to_the_general_path(tables: Tables) -> None:
    # HTTPS (65 = "A" in ASCII) cannot sit in the lower-cased question table: same answer anyway.
    expected = (
        header(0x1234, QR_AA_RD, ns=1)
        + question("origin.example.com", HTTPS)
        + rr(wname("example.com"), SOA, 300, soa_rdata("example.com"))
    )
    assert ask(tables, "public", "origin.example.com", HTTPS) == expected


# --------------------------------------------------------------------------- negative answers


def test_nxdomain_with_soa(tables: Tables) -> None:
    expected = (
        header(0x1234, 0x8503, ns=1)
        + question("nope.example.com", A)
        + rr(wname("example.com"), SOA, 300, soa_rdata("example.com"))
    )
    assert ask(tables, "public", "nope.example.com", A) == expected
    # Answered again from the absent-name cache: identical.
    assert ask(tables, "public", "nope.example.com", A) == expected


def test_nodata_with_soa(tables: Tables) -> None:
    expected = (
        header(0x1234, QR_AA_RD, ns=1)
        + question("origin.example.com", AAAA)
        + rr(wname("example.com"), SOA, 300, soa_rdata("example.com"))
    )
    assert ask(tables, "public", "origin.example.com", AAAA) == expected


def test_empty_non_terminal_is_nodata_not_nxdomain(tables: Tables) -> None:
    msg = dnslib.DNSRecord.parse(ask(tables, "public", "a.b.example.com", A))
    assert msg.header.rcode == 0 and not msg.rr and len(msg.auth) == 1


def test_refused_outside_every_zone(tables: Tables) -> None:
    expected = header(0x1234, 0x8105) + question("example.org", A)
    assert ask(tables, "public", "example.org", A) == expected


def test_refused_for_other_classes_and_zone_transfers(tables: Tables) -> None:
    chaos = struct.pack("!HHHHHH", 9, 0, 1, 0, 0, 0) + question("example.com", TXT, qclass=3)
    assert answer(tables.public, chaos) == header(9, 0x8005) + question("example.com", TXT, qclass=3)
    axfr = answer(tables.public, query("example.com", 252, ident=9, rd=False))
    assert axfr == header(9, 0x8005) + question("example.com", 252)


# --------------------------------------------------------------------------- wildcards (RFC 4592)


def test_wildcard_synthesises_the_query_name_with_its_case(tables: Tables) -> None:
    expected = header(0x1234, QR_AA_RD, an=1) + question("Foo.WILD.example.com", A) + rr(PTR, A, 300, a("192.0.2.50"))
    assert ask(tables, "public", "Foo.WILD.example.com", A) == expected


def test_wildcard_nodata_and_other_types(tables: Tables) -> None:
    txt = dnslib.DNSRecord.parse(ask(tables, "public", "x.wild.example.com", TXT))
    assert [str(r.rname) for r in txt.rr] == ["x.wild.example.com."]
    nodata = dnslib.DNSRecord.parse(ask(tables, "public", "x.wild.example.com", AAAA))
    assert nodata.header.rcode == 0 and not nodata.rr and nodata.auth[0].rtype == SOA


def test_wildcard_does_not_cover_its_closest_encloser_or_deeper_existing_names(tables: Tables) -> None:
    # wild.example.com exists (an empty non-terminal): NODATA, not the wildcard.
    enc = dnslib.DNSRecord.parse(ask(tables, "public", "wild.example.com", A))
    assert enc.header.rcode == 0 and not enc.rr
    # Two labels below: the closest encloser is wild.example.com, so the wildcard applies.
    deep = dnslib.DNSRecord.parse(ask(tables, "public", "a.b.wild.example.com", A))
    assert [str(r.rdata) for r in deep.rr] == ["192.0.2.50"]
    # Under an existing name with no wildcard of its own: NXDOMAIN.
    nx = dnslib.DNSRecord.parse(ask(tables, "public", "x.origin.example.com", A))
    assert nx.header.rcode == 3


def test_referral_below_a_delegation_is_not_authoritative(tables: Tables) -> None:
    expected = (
        header(0x1234, QR_RD, ns=1, ar=1)
        + question("host.sub.example.com", A)
        + rr(wname("sub.example.com"), NS, 3600, wname("ns.sub.example.com"))
        + rr(wname("ns.sub.example.com"), A, 3600, a("192.0.2.53"))
    )
    assert ask(tables, "public", "host.sub.example.com", A) == expected


# --------------------------------------------------------------------------- EDNS, truncation, errors


def test_edns_opt_echoed_with_our_size_and_do_bit(tables: Tables) -> None:
    expected = (
        header(0x1234, QR_AA_RD, an=1, ar=1)
        + question("origin.example.com", A)
        + rr(PTR, A, 120, a("192.0.2.10"))
        + opt(1232, do=True)
    )
    assert ask(tables, "public", "origin.example.com", A, edns=4096, do=True) == expected


def test_edns_version_above_zero_is_badvers(tables: Tables) -> None:
    expected = header(0x1234, 0x8100, ar=1) + question("origin.example.com", A) + opt(1232, ext_rcode=1)
    assert ask(tables, "public", "origin.example.com", A, edns=4096, version=1) == expected


def test_udp_truncation_beyond_512_without_edns(tables: Tables) -> None:
    expected = header(0x1234, QR_AA_RD | 0x0200) + question("many.example.com", A)
    assert ask(tables, "public", "many.example.com", A) == expected


def test_udp_truncation_honours_the_edns_size(tables: Tables) -> None:
    small = ask(tables, "public", "many.example.com", A, edns=600)
    assert small == header(0x1234, QR_AA_RD | 0x0200, ar=1) + question("many.example.com", A) + opt(1232)
    big = dnslib.DNSRecord.parse(ask(tables, "public", "many.example.com", A, edns=4096))
    assert len(big.rr) == 40 and not big.header.tc


def test_tcp_is_never_truncated(tables: Tables) -> None:
    out = answer(tables.public, query("many.example.com", A), udp=False)
    assert out is not None
    msg = dnslib.DNSRecord.parse(out)
    assert len(msg.rr) == 40 and not msg.header.tc


def test_formerr_echoes_the_id(tables: Tables) -> None:
    two_questions = struct.pack("!HHHHHH", 0xBEEF, 0x0100, 2, 0, 0, 0) + question("a.example.com", A)
    assert answer(tables.public, two_questions) == header(0xBEEF, 0x8101, qd=0)
    truncated_name = struct.pack("!HHHHHH", 0xBEEF, 0, 1, 0, 0, 0) + b"\x07exam"
    assert answer(tables.public, truncated_name) == header(0xBEEF, 0x8001, qd=0)


def test_short_garbage_and_responses_are_dropped(tables: Tables) -> None:
    assert answer(tables.public, b"\x01\x02\x03") is None
    assert answer(tables.public, b"") is None
    as_response = bytearray(query("www.example.com", A))
    as_response[2] |= 0x80
    assert answer(tables.public, bytes(as_response)) is None


def test_other_opcodes_are_notimp(tables: Tables) -> None:
    notify = bytearray(query("example.com", SOA, rd=False))
    notify[2] |= 4 << 3
    assert answer(tables.public, bytes(notify)) == header(0x1234, 0x8000 | (4 << 11) | 4) + question("example.com", SOA)


def test_respond_reports_what_the_record_needs(tables: Tables) -> None:
    reply = respond(tables.public, query("WWW.example.com", A))
    assert reply is not None
    _wire, rcode, answers, qname, qtype = reply
    assert (rcode, answers, qname, qtype) == ("NOERROR", ("A 127.0.10.1", "A 127.0.10.2"), wname("WWW.example.com"), A)
    nx = respond(tables.public, query("nope.example.com", A))
    assert nx is not None and nx[1] == "NXDOMAIN"


def test_every_answer_parses_with_dnslib(tables: Tables) -> None:
    for name in ("www", "origin", "alias", "palias", "ssh", "_sip._tcp", "x.wild", "nope", "many", "host.sub"):
        for qtype in (A, AAAA, TXT, MX, SRV, CAA, NS, SOA, CNAME, ANY):
            for view in ("public", "internal"):
                for edns in (None, 1232):
                    wire = ask(tables, view, f"{name}.example.com", qtype, edns=edns)
                    msg = dnslib.DNSRecord.parse(wire)
                    assert msg.header.id == 0x1234 and msg.header.qr


@pytest.mark.parametrize("generation", [1, 2**32 + 5])
def test_serial_follows_the_generation(generation: int) -> None:
    tables = build_tables(compile_snapshot(generation=generation))
    msg = dnslib.DNSRecord.parse(ask(tables, "public", "example.com", SOA))
    assert msg.rr[0].rdata.times[0] == generation % 2**32


def test_default_zone_matches_the_readme() -> None:
    from edge.config import default_config
    from edge.store import build_snapshot

    tables = build_tables(build_snapshot(default_config(), 1, 0))
    pub = dnslib.DNSRecord.parse(ask(tables, "public", "www.example.com", A))
    assert sorted(str(r.rdata) for r in pub.rr) == ["127.0.10.1", "127.0.10.2"]
    internal = dnslib.DNSRecord.parse(ask(tables, "internal", "www.example.com", A))
    assert [str(r.rdata) for r in internal.rr] == ["127.0.30.1"]
    assert GENERATION  # the golden zone's serial is fixed separately


@pytest.mark.parametrize("change", [{"status": "pending"}, {"paused": True}])
def test_pending_or_paused_zone_answers_proxied_records_as_dns_only(change: dict[str, object]) -> None:
    config = {**ZONE_CONFIG, "zones": [{**ZONE_CONFIG["zones"][0], **change}]}
    tables = build_tables(compile_snapshot(config))
    msg = dnslib.DNSRecord.parse(ask(tables, "public", "www.example.com", A))
    assert [str(r.rdata) for r in msg.rr] == ["192.0.2.1"]


def test_query_types_that_differ_only_by_case_bits_are_not_confused() -> None:
    """TYPE97 (0x0061) is HTTPS (0x0041) with the ASCII case bit set: caching a TYPE97 answer
    must not change the HTTPS answer (the name is case-insensitive, the type is not)."""
    import copy

    cfg = copy.deepcopy(ZONE_CONFIG)
    cfg["zones"][0]["dns_records"].append({"name": "svc", "type": "HTTPS", "content": "1 . alpn=h2", "ttl": 300})
    tables = build_tables(compile_snapshot(cfg))

    def ask(qtype: int) -> dnslib.DNSRecord:
        return dnslib.DNSRecord.parse(answer(tables.public, query("svc.example.com", qtype)))

    first = ask(65)
    assert [r.rtype for r in first.rr] == [65]
    assert ask(97).rr == []
    assert [r.rtype for r in ask(65).rr] == [65]
    mixed = dnslib.DNSRecord.parse(answer(tables.public, query("SVC.Example.COM", 65)))
    assert [r.rtype for r in mixed.rr] == [65]


def test_https_svcb_and_tlsa_as_cloudflare_and_the_sdk_write_them() -> None:
    """HTTPS content with quoted SvcParams (Cloudflare's form) and records given as `data` (the
    SDK's form) are answered; a name whose only record cannot be encoded is NODATA, never NXDOMAIN."""
    import copy

    cfg = copy.deepcopy(ZONE_CONFIG)
    cfg["zones"][0]["dns_records"] += [
        {"name": "h1", "type": "HTTPS", "content": '1 . alpn="h3,h2"', "ttl": 300},
        {"name": "h2", "type": "HTTPS", "data": {"priority": 1, "target": ".", "value": 'alpn="h3,h2"'}, "ttl": 300},
        {"name": "s1", "type": "SVCB", "data": {"priority": 1, "target": ".", "value": "alpn=h2"}, "ttl": 300},
        {"name": "t1", "type": "TLSA", "data": {"usage": 3, "selector": 1, "matching_type": 1,
                                                "certificate": "abcdef0123"}, "ttl": 300},
    ]
    tables = build_tables(compile_snapshot(cfg))
    assert tables.problems == ()

    def ask(name: str, qtype: int) -> dnslib.DNSRecord:
        return dnslib.DNSRecord.parse(answer(tables.public, query(name, qtype)))

    for name in ("h1", "h2"):
        reply = ask(f"{name}.example.com", 65)
        assert [str(r.rdata) for r in reply.rr] == ["1 . alpn=h3,h2"], reply
    svcb = ask("s1.example.com", 64)
    assert [r.rtype for r in svcb.rr] == [64] and svcb.rr[0].rdata.data == bytes.fromhex("00010000010003026832")
    tlsa = ask("t1.example.com", 52)
    assert [str(r.rdata) for r in tlsa.rr] == ["3 1 1 ABCDEF0123"]


def test_a_record_the_resolver_cannot_encode_leaves_its_name_nodata() -> None:
    import copy

    from edge.config import build_config
    from edge.store import build_snapshot
    from resolver.wire import encode_rdata

    with pytest.raises(ValueError, match="cannot be read"):
        encode_rdata("HTTPS", "nonsense here")
    cfg = copy.deepcopy(ZONE_CONFIG)
    cfg["zones"][0]["dns_records"].append({"name": "bad", "type": "HTTPS", "content": "1 . alpn=h2", "ttl": 300})
    config = build_config(cfg)
    # A record validation would now refuse (one stored by an older version): its content broken.
    zone = config.zones[0]
    broken = zone.dns_records[-1].model_copy(update={"content": "nonsense here"})
    zone = zone.model_copy(update={"dns_records": (*zone.dns_records[:-1], broken)})
    config = config.model_copy(update={"zones": (zone,)})
    tables = build_tables(build_snapshot(config, GENERATION, 0))
    assert tables.problems and "nonsense here" in tables.problems[0]
    reply = dnslib.DNSRecord.parse(answer(tables.public, query("bad.example.com", 65)))
    assert reply.header.rcode == 0 and reply.rr == [] and len(reply.auth) == 1  # NODATA with the SOA
