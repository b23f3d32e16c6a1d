/* SPDX-License-Identifier: MIT */
/* Queues (asyncio 3.13 Queue, trio-style hand-off): FIFO / LIFO / priority
 * order, maxsize, the _nowait codes, put and get that wait, timeouts,
 * task_done / join, 3.13 shutdown (drain and immediate), strict hand-off
 * (no barging), the cancellation races (a getter cancelled with an item
 * already handed over, a putter cancelled after its item went in), and
 * producer-consumer runs that check every item arrives exactly once.
 * Ports of CPython test_queues.py cases are named after them. */
#include "helpers.h"

#include <stdlib.h>
#include <string.h>

#define V(n) ((void *)(intptr_t)(n))
#define I(p) ((int)(intptr_t)(p))

#define spawn coro_test_spawn
#define reap coro_test_join
#define yields coro_test_yields

typedef struct actor {
  coro_queue *q;
  void *item;       /* to put / what it got */
  int64_t ms;
  int r;
  const char *tag;
} actor;

static void actor_init(actor *a, coro_queue *q, void *item) {
  memset(a, 0, sizeof(*a));
  a->q = q;
  a->item = item;
  a->ms = CORO_FOREVER;
  a->r = 1;
}

static void *getter(void *arg) {
  actor *a = arg;
  a->item = NULL;
  a->r = coro_queue_get_timeout(a->q, &a->item, a->ms);
  if (a->r == 0 && a->tag) coro_test_note(a->tag);
  return a->r == 0 ? NULL : coro_fail(a->r);
}

static void *putter(void *arg) {
  actor *a = arg;
  a->r = coro_queue_put_timeout(a->q, a->item, a->ms);
  if (a->r == 0 && a->tag) coro_test_note(a->tag);
  return a->r == 0 ? NULL : coro_fail(a->r);
}

static int destroyed;
static void count_destroy(void *item) {
  (void)item;
  destroyed++;
}

/* ==== order ================================================================= */

static int drain(coro_queue *q, int *out, int max) {
  int n = 0;
  void *it;
  while (n < max && coro_queue_get_nowait(q, &it) == 0) out[n++] = I(it);
  return n;
}

static void *order_main(void *arg) {
  (void)arg;
  int kinds[3] = {CORO_QUEUE_FIFO, CORO_QUEUE_LIFO, CORO_QUEUE_PRIORITY};
  int want[3][3] = {{1, 3, 2}, {2, 3, 1}, {1, 2, 3}};
  for (int k = 0; k < 3; k++) {
    coro_queue *q;
    CHECK_EQ(coro_queue_new(&q, kinds[k], 0, NULL), 0);
    CHECK_EQ(coro_queue_put(q, V(1)), 0);
    CHECK_EQ(coro_queue_put(q, V(3)), 0);
    CHECK_EQ(coro_queue_put_nowait(q, V(2)), 0);
    CHECK_EQ(coro_queue_size(q), 3);
    int got[3];
    CHECK_EQ(drain(q, got, 3), 3);
    for (int i = 0; i < 3; i++) CHECK_EQ(got[i], want[k][i]);
    CHECK_EQ(coro_queue_free(q), 0);
  }
  return NULL;
}

static void test_queue_order_kinds(void **state) {
  (void)state;
  assert_run_ok(order_main);
}

/* Priority: a compare function; equal items come out in put order. */
typedef struct job {
  int prio;
  int id;
} job;

static int job_cmp(const void *a, const void *b) {
  const job *x = a, *y = b;
  return (x->prio > y->prio) - (x->prio < y->prio);
}

static void *priority_main(void *arg) {
  (void)arg;
  coro_queue *q;
  CHECK_EQ(coro_queue_new(&q, CORO_QUEUE_PRIORITY, 0, NULL), 0);
  CHECK_EQ(coro_queue_set_compare(q, NULL), -EINVAL);
  CHECK_EQ(coro_queue_set_compare(q, job_cmp), 0);
  enum { N = 200 };
  static job jobs[N];
  srand(7);
  for (int i = 0; i < N; i++) {
    jobs[i].prio = rand() % 10;
    jobs[i].id = i;
    CHECK_EQ(coro_queue_put_nowait(q, &jobs[i]), 0);
  }
  CHECK_EQ(coro_queue_set_compare(q, job_cmp), -EBUSY);
  job *prev = NULL;
  for (int i = 0; i < N; i++) {
    void *it;
    CHECK_EQ(coro_queue_get_nowait(q, &it), 0);
    job *j = it;
    if (prev != NULL) {
      CHECK(prev->prio <= j->prio);
      if (prev->prio == j->prio) CHECK(prev->id < j->id);
    }
    prev = j;
  }
  CHECK_EQ(coro_queue_empty(q), 1);
  CHECK_EQ(coro_queue_free(q), 0);
  /* Default compare: intptr_t, random ints come out sorted. */
  CHECK_EQ(coro_queue_new(&q, CORO_QUEUE_PRIORITY, 0, NULL), 0);
  for (int i = 0; i < 1000; i++)
    CHECK_EQ(coro_queue_put_nowait(q, V(rand() % 2001 - 1000)), 0);
  int last = -100000;
  for (int i = 0; i < 1000; i++) {
    void *it;
    CHECK_EQ(coro_queue_get_nowait(q, &it), 0);
    CHECK(I(it) >= last);
    last = I(it);
  }
  CHECK_EQ(coro_queue_free(q), 0);
  CHECK_EQ(coro_queue_new(&q, CORO_QUEUE_FIFO, 0, NULL), 0);
  CHECK_EQ(coro_queue_set_compare(q, job_cmp), -EINVAL);
  CHECK_EQ(coro_queue_free(q), 0);
  return NULL;
}

