/* SPDX-License-Identifier: MIT */
/* Name resolution: strict port parsing, the numeric fast path of host:port
 * resolution, coro_getaddrinfo / coro_getnameinfo on libuv's thread pool,
 * bad input, an unknown name (in a network namespace of its own, so no
 * query leaves the machine), cancellation of a queued lookup and of one
 * just started, and timeout scopes. Only "localhost" (from /etc/hosts) and
 * numeric hosts are looked up in this process. */
#include "helpers.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "io/addr.h"

#define POOL_THREADS 4

static int fam_port(const struct addrinfo *ai, int family, const char *ip,
                    int port) {
  if (ai == NULL || ai->ai_family != family) return 0;
  char buf[INET6_ADDRSTRLEN];
  const void *a;
  if (family == AF_INET)
    a = &((const struct sockaddr_in *)(const void *)ai->ai_addr)->sin_addr;
  else
    a = &((const struct sockaddr_in6 *)(const void *)ai->ai_addr)->sin6_addr;
  if (inet_ntop(family, a, buf, sizeof(buf)) == NULL) return 0;
  return strcmp(buf, ip) == 0 && coro__sockaddr_port(ai->ai_addr) == port &&
         (int)ai->ai_addrlen == coro__sockaddr_len(ai->ai_addr);
}

/* ---- port parsing ------------------------------------------------------------ */

static void test_port_parse(void **state) {
  (void)state;
  int n = -1;
  assert_int_equal(coro__port_parse("0", &n), 0);
  assert_int_equal(n, 0);
  assert_int_equal(coro__port_parse("80", &n), 0);
  assert_int_equal(n, 80);
  assert_int_equal(coro__port_parse("65535", &n), 0);
  assert_int_equal(n, 65535);
  assert_int_equal(coro__port_parse("00080", &n), 0);
  assert_int_equal(n, 80);
  n = -1;
  assert_int_equal(coro__port_parse("http", &n), 1);
  assert_int_equal(n, -1); /* left alone */
  assert_int_equal(coro__port_parse("x-11", NULL), 1);
  static const char *const bad[] = {
      "99999", "65536", "-1", "", "12a", " 80", "80 ", "+80", "000080",
      "1e3", "0x50", "9http", "ht_tp", "ht tp", "-http", "http:", NULL};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    if (coro__port_parse(bad[i], &n) != -EINVAL)
      fail_msg("port \"%s\" accepted", bad[i] ? bad[i] : "(null)");
  }
  char longname[80];
  memset(longname, 'a', sizeof(longname) - 1);
  longname[sizeof(longname) - 1] = '\0';
  assert_int_equal(coro__port_parse(longname, &n), -EINVAL);
}

/* ---- the fast path --------------------------------------------------------------- */

