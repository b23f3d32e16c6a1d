/* SPDX-License-Identifier: MIT */
/* coro_sleep: duration, sleep(0) as a yield, wake order, concurrency,
 * invalid arguments, cancellation (the timer is stopped), and timers not
 * starved by a task that keeps yielding. */
#include "helpers.h"

#include <stdio.h>
#include <string.h>

#define VAL(n) ((void *)(uintptr_t)(n))

/* ---- duration --------------------------------------------------------------- */

static int64_t slept_ms;

static void *sleep30_main(void *arg) {
  (void)arg;
  int64_t t0 = coro_test_now_ms();
  CHECK_EQ(coro_sleep(30), 0);
  slept_ms = coro_test_now_ms() - t0;
  return NULL;
}

static void test_sleep_duration(void **state) {
  (void)state;
  slept_ms = -1;
  assert_run_ok(sleep30_main);
  assert_true(slept_ms >= 30);
  assert_true(slept_ms < 1000);
}

/* Many short sleeps in a row: each one at least its duration. */
static void *sleep_repeat_main(void *arg) {
  (void)arg;
  int64_t t0 = coro_test_now_ms();
  for (int i = 0; i < 5; i++) {
    int64_t t1 = coro_test_now_ms();
    CHECK_EQ(coro_sleep(3), 0);
    CHECK_GE(coro_test_now_ms() - t1, 3);
  }
  slept_ms = coro_test_now_ms() - t0;
  return NULL;
}

static void test_sleep_repeated_each_full(void **state) {
  (void)state;
  slept_ms = -1;
  assert_run_ok(sleep_repeat_main);
  assert_true(slept_ms >= 15);
  assert_true(slept_ms < 1000);
}

/* ---- sleep(0) ------------------------------------------------------------- */

static void *zero_task(void *arg) {
  const char *name = arg;
  char s[3] = {name[0], '1', '\0'};
  coro_test_note(s);
  CHECK_EQ(coro_sleep(0), 0);
  s[1] = '2';
  coro_test_note(s);
  CHECK_EQ(coro_sleep(0), 0);
  s[1] = '3';
  coro_test_note(s);
  return NULL;
}

static void *sleep_zero_main(void *arg) {
  (void)arg;
  coro_future *a = NULL, *b = NULL;
  coro_test_log_reset();
  CHECK_EQ(coro_spawn(&a, zero_task, "A"), 0);
  CHECK_EQ(coro_spawn(&b, zero_task, "B"), 0);
  if (a == NULL || b == NULL) return NULL;
  CHECK_EQ(coro_await(a, NULL), 0);
  CHECK_EQ(coro_await(b, NULL), 0);
  CHECK_EQ(strcmp(coro_test_log(), "A1B1A2B2A3B3"), 0);
  coro_future_release(a);
  coro_future_release(b);
  return NULL;
}

static void test_sleep_zero_yields(void **state) {
  (void)state;
  assert_run_ok(sleep_zero_main);
}

/* sleep(0) and yield are the same trip around the loop: mixed, they
 * interleave exactly. */
static void *yield_task(void *arg) {
  (void)arg;
  coro_test_note("Y1");
  CHECK_EQ(coro_yield(), 0);
  coro_test_note("Y2");
  return NULL;
}

static void *sleep0_task(void *arg) {
  (void)arg;
  coro_test_note("S1");
  CHECK_EQ(coro_sleep(0), 0);
  coro_test_note("S2");
  return NULL;
}

static void *zero_vs_yield_main(void *arg) {
  (void)arg;
  coro_future *a = NULL, *b = NULL;
  coro_test_log_reset();
  CHECK_EQ(coro_spawn(&a, sleep0_task, NULL), 0);
  CHECK_EQ(coro_spawn(&b, yield_task, NULL), 0);
  if (a == NULL || b == NULL) return NULL;
  CHECK_EQ(coro_await(b, NULL), 0);
  CHECK_EQ(coro_await(a, NULL), 0);
  CHECK_EQ(strcmp(coro_test_log(), "S1Y1S2Y2"), 0);
  coro_future_release(a);
  coro_future_release(b);
  return NULL;
}

static void test_sleep_zero_same_as_yield(void **state) {
  (void)state;
  assert_run_ok(zero_vs_yield_main);
}

/* ---- wake order ------------------------------------------------------------ */

static void *timed_task(void *arg) {
  int ms = (int)(intptr_t)arg;
  int rc = coro_sleep(ms);
  if (rc != 0) return coro_fail(rc); /* the caller checks the status */
  char s[8];
  snprintf(s, sizeof(s), "%d,", ms);
  coro_test_note(s);
  return NULL;
}

