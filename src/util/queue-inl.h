/* SPDX-License-Identifier: MIT */
/* Intrusive circular doubly-linked queue. A coro__queue is both the head of
 * a list and the link embedded in each element; an empty head points to
 * itself. Every operation is O(1) and allocates nothing. */
#ifndef CORO_SRC_UTIL_QUEUE_INL_H_
#define CORO_SRC_UTIL_QUEUE_INL_H_

#include <stddef.h>

typedef struct coro__queue {
  struct coro__queue *next;
  struct coro__queue *prev;
} coro__queue;

static inline void coro__queue_init(coro__queue *q) { q->next = q->prev = q; }

static inline int coro__queue_empty(const coro__queue *q) {
  return q->next == q;
}

static inline coro__queue *coro__queue_head(const coro__queue *q) {
  return q->next;
}

/* Append e at the tail of q. */
static inline void coro__queue_push(coro__queue *q, coro__queue *e) {
  e->next = q;
  e->prev = q->prev;
  q->prev->next = e;
  q->prev = e;
}

/* Unlink e and make it self-linked (so a second remove is harmless and
 * coro__queue_linked can tell). */
static inline void coro__queue_remove(coro__queue *e) {
  e->prev->next = e->next;
  e->next->prev = e->prev;
  e->next = e->prev = e;
}

static inline int coro__queue_linked(const coro__queue *e) {
  return e->next != e;
}

/* Pop the head of q, NULL if empty. */
static inline coro__queue *coro__queue_pop(coro__queue *q) {
  if (coro__queue_empty(q)) return NULL;
  coro__queue *e = q->next;
  coro__queue_remove(e);
  return e;
}

/* Move every element of from to the tail of to; from becomes empty. */
static inline void coro__queue_move(coro__queue *from, coro__queue *to) {
  if (coro__queue_empty(from)) return;
  coro__queue *first = from->next, *last = from->prev;
  first->prev = to->prev;
  to->prev->next = first;
  last->next = to;
  to->prev = last;
  coro__queue_init(from);
}

#endif /* CORO_SRC_UTIL_QUEUE_INL_H_ */
