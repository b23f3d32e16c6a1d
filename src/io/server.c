/* SPDX-License-Identifier: MIT */
/* Servers: a listening socket made here (not with uv_listen), watched with a
 * uv_poll_t, and accept4 called only from a task that waits in accept, so
 * that a connection nobody is ready for stays in the kernel's backlog
 * (a cancelled accept loses nothing) and running out of descriptors pauses
 * accepting instead of dropping connections or spinning.
 *
 * The poll is started when an accept finds the backlog empty and is left
 * on; when it fires with nobody waiting it is stopped (one wasted wake-up
 * at most), so a busy accept loop does not pay an epoll_ctl per
 * connection. The poll handle is referenced only while a task waits. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <unistd.h>

#include "io/addr.h"
#include "io/io-internal.h"

#define DEFAULT_BACKLOG 511
/* Pause after EMFILE / ENFILE before accepting again. */
#define EMFILE_RETRY_MS 100

struct coro_server {
  uv_poll_t poll;
  coro_loop *loop;
  coro__io_obj obj;      /* listed on the loop while open */
  int fd;
  int family;            /* AF_INET, AF_INET6 or AF_UNIX */
  uint8_t polling;       /* uv_poll_start is on */
  uint8_t paused;        /* out of descriptors: waiting for the retry timer */
  uint8_t reported;      /* this shortage was reported on stderr */
  uint8_t closed;
  uint8_t handle_closed;
  unsigned users;        /* tasks suspended in accept */
  coro__task *acceptor;
  coro__timer retry;
  char *path;            /* coro_unix_listen: the socket file we made */
  dev_t dev;
  ino_t ino;
};

static void server_free(coro_server *srv) {
  coro__io_untrack(&srv->obj);
  coro__free(srv->path);
  coro__free(srv);
}

static void server_close_cb(uv_handle_t *h) {
  coro_server *srv = h->data;
  srv->handle_closed = 1;
  if (srv->users == 0) server_free(srv);
}

static void poll_stop(coro_server *srv) {
  if (srv->polling) {
    uv_poll_stop(&srv->poll);
    srv->polling = 0;
  }
}

static void wake_acceptor(coro_server *srv, int status) {
  coro__task *t = srv->acceptor;
  srv->acceptor = NULL;
  coro__task_wake(t, status);
}

static void poll_cb(uv_poll_t *h, int status, int events) {
  (void)events;
  coro_server *srv = h->data;
  if (srv->acceptor == NULL) {
    poll_stop(srv); /* nobody waits: leave connections in the backlog */
    return;
  }
  wake_acceptor(srv, status < 0 ? status : 0);
}

static void retry_cb(coro__timer *tm) {
  coro_server *srv = coro__container_of(tm, coro_server, retry);
  srv->paused = 0;
  if (srv->acceptor != NULL) wake_acceptor(srv, 0);
}

static int accept_cancel(coro__task *t, void *arg) {
  coro_server *srv = arg;
  if (srv->acceptor == t) srv->acceptor = NULL;
  /* A wake-up only says "try accept4 again": nothing was taken. */
  return CORO__CANCEL_ABORT;
}

static int server_task(const coro_server *srv, coro__task **out) {
  coro__task *t = coro__task_for_wait();
  if (t == NULL || t->fut.loop != srv->loop) return CORO_EPERM;
  *out = t;
  return 0;
}

/* Suspend t until the socket is readable or the retry timer fires. On
 * return with *gone set, srv may be freed. */
static int accept_suspend(coro_server *srv, coro__task *t, int *gone) {
  srv->acceptor = t;
  if (srv->users++ == 0) uv_ref((uv_handle_t *)&srv->poll);
  int r = coro__task_suspend(t, accept_cancel, srv, "accept");
  int closed = srv->closed;
  if (--srv->users == 0) {
    if (closed) {
      if (srv->handle_closed) server_free(srv);
    } else {
      uv_unref((uv_handle_t *)&srv->poll);
    }
  }
  if (!closed && srv->acceptor == t) srv->acceptor = NULL;
  *gone = closed;
  return r;
}

