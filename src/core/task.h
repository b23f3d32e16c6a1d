/* SPDX-License-Identifier: MIT */
/* Tasks: a coroutine running on a fiber, plus its future. This header also
 * holds the suspension protocol every waiting primitive builds on. */
#ifndef CORO_SRC_CORE_TASK_H_
#define CORO_SRC_CORE_TASK_H_

#include "core/future.h"

enum coro__task_state {
  CORO__T_CREATED,  /* spawned, first step queued */
  CORO__T_READY,    /* woken, step queued */
  CORO__T_RUNNING,
  CORO__T_WAITING,  /* suspended, not queued */
  CORO__T_DONE
};

/* What a wait's cancel hook did with a cancellation request.
 * ABORT:  the wait is undone (unlinked, timer stopped, nothing consumed);
 *         the task resumes with -ECANCELED.
 * PASSED: the request was passed to what the task waits on (another task,
 *         a promise); the task resumes when that completes, with its
 *         outcome.
 * LATER:  the wait already completed and cannot be undone; the request is
 *         kept and delivered at the task's next suspension. */
enum { CORO__CANCEL_ABORT, CORO__CANCEL_PASSED, CORO__CANCEL_LATER };
typedef int (*coro__cancel_fn)(coro__task *t, void *arg);
/* The hook of a wait that only a wake-up or a cancellation ends and that
 * holds nothing to undo: it always aborts. */
int coro__cancel_abort(coro__task *t, void *arg);

struct coro__task {
  coro_future fut;          /* first: a task is a future */
  coro__handle step;        /* ready-queue entry for its next step */
  coro__queue link;         /* in loop->tasks while alive */
  union {
    coro_fn fn;             /* while the struct is a task */
    coro__task *next_free;  /* in the loop's pool of free task structs */
  };
  void *arg;
  coro__fiber *fiber;       /* NULL until the first step and after finishing */
  size_t stack_size;
  uint8_t state;            /* enum coro__task_state */
  uint8_t must_cancel;      /* a request waits for the next suspension */
  uint8_t cancel_in_flight; /* -ECANCELED is being delivered (resume pending) */
  uint8_t cancel_on_start;  /* spawned during shutdown */
  /* Compact tasks (CORO_TASK_COMPACT, see task.c); the rest of their
   * state is in coro__compact, allocated with the task (coro__ctask). */
  uint8_t compact;          /* 1: a compact task (the rules apply) */
  uint8_t shares;           /* 1: it runs on its loop's shared stacks */
  uint8_t wait_compact;     /* the current wait keeps nothing on the stack */
  coro__queue scopes;       /* timeout scopes entered and not exited */
  int fail_err;             /* set by coro_fail */
  int cancel_requests;      /* asyncio's cancelling() counter */
  int pending_cancels;      /* requests kept in must_cancel, not delivered */
  int wake_status;          /* what the pending suspension returns */
  coro__cancel_fn wait_cancel; /* cancel hook of the current wait */
  void *wait_arg;
  const char *wait_what;    /* what it waits on, for task dumps */
  coro_future *wait_target; /* coro_await: the future awaited */
  uint64_t parent_id;       /* the task that spawned it (0: none) */
  uint64_t born_ms;         /* uv_now() at spawn, for its age */
  coro__timer timer;        /* coro_sleep */
  unsigned shield_depth;    /* coro_shield_begin nesting: requests are kept */
  uint64_t id;
  char *name;               /* a given name too long for autoname (owned) */
  char autoname[24];        /* a short given name, or "Task-N" on demand */
};

/* coro_await's record of a wait: on the stack of an ordinary task, in
 * coro__compact for a compact one (nothing of a wait may be on its stack). */
typedef struct coro__await_rec {
  coro__waiter w;
  coro__task *task;
} coro__await_rec;

/* What a compact task has beyond an ordinary one. Only compact tasks carry
 * it, so that the tasks most programs spawn stay small. */
typedef struct coro__compact {
  coro__await_rec await;    /* coro_await's record */
  uint32_t saved_len;       /* compacted: bytes in saved */
  void *saved;              /* compacted: its used stack, heap copy */
  void *saved_sp;           /* compacted: where saved goes back; else NULL */
  struct coro__fiber *home; /* shares: the shared stack its frames are on */
} coro__compact;

typedef struct coro__ctask {
  coro__task t;
  coro__compact cx;
} coro__ctask;

/* The compact part of t; only for t->compact. */
static inline coro__compact *coro__task_cx(coro__task *t) {
  return &((coro__ctask *)t)->cx;
}

static inline coro__task *coro__task_of(coro_future *f) {
  return (coro__task *)f;
}

/* Suspend the running task t until coro__task_wake. cancel is the wait's
 * cancel hook (required); what names the wait in task dumps ("sleep",
 * "lock", "stream read", ...: a static string). Returns the wake status. A task woken while it
 * set up the wait (state READY) still switches out and resumes in the next
 * iteration. */
int coro__task_suspend(coro__task *t, coro__cancel_fn cancel, void *arg,
                       const char *what);
/* Make a waiting task ready; its suspension returns status. Does nothing if
 * t is not waiting. */
void coro__task_wake(coro__task *t, int status);
/* The task running on this thread's loop, NULL if none. */
coro__task *coro__task_current(void);
/* The running task, for a call that is about to wait in something other
 * than sleep, yield or await: NULL outside tasks and in a compact task, and
 * the call returns -EPERM then (a compact task may wait only in those). */
static inline coro__task *coro__task_for_wait(void) {
  coro__task *t = coro__task_current();
  return t != NULL && !t->compact ? t : NULL;
}
/* The scheduler's step for a task (the handle's run function). */
void coro__task_step(coro__handle *h);
/* The body of a fiber: runs tasks until told to exit. */
void coro__fiber_main(void *arg);
/* Exit the timeout scopes a finished task left entered, and free the pool
 * of scope records at loop teardown (scope.c). */
void coro__scopes_task_done(coro__task *t);
void coro__scopes_free(coro_loop *loop);
/* Set by an executor on a worker thread while it runs a job: coro_fail()
 * outside a task stores its error there. Core owns the slot so that
 * coro_fail needs nothing of the executors. */
extern _Thread_local int *coro__job_fail_err;

/* Free task structs of the pool (teardown). */
void coro__task_pool_free(coro_loop *loop);

#endif /* CORO_SRC_CORE_TASK_H_ */
