/* SPDX-License-Identifier: MIT */
/* The loop: a libuv loop, the FIFO ready queue, the timer heap, the pools
 * of fibers (stack + context) and task structs, and the slots where upper
 * layers keep their per-loop state. */
#ifndef CORO_SRC_CORE_LOOP_H_
#define CORO_SRC_CORE_LOOP_H_

#include <stdatomic.h>
#include <stdint.h>
#include <uv.h>

#include "coro-internal.h"
#include "ctx/ctx.h"
#include "ctx/stack.h"
#include "core/timer.h"
#include "util/queue-inl.h"

typedef struct coro__task coro__task;

/* Per-loop state of an upper layer. Core keeps one slot per subsystem that
 * needs state of its own on each loop (the executors' default pools, the
 * I/O layer's tables) and never looks inside: at the loop's end, after the
 * tasks are drained and before the inbox closes, it calls each slot's
 * at_end that is set, lowest id first, then clears the slot. This is how
 * the loop ends what upper layers started on it without including them. */
enum {
  CORO__SLOT_THREAD_POOL, /* src/exec/thread_pool.c: default pool, jobs */
  CORO__SLOT_PROC_POOL,   /* src/exec/proc_pool.c: default process pool */
  CORO__SLOT_IO,          /* src/io/ */
  CORO__SLOT_PROCESS,     /* src/io/process.c: children not yet reaped */
  CORO__SLOT_SPAWN_ON,    /* src/exec/loops.c: coro_spawn_on calls in flight */
  CORO__SLOTS
};
typedef struct coro__loop_slot {
  void *data;
  void (*at_end)(coro_loop *loop, struct coro__loop_slot *slot);
  /* coro_loop_stats: add this layer's figures to *st (NULL: none). */
  void (*stats)(coro_loop *loop, struct coro__loop_slot *slot,
                struct coro_stats *st);
} coro__loop_slot;

/* An entry of the ready queue: a task step or a deferred callback. */
typedef struct coro__handle {
  coro__queue node;
  void (*run)(struct coro__handle *h);
} coro__handle;

/* A stack with a context parked in fiber_main, ready to run any task. The
 * struct lives at the top of its own stack. */
typedef struct coro__fiber {
  coro__ctx ctx;
  int started;               /* switched into at least once */
  int in_call;               /* started eagerly by coro__ctx_call and not
                                suspended since (task.c) */
  coro__stack stack;
  coro__task *task;          /* task to run next; NULL tells the fiber to exit */
  coro_loop *loop;
  struct coro__fiber *next;  /* pool link; shared: loop->shares link */
  /* Shared stacks of compact tasks (task.c): */
  uint8_t share;             /* 1: a shared stack */
  uint8_t clean;             /* nothing on it: fresh or parked in fiber_main */
  unsigned homed;            /* compacted tasks whose frames belong here */
  struct coro__task *resident; /* the compact task whose frames are on it */
  coro__queue homers;        /* steps of homed tasks waiting for the resident
                                to leave a wait it cannot be compacted in */
} coro__fiber;

struct coro_loop {
  uv_loop_t *uv;             /* the libuv loop: own_uv, or the application's */
  uv_loop_t own_uv;          /* coro_run's own libuv loop (unused when attached) */
  int attached;              /* made by coro_loop_attach */
  int detaching;             /* coro_loop_detach has started */
  unsigned dispatching;      /* inside a callback of libcoro's own handles */
  uint64_t batches;          /* non-empty snapshots run so far: progress */
  uint64_t steps;            /* task steps run (coro_loop_stats) */
  uint64_t slow_steps;       /* steps reported slow (coro_loop_stats) */
  size_t uv_reqs;            /* libuv requests of libcoro that may outlive
                                their task (DNS): the loop ends after them */
  coro_future *main;         /* coro_run's main task: a batch stops when it ends */
  uv_check_t check;          /* runs the ready queue after each poll */
  uv_prepare_t prepare;      /* before each poll: spin, park the inbox */
  int parked;                /* the inbox is parked (prepare to check) */
  uint64_t idle_from_ns;     /* parked with posts due: when work ran out */
  uint64_t post_wait_ns;     /* average wait for a post (see loop.c) */
  int woken_by_post;         /* the inbox's wake-up ran during this park */
  int spun;                  /* spun in vain before this park */
  uv_timer_t guard;          /* attached drain: bounds a turn with nothing to wait for */
  uv_idle_t idle;            /* active while tasks are ready: keeps uv_run from blocking */
  uv_timer_t uvtimer;        /* armed for the earliest coro__timer */
  int idle_active;
  uint64_t polled_tick;      /* coarse ms of the last uv_run */
  unsigned iters_since_poll; /* iterations run since then */
  uint64_t armed_due;        /* due time uvtimer is armed for; 0 = not armed */

