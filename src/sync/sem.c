/* SPDX-License-Identifier: MIT */
/* Semaphore and bounded semaphore with direct hand-off: a release while
 * tasks wait gives the unit to the first of them (value stays 0), so a
 * newcomer cannot take it first (gh-90155). A waiter handed a unit and
 * cancelled before it runs gives it to the next waiter or back to the
 * count. */
#include <limits.h>

#include "sync/sync.h"

struct coro_sem {
  coro_loop *loop;
  int value;              /* units available */
  int bound;              /* bounded: the initial value; else -1 */
  coro__queue waiters;    /* coro__sw.node, FIFO */
  size_t users;
  int dead;               /* freed while tasks waited (sync.h) */
};

static int sem_new(coro_sem **out, int value, int bounded) {
  if (out == NULL || value < 0) return CORO_EINVAL;
  coro_sem *s = coro__malloc(sizeof(*s));
  if (s == NULL) return CORO_ENOMEM;
  s->loop = NULL;
  s->value = value;
  s->bound = bounded ? value : -1;
  coro__queue_init(&s->waiters);
  s->users = 0;
  s->dead = 0;
  *out = s;
  return 0;
}

int coro_sem_new(coro_sem **out, int value) { return sem_new(out, value, 0); }
int coro_bsem_new(coro_sem **out, int value) { return sem_new(out, value, 1); }

int coro_sem_free(coro_sem *s) {
  if (s == NULL) return CORO_EINVAL;
  int r = coro__sync_free_check(s->loop, s->users);
  if (r != 0) return r;
  if (s->users == 0) {
    coro__free(s);
    return 0;
  }
  s->dead = 1;
  coro__sw_wake_all(&s->waiters, CORO_EPIPE);
  return 0;
}

/* One unit to give: to the first waiter, else to the count. */
static void give(coro_sem *s) {
  coro__sw *w = coro__sw_first(&s->waiters);
  if (w != NULL)
    coro__sw_wake(w, 0, 1);
  else
    s->value++;
}

static int sem_cancel(coro__task *t, void *arg) {
  coro__sw *w = arg;
  (void)t;
  if (w->granted) {
    w->granted = 0;
    give(w->obj);
  } else {
    coro__sw_unwait(w);
  }
  return CORO__CANCEL_ABORT;
}

int coro_sem_acquire_timeout(coro_sem *s, int64_t ms) {
  if (s == NULL || !coro__sync_ms_ok(ms)) return CORO_EINVAL;
  coro__task *t = coro__task_for_wait();
  if (t == NULL) return CORO_EPERM;
  int r = coro__sync_loop_at(&s->loop, s->users != 0, t->fut.loop);
  if (r != 0) return r;
  if (s->dead) return CORO_EPIPE;
  if (s->value > 0) { /* no waiter can be ahead: they would hold it */
    s->value--;
    return 0;
  }
  if (ms == 0) return CORO_ETIMEDOUT;
  coro__sw w;
  coro__sw_init(&w, t, s);
  s->users++;
  r = coro__sw_wait(&w, &s->waiters, ms, sem_cancel, "semaphore");
  /* A unit of a freed semaphore is nothing. */
  if (s->dead && r != CORO_ECANCELED) r = CORO_EPIPE;
  if (coro__sync_leave(&s->users, s->dead)) coro__free(s);
  return r;
}

int coro_sem_acquire(coro_sem *s) {
  return coro_sem_acquire_timeout(s, CORO_FOREVER);
}

int coro_sem_try_acquire(coro_sem *s) {
  if (s == NULL) return CORO_EINVAL;
  if (coro__task_current() == NULL) return CORO_EPERM;
  int r = coro_sem_acquire_timeout(s, 0);
  return r == CORO_ETIMEDOUT ? CORO_EAGAIN : r;
}

int coro_sem_release(coro_sem *s) {
  if (s == NULL) return CORO_EINVAL;
  int r = coro__sync_loop(&s->loop, s->users != 0);
  if (r != 0) return r;
  if (coro__queue_empty(&s->waiters)) {
    if (s->bound >= 0 && s->value >= s->bound) return (-EOVERFLOW);
    if (s->value == INT_MAX) return (-EOVERFLOW);
  }
  give(s);
  return 0;
}

int coro_sem_value(const coro_sem *s) {
  if (s == NULL) return CORO_EINVAL;
  return s->value;
}

int coro_sem_locked(const coro_sem *s) {
  if (s == NULL) return CORO_EINVAL;
  return s->value == 0;
}
