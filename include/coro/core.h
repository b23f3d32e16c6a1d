/* SPDX-License-Identifier: MIT */
/* libcoro core: loop, tasks, futures, sleep, cancellation, errors.
 *
 * Include <coro.h>, not this file. Every call returns 0 or a
 * negative errno value (see coro/errno.h) unless its comment says otherwise.
 * The full reference, with every return code, is docs/api/core.md. */
#ifndef CORO_CORE_H_
#define CORO_CORE_H_

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "coro/errno.h"
#include "coro/version.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
# define CORO_EXTERN __attribute__((visibility("default")))
#else
# define CORO_EXTERN
#endif

/* Times are milliseconds. CORO_FOREVER: no limit; 0: do not wait. */
#define CORO_FOREVER ((int64_t)-1)

/* ------------------------------------------------------------------------ */
/* Version and errors                                                       */
/* ------------------------------------------------------------------------ */

CORO_EXTERN unsigned int coro_version(void);          /* CORO_VERSION_HEX */
CORO_EXTERN const char *coro_version_string(void);    /* "0.1.0" */
/* A message / the symbolic name ("ECANCELED") of any status code, also
 * libuv's. Never NULL; unknown codes give "Unknown error" / "UNKNOWN". */
CORO_EXTERN const char *coro_strerror(int err);
CORO_EXTERN const char *coro_err_name(int err);
/* The context switch compiled in, e.g. "asm,x86_64" or "ucontext". */
CORO_EXTERN const char *coro_ctx_method(void);

/* ------------------------------------------------------------------------ */
/* Running a loop                                                           */
/* ------------------------------------------------------------------------ */

/* Coroutine bodies and executor jobs share the pthread signature. */
typedef void *(*coro_fn)(void *arg);

/* More fields may be added at the end; zero-initialise the struct. */
typedef struct coro_config {
  size_t   stack_size;   /* per coroutine; 0 = 256 KiB reserved, pages on touch */
  int      debug;        /* debug mode; also on with CORO_DEBUG=1 */
  int64_t  slow_step_ms; /* debug: report a step longer than this; 0 = 100 */
  unsigned threads;      /* default thread pool size; 0 = number of CPUs */
  /* Like asyncio.run since 3.11: the first SIGINT cancels the main task
   * (which may clean up and finish; coro_run then returns -ECANCELED or
   * what main returned). That first delivery also gives SIGINT back its
   * default action, so a second Ctrl-C ends the process at once, killed by
   * SIGINT as an ordinary Ctrl-C would, even while a task hogs the loop.
   * Only when SIGINT has its default action as coro_run starts (a program
   * or shell that ignores or handles SIGINT keeps its choice); the watcher
   * never keeps the loop alive, and SIGINT's previous disposition is put
   * back before coro_run returns. */
  int      sigint_cancels_main;
  /* A signal (e.g. SIGQUIT) that makes every loop that asked for it print
   * its task dump (coro_dump_tasks) to stderr, as Go does on SIGQUIT; 0 =
   * none. Also set with CORO_DUMP_SIGNAL=QUIT (or another name without
   * SIG, or a number) in the environment. A loop prints at its next
   * iteration: one held by a step that never ends prints nothing (debug
   * mode's watchdog reports that step). Not installed with
   * CORO_NO_SIGNAL_HANDLERS=1; the signal's previous disposition is
   * replaced for the rest of the process. */
  int      dump_signal;
} coro_config;

/* Like asyncio.run(): make a loop on this thread, run main(arg) as its first
 * task until it finishes, cancel and drain every task still alive, free the
 * loop. Returns main's status (0, or its negative error / -ECANCELED);
 * *result (if not NULL) gets main's return value.
 * Errors: -EINVAL (main NULL, bad config), -EBUSY (a loop already runs on
 * this thread, e.g. called from inside a task), -ENOMEM, a libuv error from
 * loop creation, -EDEADLK (every task waited for something nothing could
 * ever deliver: they were cancelled and drained). */
CORO_EXTERN int coro_run(coro_fn main, void *arg, void **result);
CORO_EXTERN int coro_run_config(const coro_config *cfg, coro_fn main,
                                void *arg, void **result);

typedef struct coro_loop coro_loop;
typedef struct coro_future coro_future;
struct uv_loop_s;
/* The loop of this thread (borrowed): inside coro_run, or between
 * coro_loop_attach and coro_loop_detach; NULL otherwise. */
