/* SPDX-License-Identifier: MIT */
/* Embedding in an application's libuv loop (docs/api/core.md):
 * coro_loop_attach / coro_loop_spawn / coro_loop_detach. The application's
 * uv_run drives the tasks and returns when its work and libcoro's are done
 * (a task waiting forever does not hold it); detach cancels and drains
 * what is left, with timers and I/O in flight, and leaves a libuv loop that
 * closes with 0; the application's own handles keep working alongside;
 * misuse gives clear errors; two attached loops in two threads. */
#include "helpers.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <uv.h>

#define setup coro_test_setup_os
#define teardown coro_test_teardown_os

static void *sleeper(void *arg) {
  int r = coro_sleep(20);
  if (r != 0) return coro_fail(r);
  return arg;
}

static void *forever(void *arg) {
  (void)arg;
  coro_future *p;
  if (coro_future_new(&p) != 0) return coro_fail(CORO_ENOMEM);
  int r = coro_await(p, NULL);
  coro_future_release(p);
  return coro_fail(r);
}

/* uv_run returns once the tasks are done; results are readable. */
static void test_attach_run_detach(void **state) {
  (void)state;
  uv_loop_t uv;
  assert_int_equal(uv_loop_init(&uv), 0);
  coro_loop *loop = NULL;
  assert_coro_ok(coro_loop_attach(&loop, &uv, NULL));
  assert_ptr_equal(coro_loop_current(), loop);
  assert_ptr_equal(coro_loop_uv(loop), &uv);
  coro_future *f[3];
  for (int i = 0; i < 3; i++)
    assert_coro_ok(coro_loop_spawn(loop, &f[i], sleeper, (void *)(intptr_t)(i + 1)));
  assert_int_equal(coro_future_status(f[0]), CORO_PENDING);
  uv_run(&uv, UV_RUN_DEFAULT);
  for (int i = 0; i < 3; i++) {
    assert_coro_ok(coro_future_status(f[i]));
    assert_ptr_equal(coro_future_value(f[i]), (void *)(intptr_t)(i + 1));
    coro_future_release(f[i]);
  }
  assert_coro_ok(coro_loop_detach(loop));
  assert_null(coro_loop_current());
  assert_int_equal(uv_loop_close(&uv), 0);
}

/* A task waiting for a promise nobody resolves does not keep uv alive;
 * detach cancels it. */
static void test_idle_does_not_hold(void **state) {
  (void)state;
  uv_loop_t uv;
  assert_int_equal(uv_loop_init(&uv), 0);
  coro_loop *loop;
  assert_coro_ok(coro_loop_attach(&loop, &uv, NULL));
  coro_future *f;
  assert_coro_ok(coro_loop_spawn(loop, &f, forever, NULL));
  int64_t t0 = coro_test_now_ms();
  uv_run(&uv, UV_RUN_DEFAULT);
  assert_true(coro_test_now_ms() - t0 < 5000);
  assert_int_equal(coro_future_status(f), CORO_PENDING);
  assert_coro_ok(coro_loop_detach(loop));
  assert_coro_err(coro_future_status(f), CORO_ECANCELED);
  coro_future_release(f);
  assert_int_equal(uv_loop_close(&uv), 0);
}

/* Detach with a long sleep, a pending timer and a read in flight. */
static coro_server *io_srv;
static atomic_int io_reading;

static void *long_sleeper(void *arg) {
  (void)arg;
  return coro_fail(coro_sleep(60000));
}

static void *blocked_reader(void *arg) {
  (void)arg;
  coro_stream *s = NULL;
  char port[16];
  snprintf(port, sizeof port, "%d", coro_server_port(io_srv));
  int r = coro_tcp_connect(&s, "127.0.0.1", port, CORO_FOREVER);
  if (r != 0) return coro_fail(r);
  char buf[16];
  atomic_store(&io_reading, 1);
  ssize_t n = coro_stream_read(s, buf, sizeof buf); /* nobody writes */
  coro_stream_close(s);
  return coro_fail(n < 0 ? (int)n : -EPROTO);
}

