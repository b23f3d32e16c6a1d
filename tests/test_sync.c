/* SPDX-License-Identifier: MIT */
/* Lock, event, condition and semaphores (asyncio 3.13, docs/api/sync.md):
 * happy paths, error codes, strict FIFO hand-off (no barging),
 * and the cancellation races: a waiter cancelled after it was handed the
 * lock / a unit / a notification and before it ran passes it on. Ports of
 * CPython 3.13 test_locks.py cases are named after them. */
#include "helpers.h"

#include <string.h>

#define spawn coro_test_spawn
#define reap coro_test_join
#define yields coro_test_yields

/* A task's view of one primitive. */
typedef struct actor {
  coro_lock *l;
  coro_sem *s;
  coro_event *e;
  coro_cond *c;
  const char *tag;      /* noted in the order log when it gets through */
  int64_t ms;           /* time limit for _timeout variants */
  int rounds;
  int r;                /* status of its wait */
  int held;             /* holds the lock / a unit after the wait */
} actor;

static void actor_init(actor *a, const char *tag) {
  memset(a, 0, sizeof(*a));
  a->tag = tag;
  a->r = 1;
  a->ms = CORO_FOREVER;
  a->rounds = 1;
}

/* ==== lock ================================================================== */

static int in_section;   /* tasks inside a critical section */
static int max_in_section;

static void enter_section(void) {
  if (++in_section > max_in_section) max_in_section = in_section;
}

static void *lock_taker(void *arg) {
  actor *a = arg;
  a->r = coro_lock_acquire_timeout(a->l, a->ms);
  if (a->r != 0) return coro_fail(a->r);
  enter_section();
  a->held = 1;
  if (a->tag) coro_test_note(a->tag);
  return NULL;
}

/* Takes the lock rounds times, yields inside, releases. */
static void *lock_rounds(void *arg) {
  actor *a = arg;
  for (int i = 0; i < a->rounds; i++) {
    int r = coro_lock_acquire(a->l);
    if (r != 0) return coro_fail(r);
    enter_section();
    coro_test_note(a->tag);
    yields(1);
    in_section--;
    CHECK_EQ(coro_lock_release(a->l), 0);
  }
  return NULL;
}

static void *lock_basic_main(void *arg) {
  (void)arg;
  coro_lock *l;
  CHECK_EQ(coro_lock_new(&l), 0);
  CHECK_EQ(coro_lock_locked(l), 0);
  CHECK_EQ(coro_lock_release(l), -EPERM);  /* not locked */
  CHECK_EQ(coro_lock_acquire(l), 0);
  CHECK_EQ(coro_lock_locked(l), 1);
  CHECK_EQ(coro_lock_acquire(l), -EDEADLK);
  CHECK_EQ(coro_lock_try_acquire(l), -EDEADLK);
  CHECK_EQ(coro_lock_acquire_timeout(l, 0), -EDEADLK);
  CHECK_EQ(coro_lock_acquire_timeout(l, -2), -EINVAL);
  /* Another task may not release it. */
  actor a;
  actor_init(&a, NULL);
  a.l = l;
  coro_future *f = spawn(lock_taker, &a);
  yields(1);
  CHECK_EQ(coro_lock_release(l), 0);
  CHECK_EQ(reap(f), 0);
  CHECK_EQ(a.held, 1);
  in_section = 0;
  CHECK_EQ(coro_lock_release(l), -EPERM);   /* a's, not ours */
  CHECK_EQ(coro_lock_try_acquire(l), -EAGAIN);
  CHECK_EQ(coro_lock_acquire_timeout(l, 0), -ETIMEDOUT);
  CHECK_EQ(coro_lock_free(l), 0);            /* held, no waiters: allowed */
  CHECK_EQ(coro_lock_new(&l), 0);
  CHECK_EQ(coro_lock_try_acquire(l), 0);
  CHECK_EQ(coro_lock_release(l), 0);
  CHECK_EQ(coro_lock_release(l), -EPERM);
  CHECK_EQ(coro_lock_free(l), 0);
  CHECK_EQ(coro_lock_acquire(NULL), -EINVAL);
  CHECK_EQ(coro_lock_release(NULL), -EINVAL);
  CHECK_EQ(coro_lock_locked(NULL), -EINVAL);
  CHECK_EQ(coro_lock_free(NULL), -EINVAL);
  return NULL;
}

static void test_lock_basic(void **state) {
  (void)state;
  assert_coro_err(coro_lock_new(NULL), -EINVAL);
  coro_lock *l;
  assert_coro_ok(coro_lock_new(&l));
  /* Outside a task: nothing to suspend. */
  assert_coro_err(coro_lock_acquire(l), -EPERM);
  assert_coro_err(coro_lock_try_acquire(l), -EPERM);
  assert_coro_err(coro_lock_release(l), -EPERM);
  assert_coro_ok(coro_lock_free(l));
  assert_run_ok(lock_basic_main);
}

/* The uncontended acquire does not yield (asyncio L8). */
static void *note_t(void *arg) {
  (void)arg;
  coro_test_note("t");
  return NULL;
}

static void *lock_no_yield_main(void *arg) {
  (void)arg;
  coro_test_log_reset();
  coro_lock *l;
  CHECK_EQ(coro_lock_new(&l), 0);
  coro_future *f = spawn(note_t, NULL);
  CHECK_EQ(coro_lock_acquire(l), 0);
  coro_test_note("a");
  CHECK_EQ(coro_lock_release(l), 0);
  CHECK_EQ(reap(f), 0);
  CHECK(strcmp(coro_test_log(), "at") == 0);
  CHECK_EQ(coro_lock_free(l), 0);
  return NULL;
}

static void test_lock_uncontended_no_yield(void **state) {
  (void)state;
  assert_run_ok(lock_no_yield_main);
}

/* Strict FIFO: 3 tasks x 3 rounds with a yield inside (asyncio L2'). */
static void *lock_fifo_main(void *arg) {
  (void)arg;
  coro_test_log_reset();
  in_section = max_in_section = 0;
  coro_lock *l;
  CHECK_EQ(coro_lock_new(&l), 0);
  actor a[3];
  coro_future *f[3];
  const char *tags[3] = {"1", "2", "3"};
  for (int i = 0; i < 3; i++) {
    actor_init(&a[i], tags[i]);
    a[i].l = l;
    a[i].rounds = 3;
    f[i] = spawn(lock_rounds, &a[i]);
  }
  for (int i = 0; i < 3; i++) CHECK_EQ(reap(f[i]), 0);
  CHECK(strcmp(coro_test_log(), "123123123") == 0);
  CHECK_EQ(max_in_section, 1);
  CHECK_EQ(coro_lock_locked(l), 0);
  CHECK_EQ(coro_lock_free(l), 0);
  return NULL;
}

static void test_lock_fifo_rounds(void **state) {
  (void)state;
  assert_run_ok(lock_fifo_main);
}

/* A releaser that asks again at once queues behind the waiter it woke
 * (no barging; asyncio L1 gives ['B','A2']). */
static void *lock_no_barging_main(void *arg) {
  (void)arg;
  coro_test_log_reset();
  in_section = 0;
  coro_lock *l;
  CHECK_EQ(coro_lock_new(&l), 0);
  CHECK_EQ(coro_lock_acquire(l), 0);
  actor b;
  actor_init(&b, "B");
  b.l = l;
  coro_future *fb = spawn(lock_taker, &b);
  yields(1);
  CHECK_EQ(coro_lock_release(l), 0);
  CHECK_EQ(coro_lock_locked(l), 1);            /* B owns it already */
  CHECK_EQ(coro_lock_try_acquire(l), -EAGAIN);
  CHECK_EQ(reap(fb), 0);
  CHECK_EQ(coro_lock_acquire_timeout(l, 0), -ETIMEDOUT);
  CHECK(strcmp(coro_test_log(), "B") == 0);
  /* B finished holding it; nobody else can release it. */
  CHECK_EQ(coro_lock_release(l), -EPERM);
  CHECK_EQ(coro_lock_free(l), 0);
  return NULL;
}

static void test_lock_no_barging(void **state) {
  (void)state;
  assert_run_ok(lock_no_barging_main);
}

/* test_acquire (CPython L86): FIFO among waiters that queued while held. */
static void *lock_acquire_order_main(void *arg) {
  (void)arg;
  coro_test_log_reset();
  in_section = 0;
  coro_lock *l;
  CHECK_EQ(coro_lock_new(&l), 0);
  CHECK_EQ(coro_lock_acquire(l), 0);
  actor a[3];
  coro_future *f[3];
  const char *tags[3] = {"1", "2", "3"};
  for (int i = 0; i < 3; i++) {
    actor_init(&a[i], tags[i]);
    a[i].l = l;
    f[i] = spawn(lock_rounds, &a[i]);
  }
  yields(2);
  CHECK(strcmp(coro_test_log(), "") == 0);
  CHECK_EQ(coro_lock_release(l), 0);
  yields(1);
  CHECK(strcmp(coro_test_log(), "1") == 0);
  for (int i = 0; i < 3; i++) CHECK_EQ(reap(f[i]), 0);
  CHECK(strcmp(coro_test_log(), "123") == 0);
  CHECK_EQ(coro_lock_locked(l), 0);
  CHECK_EQ(coro_lock_free(l), 0);
  return NULL;
}

