/* SPDX-License-Identifier: MIT */
/* coro_wait, coro_wait_for and coro_as_completed: asyncio.wait (3.12:
 * a timeout cancels nothing, the caller's cancellation does not reach
 * the futures), wait_for 3.12 (a timeout cancels and waits for the
 * cleanup, the caller's cancellation is never lost, gh-86296) and
 * as_completed (completion order, a timeout cancels nothing). */
#include "helpers.h"

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

/* Cancel and reap a task (end of a test). */
static void reap(coro_future *f) {
  coro_cancel(f);
  int r = coro_await(f, NULL);
  CHECK_LE(r, 0);
  coro_future_release(f);
}

static void release_all(coro_future **fs, size_t n) {
  for (size_t i = 0; i < n; i++) coro_future_release(fs[i]);
}

static int done_count(coro_future **fs, size_t n) {
  int k = 0;
  for (size_t i = 0; i < n; i++) k += coro_future_status(fs[i]) <= 0;
  return k;
}

static void *log_t(void *arg) {
  (void)arg;
  coro_test_note("t");
  return NULL;
}

/* ==== coro_wait ============================================================= */

static void *wait_all_main(void *arg) {
  (void)arg;
  coro_test_log_reset();
  child c[3];
  for (int i = 0; i < 3; i++) child_init(&c[i]);
  c[0].sleep_ms = 10, c[0].tag = "a";
  c[1].sleep_ms = 30, c[1].tag = "b", c[1].err = -EIO;
  c[2].sleep_ms = 20, c[2].tag = "c";
  coro_future *fs[3];
  for (int i = 0; i < 3; i++) fs[i] = spawn_child(&c[i]);
  int64_t t0 = coro_test_now_ms();
  CHECK_EQ(coro_wait(fs, 3, CORO_ALL_COMPLETED, CORO_FOREVER), 3);
  int64_t dt = coro_test_now_ms() - t0;
  CHECK_GE(dt, 30);
  CHECK_LT(dt, 1000);
  CHECK(strcmp(coro_test_log(), "acb") == 0);
  CHECK_EQ(done_count(fs, 3), 3);
  CHECK_ERR(coro_future_status(fs[1]), -EIO);
  /* A finite timeout that is not reached. */
  release_all(fs, 3);
  for (int i = 0; i < 3; i++) child_init(&c[i]), c[i].sleep_ms = 5 * (i + 1);
  for (int i = 0; i < 3; i++) fs[i] = spawn_child(&c[i]);
  CHECK_EQ(coro_wait(fs, 3, CORO_ALL_COMPLETED, 5000), 3);
  CHECK_EQ(done_count(fs, 3), 3);
  release_all(fs, 3);
  return NULL;
}

static void test_wait_all_completed(void **state) {
  (void)state;
  assert_run_ok(wait_all_main);
}

static void *wait_first_main(void *arg) {
  (void)arg;
  child c[3];
  for (int i = 0; i < 3; i++) child_init(&c[i]);
  c[0].sleep_ms = CORO_FOREVER;
  c[1].sleep_ms = 10;
  c[2].sleep_ms = CORO_FOREVER;
  coro_future *fs[4];
  for (int i = 0; i < 3; i++) fs[i] = spawn_child(&c[i]);
  fs[3] = new_promise();
  int64_t t0 = coro_test_now_ms();
  CHECK_EQ(coro_wait(fs, 4, CORO_FIRST_COMPLETED, CORO_FOREVER), 1);
  CHECK_GE(coro_test_now_ms() - t0, 10);
  CHECK_EQ(coro_future_status(fs[1]), 0);
  CHECK_ERR(coro_future_status(fs[0]), CORO_PENDING);
  CHECK_ERR(coro_future_status(fs[2]), CORO_PENDING);
  CHECK_ERR(coro_future_status(fs[3]), CORO_PENDING);
  CHECK_EQ(coro_cancelling(fs[0]), 0);
  CHECK_EQ(coro_cancelling(fs[2]), 0);
  CHECK_EQ(coro_yield(), 0);
  CHECK_EQ(c[0].saw, NOT_REACHED); /* still sleeping */
  /* A promise first. */
  canceller kc = {fs[3], 5};
  coro_future *k;
  CHECK_EQ(coro_spawn(&k, canceller_fn, &kc), 0);
  coro_future *fs2[3] = {fs[0], fs[3], fs[2]};
  CHECK_EQ(coro_wait(fs2, 3, CORO_FIRST_COMPLETED, CORO_FOREVER), 1);
  CHECK_ERR(coro_future_status(fs[3]), -ECANCELED);
  CHECK_ERR(coro_future_status(fs[0]), CORO_PENDING);
  CHECK_EQ(coro_await(k, NULL), 0);
  coro_future_release(k);
  reap(fs[0]);
  reap(fs[2]);
  coro_future_release(fs[1]);
  coro_future_release(fs[3]);
  return NULL;
}

static void test_wait_first_completed(void **state) {
  (void)state;
  assert_run_ok(wait_first_main);
}

/* Several finishing in the same iteration all count (test_wait_really_done):
 * the set is computed when the waiter runs. */
static void *resolve_two(void *arg) {
  coro_future **ps = arg;
  CHECK_EQ(coro_future_resolve(ps[0], VAL(1)), 0);
  CHECK_EQ(coro_future_reject(ps[1], -ENOENT), 0);
  return NULL;
}

static void *really_done_main(void *arg) {
  (void)arg;
  /* Two tasks that each yield once and end in the same iteration. */
  child c[3];
  for (int i = 0; i < 3; i++) child_init(&c[i]);
  c[0].yields = 1;
  c[1].yields = 1;
  c[2].sleep_ms = CORO_FOREVER;
  coro_future *fs[3];
  for (int i = 0; i < 3; i++) fs[i] = spawn_child(&c[i]);
  coro_future *order[3] = {fs[2], fs[1], fs[0]};
  CHECK_EQ(coro_wait(order, 3, CORO_FIRST_COMPLETED, CORO_FOREVER), 2);
  CHECK_EQ(coro_future_status(fs[0]), 0);
  CHECK_EQ(coro_future_status(fs[1]), 0);
  reap(fs[2]);
  coro_future_release(fs[0]);
  coro_future_release(fs[1]);

  /* Two promises resolved in one step of another task. */
  coro_future *ps[3] = {new_promise(), new_promise(), new_promise()}, *r;
  CHECK_EQ(coro_spawn(&r, resolve_two, ps), 0);
  CHECK_EQ(coro_wait(ps, 3, CORO_FIRST_COMPLETED, CORO_FOREVER), 2);
  CHECK_ERR(coro_future_status(ps[2]), CORO_PENDING);
  CHECK_EQ(coro_await(r, NULL), 0);
  coro_future_release(r);
  /* The same for FIRST_EXCEPTION: the rejection wakes it, both count. */
  coro_future *qs[3] = {new_promise(), new_promise(), ps[2]};
  CHECK_EQ(coro_spawn(&r, resolve_two, qs), 0);
  CHECK_EQ(coro_wait(qs, 3, CORO_FIRST_EXCEPTION, CORO_FOREVER), 2);
  CHECK_EQ(coro_await(r, NULL), 0);
  coro_future_release(r);
  CHECK_ERR(coro_future_status(ps[1]), -ENOENT);
  CHECK_ERR(coro_future_status(qs[1]), -ENOENT);
  release_all(ps, 3);
  release_all(qs, 2);
  return NULL;
}

