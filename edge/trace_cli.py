"""`edge trace URL`: make one request through the edge and print the path it took.

The request is made here (curl-like: `--resolve HOST:PORT:ADDR` picks the address to dial, SNI
and Host stay HOST; TLS is verified against `--cacert` or `<state_dir>/ca/ca.pem`). The
response's `cf-ray` names the trace, fetched from the admin API's `/trace/{ray}` (base from
`--api`, or the admin address in the store of `--state-dir`) and printed as a tree, or as JSON
with `--json`.

Exit status: 0 when the request completed (any HTTP status; a missing trace is reported on
stderr), 1 when the request could not be made (connection refused, timeout, TLS failure, bad
response), 2 for a usage error (bad URL or `--resolve`). Never a traceback.
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import sqlite3
import ssl
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote, urlsplit

USER_AGENT = "edge-trace/1"
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 30.0
MAX_BODY = 16 * 1024 * 1024
# The CDN stores a trace when the request finishes, possibly just after the response leaves;
# ask again on 404 for this long before saying it is unknown.
TRACE_WAIT = 2.0
TRACE_POLL = 0.05


class TraceError(Exception):
    """A failure with its exit status (1 request failed, 2 usage) and a message for people."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True, slots=True)
class Target:
    url: str
    scheme: str
    host: str
    port: int
    path: str
    address: str  # what is dialled: the --resolve address, or the host itself

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        name = f"[{self.host}]" if ":" in self.host else self.host
        return name if self.port == default else f"{name}:{self.port}"


@dataclass(slots=True)
class Response:
    status: int
    reason: str
    version: str
    headers: list[tuple[str, str]]
    body_bytes: int
    peer: str
    tls_version: str | None
    connect_ms: float
    total_ms: float

    def header(self, name: str) -> str | None:
        lname = name.lower()
        for k, v in self.headers:
            if k.lower() == lname:
                return v
        return None

    def as_json(self) -> dict[str, Any]:
        return {"status": self.status, "reason": self.reason, "http_version": self.version,
                "headers": [[k, v] for k, v in self.headers], "body_bytes": self.body_bytes,
                "peer": self.peer, "tls_version": self.tls_version,
                "connect_ms": self.connect_ms, "total_ms": self.total_ms}


@dataclass(slots=True)
class TraceResult:
    api: str
    ray: str | None
    trace: dict[str, Any] | None = None
    problem: str | None = None
    failed: bool = False  # the admin API could not be reached: exit 1
    extra: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- parsing


def parse_resolve(entries: Sequence[str]) -> dict[tuple[str, int], str]:
    """curl's `--resolve HOST:PORT:ADDR` (ADDR may be `[v6]`; several ADDRs: the first is used)."""
    out: dict[tuple[str, int], str] = {}
    for entry in entries:
        host, sep1, rest = entry.partition(":")
        port_text, sep2, addr = rest.partition(":")
        if not (sep1 and sep2 and host and addr):
            raise TraceError(f"--resolve {entry!r}: expected HOST:PORT:ADDR", 2)
        try:
            port = int(port_text)
        except ValueError:
            raise TraceError(f"--resolve {entry!r}: {port_text!r} is not a port", 2) from None
        first = addr.split(",", 1)[0].strip()
        if first.startswith("[") and first.endswith("]"):
            first = first[1:-1]
        out[(host.lower().rstrip("."), port)] = first
    return out


def parse_target(url: str, resolves: Mapping[tuple[str, int], str]) -> Target:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise TraceError(f"{url!r} is not a URL: {e}", 2) from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise TraceError(f"{url!r}: only http:// and https:// URLs can be traced", 2)
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise TraceError(f"{url!r} has no host", 2)
    if port is None:
        port = 443 if scheme == "https" else 80
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    address = resolves.get((host, port)) or resolves.get(("*", port)) or host
    return Target(url, scheme, host, port, path, address)


# --------------------------------------------------------------------------- the request


def tls_context(cacert: str | None, state_dir: str | None) -> ssl.SSLContext:
    """Trust `cacert`, else the edge's CA in `state_dir`, else the system's roots."""
    path: Path | None
    if cacert:
        path = Path(cacert)
        if not path.is_file():
            raise TraceError(f"--cacert {cacert}: no such file")
    else:
        candidate = Path(state_dir or ".edge") / "ca" / "ca.pem"
        path = candidate if candidate.is_file() else None
    try:
        return ssl.create_default_context(cafile=str(path) if path else None)
    except (ssl.SSLError, OSError) as e:
        raise TraceError(f"cannot load CA certificates from {path}: {e}") from None


