/* SPDX-License-Identifier: MIT */
/* Many loops: coro_spawn_on (start a task on another loop, await it from
 * this one) and loop groups (N threads, a loop each, with placement).
 *
 * coro_spawn_on. One struct, sp_call, serves both loops:
 * - on the caller's loop it is a future (kind CORO__FUT_OWNED, refcounted
 *   the ordinary way, on that loop's thread only), with one reference held
 *   by the call in flight until its outcome arrives;
 * - the target loop's part is the task it starts, and the messages that
 *   cross: start and cancel to the target's inbox, the outcome back to the
 *   caller's.
 * The struct's memory goes when both halves let go ("halves", atomic): the
 * future half when the future is destroyed, the target half once the
 * outcome message has run on the caller's loop or was refused there (that
 * loop has ended); each cancel message in flight holds one more.
 *
 * Cancelling the future (coro_cancel, a cancelled awaiter) ends it at once,
 * as for an executor job; its watch then posts a cancel to the target,
 * which cancels the task there. The outcome of a task that was cancelled by
 * its own loop's shutdown, not by us, is -EPIPE: that loop went away.
 *
 * The caller's loop counts each call in flight in ext_pending (it waits in
 * its poll for the outcome instead of judging its tasks stuck) and keeps
 * them in its spawn-on slot: at its end a call still in flight ends
 * cancelled there, its cancel is sent, and the late outcome is dropped. */
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "core/task.h"
#include "core/inbox.h"

typedef struct sp_call {
  coro__future_owned own;  /* first: the caller's future */
  coro__waiter watch;      /* in own.fut's waiters while in flight */
  atomic_int halves;
  /* Messages. */
  coro__msg start;         /* to the target: spawn the task */
  coro__msg cancel;        /* to the target: cancel it */
  coro__msg outcome;       /* to the caller: the task's outcome */
  coro__inbox *cib;        /* the caller's inbox (retained) */
  coro__inbox *tib;        /* the target's inbox (retained) */
  coro_fn fn;
  void *arg;
  atomic_size_t *load;     /* a group member's count of running tasks */
  /* Caller's loop only. */
  coro_loop *cloop;
  coro__queue node;        /* in the caller's slot while in flight */
  int in_flight;           /* the outcome has not arrived yet */
  int detached;            /* started with out == NULL: no future wanted */
  /* Target loop only. */
  coro_future *task;       /* while it runs */
  coro__waiter task_w;     /* on task's future */
  int cancel_asked;        /* a cancel from the caller arrived */
  /* Written on the target before the outcome is posted, read on the
   * caller after it arrived (the inbox's lock orders them). */
  int status;
  void *value;
} sp_call;

static void sp_half_release(sp_call *c) {
  if (atomic_fetch_sub_explicit(&c->halves, 1, memory_order_acq_rel) != 1)
    return;
  coro__inbox_release(c->cib);
  coro__inbox_release(c->tib);
  coro__free(c);
}

/* The future half (coro__future_destroy has unlinked it from its loop). */
static void sp_future_destroy(coro_future *f) {
  sp_half_release((sp_call *)f);
}

/* ---- the caller's loop: calls in flight ---------------------------------- */

typedef struct sp_slot {
  coro__queue calls; /* sp_call.node */
} sp_slot;

/* The caller's loop, once the outcome is no longer awaited: the future
 * (if it still exists) lets go of the call. */
static void sp_settle(sp_call *c) {
  c->in_flight = 0;
  coro__queue_remove(&c->node);
  coro__loop_ext_add(c->cloop, -1);
  coro__future_remove_waiter(&c->watch);
  coro_future_release(&c->own.fut); /* the call's reference */
}