static void test_wait_first_completed_counts_all_done(void **state) {
  (void)state;
  assert_run_ok(really_done_main);
}

static void *first_exception_main(void *arg) {
  (void)arg;
  child c[3];
  coro_future *fs[3];
  int64_t t0;

  /* Returns on the first error. */
  for (int i = 0; i < 3; i++) child_init(&c[i]);
  c[0].sleep_ms = 5;                     /* succeeds first */
  c[1].sleep_ms = 15, c[1].err = -EIO;   /* fails */
  c[2].sleep_ms = CORO_FOREVER;
  for (int i = 0; i < 3; i++) fs[i] = spawn_child(&c[i]);
  t0 = coro_test_now_ms();
  CHECK_EQ(coro_wait(fs, 3, CORO_FIRST_EXCEPTION, CORO_FOREVER), 2);
  CHECK_GE(coro_test_now_ms() - t0, 15);
  CHECK_ERR(coro_future_status(fs[1]), -EIO);
  CHECK_ERR(coro_future_status(fs[2]), CORO_PENDING);
  CHECK_EQ(coro_cancelling(fs[2]), 0);
  reap(fs[2]);
  release_all(fs, 2);

  /* A cancellation is not an exception: it goes on until all are done. */
  for (int i = 0; i < 3; i++) child_init(&c[i]);
  c[0].sleep_ms = CORO_FOREVER;          /* cancelled at 5 ms */
  c[1].sleep_ms = 40;
  c[2].sleep_ms = 10;
  for (int i = 0; i < 3; i++) fs[i] = spawn_child(&c[i]);
  canceller kc = {fs[0], 5};
  coro_future *k;
  CHECK_EQ(coro_spawn(&k, canceller_fn, &kc), 0);
  t0 = coro_test_now_ms();
  CHECK_EQ(coro_wait(fs, 3, CORO_FIRST_EXCEPTION, CORO_FOREVER), 3);
  CHECK_GE(coro_test_now_ms() - t0, 40);
  CHECK_ERR(coro_future_status(fs[0]), -ECANCELED);
  CHECK_EQ(coro_future_status(fs[1]), 0);
  CHECK_EQ(coro_await(k, NULL), 0);
  coro_future_release(k);
  release_all(fs, 3);

  /* A cancelled promise, too. */
  coro_future *p = new_promise();
  child_init(&c[0]);
  c[0].sleep_ms = 30;
  fs[0] = spawn_child(&c[0]);
  kc.target = p;
  kc.ms = 5;
  CHECK_EQ(coro_spawn(&k, canceller_fn, &kc), 0);
  coro_future *pf[2] = {p, fs[0]};
  t0 = coro_test_now_ms();
  CHECK_EQ(coro_wait(pf, 2, CORO_FIRST_EXCEPTION, CORO_FOREVER), 2);
  CHECK_GE(coro_test_now_ms() - t0, 30);
  CHECK_EQ(coro_await(k, NULL), 0);
  coro_future_release(k);
  coro_future_release(p);
  coro_future_release(fs[0]);

  /* Nothing fails: like ALL_COMPLETED. */
  for (int i = 0; i < 2; i++) child_init(&c[i]);
  c[0].sleep_ms = 10;
  c[1].sleep_ms = 30;
  for (int i = 0; i < 2; i++) fs[i] = spawn_child(&c[i]);
  t0 = coro_test_now_ms();
  CHECK_EQ(coro_wait(fs, 2, CORO_FIRST_EXCEPTION, CORO_FOREVER), 2);
  CHECK_GE(coro_test_now_ms() - t0, 30);
  release_all(fs, 2);

  /* An input that has already failed: returns after one trip. */
  coro_test_log_reset();
  child_init(&c[0]);
  c[0].sleep_ms = CORO_FOREVER;
  fs[0] = spawn_child(&c[0]);
  fs[1] = done_promise(NULL, -ENOENT);
  coro_future *t;
  CHECK_EQ(coro_spawn(&t, log_t, NULL), 0);
  CHECK_EQ(coro_wait(fs, 2, CORO_FIRST_EXCEPTION, CORO_FOREVER), 1);
  coro_test_note("m");
  CHECK(strcmp(coro_test_log(), "tm") == 0);
  CHECK_ERR(coro_future_status(fs[0]), CORO_PENDING);
  CHECK_EQ(c[0].saw, NOT_REACHED);
  CHECK_EQ(coro_await(t, NULL), 0);
  coro_future_release(t);
  reap(fs[0]);
  CHECK_ERR(coro_future_status(fs[1]), -ENOENT);
  coro_future_release(fs[1]);
  return NULL;
}

static void test_wait_first_exception(void **state) {
  (void)state;
  assert_run_ok(first_exception_main);
}

/* Inputs already done count at once, but the call still makes one trip
 * around the loop: a task that was ready runs before it returns. */
static void *already_done_main(void *arg) {
  (void)arg;
  coro_future *fs[3] = {done_promise(VAL(1), 0), done_promise(NULL, -EIO),
                        new_promise()};
  static const int modes[3] = {CORO_ALL_COMPLETED, CORO_FIRST_COMPLETED,
                               CORO_FIRST_EXCEPTION};
  for (int m = 0; m < 3; m++) {
    coro_test_log_reset();
    coro_future *t;
    CHECK_EQ(coro_spawn(&t, log_t, NULL), 0);
    CHECK_EQ(coro_wait(fs, 2, modes[m], CORO_FOREVER), 2);
    coro_test_note("m");
    CHECK(strcmp(coro_test_log(), "tm") == 0);
    coro_future_release(t);
  }
  /* With a pending one: FIRST_COMPLETED returns after the trip. */
  coro_test_log_reset();
  coro_future *t;
  CHECK_EQ(coro_spawn(&t, log_t, NULL), 0);
  coro_future *fs2[2] = {fs[2], fs[0]};
  CHECK_EQ(coro_wait(fs2, 2, CORO_FIRST_COMPLETED, CORO_FOREVER), 1);
  coro_test_note("m");
  CHECK(strcmp(coro_test_log(), "tm") == 0);
  CHECK_ERR(coro_future_status(fs[2]), CORO_PENDING);
  coro_future_release(t);
  CHECK_ERR(coro_future_status(fs[1]), -EIO);
  release_all(fs, 3);
  return NULL;
}

static void test_wait_already_done_yields_once(void **state) {
  (void)state;
  assert_run_ok(already_done_main);
}

