"""Print the edge config the CDN benchmark runs with (JSON, which is YAML), for block 127.B.

The built-in default plan moved to 127.B.x.y (as the integration tests relocate it), port offset
0, one HTTP and one HTTPS port, no Spectrum apps, and one zone with SSL mode `flexible`: TLS is
terminated at the edge and the origin leg is plain HTTP on port 80, the same work nginx and
mitmproxy do in the benchmark. `bench-edge.example.com` is a proxied record pointing at the
origin (a separate nginx on 127.B.30.1:80); its TTL keeps the stub resolver's cache warm.

Usage: python bench/cdn/bench_config.py BLOCK > edge.yaml
"""

from __future__ import annotations

import json
import sys

from edge.config import default_config_text, parse_yaml
from edge.pytest_plugin import relocate


def bench_config(block: int) -> dict[str, object]:
    data = relocate(parse_yaml(default_config_text()), block)
    net = data["network"]
    net["port_offset"] = 0
    net["cdn_http_ports"] = [80]
    net["cdn_https_ports"] = [443]
    zone = data["zones"][0]
    zone["settings"] = {"ssl": "flexible"}
    zone["spectrum_apps"] = []
    zone["dns_records"] = [
        {"name": "bench-edge.example.com", "type": "A", "content": f"127.{block}.30.1", "proxied": True, "ttl": 300}
    ]
    return data


if __name__ == "__main__":
    print(json.dumps(bench_config(int(sys.argv[1])), indent=1))
