/* SPDX-License-Identifier: MIT */
/* coro_shield (asyncio.shield, docs/api/wait.md) and shielded regions
 * (coro_shield_begin/end: a trio shielded cancel scope in the current task,
 * deferring a cancellation to the region's end). */
#include "helpers.h"

#include <string.h>

#define CUR_CANCELLING() coro_cancelling(coro_current())

static int proof;

/* Sleeps (intptr_t)arg ms, then proves it ran to the end. */
static void *inner_task(void *arg) {
  int r = coro_sleep((int64_t)(intptr_t)arg);
  CHECK_EQ(r, 0);
  proof++;
  coro_test_note("i");
  return (void *)7;
}

/* ---- shield(f) -------------------------------------------------------------------- */

static int awaiter_proof_seen = -1;

static void *shield_awaiter(void *arg) {
  coro_future *s = arg;
  int r = coro_await(s, NULL);
  CHECK_ERR(r, -ECANCELED);
  awaiter_proof_seen = proof;
  coro_test_note("w");
  return coro_fail(r);
}

/* test_shield_effect: cancelling the awaiter cancels the shield only. */
static void *effect_main(void *arg) {
  (void)arg;
  coro_future *in, *s, *w;
  void *v = NULL;
  proof = 0;
  coro_test_log_reset();
  CHECK_EQ(coro_spawn(&in, inner_task, (void *)(intptr_t)30), 0);
  CHECK_EQ(coro_shield(&s, in), 0);
  CHECK_PTR_NE(s, in);
  CHECK_ERR(coro_future_status(s), CORO_PENDING);
  CHECK_EQ(coro_spawn(&w, shield_awaiter, s), 0);
  CHECK_EQ(coro_yield(), 0); /* w awaits s, in sleeps */
  CHECK_EQ(coro_cancel(w), 0);
  CHECK_ERR(coro_await(w, NULL), -ECANCELED);
  CHECK_EQ(awaiter_proof_seen, 0); /* did not wait for the inner task */
  CHECK_ERR(coro_future_status(s), -ECANCELED);
  CHECK_ERR(coro_future_status(in), CORO_PENDING);
  CHECK_EQ(coro_cancelling(in), 0);
  coro_future_release(s); /* before the inner task finishes */
  CHECK_EQ(coro_await(in, &v), 0);
  CHECK_PTR_EQ(v, (void *)7);
  CHECK_EQ(proof, 1);
  coro_future_release(w);
  coro_future_release(in);
  return NULL;
}

static void test_shield_effect(void **state) {
  (void)state;
  assert_run_ok(effect_main);
  assert_string_equal(coro_test_log(), "wi");
}

/* Cancelling the shield future itself leaves the inner alone; a shield that
 * nobody cancels mirrors the inner outcome. */
static void *direct_main(void *arg) {
  (void)arg;
  coro_future *in, *s;
  void *v = NULL;
  proof = 0;
  CHECK_EQ(coro_spawn(&in, inner_task, (void *)(intptr_t)20), 0);
  CHECK_EQ(coro_shield(&s, in), 0);
  CHECK_EQ(coro_cancel(s), 0);
  CHECK_ERR(coro_await(s, NULL), -ECANCELED);
  CHECK_ERR(coro_future_status(in), CORO_PENDING);
  CHECK_EQ(coro_await(in, &v), 0);
  CHECK_PTR_EQ(v, (void *)7);
  CHECK_EQ(proof, 1);
  coro_future_release(s);
  coro_future_release(in);

  /* Success mirrored, with the value. */
  CHECK_EQ(coro_spawn(&in, inner_task, (void *)(intptr_t)5), 0);
  CHECK_EQ(coro_shield(&s, in), 0);
  v = NULL;
  CHECK_EQ(coro_await(s, &v), 0);
  CHECK_PTR_EQ(v, (void *)7);
  CHECK_PTR_EQ(coro_future_value(s), (void *)7);
  coro_future_release(s);
  coro_future_release(in);
  return NULL;
}

static void test_shield_cancel_outer_only(void **state) {
  (void)state;
  assert_run_ok(direct_main);
}

/* test_shield_cancel_inner: the inner cancelled some other way ends the
 * shield cancelled; an inner error comes through too. */
