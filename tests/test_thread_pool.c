/* SPDX-License-Identifier: MIT */
/* Thread pools (asyncio run_in_executor + a cancel flag): results, failures
 * through coro_fail, FIFO order, cancellation of queued jobs (never run)
 * and running jobs (awaiter released at once, cooperative flag, late result
 * discarded), timeouts, shutdown with queued and running jobs from a task
 * and from a plain thread, bounded shutdown reporting stuck jobs, freeing
 * with jobs still running, the default pool at the loop's end, misuse and
 * allocation failure. Every test ends with no thread and no descriptor
 * more than it started with. */
#include "helpers.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- fixture: nothing leaked, no thread, no descriptor ---------------------- */

/* setup / teardown: the fixture that also counts threads and descriptors
 * (helpers.h). */
#define setup coro_test_setup_os
#define teardown coro_test_teardown_os

/* ---- jobs -------------------------------------------------------------------------- */

static atomic_int ran, discarded, saw_flag, gate, started;

static void reset(void) {
  atomic_store(&ran, 0);
  atomic_store(&discarded, 0);
  atomic_store(&saw_flag, 0);
  atomic_store(&gate, 0);
  atomic_store(&started, 0);
}

static void *job_double(void *arg) {
  atomic_fetch_add(&ran, 1);
  return (void *)((intptr_t)arg * 2);
}

static void *job_fail(void *arg) {
  (void)arg;
  atomic_fetch_add(&ran, 1);
  return coro_fail(-EIO);
}

/* Runs until the gate opens or its cancel flag is set; returns a malloc'd
 * int (so a discarded result shows up as a leak unless freed). */
static void *job_gated(void *arg) {
  atomic_fetch_add(&started, 1);
  while (!atomic_load(&gate)) {
    if (coro_job_cancelled()) {
      atomic_fetch_add(&saw_flag, 1);
      break;
    }
    usleep(500);
  }
  atomic_fetch_add(&ran, 1);
  int *p = malloc(sizeof(*p));
  *p = (int)(intptr_t)arg;
  return p;
}

/* Ignores its cancel flag: only the gate ends it. */
static void *job_stubborn(void *arg) {
  (void)arg;
  atomic_fetch_add(&started, 1);
  while (!atomic_load(&gate)) usleep(500);
  atomic_fetch_add(&ran, 1);
  return NULL;
}

/* The jobs a shutdown waited for have posted their outcomes; the loop
 * takes them in at its next poll (their discards run then). */
static void settle(void) { coro_sleep(5); }

static void discard_free(void *result, void *data) {
  (void)data;
  atomic_fetch_add(&discarded, 1);
  free(result);
}

static void wait_started(int n) {
  int64_t until = coro_test_now_ms() + 10000;
  while (atomic_load(&started) < n && coro_test_now_ms() < until)
    coro_sleep(1);
}

/* ---- results ------------------------------------------------------------------------ */

static void *basic_main(void *arg) {
  (void)arg;
  coro_pool *p;
  coro_future *f;
  void *v = NULL;
  reset();
  CHECK_EQ(coro_thread_pool_new(&p, 2), 0);
  CHECK_EQ(coro_run_in_thread(&f, p, job_double, (void *)21), 0);
  CHECK_ERR(coro_future_status(f), CORO_PENDING);
  CHECK_EQ(coro_await(f, &v), 0);
  CHECK_PTR_EQ(v, (void *)42);
  coro_future_release(f);
  /* A failure through coro_fail. */
  CHECK_EQ(coro_run_in_thread(&f, p, job_fail, NULL), 0);
  CHECK_ERR(coro_await(f, &v), -EIO);
  CHECK(v == NULL);
  coro_future_release(f);
  /* A job future is no promise. */
  CHECK_EQ(coro_run_in_thread(&f, p, job_double, (void *)1), 0);
  CHECK_ERR(coro_future_resolve(f, NULL), -EPERM);
  CHECK_EQ(coro_await(f, NULL), 0);
  coro_future_release(f);
  CHECK_EQ(atomic_load(&ran), 3);
  CHECK_EQ(coro_pool_shutdown(p, 1), 0);
  CHECK_EQ(coro_pool_shutdown(p, 1), 0); /* repeated: harmless */
  settle();
  coro_pool_free(p);
  return NULL;
}

