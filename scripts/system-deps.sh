#!/usr/bin/env bash
# Installs the system tools the tests drive (curl, dig, openssl, nc, chromium, ip, docker-compose)
# when they are missing. Non-interactive; needs root (or passwordless sudo). Prints what is
# missing and how to get it otherwise.
set -euo pipefail
declare -A pkg=(
  [curl]=curl [dig]=dnsutils [openssl]=openssl [nc]=netcat-openbsd [chromium]=chromium
  [ip]=iproute2 [docker-compose]=docker-compose
)
missing=()
for tool in "${!pkg[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("${pkg[$tool]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo -n"; else
    echo "missing system packages: ${missing[*]} (install them: apt-get install ${missing[*]})" >&2
    exit 1
  fi
fi
echo "installing system packages: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >/dev/null
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