static void *forever_task(void *arg) {
  (void)arg;
  return coro_fail(coro_sleep(CORO_FOREVER));
}

static void *fail_task(void *arg) {
  (void)arg;
  CHECK_EQ(coro_sleep(5), 0);
  return coro_fail(-EIO);
}

static void *inner_cancel_main(void *arg) {
  (void)arg;
  coro_future *in, *s;
  CHECK_EQ(coro_spawn(&in, forever_task, NULL), 0);
  CHECK_EQ(coro_shield(&s, in), 0);
  CHECK_EQ(coro_yield(), 0);
  CHECK_EQ(coro_cancel(in), 0);
  CHECK_ERR(coro_await(s, NULL), -ECANCELED);
  CHECK_ERR(coro_future_status(in), -ECANCELED);
  coro_future_release(s);
  coro_future_release(in);

  /* A promise cancelled behind the shield. */
  coro_future *p;
  CHECK_EQ(coro_future_new(&p), 0);
  CHECK_EQ(coro_shield(&s, p), 0);
  CHECK_EQ(coro_cancel(p), 0);
  CHECK_ERR(coro_await(s, NULL), -ECANCELED);
  coro_future_release(s);
  coro_future_release(p);

  /* An error. */
  CHECK_EQ(coro_spawn(&in, fail_task, NULL), 0);
  CHECK_EQ(coro_shield(&s, in), 0);
  CHECK_ERR(coro_await(s, NULL), -EIO);
  CHECK_ERR(coro_await(in, NULL), -EIO);
  coro_future_release(s);
  coro_future_release(in);
  return NULL;
}

static void test_shield_inner_cancelled_or_failed(void **state) {
  (void)state;
  assert_run_ok(inner_cancel_main);
}

/* test_shield_shortcut: a future already done is returned as it is. */
static void *done_main(void *arg) {
  (void)arg;
  coro_future *in, *s;
  void *v = NULL;
  CHECK_EQ(coro_spawn(&in, inner_task, (void *)(intptr_t)0), 0);
  CHECK_EQ(coro_await(in, NULL), 0);
  CHECK_EQ(coro_shield(&s, in), 0);
  CHECK_PTR_EQ(s, in);
  CHECK_EQ(coro_await(s, &v), 0);
  CHECK_PTR_EQ(v, (void *)7);
  coro_future_release(s); /* a reference of its own */
  CHECK_EQ(coro_future_status(in), 0);
  coro_future_release(in);

  coro_future *p;
  CHECK_EQ(coro_future_new(&p), 0);
  CHECK_EQ(coro_future_reject(p, -ENOENT), 0);
  CHECK_EQ(coro_shield(&s, p), 0);
  CHECK_PTR_EQ(s, p);
  CHECK_ERR(coro_await(s, NULL), -ENOENT);
  coro_future_release(s);
  coro_future_release(p);

  CHECK_EQ(coro_future_new(&p), 0);
  CHECK_EQ(coro_cancel(p), 0);
  CHECK_EQ(coro_shield(&s, p), 0);
  CHECK_PTR_EQ(s, p);
  CHECK_ERR(coro_future_status(s), -ECANCELED);
  coro_future_release(s);
  coro_future_release(p);
  return NULL;
}

static void test_shield_already_done(void **state) {
  (void)state;
  assert_run_ok(done_main);
}

/* The shield released at once: no leak, the inner still runs. */
static void *released_main(void *arg) {
  (void)arg;
  coro_future *in, *s;
  proof = 0;
  CHECK_EQ(coro_spawn(&in, inner_task, (void *)(intptr_t)10), 0);
  CHECK_EQ(coro_shield(&s, in), 0);
  coro_future_release(s);
  CHECK_EQ(coro_await(in, NULL), 0);
  CHECK_EQ(proof, 1);
  coro_future_release(in);

  /* Released while the inner is detached too. */
  CHECK_EQ(coro_spawn(&in, inner_task, (void *)(intptr_t)10), 0);
  CHECK_EQ(coro_shield(&s, in), 0);
  coro_future_release(in);
  coro_future_release(s);
  CHECK_EQ(coro_sleep(40), 0);
  CHECK_EQ(proof, 2);
  return NULL;
}