static void test_basic(void **state) {
  (void)state;
  assert_run_ok(basic_main);
}

/* The default pool, many jobs at once, and coro_fail outside any job
 * (plain thread) doing nothing. */
#define MANY 2000
static void *many_main(void *arg) {
  (void)arg;
  static coro_future *fs[MANY];
  reset();
  for (int i = 0; i < MANY; i++)
    CHECK_EQ(coro_run_in_thread(&fs[i], NULL, job_double, (void *)(intptr_t)i), 0);
  long sum = 0;
  for (int i = 0; i < MANY; i++) {
    void *v;
    CHECK_EQ(coro_await(fs[i], &v), 0);
    sum += (long)(intptr_t)v;
    coro_future_release(fs[i]);
  }
  CHECK_EQ(sum, (long)MANY * (MANY - 1));
  CHECK_EQ(atomic_load(&ran), MANY);
  return NULL;
}

static void test_default_pool_many(void **state) {
  (void)state;
  coro_config cfg = {0};
  cfg.threads = 3;
  assert_coro_ok(coro_run_config(&cfg, many_main, NULL, NULL));
  assert_checks_passed();
}

/* One worker runs jobs in submission order. */
static char order[64];
static atomic_int order_len;
static void *job_note(void *arg) {
  int i = atomic_fetch_add(&order_len, 1);
  order[i] = (char)(intptr_t)arg;
  return NULL;
}

static void *fifo_main(void *arg) {
  (void)arg;
  coro_pool *p;
  coro_future *fs[10];
  atomic_store(&order_len, 0);
  memset(order, 0, sizeof(order));
  CHECK_EQ(coro_thread_pool_new(&p, 1), 0);
  for (int i = 0; i < 10; i++)
    CHECK_EQ(coro_run_in_thread(&fs[i], p, job_note, (void *)(intptr_t)('0' + i)), 0);
  for (int i = 0; i < 10; i++) {
    CHECK_EQ(coro_await(fs[i], NULL), 0);
    coro_future_release(fs[i]);
  }
  CHECK(strcmp(order, "0123456789") == 0);
  coro_pool_free(p);
  return NULL;
}

static void test_fifo(void **state) {
  (void)state;
  assert_run_ok(fifo_main);
}

/* A task waiting only for a job is not "stuck". */
static void *job_sleep_100(void *arg) {
  (void)arg;
  usleep(100 * 1000);
  return (void *)7;
}

static void *not_stuck_main(void *arg) {
  (void)arg;
  coro_future *f;
  void *v = NULL;
  CHECK_EQ(coro_run_in_thread(&f, NULL, job_sleep_100, NULL), 0);
  CHECK_EQ(coro_await(f, &v), 0);
  CHECK_PTR_EQ(v, (void *)7);
  coro_future_release(f);
  return NULL;
}

static void test_loop_not_stuck(void **state) {
  (void)state;
  assert_run_ok(not_stuck_main);
}

/* ---- cancellation ----------------------------------------------------------------- */

/* Queued job cancelled: it never runs. */
static void *cancel_queued_main(void *arg) {
  (void)arg;
  coro_pool *p;
  coro_future *a, *b;
  reset();
  CHECK_EQ(coro_thread_pool_new(&p, 1), 0);
  CHECK_EQ(coro_run_in_thread(&a, p, job_gated, (void *)1), 0);
  CHECK_EQ(coro_run_in_thread(&b, p, job_double, (void *)1), 0);
  wait_started(1);
  CHECK_EQ(coro_cancel(b), 0);
  CHECK_ERR(coro_future_status(b), -ECANCELED);
  CHECK_ERR(coro_cancel(b), -EALREADY);
  atomic_store(&gate, 1);
  void *v = NULL;
  CHECK_EQ(coro_await(a, &v), 0);
  CHECK(v != NULL && *(int *)v == 1);
  free(v);
  CHECK_EQ(coro_pool_shutdown(p, 1), 0);
  settle();
  CHECK_EQ(atomic_load(&ran), 1); /* b never ran */
  coro_future_release(a);
  coro_future_release(b);
  coro_pool_free(p);
  return NULL;
}

/* Cancelled in the very step that submitted it (still in the submitting
 * thread's outbox): it never runs. Freed in the step that submitted:
 * every future still completes. */
