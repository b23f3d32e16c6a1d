/* SPDX-License-Identifier: MIT */
/* Channels: a ring buffer, two FIFOs of waiters, and a bridge that runs the
 * operations of other threads and loops on the channel's own loop.
 *
 * Invariants (single-threaded: only c's loop thread touches c):
 *  - receivers wait only while nothing is buffered (recvq non-empty implies
 *    len == 0), senders only while the buffer is full (sendq non-empty
 *    implies len >= cap); an unbuffered channel (cap 0) never has plain
 *    waiters in both queues at once;
 *  - a value is copied once from the sender's memory, into the buffer or
 *    straight into a waiting receiver's memory, and is then owned by the
 *    receiver; a receiver cancelled before it ran gives it back
 *    (coro__chan_put_back), so no value is lost or received twice;
 *  - hand-off is FIFO: the first waiter of a queue is always served first,
 *    and whoever arrives later never overtakes a waiter (no barging).
 * Nothing here allocates in steady state: waiters live on the waiting
 * task's stack (or in a select case), timers in the waiter. */
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
 * capacity if it is full (rare: only after a cancelled receiver). */
static int ring_push_front(coro_chan *c, const void *elem) {
  if (c->len == c->slots) {
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

int coro__chan_do_recv(coro_chan *c, void *elem) {
  if (c->len > 0) {
    ring_pop(c, elem);
    if (c->len < c->cap) {
      /* Room now: the first waiting sender's value goes in. */
      chan_waiter *s = pop_waiter(&c->sendq);
      if (s != NULL) {
        ring_push(c, s->elem);
        complete(s, 0);
      }
    }
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
  coro__free(c->buf);
  coro__free(c);
}

void coro__chan_ungrant(coro_chan *c) {
  c->granted--;
  if (c->freed && c->granted == 0) chan_destroy(c);
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
  coro__queue_init(&c->sendq);
  coro__queue_init(&c->recvq);
  *out = c;
  return 0;
}

/* Close on the loop's thread: wake every waiter. */
static void close_local(coro_chan *c) {
  if (c->closed) return;
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
  if (c->granted > 0)
    c->freed = 1; /* the last receiver to run frees it */
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
  int r = coro__task_suspend(t, plain_cancel, &pw.w);
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
  int ready = op->kind == OP_SEND ? chan__can_send(c) : chan__can_recv(c);
  if (ready) {
    remote_finish(op, op->kind == OP_SEND ? coro__chan_do_send(c, op->elem)
                                          : coro__chan_do_recv(c, op->elem));
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
    coro__task *t = coro__task_current();
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
    int w = coro__task_suspend(t, remote_task_cancel, &op);
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
  return remote_call(c, (void *)elem, OP_SEND, timeout_ms);
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
