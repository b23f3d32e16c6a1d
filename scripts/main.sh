#!/usr/bin/env bash
# The main job: build libcoro (Release), run every example, then the
# benchmarks with their peers. Installs missing dependencies first.
# Usage: scripts/main.sh [--quick]   (--quick: small benchmark sizes)
set -euo pipefail
cd "$(dirname "$0")/.."
quick=0
if [ "${1:-}" = --quick ]; then quick=1; fi
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
echo "== benchmarks"
if [ $quick = 1 ]; then bash bench/run.sh --quick "$build"; else bash bench/run.sh "$build"; fi
