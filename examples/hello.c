/* SPDX-License-Identifier: MIT */
/* hello: the smallest tour of libcoro.
 *
 * Three tasks sleep concurrently (so the program takes about as long as the
 * longest sleep, not the sum), one of them is cancelled and cleans up, and
 * main collects the results. Expected output (timings vary a little):
 *
 *   worker 'fast' done after 100 ms
 *   worker 'slow' cancelled, cleaning up
 *   worker 'medium' done after 200 ms
 *   fast -> 100, medium -> 200, slow -> ECANCELED
 *   total 0.20 s (the sleeps add up to 1.30 s)
 *
 * Usage: hello [scale]   (scale multiplies every duration; default 1) */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <coro.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static int scale = 1;

static void *worker(void *arg) {
  int ms = (int)(intptr_t)arg * scale;
  int r = coro_sleep(ms);
  const char *name = coro_task_name(coro_current());
  if (r == CORO_ECANCELED) {
    printf("worker '%s' cancelled, cleaning up\n", name);
    return coro_fail(r); /* end as cancelled */
  }
  printf("worker '%s' done after %d ms\n", name, ms);
  return (void *)(intptr_t)ms;
}

static void *main_task(void *arg) {
  (void)arg;
  static const struct { const char *name; int ms; } jobs[] = {
      {"fast", 100}, {"medium", 200}, {"slow", 1000}};
  coro_future *f[3];
  for (int i = 0; i < 3; i++) {
    coro_task_opts o = {.name = jobs[i].name};
    int r = coro_spawn_opts(&f[i], worker, (void *)(intptr_t)jobs[i].ms, &o);
    if (r != 0) return coro_fail(r);
  }
  coro_sleep(150 * scale); /* 'fast' finishes meanwhile */
  coro_cancel(f[2]);       /* 'slow' is cancelled at its sleep */
  int st[3];
  void *v[3];
  for (int i = 0; i < 3; i++) {
    st[i] = coro_await(f[i], &v[i]);
    coro_future_release(f[i]);
  }
  for (int i = 0; i < 3; i++) {
    if (st[i] == 0)
      printf("%s -> %d", jobs[i].name, (int)(intptr_t)v[i]);
    else
      printf("%s -> %s", jobs[i].name, coro_err_name(st[i]));
    printf(i < 2 ? ", " : "\n");
  }
  return NULL;
}

int main(int argc, char **argv) {
  if (argc > 1) scale = atoi(argv[1]) > 0 ? atoi(argv[1]) : 1;
  uint64_t t0 = 0;
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  t0 = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
  int r = coro_run(main_task, NULL, NULL);
  clock_gettime(CLOCK_MONOTONIC, &ts);
  double s = ((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec - t0) / 1e9;
  printf("total %.2f s (the sleeps add up to %.2f s)\n", s, 1.3 * scale);
  if (r != 0) {
    fprintf(stderr, "coro_run: %s\n", coro_strerror(r));
    return 1;
  }
  return 0;
}
