#!/bin/sh
# Installs the Debian packages that building, running and testing Petrel need.
# Idempotent and non-interactive: does nothing when every package is present.
set -eu
pkgs="build-essential cmake pkg-config clang libclang-rt-14-dev libssl-dev librocksdb-dev
      libjemalloc-dev python3-pytest python3-pytest-timeout python3-paho-mqtt mosquitto
      mosquitto-clients"
missing=""
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "deps: installing$missing"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
# shellcheck disable=SC2086
$SUDO apt-get install -y -q --no-install-recommends $missing