static void test_lock_acquire_order(void **state) {
  (void)state;
  assert_run_ok(lock_acquire_order_main);
}

/* Cancelled after being made the owner, before running: the lock goes to
 * the next waiter (test_cancel_race / test_finished_waiter_cancelled). */
static void *lock_cancel_after_wake_main(void *arg) {
  (void)arg;
  coro_test_log_reset();
  in_section = max_in_section = 0;
  coro_lock *l;
  CHECK_EQ(coro_lock_new(&l), 0);
  CHECK_EQ(coro_lock_acquire(l), 0);
  actor a[3];
  coro_future *f[3];
  const char *tags[3] = {"A", "B", "C"};
  for (int i = 0; i < 3; i++) {
    actor_init(&a[i], tags[i]);
    a[i].l = l;
    f[i] = spawn(lock_taker, &a[i]);
  }
  yields(1);
  CHECK_EQ(coro_lock_release(l), 0);        /* A owns it now */
  CHECK_EQ(coro_cancel(f[0]), 0);           /* before A runs */
  CHECK_EQ(coro_cancel(f[1]), 0);           /* B still waits */
  CHECK_EQ(coro_lock_locked(l), 1);         /* C owns it */
  CHECK_EQ(reap(f[0]), -ECANCELED);
  CHECK_EQ(reap(f[1]), -ECANCELED);
  CHECK_EQ(reap(f[2]), 0);
  CHECK_EQ(a[0].held + a[1].held + a[2].held, 1);
  CHECK_EQ(a[2].held, 1);
  CHECK(strcmp(coro_test_log(), "C") == 0);
  CHECK_EQ(coro_lock_free(l), 0);
  /* The last waiter cancelled after the hand-off: the lock is free again. */
  CHECK_EQ(coro_lock_new(&l), 0);
  CHECK_EQ(coro_lock_acquire(l), 0);
  actor_init(&a[0], NULL);
  a[0].l = l;
  f[0] = spawn(lock_taker, &a[0]);
  yields(1);
  CHECK_EQ(coro_lock_release(l), 0);
  CHECK_EQ(coro_cancel(f[0]), 0);
  CHECK_EQ(coro_lock_locked(l), 0);
  CHECK_EQ(reap(f[0]), -ECANCELED);
  CHECK_EQ(coro_lock_try_acquire(l), 0);
  CHECK_EQ(coro_lock_release(l), 0);
  CHECK_EQ(coro_lock_free(l), 0);
  return NULL;
}

static void test_lock_cancel_after_wake(void **state) {
  (void)state;
  assert_run_ok(lock_cancel_after_wake_main);
}

/* test_cancel_release_race (bpo-32734): only one task may hold the lock. */
static void *lock_release_race_main(void *arg) {
  (void)arg;
  in_section = max_in_section = 0;
  coro_lock *l;
  CHECK_EQ(coro_lock_new(&l), 0);
  CHECK_EQ(coro_lock_acquire(l), 0);
  actor a[3];
  coro_future *f[3];
  for (int i = 0; i < 3; i++) {
    actor_init(&a[i], NULL);
    a[i].l = l;
    f[i] = spawn(lock_taker, &a[i]);
  }
  yields(1);
  CHECK_EQ(coro_lock_release(l), 0);  /* t1 woken */
  CHECK_EQ(coro_cancel(f[0]), 0);     /* t1 cancelled after wake: t2 */
  yields(1);                          /* t2 has run: it holds it */
  CHECK_EQ(a[1].held, 1);
  CHECK_EQ(coro_future_status(f[2]), CORO_PENDING);
  CHECK_EQ(max_in_section, 1);
  CHECK_EQ(coro_cancel(f[2]), 0);
  CHECK_EQ(reap(f[0]), -ECANCELED);
  CHECK_EQ(reap(f[1]), 0);
  CHECK_EQ(reap(f[2]), -ECANCELED);
  CHECK_EQ(coro_lock_free(l), 0);
  return NULL;
}

static void test_lock_cancel_release_race(void **state) {
  (void)state;
  assert_run_ok(lock_release_race_main);
}

/* A waiter cancelled while waiting leaves the queue. */
static void *lock_cancel_waiting_main(void *arg) {
  (void)arg;
  coro_test_log_reset();
  in_section = 0;
  coro_lock *l;
  CHECK_EQ(coro_lock_new(&l), 0);
  CHECK_EQ(coro_lock_acquire(l), 0);
  actor a[2];
  coro_future *f[2];
  actor_init(&a[0], "A");
  actor_init(&a[1], "B");
  a[0].l = a[1].l = l;
  f[0] = spawn(lock_taker, &a[0]);
  f[1] = spawn(lock_taker, &a[1]);
  yields(1);
  CHECK_EQ(coro_cancel(f[0]), 0);
  CHECK_EQ(reap(f[0]), -ECANCELED);
  CHECK_EQ(coro_lock_locked(l), 1);
  CHECK_EQ(coro_lock_release(l), 0);
  CHECK_EQ(reap(f[1]), 0);
  CHECK(strcmp(coro_test_log(), "B") == 0);
  CHECK_EQ(coro_lock_free(l), 0);
  return NULL;
}

static void test_lock_cancel_waiting(void **state) {
  (void)state;
  assert_run_ok(lock_cancel_waiting_main);
}

/* lock_taker inside a 20 ms timeout scope. */
static void *lock_taker_scoped(void *arg) {
  actor *a = arg;
  coro_timeout sc;
  CHECK_EQ(coro_timeout_enter(&sc, 20), 0);
  a->r = coro_lock_acquire(a->l);
  a->r = coro_timeout_exit(&sc, a->r);
  if (a->r != 0) return coro_fail(a->r);
  a->held = 1;
  return NULL;
}

static void *lock_timeout_main(void *arg) {
  (void)arg;
  in_section = 0;
  coro_lock *l;
  CHECK_EQ(coro_lock_new(&l), 0);
  CHECK_EQ(coro_lock_acquire_timeout(l, 50), 0);  /* free: at once */
  actor a;
  actor_init(&a, NULL);
  a.l = l;
  a.ms = 30;
  int64_t t0 = coro_test_now_ms();
  coro_future *f = spawn(lock_taker, &a);
  CHECK_EQ(reap(f), -ETIMEDOUT);
  CHECK(coro_test_now_ms() - t0 >= 30);
  CHECK_EQ(a.held, 0);
  /* The timed-out waiter left: a release frees the lock. */
  CHECK_EQ(coro_lock_release(l), 0);
  CHECK_EQ(coro_lock_locked(l), 0);
  /* Released in time: acquired. */
  CHECK_EQ(coro_lock_acquire(l), 0);
  actor_init(&a, NULL);
  a.l = l;
  a.ms = 10000;
  f = spawn(lock_taker, &a);
  CHECK_EQ(coro_sleep(5), 0);
  CHECK_EQ(coro_lock_release(l), 0);
  CHECK_EQ(reap(f), 0);
  CHECK_EQ(a.held, 1);
  CHECK_EQ(coro_lock_free(l), 0);
  /* A timeout scope around a plain acquire. */
  CHECK_EQ(coro_lock_new(&l), 0);
  CHECK_EQ(coro_lock_acquire(l), 0);
  actor_init(&a, NULL);
  a.l = l;
  f = spawn(lock_taker_scoped, &a);
  CHECK_EQ(reap(f), -ETIMEDOUT);
  CHECK_EQ(a.held, 0);
  CHECK_EQ(coro_lock_release(l), 0);
  CHECK_EQ(coro_lock_locked(l), 0);
  CHECK_EQ(coro_lock_free(l), 0);
  return NULL;
}

static void test_lock_timeout(void **state) {
  (void)state;
  assert_run_ok(lock_timeout_main);
}

/* Many tasks, cancellations while waiting and right after the hand-off:
 * mutual exclusion holds, and the lock ends free. */
typedef struct lstress {
  coro_lock *l;
  int count;
  int ok, cancelled;
} lstress;

static void *lstress_task(void *arg) {
  lstress *s = arg;
  for (int i = 0; i < 20; i++) {
    int r = coro_lock_acquire(s->l);
    if (r == -ECANCELED) {
      s->cancelled++;
      return NULL;
    }
    CHECK_EQ(r, 0);
    enter_section();
    int c = s->count;
    if (i % 3 == 0) coro_yield();  /* may be cancelled here: ignore */
    s->count = c + 1;
    s->ok++;
    in_section--;
    CHECK_EQ(coro_lock_release(s->l), 0);
  }
  return NULL;
}

