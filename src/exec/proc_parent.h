/* SPDX-License-Identifier: MIT */
/* Process pools, the parent side: what its four files share.
 *
 *   proc_pool.c    the pool: creation, submission, a job's loop side (its
 *                  future, its cancellation, its completion message),
 *                  shutdown and free, the loop's end
 *   proc_thread.c  the pool thread: spawning and reaping workers, time
 *                  limits, dispatching queued jobs, reading replies
 *   proc_direct.c  loops that read their own jobs' replies (watches)
 *   proc_frame.c   the parent's end of the wire (proc_pool.h): requests
 *                  out, replies parsed as their bytes arrive
 *
 * Workers: the program's own binary re-executed (proc_worker.c), one
 * AF_UNIX socketpair each. Re-executing rather than forking keeps the pool
 * safe in a program that already has threads: posix_spawn (vfork + exec)
 * runs no code of ours between fork and exec, and the worker starts from a
 * clean image (no copied locks, no half-made state of other threads).
 *
 * Threads: one pool thread per pool spawns and reaps the workers, watches
 * their pidfds (deaths), reads the replies of the jobs it dispatched,
 * enforces time limits and hands queued jobs to idle workers. A submission
 * on a loop thread writes its job straight to an idle worker's socket when
 * there is one and polls that socket for the reply itself (proc_direct.c):
 * a round trip costs two wake-ups, the worker and the loop; that loop also
 * feeds the worker its next queued job when the job is its own. Jobs the
 * pool thread dispatches cost one more (it reads their replies and posts
 * them to the loop's inbox); so does every job when the kernel has no
 * pidfd_open. Workers are spawned only by the pool thread, which lives as
 * long as the pool: PR_SET_PDEATHSIG fires when the spawning thread ends.
 *
 * A job's life (p->base.mu guards state, w, orphan, status):
 *   QUEUED   in p->queue (never ran; a cancel unlinks it)
 *   RUNNING  on worker w; a cancel kills the worker (orphan = 1: nobody
 *            wants the outcome, the pool thread frees the job when the
 *            worker is reaped)
 *   DONE     its outcome was posted to the submitting loop's inbox (or,
 *            read by that loop itself, is handled at once); the message
 *            completes the future (unless it was cancelled) and frees the
 *            job
 * The loop side holds, per job in flight: a reference to the future, one to
 * the inbox, one unit of coro__loop_ext_add, and one reference to the pool
 * (so a late cancel can still take p->base.mu after coro_pool_free). */
#ifndef CORO_SRC_EXEC_PROC_PARENT_H_
#define CORO_SRC_EXEC_PROC_PARENT_H_

#include <pthread.h>
#include <stdatomic.h>
#include <sys/types.h>

#include "exec/pool.h"
#include "exec/proc_pool.h"

enum { J_QUEUED, J_RUNNING, J_DONE };                    /* job.state */
enum { W_EMPTY, W_STARTING, W_IDLE, W_BUSY, W_DEAD };    /* worker.state */

typedef struct proc_pool proc_pool;
typedef struct worker worker;

typedef struct job {
  coro__job base;         /* msg; ib: referenced until the loop side lets
                             go; result: the bytes (coro__malloc), handed
                             to the future; name: in this allocation;
                             fut: NULL once orphaned */
  coro__queue link;       /* p->queue while queued */
  proc_pool *pool;        /* referenced */
  coro_loop *loop;        /* identity only */
  worker *w;              /* while RUNNING */
  int state;
  int orphan;
  size_t out_len;
  int64_t timeout_ms;
  uint64_t deadline_ns;
  size_t req_len, req_off;
  unsigned char *req;     /* in this allocation: request header, path, input */
} job;


struct worker {
  pid_t pid;
  int fd;
  int pidfd;              /* readable once the process has ended; -1: none */
  coro_loop *reader;      /* the loop reading this job's reply itself */
  uint64_t gen;           /* which process in this slot (spawn number) */
  int state;              /* W_* */
  int killed;             /* SIGKILL sent */
  int reaping;            /* being reaped: never signal it again */
  int kill_status;        /* the job's status when it dies of our kill */
  int bad;                /* protocol error: ignore what it sends */
  job *job;
  uint64_t spawned_ns;
  coro__proc_hdr hdr;
  size_t hdr_got;
  char *rx;
  size_t rx_len, rx_got;
};