static void test_queue_priority(void **state) {
  (void)state;
  assert_run_ok(priority_main);
}

/* The ring buffer wraps and grows with the order kept. */
static void *ring_main(void *arg) {
  (void)arg;
  coro_queue *q;
  CHECK_EQ(coro_queue_new(&q, CORO_QUEUE_FIFO, 0, NULL), 0);
  int next_in = 0, next_out = 0;
  for (int round = 0; round < 200; round++) {
    for (int i = 0; i < (round % 7) + 3; i++)
      CHECK_EQ(coro_queue_put_nowait(q, V(next_in++)), 0);
    for (int i = 0; i < (round % 5) + 1; i++) {
      void *it;
      if (coro_queue_get_nowait(q, &it) != 0) break;
      CHECK_EQ(I(it), next_out++);
    }
  }
  void *it;
  while (coro_queue_get_nowait(q, &it) == 0) CHECK_EQ(I(it), next_out++);
  CHECK_EQ(next_out, next_in);
  CHECK_EQ(coro_queue_unfinished(q), (size_t)next_in);
  CHECK_EQ(coro_queue_free(q), 0);
  return NULL;
}

static void test_queue_ring_wraps_and_grows(void **state) {
  (void)state;
  assert_run_ok(ring_main);
}

/* ==== maxsize, nowait, errors ================================================ */

static void *maxsize_main(void *arg) {
  (void)arg;
  coro_queue *q;
  CHECK_EQ(coro_queue_new(&q, CORO_QUEUE_FIFO, 2, NULL), 0);
  CHECK_EQ(coro_queue_maxsize(q), 2);
  CHECK_EQ(coro_queue_empty(q), 1);
  CHECK_EQ(coro_queue_full(q), 0);
  void *it;
  CHECK_EQ(coro_queue_get_nowait(q, &it), -EAGAIN);
  CHECK_EQ(coro_queue_get_timeout(q, &it, 0), -ETIMEDOUT);
  CHECK_EQ(coro_queue_put_nowait(q, V(1)), 0);
  CHECK_EQ(coro_queue_put(q, V(2)), 0);
  CHECK_EQ(coro_queue_full(q), 1);
  CHECK_EQ(coro_queue_put_nowait(q, V(3)), -EAGAIN);
  CHECK_EQ(coro_queue_put_timeout(q, V(3), 0), -ETIMEDOUT);
  int64_t t0 = coro_test_now_ms();
  CHECK_EQ(coro_queue_put_timeout(q, V(3), 20), -ETIMEDOUT);
  CHECK(coro_test_now_ms() - t0 >= 20);
  CHECK_EQ(coro_queue_size(q), 2);
  CHECK_EQ(coro_queue_get(q, &it), 0);
  CHECK_EQ(I(it), 1);
  CHECK_EQ(coro_queue_get(q, &it), 0);
  CHECK_EQ(I(it), 2);
  t0 = coro_test_now_ms();
  CHECK_EQ(coro_queue_get_timeout(q, &it, 20), -ETIMEDOUT);
  CHECK(coro_test_now_ms() - t0 >= 20);
  /* test_cancelled_getters_not_being_held: the timed-out getter left. */
  CHECK_EQ(coro_queue_put_nowait(q, V(4)), 0);
  CHECK_EQ(coro_queue_size(q), 1);
  CHECK_EQ(coro_queue_put_timeout(q, V(5), -2), -EINVAL);
  CHECK_EQ(coro_queue_get(q, NULL), -EINVAL);
  CHECK_EQ(coro_queue_get(NULL, &it), -EINVAL);
  CHECK_EQ(coro_queue_put(NULL, V(1)), -EINVAL);
  CHECK_EQ(coro_queue_empty(NULL), -EINVAL);
  CHECK_EQ(coro_queue_full(NULL), -EINVAL);
  CHECK_EQ(coro_queue_task_done(NULL), -EINVAL);
  CHECK_EQ(coro_queue_join(NULL), -EINVAL);
  CHECK_EQ(coro_queue_shutdown(NULL, 0), -EINVAL);
  CHECK_EQ(coro_queue_free(q), 0);
  return NULL;
}

static void test_queue_maxsize_and_nowait(void **state) {
  (void)state;
  coro_queue *q;
  assert_coro_err(coro_queue_new(NULL, CORO_QUEUE_FIFO, 0, NULL), -EINVAL);
  assert_coro_err(coro_queue_new(&q, 7, 0, NULL), -EINVAL);
  assert_coro_err(coro_queue_free(NULL), -EINVAL);
  /* Outside any loop: no waiting, but nowait calls work (pre-filling). */
  assert_coro_ok(coro_queue_new(&q, CORO_QUEUE_FIFO, 1, NULL));
  void *it;
  assert_coro_err(coro_queue_get(q, &it), -EPERM);
  assert_coro_ok(coro_queue_put_nowait(q, V(9)));
  assert_coro_err(coro_queue_put(q, V(9)), -EPERM);
  assert_coro_err(coro_queue_join(q), -EPERM);
  assert_coro_ok(coro_queue_get_nowait(q, &it));
  assert_int_equal(I(it), 9);
  assert_coro_ok(coro_queue_free(q));
  assert_run_ok(maxsize_main);
}

/* Allocation failure: the put fails with -ENOMEM and changes nothing. */
static void *enomem_main(void *arg) {
  (void)arg;
  coro_queue *q;
  CHECK_EQ(coro_queue_new(&q, CORO_QUEUE_FIFO, 0, NULL), 0);
  coro_test_fail_alloc_after(1);
  CHECK_EQ(coro_queue_put_nowait(q, V(1)), -ENOMEM);
  coro_test_fail_alloc_after(0);
  CHECK_EQ(coro_queue_size(q), 0);
  CHECK_EQ(coro_queue_unfinished(q), 0);
  CHECK_EQ(coro_queue_put_nowait(q, V(1)), 0);
  CHECK_EQ(coro_queue_free(q), 0);
  return NULL;
}

