"""certs.files, the I/O half: the CA on disk, file modes, atomic writes, the edge certificate cache."""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certs.files import (
    EdgeCertificates,
    ca_pem_path,
    client_ssl_context,
    issue_origin_certificate,
    open_ca,
    write_atomic,
    write_issued,
)
from certs.issue import CertError, create_ca, issue

NOW = datetime.datetime(2026, 12, 4, 12, 0, tzinfo=datetime.UTC)
DAY = datetime.timedelta(days=1)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


class Clock:
    """A settable clock for EdgeCertificates."""

    def __init__(self, now: datetime.datetime) -> None:
        self.now = now

    def __call__(self) -> datetime.datetime:
        return self.now


# ----------------------------------------------------------------------------- atomic writes


def test_write_atomic_sets_the_exact_mode_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        write_atomic(tmp_path / "secret.key", b"k", 0o600)
    finally:
        os.umask(0o077)
    try:
        write_atomic(tmp_path / "public.pem", b"c", 0o644)
    finally:
        os.umask(old)
    assert mode(tmp_path / "secret.key") == 0o600
    assert mode(tmp_path / "public.pem") == 0o644
    assert listing(tmp_path) == ["public.pem", "secret.key"]  # no temporary files left


def test_write_atomic_replaces_whole_and_cleans_up_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "ca.key"
    write_atomic(target, b"old")
    write_atomic(target, b"new")
    assert target.read_bytes() == b"new"

    def broken_replace(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="No space"):
        write_atomic(target, b"newer")
    assert target.read_bytes() == b"new"  # the old file is intact
    assert listing(tmp_path) == ["ca.key"]  # and the temporary file is gone


def test_write_atomic_creates_missing_folders_0700(tmp_path: Path, umask_022: None) -> None:
    write_atomic(tmp_path / "a" / "b" / "x.key", b"k")
    assert mode(tmp_path / "a" / "b") == 0o700
    assert mode(tmp_path / "a" / "b" / "x.key") == 0o600


# ----------------------------------------------------------------------------- open_ca


def test_open_ca_creates_the_state_dir_and_ca_with_private_modes(tmp_path: Path, umask_022: None) -> None:
    state = tmp_path / "state"
    ca, path = open_ca(state, NOW)
    assert path == ca_pem_path(state) == state / "ca" / "ca.pem"
    assert mode(state) == 0o700
    assert mode(state / "ca") == 0o700
    assert mode(state / "ca" / "ca.key") == 0o600
    assert mode(path) == 0o644
    assert listing(state / "ca") == ["ca.key", "ca.pem"]  # nothing else: no temp or lock files
    assert x509.load_pem_x509_certificate(path.read_bytes()) == ca.cert
    assert ca.cert.not_valid_before_utc == NOW - datetime.timedelta(hours=1)


def test_open_ca_reuses_the_same_ca(tmp_path: Path) -> None:
    first, _ = open_ca(tmp_path)
    pem_before = ca_pem_path(tmp_path).read_bytes()
    again, _ = open_ca(tmp_path)
    assert again.cert == first.cert
    assert again.key.private_numbers() == first.key.private_numbers()
    assert ca_pem_path(tmp_path).read_bytes() == pem_before


def test_open_ca_concurrent_first_use_makes_one_ca(tmp_path: Path) -> None:
    barrier = threading.Barrier(8)
    results: list[x509.Certificate] = []

    def worker() -> None:
        barrier.wait()
        results.append(open_ca(tmp_path)[0].cert)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8 and len(set(results)) == 1
    assert open_ca(tmp_path)[0].cert == results[0]


@pytest.mark.parametrize("damaged", ["ca.pem", "ca.key"])
def test_corrupt_ca_file_names_the_path_and_the_remedy(tmp_path: Path, damaged: str) -> None:
    open_ca(tmp_path)
    (tmp_path / "ca" / damaged).write_text("garbage")
    with pytest.raises(CertError) as err:
        open_ca(tmp_path)
    message = str(err.value)
    assert str(tmp_path / "ca" / damaged) in message
    assert f"delete that folder ({tmp_path / 'ca'})" in message


def test_ca_key_from_another_ca_is_refused(tmp_path: Path) -> None:
    open_ca(tmp_path)
    (tmp_path / "ca" / "ca.key").write_bytes(create_ca(NOW).key_pem())
    with pytest.raises(CertError, match="does not belong"):
        open_ca(tmp_path)


def test_ca_cert_without_key_is_refused_not_replaced(tmp_path: Path) -> None:
    open_ca(tmp_path)
    pem = ca_pem_path(tmp_path).read_bytes()
    (tmp_path / "ca" / "ca.key").unlink()
    with pytest.raises(CertError, match=r"ca\.key is missing.*delete that folder"):
        open_ca(tmp_path)
    assert ca_pem_path(tmp_path).read_bytes() == pem  # a CA clients may trust is never overwritten


