/* SPDX-License-Identifier: MIT */
/* Process pools, the parent side.
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
 * there is one and polls that socket for the reply itself (see "loops
 * reading their own replies"): a round trip costs two wake-ups, the worker
 * and the loop; that loop also feeds the worker its next queued job when
 * the job is its own. Jobs the pool thread dispatches cost one more (it
 * reads their replies and posts them to the loop's inbox); so does every
 * job when the kernel has no pidfd_open. Workers are spawned only by the pool thread,
 * which lives as long as the pool: PR_SET_PDEATHSIG fires when the spawning
 * thread ends.
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
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/future.h"
#include "core/task.h"
#include "exec/pool.h"
#include "exec/proc_pool.h"

extern char **environ;

enum { J_QUEUED, J_RUNNING, J_DONE };
enum { W_EMPTY, W_STARTING, W_IDLE, W_BUSY, W_DEAD };

#define START_LIMIT_NS (30ull * 1000000000ull) /* hello within 30 s */
#define START_FAILURES_MAX 3 /* in a row: the pool is broken */
#define RX_CHUNK 65536

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

/* Every pool, for the loop-end sweep. Lock order: reg_mu, then p->base.mu. */
static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static coro__queue reg = {&reg, &reg};

static void proc_slot_end(coro_loop *loop, coro__loop_slot *slot);
static const coro__pool_ops pp_ops;

static void pool_unref(proc_pool *p) {
  if (atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) != 1)
    return;
  coro__pool_destroy(&p->base);
  coro__free(p->w);
  coro__free(p);
}

static void kick(proc_pool *p) {
  uint64_t one = 1;
  ssize_t r = write(p->evfd, &one, sizeof(one));
  (void)r; /* EAGAIN: a wake-up is pending already */
}

static void worker_kill_locked(worker *w, int status) {
  if (w->pid <= 0 || w->reaping) return;
  if (w->kill_status == 0) w->kill_status = status;
  if (!w->killed) {
    w->killed = 1;
    kill(w->pid, SIGKILL);
  }
}

/* The discard of result bytes nobody will read. */
static void bytes_discard(void *result, void *data) {
  (void)data;
  coro__free(result);
}

static void job_free(job *j) {
  coro__job_discard(&j->base);
  proc_pool *p = j->pool;
  coro__free(j);
  pool_unref(p);
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

static void job_msg_run(coro__msg *m) {
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
  job_free(j);
  loop_side_release(pf, ib);
}

static void job_post(job *j) {
  if (coro__job_post(&j->base)) {
    /* The loop has ended: cannot happen while the loop-end sweep cancels
     * every job of its loop first. Drop what can be dropped off the loop's
     * thread; the future keeps its pending state and the job's reference. */
    coro__inbox_release(j->base.ib);
    job_free(j);
  }
}

/* Under p->base.mu: the job's outcome is known; send it home (from
 * unlock_flush: posting under p->base.mu would make the woken loop thread wait
 * for the lock), or drop it. */
static void job_finish_locked(proc_pool *p, job *j, int status) {
  if (j->orphan) {
    job_free(j);
    return;
  }
  j->base.status = status;
  j->state = J_DONE;
  j->w = NULL;
  j->base.msg.run = job_msg_run;
  coro__queue_push(&p->outbox, &j->link);
}

/* Release p->base.mu, then post the outcomes finished meanwhile. */
static void unlock_flush(proc_pool *p) {
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
    job_post(coro__container_of(q, job, link));
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
    worker_kill_locked(j->w, CORO_ECANCELED);
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
  if (free_job) job_free(j);
  loop_side_release(pf, ib);
}

/* ---- workers ----------------------------------------------------------------- */

static int spawn_worker_locked(proc_pool *p, worker *w) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
    return -errno;
  /* The child end is dup2'ed to CORO__PROC_FD: it must not be that fd
   * already (dup2 onto itself would keep close-on-exec). */
  int cfd = sv[1];
  if (cfd == CORO__PROC_FD) {
    cfd = fcntl(sv[1], F_DUPFD_CLOEXEC, CORO__PROC_FD + 1);
    close(sv[1]);
    if (cfd < 0) {
      close(sv[0]);
      return -errno;
    }
  }
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t at;
  posix_spawn_file_actions_init(&fa);
  posix_spawnattr_init(&at);
  posix_spawn_file_actions_adddup2(&fa, cfd, CORO__PROC_FD);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 34)
  /* Descriptors the program opened without close-on-exec stay out. */
  posix_spawn_file_actions_addclosefrom_np(&fa, CORO__PROC_FD + 1);