static void test_queue_enomem(void **state) {
  (void)state;
  assert_run_ok(enomem_main);
}

/* ==== waiting: FIFO, no barging ============================================== */

/* Getters wait in FIFO order; an item put while they wait is theirs: a
 * get_nowait in between finds nothing (trio's test_channel_fairness; the
 * opposite of asyncio, which barges). */
static void *getters_fifo_main(void *arg) {
  (void)arg;
  coro_test_log_reset();
  coro_queue *q;
  CHECK_EQ(coro_queue_new(&q, CORO_QUEUE_FIFO, 0, NULL), 0);
  actor a[3];
  coro_future *f[3];
  const char *tags[3] = {"1", "2", "3"};
  for (int i = 0; i < 3; i++) {
    actor_init(&a[i], q, NULL);
    a[i].tag = tags[i];
    f[i] = spawn(getter, &a[i]);
  }
  yields(1);
  CHECK_EQ(coro_queue_put_nowait(q, V(10)), 0);
  void *it;
  CHECK_EQ(coro_queue_get_nowait(q, &it), -EAGAIN);  /* no barging */
  CHECK_EQ(coro_queue_put(q, V(20)), 0);
  CHECK_EQ(coro_queue_put(q, V(30)), 0);
  CHECK_EQ(coro_queue_size(q), 0);
  for (int i = 0; i < 3; i++) CHECK_EQ(reap(f[i]), 0);
  CHECK(strcmp(coro_test_log(), "123") == 0);
  CHECK_EQ(I(a[0].item), 10);
  CHECK_EQ(I(a[1].item), 20);
  CHECK_EQ(I(a[2].item), 30);
  CHECK_EQ(coro_queue_free(q), 0);
  return NULL;
}

static void test_queue_getters_fifo_no_barging(void **state) {
  (void)state;
  assert_run_ok(getters_fifo_main);
}

/* Putters wait in FIFO order on a full queue; a get moves the first
 * putter's item in at once, so a put_nowait in between finds it full. */
static void *putters_fifo_main(void *arg) {
  (void)arg;
  coro_test_log_reset();
  coro_queue *q;
  CHECK_EQ(coro_queue_new(&q, CORO_QUEUE_FIFO, 1, NULL), 0);
  CHECK_EQ(coro_queue_put(q, V(0)), 0);
  actor a[3];
  coro_future *f[3];
  const char *tags[3] = {"1", "2", "3"};
  for (int i = 0; i < 3; i++) {
    actor_init(&a[i], q, V(i + 1));
    a[i].tag = tags[i];
    f[i] = spawn(putter, &a[i]);
  }
  yields(1);
  void *it;
  for (int i = 0; i < 4; i++) {
    CHECK_EQ(coro_queue_get(q, &it), 0);
    CHECK_EQ(I(it), i);
    if (i < 3) {
      CHECK_EQ(coro_queue_full(q), 1);
      CHECK_EQ(coro_queue_put_nowait(q, V(99)), -EAGAIN);
    }
  }
  for (int i = 0; i < 3; i++) CHECK_EQ(reap(f[i]), 0);
  CHECK(strcmp(coro_test_log(), "123") == 0);
  CHECK_EQ(coro_queue_unfinished(q), 4);
  CHECK_EQ(coro_queue_free(q), 0);
  return NULL;
}

static void test_queue_putters_fifo(void **state) {
  (void)state;
  assert_run_ok(putters_fifo_main);
}

/* ==== cancellation races ===================================================== */

/* A getter handed an item and cancelled before it runs: the item goes to
 * the next getter (test_get_cancel_drop_one_pending_reader), or back to
 * the front of the queue. */
static void *get_cancel_main(void *arg) {
  (void)arg;
  int kinds[3] = {CORO_QUEUE_FIFO, CORO_QUEUE_LIFO, CORO_QUEUE_PRIORITY};
  for (int k = 0; k < 3; k++) {
    coro_queue *q;
    CHECK_EQ(coro_queue_new(&q, kinds[k], 2, NULL), 0);
    actor a[2];
    coro_future *f[2];
    for (int i = 0; i < 2; i++) {
      actor_init(&a[i], q, NULL);
      f[i] = spawn(getter, &a[i]);
    }
    yields(1);
    CHECK_EQ(coro_queue_put(q, V(5)), 0);    /* handed to getter 0 */
    CHECK_EQ(coro_cancel(f[0]), 0);          /* passes it to getter 1 */
    CHECK_EQ(reap(f[0]), -ECANCELED);
    CHECK_EQ(reap(f[1]), 0);
    CHECK_EQ(I(a[1].item), 5);
    CHECK(a[0].item == NULL);
    /* The only getter: back to the front, before items put since; the
     * queue may then hold maxsize + 1 for a while. */
    actor_init(&a[0], q, NULL);
    f[0] = spawn(getter, &a[0]);
    yields(1);
    CHECK_EQ(coro_queue_put(q, V(5)), 0);    /* handed over */
    CHECK_EQ(coro_queue_put(q, V(6)), 0);
    CHECK_EQ(coro_queue_put(q, V(7)), 0);
    CHECK_EQ(coro_queue_full(q), 1);
    CHECK_EQ(coro_cancel(f[0]), 0);
    CHECK_EQ(coro_queue_size(q), 3);
    CHECK_EQ(reap(f[0]), -ECANCELED);
    int got[3];
    CHECK_EQ(drain(q, got, 3), 3);
    int want[3][3] = {{5, 6, 7}, {5, 7, 6}, {5, 6, 7}};
    for (int i = 0; i < 3; i++) CHECK_EQ(got[i], want[k][i]);
    CHECK_EQ(coro_queue_unfinished(q), 4);
    CHECK_EQ(coro_queue_free(q), 0);
  }
  return NULL;
}

