/* SPDX-License-Identifier: MIT */
/* Channels: a ring buffer, two FIFOs of waiters, and a bridge that runs the
 * operations of other threads and loops on the channel's own loop.
 *
 * Invariants (single-threaded: only c's loop thread touches c, except
 * the staging part of the "credit" section, which has its own mutex):
 *  - receivers wait only while nothing is buffered (recvq non-empty implies
 *    len == 0), senders only while the buffer is full (sendq non-empty
 *    implies len + xres >= cap, xres being the slots reserved for values
 *    staged by other threads); an unbuffered channel (cap 0) never has
 *    plain waiters in both queues at once;
 *  - a value is copied once from the sender's memory, into the buffer or
 *    straight into a waiting receiver's memory, and is then owned by the
 *    receiver; a receiver cancelled before it ran gives it back
 *    (coro__chan_put_back), so no value is lost or received twice;
 *  - hand-off is FIFO: the first waiter of a queue is always served first,
 *    and whoever arrives later never overtakes a waiter (no barging).
 * Nothing here allocates in steady state: waiters live on the waiting
 * task's stack (or in a select case), timers in the waiter.
 *
 * Other threads reach the channel through its loop's inbox: a full round
 * trip per operation ("other threads and loops" below), except a send into
 * a buffered channel while its loop has given credit ("credit" below),
 * which only copies the value into a staging ring under a mutex. */
#include <pthread.h>
#include <string.h>

#include "chan/chan-internal.h"

/* ---- the ring ------------------------------------------------------------ */

/* Copy one value; the common sizes become plain moves (no call). */
static inline void copy_elem(void *dst, const void *src, size_t n) {
  switch (n) {
  case 0: return;
  case 4: memcpy(dst, src, 4); return;
  case 8: memcpy(dst, src, 8); return;
  case 16: memcpy(dst, src, 16); return;
  default: memcpy(dst, src, n); return;
  }
}

/* Address of the i-th buffered element (NULL for elements of size 0,
 * which have no storage). */
static inline unsigned char *slot(coro_chan *c, size_t i) {
  if (c->esz == 0) return NULL;
  size_t k = c->head + i;
  if (k >= c->slots) k -= c->slots;
  return c->buf + k * c->esz;
}

static void ring_push(coro_chan *c, const void *elem) {
  copy_elem(slot(c, c->len), elem, c->esz);
  c->len++;
}

static void ring_pop(coro_chan *c, void *elem) {
  copy_elem(elem, slot(c, 0), c->esz);
  if (++c->head == c->slots) c->head = 0;
  c->len--;
}

/* Put a value back in front of the others, growing the ring past the
 * capacity if it is full (rare: only after a cancelled receiver). Slots
 * reserved for remote senders count as full: a drain must find them. */
static int ring_push_front(coro_chan *c, const void *elem) {
  if (c->len + c->xres >= c->slots) {
    size_t ns = c->slots > 0 ? c->slots * 2 : 1;
    unsigned char *nb = NULL;
    if (c->esz > 0) {
      if (ns > SIZE_MAX / c->esz) return CORO_ENOMEM;
      nb = coro__malloc(ns * c->esz);
      if (nb == NULL) return CORO_ENOMEM;
      for (size_t i = 0; i < c->len; i++)
        memcpy(nb + i * c->esz, slot(c, i), c->esz);
      coro__free(c->buf);
    }
    c->buf = nb;
    c->slots = ns;
    c->head = 0;
  }
  c->head = c->head == 0 ? c->slots - 1 : c->head - 1;
  copy_elem(slot(c, 0), elem, c->esz);
  c->len++;
  return 0;
}

/* ---- waiters --------------------------------------------------------------- */

static void sel_commit(chan_waiter *w) {
  chan_sel *s = w->sel;
  s->committed = w;
  /* Withdraw every other case before anything else runs. */
  for (size_t i = 0; i < s->n; i++) {
    chan_waiter *o = chan__case_waiter(&s->cases[i]);
    if (o != w && s->cases[i].chan != NULL && coro__queue_linked(&o->node))
      coro__queue_remove(&o->node);
  }
  coro__task_wake(s->task, (int)w->idx);
}

/* w was unlinked by the caller; its value (if any) was copied. */
static void complete(chan_waiter *w, int status) {
  w->done = 1;
  w->status = status;
  if (w->op == CORO_CHAN_RECV && status == 0) {
    w->handed = 1;
    w->c->granted++;
  }
  if (w->sel != NULL)
    sel_commit(w);
  else
    coro__task_wake(w->task, status);
}

