"""certs: the local certificate authority.

`certs.issue` is the pure half (issuance and name matching, time passed in); `certs.files` is the
I/O half (the CA and certificates on disk, TLS contexts). Importing `certs` loads only the pure half.
"""

from certs.issue import (
    CertError,
    CertificateAuthority,
    IssuedCertificate,
    covers,
    create_ca,
    issue,
    needs_renewal,
    zone_certificate_names,
)

__all__ = [
    "CertError",
    "CertificateAuthority",
    "IssuedCertificate",
    "covers",
    "create_ca",
    "issue",
    "needs_renewal",
    "zone_certificate_names",
]