static void test_queue_getter_cancelled_with_item(void **state) {
  (void)state;
  assert_run_ok(get_cancel_main);
}

/* A putter cancelled while waiting puts nothing; one whose item was moved
 * in before it ran has put it: 0, and the cancellation comes at its next
 * suspension. */
static void *put_then_yield(void *arg) {
  actor *a = arg;
  a->r = coro_queue_put(a->q, a->item);
  int r2 = coro_yield();
  CHECK_EQ(r2, a->r == 0 ? -ECANCELED : 0);
  return NULL;
}

static void *put_cancel_main(void *arg) {
  (void)arg;
  coro_queue *q;
  CHECK_EQ(coro_queue_new(&q, CORO_QUEUE_FIFO, 1, NULL), 0);
  CHECK_EQ(coro_queue_put(q, V(1)), 0);
  actor a[2];
  coro_future *f[2];
  actor_init(&a[0], q, V(2));
  actor_init(&a[1], q, V(3));
  f[0] = spawn(putter, &a[0]);
  f[1] = spawn(put_then_yield, &a[1]);
  yields(1);
  CHECK_EQ(coro_cancel(f[0]), 0);          /* waiting: nothing put */
  CHECK_EQ(reap(f[0]), -ECANCELED);
  void *it;
  CHECK_EQ(coro_queue_get(q, &it), 0);      /* moves 3 in */
  CHECK_EQ(I(it), 1);
  CHECK_EQ(coro_cancel(f[1]), 0);
  CHECK_EQ(reap(f[1]), 0);
  CHECK_EQ(a[1].r, 0);
  CHECK_EQ(coro_queue_get_nowait(q, &it), 0);
  CHECK_EQ(I(it), 3);
  CHECK_EQ(coro_queue_empty(q), 1);
  CHECK_EQ(coro_queue_unfinished(q), 2);
  CHECK_EQ(coro_queue_free(q), 0);
  return NULL;
}

static void test_queue_putter_cancelled(void **state) {
  (void)state;
  assert_run_ok(put_cancel_main);
}

/* ==== task_done / join ======================================================== */

static void *joiner(void *arg) {
  actor *a = arg;
  a->r = coro_queue_join_timeout(a->q, a->ms);
  if (a->r == 0 && a->tag) coro_test_note(a->tag);
  return a->r == 0 ? NULL : coro_fail(a->r);
}

/* A worker: get, task_done, until the queue is shut down. */
static int processed;
static void *worker(void *arg) {
  coro_queue *q = arg;
  for (;;) {
    void *it;
    int r = coro_queue_get(q, &it);
    if (r == -EPIPE) return NULL;
    if (r != 0) return coro_fail(r);
    coro_yield();
    processed += I(it);
    CHECK_EQ(coro_queue_task_done(q), 0);
  }
}

/* test_task_done / test_join_empty_queue (CPython). */
static void *join_main(void *arg) {
  (void)arg;
  coro_queue *q;
  CHECK_EQ(coro_queue_new(&q, CORO_QUEUE_FIFO, 0, NULL), 0);
  CHECK_EQ(coro_queue_join(q), 0);
  CHECK_EQ(coro_queue_task_done(q), -EOVERFLOW);
  CHECK_EQ(coro_queue_put(q, V(1)), 0);
  CHECK_EQ(coro_queue_join_timeout(q, 0), -ETIMEDOUT);
  CHECK_EQ(coro_queue_join_timeout(q, 10), -ETIMEDOUT);
  CHECK_EQ(coro_queue_join_timeout(q, -2), -EINVAL);
  /* Taking the item out is not enough: task_done is. */
  actor a;
  actor_init(&a, q, NULL);
  coro_future *fj = spawn(joiner, &a);
  void *it;
  CHECK_EQ(coro_queue_get(q, &it), 0);
  yields(2);
  CHECK_EQ(coro_future_status(fj), CORO_PENDING);
  CHECK_EQ(coro_queue_task_done(q), 0);
  CHECK_EQ(reap(fj), 0);
  /* A cancelled joiner leaves; workers finish everything. */
  actor_init(&a, q, NULL);
  CHECK_EQ(coro_queue_put(q, V(1)), 0);
  fj = spawn(joiner, &a);
  yields(1);
  CHECK_EQ(coro_cancel(fj), 0);
  CHECK_EQ(reap(fj), -ECANCELED);
  CHECK_EQ(coro_queue_get(q, &it), 0);
  CHECK_EQ(coro_queue_task_done(q), 0);
  processed = 0;
  coro_future *w[2];
  for (int i = 0; i < 2; i++) w[i] = spawn(worker, q);
  int sum = 0;
  for (int i = 0; i < 100; i++) {
    CHECK_EQ(coro_queue_put(q, V(i)), 0);
    sum += i;
  }
  CHECK_EQ(coro_queue_join(q), 0);
  CHECK_EQ(processed, sum);
  CHECK_EQ(coro_queue_unfinished(q), 0);
  CHECK_EQ(coro_queue_shutdown(q, 0), 0);
  for (int i = 0; i < 2; i++) CHECK_EQ(reap(w[i]), 0);
  CHECK_EQ(coro_queue_free(q), 0);
  return NULL;
}

static void test_queue_task_done_join(void **state) {
  (void)state;
  assert_run_ok(join_main);
}

/* ==== shutdown (3.13) ========================================================= */

/* Not immediate: waiting putters and getters wake with -EPIPE, puts fail,
 * gets drain then fail, join completes as task_done is called. */
