/* SPDX-License-Identifier: MIT */
/* Memory per idle connection: reads the server's VmRSS (/proc/PID/status),
 * opens N connections to its echo port, makes one 64-byte round trip on
 * each (so the server has accepted every one and set it up for reading),
 * lets it settle, reads VmRSS again, and prints the difference per
 * connection. The descriptor limit is raised to the hard limit first; if
 * that does not leave room for N, N is lowered to what fits, and the line
 * says so (limited=1).
 *
 * Usage: idle_conns [-n N] [-s SETTLE_MS] [-k KEEP_MS] -p PID HOST PORT
 * (-k keeps the connections open that long after the line is printed, to
 * look at the server meanwhile.)
 * Prints one line:
 *   idle_conns: B bytes/conn conns=N rss_before=X rss_after=Y [limited=1 hard_limit=H]
 * Exits 1 if a connection or its round trip failed. */
#include <getopt.h>
#include <poll.h>

#include "netbench.h"

static void usage(void) {
  fprintf(stderr, "usage: idle_conns [-n N] [-s SETTLE_MS] [-k KEEP_MS] -p PID HOST PORT\n");
  exit(2);
}

/* Read exactly n bytes within timeout_ms. */
static int read_full(int fd, char *buf, size_t n, int timeout_ms) {
  size_t got = 0;
  while (got < n) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, timeout_ms) != 1) return -1;
    ssize_t r = recv(fd, buf + got, n - got, 0);
    if (r <= 0) return -1;
    got += (size_t)r;
  }
  return 0;
}

int main(int argc, char **argv) {
  int n = 10000, pid = 0, settle_ms = 1000, keep_ms = 0, opt;
  while ((opt = getopt(argc, argv, "n:s:k:p:")) != -1) {
    switch (opt) {
      case 'n': n = atoi(optarg); break;
      case 's': settle_ms = atoi(optarg); break;
      case 'k': keep_ms = atoi(optarg); break;
      case 'p': pid = atoi(optarg); break;
      default: usage();
    }
  }
  if (argc - optind != 2 || n < 1 || pid <= 0) usage();
  struct sockaddr_in sa;
  if (nb_addr(&sa, argv[optind], argv[optind + 1]) < 0) usage();
  long lim = nb_raise_nofile();
  int limited = 0;
  if (lim > 0 && n > lim - 100) {
    n = (int)(lim - 100);
    limited = 1;
  }
  int *fds = calloc((size_t)n, sizeof *fds);
  char ping[64], pong[64];
  memset(ping, 'x', sizeof ping);
  usleep(200 * 1000);
  long long before = nb_proc_status_kb(pid, "VmRSS");
  for (int i = 0; i < n; i++) {
    fds[i] = nb_connect(&sa);
    if (fds[i] < 0) {
      fprintf(stderr, "idle_conns: connect #%d: %s\n", i, strerror(-fds[i]));
      return 1;
    }
    /* Round trips in batches of 100 keep the accept queue short. */
    if (i % 100 == 99 || i == n - 1) {
      for (int j = i - i % 100; j <= i; j++)
        if (send(fds[j], ping, sizeof ping, MSG_NOSIGNAL) != (ssize_t)sizeof ping) {
          fprintf(stderr, "idle_conns: send #%d: %s\n", j, strerror(errno));
          return 1;
        }
      for (int j = i - i % 100; j <= i; j++)
        if (read_full(fds[j], pong, sizeof pong, 10000) < 0 ||
            memcmp(ping, pong, sizeof ping) != 0) {
          fprintf(stderr, "idle_conns: no echo on connection #%d\n", j);
          return 1;
        }
    }
  }
  usleep((useconds_t)settle_ms * 1000);
  long long after = nb_proc_status_kb(pid, "VmRSS");
  if (before < 0 || after < 0) {
    fprintf(stderr, "idle_conns: cannot read /proc/%d/status\n", pid);
    return 1;
  }
  printf("idle_conns: %.0f bytes/conn conns=%d rss_before=%lld rss_after=%lld",
         (double)(after - before) / n, n, before, after);
  if (limited) printf(" limited=1 hard_limit=%ld", lim);
  printf("\n");
  fflush(stdout);
  if (keep_ms > 0) usleep((useconds_t)keep_ms * 1000);
  for (int i = 0; i < n; i++) close(fds[i]);
  free(fds);
  return 0;
}
