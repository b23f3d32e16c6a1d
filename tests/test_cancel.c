/* SPDX-License-Identifier: MIT */
/* Cancellation: asyncio's semantics (docs/design.md), at every kind of
 * suspension point, with the counter protocol. */
#include "helpers.h"

#include <string.h>

/* ---- delivery at a sleep ----------------------------------------------------- */

static void *sleeper_reraise(void *arg) {
  (void)arg;
  int r = coro_sleep(10000);
  CHECK_ERR(r, -ECANCELED);
  coro_test_note("c");
  return coro_fail(r); /* ends cancelled */
}

static void *sleeper_handles(void *arg) {
  (void)arg;
  int r = coro_sleep(10000);
  CHECK_ERR(r, -ECANCELED);
  return (void *)42; /* handled: the task is not cancelled */
}

static void *cancel_sleep_main(void *arg) {
  (void)arg;
  coro_future *a, *b;
  int64_t t0 = coro_test_now_ms();
  CHECK_EQ(coro_spawn(&a, sleeper_reraise, NULL), 0);
  CHECK_EQ(coro_spawn(&b, sleeper_handles, NULL), 0);
  CHECK_EQ(coro_sleep(5), 0);
  CHECK_EQ(coro_cancel(a), 0);
  CHECK_EQ(coro_cancel(b), 0);
  /* A request; the task is not done until it has run. */
  CHECK_ERR(coro_future_status(a), CORO_PENDING);
  void *v = NULL;
  CHECK_ERR(coro_await(a, NULL), -ECANCELED);
  CHECK_EQ(coro_await(b, &v), 0);
  CHECK_PTR_EQ(v, (void *)42);
  CHECK_LT(coro_test_now_ms() - t0, 2000);
  CHECK_ERR(coro_cancel(a), -EALREADY);
  CHECK_EQ(coro_cancelling(a), 1);
  coro_future_release(a);
  coro_future_release(b);
  return NULL;
}

static void test_cancel_sleep(void **state) {
  (void)state;
  coro_test_log_reset();
  assert_run_ok(cancel_sleep_main);
  assert_string_equal(coro_test_log(), "c");
}

/* ---- before the first step ------------------------------------------------ */

static int body_ran;
static void *never_body(void *arg) {
  (void)arg;
  body_ran = 1;
  return NULL;
}

static void *before_start_main(void *arg) {
  (void)arg;
  coro_future *f;
  CHECK_EQ(coro_spawn(&f, never_body, NULL), 0);
  CHECK_EQ(coro_cancel(f), 0);
  CHECK_ERR(coro_await(f, NULL), -ECANCELED);
  CHECK_EQ(body_ran, 0);
  coro_future_release(f);
  return NULL;
}

static void test_cancel_before_first_step(void **state) {
  (void)state;
  body_ran = 0;
  assert_run_ok(before_start_main);
  assert_int_equal(body_ran, 0);
}

/* ---- coalescing and re-delivery -------------------------------------------- */

static void *counts_deliveries(void *arg) {
  int *deliveries = arg;
  for (int i = 0; i < 3; i++) {
    int r = coro_sleep(i == 0 ? 10000 : 20);
    if (r == -ECANCELED) (*deliveries)++;
  }
  return NULL;
}

static void *coalesce_main(void *arg) {
  (void)arg;
  int deliveries = 0;
  coro_future *f;
  CHECK_EQ(coro_spawn(&f, counts_deliveries, &deliveries), 0);
  CHECK_EQ(coro_yield(), 0);
  /* Three requests before the task runs again: one delivery. */
  CHECK_EQ(coro_cancel(f), 0);
  CHECK_EQ(coro_cancel(f), 0);
  CHECK_EQ(coro_cancel(f), 0);
  CHECK_EQ(coro_cancelling(f), 3);
  CHECK_EQ(coro_await(f, NULL), 0);
  CHECK_EQ(deliveries, 1);
  coro_future_release(f);
  return NULL;
}

static void test_cancel_requests_coalesce(void **state) {
  (void)state;
  assert_run_ok(coalesce_main);
}

