/* SPDX-License-Identifier: MIT */
/* echo: a line echo server and its clients, over libcoro streams.
 *
 * The server accepts with coro_server_serve (asyncio.start_server +
 * serve_forever): one task per connection, each reading lines with
 * coro_stream_read_line and writing them back. A client connects with
 * coro_tcp_connect, sends lines of varied length and checks that each one
 * comes back unchanged. Every call that waits suspends only its own task, so
 * one thread serves every connection and runs every client at once.
 *
 *   echo [CLIENTS]                 server and CLIENTS clients (default 10) in
 *                                  one process, on a free port of 127.0.0.1;
 *                                  prints a summary, exits 0 if every line
 *                                  came back
 *   echo --server [PORT]           only the server, on 127.0.0.1:PORT
 *                                  (default 7007), until killed
 *   echo --client [PORT [CLIENTS]] only the clients, against a running server
 *
 * Expected output of `echo` (the port varies):
 *
 *   server listening on 127.0.0.1:40213
 *   10 clients: 1000 lines, 87600 bytes echoed, 0 mismatches
 *   server: 10 connections, 1000 lines */
#define _GNU_SOURCE
#include <coro.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { LINES_PER_CLIENT = 100, LINE_MAX_LEN = 256 };

/* ---- the server ---------------------------------------------------------- */

struct server_stats {
  long connections;
  long lines;
};

/* One task per connection: echo every line until the peer closes. */
static void echo_conn(coro_stream *conn, void *arg) {
  struct server_stats *st = arg;
  char line[LINE_MAX_LEN];
  st->connections++;
  for (;;) {
    ssize_t n = coro_stream_read_line(conn, line, sizeof line);
    if (n == -ENOBUFS) /* a line longer than our buffer: pass a piece on */
      n = coro_stream_read(conn, line, sizeof line);
    if (n <= 0) /* 0: the client closed; < 0: an error or cancellation */
      break;
    if (coro_stream_write(conn, line, (size_t)n) != 0) break;
    st->lines++;
  }
  /* Returning closes the stream. */
}

struct server_task {
  coro_server *srv;
  struct server_stats stats;
};

static void *server_main(void *arg) {
  struct server_task *s = arg;
  int r = coro_server_serve(s->srv, echo_conn, &s->stats);
  return r == 0 ? NULL : coro_fail(r);
}

/* ---- the clients --------------------------------------------------------- */

struct client {
  const char *port;
  int id;
  long lines, bytes, mismatches;
  int err;
};

static void *client_main(void *arg) {
  struct client *c = arg;
  coro_stream *s;
  int r = coro_tcp_connect(&s, "127.0.0.1", c->port, 5000);
  if (r != 0) {
    c->err = r;
    return coro_fail(r);
  }
  /* A server that stops answering should fail the client, not hang it. */
  coro_stream_set_timeouts(s, 5000, 5000);
  char out[LINE_MAX_LEN], in[LINE_MAX_LEN];
  for (int i = 0; i < LINES_PER_CLIENT; i++) {
    /* Lines of 20 to 160-odd bytes, different for every client and line. */
    int len = snprintf(out, sizeof out, "client %d line %d %.*s\n", c->id, i,
                       (i * 7 + c->id * 13) % 140,
                       "the quick brown fox jumps over the lazy dog, "
                       "the quick brown fox jumps over the lazy dog, "
                       "the quick brown fox jumps over the lazy dog, "
                       "the quick brown fox jumps over the lazy dog");
    r = coro_stream_write(s, out, (size_t)len);
    if (r != 0) break;
    ssize_t n = coro_stream_read_line(s, in, sizeof in);
    if (n < 0) {
      r = (int)n;
      break;
    }
    if (n != len || memcmp(in, out, (size_t)len) != 0) c->mismatches++;
    c->lines++;
    c->bytes += n;
  }
  coro_stream_close(s);
  c->err = r;
  return r == 0 ? NULL : coro_fail(r);
}

