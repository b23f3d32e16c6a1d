/* SPDX-License-Identifier: MIT */
/* Streams: TCP, Unix-domain sockets, pipes and terminals on libuv, with a
 * bounded read buffer and writes that try the kernel first.
 *
 * Read side: libuv reads into the stream's buffer while it holds less than
 * the limit (reading starts with the first read call) and stops at the
 * limit; a read takes from the buffer and suspends only when it is empty.
 * A waiting reader says how many bytes it needs (rneed), so read_exactly is
 * woken once, not per chunk.
 *
 * Write side: uv_try_write first; what the kernel did not take goes to
 * uv_write with the stream's own request, and the task waits for its
 * callback. A write abandoned by its task (cancelled, timed out) must not
 * leave libuv pointing at the caller's buffer: the request's unsent
 * remainder is cut to zero bytes in place (libuv then completes it without
 * reading anything), and a socket's write side is shut down so that the
 * peer sees the end of the stream instead of half a message. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "io/addr.h"
#include "io/io-internal.h"

#define DEFAULT_LIMIT ((size_t)64 * 1024)
/* The buffer starts small (a request, a line) and doubles, up to the
 * limit, when reads fill it: bulk transfers soon read 64 KiB a call. */
#define FIRST_BUF ((size_t)4 * 1024)
#define IOV_MAX_ARGS 1024
#define IOV_ON_STACK 16

/* ---- SIGPIPE ------------------------------------------------------------- */

static pthread_once_t sigpipe_once = PTHREAD_ONCE_INIT;

static void sigpipe_init(void) {
  struct sigaction old;
  if (sigaction(SIGPIPE, NULL, &old) != 0) return;
  if ((old.sa_flags & SA_SIGINFO) || old.sa_handler != SIG_DFL) return;
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = SIG_IGN;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGPIPE, &sa, NULL);
}

void coro__io_ignore_sigpipe(void) { pthread_once(&sigpipe_once, sigpipe_init); }

/* ---- life cycle -------------------------------------------------------------- */

static void rtimer_cb(coro__timer *tm);
static void wtimer_cb(coro__timer *tm);
static void otimer_cb(coro__timer *tm);

static void stream_end(coro__io_obj *o) {
  coro_stream_close(coro__container_of(o, coro_stream, obj));
}

static coro_stream *stream_alloc(coro_loop *loop, int kind) {
  coro_stream *s = coro__calloc(1, sizeof(*s));
  if (s == NULL) return NULL;
  s->loop = loop;
  s->kind = (uint8_t)kind;
  s->orig_fd = -1;
  s->limit = DEFAULT_LIMIT;
  s->read_ms = CORO_FOREVER;
  s->write_ms = CORO_FOREVER;
  coro__timer_init(&s->rtimer, rtimer_cb);
  coro__timer_init(&s->wtimer, wtimer_cb);
  coro__timer_init(&s->otimer, otimer_cb);
  coro__queue_init(&s->serve_node);
  coro__io_ignore_sigpipe();
  coro__io_track(loop, &s->obj, stream_end);
  return s;
}

static void stream_free(coro_stream *s) {
  coro__io_untrack(&s->obj);
  coro__free(s->buf);
  coro__free(s);
}

static void stream_maybe_free(coro_stream *s) {
  if (s->handle_closed && s->users == 0 && !s->held) stream_free(s);
}

static void stream_close_cb(uv_handle_t *h) {
  coro_stream *s = h->data;
  s->handle_closed = 1;
  stream_maybe_free(s);
}

void coro__stream_release(coro_stream *s) {
  coro_stream_close(s);
  s->held = 0;
  stream_maybe_free(s);
}

/* After the libuv handle was initialised: the handle's data, unref'd (a
 * stream keeps the loop alive only while a task waits on it). */
static void stream_handle_ready(coro_stream *s) {
  s->h.handle.data = s;
  s->wreq.data = s;
  s->creq.data = s;
  s->sreq.data = s;
  uv_unref(&s->h.handle);
}

/* Suspend t on s. Returns the wake status; *gone is set when the stream
 * was closed meanwhile: the caller must then touch nothing of s. */
static int stream_suspend(coro_stream *s, coro__task *t, coro__cancel_fn hook,
                          int *gone, const char *what) {
  if (s->users++ == 0 && !s->closed) uv_ref(&s->h.handle);
  int r = coro__task_suspend(t, hook, s, what);
  int closed = s->closed;
  if (--s->users == 0) {
    if (closed)
      stream_maybe_free(s);
    else
      uv_unref(&s->h.handle);
  }
  *gone = closed;
  return r;
}

