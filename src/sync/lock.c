/* SPDX-License-Identifier: MIT */
/* Lock: a FIFO mutex with an owner and direct hand-off.
 *
 * A release with waiters makes the first waiter the owner at once (the
 * lock never looks free while someone waits), so nobody can barge in
 * between. If that waiter is cancelled before it runs, its cancel hook
 * hands the lock on to the next waiter, or unlocks it. */
#include "sync/sync.h"

struct coro_lock {
  coro_loop *loop;        /* of the tasks using it (sync.h) */
  coro__task *owner;      /* NULL when unlocked */
  uint64_t owner_id;      /* the owner's task id: task structs are reused */
  coro__queue waiters;    /* coro__sw.node, FIFO */
  size_t users;           /* tasks inside a wait */
  int dead;               /* freed while tasks waited (sync.h) */
};

int coro_lock_new(coro_lock **out) {
  if (out == NULL) return CORO_EINVAL;
  coro_lock *l = coro__malloc(sizeof(*l));
  if (l == NULL) return CORO_ENOMEM;
  l->loop = NULL;
  l->owner = NULL;
  l->owner_id = 0;
  coro__queue_init(&l->waiters);
  l->users = 0;
  l->dead = 0;
  *out = l;
  return 0;
}

int coro_lock_free(coro_lock *l) {
  if (l == NULL) return CORO_EINVAL;
  int r = coro__sync_free_check(l->loop, l->users);
  if (r != 0) return r;
  if (l->users == 0) {
    coro__free(l);
    return 0;
  }
  l->dead = 1;
  l->owner = NULL;
  coro__sw_wake_all(&l->waiters, CORO_EPIPE);
  return 0;
}

int coro__lock_held_by(const coro_lock *l, const coro__task *t) {
  return t != NULL && l->owner == t && l->owner_id == t->id;
}

/* The lock is free or passed on: make the first waiter the owner. */
static void hand_on(coro_lock *l) {
  coro__sw *w = coro__sw_first(&l->waiters);
  if (w == NULL) {
    l->owner = NULL;
    l->owner_id = 0;
    return;
  }
  l->owner = w->task;
  l->owner_id = w->task->id;
  coro__sw_wake(w, 0, 1);
}

void coro__lock_release(coro_lock *l) { hand_on(l); }

static int lock_cancel(coro__task *t, void *arg) {
  coro__sw *w = arg;
  (void)t;
  if (w->granted) {
    /* Made the owner, cancelled before it ran: pass the lock on. The
     * waiter's struct is still valid (the task has not resumed). */
    coro_lock *l = w->obj;
    w->granted = 0;
    hand_on(l);
  } else {
    coro__sw_unwait(w);
  }
  return CORO__CANCEL_ABORT;
}

int coro__lock_acquire(coro_lock *l, coro__task *t, int64_t ms) {
  if (l->owner == NULL && !l->dead) {
    l->owner = t;
    l->owner_id = t->id;
    return 0;
  }
  if (coro__lock_held_by(l, t)) return CORO_EDEADLK;
  if (l->dead) return CORO_EPIPE;
  if (ms == 0) return CORO_ETIMEDOUT;
  if (t->compact) return CORO_EPERM; /* it may wait only in sleep/yield/await */
  coro__sw w;
  coro__sw_init(&w, t, l);
  l->users++;
  int r = coro__sw_wait(&w, &l->waiters, ms, lock_cancel, "lock");
  /* Made the owner first or not, the lock is gone; a cancellation that
   * ended the wait first is still reported as such. */
  if (l->dead && r != CORO_ECANCELED) r = CORO_EPIPE;
  if (coro__sync_leave(&l->users, l->dead)) coro__free(l);
  return r;
}

static int acquire_check(coro_lock *l, coro__task **t) {
  if (l == NULL) return CORO_EINVAL;
  *t = coro__task_current();
  if (*t == NULL) return CORO_EPERM;
  return coro__sync_loop_at(&l->loop, l->owner != NULL || l->users != 0,
                            (*t)->fut.loop);
}

int coro_lock_acquire_timeout(coro_lock *l, int64_t ms) {
  coro__task *t;
  if (!coro__sync_ms_ok(ms)) return CORO_EINVAL;
  int r = acquire_check(l, &t);
  if (r != 0) return r;
  return coro__lock_acquire(l, t, ms);
}

int coro_lock_acquire(coro_lock *l) {
  return coro_lock_acquire_timeout(l, CORO_FOREVER);
}

int coro_lock_try_acquire(coro_lock *l) {
  coro__task *t;
  int r = acquire_check(l, &t);
  if (r != 0) return r;
  r = coro__lock_acquire(l, t, 0);
  return r == CORO_ETIMEDOUT ? CORO_EAGAIN : r;
}

int coro_lock_release(coro_lock *l) {
  if (l == NULL) return CORO_EINVAL;
  if (!coro__lock_held_by(l, coro__task_current())) return CORO_EPERM;
  hand_on(l);
  return 0;
}

int coro_lock_locked(const coro_lock *l) {
  if (l == NULL) return CORO_EINVAL;
  return l->owner != NULL;
}
