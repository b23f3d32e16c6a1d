/* SPDX-License-Identifier: MIT */
/* Thread pools: worker threads run jobs, their outcomes go back to the
 * submitting loop through its inbox (one uv_async_t per loop). This file
 * is the pool: creation, submission and the outbox, a job's loop side,
 * the pool's operations for the shared shutdown (pool.h), free and the
 * loop's end; the worker threads are in thread_worker.c.
 *
 * A job has two sides. The loop side (the thread that submitted it) owns
 * the job's future, its timeout timer and its entry in this thread's list
 * of jobs in flight; only the loop's thread touches them. The worker side
 * runs fn(arg) and never touches coroutine state: it stores the outcome in
 * the job and posts the job's message to the loop's inbox. What both sides
 * read, the job's state, is guarded by the pool's mutex.
 *
 * Submission: the first job of a burst goes to the pool's queue at once;
 * the next ones wait in the submitting thread's outbox (loop thread only)
 * and reach the queue in one locked splice, from a ready handle that runs
 * as soon as the submitting task suspends (or the current callback
 * returns). Cancelling a job still in the outbox unlinks it there.
 *
 * Job states (under pool->mu):
 *   QUEUED   in the outbox or pool->queue; cancelling the future unlinks
 *            and frees it: it never runs
 *   RUNNING  a worker runs it; cancelling sets the cooperative flag and
 *            detaches the future (the late outcome is discarded)
 *   POSTED   the outcome (or the shutdown's -ECANCELED) is being posted
 *            or was: the message will run on the loop, or is refused
 *            because the job was detached and its loop has ended since
 *            (then the poster frees the job). The worker posts after
 *            unlocking; the loop's end waits for the posts of the jobs
 *            still attached (a few instructions away) before it closes
 *            its inbox, so an attached job's message is never refused.
 *
 * The future is completed either by the message (the job's outcome) or
 * by someone else first (coro_cancel, the job's timeout, the loop's end);
 * the future's watch (pool.h) learns of the latter and calls job_detach:
 * from then on the job owns nothing on the loop side, and whoever
 * ends it disposes of a late result with the job's discard finaliser.
 *
 * Lifetime: a pool is reference counted (the user's handle, each worker
 * thread, each job not yet freed), so coro_pool_free may be called while
 * jobs still run: their threads are detached, and the last one to end
 * frees the memory. */
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/task.h"
#include "exec/thread_pool.h"

/* The jobs in flight submitted from this thread's loop (one loop per thread
 * at a time): the loop's end detaches those still attached. */
static _Thread_local coro__queue tls_jobs;

/* Freed job structs kept by the loop's thread for its next submissions,
 * up to the peak number in flight and at most CORO__JOB_CACHE_MAX (as the
 * loop keeps task structs; pool.c keeps the futures the same way).
 * Emptied at the loop's end; not used once the loop is closing. */
static _Thread_local tp_job *tls_job_cache;
static _Thread_local unsigned tls_job_cached;

static coro__queue *jobs_list(void) {
  if (tls_jobs.next == NULL) coro__queue_init(&tls_jobs);
  return &tls_jobs;
}

/* ---- pool references -------------------------------------------------------- */

void coro__tp_release(tp_pool *p) {
  if (atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) != 1)
    return;
  coro__pool_destroy(&p->base);
  pthread_cond_destroy(&p->work_cv);
  coro__free(p->threads);
  coro__free(p);
}

/* ---- ending a job -------------------------------------------------------------- */

/* Any thread, once neither side needs the job any more. on_loop: called
 * on the job's loop thread (the struct may be cached there). */
static void job_free_mem(tp_job *j, int on_loop) {
  if (j->ib_ref) coro__inbox_release(j->base.ib);
  coro__free(j->base.name);
  if (on_loop && !j->loop->closing && tls_job_cached < CORO__JOB_CACHE_MAX) {
    j->pool = (tp_pool *)tls_job_cache; /* the cache's link */
    tls_job_cache = j;
    tls_job_cached++;
  } else {
    coro__free(j);
  }
}

void coro__tp_job_free(tp_job *j, int on_loop) {
  tp_pool *p = j->pool;
  job_free_mem(j, on_loop);
  coro__tp_release(p); /* the job's reference, taken when it left the outbox */
}

