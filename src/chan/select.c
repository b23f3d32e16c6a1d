/* SPDX-License-Identifier: MIT */
/* Select: commit exactly one of several channel operations.
 *
 * If some cases are ready at once, one of them is chosen (uniformly at
 * random, or the first with CORO_SELECT_PRIORITY) and performed. Otherwise
 * the select links one waiter per case into its channel (the waiter lives in
 * the case's private storage, so nothing is allocated) and suspends. The
 * first counterpart that reaches one of them completes it and, in the same
 * call, unlinks all the others (chan.c sel_commit), so no other channel can
 * consume anything on behalf of this select afterwards. */
#include "chan/chan-internal.h"

CORO__STATIC_ASSERT(sizeof(chan_waiter) <= sizeof(((coro_select_case *)0)->priv_),
                    "coro_select_case.priv_ too small for a waiter");

/* A cheap per-thread PRNG (xorshift64*), seeded without a syscall. */
static _Thread_local uint64_t rng_state;

static uint64_t rng_next(void) {
  uint64_t x = rng_state;
  if (x == 0) x = (uint64_t)(uintptr_t)&rng_state ^ 0x9e3779b97f4a7c15ull;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  rng_state = x;
  return x * 0x2545f4914f6cdd1dull;
}

static int case_ready(const coro_select_case *cs) {
  return cs->op == CORO_CHAN_SEND ? chan__can_send(cs->chan)
                                  : chan__can_recv(cs->chan);
}

static void unlink_all(chan_sel *s) {
  for (size_t i = 0; i < s->n; i++) {
    chan_waiter *w = chan__case_waiter(&s->cases[i]);
    if (s->cases[i].chan != NULL && coro__queue_linked(&w->node))
      coro__queue_remove(&w->node);
  }
}

static void sel_timer_cb(coro__timer *tm) {
  chan_sel *s = coro__container_of(tm, chan_sel, timer);
  if (s->committed != NULL) return;
  unlink_all(s);
  coro__task_wake(s->task, CORO_ETIMEDOUT);
}

/* Cancel hook. Not committed yet: withdraw every case. Committed but not
 * run: a received value is given back (the select reports -ECANCELED); a
 * send that went out stays done and the cancellation is kept. */
static int sel_cancel(coro__task *t, void *arg) {
  chan_sel *s = arg;
  (void)t;
  chan_waiter *w = s->committed;
  if (w == NULL) {
    unlink_all(s);
    return CORO__CANCEL_ABORT;
  }
  if (w->op == CORO_CHAN_SEND)
    return w->status == 0 ? CORO__CANCEL_LATER : CORO__CANCEL_ABORT;
  if (w->handed) {
    if (coro__chan_put_back(w->c, w->elem) != 0) return CORO__CANCEL_LATER;
    w->handed = 0;
  }
  return CORO__CANCEL_ABORT;
}

int coro_select(coro_select_case *cases, size_t n, int flags,
                int64_t timeout_ms) {
  if ((cases == NULL && n > 0) || timeout_ms < CORO_FOREVER ||
      (flags & ~(CORO_SELECT_DEFAULT | CORO_SELECT_PRIORITY)) != 0)
    return CORO_EINVAL;
  coro__task *t = coro__task_for_wait();
  for (size_t i = 0; i < n; i++) {
    coro_select_case *cs = &cases[i];
    if (cs->chan == NULL) continue;
    if (cs->op != CORO_CHAN_SEND && cs->op != CORO_CHAN_RECV)
      return CORO_EINVAL;
    if (cs->elem == NULL && cs->chan->esz > 0) return CORO_EINVAL;
    if (n > UINT32_MAX) return CORO_EINVAL;
  }
  if (t == NULL) return CORO_EPERM;
  coro_loop *loop = t->fut.loop;
  for (size_t i = 0; i < n; i++)
    if (cases[i].chan != NULL && !coro__chan_on_loop(cases[i].chan, loop))
      return CORO_EPERM;

  /* Ready at once? Count, then pick one uniformly (or the first). */
  size_t nready = 0, first = n;
  for (size_t i = 0; i < n; i++) {
    if (cases[i].chan != NULL && case_ready(&cases[i])) {
      if (nready++ == 0) first = i;
    }
  }
  if (nready > 0) {
    size_t pick = first;
    if (nready > 1 && !(flags & CORO_SELECT_PRIORITY)) {
      size_t k = (size_t)(rng_next() % nready);
      for (size_t i = first; i < n; i++) {
        if (cases[i].chan != NULL && case_ready(&cases[i]) && k-- == 0) {
          pick = i;
          break;
        }
      }
    }
    coro_select_case *cs = &cases[pick];
    cs->status = cs->op == CORO_CHAN_SEND
                     ? coro__chan_do_send(cs->chan, cs->elem)
                     : coro__chan_do_recv(cs->chan, cs->elem);
    return (int)pick;
  }
  if (flags & CORO_SELECT_DEFAULT) return CORO_EAGAIN;
  if (timeout_ms == 0) return CORO_ETIMEDOUT;

  chan_sel s;
  s.task = t;
  s.cases = cases;
  s.n = n;
  s.committed = NULL;
  coro__timer_init(&s.timer, sel_timer_cb);
  for (size_t i = 0; i < n; i++) {
    coro_select_case *cs = &cases[i];
    if (cs->chan == NULL) continue;
    chan_waiter *w = chan__case_waiter(cs);
    w->c = cs->chan;
    w->elem = cs->elem;
    w->task = t;
    w->sel = &s;
    w->status = 0;
    w->op = (uint8_t)cs->op;
    w->done = 0;
    w->handed = 0;
    w->idx = (uint32_t)i;
    coro__queue_push(cs->op == CORO_CHAN_SEND ? &cs->chan->sendq
                                              : &cs->chan->recvq,
                     &w->node);
  }
  if (timeout_ms > 0) {
    int r = coro__timer_start(loop, &s.timer, (uint64_t)timeout_ms);
    if (r != 0) {
      unlink_all(&s);
      return r;
    }
  }
  int r = coro__task_suspend(t, sel_cancel, &s, "select");
  coro__timer_stop(loop, &s.timer);
  if (r >= 0) {
    chan_waiter *w = s.committed;
    cases[r].status = w->status;
    if (w->handed) coro__chan_ungrant(w->c);
  }
  return r;
}