/* Run n clients at once and print what they saw. 0 if all went well. */
static int run_clients(const char *port, int n) {
  struct client *cs = calloc((size_t)n, sizeof *cs);
  coro_future **fs = calloc((size_t)n, sizeof *fs);
  if (cs == NULL || fs == NULL) {
    free(cs);
    free(fs);
    return -ENOMEM;
  }
  int spawned = 0, r = 0;
  for (; spawned < n; spawned++) {
    cs[spawned] = (struct client){.port = port, .id = spawned};
    r = coro_spawn(&fs[spawned], client_main, &cs[spawned]);
    if (r != 0) break;
  }
  coro_gather(fs, (size_t)spawned, NULL, NULL); /* statuses are in cs[] */
  long lines = 0, bytes = 0, bad = 0;
  for (int i = 0; i < spawned; i++) {
    coro_future_release(fs[i]);
    lines += cs[i].lines;
    bytes += cs[i].bytes;
    bad += cs[i].mismatches;
    if (cs[i].err != 0) {
      fprintf(stderr, "client %d: %s\n", i, coro_strerror(cs[i].err));
      if (r == 0) r = cs[i].err;
    }
  }
  printf("%d clients: %ld lines, %ld bytes echoed, %ld mismatches\n", n, lines,
         bytes, bad);
  if (r == 0 && (bad != 0 || lines != (long)n * LINES_PER_CLIENT)) r = -EIO;
  free(cs);
  free(fs);
  return r;
}

/* ---- the three modes ----------------------------------------------------- */

struct args {
  enum { BOTH, SERVER, CLIENT } mode;
  const char *port;
  int clients;
};

static void *main_task(void *arg) {
  struct args *a = arg;
  if (a->mode == CLIENT) {
    int r = run_clients(a->port, a->clients);
    return r == 0 ? NULL : coro_fail(r);
  }

  struct server_task st = {0};
  int r = coro_tcp_listen(&st.srv, "127.0.0.1", a->port, NULL);
  if (r != 0) {
    fprintf(stderr, "listen on 127.0.0.1:%s: %s\n", a->port, coro_strerror(r));
    return coro_fail(r);
  }
  char port[16];
  snprintf(port, sizeof port, "%d", coro_server_port(st.srv));
  printf("server listening on 127.0.0.1:%s\n", port);
  fflush(stdout);
  if (a->mode == SERVER) /* serve until the process is killed */
    return server_main(&st);

  coro_future *server;
  r = coro_spawn(&server, server_main, &st);
  if (r != 0) {
    coro_server_close(st.srv);
    return coro_fail(r);
  }
  r = run_clients(port, a->clients);
  /* Closing the server ends coro_server_serve; it returns once every
   * connection task has finished. */
  coro_server_close(st.srv);
  int rs = coro_await(server, NULL);
  coro_future_release(server);
  printf("server: %ld connections, %ld lines\n", st.stats.connections,
         st.stats.lines);
  if (r == 0) r = rs;
  return r == 0 ? NULL : coro_fail(r);
}

static int usage(const char *prog) {
  fprintf(stderr,
          "usage: %s [CLIENTS]\n"
          "       %s --server [PORT]\n"
          "       %s --client [PORT [CLIENTS]]\n",
          prog, prog, prog);
  return 2;
}

int main(int argc, char **argv) {
  struct args a = {.mode = BOTH, .port = "0", .clients = 10};
  int i = 1;
  if (argc > 1 && strcmp(argv[1], "--server") == 0) {
    a.mode = SERVER;
    a.port = "7007";
    i = 2;
  } else if (argc > 1 && strcmp(argv[1], "--client") == 0) {
    a.mode = CLIENT;
    a.port = "7007";
    i = 2;
  }
  if (a.mode != BOTH && i < argc) a.port = argv[i++];
  if (a.mode != SERVER && i < argc) a.clients = atoi(argv[i++]);
  if (i < argc || a.clients < 1) return usage(argv[0]);

  int r = coro_run(main_task, &a, NULL);
  if (r != 0) fprintf(stderr, "echo: %s\n", coro_strerror(r));
  return r == 0 ? 0 : 1;
}
