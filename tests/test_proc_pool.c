/* SPDX-License-Identifier: MIT */
/* Process pools: round trips of bytes, every way a worker can die (SIGSEGV,
 * abort, _exit, SIGKILL from inside and from outside), time limits,
 * cancellation of queued and running jobs, shutdown with queued and running
 * jobs (waiting, bounded with stuck reports, from a task and from a plain
 * thread), payloads of several MiB both ways, the default pool, the loop's
 * end, workers dying with their parent, a program with threads, and 1,000
 * jobs with injected crashes and time-outs. Every test ends with no worker
 * process, zombie or descriptor left behind.
 *
 * The workers are this test binary re-executed: the job functions below run
 * in them. */
#include "helpers.h"

#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "exec/proc_pool.h"

/* ---- job functions (run in the workers) ------------------------------------ */

enum {
  K_OK,       /* returns the 4 bytes of its request's kind */
  K_SEGV,
  K_ABORT,
  K_EXIT3,
  K_SELFKILL, /* SIGKILL from inside */
  K_SLEEP,    /* sleeps arg ms, then as K_OK */
  K_HANG,     /* sleeps until killed */
  K_PID,      /* returns its pid */
  K_EMPTY,    /* succeeds with no bytes */
  K_FAIL,     /* returns -EDOM */
  K_POSITIVE, /* returns 7: not a status */
  K_TOUCH     /* creates the file named by path */
};

typedef struct req {
  int kind;
  int arg;
  char path[64];
} req;

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

static int job_kind(const void *in, size_t n, void **out, size_t *out_len) {
  req r;
  if (n != sizeof(r)) return -EINVAL;
  memcpy(&r, in, sizeof(r));
  switch (r.kind) {
  case K_SEGV: raise(SIGSEGV); break;
  case K_ABORT: abort();
  case K_EXIT3: _exit(3);
  case K_SELFKILL: kill(getpid(), SIGKILL); break;
  case K_SLEEP: sleep_ms(r.arg); break;
  case K_HANG: for (;;) sleep_ms(1000);
  case K_EMPTY: return 0;
  case K_FAIL: return -EDOM;
  case K_POSITIVE: return 7;
  case K_TOUCH: {
    FILE *f = fopen(r.path, "w");
    if (f != NULL) fclose(f);
    break;
  }
  case K_PID: {
    int *p = malloc(sizeof(int));
    *p = (int)getpid();
    *out = p;
    *out_len = sizeof(int);
    return 0;
  }
  default: break;
  }
  int *p = malloc(sizeof(int));
  *p = r.kind;
  *out = p;
  *out_len = sizeof(int);
  return 0;
}

static int job_echo(const void *in, size_t n, void **out, size_t *out_len) {
  void *p = malloc(n > 0 ? n : 1);
  if (p == NULL) return -ENOMEM;
  memcpy(p, in, n);
  *out = p;
  *out_len = n;
  return 0;
}

/* The input reversed, or (input of 8 bytes "gen:" + u32) that many bytes of
 * a pattern. */
static int job_rev(const void *in, size_t n, void **out, size_t *out_len) {
  if (n == 8 && memcmp(in, "gen:", 4) == 0) {
    uint32_t len;
    memcpy(&len, (const char *)in + 4, 4);
    unsigned char *p = malloc(len);
    if (p == NULL) return -ENOMEM;
    for (uint32_t i = 0; i < len; i++) p[i] = (unsigned char)(i * 7 + 3);
    *out = p;
    *out_len = len;
    return 0;
  }
  unsigned char *p = malloc(n > 0 ? n : 1);
  if (p == NULL) return -ENOMEM;
  const unsigned char *s = in;
  for (size_t i = 0; i < n; i++) p[i] = s[n - 1 - i];
  *out = p;
  *out_len = n;
  return 0;
}

/* In a worker of test_broken_pool: die before saying hello, as a worker of
 * a program that cannot be one would. Runs before libcoro's constructor. */
__attribute__((constructor(101))) static void maybe_fail_start(void) {
  if (getenv("CORO_PROC_WORKER_V1") != NULL &&
      getenv("CORO_TEST_WORKER_DIES") != NULL)
    _exit(7);
}

/* Ignores its input and sleeps until killed. */
static int job_hang_any(const void *in, size_t n, void **out, size_t *out_len) {
  (void)in, (void)n, (void)out, (void)out_len;
  for (;;) sleep_ms(1000);
  return 0;
}

/* ---- helpers (parent) ------------------------------------------------------- */

static int count_fds(void) {
  int n = 0;
  DIR *d = opendir("/proc/self/fd");
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    if (e->d_name[0] != '.') n++;
  closedir(d);
  return n - 1; /* the DIR's own */
}

/* Processes (zombies included) whose parent is this process. */
static int count_children(void) {
  int n = 0;
  pid_t me = getpid();
  DIR *d = opendir("/proc");
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    char path[300], buf[512];
    snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
    FILE *f = fopen(path, "r");
    if (f == NULL) continue;
    size_t k = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[k] = '\0';
    char *rp = strrchr(buf, ')');
    int ppid = 0;
    char st;
    if (rp != NULL && sscanf(rp + 1, " %c %d", &st, &ppid) == 2 && ppid == me)
      n++;
  }
  closedir(d);
  return n;
}

/* 1 once pid no longer runs (gone, or a zombie of another parent). */
static int process_gone(int pid) {
  char path[64], buf[512];
  snprintf(path, sizeof(path), "/proc/%d/stat", pid);
  FILE *f = fopen(path, "r");
  if (f == NULL) return 1;
  size_t k = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  buf[k] = '\0';
  char *rp = strrchr(buf, ')');
  return rp != NULL && (rp[2] == 'Z' || rp[2] == 'X');
}

static int wait_gone(int pid, int ms) {
  int64_t end = coro_test_now_ms() + ms;
  while (!process_gone(pid)) {
    if (coro_test_now_ms() > end) return 0;
    usleep(5000);
  }
  return 1;
}

static int fds_at_start;

static int setup(void **state) {
  fds_at_start = count_fds();
  return coro_test_setup(state);
}

/* Nothing left behind: no worker process, no zombie, no descriptor. */
static int teardown(void **state) {
  int64_t end = coro_test_now_ms() + 5000;
  while (count_children() > 0 && coro_test_now_ms() < end) usleep(5000);
  assert_int_equal(count_children(), 0);
  if (count_fds() != fds_at_start) {
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
      char path[300], to[256];
      snprintf(path, sizeof(path), "/proc/self/fd/%s", e->d_name);
      ssize_t k = readlink(path, to, sizeof(to) - 1);
      to[k > 0 ? k : 0] = '\0';
      fprintf(stderr, "fd %s -> %s\n", e->d_name, to);
    }
    closedir(d);
  }
  assert_int_equal(count_fds(), fds_at_start);
  return coro_test_teardown(state);
}

