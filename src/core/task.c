/* SPDX-License-Identifier: MIT */
/* Tasks: spawning, stepping, the suspension protocol, cancellation, await,
 * sleep and yield.
 *
 * A task's life: CREATED (first step queued) -> RUNNING -> WAITING (in some
 * wait) -> READY (woken, step queued) -> RUNNING -> ... -> DONE. It gets a
 * fiber (a pooled stack with a parked context) at its first step and gives
 * it back when its function returns, so a task that is spawned, runs and
 * finishes without others in between reuses one warm stack.
 *
 * Cancellation follows asyncio (Task.cancel): coro_cancel is a request.
 * If the task is in a wait, the wait's cancel hook decides (see task.h):
 * abort the wait (the task resumes with -ECANCELED), pass the request on to
 * what it waits for, or keep it for the next suspension. Otherwise the
 * request is kept (must_cancel) and delivered by the next suspension, or
 * instead of the first step. Requests before delivery coalesce. */
#include <stdio.h>
#include <string.h>

#include "core/hooks.h"
#include "core/task.h"

_Thread_local int *coro__job_fail_err;

coro__task *coro__task_current(void) {
  coro_loop *loop = coro__tls_loop;
  return loop != NULL ? loop->current : NULL;
}

/* ---- spawning ------------------------------------------------------------- */

static coro__task *task_alloc(coro_loop *loop) {
  coro__task *t = loop->task_pool;
  if (t != NULL) {
    loop->task_pool = t->next_free;
    loop->ntask_pool--;
    return t;
  }
  return coro__malloc(sizeof(*t));
}

static void sleep_timer_cb(coro__timer *tm);

int coro_spawn_opts(coro_future **out, coro_fn fn, void *arg,
                    const coro_task_opts *opts) {
  if (fn == NULL) return CORO_EINVAL;
  coro_loop *loop = coro__tls_loop;
  if (loop == NULL) return CORO_EPERM;
  /* A short name is kept inline (no allocation); a long one is copied. */
  char *name = NULL;
  size_t name_len = 0;
  if (opts != NULL && opts->name != NULL) {
    name_len = strlen(opts->name);
    if (name_len >= sizeof(((coro__task *)0)->autoname)) {
      name = coro__strdup(opts->name);
      if (name == NULL) return CORO_ENOMEM;
    }
  }
  coro__task *t = task_alloc(loop);
  if (t == NULL) {
    coro__free(name);
    return CORO_ENOMEM;
  }
  coro__future_init(&t->fut, loop, CORO__FUT_TASK);
  t->step.run = coro__task_step;
  t->fn = fn;
  t->arg = arg;
  t->fiber = NULL;
  t->stack_size = loop->stack_size;
  if (opts != NULL && opts->stack_size != 0)
    t->stack_size = coro__stack_round(opts->stack_size);
  t->state = CORO__T_CREATED;
  t->must_cancel = 0;
  t->cancel_in_flight = 0;
  t->cancel_on_start = (uint8_t)loop->closing;
  t->shield_depth = 0;
  coro__queue_init(&t->scopes);
  t->fail_err = 0;
  t->cancel_requests = 0;
  t->pending_cancels = 0;
  t->wake_status = 0;
  t->wait_cancel = NULL;
  t->wait_arg = NULL;
  t->wait_what = NULL;
  t->wait_target = NULL;
  t->parent_id = loop->current != NULL ? loop->current->id : 0;
  t->born_ms = uv_now(loop->uv);
  coro__timer_init(&t->timer, sleep_timer_cb);
  t->id = ++loop->task_counter;
  t->name = name;
  if (name == NULL && name_len > 0)
    memcpy(t->autoname, opts->name, name_len + 1);
  else
    t->autoname[0] = '\0';
  coro__queue_push(&loop->tasks, &t->link);
  loop->ntasks++;
  coro__loop_ready(loop, &t->step);
  /* The loop's reference is the one coro__future_init took. */
  if (out != NULL) *out = coro_future_retain(&t->fut);
  return 0;
}

int coro_spawn(coro_future **out, coro_fn fn, void *arg) {
  return coro_spawn_opts(out, fn, arg, NULL);
}

coro_future *coro_current(void) {
  coro__task *t = coro__task_current();
  return t != NULL ? &t->fut : NULL;
}