static chan_waiter *pop_waiter(coro__queue *q) {
  coro__queue *e = coro__queue_pop(q);
  return e != NULL ? coro__container_of(e, chan_waiter, node) : NULL;
}

int coro__chan_do_send(coro_chan *c, const void *elem) {
  if (c->closed) return CORO_EPIPE;
  chan_waiter *r = pop_waiter(&c->recvq);
  if (r != NULL) {
    /* Straight from the sender's memory into the receiver's. */
    copy_elem(r->elem, elem, c->esz);
    complete(r, 0);
    return 0;
  }
  ring_push(c, elem);
  return 0;
}

static void grant_half(coro_chan *c);

int coro__chan_do_recv(coro_chan *c, void *elem) {
  if (c->len > 0) {
    ring_pop(c, elem);
    if (c->len + c->xres < c->cap) {
      /* Room now: the first waiting sender's value goes in. */
      chan_waiter *s = pop_waiter(&c->sendq);
      if (s != NULL) {
        ring_push(c, s->elem);
        complete(s, 0);
      }
    }
    if (CORO__UNLIKELY(c->xactive)) grant_half(c);
    return 0;
  }
  chan_waiter *s = pop_waiter(&c->sendq);
  if (s != NULL) {
    copy_elem(elem, s->elem, c->esz);
    complete(s, 0);
    return 0;
  }
  return CORO_EPIPE; /* closed and drained */
}

static void chan_destroy(coro_chan *c) {
  if (c->cap > 0) {
    pthread_mutex_destroy(&c->xmu);
    coro__free(c->xbuf); /* staged values are dropped like buffered ones */
  }
  coro__free(c->buf);
  coro__free(c);
}

void coro__chan_ungrant(coro_chan *c) {
  c->granted--;
  if (c->freed && c->granted == 0 && !c->xdrain_due) chan_destroy(c);
}

int coro__chan_put_back(coro_chan *c, const void *elem) {
  if (c->freed) return -1;
  chan_waiter *r = pop_waiter(&c->recvq);
  if (r != NULL) {
    copy_elem(r->elem, elem, c->esz);
    complete(r, 0);
  } else if (ring_push_front(c, elem) != 0) {
    return -1;
  }
  c->granted--;
  return 0;
}

/* ---- credit: cheap sends from other threads --------------------------------- */

/* A send from another thread (a plain thread or a task of another loop)
 * into a buffered channel needs no round trip while the channel's loop has
 * given credit: the sender copies the value into a staging ring (xbuf,
 * under xmu), spends one unit of credit and makes sure the channel's drain
 * message (xdrain) is queued in the loop's inbox. The inbox wakes its loop
 * at most once per batch of messages, and a sender that finds the drain
 * already queued posts nothing: it costs one lock and a copy. Without credit the send takes the round trip
 * (remote_call), which waits for room, times out and is cancelled like any
 * operation of another thread.
 *
 * The loop keeps room for everything it has granted: xres counts the ring
 * slots reserved for staged values and unused credit, and a local send has
 * room only while len + xres < cap. Only the loop thread changes xres: a
 * grant adds to it (and to xcredit, under xmu), a drain subtracts what it
 * delivers, a revoke or a close subtracts the credit it takes back. A stage
 * only moves one unit from credit to staged. So xres == xcredit + staged
 * (counting what a running drain is delivering): the staging ring of cap
 * elements never overflows, a stage never writes over a slot a drain is
 * reading, and a drain always finds room in the ring.
 *
 * The drain runs on the loop thread: it takes every staged value and
 * delivers each as a local send would (to the first waiting receiver, else
 * into the ring), then grants again. FIFO per sender holds: a sender's
 * values are staged in order and delivered in that order, and its next
 * round trip is posted after the drain that carries them (the drain is
 * queued before a stage returns). Values of different senders interleave
 * in the order the loop sees them, as for any two senders running at once.
 *
 * Grants give g = cap - len - xres: after a drain, after a round-trip send
 * that completed at once, and in a receive once g reaches cap / 2 (one lock
 * per cap / 2 receives). Never while a sender waits in sendq (credit would
 * let later remote sends overtake it), nor once the channel is closed or
 * its loop is shutting down. A local sender that finds only reservations in
 * its way takes back the unused credit (coro__chan_revoke), so credit that
 * nobody uses never blocks a send while the ring has room. A channel that
 * no other thread has sent to never grants: its receives pay one branch.
 *
 * Ending: a close first delivers what is staged (those sends have returned
 * 0), then marks the staging side closed, so later remote sends fail at
 * once with -EPIPE. When the inbox refuses the drain (the loop is shutting
 * down or has ended) or a remote send fails with -EPIPE, xdead makes every
 * later remote send fail at once as well. A drain queued before the inbox
 * closed still runs (core/inbox.h) and delivers into the ring; what is
 * buffered then is dropped with the channel. A drain still queued when the
 * channel is freed frees it when it runs (xdrain_due). */