static void *wait_timeout_main(void *arg) {
  (void)arg;
  child c[2];
  child_init(&c[0]);
  child_init(&c[1]);
  c[0].sleep_ms = 10;
  c[1].sleep_ms = 150, c[1].value = VAL(2);
  coro_future *fs[3];
  fs[0] = spawn_child(&c[0]);
  fs[1] = spawn_child(&c[1]);
  fs[2] = new_promise();
  int64_t t_start = coro_test_now_ms(), t0 = t_start;
  CHECK_EQ(coro_wait(fs, 3, CORO_ALL_COMPLETED, 50), 1);
  int64_t dt = coro_test_now_ms() - t0;
  CHECK_GE(dt, 50);
  CHECK_LT(dt, 1000);
  /* Nothing cancelled. */
  CHECK_ERR(coro_future_status(fs[1]), CORO_PENDING);
  CHECK_ERR(coro_future_status(fs[2]), CORO_PENDING);
  CHECK_EQ(coro_cancelling(fs[1]), 0);
  CHECK_EQ(coro_cancelling(coro_current()), 0);
  /* FIRST_COMPLETED with nothing finishing in time: 0. */
  coro_future *fs2[2] = {fs[2], fs[1]};
  t0 = coro_test_now_ms();
  CHECK_EQ(coro_wait(fs2, 2, CORO_FIRST_COMPLETED, 20), 0);
  CHECK_GE(coro_test_now_ms() - t0, 20);
  CHECK_ERR(coro_future_status(fs[2]), CORO_PENDING);
  CHECK_EQ(coro_sleep(1), 0); /* no cancellation left for the caller */
  /* The pending ones finish later. */
  void *v = NULL;
  CHECK_EQ(coro_await(fs[1], &v), 0);
  CHECK_PTR_EQ(v, VAL(2));
  CHECK_EQ(c[1].saw, 0);
  CHECK_GE(coro_test_now_ms() - t_start, 150); /* it slept after t_start */
  CHECK_EQ(coro_future_resolve(fs[2], VAL(3)), 0);
  release_all(fs, 3);
  return NULL;
}

static void test_wait_timeout_cancels_nothing(void **state) {
  (void)state;
  assert_run_ok(wait_timeout_main);
}

static void *wait_timeout_zero_main(void *arg) {
  (void)arg;
  child c;
  child_init(&c);
  c.value = VAL(4); /* ends in its first step */
  coro_future *fs[3] = {done_promise(VAL(1), 0), spawn_child(&c),
                        new_promise()};
  int64_t t0 = coro_test_now_ms();
  CHECK_EQ(coro_wait(fs, 3, CORO_ALL_COMPLETED, 0), 2);
  CHECK_LT(coro_test_now_ms() - t0, 1000);
  CHECK_EQ(coro_future_status(fs[1]), 0);
  CHECK_ERR(coro_future_status(fs[2]), CORO_PENDING);
  CHECK_EQ(coro_wait(fs + 2, 1, CORO_FIRST_COMPLETED, 0), 0);
  CHECK_ERR(coro_future_status(fs[2]), CORO_PENDING);
  release_all(fs, 3);
  return NULL;
}

static void test_wait_timeout_zero(void **state) {
  (void)state;
  assert_run_ok(wait_timeout_zero_main);
}

static void *wait_duplicates_main(void *arg) {
  (void)arg;
  coro_future *a = done_promise(VAL(1), 0), *b = new_promise();
  coro_future *fs[4] = {a, b, a, a};
  CHECK_EQ(coro_wait(fs, 4, CORO_ALL_COMPLETED, 10), 3);
  CHECK_EQ(coro_wait(fs, 4, CORO_FIRST_COMPLETED, CORO_FOREVER), 3);
  CHECK_EQ(coro_future_resolve(b, NULL), 0);
  CHECK_EQ(coro_wait(fs, 4, CORO_ALL_COMPLETED, CORO_FOREVER), 4);
  coro_future_release(a);
  coro_future_release(b);
  return NULL;
}

static void test_wait_duplicates_count_twice(void **state) {
  (void)state;
  assert_run_ok(wait_duplicates_main);
}

/* The task in coro_wait is cancelled: -ECANCELED, the futures go on
 * (test_yield_wait_does_not_shield_cancel). */
typedef struct waiter {
  coro_future *fs[4];
  size_t n;
  int64_t timeout;
  int ret;
  int cancelling_after;
  int pending_at_return;
} waiter;

static void *waiter_fn(void *arg) {
  waiter *w = arg;
  w->ret = coro_wait(w->fs, w->n, CORO_ALL_COMPLETED, w->timeout);
  w->cancelling_after = coro_cancelling(coro_current());
  w->pending_at_return = (int)w->n - done_count(w->fs, w->n);
  return NULL;
}

static void *wait_cancelled_main(void *arg) {
  (void)arg;
  for (int variant = 0; variant < 2; variant++) {
    child c;
    child_init(&c);
    c.sleep_ms = 50, c.value = VAL(1);
    waiter w;
    memset(&w, 0, sizeof(w));
    w.ret = NOT_REACHED;
    w.fs[0] = spawn_child(&c);
    w.fs[1] = new_promise();
    w.n = 2;
    w.timeout = variant ? 5000 : CORO_FOREVER;
    coro_future *wt;
    CHECK_EQ(coro_spawn(&wt, waiter_fn, &w), 0);
    CHECK_EQ(coro_sleep(10), 0);
    CHECK_EQ(coro_cancel(wt), 0);
    CHECK_EQ(coro_await(wt, NULL), 0);
    CHECK_ERR(w.ret, -ECANCELED);
    CHECK_EQ(w.cancelling_after, 1);
    CHECK_EQ(w.pending_at_return, 2);
    /* Not cancelled: the task finishes its sleep, the promise is pending. */
    CHECK_ERR(coro_future_status(w.fs[1]), CORO_PENDING);
    CHECK_EQ(coro_cancelling(w.fs[0]), 0);
    void *v = NULL;
    CHECK_EQ(coro_await(w.fs[0], &v), 0);
    CHECK_PTR_EQ(v, VAL(1));
    CHECK_EQ(c.saw, 0);
    CHECK_EQ(coro_future_resolve(w.fs[1], NULL), 0);
    coro_future_release(wt);
    release_all(w.fs, w.n);
  }
  return NULL;
}

static void test_wait_caller_cancelled_futures_not(void **state) {
  (void)state;
  assert_run_ok(wait_cancelled_main);
}

/* ---- argument errors (all four calls) ---------------------------------------- */

typedef struct cb_data {
  coro_future *pending;
  coro_as_completed *it;
  int ran;
  int r[6];
} cb_data;

static void call_in_callback(coro_future *f, void *data) {
  cb_data *d = data;
  coro_future *fs[2] = {f, d->pending};
  coro_future *got = NULL;
  void *v;
  d->ran = 1;
  d->r[0] = coro_wait(fs, 1, CORO_ALL_COMPLETED, CORO_FOREVER);
  d->r[1] = coro_wait(fs, 2, CORO_FIRST_COMPLETED, 0);
  d->r[2] = coro_wait_for(f, 10, &v);
  d->r[3] = coro_wait_for(d->pending, 10, &v);
  d->r[4] = coro_wait_for(d->pending, CORO_FOREVER, &v);
  d->r[5] = coro_as_completed_next(d->it, &got);
}