static void *shutdown_drain_main(void *arg) {
  (void)arg;
  coro_queue *q;
  destroyed = 0;
  CHECK_EQ(coro_queue_new(&q, CORO_QUEUE_FIFO, 2, count_destroy), 0);
  actor g[2];
  coro_future *fg[2];
  for (int i = 0; i < 2; i++) {
    actor_init(&g[i], q, NULL);
    fg[i] = spawn(getter, &g[i]);
  }
  yields(1);
  CHECK_EQ(coro_queue_shutdown(q, 0), 0);
  CHECK_EQ(coro_queue_is_shutdown(q), 1);
  for (int i = 0; i < 2; i++) CHECK_EQ(reap(fg[i]), -EPIPE);
  CHECK_EQ(coro_queue_free(q), 0);

  CHECK_EQ(coro_queue_new(&q, CORO_QUEUE_FIFO, 2, count_destroy), 0);
  CHECK_EQ(coro_queue_put(q, V(1)), 0);
  CHECK_EQ(coro_queue_put(q, V(2)), 0);
  actor p[2];
  coro_future *fp[2];
  for (int i = 0; i < 2; i++) {
    actor_init(&p[i], q, V(3 + i));
    fp[i] = spawn(putter, &p[i]);
  }
  actor j;
  actor_init(&j, q, NULL);
  coro_future *fj = spawn(joiner, &j);
  yields(1);
  CHECK_EQ(coro_queue_shutdown(q, 0), 0);
  CHECK_EQ(coro_queue_shutdown(q, 0), 0);   /* harmless */
  for (int i = 0; i < 2; i++) CHECK_EQ(reap(fp[i]), -EPIPE);
  CHECK_EQ(coro_queue_put_nowait(q, V(9)), -EPIPE);
  CHECK_EQ(coro_queue_put(q, V(9)), -EPIPE);
  void *it;
  CHECK_EQ(coro_queue_get(q, &it), 0);
  CHECK_EQ(I(it), 1);
  CHECK_EQ(coro_queue_get_nowait(q, &it), 0);
  CHECK_EQ(I(it), 2);
  CHECK_EQ(coro_queue_get(q, &it), -EPIPE);
  CHECK_EQ(coro_queue_get_nowait(q, &it), -EPIPE);
  CHECK_EQ(coro_future_status(fj), CORO_PENDING);
  CHECK_EQ(coro_queue_task_done(q), 0);
  CHECK_EQ(coro_queue_task_done(q), 0);
  CHECK_EQ(reap(fj), 0);
  CHECK_EQ(destroyed, 0);
  CHECK_EQ(coro_queue_free(q), 0);
  return NULL;
}

static void test_queue_shutdown_drain(void **state) {
  (void)state;
  assert_run_ok(shutdown_drain_main);
}

/* Immediate: items dropped (destroy called), counted done (join wakes),
 * getters get -EPIPE at once. An item handed to a getter before the
 * shutdown stays its own; if that getter is cancelled before it runs, the
 * item is dropped like the others. */
static void *shutdown_now_main(void *arg) {
  (void)arg;
  coro_queue *q;
  destroyed = 0;
  CHECK_EQ(coro_queue_new(&q, CORO_QUEUE_PRIORITY, 0, count_destroy), 0);
  for (int i = 0; i < 5; i++) CHECK_EQ(coro_queue_put(q, V(i)), 0);
  actor j;
  actor_init(&j, q, NULL);
  coro_future *fj = spawn(joiner, &j);
  yields(1);
  CHECK_EQ(coro_queue_shutdown(q, 1), 0);
  CHECK_EQ(destroyed, 5);
  CHECK_EQ(coro_queue_size(q), 0);
  CHECK_EQ(coro_queue_unfinished(q), 0);
  CHECK_EQ(reap(fj), 0);
  void *it;
  CHECK_EQ(coro_queue_get(q, &it), -EPIPE);
  CHECK_EQ(coro_queue_free(q), 0);

  destroyed = 0;
  CHECK_EQ(coro_queue_new(&q, CORO_QUEUE_FIFO, 0, count_destroy), 0);
  actor g[2];
  coro_future *fg[2];
  for (int i = 0; i < 2; i++) {
    actor_init(&g[i], q, NULL);
    fg[i] = spawn(getter, &g[i]);
  }
  yields(1);
  CHECK_EQ(coro_queue_put(q, V(7)), 0);   /* to getter 0 */
  CHECK_EQ(coro_queue_put(q, V(8)), 0);   /* to getter 1 */
  CHECK_EQ(coro_queue_shutdown(q, 1), 0);
  CHECK_EQ(coro_cancel(fg[1]), 0);        /* its 8 is dropped */
  CHECK_EQ(destroyed, 1);
  CHECK_EQ(coro_queue_unfinished(q), 1);
  CHECK_EQ(reap(fg[0]), 0);
  CHECK_EQ(I(g[0].item), 7);
  CHECK_EQ(reap(fg[1]), -ECANCELED);
  CHECK_EQ(coro_queue_task_done(q), 0);
  CHECK_EQ(coro_queue_join(q), 0);
  CHECK_EQ(coro_queue_free(q), 0);
  /* Not immediate then immediate: the second drops what is left. */
  destroyed = 0;
  CHECK_EQ(coro_queue_new(&q, CORO_QUEUE_LIFO, 0, count_destroy), 0);
  CHECK_EQ(coro_queue_put(q, V(1)), 0);
  CHECK_EQ(coro_queue_put(q, V(2)), 0);
  CHECK_EQ(coro_queue_shutdown(q, 0), 0);
  CHECK_EQ(destroyed, 0);
  CHECK_EQ(coro_queue_shutdown(q, 1), 0);
  CHECK_EQ(destroyed, 2);
  CHECK_EQ(coro_queue_free(q), 0);
  return NULL;
}

