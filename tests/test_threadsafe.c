/* SPDX-License-Identifier: MIT */
/* Threads and loops (docs/api/exec.md, "Threads and loops"):
 * coro_call_threadsafe (FIFO per calling thread, under load from several
 * threads, -EPIPE once the loop shuts down), coro_loop_keepalive (a loop
 * waiting for another thread is not judged stuck), coro_run_threadsafe
 * (value, failure, timeout cancels the task, -EDEADLK on the loop's own
 * thread, the loop ending under a waiting caller), and several loops in
 * several threads submitting to each other under load. Every test ends
 * with no thread and no descriptor more than it started with. */
#include "helpers.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* setup / teardown: the fixture that also counts threads and descriptors
 * (helpers.h). */
#define setup coro_test_setup_os
#define teardown coro_test_teardown_os

/* ---- coro_call_threadsafe --------------------------------------------------------- */

#define NTHREADS 4
#define NCALLS 2000

typedef struct sender {
  pthread_t th;
  coro_loop *loop;
  int id;
  int delay_ms;
  int last_seen;       /* loop side: last sequence number received */
  int out_of_order;
} sender;

typedef struct call {
  sender *s;
  int seq;
} call;

static coro_future *all_done;
static int received;

/* Load on the loop while the calls arrive: tasks that keep yielding. */
static int busy_stop;
static long busy_steps;
static void *busy(void *arg) {
  (void)arg;
  while (!busy_stop) {
    if (coro_yield() != 0) break;
    busy_steps++;
  }
  return NULL;
}

/* Started by the first call: until then only the hold keeps the loop
 * from being judged stuck. */
static coro_future *bs[16];
static int busy_started;

static void on_call(void *arg) {
  call *c = arg;
  if (!busy_started) {
    busy_started = 1;
    for (int i = 0; i < 16; i++) CHECK_EQ(coro_spawn(&bs[i], busy, NULL), 0);
  }
  if (c->seq != c->s->last_seen + 1) c->s->out_of_order++;
  c->s->last_seen = c->seq;
  free(c);
  if (++received == NTHREADS * NCALLS) {
    CHECK_EQ(coro_future_resolve(all_done, NULL), 0);
    CHECK_EQ(coro_loop_keepalive(coro_loop_current(), -1), 0);
  }
}

static void *sender_main(void *arg) {
  sender *s = arg;
  if (s->delay_ms) usleep((useconds_t)s->delay_ms * 1000);
  for (int i = 1; i <= NCALLS; i++) {
    call *c = malloc(sizeof(*c));
    c->s = s;
    c->seq = i;
    int r;
    while ((r = coro_call_threadsafe(s->loop, on_call, c)) == -ENOMEM) {
    }
    if (r != 0) {
      free(c);
      break;
    }
  }
  return NULL;
}

static void *fifo_main(void *arg) {
  (void)arg;
  static sender ss[NTHREADS];
  busy_stop = 0;
  busy_steps = 0;
  busy_started = 0;
  received = 0;
  CHECK_EQ(coro_future_new(&all_done), 0);
  /* Without the hold, a loop whose only task waits for the promise would
   * be judged stuck while the senders sleep. */
  CHECK_EQ(coro_loop_keepalive(coro_loop_current(), +1), 0);
  for (int i = 0; i < NTHREADS; i++) {
    ss[i].loop = coro_loop_current();
    ss[i].id = i;
    ss[i].delay_ms = 30;
    ss[i].last_seen = 0;
    ss[i].out_of_order = 0;
    CHECK_EQ(pthread_create(&ss[i].th, NULL, sender_main, &ss[i]), 0);
  }
  CHECK_EQ(coro_await(all_done, NULL), 0);
  busy_stop = 1;
  for (int i = 0; i < 16; i++) {
    CHECK_EQ(coro_await(bs[i], NULL), 0);
    coro_future_release(bs[i]);
  }
  CHECK_GT(busy_steps, 0);
  for (int i = 0; i < NTHREADS; i++) {
    pthread_join(ss[i].th, NULL);
    CHECK_EQ(ss[i].out_of_order, 0);
    CHECK_EQ(ss[i].last_seen, NCALLS);
  }
  coro_future_release(all_done);
  return NULL;
}

