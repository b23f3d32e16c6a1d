#!/bin/sh
# SPDX-License-Identifier: MIT
# Smoke test of the io_bound workload (ctest compare_io_smoke): `compare
# serve` with no delay on a free loopback port, every C strategy downloads
# the 40 pages from it, and all of them must succeed with the same bytes
# and checksum. Nothing is timed. Usage: io_smoke.sh COMPARE_BINARY
set -u
bin=$1
dir=$(mktemp -d)
"$bin" serve 0 0 > "$dir/port" &
srv=$!
trap 'kill $srv 2>/dev/null; rm -rf "$dir"' EXIT
i=0
while ! grep -q '^listening' "$dir/port" 2>/dev/null; do
  i=$((i + 1))
  if [ $i -gt 200 ] || ! kill -0 $srv 2>/dev/null; then
    echo "io_smoke: the server did not start"; exit 1
  fi
  sleep 0.05
done
COMPARE_HTTP=127.0.0.1:$(awk '{ print $2 }' "$dir/port")
export COMPARE_HTTP
ref=""
for s in sync threads processes coro coro-threads coro-procs; do
  out=$("$bin" io_bound "$s" 2) || { echo "io_smoke: $s failed"; exit 1; }
  echo "$out"
  for sum in $(echo "$out" | sed -n 's/.*check=\([0-9]*\).*bytes=\([0-9]*\).*/\1:\2/p'); do
    [ -z "$ref" ] && ref=$sum
    [ "$sum" = "$ref" ] || { echo "io_smoke: $s got $sum, not $ref"; exit 1; }
  done
done
[ "$ref" = "119067154680:1402880" ] || { echo "io_smoke: checksum $ref"; exit 1; }
# A server that is not there: every strategy must fail, not hang or succeed.
kill $srv; wait $srv 2>/dev/null
for s in sync coro; do
  if "$bin" io_bound "$s" 1 2>/dev/null; then echo "io_smoke: $s succeeded without a server"; exit 1; fi
done
echo "io_smoke: 6 strategies agree on $ref"