def make_request(target: Target, context: ssl.SSLContext | None, *,
                 connect_timeout: float = CONNECT_TIMEOUT, read_timeout: float = READ_TIMEOUT) -> Response:
    """GET the target once over a fresh connection. Raises TraceError (exit 1) on any failure."""
    where = f"{target.address}:{target.port}"
    started = time.perf_counter()
    sock: socket.socket | None = None
    resp: http.client.HTTPResponse | None = None
    try:
        try:
            sock = socket.create_connection((target.address, target.port), timeout=connect_timeout)
        except socket.gaierror as e:
            raise TraceError(f"cannot resolve {target.address}: {e.strerror or e}"
                             " (use --resolve HOST:PORT:ADDR to pick the edge address)") from None
        except TimeoutError:
            raise TraceError(f"connecting to {where} timed out after {connect_timeout:g}s") from None
        except OSError as e:
            raise TraceError(f"cannot connect to {where}: {e.strerror or e}") from None
        tls_version: str | None = None
        if target.scheme == "https":
            if context is None:
                raise TraceError("an https URL needs a TLS context", 2)
            try:
                sock = context.wrap_socket(sock, server_hostname=target.host)
            except ssl.SSLCertVerificationError as e:
                raise TraceError(f"TLS certificate of {where} (SNI {target.host}) not trusted: "
                                 f"{e.verify_message or e.reason} (pass --cacert, or --state-dir for the"
                                 " edge's CA)") from None
            except ssl.SSLError as e:
                raise TraceError(f"TLS handshake with {where} (SNI {target.host}) failed: "
                                 f"{e.reason or e}") from None
            except TimeoutError:
                raise TraceError(f"TLS handshake with {where} timed out") from None
            except OSError as e:
                raise TraceError(f"TLS handshake with {where} failed: {e.strerror or e}") from None
            tls_version = sock.version()
        connect_ms = (time.perf_counter() - started) * 1000
        sock.settimeout(read_timeout)
        request = (f"GET {target.path} HTTP/1.1\r\nHost: {target.host_header}\r\n"
                   f"User-Agent: {USER_AGENT}\r\nAccept: */*\r\nConnection: close\r\n\r\n")
        try:
            sock.sendall(request.encode("latin-1"))
            resp = http.client.HTTPResponse(sock, method="GET")
            resp.begin()
            body = 0
            while body < MAX_BODY:
                chunk = resp.read(65536)
                if not chunk:
                    break
                body += len(chunk)
        except TimeoutError:
            raise TraceError(f"no complete response from {where} within {read_timeout:g}s") from None
        except (http.client.HTTPException, ValueError) as e:
            raise TraceError(f"bad HTTP response from {where}: {type(e).__name__} {e}") from None
        except ssl.SSLError as e:
            raise TraceError(f"TLS error talking to {where}: {e.reason or e}") from None
        except OSError as e:
            raise TraceError(f"connection to {where} broke: {e.strerror or e}") from None
        version = {10: "HTTP/1.0", 11: "HTTP/1.1"}.get(resp.version, "HTTP/?")
        return Response(resp.status, resp.reason, version, list(resp.getheaders()), body, where, tls_version,
                        round(connect_ms, 3), round((time.perf_counter() - started) * 1000, 3))
    finally:
        if resp is not None:
            resp.close()  # its file object holds the socket open past sock.close()
        if sock is not None:
            sock.close()


# --------------------------------------------------------------------------- the admin API


def api_base(api: str | None, state_dir: str | None) -> str:
    """`--api`, else the admin address in the store of `state_dir`, else the built-in default.

    The store's database is read directly, read-only: opening a `Store` would create files in a
    mistyped directory and log to stdout, which would corrupt `--json` output."""
    if api:
        base = api if "://" in api else f"http://{api}"
        return base.rstrip("/")
    written = Path(state_dir or ".edge") / "admin.url"  # written by the running admin listener
    try:
        url = written.read_text(encoding="utf-8").strip()
    except OSError:
        url = ""
    if url.startswith("http"):
        return url.rstrip("/")
    config, offset = stored_config(state_dir)
    address, port = config.api.address, config.api.port + offset
    host = f"[{address}]" if address.version == 6 else str(address)
    return f"http://{host}:{port}"