/* Numeric input needs no task and no loop: it never reaches the pool. */
static void test_resolve_fast_outside_task(void **state) {
  (void)state;
  struct addrinfo *res = NULL;
  assert_coro_ok(coro__resolve(&res, "127.0.0.1", "8080", SOCK_DGRAM, 0));
  assert_true(fam_port(res, AF_INET, "127.0.0.1", 8080));
  assert_int_equal(res->ai_socktype, SOCK_DGRAM);
  assert_int_equal(res->ai_protocol, IPPROTO_UDP);
  assert_null(res->ai_next);
  coro__resolve_free(res);

  assert_coro_ok(coro__resolve(&res, "::1", "0", SOCK_STREAM, 0));
  assert_true(fam_port(res, AF_INET6, "::1", 0));
  assert_int_equal(res->ai_protocol, IPPROTO_TCP);
  assert_null(res->ai_next);
  coro_freeaddrinfo(res); /* the public free takes both kinds */

  /* No host, passive: the wildcards, IPv4 first (as getaddrinfo). */
  assert_coro_ok(coro__resolve(&res, NULL, "53", SOCK_DGRAM, 1));
  assert_true(fam_port(res, AF_INET, "0.0.0.0", 53));
  assert_true(fam_port(res->ai_next, AF_INET6, "::", 53));
  assert_null(res->ai_next->ai_next);
  assert_true(res->ai_flags & AI_PASSIVE);
  coro__resolve_free(res);
  assert_coro_ok(coro__resolve(&res, "", "53", SOCK_STREAM, 1));
  assert_true(fam_port(res, AF_INET, "0.0.0.0", 53));
  coro__resolve_free(res);

  /* No host, active: loopback, IPv6 first (as getaddrinfo). */
  assert_coro_ok(coro__resolve(&res, NULL, "7", SOCK_STREAM, 0));
  assert_true(fam_port(res, AF_INET6, "::1", 7));
  assert_true(fam_port(res->ai_next, AF_INET, "127.0.0.1", 7));
  coro__resolve_free(res);

  /* Anything else needs a task. */
  res = (struct addrinfo *)&res;
  assert_coro_err(coro__resolve(&res, "localhost", "80", SOCK_STREAM, 0),
                  -EPERM);
  assert_null(res);
  assert_coro_err(coro__resolve(&res, "127.0.0.1", "http", SOCK_STREAM, 0),
                  -EPERM);
  coro__resolve_free(NULL);
}

static void test_resolve_bad_input(void **state) {
  (void)state;
  struct addrinfo *res = (struct addrinfo *)&res;
  assert_coro_err(coro__resolve(&res, "127.0.0.1", "99999", SOCK_DGRAM, 0),
                  -EINVAL);
  assert_null(res);
  assert_coro_err(coro__resolve(&res, "127.0.0.1", NULL, SOCK_DGRAM, 0),
                  -EINVAL);
  assert_coro_err(coro__resolve(&res, "127.0.0.1", "-1", SOCK_DGRAM, 0),
                  -EINVAL);
  assert_coro_err(coro__resolve(&res, "127.0.0.1", "", SOCK_DGRAM, 0),
                  -EINVAL);
  assert_coro_err(coro__resolve(&res, "127.0.0.1", "80", SOCK_RAW, 0),
                  -EINVAL);
  assert_coro_err(coro__resolve(NULL, "127.0.0.1", "80", SOCK_DGRAM, 0),
                  -EINVAL);
}

static void test_sockaddr_helpers(void **state) {
  (void)state;
  struct sockaddr_in in4;
  memset(&in4, 0, sizeof(in4));
  in4.sin_family = AF_INET;
  in4.sin_port = htons(4242);
  assert_int_equal(coro__sockaddr_len((struct sockaddr *)&in4),
                   sizeof(struct sockaddr_in));
  assert_int_equal(coro__sockaddr_port((struct sockaddr *)&in4), 4242);
  assert_true(coro__sockaddr_is_ip((struct sockaddr *)&in4));
  assert_int_equal(coro__sockaddr_len(NULL), 0);
  assert_false(coro__sockaddr_is_ip(NULL));
  assert_int_equal(coro__sockaddr_port(NULL), -EINVAL);
  struct sockaddr_storage ss;
  int len = 4; /* too little room: copies 4 bytes, reports the full length */
  memset(&ss, 0xAB, sizeof(ss));
  assert_coro_ok(coro__sockaddr_out(&ss, &len, (struct sockaddr *)&in4,
                                    (int)sizeof(in4)));
  assert_int_equal(len, sizeof(in4));
  assert_int_equal(((unsigned char *)&ss)[4], 0xAB);
  len = -1;
  assert_coro_err(coro__sockaddr_out(&ss, &len, (struct sockaddr *)&in4, 16),
                  -EINVAL);
  in4.sin_family = AF_UNSPEC;
  assert_int_equal(coro__sockaddr_len((struct sockaddr *)&in4), 0);
  assert_int_equal(coro__sockaddr_port((struct sockaddr *)&in4), -EINVAL);
}

/* ---- lookups through the pool ------------------------------------------------ */

static void *resolve_slow_main(void *arg) {
  (void)arg;
  struct addrinfo *res = NULL;
  /* A name: resolved from /etc/hosts on the pool. */
  CHECK_EQ(coro__resolve(&res, "localhost", "80", SOCK_STREAM, 0), 0);
  CHECK(res != NULL);
  int found = 0;
  for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
    CHECK(ai->ai_family == AF_INET || ai->ai_family == AF_INET6);
    CHECK(!(ai->ai_flags & CORO__AI_OWN));
    CHECK_EQ(coro__sockaddr_port(ai->ai_addr), 80);
    if (fam_port(ai, AF_INET, "127.0.0.1", 80)) found = 1;
  }
  CHECK(found);
  coro__resolve_free(res);
  /* A service name with a literal host: numeric host, named port. */
  res = NULL;
  CHECK_EQ(coro__resolve(&res, "127.0.0.1", "http", SOCK_STREAM, 0), 0);
  CHECK(fam_port(res, AF_INET, "127.0.0.1", 80));
  coro__resolve_free(res);
  /* A service name with no host, passive. */
  res = NULL;
  CHECK_EQ(coro__resolve(&res, "", "http", SOCK_STREAM, 1), 0);
  CHECK(res != NULL && coro__sockaddr_port(res->ai_addr) == 80);
  coro__resolve_free(res);
  /* A service nobody knows. */
  res = NULL;
  CHECK_EQ(coro__resolve(&res, "127.0.0.1", "no-such-service-x", SOCK_STREAM,
                         0),
           UV_EAI_SERVICE);
  CHECK(res == NULL);
  /* "127.1" is not a dotted quad: the pool resolves it (inet_aton form). */
  CHECK_EQ(coro__resolve(&res, "127.1", "9", SOCK_DGRAM, 0), 0);
  CHECK(fam_port(res, AF_INET, "127.0.0.1", 9));
  coro__resolve_free(res);
  return NULL;
}

static void test_resolve_slow_path(void **state) {
  (void)state;
  assert_run_ok(resolve_slow_main);
}

static void *getaddrinfo_main(void *arg) {
  (void)arg;
  struct addrinfo hints, *res = NULL;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  CHECK_EQ(coro_getaddrinfo(&res, "localhost", "443", &hints), 0);
  CHECK(fam_port(res, AF_INET, "127.0.0.1", 443));
  coro_freeaddrinfo(res);
  /* No hints at all. */
  res = NULL;
  CHECK_EQ(coro_getaddrinfo(&res, "127.0.0.1", NULL, NULL), 0);
  CHECK(res != NULL && res->ai_family == AF_INET);
  coro_freeaddrinfo(res);
  /* An unknown name that must not be looked up: AI_NUMERICHOST. */
  hints.ai_flags = AI_NUMERICHOST;
  res = (struct addrinfo *)&res;
  CHECK_EQ(coro_getaddrinfo(&res, "no-such-host.invalid", "80", &hints),
           UV_EAI_NONAME);
  CHECK(res == NULL);
  /* Bad flags come back as libuv's code. */
  hints.ai_flags = 0x7fff0000;
  CHECK_EQ(coro_getaddrinfo(&res, "127.0.0.1", "80", &hints), UV_EAI_BADFLAGS);
  CHECK(res == NULL);
  /* Bad input. */
  CHECK_EQ(coro_getaddrinfo(NULL, "127.0.0.1", "80", NULL), -EINVAL);
  CHECK_EQ(coro_getaddrinfo(&res, NULL, NULL, NULL), -EINVAL);
  coro_freeaddrinfo(NULL);
  return NULL;
}

