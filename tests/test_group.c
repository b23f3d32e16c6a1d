/* SPDX-License-Identifier: MIT */
/* Task groups: asyncio 3.13 TaskGroup semantics (docs/api/wait.md, task
 * groups): waiting for every child, abort on the first failure, errors beat
 * cancellation, the parent's cancel count, nesting, misuse, freeing early,
 * scale and allocation failure. Ports the relevant cases of CPython's
 * test_taskgroups.py. */
#include "helpers.h"

#include <string.h>

#define CUR_CANCELLING() coro_cancelling(coro_current())
#define DELAY(ms) ((void *)(intptr_t)(ms))

static int ok_count, saw_cancel, cleaned;

static void reset(void) {
  coro_test_log_reset();
  ok_count = saw_cancel = cleaned = 0;
}

/* Sleeps (intptr_t)arg ms and succeeds. */
static void *child_ok(void *arg) {
  CHECK_EQ(coro_sleep((int64_t)(intptr_t)arg), 0);
  ok_count++;
  return (void *)1;
}

/* Sleeps (intptr_t)arg ms and fails with -EIO. */
static void *child_fail(void *arg) {
  CHECK_EQ(coro_sleep((int64_t)(intptr_t)arg), 0);
  coro_test_note("f");
  return coro_fail(-EIO);
}

/* Sleeps until cancelled; notes its label (arg, a string, or "s"). */
static void *child_forever(void *arg) {
  int r = coro_sleep(CORO_FOREVER);
  CHECK_ERR(r, -ECANCELED);
  if (r == -ECANCELED) saw_cancel++;
  coro_test_note(arg != NULL ? (const char *)arg : "s");
  return coro_fail(r);
}

/* ---- success ------------------------------------------------------------------------ */

static void *all_ok_main(void *arg) {
  (void)arg;
  coro_group *g;
  coro_future *h = NULL;
  reset();
  int64_t t0 = coro_test_now_ms();
  CHECK_EQ(coro_group_new(&g), 0);
  CHECK_EQ(coro_group_spawn(g, NULL, child_ok, DELAY(10)), 0);
  CHECK_EQ(coro_group_spawn(g, &h, child_ok, DELAY(20)), 0);
  CHECK_EQ(coro_group_spawn(g, NULL, child_ok, DELAY(5)), 0);
  CHECK_EQ(coro_sleep(1), 0);
  CHECK_EQ(coro_group_wait(g, 0), 0);
  CHECK_EQ(ok_count, 3);
  CHECK_GE(coro_test_now_ms() - t0, 20);
  CHECK_EQ(coro_group_errors(g, NULL, 0), 0);
  CHECK_EQ(coro_future_status(h), 0);
  CHECK_PTR_EQ(coro_future_value(h), (void *)1);
  CHECK_EQ(CUR_CANCELLING(), 0);
  coro_group_free(g);
  coro_future_release(h); /* the extra reference outlives the group */
  CHECK_EQ(coro_sleep(1), 0);
  return NULL;
}

static void test_group_all_succeed(void **state) {
  (void)state;
  assert_run_ok(all_ok_main);
}

static void *empty_main(void *arg) {
  (void)arg;
  coro_group *g;
  int errs[2] = {1, 1};
  CHECK_EQ(coro_group_new(&g), 0);
  CHECK_EQ(coro_group_wait(g, 0), 0);
  coro_group_free(g);
  /* A body error with no children. */
  CHECK_EQ(coro_group_new(&g), 0);
  CHECK_ERR(coro_group_wait(g, -EIO), -EIO);
  CHECK_EQ(coro_group_errors(g, errs, 2), 1);
  CHECK_ERR(errs[0], -EIO);
  CHECK_EQ(errs[1], 1);
  coro_group_free(g);
  /* A cancelled body with no children and nothing from outside. */
  CHECK_EQ(coro_group_new(&g), 0);
  CHECK_ERR(coro_group_wait(g, -ECANCELED), -ECANCELED);
  CHECK_EQ(coro_group_errors(g, NULL, 0), 0);
  coro_group_free(g);
  coro_group_free(NULL);
  CHECK_EQ(CUR_CANCELLING(), 0);
  return NULL;
}

static void test_group_empty(void **state) {
  (void)state;
  assert_run_ok(empty_main);
}

static void *named_main(void *arg) {
  (void)arg;
  coro_group *g;
  coro_future *h = NULL;
  coro_task_opts o = {.name = "worker-1"};
  reset();
  CHECK_EQ(coro_group_new(&g), 0);
  CHECK_EQ(coro_group_spawn_opts(g, &h, child_ok, DELAY(1), &o), 0);
  CHECK(h != NULL && strcmp(coro_task_name(h), "worker-1") == 0);
  CHECK_EQ(coro_group_wait(g, 0), 0);
  CHECK_EQ(ok_count, 1);
  coro_group_free(g);
  coro_future_release(h);
  return NULL;
}

static void test_group_spawn_opts(void **state) {
  (void)state;
  assert_run_ok(named_main);
}

/* test_taskgroup_24/25 ("hydra"): children spawned by children while the
 * parent already waits are waited for too. */
static coro_group *hydra_g;
static int hydra_count;