CORO_EXTERN coro_loop *coro_loop_current(void);
/* The underlying libuv loop, for integration (NULL if loop is NULL). libuv
 * callbacks must not call suspending libcoro functions; resolve a future
 * instead. */
CORO_EXTERN struct uv_loop_s *coro_loop_uv(coro_loop *loop);

/* Debug mode (coro_config.debug, or CORO_DEBUG=1 in the environment): a
 * task step that holds the loop for slow_step_ms or longer (default 100) is
 * reported after it ends, in asyncio's words, to stderr:
 *   libcoro: Executing <task NAME> took 0.150 seconds
 * A watchdog thread (one per process) times the steps: the loop thread
 * only publishes which step runs, so debug mode costs a step two stores
 * and a load (within noise on bench_spawn), and nothing when it is off.
 * A reported duration is never short and at most one sample period long
 * (slow_step_ms / 20, 1-5 ms), so a step of exactly slow_step_ms is
 * reported. A step still running after slow_step_ms (and again after 2x,
 * 4x, ...) is reported while it runs, with the loop thread's CPU time
 * meanwhile (busy or blocked) and the task's backtrace:
 *   libcoro: watchdog: task <NAME> has held the loop for 0.100 seconds and
 *   is still running; CPU 0.000 s: blocked (waiting in the kernel)
 * followed by the frames. The backtrace is taken on the loop's thread by a
 * SIGURG sent to it (not when the program has its own SIGURG handler, nor
 * with CORO_NO_SIGNAL_HANDLERS=1: then the line comes without the name and
 * the frames). The signal may end a blocking call that is never restarted
 * (nanosleep, poll, ...) early with EINTR, as Go's preemption signal does:
 * code that blocks retries on EINTR. Function names need the program's
 * symbols exported (-rdynamic) for the frames of the program itself.
 * cb(f, name, seconds, data) replaces the report (f and name are borrowed,
 * valid during the call; cb runs on the loop's thread outside any task and
 * must not suspend); NULL restores the default. Process-wide; set it
 * before loops run. */
typedef void (*coro_slow_step_cb)(coro_future *f, const char *name,
                                  double seconds, void *data);
CORO_EXTERN void coro_set_slow_step_handler(coro_slow_step_cb cb, void *data);
/* 1 if loop runs in debug mode, 0 if not, -EINVAL for NULL. */
CORO_EXTERN int coro_loop_debug(coro_loop *loop);

/* What a loop is doing, for metrics: a snapshot, cheap enough to take
 * every second (it walks the ready queue and the list of open I/O
 * objects, nothing else). Counters ("since the loop started") only grow.
 * More fields may be added at the end. */
typedef struct coro_stats {
  size_t tasks;             /* live tasks: spawned and not finished */
  uint64_t tasks_spawned;   /* tasks spawned since the loop started */
  uint64_t steps;           /* task steps run (a switch into a task and back) */
  uint64_t iterations;      /* loop iterations that ran something */
  size_t ready;             /* task steps and callbacks queued to run now */
  size_t timers;            /* armed timers: sleeps, timeouts, deadlines */
  size_t io_open;           /* open I/O objects: streams (also a child
                               process's pipes), servers, UDP sockets,
                               signal watchers */
  size_t waiting_threads;   /* operations waiting for another thread: pool
                               jobs, calls to other loops, file requests */
  size_t pool_queued;       /* the loop's default thread pool (0 and 0 */
  size_t pool_running;      /*   until the loop has used it): jobs waiting, running */
  size_t procs_queued;      /* the default process pool, the same */
  size_t procs_running;
  uint64_t slow_steps;      /* steps reported slow by debug mode */
  size_t compacted;         /* compact tasks whose stack is copied out now */
  size_t compacted_bytes;   /*   and the bytes of those copies */
  size_t shared_stacks;     /* stacks shared by compact tasks */
} coro_stats;
/* Fill *out for loop (NULL: this thread's loop), on the loop's thread.
 * Errors: -EINVAL (out NULL, or loop NULL with no loop on this thread),
 * -EPERM (another thread's loop). */
CORO_EXTERN int coro_loop_stats(coro_loop *loop, coro_stats *out);

/* A task dump (asyncio.all_tasks() with Task.print_stack(), Go's
 * goroutine dump): every live task of the calling thread's loop, oldest
 * first. One task's entry, borrowed for the duration of the callback: */
