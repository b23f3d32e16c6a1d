/* SPDX-License-Identifier: MIT */
/* The loop and scheduler: coro_run, attach / detach, one iteration,
 * shutdown, fibers.
 *
 * A loop lives on a libuv loop: its own (coro_run) or the application's
 * (coro_loop_attach). Either way tasks run from a uv_check_t, i.e. right
 * after each poll of uv_run, and one iteration (asyncio's _run_once) is:
 *   1. the poll: libuv callbacks (I/O, the inbox, our timer) only queue
 *      handles on the ready queue;
 *   2. a snapshot of the ready queue runs: exactly the handles queued before
 *      it, FIFO. What they queue waits for the next iteration, so a task
 *      that keeps yielding cannot starve timers or I/O.
 * While the ready queue is non-empty an idle handle is active, so the next
 * poll does not block. The check callback runs several iterations in one
 * batch between polls (see run_batch). coro_run drives its own libuv loop
 * with uv_run(UV_RUN_ONCE) until main finishes; an attached loop is driven
 * by the application's uv_run, and its handles keep that loop alive only
 * while libcoro has work (the idle handle while tasks are ready, the timer
 * while one is set, the inbox while a post is awaited). */
#include <signal.h>
#include <stdatomic.h>
#include <pthread.h>
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
  return loop != NULL ? loop->uv : NULL;
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
  if (fb->started && (!fb->share || fb->clean)) {
    /* Let it leave fiber_main for good (sanitizers see a clean exit), from
     * wherever this runs: the scheduler, or a task that started another
     * eagerly and pools the fiber it finished on. */
    coro__ctx *from = loop->current != NULL ? &loop->current->fiber->ctx
                                            : &loop->sched_ctx;
    coro__ctx *back = loop->back;
    loop->back = from;
    fb->task = NULL;
    coro__ctx_switch(from, &fb->ctx);
    loop->back = back;
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
  /* Shared stacks of compact tasks: one with a resident belongs to a task
   * abandoned at shutdown, and is leaked with it. */
  while ((fb = loop->shares) != NULL) {
    loop->shares = fb->next;
    loop->nshares--;
    if (fb->resident == NULL) fiber_destroy(loop, fb);
  }
  loop->share = NULL;
}

void coro__task_pool_free(coro_loop *loop) {
  coro__task *t;
  while ((t = loop->task_pool) != NULL) {
    loop->task_pool = t->next_free;
    coro__free(t);
  }
  while ((t = loop->ctask_pool) != NULL) {
    loop->ctask_pool = t->next_free;
    coro__free(t);
  }
  loop->ntask_pool = 0;
}

/* ---- iterations --------------------------------------------------------------- */

