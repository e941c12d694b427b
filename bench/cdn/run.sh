#!/usr/bin/env bash
# CDN benchmark (not a test): HTTPS keep-alive req/s + p50/p99 and new TLS handshakes/s
# (wrk with `Connection: close`), side by side in one run:
#   edge       `edge up --roles cdn,resolver` in its own process (zone SSL `flexible`)
#   nginx      TLS-terminating reverse proxy, 1 worker, `keepalive` to the origin
#   mitmproxy  reverse mode (if /tmp/mitm/bin/mitmdump exists)
# All three terminate TLS with the same certificate (the edge's zone certificate) and proxy over
# plain HTTP/1.1 keep-alive to the same origin: a separate nginx (1 worker) on 127.B.30.1:80
# answering /bytes/100 with 100 bytes. Addresses are in a free private block 127.B.x.y.
# Usage: bench/cdn/run.sh [duration_seconds] [threads]   (needs root for /etc/hosts, wrk, nginx)
# Env: EDGE_ONLY=1 runs the edge rows only (for quick iterations); PROFILE=/path/prefix records
# py-spy (raw collapsed stacks, /tmp/prof/bin/py-spy) on the edge process during its runs.
set -euo pipefail
cd "$(dirname "$0")/../.."
DUR=${1:-10}
THREADS=${2:-2}
CONN=64
WORK=$(mktemp -d)
# wrk takes the SNI from the URL and resolves it itself: bench-only names go into /etc/hosts
# (marked, removed on exit).
MARK="# edge-cdn-bench $$"
PIDS=""
cleanup() {
  for p in $PIDS; do kill "$p" 2>/dev/null || true; done
  sed -i "/$MARK\$/d" /etc/hosts
  sleep 0.2
  rm -rf "$WORK"
}
trap cleanup EXIT

BLOCK=$(.venv/bin/python -c 'from edge.pytest_plugin import free_block; print(free_block(170))')
EDGE_IP="127.$BLOCK.10.1"; ORIGIN_IP="127.$BLOCK.30.1"; NGINX_IP="127.$BLOCK.40.1"; MITM_IP="127.$BLOCK.40.2"

# --- origin: a separate nginx, 1 worker, 100-byte body, long keep-alive
BODY=$(head -c 100 /dev/zero | tr '\0' x)
cat > "$WORK/origin.conf" <<NGX
worker_processes 1;
pid $WORK/origin.pid;
error_log $WORK/origin.err;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 300s;
  server {
    listen $ORIGIN_IP:80 reuseport backlog=4096;
    location / { default_type application/octet-stream; return 200 "$BODY"; }
  }
}
NGX
nginx -c "$WORK/origin.conf"
PIDS="$PIDS $(cat "$WORK/origin.pid")"

# --- edge, its own process, only the roles it needs
.venv/bin/python bench/cdn/bench_config.py "$BLOCK" > "$WORK/edge.yaml"
.venv/bin/edge up --config "$WORK/edge.yaml" --roles cdn,resolver --state-dir "$WORK/state" \
  --log-format json > "$WORK/edge.log" 2> "$WORK/edge.err" &
EDGE_PID=$!
PIDS="$PIDS $EDGE_PID"
for _ in $(seq 300); do grep -q "edge: ready" "$WORK/edge.err" && break; sleep 0.1; done
grep -q "edge: ready" "$WORK/edge.err" || { cat "$WORK/edge.err"; exit 1; }
CA="$WORK/state/ca/ca.pem"
CERT="$WORK/state/certs/example.com.pem"; KEY="$WORK/state/certs/example.com.key"
{ echo "$EDGE_IP bench-edge.example.com $MARK"; echo "$NGINX_IP bench-nginx.example.com $MARK"
  echo "$MITM_IP bench-mitm.example.com $MARK"; } >> /etc/hosts

# --- nginx as the TLS-terminating reverse proxy: same certificate, 1 worker like the edge
cat > "$WORK/nginx.conf" <<NGX
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/nginx.err;
events { worker_connections 4096; }
http {
  access_log off;
  upstream origin { server $ORIGIN_IP:80; keepalive 128; keepalive_requests 1000000; }
  server {
    listen $NGINX_IP:443 ssl backlog=4096;
    ssl_certificate $CERT;
    ssl_certificate_key $KEY;
    keepalive_requests 1000000;
    location / { proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_set_header Host \$host; }
  }
}
NGX
if [ -z "${EDGE_ONLY:-}" ]; then
  nginx -c "$WORK/nginx.conf"
  PIDS="$PIDS $(cat "$WORK/nginx.pid")"
fi

