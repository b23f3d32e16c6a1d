/* SPDX-License-Identifier: MIT */
/* Futures: a one-shot outcome (status + value), a FIFO of waiters notified
 * when it completes, and a reference count. A task is a future whose outcome
 * is its coroutine's. */
#ifndef CORO_SRC_CORE_FUTURE_H_
#define CORO_SRC_CORE_FUTURE_H_

#include <stdint.h>

#include "core/loop.h"

enum { CORO__FUT_PROMISE = 1, CORO__FUT_TASK = 2, CORO__FUT_SHIELD = 3 };

/* A future with a destructor of its own (the jobs of both executor pools,
 * src/exec/pool.h; a process job's future owns its result bytes): kind
 * CORO__FUT_OWNED, and the struct starts with coro__future_owned. Not a
 * promise: coro_cancel completes it at once. */
#define CORO__FUT_OWNED 4

/* f->flags */
#define CORO__F_OBSERVED 0x01 /* someone read its status: no failure report */

/* Something waiting for a future: a task in coro_await, a done callback, a
 * combinator. Waiters are intrusive, usually on the waiting task's stack.
 * notify runs synchronously inside the completing call, after the outcome is
 * set and the waiter unlinked; it must not run user code (it makes tasks
 * ready or queues handles). */
typedef struct coro__waiter {
  coro__queue node;
  void (*notify)(struct coro__waiter *w, coro_future *f);
} coro__waiter;

struct coro_future {
  coro_loop *loop;        /* NULL once the loop has ended */
  int status;             /* CORO_PENDING, then 0 or < 0 */
  uint8_t kind;           /* CORO__FUT_* */
  uint8_t flags;
  uint32_t refs;
  void *value;
  coro__queue waiters;    /* coro__waiter.node, FIFO */
  coro__queue link;       /* in loop->futures */
};

void coro__future_init(coro_future *f, coro_loop *loop, int kind);
/* Set the outcome and notify every waiter in registration order. The future
 * must be pending. */
void coro__future_complete(coro_future *f, int status, void *value);
void coro__future_add_waiter(coro_future *f, coro__waiter *w);
void coro__future_remove_waiter(coro__waiter *w);
/* Note that the program has read f's outcome (no unobserved report). */
static inline void coro__future_observed(const coro_future *f) {
  ((coro_future *)f)->flags |= CORO__F_OBSERVED;
}
/* Report failures nobody read, queued during this iteration (loop.c calls
 * it at the end of each iteration and at shutdown). */
void coro__reports_flush(coro_loop *loop);
/* Free the memory of a future whose last reference is gone. */
void coro__future_destroy(coro_future *f);
/* Loop teardown: drop pending callbacks, detach futures still referenced. */
void coro__futures_detach_all(coro_loop *loop);

/* See CORO__FUT_OWNED. destroy frees the whole struct (coro__future_destroy
 * has unlinked it from its loop already). */
typedef struct coro__future_owned {
  coro_future fut;
  void (*destroy)(coro_future *f);
} coro__future_owned;

#endif /* CORO_SRC_CORE_FUTURE_H_ */
