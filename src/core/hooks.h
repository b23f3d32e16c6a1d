/* SPDX-License-Identifier: MIT */
/* The fixed points where core calls the debug layer (src/debug/). They are
 * declared here, in core, and defined there, so that no core file includes
 * a header of a layer above it: the way libuv's uv-common.h declares what
 * its platform files define. Debug mode itself is a flag of the loop. */
#ifndef CORO_SRC_CORE_HOOKS_H_
#define CORO_SRC_CORE_HOOKS_H_

#include <stdint.h>

typedef struct coro_loop coro_loop;
typedef struct coro_future coro_future;

/* Stack-overflow report (debug/overflow.c). coro_run calls enter on its
 * thread before the first task and leave after the last. They install
 * nothing when the environment has CORO_NO_SIGNAL_HANDLERS=1 or under
 * AddressSanitizer (which reports stack overflows itself). */
void coro__overflow_enter(coro_loop *loop);
void coro__overflow_leave(coro_loop *loop);

/* Debug mode's slow-step report (debug/slow.c), called around each task
 * step while debug mode is on. coro__slow_clock: nanoseconds of the
 * monotonic clock (the vDSO, no syscall). coro__slow_step_check: after a
 * step of task f that started at t0, report it if it was slow. */
uint64_t coro__slow_clock(void);
void coro__slow_step_check(coro_loop *loop, coro_future *f, uint64_t t0);

#endif /* CORO_SRC_CORE_HOOKS_H_ */
