/* SPDX-License-Identifier: MIT */
/* Condition variable bound to a lock, asyncio 3.13 semantics.
 *
 * wait releases the lock, waits for a notify, and re-acquires the lock
 * before it returns, whatever ended the wait (cancellation included: it
 * keeps retrying and reports -ECANCELED once it holds the lock again).
 * notify hands a notification to the first waiters. The 3.13 fix for the
 * lost wake-up (gh-112202): a waiter notified and cancelled before it runs
 * gives the notification to the next waiter at once (its cancel hook); one
 * that fails later, while re-acquiring the lock, notifies another waiter
 * before it returns (a spurious wake-up is allowed, a lost one is not). */
#include "sync/sync.h"

struct coro_cond {
  coro_loop *loop;
  coro_lock *lock;
  int own_lock;           /* made by coro_cond_new: freed with it */
  coro__queue waiters;    /* coro__sw.node, FIFO */
  size_t users;
  int dead;               /* freed while tasks waited (sync.h) */
};

int coro_cond_new(coro_cond **out, coro_lock *lock) {
  if (out == NULL) return CORO_EINVAL;
  coro_cond *c = coro__malloc(sizeof(*c));
  if (c == NULL) return CORO_ENOMEM;
  c->own_lock = 0;
  if (lock == NULL) {
    int r = coro_lock_new(&lock);
    if (r != 0) {
      coro__free(c);
      return r;
    }
    c->own_lock = 1;
  }
  c->loop = NULL;
  c->lock = lock;
  coro__queue_init(&c->waiters);
  c->users = 0;
  c->dead = 0;
  *out = c;
  return 0;
}

/* Waiters of a freed condition wake with -EPIPE. Those with a lock of
 * the caller's take it back as after every wait; the condition's own lock
 * goes with it (freed now: its waiters, tasks re-acquiring it, get -EPIPE
 * too), so they return without it. */
int coro_cond_free(coro_cond *c) {
  if (c == NULL) return CORO_EINVAL;
  int r = coro__sync_free_check(c->loop, c->users);
  if (r != 0) return r;
  if (c->own_lock && (r = coro_lock_free(c->lock)) != 0) return r;
  if (c->users == 0) {
    coro__free(c);
    return 0;
  }
  c->dead = 1;
  coro__sw_wake_all(&c->waiters, CORO_EPIPE);
  return 0;
}

coro_lock *coro_cond_lock(const coro_cond *c) {
  return c != NULL ? c->lock : NULL;
}

static int notify_n(coro_cond *c, int n) {
  int k = 0;
  coro__sw *w;
  while (k < n && (w = coro__sw_first(&c->waiters)) != NULL) {
    coro__sw_wake(w, 0, 1);
    k++;
  }
  return k;
}

static int cond_cancel(coro__task *t, void *arg) {
  coro__sw *w = arg;
  (void)t;
  if (w->granted) {
    /* Notified, cancelled before it ran: the next waiter gets it. */
    w->granted = 0;
    notify_n(w->obj, 1);
  } else {
    coro__sw_unwait(w);
  }
  return CORO__CANCEL_ABORT;
}

static int check(coro_cond *c, coro__task **t) {
  if (c == NULL) return CORO_EINVAL;
  *t = coro__task_for_wait();
  if (*t == NULL) return CORO_EPERM;
  int r = coro__sync_loop(&c->loop, c->users != 0);
  if (r != 0) return r;
  if (c->dead) return CORO_EPIPE;
  if (!coro__lock_held_by(c->lock, *t)) return CORO_EPERM;
  return 0;
}

int coro_cond_wait_timeout(coro_cond *c, int64_t ms) {
  if (!coro__sync_ms_ok(ms)) return CORO_EINVAL;
  coro__task *t;
  int r = check(c, &t);
  if (r != 0) return r;
  if (ms == 0) return CORO_ETIMEDOUT;
  coro_lock *lock = c->lock;
  coro__sw w;
  coro__sw_init(&w, t, c);
  c->users++;
  coro__lock_release(lock);
  r = coro__sw_wait(&w, &c->waiters, ms, cond_cancel, "condition");
  int notified = w.granted;
  /* Take the lock back, whatever happened; a cancellation meanwhile is
   * reported after. The condition's own lock is gone with a freed
   * condition: nothing to take back. */
  while (!(c->dead && c->own_lock)) {
    int r2 = coro__lock_acquire(lock, t, CORO_FOREVER);
    if (r2 == 0 || r2 == CORO_EPIPE) break;
    if (r2 == CORO_ECANCELED) r = CORO_ECANCELED;
  }
  if (c->dead) {
    if (r != CORO_ECANCELED) r = CORO_EPIPE;
  } else if (r != 0 && notified) {
    notify_n(c, 1);
  }
  if (coro__sync_leave(&c->users, c->dead)) coro__free(c);
  return r;
}

int coro_cond_wait(coro_cond *c) {
  return coro_cond_wait_timeout(c, CORO_FOREVER);
}

int coro_cond_wait_for_timeout(coro_cond *c, int (*pred)(void *arg),
                               void *arg, int64_t ms) {
  if (c == NULL || pred == NULL || !coro__sync_ms_ok(ms)) return CORO_EINVAL;
  if (pred(arg)) return 0;
  coro__task *t;
  int r = check(c, &t);
  if (r != 0) return r;
  /* Beyond 2^40 ms (35 years) the nanosecond deadline could overflow: no
   * limit (no wait that long ends in practice). */
  if (ms > ((int64_t)1 << 40)) ms = CORO_FOREVER;
  uint64_t deadline = 0;
  if (ms > 0) deadline = uv_hrtime() + (uint64_t)ms * 1000000u;
  for (;;) {
    int64_t left = ms;
    if (ms > 0) {
      uint64_t now = uv_hrtime();
      left = now >= deadline ? 0 : (int64_t)((deadline - now + 999999u) / 1000000u);
    }
    r = coro_cond_wait_timeout(c, left);
    if (r == CORO_EPIPE) return r; /* freed: c is gone */
    if (pred(arg)) return r == CORO_ECANCELED ? r : 0;
    if (r != 0) return r;
  }
}

int coro_cond_wait_for(coro_cond *c, int (*pred)(void *arg), void *arg) {
  return coro_cond_wait_for_timeout(c, pred, arg, CORO_FOREVER);
}

int coro_cond_notify(coro_cond *c, int n) {
  if (c == NULL || n < 0) return CORO_EINVAL;
  int r = coro__sync_loop(&c->loop, c->users != 0);
  if (r != 0) return r;
  if (!coro__lock_held_by(c->lock, coro__task_current())) return CORO_EPERM;
  return notify_n(c, n);
}

int coro_cond_notify_all(coro_cond *c) { return coro_cond_notify(c, INT32_MAX); }