static void *deadline_order_main(void *arg) {
  (void)arg;
  static const int ms[] = {100, 25, 75, 50};
  coro_future *t[4] = {0};
  coro_test_log_reset();
  for (int i = 0; i < 4; i++)
    CHECK_EQ(coro_spawn(&t[i], timed_task, (void *)(intptr_t)ms[i]), 0);
  for (int i = 0; i < 4; i++) {
    if (t[i] == NULL) continue;
    CHECK_EQ(coro_await(t[i], NULL), 0);
    coro_future_release(t[i]);
  }
  CHECK_EQ(strcmp(coro_test_log(), "25,50,75,100,"), 0);
  return NULL;
}

static void test_sleep_wake_in_deadline_order(void **state) {
  (void)state;
  assert_run_ok(deadline_order_main);
}

#define NEQ 10

static void *equal_task(void *arg) {
  int i = (int)(intptr_t)arg;
  CHECK_EQ(coro_sleep(20), 0);
  char s[2] = {(char)('0' + i), '\0'};
  coro_test_note(s);
  return NULL;
}

static void *equal_order_main(void *arg) {
  (void)arg;
  coro_future *t[NEQ] = {0};
  coro_test_log_reset();
  for (int i = 0; i < NEQ; i++)
    CHECK_EQ(coro_spawn(&t[i], equal_task, (void *)(intptr_t)i), 0);
  for (int i = 0; i < NEQ; i++) {
    if (t[i] == NULL) continue;
    CHECK_EQ(coro_await(t[i], NULL), 0);
    coro_future_release(t[i]);
  }
  CHECK_EQ(strcmp(coro_test_log(), "0123456789"), 0);
  return NULL;
}

static void test_sleep_equal_durations_fifo(void **state) {
  (void)state;
  assert_run_ok(equal_order_main);
}

/* ---- concurrency ------------------------------------------------------------- */

#define NCONC 1000
static int conc_done;

static void *conc_task(void *arg) {
  (void)arg;
  int64_t t0 = coro_test_now_ms();
  CHECK_EQ(coro_sleep(50), 0);
  CHECK_GE(coro_test_now_ms() - t0, 50);
  conc_done++;
  return NULL;
}

static void *concurrent_main(void *arg) {
  (void)arg;
  static coro_future *t[NCONC];
  for (int i = 0; i < NCONC; i++) {
    t[i] = NULL;
    CHECK_EQ(coro_spawn(&t[i], conc_task, NULL), 0);
  }
  for (int i = 0; i < NCONC; i++) {
    if (t[i] == NULL) continue;
    CHECK_EQ(coro_await(t[i], NULL), 0);
    coro_future_release(t[i]);
  }
  CHECK_EQ(conc_done, NCONC);
  return NULL;
}

static void test_sleep_many_concurrent(void **state) {
  (void)state;
  conc_done = 0;
  int64_t t0 = coro_test_now_ms();
  assert_coro_ok(coro_run(concurrent_main, NULL, NULL));
  int64_t dt = coro_test_now_ms() - t0;
  assert_checks_passed();
  assert_int_equal(conc_done, NCONC);
  assert_true(dt >= 50);
  assert_true(dt < 1000); /* sequential would take 50 s */
}

/* ---- invalid calls --------------------------------------------------------- */

static int cb_sleep_rc, cb_sleep0_rc, cb_forever_rc, cb_ran;

static void sleep_in_cb(coro_future *f, void *data) {
  (void)f;
  (void)data;
  cb_ran++;
  cb_sleep_rc = coro_sleep(10);
  cb_sleep0_rc = coro_sleep(0);
  cb_forever_rc = coro_sleep(CORO_FOREVER);
}

static void *invalid_main(void *arg) {
  (void)arg;
  CHECK_ERR(coro_sleep(-2), -EINVAL);
  CHECK_ERR(coro_sleep(-1000), -EINVAL);
  CHECK_ERR(coro_sleep(INT64_MIN), -EINVAL);
  coro_future *p = NULL;
  cb_ran = 0;
  cb_sleep_rc = cb_sleep0_rc = cb_forever_rc = 12345;
  CHECK_EQ(coro_future_new(&p), 0);
  if (p == NULL) return NULL;
  CHECK_EQ(coro_future_on_done(p, sleep_in_cb, NULL), 0);
  CHECK_EQ(coro_future_resolve(p, NULL), 0);
  int64_t t0 = coro_test_now_ms();
  CHECK_EQ(coro_yield(), 0);
  CHECK_LT(coro_test_now_ms() - t0, 1000); /* the callback did not block */
  CHECK_EQ(cb_ran, 1);
  CHECK_ERR(cb_sleep_rc, -EPERM);
  CHECK_ERR(cb_sleep0_rc, -EPERM);
  CHECK_ERR(cb_forever_rc, -EPERM);
  coro_future_release(p);
  return NULL;
}