static void *acceptor(void *arg) {
  (void)arg;
  coro_stream *c = NULL;
  int r = coro_server_accept(io_srv, &c);
  if (r != 0) return coro_fail(r);
  r = coro_sleep(CORO_FOREVER); /* holds the connection open */
  coro_stream_close(c);
  return coro_fail(r);
}

static void *io_setup(void *arg) {
  (void)arg;
  int r = coro_tcp_listen(&io_srv, "127.0.0.1", "0", NULL);
  if (r != 0) return coro_fail(r);
  CHECK_OK(coro_spawn(NULL, acceptor, NULL));
  CHECK_OK(coro_spawn(NULL, blocked_reader, NULL));
  return NULL;
}

static void stop_cb(uv_timer_t *t) { uv_stop(t->loop); }

static void test_detach_with_work(void **state) {
  (void)state;
  uv_loop_t uv;
  assert_int_equal(uv_loop_init(&uv), 0);
  coro_loop *loop;
  assert_coro_ok(coro_loop_attach(&loop, &uv, NULL));
  coro_future *fs, *fi;
  atomic_store(&io_reading, 0);
  assert_coro_ok(coro_loop_spawn(loop, &fs, long_sleeper, NULL));
  assert_coro_ok(coro_loop_spawn(loop, &fi, io_setup, NULL));
  /* Run until the reader blocks; the sleep keeps uv alive: stop by hand. */
  uv_timer_t stop;
  uv_timer_init(&uv, &stop);
  for (int i = 0; i < 200 && !atomic_load(&io_reading); i++) {
    uv_timer_start(&stop, stop_cb, 10, 0);
    uv_run(&uv, UV_RUN_DEFAULT);
  }
  assert_true(atomic_load(&io_reading));
  uv_timer_start(&stop, stop_cb, 20, 0); /* let the read start */
  uv_run(&uv, UV_RUN_DEFAULT);
  uv_close((uv_handle_t *)&stop, NULL);
  int64_t t0 = coro_test_now_ms();
  assert_coro_ok(coro_loop_detach(loop));
  assert_true(coro_test_now_ms() - t0 < 5000);
  assert_coro_err(coro_future_status(fs), CORO_ECANCELED);
  assert_coro_ok(coro_future_status(fi));
  coro_future_release(fs);
  coro_future_release(fi);
  uv_run(&uv, UV_RUN_DEFAULT); /* the app's own close */
  assert_int_equal(uv_loop_close(&uv), 0);
  assert_checks_passed();
}

/* The application's timer ticks while libcoro tasks sleep; a task spawned
 * from the application's callback runs. */
static int app_ticks;
static atomic_int task_steps;
static coro_loop *cb_loop;
static coro_future *cb_fut;

static void *stepper(void *arg) {
  (void)arg;
  for (int i = 0; i < 5; i++) {
    if (coro_sleep(5) != 0) break;
    atomic_fetch_add(&task_steps, 1);
  }
  return NULL;
}

static void app_tick(uv_timer_t *t) {
  if (++app_ticks == 1) CHECK_OK(coro_loop_spawn(cb_loop, &cb_fut, stepper, NULL));
  if (app_ticks == 10) uv_timer_stop(t);
}

static void test_app_handles_alongside(void **state) {
  (void)state;
  uv_loop_t uv;
  assert_int_equal(uv_loop_init(&uv), 0);
  assert_coro_ok(coro_loop_attach(&cb_loop, &uv, NULL));
  app_ticks = 0;
  atomic_store(&task_steps, 0);
  cb_fut = NULL;
  coro_future *f;
  assert_coro_ok(coro_loop_spawn(cb_loop, &f, stepper, NULL));
  uv_timer_t t;
  uv_timer_init(&uv, &t);
  uv_timer_start(&t, app_tick, 3, 3);
  uv_run(&uv, UV_RUN_DEFAULT);
  assert_int_equal(app_ticks, 10);
  assert_int_equal(atomic_load(&task_steps), 10);
  assert_non_null(cb_fut);
  assert_coro_ok(coro_future_status(cb_fut));
  coro_future_release(cb_fut);
  coro_future_release(f);
  uv_close((uv_handle_t *)&t, NULL);
  assert_coro_ok(coro_loop_detach(cb_loop));
  uv_run(&uv, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&uv), 0);
  assert_checks_passed();
}

