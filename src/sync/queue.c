/* SPDX-License-Identifier: MIT */
/* Queues: FIFO, LIFO and priority, bounded or not, with asyncio 3.13's
 * task_done/join and shutdown, and trio's hand-off fairness.
 *
 * Invariants: getters wait only while nothing is stored; putters wait only
 * while the store is full. A put with getters waiting gives the item to
 * the first getter (it owns it from then on; nobody can take it with a
 * get_nowait in between). A get from a full queue with putters waiting
 * moves the first putter's item into the store in the same call, so a
 * consumer never waits for the producer to be scheduled.
 *
 * A getter handed an item and cancelled before it runs passes the item to
 * the next getter, or puts it back at the front (after an immediate
 * shutdown it is dropped like the rest). The store always keeps room for
 * that (cap >= len + handed), so the cancel hook never allocates; the put
 * back may leave one more item than maxsize stored for a while. A putter
 * whose item was moved in has put it: it returns 0, and a cancellation
 * that arrives before it runs is delivered at its next suspension.
 *
 * Storage: a ring buffer (power-of-two capacity, doubling; no allocation
 * per item in steady state) for FIFO and LIFO, a binary min-heap of
 * (item, sequence number) for the priority queue, FIFO among equals. */
#include <string.h>

#include "sync/sync.h"

typedef struct qent {
  void *item;
  uint64_t seq;           /* put order: breaks ties in the heap */
} qent;

struct coro_queue {
  coro_loop *loop;
  int kind;               /* CORO_QUEUE_* */
  int shutdown;           /* 0, SHUT_DRAIN or SHUT_NOW */
  size_t maxsize;         /* 0: unbounded */
  void (*destroy)(void *item);
  coro_queue_cmp cmp;
  qent *buf;
  size_t cap, head, len;  /* ring: head is the front; heap: head == 0 */
  uint64_t seq;
  size_t handed;          /* getters handed an item, not yet run */
  size_t unfinished;      /* put and not yet task_done */
  coro__queue getters, putters, joiners;  /* coro__sw.node, FIFO */
  size_t users;
  int dead;               /* freed while tasks waited (sync.h) */
};

enum { SHUT_DRAIN = 1, SHUT_NOW = 2 };
#define MIN_CAP 8

/* ---- storage ------------------------------------------------------------- */

static int cmp_intptr(const void *a, const void *b) {
  intptr_t x = (intptr_t)a, y = (intptr_t)b;
  return (x > y) - (x < y);
}

static int before(const coro_queue *q, const qent *a, const qent *b) {
  int c = q->cmp(a->item, b->item);
  return c < 0 || (c == 0 && a->seq < b->seq);
}

/* Make room for need entries: 0 or -ENOMEM (nothing changed). */
static int st_reserve(coro_queue *q, size_t need) {
  if (need <= q->cap) return 0;
  size_t cap = q->cap ? q->cap : MIN_CAP;
  while (cap < need) cap *= 2;
  qent *nb = coro__malloc(cap * sizeof(*nb));
  if (nb == NULL) return CORO_ENOMEM;
  for (size_t i = 0; i < q->len; i++)
    nb[i] = q->buf[(q->head + i) & (q->cap - 1)];
  coro__free(q->buf);
  q->buf = nb;
  q->cap = cap;
  q->head = 0;
  return 0;
}

static qent *ring_at(coro_queue *q, size_t i) {
  return &q->buf[(q->head + i) & (q->cap - 1)];
}

static void heap_up(coro_queue *q, size_t i) {
  qent e = q->buf[i];
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (!before(q, &e, &q->buf[p])) break;
    q->buf[i] = q->buf[p];
    i = p;
  }
  q->buf[i] = e;
}

static void heap_down(coro_queue *q, size_t i) {
  qent e = q->buf[i];
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= q->len) break;
    if (c + 1 < q->len && before(q, &q->buf[c + 1], &q->buf[c])) c++;
    if (!before(q, &q->buf[c], &e)) break;
    q->buf[i] = q->buf[c];
    i = c;
  }
  q->buf[i] = e;
}

/* Store e (room reserved by the caller). front: where the next get looks
 * (a put back); the heap orders by item and seq anyway. */
