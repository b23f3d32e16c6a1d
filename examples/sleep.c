/* SPDX-License-Identifier: MIT */
/* sleep: two waits of 0.8 s and 0.9 s, done five ways.
 *
 * The classic first experiment with concurrency: waiting (for a timer, a
 * socket, a disk) needs no CPU, so two waits done concurrently take as long
 * as the longer one, however they are made concurrent:
 *
 *   sync              one after the other: 0.8 + 0.9 = 1.70 s
 *   threads           one pthread per wait: 0.90 s
 *   processes         one fork()ed child per wait: 0.90 s
 *   coroutines        two tasks that coro_sleep, collected by coro_gather
 *                     (asyncio.gather): 0.90 s, on one thread
 *   FIRST_COMPLETED   coro_wait returns when the shorter sleep is done
 *                     (0.80 s); the other task is cancelled, and its
 *                     cancellation is observed before the program goes on
 *
 * Expected output (the times vary by a few milliseconds):
 *
 *   Sync took 1.70s
 *   Threads took 0.90s
 *   Processes took 0.90s
 *   Coroutines took 0.90s
 *   FIRST_COMPLETED took 0.80s: 'short' done, 'long' cancelled
 *
 * Usage: sleep [scale]   (scale multiplies both waits; default 1) */
#define _GNU_SOURCE
#include <coro.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int64_t waits_ms[2] = {800, 900};

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A blocking wait, like Python's time.sleep. */
static void blocking_sleep(int64_t ms) {
  struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* ---- threads ------------------------------------------------------------- */

static void *thread_body(void *arg) {
  blocking_sleep(*(int64_t *)arg);
  return NULL;
}

static int with_threads(void) {
  pthread_t t[2];
  for (int i = 0; i < 2; i++) {
    int r = pthread_create(&t[i], NULL, thread_body, &waits_ms[i]);
    if (r != 0) {
      for (int k = 0; k < i; k++) pthread_join(t[k], NULL);
      return -r;
    }
  }
  for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
  return 0;
}

/* ---- processes ------------------------------------------------------------ */

static int with_processes(void) {
  pid_t pid[2];
  int made = 0, r = 0;
  for (; made < 2; made++) {
    pid[made] = fork();
    if (pid[made] < 0) {
      r = -errno;
      break;
    }
    if (pid[made] == 0) {
      blocking_sleep(waits_ms[made]);
      _exit(0);
    }
  }
  for (int i = 0; i < made; i++) waitpid(pid[i], NULL, 0);
  return r;
}

/* ---- coroutines ------------------------------------------------------------ */

static void *sleeper(void *arg) {
  int r = coro_sleep(*(int64_t *)arg); /* suspends this task only */
  return r == 0 ? NULL : coro_fail(r);
}

static void *gather_main(void *arg) {
  (void)arg;
  coro_future *f[2];
  for (int i = 0; i < 2; i++) {
    int r = coro_spawn(&f[i], sleeper, &waits_ms[i]);
    if (r != 0) {
      if (i == 1) coro_future_release(f[0]);
      return coro_fail(r);
    }
  }
  int r = coro_gather(f, 2, NULL, NULL); /* asyncio.gather(a, b) */
  coro_future_release(f[0]);
  coro_future_release(f[1]);
  return r == 0 ? NULL : coro_fail(r);
}

/* asyncio.wait({a, b}, return_when=FIRST_COMPLETED), then cancel the rest. */
static double fc_start;

static void *first_completed_main(void *arg) {
  (void)arg;
  static const char *const names[2] = {"short", "long"};
  coro_future *f[2];
  for (int i = 0; i < 2; i++) {
    coro_task_opts o = {.name = names[i]};
    int r = coro_spawn_opts(&f[i], sleeper, &waits_ms[i], &o);
    if (r != 0) {
      if (i == 1) coro_future_release(f[0]);
      return coro_fail(r);
    }
  }
  int r = coro_wait(f, 2, CORO_FIRST_COMPLETED, CORO_FOREVER);
  for (int i = 0; i < 2; i++)
    if (coro_future_status(f[i]) == CORO_PENDING) coro_cancel(f[i]);
  /* Wait for the cancelled task to finish, as one should: a cancellation is
   * a request, and the task could still be cleaning up. */
  int st[2];
  coro_gather(f, 2, NULL, st);
  printf("FIRST_COMPLETED took %.2fs: ", now_s() - fc_start);
  for (int i = 0; i < 2; i++)
    printf("'%s' %s%s", names[i], st[i] == 0 ? "done" :
           st[i] == CORO_ECANCELED ? "cancelled" : coro_err_name(st[i]),
           i == 0 ? ", " : "\n");
  coro_future_release(f[0]);
  coro_future_release(f[1]);
  return r < 0 ? coro_fail(r) : NULL;
}

int main(int argc, char **argv) {
  int scale = argc > 1 ? atoi(argv[1]) : 1;
  if (scale < 1) {
    fprintf(stderr, "usage: %s [scale >= 1]\n", argv[0]);
    return 2;
  }
  waits_ms[0] *= scale;
  waits_ms[1] *= scale;

  double t0 = now_s();
  blocking_sleep(waits_ms[0]);
  blocking_sleep(waits_ms[1]);
  printf("Sync took %.2fs\n", now_s() - t0);

  t0 = now_s();
  int r = with_threads();
  if (r != 0) fprintf(stderr, "threads: %s\n", coro_strerror(r));
  printf("Threads took %.2fs\n", now_s() - t0);

  t0 = now_s();
  r = with_processes();
  if (r != 0) fprintf(stderr, "processes: %s\n", coro_strerror(r));
  printf("Processes took %.2fs\n", now_s() - t0);

  t0 = now_s();
  r = coro_run(gather_main, NULL, NULL);
  if (r != 0) fprintf(stderr, "coroutines: %s\n", coro_strerror(r));
  printf("Coroutines took %.2fs\n", now_s() - t0);

  fc_start = now_s();
  int r2 = coro_run(first_completed_main, NULL, NULL);
  if (r2 != 0) fprintf(stderr, "FIRST_COMPLETED: %s\n", coro_strerror(r2));
  return r == 0 && r2 == 0 ? 0 : 1;
}
