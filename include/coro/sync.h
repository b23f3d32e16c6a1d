/* SPDX-License-Identifier: MIT */
/* libcoro sync: lock, event, condition, semaphores and queues for the tasks
 * of one loop (asyncio.Lock & co., with trio's strict FIFO hand-off).
 *
 * Include <coro.h>, not this file. The full reference, with every return
 * code, is docs/api/sync.md. Rules shared by every object here:
 * - Not thread-safe: one loop's thread uses an object at a time. An object
 *   that tasks wait on belongs to their loop (other loops: -EPERM); an idle
 *   one may be used from any loop.
 * - Suspending calls need a task (else -EPERM) and are cancellable
 *   (-ECANCELED). They allocate nothing: the waiter lives on the task's
 *   stack. Calls that do not have to wait do not suspend (no yield).
 * - Hand-off is strict FIFO: a release, set, notify or put gives the
 *   permit / item to the first waiter directly; nobody can overtake it. A
 *   waiter cancelled after it was handed something and before it ran
 *   passes it on to the next waiter or puts it back (nothing lost).
 * - _timeout(..., ms) variants: CORO_FOREVER waits without limit, 0 checks
 *   once without suspending, > 0 waits at most ms; -ETIMEDOUT when the
 *   time is up; ms < -1 is -EINVAL. try_ / _nowait variants return -EAGAIN
 *   where the others would wait.
 * - Freeing an object that tasks wait on (the rule of every libcoro
 *   object: channels, streams and servers too) wakes each of them with
 *   -EPIPE, the ones woken or handed something and not yet run included:
 *   a lock or unit handed over is void, a queue item handed over goes to
 *   the queue's destructor (a task whose wait a cancellation ended first
 *   still returns -ECANCELED). The tasks must not use the object again; its
 *   memory goes once the last of them has resumed. *_free returns 0, or
 *   -EPERM when tasks wait and the caller is not on their loop's thread
 *   (nothing is freed), -EINVAL for NULL. Waits started on an object
 *   after its free are a use after free. */
#ifndef CORO_SYNC_H_
#define CORO_SYNC_H_

#include "coro/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Lock                                                                     */
/* ------------------------------------------------------------------------ */

/* A FIFO mutex owned by the task that acquired it. */
typedef struct coro_lock coro_lock;

/* -EINVAL (out NULL), -ENOMEM. */
CORO_EXTERN int coro_lock_new(coro_lock **out);
/* 0; waiters get -EPIPE (above); -EPERM, -EINVAL. A held lock may be
 * freed; its owner must not release it then. */
CORO_EXTERN int coro_lock_free(coro_lock *l);
/* Take the lock, waiting in FIFO order while another task holds it.
 * 0, -ECANCELED, -EDEADLK (the caller holds it), -EPERM (outside a task,
 * other loop), -EINVAL. */
CORO_EXTERN int coro_lock_acquire(coro_lock *l);
/* The same with a limit; also -ETIMEDOUT, -ENOMEM (timer heap growth). */
CORO_EXTERN int coro_lock_acquire_timeout(coro_lock *l, int64_t ms);
/* Take it if free: 0, -EAGAIN (held), -EDEADLK, -EPERM, -EINVAL. */
CORO_EXTERN int coro_lock_try_acquire(coro_lock *l);
/* Give it up; the first waiter becomes the owner. 0, -EPERM (the caller
 * is not the owner, or it is not locked), -EINVAL. */
CORO_EXTERN int coro_lock_release(coro_lock *l);
/* 1 if held (or handed to a waiter), 0 if not, -EINVAL for NULL. */
CORO_EXTERN int coro_lock_locked(const coro_lock *l);

/* ------------------------------------------------------------------------ */
/* Event                                                                    */
/* ------------------------------------------------------------------------ */

/* A flag tasks can wait for (asyncio.Event). */
typedef struct coro_event coro_event;

CORO_EXTERN int coro_event_new(coro_event **out);  /* -EINVAL, -ENOMEM */
CORO_EXTERN int coro_event_free(coro_event *e);    /* 0, -EPERM, -EINVAL */
/* Set the flag and wake every waiter (they return 0 even if the flag is
 * cleared before they run). 0, -EPERM (other loop), -EINVAL. */
CORO_EXTERN int coro_event_set(coro_event *e);
/* Clear the flag. 0, -EPERM, -EINVAL. */
CORO_EXTERN int coro_event_clear(coro_event *e);
/* 1 if set, 0 if not, -EINVAL for NULL. */
CORO_EXTERN int coro_event_is_set(const coro_event *e);
/* Wait until set (at once if set). 0, -ECANCELED, -EPERM, -EINVAL. */
CORO_EXTERN int coro_event_wait(coro_event *e);
/* The same with a limit; also -ETIMEDOUT, -ENOMEM. */
CORO_EXTERN int coro_event_wait_timeout(coro_event *e, int64_t ms);