/* The running task, if it may use s (a task of s's loop). */
static int stream_task(const coro_stream *s, coro__task **out) {
  coro__task *t = coro__task_for_wait();
  if (t == NULL || t->fut.loop != s->loop) return CORO_EPERM;
  *out = t;
  return 0;
}

static int stream_thread_ok(const coro_stream *s) {
  return coro__tls_loop != NULL && coro__tls_loop == s->loop;
}

int coro_stream_close(coro_stream *s) {
  if (s == NULL) return 0;
  if (!stream_thread_ok(s)) return CORO_EPERM;
  if (s->closed) return 0;
  s->closed = 1;
  coro__io_untrack(&s->obj);
  coro__timer_stop(s->loop, &s->rtimer);
  coro__timer_stop(s->loop, &s->wtimer);
  coro__timer_stop(s->loop, &s->otimer);
  if (s->reader != NULL) {
    coro__task_wake(s->reader, CORO_EPIPE);
    s->reader = NULL;
  }
  if (s->writer != NULL) {
    coro__task_wake(s->writer, CORO_EPIPE);
    s->writer = NULL;
  }
  if (s->other != NULL) {
    coro__task_wake(s->other, CORO_EPIPE);
    s->other = NULL;
  }
  /* Closing the handle closes its descriptor now and ends libuv's requests
   * (their callbacks see UV_ECANCELED) before stream_close_cb runs. */
  uv_close(&s->h.handle, stream_close_cb);
  if (s->orig_fd >= 0) {
    close(s->orig_fd);
    s->orig_fd = -1;
  }
  return 0;
}

/* Make a stream of kind on fd. */
int coro__stream_from_fd(coro_loop *loop, int fd, int kind,
                         coro_stream **out) {
  coro_stream *s = stream_alloc(loop, kind);
  if (s == NULL) return CORO_ENOMEM;
  int r;
  if (kind == CORO__STREAM_TCP) {
    r = uv_tcp_init(loop->uv, &s->h.tcp);
    if (r != 0) goto fail_free;
    stream_handle_ready(s);
    r = uv_tcp_open(&s->h.tcp, fd);
    s->is_socket = 1;
  } else if (kind == CORO__STREAM_PIPE) {
    r = uv_pipe_init(loop->uv, &s->h.pipe, 0);
    if (r != 0) goto fail_free;
    stream_handle_ready(s);
    r = uv_pipe_open(&s->h.pipe, fd);
    struct stat st;
    s->is_socket = fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
  } else {
    r = CORO_EINVAL;
    goto fail_free;
  }
  if (r != 0) {
    /* The handle has no descriptor: closing it leaves fd alone. */
    s->closed = 1;
    uv_close(&s->h.handle, stream_close_cb);
    return r;
  }
  *out = s;
  return 0;
fail_free:
  stream_free(s);
  return r;
}

int coro_stream_open_fd(coro_stream **out, int fd) {
  if (out != NULL) *out = NULL;
  if (out == NULL || fd < 0) return CORO_EINVAL;
  coro__task *t = coro__task_current();
  if (t == NULL) return CORO_EPERM;
  coro_loop *loop = t->fut.loop;
  if (fcntl(fd, F_GETFL) < 0) return -errno;
  uv_handle_type type = uv_guess_handle(fd);
  if (type == UV_TCP || type == UV_NAMED_PIPE) {
    struct stat st;
    if (fstat(fd, &st) != 0) return -errno;
    if (S_ISSOCK(st.st_mode)) {
      /* A listening socket is no stream. */
      int acc = 0;
      socklen_t alen = sizeof(acc);
      if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &alen) == 0 && acc)
        return CORO_EINVAL;
    }
    return coro__stream_from_fd(
        loop, fd, type == UV_TCP ? CORO__STREAM_TCP : CORO__STREAM_PIPE, out);
  }
  if (type != UV_TTY) return CORO_EINVAL;
  coro_stream *s = stream_alloc(loop, CORO__STREAM_TTY);
  if (s == NULL) return CORO_ENOMEM;
  int r = uv_tty_init(loop->uv, &s->h.tty, fd, 0);
  if (r != 0) {
    stream_free(s);
    return r;
  }
  stream_handle_ready(s);
  /* libuv may reopen a terminal to make it non-blocking without affecting
   * other processes; then it owns the new descriptor and fd stays open:
   * the stream closes fd too, as it promised. */
  uv_os_fd_t ufd;
  if (uv_fileno(&s->h.handle, &ufd) == 0 && ufd != fd) s->orig_fd = fd;
  *out = s;
  return 0;
}

