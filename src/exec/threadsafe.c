/* SPDX-License-Identifier: MIT */
/* Placeholder: filled in by the threads-and-loops part. */
#include "exec/inbox.h"

int coro_call_threadsafe(coro_loop *loop, void (*cb)(void *arg), void *arg) {
  (void)loop, (void)cb, (void)arg;
  return -ENOSYS;
}
int coro_run_threadsafe(coro_loop *loop, coro_fn fn, void *arg,
                        int64_t timeout_ms, void **result) {
  (void)loop, (void)fn, (void)arg, (void)timeout_ms, (void)result;
  return -ENOSYS;
}
