/* SPDX-License-Identifier: MIT */
/* What both pools share (see pool.h): the shutdown sequence and its
 * waiters, the stuck-job report, coro_pool_free's dispatch, and the end of
 * a job's outcome (its post, the discard of a result nobody reads). */
#include <stdio.h>
#include <time.h>

#include "core/task.h"
#include "exec/pool.h"

void coro__pool_init(coro_pool *p, int kind, const coro__pool_ops *ops,
                     int adaptive) {
  p->kind = kind;
  p->ops = ops;
  pthread_mutexattr_t ma;
  pthread_mutexattr_init(&ma);
#ifdef PTHREAD_MUTEX_ADAPTIVE_NP
  if (adaptive) pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_ADAPTIVE_NP);
#else
  (void)adaptive;
#endif
  pthread_mutex_init(&p->mu, &ma);
  pthread_mutexattr_destroy(&ma);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&p->cv, &ca);
  pthread_condattr_destroy(&ca);
  coro__queue_init(&p->sd_waiters);
  p->sd_users = 0;
  p->dead = 0;
}

void coro__pool_destroy(coro_pool *p) {
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->cv);
}

/* ---- the shutdown waiter --------------------------------------------------- */

/* A task waiting in a shutdown for its pool to be done. It lives on the
 * task's stack. Whoever finds the pool done (a worker thread, the pool
 * thread) posts msg to the task's loop while the waiter is still linked,
 * under the pool's lock: that is the only use of ib off the loop's thread.
 *
 * The waiter holds a reference to ib from the moment it is linked until
 * its message has run (or the wait was undone on the loop's thread). The
 * wait itself keeps the loop from ending (it is counted with
 * coro__loop_ext_add, and the loop's end undoes it through the cancel hook
 * before it closes the inbox), so the post always finds the inbox open;
 * the reference is what the inbox's contract asks of any thread that uses
 * it off the loop, and it keeps a post that would come after all (a task
 * whose loop gave up on it) refused instead of touching freed memory. The
 * process pool always held one; the thread pool relied on the loop alone. */
typedef struct sd_waiter {
  coro__msg msg;
  coro__queue node;         /* p->sd_waiters (under p->mu) */
  coro__task *task;
  coro__inbox *ib;          /* referenced while linked or posted */
  coro__timer timer;
  coro_pool *pool;
  int status;               /* what the wake-up gives: 0, or -EPIPE (freed) */
} sd_waiter;

static void sd_msg_run(coro__msg *m) {
  sd_waiter *sw = coro__container_of(m, sd_waiter, msg);
  coro_loop *loop = sw->task->fut.loop;
  coro__inbox *ib = sw->ib;
  coro__loop_ext_add(loop, -1);
  coro__timer_stop(loop, &sw->timer);
  coro__task_wake(sw->task, sw->status);
  coro__inbox_release(ib);
}

/* Wake every waiting shutdown with status: blocked threads through the
 * condition variable (they look at p->dead), tasks through their loops. */
static void wake_all_locked(coro_pool *p, int status) {
  pthread_cond_broadcast(&p->cv);
  coro__queue *q;
  while ((q = coro__queue_pop(&p->sd_waiters)) != NULL) {
    sd_waiter *sw = coro__container_of(q, sd_waiter, node);
    sw->msg.run = sd_msg_run;
    sw->status = status;
    /* Refused only if the task's loop has ended without it: nobody is
     * left to wake. */
    if (coro__inbox_post(sw->ib, &sw->msg, 0) != 0)
      coro__inbox_release(sw->ib);
  }
}

void coro__pool_wake_waiters_locked(coro_pool *p) { wake_all_locked(p, 0); }

/* A task or thread leaves its waiting shutdown. 1 when it was the last
 * inside one of a pool freed meanwhile: the caller frees it now. */
static int sd_leave(coro_pool *p) {
  pthread_mutex_lock(&p->mu);
  CORO__ASSERT(p->sd_users > 0);
  int last = --p->sd_users == 0 && p->dead;
  pthread_mutex_unlock(&p->mu);
  return last;
}

/* Loop thread: take the waiter off the pool's list. 0 if it was not on
 * it any more: its message is on its way. */
static int sd_unlink(sd_waiter *sw) {
  coro_pool *p = sw->pool;
  pthread_mutex_lock(&p->mu);
  int linked = coro__queue_linked(&sw->node);
  if (linked) coro__queue_remove(&sw->node);
  pthread_mutex_unlock(&p->mu);
  if (linked) {
    coro__loop_ext_add(sw->task->fut.loop, -1);
    coro__inbox_release(sw->ib);
  }
  return linked;
}

static void sd_timer_cb(coro__timer *tm) {
  sd_waiter *sw = coro__container_of(tm, sd_waiter, timer);
  if (sd_unlink(sw)) coro__task_wake(sw->task, CORO_ETIMEDOUT);
}

static int sd_cancel(coro__task *t, void *arg) {
  sd_waiter *sw = arg;
  if (!sd_unlink(sw)) return CORO__CANCEL_LATER; /* the wake-up is on its way */
  coro__timer_stop(t->fut.loop, &sw->timer);
  return CORO__CANCEL_ABORT;
}

