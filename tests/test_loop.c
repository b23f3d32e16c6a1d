/* SPDX-License-Identifier: MIT */
/* coro_run and the scheduler: return values and errors, the current loop
 * and its libuv loop, lazy FIFO spawning, the per-iteration snapshot,
 * detached tasks, shutdown (cancel and drain, abandon), deadlock detection,
 * allocation failures, and many tasks. */
#include "helpers.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "ctx/stack.h"

#define VAL(n) ((void *)(uintptr_t)(n))

static size_t live_stacks(void) {
  coro__stack_stats st;
  coro__stack_get_stats(&st);
  return st.live;
}

/* ---- coro_run's result and errors ----------------------------------------- */

static int main_ran;

static void *value_main(void *arg) {
  main_ran++;
  CHECK_PTR_EQ(arg, VAL(0xabc));
  CHECK_EQ(coro_yield(), 0);
  return VAL(0x1234);
}

static void test_loop_run_returns_value(void **state) {
  (void)state;
  void *res = NULL;
  main_ran = 0;
  assert_coro_ok(coro_run(value_main, VAL(0xabc), &res));
  assert_checks_passed();
  assert_ptr_equal(res, VAL(0x1234));
  assert_int_equal(main_ran, 1);
  /* result may be NULL. */
  assert_coro_ok(coro_run(value_main, VAL(0xabc), NULL));
  assert_checks_passed();
  assert_int_equal(main_ran, 2);
}

static void *failing_main(void *arg) {
  (void)arg;
  CHECK_EQ(coro_sleep(1), 0);
  return coro_fail(-ENOENT);
}

static void test_loop_run_returns_main_error(void **state) {
  (void)state;
  void *res = VAL(1);
  assert_coro_err(coro_run(failing_main, NULL, &res), -ENOENT);
  assert_checks_passed();
  assert_null(res);
}

static void *counting_main(void *arg) {
  (void)arg;
  main_ran++;
  return VAL(5);
}

static void test_loop_run_invalid_args(void **state) {
  (void)state;
  void *res = VAL(1);
  main_ran = 0;
  assert_coro_err(coro_run(NULL, NULL, &res), -EINVAL);
  assert_coro_err(coro_run_config(NULL, NULL, NULL, &res), -EINVAL);
  assert_ptr_equal(res, VAL(1));

  coro_config cfg;
  memset(&cfg, 0, sizeof(cfg));
  cfg.slow_step_ms = -1;
  assert_coro_err(coro_run_config(&cfg, counting_main, NULL, &res), -EINVAL);
  assert_int_equal(main_ran, 0);
  assert_null(coro_loop_current());

  /* A valid configuration runs main. */
  memset(&cfg, 0, sizeof(cfg));
  cfg.stack_size = 64 * 1024;
  cfg.slow_step_ms = 50;
  cfg.threads = 1;
  assert_coro_ok(coro_run_config(&cfg, counting_main, NULL, &res));
  assert_ptr_equal(res, VAL(5));
  assert_int_equal(main_ran, 1);
  /* A NULL configuration means the defaults. */
  assert_coro_ok(coro_run_config(NULL, counting_main, NULL, &res));
  assert_int_equal(main_ran, 2);
}

static int nested_rc, nested_cfg_rc, nested_cb_rc;

static void nested_cb(coro_future *f, void *data) {
  (void)f;
  (void)data;
  nested_cb_rc = coro_run(counting_main, NULL, NULL);
}

static void *nesting_main(void *arg) {
  (void)arg;
  coro_config cfg;
  memset(&cfg, 0, sizeof(cfg));
  nested_rc = coro_run(counting_main, NULL, NULL);
  nested_cfg_rc = coro_run_config(&cfg, counting_main, NULL, NULL);
  coro_future *p = NULL;
  CHECK_EQ(coro_future_new(&p), 0);
  if (p == NULL) return NULL;
  CHECK_EQ(coro_future_on_done(p, nested_cb, NULL), 0);
  CHECK_EQ(coro_future_resolve(p, NULL), 0);
  CHECK_EQ(coro_yield(), 0);
  coro_future_release(p);
  /* The loop still works. */
  CHECK_EQ(coro_sleep(1), 0);
  return VAL(3);
}

static void test_loop_run_nested_ebusy(void **state) {
  (void)state;
  void *res = NULL;
  main_ran = 0;
  nested_rc = nested_cfg_rc = nested_cb_rc = 12345;
  assert_coro_ok(coro_run(nesting_main, NULL, &res));
  assert_checks_passed();
  assert_ptr_equal(res, VAL(3));
  assert_coro_err(nested_rc, -EBUSY);
  assert_coro_err(nested_cfg_rc, -EBUSY);
  assert_coro_err(nested_cb_rc, -EBUSY);
  assert_int_equal(main_ran, 0);
}