static void *coalesce_unstarted_body(void *arg) {
  int *deliveries = arg;
  /* never runs */
  (*deliveries)++;
  return NULL;
}

static void *coalesce_unstarted_main(void *arg) {
  (void)arg;
  int deliveries = 0;
  coro_future *f;
  CHECK_EQ(coro_spawn(&f, coalesce_unstarted_body, &deliveries), 0);
  CHECK_EQ(coro_cancel(f), 0);
  CHECK_EQ(coro_cancel(f), 0);
  CHECK_EQ(coro_cancelling(f), 2);
  CHECK_ERR(coro_await(f, NULL), -ECANCELED);
  CHECK_EQ(deliveries, 0);
  coro_future_release(f);
  return NULL;
}

static void test_cancel_twice_before_start(void **state) {
  (void)state;
  assert_run_ok(coalesce_unstarted_main);
}

static void *redeliver_body(void *arg) {
  int *deliveries = arg;
  for (int i = 0; i < 2; i++)
    if (coro_sleep(10000) == -ECANCELED) (*deliveries)++;
  return NULL;
}

static void *redeliver_main(void *arg) {
  (void)arg;
  int deliveries = 0;
  coro_future *f;
  CHECK_EQ(coro_spawn(&f, redeliver_body, &deliveries), 0);
  CHECK_EQ(coro_sleep(5), 0);
  CHECK_EQ(coro_cancel(f), 0);
  CHECK_EQ(coro_sleep(5), 0); /* delivered and handled meanwhile */
  CHECK_EQ(deliveries, 1);
  CHECK_EQ(coro_cancel(f), 0); /* a new request is delivered again */
  CHECK_EQ(coro_await(f, NULL), 0);
  CHECK_EQ(deliveries, 2);
  CHECK_EQ(coro_cancelling(f), 2);
  coro_future_release(f);
  return NULL;
}

static void test_cancel_redelivered_after_handled(void **state) {
  (void)state;
  assert_run_ok(redeliver_main);
}

/* ---- a task cancelling itself ------------------------------------------------- */

static void *self_cancel_return(void *arg) {
  (void)arg;
  CHECK_EQ(coro_cancel(coro_current()), 0);
  return (void *)1; /* no suspension: the result is discarded */
}

static void *self_cancel_await(void *arg) {
  coro_future *p = arg;
  CHECK_EQ(coro_cancel(coro_current()), 0);
  CHECK_ERR(coro_await(p, NULL), -ECANCELED); /* the first await gets it */
  CHECK_ERR(coro_future_status(p), -ECANCELED); /* and the promise too */
  CHECK_EQ(coro_sleep(1), 0);                  /* delivered once */
  return NULL;
}

static void *self_main(void *arg) {
  (void)arg;
  coro_future *f, *p;
  void *v = (void *)5;
  CHECK_EQ(coro_spawn(&f, self_cancel_return, NULL), 0);
  CHECK_ERR(coro_await(f, &v), -ECANCELED);
  CHECK(v == NULL);
  coro_future_release(f);
  CHECK_EQ(coro_future_new(&p), 0);
  CHECK_EQ(coro_spawn(&f, self_cancel_await, p), 0);
  CHECK_EQ(coro_await(f, NULL), 0);
  coro_future_release(f);
  coro_future_release(p);
  return NULL;
}

static void test_cancel_self(void **state) {
  (void)state;
  assert_run_ok(self_main);
}

/* ---- passing through awaits -------------------------------------------------- */

static void *await_promise(void *arg) {
  return (void *)(intptr_t)coro_await((coro_future *)arg, NULL);
}

static void *cancel_awaiting_promise_main(void *arg) {
  (void)arg;
  coro_future *p, *f;
  CHECK_EQ(coro_future_new(&p), 0);
  CHECK_EQ(coro_spawn(&f, await_promise, p), 0);
  CHECK_EQ(coro_yield(), 0);
  CHECK_EQ(coro_cancel(f), 0);
  /* Cancelling the task cancels the promise it awaits, at once. */
  CHECK_ERR(coro_future_status(p), -ECANCELED);
  void *v;
  CHECK_EQ(coro_await(f, &v), 0);
  CHECK_ERR((intptr_t)v, -ECANCELED);
  coro_future_release(f);
  coro_future_release(p);
  return NULL;
}

