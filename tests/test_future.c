/* SPDX-License-Identifier: MIT */
/* Promises and done callbacks: resolve/reject/await, error codes, the
 * asyncio ordering of callbacks (never synchronous, FIFO, call_soon), the
 * reference counting, cancellation, allocation failures, and the error and
 * version strings. */
#include "helpers.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

/* ---- an order log -------------------------------------------------------- */

#define VAL(n) ((void *)(uintptr_t)(n))

/* ---- resolve, reject, await ---------------------------------------------- */

static void *resolve_await_main(void *arg) {
  (void)arg;
  coro_future *p = NULL;
  CHECK_EQ(coro_future_new(&p), 0);
  if (p == NULL) return NULL;
  CHECK_ERR(coro_future_status(p), CORO_PENDING);
  CHECK(coro_future_value(p) == NULL);
  CHECK_EQ(coro_future_resolve(p, VAL(42)), 0);
  CHECK_EQ(coro_future_status(p), 0);
  CHECK_PTR_EQ(coro_future_value(p), VAL(42));
  void *res = VAL(1);
  CHECK_EQ(coro_await(p, &res), 0);
  CHECK_PTR_EQ(res, VAL(42));
  CHECK_EQ(coro_await(p, NULL), 0); /* result may be NULL */
  coro_future_release(p);
  return VAL(7);
}

static void test_future_resolve_then_await(void **state) {
  (void)state;
  void *res = NULL;
  assert_coro_ok(coro_run(resolve_await_main, NULL, &res));
  assert_checks_passed();
  assert_ptr_equal(res, VAL(7));
}

static void *reject_await_main(void *arg) {
  (void)arg;
  coro_future *p = NULL;
  CHECK_EQ(coro_future_new(&p), 0);
  if (p == NULL) return NULL;
  CHECK_EQ(coro_future_reject(p, -ENOENT), 0);
  CHECK_ERR(coro_future_status(p), -ENOENT);
  CHECK(coro_future_value(p) == NULL); /* the value of a failed future */
  void *res = VAL(1);
  CHECK_ERR(coro_await(p, &res), -ENOENT);
  coro_future_release(p);
  return NULL;
}

static void test_future_reject_then_await(void **state) {
  (void)state;
  assert_run_ok(reject_await_main);
}

static void *log_task(void *arg) {
  coro_test_note((const char *)arg);
  return NULL;
}

static void *await_done_main(void *arg) {
  (void)arg;
  coro_test_log_reset();
  coro_future *p = NULL;
  CHECK_EQ(coro_spawn(NULL, log_task, "X"), 0);
  CHECK_EQ(coro_future_new(&p), 0);
  if (p == NULL) return NULL;
  CHECK_EQ(coro_future_resolve(p, VAL(5)), 0);
  void *res = NULL;
  CHECK_EQ(coro_await(p, &res), 0);
  CHECK_PTR_EQ(res, VAL(5));
  /* No suspension: X, ready before the await, has not run. */
  CHECK_EQ(strcmp(coro_test_log(), ""), 0);
  coro_test_note("m");
  CHECK_EQ(coro_yield(), 0);
  CHECK_EQ(strcmp(coro_test_log(), "mX"), 0);
  coro_future_release(p);
  return NULL;
}

static void test_future_await_done_does_not_suspend(void **state) {
  (void)state;
  assert_run_ok(await_done_main);
}

/* A pending promise awaited by a task, resolved by another one. */
static void *resolver_task(void *arg) {
  coro_future *p = arg;
  CHECK_EQ(coro_sleep(5), 0);
  CHECK_EQ(coro_future_resolve(p, VAL(99)), 0);
  return NULL;
}

static void *await_pending_main(void *arg) {
  (void)arg;
  coro_future *p = NULL, *r = NULL;
  CHECK_EQ(coro_future_new(&p), 0);
  if (p == NULL) return NULL;
  CHECK_EQ(coro_spawn(&r, resolver_task, p), 0);
  void *res = NULL;
  CHECK_EQ(coro_await(p, &res), 0);
  CHECK_PTR_EQ(res, VAL(99));
  CHECK_EQ(coro_await(r, NULL), 0);
  coro_future_release(r);
  coro_future_release(p);
  return NULL;
}

/* *result gets the future's value, which is NULL for a failed future:
 * whether it failed before or during the await. */
static void *rejecter_task(void *arg) {
  coro_future *p = arg;
  CHECK_EQ(coro_future_reject(p, -EIO), 0);
  return NULL;
}

static void *await_failed_result_main(void *arg) {
  (void)arg;
  coro_future *p = NULL, *q = NULL;
  CHECK_EQ(coro_future_new(&p), 0);
  CHECK_EQ(coro_future_new(&q), 0);
  if (p == NULL || q == NULL) return NULL;
  /* Failed before the await. */
  CHECK_EQ(coro_future_reject(p, -EIO), 0);
  void *res = VAL(1);
  CHECK_ERR(coro_await(p, &res), -EIO);
  CHECK_PTR_EQ(res, coro_future_value(p));
  CHECK(res == NULL);
  /* Failed while awaited. */
  CHECK_EQ(coro_spawn(NULL, rejecter_task, q), 0);
  res = VAL(1);
  CHECK_ERR(coro_await(q, &res), -EIO);
  CHECK_PTR_EQ(res, coro_future_value(q));
  CHECK(res == NULL);
  coro_future_release(p);
  coro_future_release(q);
  return NULL;
}

static void test_future_await_failed_result_null(void **state) {
  (void)state;
  assert_run_ok(await_failed_result_main);
}

static void test_future_await_pending_resolved_later(void **state) {
  (void)state;
  assert_run_ok(await_pending_main);
}

/* ---- error codes --------------------------------------------------------- */

