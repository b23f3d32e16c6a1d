/* SPDX-License-Identifier: MIT */
/* Signals: deliveries counted while nobody waits and one per raise, two
 * tasks waiting on one watcher (FIFO), two watchers of one signal,
 * timeouts, cancellation, timeout scopes, free while a task waits, a
 * waiting task keeps the loop alive while an idle watcher does not, bad
 * input; and coro_config.sigint_cancels_main in forked children: the
 * first SIGINT cancels main (its cleanup runs, coro_run returns
 * -ECANCELED), a second one kills the process by SIGINT, an ignored
 * SIGINT stays ignored, and SIGINT's disposition is put back. */
#include "helpers.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* raise() delivers to this thread before it returns, so each one is
 * counted (kill() from elsewhere may be merged by the kernel with one
 * still pending). coro_sleep lets the loop read libuv's signal pipe. */
static void raise_n(int sig, int n) {
  for (int i = 0; i < n; i++) CHECK_OK(raise(sig));
}

typedef struct waitarg {
  coro_signal *s;
  int64_t timeout;
  int result;
  int order;
} waitarg;

static int order_counter;

static void *wait_task(void *arg) {
  waitarg *w = arg;
  w->result = coro_signal_wait(w->s, w->timeout);
  w->order = ++order_counter;
  return NULL;
}

/* ---- counting ------------------------------------------------------------ */

static void *count_main(void *arg) {
  (void)arg;
  coro_signal *s = NULL;
  CHECK_OK(coro_signal_new(&s, SIGUSR1));
  CHECK_ERR(coro_signal_wait(s, 0), -ETIMEDOUT); /* nothing yet */
  raise_n(SIGUSR1, 3);
  CHECK_OK(coro_sleep(20)); /* nobody waits: still counted */
  CHECK_EQ(coro_signal_wait(s, CORO_FOREVER), 3);
  CHECK_ERR(coro_signal_wait(s, 0), -ETIMEDOUT); /* consumed */
  /* One at a time, with a waiter already waiting. */
  for (int i = 0; i < 3; i++) {
    waitarg w = {s, CORO_FOREVER, 99, 0};
    coro_future *f = coro_test_spawn(wait_task, &w);
    coro_test_yields(2);
    CHECK_EQ(w.result, 99); /* still waiting: untouched */
    raise_n(SIGUSR1, 1);
    CHECK_OK(coro_test_join(f));
    CHECK_EQ(w.result, 1);
  }
  coro_signal_free(s);
  return NULL;
}

static void test_count(void **state) {
  (void)state;
  assert_run_ok(count_main);
}

static void *two_waiters_main(void *arg) {
  (void)arg;
  coro_signal *s = NULL;
  CHECK_OK(coro_signal_new(&s, SIGUSR2));
  order_counter = 0;
  waitarg a = {s, CORO_FOREVER, 99, 0}, b = {s, CORO_FOREVER, 99, 0};
  coro_future *fa = coro_test_spawn(wait_task, &a);
  coro_future *fb = coro_test_spawn(wait_task, &b);
  coro_test_yields(2);
  raise_n(SIGUSR2, 1);
  CHECK_OK(coro_test_join(fa)); /* the first to wait takes it */
  CHECK_EQ(a.result, 1);
  CHECK_EQ(b.result, 99);       /* the second still waits */
  raise_n(SIGUSR2, 1);
  CHECK_OK(coro_test_join(fb));
  CHECK_EQ(b.result, 1);
  CHECK_EQ(a.order, 1);
  CHECK_EQ(b.order, 2);
  coro_signal_free(s);
  return NULL;
}

static void test_two_waiters(void **state) {
  (void)state;
  assert_run_ok(two_waiters_main);
}

static void *two_watchers_main(void *arg) {
  (void)arg;
  coro_signal *s1 = NULL, *s2 = NULL;
  CHECK_OK(coro_signal_new(&s1, SIGUSR1));
  CHECK_OK(coro_signal_new(&s2, SIGUSR1));
  raise_n(SIGUSR1, 2);
  CHECK_OK(coro_sleep(20));
  CHECK_EQ(coro_signal_wait(s1, 1000), 2); /* each counts every one */
  CHECK_EQ(coro_signal_wait(s2, 1000), 2);
  /* One freed: the other still counts. */
  coro_signal_free(s1);
  raise_n(SIGUSR1, 1);
  CHECK_EQ(coro_signal_wait(s2, 1000), 1);
  coro_signal_free(s2);
  return NULL;
}

static void test_two_watchers(void **state) {
  (void)state;
  assert_run_ok(two_watchers_main);
}

/* ---- timeouts, cancellation, free ------------------------------------------ */

