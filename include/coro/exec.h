/* SPDX-License-Identifier: MIT */
/* libcoro executors: thread pools, process pools, parallel map, and calls
 * between threads and loops. Include <coro.h>, not this file. The
 * reference is docs/api/exec.md.
 *
 * Pools are independent of loops: any loop may submit to any pool, and a
 * job's result goes back to the loop that submitted it. */
#ifndef CORO_EXEC_H_
#define CORO_EXEC_H_

#include "coro/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct coro_pool coro_pool;

/* Options of one job. More fields may be added at the end; zero-initialise
 * the struct. NULL options mean defaults. */
typedef struct coro_job_opts {
  const char *name;     /* shown in stuck-job reports; copied; NULL = "job-N" */
  int64_t timeout_ms;   /* time limit; 0 or CORO_FOREVER = none (see each pool) */
  /* Thread jobs: frees a result nobody will read (the job finished after
   * its future was cancelled or timed out, after its loop ended, or after
   * every reference to its future was released), or a non-NULL result of a
   * job that failed. Runs on the loop's thread or on the worker's. data is
   * discard_data. */
  void (*discard)(void *result, void *data);
  void *discard_data;
} coro_job_opts;

/* What a bounded shutdown reports for each job still running at its end. */
typedef struct coro_job_info {
  const char *name;     /* the job's name (borrowed, valid during the call) */
  uint64_t id;          /* 1, 2, ... in the order jobs started, per pool */
  int64_t running_ms;   /* how long it has been running */
  int pid;              /* process jobs: the worker's pid; thread jobs: 0 */
} coro_job_info;
typedef void (*coro_job_stuck_cb)(const coro_job_info *job, void *data);

/* ---- thread pool -------------------------------------------------------- */

/* ==== thread pool: section owned by src/exec/thread_pool.c ==== */
/* A pool of nthreads worker threads (0 = number of CPUs; at most 4096),
 * started lazily as jobs arrive. Any thread; *out untouched on failure.
 * -EINVAL (out NULL, too many threads), -ENOMEM. */
CORO_EXTERN int coro_thread_pool_new(coro_pool **out, unsigned nthreads);
/* Loop thread (a task or a callback): run fn(arg) on a worker of pool
 * (NULL = this loop's default pool, made on first use with
 * coro_config.threads threads). *out gets the job's future, owned by the
 * caller (coro_future_release); its value is fn's return value, its status
 * 0, or the error fn gave with `return coro_fail(err);`.
 * - Cancelling the future (coro_cancel, or cancelling a task that awaits
 *   it) while the job is queued removes it: fn never runs. While it runs:
 *   the future ends with -ECANCELED at once, the job's cancel flag is set
 *   (coro_job_cancelled()), and the result fn returns later goes to
 *   opts->discard (if given; otherwise it is dropped).
 * - opts->timeout_ms > 0: counted from submission; at the limit the future
 *   ends with -ETIMEDOUT, exactly as a cancellation otherwise (a thread
 *   cannot be killed: the job keeps running until fn returns).
 * - The job counts as pending work of the loop (the loop is not judged
 *   stuck while it runs).
 * - The first job of a burst reaches the pool at once; the others
 *   submitted during the same task step follow together when the task
 *   next suspends (two trips through the pool's lock per burst).
 * -EINVAL (out or fn NULL, pool not a thread pool, timeout_ms < -1),
 * -EPERM (no loop on this thread), -EPIPE (pool shut down, or the loop is
 * ending), -ENOMEM, -EAGAIN (the pool has no thread and none could be
 * started). On failure fn never runs. */
CORO_EXTERN int coro_run_in_thread(coro_future **out, coro_pool *pool,
                                   coro_fn fn, void *arg);
CORO_EXTERN int coro_run_in_thread_opts(coro_future **out, coro_pool *pool,
                                        coro_fn fn, void *arg,
                                        const coro_job_opts *opts);
/* Inside a thread-pool job: 1 once the job's future was cancelled or timed
 * out, or its pool / loop is ending and wants it to stop; 0 otherwise and
 * outside jobs. A job polls it to stop early (cooperative cancellation). */
CORO_EXTERN int coro_job_cancelled(void);
/* ==== end of thread pool section ==== */

/* ---- process pool ------------------------------------------------------- */

