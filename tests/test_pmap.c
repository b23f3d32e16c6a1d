/* SPDX-License-Identifier: MIT */
/* Parallel map (aiochan's parallel_pipe): ordered and unordered delivery,
 * the concurrency limit, the callback form, failures per item, cancelling
 * the whole map (queued jobs never run, running ones are flagged, results
 * not delivered are discarded), a cancelled consumer losing nothing,
 * freeing early, misuse and allocation failure. */
#include "helpers.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* setup / teardown: the fixture that also counts threads and descriptors
 * (helpers.h). */
#define setup coro_test_setup_os
#define teardown coro_test_teardown_os

/* ---- jobs -------------------------------------------------------------------------- */

static atomic_int in_flight, max_in_flight, ran, discarded, saw_flag, gate;

static void reset(void) {
  atomic_store(&in_flight, 0);
  atomic_store(&max_in_flight, 0);
  atomic_store(&ran, 0);
  atomic_store(&discarded, 0);
  atomic_store(&saw_flag, 0);
  atomic_store(&gate, 0);
}

static void enter(void) {
  int n = atomic_fetch_add(&in_flight, 1) + 1;
  int m = atomic_load(&max_in_flight);
  while (n > m && !atomic_compare_exchange_weak(&max_in_flight, &m, n)) {
  }
}

/* Input: an int; sleeps (n % 4) ms (reversed for odd blocks), returns a
 * malloc'd copy of n * 2. */
static void *job_twice(void *arg) {
  enter();
  int n = *(int *)arg;
  usleep((useconds_t)((3 - n % 4) * 1000));
  int *r = malloc(sizeof(*r));
  *r = n * 2;
  atomic_fetch_add(&ran, 1);
  atomic_fetch_sub(&in_flight, 1);
  return r;
}

static void *job_fail_odd(void *arg) {
  int n = *(int *)arg;
  atomic_fetch_add(&ran, 1);
  if (n % 2) return coro_fail(-EIO);
  int *r = malloc(sizeof(*r));
  *r = n;
  return r;
}

static void *job_gated(void *arg) {
  enter();
  while (!atomic_load(&gate)) {
    if (coro_job_cancelled()) {
      atomic_fetch_add(&saw_flag, 1);
      break;
    }
    usleep(500);
  }
  atomic_fetch_add(&ran, 1);
  atomic_fetch_sub(&in_flight, 1);
  int *r = malloc(sizeof(*r));
  *r = *(int *)arg;
  return r;
}

/* The jobs a shutdown waited for have posted their outcomes; the loop
 * takes them in at its next poll (their discards run then). */
static void settle(void) { coro_sleep(5); }

static void discard_free(void *result, void *data) {
  (void)data;
  atomic_fetch_add(&discarded, 1);
  free(result);
}

#define N 40
static int vals[N];
static void *ptrs[N];

static void init_inputs(void) {
  for (int i = 0; i < N; i++) {
    vals[i] = i;
    ptrs[i] = &vals[i];
  }
}

static coro_job_opts jopts;

static coro_pmap_opts base_opts(coro_fn fn, size_t count, unsigned limit,
                                int ordered) {
  coro_pmap_opts o;
  memset(&o, 0, sizeof(o));
  memset(&jopts, 0, sizeof(jopts));
  jopts.discard = discard_free;
  o.count = count;
  o.limit = limit;
  o.ordered = ordered;
  o.fn = fn;
  o.inputs = ptrs;
  o.job = &jopts;
  return o;
}

/* ---- delivery --------------------------------------------------------------------------- */

static void *ordered_main(void *arg) {
  (void)arg;
  coro_pmap *m;
  coro_pmap_opts o = base_opts(job_twice, N, 4, 1);
  reset();
  init_inputs();
  CHECK_EQ(coro_pmap_new(&m, &o), 0);
  for (int i = 0; i < N; i++) {
    size_t idx = 99;
    int st = 1;
    void *v = NULL;
    CHECK_EQ(coro_pmap_next(m, &idx, &st, &v), 0);
    CHECK_EQ(idx, (size_t)i);
    CHECK_EQ(st, 0);
    CHECK(v != NULL && *(int *)v == 2 * i);
    free(v);
  }
  CHECK_ERR(coro_pmap_next(m, NULL, NULL, NULL), CORO_EOF);
  CHECK_ERR(coro_pmap_next(m, NULL, NULL, NULL), CORO_EOF);
  CHECK_ERR(coro_pmap_cancel(m), -EALREADY);
  coro_pmap_free(m);
  CHECK_LE(atomic_load(&max_in_flight), 4);
  CHECK_GE(atomic_load(&max_in_flight), 2);
  CHECK_EQ(atomic_load(&ran), N);
  CHECK_EQ(atomic_load(&discarded), 0);
  return NULL;
}