static void *wait_bad_args_main(void *arg) {
  (void)arg;
  coro_future *p = new_promise(), *q = new_promise();
  coro_future *fs[2] = {p, q};
  coro_future *with_null[2] = {p, NULL};
  void *v = SENTINEL;
  /* coro_wait */
  CHECK_ERR(coro_wait(fs, 0, CORO_ALL_COMPLETED, CORO_FOREVER), -EINVAL);
  CHECK_ERR(coro_wait(NULL, 0, CORO_ALL_COMPLETED, CORO_FOREVER), -EINVAL);
  CHECK_ERR(coro_wait(NULL, 2, CORO_ALL_COMPLETED, CORO_FOREVER), -EINVAL);
  CHECK_ERR(coro_wait(with_null, 2, CORO_ALL_COMPLETED, CORO_FOREVER), -EINVAL);
  CHECK_ERR(coro_wait(fs, 2, 3, CORO_FOREVER), -EINVAL);
  CHECK_ERR(coro_wait(fs, 2, -1, CORO_FOREVER), -EINVAL);
  CHECK_ERR(coro_wait(fs, 2, CORO_ALL_COMPLETED, -2), -EINVAL);
  /* coro_wait_for */
  CHECK_ERR(coro_wait_for(NULL, 10, &v), -EINVAL);
  CHECK_ERR(coro_wait_for(p, -2, &v), -EINVAL);
  CHECK_ERR(coro_wait_for(coro_current(), 10, &v), -EDEADLK);
  CHECK_ERR(coro_wait_for(coro_current(), CORO_FOREVER, &v), -EDEADLK);
  /* as_completed */
  coro_as_completed *it = NULL;
  CHECK_ERR(coro_as_completed_new(NULL, fs, 2, CORO_FOREVER), -EINVAL);
  CHECK_ERR(coro_as_completed_new(&it, NULL, 2, CORO_FOREVER), -EINVAL);
  CHECK_ERR(coro_as_completed_new(&it, with_null, 2, CORO_FOREVER), -EINVAL);
  CHECK_ERR(coro_as_completed_new(&it, fs, 2, -2), -EINVAL);
  CHECK(it == NULL);
  coro_future *got = NULL;
  CHECK_ERR(coro_as_completed_next(NULL, &got), -EINVAL);
  coro_as_completed_free(NULL);
  /* Nothing was cancelled or completed by any of this. */
  CHECK_ERR(coro_future_status(p), CORO_PENDING);
  CHECK_ERR(coro_future_status(q), CORO_PENDING);
  CHECK_EQ(coro_cancelling(coro_current()), 0);

  /* Outside a task: from a done callback. */
  CHECK_EQ(coro_as_completed_new(&it, fs + 1, 1, CORO_FOREVER), 0);
  cb_data d;
  memset(&d, 0, sizeof(d));
  d.pending = q;
  d.it = it;
  for (int i = 0; i < 6; i++) d.r[i] = NOT_REACHED;
  CHECK_EQ(coro_future_resolve(p, VAL(1)), 0);
  CHECK_EQ(coro_future_on_done(p, call_in_callback, &d), 0);
  CHECK_EQ(coro_sleep(5), 0);
  CHECK_EQ(d.ran, 1);
  for (int i = 0; i < 6; i++) CHECK_ERR(d.r[i], -EPERM);
  CHECK_ERR(coro_future_status(q), CORO_PENDING);
  coro_as_completed_free(it);
  coro_future_release(p);
  coro_future_release(q);
  return NULL;
}

static coro_future *stale;

static void *make_stale_main(void *arg) {
  (void)arg;
  CHECK_EQ(coro_future_new(&stale), 0);
  return NULL;
}

static void *other_loop_main(void *arg) {
  (void)arg;
  coro_future *p = new_promise();
  coro_future *fs[2] = {p, stale};
  void *v;
  CHECK_ERR(coro_wait(fs, 2, CORO_ALL_COMPLETED, 10), -EPERM);
  CHECK_ERR(coro_wait_for(stale, 10, &v), -EPERM);
  CHECK_ERR(coro_wait_for(stale, CORO_FOREVER, &v), -EPERM);
  coro_future_release(p);
  return NULL;
}

static void test_wait_bad_args(void **state) {
  (void)state;
  assert_run_ok(wait_bad_args_main);
  stale = NULL;
  assert_run_ok(make_stale_main);
  assert_non_null(stale);
  assert_run_ok(other_loop_main);
  coro_future_release(stale);
  stale = NULL;
}

/* ==== coro_wait_for ========================================================= */

static void *wait_for_in_time_main(void *arg) {
  (void)arg;
  child c;
  child_init(&c);
  c.sleep_ms = 10, c.value = VAL(5);
  coro_future *f = spawn_child(&c);
  void *v = NULL;
  int64_t t0 = coro_test_now_ms();
  CHECK_EQ(coro_wait_for(f, 1000, &v), 0);
  int64_t dt = coro_test_now_ms() - t0;
  CHECK_PTR_EQ(v, VAL(5));
  CHECK_GE(dt, 10);
  CHECK_LT(dt, 1000);
  CHECK_EQ(c.saw, 0);
  CHECK_EQ(coro_cancelling(f), 0);
  CHECK_EQ(coro_cancelling(coro_current()), 0);
  coro_future_release(f);
  /* A failure in time is returned as is. */
  child_init(&c);
  c.sleep_ms = 5, c.err = -ENOENT;
  f = spawn_child(&c);
  CHECK_ERR(coro_wait_for(f, 1000, &v), -ENOENT);
  coro_future_release(f);
  /* The timer is gone: nothing fires later. */
  CHECK_EQ(coro_sleep(20), 0);
  return NULL;
}

static void test_wait_for_in_time(void **state) {
  (void)state;
  assert_run_ok(wait_for_in_time_main);
}

static void *wait_for_timeout_main(void *arg) {
  (void)arg;
  coro_test_log_reset();
  child c;
  child_init(&c);
  c.sleep_ms = CORO_FOREVER, c.cleanup_ms = 40, c.tag = "c";
  coro_future *f = spawn_child(&c);
  void *v = SENTINEL;
  int64_t t0 = coro_test_now_ms();
  int r = coro_wait_for(f, 30, &v);
  coro_test_note("w");
  int64_t dt = coro_test_now_ms() - t0;
  CHECK_ERR(r, -ETIMEDOUT);
  CHECK_GE(dt, 70); /* the timeout plus the cleanup */
  CHECK_LT(dt, 1500);
  CHECK(strcmp(coro_test_log(), "cw") == 0);
  CHECK_ERR(c.saw, -ECANCELED);
  CHECK_EQ(c.cleanup_r, 0);
  CHECK_EQ(c.cleaned, 1);
  CHECK_ERR(coro_future_status(f), -ECANCELED);
  /* The caller's cancellation count is as before and nothing is left. */
  CHECK_EQ(coro_cancelling(coro_current()), 0);
  CHECK_EQ(coro_sleep(1), 0);
  CHECK_EQ(coro_yield(), 0);
  coro_future_release(f);

  /* A promise: cancelled at once. */
  coro_future *p = new_promise();
  t0 = coro_test_now_ms();
  CHECK_ERR(coro_wait_for(p, 20, &v), -ETIMEDOUT);
  dt = coro_test_now_ms() - t0;
  CHECK_GE(dt, 20);
  CHECK_LT(dt, 1000);
  CHECK_ERR(coro_future_status(p), -ECANCELED);
  CHECK_EQ(coro_cancelling(coro_current()), 0);
  CHECK_EQ(coro_sleep(1), 0);
  coro_future_release(p);

  /* A cancellation handled earlier leaves the count at 1: a timeout still
   * gives -ETIMEDOUT and the count stays 1. */
  canceller kc = {coro_current(), 1};
  coro_future *k;
  CHECK_EQ(coro_spawn(&k, canceller_fn, &kc), 0);
  CHECK_ERR(coro_sleep(CORO_FOREVER), -ECANCELED);
  CHECK_EQ(coro_cancelling(coro_current()), 1);
  CHECK_EQ(coro_await(k, NULL), 0);
  coro_future_release(k);
  p = new_promise();
  CHECK_ERR(coro_wait_for(p, 10, &v), -ETIMEDOUT);
  CHECK_EQ(coro_cancelling(coro_current()), 1);
  CHECK_EQ(coro_sleep(1), 0);
  coro_future_release(p);
  return NULL;
}

