/* SPDX-License-Identifier: MIT */
/* Channels (aiochan / Go, docs/api/chan.md; strict FIFO): unbuffered and
 * buffered hand-off, try and timeout variants, close, FIFO order under
 * contention, the cancellation races (nothing lost, nothing received twice),
 * many-task producer/consumer programs, and the bridge for other threads and
 * loops. Cases ported from aiochan's test_channel.py are marked "aiochan". */
#include "helpers.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

/* ---- small tools --------------------------------------------------------------- */

#define spawn coro_test_spawn
#define join coro_test_join

/* Wait (suspending, never blocking the loop) until a thread that may
 * still need this loop has set *flag, so that joining it cannot deadlock. */
static void wait_flag(atomic_int *flag) {
  while (!atomic_load(flag)) coro_sleep(1);
}

/* Let every ready task run a few steps. */
static void settle(void) {
  for (int i = 0; i < 4; i++) coro_yield();
}

typedef struct op {
  coro_chan *c;
  int v;          /* value to send / received */
  int r;          /* status of the operation */
  int64_t ms;     /* timeout (CORO_FOREVER unless set) */
  int after;      /* status of a sleep after the operation (cancel kept?) */
  int done;
} op;

static void op_init(op *o, coro_chan *c, int v) {
  memset(o, 0, sizeof(*o));
  o->c = c;
  o->v = v;
  o->ms = CORO_FOREVER;
  o->r = 1;
  o->after = 1;
}

static void *sender(void *arg) {
  op *o = arg;
  o->r = coro_chan_send_timeout(o->c, &o->v, o->ms);
  o->done = 1;
  return NULL;
}

static void *receiver(void *arg) {
  op *o = arg;
  o->v = -1;
  o->r = coro_chan_recv_timeout(o->c, &o->v, o->ms);
  o->done = 1;
  return NULL;
}

/* Send, then sleep: shows whether a cancellation was kept for later. */
static void *sender_then_sleep(void *arg) {
  op *o = arg;
  o->r = coro_chan_send(o->c, &o->v);
  o->after = coro_sleep(CORO_FOREVER);
  return NULL;
}

/* ==== basics ======================================================================= */

static void *errors_main(void *arg) {
  (void)arg;
  coro_chan *c = NULL;
  int v = 0;
  CHECK_ERR(coro_chan_new(NULL, 4, 1), CORO_EINVAL);
  CHECK_ERR(coro_chan_new(&c, SIZE_MAX / 2, 4), CORO_EINVAL);
  CHECK(c == NULL);
  CHECK_EQ(coro_chan_new(&c, sizeof(int), 1), 0);
  CHECK_ERR(coro_chan_send(NULL, &v), CORO_EINVAL);
  CHECK_ERR(coro_chan_recv(NULL, &v), CORO_EINVAL);
  CHECK_ERR(coro_chan_send(c, NULL), CORO_EINVAL);
  CHECK_ERR(coro_chan_recv(c, NULL), CORO_EINVAL);
  CHECK_ERR(coro_chan_try_send(c, NULL), CORO_EINVAL);
  CHECK_ERR(coro_chan_try_recv(NULL, &v), CORO_EINVAL);
  CHECK_ERR(coro_chan_send_timeout(c, &v, -2), CORO_EINVAL);
  CHECK_ERR(coro_chan_recv_timeout(c, &v, -5), CORO_EINVAL);
  CHECK_ERR(coro_chan_close(NULL), CORO_EINVAL);
  CHECK_ERR(coro_chan_share(NULL), CORO_EINVAL);
  CHECK_ERR(coro_chan_closed(NULL), CORO_EINVAL);
  CHECK_EQ(coro_chan_len(NULL), 0);
  CHECK_EQ(coro_chan_cap(NULL), 0);
  CHECK_ERR(coro_chan_send_blocking(c, NULL, 0), CORO_EINVAL);
  CHECK_ERR(coro_chan_recv_blocking(NULL, &v, 0), CORO_EINVAL);
  CHECK_ERR(coro_chan_send_blocking(c, &v, -3), CORO_EINVAL);
  /* Nothing changed. */
  CHECK_EQ(coro_chan_len(c), 0);
  CHECK_EQ(coro_chan_closed(c), 0);
  coro_chan_free(c);
  coro_chan_free(NULL);
  return NULL;
}

static void test_chan_errors(void **state) {
  (void)state;
  coro_chan *c = NULL;
  int v = 0;
  /* No loop on this thread. */
  assert_coro_err(coro_chan_new(&c, 4, 1), CORO_EPERM);
  assert_null(c);
  assert_run_ok(errors_main);
  (void)v;
}

/* Outside a task (a done callback) the suspending calls refuse, the try
 * calls work. */
typedef struct cb_ctx {
  coro_chan *c;
  int send_r, recv_r, try_r, try_v, sel_r;
} cb_ctx;

static void outside_cb(coro_future *f, void *data) {
  (void)f;
  cb_ctx *x = data;
  int v = 5;
  x->send_r = coro_chan_send(x->c, &v);
  x->recv_r = coro_chan_recv(x->c, &v);
  x->try_r = coro_chan_try_send(x->c, &v);
  x->try_v = -1;
  coro_chan_try_recv(x->c, &x->try_v);
  coro_select_case cs = {.chan = x->c, .op = CORO_CHAN_RECV, .elem = &v};
  x->sel_r = coro_select(&cs, 1, CORO_SELECT_DEFAULT, 0);
}

static void *outside_main(void *arg) {
  (void)arg;
  cb_ctx x;
  memset(&x, 0, sizeof(x));
  CHECK_EQ(coro_chan_new(&x.c, sizeof(int), 2), 0);
  coro_future *p;
  CHECK_EQ(coro_future_new(&p), 0);
  CHECK_EQ(coro_future_on_done(p, outside_cb, &x), 0);
  CHECK_EQ(coro_future_resolve(p, NULL), 0);
  settle();
  CHECK_ERR(x.send_r, CORO_EPERM);
  CHECK_ERR(x.recv_r, CORO_EPERM);
  CHECK_EQ(x.try_r, 0);
  CHECK_EQ(x.try_v, 5);
  CHECK_ERR(x.sel_r, CORO_EPERM);
  coro_future_release(p);
  coro_chan_free(x.c);
  return NULL;
}

static void test_chan_outside_task(void **state) {
  (void)state;
  assert_run_ok(outside_main);
}

/* aiochan test_writes_block_on_full_buffer; FIFO through the buffer. */
static void *buffered_main(void *arg) {
  (void)arg;
  coro_chan *c;
  CHECK_EQ(coro_chan_new(&c, sizeof(int), 3), 0);
  CHECK_EQ(coro_chan_cap(c), 3);
  for (int i = 1; i <= 3; i++) CHECK_EQ(coro_chan_send(c, &i), 0);
  CHECK_EQ(coro_chan_len(c), 3);
  int v = 4;
  CHECK_ERR(coro_chan_try_send(c, &v), CORO_EAGAIN);
  CHECK_ERR(coro_chan_send_timeout(c, &v, 0), CORO_ETIMEDOUT);
  op s;
  op_init(&s, c, 4);
  coro_future *f = spawn(sender, &s);
  settle();
  CHECK_EQ(s.done, 0); /* blocked on the full buffer */
  CHECK_EQ(coro_chan_recv(c, &v), 0);
  CHECK_EQ(v, 1);
  CHECK_EQ(coro_chan_len(c), 3); /* the waiting sender's value went in */
  CHECK_EQ(join(f), 0);
  CHECK_EQ(s.r, 0);
  for (int i = 2; i <= 4; i++) {
    CHECK_EQ(coro_chan_recv(c, &v), 0);
    CHECK_EQ(v, i);
  }
  CHECK_ERR(coro_chan_try_recv(c, &v), CORO_EAGAIN);
  CHECK_ERR(coro_chan_recv_timeout(c, &v, 0), CORO_ETIMEDOUT);
  coro_chan_free(c);
  return NULL;
}

static void test_chan_buffered(void **state) {
  (void)state;
  assert_run_ok(buffered_main);
}

/* Unbuffered: a send completes only when a receiver takes the value. */
static void *unbuffered_main(void *arg) {
  (void)arg;
  coro_chan *c;
  CHECK_EQ(coro_chan_new(&c, sizeof(int), 0), 0);
  CHECK_EQ(coro_chan_cap(c), 0);
  int v = 7;
  CHECK_ERR(coro_chan_try_send(c, &v), CORO_EAGAIN);
  CHECK_ERR(coro_chan_try_recv(c, &v), CORO_EAGAIN);
  op s;
  op_init(&s, c, 42);
  coro_future *f = spawn(sender, &s);
  settle();
  CHECK_EQ(s.done, 0);
  CHECK_EQ(coro_chan_len(c), 0);
  v = 0;
  CHECK_EQ(coro_chan_try_recv(c, &v), 0); /* takes from the waiting sender */
  CHECK_EQ(v, 42);
  CHECK_EQ(join(f), 0);
  CHECK_EQ(s.r, 0);
  /* A waiting receiver: the send completes at once, no suspension. */
  op r;
  op_init(&r, c, 0);
  f = spawn(receiver, &r);
  settle();
  CHECK_EQ(r.done, 0);
  v = 43;
  CHECK_EQ(coro_chan_try_send(c, &v), 0);
  CHECK_EQ(join(f), 0);
  CHECK_EQ(r.r, 0);
  CHECK_EQ(r.v, 43);
  coro_chan_free(c);
  return NULL;
}

static void test_chan_unbuffered(void **state) {
  (void)state;
  assert_run_ok(unbuffered_main);
}

/* Values are copied whole; size 0 channels carry signals. */
typedef struct big {
  char s[100];
  double d;
} big;

static void *sizes_main(void *arg) {
  (void)arg;
  coro_chan *c;
  CHECK_EQ(coro_chan_new(&c, sizeof(big), 1), 0);
  big b, out;
  memset(&b, 0, sizeof(b));
  strcpy(b.s, "hello channel");
  b.d = 2.5;
  CHECK_EQ(coro_chan_send(c, &b), 0);
  memset(&b, 0, sizeof(b)); /* the channel holds a copy */
  CHECK_EQ(coro_chan_recv(c, &out), 0);
  CHECK(strcmp(out.s, "hello channel") == 0 && out.d == 2.5);
  coro_chan_free(c);
  coro_chan *sig;
  CHECK_EQ(coro_chan_new(&sig, 0, 2), 0);
  CHECK_EQ(coro_chan_send(sig, NULL), 0);
  CHECK_EQ(coro_chan_send(sig, NULL), 0);
  CHECK_ERR(coro_chan_try_send(sig, NULL), CORO_EAGAIN);
  CHECK_EQ(coro_chan_len(sig), 2);
  CHECK_EQ(coro_chan_recv(sig, NULL), 0);
  CHECK_EQ(coro_chan_len(sig), 1);
  coro_chan_free(sig);
  return NULL;
}

static void test_chan_elem_sizes(void **state) {
  (void)state;
  assert_run_ok(sizes_main);
}

/* ==== close ========================================================================== */

/* aiochan test_channel_closing: Chan(2), put 1, 2, get 1, close, get 2,
 * then closed. */
static void *close_drain_main(void *arg) {
  (void)arg;
  coro_chan *c;
  int v;
  CHECK_EQ(coro_chan_new(&c, sizeof(int), 2), 0);
  v = 1;
  CHECK_EQ(coro_chan_send(c, &v), 0);
  v = 2;
  CHECK_EQ(coro_chan_send(c, &v), 0);
  CHECK_EQ(coro_chan_recv(c, &v), 0);
  CHECK_EQ(v, 1);
  CHECK_EQ(coro_chan_close(c), 0);
  CHECK_EQ(coro_chan_closed(c), 1);
  CHECK_EQ(coro_chan_close(c), 0); /* idempotent */
  CHECK_ERR(coro_chan_send(c, &v), CORO_EPIPE);
  CHECK_ERR(coro_chan_try_send(c, &v), CORO_EPIPE);
  CHECK_ERR(coro_chan_send_timeout(c, &v, 10), CORO_EPIPE);
  CHECK_EQ(coro_chan_recv(c, &v), 0);
  CHECK_EQ(v, 2);
  CHECK_ERR(coro_chan_recv(c, &v), CORO_EPIPE);
  CHECK_ERR(coro_chan_try_recv(c, &v), CORO_EPIPE);
  CHECK_ERR(coro_chan_recv_timeout(c, &v, 0), CORO_EPIPE);
  CHECK_ERR(coro_chan_share(c), CORO_EPIPE);
  coro_chan_free(c);
  return NULL;
}