/* Address of staging position pos (< 2 * cap); NULL for size 0. */
static inline unsigned char *xslot(coro_chan *c, size_t pos) {
  if (c->esz == 0) return NULL;
  if (pos >= c->cap) pos -= c->cap;
  return c->xbuf + pos * c->esz;
}

/* Any thread but c's loop thread: stage elem if there is credit. 0, -EPIPE,
 * or 1: no credit (take the round trip). */
static int stage(coro_chan *c, const void *elem) {
  int r = 0;
  pthread_mutex_lock(&c->xmu);
  if (c->xclosed || c->xdead) {
    r = CORO_EPIPE;
  } else if (c->xcredit == 0) {
    r = 1;
  } else if (!c->xposted &&
             coro__inbox_post(c->ib, &c->xdrain, CORO__POST_CALL) != 0) {
    /* Posted while holding xmu (order: xmu, then the inbox's mutex; the
     * loop thread never holds both), so the drain cannot run before the
     * value below is staged. */
    c->xdead = 1;
    r = CORO_EPIPE;
  } else {
    c->xposted = 1;
    copy_elem(xslot(c, c->xhead + c->xcount), elem, c->esz);
    c->xcount++;
    c->xcredit--;
  }
  pthread_mutex_unlock(&c->xmu);
  return r;
}

/* Under xmu: take every staged value; *h is the position of the first. */
static size_t take_staged_locked(coro_chan *c, size_t *h) {
  size_t n = c->xcount;
  *h = c->xhead;
  c->xhead = c->xhead + n >= c->cap ? c->xhead + n - c->cap : c->xhead + n;
  c->xcount = 0;
  return n;
}

/* Loop thread: deliver n values taken from position h, each as a local
 * send (the slots were reserved: the ring has room). */
static void deliver_staged(coro_chan *c, size_t h, size_t n) {
  for (size_t i = 0; i < n; i++) {
    const unsigned char *e = xslot(c, h + i);
    CORO__ASSERT(c->xres > 0 && c->len + c->xres <= c->slots);
    c->xres--;
    chan_waiter *r = pop_waiter(&c->recvq);
    if (r != NULL) {
      copy_elem(r->elem, e, c->esz);
      complete(r, 0);
    } else {
      ring_push(c, e);
    }
  }
}

/* After a drain: values that went straight to receivers freed reserved
 * slots, so waiting senders may go in now (first come first); a value that
 * went into the ring while a receiver waits goes out to it. */
static void settle(coro_chan *c) {
  for (;;) {
    chan_waiter *w;
    if (c->len > 0 && (w = pop_waiter(&c->recvq)) != NULL) {
      ring_pop(c, w->elem);
      complete(w, 0);
    } else if (c->len + c->xres < c->cap &&
               (w = pop_waiter(&c->sendq)) != NULL) {
      ring_push(c, w->elem);
      complete(w, 0);
    } else {
      return;
    }
  }
}

/* Loop thread: give remote senders credit for every free slot. (While a
 * sender waits the invariants leave no free slot anyway; the check keeps
 * its place from depending on that.) */
static void grant(coro_chan *c) {
  if (c->closed || c->loop->closing || !coro__queue_empty(&c->sendq) ||
      c->len + c->xres >= c->cap)
    return;
  size_t g = c->cap - c->len - c->xres;
  unsigned char *nb = NULL;
  if (c->xbuf == NULL && c->esz > 0) {
    /* cap * esz does not overflow: the ring has that size. */
    nb = coro__malloc(c->cap * c->esz);
    if (nb == NULL) return; /* remote sends keep taking the round trip */
  }
  pthread_mutex_lock(&c->xmu);
  if (nb != NULL) c->xbuf = nb;
  if (!c->xclosed && !c->xdead) {
    c->xcredit += g;
    c->xres += g;
  }
  pthread_mutex_unlock(&c->xmu);
}

