/* SPDX-License-Identifier: MIT */
/* Futures and promises: outcome, waiters, done callbacks, references. */
#include <stdio.h>

#include "core/future.h"
#include "core/task.h"

void coro__future_init(coro_future *f, coro_loop *loop, int kind) {
  f->loop = loop;
  f->status = CORO_PENDING;
  f->kind = (uint8_t)kind;
  f->flags = 0;
  f->refs = 1;
  f->value = NULL;
  coro__queue_init(&f->waiters);
  coro__queue_push(&loop->futures, &f->link);
}

void coro__future_add_waiter(coro_future *f, coro__waiter *w) {
  coro__queue_push(&f->waiters, &w->node);
}

void coro__future_remove_waiter(coro__waiter *w) {
  coro__queue_remove(&w->node);
}

void coro__future_complete(coro_future *f, int status, void *value) {
  CORO__ASSERT(f->status == CORO_PENDING);
  CORO__ASSERT(status != CORO_PENDING);
  /* On its loop's thread (other threads post), or detached at loop end. */
  CORO__ASSERT(f->loop == NULL || f->loop == coro__tls_loop);
  f->status = status;
  f->value = status == 0 ? value : NULL;
  /* Notify in registration order. A notify may remove other waiters of f,
   * or drop the last reference to f: hold one while iterating. */
  f->refs++;
  coro__queue *q;
  while ((q = coro__queue_pop(&f->waiters)) != NULL) {
    coro__waiter *w = coro__container_of(q, coro__waiter, node);
    w->notify(w, f);
  }
  coro_future_release(f);
}

void coro__future_destroy(coro_future *f) {
  if (f->kind == CORO__FUT_TASK) {
    coro__task *t = coro__task_of(f);
    coro_loop *loop = f->loop;
    coro__free(t->name);
    t->name = NULL;
    if (loop != NULL) {
      coro__queue_remove(&f->link);
      /* Keep the struct for reuse: the pool grows to the peak number of
       * tasks alive at once and is freed when the loop ends (as Go keeps
       * its goroutine structs). Spawning then allocates nothing. */
      coro__task **pool = t->compact ? &loop->ctask_pool : &loop->task_pool;
      t->next_free = *pool;
      *pool = t;
      loop->ntask_pool++;
      return;
    }
    coro__free(t);
    return;
  }
  if (f->loop != NULL) coro__queue_remove(&f->link);
  if (f->kind == CORO__FUT_OWNED) {
    ((coro__future_owned *)f)->destroy(f);
    return;
  }
  coro__free(f);
}

/* ---- public API ------------------------------------------------------------ */

/* A future may be used only on its own loop's thread while that loop runs. */
static int check_loop(const coro_future *f) {
  if (f == NULL) return CORO_EINVAL;
  if (f->loop == NULL || f->loop != coro__tls_loop) return CORO_EPERM;
  return 0;
}

int coro_future_new(coro_future **out) {
  if (out == NULL) return CORO_EINVAL;
  coro_loop *loop = coro__tls_loop;
  if (loop == NULL) return CORO_EPERM;
  coro_future *f = coro__malloc(sizeof(*f));
  if (f == NULL) return CORO_ENOMEM;
  coro__future_init(f, loop, CORO__FUT_PROMISE);
  *out = f;
  return 0;
}

static int settle(coro_future *f, int status, void *value) {
  int r = check_loop(f);
  if (r != 0) return r;
  if (f->kind != CORO__FUT_PROMISE) return CORO_EPERM;
  if (f->status != CORO_PENDING) return CORO_EALREADY;
  coro__future_complete(f, status, value);
  return 0;
}

int coro_future_resolve(coro_future *f, void *value) {
  return settle(f, 0, value);
}

int coro_future_reject(coro_future *f, int err) {
  if (f == NULL || err >= 0) return CORO_EINVAL;
  return settle(f, err, NULL);
}

int coro_future_status(const coro_future *f) {
  if (f == NULL) return CORO_EINVAL;
  if (f->status != CORO_PENDING) coro__future_observed(f);
  return f->status;
}

void *coro_future_value(const coro_future *f) {
  if (f == NULL || f->status != 0) return NULL;
  return f->value;
}

coro_future *coro_future_retain(coro_future *f) {
  if (f != NULL) f->refs++;
  return f;
}

/* ---- failures nobody read --------------------------------------------------- */

static coro_unobserved_cb unobserved_cb;
static void *unobserved_data;

