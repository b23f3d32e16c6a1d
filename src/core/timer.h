/* SPDX-License-Identifier: MIT */
/* The loop's own timers: a binary min-heap of deadlines with one uv_timer_t
 * armed for the earliest (timer.c). A timer can live anywhere (in a task,
 * on a coroutine stack): starting and stopping it allocates nothing once
 * the heap has grown, and no libuv handle has to be closed. Equal deadlines
 * fire in start order. Loop thread only. */
#ifndef CORO_SRC_CORE_TIMER_H_
#define CORO_SRC_CORE_TIMER_H_

#include <stddef.h>
#include <stdint.h>

typedef struct coro_loop coro_loop;

typedef struct coro__timer {
  uint64_t due;      /* uv_hrtime() nanoseconds */
  uint64_t seq;      /* start order, breaks ties */
  size_t idx;        /* position in the heap; CORO__TIMER_IDLE when stopped */
  void (*cb)(struct coro__timer *t);
} coro__timer;
#define CORO__TIMER_IDLE ((size_t)-1)

/* Timers: start fires cb once after ms milliseconds, start_at once
 * uv_hrtime() reaches due (a past due fires on the next iteration); both
 * return 0 or -ENOMEM when the heap cannot grow. Stop is a no-op on a
 * stopped timer. */
void coro__timer_init(coro__timer *t, void (*cb)(coro__timer *t));
int coro__timer_start(coro_loop *loop, coro__timer *t, uint64_t ms);
int coro__timer_start_at(coro_loop *loop, coro__timer *t, uint64_t due);
void coro__timer_stop(coro_loop *loop, coro__timer *t);
/* Run every due timer and re-arm the libuv timer (its callback). */
void coro__timers_run(coro_loop *loop);
void coro__timers_free(coro_loop *loop);

#endif /* CORO_SRC_CORE_TIMER_H_ */