static void test_ordered(void **state) {
  (void)state;
  coro_config cfg = {0};
  cfg.threads = 8;
  assert_coro_ok(coro_run_config(&cfg, ordered_main, NULL, NULL));
  assert_checks_passed();
}

static void *unordered_main(void *arg) {
  (void)arg;
  coro_pmap *m;
  coro_pmap_opts o = base_opts(job_twice, N, 3, 0);
  int seen[N] = {0};
  int out_of_order = 0;
  reset();
  init_inputs();
  CHECK_EQ(coro_pmap_new(&m, &o), 0);
  for (int i = 0; i < N; i++) {
    size_t idx = 0;
    int st = 1;
    void *v = NULL;
    CHECK_EQ(coro_pmap_next(m, &idx, &st, &v), 0);
    CHECK_LT(idx, N);
    if (idx < N) seen[idx]++;
    if (idx != (size_t)i) out_of_order = 1;
    CHECK_EQ(st, 0);
    CHECK(v != NULL && *(int *)v == 2 * (int)idx);
    free(v);
  }
  CHECK_ERR(coro_pmap_next(m, NULL, NULL, NULL), CORO_EOF);
  coro_pmap_free(m);
  for (int i = 0; i < N; i++) CHECK_EQ(seen[i], 1);
  /* Later inputs sleep less: some finish before earlier ones. */
  CHECK(out_of_order);
  CHECK_LE(atomic_load(&max_in_flight), 3);
  return NULL;
}

static void test_unordered(void **state) {
  (void)state;
  coro_config cfg = {0};
  cfg.threads = 8;
  assert_coro_ok(coro_run_config(&cfg, unordered_main, NULL, NULL));
  assert_checks_passed();
}

/* Failures are per item; a value not asked for is discarded. */
static void *failures_main(void *arg) {
  (void)arg;
  coro_pmap *m;
  coro_pmap_opts o = base_opts(job_fail_odd, 10, 2, 1);
  reset();
  init_inputs();
  CHECK_EQ(coro_pmap_new(&m, &o), 0);
  for (int i = 0; i < 10; i++) {
    int st = 1;
    void *v = (void *)1;
    if (i == 4) {
      CHECK_EQ(coro_pmap_next(m, NULL, &st, NULL), 0);
      CHECK_EQ(st, 0);
      continue;
    }
    CHECK_EQ(coro_pmap_next(m, NULL, &st, &v), 0);
    if (i % 2) {
      CHECK_ERR(st, -EIO);
      CHECK(v == NULL);
    } else {
      CHECK_EQ(st, 0);
      CHECK(v != NULL && *(int *)v == i);
      free(v);
    }
  }
  CHECK_ERR(coro_pmap_next(m, NULL, NULL, NULL), CORO_EOF);
  CHECK_EQ(atomic_load(&discarded), 1);
  coro_pmap_free(m);
  /* A pool that takes no jobs: every item gets the submission error. */
  coro_pool *p;
  CHECK_EQ(coro_thread_pool_new(&p, 1), 0);
  CHECK_EQ(coro_pool_shutdown(p, 1), 0);
  settle();
  o.pool = p;
  CHECK_EQ(coro_pmap_new(&m, &o), 0);
  for (int i = 0; i < 10; i++) {
    int st = 1;
    CHECK_EQ(coro_pmap_next(m, NULL, &st, NULL), 0);
    CHECK_ERR(st, -EPIPE);
  }
  CHECK_ERR(coro_pmap_next(m, NULL, NULL, NULL), CORO_EOF);
  coro_pmap_free(m);
  coro_pool_free(p);
  /* Nothing to map. */
  o.pool = NULL;
  o.count = 0;
  CHECK_EQ(coro_pmap_new(&m, &o), 0);
  CHECK_ERR(coro_pmap_next(m, NULL, NULL, NULL), CORO_EOF);
  coro_pmap_free(m);
  return NULL;
}

