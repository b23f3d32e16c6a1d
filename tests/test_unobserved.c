/* SPDX-License-Identifier: MIT */
/* Reports of failures nobody looked at (asyncio's "Task exception
 * was never retrieved"): deterministic, once, at the end of the
 * iteration in which the failure became unobservable; never for cancelled
 * tasks or for outcomes read through await, status, a done callback,
 * gather or a group. */
#include "helpers.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int n_reports;
static int last_err;
static int last_status;
static char last_name[64];
static int marker;
static int bad_data;

static void record(coro_future *f, int err, void *data) {
  n_reports++;
  if (data != &marker) bad_data = 1;
  const char *name = coro_task_name(f);
  snprintf(last_name, sizeof(last_name), "%s", name != NULL ? name : "(null)");
  last_err = err;
  last_status = coro_future_status(f);
}

static int setup(void **state) {
  n_reports = 0;
  last_err = 0;
  last_status = 0;
  last_name[0] = '\0';
  bad_data = 0;
  coro_set_unobserved_handler(record, &marker);
  return coro_test_setup(state);
}

static int teardown(void **state) {
  coro_set_unobserved_handler(NULL, NULL);
  return coro_test_teardown(state);
}

/* Fails at once with (intptr_t)arg, or -ENOENT for NULL. */
static void *fail_now(void *arg) {
  int err = arg != NULL ? (int)(intptr_t)arg : -ENOENT;
  return coro_fail(err);
}

static void *fail_later(void *arg) {
  (void)arg;
  coro_sleep(5); /* fails with -EIO even if cancelled meanwhile */
  return coro_fail(-EIO);
}

static void *succeed(void *arg) {
  (void)arg;
  return (void *)1;
}

static void *forever(void *arg) {
  (void)arg;
  return coro_fail(coro_sleep(CORO_FOREVER));
}

/* ---- detached tasks ----------------------------------------------------------- */

static void *detached_main(void *arg) {
  (void)arg;
  coro_task_opts o = {.name = "lost-task"};
  CHECK_EQ(coro_spawn_opts(NULL, fail_now, NULL, &o), 0);
  CHECK_EQ(coro_spawn(NULL, succeed, NULL), 0);
  /* The child's first step runs before mine in the next iteration; the
   * report comes at the end of that iteration, after my step. */
  CHECK_EQ(coro_yield(), 0);
  CHECK_EQ(n_reports, 0);
  CHECK_EQ(coro_yield(), 0);
  CHECK_EQ(n_reports, 1);
  CHECK_EQ(strcmp(last_name, "lost-task"), 0);
  CHECK_ERR(last_err, -ENOENT);
  CHECK_ERR(last_status, -ENOENT);
  CHECK_EQ(coro_sleep(5), 0);
  CHECK_EQ(n_reports, 1); /* once */

  /* A detached task that fails after suspending. */
  coro_task_opts o2 = {.name = "late"};
  CHECK_EQ(coro_spawn_opts(NULL, fail_later, NULL, &o2), 0);
  CHECK_EQ(coro_sleep(30), 0);
  CHECK_EQ(n_reports, 2);
  CHECK_EQ(strcmp(last_name, "late"), 0);
  CHECK_ERR(last_err, -EIO);
  return NULL;
}

static void test_unobserved_detached_reported_once(void **state) {
  (void)state;
  assert_run_ok(detached_main);
  assert_int_equal(n_reports, 2);
  assert_int_equal(bad_data, 0);
}

/* A task without a name gets its "Task-N" in the report. */
static void *autoname_main(void *arg) {
  (void)arg;
  coro_future *f;
  char name[64];
  CHECK_EQ(coro_spawn(&f, fail_now, NULL), 0);
  snprintf(name, sizeof(name), "%s", coro_task_name(f));
  CHECK_EQ(strncmp(name, "Task-", 5), 0);
  coro_future_release(f); /* before it ran: now detached */
  CHECK_EQ(coro_yield(), 0);
  CHECK_EQ(coro_yield(), 0);
  CHECK_EQ(n_reports, 1);
  CHECK_EQ(strcmp(last_name, name), 0);
  return NULL;
}

static void test_unobserved_default_name(void **state) {
  (void)state;
  assert_run_ok(autoname_main);
  assert_int_equal(n_reports, 1);
}

/* ---- handles -------------------------------------------------------------------- */

static void *awaited_later_main(void *arg) {
  (void)arg;
  coro_future *f;
  CHECK_EQ(coro_spawn(&f, fail_now, NULL), 0);
  coro_future_release(coro_future_retain(f)); /* not the last handle */
  CHECK_EQ(coro_sleep(20), 0); /* many iterations after it failed */
  CHECK_EQ(n_reports, 0);
  CHECK_ERR(coro_await(f, NULL), -ENOENT);
  coro_future_release(f);
  CHECK_EQ(coro_yield(), 0);
  CHECK_EQ(coro_yield(), 0);
  CHECK_EQ(n_reports, 0);
  return NULL;
}