static req mkreq(int kind, int arg) {
  req r;
  memset(&r, 0, sizeof(r));
  r.kind = kind;
  r.arg = arg;
  return r;
}

static int submit(coro_future **f, coro_pool *p, int kind, int arg,
                  int64_t timeout_ms) {
  req r = mkreq(kind, arg);
  coro_job_opts o;
  memset(&o, 0, sizeof(o));
  o.timeout_ms = timeout_ms;
  return coro_run_in_process_opts(f, p, job_kind, &r, sizeof(r), &o);
}

/* From a task: until the pool has all its workers ready again. */
static int wait_full(coro_pool *p, int ms) {
  int64_t end = coro_test_now_ms() + ms;
  for (;;) {
    coro__proc_stats st;
    coro__proc_pool_stats(p, &st);
    if (st.ready == st.size && st.live == st.size) return 1;
    if (coro_test_now_ms() > end) return 0;
    coro_sleep(5);
  }
}

/* From a task: the pid of the worker running f (0 if it never starts). */
static int wait_pid(coro_future *f, int ms) {
  int64_t end = coro_test_now_ms() + ms;
  int pid;
  while ((pid = coro__proc_job_pid(f)) == 0 && coro_test_now_ms() < end)
    coro_sleep(2);
  return pid;
}

/* ---- round trips ------------------------------------------------------------ */

static void *roundtrip_main(void *arg) {
  (void)arg;
  coro_pool *p;
  CHECK_EQ(coro_process_pool_new(&p, 2), 0);
  coro_future *f;
  CHECK_EQ(coro_run_in_process(&f, p, job_echo, "hello", 5), 0);
  const void *d = NULL;
  size_t n = 0;
  CHECK_ERR(coro_future_bytes(f, &d, &n), -EAGAIN); /* still pending */
  void *v = NULL;
  CHECK_EQ(coro_await(f, &v), 0);
  CHECK_EQ(coro_future_bytes(f, &d, &n), 0);
  CHECK_EQ(n, 5);
  CHECK(d != NULL && memcmp(d, "hello", 5) == 0);
  CHECK_PTR_EQ(v, d);
  coro_future_release(f);

  /* Empty input, empty output. */
  CHECK_EQ(coro_run_in_process(&f, p, job_echo, NULL, 0), 0);
  CHECK_EQ(coro_await(f, NULL), 0);
  CHECK_EQ(coro_future_bytes(f, &d, &n), 0);
  CHECK_EQ(n, 0);
  coro_future_release(f);
  CHECK_EQ(submit(&f, p, K_EMPTY, 0, 0), 0);
  CHECK_EQ(coro_await(f, NULL), 0);
  CHECK_EQ(coro_future_bytes(f, &d, &n), 0);
  CHECK_EQ(n, 0);
  coro_future_release(f);

  /* A job's own status comes back as it is; a positive one is refused. */
  CHECK_EQ(submit(&f, p, K_FAIL, 0, 0), 0);
  CHECK_ERR(coro_await(f, NULL), -EDOM);
  CHECK_ERR(coro_future_bytes(f, &d, &n), -EDOM);
  coro_future_release(f);
  CHECK_EQ(submit(&f, p, K_POSITIVE, 0, 0), 0);
  CHECK_ERR(coro_await(f, NULL), -EINVAL);
  coro_future_release(f);

  /* Many at once, in order of submission or not, all come back. */
  coro_future *fs[40];
  int sts[40];
  for (int i = 0; i < 40; i++) {
    char b[16];
    int len = snprintf(b, sizeof(b), "job %d", i);
    CHECK_EQ(coro_run_in_process(&fs[i], p, job_echo, b, (size_t)len), 0);
  }
  CHECK_EQ(coro_gather(fs, 40, NULL, sts), 0);
  for (int i = 0; i < 40; i++) {
    char b[16];
    int len = snprintf(b, sizeof(b), "job %d", i);
    CHECK_EQ(sts[i], 0);
    CHECK_EQ(coro_future_bytes(fs[i], &d, &n), 0);
    CHECK(n == (size_t)len && memcmp(d, b, n) == 0);
    coro_future_release(fs[i]);
  }
  CHECK_EQ(coro_pool_shutdown(p, 1), 0);
  coro_pool_free(p);
  return NULL;
}

static void test_roundtrip(void **state) {
  (void)state;
  assert_run_ok(roundtrip_main);
}

/* ---- misuse ------------------------------------------------------------------- */

static coro_pool *shared_pool;

static void *bad_args_main(void *arg) {
  (void)arg;
  coro_pool *p = shared_pool;
  coro_future *f = NULL;
  CHECK_ERR(coro_run_in_process(NULL, p, job_echo, "x", 1), -EINVAL);
  CHECK_ERR(coro_run_in_process(&f, p, NULL, "x", 1), -EINVAL);
  CHECK_ERR(coro_run_in_process(&f, p, job_echo, NULL, 1), -EINVAL);
  coro_job_opts o;
  memset(&o, 0, sizeof(o));
  o.timeout_ms = -2;
  CHECK_ERR(coro_run_in_process_opts(&f, p, job_echo, "x", 1, &o), -EINVAL);
  /* A "function" that lies in no loaded object's code. */
  static char not_code[16];
  coro_proc_fn bogus;
  uintptr_t a = (uintptr_t)not_code;
  memcpy(&bogus, &a, sizeof(bogus));
  CHECK_ERR(coro_run_in_process(&f, p, bogus, "x", 1), -EINVAL);
  CHECK(f == NULL);
  /* coro_future_bytes wants a process job's future. */
  coro_future *pr;
  CHECK_EQ(coro_future_new(&pr), 0);
  const void *d;
  size_t n;
  CHECK_ERR(coro_future_bytes(pr, &d, &n), -EINVAL);
  CHECK_ERR(coro_future_bytes(NULL, &d, &n), -EINVAL);
  coro_future_release(pr);
  /* Not a promise: cannot be resolved by hand. */
  CHECK_EQ(coro_run_in_process(&f, p, job_echo, "x", 1), 0);
  CHECK_ERR(coro_future_resolve(f, NULL), -EPERM);
  CHECK_EQ(coro_await(f, NULL), 0);
  coro_future_release(f);
  return NULL;
}

static void test_bad_args(void **state) {
  (void)state;
  coro_pool *p;
  assert_coro_err(coro_process_pool_new(NULL, 1), -EINVAL);
  assert_coro_err(coro_process_pool_new(&p, 5000), -EINVAL);
  assert_coro_ok(coro_process_pool_new(&p, 1));
  /* Outside a loop: no future can be made. */
  coro_future *f = NULL;
  assert_coro_err(coro_run_in_process(&f, p, job_echo, "x", 1), -EPERM);
  assert_null(f);
  shared_pool = p;
  assert_run_ok(bad_args_main);
  /* Shut down: no more jobs. */
  assert_coro_ok(coro_pool_shutdown(p, 1));
  assert_coro_ok(coro_pool_shutdown(p, 1)); /* again: harmless */
  coro__proc_stats st;
  coro__proc_pool_stats(p, &st);
  assert_int_equal(st.live, 0);
  coro_pool_free(p);
  assert_coro_err(coro_pool_shutdown(NULL, 1), -EINVAL);
  coro_pool_free(NULL);
}

