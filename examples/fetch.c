/* SPDX-License-Identifier: MIT */
/* fetch: the I/O-bound program of the "sync vs threads vs processes vs
 * asyncio" articles, with a local server standing in for the internet.
 *
 * The program starts its own HTTP/1.1 server on 127.0.0.1 (a thread running
 * a libcoro loop of its own) that serves four URLs, /a /b /c /d, with bodies
 * of 1, 4, 16 and 64 KiB, and waits 50 ms before every answer: that wait
 * is the network. Then it downloads the four URLs ten times each, five ways:
 *
 *   Sync                       one worker after another, blocking sockets
 *   Threads                    ten pthreads, blocking sockets
 *   Processes                  ten fork()ed children, blocking sockets
 *   Coroutines                 ten libcoro tasks on streams (coro_tcp_connect,
 *                              coro_stream_write, coro_stream_read)
 *   Coroutines + libcurl       ten tasks, each running its transfers through
 *                              libcurl's multi socket interface, driven by
 *                              one more task (see below); no thread per
 *                              transfer, no curl_multi_perform loop
 *
 * Each way runs the same worker ten times: open one connection, GET /a, /b,
 * /c and /d on it one after the other (keep-alive), close. (libcurl's workers
 * take connections from its cache, which comes to one per worker too; the
 * program says so if it ever takes more.) So sync waits
 * 10 x 4 x 50 ms = 2.0 s, and every concurrent way 4 x 50 ms = 0.2 s, however
 * it is made concurrent. Every response is checked (status 200, length, and
 * an FNV-1a checksum of the body), and so is each way's total; the program
 * exits 1 on any mismatch or error.
 *
 * Responses are parsed by http-parser in every way but libcurl's (libcurl
 * parses its own): one parser fed whatever each read returned, the same code
 * for blocking sockets and for streams.
 *
 * libcurl and coroutines: libcurl's multi socket interface tells the program
 * which sockets to watch for what (CURLMOPT_SOCKETFUNCTION) and when to call
 * it back anyway (CURLMOPT_TIMERFUNCTION); the program calls
 * curl_multi_socket_action when a socket is ready or the timer expires.
 * Those callbacks run inside a call into the multi handle, which must not
 * be re-entered; if they suspended, another task could call into libcurl
 * meanwhile. So they only record: the sockets' interests go straight into
 * an epoll set, the timer into a deadline. One driver task waits on the
 * epoll descriptor with coro_wait_fd, its timeout being libcurl's deadline,
 * and calls curl_multi_socket_action; when a transfer is done it resolves
 * that transfer's promise. A worker task only adds its easy handle and awaits the
 * promise, so to the worker a transfer is one call that suspends.
 *
 * Usage: fetch [WORKERS]   (default 10: 40 downloads per way)
 *
 * Expected output (times vary by a few milliseconds):
 *
 *   Sync took 2.01s
 *   Threads took 0.20s
 *   Processes took 0.21s
 *   Coroutines took 0.20s
 *   Coroutines + libcurl took 0.20s
 *   every way got 40 responses, 870400 bytes, checksums match
 *
 * Built without libcurl (CMake found no libcurl), the fifth line says so
 * instead. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <coro.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef FETCH_HAVE_LIBCURL
# include <curl/curl.h>
# include <sys/epoll.h>
# include <sys/eventfd.h>
#endif

enum { NURLS = 4, DELAY_MS = 50, MAX_WORKERS = 1000, READ_CAP = 65536 };
static const char *const paths[NURLS] = {"/a", "/b", "/c", "/d"};
static const size_t sizes[NURLS] = {1024, 4096, 16384, 65536};
static char *bodies[NURLS];
static uint64_t checksums[NURLS];
static char requests[NURLS][128];
static size_t request_len[NURLS];
static int nworkers = 10;
static int port;
static char port_str[16];

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#define FNV_OFFSET 0xcbf29ce484222325ULL
static uint64_t fnv1a(uint64_t h, const void *data, size_t n) {
  const unsigned char *p = data;
  for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ULL;
  return h;
}

/* ---- the server: a libcoro loop in a thread of its own -------------------- */

/* Which URL a request head asks for: "GET /b HTTP/1.1..." is 1; -1 for
 * anything else. */