static void test_wait_for_timeout_waits_for_cleanup(void **state) {
  (void)state;
  assert_run_ok(wait_for_timeout_main);
}

static void *wait_for_handled_main(void *arg) {
  (void)arg;
  child c;
  child_init(&c);
  c.sleep_ms = CORO_FOREVER, c.cleanup_ms = 10, c.handle = 1, c.value = VAL(42);
  coro_future *f = spawn_child(&c);
  void *v = NULL;
  CHECK_EQ(coro_wait_for(f, 20, &v), 0);
  CHECK_PTR_EQ(v, VAL(42));
  CHECK_ERR(c.saw, -ECANCELED);
  CHECK_EQ(coro_future_status(f), 0);
  CHECK_EQ(coro_cancelling(coro_current()), 0);
  CHECK_EQ(coro_sleep(1), 0);
  coro_future_release(f);

  /* Another error during the cancellation: that error. */
  child_init(&c);
  c.sleep_ms = CORO_FOREVER, c.cleanup_ms = 5, c.cancel_err = -EIO;
  f = spawn_child(&c);
  CHECK_ERR(coro_wait_for(f, 20, &v), -EIO);
  CHECK_EQ(c.cleaned, 1);
  CHECK_ERR(coro_future_status(f), -EIO);
  CHECK_EQ(coro_cancelling(coro_current()), 0);
  CHECK_EQ(coro_sleep(1), 0);
  coro_future_release(f);
  return NULL;
}

static void test_wait_for_inner_outcome_during_cancel(void **state) {
  (void)state;
  assert_run_ok(wait_for_handled_main);
}

static void *wait_for_zero_main(void *arg) {
  (void)arg;
  void *v = NULL;
  coro_future *p = done_promise(VAL(9), 0);
  CHECK_EQ(coro_wait_for(p, 0, &v), 0);
  CHECK_PTR_EQ(v, VAL(9));
  coro_future_release(p);
  p = done_promise(NULL, -ENOENT);
  CHECK_ERR(coro_wait_for(p, 0, &v), -ENOENT);
  coro_future_release(p);
  /* A finished task. */
  child c;
  child_init(&c);
  c.value = VAL(8);
  coro_future *f = spawn_child(&c);
  CHECK_EQ(coro_sleep(1), 0);
  CHECK_EQ(coro_future_status(f), 0);
  CHECK_EQ(coro_wait_for(f, 0, &v), 0);
  CHECK_PTR_EQ(v, VAL(8));
  coro_future_release(f);
  /* A task not started yet: its body never runs. */
  child_init(&c);
  c.value = VAL(8);
  f = spawn_child(&c);
  CHECK_ERR(coro_wait_for(f, 0, &v), -ETIMEDOUT);
  CHECK_EQ(c.ran, 0);
  CHECK_ERR(coro_future_status(f), -ECANCELED);
  CHECK_EQ(coro_cancelling(coro_current()), 0);
  CHECK_EQ(coro_sleep(1), 0);
  CHECK_EQ(c.ran, 0);
  coro_future_release(f);
  /* A pending promise. */
  p = new_promise();
  CHECK_ERR(coro_wait_for(p, 0, &v), -ETIMEDOUT);
  CHECK_ERR(coro_future_status(p), -ECANCELED);
  coro_future_release(p);
  return NULL;
}

static void test_wait_for_timeout_zero(void **state) {
  (void)state;
  assert_run_ok(wait_for_zero_main);
}

static void *wait_for_forever_main(void *arg) {
  (void)arg;
  coro_test_log_reset();
  child c;
  child_init(&c);
  c.sleep_ms = 20, c.value = VAL(3);
  coro_future *f = spawn_child(&c);
  void *v = NULL;
  int64_t t0 = coro_test_now_ms();
  CHECK_EQ(coro_wait_for(f, CORO_FOREVER, &v), 0);
  CHECK_GE(coro_test_now_ms() - t0, 20);
  CHECK_PTR_EQ(v, VAL(3));
  coro_future_release(f);
  /* As coro_await: a future already done returns without suspending. */
  coro_future *p = done_promise(VAL(4), 0), *t;
  CHECK_EQ(coro_spawn(&t, log_t, NULL), 0);
  CHECK_EQ(coro_wait_for(p, CORO_FOREVER, &v), 0);
  coro_test_note("m");
  CHECK_PTR_EQ(v, VAL(4));
  CHECK_EQ(coro_await(t, NULL), 0);
  CHECK(strcmp(coro_test_log(), "mt") == 0);
  coro_future_release(t);
  coro_future_release(p);
  return NULL;
}

static void test_wait_for_forever_is_await(void **state) {
  (void)state;
  assert_run_ok(wait_for_forever_main);
}

/* A task inside wait_for. */
typedef struct wf {
  coro_future *f;
  int64_t timeout;
  int ret;
  void *v;
  int cancelling_after;
  int f_status_at_return;
  int64_t returned_at;
} wf;

static void wf_init(wf *w, coro_future *f, int64_t timeout) {
  memset(w, 0, sizeof(*w));
  w->f = f;
  w->timeout = timeout;
  w->ret = NOT_REACHED;
  w->v = SENTINEL;
}

static void *wf_fn(void *arg) {
  wf *w = arg;
  w->ret = coro_wait_for(w->f, w->timeout, &w->v);
  w->returned_at = coro_test_now_ms();
  w->cancelling_after = coro_cancelling(coro_current());
  w->f_status_at_return = coro_future_status(w->f);
  return NULL;
}

static void *wait_for_cancelled_main(void *arg) {
  (void)arg;
  for (int variant = 0; variant < 2; variant++) {
    child c;
    child_init(&c);
    c.sleep_ms = CORO_FOREVER, c.cleanup_ms = variant ? 30 : 0;
    coro_future *f = spawn_child(&c), *wt;
    wf w;
    wf_init(&w, f, variant ? 5000 : CORO_FOREVER);
    CHECK_EQ(coro_spawn(&wt, wf_fn, &w), 0);
    CHECK_EQ(coro_sleep(10), 0);
    int64_t t0 = coro_test_now_ms();
    CHECK_EQ(coro_cancel(wt), 0);
    CHECK_EQ(coro_await(wt, NULL), 0);
    CHECK_ERR(w.ret, -ECANCELED);
    CHECK_EQ(w.cancelling_after, 1);
    CHECK_ERR(c.saw, -ECANCELED);              /* f was cancelled too */
    CHECK_ERR(w.f_status_at_return, -ECANCELED); /* and waited for */
    if (variant) CHECK_GE(w.returned_at - t0, 30);
    CHECK_EQ(coro_cancelling(f), 1);
    coro_future_release(wt);
    coro_future_release(f);
  }
  /* A promise. */
  coro_future *p = new_promise(), *wt;
  wf w;
  wf_init(&w, p, 5000);
  CHECK_EQ(coro_spawn(&wt, wf_fn, &w), 0);
  CHECK_EQ(coro_yield(), 0);
  CHECK_EQ(coro_cancel(wt), 0);
  CHECK_EQ(coro_await(wt, NULL), 0);
  CHECK_ERR(w.ret, -ECANCELED);
  CHECK_ERR(coro_future_status(p), -ECANCELED);
  coro_future_release(wt);
  coro_future_release(p);
  return NULL;
}

static void test_wait_for_caller_cancelled_cancels_inner(void **state) {
  (void)state;
  assert_run_ok(wait_for_cancelled_main);
}

