"""The CA's on-disk state and TLS contexts (the I/O half of `certs`).

Layout under the state directory:
  ca/ca.pem, ca/ca.key           the local CA (created on first use, reused after)
  certs/<zone>.pem, <zone>.key   edge certificates per zone (chain + key), reused while valid
  origin-certs/<name>.pem/.key   certificates issued by `edge certs origin`
Private keys are written atomically (temporary file in the same folder, fsync, rename) with
mode 0600; folders are created 0700.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import os
import ssl
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from certs.issue import (
    CertError,
    CertificateAuthority,
    IPAddress,
    IssuedCertificate,
    create_ca,
    issue,
    load_ca,
    load_issued,
    needs_renewal,
    zone_certificate_names,
)

# Edge certificates live 90 days like Universal SSL's; origin certificates 5 years (Cloudflare's
# Origin CA offers up to 15; five is plenty for a local CA and keeps clients that cap lifetimes happy).
EDGE_DAYS = 90
ORIGIN_DAYS = 5 * 365


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write `data` to `path` so readers see the old file or the whole new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def ca_pem_path(state_dir: Path) -> Path:
    return state_dir / "ca" / "ca.pem"


def open_ca(state_dir: Path, now: datetime.datetime | None = None) -> tuple[CertificateAuthority, Path]:
    """The state directory's CA, created on first use. CertError names a corrupt file and the remedy."""
    cert_path, key_path = ca_pem_path(state_dir), state_dir / "ca" / "ca.key"
    if cert_path.exists() and key_path.exists():
        try:
            ca = load_ca(cert_path.read_bytes(), key_path.read_bytes())
        except (CertError, OSError) as e:
            raise CertError(f"cannot load the CA from {cert_path.parent}: {e}; delete that folder to make a new CA"
                            " (clients must then trust the new one)") from None
        return ca, cert_path
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    ca = create_ca(now or _now())
    write_atomic(key_path, ca.key_pem(), 0o600)
    write_atomic(cert_path, ca.cert_pem(), 0o644)
    return ca, cert_path


def write_issued(cert: IssuedCertificate, directory: Path, stem: str) -> tuple[Path, Path]:
    """Write `<stem>.pem` (leaf + CA chain) and `<stem>.key` (0600); returns both paths."""
    key_path, cert_path = directory / f"{stem}.key", directory / f"{stem}.pem"
    write_atomic(key_path, cert.key_pem(), 0o600)
    write_atomic(cert_path, cert.chain_pem(), 0o644)
    return cert_path, key_path


class EdgeCertificates:
    """Zone edge certificates, issued on demand, cached in memory and on disk, renewed when near expiry."""

    def __init__(self, state_dir: Path, ca: CertificateAuthority,
                 clock: Callable[[], datetime.datetime] = _now) -> None:
        self.directory = state_dir / "certs"
        self.ca = ca
        self.clock = clock
        self._issued: dict[tuple[str, tuple[str, ...]], tuple[IssuedCertificate, Path, Path]] = {}
        self._contexts: dict[tuple[str, tuple[str, ...]], tuple[IssuedCertificate, ssl.SSLContext]] = {}

    def _stem(self, zone: str, extras: tuple[str, ...]) -> str:
        if not extras:
            return zone
        return f"{zone}-{hashlib.sha256('|'.join(extras).encode()).hexdigest()[:8]}"

    def _load_or_issue(self, zone: str, extras: tuple[str, ...]) -> tuple[IssuedCertificate, Path, Path]:
        key = (zone, extras)
        now = self.clock()
        cached = self._issued.get(key)
        if cached is not None and not needs_renewal(cached[0], now):
            return cached
        names = zone_certificate_names(zone, extras)
        stem = self._stem(zone, extras)
        cert_path, key_path = self.directory / f"{stem}.pem", self.directory / f"{stem}.key"
        if cert_path.exists() and key_path.exists():
            try:
                on_disk = load_issued(cert_path.read_bytes(), key_path.read_bytes())
                ca_match = on_disk.ca_cert == self.ca.cert
                if ca_match and set(on_disk.names) == set(names) and not needs_renewal(on_disk, now):
                    self._issued[key] = (on_disk, cert_path, key_path)
                    return self._issued[key]
            except (CertError, OSError, ValueError):
                pass  # unreadable or stale: issue a new one below
        fresh = issue(self.ca, names, now, days=EDGE_DAYS)
        cert_path, key_path = write_issued(fresh, self.directory, stem)
        self._issued[key] = (fresh, cert_path, key_path)
        return self._issued[key]

    def for_zone(self, zone: str, extra_hosts: Sequence[str] = ()) -> IssuedCertificate:
        return self._load_or_issue(zone.lower(), tuple(sorted(h.lower() for h in extra_hosts)))[0]

    def ssl_context_for_zone(self, zone: str, extra_hosts: Sequence[str] = ()) -> ssl.SSLContext:
        key = (zone.lower(), tuple(sorted(h.lower() for h in extra_hosts)))
        cert, cert_path, key_path = self._load_or_issue(*key)
        cached = self._contexts.get(key)
        if cached is not None and cached[0] is cert:
            return cached[1]
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(cert_path, key_path)
        ctx.set_alpn_protocols(["http/1.1"])
        self._contexts[key] = (cert, ctx)
        return ctx


def issue_origin_certificate(state_dir: Path, names: Sequence[str], out_dir: Path | None = None,
                             *, ips: Sequence[IPAddress] = ()) -> tuple[Path, Path]:
    """Like Cloudflare's Origin CA: a certificate for a user's origin, signed by the local CA."""
    ca, _ = open_ca(state_dir)
    cert = issue(ca, names, _now(), days=ORIGIN_DAYS, ips=ips)
    stem = cert.names[0].replace("*", "_wildcard") if cert.names else str(ips[0])
    return write_issued(cert, out_dir or state_dir / "origin-certs", stem)


def client_ssl_context(state_dir: Path) -> ssl.SSLContext:
    """A client context that trusts only the local CA (strict mode toward origins, tests)."""
    ctx = ssl.create_default_context(cafile=str(ca_pem_path(state_dir)))
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx
