/* SPDX-License-Identifier: MIT */
/* UDP: ping-pong on 127.0.0.1 and ::1, the sender's address, truncation,
 * empty datagrams, a connected socket (send to NULL, only its peer's
 * datagrams received), sending without a peer, two receivers, close while
 * a task receives, cancellation and timeouts of a receive that lose no
 * datagram, 1,000 datagrams in order, SO_REUSEPORT, and bad input. */
#include "helpers.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

static int port_of(coro_udp *u) {
  struct sockaddr_storage ss;
  int len = (int)sizeof(ss);
  if (coro_udp_sockname(u, &ss, &len) != 0) return -1;
  if (ss.ss_family == AF_INET) {
    CHECK_EQ(len, sizeof(struct sockaddr_in));
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
  }
  CHECK_EQ(len, sizeof(struct sockaddr_in6));
  return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

static void port_str(coro_udp *u, char out[8]) {
  snprintf(out, 8, "%d", port_of(u));
}

/* The address of u as a peer (its bound address and port). */
static void addr_of(coro_udp *u, struct sockaddr_storage *ss) {
  int len = (int)sizeof(*ss);
  CHECK_EQ(coro_udp_sockname(u, ss, &len), 0);
}

/* Two sockets bound to 127.0.0.1 (any port), and *to the address of b
 * (when to is not NULL). Returns 0, or -1 after a failed CHECK, with
 * nothing left open. */
static int loopback_pair(coro_udp **a, coro_udp **b,
                         struct sockaddr_storage *to) {
  *a = NULL;
  *b = NULL;
  CHECK_EQ(coro_udp_bind(a, "127.0.0.1", "0", NULL), 0);
  CHECK_EQ(coro_udp_bind(b, "127.0.0.1", "0", NULL), 0);
  if (*a == NULL || *b == NULL) {
    if (*a != NULL) coro_udp_close(*a);
    if (*b != NULL) coro_udp_close(*b);
    return -1;
  }
  if (to != NULL) addr_of(*b, to);
  return 0;
}

/* ---- ping-pong ------------------------------------------------------------------- */

typedef struct echo_arg {
  coro_udp *u;
  int rounds;
} echo_arg;

static void *echo_task(void *arg) {
  echo_arg *e = arg;
  char buf[256];
  for (int i = 0; i < e->rounds; i++) {
    struct sockaddr_storage from;
    int trunc = -1;
    ssize_t n = coro_udp_recv(e->u, buf, sizeof(buf), &from, &trunc);
    CHECK(n >= 0);
    CHECK_EQ(trunc, 0);
    if (n < 0) break;
    CHECK_EQ(coro_udp_send(e->u, buf, (size_t)n, (struct sockaddr *)&from), 0);
  }
  return NULL;
}

static void ping_pong(const char *host, int family) {
  coro_udp *srv = NULL, *cli = NULL;
  CHECK_EQ(coro_udp_bind(&srv, host, "0", NULL), 0);
  CHECK_EQ(coro_udp_bind(&cli, host, "0", NULL), 0);
  if (srv == NULL || cli == NULL) return;
  CHECK(port_of(srv) > 0);
  echo_arg e = {srv, 10};
  coro_future *f = coro_test_spawn(echo_task, &e);
  struct sockaddr_storage to, cli_addr;
  addr_of(srv, &to);
  addr_of(cli, &cli_addr);
  CHECK_EQ(to.ss_family, family);
  for (int i = 0; i < 10; i++) {
    char msg[32], got[64];
    int n = snprintf(msg, sizeof(msg), "ping %d", i);
    CHECK_EQ(coro_udp_send(cli, msg, (size_t)n, (struct sockaddr *)&to), 0);
    struct sockaddr_storage from;
    memset(&from, 0xEE, sizeof(from));
    ssize_t r = coro_udp_recv(cli, got, sizeof(got), &from, NULL);
    CHECK_EQ(r, n);
    CHECK(r == n && memcmp(got, msg, (size_t)n) == 0);
    /* The sender's address is the server's. */
    CHECK_EQ(from.ss_family, family);
    CHECK_EQ(memcmp(&from, &to, family == AF_INET
                                    ? sizeof(struct sockaddr_in)
                                    : sizeof(struct sockaddr_in6)),
             0);
  }
  CHECK_EQ(coro_test_join(f), 0);
  CHECK_EQ(coro_udp_close(srv), 0);
  CHECK_EQ(coro_udp_close(cli), 0);
}

static void *pp4_main(void *arg) {
  (void)arg;
  ping_pong("127.0.0.1", AF_INET);
  return NULL;
}

static void test_ping_pong_ipv4(void **state) {
  (void)state;
  assert_run_ok(pp4_main);
}

static int have_ipv6;

static void *v6probe_main(void *arg) {
  (void)arg;
  coro_udp *u = NULL;
  have_ipv6 = coro_udp_bind(&u, "::1", "0", NULL) == 0;
  coro_udp_close(u);
  return NULL;
}

static void *pp6_main(void *arg) {
  (void)arg;
  ping_pong("::1", AF_INET6);
  return NULL;
}

static void test_ping_pong_ipv6(void **state) {
  (void)state;
  assert_run_ok(v6probe_main);
  if (!have_ipv6) {
    fprintf(stderr, "skipped: cannot bind ::1\n");
    skip();
  }
  assert_run_ok(pp6_main);
}

/* ---- truncation and sizes ------------------------------------------------------ */

static void *trunc_main(void *arg) {
  (void)arg;
  coro_udp *a, *b;
  struct sockaddr_storage to;
  if (loopback_pair(&a, &b, &to) != 0) return NULL;
  char big[1000];
  for (size_t i = 0; i < sizeof(big); i++) big[i] = (char)i;
  char got[100];
  int trunc = -1;
  /* Already there (no suspension). */
  CHECK_EQ(coro_udp_send(a, big, sizeof(big), (struct sockaddr *)&to), 0);
  coro_test_yields(1);
  ssize_t n = coro_udp_recv(b, got, sizeof(got), NULL, &trunc);
  CHECK_EQ(n, sizeof(got));
  CHECK_EQ(trunc, 1);
  CHECK_EQ(memcmp(got, big, sizeof(got)), 0);
  /* The rest of it is gone: the next datagram is the next one. */
  CHECK_EQ(coro_udp_send(a, "ok", 2, (struct sockaddr *)&to), 0);
  trunc = -1;
  n = coro_udp_recv(b, got, sizeof(got), NULL, &trunc);
  CHECK_EQ(n, 2);
  CHECK_EQ(trunc, 0);
  coro_udp_close(a);
  coro_udp_close(b);
  return NULL;
}

typedef struct pair_arg {
  coro_udp *a, *b;
  struct sockaddr_storage to;
} pair_arg;

static void *late_send_task(void *arg) {
  pair_arg *p = arg;
  static char big[1000];
  coro_test_yields(3);
  CHECK_EQ(coro_udp_send(p->a, big, sizeof(big), (struct sockaddr *)&p->to), 0);
  coro_test_yields(3);
  CHECK_EQ(coro_udp_send(p->a, "", 0, (struct sockaddr *)&p->to), 0);
  coro_test_yields(3);
  CHECK_EQ(coro_udp_send(p->a, "abc", 3, (struct sockaddr *)&p->to), 0);
  return NULL;
}

static void *trunc_wait_main(void *arg) {
  (void)arg;
  pair_arg p;
  CHECK_EQ(coro_udp_bind(&p.a, "127.0.0.1", "0", NULL), 0);
  CHECK_EQ(coro_udp_bind(&p.b, "127.0.0.1", "0", NULL), 0);
  addr_of(p.b, &p.to);
  coro_future *f = coro_test_spawn(late_send_task, &p);
  /* Waiting when it comes: delivered by libuv into our buffer. */
  char got[10];
  int trunc = -1;
  struct sockaddr_storage from;
  ssize_t n = coro_udp_recv(p.b, got, sizeof(got), &from, &trunc);
  CHECK_EQ(n, sizeof(got));
  CHECK_EQ(trunc, 1);
  CHECK_EQ(from.ss_family, AF_INET);
  /* An empty datagram. */
  trunc = -1;
  n = coro_udp_recv(p.b, got, sizeof(got), NULL, &trunc);
  CHECK_EQ(n, 0);
  CHECK_EQ(trunc, 0);
  /* cap 0: the datagram is consumed, its length reported as cut. */
  trunc = -1;
  n = coro_udp_recv(p.b, NULL, 0, NULL, &trunc);
  CHECK_EQ(n, 0);
  CHECK_EQ(trunc, 1);
  CHECK_EQ(coro_test_join(f), 0);
  coro_udp_close(p.a);
  coro_udp_close(p.b);
  return NULL;
}

static void test_truncation(void **state) {
  (void)state;
  assert_run_ok(trunc_wait_main);
}

/* ---- connected sockets ------------------------------------------------------------ */

static void *connected_main(void *arg) {
  (void)arg;
  coro_udp *srv = NULL, *cli = NULL, *other = NULL;
  CHECK_EQ(coro_udp_bind(&srv, "127.0.0.1", "0", NULL), 0);
  CHECK_EQ(coro_udp_bind(&cli, "127.0.0.1", "0", NULL), 0);
  CHECK_EQ(coro_udp_bind(&other, "127.0.0.1", "0", NULL), 0);
  if (srv == NULL || cli == NULL || other == NULL) return NULL;
  char sp[8], op[8];
  port_str(srv, sp);
  port_str(other, op);
  /* Not connected yet: no peer to send to. */
  CHECK_EQ(coro_udp_send(cli, "x", 1, NULL), UV_EDESTADDRREQ);
  CHECK_EQ(coro_udp_connect(cli, "127.0.0.1", sp), 0);
  CHECK_EQ(coro_udp_send(cli, "hello", 5, NULL), 0);
  char buf[16];
  struct sockaddr_storage from, cli_addr;
  addr_of(cli, &cli_addr);
  CHECK_EQ(coro_udp_recv(srv, buf, sizeof(buf), &from, NULL), 5);
  CHECK_EQ(memcmp(buf, "hello", 5), 0);
  CHECK_EQ(memcmp(&from, &cli_addr, sizeof(struct sockaddr_in)), 0);
  /* An address given to a connected socket is refused by libuv. */
  CHECK_EQ(coro_udp_send(cli, "x", 1, (struct sockaddr *)&from), UV_EISCONN);
  /* Only the peer's datagrams come in: other's is dropped by the kernel. */
  CHECK_EQ(coro_udp_send(other, "no", 2, (struct sockaddr *)&cli_addr), 0);
  CHECK_EQ(coro_udp_send(srv, "yes", 3, (struct sockaddr *)&from), 0);
  CHECK_EQ(coro_udp_recv(cli, buf, sizeof(buf), NULL, NULL), 3);
  CHECK_EQ(memcmp(buf, "yes", 3), 0);
  /* Connect again, to other: its datagrams now come in. */
  CHECK_EQ(coro_udp_connect(cli, "127.0.0.1", op), 0);
  CHECK_EQ(coro_udp_send(other, "now", 3, (struct sockaddr *)&cli_addr), 0);
  CHECK_EQ(coro_udp_recv(cli, buf, sizeof(buf), NULL, NULL), 3);
  CHECK_EQ(memcmp(buf, "now", 3), 0);
  /* Bad input. */
  CHECK_EQ(coro_udp_connect(cli, "127.0.0.1", "99999"), -EINVAL);
  CHECK_EQ(coro_udp_connect(cli, "127.0.0.1", NULL), -EINVAL);
  CHECK_EQ(coro_udp_connect(NULL, "127.0.0.1", "1"), -EINVAL);
  /* An IPv4 socket and an IPv6 peer. */
  CHECK_EQ(coro_udp_connect(cli, "::1", sp), UV_EAFNOSUPPORT);
  /* A name, resolved on the pool. */
  CHECK_EQ(coro_udp_connect(cli, "localhost", sp), 0);
  coro_udp_close(srv);
  coro_udp_close(cli);
  coro_udp_close(other);
  return NULL;
}

static void test_connected(void **state) {
  (void)state;
  assert_run_ok(connected_main);
}

/* ---- several tasks, close, cancel, timeouts --------------------------------------- */

typedef struct recv_arg {
  coro_udp *u;
  ssize_t result;
  char buf[16];
} recv_arg;

static void *recv_task(void *arg) {
  recv_arg *r = arg;
  r->result = coro_udp_recv(r->u, r->buf, sizeof(r->buf), NULL, NULL);
  return NULL;
}

/* A connected socket whose peer refused a datagram: the next receive
 * reports it, whether it was waiting already or not. */
static void *refused_main(void *arg) {
  (void)arg;
  coro_udp *gone = NULL, *cli = NULL;
  CHECK_EQ(coro_udp_bind(&gone, "127.0.0.1", "0", NULL), 0);
  CHECK_EQ(coro_udp_bind(&cli, "127.0.0.1", "0", NULL), 0);
  if (gone == NULL || cli == NULL) return NULL;
  char p[8];
  port_str(gone, p);
  coro_udp_close(gone); /* nobody listens on p now */
  CHECK_EQ(coro_udp_connect(cli, "127.0.0.1", p), 0);
  char buf[4];
  /* Waiting when the refusal comes. */
  recv_arg r = {cli, 1, {0}};
  coro_future *f = coro_test_spawn(recv_task, &r);
  coro_test_yields(2);
  CHECK_EQ(coro_udp_send(cli, "x", 1, NULL), 0);
  CHECK_EQ(coro_test_join(f), 0);
  CHECK_EQ(r.result, UV_ECONNREFUSED);
  /* Already there when the receive starts. */
  CHECK_EQ(coro_udp_send(cli, "x", 1, NULL), 0);
  CHECK_EQ(coro_sleep(10), 0);
  CHECK_EQ(coro_udp_recv(cli, buf, sizeof(buf), NULL, NULL), UV_ECONNREFUSED);
  coro_udp_close(cli);
  return NULL;
}

static void test_refused_peer(void **state) {
  (void)state;
  assert_run_ok(refused_main);
}


static void *busy_main(void *arg) {
  (void)arg;
  coro_udp *a, *b;
  if (loopback_pair(&a, &b, NULL) != 0) return NULL;
  recv_arg r1 = {b, 1, {0}};
  coro_future *f = coro_test_spawn(recv_task, &r1);
  coro_test_yields(2);
  char buf[4];
  CHECK_EQ(coro_udp_recv(b, buf, sizeof(buf), NULL, NULL), -EBUSY);
  struct sockaddr_storage to;
  addr_of(b, &to);
  CHECK_EQ(coro_udp_send(a, "one", 3, (struct sockaddr *)&to), 0);
  CHECK_EQ(coro_test_join(f), 0);
  CHECK_EQ(r1.result, 3);
  /* The receiver is free again. */
  CHECK_EQ(coro_udp_send(a, "two", 3, (struct sockaddr *)&to), 0);
  CHECK_EQ(coro_udp_recv(b, buf, sizeof(buf), NULL, NULL), 3);
  coro_udp_close(a);
  coro_udp_close(b);
  return NULL;
}

static void test_two_receivers(void **state) {
  (void)state;
  assert_run_ok(busy_main);
}

/* A receive waits on a socket that is then closed and, with cancel, its
 * task cancelled before it resumed: the receive returns -EPIPE. */
static void close_under_recv(int cancel) {
  coro_udp *u = NULL;
  CHECK_EQ(coro_udp_bind(&u, "127.0.0.1", "0", NULL), 0);
  if (u == NULL) return;
  recv_arg r = {u, 1, {0}};
  coro_future *f = coro_test_spawn(recv_task, &r);
  coro_test_yields(2);
  CHECK_EQ(coro_udp_close(u), 0);
  if (cancel) {
    CHECK_EQ(coro_cancel(f), 0); /* woken already, not yet resumed */
    int st = coro_test_join(f);  /* the request is kept past the recv */
    CHECK(st == 0 || st == -ECANCELED);
  } else {
    CHECK_EQ(coro_test_join(f), 0);
  }
  CHECK_EQ(r.result, -EPIPE);
}

static void *close_recv_main(void *arg) {
  (void)arg;
  close_under_recv(0);
  CHECK_EQ(coro_udp_close(NULL), 0);
  return NULL;
}

static void test_close_while_receiving(void **state) {
  (void)state;
  assert_run_ok(close_recv_main);
}

/* Closed, then cancelled before it resumed: -EPIPE stands. */
static void *close_cancel_main(void *arg) {
  (void)arg;
  close_under_recv(1);
  return NULL;
}

static void test_close_then_cancel(void **state) {
  (void)state;
  assert_run_ok(close_cancel_main);
}

static void *cancel_recv_main(void *arg) {
  (void)arg;
  coro_udp *a, *b;
  struct sockaddr_storage to;
  if (loopback_pair(&a, &b, &to) != 0) return NULL;
  /* Cancelled while waiting. */
  recv_arg r = {b, 1, {0}};
  coro_future *f = coro_test_spawn(recv_task, &r);
  coro_test_yields(2);
  CHECK_EQ(coro_cancel(f), 0);
  CHECK_EQ(coro_test_join(f), 0);
  CHECK_EQ(r.result, -ECANCELED);
  /* A datagram that comes now waits in the kernel for the next recv. */
  CHECK_EQ(coro_udp_send(a, "kept", 4, (struct sockaddr *)&to), 0);
  CHECK_EQ(coro_sleep(5), 0);
  char buf[8];
  CHECK_EQ(coro_udp_recv(b, buf, sizeof(buf), NULL, NULL), 4);
  CHECK_EQ(memcmp(buf, "kept", 4), 0);
  /* A timeout scope fires while waiting. */
  coro_timeout t;
  CHECK_EQ(coro_timeout_enter(&t, 20), 0);
  ssize_t n = coro_udp_recv(b, buf, sizeof(buf), NULL, NULL);
  CHECK_EQ(n, -ECANCELED);
  CHECK_EQ(coro_timeout_exit(&t, (int)n), -ETIMEDOUT);
  CHECK_EQ(coro_udp_send(a, "next", 4, (struct sockaddr *)&to), 0);
  CHECK_EQ(coro_udp_recv(b, buf, sizeof(buf), NULL, NULL), 4);
  CHECK_EQ(memcmp(buf, "next", 4), 0);
  /* A scope that does not fire. */
  CHECK_EQ(coro_timeout_enter(&t, 60000), 0);
  r.result = 1;
  f = coro_test_spawn(recv_task, &r);
  coro_test_yields(2);
  CHECK_EQ(coro_udp_send(a, "in", 2, (struct sockaddr *)&to), 0);
  CHECK_EQ(coro_test_join(f), 0);
  CHECK_EQ(coro_timeout_exit(&t, 0), 0);
  CHECK_EQ(r.result, 2);
  coro_udp_close(a);
  coro_udp_close(b);
  return NULL;
}

static void test_cancel_and_timeout_lose_nothing(void **state) {
  (void)state;
  assert_run_ok(cancel_recv_main);
}

/* ---- the queued send path ------------------------------------------------------ */

/* In udp.c: take uv_udp_send's path every time. */
extern _Thread_local int coro__udp_queue_sends;

typedef struct send_arg {
  coro_udp *u;
  char buf[8];
  const struct sockaddr *to;
  int result;
  int returned;
} send_arg;

static void *send_task(void *arg) {
  send_arg *a = arg;
  a->result = coro_udp_send(a->u, a->buf, strlen(a->buf), a->to);
  a->returned = 1;
  return NULL;
}

static void *queued_main(void *arg) {
  (void)arg;
  coro_udp *a, *b;
  struct sockaddr_storage to;
  if (loopback_pair(&a, &b, &to) != 0) return NULL;
  coro__udp_queue_sends = 1;
  /* Queued, and waited for. */
  CHECK_EQ(coro_udp_send(a, "q1", 2, (struct sockaddr *)&to), 0);
  char got[8];
  CHECK_EQ(coro_udp_recv(b, got, sizeof(got), NULL, NULL), 2);
  CHECK_EQ(memcmp(got, "q1", 2), 0);
  /* Errors libuv reports at once still come back. */
  CHECK_EQ(coro_udp_send(a, "x", 1, NULL), UV_EDESTADDRREQ);
  /* Cancelled while queued: the task returns at once; the datagram, sent
   * whole or not at all, was copied, so the caller may reuse its buffer
   * straight away. */
  send_arg s1 = {a, "orig", (struct sockaddr *)&to, 1, 0};
  coro_future *f = coro_test_spawn(send_task, &s1);
  coro_test_yields(1);
  CHECK_EQ(s1.returned, 0);
  CHECK_EQ(coro_cancel(f), 0);
  CHECK_EQ(coro_test_join(f), 0);
  CHECK_EQ(s1.result, -ECANCELED);
  memcpy(s1.buf, "XXXX", 4);
  CHECK_EQ(coro_udp_send(a, "q2", 2, (struct sockaddr *)&to), 0);
  ssize_t n = coro_udp_recv(b, got, sizeof(got), NULL, NULL);
  if (n == 4) { /* the cancelled one went out, unchanged */
    CHECK_EQ(memcmp(got, "orig", 4), 0);
    n = coro_udp_recv(b, got, sizeof(got), NULL, NULL);
  }
  CHECK_EQ(n, 2);
  CHECK_EQ(memcmp(got, "q2", 2), 0);
  /* Closed while a send is queued: -EPIPE, and libuv's own completion
   * frees the request later. */
  send_arg s2 = {a, "late", (struct sockaddr *)&to, 1, 0};
  f = coro_test_spawn(send_task, &s2);
  coro_test_yields(1);
  CHECK_EQ(s2.returned, 0);
  CHECK_EQ(coro_udp_close(a), 0);
  CHECK_EQ(coro_test_join(f), 0);
  CHECK_EQ(s2.result, -EPIPE);
  coro__udp_queue_sends = 0;
  coro_udp_close(b);
  return NULL;
}

static void test_queued_sends(void **state) {
  (void)state;
  assert_run_ok(queued_main);
  coro__udp_queue_sends = 0;
}

/* Closed while coro_udp_connect resolves a name: -EPIPE, and the socket
 * is freed only once the lookup is over (the fixture counts). */
typedef struct conn_arg {
  coro_udp *u;
  int result;
} conn_arg;

static void *connect_task(void *arg) {
  conn_arg *c = arg;
  c->result = coro_udp_connect(c->u, "localhost", "9");
  return NULL;
}

static void *close_connect_main(void *arg) {
  (void)arg;
  conn_arg c = {NULL, 1};
  CHECK_EQ(coro_udp_bind(&c.u, "127.0.0.1", "0", NULL), 0);
  if (c.u == NULL) return NULL;
  coro_future *f = coro_test_spawn(connect_task, &c);
  coro_test_yields(1); /* it waits for the pool now */
  CHECK_EQ(c.result, 1);
  CHECK_EQ(coro_udp_close(c.u), 0);
  CHECK_EQ(coro_test_join(f), 0);
  CHECK_EQ(c.result, -EPIPE);
  return NULL;
}

static void test_close_while_connecting(void **state) {
  (void)state;
  assert_run_ok(close_connect_main);
}

/* ---- many datagrams ------------------------------------------------------------- */

#define COUNT 1000
#define WINDOW 32

typedef struct flow {
  coro_udp *rx;
  int received;
  int in_order;
} flow;

static void *flow_rx(void *arg) {
  flow *fl = arg;
  for (int i = 0; i < COUNT; i++) {
    unsigned v = 0;
    ssize_t n = coro_udp_recv(fl->rx, &v, sizeof(v), NULL, NULL);
    if (n != (ssize_t)sizeof(v)) break;
    if (v != (unsigned)i) fl->in_order = 0;
    fl->received++;
  }
  return NULL;
}

static void *many_main(void *arg) {
  (void)arg;
  flow fl = {NULL, 0, 1};
  coro_udp *tx = NULL;
  CHECK_EQ(coro_udp_bind(&fl.rx, "127.0.0.1", "0", NULL), 0);
  CHECK_EQ(coro_udp_bind(&tx, "127.0.0.1", "0", NULL), 0);
  if (fl.rx == NULL || tx == NULL) return NULL;
  char p[8];
  port_str(fl.rx, p);
  CHECK_EQ(coro_udp_connect(tx, "127.0.0.1", p), 0);
  coro_future *f = coro_test_spawn(flow_rx, &fl);
  for (unsigned i = 0; i < COUNT; i++) {
    /* At most WINDOW in flight, so the kernel's buffer never overflows. */
    while ((int)i - fl.received >= WINDOW) CHECK_EQ(coro_yield(), 0);
    CHECK_EQ(coro_udp_send(tx, &i, sizeof(i), NULL), 0);
  }
  CHECK_EQ(coro_test_join(f), 0);
  CHECK_EQ(fl.received, COUNT);
  CHECK(fl.in_order);
  coro_udp_close(fl.rx);
  coro_udp_close(tx);
  return NULL;
}

static void test_thousand_datagrams(void **state) {
  (void)state;
  assert_run_ok(many_main);
}

/* ---- binding ---------------------------------------------------------------------- */

static void *bind_main(void *arg) {
  (void)arg;
  coro_udp *a = NULL, *b = NULL, *c = NULL;
  CHECK_EQ(coro_udp_bind(&a, "127.0.0.1", "0", NULL), 0);
  if (a == NULL) return NULL;
  char p[8];
  port_str(a, p);
  /* The port is taken. */
  b = (coro_udp *)&b;
  CHECK_EQ(coro_udp_bind(&b, "127.0.0.1", p, NULL), UV_EADDRINUSE);
  CHECK(b == NULL);
  coro_udp_close(a);
  /* SO_REUSEPORT: two sockets on one port, both set before bind. */
  coro_listen_opts o = {0, 1, 0};
  CHECK_EQ(coro_udp_bind(&a, "127.0.0.1", "0", &o), 0);
  port_str(a, p);
  CHECK_EQ(coro_udp_bind(&b, "127.0.0.1", p, &o), 0);
  CHECK_EQ(port_of(b), port_of(a));
  /* Without the option, a third one cannot join them. */
  CHECK_EQ(coro_udp_bind(&c, "127.0.0.1", p, NULL), UV_EADDRINUSE);
  coro_udp_close(a);
  coro_udp_close(b);
  /* No host: every interface (0.0.0.0 first). */
  CHECK_EQ(coro_udp_bind(&a, NULL, "0", NULL), 0);
  struct sockaddr_storage ss;
  addr_of(a, &ss);
  CHECK_EQ(ss.ss_family, AF_INET);
  CHECK_EQ(((struct sockaddr_in *)&ss)->sin_addr.s_addr, htonl(INADDR_ANY));
  coro_udp_close(a);
  /* A name. */
  CHECK_EQ(coro_udp_bind(&a, "localhost", "0", NULL), 0);
  coro_udp_close(a);
  /* sockname's length in and out. */
  CHECK_EQ(coro_udp_bind(&a, "127.0.0.1", "0", NULL), 0);
  int len = 2;
  CHECK_EQ(coro_udp_sockname(a, &ss, &len), 0);
  CHECK_EQ(len, sizeof(struct sockaddr_in));
  CHECK_EQ(coro_udp_sockname(a, NULL, &len), -EINVAL);
  CHECK_EQ(coro_udp_sockname(a, &ss, NULL), -EINVAL);
  len = -1;
  CHECK_EQ(coro_udp_sockname(a, &ss, &len), -EINVAL);
  CHECK_EQ(coro_udp_sockname(NULL, &ss, &len), -EINVAL);
  coro_udp_close(a);
  return NULL;
}

static void test_bind(void **state) {
  (void)state;
  assert_run_ok(bind_main);
}

static void *bad_main(void *arg) {
  (void)arg;
  coro_udp *u = (coro_udp *)&u;
  CHECK_EQ(coro_udp_bind(&u, "127.0.0.1", "99999", NULL), -EINVAL);
  CHECK(u == NULL);
  CHECK_EQ(coro_udp_bind(&u, "127.0.0.1", NULL, NULL), -EINVAL);
  CHECK_EQ(coro_udp_bind(&u, "127.0.0.1", "-1", NULL), -EINVAL);
  CHECK_EQ(coro_udp_bind(&u, "127.0.0.1", "", NULL), -EINVAL);
  CHECK_EQ(coro_udp_bind(NULL, "127.0.0.1", "0", NULL), -EINVAL);
  CHECK_EQ(coro_udp_bind(&u, "127.0.0.1", "0", NULL), 0);
  if (u == NULL) return NULL;
  char buf[4];
  CHECK_EQ(coro_udp_recv(NULL, buf, 4, NULL, NULL), -EINVAL);
  CHECK_EQ(coro_udp_recv(u, NULL, 4, NULL, NULL), -EINVAL);
  CHECK_EQ(coro_udp_send(NULL, buf, 4, NULL), -EINVAL);
  CHECK_EQ(coro_udp_send(u, NULL, 4, NULL), -EINVAL);
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof(ss));
  ss.ss_family = AF_UNIX;
  CHECK_EQ(coro_udp_send(u, buf, 4, (struct sockaddr *)&ss), -EINVAL);
  /* Too big for one datagram. */
  static char huge[70000];
  struct sockaddr_storage self;
  addr_of(u, &self);
  CHECK_EQ(coro_udp_send(u, huge, sizeof(huge), (struct sockaddr *)&self),
           UV_EMSGSIZE);
  coro_udp_close(u);
  return NULL;
}

