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

/* The live state of an entered scope lives in a record the loop owns (a
 * pooled allocation), not in the caller's coro_timeout: a task may return
 * without exiting a scope, and its frame, where the coro_timeout was, is
 * gone by the time the loop stops the scope's timer. */
typedef struct scope_rec {
  coro__timer timer;
  coro__queue link;        /* in task->scopes while entered */
  coro__task *task;
  int64_t deadline_ms;     /* CORO_FOREVER: none */
  int state;
  int cancelling0;         /* the task's cancelling() at entry */
  uint32_t gen;            /* bumped when the record is given back */
  const coro_timeout *owner; /* the caller's storage that entered it */
  struct scope_rec *next_free;
} scope_rec;

/* What the caller's coro_timeout holds. */
typedef struct scope_ref {
  scope_rec *rec;          /* while entered */
  uint32_t gen;            /* rec->gen at entry: another value means ended */
  uint32_t magic;
  int last_state;          /* how it ended, for expired() after exit */
  int64_t last_deadline;
} scope_ref;

CORO__STATIC_ASSERT(sizeof(scope_ref) <= sizeof(coro_timeout),
                    "coro_timeout must hold a scope_ref");

static scope_ref *ref_of(const coro_timeout *t) { return (scope_ref *)(void *)t; }

int64_t coro_now_ms(void) { return (int64_t)(uv_hrtime() / 1000000u); }

static void scope_fire(coro__timer *tm) {
  scope_rec *r = coro__container_of(tm, scope_rec, timer);
  r->state = SCOPE_EXPIRING;
  coro_cancel(&r->task->fut);
}

static scope_rec *rec_get(coro_loop *loop) {
  scope_rec *r = loop->scope_pool;
  if (r != NULL) {
    loop->scope_pool = r->next_free;
    return r;
  }
  r = coro__calloc(1, sizeof(*r));
  return r;
}

static void rec_put(coro_loop *loop, scope_rec *r) {
  r->gen++;
  r->owner = NULL;
  r->state = SCOPE_IDLE;
  r->next_free = loop->scope_pool;
  loop->scope_pool = r;
}

void coro__scopes_free(coro_loop *loop) {
  scope_rec *r;
  while ((r = loop->scope_pool) != NULL) {
    loop->scope_pool = r->next_free;
    coro__free(r);
  }
}

/* (Re)arm for r->deadline_ms, as the absolute uv_hrtime() instant at which
 * coro_now_ms() reaches it, never as a delay from now: scopes entered with
 * the same deadline then share one due time and fire together, in the
 * order they were entered (outermost first), whatever the clock did
 * between the enters. A deadline already past fires on the next
 * iteration. */
static int scope_arm(coro_loop *loop, scope_rec *r) {
  coro__timer_stop(loop, &r->timer);
  if (r->deadline_ms == CORO_FOREVER) return 0;
  uint64_t due;
  if (r->deadline_ms <= 0)
    due = 0;
  else if ((uint64_t)r->deadline_ms > UINT64_MAX / 1000000u)
    due = UINT64_MAX;
  else
    due = (uint64_t)r->deadline_ms * 1000000u;
  return coro__timer_start_at(loop, &r->timer, due);
}

/* The record of a scope the current task entered with t, or NULL. Looked
 * up by owner in the task's own list, so that a coro_timeout that was never
 * entered (uninitialised storage) is never read. */
static scope_rec *live_here(const coro_timeout *t) {
  coro__task *task = coro__task_current();
  if (task == NULL) return NULL;
  coro__queue *q;
  for (q = task->scopes.next; q != &task->scopes; q = q->next) {
    scope_rec *r = coro__container_of(q, scope_rec, link);
    if (r->owner == t) return r;
  }
  return NULL;
}

/* The record of a scope entered with t by any task, or NULL. Reads t: only
 * for storage the caller has entered at least once (documented). */