static coro_pool *closed_pool;
static void *closed_main(void *arg) {
  (void)arg;
  coro_future *f = NULL;
  CHECK_ERR(coro_run_in_process(&f, closed_pool, job_echo, "x", 1), -EPIPE);
  CHECK(f == NULL);
  return NULL;
}

static void test_closed_pool(void **state) {
  (void)state;
  assert_coro_ok(coro_process_pool_new(&closed_pool, 1));
  assert_coro_ok(coro_pool_shutdown(closed_pool, 0));
  assert_run_ok(closed_main);
  coro_pool_free(closed_pool);
}

static void test_error_names(void **state) {
  (void)state;
  assert_string_equal(coro_strerror(CORO_EWORKER_SIGNAL(SIGSEGV)),
                      "worker process killed by signal 11 (SIGSEGV)");
  assert_string_equal(coro_err_name(CORO_EWORKER_SIGNAL(SIGSEGV)),
                      "EWORKER_SIGSEGV");
  assert_string_equal(coro_strerror(CORO_EWORKER_SIGNAL(SIGKILL)),
                      "worker process killed by signal 9 (SIGKILL)");
  assert_string_equal(coro_strerror(CORO_EWORKER_EXIT(3)),
                      "worker process exited with status 3 before replying");
  assert_string_equal(coro_err_name(CORO_EWORKER_EXIT(0)), "EWORKER_EXIT_0");
  assert_string_equal(coro_err_name(CORO_EWORKER_START), "EWORKER_START");
  assert_string_equal(coro_strerror(CORO_EWORKER_START),
                      "worker process could not be started");
  assert_int_equal(CORO_WORKER_SIGNAL_OF(CORO_EWORKER_SIGNAL(SIGABRT)),
                   SIGABRT);
  assert_int_equal(CORO_WORKER_EXIT_OF(CORO_EWORKER_EXIT(255)), 255);
  assert_int_equal(CORO_WORKER_EXIT_OF(CORO_EWORKER_EXIT(0)), 0);
  assert_int_equal(CORO_WORKER_SIGNAL_OF(-EINVAL), 0);
  assert_int_equal(CORO_WORKER_EXIT_OF(-EINVAL), -1);
  assert_int_equal(CORO_WORKER_SIGNAL_OF(CORO_EWORKER_EXIT(3)), 0);
  assert_int_equal(CORO_WORKER_EXIT_OF(CORO_EWORKER_SIGNAL(9)), -1);
  assert_int_equal(CORO_WORKER_EXIT_OF(CORO_EWORKER_START), -1);
  assert_int_equal(CORO_WORKER_SIGNAL_OF(CORO_EWORKER_START), 0);
  assert_true(CORO_EWORKER_START < CORO_EABANDONED);
  assert_string_equal(coro_err_name(-5099), "UNKNOWN");
}

/* ---- worker deaths ------------------------------------------------------------ */

static void *crash_main(void *arg) {
  (void)arg;
  coro_pool *p;
  CHECK_EQ(coro_process_pool_new(&p, 2), 0);
  static const struct {
    int kind, want;
  } cases[] = {
      {K_SEGV, CORO_EWORKER_SIGNAL(SIGSEGV)},
      {K_ABORT, CORO_EWORKER_SIGNAL(SIGABRT)},
      {K_EXIT3, CORO_EWORKER_EXIT(3)},
      {K_SELFKILL, CORO_EWORKER_SIGNAL(SIGKILL)},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    coro_future *f, *ok;
    CHECK_EQ(submit(&f, p, cases[i].kind, 0, 0), 0);
    CHECK_EQ(coro_await(f, NULL), cases[i].want);
    coro_future_release(f);
    /* Only that job failed: the pool is whole again and works. */
    CHECK(wait_full(p, 20000));
    CHECK_EQ(submit(&ok, p, K_OK, 0, 0), 0);
    CHECK_EQ(coro_await(ok, NULL), 0);
    coro_future_release(ok);
  }
  /* SIGKILL from outside, while the job runs. */
  coro_future *f;
  CHECK_EQ(submit(&f, p, K_HANG, 0, 0), 0);
  int pid = wait_pid(f, 20000);
  CHECK_GT(pid, 0);
  if (pid > 0) kill(pid, SIGKILL);
  CHECK_EQ(coro_await(f, NULL), CORO_EWORKER_SIGNAL(SIGKILL));
  coro_future_release(f);
  CHECK(wait_full(p, 20000));
  coro__proc_stats st;
  coro__proc_pool_stats(p, &st);
  CHECK_EQ(st.died, 5);
  CHECK_EQ(st.spawned, 7);
  CHECK_EQ(coro_pool_shutdown(p, 1), 0);
  coro_pool_free(p);
  return NULL;
}

static void test_crashes(void **state) {
  (void)state;
  assert_run_ok(crash_main);
}

/* ---- time limits and cancellation ------------------------------------------------- */

static void *timeout_main(void *arg) {
  (void)arg;
  coro_pool *p;
  CHECK_EQ(coro_process_pool_new(&p, 2), 0);
  CHECK(wait_full(p, 20000));
  coro_future *f, *g;
  int64_t t0 = coro_test_now_ms();
  CHECK_EQ(submit(&f, p, K_HANG, 0, 150), 0);
  CHECK_EQ(submit(&g, p, K_SLEEP, 20, 20000), 0); /* well within its limit */
  CHECK_ERR(coro_await(f, NULL), -ETIMEDOUT);
  int64_t took = coro_test_now_ms() - t0;
  CHECK_GE(took, 150);
  CHECK_LT(took, 15000);
  CHECK_EQ(coro_await(g, NULL), 0);
  coro_future_release(f);
  coro_future_release(g);
  CHECK(wait_full(p, 20000));
  /* The time in the queue does not count: with one busy worker, a queued
   * job with a limit shorter than its wait still runs. */
  coro_pool *one;
  CHECK_EQ(coro_process_pool_new(&one, 1), 0);
  CHECK_EQ(submit(&f, one, K_SLEEP, 300, 0), 0);
  CHECK_EQ(submit(&g, one, K_OK, 0, 200), 0);
  CHECK_EQ(coro_await(g, NULL), 0);
  CHECK_EQ(coro_await(f, NULL), 0);
  coro_future_release(f);
  coro_future_release(g);
  coro_pool_free(one);
  CHECK_EQ(coro_pool_shutdown(p, 1), 0);
  coro_pool_free(p);
  return NULL;
}

static void test_timeout(void **state) {
  (void)state;
  assert_run_ok(timeout_main);
}