#endif
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  sigdelset(&all, SIGKILL);
  sigdelset(&all, SIGSTOP);
  posix_spawnattr_setsigmask(&at, &none);
  posix_spawnattr_setsigdefault(&at, &all);
  /* Its own process group: a terminal's ^C goes to the program, which
   * decides; the workers die with it anyway. */
  posix_spawnattr_setpgroup(&at, 0);
  posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
                                    POSIX_SPAWN_SETPGROUP);
  size_t n = 0;
  for (char **e = environ; e != NULL && *e != NULL; e++) n++;
  char **env = coro__malloc((n + 2) * sizeof(char *));
  char var[64];
  int r = CORO_ENOMEM;
  if (env != NULL) {
    size_t k = 0;
    size_t pl = strlen(CORO__PROC_ENV);
    for (size_t i = 0; i < n; i++)
      if (strncmp(environ[i], CORO__PROC_ENV "=", pl + 1) != 0)
        env[k++] = environ[i];
    snprintf(var, sizeof(var), "%s=%d:%ld", CORO__PROC_ENV, CORO__PROC_FD,
             (long)getpid());
    env[k++] = var;
    env[k] = NULL;
    char *argv[] = {program_invocation_name, NULL};
    pid_t pid;
    r = -posix_spawn(&pid, p->exe, &fa, &at, argv, env);
    coro__free(env);
    if (r == 0) {
      w->pid = pid;
      w->fd = sv[0];
      w->pidfd = -1;
#ifdef SYS_pidfd_open
      /* Linux 5.3+ (close-on-exec by itself); without it the pool thread
       * polls every socket and reads every reply. */
      static atomic_int no_pidfd;
      if (!atomic_load_explicit(&no_pidfd, memory_order_relaxed)) {
        w->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
        if (w->pidfd < 0 && errno == ENOSYS)
          atomic_store_explicit(&no_pidfd, 1, memory_order_relaxed);
      }
#endif
      w->reader = NULL;
      w->gen = p->spawned + 1;
      w->state = W_STARTING;
      w->killed = w->reaping = w->kill_status = w->bad = 0;
      w->job = NULL;
      w->hdr_got = 0;
      w->spawned_ns = uv_hrtime();
      p->spawned++;
    }
  }
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&at);
  close(cfd);
  if (r != 0) close(sv[0]);
  return r;
}

/* Under p->base.mu: send what fits of the running job's request. */
static void write_more_locked(worker *w) {
  job *j = w->job;
  while (j->req_off < j->req_len) {
    ssize_t r = send(w->fd, j->req + j->req_off, j->req_len - j->req_off,
                     MSG_DONTWAIT | MSG_NOSIGNAL);
    if (r > 0) {
      j->req_off += (size_t)r;
      continue;
    }
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    /* The worker is gone (or going): its end of file says how. */
    j->req_off = j->req_len;
    worker_kill_locked(w, 0);
    return;
  }
}

/* Under p->base.mu: give job j to idle worker w. Returns 1 if the pool thread
 * must hear of it (a partial write to finish, or an earlier deadline). */
static int assign_locked(proc_pool *p, worker *w, job *j) {
  j->state = J_RUNNING;
  j->w = w;
  j->base.started_ns = uv_hrtime();
  j->deadline_ns = 0;
  /* A limit too far away for nanoseconds in 64 bits means none. */
  if (j->timeout_ms > 0 &&
      (uint64_t)j->timeout_ms <= (UINT64_MAX - j->base.started_ns) / 1000000u)
    j->deadline_ns = j->base.started_ns + (uint64_t)j->timeout_ms * 1000000u;
  w->job = j;
  w->state = W_BUSY;
  write_more_locked(w);
  if (!p->sleeping) return 0;
  if (j->req_off < j->req_len) return 1;
  return j->deadline_ns != 0 &&
         (p->sleep_until == 0 || j->deadline_ns < p->sleep_until);
}

static worker *idle_worker_locked(proc_pool *p) {
  for (unsigned i = 0; i < p->size; i++)
    if (p->w[i].state == W_IDLE) return &p->w[i];
  return NULL;
}