/* ==== process pool: section owned by src/exec/proc_pool.c ==== */
/* Worker processes of the same program run a coro_proc_fn on bytes in and
 * give bytes out (docs/api/exec.md, "Process pool"). Workers are the
 * program's own binary re-executed (posix_spawn of /proc/self/exe): a
 * constructor in libcoro makes them workers before main() runs, so main
 * needs no change, and nothing is ever forked from a threaded process. The
 * program must link libcoro (statically or as a dependency), not dlopen it.
 * Each worker dies with its parent (PR_SET_PDEATHSIG), sits in its own
 * process group, has /dev/null as stdin, no descriptor of the parent but its
 * socket, and default signal dispositions. The program must not reap
 * children it did not start (waitpid(-1), SIGCHLD set to SIG_IGN).
 *
 * A job function runs in a worker: in/in_len is a copy of the submitted
 * input (in is never NULL); it returns 0 or a negative status; on 0, *out
 * (malloc'd by fn; the library frees it with free()) and *out_len are the
 * result (*out may stay NULL for an empty result). A positive return, or
 * *out == NULL with *out_len > 0, gives -EINVAL. fn must be a function of
 * the main program or of a shared object loaded from an absolute path (the
 * worker loads it if the parent dlopen'ed it). */
typedef int (*coro_proc_fn)(const void *in, size_t in_len, void **out,
                            size_t *out_len);
/* Thread-safe. Make a pool of nprocs workers (0 = number of CPUs); waits
 * until they are spawned (not until they are ready). The pool keeps its
 * size: a worker that dies is replaced at once.
 * -EINVAL (out NULL, nprocs > 1024), -ENOMEM, or the error of
 * socketpair/eventfd/pthread_create/posix_spawn (-EAGAIN, -EMFILE...). */
CORO_EXTERN int coro_process_pool_new(coro_pool **out, unsigned nprocs);
/* Loop thread. Submit fn(in) to pool (NULL = this loop's default process
 * pool, made on first use with one worker per CPU and freed when coro_run
 * ends). The input is copied now; *out gets the job's future (the caller
 * owns one reference). Await it: its status is fn's (0 or negative), or
 *   CORO_EWORKER_SIGNAL(s)  the worker was killed by signal s (SIGSEGV,
 *                           SIGABRT from abort(), SIGKILL from anyone...)
 *   CORO_EWORKER_EXIT(c)    the worker exited with status c before replying
 *   CORO_EWORKER_START      workers cannot start (3 in a row exited before
 *                           they were ready): the pool is broken
 *   -ETIMEDOUT              opts->timeout_ms passed: the worker was killed
 *   -ECANCELED              cancelled (coro_cancel, a cancelled awaiter,
 *                           coro_wait_for's time-out, the pool shut down
 *                           or freed, the loop ended)
 *   -ENOENT                 fn could not be found in the worker
 *   -EPROTO, -ENOMEM        the reply was malformed / could not be stored
 * Only the job whose worker died fails; the worker is replaced. Its value
 * (coro_await's *result) points to the result bytes: coro_future_bytes.
 * Cancelling a queued job removes it (it never runs); cancelling a running
 * job releases its awaiter at once and kills its worker (SIGKILL; a new one
 * is started). The time limit counts from the moment a worker starts the
 * job (time in the queue does not count).
 * Returns 0, or (nothing submitted, *out untouched) -EINVAL (out or fn
 * NULL, in NULL with in_len > 0, timeout_ms < -1, not a process pool, fn
 * in no loaded object), -EPERM (no loop runs on this thread), -EPIPE (the
 * pool was shut down, or this loop is ending), CORO_EWORKER_START (the pool
 * is broken), -ENOMEM, or an error making the default pool. */
CORO_EXTERN int coro_run_in_process(coro_future **out, coro_pool *pool,
                                    coro_proc_fn fn, const void *in,
                                    size_t in_len);
/* The same with options (NULL = defaults): name (copied; reported for
 * stuck jobs, default "job-N"), timeout_ms (0 or CORO_FOREVER: none);
 * discard is for thread jobs and ignored here. */
CORO_EXTERN int coro_run_in_process_opts(coro_future **out, coro_pool *pool,
                                         coro_proc_fn fn, const void *in,
                                         size_t in_len,
                                         const coro_job_opts *opts);
/* The result bytes of a finished process job, owned by the future (valid
 * until its last reference is released; *data may be NULL when *len is 0).
 * Either pointer may be NULL. Returns 0, the job's failure status (nothing
 * written), -EAGAIN while it is pending, -EINVAL if f is NULL or not a
 * process job's future. */
