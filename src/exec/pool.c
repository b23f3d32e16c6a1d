/* SPDX-License-Identifier: MIT */
/* coro_pool_shutdown and coro_pool_free: dispatch on the kind of pool. */
#include <time.h>

#include "exec/pool.h"

int coro_pool_shutdown_timeout(coro_pool *pool, int64_t timeout_ms,
                               coro_job_stuck_cb stuck, void *data) {
  if (pool == NULL || timeout_ms < CORO_FOREVER) return CORO_EINVAL;
  switch (pool->kind) {
  case CORO__POOL_THREAD:
    return coro__thread_pool_shutdown(pool, timeout_ms, stuck, data);
  case CORO__POOL_PROC:
    return coro__proc_pool_shutdown(pool, timeout_ms, stuck, data);
  default:
    return CORO_EINVAL;
  }
}

int coro_pool_shutdown(coro_pool *pool, int wait) {
  return coro_pool_shutdown_timeout(pool, wait ? CORO_FOREVER : 0, NULL, NULL);
}

void coro_pool_free(coro_pool *pool) {
  if (pool == NULL) return;
  if (pool->kind == CORO__POOL_THREAD)
    coro__thread_pool_free(pool);
  else if (pool->kind == CORO__POOL_PROC)
    coro__proc_pool_free(pool);
}

void coro__deadline_after(struct timespec *ts, int64_t timeout_ms) {
  clock_gettime(CLOCK_MONOTONIC, ts);
  if (timeout_ms <= 0) return;
  ts->tv_sec += (time_t)(timeout_ms / 1000);
  ts->tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
  if (ts->tv_nsec >= 1000000000L) {
    ts->tv_sec++;
    ts->tv_nsec -= 1000000000L;
  }
}
