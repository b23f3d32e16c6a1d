/* SPDX-License-Identifier: MIT */
/* gcd: Effective Python's CPU-bound example on a thread pool and a process
 * pool, against sync and coroutines alone.
 *
 * The greatest common divisor of 100 random pairs in [100000, 900000],
 * found the slow way: trial division counting down from min(a, b). The
 * pairs come from a fixed seed (the 64-bit LCG that the comparison's
 * Python program uses too), so every run does the same work.
 *
 *   sync                       one pair after the other
 *   coroutines                 a task per pair + coro_gather: one thread,
 *                              so the same time as sync
 *   coroutines + thread pool   coro_run_in_thread per pair: C threads run
 *                              on every CPU (Python's GIL prevents that:
 *                              2.1 s on threads vs 0.85 s on processes in
 *                              the book, on 4 workers)
 *   coroutines + process pool  coro_run_in_process per pair, the pair and
 *                              its gcd sent as bytes
 * Pools have one worker per CPU.
 *
 * Expected output on 2 CPUs (times vary):
 *
 *   100 pairs, sum of their gcds 1446, 3 times, on 2 CPUs
 *     sync                       0.370s  1.0x
 *     coroutines                 0.372s  1.0x
 *     coroutines + thread pool   0.195s  1.9x
 *     coroutines + process pool  0.205s  1.8x
 *
 * Usage: gcd [scale]   (how many times the 100 pairs are done; default 3) */
#define _GNU_SOURCE
#include <coro.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct {
  uint64_t a, b;
} pair;

static pair *pairs;
static uint64_t *gcds;
static size_t npairs;
static unsigned ncpu;

static uint64_t gcd_slow(uint64_t a, uint64_t b) {
  uint64_t low = a < b ? a : b;
  for (uint64_t i = low; i > 0; i--)
    if (a % i == 0 && b % i == 0) return i;
  return 1;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A task, or a thread-pool job: the pair's index in arg. */
static void *gcd_job(void *arg) {
  size_t i = (size_t)(uintptr_t)arg;
  gcds[i] = gcd_slow(pairs[i].a, pairs[i].b);
  return NULL;
}

/* A process-pool job: a pair in, its gcd out (malloc'd, freed by libcoro). */
static int gcd_proc(const void *in, size_t in_len, void **out, size_t *out_len) {
  if (in_len != sizeof(pair)) return -EINVAL;
  pair p;
  memcpy(&p, in, sizeof(p));
  uint64_t *g = malloc(sizeof(*g));
  if (g == NULL) return -ENOMEM;
  *g = gcd_slow(p.a, p.b);
  *out = g;
  *out_len = sizeof(*g);
  return 0;
}

enum { ALONE, THREAD_POOL, PROCESS_POOL };

static void *main_task(void *arg) {
  int how = (int)(intptr_t)arg;
  coro_pool *pool = NULL;
  int r = 0;
  if (how == THREAD_POOL) r = coro_thread_pool_new(&pool, ncpu);
  if (how == PROCESS_POOL) r = coro_process_pool_new(&pool, ncpu);
  if (r != 0) return coro_fail(r);
  coro_future **fs = calloc(npairs, sizeof(*fs));
  size_t made = 0;
  if (fs == NULL) r = -ENOMEM;
  for (; r == 0 && made < npairs; made++) {
    void *idx = (void *)(uintptr_t)made;
    if (how == ALONE) r = coro_spawn(&fs[made], gcd_job, idx);
    if (how == THREAD_POOL) r = coro_run_in_thread(&fs[made], pool, gcd_job, idx);
    if (how == PROCESS_POOL)
      r = coro_run_in_process(&fs[made], pool, gcd_proc, &pairs[made], sizeof(pair));
    if (r != 0) break;
  }
  int g = coro_gather(fs, made, NULL, NULL);
  if (r == 0) r = g;
  for (size_t i = 0; i < made; i++) {
    const void *data;
    size_t len;
    if (r == 0 && how == PROCESS_POOL && coro_future_bytes(fs[i], &data, &len) == 0 &&
        len == sizeof(uint64_t))
      memcpy(&gcds[i], data, len);
    coro_future_release(fs[i]);
  }
  free(fs);
  if (pool != NULL) {
    coro_pool_shutdown(pool, 1);
    coro_pool_free(pool);
  }
  return r == 0 ? NULL : coro_fail(r);
}

int main(int argc, char **argv) {
  int scale = argc > 1 ? atoi(argv[1]) : 3;
  if (scale < 1) {
    fprintf(stderr, "usage: %s [scale >= 1]\n", argv[0]);
    return 2;
  }
  long nc = sysconf(_SC_NPROCESSORS_ONLN);
  ncpu = nc > 0 ? (unsigned)nc : 1;
  npairs = 100 * (size_t)scale;
  pairs = calloc(npairs, sizeof(*pairs));
  gcds = calloc(npairs, sizeof(*gcds));
  if (pairs == NULL || gcds == NULL) return 1;
  uint64_t state = 42; /* the seed; Knuth's MMIX LCG */
  for (size_t i = 0; i < 100; i++) {
    state = state * 6364136223846793005u + 1442695040888963407u;
    pairs[i].a = 100000 + (state >> 33) % 800001;
    state = state * 6364136223846793005u + 1442695040888963407u;
    pairs[i].b = 100000 + (state >> 33) % 800001;
  }
  for (size_t i = 100; i < npairs; i++) pairs[i] = pairs[i % 100];

  double sync_s = 0;
  uint64_t want = 0;
  static const char *const names[] = {"sync", "coroutines", "coroutines + thread pool",
                                      "coroutines + process pool"};
  for (int w = 0; w < 4; w++) {
    memset(gcds, 0, npairs * sizeof(*gcds));
    double t0 = now_s();
    int r = 0;
    if (w == 0)
      for (size_t i = 0; i < npairs; i++) gcd_job((void *)(uintptr_t)i);
    else
      r = coro_run(main_task, (void *)(intptr_t)(w - 1), NULL);
    double s = now_s() - t0;
    uint64_t sum = 0;
    for (size_t i = 0; i < npairs; i++) sum += gcds[i];
    if (w == 0) {
      sync_s = s, want = sum;
      printf("100 pairs, sum of their gcds %llu, %d times, on %u CPUs\n",
             (unsigned long long)(sum / (uint64_t)scale), scale, ncpu);
    }
    if (r != 0)
      printf("  %-26s not available (%s)\n", names[w], coro_err_name(r));
    else
      printf("  %-26s %.3fs  %.1fx%s\n", names[w], s, sync_s / s,
             sum == want ? "" : "  WRONG RESULT");
  }
  free(pairs);
  free(gcds);
  return 0;
}
