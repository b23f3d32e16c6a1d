/* SPDX-License-Identifier: MIT */
/* Debug mode's watchdog: one thread per process that samples, every
 * sample period (slow_step_ms / 20, between 1 ms and 5 ms), which task
 * step each loop in debug mode is running.
 *
 * - The loop thread only publishes its steps (task.c: an odd sequence
 *   number while a step runs, even between steps), so debug mode costs a
 *   step two stores and a load, and no clock read.
 * - The first sample that sees a step running publishes when the step
 *   began at the earliest (the time of the sample before); a step that ran
 *   that long is timed at its end from there (slow.c).
 * - A step still running after slow_step_ms (then after 2x, 4x, ...) is
 *   reported while it runs: the watchdog sends CORO__WD_SIGNAL to the loop
 *   thread, whose handler writes the task's name, how long it has held the
 *   loop, the loop thread's CPU time meanwhile (near the whole time: busy;
 *   near zero: blocked in the kernel) and its backtrace to stderr. Without
 *   the handler (CORO_NO_SIGNAL_HANDLERS=1, or the application has its own
 *   handler for that signal) the watchdog writes the same line without the
 *   name and the backtrace.
 *
 * The same thread serves coro_config.dump_signal: the signal's handler only
 * writes to an eventfd; the thread, woken by it, posts a message to the
 * inbox of every loop that asked for dumps, and each loop prints its own
 * dump on its own thread. */
#include <errno.h>
#include <execinfo.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/hooks.h"
#include "core/inbox.h"
#include "core/loop.h"
#include "core/task.h"

#define CORO__WD_SIGNAL SIGURG /* ignored by default: a stray one is harmless */
/* 200 wake-ups a second at the default 100 ms: a few tenths of a percent
 * of a CPU, and a duration exact to 5% of the threshold. */
#define WD_PERIOD_MIN_NS 1000000u
#define WD_PERIOD_MAX_NS 5000000u
#define WD_FRAMES 32

typedef struct coro__wd {
  coro_loop *loop;
  pthread_t thread;
  clockid_t cpu;          /* the loop thread's CPU clock */
  int have_cpu;
  uint64_t threshold_ns;
  uint64_t last_seq;      /* seq read by the previous sample */
  uint64_t prev_t;        /* the time just before that read */
  uint64_t first_t;       /* the time before the read that first saw the step */
  uint64_t cpu0;          /* the loop thread's CPU time then */
  uint64_t next_report;   /* report the running step once held this long */
  int watch;              /* debug mode: sample its steps */
  int may_signal;         /* CORO_NO_SIGNAL_HANDLERS was not 1 at enter */
  int dump_signal;        /* 0, or the signal that asks for its dump */
  coro__inbox *ib;        /* where a dump request is posted (a reference) */
  struct coro__wd *next;
} coro__wd;

static pthread_mutex_t wd_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wd_cv = PTHREAD_COND_INITIALIZER;
static coro__wd *wd_list;
static int wd_started;
static int wd_handler; /* our signal handler is installed */
static int wd_efd = -1; /* dump requests, written by the dump signal's handler */
static uint64_t dump_sigs; /* bit n: our dump handler is installed for n */
static pthread_once_t wd_once = PTHREAD_ONCE_INIT;

