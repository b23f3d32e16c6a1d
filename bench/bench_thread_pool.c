/* SPDX-License-Identifier: MIT */
/* Round trip of a trivial job through a thread pool, in microseconds per
 * job: one at a time (submit, wait for the result, repeat) and batched (N
 * submitted at once, then every result collected). libcoro's pool
 * (coro_run_in_thread + coro_await, from a task) against libuv's
 * uv_queue_work on a plain uv loop, in the same process run, with the same
 * number of threads. Best of 3 rounds each.
 * Then, with IDLE_S > 0, the CPU time the whole process used while the
 * pool sat idle (no job) for IDLE_S seconds: a parked pool uses none.
 * Usage: bench_thread_pool [N_ONE [N_BATCH [THREADS [IDLE_S]]]]
 * (defaults 20000 100000 4 0; CORO_THREAD_POOL_SPIN_US sets the workers'
 * spin before parking, in microseconds). */
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>
#include <uv.h>

#include <coro.h>

static long n_one = 20000, n_batch = 100000;
static unsigned nthreads = 4;
static long idle_s = 0;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void report(const char *mode, const char *impl, long n, double secs) {
  printf("thread_pool: %.2f us/job mode=%s impl=%s n=%ld threads=%u\n",
         secs * 1e6 / (double)n, mode, impl, n, nthreads);
  fflush(stdout);
}

/* ---- libcoro -------------------------------------------------------------------- */

static volatile long sink;

static double cpu_s(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

static void *trivial(void *arg) { return arg; }

static void *coro_main(void *arg) {
  (void)arg;
  coro_pool *p;
  int r = coro_thread_pool_new(&p, nthreads);
  if (r != 0) return coro_fail(r);
  double best_one = 1e30, best_batch = 1e30;
  coro_future **fs = malloc((size_t)n_batch * sizeof(*fs));
  for (int round = 0; round < 3; round++) {
    double t0 = now_s();
    for (long i = 0; i < n_one; i++) {
      coro_future *f;
      void *v;
      if (coro_run_in_thread(&f, p, trivial, (void *)i) != 0 ||
          coro_await(f, &v) != 0)
        return coro_fail(-EIO);
      sink += (long)v;
      coro_future_release(f);
    }
    double t1 = now_s();
    if (t1 - t0 < best_one) best_one = t1 - t0;
    t0 = now_s();
    for (long i = 0; i < n_batch; i++)
      if (coro_run_in_thread(&fs[i], p, trivial, (void *)i) != 0)
        return coro_fail(-EIO);
    for (long i = 0; i < n_batch; i++) {
      void *v;
      if (coro_await(fs[i], &v) != 0) return coro_fail(-EIO);
      sink += (long)v;
      coro_future_release(fs[i]);
    }
    t1 = now_s();
    if (t1 - t0 < best_batch) best_batch = t1 - t0;
  }
  free(fs);
  if (idle_s > 0) {
    /* Every worker has run jobs just now; from here on none gets one. */
    double c0 = cpu_s(), t0 = now_s();
    int rs = coro_sleep(idle_s * 1000);
    if (rs != 0) return coro_fail(rs);
    double c1 = cpu_s(), t1 = now_s();
    printf("thread_pool: %.4f cpu_s mode=idle impl=libcoro secs=%.2f threads=%u\n",
           c1 - c0, t1 - t0, nthreads);
    fflush(stdout);
  }
  coro_pool_shutdown(p, 1);
  coro_pool_free(p);
  report("one", "libcoro", n_one, best_one);
  report("batch", "libcoro", n_batch, best_batch);
  return NULL;
}

/* ---- libuv's uv_queue_work ----------------------------------------------------- */

static uv_loop_t uvl;
static long uv_left, uv_done;
static uv_work_t one_req;

static void work_cb(uv_work_t *w) { w->data = (void *)((long)w->data + 1); }

static void after_one(uv_work_t *w, int status) {
  (void)status;
  sink += (long)w->data;
  if (--uv_left > 0) uv_queue_work(&uvl, w, work_cb, after_one);
}

static void after_batch(uv_work_t *w, int status) {
  (void)status;
  sink += (long)w->data;
  uv_done++;
}

/* The same with a request allocated per job and freed in its callback, as
 * a program does when jobs carry their own state (libcoro allocates a job
 * and a future per submission). */
static void after_malloced(uv_work_t *w, int status) {
  (void)status;
  sink += (long)w->data;
  uv_done++;
  free(w);
}

static void uv_bench(void) {
  uv_loop_init(&uvl);
  uv_work_t *reqs = malloc((size_t)n_batch * sizeof(*reqs));
  double best_one = 1e30, best_batch = 1e30;
  for (int round = 0; round < 3; round++) {
    uv_left = n_one;
    double t0 = now_s();
    uv_queue_work(&uvl, &one_req, work_cb, after_one);
    uv_run(&uvl, UV_RUN_DEFAULT);
    double t1 = now_s();
    if (t1 - t0 < best_one) best_one = t1 - t0;
    uv_done = 0;
    t0 = now_s();
    for (long i = 0; i < n_batch; i++) {
      reqs[i].data = (void *)i;
      uv_queue_work(&uvl, &reqs[i], work_cb, after_batch);
    }
    uv_run(&uvl, UV_RUN_DEFAULT);
    t1 = now_s();
    if (uv_done != n_batch) fprintf(stderr, "uv: lost jobs\n");
    if (t1 - t0 < best_batch) best_batch = t1 - t0;
  }
  double best_malloc = 1e30;
  for (int round = 0; round < 3; round++) {
    uv_done = 0;
    double t0 = now_s();
    for (long i = 0; i < n_batch; i++) {
      uv_work_t *w = malloc(sizeof(*w));
      w->data = (void *)i;
      uv_queue_work(&uvl, w, work_cb, after_malloced);
    }
    uv_run(&uvl, UV_RUN_DEFAULT);
    double t1 = now_s();
    if (uv_done != n_batch) fprintf(stderr, "uv: lost jobs\n");
    if (t1 - t0 < best_malloc) best_malloc = t1 - t0;
  }
  free(reqs);
  uv_loop_close(&uvl);
  report("one", "uv_queue_work", n_one, best_one);
  report("batch", "uv_queue_work", n_batch, best_batch);
  report("batch", "uv_queue_work+malloc", n_batch, best_malloc);
}

int main(int argc, char **argv) {
  if (argc > 1) n_one = atol(argv[1]);
  if (argc > 2) n_batch = atol(argv[2]);
  if (argc > 3) nthreads = (unsigned)atoi(argv[3]);
  if (argc > 4) idle_s = atol(argv[4]);
  if (n_one < 1 || n_batch < 1 || nthreads < 1 || idle_s < 0) {
    fprintf(stderr,
            "usage: bench_thread_pool [N_ONE [N_BATCH [THREADS [IDLE_S]]]]\n");
    return 2;
  }
  /* libuv reads its pool size once, at the first uv_queue_work. */
  char buf[16];
  snprintf(buf, sizeof(buf), "%u", nthreads);
  setenv("UV_THREADPOOL_SIZE", buf, 1);
  const char *spin = getenv("CORO_THREAD_POOL_SPIN_US");
  printf("# thread_pool: spin=%s us\n", spin != NULL ? spin : "default");
  int r = coro_run(coro_main, NULL, NULL);
  if (r != 0) {
    fprintf(stderr, "bench_thread_pool: %s\n", coro_strerror(r));
    return 1;
  }
  uv_bench();
  return 0;
}