static void *cancel_same_step_main(void *arg) {
  (void)arg;
  coro_pool *p;
  coro_future *first, *a, *b, *c;
  reset();
  CHECK_EQ(coro_thread_pool_new(&p, 2), 0);
  /* The first job of the step goes to the pool at once, the next ones
   * wait in the outbox until this task suspends. */
  CHECK_EQ(coro_run_in_thread(&first, p, job_double, (void *)1), 0);
  CHECK_EQ(coro_run_in_thread(&a, p, job_double, (void *)1), 0);
  CHECK_EQ(coro_cancel(a), 0);
  CHECK_ERR(coro_future_status(a), -ECANCELED);
  CHECK_EQ(coro_run_in_thread(&b, p, job_double, (void *)2), 0);
  CHECK_EQ(coro_run_in_thread(&c, p, job_double, (void *)3), 0);
  coro_pool_free(p); /* shut down with both still on their way */
  int r1 = coro_await(first, NULL);
  int rb = coro_await(b, NULL), rc = coro_await(c, NULL);
  CHECK(r1 == 0 || r1 == -ECANCELED);
  CHECK(rb == 0 || rb == -ECANCELED);
  CHECK(rc == 0 || rc == -ECANCELED);
  CHECK_EQ(coro_sleep(5), 0);
  CHECK_EQ(atomic_load(&ran), (r1 == 0) + (rb == 0) + (rc == 0));
  coro_future_release(first);
  coro_future_release(a);
  coro_future_release(b);
  coro_future_release(c);
  return NULL;
}

static void test_cancel_same_step(void **state) {
  (void)state;
  assert_run_ok(cancel_same_step_main);
}

/* Submitted from a done callback (outside any task). */
static coro_future *from_cb;
static void submit_cb(coro_future *f, void *data) {
  (void)f;
  (void)data;
  CHECK_EQ(coro_run_in_thread(&from_cb, NULL, job_double, (void *)4), 0);
}

static void *from_callback_main(void *arg) {
  (void)arg;
  coro_future *p;
  void *v = NULL;
  from_cb = NULL;
  CHECK_EQ(coro_future_new(&p), 0);
  CHECK_EQ(coro_future_on_done(p, submit_cb, NULL), 0);
  CHECK_EQ(coro_future_resolve(p, NULL), 0);
  while (from_cb == NULL) CHECK_EQ(coro_yield(), 0);
  CHECK_EQ(coro_await(from_cb, &v), 0);
  CHECK_PTR_EQ(v, (void *)8);
  coro_future_release(from_cb);
  coro_future_release(p);
  return NULL;
}

static void test_submit_from_callback(void **state) {
  (void)state;
  assert_run_ok(from_callback_main);
}

static void test_cancel_queued(void **state) {
  (void)state;
  assert_run_ok(cancel_queued_main);
}

/* Running job cancelled: the awaiter resumes at once, the flag is set, the
 * late result goes to the discard finaliser. Cancelling the awaiting task
 * passes the request on to the job. */
static void *awaiter(void *arg) {
  return (void *)(intptr_t)coro_await((coro_future *)arg, NULL);
}

static void *cancel_running_main(void *arg) {
  (void)arg;
  coro_pool *p;
  coro_future *f, *t;
  coro_job_opts o = {0};
  o.discard = discard_free;
  reset();
  CHECK_EQ(coro_thread_pool_new(&p, 2), 0);
  CHECK_EQ(coro_run_in_thread_opts(&f, p, job_gated, (void *)5, &o), 0);
  wait_started(1);
  CHECK_EQ(coro_spawn(&t, awaiter, f), 0);
  CHECK_EQ(coro_sleep(5), 0);
  int64_t t0 = coro_test_now_ms();
  CHECK_EQ(coro_cancel(t), 0);
  void *v = NULL;
  CHECK_EQ(coro_await(t, &v), 0);
  CHECK_ERR((intptr_t)v, -ECANCELED);
  CHECK_LT(coro_test_now_ms() - t0, 1000);
  CHECK_ERR(coro_future_status(f), -ECANCELED);
  /* The job saw its flag, ended, and its result was discarded. */
  CHECK_EQ(coro_pool_shutdown(p, 1), 0);
  settle();
  CHECK_EQ(atomic_load(&saw_flag), 1);
  CHECK_EQ(atomic_load(&discarded), 1);
  coro_future_release(f);
  coro_future_release(t);
  coro_pool_free(p);
  return NULL;
}

