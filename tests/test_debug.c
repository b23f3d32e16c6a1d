/* SPDX-License-Identifier: MIT */
/* Debug mode's slow-step report: the default threshold (100 ms), the
 * slow_step_ms setting, CORO_DEBUG=1 from the environment, the handler and
 * its arguments, the default report on stderr, task names, nothing when
 * debug mode is off, steps measured one by one (time spent suspended does
 * not count), coro_loop_debug and invalid configurations. */
#include "helpers.h"

/* Steps are timed by the watchdog thread, which Valgrind (one thread at a
 * time) may leave unscheduled for the whole of a step: the tests that
 * need a report to appear do not run there. */
#define SKIP_UNDER_VALGRIND()                                                 \
  do {                                                                        \
    if (UNDER_VALGRIND()) {                                                   \
      fprintf(stderr, "skipped under Valgrind: steps are timed by a thread\n"); \
      skip();                                                                 \
    }                                                                         \
  } while (0)

#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- what the handler saw --------------------------------------------------- */

#define MAX_REPORTS 16
static struct {
  char name[64];
  double seconds;
  coro_future *f;
  coro_future *current; /* coro_current() inside the handler */
  int sleep_rc;         /* coro_sleep(0) inside the handler */
} reports[MAX_REPORTS];
static int nreports;
static int handler_data_ok;
static int handler_tag;

static void record(coro_future *f, const char *name, double seconds,
                   void *data) {
  if (data == &handler_tag) handler_data_ok = 1;
  if (nreports < MAX_REPORTS) {
    snprintf(reports[nreports].name, sizeof(reports[nreports].name), "%s",
             name != NULL ? name : "(null)");
    reports[nreports].seconds = seconds;
    reports[nreports].f = f;
    reports[nreports].current = coro_current();
    reports[nreports].sleep_rc = coro_sleep(0);
  }
  nreports++;
}

static int setup(void **state) {
  nreports = 0;
  handler_data_ok = 0;
  memset(reports, 0, sizeof(reports));
  unsetenv("CORO_DEBUG");
  coro_set_slow_step_handler(record, &handler_tag);
  return coro_test_setup(state);
}

static int teardown(void **state) {
  coro_set_slow_step_handler(NULL, NULL);
  unsetenv("CORO_DEBUG");
  return coro_test_teardown(state);
}

/* Hold the loop (no suspension) for ms milliseconds. */
static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void busy(int64_t ms) {
  int64_t t0 = now_ns();
  while (now_ns() - t0 < ms * 1000000) {
  }
}

/* Debug mode's watchdog samples the running step every 1-5 ms: a duration
 * is never short, and long by a sample period or so. */
static double slack_s(void) { return 0.006; }

static int run_cfg(int debug, int64_t slow_ms, coro_fn fn, void *arg) {
  coro_config cfg;
  memset(&cfg, 0, sizeof(cfg));
  cfg.debug = debug;
  cfg.slow_step_ms = slow_ms;
  return coro_run_config(&cfg, fn, arg, NULL);
}

/* ---- tasks used below --------------------------------------------------------- */

typedef struct {
  const char *name; /* NULL: default name */
  int64_t busy_ms;
  coro_future *self; /* filled in by the task */
} job;

static void *busy_task(void *arg) {
  job *j = arg;
  j->self = coro_current();
  busy(j->busy_ms);
  return NULL;
}

/* Spawn every job of the set as a task and gather them. */
typedef struct {
  job *jobs;
  int n;
  int debug_seen; /* coro_loop_debug(coro_loop_current()) */
} jobset;

static void *spawn_all_main(void *arg) {
  jobset *js = arg;
  js->debug_seen = coro_loop_debug(coro_loop_current());
  coro_future *fs[8];
  CHECK_LE(js->n, 8);
  for (int i = 0; i < js->n; i++) {
    coro_task_opts o;
    memset(&o, 0, sizeof(o));
    o.name = js->jobs[i].name;
    CHECK_EQ(coro_spawn_opts(&fs[i], busy_task, &js->jobs[i], &o), 0);
  }
  CHECK_EQ(coro_gather(fs, (size_t)js->n, NULL, NULL), 0);
  for (int i = 0; i < js->n; i++) coro_future_release(fs[i]);
  return NULL;
}

static int find_report(const char *name) {
  for (int i = 0; i < nreports && i < MAX_REPORTS; i++)
    if (strcmp(reports[i].name, name) == 0) return i;
  return -1;
}

/* ---- the default threshold --------------------------------------------------- */

/* Debug on, slow_step_ms 0 (= 100): a 150 ms step is reported with its
 * name and duration, a 5 ms step is not. */
static void test_default_threshold(void **state) {
  (void)state;
  SKIP_UNDER_VALGRIND();
  job jobs[] = {{"slowpoke", 150, NULL}, {"quick", 5, NULL}};
  jobset js = {jobs, 2, -1};
  assert_coro_ok(run_cfg(1, 0, spawn_all_main, &js));
  assert_checks_passed();
  assert_int_equal(js.debug_seen, 1);
  assert_int_equal(nreports, 1);
  assert_string_equal(reports[0].name, "slowpoke");
  assert_true(reports[0].seconds >= 0.150 - slack_s());
  assert_true(reports[0].seconds < 30.0);
  assert_true(handler_data_ok);
}

/* 100 ms is the threshold ("100 ms or longer"): a step of exactly 100 ms
 * is reported, and a step well below it (30 ms) is not. */
static void test_default_is_100ms(void **state) {
  (void)state;
  SKIP_UNDER_VALGRIND();
  int64_t over = 100;
  job jobs[] = {{"at-limit", over, NULL}, {"below", 30, NULL}};
  jobset js = {jobs, 2, -1};
  assert_coro_ok(run_cfg(1, 0, spawn_all_main, &js));
  assert_checks_passed();
  assert_int_equal(nreports, 1);
  assert_string_equal(reports[0].name, "at-limit");
  assert_true(reports[0].seconds >= 0.100);
  assert_true(reports[0].seconds >= (double)over / 1000 - slack_s());
}

