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

/* A task struct from the loop's pool (compact ones have a pool of their
 * own: they are bigger). */
static coro__task *task_alloc(coro_loop *loop, int compact) {
  coro__task **pool = compact ? &loop->ctask_pool : &loop->task_pool;
  coro__task *t = *pool;
  if (t != NULL) {
    *pool = t->next_free;
    loop->ntask_pool--;
    return t;
  }
  return coro__malloc(compact ? sizeof(coro__ctask) : sizeof(coro__task));
}

static void sleep_timer_cb(coro__timer *tm);
static inline void task_enter(coro_loop *loop, coro__task *t, coro__ctx *from,
                       coro__task *self);
#if defined(CORO__CTX_HAVE_CALL)
static void task_call(coro_loop *loop, coro__task *t, coro__task *self);
#endif

/* ---- shared stacks of compact tasks ----------------------------------------
 * Compact tasks run on shared stacks (fibers with share set). The compact
 * task whose frames are on one is its resident. A fresh compact task takes
 * loop->share: if the resident is in a compactable wait (sleep, yield,
 * await: wait_compact), its used stack [sp, top) is copied to a heap block
 * of that size and it leaves ("compacted"; the stack is its home, and homed
 * counts such tasks); otherwise a new shared stack becomes loop->share. A
 * compacted task's next step copies its frames back to the same addresses
 * on its home, compacting the resident first. A resident that is in any
 * other wait (possible only through an internal wait that does not check
 * coro__task_for_wait) cannot be compacted: homed tasks whose step comes
 * meanwhile wait in homers until it can. A shared stack that nobody is on
 * and nobody needs goes back to the fiber pool. Compaction needs the
 * assembly switch (the whole context is on the stack) and is left out under
 * ThreadSanitizer (one TSan fiber per context, not per task). */
#if defined(CORO_CTX_ASM) && !defined(CORO__TSAN)
# define COMPACT_AVAILABLE 1
#else
# define COMPACT_AVAILABLE 0
#endif

/* The saved stack pointer of a parked fiber: only the assembly context
 * keeps it where compaction can read and move it. Under ucontext no task
 * shares a stack (t->shares stays 0), so these are never reached. */
#if COMPACT_AVAILABLE
static char *parked_sp(const coro__fiber *fb) { return fb->ctx.sp; }
static void set_parked_sp(coro__fiber *fb, char *sp) { fb->ctx.sp = sp; }
#else
static char *parked_sp(const coro__fiber *fb) {
  (void)fb;
  CORO__ASSERT(0);
  return NULL;
}
static void set_parked_sp(coro__fiber *fb, char *sp) {
  (void)fb;
  (void)sp;
  CORO__ASSERT(0);
}
#endif

static int compactable(const coro__task *r) {
  return r->wait_compact &&
         (r->state == CORO__T_WAITING || r->state == CORO__T_READY);
}

/* Copy the resident of fb out. 0 or -ENOMEM (then it stays). */
static int compact_out(coro__fiber *fb) {
  coro__task *r = fb->resident;
  char *sp = parked_sp(fb);
  char *top = (char *)fb->ctx.stack_lo + fb->ctx.stack_size;
  CORO__ASSERT(sp >= (char *)fb->ctx.stack_lo && sp < top);
  size_t len = (size_t)(top - sp);
  void *buf = coro__malloc(len);
  if (buf == NULL) return CORO_ENOMEM;
  coro__ctx_stack_copy(buf, sp, len);
  coro__compact *cx = coro__task_cx(r);
  cx->saved = buf;
  cx->saved_len = (uint32_t)len;
  cx->saved_sp = sp;
  r->fiber = NULL;
  fb->resident = NULL;
  fb->task = NULL;
  fb->homed++;
  fb->clean = 0;
  fb->loop->ncompacted++;
  fb->loop->compacted_bytes += len;
  return 0;
}

static void share_wake_homers(coro_loop *loop, coro__fiber *fb) {
  coro__queue *q;
  while ((q = coro__queue_pop(&fb->homers)) != NULL)
    coro__loop_ready(loop, coro__container_of(q, coro__handle, node));
}

/* A shared stack for a compact task's first step; NULL on ENOMEM. */
static coro__fiber *share_for_new(coro_loop *loop) {
  coro__fiber *fb = loop->share;
  if (fb != NULL &&
      (fb->resident == NULL ||
       (compactable(fb->resident) && compact_out(fb) == 0))) {
    if (!fb->clean) {
      /* Left by a compacted task: start afresh. */
      coro__ctx_reset(&fb->ctx);
      fb->started = 0;
      fb->clean = 1;
    }
    return fb;
  }
  /* None yet, or its resident must stay: a new one (the old one stays in
   * loop->shares until nobody needs it). */
  fb = coro__fiber_get(loop, loop->stack_size);
  if (fb == NULL) return NULL;
  fb->share = 1;
  fb->clean = 1;
  fb->homed = 0;
  fb->resident = NULL;
  coro__queue_init(&fb->homers);
  fb->next = loop->shares;
  loop->shares = fb;
  loop->nshares++;
  loop->share = fb;
  return fb;
}

