#!/usr/bin/env bash
# The network benchmarks in one command: libcoro's servers next to raw
# libuv, Go (GOMAXPROCS=1), Node and Python asyncio / uvloop, on loopback.
#
#   1. http   keep-alive hello world, wrk -t1 -c100: req/s, server CPU/req
#   2. echo   1 KiB ping-pong over 100 connections (echo_load): msgs/s
#   3. churn  connect, one HTTP request, close (churn): conns/s
#   4. idle   RSS per idle connection with 10,000 open (idle_conns)
#   5. mc     http again on every CPU: libcoro --loops 1 and --loops N
#             (N = CPUs, SO_REUSEPORT), Go GOMAXPROCS=1 and =N; wrk -tN
#             -c100 shares the same CPUs (on a 2-CPU machine it takes
#             about half of them, so the rates are bounded by wrk)
#
# The servers run on CPU $NET_SERVER_CPU (default 0), the load generator on
# $NET_LOAD_CPU (default 1). Server CPU is utime + stime of all its threads
# (/proc/PID/stat) over the measured interval. The servers of a benchmark
# are started together and idle but for the one under load; the load moves
# from one to the next in slices of $NET_SLICE s (1), $NET_SLICES per server
# (10, so 10 s each; --quick: 2), in a changing order, so that a busy spell
# of a shared machine falls on every server alike. The figures are the sums
# over the slices, next to the fastest slice (the quietest moment). A last 2 s pass under `perf stat` counts each server's
# system calls per operation. Then every server is killed. Missing tools
# are installed with apt-get (wrk golang-go nodejs python3-uvloop
# libuv1-dev libhttp-parser-dev) unless --no-install; a peer that still
# cannot run is skipped with a line saying why.
#
# Usage: bash bench/net/run.sh [--quick] [--no-install] [--only LIST] [BUILD_DIR]
#   --only http,echo,churn,idle,mc: just those benchmarks (default: all).
#   BUILD_DIR: a Release build tree (default build/release; configured and
#   built here when needed). Results: bench/results/net.{md,json,txt}.
set -uo pipefail
cd "$(dirname "$0")/../.."
quick=0 install=1 only=http,echo,churn,idle,mc
while [ $# -gt 0 ]; do
  case $1 in
    --quick) quick=1; shift ;;
    --no-install) install=0; shift ;;
    --only) only=$2; shift 2 ;;
    -h|--help) sed -n '2,28p' "$0"; exit 0 ;;
    *) break ;;
  esac
done
build=${1:-build/release}
want() { [[ ",$only," == *",$1,"* ]]; }
out=bench/results
mkdir -p "$out"
log=$out/net.txt
tsv=$out/net.tsv
: > "$log"
: > "$tsv"
say() { echo "$*" | tee -a "$log"; }
scpu=${NET_SERVER_CPU:-0}
lcpu=${NET_LOAD_CPU:-1}
# On a shared machine, servers and load run slightly above other work
# (root only; NET_NICE=0 turns it off).
if [ "$(id -u)" -eq 0 ]; then nice=${NET_NICE:--10}; else nice=0; fi
# Measured load per server: NSLICES slices of SLICE seconds (10 x 1 s;
# --quick: 2 x 1 s).
SLICE=${NET_SLICE:-1}
if [ $quick = 1 ]; then
  NSLICES=${NET_SLICES:-2} IDLE_N=${NET_IDLE_CONNS:-2000}
else
  NSLICES=${NET_SLICES:-10} IDLE_N=${NET_IDLE_CONNS:-10000}
fi
PORT=${NET_PORT:-28080}
ncpu=$(nproc)
allcpus=0-$((ncpu - 1))
wrk_threads=1
tck=$(getconf CLK_TCK)

# ---- tools and peers ------------------------------------------------------
apt_updated=0
need_pkg() {   # need_pkg PACKAGE CHECK-COMMAND...: install PACKAGE if CHECK fails
  local pkg=$1; shift
  "$@" >/dev/null 2>&1 && return 0
  if [ $install = 0 ]; then return 1; fi
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  if [ $apt_updated = 0 ]; then
    "${sudo[@]}" apt-get update -qq >/dev/null 2>&1
    apt_updated=1
  fi
  say "net: installing $pkg"
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "$pkg" >/dev/null 2>&1
  "$@" >/dev/null 2>&1
}
have_wrk=0 have_go=0 have_node=0 have_py=0 have_uvloop=0
need_pkg libuv1-dev pkg-config --exists libuv || say "net: libuv1-dev missing; the build will fail"
need_pkg libhttp-parser-dev test -e /usr/include/http_parser.h ||
  say "net: libhttp-parser-dev missing: no examples/http_server, no uv_http"
