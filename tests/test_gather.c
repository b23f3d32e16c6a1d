/* SPDX-License-Identifier: MIT */
/* coro_gather: asyncio.gather's semantics (docs/api/wait.md). Results in
 * argument order, the first failure returned at once with the siblings left
 * running, the statuses mode, cancellation from outside (children cancelled,
 * cancellation wins) and from a child (the caller is not cancelled),
 * argument errors, scale and allocation failure. */
#include "helpers.h"

#include <stdlib.h>
#include <string.h>

/* ---- an order log -------------------------------------------------------- */

#include "child.h"

/* Sleeps, then cancels a future. */
typedef struct canceller {
  coro_future *target;
  int64_t ms;
} canceller;

static void *canceller_fn(void *arg) {
  canceller *k = arg;
  CHECK_EQ(coro_sleep(k->ms), 0);
  CHECK_EQ(coro_cancel(k->target), 0);
  return NULL;
}

/* Sleeps, then resolves (or rejects) a promise. */
typedef struct resolver {
  coro_future *p;
  int64_t ms;
  void *value;
  int err;
} resolver;

static void *resolver_fn(void *arg) {
  resolver *s = arg;
  CHECK_EQ(coro_sleep(s->ms), 0);
  if (s->err)
    CHECK_EQ(coro_future_reject(s->p, s->err), 0);
  else
    CHECK_EQ(coro_future_resolve(s->p, s->value), 0);
  return NULL;
}

/* A task that gathers and records what it saw when gather returned. */
#define MAXF 8
typedef struct gatherer {
  coro_future *fs[MAXF];
  size_t n;
  int use_statuses;
  void *results[MAXF];
  int statuses[MAXF];
  int ret;
  int status_at_return[MAXF]; /* coro_future_status of each child */
  int cancelling_after;
  int64_t returned_at;
} gatherer;

static void gatherer_init(gatherer *g, int use_statuses) {
  memset(g, 0, sizeof(*g));
  g->use_statuses = use_statuses;
  g->ret = NOT_REACHED;
  for (size_t i = 0; i < MAXF; i++) {
    g->results[i] = SENTINEL;
    g->statuses[i] = NOT_REACHED;
  }
}

static void *gatherer_fn(void *arg) {
  gatherer *g = arg;
  g->ret = coro_gather(g->fs, g->n, g->results,
                       g->use_statuses ? g->statuses : NULL);
  g->returned_at = coro_test_now_ms();
  for (size_t i = 0; i < g->n; i++)
    g->status_at_return[i] = coro_future_status(g->fs[i]);
  g->cancelling_after = coro_cancelling(coro_current());
  return NULL; /* handled: the gatherer itself ends normally */
}

static void release_all(coro_future **fs, size_t n) {
  for (size_t i = 0; i < n; i++) coro_future_release(fs[i]);
}

/* ---- results in argument order ------------------------------------------- */

static void *argument_order_main(void *arg) {
  (void)arg;
  for (int mode = 0; mode < 2; mode++) {
    coro_test_log_reset();
    child c[3];
    for (int i = 0; i < 3; i++) child_init(&c[i]);
    c[0].yields = 3, c[0].value = VAL(1), c[0].tag = "a";
    c[1].yields = 1, c[1].value = VAL(2), c[1].tag = "b";
    c[2].yields = 2, c[2].value = VAL(3), c[2].tag = "c";
    coro_future *fs[3];
    for (int i = 0; i < 3; i++) fs[i] = spawn_child(&c[i]);
    void *res[3] = {SENTINEL, SENTINEL, SENTINEL};
    int st[3] = {NOT_REACHED, NOT_REACHED, NOT_REACHED};
    CHECK_EQ(coro_gather(fs, 3, res, mode ? st : NULL), 0);
    CHECK(strcmp(coro_test_log(), "bca") == 0); /* finished out of order */
    CHECK_PTR_EQ(res[0], VAL(1));
    CHECK_PTR_EQ(res[1], VAL(2));
    CHECK_PTR_EQ(res[2], VAL(3));
    if (mode) {
      CHECK_EQ(st[0], 0);
      CHECK_EQ(st[1], 0);
      CHECK_EQ(st[2], 0);
    } else {
      CHECK_EQ(st[0], NOT_REACHED); /* NULL mode: statuses untouched */
    }
    for (int i = 0; i < 3; i++) CHECK_EQ(coro_future_status(fs[i]), 0);
    release_all(fs, 3);
  }
  return NULL;
}

static void test_gather_results_in_argument_order(void **state) {
  (void)state;
  assert_run_ok(argument_order_main);
}

/* Promises resolved in reverse order, one per iteration and all at once. */
static void *reverse_resolver(void *arg) {
  coro_future **ps = arg;
  for (int i = 9; i >= 0; i--) {
    if (i == 3)
      CHECK_EQ(coro_future_reject(ps[i], -EIO), 0);
    else
      CHECK_EQ(coro_future_resolve(ps[i], VAL(100 + i)), 0);
    if (i % 2) CHECK_EQ(coro_yield(), 0);
  }
  return NULL;
}