static void test_getaddrinfo(void **state) {
  (void)state;
  assert_run_ok(getaddrinfo_main);
  struct addrinfo *res = NULL;
  assert_coro_err(coro_getaddrinfo(&res, "127.0.0.1", "80", NULL), -EPERM);
  char h[64];
  struct sockaddr_in in4;
  memset(&in4, 0, sizeof(in4));
  in4.sin_family = AF_INET;
  assert_coro_err(coro_getnameinfo((struct sockaddr *)&in4, NI_NUMERICHOST, h,
                                   sizeof(h), NULL, 0),
                  -EPERM);
}

static void *getnameinfo_main(void *arg) {
  (void)arg;
  struct sockaddr_in in4;
  memset(&in4, 0, sizeof(in4));
  in4.sin_family = AF_INET;
  in4.sin_port = htons(80);
  in4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  char host[NI_MAXHOST], serv[NI_MAXSERV];
  CHECK_EQ(coro_getnameinfo((struct sockaddr *)&in4,
                            NI_NUMERICHOST | NI_NUMERICSERV, host,
                            sizeof(host), serv, sizeof(serv)),
           0);
  CHECK_EQ(strcmp(host, "127.0.0.1"), 0);
  CHECK_EQ(strcmp(serv, "80"), 0);
  /* The service by name, from /etc/services; the host not wanted. */
  CHECK_EQ(coro_getnameinfo((struct sockaddr *)&in4, 0, NULL, 0, serv,
                            sizeof(serv)),
           0);
  CHECK_EQ(strcmp(serv, "http"), 0);
  /* IPv6. */
  struct sockaddr_in6 in6;
  memset(&in6, 0, sizeof(in6));
  in6.sin6_family = AF_INET6;
  in6.sin6_addr = in6addr_loopback;
  in6.sin6_port = htons(5353);
  CHECK_EQ(coro_getnameinfo((struct sockaddr *)&in6,
                            NI_NUMERICHOST | NI_NUMERICSERV, host,
                            sizeof(host), serv, sizeof(serv)),
           0);
  CHECK_EQ(strcmp(host, "::1"), 0);
  CHECK_EQ(strcmp(serv, "5353"), 0);
  /* Too small a buffer: an error and an empty string, never a cut name. */
  char small[4];
  CHECK_EQ(coro_getnameinfo((struct sockaddr *)&in4, NI_NUMERICHOST, small,
                            sizeof(small), NULL, 0),
           UV_EAI_OVERFLOW);
  CHECK_EQ(small[0], '\0');
  /* Bad input. */
  CHECK_EQ(coro_getnameinfo(NULL, 0, host, sizeof(host), NULL, 0), -EINVAL);
  CHECK_EQ(coro_getnameinfo((struct sockaddr *)&in4, 0, NULL, 0, NULL, 0),
           -EINVAL);
  CHECK_EQ(coro_getnameinfo((struct sockaddr *)&in4, 0, host, 0, NULL, 0),
           -EINVAL);
  in4.sin_family = AF_UNIX;
  CHECK_EQ(coro_getnameinfo((struct sockaddr *)&in4, 0, host, sizeof(host),
                            NULL, 0),
           -EINVAL);
  return NULL;
}

static void test_getnameinfo(void **state) {
  (void)state;
  assert_run_ok(getnameinfo_main);
}

/* ---- an unknown name, in a network namespace of its own ------------------------ */

static void *unknown_main(void *arg) {
  int *out = arg;
  struct addrinfo *res = NULL;
  *out = coro_getaddrinfo(&res, "no-such-host-libcoro.invalid", "80", NULL);
  if (res != NULL) coro_freeaddrinfo(res);
  res = NULL;
  out[1] = coro__resolve(&res, "no-such-host-libcoro.invalid", "80",
                         SOCK_STREAM, 0);
  if (res != NULL) coro__resolve_free(res);
  return NULL;
}

/* The children of these tests set up their namespaces, then start this
 * program afresh (coro_test_exec_self): a forked copy of a process whose
 * libuv pool threads run may not start threads of its own under
 * ThreadSanitizer, a fresh program may. The namespaces, the bind mount and
 * the fake server's socket survive the exec. */