struct proc_pool {
  coro_pool base;         /* its mu guards the pool, its cv says started
                             and drained */
  atomic_uint refs;       /* the owner's + one per job in flight */
  pthread_t thread;
  int evfd;               /* wakes the pool thread */
  unsigned size;
  worker *w;
  coro__queue queue;
  unsigned nqueued;
  uint64_t next_id;
  int closed;             /* shut down: no new jobs */
  int freeing;            /* coro_pool_free: kill everything, end */
  int drained;            /* closed, no job on a worker, every worker reaped */
  int broken;             /* workers cannot start */
  int start_failures;
  int started;            /* the first workers were spawned (or failed) */
  int spawn_err;
  int sleeping;           /* the pool thread is in poll() */
  uint64_t sleep_until;   /* ...until then (0 = no limit) */
  coro__queue outbox;     /* DONE jobs to post once p->base.mu is released */
  atomic_int posting;     /* outbox batches being posted right now */
  coro__queue all;        /* in the registry */
  uint64_t spawned, died;
  char exe[4096];         /* what the workers execute */
};


/* ---- proc_pool.c ---------------------------------------------------------- */

/* Drop a reference to p; the last one frees it. */
void coro__proc_unref(proc_pool *p);
/* Wake the pool thread. */
void coro__proc_kick(proc_pool *p);
/* Free a job nobody needs any more (its result bytes too). */
void coro__proc_job_free(job *j);
/* The completion message of a job (loop thread): completes its future
 * unless it was completed already, frees the job. */
void coro__proc_job_msg_run(coro__msg *m);
/* Post the job's completion to its loop (disposing of it if refused). */
void coro__proc_job_post(job *j);
/* Under p->base.mu: the job's outcome is known: queue it for posting at
 * the next coro__proc_unlock_flush, or free an orphan. */
void coro__proc_finish_locked(proc_pool *p, job *j, int status);
/* Release p->base.mu, then post the outcomes finished meanwhile. Every
 * unlock after something may have been finished goes through it. */
void coro__proc_unlock_flush(proc_pool *p);

/* ---- proc_thread.c -------------------------------------------------------- */

/* The pool thread (arg: the pool). */
void *coro__proc_thread_main(void *arg);
/* Under p->base.mu: SIGKILL w (once), its job ending with status (0: with
 * what its death says). */
void coro__proc_kill_locked(worker *w, int status);
/* Under p->base.mu: give job j to idle worker w. Returns 1 if the pool
 * thread must hear of it (a partial write to finish, or an earlier
 * deadline). */
int coro__proc_assign_locked(proc_pool *p, worker *w, job *j);
/* Under p->base.mu: an idle worker, or NULL. */
worker *coro__proc_idle_worker_locked(proc_pool *p);
/* Under p->base.mu: end every queued job with status. */
void coro__proc_fail_queued_locked(proc_pool *p, int status);

/* ---- proc_frame.c --------------------------------------------------------- */

/* The bytes of a job's request (header, then path, then input) for
 * coro__proc_req_write. */
size_t coro__proc_req_size(size_t path_len, size_t in_len);
/* Write a request into req (coro__proc_req_size bytes), its id still 0. */
void coro__proc_req_write(unsigned char *req, const char *path,
                          size_t path_len, uint64_t offset, const void *in,
                          size_t in_len);
/* Set the id of the request written in req. */
void coro__proc_req_set_id(unsigned char *req, uint64_t id);
/* Under p->base.mu: send what the socket takes of w's job's request. */
void coro__proc_write_more_locked(worker *w);
/* Under p->base.mu: n bytes arrived from w: parse them (headers, payloads;
 * a whole message settles w's state and its job). */
void coro__proc_consume_locked(proc_pool *p, worker *w, const char *buf,
                               size_t n);
/* Under p->base.mu: a whole message (w->hdr, w->rx) arrived from w. */
void coro__proc_on_message_locked(proc_pool *p, worker *w);

/* ---- proc_direct.c -------------------------------------------------------- */

/* Under p->base.mu, on loop's thread: start reading w's reply from loop. 0,
 * or -1 if the pool thread must do it. */
int coro__proc_watch_start_locked(proc_pool *p, worker *w, coro_loop *loop);
/* The loop's end: every watch of this thread goes (its jobs were
 * cancelled already). */
void coro__proc_watches_close_all(coro_loop *loop);
/* This thread is about to block (a waiting shutdown outside a task): hand
 * the replies it reads itself for p back to the pool thread, or they would
 * never be read. The watches stay, stopped, for later use. */
void coro__proc_watches_release(coro_loop *loop, proc_pool *p);

#endif /* CORO_SRC_EXEC_PROC_PARENT_H_ */
