# shellcheck shell=bash
# bench/run.sh part: channel hand-off between two tasks (bench_chan) next to
# Go's channels on the same workloads, GOMAXPROCS=1 and default, in the same
# command: wall time, then CPU time (CHAN_BENCH_CPU=1: what a loaded machine
# changes least). Sourced by run.sh (quick, build, out, say, run, want).
if [ "$quick" = 1 ]; then N_CHAN=20000; else N_CHAN=1000000; fi
say "## channels"
chan_go=""
if want golang-go go; then
  chan_go="$out/chan-go"
  case "$chan_go" in /*) ;; *) chan_go="$PWD/$chan_go" ;; esac
  (cd bench/peers && GOCACHE=/tmp/libcoro-gocache go build -o "$chan_go" chan.go) || chan_go=""
fi
[ -n "$chan_go" ] || say "chan: skipped peer=go (golang-go not installed$([ "$quick" = 1 ] && echo '; --quick installs nothing'))"
for chan_cpu in 0 1; do
  if [ -x "$build/bench/bench_chan" ]; then
    CHAN_BENCH_CPU=$chan_cpu run "$build/bench/bench_chan" "$N_CHAN"
  else
    say "chan: skipped (no $build/bench/bench_chan)"
  fi
  if [ -n "$chan_go" ]; then
    CHAN_BENCH_CPU=$chan_cpu GOMAXPROCS=1 run "$chan_go" "$N_CHAN"
    CHAN_BENCH_CPU=$chan_cpu run "$chan_go" "$N_CHAN"
  fi
done
# Ratios libcoro / Go GOMAXPROCS=1 from the lines just logged (target for
# the unbuffered ping-pong: <= 0.5).
awk '/^chan: .* ns\/msg / {
       key = ""; peer = ""; procs = ""
       for (i = 3; i <= NF; i++) {
         split($i, kv, "=")
         if (kv[1] == "what" || kv[1] == "mode" || kv[1] == "clock") key = key kv[2] ","
         if (kv[1] == "peer") peer = kv[2]
         if (kv[1] == "GOMAXPROCS") procs = kv[2]
       }
       if (peer == "libcoro") c[key] = $2
       if (peer == "go" && procs == 1) g[key] = $2
     }
     END {
       for (k in c) if ((k in g) && g[k] > 0) {
         split(k, p, ",")
         printf "chan: %.2f ratio what=%s mode=%s clock=%s libcoro/go-GOMAXPROCS=1\n", c[k] / g[k], p[1], p[2], p[3]
       }
     }' "$log" | sort | tee -a "$log"
