/* SPDX-License-Identifier: MIT */
/* coro_select (aiochan / Go select, docs/api/chan.md): exactly one operation
 * commits, random fair choice among ready cases (or priority order), the
 * default and timeout arms, close, and the races between a committing case,
 * the other cases and a cancellation. */
#include "helpers.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define spawn coro_test_spawn
#define join coro_test_join

static void settle(void) {
  for (int i = 0; i < 4; i++) coro_yield();
}

static void set_case(coro_select_case *cs, coro_chan *c, int op, void *elem) {
  memset(cs, 0, sizeof(*cs));
  cs->chan = c;
  cs->op = op;
  cs->elem = elem;
  cs->status = 1;
}

/* A select of two receives (a, b) in a task, with a timeout. */
typedef struct sel2 {
  coro_chan *a, *b;
  int va, vb;
  int r;
  int64_t ms;
  int after; /* status of a sleep after the select */
  int sleep_after;
  coro_select_case cs[2];
} sel2;

static void *sel2_fn(void *arg) {
  sel2 *s = arg;
  s->va = s->vb = -1;
  set_case(&s->cs[0], s->a, CORO_CHAN_RECV, &s->va);
  set_case(&s->cs[1], s->b, CORO_CHAN_RECV, &s->vb);
  s->r = coro_select(s->cs, 2, 0, s->ms);
  if (s->sleep_after) s->after = coro_sleep(CORO_FOREVER);
  return NULL;
}

static void sel2_init(sel2 *s, coro_chan *a, coro_chan *b) {
  memset(s, 0, sizeof(*s));
  s->a = a;
  s->b = b;
  s->r = 1;
  s->after = 1;
  s->ms = CORO_FOREVER;
}

/* ==== errors ======================================================================= */

/* A channel of a loop running on another thread. */
static coro_chan *_Atomic foreign;
static _Atomic int foreign_phase; /* 1: made, 2: may end, 3: ended */

static void *foreign_main(void *arg) {
  (void)arg;
  coro_chan *c;
  CHECK_EQ(coro_chan_new(&c, sizeof(int), 1), 0);
  foreign = c;
  foreign_phase = 1;
  while (foreign_phase != 2) coro_sleep(1);
  coro_chan_free(c);
  return NULL;
}

static void *foreign_thread(void *arg) {
  (void)arg;
  coro_run(foreign_main, NULL, NULL);
  foreign_phase = 3;
  return NULL;
}

static void *errors_main(void *arg) {
  (void)arg;
  foreign_phase = 0;
  pthread_t tid;
  pthread_create(&tid, NULL, foreign_thread, NULL);
  while (foreign_phase != 1) coro_sleep(1);
  coro_chan *c;
  CHECK_EQ(coro_chan_new(&c, sizeof(int), 1), 0);
  int v = 0;
  coro_select_case cs[2];
  CHECK_ERR(coro_select(NULL, 1, 0, 0), CORO_EINVAL);
  set_case(&cs[0], c, 7, &v);
  CHECK_ERR(coro_select(cs, 1, 0, 0), CORO_EINVAL);
  set_case(&cs[0], c, CORO_CHAN_RECV, NULL);
  CHECK_ERR(coro_select(cs, 1, 0, 0), CORO_EINVAL);
  set_case(&cs[0], c, CORO_CHAN_RECV, &v);
  CHECK_ERR(coro_select(cs, 1, 0x40, 0), CORO_EINVAL);
  CHECK_ERR(coro_select(cs, 1, 0, -2), CORO_EINVAL);
  set_case(&cs[1], foreign, CORO_CHAN_SEND, &v);
  CHECK_ERR(coro_select(cs, 2, 0, 0), CORO_EPERM);
  CHECK_EQ(cs[0].status, 1); /* untouched */
  /* Nothing ready: check once. */
  CHECK_ERR(coro_select(cs, 1, 0, 0), CORO_ETIMEDOUT);
  CHECK_ERR(coro_select(cs, 1, CORO_SELECT_DEFAULT, CORO_FOREVER), CORO_EAGAIN);
  /* No case at all (Go's empty select) ends with the timeout; a NULL
   * channel is ignored. */
  CHECK_ERR(coro_select(NULL, 0, 0, 10), CORO_ETIMEDOUT);
  set_case(&cs[0], NULL, CORO_CHAN_RECV, &v);
  CHECK_ERR(coro_select(cs, 1, 0, 10), CORO_ETIMEDOUT);
  CHECK_ERR(coro_select(cs, 1, CORO_SELECT_DEFAULT, 0), CORO_EAGAIN);
  coro_chan_free(c);
  foreign_phase = 2;
  while (foreign_phase != 3) coro_sleep(1);
  pthread_join(tid, NULL);
  return NULL;
}

