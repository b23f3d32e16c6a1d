/* SPDX-License-Identifier: MIT */
/* Process pools: the pool itself. Creation (the pool thread and the first
 * workers), submission (a job written straight to an idle worker, or
 * queued), a job's loop side (its future, its cancellation, the message
 * that completes it), the pool's operations for the shared shutdown
 * (pool.h), free, and the loop's end. The other parts: proc_parent.h. */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/task.h"
#include "exec/proc_parent.h"

/* Every pool, for the loop-end sweep. Lock order: reg_mu, then p->base.mu. */
static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static coro__queue reg = {&reg, &reg};

static void proc_slot_end(coro_loop *loop, coro__loop_slot *slot);
/* coro_loop_stats: the default process pool's queue and running jobs. */
static void proc_slot_stats(coro_loop *loop, coro__loop_slot *slot,
                            coro_stats *st) {
  (void)loop;
  if (slot->data == NULL) return;
  coro__proc_stats ps;
  coro__proc_pool_stats(slot->data, &ps);
  st->procs_queued += ps.queued;
  st->procs_running += ps.running;
}
static const coro__pool_ops pp_ops;

void coro__proc_unref(proc_pool *p) {
  if (atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) != 1)
    return;
  coro__pool_destroy(&p->base);
  coro__free(p->w);
  coro__free(p);
}

void coro__proc_kick(proc_pool *p) {
  uint64_t one = 1;
  ssize_t r = write(p->evfd, &one, sizeof(one));
  (void)r; /* EAGAIN: a wake-up is pending already */
}

/* The discard of result bytes nobody will read. */
static void bytes_discard(void *result, void *data) {
  (void)data;
  coro__free(result);
}

void coro__proc_job_free(job *j) {
  coro__job_discard(&j->base);
  proc_pool *p = j->pool;
  coro__free(j);
  coro__proc_unref(p);
}

/* ---- the loop side ----------------------------------------------------------- */

/* The job in flight of a future (loop side). */
static job *job_of(const coro__job_future *pf) {
  return pf->job != NULL ? coro__container_of(pf->job, job, base) : NULL;
}

/* What the loop holds for a job, given back (loop thread). */
static void loop_side_release(coro__job_future *pf, coro__inbox *ib) {
  coro__loop_ext_add(pf->own.fut.loop, -1);
  coro__inbox_release(ib);
  coro_future_release(&pf->own.fut);
}

void coro__proc_job_msg_run(coro__msg *m) {
  job *j = coro__container_of(m, job, base.msg);
  coro__job_future *pf = j->base.fut;
  coro__inbox *ib = j->base.ib;
  pf->job = NULL;
  if (pf->own.fut.status == CORO_PENDING) {
    coro__future_remove_waiter(&pf->watch);
    if (j->base.status == 0) {
      pf->data = j->base.result;
      pf->len = j->out_len;
      j->base.result = NULL;
    }
    coro__future_complete(&pf->own.fut, j->base.status,
                          j->base.status == 0 ? pf->data : NULL);
  }
  coro__proc_job_free(j);
  loop_side_release(pf, ib);
}

void coro__proc_job_post(job *j) {
  if (coro__job_post(&j->base)) {
    /* The loop has ended: cannot happen while the loop-end sweep cancels
     * every job of its loop first. Drop what can be dropped off the loop's
     * thread; the future keeps its pending state and the job's reference. */
    coro__inbox_release(j->base.ib);
    coro__proc_job_free(j);
  }
}

/* Under p->base.mu: the job's outcome is known; send it home (from
 * coro__proc_unlock_flush: posting under p->base.mu would make the woken
 * loop thread wait for the lock), or drop it. */
void coro__proc_finish_locked(proc_pool *p, job *j, int status) {
  if (j->orphan) {
    coro__proc_job_free(j);
    return;
  }
  j->base.status = status;
  j->state = J_DONE;
  j->w = NULL;
  j->base.msg.run = coro__proc_job_msg_run;
  coro__queue_push(&p->outbox, &j->link);
}