static void *reverse_promises_main(void *arg) {
  (void)arg;
  coro_future *ps[10], *r;
  void *res[10];
  int st[10];
  /* NULL mode, all succeed. */
  for (int i = 0; i < 10; i++) {
    CHECK_EQ(coro_future_new(&ps[i]), 0);
    res[i] = SENTINEL;
  }
  CHECK_EQ(coro_spawn(&r, reverse_resolver, ps), 0);
  /* p9..p4 succeed, then p3 fails: NULL mode returns that at once. */
  CHECK_ERR(coro_gather(ps, 10, res, NULL), -EIO);
  for (int i = 0; i < 10; i++) CHECK_PTR_EQ(res[i], SENTINEL);
  CHECK_ERR(coro_future_status(ps[0]), CORO_PENDING);
  CHECK_EQ(coro_await(r, NULL), 0);
  for (int i = 0; i < 10; i++) CHECK_PTR_EQ(res[i], SENTINEL);
  coro_future_release(r);
  release_all(ps, 10);

  /* Statuses mode. */
  for (int i = 0; i < 10; i++) {
    CHECK_EQ(coro_future_new(&ps[i]), 0);
    res[i] = SENTINEL;
    st[i] = NOT_REACHED;
  }
  CHECK_EQ(coro_spawn(&r, reverse_resolver, ps), 0);
  CHECK_EQ(coro_gather(ps, 10, res, st), 0);
  for (int i = 0; i < 10; i++) {
    if (i == 3) {
      CHECK_ERR(st[i], -EIO);
      CHECK(res[i] == NULL);
    } else {
      CHECK_EQ(st[i], 0);
      CHECK_PTR_EQ(res[i], VAL(100 + i));
    }
  }
  CHECK_EQ(coro_await(r, NULL), 0);
  coro_future_release(r);
  release_all(ps, 10);
  return NULL;
}

static void *all_resolve_reverse(void *arg) {
  coro_future **ps = arg;
  for (int i = 9; i >= 0; i--) {
    CHECK_EQ(coro_future_resolve(ps[i], VAL(100 + i)), 0);
    if (i % 3 == 0) CHECK_EQ(coro_yield(), 0);
  }
  return NULL;
}

static void *reverse_success_main(void *arg) {
  (void)arg;
  coro_future *ps[10], *r;
  void *res[10];
  for (int i = 0; i < 10; i++) {
    CHECK_EQ(coro_future_new(&ps[i]), 0);
    res[i] = SENTINEL;
  }
  CHECK_EQ(coro_spawn(&r, all_resolve_reverse, ps), 0);
  CHECK_EQ(coro_gather(ps, 10, res, NULL), 0);
  for (int i = 0; i < 10; i++) CHECK_PTR_EQ(res[i], VAL(100 + i));
  CHECK_EQ(coro_await(r, NULL), 0);
  coro_future_release(r);
  release_all(ps, 10);
  return NULL;
}

static void test_gather_promises_resolved_in_reverse(void **state) {
  (void)state;
  assert_run_ok(reverse_success_main);
  assert_run_ok(reverse_promises_main);
}

/* ---- n == 0, duplicates --------------------------------------------------- */

static int flag_ran;
static void *set_flag(void *arg) {
  (void)arg;
  flag_ran = 1;
  return NULL;
}

static void *empty_main(void *arg) {
  (void)arg;
  flag_ran = 0;
  coro_future *t, *one[1] = {NULL};
  void *res[1] = {SENTINEL};
  int st[1] = {NOT_REACHED};
  CHECK_EQ(coro_spawn(&t, set_flag, NULL), 0);
  CHECK_EQ(coro_gather(NULL, 0, NULL, NULL), 0);
  CHECK_EQ(coro_gather(NULL, 0, res, st), 0);
  CHECK_EQ(coro_gather(one, 0, res, NULL), 0); /* fs not read */
  CHECK_EQ(flag_ran, 0); /* "at once": nothing else ran meanwhile */
  CHECK_EQ(coro_await(t, NULL), 0);
  CHECK_EQ(flag_ran, 1);
  coro_future_release(t);
  return NULL;
}

static void test_gather_empty(void **state) {
  (void)state;
  assert_run_ok(empty_main);
}

