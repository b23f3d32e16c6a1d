/* SPDX-License-Identifier: MIT */
/* Task groups: asyncio 3.13's TaskGroup in C.
 *
 * The group listens to each child's future. The first child that fails
 * (an error, not a cancellation) aborts the group: every other child is
 * cancelled and so is the parent, once (parent_cancel_requested), which
 * interrupts the body at its current suspension. coro_group_wait waits
 * until no child is left (children may spawn more meanwhile), then takes
 * the group's own request back with uncancel, after the wait (the 3.13 fix
 * of 3.11's counter leak), and decides: errors first, then an outside
 * cancellation, then success. */
#include "core/task.h"

typedef struct child {
  coro__waiter w;      /* in the child's future */
  coro__queue link;    /* in group->children */
  coro_group *g;
  coro_future *f;      /* the group's reference */
} child;

struct coro_group {
  coro_loop *loop;
  coro__task *parent;
  coro__queue children;   /* children still running */
  size_t nlive;
  int *errors;             /* errs_small, or a larger allocation */
  size_t nerrors, errcap;
  int errs_small[4];       /* the first errors never need memory */
  int cancelling0;         /* the parent's cancelling() when created */
  uint8_t aborting;       /* children are being cancelled */
  uint8_t parent_cancel_requested;
  uint8_t waiting;        /* the parent is suspended in coro_group_wait */
  uint8_t finished;       /* coro_group_wait has returned */
};

static void add_error(coro_group *g, int err) {
  if (g->nerrors == g->errcap) {
    size_t cap = g->errcap * 2;
    int *e = coro__malloc(cap * sizeof(*e));
    if (e == NULL) return; /* out of memory: the first errors are kept */
    for (size_t i = 0; i < g->nerrors; i++) e[i] = g->errors[i];
    if (g->errors != g->errs_small) coro__free(g->errors);
    g->errors = e;
    g->errcap = cap;
  }
  g->errors[g->nerrors++] = err;
}

static void group_abort(coro_group *g) {
  g->aborting = 1;
  coro__queue *q;
  for (q = g->children.next; q != &g->children; q = q->next)
    coro_cancel(coro__container_of(q, child, link)->f);
}

static void child_done(coro__waiter *w, coro_future *f) {
  child *c = coro__container_of(w, child, w);
  coro_group *g = c->g;
  coro__queue_remove(&c->link);
  g->nlive--;
  coro__future_observed(f);
  int st = f->status;
  if (st < 0 && st != CORO_ECANCELED) {
    add_error(g, st);
    if (!g->aborting && !g->parent_cancel_requested &&
        g->parent->state != CORO__T_DONE) {
      group_abort(g);
      g->parent_cancel_requested = 1;
      coro_cancel(&g->parent->fut);
    }
  }
  if (g->nlive == 0 && g->waiting) coro__task_wake(g->parent, 0);
  /* The loop still holds the task while its completion is notified. */
  coro_future_release(c->f);
  coro__free(c);
}

int coro_group_new(coro_group **out) {
  if (out == NULL) return CORO_EINVAL;
  coro__task *t = coro__task_current();
  if (t == NULL) return CORO_EPERM;
  coro_group *g = coro__calloc(1, sizeof(*g));
  if (g == NULL) return CORO_ENOMEM;
  g->loop = t->fut.loop;
  g->parent = t;
  g->errors = g->errs_small;
  g->errcap = sizeof(g->errs_small) / sizeof(g->errs_small[0]);
  g->cancelling0 = t->cancel_requests;
  coro_future_retain(&t->fut); /* the parent's struct stays ours to look at */
  coro__queue_init(&g->children);
  *out = g;
  return 0;
}

