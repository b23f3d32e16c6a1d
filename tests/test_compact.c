/* SPDX-License-Identifier: MIT */
/* Compact tasks (CORO_TASK_COMPACT): their stacks are shared, and a compact
 * task waiting in sleep, yield or await is copied out and back. Checked:
 * locals (shallow and deep frames) survive, many sleepers share one stack,
 * await and yield compact too, cancellation and timeouts reach a compacted
 * task, other waits refuse with -EPERM and consume nothing, bad options,
 * shutdown with compacted tasks, a copy that cannot be allocated, eager
 * compact children, and an overflow still hits the guard and is named. */
#include "helpers.h"

#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/task.h"

#define VAL(n) ((void *)(uintptr_t)(n))

static coro_task_opts compact_opts = {.flags = CORO_TASK_COMPACT};

static coro_future *spawn_compact(coro_fn fn, void *arg) {
  coro_future *f = NULL;
  CHECK_OK(coro_spawn_opts(&f, fn, arg, &compact_opts));
  return f;
}

/* Compaction is left out under ThreadSanitizer and with the ucontext
 * switch; the rules hold there too, but nothing is copied. */
#if defined(CORO_CTX_ASM) && !defined(CORO__TSAN)
# define COMPACTS 1
#else
# define COMPACTS 0
#endif

static coro_stats stats_now(void) {
  coro_stats st;
  CHECK_OK(coro_loop_stats(NULL, &st));
  return st;
}

/* ---- many sleepers, their locals intact ------------------------------------ */

#define SLEEPERS 300

static int woke_ok;

/* A local pattern that depends on the task, checked after the sleeps. */
static void *pattern_sleeper(void *arg) {
  unsigned id = (unsigned)(uintptr_t)arg;
  volatile unsigned char buf[512];
  for (unsigned i = 0; i < sizeof(buf); i++) buf[i] = (unsigned char)(id * 31 + i);
  volatile unsigned char *self = buf; /* a pointer into its own stack */
  for (int round = 0; round < 3; round++) {
    CHECK_OK(coro_sleep(5 + (int)(id % 7)));
    for (unsigned i = 0; i < sizeof(buf); i++)
      if (self[i] != (unsigned char)(id * 31 + i)) {
        CHECK(!"a local changed while the task was compacted");
        return NULL;
      }
  }
  woke_ok++;
  return VAL(id);
}

static void *many_main(void *arg) {
  (void)arg;
  coro_future *fs[SLEEPERS];
  woke_ok = 0;
  for (unsigned i = 0; i < SLEEPERS; i++) fs[i] = spawn_compact(pattern_sleeper, VAL(i));
  CHECK_OK(coro_sleep(2)); /* they all start and fall asleep */
  coro_stats st = stats_now();
  if (COMPACTS) {
    CHECK_GE(st.compacted, SLEEPERS - 2);
    CHECK_LE(st.shared_stacks, 2);
    CHECK_GT(st.compacted_bytes, 0);
    CHECK_LT(st.compacted_bytes, (size_t)SLEEPERS * 16 * 1024);
  } else {
    CHECK_EQ(st.compacted, 0);
  }
  for (unsigned i = 0; i < SLEEPERS; i++) {
    void *v = NULL;
    CHECK_OK(coro_await(fs[i], &v));
    CHECK_PTR_EQ(v, VAL(i));
    coro_future_release(fs[i]);
  }
  CHECK_EQ(woke_ok, SLEEPERS);
  st = stats_now();
  CHECK_EQ(st.compacted, 0);
  CHECK_EQ(st.compacted_bytes, 0);
  return NULL;
}

static void test_compact_sleepers_keep_locals(void **state) {
  (void)state;
  assert_run_ok(many_main);
}

/* ---- deep frames -------------------------------------------------------------- */

static unsigned deep(unsigned depth, unsigned seed) {
  volatile unsigned char pad[1024];
  for (unsigned i = 0; i < sizeof(pad); i++) pad[i] = (unsigned char)(seed + i);
  unsigned r;
  if (depth == 0) {
    CHECK_OK(coro_sleep(3));
    CHECK_OK(coro_yield());
    r = 0;
  } else {
    r = deep(depth - 1, seed + 1);
  }
  for (unsigned i = 0; i < sizeof(pad); i++)
    if (pad[i] != (unsigned char)(seed + i)) return 1u << 20;
  return r + 1;
}

static void *deep_task(void *arg) {
  unsigned seed = (unsigned)(uintptr_t)arg;
  return VAL(deep(40, seed)); /* over 40 KiB of frames while it sleeps */
}