static void test_bad_input(void **state) {
  (void)state;
  assert_run_ok(bad_main);
  coro_udp *u = NULL;
  assert_coro_err(coro_udp_bind(&u, "127.0.0.1", "0", NULL), -EPERM);
}

/* A socket used from a loop that did not make it (another thread's). */
static void *other_loop_main(void *arg) {
  coro_udp *u = arg;
  char buf[4];
  CHECK_EQ(coro_udp_recv(u, buf, 4, NULL, NULL), -EPERM);
  CHECK_EQ(coro_udp_send(u, buf, 4, NULL), -EPERM);
  CHECK_EQ(coro_udp_connect(u, "127.0.0.1", "9"), -EPERM);
  CHECK_EQ(coro_udp_close(u), -EPERM);
  return NULL;
}

static void *other_thread(void *arg) {
  return (void *)(intptr_t)coro_run(other_loop_main, arg, NULL);
}

static void *owner_main(void *arg) {
  (void)arg;
  coro_udp *u = NULL;
  CHECK_EQ(coro_udp_bind(&u, "127.0.0.1", "0", NULL), 0);
  pthread_t th;
  CHECK_EQ(pthread_create(&th, NULL, other_thread, u), 0);
  void *rv = (void *)1;
  pthread_join(th, &rv); /* blocks this loop a moment: fine in a test */
  CHECK(rv == NULL);
  CHECK_EQ(coro_udp_close(u), 0);
  return NULL;
}