/* ---- the current loop and its libuv loop ---------------------------------- */

static coro_loop *seen_loop_main, *seen_loop_child, *seen_loop_cb;

static void loop_cb(coro_future *f, void *data) {
  (void)f;
  (void)data;
  seen_loop_cb = coro_loop_current();
}

static void *loop_child(void *arg) {
  (void)arg;
  seen_loop_child = coro_loop_current();
  return NULL;
}

static void *loop_current_main(void *arg) {
  (void)arg;
  seen_loop_main = coro_loop_current();
  CHECK(seen_loop_main != NULL);
  CHECK(coro_loop_uv(seen_loop_main) != NULL);
  coro_future *c = NULL, *p = NULL;
  CHECK_EQ(coro_spawn(&c, loop_child, NULL), 0);
  CHECK_EQ(coro_future_new(&p), 0);
  if (c == NULL || p == NULL) return NULL;
  CHECK_EQ(coro_future_on_done(p, loop_cb, NULL), 0);
  CHECK_EQ(coro_future_resolve(p, NULL), 0);
  CHECK_EQ(coro_await(c, NULL), 0);
  CHECK_EQ(coro_yield(), 0);
  CHECK_PTR_EQ(seen_loop_child, seen_loop_main);
  CHECK_PTR_EQ(seen_loop_cb, seen_loop_main);
  coro_future_release(c);
  coro_future_release(p);
  return NULL;
}

static void test_loop_current(void **state) {
  (void)state;
  seen_loop_main = seen_loop_child = seen_loop_cb = NULL;
  assert_null(coro_loop_current());
  assert_null(coro_loop_uv(NULL));
  assert_run_ok(loop_current_main);
  assert_non_null(seen_loop_main);
  assert_null(coro_loop_current());
}

static uv_timer_t user_timer;
static int user_timer_closed;
static struct {
  int ran;
  int current_null;
  int sleep_rc;
  int resolve_rc;
  coro_loop *loop;
} utm_seen;

static void user_timer_cb(uv_timer_t *h) {
  coro_future *p = h->data;
  utm_seen.ran++;
  utm_seen.current_null = coro_current() == NULL;
  utm_seen.sleep_rc = coro_sleep(1);
  utm_seen.loop = coro_loop_current();
  utm_seen.resolve_rc = coro_future_resolve(p, VAL(17));
}

static void user_timer_close_cb(uv_handle_t *h) {
  (void)h;
  user_timer_closed++;
}

static void *uv_timer_main(void *arg) {
  (void)arg;
  uv_loop_t *uv = coro_loop_uv(coro_loop_current());
  CHECK(uv != NULL);
  if (uv == NULL) return NULL;
  coro_future *p = NULL;
  CHECK_EQ(coro_future_new(&p), 0);
  if (p == NULL) return NULL;
  CHECK_EQ(uv_timer_init(uv, &user_timer), 0);
  user_timer.data = p;
  uv_update_time(uv);
  int64_t t0 = coro_test_now_ms();
  CHECK_EQ(uv_timer_start(&user_timer, user_timer_cb, 20, 0), 0);
  void *res = NULL;
  CHECK_EQ(coro_await(p, &res), 0);
  /* libuv's clock may be coarse: only a loose lower bound here. */
  int64_t dt = coro_test_now_ms() - t0;
  CHECK_GE(dt, 10);
  CHECK_LT(dt, 1000);
  CHECK_PTR_EQ(res, VAL(17));
  uv_close((uv_handle_t *)&user_timer, user_timer_close_cb);
  coro_future_release(p);
  CHECK_EQ(coro_sleep(1), 0);
  return NULL;
}

static void test_loop_uv_handle_integration(void **state) {
  (void)state;
  memset(&utm_seen, 0, sizeof(utm_seen));
  user_timer_closed = 0;
  assert_run_ok(uv_timer_main);
  assert_int_equal(utm_seen.ran, 1);
  assert_true(utm_seen.current_null);
  assert_coro_err(utm_seen.sleep_rc, -EPERM);
  assert_non_null(utm_seen.loop);
  assert_coro_ok(utm_seen.resolve_rc);
  assert_int_equal(user_timer_closed, 1);
}

static uv_async_t user_async;
static int user_timer_fired;

static void repeat_cb(uv_timer_t *h) {
  (void)h;
  user_timer_fired++;
}

static void async_cb(uv_async_t *h) { (void)h; }

