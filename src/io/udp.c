/* SPDX-License-Identifier: MIT */
/* UDP sockets on uv_udp_t.
 *
 * Receiving: one task at a time. A datagram already in the kernel is read
 * at once (recvfrom, no suspension). Otherwise libuv receives only while
 * that task waits, straight into the task's buffer (the alloc callback
 * hands it out), and stops again as soon as one datagram is delivered or
 * the task stops waiting: datagrams nobody waits for stay in the kernel,
 * so memory is bounded whatever the peers send, and a cancelled receive
 * loses nothing.
 *
 * Sending: uv_udp_try_send first (no allocation, no suspension). When the
 * kernel cannot take the datagram now, it is copied into a request and
 * queued with uv_udp_send, and the task waits for the outcome. The copy is
 * what makes cancellation safe: the caller's buffer is never referenced
 * after the call returns, and a task that stops waiting (cancelled, or
 * the socket closed) just detaches from its request, whose callback frees
 * it later. A datagram whose send was cancelled while queued may still go
 * out: a datagram is sent whole or not at all, never in part.
 *
 * The struct is freed in the handle's close callback, or later if a task
 * is still inside coro_udp_connect (its name lookup) at that time. */
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <uv.h>

#include "core/task.h"
#include "io/addr.h"
#include "io/io-internal.h"

typedef struct udp_rx {
  coro__task *task;
  char *buf;
  size_t cap;       /* what the caller asked for */
  size_t room;      /* what libuv is given: cap, or 1 (scratch) for cap 0 */
  struct sockaddr_storage *from;
  int *truncated;
  int done;         /* woken by a datagram, an error or the close */
  char scratch[1];
} udp_rx;

typedef struct udp_tx udp_tx;

struct coro_udp {
  uv_udp_t h;
  coro_loop *loop;
  coro__io_obj obj;    /* listed on the loop while open */
  udp_rx *rx;          /* the waiting receiver, NULL if none */
  coro__queue sends;   /* udp_tx.node: requests libuv still holds */
  int connected;
  int closed;          /* coro_udp_close was called */
  int handle_closed;   /* its close callback ran */
  int refs;            /* tasks inside coro_udp_connect */
};

/* What a waiting sender keeps on its stack. */
typedef struct udp_txwait {
  coro__task *task;
  udp_tx *req;
} udp_txwait;

struct udp_tx {
  uv_udp_send_t req;
  coro__queue node;    /* in coro_udp.sends until the callback */
  udp_txwait *w;       /* NULL once nobody waits */
  /* the datagram's bytes follow */
};

/* Tests set this to take the queued path of coro_udp_send every time
 * (on loopback the kernel takes every datagram at once). */
_Thread_local int coro__udp_queue_sends;

static int udp_check(const coro_udp *u) {
  if (u == NULL) return CORO_EINVAL;
  if (u->loop != coro__tls_loop) return CORO_EPERM;
  if (u->closed) return CORO_EPIPE;
  return 0;
}

static void udp_free_if_done(coro_udp *u) {
  if (u->handle_closed && u->refs == 0) {
    coro__io_untrack(&u->obj);
    coro__free(u);
  }
}

static void udp_end(coro__io_obj *o) {
  coro_udp_close(coro__container_of(o, coro_udp, obj));
}

static void udp_close_cb(uv_handle_t *h) {
  coro_udp *u = coro__container_of(h, coro_udp, h);
  u->handle_closed = 1;
  udp_free_if_done(u);
}

/* Bind one address: a socket of our own (so that SO_REUSEPORT is set
 * before bind), handed to libuv after. Returns the descriptor or < 0. */
static int bind_one(const struct addrinfo *ai, const coro_listen_opts *opts) {
  int fd = socket(ai->ai_family, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return -errno;
  int one = 1;
  if (opts != NULL && opts->reuseport &&
      setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0)
    goto fail;
  if (ai->ai_family == AF_INET6 && opts != NULL && opts->ipv6only &&
      setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) != 0)
    goto fail;
  if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0) goto fail;
  return fd;