typedef struct coro_task_info {
  uint64_t id;               /* 1, 2, ... in spawn order */
  const char *name;          /* coro_task_name */
  const char *state;         /* "created" (not started yet), "ready" (to
                                run in this iteration), "running" (the
                                task taking the dump), "waiting" */
  const char *waiting_on;    /* ready or waiting: what its last wait was
                                ("sleep", "await", "lock", "queue get",
                                "channel", "stream read", "accept", "file",
                                "dns", "yield", ...); NULL otherwise */
  uint64_t awaited_id;       /* awaiting a task: its id; 0 otherwise */
  int64_t sleep_left_ms;     /* in coro_sleep: ms until it ends; -1 otherwise */
  double age_s;              /* since it was spawned (to the loop's ms clock) */
  uint64_t parent_id;        /* the task that spawned it; 0: none */
  size_t stack_used;         /* bytes of its stack in memory: the high-water
                                mark (of earlier tasks too, on a pooled stack);
                                0 before its first step */
  size_t stack_size;         /* bytes reserved for it */
  int nframes;               /* its backtrace, innermost first: 0 before its */
  void *const *frames;       /*   first step; the running task's own too */
} coro_task_info;
typedef void (*coro_task_info_cb)(const coro_task_info *info, void *data);
/* Call cb for each task. A suspended task's backtrace is taken on its own
 * stack (the dump switches to it and straight back; it stays suspended and
 * nothing else of it runs), with glibc's backtrace(), so it needs the
 * unwind tables gcc and clang emit by default, not frame pointers.
 * Returns the number of tasks, or -EINVAL (cb NULL), -EPERM (no loop on
 * this thread, or called from a callback of the dump itself). */
CORO_EXTERN int coro_dump_tasks_cb(coro_task_info_cb cb, void *data);
/* The same, written to out (NULL: stderr), one line per task and one per
 * frame:
 *   libcoro: 3 tasks on loop 0x55d0c3a1e2a0
 *   task 2 <sleeper> waiting on sleep (1.250 s left), age 0.750 s, parent 1,
 *     stack 8 KiB of 256 KiB
 *       #0 coro_sleep+0x3c (libcoro.so.0)
 *       #1 sleeper+0x12 (./app)
 * Frame names come from dladdr: a program's own functions need -rdynamic.
 * Returns what coro_dump_tasks_cb returns. */
CORO_EXTERN int coro_dump_tasks(FILE *out);

/* ------------------------------------------------------------------------ */
/* Embedding in an application's libuv loop                                 */
/* ------------------------------------------------------------------------ */

/* Make a libcoro loop that lives on the application's libuv loop uv and is
 * driven by the application's own uv_run on this thread (which must be the
 * thread that runs uv). The loop adds a few handles of its own to uv: they
 * keep uv alive only while libcoro has work (tasks ready to run, sleeps,
 * I/O, jobs in other threads), so uv_run still returns when the
 * application's work and libcoro's are both done; tasks waiting for
 * something nobody will deliver do not hold it. From attach to detach this
 * is the thread's current loop (coro_loop_current), so the thread may make
 * promises, channels and so on outside tasks as well. cfg as for
 * coro_run_config (NULL: defaults); sigint_cancels_main needs a main task
 * and is refused. Tasks run from uv's check phase, in the same order and
 * batches as under coro_run. One loop per thread.
 * Errors: -EINVAL (out or uv NULL, bad config), -EBUSY (this thread
 * already has a loop: coro_run or another attach), -ENOMEM, a libuv error
 * from handle creation. *out is untouched on failure. */
CORO_EXTERN int coro_loop_attach(coro_loop **out, struct uv_loop_s *uv,
                                 const coro_config *cfg);
/* Start fn(arg) as a task of loop, from loop's thread, also outside any
 * task (a libuv callback, the code around uv_run): coro_spawn with the loop
 * named. The task first runs on the next turn of uv_run. *out (if not NULL)
 * gets a reference the caller owns; read the outcome with
 * coro_future_on_done, coro_future_status or, from a task, coro_await.
 * Errors: -EINVAL (loop or fn NULL), -EPERM (loop is not this thread's
 * loop), -EPIPE (loop is being detached), -ENOMEM. */
CORO_EXTERN int coro_loop_spawn(coro_loop *loop, coro_future **out,
                                coro_fn fn, void *arg);
