#!/usr/bin/env bash
# The comparison's report, from the cells' medians (compare.tsv): Markdown
# tables with the ideal and the ratios, the targets (PASS/MISS), JSON, and a
# chart drawn by gnuplot when it is installed. Called by run.sh; can be rerun
# on an existing TSV:
#   bench/compare/report.sh TSV OUTDIR CORES MACHINE COMMIT PYVER CC TOTAL_S QUICK UVLOOP
set -uo pipefail
tsv=$1 out=$2 cores=$3 machine=$4 commit=$5 pyver=$6 ccver=$7 total=$8 quick=$9 uvloop=${10}
md=$out/compare.md json=$out/compare.json
date_utc=$(date -u +%Y-%m-%dT%H:%MZ)

awk -F'\t' -v cores="$cores" -v machine="$machine" -v commit="$commit" \
    -v pyver="$pyver" -v ccver="$ccver" -v total="$total" -v quick="$quick" \
    -v date="$date_utc" -v md="$md" -v json="$json" -v dat="$out/compare-main.dat" \
    -v gdat="$out/compare-gran.dat" -v groups="$out/compare-groups.gp" -v ideals="$out/compare-ideals.gp" -v uvloop="$uvloop" '
function key(l, w, s, b, sc) { return l SUBSEP w SUBSEP s SUBSEP b SUBSEP sc }
function get(l, w, s, b, sc,   k) { k = key(l, w, s, b, sc); return (k in T) ? T[k] : "" }
function fmt(x) { return x == "" ? "–" : sprintf("%.3f", x) }
function rat(x, i) { return (x == "" || i == "" || i <= 0) ? "–" : sprintf("%.2f×", x / i) }
function ideal(l, w, sc,   s) {
  if (w == "sleep") return 0.9
  if (w == "blocking") return 0.1
  if (w == "io_bound") return 0.2  # each of 10 workers: 4 answers of 50 ms in a row
  s = get(l, w, l == "c" ? "sync" : "py-sync", 1, sc)
  return s == "" ? "" : s / cores
}
function target(name, value, limit, ok) {
  nt++; TN[nt] = name; TV[nt] = value; TL[nt] = limit; TR[nt] = ok ? "PASS" : "MISS"
}
{ k = key($1, $2, $3, $4, $5); if ($6 != "NA") T[k] = $6; R[k] = $7; C[k] = $8
  order[++nrows] = k }
