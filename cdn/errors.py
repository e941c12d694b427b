"""Errors the CDN answers itself, and their pages (reference section 6).

One root, `EdgeError`; each subclass carries the HTTP status and the Cloudflare code that go on
the wire. Foreign exceptions (OSError, ssl.SSLError, h11 errors) are translated into these once,
at the I/O boundary (`cdn.upstream`, `cdn.server`).

Page format (emulator's choice, documented):
- `Accept` naming `application/json` -> a JSON body `{"error_code", "error_name", "title",
  "ray_id", "client_ip", "status"}`.
- A browser (`Accept` with `text/html`, or a `Mozilla/` user agent) -> an HTML page with the code,
  title, ray id and client IP, as Cloudflare's pages show.
- Anything else (curl, scripts) -> `text/plain` `error code: NNNN` for 1xxx codes (observed
  Cloudflare behaviour for non-browser clients, reference section 6); 5xx origin errors
  (520-526) and client errors keep the HTML page, as Cloudflare serves its 5xx pages to curl too.

Headers: `cf-error-type` takes the vocabulary of the `cf.response.error_type` field (`1xxx`,
`5xx`, `waf`, `managed_challenge`); `cf-error-code` carries the numeric code (emulator addition,
so tests and scripts need not parse bodies). Errors relayed from the origin never carry them.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from typing import ClassVar


class EdgeError(Exception):
    """An answer the edge generates instead of the origin's."""

    status: ClassVar[int] = 500
    code: ClassVar[int] = 0
    title: ClassVar[str] = "Internal error"
    error_type: ClassVar[str] = "5xx"

    def __init__(self, detail: str = "") -> None:
        self.detail = detail
        super().__init__(f"{self.code or self.status} {self.title}" + (f": {detail}" if detail else ""))


# ----------------------------------------------------------------------------- 1xxx


class ProhibitedIP(EdgeError):
    """1000: origin resolves to a CDN IP, the request re-enters the CDN, or inbound headers look
    like a proxy chain (fact 22)."""

    status, code, title, error_type = 403, 1000, "DNS points to prohibited IP", "1xxx"


class LoopDetected(ProhibitedIP):
    """1000-class: CDN-Loop says the request went round more than `limits.cdn_loop_limit` times."""


class RestrictedIP(EdgeError):
    """1002: the origin resolves to a local or disallowed address. In the emulator: localhost
    (127.0.0.1, ::1), the emulator's own service addresses (admin API, resolver, egress
    addresses) and unspecified, multicast or broadcast addresses."""

    status, code, title, error_type = 403, 1002, "DNS points to prohibited IP", "1xxx"


class DnsResolutionError(EdgeError):
    """1001: Host names no zone."""

    status, code, title, error_type = 409, 1001, "DNS resolution error", "1xxx"


class DirectIPAccess(EdgeError):
    """1003: Host is an IP address (or absent)."""

    status, code, title, error_type = 403, 1003, "Direct IP access not allowed", "1xxx"


class HostSniMismatch(EdgeError):
    """1013: Host belongs to another zone than the TLS SNI (403 per reference section 11)."""

    status, code, title, error_type = 403, 1013, "HTTP hostname and TLS SNI hostname mismatch", "1xxx"


class OriginDnsError(EdgeError):
    """1016: the origin hostname does not resolve (HTTP 530)."""

    status, code, title, error_type = 530, 1016, "Origin DNS error", "1xxx"


class AccessDenied(EdgeError):
    """1020: a WAF custom rule blocked the request."""

    status, code, title, error_type = 403, 1020, "Access denied", "waf"


# ----------------------------------------------------------------------------- 5xx


class BadGateway(EdgeError):
    status, code, title = 502, 502, "Bad gateway"


class OriginUnknownError(EdgeError):
    """520: empty, garbled or oversized response from the origin."""

    status, code, title = 520, 520, "Web server is returning an unknown error"


class OriginDown(EdgeError):
    """521: the origin refused the TCP connection."""

    status, code, title = 521, 521, "Web server is down"


class OriginConnectTimeout(EdgeError):
    """522: no SYN-ACK within `limits.origin_connect_timeout`."""

    status, code, title = 522, 522, "Connection timed out"


class OriginUnreachable(EdgeError):
    """523: no route to the origin."""

    status, code, title = 523, 523, "Origin is unreachable"


