/* SPDX-License-Identifier: MIT */
/* Child processes: posix_spawn and a pidfd watched by the loop, or
 * uv_spawn where those are missing.
 *
 * Why not uv_spawn everywhere: libuv 1.44 starts a child with fork(), which
 * copies the parent's page tables and then makes the parent take a
 * copy-on-write fault on every page it touches until the child has called
 * exec; that cost grows with the parent's size. glibc's posix_spawn uses
 * clone(CLONE_VM | CLONE_VFORK): nothing is copied, the parent just waits
 * for the exec. Its file actions do what libuv's child does (the standard
 * streams, the directory) and close_from(3) closes every other
 * descriptor; every signal gets its default action and the mask is
 * emptied, as libuv does; errors of the child before exec (no such
 * program, a bad directory) come back from posix_spawn itself. The exit is
 * seen through a pidfd (pidfd_open, Linux 5.3) polled by the loop, and the
 * child is reaped with waitid(P_PID): no SIGCHLD handler at all. Without
 * pidfds (an older kernel) or without posix_spawn_file_actions_addclosefrom_np
 * (glibc before 2.34), uv_spawn is used.
 *
 * Standard streams (both ways): CORO_STDIO_PIPE makes a pipe with
 * pipe2(O_CLOEXEC), hands the child its end to be dup'ed onto 0, 1 or 2
 * (libuv's own UV_CREATE_PIPE would give the child a socket pair, which
 * some programs treat differently from a pipe), and turns the parent's end
 * into a coro_stream before the child starts, so that nothing can fail
 * once it runs. CORO_STDIO_NULL is /dev/null, opened in the child.
 *
 * Descriptor hygiene with uv_spawn: libuv's child closes nothing, so a
 * descriptor the program opened without close-on-exec would reach the
 * child. A fork handler (pthread_atfork) marks every descriptor from 3 up
 * close-on-exec in the child of a fork made by coro_process_spawn (a
 * thread-local flag says which fork that is), with
 * close_range(CLOSE_RANGE_CLOEXEC), one system call that touches only the
 * child's table. Either way the parent's descriptors are left as they were.
 *
 * Exits: each child is reaped by its pid (waitid here, libuv's
 * waitpid(pid, WNOHANG) on SIGCHLD with uv_spawn), never with
 * waitpid(-1), and so are the process pool's workers: neither takes the
 * other's exit. The handle (the pidfd's poll handle, or the uv_process_t:
 * one closed before libuv reported the exit is never reaped) stays until
 * the exit has been seen, so coro_process_free of a running child sends
 * SIGKILL and leaves the struct to the exit callback, which closes the
 * handle. Each loop keeps a list of its processes; when the loop ends, a
 * child still running is killed and reaped with a blocking waitpid (it was
 * sent SIGKILL, so that is brief), and the struct is freed: no child
 * outlives its loop unreaped.
 *
 * The handle is unref'd while no task waits for the exit, as streams are:
 * a forgotten child does not keep a finished program's loop alive. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "io/io-internal.h"

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

#if defined(SYS_pidfd_open) && defined(__GLIBC__) && \
    (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
#define HAVE_VFORK_SPAWN 1
#endif

extern char **environ;

/* Tests set this to take the uv_spawn way on this thread. */
_Thread_local int coro__process_use_uv_spawn;

typedef struct proc_list {
  coro__queue procs; /* coro_process.node */
} proc_list;

struct coro_process {
  uv_process_t h;       /* the uv_spawn way */
  uv_poll_t ph;         /* the posix_spawn way: polls pidfd */
  int pidfd;            /* -1 unless the posix_spawn way */
  uint8_t vfork_way;    /* ph and pidfd are used, not h */
  coro_loop *loop;
  coro_stream *io[3];   /* the parent's pipe ends, held (coro__stream_release) */
  coro__queue node;     /* in the loop's proc_list until the handle is closed */
  coro__queue waiters;  /* proc_waiter.node, FIFO */
  unsigned users;       /* tasks suspended in coro_process_wait */
  int pid;
  int exit_status, term_signal;
  int lost;             /* the exit was seen but its status was lost (-ECHILD) */
  uint8_t exited;       /* libuv reported the exit (or the loop's end reaped it) */
  uint8_t freed;        /* coro_process_free was called */
  uint8_t closing;      /* uv_close was called */
  uint8_t handle_closed;
};