static void *twice_main(void *arg) {
  (void)arg;
  coro_future *p = NULL, *q = NULL;
  CHECK_EQ(coro_future_new(&p), 0);
  CHECK_EQ(coro_future_new(&q), 0);
  if (p == NULL || q == NULL) return NULL;
  CHECK_EQ(coro_future_resolve(p, VAL(1)), 0);
  CHECK_ERR(coro_future_resolve(p, VAL(2)), -EALREADY);
  CHECK_ERR(coro_future_reject(p, -EIO), -EALREADY);
  CHECK_EQ(coro_future_status(p), 0);
  CHECK_PTR_EQ(coro_future_value(p), VAL(1));

  CHECK_EQ(coro_future_reject(q, -EIO), 0);
  CHECK_ERR(coro_future_reject(q, -ENOENT), -EALREADY);
  CHECK_ERR(coro_future_resolve(q, VAL(3)), -EALREADY);
  CHECK_ERR(coro_future_status(q), -EIO);
  CHECK(coro_future_value(q) == NULL);

  void *res = NULL;
  CHECK_EQ(coro_await(p, &res), 0);
  CHECK_PTR_EQ(res, VAL(1));
  CHECK_ERR(coro_await(q, NULL), -EIO);
  coro_future_release(p);
  coro_future_release(q);
  return NULL;
}

static void test_future_settle_twice_ealready(void **state) {
  (void)state;
  assert_run_ok(twice_main);
}

static void *reject_nonneg_main(void *arg) {
  (void)arg;
  coro_future *p = NULL;
  CHECK_EQ(coro_future_new(&p), 0);
  if (p == NULL) return NULL;
  CHECK_ERR(coro_future_reject(p, 0), -EINVAL);
  CHECK_ERR(coro_future_reject(p, EIO), -EINVAL);
  CHECK_ERR(coro_future_status(p), CORO_PENDING); /* still usable */
  CHECK_EQ(coro_future_reject(p, -EIO), 0);
  CHECK_ERR(coro_future_status(p), -EIO);
  coro_future_release(p);
  return NULL;
}

static void test_future_reject_nonnegative_einval(void **state) {
  (void)state;
  assert_run_ok(reject_nonneg_main);
}

static void *short_task(void *arg) {
  (void)arg;
  return VAL(3);
}

static void *settle_task_main(void *arg) {
  (void)arg;
  coro_future *t = NULL;
  CHECK_EQ(coro_spawn(&t, short_task, NULL), 0);
  if (t == NULL) return NULL;
  CHECK_ERR(coro_future_resolve(t, VAL(1)), -EPERM);
  CHECK_ERR(coro_future_reject(t, -EIO), -EPERM);
  CHECK_ERR(coro_future_resolve(coro_current(), VAL(1)), -EPERM);
  CHECK_ERR(coro_future_reject(coro_current(), -EIO), -EPERM);
  void *res = NULL;
  CHECK_EQ(coro_await(t, &res), 0); /* its own outcome, untouched */
  CHECK_PTR_EQ(res, VAL(3));
  /* Still -EPERM once the task is done, not -EALREADY. */
  CHECK_ERR(coro_future_resolve(t, VAL(1)), -EPERM);
  coro_future_release(t);
  return NULL;
}

static void test_future_settle_task_eperm(void **state) {
  (void)state;
  assert_run_ok(settle_task_main);
}

static void noop_cb(coro_future *f, void *data) {
  (void)f;
  (void)data;
}

static void *null_args_main(void *arg) {
  (void)arg;
  coro_future *p = NULL;
  CHECK_ERR(coro_future_new(NULL), -EINVAL);
  CHECK_ERR(coro_future_resolve(NULL, VAL(1)), -EINVAL);
  CHECK_ERR(coro_future_reject(NULL, -EIO), -EINVAL);
  CHECK_ERR(coro_future_status(NULL), -EINVAL);
  CHECK(coro_future_value(NULL) == NULL);
  CHECK_ERR(coro_future_on_done(NULL, noop_cb, NULL), -EINVAL);
  CHECK_ERR(coro_await(NULL, NULL), -EINVAL);
  CHECK_ERR(coro_cancel(NULL), -EINVAL);
  CHECK(coro_future_retain(NULL) == NULL);
  coro_future_release(NULL); /* does nothing */
  CHECK_EQ(coro_future_new(&p), 0);
  if (p == NULL) return NULL;
  CHECK_ERR(coro_future_on_done(p, NULL, NULL), -EINVAL);
  coro_future_release(p);
  return NULL;
}

static void test_future_null_args_einval(void **state) {
  (void)state;
  assert_run_ok(null_args_main);
}

static void test_future_new_outside_loop_eperm(void **state) {
  (void)state;
  coro_future *sentinel = (coro_future *)VAL(0x1234);
  coro_future *p = sentinel;
  assert_null(coro_loop_current());
  assert_coro_err(coro_future_new(&p), -EPERM);
  assert_ptr_equal(p, sentinel);
}

/* A promise of a loop running on another thread: -EPERM for everything
 * but inspection. */
static _Atomic(coro_future *) foreign_p;
static _Atomic(coro_loop *) foreign_loop;
static atomic_int foreign_release;
static atomic_int foreign_status;

static void *foreign_main(void *arg) {
  (void)arg;
  coro_future *p = NULL;
  if (coro_future_new(&p) != 0) return coro_fail(-ENOMEM);
  atomic_store(&foreign_loop, coro_loop_current());
  atomic_store(&foreign_p, p);
  int64_t t0 = coro_test_now_ms();
  while (!atomic_load(&foreign_release) && coro_test_now_ms() - t0 < 5000)
    coro_sleep(1);
  atomic_store(&foreign_status, coro_future_status(p)); /* untouched? */
  coro_future_release(p);
  return NULL;
}

static void *foreign_thread(void *arg) {
  *(int *)arg = coro_run(foreign_main, NULL, NULL);
  return NULL;
}

static int foreign_cb_ran;

static void foreign_cb(coro_future *f, void *data) {
  (void)f;
  (void)data;
  foreign_cb_ran++;
}