static void st_push(coro_queue *q, qent e, int front) {
  if (q->kind == CORO_QUEUE_PRIORITY) {
    q->buf[q->len++] = e;
    heap_up(q, q->len - 1);
  } else if (front && q->kind == CORO_QUEUE_FIFO) {
    q->head = (q->head - 1) & (q->cap - 1);
    q->buf[q->head] = e;
    q->len++;
  } else {
    q->len++;
    *ring_at(q, q->len - 1) = e;
  }
}

static qent st_pop(coro_queue *q) {
  qent e;
  if (q->kind == CORO_QUEUE_PRIORITY) {
    e = q->buf[0];
    q->buf[0] = q->buf[--q->len];
    if (q->len > 0) heap_down(q, 0);
  } else if (q->kind == CORO_QUEUE_LIFO) {
    e = *ring_at(q, q->len - 1);
    q->len--;
  } else {
    e = q->buf[q->head];
    q->head = (q->head + 1) & (q->cap - 1);
    q->len--;
  }
  return e;
}

/* ---- life ---------------------------------------------------------------- */

int coro_queue_new(coro_queue **out, int kind, size_t maxsize,
                   void (*destroy)(void *item)) {
  if (out == NULL) return CORO_EINVAL;
  if (kind != CORO_QUEUE_FIFO && kind != CORO_QUEUE_LIFO &&
      kind != CORO_QUEUE_PRIORITY)
    return CORO_EINVAL;
  coro_queue *q = coro__malloc(sizeof(*q));
  if (q == NULL) return CORO_ENOMEM;
  memset(q, 0, sizeof(*q));
  q->kind = kind;
  q->maxsize = maxsize;
  q->destroy = destroy;
  q->cmp = cmp_intptr;
  coro__queue_init(&q->getters);
  coro__queue_init(&q->putters);
  coro__queue_init(&q->joiners);
  *out = q;
  return 0;
}

int coro_queue_set_compare(coro_queue *q, coro_queue_cmp cmp) {
  if (q == NULL || cmp == NULL || q->kind != CORO_QUEUE_PRIORITY)
    return CORO_EINVAL;
  if (q->len != 0 || q->users != 0) return CORO_EBUSY;
  q->cmp = cmp;
  return 0;
}

static void drop_all(coro_queue *q) {
  while (q->len > 0) {
    qent e = st_pop(q);
    if (q->destroy != NULL) q->destroy(e.item);
    if (q->unfinished > 0) q->unfinished--;
  }
}

static void queue_free_mem(coro_queue *q) {
  coro__free(q->buf);
  coro__free(q);
}

static void wake_all(coro__queue *fifo, int status);

/* With tasks waiting, free is an immediate shutdown that also fails the
 * joiners: stored items go to the destructor now, items handed to getters
 * that have not run yet when those resume; every waiter gets -EPIPE but a
 * putter whose item was already taken (it put it: 0). */
int coro_queue_free(coro_queue *q) {
  if (q == NULL) return CORO_EINVAL;
  int r = coro__sync_free_check(q->loop, q->users);
  if (r != 0) return r;
  drop_all(q);
  if (q->users == 0) {
    queue_free_mem(q);
    return 0;
  }
  q->dead = 1;
  q->shutdown = SHUT_NOW;
  wake_all(&q->putters, CORO_EPIPE);
  wake_all(&q->getters, CORO_EPIPE);
  wake_all(&q->joiners, CORO_EPIPE);
  return 0;
}

/* ---- hand-offs ----------------------------------------------------------- */

static void wake_all(coro__queue *fifo, int status) {
  coro__sw_wake_all(fifo, status);
}

static void check_joiners(coro_queue *q) {
  if (q->unfinished == 0) wake_all(&q->joiners, 0);
}

/* Give e to the first waiting getter (room for its put back is reserved). */
static void hand_to_getter(coro_queue *q, coro__sw *w, qent e) {
  w->item = e.item;
  w->seq = e.seq;
  q->handed++;
  coro__sw_wake(w, 0, 1);
}

/* After a get: move the first waiting putter's item into the room made. */
static void refill(coro_queue *q) {
  coro__sw *w = coro__sw_first(&q->putters);
  if (w == NULL || q->len >= q->maxsize) return;
  qent e = {w->item, q->seq++};
  st_push(q, e, 0);
  q->unfinished++;
  coro__sw_wake(w, 0, 1);
}