static void test_shield_released_early(void **state) {
  (void)state;
  assert_run_ok(released_main);
}

/* 3.12 WaitForShieldTests: wait_for(shield(t)) times out, t runs on. */
static void *wait_for_main(void *arg) {
  (void)arg;
  coro_future *t, *s;
  void *v = NULL;
  proof = 0;
  int64_t t0 = coro_test_now_ms();
  CHECK_EQ(coro_spawn(&t, inner_task, (void *)(intptr_t)60), 0);
  CHECK_EQ(coro_shield(&s, t), 0);
  CHECK_ERR(coro_wait_for(s, 20, NULL), -ETIMEDOUT);
  int64_t dt = coro_test_now_ms() - t0;
  CHECK_GE(dt, 20);
  CHECK_ERR(coro_future_status(t), CORO_PENDING);
  CHECK_EQ(coro_cancelling(t), 0);
  CHECK_EQ(proof, 0);
  CHECK_EQ(coro_await(t, &v), 0);
  CHECK_PTR_EQ(v, (void *)7);
  CHECK_EQ(proof, 1);
  CHECK_GE(coro_test_now_ms() - t0, 60);
  CHECK_LT(coro_test_now_ms() - t0, 1000);
  coro_future_release(s);
  coro_future_release(t);
  return NULL;
}

static void test_shield_wait_for_timeout(void **state) {
  (void)state;
  assert_run_ok(wait_for_main);
}

/* test_gather_shield: cancelling a gather of shields cancels the shields
 * only. */
static void *gather_shields(void *arg) {
  coro_future **ss = arg;
  int r = coro_gather(ss, 2, NULL, NULL);
  CHECK_ERR(r, -ECANCELED);
  return coro_fail(r);
}

static void *gather_main(void *arg) {
  (void)arg;
  coro_future *a, *b, *ss[2], *g;
  proof = 0;
  CHECK_EQ(coro_spawn(&a, inner_task, (void *)(intptr_t)20), 0);
  CHECK_EQ(coro_spawn(&b, inner_task, (void *)(intptr_t)20), 0);
  CHECK_EQ(coro_shield(&ss[0], a), 0);
  CHECK_EQ(coro_shield(&ss[1], b), 0);
  CHECK_EQ(coro_spawn(&g, gather_shields, ss), 0);
  CHECK_EQ(coro_yield(), 0);
  CHECK_EQ(coro_cancel(g), 0);
  CHECK_ERR(coro_await(g, NULL), -ECANCELED);
  CHECK_ERR(coro_future_status(ss[0]), -ECANCELED);
  CHECK_ERR(coro_future_status(ss[1]), -ECANCELED);
  CHECK_EQ(coro_await(a, NULL), 0);
  CHECK_EQ(coro_await(b, NULL), 0);
  CHECK_EQ(proof, 2);
  coro_future_release(ss[0]);
  coro_future_release(ss[1]);
  coro_future_release(a);
  coro_future_release(b);
  coro_future_release(g);
  return NULL;
}

static void test_shield_gather_of_shields(void **state) {
  (void)state;
  assert_run_ok(gather_main);
}

/* ---- shielded regions ------------------------------------------------------------- */

static int in_region;

static void *region_body(void *arg) {
  (void)arg;
  CHECK_EQ(coro_shield_begin(), 0);
  in_region = 1;
  int64_t t0 = coro_test_now_ms();
  CHECK_EQ(coro_sleep(30), 0); /* the request arrives meanwhile */
  CHECK_GE(coro_test_now_ms() - t0, 30);
  CHECK_EQ(CUR_CANCELLING(), 1); /* counted */
  CHECK_EQ(coro_sleep(5), 0);
  CHECK_EQ(coro_yield(), 0);
  coro_test_note("r");
  CHECK_EQ(coro_shield_end(), 0);
  coro_test_note("e");
  int r = coro_sleep(10000); /* the first suspension after the region */
  CHECK_ERR(r, -ECANCELED);
  CHECK_EQ(CUR_CANCELLING(), 1);
  CHECK_EQ(coro_sleep(1), 0); /* delivered once */
  coro_test_note("c");
  return coro_fail(r);
}

