"""Pure certificate issuance for the local CA (cryptography only: no files, sockets, ssl or asyncio).

Time is always an argument (`now`, timezone-aware); nothing here reads the clock.

Edge certificates follow Universal SSL's coverage: the zone apex and a one-label wildcard
(`example.com`, `*.example.com`); deeper names (`*.dev.example.com`) only when listed, as with
Cloudflare's advanced certificates. Keys are ECDSA P-256: fast to generate and to handshake with.

Errors: names and files the user supplied raise `CertError` (the message says what is wrong and
how to fix it); misuse by the caller (a naive `now`, `days < 1`) raises `ValueError`.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Ten years: long enough that a developer trusts the local CA once and forgets about it.
CA_VALIDITY = datetime.timedelta(days=3650)
# Certificates are backdated an hour so a peer whose clock runs a little behind still accepts them.
BACKDATE = datetime.timedelta(hours=1)
# Renew 30 days before expiry, as ACME clients (and Cloudflare's Universal SSL) do.
RENEWAL_MARGIN = datetime.timedelta(days=30)
# RFC 5280's ub-common-name: a longer first name is left out of the subject (the SAN carries it).
_CN_MAX = 64
# A DNS label in LDH form (RFC 1123): letters, digits, inner hyphens. Underscores are refused
# because public CAs may not issue for them (CA/B Forum ballot SC-12).
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


class CertError(Exception):
    """A certificate could not be issued or loaded; the message says what and how to fix it."""


@dataclass(frozen=True, slots=True)
class CertificateAuthority:
    """The local CA: a self-signed P-256 certificate (CA:true, pathlen 0) and its private key."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM (the file is protected by its mode, 0600)."""
        return _key_pem(self.key)


@dataclass(frozen=True, slots=True)
class IssuedCertificate:
    """A leaf certificate and its key. `names` are its DNS SANs (normalized, in order), `ips` its IP
    SANs, `not_after` its expiry (aware, UTC), `ca_cert` the issuer, for the chain."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    names: tuple[str, ...]
    not_after: datetime.datetime
    ca_cert: x509.Certificate
    ips: tuple[IPAddress, ...] = ()

    def cert_pem(self) -> bytes:
        """The leaf alone, PEM."""
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM."""
        return _key_pem(self.key)

    def chain_pem(self) -> bytes:
        """Leaf then CA, PEM: what a server presents (and what `load_cert_chain` expects)."""
        return self.cert_pem() + self.ca_cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _aware(now: datetime.datetime) -> datetime.datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be a timezone-aware datetime (e.g. datetime.now(UTC))")
    return now.astimezone(datetime.UTC)


# ----------------------------------------------------------------------------- names


def normalize_name(name: str) -> str:
    """`name` as it goes into a certificate: lower case, no trailing dot, IDNs as A-labels.

    A wildcard is allowed only as the whole left-most label of a name with at least three labels
    (`*.example.com`; not `*.com`, `w*.example.com` or `a.*.example.com`). Raises CertError for
    anything else that is not a DNS host name, including IP addresses (pass those as `ips`).
    """
    raw = name.strip()
    n = raw[:-1] if raw.endswith(".") else raw
    try:
        ipaddress.ip_address(n)
    except ValueError:
        pass
    else:
        raise CertError(f"{name!r} is an IP address, not a DNS name; give it as an IP SAN (ips=...)")
    labels = n.split(".")
    try:
        labels = [lab if lab == "*" or lab.isascii() else lab.encode("idna").decode("ascii") for lab in labels]
    except UnicodeError:
        raise CertError(f"{name!r} is not a valid internationalized domain name") from None
    labels = [lab.lower() for lab in labels]
    n = ".".join(labels)
    if not n or len(n) > 253:
        raise CertError(f"{name!r} is not a valid DNS name (empty or longer than 253 characters)")
    if "*" in n and (labels[0] != "*" or "*" in n[1:] or len(labels) < 3):
        raise CertError(f"{name!r}: a wildcard must be the whole left-most label of a name with 3+ labels")
    for lab in labels[1:] if labels[0] == "*" else labels:
        if not _LABEL.fullmatch(lab):
            raise CertError(
                f"{name!r} is not a valid DNS name: label {lab!r} must be 1-63 letters, digits or inner hyphens"
            )
    return n


def zone_certificate_names(zone: str, extra_hosts: Sequence[str] = ()) -> tuple[str, ...]:
    """The names of a zone's edge certificate: `(zone, "*." + zone)` (Universal SSL) followed by
    `extra_hosts` (advanced certificates, e.g. `*.dev.example.com`), normalized, without duplicates.

    Every extra must be the zone itself or a name under it; all bad extras are reported in one
    CertError.
    """
    z = normalize_name(zone)
    if z.startswith("*"):
        raise CertError(f"zone {zone!r} must be a plain domain name, not a wildcard")
    names = [z, f"*.{z}"]
    problems: list[str] = []
    for host in extra_hosts:
        try:
            h = normalize_name(host)
        except CertError as e:
            problems.append(str(e))
            continue
        if h != z and not h.endswith("." + z):
            problems.append(f"{host!r} is not a name under the zone {z}")
            continue
        names.append(h)
    if problems:
        raise CertError("; ".join(problems))
    return tuple(dict.fromkeys(names))


def covers(names: Sequence[str], hostname: str) -> bool:
    """Whether a certificate for `names` is valid for `hostname` (RFC 6125 section 6.4).

    Exact match, ignoring case and a trailing dot; or a wildcard `*.rest` standing for exactly
    one left-most label: `*.example.com` covers `a.example.com`, not `a.b.example.com`, not
    `example.com`. A hostname that is not a valid DNS name (or is itself a wildcard) is covered
    by nothing.
    """
    try:
        host = normalize_name(hostname)
    except CertError:
        return False
    if host.startswith("*"):
        return False
    _, _, parent = host.partition(".")
    for name in names:
        try:
            n = normalize_name(name)
        except CertError:
            continue
        if n == host or (n.startswith("*.") and parent and n[2:] == parent):
            return True
    return False


