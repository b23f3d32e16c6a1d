/* SPDX-License-Identifier: MIT */
/* The skeleton both kinds of pool are built on (pool.c).
 *
 * - struct coro_pool is the first member of each pool struct: its kind, its
 *   operations, its lock, and what a waiting shutdown needs (a condition
 *   variable for plain threads, a list of waiting tasks). coro_pool_shutdown
 *   (the whole sequence: close, report, wait, finish) and coro_pool_free
 *   are written once, in pool.c, and call into the pool through its ops.
 * - coro__job is embedded in each job struct: its completion message, the
 *   submitting loop's inbox, its outcome, what a stuck-job report shows
 *   (name, id, start time) and the finaliser of a result nobody will read.
 * - coro__job_future is the future of a job of either pool: one future
 *   kind (core's CORO__FUT_OWNED) with one destructor, and one way of
 *   learning that it was completed without the job (coro_cancel, a time
 *   limit, the loop's end): its watch calls the job's detach, the one
 *   thing each pool does its own way.
 * - the shutdown waiter and the stuck-job report. */
#ifndef CORO_SRC_EXEC_POOL_H_
#define CORO_SRC_EXEC_POOL_H_

#include <pthread.h>

#include "core/future.h"
#include "core/inbox.h"

enum { CORO__POOL_THREAD = 1, CORO__POOL_PROC = 2 };

typedef struct coro__job coro__job;
typedef struct coro__job_future coro__job_future;

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
  size_t sd_users;              /* tasks and threads inside a waiting
                                   shutdown, from before they wait until
                                   they leave (under mu) */
  int dead;                     /* coro_pool_free came while sd_users > 0:
                                   the last of them frees the pool */
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
  /* Loop side (the submitting loop's thread only). */
  coro__job_future *fut;    /* NULL once the job let go of it */
  /* The future completed without the job's outcome (coro_cancel, the job's
   * time limit, the loop's end): take the job back from its pool (a queued
   * one never runs, a running one is stopped or told to stop) and give
   * back what the loop side holds. Called from jf's watch while jf->job is
   * set. */
  void (*detach)(coro__job *j, coro__job_future *jf);
};

/* The future of a pool job. Not a promise (coro_future_resolve says
 * -EPERM); coro_cancel completes it at once, and its watch then detaches
 * the job. Freed by one destructor (the struct and the result bytes). */
struct coro__job_future {
  coro__future_owned own;   /* kind CORO__FUT_OWNED */
  coro__waiter watch;       /* in own.fut's waiters while the job is in
                               flight */
  coro__job *job;           /* the job in flight; NULL once let go */
  int kind;                 /* CORO__POOL_* of the job's pool */
  void *data;               /* process jobs: the result bytes, owned */
  size_t len;
  coro__queue link;         /* the pool's own use (loop-end sweeps) */
};

/* Loop thread: a job future's memory, from this thread's cache of freed
 * thread-pool futures when it has one (coro__malloc otherwise; NULL on
 * ENOMEM). coro__job_future_cache_free empties the cache (the thread pool's
 * loop-end hook calls it). */
coro__job_future *coro__job_future_alloc(void);
/* How many freed job structs and job futures a loop thread keeps, each. */
#define CORO__JOB_CACHE_MAX 262144
void coro__job_future_cache_free(void);

/* Loop thread: make jf (from coro__job_future_alloc) a pending future of
 * loop for job j, of a pool of kind kind, with two references (the
 * caller's and the job's), watching for a completion that does not come
 * from the job. Sets j->fut. */
void coro__job_future_init(coro__job_future *jf, coro_loop *loop,
                           coro__job *j, int kind);
/* f as a pool job's future, or NULL if it is none (or NULL). */
coro__job_future *coro__job_future_of(const coro_future *f);

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

#endif /* CORO_SRC_EXEC_POOL_H_ */
