#!/usr/bin/env bash
# Tables of the network benchmarks from the rows bench/net/run.sh recorded
# (BENCH PEER METRIC VALUE SLICE): per server the sums over its slices of
# operations, seconds and server CPU give the rate, the CPU per operation
# and the CPU busy share, with the slowest and fastest slice; system calls
# come from the separate perf pass. Ratios are to raw libuv and to Go; then
# whether libcoro met its targets. Writes Markdown and JSON, and prints the
# Markdown.
# Usage: report.sh NET.TSV OUT.md OUT.json "HEADER"
set -euo pipefail
tsv=$1 md=$2 json=$3 header=${4:-}
awk -F'\t' -v md="$md" -v json="$json" -v header="$header" '
{
  if ($4 == "") next
  b = $1; p = $2; m = $3; v = $4 + 0; sl = $5 + 0
  if (!((b, p) in seen)) { seen[b, p] = 1; has[b] = 1 }
  if (m == "ops" || m == "secs" || m == "cpu" || m == "ccpu") {
    sum[b, p, m] += v
    one[b, p, m, sl] = v
    if (m == "ops") { nsl[b, p]++; slices[b, p] = slices[b, p] " " sl }
  } else {
    fig[b, p, m] = v
  }
}
# The servers of BENCH in a fixed order.
function peers_of(b, out,   all, n, i, k) {
  n = split(b == "mc" ? "libcoro-1 libcoro-N go-1 go-N" : "libcoro libuv go node asyncio uvloop", all, " ")
  k = 0
  for (i = 1; i <= n; i++) if ((b, all[i]) in seen) out[++k] = all[i]
  return k
}
# Figures over all slices: rate (ops/s), cpu_us (per op), busy and
# client_busy (% of a CPU).
function get(b, p, m,   o, t, c) {
  if (m == "best" || m == "worst") return slice_rate(b, p, m)
  if (m == "rate" || m == "cpu_us" || m == "busy" || m == "client_busy") {
    o = sum[b, p, "ops"]; t = sum[b, p, "secs"]; c = sum[b, p, "cpu"]
    if (o == 0 || t == 0) return ""
    if (m == "client_busy") return ((b, p, "ccpu") in sum) ? sum[b, p, "ccpu"] * 100 / t : ""
    return m == "rate" ? o / t : m == "cpu_us" ? c * 1e6 / o : c * 100 / t
  }
  return ((b, p, m) in fig) ? fig[b, p, m] : ""
}
function ratio(b, p, m, ref,   x, y) {
  x = get(b, p, m); y = get(b, ref, m)
  if (x == "" || y == "" || y == 0) return ""
  return sprintf("%.2f×", x / y)
}
function cell(v, fmt) { return v == "" ? "" : sprintf(fmt, v) }
# The rate of the fastest slice ("best") or of the slowest ("worst").
function slice_rate(b, p, which,   n, s, i, r, x) {
  n = split(slices[b, p], s, " ")
  x = ""
  for (i = 1; i <= n; i++) {
    if (one[b, p, "secs", s[i]] == 0) continue
    r = one[b, p, "ops", s[i]] / one[b, p, "secs", s[i]]
    if (x == "" || (which == "best" ? r > x : r < x)) x = r
  }
  return x
}
# The all-CPU run: each server with one loop / thread and with N, and what
# the N gave over the 1 (and libcoro over Go with the same number).
function table_mc(b, title, ncpu,   n, peers, i, p, one_of, go_of) {
  if (!(b in has)) return
  print "### " title "\n" > md
  print "| server | req/s, all slices | vs the same with 1 | vs Go alike | req/s, fastest slice | server CPU µs / req | vs Go alike | server CPU busy | wrk CPU busy |" > md
  print "| --- | --- | --- | --- | --- | --- | --- | --- | --- |" > md
  n = peers_of(b, peers)
  for (i = 1; i <= n; i++) {
    p = peers[i]
    one_of = p; sub(/-N$/, "-1", one_of)
    go_of = p; sub(/^libcoro/, "go", go_of)
    print "| " (p ~ /^libcoro/ ? "**" p "**" : p) " | " cell(get(b, p, "rate"), "%.0f") " | " (one_of == p ? "" : ratio(b, p, "rate", one_of)) " | " \
          (go_of == p ? "" : ratio(b, p, "rate", go_of)) " | " cell(get(b, p, "best"), "%.0f") " | " cell(get(b, p, "cpu_us"), "%.2f") " | " \
          (go_of == p ? "" : ratio(b, p, "cpu_us", go_of)) " | " cell(get(b, p, "busy"), "%.0f%%") " | " cell(get(b, p, "client_busy"), "%.0f%%") " |" > md
  }
  print "\nlibcoro-1 / go-1: one loop, GOMAXPROCS=1; libcoro-N / go-N: `http_server --loops N` (N loops on one SO_REUSEPORT port), GOMAXPROCS=N. " \
        "Servers and wrk share every CPU, so a server that uses more CPU leaves less to the load generator.\n" > md
}
function table(b, title, unit, sunit,   n, peers, i, p, line, m) {
  if (!(b in has)) return
  print "### " title "\n" > md
  if (b == "idle") {
    print "| server | bytes / conn | vs libuv | vs Go | RSS before | RSS after |" > md
    print "| --- | --- | --- | --- | --- | --- |" > md
  } else {
    print "| server | " unit "/s, all slices | vs libuv | vs Go | " unit "/s, fastest slice | vs libuv | vs Go | slowest slice | server CPU µs / " sunit " | vs libuv | vs Go | server CPU busy | load generator CPU busy | syscalls / " sunit " |" > md
    print "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |" > md
  }
  n = peers_of(b, peers)
  for (i = 1; i <= n; i++) {
    p = peers[i]
    if (b == "idle")
      line = "| " (p == "libcoro" ? "**libcoro**" : p) " | " cell(get(b, p, "bytes"), "%.0f") " | " ratio(b, p, "bytes", "libuv") " | " ratio(b, p, "bytes", "go") " | " \
             cell(get(b, p, "rss_before") / 1048576, "%.1f MiB") " | " cell(get(b, p, "rss_after") / 1048576, "%.1f MiB") " |"
    else
      line = "| " (p == "libcoro" ? "**libcoro**" : p) " | " cell(get(b, p, "rate"), "%.0f") " | " ratio(b, p, "rate", "libuv") " | " ratio(b, p, "rate", "go") " | " \
             cell(get(b, p, "best"), "%.0f") " | " ratio(b, p, "best", "libuv") " | " ratio(b, p, "best", "go") " | " cell(get(b, p, "worst"), "%.0f") " | " \
             cell(get(b, p, "cpu_us"), "%.2f") " | " ratio(b, p, "cpu_us", "libuv") " | " ratio(b, p, "cpu_us", "go") " | " \
             cell(get(b, p, "busy"), "%.0f%%") " | " cell(get(b, p, "client_busy"), "%.0f%%") " | " cell(get(b, p, "syscalls"), "%.2f") " |"
    print line > md
  }
  print "" > md
}
# target(TEXT, BENCH, METRIC, PEER, OP, FACTOR): libcoro METRIC OP FACTOR x PEER
function target(text, b, m, ref, op, f) { target_of(text, b, m, "libcoro", ref, op, f) }
function target_of(text, b, m, who, ref, op, f,   x, y, ok, verdict) {
  x = get(b, who, m); y = get(b, ref, m)
  if (x == "" || y == "" || y == 0) { verdict = "not measured"; ok = -1 }
  else {
    ok = (op == ">=") ? (x >= f * y) : (x <= f * y)
    verdict = sprintf("%s (%.2f× %s)", ok ? "met" : "**missed**", x / y, ref)
  }
  print "- " text ": " verdict > md
  targets[++ntargets] = sprintf("{\"target\": \"%s\", \"met\": %s}", text, ok < 0 ? "null" : (ok ? "true" : "false"))
}
END {
  print "## Network\n" > md
  print "Loopback; servers on one CPU, the load generator on the other. The servers of a benchmark run " \
        "side by side and the load moves between them in slices, so each gets the same share of a busy machine; " \
        "figures are sums over the slices, next to the fastest slice (the machine at its quietest). Server CPU is user + kernel time of the whole process per operation; " \
        "system calls per operation come from a separate 2 s pass under perf stat. Run: " header "\n" > md
  if (("probe", "machine", "syscall_ns") in fig)
    printf "Kernel costs on this machine: a system call (getppid) %.0f ns, a first touch of an anonymous page %.0f ns.\n\n", \
      fig["probe", "machine", "syscall_ns"], fig["probe", "machine", "fault_ns"] > md
  table("http", "HTTP keep-alive hello world (wrk -t1 -c100)", "req", "req")
  table("echo", "Echo, 1 KiB messages over 100 connections (echo_load)", "msgs", "msg")
  table("churn", "Connection churn: connect, one request, close (churn, 50 connectors)", "conns", "conn")
  table("idle", "Memory per idle connection (idle_conns; VmRSS of the server)", "", "")
  table_mc("mc", "HTTP keep-alive on every CPU (wrk -tN -c100 on the same CPUs)")
  print "Targets:\n" > md
  target("http: libcoro server CPU per request <= 1.1x raw libuv", "http", "cpu_us", "libuv", "<=", 1.1)
  target("http: libcoro req/s >= Go (all slices)", "http", "rate", "go", ">=", 1)
  target("http: libcoro req/s >= Go (fastest slice)", "http", "best", "go", ">=", 1)
  target("http: libcoro req/s >= uvloop (all slices)", "http", "rate", "uvloop", ">=", 1)
  target("http: libcoro req/s >= uvloop (fastest slice)", "http", "best", "uvloop", ">=", 1)
  target("echo: libcoro msgs/s >= Go (all slices)", "echo", "rate", "go", ">=", 1)
  target("echo: libcoro msgs/s >= Go (fastest slice)", "echo", "best", "go", ">=", 1)
  target("echo: libcoro msgs/s >= uvloop (all slices)", "echo", "rate", "uvloop", ">=", 1)
  target("echo: libcoro msgs/s >= uvloop (fastest slice)", "echo", "best", "uvloop", ">=", 1)
  target("churn: libcoro conns/s >= Go (all slices)", "churn", "rate", "go", ">=", 1)
  target("churn: libcoro conns/s >= Go (fastest slice)", "churn", "best", "go", ">=", 1)
  target("idle: libcoro bytes per connection <= Go", "idle", "bytes", "go", "<=", 1)
  target_of("mc: libcoro 1 loop req/s >= Go GOMAXPROCS=1", "mc", "rate", "libcoro-1", "go-1", ">=", 1)
  target_of("mc: libcoro N loops req/s >= Go GOMAXPROCS=N", "mc", "rate", "libcoro-N", "go-N", ">=", 1)
  target_of("mc: libcoro N loops req/s >= 1.6x 1 loop (where wrk is not the limit)", "mc", "rate", "libcoro-N", "libcoro-1", ">=", 1.6)
  target_of("mc: libcoro N loops server CPU per request <= Go GOMAXPROCS=N", "mc", "cpu_us", "libcoro-N", "go-N", "<=", 1)
  # JSON: per server the totals and figures, then the targets.
  printf "{\n  \"header\": \"%s\",\n", header > json
  printf "  \"syscall_ns\": %s, \"fault_ns\": %s,\n  \"servers\": [\n", \
    get("probe", "machine", "syscall_ns") + 0, get("probe", "machine", "fault_ns") + 0 > json
  nb = split("http echo churn idle mc", benches, " ")
  first = 1
  for (i = 1; i <= nb; i++) {
    b = benches[i]
    if (!(b in has)) continue
    n = peers_of(b, peers)
    for (j = 1; j <= n; j++) {
      p = peers[j]
      printf "%s    {\"bench\": \"%s\", \"server\": \"%s\"", first ? "" : ",\n", b, p > json
      first = 0
      if (b == "idle")
        printf ", \"bytes_per_conn\": %s, \"rss_before\": %s, \"rss_after\": %s}", \
          get(b, p, "bytes") + 0, get(b, p, "rss_before") + 0, get(b, p, "rss_after") + 0 > json
      else
        printf ", \"ops\": %d, \"seconds\": %.3f, \"server_cpu_s\": %.3f, \"per_s\": %.1f, \"fastest_slice_per_s\": %.1f, \"slowest_slice_per_s\": %.1f, \"server_cpu_us_per_op\": %.3f, \"syscalls_per_op\": %s, \"slices\": %d}", \
          sum[b, p, "ops"], sum[b, p, "secs"], sum[b, p, "cpu"], get(b, p, "rate") + 0, get(b, p, "best") + 0, get(b, p, "worst") + 0, get(b, p, "cpu_us") + 0, \
          get(b, p, "syscalls") == "" ? "null" : get(b, p, "syscalls"), nsl[b, p] > json
    }
  }
  printf "\n  ],\n  \"targets\": [\n" > json
  for (i = 1; i <= ntargets; i++) printf "    %s%s\n", targets[i], i < ntargets ? "," : "" > json
  printf "  ]\n}\n" > json
}' "$tsv"
cat "$md"
