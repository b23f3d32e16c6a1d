/* SPDX-License-Identifier: MIT */
/* The raw-libuv peer of examples/http_server: the same keep-alive HTTP/1.1
 * hello world written directly against libuv, with the same approach, so
 * that the difference measured is the library's:
 * - requests are framed by http-parser, one parser per connection, with
 *   only its message-complete callback; `Connection: close` and malformed
 *   input (400, then close) are honoured the same way;
 * - the responses are never built: a static buffer holds BATCH copies, and
 *   the k requests parsed from one read are answered by one write of its
 *   first k copies, tried with uv_try_write first, the rest queued with
 *   uv_write (the static buffer outlives it, so nothing is copied);
 * - reads land in one 16 KiB buffer shared by every connection (the parser
 *   keeps no pointer into it), the counterpart of the libcoro task's buffer
 *   on its stack; TCP_NODELAY.
 *
 * Usage: uv_http [PORT]   (default 8080, bound to 127.0.0.1) */
#include <http_parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <uv.h>

static const char RESPONSE[] =
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\n"
    "Hello, World!";
static const char BAD_REQUEST[] =
    "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
enum { RESPONSE_LEN = sizeof RESPONSE - 1, BATCH = 64, READ_CAP = 16384 };
static char responses[BATCH * RESPONSE_LEN];
static char read_buf[READ_CAP];
static int read_buf_busy;   /* lent to libuv between alloc and read callbacks */

typedef struct conn {
  uv_tcp_t tcp;
  http_parser parser;
  unsigned complete;   /* requests parsed, not answered yet */
  int last;            /* the last complete request asked to close */
  int closing;
} conn;

static uv_loop_t *loop;

static void on_closed(uv_handle_t *h) { free(h->data); }

static void conn_close(conn *c) {
  if (c->closing) return;
  c->closing = 1;
  uv_close((uv_handle_t *)&c->tcp, on_closed);
}

static int on_message_complete(http_parser *p) {
  conn *c = p->data;
  c->complete++;
  if (!http_should_keep_alive(p)) {
    c->last = 1;
    http_parser_pause(p, 1);   /* whatever follows is not answered */
  }
  return 0;
}

static const http_parser_settings settings = {
    .on_message_complete = on_message_complete};

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  (void)h;
  (void)hint;
  if (read_buf_busy) {   /* never with one read callback at a time */
    buf->base = malloc(READ_CAP);
    buf->len = buf->base ? READ_CAP : 0;
    return;
  }
  read_buf_busy = 1;
  buf->base = read_buf;
  buf->len = READ_CAP;
}

static void release_buf(const uv_buf_t *buf) {
  if (buf->base == read_buf) read_buf_busy = 0;
  else free(buf->base);
}

static void on_written(uv_write_t *wr, int status) {
  conn *c = wr->handle->data;
  free(wr);
  if (status < 0) conn_close(c);
}

/* Write len bytes of static data: uv_try_write, then queue what is left. */
static int send_static(conn *c, const char *data, size_t len) {
  uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
  int w = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
  if (w == UV_EAGAIN || w == UV_ENOSYS) w = 0;
  if (w < 0) return w;
  if ((size_t)w == len) return 0;
  uv_write_t *wr = malloc(sizeof *wr);
  if (!wr) return UV_ENOMEM;
  b = uv_buf_init((char *)data + w, (unsigned)(len - (size_t)w));
  int r = uv_write(wr, (uv_stream_t *)&c->tcp, &b, 1, on_written);
  if (r < 0) free(wr);
  return r;
}

static int answer(conn *c, unsigned n) {
  while (n > 0) {
    unsigned k = n < BATCH ? n : BATCH;
    int r = send_static(c, responses, (size_t)k * RESPONSE_LEN);
    if (r < 0) return r;
    n -= k;
  }
  return 0;
}

/* Close once the queued writes are out. */
static void on_shutdown(uv_shutdown_t *req, int status) {
  (void)status;
  conn_close(req->handle->data);
  free(req);
}

static void finish(conn *c) {
  uv_shutdown_t *req = malloc(sizeof *req);
  uv_read_stop((uv_stream_t *)&c->tcp);
  if (!req || uv_shutdown(req, (uv_stream_t *)&c->tcp, on_shutdown) < 0) {
    free(req);
    conn_close(c);
  }
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  conn *c = s->data;
  if (nread <= 0) {
    release_buf(buf);
    if (nread < 0) conn_close(c);   /* the client closed, or an error */
    return;
  }
  http_parser_execute(&c->parser, &settings, buf->base, (size_t)nread);
  release_buf(buf);
  enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
  if (answer(c, c->complete) < 0) { conn_close(c); return; }
  c->complete = 0;
  if (c->last) { finish(c); return; }
  if (e != HPE_OK) {   /* malformed: say so and hang up */
    if (send_static(c, BAD_REQUEST, sizeof BAD_REQUEST - 1) < 0) conn_close(c);
    else finish(c);
  }
}

static void on_connection(uv_stream_t *srv, int status) {
  if (status < 0) return;
  conn *c = calloc(1, sizeof *c);
  if (!c) return;
  uv_tcp_init(loop, &c->tcp);
  c->tcp.data = c;
  if (uv_accept(srv, (uv_stream_t *)&c->tcp) < 0) { conn_close(c); return; }
  http_parser_init(&c->parser, HTTP_REQUEST);
  c->parser.data = c;
  uv_tcp_nodelay(&c->tcp, 1);
  if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0) conn_close(c);
}

int main(int argc, char **argv) {
  int port = argc > 1 ? atoi(argv[1]) : 8080;
  struct sockaddr_in addr;
  uv_tcp_t server;
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  for (int i = 0; i < BATCH; i++)
    memcpy(responses + (size_t)i * RESPONSE_LEN, RESPONSE, RESPONSE_LEN);
  loop = uv_default_loop();
  uv_ip4_addr("127.0.0.1", port, &addr);
  uv_tcp_init(loop, &server);
  int r = uv_tcp_bind(&server, (const struct sockaddr *)&addr, 0);
  if (r == 0) r = uv_listen((uv_stream_t *)&server, 4096, on_connection);
  if (r < 0) {
    fprintf(stderr, "uv_http: listen on %d: %s\n", port, uv_strerror(r));
    return 1;
  }
  printf("uv_http: listening on 127.0.0.1:%d\n", port);
  fflush(stdout);
  return uv_run(loop, UV_RUN_DEFAULT);
}
