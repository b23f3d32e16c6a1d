/* SPDX-License-Identifier: MIT */
/* sleepers: N tasks sleeping concurrently for 1 s, each on its own guarded
 * stack. Prints the wall time (ideal: 1 s plus spawning) and the peak
 * resident memory per task (stack pages touched, task structs, timers;
 * page tables are shown apart).
 *
 * Usage: bench_sleepers [N] [ms] [compact]   (default 100000 tasks, 1000 ms)
 * compact spawns them with CORO_TASK_COMPACT: they share stacks, and each
 * sleeping one keeps only a copy of the used part of its stack.
 *   sleepers: n=100000 sleep_ms=1000 wall_s=1.31 rss_per_task_kib=4.6 ...
 * alive= is how many were asleep when the memory was read (all of them:
 * they all start before the first one's sleep ends). */
#define _POSIX_C_SOURCE 200809L
#include <coro.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static long n_tasks = 100000;
static long sleep_ms = 1000;
static long woke;
static int compact;
static coro_task_opts opts;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A field of /proc/self/status in KiB ("VmRSS:", "VmHWM:", "VmPTE:"). */
static long status_kib(const char *key) {
  FILE *f = fopen("/proc/self/status", "r");
  if (f == NULL) return -1;
  char line[256];
  long v = -1;
  size_t k = strlen(key);
  while (fgets(line, sizeof(line), f) != NULL)
    if (strncmp(line, key, k) == 0) {
      v = atol(line + k);
      break;
    }
  fclose(f);
  return v;
}

static long map_count(void) {
  FILE *f = fopen("/proc/self/maps", "r");
  if (f == NULL) return -1;
  long n = 0;
  int c;
  while ((c = fgetc(f)) != EOF)
    if (c == '\n') n++;
  fclose(f);
  return n;
}

static long rss_peak_during, pte_peak_during, maps_during, alive_during,
    compacted_during;

static void *sleeper(void *arg) {
  (void)arg;
  if (coro_sleep(sleep_ms) == 0) woke++;
  return NULL;
}

static void *bench_main(void *arg) {
  (void)arg;
  double t0 = now_s();
  for (long i = 0; i < n_tasks; i++) {
    int r = coro_spawn_opts(NULL, sleeper, NULL, &opts);
    if (r != 0) return coro_fail(r);
  }
  double t_spawned = now_s();
  /* Let them all start (they spawn lazily), then measure while they sleep. */
  coro_sleep(sleep_ms / 2);
  rss_peak_during = status_kib("VmRSS:");
  pte_peak_during = status_kib("VmPTE:");
  maps_during = map_count();
  coro_stats st;
  coro_loop_stats(NULL, &st);
  alive_during = (long)st.tasks - 1;
  compacted_during = (long)st.compacted;
  while (woke < n_tasks) coro_sleep(10);
  double wall = now_s() - t0;
  printf("sleepers: n=%ld sleep_ms=%ld wall_s=%.2f spawn_s=%.2f\n", n_tasks,
         sleep_ms, wall, t_spawned - t0);
  return NULL;
}

int main(int argc, char **argv) {
  if (argc > 1) n_tasks = atol(argv[1]);
  if (argc > 2) sleep_ms = atol(argv[2]);
  if (argc > 3 && strcmp(argv[3], "compact") == 0) compact = 1;
  if (n_tasks < 1) n_tasks = 1;
  opts.flags = compact ? CORO_TASK_COMPACT : 0;
  long rss0 = status_kib("VmRSS:"), pte0 = status_kib("VmPTE:");
  long maps0 = map_count();
  int r = coro_run(bench_main, NULL, NULL);
  if (r != 0) {
    fprintf(stderr, "bench_sleepers: %s\n", coro_strerror(r));
    return 1;
  }
  printf("sleepers: n=%ld rss_per_task_kib=%.2f pte_per_task_kib=%.2f "
         "maps_added=%ld alive=%ld compacted=%ld mode=%s method=%s\n",
         n_tasks, (double)(rss_peak_during - rss0) / (double)n_tasks,
         (double)(pte_peak_during - pte0) / (double)n_tasks,
         maps_during - maps0, alive_during, compacted_during,
         compact ? "compact" : "own-stack", coro_ctx_method());
  return 0;
}
