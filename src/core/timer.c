/* SPDX-License-Identifier: MIT */
/* The loop's timer heap: an array-based binary min-heap of coro__timer
 * pointers ordered by (due, seq), and one libuv timer armed for its top.
 * Starting or stopping a timer is O(log n) and allocates only when the
 * array grows (never in steady state). Due times are uv_hrtime()
 * nanoseconds, so a sleep never ends before its full duration even though
 * libuv's own clock counts whole milliseconds. */
#include "core/loop.h"

static int timer_less(const coro__timer *a, const coro__timer *b) {
  if (a->due != b->due) return a->due < b->due;
  return a->seq < b->seq;
}

static void heap_set(coro_loop *loop, size_t i, coro__timer *t) {
  loop->heap[i] = t;
  t->idx = i;
}

static void sift_up(coro_loop *loop, size_t i) {
  coro__timer *t = loop->heap[i];
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (!timer_less(t, loop->heap[parent])) break;
    heap_set(loop, i, loop->heap[parent]);
    i = parent;
  }
  heap_set(loop, i, t);
}

static void sift_down(coro_loop *loop, size_t i) {
  coro__timer *t = loop->heap[i];
  size_t n = loop->heap_len;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= n) break;
    if (c + 1 < n && timer_less(loop->heap[c + 1], loop->heap[c])) c++;
    if (!timer_less(loop->heap[c], t)) break;
    heap_set(loop, i, loop->heap[c]);
    i = c;
  }
  heap_set(loop, i, t);
}

static void uvtimer_cb(uv_timer_t *h) {
  coro_loop *loop = coro__container_of(h, coro_loop, uvtimer);
  loop->armed_due = 0;
  coro__timers_run(loop);
}

/* Arm the libuv timer for the heap's top if it is not armed for it already.
 * libuv counts whole milliseconds: round up, so we never wake early. */
static void rearm(coro_loop *loop) {
  if (loop->heap_len == 0) {
    if (loop->armed_due != 0) {
      uv_timer_stop(&loop->uvtimer);
      loop->armed_due = 0;
    }
    return;
  }
  uint64_t due = loop->heap[0]->due;
  if (loop->armed_due == due) return;
  uint64_t now = uv_hrtime();
  uint64_t ms = due > now ? (due - now + 999999) / 1000000 : 0;
  /* uv_now() may lag behind uv_hrtime() by up to a millisecond. */
  uv_update_time(loop->uv);
  uv_timer_start(&loop->uvtimer, uvtimer_cb, ms, 0);
  loop->armed_due = due;
}

void coro__timer_init(coro__timer *t, void (*cb)(coro__timer *t)) {
  t->due = 0;
  t->seq = 0;
  t->idx = CORO__TIMER_IDLE;
  t->cb = cb;
}

int coro__timer_start_at(coro_loop *loop, coro__timer *t, uint64_t due) {
  CORO__ASSERT(loop == coro__tls_loop); /* a timer starts on its own loop */
  CORO__ASSERT(t->cb != NULL);
  coro__timer_stop(loop, t);
  if (loop->heap_len == loop->heap_cap) {
    size_t cap = loop->heap_cap ? loop->heap_cap * 2 : 64;
    coro__timer **h = coro__realloc(loop->heap, cap * sizeof(*h));
    if (h == NULL) return CORO_ENOMEM;
    loop->heap = h;
    loop->heap_cap = cap;
  }
  t->due = due;
  t->seq = loop->timer_seq++;
  loop->heap[loop->heap_len] = t;
  t->idx = loop->heap_len++;
  sift_up(loop, t->idx);
  if (t->idx == 0) rearm(loop);
  return 0;
}

int coro__timer_start(coro_loop *loop, coro__timer *t, uint64_t ms) {
  uint64_t now = uv_hrtime();
  /* Clamp instead of wrapping around: a due time that far away is never. */
  uint64_t due = ms > (UINT64_MAX - now) / 1000000u ? UINT64_MAX : now + ms * 1000000u;
  return coro__timer_start_at(loop, t, due);
}

/* Take t out of the heap without re-arming. */
static void heap_remove(coro_loop *loop, coro__timer *t) {
  size_t i = t->idx;
  t->idx = CORO__TIMER_IDLE;
  size_t last = --loop->heap_len;
  if (i == last) return;
  heap_set(loop, i, loop->heap[last]);
  if (i > 0 && timer_less(loop->heap[i], loop->heap[(i - 1) / 2]))
    sift_up(loop, i);
  else
    sift_down(loop, i);
}

void coro__timer_stop(coro_loop *loop, coro__timer *t) {
  if (t->idx == CORO__TIMER_IDLE) return;
  CORO__ASSERT(loop == coro__tls_loop);
  CORO__ASSERT(t->idx < loop->heap_len && loop->heap[t->idx] == t);
  int was_top = t->idx == 0;
  heap_remove(loop, t);
  if (was_top) rearm(loop);
}

void coro__timers_run(coro_loop *loop) {
  uint64_t now = uv_hrtime();
  while (loop->heap_len > 0 && loop->heap[0]->due <= now) {
    coro__timer *t = loop->heap[0];
    heap_remove(loop, t);
    t->cb(t);
  }
  rearm(loop);
}

void coro__timers_free(coro_loop *loop) {
  coro__free(loop->heap);
  loop->heap = NULL;
  loop->heap_len = loop->heap_cap = 0;
}