static int url_index(const char *head) {
  if (strncmp(head, "GET ", 4) != 0) return -1;
  for (int i = 0; i < NURLS; i++) {
    size_t len = strlen(paths[i]);
    if (strncmp(head + 4, paths[i], len) == 0 && head[4 + len] == ' ') return i;
  }
  return -1;
}

static void serve_conn(coro_stream *s, void *arg) {
  (void)arg;
  char head[2048];
  coro_tcp_nodelay(s, 1);
  for (;;) {
    /* The clients send no bodies: a request is its head. */
    ssize_t n = coro_stream_read_until(s, head, sizeof head - 1, "\r\n\r\n", 4);
    if (n < 4 || memcmp(head + n - 4, "\r\n\r\n", 4) != 0) break;
    head[n] = '\0';
    int k = url_index(head);
    if (coro_sleep(DELAY_MS) != 0) break; /* the "network": cancellable */
    char hdr[128];
    int len;
    if (k < 0)
      len = snprintf(hdr, sizeof hdr,
                     "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
    else
      len = snprintf(hdr, sizeof hdr,
                     "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n"
                     "Content-Type: application/octet-stream\r\n\r\n",
                     sizes[k]);
    coro_iovec iov[2] = {{hdr, (size_t)len},
                         {k < 0 ? "" : bodies[k], k < 0 ? 0 : sizes[k]}};
    if (coro_stream_writev(s, iov, 2) != 0) break;
  }
}

struct server {
  pthread_t thread;
  int stop[2]; /* main writes a byte to stop[1] to stop the server */
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int state; /* 0 starting, 1 listening, < 0 failed */
};

/* Tell main how the start went; only the first word counts. */
static void server_publish(struct server *sv, int state) {
  pthread_mutex_lock(&sv->mu);
  if (sv->state == 0) sv->state = state;
  pthread_cond_signal(&sv->cv);
  pthread_mutex_unlock(&sv->mu);
}

static void *serve_task(void *arg) {
  int r = coro_server_serve(arg, serve_conn, NULL);
  return r == 0 ? NULL : coro_fail(r);
}

static void *server_main(void *arg) {
  struct server *sv = arg;
  coro_server *srv;
  int r = coro_tcp_listen(&srv, "127.0.0.1", "0", NULL);
  if (r != 0) {
    server_publish(sv, r);
    return coro_fail(r);
  }
  port = coro_server_port(srv);
  coro_future *serving;
  r = coro_spawn(&serving, serve_task, srv);
  if (r != 0) {
    coro_server_close(srv);
    server_publish(sv, r);
    return coro_fail(r);
  }
  server_publish(sv, 1);
  /* Until main says stop: the pipe becomes readable. */
  r = coro_wait_fd(sv->stop[0], CORO_READABLE, CORO_FOREVER);
  coro_server_close(srv); /* ends coro_server_serve */
  int rs = coro_await(serving, NULL);
  coro_future_release(serving);
  if (r > 0) r = rs;
  return r == 0 ? NULL : coro_fail(r);
}

static void *server_thread(void *arg) {
  struct server *sv = arg;
  int r = coro_run(server_main, sv, NULL);
  if (r != 0) {
    fprintf(stderr, "fetch: server: %s\n", coro_strerror(r));
    server_publish(sv, r); /* in case it failed before listening */
  }
  return NULL;
}

static int server_start(struct server *sv) {
  *sv = (struct server){.state = 0};
  pthread_mutex_init(&sv->mu, NULL);
  pthread_cond_init(&sv->cv, NULL);
  if (pipe(sv->stop) != 0) return -errno;
  int r = pthread_create(&sv->thread, NULL, server_thread, sv);
  if (r != 0) return -r;
  pthread_mutex_lock(&sv->mu);
  while (sv->state == 0) pthread_cond_wait(&sv->cv, &sv->mu);
  pthread_mutex_unlock(&sv->mu);
  return sv->state < 0 ? sv->state : 0;
}

static void server_stop(struct server *sv) {
  ssize_t w = write(sv->stop[1], "x", 1);
  (void)w;
  pthread_join(sv->thread, NULL);
  close(sv->stop[0]);
  close(sv->stop[1]);
  pthread_mutex_destroy(&sv->mu);
  pthread_cond_destroy(&sv->cv);
}

/* ---- checking what came back --------------------------------------------- */

/* What one way got, in all: compared with what it should have got. */
struct tally {
  long responses;
  long bytes;
  uint64_t sum; /* the sum of the bodies' checksums: order does not matter */
  long connections;
  int err; /* the first error or mismatch */
};

static void tally_add(struct tally *t, const struct tally *u) {
  t->responses += u->responses;
  t->bytes += u->bytes;
  t->sum += u->sum;
  t->connections += u->connections;
  if (t->err == 0) t->err = u->err;
}

/* One response's body: count it, check it against URL k. */
static void tally_response(struct tally *t, int k, int status, size_t bytes,
                           uint64_t sum) {
  t->responses++;
  t->bytes += (long)bytes;
  t->sum += sum;
  if (t->err == 0 && (status != 200 || bytes != sizes[k] || sum != checksums[k]))
    t->err = -EBADMSG;
}

static int report(const char *way, double t0, const struct tally *t) {
  printf("%s took %.2fs\n", way, now_s() - t0);
  /* One connection per worker is the deal; libcurl picks connections from
   * its own cache, so say so if it took more. */
  if (t->err == 0 && t->connections != nworkers)
    printf("  (%s used %ld connections for %d workers)\n", way,
           t->connections, nworkers);
  fflush(stdout);
  long want_bytes = 0;
  uint64_t want_sum = 0;
  for (int k = 0; k < NURLS; k++) {
    want_bytes += (long)sizes[k] * nworkers;
    want_sum += checksums[k] * (uint64_t)nworkers;
  }
  if (t->err == 0 && t->responses == (long)NURLS * nworkers &&
      t->bytes == want_bytes && t->sum == want_sum)
    return 0;
  fprintf(stderr, "%s: got %ld responses and %ld bytes (want %ld and %ld): %s\n",
          way, t->responses, t->bytes, (long)NURLS * nworkers, want_bytes,
          t->err == -EBADMSG ? "a status, length or checksum differed"
          : t->err != 0      ? coro_strerror(t->err)
                             : "the checksums differ");
  return -1;
}

/* ---- http-parser: one response, fed in pieces ------------------------------ */

struct response {
  http_parser p;
  size_t bytes;
  uint64_t sum;
  int done;
};

static int on_body(http_parser *p, const char *at, size_t len) {
  struct response *r = p->data;
  r->bytes += len;
  r->sum = fnv1a(r->sum, at, len);
  return 0;
}
static int on_message_complete(http_parser *p) {
  struct response *r = p->data;
  r->done = 1;
  http_parser_pause(p, 1); /* stop at the end of this response */
  return 0;
}
static const http_parser_settings parser_settings = {
    .on_body = on_body, .on_message_complete = on_message_complete};

static void response_init(struct response *r) {
  http_parser_init(&r->p, HTTP_RESPONSE);
  r->p.data = r;
  r->bytes = 0;
  r->sum = FNV_OFFSET;
  r->done = 0;
}

/* Feed what a read returned (n == 0: end of stream). 1 once the response is
 * complete, 0 while more is needed, -EPROTO for anything else (malformed,
 * bytes after the response, end of stream too soon). */
static int response_feed(struct response *r, const char *buf, size_t n) {
  size_t used = http_parser_execute(&r->p, &parser_settings, buf, n);
  if (r->done) return used == n ? 1 : -EPROTO;
  if (n == 0 || HTTP_PARSER_ERRNO(&r->p) != HPE_OK || used != n)
    return -EPROTO;
  return 0;
}

/* ---- blocking sockets: sync, threads, processes ---------------------------- */

static int send_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return -errno;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* One worker: one connection, the four URLs in turn. */
static void blocking_worker(struct tally *t) {
  char buf[READ_CAP];
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    t->err = -errno;
    return;
  }
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int one = 1;
  struct timeval limit = {.tv_sec = 10}; /* a stuck server fails the run */
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
  int r = connect(fd, (struct sockaddr *)&a, sizeof a) == 0 ? 0 : -errno;
  if (r == 0) t->connections++;
  for (int k = 0; r == 0 && k < NURLS; k++) {
    r = send_all(fd, requests[k], request_len[k]);
    struct response resp;
    response_init(&resp);
    while (r == 0) {
      ssize_t n = recv(fd, buf, sizeof buf, 0);
      if (n < 0 && errno == EINTR) continue;
      r = n < 0 ? -errno : response_feed(&resp, buf, (size_t)n);
    }
    if (r == 1) {
      tally_response(t, k, resp.p.status_code, resp.bytes, resp.sum);
      r = 0;
    }
  }
  if (r != 0 && t->err == 0) t->err = r;
  close(fd);
}