static void *hydra(void *arg) {
  intptr_t depth = (intptr_t)arg;
  hydra_count++;
  if (depth > 0) {
    CHECK_EQ(coro_sleep(2), 0);
    for (int i = 0; i < 2; i++)
      CHECK_EQ(coro_group_spawn(hydra_g, NULL, hydra, (void *)(depth - 1)), 0);
  }
  return NULL;
}

static void *hydra_main(void *arg) {
  (void)arg;
  hydra_count = 0;
  CHECK_EQ(coro_group_new(&hydra_g), 0);
  CHECK_EQ(coro_group_spawn(hydra_g, NULL, hydra, (void *)(intptr_t)3), 0);
  CHECK_EQ(coro_group_wait(hydra_g, 0), 0);
  CHECK_EQ(hydra_count, 15);
  coro_group_free(hydra_g);
  return NULL;
}

static void test_group_hydra(void **state) {
  (void)state;
  assert_run_ok(hydra_main);
}

/* ---- a child fails ------------------------------------------------------------------ */

/* test_cancel_children_on_child_error: siblings cancelled (in spawn order),
 * then the body, once; errors only; the parent's count is as before. */
static void *child_error_main(void *arg) {
  (void)arg;
  coro_group *g;
  coro_future *hf = NULL;
  int errs[4] = {0};
  reset();
  int64_t t0 = coro_test_now_ms();
  CHECK_EQ(coro_group_new(&g), 0);
  CHECK_EQ(coro_group_spawn(g, NULL, child_forever, "1"), 0);
  CHECK_EQ(coro_group_spawn(g, &hf, child_fail, DELAY(10)), 0);
  CHECK_EQ(coro_group_spawn(g, NULL, child_forever, "2"), 0);
  int r = coro_sleep(10000);
  CHECK_ERR(r, -ECANCELED);
  coro_test_note("b");
  CHECK_EQ(CUR_CANCELLING(), 1); /* the group's request, until wait */
  r = coro_group_wait(g, r);
  coro_test_note("w");
  CHECK_ERR(r, -EIO);
  CHECK_EQ(CUR_CANCELLING(), 0);
  CHECK_EQ(saw_cancel, 2);
  CHECK_EQ(coro_group_errors(g, errs, 4), 1);
  CHECK_ERR(errs[0], -EIO);
  CHECK_ERR(coro_future_status(hf), -EIO);
  CHECK_LT(coro_test_now_ms() - t0, 1000);
  coro_group_free(g);
  coro_future_release(hf);
  CHECK_EQ(coro_sleep(1), 0); /* nothing left pending */
  return NULL;
}

static void test_group_child_error_cancels_all(void **state) {
  (void)state;
  assert_run_ok(child_error_main);
  assert_string_equal(coro_test_log(), "f12bw");
}

/* The child fails after the body has reached coro_group_wait (the 3.11
 * counter leak, gh-116720). */
static void *fail_in_wait_main(void *arg) {
  (void)arg;
  coro_group *g;
  int errs[2] = {0};
  reset();
  CHECK_EQ(coro_group_new(&g), 0);
  CHECK_EQ(coro_group_spawn(g, NULL, child_fail, DELAY(10)), 0);
  CHECK_EQ(coro_group_spawn(g, NULL, child_forever, NULL), 0);
  int r = coro_group_wait(g, 0);
  CHECK_ERR(r, -EIO);
  CHECK_EQ(CUR_CANCELLING(), 0);
  CHECK_EQ(saw_cancel, 1);
  CHECK_EQ(coro_group_errors(g, errs, 2), 1);
  CHECK_ERR(errs[0], -EIO);
  coro_group_free(g);
  CHECK_EQ(coro_sleep(1), 0);
  CHECK_EQ(coro_yield(), 0);

  /* Same with a child that fails at its first step. */
  CHECK_EQ(coro_group_new(&g), 0);
  CHECK_EQ(coro_group_spawn(g, NULL, child_fail, DELAY(0)), 0);
  CHECK_ERR(coro_group_wait(g, 0), -EIO);
  CHECK_EQ(CUR_CANCELLING(), 0);
  coro_group_free(g);
  CHECK_EQ(coro_sleep(1), 0);
  return NULL;
}

static void test_group_child_error_during_wait(void **state) {
  (void)state;
  assert_run_ok(fail_in_wait_main);
}

/* Two children failing in the same iteration: both errors, in order. */
static coro_future *gate;

static void *child_gate_fail(void *arg) {
  coro_await(gate, NULL); /* woken together; a cancellation changes nothing */
  return coro_fail((int)(intptr_t)arg);
}

static void *two_errors_main(void *arg) {
  (void)arg;
  coro_group *g;
  int errs[3] = {0, 0, 0};
  int one[2] = {0, 12345};
  reset();
  CHECK_EQ(coro_future_new(&gate), 0);
  CHECK_EQ(coro_group_new(&g), 0);
  CHECK_EQ(coro_group_spawn(g, NULL, child_gate_fail, (void *)(intptr_t)-EIO), 0);
  CHECK_EQ(coro_group_spawn(g, NULL, child_gate_fail, (void *)(intptr_t)-ENOENT), 0);
  CHECK_EQ(coro_yield(), 0); /* both wait on the gate */
  CHECK_EQ(coro_future_resolve(gate, NULL), 0);
  int r = coro_sleep(10000);
  CHECK_ERR(r, -ECANCELED);
  CHECK_ERR(coro_group_wait(g, r), -EIO);
  CHECK_EQ(coro_group_errors(g, errs, 3), 2);
  CHECK_ERR(errs[0], -EIO);
  CHECK_ERR(errs[1], -ENOENT);
  CHECK_EQ(errs[2], 0);
  CHECK_EQ(coro_group_errors(g, one, 1), 2); /* cap respected */
  CHECK_ERR(one[0], -EIO);
  CHECK_EQ(one[1], 12345);
  CHECK_EQ(CUR_CANCELLING(), 0);
  coro_group_free(g);
  coro_future_release(gate);
  return NULL;
}