static void test_chan_close_drains(void **state) {
  (void)state;
  assert_run_ok(close_drain_main);
}

/* Closing wakes every waiter: receivers and senders get -EPIPE, and the
 * waiting senders' values are not delivered. */
static void *close_wakes_main(void *arg) {
  (void)arg;
  coro_chan *rc, *sc;
  CHECK_EQ(coro_chan_new(&rc, sizeof(int), 0), 0);
  CHECK_EQ(coro_chan_new(&sc, sizeof(int), 1), 0);
  int v = 0;
  CHECK_EQ(coro_chan_send(sc, &v), 0); /* full */
  op r[3], s[3];
  coro_future *fr[3], *fs[3];
  for (int i = 0; i < 3; i++) {
    op_init(&r[i], rc, 0);
    op_init(&s[i], sc, 10 + i);
    fr[i] = spawn(receiver, &r[i]);
    fs[i] = spawn(sender, &s[i]);
  }
  settle();
  CHECK_EQ(coro_chan_close(rc), 0);
  CHECK_EQ(coro_chan_close(sc), 0);
  for (int i = 0; i < 3; i++) {
    CHECK_EQ(join(fr[i]), 0);
    CHECK_EQ(join(fs[i]), 0);
    CHECK_ERR(r[i].r, CORO_EPIPE);
    CHECK_ERR(s[i].r, CORO_EPIPE);
  }
  /* Only the value buffered before close remains. */
  CHECK_EQ(coro_chan_recv(sc, &v), 0);
  CHECK_EQ(v, 0);
  CHECK_ERR(coro_chan_recv(sc, &v), CORO_EPIPE);
  coro_chan_free(rc);
  coro_chan_free(sc);
  return NULL;
}

static void test_chan_close_wakes_all(void **state) {
  (void)state;
  assert_run_ok(close_wakes_main);
}

/* Freeing a channel wakes its waiters with -EPIPE; a receiver that was
 * handed a value before the free still gets it (memory stays until it ran). */
static void *free_waiters_main(void *arg) {
  (void)arg;
  coro_chan *c;
  CHECK_EQ(coro_chan_new(&c, sizeof(int), 0), 0);
  op a, b;
  op_init(&a, c, 0);
  op_init(&b, c, 0);
  coro_future *fa = spawn(receiver, &a);
  coro_future *fb = spawn(receiver, &b);
  settle();
  int v = 99;
  CHECK_EQ(coro_chan_try_send(c, &v), 0); /* handed to a, not run yet */
  coro_chan_free(c);
  CHECK_EQ(join(fa), 0);
  CHECK_EQ(join(fb), 0);
  CHECK_EQ(a.r, 0);
  CHECK_EQ(a.v, 99);
  CHECK_ERR(b.r, CORO_EPIPE);
  /* Handed, freed, then cancelled: nowhere to put it back, so it keeps it
   * and the cancellation comes later. */
  CHECK_EQ(coro_chan_new(&c, sizeof(int), 0), 0);
  op_init(&a, c, 0);
  fa = spawn(receiver, &a);
  settle();
  CHECK_EQ(coro_chan_try_send(c, &v), 0);
  coro_chan_free(c);
  CHECK_EQ(coro_cancel(fa), 0);
  CHECK_ERR(join(fa), CORO_ECANCELED); /* ended cancelled after returning */
  CHECK_EQ(a.r, 0);
  CHECK_EQ(a.v, 99);
  return NULL;
}

static void test_chan_free_with_waiters(void **state) {
  (void)state;
  assert_run_ok(free_waiters_main);
}

/* ==== timeouts ========================================================================= */

static void *timeout_main(void *arg) {
  (void)arg;
  coro_chan *c;
  CHECK_EQ(coro_chan_new(&c, sizeof(int), 0), 0);
  int v = 3;
  int64_t t0 = coro_test_now_ms();
  CHECK_ERR(coro_chan_recv_timeout(c, &v, 30), CORO_ETIMEDOUT);
  CHECK_GE(coro_test_now_ms() - t0, 25);
  t0 = coro_test_now_ms();
  CHECK_ERR(coro_chan_send_timeout(c, &v, 20), CORO_ETIMEDOUT);
  CHECK_GE(coro_test_now_ms() - t0, 15);
  /* The timed-out waiters are gone: nobody waits now. */
  CHECK_ERR(coro_chan_try_send(c, &v), CORO_EAGAIN);
  CHECK_ERR(coro_chan_try_recv(c, &v), CORO_EAGAIN);
  /* A timeout that does not fire: the value arrives first. */
  op r;
  op_init(&r, c, 0);
  r.ms = 5000;
  coro_future *f = spawn(receiver, &r);
  settle();
  v = 8;
  CHECK_EQ(coro_chan_send(c, &v), 0);
  CHECK_EQ(join(f), 0);
  CHECK_EQ(r.r, 0);
  CHECK_EQ(r.v, 8);
  coro_chan_free(c);
  return NULL;
}

static void test_chan_timeouts(void **state) {
  (void)state;
  assert_run_ok(timeout_main);
}

/* Inside a timeout scope the wait ends with -ECANCELED -> -ETIMEDOUT. */
static void *scope_main(void *arg) {
  (void)arg;
  coro_chan *c;
  CHECK_EQ(coro_chan_new(&c, sizeof(int), 0), 0);
  coro_timeout t;
  int v;
  CHECK_EQ(coro_timeout_enter(&t, 20), 0);
  int r = coro_chan_recv(c, &v);
  CHECK_ERR(coro_timeout_exit(&t, r), CORO_ETIMEDOUT);
  CHECK_ERR(coro_chan_try_send(c, &v), CORO_EAGAIN); /* withdrawn */
  coro_chan_free(c);
  return NULL;
}

static void test_chan_timeout_scope(void **state) {
  (void)state;
  assert_run_ok(scope_main);
}

/* ==== FIFO ============================================================================= */

#define NQ 8

static void *fifo_main(void *arg) {
  size_t cap = (size_t)(uintptr_t)arg;
  coro_chan *c;
  CHECK_EQ(coro_chan_new(&c, sizeof(int), cap), 0);
  /* Senders queue in spawn order; a receiver gets them in that order. */
  op s[NQ];
  coro_future *f[NQ];
  for (int i = 0; i < NQ; i++) {
    op_init(&s[i], c, i);
    f[i] = spawn(sender, &s[i]);
  }
  settle();
  for (int i = 0; i < NQ; i++) {
    int v = -1;
    CHECK_EQ(coro_chan_recv(c, &v), 0);
    CHECK_EQ(v, i);
  }
  for (int i = 0; i < NQ; i++) CHECK_EQ(join(f[i]), 0);
  /* Receivers queue in spawn order; sends reach them in that order, and a
   * newcomer never overtakes them. */
  op r[NQ];
  for (int i = 0; i < NQ; i++) {
    op_init(&r[i], c, 0);
    f[i] = spawn(receiver, &r[i]);
  }
  settle();
  for (int i = 0; i < NQ; i++) {
    int v = 100 + i;
    CHECK_EQ(coro_chan_send(c, &v), 0);
    CHECK_ERR(coro_chan_try_recv(c, &v), CORO_EAGAIN); /* no barging */
  }
  for (int i = 0; i < NQ; i++) {
    CHECK_EQ(join(f[i]), 0);
    CHECK_EQ(r[i].v, 100 + i);
  }
  coro_chan_free(c);
  return NULL;
}

static void test_chan_fifo_unbuffered(void **state) {
  (void)state;
  assert_coro_ok(coro_run(fifo_main, (void *)(uintptr_t)0, NULL));
  assert_checks_passed();
}

static void test_chan_fifo_buffered(void **state) {
  (void)state;
  assert_coro_ok(coro_run(fifo_main, (void *)(uintptr_t)3, NULL));
  assert_checks_passed();
}

/* ==== cancellation races ================================================================== */

/* A receiver cancelled while it waits takes nothing. */
static void *cancel_waiting_main(void *arg) {
  (void)arg;
  coro_chan *c;
  CHECK_EQ(coro_chan_new(&c, sizeof(int), 0), 0);
  op r;
  op_init(&r, c, 0);
  coro_future *f = spawn(receiver, &r);
  settle();
  CHECK_EQ(coro_cancel(f), 0);
  CHECK_EQ(join(f), 0);
  CHECK_ERR(r.r, CORO_ECANCELED);
  int v = 1;
  CHECK_ERR(coro_chan_try_send(c, &v), CORO_EAGAIN); /* no receiver left */
  /* Same for a sender. */
  op s;
  op_init(&s, c, 5);
  f = spawn(sender, &s);
  settle();
  CHECK_EQ(coro_cancel(f), 0);
  CHECK_EQ(join(f), 0);
  CHECK_ERR(s.r, CORO_ECANCELED);
  CHECK_ERR(coro_chan_try_recv(c, &v), CORO_EAGAIN);
  coro_chan_free(c);
  return NULL;
}

static void test_chan_cancel_waiting(void **state) {
  (void)state;
  assert_run_ok(cancel_waiting_main);
}

/* A receiver handed a value and cancelled before it runs: the value goes to
 * the next waiting receiver; the cancelled one reports -ECANCELED. */
static void *cancel_handed_pass_main(void *arg) {
  size_t cap = (size_t)(uintptr_t)arg;
  coro_chan *c;
  CHECK_EQ(coro_chan_new(&c, sizeof(int), cap), 0);
  op a, b;
  op_init(&a, c, 0);
  op_init(&b, c, 0);
  coro_future *fa = spawn(receiver, &a);
  coro_future *fb = spawn(receiver, &b);
  settle();
  int v = 11;
  CHECK_EQ(coro_chan_send(c, &v), 0); /* handed to a */
  CHECK_EQ(coro_cancel(fa), 0);       /* before a runs */
  CHECK_EQ(join(fa), 0);
  CHECK_EQ(join(fb), 0);
  CHECK_ERR(a.r, CORO_ECANCELED);
  CHECK_EQ(b.r, 0);
  CHECK_EQ(b.v, 11);
  CHECK_EQ(coro_chan_len(c), 0);
  coro_chan_free(c);
  return NULL;
}

static void test_chan_cancel_handed_passes_on(void **state) {
  (void)state;
  assert_coro_ok(coro_run(cancel_handed_pass_main, (void *)(uintptr_t)0, NULL));
  assert_checks_passed();
  assert_coro_ok(coro_run(cancel_handed_pass_main, (void *)(uintptr_t)2, NULL));
  assert_checks_passed();
}

/* No other receiver: the value is put back at the head of the buffer, in
 * front of values sent later, even past the capacity (and on an unbuffered
 * channel). */
static void *cancel_handed_back_main(void *arg) {
  size_t cap = (size_t)(uintptr_t)arg;
  coro_chan *c;
  CHECK_EQ(coro_chan_new(&c, sizeof(int), cap), 0);
  op a;
  op_init(&a, c, 0);
  coro_future *fa = spawn(receiver, &a);
  settle();
  int v = 1;
  CHECK_EQ(coro_chan_send(c, &v), 0); /* handed to a */
  /* Fill the buffer behind it, and one more sender waits. */
  op more[3];
  coro_future *fm[3];
  for (int i = 0; i < 3; i++) {
    op_init(&more[i], c, 2 + i);
    fm[i] = spawn(sender, &more[i]);
  }
  CHECK_EQ(coro_cancel(fa), 0);
  CHECK_EQ(join(fa), 0);
  CHECK_ERR(a.r, CORO_ECANCELED);
  settle();
  CHECK_GE(coro_chan_len(c), 1);
  for (int i = 1; i <= 4; i++) {
    v = -1;
    CHECK_EQ(coro_chan_recv(c, &v), 0);
    CHECK_EQ(v, i);
  }
  for (int i = 0; i < 3; i++) CHECK_EQ(join(fm[i]), 0);
  CHECK_ERR(coro_chan_try_recv(c, &v), CORO_EAGAIN);
  coro_chan_free(c);
  return NULL;
}

