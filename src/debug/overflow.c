/* SPDX-License-Identifier: MIT */
/* Stack overflow report (see overflow.h).
 *
 * The handler is installed while at least one loop runs in the process and
 * restored to what it was when the last one ends; the first loop saves the
 * previous action. Each loop thread gets an alternate signal stack (unless
 * it has one): without it the handler would run on the overflowed stack and
 * fault again. The handler only uses async-signal-safe calls (write), and
 * for any fault that is not a guard page, or after reporting, it puts the
 * previous action back and returns: the faulting instruction runs again and
 * faults into the previous handler or the default action (a core dump). */
#include <execinfo.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "debug/overflow.h"
#include "core/task.h"

#define ALTSTACK_SIZE (64 * 1024)

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int users;
static struct sigaction saved;

static _Thread_local void *altstack;   /* ours, if we installed one */
/* Set while the handler unwinds the overflowed stack: a fault meanwhile
 * (the unwinder reading the guard page) jumps back out of backtrace(). */
static _Thread_local volatile sig_atomic_t in_backtrace;
static _Thread_local sigjmp_buf backtrace_jb;

static size_t append(char *buf, size_t n, size_t cap, const char *s) {
  while (*s != '\0' && n < cap) buf[n++] = *s++;
  return n;
}

static size_t append_hex(char *buf, size_t n, size_t cap, uintptr_t v) {
  char tmp[2 + 2 * sizeof(v)];
  int i = (int)sizeof(tmp);
  do {
    tmp[--i] = "0123456789abcdef"[v & 15];
    v >>= 4;
  } while (v != 0);
  tmp[--i] = 'x';
  tmp[--i] = '0';
  while (i < (int)sizeof(tmp) && n < cap) buf[n++] = tmp[i++];
  return n;
}

static size_t append_dec(char *buf, size_t n, size_t cap, unsigned long long v) {
  char tmp[24];
  int i = (int)sizeof(tmp);
  do {
    tmp[--i] = (char)('0' + v % 10);
    v /= 10;
  } while (v != 0);
  while (i < (int)sizeof(tmp) && n < cap) buf[n++] = tmp[i++];
  return n;
}

/* The overflowing task's frames, innermost first, after the report; cut
 * short if unwinding touches the guard page itself. */
static void write_backtrace(void) {
  void *frames[32];
  if (sigsetjmp(backtrace_jb, 1) != 0) {
    in_backtrace = 0;
    return;
  }
  in_backtrace = 1;
  int n = backtrace(frames, 32);
  in_backtrace = 0;
  /* frames[0] is this function, [1] the handler, [2] the trampoline */
  if (n > 3) {
    static const char head[] = "libcoro: its stack:\n";
    ssize_t w = write(STDERR_FILENO, head, sizeof head - 1);
    (void)w;
    backtrace_symbols_fd(frames + 3, n - 3, STDERR_FILENO);
  }
}

static void handler(int sig, siginfo_t *si, void *uctx) {
  (void)uctx;
  if (in_backtrace) siglongjmp(backtrace_jb, 1);
  if (coro__stack_is_guard(si->si_addr)) {
    char msg[512];
    size_t n = 0, cap = sizeof(msg) - 1;
    n = append(msg, n, cap, "libcoro: task '");
    coro_loop *loop = coro__tls_loop;
    coro__task *t = loop != NULL ? loop->current : NULL;
    if (t == NULL) {
      n = append(msg, n, cap, "?");
    } else if (t->name != NULL) {
      n = append(msg, n, cap, t->name);
    } else if (t->autoname[0] != '\0') {
      n = append(msg, n, cap, t->autoname);
    } else {
      n = append(msg, n, cap, "Task-");
      n = append_dec(msg, n, cap, t->id);
    }
    n = append(msg, n, cap, "' overflowed its stack (fault at ");
    n = append_hex(msg, n, cap, (uintptr_t)si->si_addr);
    if (t != NULL && t->fiber != NULL) {
      n = append(msg, n, cap, ", stack ");
      n = append_dec(msg, n, cap, t->fiber->stack.size / 1024);
      n = append(msg, n, cap, " KiB");
    }
    n = append(msg, n, cap,
               "); give it a larger coro_task_opts.stack_size or "
               "coro_config.stack_size\n");
    ssize_t w = write(STDERR_FILENO, msg, n);
    (void)w;
    if (t != NULL) write_backtrace();
  }
  /* Fault again into whatever handled SIGSEGV before us. */
  sigaction(sig, &saved, NULL);
}

static int disabled(void) {
#ifdef CORO__ASAN
  return 1;
#else
  const char *e = getenv("CORO_NO_SIGNAL_HANDLERS");
  return e != NULL && strcmp(e, "1") == 0;
#endif
}

void coro__overflow_enter(coro_loop *loop) {
  (void)loop;
  if (disabled()) return;
  /* An alternate signal stack for this thread, unless it has one. */
  stack_t cur;
  if (sigaltstack(NULL, &cur) == 0 && (cur.ss_flags & SS_DISABLE)) {
    void *mem = mmap(NULL, ALTSTACK_SIZE, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem != MAP_FAILED) {
      stack_t ss = {.ss_sp = mem, .ss_size = ALTSTACK_SIZE, .ss_flags = 0};
      if (sigaltstack(&ss, NULL) == 0)
        altstack = mem;
      else
        munmap(mem, ALTSTACK_SIZE);
    }
  }
  pthread_mutex_lock(&lock);
  if (users++ == 0) {
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = handler;
    /* NODEFER: a fault while unwinding comes back here (see
     * write_backtrace) instead of killing the process at once. */
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &saved);
    void *prime[1];
    (void)backtrace(prime, 1); /* loads what backtrace needs, now */
  }
  pthread_mutex_unlock(&lock);
}

void coro__overflow_leave(coro_loop *loop) {
  (void)loop;
  if (disabled()) return;
  pthread_mutex_lock(&lock);
  if (--users == 0) {
    struct sigaction cur;
    /* Put back the saved action, unless someone replaced ours meanwhile. */
    if (sigaction(SIGSEGV, NULL, &cur) == 0 &&
        (cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == handler)
      sigaction(SIGSEGV, &saved, NULL);
  }
  pthread_mutex_unlock(&lock);
  if (altstack != NULL) {
    stack_t ss = {.ss_sp = NULL, .ss_size = 0, .ss_flags = SS_DISABLE};
    sigaltstack(&ss, NULL);
    munmap(altstack, ALTSTACK_SIZE);
    altstack = NULL;
  }
}