static void run_ready(coro_loop *loop) {
  coro__queue snap;
  coro__queue_init(&snap);
  coro__queue_move(&loop->ready, &snap);
  if (coro__queue_empty(&snap)) return;
  loop->batches++;
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

/* The iterations between two polls, from the check callback.
 *
 * With work ready, asyncio polls for I/O on every iteration; here a poll is
 * a syscall (about 1 us on this machine, ten times a task switch), so while
 * tasks are ready the batch goes on without polling until the coarse clock
 * has ticked or POLL_EVERY iterations have run. A busy loop still sees I/O
 * within one clock tick (1-4 ms) or 64 iterations, whichever comes first;
 * due timers (the loop's own heap) are run on every iteration; an idle loop
 * blocks in the poll as usual. coro_run's batch also ends as soon as main
 * has finished, so that the shutdown starts at once. */
#define POLL_EVERY 64
static void run_batch(coro_loop *loop) {
  uint64_t tick = coarse_tick();
  unsigned iters = 0;
  for (;;) {
    run_ready(loop);
    if (loop->main != NULL && loop->main->status != CORO_PENDING) break;
    if (loop->inbox != NULL && coro__inbox_has_msgs(loop->inbox))
      coro__inbox_drain(loop);
    if (coro__queue_empty(&loop->ready)) break;
    if (coarse_tick() != tick || ++iters >= POLL_EVERY) break;
    /* Timers are ours: check them every iteration as asyncio does (one
     * clock read, only while some timer runs). */
    if (loop->heap_len > 0 && loop->heap[0]->due <= uv_hrtime())
      coro__timers_run(loop);
  }
  if (coro__queue_empty(&loop->ready) && loop->idle_active) {
    uv_idle_stop(&loop->idle);
    loop->idle_active = 0;
  }
}

/* ---- waiting for other threads ------------------------------------------------ */

/* Before each poll, a loop with nothing ready may block: it parks its inbox
 * (from then on a post sends the wake-up) unless messages wait already.
 * While it is awake it reads the inbox itself on every iteration and posts
 * cost no syscall (core/inbox.h).
 *
 * Spinning. A loop that waits for a reply from another thread (a job, a
 * call on another loop) and would get it within microseconds loses most
 * of the round trip to parking: the poster's eventfd write, the kernel's
 * wake-up, the poll's return. So a loop with posts due (ext_pending) keeps
 * an average of how long, from the moment it had nothing left to run, a
 * post took to come (post_wait_ns), and when that is short it spins for
 * twice the average, reading its inbox, before it parks. A spin that
 * fails costs its time and feeds the average with the longer wait that
 * follows (or with a penalty when I/O or a timer, not a post, ends the
 * park), so when replies are slow (a busy machine, a slow peer) or the
 * loop's wake-ups come from elsewhere, the average grows past
 * SPIN_MAX_NS / 2 and the loop stops spinning; it starts again once posts
 * come quickly after it parks. */
#define SPIN_MAX_NS 100000u

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

/* A post came waited ns after the loop ran out of work. */
static void learn_post_wait(coro_loop *loop, uint64_t waited) {
  if (waited > 4 * (uint64_t)SPIN_MAX_NS) waited = 4 * (uint64_t)SPIN_MAX_NS;
  loop->post_wait_ns = (7 * loop->post_wait_ns + waited) / 8;
}

static void prepare_cb(uv_prepare_t *h) {
  coro_loop *loop = coro__container_of(h, coro_loop, prepare);
  coro__inbox *ib = loop->inbox;
  if (ib == NULL || !coro__queue_empty(&loop->ready)) return; /* no block */
  loop->dispatching++;
  uint64_t idle_from = 0;
  if (loop->ext_pending > 0) {
    idle_from = uv_hrtime();
    if (loop->post_wait_ns < SPIN_MAX_NS / 2) {
      uint64_t end = idle_from + 2 * loop->post_wait_ns + 1000;
      uint64_t now = idle_from;
      while (!coro__inbox_has_msgs(ib) && (now = uv_hrtime()) < end)
        cpu_relax();
      if (coro__inbox_has_msgs(ib))
        learn_post_wait(loop, now - idle_from);
      else
        loop->spun = 1;
    }
  }
  /* Messages are here: run them; if what they wake makes the poll not
   * block, stay awake, else park again. */
  while (coro__inbox_park(ib)) {
    coro__inbox_unpark(ib);
    coro__inbox_drain(loop);
    if (!coro__queue_empty(&loop->ready)) {
      loop->dispatching--;
      return;
    }
  }
  loop->idle_from_ns = idle_from;
  loop->parked = 1;
  loop->dispatching--;
}

static void check_cb(uv_check_t *h) {
  coro_loop *loop = coro__container_of(h, coro_loop, check);
  coro__inbox *ib = loop->inbox;
  loop->dispatching++;
  if (ib != NULL) {
    if (loop->parked) {
      coro__inbox_unpark(ib);
      /* A post ended the park (the async handle's callback ran): learn
       * how long it took. */
      if (loop->woken_by_post && loop->idle_from_ns != 0)
        learn_post_wait(loop, uv_hrtime() - loop->idle_from_ns);
      else if (loop->spun) /* spun in vain: I/O or a timer woke it */
        learn_post_wait(loop, 4 * (uint64_t)SPIN_MAX_NS);
      loop->spun = 0;
      loop->parked = 0;
      loop->woken_by_post = 0;
    }
    if (coro__inbox_has_msgs(ib)) coro__inbox_drain(loop);
  }
  run_batch(loop);
  loop->dispatching--;
}

/* Libcoro's own reasons for an attached loop to go on: a timer of a task,
 * a post awaited from another thread, a request that outlives its task.
 * (Its I/O handles are not told apart from the application's: a drain
 * that finds nothing else waits a bounded turn, see turn.) */
static int own_work(const coro_loop *loop) {
  return loop->heap_len > 0 || loop->ext_pending > 0 || loop->uv_reqs > 0;
}

static void guard_cb(uv_timer_t *h) { (void)h; }

/* One turn of the libuv loop on libcoro's behalf (coro_run, a drain).
 * Returns 0, doing nothing, when nothing of libcoro's can become ready
 * again: coro_run's own libuv loop has no active handle or request and
 * nothing is ready. For an attached loop, whose libuv loop the application
 * shares, the turn is bounded instead when libcoro waits for nothing it
 * knows of (a guard timer), and it returns 0 if no task ran meanwhile. */
#define GUARD_MS 50
static int turn(coro_loop *loop) {
  if (!coro__queue_empty(&loop->ready)) {
    uv_run(loop->uv, UV_RUN_ONCE);
    return 1;
  }
  if (!loop->attached) {
    if (!uv_loop_alive(loop->uv)) return 0;
    uv_run(loop->uv, UV_RUN_ONCE);
    return 1;
  }
  if (own_work(loop)) {
    uv_run(loop->uv, UV_RUN_ONCE);
    return 1;
  }
  uint64_t before = loop->batches;
  uv_timer_start(&loop->guard, guard_cb, GUARD_MS, 0);
  uv_run(loop->uv, UV_RUN_ONCE);
  uv_timer_stop(&loop->guard);
  return loop->batches != before || !coro__queue_empty(&loop->ready);
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
    if (t->compact && coro__task_cx(t)->saved != NULL) {
      /* A compacted one: nothing points into a copy. */
      coro__compact *cx = coro__task_cx(t);
      loop->ncompacted--;
      loop->compacted_bytes -= cx->saved_len;
      coro__free(cx->saved);
      cx->saved = NULL;
      cx->saved_sp = NULL;
    }
    coro__future_observed(&t->fut); /* reported here already */
  }
  while ((q = coro__queue_pop(&abandoned)) != NULL) {
    coro__task *t = coro__container_of(q, coro__task, link);
    loop->ntasks--;
    coro__future_complete(&t->fut, CORO_EABANDONED, NULL);
    coro_future_release(&t->fut); /* the loop's reference */
  }
}

