/* SPDX-License-Identifier: MIT */
/* Timeout scopes (coro_timeout_*): asyncio.timeout / timeout_at semantics
 * (3.12+, docs/api/wait.md): expiry turns the scope's own cancellation into
 * -ETIMEDOUT, nesting, foreign cancellations, reschedule, misuse, and scopes
 * a task never exits. */
#include "helpers.h"

#include <string.h>
#include <uv.h>

#include "coro-internal.h" /* CORO__ASAN */

#ifdef CORO__ASAN
/* Catch a scope touched after its task's body returned (the frame holding
 * it is gone): ASan sees that only with fake stacks for returned frames. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) {
  return "detect_stack_use_after_return=1";
}
#endif

#define CUR_CANCELLING() coro_cancelling(coro_current())

/* ---- in time ------------------------------------------------------------------ */

static void *in_time_main(void *arg) {
  (void)arg;
  coro_timeout t;
  CHECK_EQ(coro_timeout_enter(&t, 1000), 0);
  CHECK_EQ(coro_timeout_expired(&t), 0);
  CHECK_EQ(coro_sleep(5), 0);
  CHECK_EQ(coro_yield(), 0);
  CHECK_EQ(coro_timeout_exit(&t, 0), 0);
  CHECK_EQ(coro_timeout_expired(&t), 0);

  /* Another status passes through unchanged. */
  coro_timeout t2;
  CHECK_EQ(coro_timeout_enter(&t2, 1000), 0);
  CHECK_EQ(coro_sleep(1), 0);
  CHECK_ERR(coro_timeout_exit(&t2, -EIO), -EIO);
  CHECK_EQ(coro_timeout_expired(&t2), 0);

  /* No deadline at all. */
  coro_timeout t3;
  CHECK_EQ(coro_timeout_enter(&t3, CORO_FOREVER), 0);
  CHECK_EQ(coro_timeout_when(&t3), CORO_FOREVER);
  CHECK_EQ(coro_sleep(10), 0);
  CHECK_EQ(coro_timeout_exit(&t3, 0), 0);
  CHECK_EQ(coro_timeout_expired(&t3), 0);

  CHECK_EQ(CUR_CANCELLING(), 0);
  /* The timers were stopped: nothing fires later. */
  CHECK_EQ(coro_sleep(20), 0);
  return NULL;
}

static void test_timeout_in_time(void **state) {
  (void)state;
  assert_run_ok(in_time_main);
}

/* A timeout 0 around a body that never suspends never fires (the scope ends
 * before the next iteration) and leaves nothing pending. */
static void *zero_no_suspend_main(void *arg) {
  (void)arg;
  coro_timeout t;
  CHECK_EQ(coro_timeout_enter(&t, 0), 0);
  CHECK_EQ(coro_timeout_exit(&t, 0), 0);
  CHECK_EQ(coro_timeout_expired(&t), 0);
  CHECK_EQ(coro_yield(), 0);
  CHECK_EQ(coro_sleep(5), 0);
  CHECK_EQ(CUR_CANCELLING(), 0);
  return NULL;
}

static void test_timeout_zero_without_suspension(void **state) {
  (void)state;
  assert_run_ok(zero_no_suspend_main);
}

/* ---- expiry ------------------------------------------------------------------- */

static int64_t elapsed_ms;

static void *expire_body(void *arg) {
  (void)arg;
  coro_timeout t;
  int64_t t0 = coro_test_now_ms();
  CHECK_EQ(coro_timeout_enter(&t, 30), 0);
  int r = coro_sleep(10000);
  CHECK_ERR(r, -ECANCELED);
  CHECK_EQ(coro_timeout_expired(&t), 1);
  CHECK_EQ(CUR_CANCELLING(), 1); /* the scope's request, until exit */
  r = coro_timeout_exit(&t, r);
  elapsed_ms = coro_test_now_ms() - t0;
  CHECK_ERR(r, -ETIMEDOUT);
  CHECK_EQ(coro_timeout_expired(&t), 1);
  /* The task is not left cancelled. */
  CHECK_EQ(CUR_CANCELLING(), 0);
  CHECK_EQ(coro_sleep(1), 0);
  CHECK_EQ(coro_yield(), 0);
  return (void *)(intptr_t)r;
}

static void *expire_main(void *arg) {
  (void)arg;
  /* In main, then in a spawned task that the awaiter sees succeed. */
  void *v = expire_body(NULL);
  CHECK_ERR((intptr_t)v, -ETIMEDOUT);
  CHECK_GE(elapsed_ms, 30);
  CHECK_LT(elapsed_ms, 1000);
  coro_future *f;
  CHECK_EQ(coro_spawn(&f, expire_body, NULL), 0);
  v = NULL;
  CHECK_EQ(coro_await(f, &v), 0);
  CHECK_ERR((intptr_t)v, -ETIMEDOUT);
  CHECK_EQ(coro_cancelling(f), 0);
  coro_future_release(f);
  return NULL;
}