static void test_group_two_errors_same_iteration(void **state) {
  (void)state;
  assert_run_ok(two_errors_main);
}

/* ---- the body fails -------------------------------------------------------------- */

/* test_taskgroup_09/10: the body's error cancels the children and is
 * reported. */
static void *body_error_main(void *arg) {
  (void)arg;
  coro_group *g;
  int errs[2] = {0};
  reset();
  CHECK_EQ(coro_group_new(&g), 0);
  CHECK_EQ(coro_group_spawn(g, NULL, child_forever, "1"), 0);
  CHECK_EQ(coro_group_spawn(g, NULL, child_forever, "2"), 0);
  CHECK_EQ(coro_yield(), 0); /* the children sleep */
  coro_test_note("b");
  CHECK_ERR(coro_group_wait(g, -EIO), -EIO);
  coro_test_note("w");
  CHECK_EQ(saw_cancel, 2);
  CHECK_EQ(coro_group_errors(g, errs, 2), 1);
  CHECK_ERR(errs[0], -EIO);
  CHECK_EQ(CUR_CANCELLING(), 0);
  coro_group_free(g);
  CHECK_EQ(coro_sleep(1), 0);
  return NULL;
}

static void test_group_body_error(void **state) {
  (void)state;
  assert_run_ok(body_error_main);
  assert_string_equal(coro_test_log(), "b12w");
}

/* test_taskgroup_18/19: the body turns the group's cancellation into its own
 * error: both are reported, children's first. */
static void *body_and_child_main(void *arg) {
  (void)arg;
  coro_group *g;
  int errs[3] = {0};
  reset();
  CHECK_EQ(coro_group_new(&g), 0);
  CHECK_EQ(coro_group_spawn(g, NULL, child_fail, DELAY(10)), 0);
  CHECK_EQ(coro_group_spawn(g, NULL, child_forever, NULL), 0);
  int r = coro_sleep(10000);
  CHECK_ERR(r, -ECANCELED);
  CHECK_ERR(coro_group_wait(g, -ENOENT), -EIO);
  CHECK_EQ(coro_group_errors(g, errs, 3), 2);
  CHECK_ERR(errs[0], -EIO);
  CHECK_ERR(errs[1], -ENOENT);
  CHECK_EQ(saw_cancel, 1);
  CHECK_EQ(CUR_CANCELLING(), 0);
  coro_group_free(g);
  return NULL;
}

static void test_group_body_and_child_errors(void **state) {
  (void)state;
  assert_run_ok(body_and_child_main);
}

/* ---- the parent cancelled from outside ---------------------------------------------- */

/* test_cancellation / test_taskgroup_22: every child is cancelled, wait
 * returns -ECANCELED, the outside request stays counted. */
static void *outside_body_parent(void *arg) {
  int in_wait = (int)(intptr_t)arg;
  coro_group *g;
  CHECK_EQ(coro_group_new(&g), 0);
  for (int i = 0; i < 5; i++)
    CHECK_EQ(coro_group_spawn(g, NULL, child_forever, NULL), 0);
  int r = 0;
  if (!in_wait) {
    r = coro_sleep(10000);
    CHECK_ERR(r, -ECANCELED);
  }
  r = coro_group_wait(g, r);
  CHECK_ERR(r, -ECANCELED);
  CHECK_EQ(saw_cancel, 5);
  CHECK_EQ(coro_group_errors(g, NULL, 0), 0);
  CHECK_EQ(CUR_CANCELLING(), 1);
  coro_group_free(g);
  return coro_fail(r);
}

static void *outside_main(void *arg) {
  (void)arg;
  for (int in_wait = 0; in_wait < 2; in_wait++) {
    coro_future *p;
    reset();
    int64_t t0 = coro_test_now_ms();
    CHECK_EQ(coro_spawn(&p, outside_body_parent, (void *)(intptr_t)in_wait), 0);
    CHECK_EQ(coro_sleep(5), 0);
    CHECK_EQ(coro_cancel(p), 0);
    CHECK_ERR(coro_await(p, NULL), -ECANCELED);
    CHECK_EQ(coro_cancelling(p), 1);
    CHECK_EQ(saw_cancel, 5);
    CHECK_LT(coro_test_now_ms() - t0, 1000);
    coro_future_release(p);
  }
  return NULL;
}

static void test_group_parent_cancelled_from_outside(void **state) {
  (void)state;
  assert_run_ok(outside_main);
}

/* test_taskgroup_08/15/16: a child that fails while being cancelled from an
 * outside cancellation: the error wins. */
static void *child_fail_on_cancel(void *arg) {
  (void)arg;
  int r = coro_sleep(CORO_FOREVER);
  CHECK_ERR(r, -ECANCELED);
  coro_test_note("x");
  return coro_fail(-EIO);
}

