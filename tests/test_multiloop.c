/* SPDX-License-Identifier: MIT */
/* Many loops (docs/api/exec.md, "coro_spawn_on" and "Loop groups"):
 * tasks started on another loop and awaited here (values, failures, the
 * task really runs there), cancellation in both directions, a target loop
 * that ends first (-EPIPE), placement (round robin, least loaded), freeing
 * a group under running tasks, misuse, and 100,000 messages between two
 * loops with nothing lost or reordered per sender. */
#include "helpers.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#define setup coro_test_setup_os
#define teardown coro_test_teardown_os

static coro_loop_group *grp(unsigned n, int placement) {
  coro_loop_group_opts o = {0};
  o.loops = n;
  o.placement = placement;
  coro_loop_group *g = NULL;
  CHECK_OK(coro_loop_group_new(&g, &o));
  return g;
}

static void *where(void *arg) {
  (void)arg;
  return coro_loop_current();
}

static void *twice(void *arg) {
  if (coro_sleep(1) != 0) return coro_fail(CORO_ECANCELED);
  return (void *)((intptr_t)arg * 2);
}

static void *fails(void *arg) {
  (void)arg;
  return coro_fail(-ENOENT);
}

/* ---- spawn_on: values, failures, where it runs ------------------------------ */

static void *values_main(void *arg) {
  (void)arg;
  coro_loop_group *g = grp(2, CORO_PLACE_ROUND_ROBIN);
  if (g == NULL) return NULL;
  CHECK_EQ(coro_loop_group_size(g), 2);
  coro_loop *l0 = coro_loop_group_loop(g, 0), *l1 = coro_loop_group_loop(g, 1);
  CHECK(l0 != NULL && l1 != NULL && l0 != l1);
  CHECK(l0 != coro_loop_current());
  CHECK_PTR_EQ(coro_loop_group_loop(g, 2), NULL);
  coro_future *f[20];
  for (int i = 0; i < 20; i++)
    CHECK_OK(coro_spawn_on(i % 2 ? l1 : l0, &f[i], twice, (void *)(intptr_t)i));
  for (int i = 0; i < 20; i++) {
    void *v = NULL;
    CHECK_OK(coro_await(f[i], &v));
    CHECK_EQ((intptr_t)v, 2 * i);
    coro_future_release(f[i]);
  }
  coro_future *w;
  void *loop_seen = NULL;
  CHECK_OK(coro_spawn_on(l1, &w, where, NULL));
  CHECK_OK(coro_await(w, &loop_seen));
  CHECK_PTR_EQ(loop_seen, l1);
  coro_future_release(w);
  coro_future *e;
  CHECK_OK(coro_spawn_on(l0, &e, fails, NULL));
  CHECK_ERR(coro_await(e, NULL), -ENOENT);
  coro_future_release(e);
  /* Detached, and the caller's own loop (a plain spawn). */
  CHECK_OK(coro_spawn_on(l0, NULL, twice, NULL));
  CHECK_OK(coro_spawn_on(coro_loop_current(), &w, where, NULL));
  CHECK_OK(coro_await(w, &loop_seen));
  CHECK_PTR_EQ(loop_seen, coro_loop_current());
  coro_future_release(w);
  /* Misuse. */
  CHECK_ERR(coro_spawn_on(NULL, &w, where, NULL), CORO_EINVAL);
  CHECK_ERR(coro_spawn_on(l0, &w, NULL, NULL), CORO_EINVAL);
  CHECK_ERR(coro_loop_group_spawn(NULL, &w, where, NULL), CORO_EINVAL);
  CHECK_OK(coro_loop_group_free(g));
  return NULL;
}

static void test_spawn_on_values(void **state) {
  (void)state;
  assert_run_ok(values_main);
  coro_future *f = (coro_future *)1;
  coro_loop_group *g;
  coro_loop_group_opts o = {0};
  o.loops = 1;
  assert_coro_ok(coro_loop_group_new(&g, &o));
  /* No loop on this thread. */
  assert_coro_err(coro_spawn_on(coro_loop_group_loop(g, 0), &f, where, NULL),
                  CORO_EPERM);
  assert_coro_ok(coro_loop_group_free(g));
  o.placement = 7;
  assert_coro_err(coro_loop_group_new(&g, &o), CORO_EINVAL);
  assert_coro_err(coro_loop_group_new(NULL, NULL), CORO_EINVAL);
  assert_coro_err(coro_loop_group_free(NULL), CORO_EINVAL);
  assert_int_equal(coro_loop_group_size(NULL), 0);
}

/* ---- cancellation both ways ------------------------------------------------------ */

static atomic_int remote_saw;

static void *long_remote(void *arg) {
  (void)arg;
  int r = coro_sleep(30000);
  atomic_store(&remote_saw, r);
  return coro_fail(r);
}

static void *self_cancel(void *arg) {
  (void)arg;
  coro_cancel(coro_current());
  return coro_fail(coro_sleep(30000));
}

static void *awaiter(void *arg) { return coro_fail(coro_await(arg, NULL)); }