static void *timeout_main(void *arg) {
  (void)arg;
  coro_signal *s = NULL;
  CHECK_OK(coro_signal_new(&s, SIGUSR1));
  int64_t t0 = coro_test_now_ms();
  CHECK_ERR(coro_signal_wait(s, 30), -ETIMEDOUT);
  CHECK_GE(coro_test_now_ms() - t0, 25);
  /* A timeout scope. */
  coro_timeout t;
  CHECK_OK(coro_timeout_enter(&t, 20));
  int r = coro_signal_wait(s, CORO_FOREVER);
  CHECK_ERR(r, -ECANCELED);
  CHECK_ERR(coro_timeout_exit(&t, r), -ETIMEDOUT);
  /* Cancelled: nothing consumed, a later delivery is still counted. */
  waitarg w = {s, CORO_FOREVER, 99, 0};
  coro_future *f = coro_test_spawn(wait_task, &w);
  coro_test_yields(2);
  CHECK_OK(coro_cancel(f));
  CHECK_OK(coro_test_join(f));
  CHECK_ERR(w.result, -ECANCELED);
  raise_n(SIGUSR1, 1);
  CHECK_EQ(coro_signal_wait(s, 1000), 1);
  coro_signal_free(s);
  return NULL;
}

static void test_timeout_cancel(void **state) {
  (void)state;
  assert_run_ok(timeout_main);
}

static void *free_waiting_main(void *arg) {
  (void)arg;
  coro_signal *s = NULL;
  CHECK_OK(coro_signal_new(&s, SIGUSR1));
  waitarg a = {s, CORO_FOREVER, 99, 0}, b = {s, 5000, 99, 0};
  coro_future *fa = coro_test_spawn(wait_task, &a);
  coro_future *fb = coro_test_spawn(wait_task, &b);
  coro_test_yields(2);
  coro_signal_free(s);
  CHECK_OK(coro_test_join(fa));
  CHECK_OK(coro_test_join(fb));
  CHECK_ERR(a.result, -EPIPE);
  CHECK_ERR(b.result, -EPIPE);
  coro_signal_free(NULL);
  return NULL;
}

static void test_free_while_waiting(void **state) {
  (void)state;
  assert_run_ok(free_waiting_main);
}

/* ---- the loop's liveness ------------------------------------------------------ */

static void *kill_later_thread(void *arg) {
  (void)arg;
  usleep(50 * 1000);
  kill(getpid(), SIGUSR1);
  return NULL;
}

static void *alive_main(void *arg) {
  (void)arg;
  coro_signal *s = NULL;
  CHECK_OK(coro_signal_new(&s, SIGUSR1));
  pthread_t th;
  CHECK_OK(pthread_create(&th, NULL, kill_later_thread, NULL));
  /* Nothing else could wake the loop: the waiting task keeps it alive. */
  CHECK_EQ(coro_signal_wait(s, CORO_FOREVER), 1);
  pthread_join(th, NULL);
  coro_signal_free(s);
  return NULL;
}

static void *idle_watcher_main(void *arg) {
  (void)arg;
  coro_signal *s = NULL;
  CHECK_OK(coro_signal_new(&s, SIGUSR1));
  /* Stuck: a watcher nobody waits on does not keep the loop alive. */
  int r = coro_sleep(CORO_FOREVER);
  coro_signal_free(s);
  return r == 0 ? NULL : coro_fail(r);
}

static void *forgotten_main(void *arg) {
  (void)arg;
  coro_signal *s = NULL;
  CHECK_OK(coro_signal_new(&s, SIGUSR1));
  raise_n(SIGUSR1, 1);
  return NULL; /* never freed: the loop's end frees it */
}

static void test_loop_liveness(void **state) {
  (void)state;
  assert_run_ok(alive_main);
  assert_run_ok(forgotten_main); /* the fixture proves nothing leaked */
  assert_coro_err(coro_run(idle_watcher_main, NULL, NULL), -EDEADLK);
  assert_checks_passed();
}

static void *bad_input_main(void *arg) {
  (void)arg;
  coro_signal *s = (coro_signal *)1;
  CHECK_ERR(coro_signal_new(&s, SIGKILL), -EINVAL);
  CHECK(s == NULL);
  CHECK_ERR(coro_signal_new(&s, SIGSTOP), -EINVAL);
  CHECK_ERR(coro_signal_new(&s, 0), -EINVAL);
  CHECK_ERR(coro_signal_new(&s, -3), -EINVAL);
  CHECK_ERR(coro_signal_new(&s, 4096), -EINVAL);
  CHECK_ERR(coro_signal_new(NULL, SIGUSR1), -EINVAL);
  CHECK_ERR(coro_signal_wait(NULL, 0), -EINVAL);
  CHECK_OK(coro_signal_new(&s, SIGUSR1));
  CHECK_ERR(coro_signal_wait(s, -2), -EINVAL);
  coro_signal_free(s);
  return NULL;
}