static void *other_loop_main(void *arg) {
  (void)arg;
  int64_t t0 = coro_test_now_ms();
  coro_future *p;
  while ((p = atomic_load(&foreign_p)) == NULL &&
         coro_test_now_ms() - t0 < 5000)
    CHECK_EQ(coro_sleep(1), 0);
  CHECK(p != NULL);
  if (p == NULL) return NULL;
  CHECK_PTR_NE(atomic_load(&foreign_loop), coro_loop_current());
  CHECK_ERR(coro_future_resolve(p, VAL(1)), -EPERM);
  CHECK_ERR(coro_future_reject(p, -EIO), -EPERM);
  CHECK_ERR(coro_cancel(p), -EPERM);
  CHECK_ERR(coro_future_on_done(p, foreign_cb, NULL), -EPERM);
  CHECK_ERR(coro_await(p, NULL), -EPERM);
  atomic_store(&foreign_release, 1);
  return NULL;
}

static void test_future_other_loop_eperm(void **state) {
  (void)state;
  pthread_t th;
  int thread_rc = 12345;
  atomic_store(&foreign_p, NULL);
  atomic_store(&foreign_loop, NULL);
  atomic_store(&foreign_release, 0);
  atomic_store(&foreign_status, 12345);
  foreign_cb_ran = 0;
  assert_int_equal(pthread_create(&th, NULL, foreign_thread, &thread_rc), 0);
  int rc = coro_run(other_loop_main, NULL, NULL);
  atomic_store(&foreign_release, 1); /* in case main bailed out early */
  assert_int_equal(pthread_join(th, NULL), 0);
  assert_coro_ok(rc);
  assert_checks_passed();
  assert_coro_ok(thread_rc);
  assert_int_equal(atomic_load(&foreign_status), CORO_PENDING);
  assert_int_equal(foreign_cb_ran, 0);
}

/* Done callbacks on a task run once the task has finished. */
static struct {
  int ran;
  int status;
  void *value;
} task_cb_seen;

static void task_done_cb(coro_future *f, void *data) {
  (void)data;
  task_cb_seen.ran++;
  task_cb_seen.status = coro_future_status(f);
  task_cb_seen.value = coro_future_value(f);
}

static void *sleepy_task(void *arg) {
  CHECK_EQ(coro_sleep(2), 0);
  return arg;
}

static void *task_cb_main(void *arg) {
  (void)arg;
  coro_future *t = NULL;
  memset(&task_cb_seen, 0, sizeof(task_cb_seen));
  CHECK_EQ(coro_spawn(&t, sleepy_task, VAL(44)), 0);
  if (t == NULL) return NULL;
  CHECK_EQ(coro_future_on_done(t, task_done_cb, NULL), 0);
  CHECK_EQ(coro_yield(), 0);
  CHECK_EQ(task_cb_seen.ran, 0); /* the task is still asleep */
  CHECK_EQ(coro_await(t, NULL), 0);
  CHECK_EQ(coro_yield(), 0);
  CHECK_EQ(task_cb_seen.ran, 1);
  CHECK_EQ(task_cb_seen.status, 0);
  CHECK_PTR_EQ(task_cb_seen.value, VAL(44));
  coro_future_release(t);
  return NULL;
}

static void test_future_callback_on_task(void **state) {
  (void)state;
  assert_run_ok(task_cb_main);
}

/* ---- await from the wrong place ---------------------------------------- */

static int cb_await_rc;
static int cb_ran;

static void await_in_cb(coro_future *f, void *data) {
  (void)data;
  cb_ran++;
  cb_await_rc = coro_await(f, NULL);
}

static void *await_outside_main(void *arg) {
  (void)arg;
  coro_future *p = NULL;
  cb_ran = 0;
  cb_await_rc = 12345;
  CHECK_EQ(coro_future_new(&p), 0);
  if (p == NULL) return NULL;
  CHECK_EQ(coro_future_on_done(p, await_in_cb, NULL), 0);
  CHECK_EQ(coro_future_resolve(p, NULL), 0);
  CHECK_EQ(coro_yield(), 0);
  CHECK_EQ(cb_ran, 1);
  CHECK_ERR(cb_await_rc, -EPERM);
  coro_future_release(p);
  return NULL;
}

static void test_future_await_outside_task_eperm(void **state) {
  (void)state;
  assert_run_ok(await_outside_main);
}

static void *await_self_main(void *arg) {
  (void)arg;
  CHECK(coro_current() != NULL);
  CHECK_ERR(coro_await(coro_current(), NULL), -EDEADLK);
  CHECK_ERR(coro_future_status(coro_current()), CORO_PENDING);
  return VAL(8);
}

static void test_future_await_self_edeadlk(void **state) {
  (void)state;
  void *res = NULL;
  assert_coro_ok(coro_run(await_self_main, NULL, &res));
  assert_checks_passed();
  assert_ptr_equal(res, VAL(8));
}

/* ---- several awaiters ----------------------------------------------------- */

#define NWAIT 4
static coro_future *shared_p;
static int nwaiting;

static void *ordered_waiter(void *arg) {
  int i = (int)(intptr_t)arg;
  /* Task i starts waiting after NWAIT-1-i yields: the reverse of spawn
   * order. */
  for (int k = 0; k < NWAIT - 1 - i; k++) CHECK_EQ(coro_yield(), 0);
  nwaiting++;
  void *res = NULL;
  CHECK_EQ(coro_await(shared_p, &res), 0);
  CHECK_PTR_EQ(res, VAL(77));
  char s[2] = {(char)('0' + i), '\0'};
  coro_test_note(s);
  return NULL;
}

