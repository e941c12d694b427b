"""Run only the Spectrum role for the benchmark (no CA, no other roles, records not logged).

    python bench/spectrum/edge_spectrum.py STATE_DIR BLOCK TCP_ORIGIN UDP_ORIGIN

Addresses live in 127.BLOCK.0.0/16. Two apps: tcp/9000 -> TCP_ORIGIN (host:port) with
proxy_protocol off, and udp/9053 -> UDP_ORIGIN with proxy_protocol off. Prints one line
`READY <tcp edge ip> <udp edge ip>` when the listeners are bound, then runs until SIGTERM.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import signal
import sys
from pathlib import Path

import structlog
import uvloop

from edge.config import build_config
from edge.events import EventSink
from edge.runtime import Binds, Connections, RoleContext
from edge.store import Store
from spectrum.server import serve_spectrum


async def main(state_dir: Path, block: int, tcp_origin: str, udp_origin: str) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    config = build_config(
        {
            "network": {
                "resolver": f"127.{block}.0.2",
                "cdn_ips": [f"127.{block}.10.1"],
                "cdn_egress_ip": f"127.{block}.10.254",
                "spectrum_ips": f"127.{block}.20.0/24",
                "spectrum_egress_ip": f"127.{block}.20.254",
                "port_offset": 0,
            },
            "origins": {"enabled": False},
            "limits": {"max_connections_per_listener": 100_000, "spectrum_idle_timeout": 600},
            "zones": [
                {
                    "name": "bench.test",
                    "spectrum_apps": [
                        {
                            "protocol": "tcp/9000",
                            "dns": {"type": "CNAME", "name": "tcp.bench.test"},
                            "origin_direct": [f"tcp://{tcp_origin}"],
                        },
                        {
                            "protocol": "udp/9053",
                            "dns": {"type": "CNAME", "name": "udp.bench.test"},
                            "origin_direct": [f"udp://{udp_origin}"],
                        },
                    ],
                }
            ],
        }
    )
    store = Store(state_dir, port_offset=0)
    store.open_config(config)
    ctx = RoleContext(
        store=store,
        events=EventSink(log_records=False),
        binds=Binds(),
        connections=Connections(),
        state_dir=state_dir,
        roles=("spectrum",),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    task = asyncio.create_task(serve_spectrum(ctx))
    while "spectrum" not in ctx.binds.ready_roles:
        ctx.binds.changed.clear()
        await ctx.binds.changed.wait()
    hosts = store.current.spectrum_hosts
    print("READY", hosts["tcp.bench.test"][0], hosts["udp.bench.test"][0], flush=True)
    await stop.wait()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    ctx.connections.abort_all()
    store.close()


if __name__ == "__main__":
    uvloop.run(main(Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]))