static void *deep_main(void *arg) {
  (void)arg;
  coro_future *fs[8];
  for (unsigned i = 0; i < 8; i++) fs[i] = spawn_compact(deep_task, VAL(i * 7));
  for (unsigned i = 0; i < 8; i++) {
    void *v = NULL;
    CHECK_OK(coro_await(fs[i], &v));
    CHECK_PTR_EQ(v, VAL(41));
    coro_future_release(fs[i]);
  }
  return NULL;
}

static void test_compact_deep_frames(void **state) {
  (void)state;
  assert_run_ok(deep_main);
}

/* ---- await and yield ------------------------------------------------------------ */

static coro_future *promise;

static void *await_promise(void *arg) {
  (void)arg;
  int local = 1234;
  void *v = NULL;
  CHECK_OK(coro_await(promise, &v));
  CHECK_EQ(local, 1234);
  return v;
}

static void *sleepy_child(void *arg) {
  CHECK_OK(coro_sleep(3));
  return arg;
}

static void *await_child(void *arg) {
  (void)arg;
  coro_future *c = spawn_compact(sleepy_child, VAL(77));
  void *v = NULL;
  CHECK_OK(coro_await(c, &v));
  coro_future_release(c);
  return v;
}

static void *yielder(void *arg) {
  uintptr_t id = (uintptr_t)arg;
  uintptr_t sum = 0;
  for (uintptr_t i = 0; i < 50; i++) {
    sum += i * id;
    CHECK_OK(coro_yield());
  }
  return VAL(sum);
}

static void *await_main(void *arg) {
  (void)arg;
  CHECK_OK(coro_future_new(&promise));
  coro_future *a[4], *b = spawn_compact(await_child, NULL), *y[6];
  for (int i = 0; i < 4; i++) a[i] = spawn_compact(await_promise, NULL);
  for (uintptr_t i = 0; i < 6; i++) y[i] = spawn_compact(yielder, VAL(i + 1));
  CHECK_OK(coro_sleep(5));
  if (COMPACTS) CHECK_GE(stats_now().compacted, 3); /* the promise's awaiters */
  CHECK_OK(coro_future_resolve(promise, VAL(9)));
  for (int i = 0; i < 4; i++) {
    void *v = NULL;
    CHECK_OK(coro_await(a[i], &v));
    CHECK_PTR_EQ(v, VAL(9));
    coro_future_release(a[i]);
  }
  void *v = NULL;
  CHECK_OK(coro_await(b, &v));
  CHECK_PTR_EQ(v, VAL(77));
  coro_future_release(b);
  for (uintptr_t i = 0; i < 6; i++) {
    CHECK_OK(coro_await(y[i], &v));
    CHECK_PTR_EQ(v, VAL(1225 * (i + 1)));
    coro_future_release(y[i]);
  }
  coro_future_release(promise);
  return NULL;
}

static void test_compact_await_and_yield(void **state) {
  (void)state;
  assert_run_ok(await_main);
}

/* ---- cancellation and timeouts ------------------------------------------------------ */

static void *sleep_forever(void *arg) {
  (void)arg;
  int local = 42;
  int r = coro_sleep(CORO_FOREVER);
  CHECK_ERR(r, CORO_ECANCELED);
  CHECK_EQ(local, 42);
  return coro_fail(r);
}

static void *timed_sleeper(void *arg) {
  (void)arg;
  coro_timeout to;
  CHECK_OK(coro_timeout_enter(&to, 5));
  int r = coro_sleep(10000);
  CHECK_ERR(coro_timeout_exit(&to, r), CORO_ETIMEDOUT);
  return NULL;
}

static void *cancel_main(void *arg) {
  (void)arg;
  coro_future *f[3];
  for (int i = 0; i < 3; i++) f[i] = spawn_compact(sleep_forever, NULL);
  coro_future *t = spawn_compact(timed_sleeper, NULL);
  CHECK_OK(coro_sleep(2));
  if (COMPACTS) {
    CHECK_GE(stats_now().compacted, 3);
    CHECK_PTR_NE(coro__task_cx(coro__task_of(f[0]))->saved, NULL);
  }
  for (int i = 0; i < 3; i++) CHECK_OK(coro_cancel(f[i]));
  for (int i = 0; i < 3; i++) {
    CHECK_ERR(coro_await(f[i], NULL), CORO_ECANCELED);
    coro_future_release(f[i]);
  }
  CHECK_OK(coro_await(t, NULL));
  coro_future_release(t);
  return NULL;
}