/* A receive made room: grant once half the capacity is grantable. */
static void grant_half(coro_chan *c) {
  size_t used = c->len + c->xres;
  if (used < c->cap && (c->cap - used) * 2 >= c->cap) grant(c);
}

int coro__chan_revoke(coro_chan *c) {
  pthread_mutex_lock(&c->xmu);
  size_t k = c->xcredit;
  c->xcredit = 0;
  pthread_mutex_unlock(&c->xmu);
  c->xres -= k;
  return c->len + c->xres < c->cap;
}

/* The drain message, on the loop thread. */
static void drain_run(coro__msg *m) {
  coro_chan *c = coro__container_of(m, coro_chan, xdrain);
  if (c->freed) {
    /* Freed while this was queued; its close delivered every value and no
     * other thread uses c any more. */
    c->xdrain_due = 0;
    if (c->granted == 0) chan_destroy(c);
    return;
  }
  size_t h;
  pthread_mutex_lock(&c->xmu);
  size_t n = take_staged_locked(c, &h);
  c->xposted = 0; /* the next stage queues this message again */
  pthread_mutex_unlock(&c->xmu);
  deliver_staged(c, h, n);
  settle(c);
  grant(c);
}

/* Loop thread, closing c: deliver what is staged (those sends have
 * returned 0), then let no remote send stage any more. */
static void close_staging(coro_chan *c) {
  size_t h;
  pthread_mutex_lock(&c->xmu);
  size_t n = take_staged_locked(c, &h);
  c->xclosed = 1;
  size_t k = c->xcredit;
  c->xcredit = 0;
  pthread_mutex_unlock(&c->xmu);
  c->xres -= k;
  deliver_staged(c, h, n);
  CORO__ASSERT(c->xres == 0);
}

/* ---- life ------------------------------------------------------------------ */

int coro_chan_new(coro_chan **out, size_t elem_size, size_t capacity) {
  if (out == NULL) return CORO_EINVAL;
  coro_loop *loop = coro__tls_loop;
  if (loop == NULL) return CORO_EPERM;
  if (elem_size > 0 && capacity > SIZE_MAX / elem_size) return CORO_EINVAL;
  coro_chan *c = coro__calloc(1, sizeof(*c));
  if (c == NULL) return CORO_ENOMEM;
  if (elem_size > 0 && capacity > 0) {
    c->buf = coro__malloc(elem_size * capacity);
    if (c->buf == NULL) {
      coro__free(c);
      return CORO_ENOMEM;
    }
  }
  c->loop = loop;
  c->loop_gen = loop->gen;
  c->ib = coro__loop_inbox(loop);
  coro__inbox_retain(c->ib);
  c->esz = elem_size;
  c->cap = capacity;
  c->slots = capacity;
  if (capacity > 0) {
    pthread_mutex_init(&c->xmu, NULL);
    c->xdrain.run = drain_run;
  }
  coro__queue_init(&c->sendq);
  coro__queue_init(&c->recvq);
  *out = c;
  return 0;
}

/* Close on the loop's thread: wake every waiter. */
static void close_local(coro_chan *c) {
  if (c->closed) return;
  if (c->cap > 0) close_staging(c);
  c->closed = 1;
  chan_waiter *w;
  while ((w = pop_waiter(&c->sendq)) != NULL) complete(w, CORO_EPIPE);
  while ((w = pop_waiter(&c->recvq)) != NULL) complete(w, CORO_EPIPE);
  if (c->shared) {
    c->shared = 0;
    coro__loop_ext_add(c->loop, -1);
  }
}

void coro_chan_free(coro_chan *c) {
  if (c == NULL) return;
  coro_loop *alive = coro__inbox_loop(c->ib);
  if (alive != NULL && alive == coro__tls_loop) close_local(c);
  coro__inbox_release(c->ib);
  c->ib = NULL;
  if (c->cap > 0) {
    /* A drain still queued in the loop's inbox runs later (once the loop
     * has ended nothing is queued any more: every message has run). */
    pthread_mutex_lock(&c->xmu);
    c->xdrain_due = c->xposted;
    pthread_mutex_unlock(&c->xmu);
    CORO__ASSERT(!c->xdrain_due || alive != NULL);
  }
  if (c->granted > 0 || c->xdrain_due)
    c->freed = 1; /* the last receiver to run, or the drain, frees it */
  else
    chan_destroy(c);
}

