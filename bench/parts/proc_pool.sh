# shellcheck shell=bash
# bench/run.sh part: process pool round trips (bench_proc_pool) against
# Python's ProcessPoolExecutor, same job, same worker count, same command.
# Sourced by run.sh (quick, build, out, say, run, want).
if [ "$quick" = 1 ]; then N_PP_ONE=300 N_PP_BATCH=3000; else N_PP_ONE=5000 N_PP_BATCH=100000; fi
say "## process pool"
if [ -x "$build/bench/bench_proc_pool" ]; then
  run "$build/bench/bench_proc_pool" "$N_PP_ONE" "$N_PP_BATCH"
else
  say "proc_pool: skipped (no $build/bench/bench_proc_pool)"
fi
if command -v python3 >/dev/null; then
  run python3 bench/peers/ppe_python.py "$N_PP_ONE" "$N_PP_BATCH"
else
  say "proc_pool: skipped peer=python-ppe (no python3)"
fi
# The ratios, from the lines just logged.
awk '/^proc_pool: .* peer=/ {
       for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
       t[v["mode"] "," v["peer"]] = $2
     }
     END {
       split("one batch", modes, " ")
       for (k = 1; k <= 2; k++) {
         m = modes[k]
         if ((m ",libcoro") in t && (m ",python-ppe") in t && t[m ",python-ppe"] > 0)
           printf "proc_pool: %.3f ratio mode=%s libcoro/python-ppe\n", t[m ",libcoro"] / t[m ",python-ppe"], m
       }
     }' "$log" | tee -a "$log"
