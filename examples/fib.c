/* SPDX-License-Identifier: MIT */
/* fib: CPU-bound work, six ways: only more CPUs make it faster.
 *
 * Two workloads from the articles:
 *   - recursive fib(33) + fib(34): two jobs of unequal size (fib(34) is
 *     1.6 times fib(33)), so two CPUs give at best 1.6x, not 2x;
 *   - iterative fib(n) for n = 10000..10999, 1000 small jobs. Python
 *     computes these with big integers; in C they are taken modulo 2^64
 *     (unsigned overflow wraps), so the sum printed is fib(n) mod 2^64.
 * and six strategies:
 *   sync                       one job after the other
 *   threads                    raw pthreads, one per CPU, taking jobs in turn
 *   processes                  raw fork(), the same split, results over a pipe
 *   coroutines                 a task per job + coro_gather: one thread, so
 *                              CPU work runs one job after another (sync time)
 *   coroutines + thread pool   coro_run_in_thread per job (run_in_executor)
 *   coroutines + process pool  coro_run_in_process per job, bytes in and out
 * Then the coroutine overhead the articles show for asyncio: fib(25) +
 * fib(26) where every recursive call is a task that the caller awaits
 * (`await fib(n - 1) + await fib(n - 2)`), against plain recursion.
 *
 * Expected output on 2 CPUs (times vary; the pool lines say "not available"
 * in a build without pools):
 *
 *   recursive fib(33) + fib(34) = 9227465, 10 times, on 2 CPUs
 *     sync                       0.270s  1.0x
 *     threads                    0.140s  1.9x
 *     processes                  0.142s  1.9x
 *     coroutines                 0.271s  1.0x
 *     coroutines + thread pool   0.141s  1.9x
 *     coroutines + process pool  0.150s  1.8x
 *   iterative fib(n) mod 2^64, n = 10000..10999: sum 7480358047183797093, 10 times
 *     ...
 *   a task per recursive call, fib(25) + fib(26): 0.131s vs 0.0007s plain
 *     (199x: 635620 tasks, 205 ns each)
 *
 * C does the seeds' work in milliseconds, so by default every job list is
 * repeated 10 times (more jobs: the split over CPUs gets more even too).
 *
 * Usage: fib [scale]   (how many times the job lists are repeated; default 10) */
#define _GNU_SOURCE
#include <coro.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- the work ----------------------------------------------------------- */

static uint64_t fib_rec(unsigned n) {
  return n < 2 ? n : fib_rec(n - 1) + fib_rec(n - 2);
}

static uint64_t fib_iter(unsigned n) { /* modulo 2^64 */
  uint64_t a = 0, b = 1;
  for (unsigned i = 0; i < n; i++) {
    uint64_t t = a + b;
    a = b;
    b = t;
  }
  return a;
}

/* One job: which fib and its argument; self-contained, so that it can be
 * sent to a worker process as bytes. */
typedef struct {
  int recursive;
  unsigned n;
} job;

static uint64_t run_job(const job *j) {
  return j->recursive ? fib_rec(j->n) : fib_iter(j->n);
}

static job *jobs;
static size_t njobs;
static uint64_t *results;
static unsigned ncpu;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- sync ----------------------------------------------------------------- */

static int with_sync(void) {
  for (size_t i = 0; i < njobs; i++) results[i] = run_job(&jobs[i]);
  return 0;
}

/* ---- raw threads: each takes the next job number from a shared counter -- */

static atomic_size_t next_job;

static void *thread_body(void *arg) {
  (void)arg;
  size_t i;
  while ((i = atomic_fetch_add(&next_job, 1)) < njobs) results[i] = run_job(&jobs[i]);
  return NULL;
}

static int with_threads(void) {
  pthread_t t[64];
  unsigned n = ncpu < 64 ? ncpu : 64, made = 0;
  int r = 0;
  atomic_store(&next_job, 0);
  for (; made < n; made++)
    if ((r = pthread_create(&t[made], NULL, thread_body, NULL)) != 0) break;
  for (unsigned i = 0; i < made; i++) pthread_join(t[i], NULL);
  return made > 0 ? 0 : -r;
}

/* ---- raw processes: a static split (job i goes to child i % n) --------- */