static int beat_done;

static void *beat_parent(void *arg) {
  (void)arg;
  coro_group *g;
  int errs[2] = {0};
  CHECK_EQ(coro_group_new(&g), 0);
  CHECK_EQ(coro_group_spawn(g, NULL, child_fail_on_cancel, NULL), 0);
  CHECK_EQ(coro_group_spawn(g, NULL, child_forever, NULL), 0);
  int r = coro_sleep(10000);
  CHECK_ERR(r, -ECANCELED);
  r = coro_group_wait(g, r);
  CHECK_ERR(r, -EIO);
  CHECK_EQ(coro_group_errors(g, errs, 2), 1);
  CHECK_ERR(errs[0], -EIO);
  CHECK_EQ(saw_cancel, 1);
  CHECK_EQ(CUR_CANCELLING(), 1); /* the outside request is not swallowed */
  coro_group_free(g);
  beat_done = 1;
  return NULL;
}

static void *beat_main(void *arg) {
  (void)arg;
  coro_future *p;
  reset();
  beat_done = 0;
  CHECK_EQ(coro_spawn(&p, beat_parent, NULL), 0);
  CHECK_EQ(coro_sleep(5), 0);
  CHECK_EQ(coro_cancel(p), 0);
  coro_await(p, NULL); /* its own status is not the point here */
  CHECK_EQ(beat_done, 1);
  CHECK_EQ(coro_cancelling(p), 1);
  coro_future_release(p);
  return NULL;
}

static void test_group_errors_beat_cancellation(void **state) {
  (void)state;
  assert_run_ok(beat_main);
  assert_string_equal(coro_test_log(), "xs");
}

/* ---- cancelling children, spawning late ------------------------------------------- */

/* test_taskgroup_03: cancelling one child is not a failure. */
static void *cancel_one_main(void *arg) {
  (void)arg;
  coro_group *g;
  coro_future *h;
  reset();
  CHECK_EQ(coro_group_new(&g), 0);
  CHECK_EQ(coro_group_spawn(g, NULL, child_ok, DELAY(10)), 0);
  CHECK_EQ(coro_group_spawn(g, &h, child_forever, NULL), 0);
  CHECK_EQ(coro_group_spawn(g, NULL, child_ok, DELAY(20)), 0);
  CHECK_EQ(coro_yield(), 0);
  CHECK_EQ(coro_cancel(h), 0);
  CHECK_EQ(coro_group_wait(g, 0), 0);
  CHECK_ERR(coro_future_status(h), -ECANCELED);
  CHECK_EQ(ok_count, 2);
  CHECK_EQ(saw_cancel, 1);
  CHECK_EQ(coro_group_errors(g, NULL, 0), 0);
  CHECK_EQ(CUR_CANCELLING(), 0);
  coro_group_free(g);
  coro_future_release(h);
  return NULL;
}

static void test_group_cancel_one_child(void **state) {
  (void)state;
  assert_run_ok(cancel_one_main);
}

/* test_taskgroup_no_create_task_after_failure, and after the end. */
static coro_group *late_g;
static int late_rc;

static void *child_spawns_when_cancelled(void *arg) {
  (void)arg;
  int r = coro_sleep(CORO_FOREVER);
  CHECK_ERR(r, -ECANCELED);
  late_rc = coro_group_spawn(late_g, NULL, child_ok, DELAY(0));
  return coro_fail(r);
}

static void *late_main(void *arg) {
  (void)arg;
  reset();
  late_rc = 1;
  CHECK_EQ(coro_group_new(&late_g), 0);
  CHECK_EQ(coro_group_spawn(late_g, NULL, child_fail, DELAY(5)), 0);
  CHECK_EQ(coro_group_spawn(late_g, NULL, child_spawns_when_cancelled, NULL), 0);
  int r = coro_sleep(10000);
  CHECK_ERR(r, -ECANCELED);
  CHECK_ERR(coro_group_spawn(late_g, NULL, child_ok, DELAY(0)), -EPIPE);
  CHECK_ERR(coro_group_wait(late_g, r), -EIO);
  CHECK_ERR(late_rc, -EPIPE);
  CHECK_ERR(coro_group_spawn(late_g, NULL, child_ok, DELAY(0)), -EPIPE);
  CHECK_ERR(coro_group_cancel(late_g), -EPIPE);
  CHECK_EQ(ok_count, 0);
  coro_group_free(late_g);

  /* After a successful wait. */
  coro_group *g;
  coro_future *h = (coro_future *)&h;
  CHECK_EQ(coro_group_new(&g), 0);
  CHECK_EQ(coro_group_spawn(g, NULL, child_ok, DELAY(0)), 0);
  CHECK_EQ(coro_group_wait(g, 0), 0);
  CHECK_ERR(coro_group_spawn(g, &h, child_ok, DELAY(0)), -EPIPE);
  CHECK_ERR(coro_group_cancel(g), -EPIPE);
  coro_group_free(g);
  CHECK_EQ(coro_sleep(1), 0);
  CHECK_EQ(ok_count, 1);
  return NULL;
}

static void test_group_spawn_after_abort_or_wait(void **state) {
  (void)state;
  assert_run_ok(late_main);
}

/* ---- coro_group_cancel (3.13 TaskGroup.cancel) -------------------------------------- */

static coro_group *cancel_g;

