#!/usr/bin/env bash
# CDN benchmark (not a test): HTTPS keep-alive req/s + p50/p99 and new TLS handshakes/s,
# edge vs nginx (TLS-terminating reverse proxy, 1 worker, same origin) vs mitmproxy (reverse mode).
# Usage: bench/cdn/run.sh [duration_seconds]   (needs wrk, nginx; mitmproxy in /tmp/mitm if present)
set -euo pipefail
cd "$(dirname "$0")/../.."
DUR=${1:-10}
CONN=64
WORK=$(mktemp -d)
# wrk takes the SNI from the URL and resolves it itself: bench-only names go into /etc/hosts
# (marked, removed on exit).
MARK="# edge-cdn-bench $$"
cleanup() {
  for p in ${PIDS:-}; do kill "$p" 2>/dev/null || true; done
  sed -i "/$MARK\$/d" /etc/hosts
  rm -rf "$WORK"
}
trap cleanup EXIT
PIDS=""

.venv/bin/python bench/cdn/edge_under_test.py > "$WORK/edge.out" 2> "$WORK/edge.err" &
PIDS="$PIDS $!"
for _ in $(seq 100); do grep -q READY "$WORK/edge.out" && break; sleep 0.1; done
read -r _ BLOCK CA <<< "$(grep READY "$WORK/edge.out" | head -1)"
EDGE_IP="127.$BLOCK.10.1"; ORIGIN="127.$BLOCK.30.1:80"; NGINX_IP="127.$BLOCK.40.1"; MITM_IP="127.$BLOCK.40.2"
CA_DIR=$(dirname "$CA")
{ echo "$EDGE_IP bench-edge.example.com $MARK"; echo "$NGINX_IP bench-nginx.example.com $MARK"
  echo "$MITM_IP bench-mitm.example.com $MARK"; } >> /etc/hosts

# nginx: same certificate (issued by the same CA for www.example.com), 1 worker like the edge.
cat > "$WORK/nginx.conf" <<NGX
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/nginx.err;
events { worker_connections 4096; }
http {
  access_log off;
  upstream origin { server $ORIGIN; keepalive 128; }
  server {
    listen $NGINX_IP:443 ssl;
    ssl_certificate $CA_DIR/edge-example.com.pem;
    ssl_certificate_key $CA_DIR/edge-example.com.key;
    keepalive_requests 1000000;
    location / { proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_set_header Host \$host; }
  }
}
NGX
nginx -c "$WORK/nginx.conf"
PIDS="$PIDS $(cat "$WORK/nginx.pid")"

MITM_OK=0
if [ -x /tmp/mitm/bin/mitmdump ]; then
  /tmp/mitm/bin/mitmdump -q --mode "reverse:http://$ORIGIN" --listen-host "$MITM_IP" --listen-port 443 \
    --set keep_host_header=true > "$WORK/mitm.log" 2>&1 &
  PIDS="$PIDS $!"
  for _ in $(seq 100); do (echo > /dev/tcp/$MITM_IP/443) 2>/dev/null && MITM_OK=1 && break; sleep 0.1; done
fi

lua() {
  : > "$WORK/$1.lua"
  [ "$2" = close ] && echo 'wrk.headers["Connection"] = "close"' >> "$WORK/$1.lua"
  echo "$WORK/$1.lua"
}

run() {  # name ip mode -> "rps p50 p99"
  local out
  out=$(wrk -t4 -c$CONN -d"${DUR}s" --latency -s "$(lua "$1-$3" "$3")" "https://bench-$1.example.com/bytes/100" 2>&1)
  echo "$out" > "$WORK/$1-$3.txt"
  local rps p50 p99
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1=="50%" {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  echo "$rps $p50 $p99"
}

curl -sf --cacert "$CA" https://bench-edge.example.com/bytes/100 > /dev/null
curl -sf --cacert "$CA" https://bench-nginx.example.com/bytes/100 > /dev/null
printf "%-10s %-10s %12s %10s %10s\n" target mode req/s p50 p99
declare -A R
for target in edge nginx mitm; do
  case $target in edge) ip=$EDGE_IP;; nginx) ip=$NGINX_IP;; mitm) ip=$MITM_IP; [ $MITM_OK = 1 ] || continue;; esac
  for mode in keepalive close; do
    read -r rps p50 p99 <<< "$(run $target $ip $mode)"
    R[$target-$mode]=$rps
    printf "%-10s %-10s %12s %10s %10s\n" $target $mode "$rps" "$p50" "$p99"
  done
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
echo
echo "keep-alive edge/nginx = $(ratio "${R[edge-keepalive]}" "${R[nginx-keepalive]}")  (target >= 0.3)"
[ $MITM_OK = 1 ] && echo "keep-alive edge/mitmproxy = $(ratio "${R[edge-keepalive]}" "${R[mitm-keepalive]}")  (target >= 15)"
echo "new TLS handshakes edge/nginx = $(ratio "${R[edge-close]}" "${R[nginx-close]}")  (target >= 0.8)"