static uint64_t cpu_ns(const coro__wd *w) {
  struct timespec ts;
  if (!w->have_cpu || clock_gettime(w->cpu, &ts) != 0) return 0;
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- the report, written by the loop thread from its signal handler ------ */

/* Async-signal-safe formatting: append s, a number, seconds. */
typedef struct {
  char buf[512];
  size_t n;
} line;

static void put(line *l, const char *s) {
  while (*s != '\0' && l->n < sizeof l->buf - 1) l->buf[l->n++] = *s++;
}

static void put_u(line *l, uint64_t v) {
  char tmp[24];
  int i = 0;
  do {
    tmp[i++] = (char)('0' + v % 10);
    v /= 10;
  } while (v != 0 && i < (int)sizeof tmp);
  while (i > 0 && l->n < sizeof l->buf - 1) l->buf[l->n++] = tmp[--i];
}

static void put_secs(line *l, uint64_t ns) { /* "1.234" */
  uint64_t ms = ns / 1000000u;
  put_u(l, ms / 1000);
  put(l, ".");
  char d[4] = {(char)('0' + ms / 100 % 10), (char)('0' + ms / 10 % 10),
               (char)('0' + ms % 10), '\0'};
  put(l, d);
}

static void put_held(line *l, uint64_t elapsed, uint64_t cpu) {
  put(l, "has held the loop for ");
  put_secs(l, elapsed);
  put(l, " seconds and is still running; CPU ");
  put_secs(l, cpu);
  put(l, cpu * 2 >= elapsed ? " s: busy (computing, not waiting)\n"
                            : " s: blocked (waiting in the kernel)\n");
}

static void write_all(const char *p, size_t n) {
  while (n > 0) {
    ssize_t k = write(STDERR_FILENO, p, n);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return;
    p += k;
    n -= (size_t)k;
  }
}

static void wd_signal(int sig, siginfo_t *si, void *uc) {
  (void)sig;
  (void)si;
  (void)uc;
  int saved = errno;
  coro_loop *loop = coro__tls_loop;
  /* Only for the step that was asked about, and only while it runs (the
   * signal may come just after it ended). */
  if (loop != NULL && loop->debug && (loop->wd_own & 1) &&
      atomic_load_explicit(&loop->wd_req, memory_order_acquire) == loop->wd_own) {
    coro__task *t = atomic_load_explicit(&loop->wd_task, memory_order_relaxed);
    line l = {.n = 0};
    put(&l, "libcoro: watchdog: task <");
    if (t->name != NULL) {
      put(&l, t->name);
    } else if (t->autoname[0] != '\0') {
      put(&l, t->autoname);
    } else { /* the name coro_task_name would give, without snprintf */
      put(&l, "Task-");
      put_u(&l, t->id);
    }
    put(&l, "> ");
    put_held(&l, atomic_load_explicit(&loop->wd_req_elapsed, memory_order_relaxed),
             atomic_load_explicit(&loop->wd_req_cpu, memory_order_relaxed));
    write_all(l.buf, l.n);
    void *frames[WD_FRAMES];
    int n = backtrace(frames, WD_FRAMES);
    /* frames[0] is this handler, [1] the signal trampoline. */
    if (n > 2) {
      write_all("libcoro: watchdog: its stack:\n", 30);
      backtrace_symbols_fd(frames + 2, n - 2, STDERR_FILENO);
    }
  }
  errno = saved;
}

/* Install the handler once, unless the application handles the signal
 * itself or asked for no handlers. Also loads what backtrace() needs, so
 * that the handler never loads a library. */
static void wd_install(void) {
  void *f[2];
  (void)backtrace(f, 2);
  const char *env = getenv("CORO_NO_SIGNAL_HANDLERS");
  if (env != NULL && strcmp(env, "1") == 0) return;
  struct sigaction cur;
  if (sigaction(CORO__WD_SIGNAL, NULL, &cur) != 0) return;
  if (!(cur.sa_flags & SA_SIGINFO) &&
      cur.sa_handler != SIG_DFL && cur.sa_handler != SIG_IGN)
    return; /* the application's */
  if ((cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction != wd_signal) return;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = wd_signal;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
  sigemptyset(&sa.sa_mask);
  if (sigaction(CORO__WD_SIGNAL, &sa, NULL) == 0) wd_handler = 1;
}

/* Still ours (the application may have installed its own since). */
static int handler_ours(void) {
  struct sigaction cur;
  return wd_handler && sigaction(CORO__WD_SIGNAL, NULL, &cur) == 0 &&
         (cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == wd_signal;
}

/* ---- the watchdog thread --------------------------------------------------- */

/* Ask the loop thread to report the step seq, or report it from here. */
static void report_running(coro__wd *w, uint64_t seq, uint64_t elapsed) {
  coro_loop *loop = w->loop;
  uint64_t cpu = cpu_ns(w) - w->cpu0;
  atomic_store_explicit(&loop->wd_req_elapsed, elapsed, memory_order_relaxed);
  atomic_store_explicit(&loop->wd_req_cpu, cpu, memory_order_relaxed);
  atomic_store_explicit(&loop->wd_req, seq, memory_order_release);
  if (w->may_signal && handler_ours() &&
      pthread_kill(w->thread, CORO__WD_SIGNAL) == 0)
    return;
  line l = {.n = 0};
  put(&l, "libcoro: watchdog: a task step ");
  put_held(&l, elapsed, cpu);
  write_all(l.buf, l.n);
}

static void sample(coro__wd *w, uint64_t t) {
  coro_loop *loop = w->loop;
  uint64_t seq = atomic_load_explicit(&loop->wd_seq, memory_order_acquire);
  if (seq & 1) {
    if (seq != w->last_seq) { /* a step first seen: it began after prev_t */
      w->first_t = t;
      w->cpu0 = cpu_ns(w);
      w->next_report = w->threshold_ns;
      atomic_store_explicit(&loop->wd_seen_lower, w->prev_t, memory_order_relaxed);
      atomic_store_explicit(&loop->wd_seen_seq, seq, memory_order_release);
    } else if (t - w->first_t >= w->next_report) {
      report_running(w, seq, t - w->first_t);
      w->next_report = w->next_report > UINT64_MAX / 2 ? UINT64_MAX : w->next_report * 2;
    }
  }
  w->last_seq = seq;
  w->prev_t = t;
}

/* A dump request, run on the loop's thread. */
static void dump_run(coro__msg *m) {
  coro__free(m);
  coro_dump_tasks(stderr);
}

static void post_dumps(void) {
  for (coro__wd *w = wd_list; w != NULL; w = w->next) {
    if (!w->dump_signal || w->ib == NULL) continue;
    coro__msg *m = coro__malloc(sizeof *m);
    if (m == NULL) continue;
    m->next = NULL;
    m->run = dump_run;
    if (coro__inbox_post(w->ib, m, 0) != 0) coro__free(m);
  }
}

static void *wd_main(void *arg) {
  (void)arg;
  /* The watchdog takes none of the application's signals. */
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, NULL);
  pthread_mutex_lock(&wd_mu);
  for (;;) {
    while (wd_list == NULL) pthread_cond_wait(&wd_cv, &wd_mu);
    uint64_t period = 0; /* 0: no loop to sample */
    for (coro__wd *w = wd_list; w != NULL; w = w->next) {
      if (!w->watch) continue;
      uint64_t p = w->threshold_ns / 20;
      if (p < WD_PERIOD_MIN_NS) p = WD_PERIOD_MIN_NS;
      if (p > WD_PERIOD_MAX_NS) p = WD_PERIOD_MAX_NS;
      if (period == 0 || p < period) period = p;
      sample(w, uv_hrtime());
    }
    int efd = wd_efd;
    pthread_mutex_unlock(&wd_mu);
    if (efd >= 0) {
      /* Sleep for the period, or until a dump is asked for (or a loop
       * came or went: the condition variable is not watched here, so
       * without samples to take this wakes every 100 ms to look). */
      struct pollfd pfd = {.fd = efd, .events = POLLIN};
      int ms = period != 0 ? (int)((period + 999999) / 1000000) : 100;
      if (poll(&pfd, 1, ms) > 0) {
        uint64_t v;
        if (read(efd, &v, sizeof v) == (ssize_t)sizeof v) {
          pthread_mutex_lock(&wd_mu);
          post_dumps();
          pthread_mutex_unlock(&wd_mu);
        }
      }
    } else {
      struct timespec ts = {0, (long)(period != 0 ? period : 100000000u)};
      while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
      }
    }
    pthread_mutex_lock(&wd_mu);
  }
  return NULL;
}

/* ---- the dump signal --------------------------------------------------------- */

static void dump_handler(int sig) {
  (void)sig;
  int saved = errno;
  uint64_t one = 1;
  if (wd_efd >= 0) (void)!write(wd_efd, &one, sizeof one);
  errno = saved;
}

int coro__dump_signal_ok(int sig) {
  if (sig <= 0 || sig >= NSIG || sig >= 64) return 0;
  switch (sig) {
    case SIGKILL: case SIGSTOP: case SIGSEGV: case SIGBUS: case SIGFPE:
    case SIGILL: case SIGURG: case SIGCHLD: case SIGPIPE: case SIGABRT:
      return 0;
  }
  return 1;
}

int coro__dump_signal_parse(const char *s) {
  static const struct { const char *name; int sig; } names[] = {
      {"HUP", SIGHUP}, {"INT", SIGINT}, {"QUIT", SIGQUIT}, {"USR1", SIGUSR1},
      {"USR2", SIGUSR2}, {"TERM", SIGTERM}, {"WINCH", SIGWINCH},
      {"PWR", SIGPWR}, {"TRAP", SIGTRAP}};
  if (strncmp(s, "SIG", 3) == 0) s += 3;
  int sig = 0;
  if (*s >= '0' && *s <= '9') {
    char *end;
    long v = strtol(s, &end, 10);
    if (*end == '\0' && v > 0 && v < 64) sig = (int)v;
  } else {
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
      if (strcmp(s, names[i].name) == 0) sig = names[i].sig;
  }
  return coro__dump_signal_ok(sig) ? sig : 0;
}

/* Under wd_mu: install the dump handler for sig, once. */
static void dump_install(int sig) {
  if (dump_sigs & ((uint64_t)1 << sig)) return;
  const char *env = getenv("CORO_NO_SIGNAL_HANDLERS");
  if (env != NULL && strcmp(env, "1") == 0) return;
  if (wd_efd < 0) wd_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wd_efd < 0) return;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = dump_handler;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  if (sigaction(sig, &sa, NULL) == 0) dump_sigs |= (uint64_t)1 << sig;
}