static int get_cancel(coro__task *t, void *arg) {
  coro__sw *w = arg;
  (void)t;
  if (!w->granted) {
    coro__sw_unwait(w);
    return CORO__CANCEL_ABORT;
  }
  /* Handed an item, cancelled before it ran: nothing is lost. */
  coro_queue *q = w->obj;
  qent e = {w->item, w->seq};
  w->granted = 0;
  q->handed--;
  coro__sw *next;
  if (q->shutdown == SHUT_NOW) {
    /* Dropped like every item the immediate shutdown found. */
    if (q->destroy != NULL) q->destroy(e.item);
    if (q->unfinished > 0) q->unfinished--;
    check_joiners(q);
  } else if ((next = coro__sw_first(&q->getters)) != NULL) {
    hand_to_getter(q, next, e); /* w's reserved room moves with it */
  } else {
    st_push(q, e, 1);
  }
  return CORO__CANCEL_ABORT;
}

/* The putter's item is in the queue: a cancellation now is delivered at
 * its next suspension (the put happened). */
static int put_cancel(coro__task *t, void *arg) {
  coro__sw *w = arg;
  (void)t;
  if (w->granted) return CORO__CANCEL_LATER;
  coro__sw_unwait(w);
  return CORO__CANCEL_ABORT;
}

/* ---- put and get --------------------------------------------------------- */

/* ms: CORO_FOREVER, 0 (do not wait) or > 0; busy_code: what "would wait"
 * returns when ms == 0. */
static int put(coro_queue *q, void *item, int64_t ms, int busy_code) {
  if (q == NULL || !coro__sync_ms_ok(ms)) return CORO_EINVAL;
  int r = coro__sync_loop(&q->loop, q->users != 0);
  if (r != 0) return r;
  if (q->shutdown) return CORO_EPIPE;
  coro__sw *g = coro__sw_first(&q->getters);
  if (g != NULL) {
    /* Nothing is stored: straight to the first getter. */
    r = st_reserve(q, q->len + q->handed + 1);
    if (r != 0) return r;
    qent e = {item, q->seq++};
    q->unfinished++;
    hand_to_getter(q, g, e);
    return 0;
  }
  if (q->maxsize == 0 || q->len < q->maxsize) {
    r = st_reserve(q, q->len + q->handed + 1);
    if (r != 0) return r;
    qent e = {item, q->seq++};
    st_push(q, e, 0);
    q->unfinished++;
    return 0;
  }
  if (ms == 0) return busy_code;
  coro__task *t = coro__task_for_wait();
  if (t == NULL) return CORO_EPERM;
  coro__sw w;
  coro__sw_init(&w, t, q);
  w.item = item;
  q->users++;
  r = coro__sw_wait(&w, &q->putters, ms, put_cancel, "queue put");
  if (q->dead && !w.granted && r != CORO_ECANCELED) r = CORO_EPIPE;
  if (coro__sync_leave(&q->users, q->dead)) queue_free_mem(q);
  return r;
}

int coro_queue_put(coro_queue *q, void *item) {
  return put(q, item, CORO_FOREVER, 0);
}
int coro_queue_put_timeout(coro_queue *q, void *item, int64_t ms) {
  return put(q, item, ms, CORO_ETIMEDOUT);
}
int coro_queue_put_nowait(coro_queue *q, void *item) {
  return put(q, item, 0, CORO_EAGAIN);
}

static int get(coro_queue *q, void **item, int64_t ms, int busy_code) {
  if (q == NULL || item == NULL || !coro__sync_ms_ok(ms)) return CORO_EINVAL;
  int r = coro__sync_loop(&q->loop, q->users != 0);
  if (r != 0) return r;
  if (q->len > 0) {
    *item = st_pop(q).item;
    refill(q);
    return 0;
  }
  /* Shut down and empty: over, unless an item is still on its way to a
   * getter that may be cancelled and put it back (then wait for it). */
  if (q->shutdown == SHUT_NOW || (q->shutdown && q->handed == 0))
    return CORO_EPIPE;
  if (ms == 0) return busy_code;
  coro__task *t = coro__task_for_wait();
  if (t == NULL) return CORO_EPERM;
  coro__sw w;
  coro__sw_init(&w, t, q);
  q->users++;
  r = coro__sw_wait(&w, &q->getters, ms, get_cancel, "queue get");
  if (!w.granted && q->dead && r != CORO_ECANCELED) {
    r = CORO_EPIPE;
  } else if (w.granted && q->dead) {
    /* Handed an item, then the queue was freed before this ran: the item
     * goes with the rest. */
    q->handed--;
    if (q->destroy != NULL) q->destroy(w.item);
    r = CORO_EPIPE;
  } else if (w.granted) {
    q->handed--;
    *item = w.item;
    /* The last item in flight arrived: getters still waiting after a
     * drain shutdown have nothing more to come. */
    if (q->shutdown && q->handed == 0 && q->len == 0)
      wake_all(&q->getters, CORO_EPIPE);
  }
  if (coro__sync_leave(&q->users, q->dead)) queue_free_mem(q);
  return r;
}