static void *child_cancels_group(void *arg) {
  (void)arg;
  CHECK_EQ(coro_sleep(10), 0);
  CHECK_EQ(coro_group_cancel(cancel_g), 0);
  coro_test_note("g");
  return NULL;
}

static void *group_cancel_main(void *arg) {
  (void)arg;
  int r;
  /* From a child, while the body sleeps. */
  reset();
  CHECK_EQ(coro_group_new(&cancel_g), 0);
  for (int i = 0; i < 3; i++)
    CHECK_EQ(coro_group_spawn(cancel_g, NULL, child_forever, NULL), 0);
  CHECK_EQ(coro_group_spawn(cancel_g, NULL, child_cancels_group, NULL), 0);
  r = coro_sleep(10000);
  CHECK_ERR(r, -ECANCELED);
  coro_test_note("b");
  CHECK_EQ(coro_group_wait(cancel_g, r), 0);
  CHECK_EQ(saw_cancel, 3);
  CHECK_EQ(coro_group_errors(cancel_g, NULL, 0), 0);
  CHECK_EQ(CUR_CANCELLING(), 0);
  CHECK_ERR(coro_group_cancel(cancel_g), -EPIPE);
  coro_group_free(cancel_g);
  CHECK_EQ(coro_sleep(1), 0);
  /* The canceller first; then the three children and the body. */
  CHECK_EQ(strcmp(coro_test_log(), "gsssb") == 0 || strcmp(coro_test_log(), "gbsss") == 0, 1);

  /* From the body itself. */
  reset();
  CHECK_EQ(coro_group_new(&cancel_g), 0);
  CHECK_EQ(coro_group_spawn(cancel_g, NULL, child_forever, NULL), 0);
  CHECK_EQ(coro_yield(), 0);
  CHECK_EQ(coro_group_cancel(cancel_g), 0);
  r = coro_yield();
  CHECK_ERR(r, -ECANCELED);
  CHECK_EQ(coro_group_wait(cancel_g, r), 0);
  CHECK_EQ(saw_cancel, 1);
  CHECK_EQ(CUR_CANCELLING(), 0);
  coro_group_free(cancel_g);
  CHECK_EQ(coro_sleep(1), 0);

  /* While the parent is already in coro_group_wait. */
  reset();
  CHECK_EQ(coro_group_new(&cancel_g), 0);
  CHECK_EQ(coro_group_spawn(cancel_g, NULL, child_forever, NULL), 0);
  CHECK_EQ(coro_group_spawn(cancel_g, NULL, child_cancels_group, NULL), 0);
  CHECK_EQ(coro_group_wait(cancel_g, 0), 0);
  CHECK_EQ(saw_cancel, 1);
  CHECK_EQ(CUR_CANCELLING(), 0);
  coro_group_free(cancel_g);
  CHECK_EQ(coro_sleep(1), 0);
  return NULL;
}

static void test_group_cancel(void **state) {
  (void)state;
  assert_run_ok(group_cancel_main);
}

/* ---- nesting ---------------------------------------------------------------------- */

/* test_taskgroup_11/12: an inner group's error is an error of the outer
 * body. */
static void *nested_inner_fail_main(void *arg) {
  (void)arg;
  coro_group *outer, *inner;
  int errs[2] = {0};
  reset();
  CHECK_EQ(coro_group_new(&outer), 0);
  CHECK_EQ(coro_group_spawn(outer, NULL, child_forever, "o"), 0);
  CHECK_EQ(coro_group_new(&inner), 0);
  CHECK_EQ(coro_group_spawn(inner, NULL, child_fail, DELAY(10)), 0);
  CHECK_EQ(coro_group_spawn(inner, NULL, child_forever, "i"), 0);
  int r = coro_sleep(10000);
  CHECK_ERR(r, -ECANCELED);
  r = coro_group_wait(inner, r);
  CHECK_ERR(r, -EIO);
  CHECK_EQ(CUR_CANCELLING(), 0);
  coro_group_free(inner);
  CHECK_EQ(saw_cancel, 1); /* the outer child still runs */
  r = coro_group_wait(outer, r);
  CHECK_ERR(r, -EIO);
  CHECK_EQ(coro_group_errors(outer, errs, 2), 1);
  CHECK_ERR(errs[0], -EIO);
  CHECK_EQ(saw_cancel, 2);
  CHECK_EQ(CUR_CANCELLING(), 0);
  coro_group_free(outer);
  CHECK_EQ(coro_sleep(1), 0);
  return NULL;
}

static void test_group_nested_inner_error(void **state) {
  (void)state;
  assert_run_ok(nested_inner_fail_main);
  assert_string_equal(coro_test_log(), "fio");
}

/* test_taskgroup_13: an outer child's failure cancels the inner group's
 * body; for the inner group that is a cancellation from outside. */