static void test_select_errors(void **state) {
  (void)state;
  int v = 0;
  coro_select_case cs;
  set_case(&cs, NULL, CORO_CHAN_RECV, &v);
  assert_coro_err(coro_select(&cs, 1, 0, 0), CORO_EPERM); /* no task */
  assert_run_ok(errors_main);
}

/* ==== ready at once ==================================================================== */

static void *ready_main(void *arg) {
  (void)arg;
  coro_chan *a, *b, *s;
  CHECK_EQ(coro_chan_new(&a, sizeof(int), 1), 0);
  CHECK_EQ(coro_chan_new(&b, sizeof(int), 1), 0);
  CHECK_EQ(coro_chan_new(&s, sizeof(int), 1), 0);
  int v = 5, ra = -1, rb = -1, out = 9;
  CHECK_EQ(coro_chan_send(b, &v), 0);
  coro_select_case cs[3];
  set_case(&cs[0], a, CORO_CHAN_RECV, &ra);
  set_case(&cs[1], b, CORO_CHAN_RECV, &rb);
  set_case(&cs[2], NULL, CORO_CHAN_RECV, &ra);
  CHECK_EQ(coro_select(cs, 3, 0, CORO_FOREVER), 1);
  CHECK_EQ(cs[1].status, 0);
  CHECK_EQ(rb, 5);
  CHECK_EQ(ra, -1);
  /* A send case with room. */
  set_case(&cs[0], a, CORO_CHAN_RECV, &ra);
  set_case(&cs[1], s, CORO_CHAN_SEND, &out);
  CHECK_EQ(coro_select(cs, 2, CORO_SELECT_DEFAULT, 0), 1);
  CHECK_EQ(cs[1].status, 0);
  CHECK_EQ(coro_chan_len(s), 1);
  coro_chan_free(a);
  coro_chan_free(b);
  coro_chan_free(s);
  return NULL;
}

static void test_select_ready(void **state) {
  (void)state;
  assert_run_ok(ready_main);
}

/* Closed channels are ready: a receive commits with -EPIPE (Go's !ok), a
 * send too (nothing sent). */
static void *closed_main(void *arg) {
  (void)arg;
  coro_chan *a, *b;
  CHECK_EQ(coro_chan_new(&a, sizeof(int), 0), 0);
  CHECK_EQ(coro_chan_new(&b, sizeof(int), 0), 0);
  CHECK_EQ(coro_chan_close(a), 0);
  int v = 1;
  coro_select_case cs[2];
  set_case(&cs[0], a, CORO_CHAN_RECV, &v);
  set_case(&cs[1], b, CORO_CHAN_RECV, &v);
  CHECK_EQ(coro_select(cs, 2, 0, CORO_FOREVER), 0);
  CHECK_ERR(cs[0].status, CORO_EPIPE);
  set_case(&cs[0], a, CORO_CHAN_SEND, &v);
  CHECK_EQ(coro_select(cs, 2, 0, CORO_FOREVER), 0);
  CHECK_ERR(cs[0].status, CORO_EPIPE);
  /* Close while a select waits: that case commits with -EPIPE. */
  coro_chan *c;
  CHECK_EQ(coro_chan_new(&c, sizeof(int), 0), 0);
  sel2 s;
  sel2_init(&s, b, c);
  coro_future *f = spawn(sel2_fn, &s);
  settle();
  CHECK_EQ(coro_chan_close(c), 0);
  CHECK_EQ(join(f), 0);
  CHECK_EQ(s.r, 1);
  CHECK_ERR(s.cs[1].status, CORO_EPIPE);
  CHECK_ERR(coro_chan_try_send(b, &v), CORO_EAGAIN); /* b's case withdrawn */
  coro_chan_free(a);
  coro_chan_free(b);
  coro_chan_free(c);
  return NULL;
}

static void test_select_closed(void **state) {
  (void)state;
  assert_run_ok(closed_main);
}