static void *lock_stress_main(void *arg) {
  (void)arg;
  in_section = max_in_section = 0;
  lstress s = {0};
  CHECK_EQ(coro_lock_new(&s.l), 0);
  enum { N = 40 };
  coro_future *f[N];
  for (int i = 0; i < N; i++) f[i] = spawn(lstress_task, &s);
  for (int round = 0; round < 30; round++) {
    yields(1);
    for (int i = (round * 7) % N; i < N; i += 11) coro_cancel(f[i]);
  }
  for (int i = 0; i < N; i++) CHECK(reap(f[i]) <= 0);
  CHECK_EQ(max_in_section, 1);
  CHECK_EQ(s.count, s.ok);
  CHECK(s.cancelled > 0);
  CHECK_EQ(coro_lock_locked(s.l), 0);
  CHECK_EQ(coro_lock_free(s.l), 0);
  return NULL;
}

static void test_lock_stress_cancel(void **state) {
  (void)state;
  assert_run_ok(lock_stress_main);
}

/* ==== event ================================================================= */

static void *event_waiter(void *arg) {
  actor *a = arg;
  a->r = coro_event_wait_timeout(a->e, a->ms);
  if (a->r == 0 && a->tag) coro_test_note(a->tag);
  return a->r == 0 ? NULL : coro_fail(a->r);
}

static void *event_basic_main(void *arg) {
  (void)arg;
  coro_event *e;
  CHECK_EQ(coro_event_new(&e), 0);
  CHECK_EQ(coro_event_is_set(e), 0);
  CHECK_EQ(coro_event_wait_timeout(e, 0), -ETIMEDOUT);
  CHECK_EQ(coro_event_wait_timeout(e, -5), -EINVAL);
  CHECK_EQ(coro_event_set(e), 0);
  CHECK_EQ(coro_event_is_set(e), 1);
  CHECK_EQ(coro_event_wait(e), 0);
  CHECK_EQ(coro_event_wait_timeout(e, 0), 0);
  CHECK_EQ(coro_event_clear(e), 0);
  CHECK_EQ(coro_event_is_set(e), 0);
  CHECK_EQ(coro_event_free(e), 0);
  CHECK_EQ(coro_event_set(NULL), -EINVAL);
  CHECK_EQ(coro_event_wait(NULL), -EINVAL);
  CHECK_EQ(coro_event_is_set(NULL), -EINVAL);
  return NULL;
}

static void test_event_basic(void **state) {
  (void)state;
  coro_event *e;
  assert_coro_err(coro_event_new(NULL), -EINVAL);
  assert_coro_ok(coro_event_new(&e));
  assert_coro_err(coro_event_wait(e), -EPERM);  /* outside a task */
  assert_coro_ok(coro_event_set(e));            /* nobody waits: fine */
  assert_coro_ok(coro_event_free(e));
  assert_run_ok(event_basic_main);
}

/* test_wait (CPython L301): t3 created but not started when set() is
 * called runs first: [3,1,2]. */
static void *event_order_main(void *arg) {
  (void)arg;
  coro_test_log_reset();
  coro_event *e;
  CHECK_EQ(coro_event_new(&e), 0);
  actor a[3];
  coro_future *f[3];
  const char *tags[3] = {"1", "2", "3"};
  for (int i = 0; i < 3; i++) actor_init(&a[i], tags[i]), a[i].e = e;
  f[0] = spawn(event_waiter, &a[0]);
  f[1] = spawn(event_waiter, &a[1]);
  yields(1);
  f[2] = spawn(event_waiter, &a[2]);
  CHECK_EQ(coro_event_set(e), 0);
  for (int i = 0; i < 3; i++) CHECK_EQ(reap(f[i]), 0);
  CHECK(strcmp(coro_test_log(), "312") == 0);
  CHECK_EQ(coro_event_free(e), 0);
  return NULL;
}

static void test_event_wait_order(void **state) {
  (void)state;
  assert_run_ok(event_order_main);
}

/* test_clear_with_waiters: woken waiters return 0 although cleared. */
static void *event_clear_main(void *arg) {
  (void)arg;
  coro_event *e;
  CHECK_EQ(coro_event_new(&e), 0);
  actor a[2];
  coro_future *f[2];
  for (int i = 0; i < 2; i++) {
    actor_init(&a[i], NULL);
    a[i].e = e;
    f[i] = spawn(event_waiter, &a[i]);
  }
  yields(1);
  CHECK_EQ(coro_event_set(e), 0);
  CHECK_EQ(coro_event_clear(e), 0);
  CHECK_EQ(coro_event_is_set(e), 0);
  CHECK_EQ(reap(f[0]), 0);
  CHECK_EQ(reap(f[1]), 0);
  CHECK_EQ(coro_event_free(e), 0);
  return NULL;
}

static void test_event_clear_with_waiters(void **state) {
  (void)state;
  assert_run_ok(event_clear_main);
}

/* test_wait_cancel: a cancelled wait leaves no waiter behind; one
 * cancelled after set (before it runs) reports the cancellation, and the
 * others are still woken. Timeouts. */
static void *event_cancel_main(void *arg) {
  (void)arg;
  coro_event *e;
  CHECK_EQ(coro_event_new(&e), 0);
  actor a[3];
  coro_future *f[3];
  for (int i = 0; i < 3; i++) {
    actor_init(&a[i], NULL);
    a[i].e = e;
    f[i] = spawn(event_waiter, &a[i]);
  }
  yields(1);
  CHECK_EQ(coro_cancel(f[0]), 0);
  CHECK_EQ(reap(f[0]), -ECANCELED);
  CHECK_EQ(coro_event_set(e), 0);
  CHECK_EQ(coro_cancel(f[1]), 0);   /* woken, not run yet */
  CHECK_EQ(reap(f[1]), -ECANCELED);
  CHECK_EQ(reap(f[2]), 0);
  CHECK_EQ(coro_event_free(e), 0);
  /* Timeouts. */
  CHECK_EQ(coro_event_new(&e), 0);
  actor_init(&a[0], NULL);
  a[0].e = e;
  a[0].ms = 20;
  int64_t t0 = coro_test_now_ms();
  f[0] = spawn(event_waiter, &a[0]);
  CHECK_EQ(reap(f[0]), -ETIMEDOUT);
  CHECK(coro_test_now_ms() - t0 >= 20);
  actor_init(&a[0], NULL);
  a[0].e = e;
  a[0].ms = 10000;
  f[0] = spawn(event_waiter, &a[0]);
  CHECK_EQ(coro_sleep(5), 0);
  CHECK_EQ(coro_event_set(e), 0);
  CHECK_EQ(reap(f[0]), 0);
  CHECK_EQ(coro_event_free(e), 0);
  return NULL;
}

static void test_event_cancel_and_timeout(void **state) {
  (void)state;
  assert_run_ok(event_cancel_main);
}

/* ==== condition ============================================================= */

static void *cond_waiter(void *arg) {
  actor *a = arg;
  coro_lock *l = coro_cond_lock(a->c);
  int r = coro_lock_acquire(l);
  if (r != 0) return coro_fail(r);
  a->r = coro_cond_wait_timeout(a->c, a->ms);
  /* The lock is held on return, whatever the status. */
  a->held = coro_lock_locked(l) == 1;
  if (a->r == 0 && a->tag) coro_test_note(a->tag);
  CHECK_EQ(coro_lock_release(l), 0);
  return a->r == 0 ? NULL : coro_fail(a->r);
}

/* test_wait (CPython L395): a notified waiter returns only once the
 * notifier releases the lock. */
static void *cond_wait_main(void *arg) {
  (void)arg;
  coro_test_log_reset();
  coro_cond *c;
  CHECK_EQ(coro_cond_new(&c, NULL), 0);
  coro_lock *l = coro_cond_lock(c);
  actor a[3];
  coro_future *f[3];
  const char *tags[3] = {"1", "2", "3"};
  for (int i = 0; i < 3; i++) {
    actor_init(&a[i], tags[i]);
    a[i].c = c;
    f[i] = spawn(cond_waiter, &a[i]);
  }
  yields(1);
  CHECK(strcmp(coro_test_log(), "") == 0);
  CHECK_EQ(coro_lock_locked(l), 0);
  CHECK_EQ(coro_lock_acquire(l), 0);
  CHECK_EQ(coro_cond_notify(c, 1), 1);
  yields(1);
  CHECK(strcmp(coro_test_log(), "") == 0);
  CHECK_EQ(coro_lock_release(l), 0);
  yields(1);
  CHECK(strcmp(coro_test_log(), "1") == 0);
  CHECK_EQ(coro_lock_acquire(l), 0);
  CHECK_EQ(coro_cond_notify(c, 1), 1);
  CHECK_EQ(coro_cond_notify(c, 2048), 1);
  CHECK_EQ(coro_cond_notify(c, 1), 0);
  CHECK_EQ(coro_lock_release(l), 0);
  for (int i = 0; i < 3; i++) CHECK_EQ(reap(f[i]), 0);
  CHECK(strcmp(coro_test_log(), "123") == 0);
  for (int i = 0; i < 3; i++) CHECK_EQ(a[i].held, 1);
  CHECK_EQ(coro_cond_free(c), 0);
  return NULL;
}

