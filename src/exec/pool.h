/* SPDX-License-Identifier: MIT */
/* What the two kinds of pool share: coro_pool is the first member of each
 * pool struct, and coro_pool_shutdown / coro_pool_free (pool.c) dispatch on
 * its kind. */
#ifndef CORO_SRC_EXEC_POOL_H_
#define CORO_SRC_EXEC_POOL_H_

#include "exec/inbox.h"

enum { CORO__POOL_THREAD = 1, CORO__POOL_PROC = 2 };

struct coro_pool {
  int kind; /* CORO__POOL_* */
};

/* thread_pool.c */
int coro__thread_pool_shutdown(coro_pool *pool, int64_t timeout_ms,
                               coro_job_stuck_cb stuck, void *data);
void coro__thread_pool_free(coro_pool *pool);
/* proc_pool.c */
int coro__proc_pool_shutdown(coro_pool *pool, int64_t timeout_ms,
                             coro_job_stuck_cb stuck, void *data);
void coro__proc_pool_free(coro_pool *pool);

#endif /* CORO_SRC_EXEC_POOL_H_ */
