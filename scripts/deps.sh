#!/usr/bin/env bash
# Install what libcoro needs on Debian/Ubuntu, only if missing.
# Usage: scripts/deps.sh [extra packages...]
set -euo pipefail
# libhttp-parser-dev, libcurl4-openssl-dev: the examples fetch and http_server
pkgs=(libuv1-dev libcmocka-dev cmake pkg-config build-essential
      libhttp-parser-dev libcurl4-openssl-dev "$@")
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" -eq 0 ]; then sudo=(); else sudo=(sudo); fi
echo "deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