void coro_set_unobserved_handler(coro_unobserved_cb cb, void *data) {
  unobserved_cb = cb;
  unobserved_data = data;
}

static int unobserved_failure(const coro_future *f) {
  return f->status < 0 && f->status != CORO_ECANCELED &&
         !(f->flags & CORO__F_OBSERVED);
}

static void report(coro_future *f) {
  f->flags |= CORO__F_OBSERVED;
  if (unobserved_cb != NULL) {
    unobserved_cb(f, f->status, unobserved_data);
    return;
  }
  const char *name = coro_task_name(f);
  if (name != NULL)
    fprintf(stderr,
            "libcoro: Task exception was never retrieved: task '%s' failed: "
            "%s (%s)\n",
            name, coro_err_name(f->status), coro_strerror(f->status));
  else
    fprintf(stderr,
            "libcoro: Future exception was never retrieved: promise failed: "
            "%s (%s)\n",
            coro_err_name(f->status), coro_strerror(f->status));
}

void coro__reports_flush(coro_loop *loop) {
  coro__queue *q;
  while ((q = coro__queue_pop(&loop->reports)) != NULL) {
    coro_future *f = coro__container_of(q, coro_future, link);
    /* Back on the futures list while the handler may look at it. */
    coro__queue_push(&loop->futures, &f->link);
    f->refs = 1;
    report(f);
    if (--f->refs == 0) coro__future_destroy(f);
  }
}

void coro_future_release(coro_future *f) {
  if (f == NULL) return;
  CORO__ASSERT(f->refs > 0);
  if (--f->refs != 0) return;
  if (f->loop != NULL && unobserved_failure(f)) {
    /* Reported at the end of this iteration, then freed. */
    coro__queue_remove(&f->link);
    coro__queue_push(&f->loop->reports, &f->link);
    return;
  }
  coro__future_destroy(f);
}

/* ---- done callbacks ------------------------------------------------------- */

typedef struct done_cb {
  coro__waiter w;
  coro__handle h;
  coro_future *f;
  void (*cb)(coro_future *f, void *data);
  void *data;
} done_cb;

static void done_cb_run(coro__handle *h) {
  done_cb *d = coro__container_of(h, done_cb, h);
  coro_future *f = d->f;
  d->cb(f, d->data);
  coro__free(d);
  coro_future_release(f);
}

static void done_cb_notify(coro__waiter *w, coro_future *f) {
  done_cb *d = coro__container_of(w, done_cb, w);
  coro__loop_ready(f->loop, &d->h);
}

int coro_future_on_done(coro_future *f, void (*cb)(coro_future *f, void *data),
                        void *data) {
  int r = check_loop(f);
  if (r != 0) return r;
  if (cb == NULL) return CORO_EINVAL;
  done_cb *d = coro__malloc(sizeof(*d));
  if (d == NULL) return CORO_ENOMEM;
  d->w.notify = done_cb_notify;
  d->h.run = done_cb_run;
  coro__queue_init(&d->h.node);
  d->f = coro_future_retain(f);
  coro__future_observed(f); /* the callback is there to look at it */
  d->cb = cb;
  d->data = data;
  if (f->status != CORO_PENDING)
    coro__loop_ready(f->loop, &d->h);
  else
    coro__future_add_waiter(f, &d->w);
  return 0;
}

/* Loop teardown. Every task has finished (or was abandoned) and the ready
 * queue is empty, so the waiters left are done callbacks on futures that
 * never completed, and waits of abandoned tasks: drop them. Futures the program still references are detached from the
 * loop; the last coro_future_release frees them. */
void coro__futures_detach_all(coro_loop *loop) {
  coro__queue *q;
  while ((q = coro__queue_pop(&loop->futures)) != NULL) {
    coro_future *f = coro__container_of(q, coro_future, link);
    coro__queue *wq;
    while ((wq = coro__queue_pop(&f->waiters)) != NULL) {
      coro__waiter *w = coro__container_of(wq, coro__waiter, node);
      /* Other waiters belong to abandoned tasks and live on their leaked
       * stacks: unlinking them (done by the pop) is all there is to do. */
      if (w->notify != done_cb_notify) continue;
      coro__free(coro__container_of(w, done_cb, w));
      f->refs--; /* the callback's reference */
    }
    /* Still held by the program, failed, never read: report it now. */
    if (f->refs > 0 && unobserved_failure(f)) report(f);
    f->loop = NULL;
    if (f->refs == 0) coro__future_destroy(f);
  }
}