static void *region_main(void *arg) {
  (void)arg;
  coro_future *f;
  int64_t t0 = coro_test_now_ms();
  coro_test_log_reset();
  in_region = 0;
  CHECK_EQ(coro_spawn(&f, region_body, NULL), 0);
  CHECK_EQ(coro_yield(), 0);
  CHECK_EQ(in_region, 1);
  CHECK_EQ(coro_cancel(f), 0);
  CHECK_EQ(coro_cancelling(f), 1);
  CHECK_EQ(coro_sleep(5), 0);
  CHECK_ERR(coro_future_status(f), CORO_PENDING);
  CHECK_ERR(coro_await(f, NULL), -ECANCELED);
  CHECK_GE(coro_test_now_ms() - t0, 35);
  CHECK_LT(coro_test_now_ms() - t0, 1000);
  coro_future_release(f);
  return NULL;
}

static void test_shield_region_defers_cancel(void **state) {
  (void)state;
  assert_run_ok(region_main);
  assert_string_equal(coro_test_log(), "rec");
}

/* Awaiting a task inside a region: the request is not passed on to it. */
static void *region_await_body(void *arg) {
  coro_future *child = arg;
  void *v = NULL;
  CHECK_EQ(coro_shield_begin(), 0);
  in_region = 1;
  CHECK_EQ(coro_await(child, &v), 0);
  CHECK_PTR_EQ(v, (void *)7);
  CHECK_EQ(coro_shield_end(), 0);
  int r = coro_yield();
  CHECK_ERR(r, -ECANCELED);
  return coro_fail(r);
}

static void *region_await_main(void *arg) {
  (void)arg;
  coro_future *c, *f;
  proof = 0;
  in_region = 0;
  CHECK_EQ(coro_spawn(&c, inner_task, (void *)(intptr_t)30), 0);
  CHECK_EQ(coro_spawn(&f, region_await_body, c), 0);
  CHECK_EQ(coro_yield(), 0);
  CHECK_EQ(in_region, 1);
  CHECK_EQ(coro_cancel(f), 0);
  CHECK_EQ(coro_cancelling(c), 0);
  CHECK_ERR(coro_await(f, NULL), -ECANCELED);
  CHECK_EQ(coro_future_status(c), 0);
  CHECK_EQ(coro_cancelling(c), 0);
  CHECK_EQ(proof, 1);
  coro_future_release(c);
  coro_future_release(f);
  return NULL;
}

static void test_shield_region_await(void **state) {
  (void)state;
  assert_run_ok(region_await_main);
}

/* A request kept by a region and never followed by a suspension: the task
 * finishes with it pending and ends cancelled. */
static void *region_return_body(void *arg) {
  (void)arg;
  CHECK_EQ(coro_shield_begin(), 0);
  in_region = 1;
  CHECK_EQ(coro_sleep(20), 0);
  CHECK_EQ(coro_shield_end(), 0);
  return (void *)1;
}

static void *region_return_main(void *arg) {
  (void)arg;
  coro_future *f;
  in_region = 0;
  CHECK_EQ(coro_spawn(&f, region_return_body, NULL), 0);
  CHECK_EQ(coro_yield(), 0);
  CHECK_EQ(in_region, 1);
  CHECK_EQ(coro_cancel(f), 0);
  CHECK_ERR(coro_await(f, NULL), -ECANCELED);
  coro_future_release(f);
  return NULL;
}

static void test_shield_region_request_pending_at_end(void **state) {
  (void)state;
  assert_run_ok(region_return_main);
}

/* Nested regions: only the end of the outermost lets it through. */
static void *nested_body(void *arg) {
  (void)arg;
  CHECK_EQ(coro_shield_begin(), 0);
  CHECK_EQ(coro_shield_begin(), 0);
  in_region = 1;
  CHECK_EQ(coro_sleep(20), 0);
  CHECK_EQ(coro_shield_end(), 0);
  CHECK_EQ(coro_sleep(5), 0); /* still shielded */
  CHECK_EQ(coro_yield(), 0);
  CHECK_EQ(coro_shield_begin(), 0); /* and once more */
  CHECK_EQ(coro_yield(), 0);
  CHECK_EQ(coro_shield_end(), 0);
  CHECK_EQ(coro_yield(), 0);
  CHECK_EQ(coro_shield_end(), 0);
  int r = coro_yield();
  CHECK_ERR(r, -ECANCELED);
  CHECK_EQ(CUR_CANCELLING(), 1);
  CHECK_ERR(coro_shield_end(), -EPERM); /* no region left */
  return coro_fail(r);
}

