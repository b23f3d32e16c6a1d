/* SPDX-License-Identifier: MIT */
/* coro_wait_fd: suspend until a descriptor is readable and/or writable.
 *
 * Every call first asks poll(2) once: a descriptor that is ready already
 * costs a few system calls (poll, fstat, fcntl) and no suspension. Either
 * way the descriptor is non-blocking afterwards.
 *
 * libuv allows one poll handle per descriptor and loop, and several tasks
 * may wait on one descriptor (for the same events or different ones). So
 * each loop keeps a table fd -> poll record; a record holds one uv_poll_t
 * watching the union of its waiters' events and the FIFO of waiters. A
 * wake-up hands each waiter the part of its mask that is ready; a waiter
 * that leaves (woken, timed out, cancelled) narrows the watched events,
 * and the last one stops the handle and closes it.
 *
 * Closing a handle is asynchronous: the record leaves the table at once
 * (its handle stopped, so the descriptor is off epoll) and is freed in the
 * close callback; a new wait on the same descriptor meanwhile gets a new
 * record and handle.
 *
 * The table is per loop. Core has no per-loop slot for this layer yet, so
 * it lives in a thread-local variable tagged with its loop and the loop's
 * generation (a later loop at the same address is a different loop), and
 * is freed when its last record is. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <uv.h>

#include "core/task.h"

#define WF_BUCKETS 64 /* a power of two */

typedef struct wf_table wf_table;

typedef struct wf_poll {
  uv_poll_t h;
  int fd;
  int watching;          /* UV_* events the handle is started with, 0 = stopped */
  coro__queue waiters;   /* wf_waiter.node, FIFO */
  wf_table *tab;
  struct wf_poll *next;  /* bucket chain; unlinked once closing */
} wf_poll;

struct wf_table {
  coro_loop *loop;
  uint64_t gen;
  size_t nrec;           /* records allocated, closing ones included */
  wf_poll *bucket[WF_BUCKETS];
};

typedef struct wf_waiter {
  coro__queue node;      /* in wf_poll.waiters while waiting */
  coro__task *task;
  wf_poll *rec;
  int events;            /* CORO_READABLE | CORO_WRITABLE asked for */
  coro__timer timer;
} wf_waiter;

static _Thread_local wf_table *wf_tls;

static wf_table *table_get(coro_loop *loop, int create) {
  wf_table *tab = wf_tls;
  if (tab != NULL && (tab->loop != loop || tab->gen != loop->gen)) {
    /* Left behind by an earlier loop on this thread, which ended with a
     * record still in use (a task abandoned at shutdown): its handles
     * belonged to that loop; nothing of it can be touched now. */
    tab = wf_tls = NULL;
  }
  if (tab == NULL && create) {
    tab = coro__calloc(1, sizeof(*tab));
    if (tab == NULL) return NULL;
    tab->loop = loop;
    tab->gen = loop->gen;
    wf_tls = tab;
  }
  return tab;
}

static wf_poll **bucket_of(wf_table *tab, int fd) {
  return &tab->bucket[(unsigned)fd & (WF_BUCKETS - 1)];
}

static wf_poll *table_find(wf_table *tab, int fd) {
  for (wf_poll *p = *bucket_of(tab, fd); p != NULL; p = p->next)
    if (p->fd == fd) return p;
  return NULL;
}

static void table_unlink(wf_poll *rec) {
  wf_poll **pp = bucket_of(rec->tab, rec->fd);
  while (*pp != NULL && *pp != rec) pp = &(*pp)->next;
  if (*pp == rec) *pp = rec->next;
  rec->next = NULL;
}

static void rec_close_cb(uv_handle_t *h) {
  wf_poll *rec = coro__container_of(h, wf_poll, h);
  wf_table *tab = rec->tab;
  coro__free(rec);
  if (--tab->nrec == 0) {
    if (wf_tls == tab) wf_tls = NULL;
    coro__free(tab);
  }
}

static void poll_cb(uv_poll_t *h, int status, int events);

/* Watch what the waiters of rec ask for; with none left, stop the handle
 * and close the record. Returns 0, or the error of uv_poll_start, with
 * which every waiter was then woken (and unlinked) and rec closed. */
static int rec_update(wf_poll *rec) {
  int want = 0;
  coro__queue *q;
  for (q = rec->waiters.next; q != &rec->waiters; q = q->next) {
    wf_waiter *w = coro__container_of(q, wf_waiter, node);
    if (w->events & CORO_READABLE) want |= UV_READABLE | UV_DISCONNECT;
    if (w->events & CORO_WRITABLE) want |= UV_WRITABLE;
  }
  if (want == 0) {
    table_unlink(rec);
    rec->watching = 0;
    uv_poll_stop(&rec->h); /* off epoll now, whatever the close takes */
    uv_close((uv_handle_t *)&rec->h, rec_close_cb);
    return 0;
  }
  if (want == rec->watching) return 0;
  int r = uv_poll_start(&rec->h, want, poll_cb);
  if (r == 0) {
    rec->watching = want;
    return 0;
  }
  /* Cannot happen with a valid handle and mask; do not leave the waiters
   * hanging if it does. */
  while ((q = coro__queue_pop(&rec->waiters)) != NULL) {
    wf_waiter *w = coro__container_of(q, wf_waiter, node);
    coro__timer_stop(w->task->fut.loop, &w->timer);
    coro__task_wake(w->task, r);
  }
  (void)rec_update(rec);
  return r;
}