def test_ca_key_without_cert_is_an_interrupted_creation_and_is_replaced(tmp_path: Path) -> None:
    (tmp_path / "ca").mkdir()
    (tmp_path / "ca" / "ca.key").write_bytes(create_ca(NOW).key_pem())
    ca, path = open_ca(tmp_path)
    assert path.exists()
    assert open_ca(tmp_path)[0].cert == ca.cert


def test_expired_ca_is_refused_with_the_remedy(tmp_path: Path) -> None:
    open_ca(tmp_path, NOW)
    with pytest.raises(CertError, match=r"expired on .*delete that folder"):
        open_ca(tmp_path, NOW + 3651 * DAY)


def test_unreadable_ca_names_the_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    open_ca(tmp_path)
    real_read = Path.read_bytes

    def read_bytes(self: Path) -> bytes:
        if self.name == "ca.key":
            raise PermissionError(13, "Permission denied", str(self))
        return real_read(self)

    # Simulated, because root (as in containers) reads a file whatever its mode.
    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    with pytest.raises(CertError, match=r"Permission denied.*delete that folder"):
        open_ca(tmp_path)


def test_state_dir_that_is_a_file_is_a_cert_error(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("")
    with pytest.raises(CertError, match="state"):
        open_ca(tmp_path / "state")


def test_open_ca_refuses_a_naive_now(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        open_ca(tmp_path, datetime.datetime(2026, 1, 1))


# ----------------------------------------------------------------------------- write_issued


def test_write_issued_writes_chain_and_private_key(tmp_path: Path, umask_022: None) -> None:
    ca, _ = open_ca(tmp_path)
    leaf = issue(ca, ["a.example"], NOW)
    cert_path, key_path = write_issued(leaf, tmp_path / "out", "a")
    assert (cert_path, key_path) == (tmp_path / "out" / "a.pem", tmp_path / "out" / "a.key")
    assert x509.load_pem_x509_certificates(cert_path.read_bytes()) == [leaf.cert, ca.cert]
    assert key_path.read_bytes() == leaf.key_pem()
    assert mode(key_path) == 0o600 and mode(cert_path) == 0o644
    assert listing(tmp_path / "out") == ["a.key", "a.pem"]


@pytest.mark.parametrize("stem", ["", ".hidden", "a/b"])
def test_write_issued_refuses_bad_stems(tmp_path: Path, stem: str) -> None:
    leaf = issue(create_ca(NOW), ["a.example"], NOW)
    with pytest.raises(CertError, match="stem"):
        write_issued(leaf, tmp_path, stem)


# ----------------------------------------------------------------------------- EdgeCertificates


def test_for_zone_issues_universal_ssl_names_and_caches(tmp_path: Path) -> None:
    ca, _ = open_ca(tmp_path)
    edge = EdgeCertificates(tmp_path, ca, clock=Clock(NOW))
    cert = edge.for_zone("Example.com")
    assert cert.names == ("example.com", "*.example.com")
    assert cert.cert.not_valid_before_utc == NOW - datetime.timedelta(hours=1)
    assert edge.for_zone("example.com.") is cert  # cached in memory, zone name normalized
    assert listing(tmp_path / "certs") == ["example.com.key", "example.com.pem"]
    assert mode(tmp_path / "certs" / "example.com.key") == 0o600


def test_for_zone_is_reused_across_restarts(tmp_path: Path) -> None:
    ca, _ = open_ca(tmp_path)
    first = EdgeCertificates(tmp_path, ca, clock=Clock(NOW)).for_zone("example.com")
    restarted = EdgeCertificates(tmp_path, ca, clock=Clock(NOW + 10 * DAY)).for_zone("example.com")
    assert restarted.cert == first.cert


def test_for_zone_renews_near_expiry_in_memory_and_on_disk(tmp_path: Path) -> None:
    ca, _ = open_ca(tmp_path)
    clock = Clock(NOW)
    edge = EdgeCertificates(tmp_path, ca, clock=clock)
    first = edge.for_zone("example.com")
    clock.now = NOW + 59 * DAY
    assert edge.for_zone("example.com") is first
    clock.now = NOW + 61 * DAY  # inside the 30-day margin of a 90-day certificate
    renewed = edge.for_zone("example.com")
    assert renewed.cert != first.cert
    assert renewed.cert.not_valid_before_utc == clock.now - datetime.timedelta(hours=1)
    on_disk = x509.load_pem_x509_certificates((tmp_path / "certs" / "example.com.pem").read_bytes())
    assert on_disk[0] == renewed.cert
    # A restart near the old expiry does not bring the old certificate back.
    assert EdgeCertificates(tmp_path, ca, clock=Clock(clock.now)).for_zone("example.com").cert == renewed.cert


def test_extras_make_a_separate_certificate_regardless_of_order(tmp_path: Path) -> None:
    ca, _ = open_ca(tmp_path)
    edge = EdgeCertificates(tmp_path, ca, clock=Clock(NOW))
    plain = edge.for_zone("example.com")
    deep = edge.for_zone("example.com", ["*.dev.example.com", "api.v1.example.com"])
    assert deep.names == ("example.com", "*.example.com", "*.dev.example.com", "api.v1.example.com")
    assert deep.cert != plain.cert
    assert edge.for_zone("example.com", ["API.v1.example.com", "*.dev.example.com"]) is deep
    assert len(list((tmp_path / "certs").glob("example.com+*.pem"))) == 1


def test_extras_not_under_the_zone_raise(tmp_path: Path) -> None:
    ca, _ = open_ca(tmp_path)
    with pytest.raises(CertError, match=r"not a name under the zone example\.com"):
        EdgeCertificates(tmp_path, ca).for_zone("example.com", ["*.dev.example.org"])


def test_certificates_from_another_ca_or_corrupt_are_replaced(tmp_path: Path) -> None:
    ca, _ = open_ca(tmp_path)
    foreign = issue(create_ca(NOW), ["example.com", "*.example.com"], NOW)
    write_issued(foreign, tmp_path / "certs", "example.com")
    mine = EdgeCertificates(tmp_path, ca, clock=Clock(NOW)).for_zone("example.com")
    assert mine.cert != foreign.cert and mine.ca_cert == ca.cert
    (tmp_path / "certs" / "example.com.key").write_text("garbage")
    fresh = EdgeCertificates(tmp_path, ca, clock=Clock(NOW)).for_zone("example.com")
    assert fresh.cert != mine.cert
    assert listing(tmp_path / "certs") == ["example.com.key", "example.com.pem"]


def test_ssl_context_for_zone_is_a_cached_tls12_server_context(tmp_path: Path) -> None:
    ca, _ = open_ca(tmp_path)
    clock = Clock(NOW)
    edge = EdgeCertificates(tmp_path, ca, clock=clock)
    context = edge.ssl_context_for_zone("example.com")
    assert context.protocol == ssl.PROTOCOL_TLS_SERVER
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert edge.ssl_context_for_zone("example.com") is context
    assert edge.ssl_context_for_zone("example.com", ["*.dev.example.com"]) is not context
    clock.now = NOW + 80 * DAY
    assert edge.ssl_context_for_zone("example.com") is not context  # renewed, so a new context


def test_unwritable_cert_folder_is_a_cert_error(tmp_path: Path) -> None:
    ca, _ = open_ca(tmp_path)
    (tmp_path / "certs").write_text("not a folder")
    with pytest.raises(CertError, match="certs"):
        EdgeCertificates(tmp_path, ca).for_zone("example.com")


# ----------------------------------------------------------------------------- origins and clients


def test_origin_certificate_defaults(tmp_path: Path) -> None:
    cert_path, key_path = issue_origin_certificate(tmp_path, ["*.example.net", "origin.example.net"], now=NOW)
    assert (cert_path, key_path) == (
        tmp_path / "origin-certs" / "_wildcard.example.net.pem",
        tmp_path / "origin-certs" / "_wildcard.example.net.key",
    )
    assert mode(key_path) == 0o600
    leaf, issuer = x509.load_pem_x509_certificates(cert_path.read_bytes())
    assert issuer == open_ca(tmp_path)[0].cert
    assert leaf.not_valid_after_utc == NOW + 5 * 365 * DAY
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["*.example.net", "origin.example.net"]


def test_origin_certificate_ip_names_and_out_dir(tmp_path: Path) -> None:
    out = tmp_path / "elsewhere"
    cert_path, _ = issue_origin_certificate(tmp_path, ["127.0.30.1", "origin.test"], out, ips=["::1"], now=NOW)
    assert cert_path == out / "origin.test.pem"
    leaf = x509.load_pem_x509_certificates(cert_path.read_bytes())[0]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["origin.test"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.30.1"), ipaddress.ip_address("::1")]
    ip_only, _ = issue_origin_certificate(tmp_path, ["::1"], out, now=NOW)
    assert ip_only.name == "__1.pem"
    with pytest.raises(CertError, match="not an IP address"):
        issue_origin_certificate(tmp_path, ["a.test"], out, ips=["nope"])


def test_client_ssl_context_trusts_only_the_local_ca(tmp_path: Path) -> None:
    ca, _ = open_ca(tmp_path)
    context = client_ssl_context(tmp_path)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    trusted = context.get_ca_certs(binary_form=True)
    assert trusted == [ca.cert.public_bytes(serialization.Encoding.DER)]