static void test_other_loop(void **state) {
  (void)state;
  assert_run_ok(owner_main);
}

static void test_trunc_ready(void **state) {
  (void)state;
  assert_run_ok(trunc_main);
}

static void *warm_main(void *arg) {
  struct addrinfo *res = NULL;
  if (coro_getaddrinfo(&res, "127.0.0.1", NULL, NULL) == 0)
    coro_freeaddrinfo(res);
  return arg;
}

/* A socket the program forgot to close is closed and freed when coro_run
 * ends (the fixture finds no descriptor and no allocation left). */
static void *udp_left_open_main(void *arg) {
  (void)arg;
  coro_udp *u;
  CHECK_OK(coro_udp_bind(&u, "127.0.0.1", "0", NULL));
  return NULL;
}

static void test_udp_left_open_closed_at_end(void **state) {
  (void)state;
  long before = coro_test_live_allocs();
  assert_run_ok(udp_left_open_main);
  assert_int_equal(coro_test_live_allocs(), before);
}

int main(int argc, char **argv) {
  /* libuv's once-per-process descriptors and the pool's threads (names
   * are resolved there) exist before the first test counts them. */
  coro_run(warm_main, NULL, NULL);
  const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, coro_test_setup_os, coro_test_teardown_os)
      T(test_ping_pong_ipv4),
      T(test_ping_pong_ipv6),
      T(test_trunc_ready),
      T(test_truncation),
      T(test_connected),
      T(test_refused_peer),
      T(test_two_receivers),
      T(test_close_while_receiving),
      T(test_close_then_cancel),
      T(test_close_while_connecting),
      T(test_cancel_and_timeout_lose_nothing),
      T(test_queued_sends),
      T(test_thousand_datagrams),
      T(test_bind),
      T(test_bad_input),
      T(test_other_loop),
      T(test_udp_left_open_closed_at_end),
#undef T
  };
  return coro_test_main(argc, argv, tests, NULL, NULL);
}