/* Accept one connection as a stream. */
static int server_accept(coro_server *srv, coro__task *t, coro_stream **conn) {
  *conn = NULL;
  for (;;) {
    if (srv->closed) return CORO_EPIPE;
    int gone = 0, r;
    if (srv->paused) {
      r = accept_suspend(srv, t, &gone);
      if (gone) return CORO_EPIPE;
      if (r != 0) return r;
      continue;
    }
    int fd = accept4(srv->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      srv->reported = 0;
      r = coro__stream_from_fd(srv->loop, fd,
                               srv->family == AF_UNIX ? CORO__STREAM_PIPE
                                                      : CORO__STREAM_TCP,
                               conn);
      if (r != 0) close(fd);
      return r;
    }
    int e = errno;
    switch (e) {
    case EAGAIN:
#if EWOULDBLOCK != EAGAIN
    case EWOULDBLOCK:
#endif
      srv->reported = 0;
      if (!srv->polling) {
        r = uv_poll_start(&srv->poll, UV_READABLE, poll_cb);
        if (r != 0) return r;
        srv->polling = 1;
      }
      r = accept_suspend(srv, t, &gone);
      if (gone) return CORO_EPIPE;
      if (r != 0) return r;
      continue;
    case EINTR:
    case ECONNABORTED:
    case EPROTO:
    case EPERM:
    case ENETDOWN:
    case ENOPROTOOPT:
    case EHOSTDOWN:
    case ENONET:
    case EHOSTUNREACH:
    case EOPNOTSUPP:
    case ENETUNREACH:
      continue; /* that connection failed; the next may not */
    case EMFILE:
    case ENFILE:
    case ENOBUFS:
    case ENOMEM:
      /* Out of descriptors or memory: stop watching the socket (it stays
       * readable, so watching would spin), leave the connection in the
       * backlog and try again later. */
      if (!srv->reported) {
        fprintf(stderr,
                "libcoro: accept on fd %d: %s; accepting paused, retried "
                "every %d ms\n",
                srv->fd, strerror(e), EMFILE_RETRY_MS);
        srv->reported = 1;
      }
      poll_stop(srv);
      r = coro__timer_start(srv->loop, &srv->retry, EMFILE_RETRY_MS);
      if (r != 0) return r;
      srv->paused = 1;
      continue;
    default:
      return -e;
    }
  }
}

int coro_server_accept(coro_server *srv, coro_stream **conn) {
  if (conn != NULL) *conn = NULL;
  if (srv == NULL || conn == NULL) return CORO_EINVAL;
  coro__task *t;
  int r = server_task(srv, &t);
  if (r != 0) return r;
  if (srv->closed) return CORO_EPIPE;
  if (srv->acceptor != NULL) return CORO_EBUSY;
  return server_accept(srv, t, conn);
}

int coro_server_close(coro_server *srv) {
  if (srv == NULL) return 0;
  if (coro__tls_loop == NULL || coro__tls_loop != srv->loop) return CORO_EPERM;
  if (srv->closed) return 0;
  srv->closed = 1;
  coro__io_untrack(&srv->obj);
  coro__timer_stop(srv->loop, &srv->retry);
  if (srv->acceptor != NULL) wake_acceptor(srv, CORO_EPIPE);
  /* uv_close stops the poll and takes fd out of epoll now; fd is ours. */
  uv_close((uv_handle_t *)&srv->poll, server_close_cb);
  close(srv->fd);
  srv->fd = -1;
  if (srv->path != NULL) {
    struct stat st;
    /* Remove the socket file only if it is still the one we made. */
    if (lstat(srv->path, &st) == 0 && st.st_dev == srv->dev &&
        st.st_ino == srv->ino)
      unlink(srv->path);
  }
  return 0;
}

/* ---- making the listening socket --------------------------------------------- */

static int listen_backlog(const coro_listen_opts *opts, int *backlog) {
  *backlog = DEFAULT_BACKLOG;
  if (opts == NULL) return 0;
  if (opts->backlog < 0) return CORO_EINVAL;
  if (opts->backlog > 0) *backlog = opts->backlog;
  return 0;
}

static int listen_fd(const struct sockaddr *sa, socklen_t salen,
                     const coro_listen_opts *opts, int backlog, int *out) {
  int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  int one = 1;
  if (sa->sa_family != AF_UNIX) {
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0)
      goto fail;
    if (opts != NULL && opts->reuseport &&
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0)
      goto fail;
  }
  if (sa->sa_family == AF_INET6) {
    int v6only = opts != NULL && opts->ipv6only ? 1 : 0;
    if (setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only)) != 0)
      goto fail;
  }
  if (bind(fd, sa, salen) != 0) goto fail;
  if (listen(fd, backlog) != 0) {
    int e = errno;
    /* bind made the socket file: a failed listen leaves nothing behind. */
    if (sa->sa_family == AF_UNIX)
      unlink(((const struct sockaddr_un *)sa)->sun_path);
    close(fd);
    return -e;
  }
  *out = fd;
  return 0;
