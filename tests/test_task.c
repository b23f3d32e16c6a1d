/* SPDX-License-Identifier: MIT */
/* Tasks: spawning, results, failures, names, stacks, and the state a task
 * keeps across switches. */
#include "helpers.h"

#include <fcntl.h>
#include <fenv.h>
#include <stdio.h>
#include <unistd.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>

#include "coro-internal.h" /* CORO__ASAN */
#include "ctx/stack.h"

/* AddressSanitizer pads frames with red zones: recurse less deeply. */
#ifdef CORO__ASAN
# define DEEP_KIB 150
# define DEEP_SMALL_KIB 24
#else
# define DEEP_KIB 200
# define DEEP_SMALL_KIB 40
#endif

static char order[64];
static size_t order_len;
static void note(char c) {
  if (order_len < sizeof(order) - 1) order[order_len++] = c;
  order[order_len] = '\0';
}
static void order_reset(void) {
  order_len = 0;
  order[0] = '\0';
}

/* ---- spawn, await, results ---------------------------------------------- */

static void *ret_arg(void *arg) { return arg; }

static void *spawn_await_main(void *arg) {
  (void)arg;
  coro_future *f = NULL;
  CHECK_EQ(coro_spawn(&f, ret_arg, (void *)0x1234), 0);
  CHECK(f != NULL);
  CHECK_ERR(coro_future_status(f), CORO_PENDING);
  void *v = NULL;
  CHECK_EQ(coro_await(f, &v), 0);
  CHECK_PTR_EQ(v, (void *)0x1234);
  CHECK_EQ(coro_future_status(f), 0);
  CHECK_PTR_EQ(coro_future_value(f), (void *)0x1234);
  coro_future_release(f);
  return (void *)7;
}

static void test_task_spawn_await_value(void **state) {
  (void)state;
  void *res = NULL;
  assert_coro_ok(coro_run(spawn_await_main, NULL, &res));
  assert_ptr_equal(res, (void *)7);
  assert_checks_passed();
}

static void *fails(void *arg) { return coro_fail((int)(intptr_t)arg); }

static void *fail_main(void *arg) {
  (void)arg;
  coro_future *f;
  CHECK_EQ(coro_spawn(&f, fails, (void *)(intptr_t)-ENOENT), 0);
  void *v = (void *)1;
  CHECK_ERR(coro_await(f, &v), -ENOENT);
  CHECK(v == NULL);
  CHECK(coro_future_value(f) == NULL);
  coro_future_release(f);
  /* coro_fail with a non-negative code records -EINVAL. */
  CHECK_EQ(coro_spawn(&f, fails, (void *)(intptr_t)5), 0);
  CHECK_ERR(coro_await(f, NULL), -EINVAL);
  coro_future_release(f);
  return NULL;
}

static void test_task_fail_status(void **state) {
  (void)state;
  assert_run_ok(fail_main);
  /* Outside a task coro_fail does nothing and returns NULL. */
  assert_null(coro_fail(-EIO));
}

static void *args_main(void *arg) {
  (void)arg;
  coro_future *f = (coro_future *)1;
  CHECK_ERR(coro_spawn(&f, NULL, NULL), -EINVAL);
  CHECK_PTR_EQ(f, (coro_future *)1); /* untouched on failure */
  CHECK_ERR(coro_await(NULL, NULL), -EINVAL);
  CHECK_ERR(coro_await(coro_current(), NULL), -EDEADLK);
  return NULL;
}

static void test_task_bad_arguments(void **state) {
  (void)state;
  coro_future *f = NULL;
  assert_coro_err(coro_spawn(&f, ret_arg, NULL), -EPERM); /* no loop */
  assert_null(f);
  assert_null(coro_current());
  assert_run_ok(args_main);
}

/* ---- lazy start and FIFO --------------------------------------------------- */

static void *note_arg(void *arg) {
  note(*(const char *)arg);
  return NULL;
}

static void *lazy_main(void *arg) {
  (void)arg;
  static const char a = 'a', b = 'b', c = 'c';
  CHECK_EQ(coro_spawn(NULL, note_arg, (void *)&a), 0);
  CHECK_EQ(coro_spawn(NULL, note_arg, (void *)&b), 0);
  CHECK_EQ(coro_spawn(NULL, note_arg, (void *)&c), 0);
  note('M'); /* children have not run: spawning is lazy */
  CHECK_EQ(coro_yield(), 0);
  note('Y'); /* one yield: each child's first step ran, in spawn order */
  return NULL;
}