static void *cancel_running_main(void *arg) {
  (void)arg;
  coro_pool *p;
  CHECK_EQ(coro_process_pool_new(&p, 1), 0);
  coro_future *f;
  CHECK_EQ(submit(&f, p, K_HANG, 0, 0), 0);
  int pid = wait_pid(f, 20000);
  CHECK_GT(pid, 0);
  int64_t t0 = coro_test_now_ms();
  CHECK_EQ(coro_cancel(f), 0);
  CHECK_ERR(coro_await(f, NULL), -ECANCELED); /* released at once */
  CHECK_LT(coro_test_now_ms() - t0, 1000);
  coro_future_release(f);
  /* Its worker was killed and replaced. */
  int64_t end = coro_test_now_ms() + 10000;
  while (!process_gone(pid) && coro_test_now_ms() < end) coro_sleep(5);
  CHECK(process_gone(pid));
  CHECK(wait_full(p, 20000));
  /* coro_wait_for: the time-out cancels the job. */
  CHECK_EQ(submit(&f, p, K_HANG, 0, 0), 0);
  CHECK_ERR(coro_wait_for(f, 200, NULL), -ETIMEDOUT);
  coro_future_release(f);
  CHECK(wait_full(p, 20000));
  CHECK_EQ(submit(&f, p, K_OK, 0, 0), 0);
  CHECK_EQ(coro_await(f, NULL), 0);
  coro_future_release(f);
  coro_pool_free(p);
  return NULL;
}

static void test_cancel_running(void **state) {
  (void)state;
  assert_run_ok(cancel_running_main);
}

static void *awaiter(void *arg) {
  coro_future *f = arg;
  return coro_fail(coro_await(f, NULL));
}

static void *cancel_queued_main(void *arg) {
  (void)arg;
  coro_pool *p;
  CHECK_EQ(coro_process_pool_new(&p, 1), 0);
  char path[64];
  snprintf(path, sizeof(path), "/tmp/coro_proc_touch_%d", (int)getpid());
  unlink(path);
  coro_future *busy, *q1, *q2, *t;
  CHECK(wait_full(p, 20000));
  CHECK_EQ(submit(&busy, p, K_SLEEP, 300, 0), 0);
  req r = mkreq(K_TOUCH, 0);
  snprintf(r.path, sizeof(r.path), "%s", path);
  CHECK_EQ(coro_run_in_process(&q1, p, job_kind, &r, sizeof(r)), 0);
  CHECK_EQ(coro_run_in_process(&q2, p, job_kind, &r, sizeof(r)), 0);
  coro__proc_stats st;
  coro__proc_pool_stats(p, &st);
  CHECK_EQ(st.queued, 2);
  /* Cancelled directly, and through the task that awaits it. */
  CHECK_EQ(coro_cancel(q1), 0);
  CHECK_ERR(coro_future_status(q1), -ECANCELED);
  CHECK_EQ(coro_spawn(&t, awaiter, q2), 0);
  CHECK_EQ(coro_sleep(10), 0);
  CHECK_EQ(coro_cancel(t), 0);
  CHECK_ERR(coro_await(t, NULL), -ECANCELED);
  CHECK_ERR(coro_future_status(q2), -ECANCELED);
  coro__proc_pool_stats(p, &st);
  CHECK_EQ(st.queued, 0);
  CHECK_EQ(coro_await(busy, NULL), 0);
  /* The pool went on with nothing: they never ran. */
  coro_future *after;
  CHECK_EQ(submit(&after, p, K_OK, 0, 0), 0);
  CHECK_EQ(coro_await(after, NULL), 0);
  struct stat sb;
  CHECK_NE(stat(path, &sb), 0);
  unlink(path);
  coro_future_release(busy);
  coro_future_release(q1);
  coro_future_release(q2);
  coro_future_release(t);
  coro_future_release(after);
  coro_pool_free(p);
  return NULL;
}

static void test_cancel_queued(void **state) {
  (void)state;
  assert_run_ok(cancel_queued_main);
}

/* ---- shutdown --------------------------------------------------------------------- */

static void *shutdown_wait_main(void *arg) {
  (void)arg;
  coro_pool *p;
  CHECK_EQ(coro_process_pool_new(&p, 1), 0);
  coro_future *a, *b, *c, *late = NULL;
  CHECK_EQ(submit(&a, p, K_SLEEP, 200, 0), 0);
  CHECK_EQ(submit(&b, p, K_OK, 0, 0), 0);
  CHECK_EQ(submit(&c, p, K_OK, 0, 0), 0);
  CHECK_GT(wait_pid(a, 20000), 0);
  /* From a task: suspends (other tasks keep running) until the running
   * job has finished and the workers are gone; the queued ones end
   * cancelled. */
  CHECK_EQ(coro_pool_shutdown(p, 1), 0);
  CHECK_EQ(coro_future_status(a), 0);
  CHECK_ERR(coro_await(b, NULL), -ECANCELED);
  CHECK_ERR(coro_await(c, NULL), -ECANCELED);
  CHECK_ERR(submit(&late, p, K_OK, 0, 0), -EPIPE);
  coro__proc_stats st;
  coro__proc_pool_stats(p, &st);
  CHECK_EQ(st.live, 0);
  CHECK_EQ(st.running, 0);
  coro_future_release(a);
  coro_future_release(b);
  coro_future_release(c);
  coro_pool_free(p);
  return NULL;
}

static void test_shutdown_wait(void **state) {
  (void)state;
  assert_run_ok(shutdown_wait_main);
}

typedef struct stuck_log {
  int n;
  char name[32];
  int pid;
  uint64_t id;
  int64_t running_ms;
} stuck_log;

static void on_stuck(const coro_job_info *job, void *data) {
  stuck_log *l = data;
  l->n++;
  snprintf(l->name, sizeof(l->name), "%s", job->name);
  l->pid = job->pid;
  l->id = job->id;
  l->running_ms = job->running_ms;
}

static void *shutdown_stuck_main(void *arg) {
  (void)arg;
  coro_pool *p;
  CHECK_EQ(coro_process_pool_new(&p, 2), 0);
  coro_future *f, *q;
  req r = mkreq(K_HANG, 0);
  coro_job_opts o;
  memset(&o, 0, sizeof(o));
  o.name = "stuck-one";
  CHECK_EQ(coro_run_in_process_opts(&f, p, job_kind, &r, sizeof(r), &o), 0);
  int pid = wait_pid(f, 20000);
  CHECK_GT(pid, 0);
  stuck_log l;
  memset(&l, 0, sizeof(l));
  /* No wait: reports what still runs. */
  CHECK_ERR(coro_pool_shutdown_timeout(p, 0, on_stuck, &l), -ETIMEDOUT);
  CHECK_EQ(l.n, 1);
  memset(&l, 0, sizeof(l));
  CHECK_EQ(coro_pool_shutdown(p, 0), 0);
  CHECK_EQ(l.n, 0);
  int64_t t0 = coro_test_now_ms();
  CHECK_ERR(coro_pool_shutdown_timeout(p, 150, on_stuck, &l), -ETIMEDOUT);
  CHECK_GE(coro_test_now_ms() - t0, 150);
  CHECK_EQ(l.n, 1);
  CHECK(strcmp(l.name, "stuck-one") == 0);
  CHECK_EQ(l.pid, pid);
  CHECK_EQ(l.id, 1);
  CHECK_GE(l.running_ms, 150);
  CHECK_ERR(submit(&q, p, K_OK, 0, 0), -EPIPE);
  /* Freeing kills it: its job ends cancelled. */
  coro_pool_free(p);
  CHECK_ERR(coro_await(f, NULL), -ECANCELED);
  coro_future_release(f);
  return NULL;
}