static void *many_awaiters_main(void *arg) {
  (void)arg;
  coro_future *t[NWAIT] = {0};
  coro_test_log_reset();
  nwaiting = 0;
  CHECK_EQ(coro_future_new(&shared_p), 0);
  if (shared_p == NULL) return NULL;
  for (int i = 0; i < NWAIT; i++)
    CHECK_EQ(coro_spawn(&t[i], ordered_waiter, (void *)(intptr_t)i), 0);
  for (int k = 0; k < NWAIT + 1; k++) CHECK_EQ(coro_yield(), 0);
  CHECK_EQ(nwaiting, NWAIT);
  CHECK_EQ(strcmp(coro_test_log(), ""), 0);
  CHECK_EQ(coro_future_resolve(shared_p, VAL(77)), 0);
  CHECK_EQ(strcmp(coro_test_log(), ""), 0); /* nobody woke inside resolve */
  for (int i = 0; i < NWAIT; i++) {
    if (t[i] == NULL) continue;
    CHECK_EQ(coro_await(t[i], NULL), 0);
    coro_future_release(t[i]);
  }
  CHECK_EQ(strcmp(coro_test_log(), "3210"), 0);
  coro_future_release(shared_p);
  shared_p = NULL;
  return NULL;
}

static void test_future_awaiters_wake_in_wait_order(void **state) {
  (void)state;
  assert_run_ok(many_awaiters_main);
}

/* ---- done callbacks -------------------------------------------------------- */

static int flag_cb_count;

static void flag_cb(coro_future *f, void *data) {
  (void)f;
  (void)data;
  flag_cb_count++;
}

static void *cb_not_sync_main(void *arg) {
  (void)arg;
  coro_future *p = NULL;
  flag_cb_count = 0;
  CHECK_EQ(coro_future_new(&p), 0);
  if (p == NULL) return NULL;
  CHECK_EQ(coro_future_on_done(p, flag_cb, NULL), 0);
  CHECK_EQ(flag_cb_count, 0);
  CHECK_EQ(coro_future_resolve(p, VAL(1)), 0);
  CHECK_EQ(flag_cb_count, 0); /* not inside the resolving call */
  CHECK_EQ(coro_yield(), 0);  /* queued before our step: ran by now */
  CHECK_EQ(flag_cb_count, 1);
  CHECK_EQ(coro_yield(), 0);
  CHECK_EQ(flag_cb_count, 1); /* once only */
  coro_future_release(p);
  return NULL;
}

static void test_future_callback_not_inside_resolve(void **state) {
  (void)state;
  assert_run_ok(cb_not_sync_main);
}

/* Also for reject and cancel. */
static void *cb_reject_cancel_main(void *arg) {
  (void)arg;
  coro_future *p = NULL, *q = NULL;
  flag_cb_count = 0;
  CHECK_EQ(coro_future_new(&p), 0);
  CHECK_EQ(coro_future_new(&q), 0);
  if (p == NULL || q == NULL) return NULL;
  CHECK_EQ(coro_future_on_done(p, flag_cb, NULL), 0);
  CHECK_EQ(coro_future_on_done(q, flag_cb, NULL), 0);
  CHECK_EQ(coro_future_reject(p, -EIO), 0);
  CHECK_EQ(coro_cancel(q), 0);
  CHECK_EQ(flag_cb_count, 0);
  CHECK_EQ(coro_yield(), 0);
  CHECK_EQ(flag_cb_count, 2);
  coro_future_release(p);
  coro_future_release(q);
  return NULL;
}

static void test_future_callback_on_reject_and_cancel(void **state) {
  (void)state;
  assert_run_ok(cb_reject_cancel_main);
}

static void log_cb(coro_future *f, void *data) {
  (void)f;
  coro_test_note((const char *)data);
}

static void *cb_fifo_main(void *arg) {
  (void)arg;
  coro_future *p = NULL;
  coro_test_log_reset();
  CHECK_EQ(coro_future_new(&p), 0);
  if (p == NULL) return NULL;
  static const char *names[] = {"a", "b", "c", "d", "e", "f"};
  for (int i = 0; i < 6; i++)
    CHECK_EQ(coro_future_on_done(p, log_cb, (void *)names[i]), 0);
  CHECK_EQ(coro_future_resolve(p, NULL), 0);
  CHECK_EQ(coro_yield(), 0);
  CHECK_EQ(strcmp(coro_test_log(), "abcdef"), 0);
  /* On a done future too. */
  CHECK_EQ(coro_future_on_done(p, log_cb, "1"), 0);
  CHECK_EQ(coro_future_on_done(p, log_cb, "2"), 0);
  CHECK_EQ(coro_future_on_done(p, log_cb, "3"), 0);
  CHECK_EQ(coro_yield(), 0);
  CHECK_EQ(strcmp(coro_test_log(), "abcdef123"), 0);
  coro_future_release(p);
  return NULL;
}

static void test_future_callbacks_fifo(void **state) {
  (void)state;
  assert_run_ok(cb_fifo_main);
}

static struct {
  int ran;
  int current_null;
  int loop_set;
  int sleep_rc;
  int yield_rc;
  int status;
  void *value;
  coro_future *f;
} ctx_seen;

static void context_cb(coro_future *f, void *data) {
  (void)data;
  ctx_seen.ran++;
  ctx_seen.current_null = coro_current() == NULL;
  ctx_seen.loop_set = coro_loop_current() != NULL;
  ctx_seen.sleep_rc = coro_sleep(1);
  ctx_seen.yield_rc = coro_yield();
  ctx_seen.status = coro_future_status(f);
  ctx_seen.value = coro_future_value(f);
  ctx_seen.f = f;
}

static void *cb_context_main(void *arg) {
  (void)arg;
  coro_future *p = NULL;
  memset(&ctx_seen, 0, sizeof(ctx_seen));
  CHECK_EQ(coro_future_new(&p), 0);
  if (p == NULL) return NULL;
  CHECK_EQ(coro_future_on_done(p, context_cb, NULL), 0);
  CHECK_EQ(coro_future_resolve(p, VAL(11)), 0);
  CHECK_EQ(coro_yield(), 0);
  CHECK_EQ(ctx_seen.ran, 1);
  CHECK(ctx_seen.current_null);
  CHECK(ctx_seen.loop_set);
  CHECK_ERR(ctx_seen.sleep_rc, -EPERM);
  CHECK_ERR(ctx_seen.yield_rc, -EPERM);
  CHECK_EQ(ctx_seen.status, 0);
  CHECK_PTR_EQ(ctx_seen.value, VAL(11));
  CHECK_PTR_EQ(ctx_seen.f, p);
  coro_future_release(p);
  return NULL;
}