static int unknown_role(void) {
  int got[2] = {0, 0};
  if (coro_run(unknown_main, got, NULL) != 0) return 3;
  /* Any resolver failure (EAI_NONAME, EAI_AGAIN: no network at all). */
  for (int i = 0; i < 2; i++) {
    if (got[i] >= 0 || got[i] == -EINVAL || got[i] == -ECANCELED) {
      fprintf(stderr, "lookup %d: %d (%s)\n", i, got[i], coro_err_name(got[i]));
      return 4;
    }
  }
  return 0;
}

static void unknown_child(void *arg) {
  (void)arg;
  if (unshare(CLONE_NEWNET) != 0) _exit(77);
  coro_test_exec_self("unknown", NULL);
}

static void test_unknown_name_isolated(void **state) {
  (void)state;
  int st = coro_test_in_child(unknown_child, NULL, 30000);
  assert_true(st >= 0 && WIFEXITED(st));
  if (WEXITSTATUS(st) == 77) {
    fprintf(stderr, "skipped: unshare(CLONE_NEWNET) failed (not root?)\n");
    skip();
  }
  assert_int_equal(WEXITSTATUS(st), 0);
}

/* ---- cancellation and timeouts ----------------------------------------------- */

/* Await a task and return what its function returned (an int here). */
static int join_val(coro_future *f) {
  if (f == NULL) return 1;
  void *v = NULL;
  CHECK_EQ(coro_await(f, &v), 0);
  coro_future_release(f);
  return (int)(intptr_t)v;
}

static void *lookup_task(void *arg) {
  (void)arg;
  struct addrinfo *res = NULL;
  int r = coro_getaddrinfo(&res, "localhost", "80", NULL);
  if (r == 0) coro_freeaddrinfo(res);
  else CHECK(res == NULL);
  return (void *)(intptr_t)r;
}

static void *nameinfo_task(void *arg) {
  (void)arg;
  struct sockaddr_in in4;
  memset(&in4, 0, sizeof(in4));
  in4.sin_family = AF_INET;
  in4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  char host[64];
  int r = coro_getnameinfo((struct sockaddr *)&in4, NI_NUMERICHOST, host,
                           sizeof(host), NULL, 0);
  return (void *)(intptr_t)r;
}

static void *cancel_queued_main(void *arg) {
  (void)arg;
  CHECK_EQ(coro_test_uv_pool_block(POOL_THREADS), 0);
  coro_future *f = coro_test_spawn(lookup_task, NULL);
  coro_future *g = coro_test_spawn(nameinfo_task, NULL);
  coro_test_yields(3); /* both wait: their requests are queued */
  CHECK_EQ(coro_future_status(f), CORO_PENDING);
  CHECK_EQ(coro_future_status(g), CORO_PENDING);
  CHECK_EQ(coro_cancel(f), 0);
  CHECK_EQ(coro_cancel(g), 0);
  /* They return at once, with the pool still full. */
  CHECK_EQ(join_val(f), -ECANCELED);
  CHECK_EQ(join_val(g), -ECANCELED);
  CHECK_EQ(coro_test_uv_pool_done(), 0);
  coro_test_uv_pool_release();
  /* The pool works afterwards. */
  f = coro_test_spawn(lookup_task, NULL);
  CHECK_EQ(join_val(f), 0);
  return NULL;
}

static void test_cancel_queued_lookup(void **state) {
  (void)state;
  assert_run_ok(cancel_queued_main);
}

/* Cancel right after the lookup started, many times: some are still
 * queued, some already run on a thread; every one returns -ECANCELED and
 * whatever the thread produced later is freed (the fixture counts). */