/* Release p->base.mu, then post the outcomes finished meanwhile. */
void coro__proc_unlock_flush(proc_pool *p) {
  if (coro__queue_empty(&p->outbox)) {
    pthread_mutex_unlock(&p->base.mu);
    return;
  }
  coro__queue local, *q;
  coro__queue_init(&local);
  coro__queue_move(&p->outbox, &local);
  atomic_fetch_add_explicit(&p->posting, 1, memory_order_relaxed);
  pthread_mutex_unlock(&p->base.mu);
  while ((q = coro__queue_pop(&local)) != NULL)
    coro__proc_job_post(coro__container_of(q, job, link));
  atomic_fetch_sub_explicit(&p->posting, 1, memory_order_release);
}

/* Under p->base.mu: take the job away from the pool because its future was
 * cancelled (or its loop ends). Returns 1 if the loop side must now give
 * back what it holds (and free the job if it was queued: *free_job). */
static int job_cancel_locked(proc_pool *p, job *j, int *free_job) {
  *free_job = 0;
  if (j->state == J_QUEUED) {
    coro__queue_remove(&j->link);
    p->nqueued--;
    *free_job = 1;
    return 1;
  }
  if (j->state == J_RUNNING) {
    j->orphan = 1;
    j->base.fut = NULL;
    j->base.ib = NULL;
    coro__proc_kill_locked(j->w, CORO_ECANCELED);
    return 1;
  }
  return 0; /* DONE: the message is on its way and sees the cancellation */
}

/* The future completed without us: coro_cancel (pool.h: detach). */
static void job_detach(coro__job *bj, coro__job_future *pf) {
  job *j = coro__container_of(bj, job, base);
  proc_pool *p = j->pool;
  coro__inbox *ib = j->base.ib;
  int free_job;
  pthread_mutex_lock(&p->base.mu);
  int release = job_cancel_locked(p, j, &free_job);
  pthread_mutex_unlock(&p->base.mu);
  if (!release) return;
  pf->job = NULL;
  if (free_job) coro__proc_job_free(j);
  loop_side_release(pf, ib);
}

/* ---- pools ----------------------------------------------------------------- */

/* The program's own binary. /proc/self/exe names it even after the file
 * was replaced or deleted; but under a tool that runs the program inside
 * its own process (Valgrind), it names the tool: then the path it reports
 * for the program (another file) is the one to execute, natively. */
static void find_exe(char *buf, size_t cap) {
  struct stat self, named;
  ssize_t n = readlink("/proc/self/exe", buf, cap - 1);
  if (n > 0) {
    buf[n] = '\0';
    if (stat("/proc/self/exe", &self) == 0 && stat(buf, &named) == 0 &&
        (self.st_ino != named.st_ino || self.st_dev != named.st_dev))
      return;
  }
  snprintf(buf, cap, "/proc/self/exe");
}

