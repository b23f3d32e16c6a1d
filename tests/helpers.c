/* SPDX-License-Identifier: MIT */
/* Shared test helpers (see helpers.h). */
#include "helpers.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "ctx/stack.h"

/* ---- CHECK ------------------------------------------------------------------- */

int coro_test_failed_line;
const char *coro_test_failed_expr;
static atomic_int check_failures;
static char check_msg[768];

static const char *base_name(const char *path) {
  const char *s = strrchr(path, '/');
  return s != NULL ? s + 1 : path;
}

/* The first failure claims the message; later ones are only counted. */
static int check_claim(void) { return atomic_fetch_add(&check_failures, 1) == 0; }

static void check_publish(int line, const char *expr) {
  coro_test_failed_expr = expr;
  coro_test_failed_line = line;
}

void coro_test_check_failed(const char *file, int line, const char *expr) {
  if (!check_claim()) return;
  snprintf(check_msg, sizeof(check_msg), "%s:%d: %s", base_name(file), line,
           expr);
  check_publish(line, expr);
}

/* " (ETIMEDOUT)" after a negative value that is a known status code. */
static void err_suffix(char *buf, size_t cap, long long v) {
  buf[0] = '\0';
  if (v < 0 && v >= -4095) {
    const char *name = coro_err_name((int)v);
    if (strcmp(name, "UNKNOWN") != 0) snprintf(buf, cap, " (%s)", name);
  }
}

void coro_test_check_failed_int(const char *file, int line, const char *expr,
                                const char *a_text, long long a,
                                const char *b_text, long long b,
                                int unsigned_bits) {
  if (!check_claim()) return;
  char sa[32], sb[32];
  err_suffix(sa, sizeof(sa), unsigned_bits ? 0 : a);
  err_suffix(sb, sizeof(sb), unsigned_bits ? 0 : b);
  /* Unsigned comparisons print the values as the comparison saw them. */
  unsigned long long ua = (unsigned long long)a, ub = (unsigned long long)b;
  if (unsigned_bits == 32) {
    ua = (unsigned)ua;
    ub = (unsigned)ub;
  }
  if (unsigned_bits)
    snprintf(check_msg, sizeof(check_msg), "%s:%d: %s: %s = %llu, %s = %llu",
             base_name(file), line, expr, a_text, ua, b_text, ub);
  else
    snprintf(check_msg, sizeof(check_msg), "%s:%d: %s: %s = %lld%s, %s = %lld%s",
             base_name(file), line, expr, a_text, a, sa, b_text, b, sb);
  check_publish(line, expr);
}

void coro_test_check_failed_err(const char *file, int line, const char *expr,
                                int got, int want) {
  if (!check_claim()) return;
  snprintf(check_msg, sizeof(check_msg), "%s:%d: %s: got %d (%s), want %d (%s)",
           base_name(file), line, expr, got, coro_err_name(got), want,
           coro_err_name(want));
  check_publish(line, expr);
}

void coro_test_check_failed_ptr(const char *file, int line, const char *expr,
                                const void *a, const void *b) {
  if (!check_claim()) return;
  snprintf(check_msg, sizeof(check_msg), "%s:%d: %s: %p, %p", base_name(file),
           line, expr, a, b);
  check_publish(line, expr);
}

int coro_test_streq(const char *a, const char *b) {
  if (a == NULL || b == NULL) return a == b;
  return strcmp(a, b) == 0;
}

void coro_test_check_failed_str(const char *file, int line, const char *expr,
                                const char *a, const char *b) {
  if (!check_claim()) return;
  snprintf(check_msg, sizeof(check_msg), "%s:%d: %s: \"%.200s\", \"%.200s\"",
           base_name(file), line, expr, a != NULL ? a : "(null)",
           b != NULL ? b : "(null)");
  check_publish(line, expr);
}

const char *coro_test_check_message(void) {
  return atomic_load(&check_failures) != 0 ? check_msg : "";
}

