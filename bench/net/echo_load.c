/* SPDX-License-Identifier: MIT */
/* Load generator for the echo servers: C connections, each sending one
 * SIZE-byte message, waiting until all of it has come back, and sending the
 * next (ping-pong), on one thread with plain level-triggered epoll and
 * non-blocking sockets. After a warm-up it counts complete round trips for
 * a fixed time; with -p it also reads the server's CPU time (user + kernel,
 * from /proc/PID/stat) over exactly that interval.
 *
 * Usage: echo_load [-c CONNS] [-s SIZE] [-d SECONDS] [-w WARMUP] [-p PID]
 *                  HOST PORT
 * Prints one line:
 *   echo_load: N msgs/s conns=C size=S seconds=D msgs=M client_cpu_s=U
 *              [server_cpu_us_per_msg=X server_cpu_s=Y]
 * Exits 1 if a connection failed, the data came back wrong, or no message
 * completed. */
#include <getopt.h>
#include <sys/epoll.h>


#include "netbench.h"

typedef struct conn {
  int fd;
  size_t sent, got;    /* bytes of the current message */
  int want_out;        /* EPOLLOUT registered */
} conn;

static unsigned char *msg;
static size_t size = 1024;
static unsigned char rbuf[65536];

static void usage(void) {
  fprintf(stderr, "usage: echo_load [-c CONNS] [-s SIZE] [-d SECONDS] "
                  "[-w WARMUP] [-p PID] HOST PORT\n");
  exit(2);
}

static int set_events(int ep, conn *c, int out) {
  if (c->want_out == out) return 0;
  struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0),
                           .data.ptr = c};
  c->want_out = out;
  return epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Push the rest of the current message; -1 on a broken connection. */
static int pump_out(int ep, conn *c) {
  while (c->sent < size) {
    ssize_t w = send(c->fd, msg + c->sent, size - c->sent, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EAGAIN) return set_events(ep, c, 1);
      return -1;
    }
    c->sent += (size_t)w;
  }
  return set_events(ep, c, 0);
}

int main(int argc, char **argv) {
  int nconns = 100, pid = 0, opt;
  double seconds = 10, warmup = 1;
  while ((opt = getopt(argc, argv, "c:s:d:w:p:")) != -1) {
    switch (opt) {
      case 'c': nconns = atoi(optarg); break;
      case 's': size = (size_t)atol(optarg); break;
      case 'd': seconds = atof(optarg); break;
      case 'w': warmup = atof(optarg); break;
      case 'p': pid = atoi(optarg); break;
      default: usage();
    }
  }
  if (argc - optind != 2 || nconns < 1 || size < 1 || size > sizeof rbuf ||
      seconds <= 0 || warmup < 0)
    usage();
  struct sockaddr_in sa;
  if (nb_addr(&sa, argv[optind], argv[optind + 1]) < 0) usage();
  nb_raise_nofile();
  msg = malloc(size);
  for (size_t i = 0; i < size; i++) msg[i] = (unsigned char)(i * 7 + 1);

  int ep = epoll_create1(EPOLL_CLOEXEC);
  conn *conns = calloc((size_t)nconns, sizeof *conns);
  for (int i = 0; i < nconns; i++) {
    conn *c = &conns[i];
    c->fd = nb_connect(&sa);
    if (c->fd < 0) {
      fprintf(stderr, "echo_load: connect: %s\n", strerror(-c->fd));
      return 1;
    }
    nb_nonblock(c->fd);
    nb_nodelay(c->fd);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
  }
  for (int i = 0; i < nconns; i++)
    if (pump_out(ep, &conns[i]) < 0) {
      fprintf(stderr, "echo_load: send: %s\n", strerror(errno));
      return 1;
    }

  unsigned long long msgs = 0, msgs0 = 0;
  double t_start = nb_now(), t_measure = t_start + warmup;
  double t_end = t_measure + seconds, cpu0 = -1, t0 = 0, self0 = 0;
  int measuring = 0, bad = 0;
  struct epoll_event evs[256];
  for (;;) {
    int n = epoll_wait(ep, evs, 256, 100);
    if (n < 0 && errno != EINTR) { perror("echo_load: epoll_wait"); return 1; }
    for (int i = 0; i < n; i++) {
      conn *c = evs[i].data.ptr;
      if (evs[i].events & EPOLLOUT && pump_out(ep, c) < 0) { bad = 1; break; }
      if (!(evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))) continue;
      for (;;) {
        ssize_t r = recv(c->fd, rbuf, sizeof rbuf, 0);
        if (r < 0 && errno == EAGAIN) break;
        if (r <= 0 || c->got + (size_t)r > size ||
            memcmp(rbuf, msg + c->got, (size_t)r) != 0) {
          fprintf(stderr, "echo_load: %s\n",
                  r < 0 ? strerror(errno)
                        : r == 0 ? "server closed a connection"
                                 : "echoed data differs");
          bad = 1;
          break;
        }
        c->got += (size_t)r;
        if (c->got == size) {
          msgs++;
          c->got = c->sent = 0;
          if (pump_out(ep, c) < 0) { bad = 1; break; }
          break;   /* the next reply cannot be there yet */
        }
      }
      if (bad) break;
    }
    if (bad) break;
    double t = nb_now();
    if (!measuring && t >= t_measure) {
      measuring = 1;
      msgs0 = msgs;
      t0 = t;
      cpu0 = nb_proc_cpu(pid);
      self0 = nb_self_cpu();
    }
    if (measuring && t >= t_end) {
      double cpu1 = nb_proc_cpu(pid), self = nb_self_cpu() - self0;
      unsigned long long m = msgs - msgs0;
      double dt = t - t0;
      printf("echo_load: %.0f msgs/s conns=%d size=%zu seconds=%.2f msgs=%llu"
             " client_cpu_s=%.2f",
             (double)m / dt, nconns, size, dt, m, self);
      if (pid > 0 && cpu0 >= 0 && cpu1 >= 0 && m > 0)
        printf(" server_cpu_us_per_msg=%.3f server_cpu_s=%.2f",
               (cpu1 - cpu0) * 1e6 / (double)m, cpu1 - cpu0);
      printf("\n");
      fflush(stdout);
      for (int i = 0; i < nconns; i++) close(conns[i].fd);
      close(ep);
      free(conns);
      free(msg);
      return m > 0 ? 0 : 1;
    }
  }
  return 1;
}