/* ------------------------------------------------------------------------ */
/* Condition                                                                */
/* ------------------------------------------------------------------------ */

/* A condition variable bound to a lock (asyncio.Condition, 3.13). */
typedef struct coro_cond coro_cond;

/* lock NULL: the condition makes (and frees) its own. The lock must outlive
 * the condition. -EINVAL, -ENOMEM. */
CORO_EXTERN int coro_cond_new(coro_cond **out, coro_lock *lock);
/* 0, -EPERM, -EINVAL. Waiters get -EPIPE: with a lock of the caller's they
 * hold it again, as after every wait; the condition's own lock is freed
 * with it, and they return without it. */
CORO_EXTERN int coro_cond_free(coro_cond *c);
/* The lock (borrowed), NULL for NULL. */
CORO_EXTERN coro_lock *coro_cond_lock(const coro_cond *c);
/* The caller holds the lock. Release it, wait for a notify, re-acquire it
 * (also when cancelled or timed out: the lock is held on every return but
 * -EPERM / -EINVAL). 0, -ECANCELED, -EPERM (lock not held by the caller,
 * outside a task, other loop), -EINVAL. A waiter notified and then
 * cancelled or timed out passes the notification on (3.13). */
CORO_EXTERN int coro_cond_wait(coro_cond *c);
/* The same with a limit; also -ETIMEDOUT, -ENOMEM. 0 ms: -ETIMEDOUT at
 * once (the lock is kept). */
CORO_EXTERN int coro_cond_wait_timeout(coro_cond *c, int64_t ms);
/* Wait until pred(arg) != 0: returns 0 at once if it already holds (lock
 * not needed then), else as coro_cond_wait in a loop. The timeout variant
 * bounds the whole call and checks pred once more when it expires. */
CORO_EXTERN int coro_cond_wait_for(coro_cond *c, int (*pred)(void *arg),
                                   void *arg);
CORO_EXTERN int coro_cond_wait_for_timeout(coro_cond *c,
                                           int (*pred)(void *arg), void *arg,
                                           int64_t ms);
/* Wake up to n waiters (FIFO) / all of them; they return once they get
 * the lock back. The caller holds the lock. Returns how many it woke
 * (>= 0), -EPERM (lock not held by the caller), -EINVAL (n < 0, NULL). */
CORO_EXTERN int coro_cond_notify(coro_cond *c, int n);
CORO_EXTERN int coro_cond_notify_all(coro_cond *c);

/* ------------------------------------------------------------------------ */
/* Semaphores                                                               */
/* ------------------------------------------------------------------------ */

/* A counting semaphore; bounded ones refuse a release above the initial
 * value (asyncio.Semaphore / BoundedSemaphore). */
typedef struct coro_sem coro_sem;

/* value >= 0. -EINVAL, -ENOMEM. */
CORO_EXTERN int coro_sem_new(coro_sem **out, int value);
CORO_EXTERN int coro_bsem_new(coro_sem **out, int value);
CORO_EXTERN int coro_sem_free(coro_sem *s);        /* 0, -EPERM, -EINVAL */
/* Take one unit, waiting (FIFO) while there is none. 0, -ECANCELED,
 * -EPERM, -EINVAL. */
CORO_EXTERN int coro_sem_acquire(coro_sem *s);
/* The same with a limit; also -ETIMEDOUT, -ENOMEM. */
CORO_EXTERN int coro_sem_acquire_timeout(coro_sem *s, int64_t ms);
/* Take one if available: 0, -EAGAIN, -EPERM, -EINVAL. */
CORO_EXTERN int coro_sem_try_acquire(coro_sem *s);
/* Give one unit back (to the first waiter, if any). Any code may release
 * (no owner). 0, -EOVERFLOW (bounded: above the initial value; or the
 * count would pass INT_MAX), -EPERM (other loop), -EINVAL. */
CORO_EXTERN int coro_sem_release(coro_sem *s);
/* Units available now (>= 0), -EINVAL for NULL. */
CORO_EXTERN int coro_sem_value(const coro_sem *s);
/* 1 if an acquire would wait, 0 if not, -EINVAL. */
CORO_EXTERN int coro_sem_locked(const coro_sem *s);

/* ------------------------------------------------------------------------ */
/* Queues                                                                   */
/* ------------------------------------------------------------------------ */

/* A queue of void * items (asyncio.Queue / LifoQueue / PriorityQueue with
 * 3.13's shutdown), with direct FIFO hand-off to waiting getters. */