static void test_chan_cancel_handed_put_back(void **state) {
  (void)state;
  for (uintptr_t cap = 0; cap <= 3; cap++) {
    assert_coro_ok(coro_run(cancel_handed_back_main, (void *)cap, NULL));
    assert_checks_passed();
  }
}

/* Put back after close: still drained before -EPIPE. */
static void *cancel_handed_closed_main(void *arg) {
  (void)arg;
  coro_chan *c;
  CHECK_EQ(coro_chan_new(&c, sizeof(int), 0), 0);
  op a;
  op_init(&a, c, 0);
  coro_future *fa = spawn(receiver, &a);
  settle();
  int v = 77;
  CHECK_EQ(coro_chan_send(c, &v), 0);
  CHECK_EQ(coro_chan_close(c), 0);
  CHECK_EQ(coro_cancel(fa), 0);
  CHECK_EQ(join(fa), 0);
  CHECK_ERR(a.r, CORO_ECANCELED);
  v = 0;
  CHECK_EQ(coro_chan_recv(c, &v), 0);
  CHECK_EQ(v, 77);
  CHECK_ERR(coro_chan_recv(c, &v), CORO_EPIPE);
  coro_chan_free(c);
  return NULL;
}

static void test_chan_cancel_handed_after_close(void **state) {
  (void)state;
  assert_run_ok(cancel_handed_closed_main);
}

/* A sender whose value was taken, cancelled before it runs: the send stays
 * done (0) and the cancellation arrives at its next suspension. */
static void *cancel_sent_main(void *arg) {
  size_t cap = (size_t)(uintptr_t)arg;
  coro_chan *c;
  CHECK_EQ(coro_chan_new(&c, sizeof(int), cap), 0);
  int v;
  for (size_t i = 0; i < cap; i++) {
    v = -1;
    CHECK_EQ(coro_chan_send(c, &v), 0);
  }
  op s;
  op_init(&s, c, 5);
  coro_future *f = spawn(sender_then_sleep, &s);
  settle();
  /* cap > 0: the first receive moves s's value into the buffer. */
  for (size_t i = 0; i < cap; i++) CHECK_EQ(coro_chan_recv(c, &v), 0);
  if (cap == 0) {
    CHECK_EQ(coro_chan_recv(c, &v), 0);
    CHECK_EQ(v, 5);
  }
  CHECK_EQ(coro_cancel(f), 0);
  CHECK_EQ(join(f), 0);
  CHECK_EQ(s.r, 0);
  CHECK_ERR(s.after, CORO_ECANCELED);
  if (cap > 0) {
    CHECK_EQ(coro_chan_recv(c, &v), 0);
    CHECK_EQ(v, 5);
  }
  CHECK_ERR(coro_chan_try_recv(c, &v), CORO_EAGAIN); /* exactly once */
  coro_chan_free(c);
  return NULL;
}

static void test_chan_cancel_after_sent(void **state) {
  (void)state;
  assert_coro_ok(coro_run(cancel_sent_main, (void *)(uintptr_t)0, NULL));
  assert_checks_passed();
  assert_coro_ok(coro_run(cancel_sent_main, (void *)(uintptr_t)1, NULL));
  assert_checks_passed();
}

/* Woken by close or a timeout, then cancelled before running: -ECANCELED,
 * nothing consumed. */
static void *cancel_after_close_main(void *arg) {
  (void)arg;
  coro_chan *c;
  CHECK_EQ(coro_chan_new(&c, sizeof(int), 0), 0);
  op r;
  op_init(&r, c, 0);
  coro_future *f = spawn(receiver, &r);
  settle();
  CHECK_EQ(coro_chan_close(c), 0);
  CHECK_EQ(coro_cancel(f), 0);
  CHECK_EQ(join(f), 0);
  CHECK_ERR(r.r, CORO_ECANCELED);
  coro_chan_free(c);
  return NULL;
}

static void test_chan_cancel_after_close_wake(void **state) {
  (void)state;
  assert_run_ok(cancel_after_close_main);
}

/* A cancellation pending before the call: an operation that can complete
 * at once does (it does not suspend); one that must wait returns
 * -ECANCELED at once, having queued nothing. */
static void *self_cancel_main(void *arg) {
  (void)arg;
  coro_chan *c;
  CHECK_EQ(coro_chan_new(&c, sizeof(int), 1), 0);
  int v = 1;
  coro_cancel(coro_current());
  CHECK_EQ(coro_chan_send(c, &v), 0);
  CHECK_ERR(coro_chan_send(c, &v), CORO_ECANCELED);
  CHECK_EQ(coro_chan_len(c), 1);
  coro_uncancel(coro_current());
  coro_chan_free(c);
  return NULL;
}

static void test_chan_cancel_pending(void **state) {
  (void)state;
  assert_run_ok(self_cancel_main);
}

/* ==== many tasks ================================================================= */

#define PC_PRODUCERS 6
#define PC_CONSUMERS 5
#define PC_ITEMS 600

typedef struct pc {
  coro_chan *c;
  int base;
  unsigned char *seen;     /* receive count per item */
  unsigned char *sent;     /* 1 if the send returned 0 */
  int cancel_some;         /* consumers/producers get cancelled midway */
  int received;
} pc;

typedef struct pc_task {
  pc *p;
  int id;
} pc_task;

static void *pc_producer(void *arg) {
  pc_task *pt = arg;
  pc *p = pt->p;
  for (int i = 0; i < PC_ITEMS; i++) {
    int v = pt->id * PC_ITEMS + i;
    int r = coro_chan_send(p->c, &v);
    if (r == 0) p->sent[v] = 1;
    else if (r == CORO_ECANCELED) coro_uncancel(coro_current());
    else CHECK_EQ(r, 0);
    if ((i & 7) == 0) coro_yield();
  }
  return NULL;
}

static void *pc_consumer(void *arg) {
  pc_task *pt = arg;
  pc *p = pt->p;
  int v, r;
  for (;;) {
    r = coro_chan_recv(p->c, &v);
    if (r == CORO_ECANCELED) {
      coro_uncancel(coro_current());
      continue;
    }
    if (r != 0) break;
    p->seen[v]++;
    p->received++;
  }
  CHECK_ERR(r, CORO_EPIPE);
  return NULL;
}

/* Cancels random consumers and producers while they run. */
static void *pc_chaos(void *arg) {
  coro_future **fs = arg;
  unsigned x = 12345;
  for (int k = 0; k < 400; k++) {
    x = x * 1103515245u + 12345u;
    coro_future *f = fs[(x >> 8) % (PC_PRODUCERS + PC_CONSUMERS)];
    if (coro_future_status(f) == CORO_PENDING) coro_cancel(f);
    coro_yield();
  }
  return NULL;
}

static void *pc_main(void *arg) {
  pc *p = arg;
  int n = PC_PRODUCERS * PC_ITEMS;
  p->seen = calloc((size_t)n, 1);
  p->sent = calloc((size_t)n, 1);
  coro_future *prod[PC_PRODUCERS], *cons[PC_CONSUMERS], *all[PC_PRODUCERS + PC_CONSUMERS];
  pc_task pt[PC_PRODUCERS], ct[PC_CONSUMERS];
  for (int i = 0; i < PC_CONSUMERS; i++) {
    ct[i] = (pc_task){p, i};
    cons[i] = spawn(pc_consumer, &ct[i]);
    all[PC_PRODUCERS + i] = cons[i];
  }
  for (int i = 0; i < PC_PRODUCERS; i++) {
    pt[i] = (pc_task){p, i};
    prod[i] = spawn(pc_producer, &pt[i]);
    all[i] = prod[i];
  }
  coro_future *chaos = NULL;
  if (p->cancel_some) chaos = spawn(pc_chaos, all);
  for (int i = 0; i < PC_PRODUCERS; i++) {
    /* A producer cancelled after its last send completed ends cancelled. */
    int r = join(prod[i]);
    CHECK(r == 0 || (p->cancel_some && r == CORO_ECANCELED));
  }
  if (chaos != NULL) CHECK_EQ(join(chaos), 0);
  CHECK_EQ(coro_chan_close(p->c), 0);
  for (int i = 0; i < PC_CONSUMERS; i++) CHECK_EQ(join(cons[i]), 0);
  /* Exactly once: every value whose send returned 0 arrived once, nothing
   * else arrived. */
  int nsent = 0;
  for (int i = 0; i < n; i++) {
    CHECK_EQ(p->seen[i], p->sent[i]);
    nsent += p->sent[i];
  }
  CHECK_EQ(p->received, nsent);
  if (!p->cancel_some) CHECK_EQ(nsent, n);
  free(p->seen);
  free(p->sent);
  return NULL;
}

static void *pc_outer(void *arg) {
  pc *p = ((pc **)arg)[0];
  size_t cap = (size_t)(uintptr_t)((void **)arg)[1];
  CHECK_EQ(coro_chan_new(&p->c, sizeof(int), cap), 0);
  pc_main(p);
  coro_chan_free(p->c);
  return NULL;
}

static void pc_case(size_t cap, int chaos) {
  pc p;
  memset(&p, 0, sizeof(p));
  p.cancel_some = chaos;
  void *args[2] = {&p, (void *)(uintptr_t)cap};
  assert_coro_ok(coro_run(pc_outer, args, NULL));
  assert_checks_passed();
}

static void test_chan_producer_consumer(void **state) {
  (void)state;
  pc_case(0, 0);
  pc_case(1, 0);
  pc_case(64, 0);
}

static void test_chan_producer_consumer_cancel(void **state) {
  (void)state;
  pc_case(0, 1);
  pc_case(2, 1);
  pc_case(32, 1);
}

/* Fan-out then fan-in: a source channel, workers that square, a sink. */
#define FAN_WORKERS 7
#define FAN_ITEMS 2000

typedef struct fan {
  coro_chan *in, *out;
  int live_workers;
} fan;

static void *fan_worker(void *arg) {
  fan *f = arg;
  int v, st;
  CORO_CHAN_FOREACH(st, f->in, &v) {
    long long sq = (long long)v * v;
    CHECK_EQ(coro_chan_send(f->out, &sq), 0);
  }
  CHECK_ERR(st, CORO_EPIPE);
  if (--f->live_workers == 0) CHECK_EQ(coro_chan_close(f->out), 0);
  return NULL;
}

static void *fan_source(void *arg) {
  fan *f = arg;
  for (int i = 0; i < FAN_ITEMS; i++) CHECK_EQ(coro_chan_send(f->in, &i), 0);
  CHECK_EQ(coro_chan_close(f->in), 0);
  return NULL;
}

static void *fan_main(void *arg) {
  (void)arg;
  fan f;
  CHECK_EQ(coro_chan_new(&f.in, sizeof(int), 0), 0);
  CHECK_EQ(coro_chan_new(&f.out, sizeof(long long), 4), 0);
  f.live_workers = FAN_WORKERS;
  CHECK_EQ(coro_spawn(NULL, fan_source, &f), 0);
  for (int i = 0; i < FAN_WORKERS; i++) CHECK_EQ(coro_spawn(NULL, fan_worker, &f), 0);
  unsigned char *seen = calloc(FAN_ITEMS, 1);
  long long sq;
  int st, n = 0;
  CORO_CHAN_FOREACH(st, f.out, &sq) {
    long long r = 0;
    while ((r + 1) * (r + 1) <= sq) r++;
    CHECK(r * r == sq && r < FAN_ITEMS);
    if (r < FAN_ITEMS) seen[r]++;
    n++;
  }
  CHECK_ERR(st, CORO_EPIPE);
  CHECK_EQ(n, FAN_ITEMS);
  for (int i = 0; i < FAN_ITEMS; i++) CHECK_EQ(seen[i], 1);
  free(seen);
  coro_chan_free(f.in);
  coro_chan_free(f.out);
  return NULL;
}

static void test_chan_fan_in_fan_out(void **state) {
  (void)state;
  assert_run_ok(fan_main);
}

/* ==== other threads ================================================================ */

#define TH_THREADS 3
#define TH_ITEMS 3000

typedef struct th {
  coro_chan *c;
  int id;
  int r;
  int n;
  unsigned char *seen;
  atomic_int finished;
} th;