static void test_timeout_expires(void **state) {
  (void)state;
  elapsed_ms = -1;
  assert_run_ok(expire_main);
  assert_true(elapsed_ms >= 30);
  assert_true(elapsed_ms < 1000);
}

/* Expiry while awaiting another task: the cancellation passes into it, the
 * scope waits for it to end, and reports -ETIMEDOUT. */
static void *slow_child(void *arg) {
  (void)arg;
  int r = coro_sleep(10000);
  CHECK_ERR(r, -ECANCELED);
  coro_test_note("c");
  return coro_fail(r);
}

static void *expire_await_main(void *arg) {
  (void)arg;
  coro_future *f;
  coro_timeout t;
  coro_test_log_reset();
  CHECK_EQ(coro_spawn(&f, slow_child, NULL), 0);
  CHECK_EQ(coro_timeout_enter(&t, 20), 0);
  int r = coro_await(f, NULL);
  coro_test_note("a");
  CHECK_ERR(r, -ECANCELED);
  CHECK_ERR(coro_timeout_exit(&t, r), -ETIMEDOUT);
  CHECK_ERR(coro_future_status(f), -ECANCELED);
  CHECK_EQ(CUR_CANCELLING(), 0);
  coro_future_release(f);
  return NULL;
}

static void test_timeout_expires_in_await(void **state) {
  (void)state;
  assert_run_ok(expire_await_main);
  assert_string_equal(coro_test_log(), "ca");
}

/* A cleanup that suspends inside the expired scope is not cancelled again
 * (one delivery), and exit still reports the timeout. */
static void *cleanup_suspends_main(void *arg) {
  (void)arg;
  coro_timeout t;
  CHECK_EQ(coro_timeout_enter(&t, 20), 0);
  int r = coro_sleep(10000);
  CHECK_ERR(r, -ECANCELED);
  int64_t t0 = coro_test_now_ms();
  CHECK_EQ(coro_sleep(10), 0);
  CHECK_GE(coro_test_now_ms() - t0, 10);
  CHECK_EQ(coro_yield(), 0);
  CHECK_ERR(coro_timeout_exit(&t, r), -ETIMEDOUT);
  CHECK_EQ(CUR_CANCELLING(), 0);
  return NULL;
}

static void test_timeout_cleanup_suspends(void **state) {
  (void)state;
  assert_run_ok(cleanup_suspends_main);
}

/* ---- deadlines already due ---------------------------------------------------- */

static void *zero_main(void *arg) {
  (void)arg;
  coro_timeout t;
  int r;
  /* timeout 0 around a yield: fires on the next iteration. Repeated: the
   * loop's idea of time must not matter. */
  for (int i = 0; i < 20; i++) {
    CHECK_EQ(coro_timeout_enter(&t, 0), 0);
    r = coro_yield();
    CHECK_ERR(r, -ECANCELED);
    CHECK_ERR(coro_timeout_exit(&t, r), -ETIMEDOUT);
    CHECK_EQ(coro_timeout_expired(&t), 1);
    CHECK_EQ(CUR_CANCELLING(), 0);
  }

  /* ... and around sleep(0). */
  coro_timeout t2;
  CHECK_EQ(coro_timeout_enter(&t2, 0), 0);
  r = coro_sleep(0);
  CHECK_ERR(r, -ECANCELED);
  CHECK_ERR(coro_timeout_exit(&t2, r), -ETIMEDOUT);
  CHECK_EQ(coro_timeout_expired(&t2), 1);

  /* An absolute deadline in the past, around a yield. */
  coro_timeout t3;
  CHECK_EQ(coro_timeout_enter_at(&t3, coro_now_ms() - 1000), 0);
  r = coro_yield();
  CHECK_ERR(r, -ECANCELED);
  CHECK_ERR(coro_timeout_exit(&t3, r), -ETIMEDOUT);
  CHECK_EQ(coro_timeout_expired(&t3), 1);

  CHECK_EQ(CUR_CANCELLING(), 0);
  CHECK_EQ(coro_yield(), 0);
  return NULL;
}

static void test_timeout_zero_fires_next_iteration(void **state) {
  (void)state;
  assert_run_ok(zero_main);
}

/* ---- nesting ------------------------------------------------------------------ */