fail:;
  int err = -errno;
  close(fd);
  return err;
}

int coro_udp_bind(coro_udp **out, const char *host, const char *port,
                  const coro_listen_opts *opts) {
  if (out == NULL) return CORO_EINVAL;
  *out = NULL;
  coro_loop *loop = coro__tls_loop;
  if (loop == NULL) return CORO_EPERM;
  int num;
  if (coro__port_parse(port, &num) < 0) return CORO_EINVAL;
  struct addrinfo *res = NULL;
  int r = coro__resolve(&res, host, port, SOCK_DGRAM, 1);
  if (r != 0) return r;
  coro_udp *u = coro__calloc(1, sizeof(*u));
  if (u == NULL) {
    coro__resolve_free(res);
    return CORO_ENOMEM;
  }
  int fd = -1;
  r = UV_EADDRNOTAVAIL;
  for (const struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
    fd = bind_one(ai, opts);
    if (fd >= 0) break;
    r = fd;
  }
  coro__resolve_free(res);
  if (fd < 0) {
    coro__free(u);
    return r;
  }
  r = uv_udp_init(loop->uv, &u->h);
  if (r != 0) {
    close(fd);
    coro__free(u);
    return r;
  }
  r = uv_udp_open(&u->h, fd);
  if (r != 0) {
    /* The handle has no socket: closing it leaves fd to us. */
    close(fd);
    u->closed = 1;
    uv_close((uv_handle_t *)&u->h, udp_close_cb);
    return r;
  }
  /* uv_udp_open turns SO_REUSEADDR on; for UDP on Linux that would let a
   * later socket that sets it too share our port. Binding is done, so the
   * option did nothing for us: turn it off again. */
  int zero = 0;
  (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &zero, sizeof(zero));
  u->loop = loop;
  coro__queue_init(&u->sends);
  coro__io_track(loop, &u->obj, udp_end);
  *out = u;
  return 0;
}

int coro_udp_connect(coro_udp *u, const char *host, const char *port) {
  int r = udp_check(u);
  if (r != 0) return r;
  if (coro__port_parse(port, NULL) < 0) return CORO_EINVAL;
  struct sockaddr_storage self;
  int slen = (int)sizeof(self);
  r = uv_udp_getsockname(&u->h, (struct sockaddr *)&self, &slen);
  if (r != 0) return r;
  struct addrinfo *res = NULL;
  u->refs++; /* the lookup may suspend; u must outlive a close meanwhile */
  r = coro__resolve(&res, host, port, SOCK_DGRAM, 0);
  u->refs--;
  if (u->closed) {
    coro__resolve_free(res);
    udp_free_if_done(u);
    return CORO_EPIPE;
  }
  if (r != 0) return r;
  r = UV_EAFNOSUPPORT; /* no address of the socket's family */
  for (const struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
    if (ai->ai_family != self.ss_family) continue;
    if (!u->connected) {
      r = uv_udp_connect(&u->h, ai->ai_addr);
    } else {
      /* Already connected: libuv would refuse (UV_EISCONN), and
       * disconnecting first would lose the local port of a socket bound
       * to port 0 (Linux unbinds it). The kernel takes a new peer
       * directly; libuv's view, connected, stays true. */
      uv_os_fd_t fd;
      r = uv_fileno((uv_handle_t *)&u->h, &fd);
      if (r == 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) r = -errno;
    }
    if (r == 0) {
      u->connected = 1;
      break;
    }
  }
  coro__resolve_free(res);
  return r;
}

/* ---- receiving ------------------------------------------------------------------ */

/* Hand a datagram of n bytes from addr to the receiver: its address and
 * whether it was cut. Returns the length to report. */
static ssize_t rx_finish(udp_rx *w, const struct sockaddr *addr, ssize_t n,
                         int partial) {
  if (addr != NULL && w->from != NULL) {
    memset(w->from, 0, sizeof(*w->from));
    int len = coro__sockaddr_len(addr);
    if (len > (int)sizeof(*w->from)) len = (int)sizeof(*w->from);
    memcpy(w->from, addr, (size_t)len);
  }
  if ((size_t)n > w->cap) {
    n = (ssize_t)w->cap;
    partial = 1;
  }
  if (w->truncated != NULL) *w->truncated = partial;
  return n;
}

