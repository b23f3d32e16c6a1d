/* SPDX-License-Identifier: MIT */
/* Thread pools: the worker threads. A worker takes the oldest queued job,
 * runs it without the lock, and posts its outcome to the submitting loop's
 * inbox; finishing one job and taking the next share one trip through the
 * pool's lock. An idle worker spins a few microseconds for new work, then
 * parks on the pool's work condition; it exits once the pool is shut down
 * and its queue empty. */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>

#include "core/task.h"
#include "exec/thread_pool.h"

/* The job the current worker thread runs (coro_job_cancelled). */
static _Thread_local tp_job *tls_job;

/* Run j on this worker (no lock held); its outcome stays in j. */
static void run_job(tp_job *j) {
  tls_job = j;
  j->base.status = 0;
  coro__job_fail_err = &j->base.status;
  void *r = j->fn(j->arg);
  coro__job_fail_err = NULL;
  tls_job = NULL;
  j->base.result = r;
}

/* Under p->base.mu: j has run; from now on its outcome is posted. */
static void job_done_locked(tp_pool *p, tp_job *j) {
  coro__queue_remove(&j->qnode);
  p->nrunning--;
  p->nidle++;
  j->state = J_POSTED;
}

/* No lock held: post j's outcome, or dispose of it if refused. */
static void job_post_or_dispose(tp_job *j) {
  if (tp_job_post(j)) {
    coro__job_discard(&j->base);
    coro__tp_job_free(j, 0);
  }
}

void coro__tp_wake_one_locked(tp_pool *p) {
  if (atomic_load_explicit(&p->nspinning, memory_order_relaxed) == 0 &&
      p->nparked > p->nwakes) {
    p->nwakes++;
    pthread_cond_signal(&p->work_cv);
  }
}

/* A worker. The lock is taken once per job: finishing a job's bookkeeping
 * and taking the next one share it, and the finished job's outcome is
 * posted after unlocking (except while the pool shuts down, where the post
 * comes before the shutdown's waiters are woken). */
static void *worker_main(void *arg) {
  tp_pool *p = arg;
#ifdef __linux__
  pthread_setname_np(pthread_self(), "coro-pool");
#endif
  tp_job *done = NULL; /* finished, bookkept, not posted yet */
  pthread_mutex_lock(&p->base.mu);
  for (;;) {
    if (done != NULL &&
        atomic_load_explicit(&p->shut, memory_order_relaxed)) {
      tp_job *d = done;
      done = NULL;
      int refused = tp_job_post(d);
      if (tp_idle_locked(p)) coro__pool_wake_waiters_locked(&p->base);
      if (refused) { /* the discard finaliser runs without the lock */
        pthread_mutex_unlock(&p->base.mu);
        coro__job_discard(&d->base);
        coro__tp_job_free(d, 0);
        pthread_mutex_lock(&p->base.mu);
        continue;
      }
    }
    coro__queue *q = coro__queue_pop(&p->queue);
    if (q != NULL) {
      atomic_fetch_sub_explicit(&p->nqueued, 1, memory_order_relaxed);
      tp_job *j = coro__container_of(q, tp_job, qnode);
      j->state = J_RUNNING;
      j->base.id = ++p->next_id;
      j->base.started_ns = tp_coarse_ns();
      coro__queue_push(&p->running, &j->qnode);
      p->nrunning++;
      p->nidle--;
      /* More work queued and nobody looking for it: pass the wake-up on
       * (the submitter signals only one thread at a time). */
      if (!coro__queue_empty(&p->queue)) coro__tp_wake_one_locked(p);
      pthread_mutex_unlock(&p->base.mu);
      if (done != NULL) job_post_or_dispose(done);
      run_job(j);
      done = j;
      pthread_mutex_lock(&p->base.mu);
      job_done_locked(p, j);
      continue;
    }
    if (done != NULL) {
      pthread_mutex_unlock(&p->base.mu);
      job_post_or_dispose(done);
      done = NULL;
      pthread_mutex_lock(&p->base.mu);
      continue;
    }
    if (atomic_load_explicit(&p->shut, memory_order_relaxed)) break;
    if (p->spin_ns > 0) {
      /* A short spin before parking: a job submitted meanwhile starts
       * without a futex wake-up (tens of microseconds on a VM). */
      atomic_fetch_add_explicit(&p->nspinning, 1, memory_order_relaxed);
      pthread_mutex_unlock(&p->base.mu);
      uint64_t until = uv_hrtime() + (uint64_t)p->spin_ns;
      unsigned i = 0;
      while (atomic_load_explicit(&p->nqueued, memory_order_relaxed) == 0 &&
             !atomic_load_explicit(&p->shut, memory_order_relaxed)) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
        if ((++i & 63) == 0 && uv_hrtime() >= until) break;
      }
      pthread_mutex_lock(&p->base.mu);
      atomic_fetch_sub_explicit(&p->nspinning, 1, memory_order_relaxed);
      if (!coro__queue_empty(&p->queue) ||
          atomic_load_explicit(&p->shut, memory_order_relaxed))
        continue;
    }
    p->nparked++;
    pthread_cond_wait(&p->work_cv, &p->base.mu);
    p->nparked--;
    if (p->nwakes > 0) p->nwakes--;
  }
  p->nidle--;
  pthread_mutex_unlock(&p->base.mu);
  coro__tp_release(p);
  return NULL;
}

int coro__tp_spawn_locked(tp_pool *p) {
  sigset_t all, old;
  sigfillset(&all);
  /* Workers take no signals: they belong to the program's own threads
   * (and libuv's signal handling). The new thread inherits this mask. */
  pthread_sigmask(SIG_SETMASK, &all, &old);
  tp_retain(p);
  int r = pthread_create(&p->threads[p->nstarted], NULL, worker_main, p);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (r != 0) {
    atomic_fetch_sub_explicit(&p->refs, 1, memory_order_relaxed);
    return -r;
  }
  p->nstarted++;
  p->nidle++;
  atomic_store_explicit(&p->started_any, 1, memory_order_release);
  return 0;
}

int coro__tp_on_own_worker(tp_pool *p) {
  tp_job *j = tls_job;
  return j != NULL && j->pool == p;
}

int coro_job_cancelled(void) {
  tp_job *j = tls_job;
  return j != NULL && atomic_load_explicit(&j->cancel, memory_order_relaxed);
}
