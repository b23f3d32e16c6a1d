/* SPDX-License-Identifier: MIT */
/* Placeholder: filled in by the process pool. Until then every entry
 * point says -ENOSYS. */
#include "exec/pool.h"

void coro__default_proc_pool_shutdown(coro_loop *loop) { (void)loop; }
int coro__proc_pool_shutdown(coro_pool *pool, int64_t timeout_ms,
                             coro_job_stuck_cb stuck, void *data) {
  (void)pool, (void)timeout_ms, (void)stuck, (void)data;
  return -ENOSYS;
}
void coro__proc_pool_free(coro_pool *pool) { (void)pool; }
int coro_process_pool_new(coro_pool **out, unsigned nprocs) {
  (void)out, (void)nprocs;
  return -ENOSYS;
}
int coro_run_in_process_opts(coro_future **out, coro_pool *pool,
                             coro_proc_fn fn, const void *in, size_t in_len,
                             const coro_job_opts *opts) {
  (void)out, (void)pool, (void)fn, (void)in, (void)in_len, (void)opts;
  return -ENOSYS;
}
int coro_run_in_process(coro_future **out, coro_pool *pool, coro_proc_fn fn,
                        const void *in, size_t in_len) {
  return coro_run_in_process_opts(out, pool, fn, in, in_len, NULL);
}
int coro_future_bytes(const coro_future *f, const void **data, size_t *len) {
  (void)f, (void)data, (void)len;
  return -ENOSYS;
}