fail:;
  int e = errno;
  close(fd);
  return -e;
}

static void server_end(coro__io_obj *o) {
  coro_server_close(coro__container_of(o, coro_server, obj));
}

static int server_make(coro_server **out, coro_loop *loop, int fd,
                       int family) {
  coro_server *srv = coro__calloc(1, sizeof(*srv));
  if (srv == NULL) return CORO_ENOMEM;
  srv->loop = loop;
  srv->fd = fd;
  srv->family = family;
  coro__timer_init(&srv->retry, retry_cb);
  int r = uv_poll_init_socket(loop->uv, &srv->poll, fd);
  if (r != 0) {
    coro__free(srv);
    return r;
  }
  srv->poll.data = srv;
  uv_unref((uv_handle_t *)&srv->poll);
  coro__io_track(loop, &srv->obj, server_end);
  *out = srv;
  return 0;
}

int coro_tcp_listen(coro_server **out, const char *host, const char *port,
                    const coro_listen_opts *opts) {
  if (out != NULL) *out = NULL;
  if (out == NULL) return CORO_EINVAL;
  int backlog;
  int r = listen_backlog(opts, &backlog);
  if (r != 0) return r;
  if (coro__port_parse(port, NULL) < 0) return CORO_EINVAL;
  coro__task *t = coro__task_current();
  if (t == NULL) return CORO_EPERM;
  struct addrinfo *res = NULL;
  r = coro__resolve(&res, host, port, SOCK_STREAM, 1);
  if (r != 0) return r;
  int fd = -1, family = AF_UNSPEC;
  r = UV_EAI_NONAME;
  /* Every interface with one socket: "::" first, which also takes IPv4
   * unless ipv6only is set; "0.0.0.0" where IPv6 cannot be bound. Other
   * hosts: the addresses in the order the resolver gave. */
  int wildcard = host == NULL || host[0] == '\0';
  for (int pass = wildcard ? 0 : 1; pass < 2 && family == AF_UNSPEC; pass++) {
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
      if (pass == 0 && ai->ai_family != AF_INET6) continue;
      if (pass == 1 && wildcard && ai->ai_family == AF_INET6) continue;
      r = listen_fd(ai->ai_addr, ai->ai_addrlen, opts, backlog, &fd);
      if (r == 0) {
        family = ai->ai_family;
        break;
      }
    }
  }
  coro__resolve_free(res);
  if (r != 0) return r;
  r = server_make(out, t->fut.loop, fd, family);
  if (r != 0) close(fd);
  return r;
}

/* Is there a server listening at the Unix socket path? */
static int unix_live(const struct sockaddr_un *sa, socklen_t len) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  int r = connect(fd, (const struct sockaddr *)sa, len);
  int live = r == 0 || errno == EAGAIN || errno == EINPROGRESS;
  close(fd);
  return live;
}

int coro_unix_listen(coro_server **out, const char *path,
                     const coro_listen_opts *opts) {
  if (out != NULL) *out = NULL;
  if (out == NULL || path == NULL || path[0] == '\0') return CORO_EINVAL;
  int backlog;
  int r = listen_backlog(opts, &backlog);
  if (r != 0) return r;
  struct sockaddr_un sa;
  size_t plen = strlen(path);
  if (plen >= sizeof(sa.sun_path)) return UV_ENAMETOOLONG;
  coro__task *t = coro__task_current();
  if (t == NULL) return CORO_EPERM;
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  memcpy(sa.sun_path, path, plen + 1);
  socklen_t salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen + 1);
  struct stat st;
  if (lstat(path, &st) == 0) {
    /* Only a socket nobody listens on is stale; anything else is not ours
     * to remove. */
    if (!S_ISSOCK(st.st_mode) || unix_live(&sa, salen)) return UV_EADDRINUSE;
    if (unlink(path) != 0 && errno != ENOENT) return -errno;
  }
  char *copy = coro__strdup(path);
  if (copy == NULL) return CORO_ENOMEM;
  int fd = -1; /* set by listen_fd on success; gcc -O2 cannot tell */
  r = listen_fd((const struct sockaddr *)&sa, salen, opts, backlog, &fd);
  if (r != 0) {
    coro__free(copy);
    return r;
  }
  if (lstat(path, &st) != 0) {
    r = -errno;
    close(fd);
    coro__free(copy);
    return r;
  }
  coro_server *srv;
  r = server_make(&srv, t->fut.loop, fd, AF_UNIX);
  if (r != 0) {
    close(fd);
    unlink(path);
    coro__free(copy);
    return r;
  }
  srv->path = copy;
  srv->dev = st.st_dev;
  srv->ino = st.st_ino;
  *out = srv;
  return 0;
}