/* End an attached loop: cancel every task and let them unwind (running
 * uv_run on the application's loop as needed, which also runs the
 * application's callbacks meanwhile), end what upper layers started on it
 * (default pools, I/O objects still open are closed), remove every handle
 * libcoro added to uv, and free loop. uv itself is left as it was: once
 * the application has closed its own handles, uv_loop_close(uv) returns 0.
 * Futures of the loop may be released later. Call it on loop's thread,
 * outside uv_run (never from a callback of uv's loop) and outside tasks.
 * Returns 0. Errors: -EINVAL (loop NULL, or a loop coro_run made), -EPERM
 * (another thread), -EBUSY (from inside a task or a libcoro callback: the
 * loop would wait for itself). */
CORO_EXTERN int coro_loop_detach(coro_loop *loop);

/* ------------------------------------------------------------------------ */
/* Tasks and futures                                                        */
/* ------------------------------------------------------------------------ */

/* Every awaitable: tasks, promises, executor jobs. Reference counted. */
typedef struct coro_future coro_future;

/* More fields may be added at the end; zero-initialise the struct. */
typedef struct coro_task_opts {
  const char *name;   /* shown in reports and dumps; copied; NULL = "Task-N" */
  size_t stack_size;  /* 0 = the loop's default */
  unsigned flags;     /* CORO_TASK_* below, or 0 */
} coro_task_opts;

/* Eager start (asyncio's eager_task_factory): spawning from a task runs the
 * new task at once, inside the spawn call, until it first suspends or
 * finishes; then the spawning task goes on. A task that finishes without
 * suspending is returned done, and awaiting it does not suspend. Spawned
 * from outside a task (a done callback, coro_loop_spawn), the flag is
 * ignored: the task starts in the next iteration, as a lazy one does. */
#define CORO_TASK_EAGER 0x1u
/* Compact task, for programs that keep very many tasks waiting: while it
 * waits in coro_sleep, coro_yield or coro_await, the used part of its stack
 * (a few hundred bytes for a task that sleeps) may be copied out to a heap
 * block of that size, and its stack, shared by the compact tasks of the
 * loop, lent to another; it is copied back, at the same addresses, before
 * the task resumes. The stack keeps its guard page: an overflow is caught
 * and named as for any task. Rules: while it waits, nothing outside the task
 * may use a pointer into its stack (its locals, or memory its callees
 * placed there); it may wait only in those three calls: every other call
 * that can suspend (locks, queues, channels, I/O, gather, ...) returns
 * -EPERM at once, doing nothing. It runs on the loop's default stack size
 * (stack_size must be 0 or that size, or coro_spawn_opts returns -EINVAL).
 * In builds where compaction is not available (the ucontext switch,
 * ThreadSanitizer) the rules still apply and the task keeps its own stack. */
#define CORO_TASK_COMPACT 0x2u

/* Schedule fn(arg) as a new task of the current loop. It first runs after
 * the caller suspends (lazy start, FIFO). *out (if out != NULL) gets a
 * reference the caller owns; with out == NULL the task is detached. The loop
 * keeps every task alive until it finishes, whoever holds handles.
 * May be called from a task or from a done callback.
 * Errors: -EINVAL (fn NULL), -EPERM (no loop on this thread), -ENOMEM. */
CORO_EXTERN int coro_spawn(coro_future **out, coro_fn fn, void *arg);
/* Errors as coro_spawn, and -EINVAL for unknown flags or a compact task
 * with another stack size. */
CORO_EXTERN int coro_spawn_opts(coro_future **out, coro_fn fn, void *arg,
                                const coro_task_opts *opts);
/* coro_spawn with CORO_TASK_EAGER: from a task, fn runs at once until it
 * first suspends or returns. */
CORO_EXTERN int coro_spawn_eager(coro_future **out, coro_fn fn, void *arg);
/* The running task (borrowed), NULL outside tasks. */
CORO_EXTERN coro_future *coro_current(void);
/* The name of a task ("Task-N" unless given), NULL for other futures. */
CORO_EXTERN const char *coro_task_name(const coro_future *f);
/* Record err (< 0; anything else records -EINVAL) as the current task's
 * failure and return NULL, so that `return coro_fail(-ENOENT);` ends the
 * task with that status. Outside a task it does nothing. */
CORO_EXTERN void *coro_fail(int err);

