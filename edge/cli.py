"""`edge` command line: up, check, ca, certs origin, trace.

User mistakes (a bad config, a missing file, a bind that fails) are reported as messages with
exit status 1 or 2, never as tracebacks.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

import structlog

from edge.config import ConfigError, EdgeConfig, load_config
from edge.runtime import ALL_ROLES

DEFAULT_STATE_DIR = Path(os.environ.get("EDGE_STATE_DIR", ".edge"))


def _read_config(path: Path) -> EdgeConfig:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError([]) from e
    return load_config(text)


def _print_problems(path: str, err: ConfigError) -> None:
    if err.problems:
        print(f"{path}: {len(err.problems)} problem(s):", file=sys.stderr)
        for p in err.problems:
            print(f"  {p}", file=sys.stderr)


def summary(config: EdgeConfig) -> str:
    from edge.store import assign_dynamic_ips

    net = config.network
    ips = assign_dynamic_ips(config)
    lines = [
        f"admin API   {config.api.address}:{config.api.port}",
        f"resolver    {net.resolver}:{net.resolver_port}",
        f"CDN IPs     {', '.join(map(str, net.cdn_ips))}  http {list(net.cdn_http_ports)} "
        f"https {list(net.cdn_https_ports)}  egress {net.cdn_egress_ip}",
        f"Spectrum    pool {net.spectrum_ips}  egress {net.spectrum_egress_ip}",
        f"port offset {net.port_offset}",
        f"lists       {len(config.lists)}",
        f"zones       {len(config.zones)}",
    ]
    for z in config.zones:
        rs = z.custom_ruleset
        rules = rs.rules if rs else ()
        lines.append(
            f"  {z.name}  ssl={z.settings.ssl}  records={len(z.dns_records)}  apps={len(z.spectrum_apps)}"
            f"  rules={len(rules)} ({sum(r.enabled for r in rules)} enabled)"
            f"  access_rules={len(z.access_rules)}"
        )
        for r in z.dns_records:
            lines.append(f"    {r.type:5} {r.name} -> {r.content}{'  (proxied)' if r.proxied else ''}")
        for a in z.spectrum_apps:
            where = ", ".join(str(ip) for ip in ips.get(a.id or "", ()))
            target = ", ".join(a.origin_direct or ()) or (a.origin_dns.name if a.origin_dns else "")
            lines.append(
                f"    app   {a.dns.name} {a.protocol} on {where} -> {target}"
                f"  [{a.traffic_type}, proxy_protocol={a.proxy_protocol}, tls={a.tls}]"
            )
    return "\n".join(lines)


def cmd_check(args: argparse.Namespace) -> int:
    path = Path(args.file)
    try:
        config = _read_config(path)
    except ConfigError as e:
        if e.__cause__ is not None:
            print(f"{path}: cannot read: {e.__cause__}", file=sys.stderr)
            return 2
        _print_problems(str(path), e)
        return 1
    print(f"{path}: OK")
    print(summary(config))
    return 0


def cmd_ca(args: argparse.Namespace) -> int:
    from certs import CertError
    from certs.files import open_ca

    try:
        _ca, path = open_ca(Path(args.state_dir))
    except (CertError, OSError) as e:
        print(f"edge ca: {e}", file=sys.stderr)
        return 1
    print(path)
    print(path.read_text(), end="")
    return 0


def cmd_certs_origin(args: argparse.Namespace) -> int:
    from certs import CertError
    from certs.files import issue_origin_certificate

    try:
        cert, key = issue_origin_certificate(Path(args.state_dir), args.names, Path(args.out) if args.out else None)
    except (CertError, OSError, ValueError) as e:
        print(f"edge certs origin: {e}", file=sys.stderr)
        return 1
    print(f"certificate {cert}\nkey         {key}")
    return 0


def _edge_command() -> str:
    """How to run `edge` from the user's shell: `edge` when that is what is on PATH, else the
    path this process was started by (`make up` runs `.venv/bin/edge`)."""
    argv0 = sys.argv[0]
    on_path = shutil.which("edge")
    if os.path.basename(argv0) != "edge":
        return "edge" if on_path else f"{sys.executable} -m edge"
    if on_path and os.path.realpath(on_path) == os.path.realpath(argv0):
        return "edge"
    return argv0 if os.sep in argv0 else "./" + argv0


def experiment_lines(snapshot: object) -> list[str]:
    """The README's experiments with the addresses and ports actually in use."""
    from edge.store import Snapshot

    assert isinstance(snapshot, Snapshot)
    net = snapshot.config.network
    lp = snapshot.listen_port
    api = snapshot.config.api
    admin = f"http://{api.address}:{lp(api.port)}"
    dig = f"dig @{net.resolver}" + (f" -p {lp(net.resolver_port)}" if snapshot.port_offset else "")
    https = lp(443)
    lines = [
        "try it:",
        f"  curl -s {admin}/ca.pem > ca.pem",
        f"  {dig} www.example.com +short                      # public view: CDN edge IPs",
        f"  {dig} -b {net.cdn_egress_ip} www.example.com +short   # internal view: the origin",
    ]
    if net.cdn_ips:
        cdn = net.cdn_ips[0]
        port = f":{https}" if https != 443 else ""
        lines.append(f"  curl --cacert ca.pem --resolve spectrum.example.com:{https}:{cdn}"
                     f" https://spectrum.example.com{port}/   # the misdirected request")
        lines.append(f"  {_edge_command()} trace https://spectrum.example.com{port}/ --cacert ca.pem"
                     f" --resolve spectrum.example.com:{https}:{cdn}")
    spec = snapshot.spectrum_hosts.get("spectrum.example.com")
    if spec:
        port = f":{https}" if https != 443 else ""
        lines.append(f"  curl --cacert ca.pem --resolve spectrum.example.com:{https}:{spec[0]}"
                     f" https://spectrum.example.com{port}/   # on its Spectrum IP: plain L4")
    lines.append(f"  dashboard: {admin}/")
    return lines