static void test_call_fifo_keepalive(void **state) {
  (void)state;
  assert_run_ok(fifo_main);
}

/* Without a hold the same wait is reported as a deadlock. */
static void *nohold_main(void *arg) {
  (void)arg;
  coro_future *p;
  CHECK_EQ(coro_future_new(&p), 0);
  int r = coro_await(p, NULL);
  coro_future_release(p);
  return coro_fail(r);
}

static void test_no_hold_is_stuck(void **state) {
  (void)state;
  assert_coro_err(coro_run(nohold_main, NULL, NULL), -EDEADLK);
  assert_checks_passed();
}

/* Refused once the loop shuts down; misuse. */
static int late_result = 1;
static void never(void *arg) {
  (void)arg;
  late_result = 99;
}

static void *lingerer(void *arg) {
  (void)arg;
  coro_sleep(CORO_FOREVER); /* cancelled at shutdown */
  late_result = coro_call_threadsafe(coro_loop_current(), never, NULL);
  return NULL;
}

static void noop(void *arg) { (void)arg; }

static void *misuse_main(void *arg) {
  (void)arg;
  coro_loop *loop = coro_loop_current();
  CHECK_ERR(coro_call_threadsafe(NULL, noop, NULL), -EINVAL);
  CHECK_ERR(coro_call_threadsafe(loop, NULL, NULL), -EINVAL);
  CHECK_ERR(coro_loop_keepalive(NULL, 1), -EINVAL);
  CHECK_ERR(coro_loop_keepalive(loop, 2), -EINVAL);
  CHECK_ERR(coro_loop_keepalive(loop, -1), -EINVAL);
  CHECK_EQ(coro_loop_keepalive(loop, 1), 0);
  CHECK_EQ(coro_loop_keepalive(loop, -1), 0);
  CHECK_EQ(coro_loop_keepalive(loop, 1), 0); /* left held: dropped at the end */
  CHECK_ERR(coro_run_threadsafe(NULL, lingerer, NULL, 0, NULL), -EINVAL);
  CHECK_ERR(coro_run_threadsafe(loop, NULL, NULL, 0, NULL), -EINVAL);
  CHECK_ERR(coro_run_threadsafe(loop, lingerer, NULL, -2, NULL), -EINVAL);
  /* From the loop's own thread: at once, never a hang. */
  CHECK_ERR(coro_run_threadsafe(loop, lingerer, NULL, CORO_FOREVER, NULL), -EDEADLK);
  coro_test_fail_alloc_after(1);
  CHECK_ERR(coro_call_threadsafe(loop, noop, NULL), -ENOMEM);
  coro_test_fail_alloc_after(0);
  CHECK_EQ(coro_spawn(NULL, lingerer, NULL), 0);
  CHECK_EQ(coro_yield(), 0);
  return NULL;
}

static void test_misuse_and_epipe(void **state) {
  (void)state;
  late_result = 1;
  assert_coro_err(coro_loop_keepalive(NULL, 1), -EINVAL);
  assert_run_ok(misuse_main);
  assert_int_equal(late_result, -EPIPE);
}

/* ---- coro_run_threadsafe ---------------------------------------------------------- */

/* A loop on its own thread that runs until told to stop. */
typedef struct loop_thread {
  pthread_t th;
  _Atomic(coro_loop *) loop;
  atomic_int stop;
  int status;
} loop_thread;

static void *server_main(void *arg) {
  loop_thread *lt = arg;
  atomic_store(&lt->loop, coro_loop_current());
  while (!atomic_load(&lt->stop)) coro_sleep(1);
  return NULL;
}

static void *server_thread(void *arg) {
  loop_thread *lt = arg;
  lt->status = coro_run(server_main, lt, NULL);
  return NULL;
}

static coro_loop *start_loop(loop_thread *lt) {
  atomic_store(&lt->loop, NULL);
  atomic_store(&lt->stop, 0);
  pthread_create(&lt->th, NULL, server_thread, lt);
  while (atomic_load(&lt->loop) == NULL) usleep(100);
  return atomic_load(&lt->loop);
}

static int stop_loop(loop_thread *lt) {
  atomic_store(&lt->stop, 1);
  pthread_join(lt->th, NULL);
  return lt->status;
}