/* Same deadline: only the outermost reports the timeout. */
static void *nested_same_main(void *arg) {
  (void)arg;
  coro_timeout outer, inner;
  int64_t t0 = coro_test_now_ms();
  int64_t d = coro_now_ms() + 30;
  CHECK_EQ(coro_timeout_enter_at(&outer, d), 0);
  CHECK_EQ(coro_timeout_enter_at(&inner, d), 0);
  int r = coro_sleep(10000);
  CHECK_ERR(r, -ECANCELED);
  r = coro_timeout_exit(&inner, r);
  CHECK_ERR(r, -ECANCELED);
  CHECK_EQ(coro_timeout_expired(&inner), 1);
  r = coro_timeout_exit(&outer, r);
  CHECK_ERR(r, -ETIMEDOUT);
  CHECK_EQ(coro_timeout_expired(&outer), 1);
  CHECK_GE(coro_now_ms(), d);
  CHECK_LT(coro_test_now_ms() - t0, 5000); /* not the 10 s sleep */
  CHECK_EQ(CUR_CANCELLING(), 0);
  CHECK_EQ(coro_sleep(1), 0);
  return NULL;
}

static void test_timeout_nested_same_deadline(void **state) {
  (void)state;
  assert_run_ok(nested_same_main);
}

/* Same deadline, the two scopes entered on either side of a millisecond
 * tick of coro_now_ms(): the inner one must not fire first (a deadline
 * armed as "ms from now" would put it almost a millisecond earlier). */
static void *nested_tick_main(void *arg) {
  (void)arg;
  for (int i = 0; i < 20; i++) {
    coro_timeout outer, inner;
    /* Wait until late in a millisecond, enter, wait for the tick, enter. */
    while (uv_hrtime() % 1000000u < 900000u) {
    }
    int64_t ms0 = coro_now_ms();
    int64_t d = ms0 + 3;
    CHECK_EQ(coro_timeout_enter_at(&outer, d), 0);
    while (coro_now_ms() == ms0) {
    }
    CHECK_EQ(coro_timeout_enter_at(&inner, d), 0);
    int r = coro_sleep(10000);
    CHECK_ERR(r, -ECANCELED);
    r = coro_timeout_exit(&inner, r);
    CHECK_ERR(r, -ECANCELED);
    r = coro_timeout_exit(&outer, r);
    CHECK_ERR(r, -ETIMEDOUT);
    CHECK_EQ(coro_timeout_expired(&inner), 1);
    CHECK_EQ(coro_timeout_expired(&outer), 1);
    CHECK_EQ(CUR_CANCELLING(), 0);
  }
  return NULL;
}

static void test_timeout_nested_same_deadline_across_tick(void **state) {
  (void)state;
  assert_run_ok(nested_tick_main);
}

/* A shorter inner scope times out; the outer body carries on. */
static void *nested_shorter_main(void *arg) {
  (void)arg;
  coro_timeout outer, inner;
  int64_t t0 = coro_test_now_ms();
  CHECK_EQ(coro_timeout_enter(&outer, 1000), 0);
  CHECK_EQ(coro_timeout_enter(&inner, 30), 0);
  int r = coro_sleep(10000);
  CHECK_ERR(r, -ECANCELED);
  CHECK_ERR(coro_timeout_exit(&inner, r), -ETIMEDOUT);
  CHECK_EQ(coro_timeout_expired(&inner), 1);
  CHECK_GE(coro_test_now_ms() - t0, 30);
  CHECK_EQ(coro_timeout_expired(&outer), 0);
  CHECK_EQ(CUR_CANCELLING(), 0);
  CHECK_EQ(coro_sleep(5), 0); /* the outer body goes on normally */
  CHECK_EQ(coro_yield(), 0);
  CHECK_EQ(coro_timeout_exit(&outer, 0), 0);
  CHECK_EQ(coro_timeout_expired(&outer), 0);
  CHECK_LT(coro_test_now_ms() - t0, 900);
  return NULL;
}

static void test_timeout_nested_shorter_inner(void **state) {
  (void)state;
  assert_run_ok(nested_shorter_main);
}

/* ---- foreign cancellations ------------------------------------------------------ */

/* Cancelled from outside inside a scope that has not expired: -ECANCELED. */
static void *foreign_unexpired_body(void *arg) {
  (void)arg;
  coro_timeout t;
  CHECK_EQ(coro_timeout_enter(&t, 1000), 0);
  int r = coro_sleep(10000);
  CHECK_ERR(r, -ECANCELED);
  r = coro_timeout_exit(&t, r);
  CHECK_ERR(r, -ECANCELED);
  CHECK_EQ(coro_timeout_expired(&t), 0);
  CHECK_EQ(CUR_CANCELLING(), 1);
  return coro_fail(r);
}