static void *thread_producer(void *arg) {
  th *t = arg;
  t->r = 0;
  for (int i = 0; i < TH_ITEMS; i++) {
    int v = t->id * TH_ITEMS + i;
    int r = coro_chan_send_blocking(t->c, &v, CORO_FOREVER);
    if (r != 0) {
      t->r = r;
      break;
    }
  }
  atomic_store(&t->finished, 1);
  return NULL;
}

static void *threads_in_main(void *arg) {
  size_t cap = (size_t)(uintptr_t)arg;
  coro_chan *c;
  CHECK_EQ(coro_chan_new(&c, sizeof(int), cap), 0);
  CHECK_EQ(coro_chan_share(c), 0);
  CHECK_EQ(coro_chan_share(c), 0); /* idempotent */
  int v = 0;
  CHECK_ERR(coro_chan_send_blocking(c, &v, 0), CORO_EDEADLK);
  CHECK_ERR(coro_chan_recv_blocking(c, &v, 10), CORO_EDEADLK);
  pthread_t tid[TH_THREADS];
  th t[TH_THREADS];
  for (int i = 0; i < TH_THREADS; i++) {
    t[i].c = c;
    t[i].id = i;
    t[i].r = 1;
    atomic_init(&t[i].finished, 0);
    pthread_create(&tid[i], NULL, thread_producer, &t[i]);
  }
  unsigned char *seen = calloc(TH_THREADS * TH_ITEMS, 1);
  int last[TH_THREADS];
  for (int i = 0; i < TH_THREADS; i++) last[i] = -1;
  for (int k = 0; k < TH_THREADS * TH_ITEMS; k++) {
    CHECK_EQ(coro_chan_recv(c, &v), 0);
    if (v < 0 || v >= TH_THREADS * TH_ITEMS) {
      CHECK(0);
      break;
    }
    seen[v]++;
    /* Each thread's values arrive in its order. */
    CHECK_GT(v % TH_ITEMS, last[v / TH_ITEMS]);
    last[v / TH_ITEMS] = v % TH_ITEMS;
  }
  for (int i = 0; i < TH_THREADS * TH_ITEMS; i++) CHECK_EQ(seen[i], 1);
  free(seen);
  for (int i = 0; i < TH_THREADS; i++) {
    wait_flag(&t[i].finished);
    pthread_join(tid[i], NULL);
    CHECK_EQ(t[i].r, 0);
  }
  CHECK_ERR(coro_chan_try_recv(c, &v), CORO_EAGAIN);
  coro_chan_free(c);
  return NULL;
}

static void test_chan_threads_send(void **state) {
  (void)state;
  assert_coro_ok(coro_run(threads_in_main, (void *)(uintptr_t)0, NULL));
  assert_checks_passed();
  assert_coro_ok(coro_run(threads_in_main, (void *)(uintptr_t)16, NULL));
  assert_checks_passed();
}

/* Threads receive (aiochan's to_iterable idea) until the loop closes the
 * channel; one thread closes another channel from outside. */
static void *thread_consumer(void *arg) {
  th *t = arg;
  int v, r;
  t->n = 0;
  while ((r = coro_chan_recv_blocking(t->c, &v, CORO_FOREVER)) == 0) {
    __atomic_fetch_add(&t->seen[v], 1, __ATOMIC_RELAXED);
    t->n++;
  }
  t->r = r;
  atomic_store(&t->finished, 1);
  return NULL;
}

typedef struct closer_arg {
  coro_chan *c;
  int r1, r2;
  atomic_int finished;
} closer_arg;

static void *thread_closer(void *arg) {
  closer_arg *a = arg;
  a->r1 = coro_chan_close(a->c);
  a->r2 = coro_chan_close(a->c);
  atomic_store(&a->finished, 1);
  return NULL;
}

static void *threads_out_main(void *arg) {
  (void)arg;
  coro_chan *c;
  CHECK_EQ(coro_chan_new(&c, sizeof(int), 0), 0);
  CHECK_EQ(coro_chan_share(c), 0);
  unsigned char *seen = calloc(TH_ITEMS, 1);
  pthread_t tid[TH_THREADS];
  th t[TH_THREADS];
  for (int i = 0; i < TH_THREADS; i++) {
    t[i].c = c;
    t[i].seen = seen;
    atomic_init(&t[i].finished, 0);
    pthread_create(&tid[i], NULL, thread_consumer, &t[i]);
  }
  for (int i = 0; i < TH_ITEMS; i++) CHECK_EQ(coro_chan_send(c, &i), 0);
  CHECK_EQ(coro_chan_close(c), 0);
  int total = 0;
  for (int i = 0; i < TH_THREADS; i++) {
    wait_flag(&t[i].finished);
    pthread_join(tid[i], NULL);
    CHECK_ERR(t[i].r, CORO_EPIPE);
    total += t[i].n;
  }
  CHECK_EQ(total, TH_ITEMS);
  for (int i = 0; i < TH_ITEMS; i++) CHECK_EQ(seen[i], 1);
  free(seen);
  coro_chan_free(c);
  /* Close from another thread wakes a waiting task. */
  CHECK_EQ(coro_chan_new(&c, sizeof(int), 0), 0);
  CHECK_EQ(coro_chan_share(c), 0);
  closer_arg ca = {c, 1, 1, 0};
  pthread_t ct;
  pthread_create(&ct, NULL, thread_closer, &ca);
  int v;
  CHECK_ERR(coro_chan_recv(c, &v), CORO_EPIPE);
  wait_flag(&ca.finished);
  pthread_join(ct, NULL);
  CHECK_EQ(ca.r1, 0);
  CHECK_EQ(ca.r2, 0);
  coro_chan_free(c);
  return NULL;
}

static void test_chan_threads_recv(void **state) {
  (void)state;
  assert_run_ok(threads_out_main);
}

/* A blocking receive times out; a value arriving later is not lost. */
typedef struct tmo_arg {
  coro_chan *c;
  int r1, r2, v;
  int64_t waited;
  atomic_int finished;
} tmo_arg;

static void *thread_timeout(void *arg) {
  tmo_arg *a = arg;
  int64_t t0 = coro_test_now_ms();
  a->r1 = coro_chan_recv_blocking(a->c, &a->v, 30);
  a->waited = coro_test_now_ms() - t0;
  a->v = -1;
  a->r2 = coro_chan_recv_blocking(a->c, &a->v, 10000);
  atomic_store(&a->finished, 1);
  return NULL;
}

static void *thread_timeout_main(void *arg) {
  (void)arg;
  tmo_arg a;
  memset(&a, 0, sizeof(a));
  CHECK_EQ(coro_chan_new(&a.c, sizeof(int), 0), 0);
  CHECK_EQ(coro_chan_share(a.c), 0);
  pthread_t tid;
  pthread_create(&tid, NULL, thread_timeout, &a);
  CHECK_EQ(coro_sleep(150), 0);
  int v = 9;
  CHECK_EQ(coro_chan_send(a.c, &v), 0);
  wait_flag(&a.finished);
  pthread_join(tid, NULL);
  CHECK_ERR(a.r1, CORO_ETIMEDOUT);
  CHECK_GE(a.waited, 25);
  CHECK_EQ(a.r2, 0);
  CHECK_EQ(a.v, 9);
  CHECK_EQ(coro_chan_close(a.c), 0);
  coro_chan_free(a.c);
  return NULL;
}

static void test_chan_thread_timeout(void **state) {
  (void)state;
  assert_run_ok(thread_timeout_main);
}

/* After the channel's loop has ended: -EPIPE, from its own thread and from
 * another one; the channel can still be freed. */
static coro_chan *kept;

static void *keep_main(void *arg) {
  (void)arg;
  CHECK_EQ(coro_chan_new(&kept, sizeof(int), 2), 0);
  int v = 1;
  CHECK_EQ(coro_chan_send(kept, &v), 0);
  return NULL;
}

static void *late_thread(void *arg) {
  int *r = arg;
  int v = 0;
  r[0] = coro_chan_send_blocking(kept, &v, CORO_FOREVER);
  r[1] = coro_chan_recv_blocking(kept, &v, 0);
  r[2] = coro_chan_close(kept);
  return NULL;
}

static void test_chan_loop_ended(void **state) {
  (void)state;
  assert_run_ok(keep_main);
  int v = 0;
  assert_coro_err(coro_chan_send_blocking(kept, &v, 0), CORO_EPIPE);
  assert_coro_err(coro_chan_close(kept), CORO_EPIPE);
  int r[3] = {1, 1, 1};
  pthread_t tid;
  pthread_create(&tid, NULL, late_thread, r);
  pthread_join(tid, NULL);
  assert_coro_err(r[0], CORO_EPIPE);
  assert_coro_err(r[1], CORO_EPIPE);
  assert_coro_err(r[2], CORO_EPIPE);
  coro_chan_free(kept);
  kept = NULL;
}

/* ==== two loops ======================================================================== */

/* Loop A owns a channel; a thread runs loop B whose tasks send through it
 * (suspending only themselves: a ticker of loop B keeps running), and one
 * task of B receives and is cancelled while it waits (nothing lost). */
#define LB_SENDERS 4
#define LB_ITEMS 1500

typedef struct lb {
  coro_chan *c;       /* owned by loop A */
  coro_chan *back;    /* owned by loop A: B's receiver waits here */
  int sent_ok;
  int ticks;
  int ticking;
  int recv_r, recv_after;
  int close_r;
  int eperm_r;
} lb;

static lb g_lb;

typedef struct lb_task {
  int id;
  int r;
} lb_task;

static void *lb_sender(void *arg) {
  lb_task *t = arg;
  t->r = 0;
  for (int i = 0; i < LB_ITEMS; i++) {
    int v = t->id * LB_ITEMS + i;
    int r = coro_chan_send_blocking(g_lb.c, &v, CORO_FOREVER);
    if (r != 0) {
      t->r = r;
      break;
    }
  }
  return NULL;
}

static void *lb_ticker(void *arg) {
  (void)arg;
  while (g_lb.ticking) {
    g_lb.ticks++;
    if (coro_sleep(1) != 0) break;
  }
  return NULL;
}

static void *lb_receiver(void *arg) {
  (void)arg;
  int v;
  g_lb.recv_r = coro_chan_recv_blocking(g_lb.back, &v, CORO_FOREVER);
  return NULL;
}

static void eperm_cb(coro_future *f, void *data) {
  (void)f;
  (void)data;
  int v = 0;
  g_lb.eperm_r = coro_chan_send_blocking(g_lb.c, &v, 0);
}

static void *loop_b_main(void *arg) {
  (void)arg;
  g_lb.ticking = 1;
  coro_future *tick = spawn(lb_ticker, NULL);
  /* Outside a task on loop B's thread: refused. */
  coro_future *p;
  CHECK_EQ(coro_future_new(&p), 0);
  CHECK_EQ(coro_future_on_done(p, eperm_cb, NULL), 0);
  CHECK_EQ(coro_future_resolve(p, NULL), 0);
  coro_future_release(p);
  /* A receiver of B waiting on A's channel, then cancelled. */
  coro_future *rf = spawn(lb_receiver, NULL);
  CHECK_EQ(coro_sleep(20), 0);
  CHECK_EQ(coro_cancel(rf), 0);
  CHECK_EQ(join(rf), 0);
  CHECK_ERR(g_lb.recv_r, CORO_ECANCELED);
  lb_task t[LB_SENDERS];
  coro_future *fs[LB_SENDERS];
  for (int i = 0; i < LB_SENDERS; i++) {
    t[i].id = i;
    fs[i] = spawn(lb_sender, &t[i]);
  }
  for (int i = 0; i < LB_SENDERS; i++) {
    CHECK_EQ(join(fs[i]), 0);
    CHECK_EQ(t[i].r, 0);
  }
  g_lb.close_r = coro_chan_close(g_lb.c);
  g_lb.ticking = 0;
  CHECK_EQ(join(tick), 0);
  return NULL;
}

static atomic_int b_finished;

static void *loop_b_thread(void *arg) {
  int *r = arg;
  *r = coro_run(loop_b_main, NULL, NULL);
  atomic_store(&b_finished, 1);
  return NULL;
}