const char *coro_task_name(const coro_future *f) {
  if (f == NULL || f->kind != CORO__FUT_TASK) return NULL;
  coro__task *t = (coro__task *)f;
  if (t->name != NULL) return t->name;
  if (t->autoname[0] == '\0')
    snprintf(t->autoname, sizeof(t->autoname), "Task-%llu",
             (unsigned long long)t->id);
  return t->autoname;
}

void *coro_fail(int err) {
  coro__task *t = coro__task_current();
  if (t != NULL)
    t->fail_err = err < 0 ? err : CORO_EINVAL;
  else if (coro__job_fail_err != NULL) /* inside an executor job */
    *coro__job_fail_err = err < 0 ? err : CORO_EINVAL;
  return NULL;
}

/* ---- running -------------------------------------------------------------- */

/* Runs on the task's fiber: the body and the outcome. */
static void task_body(coro__task *t) {
  int status;
  void *value = NULL;
  if (t->must_cancel) {
    /* Cancelled before its first step: the body never runs. */
    t->must_cancel = 0;
    t->pending_cancels = 0;
    status = CORO_ECANCELED;
  } else {
    if (t->cancel_on_start) {
      /* Spawned while the loop shuts down: it starts, and its first
       * suspension is cancelled (as trio does in a cancelled scope). */
      t->cancel_requests++;
      t->pending_cancels++;
      t->must_cancel = 1;
    }
    value = t->fn(t->arg);
    if (!coro__queue_empty(&t->scopes)) coro__scopes_task_done(t);
    t->shield_depth = 0;
    if (t->fail_err != 0) {
      status = t->fail_err;
    } else if (t->must_cancel) {
      /* A request nobody received: the result is discarded (asyncio). */
      t->must_cancel = 0;
      t->pending_cancels = 0;
      status = CORO_ECANCELED;
    } else {
      status = 0;
    }
  }
  coro_loop *loop = t->fut.loop;
  t->state = CORO__T_DONE;
  coro__queue_remove(&t->link);
  loop->ntasks--;
  coro__future_complete(&t->fut, status, value);
}

void coro__fiber_main(void *arg) {
  coro__fiber *fb = arg;
  coro__task *t;
  while ((t = fb->task) != NULL) {
    task_body(t);
    /* Park: the scheduler sees the task done and pools this fiber. */
    coro__ctx_switch(&fb->ctx, &fb->loop->sched_ctx);
  }
  coro__ctx_exit(&fb->ctx, &fb->loop->sched_ctx);
}

void coro__task_step(coro__handle *h) {
  coro__task *t = coro__container_of(h, coro__task, step);
  coro_loop *loop = t->fut.loop;
  CORO__ASSERT(loop == coro__tls_loop);
  CORO__ASSERT(loop->current == NULL); /* steps run from the scheduler */
  CORO__ASSERT(t->state == CORO__T_CREATED || t->state == CORO__T_READY);
  if (t->fiber == NULL) {
    if (t->must_cancel) {
      /* Cancelled before it ever ran: finish without a stack. */
      t->must_cancel = 0;
      t->state = CORO__T_DONE;
      coro__queue_remove(&t->link);
      loop->ntasks--;
      coro__future_complete(&t->fut, CORO_ECANCELED, NULL);
      coro_future_release(&t->fut);
      return;
    }
    coro__fiber *fb = coro__fiber_get(loop, t->stack_size);
    if (fb == NULL) {
      t->state = CORO__T_DONE;
      coro__queue_remove(&t->link);
      loop->ntasks--;
      coro__future_complete(&t->fut, CORO_ENOMEM, NULL);
      coro_future_release(&t->fut);
      return;
    }
    fb->task = t;
    t->fiber = fb;
  }
  CORO__ASSERT(t->fiber->task == t && t->fiber->loop == loop);
  t->state = CORO__T_RUNNING;
  t->fiber->started = 1;
  loop->current = t;
  loop->steps++;
  if (CORO__UNLIKELY(loop->debug)) {
    /* Publish the step for the watchdog thread: its task, then an odd
     * sequence number; an even one once the step is over. */
    uint64_t seq = ++loop->wd_own;
    atomic_store_explicit(&loop->wd_task, t, memory_order_relaxed);
    atomic_store_explicit(&loop->wd_seq, seq, memory_order_release);
    coro__ctx_switch(&loop->sched_ctx, &t->fiber->ctx);
    atomic_store_explicit(&loop->wd_seq, ++loop->wd_own, memory_order_release);
    if (atomic_load_explicit(&loop->wd_seen_seq, memory_order_acquire) == seq)
      coro__slow_step_end(loop, &t->fut);
  } else {
    coro__ctx_switch(&loop->sched_ctx, &t->fiber->ctx);
  }
  loop->current = NULL;
  if (t->state == CORO__T_DONE) {
    coro__fiber *fb = t->fiber;
    t->fiber = NULL;
    fb->task = NULL;
    coro__fiber_put(loop, fb);
    coro_future_release(&t->fut); /* the loop's reference */
  }
}

