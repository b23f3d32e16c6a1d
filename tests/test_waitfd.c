/* SPDX-License-Identifier: MIT */
/* coro_wait_fd: readable after a write, writable at once, a hang-up counts
 * as readable, an error condition, several tasks on one descriptor (same
 * events, and a reader beside a writer), many descriptors at once,
 * timeouts (and timeout 0), cancellation, timeout scopes, a new wait while
 * the old handle still closes, descriptors epoll refuses, bad input, and
 * a pipe and an eventfd written from another thread. */
#include "helpers.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

enum { R = CORO_READABLE, W = CORO_WRITABLE };

typedef struct waitarg {
  int fd;
  int events;
  int64_t timeout;
  int result;
  int returned;
} waitarg;

static void *wait_task(void *arg) {
  waitarg *a = arg;
  a->result = coro_wait_fd(a->fd, a->events, a->timeout);
  a->returned = 1;
  return NULL;
}

/* Yield a few times, then write one byte to *fd. */
static void *late_write_task(void *arg) {
  int fd = *(int *)arg;
  coro_test_yields(3);
  CHECK_EQ(write(fd, "w", 1), 1);
  return NULL;
}

static int pair(int sv[2]) {
  return socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
}

/* a (its task f) still waits for sv[0] to be readable: one byte written
 * to sv[1] wakes it with R. */
static void byte_wakes(const int sv[2], waitarg *a, coro_future *f) {
  CHECK_EQ(a->returned, 0);
  CHECK_EQ(write(sv[1], "x", 1), 1);
  CHECK_EQ(coro_test_join(f), 0);
  CHECK_EQ(a->result, R);
}

/* ---- readiness ------------------------------------------------------------------ */

static void *readable_main(void *arg) {
  (void)arg;
  int sv[2];
  CHECK_EQ(pair(sv), 0);
  CHECK_EQ(coro_wait_fd(sv[0], R, 0), -ETIMEDOUT); /* nothing there yet */
  waitarg a = {sv[0], R, CORO_FOREVER, 0, 0};
  coro_future *f = coro_test_spawn(wait_task, &a);
  coro_test_yields(3);
  byte_wakes(sv, &a, f);
  /* Level-triggered: still readable until read; asking for both gives
   * both, since a socket with room is writable too. */
  CHECK_EQ(coro_wait_fd(sv[0], R, CORO_FOREVER), R);
  CHECK_EQ(coro_wait_fd(sv[0], R | W, CORO_FOREVER), R | W);
  CHECK_EQ(coro_wait_fd(sv[0], R, 0), R);
  char c;
  CHECK_EQ(read(sv[0], &c, 1), 1);
  CHECK_EQ(coro_wait_fd(sv[0], R, 0), -ETIMEDOUT);
  close(sv[0]);
  close(sv[1]);
  return NULL;
}

static void test_readable_after_write(void **state) {
  (void)state;
  assert_run_ok(readable_main);
}

static void *writable_main(void *arg) {
  (void)arg;
  int sv[2];
  CHECK_EQ(pair(sv), 0);
  CHECK_EQ(coro_wait_fd(sv[0], W, CORO_FOREVER), W);
  CHECK_EQ(coro_wait_fd(sv[0], W, 5000), W);
  CHECK_EQ(coro_wait_fd(sv[0], W, 0), W);
  /* Only the ready part of the mask. */
  CHECK_EQ(coro_wait_fd(sv[0], R | W, CORO_FOREVER), W);
  CHECK_EQ(coro_wait_fd(sv[0], R | W, 0), W);
  close(sv[0]);
  close(sv[1]);
  return NULL;
}

static void test_writable_at_once(void **state) {
  (void)state;
  assert_run_ok(writable_main);
}

static void *hangup_main(void *arg) {
  (void)arg;
  int sv[2];
  CHECK_EQ(pair(sv), 0);
  waitarg a = {sv[0], R, CORO_FOREVER, 0, 0};
  coro_future *f = coro_test_spawn(wait_task, &a);
  coro_test_yields(3);
  CHECK_EQ(a.returned, 0);
  close(sv[1]); /* the peer hangs up */
  CHECK_EQ(coro_test_join(f), 0);
  CHECK_EQ(a.result, R);
  CHECK_EQ(coro_wait_fd(sv[0], R, 0), R);
  char c;
  CHECK_EQ(read(sv[0], &c, 1), 0); /* end of stream */
  close(sv[0]);
  return NULL;
}

