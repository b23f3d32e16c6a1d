/* SPDX-License-Identifier: MIT */
/* The loop: a libuv loop, the FIFO ready queue, the timer heap and the
 * pools of fibers (stack + context) and task structs. */
#ifndef CORO_SRC_CORE_LOOP_H_
#define CORO_SRC_CORE_LOOP_H_

#include <stdint.h>
#include <uv.h>

#include "coro-internal.h"
#include "ctx/ctx.h"
#include "ctx/stack.h"
#include "util/queue-inl.h"

typedef struct coro__task coro__task;

/* An entry of the ready queue: a task step or a deferred callback. */
typedef struct coro__handle {
  coro__queue node;
  void (*run)(struct coro__handle *h);
} coro__handle;

/* A timer of the loop's own heap. It can live anywhere (in a task, on a
 * coroutine stack): starting and stopping it allocates nothing and no libuv
 * handle has to be closed. Equal deadlines fire in start order. */
typedef struct coro__timer {
  uint64_t due;      /* uv_hrtime() nanoseconds */
  uint64_t seq;      /* start order, breaks ties */
  size_t idx;        /* position in the heap; CORO__TIMER_IDLE when stopped */
  void (*cb)(struct coro__timer *t);
} coro__timer;
#define CORO__TIMER_IDLE ((size_t)-1)

/* A stack with a context parked in fiber_main, ready to run any task. The
 * struct lives at the top of its own stack. */
typedef struct coro__fiber {
  coro__ctx ctx;
  coro__stack stack;
  coro__task *task;          /* task to run next; NULL tells the fiber to exit */
  coro_loop *loop;
  struct coro__fiber *next;  /* pool link */
  int started;               /* switched into at least once */
} coro__fiber;

struct coro_loop {
  uv_loop_t uv;
  uv_idle_t idle;            /* active while tasks are ready: keeps uv_run from blocking */
  uv_timer_t uvtimer;        /* armed for the earliest coro__timer */
  int idle_active;
  uint64_t polled_tick;      /* coarse ms of the last uv_run */
  unsigned iters_since_poll; /* iterations run since then */
  uint64_t armed_due;        /* due time uvtimer is armed for; 0 = not armed */

  coro__ctx sched_ctx;       /* the thread's own context: the scheduler */
  coro__queue ready;         /* FIFO of coro__handle */
  coro__task *current;       /* running task, NULL in the scheduler/callbacks */

  coro__timer **heap;        /* binary min-heap of running timers */
  size_t heap_len, heap_cap;
  uint64_t timer_seq;

  coro__queue tasks;         /* live tasks (spawned, not finished) */
  size_t ntasks;
  coro__queue futures;       /* every future of this loop still allocated */
  coro__queue reports;       /* released futures whose failure nobody read */
  uint64_t task_counter;     /* for "Task-N" names */

  coro__fiber *fiber_pool;   /* parked fibers of the default stack size */
  size_t nfiber_pool;
  coro__fiber *fiber_other;  /* parked fibers of other sizes */
  size_t nfiber_other;
  coro__task *task_pool;     /* free task structs */
  struct scope_rec *scope_pool; /* free timeout-scope records (scope.c) */
  size_t ntask_pool;

  size_t stack_size;         /* default usable stack size */
  int debug;
  int64_t slow_step_ms;
  unsigned threads;
  int closing;               /* main finished: cancelling and draining */
  uint64_t gen;              /* 1, 2, ... per coro_run in the process: tells
                                a loop from an earlier one at the same address */

  /* Executors and threads (src/exec/). */
  struct coro__inbox *inbox; /* posts from other threads (exec/inbox.h) */
  uv_async_t async;          /* the inbox's wake-up; ref'd while ext_pending */
  size_t ext_pending;        /* operations whose completion comes by post */
  struct coro_pool *default_pool; /* coro_run_in_thread(pool == NULL) */
  void *exec_priv;           /* executor state of this loop (exec/) */

  /* Debug mode (src/debug/slow.c). */
  uint64_t step_started_ns;  /* start of the running step, when debug */
};

/* The loop of this thread, NULL outside coro_run. */
extern _Thread_local coro_loop *coro__tls_loop;

/* How many loops run in the process (coro_replace_allocator refuses then). */
int coro__loops_running(void);

/* Append h to the ready queue; it runs in the next iteration's snapshot. */
void coro__loop_ready(coro_loop *loop, coro__handle *h);

/* Timers: start fires cb once after ms milliseconds (0 or -ENOMEM when the
 * heap cannot grow); stop is a no-op on a stopped timer. */
void coro__timer_init(coro__timer *t, void (*cb)(coro__timer *t));
int coro__timer_start(coro_loop *loop, coro__timer *t, uint64_t ms);
void coro__timer_stop(coro_loop *loop, coro__timer *t);
/* Run every due timer and re-arm the libuv timer (its callback). */
void coro__timers_run(coro_loop *loop);
void coro__timers_free(coro_loop *loop);

/* Fibers. get returns NULL on ENOMEM. */
coro__fiber *coro__fiber_get(coro_loop *loop, size_t stack_size);
void coro__fiber_put(coro_loop *loop, coro__fiber *fb);
/* Free a fiber whose context is suspended mid-task (abandoned at shutdown). */
void coro__fiber_discard(coro_loop *loop, coro__fiber *fb);

#endif /* CORO_SRC_CORE_LOOP_H_ */