END {
  nw = split("sleep blocking io_bound fib-rec fib-iter gcd", W, " ")
  wname["sleep"] = "sleeps of 0.8 s and 0.9 s"
  wname["blocking"] = "ten sleeps of 0.1 s"
  wname["io_bound"] = "40 downloads (4 pages × 10), each answered after 50 ms"
  wname["fib-rec"] = "recursive fib(33) + fib(34)"
  wname["fib-iter"] = "iterative fib, n = 10000..10999 (mod 2^64)"
  wname["gcd"] = "trial-division gcd, 100 pairs"
  # rows: C strategy | Python label | name
  nr = split("sync|py-sync|sync;threads|py-threads|threads;processes|py-processes|processes;" \
    "coro|py-asyncio|coroutines (gather);coro-percall|py-asyncio|coroutines, each recursive call awaited;" \
    "coro-eager|-|eager tasks, each recursive call awaited;" \
    "coro-blocking|py-asyncio-blocking|coroutines calling a blocking sleep;-|py-uvloop|coroutines on uvloop;" \
    "coro-threads|py-asyncio-threads|coroutines + thread pool;coro-procs|py-asyncio-procs|coroutines + process pool", ROWS, ";")
  print "| workload | strategy | C (s) | C / ideal | Python (s) | Python / ideal |" > md
  print "|---|---|---:|---:|---:|---:|" > md
  # the rows of the chart (compare-main.dat: label, C and Python ratio, C and
  # Python seconds), a blank row between workloads; compare-groups.gp names
  # the group of each workload and separates it, compare-ideals.gp draws each
  # ideal in seconds
  nd = 0
  for (wi = 1; wi <= nw; wi++) {
    w = W[wi]; ic = ideal("c", w, 1); ip = ideal("py", w, 1)
    printf "| **%s** | *ideal* | *%s* | | *%s* | |\n", wname[w], fmt(ic), fmt(ip) > md
    if (wi > 1) { print "\"\" NaN NaN NaN NaN" > dat; nd++ }
    x0 = nd
    for (ri = 1; ri <= nr; ri++) {
      split(ROWS[ri], f, "|")
      cs = f[1]; ps = f[2]; nm = f[3]
      if ((cs == "coro-percall" || cs == "coro-eager") && w != "fib-rec") continue
      if (cs == "coro-blocking" && w != "blocking") continue
      if (cs == "coro-procs" && w == "io_bound") continue
      if (cs == "-" && w != "sleep" && w != "blocking" && w != "io_bound") continue
      if (cs == "coro" && w == "fib-rec") ps = "-"  # Python asyncio is the per-call row
      if (cs == "coro" && w == "io_bound") nm = "coroutines (libcoro streams; aiohttp)"
      if (cs == "-" && w == "io_bound") nm = "coroutines on uvloop (aiohttp)"
      tc = cs == "-" ? "" : get("c", w, cs, 1, 1)
      tp = ps == "-" ? "" : get(ps == "py-uvloop" ? "pyuv" : "py", w, ps, 1, 1)
      if (tc == "" && tp == "" && cs == "-") continue
      printf "| %s | %s | %s | %s | %s | %s |\n", w, nm, fmt(tc), rat(tc, ic), fmt(tp), rat(tp, ip) > md
      short = nm
      sub(/^coroutines \(gather\)$/, "coroutines", short)
      sub(/^coroutines \(libcoro streams; aiohttp\)$/, "coroutines", short)
      sub(/^coroutines, each recursive call awaited$/, "coroutine per call", short)
      sub(/^eager tasks, each recursive call awaited$/, "eager task per call", short)
      sub(/^coroutines calling a blocking sleep$/, "coroutines, blocking", short)
      sub(/^coroutines on uvloop.*/, "uvloop (Python)", short)
      sub(/^coroutines \+ /, "coro + ", short)
      printf "\"%s\" %s %s %s %s\n", short, (tc == "" ? "NaN" : tc / ic), (tp == "" ? "NaN" : tp / ip),
        (tc == "" ? "NaN" : tc), (tp == "" ? "NaN" : tp) > dat
      nd++
    }
    printf "set label \"%s\" at first %.1f, graph 0.96 center front\n", w, (x0 + nd - 1) / 2 > groups
    if (wi > 1) printf "set arrow from first %.1f, graph 0 to first %.1f, graph 1 nohead lc rgb \"#999999\" dt 2 back\n", x0 - 1, x0 - 1 > groups
    if (ic != "") printf "set arrow from first %.1f, first %.6f to first %.1f, first %.6f nohead lw 2 lc rgb \"#0b3d66\" front\n", x0 - 0.45, ic, nd - 0.55, ic > ideals
    if (ip != "") printf "set arrow from first %.1f, first %.6f to first %.1f, first %.6f nohead lw 2 dt 2 lc rgb \"#c05800\" front\n", x0 - 0.45, ip, nd - 0.55, ip > ideals
  }
  # ---- the parallel speedup, C work scaled up ----
  print "" > md
  print "Parallel speedup in C on " cores " CPUs (the same work repeated: fib-rec ×" \
    SFIB ", gcd ×" SGCD "; ideal = sync / " cores "):" > md
  print "" > md
  print "| workload | strategy | seconds | speedup over sync | / ideal | pool / raw |" > md
  print "|---|---|---:|---:|---:|---:|" > md
  split("fib-rec gcd", PW, " ")
  for (pi = 1; pi <= 2; pi++) {
    w = PW[pi]; sc = (w == "fib-rec") ? SFIB : SGCD
    sy = get("c", w, "sync", 1, sc); id = ideal("c", w, sc)
    split("sync threads processes coro coro-threads coro-procs", PS, " ")
    for (si = 1; si <= 6; si++) {
      s = PS[si]; t = get("c", w, s, 1, sc); raw = ""
      if (s == "coro-threads") raw = get("c", w, "threads", 1, sc)
      if (s == "coro-procs") raw = get("c", w, "processes", 1, sc)
      printf "| %s ×%d | %s | %s | %s | %s | %s |\n", w, sc, s, fmt(t),
        (t == "" || sy == "") ? "–" : sprintf("%.2f×", sy / t), rat(t, id),
        (raw == "" || t == "") ? "" : sprintf("%.2f", t / raw) > md
      if (t != "" && raw != "")
        target(w " ×" sc ": " s " within 10% of raw " (s == "coro-threads" ? "pthreads" : "fork()"),
               sprintf("%.3f s vs %.3f s (%.2f; %.2f× sync/cores)", t, raw, t / raw, t / id), "≤ 1.10", t <= 1.10 * raw)
      if (s == "coro" && t != "" && sy != "")
        target(w " ×" sc ": coroutines alone at sync", sprintf("%.3f s vs %.3f s", t, sy), "within 10%",
               t <= 1.10 * sy && t >= 0.90 * sy)
    }
  }
  # ---- granularity ----
  print "" > md
  print "Granularity: 8000 small jobs in batches (seconds; C sync " fmt(get("c", "granularity", "sync", 1, 1)) \
    " s, Python sync " fmt(get("py", "granularity", "py-sync", 8000, 1)) " s):" > md
  print "" > md
  print "| batch | jobs | C threads | C processes | C thread pool | C process pool | Python process pool |" > md
  print "|---:|---:|---:|---:|---:|---:|---:|" > md
  split("1 4 16 64 256 1024 8000", GB, " ")
  for (gi = 1; gi <= 7; gi++) {
    b = GB[gi]
    a1 = get("c", "granularity", "threads", b, 1); a2 = get("c", "granularity", "processes", b, 1)
    a3 = get("c", "granularity", "coro-threads", b, 1); a4 = get("c", "granularity", "coro-procs", b, 1)
    a5 = get("py", "granularity", "py-processes", b, 1)
    printf "| %d | %d | %s | %s | %s | %s | %s |\n", b, int((8000 + b - 1) / b), fmt(a1), fmt(a2), fmt(a3), fmt(a4), fmt(a5) > md
    printf "%d %s %s %s %s %s\n", b, (a1 == "" ? "NaN" : a1), (a2 == "" ? "NaN" : a2), (a3 == "" ? "NaN" : a3),
      (a4 == "" ? "NaN" : a4), (a5 == "" ? "NaN" : a5) > gdat
  }
  # ---- targets ----
  split("sleep blocking io_bound", IW, " ")
  for (ii = 1; ii <= 3; ii++) {
    w = IW[ii]; id = ideal("c", w, 1); sum = (w == "sleep") ? 1.7 : (w == "io_bound") ? 2.0 : 1.0
    t = get("c", w, "sync", 1, 1)
    if (t != "") target(w ": C sync at the sum (" sum " s)", sprintf("%.3f s", t), "±5%", t >= sum * 0.95 && t <= sum * 1.05)
    ns = split(w == "io_bound" ? "threads processes coro coro-threads" : "threads processes coro coro-threads coro-procs", IS, " ")
    for (si = 1; si <= ns; si++) {
      t = get("c", w, IS[si], 1, 1)
      if (t != "") target(w ": C " IS[si] " within 5% of the ideal (" id " s)", sprintf("%.3f s (%.3f×)", t, t / id), "≤ 1.05×", t <= id * 1.05)
      else target(w ": C " IS[si] " within 5% of the ideal", "not available", "≤ 1.05×", 0)
    }
  }
  t = get("c", "fib-rec", "coro-percall", 1, 1); sy = get("c", "fib-rec", "sync", 1, 1)
  pa = get("py", "fib-rec", "py-asyncio", 1, 1); ps = get("py", "fib-rec", "py-sync", 1, 1)
  if (t != "" && sy != "") {
    nt++; TN[nt] = "fib-rec: overhead of a coroutine per call (shown, explained in docs/comparison.md)"
    TV[nt] = sprintf("C %.2f s vs sync %.3f s (%.0f×)", t, sy, t / sy) \
      ((pa != "" && ps != "") ? sprintf("; asyncio %.2f s vs sync %.2f s (%.1f×)", pa, ps, pa / ps) : "")
    TL[nt] = "shown"; TR[nt] = "INFO"
  }
  te = get("c", "fib-rec", "coro-eager", 1, 1)
  if (te != "" && pa != "")
    target("fib-rec: an eager task per call, awaited, at most half the asyncio coroutine per call",
           sprintf("%.2f s vs asyncio %.2f s (%.2f×)", te, pa, te / pa), "≤ 0.5×", te <= 0.5 * pa)
  else if (te != "") {
    nt++; TN[nt] = "fib-rec: an eager task per call at most half the asyncio coroutine per call"
    TV[nt] = sprintf("%.2f s; asyncio not measured (--quick)", te); TL[nt] = "≤ 0.5×"; TR[nt] = "INFO"
  }
  target("the whole comparison under 5 minutes", total " s", "< 300 s", total < 300)
  # checks: every strategy computed the same answer
  bad = ""
  for (x = 1; x <= nrows; x++) {
    k = order[x]; split(k, p, SUBSEP); if (C[k] == "-") continue
    ck = p[2] SUBSEP p[5]
    if (p[2] == "granularity") ck = p[2]
    if (ck in REF) { if (REF[ck] != C[k]) bad = bad " " p[1] "/" p[2] "/" p[3] "/b" p[4] }
    else REF[ck] = C[k]
  }
  target("every cell computed the same result as the others", bad == "" ? "all agree" : "differs:" bad, "equal", bad == "")
  print "" > md
  print "Targets:" > md
  print "" > md
  print "| target | measured | limit | |" > md
  print "|---|---|---|---|" > md
  for (x = 1; x <= nt; x++) printf "| %s | %s | %s | **%s** |\n", TN[x], TV[x], TL[x], TR[x] > md
  print "" > md
  printf "Machine: %s; %s; Python %s%s; libcoro %s; %s; %s s in all%s.\n", machine, ccver, pyver,
    (uvloop == 1 ? " with uvloop" : ""), commit, date, total, (quick == 1 ? " (--quick: one run per cell)" : "") > md
  # ---- JSON ----
  printf "{\n  \"machine\": \"%s\",\n  \"cores\": %d,\n  \"compiler\": \"%s\",\n  \"python\": \"%s\",\n", machine, cores, ccver, pyver > json
  printf "  \"commit\": \"%s\",\n  \"date\": \"%s\",\n  \"total_seconds\": %d,\n  \"quick\": %d,\n  \"cells\": [\n", commit, date, total, quick > json
  for (x = 1; x <= nrows; x++) {
    k = order[x]; split(k, p, SUBSEP)
    id = ideal(p[1] == "c" ? "c" : "py", p[2], p[5])
    if (p[2] == "granularity") id = ""
    printf "    {\"lang\": \"%s\", \"workload\": \"%s\", \"strategy\": \"%s\", \"batch\": %d, \"scale\": %d, \"median_s\": %s, \"runs\": %d, \"check\": \"%s\", \"ideal_s\": %s, \"ratio\": %s}%s\n",
      (p[1] == "c" ? "C" : "Python"), p[2], p[3], p[4], p[5], ((k in T) ? T[k] : "null"), R[k], C[k],
      (id == "" ? "null" : sprintf("%.4f", id)), ((k in T) && id != "" ? sprintf("%.3f", T[k] / id) : "null"),
      (x < nrows ? "," : "") > json
  }
  printf "  ],\n  \"targets\": [\n" > json
  for (x = 1; x <= nt; x++) {
    gsub(/"/, "\\\"", TV[x])
    printf "    {\"target\": \"%s\", \"measured\": \"%s\", \"limit\": \"%s\", \"result\": \"%s\"}%s\n",
      TN[x], TV[x], TL[x], TR[x], (x < nt ? "," : "") > json
  }
  printf "  ]\n}\n" > json
}' SFIB="${SCALE_FIB:-30}" SGCD="${SCALE_GCD:-8}" "$tsv"