static void test_shutdown_stuck(void **state) {
  (void)state;
  assert_run_ok(shutdown_stuck_main);
}

static void *blocking_shutdown(void *arg) {
  coro_pool *p = arg;
  intptr_t r = coro_pool_shutdown(p, 1);
  return (void *)r;
}

static void *shutdown_thread_main(void *arg) {
  (void)arg;
  coro_pool *p;
  CHECK_EQ(coro_process_pool_new(&p, 1), 0);
  coro_future *a, *b;
  CHECK_EQ(submit(&a, p, K_SLEEP, 150, 0), 0);
  CHECK_EQ(submit(&b, p, K_OK, 0, 0), 0);
  CHECK_GT(wait_pid(a, 20000), 0);
  pthread_t th;
  CHECK_EQ(pthread_create(&th, NULL, blocking_shutdown, p), 0);
  CHECK_EQ(coro_await(a, NULL), 0);
  CHECK_ERR(coro_await(b, NULL), -ECANCELED);
  void *rv;
  pthread_join(th, &rv);
  CHECK_EQ((intptr_t)rv, 0);
  coro_future_release(a);
  coro_future_release(b);
  coro_pool_free(p);
  return NULL;
}

static void test_shutdown_thread(void **state) {
  (void)state;
  assert_run_ok(shutdown_thread_main);
}

/* A task waiting in shutdown can be cancelled. */
static void *shutdown_waiter(void *arg) {
  return coro_fail(coro_pool_shutdown(arg, 1));
}

static void *shutdown_cancel_main(void *arg) {
  (void)arg;
  coro_pool *p;
  CHECK_EQ(coro_process_pool_new(&p, 1), 0);
  coro_future *f, *t;
  CHECK_EQ(submit(&f, p, K_HANG, 0, 0), 0);
  CHECK_GT(wait_pid(f, 20000), 0);
  CHECK_EQ(coro_spawn(&t, shutdown_waiter, p), 0);
  CHECK_EQ(coro_sleep(20), 0);
  CHECK_ERR(coro_future_status(t), CORO_PENDING);
  CHECK_EQ(coro_cancel(t), 0);
  CHECK_ERR(coro_await(t, NULL), -ECANCELED);
  coro_future_release(t);
  coro_pool_free(p);
  CHECK_ERR(coro_await(f, NULL), -ECANCELED);
  coro_future_release(f);
  return NULL;
}

static void test_shutdown_cancel(void **state) {
  (void)state;
  assert_run_ok(shutdown_cancel_main);
}

/* ---- large payloads ------------------------------------------------------------- */

static void *large_main(void *arg) {
  (void)arg;
  coro_pool *p;
  CHECK_EQ(coro_process_pool_new(&p, 2), 0);
  size_t n = 8u << 20;
  unsigned char *in = malloc(n);
  for (size_t i = 0; i < n; i++) in[i] = (unsigned char)(i * 13 + i / 4096);
  coro_future *f, *g;
  CHECK_EQ(coro_run_in_process(&f, p, job_rev, in, n), 0);
  /* Generated in the worker: 6 MiB out of 8 bytes in. */
  char genreq[8] = {'g', 'e', 'n', ':'};
  uint32_t glen = 6u << 20;
  memcpy(genreq + 4, &glen, 4);
  CHECK_EQ(coro_run_in_process(&g, p, job_rev, genreq, 8), 0);
  memset(in, 0, 16); /* the input was copied at submission */
  CHECK_EQ(coro_await(f, NULL), 0);
  CHECK_EQ(coro_await(g, NULL), 0);
  const unsigned char *d;
  size_t len;
  CHECK_EQ(coro_future_bytes(f, (const void **)&d, &len), 0);
  CHECK_EQ(len, n);
  int bad = 0;
  for (size_t i = 16; i < n && len == n; i++)
    if (d[n - 1 - i] != (unsigned char)(i * 13 + i / 4096)) bad++;
  CHECK_EQ(bad, 0);
  CHECK_EQ(coro_future_bytes(g, (const void **)&d, &len), 0);
  CHECK_EQ(len, glen);
  for (uint32_t i = 0; i < glen && len == glen; i++)
    if (d[i] != (unsigned char)(i * 7 + 3)) bad++;
  CHECK_EQ(bad, 0);
  coro_future_release(f);
  coro_future_release(g);
  free(in);
  coro_pool_free(p);
  return NULL;
}

static void test_large_payloads(void **state) {
  (void)state;
  assert_run_ok(large_main);
}

/* A worker killed while its 64 MiB input is still being written: the
 * write fails, the job says how the worker died, the pool recovers. */
static void *killed_mid_write_main(void *arg) {
  (void)arg;
  coro_pool *p;
  CHECK_EQ(coro_process_pool_new(&p, 1), 0);
  CHECK(wait_full(p, 20000));
  size_t n = 64u << 20;
  char *in = calloc(1, n);
  coro_future *f;
  CHECK_EQ(coro_run_in_process(&f, p, job_hang_any, in, n), 0);
  free(in);
  int pid = wait_pid(f, 20000);
  CHECK_GT(pid, 0);
  if (pid > 0) kill(pid, SIGKILL);
  CHECK_EQ(coro_await(f, NULL), CORO_EWORKER_SIGNAL(SIGKILL));
  coro_future_release(f);
  CHECK(wait_full(p, 20000));
  CHECK_EQ(coro_run_in_process(&f, p, job_echo, "ok", 2), 0);
  CHECK_EQ(coro_await(f, NULL), 0);
  coro_future_release(f);
  coro_pool_free(p);
  return NULL;
}

static void test_killed_mid_write(void **state) {
  (void)state;
  assert_run_ok(killed_mid_write_main);
}

/* ---- the default pool and the loop's end ----------------------------------------- */

static void *default_main(void *arg) {
  (void)arg;
  coro_future *f;
  CHECK_EQ(coro_run_in_process(&f, NULL, job_echo, "dflt", 4), 0);
  CHECK_EQ(coro_await(f, NULL), 0);
  const void *d;
  size_t n;
  CHECK_EQ(coro_future_bytes(f, &d, &n), 0);
  CHECK(n == 4 && memcmp(d, "dflt", 4) == 0);
  coro_future_release(f);
  /* A job still running at the loop's end is cancelled with it. */
  CHECK_EQ(submit(&f, NULL, K_HANG, 0, 0), 0);
  coro_future_release(f);
  return NULL;
}