typedef struct proc_waiter {
  coro__queue node;
  coro__task *task;
  coro_process *p;
  coro__timer timer;
} proc_waiter;

/* The libuv handle of p: the process handle, or the pidfd's poll handle. */
static uv_handle_t *proc_handle(coro_process *p) {
  return p->vfork_way ? (uv_handle_t *)&p->ph : (uv_handle_t *)&p->h;
}

/* ---- the fork handler ---------------------------------------------------- */

static _Thread_local int spawning;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/* In the child of coro_process_spawn's fork, before libuv sets up 0, 1, 2
 * and calls exec: every descriptor from 3 up becomes close-on-exec. Only
 * system calls (this runs between fork and exec). */
static void atfork_child(void) {
  if (!spawning) return;
#ifdef SYS_close_range
  if (syscall(SYS_close_range, 3u, ~0u, CLOSE_RANGE_CLOEXEC) == 0) return;
#endif
  /* Kernels before 5.11: each descriptor up to the limit (at most 65536). */
  struct rlimit rl;
  long max = 65536;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
      (long)rl.rlim_cur < max)
    max = (long)rl.rlim_cur;
  for (long fd = 3; fd < max; fd++) {
    int fl = fcntl((int)fd, F_GETFD);
    if (fl >= 0 && !(fl & FD_CLOEXEC)) fcntl((int)fd, F_SETFD, fl | FD_CLOEXEC);
  }
}

static void atfork_register(void) { pthread_atfork(NULL, NULL, atfork_child); }

/* ---- life cycle ---------------------------------------------------------- */

static void proc_maybe_free(coro_process *p) {
  if (p->handle_closed && p->freed && p->users == 0) coro__free(p);
}

static void proc_close_cb(uv_handle_t *h) {
  coro_process *p = h->data;
  if (coro__queue_linked(&p->node)) coro__queue_remove(&p->node);
  if (p->pidfd >= 0) close(p->pidfd);
  p->pidfd = -1;
  p->handle_closed = 1;
  proc_maybe_free(p);
}

static void proc_close(coro_process *p) {
  if (p->closing) return;
  p->closing = 1;
  uv_close(proc_handle(p), proc_close_cb);
}

static void proc_wake_all(coro_process *p, int status) {
  coro__queue *q;
  while ((q = coro__queue_pop(&p->waiters)) != NULL) {
    proc_waiter *w = coro__container_of(q, proc_waiter, node);
    coro__timer_stop(p->loop, &w->timer);
    coro__task_wake(w->task, status);
  }
}

static void proc_exited(coro_process *p, int exit_status, int term_signal) {
  p->exited = 1;
  p->exit_status = exit_status;
  p->term_signal = term_signal;
  proc_wake_all(p, p->lost);
  if (p->freed)
    proc_close(p);
  else
    uv_unref(proc_handle(p));
}

static void exit_cb(uv_process_t *h, int64_t exit_status, int term_signal) {
  proc_exited(h->data, (int)exit_status, term_signal);
}

/* The pidfd is readable: the child has ended. Reap it. */
static void pidfd_cb(uv_poll_t *h, int status, int events) {
  (void)status;
  (void)events;
  coro_process *p = h->data;
  siginfo_t si;
  memset(&si, 0, sizeof(si));
  int r;
  do r = waitid(P_PID, (id_t)p->pid, &si, WEXITED | WNOHANG);
  while (r < 0 && errno == EINTR);
  if (r == 0 && si.si_pid == 0) return; /* not yet (cannot happen) */
  /* ECHILD: reaped by someone else (SIGCHLD set to SIG_IGN makes the
   * kernel do it), and the status is gone: say so instead of reporting a
   * made-up exit code 0. */
  if (r < 0) p->lost = -errno;
  uv_poll_stop(&p->ph);
  int code = 0, sig = 0;
  if (r == 0 && si.si_code == CLD_EXITED)
    code = si.si_status;
  else if (r == 0)
    sig = si.si_status; /* CLD_KILLED, CLD_DUMPED */
  proc_exited(p, code, sig);
}