static void test_task_lazy_fifo(void **state) {
  (void)state;
  order_reset();
  assert_run_ok(lazy_main);
  assert_string_equal(order, "MabcY");
}

/* ---- detached tasks and handles ------------------------------------------ */

static int detached_done;

static void *detached_body(void *arg) {
  (void)arg;
  CHECK_EQ(coro_sleep(10), 0);
  detached_done++;
  return NULL;
}

static void *detached_main(void *arg) {
  (void)arg;
  coro_future *f;
  CHECK_EQ(coro_spawn(NULL, detached_body, NULL), 0);
  CHECK_EQ(coro_spawn(&f, detached_body, NULL), 0);
  coro_future_release(f); /* releasing a handle does not stop the task */
  CHECK_EQ(coro_sleep(50), 0);
  CHECK_EQ(detached_done, 2);
  return NULL;
}

static void test_task_detached_runs_to_end(void **state) {
  (void)state;
  detached_done = 0;
  assert_run_ok(detached_main);
  assert_int_equal(detached_done, 2);
}

static void *many_awaiters_target(void *arg) {
  (void)arg;
  CHECK_EQ(coro_sleep(5), 0);
  return (void *)99;
}

static void *awaiter(void *arg) {
  coro_future *target = arg;
  void *v = NULL;
  CHECK_EQ(coro_await(target, &v), 0);
  CHECK_PTR_EQ(v, (void *)99);
  return NULL;
}

static void *many_awaiters_main(void *arg) {
  (void)arg;
  coro_future *target, *w[5];
  CHECK_EQ(coro_spawn(&target, many_awaiters_target, NULL), 0);
  for (int i = 0; i < 5; i++) CHECK_EQ(coro_spawn(&w[i], awaiter, target), 0);
  for (int i = 0; i < 5; i++) {
    CHECK_EQ(coro_await(w[i], NULL), 0);
    coro_future_release(w[i]);
  }
  coro_future_release(target);
  return NULL;
}

static void test_task_many_awaiters(void **state) {
  (void)state;
  assert_run_ok(many_awaiters_main);
}

/* ---- names ---------------------------------------------------------------------- */

static void *names_main(void *arg) {
  (void)arg;
  char buf[16];
  strcpy(buf, "worker-1");
  coro_task_opts o = {.name = buf};
  coro_future *a, *b, *p;
  CHECK_EQ(coro_spawn_opts(&a, ret_arg, NULL, &o), 0);
  strcpy(buf, "changed"); /* the name was copied */
  CHECK(strcmp(coro_task_name(a), "worker-1") == 0);
  CHECK_EQ(coro_spawn(&b, ret_arg, NULL), 0);
  CHECK(strncmp(coro_task_name(b), "Task-", 5) == 0);
  CHECK(strcmp(coro_task_name(coro_current()), "Task-1") == 0);
  char long_name[64];
  memset(long_name, 'n', sizeof(long_name) - 1);
  long_name[sizeof(long_name) - 1] = '\0';
  coro_task_opts lo = {.name = long_name};
  coro_future *c;
  CHECK_EQ(coro_spawn_opts(&c, ret_arg, NULL, &lo), 0);
  long_name[0] = 'X';
  CHECK(strlen(coro_task_name(c)) == 63 && coro_task_name(c)[0] == 'n');
  CHECK_EQ(coro_await(c, NULL), 0);
  coro_future_release(c);
  CHECK_EQ(coro_future_new(&p), 0);
  CHECK(coro_task_name(p) == NULL);
  CHECK(coro_task_name(NULL) == NULL);
  CHECK_EQ(coro_await(a, NULL), 0);
  CHECK_EQ(coro_await(b, NULL), 0);
  coro_future_release(a);
  coro_future_release(b);
  coro_future_release(p);
  return NULL;
}

static void test_task_names(void **state) {
  (void)state;
  assert_run_ok(names_main);
}

/* ---- stacks ------------------------------------------------------------------ */

/* Recurse using about `bytes` of stack; returns a checksum. */
static __attribute__((noinline)) unsigned recurse(size_t bytes) {
  volatile unsigned char frame[1024];
  for (size_t i = 0; i < sizeof(frame); i += 64) frame[i] = (unsigned char)i;
  if (bytes <= sizeof(frame)) return frame[64];
  return recurse(bytes - sizeof(frame)) + frame[128];
}