/* Give a shared stack nobody is on and nobody needs back to the pool. */
static void share_release(coro_loop *loop, coro__fiber *fb) {
  coro__fiber **pp = &loop->shares;
  while (*pp != fb) pp = &(*pp)->next;
  *pp = fb->next;
  loop->nshares--;
  fb->share = 0;
  fb->next = NULL;
  coro__fiber_put(loop, fb);
}

/* Its resident finished (the fiber is parked in fiber_main). */
static void share_left(coro_loop *loop, coro__fiber *fb) {
  fb->resident = NULL;
  fb->clean = 1;
  if (!coro__queue_empty(&fb->homers)) share_wake_homers(loop, fb);
  if (fb != loop->share && fb->homed == 0) share_release(loop, fb);
}

/* Put compacted t back on its home. 0, or 1 if its step must come again
 * (put in homers, or in the ready queue when memory ran out). */
static int share_restore(coro_loop *loop, coro__task *t) {
  coro__compact *cx = coro__task_cx(t);
  coro__fiber *fb = cx->home;
  coro__task *r = fb->resident;
  if (r != NULL) {
    if (!compactable(r)) {
      coro__queue_push(&fb->homers, &t->step.node);
      return 1;
    }
    if (compact_out(fb) != 0) {
      coro__loop_ready(loop, &t->step);
      return 1;
    }
  }
  coro__ctx_stack_copy(cx->saved_sp, cx->saved, cx->saved_len);
  set_parked_sp(fb, cx->saved_sp);
  coro__free(cx->saved);
  loop->ncompacted--;
  loop->compacted_bytes -= cx->saved_len;
  cx->saved = NULL;
  cx->saved_sp = NULL;
  cx->saved_len = 0;
  fb->homed--;
  fb->resident = t;
  fb->task = t;
  fb->clean = 0;
  fb->started = 1;
  t->fiber = fb;
  return 0;
}

int coro_spawn_opts(coro_future **out, coro_fn fn, void *arg,
                    const coro_task_opts *opts) {
  if (fn == NULL) return CORO_EINVAL;
  coro_loop *loop = coro__tls_loop;
  if (loop == NULL) return CORO_EPERM;
  unsigned flags = opts != NULL ? opts->flags : 0;
  if ((flags & ~(CORO_TASK_EAGER | CORO_TASK_COMPACT)) != 0) return CORO_EINVAL;
  if ((flags & CORO_TASK_COMPACT) && opts->stack_size != 0 &&
      coro__stack_round(opts->stack_size) != loop->stack_size)
    return CORO_EINVAL;
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
  coro__task *t = task_alloc(loop, (flags & CORO_TASK_COMPACT) != 0);
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
  t->born_ms = loop->uv->time; /* uv_now(), without the call */
  coro__timer_init(&t->timer, sleep_timer_cb);
  t->compact = (flags & CORO_TASK_COMPACT) != 0;
  t->shares = t->compact && COMPACT_AVAILABLE;
  t->wait_compact = 0;
  if (t->compact) {
    coro__compact *cx = coro__task_cx(t);
    cx->saved_len = 0;
    cx->saved = NULL;
    cx->saved_sp = NULL;
    cx->home = NULL;
  }
  t->id = ++loop->task_counter;
  t->name = name;
  if (name == NULL && name_len > 0)
    memcpy(t->autoname, opts->name, name_len + 1);
  else
    t->autoname[0] = '\0';
  coro__queue_push(&loop->tasks, &t->link);
  loop->ntasks++;
  /* The loop's reference is the one coro__future_init took. */
  if (out != NULL) *out = coro_future_retain(&t->fut);
  coro__task *self = loop->current;
  if ((flags & CORO_TASK_EAGER) && self != NULL && self->state == CORO__T_RUNNING) {
    /* Its first step, now, from this task's context: its suspension (or
     * its end) switches back here. */
    t->state = CORO__T_READY;
#if defined(CORO__CTX_HAVE_CALL)
    if (!t->shares) {
      task_call(loop, t, self);
      return 0;
    }
#endif
    task_enter(loop, t, &self->fiber->ctx, self);
    return 0;
  }
  coro__loop_ready(loop, &t->step);
  return 0;
}

int coro_spawn(coro_future **out, coro_fn fn, void *arg) {
  return coro_spawn_opts(out, fn, arg, NULL);
}

