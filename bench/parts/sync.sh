# shellcheck shell=bash
# bench/run.sh part: lock and queue (bench_sync) against asyncio and uvloop
# on the same workloads. Sourced by run.sh (quick, build, out, say, run, want).
if [ "$quick" = 1 ]; then N_SYNC=20000; N_SYNC_PY=20000; else N_SYNC=2000000; N_SYNC_PY=200000; fi
say "## sync: lock and queue"
if [ -x "$build/bench/bench_sync" ]; then
  run "$build/bench/bench_sync" "$N_SYNC"
else
  say "sync: skipped (no $build/bench/bench_sync)"
fi
if command -v python3 >/dev/null; then
  run python3 bench/peers/sync_asyncio.py "$N_SYNC_PY"
  if /usr/bin/python3 -c 'import uvloop' 2>/dev/null; then
    run /usr/bin/python3 bench/peers/sync_asyncio.py "$N_SYNC_PY" uvloop
  else
    say "sync: skipped peer=python-uvloop (python3-uvloop not installed)"
  fi
else
  say "sync: skipped peer=python-asyncio (no python3)"
fi
