#!/usr/bin/env bash
# The comparison: each of the articles' workloads run by each concurrency
# strategy, in C (bench/compare/compare.c) and, when python3 is there, in
# Python (bench/compare/peers.py: sync, threading, multiprocessing, asyncio,
# uvloop if installed). Median of several runs per cell, the ideal time
# beside it, each strategy's ratio to the ideal, the targets checked.
# The io_bound workload downloads from a local HTTP server that this script
# starts (`compare serve`, on 127.0.0.1 only) and stops.
#
# Usage: bench/compare/run.sh [--quick] [BUILD_DIR]
#   --quick: one run per cell, no Python CPU-bound cells, installs nothing.
#   BUILD_DIR: a Release build (default build/release; configured and built
#   here when the compare binary is missing or older than its source).
# Writes bench/results/compare.{tsv,json,md,png} (or .svg) and prints the
# Markdown table. A progress line on stderr shows the running cell.
set -uo pipefail
cd "$(dirname "$0")/../.."
quick=0
if [ "${1:-}" = --quick ]; then quick=1; shift; fi
build=${1:-build/release}
out=bench/results
mkdir -p "$out"
t_start=${COMPARE_T0:-$(date +%s)}  # scripts/compare.sh sets it: the build counts too

bin=$build/bench/compare/compare
if [ ! -x "$bin" ] || [ bench/compare/compare.c -nt "$bin" ]; then
  echo "compare: building $build (Release)" >&2
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null || exit 1
  cmake --build "$build" -j"$(nproc)" --target compare >/dev/null || exit 1
fi

# Peers and the chart tool, from Debian, unless --quick.
if [ $quick = 0 ]; then
  command -v gnuplot >/dev/null 2>&1 || bash scripts/deps.sh gnuplot-nox >/dev/null 2>&1 || true
  if [ -x /usr/bin/python3 ] && ! /usr/bin/python3 -c 'import uvloop' 2>/dev/null; then
    bash scripts/deps.sh python3-uvloop >/dev/null 2>&1 || true
  fi
  if [ -x /usr/bin/python3 ] && ! /usr/bin/python3 -c 'import aiohttp' 2>/dev/null; then
    bash scripts/deps.sh python3-aiohttp >/dev/null 2>&1 || true
  fi
fi
py=""
if [ -x /usr/bin/python3 ]; then py=/usr/bin/python3
elif command -v python3 >/dev/null 2>&1; then py=$(command -v python3); fi
uvloop=0
if [ -n "$py" ] && "$py" -c 'import uvloop' 2>/dev/null; then uvloop=1; fi
aiohttp=0
if [ -n "$py" ] && "$py" -c 'import aiohttp' 2>/dev/null; then aiohttp=1; fi

cores=$(nproc)
if [ $quick = 1 ]; then RUNS_IO=1 RUNS_CPU=1 RUNS_SPD=1; else RUNS_IO=3 RUNS_CPU=5 RUNS_SPD=5; fi
export SCALE_FIB=30 SCALE_GCD=8   # the C speedup cells: about 0.8 s of sync work each
BATCHES="1 4 16 64 256 1024 8000"
PY_BATCHES="1 16 256 8000"

# ---- the cells: "lang workload strategy runs batch scale" ------------------
cells=()
add() { cells+=("$*"); }
C_IO="sync threads processes coro coro-threads coro-procs"
C_CPU="sync threads processes coro coro-threads coro-procs"
PY_ALL="sync threads processes asyncio asyncio-threads asyncio-procs"
for s in $C_IO; do add c sleep "$s" $RUNS_IO 1 1; done
for s in $C_IO coro-blocking; do add c blocking "$s" $RUNS_IO 1 1; done
add c io_bound sync $RUNS_IO 1 1  # 2 s a run; the others take 0.2 s, so 5 runs
for s in threads processes coro coro-threads; do add c io_bound "$s" $RUNS_CPU 1 1; done
for w in fib-rec fib-iter gcd; do
  for s in $C_CPU; do add c "$w" "$s" $RUNS_CPU 1 1; done
done
add c fib-rec coro-percall 1 1 1
add c fib-rec coro-eager $RUNS_IO 1 1
for s in $C_CPU; do add c fib-rec "$s" $RUNS_SPD 1 $SCALE_FIB; done
for s in $C_CPU; do add c gcd "$s" $RUNS_SPD 1 $SCALE_GCD; done
add c granularity sync $RUNS_IO 1 1
for b in $BATCHES; do
  for s in threads processes coro-threads coro-procs; do add c granularity "$s" $RUNS_IO "$b" 1; done
done
if [ -n "$py" ]; then
  for s in $PY_ALL; do add py sleep "$s" 1 1 1; done
  for s in $PY_ALL asyncio-blocking; do add py blocking "$s" 1 1 1; done
  for s in sync threads processes asyncio asyncio-threads; do
    [ $s = asyncio ] && [ $aiohttp = 0 ] && continue
    add py io_bound "$s" 1 1 1
  done
  if [ $uvloop = 1 ]; then
    add pyuv sleep asyncio 1 1 1
    add pyuv blocking asyncio 1 1 1
    [ $aiohttp = 1 ] && add pyuv io_bound asyncio 1 1 1
  fi
  if [ $quick = 0 ]; then
    for w in fib-rec fib-iter gcd; do
      for s in $PY_ALL; do add py "$w" "$s" 1 1 1; done
    done
    add py granularity sync 1 8000 1
    for b in $PY_BATCHES; do add py granularity processes 1 "$b" 1; done
  fi
