"""certs.issue, the pure half: CA and leaf fields, names, RFC 6125 matching, renewal, decoding."""

from __future__ import annotations

import datetime
import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certs.issue import (
    BACKDATE,
    CertError,
    CertificateAuthority,
    covers,
    create_ca,
    decode_ca,
    decode_issued,
    issue,
    needs_renewal,
    normalize_name,
    zone_certificate_names,
)

NOW = datetime.datetime(2026, 12, 4, 12, 0, tzinfo=datetime.UTC)
DAY = datetime.timedelta(days=1)


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return create_ca(NOW)


# ----------------------------------------------------------------------------- the CA


def test_create_ca_is_a_pathlen_0_ca_with_ski(ca: CertificateAuthority) -> None:
    bc = ca.cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca is True and bc.value.path_length == 0
    ku = ca.cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign and not ku.value.digital_signature
    ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(ca.key.public_key())
    assert ca.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "edge local CA"
    assert ca.cert.issuer == ca.cert.subject
    ca.cert.verify_directly_issued_by(ca.cert)  # self-signed by its own key


def test_create_ca_validity_is_ten_years_from_now_backdated(ca: CertificateAuthority) -> None:
    assert ca.cert.not_valid_before_utc == NOW - BACKDATE
    assert ca.cert.not_valid_after_utc == NOW + 3650 * DAY


def test_create_ca_common_name_and_naive_now() -> None:
    named = create_ca(NOW, common_name="my CA")
    assert named.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "my CA"
    with pytest.raises(ValueError, match="timezone-aware"):
        create_ca(datetime.datetime(2026, 1, 1))


def test_ca_pem_round_trips(ca: CertificateAuthority) -> None:
    again = decode_ca(ca.cert_pem(), ca.key_pem())
    assert again.cert == ca.cert
    assert again.key.private_numbers() == ca.key.private_numbers()


# ----------------------------------------------------------------------------- issuance


def test_issue_sans_eku_aki_and_validity(ca: CertificateAuthority) -> None:
    ip = ipaddress.ip_address("127.0.30.1")
    leaf = issue(ca, ["Example.COM.", "*.example.com", "example.com"], NOW, days=90, ips=[ip, ip])
    san = leaf.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.value.get_values_for_type(x509.DNSName) == ["example.com", "*.example.com"]
    assert san.value.get_values_for_type(x509.IPAddress) == [ip]
    assert not san.critical
    assert leaf.names == ("example.com", "*.example.com") and leaf.ips == (ip,)
    eku = leaf.cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    ku = leaf.cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature and not ku.key_cert_sign
    assert leaf.cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    aki = leaf.cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert leaf.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "example.com"
    assert leaf.cert.issuer == ca.cert.subject
    leaf.cert.verify_directly_issued_by(ca.cert)
    assert leaf.cert.not_valid_before_utc == NOW - datetime.timedelta(hours=1)
    assert leaf.cert.not_valid_after_utc == leaf.not_after == NOW + 90 * DAY


def test_issue_pems(ca: CertificateAuthority) -> None:
    leaf = issue(ca, ["example.com"], NOW)
    chain = x509.load_pem_x509_certificates(leaf.chain_pem())
    assert chain == [leaf.cert, ca.cert]
    assert leaf.cert_pem() == leaf.cert.public_bytes(serialization.Encoding.PEM)
    key = serialization.load_pem_private_key(leaf.key_pem(), password=None)
    assert key.public_key() == leaf.cert.public_key()


def test_issue_ip_only_and_long_first_name(ca: CertificateAuthority) -> None:
    ip_only = issue(ca, [], NOW, ips=[ipaddress.ip_address("::1")])
    assert ip_only.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "::1"
    long_name = ".".join(["a" * 40, "b" * 40, "example.com"])
    leaf = issue(ca, [long_name], NOW)
    assert len(leaf.cert.subject) == 0  # a CN is at most 64 characters; the SAN carries the name
    assert leaf.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).critical


def test_issue_is_capped_at_the_ca_expiry_and_refuses_an_expired_ca(ca: CertificateAuthority) -> None:
    late = NOW + 3600 * DAY
    leaf = issue(ca, ["example.com"], late, days=5 * 365)
    assert leaf.not_after == ca.cert.not_valid_after_utc
    with pytest.raises(CertError, match="expired"):
        issue(ca, ["example.com"], NOW + 3651 * DAY)


def test_issue_refuses_nothing_to_certify_and_bad_days(ca: CertificateAuthority) -> None:
    with pytest.raises(CertError, match="at least one"):
        issue(ca, [], NOW)
    with pytest.raises(ValueError, match="days"):
        issue(ca, ["example.com"], NOW, days=0)


@pytest.mark.parametrize(
    "name",
    [
        "",
        ".",
        "a..example.com",
        "-a.example.com",
        "a-.example.com",
        "a_b.example.com",
        "exa mple.com",
        "a/b.example.com",
        "x" * 64 + ".example.com",
        ("a" * 60 + ".") * 5 + "com",  # longer than 253
        "w*.example.com",
        "a.*.example.com",
        "*.*.example.com",
        "*.com",
        "*",
        "127.0.0.1",
        "::1",
    ],
)
def test_bad_names_are_refused(ca: CertificateAuthority, name: str) -> None:
    with pytest.raises(CertError):
        issue(ca, [name], NOW)


def test_ip_address_given_as_name_points_at_ips() -> None:
    with pytest.raises(CertError, match="IP SAN"):
        normalize_name("127.0.0.1")


