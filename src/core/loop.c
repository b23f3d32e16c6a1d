/* SPDX-License-Identifier: MIT */
/* The loop and scheduler: coro_run, one iteration, shutdown, fibers.
 *
 * One iteration (asyncio's _run_once, on libuv):
 *   1. uv_run: UV_RUN_NOWAIT when handles are ready, else UV_RUN_ONCE
 *      (blocks until a timer or I/O). libuv callbacks only queue handles.
 *   2. Run a snapshot of the ready queue: exactly the handles queued before
 *      the snapshot, FIFO. What they queue waits for the next iteration, so
 *      a task that keeps yielding cannot starve timers or I/O.
 * While the ready queue is non-empty an idle handle is active, so that a
 * timer callback that queues work inside uv_run(UV_RUN_ONCE) makes libuv
 * poll with a zero timeout instead of blocking. */
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/hooks.h"
#include "core/inbox.h"
#include "core/task.h"

_Thread_local coro_loop *coro__tls_loop;
static atomic_ullong loop_gens;

/* Pooled fibers kept by a loop beyond which freed ones are destroyed (their
 * stacks go back to the process-wide stack cache). */
#define FIBER_POOL_MAX 256
#define FIBER_OTHER_MAX 16
/* Rounds of "everything is stuck: cancel everyone again" before giving up
 * on the tasks that keep ignoring cancellation. */
#define STUCK_ROUNDS_MAX 16

coro_loop *coro_loop_current(void) { return coro__tls_loop; }

struct uv_loop_s *coro_loop_uv(coro_loop *loop) {
  return loop != NULL ? &loop->uv : NULL;
}

static void idle_cb(uv_idle_t *h) { (void)h; }

void coro__loop_ready(coro_loop *loop, coro__handle *h) {
  CORO__ASSERT(loop == coro__tls_loop); /* other threads post to the inbox */
  CORO__ASSERT(h->run != NULL);
  coro__queue_push(&loop->ready, &h->node);
  if (!loop->idle_active) {
    uv_idle_start(&loop->idle, idle_cb);
    loop->idle_active = 1;
  }
}

/* ---- fibers ----------------------------------------------------------------- */

/* The fiber struct sits at the top of its stack, 64-byte aligned. */
#define FIBER_HDR ((sizeof(coro__fiber) + 63) & ~(size_t)63)

coro__fiber *coro__fiber_get(coro_loop *loop, size_t stack_size) {
  coro__fiber *fb, **pp;
  CORO__ASSERT(loop == coro__tls_loop);
  if (stack_size == loop->stack_size) {
    if ((fb = loop->fiber_pool) != NULL) {
      loop->fiber_pool = fb->next;
      loop->nfiber_pool--;
      return fb;
    }
  } else {
    for (pp = &loop->fiber_other; (fb = *pp) != NULL; pp = &fb->next) {
      if (fb->stack.size == stack_size) {
        *pp = fb->next;
        loop->nfiber_other--;
        return fb;
      }
    }
  }
  coro__stack st;
  if (coro__stack_alloc(&st, stack_size) != 0) return NULL;
  fb = (coro__fiber *)((char *)st.lo + st.size - FIBER_HDR);
  memset(fb, 0, sizeof(*fb));
  fb->stack = st;
  fb->loop = loop;
  if (coro__ctx_make(&fb->ctx, st.lo, st.size - FIBER_HDR, coro__fiber_main,
                     fb) != 0) {
    coro__stack_free(&st);
    return NULL;
  }
  return fb;
}

static void fiber_destroy(coro_loop *loop, coro__fiber *fb) {
  if (fb->started) {
    /* Let it leave fiber_main for good (sanitizers see a clean exit). */
    fb->task = NULL;
    coro__ctx_switch(&loop->sched_ctx, &fb->ctx);
  }
  coro__ctx_destroy(&fb->ctx);
  coro__stack st = fb->stack;
  coro__stack_free(&st);
}

