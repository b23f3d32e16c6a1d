/* SPDX-License-Identifier: MIT */
/* Lock and queue costs, best of 3 runs after a warm-up:
 *   lock_uncontended  acquire + release in one task, ns per pair
 *   lock_contended    8 tasks take turns (each yields holding the lock, so
 *                     every acquire waits and every release hands the lock
 *                     to the next waiter), ns per acquire + release
 *   queue_unbounded   one producer, one consumer, ns per item (put + get)
 *   queue_bounded64 / queue_bounded1   the same with maxsize 64 / 1
 *
 * Usage: bench_sync [N]   (default 1,000,000)
 *   sync: 9.1 ns/op n=1000000 mode=lock_uncontended method=asm,x86_64 */
#define _POSIX_C_SOURCE 200809L
#include <coro.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static long n_ops = 1000000;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void report(const char *mode, double secs, long n, const char *unit) {
  printf("sync: %.1f %s n=%ld mode=%s method=%s\n", secs * 1e9 / (double)n,
         unit, n, mode, coro_ctx_method());
  fflush(stdout);
}

#define CHECK_OK(expr)                                                        \
  do {                                                                        \
    int r_ = (expr);                                                          \
    if (r_ != 0) {                                                            \
      fprintf(stderr, "bench_sync: %s: %s\n", #expr, coro_strerror(r_));     \
      exit(1);                                                                \
    }                                                                         \
  } while (0)

/* ---- lock ------------------------------------------------------------------ */

enum { NTASKS = 8 };

typedef struct contend {
  coro_lock *l;
  long rounds;
} contend;

static void *contender(void *arg) {
  contend *c = arg;
  for (long i = 0; i < c->rounds; i++) {
    CHECK_OK(coro_lock_acquire(c->l));
    CHECK_OK(coro_yield());
    CHECK_OK(coro_lock_release(c->l));
  }
  return NULL;
}

static double lock_uncontended(void) {
  coro_lock *l;
  CHECK_OK(coro_lock_new(&l));
  double t0 = now_s();
  for (long i = 0; i < n_ops; i++) {
    CHECK_OK(coro_lock_acquire(l));
    CHECK_OK(coro_lock_release(l));
  }
  double t = now_s() - t0;
  CHECK_OK(coro_lock_free(l));
  return t;
}

static double lock_contended(long total) {
  contend c;
  CHECK_OK(coro_lock_new(&c.l));
  c.rounds = total / NTASKS;
  coro_future *fs[NTASKS];
  double t0 = now_s();
  for (int i = 0; i < NTASKS; i++) CHECK_OK(coro_spawn(&fs[i], contender, &c));
  CHECK_OK(coro_gather(fs, NTASKS, NULL, NULL));
  double t = now_s() - t0;
  for (int i = 0; i < NTASKS; i++) coro_future_release(fs[i]);
  CHECK_OK(coro_lock_free(c.l));
  return t;
}

/* ---- queue ----------------------------------------------------------------- */

typedef struct pipe_ {
  coro_queue *q;
  long n;
} pipe_;

static void *producer(void *arg) {
  pipe_ *p = arg;
  for (long i = 0; i < p->n; i++)
    CHECK_OK(coro_queue_put(p->q, (void *)(intptr_t)(i + 1)));
  return NULL;
}

static void *consumer(void *arg) {
  pipe_ *p = arg;
  long sum = 0;
  for (long i = 0; i < p->n; i++) {
    void *it;
    CHECK_OK(coro_queue_get(p->q, &it));
    sum += (long)(intptr_t)it;
  }
  if (sum != p->n * (p->n + 1) / 2) {
    fprintf(stderr, "bench_sync: items lost\n");
    exit(1);
  }
  return NULL;
}

static double queue_run(size_t maxsize, long n) {
  pipe_ p;
  CHECK_OK(coro_queue_new(&p.q, CORO_QUEUE_FIFO, maxsize, NULL));
  p.n = n;
  coro_future *fs[2];
  double t0 = now_s();
  CHECK_OK(coro_spawn(&fs[0], producer, &p));
  CHECK_OK(coro_spawn(&fs[1], consumer, &p));
  CHECK_OK(coro_gather(fs, 2, NULL, NULL));
  double t = now_s() - t0;
  coro_future_release(fs[0]);
  coro_future_release(fs[1]);
  CHECK_OK(coro_queue_free(p.q));
  return t;
}

/* ---- driver ---------------------------------------------------------------- */

#define BEST(var, expr)                                                       \
  do {                                                                        \
    var = 1e30;                                                               \
    for (int rep_ = 0; rep_ < 4; rep_++) { /* the first warms up */           \
      double t_ = (expr);                                                     \
      if (rep_ > 0 && t_ < var) var = t_;                                     \
    }                                                                         \
  } while (0)

static void *bench_main(void *arg) {
  (void)arg;
  double t;
  BEST(t, lock_uncontended());
  report("lock_uncontended", t, n_ops, "ns/op");
  long nc = n_ops / 4;
  BEST(t, lock_contended(nc));
  report("lock_contended", t, nc / NTASKS * NTASKS, "ns/op");
  BEST(t, queue_run(0, n_ops));
  report("queue_unbounded", t, n_ops, "ns/item");
  BEST(t, queue_run(64, n_ops));
  report("queue_bounded64", t, n_ops, "ns/item");
  BEST(t, queue_run(1, n_ops / 4));
  report("queue_bounded1", t, n_ops / 4, "ns/item");
  return NULL;
}

int main(int argc, char **argv) {
  if (argc > 1) n_ops = atol(argv[1]);
  if (n_ops < NTASKS * 4) n_ops = NTASKS * 4;
  int r = coro_run(bench_main, NULL, NULL);
  if (r != 0) {
    fprintf(stderr, "bench_sync: %s\n", coro_strerror(r));
    return 1;
  }
  return 0;
}