static void test_default_pool(void **state) {
  (void)state;
  assert_run_ok(default_main);
  assert_int_equal(count_children(), 0); /* freed by coro_run, at once */
}

static coro_future *held;
static int held_pid;

static void *loop_end_main(void *arg) {
  coro_pool *p = arg;
  coro_future *f;
  /* One running, held by the program; one running, released; one queued. */
  CHECK_EQ(submit(&held, p, K_HANG, 0, 0), 0);
  CHECK_EQ(submit(&f, p, K_HANG, 0, 0), 0);
  held_pid = wait_pid(held, 20000);
  CHECK_GT(held_pid, 0);
  CHECK_GT(wait_pid(f, 20000), 0);
  coro_future_release(f);
  CHECK_EQ(submit(&f, p, K_OK, 0, 0), 0);
  coro_future_release(f);
  return NULL;
}

static void test_loop_end(void **state) {
  (void)state;
  coro_pool *p;
  assert_coro_ok(coro_process_pool_new(&p, 2));
  assert_coro_ok(coro_run(loop_end_main, p, NULL));
  assert_checks_passed();
  assert_int_equal(coro_future_status(held), -ECANCELED);
  coro_future_release(held);
  assert_true(wait_gone(held_pid, 10000));
  /* The pool lives on, whole, with nothing running. */
  int64_t end = coro_test_now_ms() + 20000;
  coro__proc_stats st;
  for (;;) {
    coro__proc_pool_stats(p, &st);
    if ((st.ready == 2 && st.running == 0) || coro_test_now_ms() > end) break;
    usleep(5000);
  }
  assert_int_equal(st.ready, 2);
  assert_int_equal(st.running, 0);
  assert_int_equal(st.queued, 0);
  coro_pool_free(p);
}

/* ---- the parent's death ---------------------------------------------------------- */

static int death_pipe[2];

static void *death_main(void *arg) {
  (void)arg;
  coro_pool *p;
  CHECK_EQ(coro_process_pool_new(&p, 1), 0);
  coro_future *f;
  CHECK_EQ(submit(&f, p, K_HANG, 0, 0), 0);
  int pid = wait_pid(f, 20000);
  if (write(death_pipe[1], &pid, sizeof(pid)) != sizeof(pid)) _exit(3);
  raise(SIGKILL); /* the parent dies with its pool running */
  return NULL;
}

static void death_child(void *arg) {
  (void)arg;
  close(death_pipe[0]);
  coro_run(death_main, NULL, NULL);
}

static void test_parent_death(void **state) {
  (void)state;
  assert_int_equal(pipe(death_pipe), 0);
  int st = coro_test_in_child(death_child, NULL, 60000);
  close(death_pipe[1]);
  int pid = 0;
  assert_int_equal(read(death_pipe[0], &pid, sizeof(pid)), sizeof(pid));
  close(death_pipe[0]);
  assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
  assert_true(pid > 0);
  assert_true(wait_gone(pid, 10000)); /* PR_SET_PDEATHSIG */
}

/* ---- a program with threads ------------------------------------------------------ */

static atomic_int stop_busy;
static pthread_mutex_t busy_mu = PTHREAD_MUTEX_INITIALIZER;

/* Holds a lock and the allocator's locks as often as it can: a fork in the
 * middle of this would hand the child locked mutexes. */
static void *busy_thread(void *arg) {
  (void)arg;
  while (!atomic_load(&stop_busy)) {
    pthread_mutex_lock(&busy_mu);
    void *m = malloc(1000);
    free(m);
    pthread_mutex_unlock(&busy_mu);
  }
  return NULL;
}

static void *threads_main(void *arg) {
  (void)arg;
  coro_pool *p;
  CHECK_EQ(coro_process_pool_new(&p, 2), 0);
  coro_future *fs[20];
  int sts[20];
  for (int i = 0; i < 20; i++)
    CHECK_EQ(submit(&fs[i], p, i % 5 == 0 ? K_SEGV : K_OK, 0, 0), 0);
  CHECK_EQ(coro_gather(fs, 20, NULL, sts), 0);
  for (int i = 0; i < 20; i++) {
    CHECK_EQ(sts[i], i % 5 == 0 ? CORO_EWORKER_SIGNAL(SIGSEGV) : 0);
    coro_future_release(fs[i]);
  }
  coro_pool_free(p);
  return NULL;
}

static void test_threaded_program(void **state) {
  (void)state;
  pthread_t th[2];
  atomic_store(&stop_busy, 0);
  for (int i = 0; i < 2; i++)
    assert_int_equal(pthread_create(&th[i], NULL, busy_thread, NULL), 0);
  assert_run_ok(threads_main);
  atomic_store(&stop_busy, 1);
  for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
}

/* Two loops on two threads share one pool. */
static coro_pool *two_pool;

static void *two_loops_main(void *arg) {
  intptr_t base = (intptr_t)arg;
  coro_future *fs[30];
  int sts[30];
  for (int i = 0; i < 30; i++) {
    int v = (int)base + i;
    CHECK_EQ(coro_run_in_process(&fs[i], two_pool, job_echo, &v, sizeof(v)),
             0);
  }
  CHECK_EQ(coro_gather(fs, 30, NULL, sts), 0);
  for (int i = 0; i < 30; i++) {
    const void *d;
    size_t n;
    int v = 0;
    CHECK_EQ(coro_future_bytes(fs[i], &d, &n), 0);
    if (n == sizeof(v)) memcpy(&v, d, n);
    CHECK_EQ(v, (int)base + i);
    coro_future_release(fs[i]);
  }
  return NULL;
}

static void *loop_thread(void *arg) {
  intptr_t r = coro_run(two_loops_main, arg, NULL);
  return (void *)r;
}

static void test_two_loops(void **state) {
  (void)state;
  assert_coro_ok(coro_process_pool_new(&two_pool, 2));
  pthread_t a, b;
  pthread_create(&a, NULL, loop_thread, (void *)(intptr_t)1000);
  pthread_create(&b, NULL, loop_thread, (void *)(intptr_t)2000);
  void *ra, *rb;
  pthread_join(a, &ra);
  pthread_join(b, &rb);
  assert_int_equal((intptr_t)ra, 0);
  assert_int_equal((intptr_t)rb, 0);
  assert_checks_passed();
  coro_pool_free(two_pool);
}

/* ---- workers that cannot start, allocation failures ------------------------------ */

static coro_pool *broken_pool;

static void *broken_main(void *arg) {
  (void)arg;
  coro_future *f = NULL;
  /* Queued while the workers fail (then it fails with them), or refused
   * if the pool is broken already. */
  int r = coro_run_in_process(&f, broken_pool, job_echo, "x", 1);
  CHECK(r == 0 || r == CORO_EWORKER_START);
  if (r == 0) {
    CHECK_ERR(coro_await(f, NULL), CORO_EWORKER_START);
    coro_future_release(f);
  }
  f = NULL;
  CHECK_ERR(coro_run_in_process(&f, broken_pool, job_echo, "x", 1),
            CORO_EWORKER_START);
  CHECK(f == NULL);
  return NULL;
}

