/* SPDX-License-Identifier: MIT */
/* Process pools: the pool thread. It spawns the workers (and replaces
 * those that die), reaps them by pid when their pidfd or socket says they
 * ended, settles the job of a dead worker with how it died, kills workers
 * past their job's time limit or their start limit, sends requests the
 * socket did not take at once, reads the replies no loop reads itself, and
 * hands queued jobs to idle workers. At shutdown it ends idle workers (end
 * of file on their socket) and says when the pool has drained; at free, it
 * kills what still runs and ends. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "exec/proc_parent.h"

extern char **environ;

#define START_LIMIT_NS (30ull * 1000000000ull) /* hello within 30 s */
#define START_FAILURES_MAX 3 /* in a row: the pool is broken */
#define RX_CHUNK 65536

/* ---- workers ---------------------------------------------------------------- */

void coro__proc_kill_locked(worker *w, int status) {
  if (w->pid <= 0 || w->reaping) return;
  if (w->kill_status == 0) w->kill_status = status;
  if (!w->killed) {
    w->killed = 1;
    kill(w->pid, SIGKILL);
  }
}

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

/* Under p->base.mu: give job j to idle worker w. Returns 1 if the pool thread
 * must hear of it (a partial write to finish, or an earlier deadline). */
int coro__proc_assign_locked(proc_pool *p, worker *w, job *j) {
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
  coro__proc_write_more_locked(w);
  if (!p->sleeping) return 0;
  if (j->req_off < j->req_len) return 1;
  return j->deadline_ns != 0 &&
         (p->sleep_until == 0 || j->deadline_ns < p->sleep_until);
}

worker *coro__proc_idle_worker_locked(proc_pool *p) {
  for (unsigned i = 0; i < p->size; i++)
    if (p->w[i].state == W_IDLE) return &p->w[i];
  return NULL;
}

static void dispatch_locked(proc_pool *p) {
  worker *w;
  while (p->nqueued > 0 && (w = coro__proc_idle_worker_locked(p)) != NULL) {
    job *j = coro__container_of(coro__queue_pop(&p->queue), job, link);
    p->nqueued--;
    coro__proc_assign_locked(p, w, j);
  }
}

void coro__proc_fail_queued_locked(proc_pool *p, int status) {
  coro__queue *q;
  while ((q = coro__queue_pop(&p->queue)) != NULL) {
    p->nqueued--;
    coro__proc_finish_locked(p, coro__container_of(q, job, link), status);
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
  coro__proc_unlock_flush(p);
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
    coro__proc_finish_locked(
        p, j, w->kill_status != 0 ? w->kill_status : death_status(ws));
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
      coro__proc_fail_queued_locked(p, CORO_EWORKER_START);
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
          coro__proc_on_message_locked(p, w);
        }
        continue;
      }
    } else {
      r = recv(w->fd, buf, RX_CHUNK, MSG_DONTWAIT);
      if (r > 0) {
        coro__proc_consume_locked(p, w, buf, (size_t)r);
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

void *coro__proc_thread_main(void *arg) {
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
      if (p->freeing && w->state != W_DEAD)
        coro__proc_kill_locked(w, CORO_ECANCELED);
      if (p->closed && w->state == W_IDLE) {
        /* Shut down and idle: end of file tells it to exit. */
        shutdown(w->fd, SHUT_WR);
        w->state = W_DEAD;
      }
      if (p->closed && w->state == W_STARTING) coro__proc_kill_locked(w, 0);
      uint64_t due = 0;
      if (w->state == W_BUSY && w->job->deadline_ns != 0)
        due = w->job->deadline_ns;
      else if (w->state == W_STARTING)
        due = w->spawned_ns + START_LIMIT_NS;
      if (due != 0 && !w->killed) {
        if (due <= now) {
          coro__proc_kill_locked(w, w->state == W_BUSY ? CORO_ETIMEDOUT : 0);
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
    coro__proc_unlock_flush(p);
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
        coro__proc_write_more_locked(w);
      if (pfd[k].revents & (POLLIN | POLLHUP | POLLERR))
        read_worker_locked(p, w, buf);
    }
    dispatch_locked(p);
  }
  coro__proc_unlock_flush(p);
  free(buf);
  free(pfd);
  free(pw);
  return NULL;
}
