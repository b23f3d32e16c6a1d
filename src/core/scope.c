/* SPDX-License-Identifier: MIT */
/* Cancellation scopes of a task: timeout scopes (asyncio.timeout), shielded
 * regions (a trio shielded cancel scope), and shield futures
 * (asyncio.shield).
 *
 * A timeout scope follows asyncio 3.12's timeouts.py: entering records the
 * task's cancelling() count; when the deadline passes the scope cancels the
 * task (a normal request, counted); exiting a scope that fired takes its
 * request back with uncancel() and turns -ECANCELED into -ETIMEDOUT only if
 * no other request is left above the count it recorded. With nested scopes
 * of the same deadline both fire, and only the outermost (the one whose
 * uncancel gets back down to its own entry count) reports the timeout. */
#include <string.h>

#include "core/task.h"

/* ---- timeout scopes --------------------------------------------------------- */

enum { SCOPE_IDLE, SCOPE_ENTERED, SCOPE_EXPIRING, SCOPE_EXPIRED, SCOPE_EXITED };
#define SCOPE_MAGIC 0x636f746du /* "cotm" */

typedef struct scope {
  coro__timer timer;
  coro__queue link;      /* in task->scopes while entered */
  coro__task *task;
  int64_t deadline_ms;   /* CORO_FOREVER: none */
  uint32_t magic;
  int state;
  int cancelling0;       /* the task's cancelling() at entry */
} scope;

CORO__STATIC_ASSERT(sizeof(scope) <= sizeof(coro_timeout),
                    "coro_timeout must hold a scope");

static scope *scope_of(const coro_timeout *t) { return (scope *)(void *)t; }

int64_t coro_now_ms(void) { return (int64_t)(uv_hrtime() / 1000000u); }

static void scope_fire(coro__timer *tm) {
  scope *s = coro__container_of(tm, scope, timer);
  s->state = SCOPE_EXPIRING;
  coro_cancel(&s->task->fut);
}

/* (Re)arm for s->deadline_ms; a deadline already past fires on the next
 * timer run, i.e. the next iteration. */
static int scope_arm(coro_loop *loop, scope *s) {
  coro__timer_stop(loop, &s->timer);
  if (s->deadline_ms == CORO_FOREVER) return 0;
  int64_t now = coro_now_ms();
  uint64_t ms = s->deadline_ms > now ? (uint64_t)(s->deadline_ms - now) : 0;
  return coro__timer_start(loop, &s->timer, ms);
}

static int scope_active(const scope *s) {
  return s->magic == SCOPE_MAGIC &&
         (s->state == SCOPE_ENTERED || s->state == SCOPE_EXPIRING);
}

int coro_timeout_enter_at(coro_timeout *t, int64_t deadline_ms) {
  if (t == NULL || deadline_ms < CORO_FOREVER) return CORO_EINVAL;
  coro__task *task = coro__task_current();
  if (task == NULL) return CORO_EPERM;
  scope *s = scope_of(t);
  if (scope_active(s)) return CORO_EINVAL;
  memset(s, 0, sizeof(*s));
  coro__timer_init(&s->timer, scope_fire);
  s->magic = SCOPE_MAGIC;
  s->task = task;
  s->deadline_ms = deadline_ms;
  s->cancelling0 = task->cancel_requests;
  int r = scope_arm(task->fut.loop, s);
  if (r != 0) {
    s->magic = 0;
    return r;
  }
  s->state = SCOPE_ENTERED;
  coro__queue_push(&task->scopes, &s->link);
  return 0;
}

int coro_timeout_enter(coro_timeout *t, int64_t timeout_ms) {
  if (timeout_ms < CORO_FOREVER) return CORO_EINVAL;
  int64_t dl = timeout_ms == CORO_FOREVER ? CORO_FOREVER
                                          : coro_now_ms() + timeout_ms;
  return coro_timeout_enter_at(t, dl);
}

int coro_timeout_reschedule(coro_timeout *t, int64_t deadline_ms) {
  if (t == NULL || deadline_ms < CORO_FOREVER) return CORO_EINVAL;
  scope *s = scope_of(t);
  if (s->magic != SCOPE_MAGIC || s->state != SCOPE_ENTERED) return CORO_EINVAL;
  if (s->task != coro__task_current()) return CORO_EPERM;
  s->deadline_ms = deadline_ms;
  return scope_arm(s->task->fut.loop, s);
}