static void release_streams(coro_process *p) {
  for (int i = 0; i < 3; i++) {
    if (p->io[i] != NULL) coro__stream_release(p->io[i]);
    p->io[i] = NULL;
  }
}

/* The loop ends: kill and reap every child still running, free every
 * process the program did not free (its streams with it). */
static void procs_at_end(coro_loop *loop, coro__loop_slot *slot) {
  (void)loop;
  proc_list *pl = slot->data;
  if (pl == NULL) return;
  coro__queue *q;
  while ((q = coro__queue_pop(&pl->procs)) != NULL) {
    coro_process *p = coro__container_of(q, coro_process, node);
    if (!p->exited) {
      kill(p->pid, SIGKILL);
      int st = 0;
      pid_t r;
      do r = waitpid(p->pid, &st, 0);
      while (r < 0 && errno == EINTR);
      p->exited = 1;
      if (r == p->pid) {
        p->exit_status = WIFEXITED(st) ? WEXITSTATUS(st) : 0;
        p->term_signal = WIFSIGNALED(st) ? WTERMSIG(st) : 0;
      }
    }
    if (!p->freed) {
      p->freed = 1;
      release_streams(p);
    }
    proc_wake_all(p, CORO_EPIPE); /* nobody: every task has finished */
    proc_close(p);
  }
  coro__free(pl);
}

static proc_list *proc_list_get(coro_loop *loop) {
  coro__loop_slot *slot = coro__loop_slot_of(loop, CORO__SLOT_PROCESS);
  if (slot->data == NULL) {
    proc_list *pl = coro__calloc(1, sizeof(*pl));
    if (pl == NULL) return NULL;
    coro__queue_init(&pl->procs);
    slot->data = pl;
    slot->at_end = procs_at_end;
  }
  return slot->data;
}

/* ---- spawn ------------------------------------------------------------------ */

#ifdef HAVE_VFORK_SPAWN
/* Whether this kernel has pidfds (asked once). */
static int vfork_ok = -1;
static pthread_once_t vfork_once = PTHREAD_ONCE_INIT;
static void vfork_probe(void) {
  int fd = (int)syscall(SYS_pidfd_open, getpid(), 0);
  vfork_ok = fd >= 0;
  if (fd >= 0) close(fd);
}
static int vfork_way_works(void) {
  if (coro__process_use_uv_spawn) return 0;
  pthread_once(&vfork_once, vfork_probe);
  return vfork_ok;
}

/* Start the child with posix_spawn and watch its pidfd. stdio says what
 * each of 0, 1, 2 becomes, as for uv_spawn. */
