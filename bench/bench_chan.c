/* SPDX-License-Identifier: MIT */
/* Channel hand-off between two tasks of one loop, ns per message, best of
 * 10 after a warm-up round:
 *   pingpong unbuffered: A sends on c1 and receives on c2, B the reverse;
 *                        every message is one hop from one task to the other
 *   pingpong buffered:   the same over channels of capacity 1
 *   stream buffered:     A sends N values into a channel of capacity 128,
 *                        B receives them (throughput, not latency)
 *   select unbuffered:   the ping-pong where B receives with a two-case
 *                        coro_select (c1 or a quit channel)
 *   yield (baseline):    two tasks that only coro_yield, per task step: the
 *                        loop's own cost of one hop, without any channel
 *   thread:              a plain thread sends N/20 values with
 *                        coro_chan_send_blocking into a channel of
 *                        capacity 128, a task receives them (ns per message;
 *                        best of 2 after a warm-up round, wall time only)
 *   loop:                the same from the main task of a second loop (a
 *                        thread running coro_run)
 *   loops_rtt:           request / response between two loops, us per round
 *                        trip: a task of loop A sends a request into a
 *                        channel of loop B with coro_chan_send_blocking, a
 *                        task of B sends the answer into a channel of A the
 *                        same way, A's task receives it (capacity 16 each)
 *   pool_rtt:            for comparison, in the same run: an empty job
 *                        through the loop's default thread pool
 *                        (coro_run_in_thread, then coro_await), us per job
 *   getppid:             the machine's cost of one plain syscall, ns (N
 *                        getppid calls, best of 3)
 * Usage: bench_chan [N]   (N messages per round; default 1,000,000) */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <coro.h>

static long n_msgs = 1000000;
/* Rounds of each figure; the first is a warm-up, the best of the rest is
 * reported (short rounds, so that some land in a quiet moment of a shared
 * machine; the Go peer does the same). */
#define ROUNDS 11

/* Wall clock, or with CHAN_BENCH_CPU=1 the process's CPU time (the
 * task-to-task figures run on one thread; on a loaded machine CPU time
 * leaves out the time other processes took; the Go peer does the same
 * with getrusage). */
