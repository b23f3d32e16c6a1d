/* SPDX-License-Identifier: MIT */
/* The I/O layer's per-loop state: the objects still open on the loop
 * (streams, servers, UDP sockets, ...), kept in the loop's I/O slot, so that
 * what a program forgot to close is closed and freed when coro_run ends
 * instead of leaking. The list is intrusive and its head is the slot's data
 * pointer: tracking allocates nothing and cannot fail. */
#include "io/io-internal.h"

static void io_stats(coro_loop *loop, coro__loop_slot *slot,
                     coro_stats *st) {
  (void)loop;
  for (coro__io_obj *o = slot->data; o != NULL; o = o->next) st->io_open++;
}

void coro__io_track(coro_loop *loop, coro__io_obj *o,
                    void (*end)(coro__io_obj *o)) {
  CORO__ASSERT(loop == coro__tls_loop);
  coro__loop_slot *slot = coro__loop_slot_of(loop, CORO__SLOT_IO);
  slot->stats = io_stats;
  coro__io_obj *head = slot->data;
  o->end = end;
  o->pprev = (coro__io_obj **)&slot->data;
  o->next = head;
  if (head != NULL) head->pprev = &o->next;
  slot->data = o;
  slot->at_end = coro__io_loop_end;
}

void coro__io_untrack(coro__io_obj *o) {
  if (o->pprev == NULL) return; /* never tracked, or untracked already */
  *o->pprev = o->next;
  if (o->next != NULL) o->next->pprev = o->pprev;
  o->next = NULL;
  o->pprev = NULL;
}

/* The slot's end: the loop's tasks are drained, so nothing waits on these
 * objects; each end function closes its object (which untracks it), and
 * the loop's last uv_run runs the close callbacks that free them. */
void coro__io_loop_end(coro_loop *loop, coro__loop_slot *slot) {
  (void)loop;
  coro__io_obj *o;
  while ((o = slot->data) != NULL) {
    o->end(o);
    if (slot->data == o) coro__io_untrack(o); /* an end that did not */
  }
  coro__stream_cache_free(); /* no task reads any more */
}