static void test_broken_pool(void **state) {
  (void)state;
  setenv("CORO_TEST_WORKER_DIES", "1", 1);
  int r = coro_process_pool_new(&broken_pool, 1);
  assert_coro_ok(r);
  r = coro_run(broken_main, NULL, NULL);
  unsetenv("CORO_TEST_WORKER_DIES");
  assert_coro_ok(r);
  assert_checks_passed();
  coro__proc_stats st;
  coro__proc_pool_stats(broken_pool, &st);
  assert_int_equal(st.live, 0);
  assert_int_equal(st.spawned, 3);
  assert_coro_ok(coro_pool_shutdown(broken_pool, 1));
  coro_pool_free(broken_pool);
}

static coro_pool *oom_pool;

static void *oom_main(void *arg) {
  (void)arg;
  CHECK(wait_full(oom_pool, 20000));
  for (long k = 1; k <= 2; k++) {
    coro_future *f = NULL;
    coro_test_fail_alloc_after(k);
    CHECK_ERR(coro_run_in_process(&f, oom_pool, job_echo, "x", 1), -ENOMEM);
    coro_test_fail_alloc_after(0);
    CHECK(f == NULL);
  }
  coro__proc_stats st;
  coro__proc_pool_stats(oom_pool, &st);
  CHECK_EQ(st.running + st.queued, 0);
  coro_future *f;
  CHECK_EQ(coro_run_in_process(&f, oom_pool, job_echo, "x", 1), 0);
  CHECK_EQ(coro_await(f, NULL), 0);
  coro_future_release(f);
  return NULL;
}

static void test_alloc_failure(void **state) {
  (void)state;
  assert_coro_ok(coro_process_pool_new(&oom_pool, 1));
  assert_run_ok(oom_main);
  coro_pool_free(oom_pool);
}

/* ---- 1,000 jobs with injected crashes and time-outs ------------------------------- */

#define STRESS_N 1000
#define STRESS_POOL 4

static coro_future *sf[STRESS_N];
static int skind[STRESS_N];
static int stress_n;

/* Kills, from outside, the workers of the jobs meant for it. */
static void *outside_killer(void *arg) {
  (void)arg;
  for (int i = 0; i < stress_n; i++) {
    if (skind[i] != K_HANG || i % 2 == 0) continue; /* even: time limit */
    int pid = wait_pid(sf[i], 60000);
    CHECK_GT(pid, 0);
    if (pid > 0) kill(pid, SIGKILL);
  }
  return NULL;
}

static int stress_kind(int i) {
  if (i % 100 == 42 || i % 100 == 43) return K_HANG;
  switch (i % 25) {
  case 3: return K_SEGV;
  case 8: return K_ABORT;
  case 13: return K_EXIT3;
  case 18: return K_SELFKILL;
  case 21: return K_FAIL;
  default: return K_OK;
  }
}

static int stress_want(int i) {
  switch (skind[i]) {
  case K_SEGV: return CORO_EWORKER_SIGNAL(SIGSEGV);
  case K_ABORT: return CORO_EWORKER_SIGNAL(SIGABRT);
  case K_EXIT3: return CORO_EWORKER_EXIT(3);
  case K_SELFKILL: return CORO_EWORKER_SIGNAL(SIGKILL);
  case K_FAIL: return -EDOM;
  case K_HANG: return i % 2 == 0 ? -ETIMEDOUT : CORO_EWORKER_SIGNAL(SIGKILL);
  default: return 0;
  }
}

/* arg: 0 = submit to a pool still starting (the pool thread dispatches
 * everything), 1 = to a ready pool (the loop feeds the workers and reads
 * the replies itself, the pool thread only for what it dispatches). */
static void *stress_main(void *arg) {
  int warm = arg != NULL;
  stress_n = warm ? STRESS_N / 2 : STRESS_N;
  coro_pool *p;
  CHECK_EQ(coro_process_pool_new(&p, STRESS_POOL), 0);
  if (warm) CHECK(wait_full(p, 20000));
  for (int i = 0; i < stress_n; i++) {
    skind[i] = stress_kind(i);
    int64_t limit = skind[i] == K_HANG && i % 2 == 0 ? 100 : 0;
    CHECK_EQ(submit(&sf[i], p, skind[i], i, limit), 0);
  }
  coro_future *killer;
  CHECK_EQ(coro_spawn(&killer, outside_killer, NULL), 0);
  static int sts[STRESS_N];
  CHECK_EQ(coro_gather(sf, (size_t)stress_n, NULL, sts), 0);
  CHECK_EQ(coro_await(killer, NULL), 0);
  coro_future_release(killer);
  int wrong = 0, first_wrong = -1;
  for (int i = 0; i < stress_n; i++) {
    if (sts[i] != stress_want(i)) {
      wrong++;
      if (first_wrong < 0) first_wrong = i;
    }
    if (sts[i] == 0) {
      const void *d;
      size_t n;
      int v = -1;
      CHECK_EQ(coro_future_bytes(sf[i], &d, &n), 0);
      if (n == sizeof(v)) memcpy(&v, d, n);
      CHECK_EQ(v, K_OK);
    }
    coro_future_release(sf[i]);
  }
  if (wrong > 0)
    fprintf(stderr, "stress: %d wrong, first job %d: got %d (%s), want %d\n",
            wrong, first_wrong, sts[first_wrong],
            coro_err_name(sts[first_wrong]), stress_want(first_wrong));
  CHECK_EQ(wrong, 0);
  /* Every crash replaced: the pool ends at full size. */
  CHECK(wait_full(p, 30000));
  coro__proc_stats st;
  coro__proc_pool_stats(p, &st);
  CHECK_EQ(st.live, STRESS_POOL);
  CHECK_EQ(st.running, 0);
  CHECK_EQ(st.queued, 0);
  CHECK_EQ(st.spawned, STRESS_POOL + st.died);
  /* One death per job that kills its worker. */
  unsigned deaths = 0;
  for (int i = 0; i < stress_n; i++)
    deaths += skind[i] != K_OK && skind[i] != K_FAIL;
  CHECK_EQ(st.died, deaths);
  CHECK_EQ(coro_pool_shutdown(p, 1), 0);
  coro_pool_free(p);
  return NULL;
}

static void test_stress_1000(void **state) {
  (void)state;
  int64_t t0 = coro_test_now_ms();
  assert_run_ok(stress_main);
  fprintf(stderr, "stress: 1000 jobs in %lld ms\n",
          (long long)(coro_test_now_ms() - t0));
}