static void sp_outcome_run(coro__msg *m) {
  sp_call *c = coro__container_of(m, sp_call, outcome);
  if (c->in_flight) {
    coro_future *f = &c->own.fut;
    if (f->status == CORO_PENDING) {
      coro__future_remove_waiter(&c->watch);
      coro__future_complete(f, c->status, c->status == 0 ? c->value : NULL);
    }
    sp_settle(c);
  }
  sp_half_release(c); /* the target half */
}

/* Ending the future without the outcome (coro_cancel, a cancelled
 * awaiter, the loop's end): tell the target. */
static void sp_watch_notify(coro__waiter *w, coro_future *f) {
  sp_call *c = coro__container_of(w, sp_call, watch);
  (void)f;
  atomic_fetch_add_explicit(&c->halves, 1, memory_order_relaxed);
  if (coro__inbox_post(c->tib, &c->cancel, 0) != 0) sp_half_release(c);
}

static void sp_slot_end(coro_loop *loop, coro__loop_slot *slot) {
  (void)loop;
  sp_slot *s = slot->data;
  coro__queue *q;
  while ((q = s->calls.next) != &s->calls) {
    sp_call *c = coro__container_of(q, sp_call, node);
    coro_future *f = &c->own.fut;
    coro_future_retain(f);
    if (f->status == CORO_PENDING) /* the watch sends the cancel */
      coro__future_complete(f, CORO_ECANCELED, NULL);
    if (c->in_flight) sp_settle(c);
    coro_future_release(f);
  }
  coro__free(s);
}

static sp_slot *sp_slot_get(coro_loop *loop) {
  coro__loop_slot *slot = coro__loop_slot_of(loop, CORO__SLOT_SPAWN_ON);
  if (slot->data == NULL) {
    sp_slot *s = coro__malloc(sizeof(*s));
    if (s == NULL) return NULL;
    coro__queue_init(&s->calls);
    slot->data = s;
    slot->at_end = sp_slot_end;
  }
  return slot->data;
}

/* ---- the target loop ------------------------------------------------------ */

static void sp_post_outcome(sp_call *c, int status, void *value) {
  c->status = status;
  c->value = value;
  if (c->load != NULL)
    atomic_fetch_sub_explicit(c->load, 1, memory_order_relaxed);
  /* Refused once the caller's loop has ended: nobody reads it. */
  if (coro__inbox_post(c->cib, &c->outcome, 0) != 0) sp_half_release(c);
}

static void sp_task_done(coro__waiter *w, coro_future *f) {
  sp_call *c = coro__container_of(w, sp_call, task_w);
  /* The caller gets the outcome; a detached task's failure is reported by
   * its own loop, as any detached task's. */
  if (!c->detached) coro__future_observed(f);
  int status = f->status;
  void *value = f->value;
  coro_loop *loop = f->loop;
  /* Cancelled by its own loop's shutdown, not by the caller. */
  if (status == CORO_ECANCELED && !c->cancel_asked && loop->closing)
    status = CORO_EPIPE;
  c->task = NULL;
  coro_future_release(f);
  sp_post_outcome(c, status, value);
}

static void sp_start_run(coro__msg *m) {
  sp_call *c = coro__container_of(m, sp_call, start);
  coro_loop *loop = coro__tls_loop;
  coro_future *t = NULL;
  int r = loop->closing ? CORO_EPIPE : coro_spawn(&t, c->fn, c->arg);
  if (r != 0) {
    sp_post_outcome(c, r, NULL);
    return;
  }
  c->task = t;
  c->task_w.notify = sp_task_done;
  coro__future_add_waiter(t, &c->task_w);
}

static void sp_cancel_run(coro__msg *m) {
  sp_call *c = coro__container_of(m, sp_call, cancel);
  c->cancel_asked = 1;
  if (c->task != NULL) coro_cancel(c->task);
  sp_half_release(c);
}

/* ---- coro_spawn_on -------------------------------------------------------- */