static void dispatch_locked(proc_pool *p) {
  worker *w;
  while (p->nqueued > 0 && (w = idle_worker_locked(p)) != NULL) {
    job *j = coro__container_of(coro__queue_pop(&p->queue), job, link);
    p->nqueued--;
    assign_locked(p, w, j);
  }
}

static void fail_queued_locked(proc_pool *p, int status) {
  coro__queue *q;
  while ((q = coro__queue_pop(&p->queue)) != NULL) {
    p->nqueued--;
    job_finish_locked(p, coro__container_of(q, job, link), status);
  }
}

static int death_status(int ws) {
  if (WIFSIGNALED(ws)) return CORO_EWORKER_SIGNAL(WTERMSIG(ws));
  if (WIFEXITED(ws)) return CORO_EWORKER_EXIT(WEXITSTATUS(ws));
  return CORO_EWORKER_SIGNAL(SIGKILL);
}

/* Under p->base.mu (dropped while waiting): w's socket ended; reap the process
 * and settle its job. */
static void worker_reap_locked(proc_pool *p, worker *w) {
  pid_t pid = w->pid;
  int was_starting = w->state == W_STARTING && !w->killed;
  close(w->fd);
  w->fd = -1;
  if (w->pidfd >= 0) close(w->pidfd);
  w->pidfd = -1;
  w->reader = NULL;
  w->state = W_DEAD;
  w->reaping = 1;
  unlock_flush(p);
  int ws = 0;
  pid_t r;
  do r = waitpid(pid, &ws, WNOHANG);
  while (r < 0 && errno == EINTR);
  if (r == 0) {
    /* It closed its socket but lives on: it is no worker any more. */
    kill(pid, SIGKILL);
    do r = waitpid(pid, &ws, 0);
    while (r < 0 && errno == EINTR);
  }
  pthread_mutex_lock(&p->base.mu);
  p->died++;
  job *j = w->job;
  if (j != NULL) {
    w->job = NULL;
    job_finish_locked(p, j, w->kill_status != 0 ? w->kill_status
                                                : death_status(ws));
  }
  coro__free(w->rx);
  w->rx = NULL;
  w->pid = 0;
  w->state = W_EMPTY;
  if (was_starting && !p->freeing && !p->closed) {
    if (++p->start_failures >= START_FAILURES_MAX && !p->broken) {
      fprintf(stderr,
              "libcoro: process pool: %d worker processes in a row exited "
              "before they were ready (does this program link libcoro, not "
              "dlopen it?); the pool is broken\n",
              p->start_failures);
      p->broken = 1;
      fail_queued_locked(p, CORO_EWORKER_START);
    }
  }
}

/* Under p->base.mu: a whole message arrived from w. */
static void on_message_locked(proc_pool *p, worker *w) {
  if (w->hdr.type == CORO__PROC_HELLO) {
    w->state = w->killed ? W_DEAD : W_IDLE;
    p->start_failures = 0;
    return;
  }
  job *j = w->job;
  w->job = NULL;
  w->state = w->killed ? W_DEAD : W_IDLE;
  char *rx = w->rx;
  w->rx = NULL;
  if (j->orphan) {
    coro__free(rx);
    job_free(j);
    return;
  }
  j->base.result = rx;
  j->out_len = w->rx_len;
  job_finish_locked(p, j, w->hdr.status);
}

/* Under p->base.mu: the header is in; check it. 0, or a status to kill w with. */
static int on_header_locked(worker *w) {
  coro__proc_hdr *h = &w->hdr;
  w->rx_len = w->rx_got = 0;
  if (h->type == CORO__PROC_HELLO)
    return w->state == W_STARTING && h->len == 0 ? 0 : (-EPROTO);
  if (h->type != CORO__PROC_REPLY || w->state != W_BUSY || w->job == NULL ||
      h->id != w->job->base.id || h->len > SIZE_MAX / 2 || h->status > 0)
    return (-EPROTO);
  if (h->len > 0) {
    w->rx = coro__malloc((size_t)h->len);
    if (w->rx == NULL) return CORO_ENOMEM;
  }
  w->rx_len = (size_t)h->len;
  return 0;
}