/* gh-86296: f finishes in the iteration in which the caller is cancelled.
 * The cancellation must not be lost: -ECANCELED, never the value. */
typedef struct race {
  coro_future *p;
  coro_future *waiter;
} race;

static void *resolve_then_cancel(void *arg) {
  race *r = arg;
  CHECK_EQ(coro_future_resolve(r->p, VAL(1)), 0);
  CHECK_EQ(coro_cancel(r->waiter), 0);
  return NULL;
}

static void *yield_then_cancel(void *arg) {
  race *r = arg;
  CHECK_EQ(coro_yield(), 0);
  CHECK_EQ(coro_cancel(r->waiter), 0);
  return NULL;
}

static void *gh86296_main(void *arg) {
  (void)arg;
  for (int variant = 0; variant < 2; variant++) {
    /* A promise resolved by a task that then cancels the waiter. */
    race r;
    r.p = new_promise();
    wf w;
    wf_init(&w, r.p, variant ? 10000 : CORO_FOREVER);
    coro_future *rt;
    CHECK_EQ(coro_spawn(&r.waiter, wf_fn, &w), 0);
    CHECK_EQ(coro_spawn(&rt, resolve_then_cancel, &r), 0);
    CHECK_EQ(coro_await(r.waiter, NULL), 0);
    CHECK_ERR(w.ret, -ECANCELED);
    CHECK_EQ(coro_future_status(r.p), 0); /* the value stands */
    CHECK_EQ(coro_await(rt, NULL), 0);
    coro_future_release(rt);
    coro_future_release(r.waiter);
    coro_future_release(r.p);
  }
  /* A task that ends in the same iteration as another task cancels the
   * waiter (the inner's step runs first). */
  child c;
  child_init(&c);
  c.yields = 1, c.value = VAL(2);
  race r;
  wf w;
  coro_future *ct;
  r.p = NULL;
  /* Spawn order waiter, f, canceller; w is filled in before the waiter's
   * first step (tasks start lazily). */
  CHECK_EQ(coro_spawn(&r.waiter, wf_fn, &w), 0);
  coro_future *f = spawn_child(&c);
  wf_init(&w, f, 10000);
  CHECK_EQ(coro_spawn(&ct, yield_then_cancel, &r), 0);
  CHECK_EQ(coro_await(r.waiter, NULL), 0);
  CHECK_ERR(w.ret, -ECANCELED);
  CHECK_EQ(coro_future_status(f), 0);
  CHECK_EQ(c.saw, 0);
  CHECK_EQ(coro_await(ct, NULL), 0);
  coro_future_release(ct);
  coro_future_release(f);
  coro_future_release(r.waiter);
  return NULL;
}

static void test_wait_for_cancel_same_iteration_gh86296(void **state) {
  (void)state;
  assert_run_ok(gh86296_main);
}

/* The caller is cancelled while wait_for waits for f's cleanup after the
 * timeout: -ECANCELED, not -ETIMEDOUT. */
static void *cancel_during_cleanup_main(void *arg) {
  (void)arg;
  child c;
  child_init(&c);
  c.sleep_ms = CORO_FOREVER, c.cleanup_ms = 400;
  coro_future *f = spawn_child(&c), *wt;
  wf w;
  wf_init(&w, f, 20);
  int64_t t0 = coro_test_now_ms();
  CHECK_EQ(coro_spawn(&wt, wf_fn, &w), 0);
  CHECK_EQ(coro_sleep(60), 0);
  /* The scenario: the timeout fired, f is cleaning up. */
  CHECK_LT(coro_test_now_ms() - t0, 400);
  CHECK_ERR(c.saw, -ECANCELED);
  CHECK_ERR(coro_future_status(f), CORO_PENDING);
  CHECK_EQ(w.ret, NOT_REACHED);
  CHECK_EQ(coro_cancel(wt), 0);
  CHECK_EQ(coro_await(wt, NULL), 0);
  CHECK_ERR(w.ret, -ECANCELED);
  CHECK_EQ(w.cancelling_after, 1);
  CHECK_LE(w.f_status_at_return, 0); /* still waited for f to finish */
  CHECK_ERR(coro_future_status(f), -ECANCELED);
  coro_future_release(wt);
  coro_future_release(f);
  return NULL;
}

static void test_wait_for_cancel_during_cleanup_after_timeout(void **state) {
  (void)state;
  assert_run_ok(cancel_during_cleanup_main);
}

/* Nested: wait_for inside wait_for. */
typedef struct nest {
  int64_t inner_timeout;
  int inner_ret;
  child deep;
} nest;

static void *nested_mid(void *arg) {
  nest *n = arg;
  coro_future *f = spawn_child(&n->deep);
  n->inner_ret = coro_wait_for(f, n->inner_timeout, NULL);
  coro_future_release(f);
  if (n->inner_ret == -ECANCELED) return coro_fail(-ECANCELED);
  return VAL(100 + (n->inner_ret == -ETIMEDOUT));
}

static void *nested_main(void *arg) {
  (void)arg;
  /* The inner timeout fires first: the middle task handles it. */
  nest n;
  memset(&n, 0, sizeof(n));
  child_init(&n.deep);
  n.deep.sleep_ms = CORO_FOREVER;
  n.inner_timeout = 20;
  coro_future *mid;
  CHECK_EQ(coro_spawn(&mid, nested_mid, &n), 0);
  void *v = NULL;
  int64_t t0 = coro_test_now_ms();
  CHECK_EQ(coro_wait_for(mid, 2000, &v), 0);
  int64_t dt = coro_test_now_ms() - t0;
  CHECK_GE(dt, 20);
  CHECK_LT(dt, 1500);
  CHECK_ERR(n.inner_ret, -ETIMEDOUT);
  CHECK_PTR_EQ(v, VAL(101));
  CHECK_ERR(n.deep.saw, -ECANCELED);
  CHECK_EQ(coro_cancelling(coro_current()), 0);
  coro_future_release(mid);

  /* The outer timeout fires first: the inner wait_for sees -ECANCELED,
   * the outer gives -ETIMEDOUT. */
  memset(&n, 0, sizeof(n));
  child_init(&n.deep);
  n.deep.sleep_ms = CORO_FOREVER;
  n.deep.cleanup_ms = 10;
  n.inner_timeout = 2000;
  CHECK_EQ(coro_spawn(&mid, nested_mid, &n), 0);
  t0 = coro_test_now_ms();
  CHECK_ERR(coro_wait_for(mid, 20, &v), -ETIMEDOUT);
  dt = coro_test_now_ms() - t0;
  CHECK_GE(dt, 30);
  CHECK_LT(dt, 1500);
  CHECK_ERR(n.inner_ret, -ECANCELED);
  CHECK_ERR(n.deep.saw, -ECANCELED);
  CHECK_EQ(n.deep.cleaned, 1);
  CHECK_ERR(coro_future_status(mid), -ECANCELED);
  CHECK_EQ(coro_cancelling(coro_current()), 0);
  CHECK_EQ(coro_sleep(1), 0);
  coro_future_release(mid);

  /* In the same task: an outer wait_for over a task whose own wait_for
   * times out is already covered; here the caller nests timeouts directly
   * around one future. */
  coro_future *p = new_promise();
  CHECK_ERR(coro_wait_for(p, 10, NULL), -ETIMEDOUT);
  CHECK_EQ(coro_cancelling(coro_current()), 0);
  coro_future_release(p);
  return NULL;
}