static int spawn_on(coro_loop *target, coro_future **out, coro_fn fn,
                    void *arg, atomic_size_t *load) {
  if (out != NULL) *out = NULL;
  if (target == NULL || fn == NULL) return CORO_EINVAL;
  coro_loop *mine = coro__tls_loop;
  if (mine == NULL) return CORO_EPERM;
  if (mine->closing) return CORO_EPIPE; /* its outcome could not come back */
  if (target == mine) {
    if (load == NULL) return coro_spawn(out, fn, arg);
    /* A group member spawning on itself: counted like the others. */
  }
  sp_slot *s = sp_slot_get(mine);
  if (s == NULL) return CORO_ENOMEM;
  coro__inbox *tib = coro__inbox_get(target);
  if (tib == NULL) return CORO_EPIPE;
  sp_call *c = coro__calloc(1, sizeof(*c));
  if (c == NULL) {
    coro__inbox_release(tib);
    return CORO_ENOMEM;
  }
  coro__future_init(&c->own.fut, mine, CORO__FUT_OWNED);
  c->own.fut.refs = 2; /* the caller's and the call's */
  c->own.destroy = sp_future_destroy;
  c->watch.notify = sp_watch_notify;
  coro__future_add_waiter(&c->own.fut, &c->watch);
  atomic_init(&c->halves, 2);
  c->start.run = sp_start_run;
  c->cancel.run = sp_cancel_run;
  c->outcome.run = sp_outcome_run;
  c->cib = coro__loop_inbox(mine);
  coro__inbox_retain(c->cib);
  c->tib = tib;
  c->fn = fn;
  c->arg = arg;
  c->load = load;
  c->cloop = mine;
  c->in_flight = 1;
  c->detached = out == NULL;
  coro__queue_push(&s->calls, &c->node);
  coro__loop_ext_add(mine, +1);
  if (load != NULL) atomic_fetch_add_explicit(load, 1, memory_order_relaxed);
  if (coro__inbox_post(tib, &c->start, CORO__POST_CALL) != 0) {
    if (load != NULL) atomic_fetch_sub_explicit(load, 1, memory_order_relaxed);
    coro__future_remove_waiter(&c->watch);
    c->in_flight = 0;
    coro__queue_remove(&c->node);
    coro__loop_ext_add(mine, -1);
    coro__future_observed(&c->own.fut);
    atomic_store(&c->halves, 1); /* no target half: nothing was sent */
    c->own.fut.refs = 1;
    coro_future_release(&c->own.fut);
    return CORO_EPIPE;
  }
  if (out != NULL) {
    *out = &c->own.fut;
  } else {
    coro__future_observed(&c->own.fut); /* detached: nobody reads it */
    coro_future_release(&c->own.fut);
  }
  return 0;
}

int coro_spawn_on(coro_loop *loop, coro_future **out, coro_fn fn, void *arg) {
  return spawn_on(loop, out, fn, arg, NULL);
}

/* ---- loop groups ---------------------------------------------------------- */

typedef struct lg_member {
  struct coro_loop_group *g;
  unsigned index;
  pthread_t thread;
  int started;             /* the thread was created */
  int reported;            /* said whether its loop runs (under g->mu) */
  coro_loop *loop;         /* set by the member's main once it runs */
  coro_future *stop;       /* member loop: resolved to stop it */
  atomic_size_t load;      /* tasks placed here and still running */
} lg_member;

struct coro_loop_group {
  unsigned n;
  int placement;
  atomic_uint next;        /* round robin */
  coro_config cfg;
  int has_cfg;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  unsigned ready;          /* members up (or failed), under mu */
  int failed;              /* a member could not start its loop, under mu */
  lg_member m[];
};

static void lg_stop_cb(void *arg) {
  lg_member *m = arg;
  (void)coro_future_resolve(m->stop, NULL);
}