static void *duplicate_main(void *arg) {
  (void)arg;
  child c[2];
  child_init(&c[0]);
  child_init(&c[1]);
  c[0].yields = 2, c[0].value = VAL(11);
  c[1].yields = 1, c[1].value = VAL(22);
  coro_future *a = spawn_child(&c[0]), *b = spawn_child(&c[1]);
  coro_future *fs[4] = {a, b, a, a};
  void *res[4] = {SENTINEL, SENTINEL, SENTINEL, SENTINEL};
  int st[4] = {NOT_REACHED, NOT_REACHED, NOT_REACHED, NOT_REACHED};
  CHECK_EQ(coro_gather(fs, 4, res, NULL), 0);
  CHECK(res[0] == VAL(11) && res[1] == VAL(22));
  CHECK(res[2] == VAL(11) && res[3] == VAL(11));
  coro_future_release(a);
  coro_future_release(b);

  /* A failing future listed twice: both slots get its error. */
  child_init(&c[0]);
  c[0].yields = 1, c[0].err = -ENOENT;
  a = spawn_child(&c[0]);
  coro_future *p;
  CHECK_EQ(coro_future_new(&p), 0);
  CHECK_EQ(coro_future_resolve(p, VAL(5)), 0);
  coro_future *fs2[4] = {a, p, a, p};
  for (int i = 0; i < 4; i++) res[i] = SENTINEL;
  CHECK_EQ(coro_gather(fs2, 4, res, st), 0);
  CHECK_ERR(st[0], -ENOENT);
  CHECK_EQ(st[1], 0);
  CHECK_ERR(st[2], -ENOENT);
  CHECK_EQ(st[3], 0);
  CHECK(res[0] == NULL && res[2] == NULL);
  CHECK(res[1] == VAL(5) && res[3] == VAL(5));
  for (int i = 0; i < 4; i++) res[i] = SENTINEL;
  CHECK_ERR(coro_gather(fs2, 4, res, NULL), -ENOENT);
  for (int i = 0; i < 4; i++) CHECK_PTR_EQ(res[i], SENTINEL);
  coro_future_release(a);
  coro_future_release(p);
  return NULL;
}

static void test_gather_duplicate_read_twice(void **state) {
  (void)state;
  assert_run_ok(duplicate_main);
}

/* ---- NULL mode: the first failure ------------------------------------------- */

static void *first_failure_main(void *arg) {
  (void)arg;
  coro_test_log_reset();
  child c[3];
  for (int i = 0; i < 3; i++) child_init(&c[i]);
  c[0].sleep_ms = 60, c[0].value = VAL(7), c[0].tag = "s"; /* sibling */
  c[1].sleep_ms = 10, c[1].err = -ENOENT, c[1].tag = "f";  /* fails first */
  c[2].sleep_ms = 30, c[2].err = -EIO, c[2].tag = "g";     /* fails later */
  coro_future *fs[3];
  for (int i = 0; i < 3; i++) fs[i] = spawn_child(&c[i]);
  void *res[3] = {SENTINEL, SENTINEL, SENTINEL};
  int64_t t0 = coro_test_now_ms();
  CHECK_ERR(coro_gather(fs, 3, res, NULL), -ENOENT);
  int64_t dt = coro_test_now_ms() - t0;
  CHECK_GE(dt, 10);
  CHECK(strcmp(coro_test_log(), "f") == 0);
  /* Returned at once: the siblings still run and were not cancelled. */
  CHECK_ERR(coro_future_status(fs[0]), CORO_PENDING);
  CHECK_ERR(coro_future_status(fs[2]), CORO_PENDING);
  CHECK_EQ(coro_cancelling(fs[0]), 0);
  CHECK_EQ(coro_cancelling(fs[2]), 0);
  CHECK_EQ(coro_cancelling(coro_current()), 0);
  for (int i = 0; i < 3; i++) CHECK_PTR_EQ(res[i], SENTINEL);
  void *v = NULL;
  CHECK_EQ(coro_await(fs[0], &v), 0);
  CHECK_PTR_EQ(v, VAL(7));
  CHECK_EQ(c[0].saw, 0); /* its sleep ended normally */
  CHECK_ERR(coro_await(fs[2], NULL), -EIO);
  CHECK(strcmp(coro_test_log(), "fgs") == 0);
  /* Nothing written after the call returned. */
  for (int i = 0; i < 3; i++) CHECK_PTR_EQ(res[i], SENTINEL);
  release_all(fs, 3);

  /* An input that has already failed. */
  coro_future *p, *q;
  CHECK_EQ(coro_future_new(&p), 0);
  CHECK_EQ(coro_future_new(&q), 0);
  CHECK_EQ(coro_future_reject(p, -EPIPE), 0);
  coro_future *fs2[2] = {q, p};
  CHECK_ERR(coro_gather(fs2, 2, res, NULL), -EPIPE);
  CHECK_ERR(coro_future_status(q), CORO_PENDING);
  CHECK_EQ(coro_future_resolve(q, NULL), 0);
  coro_future_release(p);
  coro_future_release(q);
  return NULL;
}

static void test_gather_first_failure_leaves_siblings_running(void **state) {
  (void)state;
  assert_run_ok(first_failure_main);
}

/* A child that ends cancelled: NULL mode returns -ECANCELED, but the caller
 * is not cancelled (asyncio test_one_cancellation). */
