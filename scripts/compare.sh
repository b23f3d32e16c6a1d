#!/usr/bin/env bash
# The comparison of sync, threads, processes and coroutines (libcoro, and
# the articles' Python programs side by side) in one command: installs what
# is missing (build tools, gnuplot-nox, python3-uvloop, python3-aiohttp),
# builds libcoro (Release) with its examples and the compare program, runs
# every cell with a progress line (the io_bound cells against a local HTTP
# server it starts and stops), and writes bench/results/compare.{md,json,png}.
# Usage: scripts/compare.sh [--quick] [BUILD_DIR]   (default build/release)
set -euo pipefail
export COMPARE_T0=$(date +%s)
cd "$(dirname "$0")/.."
quick=()
if [ "${1:-}" = --quick ]; then quick=(--quick); shift; fi
build=${1:-build/release}
bash scripts/deps.sh
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j"$(nproc)" --target compare sleep fib gcd blocking granularity >/dev/null
exec bash bench/compare/run.sh "${quick[@]}" "$build"
