/* SPDX-License-Identifier: MIT */
/* A configurable child task and promise helpers, shared by the tests of
 * gather, wait, wait_for and as_completed. Include after "helpers.h". */
#ifndef CORO_TESTS_CHILD_H_
#define CORO_TESTS_CHILD_H_

#include <string.h>

#define VAL(n) ((void *)(uintptr_t)(n))
#define SENTINEL ((void *)(uintptr_t)0x5e5e5e)
#define NOT_REACHED 1 /* a status nobody returns */

/* ---- a configurable child task ------------------------------------------- */

typedef struct child {
  int yields;         /* coro_yield() this many times first */
  int64_t sleep_ms;   /* then sleep (0: no sleep, CORO_FOREVER: until cancelled) */
  int err;            /* then fail with this (0: return value) */
  void *value;
  const char *tag;    /* noted in the order log when finishing */
  int64_t cleanup_ms; /* after a cancellation: sleep this long */
  int handle;         /* after a cancellation: return value instead */
  int cancel_err;     /* after a cancellation: fail with this instead */
  /* filled in by the child */
  int ran;
  int saw;            /* status of the yield/sleep that ended its wait */
  int cleanup_r;
  int cleaned;
} child;

static inline void child_init(child *c) {
  memset(c, 0, sizeof(*c));
  c->saw = NOT_REACHED;
  c->cleanup_r = NOT_REACHED;
}

static inline void *child_fn(void *arg) {
  child *c = arg;
  c->ran = 1;
  int r = 0;
  for (int i = 0; i < c->yields && r == 0; i++) r = coro_yield();
  if (r == 0 && c->sleep_ms != 0) r = coro_sleep(c->sleep_ms);
  c->saw = r;
  if (r == -ECANCELED) {
    if (c->cleanup_ms > 0) c->cleanup_r = coro_sleep(c->cleanup_ms);
    c->cleaned = 1;
    if (c->tag) coro_test_note(c->tag);
    if (c->cancel_err) return coro_fail(c->cancel_err);
    return c->handle ? c->value : coro_fail(-ECANCELED);
  }
  if (c->tag) coro_test_note(c->tag);
  if (c->err) return coro_fail(c->err);
  return c->value;
}

static inline coro_future *spawn_child(child *c) {
  coro_future *f = NULL;
  CHECK_EQ(coro_spawn(&f, child_fn, c), 0);
  return f;
}

static inline coro_future *new_promise(void) {
  coro_future *p = NULL;
  CHECK_EQ(coro_future_new(&p), 0);
  return p;
}

static inline coro_future *done_promise(void *value, int err) {
  coro_future *p = new_promise();
  if (err)
    CHECK_EQ(coro_future_reject(p, err), 0);
  else
    CHECK_EQ(coro_future_resolve(p, value), 0);
  return p;
}

#endif /* CORO_TESTS_CHILD_H_ */