static void test_future_callback_runs_outside_task(void **state) {
  (void)state;
  assert_run_ok(cb_context_main);
}

/* call_soon semantics: a callback registered on a done future runs on the
 * next iteration, before a task that yields once after registering it. */
static void *cb_done_future_main(void *arg) {
  (void)arg;
  coro_future *p = NULL;
  flag_cb_count = 0;
  CHECK_EQ(coro_future_new(&p), 0);
  if (p == NULL) return NULL;
  CHECK_EQ(coro_future_resolve(p, NULL), 0);
  CHECK_EQ(coro_yield(), 0); /* nothing registered yet */
  CHECK_EQ(coro_future_on_done(p, flag_cb, NULL), 0);
  CHECK_EQ(flag_cb_count, 0); /* not inside coro_future_on_done */
  CHECK_EQ(coro_yield(), 0);
  CHECK_EQ(flag_cb_count, 1);
  coro_future_release(p);
  return NULL;
}

static void test_future_callback_on_done_future_next_iteration(void **state) {
  (void)state;
  assert_run_ok(cb_done_future_main);
}

/* One FIFO for task steps and callbacks: B (spawned first), then the
 * callback (registered next), then us (yielded last). */
static void *order_b(void *arg) {
  (void)arg;
  coro_test_note("B");
  return NULL;
}

static void *cb_vs_task_main(void *arg) {
  (void)arg;
  coro_future *p = NULL;
  coro_test_log_reset();
  CHECK_EQ(coro_future_new(&p), 0);
  if (p == NULL) return NULL;
  CHECK_EQ(coro_future_resolve(p, NULL), 0);
  CHECK_EQ(coro_spawn(NULL, order_b, NULL), 0);       /* ready first */
  CHECK_EQ(coro_future_on_done(p, log_cb, "c"), 0);  /* then the callback */
  CHECK_EQ(coro_yield(), 0);                          /* then us */
  coro_test_note("m");
  CHECK_EQ(strcmp(coro_test_log(), "Bcm"), 0);
  coro_future_release(p);
  return NULL;
}

static void test_future_callback_fifo_with_tasks(void **state) {
  (void)state;
  assert_run_ok(cb_vs_task_main);
}

static coro_future *spawned_in_cb;
static int spawn_cb_rc;
static int child_saw_task;

static void *child_from_cb(void *arg) {
  coro_future *done = arg;
  child_saw_task = coro_current() != NULL;
  CHECK_EQ(coro_sleep(1), 0); /* a real task: it may suspend */
  CHECK_EQ(coro_future_resolve(done, VAL(21)), 0);
  return VAL(22);
}

static void spawn_cb(coro_future *f, void *data) {
  (void)f;
  spawn_cb_rc = coro_spawn(&spawned_in_cb, child_from_cb, data);
}

static void *cb_spawn_main(void *arg) {
  (void)arg;
  coro_future *p = NULL, *done = NULL;
  spawned_in_cb = NULL;
  spawn_cb_rc = 12345;
  child_saw_task = 0;
  CHECK_EQ(coro_future_new(&p), 0);
  CHECK_EQ(coro_future_new(&done), 0);
  if (p == NULL || done == NULL) return NULL;
  CHECK_EQ(coro_future_on_done(p, spawn_cb, done), 0);
  CHECK_EQ(coro_future_resolve(p, NULL), 0);
  void *res = NULL;
  CHECK_EQ(coro_await(done, &res), 0);
  CHECK_PTR_EQ(res, VAL(21));
  CHECK_EQ(spawn_cb_rc, 0);
  CHECK(child_saw_task);
  CHECK(spawned_in_cb != NULL);
  if (spawned_in_cb != NULL) {
    CHECK_EQ(coro_await(spawned_in_cb, &res), 0);
    CHECK_PTR_EQ(res, VAL(22));
    coro_future_release(spawned_in_cb);
    spawned_in_cb = NULL;
  }
  coro_future_release(p);
  coro_future_release(done);
  return NULL;
}

static void test_future_callback_can_spawn(void **state) {
  (void)state;
  assert_run_ok(cb_spawn_main);
}

/* The callback drops the user's (last) reference to the future it is
 * called for. */
static int release_cb_status;

static void release_cb(coro_future *f, void *data) {
  (void)data;
  flag_cb_count++;
  release_cb_status = coro_future_status(f);
  coro_future_release(f);
}

static void *cb_release_main(void *arg) {
  (void)arg;
  coro_future *p = NULL;
  flag_cb_count = 0;
  release_cb_status = 12345;
  long before = coro_test_live_allocs();
  CHECK_EQ(coro_future_new(&p), 0);
  if (p == NULL) return NULL;
  CHECK_EQ(coro_future_on_done(p, release_cb, NULL), 0);
  CHECK_EQ(coro_future_resolve(p, VAL(1)), 0);
  p = NULL; /* the callback owns the user's reference now */
  CHECK_EQ(coro_yield(), 0);
  CHECK_EQ(flag_cb_count, 1);
  CHECK_EQ(release_cb_status, 0);
  CHECK_EQ(coro_test_live_allocs(), before); /* freed */
  return NULL;
}

static void test_future_callback_releases_last_ref(void **state) {
  (void)state;
  assert_run_ok(cb_release_main);
}

/* The user releases the future before its callback ran: the registration
 * keeps it alive. */