static void slots_end(coro_loop *loop) {
  for (int id = 0; id < CORO__SLOTS; id++) {
    coro__loop_slot *s = &loop->slots[id];
    if (s->at_end != NULL) s->at_end(loop, s);
    s->data = NULL;
    s->at_end = NULL;
    s->stats = NULL;
  }
}

int coro_loop_stats(coro_loop *loop, coro_stats *out) {
  if (loop == NULL) loop = coro__tls_loop;
  if (out == NULL || loop == NULL) return CORO_EINVAL;
  if (loop != coro__tls_loop) return CORO_EPERM;
  memset(out, 0, sizeof(*out));
  out->tasks = loop->ntasks;
  out->tasks_spawned = loop->task_counter;
  out->steps = loop->steps;
  out->iterations = loop->batches;
  for (coro__queue *q = loop->ready.next; q != &loop->ready; q = q->next)
    out->ready++;
  out->timers = loop->heap_len;
  out->waiting_threads = loop->ext_pending;
  out->slow_steps = loop->slow_steps;
  out->compacted = loop->ncompacted;
  out->compacted_bytes = loop->compacted_bytes;
  out->shared_stacks = loop->nshares;
  for (int id = 0; id < CORO__SLOTS; id++) {
    coro__loop_slot *s = &loop->slots[id];
    if (s->stats != NULL) s->stats(loop, s, out);
  }
  return 0;
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
  uv_signal_init(loop->uv, &si->h);
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

/* ---- a loop's life, shared by coro_run and attach / detach -------------------- */

/* Every live loop, for a debugger (gdb reads it from a core file too). */
coro_loop *coro__all_loops;
static pthread_mutex_t all_loops_mu = PTHREAD_MUTEX_INITIALIZER;

static void all_loops_add(coro_loop *loop) {
  pthread_mutex_lock(&all_loops_mu);
  loop->all_next = coro__all_loops;
  loop->all_pprev = &coro__all_loops;
  if (coro__all_loops != NULL) coro__all_loops->all_pprev = &loop->all_next;
  coro__all_loops = loop;
  pthread_mutex_unlock(&all_loops_mu);
}

static void all_loops_remove(coro_loop *loop) {
  pthread_mutex_lock(&all_loops_mu);
  if (loop->all_pprev != NULL) {
    *loop->all_pprev = loop->all_next;
    if (loop->all_next != NULL) loop->all_next->all_pprev = loop->all_pprev;
    loop->all_pprev = NULL;
  }
  pthread_mutex_unlock(&all_loops_mu);
}

static int config_valid(const coro_config *cfg) {
  if (cfg == NULL) return 1;
  return cfg->slow_step_ms >= 0 &&
         (cfg->dump_signal == 0 || coro__dump_signal_ok(cfg->dump_signal));
}

/* Make loop (zeroed) live on uv, on this thread. Nothing to undo on
 * failure: the inbox's handle is the only step that can fail, and it comes
 * first. */
static int loop_open(coro_loop *loop, uv_loop_t *uv, const coro_config *cfg) {
  loop->uv = uv;
  int r = coro__inbox_open(loop);
  if (r != 0) return r;
  uv_idle_init(uv, &loop->idle);
  uv_timer_init(uv, &loop->uvtimer);
  uv_timer_init(uv, &loop->guard);
  uv_check_init(uv, &loop->check);
  uv_check_start(&loop->check, check_cb);
  uv_unref((uv_handle_t *)&loop->check);
  uv_prepare_init(uv, &loop->prepare);
  uv_prepare_start(&loop->prepare, prepare_cb);
  uv_unref((uv_handle_t *)&loop->prepare);
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
  if (cfg != NULL) loop->dump_signal = cfg->dump_signal;
  env = getenv("CORO_DUMP_SIGNAL");
  if (env != NULL && env[0] != '\0') {
    int sig = coro__dump_signal_parse(env);
    if (sig > 0) loop->dump_signal = sig;
    else fprintf(stderr, "libcoro: CORO_DUMP_SIGNAL=%s is not a signal it can use\n", env);
  }
  coro__ctx_init_main(&loop->sched_ctx);
  loop->back = &loop->sched_ctx;
  loop->share = NULL;
  loop->shares = NULL;
  loop->nshares = loop->ncompacted = loop->compacted_bytes = 0;
  coro__tls_loop = loop;
  coro__alloc_hold(1);
  coro__overflow_enter(loop);
  coro__watchdog_enter(loop);
  all_loops_add(loop);
  return 0;
}

/* Cancel what is left and let it unwind (tasks spawned from now on start
 * cancelled), end what upper layers keep on the loop, run the messages
 * still on their way from other threads, and free the loop's memory. The
 * libuv handles are closed but their close callbacks have not run yet. */
static void loop_drain(coro_loop *loop) {
  loop->closing = 1;
  coro__inbox_closing(loop);
  cancel_all(loop);
  int stuck = 0;
  while (loop->ntasks > 0 || !coro__queue_empty(&loop->ready)) {
    if (turn(loop)) continue;
    if (++stuck > STUCK_ROUNDS_MAX) {
      abandon_all(loop);
      continue;
    }
    cancel_all(loop);
  }
  /* What upper layers keep on this loop (the default executors, the I/O
   * objects), then the messages still on their way from other threads;
   * what they queue runs before the loop goes. */
  slots_end(loop);
  coro__inbox_close(loop);
  while (loop->ntasks > 0 || !coro__queue_empty(&loop->ready))
    if (!turn(loop)) break;
  sigint_unwatch(loop);

  coro__reports_flush(loop);
  coro__futures_detach_all(loop);
  fiber_pools_free(loop);
  coro__task_pool_free(loop);
  coro__scopes_free(loop);
  coro__timers_free(loop);
  coro__ctx_destroy(&loop->sched_ctx);
  if (loop->idle_active) uv_idle_stop(&loop->idle);
  uv_close((uv_handle_t *)&loop->idle, NULL);
  uv_close((uv_handle_t *)&loop->uvtimer, NULL);
  uv_close((uv_handle_t *)&loop->guard, NULL);
  uv_close((uv_handle_t *)&loop->check, NULL);
  uv_close((uv_handle_t *)&loop->prepare, NULL);
}

/* The loop's last step, after its libuv handles are closed. */
static void loop_free(coro_loop *loop) {
  all_loops_remove(loop);
  coro__watchdog_leave(loop);
  coro__overflow_leave(loop);
  coro__tls_loop = NULL;
  coro__alloc_hold(-1);
  coro__free(loop);
}

/* ---- coro_run ----------------------------------------------------------------- */

int coro_run_config(const coro_config *cfg, coro_fn main_fn, void *arg,
                    void **result) {
  if (main_fn == NULL || !config_valid(cfg)) return CORO_EINVAL;
  if (coro__tls_loop != NULL) return CORO_EBUSY;
  coro_loop *loop = coro__calloc(1, sizeof(*loop));
  if (loop == NULL) return CORO_ENOMEM;
  int r = uv_loop_init(&loop->own_uv);
  if (r == 0 && (r = loop_open(loop, &loop->own_uv, cfg)) != 0)
    (void)uv_loop_close(&loop->own_uv);
  if (r != 0) {
    coro__free(loop);
    return r;
  }

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
    loop->main = mainf;
    while (mainf->status == CORO_PENDING) {
      if (turn(loop)) continue;
      deadlocked = 1;
      if (++stuck > STUCK_ROUNDS_MAX) {
        abandon_all(loop);
        break;
      }
      cancel_all(loop);
    }
    loop->main = NULL;
    status = mainf->status;
    coro__future_observed(mainf); /* returned to the caller of coro_run */
    if (result != NULL) *result = status == 0 ? mainf->value : NULL;
    if (deadlocked && status == CORO_ECANCELED) status = CORO_EDEADLK;
    if (loop->sigint != NULL) loop->sigint->main = NULL;
    coro_future_release(mainf);
  }

  loop_drain(loop);
  /* Close any handle the program left open on our libuv loop too, and let
   * every close and request finish. */
  uv_walk(loop->uv, close_walk_cb, NULL);
  uv_run(loop->uv, UV_RUN_DEFAULT);
  r = uv_loop_close(loop->uv);
  CORO__ASSERT(r == 0);
  (void)r;
  loop_free(loop);
  return status;
}

