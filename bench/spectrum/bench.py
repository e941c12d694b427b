"""Spectrum benchmark: edge's Spectrum role side by side with nginx `stream` and haproxy `mode tcp`.

All three proxy the same origins in one run: an nginx HTTP origin (sendfile; `/big` is a sparse
file, `/small` answers 2 bytes) and a C UDP echo (`udp_echo.c`). Each proxy gets one core's
worth of workers (nginx `worker_processes 1`, haproxy `nbthread 1`, edge is one process), so
the ratios compare like with like. Scenarios:

- bulk: one connection downloads BULK bytes (default 2 GiB), MB/s;
- multi: 64 connections download BULK/64 each at once, aggregate MB/s;
- connrate: new connections per second, each `GET /small` HTTP/1.0 (request, 2-byte answer, close);
- udp: 512-byte datagrams per second echoed through the proxy (haproxy has no UDP);
- direct (a row, not a scenario): the client talks to the origins with no proxy, the ceiling of
  the harness itself;
- idle: RSS growth of the proxy per idle connection with IDLE (default 10,000) connections open.

Bounded: every scenario has a fixed size or duration. Not a test. Run via `bench/spectrum/run.sh`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from multiprocessing import Pool
from pathlib import Path
from typing import Any

BLOCK = 99
ORIGIN_HTTP = (f"127.{BLOCK}.30.1", 8080)
ORIGIN_UDP = (f"127.{BLOCK}.30.3", 5353)
NGINX = (f"127.{BLOCK}.40.1", 9000)
HAPROXY = (f"127.{BLOCK}.41.1", 9000)
HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


# --------------------------------------------------------------------------- processes


def rss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def children(pid: int) -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (p / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(p.name))
    return out


def maxconn() -> int:
    """Connections a proxy may hold within the descriptor limit (two descriptors each)."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return 100_000 if hard == resource.RLIM_INFINITY else max(1000, (hard - 200) // 2)


