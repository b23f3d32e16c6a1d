/* SPDX-License-Identifier: MIT */
/* Shared test helpers (see helpers.h). */
#include "helpers.h"

#include <dirent.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ctx/stack.h"

int coro_test_failed_line;
const char *coro_test_failed_expr;

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
  coro_test_failed_line = 0;
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

int coro_test_setup_os(void **state) {
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