int coro_run(coro_fn main_fn, void *arg, void **result) {
  return coro_run_config(NULL, main_fn, arg, result);
}

/* ---- attach / detach ---------------------------------------------------------- */

int coro_loop_attach(coro_loop **out, struct uv_loop_s *uv,
                     const coro_config *cfg) {
  if (out == NULL || uv == NULL || !config_valid(cfg)) return CORO_EINVAL;
  if (cfg != NULL && cfg->sigint_cancels_main) return CORO_EINVAL;
  if (coro__tls_loop != NULL) return CORO_EBUSY;
  coro_loop *loop = coro__calloc(1, sizeof(*loop));
  if (loop == NULL) return CORO_ENOMEM;
  loop->attached = 1;
  int r = loop_open(loop, uv, cfg);
  if (r != 0) {
    coro__free(loop);
    return r;
  }
  *out = loop;
  return 0;
}

int coro_loop_spawn(coro_loop *loop, coro_future **out, coro_fn fn,
                    void *arg) {
  if (loop == NULL || fn == NULL) return CORO_EINVAL;
  if (loop != coro__tls_loop) return CORO_EPERM;
  if (loop->detaching) return CORO_EPIPE;
  return coro_spawn(out, fn, arg);
}

int coro_loop_detach(coro_loop *loop) {
  if (loop == NULL) return CORO_EINVAL;
  if (loop != coro__tls_loop) return CORO_EPERM;
  if (!loop->attached) return CORO_EINVAL;
  if (loop->current != NULL || loop->dispatching > 0 || loop->detaching)
    return CORO_EBUSY;
  loop->detaching = 1;
  uv_loop_t *uv = loop->uv;
  loop_drain(loop);
  /* Let the closes just made (ours and the I/O objects') and libcoro's
   * requests still in flight finish; this also runs whatever of the
   * application's is due meanwhile. libuv completes every close requested
   * before an iteration within it (with a zero poll timeout). */
  while (loop->uv_reqs > 0 || uv->closing_handles != NULL)
    uv_run(uv, UV_RUN_ONCE);
  loop_free(loop);
  return 0;
}
