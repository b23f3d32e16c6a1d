/* SPDX-License-Identifier: MIT */
/* Debug mode's slow-step report: a task step that holds the loop for
 * slow_step_ms or longer is reported in asyncio's words. Two clock reads
 * per step, only while debug mode is on. */
#ifndef CORO_SRC_DEBUG_SLOW_H_
#define CORO_SRC_DEBUG_SLOW_H_

#include <stdint.h>

#include "core/loop.h"

/* Nanoseconds of the monotonic clock (the vDSO, no syscall). */
uint64_t coro__slow_clock(void);
/* After a step of task f that started at t0: report it if it was slow. */
void coro__slow_step_check(coro_loop *loop, coro_future *f, uint64_t t0);

#endif /* CORO_SRC_DEBUG_SLOW_H_ */