int coro_process_pool_new(coro_pool **out, unsigned nprocs) {
  if (out == NULL || nprocs > 1024) return CORO_EINVAL;
  if (nprocs == 0) nprocs = uv_available_parallelism();
  if (nprocs == 0) nprocs = 1;
  proc_pool *p = coro__calloc(1, sizeof(*p));
  if (p == NULL) return CORO_ENOMEM;
  p->w = coro__calloc(nprocs, sizeof(worker));
  if (p->w == NULL) {
    coro__free(p);
    return CORO_ENOMEM;
  }
  find_exe(p->exe, sizeof(p->exe));
  atomic_init(&p->refs, 1);
  p->size = nprocs;
  for (unsigned i = 0; i < nprocs; i++) p->w[i].fd = -1;
  coro__queue_init(&p->queue);
  coro__queue_init(&p->outbox);
  atomic_init(&p->posting, 0);
  p->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (p->evfd < 0) {
    int e = -errno;
    coro__free(p->w);
    coro__free(p);
    return e;
  }
  coro__pool_init(&p->base, CORO__POOL_PROC, &pp_ops, 0);
  /* The pool thread takes no signal meant for the program. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int r = -pthread_create(&p->thread, NULL, coro__proc_thread_main, p);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (r != 0) {
    close(p->evfd);
    coro__proc_unref(p);
    return r;
  }
  pthread_mutex_lock(&p->base.mu);
  while (!p->started) pthread_cond_wait(&p->base.cv, &p->base.mu);
  r = p->spawn_err;
  pthread_mutex_unlock(&p->base.mu);
  if (r != 0) {
    coro__proc_kick(p);
    pthread_join(p->thread, NULL);
    close(p->evfd);
    coro__proc_unref(p);
    return r;
  }
  pthread_mutex_lock(&reg_mu);
  coro__queue_push(&reg, &p->all);
  pthread_mutex_unlock(&reg_mu);
  *out = &p->base;
  return 0;
}

int coro_run_in_process_opts(coro_future **out, coro_pool *pool,
                             coro_proc_fn fn, const void *in, size_t in_len,
                             const coro_job_opts *opts) {
  if (out == NULL || fn == NULL || (in == NULL && in_len > 0))
    return CORO_EINVAL;
  if (pool != NULL && pool->kind != CORO__POOL_PROC) return CORO_EINVAL;
  int64_t timeout_ms = opts != NULL ? opts->timeout_ms : 0;
  if (timeout_ms < CORO_FOREVER) return CORO_EINVAL;
  coro_loop *loop = coro__tls_loop;
  if (loop == NULL) return CORO_EPERM;
  if (loop->closing && loop->ntasks == 0) return CORO_EPIPE;
  /* The inbox is closed in coro_run's last stage: no completion could come
   * back (and no default pool may be made that nothing would free). */
  if (loop->inbox == NULL) return CORO_EPIPE;
  char pathbuf[4096];
  const char *path;
  size_t path_len;
  uint64_t offset;
  int r = coro__proc_fn_encode(fn, &path, &path_len, &offset, pathbuf,
                               sizeof(pathbuf));
  if (r != 0) return r;
  const char *name = opts != NULL ? opts->name : NULL;
  size_t name_size = name != NULL ? strlen(name) + 1 : 0;
  size_t head = sizeof(job) + coro__proc_req_size(path_len, 0);
  if (in_len > SIZE_MAX - head - name_size) return CORO_ENOMEM;
  /* The slot's end cancels what this loop still has in any pool, and
   * frees the default pool (made here on first use). */
  coro__loop_slot *slot = coro__loop_slot_of(loop, CORO__SLOT_PROC_POOL);
  slot->at_end = proc_slot_end;
  slot->stats = proc_slot_stats;
  if (pool == NULL) {
    if (slot->data == NULL) {
      coro_pool *made;
      if ((r = coro_process_pool_new(&made, 0)) != 0) return r;
      slot->data = made;
    }
    pool = slot->data;
  }
  proc_pool *p = (proc_pool *)pool;
  job *j = coro__malloc(head + in_len + name_size);
  if (j == NULL) return CORO_ENOMEM;
  coro__job_future *pf = coro__malloc(sizeof(*pf));
  if (pf == NULL) {
    coro__free(j);
    return CORO_ENOMEM;
  }
  memset(j, 0, sizeof(*j));
  j->req = (unsigned char *)(j + 1);
  j->req_len = coro__proc_req_size(path_len, in_len);
  if (name != NULL) {
    char *nm = (char *)j->req + j->req_len;
    memcpy(nm, name, name_size);
    j->base.name = nm;
  }
  coro__proc_req_write(j->req, path, path_len, offset, in, in_len);
  j->base.discard = bytes_discard;
  j->timeout_ms = timeout_ms > 0 ? timeout_ms : 0;
  j->pool = p;
  j->loop = loop;
  j->state = J_QUEUED;

  pthread_mutex_lock(&p->base.mu);
  r = p->closed ? CORO_EPIPE : p->broken ? CORO_EWORKER_START : 0;
  if (r != 0) {
    pthread_mutex_unlock(&p->base.mu);
    coro__free(j);
    coro__free(pf);
    return r;
  }
  atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed);
  j->base.id = ++p->next_id;
  coro__proc_req_set_id(j->req, j->base.id);
  j->base.detach = job_detach;
  coro__job_future_init(pf, loop, &j->base, CORO__POOL_PROC);
  j->base.ib = coro__loop_inbox(loop);
  coro__inbox_retain(j->base.ib);
  int wake = 0;
  worker *w;
  if (p->nqueued == 0 && (w = coro__proc_idle_worker_locked(p)) != NULL) {
    wake = coro__proc_assign_locked(p, w, j);
    /* With a pidfd the pool thread does not poll an idle worker's socket:
     * read the reply here, or tell that thread to. */
    if (w->pidfd >= 0 &&
        (w->job != j || j->req_off < j->req_len || w->killed ||
         coro__proc_watch_start_locked(p, w, loop) != 0))
      wake = 1;
  } else {
    coro__queue_push(&p->queue, &j->link);
    p->nqueued++;
  }
  pthread_mutex_unlock(&p->base.mu);
  if (wake) coro__proc_kick(p);
  coro__loop_ext_add(loop, +1);
  *out = &pf->own.fut;
  return 0;
}

