/* SPDX-License-Identifier: MIT */
/* blocking: the classic coroutine mistake, and how debug mode finds it.
 *
 * Ten coroutines each wait 0.1 s. If they call a blocking function
 * (nanosleep here; in real code a blocking read, a DNS lookup, a slow
 * computation), each one holds the only thread the loop has, and the ten
 * waits run one after another: 1.0 s instead of 0.1 s (asyncio: 1.02 s with
 * time.sleep against 0.107 s with asyncio.sleep). Debug mode
 * (coro_config.debug, or CORO_DEBUG=1 in the environment) reports every
 * task step that held the loop for 100 ms or longer, by task name, to
 * stderr, as asyncio's debug mode does. The cures: the coroutine version
 * of the call (coro_sleep), or, for a call that has none, handing it to a
 * thread pool (coro_run_in_thread; pool NULL = the loop's default pool,
 * sized here with coro_config.threads to one thread per waiter).
 *
 * Expected output (the report lines are on stderr and come during the first
 * run; times vary a little):
 *
 *   libcoro: Executing <task sleeper-0> took 0.100 seconds
 *   libcoro: Executing <task sleeper-1> took 0.100 seconds
 *   ... (one line per task)
 *   10 coroutines calling a blocking sleep: 1.00s
 *   10 coroutines calling coro_sleep: 0.10s
 *   10 coroutines sending the blocking sleep to a thread pool: 0.10s
 *
 * Usage: blocking [scale]   (scale multiplies the number of coroutines) */
#define _GNU_SOURCE
#include <coro.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int ntasks = 10;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void blocking_sleep_100ms(void) {
  struct timespec ts = {0, 100 * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

static void *blocking_body(void *arg) { /* a task, or a thread-pool job */
  (void)arg;
  blocking_sleep_100ms();
  return NULL;
}

static void *polite_body(void *arg) {
  (void)arg;
  int r = coro_sleep(100);
  return r == 0 ? NULL : coro_fail(r);
}

static void *offload_body(void *arg) {
  (void)arg;
  coro_future *job;
  int r = coro_run_in_thread(&job, NULL, blocking_body, NULL);
  if (r != 0) return coro_fail(r);
  r = coro_await(job, NULL); /* only this task waits */
  coro_future_release(job);
  return r == 0 ? NULL : coro_fail(r);
}

static void *main_task(void *arg) {
  coro_fn body = (coro_fn)arg;
  coro_future **fs = calloc((size_t)ntasks, sizeof(*fs));
  if (fs == NULL) return coro_fail(-ENOMEM);
  int r = 0, made = 0;
  for (; made < ntasks; made++) {
    char name[32];
    snprintf(name, sizeof(name), "sleeper-%d", made);
    coro_task_opts o = {.name = name}; /* names are copied */
    if ((r = coro_spawn_opts(&fs[made], body, NULL, &o)) != 0) break;
  }
  int g = coro_gather(fs, (size_t)made, NULL, NULL);
  for (int i = 0; i < made; i++) coro_future_release(fs[i]);
  free(fs);
  if (r == 0) r = g;
  return r == 0 ? NULL : coro_fail(r);
}

int main(int argc, char **argv) {
  int scale = argc > 1 ? atoi(argv[1]) : 1;
  if (scale < 1) {
    fprintf(stderr, "usage: %s [scale >= 1]\n", argv[0]);
    return 2;
  }
  ntasks = 10 * scale;
  coro_config cfg;
  memset(&cfg, 0, sizeof(cfg));
  cfg.debug = 1;                   /* or run with CORO_DEBUG=1 */
  cfg.threads = (unsigned)ntasks;  /* the default pool, for the third run */

  static const struct {
    const char *what;
    coro_fn body;
  } runs[3] = {{"calling a blocking sleep", blocking_body},
               {"calling coro_sleep", polite_body},
               {"sending the blocking sleep to a thread pool", offload_body}};
  int status = 0;
  for (int run_no = 0; run_no < 3; run_no++) {
    double t0 = now_s();
    int r = coro_run_config(&cfg, main_task, (void *)runs[run_no].body, NULL);
    double s = now_s() - t0;
    fflush(stderr);
    if (r != 0) {
      printf("%d coroutines %s: not available (%s)\n", ntasks, runs[run_no].what,
             coro_err_name(r));
      if (run_no < 2) status = 1;
      continue;
    }
    printf("%d coroutines %s: %.2fs\n", ntasks, runs[run_no].what, s);
    fflush(stdout);
  }
  return status;
}