/* ---- slow_step_ms ----------------------------------------------------------- */

static void test_configured_threshold(void **state) {
  (void)state;
  SKIP_UNDER_VALGRIND();
  job jobs[] = {{"forty", 40, NULL}, {"one", 1, NULL}, {"sixty", 60, NULL}};
  jobset js = {jobs, 3, -1};
  assert_coro_ok(run_cfg(1, 20, spawn_all_main, &js));
  assert_checks_passed();
  assert_int_equal(nreports, 2);
  int a = find_report("forty"), b = find_report("sixty");
  assert_true(a >= 0);
  assert_true(b >= 0);
  assert_true(reports[a].seconds >= 0.040 - slack_s());
  assert_true(reports[b].seconds >= 0.060 - slack_s());
  assert_int_equal(find_report("one"), -1);
}

/* A high threshold hides a step the default would report. */
static void test_high_threshold_hides(void **state) {
  (void)state;
  job jobs[] = {{"medium", 150, NULL}};
  jobset js = {jobs, 1, -1};
  assert_coro_ok(run_cfg(1, 5000, spawn_all_main, &js));
  assert_checks_passed();
  assert_int_equal(nreports, 0);
}

/* A threshold so large that it would overflow when converted to
 * nanoseconds means "never", not "always". */
static void test_huge_threshold(void **state) {
  (void)state;
  job jobs[] = {{"x", 2, NULL}};
  jobset js = {jobs, 1, -1};
  assert_coro_ok(run_cfg(1, INT64_MAX, spawn_all_main, &js));
  assert_checks_passed();
  assert_int_equal(nreports, 0);
}

static void test_negative_threshold_einval(void **state) {
  (void)state;
  job jobs[] = {{"x", 200, NULL}};
  jobset js = {jobs, 1, -1};
  assert_coro_err(run_cfg(1, -1, spawn_all_main, &js), CORO_EINVAL);
  assert_int_equal(nreports, 0);
  assert_null(jobs[0].self); /* nothing ran */
}

/* ---- off ------------------------------------------------------------------- */

static void test_nothing_when_off(void **state) {
  (void)state;
  job jobs[] = {{"slowpoke", 150, NULL}};
  jobset js = {jobs, 1, -1};
  assert_coro_ok(run_cfg(0, 0, spawn_all_main, &js));
  assert_checks_passed();
  assert_int_equal(js.debug_seen, 0);
  assert_int_equal(nreports, 0);
  /* coro_run (no config) is off too */
  js.debug_seen = -1;
  assert_coro_ok(coro_run(spawn_all_main, &js, NULL));
  assert_checks_passed();
  assert_int_equal(js.debug_seen, 0);
  assert_int_equal(nreports, 0);
  /* a configured threshold alone does not switch debug mode on */
  assert_coro_ok(run_cfg(0, 10, spawn_all_main, &js));
  assert_checks_passed();
  assert_int_equal(nreports, 0);
}

/* ---- the environment ------------------------------------------------------- */

static void test_env_turns_on(void **state) {
  (void)state;
  SKIP_UNDER_VALGRIND();
  job jobs[] = {{"from-env", 150, NULL}};
  jobset js = {jobs, 1, -1};
  setenv("CORO_DEBUG", "1", 1);
  assert_coro_ok(coro_run(spawn_all_main, &js, NULL));
  assert_checks_passed();
  assert_int_equal(js.debug_seen, 1);
  assert_int_equal(nreports, 1);
  assert_string_equal(reports[0].name, "from-env");
  /* with the environment on, slow_step_ms still applies */
  nreports = 0;
  assert_coro_ok(run_cfg(0, 5000, spawn_all_main, &js));
  assert_checks_passed();
  assert_int_equal(js.debug_seen, 1);
  assert_int_equal(nreports, 0);
}

static void test_env_other_values_off(void **state) {
  (void)state;
  job jobs[] = {{"x", 150, NULL}};
  jobset js = {jobs, 1, -1};
  static const char *vals[] = {"0", "", "yes"};
  for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
    setenv("CORO_DEBUG", vals[i], 1);
    js.debug_seen = -1;
    assert_coro_ok(coro_run(spawn_all_main, &js, NULL));
    assert_checks_passed();
    assert_int_equal(js.debug_seen, 0);
  }
  assert_int_equal(nreports, 0);
}

/* ---- the handler's arguments ------------------------------------------------ */

/* f is the slow task itself, the default name is "Task-N", the handler
 * runs outside any task. */
static void test_handler_args_default_name(void **state) {
  (void)state;
  SKIP_UNDER_VALGRIND();
  job jobs[] = {{NULL, 120, NULL}};
  jobset js = {jobs, 1, -1};
  assert_coro_ok(run_cfg(1, 0, spawn_all_main, &js));
  assert_checks_passed();
  assert_int_equal(nreports, 1);
  assert_ptr_equal(reports[0].f, jobs[0].self);
  assert_null(reports[0].current);
  assert_int_equal(reports[0].sleep_rc, CORO_EPERM); /* may not suspend */
  assert_true(strncmp(reports[0].name, "Task-", 5) == 0);
  assert_true(strlen(reports[0].name) > 5);
}

/* The main task is reported under its default name too. */
static void *slow_main(void *arg) {
  (void)arg;
  busy(120);
  return NULL;
}

static void test_main_task_reported(void **state) {
  (void)state;
  SKIP_UNDER_VALGRIND();
  assert_coro_ok(run_cfg(1, 0, slow_main, NULL));
  assert_int_equal(nreports, 1);
  assert_true(strncmp(reports[0].name, "Task-", 5) == 0);
}

/* ---- steps, not tasks --------------------------------------------------------- */

/* Two 250 ms steps separated by a yield are two steps under a 400 ms
 * threshold: nothing is reported although the task held the loop 500 ms
 * (the margin keeps a descheduled step on a loaded machine under the
 * threshold). A long sleep is not a step either. */