class OriginReadTimeout(EdgeError):
    """524: connected, but no response head within `limits.origin_read_timeout`."""

    status, code, title = 524, 524, "A timeout occurred"


class OriginTLSHandshakeFailed(EdgeError):
    """525: full/strict and the origin TLS handshake failed."""

    status, code, title = 525, 525, "SSL handshake failed"


class OriginInvalidCertificate(EdgeError):
    """526: strict and the origin certificate did not verify (CA, name, expiry)."""

    status, code, title = 526, 526, "Invalid SSL certificate"


# ----------------------------------------------------------------------------- client errors


class ClientError(EdgeError):
    """The client's request is malformed; no Cloudflare code."""

    status, code, title, error_type = 400, 0, "Bad Request", ""


class HeadersTooLarge(ClientError):
    status, title = 431, "Request Header Fields Too Large"


class PayloadTooLarge(ClientError):
    """413: the request body is over `limits.max_request_body_bytes` (Cloudflare: 100 MB on
    the Free and Pro plans)."""

    status, title = 413, "Payload Too Large"


class RequestTimeout(ClientError):
    status, title = 408, "Request Timeout"


# ----------------------------------------------------------------------------- pages


@dataclass(frozen=True, slots=True)
class ErrorPage:
    status: int
    content_type: str
    body: bytes
    headers: tuple[tuple[bytes, bytes], ...]  # without framing / server / cf-ray


def wants_json(accept: str) -> bool:
    return "application/json" in accept.lower()


def is_browser(accept: str, user_agent: str) -> bool:
    return "text/html" in accept.lower() or user_agent.startswith("Mozilla/")


def render_error(
    error: EdgeError, *, ray_id: str, colo: str, client_ip: str, accept: str = "", user_agent: str = ""
) -> ErrorPage:
    """The page for `error` as the client asked for it (see the module docstring)."""
    code = error.code or error.status
    headers: list[tuple[bytes, bytes]] = []
    if error.error_type:
        headers.append((b"cf-error-type", error.error_type.encode()))
        headers.append((b"cf-error-code", str(code).encode()))
    if wants_json(accept):
        body = json.dumps(
            {
                "error_code": code,
                "error_name": error.title,
                "title": error.title,
                "status": error.status,
                "ray_id": ray_id,
                "client_ip": client_ip,
                "colo": colo,
            },
            separators=(",", ":"),
        ).encode()
        return ErrorPage(error.status, "application/json", body, tuple(headers))
    if error.code >= 1000 and not is_browser(accept, user_agent):
        return ErrorPage(error.status, "text/plain; charset=UTF-8", f"error code: {code}".encode(), tuple(headers))
    return ErrorPage(error.status, "text/html; charset=UTF-8", _html(error, code, ray_id, client_ip), tuple(headers))


def _html(error: EdgeError, code: int, ray_id: str, client_ip: str) -> bytes:
    title = html.escape(error.title)
    label = f"Error {code}" if code else f"{error.status}"
    return (
        '<!DOCTYPE html>\n<html lang="en-US"><head><meta charset="UTF-8">'
        f"<title>{label}: {title}</title></head>\n<body>\n"
        f'<div id="cf-error-details"><h1><span class="cf-error-type">Error</span> '
        f'<span class="cf-error-code">{code or error.status}</span></h1>\n'
        f'<h2 class="cf-subheadline">{title}</h2>\n'
        f'<p>Cloudflare Ray ID: <strong class="font-semibold">{html.escape(ray_id)}</strong> &bull; '
        f'Your IP: <span class="cf-footer-ip">{html.escape(client_ip)}</span> &bull; '
        "Performance &amp; security by Cloudflare (edge emulator)</p>\n</div>\n</body></html>\n"
    ).encode()


def render_challenge(*, ray_id: str, client_ip: str) -> bytes:
    """The interstitial body for challenge / js_challenge / managed_challenge (never solvable here)."""
    return (
        '<!DOCTYPE html>\n<html lang="en-US"><head><meta charset="UTF-8"><title>Just a moment...</title></head>\n'
        "<body><h1>Checking your browser before accessing the site.</h1>\n"
        f"<p>Cloudflare Ray ID: <strong>{html.escape(ray_id)}</strong> &bull; Your IP: {html.escape(client_ip)}</p>"
        "\n</body></html>\n"
    ).encode()
