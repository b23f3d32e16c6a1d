/* SPDX-License-Identifier: MIT */
/* granularity: how big must a job be before a pool pays?
 *
 * 8000 small jobs (each a short loop, some microseconds in C) are
 * cut into batches of 1, 2, 4, ... jobs; each batch is one pool job
 * (coro_run_in_thread / coro_run_in_process), and the batches are collected
 * with coro_gather. With batches of 1, the pool's communication (a queue
 * hand-off and a wake-up per job; for processes also a round trip through
 * a pipe and a copy of the input and result) costs more than the work
 * itself. Bigger batches amortise it, until too few batches are left to
 * keep every worker busy. The program prints the time per batch size and
 * the smallest batch within 20% of each pool's best time.
 *
 * Expected output on 2 CPUs (times vary a lot with the machine; the shape
 * is what matters):
 *
 *   8000 jobs of 10000 steps; sync 0.110s; pools of 2 workers
 *    batch   jobs  thread pool  process pool
 *        1   8000      0.061s        0.420s
 *        2   4000      0.032s        0.215s
 *      ...
 *     1024      8      0.007s        0.009s
 *     8000      1      0.012s        0.014s
 *   within 20% of the best: thread pool from batch 64, process pool from 256
 *
 * Usage: granularity [scale]   (scale multiplies the steps of each job) */
#define _GNU_SOURCE
#include <coro.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define NJOBS 8000
static uint32_t steps = 10000;
static unsigned ncpu;

/* One small job: a walk of a 32-bit LCG. */
static uint64_t small_job(uint32_t i) {
  uint32_t x = i;
  uint64_t s = 0;
  for (uint32_t k = 0; k < steps; k++) {
    x = x * 1103515245u + 12345u;
    s += x >> 16;
  }
  return s;
}

/* A batch: jobs [start, start + count); its result is the sum. */
typedef struct {
  uint32_t start, count, steps;
  uint64_t sum; /* thread pool: written by the job */
} batch;

static void *batch_thread(void *arg) {
  batch *b = arg;
  uint64_t s = 0;
  for (uint32_t i = b->start; i < b->start + b->count; i++) s += small_job(i);
  b->sum = s;
  return NULL;
}

/* Process-pool job: the batch comes in as bytes, the sum goes out. */
static int batch_proc(const void *in, size_t in_len, void **out, size_t *out_len) {
  if (in_len != sizeof(batch)) return -EINVAL;
  batch b;
  memcpy(&b, in, sizeof(b));
  steps = b.steps; /* the worker may be a fresh process */
  uint64_t *s = malloc(sizeof(*s));
  if (s == NULL) return -ENOMEM;
  batch_thread(&b);
  *s = b.sum;
  *out = s;
  *out_len = sizeof(*s);
  return 0;
}

typedef struct {
  int processes;
  uint32_t size; /* jobs per batch */
  uint64_t total;
} run_args;

static void *run_main(void *arg) {
  run_args *ra = arg;
  coro_pool *pool;
  int r = ra->processes ? coro_process_pool_new(&pool, ncpu)
                        : coro_thread_pool_new(&pool, ncpu);
  if (r != 0) return coro_fail(r);
  size_t n = (NJOBS + ra->size - 1) / ra->size;
  batch *b = calloc(n, sizeof(*b));
  coro_future **fs = calloc(n, sizeof(*fs));
  size_t made = 0;
  if (b == NULL || fs == NULL) r = -ENOMEM;
  for (; r == 0 && made < n; made++) {
    b[made].start = (uint32_t)made * ra->size;
    b[made].count = b[made].start + ra->size <= NJOBS ? ra->size : NJOBS - b[made].start;
    b[made].steps = steps;
    r = ra->processes
            ? coro_run_in_process(&fs[made], pool, batch_proc, &b[made], sizeof(batch))
            : coro_run_in_thread(&fs[made], pool, batch_thread, &b[made]);
    if (r != 0) break;
  }
  int g = coro_gather(fs, made, NULL, NULL);
  if (r == 0) r = g;
  ra->total = 0;
  for (size_t i = 0; i < made; i++) {
    const void *data;
    size_t len;
    if (r == 0 && ra->processes && coro_future_bytes(fs[i], &data, &len) == 0 &&
        len == sizeof(uint64_t))
      memcpy(&b[i].sum, data, len);
    ra->total += b[i].sum;
    coro_future_release(fs[i]);
  }
  free(fs);
  free(b);
  coro_pool_shutdown(pool, 1);
  coro_pool_free(pool);
  return r == 0 ? NULL : coro_fail(r);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  int scale = argc > 1 ? atoi(argv[1]) : 1;
  if (scale < 1 || scale > 100000) {
    fprintf(stderr, "usage: %s [scale >= 1]\n", argv[0]);
    return 2;
  }
  steps *= (uint32_t)scale;
  long nc = sysconf(_SC_NPROCESSORS_ONLN);
  ncpu = nc > 0 ? (unsigned)nc : 1;

  double t0 = now_s();
  uint64_t want = 0;
  for (uint32_t i = 0; i < NJOBS; i++) want += small_job(i);
  printf("%d jobs of %u steps; sync %.3fs; pools of %u workers\n", NJOBS, steps,
         now_s() - t0, ncpu);
  printf("  batch   jobs  thread pool  process pool\n");

  enum { NSIZES = 15 };
  uint32_t sizes[NSIZES];
  double t[2][NSIZES];
  int ok[2] = {1, 1};
  int status = 0;
  for (int k = 0; k < NSIZES; k++) {
    sizes[k] = k < NSIZES - 1 ? 1u << k : NJOBS; /* 1, 2, ..., 8192 -> 8000 */
    if (sizes[k] > NJOBS) sizes[k] = NJOBS;
    printf("  %5u  %5u", sizes[k], (NJOBS + sizes[k] - 1) / sizes[k]);
    for (int p = 0; p < 2; p++) {
      if (!ok[p]) {
        printf("  %11s", "-");
        continue;
      }
      run_args ra = {p, sizes[k], 0};
      double s0 = now_s();
      int r = coro_run(run_main, &ra, NULL);
      t[p][k] = now_s() - s0;
      if (r != 0) {
        printf("  %11s", coro_err_name(r));
        ok[p] = 0;
      } else if (ra.total != want) {
        printf("  %11s", "WRONG");
        status = 1;
      } else {
        printf("  %10.3fs", t[p][k]);
      }
    }
    printf("\n");
    if (sizes[k] == NJOBS) break;
  }
  printf("within 20%% of the best:");
  for (int p = 0; p < 2; p++) {
    const char *name = p ? "process pool" : "thread pool";
    if (!ok[p]) {
      printf("%s %s not available", p ? "," : "", name);
      continue;
    }
    double best = 1e30;
    for (int k = 0; k < NSIZES && sizes[k] <= NJOBS; k++) {
      if (t[p][k] < best) best = t[p][k];
      if (sizes[k] == NJOBS) break;
    }
    uint32_t from = NJOBS;
    for (int k = 0; k < NSIZES; k++) {
      if (t[p][k] <= best * 1.2) {
        from = sizes[k];
        break;
      }
      if (sizes[k] == NJOBS) break;
    }
    printf("%s %s from batch %u", p ? "," : "", name, from);
  }
  printf("\n");
  return status;
}