/* From a task: suspend until the pool is done or the time is up. */
static int wait_task(coro_pool *p, coro__task *t, int64_t timeout_ms) {
  coro_loop *loop = t->fut.loop;
  sd_waiter sw;
  sw.task = t;
  sw.pool = p;
  sw.status = 0;
  sw.ib = coro__loop_inbox(loop);
  coro__queue_init(&sw.node);
  coro__timer_init(&sw.timer, sd_timer_cb);
  if (timeout_ms != CORO_FOREVER &&
      coro__timer_start(loop, &sw.timer, (uint64_t)timeout_ms) != 0)
    return CORO_ENOMEM;
  pthread_mutex_lock(&p->mu);
  if (p->ops->done_locked(p)) {
    pthread_mutex_unlock(&p->mu);
    coro__timer_stop(loop, &sw.timer);
    return 0;
  }
  coro__inbox_retain(sw.ib);
  coro__queue_push(&p->sd_waiters, &sw.node);
  pthread_mutex_unlock(&p->mu);
  coro__loop_ext_add(loop, +1);
  int r = coro__task_suspend(t, sd_cancel, &sw, "pool shutdown");
  pthread_mutex_lock(&p->mu);
  if (p->dead && r != CORO_ECANCELED) r = CORO_EPIPE;
  pthread_mutex_unlock(&p->mu);
  return r;
}

int coro__pool_wait_block(coro_pool *p, int64_t timeout_ms) {
  struct timespec dl;
  coro__deadline_after(&dl, timeout_ms);
  int r = 0;
  pthread_mutex_lock(&p->mu);
  while (!p->ops->done_locked(p)) {
    if (p->dead) {
      r = CORO_EPIPE;
      break;
    }
    if (timeout_ms == CORO_FOREVER) {
      pthread_cond_wait(&p->cv, &p->mu);
    } else if (pthread_cond_timedwait(&p->cv, &p->mu, &dl) != 0 &&
               !p->ops->done_locked(p)) {
      r = CORO_ETIMEDOUT;
      break;
    }
  }
  if (p->dead) r = CORO_EPIPE;
  pthread_mutex_unlock(&p->mu);
  return r;
}

/* ---- the stuck-job report ---------------------------------------------------- */

typedef struct report_ctx {
  coro_job_stuck_cb stuck;
  void *data;
  uint64_t now;
} report_ctx;

static void report_one(const coro__job *j, int pid, void *arg) {
  report_ctx *c = arg;
  char autoname[32];
  coro_job_info info;
  if (j->name != NULL) {
    info.name = j->name;
  } else {
    snprintf(autoname, sizeof(autoname), "job-%llu",
             (unsigned long long)j->id);
    info.name = autoname;
  }
  info.id = j->id;
  info.running_ms = c->now > j->started_ns
                        ? (int64_t)((c->now - j->started_ns) / 1000000u)
                        : 0;
  info.pid = pid;
  c->stuck(&info, c->data);
}

void coro__pool_report_stuck_locked(coro_pool *p, coro_job_stuck_cb stuck,
                                    void *data) {
  report_ctx c = {stuck, data, p->ops->now_ns()};
  p->ops->each_running_locked(p, report_one, &c);
}

/* ---- shutdown and free ------------------------------------------------------- */

static int on_own_worker(coro_pool *p) {
  return p->ops->on_own_worker != NULL && p->ops->on_own_worker(p);
}

int coro_pool_shutdown_timeout(coro_pool *pool, int64_t timeout_ms,
                               coro_job_stuck_cb stuck, void *data) {
  if (pool == NULL || timeout_ms < CORO_FOREVER) return CORO_EINVAL;
  if (pool->kind != CORO__POOL_THREAD && pool->kind != CORO__POOL_PROC)
    return CORO_EINVAL;
  const coro__pool_ops *ops = pool->ops;
  ops->close(pool);
  if (timeout_ms == 0) {
    /* Do not wait; report what still runs. */
    pthread_mutex_lock(&pool->mu);
    int busy = ops->busy_locked(pool);
    if (busy && stuck != NULL)
      coro__pool_report_stuck_locked(pool, stuck, data);
    pthread_mutex_unlock(&pool->mu);
    if (!busy && ops->finish != NULL && !on_own_worker(pool)) ops->finish(pool);
    return busy && stuck != NULL ? CORO_ETIMEDOUT : 0;
  }
  if (on_own_worker(pool)) return CORO_EDEADLK;
  coro__task *t = coro__task_for_wait();
  if (t == NULL && ops->before_block != NULL) ops->before_block(pool);
  pthread_mutex_lock(&pool->mu);
  pool->sd_users++; /* coro_pool_free meanwhile leaves the pool to us */
  pthread_mutex_unlock(&pool->mu);
  int r = t != NULL ? wait_task(pool, t, timeout_ms)
                    : coro__pool_wait_block(pool, timeout_ms);
  pthread_mutex_lock(&pool->mu);
  int dead = pool->dead;
  if (!dead && r == CORO_ETIMEDOUT && stuck != NULL)
    coro__pool_report_stuck_locked(pool, stuck, data);
  pthread_mutex_unlock(&pool->mu);
  if (!dead && r == 0 && ops->finish != NULL) ops->finish(pool);
  /* Still counted until here, so a coro_pool_free meanwhile left the pool
   * to us; if it came, the last one out frees it. */
  if (sd_leave(pool)) ops->free(pool);
  if (dead) return r == CORO_ECANCELED ? r : CORO_EPIPE;
  return r;
}