/* aiochan test_select_default: nothing ready -> default, nothing queued. */
static void *default_main(void *arg) {
  (void)arg;
  coro_chan *a;
  CHECK_EQ(coro_chan_new(&a, sizeof(int), 0), 0);
  int v = 3;
  coro_select_case cs;
  set_case(&cs, a, CORO_CHAN_RECV, &v);
  CHECK_ERR(coro_select(&cs, 1, CORO_SELECT_DEFAULT, CORO_FOREVER), CORO_EAGAIN);
  CHECK_EQ(cs.status, 1);
  CHECK_ERR(coro_chan_try_send(a, &v), CORO_EAGAIN); /* no receiver queued */
  coro_chan_free(a);
  return NULL;
}

static void test_select_default(void **state) {
  (void)state;
  assert_run_ok(default_main);
}

/* Fairness: among ready cases each wins about equally often; PRIORITY
 * always takes the first. */
#define FAIR_N 3000

static void *fair_main(void *arg) {
  (void)arg;
  coro_chan *c[3];
  for (int i = 0; i < 3; i++) CHECK_EQ(coro_chan_new(&c[i], sizeof(int), 1), 0);
  int wins[3] = {0, 0, 0};
  int v = 0, dummy = 0;
  coro_select_case cs[4];
  for (int k = 0; k < FAIR_N; k++) {
    for (int i = 0; i < 3; i++)
      if (coro_chan_len(c[i]) == 0) CHECK_EQ(coro_chan_send(c[i], &v), 0);
    for (int i = 0; i < 3; i++) set_case(&cs[i], c[i], CORO_CHAN_RECV, &dummy);
    /* A case that is never ready does not skew the choice. */
    set_case(&cs[3], c[0], CORO_CHAN_SEND, &v);
    int r = coro_select(cs, 4, 0, CORO_FOREVER);
    CHECK(r >= 0 && r < 3);
    if (r >= 0 && r < 3) wins[r]++;
  }
  for (int i = 0; i < 3; i++) CHECK(wins[i] > FAIR_N / 3 - FAIR_N / 10 &&
                                    wins[i] < FAIR_N / 3 + FAIR_N / 10);
  for (int k = 0; k < 100; k++) {
    for (int i = 0; i < 3; i++)
      if (coro_chan_len(c[i]) == 0) CHECK_EQ(coro_chan_send(c[i], &v), 0);
    for (int i = 0; i < 3; i++) set_case(&cs[i], c[i], CORO_CHAN_RECV, &dummy);
    CHECK_EQ(coro_select(cs, 3, CORO_SELECT_PRIORITY, CORO_FOREVER), 0);
  }
  for (int i = 0; i < 3; i++) coro_chan_free(c[i]);
  return NULL;
}

static void test_select_fair(void **state) {
  (void)state;
  assert_run_ok(fair_main);
}

/* Two sends ready at once: two unbuffered channels each with a waiting
 * receiver; over 100 selects of two sends both branches win. */
static void *getter(void *arg) {
  coro_chan *c = arg;
  int v;
  while (coro_chan_recv(c, &v) == 0) {
  }
  return NULL;
}

static void *puts_main(void *arg) {
  (void)arg;
  coro_chan *a, *b;
  CHECK_EQ(coro_chan_new(&a, sizeof(int), 0), 0);
  CHECK_EQ(coro_chan_new(&b, sizeof(int), 0), 0);
  coro_future *ga = spawn(getter, a), *gb = spawn(getter, b);
  int wins[2] = {0, 0};
  int x = 1, y = 2;
  for (int k = 0; k < 100; k++) {
    settle(); /* both getters wait again */
    coro_select_case cs[2];
    set_case(&cs[0], a, CORO_CHAN_SEND, &x);
    set_case(&cs[1], b, CORO_CHAN_SEND, &y);
    int r = coro_select(cs, 2, 0, CORO_FOREVER);
    CHECK(r == 0 || r == 1);
    if (r == 0 || r == 1) wins[r]++;
  }
  CHECK(wins[0] > 10 && wins[1] > 10);
  coro_chan_close(a);
  coro_chan_close(b);
  CHECK_EQ(join(ga), 0);
  CHECK_EQ(join(gb), 0);
  coro_chan_free(a);
  coro_chan_free(b);
  return NULL;
}