typedef struct coro_queue coro_queue;

enum { CORO_QUEUE_FIFO = 0, CORO_QUEUE_LIFO = 1, CORO_QUEUE_PRIORITY = 2 };

/* Orders a priority queue: < 0 if a comes out before b. Equal items come
 * out in put order. The default compares the items as intptr_t. */
typedef int (*coro_queue_cmp)(const void *a, const void *b);

/* maxsize 0: unbounded. destroy (may be NULL) is called on items the queue
 * drops: at an immediate shutdown and at free; it must not call libcoro.
 * -EINVAL (out NULL, bad kind), -ENOMEM. */
CORO_EXTERN int coro_queue_new(coro_queue **out, int kind, size_t maxsize,
                               void (*destroy)(void *item));
/* Priority queues only, while empty: -EINVAL (not PRIORITY, cmp NULL),
 * -EBUSY (items or waiters present). */
CORO_EXTERN int coro_queue_set_compare(coro_queue *q, coro_queue_cmp cmp);
/* Destroys the items still queued. With tasks waiting it acts as an
 * immediate shutdown first: every waiter gets -EPIPE (getters, putters
 * whose item was not taken, joiners), items handed to getters not yet run
 * go to destroy; a putter whose item was already taken returns 0 (the
 * item was put, then dropped with the rest). 0, -EPERM, -EINVAL. */
CORO_EXTERN int coro_queue_free(coro_queue *q);

/* Put an item, waiting (FIFO) while the queue is full. 0, -EPIPE (shut
 * down, also while waiting; the item stays the caller's), -ECANCELED (not
 * put), -EPERM, -ENOMEM, -EINVAL. A putter whose item was taken in while
 * it waited returns 0 even if cancelled before it runs; the cancellation
 * then arrives at its next suspension. */
CORO_EXTERN int coro_queue_put(coro_queue *q, void *item);
CORO_EXTERN int coro_queue_put_timeout(coro_queue *q, void *item, int64_t ms);
/* -EAGAIN when full (or a waiting putter is ahead), -EPIPE after shutdown.
 * Works outside tasks (callbacks). */
CORO_EXTERN int coro_queue_put_nowait(coro_queue *q, void *item);
/* Take the next item into *item, waiting while empty. 0, -EPIPE (shut down
 * and empty), -ECANCELED (nothing taken: an item handed over is passed to
 * the next getter or put back at the front), -EPERM, -EINVAL. */
CORO_EXTERN int coro_queue_get(coro_queue *q, void **item);
CORO_EXTERN int coro_queue_get_timeout(coro_queue *q, void **item, int64_t ms);
/* -EAGAIN when empty (or getters are waiting), -EPIPE when shut down and
 * empty. */
CORO_EXTERN int coro_queue_get_nowait(coro_queue *q, void **item);
/* One item taken out has been processed. 0, -EOVERFLOW (more calls than
 * puts), -EPERM, -EINVAL. */
CORO_EXTERN int coro_queue_task_done(coro_queue *q);
/* Wait until every item put has been marked done (at once if so).
 * 0, -ECANCELED, -EPERM, -EINVAL; the timeout variant -ETIMEDOUT, -ENOMEM. */
CORO_EXTERN int coro_queue_join(coro_queue *q);
CORO_EXTERN int coro_queue_join_timeout(coro_queue *q, int64_t ms);
/* Shut down (asyncio 3.13): later puts fail with -EPIPE and waiting
 * putters wake with it; getters drain what is queued, then get -EPIPE
 * (waiting getters wake with it). immediate != 0 also drops the queued
 * items at once (destroy is called on each) and counts them as done.
 * 0, -EPERM (other loop), -EINVAL. Repeating it is harmless. */
CORO_EXTERN int coro_queue_shutdown(coro_queue *q, int immediate);

/* Items queued (items already handed to a waiting getter are not). */
CORO_EXTERN size_t coro_queue_size(const coro_queue *q);
CORO_EXTERN size_t coro_queue_maxsize(const coro_queue *q);
/* 1 / 0; -EINVAL for NULL. full: maxsize > 0 and size >= maxsize. */
CORO_EXTERN int coro_queue_empty(const coro_queue *q);
CORO_EXTERN int coro_queue_full(const coro_queue *q);
/* Items put and not yet marked done. */
CORO_EXTERN size_t coro_queue_unfinished(const coro_queue *q);
/* 1 once shut down, 0 before, -EINVAL for NULL. */
CORO_EXTERN int coro_queue_is_shutdown(const coro_queue *q);

#ifdef __cplusplus
}
#endif
#endif /* CORO_SYNC_H_ */