static void test_cancel_running(void **state) {
  (void)state;
  assert_run_ok(cancel_running_main);
}

static void *timeout_main(void *arg) {
  (void)arg;
  coro_future *f;
  coro_job_opts o = {0};
  o.timeout_ms = 30;
  o.discard = discard_free;
  o.name = "slow";
  reset();
  int64_t t0 = coro_test_now_ms();
  CHECK_EQ(coro_run_in_thread_opts(&f, NULL, job_gated, (void *)1, &o), 0);
  CHECK_ERR(coro_await(f, NULL), -ETIMEDOUT);
  CHECK_GE(coro_test_now_ms() - t0, 30);
  coro_future_release(f);
  /* A job that ends in time is not affected by its limit. */
  o.timeout_ms = 10000;
  CHECK_EQ(coro_run_in_thread_opts(&f, NULL, job_double, (void *)2, &o), 0);
  void *v;
  CHECK_EQ(coro_await(f, &v), 0);
  CHECK_PTR_EQ(v, (void *)4);
  coro_future_release(f);
  o.timeout_ms = -2;
  CHECK_ERR(coro_run_in_thread_opts(&f, NULL, job_double, NULL, &o), -EINVAL);
  return NULL;
}

static void test_timeout(void **state) {
  (void)state;
  reset();
  assert_run_ok(timeout_main);
  /* The loop's end waited for the flagged job and discarded its result. */
  assert_int_equal(atomic_load(&saw_flag), 1);
  assert_int_equal(atomic_load(&discarded), 1);
}

/* ---- shutdown ---------------------------------------------------------------------- */

static void *opener(void *arg) {
  (void)arg;
  coro_sleep(30);
  atomic_store(&gate, 1);
  return NULL;
}

static void *shutdown_task_main(void *arg) {
  (void)arg;
  coro_pool *p;
  coro_future *a, *b, *c, *o;
  reset();
  CHECK_EQ(coro_thread_pool_new(&p, 1), 0);
  CHECK_EQ(coro_run_in_thread(&a, p, job_gated, (void *)1), 0);
  CHECK_EQ(coro_run_in_thread(&b, p, job_double, (void *)1), 0);
  CHECK_EQ(coro_run_in_thread(&c, p, job_double, (void *)2), 0);
  wait_started(1);
  CHECK_EQ(coro_spawn(&o, opener, NULL), 0); /* other tasks keep running */
  CHECK_EQ(coro_pool_shutdown(p, 1), 0);
  settle();
  CHECK_EQ(atomic_load(&gate), 1);
  CHECK_EQ(coro_future_status(o), 0);
  CHECK_ERR(coro_await(b, NULL), -ECANCELED);
  CHECK_ERR(coro_await(c, NULL), -ECANCELED);
  void *v = NULL;
  CHECK_EQ(coro_await(a, &v), 0);
  free(v);
  CHECK_EQ(atomic_load(&ran), 1);
  /* Closed for new jobs. */
  coro_future *d = NULL;
  CHECK_ERR(coro_run_in_thread(&d, p, job_double, NULL), -EPIPE);
  CHECK(d == NULL);
  coro_future_release(a);
  coro_future_release(b);
  coro_future_release(c);
  coro_future_release(o);
  coro_pool_free(p);
  return NULL;
}

static void test_shutdown_from_task(void **state) {
  (void)state;
  assert_run_ok(shutdown_task_main);
}

/* The task waiting in shutdown is cancelled: -ECANCELED, pool stays shut. */
static void *shutdown_waiter(void *arg) {
  return (void *)(intptr_t)coro_pool_shutdown((coro_pool *)arg, 1);
}