static void test_compact_cancel_and_timeout(void **state) {
  (void)state;
  assert_run_ok(cancel_main);
}

/* ---- other waits refuse -------------------------------------------------------------- */

static coro_lock *lk;
static coro_event *ev;
static coro_queue *qu;
static coro_chan *ch;
static int locker_holds;

/* Holds the lock while the refuser wants it. */
static void *locker(void *arg) {
  (void)arg;
  while (!locker_holds) CHECK_OK(coro_yield());
  CHECK_OK(coro_lock_acquire(lk));
  while (locker_holds) CHECK_OK(coro_yield());
  CHECK_OK(coro_lock_release(lk));
  return NULL;
}

static void *refuser(void *arg) {
  (void)arg;
  /* Calls that would have to wait: -EPERM, and nothing taken. */
  CHECK_OK(coro_lock_acquire(lk)); /* free: no wait */
  CHECK_OK(coro_lock_release(lk));
  locker_holds = 1;
  CHECK_OK(coro_yield()); /* the locker takes it */
  CHECK_OK(coro_yield());
  CHECK_EQ(coro_lock_locked(lk), 1);
  CHECK_ERR(coro_lock_acquire(lk), CORO_EPERM);
  CHECK_ERR(coro_event_wait(ev), CORO_EPERM);
  void *item = NULL;
  CHECK_ERR(coro_queue_put(qu, VAL(4)), CORO_EPERM); /* full */
  CHECK_EQ(coro_queue_size(qu), 1);
  CHECK_OK(coro_queue_get(qu, &item)); /* no wait needed: it works */
  CHECK_PTR_EQ(item, VAL(3));
  CHECK_ERR(coro_queue_get(qu, &item), CORO_EPERM); /* empty */
  CHECK_OK(coro_queue_put(qu, VAL(3)));
  int v = 5;
  CHECK_ERR(coro_chan_send(ch, &v), CORO_EPERM);
  coro_future *fs[1] = {promise};
  CHECK_ERR(coro_gather(fs, 1, NULL, NULL), CORO_EPERM);
  CHECK_ERR(coro_wait_for(promise, 10, NULL), CORO_EPERM);
  CHECK_ERR(coro_wait_fd(0, CORO_READABLE, 10), CORO_EPERM);
  /* Calls that never wait still work. */
  CHECK_ERR(coro_lock_try_acquire(lk), CORO_EAGAIN);
  locker_holds = 0;
  CHECK_OK(coro_event_set(ev));
  /* And so do its own waits. */
  CHECK_OK(coro_sleep(1));
  return VAL(1);
}

static void *refuse_main(void *arg) {
  (void)arg;
  CHECK_OK(coro_lock_new(&lk));
  CHECK_OK(coro_event_new(&ev));
  CHECK_OK(coro_queue_new(&qu, CORO_QUEUE_FIFO, 1, NULL));
  CHECK_OK(coro_queue_put(qu, VAL(3)));
  CHECK_OK(coro_chan_new(&ch, sizeof(int), 0));
  CHECK_OK(coro_future_new(&promise));
  locker_holds = 0;
  coro_future *l = coro_test_spawn(locker, NULL);
  coro_future *f = spawn_compact(refuser, NULL);
  void *v = NULL;
  CHECK_OK(coro_await(f, &v));
  CHECK_PTR_EQ(v, VAL(1));
  coro_future_release(f);
  CHECK_OK(coro_test_join(l));
  CHECK_EQ(coro_event_is_set(ev), 1);
  void *item = NULL;
  CHECK_OK(coro_queue_get(qu, &item));
  CHECK_PTR_EQ(item, VAL(3));
  CHECK_OK(coro_future_resolve(promise, NULL));
  coro_future_release(promise);
  coro_chan_free(ch);
  coro_queue_free(qu);
  coro_event_free(ev);
  coro_lock_free(lk);
  return NULL;
}

static void test_compact_other_waits_refused(void **state) {
  (void)state;
  assert_run_ok(refuse_main);
}

/* ---- options ---------------------------------------------------------------------- */

static void *nothing(void *arg) { return arg; }

static void *opts_main(void *arg) {
  (void)arg;
  coro_future *f = NULL;
  coro_task_opts o = {.flags = 0x80};
  CHECK_ERR(coro_spawn_opts(&f, nothing, NULL, &o), CORO_EINVAL);
  o.flags = CORO_TASK_COMPACT;
  o.stack_size = 64 * 1024; /* not the loop's default */
  CHECK_ERR(coro_spawn_opts(&f, nothing, NULL, &o), CORO_EINVAL);
  o.stack_size = 256 * 1024; /* the default, said out loud */
  CHECK_OK(coro_spawn_opts(&f, nothing, VAL(5), &o));
  void *v = NULL;
  CHECK_OK(coro_await(f, &v));
  CHECK_PTR_EQ(v, VAL(5));
  coro_future_release(f);
  return NULL;
}

