#!/usr/bin/env bash
# The main job: build libcoro (Release), run every example, then the
# comparison of sync, threads, processes and coroutines on the articles'
# workloads, in C and in Python side by side (scripts/compare.sh: table,
# JSON, Markdown and chart in bench/results/). Installs missing
# dependencies first.
# Usage: scripts/main.sh [--quick] [--all]
#   --quick: one run per comparison cell, small benchmark sizes, installs no peer
#   --all:   also the micro-benchmarks against their peers (bench/run.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
quick=0 all=0
for a in "$@"; do
  case "$a" in
    --quick) quick=1 ;;
    --all) all=1 ;;
    *) echo "main.sh: unknown option $a" >&2; exit 2 ;;
  esac
done
bash scripts/deps.sh
build=build/release
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j"$(nproc)"
echo "== examples"
for e in $(sed -n 's/^set(CORO_EXAMPLES \(.*\))/\1/p' examples/CMakeLists.txt); do
  [ -x "$build/examples/$e" ] || continue
  echo "-- $e"
  "$build/examples/$e"
done
echo "== comparison: sync, threads, processes, coroutines (C and Python)"
if [ $quick = 1 ]; then bash scripts/compare.sh --quick "$build"; else bash scripts/compare.sh "$build"; fi
if [ $all = 1 ] || [ $quick = 1 ]; then
  echo "== micro-benchmarks against their peers"
  if [ $quick = 1 ]; then bash bench/run.sh --quick "$build"; else bash bench/run.sh "$build"; fi
fi