static void *shutdown_cancel_main(void *arg) {
  (void)arg;
  coro_pool *p;
  coro_future *a, *t;
  reset();
  CHECK_EQ(coro_thread_pool_new(&p, 1), 0);
  CHECK_EQ(coro_run_in_thread(&a, p, job_stubborn, NULL), 0);
  wait_started(1);
  CHECK_EQ(coro_spawn(&t, shutdown_waiter, p), 0);
  CHECK_EQ(coro_sleep(10), 0);
  CHECK_EQ(coro_cancel(t), 0);
  void *v;
  CHECK_EQ(coro_await(t, &v), 0);
  CHECK_ERR((intptr_t)v, -ECANCELED);
  /* Bounded wait with a timer from a task. */
  CHECK_ERR(coro_pool_shutdown_timeout(p, 20, NULL, NULL), -ETIMEDOUT);
  atomic_store(&gate, 1);
  CHECK_EQ(coro_pool_shutdown_timeout(p, 10000, NULL, NULL), 0);
  CHECK_EQ(coro_await(a, NULL), 0);
  coro_future_release(a);
  coro_future_release(t);
  coro_pool_free(p);
  return NULL;
}

static void test_shutdown_cancelled(void **state) {
  (void)state;
  assert_run_ok(shutdown_cancel_main);
}

/* Bounded shutdown from a plain thread reports the stuck job. */
static char stuck_name[32];
static int stuck_calls;
static uint64_t stuck_id;
static void on_stuck(const coro_job_info *j, void *data) {
  (void)data;
  stuck_calls++;
  stuck_id = j->id;
  snprintf(stuck_name, sizeof(stuck_name), "%s", j->name);
  CHECK_GE(j->running_ms, 0);
  CHECK_EQ(j->pid, 0);
}

static coro_pool *shared_pool;
static atomic_int thread_result;

static void *plain_shutdown(void *arg) {
  (void)arg;
  atomic_store(&thread_result,
               coro_pool_shutdown_timeout(shared_pool, 30, on_stuck, NULL));
  return NULL;
}

static void *plain_shutdown_wait(void *arg) {
  (void)arg;
  atomic_store(&thread_result, coro_pool_shutdown(shared_pool, 1));
  return NULL;
}

static void *shutdown_plain_main(void *arg) {
  (void)arg;
  coro_future *a, *b;
  coro_job_opts o = {0};
  o.name = "stuck-one";
  reset();
  stuck_calls = 0;
  CHECK_EQ(coro_thread_pool_new(&shared_pool, 1), 0);
  CHECK_EQ(coro_run_in_thread(&b, shared_pool, job_double, (void *)1), 0);
  CHECK_EQ(coro_await(b, NULL), 0);
  coro_future_release(b);
  CHECK_EQ(coro_run_in_thread_opts(&a, shared_pool, job_stubborn, NULL, &o), 0);
  wait_started(1);
  pthread_t th;
  CHECK_EQ(pthread_create(&th, NULL, plain_shutdown, NULL), 0);
  pthread_join(th, NULL);
  CHECK_ERR(atomic_load(&thread_result), -ETIMEDOUT);
  CHECK_EQ(stuck_calls, 1);
  CHECK_EQ(stuck_id, 2);
  CHECK(strcmp(stuck_name, "stuck-one") == 0);
  /* A blocking shutdown from a plain thread, while the job ends. */
  CHECK_EQ(pthread_create(&th, NULL, plain_shutdown_wait, NULL), 0);
  CHECK_EQ(coro_sleep(10), 0);
  atomic_store(&gate, 1);
  CHECK_EQ(coro_await(a, NULL), 0);
  pthread_join(th, NULL);
  CHECK_EQ(atomic_load(&thread_result), 0);
  coro_future_release(a);
  coro_pool_free(shared_pool);
  return NULL;
}

static void test_shutdown_plain_thread(void **state) {
  (void)state;
  assert_run_ok(shutdown_plain_main);
}

/* wait == 0: returns at once; unnamed stuck jobs are "job-N". */
static void *shutdown_nowait_main(void *arg) {
  (void)arg;
  coro_pool *p;
  coro_future *a;
  reset();
  stuck_calls = 0;
  CHECK_EQ(coro_thread_pool_new(&p, 1), 0);
  CHECK_EQ(coro_run_in_thread(&a, p, job_stubborn, NULL), 0);
  wait_started(1);
  CHECK_ERR(coro_pool_shutdown_timeout(p, 0, on_stuck, NULL), -ETIMEDOUT);
  CHECK(strcmp(stuck_name, "job-1") == 0);
  CHECK_EQ(coro_pool_shutdown(p, 0), 0);
  CHECK_ERR(coro_pool_shutdown_timeout(p, -2, NULL, NULL), -EINVAL);
  atomic_store(&gate, 1);
  CHECK_EQ(coro_await(a, NULL), 0);
  coro_future_release(a);
  coro_pool_free(p);
  return NULL;
}

