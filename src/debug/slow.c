/* SPDX-License-Identifier: MIT */
/* Debug mode's slow-step report (see debug/slow.h and coro_set_slow_step_handler). */
#include <stdio.h>

#include "debug/slow.h"

static coro_slow_step_cb slow_cb;
static void *slow_data;

void coro_set_slow_step_handler(coro_slow_step_cb cb, void *data) {
  slow_cb = cb;
  slow_data = data;
}

int coro_loop_debug(coro_loop *loop) {
  return loop != NULL ? loop->debug : CORO_EINVAL;
}

/* After a step the watchdog saw running: it began after the instant the
 * watchdog published (the time of its sample before the one that first
 * saw the step), so the duration reported is exact to one sample period
 * (slow_step_ms / 20, 1-5 ms) and never short: a step of slow_step_ms is
 * reported. */
void coro__slow_step_end(coro_loop *loop, coro_future *f) {
  uint64_t lower = atomic_load_explicit(&loop->wd_seen_lower, memory_order_relaxed);
  uint64_t now = uv_hrtime();
  uint64_t dt = now > lower ? now - lower : 0;
  /* A threshold too large for nanoseconds in 64 bits (about 584 years)
   * means never; without this check it would wrap and report every step. */
  uint64_t ms = (uint64_t)loop->slow_step_ms;
  if (ms > UINT64_MAX / 1000000u || dt < ms * 1000000u) return;
  double secs = (double)dt / 1e9;
  const char *name = coro_task_name(f);
  loop->slow_steps++;
  if (slow_cb != NULL) {
    /* The handler runs outside any task (as documented): the loop still
     * points at the task whose step just ended, so hide it for the call;
     * suspending calls made by the handler then return -EPERM. */
    coro__task *cur = loop->current;
    loop->current = NULL;
    slow_cb(f, name, secs, slow_data);
    loop->current = cur;
    return;
  }
  fprintf(stderr, "libcoro: Executing <task %s> took %.3f seconds\n", name,
          secs);
}