int coro_queue_get(coro_queue *q, void **item) {
  return get(q, item, CORO_FOREVER, 0);
}
int coro_queue_get_timeout(coro_queue *q, void **item, int64_t ms) {
  return get(q, item, ms, CORO_ETIMEDOUT);
}
int coro_queue_get_nowait(coro_queue *q, void **item) {
  return get(q, item, 0, CORO_EAGAIN);
}

/* ---- task_done, join, shutdown -------------------------------------------- */

int coro_queue_task_done(coro_queue *q) {
  if (q == NULL) return CORO_EINVAL;
  int r = coro__sync_loop(&q->loop, q->users != 0);
  if (r != 0) return r;
  if (q->unfinished == 0) return -EOVERFLOW;
  q->unfinished--;
  check_joiners(q);
  return 0;
}

int coro_queue_join_timeout(coro_queue *q, int64_t ms) {
  if (q == NULL || !coro__sync_ms_ok(ms)) return CORO_EINVAL;
  coro__task *t = coro__task_for_wait();
  if (t == NULL) return CORO_EPERM;
  int r = coro__sync_loop_at(&q->loop, q->users != 0, t->fut.loop);
  if (r != 0) return r;
  if (q->dead) return CORO_EPIPE;
  if (q->unfinished == 0) return 0;
  if (ms == 0) return CORO_ETIMEDOUT;
  coro__sw w;
  coro__sw_init(&w, t, q);
  q->users++;
  r = coro__sw_wait(&w, &q->joiners, ms, coro__sw_cancel_abort, "queue join");
  if (q->dead && r != CORO_ECANCELED) r = CORO_EPIPE;
  if (coro__sync_leave(&q->users, q->dead)) queue_free_mem(q);
  return r;
}

int coro_queue_join(coro_queue *q) {
  return coro_queue_join_timeout(q, CORO_FOREVER);
}

int coro_queue_shutdown(coro_queue *q, int immediate) {
  if (q == NULL) return CORO_EINVAL;
  int r = coro__sync_loop(&q->loop, q->users != 0);
  if (r != 0) return r;
  if (q->shutdown < SHUT_DRAIN) q->shutdown = SHUT_DRAIN;
  if (immediate) {
    q->shutdown = SHUT_NOW;
    drop_all(q);
  }
  wake_all(&q->putters, CORO_EPIPE);
  /* Getters wait only while nothing is stored. They are done unless an
   * item handed to a getter that has not run yet may still come back (its
   * getter cancelled): then they wait for it, and the last one delivered
   * wakes them (get). */
  if (q->handed == 0 || q->shutdown == SHUT_NOW)
    wake_all(&q->getters, CORO_EPIPE);
  check_joiners(q);
  return 0;
}

/* ---- inspection ----------------------------------------------------------- */

size_t coro_queue_size(const coro_queue *q) { return q != NULL ? q->len : 0; }

size_t coro_queue_maxsize(const coro_queue *q) {
  return q != NULL ? q->maxsize : 0;
}

int coro_queue_empty(const coro_queue *q) {
  if (q == NULL) return CORO_EINVAL;
  return q->len == 0;
}

int coro_queue_full(const coro_queue *q) {
  if (q == NULL) return CORO_EINVAL;
  return q->maxsize > 0 && q->len >= q->maxsize;
}

size_t coro_queue_unfinished(const coro_queue *q) {
  return q != NULL ? q->unfinished : 0;
}

int coro_queue_is_shutdown(const coro_queue *q) {
  if (q == NULL) return CORO_EINVAL;
  return q->shutdown != 0;
}
