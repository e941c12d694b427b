"""The CA's on-disk state and TLS contexts (the I/O half of `certs`).

Layout under the state directory (created 0700 when missing):

  ca/ca.pem, ca/ca.key           the local CA (created on first use, reused after)
  certs/<stem>.pem, <stem>.key   zone edge certificates (chain + key), reused while valid
  origin-certs/<name>.pem/.key   certificates for users' origins (`edge certs origin`)

Invariants:
- Every file is written atomically: a temporary file in the same folder, created with
  `os.open(..., O_EXCL, mode)`, fsynced, then `os.replace`d; readers see the old file or the whole
  new one, and a crash leaves at most a `.*.tmp` file behind. Private keys are mode 0600.
- A pair (key + certificate) is read and written under an advisory `flock` on its folder,
  so processes sharing a state directory never see one's key with the other's certificate, and
  two processes starting at once create one CA, not two.
- Foreign exceptions (OSError, ssl.SSLError) are translated here, once, into CertError naming the
  path; callers handle one error type.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import hashlib
import ipaddress
import os
import secrets
import ssl
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from certs.issue import (
    CertError,
    CertificateAuthority,
    IPAddress,
    IssuedCertificate,
    create_ca,
    decode_ca,
    decode_issued,
    issue,
    needs_renewal,
    zone_certificate_names,
)

# Edge certificates live 90 days like Universal SSL's. Origin certificates live five years:
# Cloudflare's Origin CA offers up to fifteen, but five is plenty for a local CA and stays within
# what clients that cap certificate lifetimes accept. Either is cut short at the CA's own expiry.
EDGE_DAYS = 90
ORIGIN_DAYS = 5 * 365

DIR_MODE = 0o700
KEY_MODE = 0o600
CERT_MODE = 0o644  # certificates are public; keys are not
ALPN = ["http/1.1"]  # the edge speaks HTTP/1.1 (h11)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def ca_pem_path(state_dir: Path) -> Path:
    """Where the local CA's certificate lives: what clients pass as `--cacert` / `-CAfile`."""
    return state_dir / "ca" / "ca.pem"


def ca_key_path(state_dir: Path) -> Path:
    return state_dir / "ca" / "ca.key"


# ----------------------------------------------------------------------------- primitives


def ensure_dir(path: Path) -> None:
    """Create `path` (and missing parents) if absent; a folder this creates is mode 0700."""
    if path.is_dir():
        return
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    os.chmod(path, DIR_MODE)  # mkdir's mode is filtered by the umask; make it exact


def write_atomic(path: Path, data: bytes, mode: int = KEY_MODE) -> None:
    """Write `data` to `path` so readers see the old file or the whole new one, never a part.

    The temporary file is created in the same folder with `mode` from the start (never readable by
    others, even for a moment), fsynced, renamed over `path`, and the folder fsynced so the rename
    survives a crash. On any failure the temporary file is removed and the error re-raised.
    """
    ensure_dir(path.parent)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, mode)
    try:
        try:
            os.fchmod(fd, mode)  # the umask may have filtered os.open's mode; make it exact
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@contextlib.contextmanager
def _folder_lock(directory: Path) -> Iterator[None]:
    """Hold an exclusive advisory `flock` on `directory` itself (blocking) for the block's duration.

    Locking the folder rather than a lock file leaves nothing behind. flock locks belong to the
    open file description, so this also excludes other threads of this process; it is not reentrant.
    """
    ensure_dir(directory)
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _write_pair(cert: IssuedCertificate, directory: Path, stem: str) -> tuple[Path, Path]:
    if not stem or stem.startswith(".") or "/" in stem or "\0" in stem:
        raise CertError(f"{stem!r} is not a usable file name stem")
    cert_path, key_path = directory / f"{stem}.pem", directory / f"{stem}.key"
    write_atomic(key_path, cert.key_pem(), KEY_MODE)
    write_atomic(cert_path, cert.chain_pem(), CERT_MODE)
    return cert_path, key_path


def write_issued(cert: IssuedCertificate, directory: Path, stem: str) -> tuple[Path, Path]:
    """Write `<stem>.pem` (leaf + CA chain, 0644) and `<stem>.key` (0600), each atomically, under
    the folder's lock; returns `(pem_path, key_path)`. CertError names the folder on failure."""
    try:
        with _folder_lock(directory):
            return _write_pair(cert, directory, stem)
    except OSError as e:
        raise CertError(f"cannot write {stem}.pem/{stem}.key in {directory}: {e}") from None