static void test_shutdown_nowait(void **state) {
  (void)state;
  assert_run_ok(shutdown_nowait_main);
}

/* Free with a job still running: the future still completes, the thread
 * ends on its own afterwards (the fixture checks it is gone). */
static void *free_running_main(void *arg) {
  (void)arg;
  coro_pool *p;
  coro_future *a;
  reset();
  CHECK_EQ(coro_thread_pool_new(&p, 2), 0);
  CHECK_EQ(coro_run_in_thread(&a, p, job_stubborn, NULL), 0);
  wait_started(1);
  coro_pool_free(p);
  CHECK_ERR(coro_future_status(a), CORO_PENDING);
  CHECK_EQ(coro_sleep(5), 0);
  atomic_store(&gate, 1);
  CHECK_EQ(coro_await(a, NULL), 0);
  coro_future_release(a);
  return NULL;
}

static void test_free_with_running_job(void **state) {
  (void)state;
  assert_run_ok(free_running_main);
}

/* A job that shuts down / frees its own pool. */
static void *job_self_shutdown(void *arg) {
  coro_pool *p = arg;
  int r = coro_pool_shutdown(p, 1);
  coro_pool_free(p);
  return (void *)(intptr_t)r;
}

static void *self_main(void *arg) {
  (void)arg;
  coro_pool *p;
  coro_future *a;
  void *v;
  CHECK_EQ(coro_thread_pool_new(&p, 1), 0);
  CHECK_EQ(coro_run_in_thread(&a, p, job_self_shutdown, p), 0);
  CHECK_EQ(coro_await(a, &v), 0);
  CHECK_ERR((intptr_t)v, -EDEADLK);
  coro_future_release(a);
  return NULL;
}

static void test_job_frees_own_pool(void **state) {
  (void)state;
  assert_run_ok(self_main);
}

/* ---- the loop's end ------------------------------------------------------------------ */

/* main returns while jobs run: on a user pool the job is flagged and its
 * late result discarded; the future outlives the loop, cancelled. */
static coro_future *kept;
static coro_pool *user_pool;
static void *loop_end_main(void *arg) {
  (void)arg;
  coro_job_opts o = {0};
  o.discard = discard_free;
  CHECK_EQ(coro_thread_pool_new(&user_pool, 1), 0);
  CHECK_EQ(coro_run_in_thread_opts(&kept, user_pool, job_gated, (void *)1, &o), 0);
  coro_future *q;
  CHECK_EQ(coro_run_in_thread_opts(&q, user_pool, job_double, NULL, &o), 0);
  coro_future_release(q); /* queued, never awaited: dropped at loop end */
  wait_started(1);
  /* A default-pool job polling its flag does not hold the loop up. */
  CHECK_EQ(coro_run_in_thread_opts(&q, NULL, job_gated, (void *)2, &o), 0);
  coro_future_release(q);
  wait_started(2);
  return NULL;
}

static void test_loop_end_detaches(void **state) {
  (void)state;
  reset();
  int64_t t0 = coro_test_now_ms();
  assert_run_ok(loop_end_main);
  assert_true(coro_test_now_ms() - t0 < 5000);
  assert_int_equal(coro_future_status(kept), -ECANCELED);
  coro_future_release(kept);
  assert_coro_ok(coro_pool_shutdown(user_pool, 1));
  coro_pool_free(user_pool);
  assert_int_equal(atomic_load(&saw_flag), 2);
  assert_int_equal(atomic_load(&discarded), 2);
  assert_int_equal(atomic_load(&ran), 2); /* the queued job never ran */
}

/* A default-pool job that ignores its flag: coro_run waits the configured
 * time, reports it on stderr, and returns (the job finishes detached). */
static void *stuck_default_main(void *arg) {
  (void)arg;
  coro_future *f;
  coro_job_opts o = {0};
  o.name = "never-ends";
  CHECK_EQ(coro_run_in_thread_opts(&f, NULL, job_stubborn, NULL, &o), 0);
  wait_started(1);
  coro_future_release(f);
  return NULL;
}