static void test_select_puts(void **state) {
  (void)state;
  assert_run_ok(puts_main);
}

/* ==== waiting ============================================================================= */

/* The select waits; a send on one channel commits it; the other case is
 * withdrawn (a later send there finds no receiver). */
static void *wait_commit_main(void *arg) {
  (void)arg;
  coro_chan *a, *b;
  CHECK_EQ(coro_chan_new(&a, sizeof(int), 0), 0);
  CHECK_EQ(coro_chan_new(&b, sizeof(int), 0), 0);
  sel2 s;
  sel2_init(&s, a, b);
  coro_future *f = spawn(sel2_fn, &s);
  settle();
  int v = 21;
  CHECK_EQ(coro_chan_try_send(b, &v), 0);
  CHECK_ERR(coro_chan_try_send(a, &v), CORO_EAGAIN);
  CHECK_EQ(join(f), 0);
  CHECK_EQ(s.r, 1);
  CHECK_EQ(s.vb, 21);
  CHECK_EQ(s.va, -1);
  CHECK_EQ(s.cs[1].status, 0);
  coro_chan_free(a);
  coro_chan_free(b);
  return NULL;
}

static void test_select_wait_commit(void **state) {
  (void)state;
  assert_run_ok(wait_commit_main);
}

/* A waiting select with a send case: a receiver commits it. */
typedef struct selsend {
  coro_chan *a, *b;
  int out, in;
  int r;
  coro_select_case cs[2];
} selsend;

static void *selsend_fn(void *arg) {
  selsend *s = arg;
  set_case(&s->cs[0], s->a, CORO_CHAN_RECV, &s->in);
  set_case(&s->cs[1], s->b, CORO_CHAN_SEND, &s->out);
  s->r = coro_select(s->cs, 2, 0, CORO_FOREVER);
  return NULL;
}

static void *wait_send_main(void *arg) {
  (void)arg;
  coro_chan *a, *b;
  CHECK_EQ(coro_chan_new(&a, sizeof(int), 0), 0);
  CHECK_EQ(coro_chan_new(&b, sizeof(int), 0), 0);
  selsend s;
  memset(&s, 0, sizeof(s));
  s.a = a;
  s.b = b;
  s.out = 33;
  coro_future *f = spawn(selsend_fn, &s);
  settle();
  int v = 0;
  CHECK_EQ(coro_chan_recv(b, &v), 0);
  CHECK_EQ(v, 33);
  CHECK_EQ(join(f), 0);
  CHECK_EQ(s.r, 1);
  CHECK_ERR(coro_chan_try_send(a, &v), CORO_EAGAIN);
  coro_chan_free(a);
  coro_chan_free(b);
  return NULL;
}

static void test_select_wait_send(void **state) {
  (void)state;
  assert_run_ok(wait_send_main);
}

/* A select that sends and receives on the same unbuffered channel, in two
 * tasks: they pair up (one sends, the other receives), no deadlock. */
typedef struct both {
  coro_chan *c;
  int out, in, r;
} both;

static void *both_fn(void *arg) {
  both *b = arg;
  coro_select_case cs[2];
  set_case(&cs[0], b->c, CORO_CHAN_SEND, &b->out);
  set_case(&cs[1], b->c, CORO_CHAN_RECV, &b->in);
  b->r = coro_select(cs, 2, 0, 1000);
  return NULL;
}

static void *both_main(void *arg) {
  (void)arg;
  coro_chan *c;
  CHECK_EQ(coro_chan_new(&c, sizeof(int), 0), 0);
  both x = {c, 1, -1, 9}, y = {c, 2, -1, 9};
  coro_future *fx = spawn(both_fn, &x), *fy = spawn(both_fn, &y);
  CHECK_EQ(join(fx), 0);
  CHECK_EQ(join(fy), 0);
  /* x queued both cases; y found x's receive (or send) ready. */
  CHECK((x.r == 0 && y.r == 1 && y.in == 1) || (x.r == 1 && y.r == 0 && x.in == 2));
  coro_chan_free(c);
  return NULL;
}

static void test_select_send_recv_same_chan(void **state) {
  (void)state;
  assert_run_ok(both_main);
}