static void test_bad_input(void **state) {
  (void)state;
  assert_run_ok(bad_input_main);
  coro_signal *s = NULL;
  assert_coro_err(coro_signal_new(&s, SIGUSR1), -EPERM); /* no loop */
}

/* ---- sigint_cancels_main ---------------------------------------------------- */

typedef struct sigint_arg {
  int twice; /* main's cleanup sends a second SIGINT */
} sigint_arg;

static void *raise_sigint_task(void *arg) {
  (void)arg;
  coro_test_yields(3);
  raise(SIGINT);
  return NULL;
}

static void *sigint_main(void *arg) {
  sigint_arg *a = arg;
  CHECK_OK(coro_spawn(NULL, raise_sigint_task, NULL));
  int r = coro_sleep(30000);
  if (r != -ECANCELED) return NULL;
  fprintf(stderr, "main cancelled, cleaning up\n");
  /* Cleanup may suspend. */
  CHECK_OK(coro_sleep(10));
  if (a->twice) {
    raise(SIGINT); /* the default action: the process ends here */
    fprintf(stderr, "still alive after the second SIGINT\n");
  }
  fprintf(stderr, "cleanup done\n");
  return coro_fail(-ECANCELED);
}

static void sigint_child(void *arg) {
  coro_config cfg;
  memset(&cfg, 0, sizeof(cfg));
  cfg.sigint_cancels_main = 1;
  int r = coro_run_config(&cfg, sigint_main, arg, NULL);
  struct sigaction now;
  sigaction(SIGINT, NULL, &now);
  int restored = now.sa_handler == SIG_DFL;
  /* A second coro_run watches again. */
  int r2 = coro_run_config(&cfg, sigint_main, arg, NULL);
  _exit(r == -ECANCELED && r2 == -ECANCELED && restored &&
                coro_test_failed_line == 0
            ? 42
            : 1);
}

static void test_sigint_cancels_main(void **state) {
  (void)state;
  char err[512];
  sigint_arg a = {0};
  int st = coro_test_in_child_stderr(sigint_child, &a, 20000, err, sizeof(err));
  assert_true(WIFEXITED(st));
  assert_int_equal(WEXITSTATUS(st), 42);
  assert_non_null(strstr(err, "main cancelled, cleaning up\ncleanup done\n"
                              "main cancelled, cleaning up\ncleanup done\n"));
}

static void test_sigint_twice_kills(void **state) {
  (void)state;
  char err[512];
  sigint_arg a = {1};
  int st = coro_test_in_child_stderr(sigint_child, &a, 20000, err, sizeof(err));
  assert_true(WIFSIGNALED(st));
  assert_int_equal(WTERMSIG(st), SIGINT);
  assert_non_null(strstr(err, "main cancelled, cleaning up\n"));
  assert_null(strstr(err, "still alive"));
}

static void *short_main(void *arg) {
  (void)arg;
  raise(SIGINT); /* ignored by the program: nothing happens */
  CHECK_OK(coro_sleep(20));
  return NULL;
}

static void ignored_child(void *arg) {
  (void)arg;
  signal(SIGINT, SIG_IGN);
  coro_config cfg;
  memset(&cfg, 0, sizeof(cfg));
  cfg.sigint_cancels_main = 1;
  int r = coro_run_config(&cfg, short_main, NULL, NULL);
  struct sigaction now;
  sigaction(SIGINT, NULL, &now);
  _exit(r == 0 && now.sa_handler == SIG_IGN && coro_test_failed_line == 0
            ? 42
            : 1);
}

static void test_sigint_ignored_stays(void **state) {
  (void)state;
  int st = coro_test_in_child(ignored_child, NULL, 20000);
  assert_true(WIFEXITED(st));
  assert_int_equal(WEXITSTATUS(st), 42);
}

static void *empty_main(void *arg) {
  (void)arg;
  coro_signal *s = NULL;
  if (coro_signal_new(&s, SIGUSR1) == 0) coro_signal_free(s);
  return NULL;
}

int main(int argc, char **argv) {
  /* libuv opens descriptors of its own once per process (the first loop,
   * the first signal watcher): open them before a test counts. */
  coro_run(empty_main, NULL, NULL);
  const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, coro_test_setup_os, coro_test_teardown_os)
      T(test_count),
      T(test_two_waiters),
      T(test_two_watchers),
      T(test_timeout_cancel),
      T(test_free_while_waiting),
      T(test_loop_liveness),
      T(test_bad_input),
      T(test_sigint_cancels_main),
      T(test_sigint_twice_kills),
      T(test_sigint_ignored_stays),
#undef T
  };
  return coro_test_main(argc, argv, tests, NULL, NULL);
}