static void *child_cancelled_main(void *arg) {
  (void)arg;
  child c[2];
  child_init(&c[0]);
  child_init(&c[1]);
  c[0].sleep_ms = CORO_FOREVER;
  c[1].sleep_ms = 40, c[1].value = VAL(2);
  coro_future *a = spawn_child(&c[0]), *b = spawn_child(&c[1]), *p, *k;
  CHECK_EQ(coro_future_new(&p), 0);
  canceller kc = {a, 10};
  CHECK_EQ(coro_spawn(&k, canceller_fn, &kc), 0);
  coro_future *fs[3] = {p, a, b};
  void *res[3] = {SENTINEL, SENTINEL, SENTINEL};
  CHECK_ERR(coro_gather(fs, 3, res, NULL), -ECANCELED);
  CHECK_ERR(c[0].saw, -ECANCELED);
  CHECK_ERR(coro_future_status(a), -ECANCELED);
  CHECK_EQ(coro_cancelling(coro_current()), 0);
  CHECK_EQ(coro_sleep(1), 0); /* no cancellation pending for the caller */
  CHECK_EQ(coro_yield(), 0);
  CHECK_ERR(coro_future_status(p), CORO_PENDING); /* not cancelled */
  CHECK_ERR(coro_future_status(b), CORO_PENDING);
  CHECK_EQ(coro_cancelling(b), 0);
  for (int i = 0; i < 3; i++) CHECK_PTR_EQ(res[i], SENTINEL);
  void *v = NULL;
  CHECK_EQ(coro_await(b, &v), 0);
  CHECK_PTR_EQ(v, VAL(2));
  CHECK_EQ(c[1].saw, 0);
  CHECK_EQ(coro_await(k, NULL), 0);
  coro_future_release(k);
  coro_future_release(a);
  coro_future_release(b);

  /* The same with a promise cancelled directly. */
  child_init(&c[1]);
  c[1].sleep_ms = 30, c[1].value = VAL(3);
  b = spawn_child(&c[1]);
  kc.target = p;
  kc.ms = 5;
  CHECK_EQ(coro_spawn(&k, canceller_fn, &kc), 0);
  coro_future *fs2[2] = {b, p};
  CHECK_ERR(coro_gather(fs2, 2, res, NULL), -ECANCELED);
  CHECK_ERR(coro_future_status(p), -ECANCELED);
  CHECK_EQ(coro_cancelling(coro_current()), 0);
  CHECK_ERR(coro_future_status(b), CORO_PENDING);
  CHECK_EQ(coro_sleep(1), 0);
  CHECK_EQ(coro_await(b, &v), 0);
  CHECK_PTR_EQ(v, VAL(3));
  CHECK_EQ(coro_await(k, NULL), 0);
  coro_future_release(k);
  coro_future_release(b);
  coro_future_release(p);
  return NULL;
}

static void test_gather_child_cancelled_caller_not(void **state) {
  (void)state;
  assert_run_ok(child_cancelled_main);
}

/* ---- statuses mode --------------------------------------------------------- */

static void *statuses_main(void *arg) {
  (void)arg;
  coro_test_log_reset();
  child c[4];
  for (int i = 0; i < 4; i++) child_init(&c[i]);
  c[0].sleep_ms = 5, c[0].value = VAL(1), c[0].tag = "a";
  c[1].sleep_ms = 10, c[1].err = -ENOENT, c[1].tag = "b";
  c[2].sleep_ms = CORO_FOREVER, c[2].tag = "c"; /* cancelled at 15 ms */
  c[3].sleep_ms = 40, c[3].value = VAL(5), c[3].tag = "e";
  coro_future *fs[5], *k, *rs;
  fs[0] = spawn_child(&c[0]);
  fs[1] = spawn_child(&c[1]);
  fs[2] = spawn_child(&c[2]);
  CHECK_EQ(coro_future_new(&fs[3]), 0);
  fs[4] = spawn_child(&c[3]);
  canceller kc = {fs[2], 15};
  resolver rv = {fs[3], 25, VAL(4), 0};
  CHECK_EQ(coro_spawn(&k, canceller_fn, &kc), 0);
  CHECK_EQ(coro_spawn(&rs, resolver_fn, &rv), 0);
  void *res[5];
  int st[5];
  for (int i = 0; i < 5; i++) res[i] = SENTINEL, st[i] = NOT_REACHED;
  int64_t t0 = coro_test_now_ms();
  CHECK_EQ(coro_gather(fs, 5, res, st), 0);
  int64_t dt = coro_test_now_ms() - t0;
  CHECK_GE(dt, 40); /* waited for all */
  CHECK_LT(dt, 2000);
  CHECK(strcmp(coro_test_log(), "abce") == 0);
  CHECK_EQ(st[0], 0);
  CHECK_ERR(st[1], -ENOENT);
  CHECK_ERR(st[2], -ECANCELED);
  CHECK_EQ(st[3], 0);
  CHECK_EQ(st[4], 0);
  CHECK_PTR_EQ(res[0], VAL(1));
  CHECK(res[1] == NULL);
  CHECK(res[2] == NULL);
  CHECK_PTR_EQ(res[3], VAL(4));
  CHECK_PTR_EQ(res[4], VAL(5));
  for (int i = 0; i < 5; i++) CHECK_LE(coro_future_status(fs[i]), 0);
  CHECK_EQ(coro_cancelling(coro_current()), 0);
  CHECK_EQ(coro_sleep(1), 0);
  CHECK_EQ(coro_await(k, NULL), 0);
  CHECK_EQ(coro_await(rs, NULL), 0);
  coro_future_release(k);
  coro_future_release(rs);
  release_all(fs, 5);

  /* results may be NULL in statuses mode. */
  coro_future *p;
  CHECK_EQ(coro_future_new(&p), 0);
  CHECK_EQ(coro_future_reject(p, -EIO), 0);
  st[0] = NOT_REACHED;
  CHECK_EQ(coro_gather(&p, 1, NULL, st), 0);
  CHECK_ERR(st[0], -EIO);
  coro_future_release(p);
  return NULL;
}