static void test_unobserved_awaited_later_not_reported(void **state) {
  (void)state;
  assert_run_ok(awaited_later_main);
  assert_int_equal(n_reports, 0);
}

static void *released_main(void *arg) {
  (void)arg;
  coro_future *f;
  coro_task_opts o = {.name = "dropped"};
  CHECK_EQ(coro_spawn_opts(&f, fail_now, (void *)(intptr_t)-EPIPE, &o), 0);
  CHECK_EQ(coro_sleep(10), 0);
  CHECK_EQ(n_reports, 0); /* a handle could still read it */
  coro_future_release(f);
  CHECK_EQ(n_reports, 0); /* at the end of this iteration, not inside */
  CHECK_EQ(coro_yield(), 0);
  CHECK_EQ(n_reports, 1);
  CHECK_EQ(strcmp(last_name, "dropped"), 0);
  CHECK_ERR(last_err, -EPIPE);

  /* Released while it still runs: reported when it fails. */
  coro_task_opts o2 = {.name = "dropped-early"};
  CHECK_EQ(coro_spawn_opts(&f, fail_later, NULL, &o2), 0);
  CHECK_EQ(coro_yield(), 0);
  coro_future_release(f);
  CHECK_EQ(coro_sleep(30), 0);
  CHECK_EQ(n_reports, 2);
  CHECK_EQ(strcmp(last_name, "dropped-early"), 0);
  CHECK_ERR(last_err, -EIO);
  return NULL;
}

static void test_unobserved_handle_released_unread(void **state) {
  (void)state;
  assert_run_ok(released_main);
  assert_int_equal(n_reports, 2);
}

static coro_future *kept;

static void *kept_main(void *arg) {
  (void)arg;
  coro_task_opts o = {.name = "kept"};
  CHECK_EQ(coro_spawn_opts(&kept, fail_now, NULL, &o), 0);
  CHECK_EQ(coro_sleep(10), 0);
  CHECK_EQ(n_reports, 0);
  return NULL; /* the handle is still unread */
}

static void test_unobserved_unread_at_run_end(void **state) {
  (void)state;
  kept = NULL;
  assert_run_ok(kept_main);
  assert_int_equal(n_reports, 1);
  assert_string_equal(last_name, "kept");
  assert_int_equal(last_err, -ENOENT);
  assert_int_equal(coro_future_status(kept), -ENOENT);
  coro_future_release(kept);
  assert_int_equal(n_reports, 1); /* nothing more */
}

/* ---- cancelled tasks ---------------------------------------------------------------- */

static void *cancelled_main(void *arg) {
  (void)arg;
  coro_future *f;
  /* Cancelled through a handle that is then dropped unread. */
  CHECK_EQ(coro_spawn(&f, forever, NULL), 0);
  CHECK_EQ(coro_yield(), 0);
  CHECK_EQ(coro_cancel(f), 0);
  coro_future_release(f);
  /* Cancelled before it started. */
  CHECK_EQ(coro_spawn(&f, fail_now, NULL), 0);
  CHECK_EQ(coro_cancel(f), 0);
  coro_future_release(f);
  /* Ends with -ECANCELED of its own accord, detached. */
  CHECK_EQ(coro_spawn(NULL, fail_now, (void *)(intptr_t)-ECANCELED), 0);
  /* Left running: cancelled when coro_run ends. */
  CHECK_EQ(coro_spawn(NULL, forever, NULL), 0);
  CHECK_EQ(coro_spawn(&kept, forever, NULL), 0);
  CHECK_EQ(coro_sleep(10), 0);
  CHECK_EQ(n_reports, 0);
  return NULL;
}

static void test_unobserved_cancelled_never_reported(void **state) {
  (void)state;
  kept = NULL;
  assert_run_ok(cancelled_main);
  assert_int_equal(coro_future_status(kept), -ECANCELED);
  coro_future_release(kept);
  assert_int_equal(n_reports, 0);
}

/* ---- observed in other ways ----------------------------------------------------------- */

static int cb_calls;

static void on_done(coro_future *f, void *data) {
  (void)f;
  (void)data;
  cb_calls++; /* looks at nothing */
}