static void *left_open_main(void *arg) {
  (void)arg;
  uv_loop_t *uv = coro_loop_uv(coro_loop_current());
  CHECK(uv != NULL);
  if (uv == NULL) return NULL;
  CHECK_EQ(uv_timer_init(uv, &user_timer), 0);
  CHECK_EQ(uv_timer_start(&user_timer, repeat_cb, 5000, 5000), 0);
  CHECK_EQ(uv_async_init(uv, &user_async, async_cb), 0);
  CHECK_EQ(coro_sleep(1), 0);
  return VAL(6); /* both handles still open and active */
}

static void test_loop_closes_leftover_handles(void **state) {
  (void)state;
  void *res = NULL;
  user_timer_fired = 0;
  int64_t t0 = coro_test_now_ms();
  assert_coro_ok(coro_run(left_open_main, NULL, &res));
  int64_t dt = coro_test_now_ms() - t0;
  assert_checks_passed();
  assert_ptr_equal(res, VAL(6));
  assert_true(dt < 1000); /* did not wait for the 5 s timer */
  assert_int_equal(user_timer_fired, 0);
  assert_true(uv_is_closing((uv_handle_t *)&user_timer));
  assert_true(uv_is_closing((uv_handle_t *)&user_async));
}

/* ---- lazy spawn, FIFO ------------------------------------------------------ */

static int lazy_flag;

static void *lazy_child(void *arg) {
  (void)arg;
  lazy_flag = 1;
  return NULL;
}

static void *lazy_main(void *arg) {
  (void)arg;
  coro_future *c = NULL, *p = NULL;
  lazy_flag = 0;
  CHECK_EQ(coro_spawn(&c, lazy_child, NULL), 0);
  if (c == NULL) return NULL;
  CHECK_EQ(lazy_flag, 0);
  CHECK_ERR(coro_future_status(c), CORO_PENDING);
  /* Calls that do not suspend do not let it run. */
  CHECK_EQ(coro_future_new(&p), 0);
  if (p == NULL) return NULL;
  CHECK_EQ(coro_future_resolve(p, NULL), 0);
  CHECK_EQ(coro_await(p, NULL), 0);
  CHECK_EQ(lazy_flag, 0);
  CHECK_EQ(coro_yield(), 0);
  CHECK_EQ(lazy_flag, 1);
  CHECK_EQ(coro_future_status(c), 0);
  coro_future_release(c);
  coro_future_release(p);
  return NULL;
}

static void test_loop_spawn_is_lazy(void **state) {
  (void)state;
  assert_run_ok(lazy_main);
}

static void *two_step_task(void *arg) {
  const char *name = arg;
  char s[2] = {name[0], '\0'};
  coro_test_note(s);
  CHECK_EQ(coro_yield(), 0);
  s[0] = name[1];
  coro_test_note(s);
  return NULL;
}

static void *fifo_main(void *arg) {
  (void)arg;
  coro_future *a = NULL, *c = NULL;
  coro_test_log_reset();
  CHECK_EQ(coro_spawn(&a, two_step_task, "Aa"), 0);
  CHECK_EQ(coro_spawn(NULL, two_step_task, "Bb"), 0);
  CHECK_EQ(coro_spawn(&c, two_step_task, "Cc"), 0);
  if (a == NULL || c == NULL) return NULL;
  CHECK_EQ(coro_await(c, NULL), 0);
  CHECK_EQ(coro_await(a, NULL), 0);
  CHECK_EQ(strcmp(coro_test_log(), "ABCabc"), 0);
  coro_future_release(a);
  coro_future_release(c);
  return NULL;
}

static void test_loop_spawn_fifo(void **state) {
  (void)state;
  assert_run_ok(fifo_main);
}

/* ---- the per-iteration snapshot --------------------------------------------
 * A libuv check handle runs once per uv_run pass, i.e. once per loop
 * iteration that polls, before the ready queue's snapshot runs; iter_no
 * thus names the iteration a step runs in. It is unreferenced: it does not
 * keep the loop alive. The loop may skip the (non-blocking) poll while work
 * is ready, but it polls at the latest once the clock has ticked (loop.c:
 * "a busy loop still sees timers and I/O within one clock tick"), so each
 * step here waits for a coarse clock tick before it suspends: then every
 * iteration polls, and a step that ran in the same snapshot as its spawner
 * would see the same iter_no. */

static int64_t coarse_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void wait_clock_tick(void) {
  int64_t c0 = coarse_ms(), t0 = coro_test_now_ms();
  while (coarse_ms() == c0 && coro_test_now_ms() - t0 < 100) {
  }
}

static uv_check_t iter_check;
static long iter_no;

static void iter_cb(uv_check_t *h) {
  (void)h;
  iter_no++;
}