static void test_compact_bad_options(void **state) {
  (void)state;
  assert_run_ok(opts_main);
}

/* ---- shutdown with compacted tasks ------------------------------------------------------ */

static int unwound;

static void *forever_counted(void *arg) {
  (void)arg;
  char local[100];
  memset(local, 'x', sizeof(local));
  int r = coro_sleep(CORO_FOREVER);
  if (r == CORO_ECANCELED && local[99] == 'x') unwound++;
  return NULL;
}

static void *shutdown_main(void *arg) {
  (void)arg;
  unwound = 0;
  for (int i = 0; i < 50; i++) {
    coro_future *f = spawn_compact(forever_counted, NULL);
    coro_future_release(f);
  }
  CHECK_OK(coro_sleep(2));
  if (COMPACTS) CHECK_GE(stats_now().compacted, 49);
  return NULL; /* the loop cancels them; each is copied back to unwind */
}

static void test_compact_shutdown_cancels_compacted(void **state) {
  (void)state;
  assert_run_ok(shutdown_main);
  assert_int_equal(unwound, 50);
}

/* ---- a copy that cannot be allocated ------------------------------------------------------ */

static void *short_sleeper(void *arg) {
  (void)arg;
  CHECK_OK(coro_sleep(20));
  return VAL(2);
}

static void *nomem_main(void *arg) {
  (void)arg;
  coro_future *a = spawn_compact(short_sleeper, NULL);
  CHECK_OK(coro_sleep(2)); /* a sleeps, resident on the shared stack */
  coro_future *b = spawn_compact(short_sleeper, NULL);
  /* b's first step must copy a out: that allocation fails, so b gets a
   * shared stack of its own and a stays where it is. (Without compaction
   * b's step allocates an ordinary stack instead, which would fail.) */
  if (COMPACTS) coro_test_fail_alloc_after(1);
  CHECK_OK(coro_sleep(2));
  coro_test_fail_alloc_after(0);
  if (COMPACTS) {
    coro_stats st = stats_now();
    CHECK_EQ(st.compacted, 0);
    CHECK_EQ(st.shared_stacks, 2);
  }
  void *v = NULL;
  CHECK_OK(coro_await(a, &v));
  CHECK_PTR_EQ(v, VAL(2));
  CHECK_OK(coro_await(b, &v));
  CHECK_PTR_EQ(v, VAL(2));
  coro_future_release(a);
  coro_future_release(b);
  return NULL;
}

static void test_compact_copy_enomem(void **state) {
  (void)state;
  assert_run_ok(nomem_main);
}

/* ---- compact and eager together ------------------------------------------------------------ */

static void *eager_compact_child(void *arg) {
  uintptr_t n = (uintptr_t)arg;
  coro_test_note("c");
  CHECK_OK(coro_sleep(2));
  return VAL(n * 2);
}

static void *eager_compact_parent(void *arg) {
  (void)arg;
  coro_task_opts o = {.flags = CORO_TASK_COMPACT | CORO_TASK_EAGER};
  coro_future *fs[10];
  for (uintptr_t i = 0; i < 10; i++) {
    CHECK_OK(coro_spawn_opts(&fs[i], eager_compact_child, VAL(i), &o));
    coro_test_note("p");
  }
  uintptr_t sum = 0;
  for (int i = 0; i < 10; i++) {
    void *v = NULL;
    CHECK_OK(coro_await(fs[i], &v));
    sum += (uintptr_t)v;
    coro_future_release(fs[i]);
  }
  return VAL(sum);
}

static void *eager_main(void *arg) {
  (void)arg;
  coro_test_log_reset();
  coro_future *p = spawn_compact(eager_compact_parent, NULL);
  void *v = NULL;
  CHECK_OK(coro_await(p, &v));
  CHECK_PTR_EQ(v, VAL(90));
  coro_future_release(p);
  /* each child ran inside its spawn call */
  CHECK_STREQ(coro_test_log(), "cpcpcpcpcpcpcpcpcpcp");
  return NULL;
}

static void test_compact_eager_children(void **state) {
  (void)state;
  assert_run_ok(eager_main);
}

