/* SPDX-License-Identifier: MIT */
/* Waiting for many futures: gather, wait, wait_for, as_completed.
 *
 * All of them link one waiter into each future (a "multi" wait). The
 * waiters live on the waiting task's stack for up to SMALL_N futures, and
 * in one allocation per call beyond that; nothing is allocated per future
 * completion. A waiter's notify only does bookkeeping and, when the
 * condition holds, makes the waiting task ready. */
#include <string.h>

#include "core/task.h"

#define SMALL_N 8

typedef struct multi multi;

typedef struct mwaiter {
  coro__waiter w;
  multi *m;
  size_t idx;
} mwaiter;

struct multi {
  coro__task *task;
  coro_future *const *fs;
  size_t n, ndone;
  mwaiter *ws;
  mwaiter small[SMALL_N];
  void (*on_done)(multi *m, size_t idx, coro_future *f);
};

static void multi_notify(coro__waiter *w, coro_future *f) {
  mwaiter *mw = coro__container_of(w, mwaiter, w);
  multi *m = mw->m;
  m->ndone++;
  m->on_done(m, mw->idx, f);
}

/* Check the arguments every multi wait shares. */
static int multi_check(coro_future *const *fs, size_t n, coro__task **task) {
  coro__task *t = coro__task_for_wait();
  if (fs == NULL && n > 0) return CORO_EINVAL;
  for (size_t i = 0; i < n; i++)
    if (fs[i] == NULL) return CORO_EINVAL;
  if (t == NULL) return CORO_EPERM;
  for (size_t i = 0; i < n; i++)
    if (fs[i]->loop != t->fut.loop) return CORO_EPERM;
  *task = t;
  return 0;
}

/* Link a waiter into every pending future; count the done ones. */
static int multi_start(multi *m, coro__task *t, coro_future *const *fs,
                       size_t n, void (*on_done)(multi *, size_t, coro_future *)) {
  m->task = t;
  m->fs = fs;
  m->n = n;
  m->ndone = 0;
  m->on_done = on_done;
  m->ws = m->small;
  if (n > SMALL_N) {
    m->ws = coro__malloc(n * sizeof(*m->ws));
    if (m->ws == NULL) return CORO_ENOMEM;
  }
  for (size_t i = 0; i < n; i++) {
    mwaiter *mw = &m->ws[i];
    mw->m = m;
    mw->idx = i;
    mw->w.notify = multi_notify;
    if (fs[i]->status != CORO_PENDING) {
      coro__queue_init(&mw->w.node);
      m->ndone++;
    } else {
      coro__future_add_waiter(fs[i], &mw->w);
    }
  }
  return 0;
}

static void multi_stop(multi *m) {
  for (size_t i = 0; i < m->n; i++)
    if (coro__queue_linked(&m->ws[i].w.node))
      coro__future_remove_waiter(&m->ws[i].w);
  if (m->ws != m->small) coro__free(m->ws);
  m->ws = NULL;
}

/* ---- gather ------------------------------------------------------------------- */

typedef struct gather {
  multi m;
  int want_all;          /* statuses mode */
  int failed;            /* NULL mode: the first failure, 0 if none */
  int cancel_requested;  /* the caller was cancelled: children cancelled */
} gather;

static int gather_done(const gather *g) {
  if (g->m.ndone == g->m.n) return 1;
  return !g->want_all && g->failed != 0;
}

static void gather_on_done(multi *m, size_t idx, coro_future *f) {
  gather *g = (gather *)m;
  (void)idx;
  if (!g->want_all && f->status != 0 && g->failed == 0) g->failed = f->status;
  if (gather_done(g)) coro__task_wake(m->task, 0);
}

static int gather_cancel(coro__task *t, void *arg) {
  gather *g = arg;
  if (t->state == CORO__T_READY) return CORO__CANCEL_ABORT; /* done already */
  /* Cancel every child still pending, and keep waiting for the outcome
   * (the first to finish, or all in statuses mode): then -ECANCELED. */
  g->cancel_requested = 1;
  for (size_t i = 0; i < g->m.n; i++)
    if (g->m.fs[i]->status == CORO_PENDING) coro_cancel(g->m.fs[i]);
  return CORO__CANCEL_PASSED;
}