static tp_job *job_alloc(void) {
  tp_job *j = tls_job_cache;
  if (j != NULL) {
    tls_job_cache = (tp_job *)j->pool;
    tls_job_cached--;
    return j;
  }
  return coro__malloc(sizeof(*j));
}

static void job_cache_free(void) {
  tp_job *j;
  while ((j = tls_job_cache) != NULL) {
    tls_job_cache = (tp_job *)j->pool;
    coro__free(j);
  }
  tls_job_cached = 0;
}

/* Loop side: stop following the job (its future is done or about to be). */
static void job_unlink_loop(tp_job *j) {
  coro__timer_stop(j->loop, &j->timer);
  coro__queue_remove(&j->lnode);
  coro__loop_ext_add(j->loop, -1);
}

/* Loop side: the message arrived. */
static void job_msg_run(coro__msg *m) {
  tp_job *j = coro__container_of(m, tp_job, base.msg);
  coro__job_future *jf = j->base.fut;
  if (jf != NULL) {
    coro_future *f = &jf->own.fut;
    j->base.fut = NULL;
    jf->job = NULL;
    job_unlink_loop(j);
    coro__future_remove_waiter(&jf->watch);
    /* Nobody else holds the future: nobody can ever read the result. */
    if (j->base.status != 0 || f->refs == 1) coro__job_discard(&j->base);
    void *value = j->base.status == 0 ? j->base.result : NULL;
    j->base.result = NULL;
    coro__future_complete(f, j->base.status, value);
    coro_future_release(f);
  } else {
    coro__job_discard(&j->base);
  }
  coro__tp_job_free(j, 1);
}

/* Loop side: the future was completed by someone else (coro_cancel, the
 * timeout, the loop's end). Detach the job: a queued one never runs, a
 * running one is told to stop and its outcome will be discarded. */
static void outbox_unlink(tp_job *j);
static int outbox_has(const tp_job *j);
static void outbox_add(coro_loop *loop, tp_pool *p, tp_job *j);

static void job_detach(coro__job *bj, coro__job_future *jf) {
  tp_job *j = coro__container_of(bj, tp_job, base);
  coro_future *f = &jf->own.fut;
  j->base.fut = NULL;
  jf->job = NULL;
  job_unlink_loop(j);
  tp_pool *p = j->pool;
  if (outbox_has(j)) { /* never reached the pool (holds no reference) */
    outbox_unlink(j);
    job_free_mem(j, 1);
    coro_future_release(f);
    return;
  }
  int dropped = 0;
  pthread_mutex_lock(&p->base.mu);
  if (j->state == J_QUEUED) {
    coro__queue_remove(&j->qnode);
    atomic_fetch_sub_explicit(&p->nqueued, 1, memory_order_relaxed);
    dropped = 1;
  } else {
    atomic_store_explicit(&j->cancel, 1, memory_order_relaxed);
  }
  pthread_mutex_unlock(&p->base.mu);
  if (dropped) {
    coro__tp_job_free(j, 1);
  } else {
    /* Its post may now come after the loop has ended. */
    coro__inbox_retain(j->base.ib);
    j->ib_ref = 1;
  }
  coro_future_release(f); /* the job's reference */
}

static void job_timer_cb(coro__timer *tm) {
  tp_job *j = coro__container_of(tm, tp_job, timer);
  /* The waiter detaches the job (and sets its cancel flag). */
  if (j->base.fut != NULL)
    coro__future_complete(&j->base.fut->own.fut, CORO_ETIMEDOUT, NULL);
}

/* ---- the outbox: submissions on their way to the pool's queue ----------------- */

static _Thread_local coro__queue tls_outbox;
static _Thread_local tp_pool *tls_outbox_pool;
static _Thread_local size_t tls_outbox_n;
/* Jobs added since the last flush carry this number: a flush moves the
 * whole batch to the pool's queue by splicing the list and incrementing
 * it, without touching each job. */
static _Thread_local uint64_t tls_outbox_epoch;
static _Thread_local coro__handle tls_flush;
static _Thread_local int tls_flush_queued;

static int outbox_has(const tp_job *j) {
  return tls_outbox_pool == j->pool && j->epoch == tls_outbox_epoch;
}

static void outbox_unlink(tp_job *j) {
  coro__queue_remove(&j->qnode);
  tls_outbox_n--;
}

/* Move the outbox into its pool's queue in one locked step (or cancel it
 * if the pool was shut down meanwhile), start workers, wake one. */
