/* SPDX-License-Identifier: MIT */
/* A libcoro echo server for the network benchmarks: coro_server_serve runs
 * one task per connection, which reads into a 16 KiB buffer on its stack
 * and writes back what it read until the peer closes. SIGTERM or SIGINT
 * closes the server and ends the program cleanly (exit status 0), so
 * sanitizer builds check for leaks on the way out.
 *
 * Usage: echo_coro [PORT]   (default 9000, bound to 127.0.0.1; 0 picks a
 * free port). Prints "echo_coro: listening on 127.0.0.1:PORT" once ready. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <uv.h>

#include <coro.h>

static coro_future *stop;          /* resolved by SIGTERM / SIGINT */
static uv_signal_t sig_term, sig_int;

static void on_signal(uv_signal_t *h, int signum) {
  (void)signum;
  uv_signal_stop(&sig_term);
  uv_signal_stop(&sig_int);
  (void)h;
  if (coro_future_status(stop) == CORO_PENDING) coro_future_resolve(stop, NULL);
}

static void echo_conn(coro_stream *s, void *arg) {
  char buf[16384];
  (void)arg;
  coro_tcp_nodelay(s, 1);
  for (;;) {
    ssize_t n = coro_stream_read(s, buf, sizeof buf);
    if (n <= 0) return;
    if (coro_stream_write(s, buf, (size_t)n) < 0) return;
  }
}

static void *serve_task(void *arg) {
  int r = coro_server_serve(arg, echo_conn, NULL);
  return r < 0 ? coro_fail(r) : NULL;
}

static void *main_task(void *arg) {
  const char *port = arg;
  coro_listen_opts opts = {.backlog = 4096};
  coro_server *srv = NULL;
  coro_future *serving = NULL;
  uv_loop_t *uv = coro_loop_uv(coro_loop_current());
  int r = coro_tcp_listen(&srv, "127.0.0.1", port, &opts);
  if (r < 0) {
    fprintf(stderr, "echo_coro: listen on %s: %s\n", port, coro_strerror(r));
    return coro_fail(r);
  }
  if ((r = coro_future_new(&stop)) < 0) {
    coro_server_close(srv);
    return coro_fail(r);
  }
  uv_signal_init(uv, &sig_term);
  uv_signal_init(uv, &sig_int);
  uv_signal_start(&sig_term, on_signal, SIGTERM);
  uv_signal_start(&sig_int, on_signal, SIGINT);
  r = coro_spawn(&serving, serve_task, srv);
  if (r == 0) {
    printf("echo_coro: listening on 127.0.0.1:%d\n", coro_server_port(srv));
    fflush(stdout);
    r = coro_await(stop, NULL);
    /* Closing the server makes coro_server_serve end its connection tasks
     * and return 0. */
    coro_server_close(srv);
    int s = coro_await(serving, NULL);
    if (r == 0) r = s;
    coro_future_release(serving);
  } else {
    coro_server_close(srv);
  }
  uv_close((uv_handle_t *)&sig_term, NULL);
  uv_close((uv_handle_t *)&sig_int, NULL);
  coro_future_release(stop);
  coro_sleep(0);   /* one loop turn: the signal handles finish closing */
  return r < 0 ? coro_fail(r) : NULL;
}

int main(int argc, char **argv) {
  struct rlimit rl;
  /* Room for many idle connections: soft descriptor limit up to the hard. */
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  int r = coro_run(main_task, argc > 1 ? argv[1] : "9000", NULL);
  if (r < 0) {
    fprintf(stderr, "echo_coro: %s\n", coro_strerror(r));
    return 1;
  }
  return 0;
}