int coro_gather(coro_future *const *fs, size_t n, void **results,
                int *statuses) {
  coro__task *t;
  int r = multi_check(fs, n, &t);
  if (r != 0) return r;
  if (n == 0) return 0;
  gather g;
  g.want_all = statuses != NULL;
  g.failed = 0;
  g.cancel_requested = 0;
  r = multi_start(&g.m, t, fs, n, gather_on_done);
  if (r != 0) return r;
  if (!g.want_all)
    for (size_t i = 0; i < n && g.failed == 0; i++)
      if (fs[i]->status != CORO_PENDING && fs[i]->status != 0)
        g.failed = fs[i]->status;
  int woke = 0;
  if (!gather_done(&g)) woke = coro__task_suspend(t, gather_cancel, &g, "gather");
  multi_stop(&g.m);
  /* Whatever happens, every child counts as looked at: later failures of
   * the others are not reported either (asyncio marks them retrieved). */
  for (size_t i = 0; i < n; i++) coro__future_observed(fs[i]);
  if (g.want_all) {
    for (size_t i = 0; i < n; i++) {
      statuses[i] = fs[i]->status;
      if (results != NULL) results[i] = fs[i]->status == 0 ? fs[i]->value : NULL;
    }
  }
  if (woke == CORO_ECANCELED || g.cancel_requested) return CORO_ECANCELED;
  if (g.want_all) return 0;
  if (g.failed != 0) return g.failed;
  if (results != NULL)
    for (size_t i = 0; i < n; i++) results[i] = fs[i]->value;
  return 0;
}

/* ---- wait -------------------------------------------------------------------- */

typedef struct waitst {
  multi m;
  int return_when;
  int failed;       /* some future failed with an error (not a cancel) */
  coro__timer timer;
} waitst;

static int is_error(int status) {
  return status < 0 && status != CORO_ECANCELED;
}

static int wait_cond(const waitst *w) {
  switch (w->return_when) {
  case CORO_FIRST_COMPLETED: return w->m.ndone > 0;
  case CORO_FIRST_EXCEPTION: return w->failed || w->m.ndone == w->m.n;
  default: return w->m.ndone == w->m.n;
  }
}

static void wait_on_done(multi *m, size_t idx, coro_future *f) {
  waitst *w = (waitst *)m;
  (void)idx;
  if (is_error(f->status)) w->failed = 1;
  if (wait_cond(w)) coro__task_wake(m->task, 0);
}

static void wait_timer_cb(coro__timer *tm) {
  waitst *w = coro__container_of(tm, waitst, timer);
  coro__task_wake(w->m.task, 0);
}

int coro_wait(coro_future *const *fs, size_t n, int return_when,
              int64_t timeout_ms) {
  if (n == 0 || timeout_ms < CORO_FOREVER) return CORO_EINVAL;
  if (return_when != CORO_ALL_COMPLETED &&
      return_when != CORO_FIRST_COMPLETED &&
      return_when != CORO_FIRST_EXCEPTION)
    return CORO_EINVAL;
  coro__task *t;
  int r = multi_check(fs, n, &t);
  if (r != 0) return r;
  waitst w;
  w.return_when = return_when;
  w.failed = 0;
  coro__timer_init(&w.timer, wait_timer_cb);
  r = multi_start(&w.m, t, fs, n, wait_on_done);
  if (r != 0) return r;
  for (size_t i = 0; i < n; i++)
    if (is_error(fs[i]->status)) w.failed = 1;
  coro_loop *loop = t->fut.loop;
  if (wait_cond(&w) || timeout_ms == 0) {
    /* Nothing to wait for, or no time to: still one trip around the loop,
     * as asyncio's callbacks on done futures take one. */
    r = coro_yield();
  } else {
    if (timeout_ms > 0) r = coro__timer_start(loop, &w.timer, (uint64_t)timeout_ms);
    if (r == 0) r = coro__task_suspend(t, coro__cancel_abort, NULL, "wait");
  }
  coro__timer_stop(loop, &w.timer);
  multi_stop(&w.m);
  if (r != 0) return r;
  int done = 0;
  for (size_t i = 0; i < n; i++)
    if (fs[i]->status != CORO_PENDING) done++;
  return done;
}

/* ---- wait_for ---------------------------------------------------------------- */

