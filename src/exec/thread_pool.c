/* SPDX-License-Identifier: MIT */
/* Placeholder: filled in by the thread pool. Until then every entry point
 * says -ENOSYS. */
#include "exec/pool.h"

void coro__default_thread_pool_shutdown(coro_loop *loop) { (void)loop; }
int coro__thread_pool_shutdown(coro_pool *pool, int64_t timeout_ms,
                               coro_job_stuck_cb stuck, void *data) {
  (void)pool, (void)timeout_ms, (void)stuck, (void)data;
  return -ENOSYS;
}
void coro__thread_pool_free(coro_pool *pool) { (void)pool; }
int coro_thread_pool_new(coro_pool **out, unsigned nthreads) {
  (void)out, (void)nthreads;
  return -ENOSYS;
}
int coro_run_in_thread_opts(coro_future **out, coro_pool *pool, coro_fn fn,
                            void *arg, const coro_job_opts *opts) {
  (void)out, (void)pool, (void)fn, (void)arg, (void)opts;
  return -ENOSYS;
}
int coro_run_in_thread(coro_future **out, coro_pool *pool, coro_fn fn,
                       void *arg) {
  return coro_run_in_thread_opts(out, pool, fn, arg, NULL);
}
int coro_job_cancelled(void) { return 0; }
