"""Run the resolver role alone for the DNS benchmark (a launcher, not a test).

    python bench/dns/serve.py --block 53 --records log

The built-in default config, moved to 127.<block>.x.y (so a running `edge up` is not disturbed),
port offset 0. `--records log` keeps `edge up`'s event sink (every dns_queries record rendered
as a JSON log line, here to stderr); `--records ring` keeps records in memory only, as the test
harness does. Prints `READY <address> <port>` on stdout once the resolver is bound.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import tempfile
from pathlib import Path

import uvloop

from edge.config import build_config, default_config_text, parse_yaml
from edge.events import EventSink
from edge.logs import configure_logging
from edge.pytest_plugin import relocate
from edge.runtime import Binds, Connections, RoleContext
from edge.store import Store
from resolver.server import serve_resolver


async def main(args: argparse.Namespace) -> int:
    data = parse_yaml(default_config_text())
    data["network"]["port_offset"] = 0
    config = build_config(relocate(data, args.block))
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp), port_offset=0)
        store.open_config(config)
        events = EventSink(log_records=args.records == "log")
        ctx = RoleContext(
            store=store,
            events=events,
            binds=Binds(),
            connections=Connections(),
            state_dir=Path(tmp),
            roles=("resolver",),
        )
        task = asyncio.create_task(serve_resolver(ctx))
        while "resolver" not in ctx.binds.ready_roles:
            failed = [b for b in ctx.binds.all() if b.status == "failed"]
            if failed or task.done():
                print(f"resolver failed to start: {[b.reason for b in failed]}", file=sys.stderr)
                return 1
            ctx.binds.changed.clear()
            await ctx.binds.changed.wait()
        net = store.current.config.network
        print(f"READY {net.resolver} {net.resolver_port}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for s in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(s, stop.set)
        await stop.wait()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        print(f"served {events.counts.get('dns_queries', 0)} queries", file=sys.stderr)
        store.close()
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--block", type=int, default=53)
    parser.add_argument("--records", choices=["log", "ring"], default="log")
    args = parser.parse_args()
    configure_logging("json", stream=sys.stderr)
    sys.exit(uvloop.run(main(args)))