int coro_wait_for(coro_future *f, int64_t timeout_ms, void **result) {
  if (f == NULL || timeout_ms < CORO_FOREVER) return CORO_EINVAL;
  coro__task *t = coro__task_for_wait();
  if (t == NULL || f->loop != t->fut.loop) return CORO_EPERM;
  if (f == &t->fut) return CORO_EDEADLK;
  if (timeout_ms == CORO_FOREVER || f->status != CORO_PENDING)
    return coro_await(f, result);
  if (result != NULL) *result = NULL;
  if (timeout_ms == 0) {
    /* No time at all: cancel f and wait until it has finished. Cancelling
     * the caller meanwhile ends the wait (f goes on being cancelled). */
    coro_cancel(f);
    int r = coro_wait(&f, 1, CORO_ALL_COMPLETED, CORO_FOREVER);
    if (r < 0) return r;
    r = coro_await(f, result);
    return r == CORO_ECANCELED ? CORO_ETIMEDOUT : r;
  }
  /* asyncio 3.12: a timeout scope around the await. On timeout the scope
   * cancels us, the await passes it on to f and waits for f's end. */
  coro_timeout scope;
  int r = coro_timeout_enter(&scope, timeout_ms);
  if (r != 0) return r;
  r = coro_await(f, result);
  return coro_timeout_exit(&scope, r);
}

/* ---- as_completed ------------------------------------------------------------ */

struct coro_as_completed {
  multi m;
  coro_future **fs;     /* our references to the futures */
  size_t *order;        /* indices in completion order */
  size_t head, tail;    /* order[head..tail) not returned yet */
  coro__timer timer;
  coro_loop *loop;
  int expired;
  int waiting;          /* the owner is suspended in next */
};

static void ac_on_done(multi *m, size_t idx, coro_future *f) {
  coro_as_completed *it = (coro_as_completed *)m;
  (void)f;
  it->order[it->tail++] = idx;
  if (it->waiting) coro__task_wake(m->task, 0);
}

static void ac_timer_cb(coro__timer *tm) {
  coro_as_completed *it = coro__container_of(tm, coro_as_completed, timer);
  it->expired = 1;
  /* As asyncio: what finishes after the timeout is not given any more. */
  for (size_t i = 0; i < it->m.n; i++)
    if (coro__queue_linked(&it->m.ws[i].w.node))
      coro__future_remove_waiter(&it->m.ws[i].w);
  if (it->waiting) coro__task_wake(it->m.task, 0);
}

int coro_as_completed_new(coro_as_completed **out, coro_future *const *fs,
                          size_t n, int64_t timeout_ms) {
  if (out == NULL || timeout_ms < CORO_FOREVER) return CORO_EINVAL;
  coro__task *t;
  int r = multi_check(fs, n, &t);
  if (r != 0) return r;
  coro_as_completed *it = coro__calloc(1, sizeof(*it));
  if (it == NULL) return CORO_ENOMEM;
  it->fs = coro__malloc((n ? n : 1) * sizeof(*it->fs));
  it->order = coro__malloc((n ? n : 1) * sizeof(*it->order));
  if (it->fs == NULL || it->order == NULL) goto nomem;
  for (size_t i = 0; i < n; i++) it->fs[i] = fs[i];
  r = multi_start(&it->m, t, it->fs, n, ac_on_done);
  if (r != 0) goto nomem;
  for (size_t i = 0; i < n; i++) {
    coro_future_retain(it->fs[i]);
    if (it->fs[i]->status != CORO_PENDING) it->order[it->tail++] = i;
  }
  coro__timer_init(&it->timer, ac_timer_cb);
  it->loop = t->fut.loop;
  if (timeout_ms != CORO_FOREVER) {
    r = coro__timer_start(t->fut.loop, &it->timer, (uint64_t)timeout_ms);
    if (r != 0) {
      coro_as_completed_free(it);
      return r;
    }
  }
  *out = it;
  return 0;
nomem:
  coro__free(it->fs);
  coro__free(it->order);
  coro__free(it);
  return CORO_ENOMEM;
}

int coro_as_completed_next(coro_as_completed *it, coro_future **done) {
  if (it == NULL || done == NULL) return CORO_EINVAL;
  coro__task *t = coro__task_for_wait();
  if (t == NULL || t != it->m.task) return CORO_EPERM;
  for (;;) {
    if (it->head < it->tail) {
      *done = it->fs[it->order[it->head++]];
      coro__future_observed(*done);
      return 0;
    }
    if (it->head == it->m.n) return CORO_EOF;
    if (it->expired) return CORO_ETIMEDOUT;
    it->waiting = 1;
    int r = coro__task_suspend(t, coro__cancel_abort, NULL, "as_completed");
    it->waiting = 0;
    if (r != 0) return r;
  }
}

void coro_as_completed_free(coro_as_completed *it) {
  if (it == NULL) return;
  if (it->loop != NULL) coro__timer_stop(it->loop, &it->timer);
  multi_stop(&it->m);
  for (size_t i = 0; i < it->m.n; i++) coro_future_release(it->fs[i]);
  coro__free(it->fs);
  coro__free(it->order);
  coro__free(it);
}