  coro__ctx sched_ctx;       /* the thread's own context: the scheduler */
  coro__ctx *back;           /* where a running task's suspension returns:
                                sched_ctx, or the task that started it
                                eagerly */
  coro__fiber *share;        /* the shared stack new compact tasks start on */
  coro__fiber *shares;       /* every shared stack (fiber.next) */
  size_t nshares;
  size_t ncompacted;         /* compacted tasks, and their copies' bytes */
  size_t compacted_bytes;
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
  coro__task *ctask_pool;    /* free compact task structs (coro__ctask) */
  struct scope_rec *scope_pool; /* free timeout-scope records (scope.c) */
  size_t ntask_pool;

  size_t stack_size;         /* default usable stack size */
  int debug;
  int64_t slow_step_ms;
  unsigned threads;
  int closing;               /* main finished (or detach): cancelling and draining */
  uint64_t gen;              /* 1, 2, ... per coro_run in the process: tells
                                a loop from an earlier one at the same address */

  /* Other threads (core/inbox.h). */
  struct coro__inbox *inbox; /* posts from other threads */
  uv_async_t async;          /* the inbox's wake-up; ref'd while ext_pending */
  size_t ext_pending;        /* operations whose completion comes by post */

  coro__loop_slot slots[CORO__SLOTS]; /* upper layers' per-loop state */
  struct coro__sigint *sigint; /* coro_config.sigint_cancels_main's watcher */

  /* Debug mode: the watchdog (src/debug/watchdog.c). The loop thread
   * publishes which step runs; the watchdog thread samples it, so a step
   * costs two stores and a load here, never a clock read. */
  uint64_t wd_own;                /* the loop's copy of wd_seq */
  _Atomic uint64_t wd_seq;        /* odd while a task step runs */
  _Atomic(coro__task *) wd_task;  /* the task of that step */
  _Atomic uint64_t wd_seen_seq;   /* a running step the watchdog has seen */
  _Atomic uint64_t wd_seen_lower; /* that step began after this (uv_hrtime) */
  _Atomic uint64_t wd_req;        /* a step the watchdog wants reported */
  _Atomic uint64_t wd_req_elapsed;/* for that report: held at least (ns) */
  _Atomic uint64_t wd_req_cpu;    /* and the loop thread's CPU meanwhile */
  struct coro__wd *wd;            /* the watchdog's record of this loop */
  int dump_signal;                /* coro_config.dump_signal / CORO_DUMP_SIGNAL */
  /* Task dumps (src/debug/dump.c): the suspended task switched to for its
   * backtrace, and where it switches back to. */
  coro__task *probe_task;
  coro__ctx *probe_back;
  void **probe_frames;
  int probe_cap, probe_n;
  int dumping;                    /* a dump is being taken */
  /* Every live loop of the process, for debuggers (tools/gdb/libcoro.py
   * walks coro__all_loops); under a lock of loop.c. */
  struct coro_loop *all_next, **all_pprev;
};

extern coro_loop *coro__all_loops; /* see all_next */

/* The slot id of loop (a CORO__SLOT_*). */
static inline coro__loop_slot *coro__loop_slot_of(coro_loop *loop, int id) {
  return &loop->slots[id];
}

/* The loop of this thread: inside coro_run, or between attach and detach. */
extern _Thread_local coro_loop *coro__tls_loop;

/* Append h to the ready queue; it runs in the next iteration's snapshot. */
void coro__loop_ready(coro_loop *loop, coro__handle *h);

/* Fibers. get returns NULL on ENOMEM. */
coro__fiber *coro__fiber_get(coro_loop *loop, size_t stack_size);
void coro__fiber_put(coro_loop *loop, coro__fiber *fb);
/* Free a fiber whose context is suspended mid-task (abandoned at shutdown). */
void coro__fiber_discard(coro_loop *loop, coro__fiber *fb);

#endif /* CORO_SRC_CORE_LOOP_H_ */
