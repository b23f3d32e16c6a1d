/* SPDX-License-Identifier: MIT */
/* The inbox of a loop: a mutex-protected FIFO of messages and one
 * uv_async_t (see inbox.h). */
#include <pthread.h>
#include <stdatomic.h>

#include "core/inbox.h"

enum { IB_OPEN, IB_CLOSING, IB_CLOSED };

struct coro__inbox {
  pthread_mutex_t mu;
  coro__msg *head, *tail;
  atomic_int has_msgs;       /* head != NULL, readable without mu */
  atomic_int parked;         /* the loop may block in its poll: wake it */
  int state;                 /* IB_*, under mu */
  atomic_uint refs;
  coro_loop *loop;           /* NULL once closed */
  pthread_t thread;          /* the loop's thread */
};

coro__inbox *coro__loop_inbox(coro_loop *loop) { return loop->inbox; }

/* Guards loop->inbox against its reset at close, for coro__inbox_get from
 * other threads (the loop's thread reads it without the lock). */
static pthread_mutex_t inbox_ptr_mu = PTHREAD_MUTEX_INITIALIZER;

coro__inbox *coro__inbox_get(coro_loop *loop) {
  pthread_mutex_lock(&inbox_ptr_mu);
  coro__inbox *ib = loop->inbox;
  if (ib != NULL) coro__inbox_retain(ib);
  pthread_mutex_unlock(&inbox_ptr_mu);
  return ib;
}

void coro__inbox_retain(coro__inbox *ib) {
  atomic_fetch_add_explicit(&ib->refs, 1, memory_order_relaxed);
}

void coro__inbox_release(coro__inbox *ib) {
  if (ib == NULL) return;
  if (atomic_fetch_sub_explicit(&ib->refs, 1, memory_order_acq_rel) != 1)
    return;
  pthread_mutex_destroy(&ib->mu);
  coro__free(ib);
}

int coro__inbox_post(coro__inbox *ib, coro__msg *m, int flags) {
  pthread_mutex_lock(&ib->mu);
  if (ib->state == IB_CLOSED ||
      (ib->state == IB_CLOSING && (flags & CORO__POST_CALL))) {
    pthread_mutex_unlock(&ib->mu);
    return CORO_EPIPE;
  }
  m->next = NULL;
  int was_empty = ib->head == NULL;
  if (was_empty)
    ib->head = m;
  else
    ib->tail->next = m;
  ib->tail = m;
  /* Under the lock: the handle cannot be closed meanwhile. A non-empty
   * inbox already has a wake-up on its way, or a loop that is awake and
   * will see it; an awake loop needs none (see coro__inbox_park). */
  if (was_empty) {
    atomic_store(&ib->has_msgs, 1);
    if (atomic_load(&ib->parked)) uv_async_send(&ib->loop->async);
  }
  pthread_mutex_unlock(&ib->mu);
  return 0;
}

coro_loop *coro__inbox_loop(coro__inbox *ib) {
  pthread_mutex_lock(&ib->mu);
  coro_loop *loop = ib->loop;
  pthread_mutex_unlock(&ib->mu);
  return loop;
}

int coro__inbox_on_loop_thread(coro__inbox *ib) {
  return pthread_equal(ib->thread, pthread_self());
}

static coro__msg *take_all(coro__inbox *ib) {
  pthread_mutex_lock(&ib->mu);
  coro__msg *m = ib->head;
  ib->head = ib->tail = NULL;
  atomic_store_explicit(&ib->has_msgs, 0, memory_order_relaxed);
  pthread_mutex_unlock(&ib->mu);
  return m;
}

int coro__inbox_has_msgs(const coro__inbox *ib) {
  return atomic_load_explicit(&ib->has_msgs, memory_order_relaxed);
}

/* The parking protocol. A poster that finds the loop parked sends the
 * wake-up; one that finds it awake sends nothing, since the loop looks at
 * the inbox before it may block again. Both sides write their flag, then
 * read the other's, with sequentially consistent operations: at least
 * one of them sees the other's write, so a message never sleeps in a
 * parked loop's inbox. */
int coro__inbox_park(coro__inbox *ib) {
  atomic_store(&ib->parked, 1);
  return atomic_load(&ib->has_msgs);
}

void coro__inbox_unpark(coro__inbox *ib) {
  atomic_store_explicit(&ib->parked, 0, memory_order_relaxed);
}

static void run_all(coro__msg *m) {
  while (m != NULL) {
    coro__msg *next = m->next;
    m->run(m);
    m = next;
  }
}

void coro__inbox_drain(coro_loop *loop) {
  CORO__ASSERT(loop == coro__tls_loop && loop->current == NULL);
  run_all(take_all(loop->inbox));
}

static void async_cb(uv_async_t *h) {
  coro_loop *loop = h->data;
  loop->dispatching++; /* a message may run a program's callback */
  if (loop->parked != 0) loop->woken_by_post = 1;
  run_all(take_all(loop->inbox));
  loop->dispatching--;
}

void coro__loop_ext_add(coro_loop *loop, int delta) {
  size_t before = loop->ext_pending;
  CORO__ASSERT(loop == coro__tls_loop);
  CORO__ASSERT(delta >= 0 || before >= (size_t)-(long)delta);
  loop->ext_pending = (size_t)((long)before + delta);
  if (before == 0 && loop->ext_pending > 0)
    uv_ref((uv_handle_t *)&loop->async);
  else if (before > 0 && loop->ext_pending == 0)
    uv_unref((uv_handle_t *)&loop->async);
}

int coro__inbox_open(coro_loop *loop) {
  coro__inbox *ib = coro__calloc(1, sizeof(*ib));
  if (ib == NULL) return CORO_ENOMEM;
  int r = uv_async_init(loop->uv, &loop->async, async_cb);
  if (r != 0) {
    coro__free(ib);
    return r;
  }
  loop->async.data = loop;
  uv_unref((uv_handle_t *)&loop->async);
  pthread_mutex_init(&ib->mu, NULL);
  atomic_init(&ib->refs, 1);
  atomic_init(&ib->has_msgs, 0);
  atomic_init(&ib->parked, 1); /* until the loop says it is awake */
  ib->state = IB_OPEN;
  ib->loop = loop;
  ib->thread = pthread_self();
  loop->inbox = ib;
  return 0;
}

void coro__inbox_closing(coro_loop *loop) {
  coro__inbox *ib = loop->inbox;
  pthread_mutex_lock(&ib->mu);
  if (ib->state == IB_OPEN) ib->state = IB_CLOSING;
  pthread_mutex_unlock(&ib->mu);
}

void coro__inbox_close(coro_loop *loop) {
  coro__inbox *ib = loop->inbox;
  /* Whatever arrived before the close still runs: completions of jobs
   * whose awaiters are gone dispose of their results there. */
  run_all(take_all(ib));
  pthread_mutex_lock(&ib->mu);
  ib->state = IB_CLOSED;
  ib->loop = NULL;
  coro__msg *late = ib->head;
  ib->head = ib->tail = NULL;
  pthread_mutex_unlock(&ib->mu);
  run_all(late);
  uv_close((uv_handle_t *)&loop->async, NULL);
  pthread_mutex_lock(&inbox_ptr_mu);
  loop->inbox = NULL;
  pthread_mutex_unlock(&inbox_ptr_mu);
  coro__inbox_release(ib);
}