static int iter_start(void) {
  iter_no = 0;
  int r = uv_check_init(coro_loop_uv(coro_loop_current()), &iter_check);
  if (r == 0) r = uv_check_start(&iter_check, iter_cb);
  uv_unref((uv_handle_t *)&iter_check);
  return r;
}

static void iter_stop(void) { uv_close((uv_handle_t *)&iter_check, NULL); }

static long iter_a_spawn, iter_a_resume, iter_b, iter_c;

static void *snap_b(void *arg) {
  (void)arg;
  iter_b = iter_no;
  coro_test_note("B1");
  return NULL;
}

static void *snap_c(void *arg) {
  (void)arg;
  iter_c = iter_no;
  coro_test_note("C1");
  return NULL;
}

static void *snap_a(void *arg) {
  (void)arg;
  iter_a_spawn = iter_no;
  CHECK_EQ(coro_spawn(NULL, snap_b, NULL), 0);
  coro_test_note("A1");
  wait_clock_tick();
  CHECK_EQ(coro_yield(), 0);
  iter_a_resume = iter_no;
  coro_test_note("A2");
  return NULL;
}

static void *snapshot_main(void *arg) {
  (void)arg;
  coro_future *a = NULL;
  coro_test_log_reset();
  iter_a_spawn = iter_a_resume = iter_b = iter_c = -1;
  CHECK_EQ(iter_start(), 0);
  CHECK_EQ(coro_spawn(&a, snap_a, NULL), 0);
  CHECK_EQ(coro_spawn(NULL, snap_c, NULL), 0);
  if (a == NULL) return NULL;
  wait_clock_tick();
  CHECK_EQ(coro_await(a, NULL), 0);
  iter_stop();
  /* A spawns B and yields; C was already queued: A1 C1, then B's first
   * step before A resumes (call_soon FIFO). */
  CHECK_EQ(strcmp(coro_test_log(), "A1C1B1A2"), 0);
  /* B was queued during iteration k: it runs in k+1, not in k. */
  CHECK_GE(iter_a_spawn, 1);
  CHECK_EQ(iter_c, iter_a_spawn);
  CHECK_EQ(iter_b, iter_a_spawn + 1);
  CHECK_EQ(iter_a_resume, iter_a_spawn + 1);
  coro_future_release(a);
  return NULL;
}

static void test_loop_snapshot_spawned_runs_next_iteration(void **state) {
  (void)state;
  assert_run_ok(snapshot_main);
}

/* A callback that re-registers itself on a done future runs once per
 * iteration, in step with a task that yields once per iteration. */
#define CHAIN_N 3
static long chain_iters[CHAIN_N + 1];
static int chain_count;

static void chain_cb(coro_future *f, void *data) {
  (void)data;
  coro_test_note("c");
  if (chain_count <= CHAIN_N) chain_iters[chain_count] = iter_no;
  if (++chain_count < CHAIN_N)
    CHECK_EQ(coro_future_on_done(f, chain_cb, NULL), 0);
}

static void *chain_main(void *arg) {
  (void)arg;
  coro_future *p = NULL;
  long main_iters[CHAIN_N + 1];
  coro_test_log_reset();
  chain_count = 0;
  CHECK_EQ(iter_start(), 0);
  CHECK_EQ(coro_future_new(&p), 0);
  if (p == NULL) return NULL;
  CHECK_EQ(coro_future_resolve(p, NULL), 0);
  long k0 = iter_no;
  CHECK_EQ(coro_future_on_done(p, chain_cb, NULL), 0);
  for (int i = 0; i < CHAIN_N + 1; i++) {
    wait_clock_tick();
    CHECK_EQ(coro_yield(), 0);
    main_iters[i] = iter_no;
    coro_test_note("m");
  }
  iter_stop();
  CHECK_EQ(strcmp(coro_test_log(), "cmcmcmm"), 0);
  CHECK_EQ(chain_count, CHAIN_N);
  for (int i = 0; i < CHAIN_N; i++) CHECK_EQ(chain_iters[i], k0 + 1 + i);
  for (int i = 0; i < CHAIN_N + 1; i++) CHECK_EQ(main_iters[i], k0 + 1 + i);
  coro_future_release(p);
  return NULL;
}

static void test_loop_snapshot_callback_chain(void **state) {
  (void)state;
  assert_run_ok(chain_main);
}

/* ---- detached tasks and handles -------------------------------------------- */

static int detached_done;

static void *detached_task(void *arg) {
  int ms = (int)(intptr_t)arg;
  CHECK_EQ(coro_sleep(ms), 0);
  detached_done++;
  return NULL;
}

