#!/usr/bin/env bash
# What debug mode costs: bench_spawn and bench_chan with debug mode off and
# on (CORO_DEBUG=1: the watchdog thread samples the steps), run in turns,
# ROUNDS times each (default 5), so that a busy spell of the machine falls
# on both alike. Prints each figure's median off and on and the ratio.
#
# Usage: bash bench/debug_cost.sh [BUILD_DIR] [ROUNDS]
#   BUILD_DIR: a Release build (default build/release; configured and built
#   here when needed).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build/release}
rounds=${2:-5}
if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
cmake --build "$build" -j"$(nproc)" --target bench_spawn bench_chan >/dev/null
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# One line per figure: "bench what mode value"
figures() {   # figures BIN: the figures of one run of a benchmark
  "$build/bench/$1" 2>/dev/null | awk -v b="$1" '
    function field(name,   v) { v = $0; if (v !~ name "=") return "-"; sub(".*" name "=", "", v); sub(/ .*/, "", v); return v }
    / n=1 / {next}
    / ns\/task / {print b, "spawn", field("mode"), $2; next}
    / ns\/msg / {print b, field("what"), field("mode"), $2; next}
    / us\/roundtrip / {print b, field("what"), "rtt_us", $2}' || true
}
for i in $(seq 1 "$rounds"); do
  for b in bench_spawn bench_chan; do
    figures "$b" | sed 's/$/ off/' >>"$tmp/all"
    CORO_DEBUG=1 figures "$b" | sed 's/$/ on/' >>"$tmp/all"
  done
done
echo "# debug mode off / on, medians of $rounds runs each ($(nproc) CPUs, $(date -u +%Y-%m-%dT%H:%MZ))"
printf '%-12s %-10s %-12s %10s %10s %8s\n' bench what mode off on on/off
awk '{k = $1 " " $2 " " $3; v[k, $5] = v[k, $5] " " $4; keys[k] = 1}
  function median(s,   a, n, i, j, t) {
    n = split(s, a, " ")
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  END {
    for (k in keys) {
      off = median(v[k, "off"]); on = median(v[k, "on"])
      split(k, p, " ")
      printf "%-12s %-10s %-12s %10.2f %10.2f %8.3f\n", p[1], p[2], p[3], off, on, (off > 0 ? on / off : 0)
    }
  }' "$tmp/all" | sort