static void rx_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  coro_udp *u = coro__container_of(h, coro_udp, h);
  udp_rx *w = u->rx;
  if (w == NULL) { /* cannot happen: receiving stops with the waiter */
    buf->base = NULL;
    buf->len = 0;
    return;
  }
  buf->base = w->cap > 0 ? w->buf : w->scratch;
  buf->len = w->room;
}

static void rx_recv_cb(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf,
                       const struct sockaddr *addr, unsigned flags) {
  (void)buf;
  coro_udp *u = coro__container_of(h, coro_udp, h);
  udp_rx *w = u->rx;
  if (w == NULL) return;
  if (nread == 0 && addr == NULL) return; /* nothing after all: keep waiting */
  if (nread == UV_ENOBUFS) return;        /* not from us */
  u->rx = NULL;
  w->done = 1;
  uv_udp_recv_stop(h);
  ssize_t n = nread;
  if (n >= 0) n = rx_finish(w, addr, n, (flags & UV_UDP_PARTIAL) != 0);
  coro__task_wake(w->task, (int)n);
}

/* The receiver's hook needs the socket; it is kept next to the waiter. */
typedef struct udp_rxwait {
  udp_rx rx;
  coro_udp *u;
} udp_rxwait;

static int rxwait_cancel(coro__task *t, void *arg) {
  udp_rxwait *rw = arg;
  coro_udp *u = rw->u;
  (void)t;
  /* Woken already (and u may be gone since): that outcome stands. */
  if (rw->rx.done) return CORO__CANCEL_LATER;
  u->rx = NULL;
  uv_udp_recv_stop(&u->h);
  return CORO__CANCEL_ABORT;
}