static void test_cancel_awaiting_promise(void **state) {
  (void)state;
  assert_run_ok(cancel_awaiting_promise_main);
}

static void *inner_handles(void *arg) {
  (void)arg;
  int r = coro_sleep(10000);
  coro_test_note(r == -ECANCELED ? "i" : "?");
  CHECK_EQ(coro_sleep(5), 0); /* cleanup that suspends */
  return (void *)42;
}

static void *inner_reraises(void *arg) {
  (void)arg;
  int r = coro_sleep(10000);
  coro_test_note("j");
  CHECK_EQ(coro_sleep(5), 0);
  return coro_fail(r);
}

static void *outer(void *arg) {
  coro_future *inner = arg;
  void *v = NULL;
  int r = coro_await(inner, &v);
  coro_test_note("o");
  if (r == 0) CHECK_PTR_EQ(v, (void *)42);
  return (void *)(intptr_t)r;
}

static void *pass_through_main(void *arg) {
  (void)arg;
  coro_future *in, *out;
  void *v;
  /* The inner task handles the cancellation and returns 42: the outer's
   * await gives 42 and the outer is not cancelled. */
  CHECK_EQ(coro_spawn(&in, inner_handles, NULL), 0);
  CHECK_EQ(coro_spawn(&out, outer, in), 0);
  CHECK_EQ(coro_sleep(5), 0);
  CHECK_EQ(coro_cancel(out), 0);
  CHECK_EQ(coro_cancelling(in), 1); /* passed on to the inner task */
  CHECK_EQ(coro_await(out, &v), 0);
  CHECK_EQ((intptr_t)v, 0);
  CHECK_EQ(coro_future_status(in), 0);
  coro_future_release(in);
  coro_future_release(out);
  /* The inner ends cancelled: the outer's await gives -ECANCELED, after the
   * inner's cleanup has finished. */
  CHECK_EQ(coro_spawn(&in, inner_reraises, NULL), 0);
  CHECK_EQ(coro_spawn(&out, outer, in), 0);
  CHECK_EQ(coro_sleep(5), 0);
  CHECK_EQ(coro_cancel(out), 0);
  CHECK_EQ(coro_await(out, &v), 0);
  CHECK_ERR((intptr_t)v, -ECANCELED);
  coro_future_release(in);
  coro_future_release(out);
  return NULL;
}

static void test_cancel_passes_through_await(void **state) {
  (void)state;
  coro_test_log_reset();
  assert_run_ok(pass_through_main);
  assert_string_equal(coro_test_log(), "iojo");
}

static void *cancel_inner_future_main(void *arg) {
  (void)arg;
  coro_future *p, *f;
  void *v;
  CHECK_EQ(coro_future_new(&p), 0);
  CHECK_EQ(coro_spawn(&f, await_promise, p), 0);
  CHECK_EQ(coro_yield(), 0);
  /* Cancelling the future a task waits on (not the task). */
  CHECK_EQ(coro_cancel(p), 0);
  CHECK_EQ(coro_await(f, &v), 0);
  CHECK_ERR((intptr_t)v, -ECANCELED);
  CHECK_EQ(coro_cancelling(f), 0);
  coro_future_release(f);
  coro_future_release(p);
  return NULL;
}

static void test_cancel_the_awaited_future(void **state) {
  (void)state;
  assert_run_ok(cancel_inner_future_main);
}

/* Woken by its future, then cancelled before it runs: asyncio delivers the
 * cancellation; the outcome stays in the future. */
static void *woken_then_cancelled_main(void *arg) {
  (void)arg;
  coro_future *p, *f;
  void *v;
  CHECK_EQ(coro_future_new(&p), 0);
  CHECK_EQ(coro_spawn(&f, await_promise, p), 0);
  CHECK_EQ(coro_yield(), 0);
  CHECK_EQ(coro_future_resolve(p, (void *)3), 0);
  CHECK_EQ(coro_cancel(f), 0);
  CHECK_EQ(coro_await(f, &v), 0);
  CHECK_ERR((intptr_t)v, -ECANCELED);
  CHECK_PTR_EQ(coro_future_value(p), (void *)3);
  coro_future_release(f);
  coro_future_release(p);
  return NULL;
}