static void *cancel_main(void *arg) {
  (void)arg;
  coro_loop_group *g = grp(1, CORO_PLACE_ROUND_ROBIN);
  if (g == NULL) return NULL;
  coro_loop *l = coro_loop_group_loop(g, 0);
  /* The awaiter is cancelled: the future ends at once, the remote task
   * sees the cancellation. */
  atomic_store(&remote_saw, 1);
  coro_future *f, *a;
  CHECK_OK(coro_spawn_on(l, &f, long_remote, NULL));
  CHECK_OK(coro_spawn(&a, awaiter, f));
  CHECK_OK(coro_sleep(20));
  CHECK_OK(coro_cancel(a));
  CHECK_ERR(coro_await(a, NULL), CORO_ECANCELED);
  CHECK_ERR(coro_future_status(f), CORO_ECANCELED);
  for (int i = 0; i < 500 && atomic_load(&remote_saw) == 1; i++) coro_sleep(2);
  CHECK_ERR(atomic_load(&remote_saw), CORO_ECANCELED);
  coro_future_release(f);
  coro_future_release(a);
  /* coro_cancel on the future itself. */
  atomic_store(&remote_saw, 1);
  CHECK_OK(coro_spawn_on(l, &f, long_remote, NULL));
  CHECK_OK(coro_sleep(10));
  CHECK_OK(coro_cancel(f));
  CHECK_ERR(coro_await(f, NULL), CORO_ECANCELED);
  for (int i = 0; i < 500 && atomic_load(&remote_saw) == 1; i++) coro_sleep(2);
  CHECK_ERR(atomic_load(&remote_saw), CORO_ECANCELED);
  coro_future_release(f);
  /* Cancelled on its own loop. */
  CHECK_OK(coro_spawn_on(l, &f, self_cancel, NULL));
  CHECK_ERR(coro_await(f, NULL), CORO_ECANCELED);
  coro_future_release(f);
  CHECK_OK(coro_loop_group_free(g));
  return NULL;
}

static void test_spawn_on_cancel(void **state) {
  (void)state;
  assert_run_ok(cancel_main);
}

/* ---- the target loop ends first ------------------------------------------------ */

static coro_loop *_Atomic target_loop;
static atomic_int target_go;

static void *target_main(void *arg) {
  (void)arg;
  target_loop = coro_loop_current();
  CHECK_OK(coro_loop_keepalive(coro_loop_current(), +1));
  while (!atomic_load(&target_go)) coro_sleep(1);
  CHECK_OK(coro_loop_keepalive(coro_loop_current(), -1));
  return NULL; /* its shutdown cancels the remote task */
}

static void *target_thread(void *arg) {
  (void)arg;
  return (void *)(intptr_t)coro_run(target_main, NULL, NULL);
}

static void *ends_first_main(void *arg) {
  pthread_t *th = arg;
  while (target_loop == NULL) coro_sleep(1);
  coro_future *f;
  CHECK_OK(coro_spawn_on(target_loop, &f, long_remote, NULL));
  CHECK_OK(coro_sleep(20));
  atomic_store(&target_go, 1);
  CHECK_ERR(coro_await(f, NULL), CORO_EPIPE);
  coro_future_release(f);
  pthread_join(*th, NULL);
  return NULL;
}

static void test_target_ends_first(void **state) {
  (void)state;
  target_loop = NULL;
  atomic_store(&target_go, 0);
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, target_thread, NULL), 0);
  assert_coro_ok(coro_run(ends_first_main, &th, NULL));
  assert_checks_passed();
}

/* ---- placement and freeing ------------------------------------------------------ */

static void *placement_main(void *arg) {
  (void)arg;
  coro_loop_group *g = grp(2, CORO_PLACE_ROUND_ROBIN);
  if (g == NULL) return NULL;
  int on0 = 0, on1 = 0;
  for (int i = 0; i < 100; i++) {
    coro_future *f;
    void *l = NULL;
    CHECK_OK(coro_loop_group_spawn(g, &f, where, NULL));
    CHECK_OK(coro_await(f, &l));
    coro_future_release(f);
    if (l == coro_loop_group_loop(g, 0)) on0++;
    if (l == coro_loop_group_loop(g, 1)) on1++;
  }
  CHECK_EQ(on0, 50);
  CHECK_EQ(on1, 50);
  CHECK_OK(coro_loop_group_free(g));

  g = grp(2, CORO_PLACE_LEAST_LOADED);
  if (g == NULL) return NULL;
  coro_future *busy, *next;
  void *l = NULL;
  CHECK_OK(coro_loop_group_spawn(g, &busy, long_remote, NULL)); /* loop 0 */
  CHECK_OK(coro_loop_group_spawn(g, &next, where, NULL));
  CHECK_OK(coro_await(next, &l));
  CHECK_PTR_EQ(l, coro_loop_group_loop(g, 1));
  coro_future_release(next);
  /* Freed with a task still running there: it ends cancelled by the
   * group's shutdown, so its future says -EPIPE. */
  CHECK_OK(coro_loop_group_free(g));
  CHECK_ERR(coro_await(busy, NULL), CORO_EPIPE);
  coro_future_release(busy);
  return NULL;
}

