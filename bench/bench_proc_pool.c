/* SPDX-License-Identifier: MIT */
/* Process pool round trips: a trivial job (1 byte in, the same byte out),
 * one at a time (submit, await, repeat) and N submitted at once (then
 * gathered), in µs per job. Workers: the number of CPUs, as the peer
 * (bench/peers/ppe_python.py, Python's ProcessPoolExecutor) uses.
 * Usage: bench_proc_pool [N_ONE [N_BATCH]]
 * Prints "proc_pool: X us/job n=N mode=one|batch workers=W peer=libcoro". */
#include <coro.h>
#include <uv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static long n_one = 5000, n_batch = 100000;
static unsigned workers;

static int trivial(const void *in, size_t n, void **out, size_t *out_len) {
  char *p = malloc(n > 0 ? n : 1);
  if (p == NULL) return -12;
  memcpy(p, in, n);
  *out = p;
  *out_len = n;
  return 0;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int one_at_a_time(coro_pool *p, long n, double *secs) {
  double t0 = now_s();
  for (long i = 0; i < n; i++) {
    coro_future *f;
    int r = coro_run_in_process(&f, p, trivial, "x", 1);
    if (r == 0) r = coro_await(f, NULL);
    if (r != 0) return r;
    coro_future_release(f);
  }
  *secs = now_s() - t0;
  return 0;
}

static int batch(coro_pool *p, long n, double *secs) {
  coro_future **fs = malloc((size_t)n * sizeof(*fs));
  if (fs == NULL) return -12;
  double t0 = now_s();
  int r = 0;
  long made = 0;
  for (; made < n; made++)
    if ((r = coro_run_in_process(&fs[made], p, trivial, "x", 1)) != 0) break;
  if (r == 0) r = coro_gather(fs, (size_t)made, NULL, NULL);
  *secs = now_s() - t0;
  for (long i = 0; i < made; i++) coro_future_release(fs[i]);
  free(fs);
  return r;
}

static void *bench_main(void *arg) {
  (void)arg;
  coro_pool *p;
  int r = coro_process_pool_new(&p, 0);
  if (r != 0) return coro_fail(r);
  double s;
  /* Warm up: every worker started and said hello. */
  if ((r = batch(p, 200, &s)) != 0) goto out;
  double best = 1e9;
  for (int round = 0; round < 3; round++) {
    if ((r = one_at_a_time(p, n_one, &s)) != 0) goto out;
    if (s < best) best = s;
  }
  printf("proc_pool: %.1f us/job n=%ld mode=one workers=%u peer=libcoro\n",
         best * 1e6 / (double)n_one, n_one, workers);
  fflush(stdout);
  if ((r = batch(p, n_batch, &s)) != 0) goto out;
  printf("proc_pool: %.2f us/job n=%ld mode=batch workers=%u peer=libcoro\n",
         s * 1e6 / (double)n_batch, n_batch, workers);
out:
  coro_pool_shutdown(p, 1);
  coro_pool_free(p);
  return r != 0 ? coro_fail(r) : NULL;
}

int main(int argc, char **argv) {
  if (argc > 1) n_one = atol(argv[1]);
  if (argc > 2) n_batch = atol(argv[2]);
  workers = uv_available_parallelism();
  int r = coro_run(bench_main, NULL, NULL);
  if (r != 0) {
    fprintf(stderr, "bench_proc_pool: %s\n", coro_strerror(r));
    return 1;
  }
  return 0;
}