static void test_sleep_invalid_args(void **state) {
  (void)state;
  assert_run_ok(invalid_main);
  /* Outside any loop. */
  assert_coro_err(coro_sleep(1), -EPERM);
  assert_coro_err(coro_sleep(0), -EPERM);
}

/* ---- cancellation ------------------------------------------------------------ */

static int sleeper_rc;
static int64_t sleeper_end_ms; /* when it ended (coro_test_now_ms) */
static int64_t cancel_at_ms;   /* when main cancelled it */

static void *long_sleeper(void *arg) {
  int64_t ms = (int64_t)(intptr_t)arg;
  sleeper_rc = coro_sleep(ms);
  sleeper_end_ms = coro_test_now_ms();
  return coro_fail(sleeper_rc);
}

static void *cancel_sleep_main(void *arg) {
  (void)arg;
  coro_future *s = NULL;
  CHECK_EQ(coro_spawn(&s, long_sleeper, (void *)(intptr_t)10000), 0);
  if (s == NULL) return NULL;
  CHECK_EQ(coro_sleep(20), 0);
  CHECK_ERR(coro_future_status(s), CORO_PENDING);
  cancel_at_ms = coro_test_now_ms();
  CHECK_EQ(coro_cancel(s), 0);
  CHECK_ERR(coro_await(s, NULL), -ECANCELED);
  coro_future_release(s);
  return NULL;
}

static void test_sleep_cancel_wakes_promptly(void **state) {
  (void)state;
  sleeper_rc = 12345;
  sleeper_end_ms = -1;
  int64_t t0 = coro_test_now_ms();
  assert_coro_ok(coro_run(cancel_sleep_main, NULL, NULL));
  int64_t dt = coro_test_now_ms() - t0;
  assert_checks_passed();
  assert_coro_err(sleeper_rc, -ECANCELED);
  /* It slept until the cancellation, not less (it began a little after
   * main's 20 ms sleep did, so its own span may be under 20 ms), and
   * woke at once after it. */
  assert_true(sleeper_end_ms >= cancel_at_ms);
  assert_true(sleeper_end_ms - cancel_at_ms < 1000);
  assert_true(dt < 1000);
}

/* After the cancelled sleep, main waits on a promise nobody can resolve.
 * With the sleep's timer stopped, nothing is left that could wake anyone:
 * coro_run detects the deadlock at once. A timer left armed would keep the
 * loop waiting for the rest of the 10 s. */
static void *timer_stopped_main(void *arg) {
  (void)arg;
  coro_future *s = NULL, *p = NULL;
  CHECK_EQ(coro_spawn(&s, long_sleeper, (void *)(intptr_t)10000), 0);
  if (s == NULL) return NULL;
  CHECK_EQ(coro_sleep(20), 0);
  CHECK_EQ(coro_cancel(s), 0);
  CHECK_ERR(coro_await(s, NULL), -ECANCELED);
  coro_future_release(s);
  CHECK_EQ(coro_future_new(&p), 0);
  if (p == NULL) return NULL;
  int rc = coro_await(p, NULL);
  CHECK_ERR(rc, -ECANCELED);
  coro_future_release(p);
  return coro_fail(rc);
}

static void test_sleep_cancel_stops_timer(void **state) {
  (void)state;
  sleeper_rc = 12345;
  int64_t t0 = coro_test_now_ms();
  assert_coro_err(coro_run(timer_stopped_main, NULL, NULL), -EDEADLK);
  int64_t dt = coro_test_now_ms() - t0;
  assert_checks_passed();
  assert_coro_err(sleeper_rc, -ECANCELED);
  assert_true(dt >= 20);
  assert_true(dt < 1000);
}

static int forever_woke;

static void *forever_sleeper(void *arg) {
  (void)arg;
  int rc = coro_sleep(CORO_FOREVER);
  forever_woke = 1;
  sleeper_rc = rc;
  return coro_fail(rc);
}

static void *forever_main(void *arg) {
  (void)arg;
  coro_future *s = NULL;
  CHECK_EQ(coro_spawn(&s, forever_sleeper, NULL), 0);
  if (s == NULL) return NULL;
  /* Other timers come and go; the forever sleeper stays asleep. */
  for (int i = 0; i < 5; i++) CHECK_EQ(coro_sleep(10), 0);
  CHECK_EQ(coro_yield(), 0);
  CHECK_EQ(forever_woke, 0);
  CHECK_ERR(coro_future_status(s), CORO_PENDING);
  CHECK_EQ(coro_cancel(s), 0);
  CHECK_ERR(coro_await(s, NULL), -ECANCELED);
  CHECK_EQ(forever_woke, 1);
  coro_future_release(s);
  return NULL;
}

