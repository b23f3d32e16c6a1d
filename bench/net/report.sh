#!/usr/bin/env bash
# Tables of the network benchmarks from the rows bench/net/run.sh recorded
# (BENCH PEER METRIC VALUE ROUND). For each server the best round is the one
# with the highest throughput (idle: the lowest bytes per connection), and
# every figure of its row comes from that round, with the range of the
# throughput over all rounds; system calls come from the separate perf
# pass. Ratios are to raw libuv and to Go; then whether libcoro met its
# targets. Writes Markdown and JSON, and prints the Markdown.
# Usage: report.sh NET.TSV OUT.md OUT.json "HEADER"
set -euo pipefail
tsv=$1 md=$2 json=$3 header=${4:-}
awk -F'\t' -v md="$md" -v json="$json" -v header="$header" '
function main_metric(b) { return b == "http" ? "rps" : b == "echo" ? "msgs" : b == "churn" ? "conns" : b == "idle" ? "bytes" : "" }
{
  if ($4 == "") next
  b = $1; p = $2; m = $3; v = $4 + 0; r = ($5 == "" ? 1 : $5)
  val[b, p, m, r] = v
  any[b, p, m] = v
  if (!((b, p) in seen)) { seen[b, p] = 1; order[b] = order[b] " " p }
  if (m == main_metric(b)) {
    k = b SUBSEP p
    if (!(k in lo) || v < lo[k]) lo[k] = v
    if (!(k in hi) || v > hi[k]) hi[k] = v
    nr[k]++
    if (!(k in bestr) || (b == "idle" ? v < bestv[k] : v > bestv[k])) { bestr[k] = r; bestv[k] = v }
  }
}
# The figure of the best round, or the only one recorded.
function get(b, p, m,   k) {
  k = b SUBSEP p
  if ((k in bestr) && ((b, p, m, bestr[k]) in val)) return val[b, p, m, bestr[k]]
  return ((b, p, m) in any) ? any[b, p, m] : ""
}
function ratio(b, p, m, ref,   x, y) {
  x = get(b, p, m); y = get(b, ref, m)
  if (x == "" || y == "" || y == 0) return ""
  return sprintf("%.2f×", x / y)
}
function cell(v, fmt) { return v == "" ? "" : sprintf(fmt, v) }
function spread(b, p, fmt,   k) {
  k = b SUBSEP p
  if (!(k in bestr)) return ""
  if (nr[k] < 2) return sprintf(fmt, bestv[k])
  return sprintf(fmt " (" fmt "–" fmt ")", bestv[k], lo[k], hi[k])
}
function table(b, title, unit, cunit, sunit,   n, peers, i, p, line, m) {
  if (!(b in order)) return
  m = main_metric(b)
  print "### " title "\n" > md
  if (b == "idle") {
    print "| server | bytes / conn | vs libuv | vs Go | RSS before | RSS after |" > md
    print "| --- | --- | --- | --- | --- | --- |" > md
  } else {
    print "| server | " unit " | vs libuv | vs Go | " cunit " | vs libuv | vs Go | server CPU busy | syscalls / " sunit " |" > md
    print "| --- | --- | --- | --- | --- | --- | --- | --- | --- |" > md
  }
  n = split(order[b], peers, " ")
  for (i = 1; i <= n; i++) {
    p = peers[i]
    line = "| " (p == "libcoro" ? "**libcoro**" : p) " | " spread(b, p, "%.0f") " | " ratio(b, p, m, "libuv") " | " ratio(b, p, m, "go") " |"
    if (b == "idle")
      line = line " " cell(get(b, p, "rss_before") / 1048576, "%.1f MiB") " | " cell(get(b, p, "rss_after") / 1048576, "%.1f MiB") " |"
    else
      line = line " " cell(get(b, p, "cpu_us"), "%.2f") " | " ratio(b, p, "cpu_us", "libuv") " | " ratio(b, p, "cpu_us", "go") " | " \
             cell(get(b, p, "busy"), "%.0f%%") " | " get(b, p, "syscalls_per_" sunit) " |"
    print line > md
  }
  print "" > md
}
# target(TEXT, BENCH, METRIC, PEER, OP, FACTOR): libcoro METRIC OP FACTOR x PEER
function target(text, b, m, ref, op, f,   x, y, ok, verdict) {
  x = get(b, "libcoro", m); y = get(b, ref, m)
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
  print "Loopback; server and load generator pinned to different CPUs. Each row is a server\047s best round " \
        "(highest throughput; in brackets the range over the rounds), every figure of the row from that round; " \
        "server CPU is user + kernel time of the whole process per operation; system calls come from a separate " \
        "2 s pass under perf stat. Run: " header "\n" > md
  if (("probe", "machine", "syscall_ns") in any)
    printf "Kernel costs on this machine: a system call (getppid) %.0f ns, a first touch of an anonymous page %.0f ns.\n\n", \
      any["probe", "machine", "syscall_ns"], any["probe", "machine", "fault_ns"] > md
  table("http", "HTTP keep-alive hello world (wrk -t1 -c100)", "req/s", "server CPU µs / req", "req")
  table("echo", "Echo, 1 KiB messages over 100 connections (echo_load)", "msgs/s", "server CPU µs / msg", "msg")
  table("churn", "Connection churn: connect, one request, close (churn, 50 connectors)", "conns/s", "server CPU µs / conn", "conn")
  table("idle", "Memory per idle connection (idle_conns; VmRSS of the server)", "", "", "")
  print "Targets:\n" > md
  target("http: libcoro server CPU per request <= 1.1x raw libuv", "http", "cpu_us", "libuv", "<=", 1.1)
  target("http: libcoro req/s >= Go", "http", "rps", "go", ">=", 1)
  target("http: libcoro req/s >= uvloop", "http", "rps", "uvloop", ">=", 1)
  target("echo: libcoro msgs/s >= Go", "echo", "msgs", "go", ">=", 1)
  target("echo: libcoro msgs/s >= uvloop", "echo", "msgs", "uvloop", ">=", 1)
  target("churn: libcoro conns/s >= Go", "churn", "conns", "go", ">=", 1)
  target("idle: libcoro bytes per connection <= Go", "idle", "bytes", "go", "<=", 1)
  # JSON: every figure of every round, the best rounds, the targets.
  printf "{\n  \"header\": \"%s\",\n  \"figures\": [\n", header > json
  nk = 0
  for (k in val) keys[++nk] = k
  for (i = 1; i <= nk; i++) {
    split(keys[i], f, SUBSEP)
    printf "    {\"bench\": \"%s\", \"peer\": \"%s\", \"metric\": \"%s\", \"value\": %s, \"round\": %s, \"best_round\": %s}%s\n", \
      f[1], f[2], f[3], val[keys[i]], f[4], ((f[1] SUBSEP f[2]) in bestr && bestr[f[1], f[2]] == f[4]) ? "true" : "false", \
      i < nk ? "," : "" > json
  }
  printf "  ],\n  \"targets\": [\n" > json
  for (i = 1; i <= ntargets; i++) printf "    %s%s\n", targets[i], i < ntargets ? "," : "" > json
  printf "  ]\n}\n" > json
}' "$tsv"
cat "$md"