# ----------------------------------------------------------------------------- the CA


def open_ca(state_dir: Path, now: datetime.datetime | None = None) -> tuple[CertificateAuthority, Path]:
    """The state directory's CA and the path of its certificate, creating both on first use.

    `now` (default: the clock) dates a new CA. A CA that exists is reused as is; one that cannot be
    read, is corrupt, lacks its key or has expired raises CertError naming the file and the remedy
    (delete the `ca` folder; clients must then trust the new CA). A key without a certificate is a
    creation interrupted before the CA was published (nobody can trust it yet), so it is replaced.
    """
    ca_dir, cert_path, key_path = state_dir / "ca", ca_pem_path(state_dir), ca_key_path(state_dir)
    remedy = f"delete that folder ({ca_dir}) to create a new CA; clients must then trust the new {cert_path}"
    if now is not None and now.tzinfo is None:
        raise ValueError("now must be a timezone-aware datetime (e.g. datetime.now(UTC))")
    at = now or _now()
    try:
        ensure_dir(state_dir)
        with _folder_lock(ca_dir):
            if cert_path.exists():
                if not key_path.exists():
                    raise CertError(f"cannot load the CA from {cert_path}: its key {key_path} is missing; {remedy}")
                try:
                    ca = decode_ca(cert_path.read_bytes(), key_path.read_bytes())
                except (CertError, OSError) as e:
                    raise CertError(f"cannot load the CA from {cert_path} and {key_path}: {e}; {remedy}") from None
                if at >= ca.cert.not_valid_after_utc:
                    raise CertError(
                        f"cannot load the CA from {cert_path}: it expired on "
                        f"{ca.cert.not_valid_after_utc:%Y-%m-%d}; {remedy}"
                    )
                return ca, cert_path
            ca = create_ca(at)
            write_atomic(key_path, ca.key_pem(), KEY_MODE)  # the key first: a cert is never published alone
            write_atomic(cert_path, ca.cert_pem(), CERT_MODE)
            return ca, cert_path
    except OSError as e:
        raise CertError(f"cannot create the local CA in {ca_dir}: {e}") from None


# ----------------------------------------------------------------------------- edge certificates


@dataclass(frozen=True, slots=True)
class _Edge:
    issued: IssuedCertificate
    context: ssl.SSLContext