static void test_gather_statuses_mode_waits_for_all(void **state) {
  (void)state;
  assert_run_ok(statuses_main);
}

/* ---- the caller cancelled ----------------------------------------------------- */

/* Children: c0 ends at once when cancelled, c1 cleans up for 100 ms, and a
 * promise. Both modes: every pending child is cancelled, -ECANCELED comes
 * back; NULL mode once the first child has finished, statuses mode once all
 * have. */
static void *outer_cancel_main(void *arg) {
  (void)arg;
  for (int mode = 0; mode < 2; mode++) {
    for (int with_promise = 0; with_promise < 2; with_promise++) {
      child c[3];
      for (int i = 0; i < 3; i++) child_init(&c[i]);
      c[0].sleep_ms = CORO_FOREVER;
      c[1].sleep_ms = CORO_FOREVER, c[1].cleanup_ms = 100;
      c[2].sleep_ms = 5, c[2].value = VAL(9); /* done before the cancel */
      gatherer g;
      gatherer_init(&g, mode);
      g.fs[0] = spawn_child(&c[0]);
      g.fs[1] = spawn_child(&c[1]);
      g.fs[2] = spawn_child(&c[2]);
      g.n = 3;
      if (with_promise) CHECK_EQ(coro_future_new(&g.fs[g.n++]), 0);
      coro_future *gt;
      CHECK_EQ(coro_spawn(&gt, gatherer_fn, &g), 0);
      CHECK_EQ(coro_sleep(20), 0);
      CHECK_EQ(coro_future_status(g.fs[2]), 0);
      CHECK_EQ(g.ret, NOT_REACHED);
      int64_t t0 = coro_test_now_ms();
      CHECK_EQ(coro_cancel(gt), 0);
      CHECK_EQ(coro_await(gt, NULL), 0);
      CHECK_ERR(g.ret, -ECANCELED);
      CHECK_EQ(g.cancelling_after, 1);
      if (with_promise) {
        /* A promise is cancelled at once by the request. */
        CHECK_ERR(coro_future_status(g.fs[3]), -ECANCELED);
        CHECK_ERR(g.status_at_return[3], -ECANCELED);
      }
      if (mode) {
        /* statuses mode: waited for every child's cleanup */
        for (size_t i = 0; i < g.n; i++) CHECK_LE(g.status_at_return[i], 0);
        CHECK_GE(g.returned_at - t0, 100);
      } else {
        /* NULL mode: the first finished child ends it; c1 still cleans up */
        CHECK_ERR(g.status_at_return[1], CORO_PENDING);
        if (!with_promise) CHECK_ERR(g.status_at_return[0], -ECANCELED);
      }
      CHECK_ERR(coro_await(g.fs[0], NULL), -ECANCELED);
      CHECK_ERR(coro_await(g.fs[1], NULL), -ECANCELED);
      void *v = NULL;
      CHECK_EQ(coro_await(g.fs[2], &v), 0); /* done before: untouched */
      CHECK_PTR_EQ(v, VAL(9));
      CHECK_EQ(coro_cancelling(g.fs[2]), 0);
      CHECK_ERR(c[0].saw, -ECANCELED);
      CHECK_ERR(c[1].saw, -ECANCELED);
      CHECK_EQ(c[1].cleanup_r, 0);
      CHECK_EQ(c[0].cleaned, 1);
      CHECK_EQ(c[1].cleaned, 1);
      CHECK_EQ(coro_cancelling(g.fs[0]), 1);
      CHECK_EQ(coro_cancelling(g.fs[1]), 1);
      coro_future_release(gt);
      release_all(g.fs, g.n);
    }
  }
  return NULL;
}

static void test_gather_outer_cancel_cancels_children(void **state) {
  (void)state;
  assert_run_ok(outer_cancel_main);
}

/* Cancelled after every child is done but before the gathering task ran
 * again: still -ECANCELED; the children's results stand. */
typedef struct late {
  coro_future *ps[2];
  coro_future *gt;
} late;

static void *resolve_then_cancel(void *arg) {
  late *l = arg;
  CHECK_EQ(coro_future_resolve(l->ps[0], VAL(1)), 0);
  CHECK_EQ(coro_future_resolve(l->ps[1], VAL(2)), 0);
  CHECK_EQ(coro_cancel(l->gt), 0);
  return NULL;
}