/* Misuse. */
static coro_loop *other_loop;
static int other_spawn, other_detach;

static void *other_thread(void *arg) {
  (void)arg;
  other_spawn = coro_loop_spawn(other_loop, NULL, sleeper, NULL);
  other_detach = coro_loop_detach(other_loop);
  return NULL;
}

static int in_task_detach = 1, in_task_attach = 1;
static void *detach_inside(void *arg) {
  coro_loop *loop = arg;
  in_task_detach = coro_loop_detach(loop);
  uv_loop_t uv2;
  coro_loop *l2;
  uv_loop_init(&uv2);
  in_task_attach = coro_loop_attach(&l2, &uv2, NULL);
  uv_loop_close(&uv2);
  return NULL;
}

static int run_detach = 1;
static void *detach_run_loop(void *arg) {
  (void)arg;
  run_detach = coro_loop_detach(coro_loop_current());
  return NULL;
}

static int cb_detach = 1;
static void detach_in_cb(coro_future *f, void *data) {
  (void)f;
  cb_detach = coro_loop_detach(data);
}

static void test_misuse(void **state) {
  (void)state;
  uv_loop_t uv;
  assert_int_equal(uv_loop_init(&uv), 0);
  coro_loop *loop;
  coro_config bad = {0};
  bad.sigint_cancels_main = 1;
  assert_coro_err(coro_loop_attach(NULL, &uv, NULL), CORO_EINVAL);
  assert_coro_err(coro_loop_attach(&loop, NULL, NULL), CORO_EINVAL);
  assert_coro_err(coro_loop_attach(&loop, &uv, &bad), CORO_EINVAL);
  bad.sigint_cancels_main = 0;
  bad.slow_step_ms = -1;
  assert_coro_err(coro_loop_attach(&loop, &uv, &bad), CORO_EINVAL);
  assert_coro_err(coro_loop_detach(NULL), CORO_EINVAL);
  assert_coro_err(coro_loop_spawn(NULL, NULL, sleeper, NULL), CORO_EINVAL);

  assert_coro_ok(coro_loop_attach(&loop, &uv, NULL));
  coro_loop *again;
  assert_coro_err(coro_loop_attach(&again, &uv, NULL), CORO_EBUSY);
  assert_coro_err(coro_run(sleeper, NULL, NULL), CORO_EBUSY);
  assert_coro_err(coro_loop_spawn(loop, NULL, NULL, NULL), CORO_EINVAL);
  other_loop = loop;
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, other_thread, NULL), 0);
  pthread_join(th, NULL);
  assert_coro_err(other_spawn, CORO_EPERM);
  assert_coro_err(other_detach, CORO_EPERM);
  /* From inside a task and a done callback. */
  coro_future *f;
  assert_coro_ok(coro_loop_spawn(loop, &f, detach_inside, loop));
  assert_coro_ok(coro_future_on_done(f, detach_in_cb, loop));
  uv_run(&uv, UV_RUN_DEFAULT);
  assert_coro_err(in_task_detach, CORO_EBUSY);
  assert_coro_err(in_task_attach, CORO_EBUSY);
  assert_coro_err(cb_detach, CORO_EBUSY);
  coro_future_release(f);
  assert_coro_ok(coro_loop_detach(loop));
  assert_int_equal(uv_loop_close(&uv), 0);
  /* A loop coro_run made is not detached. */
  assert_coro_ok(coro_run(detach_run_loop, NULL, NULL));
  assert_coro_err(run_detach, CORO_EINVAL);
}

