/* SPDX-License-Identifier: MIT */
/* spawn: the cost of a trivial task's whole life, in ns per task.
 *
 *   batch:   main spawns N tasks (handles kept), then awaits and releases
 *            each; the first steps all run in one loop iteration.
 *   one:     spawn, await, release, one task at a time.
 *   detached: N tasks spawned with out == NULL; main waits for a counter.
 *
 * Usage: bench_spawn [N]   (default 1,000,000). One line per figure:
 *   spawn: 123.4 ns/task n=1000000 mode=batch method=asm,x86_64 */
#define _POSIX_C_SOURCE 200809L
#include <coro.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static long n_tasks = 1000000;
static long counter;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *trivial(void *arg) {
  counter++;
  return arg;
}

static void report(const char *mode, double secs) {
  printf("spawn: %.1f ns/task n=%ld mode=%s method=%s\n",
         secs * 1e9 / (double)n_tasks, n_tasks, mode, coro_ctx_method());
}

static void *bench_main(void *arg) {
  (void)arg;
  coro_future **fs = malloc(sizeof(*fs) * (size_t)n_tasks);
  if (fs == NULL) return coro_fail(-ENOMEM);

  /* Warm the pools once so the figure is the steady state. */
  for (long i = 0; i < 1000 && i < n_tasks; i++) coro_spawn(&fs[i], trivial, NULL);
  for (long i = 0; i < 1000 && i < n_tasks; i++) {
    coro_await(fs[i], NULL);
    coro_future_release(fs[i]);
  }

  double best = 1e30;
  for (int rep = 0; rep < 3; rep++) {
    double t0 = now_s();
    for (long i = 0; i < n_tasks; i++) {
      int r = coro_spawn(&fs[i], trivial, NULL);
      if (r != 0) return coro_fail(r);
    }
    for (long i = 0; i < n_tasks; i++) {
      coro_await(fs[i], NULL);
      coro_future_release(fs[i]);
    }
    double t = now_s() - t0;
    if (t < best) best = t;
  }
  report("batch", best);

  best = 1e30;
  for (int rep = 0; rep < 3; rep++) {
    double t0 = now_s();
    for (long i = 0; i < n_tasks; i++) {
      coro_future *f;
      int r = coro_spawn(&f, trivial, NULL);
      if (r != 0) return coro_fail(r);
      coro_await(f, NULL);
      coro_future_release(f);
    }
    double t = now_s() - t0;
    if (t < best) best = t;
  }
  report("one", best);

  best = 1e30;
  for (int rep = 0; rep < 3; rep++) {
    counter = 0;
    double t0 = now_s();
    for (long i = 0; i < n_tasks; i++) {
      int r = coro_spawn(NULL, trivial, NULL);
      if (r != 0) return coro_fail(r);
    }
    while (counter < n_tasks) coro_yield();
    double t = now_s() - t0;
    if (t < best) best = t;
  }
  report("detached", best);
  free(fs);
  return NULL;
}

int main(int argc, char **argv) {
  if (argc > 1) n_tasks = atol(argv[1]);
  if (n_tasks < 1) n_tasks = 1;
  int r = coro_run(bench_main, NULL, NULL);
  if (r != 0) {
    fprintf(stderr, "bench_spawn: %s\n", coro_strerror(r));
    return 1;
  }
  return 0;
}