static atomic_int task_cancelled;

static void *task_value(void *arg) {
  CHECK_EQ(coro_sleep(2), 0);
  return arg;
}

static void *task_fails(void *arg) {
  (void)arg;
  coro_yield();
  return coro_fail(-EIO);
}

static void *task_forever(void *arg) {
  (void)arg;
  int r = coro_sleep(CORO_FOREVER);
  if (r == -ECANCELED) atomic_fetch_add(&task_cancelled, 1);
  return coro_fail(r);
}

/* Ignores cancellation for a while, then returns a value. */
static atomic_int stubborn_done;
static void *task_stubborn(void *arg) {
  (void)arg;
  int64_t until = coro_test_now_ms() + 600; /* far past the caller's 20 ms */
  while (coro_test_now_ms() < until) coro_sleep(5); /* -ECANCELED ignored */
  atomic_store(&stubborn_done, 1);
  return (void *)7;
}

static void test_run_threadsafe(void **state) {
  (void)state;
  loop_thread lt;
  coro_loop *loop = start_loop(&lt);
  void *v = NULL;
  assert_coro_ok(coro_run_threadsafe(loop, task_value, (void *)5, CORO_FOREVER, &v));
  assert_ptr_equal(v, (void *)5);
  assert_coro_ok(coro_run_threadsafe(loop, task_value, (void *)6, 10000, &v));
  assert_ptr_equal(v, (void *)6);
  assert_coro_err(coro_run_threadsafe(loop, task_fails, NULL, 10000, &v), -EIO);
  assert_null(v);
  /* Timeout: -ETIMEDOUT, and the task is cancelled on its loop. */
  atomic_store(&task_cancelled, 0);
  int64_t t0 = coro_test_now_ms();
  v = (void *)1;
  assert_coro_err(coro_run_threadsafe(loop, task_forever, NULL, 40, &v), -ETIMEDOUT);
  assert_true(coro_test_now_ms() - t0 >= 40);
  assert_null(v);
  int64_t until = coro_test_now_ms() + 5000;
  while (atomic_load(&task_cancelled) == 0 && coro_test_now_ms() < until)
    usleep(1000);
  assert_int_equal(atomic_load(&task_cancelled), 1);
  /* A task that outlives its caller's wait: nothing is written after the
   * call returned. */
  atomic_store(&stubborn_done, 0);
  v = (void *)1;
  assert_coro_err(coro_run_threadsafe(loop, task_stubborn, NULL, 20, &v), -ETIMEDOUT);
  assert_null(v);
  until = coro_test_now_ms() + 5000;
  while (!atomic_load(&stubborn_done) && coro_test_now_ms() < until) usleep(1000);
  usleep(20000);
  assert_null(v);
  /* timeout 0: do not wait. */
  assert_coro_err(coro_run_threadsafe(loop, task_forever, NULL, 0, NULL), -ETIMEDOUT);
  assert_coro_ok(stop_loop(&lt));
  /* That task was cancelled before or after its first step. */
  assert_true(atomic_load(&task_cancelled) >= 1);
  assert_true(atomic_load(&task_cancelled) <= 2);
  assert_checks_passed();
}

/* The loop ends while a caller waits: its task is cancelled. */
static loop_thread ending;
static atomic_int caller_status;
static void *caller_thread(void *arg) {
  (void)arg;
  atomic_store(&caller_status,
               coro_run_threadsafe(atomic_load(&ending.loop), task_forever,
                                   NULL, CORO_FOREVER, NULL));
  return NULL;
}

static void test_loop_ends_under_caller(void **state) {
  (void)state;
  atomic_store(&task_cancelled, 0);
  start_loop(&ending);
  pthread_t th;
  atomic_store(&caller_status, 1);
  pthread_create(&th, NULL, caller_thread, NULL);
  usleep(30000);
  assert_coro_ok(stop_loop(&ending));
  pthread_join(th, NULL);
  /* Either the task was cancelled at the loop's end, or the call came too
   * late and was refused. */
  int st = atomic_load(&caller_status);
  assert_true(st == -ECANCELED || st == -EPIPE);
  assert_checks_passed();
}

/* ---- several loops, each with its own tasks, submitting to each other ------------- */