static void *two_steps_main(void *arg) {
  (void)arg;
  busy(250);
  CHECK_EQ(coro_yield(), 0);
  busy(250);
  CHECK_EQ(coro_sleep(500), 0);
  busy(2);
  return NULL;
}

static void test_each_step_measured(void **state) {
  (void)state;
  assert_coro_ok(run_cfg(1, 400, two_steps_main, NULL));
  assert_checks_passed();
  assert_int_equal(nreports, 0);
}

/* A task with several slow steps is reported once per step. */
static void *three_slow_steps_main(void *arg) {
  (void)arg;
  for (int i = 0; i < 3; i++) {
    busy(30);
    CHECK_EQ(coro_yield(), 0);
  }
  return NULL;
}

static void test_report_per_step(void **state) {
  (void)state;
  SKIP_UNDER_VALGRIND();
  assert_coro_ok(run_cfg(1, 20, three_slow_steps_main, NULL));
  assert_checks_passed();
  assert_int_equal(nreports, 3);
  for (int i = 0; i < 3; i++) {
    assert_string_equal(reports[i].name, reports[0].name);
    assert_true(reports[i].seconds >= 0.030 - slack_s());
  }
}

/* A task cancelled in the middle of its work: the step that ends with the
 * task's end (here by cancellation at its next suspension) still counts. */
static void *victim(void *arg) {
  (void)arg;
  int r = coro_sleep(CORO_FOREVER);
  busy(60); /* cleanup after the cancellation, one slow step */
  return coro_fail(r);
}

static void *cancel_main(void *arg) {
  (void)arg;
  coro_task_opts o;
  memset(&o, 0, sizeof(o));
  o.name = "victim";
  coro_future *f;
  CHECK_EQ(coro_spawn_opts(&f, victim, NULL, &o), 0);
  CHECK_EQ(coro_sleep(5), 0);
  CHECK_EQ(coro_cancel(f), 0);
  CHECK_ERR(coro_await(f, NULL), CORO_ECANCELED);
  coro_future_release(f);
  return NULL;
}

static void test_cancelled_task_step(void **state) {
  (void)state;
  SKIP_UNDER_VALGRIND();
  assert_coro_ok(run_cfg(1, 40, cancel_main, NULL));
  assert_checks_passed();
  assert_int_equal(nreports, 1);
  assert_string_equal(reports[0].name, "victim");
}

/* ---- coro_loop_debug ----------------------------------------------------------- */

static void test_loop_debug_null(void **state) {
  (void)state;
  assert_coro_err(coro_loop_debug(NULL), CORO_EINVAL);
  assert_null(coro_loop_current());
}

/* ---- the default report on stderr --------------------------------------------- */

static void default_report_child(void *arg) {
  (void)arg;
  coro_set_slow_step_handler(NULL, NULL); /* back to the default */
  job jobs[] = {{"stderr-task", 130, NULL}, {"fast", 1, NULL}};
  jobset js = {jobs, 2, -1};
  int r = run_cfg(1, 0, spawn_all_main, &js);
  _exit(r == 0 ? 0 : 3);
}

static void test_default_report_on_stderr(void **state) {
  (void)state;
  SKIP_UNDER_VALGRIND();
  char out[4096];
  int st = coro_test_in_child_stderr(default_report_child, NULL, 20000, out,
                                     sizeof(out));
  assert_true(st != -1);
  assert_true(WIFEXITED(st));
  assert_int_equal(WEXITSTATUS(st), 0);
  const char *p = strstr(out, "libcoro: Executing <task stderr-task> took ");
  assert_non_null(p);
  double secs = 0;
  assert_int_equal(
      sscanf(p, "libcoro: Executing <task stderr-task> took %lf seconds", &secs),
      1);
  assert_true(secs >= 0.130 - slack_s());
  assert_null(strstr(out, "<task fast>"));
  /* one line, ending in " seconds\n" */
  const char *nl = strchr(p, '\n');
  assert_non_null(nl);
  assert_true(nl - p > 8);
  assert_memory_equal(nl - 8, " seconds", 8);
  /* the handler in the parent saw nothing: the child had its own */
  assert_int_equal(nreports, 0);
}

/* Nothing on stderr with debug mode off. */
static void silent_child(void *arg) {
  (void)arg;
  coro_set_slow_step_handler(NULL, NULL);
  job jobs[] = {{"quiet", 130, NULL}};
  jobset js = {jobs, 1, -1};
  int r = run_cfg(0, 0, spawn_all_main, &js);
  _exit(r == 0 ? 0 : 3);
}

static void test_off_prints_nothing(void **state) {
  (void)state;
  char out[4096];
  int st = coro_test_in_child_stderr(silent_child, NULL, 20000, out, sizeof(out));
  assert_true(st != -1);
  assert_true(WIFEXITED(st));
  assert_int_equal(WEXITSTATUS(st), 0);
  assert_null(strstr(out, "libcoro: Executing"));
}

/* CORO_DEBUG=1 in the environment of a program that never asks for debug
 * mode (the asyncio PYTHONASYNCIODEBUG=1 experience). */
static void env_child(void *arg) {
  (void)arg;
  coro_set_slow_step_handler(NULL, NULL);
  setenv("CORO_DEBUG", "1", 1);
  job jobs[] = {{"env-task", 130, NULL}};
  jobset js = {jobs, 1, -1};
  int r = coro_run(spawn_all_main, &js, NULL);
  _exit(r == 0 ? 0 : 3);
}

static void test_env_report_on_stderr(void **state) {
  (void)state;
  SKIP_UNDER_VALGRIND();
  char out[4096];
  int st = coro_test_in_child_stderr(env_child, NULL, 20000, out, sizeof(out));
  assert_true(st != -1);
  assert_true(WIFEXITED(st));
  assert_int_equal(WEXITSTATUS(st), 0);
  assert_non_null(strstr(out, "libcoro: Executing <task env-task> took "));
}

/* ---- the watchdog: a step reported while it still runs ------------------------ */