static void *foreign_unexpired_main(void *arg) {
  (void)arg;
  coro_future *f;
  int64_t t0 = coro_test_now_ms();
  CHECK_EQ(coro_spawn(&f, foreign_unexpired_body, NULL), 0);
  CHECK_EQ(coro_yield(), 0); /* f is in its sleep */
  CHECK_EQ(coro_cancel(f), 0);
  CHECK_ERR(coro_await(f, NULL), -ECANCELED);
  CHECK_LT(coro_test_now_ms() - t0, 900); /* did not wait for the deadline */
  coro_future_release(f);
  return NULL;
}

static void test_timeout_foreign_cancel_not_expired(void **state) {
  (void)state;
  assert_run_ok(foreign_unexpired_main);
}

/* The scope fired, its cancellation was caught, and then a cancellation
 * from outside arrives before exit: -ECANCELED, not -ETIMEDOUT. */
static int fired_flag;

static void *foreign_fired_body(void *arg) {
  (void)arg;
  coro_timeout t;
  CHECK_EQ(coro_timeout_enter(&t, 20), 0);
  int r = coro_sleep(10000);
  CHECK_ERR(r, -ECANCELED); /* the scope's */
  CHECK_EQ(coro_timeout_expired(&t), 1);
  fired_flag = 1;
  r = coro_sleep(10000); /* cleanup, interrupted from outside */
  CHECK_ERR(r, -ECANCELED);
  r = coro_timeout_exit(&t, r);
  CHECK_ERR(r, -ECANCELED);
  CHECK_EQ(coro_timeout_expired(&t), 1);
  CHECK_EQ(CUR_CANCELLING(), 1); /* the outside request stays counted */
  return coro_fail(r);
}

/* Both requests pending together: the scope fires while the task awaits a
 * child that cleans up slowly, and the outside request arrives meanwhile. */
static int child_cancelled_flag;

static void *slow_cleanup_child(void *arg) {
  (void)arg;
  int r = coro_sleep(10000);
  CHECK_ERR(r, -ECANCELED);
  child_cancelled_flag = 1;
  coro_sleep(100); /* may be cut short by the second request */
  return coro_fail(-ECANCELED);
}

static void *foreign_fired_await_body(void *arg) {
  (void)arg;
  coro_future *c;
  coro_timeout t;
  CHECK_EQ(coro_spawn(&c, slow_cleanup_child, NULL), 0);
  CHECK_EQ(coro_timeout_enter(&t, 20), 0);
  int r = coro_await(c, NULL);
  CHECK_ERR(r, -ECANCELED);
  r = coro_timeout_exit(&t, r);
  CHECK_ERR(r, -ECANCELED);
  CHECK_EQ(coro_timeout_expired(&t), 1);
  CHECK_EQ(CUR_CANCELLING(), 1);
  coro_future_release(c);
  return coro_fail(r);
}

static void *foreign_fired_main(void *arg) {
  (void)arg;
  coro_future *f;
  fired_flag = 0;
  CHECK_EQ(coro_spawn(&f, foreign_fired_body, NULL), 0);
  for (int i = 0; i < 400 && !fired_flag; i++) CHECK_EQ(coro_sleep(2), 0);
  CHECK_EQ(fired_flag, 1);
  CHECK_EQ(coro_cancel(f), 0);
  CHECK_ERR(coro_await(f, NULL), -ECANCELED);
  CHECK_EQ(coro_cancelling(f), 1);
  coro_future_release(f);

  child_cancelled_flag = 0;
  CHECK_EQ(coro_spawn(&f, foreign_fired_await_body, NULL), 0);
  for (int i = 0; i < 400 && !child_cancelled_flag; i++)
    CHECK_EQ(coro_sleep(2), 0);
  CHECK_EQ(child_cancelled_flag, 1);
  CHECK_EQ(coro_cancelling(f), 1); /* the scope's request */
  CHECK_ERR(coro_future_status(f), CORO_PENDING);
  CHECK_EQ(coro_cancel(f), 0);
  CHECK_ERR(coro_await(f, NULL), -ECANCELED);
  coro_future_release(f);
  return NULL;
}

static void test_timeout_foreign_cancel_after_expiry(void **state) {
  (void)state;
  assert_run_ok(foreign_fired_main);
}

/* The body fails with another error while handling the timeout: that error
 * comes out (test_foreign_exception_on_timeout). */