CORO_EXTERN int coro_future_bytes(const coro_future *f, const void **data,
                                  size_t *len);
/* Process pools and coro_pool_shutdown / coro_pool_shutdown_timeout /
 * coro_pool_free (declared below): shutdown refuses new jobs (-EPIPE),
 * cancels the queued ones (-ECANCELED), lets the running ones finish, then
 * ends the idle workers; with a wait it returns once every job has ended and
 * every worker is reaped (a task suspends, other threads block), bounded:
 * -ETIMEDOUT after reporting each job still running (coro_job_info.pid is
 * its worker). coro_pool_free kills the workers still running jobs (those
 * jobs end -ECANCELED), reaps every worker and joins the pool thread. */
/* ==== end of process pool section ==== */

/* ---- both pools ----------------------------------------------------------- */

/* Any thread. Stop taking jobs (later submissions: -EPIPE); queued jobs are
 * cancelled (they never run; their futures end with -ECANCELED); with
 * wait != 0, wait until the running jobs have finished, then join the
 * workers: a task suspends (other tasks keep running), a plain thread
 * blocks. With wait == 0, return at once (the workers end on their own).
 * Repeating it is harmless. 0, -EINVAL (pool NULL), -EDEADLK (called
 * with wait from a job of that very pool), -ECANCELED (the waiting task
 * was cancelled; the pool stays shut down). */
CORO_EXTERN int coro_pool_shutdown(coro_pool *pool, int wait);
/* The same with a bounded wait: timeout_ms (CORO_FOREVER = no limit, 0 =
 * do not wait). If jobs still run at the limit, stuck(info, data) is called
 * once per such job (on the calling thread, with the pool's lock held: it
 * must not call pool functions) and -ETIMEDOUT is returned; the pool stays
 * shut down and coro_pool_free may still be called. -EINVAL for
 * timeout_ms < -1. */
CORO_EXTERN int coro_pool_shutdown_timeout(coro_pool *pool, int64_t timeout_ms,
                                           coro_job_stuck_cb stuck, void *data);
/* Any thread, a job of the pool included. Shut the pool down without waiting (if not yet) and free it. Jobs still
 * running are not waited for: their threads are detached and the pool's
 * memory goes when the last of them ends; their futures still complete.
 * Shutdowns still waiting for the pool (tasks or threads) return -EPIPE,
 * as every wait on an object freed meanwhile does; the last of them lets
 * the pool go. NULL does nothing. */
CORO_EXTERN void coro_pool_free(coro_pool *pool);

/* ---- parallel map ------------------------------------------------------- */

/* ==== parallel map: section owned by src/exec/pmap.c ==== */
/* Apply a function to count inputs on a pool, at most `limit` jobs in
 * flight, and hand the results back in input order or as they finish
 * (aiochan's parallel_pipe). A map belongs to the loop that made it. */
typedef struct coro_pmap coro_pmap;
/* Zero-initialise; more fields may be added at the end. Give fn + inputs
 * (thread mode) or proc_fn + in_data + in_lens (process mode). */
typedef struct coro_pmap_opts {
  size_t count;              /* number of inputs (0: the map is empty) */
  unsigned limit;            /* jobs in flight at most; 0 = number of CPUs */
  int ordered;               /* 1: deliver in input order; 0: as they finish */
  coro_pool *pool;           /* thread mode: NULL = the loop's default pool;
                                process mode: a process pool (required) */
  coro_fn fn;                /* thread mode: runs fn(inputs[i]) */
  void *const *inputs;       /* thread mode: count pointers */
  coro_proc_fn proc_fn;      /* process mode: proc_fn(in_data[i], in_lens[i]) */
  const void *const *in_data;
  const size_t *in_lens;
  const coro_job_opts *job;  /* options of every job (name, timeout_ms,
                                discard: also frees results the map drops) */
} coro_pmap_opts;
/* Loop thread. Make a map and start its first `limit` jobs. The input
 * arrays are borrowed until the map is freed. -EINVAL (out or opts NULL,
 * no function or inputs, both modes, process mode without a pool),
 * -EPERM (no loop), -ENOMEM. A job that cannot be submitted (pool shut
 * down: -EPIPE, no memory) is delivered as that item's status. */
