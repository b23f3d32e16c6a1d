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
#include <pthread.h>
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
  int kind; /* 0 read, 1 read_exactly, 2 read_line, 3 read_until CRLF */
  ssize_t r;
  int done;
} reader_job;

static void *reader_task(void *arg) {
  reader_job *j = arg;
  size_t cap = j->cap ? j->cap : sizeof(j->buf);
  if (j->kind == 0)
    j->r = coro_stream_read(j->s, j->buf, cap);
  else if (j->kind == 1)
    j->r = coro_stream_read_exactly(j->s, j->buf, cap);
  else if (j->kind == 2)
    j->r = coro_stream_read_line(j->s, j->buf, cap);
  else
    j->r = coro_stream_read_until(j->s, j->buf, cap, "\r\n", 2);
  j->done = 1;
  return NULL;
}

/* Start reader_task on s, the job zeroed but for its stream and kind. */
static coro_future *start_reader(reader_job *j, coro_stream *s, int kind) {
  memset(j, 0, sizeof(*j));
  j->s = s;
  j->kind = kind;
  return coro_test_spawn(reader_task, j);
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
  /* Small messages: the read buffer stays at its first size, and a stream
   * whose buffer a read emptied holds none (idle connections cost no
   * buffer); it takes one again when bytes arrive. */
  CHECK_EQ(coro__stream_bufsize(b), 0);
  CHECK_OK(coro_stream_write(a, "xy", 2));
  CHECK_EQ(coro_stream_read(b, buf, 1), 1);
  CHECK_EQ(coro__stream_bufsize(b), 4096); /* "y" still buffered */
  CHECK_EQ(coro_stream_read(b, buf + 1, 1), 1);
  CHECK(memcmp(buf, "xy", 2) == 0);
  CHECK_EQ(coro__stream_bufsize(b), 0);
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
    /* A bulk transfer: the buffer grew to the limit, and no further. */
    CHECK_EQ(coro__stream_bufsize(b), 64 * 1024);
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

/* ---- end of stream part-way, read_until, the limit ------------------------------ */

static void *eof_mid_main(void *arg) {
  (void)arg;
  coro_stream *a, *b;
  char buf[64];
  /* read_exactly: the short count, then 0. */
  CHECK_OK(tcp_pair(&a, &b));
  CHECK_OK(coro_stream_write(a, "abc", 3));
  CHECK_OK(coro_stream_shutdown(a));
  CHECK_OK(coro_stream_shutdown(a)); /* a second call: 0 */
  CHECK_EQ(coro_stream_write(a, "x", 1), -EPIPE);
  CHECK_EQ(coro_stream_read_exactly(b, buf, 10), 3);
  CHECK(memcmp(buf, "abc", 3) == 0);
  CHECK_EQ(coro_stream_read_exactly(b, buf, 10), 0);
  CHECK_EQ(coro_stream_read(b, buf, 10), 0);
  /* The other direction still works (half-close). */
  CHECK_OK(coro_stream_write(b, "back", 4));
  CHECK_EQ(coro_stream_read_exactly(a, buf, 4), 4);
  CHECK(memcmp(buf, "back", 4) == 0);
  CHECK_OK(coro_stream_shutdown(b));
  CHECK_EQ(coro_stream_read(a, buf, sizeof(buf)), 0);
  coro_stream_close(a);
  coro_stream_close(b);
  /* read_until: what was there, then 0. */
  CHECK_OK(unix_pair(&a, &b));
  CHECK_OK(coro_stream_write(a, "one\ntwo", 7));
  CHECK_OK(coro_stream_shutdown(a));
  CHECK_EQ(coro_stream_read_line(b, buf, sizeof(buf)), 4);
  CHECK(memcmp(buf, "one\n", 4) == 0);
  CHECK_EQ(coro_stream_read_line(b, buf, sizeof(buf)), 3);
  CHECK(memcmp(buf, "two", 3) == 0);
  CHECK_EQ(coro_stream_read_line(b, buf, sizeof(buf)), 0);
  coro_stream_close(a);
  coro_stream_close(b);
  return NULL;
}

/* A shutdown whose task is cancelled while it waits still happens. */
typedef struct shut_job {
  coro_stream *s;
  int r;
} shut_job;

static void *shut_task(void *arg) {
  shut_job *j = arg;
  j->r = coro_stream_shutdown(j->s);
  return NULL;
}

static void *shutdown_cancel_main(void *arg) {
  (void)arg;
  coro_stream *a, *b;
  char buf[8];
  CHECK_OK(tcp_pair(&a, &b));
  shut_job j = {a, 1};
  coro_future *f = coro_test_spawn(shut_task, &j);
  coro_test_yields(1); /* it has asked libuv and waits for the callback */
  coro_cancel(f);
  CHECK_OK(coro_test_join(f));
  CHECK_EQ(j.r, -ECANCELED);
  CHECK_EQ(coro_stream_read(b, buf, sizeof(buf)), 0);
  CHECK_OK(coro_stream_shutdown(a));
  CHECK_EQ(coro_stream_write(a, "x", 1), -EPIPE);
  coro_stream_close(a);
  coro_stream_close(b);
  return NULL;
}

static void test_shutdown_cancel(void **state) {
  (void)state;
  assert_run_ok(shutdown_cancel_main);
}

static void test_eof_part_way(void **state) {
  (void)state;
  assert_run_ok(eof_mid_main);
}

/* A delimiter split across two arrivals, and a cap too small for the line. */
static void *read_until_main(void *arg) {
  (void)arg;
  coro_stream *a, *b;
  char buf[64];
  CHECK_OK(tcp_pair(&a, &b));
  reader_job j;
  coro_future *f = start_reader(&j, b, 3);
  coro_test_yields(2);
  CHECK_OK(coro_stream_write(a, "abc\r", 4));
  coro_test_yields(5);
  CHECK_EQ(j.done, 0);
  CHECK_OK(coro_stream_write(a, "\ndef", 4));
  CHECK_OK(coro_test_join(f));
  CHECK_EQ(j.r, 5);
  CHECK(memcmp(j.buf, "abc\r\n", 5) == 0);
  /* "def" is still buffered; the line completes with the next write. */
  CHECK_OK(coro_stream_write(a, "gh\n", 3));
  CHECK_EQ(coro_stream_read_until(b, buf, 6, "\n", 1), 6);
  CHECK(memcmp(buf, "defgh\n", 6) == 0);
  CHECK_OK(coro_stream_write(a, "hello world\n", 12));
  CHECK_EQ(coro_stream_read_exactly(b, buf, 1), 1); /* all 12 arrived */
  CHECK_EQ(coro_stream_read_line(b, buf, 5), -ENOBUFS);
  CHECK_EQ(coro_stream_read_line(b, buf, 5), -ENOBUFS); /* nothing lost */
  CHECK_EQ(coro_stream_read_line(b, buf, sizeof(buf)), 11);
  CHECK(memcmp(buf, "ello world\n", 11) == 0);
  /* A cap below the delimiter's length can never succeed. */
  CHECK_EQ(coro_stream_read_until(b, buf, 1, "\r\n", 2), -ENOBUFS);
  coro_stream_close(a);
  coro_stream_close(b);
  return NULL;
}

static void test_read_until(void **state) {
  (void)state;
  assert_run_ok(read_until_main);
}

/* The limit: read_line gives -ENOBUFS when the buffer is full without a
 * newline, nothing is lost, and the rest is readable. */
static void *limit_main(void *arg) {
  (void)arg;
  coro_stream *a, *b;
  char buf[200 * 1024];
  CHECK_OK(tcp_pair(&a, &b));
  CHECK_EQ(coro_stream_set_limit(b, 0), -EINVAL);
  CHECK_OK(coro_stream_set_limit(b, 16));
  CHECK_OK(coro_stream_write(a, "0123456789abcdefghij", 20));
  CHECK_EQ(coro_stream_read_line(b, buf, sizeof(buf)), -ENOBUFS);
  CHECK_EQ(coro__stream_buffered(b), 16); /* stopped at the limit */
  CHECK_EQ(coro_stream_set_limit(b, 8), -EINVAL); /* below what is buffered */
  CHECK_EQ(coro_stream_read(b, buf, sizeof(buf)), 16);
  CHECK(memcmp(buf, "0123456789abcdef", 16) == 0);
  CHECK_OK(coro_stream_write(a, "\n", 1));
  CHECK_EQ(coro_stream_read_line(b, buf, sizeof(buf)), 5);
  CHECK(memcmp(buf, "ghij\n", 5) == 0);
  /* A line without newline bigger than the default limit (64 KiB). */
  CHECK_OK(coro_stream_set_limit(b, 64 * 1024));
  static unsigned char big[100 * 1024];
  memset(big, 'x', sizeof(big));
  writer_job w = {a, big, sizeof(big), sizeof(big), 0, 1};
  coro_future *f = coro_test_spawn(writer_task, &w);
  CHECK_EQ(coro_stream_read_line(b, buf, sizeof(buf)), -ENOBUFS);
  CHECK_LE(coro__stream_buffered(b), 64 * 1024);
  CHECK_LE(coro__stream_bufsize(b), 64 * 1024);
  size_t got = 0;
  while (got < sizeof(big)) {
    ssize_t n = coro_stream_read(b, buf + got, sizeof(big) - got);
    if (n <= 0) {
      CHECK_GT(n, 0);
      break;
    }
    got += (size_t)n;
  }
  CHECK(memcmp(buf, big, sizeof(big)) == 0);
  CHECK_OK(coro_test_join(f));
  CHECK_OK(coro_stream_write(a, "end\n", 4));
  CHECK_EQ(coro_stream_read_line(b, buf, sizeof(buf)), 4);
  coro_stream_close(a);
  coro_stream_close(b);
  return NULL;
}

static void test_limit(void **state) {
  (void)state;
  assert_run_ok(limit_main);
}

/* A slow reader: 8 MiB sent while the reader takes its time; the stream's
 * memory never passes the limit. */
static void *slow_reader_main(void *arg) {
  (void)arg;
  coro_stream *a, *b;
  CHECK_OK(tcp_pair(&a, &b));
  unsigned char *src = malloc(BIG);
  fill_pattern(src, BIG, 11);
  writer_job w = {a, src, BIG, 256 * 1024, 1, 1};
  coro_future *f = coro_test_spawn(writer_task, &w);
  static unsigned char chunk[4096];
  size_t got = 0;
  int bad = 0, reads = 0;
  long allocs0 = -1, allocs_max = 0;
  while (got < BIG) {
    ssize_t n = coro_stream_read(b, chunk, sizeof(chunk));
    if (n <= 0) {
      CHECK_GT(n, 0);
      break;
    }
    if (memcmp(chunk, src + got, (size_t)n) != 0) bad = 1;
    got += (size_t)n;
    CHECK_LE(coro__stream_buffered(b), 64 * 1024);
    CHECK_LE(coro__stream_bufsize(b), 64 * 1024);
    long live = coro_test_live_allocs();
    if (allocs0 < 0 && got > 256 * 1024) allocs0 = live;
    if (allocs0 >= 0 && live > allocs_max) allocs_max = live;
    if (++reads % 32 == 0) coro_sleep(1);
  }
  CHECK_EQ(bad, 0);
  /* Steady state: no allocation per read. */
  CHECK_LE(allocs_max, allocs0 + 2);
  CHECK_EQ(coro_stream_read(b, chunk, 1), 0);
  CHECK_OK(coro_test_join(f));
  CHECK_OK(w.r);
  free(src);
  coro_stream_close(a);
  coro_stream_close(b);
  return NULL;
}

static void test_slow_reader(void **state) {
  (void)state;
  assert_run_ok(slow_reader_main);
}

/* ---- errors from the peer --------------------------------------------------- */

/* Reset by peer (SO_LINGER 0): bytes already buffered are read first, then
 * UV_ECONNRESET, again on every later read. */
static void *reset_main(void *arg) {
  (void)arg;
  coro_stream *a, *b;
  char buf[64];
  CHECK_OK(tcp_pair(&a, &b));
  CHECK_OK(coro_stream_write(b, "abc", 3));
  CHECK_EQ(coro_stream_read_exactly(a, buf, 1), 1);
  struct linger lg = {1, 0};
  CHECK_EQ(setsockopt(coro_stream_fileno(b), SOL_SOCKET, SO_LINGER, &lg,
                      sizeof(lg)), 0);
  coro_stream_close(b);
  /* Waits past "bc" for more and sees the reset; "bc" stays buffered. */
  CHECK_EQ(coro_stream_read_exactly(a, buf, 10), UV_ECONNRESET);
  CHECK_EQ(coro_stream_read(a, buf, sizeof(buf)), 2);
  CHECK(memcmp(buf, "bc", 2) == 0);
  CHECK_EQ(coro_stream_read(a, buf, sizeof(buf)), UV_ECONNRESET);
  CHECK_EQ(coro_stream_read_line(a, buf, sizeof(buf)), UV_ECONNRESET);
  /* Writing to a reset connection: an error, not SIGPIPE. */
  int r = coro_stream_write(a, "x", 1);
  CHECK(r == UV_EPIPE || r == UV_ECONNRESET);
  coro_stream_close(a);
  return NULL;
}

static void test_reset_by_peer(void **state) {
  (void)state;
  assert_run_ok(reset_main);
}

/* A peer that closed: writes end in UV_EPIPE or UV_ECONNRESET (SIGPIPE is
 * ignored), never kill the process. */
static void *write_closed_peer_main(void *arg) {
  (void)arg;
  coro_stream *a, *b;
  CHECK_OK(unix_pair(&a, &b));
  coro_stream_close(b);
  int r = 0;
  for (int i = 0; i < 100 && r == 0; i++) r = coro_stream_write(a, "x", 1);
  CHECK(r == UV_EPIPE || r == UV_ECONNRESET);
  struct sigaction sa;
  sigaction(SIGPIPE, NULL, &sa);
  CHECK(sa.sa_handler == SIG_IGN);
  coro_stream_close(a);
  return NULL;
}

static void test_write_closed_peer(void **state) {
  (void)state;
  assert_run_ok(write_closed_peer_main);
}

/* ---- cancel and timeout -------------------------------------------------------- */

static void *read_cancel_main(void *arg) {
  (void)arg;
  coro_stream *a, *b;
  char buf[64];
  CHECK_OK(tcp_pair(&a, &b));
  /* Cancelled read. */
  reader_job j;
  coro_future *f = start_reader(&j, b, 0);
  coro_test_yields(3);
  CHECK_EQ(j.done, 0);
  CHECK_OK(coro_cancel(f));
  CHECK_OK(coro_test_join(f));
  CHECK_EQ(j.r, -ECANCELED);
  /* Still usable, nothing lost. */
  CHECK_OK(coro_stream_write(a, "after", 5));
  CHECK_EQ(coro_stream_read_exactly(b, buf, 5), 5);
  CHECK(memcmp(buf, "after", 5) == 0);
  /* Data and cancellation in the same iteration: the bytes stay. */
  f = start_reader(&j, b, 0);
  coro_test_yields(2);
  CHECK_OK(coro_stream_write(a, "race", 4));
  coro_sleep(20); /* the reader has been woken with the data by now */
  coro_cancel(f);
  CHECK_OK(coro_test_join(f));
  if (j.r == -ECANCELED) {
    CHECK_EQ(coro_stream_read(b, buf, sizeof(buf)), 4);
    CHECK(memcmp(buf, "race", 4) == 0);
  } else {
    CHECK_EQ(j.r, 4);
    CHECK(memcmp(j.buf, "race", 4) == 0);
  }
  /* The stream's read timeout. */
  CHECK_EQ(coro_stream_set_timeouts(b, -2, CORO_FOREVER), -EINVAL);
  CHECK_OK(coro_stream_set_timeouts(b, 30, CORO_FOREVER));
  int64_t t0 = coro_test_now_ms();
  CHECK_EQ(coro_stream_read(b, buf, sizeof(buf)), -ETIMEDOUT);
  CHECK_GE(coro_test_now_ms() - t0, 29);
  CHECK_EQ(coro_stream_read_line(b, buf, sizeof(buf)), -ETIMEDOUT);
  CHECK_OK(coro_stream_set_timeouts(b, 0, CORO_FOREVER));
  CHECK_EQ(coro_stream_read(b, buf, sizeof(buf)), -ETIMEDOUT); /* 0: no wait */
  CHECK_OK(coro_stream_set_timeouts(b, CORO_FOREVER, CORO_FOREVER));
  /* A timeout scope around a read. */
  coro_timeout to;
  CHECK_OK(coro_timeout_enter(&to, 20));
  int r = (int)coro_stream_read(b, buf, sizeof(buf));
  CHECK_EQ(r, -ECANCELED);
  CHECK_EQ(coro_timeout_exit(&to, r), -ETIMEDOUT);
  /* read_exactly timed out part-way (n within the limit): nothing lost. */
  CHECK_OK(coro_stream_write(a, "012", 3));
  CHECK_OK(coro_stream_set_timeouts(b, 30, CORO_FOREVER));
  CHECK_EQ(coro_stream_read_exactly(b, buf, 10), -ETIMEDOUT);
  CHECK_OK(coro_stream_write(a, "3456789", 7));
  CHECK_EQ(coro_stream_read_exactly(b, buf, 10), 10);
  CHECK(memcmp(buf, "0123456789", 10) == 0);
  /* ... and n beyond the limit: the bytes taken are given back. */
  CHECK_OK(coro_stream_set_limit(b, 16));
  static unsigned char pat[100];
  fill_pattern(pat, sizeof(pat), 5);
  CHECK_OK(coro_stream_write(a, pat, 40));
  static unsigned char big[100];
  CHECK_EQ(coro_stream_read_exactly(b, big, 100), -ETIMEDOUT);
  CHECK_EQ(coro__stream_buffered(b), 40);
  CHECK_EQ(coro_stream_read_exactly(b, big, 40), 40);
  CHECK(memcmp(big, pat, 40) == 0);
  CHECK_OK(coro_stream_set_timeouts(b, CORO_FOREVER, CORO_FOREVER));
  CHECK_OK(coro_stream_write(a, pat, 60));
  CHECK_OK(coro_stream_shutdown(a));
  CHECK_EQ(coro_stream_read_exactly(b, big, 100), 60);
  CHECK(memcmp(big, pat, 60) == 0);
  coro_stream_close(a);
  coro_stream_close(b);
  return NULL;
}

static void test_read_cancel_timeout(void **state) {
  (void)state;
  assert_run_ok(read_cancel_main);
}

/* A write to a peer that never reads, abandoned by cancel or timeout: the
 * call returns, libuv no longer refers to the caller's buffer (it is
 * poisoned and freed at once: AddressSanitizer and Valgrind would see any
 * use), later writes give -EPIPE, reads still work. */
#define HUGE_WRITE ((size_t)64 << 20)

typedef struct big_write {
  coro_stream *s;
  size_t len;
  unsigned char *buf;
  int r;
  int done;
} big_write;

static void *big_write_task(void *arg) {
  big_write *w = arg;
  w->r = coro_stream_write(w->s, w->buf, w->len);
  w->done = 1;
  return NULL;
}

/* Read everything b can get until end of stream or 200 ms of silence;
 * returns the count, sets *bad if a byte is not 'a'. */
static size_t drain_all(coro_stream *b, int *bad) {
  static unsigned char chunk[65536];
  size_t total = 0;
  coro_stream_set_timeouts(b, 200, CORO_FOREVER);
  for (;;) {
    ssize_t n = coro_stream_read(b, chunk, sizeof(chunk));
    if (n <= 0) break;
    for (ssize_t i = 0; i < n; i++)
      if (chunk[i] != 'a') *bad = 1;
    total += (size_t)n;
  }
  coro_stream_set_timeouts(b, CORO_FOREVER, CORO_FOREVER);
  return total;
}

static void abandoned_write_round(pair_fn mk, int by_timeout) {
  coro_stream *a, *b;
  CHECK_OK(mk(&a, &b));
  if (coro_test_failed_line) return;
  big_write w = {a, HUGE_WRITE, malloc(HUGE_WRITE), 1, 0};
  memset(w.buf, 'a', HUGE_WRITE);
  coro_future *f;
  if (by_timeout) {
    CHECK_OK(coro_stream_set_timeouts(a, CORO_FOREVER, 50));
    f = coro_test_spawn(big_write_task, &w);
  } else {
    f = coro_test_spawn(big_write_task, &w);
    coro_sleep(50);
    CHECK_EQ(w.done, 0);
    coro_cancel(f);
  }
  CHECK_OK(coro_test_join(f));
  CHECK_EQ(w.r, by_timeout ? -ETIMEDOUT : -ECANCELED);
  memset(w.buf, 'X', HUGE_WRITE);
  free(w.buf);
  coro_sleep(10);
  CHECK_EQ(coro_stream_write(a, "more", 4), -EPIPE);
  int bad = 0;
  size_t got = drain_all(b, &bad);
  CHECK_EQ(a->wreq_busy, 0); /* the cut request is finished and gone */
  CHECK_EQ(bad, 0);
  CHECK_GT(got, 0);
  CHECK_LT(got, HUGE_WRITE);
  /* Reads still work on the stream whose write side broke. */
  CHECK_OK(coro_stream_write(b, "ok", 2));
  char buf[4];
  CHECK_EQ(coro_stream_read_exactly(a, buf, 2), 2);
  coro_stream_close(a);
  coro_stream_close(b);
}

static void *abandoned_write_main(void *arg) {
  (void)arg;
  abandoned_write_round(tcp_pair, 0);
  abandoned_write_round(tcp_pair, 1);
  abandoned_write_round(unix_pair, 0);
  abandoned_write_round(unix_pair, 1);
  return NULL;
}

static void test_abandoned_write(void **state) {
  (void)state;
  assert_run_ok(abandoned_write_main);
}

/* The same on a pipe (no shutdown(2) there): the unsent rest is never
 * written, the reader sees only bytes from before the cancel. */
/* A pipe whose write waits for the reader: 4 MiB through a 64 KiB pipe. */
static void *pipe_big_main(void *arg) {
  (void)arg;
  int p[2];
  CHECK_EQ(pipe2(p, O_CLOEXEC), 0);
  coro_stream *w, *r;
  CHECK_OK(coro_stream_open_fd(&w, p[1]));
  CHECK_OK(coro_stream_open_fd(&r, p[0]));
  size_t len = (size_t)4 << 20;
  unsigned char *src = malloc(len), *dst = malloc(len);
  fill_pattern(src, len, 9);
  writer_job wj = {w, src, len, len, 0, 1};
  coro_future *f = coro_test_spawn(writer_task, &wj);
  CHECK_EQ(coro_stream_read_exactly(r, dst, len), (ssize_t)len);
  CHECK_OK(coro_test_join(f));
  CHECK_OK(wj.r);
  CHECK(memcmp(src, dst, len) == 0);
  coro_stream_close(w);
  CHECK_EQ(coro_stream_read(r, dst, 1), 0);
  coro_stream_close(r);
  free(src);
  free(dst);
  return NULL;
}

static void test_pipe_big_write(void **state) {
  (void)state;
  assert_run_ok(pipe_big_main);
}

static void *abandoned_pipe_write_main(void *arg) {
  (void)arg;
  int p[2];
  CHECK_EQ(pipe2(p, O_CLOEXEC), 0);
  coro_stream *w, *r;
  CHECK_OK(coro_stream_open_fd(&w, p[1]));
  CHECK_OK(coro_stream_open_fd(&r, p[0]));
  struct sockaddr_storage ss;
  int len = sizeof(ss);
  CHECK_EQ(coro_stream_peername(w, &ss, &len), UV_ENOTSOCK);
  big_write bw = {w, 4 << 20, malloc(4 << 20), 1, 0};
  memset(bw.buf, 'a', 4 << 20);
  coro_future *f = coro_test_spawn(big_write_task, &bw);
  coro_sleep(30);
  CHECK_EQ(bw.done, 0);
  coro_cancel(f);
  CHECK_OK(coro_test_join(f));
  CHECK_EQ(bw.r, -ECANCELED);
  memset(bw.buf, 'X', 4 << 20);
  free(bw.buf);
  int bad = 0;
  size_t got = drain_all(r, &bad);
  CHECK_EQ(bad, 0);
  CHECK_GT(got, 0);
  CHECK_LT(got, (size_t)4 << 20);
  /* The pipe has room again: libuv finished the cut request (writing
   * nothing) and let it go. */
  coro_sleep(20);
  CHECK_EQ(w->wreq_busy, 0);
  CHECK_EQ(w->h.stream.write_queue_size, 0);
  CHECK_EQ(coro_stream_write(w, "x", 1), -EPIPE);
  coro_stream_close(w);
  char c;
  CHECK_EQ(coro_stream_read(r, &c, 1), 0); /* the write end closed */
  coro_stream_close(r);
  return NULL;
}

static void test_abandoned_pipe_write(void **state) {
  (void)state;
  assert_run_ok(abandoned_pipe_write_main);
}

/* A write the kernel finished just before the cancellation came keeps its
 * outcome (0); the cancellation is delivered at the next suspension. */
static void *write_done_then_cancel_main(void *arg) {
  (void)arg;
  coro_stream *a, *b;
  CHECK_OK(tcp_pair(&a, &b));
  big_write w = {a, 8 << 20, malloc(8 << 20), 1, 0};
  memset(w.buf, 'a', 8 << 20);
  coro_future *f = coro_test_spawn(big_write_task, &w);
  int bad = 0;
  unsigned char *sink = malloc(8 << 20);
  CHECK_EQ(coro_stream_read_exactly(b, sink, 8 << 20), 8 << 20);
  /* The writer is woken by now or soon; cancel whatever state it is in. */
  coro_cancel(f);
  int st = coro_test_join(f);
  CHECK(st == 0 || st == -ECANCELED);
  CHECK(w.r == 0 || w.r == -ECANCELED);
  for (size_t i = 0; i < (8u << 20); i++)
    if (sink[i] != 'a') bad = 1;
  CHECK_EQ(bad, 0);
  free(sink);
  free(w.buf);
  coro_stream_close(a);
  coro_stream_close(b);
  return NULL;
}

static void test_write_done_then_cancel(void **state) {
  (void)state;
  assert_run_ok(write_done_then_cancel_main);
}

/* ---- connect: cancel and timeout ----------------------------------------------- */

/* A listening socket whose backlog is full: the kernel drops further SYNs,
 * so a connect to it waits (retransmitting) until it gives up. */
typedef struct full_listener {
  int lfd;
  int port;
  int fill[4];
} full_listener;

static int full_listener_open(full_listener *fl) {
  memset(fl, 0, sizeof(*fl));
  for (int i = 0; i < 4; i++) fl->fill[i] = -1;
  fl->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in sin = loopback(0);
  if (bind(fl->lfd, (struct sockaddr *)&sin, sizeof(sin)) != 0) return -errno;
  if (listen(fl->lfd, 0) != 0) return -errno;
  socklen_t sl = sizeof(sin);
  getsockname(fl->lfd, (struct sockaddr *)&sin, &sl);
  fl->port = ntohs(sin.sin_port);
  for (int i = 0; i < 4; i++) {
    fl->fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    connect(fl->fill[i], (struct sockaddr *)&sin, sizeof(sin));
  }
  return 0;
}

static void full_listener_close(full_listener *fl) {
  for (int i = 0; i < 4; i++) close(fl->fill[i]);
  close(fl->lfd);
}

typedef struct connect_job {
  int port;
  int64_t timeout;
  coro_stream *s;
  int r;
} connect_job;

static void *connect_task(void *arg) {
  connect_job *j = arg;
  struct sockaddr_in sin = loopback(j->port);
  j->r = coro_tcp_connect_addr(&j->s, (struct sockaddr *)&sin, j->timeout);
  return NULL;
}

static void *connect_cancel_main(void *arg) {
  (void)arg;
  full_listener fl;
  CHECK_OK(full_listener_open(&fl));
  coro_test_yields(3);
  struct sockaddr_in sin = loopback(fl.port);
  coro_stream *s = (coro_stream *)1;
  int64_t t0 = coro_test_now_ms();
  CHECK_EQ(coro_tcp_connect_addr(&s, (struct sockaddr *)&sin, 50), -ETIMEDOUT);
  CHECK_GE(coro_test_now_ms() - t0, 49);
  CHECK_PTR_EQ(s, NULL);
  char port[16];
  snprintf(port, sizeof(port), "%d", fl.port);
  CHECK_EQ(coro_tcp_connect(&s, "127.0.0.1", port, 50), -ETIMEDOUT);
  CHECK_PTR_EQ(s, NULL);
  /* Cancelled. */
  connect_job j = {fl.port, CORO_FOREVER, NULL, 1};
  coro_future *f = coro_test_spawn(connect_task, &j);
  coro_sleep(30);
  CHECK_EQ(j.r, 1);
  coro_cancel(f);
  CHECK_OK(coro_test_join(f));
  CHECK_EQ(j.r, -ECANCELED);
  CHECK_PTR_EQ(j.s, NULL);
  /* Inside a timeout scope. */
  coro_timeout to;
  CHECK_OK(coro_timeout_enter(&to, 30));
  int r = coro_tcp_connect_addr(&s, (struct sockaddr *)&sin, CORO_FOREVER);
  CHECK_EQ(r, -ECANCELED);
  CHECK_EQ(coro_timeout_exit(&to, r), -ETIMEDOUT);
  full_listener_close(&fl);
  return NULL;
}

static void test_connect_cancel_timeout(void **state) {
  (void)state;
  assert_run_ok(connect_cancel_main);
}

static void *connect_errors_main(void *arg) {
  (void)arg;
  /* A port nobody listens on. */
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in sin = loopback(0);
  bind(fd, (struct sockaddr *)&sin, sizeof(sin));
  socklen_t sl = sizeof(sin);
  getsockname(fd, (struct sockaddr *)&sin, &sl);
  close(fd);
  coro_stream *s;
  CHECK_EQ(coro_tcp_connect_addr(&s, (struct sockaddr *)&sin, 5000),
           UV_ECONNREFUSED);
  CHECK_PTR_EQ(s, NULL);
  char port[16];
  snprintf(port, sizeof(port), "%d", ntohs(sin.sin_port));
  CHECK_EQ(coro_tcp_connect(&s, "127.0.0.1", port, 5000), UV_ECONNREFUSED);
  CHECK_EQ(coro_tcp_connect(&s, "localhost", port, 5000), UV_ECONNREFUSED);
  /* Bad ports: never wrapped around by getaddrinfo. */
  CHECK_EQ(coro_tcp_connect(&s, "127.0.0.1", "99999", 1000), -EINVAL);
  CHECK_EQ(coro_tcp_connect(&s, "127.0.0.1", "-1", 1000), -EINVAL);
  CHECK_EQ(coro_tcp_connect(&s, "127.0.0.1", "0", 1000), -EINVAL);
  CHECK_EQ(coro_tcp_connect(&s, "127.0.0.1", " 80", 1000), -EINVAL);
  struct sockaddr_in zero = loopback(0);
  CHECK_EQ(coro_tcp_connect_addr(&s, (struct sockaddr *)&zero, 1000), -EINVAL);
  CHECK_EQ(coro_tcp_connect(&s, "127.0.0.1", "", 1000), -EINVAL);
  CHECK_EQ(coro_tcp_connect(&s, "127.0.0.1", NULL, 1000), -EINVAL);
  CHECK_EQ(coro_tcp_connect(&s, NULL, "80", 1000), -EINVAL);
  CHECK_EQ(coro_tcp_connect(NULL, "127.0.0.1", "80", 1000), -EINVAL);
  CHECK_EQ(coro_tcp_connect(&s, "127.0.0.1", "80", -2), -EINVAL);
  CHECK_EQ(coro_tcp_connect_addr(&s, NULL, 1000), -EINVAL);
  struct sockaddr_un sun;
  memset(&sun, 0, sizeof(sun));
  sun.sun_family = AF_UNIX;
  CHECK_EQ(coro_tcp_connect_addr(&s, (struct sockaddr *)&sun, 1000), -EINVAL);
  CHECK_EQ(coro_unix_connect(&s, NULL, 1000), -EINVAL);
  CHECK_EQ(coro_unix_connect(&s, "", 1000), -EINVAL);
  char longpath[200];
  memset(longpath, 'p', sizeof(longpath) - 1);
  longpath[sizeof(longpath) - 1] = '\0';
  CHECK_EQ(coro_unix_connect(&s, longpath, 1000), UV_ENAMETOOLONG);
  char path[108];
  unix_path(path, sizeof(path), "nobody");
  unlink(path);
  CHECK_EQ(coro_unix_connect(&s, path, 1000), UV_ENOENT);
  return NULL;
}

static void test_connect_errors(void **state) {
  (void)state;
  assert_run_ok(connect_errors_main);
}

/* ---- concurrency on one stream ------------------------------------------------ */

static void *two_readers_main(void *arg) {
  (void)arg;
  coro_stream *a, *b;
  char buf[16];
  CHECK_OK(tcp_pair(&a, &b));
  reader_job j;
  coro_future *f = start_reader(&j, b, 0);
  coro_test_yields(2);
  CHECK_EQ(coro_stream_read(b, buf, sizeof(buf)), -EBUSY);
  CHECK_EQ(coro_stream_read_exactly(b, buf, 4), -EBUSY);
  CHECK_EQ(coro_stream_read_line(b, buf, sizeof(buf)), -EBUSY);
  /* Full duplex: writing while another task reads is fine. */
  CHECK_OK(coro_stream_write(b, "dup", 3));
  CHECK_EQ(coro_stream_read_exactly(a, buf, 3), 3);
  CHECK_OK(coro_stream_write(a, "x", 1));
  CHECK_OK(coro_test_join(f));
  CHECK_EQ(j.r, 1);
  /* Two writers. */
  big_write w = {a, HUGE_WRITE, malloc(HUGE_WRITE), 1, 0};
  memset(w.buf, 'a', HUGE_WRITE);
  f = coro_test_spawn(big_write_task, &w);
  coro_test_yields(2);
  CHECK_EQ(w.done, 0);
  CHECK_EQ(coro_stream_write(a, "y", 1), -EBUSY);
  CHECK_EQ(coro_stream_shutdown(a), -EBUSY);
  coro_cancel(f);
  CHECK_OK(coro_test_join(f));
  free(w.buf);
  coro_stream_close(a);
  coro_stream_close(b);
  return NULL;
}

static void test_two_readers_two_writers(void **state) {
  (void)state;
  assert_run_ok(two_readers_main);
}

/* Close from a third task while one task reads and another writes: both
 * are woken with -EPIPE. */
static void *close_while_waiting_main(void *arg) {
  (void)arg;
  coro_stream *a, *b;
  CHECK_OK(tcp_pair(&a, &b));
  big_write w = {a, HUGE_WRITE, malloc(HUGE_WRITE), 1, 0};
  memset(w.buf, 'a', HUGE_WRITE);
  reader_job j;
  coro_future *fr = start_reader(&j, a, 0);
  coro_future *fw = coro_test_spawn(big_write_task, &w);
  coro_sleep(20);
  CHECK_EQ(j.done, 0);
  CHECK_EQ(w.done, 0);
  CHECK_OK(coro_stream_close(a));
  CHECK_OK(coro_test_join(fr));
  CHECK_OK(coro_test_join(fw));
  CHECK_EQ(j.r, -EPIPE);
  CHECK_EQ(w.r, -EPIPE);
  memset(w.buf, 'X', HUGE_WRITE);
  free(w.buf);
  int bad = 0;
  drain_all(b, &bad);
  CHECK_EQ(bad, 0);
  coro_stream_close(b);
  CHECK_OK(coro_stream_close(NULL));
  return NULL;
}

static void test_close_while_waiting(void **state) {
  (void)state;
  assert_run_ok(close_while_waiting_main);
}

/* ---- adopting descriptors ------------------------------------------------------ */

static void *open_fd_main(void *arg) {
  (void)arg;
  coro_stream *s = (coro_stream *)1;
  /* A regular file: refused, and the descriptor is still the caller's. */
  char path[] = "/tmp/coro-test-file-XXXXXX";
  int fd = mkstemp(path);
  CHECK_GE(fd, 0);
  unlink(path);
  CHECK_EQ(coro_stream_open_fd(&s, fd), -EINVAL);
  CHECK_PTR_EQ(s, NULL);
  CHECK_EQ(fcntl(fd, F_GETFD) >= 0, 1);
  close(fd);
  /* Closed and negative descriptors. */
  CHECK_EQ(coro_stream_open_fd(&s, fd), UV_EBADF);
  CHECK_EQ(coro_stream_open_fd(&s, -1), -EINVAL);
  CHECK_EQ(coro_stream_open_fd(NULL, 0), -EINVAL);
  /* A listening socket is no stream. */
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in sin = loopback(0);
  bind(lfd, (struct sockaddr *)&sin, sizeof(sin));
  listen(lfd, 1);
  CHECK_EQ(coro_stream_open_fd(&s, lfd), -EINVAL);
  close(lfd);
  /* A UDP socket neither. */
  int ufd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  CHECK_EQ(coro_stream_open_fd(&s, ufd), -EINVAL);
  close(ufd);
  /* A pipe: each end its own stream; closing the stream closes fd. */
  int p[2];
  CHECK_EQ(pipe2(p, O_CLOEXEC), 0);
  coro_stream *r, *w;
  CHECK_OK(coro_stream_open_fd(&r, p[0]));
  CHECK_OK(coro_stream_open_fd(&w, p[1]));
  CHECK_EQ(coro_stream_fileno(r), p[0]);
  CHECK_EQ(coro_tcp_nodelay(r, 1), -EINVAL); /* not TCP */
  /* A pipe cannot be half-closed; the write side stays usable. */
  CHECK_EQ(coro_stream_shutdown(w), UV_ENOTSOCK);
  CHECK_OK(coro_stream_write(w, "pipe", 4));
  char buf[8];
  CHECK_EQ(coro_stream_read_exactly(r, buf, 4), 4);
  CHECK(memcmp(buf, "pipe", 4) == 0);
  coro_stream_close(w);
  CHECK_EQ(fcntl(p[1], F_GETFD), -1);
  CHECK_EQ(coro_stream_read(r, buf, sizeof(buf)), 0);
  coro_stream_close(r);
  /* A TCP socket connected elsewhere. */
  coro_stream *a, *b;
  CHECK_OK(tcp_pair(&a, &b));
  int dupfd = fcntl(coro_stream_fileno(b), F_DUPFD_CLOEXEC, 0);
  coro_stream *c;
  CHECK_OK(coro_stream_open_fd(&c, dupfd));
  CHECK_OK(coro_tcp_nodelay(c, 1));
  CHECK_OK(coro_tcp_keepalive(c, 1, 30));
  CHECK_EQ(coro_tcp_keepalive(c, 1, 0), -EINVAL);
  struct sockaddr_storage ss;
  int len = sizeof(ss);
  CHECK_OK(coro_stream_sockname(c, &ss, &len));
  CHECK_EQ(ss.ss_family, AF_INET);
  CHECK_EQ(len, (int)sizeof(struct sockaddr_in));
  len = sizeof(ss);
  CHECK_OK(coro_stream_peername(a, &ss, &len));
  CHECK_EQ(ntohs(((struct sockaddr_in *)&ss)->sin_port),
           ntohs(((struct sockaddr_in *)&ss)->sin_port));
  CHECK_OK(coro_stream_write(a, "dup", 3));
  CHECK_EQ(coro_stream_read_exactly(c, buf, 3), 3);
  coro_stream_close(c);
  coro_stream_close(a);
  coro_stream_close(b);
  return NULL;
}

static void test_open_fd(void **state) {
  (void)state;
  assert_run_ok(open_fd_main);
}

/* A terminal: the slave side of a pseudo-terminal. */
static void *tty_main(void *arg) {
  (void)arg;
  int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (m < 0) return NULL; /* no pseudo-terminals here */
  CHECK_EQ(grantpt(m), 0);
  CHECK_EQ(unlockpt(m), 0);
  int sfd = open(ptsname(m), O_RDWR | O_NOCTTY | O_CLOEXEC);
  CHECK_GE(sfd, 0);
  coro_stream *t;
  CHECK_OK(coro_stream_open_fd(&t, sfd));
  CHECK_OK(coro_stream_write(t, "tty", 3));
  char buf[16];
  ssize_t n = 0;
  for (int i = 0; i < 200 && n < 3; i++) {
    ssize_t k = read(m, buf + n, sizeof(buf) - (size_t)n);
    if (k > 0) n += k;
    else coro_sleep(5);
  }
  CHECK_GE(n, 3);
  CHECK(memcmp(buf, "tty", 3) == 0);
  coro_stream_close(t);
  CHECK_EQ(fcntl(sfd, F_GETFD), -1); /* the stream closed the caller's fd */
  close(m);
  return NULL;
}

static void test_tty(void **state) {
  (void)state;
  assert_run_ok(tty_main);
}

/* ---- bad input, other loops, outside tasks -------------------------------------- */

static void *bad_input_main(void *arg) {
  (void)arg;
  char buf[8];
  CHECK_EQ(coro_stream_read(NULL, buf, 1), -EINVAL);
  CHECK_EQ(coro_stream_read_exactly(NULL, buf, 1), -EINVAL);
  CHECK_EQ(coro_stream_read_until(NULL, buf, 1, "\n", 1), -EINVAL);
  CHECK_EQ(coro_stream_read_line(NULL, buf, 1), -EINVAL);
  CHECK_EQ(coro_stream_write(NULL, buf, 1), -EINVAL);
  CHECK_EQ(coro_stream_writev(NULL, NULL, 0), -EINVAL);
  CHECK_EQ(coro_stream_shutdown(NULL), -EINVAL);
  CHECK_EQ(coro_stream_set_timeouts(NULL, 1, 1), -EINVAL);
  CHECK_EQ(coro_stream_set_limit(NULL, 1), -EINVAL);
  CHECK_EQ(coro_stream_fileno(NULL), -EINVAL);
  struct sockaddr_storage ss;
  int len = sizeof(ss);
  CHECK_EQ(coro_stream_peername(NULL, &ss, &len), -EINVAL);
  CHECK_EQ(coro_stream_sockname(NULL, &ss, &len), -EINVAL);
  CHECK_EQ(coro_tcp_nodelay(NULL, 1), -EINVAL);
  CHECK_EQ(coro_tcp_keepalive(NULL, 1, 1), -EINVAL);
  coro_stream *a, *b;
  CHECK_OK(tcp_pair(&a, &b));
  CHECK_EQ(coro_stream_read(a, NULL, 1), -EINVAL);
  CHECK_EQ(coro_stream_read(a, NULL, 0), 0);
  CHECK_EQ(coro_stream_read(a, buf, 0), 0);
  CHECK_EQ(coro_stream_read_exactly(a, NULL, 1), -EINVAL);
  CHECK_EQ(coro_stream_read_exactly(a, buf, 0), 0);
  CHECK_EQ(coro_stream_read_until(a, buf, 8, NULL, 1), -EINVAL);
  CHECK_EQ(coro_stream_read_until(a, buf, 8, "\n", 0), -EINVAL);
  CHECK_EQ(coro_stream_read_until(a, NULL, 8, "\n", 1), -EINVAL);
  CHECK_EQ(coro_stream_write(a, NULL, 1), -EINVAL);
  CHECK_OK(coro_stream_write(a, NULL, 0));
  CHECK_OK(coro_stream_write(a, buf, 0));
  static coro_iovec many[1025];
  CHECK_EQ(coro_stream_writev(a, many, 1025), -EINVAL);
  CHECK_OK(coro_stream_writev(a, many, 1024)); /* all empty */
  coro_iovec nullbase = {NULL, 3};
  CHECK_EQ(coro_stream_writev(a, &nullbase, 1), -EINVAL);
  CHECK_EQ(coro_stream_writev(a, NULL, 1), -EINVAL);
  CHECK_EQ(coro_stream_peername(a, NULL, &len), -EINVAL);
  CHECK_EQ(coro_stream_peername(a, &ss, NULL), -EINVAL);
  len = -1;
  CHECK_EQ(coro_stream_peername(a, &ss, &len), -EINVAL);
  /* Many small buffers in one writev (more than fit on the stack). */
  static char letters[100];
  coro_iovec iov[100];
  for (int i = 0; i < 100; i++) {
    letters[i] = (char)('A' + i % 26);
    iov[i].base = &letters[i];
    iov[i].len = 1;
  }
  CHECK_OK(coro_stream_writev(a, iov, 100));
  char got[100];
  CHECK_EQ(coro_stream_read_exactly(b, got, 100), 100);
  CHECK(memcmp(got, letters, 100) == 0);
  coro_stream_close(a);
  coro_stream_close(b);
  return NULL;
}

static void test_bad_input(void **state) {
  (void)state;
  assert_run_ok(bad_input_main);
  /* Outside any loop. */
  coro_stream *s = (coro_stream *)1;
  assert_coro_err(coro_tcp_connect(&s, "127.0.0.1", "1", 100), -EPERM);
  assert_null(s);
  assert_coro_err(coro_unix_connect(&s, "/nonexistent", 100), -EPERM);
  struct sockaddr_in sin = loopback(1);
  assert_coro_err(coro_tcp_connect_addr(&s, (struct sockaddr *)&sin, 100), -EPERM);
  assert_coro_err(coro_stream_open_fd(&s, 0), -EPERM);
}

/* A stream used from another loop's thread: -EPERM, nothing done. */
typedef struct other_loop {
  coro_stream *s;
  int r_read, r_write, r_close, r_limit;
} other_loop;

static void *other_loop_main(void *arg) {
  other_loop *o = arg;
  char c;
  o->r_read = (int)coro_stream_read(o->s, &c, 1);
  o->r_write = coro_stream_write(o->s, "x", 1);
  o->r_limit = coro_stream_set_limit(o->s, 100);
  o->r_close = coro_stream_close(o->s);
  return NULL;
}

static void *other_thread(void *arg) {
  coro_run(other_loop_main, arg, NULL);
  return NULL;
}

static void *other_loop_test_main(void *arg) {
  (void)arg;
  coro_stream *a, *b;
  CHECK_OK(tcp_pair(&a, &b));
  other_loop o = {a, 1, 1, 1, 1};
  pthread_t th;
  CHECK_EQ(pthread_create(&th, NULL, other_thread, &o), 0);
  pthread_join(th, NULL);
  CHECK_EQ(o.r_read, -EPERM);
  CHECK_EQ(o.r_write, -EPERM);
  CHECK_EQ(o.r_limit, -EPERM);
  CHECK_EQ(o.r_close, -EPERM);
  /* Still fine here. */
  CHECK_OK(coro_stream_write(a, "k", 1));
  char c;
  CHECK_EQ(coro_stream_read(b, &c, 1), 1);
  coro_stream_close(a);
  coro_stream_close(b);
  return NULL;
}

static void test_other_loop(void **state) {
  (void)state;
  assert_run_ok(other_loop_test_main);
}

/* Allocation failures while making streams: -ENOMEM and nothing left. */
static void *alloc_fail_main(void *arg) {
  (void)arg;
  coro_server *srv;
  CHECK_OK(coro_tcp_listen(&srv, "127.0.0.1", "0", NULL));
  int port = coro_server_port(srv);
  int failed = 0;
  for (long n = 1; n <= 6; n++) {
    struct sockaddr_in sin = loopback(port);
    coro_stream *c = NULL, *s = NULL;
    coro_test_fail_alloc_after(n);
    int r = coro_tcp_connect_addr(&c, (struct sockaddr *)&sin, 5000);
    coro_test_fail_alloc_after(0);
    CHECK(r == 0 || r == -ENOMEM);
    if (r != 0) {
      failed++;
      CHECK_PTR_EQ(c, NULL);
      continue;
    }
    coro_test_fail_alloc_after(n);
    r = coro_server_accept(srv, &s);
    coro_test_fail_alloc_after(0);
    CHECK(r == 0 || r == -ENOMEM);
    if (r == 0) {
      /* First read: the buffer's allocation may fail too. */
      CHECK_OK(coro_stream_write(c, "z", 1));
      char ch;
      coro_test_fail_alloc_after(1);
      ssize_t k = coro_stream_read(s, &ch, 1);
      coro_test_fail_alloc_after(0);
      CHECK(k == 1 || k == -ENOMEM);
      coro_stream_close(s);
    } else {
      failed++;
    }
    coro_stream_close(c);
  }
  CHECK_GT(failed, 0);
  int sv[2];
  socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
  coro_stream *p;
  coro_test_fail_alloc_after(1);
  CHECK_EQ(coro_stream_open_fd(&p, sv[0]), -ENOMEM);
  coro_test_fail_alloc_after(0);
  CHECK_EQ(fcntl(sv[0], F_GETFD) >= 0, 1); /* still the caller's */
  close(sv[0]);
  close(sv[1]);
  coro_server_close(srv);
  return NULL;
}

static void test_alloc_failures(void **state) {
  (void)state;
  assert_run_ok(alloc_fail_main);
}

/* ---- a real peer: Python's asyncio ------------------------------------------ */

static const char py_echo_server[] =
    "import asyncio, sys\n"
    "async def handle(r, w):\n"
    "    while True:\n"
    "        line = await r.readline()\n"
    "        if not line: break\n"
    "        w.write(line)\n"
    "        await w.drain()\n"
    "    w.close()\n"
    "    await w.wait_closed()\n"
    "    done.set()\n"
    "async def main():\n"
    "    global done\n"
    "    done = asyncio.Event()\n"
    "    srv = await asyncio.start_server(handle, '127.0.0.1', 0)\n"
    "    print(srv.sockets[0].getsockname()[1], flush=True)\n"
    "    await asyncio.wait_for(done.wait(), 30)\n"
    "    srv.close()\n"
    "asyncio.run(main())\n";

static void *python_server_main(void *arg) {
  (void)arg;
  coro_stream *out = NULL;
  int pid = coro_test_python_start(py_echo_server, NULL, &out);
  CHECK_GT(pid, 0);
  char line[64];
  CHECK_GT(coro_test_python_line(out, line, sizeof(line)), 1);
  coro_stream *c;
  CHECK_OK(coro_tcp_connect(&c, "127.0.0.1", line, 10000));
  if (coro_test_failed_line == 0) {
    static unsigned char msg[300000];
    for (size_t i = 0; i < sizeof(msg); i++)
      msg[i] = (i % 1000 == 999) ? '\n' : (unsigned char)('a' + i % 26);
    writer_job w = {c, msg, sizeof(msg), 7777, 0, 1};
    coro_future *f = coro_test_spawn(writer_task, &w);
    static unsigned char back[300000];
    CHECK_EQ(coro_stream_read_exactly(c, back, sizeof(back)), (ssize_t)sizeof(back));
    CHECK(memcmp(msg, back, sizeof(msg)) == 0);
    CHECK_OK(coro_test_join(f));
    CHECK_OK(coro_stream_shutdown(c));
    CHECK_EQ(coro_stream_read(c, back, 1), 0);
    coro_stream_close(c);
  }
  CHECK_EQ(coro_test_python_wait(pid, out), 0);
  return NULL;
}

static void test_python_server(void **state) {
  (void)state;
  if (!coro_test_have_python()) skip();
  assert_run_ok(python_server_main);
}

/* What a program forgets to close is closed and freed when coro_run ends:
 * the fixture finds no descriptor and no allocation left. A task still
 * waits on one of them until the end (it is cancelled first). */
static void *left_open_reader(void *arg) {
  char c;
  CHECK_ERR(coro_stream_read(arg, &c, 1), -ECANCELED);
  return NULL;
}

static void *left_open_main(void *arg) {
  (void)arg;
  coro_stream *a, *b;
  CHECK_OK(tcp_pair(&a, &b));
  coro_server *srv;
  CHECK_OK(coro_tcp_listen(&srv, "127.0.0.1", "0", NULL));
  coro_stream *u, *v;
  CHECK_OK(unix_pair(&u, &v));
  CHECK_OK(coro_stream_write(a, "x", 1));
  coro_future *f;
  CHECK_OK(coro_spawn(&f, left_open_reader, v));
  coro_future_release(f);
  coro_test_yields(1);
  return NULL; /* a, b, srv, u, v stay open */
}

static void test_left_open_closed_at_end(void **state) {
  (void)state;
  long before = coro_test_live_allocs();
  assert_run_ok(left_open_main);
  assert_int_equal(coro_test_live_allocs(), before);
}

/* ---- a read buffer that cannot be allocated ------------------------------------ */

/* The read buffer's allocation fails once: that read returns -ENOMEM, and
 * the stream is not broken by it: the next read gets the bytes, which
 * waited in the kernel. */
static void *read_alloc_fails_once_main(void *arg) {
  (void)arg;
  coro_stream *a, *b;
  CHECK_OK(tcp_pair(&a, &b));
  CHECK_OK(coro_stream_write(a, "hello", 5));
  char buf[16];
  /* No read has run on this loop yet: the buffer is allocated now. */
  coro_test_fail_alloc_after(1);
  ssize_t n = coro_stream_read(b, buf, sizeof(buf));
  coro_test_fail_alloc_after(0);
  CHECK_EQ(n, -ENOMEM);
  CHECK_EQ(coro_stream_read(b, buf, sizeof(buf)), 5);
  CHECK(memcmp(buf, "hello", 5) == 0);
  /* And it goes on as usual. */
  CHECK_OK(coro_stream_write(a, "world", 5));
  CHECK_EQ(coro_stream_read_exactly(b, buf, 5), 5);
  CHECK(memcmp(buf, "world", 5) == 0);
  coro_stream_close(a);
  coro_stream_close(b);
  return NULL;
}

static void test_read_alloc_fails_once(void **state) {
  (void)state;
  assert_run_ok(read_alloc_fails_once_main);
}

int main(int argc, char **argv) {
  const struct CMUnitTest tests[] = {
#define T(x) cmocka_unit_test_setup_teardown(x, coro_test_setup_os, coro_test_teardown_os)
      T(test_echo),
      T(test_unix_listen),
      T(test_one_byte_chunks),
      T(test_big_message),
      T(test_eof_part_way),
      T(test_shutdown_cancel),
      T(test_read_until),
      T(test_limit),
      T(test_slow_reader),
      T(test_reset_by_peer),
      T(test_write_closed_peer),
      T(test_read_cancel_timeout),
      T(test_abandoned_write),
      T(test_abandoned_pipe_write),
      T(test_pipe_big_write),
      T(test_write_done_then_cancel),
      T(test_connect_cancel_timeout),
      T(test_connect_errors),
      T(test_two_readers_two_writers),
      T(test_close_while_waiting),
      T(test_open_fd),
      T(test_tty),
      T(test_bad_input),
      T(test_other_loop),
      T(test_alloc_failures),
      T(test_python_server),
      T(test_left_open_closed_at_end),
      T(test_read_alloc_fails_once),
#undef T
  };
  return coro_test_main(argc, argv, tests, coro_test_warm_up_uv, NULL);
}