int coro_run_in_process(coro_future **out, coro_pool *pool, coro_proc_fn fn,
                        const void *in, size_t in_len) {
  return coro_run_in_process_opts(out, pool, fn, in, in_len, NULL);
}

int coro_future_bytes(const coro_future *f, const void **data, size_t *len) {
  const coro__job_future *pf = coro__job_future_of(f);
  if (pf == NULL || pf->kind != CORO__POOL_PROC) return CORO_EINVAL;
  if (f->status == CORO_PENDING) return CORO_EAGAIN;
  coro__future_observed(f);
  if (f->status != 0) return f->status;
  if (data != NULL) *data = pf->data;
  if (len != NULL) *len = pf->len;
  return 0;
}

/* ---- shutdown and free ------------------------------------------------------- */

static int busy_locked(proc_pool *p) {
  for (unsigned i = 0; i < p->size; i++)
    if (p->w[i].job != NULL && !p->w[i].job->orphan) return 1;
  return 0;
}

static void close_locked(proc_pool *p) {
  if (!p->closed) {
    p->closed = 1;
    coro__proc_fail_queued_locked(p, CORO_ECANCELED);
  }
  coro__proc_kick(p);
}

/* ---- the pool's operations (pool.h) ------------------------------------------ */

static void pp_close(coro_pool *pool) {
  proc_pool *p = (proc_pool *)pool;
  pthread_mutex_lock(&p->base.mu);
  close_locked(p);
  coro__proc_unlock_flush(p);
}

static int pp_busy_locked(coro_pool *pool) {
  return busy_locked((proc_pool *)pool);
}

static int pp_done_locked(coro_pool *pool) {
  return ((proc_pool *)pool)->drained;
}

static void pp_each_running_locked(coro_pool *pool,
                                   void (*visit)(const coro__job *j, int pid,
                                                 void *arg),
                                   void *arg) {
  proc_pool *p = (proc_pool *)pool;
  for (unsigned i = 0; i < p->size; i++) {
    worker *w = &p->w[i];
    job *j = w->job;
    if (j == NULL || j->orphan) continue;
    visit(&j->base, (int)w->pid, arg);
  }
}

static void pp_before_block(coro_pool *pool) {
  if (coro__tls_loop != NULL)
    coro__proc_watches_release(coro__tls_loop, (proc_pool *)pool);
}

static void pp_free(coro_pool *pool) {
  proc_pool *p = (proc_pool *)pool;
  pthread_mutex_lock(&p->base.mu);
  close_locked(p);
  p->freeing = 1; /* the pool thread kills what still runs */
  coro__proc_unlock_flush(p);
  pthread_join(p->thread, NULL);
  /* Out of the registry only now: until every outcome is posted, a loop
   * that ends must still find this pool's jobs. */
  pthread_mutex_lock(&reg_mu);
  coro__queue_remove(&p->all);
  pthread_mutex_unlock(&reg_mu);
  close(p->evfd);
  coro__proc_unref(p);
}

static const coro__pool_ops pp_ops = {
    .close = pp_close,
    .busy_locked = pp_busy_locked,
    .done_locked = pp_done_locked,
    .each_running_locked = pp_each_running_locked,
    .now_ns = uv_hrtime,
    .on_own_worker = NULL,
    .before_block = pp_before_block,
    .finish = NULL,
    .free = pp_free,
};

/* The process-pool slot's end (core/loop.h), registered by the first job
 * this loop submits: called by coro_run after the tasks are drained,
 * before the inbox closes. Every job this loop submitted to any process
 * pool and whose outcome has not been posted yet is cancelled: a queued
 * one never runs, a running one has its worker killed (and replaced);
 * their futures end -ECANCELED. Then the loop's default process pool, if
 * it made one, is freed. */