static int run_sync(void) {
  struct tally t = {0};
  double t0 = now_s();
  for (int i = 0; i < nworkers; i++) blocking_worker(&t);
  return report("Sync", t0, &t);
}

static void *thread_body(void *arg) {
  blocking_worker(arg);
  return NULL;
}

static int run_threads(void) {
  struct tally *ts = calloc((size_t)nworkers, sizeof *ts);
  pthread_t *th = calloc((size_t)nworkers, sizeof *th);
  struct tally t = {0};
  if (ts == NULL || th == NULL) t.err = -ENOMEM;
  double t0 = now_s();
  int made = 0;
  for (; t.err == 0 && made < nworkers; made++) {
    int r = pthread_create(&th[made], NULL, thread_body, &ts[made]);
    if (r != 0) t.err = -r;
  }
  for (int i = 0; i < made; i++) {
    pthread_join(th[i], NULL);
    tally_add(&t, &ts[i]);
  }
  int r = report("Threads", t0, &t);
  free(ts);
  free(th);
  return r;
}

/* Each child does one worker's downloads and sends its tally back through a
 * pipe. The child only uses blocking sockets and write(): nothing of the
 * parent's loops or threads. */
static int run_processes(void) {
  pid_t *pid = calloc((size_t)nworkers, sizeof *pid);
  int *fds = calloc((size_t)nworkers, sizeof *fds);
  struct tally t = {0};
  if (pid == NULL || fds == NULL) t.err = -ENOMEM;
  fflush(stdout);
  double t0 = now_s();
  int made = 0;
  for (; t.err == 0 && made < nworkers; made++) {
    int p[2];
    if (pipe(p) != 0) {
      t.err = -errno;
      break;
    }
    pid[made] = fork();
    if (pid[made] == 0) {
      struct tally mine = {0};
      close(p[0]);
      blocking_worker(&mine);
      _exit(write(p[1], &mine, sizeof mine) == (ssize_t)sizeof mine ? 0 : 1);
    }
    close(p[1]);
    if (pid[made] < 0) {
      t.err = -errno;
      close(p[0]);
      break;
    }
    fds[made] = p[0];
  }
  for (int i = 0; i < made; i++) {
    struct tally theirs = {0};
    ssize_t n;
    while ((n = read(fds[i], &theirs, sizeof theirs)) < 0 && errno == EINTR) {
    }
    if (n != (ssize_t)sizeof theirs) theirs.err = -EPIPE; /* the child died */
    tally_add(&t, &theirs);
    close(fds[i]);
    waitpid(pid[i], NULL, 0);
  }
  int r = report("Processes", t0, &t);
  free(pid);
  free(fds);
  return r;
}