/* Timeout: -ETIMEDOUT after the time, every case withdrawn. */
static void *timeout_main(void *arg) {
  (void)arg;
  coro_chan *a, *b;
  CHECK_EQ(coro_chan_new(&a, sizeof(int), 0), 0);
  CHECK_EQ(coro_chan_new(&b, sizeof(int), 0), 0);
  sel2 s;
  sel2_init(&s, a, b);
  s.ms = 30;
  int64_t t0 = coro_test_now_ms();
  sel2_fn(&s);
  CHECK_GE(coro_test_now_ms() - t0, 25);
  CHECK_ERR(s.r, CORO_ETIMEDOUT);
  int v = 1;
  CHECK_ERR(coro_chan_try_send(a, &v), CORO_EAGAIN);
  CHECK_ERR(coro_chan_try_send(b, &v), CORO_EAGAIN);
  coro_chan_free(a);
  coro_chan_free(b);
  return NULL;
}

static void test_select_timeout(void **state) {
  (void)state;
  assert_run_ok(timeout_main);
}

/* ==== cancellation races ================================================================= */

/* Cancelled while waiting: -ECANCELED, withdrawn from every channel. */
static void *cancel_wait_main(void *arg) {
  (void)arg;
  coro_chan *a, *b;
  CHECK_EQ(coro_chan_new(&a, sizeof(int), 0), 0);
  CHECK_EQ(coro_chan_new(&b, sizeof(int), 0), 0);
  sel2 s;
  sel2_init(&s, a, b);
  coro_future *f = spawn(sel2_fn, &s);
  settle();
  CHECK_EQ(coro_cancel(f), 0);
  /* The other case "fires" in the same step, after the cancel: it finds
   * nobody. */
  int v = 4;
  CHECK_ERR(coro_chan_try_send(b, &v), CORO_EAGAIN);
  CHECK_EQ(join(f), 0);
  CHECK_ERR(s.r, CORO_ECANCELED);
  CHECK_ERR(coro_chan_try_send(a, &v), CORO_EAGAIN);
  coro_chan_free(a);
  coro_chan_free(b);
  return NULL;
}

static void test_select_cancel_waiting(void **state) {
  (void)state;
  assert_run_ok(cancel_wait_main);
}

/* Case a fires (a value handed over), then the select is cancelled before it
 * runs, then b's sender arrives: the value goes back to a (to its next
 * receiver, or its buffer), the select reports -ECANCELED, and b's value is
 * not consumed by the withdrawn case. */
static void *cancel_handed_main(void *arg) {
  size_t cap = (size_t)(uintptr_t)arg;
  coro_chan *a, *b;
  CHECK_EQ(coro_chan_new(&a, sizeof(int), cap), 0);
  CHECK_EQ(coro_chan_new(&b, sizeof(int), cap), 0);
  sel2 s;
  sel2_init(&s, a, b);
  coro_future *f = spawn(sel2_fn, &s);
  settle();
  int v = 41;
  CHECK_EQ(coro_chan_try_send(a, &v), 0); /* commits the select */
  CHECK_EQ(coro_cancel(f), 0);
  v = 42;
  int rb = coro_chan_try_send(b, &v);
  CHECK_EQ(rb, cap > 0 ? 0 : CORO_EAGAIN);
  CHECK_EQ(join(f), 0);
  CHECK_ERR(s.r, CORO_ECANCELED);
  v = 0;
  CHECK_EQ(coro_chan_try_recv(a, &v), 0); /* put back */
  CHECK_EQ(v, 41);
  CHECK_ERR(coro_chan_try_recv(a, &v), CORO_EAGAIN);
  if (cap > 0) {
    CHECK_EQ(coro_chan_try_recv(b, &v), 0);
    CHECK_EQ(v, 42);
  }
  coro_chan_free(a);
  coro_chan_free(b);
  return NULL;
}

static void test_select_cancel_after_commit(void **state) {
  (void)state;
  assert_coro_ok(coro_run(cancel_handed_main, (void *)(uintptr_t)0, NULL));
  assert_checks_passed();
  assert_coro_ok(coro_run(cancel_handed_main, (void *)(uintptr_t)2, NULL));
  assert_checks_passed();
}

/* Committed and cancelled, with another receiver waiting on a: the value
 * passes to it directly. */
typedef struct rcv {
  coro_chan *c;
  int v, r;
} rcv;

static void *rcv_fn(void *arg) {
  rcv *x = arg;
  x->r = coro_chan_recv(x->c, &x->v);
  return NULL;
}