static void proc_slot_end(coro_loop *loop, coro__loop_slot *slot) {
  coro__queue got;
  coro__queue_init(&got);
  pthread_mutex_lock(&reg_mu);
  coro__queue *q;
  for (q = reg.next; q != &reg; q = q->next) {
    proc_pool *p = coro__container_of(q, proc_pool, all);
    pthread_mutex_lock(&p->base.mu);
    coro__queue *jq, *next;
    /* Finished, not posted yet (the pool thread is between its unlock and
     * its flush): post them here, while the inbox still takes them. */
    for (jq = p->outbox.next; jq != &p->outbox; jq = next) {
      next = jq->next;
      job *j = coro__container_of(jq, job, link);
      if (j->loop != loop) continue;
      coro__queue_remove(jq);
      coro__proc_job_post(j);
    }
    for (jq = p->queue.next; jq != &p->queue; jq = next) {
      next = jq->next;
      job *j = coro__container_of(jq, job, link);
      if (j->loop != loop) continue;
      int free_job;
      job_cancel_locked(p, j, &free_job);
      coro__queue_push(&got, &j->base.fut->link);
    }
    for (unsigned i = 0; i < p->size; i++) {
      job *j = p->w[i].job;
      if (j == NULL || j->orphan || j->loop != loop) continue;
      coro__job_future *pf = j->base.fut;
      coro__inbox *ib = j->base.ib;
      int free_job;
      job_cancel_locked(p, j, &free_job);
      /* Orphaned: the pool thread frees it; what the loop holds is
       * given back below. */
      pf->job = NULL;
      coro__inbox_release(ib);
      coro__queue_push(&got, &pf->link);
    }
    pthread_mutex_unlock(&p->base.mu);
    /* And the batches another thread is posting right now. */
    while (atomic_load_explicit(&p->posting, memory_order_acquire) > 0)
      sched_yield();
  }
  pthread_mutex_unlock(&reg_mu);
  while ((q = coro__queue_pop(&got)) != NULL) {
    coro__job_future *pf = coro__container_of(q, coro__job_future, link);
    job *j = job_of(pf);
    coro__inbox *ib = NULL;
    if (j != NULL) { /* was queued */
      ib = j->base.ib;
      pf->job = NULL;
      coro__proc_job_free(j);
    }
    coro__future_remove_waiter(&pf->watch);
    coro__future_complete(&pf->own.fut, CORO_ECANCELED, NULL);
    if (ib != NULL) {
      loop_side_release(pf, ib);
    } else {
      coro__loop_ext_add(pf->own.fut.loop, -1);
      coro_future_release(&pf->own.fut);
    }
  }
  coro__proc_watches_close_all(loop);
  coro_pool *dp = slot->data;
  slot->data = NULL;
  if (dp != NULL) coro_pool_free(dp);
}

/* ---- for the tests ----------------------------------------------------------- */

void coro__proc_pool_stats(coro_pool *pool, coro__proc_stats *st) {
  proc_pool *p = (proc_pool *)pool;
  memset(st, 0, sizeof(*st));
  pthread_mutex_lock(&p->base.mu);
  st->size = p->size;
  for (unsigned i = 0; i < p->size; i++) {
    worker *w = &p->w[i];
    if (w->state != W_EMPTY) st->live++;
    if (w->state == W_IDLE || w->state == W_BUSY) st->ready++;
    if (w->job != NULL) st->running++;
  }
  st->queued = p->nqueued;
  st->spawned = p->spawned;
  st->died = p->died;
  pthread_mutex_unlock(&p->base.mu);
}

int coro__proc_job_pid(const coro_future *f) {
  const coro__job_future *pf = coro__job_future_of(f);
  if (pf == NULL || pf->kind != CORO__POOL_PROC) return 0;
  job *j = job_of(pf);
  if (j == NULL) return 0;
  proc_pool *p = j->pool;
  pthread_mutex_lock(&p->base.mu);
  int pid = j->state == J_RUNNING && j->w != NULL ? (int)j->w->pid : 0;
  pthread_mutex_unlock(&p->base.mu);
  return pid;
}