void coro__fiber_put(coro_loop *loop, coro__fiber *fb) {
  CORO__ASSERT(fb->task == NULL && fb->loop == loop);
  if (fb->stack.size == loop->stack_size) {
    if (loop->nfiber_pool < FIBER_POOL_MAX) {
      fb->next = loop->fiber_pool;
      loop->fiber_pool = fb;
      loop->nfiber_pool++;
      return;
    }
  } else if (loop->nfiber_other < FIBER_OTHER_MAX) {
    fb->next = loop->fiber_other;
    loop->fiber_other = fb;
    loop->nfiber_other++;
    return;
  }
  fiber_destroy(loop, fb);
}

static void fiber_pools_free(coro_loop *loop) {
  coro__fiber *fb;
  while ((fb = loop->fiber_pool) != NULL) {
    loop->fiber_pool = fb->next;
    fiber_destroy(loop, fb);
  }
  while ((fb = loop->fiber_other) != NULL) {
    loop->fiber_other = fb->next;
    fiber_destroy(loop, fb);
  }
  loop->nfiber_pool = loop->nfiber_other = 0;
}

void coro__task_pool_free(coro_loop *loop) {
  coro__task *t;
  while ((t = loop->task_pool) != NULL) {
    loop->task_pool = t->next_free;
    coro__free(t);
  }
  loop->ntask_pool = 0;
}

/* ---- iterations --------------------------------------------------------------- */

static void run_ready(coro_loop *loop) {
  coro__queue snap;
  coro__queue_init(&snap);
  coro__queue_move(&loop->ready, &snap);
  coro__queue *q;
  while ((q = coro__queue_pop(&snap)) != NULL) {
    coro__handle *h = coro__container_of(q, coro__handle, node);
    h->run(h);
  }
  if (!coro__queue_empty(&loop->reports)) coro__reports_flush(loop);
}

/* A cheap clock for the poll decision: CLOCK_MONOTONIC_COARSE is read
 * from the vDSO without touching the hardware clock (about 3 ns here). */