static void test_sleep_forever_until_cancel(void **state) {
  (void)state;
  forever_woke = 0;
  sleeper_rc = 12345;
  int64_t t0 = coro_test_now_ms();
  assert_coro_ok(coro_run(forever_main, NULL, NULL));
  int64_t dt = coro_test_now_ms() - t0;
  assert_checks_passed();
  assert_coro_err(sleeper_rc, -ECANCELED);
  assert_true(dt >= 50);
  assert_true(dt < 1000);
}

static int resleep_rc1 = 12345, resleep_rc2 = 12345;
static int64_t resleep_ms;

static void *resleeper(void *arg) {
  (void)arg;
  resleep_rc1 = coro_sleep(10000);
  int64_t t0 = coro_test_now_ms();
  resleep_rc2 = coro_sleep(20); /* carries on after the cancellation */
  resleep_ms = coro_test_now_ms() - t0;
  return VAL(9);
}

static void *resleep_main(void *arg) {
  (void)arg;
  coro_future *s = NULL;
  CHECK_EQ(coro_spawn(&s, resleeper, NULL), 0);
  if (s == NULL) return NULL;
  CHECK_EQ(coro_sleep(10), 0);
  CHECK_EQ(coro_cancel(s), 0);
  void *res = NULL;
  CHECK_EQ(coro_await(s, &res), 0); /* it handled the cancellation */
  CHECK_PTR_EQ(res, VAL(9));
  coro_future_release(s);
  return NULL;
}

static void test_sleep_again_after_cancel(void **state) {
  (void)state;
  resleep_rc1 = resleep_rc2 = 12345;
  resleep_ms = -1;
  int64_t t0 = coro_test_now_ms();
  assert_coro_ok(coro_run(resleep_main, NULL, NULL));
  int64_t dt = coro_test_now_ms() - t0;
  assert_checks_passed();
  assert_coro_err(resleep_rc1, -ECANCELED);
  assert_coro_ok(resleep_rc2);
  assert_true(resleep_ms >= 20);
  assert_true(resleep_ms < 1000);
  assert_true(dt < 1000);
}

/* A cancelled sleeper's timer is gone, so it must not disturb the other
 * sleepers: the remaining ones wake in order and on time. */
static void *cancel_one_main(void *arg) {
  (void)arg;
  coro_future *t[3] = {0};
  coro_test_log_reset();
  int64_t t0 = coro_test_now_ms();
  CHECK_EQ(coro_spawn(&t[0], timed_task, (void *)(intptr_t)40), 0);
  CHECK_EQ(coro_spawn(&t[1], timed_task, (void *)(intptr_t)10), 0);
  CHECK_EQ(coro_spawn(&t[2], timed_task, (void *)(intptr_t)25), 0);
  if (t[0] == NULL || t[1] == NULL || t[2] == NULL) return NULL;
  CHECK_EQ(coro_yield(), 0);
  CHECK_EQ(coro_cancel(t[1]), 0); /* the earliest one */
  CHECK_ERR(coro_await(t[1], NULL), -ECANCELED);
  CHECK_EQ(coro_await(t[0], NULL), 0);
  CHECK_EQ(coro_await(t[2], NULL), 0);
  CHECK_GE(coro_test_now_ms() - t0, 40);
  CHECK_EQ(strcmp(coro_test_log(), "25,40,"), 0);
  for (int i = 0; i < 3; i++) coro_future_release(t[i]);
  return NULL;
}

static void test_sleep_cancel_one_of_many(void **state) {
  (void)state;
  assert_run_ok(cancel_one_main);
}

/* A huge duration is just very long: it must not wrap around (ms * 10^6
 * overflowing 64 bits) into a deadline in the past. */
static int huge_rc;
static int huge_woke;

static void *huge_sleeper(void *arg) {
  int64_t ms = *(const int64_t *)arg;
  huge_rc = coro_sleep(ms);
  huge_woke = 1;
  return coro_fail(huge_rc == 0 ? -EINVAL : huge_rc);
}