ssize_t coro_udp_recv(coro_udp *u, void *buf, size_t cap,
                      struct sockaddr_storage *from, int *truncated) {
  if (u == NULL || (buf == NULL && cap > 0)) return CORO_EINVAL;
  if (cap > (size_t)INT32_MAX) cap = (size_t)INT32_MAX; /* fits the status */
  int r = udp_check(u);
  if (r != 0) return r;
  coro__task *t = coro__task_for_wait();
  if (t == NULL) return CORO_EPERM;
  if (u->rx != NULL) return CORO_EBUSY;
  if (truncated != NULL) *truncated = 0;

  udp_rxwait rw;
  memset(&rw, 0, sizeof(rw));
  rw.u = u;
  rw.rx.task = t;
  rw.rx.buf = buf;
  rw.rx.cap = cap;
  rw.rx.room = cap > 0 ? cap : sizeof(rw.rx.scratch);
  rw.rx.from = from;
  rw.rx.truncated = truncated;

  /* A datagram already there: no suspension. */
  uv_os_fd_t fd;
  if (uv_fileno((uv_handle_t *)&u->h, &fd) == 0) {
    struct sockaddr_storage peer;
    struct iovec iov = {cap > 0 ? buf : rw.rx.scratch, rw.rx.room};
    struct msghdr mh;
    memset(&mh, 0, sizeof(mh));
    mh.msg_name = &peer;
    mh.msg_namelen = sizeof(peer);
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    ssize_t n;
    do n = recvmsg(fd, &mh, MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    if (n >= 0)
      return rx_finish(&rw.rx,
                       mh.msg_namelen > 0 ? (struct sockaddr *)&peer : NULL, n,
                       (mh.msg_flags & MSG_TRUNC) != 0);
    if (errno != EAGAIN && errno != EWOULDBLOCK) return -errno;
  }

  u->rx = &rw.rx;
  r = uv_udp_recv_start(&u->h, rx_alloc_cb, rx_recv_cb);
  if (r != 0) {
    u->rx = NULL;
    return r;
  }
  return coro__task_suspend(t, rxwait_cancel, &rw, "udp receive");
}

/* ---- sending -------------------------------------------------------------------- */

static void tx_cb(uv_udp_send_t *req, int status) {
  udp_tx *tx = coro__container_of(req, udp_tx, req);
  coro__queue_remove(&tx->node);
  if (tx->w != NULL) {
    tx->w->req = NULL;
    coro__task_wake(tx->w->task, status);
  }
  coro__free(tx);
}

static int tx_cancel(coro__task *t, void *arg) {
  (void)t;
  udp_txwait *w = arg;
  if (w->req == NULL) return CORO__CANCEL_LATER; /* done: its status stands */
  w->req->w = NULL; /* the callback frees the request */
  w->req = NULL;
  return CORO__CANCEL_ABORT;
}

int coro_udp_send(coro_udp *u, const void *buf, size_t len,
                  const struct sockaddr *to) {
  if (u == NULL || (buf == NULL && len > 0)) return CORO_EINVAL;
  if (to != NULL && !coro__sockaddr_is_ip(to)) return CORO_EINVAL;
  int r = udp_check(u);
  if (r != 0) return r;
  coro__task *t = coro__task_for_wait();
  if (t == NULL) return CORO_EPERM;
  if (len > UINT32_MAX) return UV_EMSGSIZE;
  static char empty[1];
  uv_buf_t b = uv_buf_init(len > 0 ? (char *)buf : empty, (unsigned)len);
  if (CORO__LIKELY(!coro__udp_queue_sends)) {
    r = uv_udp_try_send(&u->h, &b, 1, to);
    if (r >= 0) return 0;
    if (r != UV_EAGAIN) return r;
  }

  /* The kernel cannot take it now (or sends are queued before it). */
  udp_tx *tx = coro__malloc(sizeof(*tx) + len);
  if (tx == NULL) return CORO_ENOMEM;
  char *copy = (char *)(tx + 1);
  if (len > 0) memcpy(copy, buf, len);
  b = uv_buf_init(len > 0 ? copy : empty, (unsigned)len);
  udp_txwait w = {t, tx};
  tx->w = &w;
  r = uv_udp_send(&tx->req, &u->h, &b, 1, to, tx_cb);
  if (r != 0) {
    coro__free(tx);
    return r;
  }
  coro__queue_push(&u->sends, &tx->node);
  return coro__task_suspend(t, tx_cancel, &w, "udp send");
}

int coro_udp_sockname(const coro_udp *u, struct sockaddr_storage *addr,
                      int *len) {
  if (u == NULL || addr == NULL || len == NULL || *len < 0) return CORO_EINVAL;
  int r = udp_check(u);
  if (r != 0) return r;
  struct sockaddr_storage ss;
  int n = (int)sizeof(ss);
  r = uv_udp_getsockname(&u->h, (struct sockaddr *)&ss, &n);
  if (r != 0) return r;
  return coro__sockaddr_out(addr, len, (struct sockaddr *)&ss, n);
}

int coro_udp_close(coro_udp *u) {
  if (u == NULL) return 0;
  if (u->loop != coro__tls_loop) return CORO_EPERM;
  if (u->closed) return 0;
  u->closed = 1;
  coro__io_untrack(&u->obj);
  if (u->rx != NULL) {
    udp_rx *w = u->rx;
    u->rx = NULL;
    w->done = 1;
    uv_udp_recv_stop(&u->h);
    coro__task_wake(w->task, CORO_EPIPE);
  }
  /* libuv completes the queued sends with UV_ECANCELED when the handle
   * closes; their tasks learn -EPIPE now. */
  coro__queue *q;
  for (q = u->sends.next; q != &u->sends; q = q->next) {
    udp_tx *tx = coro__container_of(q, udp_tx, node);
    if (tx->w != NULL) {
      coro__task *t = tx->w->task;
      tx->w->req = NULL;
      tx->w = NULL;
      coro__task_wake(t, CORO_EPIPE);
    }
  }
  uv_close((uv_handle_t *)&u->h, udp_close_cb);
  return 0;
}