CORO_EXTERN int coro_pmap_new(coro_pmap **out, const coro_pmap_opts *opts);
/* In a task: wait for the next result. 0 and *index (the input's
 * position), *status (the job's: 0, its coro_fail error, -ETIMEDOUT,
 * -ECANCELED...) and *value (thread mode: fn's result, now the caller's;
 * process mode: the bytes, borrowed until the next call or the free, see
 * coro_pmap_bytes); any of the three may be NULL. CORO_EOF once every item
 * was delivered; -EPIPE after coro_pmap_cancel; -ECANCELED if the calling
 * task is cancelled while it waits (no item is lost: call again);
 * -EINVAL (m NULL); -EPERM (outside a task, or another loop's map). */
CORO_EXTERN int coro_pmap_next(coro_pmap *m, size_t *index, int *status,
                               void **value);
/* Process mode: the bytes of the item coro_pmap_next delivered last
 * (borrowed, valid until the next call of coro_pmap_next or the free).
 * -EINVAL (m NULL, thread mode), -ENOENT (nothing delivered yet). */
CORO_EXTERN int coro_pmap_bytes(coro_pmap *m, const void **data, size_t *len);
/* Loop thread: cancel everything: queued jobs never run, running ones are
 * cancelled as coro_cancel does for their futures, results not yet
 * delivered go to opts->job->discard; a waiting coro_pmap_next returns
 * -EPIPE, and so do later calls. 0, -EALREADY (already cancelled or
 * every item delivered), -EINVAL, -EPERM. */
CORO_EXTERN int coro_pmap_cancel(coro_pmap *m);
/* Loop thread: cancel (as coro_pmap_cancel) and free. No task may be
 * waiting in coro_pmap_next on m. NULL does nothing. */
CORO_EXTERN void coro_pmap_free(coro_pmap *m);
/* The callback form, in a task: run the whole map, calling
 * cb(index, status, value, data) for each result in delivery order, from
 * the calling task (it may suspend). value is the caller's as in
 * coro_pmap_next. A non-zero return from cb cancels the rest and is
 * returned. 0 when every item was delivered; coro_pmap_new's errors;
 * -ECANCELED if the task was cancelled (the rest is cancelled too). */
typedef int (*coro_pmap_cb)(size_t index, int status, void *value, void *data);
CORO_EXTERN int coro_pmap_run(const coro_pmap_opts *opts, coro_pmap_cb cb,
                              void *data);
/* ==== end of parallel map section ==== */

/* ---- threads and loops -------------------------------------------------- */

/* ==== threads and loops: section owned by src/exec/threadsafe.c ==== */
/* Any thread: queue cb(arg) to run on loop's thread, from the loop,
 * outside any task (like a done callback: it may spawn tasks and resolve
 * promises, not suspend). Calls from one thread run in call order. Does
 * not wait. One small allocation per call. loop must be valid, i.e. its
 * coro_run has not returned (the loop pointer is the caller's promise).
 * -EINVAL (NULL), -EPIPE (the loop is shutting down: its main task has
 * finished; cb will not run), -ENOMEM. */
CORO_EXTERN int coro_call_threadsafe(coro_loop *loop, void (*cb)(void *arg),
                                     void *arg);
/* From any thread but loop's own: spawn fn(arg) as a task on loop and
 * block the calling thread until it finishes (asyncio's
 * run_coroutine_threadsafe(...).result(timeout)). Returns the task's
 * status and writes its value to *result (if not NULL; NULL unless 0).
 * At timeout_ms (CORO_FOREVER: none; 0: do not wait) the task is
 * cancelled and -ETIMEDOUT returned at once; whatever the task returns
 * later is not written anywhere (a value it returns is dropped: a task
 * that owns memory frees it itself when cancelled). A caller that is
 * itself a loop's thread blocks that loop meanwhile.
 * -EINVAL (loop or fn NULL, timeout_ms < -1), -EDEADLK (called on loop's
 * own thread: it would wait for itself), -EPIPE (the loop is shutting
 * down), -ENOMEM, -ETIMEDOUT, or the task's status (-ECANCELED if it was
 * cancelled on the loop, e.g. because the loop ended). */
CORO_EXTERN int coro_run_threadsafe(coro_loop *loop, coro_fn fn, void *arg,
                                    int64_t timeout_ms, void **result);
/* Loop thread: hold (+1) or release (-1) the loop as "waiting for another
 * thread": while held, a loop with nothing ready waits in its poll for a
 * coro_call_threadsafe instead of judging its tasks stuck (-EDEADLK). Take
 * a hold before a task waits for a promise that another thread will settle
 * through coro_call_threadsafe, release it in that callback. Holds left
 * when the loop ends are dropped. -EINVAL (loop NULL, delta not +1/-1,
 * releasing more than was held), -EPERM (not loop's thread). */