static void consume_locked(proc_pool *p, worker *w, const char *buf,
                           size_t n) {
  while (n > 0 && !w->bad) {
    if (w->hdr_got < sizeof(w->hdr)) {
      size_t k = sizeof(w->hdr) - w->hdr_got;
      if (k > n) k = n;
      memcpy((char *)&w->hdr + w->hdr_got, buf, k);
      w->hdr_got += k;
      buf += k;
      n -= k;
      if (w->hdr_got < sizeof(w->hdr)) return;
      int e = on_header_locked(w);
      if (e != 0) {
        w->bad = 1;
        worker_kill_locked(w, e);
        return;
      }
    } else {
      size_t k = w->rx_len - w->rx_got;
      if (k > n) k = n;
      memcpy(w->rx + w->rx_got, buf, k);
      w->rx_got += k;
      buf += k;
      n -= k;
    }
    if (w->rx_got == w->rx_len) {
      w->hdr_got = 0;
      on_message_locked(p, w);
    }
  }
}

/* Under p->base.mu: read what w sent. Large payloads go straight into their
 * buffer (one copy from the kernel, no regrowing). */
static void read_worker_locked(proc_pool *p, worker *w, char *buf) {
  for (;;) {
    ssize_t r;
    if (!w->bad && w->hdr_got == sizeof(w->hdr) &&
        w->rx_len - w->rx_got >= RX_CHUNK) {
      r = recv(w->fd, w->rx + w->rx_got, w->rx_len - w->rx_got, MSG_DONTWAIT);
      if (r > 0) {
        w->rx_got += (size_t)r;
        if (w->rx_got == w->rx_len) {
          w->hdr_got = 0;
          on_message_locked(p, w);
        }
        continue;
      }
    } else {
      r = recv(w->fd, buf, RX_CHUNK, MSG_DONTWAIT);
      if (r > 0) {
        consume_locked(p, w, buf, (size_t)r);
        /* A whole reply: nothing more comes until the next job (an end
         * of file would wake the next poll), so spare the recv that would
         * say EAGAIN. */
        if ((size_t)r < RX_CHUNK && w->hdr_got == 0 && w->state != W_BUSY &&
            w->state != W_STARTING)
          return;
        continue;
      }
    }
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    worker_reap_locked(p, w); /* end of file or a broken socket */
    return;
  }
}

/* Under p->base.mu: the pool has drained; wake everyone waiting for that. */
static void drained_locked(proc_pool *p) {
  p->drained = 1;
  coro__pool_wake_waiters_locked(&p->base);
}

/* ---- the pool thread --------------------------------------------------------- */