static void lg_report(lg_member *m, coro_loop *loop, int failed) {
  coro_loop_group *g = m->g;
  pthread_mutex_lock(&g->mu);
  m->loop = loop;
  m->reported = 1;
  if (failed) g->failed = 1;
  g->ready++;
  pthread_cond_broadcast(&g->cv);
  pthread_mutex_unlock(&g->mu);
}

/* A member loop's main: wait to be stopped, holding the loop open for the
 * other threads meanwhile (it has nothing of its own to wait for). */
static void *lg_member_main(void *arg) {
  lg_member *m = arg;
  coro_loop *loop = coro_loop_current();
  if (coro_future_new(&m->stop) != 0 || coro_loop_keepalive(loop, +1) != 0) {
    coro_future_release(m->stop);
    m->stop = NULL;
    lg_report(m, NULL, 1);
    return NULL;
  }
  lg_report(m, loop, 0);
  /* Only lg_stop_cb ends the wait; a cancellation (none is sent) would be
   * taken as a stop too. */
  (void)coro_await(m->stop, NULL);
  coro_future_release(m->stop);
  m->stop = NULL;
  (void)coro_loop_keepalive(loop, -1);
  return NULL;
}

static void *lg_thread(void *arg) {
  lg_member *m = arg;
  coro_loop_group *g = m->g;
  (void)coro_run_config(g->has_cfg ? &g->cfg : NULL, lg_member_main, m, NULL);
  /* coro_run failed before main could report (no memory for the loop):
   * report the failure, or coro_loop_group_new would wait forever. */
  pthread_mutex_lock(&g->mu);
  int reported = m->reported;
  pthread_mutex_unlock(&g->mu);
  if (!reported) lg_report(m, NULL, 1);
  return NULL;
}

/* Stop the members that run and join every thread started. */
static void lg_stop_join(coro_loop_group *g) {
  for (unsigned i = 0; i < g->n; i++) {
    lg_member *m = &g->m[i];
    if (m->loop != NULL) (void)coro_call_threadsafe(m->loop, lg_stop_cb, m);
  }
  for (unsigned i = 0; i < g->n; i++)
    if (g->m[i].started) pthread_join(g->m[i].thread, NULL);
}

static void lg_destroy(coro_loop_group *g) {
  pthread_mutex_destroy(&g->mu);
  pthread_cond_destroy(&g->cv);
  coro__free(g);
}

int coro_loop_group_new(coro_loop_group **out,
                        const coro_loop_group_opts *opts) {
  if (out == NULL) return CORO_EINVAL;
  coro_loop_group_opts o = {0};
  if (opts != NULL) o = *opts;
  if (o.placement != CORO_PLACE_ROUND_ROBIN &&
      o.placement != CORO_PLACE_LEAST_LOADED)
    return CORO_EINVAL;
  if (o.config != NULL &&
      (o.config->slow_step_ms < 0 || o.config->sigint_cancels_main))
    return CORO_EINVAL;
  unsigned n = o.loops;
  if (n == 0) {
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    n = cpus > 0 ? (unsigned)cpus : 1;
  }
  if (n > 4096) return CORO_EINVAL;
  coro_loop_group *g = coro__calloc(1, sizeof(*g) + n * sizeof(lg_member));
  if (g == NULL) return CORO_ENOMEM;
  g->n = n;
  g->placement = o.placement;
  atomic_init(&g->next, 0);
  if (o.config != NULL) {
    g->cfg = *o.config;
    g->has_cfg = 1;
  }
  pthread_mutex_init(&g->mu, NULL);
  pthread_cond_init(&g->cv, NULL);
  int r = 0;
  unsigned made = 0;
  for (unsigned i = 0; i < n; i++) {
    lg_member *m = &g->m[i];
    m->g = g;
    m->index = i;
    atomic_init(&m->load, 0);
    if (pthread_create(&m->thread, NULL, lg_thread, m) != 0) {
      r = CORO_EAGAIN;
      break;
    }
    m->started = 1;
    made++;
  }
  pthread_mutex_lock(&g->mu);
  while (g->ready < made) pthread_cond_wait(&g->cv, &g->mu);
  if (r == 0 && g->failed) r = CORO_ENOMEM;
  pthread_mutex_unlock(&g->mu);
  if (r != 0) {
    lg_stop_join(g);
    lg_destroy(g);
    return r;
  }
  *out = g;
  return 0;
}

