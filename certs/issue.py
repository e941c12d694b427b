"""Pure certificate issuance for the local CA (cryptography only; no file or network I/O).

Edge certificates follow Universal SSL's coverage: the zone apex and a one-label wildcard
(`example.com`, `*.example.com`); deeper names only when listed (like advanced certificates).
Keys are ECDSA P-256: fast to generate and to handshake with.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

CA_VALIDITY = datetime.timedelta(days=3650)
# Leaves are backdated an hour so a clock a little behind still accepts them.
BACKDATE = datetime.timedelta(hours=1)


class CertError(Exception):
    """A certificate could not be issued or loaded; the message says what and how to fix it."""


@dataclass(frozen=True, slots=True)
class CertificateAuthority:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )


@dataclass(frozen=True, slots=True)
class IssuedCertificate:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    ca_cert: x509.Certificate
    names: tuple[str, ...]
    not_after: datetime.datetime

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def chain_pem(self) -> bytes:
        return self.cert_pem() + self.ca_cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )


def create_ca(now: datetime.datetime, common_name: str = "edge local CA") -> CertificateAuthority:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "edge emulator")])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
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
            x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                          encipher_only=False, decipher_only=False),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return CertificateAuthority(cert, key)


def _check_name(name: str) -> str:
    n = name.lower().rstrip(".")
    labels = n.split(".")
    if not n or len(n) > 253 or any(not lab or len(lab) > 63 for lab in labels):
        raise CertError(f"{name!r} is not a valid DNS name")
    if "*" in n and (labels[0] != "*" or "*" in ".".join(labels[1:]) or len(labels) < 3):
        raise CertError(f"{name!r}: a wildcard must be the whole left-most label of a name with 3+ labels")
    return n


def issue(
    ca: CertificateAuthority,
    names: Sequence[str],
    now: datetime.datetime,
    *,
    days: int = 90,
    ips: Sequence[IPAddress] = (),
) -> IssuedCertificate:
    """A server certificate for `names` (and IP SANs), signed by `ca`, valid from now for `days`."""
    if not names and not ips:
        raise CertError("a certificate needs at least one name or address")
    clean = tuple(dict.fromkeys(_check_name(n) for n in names))
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in clean]
    sans += [x509.IPAddress(ip) for ip in ips]
    cn = clean[0] if clean else str(ips[0])
    not_after = now + datetime.timedelta(days=days)
    ca_ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn[:64])]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=True, key_cert_sign=False, crl_sign=False,
                          encipher_only=False, decipher_only=False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    return IssuedCertificate(cert, key, ca.cert, clean, not_after)


def zone_certificate_names(zone: str, extra_hosts: Sequence[str] = ()) -> tuple[str, ...]:
    """Universal SSL coverage (apex + one-label wildcard) plus listed deeper names under the zone."""
    z = _check_name(zone)
    names = [z, f"*.{z}"]
    for host in extra_hosts:
        h = _check_name(host)
        if not h.endswith("." + z):
            raise CertError(f"{host!r} is not a name under the zone {zone}")
        names.append(h)
    return tuple(dict.fromkeys(names))


def covers(names: Sequence[str], hostname: str) -> bool:
    """RFC 6125 matching: exact name, or a wildcard for exactly one left-most label."""
    host = hostname.lower().rstrip(".")
    for name in names:
        n = name.lower()
        if n == host:
            return True
        if n.startswith("*."):
            head, _, rest = host.partition(".")
            if head and rest == n[2:]:
                return True
    return False


def needs_renewal(cert: IssuedCertificate, now: datetime.datetime,
                  *, margin: datetime.timedelta = datetime.timedelta(days=30)) -> bool:
    return now + margin >= cert.not_after


def load_ca(cert_pem: bytes, key_pem: bytes) -> CertificateAuthority:
    """Parse a CA from PEM; CertError when it is not a usable CA certificate and EC key."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        key = serialization.load_pem_private_key(key_pem, password=None)
    except ValueError as e:
        raise CertError(f"not a PEM certificate and key: {e}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CertError("the CA key is not an EC key")
    return CertificateAuthority(cert, key)


def load_issued(chain_pem: bytes, key_pem: bytes) -> IssuedCertificate:
    try:
        certs = x509.load_pem_x509_certificates(chain_pem)
        key = serialization.load_pem_private_key(key_pem, password=None)
    except ValueError as e:
        raise CertError(f"not a PEM chain and key: {e}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or len(certs) < 2:
        raise CertError("expected an EC key and a leaf + CA chain")
    leaf = certs[0]
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    names = tuple(sans.get_values_for_type(x509.DNSName))
    return IssuedCertificate(leaf, key, certs[1], names, leaf.not_valid_after_utc)