/* Suspend until f is done. Returns f's status (0 or < 0); *result (if not
 * NULL) gets its value. A future that is already done returns at once
 * without suspending. If the awaiting task is cancelled meanwhile, the
 * cancellation is passed on to f: a promise ends cancelled at once; a task
 * receives the request, and the awaiter resumes when it has finished, with
 * its outcome (-ECANCELED if it ended cancelled, its value if it handled the
 * cancellation and returned).
 * Errors: -EINVAL (f NULL), -EPERM (outside a task or f from another loop),
 * -EDEADLK (f is the current task), -ECANCELED. */
CORO_EXTERN int coro_await(coro_future *f, void **result);
/* Sleep ms milliseconds; 0 is one trip around the loop like coro_yield;
 * CORO_FOREVER sleeps until cancelled. Returns 0, -ECANCELED, -EINVAL
 * (ms < -1) or -EPERM (outside a task). */
CORO_EXTERN int coro_sleep(int64_t ms);
/* Let every other ready task run once (asyncio's sleep(0)). 0, -ECANCELED
 * or -EPERM. */
CORO_EXTERN int coro_yield(void);

/* Request cancellation of f. A promise ends cancelled at once; a task gets
 * -ECANCELED from the suspending call it is in or makes next (several
 * requests before delivery arrive as one), and a task cancelled before its
 * first step never runs its body. Returns 0 (also when repeated), -EALREADY
 * if f is done, -EINVAL, -EPERM (f from another loop). */
CORO_EXTERN int coro_cancel(coro_future *f);
/* asyncio's counter protocol: how many cancellation requests task f has
 * received and not taken back with coro_uncancel (0 for other futures).
 * coro_uncancel lowers the count (never below 0) and returns the new value;
 * reaching 0 also withdraws a request not yet delivered (3.13 semantics).
 * Only the party that called coro_cancel should call coro_uncancel.
 * Both return -EINVAL for NULL. */
CORO_EXTERN int coro_cancelling(const coro_future *f);
CORO_EXTERN int coro_uncancel(coro_future *f);

/* A promise: a future resolved by hand (on the loop's thread). The creator
 * owns one reference. -EINVAL, -EPERM (no loop), -ENOMEM. */
CORO_EXTERN int coro_future_new(coro_future **out);
/* Complete a promise with a value / an error (err < 0). Its waiters and
 * callbacks run later, from the loop. -EALREADY if done, -EPERM on a task
 * or from another loop, -EINVAL (NULL, err >= 0). */
CORO_EXTERN int coro_future_resolve(coro_future *f, void *value);
CORO_EXTERN int coro_future_reject(coro_future *f, int err);
/* CORO_PENDING (> 0) until done; then 0 or the negative error
 * (-ECANCELED if it ended cancelled). -EINVAL for NULL. */
CORO_EXTERN int coro_future_status(const coro_future *f);
/* The value of a future that succeeded; NULL otherwise. */
CORO_EXTERN void *coro_future_value(const coro_future *f);
/* cb(f, data) runs from the loop after f is done, never inside the resolving
 * call, in registration order, outside any task (coro_current() is NULL and
 * suspending calls return -EPERM there; coro_spawn works). On a future that
 * is already done it runs on the next loop iteration. A callback still
 * registered on a future that never completes is dropped when the loop ends.
 * -EINVAL, -EPERM, -ENOMEM. */
CORO_EXTERN int coro_future_on_done(coro_future *f,
                                    void (*cb)(coro_future *f, void *data),
                                    void *data);
/* Take / give back a reference. retain returns f (NULL stays NULL); release
 * of NULL does nothing. A future may outlive its loop: it can then only be
 * inspected and released. */
CORO_EXTERN coro_future *coro_future_retain(coro_future *f);
CORO_EXTERN void coro_future_release(coro_future *f);

/* ------------------------------------------------------------------------ */
/* Allocator                                                                */
/* ------------------------------------------------------------------------ */

/* Route libcoro's own allocations (not libuv's, not stacks) through these.
 * Call before any loop runs; all four are required. -EINVAL if one is NULL,
 * -EBUSY while a loop runs. */
typedef void *(*coro_malloc_fn)(size_t size);
typedef void *(*coro_realloc_fn)(void *ptr, size_t size);
typedef void *(*coro_calloc_fn)(size_t count, size_t size);
typedef void (*coro_free_fn)(void *ptr);
CORO_EXTERN int coro_replace_allocator(coro_malloc_fn m, coro_realloc_fn r,
                                       coro_calloc_fn c, coro_free_fn f);

#ifdef __cplusplus
}
#endif
#endif /* CORO_CORE_H_ */
