/* SPDX-License-Identifier: MIT */
/* What the two kinds of pool share: coro_pool is the first member of each
 * pool struct, and coro_pool_shutdown / coro_pool_free (pool.c) dispatch on
 * its kind. */
#ifndef CORO_SRC_EXEC_POOL_H_
#define CORO_SRC_EXEC_POOL_H_

#include "core/inbox.h"

enum { CORO__POOL_THREAD = 1, CORO__POOL_PROC = 2 };

struct coro_pool {
  int kind; /* CORO__POOL_* */
};

/* The future kind of an executor job (future.h's kinds are 1..3): not a
 * promise (coro_future_resolve says -EPERM), cancelled at once by
 * coro_cancel like one. */
#define CORO__FUT_JOB 8

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

/* thread_pool.c */
int coro__thread_pool_shutdown(coro_pool *pool, int64_t timeout_ms,
                               coro_job_stuck_cb stuck, void *data);
void coro__thread_pool_free(coro_pool *pool);
/* proc_pool.c */
int coro__proc_pool_shutdown(coro_pool *pool, int64_t timeout_ms,
                             coro_job_stuck_cb stuck, void *data);
void coro__proc_pool_free(coro_pool *pool);

#endif /* CORO_SRC_EXEC_POOL_H_ */