static void test_cond_wait_notify(void **state) {
  (void)state;
  assert_run_ok(cond_wait_main);
}

static int always(void *arg) { (void)arg; return 1; }
static int never(void *arg) { (void)arg; return 0; }

static void *cond_errors_main(void *arg) {
  (void)arg;
  coro_lock *l;
  CHECK_EQ(coro_lock_new(&l), 0);
  coro_cond *c;
  CHECK_EQ(coro_cond_new(&c, l), 0);
  CHECK(coro_cond_lock(c) == l);
  CHECK_EQ(coro_cond_wait(c), -EPERM);              /* lock not held */
  CHECK_EQ(coro_cond_notify(c, 1), -EPERM);
  CHECK_EQ(coro_cond_notify_all(c), -EPERM);
  CHECK_EQ(coro_cond_wait_for(c, always, NULL), 0); /* no lock needed */
  CHECK_EQ(coro_cond_wait_for(c, never, NULL), -EPERM);
  CHECK_EQ(coro_lock_acquire(l), 0);
  CHECK_EQ(coro_cond_notify(c, -1), -EINVAL);
  CHECK_EQ(coro_cond_notify(c, 1), 0);
  CHECK_EQ(coro_cond_notify_all(c), 0);
  CHECK_EQ(coro_cond_wait_timeout(c, -3), -EINVAL);
  CHECK_EQ(coro_cond_wait_timeout(c, 0), -ETIMEDOUT);
  CHECK_EQ(coro_lock_locked(l), 1);
  int64_t t0 = coro_test_now_ms();
  CHECK_EQ(coro_cond_wait_timeout(c, 20), -ETIMEDOUT);
  CHECK(coro_test_now_ms() - t0 >= 20);
  CHECK_EQ(coro_lock_release(l), 0);                /* still ours */
  CHECK_EQ(coro_lock_acquire(l), 0);
  CHECK_EQ(coro_cond_wait_for_timeout(c, never, NULL, 20), -ETIMEDOUT);
  CHECK_EQ(coro_lock_release(l), 0);
  CHECK_EQ(coro_cond_wait_for(NULL, always, NULL), -EINVAL);
  CHECK_EQ(coro_cond_wait_for(c, NULL, NULL), -EINVAL);
  CHECK_EQ(coro_cond_wait(NULL), -EINVAL);
  CHECK_EQ(coro_cond_free(c), 0);
  CHECK_EQ(coro_lock_free(l), 0);
  return NULL;
}

static void test_cond_errors(void **state) {
  (void)state;
  assert_coro_err(coro_cond_new(NULL, NULL), -EINVAL);
  assert_coro_err(coro_cond_free(NULL), -EINVAL);
  assert_null(coro_cond_lock(NULL));
  assert_run_ok(cond_errors_main);
}

/* test_wait_cancel / _contested: a cancelled wait returns holding the
 * lock, and leaves no waiter behind. */
static void *cond_cancel_main(void *arg) {
  (void)arg;
  coro_cond *c;
  CHECK_EQ(coro_cond_new(&c, NULL), 0);
  coro_lock *l = coro_cond_lock(c);
  actor a;
  actor_init(&a, NULL);
  a.c = c;
  coro_future *f = spawn(cond_waiter, &a);
  yields(1);
  CHECK_EQ(coro_cancel(f), 0);
  CHECK_EQ(reap(f), -ECANCELED);
  CHECK_EQ(a.r, -ECANCELED);
  CHECK_EQ(a.held, 1);
  CHECK_EQ(coro_cond_free(c), 0);
  /* Contested: cancelled while we hold the lock; it returns only after we
   * release it, holding it. */
  CHECK_EQ(coro_cond_new(&c, NULL), 0);
  l = coro_cond_lock(c);
  actor_init(&a, NULL);
  a.c = c;
  f = spawn(cond_waiter, &a);
  yields(1);
  CHECK_EQ(coro_lock_acquire(l), 0);
  CHECK_EQ(coro_cancel(f), 0);
  yields(3);
  CHECK_EQ(coro_future_status(f), CORO_PENDING);
  CHECK_EQ(a.r, 1);
  CHECK_EQ(coro_lock_release(l), 0);
  CHECK_EQ(reap(f), -ECANCELED);
  CHECK_EQ(a.held, 1);
  CHECK_EQ(coro_lock_acquire(l), 0);
  CHECK_EQ(coro_cond_notify_all(c), 0);   /* no waiter left */
  CHECK_EQ(coro_lock_release(l), 0);
  CHECK_EQ(coro_cond_free(c), 0);
  return NULL;
}

static void test_cond_cancel_reacquires(void **state) {
  (void)state;
  assert_run_ok(cond_cancel_main);
}

/* gh-112202 (the 3.13 fix): notify(1), then the notified waiter is
 * cancelled before it runs: the other waiter gets the notification. */
static void *cond_lost_wakeup_main(void *arg) {
  (void)arg;
  coro_test_log_reset();
  coro_cond *c;
  CHECK_EQ(coro_cond_new(&c, NULL), 0);
  coro_lock *l = coro_cond_lock(c);
  actor a[2];
  coro_future *f[2];
  const char *tags[2] = {"1", "2"};
  for (int i = 0; i < 2; i++) {
    actor_init(&a[i], tags[i]);
    a[i].c = c;
    f[i] = spawn(cond_waiter, &a[i]);
  }
  yields(1);
  CHECK_EQ(coro_lock_acquire(l), 0);
  CHECK_EQ(coro_cond_notify(c, 1), 1);
  CHECK_EQ(coro_cancel(f[0]), 0);
  CHECK_EQ(coro_lock_release(l), 0);
  CHECK_EQ(reap(f[0]), -ECANCELED);
  CHECK_EQ(reap(f[1]), 0);             /* not lost */
  CHECK(strcmp(coro_test_log(), "2") == 0);
  CHECK_EQ(a[0].held, 1);
  /* Notified, then cancelled while waiting to re-acquire the lock (we
   * hold it): it still passes a notification on (a spurious wake-up is
   * allowed, a lost one is not). */
  for (int i = 0; i < 2; i++) {
    actor_init(&a[i], tags[i]);
    a[i].c = c;
    f[i] = spawn(cond_waiter, &a[i]);
  }
  yields(1);
  CHECK_EQ(coro_lock_acquire(l), 0);
  CHECK_EQ(coro_cond_notify(c, 1), 1);
  yields(1);                           /* 1 runs and waits for the lock */
  CHECK_EQ(coro_cancel(f[0]), 0);
  yields(1);
  CHECK_EQ(coro_lock_release(l), 0);
  CHECK_EQ(reap(f[0]), -ECANCELED);
  CHECK_EQ(reap(f[1]), 0);
  CHECK_EQ(coro_cond_free(c), 0);
  return NULL;
}

static void test_cond_notify_not_lost_on_cancel(void **state) {
  (void)state;
  assert_run_ok(cond_lost_wakeup_main);
}

/* wait_for with a predicate; notify_all. */
typedef struct counter {
  coro_cond *c;
  int value;
  int want;
  int r;
} counter;

static int reached(void *arg) {
  counter *k = arg;
  return k->value >= k->want;
}

static void *cond_wait_for_task(void *arg) {
  counter *k = arg;
  coro_lock *l = coro_cond_lock(k->c);
  CHECK_EQ(coro_lock_acquire(l), 0);
  k->r = coro_cond_wait_for(k->c, reached, k);
  CHECK_EQ(coro_lock_locked(l), 1);
  CHECK_EQ(coro_lock_release(l), 0);
  return NULL;
}

static void *cond_wait_for_main(void *arg) {
  (void)arg;
  coro_cond *c;
  CHECK_EQ(coro_cond_new(&c, NULL), 0);
  coro_lock *l = coro_cond_lock(c);
  counter k = {c, 0, 3, 1};
  coro_future *f[3];
  for (int i = 0; i < 3; i++) f[i] = spawn(cond_wait_for_task, &k);
  yields(1);
  for (int i = 1; i <= 3; i++) {
    CHECK_EQ(coro_lock_acquire(l), 0);
    k.value = i;
    CHECK_EQ(coro_cond_notify_all(c), 3);
    CHECK_EQ(coro_lock_release(l), 0);
    yields(2);
    for (int j = 0; j < 3; j++)
      CHECK_EQ(coro_future_status(f[j]), i < 3 ? CORO_PENDING : 0);
  }
  for (int j = 0; j < 3; j++) CHECK_EQ(reap(f[j]), 0);
  CHECK_EQ(k.r, 0);
  CHECK_EQ(coro_cond_free(c), 0);
  return NULL;
}