size_t coro_chan_len(const coro_chan *c) { return c != NULL ? c->len : 0; }
size_t coro_chan_cap(const coro_chan *c) { return c != NULL ? c->cap : 0; }
int coro_chan_closed(const coro_chan *c) {
  return c != NULL ? c->closed : CORO_EINVAL;
}

int coro_chan_share(coro_chan *c) {
  if (c == NULL) return CORO_EINVAL;
  if (!coro__chan_on_loop(c, coro__tls_loop)) return CORO_EPERM;
  if (c->closed) return CORO_EPIPE;
  if (!c->shared) {
    c->shared = 1;
    coro__loop_ext_add(c->loop, +1);
  }
  return 0;
}

/* ---- tasks of the channel's loop ------------------------------------------- */

typedef struct plain_wait {
  chan_waiter w;
  coro__timer timer;
} plain_wait;

static void plain_timer_cb(coro__timer *tm) {
  plain_wait *pw = coro__container_of(tm, plain_wait, timer);
  if (!coro__queue_linked(&pw->w.node)) return; /* completed meanwhile */
  coro__queue_remove(&pw->w.node);
  pw->w.done = 1;
  pw->w.status = CORO_ETIMEDOUT;
  coro__task_wake(pw->w.task, CORO_ETIMEDOUT);
}

/* Cancel hook of a plain send / receive. Still waiting: withdraw. Already
 * completed but not run: a receiver gives its value back (it then reports
 * -ECANCELED); a sender whose value went out cannot undo it, so it returns
 * 0 and the cancellation waits for the task's next suspension. */
static int plain_cancel(coro__task *t, void *arg) {
  chan_waiter *w = arg;
  (void)t;
  if (coro__queue_linked(&w->node)) {
    coro__queue_remove(&w->node);
    return CORO__CANCEL_ABORT;
  }
  if (w->op == CORO_CHAN_SEND)
    return w->done && w->status == 0 ? CORO__CANCEL_LATER : CORO__CANCEL_ABORT;
  if (w->handed) {
    if (coro__chan_put_back(w->c, w->elem) != 0) return CORO__CANCEL_LATER;
    w->handed = 0;
  }
  return CORO__CANCEL_ABORT;
}

static int chan_wait(coro_chan *c, coro__task *t, void *elem, int op,
                     int64_t timeout_ms) {
  coro_loop *loop = t->fut.loop;
  plain_wait pw;
  pw.w.c = c;
  pw.w.elem = elem;
  pw.w.task = t;
  pw.w.sel = NULL;
  pw.w.status = 0;
  pw.w.op = (uint8_t)op;
  pw.w.done = 0;
  pw.w.handed = 0;
  pw.w.idx = 0;
  coro__queue_push(op == CORO_CHAN_SEND ? &c->sendq : &c->recvq, &pw.w.node);
  if (timeout_ms > 0) {
    coro__timer_init(&pw.timer, plain_timer_cb);
    int r = coro__timer_start(loop, &pw.timer, (uint64_t)timeout_ms);
    if (r != 0) {
      coro__queue_remove(&pw.w.node);
      return r;
    }
  }
  int r = coro__task_suspend(t, plain_cancel, &pw.w, "channel");
  if (timeout_ms > 0) coro__timer_stop(loop, &pw.timer);
  /* c may be freed by now unless it still counts us as granted. */
  if (pw.w.handed) coro__chan_ungrant(c);
  return r;
}

static int check_task(const coro_chan *c, const void *elem, int64_t ms,
                      coro__task **out) {
  if (c == NULL || (elem == NULL && c->esz > 0) || ms < CORO_FOREVER)
    return CORO_EINVAL;
  coro_loop *loop = coro__tls_loop; /* coro__task_current(), inlined */
  coro__task *t = loop != NULL ? loop->current : NULL;
  if (t != NULL && t->compact) t = NULL; /* a compact task may not wait here */
  if (t == NULL || !coro__chan_on_loop(c, loop)) return CORO_EPERM;
  *out = t;
  return 0;
}