static uint64_t coarse_tick(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* One iteration. Returns 0, doing nothing, when nothing can ever become
 * ready again: no ready handle and no active libuv handle or request.
 *
 * With work ready, asyncio polls for I/O on every iteration; here a poll is
 * a syscall (about 1 us on this machine, ten times a task switch), so while
 * tasks are ready the loop polls (without blocking) only once the coarse
 * clock has ticked or POLL_EVERY iterations have passed since the last
 * poll. A busy loop still sees I/O within one clock tick (1-4 ms) or 64
 * iterations, whichever comes first; due timers (the loop's own heap) are
 * run on every iteration; an idle loop blocks in the poll as usual. */
#define POLL_EVERY 64
static int iterate(coro_loop *loop) {
  if (coro__queue_empty(&loop->ready)) {
    if (loop->idle_active) {
      uv_idle_stop(&loop->idle);
      loop->idle_active = 0;
    }
    if (!uv_loop_alive(&loop->uv)) return 0;
    uv_run(&loop->uv, UV_RUN_ONCE);
    loop->polled_tick = coarse_tick();
    loop->iters_since_poll = 0;
  } else {
    uint64_t tick = coarse_tick();
    if (tick != loop->polled_tick || ++loop->iters_since_poll >= POLL_EVERY) {
      uv_run(&loop->uv, UV_RUN_NOWAIT);
      loop->polled_tick = tick;
      loop->iters_since_poll = 0;
    } else if (loop->heap_len > 0 && loop->heap[0]->due <= uv_hrtime()) {
      /* Timers are ours: check them every iteration as asyncio does (one
       * clock read, only while some timer runs). */
      coro__timers_run(loop);
    }
  }
  run_ready(loop);
  return 1;
}

static void cancel_all(coro_loop *loop) {
  /* coro_cancel never runs task code, so the list cannot change under us. */
  coro__queue *q;
  for (q = loop->tasks.next; q != &loop->tasks; q = q->next) {
    coro__task *t = coro__container_of(q, coro__task, link);
    coro_cancel(&t->fut);
  }
}

/* Give up on tasks that keep ignoring cancellation while nothing else can
 * happen. Their stacks are leaked, not freed: other objects may still point
 * into them (waiters they had linked). */
static void abandon_all(coro_loop *loop) {
  coro__queue abandoned, *q;
  coro__queue_init(&abandoned);
  coro__queue_move(&loop->tasks, &abandoned);
  /* Mark them all done first, so completing one wakes none of the others. */
  for (q = abandoned.next; q != &abandoned; q = q->next) {
    coro__task *t = coro__container_of(q, coro__task, link);
    fprintf(stderr,
            "libcoro: task '%s' kept ignoring cancellation at shutdown; "
            "abandoned (its stack is leaked)\n",
            coro_task_name(&t->fut));
    coro__timer_stop(loop, &t->timer);
    if (!coro__queue_empty(&t->scopes)) coro__scopes_task_done(t);
    t->state = CORO__T_DONE;
    t->fiber = NULL;
    coro__future_observed(&t->fut); /* reported here already */
  }
  while ((q = coro__queue_pop(&abandoned)) != NULL) {
    coro__task *t = coro__container_of(q, coro__task, link);
    loop->ntasks--;
    coro__future_complete(&t->fut, CORO_EABANDONED, NULL);
    coro_future_release(&t->fut); /* the loop's reference */
  }
}

/* ---- coro_run ----------------------------------------------------------------- */

static void slots_end(coro_loop *loop) {
  for (int id = 0; id < CORO__SLOTS; id++) {
    coro__loop_slot *s = &loop->slots[id];
    if (s->at_end != NULL) s->at_end(loop, s);
    s->data = NULL;
    s->at_end = NULL;
  }
}

static void close_walk_cb(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

/* ---- sigint_cancels_main ------------------------------------------------------ */

/* A one-shot libuv watcher of SIGINT: libuv installs its handler with
 * SA_RESETHAND, so the kernel puts the default action back as it delivers
 * the first SIGINT, and a second one ends the process as an ordinary Ctrl-C
 * does, even while a task hogs the loop. The handle is unref'd: it never
 * keeps the loop alive. Installed only when SIGINT has its default action
 * (a program or a shell that ignores or handles SIGINT keeps its choice). */
struct coro__sigint {
  uv_signal_t h;
  struct sigaction old; /* SIGINT's disposition before coro_run */
  coro_future *main;
};

static void sigint_cb(uv_signal_t *h, int signum) {
  (void)signum;
  struct coro__sigint *si = h->data;
  if (si->main != NULL) coro_cancel(si->main);
}

static void sigint_close_cb(uv_handle_t *h) { coro__free(h->data); }

static void sigint_watch(coro_loop *loop) {
  struct sigaction old;
  if (sigaction(SIGINT, NULL, &old) != 0) return;
  if ((old.sa_flags & SA_SIGINFO) || old.sa_handler != SIG_DFL) return;
  struct coro__sigint *si = coro__calloc(1, sizeof(*si));
  if (si == NULL) return;
  si->old = old;
  uv_signal_init(&loop->uv, &si->h);
  si->h.data = si;
  if (uv_signal_start_oneshot(&si->h, sigint_cb, SIGINT) != 0) {
    uv_close((uv_handle_t *)&si->h, sigint_close_cb);
    return;
  }
  uv_unref((uv_handle_t *)&si->h);
  loop->sigint = si;
}

/* Stop watching and give SIGINT back its disposition from before. */
static void sigint_unwatch(coro_loop *loop) {
  struct coro__sigint *si = loop->sigint;
  if (si == NULL) return;
  loop->sigint = NULL;
  si->main = NULL;
  uv_close((uv_handle_t *)&si->h, sigint_close_cb);
  sigaction(SIGINT, &si->old, NULL);
}

static int config_valid(const coro_config *cfg) {
  if (cfg == NULL) return 1;
  return cfg->slow_step_ms >= 0;
}

int coro_run_config(const coro_config *cfg, coro_fn main_fn, void *arg,
                    void **result) {
  if (main_fn == NULL || !config_valid(cfg)) return CORO_EINVAL;
  if (coro__tls_loop != NULL) return CORO_EBUSY;
  coro_loop *loop = coro__calloc(1, sizeof(*loop));
  if (loop == NULL) return CORO_ENOMEM;
  int r = uv_loop_init(&loop->uv);
  if (r != 0) {
    coro__free(loop);
    return r;
  }
  uv_idle_init(&loop->uv, &loop->idle);
  uv_timer_init(&loop->uv, &loop->uvtimer);
  if ((r = coro__inbox_open(loop)) != 0) {
    uv_close((uv_handle_t *)&loop->idle, NULL);
    uv_close((uv_handle_t *)&loop->uvtimer, NULL);
    uv_run(&loop->uv, UV_RUN_DEFAULT);
    uv_loop_close(&loop->uv);
    coro__free(loop);
    return r;
  }
  loop->gen = (uint64_t)atomic_fetch_add(&loop_gens, 1) + 1;
  coro__queue_init(&loop->ready);
  coro__queue_init(&loop->tasks);
  coro__queue_init(&loop->futures);
  coro__queue_init(&loop->reports);
  loop->stack_size = coro__stack_round(cfg != NULL ? cfg->stack_size : 0);
  loop->slow_step_ms = 100;
  if (cfg != NULL) {
    loop->debug = cfg->debug;
    if (cfg->slow_step_ms > 0) loop->slow_step_ms = cfg->slow_step_ms;
    loop->threads = cfg->threads;
  }
  const char *env = getenv("CORO_DEBUG");
  if (env != NULL && strcmp(env, "1") == 0) loop->debug = 1;
  coro__ctx_init_main(&loop->sched_ctx);
  coro__tls_loop = loop;
  coro__alloc_hold(1);
  coro__overflow_enter(loop);

  coro_future *mainf = NULL;
  int status = coro_spawn(&mainf, main_fn, arg);
  int stuck = 0, deadlocked = 0;
  if (status == 0 && cfg != NULL && cfg->sigint_cancels_main) {
    sigint_watch(loop);
    if (loop->sigint != NULL) loop->sigint->main = mainf;
  }
  if (status == 0) {
    /* Run until main finishes. If everything is stuck (nothing ready,
     * nothing in libuv that could wake anyone), cancel every task: the
     * program waits for something that can never happen. */
    while (mainf->status == CORO_PENDING) {
      if (iterate(loop)) continue;
      deadlocked = 1;
      if (++stuck > STUCK_ROUNDS_MAX) {
        abandon_all(loop);
        break;
      }
      cancel_all(loop);
    }
    status = mainf->status;
    coro__future_observed(mainf); /* returned to the caller of coro_run */
    if (result != NULL) *result = status == 0 ? mainf->value : NULL;
    if (deadlocked && status == CORO_ECANCELED) status = CORO_EDEADLK;
    if (loop->sigint != NULL) loop->sigint->main = NULL;
    coro_future_release(mainf);
  }

  /* Shutdown: cancel what is left and let it unwind; tasks spawned from
   * now on start cancelled. */
  loop->closing = 1;
  coro__inbox_closing(loop);
  cancel_all(loop);
  stuck = 0;
  while (loop->ntasks > 0 || !coro__queue_empty(&loop->ready)) {
    if (iterate(loop)) continue;
    if (++stuck > STUCK_ROUNDS_MAX) {
      abandon_all(loop);
      continue;
    }
    cancel_all(loop);
  }
  /* What upper layers keep on this loop (the default executors), then the
   * messages still on their way from other threads; what they queue runs
   * before the loop goes. */
  slots_end(loop);
  coro__inbox_close(loop);
  while (loop->ntasks > 0 || !coro__queue_empty(&loop->ready))
    if (!iterate(loop)) break;
  sigint_unwatch(loop);

  coro__reports_flush(loop);
  coro__futures_detach_all(loop);
  fiber_pools_free(loop);
  coro__task_pool_free(loop);
  coro__scopes_free(loop);
  coro__timers_free(loop);
  coro__ctx_destroy(&loop->sched_ctx);
  /* Close our handles and any the program left open on the libuv loop. */
  uv_walk(&loop->uv, close_walk_cb, NULL);
  uv_run(&loop->uv, UV_RUN_DEFAULT);
  r = uv_loop_close(&loop->uv);
  CORO__ASSERT(r == 0);
  (void)r;
  coro__overflow_leave(loop);
  coro__tls_loop = NULL;
  coro__alloc_hold(-1);
  coro__free(loop);
  return status;
}

int coro_run(coro_fn main_fn, void *arg, void **result) {
  return coro_run_config(NULL, main_fn, arg, result);
}
