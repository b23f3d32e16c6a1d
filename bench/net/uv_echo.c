/* SPDX-License-Identifier: MIT */
/* The raw-libuv peer of echo_coro: writes back whatever each connection
 * sends. A read lands in a 16 KiB buffer (echo_coro's size) taken from a
 * free list; the echo tries uv_try_write first and queues a uv_write for
 * what is left, with reading stopped until it is done (backpressure). An
 * idle connection holds no buffer, only its handle.
 *
 * Usage: uv_echo [PORT]   (default 9000, bound to 127.0.0.1) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <uv.h>

#define BUF_SIZE 16384

typedef struct conn {
  uv_tcp_t tcp;
  uv_write_t wr;
  char *pending;       /* buffer of the queued write, or NULL */
  int closing;
} conn;

typedef struct free_buf { struct free_buf *next; } free_buf;
static free_buf *free_list;
static uv_loop_t *loop;

static char *buf_get(void) {
  if (free_list) {
    free_buf *b = free_list;
    free_list = b->next;
    return (char *)b;
  }
  return malloc(BUF_SIZE);
}

static void buf_put(char *p) {
  if (!p) return;
  free_buf *b = (free_buf *)p;
  b->next = free_list;
  free_list = b;
}

static void on_closed(uv_handle_t *h) {
  conn *c = h->data;
  buf_put(c->pending);
  free(c);
}

static void conn_close(conn *c) {
  if (c->closing) return;
  c->closing = 1;
  uv_close((uv_handle_t *)&c->tcp, on_closed);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  (void)h;
  (void)hint;
  buf->base = buf_get();
  buf->len = buf->base ? BUF_SIZE : 0;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void on_written(uv_write_t *wr, int status) {
  conn *c = wr->handle->data;
  buf_put(c->pending);
  c->pending = NULL;
  if (c->closing) return;
  if (status < 0 ||
      uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0)
    conn_close(c);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  conn *c = s->data;
  if (nread <= 0) {
    buf_put(buf->base);
    if (nread < 0) conn_close(c);
    return;
  }
  uv_buf_t b = uv_buf_init(buf->base, (unsigned)nread);
  int w = uv_try_write(s, &b, 1);
  if (w == UV_EAGAIN || w == UV_ENOSYS) w = 0;
  if (w < 0) { buf_put(buf->base); conn_close(c); return; }
  if (w == nread) { buf_put(buf->base); return; }
  /* Queue the rest and stop reading until it is out. */
  uv_buf_t rest = uv_buf_init(buf->base + w, (unsigned)(nread - w));
  c->pending = buf->base;
  uv_read_stop(s);
  if (uv_write(&c->wr, s, &rest, 1, on_written) < 0) conn_close(c);
}

static void on_connection(uv_stream_t *srv, int status) {
  if (status < 0) return;
  conn *c = calloc(1, sizeof *c);
  if (!c) return;
  uv_tcp_init(loop, &c->tcp);
  c->tcp.data = c;
  if (uv_accept(srv, (uv_stream_t *)&c->tcp) < 0) { conn_close(c); return; }
  uv_tcp_nodelay(&c->tcp, 1);
  if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0) conn_close(c);
}

int main(int argc, char **argv) {
  int port = argc > 1 ? atoi(argv[1]) : 9000;
  struct sockaddr_in addr;
  uv_tcp_t server;
  struct rlimit rl;
  /* Room for many idle connections: soft descriptor limit up to the hard. */
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  loop = uv_default_loop();
  uv_ip4_addr("127.0.0.1", port, &addr);
  uv_tcp_init(loop, &server);
  int r = uv_tcp_bind(&server, (const struct sockaddr *)&addr, 0);
  if (r == 0) r = uv_listen((uv_stream_t *)&server, 4096, on_connection);
  if (r < 0) {
    fprintf(stderr, "uv_echo: listen on %d: %s\n", port, uv_strerror(r));
    return 1;
  }
  printf("uv_echo: listening on 127.0.0.1:%d\n", port);
  fflush(stdout);
  return uv_run(loop, UV_RUN_DEFAULT);
}
