/* SPDX-License-Identifier: MIT */
/* What lock, event, condition, semaphore and queue share: the waiter that
 * lives on the waiting task's stack, its timeout, and the loop check.
 *
 * The hand-off protocol (no barging): whoever releases a permit, puts an
 * item or notifies gives it to the FIFO's first waiter directly (grant);
 * the waiter owns it from that moment, even before it runs. If the waiter
 * is cancelled before it runs (task READY, granted set), the object's
 * cancel hook passes what it was given on to the next waiter or puts it
 * back, in the same call: nothing is lost and nothing is given twice.
 *
 * The freeing rule (every object tasks can wait on, in every layer):
 * freeing it while tasks wait wakes each of them with -EPIPE, the ones
 * handed something and not resumed yet included (what they were handed
 * goes back or to the destructor). users counts the tasks inside a wait of
 * the object (from before they link until after they resume); free marks
 * the object dead, and the memory goes when the last of them leaves its
 * wait (coro__sync_leave), so a waiter never resumes into freed memory.
 * Waits on a dead object return -EPIPE at once. */
#ifndef CORO_SRC_SYNC_SYNC_H_
#define CORO_SRC_SYNC_SYNC_H_

#include "core/task.h"

typedef struct coro__sw {
  coro__queue node;   /* in the object's FIFO while waiting */
  coro__task *task;
  void *obj;          /* the object waited on */
  void *item;         /* queue: the item to put, or the one handed over */
  uint64_t seq;       /* priority queue: order among equal items */
  coro__timer timer;  /* a wait with a time limit */
  int granted;        /* handed a permit / item / notification, not resumed */
} coro__sw;

static inline void coro__sw_timer_cb(coro__timer *tm) {
  coro__sw *w = coro__container_of(tm, coro__sw, timer);
  if (!coro__queue_linked(&w->node)) return;
  coro__queue_remove(&w->node);
  coro__task_wake(w->task, CORO_ETIMEDOUT);
}

static inline void coro__sw_init(coro__sw *w, coro__task *t, void *obj) {
  coro__queue_init(&w->node);
  w->task = t;
  w->obj = obj;
  w->item = NULL;
  w->seq = 0;
  w->granted = 0;
  coro__timer_init(&w->timer, coro__sw_timer_cb);
}

/* Link w at the tail of fifo and suspend until a grant, a wake-up, the
 * timeout (ms > 0; CORO_FOREVER for none) or a cancellation. Returns the
 * wake status; w is unlinked and its timer stopped on return. */
static inline int coro__sw_wait(coro__sw *w, coro__queue *fifo, int64_t ms,
                                coro__cancel_fn hook, const char *what) {
  coro_loop *loop = w->task->fut.loop;
  if (ms > 0) {
    int r = coro__timer_start(loop, &w->timer, (uint64_t)ms);
    if (r != 0) return r;
  }
  coro__queue_push(fifo, &w->node);
  int r = coro__task_suspend(w->task, hook, w, what);
  if (coro__queue_linked(&w->node)) coro__queue_remove(&w->node);
  coro__timer_stop(loop, &w->timer);
  return r;
}

/* End w's wait with status: unlink, stop the timer, make the task ready.
 * granted says whether w now owns something it must give back if it is
 * cancelled before it runs. */
static inline void coro__sw_wake(coro__sw *w, int status, int granted) {
  coro__queue_remove(&w->node);
  coro__timer_stop(w->task->fut.loop, &w->timer);
  w->granted = granted;
  coro__task_wake(w->task, status);
}

static inline coro__sw *coro__sw_first(coro__queue *fifo) {
  if (coro__queue_empty(fifo)) return NULL;
  return coro__container_of(coro__queue_head(fifo), coro__sw, node);
}

/* Undo a wait that holds nothing: unlink and stop the timer. */
static inline void coro__sw_unwait(coro__sw *w) {
  if (coro__queue_linked(&w->node)) coro__queue_remove(&w->node);
  coro__timer_stop(w->task->fut.loop, &w->timer);
}

/* The cancel hook of a wait that holds nothing to give back (event wait,
 * queue join): abort. */
static inline int coro__sw_cancel_abort(coro__task *t, void *arg) {
  (void)t;
  coro__sw_unwait(arg);
  return CORO__CANCEL_ABORT;
}

/* May this thread use an object bound to *slot? An object with waiters
 * (busy) belongs to their loop: other threads and loops get -EPERM. An
 * idle one moves to the caller's loop (asyncio binds on first use). */
static inline int coro__sync_loop_at(coro_loop **slot, int busy,
                                     coro_loop *cur) {
  if (CORO__UNLIKELY(*slot != cur)) {
    if (busy && *slot != NULL) return CORO_EPERM;
    if (cur != NULL) *slot = cur;
  }
  return 0;
}

static inline int coro__sync_loop(coro_loop **slot, int busy) {
  return coro__sync_loop_at(slot, busy, coro__tls_loop);
}

/* Free with tasks waiting: only their loop's thread may wake them. */
static inline int coro__sync_free_check(coro_loop *loop, size_t users) {
  return users != 0 && loop != coro__tls_loop ? CORO_EPERM : 0;
}

/* Wake every waiter of fifo with status (nothing handed over). */
static inline void coro__sw_wake_all(coro__queue *fifo, int status) {
  coro__sw *w;
  while ((w = coro__sw_first(fifo)) != NULL) coro__sw_wake(w, status, 0);
}

/* A waiter leaves its wait: drop its use of the object (*users) and say
 * whether it was the last task inside a wait of a dead object, which it
 * must then free. */
static inline int coro__sync_leave(size_t *users, int dead) {
  CORO__ASSERT(*users > 0);
  return --*users == 0 && dead;
}

/* Check a time limit: CORO_FOREVER, 0 or positive. */
static inline int coro__sync_ms_ok(int64_t ms) { return ms >= CORO_FOREVER; }

/* The lock's internals, for the condition variable (lock.c). */
int coro__lock_acquire(coro_lock *l, coro__task *t, int64_t ms);
int coro__lock_held_by(const coro_lock *l, const coro__task *t);
void coro__lock_release(coro_lock *l);

#endif /* CORO_SRC_SYNC_SYNC_H_ */