int coro_test_check_count(void) { return atomic_load(&check_failures); }

void coro_test_check_reset(void) {
  coro_test_failed_line = 0;
  coro_test_failed_expr = NULL;
  check_msg[0] = '\0';
  atomic_store(&check_failures, 0);
}

/* ---- main: all tests or the ones a pattern names ----------------------------------- */

int coro_test_main_(int argc, char **argv, const char *file,
                    const struct CMUnitTest *tests, size_t count,
                    CMFixtureFunction group_setup,
                    CMFixtureFunction group_teardown) {
  const char *pattern = getenv("CORO_TEST_FILTER");
  int if_present = 0, list = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--if-present") == 0) {
      if_present = 1;
    } else if (strcmp(argv[i], "--list") == 0) {
      list = 1;
    } else if (argv[i][0] == '-') {
      fprintf(stderr, "usage: %s [PATTERN [--if-present]] | --list\n", argv[0]);
      return 2;
    } else {
      pattern = argv[i];
    }
  }
  if (pattern != NULL && pattern[0] == '\0') pattern = NULL;
  /* The group's name: test_sleep.c -> sleep. */
  char group[64];
  const char *b = base_name(file);
  if (strncmp(b, "test_", 5) == 0) b += 5;
  snprintf(group, sizeof(group), "%s", b);
  char *dot = strrchr(group, '.');
  if (dot != NULL) *dot = '\0';
  if (list) {
    for (size_t i = 0; i < count; i++) printf("%s\n", tests[i].name);
    return 0;
  }
  if (pattern != NULL) {
    size_t matched = 0;
    for (size_t i = 0; i < count; i++)
      if (fnmatch(pattern, tests[i].name, 0) == 0) matched++;
    if (matched == 0) {
      if (if_present) {
        printf("%s: %s is not part of this build: skipped\n", group, pattern);
        return 77;
      }
      fprintf(stderr, "%s: no test matches \"%s\" (--list shows the names)\n",
              group, pattern);
      return 2;
    }
  }
  /* Run the matching entries only, matched as above (fnmatch). */
  struct CMUnitTest *run = malloc((count > 0 ? count : 1) * sizeof(*run));
  if (run == NULL) return 3;
  size_t n = 0;
  for (size_t i = 0; i < count; i++)
    if (pattern == NULL || fnmatch(pattern, tests[i].name, 0) == 0)
      run[n++] = tests[i];
  int r = _cmocka_run_group_tests(group, run, n, group_setup, group_teardown);
  free(run);
  return r;
}

static atomic_long live_allocs;
static atomic_long fail_countdown;
static int allocator_installed;
static long baseline;

/* Every block carries a 16-byte header holding its size, so realloc and
 * free can keep the live count exact. */
#define HDR 16

static int should_fail(void) {
  long n = atomic_load(&fail_countdown);
  while (n > 0) {
    if (atomic_compare_exchange_weak(&fail_countdown, &n, n - 1))
      return n == 1;
  }
  return 0;
}

static void *t_malloc(size_t size) {
  if (should_fail()) return NULL;
  char *p = malloc(size + HDR);
  if (p == NULL) return NULL;
  atomic_fetch_add(&live_allocs, 1);
  return p + HDR;
}

static void *t_calloc(size_t n, size_t size) {
  if (should_fail()) return NULL;
  if (size != 0 && n > (SIZE_MAX - HDR) / size) return NULL;
  char *p = calloc(1, n * size + HDR);
  if (p == NULL) return NULL;
  atomic_fetch_add(&live_allocs, 1);
  return p + HDR;
}

static void t_free(void *ptr) {
  if (ptr == NULL) return;
  atomic_fetch_sub(&live_allocs, 1);
  free((char *)ptr - HDR);
}

