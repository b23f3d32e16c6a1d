/* SPDX-License-Identifier: MIT */
/* Process pools, internals shared by proc_pool.c (the parent side: pool
 * thread, jobs, futures) and proc_worker.c (the worker side, plus the
 * naming of functions across processes), and hooks for the tests.
 *
 * Wire protocol over one AF_UNIX stream socketpair per worker (native byte
 * order: both ends are the same binary):
 *   worker -> parent  HELLO  hdr{type, status = pid, id = 0, len = 0}
 *   parent -> worker  JOB    req{type, name_len, id, offset, in_len},
 *                            then name_len bytes of object path (0 = the
 *                            main program), then in_len bytes of input
 *   worker -> parent  REPLY  hdr{type, status, id, len}, then len bytes
 * The worker exits when its socket reports end of file. */
#ifndef CORO_SRC_EXEC_PROC_POOL_H_
#define CORO_SRC_EXEC_PROC_POOL_H_

#include <stddef.h>
#include <stdint.h>

#include "coro-internal.h"

#define CORO__PROC_ENV "CORO_PROC_WORKER_V1" /* "fd:ppid" */
#define CORO__PROC_FD 3                       /* the worker's socket */

enum {
  CORO__PROC_HELLO = 0x434f5201u, /* "CoR" 1 */
  CORO__PROC_JOB = 0x434f5202u,
  CORO__PROC_REPLY = 0x434f5203u
};

typedef struct coro__proc_req {
  uint32_t type;
  uint32_t name_len;
  uint64_t id;
  uint64_t offset;
  uint64_t in_len;
} coro__proc_req;

typedef struct coro__proc_hdr {
  uint32_t type;
  int32_t status;
  uint64_t id;
  uint64_t len;
} coro__proc_hdr;

/* How to name fn in another process of the same program: the path of the
 * loaded object that holds it ("" for the main program, as
 * dl_iterate_phdr names it) and its offset from that object's load base.
 * 0, or -EINVAL when fn lies in no loaded object's segments. *name points
 * into buf (cap bytes) or to a static "". */
int coro__proc_fn_encode(coro_proc_fn fn, const char **name, size_t *name_len,
                         uint64_t *offset, char *buf, size_t cap);

/* ---- for the tests ------------------------------------------------------ */

typedef struct coro__proc_stats {
  unsigned size;      /* workers the pool keeps */
  unsigned live;      /* worker processes alive now (any state) */
  unsigned ready;     /* idle or busy (said hello) */
  unsigned queued;    /* jobs waiting for a worker */
  unsigned running;   /* jobs on a worker, orphaned ones included */
  uint64_t spawned;   /* worker processes started, ever */
  uint64_t died;      /* worker processes reaped, ever */
} coro__proc_stats;
void coro__proc_pool_stats(coro_pool *pool, coro__proc_stats *st);
/* The pid of the worker running f's job; 0 while queued or once done. */
int coro__proc_job_pid(const coro_future *f);

#endif /* CORO_SRC_EXEC_PROC_POOL_H_ */