static void test_failures(void **state) {
  (void)state;
  assert_run_ok(failures_main);
}

/* ---- the callback form --------------------------------------------------------------- */

static long cb_sum;
static int cb_calls, cb_stop_at;

static int sum_cb(size_t index, int status, void *value, void *data) {
  (void)index;
  CHECK(data == &cb_sum);
  CHECK_EQ(status, 0);
  cb_sum += *(int *)value;
  free(value);
  cb_calls++;
  coro_yield(); /* a callback may suspend */
  return cb_calls == cb_stop_at ? -EINTR : 0;
}

static void *callback_main(void *arg) {
  (void)arg;
  coro_pmap_opts o = base_opts(job_twice, N, 4, 0);
  reset();
  init_inputs();
  cb_sum = 0;
  cb_calls = 0;
  cb_stop_at = -1;
  CHECK_EQ(coro_pmap_run(&o, sum_cb, &cb_sum), 0);
  CHECK_EQ(cb_calls, N);
  CHECK_EQ(cb_sum, (long)N * (N - 1));
  /* Stopping early cancels the rest; what was in flight is discarded. */
  coro_pool *p;
  CHECK_EQ(coro_thread_pool_new(&p, 4), 0);
  o.pool = p;
  cb_calls = 0;
  cb_stop_at = 5;
  reset();
  CHECK_ERR(coro_pmap_run(&o, sum_cb, &cb_sum), -EINTR);
  CHECK_EQ(cb_calls, 5);
  CHECK_EQ(coro_pool_shutdown(p, 1), 0);
  settle();
  CHECK_LT(atomic_load(&ran), N);
  CHECK_EQ(atomic_load(&ran), 5 + atomic_load(&discarded));
  coro_pool_free(p);
  CHECK_ERR(coro_pmap_run(&o, NULL, NULL), -EINVAL);
  return NULL;
}

static void test_callback_form(void **state) {
  (void)state;
  assert_run_ok(callback_main);
}

/* ---- cancellation ------------------------------------------------------------------ */

static void *cancel_main(void *arg) {
  (void)arg;
  coro_pool *p;
  coro_pmap *m;
  coro_pmap_opts o = base_opts(job_gated, N, 4, 0);
  reset();
  init_inputs();
  CHECK_EQ(coro_thread_pool_new(&p, 2), 0);
  o.pool = p;
  CHECK_EQ(coro_pmap_new(&m, &o), 0);
  /* 2 run, 2 are queued in the pool, the rest wait in the map. */
  while (atomic_load(&in_flight) < 2) coro_sleep(1);
  CHECK_EQ(coro_pmap_cancel(m), 0);
  CHECK_ERR(coro_pmap_cancel(m), -EALREADY);
  CHECK_ERR(coro_pmap_next(m, NULL, NULL, NULL), -EPIPE);
  CHECK_EQ(coro_pool_shutdown(p, 1), 0);
  settle();
  CHECK_EQ(atomic_load(&ran), 2);     /* the queued ones never ran */
  CHECK_EQ(atomic_load(&saw_flag), 2);
  CHECK_EQ(atomic_load(&discarded), 2);
  coro_pmap_free(m);
  coro_pool_free(p);
  return NULL;
}

static void test_cancel_whole(void **state) {
  (void)state;
  assert_run_ok(cancel_main);
}

/* A consumer cancelled while it waits loses nothing; a waiting consumer
 * is released by coro_pmap_cancel. */
static void *consumer(void *arg) {
  return (void *)(intptr_t)coro_pmap_next((coro_pmap *)arg, NULL, NULL, NULL);
}