cat "$md"
echo "compare: wrote $md, $json"

# ---- the chart ------------------------------------------------------------------
if ! command -v gnuplot >/dev/null 2>&1; then
  echo "compare: no chart (gnuplot not installed; run without --quick to install gnuplot-nox)"
  exit 0
fi
term="pngcairo size 1200,1500 font ',9'"
img=$out/compare.png
if ! gnuplot -e 'set terminal pngcairo' >/dev/null 2>&1; then
  term="png size 1200,1500"
fi
gnuplot <<EOF 2>>"$out/compare-raw.txt" || { echo "compare: gnuplot failed"; exit 0; }
set terminal $term
set termoption noenhanced
set output "$img"
set multiplot
set datafile missing "NaN"
set lmargin 10
set rmargin 19
# ---- time / ideal, and seconds: the same rows, one under the other ----
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set logscale y
set grid ytics
set key left top vertical Left reverse  # in the right margin, placed per panel
load "$out/compare-groups.gp"
set size 1,0.33
set origin 0,0.64
set tmargin 4
set bmargin 1
set title "libcoro (C) vs Python, same workloads: time / ideal (1 = ideal; log scale; the cells are named below the next panel)\n$machine" noenhanced
set yrange [0.5:2000]
set key at screen 0.885, screen 0.93
set ylabel "time / ideal"
unset xtics
plot "$out/compare-main.dat" using 2 title "C (libcoro)" lc rgb "#1f77b4", \
     "" using 3 title "Python" lc rgb "#ff7f0e"