static void *other_error_main(void *arg) {
  (void)arg;
  coro_timeout t;
  CHECK_EQ(coro_timeout_enter(&t, 20), 0);
  int r = coro_sleep(10000);
  CHECK_ERR(r, -ECANCELED);
  r = -EIO; /* the cleanup failed */
  CHECK_ERR(coro_timeout_exit(&t, r), -EIO);
  CHECK_EQ(coro_timeout_expired(&t), 1);
  CHECK_EQ(CUR_CANCELLING(), 0);
  CHECK_EQ(coro_sleep(1), 0);
  /* A body that succeeded despite the expiry returns its 0. */
  coro_timeout t2;
  CHECK_EQ(coro_timeout_enter(&t2, 10), 0);
  CHECK_ERR(coro_sleep(10000), -ECANCELED);
  CHECK_EQ(coro_timeout_exit(&t2, 0), 0);
  CHECK_EQ(coro_timeout_expired(&t2), 1);
  CHECK_EQ(CUR_CANCELLING(), 0);
  CHECK_EQ(coro_sleep(1), 0);
  return NULL;
}

static void test_timeout_other_error_wins(void **state) {
  (void)state;
  assert_run_ok(other_error_main);
}

/* ---- reschedule and when -------------------------------------------------------- */

static void *reschedule_main(void *arg) {
  (void)arg;
  int64_t t0, d;
  int r;

  /* A later deadline extends the scope. */
  coro_timeout a;
  t0 = coro_test_now_ms();
  CHECK_EQ(coro_timeout_enter(&a, 20), 0);
  d = coro_now_ms() + 80;
  CHECK_EQ(coro_timeout_reschedule(&a, d), 0);
  CHECK_EQ(coro_timeout_when(&a), d);
  CHECK_EQ(coro_sleep(40), 0); /* past the first deadline */
  CHECK_EQ(coro_timeout_expired(&a), 0);
  r = coro_sleep(10000);
  CHECK_ERR(r, -ECANCELED);
  CHECK_GE(coro_now_ms(), d);
  CHECK_ERR(coro_timeout_exit(&a, r), -ETIMEDOUT);
  CHECK_GE(coro_test_now_ms() - t0, 40);
  CHECK_LT(coro_test_now_ms() - t0, 1000);

  /* CORO_FOREVER disables it. */
  coro_timeout b;
  CHECK_EQ(coro_timeout_enter(&b, 20), 0);
  CHECK_EQ(coro_timeout_reschedule(&b, CORO_FOREVER), 0);
  CHECK_EQ(coro_timeout_when(&b), CORO_FOREVER);
  CHECK_EQ(coro_sleep(50), 0);
  CHECK_EQ(coro_timeout_expired(&b), 0);
  CHECK_EQ(coro_timeout_exit(&b, 0), 0);

  /* An earlier deadline fires sooner. */
  coro_timeout c;
  t0 = coro_test_now_ms();
  CHECK_EQ(coro_timeout_enter(&c, 5000), 0);
  d = coro_now_ms() + 20;
  CHECK_EQ(coro_timeout_reschedule(&c, d), 0);
  r = coro_sleep(10000);
  CHECK_ERR(r, -ECANCELED);
  CHECK_GE(coro_now_ms(), d);
  CHECK_LT(coro_test_now_ms() - t0, 1000);
  /* Not after it fired, nor after exit. */
  CHECK_ERR(coro_timeout_reschedule(&c, coro_now_ms() + 1000), -EINVAL);
  CHECK_ERR(coro_timeout_exit(&c, r), -ETIMEDOUT);
  CHECK_ERR(coro_timeout_reschedule(&c, coro_now_ms() + 1000), -EINVAL);
  CHECK_ERR(coro_timeout_reschedule(&b, coro_now_ms() + 1000), -EINVAL);

  /* A disabled scope can be armed (test_timeout_disabled + reschedule). */
  coro_timeout e;
  CHECK_EQ(coro_timeout_enter(&e, CORO_FOREVER), 0);
  CHECK_EQ(coro_sleep(5), 0);
  d = coro_now_ms() + 10;
  CHECK_EQ(coro_timeout_reschedule(&e, d), 0);
  CHECK_EQ(coro_timeout_when(&e), d);
  r = coro_sleep(10000);
  CHECK_ERR(r, -ECANCELED);
  CHECK_ERR(coro_timeout_exit(&e, r), -ETIMEDOUT);

  CHECK_EQ(CUR_CANCELLING(), 0);
  CHECK_EQ(coro_sleep(1), 0);
  return NULL;
}

static void test_timeout_reschedule(void **state) {
  (void)state;
  assert_run_ok(reschedule_main);
}