static void test_cond_wait_for(void **state) {
  (void)state;
  assert_run_ok(cond_wait_for_main);
}

/* A wait_for limit too far away for nanoseconds (INT64_MAX ms) means no
 * limit: it returns when the predicate holds, not -ETIMEDOUT at once. */
static void *cond_far_task(void *arg) {
  counter *k = arg;
  coro_lock *l = coro_cond_lock(k->c);
  CHECK_EQ(coro_lock_acquire(l), 0);
  k->r = coro_cond_wait_for_timeout(k->c, reached, k, INT64_MAX);
  CHECK_EQ(coro_lock_release(l), 0);
  return NULL;
}

static void *cond_far_main(void *arg) {
  (void)arg;
  coro_cond *c;
  CHECK_EQ(coro_cond_new(&c, NULL), 0);
  coro_lock *l = coro_cond_lock(c);
  counter k = {c, 0, 1, 1};
  coro_future *f = spawn(cond_far_task, &k);
  yields(2);
  CHECK_EQ(coro_future_status(f), CORO_PENDING);
  CHECK_EQ(coro_lock_acquire(l), 0);
  k.value = 1;
  CHECK_EQ(coro_cond_notify_all(c), 1);
  CHECK_EQ(coro_lock_release(l), 0);
  CHECK_EQ(reap(f), 0);
  CHECK_EQ(k.r, 0);
  CHECK_EQ(coro_cond_free(c), 0);
  return NULL;
}

static void test_cond_wait_for_far_limit(void **state) {
  (void)state;
  assert_run_ok(cond_far_main);
}

/* A bounded buffer on one lock and two conditions with notify(1) only,
 * consumers cancelled now and then (some of them just notified): a lost
 * wake-up would leave a task waiting for good (coro_run would then report
 * -EDEADLK); every item arrives exactly once. */
enum { BB_CAP = 2, BB_PROD = 4, BB_PER = 150, BB_CONS = 4 };

typedef struct bbuf {
  coro_lock *l;
  coro_cond *not_empty, *not_full;
  int items[BB_CAP];
  int n;
  int done;
  unsigned char seen[BB_PROD * BB_PER];
  int got, dup;
} bbuf;

typedef struct bprod {
  bbuf *b;
  int id;
} bprod;

static int bb_has_room(void *arg) { return ((bbuf *)arg)->n < BB_CAP; }
static int bb_has_item(void *arg) {
  bbuf *b = arg;
  return b->n > 0 || b->done;
}

static void *bb_producer(void *arg) {
  bprod *p = arg;
  bbuf *b = p->b;
  for (int i = 0; i < BB_PER; i++) {
    CHECK_EQ(coro_lock_acquire(b->l), 0);
    CHECK_EQ(coro_cond_wait_for(b->not_full, bb_has_room, b), 0);
    b->items[b->n++] = p->id * BB_PER + i;
    CHECK(coro_cond_notify(b->not_empty, 1) >= 0);
    CHECK_EQ(coro_lock_release(b->l), 0);
    if (i % 4 == 0) coro_yield();
  }
  return NULL;
}

static void *bb_consumer(void *arg) {
  bbuf *b = arg;
  for (;;) {
    int r = coro_lock_acquire(b->l);
    if (r == -ECANCELED) return NULL;
    CHECK_EQ(r, 0);
    r = coro_cond_wait_for(b->not_empty, bb_has_item, b);
    if (r == -ECANCELED) {
      CHECK_EQ(coro_lock_release(b->l), 0);
      return NULL;
    }
    CHECK_EQ(r, 0);
    if (b->n == 0) { /* done */
      CHECK_EQ(coro_lock_release(b->l), 0);
      return NULL;
    }
    int v = b->items[0];
    b->items[0] = b->items[--b->n];
    if (b->seen[v]) b->dup++;
    b->seen[v] = 1;
    b->got++;
    CHECK(coro_cond_notify(b->not_full, 1) >= 0);
    CHECK_EQ(coro_lock_release(b->l), 0);
    if (v % 3 == 0) coro_yield();
  }
}

static void *cond_stress_main(void *arg) {
  (void)arg;
  static bbuf b;
  memset(&b, 0, sizeof(b));
  CHECK_EQ(coro_lock_new(&b.l), 0);
  CHECK_EQ(coro_cond_new(&b.not_empty, b.l), 0);
  CHECK_EQ(coro_cond_new(&b.not_full, b.l), 0);
  bprod p[BB_PROD];
  coro_future *fp[BB_PROD], *fc[BB_CONS + 16];
  int nc = 0;
  for (int i = 0; i < BB_CONS; i++) fc[nc++] = spawn(bb_consumer, &b);
  for (int i = 0; i < BB_PROD; i++) {
    p[i].b = &b;
    p[i].id = i;
    fp[i] = spawn(bb_producer, &p[i]);
  }
  for (int round = 0; round < 16; round++) {
    yields(2 + round % 5);
    coro_cancel(fc[round]);
    fc[nc++] = spawn(bb_consumer, &b);
  }
  for (int i = 0; i < BB_PROD; i++) CHECK_EQ(reap(fp[i]), 0);
  CHECK_EQ(coro_lock_acquire(b.l), 0);
  CHECK_EQ(coro_cond_wait_for(b.not_full, bb_has_room, &b), 0);
  while (b.n > 0) {
    CHECK_EQ(coro_lock_release(b.l), 0);
    yields(1);
    CHECK_EQ(coro_lock_acquire(b.l), 0);
  }
  b.done = 1;
  CHECK(coro_cond_notify_all(b.not_empty) >= 0);
  CHECK_EQ(coro_lock_release(b.l), 0);
  for (int i = 0; i < nc; i++) CHECK(reap(fc[i]) <= 0);
  CHECK_EQ(b.got, BB_PROD * BB_PER);
  CHECK_EQ(b.dup, 0);
  CHECK_EQ(coro_cond_free(b.not_empty), 0);
  CHECK_EQ(coro_cond_free(b.not_full), 0);
  CHECK_EQ(coro_lock_free(b.l), 0);
  return NULL;
}

/* One item at a time: put, notify(1), cancel the consumer that waited
 * longest (the one notified) before it runs, and require the item to be
 * taken by another: a lost notification leaves it there. The predicate
 * notes when each consumer starts (again) to wait, so the head is known. */
typedef struct cons {
  bbuf *b;
  uint64_t since;     /* when it last started waiting; 0: not waiting */
} cons;

static uint64_t wait_clock;

static int cons_has_item(void *arg) {
  cons *c = arg;
  if (bb_has_item(c->b)) {
    c->since = 0;
    return 1;
  }
  c->since = ++wait_clock;
  return 0;
}

static void *tracked_consumer(void *arg) {
  cons *c = arg;
  bbuf *b = c->b;
  for (;;) {
    int r = coro_lock_acquire(b->l);
    if (r != 0) break;
    r = coro_cond_wait_for(b->not_empty, cons_has_item, c);
    c->since = 0;
    if (r != 0 || b->n == 0) {
      CHECK_EQ(coro_lock_release(b->l), 0);
      break;
    }
    int v = b->items[--b->n];
    if (b->seen[v]) b->dup++;
    b->seen[v] = 1;
    b->got++;
    CHECK(coro_cond_notify(b->not_full, 1) >= 0);
    CHECK_EQ(coro_lock_release(b->l), 0);
  }
  return NULL;
}

static int bb_empty(void *arg) { return ((bbuf *)arg)->n == 0; }

static void *cond_notify_cancel_main(void *arg) {
  (void)arg;
  static bbuf b;
  memset(&b, 0, sizeof(b));
  CHECK_EQ(coro_lock_new(&b.l), 0);
  CHECK_EQ(coro_cond_new(&b.not_empty, b.l), 0);
  CHECK_EQ(coro_cond_new(&b.not_full, b.l), 0);
  enum { NC = 3, ITEMS = 40 };
  static cons cs[NC];
  coro_future *fc[NC], *old[ITEMS];
  for (int i = 0; i < NC; i++) {
    cs[i].b = &b;
    cs[i].since = 0;
    fc[i] = spawn(tracked_consumer, &cs[i]);
  }
  yields(1);
  int nold = 0;
  for (int v = 0; v < ITEMS; v++) {
    CHECK_EQ(coro_lock_acquire(b.l), 0);
    int head = -1;
    for (int i = 0; i < NC; i++)
      if (cs[i].since != 0 && (head < 0 || cs[i].since < cs[head].since))
        head = i;
    CHECK(head >= 0);
    if (head < 0) break;
    b.items[b.n++] = v;
    CHECK_EQ(coro_cond_notify(b.not_empty, 1), 1);
    CHECK_EQ(coro_cancel(fc[head]), 0);   /* notified, not run yet */
    old[nold++] = fc[head];               /* reaped at the end */
    fc[head] = NULL;
    int r = coro_cond_wait_for_timeout(b.not_full, bb_empty, &b, 2000);
    CHECK_EQ(r, 0);
    CHECK_EQ(coro_lock_release(b.l), 0);
    if (r != 0) break;
    cs[head].since = 0;
    fc[head] = spawn(tracked_consumer, &cs[head]);
    yields(2);                            /* it starts waiting, last */
  }
  CHECK_EQ(b.got, ITEMS);
  CHECK_EQ(b.dup, 0);
  CHECK_EQ(coro_lock_acquire(b.l), 0);
  b.done = 1;
  CHECK(coro_cond_notify_all(b.not_empty) >= 0);
  CHECK_EQ(coro_lock_release(b.l), 0);
  for (int i = 0; i < NC; i++)
    if (fc[i] != NULL) CHECK_EQ(reap(fc[i]), 0);
  for (int i = 0; i < nold; i++) CHECK_EQ(reap(old[i]), 0);
  CHECK_EQ(coro_cond_free(b.not_empty), 0);
  CHECK_EQ(coro_cond_free(b.not_full), 0);
  CHECK_EQ(coro_lock_free(b.l), 0);
  return NULL;
}