need_pkg wrk command -v wrk && have_wrk=1
need_pkg golang-go command -v go && have_go=1
need_pkg nodejs command -v node && have_node=1
[ -x /usr/bin/python3 ] && have_py=1
need_pkg python3-uvloop /usr/bin/python3 -c 'import uvloop' && have_uvloop=1
command -v taskset >/dev/null || { echo "net: taskset (util-linux) is required" >&2; exit 1; }
have_perf=0
if command -v perf >/dev/null && perf stat -e raw_syscalls:sys_enter -- true >/dev/null 2>&1; then
  have_perf=1
fi

# ---- build ----------------------------------------------------------------
if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null || exit 1
else
  cmake -S . -B "$build" >/dev/null || exit 1   # picks up src/io and examples
fi
targets=(uv_echo echo_load churn idle_conns net_probe)
avail=$(cmake --build "$build" --target help 2>/dev/null)
grep -qw uv_http <<<"$avail" && targets+=(uv_http)
cmake --build "$build" -j"$(nproc)" --target "${targets[@]}" >/dev/null || {
  echo "net: build failed: cmake --build $build --target ${targets[*]}" >&2; exit 1; }
# libcoro's servers, when src/io and the example are there.
for t in echo_coro http_server; do
  grep -qw "$t" <<<"$avail" || continue
  cmake --build "$build" -j"$(nproc)" --target "$t" >"$out/net-build-$t.log" 2>&1 ||
    echo "net: building $t failed (see $out/net-build-$t.log); libcoro's $t skipped" >&2
done
nb=$build/bench/net
coro_http=$build/examples/http_server
coro_echo=$nb/echo_coro
gobin=""
if [ $have_go = 1 ]; then
  gobin=$PWD/$out/net-peer-go
  (cd bench/net && GOCACHE=${GOCACHE:-/tmp/libcoro-gocache} GO111MODULE=off go build -o "$gobin" peer.go) \
    || { say "net: go build of bench/net/peer.go failed; Go skipped"; gobin=""; }
fi

hdr="libcoro ${NET_REV:-$(git describe --always --dirty 2>/dev/null)} on $(uname -srm), $(nproc) CPUs, $(date -u +%Y-%m-%dT%H:%MZ)"
say "# $hdr network benchmarks"
say "# server on CPU $scpu, load on CPU $lcpu, nice $nice; $NSLICES slice(s) of ${SLICE}s per server; load average $(cut -d' ' -f1-3 /proc/loadavg)"
say "# versions: libuv $(pkg-config --modversion libuv 2>/dev/null)$( [ -n "$gobin" ] && echo ", $(go version | cut -d' ' -f3)")$( [ $have_node = 1 ] && echo ", node $(node --version)")$( [ $have_py = 1 ] && echo ", $(/usr/bin/python3 --version)")$( [ $have_uvloop = 1 ] && echo ", uvloop $(/usr/bin/python3 -c 'import uvloop; print(uvloop.__version__)')")$( [ $have_wrk = 1 ] && echo ", $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2)")"

# ---- the machine's kernel costs -----------------------------------------
probe=$(taskset -c "$scpu" "$nb/net_probe")
echo "$probe" | tee -a "$log"
sys_ns=$(awk '/ns\/syscall/ {print $2}' <<<"$probe")
fault_ns=$(awk '/ns\/fault/ {print $2}' <<<"$probe")
printf 'probe\tmachine\tsyscall_ns\t%s\n' "$sys_ns" >> "$tsv"
printf 'probe\tmachine\tfault_ns\t%s\n' "$fault_ns" >> "$tsv"