set size 1,0.42
set origin 0,0.22
set tmargin 4
set bmargin 9
set title "The same cells in seconds (log scale): how far apart C and Python are"
set yrange [0.001:50]
set key at screen 0.885, screen 0.60
set ylabel "seconds"
set xtics rotate by -50 scale 0 font ",8"
load "$out/compare-ideals.gp"
plot "$out/compare-main.dat" using 4:xtic(1) title "C (libcoro)" lc rgb "#1f77b4", \
     "" using 5 title "Python" lc rgb "#ff7f0e", \
     NaN with lines lw 2 lc rgb "#0b3d66" title "ideal, C", \
     NaN with lines lw 2 dt 2 lc rgb "#c05800" title "ideal, Python"
unset arrow
unset label
unset logscale y
# ---- granularity ----
set size 1,0.22
set origin 0,0
set rmargin 8
set tmargin 3
set bmargin 4
set title "Granularity: 8000 small jobs in batches of N (seconds, log-log)"
set style data linespoints
set logscale xy
set xtics norotate font ",9"
set yrange [0.004:20]
set xlabel "batch size"
set ylabel "seconds"
set key inside top center horizontal noreverse Right
plot "$out/compare-gran.dat" using 1:2 title "C raw threads" lw 1.5 lc rgb "#7b4fa6", \
     "" using 1:3 title "C raw fork()" lw 1.5 lc rgb "#2ca02c", \
     "" using 1:4 title "C thread pool" lw 1.5 lc rgb "#1f77b4", \
     "" using 1:5 title "C process pool" lw 1.5 lc rgb "#d62728", \
     "" using 1:6 title "Python process pool" lw 1.5 lc rgb "#ff7f0e"
unset multiplot
EOF
echo "compare: chart $img"
