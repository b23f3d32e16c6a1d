/* SPDX-License-Identifier: MIT */
/* Calls between threads and loops: coro_call_threadsafe (queue a callback
 * on a loop from any thread), coro_run_threadsafe (run a task on a loop
 * and block the calling thread for its outcome), coro_loop_keepalive.
 *
 * Both go through the target loop's inbox; FIFO per calling thread follows
 * from the inbox being one FIFO under one mutex. */
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "core/task.h"
#include "exec/pool.h"

/* ---- coro_call_threadsafe ---------------------------------------------------- */

typedef struct call_msg {
  coro__msg msg;
  void (*cb)(void *arg);
  void *arg;
} call_msg;

static void call_msg_run(coro__msg *m) {
  call_msg *c = coro__container_of(m, call_msg, msg);
  void (*cb)(void *) = c->cb;
  void *arg = c->arg;
  coro__free(c);
  cb(arg);
}

int coro_call_threadsafe(coro_loop *loop, void (*cb)(void *arg), void *arg) {
  if (loop == NULL || cb == NULL) return CORO_EINVAL;
  coro__inbox *ib = coro__inbox_get(loop);
  if (ib == NULL) return CORO_EPIPE;
  call_msg *c = coro__malloc(sizeof(*c));
  if (c == NULL) {
    coro__inbox_release(ib);
    return CORO_ENOMEM;
  }
  c->msg.run = call_msg_run;
  c->cb = cb;
  c->arg = arg;
  int r = coro__inbox_post(ib, &c->msg, CORO__POST_CALL);
  coro__inbox_release(ib);
  if (r != 0) coro__free(c);
  return r;
}

/* The holds this thread's loop has taken with coro_loop_keepalive. */
static _Thread_local coro_loop *keep_loop;
static _Thread_local long keep_count;

void coro__keepalive_reset(void) {
  keep_loop = NULL;
  keep_count = 0;
}

int coro_loop_keepalive(coro_loop *loop, int delta) {
  if (loop == NULL) return CORO_EINVAL;
  if (loop != coro__tls_loop) return CORO_EPERM;
  if (delta != 1 && delta != -1) return CORO_EINVAL;
  if (keep_loop != loop) { /* a new loop on this thread */
    keep_loop = loop;
    keep_count = 0;
  }
  if (delta < 0 && keep_count == 0) return CORO_EINVAL;
  coro__thread_slot_use(loop); /* its end forgets the holds */
  keep_count += delta;
  coro__loop_ext_add(loop, delta);
  return 0;
}

/* ---- coro_run_threadsafe ----------------------------------------------------- */

/* Shared by the blocked caller and the loop: two references (the caller's
 * and the loop side's); the last one frees it. */
typedef struct rts_call {
  coro__msg start;          /* spawns the task on the loop */
  coro__msg cancel;         /* cancels it (the caller timed out) */
  coro__waiter w;           /* in the task's waiters */
  pthread_mutex_t mu;
  pthread_cond_t cv;
  atomic_int refs;
  int done;                 /* under mu */
  int abandoned;            /* under mu: the caller left (timeout) */
  int status;
  void *value;
  coro_fn fn;
  void *arg;
  coro_future *task;        /* loop side: the task while it runs */
  coro__inbox *ib;
} rts_call;

static void rts_release(rts_call *c) {
  if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) != 1)
    return;
  pthread_mutex_destroy(&c->mu);
  pthread_cond_destroy(&c->cv);
  coro__inbox_release(c->ib);
  coro__free(c);
}

/* Loop side: deliver the outcome and drop the loop side's reference. */
static void rts_finish(rts_call *c, int status, void *value) {
  pthread_mutex_lock(&c->mu);
  c->done = 1;
  c->status = status;
  /* A caller that left never reads it: nothing is written for it. */
  c->value = c->abandoned ? NULL : value;
  pthread_cond_signal(&c->cv);
  pthread_mutex_unlock(&c->mu);
  rts_release(c);
}

static void rts_notify(coro__waiter *w, coro_future *f) {
  rts_call *c = coro__container_of(w, rts_call, w);
  c->task = NULL;
  coro__future_observed(f);
  int status = f->status;
  void *value = f->value;
  coro_future_release(f);
  rts_finish(c, status, value);
}

static void rts_start_run(coro__msg *m) {
  rts_call *c = coro__container_of(m, rts_call, start);
  coro_future *t = NULL;
  int r = coro_spawn(&t, c->fn, c->arg);
  if (r != 0) {
    rts_finish(c, r, NULL);
    return;
  }
  c->task = t;
  c->w.notify = rts_notify;
  coro__future_add_waiter(t, &c->w);
}

static void rts_cancel_run(coro__msg *m) {
  rts_call *c = coro__container_of(m, rts_call, cancel);
  if (c->task != NULL) coro_cancel(c->task);
  rts_release(c);
}

int coro_run_threadsafe(coro_loop *loop, coro_fn fn, void *arg,
                        int64_t timeout_ms, void **result) {
  if (loop == NULL || fn == NULL || timeout_ms < CORO_FOREVER)
    return CORO_EINVAL;
  if (loop == coro__tls_loop) return CORO_EDEADLK;
  coro__inbox *ib = coro__inbox_get(loop);
  if (ib == NULL) return CORO_EPIPE;
  if (coro__inbox_on_loop_thread(ib)) {
    coro__inbox_release(ib);
    return CORO_EDEADLK;
  }
  rts_call *c = coro__malloc(sizeof(*c));
  if (c == NULL) {
    coro__inbox_release(ib);
    return CORO_ENOMEM;
  }
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_mutex_init(&c->mu, NULL);
  pthread_cond_init(&c->cv, &ca);
  pthread_condattr_destroy(&ca);
  c->start.run = rts_start_run;
  c->cancel.run = rts_cancel_run;
  atomic_init(&c->refs, 2);
  c->done = 0;
  c->abandoned = 0;
  c->status = 0;
  c->value = NULL;
  c->fn = fn;
  c->arg = arg;
  c->task = NULL;
  c->ib = ib; /* the reference coro__inbox_get took */

  struct timespec dl;
  coro__deadline_after(&dl, timeout_ms);
  int r = coro__inbox_post(ib, &c->start, CORO__POST_CALL);
  if (r != 0) {
    atomic_store(&c->refs, 1);
    rts_release(c);
    return r;
  }
  pthread_mutex_lock(&c->mu);
  while (!c->done) {
    if (timeout_ms == CORO_FOREVER) {
      pthread_cond_wait(&c->cv, &c->mu);
    } else if ((timeout_ms == 0 ||
                pthread_cond_timedwait(&c->cv, &c->mu, &dl) != 0) &&
               !c->done) {
      break;
    }
  }
  if (c->done) {
    r = c->status;
    if (result != NULL) *result = r == 0 ? c->value : NULL;
    pthread_mutex_unlock(&c->mu);
    rts_release(c);
    return r;
  }
  /* Timed out: leave, and have the task cancelled. The cancel message
   * holds our reference; if the loop has ended meanwhile its tasks were
   * cancelled anyway. */
  c->abandoned = 1;
  pthread_mutex_unlock(&c->mu);
  if (result != NULL) *result = NULL;
  if (coro__inbox_post(ib, &c->cancel, 0) != 0) rts_release(c);
  return CORO_ETIMEDOUT;
}
