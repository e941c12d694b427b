"""Generate the benchmark's inputs from the default config's public view (moved to 127.<block>):
a dnsmasq config answering the same names, and a dnsperf query file.

    python bench/dns/gen.py --block 53 --out DIR   -> DIR/dnsmasq.conf, DIR/queries.txt, DIR/edge.yaml
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edge.config import build_config, default_config_text, parse_yaml
from edge.pytest_plugin import relocate
from edge.store import build_snapshot


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--block", type=int, default=53)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--dnsmasq-address", default="")
    args = parser.parse_args()
    data = parse_yaml(default_config_text())
    data["network"]["port_offset"] = 0
    moved = relocate(data, args.block)
    config = build_config(moved)
    snap = build_snapshot(config, 1, 0)
    net = config.network
    cdn = ",".join(str(ip) for ip in net.cdn_ips if ip.version == 4)
    lines = [
        "no-resolv",
        "no-hosts",
        "bind-interfaces",
        f"listen-address={args.dnsmasq_address}",
        "port=53",
        "cache-size=10000",
    ]
    queries: list[str] = []
    for zone in config.zones:
        lines.append(f"local=/{zone.name}/")  # authoritative-style: NXDOMAIN for other names in the zone
        for r in zone.dns_records:
            if r.type in ("A", "AAAA"):
                addrs = cdn if r.proxied else r.content
                lines.extend(f"host-record={r.name},{a},300" for a in addrs.split(","))
                queries.append(f"{r.name} A")
            elif r.type == "TXT":
                lines.append(f'txt-record={r.name},"{r.content}"')
                queries.append(f"{r.name} TXT")
        for host, ips in snap.spectrum_hosts.items():
            lines.extend(f"host-record={host},{i},300" for i in ips)
            queries.append(f"{host} A")
        queries.append(f"nonexistent.{zone.name} A")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "dnsmasq.conf").write_text("\n".join(line for line in lines if line) + "\n")
    (args.out / "queries.txt").write_text("\n".join(queries) + "\n")
    (args.out / "edge.yaml").write_text(json.dumps(moved, indent=1))  # JSON is YAML: for `edge up --config`


if __name__ == "__main__":
    main()
