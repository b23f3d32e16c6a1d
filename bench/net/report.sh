#!/usr/bin/env bash
# Tables of the network benchmarks from the rows bench/net/run.sh recorded
# (BENCH PEER METRIC VALUE, one per round): the best round of each figure
# (highest throughput, lowest CPU or memory), ratios to raw libuv and to Go,
# and whether libcoro met its targets. Writes Markdown and JSON, and prints
# the Markdown.
# Usage: report.sh NET.TSV OUT.md OUT.json "HEADER"
set -euo pipefail
tsv=$1 md=$2 json=$3 header=${4:-}
awk -F'\t' -v md="$md" -v json="$json" -v header="$header" '
function higher_better(m) { return m == "rps" || m == "msgs" || m == "conns" }
{
  k = $1 SUBSEP $2 SUBSEP $3
  if ($4 == "") next
  if (!(k in lo) || $4 + 0 < lo[k]) lo[k] = $4 + 0
  if (!(k in hi) || $4 + 0 > hi[k]) hi[k] = $4 + 0
  nr[k]++
  if (!(k in best)) best[k] = $4 + 0
  else if (higher_better($3) ? ($4 + 0 > best[k]) : ($4 + 0 < best[k])) best[k] = $4 + 0
  if (!(($1 SUBSEP $2) in seen)) { seen[$1 SUBSEP $2] = 1; order[$1] = order[$1] " " $2 }
}
function get(b, p, m) { return ((b SUBSEP p SUBSEP m) in best) ? best[b SUBSEP p SUBSEP m] : "" }
function ratio(b, p, m, ref,   x, y) {
  x = get(b, p, m); y = get(b, ref, m)
  if (x == "" || y == "" || y == 0) return "";
  return sprintf("%.2f", x / y)
}
function cell(v, fmt) { return v == "" ? "" : sprintf(fmt, v) }
# "best (min-max over N rounds)" when there were several rounds
function spread(b, p, m, fmt,   k) {
  k = b SUBSEP p SUBSEP m
  if (!(k in best)) return ""
  if (nr[k] < 2) return sprintf(fmt, best[k])
  return sprintf(fmt " (" fmt "–" fmt ")", best[k], lo[k], hi[k])
}
function rx(v) { return v == "" ? "" : v "×" }
function table(b, title, m, munit, mfmt, c, cunit,   n, peers, i, p, line) {
  if (!(b in order)) return
  print "### " title > md
  print "" > md
  line = "| server | " munit " | vs libuv | vs Go |"
  if (c != "") line = line " " cunit " | vs libuv | vs Go |"
  if (b != "idle") line = line " syscalls / " (b == "http" ? "req" : b == "echo" ? "msg" : "conn") " |"
  print line > md
  line = "| --- | --- | --- | --- |"
  if (c != "") line = line " --- | --- | --- |"
  if (b != "idle") line = line " --- |"
  print line > md
  n = split(order[b], peers, " ")
  for (i = 1; i <= n; i++) {
    p = peers[i]
    line = "| " (p == "libcoro" ? "**libcoro**" : p) " | " spread(b, p, m, mfmt) " | " rx(ratio(b, p, m, "libuv")) " | " rx(ratio(b, p, m, "go")) " |"
    if (c != "") line = line " " cell(get(b, p, c), "%.2f") " | " rx(ratio(b, p, c, "libuv")) " | " rx(ratio(b, p, c, "go")) " |"
    if (b == "http") line = line " " get(b, p, "syscalls_per_req") " |"
    if (b == "echo") line = line " " get(b, p, "syscalls_per_msg") " |"
    if (b == "churn") line = line " " get(b, p, "syscalls_per_conn") " |"
    print line > md
  }
  print "" > md
}
# target(TEXT, BENCH, METRIC, PEER, OP, FACTOR): libcoro METRIC OP FACTOR x PEER
function target(text, b, m, ref, op, f,   x, y, ok) {
  x = get(b, "libcoro", m); y = get(b, ref, m)
  if (x == "" || y == "") { verdict = "not measured"; ok = -1 }
  else {
    ok = (op == ">=") ? (x >= f * y) : (x <= f * y)
    verdict = sprintf("%s (%.2f× %s)", ok ? "met" : "**missed**", x / y, ref)
  }
  print "- " text ": " verdict > md
  targets[++ntargets] = sprintf("{\"target\": \"%s\", \"result\": %s}", text, ok < 0 ? "null" : (ok ? "true" : "false"))
}
END {
  print "## Network" > md
  print "" > md
  print "Loopback, server and load generator pinned to different CPUs; best of the rounds " \
        "(throughput: best, then the range over the rounds; CPU: the lowest). " \
        "Run: " header > md
  print "" > md
  if (("probe" SUBSEP "machine" SUBSEP "syscall_ns") in best)
    printf "Kernel costs on this machine: a system call (getppid) %.0f ns, a first touch of an anonymous page %.0f ns.\n\n", \
      get("probe", "machine", "syscall_ns"), get("probe", "machine", "fault_ns") > md
  table("http", "HTTP keep-alive hello world (wrk -t1 -c100)", "rps", "req/s", "%.0f", "cpu_us", "server CPU µs / req")
  table("echo", "Echo, 1 KiB messages over 100 connections (echo_load)", "msgs", "msgs/s", "%.0f", "cpu_us", "server CPU µs / msg")
  table("churn", "Connection churn: connect, one request, close (churn, 50 connectors)", "conns", "conns/s", "%.0f", "cpu_us", "server CPU µs / conn")
  table("idle", "Memory per idle connection (idle_conns)", "bytes", "bytes / conn", "%.0f", "", "")
  print "Targets:" > md
  print "" > md
  target("http: libcoro server CPU per request <= 1.1x raw libuv", "http", "cpu_us", "libuv", "<=", 1.1)
  target("http: libcoro req/s >= Go", "http", "rps", "go", ">=", 1)
  target("http: libcoro req/s >= uvloop", "http", "rps", "uvloop", ">=", 1)
  target("echo: libcoro msgs/s >= Go", "echo", "msgs", "go", ">=", 1)
  target("echo: libcoro msgs/s >= uvloop", "echo", "msgs", "uvloop", ">=", 1)
  target("churn: libcoro conns/s >= Go", "churn", "conns", "go", ">=", 1)
  target("idle: libcoro bytes per connection <= Go", "idle", "bytes", "go", "<=", 1)
  # JSON: every best figure, then the targets.
  printf "{\n  \"header\": \"%s\",\n  \"results\": [\n", header > json
  nk = 0
  for (k in best) keys[++nk] = k
  for (i = 1; i <= nk; i++) {
    split(keys[i], f, SUBSEP)
    printf "    {\"bench\": \"%s\", \"peer\": \"%s\", \"metric\": \"%s\", \"value\": %s}%s\n", \
      f[1], f[2], f[3], best[keys[i]], i < nk ? "," : "" > json
  }
  printf "  ],\n  \"targets\": [\n" > json
  for (i = 1; i <= ntargets; i++) printf "    %s%s\n", targets[i], i < ntargets ? "," : "" > json
  printf "  ]\n}\n" > json
}' "$tsv"
cat "$md"