static void *cancel_pass_main(void *arg) {
  (void)arg;
  coro_chan *a, *b;
  CHECK_EQ(coro_chan_new(&a, sizeof(int), 0), 0);
  CHECK_EQ(coro_chan_new(&b, sizeof(int), 0), 0);
  sel2 s;
  sel2_init(&s, a, b);
  coro_future *f = spawn(sel2_fn, &s);
  settle();
  rcv x = {a, -1, 1};
  coro_future *fx = spawn(rcv_fn, &x);
  settle();
  int v = 55;
  CHECK_EQ(coro_chan_try_send(a, &v), 0); /* the select was first */
  CHECK_EQ(coro_cancel(f), 0);
  CHECK_EQ(join(f), 0);
  CHECK_EQ(join(fx), 0);
  CHECK_ERR(s.r, CORO_ECANCELED);
  CHECK_EQ(x.r, 0);
  CHECK_EQ(x.v, 55);
  coro_chan_free(a);
  coro_chan_free(b);
  return NULL;
}

static void test_select_cancel_passes_on(void **state) {
  (void)state;
  assert_run_ok(cancel_pass_main);
}

/* A committed send cannot be undone: the select returns its index and the
 * cancellation arrives at the next suspension. */
static void *cancel_sent_main(void *arg) {
  (void)arg;
  coro_chan *a, *b;
  CHECK_EQ(coro_chan_new(&a, sizeof(int), 0), 0);
  CHECK_EQ(coro_chan_new(&b, sizeof(int), 0), 0);
  selsend s;
  memset(&s, 0, sizeof(s));
  s.a = a;
  s.b = b;
  s.out = 8;
  coro_future *f = spawn(selsend_fn, &s);
  settle();
  int v = 0;
  CHECK_EQ(coro_chan_try_recv(b, &v), 0);
  CHECK_EQ(v, 8);
  CHECK_EQ(coro_cancel(f), 0);
  CHECK_ERR(join(f), CORO_ECANCELED); /* the request was kept; task ends cancelled */
  CHECK_EQ(s.r, 1);
  coro_chan_free(a);
  coro_chan_free(b);
  return NULL;
}

static void test_select_cancel_after_send(void **state) {
  (void)state;
  assert_run_ok(cancel_sent_main);
}

/* Timed out, then cancelled before running: -ECANCELED. */
static void *cancel_timed_main(void *arg) {
  (void)arg;
  coro_chan *a, *b;
  CHECK_EQ(coro_chan_new(&a, sizeof(int), 0), 0);
  CHECK_EQ(coro_chan_new(&b, sizeof(int), 0), 0);
  sel2 s;
  sel2_init(&s, a, b);
  s.ms = 5;
  coro_future *f = spawn(sel2_fn, &s);
  /* Busy-wait past the select's deadline without yielding, so its timer
   * fires in the same iteration as our cancel. */
  int64_t t0 = coro_test_now_ms();
  coro_yield();
  while (coro_test_now_ms() - t0 < 20) {
  }
  coro_yield(); /* the timer fires: the select is woken with -ETIMEDOUT */
  CHECK_EQ(coro_cancel(f), 0);
  CHECK_EQ(join(f), 0);
  CHECK(s.r == CORO_ECANCELED || s.r == CORO_ETIMEDOUT);
  coro_chan_free(a);
  coro_chan_free(b);
  return NULL;
}

static void test_select_cancel_after_timeout(void **state) {
  (void)state;
  assert_run_ok(cancel_timed_main);
}

/* ==== many tasks ====================================================================== */

/* Producers send on two channels; consumers select over both and a quit
 * channel; some consumers are cancelled along the way. Every value whose
 * send returned 0 arrives exactly once. */
#define MS_PROD 4
#define MS_CONS 6
#define MS_ITEMS 500

typedef struct ms {
  coro_chan *in[2];
  coro_chan *quit;
  unsigned char *seen, *sent;
  int received;
} ms;

typedef struct ms_task {
  ms *m;
  int id;
} ms_task;

static void *ms_prod(void *arg) {
  ms_task *t = arg;
  for (int i = 0; i < MS_ITEMS; i++) {
    int v = t->id * MS_ITEMS + i;
    int r = coro_chan_send(t->m->in[i & 1], &v);
    if (r == 0) t->m->sent[v] = 1;
    if (r == CORO_ECANCELED) coro_uncancel(coro_current());
  }
  return NULL;
}