static void stuck_child(void *arg) {
  (void)arg;
  setenv("CORO_POOL_EXIT_WAIT_MS", "100", 1);
  reset();
  int r = coro_run(stuck_default_main, NULL, NULL);
  _exit(r == 0 && coro_test_failed_line == 0 ? 0 : 1);
}

static void test_loop_end_stuck_default_job(void **state) {
  (void)state;
  char err[1024];
  int st = coro_test_in_child_stderr(stuck_child, NULL, 10000, err, sizeof(err));
  assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  assert_non_null(strstr(err, "default thread pool job 'never-ends' still running"));
}

/* ---- stress: cancellations and timeouts at random ------------------------------- */

/* Every job returns a malloc'd result: each one that ran was either
 * delivered (and freed here) or handed to the discard finaliser. */
static void *job_short(void *arg) {
  atomic_fetch_add(&ran, 1);
  int n = (int)(intptr_t)arg;
  for (int k = 0; k < (n % 4) * 50 && !coro_job_cancelled(); k++) usleep(2);
  int *r = malloc(sizeof(*r));
  *r = n;
  return r;
}

#define STRESS 1500
static coro_future *sfs[STRESS];
static char awaited[STRESS]; /* its result belongs to an awaiting task */
static coro_pool *stress_pool;

static void *stress_awaiter(void *arg) {
  void *v = NULL;
  int r = coro_await((coro_future *)arg, &v);
  if (r == 0) free(v);
  return (void *)(intptr_t)(r == 0);
}

static void *stress_main(void *arg) {
  (void)arg;
  unsigned seed = 12345;
  long delivered = 0;
  coro_job_opts o = {0};
  o.discard = discard_free;
  reset();
  CHECK_EQ(coro_thread_pool_new(&stress_pool, 3), 0);
  coro_future *ts[64];
  int nts = 0;
  memset(awaited, 0, sizeof(awaited));
  for (int i = 0; i < STRESS; i++) {
    seed = seed * 1103515245u + 12345u;
    unsigned r = (seed >> 16) % 16;
    o.timeout_ms = r == 0 ? 1 : 0;
    CHECK_EQ(coro_run_in_thread_opts(&sfs[i], stress_pool, job_short,
                                     (void *)(intptr_t)i, &o), 0);
    if (r == 1 || r == 2) CHECK_EQ(coro_cancel(sfs[i]), 0);
    if (r == 3) CHECK_EQ(coro_yield(), 0);
    if (r == 4 && nts < 64) {
      /* An awaiting task, cancelled a little later. */
      CHECK_EQ(coro_spawn(&ts[nts++], stress_awaiter, sfs[i]), 0);
      awaited[i] = 1;
    }
    if (i % 100 == 99) {
      CHECK_EQ(coro_sleep(1), 0);
      for (int k = 0; k < nts; k++) coro_cancel(ts[k]);
    }
  }
  for (int k = 0; k < nts; k++) {
    void *v;
    CHECK_EQ(coro_await(ts[k], &v), 0);
    delivered += (intptr_t)v;
    coro_future_release(ts[k]);
  }
  for (int i = 0; i < STRESS; i++) {
    void *v = NULL;
    int r = coro_await(sfs[i], &v);
    CHECK(r == 0 || r == -ECANCELED || r == -ETIMEDOUT);
    if (r == 0 && !awaited[i]) {
      CHECK(v != NULL && *(int *)v == i);
      free(v);
      delivered++;
    }
  }
  CHECK_EQ(coro_pool_shutdown(stress_pool, 1), 0);
  settle();
  for (int i = 0; i < STRESS; i++) coro_future_release(sfs[i]);
  CHECK_EQ(atomic_load(&ran), delivered + atomic_load(&discarded));
  CHECK_LT(atomic_load(&ran), STRESS); /* some were cancelled while queued */
  CHECK_GT(delivered, STRESS / 2);
  coro_pool_free(stress_pool);
  return NULL;
}

static void test_stress_cancel(void **state) {
  (void)state;
  assert_run_ok(stress_main);
}

/* ---- misuse and allocation failure ------------------------------------------------- */

