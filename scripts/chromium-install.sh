#!/usr/bin/env bash
# Debian's chromium, the headless browser the dashboard and report tests (and `make dashboard-shot`)
# look through. Idempotent: installs only what is missing; needs root (apt-get).
set -euo pipefail

readonly PACKAGES=(chromium fonts-liberation)

missing=()
for pkg in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}\n' "$pkg" 2>/dev/null | grep -q '^install ok installed$'; then
        missing+=("$pkg")
    fi
done
if ((${#missing[@]} == 0)); then
    echo "[chromium-install] already installed: ${PACKAGES[*]}" >&2
    exit 0
fi
[[ "$(id -u)" == 0 ]] || { echo "[chromium-install] error: installing ${missing[*]} needs root (apt-get)" >&2; exit 1; }
echo "[chromium-install] installing: ${missing[*]}" >&2
apt-get update -q
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