static void test_cancel_after_wakeup_before_run(void **state) {
  (void)state;
  assert_run_ok(woken_then_cancelled_main);
}

/* ---- other suspension points ------------------------------------------------- */

static void *yield_body(void *arg) {
  (void)arg;
  int r = coro_yield();
  CHECK_ERR(r, -ECANCELED);
  CHECK_EQ(coro_yield(), 0);
  return coro_fail(r);
}

static void *forever_body(void *arg) {
  (void)arg;
  return coro_fail(coro_sleep(CORO_FOREVER));
}

static void *points_main(void *arg) {
  (void)arg;
  coro_future *f;
  /* Cancelled while ready to resume from a yield. */
  CHECK_EQ(coro_spawn(&f, yield_body, NULL), 0);
  CHECK_EQ(coro_yield(), 0); /* f is now in its yield, queued */
  CHECK_EQ(coro_cancel(f), 0);
  CHECK_ERR(coro_await(f, NULL), -ECANCELED);
  coro_future_release(f);
  /* A sleep without end ends only by cancellation. */
  CHECK_EQ(coro_spawn(&f, forever_body, NULL), 0);
  CHECK_EQ(coro_sleep(10), 0);
  CHECK_ERR(coro_future_status(f), CORO_PENDING);
  CHECK_EQ(coro_cancel(f), 0);
  CHECK_ERR(coro_await(f, NULL), -ECANCELED);
  coro_future_release(f);
  return NULL;
}

static void test_cancel_at_yield_and_forever(void **state) {
  (void)state;
  assert_run_ok(points_main);
}

/* The awaiter itself is cancelled while the target task is being
 * cancelled and cleans up: the awaiter waits for the cleanup to end. */
static void *slow_cleanup(void *arg) {
  (void)arg;
  int r = coro_sleep(10000);
  int64_t t0 = coro_test_now_ms();
  CHECK_EQ(coro_sleep(30), 0);
  CHECK_GE(coro_test_now_ms() - t0, 30);
  coro_test_note("s");
  return coro_fail(r);
}

static void *cleanup_main(void *arg) {
  (void)arg;
  coro_future *f;
  CHECK_EQ(coro_spawn(&f, slow_cleanup, NULL), 0);
  CHECK_EQ(coro_sleep(5), 0);
  CHECK_EQ(coro_cancel(f), 0);
  CHECK_ERR(coro_await(f, NULL), -ECANCELED);
  coro_test_note("m");
  coro_future_release(f);
  return NULL;
}

static void test_cancel_waits_for_cleanup(void **state) {
  (void)state;
  coro_test_log_reset();
  assert_run_ok(cleanup_main);
  assert_string_equal(coro_test_log(), "sm");
}

/* Interrupting a cleanup that suspends, with a second request. */
static void *cleanup_interrupted(void *arg) {
  (void)arg;
  CHECK_ERR(coro_sleep(10000), -ECANCELED);
  CHECK_ERR(coro_sleep(10000), -ECANCELED);
  return coro_fail(-ECANCELED);
}

static void *interrupt_main(void *arg) {
  (void)arg;
  coro_future *f;
  int64_t t0 = coro_test_now_ms();
  CHECK_EQ(coro_spawn(&f, cleanup_interrupted, NULL), 0);
  CHECK_EQ(coro_sleep(5), 0);
  CHECK_EQ(coro_cancel(f), 0);
  CHECK_EQ(coro_sleep(5), 0);
  CHECK_EQ(coro_cancel(f), 0);
  CHECK_ERR(coro_await(f, NULL), -ECANCELED);
  CHECK_LT(coro_test_now_ms() - t0, 2000);
  coro_future_release(f);
  return NULL;
}

static void test_cancel_during_cleanup(void **state) {
  (void)state;
  assert_run_ok(interrupt_main);
}

