/* SPDX-License-Identifier: MIT */
/* embed: libcoro tasks inside a program that owns its libuv loop.
 *
 * The program here is a plain libuv application: it makes its own
 * uv_loop_t, runs a uv_timer_t of its own (a tick every 10 ms) and a TCP
 * server written with bare libuv callbacks (it answers every line with the
 * line in upper case), and calls uv_run itself. libcoro is added with
 * three calls and nothing else changes:
 *
 * - coro_loop_attach puts a libcoro loop on the application's uv_loop_t;
 * - coro_loop_spawn starts tasks from plain code (here before uv_run, and
 *   from the timer's callback): each client task connects to the libuv
 *   server with coro_tcp_connect and talks to it in straight-line code,
 *   sleeping between lines, all driven by the application's uv_run;
 * - coro_loop_detach, once uv_run has returned, cancels what is left (a
 *   task waiting for an event nobody sets: it does not keep uv_run going)
 *   and removes libcoro's handles, so uv_loop_close returns 0.
 *
 * The application learns that its tasks are done from coro_future_on_done
 * callbacks, which run from the loop like any libuv callback; the last one
 * closes the server and the timer, and uv_run returns.
 *
 *   embed [CLIENTS]   (default 4; 1..64)
 *
 * Expected output (the port and the tick count vary):
 *
 *   libuv server on 127.0.0.1:40213
 *   4 client tasks: 40 lines sent, 40 answered in upper case, 0 wrong
 *   libuv side: 4 connections, 40 lines, 13 timer ticks
 *   detach: 1 task cancelled, uv_loop_close: 0 */
#define _GNU_SOURCE
#include <coro.h>
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

enum { LINES = 10, MAX_CLIENTS = 64, LINE_CAP = 128 };

/* ---- the application: bare libuv ---------------------------------------- */

struct app {
  uv_loop_t uv;
  uv_tcp_t server;
  uv_timer_t tick;
  int port;
  long ticks, connections, lines;
  coro_loop *coro;
  int clients, clients_started, clients_done;
  long sent, answered, wrong;
  coro_future *late_client; /* started from the timer callback */
  coro_future *watcher;     /* waits for an event nobody sets */
};

struct app_conn {
  uv_tcp_t tcp;
  struct app *app;
  char line[LINE_CAP];
  size_t have;
};

struct app_write {
  uv_write_t req;
  char data[LINE_CAP];
};

static void on_conn_closed(uv_handle_t *h) { free(h->data); }

static void on_written(uv_write_t *req, int status) {
  (void)status;
  free(req->data);
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  (void)h;
  static char slab[65536]; /* one loop thread: one buffer will do */
  (void)hint;
  *buf = uv_buf_init(slab, sizeof slab);
}

/* Answer each complete line with its upper-case copy. */
static void on_read(uv_stream_t *stream, ssize_t n, const uv_buf_t *buf) {
  struct app_conn *c = stream->data;
  if (n < 0) {
    uv_close((uv_handle_t *)stream, on_conn_closed);
    return;
  }
  for (ssize_t i = 0; i < n; i++) {
    char ch = buf->base[i];
    if (c->have < sizeof c->line) c->line[c->have++] = ch;
    if (ch != '\n') continue;
    struct app_write *w = malloc(sizeof *w);
    if (w != NULL) {
      for (size_t k = 0; k < c->have; k++)
        w->data[k] = (char)toupper((unsigned char)c->line[k]);
      w->req.data = w;
      uv_buf_t out = uv_buf_init(w->data, (unsigned)c->have);
      if (uv_write(&w->req, stream, &out, 1, on_written) != 0) free(w);
    }
    c->app->lines++;
    c->have = 0;
  }
}

static void on_connection(uv_stream_t *server, int status) {
  struct app *app = server->data;
  if (status < 0) return;
  struct app_conn *c = calloc(1, sizeof *c);
  if (c == NULL) return;
  c->app = app;
  uv_tcp_init(&app->uv, &c->tcp);
  c->tcp.data = c;
  if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
    return;
  }
  app->connections++;
  uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, on_read);
}

static int app_listen(struct app *app) {
  struct sockaddr_in sa;
  struct sockaddr_storage bound;
  int len = sizeof bound;
  uv_ip4_addr("127.0.0.1", 0, &sa);
  int r = uv_tcp_init(&app->uv, &app->server);
  if (r != 0) return r;
  app->server.data = app;
  if ((r = uv_tcp_bind(&app->server, (const struct sockaddr *)&sa, 0)) != 0 ||
      (r = uv_listen((uv_stream_t *)&app->server, 128, on_connection)) != 0 ||
      (r = uv_tcp_getsockname(&app->server, (struct sockaddr *)&bound, &len)) != 0)
    return r;
  app->port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
  return 0;
}

/* ---- the tasks: libcoro, driven by the application's uv_run -------------- */

struct client {
  struct app *app;
  int id;
};
static struct client clients[MAX_CLIENTS];