static void *cancel_after_done_main(void *arg) {
  (void)arg;
  for (int mode = 0; mode < 2; mode++) {
    gatherer g;
    gatherer_init(&g, mode);
    late l;
    CHECK_EQ(coro_future_new(&g.fs[0]), 0);
    CHECK_EQ(coro_future_new(&g.fs[1]), 0);
    g.n = 2;
    l.ps[0] = g.fs[0];
    l.ps[1] = g.fs[1];
    CHECK_EQ(coro_spawn(&l.gt, gatherer_fn, &g), 0);
    coro_future *r;
    /* The gatherer's first step runs before the resolver's. */
    CHECK_EQ(coro_spawn(&r, resolve_then_cancel, &l), 0);
    CHECK_EQ(coro_await(r, NULL), 0);
    CHECK_EQ(coro_await(l.gt, NULL), 0);
    CHECK_ERR(g.ret, -ECANCELED);
    CHECK_EQ(coro_future_status(g.fs[0]), 0);
    CHECK_EQ(coro_future_status(g.fs[1]), 0);
    CHECK_PTR_EQ(coro_future_value(g.fs[0]), VAL(1));
    CHECK_PTR_EQ(coro_future_value(g.fs[1]), VAL(2));
    coro_future_release(r);
    coro_future_release(l.gt);
    release_all(g.fs, g.n);
  }
  return NULL;
}

static void test_gather_cancel_after_children_done(void **state) {
  (void)state;
  assert_run_ok(cancel_after_done_main);
}

/* Children handle the cancellation and return normally: gather still
 * returns -ECANCELED (cancellation wins). */
static void *handled_main(void *arg) {
  (void)arg;
  for (int mode = 0; mode < 2; mode++) {
    child c[2];
    child_init(&c[0]);
    child_init(&c[1]);
    c[0].sleep_ms = CORO_FOREVER, c[0].handle = 1, c[0].value = VAL(11);
    c[1].sleep_ms = CORO_FOREVER, c[1].handle = 1, c[1].value = VAL(12);
    c[1].cleanup_ms = 10;
    gatherer g;
    gatherer_init(&g, mode);
    g.fs[0] = spawn_child(&c[0]);
    g.fs[1] = spawn_child(&c[1]);
    g.n = 2;
    coro_future *gt;
    CHECK_EQ(coro_spawn(&gt, gatherer_fn, &g), 0);
    CHECK_EQ(coro_sleep(5), 0);
    CHECK_EQ(coro_cancel(gt), 0);
    CHECK_EQ(coro_await(gt, NULL), 0);
    CHECK_ERR(g.ret, -ECANCELED);
    void *v = NULL;
    CHECK_EQ(coro_await(g.fs[0], &v), 0);
    CHECK_PTR_EQ(v, VAL(11));
    CHECK_EQ(coro_await(g.fs[1], &v), 0);
    CHECK_PTR_EQ(v, VAL(12));
    CHECK_ERR(c[0].saw, -ECANCELED);
    CHECK_ERR(c[1].saw, -ECANCELED);
    coro_future_release(gt);
    release_all(g.fs, g.n);
  }
  return NULL;
}

static void test_gather_cancellation_wins_over_handled_children(void **state) {
  (void)state;
  assert_run_ok(handled_main);
}

/* A cancellation requested before the call (the task cancelled itself) is
 * delivered at gather's suspension: the children are cancelled too. */
static void *self_cancel_gatherer(void *arg) {
  gatherer *g = arg;
  CHECK_EQ(coro_cancel(coro_current()), 0);
  return gatherer_fn(g);
}

static void *cancelled_before_main(void *arg) {
  (void)arg;
  for (int mode = 0; mode < 2; mode++) {
    child c;
    child_init(&c);
    c.sleep_ms = CORO_FOREVER;
    gatherer g;
    gatherer_init(&g, mode);
    g.fs[0] = spawn_child(&c);
    CHECK_EQ(coro_future_new(&g.fs[1]), 0);
    g.n = 2;
    coro_future *gt;
    CHECK_EQ(coro_yield(), 0); /* the child sleeps */
    CHECK_EQ(coro_spawn(&gt, self_cancel_gatherer, &g), 0);
    CHECK_EQ(coro_await(gt, NULL), 0);
    CHECK_ERR(g.ret, -ECANCELED);
    CHECK_ERR(coro_future_status(g.fs[1]), -ECANCELED);
    CHECK_ERR(coro_await(g.fs[0], NULL), -ECANCELED);
    CHECK_ERR(c.saw, -ECANCELED);
    coro_future_release(gt);
    release_all(g.fs, g.n);
  }
  return NULL;
}

static void test_gather_caller_cancelled_before_call(void **state) {
  (void)state;
  assert_run_ok(cancelled_before_main);
}

/* Failures gather has seen are not reported as unobserved, including a
 * sibling that fails after NULL mode returned (asyncio marks them
 * retrieved); a failure nobody looks at still is. */
static int reports;
static void count_report(coro_future *f, int err, void *data) {
  (void)f;
  (void)data;
  if (err == -EIO || err == -ENOENT || err == -EPIPE) reports++;
}