static void *deep_body(void *arg) {
  size_t bytes = (size_t)arg;
  unsigned sum = recurse(bytes);
  CHECK_NE(sum, 0);
  CHECK_EQ(coro_yield(), 0); /* and suspend once deep down is over */
  return NULL;
}

static void *deep_main(void *arg) {
  (void)arg;
  coro_future *f;
  /* 200 KiB of frames on the default 256 KiB stack. */
  CHECK_EQ(coro_spawn(&f, deep_body, (void *)(size_t)(DEEP_KIB * 1024)), 0);
  CHECK_EQ(coro_await(f, NULL), 0);
  coro_future_release(f);
  /* 40 KiB on a 64 KiB stack chosen per task. */
  coro_task_opts o = {.stack_size = 64 * 1024};
  CHECK_EQ(coro_spawn_opts(&f, deep_body, (void *)(size_t)(DEEP_SMALL_KIB * 1024), &o), 0);
  CHECK_EQ(coro_await(f, NULL), 0);
  coro_future_release(f);
  return NULL;
}

static void test_task_deep_recursion(void **state) {
  (void)state;
  assert_run_ok(deep_main);
}

static void *overflow_body(void *arg) {
  (void)arg;
  recurse((size_t)1 << 30); /* far beyond the stack: hits the guard */
  return NULL;
}

static void *overflow_main(void *arg) {
  (void)arg;
  coro_task_opts o = {.name = "deep-diver", .stack_size = 32 * 1024};
  coro_future *f;
  if (coro_spawn_opts(&f, overflow_body, NULL, &o) != 0) return NULL;
  coro_await(f, NULL);
  return NULL;
}

static void overflow_child(void *arg) {
  (void)arg;
  coro_run(overflow_main, NULL, NULL);
  _exit(3); /* not reached if the guard page works */
}

static void test_task_stack_overflow_hits_guard(void **state) {
  (void)state;
  char report[1024];
  int st = coro_test_in_child_stderr(overflow_child, NULL, 20000, report,
                                     sizeof(report));
  assert_true(st != -1); /* did not hang */
#ifdef CORO__ASAN
  /* ASan catches the fault itself, reports a stack overflow and exits. */
  assert_true(WIFSIGNALED(st) ||
              (WIFEXITED(st) && WEXITSTATUS(st) != 0 && WEXITSTATUS(st) != 3));
#else
  assert_true(WIFSIGNALED(st));
  assert_int_equal(WTERMSIG(st), SIGSEGV);
  /* The report names the task and says what to do. */
  assert_non_null(strstr(report, "task 'deep-diver' overflowed its stack"));
  assert_non_null(strstr(report, "stack_size"));
  /* then its frames, innermost first (the recursion, in this program) */
  const char *bt = strstr(report, "libcoro: its stack:\n");
  assert_non_null(bt);
  assert_non_null(strstr(bt, "test_task("));
#endif
}

static int reuse_n;
static void *reuse_body(void *arg) {
  (void)arg;
  reuse_n++;
  return NULL;
}

static void *reuse_main(void *arg) {
  (void)arg;
  coro__stack_stats before, after;
  coro__stack_get_stats(&before);
  for (int i = 0; i < 10000; i++) {
    coro_future *f;
    CHECK_EQ(coro_spawn(&f, reuse_body, NULL), 0);
    CHECK_EQ(coro_await(f, NULL), 0);
    coro_future_release(f);
  }
  coro__stack_get_stats(&after);
  /* One task at a time: one stack serves them all (+ main's). */
  CHECK_LE(after.live, before.live + 1);
  return NULL;
}

static void test_task_stack_reuse(void **state) {
  (void)state;
  reuse_n = 0;
  assert_run_ok(reuse_main);
  assert_int_equal(reuse_n, 10000);
}

/* ---- state preserved across switches --------------------------------------- */


static void *rounding_body(void *arg) {
  int mode = (int)(intptr_t)arg;
  CHECK_EQ(fesetround(mode), 0);
  volatile double third = 1.0;
  third /= 3.0;
  for (int i = 0; i < 3; i++) {
    CHECK_EQ(coro_yield(), 0);
    CHECK_EQ(fegetround(), mode); /* the other task's mode did not leak in */
    volatile double again = 1.0;
    again /= 3.0;
    CHECK(again == third);
  }
  return NULL;
}