/* ---- coroutines on libcoro streams ----------------------------------------- */

/* What a worker task gets: its own tally, and the way's shared context. */
struct worker_arg {
  void *ctx;
  struct tally *tally;
};

/* Spawn nworkers tasks of fn and wait for all; add up their tallies. */
static int gather_workers(coro_fn fn, struct tally *t, void *ctx) {
  coro_future **fs = calloc((size_t)nworkers, sizeof *fs);
  struct worker_arg *args = calloc((size_t)nworkers, sizeof *args);
  struct tally *ts = calloc((size_t)nworkers, sizeof *ts);
  int made = 0;
  if (fs == NULL || args == NULL || ts == NULL) t->err = -ENOMEM;
  for (; t->err == 0 && made < nworkers; made++) {
    args[made] = (struct worker_arg){ctx, &ts[made]};
    int r = coro_spawn(&fs[made], fn, &args[made]);
    if (r != 0) t->err = r;
  }
  coro_gather(fs, (size_t)made, NULL, NULL); /* the statuses are in ts[] */
  for (int i = 0; i < made; i++) {
    coro_future_release(fs[i]);
    tally_add(t, &ts[i]);
  }
  free(fs);
  free(args);
  free(ts);
  return t->err;
}

static void *coro_worker(void *arg) {
  struct tally *t = ((struct worker_arg *)arg)->tally;
  char buf[READ_CAP];
  coro_stream *s;
  int r = coro_tcp_connect(&s, "127.0.0.1", port_str, 10000);
  if (r != 0) {
    t->err = r;
    return coro_fail(r);
  }
  t->connections++;
  coro_tcp_nodelay(s, 1);
  coro_stream_set_timeouts(s, 10000, 10000); /* a stuck server fails the run */
  for (int k = 0; r == 0 && k < NURLS; k++) {
    r = coro_stream_write(s, requests[k], request_len[k]);
    struct response resp;
    response_init(&resp);
    while (r == 0) {
      ssize_t n = coro_stream_read(s, buf, sizeof buf);
      r = n < 0 ? (int)n : response_feed(&resp, buf, (size_t)n);
    }
    if (r == 1) {
      tally_response(t, k, resp.p.status_code, resp.bytes, resp.sum);
      r = 0;
    }
  }
  coro_stream_close(s);
  if (r != 0 && t->err == 0) t->err = r;
  return r == 0 ? NULL : coro_fail(r);
}