static void *observed_main(void *arg) {
  (void)arg;
  child c[3];
  for (int i = 0; i < 3; i++) child_init(&c[i]);
  c[0].sleep_ms = 5, c[0].err = -ENOENT;
  c[1].sleep_ms = 20, c[1].err = -EIO;
  coro_future *fs[2] = {spawn_child(&c[0]), spawn_child(&c[1])};
  CHECK_ERR(coro_gather(fs, 2, NULL, NULL), -ENOENT);
  release_all(fs, 2); /* never read again */
  CHECK_EQ(coro_sleep(40), 0);
  CHECK_EQ(c[1].saw, 0); /* it did fail, later */
  CHECK_EQ(reports, 0);
  /* The control: a failure nobody reads. */
  c[2].err = -EPIPE;
  coro_future *f = spawn_child(&c[2]);
  coro_future_release(f);
  CHECK_EQ(coro_sleep(5), 0);
  CHECK_EQ(reports, 1);
  return NULL;
}

static void test_gather_failures_marked_observed(void **state) {
  (void)state;
  reports = 0;
  coro_set_unobserved_handler(count_report, NULL);
  int r = coro_run(observed_main, NULL, NULL);
  coro_set_unobserved_handler(NULL, NULL);
  assert_coro_ok(r);
  assert_checks_passed();
  assert_int_equal(reports, 1);
}

/* ---- argument errors ------------------------------------------------------------- */

typedef struct cb_data {
  coro_future *pending;
  int ran;
  int r[4];
} cb_data;

static void gather_in_callback(coro_future *f, void *data) {
  cb_data *d = data;
  coro_future *one[1] = {f};
  coro_future *two[2] = {f, d->pending};
  int st[2];
  void *res[2];
  d->ran = 1;
  d->r[0] = coro_gather(one, 1, res, NULL);
  d->r[1] = coro_gather(one, 1, res, st);
  d->r[2] = coro_gather(two, 2, NULL, NULL);
  d->r[3] = coro_gather(two, 2, res, st);
}

static void *bad_args_main(void *arg) {
  (void)arg;
  coro_future *p, *q;
  CHECK_EQ(coro_future_new(&p), 0);
  CHECK_EQ(coro_future_new(&q), 0);
  void *res[3] = {SENTINEL, SENTINEL, SENTINEL};
  int st[3] = {NOT_REACHED, NOT_REACHED, NOT_REACHED};
  CHECK_ERR(coro_gather(NULL, 2, NULL, NULL), -EINVAL);
  CHECK_ERR(coro_gather(NULL, 1, res, st), -EINVAL);
  coro_future *with_null[3] = {p, NULL, q};
  CHECK_ERR(coro_gather(with_null, 3, res, NULL), -EINVAL);
  CHECK_ERR(coro_gather(with_null, 3, res, st), -EINVAL);
  coro_future *only_null[1] = {NULL};
  CHECK_ERR(coro_gather(only_null, 1, NULL, NULL), -EINVAL);
  /* Nothing was touched. */
  for (int i = 0; i < 3; i++) {
    CHECK_PTR_EQ(res[i], SENTINEL);
    CHECK_EQ(st[i], NOT_REACHED);
  }
  CHECK_ERR(coro_future_status(p), CORO_PENDING);
  CHECK_ERR(coro_future_status(q), CORO_PENDING);

  /* Outside a task: from a done callback. */
  cb_data d = {q, 0, {NOT_REACHED, NOT_REACHED, NOT_REACHED, NOT_REACHED}};
  CHECK_EQ(coro_future_resolve(p, VAL(1)), 0);
  CHECK_EQ(coro_future_on_done(p, gather_in_callback, &d), 0);
  CHECK_EQ(coro_sleep(5), 0);
  CHECK_EQ(d.ran, 1);
  for (int i = 0; i < 4; i++) CHECK_ERR(d.r[i], -EPERM);
  CHECK_ERR(coro_future_status(q), CORO_PENDING);
  coro_future_release(p);
  coro_future_release(q);
  return NULL;
}

/* A future of another loop (one that has ended). */
static coro_future *stale;

static void *make_stale_main(void *arg) {
  (void)arg;
  CHECK_EQ(coro_future_new(&stale), 0);
  return NULL;
}

static void *other_loop_main(void *arg) {
  (void)arg;
  coro_future *p;
  CHECK_EQ(coro_future_new(&p), 0);
  coro_future *fs[2] = {p, stale};
  int st[2];
  CHECK_ERR(coro_gather(fs, 2, NULL, NULL), -EPERM);
  CHECK_ERR(coro_gather(fs, 2, NULL, st), -EPERM);
  coro_future_release(p);
  return NULL;
}

static void test_gather_bad_args(void **state) {
  (void)state;
  assert_run_ok(bad_args_main);
  stale = NULL;
  assert_run_ok(make_stale_main);
  assert_non_null(stale);
  assert_run_ok(other_loop_main);
  coro_future_release(stale);
  stale = NULL;
}