static void poll_cb(uv_poll_t *h, int status, int events) {
  wf_poll *rec = coro__container_of(h, wf_poll, h);
  int ready = 0;
  if (status < 0) {
    /* An error condition on the descriptor (libuv stopped the handle):
     * a read or a write would not block, it would report the error. */
    rec->watching = 0;
    ready = CORO_READABLE | CORO_WRITABLE;
  } else {
    if (events & (UV_READABLE | UV_DISCONNECT)) ready |= CORO_READABLE;
    if (events & UV_WRITABLE) ready |= CORO_WRITABLE;
  }
  coro__queue *q = rec->waiters.next;
  while (q != &rec->waiters) {
    wf_waiter *w = coro__container_of(q, wf_waiter, node);
    q = q->next;
    int got = w->events & ready;
    if (got == 0) continue;
    coro__queue_remove(&w->node);
    coro__timer_stop(w->task->fut.loop, &w->timer);
    coro__task_wake(w->task, got);
  }
  (void)rec_update(rec);
}

static void wf_timer_cb(coro__timer *tm) {
  wf_waiter *w = coro__container_of(tm, wf_waiter, timer);
  if (!coro__queue_linked(&w->node)) return;
  coro__queue_remove(&w->node);
  coro__task_wake(w->task, CORO_ETIMEDOUT);
  (void)rec_update(w->rec);
}

static int wf_cancel(coro__task *t, void *arg) {
  wf_waiter *w = arg;
  if (!coro__queue_linked(&w->node)) return CORO__CANCEL_LATER; /* woken */
  coro__queue_remove(&w->node);
  coro__timer_stop(t->fut.loop, &w->timer);
  (void)rec_update(w->rec);
  return CORO__CANCEL_ABORT;
}

/* Look once, without a handle: the ready part of events, 0 if none is
 * ready, or an error. Every call starts here, so a descriptor that is
 * ready already costs one poll(2) and no loop iteration. Regular files
 * and directories, which poll(2) calls always ready, are refused as epoll
 * refuses them, so that the answer does not depend on the timeout. */
static int check_once(int fd, int events) {
  struct pollfd p = {fd, 0, 0};
  if (events & CORO_READABLE) p.events |= POLLIN;
  if (events & CORO_WRITABLE) p.events |= POLLOUT;
  int n;
  do n = poll(&p, 1, 0);
  while (n < 0 && errno == EINTR);
  if (n < 0) return -errno;
  if (n == 0) return 0;
  if (p.revents & POLLNVAL) return UV_EBADF;
  int ready = 0;
  if (p.revents & (POLLERR | POLLHUP)) ready = CORO_READABLE | CORO_WRITABLE;
  if (p.revents & POLLIN) ready |= CORO_READABLE;
  if (p.revents & POLLOUT) ready |= CORO_WRITABLE;
  ready &= events;
  if (ready == 0) return 0;
  struct stat st;
  if (fstat(fd, &st) != 0) return -errno;
  if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)) return UV_EPERM;
  return ready;
}

/* What libuv's poll handle does to a descriptor it watches, done also for
 * a wait answered without one (ready already, or timeout 0), so that any
 * first wait leaves fd non-blocking: a caller that reads or writes until
 * EAGAIN after a wait must never block the loop. */
static void make_nonblocking(int fd) {
  int fl = fcntl(fd, F_GETFL);
  if (fl >= 0 && (fl & O_NONBLOCK) == 0)
    (void)fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

int coro_wait_fd(int fd, int events, int64_t timeout_ms) {
  if (events == 0 || (events & ~(CORO_READABLE | CORO_WRITABLE)) != 0 ||
      timeout_ms < CORO_FOREVER)
    return CORO_EINVAL;
  coro__task *t = coro__task_for_wait();
  if (t == NULL) return CORO_EPERM;
  if (fd < 0) return UV_EBADF;
  int r = check_once(fd, events);
  if (r > 0 || (r == 0 && timeout_ms == 0)) make_nonblocking(fd);
  if (r != 0) return r;
  if (timeout_ms == 0) return CORO_ETIMEDOUT;
  coro_loop *loop = t->fut.loop;

  wf_table *tab = table_get(loop, 1);
  if (tab == NULL) return CORO_ENOMEM;
  wf_poll *rec = table_find(tab, fd);
  int fresh = 0;
  if (rec == NULL) {
    rec = coro__calloc(1, sizeof(*rec));
    if (rec == NULL) {
      if (tab->nrec == 0) {
        wf_tls = NULL;
        coro__free(tab);
      }
      return CORO_ENOMEM;
    }
    r = uv_poll_init(loop->uv, &rec->h, fd);
    if (r != 0) {
      coro__free(rec);
      if (tab->nrec == 0) {
        wf_tls = NULL;
        coro__free(tab);
      }
      return r;
    }
    rec->fd = fd;
    rec->tab = tab;
    coro__queue_init(&rec->waiters);
    rec->next = *bucket_of(tab, fd);
    *bucket_of(tab, fd) = rec;
    tab->nrec++;
    fresh = 1;
  }

  wf_waiter w;
  coro__queue_init(&w.node);
  w.task = t;
  w.rec = rec;
  w.events = events;
  coro__timer_init(&w.timer, wf_timer_cb);
  if (timeout_ms > 0) {
    r = coro__timer_start(loop, &w.timer, (uint64_t)timeout_ms);
    if (r != 0) {
      if (fresh) (void)rec_update(rec); /* no waiters: closes it */
      return r;
    }
  }
  coro__queue_push(&rec->waiters, &w.node);
  r = rec_update(rec);
  if (r != 0) { /* we were unlinked with the others */
    coro__timer_stop(loop, &w.timer);
    return r;
  }
  r = coro__task_suspend(t, wf_cancel, &w, "fd");
  coro__timer_stop(loop, &w.timer);
  if (coro__queue_linked(&w.node)) { /* cannot happen: every wake unlinks */
    coro__queue_remove(&w.node);
    (void)rec_update(w.rec);
  }
  return r;
}