static void *misuse_main(void *arg) {
  (void)arg;
  coro_pool *p;
  coro_future *f = NULL;
  CHECK_ERR(coro_thread_pool_new(NULL, 1), -EINVAL);
  CHECK_ERR(coro_thread_pool_new(&p, 100000), -EINVAL);
  CHECK_ERR(coro_run_in_thread(NULL, NULL, job_double, NULL), -EINVAL);
  CHECK_ERR(coro_run_in_thread(&f, NULL, NULL, NULL), -EINVAL);
  CHECK(f == NULL);
  CHECK_ERR(coro_pool_shutdown(NULL, 1), -EINVAL);
  coro_pool_free(NULL);
  CHECK_EQ(coro_job_cancelled(), 0);
  reset();
  for (long n = 1; n <= 4; n++) {
    coro_test_fail_alloc_after(n);
    int r = coro_run_in_thread(&f, NULL, job_double, (void *)1);
    coro_test_fail_alloc_after(0);
    if (r == 0) {
      CHECK_EQ(coro_await(f, NULL), 0);
      coro_future_release(f);
      f = NULL;
    } else {
      CHECK_ERR(r, -ENOMEM);
      CHECK(f == NULL);
    }
  }
  coro_test_fail_alloc_after(1);
  CHECK_ERR(coro_thread_pool_new(&p, 1), -ENOMEM);
  coro_test_fail_alloc_after(2);
  CHECK_ERR(coro_thread_pool_new(&p, 1), -ENOMEM);
  coro_test_fail_alloc_after(0);
  return NULL;
}

static void test_misuse(void **state) {
  (void)state;
  coro_future *f = NULL;
  assert_coro_err(coro_run_in_thread(&f, NULL, job_double, NULL), -EPERM);
  assert_run_ok(misuse_main);
}

/* The freeing rule: a pool freed while tasks wait in a waiting shutdown
 * wakes them with -EPIPE, and the last of them frees it (under ASan a
 * waiter that resumed into the freed pool was a use after free). */
static coro_pool *free_pool;
static int free_waiter_r[2];

static void *free_shutdown_waiter(void *arg) {
  int i = (int)(intptr_t)arg;
  free_waiter_r[i] = coro_pool_shutdown(free_pool, 1);
  return NULL;
}

static void *free_while_shutdown_main(void *arg) {
  (void)arg;
  reset();
  CHECK_OK(coro_thread_pool_new(&free_pool, 1));
  coro_future *job;
  CHECK_OK(coro_run_in_thread(&job, free_pool, job_stubborn, NULL));
  while (atomic_load(&started) == 0) coro_sleep(1);
  coro_future *w[2];
  for (int i = 0; i < 2; i++) {
    free_waiter_r[i] = 1;
    w[i] = coro_test_spawn(free_shutdown_waiter, (void *)(intptr_t)i);
  }
  coro_test_yields(2); /* both wait for the running job */
  CHECK_EQ(free_waiter_r[0], 1);
  coro_pool_free(free_pool);
  atomic_store(&gate, 1); /* the job ends; its worker lets the pool go */
  for (int i = 0; i < 2; i++) {
    CHECK_OK(coro_test_join(w[i]));
    CHECK_ERR(free_waiter_r[i], -EPIPE);
  }
  coro_await(job, NULL);
  coro_future_release(job);
  return NULL;
}

static void test_free_during_waiting_shutdown(void **state) {
  (void)state;
  assert_run_ok(free_while_shutdown_main);
}

static void *nothing(void *arg) { return arg; }

int main(int argc, char **argv) {
  /* libuv opens process-wide descriptors with its first loop: open them
   * before the fixtures count. */
  coro_run(nothing, NULL, NULL);
#define T(x) cmocka_unit_test_setup_teardown(x, setup, teardown)
  const struct CMUnitTest tests[] = {
      T(test_basic),
      T(test_default_pool_many),
      T(test_fifo),
      T(test_loop_not_stuck),
      T(test_cancel_queued),
      T(test_cancel_same_step),
      T(test_submit_from_callback),
      T(test_cancel_running),
      T(test_timeout),
      T(test_shutdown_from_task),
      T(test_shutdown_cancelled),
      T(test_shutdown_plain_thread),
      T(test_shutdown_nowait),
      T(test_free_with_running_job),
      T(test_job_frees_own_pool),
      T(test_loop_end_detaches),
      T(test_loop_end_stuck_default_job),
      T(test_stress_cancel),
      T(test_misuse),
      T(test_free_during_waiting_shutdown),
  };
  return coro_test_main(argc, argv, tests, NULL, NULL);
}