static void outbox_flush(void) {
  tp_pool *p = tls_outbox_pool;
  if (p == NULL) return;
  tls_outbox_pool = NULL;
  tls_outbox_epoch++;
  size_t n = tls_outbox_n;
  tls_outbox_n = 0;
  coro__queue jobs, *q;
  coro__queue_init(&jobs);
  coro__queue_move(&tls_outbox, &jobs);
  if (n == 0) {
    coro__tp_release(p); /* the outbox's reference */
    return;
  }
  /* One reference per job, taken for the whole batch at once. */
  atomic_fetch_add_explicit(&p->refs, n, memory_order_relaxed);
  coro__queue refused;
  coro__queue_init(&refused);
  pthread_mutex_lock(&p->base.mu);
  if (atomic_load_explicit(&p->shut, memory_order_relaxed)) {
    while ((q = coro__queue_pop(&jobs)) != NULL) {
      tp_job *j = coro__container_of(q, tp_job, qnode);
      j->base.status = CORO_ECANCELED;
      j->state = J_POSTED;
      if (tp_job_post(j)) coro__queue_push(&refused, &j->qnode);
    }
  } else {
    coro__queue_move(&jobs, &p->queue);
    size_t queued =
        atomic_fetch_add_explicit(&p->nqueued, n, memory_order_relaxed) + n;
    while (p->nidle < queued && p->nstarted < p->max_threads &&
           coro__tp_spawn_locked(p) == 0) {
    }
    /* A woken worker passes the wake-up on while work is left. */
    coro__tp_wake_one_locked(p);
  }
  pthread_mutex_unlock(&p->base.mu);
  while ((q = coro__queue_pop(&refused)) != NULL)
    coro__tp_job_free(coro__container_of(q, tp_job, qnode), 0);
  coro__tp_release(p); /* the outbox's reference */
}

static void flush_run(coro__handle *h) {
  (void)h;
  tls_flush_queued = 0;
  outbox_flush();
}

static void outbox_add(coro_loop *loop, tp_pool *p, tp_job *j) {
  if (tls_outbox_pool != p) {
    outbox_flush(); /* another pool's burst goes first, in order */
    if (tls_outbox.next == NULL) coro__queue_init(&tls_outbox);
    tp_retain(p); /* the pool outlives the outbox's jobs */
    tls_outbox_pool = p;
  }
  j->epoch = tls_outbox_epoch;
  tls_outbox_n++;
  coro__queue_push(&tls_outbox, &j->qnode);
  if (!tls_flush_queued) {
    /* The first job of a burst goes to the pool at once (a job submitted
     * alone starts without waiting for the task to suspend); the handle
     * brings the rest of the burst, if any, in one splice. */
    tls_flush_queued = 1;
    tls_flush.run = flush_run;
    coro__loop_ready(loop, &tls_flush);
    outbox_flush();
  }
}

/* Loop thread: jobs of p still in this thread's outbox go to p now. */
static void outbox_flush_pool(tp_pool *p) {
  if (tls_outbox_pool == p) outbox_flush();
}

/* ---- creating and submitting ------------------------------------------------- */

static unsigned cpu_count(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (unsigned)n : 1;
}

static int64_t spin_default_ns(void) {
  const char *e = getenv("CORO_THREAD_POOL_SPIN_US");
  if (e != NULL && *e != '\0') {
    long v = strtol(e, NULL, 10);
    if (v >= 0 && v <= 1000000) return (int64_t)v * 1000;
  }
  /* 5 us by default. On the quiet 2-vCPU VM a worker that spins that long
   * before parking takes the next job without a futex wake-up: one job at a
   * time went from 16.5 to 2.3 us per round trip (uv_queue_work: 17-22 us).
   * Under load it measured about even (26.8 vs 29.4 us); longer spins (50
   * us) cost up to 10x there, as a spinning worker takes the core the loop
   * needs (docs/benchmarks.md). */
  return 5000;
}

#define MAX_THREADS 4096

static const coro__pool_ops tp_ops;

