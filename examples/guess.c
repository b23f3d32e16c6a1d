/* SPDX-License-Identifier: MIT */
/* guess: the guess-the-number game of Effective Python (2nd ed.), item 61,
 * "Know how to port threaded I/O to asyncio", ported to libcoro.
 *
 * As in the book, the server does the guessing and the client knows the
 * secret. They speak a line protocol over TCP:
 *
 *   client -> server   PARAMS lower upper   start a game in [lower, upper]
 *   client -> server   NUMBER               ask for a guess
 *   server -> client   guess                a number not guessed before
 *   client -> server   REPORT decision      Warmer, Colder, Unsure, Correct
 *
 * The server keeps one session object per connection (the book's Session
 * class: bounds, the secret once found, the guesses so far) in the task that
 * coro_server_serve runs for that connection; the client is a task using
 * the same connection helpers (the book's ConnectionBase). The book's port
 * turned each blocking call into an await; here the code keeps the shape of
 * the threaded original, since a libcoro call that waits suspends only its
 * task.
 *
 * Usage: guess [GAMES [SEED]]   (default 2 games, seed 61)
 * The first two games are the book's: 1..5 with secret 3, then 10..15 with
 * secret 12; later games draw their range and secret from the seed. Each
 * game allows five guesses, as in the book. The guesses depend only on the
 * seed; the Server lines come out as the session task reads the reports, so
 * they may trail the client's next "Guess a number" line. With the defaults:
 *
 *   Guess a number between 1 and 5! Shhhhh, it's 3.
 *   Server: 5 is Unsure
 *   Server: 2 is Warmer
 *   Server: 1 is Colder
 *   Guess a number between 10 and 15! Shhhhh, it's 12.
 *   Server: 3 is Correct
 *   Server: 14 is Unsure
 *   Server: 10 is Unsure
 *   Server: 11 is Warmer
 *   Server: 13 is Unsure
 *   Server: 12 is Correct
 *   Client: 5 is Unsure
 *   Client: 2 is Warmer
 *   Client: 1 is Colder
 *   Client: 3 is Correct
 *   Client: 14 is Unsure
 *   Client: 10 is Unsure
 *   Client: 11 is Warmer
 *   Client: 13 is Unsure
 *   Client: 12 is Correct
 *   2 games, 9 guesses, 2 found
 *
 * (14 and 10 are both 2 away from 12: neither warmer nor colder.) */
#define _GNU_SOURCE
#include <coro.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_LINE = 64, GUESSES_PER_GAME = 5, MAX_RANGE = 64 };

/* A small deterministic generator (splitmix64): the same seed gives the
 * same game everywhere, whatever the C library's rand() does. */
static uint64_t next_random(uint64_t *state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}
static int random_between(uint64_t *state, int lower, int upper) {
  return lower + (int)(next_random(state) % (uint64_t)(upper - lower + 1));
}

/* ---- ConnectionBase: one line out, one line in ----------------------------- */

static int send_line(coro_stream *s, const char *line) {
  char buf[MAX_LINE];
  int n = snprintf(buf, sizeof buf, "%s\n", line);
  return coro_stream_write(s, buf, (size_t)n);
}

/* A line without its "\n", NUL-terminated; -EPIPE at end of stream. */
static int receive_line(coro_stream *s, char *buf, size_t cap) {
  ssize_t n = coro_stream_read_line(s, buf, cap);
  if (n < 0) return (int)n;
  if (n == 0 || buf[n - 1] != '\n') return -EPIPE; /* "Connection closed" */
  buf[n - 1] = '\0';
  return 0;
}

/* ---- the server: a Session per connection ------------------------------ */

struct session {
  coro_stream *conn;
  int lower, upper;
  int secret; /* -1 until a guess was reported Correct */
  int guesses[MAX_RANGE];
  int nguesses;
  uint64_t rng;
};

static void clear_state(struct session *s, int lower, int upper) {
  s->lower = lower;
  s->upper = upper;
  s->secret = -1;
  s->nguesses = 0;
}

static int already_guessed(const struct session *s, int n) {
  for (int i = 0; i < s->nguesses; i++)
    if (s->guesses[i] == n) return 1;
  return 0;
}

static int next_guess(struct session *s) {
  if (s->secret >= 0) return s->secret;
  for (;;) {
    int g = random_between(&s->rng, s->lower, s->upper);
    if (!already_guessed(s, g)) return g;
  }
}

