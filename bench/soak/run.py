"""Soak: TCP through Spectrum, UDP flows through Spectrum and HTTPS keep-alive through the CDN,
all at once, every byte checked, against an `edge up` subprocess whose RSS, fds and live
connections are measured before, during and after (issue 9, part 1).

Full run (about 2-4 minutes on 2 cores):

    .venv/bin/python bench/soak/run.py                      # 10,000 TCP, 1,000 UDP flows, 2,000 HTTPS
    .venv/bin/python bench/soak/run.py --scale 0.1 --json   # the CI-sized run (tests/reliability/test_soak.py)

Loads (each bounded in count AND by --time-limit):
- TCP: connections to a Spectrum TCP app (no PROXY header) in front of the TCP echo origin. Per
  connection: read the echo's JSON greeting line, send a random number of random-sized chunks with
  random pauses while reading concurrently, half-close (client -> origin EOF), then read until the
  origin's echoed half-close arrives (origin -> client EOF). Every byte compared.
- UDP: flows to the Spectrum UDP app (SPP) in front of the UDP echo, each its own source port,
  all open at once, each sending its datagrams one at a time (next after the echo or 1 s);
  every datagram carries (flow, seq, payload) and every echo is compared. UDP may drop: loss is
  counted, corruption, duplicates or a datagram never sent are errors.
- HTTPS: keep-alive TLS connections to the CDN; on each, several POST /echo with a chunked
  request body streamed in random pieces; the response body must equal the request body.

Afterwards the edge's live connections (/health), fd count and RSS are polled (bounded) back
toward the pre-load baseline. Exit status 0 only if nothing was lost (beyond UDP loss) or
corrupted and connections/fds returned to baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import resource
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from edge.config import default_config_text, parse_yaml  # noqa: E402
from edge.pytest_plugin import relocate  # noqa: E402
from edge.store import privileged_ports_available  # noqa: E402

SOAK_TCP_PORT = 7001  # the soak's own Spectrum TCP app (no PROXY header) -> TCP echo
# The CDN keeps idle origin connections pooled (cdn.upstream.MAX_IDLE_PER_TARGET per target; the
# demo origins run in the same process, so each pooled connection is 2 fds there). Those are
# expected after the load; anything beyond them is a leak.
POOL_FD_ALLOWANCE = 2 * 2 * 256
UDP_WAIT = 1.0  # seconds to wait for one datagram's echo before counting it lost
TASK_ALLOWANCE = 2  # /health itself runs in a task or two
RSS_NOISE_MB = 4.0  # RSS growth of the last round may not exceed the second's by more than this


@dataclass
class Stats:
    completed: Counter[str] = field(default_factory=Counter)
    bytes_verified: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    udp_sent: int = 0
    udp_received: int = 0
    samples: list[dict[str, Any]] = field(default_factory=list)

    def error(self, kind: str, e: BaseException | str) -> None:
        name = e if isinstance(e, str) else type(e).__name__
        self.errors[f"{kind}:{name}"] += 1


# ----------------------------------------------------------------------------- the edge under test


def soak_config(block: int, *, offset: int) -> dict[str, Any]:
    data: dict[str, Any] = relocate(parse_yaml(default_config_text()), block)
    data["network"]["port_offset"] = offset
    data["zones"][0]["spectrum_apps"].append(
        {
            "protocol": f"tcp/{SOAK_TCP_PORT}",
            "dns": {"type": "CNAME", "name": "soak-tcp.example.com"},
            "origin_direct": [f"tcp://127.{block}.30.2:22"],
            "proxy_protocol": "off",
        }
    )
    data["limits"] = {"max_udp_flows": 20000, "udp_idle_timeout": 5.0, "keepalive_timeout": 30.0}
    return data


def pick_block(start: int = 230, stop: int = 241) -> int:
    offset = 0 if privileged_ports_available() else 10000
    for block in range(start, stop):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((f"127.{block}.0.1", 8900 + offset))
            except OSError:
                continue
            return block
    raise RuntimeError("no free block in 230-240")


class EdgeProcess:
    def __init__(self, workdir: Path, block: int) -> None:
        self.block = block
        self.offset = 0 if privileged_ports_available() else 10000
        self.data = soak_config(block, offset=self.offset)
        self.workdir = workdir
        self.state = workdir / "state"
        self.cwd = workdir / "cwd"
        self.cwd.mkdir()
        self.config = workdir / "edge.yaml"
        self.config.write_text(json.dumps(self.data))
        self.log = (workdir / "edge.log").open("wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "edge",
                "up",
                "--config",
                str(self.config),
                "--state-dir",
                str(self.state),
                "--log-format",
                "json",
            ],
            cwd=self.cwd,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.admin = f"http://127.{block}.0.1:{8900 + self.offset}"

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"edge exited with {self.proc.returncode}; see {self.workdir / 'edge.log'}")
            with contextlib.suppress(OSError), urllib.request.urlopen(self.admin + "/ready", timeout=1) as resp:
                if resp.status == 200:
                    return
            time.sleep(0.1)  # bounded readiness poll
        raise RuntimeError("edge not ready")

    def port(self, logical: int) -> int:
        return logical + self.offset

    def ip(self, part: str) -> str:
        return f"127.{self.block}.{part}"

    def measure(self) -> dict[str, Any]:
        pid = self.proc.pid
        rss_kb = 0
        threads = 0
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss_kb = int(line.split()[1])
                elif line.startswith("Threads:"):
                    threads = int(line.split()[1])
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        try:
            with urllib.request.urlopen(self.admin + "/health", timeout=5) as resp:
                health = json.loads(resp.read())
            connections, flows, tasks = int(health["connections"]), int(health["udp_flows"]), int(health["tasks"])
            udp_dropped = int(health["udp_dropped"])
        except OSError:
            connections = flows = tasks = udp_dropped = -1
        return {
            "t": time.monotonic(),
            "rss_mb": round(rss_kb / 1024, 1),
            "fds": fds,
            "connections": connections,
            "udp_flows": flows,
            "udp_dropped": udp_dropped,
            "tasks": tasks,
            "threads": threads,
        }

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()
        return int(self.proc.returncode)

    def spectrum_ip(self, host: str) -> str:
        # Spectrum edge IPs are assigned by the store; ask the resolver's public view.
        from dnslib import DNSRecord

        q = DNSRecord.question(host, "A")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(2)
            s.sendto(q.pack(), (self.ip("0.2"), self.port(53)))
            reply = DNSRecord.parse(s.recvfrom(4096)[0])
        return str(reply.rr[-1].rdata)


# ----------------------------------------------------------------------------- TCP through Spectrum


async def tcp_one(address: tuple[str, int], rng: random.Random, stats: Stats, pause_max: float) -> None:
    reader, writer = await asyncio.open_connection(*address)
    try:
        greeting = await asyncio.wait_for(reader.readline(), 10)
        if not greeting.startswith(b"{"):
            stats.error("tcp", "bad-greeting")
            return
        total = rng.choice([0, 1, rng.randint(2, 4096), rng.randint(4096, 65536)])
        payload = rng.randbytes(total)
        received = bytearray()

        async def read_all() -> None:
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    return
                received.extend(chunk)

        read_task = asyncio.create_task(read_all())
        sent = 0
        while sent < total:
            n = min(total - sent, rng.choice([1, 7, 512, 1400, 8192, 16384]))
            writer.write(payload[sent : sent + n])
            sent += n
            if rng.random() < 0.2:
                await writer.drain()
                await asyncio.sleep(rng.random() * pause_max)
        await writer.drain()
        writer.write_eof()  # half-close client -> origin; the echo half-closes back
        await asyncio.wait_for(read_task, 30)
        if bytes(received) != payload:
            stats.error("tcp", "corrupted" if len(received) == total else f"short({len(received)}/{total})")
            return
        stats.completed["tcp"] += 1
        stats.bytes_verified["tcp"] += total * 2
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def tcp_load(
    address: tuple[str, int], count: int, concurrency: int, stats: Stats, seed: int, deadline: float
) -> None:
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with sem:
            if time.monotonic() > deadline:
                stats.error("tcp", "not-started-time-limit")
                return
            try:
                await tcp_one(address, random.Random(seed * 1_000_003 + i), stats, 0.005)
            except Exception as e:
                stats.error("tcp", e)

    await asyncio.gather(*(one(i) for i in range(count)))


# ----------------------------------------------------------------------------- UDP through Spectrum


class _UdpFlow(asyncio.DatagramProtocol):
    """One flow: its own source port; checks every echo against what it sent."""

    def __init__(self, flow: int, stats: Stats) -> None:
        self.flow = flow
        self.stats = stats
        self.expected: dict[int, bytes] = {}
        self.seen: set[int] = set()
        self.waiting: asyncio.Future[None] | None = None

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if len(data) < 8:
            self.stats.error("udp", "short-datagram")
            return
        flow, seq = struct.unpack("!II", data[:8])
        if flow != self.flow or seq not in self.expected:
            self.stats.error("udp", "foreign-datagram")
            return
        if data != self.expected[seq]:
            self.stats.error("udp", "corrupted")
            return
        if seq in self.seen:
            self.stats.error("udp", "duplicate")
            return
        self.seen.add(seq)
        self.stats.udp_received += 1
        self.stats.bytes_verified["udp"] += len(data)
        if self.waiting is not None and not self.waiting.done():
            self.waiting.set_result(None)


async def udp_load(
    address: tuple[str, int], flows: int, per_flow: int, stats: Stats, seed: int, deadline: float
) -> None:
    """All flows open at once; each sends its datagrams one at a time, waiting (bounded) for the
    echo before the next, so at most `flows` datagrams are in flight. A datagram whose echo does
    not come within UDP_WAIT counts as lost (a late echo still counts as received)."""
    loop = asyncio.get_running_loop()
    endpoints: list[tuple[asyncio.DatagramTransport, _UdpFlow]] = []

    async def run_flow(transport: asyncio.DatagramTransport, proto: _UdpFlow, rng: random.Random) -> None:
        await asyncio.sleep(rng.random() * 0.5)  # spread the starts
        for seq in range(per_flow):
            if time.monotonic() > deadline:
                stats.error("udp", "not-sent-time-limit")
                return
            datagram = struct.pack("!II", proto.flow, seq) + rng.randbytes(rng.randint(0, 1200))
            proto.expected[seq] = datagram
            proto.waiting = loop.create_future()
            transport.sendto(datagram)
            stats.udp_sent += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proto.waiting, UDP_WAIT)
        if len(proto.seen) == per_flow:
            stats.completed["udp-flows"] += 1

    try:
        for f in range(flows):
            transport, proto = await loop.create_datagram_endpoint(
                lambda f=f: _UdpFlow(f, stats),  # type: ignore[misc]
                local_addr=("127.0.0.1", 0),
                remote_addr=address,
            )
            endpoints.append((transport, proto))
        await asyncio.gather(*(run_flow(t, p, random.Random(seed * 31 + p.flow)) for t, p in endpoints))
    finally:
        for transport, _ in endpoints:
            transport.close()


# ----------------------------------------------------------------------------- HTTPS through the CDN


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while True:
        line = await reader.readuntil(b"\r\n")
        size = int(line.split(b";")[0].strip(), 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                pass
            return bytes(body)
        body.extend(await reader.readexactly(size))
        await reader.readexactly(2)


async def https_one(
    address: tuple[str, int], ctx: ssl.SSLContext, rng: random.Random, requests: int, stats: Stats
) -> None:
    reader, writer = await asyncio.open_connection(*address, ssl=ctx, server_hostname="www.example.com")
    try:
        for _ in range(requests):
            payload = rng.randbytes(rng.choice([0, 1, rng.randint(2, 2048), rng.randint(2048, 65536)]))
            writer.write(b"POST /echo HTTP/1.1\r\nHost: www.example.com\r\nTransfer-Encoding: chunked\r\n\r\n")
            sent = 0
            while sent < len(payload):
                n = min(len(payload) - sent, rng.choice([1, 100, 1400, 8192]))
                writer.write(b"%x\r\n" % n + payload[sent : sent + n] + b"\r\n")
                sent += n
                if rng.random() < 0.1:
                    await writer.drain()
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            status = int(head.split(b" ", 2)[1])
            headers = {
                k.strip().lower(): v.strip()
                for k, _, v in (line.partition(b":") for line in head.split(b"\r\n")[1:] if line)
            }
            if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
                body = await asyncio.wait_for(_read_chunked(reader), 30)
            else:
                body = await asyncio.wait_for(reader.readexactly(int(headers.get(b"content-length", b"0"))), 30)
            if status != 200:
                stats.error("https", f"status-{status}")
                return
            if body != payload:
                stats.error("https", "corrupted")
                return
            stats.completed["https-requests"] += 1
            stats.bytes_verified["https"] += 2 * len(payload)
        stats.completed["https-connections"] += 1
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def https_load(
    address: tuple[str, int],
    ctx: ssl.SSLContext,
    count: int,
    concurrency: int,
    stats: Stats,
    seed: int,
    deadline: float,
) -> None:
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with sem:
            if time.monotonic() > deadline:
                stats.error("https", "not-started-time-limit")
                return
            rng = random.Random(seed * 7919 + i)
            try:
                await https_one(address, ctx, rng, rng.randint(1, 4), stats)
            except Exception as e:
                stats.error("https", e)

    await asyncio.gather(*(one(i) for i in range(count)))


# ----------------------------------------------------------------------------- driver


async def sample(edge: EdgeProcess, stats: Stats, stop: asyncio.Event) -> None:
    while not stop.is_set():
        stats.samples.append(await asyncio.to_thread(edge.measure))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)


def kernel_udp_counters() -> Counter[str]:
    """The kernel's UDP drop counters: RcvbufErrors (a socket's receive queue was full) and
    NoPorts (a datagram came after its socket closed: an echo later than the flow's wait)."""
    with open("/proc/net/snmp") as f:
        rows = [line.split() for line in f if line.startswith("Udp:")]
    table = dict(zip(rows[0][1:], rows[1][1:], strict=True))
    return Counter({"rcvbuf_errors": int(table["RcvbufErrors"]), "no_ports": int(table["NoPorts"])})


def _settled(after: dict[str, Any], baseline: dict[str, Any]) -> bool:
    return (
        after["connections"] <= baseline["connections"]
        and after["udp_flows"] <= baseline["udp_flows"]
        and after["tasks"] <= baseline["tasks"] + TASK_ALLOWANCE
        and after["fds"] <= baseline["fds"] + POOL_FD_ALLOWANCE
    )


async def soak(args: argparse.Namespace, edge: EdgeProcess) -> dict[str, Any]:
    stats = Stats()
    scale = args.scale
    tcp_n, udp_n, https_n = (max(1, int(n * scale)) for n in (args.tcp, args.udp, args.https))
    ca = (edge.state / "ca" / "ca.pem").read_text()
    ctx = ssl.create_default_context(cadata=ca)
    tcp_addr = (edge.spectrum_ip("soak-tcp.example.com"), edge.port(SOAK_TCP_PORT))
    udp_addr = (edge.spectrum_ip("udp.example.com"), edge.port(53))
    cdn_addr = (edge.ip("10.1"), edge.port(443))

    baseline = await asyncio.to_thread(edge.measure)
    drops_before = kernel_udp_counters()
    start = time.monotonic()
    rounds: list[dict[str, Any]] = []
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample(edge, stats, stop))
    for round_no in range(args.rounds):
        # Each round: the three loads at once (bounded), then the bounded wait for the baseline.
        seed = args.seed + 101 * round_no
        round_start = time.monotonic()
        deadline = round_start + args.time_limit
        try:
            async with asyncio.timeout(args.time_limit + 30):
                await asyncio.gather(
                    tcp_load(tcp_addr, tcp_n, args.concurrency, stats, seed, deadline),
                    udp_load(udp_addr, udp_n, args.datagrams, stats, seed, deadline),
                    https_load(cdn_addr, ctx, https_n, max(1, args.concurrency // 2), stats, seed, deadline),
                )
        except TimeoutError:
            stats.error("soak", "overall-time-limit")
        load_seconds = time.monotonic() - round_start
        after = await asyncio.to_thread(edge.measure)
        settle_deadline = time.monotonic() + args.settle
        while time.monotonic() < settle_deadline and not _settled(after, baseline):
            await asyncio.sleep(0.25)
            after = await asyncio.to_thread(edge.measure)
        rounds.append({"round": round_no + 1, "load_seconds": round(load_seconds, 1), "after": after})
    stop.set()
    await sampler
    kernel = kernel_udp_counters()
    kernel.subtract(drops_before)
    edge_dropped = max(after["udp_dropped"], 0) - max(baseline["udp_dropped"], 0)
    # Loss only where UDP allows it: every lost datagram must be one a full queue dropped (the
    # kernel's receive buffer of a CPU-starved reader, or a send that would block in Spectrum)
    # or one that came after its flow had stopped listening; never one the emulator lost.
    allowed_loss = kernel["rcvbuf_errors"] + kernel["no_ports"] + edge_dropped

    peak = max(stats.samples, key=lambda s: s["rss_mb"]) if stats.samples else after
    udp_lost = stats.udp_sent - stats.udp_received
    rss_after = [r["after"]["rss_mb"] for r in rounds]
    report = {
        "counts": {
            "tcp": tcp_n,
            "udp_flows": udp_n,
            "udp_datagrams_per_flow": args.datagrams,
            "https_connections": https_n,
            "rounds": args.rounds,
        },
        "load_seconds": round(time.monotonic() - start, 1),
        "completed": dict(stats.completed),
        "bytes_verified": dict(stats.bytes_verified),
        "bytes_verified_total": sum(stats.bytes_verified.values()),
        "udp": {
            "sent": stats.udp_sent,
            "received": stats.udp_received,
            "lost": udp_lost,
            "kernel_rcvbuf_errors": kernel["rcvbuf_errors"],
            "kernel_no_ports": kernel["no_ports"],
            "spectrum_dropped": edge_dropped,
        },
        "errors": dict(stats.errors),
        "edge": {
            "baseline": baseline,
            "peak_rss_mb": peak["rss_mb"],
            "peak_fds": max((s["fds"] for s in stats.samples), default=after["fds"]),
            "peak_connections": max((s["connections"] for s in stats.samples), default=0),
            "peak_udp_flows": max((s["udp_flows"] for s in stats.samples), default=0),
            "peak_tasks": max((s["tasks"] for s in stats.samples), default=0),
            "after": after,
            "rounds": rounds,
            # RSS is not handed back to the OS by CPython's allocator, and the record rings
            # (10,000 per dataset) fill over the first rounds; a leak shows as growth that does
            # not slow from one identical round to the next.
            "rss_after_rounds_mb": rss_after,
        },
    }
    report["ok"] = (
        not stats.errors
        and stats.completed["tcp"] == tcp_n * args.rounds
        and stats.completed["https-connections"] == https_n * args.rounds
        and udp_lost <= allowed_loss
        and all(_settled(r["after"], baseline) for r in rounds)
        and (len(rss_after) < 3 or rss_after[-1] - rss_after[-2] <= max(rss_after[1] - rss_after[0], 0) + RSS_NOISE_MB)
    )
    return report


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tcp", type=int, default=10_000)
    parser.add_argument("--udp", type=int, default=1_000, help="concurrent UDP flows")
    parser.add_argument("--datagrams", type=int, default=20, help="datagrams per UDP flow")
    parser.add_argument("--https", type=int, default=2_000)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the three counts")
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--time-limit", type=float, default=240.0, help="seconds for the load phase")
    parser.add_argument("--settle", type=float, default=15.0, help="seconds to wait for the return to baseline")
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument("--rounds", type=int, default=3, help="run the loads this many times (leak check)")
    parser.add_argument("--block", type=int, default=None, help="second octet (default: free one in 230-240)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON only")
    args = parser.parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    with tempfile.TemporaryDirectory(prefix="edge-soak-") as tmp:
        edge = EdgeProcess(Path(tmp), args.block or pick_block())
        try:
            edge.wait_ready()
            import uvloop

            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                report = runner.run(soak(args, edge))
            report["edge"]["cwd_untouched"] = list(edge.cwd.iterdir()) == []
        finally:
            report_rc = edge.stop()
        report["edge"]["exit_code"] = report_rc
        report["ok"] = report["ok"] and report_rc == 0 and report["edge"]["cwd_untouched"]
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return report


if __name__ == "__main__":
    result = main()
    print(json.dumps(result, indent=1))
    sys.exit(0 if result["ok"] else 1)