static clockid_t clk = CLOCK_MONOTONIC;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(clk, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

typedef struct pp {
  coro_chan *c1, *c2, *quit;
  long n;
  int use_select;
} pp;

static void *pp_b(void *arg) {
  pp *p = arg;
  long v;
  for (long i = 0; i < p->n; i++) {
    if (p->use_select) {
      int q;
      coro_select_case cs[2] = {
        {.chan = p->c1, .op = CORO_CHAN_RECV, .elem = &v},
        {.chan = p->quit, .op = CORO_CHAN_RECV, .elem = &q},
      };
      if (coro_select(cs, 2, CORO_SELECT_PRIORITY, CORO_FOREVER) != 0) abort();
    } else if (coro_chan_recv(p->c1, &v) != 0) {
      abort();
    }
    if (coro_chan_send(p->c2, &v) != 0) abort();
  }
  return NULL;
}

/* Seconds for n round trips (2n messages). */
static double pingpong(size_t cap, int use_select, long n) {
  pp p = {NULL, NULL, NULL, n, use_select};
  if (coro_chan_new(&p.c1, sizeof(long), cap) != 0 ||
      coro_chan_new(&p.c2, sizeof(long), cap) != 0 ||
      coro_chan_new(&p.quit, sizeof(int), 0) != 0)
    abort();
  coro_future *b;
  if (coro_spawn(&b, pp_b, &p) != 0) abort();
  double t0 = now_s();
  for (long i = 0; i < n; i++) {
    long v = i;
    if (coro_chan_send(p.c1, &v) != 0 || coro_chan_recv(p.c2, &v) != 0 || v != i)
      abort();
  }
  double t = now_s() - t0;
  coro_await(b, NULL);
  coro_future_release(b);
  coro_chan_free(p.c1);
  coro_chan_free(p.c2);
  coro_chan_free(p.quit);
  return t;
}

static void *stream_b(void *arg) {
  coro_chan *c = arg;
  long v, st, k = 0;
  int s;
  CORO_CHAN_FOREACH(s, c, &v) k++;
  st = k;
  return (void *)st;
}

static double stream(long n) {
  coro_chan *c;
  if (coro_chan_new(&c, sizeof(long), 128) != 0) abort();
  coro_future *b;
  if (coro_spawn(&b, stream_b, c) != 0) abort();
  double t0 = now_s();
  for (long i = 0; i < n; i++)
    if (coro_chan_send(c, &i) != 0) abort();
  coro_chan_close(c);
  void *got;
  coro_await(b, &got);
  double t = now_s() - t0;
  if ((long)got != n) abort();
  coro_future_release(b);
  coro_chan_free(c);
  return t;
}

typedef struct th {
  coro_chan *c;
  long n;
} th;

static void *thread_sender(void *arg) {
  th *t = arg;
  for (long i = 0; i < t->n; i++)
    if (coro_chan_send_blocking(t->c, &i, CORO_FOREVER) != 0) abort();
  if (coro_chan_close(t->c) != 0) abort();
  return NULL;
}

/* The same sender as the main task of a second loop. */
static void *loop_sender_main(void *arg) {
  return thread_sender(arg);
}

static void *loop_sender(void *arg) {
  if (coro_run(loop_sender_main, arg, NULL) != 0) abort();
  return NULL;
}

/* Seconds for n values from another thread (sender: thread_sender, or
 * loop_sender for a task of another loop) into a task of this loop. */
static double from_thread(long n, void *(*sender)(void *)) {
  th t;
  if (coro_chan_new(&t.c, sizeof(long), 128) != 0) abort();
  coro_chan_share(t.c);
  t.n = n;
  pthread_t tid;
  double t0 = now_s();
  pthread_create(&tid, NULL, sender, &t);
  long v, k = 0;
  int s;
  CORO_CHAN_FOREACH(s, t.c, &v) k++;
  double el = now_s() - t0;
  if (k != n) abort();
  pthread_join(tid, NULL); /* its last call (close) has completed */
  coro_chan_free(t.c);
  return el;
}

/* Request / response between this loop (A) and loop B on another thread. */
typedef struct rtt {
  coro_chan *req;    /* B's: A's requests */
  coro_chan *resp;   /* A's: B's answers */
  atomic_int ready;  /* B has made req */
} rtt;

static void *rtt_b_main(void *arg) {
  rtt *p = arg;
  if (coro_chan_new(&p->req, sizeof(long), 16) != 0) abort();
  coro_chan_share(p->req);
  atomic_store(&p->ready, 1);
  long v;
  int s;
  CORO_CHAN_FOREACH(s, p->req, &v) {
    if (coro_chan_send_blocking(p->resp, &v, CORO_FOREVER) != 0) abort();
  }
  coro_chan_free(p->req);
  return NULL;
}

static void *rtt_b_thread(void *arg) {
  if (coro_run(rtt_b_main, arg, NULL) != 0) abort();
  return NULL;
}

/* Seconds for n round trips (after 100 that are not timed). */
static double loops_rtt(long n) {
  rtt p;
  p.req = NULL;
  atomic_init(&p.ready, 0);
  if (coro_chan_new(&p.resp, sizeof(long), 16) != 0) abort();
  coro_chan_share(p.resp);
  pthread_t tid;
  pthread_create(&tid, NULL, rtt_b_thread, &p);
  while (!atomic_load(&p.ready)) coro_sleep(1);
  double t0 = 0;
  for (long i = -100; i < n; i++) {
    if (i == 0) t0 = now_s();
    long v = i;
    if (coro_chan_send_blocking(p.req, &v, CORO_FOREVER) != 0 ||
        coro_chan_recv(p.resp, &v) != 0 || v != i)
      abort();
  }
  double t = now_s() - t0;
  if (coro_chan_close(p.req) != 0) abort(); /* B's task ends, then B */
  pthread_join(tid, NULL);
  coro_chan_free(p.resp);
  return t;
}

static void *empty_job(void *arg) { return arg; }

/* Seconds for n empty jobs through the default thread pool, one at a time
 * (after 100 that are not timed). */
static double pool_rtt(long n) {
  double t0 = 0;
  for (long i = -100; i < n; i++) {
    if (i == 0) t0 = now_s();
    coro_future *f;
    if (coro_run_in_thread(&f, NULL, empty_job, NULL) != 0) abort();
    if (coro_await(f, NULL) != 0) abort();
    coro_future_release(f);
  }
  return now_s() - t0;
}

/* Seconds for n getppid() syscalls. */
static double syscalls(long n) {
  double t0 = now_s();
  for (long i = 0; i < n; i++) (void)syscall(SYS_getppid);
  return now_s() - t0;
}

static void *yielder(void *arg) {
  long n = (long)(intptr_t)arg;
  for (long i = 0; i < n; i++) coro_yield();
  return NULL;
}

/* Seconds for 2n task steps of two tasks that yield. */
static double yields(long n) {
  coro_future *b;
  if (coro_spawn(&b, yielder, (void *)(intptr_t)n) != 0) abort();
  double t0 = now_s();
  for (long i = 0; i < n; i++) coro_yield();
  double t = now_s() - t0;
  coro_await(b, NULL);
  coro_future_release(b);
  return t;
}

static void report(const char *what, double secs, long msgs, const char *mode) {
  printf("chan: %.1f ns/msg what=%s n=%ld mode=%s clock=%s method=%s peer=libcoro\n",
         secs * 1e9 / (double)msgs, what, msgs, mode,
         clk == CLOCK_MONOTONIC ? "wall" : "cpu", coro_ctx_method());
}

static void *bench_main(void *arg) {
  (void)arg;
  long n = n_msgs / 2; /* round trips: 2 messages each */
  double best;
  best = 1e30;
  for (int r = 0; r < ROUNDS; r++) {
    double t = pingpong(0, 0, n);
    if (r > 0 && t < best) best = t;
  }
  report("pingpong", best, 2 * n, "unbuffered");
  best = 1e30;
  for (int r = 0; r < ROUNDS; r++) {
    double t = pingpong(1, 0, n);
    if (r > 0 && t < best) best = t;
  }
  report("pingpong", best, 2 * n, "buffered1");
  best = 1e30;
  for (int r = 0; r < ROUNDS; r++) {
    double t = stream(n_msgs);
    if (r > 0 && t < best) best = t;
  }
  report("stream", best, n_msgs, "buffered128");
  best = 1e30;
  for (int r = 0; r < ROUNDS; r++) {
    double t = pingpong(0, 1, n);
    if (r > 0 && t < best) best = t;
  }
  report("select", best, 2 * n, "unbuffered");
  best = 1e30;
  for (int r = 0; r < ROUNDS; r++) {
    double t = yields(n);
    if (r > 0 && t < best) best = t;
  }
  report("yield", best, 2 * n, "baseline");
  if (clk != CLOCK_MONOTONIC) return NULL; /* the thread figures need wall time */
  long nt = n_msgs / 20 > 1000 ? n_msgs / 20 : 1000;
  best = 1e30;
  for (int r = 0; r < 3; r++) {
    double t = from_thread(nt, thread_sender);
    if (r > 0 && t < best) best = t;
  }
  report("thread", best, nt, "buffered128");
  best = 1e30;
  for (int r = 0; r < 3; r++) {
    double t = from_thread(nt, loop_sender);
    if (r > 0 && t < best) best = t;
  }
  report("loop", best, nt, "buffered128");
  /* Round trips, the two kinds in turns (a slow moment of the machine
   * then hits both). */
  long nr = n_msgs / 100 > 200 ? n_msgs / 100 : 200;
  double best_l = 1e30, best_p = 1e30;
  for (int r = 0; r < 4; r++) {
    double tl = loops_rtt(nr), tp = pool_rtt(nr);
    if (r > 0 && tl < best_l) best_l = tl;
    if (r > 0 && tp < best_p) best_p = tp;
  }
  printf("chan: %.2f us/roundtrip what=loops_rtt n=%ld mode=buffered16 "
         "clock=wall method=%s peer=libcoro\n",
         best_l * 1e6 / (double)nr, nr, coro_ctx_method());
  printf("chan: %.2f us/roundtrip what=pool_rtt n=%ld mode=empty_job "
         "clock=wall method=%s peer=libcoro\n",
         best_p * 1e6 / (double)nr, nr, coro_ctx_method());
  printf("chan: %.2f ratio what=loops_rtt/pool_rtt n=%ld clock=wall "
         "peer=libcoro\n", best_l / best_p, nr);
  long ns = n_msgs; /* 1,000,000 by default */
  best = 1e30;
  for (int r = 0; r < 3; r++) {
    double t = syscalls(ns);
    if (t < best) best = t;
  }
  printf("chan: %.1f ns/syscall what=getppid n=%ld clock=wall peer=libcoro\n",
         best * 1e9 / (double)ns, ns);
  return NULL;
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc > 1) n_msgs = atol(argv[1]);
  const char *cpu = getenv("CHAN_BENCH_CPU");
  if (cpu != NULL && cpu[0] == '1') clk = CLOCK_PROCESS_CPUTIME_ID;
  if (n_msgs < 2) n_msgs = 2;
  int r = coro_run(bench_main, NULL, NULL);
  if (r != 0) {
    fprintf(stderr, "bench_chan: %s\n", coro_strerror(r));
    return 1;
  }
  return 0;
}