int coro_server_port(const coro_server *srv) {
  if (srv == NULL || srv->family == AF_UNIX || srv->closed) return CORO_EINVAL;
  struct sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  if (getsockname(srv->fd, (struct sockaddr *)&ss, &len) != 0) return -errno;
  return coro__sockaddr_port((const struct sockaddr *)&ss);
}

/* ---- serve ------------------------------------------------------------------------ */

typedef struct serve_ctx {
  coro__queue conns;    /* coro_stream.serve_node of running connections */
  size_t n;
  coro__task *waiter;   /* serve, waiting for the last connection to end */
  coro_conn_fn fn;
  void *arg;
} serve_ctx;

static void *conn_main(void *arg) {
  coro_stream *s = arg;
  serve_ctx *c = s->serve_ctx;
  c->fn(s, c->arg);
  return NULL;
}

/* The connection task ended (or was cancelled before it started): close
 * its stream and let serve know. Runs inside the task's completion. */
static void conn_done(coro__waiter *w, coro_future *f) {
  coro_stream *s = coro__container_of(w, coro_stream, serve_w);
  serve_ctx *c = s->serve_ctx;
  coro__future_observed(f);
  coro__queue_remove(&s->serve_node);
  s->serve_fut = NULL;
  s->serve_ctx = NULL;
  coro__stream_release(s);
  coro_future_release(f);
  if (--c->n == 0 && c->waiter != NULL) {
    coro__task *t = c->waiter;
    c->waiter = NULL;
    coro__task_wake(t, 0);
  }
}

static int drain_cancel(coro__task *t, void *arg) {
  (void)t;
  serve_ctx *c = arg;
  /* Cancelled again while waiting for the connections: pass it on to them,
   * keep waiting (nothing may outlive serve), and keep the request. */
  for (coro__queue *q = c->conns.next; q != &c->conns; q = q->next) {
    coro_stream *s = coro__container_of(q, coro_stream, serve_node);
    coro_cancel(s->serve_fut);
  }
  return CORO__CANCEL_LATER;
}

int coro_server_serve(coro_server *srv, coro_conn_fn handler, void *arg) {
  if (srv == NULL || handler == NULL) return CORO_EINVAL;
  coro__task *t;
  int r = server_task(srv, &t);
  if (r != 0) return r;
  if (srv->closed) return CORO_EPIPE;
  if (srv->acceptor != NULL) return CORO_EBUSY;
  serve_ctx c;
  coro__queue_init(&c.conns);
  c.n = 0;
  c.waiter = NULL;
  c.fn = handler;
  c.arg = arg;
  for (;;) {
    coro_stream *s;
    r = server_accept(srv, t, &s);
    if (r == CORO_ENOMEM) {
      /* That connection was dropped. Let the loop run before the next
       * accept, so that memory that stays short cannot starve it. */
      if ((r = coro_yield()) != 0) break;
      continue;
    }
    if (r != 0) break;
    coro_future *f;
    s->serve_ctx = &c;
    s->held = 1;
    if (coro_spawn(&f, conn_main, s) != 0) {
      s->held = 0;
      coro_stream_close(s);
      continue;
    }
    s->serve_fut = f;
    s->serve_w.notify = conn_done;
    coro__future_add_waiter(f, &s->serve_w);
    coro__queue_push(&c.conns, &s->serve_node);
    c.n++;
  }
  /* srv may be gone now (closed while we waited). */
  for (coro__queue *q = c.conns.next; q != &c.conns; q = q->next) {
    coro_stream *s = coro__container_of(q, coro_stream, serve_node);
    coro_cancel(s->serve_fut);
  }
  while (c.n > 0) {
    c.waiter = t;
    coro__task_suspend(t, drain_cancel, &c, "server drain");
  }
  return r == CORO_EPIPE ? 0 : r;
}