static void *loop_a_main(void *arg) {
  (void)arg;
  memset(&g_lb, 0, sizeof(g_lb));
  g_lb.eperm_r = 1;
  CHECK_EQ(coro_chan_new(&g_lb.c, sizeof(int), 0), 0);
  CHECK_EQ(coro_chan_new(&g_lb.back, sizeof(int), 0), 0);
  CHECK_EQ(coro_chan_share(g_lb.c), 0);
  CHECK_EQ(coro_chan_share(g_lb.back), 0);
  int b_status = 1;
  atomic_store(&b_finished, 0);
  pthread_t tid;
  pthread_create(&tid, NULL, loop_b_thread, &b_status);
  unsigned char *seen = calloc(LB_SENDERS * LB_ITEMS, 1);
  int v, st, n = 0;
  CORO_CHAN_FOREACH(st, g_lb.c, &v) {
    if (v >= 0 && v < LB_SENDERS * LB_ITEMS) seen[v]++;
    n++;
    if (n == 10) coro_sleep(5); /* let B's senders pile up */
  }
  CHECK_ERR(st, CORO_EPIPE);
  CHECK_EQ(n, LB_SENDERS * LB_ITEMS);
  for (int i = 0; i < LB_SENDERS * LB_ITEMS; i++) CHECK_EQ(seen[i], 1);
  free(seen);
  /* B's cancelled receiver took nothing: a value sent now has no taker. */
  v = 5;
  CHECK_ERR(coro_chan_try_send(g_lb.back, &v), CORO_EAGAIN);
  wait_flag(&b_finished);
  pthread_join(tid, NULL);
  CHECK_EQ(b_status, 0);
  CHECK_EQ(g_lb.close_r, 0);
  CHECK_ERR(g_lb.eperm_r, CORO_EPERM);
  CHECK_GT(g_lb.ticks, 0);
  CHECK_EQ(coro_chan_close(g_lb.back), 0);
  coro_chan_free(g_lb.c);
  coro_chan_free(g_lb.back);
  return NULL;
}

static void test_chan_two_loops(void **state) {
  (void)state;
  assert_run_ok(loop_a_main);
}

/* A task of loop B blocked on A's channel when loop A shuts down: -EPIPE.
 * Loop A's main returns while B's receive waits in a proxy task. */
static coro_chan *shut_c;
static int shut_r;
static pthread_mutex_t shut_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t shut_cv = PTHREAD_COND_INITIALIZER;
static int shut_phase;

static void *shut_b_main(void *arg) {
  (void)arg;
  int v;
  shut_r = coro_chan_recv_blocking(shut_c, &v, CORO_FOREVER);
  return NULL;
}

static void *shut_b_thread(void *arg) {
  (void)arg;
  pthread_mutex_lock(&shut_mu);
  while (shut_phase == 0) pthread_cond_wait(&shut_cv, &shut_mu);
  pthread_mutex_unlock(&shut_mu);
  coro_run(shut_b_main, NULL, NULL);
  return NULL;
}

static void *shut_a_main(void *arg) {
  (void)arg;
  CHECK_EQ(coro_chan_new(&shut_c, sizeof(int), 0), 0);
  pthread_mutex_lock(&shut_mu);
  shut_phase = 1;
  pthread_cond_signal(&shut_cv);
  pthread_mutex_unlock(&shut_mu);
  /* Give B's receive time to arrive and wait in a proxy task; then end. */
  CHECK_EQ(coro_sleep(200), 0);
  CHECK_EQ(coro_chan_len(shut_c), 0);
  return NULL;
}

static void test_chan_remote_loop_shutdown(void **state) {
  (void)state;
  shut_r = 1;
  shut_phase = 0;
  pthread_t tid;
  pthread_create(&tid, NULL, shut_b_thread, NULL);
  /* A's main returns while B's receive waits (or before it arrived): the
   * proxy is cancelled at A's shutdown, or the post refused: -EPIPE. */
  assert_run_ok(shut_a_main);
  pthread_join(tid, NULL);
  assert_coro_err(shut_r, CORO_EPIPE);
  coro_chan_free(shut_c);
}

/* ==== sends from other threads into a buffered channel (credit) ================== */

/* A send from another thread into a buffered channel mostly stages the value
 * under credit its loop has granted (no round trip); once the credit is
 * spent it takes the round trip. Senders number their values (sender id *
 * CR_STRIDE + i); the receiving task checks that each sender's values
 * arrive in order with none missing or repeated. */
#define CR_STRIDE (1 << 24)
#define CR_ITEMS 50000 /* per sender: 100,000 in all */

typedef struct cr_sender {
  coro_chan *c;
  int id;
  int n;         /* values to send; -1: until a send fails */
  int ok;        /* sends that returned 0 */
  int r;         /* the first failure, 0 if none */
  int after;     /* one more send after the failure */
  int loop_r;    /* coro_run of a sender loop */
  atomic_int finished;
} cr_sender;

static void cr_init(cr_sender *s, coro_chan *c, int id, int n) {
  memset(s, 0, sizeof(*s));
  s->c = c;
  s->id = id;
  s->n = n;
  s->after = 1;
  s->loop_r = 1;
  atomic_init(&s->finished, 0);
}

static void cr_send_all(cr_sender *s) {
  for (int i = 0; s->n < 0 || i < s->n; i++) {
    int v = s->id * CR_STRIDE + i;
    int r = coro_chan_send_blocking(s->c, &v, CORO_FOREVER);
    if (r != 0) {
      s->r = r;
      s->after = coro_chan_send_blocking(s->c, &v, 0);
      break;
    }
    s->ok++;
  }
}

static void *cr_thread(void *arg) {
  cr_sender *s = arg;
  cr_send_all(s);
  atomic_store(&s->finished, 1);
  return NULL;
}

/* A loop whose main task sends (each sender loop on its own thread). */
static void *cr_loop_main(void *arg) {
  cr_send_all(arg);
  return NULL;
}

static void *cr_loop_thread(void *arg) {
  cr_sender *s = arg;
  s->loop_r = coro_run(cr_loop_main, s, NULL);
  atomic_store(&s->finished, 1);
  return NULL;
}

/* Receive n values (n < 0: until -EPIPE) of senders 0..k-1, next[id] being
 * the number of each sender's values received so far; every `pause`
 * values (0: never) sleep a little, so that senders find the channel full
 * and take the round trip. Returns how many were received. */
static int cr_receive(coro_chan *c, int n, int *next, int k, int pause) {
  int got = 0;
  while (n < 0 || got < n) {
    int v = -1;
    int r = coro_chan_recv(c, &v);
    if (r != 0) {
      CHECK_ERR(r, CORO_EPIPE);
      break;
    }
    int id = v / CR_STRIDE, i = v % CR_STRIDE;
    if (id < 0 || id >= k) {
      CHECK(0);
      break;
    }
    CHECK_EQ(i, next[id]); /* in its sender's order, nothing lost or twice */
    if (i != next[id]) break;
    next[id]++;
    got++;
    if (pause > 0 && got % pause == 0) coro_sleep(2);
  }
  return got;
}

/* Two plain threads, 100,000 values through a channel of capacity 64. */
static void *credit_threads_main(void *arg) {
  (void)arg;
  coro_chan *c;
  CHECK_EQ(coro_chan_new(&c, sizeof(int), 64), 0);
  CHECK_EQ(coro_chan_share(c), 0);
  cr_sender s[2];
  pthread_t tid[2];
  for (int i = 0; i < 2; i++) {
    cr_init(&s[i], c, i, CR_ITEMS);
    pthread_create(&tid[i], NULL, cr_thread, &s[i]);
  }
  int next[2] = {0, 0};
  CHECK_EQ(cr_receive(c, 2 * CR_ITEMS, next, 2, 20000), 2 * CR_ITEMS);
  CHECK_EQ(next[0], CR_ITEMS);
  CHECK_EQ(next[1], CR_ITEMS);
  CHECK_EQ(coro_chan_close(c), 0); /* after a failure: the senders end */
  for (int i = 0; i < 2; i++) {
    wait_flag(&s[i].finished);
    pthread_join(tid[i], NULL);
    CHECK_EQ(s[i].r, 0);
    CHECK_EQ(s[i].ok, CR_ITEMS);
  }
  int v;
  CHECK_ERR(coro_chan_try_recv(c, &v), CORO_EPIPE); /* nothing more */
  coro_chan_free(c);
  return NULL;
}

static void test_chan_credit_threads(void **state) {
  (void)state;
  assert_run_ok(credit_threads_main);
}

/* The same from the main tasks of two other loops, each loop on its own
 * thread (a task's send does not suspend while there is credit). */
static void *credit_loops_main(void *arg) {
  (void)arg;
  coro_chan *c;
  CHECK_EQ(coro_chan_new(&c, sizeof(int), 64), 0);
  CHECK_EQ(coro_chan_share(c), 0);
  cr_sender s[2];
  pthread_t tid[2];
  for (int i = 0; i < 2; i++) {
    cr_init(&s[i], c, i, CR_ITEMS);
    pthread_create(&tid[i], NULL, cr_loop_thread, &s[i]);
  }
  int next[2] = {0, 0};
  CHECK_EQ(cr_receive(c, 2 * CR_ITEMS, next, 2, 20000), 2 * CR_ITEMS);
  CHECK_EQ(coro_chan_close(c), 0); /* after a failure: the senders end */
  for (int i = 0; i < 2; i++) {
    wait_flag(&s[i].finished);
    pthread_join(tid[i], NULL);
    CHECK_EQ(s[i].loop_r, 0);
    CHECK_EQ(s[i].r, 0);
    CHECK_EQ(s[i].ok, CR_ITEMS);
  }
  int v;
  CHECK_ERR(coro_chan_try_recv(c, &v), CORO_EPIPE); /* nothing more */
  coro_chan_free(c);
  return NULL;
}

static void test_chan_credit_loops(void **state) {
  (void)state;
  assert_run_ok(credit_loops_main);
}

/* Closed while two threads send as fast as they can: every send that
 * returned 0 is received (the staged ones too), every later one and the
 * one after it fail with -EPIPE. */
static void *credit_close_main(void *arg) {
  (void)arg;
  for (int round = 0; round < 4; round++) {
    coro_chan *c;
    CHECK_EQ(coro_chan_new(&c, sizeof(int), 32), 0);
    CHECK_EQ(coro_chan_share(c), 0);
    cr_sender s[2];
    pthread_t tid[2];
    for (int i = 0; i < 2; i++) {
      cr_init(&s[i], c, i, -1);
      pthread_create(&tid[i], NULL, cr_thread, &s[i]);
    }
    int next[2] = {0, 0};
    CHECK_EQ(cr_receive(c, 1000 + 700 * round, next, 2, 0), 1000 + 700 * round);
    if (round % 2 == 1) {
      /* Hold the loop a moment (no yield): the senders stage what credit
       * they have, and the close finds it staged. */
      int64_t t0 = coro_test_now_ms();
      while (coro_test_now_ms() - t0 < 3) {
      }
    }
    CHECK_EQ(coro_chan_close(c), 0);
    cr_receive(c, -1, next, 2, 0); /* what was sent before the close */
    for (int i = 0; i < 2; i++) {
      wait_flag(&s[i].finished);
      pthread_join(tid[i], NULL);
      CHECK_ERR(s[i].r, CORO_EPIPE);
      CHECK_ERR(s[i].after, CORO_EPIPE);
      CHECK_EQ(next[i], s[i].ok);
    }
    coro_chan_free(c);
  }
  return NULL;
}

static void test_chan_credit_close(void **state) {
  (void)state;
  assert_run_ok(credit_close_main);
}

/* The loop ends (its main returns, the channel open and not shared) while a
 * thread keeps sending: the thread's sends fail with -EPIPE from then on,
 * nothing hangs, and every send that returned 0 was received or is still
 * buffered when the channel is freed. Runs in a fresh program in a child
 * with a time limit, since a bug here would hang. */
static coro_chan *le_c;
static cr_sender le_s;
static pthread_t le_tid;
static int le_got;

static void *le_main(void *arg) {
  int want = (int)(intptr_t)arg;
  CHECK_EQ(coro_chan_new(&le_c, sizeof(int), 16), 0);
  cr_init(&le_s, le_c, 0, -1);
  pthread_create(&le_tid, NULL, cr_thread, &le_s);
  /* Polled: the channel is not shared, so a task waiting on it that only
   * the thread can serve would be judged stuck. */
  int got = 0, v;
  while (got < want) {
    int r = coro_chan_try_recv(le_c, &v);
    if (r == CORO_EAGAIN) {
      coro_sleep(1);
      continue;
    }
    CHECK_EQ(r, 0);
    CHECK_EQ(v, got);
    if (r != 0 || v != got) break;
    got++;
  }
  le_got = got;
  return NULL; /* the loop ends while the thread sends */
}