async def _up(args: argparse.Namespace, config: EdgeConfig | None, initial: EdgeConfig | None) -> int:
    from certs.files import open_ca
    from edge.events import EventSink
    from edge.harness import open_store, wait_ready
    from edge.runtime import Binds, Connections, RoleContext, install_signal_handlers, serve_roles, sighup_reloader

    log = structlog.get_logger("edge.cli")
    state_dir = Path(args.state_dir)
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    open_ca(state_dir)
    store = open_store(
        state_dir,
        config,
        port_offset=args.port_offset,
        source="file" if config is not None else "default",
        initial=initial,
    )
    snapshot = store.current
    if snapshot.port_offset:
        print(
            f"edge: ports below 1024 can't be bound here; port offset {snapshot.port_offset} applies to every"
            f" listener and internal connection (443 -> {443 + snapshot.port_offset})",
            file=sys.stderr,
        )
    roles = tuple(r for r in args.roles.split(",") if r) if args.roles else ALL_ROLES
    logs = store.current.config.logs
    log_dir = state_dir / "logs" if (args.logpush or logs.logpush) else None
    events = EventSink(log_dir=log_dir, log_records=logs.records)
    ctx = RoleContext(
        store=store, events=events, binds=Binds(), connections=Connections(), state_dir=state_dir, roles=roles
    )
    stop, force = asyncio.Event(), asyncio.Event()
    remove_signals = install_signal_handlers(stop, force)
    config_path = Path(args.config) if args.config else None

    def reload() -> None:
        if config_path is None:
            log.info("edge.config.reload_skipped", reason="no --config file; the store is the source")
            return
        try:
            new = _read_config(config_path)
        except ConfigError as e:
            log.error(
                "edge.config.reload_rejected",
                path=str(config_path),
                problems=[str(p) for p in e.problems] or [repr(e.__cause__)],
            )
            return
        try:
            store.apply(new, source="file")
        except ConfigError as e:
            log.error("edge.config.reload_rejected", path=str(config_path), problems=[str(p) for p in e.problems])
            return
        log.info("edge.config.reloaded", path=str(config_path), generation=store.current.generation)

    remove_hup = sighup_reloader(reload)

    async def watch_file() -> None:
        if config_path is None:
            return
        last = config_path.stat().st_mtime_ns if config_path.exists() else 0
        while True:
            await asyncio.sleep(0.5)
            try:
                mtime = config_path.stat().st_mtime_ns
            except OSError:
                continue
            if mtime != last:
                last = mtime
                reload()

    watcher = asyncio.create_task(watch_file())
    runner = asyncio.create_task(serve_roles(ctx, stop=stop, force=force))
    try:
        try:
            await wait_ready(ctx, runner, timeout=30.0)
        except Exception as e:
            print(f"edge: not ready:\n{e}", file=sys.stderr)
            stop.set()
            await runner
            return 1
        print(f"edge: ready (generation {store.current.generation}, roles {', '.join(roles)})", file=sys.stderr)
        for line in experiment_lines(store.current):
            print(line, file=sys.stderr)
        failed = await runner
        if failed:
            print(f"edge: stopped because role(s) failed: {', '.join(failed)} (see the log)", file=sys.stderr)
            return 1
        print("edge: stopped", file=sys.stderr)
    finally:
        watcher.cancel()
        remove_signals()
        remove_hup()
        events.close()
        store.close()
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    from edge.logs import configure_logging

    configure_logging(args.log_format)
    configs: list[EdgeConfig | None] = []
    for path in (args.config, args.init_config):
        if not path:
            configs.append(None)
            continue
        try:
            configs.append(_read_config(Path(path)))
        except ConfigError as e:
            if e.__cause__ is not None:
                print(f"{path}: cannot read: {e.__cause__}", file=sys.stderr)
                return 2
            _print_problems(path, e)
            return 1
    config, initial = configs
    import uvloop

    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(_up(args, config, initial))
    except ConfigError as e:
        _print_problems("store", e)
        return 1