static int send_number(struct session *s) {
  if (s->lower > s->upper || s->nguesses == MAX_RANGE) return -EINVAL;
  if (s->secret < 0 && s->nguesses > s->upper - s->lower)
    return -ERANGE; /* every number was tried: the client cheated */
  int g = next_guess(s);
  s->guesses[s->nguesses++] = g;
  char buf[16];
  snprintf(buf, sizeof buf, "%d", g);
  return send_line(s->conn, buf);
}

static int receive_report(struct session *s, const char *decision) {
  if (s->nguesses == 0) return -EINVAL;
  int last = s->guesses[s->nguesses - 1];
  if (strcmp(decision, "Correct") == 0) s->secret = last;
  printf("Server: %d is %s\n", last, decision);
  return 0;
}

/* The session loop: one command per line until the client hangs up. */
static void session_main(coro_stream *conn, void *arg) {
  struct session s = {.conn = conn, .rng = *(uint64_t *)arg};
  coro_tcp_nodelay(conn, 1); /* see client_main */
  clear_state(&s, 0, -1);
  char line[MAX_LINE], word[16];
  int a, b, r = 0;
  while (r == 0 && receive_line(conn, line, sizeof line) == 0) {
    if (sscanf(line, "PARAMS %d %d", &a, &b) == 2 && b - a < MAX_RANGE)
      clear_state(&s, a, b);
    else if (strcmp(line, "NUMBER") == 0)
      r = send_number(&s);
    else if (sscanf(line, "REPORT %15s", word) == 1)
      r = receive_report(&s, word);
    else
      r = -EPROTO; /* the book's UnknownCommandError */
  }
  if (r != 0) fprintf(stderr, "server: %s\n", coro_strerror(r));
}

/* ---- the client ---------------------------------------------------------- */

struct client {
  coro_stream *conn;
  int secret;
  int last_distance; /* -1: no guess yet in this game */
};

struct result {
  int number;
  const char *outcome;
};

/* The book's Client.session() context manager, as a begin / end pair. */
static int session_begin(struct client *c, int lower, int upper, int secret) {
  printf("Guess a number between %d and %d! Shhhhh, it's %d.\n", lower, upper,
         secret);
  c->secret = secret;
  c->last_distance = -1;
  char buf[MAX_LINE];
  snprintf(buf, sizeof buf, "PARAMS %d %d", lower, upper);
  return send_line(c->conn, buf);
}
static int session_end(struct client *c) {
  c->secret = -1;
  c->last_distance = -1;
  return send_line(c->conn, "PARAMS 0 -1");
}

static int request_number(struct client *c, int *number) {
  int r = send_line(c->conn, "NUMBER");
  char buf[MAX_LINE];
  if (r == 0) r = receive_line(c->conn, buf, sizeof buf);
  if (r == 0 && sscanf(buf, "%d", number) != 1) r = -EPROTO;
  return r;
}

static const char *report_outcome(struct client *c, int number, int *err) {
  int distance = abs(number - c->secret);
  const char *decision = "Unsure";
  if (distance == 0)
    decision = "Correct";
  else if (c->last_distance < 0)
    ; /* the first guess: nothing to compare with */
  else if (distance < c->last_distance)
    decision = "Warmer";
  else if (distance > c->last_distance)
    decision = "Colder";
  c->last_distance = distance;
  char buf[MAX_LINE];
  snprintf(buf, sizeof buf, "REPORT %s", decision);
  *err = send_line(c->conn, buf);
  return decision;
}

struct game {
  int lower, upper, secret;
};

struct client_args {
  const char *port;
  const struct game *games;
  int ngames;
  struct result *results;
  int nresults;
  uint64_t server_seed;
};

/* One game: at most GUESSES_PER_GAME guesses, stopping at Correct. */
static int play(struct client *c, const struct game *g, struct client_args *a) {
  int r = session_begin(c, g->lower, g->upper, g->secret);
  for (int i = 0; r == 0 && i < GUESSES_PER_GAME; i++) {
    int number;
    r = request_number(c, &number);
    if (r != 0) break;
    const char *outcome = report_outcome(c, number, &r);
    a->results[a->nresults++] = (struct result){number, outcome};
    if (c->last_distance == 0) break;
  }
  int r2 = session_end(c);
  return r != 0 ? r : r2;
}