def test_names_are_normalized() -> None:
    assert normalize_name(" WWW.Example.com. ") == "www.example.com"
    assert normalize_name("bücher.example") == "xn--bcher-kva.example"
    assert normalize_name("*.Bücher.example") == "*.xn--bcher-kva.example"


# ----------------------------------------------------------------------------- zone names


def test_zone_certificate_names_is_universal_ssl_coverage() -> None:
    assert zone_certificate_names("example.com") == ("example.com", "*.example.com")
    assert zone_certificate_names("Example.COM.") == ("example.com", "*.example.com")


def test_zone_certificate_names_adds_extras_once() -> None:
    names = zone_certificate_names("example.com", ["*.dev.example.com", "*.example.com", "DEEP.a.b.example.com"])
    assert names == ("example.com", "*.example.com", "*.dev.example.com", "deep.a.b.example.com")


def test_extras_not_under_the_zone_are_all_reported() -> None:
    with pytest.raises(CertError) as err:
        zone_certificate_names(
            "example.com", ["*.dev.example.org", "notexample.com", "ok.example.com", "a.*.example.com"]
        )
    message = str(err.value)
    assert "'*.dev.example.org' is not a name under the zone example.com" in message
    assert "'notexample.com' is not a name under the zone example.com" in message
    assert "wildcard" in message
    assert "ok.example.com" not in message


def test_zone_must_be_a_plain_name() -> None:
    with pytest.raises(CertError):
        zone_certificate_names("*.example.com")
    with pytest.raises(CertError):
        zone_certificate_names("exa mple.com")


# ----------------------------------------------------------------------------- covers

UNIVERSAL = ["example.com", "*.example.com"]
ADVANCED = [*UNIVERSAL, "*.dev.example.com", "api.v1.example.com"]


@pytest.mark.parametrize(
    ("names", "host", "expected"),
    [
        (UNIVERSAL, "example.com", True),  # apex
        (UNIVERSAL, "www.example.com", True),  # one-label wildcard
        (UNIVERSAL, "a.b.example.com", False),  # two labels: no
        (UNIVERSAL, "WWW.Example.COM", True),  # case-insensitive
        (UNIVERSAL, "www.example.com.", True),  # trailing dot
        (["*.example.com"], "example.com", False),  # the wildcard does not cover the apex
        (UNIVERSAL, "example.org", False),
        (UNIVERSAL, "badexample.com", False),
        (UNIVERSAL, "www.badexample.com", False),
        (UNIVERSAL, "*.example.com", False),  # a hostname is never a wildcard
        (UNIVERSAL, "", False),
        (UNIVERSAL, "127.0.0.1", False),
        (ADVANCED, "x.dev.example.com", True),  # extra deeper wildcard
        (ADVANCED, "y.x.dev.example.com", False),
        (ADVANCED, "dev.example.com", True),  # via *.example.com
        (ADVANCED, "api.v1.example.com", True),  # extra deeper exact name
        (ADVANCED, "web.v1.example.com", False),
        (["*.EXAMPLE.com."], "a.example.com", True),  # names are normalized too
        ([], "example.com", False),
    ],
)
def test_covers(names: list[str], host: str, expected: bool) -> None:
    assert covers(names, host) is expected


# ----------------------------------------------------------------------------- renewal


def test_needs_renewal_within_the_margin(ca: CertificateAuthority) -> None:
    leaf = issue(ca, ["example.com"], NOW, days=90)
    assert not needs_renewal(leaf, NOW)
    assert not needs_renewal(leaf, NOW + 59 * DAY)
    assert needs_renewal(leaf, NOW + 60 * DAY)  # exactly 30 days left
    assert needs_renewal(leaf, NOW + 100 * DAY)  # expired
    assert not needs_renewal(leaf, NOW + 80 * DAY, margin=5 * DAY)
    assert needs_renewal(leaf, NOW + 86 * DAY, margin=5 * DAY)


def test_needs_renewal_when_not_yet_valid(ca: CertificateAuthority) -> None:
    leaf = issue(ca, ["example.com"], NOW)
    assert needs_renewal(leaf, NOW - 2 * DAY)


# ----------------------------------------------------------------------------- decoding


def test_decode_issued_round_trips(ca: CertificateAuthority) -> None:
    leaf = issue(ca, ["example.com", "*.example.com"], NOW, ips=[ipaddress.ip_address("127.0.0.1")])
    again = decode_issued(leaf.chain_pem(), leaf.key_pem())
    assert (again.cert, again.names, again.ips, again.not_after, again.ca_cert) == (
        leaf.cert,
        leaf.names,
        leaf.ips,
        leaf.not_after,
        ca.cert,
    )


def test_decode_refuses_mismatched_or_foreign_material(ca: CertificateAuthority) -> None:
    leaf = issue(ca, ["example.com"], NOW)
    other = issue(ca, ["example.com"], NOW)
    with pytest.raises(CertError, match="does not belong"):
        decode_issued(leaf.chain_pem(), other.key_pem())
    with pytest.raises(CertError, match="leaf \\+ CA"):
        decode_issued(leaf.cert_pem(), leaf.key_pem())
    stranger = create_ca(NOW)
    with pytest.raises(CertError, match="not issued by"):
        decode_issued(leaf.cert_pem() + stranger.cert_pem(), leaf.key_pem())
    with pytest.raises(CertError, match="does not belong"):
        decode_ca(ca.cert_pem(), stranger.key_pem())
    with pytest.raises(CertError, match="not a CA"):
        decode_ca(leaf.cert_pem(), leaf.key_pem())
    with pytest.raises(CertError, match="PEM"):
        decode_ca(b"garbage", ca.key_pem())
    with pytest.raises(CertError, match="private key"):
        decode_ca(ca.cert_pem(), b"garbage")