static void *detached_main(void *arg) {
  (void)arg;
  detached_done = 0;
  for (int i = 0; i < 5; i++)
    CHECK_EQ(coro_spawn(NULL, detached_task, (void *)(intptr_t)(i + 1)), 0);
  int64_t t0 = coro_test_now_ms();
  while (detached_done < 5) {
    if (coro_test_now_ms() - t0 > 5000) {
      CHECK(!"detached tasks did not finish");
      break;
    }
    CHECK_EQ(coro_sleep(1), 0);
  }
  return NULL;
}

static void test_loop_detached_tasks_complete(void **state) {
  (void)state;
  assert_run_ok(detached_main);
  assert_int_equal(detached_done, 5);
}

static void *released_main(void *arg) {
  (void)arg;
  coro_future *t = NULL, *u = NULL;
  detached_done = 0;
  /* Released before its first step. */
  CHECK_EQ(coro_spawn(&t, detached_task, (void *)(intptr_t)10), 0);
  coro_future_release(t);
  /* Released while it sleeps. */
  CHECK_EQ(coro_spawn(&u, detached_task, (void *)(intptr_t)10), 0);
  CHECK_EQ(coro_yield(), 0);
  CHECK_EQ(detached_done, 0);
  coro_future_release(u);
  int64_t t0 = coro_test_now_ms();
  while (detached_done < 2) {
    if (coro_test_now_ms() - t0 > 5000) {
      CHECK(!"released tasks did not finish");
      break;
    }
    CHECK_EQ(coro_sleep(1), 0);
  }
  return NULL;
}

static void test_loop_release_handle_keeps_task(void **state) {
  (void)state;
  assert_run_ok(released_main);
  assert_int_equal(detached_done, 2);
}

/* ---- shutdown: cancel and drain ---------------------------------------------- */

static struct {
  int s1_rc, s1_cleanup;
  int s2_rc, s2_cleanup;
  int s3_ran;
  int s4_rc1, s4_rc2, s4_done;
  int64_t s4_ms;
  int s5_ran, s5_rc, s5_spawn_rc;
} sd;
static coro_future *sd_h1, *sd_h3, *sd_h4;

static void *sd_s5(void *arg) {
  (void)arg;
  sd.s5_ran = 1;
  sd.s5_rc = coro_sleep(10000);
  return coro_fail(sd.s5_rc);
}

static void *sd_s1(void *arg) {
  (void)arg;
  int rc = coro_sleep(10000);
  sd.s1_rc = rc;
  sd.s1_cleanup = 1;
  /* Spawned during shutdown: it must not keep the loop alive either. */
  sd.s5_spawn_rc = coro_spawn(NULL, sd_s5, NULL);
  return coro_fail(rc);
}

static void *sd_s2(void *arg) {
  coro_future *p = arg;
  int rc = coro_await(p, NULL);
  sd.s2_rc = rc;
  sd.s2_cleanup = 1;
  return coro_fail(rc);
}

static void *sd_s3(void *arg) {
  (void)arg;
  sd.s3_ran = 1;
  return NULL;
}

static void *sd_s4(void *arg) {
  (void)arg;
  sd.s4_rc1 = coro_sleep(10000);
  int64_t t0 = coro_test_now_ms();
  sd.s4_rc2 = coro_sleep(20); /* cleanup that takes time */
  sd.s4_ms = coro_test_now_ms() - t0;
  sd.s4_done = 1;
  return VAL(4);
}

static void *shutdown_main(void *arg) {
  (void)arg;
  coro_future *p = NULL;
  CHECK_EQ(coro_future_new(&p), 0);
  if (p == NULL) return NULL;
  CHECK_EQ(coro_spawn(&sd_h1, sd_s1, NULL), 0);
  CHECK_EQ(coro_spawn(NULL, sd_s2, p), 0);
  CHECK_EQ(coro_spawn(&sd_h4, sd_s4, NULL), 0);
  CHECK_EQ(coro_yield(), 0); /* S1, S2, S4 are waiting now */
  CHECK_EQ(coro_spawn(&sd_h3, sd_s3, NULL), 0); /* never started */
  coro_future_release(p); /* S2's await holds it */
  return VAL(1);
}