int coro_group_spawn_opts(coro_group *g, coro_future **out, coro_fn fn,
                          void *arg, const coro_task_opts *opts) {
  if (g == NULL || fn == NULL) return CORO_EINVAL;
  if (g->loop != coro__tls_loop) return CORO_EPERM;
  if (g->aborting || g->finished) return CORO_EPIPE;
  child *c = coro__malloc(sizeof(*c));
  if (c == NULL) return CORO_ENOMEM;
  int r = coro_spawn_opts(&c->f, fn, arg, opts);
  if (r != 0) {
    coro__free(c);
    return r;
  }
  c->g = g;
  c->w.notify = child_done;
  coro__future_add_waiter(c->f, &c->w);
  coro__queue_push(&g->children, &c->link);
  g->nlive++;
  if (out != NULL) *out = coro_future_retain(c->f);
  return 0;
}

int coro_group_spawn(coro_group *g, coro_future **out, coro_fn fn, void *arg) {
  return coro_group_spawn_opts(g, out, fn, arg, NULL);
}

int coro_group_wait(coro_group *g, int body_status) {
  if (g == NULL || body_status > 0) return CORO_EINVAL;
  coro__task *t = coro__task_for_wait();
  if (t == NULL || t != g->parent) return CORO_EPERM;
  if (g->finished) return CORO_EINVAL;
  /* The body was cancelled or failed: the children go too. */
  int propagate_cancel = body_status == CORO_ECANCELED;
  if (body_status != 0 && !g->aborting) group_abort(g);
  while (g->nlive > 0) {
    g->waiting = 1;
    int r = coro__task_suspend(t, coro__cancel_abort, g, "task group");
    g->waiting = 0;
    if (r == CORO_ECANCELED && !g->aborting) {
      /* Cancelled from outside while waiting: cancel the children and
       * keep waiting for them. */
      propagate_cancel = 1;
      group_abort(g);
    }
  }
  g->finished = 1;
  /* Take our own request back; if no other came since the group was made
   * (asyncio compares with 0; an older request that was delivered and
   * handled before the group must not count), the cancellation was ours. */
  if (g->parent_cancel_requested &&
      coro_uncancel(&t->fut) <= g->cancelling0)
    propagate_cancel = 0;
  if (body_status < 0 && body_status != CORO_ECANCELED)
    add_error(g, body_status);
  if (g->nerrors > 0) {
    /* Errors beat cancellation. An outside request stays pending, to be
     * delivered at the next suspension (uncancel + cancel keeps the count). */
    if (coro_cancelling(&t->fut) > g->cancelling0) {
      coro_uncancel(&t->fut);
      coro_cancel(&t->fut);
    }
    return g->errors[0];
  }
  return propagate_cancel ? CORO_ECANCELED : 0;
}

size_t coro_group_errors(const coro_group *g, int *errs, size_t cap) {
  if (g == NULL) return 0;
  for (size_t i = 0; i < g->nerrors && i < cap && errs != NULL; i++)
    errs[i] = g->errors[i];
  return g->nerrors;
}

int coro_group_cancel(coro_group *g) {
  if (g == NULL) return CORO_EINVAL;
  if (g->loop != coro__tls_loop) return CORO_EPERM;
  if (g->finished) return CORO_EPIPE;
  if (!g->aborting) group_abort(g);
  if (!g->parent_cancel_requested && g->parent->state != CORO__T_DONE) {
    g->parent_cancel_requested = 1;
    coro_cancel(&g->parent->fut);
  }
  return 0;
}

void coro_group_free(coro_group *g) {
  if (g == NULL) return;
  coro__queue *q;
  while ((q = coro__queue_pop(&g->children)) != NULL) {
    child *c = coro__container_of(q, child, link);
    coro__future_remove_waiter(&c->w);
    coro__future_observed(c->f);
    if (g->loop == coro__tls_loop) coro_cancel(c->f);
    coro_future_release(c->f);
    coro__free(c);
  }
  coro_future_release(&g->parent->fut);
  if (g->errors != g->errs_small) coro__free(g->errors);
  coro__free(g);
}