static void *nested_main(void *arg) {
  (void)arg;
  coro_future *f;
  in_region = 0;
  CHECK_EQ(coro_spawn(&f, nested_body, NULL), 0);
  CHECK_EQ(coro_yield(), 0);
  CHECK_EQ(in_region, 1);
  CHECK_EQ(coro_cancel(f), 0);
  CHECK_ERR(coro_await(f, NULL), -ECANCELED);
  coro_future_release(f);
  return NULL;
}

static void test_shield_region_nested(void **state) {
  (void)state;
  assert_run_ok(nested_main);
}

/* A timeout scope that fires inside a region takes effect after it. */
static void *timeout_region_main(void *arg) {
  (void)arg;
  coro_timeout t;
  int64_t t0 = coro_test_now_ms();
  CHECK_EQ(coro_timeout_enter(&t, 20), 0);
  CHECK_EQ(coro_shield_begin(), 0);
  CHECK_EQ(coro_sleep(50), 0); /* the deadline passes meanwhile */
  CHECK_GE(coro_test_now_ms() - t0, 50);
  CHECK_EQ(coro_timeout_expired(&t), 1);
  CHECK_EQ(coro_shield_end(), 0);
  int r = coro_sleep(10000);
  CHECK_ERR(r, -ECANCELED);
  CHECK_ERR(coro_timeout_exit(&t, r), -ETIMEDOUT);
  CHECK_EQ(CUR_CANCELLING(), 0);
  CHECK_LT(coro_test_now_ms() - t0, 1000);

  /* A scope entirely inside a region: it fires, nothing is delivered, and
   * its exit takes the request back, so nothing is left after the region. */
  coro_timeout u;
  CHECK_EQ(coro_shield_begin(), 0);
  CHECK_EQ(coro_timeout_enter(&u, 10), 0);
  CHECK_EQ(coro_sleep(30), 0);
  CHECK_EQ(coro_timeout_expired(&u), 1);
  CHECK_EQ(coro_timeout_exit(&u, 0), 0);
  CHECK_EQ(coro_shield_end(), 0);
  CHECK_EQ(CUR_CANCELLING(), 0);
  CHECK_EQ(coro_sleep(1), 0);
  return NULL;
}

static void test_shield_region_defers_timeout(void **state) {
  (void)state;
  assert_run_ok(timeout_region_main);
}

/* The same after an earlier cancellation was caught (cancelling() is 1 with
 * nothing pending): the scope's exit must still take back the request it
 * made and that the region kept; nothing may be delivered after the region
 * (only the scope asked, and it is gone). */
static void *stale_region_body(void *arg) {
  (void)arg;
  int r = coro_sleep(10000);
  CHECK_ERR(r, -ECANCELED); /* handled */
  CHECK_EQ(CUR_CANCELLING(), 1);
  coro_timeout u;
  CHECK_EQ(coro_shield_begin(), 0);
  CHECK_EQ(coro_timeout_enter(&u, 10), 0);
  CHECK_EQ(coro_sleep(30), 0);
  CHECK_EQ(coro_timeout_expired(&u), 1);
  CHECK_EQ(coro_timeout_exit(&u, 0), 0);
  CHECK_EQ(coro_shield_end(), 0);
  CHECK_EQ(CUR_CANCELLING(), 1);
  CHECK_EQ(coro_sleep(1), 0);
  return (void *)4;
}

static void *stale_region_main(void *arg) {
  (void)arg;
  coro_future *f;
  void *v = NULL;
  CHECK_EQ(coro_spawn(&f, stale_region_body, NULL), 0);
  CHECK_EQ(coro_yield(), 0);
  CHECK_EQ(coro_cancel(f), 0);
  CHECK_EQ(coro_await(f, &v), 0);
  CHECK_PTR_EQ(v, (void *)4);
  coro_future_release(f);
  return NULL;
}

