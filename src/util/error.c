/* SPDX-License-Identifier: MIT */
/* Error names and messages, and the version. libuv's UV_ERRNO_MAP gives
 * the errno-range codes; libcoro's own codes (-5001 and below) follow,
 * among them the process pools' worker-death codes of coro/errno.h. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <uv.h>

#include "coro-internal.h"

/* The numbers are libuv's: a libuv status passes through unchanged. */
CORO__STATIC_ASSERT(CORO_ECANCELED == UV_ECANCELED, "ECANCELED");
CORO__STATIC_ASSERT(CORO_ETIMEDOUT == UV_ETIMEDOUT, "ETIMEDOUT");
CORO__STATIC_ASSERT(CORO_EPIPE == UV_EPIPE, "EPIPE");
CORO__STATIC_ASSERT(CORO_EINVAL == UV_EINVAL, "EINVAL");
CORO__STATIC_ASSERT(CORO_ENOMEM == UV_ENOMEM, "ENOMEM");
CORO__STATIC_ASSERT(CORO_EBUSY == UV_EBUSY, "EBUSY");
CORO__STATIC_ASSERT(CORO_EPERM == UV_EPERM, "EPERM");
CORO__STATIC_ASSERT(CORO_EALREADY == UV_EALREADY, "EALREADY");
CORO__STATIC_ASSERT(CORO_EAGAIN == UV_EAGAIN, "EAGAIN");
CORO__STATIC_ASSERT(CORO__ERR_BASE < UV_EOF, "own codes clear of libuv");

/* ---- error names and messages of the worker codes -------------------------- */

static const char *const sig_names[] = {
    [SIGHUP] = "SIGHUP",   [SIGINT] = "SIGINT",       [SIGQUIT] = "SIGQUIT",
    [SIGILL] = "SIGILL",   [SIGTRAP] = "SIGTRAP",     [SIGABRT] = "SIGABRT",
    [SIGBUS] = "SIGBUS",   [SIGFPE] = "SIGFPE",       [SIGKILL] = "SIGKILL",
    [SIGUSR1] = "SIGUSR1", [SIGSEGV] = "SIGSEGV",     [SIGUSR2] = "SIGUSR2",
    [SIGPIPE] = "SIGPIPE", [SIGALRM] = "SIGALRM",     [SIGTERM] = "SIGTERM",
    [SIGCHLD] = "SIGCHLD", [SIGCONT] = "SIGCONT",     [SIGSTOP] = "SIGSTOP",
    [SIGTSTP] = "SIGTSTP", [SIGTTIN] = "SIGTTIN",     [SIGTTOU] = "SIGTTOU",
    [SIGURG] = "SIGURG",   [SIGXCPU] = "SIGXCPU",     [SIGXFSZ] = "SIGXFSZ",
    [SIGVTALRM] = "SIGVTALRM", [SIGPROF] = "SIGPROF", [SIGWINCH] = "SIGWINCH",
    [SIGIO] = "SIGIO",     [SIGPWR] = "SIGPWR",       [SIGSYS] = "SIGSYS",
};

#define MAX_SIG 99 /* CORO_EWORKER_SIGNAL range: 1..99 */
#define MAX_EXIT 255
static char sig_msg[MAX_SIG + 1][80], sig_name[MAX_SIG + 1][40];
static char exit_msg[MAX_EXIT + 1][64], exit_name[MAX_EXIT + 1][24];
static pthread_once_t msg_once = PTHREAD_ONCE_INIT;

static void msg_init(void) {
  for (int s = 1; s <= MAX_SIG; s++) {
    char nm[24];
    if ((size_t)s < sizeof(sig_names) / sizeof(sig_names[0]) &&
        sig_names[s] != NULL)
      snprintf(nm, sizeof(nm), "%s", sig_names[s]);
    else if (s >= SIGRTMIN && s <= SIGRTMAX)
      snprintf(nm, sizeof(nm), "SIGRTMIN+%d", s - SIGRTMIN);
    else
      snprintf(nm, sizeof(nm), "SIG%d", s);
    snprintf(sig_msg[s], sizeof(sig_msg[s]),
             "worker process killed by signal %d (%s)", s, nm);
    snprintf(sig_name[s], sizeof(sig_name[s]), "EWORKER_%s", nm);
  }
  for (int c = 0; c <= MAX_EXIT; c++) {
    snprintf(exit_msg[c], sizeof(exit_msg[c]),
             "worker process exited with status %d before replying", c);
    snprintf(exit_name[c], sizeof(exit_name[c]), "EWORKER_EXIT_%d", c);
  }
}

static const char *worker_err_name(int err) {
  if (err == CORO_EWORKER_START) return "EWORKER_START";
  int s = CORO_WORKER_SIGNAL_OF(err), c = CORO_WORKER_EXIT_OF(err);
  if (s <= 0 && c < 0) return NULL;
  pthread_once(&msg_once, msg_init);
  return s > 0 ? sig_name[s] : exit_name[c];
}

static const char *worker_strerror(int err) {
  if (err == CORO_EWORKER_START)
    return "worker process could not be started";
  int s = CORO_WORKER_SIGNAL_OF(err), c = CORO_WORKER_EXIT_OF(err);
  if (s <= 0 && c < 0) return NULL;
  pthread_once(&msg_once, msg_init);
  return s > 0 ? sig_msg[s] : exit_msg[c];
}

/* ---- every code ------------------------------------------------------------ */

const char *coro_err_name(int err) {
  switch (err) {
  case 0: return "OK";
  case CORO_PENDING: return "PENDING";
  case CORO_EDEADLK: return "EDEADLK";
  case CORO_EABANDONED: return "EABANDONED";
#ifndef UV_ENOEXEC /* libuv 1.44 has no name for it; a child's spawn gives it */
  case -ENOEXEC: return "ENOEXEC";
#endif
#define XX(code, _) case UV_##code: return #code;
  UV_ERRNO_MAP(XX)
#undef XX
  default: {
    const char *w = worker_err_name(err);
    return w != NULL ? w : "UNKNOWN";
  }
  }
}

const char *coro_strerror(int err) {
  switch (err) {
  case 0: return "success";
  case CORO_PENDING: return "operation pending";
  case CORO_EDEADLK: return "resource deadlock avoided";
  case CORO_EABANDONED: return "task ignored cancellation and was abandoned";
#ifndef UV_ENOEXEC
  case -ENOEXEC: return "exec format error";
#endif
#define XX(code, msg) case UV_##code: return msg;
  UV_ERRNO_MAP(XX)
#undef XX
  default: {
    const char *w = worker_strerror(err);
    return w != NULL ? w : "Unknown error";
  }
  }
}

unsigned int coro_version(void) { return CORO_VERSION_HEX; }

const char *coro_version_string(void) { return CORO_VERSION_STRING; }