static void *rounding_main(void *arg) {
  (void)arg;
  coro_future *a, *b;
  CHECK_EQ(coro_spawn(&a, rounding_body, (void *)(intptr_t)FE_UPWARD), 0);
  CHECK_EQ(coro_spawn(&b, rounding_body, (void *)(intptr_t)FE_DOWNWARD), 0);
  CHECK_EQ(coro_await(a, NULL), 0);
  CHECK_EQ(coro_await(b, NULL), 0);
  CHECK_EQ(fegetround(), FE_TONEAREST);
  coro_future_release(a);
  coro_future_release(b);
  return NULL;
}

static void test_task_fp_control_per_task(void **state) {
  (void)state;
  assert_run_ok(rounding_main);
  assert_int_equal(fegetround(), FE_TONEAREST);
}

static void *locals_body(void *arg) {
  intptr_t id = (intptr_t)arg;
  double acc = (double)id;
  long n = id * 1000;
  for (int i = 0; i < 50; i++) {
    CHECK_EQ(coro_yield(), 0);
    acc = acc * 1.5 + 1.0;
    n += i;
  }
  double want = (double)id;
  for (int i = 0; i < 50; i++) want = want * 1.5 + 1.0;
  CHECK(acc == want);
  CHECK_EQ(n, id * 1000 + 49 * 50 / 2);
  return NULL;
}

static void *locals_main(void *arg) {
  (void)arg;
  coro_future *f[8];
  for (intptr_t i = 0; i < 8; i++)
    CHECK_EQ(coro_spawn(&f[i], locals_body, (void *)i), 0);
  for (int i = 0; i < 8; i++) {
    CHECK_EQ(coro_await(f[i], NULL), 0);
    coro_future_release(f[i]);
  }
  return NULL;
}

static void test_task_locals_survive_switches(void **state) {
  (void)state;
  assert_run_ok(locals_main);
}

/* ---- eager start ---------------------------------------------------------------- */

static void *eager_note_child(void *arg) {
  const char *tag = arg;
  coro_test_note(tag);
  CHECK_OK(coro_yield());
  coro_test_note("c2");
  return NULL;
}

static void *eager_order_main(void *arg) {
  (void)arg;
  coro_test_log_reset();
  coro_future *lazy, *eager;
  coro_test_note("p1");
  CHECK_OK(coro_spawn(&lazy, eager_note_child, "L"));
  CHECK_OK(coro_spawn_eager(&eager, eager_note_child, "E"));
  coro_test_note("p2");
  CHECK_EQ(coro_future_status(eager), CORO_PENDING); /* it yielded */
  CHECK_OK(coro_await(lazy, NULL));
  CHECK_OK(coro_await(eager, NULL));
  coro_future_release(lazy);
  coro_future_release(eager);
  /* The eager task ran inside its spawn, before p2; the lazy one after the
   * parent suspended; then each resumed in the order it was queued. */
  CHECK_STREQ(coro_test_log(), "p1Ep2Lc2c2");
  return NULL;
}

static void test_task_eager_runs_inside_spawn(void **state) {
  (void)state;
  assert_run_ok(eager_order_main);
}

/* A task that returns without suspending is done when its spawn returns,
 * and awaiting it does not suspend: nothing else runs in between. */
static int bystander_ran;
static void *bystander(void *arg) {
  (void)arg;
  bystander_ran = 1;
  return NULL;
}
static void *eager_fails(void *arg) {
  (void)arg;
  return coro_fail(-ENOENT);
}

static void *eager_sync_main(void *arg) {
  (void)arg;
  bystander_ran = 0;
  coro_future *b = coro_test_spawn(bystander, NULL), *f;
  CHECK_OK(coro_spawn_eager(&f, ret_arg, (void *)"x"));
  CHECK_EQ(coro_future_status(f), 0);
  void *v = NULL;
  CHECK_OK(coro_await(f, &v));
  CHECK_PTR_EQ(v, "x");
  coro_future_release(f);
  CHECK_OK(coro_spawn_eager(&f, eager_fails, NULL));
  CHECK_ERR(coro_future_status(f), -ENOENT);
  CHECK_ERR(coro_await(f, NULL), -ENOENT);
  coro_future_release(f);
  CHECK_OK(coro_spawn_eager(NULL, ret_arg, NULL)); /* detached */
  CHECK_EQ(bystander_ran, 0);
  CHECK_OK(coro_test_join(b));
  CHECK_EQ(bystander_ran, 1);
  return NULL;
}