static int spawn_vfork(coro_process *p, const coro_process_opts *opts,
                       const uv_stdio_container_t stdio[3]) {
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t at;
  int r = posix_spawn_file_actions_init(&fa);
  if (r != 0) return -r;
  r = posix_spawnattr_init(&at);
  if (r != 0) {
    posix_spawn_file_actions_destroy(&fa);
    return -r;
  }
  /* A source among 0, 1, 2 could be overwritten by an earlier dup2 of the
   * three (stdout and stderr swapped, say): such sources are first copied
   * above 2 in the parent. */
  int src[3], copy[3] = {-1, -1, -1};
  for (int i = 0; i < 3 && r == 0; i++) {
    src[i] = -1;
    if (stdio[i].flags & UV_INHERIT_FD) {
      src[i] = stdio[i].data.fd;
      if (src[i] < 3 && src[i] != i) {
        copy[i] = fcntl(src[i], F_DUPFD_CLOEXEC, 3);
        if (copy[i] < 0) r = errno;
        src[i] = copy[i];
      }
    }
  }
  for (int i = 0; i < 3 && r == 0; i++) {
    if (src[i] >= 0) /* dup2 onto itself clears close-on-exec */
      r = posix_spawn_file_actions_adddup2(&fa, src[i], i);
    else
      r = posix_spawn_file_actions_addopen(&fa, i, "/dev/null",
                                           i == 0 ? O_RDONLY : O_RDWR, 0);
  }
  if (r == 0 && opts->cwd != NULL)
    r = posix_spawn_file_actions_addchdir_np(&fa, opts->cwd);
  if (r == 0) r = posix_spawn_file_actions_addclosefrom_np(&fa, 3);
  sigset_t all, none;
  sigfillset(&all);
  sigemptyset(&none);
  if (r == 0) r = posix_spawnattr_setsigdefault(&at, &all);
  if (r == 0) r = posix_spawnattr_setsigmask(&at, &none);
  if (r == 0)
    r = posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGDEF |
                                          POSIX_SPAWN_SETSIGMASK);
  pid_t pid = -1;
  if (r == 0) {
    const char *file = opts->file != NULL ? opts->file : opts->argv[0];
    char *const *envp = opts->env != NULL ? opts->env : environ;
    if (strchr(file, '/') != NULL)
      r = posix_spawn(&pid, file, &fa, &at, opts->argv, envp);
    else
      r = posix_spawnp(&pid, file, &fa, &at, opts->argv, envp);
  }
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&at);
  for (int i = 0; i < 3; i++)
    if (copy[i] >= 0) close(copy[i]);
  if (r != 0) return -r;

  /* The child is ours and unreaped: its pid cannot be reused yet. */
  int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
  int inited = 0;
  if (pidfd < 0) {
    /* ESRCH: the child has ended and was reaped already, which only
     * happens when SIGCHLD is ignored (the kernel reaps it): its status is
     * lost, as for a wait (-ECHILD). */
    r = errno == ESRCH ? -ECHILD : -errno;
  } else if ((r = uv_poll_init(p->loop->uv, &p->ph, pidfd)) == 0) {
    inited = 1;
    r = uv_poll_start(&p->ph, UV_READABLE, pidfd_cb);
  }
  p->ph.data = p;
  p->pidfd = pidfd;
  p->vfork_way = 1;
  p->pid = (int)pid;
  if (r != 0) {
    /* Cannot be watched (no descriptor left): do not leave it running. */
    kill(pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
    }
    if (!inited) {
      if (pidfd >= 0) close(pidfd);
      p->pidfd = -1;
      return r;
    }
    /* The handle is closed, and the struct freed, from the loop. */
    release_streams(p);
    p->freed = 1;
    proc_close(p);
  }
  return r;
}
#endif

static int mode_ok(int mode) {
  return mode == CORO_STDIO_INHERIT || mode == CORO_STDIO_PIPE ||
         mode == CORO_STDIO_NULL || mode == CORO_STDIO_FD;
}