/* ---- connect ------------------------------------------------------------------ */

static void otimer_cb(coro__timer *tm) {
  coro_stream *s = coro__container_of(tm, coro_stream, otimer);
  if (s->other == NULL) return;
  coro__task_wake(s->other, CORO_ETIMEDOUT);
  s->other = NULL;
}

static void connect_cb(uv_connect_t *req, int status) {
  coro_stream *s = req->data;
  if (s->other == NULL) return; /* abandoned: the stream is being closed */
  coro__timer_stop(s->loop, &s->otimer);
  coro__task_wake(s->other, status);
  s->other = NULL;
}

static int other_cancel(coro__task *t, void *arg) {
  coro_stream *s = arg;
  if (s->other == t) {
    s->other = NULL;
    coro__timer_stop(s->loop, &s->otimer);
  }
  return CORO__CANCEL_ABORT;
}

/* Wait for the connect request started on s; on failure close s. */
static int connect_wait(coro_stream *s, coro__task *t, int64_t timeout_ms,
                        coro_stream **out) {
  if (timeout_ms == 0) {
    coro_stream_close(s);
    return CORO_ETIMEDOUT;
  }
  if (timeout_ms > 0) {
    int r = coro__timer_start(s->loop, &s->otimer, (uint64_t)timeout_ms);
    if (r != 0) {
      coro_stream_close(s);
      return r;
    }
  }
  s->other = t;
  int gone;
  int r = stream_suspend(s, t, other_cancel, &gone, "stream connect");
  if (gone) return r != 0 ? r : CORO_EPIPE;
  coro__timer_stop(s->loop, &s->otimer);
  s->other = NULL;
  if (r != 0) {
    coro_stream_close(s);
    return r;
  }
  *out = s;
  return 0;
}

int coro_tcp_connect_addr(coro_stream **out, const struct sockaddr *addr,
                          int64_t timeout_ms) {
  if (out != NULL) *out = NULL;
  if (out == NULL || !coro__sockaddr_is_ip(addr) || timeout_ms < CORO_FOREVER ||
      coro__sockaddr_port(addr) == 0)
    return CORO_EINVAL;
  coro__task *t = coro__task_for_wait();
  if (t == NULL) return CORO_EPERM;
  coro_stream *s = stream_alloc(t->fut.loop, CORO__STREAM_TCP);
  if (s == NULL) return CORO_ENOMEM;
  int r = uv_tcp_init(t->fut.loop->uv, &s->h.tcp);
  if (r != 0) {
    stream_free(s);
    return r;
  }
  stream_handle_ready(s);
  s->is_socket = 1;
  r = uv_tcp_connect(&s->creq, &s->h.tcp, addr, connect_cb);
  if (r != 0) {
    coro_stream_close(s);
    return r;
  }
  return connect_wait(s, t, timeout_ms, out);
}

int coro_tcp_connect(coro_stream **out, const char *host, const char *port,
                     int64_t timeout_ms) {
  if (out != NULL) *out = NULL;
  if (out == NULL || host == NULL || timeout_ms < CORO_FOREVER)
    return CORO_EINVAL;
  int num = -1;
  if (coro__port_parse(port, &num) < 0 || num == 0) return CORO_EINVAL;
  coro__task *t = coro__task_for_wait();
  if (t == NULL) return CORO_EPERM;
  coro_timeout scope;
  int r;
  if (timeout_ms != CORO_FOREVER) {
    r = coro_timeout_enter(&scope, timeout_ms);
    if (r != 0) return r;
  }
  struct addrinfo *res = NULL;
  r = coro__resolve(&res, host, port, SOCK_STREAM, 0);
  if (r == 0) {
    r = UV_EAI_NONAME;
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
      r = coro_tcp_connect_addr(out, ai->ai_addr, CORO_FOREVER);
      if (r == 0 || r == CORO_ECANCELED) break;
    }
    coro__resolve_free(res);
  }
  if (timeout_ms != CORO_FOREVER) {
    r = coro_timeout_exit(&scope, r);
    if (r != 0 && *out != NULL) {
      /* Connected just as the scope fired. */
      coro_stream_close(*out);
      *out = NULL;
    }
  }
  return r;
}