static void *cancel_running_main(void *arg) {
  (void)arg;
  int cancelled = 0;
  for (int i = 0; i < 50; i++) {
    coro_future *f = coro_test_spawn(i % 2 ? lookup_task : nameinfo_task,
                                     NULL);
    CHECK_EQ(coro_yield(), 0);
    if (f == NULL) continue;
    if (coro_future_status(f) == CORO_PENDING) CHECK_EQ(coro_cancel(f), 0);
    int r = join_val(f);
    CHECK(r == -ECANCELED || r == 0);
    if (r == -ECANCELED) cancelled++;
  }
  CHECK(cancelled > 0);
  return NULL;
}

static void test_cancel_lookup_in_flight(void **state) {
  (void)state;
  assert_run_ok(cancel_running_main);
}

/* A lookup in a timeout scope that fires while it is queued. */
static void *timeout_main(void *arg) {
  (void)arg;
  CHECK_EQ(coro_test_uv_pool_block(POOL_THREADS), 0);
  coro_timeout t;
  CHECK_EQ(coro_timeout_enter(&t, 20), 0);
  struct addrinfo *res = (struct addrinfo *)&res;
  int r = coro_getaddrinfo(&res, "localhost", "80", NULL);
  CHECK_EQ(r, -ECANCELED);
  CHECK(res == NULL);
  CHECK_EQ(coro_timeout_exit(&t, r), -ETIMEDOUT);
  CHECK_EQ(coro_timeout_enter(&t, 20), 0);
  r = (int)(intptr_t)nameinfo_task(NULL);
  CHECK_EQ(coro_timeout_exit(&t, r), -ETIMEDOUT);
  CHECK_EQ(coro_test_uv_pool_done(), 0);
  coro_test_uv_pool_release();
  /* A scope that does not fire leaves the result alone. */
  CHECK_EQ(coro_timeout_enter(&t, 60000), 0);
  res = NULL;
  r = coro_getaddrinfo(&res, "localhost", NULL, NULL);
  CHECK_EQ(coro_timeout_exit(&t, r), 0);
  CHECK(res != NULL);
  coro_freeaddrinfo(res);
  return NULL;
}

static void test_lookup_timeout_scope(void **state) {
  (void)state;
  assert_run_ok(timeout_main);
}

/* The loop ends while a cancelled lookup is still queued: its request is
 * completed and freed before coro_run returns. */
static void *end_main(void *arg) {
  (void)arg;
  CHECK_EQ(coro_test_uv_pool_block(POOL_THREADS), 0);
  coro_future *f = coro_test_spawn(lookup_task, NULL);
  coro_test_yields(2);
  CHECK_EQ(coro_cancel(f), 0);
  CHECK_EQ(join_val(f), -ECANCELED);
  coro_test_uv_pool_unblock();
  return NULL;
}

static void test_loop_ends_with_detached_lookup(void **state) {
  (void)state;
  assert_coro_ok(coro_run(end_main, NULL, NULL));
  assert_checks_passed();
  assert_int_equal(coro_test_uv_pool_done(), POOL_THREADS);
  coro_test_uv_pool_release();
}

/* ---- lookups that really run: a resolver of our own ---------------------------- */

/* In a forked child with its own network and mount namespaces, the
 * resolver is pointed (by a private bind mount over /etc/resolv.conf) at
 * a UDP socket of the test on 127.0.0.1:53 of that namespace. The test
 * sees each query arrive, so it knows the lookup is running on a pool
 * thread, and answers when it chooses: cancellation of a running lookup
 * is tested deterministically, and no query can leave the namespace. */

typedef struct fake_dns {
  int fd;
  struct sockaddr_storage peer;
  socklen_t peerlen;
  unsigned char q[512];
  ssize_t qlen;
} fake_dns;

/* Wait for the next query (up to 10 s). 1 if one came. */
static int dns_next_query(fake_dns *d) {
  if (coro_wait_fd(d->fd, CORO_READABLE, 10000) != CORO_READABLE) return 0;
  d->peerlen = sizeof(d->peer);
  d->qlen = recvfrom(d->fd, d->q, sizeof(d->q), MSG_DONTWAIT,
                     (struct sockaddr *)&d->peer, &d->peerlen);
  return d->qlen > 12;
}