int coro_chan_send_timeout(coro_chan *c, const void *elem, int64_t timeout_ms) {
  coro__task *t;
  int r = check_task(c, elem, timeout_ms, &t);
  if (r != 0) return r;
  if (chan__can_send(c)) return coro__chan_do_send(c, elem);
  if (timeout_ms == 0) return CORO_ETIMEDOUT;
  return chan_wait(c, t, (void *)elem, CORO_CHAN_SEND, timeout_ms);
}

int coro_chan_recv_timeout(coro_chan *c, void *elem, int64_t timeout_ms) {
  coro__task *t;
  int r = check_task(c, elem, timeout_ms, &t);
  if (r != 0) return r;
  if (chan__can_recv(c)) return coro__chan_do_recv(c, elem);
  if (timeout_ms == 0) return CORO_ETIMEDOUT;
  return chan_wait(c, t, elem, CORO_CHAN_RECV, timeout_ms);
}

int coro_chan_send(coro_chan *c, const void *elem) {
  return coro_chan_send_timeout(c, elem, CORO_FOREVER);
}

int coro_chan_recv(coro_chan *c, void *elem) {
  return coro_chan_recv_timeout(c, elem, CORO_FOREVER);
}

int coro_chan_try_send(coro_chan *c, const void *elem) {
  if (c == NULL || (elem == NULL && c->esz > 0)) return CORO_EINVAL;
  if (!coro__chan_on_loop(c, coro__tls_loop)) return CORO_EPERM;
  if (!chan__can_send(c)) return CORO_EAGAIN;
  return coro__chan_do_send(c, elem);
}

int coro_chan_try_recv(coro_chan *c, void *elem) {
  if (c == NULL || (elem == NULL && c->esz > 0)) return CORO_EINVAL;
  if (!coro__chan_on_loop(c, coro__tls_loop)) return CORO_EPERM;
  if (!chan__can_recv(c)) return CORO_EAGAIN;
  return coro__chan_do_recv(c, elem);
}

/* ---- other threads and loops ------------------------------------------------- */

/* An operation of another thread or loop, on the caller's stack (the caller
 * blocks or suspends until c's loop is done with it). It is posted to c's
 * loop; there it completes at once if it can, else a proxy task of c's loop
 * performs it like any task (FIFO with them, cancelled at that loop's
 * shutdown). A plain thread waits on a condition variable; a task of another
 * loop suspends and the outcome comes back through its loop's inbox.
 *
 * Cancelling such a task posts a cancel message to c's loop, which cancels
 * the proxy and answers with an ack; the task resumes once both the outcome
 * and the ack have arrived, so c's loop never touches the struct after the
 * caller has gone. */
enum { OP_SEND = CORO_CHAN_SEND, OP_RECV = CORO_CHAN_RECV, OP_CLOSE = 3 };

typedef struct remote_op {
  coro__msg msg;        /* to c's loop: perform */
  coro__msg cancel;     /* to c's loop: cancel the proxy (task mode) */
  coro__msg reply;      /* to the caller's loop: outcome (task mode) */
  coro__msg ack;        /* to the caller's loop: cancel handled (task mode) */
  coro_chan *c;
  void *elem;
  int kind;             /* OP_* */
  int status;
  uint64_t deadline_ns; /* uv_hrtime() clock; 0 = none */
  int64_t timeout_ms;
  coro_future *proxy;   /* c's loop: the proxy task until it has ended */
  coro__waiter proxy_w; /* c's loop: on proxy's future; reports the outcome */
  int ran;              /* c's loop: the proxy performed the operation */
  /* Plain thread. */
  int task_mode;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int done;
  /* Task of another loop (its loop's thread only). */
  coro__task *task;
  coro_loop *tloop;
  coro__inbox *tib;
  int msgs_due;         /* messages still to arrive before it may resume */
  int cancel_asked;
} remote_op;

static void remote_finish(remote_op *op, int status) {
  if (op->task_mode) {
    op->status = status;
    /* The caller's loop waits for this (ext_pending), so it is taken. */
    (void)coro__inbox_post(op->tib, &op->reply, 0);
    return;
  }
  pthread_mutex_lock(&op->mu);
  op->status = status;
  op->done = 1;
  pthread_cond_signal(&op->cv);
  pthread_mutex_unlock(&op->mu);
}

static int64_t remaining_ms(const remote_op *op) {
  if (op->timeout_ms == CORO_FOREVER) return CORO_FOREVER;
  uint64_t now = uv_hrtime();
  if (now >= op->deadline_ns) return 0;
  return (int64_t)((op->deadline_ns - now + 999999u) / 1000000u);
}