static void test_wait_for_nested(void **state) {
  (void)state;
  assert_run_ok(nested_main);
}

/* ==== coro_as_completed ===================================================== */

static void *as_completed_order_main(void *arg) {
  (void)arg;
  child c[3];
  for (int i = 0; i < 3; i++) child_init(&c[i]);
  c[0].sleep_ms = 400; /* far behind the others even on a stalled machine */
  c[1].sleep_ms = 10;
  c[2].sleep_ms = 25, c[2].err = -EIO;
  coro_future *fs[4];
  for (int i = 0; i < 3; i++) fs[i] = spawn_child(&c[i]);
  fs[3] = done_promise(VAL(1), 0);
  coro_as_completed *it = NULL;
  CHECK_EQ(coro_as_completed_new(&it, fs, 4, CORO_FOREVER), 0);
  CHECK(it != NULL);
  if (it == NULL) return NULL;
  coro_future *want[4] = {fs[3], fs[1], fs[2], fs[0]};
  for (int i = 0; i < 4; i++) {
    coro_future *got = NULL;
    CHECK_EQ(coro_as_completed_next(it, &got), 0);
    CHECK_PTR_EQ(got, want[i]);
    CHECK(got != NULL && coro_future_status(got) <= 0);
    /* Each comes as it finishes, not once all have. */
    if (i < 3) CHECK_ERR(coro_future_status(fs[0]), CORO_PENDING);
  }
  CHECK_ERR(coro_future_status(fs[2]), -EIO);
  coro_future *got = SENTINEL;
  CHECK_ERR(coro_as_completed_next(it, &got), CORO_EOF);
  CHECK_ERR(coro_as_completed_next(it, &got), CORO_EOF);
  coro_as_completed_free(it);
  release_all(fs, 4);
  return NULL;
}

static void test_as_completed_order(void **state) {
  (void)state;
  assert_run_ok(as_completed_order_main);
}

static void *as_completed_timeout_main(void *arg) {
  (void)arg;
  child c[2];
  child_init(&c[0]);
  child_init(&c[1]);
  c[0].sleep_ms = 10;
  c[1].sleep_ms = CORO_FOREVER;
  coro_future *fs[3] = {spawn_child(&c[1]), spawn_child(&c[0]),
                        done_promise(NULL, -ENOENT)};
  coro_as_completed *it = NULL;
  int64_t t0 = coro_test_now_ms();
  CHECK_EQ(coro_as_completed_new(&it, fs, 3, 50), 0);
  if (it == NULL) return NULL;
  coro_future *got = NULL;
  CHECK_EQ(coro_as_completed_next(it, &got), 0);
  CHECK_PTR_EQ(got, fs[2]);
  CHECK_EQ(coro_as_completed_next(it, &got), 0);
  CHECK_PTR_EQ(got, fs[1]);
  CHECK_ERR(coro_as_completed_next(it, &got), -ETIMEDOUT);
  int64_t dt = coro_test_now_ms() - t0;
  CHECK_GE(dt, 50);
  CHECK_LT(dt, 1000);
  CHECK_ERR(coro_as_completed_next(it, &got), -ETIMEDOUT);
  /* Nothing cancelled. */
  CHECK_ERR(coro_future_status(fs[0]), CORO_PENDING);
  CHECK_EQ(coro_cancelling(fs[0]), 0);
  CHECK_EQ(coro_cancelling(coro_current()), 0);
  CHECK_EQ(coro_sleep(1), 0);
  CHECK_EQ(c[1].saw, NOT_REACHED);
  coro_as_completed_free(it);
  reap(fs[0]);
  coro_future_release(fs[1]);
  coro_future_release(fs[2]);

  /* The timeout passes while the caller does something else: those done
   * by then come first, then -ETIMEDOUT. */
  child_init(&c[0]);
  child_init(&c[1]);
  c[0].sleep_ms = 5;
  c[1].sleep_ms = CORO_FOREVER;
  coro_future *gs[3] = {spawn_child(&c[1]), done_promise(VAL(2), 0),
                        spawn_child(&c[0])};
  it = NULL;
  CHECK_EQ(coro_as_completed_new(&it, gs, 3, 20), 0);
  if (it == NULL) return NULL;
  CHECK_EQ(coro_sleep(60), 0);
  int seen_1 = 0, seen_2 = 0;
  for (int i = 0; i < 2; i++) {
    got = NULL;
    CHECK_EQ(coro_as_completed_next(it, &got), 0);
    seen_1 += got == gs[1];
    seen_2 += got == gs[2];
  }
  CHECK_EQ(seen_1, 1);
  CHECK_EQ(seen_2, 1);
  CHECK_ERR(coro_as_completed_next(it, &got), -ETIMEDOUT);
  CHECK_ERR(coro_as_completed_next(it, &got), -ETIMEDOUT);
  CHECK_ERR(coro_future_status(gs[0]), CORO_PENDING);
  coro_as_completed_free(it);
  reap(gs[0]);
  release_all(gs + 1, 2);
  return NULL;
}

static void test_as_completed_timeout(void **state) {
  (void)state;
  assert_run_ok(as_completed_timeout_main);
}

/* Once -ETIMEDOUT has been returned, every later call returns it, even if
 * more futures finish meanwhile. */
static void *as_completed_final_main(void *arg) {
  (void)arg;
  child c[2];
  child_init(&c[0]);
  child_init(&c[1]);
  c[0].sleep_ms = 60, c[0].value = VAL(1);
  c[1].sleep_ms = CORO_FOREVER;
  coro_future *fs[2] = {spawn_child(&c[0]), spawn_child(&c[1])};
  coro_as_completed *it = NULL;
  int64_t t0 = coro_test_now_ms();
  CHECK_EQ(coro_as_completed_new(&it, fs, 2, 20), 0);
  if (it == NULL) return NULL;
  coro_future *got = NULL;
  CHECK_ERR(coro_as_completed_next(it, &got), -ETIMEDOUT);
  CHECK_GE(coro_test_now_ms() - t0, 20);
  CHECK_ERR(coro_future_status(fs[0]), CORO_PENDING); /* scenario holds */
  CHECK_EQ(coro_await(fs[0], NULL), 0);             /* finishes later */
  got = NULL;
  CHECK_ERR(coro_as_completed_next(it, &got), -ETIMEDOUT);
  CHECK(got == NULL);
  coro_as_completed_free(it);
  reap(fs[1]);
  coro_future_release(fs[0]);
  return NULL;
}

static void test_as_completed_timeout_is_final(void **state) {
  (void)state;
  assert_run_ok(as_completed_final_main);
}

/* The iterating task cancelled; and an iterator used by another task. */
typedef struct iter_job {
  coro_future *fs[2];
  coro_as_completed *it;
  int ret;
  int cancelling_after;
} iter_job;

static void *iterate_fn(void *arg) {
  iter_job *j = arg;
  coro_future *got = NULL;
  CHECK_EQ(coro_as_completed_new(&j->it, j->fs, 2, CORO_FOREVER), 0);
  if (j->it == NULL) return NULL;
  j->ret = coro_as_completed_next(j->it, &got);
  j->cancelling_after = coro_cancelling(coro_current());
  coro_as_completed_free(j->it);
  j->it = NULL;
  return NULL;
}

