"""The local CA: issuance (pure) and its files (modes, atomic writes, reuse, corruption)."""

from __future__ import annotations

import datetime
import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from certs.files import EdgeCertificates, issue_origin_certificate, open_ca, write_issued
from certs.issue import CertError, covers, create_ca, issue, needs_renewal, zone_certificate_names

NOW = datetime.datetime(2026, 12, 4, 12, 0, tzinfo=datetime.UTC)


def test_ca_is_a_ca() -> None:
    ca = create_ca(NOW)
    bc = ca.cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert bc.ca is True and bc.path_length == 0
    ku = ca.cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.key_cert_sign and ku.crl_sign
    assert ca.cert.not_valid_after_utc - NOW > datetime.timedelta(days=3600)


def test_issue_names_usage_and_validity() -> None:
    ca = create_ca(NOW)
    leaf = issue(ca, ["Example.com", "*.example.com"], NOW, days=90, ips=[ipaddress.ip_address("127.0.30.1")])
    san = leaf.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["example.com", "*.example.com"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.30.1")]
    eku = leaf.cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    aki = leaf.cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert leaf.cert.not_valid_before_utc < NOW < leaf.cert.not_valid_after_utc
    assert leaf.not_after == NOW + datetime.timedelta(days=90)
    assert leaf.cert.issuer == ca.cert.subject


@pytest.mark.parametrize(
    ("names", "host", "expected"),
    [
        (["example.com", "*.example.com"], "example.com", True),
        (["example.com", "*.example.com"], "www.example.com", True),
        (["example.com", "*.example.com"], "WWW.Example.COM.", True),
        (["example.com", "*.example.com"], "a.b.example.com", False),
        (["example.com", "*.example.com"], "example.org", False),
        (["example.com", "*.example.com"], "badexample.com", False),
        (["example.com", "*.example.com", "*.dev.example.com"], "x.dev.example.com", True),
    ],
)
def test_covers(names: list[str], host: str, expected: bool) -> None:
    assert covers(names, host) is expected


def test_zone_names_and_extras() -> None:
    assert zone_certificate_names("example.com") == ("example.com", "*.example.com")
    assert zone_certificate_names("example.com", ["*.dev.example.com"])[-1] == "*.dev.example.com"
    with pytest.raises(CertError, match="not a name under the zone"):
        zone_certificate_names("example.com", ["*.dev.example.org"])
    with pytest.raises(CertError, match="wildcard"):
        zone_certificate_names("example.com", ["a.*.example.com"])


def test_renewal_margin() -> None:
    leaf = issue(create_ca(NOW), ["example.com"], NOW, days=90)
    assert not needs_renewal(leaf, NOW + datetime.timedelta(days=59))
    assert needs_renewal(leaf, NOW + datetime.timedelta(days=61))


def test_open_ca_creates_once_with_private_key_0600(tmp_path: Path) -> None:
    ca, path = open_ca(tmp_path)
    key = tmp_path / "ca" / "ca.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "ca").stat().st_mode) == 0o700
    again, _ = open_ca(tmp_path)
    assert again.cert == ca.cert
    assert sorted(p.name for p in (tmp_path / "ca").iterdir()) == ["ca.key", "ca.pem"]  # no temp files left
    assert path.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")


def test_corrupt_ca_names_the_path_and_the_remedy(tmp_path: Path) -> None:
    open_ca(tmp_path)
    (tmp_path / "ca" / "ca.pem").write_text("garbage")
    with pytest.raises(CertError, match=r"cannot load the CA from .*ca.*delete that folder"):
        open_ca(tmp_path)


def test_edge_certificates_are_cached_and_reused_across_instances(tmp_path: Path) -> None:
    ca, _ = open_ca(tmp_path)
    first = EdgeCertificates(tmp_path, ca).for_zone("example.com")
    assert EdgeCertificates(tmp_path, ca).for_zone("example.com").cert == first.cert
    assert stat.S_IMODE((tmp_path / "certs" / "example.com.key").stat().st_mode) == 0o600
    later = EdgeCertificates(tmp_path, ca, clock=lambda: NOW + datetime.timedelta(days=400))
    assert later.for_zone("example.com").cert != first.cert  # renewed near (past) expiry


def test_write_issued_and_origin_certificates(tmp_path: Path) -> None:
    ca, _ = open_ca(tmp_path)
    cert_path, key_path = write_issued(issue(ca, ["a.example"], NOW), tmp_path / "out", "a")
    assert cert_path.read_bytes().count(b"BEGIN CERTIFICATE") == 2
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    origin_cert, _ = issue_origin_certificate(tmp_path, ["origin.example.net"])
    assert origin_cert.parent == tmp_path / "origin-certs"