static void *client_task(void *arg) {
  struct client *cl = arg;
  struct app *app = cl->app;
  char port[16], line[LINE_CAP], back[LINE_CAP];
  snprintf(port, sizeof port, "%d", app->port);
  coro_stream *s;
  int r = coro_tcp_connect(&s, "127.0.0.1", port, 5000);
  if (r != 0) return coro_fail(r);
  for (int i = 0; i < LINES && r == 0; i++) {
    int len = snprintf(line, sizeof line, "client %d, line %d\n", cl->id, i);
    if ((r = coro_stream_write(s, line, (size_t)len)) != 0) break;
    app->sent++;
    ssize_t n = coro_stream_read_line(s, back, sizeof back);
    if (n < 0) {
      r = (int)n;
      break;
    }
    app->answered++;
    for (int k = 0; k < len; k++)
      line[k] = (char)toupper((unsigned char)line[k]);
    if (n != len || memcmp(line, back, (size_t)len) != 0) app->wrong++;
    r = coro_sleep(5); /* the application's timer ticks meanwhile */
  }
  coro_stream_close(s);
  return r == 0 ? NULL : coro_fail(r);
}

/* Waits for an event nobody sets: it does not keep uv_run from returning,
 * and detach cancels it. */
static void *watcher_task(void *arg) {
  (void)arg;
  coro_event *e;
  int r = coro_event_new(&e);
  if (r != 0) return coro_fail(r);
  r = coro_event_wait(e); /* -ECANCELED, at detach */
  coro_event_free(e);
  return coro_fail(r);
}

static void on_tick_closed(uv_handle_t *h) { (void)h; }

/* Runs from the loop when a client task is done, outside any task. */
static void client_done(coro_future *f, void *data) {
  struct app *app = data;
  int st = coro_future_status(f);
  if (st != 0) fprintf(stderr, "embed: a client failed: %s\n", coro_strerror(st));
  if (++app->clients_done == app->clients) {
    /* The application's own work ends: uv_run returns once libcoro has
     * nothing left that could make progress. */
    uv_close((uv_handle_t *)&app->server, NULL);
    uv_close((uv_handle_t *)&app->tick, on_tick_closed);
  }
}

static int start_client(struct app *app, coro_future **out) {
  struct client *cl = &clients[app->clients_started];
  *cl = (struct client){.app = app, .id = app->clients_started};
  int r = coro_loop_spawn(app->coro, out, client_task, cl);
  if (r == 0) r = coro_future_on_done(*out, client_done, app);
  if (r == 0) app->clients_started++;
  return r;
}

/* The application's timer; on its third tick it starts the last client,
 * to show that tasks can be started from any libuv callback. */
static void on_tick(uv_timer_t *t) {
  struct app *app = t->data;
  app->ticks++;
  if (app->ticks == 3 && app->clients_started < app->clients &&
      start_client(app, &app->late_client) != 0) {
    fprintf(stderr, "embed: could not start the last client\n");
    app->clients--; /* one fewer to wait for */
  }
}

int main(int argc, char **argv) {
  static struct app app;
  app.clients = argc > 1 ? atoi(argv[1]) : 4;
  if (argc > 2 || app.clients < 1 || app.clients > MAX_CLIENTS) {
    fprintf(stderr, "usage: %s [CLIENTS]   (1..%d)\n", argv[0], MAX_CLIENTS);
    return 2;
  }
  int r = uv_loop_init(&app.uv);
  if (r != 0 || (r = app_listen(&app)) != 0) {
    fprintf(stderr, "embed: libuv: %s\n", uv_strerror(r));
    return 1;
  }
  printf("libuv server on 127.0.0.1:%d\n", app.port);
  uv_timer_init(&app.uv, &app.tick);
  app.tick.data = &app;
  uv_timer_start(&app.tick, on_tick, 10, 10);

  /* libcoro joins the application's loop. */
  if ((r = coro_loop_attach(&app.coro, &app.uv, NULL)) != 0) {
    fprintf(stderr, "embed: coro_loop_attach: %s\n", coro_strerror(r));
    return 1;
  }
  coro_future *early[MAX_CLIENTS];
  int nearly = 0;
  /* All but the last client now; the last from the timer. */
  while (app.clients_started < app.clients - 1) {
    if ((r = start_client(&app, &early[nearly])) != 0) break;
    nearly++;
  }
  if (r == 0) r = coro_loop_spawn(app.coro, &app.watcher, watcher_task, NULL);
  if (r != 0) {
    fprintf(stderr, "embed: coro_loop_spawn: %s\n", coro_strerror(r));
    return 1;
  }

  uv_run(&app.uv, UV_RUN_DEFAULT); /* the application's own uv_run */

  printf("%d client tasks: %ld lines sent, %ld answered in upper case, %ld wrong\n",
         app.clients, app.sent, app.answered, app.wrong);
  printf("libuv side: %ld connections, %ld lines, %ld timer ticks\n",
         app.connections, app.lines, app.ticks);

  /* Still waiting: the watcher. Detach cancels it and lets it unwind. */
  int watcher_pending = coro_future_status(app.watcher) == CORO_PENDING;
  coro_loop_detach(app.coro);
  int cancelled = watcher_pending &&
                  coro_future_status(app.watcher) == CORO_ECANCELED;
  coro_future_release(app.watcher);
  for (int i = 0; i < nearly; i++) coro_future_release(early[i]);
  if (app.late_client != NULL) coro_future_release(app.late_client);
  int closed = uv_loop_close(&app.uv);
  printf("detach: %d task cancelled, uv_loop_close: %d\n", cancelled, closed);

  long want = (long)app.clients * LINES;
  return app.sent == want && app.answered == want && app.wrong == 0 &&
                 app.lines == want && cancelled == 1 && closed == 0
             ? 0
             : 1;
}
