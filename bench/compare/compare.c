/* SPDX-License-Identifier: MIT */
/* compare: the articles' workloads run by each concurrency strategy in C.
 *
 * Usage: compare WORKLOAD STRATEGY [RUNS [BATCH [SCALE]]]
 *        compare list
 * Prints one line per run:
 *   compare: WORKLOAD STRATEGY seconds=0.9012 check=1700 workers=2 jobs=2
 * (check: a sum of the jobs' results, the same for every strategy and for
 * the Python programs, so a wrong answer is caught.) Exit status 0, or 2
 * for bad arguments, 3 when a strategy is not available (e.g. a pool that
 * returns ENOSYS), 1 when a run failed.
 *
 * Workloads (the seeds' numbers):
 *   sleep        two sleeps of 800 and 900 ms
 *   blocking     ten sleeps of 100 ms
 *   fib-rec      recursive fib(33) and fib(34), two jobs
 *   fib-iter     iterative fib(n) modulo 2^64 for n = 10000..10999, 1000 jobs
 *   gcd          trial-division gcd of 100 seeded pairs in [100000, 900000]
 *   granularity  8000 small jobs cut into batches of BATCH (default 1)
 * SCALE (default 1) repeats the job list SCALE times: C does the seeds' CPU
 * work in milliseconds, too short to measure a parallel speedup well, so
 * the speedup targets are checked on a scaled-up copy of the same work.
 * Strategies:
 *   sync         one after another on the calling thread
 *   threads      raw pthreads: one per job for sleeps; nproc threads taking
 *                jobs from a shared counter for CPU work
 *   processes    raw fork(): the same split, results back over a pipe
 *   coro         coroutines alone: a task per job, coro_gather (sleeps use
 *                coro_sleep; CPU jobs run one after another)
 *   coro-threads a task pool: coro_run_in_thread per job + coro_gather
 *   coro-procs   coro_run_in_process per job (bytes in, bytes out) + gather
 *   coro-blocking  (blocking only) tasks that call nanosleep: the mistake
 *   coro-percall   (fib-rec only) every recursive call is a task, awaited
 * Pools and raw workers are created inside the timed region, as the
 * articles' Python programs create theirs. CPU work uses nproc workers;
 * sleeps use one worker per job. */
#define _GNU_SOURCE
#include <coro.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { W_SLEEP, W_BLOCKING, W_FIBREC, W_FIBITER, W_GCD, W_GRAN, W_COUNT };
static const char *const wl_names[W_COUNT] = {
    "sleep", "blocking", "fib-rec", "fib-iter", "gcd", "granularity"};

enum {
  S_SYNC, S_THREADS, S_PROCS, S_CORO, S_CORO_THREADS, S_CORO_PROCS,
  S_CORO_BLOCKING, S_CORO_PERCALL, S_COUNT
};
static const char *const st_names[S_COUNT] = {
    "sync", "threads", "processes", "coro", "coro-threads", "coro-procs",
    "coro-blocking", "coro-percall"};

/* One job, self-contained so that a worker process needs nothing else. */
typedef struct {
  uint32_t wl;
  uint32_t index;
  uint64_t a, b;
} jobin;

#define GRAN_JOBS 8000
#define GRAN_WORK 1000 /* inner iterations of one small job */

/* ---- the work --------------------------------------------------------------- */

static uint64_t fib_rec(unsigned n) {
  return n < 2 ? n : fib_rec(n - 1) + fib_rec(n - 2);
}

static uint64_t fib_iter(uint64_t n) { /* modulo 2^64 */
  uint64_t a = 0, b = 1;
  for (uint64_t i = 0; i < n; i++) {
    uint64_t t = a + b;
    a = b;
    b = t;
  }
  return a;
}

/* Effective Python's gcd: count down from min(a, b) to a common divisor. */
static uint64_t gcd_slow(uint64_t a, uint64_t b) {
  uint64_t low = a < b ? a : b;
  for (uint64_t i = low; i > 0; i--)
    if (a % i == 0 && b % i == 0) return i;
  return 1;
}

/* One small job of the granularity experiment (a 32-bit LCG walk). */
static uint64_t small_job(uint64_t i) {
  uint32_t x = (uint32_t)i;
  uint64_t s = 0;
  for (int k = 0; k < GRAN_WORK; k++) {
    x = x * 1103515245u + 12345u;
    s += x >> 16;
  }
  return s;
}