static void *t_realloc(void *ptr, size_t size) {
  if (ptr == NULL) return t_malloc(size);
  if (should_fail()) return NULL;
  char *p = realloc((char *)ptr - HDR, size + HDR);
  if (p == NULL) return NULL;
  return p + HDR;
}

static char order_log[1024];

void coro_test_note(const char *s) {
  size_t n = strlen(order_log), m = strlen(s);
  if (n + m < sizeof(order_log)) memcpy(order_log + n, s, m + 1);
}

void coro_test_log_reset(void) { order_log[0] = '\0'; }

const char *coro_test_log(void) { return order_log; }

long coro_test_live_allocs(void) { return atomic_load(&live_allocs); }

void coro_test_fail_alloc_after(long n) { atomic_store(&fail_countdown, n); }

int coro_test_setup(void **state) {
  (void)state;
  if (!allocator_installed) {
    if (coro_replace_allocator(t_malloc, t_realloc, t_calloc, t_free) != 0)
      return -1;
    allocator_installed = 1;
  }
  coro_test_check_reset();
  coro_test_fail_alloc_after(0);
  baseline = coro_test_live_allocs();
  return 0;
}

int coro_test_teardown(void **state) {
  (void)state;
  coro_test_fail_alloc_after(0);
  long leaked = coro_test_live_allocs() - baseline;
  coro__stack_stats st;
  coro__stack_get_stats(&st);
  if (leaked != 0) {
    fprintf(stderr, "teardown: %ld allocation(s) leaked\n", leaked);
    return -1;
  }
  if (st.live != 0) {
    fprintf(stderr, "teardown: %zu stack(s) still handed out\n", st.live);
    return -1;
  }
  return 0;
}

int coro_test_run(coro_fn main_fn, void *arg, void **result) {
  return coro_run(main_fn, arg, result);
}

int64_t coro_test_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int coro_test_in_child(void (*fn)(void *arg), void *arg, int timeout_ms) {
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) return -2;
  if (pid == 0) {
    /* cmocka's own SIGSEGV/SIGABRT handlers would turn a crash into a
     * longjmp; the child must die of the signal itself. */
    signal(SIGSEGV, SIG_DFL);
    signal(SIGBUS, SIG_DFL);
    signal(SIGABRT, SIG_DFL);
    signal(SIGILL, SIG_DFL);
    signal(SIGFPE, SIG_DFL);
    fn(arg);
    _exit(0);
  }
  int status = 0;
  int64_t deadline = coro_test_now_ms() + timeout_ms;
  for (;;) {
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return status;
    if (r < 0) return -2;
    if (coro_test_now_ms() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return -1;
    }
    usleep(2000);
  }
}

typedef struct stderr_child {
  void (*fn)(void *arg);
  void *arg;
  int fd;
} stderr_child;

static void stderr_child_main(void *arg) {
  stderr_child *c = arg;
  if (dup2(c->fd, 2) < 0) _exit(240);
  c->fn(c->arg);
  fflush(stderr);
}

int coro_test_in_child_stderr(void (*fn)(void *arg), void *arg, int timeout_ms,
                              char *out, size_t cap) {
  char path[] = "/tmp/coro_test_stderr_XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) return -2;
  unlink(path); /* the open descriptor is all we need */
  stderr_child c = {fn, arg, fd};
  int st = coro_test_in_child(stderr_child_main, &c, timeout_ms);
  ssize_t n = pread(fd, out, cap > 0 ? cap - 1 : 0, 0);
  if (cap > 0) out[n > 0 ? n : 0] = '\0';
  close(fd);
  return st;
}

/* ---- threads and descriptors -------------------------------------------------- */

int coro_test_count_dir(const char *path) {
  DIR *d = opendir(path);
  if (d == NULL) return -1;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    if (e->d_name[0] != '.') n++;
  closedir(d);
  return n;
}

static int os_base_threads, os_base_fds;

static void *no_op_thread(void *arg) {
  *(pid_t *)arg = gettid();
  return NULL;
}