static void test_task_eager_done_at_once(void **state) {
  (void)state;
  assert_run_ok(eager_sync_main);
}

/* A task per call, each started eagerly: the result, and more nested
 * eager starts than the fiber pool keeps (the fibers beyond it are freed
 * from inside a task). */
static void *eager_fib(void *arg) {
  uintptr_t n = (uintptr_t)arg;
  if (n < 2) return arg;
  uintptr_t sum = 0;
  for (uintptr_t k = 1; k <= 2; k++) {
    coro_future *f;
    void *v = NULL;
    CHECK_OK(coro_spawn_eager(&f, eager_fib, (void *)(n - k)));
    CHECK_EQ(coro_future_status(f), 0);
    CHECK_OK(coro_await(f, &v));
    coro_future_release(f);
    sum += (uintptr_t)v;
  }
  return (void *)sum;
}

static void *eager_chain(void *arg) {
  uintptr_t n = (uintptr_t)arg;
  if (n == 0) return NULL;
  coro_future *f;
  CHECK_OK(coro_spawn_eager(&f, eager_chain, (void *)(n - 1)));
  CHECK_OK(coro_await(f, NULL));
  coro_future_release(f);
  return NULL;
}

static void *eager_fib_main(void *arg) {
  (void)arg;
  coro_future *f;
  CHECK_OK(coro_spawn_eager(&f, eager_fib, (void *)(uintptr_t)18));
  void *v = NULL;
  CHECK_OK(coro_await(f, &v));
  CHECK_EQ((uintptr_t)v, 2584);
  coro_future_release(f);
  CHECK_OK(coro_spawn_eager(&f, eager_chain, (void *)(uintptr_t)400));
  CHECK_OK(coro_await(f, NULL));
  coro_future_release(f);
  return NULL;
}

static void test_task_eager_per_call(void **state) {
  (void)state;
  assert_run_ok(eager_fib_main);
}

/* Cancelling an eager task that suspended; an eager spawn from a done
 * callback starts lazily; an eager task in debug mode. */
static void *eager_forever(void *arg) {
  (void)arg;
  return coro_fail(coro_sleep(CORO_FOREVER));
}
static int cb_eager_ran;
static void *cb_eager_child(void *arg) {
  (void)arg;
  cb_eager_ran = 1;
  return NULL;
}
static void eager_from_cb(coro_future *f, void *data) {
  (void)f;
  (void)data;
  CHECK_OK(coro_spawn_eager(NULL, cb_eager_child, NULL));
  CHECK_EQ(cb_eager_ran, 0); /* not inside the call: no task to come back to */
}

static void *eager_cancel_main(void *arg) {
  (void)arg;
  coro_future *f, *p;
  CHECK_OK(coro_spawn_eager(&f, eager_forever, NULL));
  CHECK_EQ(coro_future_status(f), CORO_PENDING);
  CHECK_OK(coro_cancel(f));
  CHECK_ERR(coro_await(f, NULL), CORO_ECANCELED);
  coro_future_release(f);
  cb_eager_ran = 0;
  CHECK_OK(coro_future_new(&p));
  CHECK_OK(coro_future_on_done(p, eager_from_cb, NULL));
  CHECK_OK(coro_future_resolve(p, NULL));
  CHECK_OK(coro_sleep(5));
  CHECK_EQ(cb_eager_ran, 1);
  coro_future_release(p);
  return NULL;
}

static void test_task_eager_cancel_and_callbacks(void **state) {
  (void)state;
  assert_run_ok(eager_cancel_main);
  coro_config cfg = {0};
  cfg.debug = 1;
  assert_coro_ok(coro_run_config(&cfg, eager_order_main, NULL, NULL));
  assert_checks_passed();
}

/* No stack for an eager task (a reservation no machine grants): the spawn
 * succeeds and hands back a task already ended with -ENOMEM, whose fn never
 * ran; a lazy one ends the same way at its first step. */
static int nostack_ran;
static void *nostack_child(void *arg) {
  nostack_ran = 1;
  return arg;
}