int coro_process_spawn(coro_process **out, const coro_process_opts *opts) {
  if (out != NULL) *out = NULL;
  if (out == NULL || opts == NULL || opts->argv == NULL ||
      opts->argv[0] == NULL)
    return CORO_EINVAL;
  const int modes[3] = {opts->stdin_mode, opts->stdout_mode,
                        opts->stderr_mode};
  const int fds[3] = {opts->stdin_fd, opts->stdout_fd, opts->stderr_fd};
  for (int i = 0; i < 3; i++) {
    if (!mode_ok(modes[i])) return CORO_EINVAL;
    if (modes[i] == CORO_STDIO_FD && fcntl(fds[i], F_GETFD) < 0)
      return fds[i] < 0 ? CORO_EINVAL : UV_EBADF;
  }
  coro_loop *loop = coro__tls_loop;
  if (loop == NULL) return CORO_EPERM;
  pthread_once(&atfork_once, atfork_register);
  proc_list *pl = proc_list_get(loop);
  if (pl == NULL) return CORO_ENOMEM;
  coro_process *p = coro__calloc(1, sizeof(*p));
  if (p == NULL) return CORO_ENOMEM;
  p->loop = loop;
  p->pidfd = -1;
  coro__queue_init(&p->node);
  coro__queue_init(&p->waiters);

  uv_stdio_container_t stdio[3];
  int child_end[3] = {-1, -1, -1};
  int r = 0;
  for (int i = 0; i < 3; i++) {
    switch (modes[i]) {
    case CORO_STDIO_INHERIT:
      stdio[i].flags = UV_INHERIT_FD;
      stdio[i].data.fd = i;
      break;
    case CORO_STDIO_NULL:
      stdio[i].flags = UV_IGNORE;
      break;
    case CORO_STDIO_FD:
      stdio[i].flags = UV_INHERIT_FD;
      stdio[i].data.fd = fds[i];
      break;
    default: { /* CORO_STDIO_PIPE */
      int pfd[2];
      if (pipe2(pfd, O_CLOEXEC) != 0) {
        r = -errno;
        goto fail;
      }
      int mine = i == 0 ? pfd[1] : pfd[0];
      child_end[i] = i == 0 ? pfd[0] : pfd[1];
      r = coro__stream_from_fd(loop, mine, CORO__STREAM_PIPE, &p->io[i]);
      if (r != 0) {
        close(mine);
        goto fail;
      }
      p->io[i]->held = 1;
      stdio[i].flags = UV_INHERIT_FD;
      stdio[i].data.fd = child_end[i];
      break;
    }
    }
  }

  coro__io_ignore_sigpipe(); /* a write to a child that left: UV_EPIPE */
#ifdef HAVE_VFORK_SPAWN
  if (vfork_way_works()) {
    r = spawn_vfork(p, opts, stdio);
    for (int i = 0; i < 3; i++)
      if (child_end[i] >= 0) close(child_end[i]);
    if (r != 0 && p->closing) return r; /* the loop frees p */
    if (r != 0) goto fail_streams;
    goto started;
  }
#endif
  uv_process_options_t o;
  memset(&o, 0, sizeof(o));
  o.exit_cb = exit_cb;
  o.file = opts->file != NULL ? opts->file : opts->argv[0];
  o.args = (char **)opts->argv;
  o.env = (char **)opts->env;
  o.cwd = opts->cwd;
  o.stdio_count = 3;
  o.stdio = stdio;
  spawning = 1;
  r = uv_spawn(loop->uv, &p->h, &o);
  spawning = 0;
  p->h.data = p;
  for (int i = 0; i < 3; i++)
    if (child_end[i] >= 0) close(child_end[i]);
  if (r != 0) {
    /* libuv initialised the handle: it is closed, and the struct freed,
     * from the loop. */
    release_streams(p);
    p->freed = 1;
    proc_close(p);
    return r;
  }
  p->pid = p->h.pid;
#ifdef HAVE_VFORK_SPAWN
started:
#endif
  uv_unref(proc_handle(p));
  coro__queue_push(&pl->procs, &p->node);
  *out = p;
  return 0;

fail:
  for (int i = 0; i < 3; i++)
    if (child_end[i] >= 0) close(child_end[i]);
#ifdef HAVE_VFORK_SPAWN
fail_streams:
#endif
  release_streams(p);
  coro__free(p);
  return r;
}

coro_stream *coro_process_stdin(coro_process *p) {
  return p != NULL ? p->io[0] : NULL;
}
coro_stream *coro_process_stdout(coro_process *p) {
  return p != NULL ? p->io[1] : NULL;
}
coro_stream *coro_process_stderr(coro_process *p) {
  return p != NULL ? p->io[2] : NULL;
}

int coro_process_pid(const coro_process *p) {
  return p != NULL ? p->pid : CORO_EINVAL;
}

/* ---- wait, kill, free ------------------------------------------------------ */

static void waiter_timer_cb(coro__timer *tm) {
  proc_waiter *w = coro__container_of(tm, proc_waiter, timer);
  if (!coro__queue_linked(&w->node)) return;
  coro__queue_remove(&w->node);
  coro__task_wake(w->task, CORO_ETIMEDOUT);
}

static int waiter_cancel(coro__task *t, void *arg) {
  proc_waiter *w = arg;
  if (!coro__queue_linked(&w->node)) return CORO__CANCEL_LATER; /* woken */
  coro__queue_remove(&w->node);
  coro__timer_stop(t->fut.loop, &w->timer);
  return CORO__CANCEL_ABORT;
}