static int loop_end_role(void) {
  coro_test_setup(NULL); /* the counting allocator */
  long before = coro_test_live_allocs();
  for (int round = 0; round < 5; round++) {
    le_got = -1;
    int r = coro_test_child_run(le_main, (void *)(intptr_t)(200 + 300 * round));
    pthread_join(le_tid, NULL);
    if (r != 0) return r;
    if (le_s.r != CORO_EPIPE || le_s.after != CORO_EPIPE) {
      fprintf(stderr, "sender: %s, then %s\n", coro_err_name(le_s.r),
              coro_err_name(le_s.after));
      return 2;
    }
    if ((size_t)le_s.ok != (size_t)le_got + coro_chan_len(le_c)) {
      fprintf(stderr, "sent %d, received %d, left %zu\n", le_s.ok, le_got,
              coro_chan_len(le_c));
      return 3;
    }
    coro_chan_free(le_c);
  }
  if (coro_test_live_allocs() != before) return 5;
  return 0;
}

static void loop_end_child(void *arg) {
  (void)arg;
  coro_test_exec_self("credit_loop_end", NULL);
}

static void test_chan_credit_loop_end(void **state) {
  (void)state;
  int st = coro_test_in_child(loop_end_child, NULL, 30000);
  assert_true(st >= 0 && WIFEXITED(st));
  assert_int_equal(WEXITSTATUS(st), 0);
}

/* A send with timeout 0 into a full channel fails with -ETIMEDOUT after its
 * round trip: full of local values (no credit ever given), and full after
 * the credit was spent (the first send took the round trip and got credit
 * for the other three slots; the fifth finds no credit and no room). */
typedef struct tz_arg {
  coro_chan *c;
  int r[5];
  atomic_int finished;
} tz_arg;

static void *tz_thread(void *arg) {
  tz_arg *a = arg;
  for (int i = 0; i < 5; i++) {
    int v = 10 + i;
    a->r[i] = coro_chan_send_blocking(a->c, &v, 0);
  }
  atomic_store(&a->finished, 1);
  return NULL;
}

static void *credit_timeout_main(void *arg) {
  (void)arg;
  tz_arg a;
  memset(&a, 0, sizeof(a));
  CHECK_EQ(coro_chan_new(&a.c, sizeof(int), 4), 0);
  for (int i = 0; i < 4; i++) CHECK_EQ(coro_chan_try_send(a.c, &i), 0);
  atomic_init(&a.finished, 0);
  pthread_t tid;
  pthread_create(&tid, NULL, tz_thread, &a);
  wait_flag(&a.finished);
  pthread_join(tid, NULL);
  for (int i = 0; i < 5; i++) CHECK_ERR(a.r[i], CORO_ETIMEDOUT);
  int v;
  for (int i = 0; i < 4; i++) {
    CHECK_EQ(coro_chan_try_recv(a.c, &v), 0);
    CHECK_EQ(v, i);
  }
  /* Empty, nobody receiving: 10 takes the round trip and credit comes
   * back with it, 11..13 are staged, 14 finds the channel full. */
  atomic_store(&a.finished, 0);
  pthread_create(&tid, NULL, tz_thread, &a);
  wait_flag(&a.finished);
  pthread_join(tid, NULL);
  for (int i = 0; i < 4; i++) CHECK_EQ(a.r[i], 0);
  CHECK_ERR(a.r[4], CORO_ETIMEDOUT);
  coro_sleep(1); /* the staged values are delivered */
  for (int i = 0; i < 4; i++) {
    CHECK_EQ(coro_chan_try_recv(a.c, &v), 0);
    CHECK_EQ(v, 10 + i);
  }
  CHECK_ERR(coro_chan_try_recv(a.c, &v), CORO_EAGAIN);
  coro_chan_free(a.c);
  return NULL;
}

static void test_chan_credit_timeout(void **state) {
  (void)state;
  assert_run_ok(credit_timeout_main);
}

/* Credit never stands in a local sender's way: after a thread's send left
 * the other three slots to remote senders, local sends still fill the
 * ring (the unused credit is taken back). Local senders that then wait
 * keep their place: a later send of a thread goes in after them. */
typedef struct one_send {
  coro_chan *c;
  int v, r;
  atomic_int finished;
} one_send;

static void *one_send_thread(void *arg) {
  one_send *o = arg;
  o->r = coro_chan_send_blocking(o->c, &o->v, CORO_FOREVER);
  atomic_store(&o->finished, 1);
  return NULL;
}

static void *credit_local_fifo_main(void *arg) {
  (void)arg;
  coro_chan *c;
  CHECK_EQ(coro_chan_new(&c, sizeof(int), 4), 0);
  CHECK_EQ(coro_chan_share(c), 0);
  one_send a = {c, 100, 1, 0};
  pthread_t ta;
  pthread_create(&ta, NULL, one_send_thread, &a);
  wait_flag(&a.finished);
  pthread_join(ta, NULL);
  CHECK_EQ(a.r, 0);
  CHECK_EQ(coro_chan_len(c), 1);
  int ok = 1;
  for (int v = 1; v <= 3; v++) {
    int r = coro_chan_try_send(c, &v);
    CHECK_EQ(r, 0);
    ok &= r == 0;
  }
  int v = 9;
  CHECK_ERR(coro_chan_try_send(c, &v), CORO_EAGAIN);
  if (!ok) { /* what follows would wait for ever */
    coro_chan_free(c);
    return NULL;
  }
  op s4, s5;
  op_init(&s4, c, 4);
  op_init(&s5, c, 5);
  coro_future *f4 = spawn(sender, &s4);
  coro_future *f5 = spawn(sender, &s5);
  settle();
  CHECK_EQ(s4.done + s5.done, 0);
  one_send b = {c, 200, 1, 0};
  pthread_t tb;
  pthread_create(&tb, NULL, one_send_thread, &b);
  coro_sleep(20); /* b's send is usually waiting behind 4 and 5 by now */
  int want[7] = {100, 1, 2, 3, 4, 5, 200};
  for (int i = 0; i < 7; i++) {
    CHECK_EQ(coro_chan_recv(c, &v), 0);
    CHECK_EQ(v, want[i]);
  }
  CHECK_EQ(join(f4), 0);
  CHECK_EQ(join(f5), 0);
  CHECK_EQ(s4.r, 0);
  CHECK_EQ(s5.r, 0);
  wait_flag(&b.finished);
  pthread_join(tb, NULL);
  CHECK_EQ(b.r, 0);
  CHECK_ERR(coro_chan_try_recv(c, &v), CORO_EAGAIN);
  coro_chan_free(c);
  return NULL;
}

static void test_chan_credit_local_fifo(void **state) {
  (void)state;
  assert_run_ok(credit_local_fifo_main);
}

/* A staged send returns without the loop's help: the loop's task spins
 * (the loop runs nothing else meanwhile) until the thread's sends have
 * returned. The values are not in the ring yet; a close delivers them
 * first; freeing the channel while the drain message is still queued
 * leaves the freeing to that message (the fixture checks nothing leaks).
 * Also for values of size 0. */
typedef struct spin_arg {
  coro_chan *c;
  int r[3];
  atomic_int finished;
} spin_arg;

static void *spin_thread(void *arg) {
  spin_arg *a = arg;
  for (int i = 0; i < 3; i++) {
    int v = 20 + i;
    a->r[i] = coro_chan_send_blocking(a->c, &v, CORO_FOREVER);
  }
  atomic_store(&a->finished, 1);
  return NULL;
}

static void *credit_staged_main(void *arg) {
  (void)arg;
  for (size_t esz = 0; esz <= sizeof(int); esz += sizeof(int)) {
    spin_arg a;
    memset(&a, 0, sizeof(a));
    atomic_init(&a.finished, 0);
    CHECK_EQ(coro_chan_new(&a.c, esz, 8), 0);
    CHECK_EQ(coro_chan_share(a.c), 0);
    one_send first = {a.c, 1, 1, 0};
    pthread_t tid;
    pthread_create(&tid, NULL, one_send_thread, &first);
    int v = -1;
    CHECK_EQ(coro_chan_recv(a.c, &v), 0); /* a round trip, then credit */
    if (esz > 0) CHECK_EQ(v, 1);
    wait_flag(&first.finished);
    pthread_join(tid, NULL);
    pthread_create(&tid, NULL, spin_thread, &a);
    int64_t t0 = coro_test_now_ms();
    while (!atomic_load(&a.finished) && coro_test_now_ms() - t0 < 10000) {
    }
    CHECK(atomic_load(&a.finished)); /* not waiting for this loop */
    pthread_join(tid, NULL);
    for (int i = 0; i < 3; i++) CHECK_EQ(a.r[i], 0);
    CHECK_EQ(coro_chan_len(a.c), 0); /* staged, not delivered yet */
    CHECK_EQ(coro_chan_close(a.c), 0);
    CHECK_EQ(coro_chan_len(a.c), 3);
    for (int i = 0; i < 3; i++) {
      CHECK_EQ(coro_chan_try_recv(a.c, &v), 0);
      if (esz > 0) CHECK_EQ(v, 20 + i);
    }
    CHECK_ERR(coro_chan_try_recv(a.c, &v), CORO_EPIPE);
    coro_chan_free(a.c); /* the drain message is still queued */
    coro_sleep(1);
  }
  return NULL;
}

static void test_chan_credit_staged(void **state) {
  (void)state;
  assert_run_ok(credit_staged_main);
}

/* A task of another loop whose send takes the round trip into a full
 * buffered channel is cancelled as before: -ECANCELED, nothing sent; the
 * loop's later sends arrive in order. */
typedef struct rc_arg {
  coro_chan *c;
  int cancel_r, r[3];
  int loop_r;
  atomic_int cancelled, finished;
} rc_arg;

static void *rc_blocked(void *arg) {
  rc_arg *a = arg;
  int v = 99;
  a->cancel_r = coro_chan_send_blocking(a->c, &v, CORO_FOREVER);
  return NULL;
}

static void *rc_b_main(void *arg) {
  rc_arg *a = arg;
  coro_future *f = spawn(rc_blocked, a);
  coro_sleep(30); /* usually waiting on the channel's loop by now */
  coro_cancel(f);
  coro_await(f, NULL);
  coro_future_release(f);
  atomic_store(&a->cancelled, 1);
  for (int i = 0; i < 3; i++) {
    int v = 10 + i;
    a->r[i] = coro_chan_send_blocking(a->c, &v, CORO_FOREVER);
  }
  return NULL;
}

static void *rc_b_thread(void *arg) {
  rc_arg *a = arg;
  a->loop_r = coro_run(rc_b_main, a, NULL);
  atomic_store(&a->finished, 1);
  return NULL;
}

static void *credit_remote_cancel_main(void *arg) {
  (void)arg;
  rc_arg a;
  memset(&a, 0, sizeof(a));
  a.cancel_r = 1;
  atomic_init(&a.cancelled, 0);
  atomic_init(&a.finished, 0);
  CHECK_EQ(coro_chan_new(&a.c, sizeof(int), 2), 0);
  CHECK_EQ(coro_chan_share(a.c), 0);
  for (int v = 1; v <= 2; v++) CHECK_EQ(coro_chan_try_send(a.c, &v), 0);
  pthread_t tid;
  pthread_create(&tid, NULL, rc_b_thread, &a);
  wait_flag(&a.cancelled);
  CHECK_ERR(a.cancel_r, CORO_ECANCELED);
  CHECK_EQ(coro_chan_len(a.c), 2);
  int want[5] = {1, 2, 10, 11, 12}, v;
  for (int i = 0; i < 5; i++) {
    CHECK_EQ(coro_chan_recv(a.c, &v), 0);
    CHECK_EQ(v, want[i]);
  }
  wait_flag(&a.finished);
  pthread_join(tid, NULL);
  CHECK_EQ(a.loop_r, 0);
  for (int i = 0; i < 3; i++) CHECK_EQ(a.r[i], 0);
  CHECK_ERR(coro_chan_try_recv(a.c, &v), CORO_EAGAIN);
  coro_chan_free(a.c);
  return NULL;
}