int coro_thread_pool_new(coro_pool **out, unsigned nthreads) {
  if (out == NULL || nthreads > MAX_THREADS) return CORO_EINVAL;
  if (nthreads == 0) nthreads = cpu_count();
  tp_pool *p = coro__calloc(1, sizeof(*p));
  if (p == NULL) return CORO_ENOMEM;
  p->threads = coro__calloc(nthreads, sizeof(*p->threads));
  if (p->threads == NULL) {
    coro__free(p);
    return CORO_ENOMEM;
  }
  /* The lock is held for a few instructions at a time: adaptive. */
  coro__pool_init(&p->base, CORO__POOL_THREAD, &tp_ops, 1);
  pthread_cond_init(&p->work_cv, NULL);
  coro__queue_init(&p->queue);
  coro__queue_init(&p->running);
  atomic_init(&p->nqueued, 0);
  atomic_init(&p->shut, 0);
  atomic_init(&p->nspinning, 0);
  atomic_init(&p->started_any, 0);
  atomic_init(&p->refs, 1);
  p->max_threads = nthreads;
  p->spin_ns = spin_default_ns();
  *out = &p->base;
  return 0;
}

static void thread_slot_end(coro_loop *loop, coro__loop_slot *slot);

/* coro_loop_stats: the default pool's queue and running jobs. */
static void thread_slot_stats(coro_loop *loop, coro__loop_slot *slot,
                              coro_stats *st) {
  (void)loop;
  tp_pool *p = slot->data;
  if (p == NULL) return;
  pthread_mutex_lock(&p->base.mu);
  st->pool_queued += atomic_load_explicit(&p->nqueued, memory_order_relaxed);
  st->pool_running += p->nrunning;
  pthread_mutex_unlock(&p->base.mu);
}

void coro__thread_slot_use(coro_loop *loop) {
  coro__loop_slot *slot = coro__loop_slot_of(loop, CORO__SLOT_THREAD_POOL);
  slot->at_end = thread_slot_end;
  slot->stats = thread_slot_stats;
}

static tp_pool *default_pool(coro_loop *loop, int *err) {
  coro__loop_slot *slot = coro__loop_slot_of(loop, CORO__SLOT_THREAD_POOL);
  if (slot->data == NULL) {
    coro_pool *made;
    int r = coro_thread_pool_new(&made, loop->threads);
    if (r != 0) {
      *err = r;
      return NULL;
    }
    slot->data = made;
  }
  return (tp_pool *)slot->data;
}

int coro_run_in_thread_opts(coro_future **out, coro_pool *pool, coro_fn fn,
                            void *arg, const coro_job_opts *opts) {
  if (out == NULL || fn == NULL) return CORO_EINVAL;
  if (pool != NULL && pool->kind != CORO__POOL_THREAD) return CORO_EINVAL;
  if (opts != NULL && opts->timeout_ms < CORO_FOREVER) return CORO_EINVAL;
  coro_loop *loop = coro__tls_loop;
  if (loop == NULL || loop->inbox == NULL) return CORO_EPERM;
  /* The loop is ending: its tasks are drained, its executors stopping. */
  if (loop->closing && loop->ntasks == 0) return CORO_EPIPE;
  coro__thread_slot_use(loop);
  int r = 0;
  tp_pool *p = pool != NULL ? (tp_pool *)pool : default_pool(loop, &r);
  if (p == NULL) return r;
  if (atomic_load_explicit(&p->shut, memory_order_relaxed)) return CORO_EPIPE;

  tp_job *j = job_alloc();
  if (j == NULL) return CORO_ENOMEM;
  coro__job_future *f = coro__job_future_alloc();
  if (f == NULL) {
    coro__free(j);
    return CORO_ENOMEM;
  }
  j->base.name = NULL;
  if (opts != NULL && opts->name != NULL &&
      (j->base.name = coro__strdup(opts->name)) == NULL) {
    coro__free(f);
    coro__free(j);
    return CORO_ENOMEM;
  }
  j->base.msg.run = job_msg_run;
  j->pool = p;
  j->fn = fn;
  j->arg = arg;
  j->base.result = NULL;
  j->base.status = 0;
  atomic_init(&j->cancel, 0);
  j->base.started_ns = 0;
  j->base.discard = opts != NULL ? opts->discard : NULL;
  j->base.discard_data = opts != NULL ? opts->discard_data : NULL;
  j->loop = loop;
  coro__timer_init(&j->timer, job_timer_cb);
  if (opts != NULL && opts->timeout_ms > 0 &&
      coro__timer_start(loop, &j->timer, (uint64_t)opts->timeout_ms) != 0) {
    coro__free(j->base.name);
    coro__free(f);
    coro__free(j);
    return CORO_ENOMEM;
  }

  if (!atomic_load_explicit(&p->started_any, memory_order_acquire)) {
    /* The pool's first job: make sure it has a thread. */
    pthread_mutex_lock(&p->base.mu);
    if (atomic_load_explicit(&p->shut, memory_order_relaxed))
      r = CORO_EPIPE; /* no thread may start once shutdown joins them */
    else
      r = p->nstarted == 0 ? coro__tp_spawn_locked(p) : 0;
    pthread_mutex_unlock(&p->base.mu);
    if (r != 0) {
      coro__timer_stop(loop, &j->timer);
      coro__free(j->base.name);
      coro__free(f);
      coro__free(j);
      return r == CORO_ENOMEM || r == CORO_EPIPE ? r : CORO_EAGAIN;
    }
  }
  j->base.id = 0;
  j->ib_ref = 0;
  j->state = J_QUEUED;
  j->base.ib = coro__loop_inbox(loop);
  outbox_add(loop, p, j);

  /* Loop side. The job holds one reference to the future, the caller the
   * other. */
  j->base.detach = job_detach;
  coro__job_future_init(f, loop, &j->base, CORO__POOL_THREAD);
  coro__queue_push(jobs_list(), &j->lnode);
  coro__loop_ext_add(loop, +1);
  *out = &f->own.fut;
  return 0;
}

