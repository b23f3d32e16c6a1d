/* SPDX-License-Identifier: MIT */
/* Connection churn against an HTTP server: C connectors, each in a loop of
 * non-blocking connect, one "GET /" request, reading the whole response
 * (headers and Content-Length body), close. The close resets the connection
 * (SO_LINGER 0) so that the client keeps no TIME_WAIT socket and loopback's
 * ephemeral ports do not run out; the server sees the reset after it has
 * answered. One thread, epoll. After a warm-up, complete connections are
 * counted for a fixed time; with -p the server's CPU time (user + kernel)
 * over that interval is read from /proc/PID/stat.
 *
 * Usage: churn [-c CONCURRENCY] [-d SECONDS] [-w WARMUP] [-p PID] HOST PORT
 * Prints one line:
 *   churn: N conns/s concurrency=C seconds=D conns=M errors=E client_cpu_s=U
 *          [server_cpu_us_per_conn=X server_cpu_s=Y]
 * Exits 1 if nothing completed or more than 1% of the attempts failed. */
#include <getopt.h>
#include <sys/epoll.h>


#include "netbench.h"

typedef struct slot {
  int fd;
  int connected;
  size_t sent, got;
  char resp[4096];
} slot;

static const char REQUEST[] = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
#define REQUEST_LEN (sizeof REQUEST - 1)
static struct sockaddr_in sa;
static int ep;
static unsigned long long done_conns, errors;

static void usage(void) {
  fprintf(stderr, "usage: churn [-c CONCURRENCY] [-d SECONDS] [-w WARMUP] "
                  "[-p PID] HOST PORT\n");
  exit(2);
}

static void slot_close(slot *s, int ok) {
  struct linger lg = {.l_onoff = 1, .l_linger = 0};
  setsockopt(s->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  close(s->fd);   /* also leaves the epoll set */
  s->fd = -1;
  if (ok) done_conns++; else errors++;
}

/* Start a connection in s; on failure s->fd is -1, the error counted. */
static int slot_open(slot *s) {
  s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (s->fd < 0) goto fail;
  s->connected = 0;
  s->sent = s->got = 0;
  nb_nodelay(s->fd);
  struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = s};
  if (connect(s->fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
    s->connected = 1;
    ev.events = EPOLLIN;
    s->sent = REQUEST_LEN;
    if (send(s->fd, REQUEST, REQUEST_LEN, MSG_NOSIGNAL) != (ssize_t)REQUEST_LEN)
      goto fail;
  } else if (errno != EINPROGRESS) {
    goto fail;
  }
  if (epoll_ctl(ep, EPOLL_CTL_ADD, s->fd, &ev) == 0) return 0;
fail:
  if (s->fd >= 0) close(s->fd);
  s->fd = -1;
  errors++;
  return -1;
}

/* 1 when the response in s->resp is complete, 0 if not yet, -1 if bad. */
static int response_done(slot *s) {
  s->resp[s->got] = 0;
  char *end = strstr(s->resp, "\r\n\r\n");
  if (!end) return s->got >= sizeof s->resp - 1 ? -1 : 0;
  if (strncmp(s->resp, "HTTP/1.1 200", 12) != 0) return -1;
  size_t head = (size_t)(end - s->resp) + 4, clen = 0;
  for (char *p = s->resp; p < end; p = strstr(p, "\r\n") + 2)
    if (strncasecmp(p, "content-length:", 15) == 0) clen = (size_t)atol(p + 15);
  return s->got >= head + clen ? 1 : 0;
}

static void slot_event(slot *s, unsigned events) {
  if (!s->connected) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err || (events & (EPOLLERR | EPOLLHUP))) goto fail;
    s->connected = 1;
    if (send(s->fd, REQUEST, REQUEST_LEN, MSG_NOSIGNAL) != (ssize_t)REQUEST_LEN)
      goto fail;
    s->sent = REQUEST_LEN;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = s};
    if (epoll_ctl(ep, EPOLL_CTL_MOD, s->fd, &ev) < 0) goto fail;
    return;
  }
  for (;;) {
    ssize_t r = recv(s->fd, s->resp + s->got, sizeof s->resp - 1 - s->got, 0);
    if (r < 0 && errno == EAGAIN) return;
    if (r <= 0) goto fail;
    s->got += (size_t)r;
    int d = response_done(s);
    if (d < 0) goto fail;
    if (d > 0) break;
  }
  slot_close(s, 1);
  slot_open(s);
  return;
fail:
  slot_close(s, 0);
  slot_open(s);
}

int main(int argc, char **argv) {
  int conc = 50, pid = 0, opt;
  double seconds = 10, warmup = 1;
  while ((opt = getopt(argc, argv, "c:d:w:p:")) != -1) {
    switch (opt) {
      case 'c': conc = atoi(optarg); break;
      case 'd': seconds = atof(optarg); break;
      case 'w': warmup = atof(optarg); break;
      case 'p': pid = atoi(optarg); break;
      default: usage();
    }
  }
  if (argc - optind != 2 || conc < 1 || seconds <= 0 || warmup < 0) usage();
  if (nb_addr(&sa, argv[optind], argv[optind + 1]) < 0) usage();
  nb_raise_nofile();
  ep = epoll_create1(EPOLL_CLOEXEC);
  slot *slots = calloc((size_t)conc, sizeof *slots);
  for (int i = 0; i < conc; i++)
    if (slot_open(&slots[i]) < 0) {
      fprintf(stderr, "churn: connect: %s\n", strerror(errno));
      return 1;
    }
  double t_measure = nb_now() + warmup, t_end = t_measure + seconds;
  double t0 = 0, cpu0 = -1, self0 = 0;
  unsigned long long c0 = 0, e0 = 0;
  int measuring = 0;
  struct epoll_event evs[256];
  for (;;) {
    int n = epoll_wait(ep, evs, 256, 100);
    if (n < 0 && errno != EINTR) { perror("churn: epoll_wait"); return 1; }
    for (int i = 0; i < n; i++) slot_event(evs[i].data.ptr, evs[i].events);
    /* Slots whose reopen failed (e.g. no ports) are retried here. */
    for (int i = 0; i < conc; i++)
      if (slots[i].fd < 0) slot_open(&slots[i]);
    double t = nb_now();
    if (!measuring && t >= t_measure) {
      measuring = 1;
      t0 = t;
      c0 = done_conns;
      e0 = errors;
      cpu0 = nb_proc_cpu(pid);
      self0 = nb_self_cpu();
    }
    if (measuring && t >= t_end) {
      double cpu1 = nb_proc_cpu(pid), dt = t - t0, self = nb_self_cpu() - self0;
      unsigned long long m = done_conns - c0, e = errors - e0;
      printf("churn: %.0f conns/s concurrency=%d seconds=%.2f conns=%llu errors=%llu"
             " client_cpu_s=%.2f",
             (double)m / dt, conc, dt, m, e, self);
      if (pid > 0 && cpu0 >= 0 && cpu1 >= 0 && m > 0)
        printf(" server_cpu_us_per_conn=%.3f server_cpu_s=%.2f",
               (cpu1 - cpu0) * 1e6 / (double)m, cpu1 - cpu0);
      printf("\n");
      fflush(stdout);
      for (int i = 0; i < conc; i++)
        if (slots[i].fd >= 0) close(slots[i].fd);
      close(ep);
      free(slots);
      return m > 0 && e * 100 <= m + e ? 0 : 1;
    }
  }
}