static void test_loop_shutdown_cancels_and_drains(void **state) {
  (void)state;
  memset(&sd, 0, sizeof(sd));
  sd.s1_rc = sd.s2_rc = sd.s4_rc1 = sd.s4_rc2 = sd.s5_rc = 12345;
  sd.s5_spawn_rc = 12345;
  sd_h1 = sd_h3 = sd_h4 = NULL;
  void *res = NULL;
  int64_t t0 = coro_test_now_ms();
  assert_coro_ok(coro_run(shutdown_main, NULL, &res));
  int64_t dt = coro_test_now_ms() - t0;
  assert_checks_passed();
  assert_ptr_equal(res, VAL(1));
  assert_true(dt >= 20);
  assert_true(dt < 1000);
  /* Sleeping task: cancelled, its cleanup ran. */
  assert_coro_err(sd.s1_rc, -ECANCELED);
  assert_int_equal(sd.s1_cleanup, 1);
  assert_coro_err(coro_future_status(sd_h1), -ECANCELED);
  /* Waiting forever on a promise. */
  assert_coro_err(sd.s2_rc, -ECANCELED);
  assert_int_equal(sd.s2_cleanup, 1);
  /* Never started: its body never ran. */
  assert_int_equal(sd.s3_ran, 0);
  assert_coro_err(coro_future_status(sd_h3), -ECANCELED);
  /* Cleanup that sleeps still finishes. */
  assert_coro_err(sd.s4_rc1, -ECANCELED);
  assert_coro_ok(sd.s4_rc2);
  assert_int_equal(sd.s4_done, 1);
  assert_true(sd.s4_ms >= 20);
  assert_coro_ok(coro_future_status(sd_h4));
  assert_ptr_equal(coro_future_value(sd_h4), VAL(4));
  /* Spawned during shutdown: allowed, and cancelled. */
  assert_coro_ok(sd.s5_spawn_rc);
  if (sd.s5_ran) assert_coro_err(sd.s5_rc, -ECANCELED);
  coro_future_release(sd_h1);
  coro_future_release(sd_h3);
  coro_future_release(sd_h4);
  /* The teardown checks that nothing leaked. */
}

/* ---- deadlock (in a child: a hang must fail, not block) -------------------- */

/* The child's exit code: -status of coro_run (0..255), 250 if a CHECK
 * failed, 251 for statuses that do not fit. */
static int exit_code_for(int rc) {
  if (coro_test_failed_line != 0) return 250;
  if (rc > 0 || rc < -249) return 251;
  return -rc;
}

static void *deadlock_main(void *arg) {
  (void)arg;
  coro_future *p = NULL;
  CHECK_EQ(coro_future_new(&p), 0);
  if (p == NULL) return NULL;
  int rc = coro_await(p, NULL); /* nobody can resolve p */
  CHECK_ERR(rc, -ECANCELED);
  coro_future_release(p);
  return coro_fail(rc);
}

static void *deadlock_inner(void *arg) {
  coro_future *p = arg;
  int rc = coro_await(p, NULL);
  CHECK_ERR(rc, -ECANCELED);
  return coro_fail(rc);
}

static void *deadlock_chain_main(void *arg) {
  (void)arg;
  coro_future *p = NULL, *t = NULL;
  CHECK_EQ(coro_future_new(&p), 0);
  if (p == NULL) return NULL;
  CHECK_EQ(coro_spawn(&t, deadlock_inner, p), 0);
  if (t == NULL) return NULL;
  int rc = coro_await(t, NULL);
  CHECK_ERR(rc, -ECANCELED);
  coro_future_release(t);
  coro_future_release(p);
  return coro_fail(rc);
}

static void deadlock_child(void *arg) {
  coro_fn fn = (coro_fn)arg;
  int rc = coro_run(fn, NULL, NULL);
  _exit(exit_code_for(rc));
}

static void run_deadlock_child(coro_fn fn) {
  int64_t t0 = coro_test_now_ms();
  int st = coro_test_in_child(deadlock_child, (void *)fn, 5000);
  int64_t dt = coro_test_now_ms() - t0;
  if (st == -1) fail_msg("coro_run hung on a deadlock (killed after 5 s)");
  assert_true(st >= 0);
  if (!WIFEXITED(st)) fail_msg("child died (wait status 0x%x)", st);
  if (WEXITSTATUS(st) == 250) fail_msg("a CHECK failed in the child");
  assert_int_equal(WEXITSTATUS(st), EDEADLK);
  assert_true(dt < 3000);
}

static void test_loop_deadlock_edeadlk(void **state) {
  (void)state;
  run_deadlock_child(deadlock_main);
}

static void test_loop_deadlock_chain_edeadlk(void **state) {
  (void)state;
  run_deadlock_child(deadlock_chain_main);
}

/* Control: the same wait, but a task resolves the promise later. */
static void *late_resolver(void *arg) {
  CHECK_EQ(coro_sleep(20), 0);
  CHECK_EQ(coro_future_resolve((coro_future *)arg, VAL(2)), 0);
  return NULL;
}