static void test_shield_region_timeout_after_caught_cancel(void **state) {
  (void)state;
  assert_run_ok(stale_region_main);
}

/* A detached task in a region when coro_run ends: the shutdown's
 * cancellation waits for the region's end (docs/api/wait.md). */
static int shutdown_stage;

static void *shielded_at_shutdown(void *arg) {
  (void)arg;
  CHECK_EQ(coro_shield_begin(), 0);
  shutdown_stage = 1;
  int64_t t0 = coro_test_now_ms();
  CHECK_EQ(coro_sleep(30), 0);
  CHECK_GE(coro_test_now_ms() - t0, 30);
  shutdown_stage = 2;
  CHECK_EQ(coro_shield_end(), 0);
  int r = coro_sleep(10000);
  CHECK_ERR(r, -ECANCELED);
  shutdown_stage = 3;
  return coro_fail(r);
}

static void *shutdown_main(void *arg) {
  (void)arg;
  CHECK_EQ(coro_spawn(NULL, shielded_at_shutdown, NULL), 0);
  CHECK_EQ(coro_yield(), 0);
  CHECK_EQ(shutdown_stage, 1);
  return NULL;
}

static void test_shield_region_at_shutdown(void **state) {
  (void)state;
  shutdown_stage = 0;
  int64_t t0 = coro_test_now_ms();
  assert_run_ok(shutdown_main);
  int64_t dt = coro_test_now_ms() - t0;
  assert_int_equal(shutdown_stage, 3);
  assert_true(dt >= 30);
  assert_true(dt < 1000);
}

/* ---- misuse -------------------------------------------------------------------------- */

static int cb_begin_rc, cb_end_rc, cb_ran;

static void region_in_cb(coro_future *f, void *data) {
  (void)f;
  (void)data;
  cb_ran++;
  cb_begin_rc = coro_shield_begin();
  cb_end_rc = coro_shield_end();
}

static void *misuse_main(void *arg) {
  (void)arg;
  CHECK_ERR(coro_shield_end(), -EPERM);
  CHECK_EQ(coro_shield_begin(), 0);
  CHECK_EQ(coro_shield_end(), 0);
  CHECK_ERR(coro_shield_end(), -EPERM);
  CHECK_EQ(coro_yield(), 0);

  coro_future *p, *s = NULL;
  CHECK_EQ(coro_future_new(&p), 0);
  CHECK_ERR(coro_shield(NULL, p), -EINVAL);
  CHECK_ERR(coro_shield(&s, NULL), -EINVAL);
  CHECK_EQ(coro_future_resolve(p, NULL), 0);
  cb_ran = 0;
  CHECK_EQ(coro_future_on_done(p, region_in_cb, NULL), 0);
  for (int i = 0; i < 100 && cb_ran == 0; i++) CHECK_EQ(coro_yield(), 0);
  CHECK_EQ(cb_ran, 1);
  CHECK_ERR(cb_begin_rc, -EPERM);
  CHECK_ERR(cb_end_rc, -EPERM);
  coro_future_release(p);
  return NULL;
}

static void test_shield_misuse(void **state) {
  (void)state;
  assert_run_ok(misuse_main);
  assert_coro_err(coro_shield_begin(), -EPERM);
  assert_coro_err(coro_shield_end(), -EPERM);
}

int main(int argc, char **argv) {
  const struct CMUnitTest tests[] = {
#define T(x) cmocka_unit_test_setup_teardown(x, coro_test_setup, coro_test_teardown)
    T(test_shield_effect),
    T(test_shield_cancel_outer_only),
    T(test_shield_inner_cancelled_or_failed),
    T(test_shield_already_done),
    T(test_shield_released_early),
    T(test_shield_wait_for_timeout),
    T(test_shield_gather_of_shields),
    T(test_shield_region_defers_cancel),
    T(test_shield_region_await),
    T(test_shield_region_request_pending_at_end),
    T(test_shield_region_nested),
    T(test_shield_region_defers_timeout),
    T(test_shield_region_timeout_after_caught_cancel),
    T(test_shield_region_at_shutdown),
    T(test_shield_misuse),
#undef T
  };
  return coro_test_main(argc, argv, tests, NULL, NULL);
}