int coro_spawn_eager(coro_future **out, coro_fn fn, void *arg) {
  coro_task_opts o = {0};
  o.flags = CORO_TASK_EAGER;
  return coro_spawn_opts(out, fn, arg, &o);
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
    /* Park: whoever ran the step sees the task done and pools this fiber. */
    coro__ctx_switch(&fb->ctx, fb->loop->back);
  }
  coro__ctx_exit(&fb->ctx, fb->loop->back);
}

/* Finish a task that never got a stack (cancelled first, or no memory). */
static void task_end_stackless(coro_loop *loop, coro__task *t, int status) {
  t->state = CORO__T_DONE;
  coro__queue_remove(&t->link);
  loop->ntasks--;
  coro__future_complete(&t->fut, status, NULL);
  coro_future_release(&t->fut);
}

/* Run one step of t, switching from the context from (the scheduler's, or
 * the task self that starts t eagerly). */
static inline void task_enter(coro_loop *loop, coro__task *t,
                              coro__ctx *from, coro__task *self) {
  if (t->fiber == NULL) {
    if (t->shares && coro__task_cx(t)->saved_sp != NULL) {
      /* Compacted: its frames go back where they were. */
      if (share_restore(loop, t) != 0) return; /* its step comes again */
    } else if (t->must_cancel) {
      /* Cancelled before it ever ran: finish without a stack. */
      t->must_cancel = 0;
      task_end_stackless(loop, t, CORO_ECANCELED);
      return;
    } else {
      coro__fiber *fb = t->shares ? share_for_new(loop)
                                  : coro__fiber_get(loop, t->stack_size);
      if (fb == NULL) {
        task_end_stackless(loop, t, CORO_ENOMEM);
        return;
      }
      fb->task = t;
      t->fiber = fb;
      if (t->shares) {
        fb->resident = t;
        fb->clean = 0;
        coro__task_cx(t)->home = fb;
      }
    }
  }
  CORO__ASSERT(t->fiber->task == t && t->fiber->loop == loop);
  t->state = CORO__T_RUNNING;
  t->fiber->started = 1;
  coro__ctx *back = loop->back;
  loop->back = from;
  loop->current = t;
  loop->steps++;
  if (CORO__UNLIKELY(loop->debug) && self == NULL) {
    /* Publish the step for the watchdog thread: its task, then an odd
     * sequence number; an even one once the step is over. (An eager start
     * is part of the step of the task that spawned it.) */
    uint64_t seq = ++loop->wd_own;
    atomic_store_explicit(&loop->wd_task, t, memory_order_relaxed);
    atomic_store_explicit(&loop->wd_seq, seq, memory_order_release);
    coro__ctx_switch(from, &t->fiber->ctx);
    atomic_store_explicit(&loop->wd_seq, ++loop->wd_own, memory_order_release);
    if (atomic_load_explicit(&loop->wd_seen_seq, memory_order_acquire) == seq)
      coro__slow_step_end(loop, &t->fut);
  } else {
    coro__ctx_switch(from, &t->fiber->ctx);
  }
  loop->back = back;
  loop->current = self;
  if (t->state == CORO__T_DONE) {
    coro__fiber *fb = t->fiber;
    t->fiber = NULL;
    fb->task = NULL;
    if (fb->share)
      share_left(loop, fb);
    else
      coro__fiber_put(loop, fb);
    coro_future_release(&t->fut); /* the loop's reference */
  }
}

#if defined(CORO__CTX_HAVE_CALL)
/* An eager first step as a plain call on the new task's stack: a task that
 * finishes without suspending costs no context switch. If it suspends, its
 * switch to loop->back (the spawner's context, saved by coro__ctx_call)
 * ends the call early, and its fiber lives on as any other. */
static void fiber_eager(void *arg) {
  coro__fiber *fb = arg;
  task_body(fb->task);
  if (fb->in_call) return; /* to the spawner, through coro__ctx_call */
  /* It suspended and the spawner went on: park as coro__fiber_main does,
   * then be an ordinary fiber. */
  coro__ctx_switch(&fb->ctx, fb->loop->back);
  coro__fiber_main(fb);
}

static void task_call(coro_loop *loop, coro__task *t, coro__task *self) {
  coro__fiber *fb = coro__fiber_get(loop, t->stack_size);
  if (fb == NULL) {
    task_end_stackless(loop, t, CORO_ENOMEM);
    return;
  }
  fb->task = t;
  t->fiber = fb;
  t->state = CORO__T_RUNNING;
  fb->started = 1;
  fb->in_call = 1;
  coro__ctx *back = loop->back;
  loop->back = &self->fiber->ctx;
  loop->current = t;
  loop->steps++;
  coro__ctx_call(&self->fiber->ctx, (char *)fb->ctx.stack_lo + fb->ctx.stack_size,
                 fiber_eager, fb);
  loop->back = back;
  loop->current = self;
  if (t->state == CORO__T_DONE) {
    /* Finished inside the call: the fiber's parked context was written
     * over, so it starts afresh when next used. */
    t->fiber = NULL;
    fb->task = NULL;
    fb->in_call = 0;
    coro__ctx_reset(&fb->ctx);
    fb->started = 0;
    coro__fiber_put(loop, fb);
    coro_future_release(&t->fut); /* the loop's reference */
  }
}
#endif