static void test_queue_shutdown_immediate(void **state) {
  (void)state;
  assert_run_ok(shutdown_now_main);
}

/* free destroys what is still queued; with tasks waiting, each of them
 * gets -EPIPE (one whose wait a cancellation ended first: -ECANCELED),
 * and the memory
 * goes once the last has resumed (the fixture and ASan check that). */
static void *free_main(void *arg) {
  (void)arg;
  coro_queue *q;
  destroyed = 0;
  CHECK_OK(coro_queue_new(&q, CORO_QUEUE_FIFO, 1, count_destroy));
  CHECK_OK(coro_queue_put(q, V(1)));
  actor p[2];
  coro_future *f[2];
  for (int i = 0; i < 2; i++) {
    actor_init(&p[i], q, V(2 + i));
    f[i] = spawn(putter, &p[i]);
  }
  yields(1);
  CHECK_OK(coro_cancel(f[1])); /* woken, not yet run */
  CHECK_OK(coro_queue_free(q));
  CHECK_EQ(destroyed, 1);      /* the stored item; the putters keep theirs */
  CHECK_ERR(reap(f[0]), -EPIPE);
  CHECK_ERR(reap(f[1]), -ECANCELED); /* the cancellation is not lost */
  CHECK_EQ(destroyed, 1);
  return NULL;
}

/* Getters and joiners get -EPIPE; an item handed to a getter that has not
 * run yet goes to the destructor; a putter whose item was taken in before
 * the free returns 0 (it put it). */
static void *free_waiters_main(void *arg) {
  (void)arg;
  coro_queue *q;
  destroyed = 0;
  CHECK_OK(coro_queue_new(&q, CORO_QUEUE_FIFO, 0, count_destroy));
  actor g[2], j;
  coro_future *gf[2], *jf;
  for (int i = 0; i < 2; i++) {
    actor_init(&g[i], q, NULL);
    gf[i] = spawn(getter, &g[i]);
  }
  yields(1);
  CHECK_OK(coro_queue_put(q, V(7))); /* handed to g[0], not yet run */
  actor_init(&j, q, NULL);
  jf = spawn(joiner, &j);
  yields(1);                         /* g[0] got it; j waits for task_done */
  CHECK_EQ(coro_queue_unfinished(q), 1);
  CHECK_OK(coro_queue_put(q, V(8))); /* handed to g[1], not yet run */
  CHECK_OK(coro_queue_free(q));
  CHECK_OK(reap(gf[0]));
  CHECK_PTR_EQ(g[0].item, V(7));
  CHECK_ERR(reap(gf[1]), -EPIPE);
  CHECK_PTR_EQ(g[1].item, NULL);
  CHECK_EQ(destroyed, 1);            /* V(8) */
  CHECK_ERR(reap(jf), -EPIPE);

  /* A bounded queue: a putter's item moved in by a get, then the free. */
  destroyed = 0;
  CHECK_OK(coro_queue_new(&q, CORO_QUEUE_FIFO, 1, count_destroy));
  CHECK_OK(coro_queue_put(q, V(1)));
  actor p;
  actor_init(&p, q, V(2));
  coro_future *pf = spawn(putter, &p);
  yields(1);
  void *it;
  CHECK_OK(coro_queue_get_nowait(q, &it)); /* moves V(2) in: p has put */
  CHECK_PTR_EQ(it, V(1));
  CHECK_OK(coro_queue_free(q));
  CHECK_EQ(destroyed, 1);                  /* V(2) */
  CHECK_OK(reap(pf));
  CHECK_ERR(coro_queue_free(NULL), -EINVAL);
  return NULL;
}

static void test_queue_free_wakes_waiters(void **state) {
  (void)state;
  assert_run_ok(free_waiters_main);
}

static void test_queue_free(void **state) {
  (void)state;
  assert_run_ok(free_main);
}

/* ==== producers and consumers ================================================== */

enum { NPROD = 8, NCONS = 8, PER_PROD = 500 };

typedef struct pc {
  coro_queue *q;
  unsigned char seen[NPROD * PER_PROD];
  int dup, got;
  int last_from[NPROD];   /* FIFO: each producer's items in order */
  int fifo_broken;
} pc;

typedef struct prod {
  pc *s;
  int id;
} prod;

static void *producer(void *arg) {
  prod *p = arg;
  for (int i = 0; i < PER_PROD; i++) {
    int r = coro_queue_put(p->s->q, V(p->id * PER_PROD + i + 1));
    if (r != 0) return coro_fail(r);
    if (i % 7 == 0) coro_yield();
  }
  return NULL;
}

static void *consumer(void *arg) {
  pc *s = arg;
  for (;;) {
    void *it;
    int r = coro_queue_get(s->q, &it);
    if (r == -EPIPE) return NULL;
    if (r != 0) return coro_fail(r);   /* cancelled: nothing taken */
    int v = I(it) - 1;
    if (s->seen[v]) s->dup++;
    s->seen[v] = 1;
    s->got++;
    int from = v / PER_PROD;
    if (v % PER_PROD <= s->last_from[from] - 1) s->fifo_broken = 1;
    s->last_from[from] = v % PER_PROD + 1;
    if (v % 3 == 0) coro_yield();
  }
}