static void *ms_cons(void *arg) {
  ms_task *t = arg;
  ms *m = t->m;
  int v, q;
  for (;;) {
    coro_select_case cs[3];
    set_case(&cs[0], m->in[0], CORO_CHAN_RECV, &v);
    set_case(&cs[1], m->in[1], CORO_CHAN_RECV, &v);
    set_case(&cs[2], m->quit, CORO_CHAN_RECV, &q);
    int r = coro_select(cs, 3, 0, CORO_FOREVER);
    if (r == CORO_ECANCELED) {
      coro_uncancel(coro_current());
      continue;
    }
    CHECK_GE(r, 0);
    if (r < 0 || r == 2) break;
    CHECK_EQ(cs[r].status, 0);
    m->seen[v]++;
    m->received++;
  }
  return NULL;
}

static void *ms_main(void *arg) {
  size_t cap = (size_t)(uintptr_t)arg;
  ms m;
  CHECK_EQ(coro_chan_new(&m.in[0], sizeof(int), cap), 0);
  CHECK_EQ(coro_chan_new(&m.in[1], sizeof(int), cap), 0);
  CHECK_EQ(coro_chan_new(&m.quit, sizeof(int), 0), 0);
  m.seen = calloc(MS_PROD * MS_ITEMS, 1);
  m.sent = calloc(MS_PROD * MS_ITEMS, 1);
  m.received = 0;
  ms_task pt[MS_PROD], ct[MS_CONS];
  coro_future *pf[MS_PROD], *cf[MS_CONS];
  for (int i = 0; i < MS_CONS; i++) {
    ct[i] = (ms_task){&m, i};
    cf[i] = spawn(ms_cons, &ct[i]);
  }
  for (int i = 0; i < MS_PROD; i++) {
    pt[i] = (ms_task){&m, i};
    pf[i] = spawn(ms_prod, &pt[i]);
  }
  unsigned x = 7;
  for (int k = 0; k < 300; k++) {
    x = x * 1103515245u + 12345u;
    coro_future *f = (x >> 9) & 1 ? cf[(x >> 10) % MS_CONS] : pf[(x >> 10) % MS_PROD];
    if (coro_future_status(f) == CORO_PENDING) coro_cancel(f);
    coro_yield();
  }
  for (int i = 0; i < MS_PROD; i++) {
    int r = join(pf[i]);
    CHECK(r == 0 || r == CORO_ECANCELED);
  }
  /* Drain what is still buffered, then stop the consumers. */
  while (coro_chan_len(m.in[0]) + coro_chan_len(m.in[1]) > 0) coro_yield();
  CHECK_EQ(coro_chan_close(m.quit), 0);
  for (int i = 0; i < MS_CONS; i++) {
    int r = join(cf[i]);
    CHECK(r == 0 || r == CORO_ECANCELED);
  }
  int nsent = 0;
  for (int i = 0; i < MS_PROD * MS_ITEMS; i++) {
    CHECK_EQ(m.seen[i], m.sent[i]);
    nsent += m.sent[i];
  }
  CHECK_EQ(m.received, nsent);
  CHECK_GT(nsent, MS_PROD * MS_ITEMS / 2);
  free(m.seen);
  free(m.sent);
  coro_chan_free(m.in[0]);
  coro_chan_free(m.in[1]);
  coro_chan_free(m.quit);
  return NULL;
}

static void test_select_many_exactly_once(void **state) {
  (void)state;
  for (uintptr_t cap = 0; cap <= 4; cap += 4) {
    assert_coro_ok(coro_run(ms_main, (void *)cap, NULL));
    assert_checks_passed();
  }
}

/* ==== aiochan test_channel.py, ported ============================================== */

/* test_select_works_at_all: a closed channel holding 42. */
static void *aio_works_main(void *arg) {
  (void)arg;
  coro_chan *c;
  CHECK_EQ(coro_chan_new(&c, sizeof(int), 1), 0);
  int v = 42;
  CHECK_EQ(coro_chan_send(c, &v), 0);
  CHECK_EQ(coro_chan_close(c), 0);
  coro_select_case cs;
  set_case(&cs, c, CORO_CHAN_RECV, &v);
  v = 0;
  CHECK_EQ(coro_select(&cs, 1, 0, CORO_FOREVER), 0);
  CHECK_EQ(cs.status, 0);
  CHECK_EQ(v, 42);
  coro_chan_free(c);
  return NULL;
}