static void *consumer_cancel_main(void *arg) {
  (void)arg;
  coro_pmap *m;
  coro_future *t;
  coro_pmap_opts o = base_opts(job_gated, 3, 3, 1);
  reset();
  init_inputs();
  CHECK_EQ(coro_pmap_new(&m, &o), 0);
  CHECK_EQ(coro_spawn(&t, consumer, m), 0);
  CHECK_EQ(coro_sleep(5), 0);
  CHECK_EQ(coro_cancel(t), 0);
  void *v;
  CHECK_EQ(coro_await(t, &v), 0);
  CHECK_ERR((intptr_t)v, -ECANCELED);
  coro_future_release(t);
  atomic_store(&gate, 1);
  for (int i = 0; i < 3; i++) {
    size_t idx;
    CHECK_EQ(coro_pmap_next(m, &idx, NULL, &v), 0);
    CHECK_EQ(idx, (size_t)i);
    free(v);
  }
  CHECK_ERR(coro_pmap_next(m, NULL, NULL, NULL), CORO_EOF);
  coro_pmap_free(m);
  /* A waiting consumer and coro_pmap_cancel. */
  atomic_store(&gate, 0);
  CHECK_EQ(coro_pmap_new(&m, &o), 0);
  CHECK_EQ(coro_spawn(&t, consumer, m), 0);
  while (atomic_load(&in_flight) < 3) coro_sleep(1);
  CHECK_EQ(coro_pmap_cancel(m), 0);
  CHECK_EQ(coro_await(t, &v), 0);
  CHECK_ERR((intptr_t)v, -EPIPE);
  coro_future_release(t);
  coro_pmap_free(m);
  return NULL;
}

static void test_consumer_cancelled(void **state) {
  (void)state;
  coro_config cfg = {0};
  cfg.threads = 4;
  reset();
  assert_coro_ok(coro_run_config(&cfg, consumer_cancel_main, NULL, NULL));
  assert_checks_passed();
  /* The default pool was waited for at the loop's end. */
  assert_int_equal(atomic_load(&saw_flag), 3);
}

/* Freed early, with results waiting and jobs in flight. */
static void *free_early_main(void *arg) {
  (void)arg;
  coro_pool *p;
  coro_pmap *m;
  coro_pmap_opts o = base_opts(job_twice, N, 4, 1);
  reset();
  init_inputs();
  CHECK_EQ(coro_thread_pool_new(&p, 4), 0);
  o.pool = p;
  CHECK_EQ(coro_pmap_new(&m, &o), 0);
  void *v;
  CHECK_EQ(coro_pmap_next(m, NULL, NULL, &v), 0);
  free(v);
  CHECK_EQ(coro_sleep(10), 0);
  coro_pmap_free(m);
  CHECK_EQ(coro_pool_shutdown(p, 1), 0);
  settle();
  CHECK_EQ(atomic_load(&ran), 1 + atomic_load(&discarded));
  coro_pool_free(p);
  return NULL;
}

static void test_free_early(void **state) {
  (void)state;
  assert_run_ok(free_early_main);
}

/* ---- process mode ----------------------------------------------------------------- */

/* Runs in a worker process: the input's bytes twice; "fail" fails. */
static int proc_twice(const void *in, size_t n, void **out, size_t *out_len) {
  if (n == 4 && memcmp(in, "fail", 4) == 0) return -EDOM;
  char *b = malloc(2 * n + 1);
  if (b == NULL) return -ENOMEM;
  memcpy(b, in, n);
  memcpy(b + n, in, n);
  *out = b;
  *out_len = 2 * n;
  return 0;
}