MITM_OK=0
if [ -z "${EDGE_ONLY:-}" ] && [ -x /tmp/mitm/bin/mitmdump ]; then
  cat "$CERT" "$KEY" > "$WORK/mitm-cert.pem"
  /tmp/mitm/bin/mitmdump -q --mode "reverse:http://$ORIGIN_IP:80" --listen-host "$MITM_IP" --listen-port 443 \
    --certs "*=$WORK/mitm-cert.pem" --set keep_host_header=true --set connection_strategy=lazy \
    > "$WORK/mitm.log" 2>&1 &
  MITM_PID=$!
  PIDS="$PIDS $MITM_PID"
  for _ in $(seq 100); do (echo > /dev/tcp/$MITM_IP/443) 2>/dev/null && MITM_OK=1 && break; sleep 0.1; done
fi

lua() {
  : > "$WORK/$1.lua"
  [ "$2" = close ] && echo 'wrk.headers["Connection"] = "close"' >> "$WORK/$1.lua"
  echo "$WORK/$1.lua"
}

cpu_ticks() {  # utime+stime of the proxy process (all nginx/mitmproxy workers are its children)
  local pid
  case $1 in edge) pid=$EDGE_PID;; nginx) pid=$(cat "$WORK/nginx.pid");; mitm) pid=$MITM_PID;; esac
  local total=0 p
  for p in $pid $(pgrep -P "$pid" 2>/dev/null); do
    total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  echo $total
}

run() {  # name mode -> "rps p50 p99"
  local out
  out=$(wrk -t"$THREADS" -c$CONN -d"${DUR}s" --latency -s "$(lua "$1-$2" "$2")" "https://bench-$1.example.com/bytes/100" 2>&1)
  echo "$out" > "$WORK/$1-$2.txt"
  local rps p50 p99 errs
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1=="50%" {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  errs=$(echo "$out" | awk '/Non-2xx|Socket errors/ {printf "%s;", $0}')
  echo "$rps $p50 $p99 ${errs:+!}"
}

curl -sf --cacert "$CA" https://bench-edge.example.com/bytes/100 | wc -c | grep -q '^100$'
[ -z "${EDGE_ONLY:-}" ] && curl -sf --cacert "$CA" https://bench-nginx.example.com/bytes/100 | wc -c | grep -q '^100$'
echo "block 127.$BLOCK  wrk -t$THREADS -c$CONN -d${DUR}s  origin nginx $ORIGIN_IP:80  $(nproc) cpus"
printf "%-10s %-10s %12s %10s %10s %10s\n" target mode req/s p50 p99 cpu-us/req
declare -A R
for target in edge nginx mitm; do
  case $target in
    nginx) [ -z "${EDGE_ONLY:-}" ] || continue;;
    mitm) [ $MITM_OK = 1 ] || continue;;
  esac
  for mode in keepalive close; do
    if [ -n "${PROFILE:-}" ] && [ $target = edge ]; then  # py-spy on the edge process during this run
      /tmp/prof/bin/py-spy record --nonblocking -r 200 -d "$DUR" -f raw -o "$PROFILE-$mode.txt" -p "$EDGE_PID" \
        > "$WORK/py-spy-$mode.log" 2>&1 &
      PIDS="$PIDS $!"
    fi
    cpu0=$(cpu_ticks "$target")
    read -r rps p50 p99 flag <<< "$(run $target $mode)"
    cpu1=$(cpu_ticks "$target")
    R[$target-$mode]=$rps
    # CPU time the proxy process spent per request (less sensitive to other load than req/s).
    us=$(awk -v c="$((cpu1 - cpu0))" -v hz="$(getconf CLK_TCK)" -v r="$rps" -v d="$DUR" \
      'BEGIN { if (r > 0) printf "%.0f", c / hz * 1e6 / (r * d); else print "n/a" }')
    printf "%-10s %-10s %12s %10s %10s %10s %s\n" $target $mode "$rps" "$p50" "$p99" "$us" "${flag:+(errors: see wrk output)}"
  done
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
echo
if [ -z "${EDGE_ONLY:-}" ]; then
  echo "keep-alive edge/nginx = $(ratio "${R[edge-keepalive]}" "${R[nginx-keepalive]}")  (target >= 0.3)"
  [ $MITM_OK = 1 ] && echo "keep-alive edge/mitmproxy = $(ratio "${R[edge-keepalive]}" "${R[mitm-keepalive]}")  (target >= 15)"
  echo "new TLS handshakes edge/nginx = $(ratio "${R[edge-close]}" "${R[nginx-close]}")  (target >= 0.8)"
fi
if [ -n "${KEEP_OUTPUT:-}" ]; then cp -r "$WORK" "$KEEP_OUTPUT"; fi