static void *when_main(void *arg) {
  (void)arg;
  coro_timeout t;
  int64_t before = coro_now_ms();
  CHECK_EQ(coro_timeout_enter(&t, 100), 0);
  int64_t after = coro_now_ms();
  int64_t w = coro_timeout_when(&t);
  CHECK_GE(w, before + 100);
  CHECK_LE(w, after + 100 + 20);
  CHECK_EQ(coro_timeout_exit(&t, 0), 0);

  coro_timeout u;
  int64_t d = coro_now_ms() + 12345;
  CHECK_EQ(coro_timeout_enter_at(&u, d), 0);
  CHECK_EQ(coro_timeout_when(&u), d);
  CHECK_EQ(coro_timeout_reschedule(&u, d + 1), 0);
  CHECK_EQ(coro_timeout_when(&u), d + 1);
  CHECK_EQ(coro_timeout_exit(&u, 0), 0);

  coro_timeout v;
  CHECK_EQ(coro_timeout_enter_at(&v, CORO_FOREVER), 0);
  CHECK_EQ(coro_timeout_when(&v), CORO_FOREVER);
  CHECK_EQ(coro_sleep(5), 0);
  CHECK_EQ(coro_timeout_exit(&v, 0), 0);
  CHECK_EQ(coro_timeout_expired(&v), 0);

  /* The loop's clock is a real monotonic clock in milliseconds. */
  int64_t c0 = coro_now_ms();
  int64_t r0 = coro_test_now_ms();
  CHECK_EQ(coro_sleep(20), 0);
  CHECK_GE(coro_now_ms() - c0, 20);
  CHECK_LE(coro_now_ms() - c0, coro_test_now_ms() - r0 + 5);
  return NULL;
}

static void test_timeout_when(void **state) {
  (void)state;
  assert_run_ok(when_main);
}

/* enter_at with an absolute deadline from coro_now_ms(). */
static void *enter_at_main(void *arg) {
  (void)arg;
  coro_timeout t;
  int64_t t0 = coro_test_now_ms();
  int64_t d = coro_now_ms() + 30;
  CHECK_EQ(coro_timeout_enter_at(&t, d), 0);
  CHECK_EQ(coro_timeout_when(&t), d);
  int r = coro_sleep(10000);
  CHECK_ERR(r, -ECANCELED);
  CHECK_GE(coro_now_ms(), d);
  CHECK_ERR(coro_timeout_exit(&t, r), -ETIMEDOUT);
  CHECK_EQ(coro_timeout_expired(&t), 1);
  CHECK_GE(coro_test_now_ms() - t0, 29); /* d: whole ms of the loop's clock */
  CHECK_LT(coro_test_now_ms() - t0, 1000);
  CHECK_EQ(CUR_CANCELLING(), 0);
  return NULL;
}

static void test_timeout_enter_at(void **state) {
  (void)state;
  assert_run_ok(enter_at_main);
}

/* ---- misuse --------------------------------------------------------------------- */

static coro_timeout shared_t;
static int shared_entered, shared_checked;
static int cb_enter_rc, cb_exit_rc, cb_resched_rc, cb_ran;

static void timeout_in_cb(coro_future *f, void *data) {
  (void)f;
  (void)data;
  coro_timeout t;
  cb_ran++;
  cb_enter_rc = coro_timeout_enter(&t, 10);
  cb_exit_rc = coro_timeout_exit(&shared_t, 0);
  cb_resched_rc = coro_timeout_reschedule(&shared_t, coro_now_ms() + 10);
}

static void *owner_body(void *arg) {
  (void)arg;
  CHECK_EQ(coro_timeout_enter(&shared_t, 1000), 0);
  shared_entered = 1;
  for (int i = 0; i < 200 && !shared_checked; i++) CHECK_EQ(coro_sleep(1), 0);
  CHECK_EQ(coro_timeout_exit(&shared_t, 0), 0); /* still the owner's */
  CHECK_EQ(coro_timeout_expired(&shared_t), 0);
  return NULL;
}

static void *intruder_body(void *arg) {
  (void)arg;
  for (int i = 0; i < 200 && !shared_entered; i++) CHECK_EQ(coro_sleep(1), 0);
  CHECK_ERR(coro_timeout_exit(&shared_t, 0), -EPERM);
  CHECK_ERR(coro_timeout_reschedule(&shared_t, coro_now_ms() + 5), -EPERM);
  CHECK_EQ(coro_timeout_when(&shared_t) != CORO_FOREVER, 1);
  return NULL;
}