static void *prodcons_main(void *arg) {
  size_t maxsize = (size_t)(uintptr_t)arg;
  static pc s;
  memset(&s, 0, sizeof(s));
  CHECK_EQ(coro_queue_new(&s.q, CORO_QUEUE_FIFO, maxsize, NULL), 0);
  prod p[NPROD];
  coro_future *fp[NPROD], *fc[NCONS * 2];
  int nc = 0;
  for (int i = 0; i < NCONS; i++) fc[nc++] = spawn(consumer, &s);
  for (int i = 0; i < NPROD; i++) {
    p[i].s = &s;
    p[i].id = i;
    fp[i] = spawn(producer, &p[i]);
  }
  /* Cancel consumers now and then (some just handed an item), and start
   * replacements: no item may be lost or delivered twice. */
  for (int round = 0; round < NCONS; round++) {
    yields(3 + round);
    CHECK_EQ(coro_cancel(fc[round]), round < nc ? 0 : 0);
    fc[nc++] = spawn(consumer, &s);
  }
  for (int i = 0; i < NPROD; i++) CHECK_EQ(reap(fp[i]), 0);
  while (s.got < NPROD * PER_PROD && coro_queue_size(s.q) > 0) yields(1);
  CHECK_EQ(coro_queue_shutdown(s.q, 0), 0);
  for (int i = 0; i < nc; i++) {
    int r = reap(fc[i]);
    CHECK(r == 0 || r == -ECANCELED);
  }
  CHECK_EQ(s.got, NPROD * PER_PROD);
  CHECK_EQ(s.dup, 0);
  for (int v = 0; v < NPROD * PER_PROD; v++) CHECK(s.seen[v]);
  CHECK_EQ(coro_queue_size(s.q), 0);
  CHECK_EQ(coro_queue_free(s.q), 0);
  return NULL;
}

static void test_queue_producers_consumers_unbounded(void **state) {
  (void)state;
  assert_coro_ok(coro_run(prodcons_main, (void *)(uintptr_t)0, NULL));
  assert_checks_passed();
}

static void test_queue_producers_consumers_bounded(void **state) {
  (void)state;
  assert_coro_ok(coro_run(prodcons_main, (void *)(uintptr_t)4, NULL));
  assert_checks_passed();
  assert_coro_ok(coro_run(prodcons_main, (void *)(uintptr_t)1, NULL));
  assert_checks_passed();
}

/* Producers cancelled now and then: a put that returned 0 delivered its
 * item exactly once, one that returned -ECANCELED delivered nothing (a
 * putter whose item went in before the cancellation returns 0). Getters
 * with short timeouts race with the puts. */
enum { XPROD = 6, XPER = 300 };

typedef struct xs {
  coro_queue *q;
  unsigned char put_ok[XPROD * XPER];
  unsigned char got[XPROD * XPER];
  int dup, timeouts;
} xs;

typedef struct xprod {
  xs *s;
  int id;
} xprod;

static void *xproducer(void *arg) {
  xprod *p = arg;
  for (int i = 0; i < XPER; i++) {
    int v = p->id * XPER + i;
    int r = coro_queue_put(p->s->q, V(v + 1));
    if (r == -ECANCELED) return NULL;
    CHECK_EQ(r, 0);
    p->s->put_ok[v] = 1;
  }
  return NULL;
}

static void *xconsumer(void *arg) {
  xs *s = arg;
  for (;;) {
    void *it;
    int r = coro_queue_get_timeout(s->q, &it, 1);
    if (r == -EPIPE) return NULL;
    if (r == -ETIMEDOUT) {
      s->timeouts++;
      continue;
    }
    CHECK_EQ(r, 0);
    int v = I(it) - 1;
    if (s->got[v]) s->dup++;
    s->got[v] = 1;
    if (v % 2) coro_yield();
  }
}

static void *xmain(void *arg) {
  (void)arg;
  static xs s;
  memset(&s, 0, sizeof(s));
  CHECK_EQ(coro_queue_new(&s.q, CORO_QUEUE_FIFO, 3, NULL), 0);
  coro_future *fc[3], *fp[XPROD];
  xprod p[XPROD];
  for (int i = 0; i < 3; i++) fc[i] = spawn(xconsumer, &s);
  for (int i = 0; i < XPROD; i++) {
    p[i].s = &s;
    p[i].id = i;
    fp[i] = spawn(xproducer, &p[i]);
  }
  for (int round = 0; round < XPROD; round++) {
    yields(5 + 9 * round);
    coro_cancel(fp[round]);
  }
  for (int i = 0; i < XPROD; i++) CHECK(reap(fp[i]) <= 0);
  /* Let the consumers take what is left, then close. */
  while (coro_queue_size(s.q) > 0) CHECK_EQ(coro_sleep(1), 0);
  CHECK_EQ(coro_queue_shutdown(s.q, 0), 0);
  for (int i = 0; i < 3; i++) CHECK_EQ(reap(fc[i]), 0);
  int nput = 0;
  for (int v = 0; v < XPROD * XPER; v++) {
    CHECK_EQ(s.got[v], s.put_ok[v]);
    nput += s.put_ok[v];
  }
  CHECK_EQ(s.dup, 0);
  CHECK(nput > 0 && nput < XPROD * XPER);
  CHECK_EQ(coro_queue_unfinished(s.q), (size_t)nput);
  CHECK_EQ(coro_queue_free(s.q), 0);
  return NULL;
}

static void test_queue_cancelled_producers_exactly_once(void **state) {
  (void)state;
  assert_run_ok(xmain);
}

/* test_cancelled_puts_not_being_held_in_self_putters: a timed-out putter
 * leaves, its item not put; the next get moves nothing in. */