static void report(const coro_process *p, int *exit_status, int *term_signal) {
  if (exit_status != NULL) *exit_status = p->exit_status;
  if (term_signal != NULL) *term_signal = p->term_signal;
}

int coro_process_wait(coro_process *p, int64_t timeout_ms, int *exit_status,
                      int *term_signal) {
  if (p == NULL || timeout_ms < CORO_FOREVER) return CORO_EINVAL;
  coro__task *t = coro__task_for_wait();
  if (t == NULL || t->fut.loop != p->loop) return CORO_EPERM;
  if (p->freed) return CORO_EPIPE;
  if (p->exited) {
    if (p->lost != 0) return p->lost;
    report(p, exit_status, term_signal);
    return 0;
  }
  if (timeout_ms == 0) return CORO_ETIMEDOUT;
  proc_waiter w;
  coro__queue_init(&w.node);
  w.task = t;
  w.p = p;
  coro__timer_init(&w.timer, waiter_timer_cb);
  if (timeout_ms > 0) {
    int r = coro__timer_start(p->loop, &w.timer, (uint64_t)timeout_ms);
    if (r != 0) return r;
  }
  coro__queue_push(&p->waiters, &w.node);
  if (p->users++ == 0) uv_ref(proc_handle(p));
  int r = coro__task_suspend(t, waiter_cancel, &w, "process exit");
  coro__timer_stop(p->loop, &w.timer);
  if (coro__queue_linked(&w.node)) coro__queue_remove(&w.node);
  if (--p->users == 0) {
    if (p->freed) {
      proc_maybe_free(p);
      return r == 0 ? CORO_EPIPE : r;
    }
    if (!p->closing) uv_unref(proc_handle(p));
  }
  if (r == 0) {
    if (p->freed) return CORO_EPIPE;
    report(p, exit_status, term_signal);
  }
  return r;
}

int coro_process_kill(coro_process *p, int signum) {
  if (p == NULL || signum < 0 || signum >= NSIG) return CORO_EINVAL;
  if (p->loop != coro__tls_loop) return CORO_EPERM;
  if (p->exited || p->freed) return UV_ESRCH;
  if (p->vfork_way) return kill(p->pid, signum) == 0 ? 0 : -errno;
  return uv_process_kill(&p->h, signum);
}

void coro_process_free(coro_process *p) {
  if (p == NULL) return;
  if (p->loop != coro__tls_loop || p->freed) return;
  p->freed = 1;
  release_streams(p);
  proc_wake_all(p, CORO_EPIPE);
  if (p->exited) {
    proc_close(p);
    return;
  }
  /* The exit callback closes the handle. Until then the handle keeps the
   * loop alive, so that the kill is reaped while the loop runs. */
  kill(p->pid, SIGKILL);
  uv_ref(proc_handle(p));
}

/* ---- coro_process_run ---------------------------------------------------- */

typedef struct run_out {
  coro_stream *s;
  char *data; /* malloc(): the caller frees it */
  size_t len, cap;
  int err;
} run_out;

typedef struct run_in {
  coro_stream *s;
  const void *data;
  size_t len;
  int err;
} run_in;

/* Read s to its end into o->data (NUL-terminated, not counted). */
static int drain(run_out *o) {
  for (;;) {
    if (o->cap - o->len < 4096 + 1) {
      size_t ncap = o->cap == 0 ? 16384 : o->cap * 2;
      char *n = realloc(o->data, ncap);
      if (n == NULL) return CORO_ENOMEM;
      o->data = n;
      o->cap = ncap;
    }
    ssize_t n = coro_stream_read(o->s, o->data + o->len, o->cap - o->len - 1);
    if (n == 0) break;
    if (n < 0) return (int)n;
    o->len += (size_t)n;
  }
  o->data[o->len] = '\0';
  return 0;
}

static void *drain_task(void *arg) {
  run_out *o = arg;
  o->err = drain(o);
  return NULL;
}

