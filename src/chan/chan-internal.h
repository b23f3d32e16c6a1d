/* SPDX-License-Identifier: MIT */
/* Channels inside: the channel struct, the waiter every blocked operation
 * links into a channel (on the waiting task's stack, or inside a select
 * case), and the matching primitives chan.c gives select.c. */
#ifndef CORO_SRC_CHAN_CHAN_INTERNAL_H_
#define CORO_SRC_CHAN_CHAN_INTERNAL_H_

#include <pthread.h>
#include <stdint.h>

#include "core/task.h"
#include "core/inbox.h"

typedef struct chan_sel chan_sel;

/* A blocked send or receive. Linked in c->sendq or c->recvq while it
 * waits; a counterpart, close or a timeout unlinks it and completes it. */
typedef struct chan_waiter {
  coro__queue node;   /* in c->sendq / c->recvq while waiting */
  coro_chan *c;
  void *elem;         /* send: the value; recv: where it goes */
  coro__task *task;   /* plain operation: the task to wake */
  chan_sel *sel;      /* select: its record; NULL for a plain operation */
  int status;         /* outcome once done */
  uint8_t op;         /* CORO_CHAN_SEND / CORO_CHAN_RECV */
  uint8_t done;       /* completed (counterpart, close or timeout) */
  uint8_t handed;     /* recv: a value was copied into elem and the task has
                         not run yet (the channel counts it in granted) */
  uint32_t idx;       /* select: the case's index */
} chan_waiter;

/* A select waiting on several channels. */
struct chan_sel {
  coro__task *task;
  coro_select_case *cases;
  size_t n;
  chan_waiter *committed; /* the case that completed, NULL while waiting */
  coro__timer timer;
};

struct coro_chan {
  coro_loop *loop;      /* owner; never dereferenced off its thread */
  uint64_t loop_gen;    /* owner's generation: a later loop at the same
                           address is not the owner */
  coro__inbox *ib;      /* the owner's inbox (retained): other threads post here */
  size_t esz;           /* element size */
  size_t cap;           /* capacity; 0 = unbuffered */
  unsigned char *buf;   /* ring of slots elements */
  size_t slots;         /* cap, or more after a put-back overflowed it */
  size_t head, len;     /* first element, number buffered */
  coro__queue sendq;    /* waiting senders (only while len >= cap) */
  coro__queue recvq;    /* waiting receivers (only while len == 0) */
  size_t granted;       /* receivers handed a value that have not run yet */
  uint8_t closed;
  uint8_t freed;        /* coro_chan_free ran; memory goes with granted == 0
                           and no drain message queued */
  uint8_t shared;       /* coro_chan_share: counted in loop->ext_pending */
  /* Sends of other threads and loops into a buffered channel (chan.c,
   * "credit"). Loop thread only: */
  uint8_t xactive;      /* a remote send has reached the channel: receives
                           grant credit */
  uint8_t xdrain_due;   /* freed while xdrain was queued: it frees c */
  size_t xres;          /* ring slots reserved for remote senders: credit
                           granted and not drained yet (xcredit + staged);
                           len + xres <= slots at all times */
  coro__msg xdrain;     /* posted to ib: deliver what is staged */
  /* Shared with other threads, under xmu (buffered channels only): */
  pthread_mutex_t xmu;
  unsigned char *xbuf;  /* staging ring of cap elements, made at the first
                           grant (NULL for elements of size 0) */
  size_t xhead, xcount; /* staged elements not taken by a drain yet */
  size_t xcredit;       /* elements remote senders may still stage */
  uint8_t xposted;      /* xdrain is queued in ib */
  uint8_t xclosed;      /* closed: stage nothing more */
  uint8_t xdead;        /* ib refused a post: the loop is ending */
};

static inline chan_waiter *chan__case_waiter(coro_select_case *cs) {
  return (chan_waiter *)(void *)cs->priv_;
}

/* Take back the credit remote senders have not used; then 1 if a local
 * send has room. Loop thread, only when no sender waits. */
int coro__chan_revoke(coro_chan *c);

/* Whether a send / receive on c would complete without waiting (a closed
 * channel counts as ready: the operation fails at once with -EPIPE). The
 * slots reserved for remote senders (xres) are not room; when they are all
 * that stands in the way, their unused part is taken back first, so credit
 * never blocks a local sender (nor a remote one on the slow path) while the
 * ring has room. */
static inline int chan__can_send(coro_chan *c) {
  if (c->closed || !coro__queue_empty(&c->recvq) || c->len + c->xres < c->cap)
    return 1;
  return c->xres > 0 && coro__queue_empty(&c->sendq) && coro__chan_revoke(c);
}
static inline int chan__can_recv(const coro_chan *c) {
  return c->len > 0 || !coro__queue_empty(&c->sendq) || c->closed;
}
/* Perform an operation that chan__can_* said is ready: 0 or -EPIPE. */
int coro__chan_do_send(coro_chan *c, const void *elem);
int coro__chan_do_recv(coro_chan *c, void *elem);
/* A receiver that was handed a value has run (or given it back). */
void coro__chan_ungrant(coro_chan *c);
/* Give a value handed to a cancelled receiver to the next receiver, or put
 * it back at the head of the buffer. 0, or -1 when impossible (channel
 * freed, no memory): the receiver must then keep it. */
int coro__chan_put_back(coro_chan *c, const void *elem);

/* 1 if loop (the caller's, may be NULL) is c's own and still the same
 * coro_run: a loop that ended may be followed by one at the same address. */
static inline int coro__chan_on_loop(const coro_chan *c, const coro_loop *loop) {
  return loop != NULL && c->loop == loop && c->loop_gen == loop->gen;
}

#endif /* CORO_SRC_CHAN_CHAN_INTERNAL_H_ */