static void *cb_keeps_ref_main(void *arg) {
  (void)arg;
  coro_future *p = NULL;
  memset(&ctx_seen, 0, sizeof(ctx_seen));
  long before = coro_test_live_allocs();
  CHECK_EQ(coro_future_new(&p), 0);
  if (p == NULL) return NULL;
  CHECK_EQ(coro_future_on_done(p, context_cb, NULL), 0);
  CHECK_EQ(coro_future_resolve(p, VAL(13)), 0);
  long with_p = coro_test_live_allocs();
  coro_future_release(p);
  CHECK_EQ(coro_test_live_allocs(), with_p); /* still referenced */
  CHECK_EQ(coro_yield(), 0);
  CHECK_EQ(ctx_seen.ran, 1);
  CHECK_EQ(ctx_seen.status, 0);
  CHECK_PTR_EQ(ctx_seen.value, VAL(13));
  CHECK_EQ(coro_test_live_allocs(), before);
  return NULL;
}

static void test_future_callback_holds_reference(void **state) {
  (void)state;
  assert_run_ok(cb_keeps_ref_main);
}

/* ---- reference counting --------------------------------------------------- */

static void *retain_main(void *arg) {
  (void)arg;
  coro_future *p = NULL;
  long before = coro_test_live_allocs();
  CHECK_EQ(coro_future_new(&p), 0);
  if (p == NULL) return NULL;
  long with_p = coro_test_live_allocs();
  CHECK_GT(with_p, before);
  for (int i = 0; i < 3; i++) CHECK_PTR_EQ(coro_future_retain(p), p);
  for (int i = 0; i < 3; i++) coro_future_release(p);
  CHECK_EQ(coro_test_live_allocs(), with_p); /* one reference left */
  CHECK_ERR(coro_future_status(p), CORO_PENDING);
  CHECK_EQ(coro_future_resolve(p, VAL(4)), 0);
  CHECK_PTR_EQ(coro_future_value(p), VAL(4));
  coro_future_release(p);
  CHECK_EQ(coro_test_live_allocs(), before);
  return NULL;
}

static void test_future_retain_release_pairs(void **state) {
  (void)state;
  assert_run_ok(retain_main);
}

static long allocs_with_p;

static void *borrowing_waiter(void *arg) {
  coro_future *p = arg; /* borrowed from main, which drops it */
  void *res = NULL;
  CHECK_EQ(coro_await(p, &res), 0);
  CHECK_PTR_EQ(res, VAL(55));
  /* The await dropped the last reference on its way out. */
  CHECK_EQ(coro_test_live_allocs(), allocs_with_p - 1);
  return VAL(56);
}

static void *await_holds_ref_main(void *arg) {
  (void)arg;
  coro_future *p = NULL, *w = NULL;
  CHECK_EQ(coro_future_new(&p), 0);
  if (p == NULL) return NULL;
  CHECK_EQ(coro_spawn(&w, borrowing_waiter, p), 0);
  CHECK_EQ(coro_yield(), 0); /* w is in coro_await now */
  CHECK_EQ(coro_future_resolve(p, VAL(55)), 0);
  allocs_with_p = coro_test_live_allocs();
  coro_future_release(p); /* our only reference */
  CHECK_EQ(coro_test_live_allocs(), allocs_with_p); /* the await holds one */
  void *res = NULL;
  CHECK_EQ(coro_await(w, &res), 0);
  CHECK_PTR_EQ(res, VAL(56));
  coro_future_release(w);
  return NULL;
}

static void test_future_await_holds_reference(void **state) {
  (void)state;
  assert_run_ok(await_holds_ref_main);
}

static coro_future *kept_done, *kept_pending, *kept_failed;

static void *keep_main(void *arg) {
  (void)arg;
  CHECK_EQ(coro_future_new(&kept_done), 0);
  CHECK_EQ(coro_future_new(&kept_pending), 0);
  CHECK_EQ(coro_future_new(&kept_failed), 0);
  if (kept_done == NULL || kept_pending == NULL || kept_failed == NULL)
    return NULL;
  CHECK_EQ(coro_future_resolve(kept_done, VAL(31)), 0);
  CHECK_EQ(coro_future_reject(kept_failed, -EPIPE), 0);
  return NULL;
}

static void test_future_outlives_loop(void **state) {
  (void)state;
  kept_done = kept_pending = kept_failed = NULL;
  assert_run_ok(keep_main);
  assert_non_null(kept_done);
  assert_non_null(kept_pending);
  assert_non_null(kept_failed);
  assert_coro_ok(coro_future_status(kept_done));
  assert_ptr_equal(coro_future_value(kept_done), VAL(31));
  assert_coro_err(coro_future_status(kept_pending), CORO_PENDING);
  assert_null(coro_future_value(kept_pending));
  assert_coro_err(coro_future_status(kept_failed), -EPIPE);
  /* Only inspection and release are allowed now. */
  assert_coro_err(coro_future_resolve(kept_pending, VAL(1)), -EPERM);
  assert_coro_err(coro_future_reject(kept_pending, -EIO), -EPERM);
  assert_coro_err(coro_cancel(kept_pending), -EPERM);
  assert_coro_err(coro_future_on_done(kept_pending, noop_cb, NULL), -EPERM);
  assert_coro_err(coro_await(kept_pending, NULL), -EPERM);
  assert_coro_err(coro_future_status(kept_pending), CORO_PENDING);
  assert_ptr_equal(coro_future_retain(kept_done), kept_done);
  coro_future_release(kept_done);
  coro_future_release(kept_done);
  coro_future_release(kept_pending);
  coro_future_release(kept_failed);
  /* The teardown checks that nothing leaked. */
}

static void *never_resolved_main(void *arg) {
  (void)arg;
  coro_future *p = NULL, *q = NULL;
  flag_cb_count = 0;
  CHECK_EQ(coro_future_new(&p), 0);
  CHECK_EQ(coro_future_new(&q), 0);
  if (p == NULL || q == NULL) return NULL;
  CHECK_EQ(coro_future_on_done(p, flag_cb, NULL), 0);
  CHECK_EQ(coro_future_on_done(p, flag_cb, NULL), 0);
  CHECK_EQ(coro_future_on_done(q, flag_cb, NULL), 0);
  coro_future_release(p); /* only the callbacks reference p now */
  kept_pending = q;      /* q is still referenced when coro_run ends */
  CHECK_EQ(coro_yield(), 0);
  return NULL;
}