static void test_cond_notify_then_cancel_repeated(void **state) {
  (void)state;
  assert_run_ok(cond_notify_cancel_main);
}

static void test_cond_bounded_buffer_stress(void **state) {
  (void)state;
  assert_run_ok(cond_stress_main);
}

/* ==== semaphores ============================================================ */

static void *sem_taker(void *arg) {
  actor *a = arg;
  for (int i = 0; i < a->rounds; i++) {
    a->r = coro_sem_acquire_timeout(a->s, a->ms);
    if (a->r != 0) return coro_fail(a->r);
    a->held++;
    if (a->tag) coro_test_note(a->tag);
    if (a->rounds > 1) {
      yields(1);
      CHECK_EQ(coro_sem_release(a->s), 0);
    }
  }
  return NULL;
}

static void *sem_basic_main(void *arg) {
  (void)arg;
  coro_sem *s;
  CHECK_EQ(coro_sem_new(&s, 2), 0);
  CHECK_EQ(coro_sem_value(s), 2);
  CHECK_EQ(coro_sem_locked(s), 0);
  CHECK_EQ(coro_sem_acquire(s), 0);
  CHECK_EQ(coro_sem_try_acquire(s), 0);
  CHECK_EQ(coro_sem_locked(s), 1);
  CHECK_EQ(coro_sem_try_acquire(s), -EAGAIN);
  CHECK_EQ(coro_sem_acquire_timeout(s, 0), -ETIMEDOUT);
  CHECK_EQ(coro_sem_acquire_timeout(s, -2), -EINVAL);
  int64_t t0 = coro_test_now_ms();
  CHECK_EQ(coro_sem_acquire_timeout(s, 20), -ETIMEDOUT);
  CHECK(coro_test_now_ms() - t0 >= 20);
  CHECK_EQ(coro_sem_release(s), 0);
  CHECK_EQ(coro_sem_release(s), 0);
  CHECK_EQ(coro_sem_release(s), 0);          /* unbounded: may exceed */
  CHECK_EQ(coro_sem_value(s), 3);
  CHECK_EQ(coro_sem_free(s), 0);
  /* Bounded. */
  CHECK_EQ(coro_bsem_new(&s, 1), 0);
  CHECK_EQ(coro_sem_release(s), -EOVERFLOW);
  CHECK_EQ(coro_sem_acquire(s), 0);
  CHECK_EQ(coro_sem_release(s), 0);
  CHECK_EQ(coro_sem_release(s), -EOVERFLOW);
  CHECK_EQ(coro_sem_value(s), 1);
  CHECK_EQ(coro_sem_free(s), 0);
  /* A release with a waiter hands the unit over: value stays 0. */
  CHECK_EQ(coro_bsem_new(&s, 1), 0);
  CHECK_EQ(coro_sem_acquire(s), 0);
  actor a;
  actor_init(&a, NULL);
  a.s = s;
  coro_future *f = spawn(sem_taker, &a);
  yields(1);
  CHECK_EQ(coro_sem_release(s), 0);
  CHECK_EQ(coro_sem_value(s), 0);
  CHECK_EQ(coro_sem_try_acquire(s), -EAGAIN);   /* no barging */
  CHECK_EQ(reap(f), 0);
  CHECK_EQ(coro_sem_free(s), 0);
  CHECK_EQ(coro_sem_value(NULL), -EINVAL);
  CHECK_EQ(coro_sem_release(NULL), -EINVAL);
  CHECK_EQ(coro_sem_acquire(NULL), -EINVAL);
  return NULL;
}

static void test_sem_basic(void **state) {
  (void)state;
  coro_sem *s;
  assert_coro_err(coro_sem_new(&s, -1), -EINVAL);
  assert_coro_err(coro_bsem_new(&s, -1), -EINVAL);
  assert_coro_err(coro_sem_new(NULL, 1), -EINVAL);
  assert_coro_ok(coro_sem_new(&s, 1));
  assert_coro_err(coro_sem_acquire(s), -EPERM);
  assert_coro_err(coro_sem_try_acquire(s), -EPERM);
  assert_coro_ok(coro_sem_release(s));   /* no owner: anyone may */
  assert_coro_ok(coro_sem_free(s));
  assert_run_ok(sem_basic_main);
}

/* test_acquire_fifo_order (CPython L951): 3 tasks x 2 rounds on sem(1). */
static void *sem_fifo_main(void *arg) {
  (void)arg;
  coro_test_log_reset();
  coro_sem *s;
  CHECK_EQ(coro_sem_new(&s, 1), 0);
  actor a[3];
  coro_future *f[3];
  const char *tags[3] = {"a", "b", "c"};
  for (int i = 0; i < 3; i++) {
    actor_init(&a[i], tags[i]);
    a[i].s = s;
    a[i].rounds = 2;
    f[i] = spawn(sem_taker, &a[i]);
  }
  for (int i = 0; i < 3; i++) CHECK_EQ(reap(f[i]), 0);
  CHECK(strcmp(coro_test_log(), "abcabc") == 0);
  CHECK_EQ(coro_sem_value(s), 1);
  CHECK_EQ(coro_sem_free(s), 0);
  return NULL;
}

static void test_sem_fifo_order(void **state) {
  (void)state;
  assert_run_ok(sem_fifo_main);
}

/* test_acquire_cancel_before_awoken and test_acquire_hang (CPython), and
 * a waiter cancelled after the hand-off. */
static void *sem_cancel_main(void *arg) {
  (void)arg;
  coro_sem *s;
  CHECK_EQ(coro_sem_new(&s, 0), 0);
  actor a[4];
  coro_future *f[4];
  for (int i = 0; i < 4; i++) {
    actor_init(&a[i], NULL);
    a[i].s = s;
    f[i] = spawn(sem_taker, &a[i]);
  }
  yields(1);
  CHECK_EQ(coro_cancel(f[0]), 0);
  CHECK_EQ(coro_cancel(f[1]), 0);
  CHECK_EQ(coro_sem_release(s), 0);
  yields(2);
  CHECK_EQ(coro_future_status(f[2]), 0);
  CHECK_EQ(coro_future_status(f[3]), CORO_PENDING);
  /* Hand-off, then cancelled before running: t4 does not get it either
   * (nobody waits): the unit goes back to the count. */
  CHECK_EQ(coro_sem_release(s), 0);
  CHECK_EQ(coro_sem_value(s), 0);
  CHECK_EQ(coro_cancel(f[3]), 0);
  CHECK_EQ(coro_sem_value(s), 1);
  for (int i = 0; i < 4; i++) CHECK_EQ(reap(f[i]), i == 2 ? 0 : -ECANCELED);
  CHECK_EQ(a[2].held, 1);
  CHECK_EQ(coro_sem_free(s), 0);
  /* test_acquire_hang: t1 cancelled while waiting, one release: t2. */
  CHECK_EQ(coro_sem_new(&s, 0), 0);
  for (int i = 0; i < 3; i++) {
    actor_init(&a[i], NULL);
    a[i].s = s;
    f[i] = spawn(sem_taker, &a[i]);
  }
  yields(1);
  CHECK_EQ(coro_cancel(f[0]), 0);
  CHECK_EQ(coro_sem_release(s), 0);
  yields(1);
  CHECK_EQ(coro_sem_locked(s), 1);
  CHECK_EQ(coro_future_status(f[1]), 0);
  /* Hand-off to t3, cancelled before it runs, with t4 waiting: t4 gets it. */
  actor_init(&a[3], NULL);
  a[3].s = s;
  f[3] = spawn(sem_taker, &a[3]);
  yields(1);
  CHECK_EQ(coro_sem_release(s), 0);   /* to t3 */
  CHECK_EQ(coro_cancel(f[2]), 0);     /* passes it to t4 */
  CHECK_EQ(coro_sem_value(s), 0);
  for (int i = 0; i < 4; i++)
    CHECK_EQ(reap(f[i]), (i == 1 || i == 3) ? 0 : -ECANCELED);
  CHECK_EQ(coro_sem_free(s), 0);
  return NULL;
}