int64_t coro_timeout_when(const coro_timeout *t) {
  if (t == NULL || scope_of(t)->magic != SCOPE_MAGIC) return CORO_FOREVER;
  return scope_of(t)->deadline_ms;
}

int coro_timeout_expired(const coro_timeout *t) {
  if (t == NULL || scope_of(t)->magic != SCOPE_MAGIC) return 0;
  int st = scope_of(t)->state;
  return st == SCOPE_EXPIRING || st == SCOPE_EXPIRED;
}

int coro_timeout_exit(coro_timeout *t, int status) {
  if (t == NULL) return CORO_EINVAL;
  scope *s = scope_of(t);
  if (!scope_active(s)) return CORO_EINVAL;
  if (s->task != coro__task_current()) return CORO_EPERM;
  coro__timer_stop(s->task->fut.loop, &s->timer);
  coro__queue_remove(&s->link);
  if (s->state != SCOPE_EXPIRING) {
    s->state = SCOPE_EXITED;
    return status;
  }
  s->state = SCOPE_EXPIRED;
  if (coro_uncancel(&s->task->fut) <= s->cancelling0 &&
      status == CORO_ECANCELED)
    return CORO_ETIMEDOUT;
  return status;
}

void coro__scopes_task_done(coro__task *t) {
  coro__queue *q;
  while ((q = coro__queue_pop(&t->scopes)) != NULL) {
    scope *s = coro__container_of(q, scope, link);
    coro__timer_stop(t->fut.loop, &s->timer);
    s->state = s->state == SCOPE_EXPIRING ? SCOPE_EXPIRED : SCOPE_EXITED;
  }
}

/* ---- shielded regions ------------------------------------------------------- */

int coro_shield_begin(void) {
  coro__task *t = coro__task_current();
  if (t == NULL) return CORO_EPERM;
  t->shield_depth++;
  return 0;
}

int coro_shield_end(void) {
  coro__task *t = coro__task_current();
  if (t == NULL || t->shield_depth == 0) return CORO_EPERM;
  /* A kept request is delivered by the next suspension (must_cancel). */
  t->shield_depth--;
  return 0;
}

/* ---- shield futures ------------------------------------------------------- */

/* The outer future mirrors the inner one. It holds a reference to the inner
 * and one to itself while it listens to the inner; both are dropped when
 * the outer completes, whichever way (on_self runs first among its
 * waiters), so cancelling the outer unhooks it from the inner. */
typedef struct shield {
  coro_future fut;       /* first: the outer future */
  coro__waiter on_inner; /* in inner->waiters */
  coro__waiter on_self;  /* in fut.waiters, first */
  coro_future *inner;
} shield;

static void shield_inner_done(coro__waiter *w, coro_future *inner) {
  shield *s = coro__container_of(w, shield, on_inner);
  coro__future_observed(inner); /* the outer carries the outcome now */
  if (s->fut.status == CORO_PENDING)
    coro__future_complete(&s->fut, inner->status, inner->value);
}

static void shield_self_done(coro__waiter *w, coro_future *outer) {
  shield *s = coro__container_of(w, shield, on_self);
  (void)outer;
  if (coro__queue_linked(&s->on_inner.node))
    coro__future_remove_waiter(&s->on_inner);
  coro_future_release(s->inner);
  s->inner = NULL;
  coro_future_release(&s->fut); /* its reference to itself */
}

int coro_shield(coro_future **out, coro_future *f) {
  if (out == NULL || f == NULL) return CORO_EINVAL;
  coro_loop *loop = coro__tls_loop;
  if (loop == NULL || f->loop != loop) return CORO_EPERM;
  if (f->status != CORO_PENDING) {
    *out = coro_future_retain(f);
    return 0;
  }
  shield *s = coro__malloc(sizeof(*s));
  if (s == NULL) return CORO_ENOMEM;
  coro__future_init(&s->fut, loop, CORO__FUT_SHIELD);
  s->fut.refs = 2; /* the caller's, and its own while listening */
  s->inner = coro_future_retain(f);
  s->on_inner.notify = shield_inner_done;
  s->on_self.notify = shield_self_done;
  coro__future_add_waiter(&s->fut, &s->on_self);
  coro__future_add_waiter(f, &s->on_inner);
  *out = &s->fut;
  return 0;
}