static void *misuse_main(void *arg) {
  (void)arg;
  coro_timeout t;
  CHECK_ERR(coro_timeout_enter(NULL, 10), -EINVAL);
  CHECK_ERR(coro_timeout_enter_at(NULL, 10), -EINVAL);
  CHECK_ERR(coro_timeout_enter(&t, -2), -EINVAL);
  CHECK_ERR(coro_timeout_exit(NULL, 0), -EINVAL);
  CHECK_ERR(coro_timeout_reschedule(NULL, 0), -EINVAL);

  /* Exit / reschedule on a scope never entered. */
  memset(&t, 0, sizeof(t));
  CHECK_ERR(coro_timeout_exit(&t, 0), -EINVAL);
  CHECK_ERR(coro_timeout_reschedule(&t, coro_now_ms() + 10), -EINVAL);

  /* Enter twice. */
  CHECK_EQ(coro_timeout_enter(&t, 1000), 0);
  CHECK_ERR(coro_timeout_enter(&t, 1000), -EINVAL);
  CHECK_ERR(coro_timeout_enter_at(&t, coro_now_ms() + 10), -EINVAL);
  CHECK_EQ(coro_sleep(1), 0);
  CHECK_EQ(coro_timeout_exit(&t, 0), 0);
  /* Exit twice. */
  CHECK_ERR(coro_timeout_exit(&t, 0), -EINVAL);

  /* Exit / reschedule from another task, and from a done callback. */
  coro_future *o, *i;
  shared_entered = shared_checked = 0;
  CHECK_EQ(coro_spawn(&o, owner_body, NULL), 0);
  CHECK_EQ(coro_spawn(&i, intruder_body, NULL), 0);
  CHECK_EQ(coro_await(i, NULL), 0);
  cb_ran = 0;
  CHECK_EQ(coro_future_on_done(i, timeout_in_cb, NULL), 0);
  for (int k = 0; k < 200 && cb_ran == 0; k++) CHECK_EQ(coro_sleep(1), 0);
  CHECK_EQ(cb_ran, 1);
  CHECK_ERR(cb_enter_rc, -EPERM);
  CHECK_ERR(cb_exit_rc, -EPERM);
  CHECK_ERR(cb_resched_rc, -EPERM);
  shared_checked = 1;
  CHECK_EQ(coro_await(o, NULL), 0);
  coro_future_release(o);
  coro_future_release(i);
  CHECK_EQ(CUR_CANCELLING(), 0);
  return NULL;
}

static void test_timeout_misuse(void **state) {
  (void)state;
  assert_run_ok(misuse_main);
  /* Outside any loop. */
  coro_timeout t;
  assert_coro_err(coro_timeout_enter(&t, 10), -EPERM);
  assert_coro_err(coro_timeout_enter_at(&t, 10), -EPERM);
}

/* ---- after an earlier cancellation ---------------------------------------------- */

static int after_stage;

static void *after_cancel_body(void *arg) {
  (void)arg;
  int r = coro_sleep(10000);
  CHECK_ERR(r, -ECANCELED); /* caught and handled */
  CHECK_EQ(CUR_CANCELLING(), 1);
  /* A timeout still works (test_timeout_after_cancellation). */
  coro_timeout t;
  int64_t t0 = coro_test_now_ms();
  CHECK_EQ(coro_timeout_enter(&t, 20), 0);
  r = coro_sleep(10000);
  CHECK_ERR(r, -ECANCELED);
  CHECK_ERR(coro_timeout_exit(&t, r), -ETIMEDOUT);
  CHECK_GE(coro_test_now_ms() - t0, 20);
  CHECK_EQ(CUR_CANCELLING(), 1);
  /* A new outside cancellation inside a scope stays -ECANCELED
   * (test_cancel_in_timeout_after_cancellation). */
  coro_timeout u;
  CHECK_EQ(coro_timeout_enter(&u, 5000), 0);
  after_stage = 1;
  r = coro_sleep(10000);
  CHECK_ERR(r, -ECANCELED);
  CHECK_ERR(coro_timeout_exit(&u, r), -ECANCELED);
  CHECK_EQ(coro_timeout_expired(&u), 0);
  CHECK_EQ(CUR_CANCELLING(), 2);
  return (void *)7; /* handled */
}

static void *after_cancel_main(void *arg) {
  (void)arg;
  coro_future *f;
  void *v = NULL;
  int64_t t0 = coro_test_now_ms();
  after_stage = 0;
  CHECK_EQ(coro_spawn(&f, after_cancel_body, NULL), 0);
  CHECK_EQ(coro_yield(), 0);
  CHECK_EQ(coro_cancel(f), 0);
  for (int i = 0; i < 400 && after_stage == 0; i++) CHECK_EQ(coro_sleep(1), 0);
  CHECK_EQ(after_stage, 1);
  CHECK_EQ(coro_cancel(f), 0);
  CHECK_EQ(coro_await(f, &v), 0);
  CHECK_PTR_EQ(v, (void *)7);
  CHECK_EQ(coro_cancelling(f), 2);
  CHECK_LT(coro_test_now_ms() - t0, 1000);
  coro_future_release(f);
  return NULL;
}