def cmd_trace(args: argparse.Namespace) -> int:
    try:
        from edge.trace_cli import run_trace
    except ModuleNotFoundError:
        print("edge trace: not available in this build", file=sys.stderr)
        return 2
    return run_trace(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge", description="A local emulator of Cloudflare's edge.")
    parser.add_argument("--version", action="version", version=f"edge {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="run the emulator")
    up.add_argument("--config", help="YAML config file (default: the store's last config, or the built-in one)")
    up.add_argument(
        "--init-config", help="YAML config used only when the state directory holds none yet (containers)"
    )
    up.add_argument("--state-dir", default=str(DEFAULT_STATE_DIR), help="state directory (default ./.edge)")
    up.add_argument("--roles", default="", help=f"comma-separated subset of {','.join(ALL_ROLES)}")
    up.add_argument("--log-format", choices=["json", "console", "auto"], default="auto")
    up.add_argument("--port-offset", type=int, default=None, help="add this to every port (overrides config)")
    up.add_argument("--logpush", action="store_true", help="also write <state-dir>/logs/<dataset>.ndjson")
    up.set_defaults(func=cmd_up)

    check = sub.add_parser("check", help="validate a config file")
    check.add_argument("file")
    check.set_defaults(func=cmd_check)

    ca = sub.add_parser("ca", help="print the local CA's path and PEM")
    ca.add_argument("--state-dir", default=str(DEFAULT_STATE_DIR))
    ca.set_defaults(func=cmd_ca)

    certs = sub.add_parser("certs", help="certificates")
    certs_sub = certs.add_subparsers(dest="certs_command", required=True)
    origin = certs_sub.add_parser("origin", help="issue an origin certificate (like Cloudflare's Origin CA)")
    origin.add_argument("names", nargs="+")
    origin.add_argument("--state-dir", default=str(DEFAULT_STATE_DIR))
    origin.add_argument("--out", default=None)
    origin.set_defaults(func=cmd_certs_origin)

    trace = sub.add_parser("trace", help="make a request and print the path it took")
    trace.add_argument("url")
    trace.add_argument("--resolve", action="append", default=[], help="HOST:PORT:ADDR, as curl's")
    trace.add_argument("--cacert", default=None)
    trace.add_argument("--state-dir", default=str(DEFAULT_STATE_DIR))
    trace.add_argument("--api", default=None, help="admin API base URL (default from the store)")
    trace.add_argument("--json", action="store_true")
    trace.set_defaults(func=cmd_trace)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("edge-emulator")
    except PackageNotFoundError:
        return "unknown (not installed)"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with contextlib.suppress(BrokenPipeError):
        code: int = args.func(args)
        return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
