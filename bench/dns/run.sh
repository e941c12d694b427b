#!/usr/bin/env bash
# DNS benchmark (not a test): dnsperf against edge's resolver and against dnsmasq serving the same
# names, side by side in one run; prints qps for each and the ratio edge/dnsmasq.
# Usage: bench/dns/run.sh [duration_seconds_per_run] [mode]   (env: ROUNDS=3 CLIENTS=4 OUTSTANDING=100)
#   mode: "ring" (default; bench/dns/serve.py, records kept in memory as in the test harness),
#         "log"  (bench/dns/serve.py with `edge up`'s sink: every dns_queries record is also a
#                 JSON log line), or
#         "cli"  (`edge up --roles resolver`, logging to a file).
# Addresses: 127.53.0.2 (edge, the default plan moved to block 53), 127.53.0.3 (dnsmasq), port 53.
set -euo pipefail
cd "$(dirname "$0")/../.."
DUR=${1:-10}
RECORDS=${2:-ring}
CLIENTS=${CLIENTS:-4}
OUTSTANDING=${OUTSTANDING:-100}
ROUNDS=${ROUNDS:-3}
BLOCK=53
EDGE_IP=127.$BLOCK.0.2
DNSMASQ_IP=127.$BLOCK.0.3
WORK=$(mktemp -d)
PIDS=""
cleanup() {
  for p in $PIDS; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
for tool in dnsperf dnsmasq dig; do
  command -v "$tool" > /dev/null || { echo "missing $tool (apt-get install dnsperf dnsmasq-base dnsutils)"; exit 2; }
done

.venv/bin/python bench/dns/gen.py --block $BLOCK --out "$WORK" --dnsmasq-address $DNSMASQ_IP
if [ "$RECORDS" = cli ]; then
  .venv/bin/edge up --config "$WORK/edge.yaml" --state-dir "$WORK/state" --roles resolver --port-offset 0 \
    --log-format json > "$WORK/edge.log" 2> "$WORK/edge.err" &
  PIDS="$PIDS $!"
  for _ in $(seq 300); do grep -q "edge: ready" "$WORK/edge.err" && echo READY > "$WORK/edge.out" && break; sleep 0.05; done
else
  .venv/bin/python bench/dns/serve.py --block $BLOCK --records "$RECORDS" > "$WORK/edge.out" 2> "$WORK/edge.err" &
  PIDS="$PIDS $!"
fi
dnsmasq --keep-in-foreground --conf-file="$WORK/dnsmasq.conf" --pid-file="$WORK/dnsmasq.pid" 2> "$WORK/dnsmasq.err" &
PIDS="$PIDS $!"
for _ in $(seq 200); do grep -q READY "$WORK/edge.out" && break; sleep 0.05; done
grep -q READY "$WORK/edge.out" || { echo "edge resolver did not start:"; cat "$WORK/edge.err"; exit 1; }
for _ in $(seq 100); do dig +short +time=1 +tries=1 @$DNSMASQ_IP www.example.com > /dev/null 2>&1 && break; sleep 0.05; done

# Same answers from both (sanity): the public view of www.example.com.
echo "edge    www.example.com: $(dig +short @$EDGE_IP www.example.com | sort | tr '\n' ' ')"
echo "dnsmasq www.example.com: $(dig +short @$DNSMASQ_IP www.example.com | sort | tr '\n' ' ')"

run() {  # ip round -> qps
  dnsperf -s "$1" -p 53 -d "$WORK/queries.txt" -l "$DUR" -c "$CLIENTS" -q "$OUTSTANDING" -T 1 > "$WORK/perf-$1-$2.txt" 2>&1 || true
  awk '/Queries per second/ {print $4}' "$WORK/perf-$1-$2.txt"
}
lost() { awk '/Queries lost/ {print $3, $4}' "$WORK/perf-$1-$2.txt"; }
median() { sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

# Alternate the two servers so that load from elsewhere on the machine hits both alike.
printf "%-6s %-8s %12s %s\n" round server qps lost
EDGE_ALL=""; DNSMASQ_ALL=""
for r in $(seq "$ROUNDS"); do
  e=$(run $EDGE_IP "$r"); printf "%-6s %-8s %12.0f %s\n" "$r" edge "$e" "$(lost $EDGE_IP "$r")"
  d=$(run $DNSMASQ_IP "$r"); printf "%-6s %-8s %12.0f %s\n" "$r" dnsmasq "$d" "$(lost $DNSMASQ_IP "$r")"
  EDGE_ALL="$EDGE_ALL $e"; DNSMASQ_ALL="$DNSMASQ_ALL $d"
done
EDGE_QPS=$(echo $EDGE_ALL | tr ' ' '\n' | median)
DNSMASQ_QPS=$(echo $DNSMASQ_ALL | tr ' ' '\n' | median)
printf "median  edge %.0f qps, dnsmasq %.0f qps\n" "$EDGE_QPS" "$DNSMASQ_QPS"
awk -v e="$EDGE_QPS" -v d="$DNSMASQ_QPS" 'BEGIN { if (d > 0) printf "ratio edge/dnsmasq: %.2fx (mode: %s, %s rounds of %ss, dnsperf -c %s -q %s)\n", e / d, "'"$RECORDS"'", '"$ROUNDS"', '"$DUR"', '"$CLIENTS"', '"$OUTSTANDING"' }'