int coro_run_in_thread(coro_future **out, coro_pool *pool, coro_fn fn,
                       void *arg) {
  return coro_run_in_thread_opts(out, pool, fn, arg, NULL);
}

/* ---- shutdown -------------------------------------------------------------------- */

/* Stop taking jobs and cancel the queued ones (they never run; their
 * futures end with -ECANCELED). */
static void shut_and_cancel_queued(tp_pool *p) {
  coro__queue refused;
  coro__queue_init(&refused);
  pthread_mutex_lock(&p->base.mu);
  atomic_store_explicit(&p->shut, 1, memory_order_relaxed);
  coro__queue *q;
  while ((q = coro__queue_pop(&p->queue)) != NULL) {
    atomic_fetch_sub_explicit(&p->nqueued, 1, memory_order_relaxed);
    tp_job *j = coro__container_of(q, tp_job, qnode);
    j->base.status = CORO_ECANCELED;
    j->state = J_POSTED;
    if (tp_job_post(j)) coro__queue_push(&refused, &j->qnode);
  }
  pthread_cond_broadcast(&p->work_cv);
  if (tp_idle_locked(p)) coro__pool_wake_waiters_locked(&p->base);
  pthread_mutex_unlock(&p->base.mu);
  while ((q = coro__queue_pop(&refused)) != NULL)
    coro__tp_job_free(coro__container_of(q, tp_job, qnode), 0);
}

/* Join the workers once idle (each exits as soon as it sees the pool shut
 * and its queue empty). The caller made sure the pool is idle. */
static void join_workers(tp_pool *p) {
  pthread_mutex_lock(&p->base.mu);
  if (p->joined) {
    pthread_mutex_unlock(&p->base.mu);
    return;
  }
  p->joined = 1;
  unsigned n = p->nstarted;
  pthread_mutex_unlock(&p->base.mu);
  for (unsigned i = 0; i < n; i++) pthread_join(p->threads[i], NULL);
}

/* ---- the pool's operations (pool.h) ------------------------------------------ */

static void tp_close(coro_pool *pool) {
  tp_pool *p = (tp_pool *)pool;
  outbox_flush_pool(p);
  shut_and_cancel_queued(p);
}

static int tp_busy_locked(coro_pool *pool) {
  return ((tp_pool *)pool)->nrunning > 0;
}

static int tp_done_locked(coro_pool *pool) {
  return tp_idle_locked((tp_pool *)pool);
}

static void tp_each_running_locked(coro_pool *pool,
                                   void (*visit)(const coro__job *j, int pid,
                                                 void *arg),
                                   void *arg) {
  tp_pool *p = (tp_pool *)pool;
  for (coro__queue *q = p->running.next; q != &p->running; q = q->next) {
    tp_job *j = coro__container_of(q, tp_job, qnode);
    if (j->state != J_RUNNING) continue; /* finished, being posted */
    visit(&j->base, 0, arg);
  }
}

static int tp_on_own_worker(coro_pool *pool) {
  return coro__tp_on_own_worker((tp_pool *)pool);
}

static void tp_finish(coro_pool *pool) { join_workers((tp_pool *)pool); }