/* Answer the last query: an A query gets 127.0.0.7, others no answer. */
static void dns_answer(fake_dns *d) {
  unsigned char r[600];
  size_t n = (size_t)d->qlen;
  memcpy(r, d->q, n);
  size_t i = 12; /* the question's name, then type and class */
  while (i < n && r[i] != 0) i += (size_t)r[i] + 1;
  int type_a = i + 2 < n && r[i + 1] == 0 && r[i + 2] == 1;
  r[2] = 0x81; /* response, recursion desired */
  r[3] = 0x80; /* recursion available, no error */
  r[6] = 0;
  r[7] = type_a ? 1 : 0; /* answers */
  r[8] = r[9] = r[10] = r[11] = 0;
  if (type_a) {
    static const unsigned char rr[16] = {0xC0, 0x0C, 0, 1, 0, 1, 0, 0,
                                         0, 60, 0, 4, 127, 0, 0, 7};
    memcpy(r + n, rr, sizeof(rr));
    n += sizeof(rr);
  }
  (void)sendto(d->fd, r, n, 0, (struct sockaddr *)&d->peer, d->peerlen);
}

static void *slow_lookup_task(void *arg) {
  (void)arg;
  struct addrinfo hints, *res = NULL;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_INET; /* one A query */
  hints.ai_socktype = SOCK_STREAM;
  int r = coro_getaddrinfo(&res, "slow.example", "80", &hints);
  if (r == 0) {
    CHECK(fam_port(res, AF_INET, "127.0.0.7", 80));
    coro_freeaddrinfo(res);
  } else {
    CHECK(res == NULL);
  }
  return (void *)(intptr_t)r;
}

static void *running_main(void *arg) {
  fake_dns *d = arg;
  /* Answered: the name resolves through the resolver. */
  coro_future *f = coro_test_spawn(slow_lookup_task, NULL);
  CHECK(dns_next_query(d));
  dns_answer(d);
  CHECK_EQ(join_val(f), 0);
  /* Cancelled while its query is out: the task returns at once; the
   * answer that comes later is freed by the request's callback. */
  f = coro_test_spawn(slow_lookup_task, NULL);
  CHECK(dns_next_query(d)); /* running on a pool thread now */
  CHECK_EQ(coro_future_status(f), CORO_PENDING);
  CHECK_EQ(coro_cancel(f), 0);
  CHECK_EQ(join_val(f), -ECANCELED);
  dns_answer(d);
  /* A timeout scope that fires while the query is out. */
  coro_timeout t;
  CHECK_EQ(coro_timeout_enter(&t, 50), 0);
  int r = (int)(intptr_t)slow_lookup_task(NULL);
  CHECK_EQ(r, -ECANCELED);
  CHECK_EQ(coro_timeout_exit(&t, r), -ETIMEDOUT);
  CHECK(dns_next_query(d)); /* it was sent; answer it so the thread ends */
  dns_answer(d);
  /* Cancelled, and the loop ends before the answer: coro_run still
   * completes the request (and frees it) before it returns. */
  f = coro_test_spawn(slow_lookup_task, NULL);
  CHECK(dns_next_query(d));
  CHECK_EQ(coro_cancel(f), 0);
  CHECK_EQ(join_val(f), -ECANCELED);
  return NULL; /* unanswered: the resolver gives up after its timeout */
}

static int lo_up(void) {
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return -1;
  struct ifreq ifr;
  memset(&ifr, 0, sizeof(ifr));
  strcpy(ifr.ifr_name, "lo");
  int r = ioctl(s, SIOCGIFFLAGS, &ifr);
  if (r == 0) {
    ifr.ifr_flags |= IFF_UP;
    r = ioctl(s, SIOCSIFFLAGS, &ifr);
  }
  close(s);
  return r;
}

