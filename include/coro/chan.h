/* SPDX-License-Identifier: MIT */
/* libcoro channels: Go / aiochan style channels (unbuffered or buffered,
 * values copied), select over several of them, and a bridge for other
 * threads and loops. Include <coro.h>, not this file. The reference, with
 * every return code, is docs/api/chan.md.
 *
 * A channel belongs to the loop that made it. Its tasks use the plain calls;
 * other threads and tasks of other loops use coro_chan_send_blocking /
 * coro_chan_recv_blocking / coro_chan_close. Hand-off is strict FIFO: the
 * first waiting receiver gets the first value, a waiting sender's value goes
 * in before any later sender's. A value handed to a receiver that is
 * cancelled before it runs is passed to the next receiver or put back at the
 * head of the buffer: nothing is lost and nothing is received twice. */
#ifndef CORO_CHAN_H_
#define CORO_CHAN_H_

#include "coro/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct coro_chan coro_chan;

/* ---- life ----------------------------------------------------------------- */

/* Make a channel of the current loop for values of elem_size bytes (0 is
 * allowed: a channel of signals). capacity 0 makes an unbuffered
 * (rendezvous) channel: a send completes when a receiver takes the value.
 * Errors: -EINVAL (out NULL, elem_size * capacity overflows), -EPERM (no
 * loop on this thread), -ENOMEM. *out is untouched on failure. */
CORO_EXTERN int coro_chan_new(coro_chan **out, size_t elem_size,
                              size_t capacity);
/* Close c (if open) and free it. Tasks still waiting on c wake with -EPIPE
 * and must not use c again. Call it on c's loop thread, or on any thread once
 * that loop has ended, and only once no other thread will use c. NULL is
 * ignored. Values still buffered are dropped. */
CORO_EXTERN void coro_chan_free(coro_chan *c);

/* Close c: later sends fail with -EPIPE; receivers get what is buffered,
 * then -EPIPE. Every waiter wakes now: waiting senders with -EPIPE (their
 * values are not sent), waiting receivers with -EPIPE, selects commit the
 * case on c with status -EPIPE. Idempotent: closing a closed channel returns
 * 0. Callable from any thread: from another thread it takes effect on c's
 * loop before the call returns (a plain thread blocks briefly, a task of
 * another loop suspends). Errors: -EINVAL (NULL), -EPIPE (c's loop has
 * ended; from another thread also once it has finished its main task and
 * is shutting down), -EPERM (on another loop's thread outside a task). */
CORO_EXTERN int coro_chan_close(coro_chan *c);

/* ---- tasks of the channel's loop -------------------------------------------- */

/* Copy elem_size bytes from elem into c. Completes at once when a receiver
 * waits (the value goes straight into its buffer) or the buffer has room;
 * otherwise suspends until a receiver takes the value (unbuffered) or room
 * is made (buffered). Returns 0, -EPIPE (c is closed, or closed while
 * waiting: the value was not sent), -ECANCELED (nothing was sent),
 * -EINVAL (c NULL, elem NULL with elem_size > 0), -EPERM (outside a task,
 * or c belongs to another loop). */
CORO_EXTERN int coro_chan_send(coro_chan *c, const void *elem);
/* Receive the next value into elem (elem_size bytes). Buffered values come
 * first, in order, also after close; then a waiting sender's value; else it
 * suspends. Returns 0, -EPIPE (closed and drained), -ECANCELED (nothing was
 * taken), -EINVAL, -EPERM. */
CORO_EXTERN int coro_chan_recv(coro_chan *c, void *elem);
/* As send / recv, waiting at most timeout_ms: CORO_FOREVER waits without
 * limit, 0 tries once without suspending. Also -ETIMEDOUT (nothing was
 * sent / taken), -EINVAL for timeout_ms < -1, -ENOMEM (the timer heap could
 * not grow). */
CORO_EXTERN int coro_chan_send_timeout(coro_chan *c, const void *elem,
                                       int64_t timeout_ms);
CORO_EXTERN int coro_chan_recv_timeout(coro_chan *c, void *elem,
                                       int64_t timeout_ms);
/* Never suspend; also usable on the loop's thread outside tasks (callbacks).
 * 0, -EAGAIN (it would have to wait), -EPIPE (closed; for recv: closed and
 * drained), -EINVAL, -EPERM (another thread or loop). */
CORO_EXTERN int coro_chan_try_send(coro_chan *c, const void *elem);
CORO_EXTERN int coro_chan_try_recv(coro_chan *c, void *elem);