static void *proxy_main(void *arg) {
  remote_op *op = arg;
  int64_t ms = remaining_ms(op);
  op->status = op->kind == OP_SEND ? coro_chan_send_timeout(op->c, op->elem, ms)
                                   : coro_chan_recv_timeout(op->c, op->elem, ms);
  op->ran = 1;
  return NULL;
}

/* The proxy has ended, however: normally, or cancelled before it ever ran
 * (by the caller's cancellation, or its loop's shutdown), in which case
 * nothing was done. The outcome is what the operation returned, not the
 * task's status (a send that went out stays 0 even if a cancellation that
 * came later ends the task cancelled). */
static void proxy_done(coro__waiter *w, coro_future *f) {
  remote_op *op = coro__container_of(w, remote_op, proxy_w);
  (void)f;
  coro_future_release(op->proxy); /* the loop still holds its own */
  op->proxy = NULL;
  remote_finish(op, op->ran ? op->status : CORO_ECANCELED);
}

/* c's loop: perform a posted operation. */
static void remote_run(coro__msg *m) {
  remote_op *op = coro__container_of(m, remote_op, msg);
  coro_chan *c = op->c;
  if (op->kind == OP_CLOSE) {
    close_local(c);
    remote_finish(op, 0);
    return;
  }
  if (op->kind == OP_SEND && c->cap > 0) c->xactive = 1;
  int ready = op->kind == OP_SEND ? chan__can_send(c) : chan__can_recv(c);
  if (ready) {
    int r = op->kind == OP_SEND ? coro__chan_do_send(c, op->elem)
                                : coro__chan_do_recv(c, op->elem);
    /* Credit before the reply: the sender's next sends are cheap. */
    if (op->kind == OP_SEND && c->cap > 0 && r == 0) grant(c);
    remote_finish(op, r);
    return;
  }
  if (remaining_ms(op) == 0) {
    remote_finish(op, CORO_ETIMEDOUT);
    return;
  }
  coro_task_opts o = {.name = "chan-remote", .stack_size = 0};
  int r = coro_spawn_opts(&op->proxy, proxy_main, op, &o);
  if (r != 0) {
    remote_finish(op, r);
    return;
  }
  op->ran = 0;
  op->proxy_w.notify = proxy_done;
  coro__future_add_waiter(op->proxy, &op->proxy_w);
}

/* c's loop: the caller's task was cancelled. */
static void remote_cancel_run(coro__msg *m) {
  remote_op *op = coro__container_of(m, remote_op, cancel);
  if (op->proxy != NULL) coro_cancel(op->proxy);
  (void)coro__inbox_post(op->tib, &op->ack, 0);
}

/* The caller's loop: one of the messages it waits for has arrived. */
static void remote_arrived(remote_op *op) {
  if (--op->msgs_due > 0) return;
  coro__loop_ext_add(op->tloop, -1);
  coro__task_wake(op->task, 0);
}
static void remote_reply_run(coro__msg *m) {
  remote_arrived(coro__container_of(m, remote_op, reply));
}
static void remote_ack_run(coro__msg *m) {
  remote_arrived(coro__container_of(m, remote_op, ack));
}

static int remote_task_cancel(coro__task *t, void *arg) {
  remote_op *op = arg;
  if (t->state == CORO__T_READY) {
    /* Everything has arrived: an operation that happened stays done. */
    return op->status == 0 ? CORO__CANCEL_LATER : CORO__CANCEL_ABORT;
  }
  if (!op->cancel_asked) {
    op->cancel_asked = 1;
    if (op->kind != OP_CLOSE &&
        coro__inbox_post(op->c->ib, &op->cancel, 0) == 0)
      op->msgs_due++;
  }
  return CORO__CANCEL_PASSED;
}