static void *nested_outer_fail_main(void *arg) {
  (void)arg;
  coro_group *outer, *inner;
  int errs[2] = {0};
  reset();
  CHECK_EQ(coro_group_new(&outer), 0);
  CHECK_EQ(coro_group_spawn(outer, NULL, child_fail, DELAY(10)), 0);
  CHECK_EQ(coro_group_new(&inner), 0);
  CHECK_EQ(coro_group_spawn(inner, NULL, child_forever, "i"), 0);
  int r = coro_sleep(10000);
  CHECK_ERR(r, -ECANCELED);
  r = coro_group_wait(inner, r);
  CHECK_ERR(r, -ECANCELED);
  CHECK_EQ(coro_group_errors(inner, NULL, 0), 0);
  CHECK_EQ(saw_cancel, 1);
  CHECK_EQ(CUR_CANCELLING(), 1); /* still the outer group's request */
  coro_group_free(inner);
  r = coro_group_wait(outer, r);
  CHECK_ERR(r, -EIO);
  CHECK_EQ(coro_group_errors(outer, errs, 2), 1);
  CHECK_ERR(errs[0], -EIO);
  CHECK_EQ(CUR_CANCELLING(), 0);
  coro_group_free(outer);
  CHECK_EQ(coro_sleep(1), 0);
  return NULL;
}

static void test_group_nested_outer_error(void **state) {
  (void)state;
  assert_run_ok(nested_outer_fail_main);
  assert_string_equal(coro_test_log(), "fi");
}

/* ---- with timeouts and earlier cancellations ------------------------------------- */

/* A timeout scope around a group (asyncio.timeout + TaskGroup): the scope's
 * cancellation reaches the body (or the wait), the children are cancelled,
 * and the scope reports -ETIMEDOUT. */
static void *timeout_group_main(void *arg) {
  (void)arg;
  for (int in_wait = 0; in_wait < 2; in_wait++) {
    coro_timeout t;
    coro_group *g;
    reset();
    int64_t t0 = coro_test_now_ms();
    CHECK_EQ(coro_timeout_enter(&t, 20), 0);
    CHECK_EQ(coro_group_new(&g), 0);
    CHECK_EQ(coro_group_spawn(g, NULL, child_forever, NULL), 0);
    CHECK_EQ(coro_group_spawn(g, NULL, child_forever, NULL), 0);
    int r = 0;
    if (!in_wait) {
      r = coro_sleep(10000);
      CHECK_ERR(r, -ECANCELED);
    }
    r = coro_group_wait(g, r);
    CHECK_ERR(r, -ECANCELED);
    CHECK_EQ(saw_cancel, 2);
    coro_group_free(g);
    CHECK_ERR(coro_timeout_exit(&t, r), -ETIMEDOUT);
    CHECK_GE(coro_test_now_ms() - t0, 20);
    CHECK_LT(coro_test_now_ms() - t0, 1000);
    CHECK_EQ(CUR_CANCELLING(), 0);
    CHECK_EQ(coro_sleep(1), 0);
  }
  return NULL;
}

static void test_group_inside_timeout(void **state) {
  (void)state;
  assert_run_ok(timeout_group_main);
}

/* The parent caught (and handled) a cancellation before the group existed:
 * its cancelling() is 1 but nothing is pending. That old request is not "a
 * cancellation from outside" of the group: the group must neither report
 * -ECANCELED for it nor re-arm it (SEMANTICS 3 item 12: tell the group's
 * own request from an outside one). */
static void *stale_parent(void *arg) {
  (void)arg;
  coro_group *g;
  int r = coro_sleep(10000);
  CHECK_ERR(r, -ECANCELED); /* handled */
  CHECK_EQ(CUR_CANCELLING(), 1);

  /* A child fails: the error, and no cancellation afterwards. */
  reset();
  CHECK_EQ(coro_group_new(&g), 0);
  CHECK_EQ(coro_group_spawn(g, NULL, child_fail, DELAY(5)), 0);
  CHECK_EQ(coro_group_spawn(g, NULL, child_forever, NULL), 0);
  r = coro_sleep(10000);
  CHECK_ERR(r, -ECANCELED);
  CHECK_ERR(coro_group_wait(g, r), -EIO);
  coro_group_free(g);
  CHECK_EQ(CUR_CANCELLING(), 1);
  CHECK_EQ(coro_sleep(1), 0); /* nothing re-armed */

  /* coro_group_cancel: wait returns 0. */
  reset();
  CHECK_EQ(coro_group_new(&g), 0);
  CHECK_EQ(coro_group_spawn(g, NULL, child_forever, NULL), 0);
  CHECK_EQ(coro_yield(), 0);
  CHECK_EQ(coro_group_cancel(g), 0);
  r = coro_yield();
  CHECK_ERR(r, -ECANCELED);
  CHECK_EQ(coro_group_wait(g, r), 0);
  coro_group_free(g);
  CHECK_EQ(CUR_CANCELLING(), 1);
  CHECK_EQ(coro_sleep(1), 0);

  /* A child fails after the body reached wait: no -ECANCELED either. */
  reset();
  CHECK_EQ(coro_group_new(&g), 0);
  CHECK_EQ(coro_group_spawn(g, NULL, child_fail, DELAY(5)), 0);
  CHECK_ERR(coro_group_wait(g, 0), -EIO);
  coro_group_free(g);
  CHECK_EQ(CUR_CANCELLING(), 1);
  CHECK_EQ(coro_sleep(1), 0);
  return (void *)3;
}

static void *stale_main(void *arg) {
  (void)arg;
  coro_future *p;
  void *v = NULL;
  CHECK_EQ(coro_spawn(&p, stale_parent, NULL), 0);
  CHECK_EQ(coro_yield(), 0);
  CHECK_EQ(coro_cancel(p), 0);
  CHECK_EQ(coro_await(p, &v), 0);
  CHECK_PTR_EQ(v, (void *)3);
  coro_future_release(p);
  return NULL;
}