/* ---- scale ---------------------------------------------------------------- */

#define MANY 100000

static void *many_child(void *arg) { return arg; }

static void *many_main(void *arg) {
  (void)arg;
  coro_future **fs = malloc(MANY * sizeof(*fs));
  void **res = malloc(MANY * sizeof(*res));
  CHECK(fs != NULL && res != NULL);
  if (fs == NULL || res == NULL) {
    free(fs);
    free(res);
    return NULL;
  }
  int64_t t0 = coro_test_now_ms();
  for (size_t i = 0; i < MANY; i++) {
    res[i] = SENTINEL;
    CHECK_EQ(coro_spawn(&fs[i], many_child, VAL(i + 1)), 0);
  }
  CHECK_EQ(coro_gather(fs, MANY, res, NULL), 0);
  int64_t dt = coro_test_now_ms() - t0;
  size_t bad = 0;
  for (size_t i = 0; i < MANY; i++) bad += res[i] != VAL(i + 1);
  CHECK_EQ(bad, 0);
  CHECK_LT(dt, 4000); /* a smoke bound: a few hundred ms expected */
  for (size_t i = 0; i < MANY; i++) coro_future_release(fs[i]);
  free(fs);
  free(res);
  return NULL;
}

static void test_gather_many_children(void **state) {
  (void)state;
  assert_run_ok(many_main);
}

/* ---- allocation failure ------------------------------------------------------ */

#define NALLOC 10000

typedef struct alloc_job {
  coro_future **ps;
} alloc_job;

/* Runs right after the gathering task suspends (or after it returned):
 * stops the allocation failures, then resolves everything. */
static void *alloc_resolver(void *arg) {
  alloc_job *j = arg;
  coro_test_fail_alloc_after(0);
  for (size_t i = 0; i < NALLOC; i++)
    CHECK_EQ(coro_future_resolve(j->ps[i], VAL(i + 7)), 0);
  return NULL;
}

static int enomem_seen, ok_seen;

static void *alloc_main(void *arg) {
  (void)arg;
  coro_future **ps = malloc(NALLOC * sizeof(*ps));
  void **res = malloc(NALLOC * sizeof(*res));
  int *st = malloc(NALLOC * sizeof(*st));
  CHECK(ps && res && st);
  if (!ps || !res || !st) {
    free(ps), free(res), free(st);
    return NULL;
  }
  for (long k = 1; k <= 16; k++) {
    int mode = (int)(k & 1);
    for (size_t i = 0; i < NALLOC; i++) {
      CHECK_EQ(coro_future_new(&ps[i]), 0);
      res[i] = SENTINEL;
    }
    alloc_job j = {ps};
    coro_future *r;
    CHECK_EQ(coro_spawn(&r, alloc_resolver, &j), 0);
    coro_test_fail_alloc_after(k);
    int got = coro_gather(ps, NALLOC, res, mode ? st : NULL);
    coro_test_fail_alloc_after(0);
    CHECK(got == 0 || got == -ENOMEM);
    if (got == -ENOMEM) {
      enomem_seen++;
      if (!mode)
        for (size_t i = 0; i < NALLOC; i++) CHECK_PTR_EQ(res[i], SENTINEL);
    } else if (got == 0) {
      ok_seen++;
      size_t bad = 0;
      for (size_t i = 0; i < NALLOC; i++) {
        bad += res[i] != VAL(i + 7);
        if (mode) bad += st[i] != 0;
      }
      CHECK_EQ(bad, 0);
    }
    CHECK_EQ(coro_await(r, NULL), 0);
    coro_future_release(r);
    release_all(ps, NALLOC);
  }
  free(ps), free(res), free(st);
  return NULL;
}

static void test_gather_alloc_failure(void **state) {
  (void)state;
  enomem_seen = ok_seen = 0;
  assert_run_ok(alloc_main);
  /* 10,000 futures cannot be tracked without heap memory, so the first
   * failed allocation must be seen; later ones may fall outside gather. */
  assert_true(enomem_seen >= 1);
}

int main(int argc, char **argv) {
  const struct CMUnitTest tests[] = {
#define T(x) cmocka_unit_test_setup_teardown(x, coro_test_setup, coro_test_teardown)
    T(test_gather_results_in_argument_order),
    T(test_gather_promises_resolved_in_reverse),
    T(test_gather_empty),
    T(test_gather_duplicate_read_twice),
    T(test_gather_first_failure_leaves_siblings_running),
    T(test_gather_child_cancelled_caller_not),
    T(test_gather_statuses_mode_waits_for_all),
    T(test_gather_outer_cancel_cancels_children),
    T(test_gather_cancel_after_children_done),
    T(test_gather_cancellation_wins_over_handled_children),
    T(test_gather_caller_cancelled_before_call),
    T(test_gather_failures_marked_observed),
    T(test_gather_bad_args),
    T(test_gather_many_children),
    T(test_gather_alloc_failure),
#undef T
  };
  return coro_test_main(argc, argv, tests, NULL, NULL);
}