def server_ssl_context(cert_path: Path, key_path: Path) -> ssl.SSLContext:
    """A TLS server context for a chain + key on disk: TLS >= 1.2, ALPN http/1.1."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(ALPN)
    try:
        context.load_cert_chain(cert_path, key_path)
    except (OSError, ssl.SSLError) as e:
        raise CertError(f"cannot load {cert_path} with {key_path}: {e}") from None
    return context


class EdgeCertificates:
    """Zone edge certificates: issued on demand by `ca`, cached in memory and under
    `<state_dir>/certs/`, reused across restarts while they are signed by `ca`, carry exactly the
    zone's names and are not within the renewal margin of expiry at `clock()`; renewed otherwise.

    Each call checks the expiry and renews lazily, so a long-running server picks up a new
    certificate on the next call after the margin is reached. Calls do file I/O (and key
    generation on a miss): from asyncio, call at start-up or accept a millisecond on a miss.
    Thread-safe; safe across processes sharing the state directory.
    """

    def __init__(
        self, state_dir: Path, ca: CertificateAuthority, clock: Callable[[], datetime.datetime] = _now
    ) -> None:
        self.directory = state_dir / "certs"
        self.ca = ca
        self.clock = clock
        self._lock = threading.Lock()
        self._edges: dict[tuple[str, ...], _Edge] = {}

    def for_zone(self, zone: str, extra_hosts: Sequence[str] = ()) -> IssuedCertificate:
        """The zone's certificate for `zone_certificate_names(zone, extra_hosts)`; CertError for a
        bad zone or extra, or when the certificate cannot be written."""
        return self._edge(zone, extra_hosts).issued

    def ssl_context_for_zone(self, zone: str, extra_hosts: Sequence[str] = ()) -> ssl.SSLContext:
        """A server context presenting the zone's certificate chain (TLS >= 1.2, ALPN http/1.1).
        The same object is returned per (zone, extras) until the certificate is renewed."""
        return self._edge(zone, extra_hosts).context

    def _edge(self, zone: str, extra_hosts: Sequence[str]) -> _Edge:
        names = zone_certificate_names(zone, extra_hosts)
        # The names after the Universal SSL pair, order-insensitive, identify the certificate.
        key = (names[0], *sorted(names[2:]))
        now = self.clock()
        with self._lock:
            edge = self._edges.get(key)
            if edge is None or needs_renewal(edge.issued, now):
                try:
                    edge = self._load_or_issue(key, names, now)
                except OSError as e:
                    raise CertError(
                        f"cannot store the edge certificate for {names[0]} in {self.directory}: {e}"
                    ) from None
                self._edges[key] = edge
            return edge

    def _load_or_issue(self, key: tuple[str, ...], names: tuple[str, ...], now: datetime.datetime) -> _Edge:
        zone, extras = key[0], key[1:]
        # Extras make a different certificate, so a different file; a short digest keeps names sane.
        stem = zone if not extras else f"{zone}+{hashlib.sha256('|'.join(extras).encode()).hexdigest()[:12]}"
        cert_path, key_path = self.directory / f"{stem}.pem", self.directory / f"{stem}.key"
        with _folder_lock(self.directory):
            issued = self._reusable(cert_path, key_path, names, now)
            if issued is None:
                issued = issue(self.ca, names, now, days=EDGE_DAYS)
                _write_pair(issued, self.directory, stem)
            # Loaded under the lock, so the files are the pair `issued` describes.
            return _Edge(issued, server_ssl_context(cert_path, key_path))

    def _reusable(
        self, cert_path: Path, key_path: Path, names: tuple[str, ...], now: datetime.datetime
    ) -> IssuedCertificate | None:
        try:
            on_disk = decode_issued(cert_path.read_bytes(), key_path.read_bytes())
        except (OSError, CertError):
            return None  # missing, unreadable or corrupt: a cache file, so issue a new one
        if on_disk.ca_cert != self.ca.cert or set(on_disk.names) != set(names) or needs_renewal(on_disk, now):
            return None
        return on_disk


# ----------------------------------------------------------------------------- origins and clients


def issue_origin_certificate(
    state_dir: Path,
    names: Sequence[str],
    out_dir: Path | None = None,
    *,
    ips: Sequence[IPAddress | str] = (),
    now: datetime.datetime | None = None,
) -> tuple[Path, Path]:
    """Like Cloudflare's Origin CA: a certificate for a user's origin, signed by the local CA
    (created if missing), valid five years (ORIGIN_DAYS) or until the CA expires if sooner.

    `names` are DNS names; any that parse as IP addresses join `ips` as IP SANs. Written to
    `<out_dir or state_dir/origin-certs>/<first name>.pem|.key` (a wildcard's `*` becomes
    `_wildcard`); returns `(pem_path, key_path)`. CertError for bad names or unwritable files.
    """
    dns: list[str] = []
    addresses: list[IPAddress] = []
    for name in names:
        try:
            addresses.append(ipaddress.ip_address(name.strip()))
        except ValueError:
            dns.append(name)
    for ip in ips:
        try:
            addresses.append(ipaddress.ip_address(ip.strip() if isinstance(ip, str) else ip))
        except ValueError:
            raise CertError(f"{ip!r} is not an IP address") from None
    ca, _ = open_ca(state_dir, now)
    cert = issue(ca, dns, now or _now(), days=ORIGIN_DAYS, ips=addresses)
    first = cert.names[0] if cert.names else str(cert.ips[0])
    stem = first.replace("*", "_wildcard").replace(":", "_")
    return write_issued(cert, out_dir or state_dir / "origin-certs", stem)


def client_ssl_context(state_dir: Path) -> ssl.SSLContext:
    """A client context that trusts only the state directory's CA (created if missing): hostname
    checking on, certificate required, TLS >= 1.2, ALPN http/1.1. For strict mode toward origins
    and for tests."""
    ca, _ = open_ca(state_dir)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_verify_locations(cadata=ca.cert_pem().decode("ascii"))
    context.set_alpn_protocols(ALPN)
    return context