/* A child of fork has no watchdog thread and none of the parent's loops. */
static void wd_prepare(void) { pthread_mutex_lock(&wd_mu); }
static void wd_parent(void) { pthread_mutex_unlock(&wd_mu); }
static void wd_child(void) {
  pthread_mutex_init(&wd_mu, NULL);
  pthread_cond_init(&wd_cv, NULL);
  wd_list = NULL; /* the parent's loops: their records are not ours to free */
  wd_started = 0;
}
static void wd_atfork(void) {
  pthread_atfork(wd_prepare, wd_parent, wd_child);
  wd_install();
}

void coro__watchdog_enter(coro_loop *loop) {
  if ((!loop->debug && loop->dump_signal == 0) || loop->wd != NULL) return;
  pthread_once(&wd_once, wd_atfork);
  coro__wd *w = calloc(1, sizeof *w);
  if (w == NULL) return; /* debug mode without the watchdog */
  w->loop = loop;
  w->watch = loop->debug;
  const char *env = getenv("CORO_NO_SIGNAL_HANDLERS");
  w->may_signal = env == NULL || strcmp(env, "1") != 0;
  w->dump_signal = loop->dump_signal;
  if (w->dump_signal) w->ib = coro__inbox_get(loop);
  w->thread = pthread_self();
  w->have_cpu = pthread_getcpuclockid(w->thread, &w->cpu) == 0;
  uint64_t ms = (uint64_t)loop->slow_step_ms;
  w->threshold_ns = ms > UINT64_MAX / 1000000u ? UINT64_MAX : ms * 1000000u;
  w->prev_t = uv_hrtime();
  pthread_mutex_lock(&wd_mu);
  if (!wd_started) {
    pthread_t th;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&at, 64 * 1024);
    if (pthread_create(&th, &at, wd_main, NULL) == 0) wd_started = 1;
    pthread_attr_destroy(&at);
  }
  if (!wd_started) {
    pthread_mutex_unlock(&wd_mu);
    if (w->ib != NULL) coro__inbox_release(w->ib);
    free(w);
    return;
  }
  if (w->dump_signal) dump_install(w->dump_signal);
  w->next = wd_list;
  wd_list = w;
  loop->wd = w;
  pthread_cond_signal(&wd_cv);
  pthread_mutex_unlock(&wd_mu);
}

void coro__watchdog_leave(coro_loop *loop) {
  coro__wd *w = loop->wd;
  if (w == NULL) return;
  pthread_mutex_lock(&wd_mu);
  for (coro__wd **p = &wd_list; *p != NULL; p = &(*p)->next)
    if (*p == w) {
      *p = w->next;
      break;
    }
  pthread_mutex_unlock(&wd_mu);
  atomic_store_explicit(&loop->wd_req, 0, memory_order_release);
  loop->wd = NULL;
  if (w->ib != NULL) coro__inbox_release(w->ib);
  free(w);
}