static void test_chan_credit_remote_cancel(void **state) {
  (void)state;
  assert_run_ok(credit_remote_cancel_main);
}

/* ==== memory ======================================================================= */

static void *enomem_main(void *arg) {
  (void)arg;
  coro_chan *c = NULL;
  coro_test_fail_alloc_after(1);
  CHECK_ERR(coro_chan_new(&c, sizeof(int), 4), CORO_ENOMEM);
  CHECK(c == NULL);
  coro_test_fail_alloc_after(2); /* the buffer */
  CHECK_ERR(coro_chan_new(&c, sizeof(int), 4), CORO_ENOMEM);
  CHECK(c == NULL);
  coro_test_fail_alloc_after(0);
  CHECK_EQ(coro_chan_new(&c, sizeof(int), 4), 0);
  coro_chan_free(c);
  /* A receiver handed a value, cancelled, and the buffer cannot grow to
   * take it back: it keeps the value (0) and the cancellation comes later. */
  CHECK_EQ(coro_chan_new(&c, sizeof(int), 0), 0);
  op r;
  op_init(&r, c, 0);
  coro_future *f = spawn(receiver, &r);
  settle();
  int v = 31;
  CHECK_EQ(coro_chan_send(c, &v), 0);
  coro_test_fail_alloc_after(1);
  CHECK_EQ(coro_cancel(f), 0);
  coro_test_fail_alloc_after(0);
  CHECK_ERR(join(f), CORO_ECANCELED);
  CHECK_EQ(r.r, 0);
  CHECK_EQ(r.v, 31);
  CHECK_ERR(coro_chan_try_recv(c, &v), CORO_EAGAIN); /* not twice */
  coro_chan_free(c);
  return NULL;
}

static void test_chan_enomem(void **state) {
  (void)state;
  assert_run_ok(enomem_main);
}

/* ==== share ========================================================================= */

typedef struct late {
  coro_chan *c;
  int r, rc;
  atomic_int finished;
} late;

static void *late_sender(void *arg) {
  late *l = arg;
  struct timespec ts = {0, 300 * 1000000};
  nanosleep(&ts, NULL);
  int v = 64;
  l->r = coro_chan_send_blocking(l->c, &v, CORO_FOREVER);
  l->rc = coro_chan_close(l->c);
  atomic_store(&l->finished, 1);
  return NULL;
}

static late g_late;

static void *share_main(void *arg) {
  int share = (int)(uintptr_t)arg;
  CHECK_EQ(coro_chan_new(&g_late.c, sizeof(int), 0), 0);
  if (share) CHECK_EQ(coro_chan_share(g_late.c), 0);
  pthread_t tid;
  pthread_create(&tid, NULL, late_sender, &g_late);
  pthread_detach(tid);
  int v = 0;
  /* Nothing on this loop can serve the receive; only the thread, later. */
  int r = coro_chan_recv(g_late.c, &v);
  if (!share) return coro_fail(r); /* cancelled as stuck */
  CHECK_EQ(r, 0);
  CHECK_EQ(v, 64);
  CHECK_ERR(coro_chan_recv(g_late.c, &v), CORO_EPIPE);
  wait_flag(&g_late.finished);
  coro_chan_free(g_late.c);
  return NULL;
}

/* coro_chan_share keeps the loop waiting for the thread. Without it the
 * loop is judged stuck (-EDEADLK) and the thread's late send gets -EPIPE. */
static void test_chan_share_keeps_loop(void **state) {
  (void)state;
  memset(&g_late, 0, sizeof(g_late));
  assert_coro_ok(coro_run(share_main, (void *)(uintptr_t)1, NULL));
  assert_checks_passed();
  assert_coro_ok(g_late.r);
  assert_coro_ok(g_late.rc);
  memset(&g_late, 0, sizeof(g_late));
  assert_coro_err(coro_run(share_main, (void *)(uintptr_t)0, NULL), CORO_EDEADLK);
  assert_checks_passed();
  while (!atomic_load(&g_late.finished)) {
    struct timespec ts = {0, 5 * 1000000};
    nanosleep(&ts, NULL);
  }
  assert_coro_err(g_late.r, CORO_EPIPE);
  assert_coro_err(g_late.rc, CORO_EPIPE);
  coro_chan_free(g_late.c);
}

/* ==== aiochan test_channel.py, ported ================================================== */

/* test_unfulfilled_readers_block: Chan(1), two readers, one put: exactly
 * one of them gets the value, the other still waits. */
static void *aio_readers_main(void *arg) {
  (void)arg;
  coro_chan *c;
  CHECK_EQ(coro_chan_new(&c, sizeof(int), 1), 0);
  op a, b;
  op_init(&a, c, 0);
  op_init(&b, c, 0);
  coro_future *fa = spawn(receiver, &a), *fb = spawn(receiver, &b);
  settle();
  int v = 42;
  CHECK_EQ(coro_chan_send(c, &v), 0);
  settle();
  CHECK_EQ(a.done + b.done, 1);
  CHECK(a.done ? a.v == 42 : b.v == 42);
  CHECK_EQ(coro_chan_close(c), 0);
  CHECK_EQ(join(fa), 0);
  CHECK_EQ(join(fb), 0);
  CHECK_ERR(a.done ? b.r : a.r, CORO_EPIPE);
  coro_chan_free(c);
  return NULL;
}

static void test_chan_aiochan_unfulfilled_readers_block(void **state) {
  (void)state;
  assert_run_ok(aio_readers_main);
}

/* test_offer_poll: put_nowait / get_nowait are try_send / try_recv. */
static void *aio_offer_poll_main(void *arg) {
  (void)arg;
  coro_chan *c;
  int v;
  CHECK_EQ(coro_chan_new(&c, sizeof(int), 2), 0);
  v = 1;
  CHECK_EQ(coro_chan_try_send(c, &v), 0);
  v = 2;
  CHECK_EQ(coro_chan_try_send(c, &v), 0);
  v = 3;
  CHECK_ERR(coro_chan_try_send(c, &v), CORO_EAGAIN);
  CHECK_EQ(coro_chan_recv(c, &v), 0);
  CHECK_EQ(v, 1);
  CHECK_EQ(coro_chan_try_recv(c, &v), 0);
  CHECK_EQ(v, 2);
  CHECK_ERR(coro_chan_try_recv(c, &v), CORO_EAGAIN);
  coro_chan_free(c);
  CHECK_EQ(coro_chan_new(&c, sizeof(int), 0), 0);
  CHECK_ERR(coro_chan_try_send(c, &v), CORO_EAGAIN);
  CHECK_ERR(coro_chan_try_recv(c, &v), CORO_EAGAIN);
  coro_chan_free(c);
  return NULL;
}

static void test_chan_aiochan_offer_poll(void **state) {
  (void)state;
  assert_run_ok(aio_offer_poll_main);
}

/* test_sync_op (to_iterable): a plain thread iterates a channel that a
 * task of the loop fills with small random pauses; it sees 0..9 in order,
 * then the end. */
typedef struct iter_arg {
  coro_chan *c;
  int got[16];
  int n, end;
  atomic_int finished;
} iter_arg;

static void *iter_thread(void *arg) {
  iter_arg *a = arg;
  int v;
  while ((a->end = coro_chan_recv_blocking(a->c, &v, CORO_FOREVER)) == 0)
    if (a->n < 16) a->got[a->n++] = v;
  atomic_store(&a->finished, 1);
  return NULL;
}

static void *aio_sync_op_main(void *arg) {
  (void)arg;
  iter_arg a;
  memset(&a, 0, sizeof(a));
  CHECK_EQ(coro_chan_new(&a.c, sizeof(int), 0), 0);
  CHECK_EQ(coro_chan_share(a.c), 0);
  pthread_t tid;
  pthread_create(&tid, NULL, iter_thread, &a);
  unsigned x = 99;
  for (int i = 0; i < 10; i++) {
    x = x * 1103515245u + 12345u;
    coro_sleep((x >> 16) % 2);
    CHECK_EQ(coro_chan_send(a.c, &i), 0);
  }
  CHECK_EQ(coro_chan_close(a.c), 0);
  wait_flag(&a.finished);
  pthread_join(tid, NULL);
  CHECK_EQ(a.n, 10);
  for (int i = 0; i < 10; i++) CHECK_EQ(a.got[i], i);
  CHECK_ERR(a.end, CORO_EPIPE);
  coro_chan_free(a.c);
  return NULL;
}

static void test_chan_aiochan_sync_op(void **state) {
  (void)state;
  assert_run_ok(aio_sync_op_main);
}

/* A task of loop B cancelled right after it posted a receive to loop A's
 * channel, in the same iteration: A gets the operation and the
 * cancellation together, the proxy is cancelled before it ever runs, and B's
 * task still resumes (-ECANCELED), having taken nothing. Repeated. */
#define PB_ROUNDS 40

static coro_chan *pb_c;
static int pb_results[PB_ROUNDS];
static atomic_int pb_finished;

static void *pb_recv(void *arg) {
  int *r = arg;
  int v;
  *r = coro_chan_recv_blocking(pb_c, &v, CORO_FOREVER);
  return NULL;
}

static void *pb_cancel(void *arg) {
  coro_cancel((coro_future *)arg);
  return NULL;
}

static void *pb_b_main(void *arg) {
  (void)arg;
  for (int i = 0; i < PB_ROUNDS; i++) {
    pb_results[i] = 1;
    coro_future *x = spawn(pb_recv, &pb_results[i]);
    coro_future *y = spawn(pb_cancel, x);
    CHECK_EQ(join(x), 0);
    CHECK_EQ(join(y), 0);
  }
  return NULL;
}

static void *pb_b_thread(void *arg) {
  int *r = arg;
  *r = coro_run(pb_b_main, NULL, NULL);
  atomic_store(&pb_finished, 1);
  return NULL;
}

static void *pb_a_main(void *arg) {
  (void)arg;
  CHECK_EQ(coro_chan_new(&pb_c, sizeof(int), 0), 0);
  CHECK_EQ(coro_chan_share(pb_c), 0);
  atomic_store(&pb_finished, 0);
  int b_status = 1;
  pthread_t tid;
  pthread_create(&tid, NULL, pb_b_thread, &b_status);
  wait_flag(&pb_finished);
  pthread_join(tid, NULL);
  CHECK_EQ(b_status, 0);
  for (int i = 0; i < PB_ROUNDS; i++)
    CHECK_ERR(pb_results[i], CORO_ECANCELED);
  int v = 1;
  CHECK_ERR(coro_chan_try_send(pb_c, &v), CORO_EAGAIN); /* nobody waits */
  coro_chan_free(pb_c);
  return NULL;
}

static void test_chan_remote_cancel_before_start(void **state) {
  (void)state;
  assert_run_ok(pb_a_main);
}

/* Plain threads blocked in receives when the channel's loop ends, some of
 * them maybe with a proxy not started yet: every one returns -EPIPE. */
#define PS_THREADS 4
static coro_chan *ps_c;
static int ps_r[PS_THREADS];

static void *ps_thread(void *arg) {
  int *r = arg;
  int v;
  *r = coro_chan_recv_blocking(ps_c, &v, CORO_FOREVER);
  return NULL;
}

static void *ps_main(void *arg) {
  pthread_t *tid = arg;
  CHECK_EQ(coro_chan_new(&ps_c, sizeof(int), 0), 0);
  for (int i = 0; i < PS_THREADS; i++) {
    ps_r[i] = 1;
    pthread_create(&tid[i], NULL, ps_thread, &ps_r[i]);
  }
  coro_sleep(20 + (int64_t)(coro_test_now_ms() % 7));
  return NULL; /* the loop ends while the threads wait */
}

static void test_chan_threads_at_loop_end(void **state) {
  (void)state;
  for (int k = 0; k < 5; k++) {
    pthread_t tid[PS_THREADS];
    assert_coro_ok(coro_run(ps_main, tid, NULL));
    assert_checks_passed();
    for (int i = 0; i < PS_THREADS; i++) {
      pthread_join(tid[i], NULL);
      assert_coro_err(ps_r[i], CORO_EPIPE);
    }
    coro_chan_free(ps_c);
  }
}