static void test_timeout_after_caught_cancellation(void **state) {
  (void)state;
  assert_run_ok(after_cancel_main);
}

/* ---- a task that never exits its scope -------------------------------------------- */

static void *no_exit_body(void *arg) {
  coro_timeout t;
  CHECK_EQ(coro_timeout_enter(&t, (int64_t)(intptr_t)arg), 0);
  CHECK_EQ(coro_yield(), 0);
  return (void *)1; /* no coro_timeout_exit */
}

static void *reuse_sleeper(void *arg) {
  (void)arg;
  /* Runs on a task struct and a stack the scope-leaving tasks used. */
  int64_t t0 = coro_test_now_ms();
  CHECK_EQ(coro_sleep(60), 0);
  CHECK_GE(coro_test_now_ms() - t0, 60);
  return (void *)2;
}

static void *no_exit_main(void *arg) {
  (void)arg;
  coro_future *f[3];
  void *v;
  CHECK_EQ(coro_spawn(&f[0], no_exit_body, (void *)(intptr_t)30), 0);
  CHECK_EQ(coro_spawn(&f[1], no_exit_body, (void *)(intptr_t)30), 0);
  CHECK_EQ(coro_spawn(&f[2], no_exit_body, (void *)(intptr_t)5000), 0);
  for (int i = 0; i < 3; i++) {
    v = NULL;
    CHECK_EQ(coro_await(f[i], &v), 0);
    CHECK_PTR_EQ(v, (void *)1);
    coro_future_release(f[i]);
  }
  /* Past their deadlines: nothing fires into reused tasks or into main. */
  coro_future *g[2];
  CHECK_EQ(coro_spawn(&g[0], reuse_sleeper, NULL), 0);
  CHECK_EQ(coro_spawn(&g[1], reuse_sleeper, NULL), 0);
  CHECK_EQ(coro_sleep(60), 0);
  for (int i = 0; i < 2; i++) {
    v = NULL;
    CHECK_EQ(coro_await(g[i], &v), 0);
    CHECK_PTR_EQ(v, (void *)2);
    coro_future_release(g[i]);
  }
  CHECK_EQ(CUR_CANCELLING(), 0);
  return NULL;
}

static void test_timeout_task_returns_without_exit(void **state) {
  (void)state;
  int64_t t0 = coro_test_now_ms();
  assert_run_ok(no_exit_main);
  int64_t dt = coro_test_now_ms() - t0;
  assert_true(dt >= 60);
  assert_true(dt < 2000); /* the 5 s scope does not hold the loop */
}

/* A scope's record is allocated on first use: when that fails, enter
 * says so, nothing fires later, and the next enter works. */
static void *enomem_main(void *arg) {
  (void)arg;
  coro_timeout t;
  coro_test_fail_alloc_after(1);
  CHECK_ERR(coro_timeout_enter(&t, 5), -ENOMEM);
  coro_test_fail_alloc_after(0);
  CHECK_EQ(coro_sleep(20), 0); /* no stray timeout cancels us */
  CHECK_EQ(coro_timeout_enter(&t, 1000), 0);
  CHECK_EQ(coro_timeout_exit(&t, coro_sleep(5)), 0);
  CHECK_EQ(coro_cancelling(coro_current()), 0);
  return NULL;
}

static void test_timeout_enter_enomem(void **state) {
  (void)state;
  assert_run_ok(enomem_main);
}

int main(int argc, char **argv) {
  const struct CMUnitTest tests[] = {
#define T(x) cmocka_unit_test_setup_teardown(x, coro_test_setup, coro_test_teardown)
    T(test_timeout_in_time),
    T(test_timeout_zero_without_suspension),
    T(test_timeout_expires),
    T(test_timeout_expires_in_await),
    T(test_timeout_cleanup_suspends),
    T(test_timeout_zero_fires_next_iteration),
    T(test_timeout_nested_same_deadline),
    T(test_timeout_nested_same_deadline_across_tick),
    T(test_timeout_nested_shorter_inner),
    T(test_timeout_foreign_cancel_not_expired),
    T(test_timeout_foreign_cancel_after_expiry),
    T(test_timeout_other_error_wins),
    T(test_timeout_reschedule),
    T(test_timeout_when),
    T(test_timeout_enter_at),
    T(test_timeout_misuse),
    T(test_timeout_after_caught_cancellation),
    T(test_timeout_task_returns_without_exit),
    T(test_timeout_enter_enomem),
#undef T
  };
  return coro_test_main(argc, argv, tests, NULL, NULL);
}