static void *put_timeout_main(void *arg) {
  (void)arg;
  coro_queue *q;
  CHECK_EQ(coro_queue_new(&q, CORO_QUEUE_FIFO, 1, NULL), 0);
  CHECK_EQ(coro_queue_put(q, V(1)), 0);
  actor a;
  actor_init(&a, q, V(2));
  a.ms = 10;
  coro_future *f = spawn(putter, &a);
  CHECK_EQ(reap(f), -ETIMEDOUT);
  void *it;
  CHECK_EQ(coro_queue_get(q, &it), 0);
  CHECK_EQ(I(it), 1);
  CHECK_EQ(coro_queue_size(q), 0);
  CHECK_EQ(coro_queue_get_nowait(q, &it), -EAGAIN);
  /* A getter's timeout inside a timeout scope of the caller. */
  coro_timeout sc;
  CHECK_EQ(coro_timeout_enter(&sc, 10), 0);
  int r = coro_queue_get(q, &it);
  CHECK_EQ(coro_timeout_exit(&sc, r), -ETIMEDOUT);
  CHECK_EQ(coro_queue_put_nowait(q, V(3)), 0);   /* nobody waits */
  CHECK_EQ(coro_queue_size(q), 1);
  CHECK_EQ(coro_queue_free(q), 0);
  return NULL;
}

static void test_queue_put_timeout_leaves(void **state) {
  (void)state;
  assert_run_ok(put_timeout_main);
}

/* The loop ends while tasks wait on the queue (main returns): coro_run
 * cancels them, nothing leaks, and the queue can be freed after. */
static coro_queue *left_q;

static void *leave_main(void *arg) {
  (void)arg;
  static actor g;
  actor_init(&g, left_q, NULL);
  coro_future *f = spawn(getter, &g);
  coro_future_release(f);   /* left waiting when main returns */
  return NULL;
}

static void *leave_main_full(void *arg) {
  (void)arg;
  static actor p;
  CHECK_EQ(coro_queue_put(left_q, V(1)), 0);
  actor_init(&p, left_q, V(2));
  coro_future *f = spawn(putter, &p);
  coro_future_release(f);
  CHECK_EQ(coro_yield(), 0);
  return NULL;
}

static void test_queue_loop_ends_with_waiters(void **state) {
  (void)state;
  assert_coro_ok(coro_queue_new(&left_q, CORO_QUEUE_FIFO, 1, count_destroy));
  assert_run_ok(leave_main);
  assert_int_equal(coro_queue_size(left_q), 0);
  destroyed = 0;
  assert_run_ok(leave_main_full);
  assert_int_equal(coro_queue_size(left_q), 1);
  assert_coro_ok(coro_queue_free(left_q));
  assert_int_equal(destroyed, 1);
}

/* A drain shutdown while an item is handed to a getter that has not run:
 * if that getter is cancelled, the item goes to the next waiting getter
 * (asyncio 3.13 gives it to whoever re-checks), not back into a queue
 * nobody reads any more; join then completes. */
static coro_queue *strand_q;
static int strand_status[2];
static void *strand_item[2];

static void *strand_worker(void *arg) {
  int i = (int)(intptr_t)arg;
  void *it = NULL;
  strand_status[i] = coro_queue_get(strand_q, &it);
  strand_item[i] = it;
  if (strand_status[i] == 0) CHECK_EQ(coro_queue_task_done(strand_q), 0);
  return NULL;
}

static void *strand_main(void *arg) {
  (void)arg;
  CHECK_EQ(coro_queue_new(&strand_q, CORO_QUEUE_FIFO, 0, NULL), 0);
  if (strand_q == NULL) return NULL;
  coro_future *w1 = spawn(strand_worker, (void *)(intptr_t)0);
  coro_future *w2 = spawn(strand_worker, (void *)(intptr_t)1);
  CHECK_EQ(coro_yield(), 0); /* both wait */
  CHECK_EQ(coro_queue_put_nowait(strand_q, (void *)0x42), 0); /* to w1 */
  CHECK_EQ(coro_queue_shutdown(strand_q, 0), 0);
  CHECK_EQ(coro_cancel(w1), 0); /* w1 gives the item back */
  CHECK_EQ(coro_await(w1, NULL), 0);
  CHECK_EQ(coro_await(w2, NULL), 0);
  CHECK_EQ(strand_status[0], CORO_ECANCELED);
  CHECK_EQ(strand_status[1], 0);
  CHECK(strand_item[1] == (void *)0x42);
  CHECK_EQ(coro_queue_size(strand_q), 0);
  CHECK_EQ(coro_queue_unfinished(strand_q), 0);
  CHECK_EQ(coro_queue_join_timeout(strand_q, 1000), 0);
  void *it;
  CHECK_EQ(coro_queue_get_nowait(strand_q, &it), CORO_EPIPE);
  coro_future_release(w1);
  coro_future_release(w2);
  CHECK_EQ(coro_queue_free(strand_q), 0);
  return NULL;
}

static void test_queue_shutdown_handed_item_cancelled(void **state) {
  (void)state;
  assert_run_ok(strand_main);
}

int main(int argc, char **argv) {
  const struct CMUnitTest tests[] = {
#define T(x) cmocka_unit_test_setup_teardown(x, coro_test_setup, coro_test_teardown)
    T(test_queue_order_kinds),
    T(test_queue_priority),
    T(test_queue_ring_wraps_and_grows),
    T(test_queue_maxsize_and_nowait),
    T(test_queue_enomem),
    T(test_queue_getters_fifo_no_barging),
    T(test_queue_putters_fifo),
    T(test_queue_getter_cancelled_with_item),
    T(test_queue_putter_cancelled),
    T(test_queue_task_done_join),
    T(test_queue_shutdown_drain),
    T(test_queue_shutdown_immediate),
    T(test_queue_free),
    T(test_queue_free_wakes_waiters),
    T(test_queue_producers_consumers_unbounded),
    T(test_queue_producers_consumers_bounded),
    T(test_queue_cancelled_producers_exactly_once),
    T(test_queue_put_timeout_leaves),
    T(test_queue_loop_ends_with_waiters),
    T(test_queue_shutdown_handed_item_cancelled),
#undef T
  };
  return coro_test_main(argc, argv, tests, NULL, NULL);
}