static void *eager_nostack_main(void *arg) {
  (void)arg;
  nostack_ran = 0;
  coro_task_opts o = {.stack_size = (size_t)1 << 62, .flags = CORO_TASK_EAGER};
  coro_future *f = NULL;
  CHECK_OK(coro_spawn_opts(&f, nostack_child, (void *)1, &o));
  CHECK_EQ(coro_future_status(f), -ENOMEM); /* ended inside the spawn */
  void *v = (void *)7;
  CHECK_ERR(coro_await(f, &v), -ENOMEM);
  CHECK_PTR_EQ(v, NULL);
  coro_future_release(f);
  o.flags = 0;
  CHECK_OK(coro_spawn_opts(&f, nostack_child, (void *)1, &o));
  CHECK_EQ(coro_future_status(f), CORO_PENDING);
  CHECK_ERR(coro_await(f, NULL), -ENOMEM);
  coro_future_release(f);
  CHECK_EQ(nostack_ran, 0);
  /* The spawner's own stack and the next eager task are fine. */
  CHECK_OK(coro_spawn_eager(&f, nostack_child, (void *)2));
  CHECK_EQ(coro_future_status(f), 0);
  CHECK_PTR_EQ(coro_future_value(f), (void *)2);
  coro_future_release(f);
  return NULL;
}

static void test_task_eager_no_stack(void **state) {
  (void)state;
  assert_run_ok(eager_nostack_main);
}

/* ---- spawning from a callback ----------------------------------------------- */

static int cb_spawned_ran;
static void *cb_child(void *arg) {
  (void)arg;
  cb_spawned_ran = 1;
  return NULL;
}
static void spawn_from_cb(coro_future *f, void *data) {
  (void)f;
  (void)data;
  CHECK(coro_current() == NULL);
  CHECK_EQ(coro_spawn(NULL, cb_child, NULL), 0);
}
static void *cb_main(void *arg) {
  (void)arg;
  coro_future *p;
  CHECK_EQ(coro_future_new(&p), 0);
  CHECK_EQ(coro_future_on_done(p, spawn_from_cb, NULL), 0);
  CHECK_EQ(coro_future_resolve(p, NULL), 0);
  CHECK_EQ(coro_sleep(10), 0);
  CHECK_EQ(cb_spawned_ran, 1);
  coro_future_release(p);
  return NULL;
}

static void test_task_spawn_from_callback(void **state) {
  (void)state;
  cb_spawned_ran = 0;
  assert_run_ok(cb_main);
}

/* ---- allocation failure ------------------------------------------------------- */

static void *oom_main(void *arg) {
  (void)arg;
  coro_future *f = NULL;
  /* A name too long to keep inline is copied: that copy fails. */
  coro_task_opts o = {.name = "a-name-longer-than-the-inline-buffer"};
  coro_test_fail_alloc_after(1);
  CHECK_ERR(coro_spawn_opts(&f, ret_arg, NULL, &o), -ENOMEM);
  CHECK(f == NULL);
  coro_test_fail_alloc_after(0);
  /* With the task pool empty, the task struct itself fails. */
  coro_test_fail_alloc_after(1);
  CHECK_ERR(coro_spawn(&f, ret_arg, NULL), -ENOMEM);
  CHECK(f == NULL);
  coro_test_fail_alloc_after(0);
  return NULL;
}

static void test_task_spawn_enomem(void **state) {
  (void)state;
  assert_run_ok(oom_main);
}

int main(int argc, char **argv) {
  const struct CMUnitTest tests[] = {
#define T(x) cmocka_unit_test_setup_teardown(x, coro_test_setup, coro_test_teardown)
    T(test_task_spawn_await_value),
    T(test_task_fail_status),
    T(test_task_bad_arguments),
    T(test_task_lazy_fifo),
    T(test_task_detached_runs_to_end),
    T(test_task_many_awaiters),
    T(test_task_names),
    T(test_task_deep_recursion),
    T(test_task_stack_overflow_hits_guard),
    T(test_task_stack_reuse),
    T(test_task_fp_control_per_task),
    T(test_task_locals_survive_switches),
    T(test_task_spawn_from_callback),
    T(test_task_spawn_enomem),
    T(test_task_eager_runs_inside_spawn),
    T(test_task_eager_done_at_once),
    T(test_task_eager_per_call),
    T(test_task_eager_cancel_and_callbacks),
    T(test_task_eager_no_stack),
#undef T
  };
  return coro_test_main(argc, argv, tests, NULL, NULL);
}