int coro_pool_shutdown(coro_pool *pool, int wait) {
  return coro_pool_shutdown_timeout(pool, wait ? CORO_FOREVER : 0, NULL, NULL);
}

/* The freeing rule: shutdowns still waiting for the pool wake with -EPIPE
 * and the last of them frees it, so none resumes into freed memory. */
void coro_pool_free(coro_pool *pool) {
  if (pool == NULL) return;
  if (pool->kind != CORO__POOL_THREAD && pool->kind != CORO__POOL_PROC) return;
  pthread_mutex_lock(&pool->mu);
  if (pool->sd_users > 0) {
    pool->dead = 1;
    wake_all_locked(pool, CORO_EPIPE);
    pthread_mutex_unlock(&pool->mu);
    return;
  }
  pthread_mutex_unlock(&pool->mu);
  pool->ops->free(pool);
}

/* ---- jobs ---------------------------------------------------------------------- */

/* Freed thread-pool futures kept by the loop's thread for its next
 * submissions, as thread_pool.c keeps job structs: a burst of jobs then
 * allocates nothing. Only while the loop that freed them runs and is not
 * closing; its thread pool's loop-end hook empties the cache. */
static _Thread_local coro__job_future *tls_fut_cache;
static _Thread_local unsigned tls_fut_cached;

coro__job_future *coro__job_future_alloc(void) {
  coro__job_future *jf = tls_fut_cache;
  if (jf != NULL) {
    tls_fut_cache = (coro__job_future *)jf->job; /* the cache's link */
    tls_fut_cached--;
    return jf;
  }
  return coro__malloc(sizeof(*jf));
}

void coro__job_future_cache_free(void) {
  coro__job_future *jf;
  while ((jf = tls_fut_cache) != NULL) {
    tls_fut_cache = (coro__job_future *)jf->job;
    coro__free(jf);
  }
  tls_fut_cached = 0;
}

/* The one destructor of job futures (coro__future_destroy has unlinked the
 * future from its loop already). */
static void job_future_destroy(coro_future *f) {
  coro__job_future *jf = (coro__job_future *)f;
  coro__free(jf->data);
  coro_loop *loop = f->loop;
  if (jf->kind == CORO__POOL_THREAD && loop != NULL && !loop->closing &&
      loop == coro__tls_loop && tls_fut_cached < CORO__JOB_CACHE_MAX) {
    jf->job = (coro__job *)tls_fut_cache;
    tls_fut_cache = jf;
    tls_fut_cached++;
    return;
  }
  coro__free(jf);
}

/* The one cancel path: whoever completed the future first (coro_cancel,
 * the time limit, the loop's end), the job is still in flight: detach it. */
static void watch_notify(coro__waiter *w, coro_future *f) {
  coro__job_future *jf = coro__container_of(w, coro__job_future, watch);
  coro__job *j = jf->job;
  (void)f;
  if (j != NULL) j->detach(j, jf);
}

void coro__job_future_init(coro__job_future *jf, coro_loop *loop,
                           coro__job *j, int kind) {
  coro__future_init(&jf->own.fut, loop, CORO__FUT_OWNED);
  jf->own.fut.refs = 2;
  jf->own.destroy = job_future_destroy;
  jf->watch.notify = watch_notify;
  coro__future_add_waiter(&jf->own.fut, &jf->watch);
  jf->job = j;
  jf->kind = kind;
  jf->data = NULL;
  jf->len = 0;
  coro__queue_init(&jf->link);
  j->fut = jf;
}

coro__job_future *coro__job_future_of(const coro_future *f) {
  if (f == NULL || f->kind != CORO__FUT_OWNED ||
      ((const coro__future_owned *)f)->destroy != job_future_destroy)
    return NULL;
  return (coro__job_future *)f;
}

void coro__job_discard(coro__job *j) {
  if (j->result != NULL && j->discard != NULL)
    j->discard(j->result, j->discard_data);
  j->result = NULL;
}

int coro__job_post(coro__job *j) {
  return coro__inbox_post(j->ib, &j->msg, 0) != 0;
}

void coro__deadline_after(struct timespec *ts, int64_t timeout_ms) {
  clock_gettime(CLOCK_MONOTONIC, ts);
  if (timeout_ms <= 0) return;
  ts->tv_sec += (time_t)(timeout_ms / 1000);
  ts->tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
  if (ts->tv_nsec >= 1000000000L) {
    ts->tv_sec++;
    ts->tv_nsec -= 1000000000L;
  }
}
