/* SPDX-License-Identifier: MIT */
/* Signals on uv_signal_t.
 *
 * libuv's handler runs on whatever thread the kernel picks and writes one
 * message per delivery into the loop's signal pipe; the loop then calls
 * each started handle of that signal, so several objects watching one
 * signal each count every delivery. Deliveries are counted from
 * coro_signal_new on, whether or not a task waits; the first waiter (FIFO)
 * takes the whole count.
 *
 * Note that the kernel merges a standard signal sent again while one is
 * still pending: two kill(2)s before the handler ran may count as one. A
 * signal a thread raises to itself (raise(3)) is handled before raise
 * returns, so each raise counts.
 *
 * The handle is referenced only while a task waits on it: a task waiting
 * for a signal keeps the loop alive (a program waiting for SIGTERM is not
 * stuck), and a watcher nobody waits on does not keep a finished program
 * running. The struct is freed once its handle is closed and no task is
 * still inside coro_signal_wait on it; one the program did not free is
 * freed when its loop ends. */
#include <signal.h>
#include <uv.h>

#include "io/io-internal.h"
#include "sync/sync.h" /* the waiter with its timeout, coro__sw */

struct coro_signal {
  uv_signal_t h;
  coro__io_obj obj;    /* listed on the loop until freed */
  coro_loop *loop;
  coro__queue waiters; /* coro__sw.node, FIFO */
  unsigned pending;    /* deliveries nobody has taken yet */
  unsigned users;      /* tasks suspended in coro_signal_wait */
  uint8_t freed;
  uint8_t handle_closed;
};

static void sig_maybe_free(coro_signal *s) {
  if (s->freed && s->handle_closed && s->users == 0) coro__free(s);
}

static void sig_close_cb(uv_handle_t *h) {
  coro_signal *s = h->data;
  s->handle_closed = 1;
  sig_maybe_free(s);
}

static void sig_cb(uv_signal_t *h, int signum) {
  (void)signum;
  coro_signal *s = h->data;
  s->pending++;
  coro__sw *w = coro__sw_first(&s->waiters);
  if (w == NULL) return;
  unsigned n = s->pending;
  s->pending = 0;
  coro__sw_wake(w, n > (unsigned)INT32_MAX ? INT32_MAX : (int)n, 1);
}

/* The loop ends with s not freed: free it (no task is left to wait). */
static void sig_loop_end(coro__io_obj *o) {
  coro_signal_free(coro__container_of(o, coro_signal, obj));
}

static int catchable(int signum) {
  return signum > 0 && signum < NSIG && signum != SIGKILL &&
         signum != SIGSTOP;
}

int coro_signal_new(coro_signal **out, int signum) {
  if (out != NULL) *out = NULL;
  if (out == NULL || !catchable(signum)) return CORO_EINVAL;
  coro_loop *loop = coro__tls_loop;
  if (loop == NULL) return CORO_EPERM;
  coro_signal *s = coro__calloc(1, sizeof(*s));
  if (s == NULL) return CORO_ENOMEM;
  s->loop = loop;
  coro__queue_init(&s->waiters);
  int r = uv_signal_init(loop->uv, &s->h);
  if (r != 0) {
    coro__free(s);
    return r;
  }
  s->h.data = s;
  r = uv_signal_start(&s->h, sig_cb, signum);
  if (r != 0) {
    s->freed = 1;
    uv_close((uv_handle_t *)&s->h, sig_close_cb);
    return r;
  }
  uv_unref((uv_handle_t *)&s->h);
  coro__io_track(loop, &s->obj, sig_loop_end);
  *out = s;
  return 0;
}

/* A waiter handed the deliveries keeps them: the cancellation waits for
 * its next suspension. */
static int sig_cancel(coro__task *t, void *arg) {
  coro__sw *w = arg;
  (void)t;
  if (w->granted) return CORO__CANCEL_LATER;
  coro__sw_unwait(w);
  return CORO__CANCEL_ABORT;
}

int coro_signal_wait(coro_signal *s, int64_t timeout_ms) {
  if (s == NULL || timeout_ms < CORO_FOREVER) return CORO_EINVAL;
  coro__task *t = coro__task_for_wait();
  if (t == NULL || t->fut.loop != s->loop) return CORO_EPERM;
  if (s->freed) return CORO_EPIPE;
  /* Deliveries already counted go to a caller only if nobody is ahead of
   * it in the queue (they would have taken them). */
  if (s->pending > 0 && coro__queue_empty(&s->waiters)) {
    unsigned n = s->pending;
    s->pending = 0;
    return n > (unsigned)INT32_MAX ? INT32_MAX : (int)n;
  }
  if (timeout_ms == 0) return CORO_ETIMEDOUT;
  coro__sw w;
  coro__sw_init(&w, t, s);
  if (s->users++ == 0) uv_ref((uv_handle_t *)&s->h);
  int r = coro__sw_wait(&w, &s->waiters, timeout_ms, sig_cancel, "signal");
  if (--s->users == 0) {
    if (s->freed)
      sig_maybe_free(s);
    else
      uv_unref((uv_handle_t *)&s->h);
  }
  return r;
}

void coro_signal_free(coro_signal *s) {
  if (s == NULL || s->freed || s->loop != coro__tls_loop) return;
  s->freed = 1;
  coro__io_untrack(&s->obj);
  coro__sw_wake_all(&s->waiters, CORO_EPIPE);
  uv_close((uv_handle_t *)&s->h, sig_close_cb);
}
