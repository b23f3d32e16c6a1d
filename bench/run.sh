#!/usr/bin/env bash
# Run libcoro's benchmarks and their peers in one go; one parseable line
# per figure. Peers (Go, Python asyncio/uvloop, boost.context) are installed
# from Debian when missing, or skipped with a line saying why.
# Usage: bench/run.sh [--quick] [--net] [BUILD_DIR]   (BUILD_DIR: a Release build)
# --net also runs the network benchmarks (bench/net/run.sh) at the end.
set -uo pipefail
cd "$(dirname "$0")/.."
quick=0
if [ "${1:-}" = --quick ]; then quick=1; shift; fi
net=0
if [ "${1:-}" = --net ]; then net=1; shift; fi
build=${1:-build/release}
if [ ! -x "$build/bench/bench_spawn" ]; then
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build "$build" -j"$(nproc)" >/dev/null || exit 1
fi
out=bench/results
mkdir -p "$out"
log="$out/latest.txt"
: > "$log"
say() { echo "$*" | tee -a "$log"; }
run() { "$@" 2>&1 | tee -a "$log"; }

# Install a Debian package for a peer unless --quick; 0 if present after.
want() {
  local pkg=$1 bin=$2
  command -v "$bin" >/dev/null 2>&1 && return 0
  [ $quick = 1 ] && return 1
  bash scripts/deps.sh "$pkg" >/dev/null 2>&1
  command -v "$bin" >/dev/null 2>&1
}

if [ $quick = 1 ]; then
  N_SWITCH=200000 N_SPAWN=20000 N_SLEEP=2000 N_SLEEP_BIG=0 N_PY=2000
else
  N_SWITCH=20000000 N_SPAWN=1000000 N_SLEEP=100000 N_SLEEP_BIG=1000000 N_PY=100000
fi
say "# libcoro $(git describe --always --dirty 2>/dev/null) on $(uname -srm), $(nproc) CPUs, $(date -u +%Y-%m-%dT%H:%MZ)"

# What a system call and a first touch of a page cost on this machine in
# this run (both vary about 5x between machines); again at the end.
probe() {
  if cmake --build "$build" --target net_probe >/dev/null 2>&1 && [ -x "$build/bench/net/net_probe" ]; then
    run "$build/bench/net/net_probe"
  else
    say "machine: skipped (net_probe did not build)"
  fi
}
say "## machine"
probe

say "## switch"
if [ $quick = 0 ] && ! dpkg -s libboost-context-dev >/dev/null 2>&1; then
  # Installed after the build was configured: configure again so that
  # bench_switch links fcontext (find_library retries a NOTFOUND result).
  if bash scripts/deps.sh libboost-context-dev >/dev/null 2>&1; then
    cmake -S . -B "$build" >/dev/null && cmake --build "$build" --target bench_switch >/dev/null
  fi
fi
run "$build/bench/bench_switch" "$N_SWITCH"

say "## spawn"
run "$build/bench/bench_spawn" "$N_SPAWN"
if command -v python3 >/dev/null; then
  run python3 bench/peers/spawn_asyncio.py "$N_PY"
  if [ $quick = 0 ] && ! python3 -c 'import uvloop' 2>/dev/null; then
    bash scripts/deps.sh python3-uvloop >/dev/null 2>&1 || true
  fi
  if /usr/bin/python3 -c 'import uvloop' 2>/dev/null; then
    run /usr/bin/python3 bench/peers/spawn_asyncio.py "$N_PY" uvloop
  else
    say "spawn: skipped peer=python-uvloop (python3-uvloop not installed)"
  fi
else
  say "spawn: skipped peer=python-asyncio (no python3)"
fi
gobin=""
if want golang-go go; then
  gobin="$out/spawn-go"
  (cd bench/peers && GOCACHE=/tmp/libcoro-gocache go build -o "../../$gobin" spawn.go) || gobin=""
fi
if [ -n "$gobin" ]; then
  run "$gobin" "$N_SPAWN"
  GOMAXPROCS=1 run "$gobin" "$N_SPAWN"
else
  say "spawn: skipped peer=go (golang-go not installed$([ $quick = 1 ] && echo '; --quick installs nothing'))"
fi

say "## gather and task groups"
run "$build/bench/bench_gather" "$N_PY"
if command -v python3 >/dev/null; then
  run python3 bench/peers/gather_asyncio.py "$N_PY"
  if /usr/bin/python3 -c 'import uvloop' 2>/dev/null; then
    run /usr/bin/python3 bench/peers/gather_asyncio.py "$N_PY" uvloop
  fi
else
  say "gather: skipped peer=python-asyncio (no python3)"
fi

say "## sleepers"
# Own guarded stacks, then compact tasks (shared stacks, copied out).
run "$build/bench/bench_sleepers" "$N_SLEEP"
run "$build/bench/bench_sleepers" "$N_SLEEP" 1000 compact
[ "$N_SLEEP_BIG" -gt 0 ] && run "$build/bench/bench_sleepers" "$N_SLEEP_BIG"
[ "$N_SLEEP_BIG" -gt 0 ] && run "$build/bench/bench_sleepers" "$N_SLEEP_BIG" 1000 compact
if [ -n "$gobin" ]; then
  run "$gobin" -sleep "$N_SLEEP" 1000
  [ "$N_SLEEP_BIG" -gt 0 ] && run "$gobin" -sleep "$N_SLEEP_BIG" 1000
fi
# Parts added by later subsystems: each is a bash fragment sourced here,
# with quick, build, out, say, run and want available.
for part in bench/parts/*.sh; do
  [ -e "$part" ] || continue
  # shellcheck source=/dev/null
  source "$part"
done
if [ $net = 1 ]; then
  # shellcheck disable=SC2046
  bash bench/net/run.sh $([ $quick = 1 ] && echo --quick --no-install) "$build" 2>&1 | tee -a "$log"
fi
say "## machine, at the end"
probe
say "# results in $log"