static void *client_main(void *arg) {
  struct client_args *a = arg;
  struct client c = {0};
  int r = coro_tcp_connect(&c.conn, "127.0.0.1", a->port, 5000);
  if (r != 0) return coro_fail(r);
  coro_stream_set_timeouts(c.conn, 5000, 5000);
  /* The protocol sends small lines back to back (REPORT, then NUMBER):
   * without TCP_NODELAY the second would wait for the ACK of the first,
   * which the peer delays by up to 40 ms (Nagle's algorithm). */
  coro_tcp_nodelay(c.conn, 1);
  for (int i = 0; r == 0 && i < a->ngames; i++) r = play(&c, &a->games[i], a);
  /* Hang up politely: shut down our side, then wait for the server to close
   * its side, which it does once it has read everything we sent. */
  if (r == 0) r = coro_stream_shutdown(c.conn);
  char rest[MAX_LINE];
  if (r == 0) r = (int)coro_stream_read(c.conn, rest, sizeof rest);
  if (r > 0) r = -EPROTO; /* the server should have had nothing more to say */
  coro_stream_close(c.conn);
  return r == 0 ? NULL : coro_fail(r);
}

/* ---- main: the server task and the client in one loop --------------------- */

struct server_args {
  coro_server *srv;
  uint64_t seed;
};

static void *server_main(void *arg) {
  struct server_args *s = arg;
  int r = coro_server_serve(s->srv, session_main, &s->seed);
  return r == 0 ? NULL : coro_fail(r);
}

static void *main_task(void *arg) {
  struct client_args *ca = arg;
  struct server_args sa = {.seed = ca->server_seed};
  int r = coro_tcp_listen(&sa.srv, "127.0.0.1", "0", NULL);
  if (r != 0) return coro_fail(r);
  char port[16];
  snprintf(port, sizeof port, "%d", coro_server_port(sa.srv));
  ca->port = port;

  coro_future *server, *client;
  r = coro_spawn(&server, server_main, &sa);
  if (r != 0) {
    coro_server_close(sa.srv);
    return coro_fail(r);
  }
  r = coro_spawn(&client, client_main, ca);
  if (r == 0) {
    r = coro_await(client, NULL);
    coro_future_release(client);
  }
  coro_server_close(sa.srv); /* serve returns once the session task ended */
  int rs = coro_await(server, NULL);
  coro_future_release(server);
  if (r == 0) r = rs;
  return r == 0 ? NULL : coro_fail(r);
}

int main(int argc, char **argv) {
  int ngames = argc > 1 ? atoi(argv[1]) : 2;
  uint64_t seed = argc > 2 ? strtoull(argv[2], NULL, 10) : 61;
  if (ngames < 1 || ngames > 10000 || argc > 3) {
    fprintf(stderr, "usage: %s [GAMES (1..10000) [SEED]]\n", argv[0]);
    return 2;
  }
  struct game *games = calloc((size_t)ngames, sizeof *games);
  struct result *results =
      calloc((size_t)ngames * GUESSES_PER_GAME, sizeof *results);
  if (games == NULL || results == NULL) return 1;
  games[0] = (struct game){1, 5, 3};
  if (ngames > 1) games[1] = (struct game){10, 15, 12};
  uint64_t rng = seed ^ 0x5eed;
  for (int i = 2; i < ngames; i++) {
    int lower = random_between(&rng, 0, 100);
    int upper = lower + random_between(&rng, 1, 9);
    games[i] = (struct game){lower, upper, random_between(&rng, lower, upper)};
  }

  struct client_args ca = {.games = games, .ngames = ngames,
                           .results = results, .server_seed = seed};
  int r = coro_run(main_task, &ca, NULL);

  int found = 0;
  for (int i = 0; i < ca.nresults; i++) {
    printf("Client: %d is %s\n", results[i].number, results[i].outcome);
    found += strcmp(results[i].outcome, "Correct") == 0;
  }
  if (r != 0)
    fprintf(stderr, "guess: %s\n", coro_strerror(r));
  else
    printf("%d games, %d guesses, %d found\n", ngames, ca.nresults, found);
  free(games);
  free(results);
  return r == 0 ? 0 : 1;
}
