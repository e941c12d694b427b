#!/bin/sh
# Gives this container the plan's addresses it serves (EDGE_ADDRESSES, space-separated /32s) and
# the Spectrum pool as a local route (EDGE_LOCAL_ROUTES), so the kernel answers ARP for them on
# the compose bridge; then runs the command. Needs cap_add: NET_ADMIN.
set -e
dev=$(ip -o route show default 2>/dev/null | sed -n 's/.* dev \([^ ]*\).*/\1/p' | head -n 1)
dev=${dev:-eth0}
for a in ${EDGE_ADDRESSES:-}; do ip addr add "$a/32" dev "$dev" 2>/dev/null || true; done
for r in ${EDGE_LOCAL_ROUTES:-}; do ip route add local "$r" dev lo 2>/dev/null || true; done
exec "$@"