def stored_config(state_dir: str | None) -> tuple[Any, int]:
    """The newest config in the store of `state_dir` (the built-in default if there is none)
    and its port offset, read directly and read-only."""
    from edge.config import build_config, default_config
    from edge.store import resolve_port_offset

    db = Path(state_dir or ".edge") / "edge.db"
    config = default_config()
    if db.is_file():
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5.0)
        try:
            row = conn.execute("SELECT config FROM snapshots ORDER BY generation DESC LIMIT 1").fetchone()
        finally:
            conn.close()
        if row is not None:
            config = build_config(json.loads(row[0]))
    return config, resolve_port_offset(config)


def resolve_via_edge(host: str, state_dir: str | None, *, timeout: float = 2.0) -> str | None:
    """For a name under one of the emulator's zones, its first address from the emulator's own
    resolver (public view: what a client whose DNS is the resolver would dial). None otherwise."""
    from dnslib import QTYPE, DNSRecord

    try:
        config, offset = stored_config(state_dir)
    except Exception:
        return None
    name = host.lower().rstrip(".")
    if not any(name == z.name or name.endswith("." + z.name) for z in config.zones):
        return None  # not one of the emulator's names: the system resolver's business
    server = (str(config.network.resolver), config.network.resolver_port + offset)
    query = DNSRecord.question(host, "A")
    family = socket.AF_INET6 if ":" in server[0] else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.settimeout(timeout)
            sock.sendto(query.pack(), server)
            reply = DNSRecord.parse(sock.recv(4096))
    except Exception:  # no resolver there, or a garbled reply: the caller's error stands
        return None
    for rr in reply.rr:
        if rr.rtype == QTYPE.A:
            return str(rr.rdata)
    return None


def fetch_trace(base: str, ray: str, *, wait: float = TRACE_WAIT, timeout: float = 5.0) -> TraceResult:
    """GET {base}/trace/{ray}, asking again on 404 for up to `wait` seconds."""
    parts = urlsplit(base)
    result = TraceResult(base, ray)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        result.problem = f"--api {base!r} is not an http:// URL"
        return result
    path = (parts.path.rstrip("/") or "") + "/trace/" + quote(ray, safe="")
    deadline = time.monotonic() + wait
    while True:
        conn: http.client.HTTPConnection = (
            http.client.HTTPSConnection(parts.hostname, parts.port, timeout=timeout) if parts.scheme == "https"
            else http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout))
        try:
            conn.request("GET", path, headers={"User-Agent": USER_AGENT, "Accept": "application/json"})
            resp = conn.getresponse()
            status, data = resp.status, resp.read()
        except (OSError, http.client.HTTPException) as e:
            result.problem = (f"cannot reach the admin API at {base}: {getattr(e, 'strerror', None) or e}"
                              " (is the api role running? pass --api or --state-dir)")
            result.failed = True
            return result
        finally:
            conn.close()
        if status == 404 and time.monotonic() < deadline:
            time.sleep(TRACE_POLL)
            continue
        try:
            body = json.loads(data)
        except ValueError:
            body = None
        if status == 200 and isinstance(body, dict):
            result.trace = body
        else:
            reason = body.get("error") if isinstance(body, dict) else data[:200].decode("utf-8", "replace")
            result.problem = f"trace {ray} not available from {base}: HTTP {status}: {reason}"
        return result


# --------------------------------------------------------------------------- rendering


def _value(v: Any) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, float):
        return f"{v:g}"
    return json.dumps(v, separators=(",", ":"), default=str)


STEP_KEYS = ("stage", "decision", "at_ms")


def render_steps(steps: Sequence[Mapping[str, Any]]) -> list[str]:
    """The steps as a tree: one line per step (stage, decision, time), its details below it."""
    if not steps:
        return ["└── (no steps recorded)"]
    width = max(len(str(s.get("stage", "?"))) for s in steps)
    lines: list[str] = []
    for i, step in enumerate(steps):
        last = i == len(steps) - 1
        at = step.get("at_ms")
        timing = f"  +{float(at):.1f} ms" if isinstance(at, int | float) else ""
        lines.append(f"{'└──' if last else '├──'} {step.get('stage', '?')!s:<{width}}  "
                     f"{_value(step.get('decision', ''))}{timing}")
        cont = "    " if last else "│   "
        for key, value in step.items():
            if key in STEP_KEYS:
                continue
            lines.append(f"{cont}{' ' * (width + 2)}{key}: {_value(value)}")
    return lines


