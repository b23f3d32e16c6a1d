/* SPDX-License-Identifier: MIT */
/* gather and group: N trivial tasks collected by coro_gather, and N tasks
 * in a task group, ns per task (spawn, run, collect, release), best of 3.
 *
 * Usage: bench_gather [N]   (default 100,000)
 *   gather: 61.2 ns/task n=100000 mode=gather method=asm,x86_64 */
#define _POSIX_C_SOURCE 200809L
#include <coro.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static long n_tasks = 100000;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *trivial(void *arg) { return arg; }

static void report(const char *mode, double secs) {
  printf("gather: %.1f ns/task n=%ld mode=%s method=%s\n",
         secs * 1e9 / (double)n_tasks, n_tasks, mode, coro_ctx_method());
}

static void *bench_main(void *arg) {
  (void)arg;
  coro_future **fs = malloc(sizeof(*fs) * (size_t)n_tasks);
  void **res = malloc(sizeof(*res) * (size_t)n_tasks);
  if (fs == NULL || res == NULL) return coro_fail(-ENOMEM);
  double best = 1e30;
  for (int rep = 0; rep < 4; rep++) { /* the first round warms the pools */
    double t0 = now_s();
    for (long i = 0; i < n_tasks; i++)
      if (coro_spawn(&fs[i], trivial, (void *)i) != 0) return coro_fail(-ENOMEM);
    int r = coro_gather(fs, (size_t)n_tasks, res, NULL);
    if (r != 0) return coro_fail(r);
    for (long i = 0; i < n_tasks; i++) coro_future_release(fs[i]);
    double t = now_s() - t0;
    if (rep > 0 && t < best) best = t;
  }
  report("gather", best);

  best = 1e30;
  for (int rep = 0; rep < 4; rep++) {
    double t0 = now_s();
    coro_group *g;
    if (coro_group_new(&g) != 0) return coro_fail(-ENOMEM);
    for (long i = 0; i < n_tasks; i++)
      if (coro_group_spawn(g, NULL, trivial, (void *)i) != 0) return coro_fail(-ENOMEM);
    int r = coro_group_wait(g, 0);
    coro_group_free(g);
    if (r != 0) return coro_fail(r);
    double t = now_s() - t0;
    if (rep > 0 && t < best) best = t;
  }
  report("group", best);
  free(fs);
  free(res);
  return NULL;
}

int main(int argc, char **argv) {
  if (argc > 1) n_tasks = atol(argv[1]);
  if (n_tasks < 1) n_tasks = 1;
  int r = coro_run(bench_main, NULL, NULL);
  if (r != 0) {
    fprintf(stderr, "bench_gather: %s\n", coro_strerror(r));
    return 1;
  }
  return 0;
}