static void *huge_main(void *arg) {
  coro_future *s = NULL;
  huge_rc = 12345;
  huge_woke = 0;
  CHECK_EQ(coro_spawn(&s, huge_sleeper, arg), 0);
  if (s == NULL) return NULL;
  CHECK_EQ(coro_sleep(30), 0);
  CHECK_EQ(huge_woke, 0); /* still asleep */
  CHECK_ERR(coro_future_status(s), CORO_PENDING);
  CHECK_EQ(coro_cancel(s), 0);
  CHECK_ERR(coro_await(s, NULL), -ECANCELED);
  CHECK_ERR(huge_rc, -ECANCELED);
  coro_future_release(s);
  return NULL;
}

static void test_sleep_huge_duration_no_overflow(void **state) {
  (void)state;
  static const int64_t durations[] = {INT64_MAX, INT64_MAX / 1000,
                                      (int64_t)1 << 45};
  for (size_t i = 0; i < sizeof(durations) / sizeof(durations[0]); i++) {
    int64_t t0 = coro_test_now_ms();
    int rc = coro_run(huge_main, (void *)&durations[i], NULL);
    int64_t dt = coro_test_now_ms() - t0;
    if (coro_test_failed_line != 0)
      fail_msg("coro_sleep(%lld): CHECK failed at line %d: %s (sleep "
               "returned %d)",
               (long long)durations[i], coro_test_failed_line,
               coro_test_failed_expr, huge_rc);
    assert_coro_ok(rc);
    assert_true(dt < 1000);
  }
}

/* ---- timers are not starved ------------------------------------------------ */

static int starve_flag;
static long starve_iters;
static int64_t starve_flag_ms;

static void *busy_yielder(void *arg) {
  (void)arg;
  int64_t t0 = coro_test_now_ms();
  while (!starve_flag) {
    if (coro_test_now_ms() - t0 > 10000) {
      CHECK(!"the sleeping task never woke");
      break;
    }
    CHECK_EQ(coro_yield(), 0);
    starve_iters++;
  }
  return NULL;
}

static void *flag_setter(void *arg) {
  (void)arg;
  int64_t t0 = coro_test_now_ms();
  CHECK_EQ(coro_sleep(20), 0);
  starve_flag_ms = coro_test_now_ms() - t0;
  starve_flag = 1;
  return NULL;
}

static void *starve_main(void *arg) {
  (void)arg;
  coro_future *a = NULL, *b = NULL;
  CHECK_EQ(coro_spawn(&a, busy_yielder, NULL), 0);
  CHECK_EQ(coro_spawn(&b, flag_setter, NULL), 0);
  if (a == NULL || b == NULL) return NULL;
  CHECK_EQ(coro_await(a, NULL), 0);
  CHECK_EQ(coro_await(b, NULL), 0);
  coro_future_release(a);
  coro_future_release(b);
  return NULL;
}

static void test_sleep_not_starved_by_yield_loop(void **state) {
  (void)state;
  starve_flag = 0;
  starve_iters = 0;
  starve_flag_ms = -1;
  assert_run_ok(starve_main);
  assert_int_equal(starve_flag, 1);
  assert_true(starve_iters > 0);
  assert_true(starve_flag_ms >= 20);
  assert_true(starve_flag_ms < 1000);
}

/* The loop's timer heap grows on the first timer: when that allocation
 * fails, the sleep says so and changes nothing; the next one works. */
static void *sleep_enomem_main(void *arg) {
  (void)arg;
  coro_test_fail_alloc_after(1);
  int64_t t0 = coro_test_now_ms();
  CHECK_ERR(coro_sleep(1000), -ENOMEM);
  coro_test_fail_alloc_after(0);
  CHECK_LT(coro_test_now_ms() - t0, 500); /* did not wait */
  CHECK_EQ(coro_sleep(10), 0);
  return NULL;
}

static void test_sleep_timer_heap_enomem(void **state) {
  (void)state;
  assert_run_ok(sleep_enomem_main);
}

int main(int argc, char **argv) {
  const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, coro_test_setup, coro_test_teardown)
      T(test_sleep_duration),
      T(test_sleep_repeated_each_full),
      T(test_sleep_zero_yields),
      T(test_sleep_zero_same_as_yield),
      T(test_sleep_wake_in_deadline_order),
      T(test_sleep_equal_durations_fifo),
      T(test_sleep_many_concurrent),
      T(test_sleep_invalid_args),
      T(test_sleep_cancel_wakes_promptly),
      T(test_sleep_cancel_stops_timer),
      T(test_sleep_forever_until_cancel),
      T(test_sleep_again_after_cancel),
      T(test_sleep_cancel_one_of_many),
      T(test_sleep_huge_duration_no_overflow),
      T(test_sleep_timer_heap_enomem),
      T(test_sleep_not_starved_by_yield_loop),
#undef T
  };
  return coro_test_main(argc, argv, tests, NULL, NULL);
}