/* Attach, detach, attach again on the same libuv loop. */
static void test_attach_twice_in_a_row(void **state) {
  (void)state;
  uv_loop_t uv;
  assert_int_equal(uv_loop_init(&uv), 0);
  for (int round = 0; round < 3; round++) {
    coro_loop *loop;
    assert_coro_ok(coro_loop_attach(&loop, &uv, NULL));
    coro_future *f;
    assert_coro_ok(coro_loop_spawn(loop, &f, sleeper, (void *)(intptr_t)7));
    uv_run(&uv, UV_RUN_DEFAULT);
    assert_ptr_equal(coro_future_value(f), (void *)(intptr_t)7);
    coro_future_release(f);
    assert_coro_ok(coro_loop_detach(loop));
  }
  assert_int_equal(uv_loop_close(&uv), 0);
}

/* Two attached loops in two threads pass values through a channel. */
typedef struct pair {
  coro_chan *ch;           /* owned by loop B */
  atomic_int ready;
  long sum;
} pair;
static pair pr;

static void *b_receiver(void *arg) {
  (void)arg;
  for (int i = 1; i <= 1000; i++) {
    long v;
    int r = coro_chan_recv(pr.ch, &v);
    if (r != 0) return coro_fail(r);
    CHECK_EQ(v, i);
    pr.sum += v;
  }
  coro_chan_close(pr.ch); /* no longer shared: uv_run may return */
  return NULL;
}

static void *a_sender(void *arg) {
  (void)arg;
  for (long i = 1; i <= 1000; i++) {
    int r = coro_chan_send_blocking(pr.ch, &i, CORO_FOREVER);
    if (r != 0) return coro_fail(r);
  }
  return NULL;
}

static void *attached_thread(void *arg) {
  int role = (int)(intptr_t)arg;
  uv_loop_t uv;
  uv_loop_init(&uv);
  coro_loop *loop;
  int r = coro_loop_attach(&loop, &uv, NULL);
  if (r != 0) return (void *)(intptr_t)r;
  coro_future *f;
  if (role == 1) {
    CHECK_OK(coro_chan_new(&pr.ch, sizeof(long), 16));
    CHECK_OK(coro_chan_share(pr.ch));
    CHECK_OK(coro_loop_spawn(loop, &f, b_receiver, NULL));
    atomic_store(&pr.ready, 1);
  } else {
    while (!atomic_load(&pr.ready)) sched_yield();
    CHECK_OK(coro_loop_spawn(loop, &f, a_sender, NULL));
  }
  uv_run(&uv, UV_RUN_DEFAULT);
  r = coro_future_status(f);
  coro_future_release(f);
  if (role == 1) coro_chan_free(pr.ch);
  int d = coro_loop_detach(loop);
  if (r == 0) r = d;
  if (r == 0) r = uv_loop_close(&uv);
  return (void *)(intptr_t)r;
}

static void test_two_attached_loops(void **state) {
  (void)state;
  memset(&pr, 0, sizeof pr);
  pthread_t a, b;
  assert_int_equal(pthread_create(&b, NULL, attached_thread, (void *)(intptr_t)1), 0);
  assert_int_equal(pthread_create(&a, NULL, attached_thread, (void *)(intptr_t)0), 0);
  void *ra, *rb;
  pthread_join(a, &ra);
  pthread_join(b, &rb);
  assert_int_equal((intptr_t)ra, 0);
  assert_int_equal((intptr_t)rb, 0);
  assert_int_equal(pr.sum, 1000L * 1001 / 2);
  assert_checks_passed();
}

static void *nothing(void *arg) { return arg; }

int main(int argc, char **argv) {
  coro_run(nothing, NULL, NULL); /* libuv's process-wide descriptors */
#define T(x) cmocka_unit_test_setup_teardown(x, setup, teardown)
  const struct CMUnitTest tests[] = {
      T(test_attach_run_detach),
      T(test_idle_does_not_hold),
      T(test_detach_with_work),
      T(test_app_handles_alongside),
      T(test_misuse),
      T(test_attach_twice_in_a_row),
      T(test_two_attached_loops),
  };
#undef T
  return coro_test_main(argc, argv, tests, NULL, NULL);
}