/* ---- the suspension protocol ---------------------------------------------- */

void coro__task_wake(coro__task *t, int status) {
  CORO__ASSERT(t->fut.loop == coro__tls_loop); /* only its loop wakes it */
  if (t->state != CORO__T_WAITING) return;
  t->state = CORO__T_READY;
  t->wake_status = status;
  coro__loop_ready(t->fut.loop, &t->step);
}

/* Hand a cancellation request to the current wait's hook. */
static void deliver_cancel(coro__task *t) {
  CORO__ASSERT(t->wait_cancel != NULL);
  switch (t->wait_cancel(t, t->wait_arg)) {
  case CORO__CANCEL_ABORT:
    t->wait_cancel = NULL;
    t->cancel_in_flight = 1;
    if (t->state == CORO__T_WAITING)
      coro__task_wake(t, CORO_ECANCELED);
    else
      t->wake_status = CORO_ECANCELED;
    break;
  case CORO__CANCEL_PASSED:
    break;
  case CORO__CANCEL_LATER:
    t->wait_cancel = NULL;
    t->must_cancel = 1;
    t->pending_cancels++;
    break;
  default: /* a hook answers one of the three */
    CORO__UNREACHABLE();
  }
}

int coro__task_suspend(coro__task *t, coro__cancel_fn cancel, void *arg,
                       const char *what) {
  coro_loop *loop = t->fut.loop;
  /* Only the running task suspends itself, on its own loop's thread, and
   * every wait says how it is cancelled. READY: woken while it set up the
   * wait. */
  CORO__ASSERT(loop == coro__tls_loop && loop->current == t);
  CORO__ASSERT(t->state == CORO__T_RUNNING || t->state == CORO__T_READY);
  CORO__ASSERT(cancel != NULL);
  CORO__ASSERT(t->fiber != NULL);
  t->wait_cancel = cancel;
  t->wait_arg = arg;
  t->wait_what = what;
  if (t->state == CORO__T_RUNNING) {
    t->wake_status = 0;
    t->state = CORO__T_WAITING;
  } /* else already woken while setting up the wait: switch out anyway */
  if (t->must_cancel && t->shield_depth == 0) {
    t->must_cancel = 0;
    t->pending_cancels = 0;
    deliver_cancel(t);
  }
  coro__ctx_switch(&t->fiber->ctx, &loop->sched_ctx);
  /* A task dump switches here to take this task's backtrace on its own
   * stack, then back (dump.c); the task stays suspended meanwhile. */
  while (CORO__UNLIKELY(loop->probe_task == t)) coro__dump_probe(loop, t);
  /* Resumed by coro__task_step. */
  CORO__ASSERT(t->state == CORO__T_RUNNING && loop->current == t);
  t->wait_cancel = NULL;
  t->wait_arg = NULL;
  t->wait_what = NULL;
  t->wait_target = NULL;
  t->cancel_in_flight = 0;
  return t->wake_status;
}

/* ---- cancellation ---------------------------------------------------------- */

int coro_cancel(coro_future *f) {
  if (f == NULL) return CORO_EINVAL;
  if (f->loop == NULL || f->loop != coro__tls_loop) return CORO_EPERM;
  if (f->status != CORO_PENDING) return CORO_EALREADY;
  if (f->kind != CORO__FUT_TASK) {
    coro__future_complete(f, CORO_ECANCELED, NULL);
    return 0;
  }
  coro__task *t = coro__task_of(f);
  t->cancel_requests++;
  if (t->cancel_in_flight) return 0; /* coalesced with the one on its way */
  if (t->shield_depth == 0 &&
      (t->state == CORO__T_WAITING || t->state == CORO__T_READY) &&
      t->wait_cancel != NULL) {
    deliver_cancel(t);
  } else {
    /* Kept for the next suspension (or instead of the first step, or for
     * after a shielded region). */
    t->must_cancel = 1;
    t->pending_cancels++;
  }
  return 0;
}

