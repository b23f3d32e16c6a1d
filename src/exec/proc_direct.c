/* SPDX-License-Identifier: MIT */
/* Process pools: loops reading their own replies (the direct path).
 *
 * A submission that writes its job straight to an idle worker also reads
 * the reply itself: the loop polls (a duplicate of) the worker's socket
 * while the job runs, and the pool thread, which watches the worker's
 * pidfd for its death, stays asleep. One wake-up less per round trip. The
 * pool thread takes the socket back (w->reader = NULL) when the worker
 * dies; the loop hands it back for a large reply, which that thread reads
 * off the loop. One watch per (loop, worker process), kept for the next
 * job, closed when that process is gone or the loop ends. */
#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "exec/proc_parent.h"

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
  coro__proc_unref(e->p);
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
      coro__proc_consume_locked(p, w, buf, (size_t)r);
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
      wake |= coro__proc_assign_locked(p, w, next);
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
  coro__proc_unlock_flush(p);
  if (wake) coro__proc_kick(p);
  if (mine != NULL) coro__proc_job_msg_run(&mine->base.msg);
}

/* Under p->base.mu, on loop's thread: start reading w's reply from loop. 0, or
 * -1 if the pool thread must do it. */
int coro__proc_watch_start_locked(proc_pool *p, worker *w, coro_loop *loop) {
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
    if (e->fd < 0 || uv_poll_init(loop->uv, &e->h, e->fd) != 0) {
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
void coro__proc_watches_close_all(coro_loop *loop) {
  while (watches != NULL) {
    watch *e = watches;
    proc_pool *p = e->p;
    pthread_mutex_lock(&p->base.mu);
    int mine = e->w->gen == e->gen && e->w->reader == loop;
    if (mine) e->w->reader = NULL;
    pthread_mutex_unlock(&p->base.mu);
    if (mine) coro__proc_kick(p);
    uv_poll_stop(&e->h);
    watch_close(e);
  }
}

/* This thread is about to block (a waiting shutdown outside a task): hand
 * the replies it reads itself for p back to the pool thread, or they would
 * never be read. The watches stay, stopped, for later use. */
void coro__proc_watches_release(coro_loop *loop, proc_pool *p) {
  for (watch *e = watches; e != NULL; e = e->next) {
    if (e->p != p) continue;
    pthread_mutex_lock(&p->base.mu);
    int mine = e->w->gen == e->gen && e->w->reader == loop;
    if (mine) e->w->reader = NULL;
    pthread_mutex_unlock(&p->base.mu);
    if (mine) {
      uv_poll_stop(&e->h);
      coro__proc_kick(p);
    }
  }
}