/* Not static, so that the backtrace can name it (tests link with their
 * symbols exported). */
void watchdog_blocking_function(int64_t ms) __attribute__((noinline));
void watchdog_blocking_function(int64_t ms) {
  struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
  /* the watchdog's signal interrupts the sleep: go on sleeping */
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

static void *blocker_task(void *arg) {
  (void)arg;
  watchdog_blocking_function(300);
  return NULL;
}

static void *spinner_task(void *arg) {
  (void)arg;
  busy(300);
  return NULL;
}

/* 300 ms in steps of a millisecond: never held for long. */
static void *yielder_task(void *arg) {
  (void)arg;
  int64_t t0 = now_ns();
  while (now_ns() - t0 < 300 * 1000000LL) {
    busy(1);
    if (coro_yield() != 0) return coro_fail(CORO_ECANCELED);
  }
  return NULL;
}

static void *named_main(void *arg) {
  coro_task_opts o;
  memset(&o, 0, sizeof(o));
  o.name = "watched";
  coro_future *f;
  CHECK_EQ(coro_spawn_opts(&f, (coro_fn)arg, NULL, &o), 0);
  CHECK_EQ(coro_await(f, NULL), 0);
  coro_future_release(f);
  return NULL;
}

static void watchdog_child(void *arg) {
  coro_set_slow_step_handler(NULL, NULL);
  int r = run_cfg(1, 0, named_main, arg);
  _exit(r == 0 && coro_test_check_count() == 0 ? 0 : 3);
}

/* Run fn as task "watched" with debug mode on in a child; its stderr. */
static void watch(coro_fn fn, char *out, size_t cap) {
  int st = coro_test_in_child_stderr(watchdog_child, (void *)fn, 20000, out, cap);
  if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
    fprintf(stderr, "the child's stderr:\n%s\n", out);
  assert_true(st != -1);
  assert_true(WIFEXITED(st));
  assert_int_equal(WEXITSTATUS(st), 0);
}

/* The held-for figure of the first watchdog line, or -1. */
static double held_s(const char *out, const char **kind) {
  const char *p = strstr(out, "libcoro: watchdog: task <watched> has held the loop for ");
  double secs = -1;
  if (p == NULL ||
      sscanf(p, "libcoro: watchdog: task <watched> has held the loop for %lf", &secs) != 1)
    return -1;
  const char *nl = strchr(p, '\n');
  *kind = NULL;
  const char *b = strstr(p, "blocked"), *u = strstr(p, "busy");
  if (b != NULL && (nl == NULL || b < nl)) *kind = "blocked";
  if (u != NULL && (nl == NULL || u < nl)) *kind = "busy";
  return secs;
}

/* A 300 ms blocking sleep: reported while it runs (at 100 ms and at 200
 * ms), as blocked (little CPU), with a backtrace through the function;
 * then the usual report once the step has ended. */
static void test_watchdog_blocked(void **state) {
  (void)state;
  SKIP_UNDER_VALGRIND();
  char out[16384];
  watch(blocker_task, out, sizeof(out));
  const char *kind = NULL;
  double secs = held_s(out, &kind);
  assert_true(secs >= 0.100);
  assert_true(secs < 0.300);
  assert_non_null(kind);
  assert_string_equal(kind, "blocked");
  assert_non_null(strstr(out, "libcoro: watchdog: its stack:"));
  assert_non_null(strstr(out, "watchdog_blocking_function"));
  /* a second report at twice the threshold */
  const char *first = strstr(out, "libcoro: watchdog: task <watched>");
  assert_non_null(strstr(first + 1, "libcoro: watchdog: task <watched>"));
  const char *p = strstr(out, "libcoro: Executing <task watched> took ");
  assert_non_null(p);
  double took = 0;
  assert_int_equal(sscanf(p, "libcoro: Executing <task watched> took %lf", &took), 1);
  assert_true(took >= 0.300);
}

/* A 300 ms busy loop: the same, but busy (CPU about the whole time). */
static void test_watchdog_busy(void **state) {
  (void)state;
  SKIP_UNDER_VALGRIND();
  char out[16384];
  watch(spinner_task, out, sizeof(out));
  const char *kind = NULL;
  double secs = held_s(out, &kind);
  assert_true(secs >= 0.100);
  assert_non_null(kind);
  assert_string_equal(kind, "busy");
  assert_non_null(strstr(out, "libcoro: Executing <task watched> took "));
}

/* Without its signal (CORO_NO_SIGNAL_HANDLERS=1, or the program handles
 * SIGURG itself) the watchdog still reports the running step, from its own
 * thread, without the name and the frames; the program's handler is left
 * alone. */
static volatile sig_atomic_t app_urgs;
static void app_urg(int sig) {
  (void)sig;
  app_urgs++;
}

static void watchdog_nosig_child(void *arg) {
  if (arg != NULL) {
    setenv("CORO_NO_SIGNAL_HANDLERS", "1", 1);
  } else {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = app_urg;
    sigaction(SIGURG, &sa, NULL);
  }
  coro_set_slow_step_handler(NULL, NULL);
  int r = run_cfg(1, 0, named_main, (void *)spinner_task);
  _exit(r == 0 && coro_test_check_count() == 0 && app_urgs == 0 ? 0 : 3);
}

static void check_watchdog_nosig(void *how) {
  char out[16384];
  int st = coro_test_in_child_stderr(watchdog_nosig_child, how, 20000, out, sizeof(out));
  if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
    fprintf(stderr, "the child's stderr:\n%s\n", out);
  assert_true(st != -1);
  assert_true(WIFEXITED(st));
  assert_int_equal(WEXITSTATUS(st), 0); /* and no SIGURG reached the program */
  assert_non_null(strstr(out, "libcoro: watchdog: a task step has held the loop for 0.1"));
  assert_non_null(strstr(out, "s: busy"));
  assert_null(strstr(out, "task <watched>"));
  assert_null(strstr(out, "its stack:"));
  assert_non_null(strstr(out, "libcoro: Executing <task watched> took "));
}

static void test_watchdog_program_owns_sigurg(void **state) {
  (void)state;
  SKIP_UNDER_VALGRIND();
  check_watchdog_nosig(NULL);
}

static void test_watchdog_no_signal_handlers(void **state) {
  (void)state;
  SKIP_UNDER_VALGRIND();
  check_watchdog_nosig((void *)1);
}

/* A task that yields every millisecond for 300 ms: nothing to report. */
static void test_watchdog_quiet_when_yielding(void **state) {
  (void)state;
  char out[16384];
  watch(yielder_task, out, sizeof(out));
  assert_null(strstr(out, "watchdog"));
  assert_null(strstr(out, "Executing"));
}

/* ---- coro_loop_stats --------------------------------------------------------- */

static void *napper(void *arg) {
  (void)arg;
  return coro_sleep(50) == 0 ? NULL : coro_fail(CORO_ECANCELED);
}

typedef struct {
  coro_loop *loop;
  int from_job; /* coro_loop_stats(loop, ...) from the pool thread */
  int release;  /* set by the task: the job may end */
} stats_job;

static void *stats_job_fn(void *arg) {
  stats_job *j = arg;
  coro_stats st;
  j->from_job = coro_loop_stats(j->loop, &st);
  while (!__atomic_load_n(&j->release, __ATOMIC_ACQUIRE)) {
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }
  return NULL;
}

static void *stats_main(void *arg) {
  (void)arg;
  coro_stats a, b;
  CHECK_EQ(coro_loop_stats(NULL, &a), 0);
  CHECK_EQ(a.tasks, 1); /* this one */
  CHECK_GE(a.tasks_spawned, 1);
  CHECK_EQ(coro_loop_stats(NULL, NULL), CORO_EINVAL);

  /* five sleepers: live tasks, spawned, ready, then timers */
  coro_future *f[5];
  for (int i = 0; i < 5; i++) CHECK_EQ(coro_spawn(&f[i], napper, NULL), 0);
  CHECK_EQ(coro_loop_stats(coro_loop_current(), &b), 0);
  CHECK_EQ(b.tasks, a.tasks + 5);
  CHECK_EQ(b.tasks_spawned, a.tasks_spawned + 5);
  CHECK_GE(b.ready, 5);
  CHECK_EQ(coro_yield(), 0);
  CHECK_EQ(coro_loop_stats(NULL, &b), 0);
  CHECK_GE(b.timers, 5);
  CHECK_GT(b.steps, a.steps);
  CHECK_GT(b.iterations, a.iterations);
  for (int i = 0; i < 5; i++) {
    CHECK_EQ(coro_await(f[i], NULL), 0);
    coro_future_release(f[i]);
  }
  CHECK_EQ(coro_loop_stats(NULL, &b), 0);
  CHECK_EQ(b.tasks, a.tasks);
  CHECK_EQ(b.timers, 0);

  /* an open server, then closed */
  coro_server *srv;
  CHECK_EQ(coro_tcp_listen(&srv, "127.0.0.1", "0", NULL), 0);
  CHECK_EQ(coro_loop_stats(NULL, &b), 0);
  CHECK_EQ(b.io_open, a.io_open + 1);
  coro_server_close(srv);
  CHECK_EQ(coro_loop_stats(NULL, &b), 0);
  CHECK_EQ(b.io_open, a.io_open);

  /* a job running on the default pool, which also tries the loop's stats
   * from its own thread */
  CHECK_EQ(a.pool_running, 0);
  stats_job j = {.loop = coro_loop_current()};
  coro_future *jf;
  CHECK_EQ(coro_run_in_thread(&jf, NULL, stats_job_fn, &j), 0);
  int seen = 0;
  for (int i = 0; i < 5000 && !seen; i++) {
    CHECK_EQ(coro_loop_stats(NULL, &b), 0);
    seen = b.pool_running == 1;
    if (!seen) CHECK_EQ(coro_sleep(1), 0);
  }
  CHECK(seen);
  CHECK_EQ(b.pool_queued, 0);
  CHECK_GE(b.waiting_threads, 1);
  __atomic_store_n(&j.release, 1, __ATOMIC_RELEASE);
  CHECK_EQ(coro_await(jf, NULL), 0);
  coro_future_release(jf);
  CHECK_EQ(j.from_job, CORO_EPERM);
  CHECK_EQ(coro_loop_stats(NULL, &b), 0);
  CHECK_EQ(b.pool_running, 0);
  CHECK_EQ(b.slow_steps, 0);
  return NULL;
}

/* The figures move as tasks, timers, servers and jobs come and go; misuse
 * gives errors. */
static void test_stats_move(void **state) {
  (void)state;
  coro_stats st;
  assert_int_equal(coro_loop_stats(NULL, &st), CORO_EINVAL); /* no loop */
  assert_coro_ok(coro_run(stats_main, NULL, NULL));
  assert_checks_passed();
}

static void *slow_then_stats_main(void *arg) {
  (void)arg;
  busy(30);
  CHECK_EQ(coro_yield(), 0);
  coro_stats st;
  CHECK_EQ(coro_loop_stats(NULL, &st), 0);
  CHECK_EQ(st.slow_steps, 1);
  return NULL;
}

/* Debug mode's slow steps are counted. */
static void test_stats_slow_steps(void **state) {
  (void)state;
  SKIP_UNDER_VALGRIND();
  assert_coro_ok(run_cfg(1, 20, slow_then_stats_main, NULL));
  assert_checks_passed();
  assert_int_equal(nreports, 1);
}

/* ---- task dumps ---------------------------------------------------------------- */

#define MAX_INFO 16
typedef struct {
  int n;
  struct {
    uint64_t id, awaited, parent;
    char name[32], state[16], on[32];
    int64_t sleep_left;
    size_t stack_used, stack_size;
    int nframes;
    int has_fn; /* a frame names the task's function */
  } t[MAX_INFO];
  const char *fn_names[MAX_INFO]; /* by task name: its function */
} dump_rec;

static void record_info(const coro_task_info *ti, void *data) {
  dump_rec *d = data;
  if (d->n >= MAX_INFO) return;
  int i = d->n++;
  d->t[i].id = ti->id;
  d->t[i].awaited = ti->awaited_id;
  d->t[i].parent = ti->parent_id;
  snprintf(d->t[i].name, sizeof d->t[i].name, "%s", ti->name);
  snprintf(d->t[i].state, sizeof d->t[i].state, "%s", ti->state);
  snprintf(d->t[i].on, sizeof d->t[i].on, "%s", ti->waiting_on ? ti->waiting_on : "-");
  d->t[i].sleep_left = ti->sleep_left_ms;
  d->t[i].stack_used = ti->stack_used;
  d->t[i].stack_size = ti->stack_size;
  d->t[i].nframes = ti->nframes;
  const char *want = d->fn_names[i];
  for (int k = 0; want != NULL && k < ti->nframes; k++) {
    Dl_info di;
    if (dladdr(ti->frames[k], &di) != 0 && di.dli_sname != NULL &&
        strcmp(di.dli_sname, want) == 0)
      d->t[i].has_fn = 1;
  }
}

typedef struct {
  coro_lock *lock;
  coro_queue *queue;
  coro_event *event;
  coro_future *sleeper;
  int got_lock, got_item, saw_event;
} dump_world;

void *dump_sleeper(void *arg) __attribute__((noinline));
void *dump_sleeper(void *arg) {
  (void)arg;
  return coro_sleep(2000) == 0 ? NULL : coro_fail(CORO_ECANCELED);
}
void *dump_locker(void *arg);
void *dump_locker(void *arg) {
  dump_world *w = arg;
  if (coro_lock_acquire(w->lock) != 0) return coro_fail(CORO_ECANCELED);
  w->got_lock = 1;
  coro_lock_release(w->lock);
  return NULL;
}
void *dump_getter(void *arg);
void *dump_getter(void *arg) {
  dump_world *w = arg;
  void *item;
  if (coro_queue_get(w->queue, &item) != 0) return coro_fail(CORO_ECANCELED);
  w->got_item = item == (void *)w;
  return NULL;
}
void *dump_awaiter(void *arg);
void *dump_awaiter(void *arg) {
  dump_world *w = arg;
  coro_await(w->sleeper, NULL); /* cancelled with it */
  return NULL;
}
void *dump_eventer(void *arg);
void *dump_eventer(void *arg) {
  dump_world *w = arg;
  if (coro_event_wait(w->event) != 0) return coro_fail(CORO_ECANCELED);
  w->saw_event = 1;
  return NULL;
}
void *dump_yielder(void *arg);
void *dump_yielder(void *arg) {
  (void)arg;
  return coro_yield() == 0 ? NULL : coro_fail(CORO_ECANCELED);
}

static coro_future *spawn_named(coro_fn fn, void *arg, const char *name) {
  coro_task_opts o;
  memset(&o, 0, sizeof(o));
  o.name = name;
  coro_future *f = NULL;
  CHECK_EQ(coro_spawn_opts(&f, fn, arg, &o), 0);
  return f;
}

static void reentrant_cb(const coro_task_info *ti, void *data) {
  (void)ti;
  int *r = data;
  *r = coro_dump_tasks_cb(record_info, NULL);
}

void *dump_main(void *arg);
void *dump_main(void *arg) {
  (void)arg;
  dump_world w;
  memset(&w, 0, sizeof(w));
  CHECK_EQ(coro_lock_new(&w.lock), 0);
  CHECK_EQ(coro_queue_new(&w.queue, CORO_QUEUE_FIFO, 0, NULL), 0);
  CHECK_EQ(coro_event_new(&w.event), 0);
  CHECK_EQ(coro_lock_acquire(w.lock), 0);
  coro_future *f[8] = {NULL};
  int n = 0;
  w.sleeper = f[n++] = spawn_named(dump_sleeper, &w, "sleeper");
  f[n++] = spawn_named(dump_locker, &w, "locker");
  f[n++] = spawn_named(dump_getter, &w, "getter");
  f[n++] = spawn_named(dump_awaiter, &w, "awaiter");
  f[n++] = spawn_named(dump_eventer, &w, "eventer");
  CHECK_EQ(coro_sleep(5), 0); /* all of them are waiting now */
  f[n++] = spawn_named(dump_yielder, &w, "yielder");
  CHECK_EQ(coro_yield(), 0); /* the yielder ran once and is ready again */
  f[n++] = spawn_named(dump_sleeper, &w, "fresh");

  dump_rec d;
  memset(&d, 0, sizeof(d));
  /* [0] is coro_run's main task, which awaits dump-main */
  const char *fns[] = {"dump_main_named", "dump_main", "dump_sleeper", "dump_locker", "dump_getter",
                       "dump_awaiter", "dump_eventer", "dump_yielder", NULL};
  for (int i = 0; i < 9; i++) d.fn_names[i] = fns[i];
  CHECK_EQ(coro_dump_tasks_cb(record_info, &d), 9);
  CHECK_EQ(d.n, 9);
  CHECK_EQ(strcmp(d.t[0].state, "waiting"), 0);
  CHECK_EQ(strcmp(d.t[0].on, "await"), 0);
  CHECK_EQ(d.t[0].has_fn, 1);
  /* oldest first: this task, then in spawn order */
  const char *names[] = {"dump-main", "sleeper", "locker", "getter", "awaiter",
                         "eventer", "yielder", "fresh"};
  const char *states[] = {"running", "waiting", "waiting", "waiting", "waiting",
                          "waiting", "ready", "created"};
  const char *ons[] = {"-", "sleep", "lock", "queue get", "await", "event", "yield", "-"};
  for (int k = 0; k < 8; k++) {
    int i = k + 1; /* d.t[i] is task k of the lists above */
    CHECK_EQ(strcmp(d.t[i].name, names[k]), 0);
    CHECK_EQ(strcmp(d.t[i].state, states[k]), 0);
    CHECK_EQ(strcmp(d.t[i].on, ons[k]), 0);
    CHECK_EQ(d.t[i].parent, k == 0 ? d.t[0].id : d.t[1].id);
    if (k < 7) {
      CHECK_GT(d.t[i].nframes, 1);
      CHECK_EQ(d.t[i].has_fn, 1);
      CHECK_GT(d.t[i].stack_used, 0);
      CHECK_GE(d.t[i].stack_size, d.t[i].stack_used);
    } else {
      CHECK_EQ(d.t[i].nframes, 0);
      CHECK_EQ(d.t[i].stack_used, 0);
    }
  }
  CHECK_EQ(d.t[0].awaited, d.t[1].id);
  CHECK_EQ(d.t[5].awaited, d.t[2].id);
  CHECK_GT(d.t[2].sleep_left, 1000);
  CHECK_LE(d.t[2].sleep_left, 2000);
  CHECK_EQ(d.t[3].sleep_left, -1);

  /* the text form, line by line */
  char *text = NULL;
  size_t len = 0;
  FILE *mem = open_memstream(&text, &len);
  CHECK(mem != NULL);
  CHECK_EQ(coro_dump_tasks(mem), 9);
  fclose(mem);
  char want[128];
  snprintf(want, sizeof want, "libcoro: 9 tasks on loop %p\n", (void *)coro_loop_current());
  CHECK_EQ(strncmp(text, want, strlen(want)), 0);
  const char *line_starts[] = {
      "task %llu <Task-1> waiting on await of task %llu, age ",
      "task %llu <dump-main> running, age ", "task %llu <sleeper> waiting on sleep (",
      "task %llu <locker> waiting on lock, age ", "task %llu <getter> waiting on queue get, age ",
      "task %llu <awaiter> waiting on await of task %llu, age ",
      "task %llu <eventer> waiting on event, age ", "task %llu <yielder> ready after yield, age ",
      "task %llu <fresh> created, age "};
  const char *p = text;
  for (int i = 0; i < 9; i++) {
    char exp[128];
    snprintf(exp, sizeof exp, line_starts[i], (unsigned long long)d.t[i].id,
             (unsigned long long)d.t[i == 0 ? 1 : 2].id);
    const char *hit = strstr(p, exp);
    CHECK(hit != NULL);
    if (hit == NULL) break;
    CHECK(hit == p || hit[-1] == '\n');
    p = hit + strlen(exp);
    if (i < 8) CHECK(strncmp(strchr(p, '\n'), "\n    #0 ", 8) == 0); /* frames follow */
  }
  CHECK(strstr(text, "dump_locker+0x") != NULL);
  free(text);

  /* misuse */
  int inner = 0;
  CHECK_EQ(coro_dump_tasks_cb(NULL, NULL), CORO_EINVAL);
  CHECK_EQ(coro_dump_tasks_cb(reentrant_cb, &inner), 9);
  CHECK_EQ(inner, CORO_EPERM);

  /* the probed tasks carry on as if nothing happened */
  coro_lock_release(w.lock);
  CHECK_EQ(coro_queue_put(w.queue, &w), 0);
  CHECK_EQ(coro_event_set(w.event), 0);
  for (int i = 1; i < 7; i++)
    if (i != 3) CHECK_EQ(coro_await(f[i], NULL), 0);
  CHECK(w.got_lock && w.got_item && w.saw_event);
  coro_cancel(f[0]);
  coro_cancel(f[7]);
  for (int i = 0; i < 8; i++) {
    coro_await(f[i], NULL);
    coro_future_release(f[i]);
  }
  coro_queue_free(w.queue);
  coro_event_free(w.event);
  coro_lock_free(w.lock);
  return NULL;
}

void *dump_main_named(void *arg);
void *dump_main_named(void *arg) {
  coro_future *f = spawn_named(dump_main, arg, "dump-main");
  CHECK_EQ(coro_await(f, NULL), 0);
  coro_future_release(f);
  return NULL;
}

/* Tasks in each state, matched field by field and line by line. */
static void test_dump_states(void **state) {
  (void)state;
  assert_int_equal(coro_dump_tasks_cb(record_info, NULL), CORO_EPERM); /* no loop */
  assert_int_equal(coro_dump_tasks(NULL), CORO_EPERM);
  assert_coro_ok(coro_run(dump_main_named, NULL, NULL));
  assert_checks_passed();
}

static void *signal_main(void *arg) {
  (void)arg;
  coro_future *f = spawn_named(dump_sleeper, NULL, "dozer");
  CHECK_EQ(coro_sleep(10), 0);
  kill(getpid(), SIGUSR1);
  CHECK_EQ(coro_sleep(500), 0); /* the dump comes meanwhile */
  coro_cancel(f);
  coro_await(f, NULL);
  coro_future_release(f);
  return NULL;
}

static void dump_signal_child(void *arg) {
  coro_config cfg;
  memset(&cfg, 0, sizeof(cfg));
  if (arg == NULL) cfg.dump_signal = SIGUSR1;
  else setenv("CORO_DUMP_SIGNAL", "USR1", 1);
  int r = coro_run_config(&cfg, signal_main, NULL, NULL);
  _exit(r == 0 && coro_test_check_count() == 0 ? 0 : 3);
}

static void check_signal_dump(void *how) {
  char out[16384];
  int st = coro_test_in_child_stderr(dump_signal_child, how, 20000, out, sizeof(out));
  if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
    fprintf(stderr, "the child's stderr:\n%s\n", out);
  assert_true(st != -1);
  assert_true(WIFEXITED(st)); /* SIGUSR1 did not kill it */
  assert_int_equal(WEXITSTATUS(st), 0);
  assert_non_null(strstr(out, "libcoro: 2 tasks on loop "));
  assert_non_null(strstr(out, "<dozer> waiting on sleep ("));
  assert_non_null(strstr(out, "\n    #0 "));
  assert_non_null(strstr(out, " dump_sleeper+0x"));
}

/* coro_config.dump_signal: the signal prints the dump to stderr. */
static void test_dump_signal(void **state) {
  (void)state;
  check_signal_dump(NULL);
}

/* CORO_DUMP_SIGNAL=USR1 does the same for a program that never asked. */
static void test_dump_signal_env(void **state) {
  (void)state;
  check_signal_dump((void *)1);
}

static void *noop_main(void *arg) {
  (void)arg;
  return NULL;
}

/* CORO_DUMP_SIGNAL with a value a dump cannot use: said once on stderr,
 * and the program runs as without it. */
static void bad_env_child(void *arg) {
  (void)arg;
  setenv("CORO_DUMP_SIGNAL", "KILL", 1);
  int r = coro_run(noop_main, NULL, NULL);
  _exit(r == 0 ? 0 : 3);
}

static void test_dump_signal_env_refused(void **state) {
  (void)state;
  char out[4096];
  int st = coro_test_in_child_stderr(bad_env_child, NULL, 20000, out, sizeof(out));
  assert_true(st != -1 && WIFEXITED(st));
  assert_int_equal(WEXITSTATUS(st), 0);
  assert_non_null(strstr(out, "libcoro: CORO_DUMP_SIGNAL=KILL is not a signal it can use"));
}

/* Signals a dump cannot use are refused. */
static void test_dump_signal_refused(void **state) {
  (void)state;
  coro_config cfg;
  memset(&cfg, 0, sizeof(cfg));
  int bad[] = {SIGKILL, SIGSTOP, SIGSEGV, SIGURG, SIGCHLD, -1, 65};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    cfg.dump_signal = bad[i];
    assert_int_equal(coro_run_config(&cfg, noop_main, NULL, NULL), CORO_EINVAL);
  }
  cfg.dump_signal = SIGUSR2;
  assert_coro_ok(coro_run_config(&cfg, noop_main, NULL, NULL));
}