static void *pool_thread(void *arg) {
  proc_pool *p = arg;
  char *buf = malloc(RX_CHUNK);
  struct pollfd *pfd = malloc((2 * p->size + 1) * sizeof(*pfd));
  worker **pw = malloc((2 * p->size + 1) * sizeof(*pw));
  pthread_mutex_lock(&p->base.mu);
  for (unsigned i = 0; i < p->size; i++) {
    int r = buf != NULL && pfd != NULL && pw != NULL
                ? spawn_worker_locked(p, &p->w[i])
                : CORO_ENOMEM;
    if (r != 0) {
      p->spawn_err = r;
      p->freeing = p->closed = 1;
      break;
    }
  }
  p->started = 1;
  pthread_cond_broadcast(&p->base.cv);
  for (;;) {
    uint64_t now = uv_hrtime();
    uint64_t until = 0;
    unsigned live = 0, busy = 0;
    for (unsigned i = 0; i < p->size; i++) {
      worker *w = &p->w[i];
      if (w->state == W_EMPTY) {
        if (!p->closed && !p->broken && spawn_worker_locked(p, w) != 0) {
          /* No process now (EAGAIN, ENOMEM): try again in a while. */
          if (until == 0 || now + 100000000u < until) until = now + 100000000u;
        }
        if (w->state == W_EMPTY) continue;
      }
      live++;
      if (w->state == W_BUSY) busy++;
      if (p->freeing && w->state != W_DEAD) worker_kill_locked(w, CORO_ECANCELED);
      if (p->closed && w->state == W_IDLE) {
        /* Shut down and idle: end of file tells it to exit. */
        shutdown(w->fd, SHUT_WR);
        w->state = W_DEAD;
      }
      if (p->closed && w->state == W_STARTING) worker_kill_locked(w, 0);
      uint64_t due = 0;
      if (w->state == W_BUSY && w->job->deadline_ns != 0)
        due = w->job->deadline_ns;
      else if (w->state == W_STARTING)
        due = w->spawned_ns + START_LIMIT_NS;
      if (due != 0 && !w->killed) {
        if (due <= now) {
          worker_kill_locked(w, w->state == W_BUSY ? CORO_ETIMEDOUT : 0);
        } else if (until == 0 || due < until) {
          until = due;
        }
      }
    }
    if (p->closed && busy == 0 && !p->drained && p->nqueued == 0 && live == 0)
      drained_locked(p);
    if (p->closed && live == 0) break;
    /* Poll: the wake-up; each worker's pidfd (its death); the sockets
     * with something for this thread to read or write (all of them when
     * there is no pidfd). A loop that reads its own job's reply polls
     * that socket itself, and an idle one is silent until it dies. */
    nfds_t n = 0;
    pfd[n].fd = p->evfd;
    pfd[n].events = POLLIN;
    pw[n++] = NULL;
    for (unsigned i = 0; i < p->size; i++) {
      worker *w = &p->w[i];
      if (w->fd < 0) continue;
      if (w->pidfd >= 0) {
        pfd[n].fd = w->pidfd;
        pfd[n].events = POLLIN;
        pw[n++] = w;
      }
      short ev = 0;
      if (w->pidfd < 0 || w->state == W_STARTING ||
          (w->state == W_BUSY && w->reader == NULL))
        ev = POLLIN;
      if (w->state == W_BUSY && w->job->req_off < w->job->req_len)
        ev |= POLLOUT;
      if (ev == 0) continue;
      pfd[n].fd = w->fd;
      pfd[n].events = ev;
      pw[n++] = w;
    }
    int ms = -1;
    if (until != 0) {
      uint64_t d = until > now ? until - now : 0;
      uint64_t dms = (d + 999999u) / 1000000u;
      ms = dms > (uint64_t)INT_MAX ? INT_MAX : (int)dms;
    }
    p->sleeping = 1;
    p->sleep_until = until;
    unlock_flush(p);
    int pr = poll(pfd, n, ms);
    pthread_mutex_lock(&p->base.mu);
    p->sleeping = 0;
    if (pr <= 0) continue;
    if (pfd[0].revents) {
      uint64_t v;
      ssize_t rr = read(p->evfd, &v, sizeof(v));
      (void)rr;
    }
    for (nfds_t k = 1; k < n; k++) {
      worker *w = pw[k];
      if (pfd[k].revents == 0 || w->fd < 0) continue;
      if (pfd[k].fd == w->pidfd) {
        /* It ended: take its socket back from any loop, read what is
         * left (a reply sent just before), then its end of file. */
        w->reader = NULL;
        read_worker_locked(p, w, buf);
        continue;
      }
      if (pfd[k].fd != w->fd) continue;
      if ((pfd[k].revents & POLLOUT) && w->state == W_BUSY)
        write_more_locked(w);
      if (pfd[k].revents & (POLLIN | POLLHUP | POLLERR))
        read_worker_locked(p, w, buf);
    }
    dispatch_locked(p);
  }
  unlock_flush(p);
  free(buf);
  free(pfd);
  free(pw);
  return NULL;
}

/* ---- loops reading their own replies ---------------------------------------- */

/* A submission that writes its job straight to an idle worker also reads
 * the reply itself: the loop polls (a duplicate of) the worker's socket
 * while the job runs, and the pool thread, which watches the worker's
 * pidfd for its death, stays asleep. One wake-up less per round trip. The
 * pool thread takes the socket back (w->reader = NULL) when the worker
 * dies; the loop hands it back for a large reply, which that thread reads
 * off the loop. One watch per (loop, worker process), kept for the next
 * job, closed when that process is gone or the loop ends. */
#define DIRECT_MAX 16384 /* larger replies are read by the pool thread */

typedef struct watch {
  uv_poll_t h;
  proc_pool *p;           /* referenced */
  worker *w;
  uint64_t gen;
  int fd;                 /* our duplicate of w->fd */
  coro_loop *loop;
  struct watch *next;
} watch;

static _Thread_local watch *watches; /* this thread's loop's */

static void watch_closed(uv_handle_t *h) {
  watch *e = h->data;
  close(e->fd);
  pool_unref(e->p);
  coro__free(e);
}

static void watch_close(watch *e) {
  watch **pp = &watches;
  while (*pp != e) pp = &(*pp)->next;
  *pp = e->next;
  uv_close((uv_handle_t *)&e->h, watch_closed);
}