static int remote_call(coro_chan *c, void *elem, int kind, int64_t timeout_ms) {
  remote_op op;
  op.msg.run = remote_run;
  op.cancel.run = remote_cancel_run;
  op.reply.run = remote_reply_run;
  op.ack.run = remote_ack_run;
  op.c = c;
  op.elem = elem;
  op.kind = kind;
  op.status = 0;
  /* Beyond 2^40 ms (35 years) the nanosecond deadline could overflow: no
   * limit (no wait that long ends in practice). */
  if (timeout_ms > ((int64_t)1 << 40)) timeout_ms = CORO_FOREVER;
  op.timeout_ms = timeout_ms;
  op.deadline_ns = timeout_ms > 0
                       ? uv_hrtime() + (uint64_t)timeout_ms * 1000000u
                       : 0;
  op.proxy = NULL;
  op.done = 0;
  op.task = NULL;
  op.cancel_asked = 0;
  coro_loop *mine = coro__tls_loop;
  if (mine != NULL) {
    /* A task of another loop: suspend it, not its thread. */
    coro__task *t = coro__task_for_wait();
    if (t == NULL) return CORO_EPERM;
    op.task_mode = 1;
    op.task = t;
    op.tloop = mine;
    op.tib = coro__loop_inbox(mine);
    op.msgs_due = 1;
    coro__loop_ext_add(mine, +1);
    if (coro__inbox_post(c->ib, &op.msg, CORO__POST_CALL) != 0) {
      coro__loop_ext_add(mine, -1);
      return CORO_EPIPE;
    }
    int w = coro__task_suspend(t, remote_task_cancel, &op, "channel of another loop");
    if (w == CORO_ECANCELED) return CORO_ECANCELED; /* aborted: nothing done */
    if (op.cancel_asked) {
      if (op.status == CORO_ECANCELED) return CORO_ECANCELED;
      /* It completed before the request reached it: keep the request for
       * the next suspension, as a wait that cannot be undone does. */
      t->must_cancel = 1;
      t->pending_cancels++;
    }
    return op.status == CORO_ECANCELED ? CORO_EPIPE : op.status;
  }
  op.task_mode = 0;
  pthread_mutex_init(&op.mu, NULL);
  pthread_cond_init(&op.cv, NULL);
  int r = coro__inbox_post(c->ib, &op.msg, CORO__POST_CALL);
  if (r == 0) {
    pthread_mutex_lock(&op.mu);
    while (!op.done) pthread_cond_wait(&op.cv, &op.mu);
    pthread_mutex_unlock(&op.mu);
    /* A proxy cancelled by its loop's shutdown. */
    r = op.status == CORO_ECANCELED ? CORO_EPIPE : op.status;
  } else {
    r = CORO_EPIPE;
  }
  pthread_cond_destroy(&op.cv);
  pthread_mutex_destroy(&op.mu);
  return r;
}

static int blocking_check(coro_chan *c, const void *elem, int64_t ms) {
  if (c == NULL || (elem == NULL && c->esz > 0) || ms < CORO_FOREVER)
    return CORO_EINVAL;
  if (coro__inbox_on_loop_thread(c->ib))
    return coro__inbox_loop(c->ib) != NULL ? CORO_EDEADLK : CORO_EPIPE;
  return 0;
}

int coro_chan_send_blocking(coro_chan *c, const void *elem,
                            int64_t timeout_ms) {
  int r = blocking_check(c, elem, timeout_ms);
  if (r != 0) return r;
  if (c->cap == 0) return remote_call(c, (void *)elem, OP_SEND, timeout_ms);
  /* Another loop's thread outside a task: refused, as by remote_call. */
  if (coro__tls_loop != NULL && coro__task_current() == NULL)
    return CORO_EPERM;
  r = stage(c, elem);
  if (r <= 0) return r;
  r = remote_call(c, (void *)elem, OP_SEND, timeout_ms);
  if (r == CORO_EPIPE) {
    /* Closed, or the loop is ending: no later send may succeed. */
    pthread_mutex_lock(&c->xmu);
    c->xdead = 1;
    pthread_mutex_unlock(&c->xmu);
  }
  return r;
}

int coro_chan_recv_blocking(coro_chan *c, void *elem, int64_t timeout_ms) {
  int r = blocking_check(c, elem, timeout_ms);
  if (r != 0) return r;
  return remote_call(c, elem, OP_RECV, timeout_ms);
}

int coro_chan_close(coro_chan *c) {
  if (c == NULL) return CORO_EINVAL;
  if (coro__chan_on_loop(c, coro__tls_loop)) {
    if (coro__inbox_loop(c->ib) != c->loop) return CORO_EPIPE; /* ended */
    close_local(c);
    return 0;
  }
  if (coro__inbox_on_loop_thread(c->ib)) return CORO_EPIPE; /* its loop ended */
  return remote_call(c, NULL, OP_CLOSE, CORO_FOREVER);
}
