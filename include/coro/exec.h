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
   * its future was cancelled, or after its loop ended). data is discard_data. */
  void (*discard)(void *result, void *data);
  void *discard_data;
} coro_job_opts;

/* What a bounded shutdown reports for each job still running at its end. */
typedef struct coro_job_info {
  const char *name;     /* the job's name (borrowed, valid during the call) */
  uint64_t id;          /* 1, 2, ... in submission order, per pool */
  int64_t running_ms;   /* how long it has been running */
  int pid;              /* process jobs: the worker's pid; thread jobs: 0 */
} coro_job_info;
typedef void (*coro_job_stuck_cb)(const coro_job_info *job, void *data);

/* ---- thread pool -------------------------------------------------------- */

/* ==== thread pool: section owned by src/exec/thread_pool.c ==== */
CORO_EXTERN int coro_thread_pool_new(coro_pool **out, unsigned nthreads);
CORO_EXTERN int coro_run_in_thread(coro_future **out, coro_pool *pool,
                                   coro_fn fn, void *arg);
CORO_EXTERN int coro_run_in_thread_opts(coro_future **out, coro_pool *pool,
                                        coro_fn fn, void *arg,
                                        const coro_job_opts *opts);
CORO_EXTERN int coro_job_cancelled(void);
/* ==== end of thread pool section ==== */

/* ---- process pool ------------------------------------------------------- */

/* ==== process pool: section owned by src/exec/proc_pool.c ==== */
typedef int (*coro_proc_fn)(const void *in, size_t in_len, void **out,
                            size_t *out_len);
CORO_EXTERN int coro_process_pool_new(coro_pool **out, unsigned nprocs);
CORO_EXTERN int coro_run_in_process(coro_future **out, coro_pool *pool,
                                    coro_proc_fn fn, const void *in,
                                    size_t in_len);
CORO_EXTERN int coro_run_in_process_opts(coro_future **out, coro_pool *pool,
                                         coro_proc_fn fn, const void *in,
                                         size_t in_len,
                                         const coro_job_opts *opts);
CORO_EXTERN int coro_future_bytes(const coro_future *f, const void **data,
                                  size_t *len);
/* ==== end of process pool section ==== */

/* ---- both pools ----------------------------------------------------------- */

CORO_EXTERN int coro_pool_shutdown(coro_pool *pool, int wait);
CORO_EXTERN int coro_pool_shutdown_timeout(coro_pool *pool, int64_t timeout_ms,
                                           coro_job_stuck_cb stuck, void *data);
CORO_EXTERN void coro_pool_free(coro_pool *pool);

/* ---- parallel map ------------------------------------------------------- */

/* ==== parallel map: section owned by src/exec/pmap.c ==== */
/* ==== end of parallel map section ==== */

/* ---- threads and loops -------------------------------------------------- */

/* ==== threads and loops: section owned by src/exec/threadsafe.c ==== */
CORO_EXTERN int coro_call_threadsafe(coro_loop *loop, void (*cb)(void *arg),
                                     void *arg);
CORO_EXTERN int coro_run_threadsafe(coro_loop *loop, coro_fn fn, void *arg,
                                    int64_t timeout_ms, void **result);
/* ==== end of threads and loops section ==== */

#ifdef __cplusplus
}
#endif
#endif /* CORO_EXEC_H_ */