static void test_stress_warm(void **state) {
  (void)state;
  int64_t t0 = coro_test_now_ms();
  assert_coro_ok(coro_run(stress_main, (void *)1, NULL));
  assert_checks_passed();
  fprintf(stderr, "stress: 500 jobs on a ready pool in %lld ms\n",
          (long long)(coro_test_now_ms() - t0));
}

static void *nothing(void *arg) { return arg; }

/* ---- found in review: late submission, huge limits, shutdown off-task ---- */

/* A task spawned while coro_run ends (by a thread-safe call still queued
 * when main returned) submits a process job after the loop's inbox has
 * closed: -EPIPE, no crash, no default pool left behind. */
static int late_submit_status;

static void *late_submit_task(void *arg) {
  (void)arg;
  coro_future *f = NULL;
  req r = mkreq(K_EMPTY, 0);
  late_submit_status = coro_run_in_process(&f, NULL, job_kind, &r, sizeof(r));
  if (late_submit_status == 0) coro_future_release(f);
  return NULL;
}

static void late_submit_cb(void *arg) {
  (void)arg;
  CHECK_EQ(coro_spawn(NULL, late_submit_task, NULL), 0);
}

static void *late_submit_main(void *arg) {
  (void)arg;
  CHECK_EQ(coro_call_threadsafe(coro_loop_current(), late_submit_cb, NULL), 0);
  return NULL;
}

static void test_submit_after_inbox_closed(void **state) {
  (void)state;
  late_submit_status = 1;
  assert_run_ok(late_submit_main);
  assert_coro_err(late_submit_status, CORO_EPIPE);
}

/* Time limits too far away for nanoseconds mean no limit. */
static void *huge_limit_main(void *arg) {
  (void)arg;
  coro_pool *pool = NULL;
  CHECK_EQ(coro_process_pool_new(&pool, 1), 0);
  if (pool == NULL) return NULL;
  const int64_t limits[] = {INT64_MAX, INT64_MAX / 2, 30LL * 86400 * 1000};
  for (size_t i = 0; i < sizeof(limits) / sizeof(limits[0]); i++) {
    coro_job_opts o;
    memset(&o, 0, sizeof(o));
    o.timeout_ms = limits[i];
    req r = mkreq(K_SLEEP, 20);
    coro_future *f = NULL;
    CHECK_EQ(coro_run_in_process_opts(&f, pool, job_kind, &r, sizeof(r), &o), 0);
    if (f == NULL) continue;
    CHECK_EQ(coro_await(f, NULL), 0);
    coro_future_release(f);
  }
  CHECK_EQ(coro_pool_shutdown(pool, 1), 0);
  coro_pool_free(pool);
  return NULL;
}

static void test_huge_time_limit(void **state) {
  (void)state;
  assert_run_ok(huge_limit_main);
}

/* A waiting shutdown on the loop's thread outside a task (a thread-safe
 * callback) while a job this loop wrote straight to a worker runs: the
 * pool thread takes the reply over, the wait ends with the job. */
static coro_pool *offtask_pool;
static int offtask_status;
static int64_t offtask_ms;

static void offtask_cb(void *arg) {
  (void)arg;
  int64_t t0 = coro_test_now_ms();
  offtask_status = coro_pool_shutdown_timeout(offtask_pool, 10000, NULL, NULL);
  offtask_ms = coro_test_now_ms() - t0;
}

static void *offtask_main(void *arg) {
  (void)arg;
  CHECK_EQ(coro_process_pool_new(&offtask_pool, 1), 0);
  if (offtask_pool == NULL) return NULL;
  req warm = mkreq(K_EMPTY, 0);
  coro_future *f = NULL;
  /* First job: the worker is up and idle afterwards. */
  CHECK_EQ(coro_run_in_process(&f, offtask_pool, job_kind, &warm, sizeof(warm)), 0);
  if (f != NULL) {
    CHECK_EQ(coro_await(f, NULL), 0);
    coro_future_release(f);
    f = NULL;
  }
  req r = mkreq(K_SLEEP, 100);
  CHECK_EQ(coro_run_in_process(&f, offtask_pool, job_kind, &r, sizeof(r)), 0);
  CHECK_EQ(coro_call_threadsafe(coro_loop_current(), offtask_cb, NULL), 0);
  if (f != NULL) {
    CHECK_EQ(coro_await(f, NULL), 0);
    coro_future_release(f);
  }
  coro_pool_free(offtask_pool);
  return NULL;
}

static void test_shutdown_off_task(void **state) {
  (void)state;
  offtask_status = 1;
  offtask_ms = -1;
  assert_run_ok(offtask_main);
  assert_coro_ok(offtask_status);
  assert_true(offtask_ms >= 0 && offtask_ms < 9000);
}

int main(int argc, char **argv) {
  /* libuv opens a process-wide pipe with its first loop: not a leak. */
  coro_run(nothing, NULL, NULL);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_roundtrip, setup, teardown),
      cmocka_unit_test_setup_teardown(test_bad_args, setup, teardown),
      cmocka_unit_test_setup_teardown(test_closed_pool, setup, teardown),
      cmocka_unit_test_setup_teardown(test_error_names, setup, teardown),
      cmocka_unit_test_setup_teardown(test_crashes, setup, teardown),
      cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
      cmocka_unit_test_setup_teardown(test_cancel_running, setup, teardown),
      cmocka_unit_test_setup_teardown(test_cancel_queued, setup, teardown),
      cmocka_unit_test_setup_teardown(test_shutdown_wait, setup, teardown),
      cmocka_unit_test_setup_teardown(test_shutdown_stuck, setup, teardown),
      cmocka_unit_test_setup_teardown(test_shutdown_thread, setup, teardown),
      cmocka_unit_test_setup_teardown(test_shutdown_cancel, setup, teardown),
      cmocka_unit_test_setup_teardown(test_large_payloads, setup, teardown),
      cmocka_unit_test_setup_teardown(test_killed_mid_write, setup, teardown),
      cmocka_unit_test_setup_teardown(test_default_pool, setup, teardown),
      cmocka_unit_test_setup_teardown(test_loop_end, setup, teardown),
      cmocka_unit_test_setup_teardown(test_parent_death, setup, teardown),
      cmocka_unit_test_setup_teardown(test_threaded_program, setup, teardown),
      cmocka_unit_test_setup_teardown(test_two_loops, setup, teardown),
      cmocka_unit_test_setup_teardown(test_broken_pool, setup, teardown),
      cmocka_unit_test_setup_teardown(test_alloc_failure, setup, teardown),
      cmocka_unit_test_setup_teardown(test_stress_1000, setup, teardown),
      cmocka_unit_test_setup_teardown(test_stress_warm, setup, teardown),
      cmocka_unit_test_setup_teardown(test_submit_after_inbox_closed, setup, teardown),
      cmocka_unit_test_setup_teardown(test_huge_time_limit, setup, teardown),
      cmocka_unit_test_setup_teardown(test_shutdown_off_task, setup, teardown),
  };
  return coro_test_main(argc, argv, tests, NULL, NULL);
}