int coro_cancelling(const coro_future *f) {
  if (f == NULL) return CORO_EINVAL;
  if (f->kind != CORO__FUT_TASK) return 0;
  return ((const coro__task *)f)->cancel_requests;
}

int coro_uncancel(coro_future *f) {
  if (f == NULL) return CORO_EINVAL;
  if (f->kind != CORO__FUT_TASK) return 0;
  coro__task *t = coro__task_of(f);
  if (t->cancel_requests > 0) t->cancel_requests--;
  /* Withdraw a request not delivered yet (3.13 does so when the count
   * reaches 0; counting the kept requests also covers a count that stays
   * above 0 because of old requests that were delivered and handled). */
  if (t->pending_cancels > 0) t->pending_cancels--;
  if (t->pending_cancels == 0 || t->cancel_requests == 0) {
    t->must_cancel = 0;
    t->pending_cancels = 0;
  }
  return t->cancel_requests;
}

/* ---- await ----------------------------------------------------------------- */

typedef struct await_waiter {
  coro__waiter w;
  coro__task *task;
  coro_future *f;
} await_waiter;

static void await_notify(coro__waiter *w, coro_future *f) {
  await_waiter *aw = coro__container_of(w, await_waiter, w);
  coro__task_wake(aw->task, f->status);
}

static int await_cancel(coro__task *t, void *arg) {
  await_waiter *aw = arg;
  if (t->state == CORO__T_READY) {
    /* The future completed and woke us, but we have not run yet: asyncio
     * delivers the cancellation; the outcome stays in the future. */
    return CORO__CANCEL_ABORT;
  }
  /* Pass it on: a promise ends cancelled at once (and wakes us through
   * await_notify); a task gets the request and we wait for its outcome. */
  coro_cancel(aw->f);
  return CORO__CANCEL_PASSED;
}

int coro_await(coro_future *f, void **result) {
  coro__task *t = coro__task_current();
  if (f == NULL) return CORO_EINVAL;
  if (t == NULL || f->loop != t->fut.loop) return CORO_EPERM;
  if (f == &t->fut) return CORO_EDEADLK;
  if (f->status == CORO_PENDING) {
    await_waiter aw;
    aw.w.notify = await_notify;
    aw.task = t;
    aw.f = coro_future_retain(f); /* f must outlive the wait */
    t->wait_target = f;
    coro__future_add_waiter(f, &aw.w);
    int r = coro__task_suspend(t, await_cancel, &aw, "await");
    if (coro__queue_linked(&aw.w.node)) coro__future_remove_waiter(&aw.w);
    if (f->status != CORO_PENDING) coro__future_observed(f);
    if (result != NULL) *result = r == 0 ? f->value : NULL;
    coro_future_release(f);
    return r;
  }
  coro__future_observed(f);
  if (result != NULL) *result = f->status == 0 ? f->value : NULL;
  return f->status;
}

/* ---- sleep and yield ------------------------------------------------------- */

static void sleep_timer_cb(coro__timer *tm) {
  coro__task *t = coro__container_of(tm, coro__task, timer);
  coro__task_wake(t, 0);
}

static int sleep_cancel(coro__task *t, void *arg) {
  (void)arg;
  coro__timer_stop(t->fut.loop, &t->timer);
  return CORO__CANCEL_ABORT;
}

int coro__cancel_abort(coro__task *t, void *arg) {
  (void)t;
  (void)arg;
  return CORO__CANCEL_ABORT;
}

int coro_sleep(int64_t ms) {
  coro__task *t = coro__task_current();
  if (ms < CORO_FOREVER) return CORO_EINVAL;
  if (t == NULL) return CORO_EPERM;
  if (ms == 0) return coro_yield();
  if (ms == CORO_FOREVER)
    return coro__task_suspend(t, coro__cancel_abort, NULL, "sleep");
  int r = coro__timer_start(t->fut.loop, &t->timer, (uint64_t)ms);
  if (r != 0) return r;
  return coro__task_suspend(t, sleep_cancel, NULL, "sleep");
}

int coro_yield(void) {
  coro__task *t = coro__task_current();
  if (t == NULL) return CORO_EPERM;
  /* Queue our own step, then wait: we resume in the next iteration, after
   * everything that was ready before us. */
  t->state = CORO__T_WAITING;
  coro__task_wake(t, 0);
  return coro__task_suspend(t, coro__cancel_abort, NULL, "yield");
}