static int with_processes(void) {
  int fd[2];
  if (pipe(fd) != 0) return -errno;
  pid_t pid[64];
  unsigned n = ncpu < 64 ? ncpu : 64, made = 0;
  for (; made < n; made++) {
    pid[made] = fork();
    if (pid[made] < 0) break;
    if (pid[made] == 0) {
      close(fd[0]);
      for (size_t i = made; i < njobs; i += n) {
        uint64_t rec[2] = {i, run_job(&jobs[i])}; /* 16 bytes: one atomic write */
        if (write(fd[1], rec, sizeof(rec)) != (ssize_t)sizeof(rec)) _exit(1);
      }
      _exit(0);
    }
  }
  close(fd[1]);
  size_t got = 0;
  uint64_t rec[2];
  while (read(fd[0], rec, sizeof(rec)) == (ssize_t)sizeof(rec))
    if (rec[0] < njobs) results[rec[0]] = rec[1], got++;
  close(fd[0]);
  for (unsigned i = 0; i < made; i++) waitpid(pid[i], NULL, 0);
  return got == njobs ? 0 : -EIO; /* a child that could not be made */
}

/* ---- coroutines --------------------------------------------------------- */

enum { ALONE, THREAD_POOL, PROCESS_POOL };
static int how;

static void *task_body(void *arg) { /* also the thread-pool job */
  const job *j = arg;
  results[j - jobs] = run_job(j);
  return NULL;
}

/* A process-pool job: bytes in (a job), bytes out (a uint64_t). */
static int proc_body(const void *in, size_t in_len, void **out, size_t *out_len) {
  if (in_len != sizeof(job)) return -EINVAL;
  job j;
  memcpy(&j, in, sizeof(j));
  uint64_t *v = malloc(sizeof(*v)); /* freed by libcoro with free() */
  if (v == NULL) return -ENOMEM;
  *v = run_job(&j);
  *out = v;
  *out_len = sizeof(*v);
  return 0;
}

static void *coro_main(void *arg) {
  (void)arg;
  coro_pool *pool = NULL;
  int r = 0;
  if (how == THREAD_POOL) r = coro_thread_pool_new(&pool, ncpu);
  if (how == PROCESS_POOL) r = coro_process_pool_new(&pool, ncpu);
  if (r != 0) return coro_fail(r);
  coro_future **fs = calloc(njobs, sizeof(*fs));
  size_t made = 0;
  if (fs == NULL) r = -ENOMEM;
  for (; r == 0 && made < njobs; made++) {
    if (how == ALONE) r = coro_spawn(&fs[made], task_body, &jobs[made]);
    if (how == THREAD_POOL) r = coro_run_in_thread(&fs[made], pool, task_body, &jobs[made]);
    if (how == PROCESS_POOL)
      r = coro_run_in_process(&fs[made], pool, proc_body, &jobs[made], sizeof(job));
    if (r != 0) break;
  }
  int g = coro_gather(fs, made, NULL, NULL); /* asyncio.gather(*futures) */
  if (r == 0) r = g;
  for (size_t i = 0; i < made; i++) {
    const void *data;
    size_t len;
    if (r == 0 && how == PROCESS_POOL && coro_future_bytes(fs[i], &data, &len) == 0 &&
        len == sizeof(uint64_t))
      memcpy(&results[i], data, len);
    coro_future_release(fs[i]);
  }
  free(fs);
  if (pool != NULL) {
    coro_pool_shutdown(pool, 1);
    coro_pool_free(pool);
  }
  return r == 0 ? NULL : coro_fail(r);
}

static int with_coroutines(void) {
  how = ALONE;
  return coro_run(coro_main, NULL, NULL);
}
static int with_thread_pool(void) {
  how = THREAD_POOL;
  return coro_run(coro_main, NULL, NULL);
}
static int with_process_pool(void) {
  how = PROCESS_POOL;
  return coro_run(coro_main, NULL, NULL);
}

/* ---- one workload, every strategy ------------------------------------------- */

static void compare_all(void) {
  static const struct {
    const char *name;
    int (*run)(void);
  } ways[] = {{"sync", with_sync},
              {"threads", with_threads},
              {"processes", with_processes},
              {"coroutines", with_coroutines},
              {"coroutines + thread pool", with_thread_pool},
              {"coroutines + process pool", with_process_pool}};
  double sync_s = 0;
  uint64_t want = 0;
  for (size_t w = 0; w < sizeof(ways) / sizeof(ways[0]); w++) {
    memset(results, 0, njobs * sizeof(*results));
    double t0 = now_s();
    int r = ways[w].run();
    double s = now_s() - t0;
    if (r != 0) {
      printf("  %-26s not available (%s)\n", ways[w].name, coro_err_name(r));
      continue;
    }
    uint64_t sum = 0;
    for (size_t i = 0; i < njobs; i++) sum += results[i];
    if (w == 0) sync_s = s, want = sum;
    printf("  %-26s %.3fs  %.1fx%s\n", ways[w].name, s, sync_s / s,
           sum == want ? "" : "  WRONG RESULT");
  }
}