# ---- servers ------------------------------------------------------------
# Each peer: NAME and a command taking the port as its last argument.
declare -A http_cmd echo_cmd mc_cmd
http_peers=() echo_peers=()
skip() { say "net: skipped $1 peer=$2 ($3)"; }
if [ -x "$coro_http" ]; then http_peers+=(libcoro); http_cmd[libcoro]="$coro_http"
else skip http libcoro "examples/http_server not built yet"; fi
if [ -x "$nb/uv_http" ]; then http_peers+=(libuv); http_cmd[libuv]="$nb/uv_http"
else skip http libuv "bench/net/uv_http not built: no http-parser (libhttp-parser-dev)"; fi
if [ -n "$gobin" ]; then http_peers+=(go); http_cmd[go]="env GOMAXPROCS=1 $gobin http"
else skip http go "golang-go not installed"; fi
if [ $have_node = 1 ]; then http_peers+=(node); http_cmd[node]="node bench/net/http_node.js"
else skip http node "nodejs not installed"; fi
if [ $have_py = 1 ]; then http_peers+=(asyncio); http_cmd[asyncio]="/usr/bin/python3 bench/net/http_asyncio.py"
else skip http asyncio "no /usr/bin/python3"; fi
if [ $have_uvloop = 1 ]; then http_peers+=(uvloop); http_cmd[uvloop]="/usr/bin/python3 bench/net/http_asyncio.py --uvloop"
else skip http uvloop "python3-uvloop not installed"; fi

if [ -x "$coro_echo" ]; then echo_peers+=(libcoro); echo_cmd[libcoro]="$coro_echo"
else skip echo libcoro "bench/net/echo_coro not built: no coro_server_serve in src/io yet"; fi
echo_peers+=(libuv); echo_cmd[libuv]="$nb/uv_echo"
[ -n "$gobin" ] && { echo_peers+=(go); echo_cmd[go]="env GOMAXPROCS=1 $gobin echo"; }
[ $have_uvloop = 1 ] && { echo_peers+=(uvloop); echo_cmd[uvloop]="/usr/bin/python3 bench/net/echo_asyncio.py --uvloop"; }
# Every CPU: one loop / thread against N.
mc_peers=()
if [ -x "$coro_http" ]; then
  mc_peers+=(libcoro-1 libcoro-N)
  mc_cmd[libcoro-1]="$coro_http --loops 1"; mc_cmd[libcoro-N]="$coro_http --loops $ncpu"
fi
if [ -n "$gobin" ]; then
  mc_peers+=(go-1 go-N)
  mc_cmd[go-1]="env GOMAXPROCS=1 $gobin http"; mc_cmd[go-N]="env GOMAXPROCS=$ncpu $gobin http"
fi
churn_peers=()
for p in libcoro libuv go; do [ -n "${http_cmd[$p]:-}" ] && churn_peers+=("$p"); done

declare -A pid_of port_of
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# start_server NAME CMD: run CMD PORT on the server CPU with a fresh port;
# pid_of[NAME] and port_of[NAME] once the port accepts connections.
start_server() {
  local name=$1 cmd=$2 port pid
  PORT=$((PORT + 1))
  while port_open "$PORT"; do PORT=$((PORT + 1)); done
  port=$PORT
  # shellcheck disable=SC2086
  nice -n "$nice" taskset -c "${server_cpus:-$scpu}" $cmd "$port" >"$out/net-server-$name.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 200); do
    if port_open "$port"; then pid_of[$name]=$pid; port_of[$name]=$port; return 0; fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  say "net: server $name ('$cmd') did not start: $(tail -3 "$out/net-server-$name.log" | tr '\n' ' ')"
  kill -KILL "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
  return 1
}
stop_servers() {
  local name pid
  for name in "${!pid_of[@]}"; do
    pid=${pid_of[$name]}
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    unset "pid_of[$name]"
  done
}
trap 'stop_servers' EXIT
# start_all NAME...: start each; sets "up" to those that started.
start_all() {   # start_all BENCH NAME...
  local b=$1 p cmd; shift
  up=()
  for p in "$@"; do
    case $b in
      http|churn) cmd=${http_cmd[$p]} ;;
      mc) cmd=${mc_cmd[$p]} ;;
      *) cmd=${echo_cmd[$p]} ;;
    esac
    start_server "$p" "$cmd" && up+=("$p")
  done
}
cpu_s() {   # utime + stime of a process, seconds
  awk -v t="$tck" '{ sub(/^.*\) /, ""); print ($12 + $13) / t }' "/proc/$1/stat"
}
load() { nice -n "$nice" taskset -c "${load_cpus:-$lcpu}" "$@"; }
# perf_start PID / perf_stop: count the server's system calls meanwhile.
perf_start() {
  perf_out=$(mktemp)
  perf stat -x, -e raw_syscalls:sys_enter,page-faults -p "$1" -o "$perf_out" &
  perf_pid=$!
  sleep 0.3
}
perf_stop() {   # sets nsys and nflt: system calls and page faults counted
  kill -INT "$perf_pid" 2>/dev/null
  wait "$perf_pid" 2>/dev/null
  read -r nsys nflt < <(awk -F, '/raw_syscalls/ {s = $1} /page-faults/ {f = $1} END {print s + 0, f + 0}' "$perf_out")
  rm -f "$perf_out"
}
record() {   # record BENCH PEER METRIC VALUE SLICE
  printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "${5:-0}" >> "$tsv"
}
per() { awk -v a="$1" -v b="$2" -v f="${3:-1}" 'BEGIN { if (b > 0) printf "%.3f", a * f / b }'; }