static void test_sem_cancel_races(void **state) {
  (void)state;
  assert_run_ok(sem_cancel_main);
}

/* A bound on concurrency under random cancellations: never more than
 * three inside, and every unit comes back. */
typedef struct sstress {
  coro_sem *s;
  int inside, max_inside, done;
} sstress;

static void *sstress_task(void *arg) {
  sstress *x = arg;
  for (int i = 0; i < 10; i++) {
    int r = coro_sem_acquire(x->s);
    if (r == -ECANCELED) return NULL;
    CHECK_EQ(r, 0);
    if (++x->inside > x->max_inside) x->max_inside = x->inside;
    coro_yield();
    x->inside--;
    x->done++;
    CHECK_EQ(coro_sem_release(x->s), 0);
  }
  return NULL;
}

static void *sem_stress_main(void *arg) {
  (void)arg;
  sstress x = {0};
  CHECK_EQ(coro_bsem_new(&x.s, 3), 0);
  enum { N = 30 };
  coro_future *f[N];
  for (int i = 0; i < N; i++) f[i] = spawn(sstress_task, &x);
  for (int round = 0; round < 20; round++) {
    yields(1);
    coro_cancel(f[(round * 13) % N]);
  }
  for (int i = 0; i < N; i++) CHECK(reap(f[i]) <= 0);
  CHECK_EQ(x.max_inside, 3);
  CHECK_EQ(coro_sem_value(x.s), 3);
  CHECK(x.done > 0);
  CHECK_EQ(coro_sem_free(x.s), 0);
  return NULL;
}

static void test_sem_stress_cancel(void **state) {
  (void)state;
  assert_run_ok(sem_stress_main);
}

/* test_acquire_fifo_order_2 (CPython). c2 releases and acquires again
 * while c3's unit is on its way: asyncio makes c2 wait behind c3 ([1,2,3,4]);
 * here c3 already owns its unit, so the unit c2 released is free and c2
 * takes it back without waiting ([1,2,4,3]). Nobody waiting is overtaken. */
static int order2[8], norder2;

static void *fo_c1(void *arg) {
  coro_sem *s = arg;
  int r = coro_sem_acquire(s);
  if (r != 0) return coro_fail(r);
  order2[norder2++] = 1;
  return NULL;
}

static void *fo_c2(void *arg) {
  coro_sem *s = arg;
  CHECK_EQ(coro_sem_acquire(s), 0);
  order2[norder2++] = 2;
  CHECK_EQ(coro_sem_release(s), 0);
  CHECK_EQ(coro_sem_acquire(s), 0);
  order2[norder2++] = 4;
  return NULL;
}

static void *fo_c3(void *arg) {
  coro_sem *s = arg;
  CHECK_EQ(coro_sem_acquire(s), 0);
  order2[norder2++] = 3;
  return NULL;
}

static void *sem_fifo2_main(void *arg) {
  (void)arg;
  norder2 = 0;
  coro_sem *s;
  CHECK_EQ(coro_sem_new(&s, 1), 0);
  coro_future *f[3];
  f[0] = spawn(fo_c1, s);
  f[1] = spawn(fo_c2, s);
  f[2] = spawn(fo_c3, s);
  yields(1);
  CHECK_EQ(coro_sem_release(s), 0);
  CHECK_EQ(coro_sem_release(s), 0);
  for (int i = 0; i < 3; i++) CHECK_EQ(reap(f[i]), 0);
  CHECK_EQ(norder2, 4);
  int want[4] = {1, 2, 4, 3};
  for (int i = 0; i < 4; i++) CHECK_EQ(order2[i], want[i]);
  CHECK_EQ(coro_sem_value(s), 0);
  CHECK_EQ(coro_sem_free(s), 0);
  /* test_acquire_fifo_order_3: t1 cancelled while waiting, two releases:
   * [2,3]. */
  norder2 = 0;
  CHECK_EQ(coro_sem_new(&s, 0), 0);
  f[0] = spawn(fo_c1, s);
  f[1] = spawn(fo_c3, s);
  f[2] = spawn(fo_c1, s);
  yields(1);
  CHECK_EQ(coro_cancel(f[0]), 0);
  CHECK_EQ(coro_sem_release(s), 0);
  CHECK_EQ(coro_sem_release(s), 0);
  CHECK_EQ(reap(f[0]), -ECANCELED);
  CHECK_EQ(reap(f[1]), 0);
  CHECK_EQ(reap(f[2]), 0);
  CHECK_EQ(norder2, 2);
  CHECK_EQ(order2[0], 3);   /* fo_c3 first, then the second fo_c1 */
  CHECK_EQ(order2[1], 1);
  CHECK_EQ(coro_sem_free(s), 0);
  return NULL;
}

static void test_sem_fifo_order_2_3(void **state) {
  (void)state;
  assert_run_ok(sem_fifo2_main);
}

/* test_acquire_no_hang (CPython): c1 cancels c2 right after releasing to
 * it; the unit comes back, and acquire works again. */
static coro_future *nohang_c2;

static void *nohang_c1(void *arg) {
  coro_sem *s = arg;
  CHECK_EQ(coro_sem_acquire(s), 0);
  CHECK_EQ(coro_yield(), 0);
  CHECK_EQ(coro_sem_release(s), 0);
  CHECK_EQ(coro_cancel(nohang_c2), 0);
  return NULL;
}

static void *nohang_c2_fn(void *arg) {
  coro_sem *s = arg;
  int r = coro_sem_acquire(s);
  CHECK_EQ(r, -ECANCELED);
  if (r == 0) CHECK_EQ(coro_sem_release(s), 0);
  return coro_fail(r == 0 ? -EIO : r);
}

static void *sem_no_hang_main(void *arg) {
  (void)arg;
  coro_sem *s;
  CHECK_EQ(coro_sem_new(&s, 1), 0);
  coro_future *f1 = spawn(nohang_c1, s);
  nohang_c2 = spawn(nohang_c2_fn, s);
  CHECK_EQ(reap(f1), 0);
  CHECK_EQ(reap(nohang_c2), -ECANCELED);
  CHECK_EQ(coro_sem_acquire_timeout(s, 1000), 0);
  CHECK_EQ(coro_sem_free(s), 0);
  return NULL;
}

static void test_sem_acquire_no_hang(void **state) {
  (void)state;
  assert_run_ok(sem_no_hang_main);
}

/* test_timeout_in_block: a wait under a timeout scope ends -ETIMEDOUT
 * holding the lock; test_wait_for_cancel: a cancelled wait_for returns
 * -ECANCELED holding the lock. */
static void *cond_wait_for_never(void *arg) {
  actor *a = arg;
  coro_lock *l = coro_cond_lock(a->c);
  CHECK_EQ(coro_lock_acquire(l), 0);
  a->r = coro_cond_wait_for(a->c, never, NULL);
  a->held = coro_lock_locked(l) == 1;
  CHECK_EQ(coro_lock_release(l), 0);
  return coro_fail(a->r);
}

static void *cond_scope_main(void *arg) {
  (void)arg;
  coro_cond *c;
  CHECK_EQ(coro_cond_new(&c, NULL), 0);
  coro_lock *l = coro_cond_lock(c);
  CHECK_EQ(coro_lock_acquire(l), 0);
  coro_timeout sc;
  CHECK_EQ(coro_timeout_enter(&sc, 10), 0);
  int r = coro_cond_wait(c);
  CHECK_EQ(coro_timeout_exit(&sc, r), -ETIMEDOUT);
  CHECK_EQ(coro_lock_locked(l), 1);
  CHECK_EQ(coro_lock_release(l), 0);   /* ours */
  actor a;
  actor_init(&a, NULL);
  a.c = c;
  coro_future *f = spawn(cond_wait_for_never, &a);
  yields(1);
  CHECK_EQ(coro_cancel(f), 0);
  CHECK_EQ(reap(f), -ECANCELED);
  CHECK_EQ(a.r, -ECANCELED);
  CHECK_EQ(a.held, 1);
  CHECK_EQ(coro_cond_free(c), 0);
  return NULL;
}

static void test_cond_timeout_scope_and_wait_for_cancel(void **state) {
  (void)state;
  assert_run_ok(cond_scope_main);
}

/* ==== loops ================================================================== */

/* An object tasks wait on belongs to their loop. */
static coro_sem *shared_sem;
static int other_loop_r;

static void *other_loop_main(void *arg) {
  (void)arg;
  other_loop_r = coro_sem_release(shared_sem);
  return NULL;
}

static void *other_thread(void *arg) {
  (void)arg;
  coro_run(other_loop_main, NULL, NULL);
  return NULL;
}

#include <pthread.h>