static void *as_completed_cancel_main(void *arg) {
  (void)arg;
  child c;
  child_init(&c);
  c.sleep_ms = 50;
  iter_job j;
  memset(&j, 0, sizeof(j));
  j.ret = NOT_REACHED;
  j.fs[0] = spawn_child(&c);
  j.fs[1] = new_promise();
  coro_future *t;
  CHECK_EQ(coro_spawn(&t, iterate_fn, &j), 0);
  CHECK_EQ(coro_sleep(10), 0);
  CHECK_EQ(j.ret, NOT_REACHED);
  CHECK_EQ(coro_cancel(t), 0);
  CHECK_EQ(coro_await(t, NULL), 0);
  CHECK_ERR(j.ret, -ECANCELED);
  CHECK_EQ(j.cancelling_after, 1);
  /* The futures were not cancelled. */
  CHECK_ERR(coro_future_status(j.fs[1]), CORO_PENDING);
  CHECK_EQ(coro_cancelling(j.fs[0]), 0);
  CHECK_EQ(coro_await(j.fs[0], NULL), 0);
  CHECK_EQ(c.saw, 0);
  CHECK_EQ(coro_future_resolve(j.fs[1], NULL), 0);
  coro_future_release(t);
  release_all(j.fs, 2);
  return NULL;
}

static void test_as_completed_cancelled(void **state) {
  (void)state;
  assert_run_ok(as_completed_cancel_main);
}

static void *next_from_other(void *arg) {
  coro_as_completed *it = arg;
  coro_future *got = NULL;
  return VAL(-coro_as_completed_next(it, &got));
}

static void *as_completed_owner_main(void *arg) {
  (void)arg;
  coro_future *p = done_promise(VAL(1), 0), *t;
  coro_as_completed *it = NULL;
  CHECK_EQ(coro_as_completed_new(&it, &p, 1, CORO_FOREVER), 0);
  if (it == NULL) return NULL;
  CHECK_EQ(coro_spawn(&t, next_from_other, it), 0);
  void *v = NULL;
  CHECK_EQ(coro_await(t, &v), 0);
  CHECK_PTR_EQ(v, VAL(EPERM));
  coro_future *got = NULL;
  CHECK_EQ(coro_as_completed_next(it, &got), 0); /* the owner still can */
  CHECK_PTR_EQ(got, p);
  CHECK_ERR(coro_as_completed_next(it, &got), CORO_EOF);
  coro_as_completed_free(it);
  coro_future_release(t);
  coro_future_release(p);
  return NULL;
}

static void test_as_completed_other_task(void **state) {
  (void)state;
  assert_run_ok(as_completed_owner_main);
}

/* Freed with futures still pending: nothing leaks, nothing is touched
 * later (the sanitizer build checks the latter). */
static void *as_completed_free_main(void *arg) {
  (void)arg;
  child c;
  child_init(&c);
  c.sleep_ms = 20, c.value = VAL(1);
  coro_future *fs[3] = {spawn_child(&c), new_promise(), done_promise(NULL, 0)};
  coro_as_completed *it = NULL;
  CHECK_EQ(coro_as_completed_new(&it, fs, 3, 30), 0);
  if (it == NULL) return NULL;
  coro_future *got = NULL;
  CHECK_EQ(coro_as_completed_next(it, &got), 0);
  CHECK_PTR_EQ(got, fs[2]);
  coro_as_completed_free(it);
  /* Never iterated at all. */
  it = NULL;
  CHECK_EQ(coro_as_completed_new(&it, fs, 2, CORO_FOREVER), 0);
  coro_as_completed_free(it);
  /* Everything finishes afterwards, and the timeout passes. */
  CHECK_EQ(coro_future_resolve(fs[1], VAL(2)), 0);
  CHECK_EQ(coro_await(fs[0], NULL), 0);
  CHECK_EQ(coro_sleep(40), 0);
  CHECK_EQ(coro_cancelling(fs[0]), 0);
  release_all(fs, 3);
  /* Freed with a pending promise that is never resolved. */
  coro_future *p = new_promise();
  it = NULL;
  CHECK_EQ(coro_as_completed_new(&it, &p, 1, 10), 0);
  coro_as_completed_free(it);
  CHECK_EQ(coro_sleep(20), 0);
  coro_future_release(p);
  return NULL;
}

static void test_as_completed_free_pending(void **state) {
  (void)state;
  assert_run_ok(as_completed_free_main);
}

/* ---- allocation failure ------------------------------------------------------ */

#define NA 20 /* more futures than fit in a call's own storage */

static int enomem_seen;

static void *alloc_main(void *arg) {
  (void)arg;
  coro_future *fs[NA];
  for (int i = 0; i < NA; i++)
    fs[i] = i % 2 ? done_promise(VAL(i), 0) : new_promise();
  for (long k = 1; k <= 6; k++) {
    coro_test_fail_alloc_after(k);
    int r = coro_wait(fs, NA, CORO_FIRST_COMPLETED, CORO_FOREVER);
    coro_test_fail_alloc_after(0);
    CHECK(r == NA / 2 || r == -ENOMEM);
    enomem_seen += r == -ENOMEM;
    coro_as_completed *it = NULL;
    coro_test_fail_alloc_after(k);
    r = coro_as_completed_new(&it, fs, NA, 50);
    coro_test_fail_alloc_after(0);
    CHECK(r == 0 || r == -ENOMEM);
    enomem_seen += r == -ENOMEM;
    if (r == 0) {
      coro_future *got = NULL;
      CHECK_EQ(coro_as_completed_next(it, &got), 0);
      CHECK_PTR_EQ(got, fs[1]);
      coro_as_completed_free(it);
    } else {
      CHECK(it == NULL);
    }
  }
  for (int i = 0; i < NA; i++)
    if (i % 2 == 0) CHECK_EQ(coro_future_resolve(fs[i], NULL), 0);
  release_all(fs, NA);
  return NULL;
}

static void test_wait_alloc_failure(void **state) {
  (void)state;
  enomem_seen = 0;
  assert_run_ok(alloc_main);
  /* An iterator cannot be made without memory: at least its first
   * allocation fails for k == 1. */
  assert_true(enomem_seen >= 1);
}

int main(int argc, char **argv) {
  const struct CMUnitTest tests[] = {
#define T(x) cmocka_unit_test_setup_teardown(x, coro_test_setup, coro_test_teardown)
    T(test_wait_all_completed),
    T(test_wait_first_completed),
    T(test_wait_first_completed_counts_all_done),
    T(test_wait_first_exception),
    T(test_wait_already_done_yields_once),
    T(test_wait_timeout_cancels_nothing),
    T(test_wait_timeout_zero),
    T(test_wait_duplicates_count_twice),
    T(test_wait_caller_cancelled_futures_not),
    T(test_wait_bad_args),
    T(test_wait_for_in_time),
    T(test_wait_for_timeout_waits_for_cleanup),
    T(test_wait_for_inner_outcome_during_cancel),
    T(test_wait_for_timeout_zero),
    T(test_wait_for_forever_is_await),
    T(test_wait_for_caller_cancelled_cancels_inner),
    T(test_wait_for_cancel_same_iteration_gh86296),
    T(test_wait_for_cancel_during_cleanup_after_timeout),
    T(test_wait_for_nested),
    T(test_as_completed_order),
    T(test_as_completed_timeout),
    T(test_as_completed_timeout_is_final),
    T(test_as_completed_cancelled),
    T(test_as_completed_other_task),
    T(test_as_completed_free_pending),
    T(test_wait_alloc_failure),
#undef T
  };
  return coro_test_main(argc, argv, tests, NULL, NULL);
}