unsigned coro_loop_group_size(const coro_loop_group *g) {
  return g != NULL ? g->n : 0;
}

coro_loop *coro_loop_group_loop(coro_loop_group *g, unsigned i) {
  if (g == NULL || i >= g->n) return NULL;
  return g->m[i].loop;
}

static lg_member *lg_pick(coro_loop_group *g) {
  if (g->placement == CORO_PLACE_ROUND_ROBIN) {
    unsigned i = atomic_fetch_add_explicit(&g->next, 1, memory_order_relaxed);
    return &g->m[i % g->n];
  }
  lg_member *best = &g->m[0];
  size_t low = atomic_load_explicit(&best->load, memory_order_relaxed);
  for (unsigned i = 1; i < g->n && low > 0; i++) {
    size_t l = atomic_load_explicit(&g->m[i].load, memory_order_relaxed);
    if (l < low) {
      low = l;
      best = &g->m[i];
    }
  }
  return best;
}

int coro_loop_group_spawn(coro_loop_group *g, coro_future **out, coro_fn fn,
                          void *arg) {
  if (out != NULL) *out = NULL;
  if (g == NULL || fn == NULL) return CORO_EINVAL;
  if (coro__tls_loop == NULL) return CORO_EPERM;
  lg_member *m = lg_pick(g);
  return spawn_on(m->loop, out, fn, arg, &m->load);
}

/* coro_loop_group_free from a task: the stopping and joining happen on a
 * thread of their own while the task's loop goes on running. */
typedef struct lg_free_call {
  coro__msg done;
  coro_loop_group *g;
  coro__task *task;
  coro_loop *loop;
  coro__inbox *ib;
  int finished;
} lg_free_call;

static void lg_free_done_run(coro__msg *m) {
  lg_free_call *fc = coro__container_of(m, lg_free_call, done);
  fc->finished = 1;
  coro__loop_ext_add(fc->loop, -1);
  coro__task_wake(fc->task, 0);
}

static void *lg_free_thread(void *arg) {
  lg_free_call *fc = arg;
  lg_stop_join(fc->g);
  lg_destroy(fc->g);
  /* The task's loop waits for this (ext_pending): it is taken. */
  (void)coro__inbox_post(fc->ib, &fc->done, 0);
  return NULL;
}

/* The wait cannot be undone: the request is kept for later. */
static int lg_free_cancel(coro__task *t, void *arg) {
  (void)t;
  (void)arg;
  return CORO__CANCEL_LATER;
}

int coro_loop_group_free(coro_loop_group *g) {
  if (g == NULL) return CORO_EINVAL;
  coro_loop *mine = coro__tls_loop;
  if (mine != NULL)
    for (unsigned i = 0; i < g->n; i++)
      if (g->m[i].loop == mine) return CORO_EDEADLK;
  coro__task *t = coro__task_for_wait();
  if (t != NULL) {
    lg_free_call fc = {.g = g, .task = t, .loop = mine,
                       .ib = coro__loop_inbox(mine)};
    fc.done.run = lg_free_done_run;
    pthread_t th;
    coro__loop_ext_add(mine, +1);
    if (pthread_create(&th, NULL, lg_free_thread, &fc) == 0) {
      pthread_detach(th);
      while (!fc.finished) (void)coro__task_suspend(t, lg_free_cancel, &fc, "loop group free");
      return 0;
    }
    coro__loop_ext_add(mine, -1); /* no thread: block instead */
  }
  lg_stop_join(g);
  lg_destroy(g);
  return 0;
}