static void *feed_task(void *arg) {
  run_in *in = arg;
  int r = in->len > 0 ? coro_stream_write(in->s, in->data, in->len) : 0;
  /* A child that exits or closes its stdin without reading everything is
   * not an error. */
  if (r == UV_EPIPE || r == UV_ECONNRESET || r == CORO_EPIPE) r = 0;
  in->err = r;
  coro_stream_close(in->s); /* end of file for the child */
  return NULL;
}

static void join(coro_future **f, int cancel) {
  if (*f == NULL) return;
  if (cancel) coro_cancel(*f);
  coro_await(*f, NULL);
  coro_future_release(*f);
  *f = NULL;
}

int coro_process_run(char *const argv[], const void *in, size_t in_len,
                     void **out, size_t *out_len, void **err, size_t *err_len,
                     int *exit_status, int64_t timeout_ms) {
  if (out != NULL) *out = NULL;
  if (out_len != NULL) *out_len = 0;
  if (err != NULL) *err = NULL;
  if (err_len != NULL) *err_len = 0;
  if (argv == NULL || argv[0] == NULL || timeout_ms < CORO_FOREVER ||
      (in == NULL && in_len > 0))
    return CORO_EINVAL;
  coro__task *t = coro__task_for_wait();
  if (t == NULL) return CORO_EPERM;
  if (timeout_ms == 0) return CORO_ETIMEDOUT;

  coro_process_opts o;
  memset(&o, 0, sizeof(o));
  o.argv = argv;
  o.stdin_mode = in != NULL ? CORO_STDIO_PIPE : CORO_STDIO_NULL;
  o.stdout_mode = out != NULL ? CORO_STDIO_PIPE : CORO_STDIO_NULL;
  o.stderr_mode = err != NULL ? CORO_STDIO_PIPE : CORO_STDIO_NULL;
  coro_process *p;
  int r = coro_process_spawn(&p, &o);
  if (r != 0) return r;

  run_in fin = {p->io[0], in, in_len, 0};
  run_out fout = {p->io[1], NULL, 0, 0, 0};
  run_out ferr = {p->io[2], NULL, 0, 0, 0};
  coro_future *feeder = NULL, *errer = NULL;
  int code = 0, sig = 0;

  coro_timeout scope;
  int scoped = timeout_ms > 0;
  if (scoped && (r = coro_timeout_enter(&scope, timeout_ms)) != 0) {
    coro_process_free(p);
    return r;
  }
  if (fin.s != NULL) r = coro_spawn(&feeder, feed_task, &fin);
  if (r == 0 && ferr.s != NULL) r = coro_spawn(&errer, drain_task, &ferr);
  if (r == 0 && fout.s != NULL) r = drain(&fout);
  if (r == 0 && errer != NULL) {
    r = coro_await(errer, NULL);
    if (r == 0) r = ferr.err;
  }
  if (r == 0 && feeder != NULL) {
    r = coro_await(feeder, NULL);
    if (r == 0) r = fin.err;
  }
  if (r == 0) r = coro_process_wait(p, CORO_FOREVER, &code, &sig);
  if (scoped) r = coro_timeout_exit(&scope, r);

  if (r != 0) {
    /* Timed out, cancelled or failed: the helpers end, the child is killed
     * and reaped before the call returns. */
    coro_shield_begin();
    join(&feeder, 1);
    join(&errer, 1);
    if (!p->exited) {
      coro_process_kill(p, SIGKILL);
      coro_process_wait(p, CORO_FOREVER, NULL, NULL);
    }
    coro_shield_end();
    coro_process_free(p);
    free(fout.data);
    free(ferr.data);
    return r;
  }
  join(&feeder, 0);
  join(&errer, 0);
  coro_process_free(p);
  if (out != NULL) {
    *out = fout.data;
    if (out_len != NULL) *out_len = fout.len;
  }
  if (err != NULL) {
    *err = ferr.data;
    if (err_len != NULL) *err_len = ferr.len;
  }
  if (exit_status != NULL) *exit_status = sig != 0 ? -sig : code;
  return 0;
}
