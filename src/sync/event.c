/* SPDX-License-Identifier: MIT */
/* Event: a flag; set wakes every waiter. A waiter woken by set returns 0
 * even if the flag is cleared before it runs (asyncio test_clear_with_
 * waiters); a wake-up holds nothing, so cancelling a woken waiter has
 * nothing to pass on. */
#include "sync/sync.h"

struct coro_event {
  coro_loop *loop;
  int set;
  coro__queue waiters;    /* coro__sw.node, FIFO */
  size_t users;
  int dead;               /* freed while tasks waited (sync.h) */
};

int coro_event_new(coro_event **out) {
  if (out == NULL) return CORO_EINVAL;
  coro_event *e = coro__malloc(sizeof(*e));
  if (e == NULL) return CORO_ENOMEM;
  e->loop = NULL;
  e->set = 0;
  coro__queue_init(&e->waiters);
  e->users = 0;
  e->dead = 0;
  *out = e;
  return 0;
}

int coro_event_free(coro_event *e) {
  if (e == NULL) return CORO_EINVAL;
  int r = coro__sync_free_check(e->loop, e->users);
  if (r != 0) return r;
  if (e->users == 0) {
    coro__free(e);
    return 0;
  }
  e->dead = 1;
  coro__sw_wake_all(&e->waiters, CORO_EPIPE);
  return 0;
}

int coro_event_set(coro_event *e) {
  if (e == NULL) return CORO_EINVAL;
  int r = coro__sync_loop(&e->loop, e->users != 0);
  if (r != 0) return r;
  e->set = 1;
  coro__sw *w;
  while ((w = coro__sw_first(&e->waiters)) != NULL) coro__sw_wake(w, 0, 0);
  return 0;
}

int coro_event_clear(coro_event *e) {
  if (e == NULL) return CORO_EINVAL;
  int r = coro__sync_loop(&e->loop, e->users != 0);
  if (r != 0) return r;
  e->set = 0;
  return 0;
}

int coro_event_is_set(const coro_event *e) {
  if (e == NULL) return CORO_EINVAL;
  return e->set;
}

int coro_event_wait_timeout(coro_event *e, int64_t ms) {
  if (e == NULL || !coro__sync_ms_ok(ms)) return CORO_EINVAL;
  coro__task *t = coro__task_for_wait();
  if (t == NULL) return CORO_EPERM;
  int r = coro__sync_loop_at(&e->loop, e->users != 0, t->fut.loop);
  if (r != 0) return r;
  if (e->dead) return CORO_EPIPE;
  if (e->set) return 0;
  if (ms == 0) return CORO_ETIMEDOUT;
  coro__sw w;
  coro__sw_init(&w, t, e);
  e->users++;
  r = coro__sw_wait(&w, &e->waiters, ms, coro__sw_cancel_abort, "event");
  if (e->dead && r != CORO_ECANCELED) r = CORO_EPIPE;
  if (coro__sync_leave(&e->users, e->dead)) coro__free(e);
  return r;
}

int coro_event_wait(coro_event *e) {
  return coro_event_wait_timeout(e, CORO_FOREVER);
}