static void watch_cb(uv_poll_t *h, int status, int events) {
  (void)events;
  watch *e = h->data;
  proc_pool *p = e->p;
  worker *w = e->w;
  char buf[DIRECT_MAX];
  pthread_mutex_lock(&p->base.mu);
  if (w->gen != e->gen || w->reader != e->loop) {
    int stale = w->gen != e->gen;
    pthread_mutex_unlock(&p->base.mu);
    uv_poll_stop(h);
    if (stale) watch_close(e);
    return;
  }
  job *j = w->job;
  int orphan = j->orphan, give_back = status < 0;
  while (!give_back) {
    ssize_t r = recv(e->fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (r > 0) {
      consume_locked(p, w, buf, (size_t)r);
      if (w->job != j || w->bad) break;
      if (w->hdr_got == sizeof(w->hdr) && w->rx_len - w->rx_got > sizeof(buf))
        give_back = 1;
      continue;
    }
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    give_back = 1; /* end of file: the worker died, the pool thread reaps */
  }
  int done = w->job != j;
  int wake = give_back || w->bad;
  int keep = 0;
  if (done && w->state == W_IDLE && p->nqueued > 0) {
    /* The next queued job is this loop's too: hand it to the worker from
     * here and keep reading (a batch then runs without the pool thread). */
    job *next = coro__container_of(p->queue.next, job, link);
    if (next->loop == e->loop) {
      coro__queue_remove(&next->link);
      p->nqueued--;
      wake |= assign_locked(p, w, next);
      keep = w->job == next && next->req_off == next->req_len && !w->killed;
      if (!keep) wake = 1;
    }
  }
  /* The pool thread must hear of an idle worker when jobs wait for one or
   * when the pool is shutting down (it ends idle workers). */
  if (done && !keep && (p->nqueued > 0 || p->closed)) wake = 1;
  job *mine = NULL;
  if ((done || give_back || w->bad) && !keep) {
    w->reader = NULL;
    uv_poll_stop(h);
  }
  if (done && !orphan) {
    /* Finished here, on its own loop: complete it now, not by post. */
    coro__queue_remove(&j->link);
    mine = j;
  }
  unlock_flush(p);
  if (wake) kick(p);
  if (mine != NULL) job_msg_run(&mine->base.msg);
}

/* Under p->base.mu, on loop's thread: start reading w's reply from loop. 0, or
 * -1 if the pool thread must do it. */
static int watch_start_locked(proc_pool *p, worker *w, coro_loop *loop) {
  watch *e;
  for (e = watches; e != NULL; e = e->next)
    if (e->p == p && e->w == w) break;
  if (e != NULL && e->gen != w->gen) {
    uv_poll_stop(&e->h);
    watch_close(e);
    e = NULL;
  }
  if (e == NULL) {
    e = coro__malloc(sizeof(*e));
    if (e == NULL) return -1;
    e->fd = fcntl(w->fd, F_DUPFD_CLOEXEC, 0);
    if (e->fd < 0 || uv_poll_init(&loop->uv, &e->h, e->fd) != 0) {
      if (e->fd >= 0) close(e->fd);
      coro__free(e);
      return -1;
    }
    e->h.data = e;
    e->p = p;
    e->w = w;
    e->gen = w->gen;
    e->loop = loop;
    atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed);
    e->next = watches;
    watches = e;
  }
  if (uv_poll_start(&e->h, UV_READABLE, watch_cb) != 0) return -1;
  w->reader = loop;
  return 0;
}

/* The loop's end: every watch goes (its jobs were cancelled already). */
static void watches_close_all(coro_loop *loop) {
  while (watches != NULL) {
    watch *e = watches;
    proc_pool *p = e->p;
    pthread_mutex_lock(&p->base.mu);
    int mine = e->w->gen == e->gen && e->w->reader == loop;
    if (mine) e->w->reader = NULL;
    pthread_mutex_unlock(&p->base.mu);
    if (mine) kick(p);
    uv_poll_stop(&e->h);
    watch_close(e);
  }
}

/* This thread is about to block (a waiting shutdown outside a task): hand
 * the replies it reads itself for p back to the pool thread, or they would
 * never be read. The watches stay, stopped, for later use. */