static void *no_deadlock_main(void *arg) {
  (void)arg;
  coro_future *p = NULL;
  CHECK_EQ(coro_future_new(&p), 0);
  if (p == NULL) return NULL;
  CHECK_EQ(coro_spawn(NULL, late_resolver, p), 0);
  void *res = NULL;
  int rc = coro_await(p, &res);
  CHECK_EQ(rc, 0);
  CHECK_PTR_EQ(res, VAL(2));
  coro_future_release(p);
  return coro_fail(rc == 0 ? -ENOENT : rc); /* tell it apart from 0 */
}

static void test_loop_no_deadlock_when_resolvable(void **state) {
  (void)state;
  assert_coro_err(coro_run(no_deadlock_main, NULL, NULL), -ENOENT);
  assert_checks_passed();
}

/* ---- a task that ignores cancellation forever ------------------------------- */

static coro_future *stubborn_h;
static int stubborn_wakes;

static void *stubborn_task(void *arg) {
  (void)arg;
  for (;;) {
    if (coro_sleep(CORO_FOREVER) == -ECANCELED) stubborn_wakes++;
  }
  return NULL;
}

static void *abandon_main(void *arg) {
  (void)arg;
  CHECK_EQ(coro_spawn(&stubborn_h, stubborn_task, NULL), 0);
  CHECK_EQ(coro_yield(), 0); /* it is asleep now */
  return VAL(7);
}

/* The same, but the stubborn task retries on a fresh promise each time (the
 * previous one ended cancelled), so when it is abandoned it is suspended in
 * coro_await with its waiter still linked into a pending promise. */
static void *stubborn_promise_task(void *arg) {
  (void)arg;
  for (;;) {
    coro_future *p = NULL;
    if (coro_future_new(&p) != 0) continue;
    if (coro_await(p, NULL) == -ECANCELED) stubborn_wakes++;
    coro_future_release(p);
  }
  return NULL;
}

static void *abandon_promise_main(void *arg) {
  (void)arg;
  CHECK_EQ(coro_spawn(&stubborn_h, stubborn_promise_task, NULL), 0);
  CHECK_EQ(coro_yield(), 0); /* it is in coro_await now */
  return VAL(7);
}

static void abandon_child(void *arg) {
  void *res = NULL;
  int rc = coro_run(*(const coro_fn *)arg, NULL, &res);
  fflush(stderr);
  if (rc != 0) _exit(exit_code_for(rc));
  if (coro_test_failed_line != 0) _exit(250);
  if (res != VAL(7)) _exit(241);
  if (stubborn_h == NULL) _exit(242);
  if (coro_future_status(stubborn_h) != CORO_EABANDONED) _exit(243);
  if (stubborn_wakes < 1) _exit(244);
  coro_future_release(stubborn_h);
  _exit(0);
}

static void run_abandon_child(coro_fn main_fn) {
  int64_t t0 = coro_test_now_ms();
  char buf[4096];
  int st = coro_test_in_child_stderr(abandon_child, &main_fn, 10000,
                                     buf, sizeof(buf));
  int64_t dt = coro_test_now_ms() - t0;
  if (st == -1) fail_msg("coro_run hung on a task ignoring cancellation");
  if (!WIFEXITED(st)) fail_msg("child died (wait status 0x%x): %s", st, buf);
  if (WEXITSTATUS(st) != 0)
    fail_msg("child exit code %d; stderr: %s", WEXITSTATUS(st), buf);
  assert_true(dt < 5000);
  if (strstr(buf, "abandoned") == NULL)
    fail_msg("stderr does not mention \"abandoned\": '%s'", buf);
}

static void test_loop_abandons_stubborn_task(void **state) {
  (void)state;
  run_abandon_child(abandon_main);
}

static void test_loop_abandons_task_awaiting_promise(void **state) {
  (void)state;
  run_abandon_child(abandon_promise_main);
}

/* ---- allocation failure ------------------------------------------------------- */

static void test_loop_run_enomem(void **state) {
  (void)state;
  long base = coro_test_live_allocs();
  main_ran = 0;
  coro_test_fail_alloc_after(1);
  int rc = coro_run(counting_main, NULL, NULL);
  coro_test_fail_alloc_after(0);
  assert_coro_err(rc, -ENOMEM);
  assert_int_equal(main_ran, 0);
  assert_int_equal(coro_test_live_allocs(), base);
  assert_null(coro_loop_current());
  /* And it works again. */
  assert_coro_ok(coro_run(counting_main, NULL, NULL));
  assert_int_equal(main_ran, 1);
}

static void *sweep_child(void *arg) {
  (void)arg;
  int rc = coro_sleep(1);
  if (rc != 0) return coro_fail(rc);
  return VAL(1);
}