/* Values buffered now (may exceed the capacity for a moment after a
 * cancelled receiver gave its value back), the capacity, and 1 if closed /
 * 0 if open. Loop thread. 0 (len, cap) or -EINVAL (closed) for NULL. */
CORO_EXTERN size_t coro_chan_len(const coro_chan *c);
CORO_EXTERN size_t coro_chan_cap(const coro_chan *c);
CORO_EXTERN int coro_chan_closed(const coro_chan *c);

/* Receive until the channel is closed and drained (or an error):
 *   int st; int v;
 *   CORO_CHAN_FOREACH(st, c, &v) { use(v); }
 *   // st is -EPIPE after a normal end, -ECANCELED if cancelled, ...
 */
#define CORO_CHAN_FOREACH(status, c, elem) \
  while (((status) = coro_chan_recv((c), (elem))) == 0)

/* ---- select ------------------------------------------------------------------- */

enum { CORO_CHAN_SEND = 1, CORO_CHAN_RECV = 2 };

/* Flags of coro_select. */
#define CORO_SELECT_DEFAULT  0x1 /* nothing ready at once: -EAGAIN, no wait */
#define CORO_SELECT_PRIORITY 0x2 /* first ready case in array order, not random */

/* One case of a select. Fill chan, op and elem; status is written for the
 * committed case; priv_ is the case's waiter (no allocation per select). */
typedef struct coro_select_case {
  coro_chan *chan;  /* NULL: the case is ignored (a nil channel in Go) */
  int op;           /* CORO_CHAN_SEND or CORO_CHAN_RECV */
  int status;       /* out, committed case only: 0, or -EPIPE (closed) */
  void *elem;       /* send: value to copy from; recv: buffer to copy to */
  void *priv_[10];
} coro_select_case;

/* Commit exactly one of cases[0..n): wait until one can proceed, perform it,
 * and return its index (>= 0). cases[i].status is 0, or -EPIPE for a send
 * on a closed channel (nothing sent) or a receive from a closed, drained one
 * (as Go's `v, ok := <-c`). Among cases ready at once one is chosen at
 * random, uniformly (CORO_SELECT_PRIORITY: the first in array order); while
 * waiting, the first case a counterpart reaches commits and the others are
 * withdrawn before anything else runs. With CORO_SELECT_DEFAULT and nothing
 * ready it returns -EAGAIN at once and queues nothing. timeout_ms as in
 * coro_chan_send_timeout (0: check once, then -ETIMEDOUT). n may be 0 (waits
 * for the timeout or a cancellation). Errors: -EINVAL (cases NULL with
 * n > 0, a bad op, elem NULL where elem_size > 0, bad flags or timeout),
 * -EPERM (outside a task, a channel of another loop), -ETIMEDOUT,
 * -ECANCELED (nothing committed), -ENOMEM (timer heap). */
CORO_EXTERN int coro_select(coro_select_case *cases, size_t n, int flags,
                            int64_t timeout_ms);

/* ---- other threads and loops ---------------------------------------------------- */

/* Loop thread. Say that other threads or loops will use c: until c is
 * closed or freed, its loop keeps waiting for them instead of judging its
 * tasks stuck (a task waiting on c that only another thread can serve would
 * otherwise be cancelled with -EDEADLK). Idempotent. 0, -EINVAL, -EPERM,
 * -EPIPE (already closed). */
CORO_EXTERN int coro_chan_share(coro_chan *c);

/* Send / receive from outside c's loop. A plain thread blocks; a task of
 * another loop suspends (its loop goes on running) and can be cancelled.
 * The operation runs on c's loop like a task's send / recv, FIFO with them;
 * timeout_ms as in coro_chan_send_timeout (0: try once, after a round trip
 * to c's loop). A send into a buffered channel whose loop has granted
 * credit returns 0 at once whatever the timeout: the value is staged and
 * delivered in order (docs/api/chan.md, "Cost model"). Returns 0, -EPIPE (closed, or c's loop is shutting down or
 * has ended), -ETIMEDOUT, -ECANCELED (the calling task was cancelled;
 * nothing was sent / taken), -EDEADLK (called on c's own loop thread: use
 * coro_chan_send / coro_chan_recv there), -EPERM (another loop's thread
 * outside a task), -EINVAL, -ENOMEM. */
CORO_EXTERN int coro_chan_send_blocking(coro_chan *c, const void *elem,
                                        int64_t timeout_ms);
CORO_EXTERN int coro_chan_recv_blocking(coro_chan *c, void *elem,
                                        int64_t timeout_ms);

#ifdef __cplusplus
}
#endif
#endif /* CORO_CHAN_H_ */
