"""certs: the local certificate authority (pure issuance in `issue`, files and TLS contexts in `files`)."""

from certs.issue import CertError, CertificateAuthority, IssuedCertificate, covers, issue, zone_certificate_names

__all__ = ["CertError", "CertificateAuthority", "IssuedCertificate", "covers", "issue", "zone_certificate_names"]