static void test_group_after_caught_cancellation(void **state) {
  (void)state;
  assert_run_ok(stale_main);
}

/* ---- freed without waiting --------------------------------------------------------- */

static int never_ran;

static void *child_cleanup(void *arg) {
  int check = (int)(intptr_t)arg;
  int r = coro_sleep(CORO_FOREVER);
  CHECK_ERR(r, -ECANCELED);
  int r2 = coro_sleep(5); /* cleanup that suspends */
  if (check) CHECK_EQ(r2, 0);
  cleaned++;
  return coro_fail(r);
}

static void *child_never(void *arg) {
  (void)arg;
  never_ran = 1;
  return NULL;
}

static void *free_early_main(void *arg) {
  (void)arg;
  coro_group *g;
  coro_future *h;
  reset();
  CHECK_EQ(coro_group_new(&g), 0);
  for (int i = 0; i < 3; i++)
    CHECK_EQ(coro_group_spawn(g, NULL, child_cleanup, (void *)1), 0);
  CHECK_EQ(coro_group_spawn(g, &h, child_cleanup, (void *)1), 0);
  CHECK_EQ(coro_yield(), 0); /* they sleep */
  coro_group_free(g);
  CHECK_EQ(cleaned, 0);
  CHECK_ERR(coro_await(h, NULL), -ECANCELED);
  coro_future_release(h);
  CHECK_EQ(coro_sleep(30), 0); /* the parent is not cancelled */
  CHECK_EQ(cleaned, 4);
  CHECK_EQ(CUR_CANCELLING(), 0);

  /* Children that never started never run. */
  never_ran = 0;
  CHECK_EQ(coro_group_new(&g), 0);
  CHECK_EQ(coro_group_spawn(g, NULL, child_never, NULL), 0);
  coro_group_free(g);
  CHECK_EQ(coro_sleep(5), 0);
  CHECK_EQ(never_ran, 0);
  return NULL;
}

static void *free_and_return_main(void *arg) {
  (void)arg;
  coro_group *g;
  CHECK_EQ(coro_group_new(&g), 0);
  for (int i = 0; i < 3; i++)
    CHECK_EQ(coro_group_spawn(g, NULL, child_cleanup, (void *)0), 0);
  CHECK_EQ(coro_yield(), 0);
  coro_group_free(g);
  return (void *)5; /* while the children still clean up */
}

static void test_group_freed_without_wait(void **state) {
  (void)state;
  assert_run_ok(free_early_main);
  reset();
  void *v = NULL;
  assert_coro_ok(coro_run(free_and_return_main, NULL, &v));
  assert_checks_passed();
  assert_ptr_equal(v, (void *)5);
  assert_int_equal(cleaned, 3);
}

/* ---- scale and allocation failure --------------------------------------------------- */

#define NMANY 100000
static int many_count;

static void *child_count(void *arg) {
  (void)arg;
  many_count++;
  return NULL;
}

static void *many_main(void *arg) {
  (void)arg;
  coro_group *g;
  many_count = 0;
  CHECK_EQ(coro_group_new(&g), 0);
  for (int i = 0; i < NMANY; i++) {
    int r = coro_group_spawn(g, NULL, child_count, NULL);
    CHECK_EQ(r, 0);
    if (r != 0) break;
  }
  CHECK_EQ(coro_group_wait(g, 0), 0);
  CHECK_EQ(many_count, NMANY);
  CHECK_EQ(coro_group_errors(g, NULL, 0), 0);
  coro_group_free(g);
  return NULL;
}

static void test_group_many_children(void **state) {
  (void)state;
  int64_t t0 = coro_test_now_ms();
  assert_run_ok(many_main);
  assert_int_equal(many_count, NMANY);
  assert_true(coro_test_now_ms() - t0 < 30000);
}

static void *enomem_main(void *arg) {
  (void)arg;
  coro_group *g = NULL;
  /* A name too long to be kept inline: spawning must allocate. */
  coro_task_opts o = {.name = "a-child-with-a-name-too-long-to-inline"};
  int n_ok = 0, n_fail = 0;
  many_count = 0;
  coro_test_fail_alloc_after(1);
  int r = coro_group_new(&g);
  coro_test_fail_alloc_after(0);
  CHECK_ERR(r, -ENOMEM);
  CHECK_EQ(coro_group_new(&g), 0);
  for (long n = 1; n <= 8; n++) {
    coro_future *h = NULL;
    coro_test_fail_alloc_after(n);
    r = coro_group_spawn_opts(g, n % 2 ? &h : NULL, child_count, NULL, &o);
    coro_test_fail_alloc_after(0);
    CHECK(r == 0 || r == -ENOMEM);
    if (n == 1) CHECK_ERR(r, -ENOMEM);
    if (r == 0) {
      n_ok++;
      coro_future_release(h);
    } else {
      n_fail++;
    }
  }
  CHECK_GE(n_fail, 1);
  CHECK_EQ(coro_group_spawn(g, NULL, child_count, NULL), 0);
  n_ok++;
  CHECK_EQ(coro_group_wait(g, 0), 0);
  CHECK_EQ(many_count, n_ok);
  CHECK_EQ(coro_group_errors(g, NULL, 0), 0);
  coro_group_free(g);
  return NULL;
}