# ----------------------------------------------------------------------------- issuance


def create_ca(now: datetime.datetime, common_name: str = "edge local CA") -> CertificateAuthority:
    """A new self-signed CA valid from `now - 1h` for ten years: basicConstraints CA:true pathlen 0
    (critical), keyUsage keyCertSign + cRLSign (critical), subjectKeyIdentifier."""
    now = _aware(now)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "edge emulator"),
            # A CA re-created after deletion gets a distinct subject, so trust stores (NSS in
            # particular) never confuse it with the one they trusted before.
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, f"created {now:%Y-%m-%dT%H:%M:%SZ}"),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return CertificateAuthority(cert=cert, key=key)


def issue(
    ca: CertificateAuthority,
    names: Sequence[str],
    now: datetime.datetime,
    *,
    days: int = 90,
    ips: Sequence[IPAddress] = (),
) -> IssuedCertificate:
    """A TLS server certificate signed by `ca` for the DNS `names` (wildcards allowed) and `ips`.

    Subject CN = the first name (omitted if longer than 64 characters); SANs = names then IPs;
    extendedKeyUsage serverAuth; keyUsage digitalSignature; AKI = the CA's SKI. Valid from
    `now - 1h` until `now + days`, but never past the CA's own expiry. Raises CertError when no
    name or address is given, a name is invalid, or the CA has expired at `now`.
    """
    now = _aware(now)
    if days < 1:
        raise ValueError(f"days must be at least 1, not {days}")
    if not names and not ips:
        raise CertError("a certificate needs at least one DNS name or IP address")
    clean = tuple(dict.fromkeys(normalize_name(n) for n in names))
    addresses = tuple(dict.fromkeys(ips))
    ca_expiry = ca.cert.not_valid_after_utc
    if now >= ca_expiry:
        raise CertError(f"the local CA expired on {ca_expiry:%Y-%m-%d}; create a new CA and trust it instead")
    not_after = min(now + datetime.timedelta(days=days), ca_expiry)
    first = clean[0] if clean else str(addresses[0])
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, first)] if len(first) <= _CN_MAX else [])
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in clean]
    sans += [x509.IPAddress(ip) for ip in addresses]
    key = ec.generate_private_key(ec.SECP256R1())
    ca_ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        # RFC 5280 4.2.1.6: the SAN is critical when the subject is empty.
        .add_extension(x509.SubjectAlternativeName(sans), critical=not subject)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    return IssuedCertificate(
        cert=cert, key=key, names=clean, not_after=cert.not_valid_after_utc, ca_cert=ca.cert, ips=addresses
    )


def needs_renewal(
    cert: IssuedCertificate, now: datetime.datetime, *, margin: datetime.timedelta = RENEWAL_MARGIN
) -> bool:
    """True when `cert` expires within `margin` of `now` (or already has), or is not yet valid at
    `now` (the clock went back past its issuance)."""
    now = _aware(now)
    return now + margin >= cert.not_after or now < cert.cert.not_valid_before_utc


# ----------------------------------------------------------------------------- decoding


def _decode_key(key_pem: bytes) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        raise CertError(f"not a usable unencrypted PEM private key ({e})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CertError("the private key is not an EC key")
    return key


def _same_key(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> bool:
    return bool(cert.public_key() == key.public_key())


def decode_ca(cert_pem: bytes, key_pem: bytes) -> CertificateAuthority:
    """Parse a CA from PEM. CertError unless it is a CA certificate (basicConstraints CA:true,
    with an SKI) and an EC private key that belong together."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as e:
        raise CertError(f"not a PEM certificate ({e})") from None
    key = _decode_key(key_pem)
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    except x509.ExtensionNotFound as e:
        raise CertError(f"the certificate is not a CA certificate ({e})") from None
    if not bc.ca:
        raise CertError("the certificate is not a CA certificate (basicConstraints CA:false)")
    if not _same_key(cert, key):
        raise CertError("the private key does not belong to the CA certificate")
    return CertificateAuthority(cert=cert, key=key)


def decode_issued(chain_pem: bytes, key_pem: bytes) -> IssuedCertificate:
    """Parse what `IssuedCertificate.chain_pem`/`key_pem` produced. CertError unless the chain is
    a leaf followed by the certificate that signed it and the key belongs to the leaf."""
    try:
        certs = x509.load_pem_x509_certificates(chain_pem)
    except ValueError as e:
        raise CertError(f"not a PEM certificate chain ({e})") from None
    if len(certs) < 2:
        raise CertError("expected a chain of leaf + CA certificates")
    leaf, ca_cert = certs[0], certs[1]
    key = _decode_key(key_pem)
    if not _same_key(leaf, key):
        raise CertError("the private key does not belong to the certificate")
    try:
        leaf.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature) as e:
        raise CertError(f"the certificate was not issued by the next one in the chain ({e})") from None
    try:
        sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise CertError("the certificate has no subjectAltName") from None
    return IssuedCertificate(
        cert=leaf,
        key=key,
        names=tuple(sans.get_values_for_type(x509.DNSName)),
        not_after=leaf.not_valid_after_utc,
        ca_cert=ca_cert,
        ips=tuple(
            ip
            for ip in sans.get_values_for_type(x509.IPAddress)
            if isinstance(ip, ipaddress.IPv4Address | ipaddress.IPv6Address)
        ),
    )
