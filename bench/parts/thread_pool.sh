# SPDX-License-Identifier: MIT
# bench/run.sh part: thread pool round trip (bench_thread_pool: libcoro and
# libuv's uv_queue_work in one process), Python's ThreadPoolExecutor as the
# peer in the same run. Sourced by bench/run.sh (quick, build, out, say,
# run, want).
say "## thread pool"
if [ $quick = 1 ]; then TP_ONE=500 TP_BATCH=5000 TP_IDLE=1; else TP_ONE=20000 TP_BATCH=100000 TP_IDLE=10; fi
TP_THREADS=4
if [ -x "$build/bench/bench_thread_pool" ]; then
  # The default spin, then the CPU an idle pool uses over TP_IDLE seconds.
  run "$build/bench/bench_thread_pool" "$TP_ONE" "$TP_BATCH" "$TP_THREADS" "$TP_IDLE"
  # Other spins before parking: measured, not assumed.
  for spin in 5 50; do
    CORO_THREAD_POOL_SPIN_US=$spin run "$build/bench/bench_thread_pool" "$TP_ONE" "$TP_BATCH" "$TP_THREADS"
  done
else
  say "thread_pool: skipped impl=libcoro (bench_thread_pool not built)"
fi
if command -v python3 >/dev/null; then
  run python3 bench/peers/tpe_python.py "$TP_ONE" "$TP_BATCH" "$TP_THREADS"
  if /usr/bin/python3 -c 'import uvloop' 2>/dev/null; then
    run /usr/bin/python3 bench/peers/tpe_python.py "$TP_ONE" "$TP_BATCH" "$TP_THREADS" uvloop
  else
    say "thread_pool: skipped peer=python-uvloop (python3-uvloop not installed)"
  fi
else
  say "thread_pool: skipped peer=python (no python3)"
fi