static void test_future_never_resolved_callback_dropped(void **state) {
  (void)state;
  kept_pending = NULL;
  assert_run_ok(never_resolved_main);
  assert_int_equal(flag_cb_count, 0);
  assert_non_null(kept_pending);
  assert_coro_err(coro_future_status(kept_pending), CORO_PENDING);
  coro_future_release(kept_pending);
  kept_pending = NULL;
  assert_int_equal(flag_cb_count, 0);
}

/* ---- cancelling a promise ------------------------------------------------- */

static void *cancel_waiter(void *arg) {
  coro_future *p = arg;
  void *res = VAL(1);
  int rc = coro_await(p, &res);
  CHECK_ERR(rc, -ECANCELED);
  return coro_fail(rc);
}

static void *cancel_promise_main(void *arg) {
  (void)arg;
  coro_future *p = NULL, *w1 = NULL, *w2 = NULL;
  CHECK_EQ(coro_future_new(&p), 0);
  if (p == NULL) return NULL;
  CHECK_EQ(coro_spawn(&w1, cancel_waiter, p), 0);
  CHECK_EQ(coro_spawn(&w2, cancel_waiter, p), 0);
  CHECK_EQ(coro_yield(), 0);
  CHECK_ERR(coro_future_status(w1), CORO_PENDING);
  CHECK_EQ(coro_cancel(p), 0);
  CHECK_ERR(coro_future_status(p), -ECANCELED);
  CHECK(coro_future_value(p) == NULL);
  CHECK_ERR(coro_cancel(p), -EALREADY);
  CHECK_ERR(coro_future_resolve(p, VAL(1)), -EALREADY);
  CHECK_ERR(coro_future_reject(p, -EIO), -EALREADY);
  CHECK_ERR(coro_await(p, NULL), -ECANCELED);
  CHECK_ERR(coro_await(w1, NULL), -ECANCELED);
  CHECK_ERR(coro_await(w2, NULL), -ECANCELED);
  /* The waiters were not cancelled themselves: they got the promise's
   * outcome. */
  CHECK_EQ(coro_cancelling(w1), 0);
  coro_future_release(w1);
  coro_future_release(w2);
  coro_future_release(p);
  return NULL;
}

static void test_future_cancel_promise(void **state) {
  (void)state;
  assert_run_ok(cancel_promise_main);
}

static void *cancel_done_main(void *arg) {
  (void)arg;
  coro_future *p = NULL, *q = NULL;
  CHECK_EQ(coro_future_new(&p), 0);
  CHECK_EQ(coro_future_new(&q), 0);
  if (p == NULL || q == NULL) return NULL;
  CHECK_EQ(coro_future_resolve(p, VAL(2)), 0);
  CHECK_ERR(coro_cancel(p), -EALREADY);
  CHECK_EQ(coro_future_status(p), 0);
  CHECK_PTR_EQ(coro_future_value(p), VAL(2));
  CHECK_EQ(coro_future_reject(q, -EIO), 0);
  CHECK_ERR(coro_cancel(q), -EALREADY);
  CHECK_ERR(coro_future_status(q), -EIO);
  coro_future_release(p);
  coro_future_release(q);
  return NULL;
}

static void test_future_cancel_done_ealready(void **state) {
  (void)state;
  assert_run_ok(cancel_done_main);
}

/* Cancelling the task that awaits a promise the user already released:
 * the promise ends cancelled and is freed by the await. */
static void *cancel_borrowed_main(void *arg) {
  (void)arg;
  coro_future *p = NULL, *w = NULL;
  CHECK_EQ(coro_future_new(&p), 0);
  if (p == NULL) return NULL;
  CHECK_EQ(coro_spawn(&w, cancel_waiter, p), 0);
  CHECK_EQ(coro_yield(), 0); /* w is in coro_await(p) */
  long with_p = coro_test_live_allocs();
  coro_future_release(p);
  p = NULL;
  CHECK_EQ(coro_test_live_allocs(), with_p); /* the await holds p */
  CHECK_EQ(coro_cancel(w), 0);
  CHECK_ERR(coro_await(w, NULL), -ECANCELED);
  CHECK_EQ(coro_test_live_allocs(), with_p - 1); /* p freed */
  coro_future_release(w);
  return NULL;
}

static void test_future_cancel_awaiter_of_released_promise(void **state) {
  (void)state;
  assert_run_ok(cancel_borrowed_main);
}

/* ---- allocation failure ------------------------------------------------- */

static void *new_enomem_main(void *arg) {
  (void)arg;
  coro_future *sentinel = (coro_future *)VAL(0x5678);
  coro_future *p = sentinel;
  long before = coro_test_live_allocs();
  coro_test_fail_alloc_after(1);
  CHECK_ERR(coro_future_new(&p), -ENOMEM);
  coro_test_fail_alloc_after(0);
  CHECK_PTR_EQ(p, sentinel);
  CHECK_EQ(coro_test_live_allocs(), before);
  /* Works again afterwards. */
  CHECK_EQ(coro_future_new(&p), 0);
  CHECK(p != sentinel && p != NULL);
  if (p != sentinel) coro_future_release(p);
  return NULL;
}

static void test_future_new_enomem(void **state) {
  (void)state;
  assert_run_ok(new_enomem_main);
}

static int enomem_cb_count;

static void enomem_cb(coro_future *f, void *data) {
  (void)f;
  (void)data;
  enomem_cb_count++;
}

