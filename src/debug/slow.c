/* SPDX-License-Identifier: MIT */
/* Debug mode's slow-step report (see debug/slow.h and coro_set_slow_step_handler). */
#include <stdio.h>
#include <time.h>

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

/* The coarse monotonic clock: a plain read of the time the kernel last
 * stored (no TSC read, no scaling), a few ns against 20-40 ns for
 * CLOCK_MONOTONIC on this project's VMs. Two reads per step then cost a
 * trivial task step about 10%, where CLOCK_MONOTONIC cost it 50% or more
 * (docs/comparison.md has the figures). Its resolution is the kernel tick
 * (clock_getres: 1-4 ms), which is what the threshold and the reported
 * duration are exact to; slow steps are 100 ms by default. */
uint64_t coro__slow_clock(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void coro__slow_step_check(coro_loop *loop, coro_future *f, uint64_t t0) {
  uint64_t dt = coro__slow_clock() - t0;
  /* A threshold too large for nanoseconds in 64 bits (about 584 years)
   * means never; without this check it would wrap and report every step. */
  uint64_t ms = (uint64_t)loop->slow_step_ms;
  if (ms > UINT64_MAX / 1000000u || dt < ms * 1000000u) return;
  double secs = (double)dt / 1e9;
  const char *name = coro_task_name(f);
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