static void *sweep_main(void *arg) {
  (void)arg;
  coro_future *t[3] = {0};
  int first = 0;
  for (int i = 0; i < 3; i++) {
    int rc = coro_spawn(&t[i], sweep_child, NULL);
    if (rc != 0) {
      CHECK_ERR(rc, -ENOMEM);
      t[i] = NULL;
      if (first == 0) first = rc;
    }
  }
  for (int i = 0; i < 3; i++) {
    if (t[i] == NULL) continue;
    void *res = NULL;
    int rc = coro_await(t[i], &res);
    if (rc == 0)
      CHECK_PTR_EQ(res, VAL(1));
    else if (first == 0)
      first = rc;
    coro_future_release(t[i]);
  }
  if (first != 0) return coro_fail(first);
  return VAL(2);
}

static void test_loop_alloc_failure_sweep(void **state) {
  (void)state;
  long base = coro_test_live_allocs();
  int ok = 0, failed = 0, last_rc = 12345;
  for (long n = 1; n <= 20; n++) {
    void *res = NULL;
    coro_test_fail_alloc_after(n);
    int rc = coro_run(sweep_main, NULL, &res);
    coro_test_fail_alloc_after(0);
    last_rc = rc;
    if (coro_test_failed_line != 0)
      fail_msg("N=%ld: CHECK failed at line %d: %s", n, coro_test_failed_line,
               coro_test_failed_expr);
    if (rc == 0) {
      ok++;
      if (res != VAL(2)) fail_msg("N=%ld: wrong result %p", n, res);
    } else {
      failed++;
      if (rc != -ENOMEM)
        fail_msg("N=%ld: coro_run returned %d (%s), want 0 or ENOMEM", n, rc,
                 coro_err_name(rc));
    }
    if (coro_test_live_allocs() != base)
      fail_msg("N=%ld: %ld allocation(s) leaked (status %s)", n,
               coro_test_live_allocs() - base, coro_err_name(rc));
    if (live_stacks() != 0)
      fail_msg("N=%ld: %zu stack(s) still handed out", n, live_stacks());
    assert_null(coro_loop_current());
  }
  assert_true(failed >= 1); /* the sweep did inject failures */
  assert_true(ok >= 1);
  assert_coro_ok(last_rc); /* with room enough, the program succeeds */
}

/* ---- many tasks ------------------------------------------------------------- */

#define NMANY 100000
static long many_count;

static void *trivial_task(void *arg) {
  (void)arg;
  many_count++;
  return NULL;
}

static void *many_main(void *arg) {
  (void)arg;
  for (long i = 0; i < NMANY; i++) {
    int rc = coro_spawn(NULL, trivial_task, NULL);
    if (rc != 0) {
      CHECK_EQ(rc, 0);
      break;
    }
  }
  CHECK_EQ(many_count, 0); /* lazy */
  int64_t t0 = coro_test_now_ms();
  while (many_count < NMANY) {
    if (coro_test_now_ms() - t0 > 30000) {
      CHECK(!"100000 tasks did not finish in 30 s");
      break;
    }
    CHECK_EQ(coro_yield(), 0);
  }
  return NULL;
}

static void test_loop_many_tasks(void **state) {
  (void)state;
  many_count = 0;
  int64_t t0 = coro_test_now_ms();
  assert_coro_ok(coro_run(many_main, NULL, NULL));
  int64_t dt = coro_test_now_ms() - t0;
  assert_checks_passed();
  assert_int_equal(many_count, NMANY);
  assert_true(dt < 10000);
}

int main(int argc, char **argv) {
  const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, coro_test_setup, coro_test_teardown)
      T(test_loop_run_returns_value),
      T(test_loop_run_returns_main_error),
      T(test_loop_run_invalid_args),
      T(test_loop_run_nested_ebusy),
      T(test_loop_current),
      T(test_loop_uv_handle_integration),
      T(test_loop_closes_leftover_handles),
      T(test_loop_spawn_is_lazy),
      T(test_loop_spawn_fifo),
      T(test_loop_snapshot_spawned_runs_next_iteration),
      T(test_loop_snapshot_callback_chain),
      T(test_loop_detached_tasks_complete),
      T(test_loop_release_handle_keeps_task),
      T(test_loop_shutdown_cancels_and_drains),
      T(test_loop_deadlock_edeadlk),
      T(test_loop_deadlock_chain_edeadlk),
      T(test_loop_no_deadlock_when_resolvable),
      T(test_loop_abandons_stubborn_task),
      T(test_loop_abandons_task_awaiting_promise),
      T(test_loop_run_enomem),
      T(test_loop_alloc_failure_sweep),
      T(test_loop_many_tasks),
#undef T
  };
  return coro_test_main(argc, argv, tests, NULL, NULL);
}