static void test_placement_and_free(void **state) {
  (void)state;
  assert_run_ok(placement_main);
}

static coro_loop_group *own_group;
static void *free_from_member(void *arg) {
  (void)arg;
  return (void *)(intptr_t)coro_loop_group_free(own_group);
}

static void *member_free_main(void *arg) {
  (void)arg;
  own_group = grp(1, CORO_PLACE_ROUND_ROBIN);
  if (own_group == NULL) return NULL;
  coro_future *f;
  void *r = NULL;
  CHECK_OK(coro_spawn_on(coro_loop_group_loop(own_group, 0), &f,
                         free_from_member, NULL));
  CHECK_OK(coro_await(f, &r));
  CHECK_EQ((intptr_t)r, CORO_EDEADLK);
  coro_future_release(f);
  CHECK_OK(coro_loop_group_free(own_group));
  return NULL;
}

static void test_free_from_member(void **state) {
  (void)state;
  assert_run_ok(member_free_main);
}

/* A group made and freed by a plain thread; loops = 0 is one per CPU. */
static void test_group_plain_thread(void **state) {
  (void)state;
  coro_loop_group *g;
  assert_coro_ok(coro_loop_group_new(&g, NULL));
  assert_true(coro_loop_group_size(g) >= 1);
  void *v = NULL;
  assert_coro_ok(coro_run_threadsafe(coro_loop_group_loop(g, 0), twice,
                                     (void *)(intptr_t)21, CORO_FOREVER, &v));
  assert_int_equal((intptr_t)v, 42);
  assert_coro_ok(coro_loop_group_free(g));
}

/* ---- 100,000 messages between two loops -------------------------------------- */

#define NSEND 2
#define PER_SENDER 50000

static coro_chan *mchan; /* owned by the receiving loop (group loop 1) */

static void *receiver(void *arg) {
  (void)arg;
  long last[NSEND] = {-1, -1};
  long got = 0;
  for (long i = 0; i < (long)NSEND * PER_SENDER; i++) {
    long v;
    int r = coro_chan_recv(mchan, &v);
    if (r != 0) return coro_fail(r);
    long who = v / PER_SENDER, seq = v % PER_SENDER;
    CHECK(who >= 0 && who < NSEND);
    if (who < 0 || who >= NSEND) return coro_fail(-EPROTO);
    CHECK_EQ(seq, last[who] + 1);
    last[who] = seq;
    got++;
  }
  return (void *)got;
}

static void *make_chan(void *arg) {
  (void)arg;
  CHECK_OK(coro_chan_new(&mchan, sizeof(long), 128));
  return NULL;
}

static void *sender(void *arg) {
  long who = (long)(intptr_t)arg;
  for (long i = 0; i < PER_SENDER; i++) {
    long v = who * PER_SENDER + i;
    int r = coro_chan_send_blocking(mchan, &v, CORO_FOREVER);
    if (r != 0) return coro_fail(r);
  }
  return NULL;
}

static void *free_chan(void *arg) {
  (void)arg;
  coro_chan_free(mchan);
  return NULL;
}

static void *messages_main(void *arg) {
  (void)arg;
  coro_loop_group *g = grp(2, CORO_PLACE_ROUND_ROBIN);
  if (g == NULL) return NULL;
  coro_loop *la = coro_loop_group_loop(g, 0), *lb = coro_loop_group_loop(g, 1);
  coro_future *f;
  CHECK_OK(coro_spawn_on(lb, &f, make_chan, NULL));
  CHECK_OK(coro_await(f, NULL));
  coro_future_release(f);
  coro_future *rf, *sf[NSEND];
  CHECK_OK(coro_spawn_on(lb, &rf, receiver, NULL));
  for (long i = 0; i < NSEND; i++)
    CHECK_OK(coro_spawn_on(la, &sf[i], sender, (void *)(intptr_t)i));
  for (int i = 0; i < NSEND; i++) {
    CHECK_OK(coro_await(sf[i], NULL));
    coro_future_release(sf[i]);
  }
  void *got = NULL;
  CHECK_OK(coro_await(rf, &got));
  CHECK_EQ((long)(intptr_t)got, (long)NSEND * PER_SENDER);
  coro_future_release(rf);
  CHECK_OK(coro_spawn_on(lb, &f, free_chan, NULL));
  CHECK_OK(coro_await(f, NULL));
  coro_future_release(f);
  CHECK_OK(coro_loop_group_free(g));
  return NULL;
}

static void test_messages_between_loops(void **state) {
  (void)state;
  assert_run_ok(messages_main);
}

static void *nothing(void *arg) { return arg; }

int main(int argc, char **argv) {
  coro_run(nothing, NULL, NULL); /* libuv's process-wide descriptors */
#define T(x) cmocka_unit_test_setup_teardown(x, setup, teardown)
  const struct CMUnitTest tests[] = {
      T(test_spawn_on_values),
      T(test_spawn_on_cancel),
      T(test_target_ends_first),
      T(test_placement_and_free),
      T(test_free_from_member),
      T(test_group_plain_thread),
      T(test_messages_between_loops),
  };
#undef T
  return coro_test_main(argc, argv, tests, NULL, NULL);
}