static void test_group_spawn_enomem(void **state) {
  (void)state;
  assert_run_ok(enomem_main);
}

/* A child fails while memory is short: its error must not be lost (wait
 * would otherwise report success for a failed group). */
static void *child_fail_no_memory(void *arg) {
  (void)arg;
  CHECK_EQ(coro_sleep(5), 0);
  coro_test_fail_alloc_after(1); /* whatever the group allocates next */
  return coro_fail(-EIO);
}

static void *error_no_memory_main(void *arg) {
  (void)arg;
  coro_group *g;
  int errs[2] = {0};
  reset();
  CHECK_EQ(coro_group_new(&g), 0);
  CHECK_EQ(coro_group_spawn(g, NULL, child_fail_no_memory, NULL), 0);
  CHECK_EQ(coro_group_spawn(g, NULL, child_forever, NULL), 0);
  int r = coro_sleep(10000);
  coro_test_fail_alloc_after(0);
  CHECK_ERR(r, -ECANCELED);
  CHECK_ERR(coro_group_wait(g, r), -EIO);
  CHECK_GE(coro_group_errors(g, errs, 2), 1);
  CHECK_ERR(errs[0], -EIO);
  CHECK_EQ(saw_cancel, 1);
  CHECK_EQ(CUR_CANCELLING(), 0);
  coro_group_free(g);
  return NULL;
}

static void test_group_error_kept_without_memory(void **state) {
  (void)state;
  assert_run_ok(error_no_memory_main);
}

/* ---- misuse -------------------------------------------------------------------------- */

static coro_group *misuse_g;
static int cb_new_rc, cb_ran;

static void group_in_cb(coro_future *f, void *data) {
  (void)f;
  (void)data;
  coro_group *g = NULL;
  cb_ran++;
  cb_new_rc = coro_group_new(&g);
  if (cb_new_rc == 0) coro_group_free(g);
}

static void *other_waiter(void *arg) {
  (void)arg;
  return (void *)(intptr_t)coro_group_wait(misuse_g, 0);
}

static void *misuse_main(void *arg) {
  (void)arg;
  coro_future *f;
  void *v = NULL;
  reset();
  CHECK_ERR(coro_group_new(NULL), -EINVAL);
  CHECK_ERR(coro_group_wait(NULL, 0), -EINVAL);
  CHECK_ERR(coro_group_cancel(NULL), -EINVAL);
  CHECK_EQ(coro_group_new(&misuse_g), 0);
  CHECK_ERR(coro_group_spawn(NULL, NULL, child_ok, DELAY(0)), -EINVAL);
  CHECK_ERR(coro_group_spawn(misuse_g, NULL, NULL, NULL), -EINVAL);
  CHECK_EQ(coro_group_spawn(misuse_g, NULL, child_ok, DELAY(5)), 0);
  /* Only the parent may wait. */
  CHECK_EQ(coro_spawn(&f, other_waiter, NULL), 0);
  CHECK_EQ(coro_await(f, &v), 0);
  CHECK_ERR((intptr_t)v, -EPERM);
  coro_future_release(f);
  CHECK_EQ(coro_group_wait(misuse_g, 0), 0);
  CHECK_ERR(coro_group_wait(misuse_g, 0), -EINVAL); /* twice */
  CHECK_EQ(ok_count, 1);
  coro_group_free(misuse_g);
  /* Not from a done callback. */
  coro_future *p;
  CHECK_EQ(coro_future_new(&p), 0);
  CHECK_EQ(coro_future_resolve(p, NULL), 0);
  cb_ran = 0;
  cb_new_rc = 1;
  CHECK_EQ(coro_future_on_done(p, group_in_cb, NULL), 0);
  for (int i = 0; i < 100 && cb_ran == 0; i++) CHECK_EQ(coro_yield(), 0);
  CHECK_EQ(cb_ran, 1);
  CHECK_ERR(cb_new_rc, -EPERM);
  coro_future_release(p);
  return NULL;
}

static void test_group_misuse(void **state) {
  (void)state;
  assert_run_ok(misuse_main);
  coro_group *g = NULL;
  assert_coro_err(coro_group_new(&g), -EPERM);
}

int main(int argc, char **argv) {
  const struct CMUnitTest tests[] = {
#define T(x) cmocka_unit_test_setup_teardown(x, coro_test_setup, coro_test_teardown)
    T(test_group_all_succeed),
    T(test_group_empty),
    T(test_group_spawn_opts),
    T(test_group_hydra),
    T(test_group_child_error_cancels_all),
    T(test_group_child_error_during_wait),
    T(test_group_two_errors_same_iteration),
    T(test_group_body_error),
    T(test_group_body_and_child_errors),
    T(test_group_parent_cancelled_from_outside),
    T(test_group_errors_beat_cancellation),
    T(test_group_cancel_one_child),
    T(test_group_spawn_after_abort_or_wait),
    T(test_group_cancel),
    T(test_group_nested_inner_error),
    T(test_group_nested_outer_error),
    T(test_group_inside_timeout),
    T(test_group_after_caught_cancellation),
    T(test_group_freed_without_wait),
    T(test_group_many_children),
    T(test_group_spawn_enomem),
    T(test_group_error_kept_without_memory),
    T(test_group_misuse),
#undef T
  };
  return coro_test_main(argc, argv, tests, NULL, NULL);
}