int coro_test_setup_os(void **state) {
  /* ThreadSanitizer starts a background thread of its own with the
   * program's first pthread_create, and keeps it: have that happen now,
   * before the count, so that it is part of the baseline. */
  pthread_t t;
  pid_t tid = 0;
  if (pthread_create(&t, NULL, no_op_thread, &tid) != 0) return -1;
  pthread_join(t, NULL);
  /* pthread_join returns once the thread cleared its id; the kernel may
   * list it in /proc a moment longer, which would raise the baseline. */
  char path[64];
  snprintf(path, sizeof(path), "/proc/self/task/%d", (int)tid);
  for (int i = 0; i < 1000 && access(path, F_OK) == 0; i++) usleep(1000);
  os_base_threads = coro_test_count_dir("/proc/self/task");
  os_base_fds = coro_test_count_dir("/proc/self/fd");
  return coro_test_setup(state);
}

int coro_test_teardown_os(void **state) {
  /* Detached workers may take a moment to end. */
  int64_t until = coro_test_now_ms() + 5000;
  while (coro_test_count_dir("/proc/self/task") > os_base_threads &&
         coro_test_now_ms() < until)
    usleep(1000);
  int th = coro_test_count_dir("/proc/self/task");
  int fds = coro_test_count_dir("/proc/self/fd");
  if (th != os_base_threads) {
    fprintf(stderr, "teardown: %d thread(s) leaked\n", th - os_base_threads);
    return -1;
  }
  if (fds != os_base_fds) {
    fprintf(stderr, "teardown: %d descriptor(s) leaked\n", fds - os_base_fds);
    return -1;
  }
  return coro_test_teardown(state);
}

/* ---- small tools for tasks ---------------------------------------------------- */

coro_future *coro_test_spawn(coro_fn fn, void *arg) {
  coro_future *f = NULL;
  CHECK_EQ(coro_spawn(&f, fn, arg), 0);
  return f;
}

int coro_test_join(coro_future *f) {
  int r = coro_await(f, NULL);
  coro_future_release(f);
  return r;
}

void coro_test_yields(int n) {
  for (int i = 0; i < n; i++) CHECK_EQ(coro_yield(), 0);
}

/* ---- libuv's thread pool, held busy ------------------------------------------ */

static struct {
  uv_work_t work[CORO_TEST_UV_POOL_MAX];
  uv_sem_t go;
  uv_sem_t started;
  int n;        /* items queued; 0: no block held */
  int done;     /* items whose after-callback ran */
  int unblocked;
} pool_block;

static void pool_block_work(uv_work_t *w) {
  (void)w;
  uv_sem_post(&pool_block.started);
  uv_sem_wait(&pool_block.go);
}

static void pool_block_after(uv_work_t *w, int status) {
  (void)w;
  (void)status;
  pool_block.done++;
}

int coro_test_uv_pool_block(int n) {
  if (n < 1 || n > CORO_TEST_UV_POOL_MAX || pool_block.n != 0) return -1;
  memset(&pool_block, 0, sizeof(pool_block));
  if (uv_sem_init(&pool_block.go, 0) != 0) return -1;
  if (uv_sem_init(&pool_block.started, 0) != 0) {
    uv_sem_destroy(&pool_block.go);
    return -1;
  }
  uv_loop_t *uv = coro_loop_uv(coro_loop_current());
  for (int i = 0; i < n; i++) {
    if (uv_queue_work(uv, &pool_block.work[i], pool_block_work,
                      pool_block_after) != 0) {
      /* Let the queued ones go; the semaphores stay (they may run yet). */
      pool_block.n = i;
      coro_test_uv_pool_unblock();
      return -1;
    }
  }
  pool_block.n = n;
  /* Every thread now holds one item. */
  for (int i = 0; i < n; i++) uv_sem_wait(&pool_block.started);
  return 0;
}

