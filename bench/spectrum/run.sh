#!/usr/bin/env bash
# Spectrum benchmark: edge vs nginx stream vs haproxy mode tcp, same origins, one run.
# Usage: bash bench/spectrum/run.sh [--bulk BYTES] [--duration SECONDS] [--idle N]
# Needs: nginx (+ libnginx-mod-stream), haproxy, gcc, ss; root or CAP_SYS_RESOURCE for the fd limit.
set -euo pipefail
cd "$(dirname "$0")/../.."
for tool in nginx haproxy gcc ss; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install nginx-light libnginx-mod-stream haproxy gcc iproute2)"; exit 1; }
done
[ -f /usr/lib/nginx/modules/ngx_stream_module.so ] || { echo "missing nginx stream module: apt-get install libnginx-mod-stream"; exit 1; }
ulimit -n 200000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
bin="$(mktemp -d)"
trap 'rm -rf "$bin"' EXIT
gcc -O2 -o "$bin/udp_echo" bench/spectrum/udp_echo.c
PYTHONPATH="$PWD" timeout 600 .venv/bin/python bench/spectrum/bench.py --udp-echo "$bin/udp_echo" "$@"