static void test_hangup_is_readable(void **state) {
  (void)state;
  assert_run_ok(hangup_main);
}

/* An error condition (a UDP socket whose datagram was refused): ready,
 * and the next read reports the error. */
static void *error_main(void *arg) {
  (void)arg;
  /* A port nobody listens on: bind one, note it, close it. */
  int probe = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  CHECK(probe >= 0);
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t sl = sizeof(sa);
  CHECK_EQ(bind(probe, (struct sockaddr *)&sa, sizeof(sa)), 0);
  CHECK_EQ(getsockname(probe, (struct sockaddr *)&sa, &sl), 0);
  close(probe);
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  CHECK(fd >= 0);
  CHECK_EQ(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  /* Waiting when the error comes (libuv reports it as an error status). */
  waitarg a = {fd, W | R, 10000, 0, 0};
  waitarg b = {fd, R, 10000, 0, 0};
  CHECK_EQ(coro_wait_fd(fd, R, 0), -ETIMEDOUT);
  coro_future *fa = NULL;
  coro_future *fb = coro_test_spawn(wait_task, &b);
  coro_test_yields(2);
  CHECK_EQ(b.returned, 0);
  CHECK_EQ(send(fd, "x", 1, 0), 1);
  CHECK_EQ(coro_test_join(fb), 0);
  CHECK_EQ(b.result, R);
  char c;
  CHECK_EQ(recv(fd, &c, 1, MSG_DONTWAIT), -1);
  CHECK_EQ(errno, ECONNREFUSED);
  /* There when the wait starts. */
  CHECK_EQ(send(fd, "x", 1, 0), 1);
  CHECK_EQ(coro_sleep(10), 0);
  fa = coro_test_spawn(wait_task, &a);
  CHECK_EQ(coro_test_join(fa), 0);
  CHECK_EQ(a.result, R | W);
  CHECK_EQ(recv(fd, &c, 1, MSG_DONTWAIT), -1);
  CHECK_EQ(errno, ECONNREFUSED);
  close(fd);
  return NULL;
}

static void test_error_is_ready(void **state) {
  (void)state;
  assert_run_ok(error_main);
}

/* ---- several waiters ------------------------------------------------------------- */

static void *two_readers_main(void *arg) {
  (void)arg;
  int sv[2];
  CHECK_EQ(pair(sv), 0);
  waitarg a = {sv[0], R, CORO_FOREVER, 0, 0};
  waitarg b = {sv[0], R, 60000, 0, 0};
  coro_future *fa = coro_test_spawn(wait_task, &a);
  coro_future *fb = coro_test_spawn(wait_task, &b);
  coro_test_yields(3);
  CHECK_EQ(a.returned + b.returned, 0);
  CHECK_EQ(write(sv[1], "x", 1), 1);
  CHECK_EQ(coro_test_join(fa), 0);
  CHECK_EQ(coro_test_join(fb), 0);
  CHECK_EQ(a.result, R);
  CHECK_EQ(b.result, R);
  close(sv[0]);
  close(sv[1]);
  return NULL;
}

static void test_two_tasks_same_events(void **state) {
  (void)state;
  assert_run_ok(two_readers_main);
}

/* Fill fd's send buffer until a write would block. */
static void fill(int fd) {
  int fl = fcntl(fd, F_GETFL);
  fcntl(fd, F_SETFL, fl | O_NONBLOCK);
  static char buf[4096];
  while (write(fd, buf, sizeof(buf)) > 0) {
  }
  CHECK(errno == EAGAIN || errno == EWOULDBLOCK);
}

static void drain(int fd) {
  char buf[4096];
  while (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0) {
  }
}

static void *reader_writer_main(void *arg) {
  (void)arg;
  int sv[2];
  CHECK_EQ(pair(sv), 0);
  int sz = 4096;
  setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
  fill(sv[0]);
  CHECK_EQ(coro_wait_fd(sv[0], W, 0), -ETIMEDOUT);
  waitarg rd = {sv[0], R, CORO_FOREVER, 0, 0};
  waitarg wr = {sv[0], W, CORO_FOREVER, 0, 0};
  coro_future *fr = coro_test_spawn(wait_task, &rd);
  coro_future *fw = coro_test_spawn(wait_task, &wr);
  coro_test_yields(3);
  CHECK_EQ(rd.returned + wr.returned, 0);
  /* Data for the reader: only the reader wakes. */
  CHECK_EQ(write(sv[1], "x", 1), 1);
  CHECK_EQ(coro_test_join(fr), 0);
  CHECK_EQ(rd.result, R);
  CHECK_EQ(coro_sleep(20), 0); /* iterations in which the writer stays put */
  CHECK_EQ(wr.returned, 0);
  /* The reader waits again while the writer still does. */
  char c;
  CHECK_EQ(read(sv[0], &c, 1), 1);
  rd.returned = 0;
  fr = coro_test_spawn(wait_task, &rd);
  coro_test_yields(3);
  CHECK_EQ(rd.returned, 0);
  /* Room for the writer: only the writer wakes. */
  drain(sv[1]);
  CHECK_EQ(coro_test_join(fw), 0);
  CHECK_EQ(wr.result, W);
  CHECK_EQ(coro_sleep(20), 0);
  CHECK_EQ(rd.returned, 0);
  CHECK_EQ(write(sv[1], "y", 1), 1);
  CHECK_EQ(coro_test_join(fr), 0);
  CHECK_EQ(rd.result, R);
  close(sv[0]);
  close(sv[1]);
  return NULL;
}

static void test_reader_and_writer_on_one_fd(void **state) {
  (void)state;
  assert_run_ok(reader_writer_main);
}

/* More descriptors than the table has buckets, all waited on at once,
 * woken in a different order than they started. */
#define MANY 100
static void *many_main(void *arg) {
  (void)arg;
  static int sv[MANY][2];
  static waitarg a[MANY];
  coro_future *f[MANY];
  for (int i = 0; i < MANY; i++) {
    CHECK_EQ(pair(sv[i]), 0);
    a[i] = (waitarg){sv[i][0], R, CORO_FOREVER, 0, 0};
    f[i] = coro_test_spawn(wait_task, &a[i]);
  }
  coro_test_yields(3);
  for (int i = MANY - 1; i >= 0; i -= 2) CHECK_EQ(write(sv[i][1], "x", 1), 1);
  for (int i = MANY - 1; i >= 0; i -= 2) {
    CHECK_EQ(coro_test_join(f[i]), 0);
    CHECK_EQ(a[i].result, R);
  }
  for (int i = 0; i < MANY; i += 2) CHECK_EQ(a[i].returned, 0);
  for (int i = 0; i < MANY; i += 2) CHECK_EQ(write(sv[i][1], "x", 1), 1);
  for (int i = 0; i < MANY; i += 2) {
    CHECK_EQ(coro_test_join(f[i]), 0);
    CHECK_EQ(a[i].result, R);
  }
  for (int i = 0; i < MANY; i++) {
    close(sv[i][0]);
    close(sv[i][1]);
  }
  return NULL;
}

static void test_many_descriptors(void **state) {
  (void)state;
  assert_run_ok(many_main);
}

/* ---- timeouts and cancellation ------------------------------------------------ */

static void *timeout_main(void *arg) {
  (void)arg;
  int sv[2];
  CHECK_EQ(pair(sv), 0);
  int64_t t0 = coro_test_now_ms();
  CHECK_EQ(coro_wait_fd(sv[0], R, 20), -ETIMEDOUT);
  CHECK(coro_test_now_ms() - t0 >= 20);
  /* A timed-out wait beside one that is woken. */
  waitarg a = {sv[0], R, CORO_FOREVER, 0, 0};
  coro_future *f = coro_test_spawn(wait_task, &a);
  CHECK_EQ(coro_wait_fd(sv[0], R, 10), -ETIMEDOUT);
  byte_wakes(sv, &a, f);
  close(sv[0]);
  close(sv[1]);
  return NULL;
}

static void test_timeout(void **state) {
  (void)state;
  assert_run_ok(timeout_main);
}

static void *cancel_main(void *arg) {
  (void)arg;
  int sv[2];
  CHECK_EQ(pair(sv), 0);
  waitarg a = {sv[0], R, CORO_FOREVER, 0, 0};
  coro_future *f = coro_test_spawn(wait_task, &a);
  coro_test_yields(3);
  CHECK_EQ(coro_cancel(f), 0);
  CHECK_EQ(coro_test_join(f), 0);
  CHECK_EQ(a.result, -ECANCELED);
  /* Its handle is closing now; a new wait on the same descriptor gets a
   * new one. */
  coro_future *w = coro_test_spawn(late_write_task, &sv[1]);
  CHECK_EQ(coro_wait_fd(sv[0], R, CORO_FOREVER), R);
  CHECK_EQ(coro_test_join(w), 0);
  char ch;
  CHECK_EQ(read(sv[0], &ch, 1), 1);
  /* Cancel one of two waiters: the other stays and is woken. */
  waitarg b = {sv[0], R, CORO_FOREVER, 0, 0};
  waitarg c = {sv[0], R, CORO_FOREVER, 0, 0};
  coro_future *fb = coro_test_spawn(wait_task, &b);
  coro_future *fc = coro_test_spawn(wait_task, &c);
  coro_test_yields(3);
  CHECK_EQ(coro_cancel(fb), 0);
  CHECK_EQ(coro_test_join(fb), 0);
  CHECK_EQ(b.result, -ECANCELED);
  byte_wakes(sv, &c, fc);
  close(sv[0]);
  close(sv[1]);
  return NULL;
}

static void test_cancel(void **state) {
  (void)state;
  assert_run_ok(cancel_main);
}

static void *scope_main(void *arg) {
  (void)arg;
  int sv[2];
  CHECK_EQ(pair(sv), 0);
  coro_timeout t;
  CHECK_EQ(coro_timeout_enter(&t, 20), 0);
  int r = coro_wait_fd(sv[0], R, CORO_FOREVER);
  CHECK_EQ(r, -ECANCELED);
  CHECK_EQ(coro_timeout_exit(&t, r), -ETIMEDOUT);
  /* The scope's deadline before the call's own. */
  CHECK_EQ(coro_timeout_enter(&t, 10), 0);
  r = coro_wait_fd(sv[0], R, 60000);
  CHECK_EQ(coro_timeout_exit(&t, r), -ETIMEDOUT);
  /* A scope that does not fire. */
  CHECK_EQ(coro_timeout_enter(&t, 60000), 0);
  r = coro_wait_fd(sv[0], W, CORO_FOREVER);
  CHECK_EQ(coro_timeout_exit(&t, r), W);
  close(sv[0]);
  close(sv[1]);
  return NULL;
}

static void test_timeout_scope(void **state) {
  (void)state;
  assert_run_ok(scope_main);
}

/* ---- refused descriptors and bad input ---------------------------------------- */

static void *refused_main(void *arg) {
  (void)arg;
  char path[] = "/tmp/coro-waitfd-XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0);
  unlink(path);
  CHECK_EQ(coro_wait_fd(fd, R, CORO_FOREVER), UV_EPERM);
  CHECK_EQ(coro_wait_fd(fd, W, 100), UV_EPERM);
  CHECK_EQ(coro_wait_fd(fd, R, 0), UV_EPERM);
  int dfd = open("/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  CHECK(dfd >= 0);
  CHECK_EQ(coro_wait_fd(dfd, R, CORO_FOREVER), UV_EPERM);
  CHECK_EQ(coro_wait_fd(dfd, R, 0), UV_EPERM);
  close(dfd);
  /* A closed descriptor. */
  close(fd);
  CHECK_EQ(coro_wait_fd(fd, R, CORO_FOREVER), UV_EBADF);
  CHECK_EQ(coro_wait_fd(fd, R, 0), UV_EBADF);
  CHECK_EQ(coro_wait_fd(-1, R, CORO_FOREVER), UV_EBADF);
  CHECK_EQ(coro_wait_fd(-1, W, 0), UV_EBADF);
  /* Bad masks and timeouts. */
  int sv[2];
  CHECK_EQ(pair(sv), 0);
  CHECK_EQ(coro_wait_fd(sv[0], 0, CORO_FOREVER), -EINVAL);
  CHECK_EQ(coro_wait_fd(sv[0], 4, CORO_FOREVER), -EINVAL);
  CHECK_EQ(coro_wait_fd(sv[0], R | 8, 0), -EINVAL);
  CHECK_EQ(coro_wait_fd(sv[0], -1, CORO_FOREVER), -EINVAL);
  CHECK_EQ(coro_wait_fd(sv[0], W, -2), -EINVAL);
  close(sv[0]);
  close(sv[1]);
  return NULL;
}

static void test_refused_and_bad_input(void **state) {
  (void)state;
  assert_run_ok(refused_main);
  assert_coro_err(coro_wait_fd(0, R, 0), -EPERM); /* outside a task */
}

/* A descriptor another libuv handle of the loop watches already. */
static void poll_cb_none(uv_poll_t *h, int status, int events) {
  (void)h;
  (void)status;
  (void)events;
}

static void *eexist_main(void *arg) {
  (void)arg;
  int sv[2];
  CHECK_EQ(pair(sv), 0);
  static uv_poll_t ph;
  CHECK_EQ(uv_poll_init(coro_loop_uv(coro_loop_current()), &ph, sv[0]), 0);
  CHECK_EQ(uv_poll_start(&ph, UV_READABLE, poll_cb_none), 0);
  CHECK_EQ(coro_wait_fd(sv[0], R, CORO_FOREVER), UV_EEXIST);
  uv_close((uv_handle_t *)&ph, NULL);
  coro_test_yields(2);
  /* Closed: the descriptor is free for coro_wait_fd again. */
  coro_future *w = coro_test_spawn(late_write_task, &sv[1]);
  CHECK_EQ(coro_wait_fd(sv[0], R, CORO_FOREVER), R);
  CHECK_EQ(coro_test_join(w), 0);
  close(sv[0]);
  close(sv[1]);
  return NULL;
}

static void test_watched_elsewhere(void **state) {
  (void)state;
  assert_run_ok(eexist_main);
}

/* ---- other threads ---------------------------------------------------------------- */

typedef struct writer {
  int fd;
  uint64_t value;
  size_t len;
} writer;

static void *writer_thread(void *arg) {
  writer *w = arg;
  usleep(10000);
  if (write(w->fd, &w->value, w->len) != (ssize_t)w->len) abort();
  return NULL;
}

static void *thread_main(void *arg) {
  (void)arg;
  /* A pipe. */
  int p[2];
  CHECK_EQ(pipe2(p, O_CLOEXEC), 0);
  writer w = {p[1], 7, 1};
  pthread_t th;
  CHECK_EQ(pthread_create(&th, NULL, writer_thread, &w), 0);
  CHECK_EQ(coro_wait_fd(p[0], R, CORO_FOREVER), R);
  char c;
  CHECK_EQ(read(p[0], &c, 1), 1);
  CHECK_EQ(c, 7);
  pthread_join(th, NULL);
  /* The write end of an empty pipe is writable, its read end is not. */
  CHECK_EQ(coro_wait_fd(p[1], W, CORO_FOREVER), W);
  CHECK_EQ(coro_wait_fd(p[0], R, 0), -ETIMEDOUT);
  close(p[1]);
  CHECK_EQ(coro_wait_fd(p[0], R, CORO_FOREVER), R); /* hang-up */
  close(p[0]);
  /* An eventfd. */
  int efd = eventfd(0, EFD_CLOEXEC);
  CHECK(efd >= 0);
  writer e = {efd, 5, sizeof(uint64_t)};
  CHECK_EQ(pthread_create(&th, NULL, writer_thread, &e), 0);
  CHECK_EQ(coro_wait_fd(efd, R, CORO_FOREVER), R);
  uint64_t v = 0;
  CHECK_EQ(read(efd, &v, sizeof(v)), (ssize_t)sizeof(v));
  CHECK_EQ(v, 5);
  pthread_join(th, NULL);
  close(efd);
  return NULL;
}

static void test_pipe_and_eventfd_from_thread(void **state) {
  (void)state;
  assert_run_ok(thread_main);
}

/* Loops one after the other on one thread: each has its own table. */
static void *again_main(void *arg) {
  int *sv = arg;
  CHECK_EQ(coro_wait_fd(sv[0], W, CORO_FOREVER), W);
  waitarg a = {sv[0], R, CORO_FOREVER, 0, 0};
  coro_future *f = coro_test_spawn(wait_task, &a);
  coro_test_yields(2);
  CHECK_EQ(write(sv[1], "x", 1), 1);
  CHECK_EQ(coro_test_join(f), 0);
  CHECK_EQ(a.result, R);
  char c;
  CHECK_EQ(read(sv[0], &c, 1), 1);
  return NULL;
}

static void test_loops_in_turn(void **state) {
  (void)state;
  int sv[2];
  assert_int_equal(pair(sv), 0);
  for (int i = 0; i < 3; i++) {
    assert_coro_ok(coro_run(again_main, sv, NULL));
    assert_checks_passed();
  }
  close(sv[0]);
  close(sv[1]);
}

static void *empty_main(void *arg) {
  return arg;
}

/* ---- non-blocking after the first wait -------------------------------------- */

static int nonblocking(int fd) {
  int fl = fcntl(fd, F_GETFL);
  return fl >= 0 && (fl & O_NONBLOCK) != 0;
}

/* The first wait leaves the descriptor non-blocking whichever way it was
 * answered: at once (ready already, or timeout 0) or through the loop. A
 * caller that then reads until EAGAIN must never block the loop. */
static void *nonblocking_main(void *arg) {
  (void)arg;
  int p[2];
  CHECK_EQ(pipe2(p, O_CLOEXEC), 0);
  CHECK(!nonblocking(p[0]));
  CHECK(!nonblocking(p[1]));
  /* Timeout 0, not ready. */
  CHECK_ERR(coro_wait_fd(p[0], CORO_READABLE, 0), -ETIMEDOUT);
  CHECK(nonblocking(p[0]));
  /* Ready already: the write end of an empty pipe. */
  CHECK_EQ(coro_wait_fd(p[1], CORO_WRITABLE, CORO_FOREVER), CORO_WRITABLE);
  CHECK(nonblocking(p[1]));
  close(p[0]);
  close(p[1]);
  /* Readable already, then read until EAGAIN: no blocking read. */
  CHECK_EQ(pipe2(p, O_CLOEXEC), 0);
  CHECK_EQ(write(p[1], "x", 1), 1);
  CHECK_EQ(coro_wait_fd(p[0], CORO_READABLE, CORO_FOREVER), CORO_READABLE);
  CHECK(nonblocking(p[0]));
  char c;
  CHECK_EQ(read(p[0], &c, 1), 1);
  if (nonblocking(p[0])) {
    CHECK_EQ(read(p[0], &c, 1), -1);
    CHECK(errno == EAGAIN || errno == EWOULDBLOCK);
  }
  /* A regular file is refused and left as it was. */
  char path[] = "/tmp/coro-waitfd-XXXXXX";
  int f = mkstemp(path);
  CHECK_GE(f, 0);
  unlink(path);
  CHECK_ERR(coro_wait_fd(f, CORO_READABLE, CORO_FOREVER), UV_EPERM);
  CHECK(!nonblocking(f));
  close(f);
  close(p[0]);
  close(p[1]);
  return NULL;
}

static void test_nonblocking_after_first_wait(void **state) {
  (void)state;
  assert_run_ok(nonblocking_main);
}

int main(int argc, char **argv) {
  /* libuv opens descriptors of its own once per process, with the first
   * loop: open them before the first test counts descriptors. */
  coro_run(empty_main, NULL, NULL);
  const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, coro_test_setup_os, coro_test_teardown_os)
      T(test_readable_after_write),
      T(test_writable_at_once),
      T(test_hangup_is_readable),
      T(test_error_is_ready),
      T(test_two_tasks_same_events),
      T(test_reader_and_writer_on_one_fd),
      T(test_many_descriptors),
      T(test_timeout),
      T(test_cancel),
      T(test_timeout_scope),
      T(test_refused_and_bad_input),
      T(test_watched_elsewhere),
      T(test_pipe_and_eventfd_from_thread),
      T(test_loops_in_turn),
      T(test_nonblocking_after_first_wait),
#undef T
  };
  return coro_test_main(argc, argv, tests, NULL, NULL);
}
