/* SPDX-License-Identifier: MIT */
/* Thread pools: what thread_pool.c (the pool: creation, submission and its
 * outbox, a job's loop side, shutdown, free, the loop's end) and
 * thread_worker.c (the worker threads) share. How the two sides of a job
 * meet is told at the top of thread_pool.c. */
#ifndef CORO_SRC_EXEC_THREAD_POOL_H_
#define CORO_SRC_EXEC_THREAD_POOL_H_

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "exec/pool.h"

enum { J_QUEUED, J_RUNNING, J_POSTED };

typedef struct tp_pool tp_pool;

typedef struct tp_job {
  /* What the worker touches, first (two cache lines). */
  coro__queue qnode;        /* pool->queue or pool->running (under mu) */
  coro_fn fn;
  void *arg;
  tp_pool *pool;
  int state;                /* J_* (under pool->mu) */
  atomic_int cancel;        /* coro_job_cancelled() */
  coro__job base;           /* msg, ib, outcome, name, id, discard; ib gets
                               a reference when the job is detached (an
                               attached job's loop is alive until its post
                               lands); fut: NULL once detached */
  int ib_ref;
  /* Loop side: only the submitting loop's thread touches these. */
  coro__queue lnode;        /* in the thread's jobs in flight while attached */
  uint64_t epoch;           /* outbox batch it was added with */
  coro_loop *loop;
  coro__timer timer;        /* timeout_ms */
} tp_job;

struct tp_pool {
  coro_pool base;           /* its mu guards the pool; its cv is
                               broadcast when the pool is idle */
  pthread_cond_t work_cv;   /* workers park here */
  coro__queue queue;        /* QUEUED jobs, FIFO */
  coro__queue running;      /* RUNNING jobs, oldest first */
  atomic_size_t nqueued;    /* length of queue, read by spinning workers */
  atomic_int shut;          /* no new jobs; workers exit when queue empty */
  size_t nrunning;
  unsigned max_threads;
  unsigned nstarted;        /* threads created (and not joined) */
  unsigned nidle;           /* threads not running a job */
  unsigned nparked;         /* threads in pthread_cond_wait */
  unsigned nwakes;          /* signals sent and not yet taken by a waker */
  atomic_uint nspinning;    /* threads spinning for work: they need no signal */
  atomic_int started_any;   /* a worker was started once */
  uint64_t next_id;         /* job ids, given as jobs start (under mu) */
  int joined;               /* threads were joined or detached */
  pthread_t *threads;
  /* Taken per job by the submitting loop: padded onto a cache line of its
   * own, away from what the workers write. */
  char refs_pad0[64];
  atomic_size_t refs;
  char refs_pad1[64];
  int64_t spin_ns;
};

static inline void tp_retain(tp_pool *p) {
  atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed);
}

/* Under p->base.mu: nothing queued, nothing running (what a waiting
 * shutdown waits for). */
static inline int tp_idle_locked(tp_pool *p) {
  return p->nrunning == 0 && coro__queue_empty(&p->queue);
}

/* Post j's message (state POSTED, set under the lock). 1 if it was
 * refused: j was detached and its loop has ended; the caller frees it. */
static inline int tp_job_post(tp_job *j) { return coro__job_post(&j->base); }

/* Job start times, for running_ms of stuck reports: the coarse clock costs
 * no syscall. */
static inline uint64_t tp_coarse_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- thread_pool.c --------------------------------------------------------- */

/* Drop a reference to p; the last one frees it. */
void coro__tp_release(tp_pool *p);
/* Any thread, once neither side needs j any more (on_loop: on j's loop
 * thread, where the struct may be kept for reuse); drops j's reference to
 * its pool. */
void coro__tp_job_free(tp_job *j, int on_loop);

/* ---- thread_worker.c ------------------------------------------------------- */

/* Under p->base.mu: start one more worker. 0 or a negative errno. */
int coro__tp_spawn_locked(tp_pool *p);
/* Under p->base.mu: a job is queued; wake a parked worker unless a spinning
 * one will take it or enough wake-ups are already on their way. */
void coro__tp_wake_one_locked(tp_pool *p);
/* 1 if the calling thread is a worker of p running a job. */
int coro__tp_on_own_worker(tp_pool *p);

#endif /* CORO_SRC_EXEC_THREAD_POOL_H_ */