#define NLOOPS 3
#define NWORKERS 8
#define NROUNDS 25

static _Atomic(coro_loop *) loops[NLOOPS];
static atomic_int loops_up, loops_done;
static atomic_long remote_runs;

static void *remote_task(void *arg) {
  /* Runs on the target loop, among its own tasks. */
  CHECK_PTR_EQ(coro_loop_current(), atomic_load(&loops[(intptr_t)arg]));
  coro_yield();
  atomic_fetch_add(&remote_runs, 1);
  return (void *)((intptr_t)arg + 100);
}

typedef struct hop {
  int target;
} hop;

/* Pool job: a thread that is no loop's blocks on another loop's task. */
static void *hop_job(void *arg) {
  hop *h = arg;
  void *v = NULL;
  int r = coro_run_threadsafe(atomic_load(&loops[h->target]), remote_task,
                              (void *)(intptr_t)h->target, 20000, &v);
  if (r != 0) return coro_fail(r);
  return v;
}

static void *local_worker(void *arg) {
  int self = (int)(intptr_t)arg / NWORKERS;
  int w = (int)(intptr_t)arg % NWORKERS;
  for (int i = 0; i < NROUNDS; i++) {
    hop h = {(self + 1 + (w + i) % (NLOOPS - 1)) % NLOOPS};
    coro_future *f;
    void *v = NULL;
    CHECK_EQ(coro_run_in_thread(&f, NULL, hop_job, &h), 0);
    CHECK_EQ(coro_await(f, &v), 0);
    CHECK_EQ((intptr_t)v, h.target + 100);
    coro_future_release(f);
    coro_sleep(i % 2); /* local load */
  }
  return NULL;
}

static void *multi_main(void *arg) {
  int self = (int)(intptr_t)arg;
  atomic_store(&loops[self], coro_loop_current());
  atomic_fetch_add(&loops_up, 1);
  while (atomic_load(&loops_up) < NLOOPS) coro_sleep(1);
  coro_future *ws[NWORKERS];
  for (int w = 0; w < NWORKERS; w++)
    CHECK_EQ(coro_spawn(&ws[w], local_worker, (void *)(intptr_t)(self * NWORKERS + w)), 0);
  for (int w = 0; w < NWORKERS; w++) {
    CHECK_EQ(coro_await(ws[w], NULL), 0);
    coro_future_release(ws[w]);
  }
  /* Stay up until every loop is done submitting to us. */
  atomic_fetch_add(&loops_done, 1);
  while (atomic_load(&loops_done) < NLOOPS) coro_sleep(1);
  return NULL;
}

static void *multi_thread(void *arg) {
  coro_config cfg = {0};
  cfg.threads = 4;
  return (void *)(intptr_t)coro_run_config(&cfg, multi_main, arg, NULL);
}

static void test_loops_submit_to_each_other(void **state) {
  (void)state;
  pthread_t th[NLOOPS];
  atomic_store(&loops_up, 0);
  atomic_store(&loops_done, 0);
  atomic_store(&remote_runs, 0);
  for (int i = 0; i < NLOOPS; i++)
    assert_int_equal(pthread_create(&th[i], NULL, multi_thread, (void *)(intptr_t)i), 0);
  for (int i = 0; i < NLOOPS; i++) {
    void *r;
    pthread_join(th[i], &r);
    assert_int_equal((intptr_t)r, 0);
  }
  assert_int_equal(atomic_load(&remote_runs), NLOOPS * NWORKERS * NROUNDS);
  assert_checks_passed();
}

static void *nothing(void *arg) { return arg; }

int main(int argc, char **argv) {
  /* libuv opens process-wide descriptors with its first loop: open them
   * before the fixtures count. */
  coro_run(nothing, NULL, NULL);
#define T(x) cmocka_unit_test_setup_teardown(x, setup, teardown)
  const struct CMUnitTest tests[] = {
      T(test_call_fifo_keepalive),
      T(test_no_hold_is_stuck),
      T(test_misuse_and_epipe),
      T(test_run_threadsafe),
      T(test_loop_ends_under_caller),
      T(test_loops_submit_to_each_other),
  };
  return coro_test_main(argc, argv, tests, NULL, NULL);
}