static void watches_release_pool(coro_loop *loop, proc_pool *p) {
  for (watch *e = watches; e != NULL; e = e->next) {
    if (e->p != p) continue;
    pthread_mutex_lock(&p->base.mu);
    int mine = e->w->gen == e->gen && e->w->reader == loop;
    if (mine) e->w->reader = NULL;
    pthread_mutex_unlock(&p->base.mu);
    if (mine) {
      uv_poll_stop(&e->h);
      kick(p);
    }
  }
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
  int r = -pthread_create(&p->thread, NULL, pool_thread, p);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (r != 0) {
    close(p->evfd);
    pool_unref(p);
    return r;
  }
  pthread_mutex_lock(&p->base.mu);
  while (!p->started) pthread_cond_wait(&p->base.cv, &p->base.mu);
  r = p->spawn_err;
  pthread_mutex_unlock(&p->base.mu);
  if (r != 0) {
    kick(p);
    pthread_join(p->thread, NULL);
    close(p->evfd);
    pool_unref(p);
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
  size_t head = sizeof(job) + sizeof(coro__proc_req) + path_len;
  if (in_len > SIZE_MAX - head - name_size) return CORO_ENOMEM;
  /* The slot's end cancels what this loop still has in any pool, and
   * frees the default pool (made here on first use). */
  coro__loop_slot *slot = coro__loop_slot_of(loop, CORO__SLOT_PROC_POOL);
  slot->at_end = proc_slot_end;
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
  j->req_len = sizeof(coro__proc_req) + path_len + in_len;
  if (name != NULL) {
    char *nm = (char *)j->req + j->req_len;
    memcpy(nm, name, name_size);
    j->base.name = nm;
  }
  coro__proc_req req = {CORO__PROC_JOB, (uint32_t)path_len, 0, offset,
                        in_len};
  memcpy(j->req + sizeof(req), path, path_len);
  if (in_len > 0) memcpy(j->req + sizeof(req) + path_len, in, in_len);
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
  j->base.id = req.id = ++p->next_id;
  memcpy(j->req, &req, sizeof(req));
  j->base.detach = job_detach;
  coro__job_future_init(pf, loop, &j->base, CORO__POOL_PROC);
  j->base.ib = coro__loop_inbox(loop);
  coro__inbox_retain(j->base.ib);
  int wake = 0;
  worker *w;
  if (p->nqueued == 0 && (w = idle_worker_locked(p)) != NULL) {
    wake = assign_locked(p, w, j);
    /* With a pidfd the pool thread does not poll an idle worker's socket:
     * read the reply here, or tell that thread to. */
    if (w->pidfd >= 0 &&
        (w->job != j || j->req_off < j->req_len || w->killed ||
         watch_start_locked(p, w, loop) != 0))
      wake = 1;
  } else {
    coro__queue_push(&p->queue, &j->link);
    p->nqueued++;
  }
  pthread_mutex_unlock(&p->base.mu);
  if (wake) kick(p);
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
    fail_queued_locked(p, CORO_ECANCELED);
  }
  kick(p);
}

/* ---- the pool's operations (pool.h) ------------------------------------------ */

static void pp_close(coro_pool *pool) {
  proc_pool *p = (proc_pool *)pool;
  pthread_mutex_lock(&p->base.mu);
  close_locked(p);
  unlock_flush(p);
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
    watches_release_pool(coro__tls_loop, (proc_pool *)pool);
}

static void pp_free(coro_pool *pool) {
  proc_pool *p = (proc_pool *)pool;
  pthread_mutex_lock(&p->base.mu);
  close_locked(p);
  p->freeing = 1; /* the pool thread kills what still runs */
  unlock_flush(p);
  pthread_join(p->thread, NULL);
  /* Out of the registry only now: until every outcome is posted, a loop
   * that ends must still find this pool's jobs. */
  pthread_mutex_lock(&reg_mu);
  coro__queue_remove(&p->all);
  pthread_mutex_unlock(&reg_mu);
  close(p->evfd);
  pool_unref(p);
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
 * before the inbox closes. Every job this loop submitted to any process pool and whose outcome has
 * not been posted yet is cancelled: a queued one never runs, a running one
 * has its worker killed (and replaced); their futures end -ECANCELED.
 * Then the loop's default process pool, if it made one, is freed. */
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
      job_post(j);
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
      job_free(j);
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
  watches_close_all(loop);
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