fi

# ---- run them ------------------------------------------------------------------
# Cells of one group (same language, workload and scale) run in rounds, one run
# of each cell per round, so that a change of load on a shared machine hits
# every strategy alike; each cell's figure is the median of its runs.
tsv=$out/compare.tsv
raw=$out/compare-raw.txt
: > "$tsv"
: > "$raw"
runsdir=$(mktemp -d)
server_pid=""
trap '[ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; rm -rf "$runsdir"' EXIT

# The io_bound server: every answer after 50 ms, on a free loopback port.
# Without it (a library without streams) the io_bound cells fail and show
# as missing.
if [[ " ${cells[*]} " == *" io_bound "* ]]; then
  "$bin" serve > "$runsdir/server.out" 2>>"$raw" &
  server_pid=$!
  for _ in $(seq 100); do
    grep -q '^listening' "$runsdir/server.out" 2>/dev/null && break
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.05
  done
  port=$(awk '/^listening/ { print $2 }' "$runsdir/server.out")
  if [ -n "$port" ]; then export COMPARE_HTTP=127.0.0.1:$port
  else echo "compare: the io_bound server did not start (see $raw)" >&2; fi
fi
order=()   # "cell-index" per execution
ncells=${#cells[@]}
g=0
while [ $g -lt $ncells ]; do
  read -r lang0 w0 _ _ _ sc0 <<<"${cells[$g]}"
  e=$g
  maxr=0
  while [ $e -lt $ncells ]; do
    read -r lang w _ runs _ sc <<<"${cells[$e]}"
    [ "$lang" = "$lang0" ] && [ "$w" = "$w0" ] && [ "$sc" = "$sc0" ] || break
    [ "$runs" -gt $maxr ] && maxr=$runs
    e=$((e + 1))
  done
  for ((round = 1; round <= maxr; round++)); do
    for ((c = g; c < e; c++)); do
      read -r _ _ _ runs _ _ <<<"${cells[$c]}"
      [ "$runs" -ge $round ] && order+=("$c")
    done
  done
  g=$e
done
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
n=${#order[@]}
i=0
for c in "${order[@]}"; do
  i=$((i + 1))
  read -r lang w s runs b sc <<<"${cells[$c]}"
  [ -e "$runsdir/$c.fail" ] && continue
  case $lang in
    c) cmd=("$bin" "$w" "$s" 1 "$b" "$sc");;
    py) cmd=("$py" bench/compare/peers.py "$w" "$s" 1 "$b");;
    pyuv) cmd=("$py" bench/compare/peers.py "$w" "$s" 1 "$b" --uvloop);;
  esac
  extra=""
  [ "$b" != 1 ] && extra=" batch $b"
  [ "$sc" != 1 ] && extra="$extra x$sc"
  printf '\r\033[K[%d/%d] %s%s / %s (%s) ...' "$i" "$n" "$w" "$extra" "$s" \
    "$([ "$lang" = c ] && echo C || echo Python)" >&2
  res=$("${cmd[@]}" 2>>"$raw")
  rc=$?
  echo "$res" >> "$raw"
  # rc 3: not available (a pool still a stub); anything else: failed
  if [ $rc -ne 0 ]; then touch "$runsdir/$c.fail"; continue; fi
  echo "$res" >> "$runsdir/$c.out"
done
printf '\r\033[K' >&2
for ((c = 0; c < ncells; c++)); do
  read -r lang w s runs b sc <<<"${cells[$c]}"
  case $lang in c) label=$s;; py) label=py-$s;; pyuv) label=py-uvloop;; esac
  f=$runsdir/$c.out
  [ -e "$runsdir/$c.fail" ] && f=/dev/null
  [ -e "$f" ] || f=/dev/null
  awk -v lang="$lang" -v w="$w" -v label="$label" -v b="$b" -v sc="$sc" '
    /^compare: / { for (k = 4; k <= NF; k++) { split($k, kv, "=");
        if (kv[1] == "seconds") t[n++] = kv[2]; if (kv[1] == "check") c = kv[2]
        if (kv[1] == "bytes") c = c ":" kv[2] } }
    END { if (n == 0) { printf "%s\t%s\t%s\t%s\t%s\tNA\t0\t-\n", lang, w, label, b, sc; exit }
          for (x = 0; x < n; x++) for (y = x + 1; y < n; y++) if (t[y] < t[x]) { z = t[x]; t[x] = t[y]; t[y] = z }
          printf "%s\t%s\t%s\t%s\t%s\t%.4f\t%d\t%s\n", lang, w, label, b, sc, t[int((n - 1) / 2)], n, c }' "$f" >> "$tsv"
done
t_total=$(( $(date +%s) - t_start ))
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- the report --------------------------------------------------------------
machine="$(uname -srm), $cores CPUs ($(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | sed 's/.*: //')), load average $load_before before the run, $load_after after"
commit=$(git describe --always --dirty 2>/dev/null || echo unknown)
pyver=$([ -n "$py" ] && "$py" -c 'import sys; print(sys.version.split()[0])' || echo none)
cc_ver=$( (cc --version 2>/dev/null || echo cc) | head -1)
bash bench/compare/report.sh "$tsv" "$out" "$cores" "$machine" "$commit" "$pyver" \
  "$cc_ver" "$t_total" "$quick" "$uvloop"