static void tp_free(coro_pool *pool) {
  tp_pool *p = (tp_pool *)pool;
  outbox_flush_pool(p);
  shut_and_cancel_queued(p);
  pthread_mutex_lock(&p->base.mu);
  int busy = p->nrunning > 0 || coro__tp_on_own_worker(p);
  int join = !p->joined && !busy;
  if (busy && !p->joined) {
    /* Jobs still run: let their threads go; the last reference (a worker
     * that ends, or the last job freed) frees the pool. */
    p->joined = 1;
    for (unsigned i = 0; i < p->nstarted; i++) pthread_detach(p->threads[i]);
  }
  pthread_mutex_unlock(&p->base.mu);
  if (join) join_workers(p);
  coro__tp_release(p);
}

static const coro__pool_ops tp_ops = {
    .close = tp_close,
    .busy_locked = tp_busy_locked,
    .done_locked = tp_done_locked,
    .each_running_locked = tp_each_running_locked,
    .now_ns = tp_coarse_ns,
    .on_own_worker = tp_on_own_worker,
    .before_block = NULL,
    .finish = tp_finish,
    .free = tp_free,
};

/* ---- the loop's end ----------------------------------------------------------- */

static int64_t exit_wait_ms(void) {
  const char *e = getenv("CORO_POOL_EXIT_WAIT_MS");
  if (e != NULL && *e != '\0') {
    long v = strtol(e, NULL, 10);
    if (v >= 0) return (int64_t)v;
  }
  return 30000;
}

static void report_exit_stuck(const coro_job_info *job, void *data) {
  (void)data;
  fprintf(stderr,
          "libcoro: loop end: default thread pool job '%s' still running "
          "after %.1f s; detached, its result will be discarded\n",
          job->name, (double)job->running_ms / 1000.0);
}

/* The thread-pool slot's end (core/loop.h), registered by the first job
 * this loop submits or coro_loop_keepalive: called by coro_run after the
 * tasks are drained, before the inbox closes. The default pool stops: its
 * queued jobs are dropped and its running jobs are told to stop (their
 * cancel flag) and waited for, up to CORO_POOL_EXIT_WAIT_MS (30 s); the
 * ones still running then are reported to stderr and left to finish on
 * detached threads. Then every job this loop submitted to any pool and
 * whose outcome has not arrived is detached: its future ends with
 * -ECANCELED and its late result is discarded. */
static void thread_slot_end(coro_loop *loop, coro__loop_slot *slot) {
  coro__queue *list = jobs_list();
  coro__keepalive_reset();
  outbox_flush();
  coro_pool *dp = slot->data;
  if (dp != NULL) {
    tp_pool *p = (tp_pool *)dp;
    shut_and_cancel_queued(p);
    pthread_mutex_lock(&p->base.mu);
    coro__queue *q;
    for (q = p->running.next; q != &p->running; q = q->next)
      atomic_store(&coro__container_of(q, tp_job, qnode)->cancel, 1);
    pthread_mutex_unlock(&p->base.mu);
    if (coro__pool_wait_block(&p->base, exit_wait_ms()) != 0) {
      pthread_mutex_lock(&p->base.mu);
      coro__pool_report_stuck_locked(&p->base, report_exit_stuck, NULL);
      pthread_mutex_unlock(&p->base.mu);
    }
    slot->data = NULL;
    coro_pool_free(dp);
  }
  /* Detach what is still attached, except the jobs whose outcome is
   * posted (or about to be): run their messages now, which completes
   * their futures with the real outcome. A worker may be between marking
   * a job POSTED and posting it: yield until its message is in. */
  for (;;) {
    coro__inbox_drain(loop);
    coro__queue keep, *q;
    coro__queue_init(&keep);
    int waiting = 0;
    while ((q = coro__queue_pop(list)) != NULL) {
      tp_job *j = coro__container_of(q, tp_job, lnode);
      coro__queue_push(&keep, &j->lnode); /* job_detach unlinks it */
      pthread_mutex_lock(&j->pool->base.mu);
      int posted = j->state == J_POSTED;
      pthread_mutex_unlock(&j->pool->base.mu);
      if (posted)
        waiting = 1;
      else
        coro__future_complete(&j->base.fut->own.fut, CORO_ECANCELED, NULL);
    }
    coro__queue_move(&keep, list);
    if (!waiting) break;
    sched_yield();
  }
  job_cache_free();
  coro__job_future_cache_free();
}