/* ==== seeded random operations ========================================================= */

/* One producer sends 0..RN-1 in order with a random mix of send,
 * send_timeout and try_send (retrying the same value until it went out);
 * consumers receive with a random mix of recv, recv_timeout, try_recv and a
 * select; a chaos task cancels any of them at random. Whatever the seed:
 * every value arrives exactly once. */
#define RN 400
#define RCONS 3

typedef struct rnd {
  coro_chan *c, *quit;
  unsigned seed;
  unsigned char seen[RN];
  int received;
  coro_future *tasks[RCONS + 1];
} rnd;

static unsigned rnd_next(unsigned *x) {
  *x = *x * 1103515245u + 12345u;
  return *x >> 16;
}

static void *rnd_producer(void *arg) {
  rnd *R = arg;
  unsigned x = R->seed * 7u + 1u;
  for (int v = 0; v < RN;) {
    int r;
    switch (rnd_next(&x) % 3) {
    case 0: r = coro_chan_send(R->c, &v); break;
    case 1: r = coro_chan_send_timeout(R->c, &v, (int64_t)(rnd_next(&x) % 3)); break;
    default:
      r = coro_chan_try_send(R->c, &v);
      if (r == CORO_EAGAIN) coro_yield();
      break;
    }
    if (r == 0) v++;
    else if (r == CORO_ECANCELED) coro_uncancel(coro_current());
    else CHECK(r == CORO_ETIMEDOUT || r == CORO_EAGAIN);
  }
  return NULL;
}

static void *rnd_consumer(void *arg) {
  rnd *R = arg;
  unsigned x = R->seed * 13u + (unsigned)(uintptr_t)coro_current();
  for (;;) {
    int v = -1, q, r;
    switch (rnd_next(&x) % 4) {
    case 0: r = coro_chan_recv(R->c, &v); break;
    case 1: r = coro_chan_recv_timeout(R->c, &v, (int64_t)(rnd_next(&x) % 3)); break;
    case 2:
      r = coro_chan_try_recv(R->c, &v);
      if (r == CORO_EAGAIN) coro_yield();
      break;
    default: {
      coro_select_case cs[2];
      memset(cs, 0, sizeof(cs));
      cs[0].chan = R->c, cs[0].op = CORO_CHAN_RECV, cs[0].elem = &v;
      cs[1].chan = R->quit, cs[1].op = CORO_CHAN_RECV, cs[1].elem = &q;
      r = coro_select(cs, 2, 0, (int64_t)(rnd_next(&x) % 4) - 1);
      if (r == 0) r = cs[0].status;
      else if (r == 1) r = CORO_EPIPE; /* quit closed */
      break;
    }
    }
    if (r == 0) {
      CHECK(v >= 0 && v < RN);
      if (v >= 0 && v < RN) R->seen[v]++;
      R->received++;
    } else if (r == CORO_ECANCELED) {
      coro_uncancel(coro_current());
    } else if (r == CORO_EPIPE) {
      break;
    } else {
      CHECK(r == CORO_ETIMEDOUT || r == CORO_EAGAIN);
    }
  }
  return NULL;
}

static void *rnd_chaos(void *arg) {
  rnd *R = arg;
  unsigned x = R->seed * 31u + 5u;
  for (int k = 0; k < 300; k++) {
    coro_future *f = R->tasks[rnd_next(&x) % (RCONS + 1)];
    if (rnd_next(&x) % 3 == 0 && coro_future_status(f) == CORO_PENDING) coro_cancel(f);
    if (rnd_next(&x) % 4 == 0) coro_sleep(1);
    else coro_yield();
  }
  return NULL;
}

static void *rnd_main(void *arg) {
  rnd *R = arg;
  size_t caps[3] = {0, 1, 3};
  CHECK_EQ(coro_chan_new(&R->c, sizeof(int), caps[R->seed % 3]), 0);
  CHECK_EQ(coro_chan_new(&R->quit, sizeof(int), 0), 0);
  R->tasks[0] = spawn(rnd_producer, R);
  for (int i = 0; i < RCONS; i++) R->tasks[1 + i] = spawn(rnd_consumer, R);
  coro_future *chaos = spawn(rnd_chaos, R);
  int r = join(R->tasks[0]);
  CHECK(r == 0 || r == CORO_ECANCELED); /* cancelled after its last send */
  CHECK_EQ(join(chaos), 0);
  CHECK_EQ(coro_chan_close(R->c), 0);
  for (int i = 0; i < RCONS; i++) {
    r = join(R->tasks[1 + i]);
    CHECK(r == 0 || r == CORO_ECANCELED);
  }
  CHECK_EQ(R->received, RN);
  for (int v = 0; v < RN; v++) CHECK_EQ(R->seen[v], 1);
  coro_chan_free(R->c);
  coro_chan_free(R->quit);
  return NULL;
}

static void test_chan_random_ops(void **state) {
  (void)state;
  for (unsigned seed = 1; seed <= 12; seed++) {
    rnd R;
    memset(&R, 0, sizeof(R));
    R.seed = seed;
    int r = coro_run(rnd_main, &R, NULL);
    if (r != 0 || coro_test_failed_line != 0)
      print_message("random ops: seed %u failed\n", seed);
    assert_coro_ok(r);
    assert_checks_passed();
  }
}

/* A channel that outlives its loop is not usable from a later loop of the
 * same thread, even when that loop got the same address (calloc reuses it
 * without sanitizers): every call but free fails, nothing waits on it. */
static coro_chan *later_chan;
static int later_try_send, later_try_recv, later_send;

static void *later_make_main(void *arg) {
  (void)arg;
  CHECK_EQ(coro_chan_new(&later_chan, sizeof(long), 4), 0);
  return NULL;
}

static void *later_use_main(void *arg) {
  (void)arg;
  long v = 1;
  later_try_send = coro_chan_try_send(later_chan, &v);
  later_try_recv = coro_chan_try_recv(later_chan, &v);
  later_send = coro_chan_send_timeout(later_chan, &v, 10);
  return NULL;
}

static void test_chan_later_loop_same_thread(void **state) {
  (void)state;
  later_chan = NULL;
  assert_run_ok(later_make_main);
  assert_non_null(later_chan);
  assert_run_ok(later_use_main);
  assert_true(later_try_send == CORO_EPERM || later_try_send == CORO_EPIPE);
  assert_true(later_try_recv == CORO_EPERM || later_try_recv == CORO_EPIPE);
  assert_true(later_send == CORO_EPERM || later_send == CORO_EPIPE);
  coro_chan_free(later_chan);
}

int main(int argc, char **argv) {
  const char *arg;
  const char *role = coro_test_child_role(argc, argv, &arg);
  if (role != NULL && strcmp(role, "credit_loop_end") == 0) return loop_end_role();
  if (role != NULL) return 5;
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_chan_errors, coro_test_setup, coro_test_teardown),
    cmocka_unit_test_setup_teardown(test_chan_outside_task, coro_test_setup, coro_test_teardown),
    cmocka_unit_test_setup_teardown(test_chan_buffered, coro_test_setup, coro_test_teardown),
    cmocka_unit_test_setup_teardown(test_chan_unbuffered, coro_test_setup, coro_test_teardown),
    cmocka_unit_test_setup_teardown(test_chan_elem_sizes, coro_test_setup, coro_test_teardown),
    cmocka_unit_test_setup_teardown(test_chan_close_drains, coro_test_setup, coro_test_teardown),
    cmocka_unit_test_setup_teardown(test_chan_close_wakes_all, coro_test_setup, coro_test_teardown),
    cmocka_unit_test_setup_teardown(test_chan_free_with_waiters, coro_test_setup, coro_test_teardown),
    cmocka_unit_test_setup_teardown(test_chan_timeouts, coro_test_setup, coro_test_teardown),
    cmocka_unit_test_setup_teardown(test_chan_timeout_scope, coro_test_setup, coro_test_teardown),
    cmocka_unit_test_setup_teardown(test_chan_fifo_unbuffered, coro_test_setup, coro_test_teardown),
    cmocka_unit_test_setup_teardown(test_chan_fifo_buffered, coro_test_setup, coro_test_teardown),
    cmocka_unit_test_setup_teardown(test_chan_cancel_waiting, coro_test_setup, coro_test_teardown),
    cmocka_unit_test_setup_teardown(test_chan_cancel_handed_passes_on, coro_test_setup, coro_test_teardown),
    cmocka_unit_test_setup_teardown(test_chan_cancel_handed_put_back, coro_test_setup, coro_test_teardown),
    cmocka_unit_test_setup_teardown(test_chan_cancel_handed_after_close, coro_test_setup, coro_test_teardown),
    cmocka_unit_test_setup_teardown(test_chan_cancel_after_sent, coro_test_setup, coro_test_teardown),
    cmocka_unit_test_setup_teardown(test_chan_cancel_after_close_wake, coro_test_setup, coro_test_teardown),
    cmocka_unit_test_setup_teardown(test_chan_cancel_pending, coro_test_setup, coro_test_teardown),
    cmocka_unit_test_setup_teardown(test_chan_producer_consumer, coro_test_setup, coro_test_teardown),
    cmocka_unit_test_setup_teardown(test_chan_producer_consumer_cancel, coro_test_setup, coro_test_teardown),
    cmocka_unit_test_setup_teardown(test_chan_fan_in_fan_out, coro_test_setup, coro_test_teardown),
    cmocka_unit_test_setup_teardown(test_chan_threads_send, coro_test_setup, coro_test_teardown),
    cmocka_unit_test_setup_teardown(test_chan_threads_recv, coro_test_setup, coro_test_teardown),
    cmocka_unit_test_setup_teardown(test_chan_thread_timeout, coro_test_setup, coro_test_teardown),
    cmocka_unit_test_setup_teardown(test_chan_loop_ended, coro_test_setup, coro_test_teardown),
    cmocka_unit_test_setup_teardown(test_chan_two_loops, coro_test_setup, coro_test_teardown),
    cmocka_unit_test_setup_teardown(test_chan_remote_loop_shutdown, coro_test_setup, coro_test_teardown),
    cmocka_unit_test_setup_teardown(test_chan_enomem, coro_test_setup, coro_test_teardown),
    cmocka_unit_test_setup_teardown(test_chan_share_keeps_loop, coro_test_setup, coro_test_teardown),
    cmocka_unit_test_setup_teardown(test_chan_aiochan_unfulfilled_readers_block, coro_test_setup, coro_test_teardown),
    cmocka_unit_test_setup_teardown(test_chan_aiochan_offer_poll, coro_test_setup, coro_test_teardown),
    cmocka_unit_test_setup_teardown(test_chan_aiochan_sync_op, coro_test_setup, coro_test_teardown),
    cmocka_unit_test_setup_teardown(test_chan_remote_cancel_before_start, coro_test_setup, coro_test_teardown),
    cmocka_unit_test_setup_teardown(test_chan_threads_at_loop_end, coro_test_setup, coro_test_teardown),
    cmocka_unit_test_setup_teardown(test_chan_random_ops, coro_test_setup, coro_test_teardown),
    cmocka_unit_test_setup_teardown(test_chan_later_loop_same_thread, coro_test_setup, coro_test_teardown),
    cmocka_unit_test_setup_teardown(test_chan_credit_threads, coro_test_setup, coro_test_teardown),
    cmocka_unit_test_setup_teardown(test_chan_credit_loops, coro_test_setup, coro_test_teardown),
    cmocka_unit_test_setup_teardown(test_chan_credit_close, coro_test_setup, coro_test_teardown),
    cmocka_unit_test_setup_teardown(test_chan_credit_loop_end, coro_test_setup, coro_test_teardown),
    cmocka_unit_test_setup_teardown(test_chan_credit_timeout, coro_test_setup, coro_test_teardown),
    cmocka_unit_test_setup_teardown(test_chan_credit_local_fifo, coro_test_setup, coro_test_teardown),
    cmocka_unit_test_setup_teardown(test_chan_credit_staged, coro_test_setup, coro_test_teardown),
    cmocka_unit_test_setup_teardown(test_chan_credit_remote_cancel, coro_test_setup, coro_test_teardown),
  };
  return coro_test_main(argc, argv, tests, NULL, NULL);
}