def wait_port(addr: tuple[str, int], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(addr, timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def warm(path: Path) -> None:
    """Read a fresh sparse file once, untimed. The first read of a hole allocates and zeroes its
    page-cache pages (measured: 290-390 MB/s against 1,900 warm), so without this whichever
    proxy is measured first pays for it: that was the "edge bulk alternates 390 / 1000 MB/s"
    stall (edge ran first)."""
    buf = bytearray(4 << 20)
    with open(path, "rb", buffering=0) as f:
        while f.readinto(buf):
            pass


@contextlib.contextmanager
def origins(work: Path, bulk: int) -> Iterator[None]:
    www = work / "www"
    www.mkdir()
    with open(www / "big", "wb") as f:
        f.truncate(bulk)
    warm(www / "big")
    conf = work / "origin.conf"
    conf.write_text(
        f"""
worker_processes 2;
worker_rlimit_nofile {resource.getrlimit(resource.RLIMIT_NOFILE)[1]};
pid {work}/origin.pid;
error_log {work}/origin.err warn;
events {{ worker_connections 60000; }}
http {{
  access_log off;
  sendfile on; tcp_nopush on;
  keepalive_timeout 600s; client_header_timeout 600s;
  client_body_temp_path {work}; proxy_temp_path {work}; fastcgi_temp_path {work};
  uwsgi_temp_path {work}; scgi_temp_path {work};
  server {{
    listen {ORIGIN_HTTP[0]}:{ORIGIN_HTTP[1]} backlog=8192;
    root {www};
    location = /small {{ return 200 "ok"; }}
  }}
}}
"""
    )
    nginx = subprocess.Popen(["nginx", "-c", str(conf), "-g", "daemon off;"])
    udp = subprocess.Popen([str(work / "udp_echo"), *map(str, ORIGIN_UDP)])
    try:
        wait_port(ORIGIN_HTTP)
        yield
    finally:
        for p in (nginx, udp):
            p.terminate()
            p.wait(10)


@contextlib.contextmanager
def nginx_stream(work: Path) -> Iterator[list[int]]:
    conf = work / "stream.conf"
    conf.write_text(
        f"""
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
worker_processes 1;
worker_rlimit_nofile {resource.getrlimit(resource.RLIMIT_NOFILE)[1]};
pid {work}/stream.pid;
error_log {work}/stream.err warn;
events {{ worker_connections 60000; }}
stream {{
  server {{ listen {NGINX[0]}:{NGINX[1]} backlog=8192; proxy_pass {ORIGIN_HTTP[0]}:{ORIGIN_HTTP[1]};
           proxy_timeout 600s; }}
  server {{ listen {NGINX[0]}:9053 udp; proxy_pass {ORIGIN_UDP[0]}:{ORIGIN_UDP[1]}; proxy_timeout 30s; }}
}}
"""
    )
    p = subprocess.Popen(["nginx", "-c", str(conf), "-g", "daemon off;"])
    try:
        wait_port(NGINX)
        yield [p.pid, *children(p.pid)]
    finally:
        p.terminate()
        p.wait(10)


@contextlib.contextmanager
def haproxy(work: Path) -> Iterator[list[int]]:
    conf = work / "haproxy.cfg"
    conf.write_text(
        f"""
global
  maxconn {maxconn()}
  nbthread 1
defaults
  mode tcp
  timeout connect 5s
  timeout client 600s
  timeout server 600s
frontend f
  bind {HAPROXY[0]}:{HAPROXY[1]} backlog 8192
  default_backend b
backend b
  server o {ORIGIN_HTTP[0]}:{ORIGIN_HTTP[1]}
"""
    )
    p = subprocess.Popen(["haproxy", "-db", "-f", str(conf)])
    try:
        wait_port(HAPROXY)
        yield [p.pid]
    finally:
        p.terminate()
        p.wait(10)


@contextlib.contextmanager
def edge(work: Path) -> Iterator[tuple[list[int], str, str]]:
    state = work / "edge-state"
    p = subprocess.Popen(
        [
            sys.executable,
            str(HERE / "edge_spectrum.py"),
            str(state),
            str(BLOCK),
            f"{ORIGIN_HTTP[0]}:{ORIGIN_HTTP[1]}",
            f"{ORIGIN_UDP[0]}:{ORIGIN_UDP[1]}",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert p.stdout is not None
        line = p.stdout.readline().split()
        if not line or line[0] != "READY":
            raise RuntimeError(f"edge did not start: {line}")
        yield [p.pid], line[1], line[2]
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()


# --------------------------------------------------------------------------- scenarios


def download(addr: tuple[str, int], path: str) -> int:
    with socket.create_connection(addr) as s:
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: bench\r\n\r\n".encode())
        buf = bytearray(4 << 20)
        n = 0
        while True:
            k = s.recv_into(buf)
            if not k:
                return n
            n += k


def bulk(addr: tuple[str, int], size: int) -> float:
    t0 = time.perf_counter()
    n = download(addr, "/big")
    dt = time.perf_counter() - t0
    if n < size:
        raise RuntimeError(f"short download: {n} < {size}")
    return n / dt / 1e6


def multi(addr: tuple[str, int], work: Path, size: int, conns: int = 64) -> float:
    part = size // conns
    (work / "www" / "part").unlink(missing_ok=True)
    with open(work / "www" / "part", "wb") as f:
        f.truncate(part)
    warm(work / "www" / "part")
    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(download(addr, "/part"))) for _ in range(conns)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    dt = time.perf_counter() - t0
    return sum(results) / dt / 1e6


def _connrate_worker(args: tuple[tuple[str, int], float, int]) -> int:
    addr, duration, concurrency = args
    import uvloop

    async def one(loop: asyncio.AbstractEventLoop) -> bool:
        s = socket.socket()
        s.setblocking(False)
        try:
            await loop.sock_connect(s, addr)
            await loop.sock_sendall(s, b"GET /small HTTP/1.0\r\nHost: bench\r\n\r\n")
            got = b""
            while True:
                d = await loop.sock_recv(s, 4096)
                if not d:
                    break
                got += d
            return got.endswith(b"ok")
        except OSError:
            return False
        finally:
            s.close()

    async def main() -> int:
        loop = asyncio.get_running_loop()
        end = time.monotonic() + duration
        done = 0

        async def worker() -> None:
            nonlocal done
            while time.monotonic() < end:
                if await one(loop):
                    done += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return done

    return uvloop.run(main())


def connrate(addr: tuple[str, int], duration: float, procs: int = 2, concurrency: int = 32) -> float:
    with Pool(procs) as pool:
        counts = pool.map(_connrate_worker, [(addr, duration, concurrency)] * procs)
    return sum(counts) / duration


def _udp_worker(args: tuple[tuple[str, int], float, int]) -> int:
    addr, duration, window = args
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect(addr)
    s.settimeout(0.2)
    payload = os.urandom(512)
    got = 0
    end = time.monotonic() + duration
    while time.monotonic() < end:
        for _ in range(window):
            s.send(payload)
        for _ in range(window):
            try:
                s.recv(2048)
                got += 1
            except TimeoutError:
                break
    s.close()
    return got


def udp_rate(addr: tuple[str, int], duration: float, procs: int = 2, window: int = 32) -> float:
    with Pool(procs) as pool:
        counts = pool.map(_udp_worker, [(addr, duration, window)] * procs)
    return sum(counts) / duration


def established_to_origin() -> int:
    out = subprocess.run(
        ["ss", "-Htn", "state", "established", f"( dport = :{ORIGIN_HTTP[1]} )", "dst", ORIGIN_HTTP[0]],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sum(1 for line in out.splitlines() if line.strip())


def idle(addr: tuple[str, int], pids: list[int], n: int) -> float:
    """KiB of proxy RSS per idle connection (client connected, origin connected, no bytes)."""
    base_conns = established_to_origin()
    before = rss_kib(pids)
    socks = []
    try:
        for i in range(n):
            s = socket.socket()
            s.connect(addr)
            socks.append(s)
            if i % 500 == 499:
                time.sleep(0.01)  # let the backlog drain (pacing, not synchronisation)
        deadline = time.monotonic() + 30
        while established_to_origin() - base_conns < n and time.monotonic() < deadline:
            time.sleep(0.2)
        opened = established_to_origin() - base_conns
        after = rss_kib(pids)
        return (after - before) / max(opened, 1)
    finally:
        for s in socks:
            s.close()


# --------------------------------------------------------------------------- main


SCENARIOS = ("bulk", "multi", "connrate", "udp", "idle")
PROXIES = ("direct", "edge", "nginx", "haproxy")


def measure(name: str, scenario: str, repeat: int, run: Callable[..., float], *args: Any) -> float:
    """Median of `repeat` runs; every run is printed (the spread matters on a shared machine)."""
    values = []
    for _ in range(repeat):
        values.append(run(*args))
        print(f"# {name}: {scenario} {values[-1]:.1f}", file=sys.stderr, flush=True)
    return statistics.median(values)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bulk", type=int, default=2 << 30, help="bytes for the one-connection transfer")
    ap.add_argument("--duration", type=float, default=5.0, help="seconds for connrate and udp")
    ap.add_argument("--idle", type=int, default=10_000, help="idle connections")
    ap.add_argument("--repeat", type=int, default=1, help="runs of bulk/multi/connrate/udp (median shown)")
    ap.add_argument("--proxies", default=",".join(PROXIES), help="comma-separated subset of " + ",".join(PROXIES))
    ap.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated subset of " + ",".join(SCENARIOS))
    ap.add_argument("--udp-echo", required=True, help="compiled udp_echo binary")
    args = ap.parse_args()
    wanted = [p for p in PROXIES if p in args.proxies.split(",")]
    scenarios = set(args.scenarios.split(","))
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    # Each idle connection costs the proxy two descriptors (client + origin); stay under the
    # hard limit (a container may cap it at 20,000, which allows about 9,500).
    if hard != resource.RLIM_INFINITY and 2 * args.idle + 500 > hard:
        args.idle = (hard - 500) // 2
        print(f"# idle connections capped at {args.idle} by RLIMIT_NOFILE {hard}", file=sys.stderr)
    work = Path(tempfile.mkdtemp(prefix="spectrum-bench-"))
    shutil.copy(args.udp_echo, work / "udp_echo")
    results: dict[str, dict[str, float]] = {}
    try:
        with (
            origins(work, args.bulk),
            edge(work) as (edge_pids, tcp_ip, udp_ip),
            nginx_stream(work) as ng_pids,
            haproxy(work) as ha_pids,
        ):
            # direct: the client talks to the origins with no proxy: the ceiling of the harness
            # (client + origin + loopback). No idle row: there is no proxy to weigh.
            proxies: dict[str, tuple[tuple[str, int], tuple[str, int] | None, list[int] | None]] = {
                "direct": (ORIGIN_HTTP, ORIGIN_UDP, None),
                "edge": ((tcp_ip, 9000), (udp_ip, 9053), edge_pids),
                "nginx": (NGINX, (NGINX[0], 9053), ng_pids),
                "haproxy": (HAPROXY, None, ha_pids),
            }
            for name in wanted:
                tcp, udp, pids = proxies[name]
                r: dict[str, float] = {}
                n = args.repeat
                if "bulk" in scenarios:
                    r["bulk_MBps"] = measure(name, "bulk", n, bulk, tcp, args.bulk)
                if "multi" in scenarios:
                    r["multi64_MBps"] = measure(name, "multi", n, multi, tcp, work, args.bulk)
                if "connrate" in scenarios:
                    r["conn_per_s"] = measure(name, "connrate", n, connrate, tcp, args.duration)
                if udp is not None and "udp" in scenarios:
                    r["udp_dgram_per_s"] = measure(name, "udp", n, udp_rate, udp, args.duration)
                if pids is not None and "idle" in scenarios:
                    print(f"# {name}: idle", file=sys.stderr, flush=True)
                    r["idle_KiB_per_conn"] = idle(tcp, pids, args.idle)
                results[name] = r
                print(f"# {name}: {r}", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    metrics = ["bulk_MBps", "multi64_MBps", "conn_per_s", "udp_dgram_per_s", "idle_KiB_per_conn"]
    cols = [p for p in PROXIES if p in results]
    print(f"{'metric':<20}" + "".join(f"{c:>12}" for c in cols) + f"{'edge/nginx':>12}{'edge/haproxy':>14}")
    for m in metrics:
        got = {c: results[c].get(m) for c in cols}
        if not any(v is not None for v in got.values()):
            continue
        e, nn, h = got.get("edge"), got.get("nginx"), got.get("haproxy")

        def fmt(v: float | None) -> str:
            return f"{v:12.1f}" if v is not None else f"{'-':>12}"

        rn = f"{e / nn:12.2f}" if e and nn else f"{'-':>12}"
        rh = f"{e / h:14.2f}" if e and h else f"{'-':>14}"
        print(f"{m:<20}" + "".join(fmt(got[c]) for c in cols) + f"{rn}{rh}")
    re_, rn_ = results.get("edge", {}), results.get("nginx", {})
    print()
    print("targets: bulk >= 1.5x nginx; conn/s >= 0.7x nginx; udp >= 1.0x nginx; <= 20 KiB per idle connection")
    for label, m in (("bulk", "bulk_MBps"), ("conn/s", "conn_per_s"), ("udp", "udp_dgram_per_s")):
        if m in re_ and rn_.get(m):
            print(f"  {label:<10} {re_[m] / rn_[m]:.2f}x")
    if "idle_KiB_per_conn" in re_:
        print(f"  idle conn  {re_['idle_KiB_per_conn']:.1f} KiB (at {args.idle} connections)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
