# shellcheck shell=bash
# bench/run.sh part: child processes (bench_process) next to Go's os/exec
# and Python's asyncio subprocesses (and uvloop's when installed), in the
# same run: spawn + wait of /bin/true per child (one at a time, 16 at once)
# and pipe throughput parent -> cat -> parent. Sourced by run.sh (quick,
# build, out, say, run, want). The machine's load moves these figures a
# lot: compare lines of one run, not of different runs.
if [ "$quick" = 1 ]; then N_PROC=200 MB_PROC=100; else N_PROC=3000 MB_PROC=2000; fi
say "## subprocesses"
proc_go=""
if want golang-go go; then
  proc_go="$out/process-go"
  case "$proc_go" in /*) ;; *) proc_go="$PWD/$proc_go" ;; esac
  (cd bench/peers && GOCACHE=/tmp/libcoro-gocache go build -o "$proc_go" process_go.go) || proc_go=""
fi
[ -n "$proc_go" ] || say "process: skipped peer=go (golang-go not installed$([ "$quick" = 1 ] && echo '; --quick installs nothing'))"
proc_py=""
if [ -x /usr/bin/python3 ]; then proc_py=/usr/bin/python3; elif command -v python3 >/dev/null; then proc_py=python3; fi
for proc_round in 1 2; do
  if [ -x "$build/bench/bench_process" ]; then
    run "$build/bench/bench_process" "$N_PROC" "$MB_PROC"
  else
    say "process: skipped (no $build/bench/bench_process)"
  fi
  [ -n "$proc_go" ] && run "$proc_go" "$N_PROC" "$MB_PROC"
  if [ -n "$proc_py" ]; then
    run "$proc_py" bench/peers/process_asyncio.py "$N_PROC" "$MB_PROC"
    if "$proc_py" -c 'import uvloop' 2>/dev/null; then
      run "$proc_py" bench/peers/process_asyncio.py "$N_PROC" "$MB_PROC" uvloop
    elif [ $proc_round = 1 ]; then
      say "process: skipped peer=python-uvloop (python3-uvloop not installed)"
    fi
  elif [ $proc_round = 1 ]; then
    say "process: skipped peer=python-asyncio (no python3)"
  fi
done
# Ratios libcoro / go from the best of the rounds just logged (spawn: lower
# is better, target <= 1; pipe: higher is better, target >= 1).
awk '/^process: / {
       mode = ""; peer = ""
       for (i = 3; i <= NF; i++) {
         split($i, kv, "=")
         if (kv[1] == "mode") mode = kv[2]
         if (kv[1] == "peer") peer = kv[2]
       }
       k = mode "," peer
       if (mode == "pipe") { if (!(k in b) || $2 > b[k]) b[k] = $2 }
       else if (!(k in b) || $2 < b[k]) b[k] = $2
     }
     END {
       split("one concurrent16 pipe", modes, " ")
       for (j = 1; j <= 3; j++) {
         m = modes[j]
         if ((m ",libcoro") in b && (m ",go") in b && b[m ",go"] > 0)
           printf "process: %.2f ratio mode=%s libcoro/go (best of rounds)\n", b[m ",libcoro"] / b[m ",go"], m
       }
     }' "$log" | tee -a "$log"