static void sleep_ms(uint64_t ms) {
  struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

static uint64_t do_job(const jobin *j) {
  switch (j->wl) {
  case W_SLEEP:
  case W_BLOCKING:
    sleep_ms(j->a);
    return j->a;
  case W_FIBREC:
    return fib_rec((unsigned)j->a);
  case W_FIBITER:
    return fib_iter(j->a);
  case W_GCD:
    return gcd_slow(j->a, j->b);
  case W_GRAN: {
    uint64_t s = 0;
    for (uint64_t i = j->a; i < j->a + j->b; i++) s += small_job(i);
    return s;
  }
  }
  return 0;
}

/* The seeded pairs: a 64-bit LCG (Knuth's MMIX constants), the same in
 * bench/compare/peers.py. */
static uint64_t lcg_state;
static uint64_t lcg_next(void) {
  lcg_state = lcg_state * 6364136223846793005u + 1442695040888963407u;
  return lcg_state >> 33;
}

static size_t make_jobs(int wl, uint64_t batch, jobin **out) {
  size_t n = 0;
  jobin *j = NULL;
  switch (wl) {
  case W_SLEEP:
    n = 2;
    j = calloc(n, sizeof(*j));
    j[0].a = 800;
    j[1].a = 900;
    break;
  case W_BLOCKING:
    n = 10;
    j = calloc(n, sizeof(*j));
    for (size_t i = 0; i < n; i++) j[i].a = 100;
    break;
  case W_FIBREC:
    n = 2;
    j = calloc(n, sizeof(*j));
    j[0].a = 33;
    j[1].a = 34;
    break;
  case W_FIBITER:
    n = 1000;
    j = calloc(n, sizeof(*j));
    for (size_t i = 0; i < n; i++) j[i].a = 10000 + i;
    break;
  case W_GCD:
    n = 100;
    j = calloc(n, sizeof(*j));
    lcg_state = 42;
    for (size_t i = 0; i < n; i++) {
      j[i].a = 100000 + lcg_next() % 800001;
      j[i].b = 100000 + lcg_next() % 800001;
    }
    break;
  case W_GRAN:
    if (batch == 0) batch = 1;
    n = (GRAN_JOBS + batch - 1) / batch;
    j = calloc(n, sizeof(*j));
    for (size_t i = 0; i < n; i++) {
      j[i].a = i * batch;
      j[i].b = (i + 1) * batch <= GRAN_JOBS ? batch : GRAN_JOBS - i * batch;
    }
    break;
  }
  for (size_t i = 0; i < n; i++) {
    j[i].wl = (uint32_t)wl;
    j[i].index = (uint32_t)i;
  }
  *out = j;
  return n;
}

/* ---- shared state of one run ---------------------------------------------------- */

static jobin *jobs;
static size_t njobs;
static uint64_t *results;
static unsigned nworkers;
static atomic_size_t next_job;

/* ---- raw pthreads ------------------------------------------------------------------ */

static void *thread_worker(void *arg) {
  (void)arg;
  for (;;) {
    size_t i = atomic_fetch_add(&next_job, 1);
    if (i >= njobs) return NULL;
    results[i] = do_job(&jobs[i]);
  }
}

static int run_threads(void) {
  pthread_t *t = calloc(nworkers, sizeof(*t));
  if (t == NULL) return -ENOMEM;
  atomic_store(&next_job, 0);
  unsigned started = 0;
  int r = 0;
  for (; started < nworkers; started++)
    if ((r = pthread_create(&t[started], NULL, thread_worker, NULL)) != 0) break;
  for (unsigned i = 0; i < started; i++) pthread_join(t[i], NULL);
  free(t);
  return r == 0 ? 0 : -r;
}

/* ---- raw fork(): the counter in shared memory, results over one pipe --------------- */

typedef struct {
  uint64_t index;
  uint64_t value;
} record; /* 16 bytes: below PIPE_BUF, so writes from several children never mix */

static int run_processes(void) {
  atomic_size_t *counter = mmap(NULL, sizeof(*counter), PROT_READ | PROT_WRITE,
                                MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (counter == MAP_FAILED) return -errno;
  atomic_init(counter, 0);
  int fd[2];
  if (pipe(fd) != 0) {
    munmap(counter, sizeof(*counter));
    return -errno;
  }
  pid_t *pids = calloc(nworkers, sizeof(*pids));
  unsigned started = 0;
  for (; pids != NULL && started < nworkers; started++) {
    pid_t p = fork();
    if (p < 0) break;
    if (p == 0) {
      close(fd[0]);
      for (;;) {
        size_t i = atomic_fetch_add(counter, 1);
        if (i >= njobs) _exit(0);
        record rec = {i, do_job(&jobs[i])};
        if (write(fd[1], &rec, sizeof(rec)) != (ssize_t)sizeof(rec)) _exit(1);
      }
    }
    pids[started] = p;
  }
  close(fd[1]);
  size_t got = 0;
  record rec;
  while (got < njobs && read(fd[0], &rec, sizeof(rec)) == (ssize_t)sizeof(rec)) {
    if (rec.index < njobs) results[rec.index] = rec.value;
    got++;
  }
  close(fd[0]);
  int bad = 0;
  for (unsigned i = 0; i < started; i++) {
    int st;
    if (waitpid(pids[i], &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
      bad = 1;
  }
  free(pids);
  munmap(counter, sizeof(*counter));
  if (started == 0) return -EAGAIN;
  return got == njobs && !bad ? 0 : -EIO;
}

/* ---- coroutines --------------------------------------------------------------------- */

static int strategy; /* S_... of this run */

static void *coro_job(void *arg) {
  jobin *j = arg;
  if ((j->wl == W_SLEEP || j->wl == W_BLOCKING) && strategy == S_CORO) {
    int r = coro_sleep((int64_t)j->a); /* the right way */
    if (r != 0) return coro_fail(r);
    results[j->index] = j->a;
  } else {
    results[j->index] = do_job(j); /* CPU work, or a blocking sleep */
  }
  return NULL;
}

/* coro-percall: the asyncio article's `await fib(n - 1) + await fib(n - 2)`
 * made literal: each call is a task that the caller awaits before it makes
 * the next one (depth first, as Python runs the awaited coroutines; at most
 * n tasks are alive at once). */
static void *fib_task(void *arg) {
  uintptr_t n = (uintptr_t)arg;
  if (n < 2) return (void *)n;
  uintptr_t sum = 0;
  for (uintptr_t k = 1; k <= 2; k++) {
    coro_future *f;
    void *v = NULL;
    int r = coro_spawn(&f, fib_task, (void *)(n - k));
    if (r != 0) return coro_fail(r);
    r = coro_await(f, &v);
    coro_future_release(f);
    if (r != 0) return coro_fail(r);
    sum += (uintptr_t)v;
  }
  return (void *)sum;
}

static void *thread_job(void *arg) {
  jobin *j = arg;
  results[j->index] = do_job(j);
  return NULL;
}

static int proc_job(const void *in, size_t in_len, void **out, size_t *out_len) {
  if (in_len != sizeof(jobin)) return -EINVAL;
  jobin j;
  memcpy(&j, in, sizeof(j));
  uint64_t *v = malloc(sizeof(*v));
  if (v == NULL) return -ENOMEM;
  *v = do_job(&j);
  *out = v;
  *out_len = sizeof(*v);
  return 0;
}

static void *coro_main(void *arg) {
  (void)arg;
  coro_future **fs = calloc(njobs, sizeof(*fs));
  if (fs == NULL) return coro_fail(-ENOMEM);
  coro_pool *pool = NULL;
  int r = 0;
  if (strategy == S_CORO_THREADS) r = coro_thread_pool_new(&pool, nworkers);
  if (strategy == S_CORO_PROCS) r = coro_process_pool_new(&pool, nworkers);
  size_t made = 0;
  for (; r == 0 && made < njobs; made++) {
    jobin *j = &jobs[made];
    switch (strategy) {
    case S_CORO_THREADS:
      r = coro_run_in_thread(&fs[made], pool, thread_job, j);
      break;
    case S_CORO_PROCS:
      r = coro_run_in_process(&fs[made], pool, proc_job, j, sizeof(*j));
      break;
    case S_CORO_PERCALL:
      r = coro_spawn(&fs[made], fib_task, (void *)(uintptr_t)j->a);
      break;
    default:
      r = coro_spawn(&fs[made], coro_job, j);
    }
    if (r != 0) break;
  }
  if (made > 0) {
    int g = coro_gather(fs, made, NULL, NULL);
    if (r == 0) r = g;
  }
  for (size_t i = 0; r == 0 && i < made; i++) {
    if (strategy == S_CORO_PROCS) {
      const void *data;
      size_t len;
      r = coro_future_bytes(fs[i], &data, &len);
      if (r == 0 && len == sizeof(uint64_t)) memcpy(&results[i], data, len);
      else if (r == 0) r = -EIO;
    } else if (strategy == S_CORO_PERCALL) {
      results[i] = (uint64_t)(uintptr_t)coro_future_value(fs[i]);
    }
  }
  for (size_t i = 0; i < made; i++) coro_future_release(fs[i]);
  free(fs);
  if (pool != NULL) {
    int s = coro_pool_shutdown(pool, 1);
    if (r == 0) r = s;
    coro_pool_free(pool);
  }
  return r != 0 ? coro_fail(r) : NULL;
}

/* ---- driver ------------------------------------------------------------------------- */

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int find(const char *s, const char *const *names, int n) {
  for (int i = 0; i < n; i++)
    if (strcmp(s, names[i]) == 0) return i;
  return -1;
}

static int usage(void) {
  fprintf(stderr, "usage: compare WORKLOAD STRATEGY [RUNS [BATCH [SCALE]]] | compare list\n");
  return 2;
}

int main(int argc, char **argv) {
  if (argc == 2 && strcmp(argv[1], "list") == 0) {
    for (int w = 0; w < W_COUNT; w++) {
      printf("%s:", wl_names[w]);
      for (int s = 0; s < S_COUNT; s++) {
        if (s == S_CORO_BLOCKING && w != W_BLOCKING) continue;
        if (s == S_CORO_PERCALL && w != W_FIBREC) continue;
        printf(" %s", st_names[s]);
      }
      printf("\n");
    }
    return 0;
  }
  if (argc < 3) return usage();
  int wl = find(argv[1], wl_names, W_COUNT);
  strategy = find(argv[2], st_names, S_COUNT);
  int runs = argc > 3 ? atoi(argv[3]) : 1;
  long batch = argc > 4 ? atol(argv[4]) : 1;
  long scale = argc > 5 ? atol(argv[5]) : 1;
  if (wl < 0 || strategy < 0 || runs < 1 || batch < 1 || scale < 1 || scale > 1000)
    return usage();
  if ((strategy == S_CORO_BLOCKING && wl != W_BLOCKING) ||
      (strategy == S_CORO_PERCALL && wl != W_FIBREC))
    return usage();
  njobs = make_jobs(wl, (uint64_t)batch, &jobs);
  if (jobs == NULL) return 1;
  if (scale > 1) {
    jobin *big = calloc(njobs * (size_t)scale, sizeof(*big));
    if (big == NULL) return 1;
    for (size_t i = 0; i < njobs * (size_t)scale; i++) {
      big[i] = jobs[i % njobs];
      big[i].index = (uint32_t)i;
    }
    free(jobs);
    jobs = big;
    njobs *= (size_t)scale;
  }
  results = calloc(njobs, sizeof(*results));
  if (results == NULL) return 1;
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  int io = wl == W_SLEEP || wl == W_BLOCKING;
  nworkers = io ? (unsigned)njobs : (unsigned)(ncpu > 0 ? ncpu : 1);
  for (int run = 0; run < runs; run++) {
    memset(results, 0, njobs * sizeof(*results));
    double t0 = now_s();
    int r = 0;
    switch (strategy) {
    case S_SYNC:
      for (size_t i = 0; i < njobs; i++) results[i] = do_job(&jobs[i]);
      break;
    case S_THREADS:
      r = run_threads();
      break;
    case S_PROCS:
      r = run_processes();
      break;
    default:
      r = coro_run(coro_main, NULL, NULL);
    }
    double secs = now_s() - t0;
    if (r == -ENOSYS) {
      printf("compare: %s %s unavailable (%s)\n", wl_names[wl], st_names[strategy],
             coro_err_name(r));
      return 3;
    }
    if (r != 0) {
      fprintf(stderr, "compare: %s %s failed: %s\n", wl_names[wl],
              st_names[strategy], coro_strerror(r));
      return 1;
    }
    uint64_t check = 0;
    for (size_t i = 0; i < njobs; i++) check += results[i];
    printf("compare: %s %s seconds=%.4f check=%llu workers=%u jobs=%zu batch=%ld "
           "scale=%ld\n",
           wl_names[wl], st_names[strategy], secs, (unsigned long long)check,
           strategy == S_SYNC || strategy == S_CORO || strategy == S_CORO_PERCALL ||
                   strategy == S_CORO_BLOCKING
               ? 1u
               : nworkers,
           njobs, batch, scale);
    fflush(stdout);
  }
  free(results);
  free(jobs);
  return 0;
}