/* ---- the counter protocol ------------------------------------------------------ */

static void *uncancel_body(void *arg) {
  int *got = arg;
  *got = coro_sleep(20);
  return NULL;
}

static void *uncancel_main(void *arg) {
  (void)arg;
  int got = 1;
  coro_future *f;
  CHECK_EQ(coro_spawn(&f, uncancel_body, &got), 0);
  /* Two requests, one taken back: one pending, still delivered. */
  CHECK_EQ(coro_cancel(f), 0);
  CHECK_EQ(coro_cancel(f), 0);
  CHECK_EQ(coro_uncancel(f), 1);
  CHECK_EQ(coro_cancelling(f), 1);
  CHECK_ERR(coro_await(f, NULL), -ECANCELED); /* before its first step */
  coro_future_release(f);

  /* Requested then fully taken back before delivery: withdrawn (3.13). */
  CHECK_EQ(coro_spawn(&f, uncancel_body, &got), 0);
  CHECK_EQ(coro_yield(), 0); /* f sleeps */
  CHECK_EQ(coro_cancel(coro_current()), 0);
  CHECK_EQ(coro_uncancel(coro_current()), 0);
  CHECK_EQ(coro_uncancel(coro_current()), 0); /* never below 0 */
  CHECK_EQ(coro_sleep(1), 0);                  /* nothing delivered */
  CHECK_EQ(coro_await(f, NULL), 0);
  CHECK_EQ(got, 0);
  coro_future_release(f);

  /* The counter survives the task's end. */
  CHECK_EQ(coro_spawn(&f, uncancel_body, &got), 0);
  CHECK_EQ(coro_yield(), 0);
  CHECK_EQ(coro_cancel(f), 0);
  CHECK_EQ(coro_await(f, NULL), 0); /* it handled it: not cancelled */
  CHECK_ERR(got, -ECANCELED);
  CHECK_EQ(coro_cancelling(f), 1);
  coro_future_release(f);

  coro_future *p;
  CHECK_EQ(coro_future_new(&p), 0);
  CHECK_EQ(coro_cancelling(p), 0); /* promises have no counter */
  CHECK_EQ(coro_uncancel(p), 0);
  coro_future_release(p);
  CHECK_ERR(coro_cancelling(NULL), -EINVAL);
  CHECK_ERR(coro_uncancel(NULL), -EINVAL);
  CHECK_ERR(coro_cancel(NULL), -EINVAL);
  return NULL;
}

static void test_cancel_counter_protocol(void **state) {
  (void)state;
  assert_run_ok(uncancel_main);
}

/* Cancelling main from a task: coro_run returns -ECANCELED. */
static void *cancels_main(void *arg) {
  coro_cancel((coro_future *)arg);
  return NULL;
}

static void *cancelled_main(void *arg) {
  (void)arg;
  CHECK_EQ(coro_spawn(NULL, cancels_main, coro_current()), 0);
  int r = coro_sleep(10000);
  CHECK_ERR(r, -ECANCELED);
  return coro_fail(r);
}

static void test_cancel_main(void **state) {
  (void)state;
  assert_coro_err(coro_run(cancelled_main, NULL, NULL), -ECANCELED);
  assert_checks_passed();
}

int main(int argc, char **argv) {
  const struct CMUnitTest tests[] = {
#define T(x) cmocka_unit_test_setup_teardown(x, coro_test_setup, coro_test_teardown)
    T(test_cancel_sleep),
    T(test_cancel_before_first_step),
    T(test_cancel_requests_coalesce),
    T(test_cancel_twice_before_start),
    T(test_cancel_redelivered_after_handled),
    T(test_cancel_self),
    T(test_cancel_awaiting_promise),
    T(test_cancel_passes_through_await),
    T(test_cancel_the_awaited_future),
    T(test_cancel_after_wakeup_before_run),
    T(test_cancel_at_yield_and_forever),
    T(test_cancel_waits_for_cleanup),
    T(test_cancel_during_cleanup),
    T(test_cancel_counter_protocol),
    T(test_cancel_main),
#undef T
  };
  return coro_test_main(argc, argv, tests, NULL, NULL);
}