static void *observed_main(void *arg) {
  (void)arg;
  coro_future *f, *fs[2];
  int st[2];

  /* coro_future_status. */
  CHECK_EQ(coro_spawn(&f, fail_now, NULL), 0);
  CHECK_EQ(coro_sleep(5), 0);
  CHECK_ERR(coro_future_status(f), -ENOENT);
  coro_future_release(f);

  /* A done callback. */
  cb_calls = 0;
  CHECK_EQ(coro_spawn(&f, fail_now, NULL), 0);
  CHECK_EQ(coro_future_on_done(f, on_done, NULL), 0);
  coro_future_release(f);
  CHECK_EQ(coro_sleep(5), 0);
  CHECK_EQ(cb_calls, 1);

  /* coro_gather, first-failure mode. */
  CHECK_EQ(coro_spawn(&fs[0], succeed, NULL), 0);
  CHECK_EQ(coro_spawn(&fs[1], fail_now, NULL), 0);
  CHECK_ERR(coro_gather(fs, 2, NULL, NULL), -ENOENT);
  CHECK_EQ(coro_sleep(2), 0);
  coro_future_release(fs[0]);
  coro_future_release(fs[1]);

  /* coro_gather with statuses. */
  CHECK_EQ(coro_spawn(&fs[0], fail_later, NULL), 0);
  CHECK_EQ(coro_spawn(&fs[1], fail_now, NULL), 0);
  CHECK_EQ(coro_gather(fs, 2, NULL, st), 0);
  CHECK_ERR(st[0], -EIO);
  CHECK_ERR(st[1], -ENOENT);
  coro_future_release(fs[0]);
  coro_future_release(fs[1]);

  /* A group, with a handle to the failing child dropped unread. */
  coro_group *g;
  coro_future *h;
  CHECK_EQ(coro_group_new(&g), 0);
  CHECK_EQ(coro_group_spawn(g, &h, fail_later, NULL), 0);
  CHECK_EQ(coro_group_spawn(g, NULL, fail_now, NULL), 0);
  CHECK_EQ(coro_group_spawn(g, NULL, forever, NULL), 0);
  coro_future_release(h);
  int r = coro_sleep(10000);
  CHECK_ERR(r, -ECANCELED);
  CHECK_ERR(coro_group_wait(g, r), -ENOENT);
  coro_group_free(g);

  /* coro_wait_for. */
  CHECK_EQ(coro_spawn(&f, fail_later, NULL), 0);
  CHECK_ERR(coro_wait_for(f, 1000, NULL), -EIO);
  coro_future_release(f);

  /* coro_as_completed_next hands it out (nobody calls status after). */
  coro_as_completed *it;
  coro_future *d = NULL;
  CHECK_EQ(coro_spawn(&f, fail_now, NULL), 0);
  CHECK_EQ(coro_as_completed_new(&it, &f, 1, CORO_FOREVER), 0);
  CHECK_EQ(coro_as_completed_next(it, &d), 0);
  CHECK_PTR_EQ(d, f);
  coro_as_completed_free(it);
  coro_future_release(f);

  /* A promise rejected and awaited. */
  CHECK_EQ(coro_future_new(&f), 0);
  CHECK_EQ(coro_future_reject(f, -EIO), 0);
  CHECK_ERR(coro_await(f, NULL), -EIO);
  coro_future_release(f);

  CHECK_EQ(coro_sleep(10), 0);
  CHECK_EQ(n_reports, 0);
  return NULL;
}

static void test_unobserved_observed_not_reported(void **state) {
  (void)state;
  assert_run_ok(observed_main);
  assert_int_equal(cb_calls, 1);
  assert_int_equal(n_reports, 0);
}

/* A task observed by another task's await, its spawner's handle dropped. */
static void *awaits_eio(void *arg) {
  CHECK_ERR(coro_await((coro_future *)arg, NULL), -EIO);
  coro_future_release((coro_future *)arg);
  return NULL;
}

static void *cross_main(void *arg) {
  (void)arg;
  coro_future *f;
  CHECK_EQ(coro_spawn(&f, fail_later, NULL), 0);
  CHECK_EQ(coro_spawn(NULL, awaits_eio, coro_future_retain(f)), 0);
  coro_future_release(f);
  CHECK_EQ(coro_sleep(20), 0);
  CHECK_EQ(n_reports, 0);
  return NULL;
}

static void test_unobserved_awaited_by_other_task(void **state) {
  (void)state;
  assert_run_ok(cross_main);
  assert_int_equal(n_reports, 0);
}

/* ---- shields and promises -------------------------------------------------------------- */