void coro__task_step(coro__handle *h) {
  coro__task *t = coro__container_of(h, coro__task, step);
  coro_loop *loop = t->fut.loop;
  CORO__ASSERT(loop == coro__tls_loop);
  CORO__ASSERT(loop->current == NULL); /* steps run from the scheduler */
  CORO__ASSERT(t->state == CORO__T_CREATED || t->state == CORO__T_READY);
  task_enter(loop, t, &loop->sched_ctx, NULL);
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

/* The body of coro__task_suspend, inlined into await, sleep and yield (the
 * waits of a task per call). */
#if defined(__GNUC__)
__attribute__((always_inline))
#endif
static inline int task_suspend(coro__task *t, coro__cancel_fn cancel,
                               void *arg, const char *what) {
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
  if (CORO__UNLIKELY(t->fiber->in_call))
    t->fiber->in_call = 0; /* an eager call (task_call) ends here */
  if (t->shares && t->wait_compact && !coro__queue_empty(&t->fiber->homers))
    share_wake_homers(loop, t->fiber); /* it can be compacted now */
  if (t->state == CORO__T_RUNNING) {
    t->wake_status = 0;
    t->state = CORO__T_WAITING;
  } /* else already woken while setting up the wait: switch out anyway */
  if (t->must_cancel && t->shield_depth == 0) {
    t->must_cancel = 0;
    t->pending_cancels = 0;
    deliver_cancel(t);
  }
  coro__ctx_switch(&t->fiber->ctx, loop->back);
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
  t->wait_compact = 0;
  return t->wake_status;
}

int coro__task_suspend(coro__task *t, coro__cancel_fn cancel, void *arg,
                       const char *what) {
  return task_suspend(t, cancel, arg, what);
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

/* The record of the wait is a coro__await_rec (for a compact task, in its
 * coro__compact: nothing on the stack, so it can be compacted while it
 * awaits) and the future, t->wait_target. */
static void await_notify(coro__waiter *w, coro_future *f) {
  coro__await_rec *rec = coro__container_of(w, coro__await_rec, w);
  coro__task_wake(rec->task, f->status);
}

static int await_cancel(coro__task *t, void *arg) {
  coro_future *f = arg;
  if (t->state == CORO__T_READY) {
    /* The future completed and woke us, but we have not run yet: asyncio
     * delivers the cancellation; the outcome stays in the future. */
    return CORO__CANCEL_ABORT;
  }
  /* Pass it on: a promise ends cancelled at once (and wakes us through
   * await_notify); a task gets the request and we wait for its outcome. */
  coro_cancel(f);
  return CORO__CANCEL_PASSED;
}

int coro_await(coro_future *f, void **result) {
  coro__task *t = coro__task_current();
  if (f == NULL) return CORO_EINVAL;
  if (t == NULL || f->loop != t->fut.loop) return CORO_EPERM;
  if (f == &t->fut) return CORO_EDEADLK;
  if (f->status == CORO_PENDING) {
    coro__await_rec on_stack;
    coro__await_rec *rec = t->compact ? &coro__task_cx(t)->await : &on_stack;
    rec->w.notify = await_notify;
    rec->task = t;
    coro_future_retain(f); /* f must outlive the wait */
    t->wait_target = f;
    coro__future_add_waiter(f, &rec->w);
    t->wait_compact = 1;
    int r = task_suspend(t, await_cancel, f, "await");
    if (coro__queue_linked(&rec->w.node)) coro__future_remove_waiter(&rec->w);
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
  if (ms == CORO_FOREVER) {
    t->wait_compact = 1;
    return task_suspend(t, coro__cancel_abort, NULL, "sleep");
  }
  int r = coro__timer_start(t->fut.loop, &t->timer, (uint64_t)ms);
  if (r != 0) return r;
  t->wait_compact = 1;
  return task_suspend(t, sleep_cancel, NULL, "sleep");
}

int coro_yield(void) {
  coro__task *t = coro__task_current();
  if (t == NULL) return CORO_EPERM;
  /* Queue our own step, then wait: we resume in the next iteration, after
   * everything that was ready before us. */
  t->state = CORO__T_WAITING;
  coro__task_wake(t, 0);
  t->wait_compact = 1;
  return task_suspend(t, coro__cancel_abort, NULL, "yield");
}