CORO_EXTERN int coro_loop_keepalive(coro_loop *loop, int delta);

/* From a loop's thread (a task, a done callback, code around an attached
 * loop's uv_run): start fn(arg) as a task of another loop, running on
 * another thread, and get *out, a future of the calling thread's loop for
 * its outcome (the outcome crosses back through this loop's inbox; await
 * it like any future). out NULL starts the task detached. Like an executor
 * job's future, *out is not a task: coro_cancel (or cancelling a task that
 * awaits it) ends it at once with -ECANCELED and sends the cancellation to
 * the remote task, whose outcome is then dropped (a value it returns is
 * not freed: a task that owns memory frees it itself when cancelled).
 * When the target loop ends first (its main task finished and its
 * shutdown cancelled the task, or it ended before the task could start),
 * *out fails with -EPIPE. loop equal to the caller's own loop is a plain
 * coro_spawn. loop must be valid (its coro_run has not returned, or it is
 * a member of a loop group not yet freed).
 * A call whose outcome has not arrived when the calling loop ends ends
 * cancelled, and its remote task is cancelled.
 * Errors: -EINVAL (loop or fn NULL), -EPERM (no loop on this thread),
 * -EPIPE (loop is shutting down or has ended, or the calling loop is
 * shutting down), -ENOMEM. */
CORO_EXTERN int coro_spawn_on(coro_loop *loop, coro_future **out, coro_fn fn,
                              void *arg);

/* ---- loop groups: one loop per core --------------------------------------- */

/* N threads, each running a loop of its own, made and joined in one call.
 * Tasks go to the group's loops with coro_loop_group_spawn (placement) or
 * coro_spawn_on(coro_loop_group_loop(g, i), ...) (by hand). */
typedef struct coro_loop_group coro_loop_group;

enum {
  CORO_PLACE_ROUND_ROBIN = 0, /* loop 0, 1, ..., N-1, 0, ... */
  CORO_PLACE_LEAST_LOADED = 1 /* the loop with the fewest tasks it was given
                                 that are still running (ties: lowest index) */
};

/* Zero-initialise; more fields may be added at the end. */
typedef struct coro_loop_group_opts {
  unsigned loops;            /* number of loops (threads); 0 = number of CPUs */
  int placement;             /* CORO_PLACE_* for coro_loop_group_spawn */
  const coro_config *config; /* each loop's configuration; NULL = defaults
                                (sigint_cancels_main is refused) */
} coro_loop_group_opts;

/* Start the threads and their loops; returns once every loop runs (so
 * coro_loop_group_loop is valid at once). Each loop waits for work and
 * stays up until coro_loop_group_free. Any thread may call it. opts NULL
 * means defaults. Errors: -EINVAL (out NULL, bad placement or config),
 * -ENOMEM, -EAGAIN (a thread could not be started; nothing is left
 * running). *out is untouched on failure. */
CORO_EXTERN int coro_loop_group_new(coro_loop_group **out,
                                    const coro_loop_group_opts *opts);
/* Number of loops (0 for NULL). */
CORO_EXTERN unsigned coro_loop_group_size(const coro_loop_group *g);
/* Loop i (borrowed; valid until coro_loop_group_free), NULL if i is out of
 * range or g NULL. */
CORO_EXTERN coro_loop *coro_loop_group_loop(coro_loop_group *g, unsigned i);
/* coro_spawn_on on the loop the group's placement picks. Same errors,
 * with -EINVAL also for g NULL. */
CORO_EXTERN int coro_loop_group_spawn(coro_loop_group *g, coro_future **out,
                                      coro_fn fn, void *arg);
/* Stop every loop of the group (their tasks are cancelled and drained, as
 * at the end of coro_run), join the threads and free g. A task that calls
 * it suspends until that is done (its own loop goes on running: a remote
 * task may need it to finish), and a cancellation meanwhile is kept for its
 * next suspension (the group is freed either way); a plain thread blocks.
 * A task there that ends cancelled by this gives its future -EPIPE.
 * Returns 0; -EDEADLK
 * if called from one of g's own loops (nothing is stopped); -EINVAL for
 * NULL. */
CORO_EXTERN int coro_loop_group_free(coro_loop_group *g);
/* ==== end of threads and loops section ==== */

#ifdef __cplusplus
}
#endif
#endif /* CORO_EXEC_H_ */