static void *sem_loop_main(void *arg) {
  (void)arg;
  CHECK_EQ(coro_sem_new(&shared_sem, 0), 0);
  actor a;
  actor_init(&a, NULL);
  a.s = shared_sem;
  coro_future *f = spawn(sem_taker, &a);
  yields(1);
  other_loop_r = 1;
  pthread_t th;
  CHECK_EQ(pthread_create(&th, NULL, other_thread, NULL), 0);
  CHECK_EQ(pthread_join(th, NULL), 0);
  CHECK_EQ(other_loop_r, -EPERM);
  CHECK_EQ(coro_sem_release(shared_sem), 0);
  CHECK_EQ(reap(f), 0);
  CHECK_EQ(coro_sem_free(shared_sem), 0);
  return NULL;
}

static void test_sync_other_loop_eperm(void **state) {
  (void)state;
  assert_run_ok(sem_loop_main);
}


/* ==== freeing an object tasks wait on ====================================== */

/* Each waiter gets -EPIPE, the object's memory goes when the last one has
 * resumed (ASan and the leak-checking fixture see both), and a waiter
 * already handed the lock / a unit but not yet run gets -EPIPE too. */
static void *free_lock_main(void *arg) {
  (void)arg;
  coro_lock *l;
  CHECK_OK(coro_lock_new(&l));
  CHECK_OK(coro_lock_acquire(l));
  actor a[3];
  coro_future *f[3];
  for (int i = 0; i < 3; i++) {
    actor_init(&a[i], NULL);
    a[i].l = l;
    f[i] = spawn(lock_taker, &a[i]);
  }
  yields(1);
  /* a[0] is handed the lock and has not run when the lock goes. */
  CHECK_OK(coro_lock_release(l));
  CHECK_OK(coro_lock_free(l));
  for (int i = 0; i < 3; i++) {
    CHECK_ERR(reap(f[i]), -EPIPE);
    CHECK_ERR(a[i].r, -EPIPE);
    CHECK_EQ(a[i].held, 0);
  }
  CHECK_ERR(coro_lock_free(NULL), -EINVAL);
  return NULL;
}

static void test_free_lock_wakes_waiters(void **state) {
  (void)state;
  in_section = 0;
  assert_run_ok(free_lock_main);
}

static void *free_event_sem_main(void *arg) {
  (void)arg;
  coro_event *e;
  coro_sem *s;
  CHECK_OK(coro_event_new(&e));
  CHECK_OK(coro_sem_new(&s, 0));
  actor ea[2], sa[2];
  coro_future *ef[2], *sf[2];
  for (int i = 0; i < 2; i++) {
    actor_init(&ea[i], NULL);
    ea[i].e = e;
    ef[i] = spawn(event_waiter, &ea[i]);
    actor_init(&sa[i], NULL);
    sa[i].s = s;
    sf[i] = spawn(sem_taker, &sa[i]);
  }
  yields(1);
  CHECK_OK(coro_sem_release(s)); /* sa[0] handed a unit, not run yet */
  CHECK_OK(coro_event_free(e));
  CHECK_OK(coro_sem_free(s));
  for (int i = 0; i < 2; i++) {
    CHECK_ERR(reap(ef[i]), -EPIPE);
    CHECK_ERR(reap(sf[i]), -EPIPE);
    CHECK_EQ(sa[i].held, 0);
  }
  return NULL;
}

static void test_free_event_and_sem_wake_waiters(void **state) {
  (void)state;
  assert_run_ok(free_event_sem_main);
}

/* A condition with a lock of the caller's: its waiters hold that lock
 * again when they return -EPIPE. */
static void *free_cond_main(void *arg) {
  (void)arg;
  coro_lock *l;
  coro_cond *c;
  CHECK_OK(coro_lock_new(&l));
  CHECK_OK(coro_cond_new(&c, l));
  actor a[2];
  coro_future *f[2];
  for (int i = 0; i < 2; i++) {
    actor_init(&a[i], NULL);
    a[i].c = c;
    f[i] = spawn(cond_waiter, &a[i]);
  }
  yields(1);
  CHECK_OK(coro_lock_acquire(l));
  CHECK_EQ(coro_cond_notify(c, 1), 1); /* a[0] notified, not run */
  CHECK_OK(coro_cond_free(c));
  CHECK_OK(coro_lock_release(l));
  for (int i = 0; i < 2; i++) {
    CHECK_ERR(reap(f[i]), -EPIPE);
    CHECK_EQ(a[i].held, 1); /* cond_waiter saw the lock held, released it */
  }
  CHECK_EQ(coro_lock_locked(l), 0);
  CHECK_OK(coro_lock_free(l));
  return NULL;
}

static void test_free_cond_given_lock(void **state) {
  (void)state;
  assert_run_ok(free_cond_main);
}

/* The condition's own lock goes with it: a waiter in the wait and one
 * re-acquiring the lock both return -EPIPE, without the lock. */
static void *own_cond_waiter(void *arg) {
  actor *a = arg;
  int r = coro_lock_acquire(coro_cond_lock(a->c));
  if (r != 0) return coro_fail(r);
  a->r = coro_cond_wait(a->c);
  return coro_fail(a->r); /* c is gone: nothing to release */
}

static void *free_cond_own_main(void *arg) {
  (void)arg;
  coro_cond *c;
  CHECK_OK(coro_cond_new(&c, NULL));
  coro_lock *l = coro_cond_lock(c);
  actor a[3];
  coro_future *f[3];
  for (int i = 0; i < 3; i++) {
    actor_init(&a[i], NULL);
    a[i].c = c;
    f[i] = spawn(own_cond_waiter, &a[i]);
  }
  yields(1);
  /* a[0] and a[1] notified, then waiting to re-acquire the lock we hold;
   * a[2] still in the wait. */
  CHECK_OK(coro_lock_acquire(l));
  CHECK_EQ(coro_cond_notify(c, 2), 2);
  yields(2);
  CHECK_OK(coro_cond_free(c)); /* and its lock: we must not release it */
  for (int i = 0; i < 3; i++) {
    CHECK_ERR(reap(f[i]), -EPIPE);
    CHECK_ERR(a[i].r, -EPIPE);
  }
  return NULL;
}

static void test_free_cond_own_lock(void **state) {
  (void)state;
  assert_run_ok(free_cond_own_main);
}

/* Waiters belong to their loop: a free from another thread is refused and
 * frees nothing. */
static void *free_from_thread(void *arg) {
  actor *a = arg;
  a->r = coro_event_free(a->e);
  return NULL;
}

static void *free_other_thread_main(void *arg) {
  (void)arg;
  coro_event *e;
  CHECK_OK(coro_event_new(&e));
  actor a, b;
  actor_init(&a, NULL);
  a.e = e;
  coro_future *f = spawn(event_waiter, &a);
  yields(1);
  actor_init(&b, NULL);
  b.e = e;
  pthread_t th;
  CHECK_EQ(pthread_create(&th, NULL, free_from_thread, &b), 0);
  CHECK_EQ(pthread_join(th, NULL), 0);
  CHECK_ERR(b.r, -EPERM);
  CHECK_OK(coro_event_set(e));
  CHECK_OK(reap(f));
  CHECK_OK(coro_event_free(e));
  return NULL;
}

static void test_free_from_other_thread_refused(void **state) {
  (void)state;
  assert_run_ok(free_other_thread_main);
}

int main(int argc, char **argv) {
  const struct CMUnitTest tests[] = {
#define T(x) cmocka_unit_test_setup_teardown(x, coro_test_setup, coro_test_teardown)
    T(test_lock_basic),
    T(test_lock_uncontended_no_yield),
    T(test_lock_fifo_rounds),
    T(test_lock_no_barging),
    T(test_lock_acquire_order),
    T(test_lock_cancel_after_wake),
    T(test_lock_cancel_release_race),
    T(test_lock_cancel_waiting),
    T(test_lock_timeout),
    T(test_lock_stress_cancel),
    T(test_event_basic),
    T(test_event_wait_order),
    T(test_event_clear_with_waiters),
    T(test_event_cancel_and_timeout),
    T(test_cond_wait_notify),
    T(test_cond_wait_for_far_limit),
    T(test_cond_errors),
    T(test_cond_cancel_reacquires),
    T(test_cond_notify_not_lost_on_cancel),
    T(test_cond_wait_for),
    T(test_cond_bounded_buffer_stress),
    T(test_cond_notify_then_cancel_repeated),
    T(test_sem_basic),
    T(test_sem_fifo_order),
    T(test_sem_cancel_races),
    T(test_sem_stress_cancel),
    T(test_sem_fifo_order_2_3),
    T(test_sem_acquire_no_hang),
    T(test_cond_timeout_scope_and_wait_for_cancel),
    T(test_sync_other_loop_eperm),
    T(test_free_lock_wakes_waiters),
    T(test_free_event_and_sem_wake_waiters),
    T(test_free_cond_given_lock),
    T(test_free_cond_own_lock),
    T(test_free_from_other_thread_refused),
#undef T
  };
  return coro_test_main(argc, argv, tests, NULL, NULL);
}