static void test_select_aiochan_works_at_all(void **state) {
  (void)state;
  assert_run_ok(aio_works_main);
}

/* test_select_puts: f holds 1 and is closed, e is Chan(1); select a get on
 * f and three puts on e: over 100 runs both channels win, and the value
 * or the put is what it should be. */
static void *aio_puts_main(void *arg) {
  (void)arg;
  int f_hits = 0, e_hits = 0;
  for (int k = 0; k < 100; k++) {
    coro_chan *f, *e;
    CHECK_EQ(coro_chan_new(&f, sizeof(int), 1), 0);
    CHECK_EQ(coro_chan_new(&e, sizeof(int), 1), 0);
    int one = 1, got = 0, p2 = 2, p3 = 3, p4 = 4;
    CHECK_EQ(coro_chan_send(f, &one), 0);
    CHECK_EQ(coro_chan_close(f), 0);
    coro_select_case cs[4];
    set_case(&cs[0], f, CORO_CHAN_RECV, &got);
    set_case(&cs[1], e, CORO_CHAN_SEND, &p2);
    set_case(&cs[2], e, CORO_CHAN_SEND, &p3);
    set_case(&cs[3], e, CORO_CHAN_SEND, &p4);
    int r = coro_select(cs, 4, 0, CORO_FOREVER);
    if (r == 0) {
      f_hits++;
      CHECK_EQ(got, 1);
      CHECK_EQ(coro_chan_len(e), 0);
    } else {
      e_hits++;
      CHECK(r >= 1 && r <= 3);
      CHECK_EQ(coro_chan_len(e), 1);
      int v = 0;
      CHECK_EQ(coro_chan_recv(e, &v), 0);
      CHECK_EQ(v, r + 1);
    }
    coro_chan_free(f);
    coro_chan_free(e);
  }
  CHECK(f_hits > 0 && e_hits > 0);
  return NULL;
}

static void test_select_aiochan_puts(void **state) {
  (void)state;
  assert_run_ok(aio_puts_main);
}

int main(int argc, char **argv) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_select_errors, coro_test_setup, coro_test_teardown),
    cmocka_unit_test_setup_teardown(test_select_ready, coro_test_setup, coro_test_teardown),
    cmocka_unit_test_setup_teardown(test_select_closed, coro_test_setup, coro_test_teardown),
    cmocka_unit_test_setup_teardown(test_select_default, coro_test_setup, coro_test_teardown),
    cmocka_unit_test_setup_teardown(test_select_fair, coro_test_setup, coro_test_teardown),
    cmocka_unit_test_setup_teardown(test_select_puts, coro_test_setup, coro_test_teardown),
    cmocka_unit_test_setup_teardown(test_select_wait_commit, coro_test_setup, coro_test_teardown),
    cmocka_unit_test_setup_teardown(test_select_wait_send, coro_test_setup, coro_test_teardown),
    cmocka_unit_test_setup_teardown(test_select_send_recv_same_chan, coro_test_setup, coro_test_teardown),
    cmocka_unit_test_setup_teardown(test_select_timeout, coro_test_setup, coro_test_teardown),
    cmocka_unit_test_setup_teardown(test_select_cancel_waiting, coro_test_setup, coro_test_teardown),
    cmocka_unit_test_setup_teardown(test_select_cancel_after_commit, coro_test_setup, coro_test_teardown),
    cmocka_unit_test_setup_teardown(test_select_cancel_passes_on, coro_test_setup, coro_test_teardown),
    cmocka_unit_test_setup_teardown(test_select_cancel_after_send, coro_test_setup, coro_test_teardown),
    cmocka_unit_test_setup_teardown(test_select_cancel_after_timeout, coro_test_setup, coro_test_teardown),
    cmocka_unit_test_setup_teardown(test_select_many_exactly_once, coro_test_setup, coro_test_teardown),
    cmocka_unit_test_setup_teardown(test_select_aiochan_works_at_all, coro_test_setup, coro_test_teardown),
    cmocka_unit_test_setup_teardown(test_select_aiochan_puts, coro_test_setup, coro_test_teardown),
  };
  return coro_test_main(argc, argv, tests, NULL, NULL);
}