static void *proc_main(void *arg) {
  (void)arg;
  static const char *words[] = {"a", "bb", "fail", "ccc", "dddd", "e"};
  static const void *data[6];
  static size_t lens[6];
  for (int i = 0; i < 6; i++) {
    data[i] = words[i];
    lens[i] = strlen(words[i]);
  }
  coro_pool *p;
  CHECK_EQ(coro_process_pool_new(&p, 2), 0);
  coro_pmap_opts o;
  memset(&o, 0, sizeof(o));
  o.count = 6;
  o.limit = 2;
  o.ordered = 1;
  o.pool = p;
  o.proc_fn = proc_twice;
  o.in_data = data;
  o.in_lens = lens;
  coro_pmap *m;
  CHECK_EQ(coro_pmap_new(&m, &o), 0);
  const void *d;
  size_t n;
  CHECK_ERR(coro_pmap_bytes(m, &d, &n), -ENOENT);
  for (int i = 0; i < 6; i++) {
    size_t idx;
    int st;
    void *v;
    CHECK_EQ(coro_pmap_next(m, &idx, &st, &v), 0);
    CHECK_EQ(idx, (size_t)i);
    if (i == 2) {
      CHECK_ERR(st, -EDOM);
      continue;
    }
    CHECK_EQ(st, 0);
    CHECK_EQ(coro_pmap_bytes(m, &d, &n), 0);
    CHECK_EQ(n, 2 * lens[i]);
    CHECK_PTR_EQ(d, v);
    CHECK(n == 2 * lens[i] && memcmp(d, words[i], lens[i]) == 0 &&
          memcmp((const char *)d + lens[i], words[i], lens[i]) == 0);
  }
  CHECK_ERR(coro_pmap_next(m, NULL, NULL, NULL), CORO_EOF);
  coro_pmap_free(m);
  /* Unordered, freed before the end. */
  o.ordered = 0;
  CHECK_EQ(coro_pmap_new(&m, &o), 0);
  CHECK_EQ(coro_pmap_next(m, NULL, NULL, NULL), 0);
  coro_pmap_free(m);
  /* Process mode needs a pool. */
  o.pool = NULL;
  CHECK_ERR(coro_pmap_new(&m, &o), -EINVAL);
  CHECK_EQ(coro_pool_shutdown(p, 1), 0);
  settle();
  coro_pool_free(p);
  return NULL;
}

static void test_process_mode(void **state) {
  (void)state;
  assert_run_ok(proc_main);
}

/* ---- misuse and allocation failure ------------------------------------------------- */

static coro_pmap *other_loops;
static void *misuse_main(void *arg) {
  (void)arg;
  coro_pmap *m = NULL;
  coro_pmap_opts o = base_opts(job_twice, 4, 2, 1);
  init_inputs();
  CHECK_ERR(coro_pmap_new(NULL, &o), -EINVAL);
  CHECK_ERR(coro_pmap_new(&m, NULL), -EINVAL);
  o.fn = NULL;
  CHECK_ERR(coro_pmap_new(&m, &o), -EINVAL);
  o.fn = job_twice;
  o.inputs = NULL;
  CHECK_ERR(coro_pmap_new(&m, &o), -EINVAL);
  o.inputs = ptrs;
  o.proc_fn = (coro_proc_fn)1; /* both modes */
  CHECK_ERR(coro_pmap_new(&m, &o), -EINVAL);
  o.proc_fn = NULL;
  CHECK(m == NULL);
  CHECK_ERR(coro_pmap_next(NULL, NULL, NULL, NULL), -EINVAL);
  CHECK_ERR(coro_pmap_cancel(NULL), -EINVAL);
  CHECK_ERR(coro_pmap_bytes(NULL, NULL, NULL), -EINVAL);
  coro_pmap_free(NULL);
  for (long n = 1; n <= 2; n++) {
    coro_test_fail_alloc_after(n);
    int r = coro_pmap_new(&m, &o);
    coro_test_fail_alloc_after(0);
    CHECK_ERR(r, -ENOMEM);
    CHECK(m == NULL);
  }
  CHECK_EQ(coro_pmap_new(&m, &o), 0);
  CHECK_ERR(coro_pmap_bytes(m, NULL, NULL), -EINVAL); /* thread mode */
  coro_pmap_free(m);
  return NULL;
}

static void test_misuse(void **state) {
  (void)state;
  coro_pmap_opts o = base_opts(job_twice, 4, 2, 1);
  assert_coro_err(coro_pmap_new(&other_loops, &o), -EPERM);
  assert_run_ok(misuse_main);
}

static void *nothing(void *arg) { return arg; }

int main(int argc, char **argv) {
  coro_run(nothing, NULL, NULL); /* libuv's process-wide descriptors */
#define T(x) cmocka_unit_test_setup_teardown(x, setup, teardown)
  const struct CMUnitTest tests[] = {
      T(test_ordered),
      T(test_unordered),
      T(test_failures),
      T(test_callback_form),
      T(test_cancel_whole),
      T(test_consumer_cancelled),
      T(test_free_early),
      T(test_process_mode),
      T(test_misuse),
  };
  return coro_test_main(argc, argv, tests, NULL, NULL);
}