static void running_child(void *arg) {
  (void)arg;
  if (unshare(CLONE_NEWNET | CLONE_NEWNS) != 0) _exit(77);
  if (mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) != 0) _exit(77);
  char conf[] = "/tmp/coro-resolv-XXXXXX";
  int cfd = mkstemp(conf);
  if (cfd < 0) _exit(77);
  static const char text[] =
      "nameserver 127.0.0.1\noptions timeout:2 attempts:1\n";
  if (write(cfd, text, sizeof(text) - 1) != (ssize_t)sizeof(text) - 1)
    _exit(77);
  close(cfd);
  int mounted = mount(conf, "/etc/resolv.conf", "none", MS_BIND, NULL) == 0;
  unlink(conf); /* the mount keeps it */
  if (!mounted || lo_up() != 0) _exit(77);
  fake_dns d;
  memset(&d, 0, sizeof(d));
  d.fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_port = htons(53);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (d.fd < 0 || bind(d.fd, (struct sockaddr *)&a, sizeof(a)) != 0) _exit(77);
  if (fcntl(d.fd, F_SETFD, 0) != 0) _exit(77); /* kept across the exec */
  char fdnum[16];
  snprintf(fdnum, sizeof(fdnum), "%d", d.fd);
  coro_test_exec_self("running", fdnum);
}

/* In the fresh program: the fake server's socket is descriptor arg. */
static int running_role(const char *arg) {
  fake_dns d;
  memset(&d, 0, sizeof(d));
  d.fd = atoi(arg);
  if (d.fd <= 2 || fcntl(d.fd, F_SETFD, FD_CLOEXEC) != 0) return 6;
  coro_test_setup(NULL); /* the counting allocator */
  long before = coro_test_live_allocs();
  int r = coro_test_child_run(running_main, &d);
  if (r != 0) return r;
  if (coro_test_live_allocs() != before) return 5;
  return 0;
}

static void test_cancel_running_lookup(void **state) {
  (void)state;
  int st = coro_test_in_child(running_child, NULL, 60000);
  assert_true(st >= 0 && WIFEXITED(st));
  if (WEXITSTATUS(st) == 77) {
    fprintf(stderr, "skipped: no private network and mount namespace\n");
    skip();
  }
  assert_int_equal(WEXITSTATUS(st), 0);
}

/* ---- main ------------------------------------------------------------------------ */

static void *warm_main(void *arg) {
  (void)arg;
  struct addrinfo *res = NULL;
  if (coro_getaddrinfo(&res, "127.0.0.1", NULL, NULL) == 0)
    coro_freeaddrinfo(res);
  return NULL;
}

int main(int argc, char **argv) {
  const char *arg;
  const char *role = coro_test_child_role(argc, argv, &arg);
  if (role != NULL && strcmp(role, "unknown") == 0) return unknown_role();
  if (role != NULL && strcmp(role, "running") == 0) return running_role(arg);
  if (role != NULL) return 5;
  /* The pool's size is fixed at its first use in the process; the tests of
   * queued lookups fill exactly this many threads. Start it now so that
   * its threads are there before the first test counts threads. */
  setenv("UV_THREADPOOL_SIZE", "4", 1);
  coro_run(warm_main, NULL, NULL);
  const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, coro_test_setup_os, coro_test_teardown_os)
      T(test_port_parse),
      T(test_resolve_fast_outside_task),
      T(test_resolve_bad_input),
      T(test_sockaddr_helpers),
      T(test_resolve_slow_path),
      T(test_getaddrinfo),
      T(test_getnameinfo),
      T(test_unknown_name_isolated),
      T(test_cancel_queued_lookup),
      T(test_cancel_lookup_in_flight),
      T(test_lookup_timeout_scope),
      T(test_loop_ends_with_detached_lookup),
      T(test_cancel_running_lookup),
#undef T
  };
  return coro_test_main(argc, argv, tests, NULL, NULL);
}