static void *shield_promise_main(void *arg) {
  (void)arg;
  coro_future *in, *s;
  /* The shield was cancelled and both handles dropped: the inner's later
   * failure is nobody's, so it is reported (docs/api/wait.md). */
  coro_task_opts o = {.name = "behind-shield"};
  CHECK_EQ(coro_spawn_opts(&in, fail_later, NULL, &o), 0);
  CHECK_EQ(coro_shield(&s, in), 0);
  coro_future_release(in);
  CHECK_EQ(coro_cancel(s), 0);
  coro_future_release(s);
  CHECK_EQ(coro_sleep(20), 0);
  CHECK_EQ(n_reports, 1);
  CHECK_EQ(strcmp(last_name, "behind-shield"), 0);
  CHECK_ERR(last_err, -EIO);

  /* Read through the shield: nothing to report. */
  CHECK_EQ(coro_spawn(&in, fail_later, NULL), 0);
  CHECK_EQ(coro_shield(&s, in), 0);
  coro_future_release(in);
  CHECK_ERR(coro_await(s, NULL), -EIO);
  coro_future_release(s);
  CHECK_EQ(coro_sleep(5), 0);
  CHECK_EQ(n_reports, 1);

  /* A promise rejected and dropped unread. */
  coro_future *p;
  CHECK_EQ(coro_future_new(&p), 0);
  CHECK_EQ(coro_future_reject(p, -EACCES), 0);
  coro_future_release(p);
  CHECK_EQ(n_reports, 1);
  CHECK_EQ(coro_yield(), 0);
  CHECK_EQ(n_reports, 2);
  CHECK_ERR(last_err, -EACCES);
  CHECK_EQ(strcmp(last_name, "(null)"), 0); /* not a task: no name */
  return NULL;
}

static void test_unobserved_shield_and_promise(void **state) {
  (void)state;
  assert_run_ok(shield_promise_main);
  assert_int_equal(n_reports, 2);
}

/* ---- around coro_run ---------------------------------------------------------------- */

/* main's own failure is coro_run's result: read, not reported. */
static void *main_fails(void *arg) {
  (void)arg;
  CHECK_EQ(coro_yield(), 0);
  return coro_fail(-EIO);
}

/* A detached task that fails while coro_run cancels it at the end: nobody
 * can read that, so it is reported before coro_run returns. */
static void *fails_when_cancelled(void *arg) {
  (void)arg;
  int r = coro_sleep(CORO_FOREVER);
  CHECK_ERR(r, -ECANCELED);
  return coro_fail(-EBADF);
}

static void *leaves_one_behind(void *arg) {
  (void)arg;
  coro_task_opts o = {.name = "straggler"};
  CHECK_EQ(coro_spawn_opts(NULL, fails_when_cancelled, NULL, &o), 0);
  CHECK_EQ(coro_yield(), 0);
  return NULL;
}

static void test_unobserved_around_run(void **state) {
  (void)state;
  assert_coro_err(coro_run(main_fails, NULL, NULL), -EIO);
  assert_checks_passed();
  assert_int_equal(n_reports, 0);
  assert_run_ok(leaves_one_behind);
  assert_int_equal(n_reports, 1);
  assert_string_equal(last_name, "straggler");
  assert_int_equal(last_err, -EBADF);
}

/* ---- the default handler --------------------------------------------------------------- */

static void *default_main(void *arg) {
  (void)arg;
  coro_task_opts o = {.name = "lost-in-space"};
  coro_spawn_opts(NULL, fail_now, NULL, &o);
  coro_yield();
  coro_yield();
  coro_sleep(5);
  return NULL;
}

static void default_child(void *arg) {
  (void)arg;
  coro_set_unobserved_handler(NULL, NULL);
  int r = coro_run(default_main, NULL, NULL);
  fflush(stderr);
  _exit(r == 0 ? 0 : 4);
}

static void test_unobserved_default_handler(void **state) {
  (void)state;
  char report[2048];
  int st = coro_test_in_child_stderr(default_child, NULL, 10000, report,
                                     sizeof(report));
  assert_true(st != -1);
  assert_true(WIFEXITED(st));
  assert_int_equal(WEXITSTATUS(st), 0);
  static const char msg[] = "Task exception was never retrieved";
  const char *hit = strstr(report, msg);
  if (hit == NULL) fail_msg("stderr was: \"%s\"", report);
  assert_null(strstr(hit + sizeof(msg) - 1, msg)); /* once */
  assert_non_null(strstr(report, "lost-in-space"));
  assert_non_null(strstr(report, "ENOENT"));
  assert_int_equal(n_reports, 0); /* this process's handler saw nothing */
}

int main(int argc, char **argv) {
  const struct CMUnitTest tests[] = {
#define T(x) cmocka_unit_test_setup_teardown(x, setup, teardown)
    T(test_unobserved_detached_reported_once),
    T(test_unobserved_default_name),
    T(test_unobserved_awaited_later_not_reported),
    T(test_unobserved_handle_released_unread),
    T(test_unobserved_unread_at_run_end),
    T(test_unobserved_cancelled_never_reported),
    T(test_unobserved_observed_not_reported),
    T(test_unobserved_awaited_by_other_task),
    T(test_unobserved_shield_and_promise),
    T(test_unobserved_around_run),
    T(test_unobserved_default_handler),
#undef T
  };
  return coro_test_main(argc, argv, tests, NULL, NULL);
}