static void *coro_main(void *arg) {
  gather_workers(coro_worker, arg, NULL);
  return NULL;
}

static int run_coroutines(void) {
  struct tally t = {0};
  double t0 = now_s();
  int r = coro_run(coro_main, &t, NULL);
  if (r != 0 && t.err == 0) t.err = r;
  return report("Coroutines", t0, &t);
}

/* ---- coroutines + libcurl's multi socket interface ------------------------- */

#ifdef FETCH_HAVE_LIBCURL
struct curl_ctx {
  CURLM *multi;
  int epfd;         /* the sockets libcurl asked to watch, and wakefd */
  int wakefd;       /* an eventfd: wakes the driver to look at the timer again */
  int64_t deadline; /* libcurl's timer, on the loop's clock; -1: none */
  int waiting;      /* the driver is suspended in coro_wait_fd */
  int err;
};

struct transfer {
  coro_future *done; /* resolved by the driver when libcurl is done */
  CURLcode result;
  size_t bytes;
  uint64_t sum;
};

/* CURLMOPT_SOCKETFUNCTION: mirror libcurl's interest in socket s. */
static int socket_cb(CURL *easy, curl_socket_t s, int what, void *userp,
                     void *socketp) {
  struct curl_ctx *c = userp;
  (void)easy;
  (void)socketp;
  if (what == CURL_POLL_REMOVE) {
    epoll_ctl(c->epfd, EPOLL_CTL_DEL, s, NULL); /* ENOENT, EBADF: gone anyway */
    return 0;
  }
  struct epoll_event ev = {.data.fd = s};
  if (what & CURL_POLL_IN) ev.events |= EPOLLIN;
  if (what & CURL_POLL_OUT) ev.events |= EPOLLOUT;
  if (epoll_ctl(c->epfd, EPOLL_CTL_MOD, s, &ev) != 0 && errno == ENOENT &&
      epoll_ctl(c->epfd, EPOLL_CTL_ADD, s, &ev) != 0)
    return -1;
  return 0;
}

/* CURLMOPT_TIMERFUNCTION: libcurl wants a call back in timeout_ms (-1: no
 * more). A driver already waiting is woken to wait for the new deadline. */
static int timer_cb(CURLM *multi, long timeout_ms, void *userp) {
  struct curl_ctx *c = userp;
  (void)multi;
  c->deadline = timeout_ms < 0 ? -1 : coro_now_ms() + timeout_ms;
  if (c->waiting) eventfd_write(c->wakefd, 1);
  return 0;
}

/* Tell every finished transfer's worker. */
static void finish_transfers(struct curl_ctx *c) {
  CURLMsg *m;
  int left;
  while ((m = curl_multi_info_read(c->multi, &left)) != NULL) {
    if (m->msg != CURLMSG_DONE) continue;
    struct transfer *t;
    curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&t);
    t->result = m->data.result;
    coro_future_resolve(t->done, NULL);
  }
}