/* ---- gdb ------------------------------------------------------------------------ */

/* gdb runs tests/gdb_target (stopped by its own SIGTRAP with two tasks
 * suspended) with tools/gdb/libcoro.py: the tasks are listed and their
 * backtraces show the functions they are suspended in. */
static void test_gdb_commands(void **state) {
  (void)state;
  if (system("command -v gdb >/dev/null 2>&1") != 0) {
    fprintf(stderr, "skipped: gdb is not installed (apt-get install gdb)\n");
    skip();
  }
  char cmd[2048];
  snprintf(cmd, sizeof cmd,
           "timeout 120 gdb -q -nx -batch -ex run -ex 'source %s' "
           "-ex 'info coro-tasks' -ex 'coro-bt 2' -ex 'coro-bt 3' -ex 'coro-bt 1' "
           "-ex 'coro-bt 99' -ex kill %s 2>&1",
           CORO_GDB_SCRIPT, CORO_GDB_TARGET);
  FILE *p = popen(cmd, "r");
  assert_non_null(p);
  static char out[65536];
  size_t n = fread(out, 1, sizeof out - 1, p);
  out[n] = '\0';
  pclose(p);
  if (strstr(out, "ptrace") != NULL && strstr(out, "Operation not permitted") != NULL) {
    fprintf(stderr, "skipped: gdb may not trace here:\n%s\n", out);
    skip();
  }
  if (strstr(out, "built with -g?") != NULL || strstr(out, "No symbol table") != NULL) {
    fprintf(stderr, "skipped: libcoro was built without debug information\n");
    skip();
  }
  const char *want[] = {
      "1  running                     Task-1",
      "2  waiting   sleep             napper",
      "3  waiting   lock              locker",
      "task 2 <napper> waiting on sleep",
      " in coro_sleep ()",
      " in gdb_target_napper ()",
      "task 3 <locker> waiting on lock",
      " in coro_lock_acquire ()",
      " in gdb_target_locker ()",
      "task 1 <Task-1> is running",
      "coro-bt: no live task 99",
  };
  size_t nwant = sizeof want / sizeof want[0];
  if (strstr(out, "coro-bt: needs the assembly switch on x86-64") != NULL) {
    /* the ucontext switch, or not x86-64: the listing only */
    fprintf(stderr, "coro-bt not available in this build: only the task list checked\n");
    nwant = 3;
  }
  for (size_t i = 0; i < nwant; i++) {
    if (strstr(out, want[i]) == NULL) fprintf(stderr, "gdb said:\n%s\n", out);
    assert_non_null(strstr(out, want[i]));
  }
  if (nwant == 3) return;
  /* the napper's frames come in order: coro_sleep, then its caller */
  const char *a = strstr(out, " in coro_sleep ()");
  const char *b = strstr(out, " in gdb_target_napper ()");
  assert_true(a < b);
}

int main(int argc, char **argv) {
  const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
      T(test_default_threshold),
      T(test_default_is_100ms),
      T(test_configured_threshold),
      T(test_high_threshold_hides),
      T(test_huge_threshold),
      T(test_negative_threshold_einval),
      T(test_nothing_when_off),
      T(test_env_turns_on),
      T(test_env_other_values_off),
      T(test_handler_args_default_name),
      T(test_main_task_reported),
      T(test_each_step_measured),
      T(test_report_per_step),
      T(test_cancelled_task_step),
      T(test_loop_debug_null),
      T(test_default_report_on_stderr),
      T(test_off_prints_nothing),
      T(test_env_report_on_stderr),
      T(test_watchdog_blocked),
      T(test_watchdog_busy),
      T(test_watchdog_quiet_when_yielding),
      T(test_watchdog_program_owns_sigurg),
      T(test_watchdog_no_signal_handlers),
      T(test_stats_move),
      T(test_stats_slow_steps),
      T(test_dump_states),
      T(test_dump_signal),
      T(test_dump_signal_env),
      T(test_dump_signal_refused),
      T(test_dump_signal_env_refused),
      T(test_gdb_commands),
#undef T
  };
  return coro_test_main(argc, argv, tests, NULL, NULL);
}