KIND_LABEL = {"cdn": "CDN IP", "spectrum": "Spectrum IP", "other": "non-edge IP", "unknown": "unknown IP"}


def render_report(target: Target, response: Response, result: TraceResult) -> str:
    """What `edge trace` prints: the request, the response, then the path as a tree."""
    lines = [f"GET {target.url}"]
    dial = f"{target.address}:{target.port}"
    tls = f" ({response.tls_version}, SNI {target.host})" if response.tls_version else ""
    lines.append(f"  connected to {dial}{tls} in {response.connect_ms:.1f} ms")
    lines.append(f"  {response.version} {response.status} {response.reason} in {response.total_ms:.1f} ms,"
                 f" {response.body_bytes} body bytes")
    ray_header = response.header("cf-ray")
    lines.append(f"  cf-ray: {ray_header}" if ray_header else "  cf-ray: (none)")
    trace = result.trace
    if trace is None:
        return "\n".join(lines) + "\n"
    records = trace.get("records") or {}
    lines.append("")
    colo = trace.get("colo")
    lines.append(f"path of ray {trace.get('ray_id', result.ray)}" + (f" (colo {colo})" if colo else ""))
    req = records.get("request") if isinstance(records, dict) else None
    if isinstance(req, dict):
        kind = str(req.get("edge_kind", "unknown"))
        note = ""
        if req.get("misdirected"):
            note = "  <- Spectrum hostname on a CDN IP: misdirected"
        elif req.get("spectrum_host"):
            note = "  (Spectrum hostname)"
        lines.append(f"  arrived on {KIND_LABEL.get(kind, kind)} {req.get('edge_ip')}:{req.get('edge_port')}{note}")
        lines.append(f"  logged: zone {req.get('zone') or '-'}, edge status {req.get('status')},"
                     f" origin {req.get('origin_ip') or '-'} status {req.get('origin_status')},"
                     f" security action {req.get('security_action')}")
    for fw in (records.get("firewall_events") or []) if isinstance(records, dict) else []:
        lines.append(f"  WAF {fw.get('action')}: rule {fw.get('rule_id')} {fw.get('description') or ''}".rstrip())
    steps = trace.get("steps")
    lines.extend(render_steps(steps if isinstance(steps, list) else []))
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- entry point


def run_trace(args: argparse.Namespace, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    state_dir: str | None = getattr(args, "state_dir", None)
    try:
        target = parse_target(args.url, parse_resolve(getattr(args, "resolve", None) or []))
        context = tls_context(getattr(args, "cacert", None), state_dir) if target.scheme == "https" else None
        if target.address == target.host:  # no --resolve: the emulator's names via its own resolver
            found = resolve_via_edge(target.host, state_dir)
            if found is not None:
                print(f"edge trace: {target.host} resolved by the emulator's resolver: {found}", file=err)
                target = replace(target, address=found)
        response = make_request(target, context)
    except TraceError as e:
        print(f"edge trace: {e}", file=err)
        return e.exit_code
    ray = response.header("cf-ray")
    result = TraceResult(api="", ray=ray)
    if ray:
        try:
            base = api_base(getattr(args, "api", None), state_dir)
        except Exception as e:  # a broken store must not hide the response we already have
            result.problem = f"cannot find the admin API from --state-dir {state_dir}: {e} (pass --api)"
            result.failed = True
        else:
            result = fetch_trace(base, ray)
    else:
        result.problem = ("the response has no cf-ray header, so it did not come from the edge's CDN"
                          " (a Spectrum app or another server answered); there is no trace")
    if getattr(args, "json", False):
        doc = {"request": {"url": target.url, "host": target.host, "port": target.port, "path": target.path,
                           "address": target.address},
               "response": response.as_json(), "ray_id": ray, "api": result.api or None,
               "trace": result.trace, "problem": result.problem}
        print(json.dumps(doc, indent=2, default=str), file=out)
    else:
        print(render_report(target, response, result), end="", file=out)
    if result.problem:
        print(f"edge trace: {result.problem}", file=err)
    return 1 if result.failed else 0