void coro_test_uv_pool_unblock(void) {
  if (pool_block.unblocked) return;
  pool_block.unblocked = 1;
  for (int i = 0; i < pool_block.n; i++) uv_sem_post(&pool_block.go);
}

int coro_test_uv_pool_done(void) { return pool_block.done; }

void coro_test_uv_pool_release(void) {
  if (pool_block.n == 0) return;
  coro_test_uv_pool_unblock();
  while (pool_block.done < pool_block.n) {
    int r = coro_sleep(1);
    if (r != 0) {
      /* Not in a task, or cancelled: the items may still run, so the
       * semaphores must stay. */
      CHECK_OK(r);
      return;
    }
  }
  uv_sem_destroy(&pool_block.go);
  uv_sem_destroy(&pool_block.started);
  pool_block.n = 0;
}

/* ---- a Python peer ------------------------------------------------------------ */

int coro_test_have_python(void) {
  return system("python3 -c 'import asyncio' >/dev/null 2>&1") == 0;
}

int coro_test_python_start(const char *script, const char *arg,
                           coro_stream **out) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) return -1;
  pid_t pid = fork();
  if (pid == 0) {
    dup2(p[1], 1);
    execlp("python3", "python3", "-c", script, arg, (char *)NULL);
    _exit(127);
  }
  close(p[1]);
  if (pid < 0 || coro_stream_open_fd(out, p[0]) != 0) {
    close(p[0]);
    if (pid > 0) {
      kill(pid, SIGKILL);
      waitpid(pid, NULL, 0);
    }
    return -1;
  }
  coro_stream_set_timeouts(*out, 30000, CORO_FOREVER);
  return pid;
}

ssize_t coro_test_python_line(coro_stream *out, char *buf, size_t cap) {
  if (cap == 0) return -EINVAL;
  buf[0] = '\0';
  if (out == NULL) return -EINVAL;
  ssize_t n = coro_stream_read_line(out, buf, cap - 1);
  buf[n > 0 ? n : 0] = '\0';
  char *nl = strchr(buf, '\n');
  if (nl != NULL) *nl = '\0';
  return n;
}

int coro_test_python_wait(int pid, coro_stream *out) {
  if (out != NULL) coro_stream_close(out);
  int st;
  if (pid <= 0 || waitpid(pid, &st, 0) != pid) return -1;
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* ---- libuv's process-wide state, made early ------------------------------------ */

static void *warm_up_main(void *arg) {
  struct addrinfo *res = NULL;
  if (coro_getaddrinfo(&res, "localhost", "80", NULL) == 0)
    coro_freeaddrinfo(res);
  return arg;
}

int coro_test_warm_up_uv(void **state) {
  (void)state;
  return coro_run(warm_up_main, NULL, NULL);
}

/* ---- children that start the test program afresh -------------------------------- */

static const char *self_path = "/proc/self/exe";

const char *coro_test_child_role(int argc, char **argv, const char **arg) {
  if (argc > 0 && strchr(argv[0], '/') != NULL) self_path = argv[0];
  const char *role = getenv("CORO_TEST_CHILD");
  *arg = getenv("CORO_TEST_CHILD_ARG");
  if (*arg == NULL) *arg = "";
  return role;
}

void coro_test_exec_self(const char *role, const char *arg) {
  setenv("CORO_TEST_CHILD", role, 1);
  setenv("CORO_TEST_CHILD_ARG", arg != NULL ? arg : "", 1);
  execl(self_path, self_path, (char *)NULL);
  _exit(4);
}

int coro_test_child_run(coro_fn fn, void *arg) {
  int r = coro_run(fn, arg, NULL);
  if (r != 0) fprintf(stderr, "coro_run: %s\n", coro_err_name(r));
  if (coro_test_failed_line != 0)
    fprintf(stderr, "%s\n", coro_test_check_message());
  return r != 0 || coro_test_failed_line != 0 ? 1 : 0;
}