/* ---- a task per recursive call ------------------------------------------------- */

static void *fib_task(void *arg) {
  uintptr_t n = (uintptr_t)arg, sum = 0;
  if (n < 2) return (void *)n;
  for (uintptr_t k = 1; k <= 2; k++) { /* await fib(n - 1) + await fib(n - 2) */
    coro_future *f;
    void *v;
    int r = coro_spawn(&f, fib_task, (void *)(n - k));
    if (r != 0) return coro_fail(r);
    r = coro_await(f, &v);
    coro_future_release(f);
    if (r != 0) return coro_fail(r);
    sum += (uintptr_t)v;
  }
  return (void *)sum;
}

static void *percall_main(void *arg) {
  uintptr_t n = (uintptr_t)arg;
  coro_future *f[2];
  int r = coro_spawn(&f[0], fib_task, (void *)n);
  if (r != 0) return coro_fail(r);
  r = coro_spawn(&f[1], fib_task, (void *)(n + 1));
  if (r != 0) {
    coro_await(f[0], NULL);
    coro_future_release(f[0]);
    return coro_fail(r);
  }
  void *v[2] = {NULL, NULL};
  r = coro_gather(f, 2, v, NULL);
  coro_future_release(f[0]);
  coro_future_release(f[1]);
  return r == 0 ? (void *)((uintptr_t)v[0] + (uintptr_t)v[1]) : coro_fail(r);
}

int main(int argc, char **argv) {
  int scale = argc > 1 ? atoi(argv[1]) : 10;
  if (scale < 1) {
    fprintf(stderr, "usage: %s [scale >= 1]\n", argv[0]);
    return 2;
  }
  long nc = sysconf(_SC_NPROCESSORS_ONLN);
  ncpu = nc > 0 ? (unsigned)nc : 1;
  size_t cap = 1000 * (size_t)scale;
  jobs = calloc(cap, sizeof(*jobs));
  results = calloc(cap, sizeof(*results));
  if (jobs == NULL || results == NULL) return 1;

  njobs = 0;
  for (int s = 0; s < scale; s++) {
    jobs[njobs++] = (job){1, 33};
    jobs[njobs++] = (job){1, 34};
  }
  printf("recursive fib(33) + fib(34) = %llu, %d times, on %u CPUs\n",
         (unsigned long long)(fib_rec(33) + fib_rec(34)), scale, ncpu);
  compare_all();

  njobs = 0;
  for (int s = 0; s < scale; s++)
    for (unsigned n = 10000; n < 11000; n++) jobs[njobs++] = (job){0, n};
  uint64_t sum = 0;
  for (unsigned n = 10000; n < 11000; n++) sum += fib_iter(n);
  printf("iterative fib(n) mod 2^64, n = 10000..10999: sum %llu, %d times\n",
         (unsigned long long)sum, scale);
  compare_all();

  unsigned n = 25;
  double t0 = now_s();
  uint64_t plain = fib_rec(n) + fib_rec(n + 1);
  double plain_s = now_s() - t0;
  void *v = NULL;
  t0 = now_s();
  int r = coro_run(percall_main, (void *)(uintptr_t)n, &v);
  double task_s = now_s() - t0;
  if (r != 0 || (uint64_t)(uintptr_t)v != plain) {
    fprintf(stderr, "a task per call: %s\n", coro_strerror(r));
    return 1;
  }
  /* calls of fib(n): 2 fib(n + 1) - 1 */
  double calls = 2.0 * (double)(fib_rec(n + 1) + fib_rec(n + 2)) - 2;
  printf("a task per recursive call, fib(%u) + fib(%u): %.3fs vs %.4fs plain\n"
         "  (%.0fx: %.0f tasks, %.0f ns each)\n",
         n, n + 1, task_s, plain_s, task_s / (plain_s > 0 ? plain_s : 1e-9), calls,
         (task_s - plain_s) / calls * 1e9);
  free(jobs);
  free(results);
  return 0;
}