static scope_rec *live(const coro_timeout *t) {
  scope_rec *r = live_here(t);
  if (r != NULL) return r;
  const scope_ref *ref = ref_of(t);
  if (ref->magic != SCOPE_MAGIC || ref->rec == NULL) return NULL;
  if (ref->rec->gen != ref->gen || ref->rec->owner != t) return NULL;
  return ref->rec;
}

int coro_timeout_enter_at(coro_timeout *t, int64_t deadline_ms) {
  if (t == NULL || deadline_ms < CORO_FOREVER) return CORO_EINVAL;
  coro__task *task = coro__task_current();
  if (task == NULL) return CORO_EPERM;
  scope_ref *ref = ref_of(t);
  if (live_here(t) != NULL) return CORO_EINVAL;
  coro_loop *loop = task->fut.loop;
  scope_rec *r = rec_get(loop);
  if (r == NULL) return CORO_ENOMEM;
  coro__timer_init(&r->timer, scope_fire);
  r->task = task;
  r->owner = t;
  r->deadline_ms = deadline_ms;
  r->cancelling0 = task->cancel_requests;
  int rc = scope_arm(loop, r);
  if (rc != 0) {
    rec_put(loop, r);
    return rc;
  }
  r->state = SCOPE_ENTERED;
  coro__queue_push(&task->scopes, &r->link);
  memset(ref, 0, sizeof(*ref));
  ref->magic = SCOPE_MAGIC;
  ref->rec = r;
  ref->gen = r->gen;
  ref->last_state = SCOPE_ENTERED;
  ref->last_deadline = deadline_ms;
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
  scope_rec *r = live(t);
  if (r == NULL || r->state != SCOPE_ENTERED) return CORO_EINVAL;
  if (r->task != coro__task_current()) return CORO_EPERM;
  r->deadline_ms = deadline_ms;
  ref_of(t)->last_deadline = deadline_ms;
  return scope_arm(r->task->fut.loop, r);
}

int64_t coro_timeout_when(const coro_timeout *t) {
  if (t == NULL) return CORO_FOREVER;
  scope_rec *r = live_here(t);
  if (r == NULL && ref_of(t)->magic != SCOPE_MAGIC) return CORO_FOREVER;
  if (r == NULL) r = live(t);
  return r != NULL ? r->deadline_ms : ref_of(t)->last_deadline;
}

int coro_timeout_expired(const coro_timeout *t) {
  if (t == NULL) return 0;
  scope_rec *r = live_here(t);
  if (r == NULL && ref_of(t)->magic != SCOPE_MAGIC) return 0;
  if (r == NULL) r = live(t);
  int st = r != NULL ? r->state : ref_of(t)->last_state;
  return st == SCOPE_EXPIRING || st == SCOPE_EXPIRED;
}

int coro_timeout_exit(coro_timeout *t, int status) {
  if (t == NULL) return CORO_EINVAL;
  scope_ref *ref = ref_of(t);
  scope_rec *r = live(t);
  if (r == NULL) return CORO_EINVAL;
  coro__task *task = r->task;
  if (task != coro__task_current()) return CORO_EPERM;
  coro_loop *loop = task->fut.loop;
  coro__timer_stop(loop, &r->timer);
  coro__queue_remove(&r->link);
  int fired = r->state == SCOPE_EXPIRING;
  int cancelling0 = r->cancelling0;
  ref->last_state = fired ? SCOPE_EXPIRED : SCOPE_EXITED;
  ref->last_deadline = r->deadline_ms;
  ref->rec = NULL;
  rec_put(loop, r);
  if (fired && coro_uncancel(&task->fut) <= cancelling0 &&
      status == CORO_ECANCELED)
    return CORO_ETIMEDOUT;
  return status;
}

void coro__scopes_task_done(coro__task *t) {
  coro__queue *q;
  while ((q = coro__queue_pop(&t->scopes)) != NULL) {
    scope_rec *r = coro__container_of(q, scope_rec, link);
    coro__timer_stop(t->fut.loop, &r->timer);
    rec_put(t->fut.loop, r);
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