/* ---- a resident that cannot be compacted -------------------------------------------------- */
/* No public call lets a compact task wait elsewhere, but the scheduler does
 * not rely on that: a compacted task whose stack is held by a resident in
 * some other wait waits for it to leave that wait. Made here with the
 * internal suspension call. */

static coro__task *pinned;
static int order_a, order_b, order_clock;

static void *homed_a(void *arg) {
  (void)arg;
  CHECK_OK(coro_sleep(2)); /* compacted when pinner starts */
  order_a = ++order_clock;
  return NULL;
}

static void *pinner(void *arg) {
  (void)arg;
  pinned = coro__task_current();
  CHECK_OK(coro__task_suspend(pinned, coro__cancel_abort, NULL, "pinned"));
  order_b = ++order_clock; /* before a could come back */
  CHECK_OK(coro_sleep(1)); /* compactable: a may come back now */
  return NULL;
}

static void *pinned_main(void *arg) {
  (void)arg;
  order_a = order_b = order_clock = 0;
  coro_future *a = spawn_compact(homed_a, NULL);
  CHECK_OK(coro_yield()); /* a starts and sleeps */
  coro_future *b = spawn_compact(pinner, NULL);
  CHECK_OK(coro_sleep(20)); /* a's sleep ends meanwhile: it must wait */
  if (COMPACTS) {
    CHECK_EQ(order_a, 0);
    CHECK_PTR_NE(coro__task_cx(coro__task_of(a))->saved, NULL);
  }
  coro__task_wake(pinned, 0);
  CHECK_OK(coro_await(b, NULL));
  CHECK_OK(coro_await(a, NULL));
  if (COMPACTS) {
    CHECK_EQ(order_b, 1);
    CHECK_EQ(order_a, 2);
  } else {
    CHECK_GT(order_a, 0); /* its own stack: it did not wait for b */
    CHECK_GT(order_b, 0);
  }
  coro_future_release(a);
  coro_future_release(b);
  return NULL;
}

static void test_compact_pinned_resident_waited_for(void **state) {
  (void)state;
  assert_run_ok(pinned_main);
}

/* ---- stack overflow still caught ------------------------------------------------------------ */

static unsigned dive(unsigned n) {
  volatile char pad[4096];
  pad[0] = (char)n;
  return n == 0 ? (unsigned)pad[0] : dive(n + 1) + (unsigned)pad[0];
}

static void *overflow_body(void *arg) {
  (void)arg;
  CHECK_OK(coro_sleep(1)); /* compacted once, then copied back */
  return VAL(dive(1));
}

static void *overflow_main(void *arg) {
  (void)arg;
  coro_task_opts o = {.name = "compact-diver", .flags = CORO_TASK_COMPACT};
  coro_future *other = spawn_compact(sleepy_child, NULL);
  coro_future *f;
  if (coro_spawn_opts(&f, overflow_body, NULL, &o) != 0) return NULL;
  coro_await(f, NULL);
  coro_await(other, NULL);
  return NULL;
}

static void overflow_child(void *arg) {
  (void)arg;
  coro_run(overflow_main, NULL, NULL);
  _exit(3); /* not reached if the guard page works */
}

static void test_compact_overflow_hits_guard(void **state) {
  (void)state;
  char report[1024];
  int st = coro_test_in_child_stderr(overflow_child, NULL, 20000, report,
                                     sizeof(report));
  assert_true(st != -1);
#ifdef CORO__ASAN
  assert_true(WIFSIGNALED(st) ||
              (WIFEXITED(st) && WEXITSTATUS(st) != 0 && WEXITSTATUS(st) != 3));
#else
  assert_true(WIFSIGNALED(st));
  assert_int_equal(WTERMSIG(st), SIGSEGV);
  assert_non_null(strstr(report, "task 'compact-diver' overflowed its stack"));
#endif
}

int main(int argc, char **argv) {
  const struct CMUnitTest tests[] = {
#define T(x) cmocka_unit_test_setup_teardown(x, coro_test_setup, coro_test_teardown)
    T(test_compact_sleepers_keep_locals),
    T(test_compact_deep_frames),
    T(test_compact_await_and_yield),
    T(test_compact_cancel_and_timeout),
    T(test_compact_other_waits_refused),
    T(test_compact_bad_options),
    T(test_compact_shutdown_cancels_compacted),
    T(test_compact_copy_enomem),
    T(test_compact_eager_children),
    T(test_compact_pinned_resident_waited_for),
    T(test_compact_overflow_hits_guard),
#undef T
  };
  return coro_test_main(argc, argv, tests, NULL, NULL);
}
