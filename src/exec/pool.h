/* SPDX-License-Identifier: MIT */
/* The skeleton both kinds of pool are built on (pool.c).
 *
 * - struct coro_pool is the first member of each pool struct: its kind, its
 *   operations, its lock, and what a waiting shutdown needs (a condition
 *   variable for plain threads, a list of waiting tasks). coro_pool_shutdown
 *   (the whole sequence: close, report, wait, finish) and coro_pool_free
 *   are written once, here, and call into the pool through its ops.
 * - coro__job is embedded in each job struct: its completion message, the
 *   submitting loop's inbox, its outcome, what a stuck-job report shows
 *   (name, id, start time) and the finaliser of a result nobody will read.
 * - the shutdown waiter and the stuck-job report. */
#ifndef CORO_SRC_EXEC_POOL_H_
#define CORO_SRC_EXEC_POOL_H_

#include <pthread.h>

#include "core/future.h"
#include "core/inbox.h"

enum { CORO__POOL_THREAD = 1, CORO__POOL_PROC = 2 };

typedef struct coro__job coro__job;

/* What a pool does its own way. Every function takes the pool's base. */
typedef struct coro__pool_ops {
  /* No lock held: stop taking jobs and cancel the queued ones (they never
   * run; their futures end with -ECANCELED). Repeating it is harmless. */
  void (*close)(coro_pool *p);
  /* Under mu: 1 while a job still runs (a shutdown that does not wait
   * reports those). */
  int (*busy_locked)(coro_pool *p);
  /* Under mu: 1 once a waiting shutdown has nothing left to wait for. */
  int (*done_locked)(coro_pool *p);
  /* Under mu: call visit(job, pid, arg) for each job still running, pid
   * being its worker process (0 for threads). */
  void (*each_running_locked)(coro_pool *p,
                              void (*visit)(const coro__job *j, int pid,
                                            void *arg),
                              void *arg);
  /* The clock coro__job.started_ns is read on (nanoseconds). */
  uint64_t (*now_ns)(void);
  /* Optional: 1 if the calling thread runs a job of p (a waiting shutdown
   * would wait for itself: -EDEADLK). */
  int (*on_own_worker)(coro_pool *p);
  /* Optional: the calling thread, not a task, is about to block in a
   * waiting shutdown (the process pool takes back the replies its loop
   * reads itself, or nobody would read them). */
  void (*before_block)(coro_pool *p);
  /* Optional: a shutdown found p done (no lock held; not on p's own
   * worker): join the worker threads. */
  void (*finish)(coro_pool *p);
  /* coro_pool_free's work (p not NULL). */
  void (*free)(coro_pool *p);
} coro__pool_ops;

struct coro_pool {
  int kind;                     /* CORO__POOL_* */
  const coro__pool_ops *ops;
  pthread_mutex_t mu;           /* the pool's lock: guards sd_waiters and
                                   the pool's own state */
  pthread_cond_t cv;            /* CLOCK_MONOTONIC; broadcast when the pool
                                   is done (and for the pool's own waits) */
  coro__queue sd_waiters;       /* tasks in a waiting shutdown (under mu) */
};

/* Initialise the base (adaptive: the lock spins a little before it sleeps,
 * for locks held a few instructions at a time). */
void coro__pool_init(coro_pool *p, int kind, const coro__pool_ops *ops,
                     int adaptive);
/* Destroy the base's lock and condition variable. */
void coro__pool_destroy(coro_pool *p);
/* Under mu: the pool is done (ops->done_locked says 1 from now on): wake
 * every shutdown waiting for it, blocked threads and suspended tasks. */
void coro__pool_wake_waiters_locked(coro_pool *p);
/* A plain thread: block until ops->done_locked (timeout_ms CORO_FOREVER:
 * no limit). 0 or -ETIMEDOUT. */
int coro__pool_wait_block(coro_pool *p, int64_t timeout_ms);
/* Under mu: stuck(info, data) for each job still running. */
void coro__pool_report_stuck_locked(coro_pool *p, coro_job_stuck_cb stuck,
                                    void *data);

/* ---- jobs ---------------------------------------------------------------- */

struct coro__job {
  coro__msg msg;            /* the completion, posted to ib */
  coro__inbox *ib;          /* the submitting loop's inbox (when a pool
                               holds a reference to it: see each pool) */
  void *result;             /* the outcome's value: fn's return (threads),
                               the result bytes (processes) */
  int status;
  uint64_t id;              /* 1, 2, ... per pool */
  uint64_t started_ns;      /* on the pool's clock (ops->now_ns) */
  char *name;               /* NULL: reported as "job-<id>"; who frees it
                               is the pool's business */
  /* Disposes of a result nobody will read (NULL: it is dropped). */
  void (*discard)(void *result, void *data);
  void *discard_data;
};

/* Any thread: give a result nobody will read to the job's finaliser (if
 * both are set) and forget it. */
void coro__job_discard(coro__job *j);
/* Any thread: post the job's completion message to its inbox. 1 if it was
 * refused (the loop has ended): the caller still owns the job. */
int coro__job_post(coro__job *j);

/* thread_pool.c: make sure the loop's thread-pool slot ends what this
 * thread's executors hold for loop (jobs in flight, the default pool,
 * keepalive holds) when the loop ends. Idempotent. */
void coro__thread_slot_use(coro_loop *loop);
/* threadsafe.c: forget the holds of coro_loop_keepalive (loop end). */
void coro__keepalive_reset(void);
/* The CLOCK_MONOTONIC time timeout_ms from now, for pthread_cond_timedwait
 * on a condition variable that uses that clock (timeout_ms > 0; any other
 * value gives now). */
struct timespec;
void coro__deadline_after(struct timespec *ts, int64_t timeout_ms);

/* The future kind of an executor job (future.h's kinds are 1..3): not a
 * promise (coro_future_resolve says -EPERM), cancelled at once by
 * coro_cancel like one. */
#define CORO__FUT_JOB 8

#endif /* CORO_SRC_EXEC_POOL_H_ */