int coro_unix_connect(coro_stream **out, const char *path,
                      int64_t timeout_ms) {
  if (out != NULL) *out = NULL;
  if (out == NULL || path == NULL || path[0] == '\0' ||
      timeout_ms < CORO_FOREVER)
    return CORO_EINVAL;
  if (strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
    return UV_ENAMETOOLONG;
  coro__task *t = coro__task_for_wait();
  if (t == NULL) return CORO_EPERM;
  coro_stream *s = stream_alloc(t->fut.loop, CORO__STREAM_PIPE);
  if (s == NULL) return CORO_ENOMEM;
  int r = uv_pipe_init(t->fut.loop->uv, &s->h.pipe, 0);
  if (r != 0) {
    stream_free(s);
    return r;
  }
  stream_handle_ready(s);
  s->is_socket = 1;
  uv_pipe_connect(&s->creq, &s->h.pipe, path, connect_cb);
  return connect_wait(s, t, timeout_ms, out);
}

/* ---- read side ------------------------------------------------------------------ */

static inline size_t buffered(const coro_stream *s) { return s->wpos - s->rpos; }

size_t coro__stream_buffered(const coro_stream *s) { return buffered(s); }
size_t coro__stream_bufsize(const coro_stream *s) { return s->cap; }

/* Read buffers of the first size are shared by the streams of this
 * thread's loop: a stream whose buffer a read has emptied gives it back
 * here and takes one again when data arrives, so an idle connection holds
 * no buffer, and a busy one gets back a warm one (LIFO). At most
 * BUF_CACHE_MAX are kept; the loop's end frees them (coro__stream_cache_free
 * from io.c). */
#define BUF_CACHE_MAX 64
static _Thread_local struct {
  char *buf[BUF_CACHE_MAX];
  unsigned n;
} buf_cache;

static char *buf_take(void) {
  if (buf_cache.n > 0) return buf_cache.buf[--buf_cache.n];
  return coro__malloc(FIRST_BUF);
}

static void buf_give_back(coro_stream *s) {
  if (buf_cache.n < BUF_CACHE_MAX)
    buf_cache.buf[buf_cache.n++] = s->buf;
  else
    coro__free(s->buf);
  s->buf = NULL;
  s->cap = 0;
}

void coro__stream_cache_free(void) {
  while (buf_cache.n > 0) coro__free(buf_cache.buf[--buf_cache.n]);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
  (void)suggested;
  coro_stream *s = h->data;
  size_t have = buffered(s);
  size_t room = s->limit > have ? s->limit - have : 0;
  b->base = NULL;
  b->len = 0;
  if (room == 0) return; /* not reached: reading stops at the limit */
  if (have == 0) s->rpos = s->wpos = 0;
  if (s->buf == NULL) {
    /* The first size, even for a smaller limit: reads stop at the limit. */
    s->buf = buf_take();
    if (s->buf == NULL) return;
    s->cap = FIRST_BUF;
  }
  size_t tail = s->cap - s->wpos;
  if (s->grow || (tail < room && tail < s->cap / 2)) {
    /* Move the data to the front, then grow if it still fills half or the
     * last read filled all it was offered (more is waiting). */
    if (s->rpos > 0) {
      memmove(s->buf, s->buf + s->rpos, have);
      s->rpos = 0;
      s->wpos = have;
    }
    if ((s->grow || have >= s->cap / 2) && s->cap < s->limit) {
      size_t cap = s->cap * 2;
      if (cap > s->limit) cap = s->limit;
      char *nb = coro__realloc(s->buf, cap);
      if (nb != NULL) {
        s->buf = nb;
        s->cap = cap;
      }
    }
    s->grow = 0;
    tail = s->cap - s->wpos;
  }
  if (tail == 0) return;
  b->base = s->buf + s->wpos;
  b->len = tail < room ? tail : room;
}

static void stop_reading(coro_stream *s) {
  if (s->reading) {
    uv_read_stop(&s->h.stream);
    s->reading = 0;
  }
}

static void wake_reader(coro_stream *s, int status) {
  coro__timer_stop(s->loop, &s->rtimer);
  coro__task_wake(s->reader, status);
  s->reader = NULL;
}

static void read_cb(uv_stream_t *h, ssize_t n, const uv_buf_t *b) {
  coro_stream *s = h->data;
  if (n > 0) {
    s->wpos += (size_t)n;
    if ((size_t)n == b->len && s->cap < s->limit) s->grow = 1;
    if (buffered(s) >= s->limit) stop_reading(s);
  } else if (n == 0) {
    return;
  } else if (n == UV_EOF) {
    s->eof = 1;
    stop_reading(s);
  } else if (n == UV_ENOBUFS) {
    /* From alloc_cb: no buffer could be allocated. That is no state of the
     * stream: the waiting reader gets -ENOMEM, and the next read starts
     * reading again, so the bytes in the kernel are not stranded. */
    stop_reading(s);
    if (s->reader != NULL) wake_reader(s, CORO_ENOMEM);
    return;
  } else {
    s->rerr = (int)n;
    stop_reading(s);
  }
  if (s->reader != NULL && (buffered(s) >= s->rneed || !s->reading))
    wake_reader(s, 0);
}

/* Keep libuv reading while the buffer is below its limit. */
static void ensure_reading(coro_stream *s) {
  if (s->reading || s->eof || s->rerr != 0 || !s->want_read) return;
  if (buffered(s) >= s->limit) return;
  int r = uv_read_start(&s->h.stream, alloc_cb, read_cb);
  if (r != 0)
    s->rerr = r;
  else
    s->reading = 1;
}

static void consume(coro_stream *s, void *dst, size_t n) {
  memcpy(dst, s->buf + s->rpos, n);
  s->rpos += n;
  if (s->rpos == s->wpos) {
    s->rpos = s->wpos = 0;
    if (s->cap == FIRST_BUF) buf_give_back(s); /* idle: hold no buffer */
  }
  if (!s->reading) ensure_reading(s);
}

static void rtimer_cb(coro__timer *tm) {
  coro_stream *s = coro__container_of(tm, coro_stream, rtimer);
  if (s->reader != NULL) wake_reader(s, CORO_ETIMEDOUT);
}

static int read_cancel(coro__task *t, void *arg) {
  coro_stream *s = arg;
  if (s->reader == t) {
    s->reader = NULL;
    coro__timer_stop(s->loop, &s->rtimer);
  }
  /* Even if data came first: it is still in the buffer, nothing is lost. */
  return CORO__CANCEL_ABORT;
}

/* Wait until need bytes are buffered, or end of stream, an error, the limit
 * or close. Returns 0 (look again) or the wait's error; *gone as
 * stream_suspend. */
static int read_wait(coro_stream *s, coro__task *t, size_t need, int *gone) {
  *gone = 0;
  ensure_reading(s);
  if (s->eof || s->rerr != 0) return 0;
  if (!s->reading) return -ENOBUFS; /* at the limit: callers check first */
  if (s->read_ms == 0) return CORO_ETIMEDOUT;
  if (s->read_ms > 0) {
    int r = coro__timer_start(s->loop, &s->rtimer, (uint64_t)s->read_ms);
    if (r != 0) return r;
  }
  s->rneed = need;
  s->reader = t;
  int r = stream_suspend(s, t, read_cancel, gone, "stream read");
  if (*gone) return r != 0 ? r : CORO_EPIPE;
  if (s->reader == t) {
    s->reader = NULL;
    coro__timer_stop(s->loop, &s->rtimer);
  }
  return r;
}

/* The checks every read makes. */
static int read_begin(coro_stream *s, coro__task **t) {
  int r = stream_task(s, t);
  if (r != 0) return r;
  if (s->closed) return CORO_EPIPE;
  if (s->reader != NULL) return CORO_EBUSY;
  s->want_read = 1;
  return 0;
}

ssize_t coro_stream_read(coro_stream *s, void *buf, size_t cap) {
  if (s == NULL || (buf == NULL && cap > 0)) return CORO_EINVAL;
  coro__task *t;
  int r = read_begin(s, &t);
  if (r != 0) return r;
  if (cap == 0) return 0;
  for (;;) {
    size_t have = buffered(s);
    if (have > 0) {
      size_t n = have < cap ? have : cap;
      consume(s, buf, n);
      return (ssize_t)n;
    }
    if (s->rerr != 0) return s->rerr;
    if (s->eof) return 0;
    int gone;
    r = read_wait(s, t, 1, &gone);
    if (r != 0) return r;
  }
}

/* Give back n bytes a read_exactly took (before what is buffered). */
static int unread(coro_stream *s, const char *src, size_t n) {
  if (n == 0) return 0;
  size_t have = buffered(s);
  if (s->rpos >= n) {
    s->rpos -= n;
  } else if (s->buf != NULL && s->cap >= have + n) {
    memmove(s->buf + n, s->buf + s->rpos, have);
    s->rpos = 0;
    s->wpos = have + n;
  } else {
    char *nb = coro__malloc(have + n);
    if (nb == NULL) {
      s->rerr = CORO_ENOMEM;
      return CORO_ENOMEM;
    }
    if (have > 0) memcpy(nb + n, s->buf + s->rpos, have);
    coro__free(s->buf);
    s->buf = nb;
    s->cap = have + n;
    s->rpos = 0;
    s->wpos = have + n;
  }
  memcpy(s->buf + s->rpos, src, n);
  if (buffered(s) >= s->limit) stop_reading(s);
  return 0;
}

ssize_t coro_stream_read_exactly(coro_stream *s, void *buf, size_t n) {
  if (s == NULL || (buf == NULL && n > 0)) return CORO_EINVAL;
  coro__task *t;
  int r = read_begin(s, &t);
  if (r != 0) return r;
  if (n == 0) return 0;
  int gone;
  if (n <= s->limit) {
    /* Wait until all n bytes are buffered, then copy once. */
    for (;;) {
      size_t have = buffered(s);
      if (have >= n) {
        consume(s, buf, n);
        return (ssize_t)n;
      }
      if (s->rerr != 0) return s->rerr;
      if (s->eof) {
        if (have > 0) consume(s, buf, have);
        return (ssize_t)have;
      }
      r = read_wait(s, t, n, &gone);
      if (r != 0) return r;
    }
  }
  /* More than the buffer may hold: take it as it comes, and give it back
   * on an error so that nothing is lost. */
  size_t got = 0;
  char *dst = buf;
  for (;;) {
    size_t have = buffered(s);
    size_t take = have < n - got ? have : n - got;
    if (take > 0) {
      consume(s, dst + got, take);
      got += take;
    }
    if (got == n) return (ssize_t)n;
    if (s->rerr != 0) {
      r = s->rerr;
      break;
    }
    if (s->eof) return (ssize_t)got;
    size_t need = n - got < s->limit ? n - got : s->limit;
    r = read_wait(s, t, need, &gone);
    if (gone) return r;
    if (r != 0) break;
  }
  unread(s, dst, got);
  return r;
}

ssize_t coro_stream_read_until(coro_stream *s, void *buf, size_t cap,
                               const void *delim, size_t dlen) {
  if (s == NULL || (buf == NULL && cap > 0) || delim == NULL || dlen == 0)
    return CORO_EINVAL;
  coro__task *t;
  int r = read_begin(s, &t);
  if (r != 0) return r;
  if (cap < dlen) return -ENOBUFS;
  size_t scanned = 0;
  for (;;) {
    size_t have = buffered(s);
    size_t lim = have < cap ? have : cap;
    if (lim >= dlen) {
      size_t from = scanned >= dlen ? scanned - (dlen - 1) : 0;
      const char *base = s->buf + s->rpos;
      const char *hit = memmem(base + from, lim - from, delim, dlen);
      if (hit != NULL) {
        size_t len = (size_t)(hit - base) + dlen;
        consume(s, buf, len);
        return (ssize_t)len;
      }
    }
    scanned = lim;
    if (have >= cap || have >= s->limit) return -ENOBUFS;
    if (s->rerr != 0) return s->rerr;
    if (s->eof) {
      if (have > 0) consume(s, buf, have);
      return (ssize_t)have;
    }
    int gone;
    r = read_wait(s, t, have + 1, &gone);
    if (r != 0) return r;
  }
}

ssize_t coro_stream_read_line(coro_stream *s, char *buf, size_t cap) {
  return coro_stream_read_until(s, buf, cap, "\n", 1);
}

/* ---- write side ------------------------------------------------------------------ */

/* Let go of the caller's buffer: cut what libuv has not written of wreq to
 * zero bytes (libuv completes the request without reading anything), and
 * break the write side. */
static void write_abandon(coro_stream *s) {
  s->wbroken = 1;
  uv_write_t *req = &s->wreq;
  if (s->wreq_busy && req->bufs != NULL && req->write_index < req->nbufs) {
    size_t rest = 0;
    for (unsigned i = req->write_index; i < req->nbufs; i++)
      rest += req->bufs[i].len;
    req->bufs[req->write_index].base = &s->dummy;
    req->bufs[req->write_index].len = 0;
    req->nbufs = req->write_index + 1;
    s->h.stream.write_queue_size -= rest;
  }
  if (s->is_socket && !s->shut) {
    uv_os_fd_t fd;
    if (uv_fileno(&s->h.handle, &fd) == 0) shutdown(fd, SHUT_WR);
    s->shut = 1;
  }
}

/* libuv has finished wreq (every byte written, or failed) and only its
 * callback is still to come (uv_write_t's private fields, libuv 1.x on
 * Unix: bufs is freed on success, error set on failure). */
static int write_finished(const coro_stream *s) {
  const uv_write_t *req = &s->wreq;
  return req->bufs == NULL || req->error != 0 || req->write_index >= req->nbufs;
}

static void wtimer_cb(coro__timer *tm) {
  coro_stream *s = coro__container_of(tm, coro_stream, wtimer);
  if (s->writer == NULL) return;
  if (write_finished(s)) return; /* too late to time out: its callback wakes */
  write_abandon(s);
  coro__task_wake(s->writer, CORO_ETIMEDOUT);
  s->writer = NULL;
}

static void write_cb(uv_write_t *req, int status) {
  coro_stream *s = req->data;
  s->wreq_busy = 0;
  if (s->writer == NULL) return;
  coro__timer_stop(s->loop, &s->wtimer);
  coro__task_wake(s->writer, status);
  s->writer = NULL;
}

static int write_cancel(coro__task *t, void *arg) {
  coro_stream *s = arg;
  /* Done (or done inside libuv, its callback on the way): keep its
   * outcome, deliver the cancellation at the next suspension. */
  if (s->writer != t || write_finished(s)) return CORO__CANCEL_LATER;
  coro__timer_stop(s->loop, &s->wtimer);
  s->writer = NULL;
  write_abandon(s);
  return CORO__CANCEL_ABORT;
}

int coro_stream_writev(coro_stream *s, const coro_iovec *iov, size_t n) {
  if (s == NULL || (iov == NULL && n > 0) || n > IOV_MAX_ARGS)
    return CORO_EINVAL;
  coro__task *t;
  int r = stream_task(s, &t);
  if (r != 0) return r;
  if (s->closed) return CORO_EPIPE;
  if (s->writer != NULL) return CORO_EBUSY;
  if (s->wbroken || s->shut) return CORO_EPIPE;
  size_t total = 0, nb = 0;
  for (size_t i = 0; i < n; i++) {
    if (iov[i].len == 0) continue;
    if (iov[i].base == NULL || iov[i].len > (size_t)SSIZE_MAX - total)
      return CORO_EINVAL;
    total += iov[i].len;
    nb++;
  }
  if (total == 0) return 0;
  uv_buf_t small[IOV_ON_STACK], *bufs = small;
  if (nb > IOV_ON_STACK) {
    bufs = coro__malloc(nb * sizeof(*bufs));
    if (bufs == NULL) return CORO_ENOMEM;
  }
  nb = 0;
  for (size_t i = 0; i < n; i++) {
    if (iov[i].len == 0) continue;
    bufs[nb].base = (char *)iov[i].base;
    bufs[nb].len = iov[i].len;
    nb++;
  }

  int w = uv_try_write(&s->h.stream, bufs, (unsigned)nb);
  size_t done = 0;
  if (w >= 0) {
    done = (size_t)w;
    if (done == total) goto out;
  } else if (w != UV_EAGAIN) {
    r = w;
    goto out;
  }
  /* Skip what the kernel took. */
  size_t first = 0;
  while (done > 0 && done >= bufs[first].len) {
    done -= bufs[first].len;
    first++;
  }
  if (done > 0) {
    bufs[first].base += done;
    bufs[first].len -= done;
  }
  int partial = w > 0;
  if (s->write_ms == 0) {
    if (partial) write_abandon(s);
    r = CORO_ETIMEDOUT;
    goto out;
  }
  if (s->write_ms > 0) {
    r = coro__timer_start(s->loop, &s->wtimer, (uint64_t)s->write_ms);
    if (r != 0) {
      if (partial) write_abandon(s);
      goto out;
    }
  }
  r = uv_write(&s->wreq, &s->h.stream, bufs + first, (unsigned)(nb - first),
               write_cb);
  if (bufs != small) coro__free(bufs);
  bufs = small;
  if (r != 0) {
    coro__timer_stop(s->loop, &s->wtimer);
    if (partial) write_abandon(s);
    return r;
  }
  s->wreq_busy = 1;
  s->writer = t;
  int gone;
  r = stream_suspend(s, t, write_cancel, &gone, "stream write");
  if (gone) return r != 0 ? r : CORO_EPIPE;
  if (s->writer == t) { /* not reached: every wake clears it */
    s->writer = NULL;
    coro__timer_stop(s->loop, &s->wtimer);
  }
  return r;
out:
  if (bufs != small) coro__free(bufs);
  return r;
}

int coro_stream_write(coro_stream *s, const void *buf, size_t len) {
  if (buf == NULL && len > 0) return CORO_EINVAL;
  coro_iovec v = {buf, len};
  return coro_stream_writev(s, &v, len > 0 ? 1 : 0);
}

static void shutdown_cb(uv_shutdown_t *req, int status) {
  coro_stream *s = req->data;
  if (s->other == NULL) return;
  coro__task_wake(s->other, status);
  s->other = NULL;
}

static int shutdown_cancel(coro__task *t, void *arg) {
  coro_stream *s = arg;
  if (s->other != t) return CORO__CANCEL_LATER;
  s->other = NULL; /* the shutdown still happens, later */
  return CORO__CANCEL_ABORT;
}

int coro_stream_shutdown(coro_stream *s) {
  if (s == NULL) return CORO_EINVAL;
  coro__task *t;
  int r = stream_task(s, &t);
  if (r != 0) return r;
  if (s->closed) return CORO_EPIPE;
  if (s->shut) return 0;
  if (s->writer != NULL || s->other != NULL) return CORO_EBUSY;
  /* Only a socket has a write side of its own to shut down. */
  if (!s->is_socket) return UV_ENOTSOCK;
  r = uv_shutdown(&s->sreq, &s->h.stream, shutdown_cb);
  if (r != 0) return r;
  s->shut = 1;
  s->other = t;
  int gone;
  r = stream_suspend(s, t, shutdown_cancel, &gone, "stream shutdown");
  if (gone) return r;
  if (s->other == t) s->other = NULL;
  /* Failed: the write side is as it was. Cancelled: the shutdown still
   * happens. */
  if (r != 0 && r != CORO_ECANCELED) s->shut = 0;
  return r;
}

/* ---- settings and queries ---------------------------------------------------- */

int coro_stream_set_timeouts(coro_stream *s, int64_t read_ms,
                             int64_t write_ms) {
  if (s == NULL || read_ms < CORO_FOREVER || write_ms < CORO_FOREVER)
    return CORO_EINVAL;
  if (!stream_thread_ok(s)) return CORO_EPERM;
  s->read_ms = read_ms;
  s->write_ms = write_ms;
  return 0;
}

int coro_stream_set_limit(coro_stream *s, size_t bytes) {
  if (s == NULL || bytes == 0) return CORO_EINVAL;
  if (!stream_thread_ok(s)) return CORO_EPERM;
  if (bytes < buffered(s)) return CORO_EINVAL;
  s->limit = bytes;
  if (!s->closed) {
    if (buffered(s) >= s->limit)
      stop_reading(s);
    else
      ensure_reading(s);
  }
  return 0;
}

int coro_stream_fileno(const coro_stream *s) {
  if (s == NULL) return CORO_EINVAL;
  if (!stream_thread_ok(s)) return CORO_EPERM;
  if (s->closed) return CORO_EPIPE;
  uv_os_fd_t fd;
  int r = uv_fileno(&s->h.handle, &fd);
  return r != 0 ? r : fd;
}

static int sock_name(const coro_stream *s, struct sockaddr_storage *addr,
                     int *len, int peer) {
  if (s == NULL || addr == NULL || len == NULL || *len < 0) return CORO_EINVAL;
  int fd = coro_stream_fileno(s);
  if (fd < 0) return fd;
  struct sockaddr_storage ss;
  socklen_t sl = sizeof(ss);
  int r = peer ? getpeername(fd, (struct sockaddr *)&ss, &sl)
               : getsockname(fd, (struct sockaddr *)&ss, &sl);
  if (r != 0) return -errno;
  return coro__sockaddr_out(addr, len, (struct sockaddr *)&ss, (int)sl);
}

int coro_stream_peername(const coro_stream *s, struct sockaddr_storage *addr,
                         int *len) {
  return sock_name(s, addr, len, 1);
}

int coro_stream_sockname(const coro_stream *s, struct sockaddr_storage *addr,
                         int *len) {
  return sock_name(s, addr, len, 0);
}

int coro_tcp_nodelay(coro_stream *s, int enable) {
  if (s == NULL || s->kind != CORO__STREAM_TCP) return CORO_EINVAL;
  if (!stream_thread_ok(s)) return CORO_EPERM;
  if (s->closed) return CORO_EPIPE;
  return uv_tcp_nodelay(&s->h.tcp, enable != 0);
}

int coro_tcp_keepalive(coro_stream *s, int enable, unsigned delay_s) {
  if (s == NULL || s->kind != CORO__STREAM_TCP) return CORO_EINVAL;
  if (enable && delay_s == 0) return CORO_EINVAL;
  if (!stream_thread_ok(s)) return CORO_EPERM;
  if (s->closed) return CORO_EPIPE;
  return uv_tcp_keepalive(&s->h.tcp, enable != 0, delay_s);
}