/* The driver task: wait for a socket or the timer, let libcurl act. It runs
 * until cancelled. */
static void *curl_driver(void *arg) {
  struct curl_ctx *c = arg;
  struct epoll_event evs[32];
  int running;
  for (;;) {
    int64_t wait = CORO_FOREVER;
    if (c->deadline >= 0) {
      wait = c->deadline - coro_now_ms();
      if (wait < 0) wait = 0;
    }
    c->waiting = 1;
    int r = coro_wait_fd(c->epfd, CORO_READABLE, wait);
    c->waiting = 0;
    if (r == -ECANCELED) break;
    if (r < 0 && r != -ETIMEDOUT) {
      c->err = r;
      break;
    }
    int n = r > 0 ? epoll_wait(c->epfd, evs, 32, 0) : 0;
    for (int i = 0; i < n; i++) {
      if (evs[i].data.fd == c->wakefd) {
        eventfd_t v;
        eventfd_read(c->wakefd, &v);
        continue;
      }
      int flags = 0;
      if (evs[i].events & EPOLLIN) flags |= CURL_CSELECT_IN;
      if (evs[i].events & EPOLLOUT) flags |= CURL_CSELECT_OUT;
      if (evs[i].events & (EPOLLERR | EPOLLHUP)) flags |= CURL_CSELECT_ERR;
      curl_multi_socket_action(c->multi, evs[i].data.fd, flags, &running);
    }
    if (r == -ETIMEDOUT || (c->deadline >= 0 && coro_now_ms() >= c->deadline)) {
      c->deadline = -1;
      curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    }
    finish_transfers(c);
  }
  return c->err == 0 ? NULL : coro_fail(c->err);
}

/* curl_easy_perform for a task: run easy on the multi handle and suspend
 * until it is done. A cancelled wait takes the transfer off again. */
static int curl_perform(struct curl_ctx *c, CURL *easy, struct transfer *t) {
  int r = coro_future_new(&t->done);
  if (r != 0) return r;
  if (curl_multi_add_handle(c->multi, easy) != CURLM_OK) {
    coro_future_release(t->done);
    return -ENOMEM;
  }
  r = coro_await(t->done, NULL);
  curl_multi_remove_handle(c->multi, easy);
  coro_future_release(t->done);
  t->done = NULL;
  if (r == 0 && t->result != CURLE_OK) r = -EIO;
  return r;
}

static size_t on_curl_body(char *data, size_t size, size_t n, void *arg) {
  struct transfer *t = arg;
  t->bytes += size * n;
  t->sum = fnv1a(t->sum, data, size * n);
  return size * n;
}

static void *curl_worker(void *arg) {
  struct curl_ctx *c = ((struct worker_arg *)arg)->ctx;
  struct tally *tl = ((struct worker_arg *)arg)->tally;
  struct transfer t = {0};
  CURL *easy = curl_easy_init();
  if (easy == NULL) return coro_fail(tl->err = -ENOMEM);
  curl_easy_setopt(easy, CURLOPT_PRIVATE, &t);
  curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_curl_body);
  curl_easy_setopt(easy, CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(easy, CURLOPT_PROXY, ""); /* never a proxy from the environment */
  curl_easy_setopt(easy, CURLOPT_TCP_NODELAY, 1L);
  curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, 10000L);
  int r = 0;
  for (int k = 0; r == 0 && k < NURLS; k++) {
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, paths[k]);
    curl_easy_setopt(easy, CURLOPT_URL, url);
    t.bytes = 0;
    t.sum = FNV_OFFSET;
    r = curl_perform(c, easy, &t);
    if (r != 0) break;
    long status = 0, connects = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(easy, CURLINFO_NUM_CONNECTS, &connects);
    tl->connections += connects; /* 0 when a kept-alive connection served */
    tally_response(tl, k, (int)status, t.bytes, t.sum);
  }
  curl_easy_cleanup(easy);
  if (r != 0 && tl->err == 0) tl->err = r;
  return r == 0 ? NULL : coro_fail(r);
}

