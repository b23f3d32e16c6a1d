/* SPDX-License-Identifier: MIT */
/* The inbox: how other threads reach a loop. One per loop, made with it.
 *
 * Any thread posts a message; the loop's thread runs it (FIFO in posting
 * order), outside any task: a message may complete futures, wake tasks and
 * queue handles, never suspend. A loop that is awake (running tasks, or
 * spinning before it parks) looks at its inbox on every iteration and no
 * wake-up is sent; a parked loop (about to block in its poll) gets one
 * uv_async_send per batch: a post to a non-empty inbox sends nothing.
 *
 * The inbox outlives its loop: a pool job that is still running when
 * coro_run returns holds a reference, and its late post is refused with
 * -EPIPE, so the poster disposes of the message itself. Memory goes through
 * coro__malloc (the allocator hook must be thread-safe, as the default is).
 *
 * Loop liveness: the async handle does not keep the loop alive by itself
 * (or a loop with nothing to do would never be found stuck). Code on the
 * loop's thread that waits for a post (a pool job in flight) counts it with
 * coro__loop_ext_add(loop, +1) and takes it back with -1 once the post has
 * arrived (or will never be waited for): while the count is above zero the
 * loop blocks in its poll instead of declaring the program stuck. */
#ifndef CORO_SRC_CORE_INBOX_H_
#define CORO_SRC_CORE_INBOX_H_

#include "core/loop.h"

typedef struct coro__msg {
  struct coro__msg *next;
  /* Runs on the loop's thread. Owns m from then on. */
  void (*run)(struct coro__msg *m);
} coro__msg;

typedef struct coro__inbox coro__inbox;

/* Flags of coro__inbox_post. */
#define CORO__POST_CALL 0x1 /* refused (-EPIPE) from the moment the loop
                               starts shutting down (main finished), as
                               coro_call_threadsafe is; without it, posts
                               are taken until the loop has ended */

/* The inbox of a loop; loop thread, or any thread that holds a reference
 * taken on the loop's thread. */
coro__inbox *coro__loop_inbox(coro_loop *loop);
/* Thread-safe: a new reference to the inbox of loop, NULL once the loop
 * has closed it. loop must still be a valid pointer (its coro_run has not
 * returned): it is the caller's promise, as for coro_call_threadsafe. */
coro__inbox *coro__inbox_get(coro_loop *loop);
/* Thread-safe reference counting (the loop holds one until it ends). */
void coro__inbox_retain(coro__inbox *ib);
void coro__inbox_release(coro__inbox *ib);
/* Thread-safe. Queue m. 0, or -EPIPE when refused (m untouched: the caller
 * still owns it). */
int coro__inbox_post(coro__inbox *ib, coro__msg *m, int flags);
/* Thread-safe. The coro_loop behind ib while it runs, NULL once it ended
 * (for identity checks only: never dereference it from another thread). */
coro_loop *coro__inbox_loop(coro__inbox *ib);
/* Thread-safe: 1 if the calling thread is ib's loop thread. */
int coro__inbox_on_loop_thread(coro__inbox *ib);

/* Loop thread, outside tasks: run the messages queued so far now, as the
 * async handle's callback would. */
void coro__inbox_drain(coro_loop *loop);
/* Loop thread. Whether messages are waiting (a hint: exact once the loop
 * is parked). park: the loop may block in its poll from now on, so posts
 * must wake it; returns 1 if messages are waiting already (then it must
 * not block: drain them). unpark: the loop is awake and will look at the
 * inbox before it may block again, so posts need not wake it. */
int coro__inbox_has_msgs(const coro__inbox *ib);
int coro__inbox_park(coro__inbox *ib);
void coro__inbox_unpark(coro__inbox *ib);
/* Loop thread: count operations whose completion arrives by post. */
void coro__loop_ext_add(coro_loop *loop, int delta);

/* loop.c's hooks: made with the loop / at shutdown start (main finished:
 * CALL posts refused from now) / at its end (after the tasks are drained
 * and the default executors shut down: every queued message runs, later
 * posts are refused, the handle is closed). */
int coro__inbox_open(coro_loop *loop);
void coro__inbox_closing(coro_loop *loop);
void coro__inbox_close(coro_loop *loop);

#endif /* CORO_SRC_CORE_INBOX_H_ */