# wrk_run SECONDS URL: prints "REQUESTS SECONDS ERRORS CLIENT_CPU_S"
wrk_run() {
  local t out
  t=$(mktemp)
  out=$( { TIMEFORMAT='%U %S'; time load wrk -t"$wrk_threads" -c100 -d"$1"s "$2"; } 2>"$t")
  awk -v c="$(tail -1 "$t" | awk '{print $1 + $2}')" '
    / requests in / {r = $1; d = $4; sub(/s,?$/, "", d); if (d ~ /m$/) { sub(/m$/, "", d); d = d * 60 }}
    /Socket errors:/ {gsub(/[^0-9 ]/, " "); split($0, a, " "); e += a[1] + a[2] + a[3] + a[4]}
    /Non-2xx/ {e += $NF}
    END {print r + 0, d + 0, e + 0, c + 0}' <<<"$out"
  rm -f "$t"
}

# One slice of load against peer $p: sets ops, secs, cpu (server seconds)
# and ok. The generators measure the server's CPU over their own interval.
slice() {   # slice BENCH PEER SECONDS
  local b=$1 p=$2 d=$3 pid=${pid_of[$2]} port=${port_of[$2]} line c0 c1 errs
  ok=0 ops=0 secs=0 cpu=0 ccpu=""
  case $b in
    http|mc)
      c0=$(cpu_s "$pid")
      read -r ops secs errs ccpu < <(wrk_run "$d" "http://127.0.0.1:$port/")
      c1=$(cpu_s "$pid")
      cpu=$(awk -v a="$c0" -v b="$c1" 'BEGIN {print b - a}')
      [ "$errs" = 0 ] && [ "$ops" -gt 0 ] && ok=1
      [ $ok = 1 ] || say "net: http peer=$p: $errs errors in a slice; not counted" ;;
    echo|churn)
      if [ "$b" = echo ]; then
        line=$(load "$nb/echo_load" -c 100 -s 1024 -w 0.2 -d "$d" -p "$pid" 127.0.0.1 "$port")
      else
        line=$(load "$nb/churn" -c 50 -w 0.2 -d "$d" -p "$pid" 127.0.0.1 "$port")
      fi && ok=1
      ops=$(sed -n 's/.* \(msgs\|conns\)=\([0-9]*\).*/\2/p' <<<"$line")
      secs=$(sed -n 's/.* seconds=\([0-9.]*\).*/\1/p' <<<"$line")
      cpu=$(sed -n 's/.* server_cpu_s=\([0-9.]*\).*/\1/p' <<<"$line")
      ccpu=$(sed -n 's/.* client_cpu_s=\([0-9.]*\).*/\1/p' <<<"$line")
      [ $ok = 1 ] || say "net: $b peer=$p failed a slice: $line" ;;
  esac
}