static void *on_done_enomem_main(void *arg) {
  (void)arg;
  coro_future *p = NULL;
  enomem_cb_count = 0;
  flag_cb_count = 0;
  CHECK_EQ(coro_future_new(&p), 0);
  if (p == NULL) return NULL;
  long before = coro_test_live_allocs();
  coro_test_fail_alloc_after(1);
  CHECK_ERR(coro_future_on_done(p, enomem_cb, NULL), -ENOMEM);
  coro_test_fail_alloc_after(0);
  CHECK_EQ(coro_test_live_allocs(), before);
  CHECK_EQ(coro_future_on_done(p, flag_cb, NULL), 0); /* control */
  CHECK_EQ(coro_future_resolve(p, NULL), 0);
  /* And on a done future. */
  coro_test_fail_alloc_after(1);
  CHECK_ERR(coro_future_on_done(p, enomem_cb, NULL), -ENOMEM);
  coro_test_fail_alloc_after(0);
  for (int i = 0; i < 3; i++) CHECK_EQ(coro_yield(), 0);
  CHECK_EQ(flag_cb_count, 1);
  CHECK_EQ(enomem_cb_count, 0);
  coro_future_release(p);
  return NULL;
}

static void test_future_on_done_enomem(void **state) {
  (void)state;
  assert_run_ok(on_done_enomem_main);
  assert_int_equal(enomem_cb_count, 0);
}

/* ---- error strings and version ------------------------------------------ */

static void test_future_error_strings(void **state) {
  (void)state;
  const int codes[] = {0, -ECANCELED, -ETIMEDOUT, CORO_EABANDONED, -EDEADLK,
                       -EINVAL, -EALREADY, -5999, 987654};
  for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
    assert_non_null(coro_strerror(codes[i]));
    assert_non_null(coro_err_name(codes[i]));
    assert_true(strlen(coro_strerror(codes[i])) > 0);
    assert_true(strlen(coro_err_name(codes[i])) > 0);
  }
  assert_string_equal(coro_err_name(-ECANCELED), "ECANCELED");
  assert_string_equal(coro_err_name(-ETIMEDOUT), "ETIMEDOUT");
  assert_string_equal(coro_err_name(-EDEADLK), "EDEADLK");
  assert_string_equal(coro_err_name(-EINVAL), "EINVAL");
  assert_string_equal(coro_err_name(-EALREADY), "EALREADY");
  /* Unknown codes. */
  assert_string_equal(coro_err_name(-5999), "UNKNOWN");
  assert_string_equal(coro_strerror(-5999), "Unknown error");
  assert_string_equal(coro_err_name(987654), "UNKNOWN");
  assert_string_equal(coro_strerror(987654), "Unknown error");
  /* Known codes are not "unknown", and differ from each other. */
  const int known[] = {0, -ECANCELED, -ETIMEDOUT, CORO_EABANDONED, -EDEADLK};
  for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
    assert_string_not_equal(coro_err_name(known[i]), "UNKNOWN");
    assert_string_not_equal(coro_strerror(known[i]), "Unknown error");
    for (size_t j = 0; j < i; j++) {
      assert_string_not_equal(coro_err_name(known[i]),
                              coro_err_name(known[j]));
      assert_string_not_equal(coro_strerror(known[i]),
                              coro_strerror(known[j]));
    }
  }
  /* libuv's codes pass through; a child's spawn may give ENOEXEC, which
   * libuv 1.44 has no name for. */
  assert_string_equal(coro_err_name(-ENOENT), "ENOENT");
  assert_string_equal(coro_err_name(-ENOEXEC), "ENOEXEC");
  assert_string_equal(coro_strerror(-ENOEXEC), "exec format error");
}

static void test_future_version(void **state) {
  (void)state;
  char buf[64];
  assert_int_equal(coro_version(), CORO_VERSION_HEX);
  assert_non_null(coro_version_string());
  assert_string_equal(coro_version_string(), CORO_VERSION_STRING);
  snprintf(buf, sizeof(buf), "%d.%d.%d", CORO_VERSION_MAJOR,
           CORO_VERSION_MINOR, CORO_VERSION_PATCH);
  assert_string_equal(coro_version_string(), buf);
  assert_int_equal(CORO_VERSION_HEX, (CORO_VERSION_MAJOR << 16) |
                                         (CORO_VERSION_MINOR << 8) |
                                         CORO_VERSION_PATCH);
}

int main(int argc, char **argv) {
  const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, coro_test_setup, coro_test_teardown)
      T(test_future_resolve_then_await),
      T(test_future_reject_then_await),
      T(test_future_await_done_does_not_suspend),
      T(test_future_await_pending_resolved_later),
      T(test_future_await_failed_result_null),
      T(test_future_settle_twice_ealready),
      T(test_future_reject_nonnegative_einval),
      T(test_future_settle_task_eperm),
      T(test_future_null_args_einval),
      T(test_future_new_outside_loop_eperm),
      T(test_future_other_loop_eperm),
      T(test_future_await_outside_task_eperm),
      T(test_future_await_self_edeadlk),
      T(test_future_awaiters_wake_in_wait_order),
      T(test_future_callback_not_inside_resolve),
      T(test_future_callback_on_reject_and_cancel),
      T(test_future_callbacks_fifo),
      T(test_future_callback_runs_outside_task),
      T(test_future_callback_on_done_future_next_iteration),
      T(test_future_callback_fifo_with_tasks),
      T(test_future_callback_can_spawn),
      T(test_future_callback_on_task),
      T(test_future_callback_releases_last_ref),
      T(test_future_callback_holds_reference),
      T(test_future_retain_release_pairs),
      T(test_future_await_holds_reference),
      T(test_future_outlives_loop),
      T(test_future_never_resolved_callback_dropped),
      T(test_future_cancel_promise),
      T(test_future_cancel_done_ealready),
      T(test_future_cancel_awaiter_of_released_promise),
      T(test_future_new_enomem),
      T(test_future_on_done_enomem),
      T(test_future_error_strings),
      T(test_future_version),
#undef T
  };
  return coro_test_main(argc, argv, tests, NULL, NULL);
}