static void *curl_main(void *arg) {
  struct tally *t = arg;
  struct curl_ctx c = {.deadline = -1, .epfd = -1, .wakefd = -1};
  c.multi = curl_multi_init();
  c.epfd = epoll_create1(EPOLL_CLOEXEC);
  c.wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = c.wakefd};
  if (c.multi == NULL || c.epfd < 0 || c.wakefd < 0 ||
      epoll_ctl(c.epfd, EPOLL_CTL_ADD, c.wakefd, &ev) != 0) {
    t->err = -ENOMEM;
  } else {
    curl_multi_setopt(c.multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(c.multi, CURLMOPT_SOCKETDATA, &c);
    curl_multi_setopt(c.multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(c.multi, CURLMOPT_TIMERDATA, &c);
    coro_future *driver;
    int r = coro_spawn(&driver, curl_driver, &c);
    if (r == 0) {
      gather_workers(curl_worker, t, &c);
      coro_cancel(driver); /* every transfer is done: stop driving */
      coro_await(driver, NULL);
      coro_future_release(driver);
      if (t->err == 0) t->err = c.err;
    } else {
      t->err = r;
    }
  }
  if (c.multi != NULL) curl_multi_cleanup(c.multi); /* may call socket_cb */
  if (c.wakefd >= 0) close(c.wakefd);
  if (c.epfd >= 0) close(c.epfd);
  return NULL;
}

static int run_curl(void) {
  struct tally t = {0};
  double t0 = now_s();
  int r = coro_run(curl_main, &t, NULL);
  if (r != 0 && t.err == 0) t.err = r;
  return report("Coroutines + libcurl", t0, &t);
}
#endif /* FETCH_HAVE_LIBCURL */

/* ---- main ------------------------------------------------------------------ */

/* The bodies: bytes that differ from URL to URL and from place to place, so
 * that a misplaced or missing piece changes the checksum. */
static int make_bodies(void) {
  for (int k = 0; k < NURLS; k++) {
    bodies[k] = malloc(sizes[k]);
    if (bodies[k] == NULL) return -ENOMEM;
    uint32_t x = 2463534242u + (uint32_t)k;
    for (size_t i = 0; i < sizes[k]; i++) {
      x ^= x << 13;
      x ^= x >> 17;
      x ^= x << 5;
      bodies[k][i] = (char)('a' + x % 26);
    }
    checksums[k] = fnv1a(FNV_OFFSET, bodies[k], sizes[k]);
  }
  return 0;
}

int main(int argc, char **argv) {
  if (argc > 1) nworkers = atoi(argv[1]);
  if (argc > 2 || nworkers < 1 || nworkers > MAX_WORKERS) {
    fprintf(stderr, "usage: %s [WORKERS (1..%d)]\n", argv[0], MAX_WORKERS);
    return 2;
  }
  if (make_bodies() != 0) return 1;
  struct server sv;
  int r = server_start(&sv);
  if (r != 0) {
    fprintf(stderr, "fetch: cannot start the server: %s\n", coro_strerror(r));
    return 1;
  }
  snprintf(port_str, sizeof port_str, "%d", port);
  for (int k = 0; k < NURLS; k++)
    request_len[k] = (size_t)snprintf(requests[k], sizeof requests[k],
                                      "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n",
                                      paths[k], port);

  int failed = 0;
  failed |= run_sync() != 0;
  failed |= run_threads() != 0;
  failed |= run_processes() != 0;
  failed |= run_coroutines() != 0;
#ifdef FETCH_HAVE_LIBCURL
  curl_global_init(CURL_GLOBAL_DEFAULT);
  failed |= run_curl() != 0;
  curl_global_cleanup();
#else
  printf("Coroutines + libcurl: not built (CMake found no libcurl)\n");
#endif
  server_stop(&sv);

  long total = 0;
  for (int k = 0; k < NURLS; k++) {
    total += (long)sizes[k] * nworkers;
    free(bodies[k]);
  }
  if (failed) {
    fprintf(stderr, "fetch: some downloads went wrong (see above)\n");
    return 1;
  }
  printf("every way got %d responses, %ld bytes, checksums match\n",
         NURLS * nworkers, total);
  return 0;
}