# run_bench BENCH UNIT PEER...: every server started at once and idle but
# for the one under load; the load moves from server to server in slices of
# $SLICE seconds, $NSLICES per server, so that a busy spell of the machine
# falls on all of them alike. Then a perf pass per server.
run_bench() {
  local b=$1 unit=$2 i j n p; shift 2
  start_all "$b" "$@"
  n=${#up[@]}
  [ "$n" -gt 0 ] || return 0
  for p in "${up[@]}"; do slice "$b" "$p" 1; done   # warm-up
  for i in $(seq 1 "$NSLICES"); do
    for j in $(seq 0 $((n - 1))); do
      p=${up[$(( (i + j) % n ))]}                     # a different order each time
      slice "$b" "$p" "$SLICE"
      [ $ok = 1 ] || continue
      record "$b" "$p" ops "$ops" "$i"; record "$b" "$p" secs "$secs" "$i"; record "$b" "$p" cpu "$cpu" "$i"
      [ -n "$ccpu" ] && record "$b" "$p" ccpu "$ccpu" "$i"
      say "$b: $(awk -v a="$ops" -v b="$secs" 'BEGIN {printf "%.0f", a / b}') $unit/s peer=$p slice=$i ops=$ops seconds=$secs server_cpu_s=$cpu server_cpu_us_per_op=$(per "$cpu" "$ops" 1e6)${ccpu:+ client_cpu_s=$ccpu}"
    done
  done
  if [ $have_perf = 1 ]; then
    for p in "${up[@]}"; do
      perf_start "${pid_of[$p]}"
      slice "$b" "$p" 2
      perf_stop
      if [ $ok = 1 ] && [ "$ops" -gt 0 ]; then
        record "$b" "$p" syscalls "$(per "$nsys" "$ops")"
        say "$b: $(per "$nsys" "$ops") syscalls/$unit peer=$p (perf stat, $ops ${unit}s)"
      fi
    done
  fi
  stop_servers
}

# ---- 1. HTTP keep-alive ------------------------------------------------
if ! want http; then :
elif say "## http: keep-alive hello world, wrk -t1 -c100, ${NSLICES} x ${SLICE}s per server"
  [ $have_wrk = 0 ]; then
  say "net: skipped http (wrk not installed)"
else
  run_bench http req "${http_peers[@]}"
fi

# ---- 2. echo -------------------------------------------------------------
if want echo; then
  say "## echo: 1 KiB ping-pong, 100 connections (bench/net/echo_load), ${NSLICES} x ${SLICE}s per server"
  run_bench echo msg "${echo_peers[@]}"
fi

# ---- 3. connection churn ---------------------------------------------------
if want churn; then
  say "## churn: connect, GET /, read the response, close (reset); 50 connectors (bench/net/churn), ${NSLICES} x ${SLICE}s per server"
  run_bench churn conn "${churn_peers[@]}"
fi

# ---- 4. memory per idle connection --------------------------------------
hard=$(ulimit -Hn)
want idle && say "## idle: VmRSS per idle connection, $IDLE_N connections (bench/net/idle_conns; descriptor hard limit $hard)"
if want idle && [ "$hard" != unlimited ] && [ "$hard" -lt $((IDLE_N + 100)) ]; then
  say "net: the hard descriptor limit $hard is below $((IDLE_N + 100)); idle_conns uses what fits"
fi
for p in "${echo_peers[@]}"; do
  want idle || break
  [ "$p" = uvloop ] && continue
  start_server "$p" "${echo_cmd[$p]}" || continue
  line=$(load "$nb/idle_conns" -n "$IDLE_N" -s 1000 -p "${pid_of[$p]}" 127.0.0.1 "${port_of[$p]}")
  rc=$?
  stop_servers
  if [ $rc = 0 ]; then
    say "idle: ${line#idle_conns: } peer=$p"
    record idle "$p" bytes "$(awk '{print $2}' <<<"$line")"
    record idle "$p" rss_before "$(sed -n 's/.*rss_before=\([0-9]*\).*/\1/p' <<<"$line")"
    record idle "$p" rss_after "$(sed -n 's/.*rss_after=\([0-9]*\).*/\1/p' <<<"$line")"
  else
    say "net: idle peer=$p failed: $line"
  fi
done

# ---- 5. every CPU --------------------------------------------------------
if ! want mc; then :
elif say "## mc: keep-alive hello world on all $ncpu CPUs (server and wrk -t$ncpu -c100 share them), ${NSLICES} x ${SLICE}s per server"
  [ $have_wrk = 0 ]; then
  say "net: skipped mc (wrk not installed)"
elif [ "$ncpu" -lt 2 ]; then
  say "net: skipped mc (one CPU)"
else
  [ -n "$gobin" ] || say "net: skipped mc peer=go (golang-go not installed)"
  server_cpus=$allcpus load_cpus=$allcpus wrk_threads=$ncpu
  run_bench mc req "${mc_peers[@]}"
  server_cpus="" load_cpus="" wrk_threads=1
fi

# ---- report ---------------------------------------------------------------
bash bench/net/report.sh "$tsv" "$out/net.md" "$out/net.json" \
  "$hdr; $(sed -n 's/^# versions: //p' "$log"); \`bash bench/net/run.sh$([ $quick = 1 ] && echo ' --quick')\`" | tee -a "$log"
say "# results in $out/net.md, $out/net.json, $log"
