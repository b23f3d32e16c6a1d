/* SPDX-License-Identifier: MIT */
/* Child processes: exit codes and signals, 8 MiB on stdout and stderr at
 * once (through coro_process_run and through the streams), a child that
 * closes its stdin early, a child killed from outside, a hanging child
 * killed on timeout, free of a running child and of one at the loop's end
 * (reaped, no zombie), 200 children at once, a missing program, a bad cwd,
 * env and cwd, descriptor hygiene, cancelling a wait, free waking a
 * waiter, given descriptors, bad input, and a process-pool job beside
 * spawned children. Every test ends with no child left (no_children). */
#include "helpers.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "coro-internal.h" /* CORO__TSAN */

#define MIB8 ((size_t)8 * 1024 * 1024)

/* No child of this process is left, not even a zombie. */
static void assert_no_children(void) {
  int st;
  pid_t r = waitpid(-1, &st, WNOHANG);
  if (r != -1 || errno != ECHILD)
    fail_msg("a child is left: waitpid(-1) gave %d (errno %d)", (int)r, errno);
}

static int spawn_argv(coro_process **p, char **argv) {
  coro_process_opts o;
  memset(&o, 0, sizeof(o));
  o.argv = argv;
  return coro_process_spawn(p, &o);
}

static int alive(int pid) { return kill(pid, 0) == 0; }

/* ---- exit codes and signals ---------------------------------------------- */

static void *exit_codes_main(void *arg) {
  (void)arg;
  coro_process *p = NULL;
  char *a1[] = {"/bin/sh", "-c", "exit 3", NULL};
  CHECK_OK(spawn_argv(&p, a1));
  CHECK_GT(coro_process_pid(p), 0);
  int code = -1, sig = -1;
  CHECK_OK(coro_process_wait(p, CORO_FOREVER, &code, &sig));
  CHECK_EQ(code, 3);
  CHECK_EQ(sig, 0);
  code = sig = -1;
  CHECK_OK(coro_process_wait(p, 0, &code, &sig)); /* seen: at once */
  CHECK_EQ(code, 3);
  CHECK_EQ(sig, 0);
  CHECK_OK(coro_process_wait(p, 10, NULL, NULL));
  CHECK_ERR(coro_process_kill(p, SIGTERM), UV_ESRCH);
  coro_process_free(p);

  char *a2[] = {"true", NULL}; /* searched in PATH */
  CHECK_OK(spawn_argv(&p, a2));
  CHECK_OK(coro_process_wait(p, CORO_FOREVER, &code, &sig));
  CHECK_EQ(code, 0);
  CHECK_EQ(sig, 0);
  coro_process_free(p);

  /* Killed by a signal: the exit code is 0, the signal is reported. */
  char *a3[] = {"sleep", "30", NULL};
  CHECK_OK(spawn_argv(&p, a3));
  CHECK_ERR(coro_process_wait(p, 20, &code, &sig), -ETIMEDOUT);
  CHECK_OK(coro_process_kill(p, SIGTERM));
  CHECK_OK(coro_process_wait(p, CORO_FOREVER, &code, &sig));
  CHECK_EQ(code, 0);
  CHECK_EQ(sig, SIGTERM);
  coro_process_free(p);

  /* A child that kills itself. */
  char *a4[] = {"/bin/sh", "-c", "kill -USR2 $$", NULL};
  CHECK_OK(spawn_argv(&p, a4));
  CHECK_OK(coro_process_wait(p, CORO_FOREVER, &code, &sig));
  CHECK_EQ(sig, SIGUSR2);
  coro_process_free(p);
  return NULL;
}

static void test_exit_codes(void **state) {
  (void)state;
  assert_run_ok(exit_codes_main);
  assert_no_children();
}

static void *killed_outside_main(void *arg) {
  (void)arg;
  coro_process *p = NULL;
  char *a[] = {"sleep", "30", NULL};
  CHECK_OK(spawn_argv(&p, a));
  int pid = coro_process_pid(p);
  CHECK_OK(kill(pid, SIGKILL)); /* from outside libcoro */
  int code = -1, sig = -1;
  CHECK_OK(coro_process_wait(p, CORO_FOREVER, &code, &sig));
  CHECK_EQ(sig, SIGKILL);
  CHECK_ERR(coro_process_kill(p, SIGKILL), UV_ESRCH);
  CHECK(!alive(pid));
  coro_process_free(p);
  return NULL;
}

static void test_killed_from_outside(void **state) {
  (void)state;
  assert_run_ok(killed_outside_main);
  assert_no_children();
}

/* ---- coro_process_run ---------------------------------------------------- */

static int all_bytes(const char *d, size_t n, char c) {
  for (size_t i = 0; i < n; i++)
    if (d[i] != c) return 0;
  return 1;
}

static void *run_basic_main(void *arg) {
  (void)arg;
  void *out = NULL, *err = NULL;
  size_t olen = 99, elen = 99;
  int code = -1;
  char *cat[] = {"cat", NULL};
  CHECK_OK(coro_process_run(cat, "hello", 5, &out, &olen, &err, &elen, &code,
                            CORO_FOREVER));
  CHECK_EQ(olen, 5);
  CHECK(out != NULL && memcmp(out, "hello", 5) == 0);
  CHECK_EQ(elen, 0);
  CHECK(err != NULL && ((char *)err)[0] == '\0');
  CHECK_EQ(code, 0);
  free(out);
  free(err);

  /* in == NULL: /dev/null, so cat ends at once. */
  CHECK_OK(coro_process_run(cat, NULL, 0, &out, &olen, NULL, NULL, &code,
                            5000));
  CHECK_EQ(olen, 0);
  free(out);

  char *sh[] = {"/bin/sh", "-c", "echo out; echo err >&2; exit 4", NULL};
  CHECK_OK(coro_process_run(sh, NULL, 0, &out, &olen, &err, &elen, &code,
                            CORO_FOREVER));
  CHECK_EQ(code, 4);
  CHECK_STREQ(out, "out\n");
  CHECK_STREQ(err, "err\n");
  CHECK_EQ(olen, 4);
  CHECK_EQ(elen, 4);
  free(out);
  free(err);

  /* Discarded outputs; a signal gives -signum. */
  char *k[] = {"/bin/sh", "-c", "echo lost; kill -TERM $$", NULL};
  CHECK_OK(coro_process_run(k, NULL, 0, NULL, NULL, NULL, NULL, &code,
                            CORO_FOREVER));
  CHECK_EQ(code, -SIGTERM);

  /* Input the child never reads is not an error, nor a SIGPIPE. */
  size_t big = (size_t)1 << 20;
  char *in = malloc(big);
  CHECK(in != NULL);
  memset(in, 'i', big);
  char *tr[] = {"true", NULL};
  CHECK_OK(coro_process_run(tr, in, big, NULL, NULL, NULL, NULL, &code,
                            CORO_FOREVER));
  CHECK_EQ(code, 0);
  /* A child that reads one byte, then closes its stdin. */
  char *h1[] = {"/bin/sh", "-c", "head -c 1 >/dev/null; exec <&-; sleep 0.1",
                NULL};
  CHECK_OK(coro_process_run(h1, in, big, NULL, NULL, NULL, NULL, &code,
                            CORO_FOREVER));
  CHECK_EQ(code, 0);
  free(in);
  return NULL;
}

static void test_run_basic(void **state) {
  (void)state;
  assert_run_ok(run_basic_main);
  assert_no_children();
}

/* 8 MiB on stderr first, then 8 MiB on stdout: a parent that read stdout
 * to its end before stderr would deadlock. */
static char *big_both[] = {
    "/bin/sh", "-c",
    "tr '\\000' e </dev/zero | head -c 8388608 >&2;"
    "tr '\\000' o </dev/zero | head -c 8388608",
    NULL};

static void *run_big_main(void *arg) {
  (void)arg;
  void *out = NULL, *err = NULL;
  size_t olen = 0, elen = 0;
  int code = -1;
  CHECK_OK(coro_process_run(big_both, NULL, 0, &out, &olen, &err, &elen,
                            &code, CORO_FOREVER));
  CHECK_EQ(code, 0);
  CHECK_EQ(olen, MIB8);
  CHECK_EQ(elen, MIB8);
  CHECK(out != NULL && all_bytes(out, olen, 'o'));
  CHECK(err != NULL && all_bytes(err, elen, 'e'));
  free(out);
  free(err);

  /* 8 MiB through cat: fed and drained at the same time. */
  char *in = malloc(MIB8);
  CHECK(in != NULL);
  for (size_t i = 0; i < MIB8; i++) in[i] = (char)('a' + i % 26);
  char *cat[] = {"cat", NULL};
  CHECK_OK(coro_process_run(cat, in, MIB8, &out, &olen, NULL, NULL, &code,
                            CORO_FOREVER));
  CHECK_EQ(olen, MIB8);
  CHECK(out != NULL && memcmp(out, in, MIB8) == 0);
  free(out);
  free(in);
  return NULL;
}

static void test_run_big_output(void **state) {
  (void)state;
  assert_run_ok(run_big_main);
  assert_no_children();
}

typedef struct reader {
  coro_stream *s;
  size_t n;
  char c;
  int ok;
  int err;
} reader;

static void *reader_task(void *arg) {
  reader *r = arg;
  char buf[65536];
  r->ok = 1;
  for (;;) {
    ssize_t n = coro_stream_read(r->s, buf, sizeof(buf));
    if (n <= 0) {
      r->err = (int)n;
      break;
    }
    if (!all_bytes(buf, (size_t)n, r->c)) r->ok = 0;
    r->n += (size_t)n;
  }
  return NULL;
}

static void *streams_big_main(void *arg) {
  (void)arg;
  coro_process_opts o;
  memset(&o, 0, sizeof(o));
  o.argv = big_both;
  o.stdin_mode = CORO_STDIO_NULL;
  o.stdout_mode = CORO_STDIO_PIPE;
  o.stderr_mode = CORO_STDIO_PIPE;
  coro_process *p = NULL;
  CHECK_OK(coro_process_spawn(&p, &o));
  CHECK(coro_process_stdin(p) == NULL);
  CHECK(coro_process_stdout(p) != NULL);
  CHECK(coro_process_stderr(p) != NULL);
  reader ro = {coro_process_stdout(p), 0, 'o', 0, 1};
  reader re = {coro_process_stderr(p), 0, 'e', 0, 1};
  coro_future *f = coro_test_spawn(reader_task, &re);
  reader_task(&ro);
  CHECK_OK(coro_test_join(f));
  CHECK_EQ(ro.n, MIB8);
  CHECK_EQ(re.n, MIB8);
  CHECK(ro.ok && re.ok);
  CHECK_EQ(ro.err, 0);
  CHECK_EQ(re.err, 0);
  int code = -1;
  CHECK_OK(coro_process_wait(p, CORO_FOREVER, &code, NULL));
  CHECK_EQ(code, 0);
  coro_stream_close(coro_process_stdout(p)); /* closed by hand: fine */
  coro_process_free(p);
  return NULL;
}

static void test_streams_big_output(void **state) {
  (void)state;
  assert_run_ok(streams_big_main);
  assert_no_children();
}

static void *stdin_early_main(void *arg) {
  (void)arg;
  coro_process_opts o;
  memset(&o, 0, sizeof(o));
  char *a[] = {"true", NULL};
  o.argv = a;
  o.stdin_mode = CORO_STDIO_PIPE;
  coro_process *p = NULL;
  CHECK_OK(coro_process_spawn(&p, &o));
  CHECK_OK(coro_process_wait(p, CORO_FOREVER, NULL, NULL));
  /* The reading end is gone: EPIPE, and the process lives on. */
  static char buf[1 << 20];
  CHECK_ERR(coro_stream_write(coro_process_stdin(p), buf, sizeof(buf)),
            UV_EPIPE);
  coro_process_free(p);

  /* cat with both pipes: closing stdin is its end of file. */
  char *c[] = {"cat", NULL};
  o.argv = c;
  o.stdout_mode = CORO_STDIO_PIPE;
  CHECK_OK(coro_process_spawn(&p, &o));
  CHECK_OK(coro_stream_write(coro_process_stdin(p), "abc", 3));
  CHECK_OK(coro_stream_close(coro_process_stdin(p)));
  char got[8];
  CHECK_EQ(coro_stream_read_exactly(coro_process_stdout(p), got, 3), 3);
  CHECK(memcmp(got, "abc", 3) == 0);
  CHECK_EQ(coro_stream_read(coro_process_stdout(p), got, sizeof(got)), 0);
  int code = -1;
  CHECK_OK(coro_process_wait(p, CORO_FOREVER, &code, NULL));
  CHECK_EQ(code, 0);
  coro_process_free(p);
  return NULL;
}

static void test_stdin_closed_early(void **state) {
  (void)state;
  assert_run_ok(stdin_early_main);
  assert_no_children();
}

/* ---- timeouts, cancellation, free ------------------------------------------- */

static void *run_timeout_main(void *arg) {
  (void)arg;
  char *a[] = {"sleep", "30", NULL};
  void *out = (void *)1;
  size_t olen = 7;
  int code = 77;
  int64_t t0 = coro_test_now_ms();
  CHECK_ERR(coro_process_run(a, NULL, 0, &out, &olen, NULL, NULL, &code, 50),
            -ETIMEDOUT);
  CHECK_LT(coro_test_now_ms() - t0, 20000);
  CHECK(out == NULL);
  CHECK_EQ(olen, 0);
  CHECK_EQ(code, 77); /* untouched */
  /* Killed and reaped before the call returned. */
  int st;
  CHECK_EQ(waitpid(-1, &st, WNOHANG), -1);
  /* A child that writes forever and never exits, inside a timeout
   * scope of the caller's. */
  char *y[] = {"yes", NULL};
  coro_timeout t;
  CHECK_OK(coro_timeout_enter(&t, 50));
  int r = coro_process_run(y, "x", 1, &out, &olen, NULL, NULL, &code,
                           CORO_FOREVER);
  CHECK_ERR(r, -ECANCELED);
  CHECK_ERR(coro_timeout_exit(&t, r), -ETIMEDOUT);
  CHECK_EQ(waitpid(-1, &st, WNOHANG), -1);
  CHECK_ERR(coro_process_run(a, NULL, 0, NULL, NULL, NULL, NULL, NULL, 0),
            -ETIMEDOUT);
  return NULL;
}

static void test_run_timeout(void **state) {
  (void)state;
  assert_run_ok(run_timeout_main);
  assert_no_children();
}

typedef struct waitarg {
  coro_process *p;
  int64_t timeout;
  int result;
  int code, sig;
} waitarg;

static void *wait_task(void *arg) {
  waitarg *w = arg;
  w->result = coro_process_wait(w->p, w->timeout, &w->code, &w->sig);
  return NULL;
}

static void *cancel_wait_main(void *arg) {
  (void)arg;
  coro_process *p = NULL;
  char *a[] = {"sleep", "30", NULL};
  CHECK_OK(spawn_argv(&p, a));
  waitarg w = {p, CORO_FOREVER, 1, -1, -1};
  coro_future *f = coro_test_spawn(wait_task, &w);
  coro_test_yields(2);
  CHECK_OK(coro_cancel(f));
  CHECK_ERR(coro_test_join(f), 0);
  CHECK_ERR(w.result, -ECANCELED);
  CHECK(alive(coro_process_pid(p))); /* the child runs on */
  /* Inside a timeout scope. */
  coro_timeout t;
  CHECK_OK(coro_timeout_enter(&t, 20));
  int r = coro_process_wait(p, CORO_FOREVER, NULL, NULL);
  CHECK_ERR(r, -ECANCELED);
  CHECK_ERR(coro_timeout_exit(&t, r), -ETIMEDOUT);
  /* Two waiters both see the exit. */
  waitarg w1 = {p, CORO_FOREVER, 1, -1, -1}, w2 = {p, 5000, 1, -1, -1};
  coro_future *f1 = coro_test_spawn(wait_task, &w1);
  coro_future *f2 = coro_test_spawn(wait_task, &w2);
  coro_test_yields(2);
  CHECK_OK(coro_process_kill(p, SIGKILL));
  CHECK_OK(coro_test_join(f1));
  CHECK_OK(coro_test_join(f2));
  CHECK_OK(w1.result);
  CHECK_OK(w2.result);
  CHECK_EQ(w1.sig, SIGKILL);
  CHECK_EQ(w2.sig, SIGKILL);
  coro_process_free(p);
  return NULL;
}

static void test_cancel_wait(void **state) {
  (void)state;
  assert_run_ok(cancel_wait_main);
  assert_no_children();
}

static int free_pid;

static void *free_running_main(void *arg) {
  (void)arg;
  coro_process *p = NULL;
  char *a[] = {"sleep", "30", NULL};
  CHECK_OK(spawn_argv(&p, a));
  int pid = coro_process_pid(p);
  /* A waiter is woken with -EPIPE by the free. */
  waitarg w = {p, CORO_FOREVER, 1, -1, -1};
  coro_future *f = coro_test_spawn(wait_task, &w);
  coro_test_yields(2);
  coro_process_free(p);
  CHECK_OK(coro_test_join(f));
  CHECK_ERR(w.result, -EPIPE);
  /* Killed and reaped while the loop runs. */
  int64_t t0 = coro_test_now_ms();
  while (alive(pid) && coro_test_now_ms() - t0 < 5000) coro_sleep(5);
  CHECK(!alive(pid));
  int st;
  CHECK_EQ(waitpid(pid, &st, WNOHANG), -1);

  /* Freed, and the loop ends at once: coro_run reaps it. */
  CHECK_OK(spawn_argv(&p, a));
  free_pid = coro_process_pid(p);
  coro_process_free(p);
  return NULL;
}

static void *never_freed_main(void *arg) {
  (void)arg;
  coro_process_opts o;
  memset(&o, 0, sizeof(o));
  char *a[] = {"sleep", "30", NULL};
  o.argv = a;
  o.stdout_mode = CORO_STDIO_PIPE;
  o.stdin_mode = CORO_STDIO_PIPE;
  coro_process *p = NULL;
  CHECK_OK(coro_process_spawn(&p, &o));
  free_pid = coro_process_pid(p);
  return NULL; /* the program forgot it: the loop's end kills and frees it */
}

static void test_free_running(void **state) {
  (void)state;
  assert_run_ok(free_running_main);
  assert_false(alive(free_pid));
  assert_no_children();
  assert_run_ok(never_freed_main);
  assert_false(alive(free_pid));
  assert_no_children();
}

/* ---- many children --------------------------------------------------------- */

#define MANY 200

typedef struct many_arg {
  int i;
  int ok;
} many_arg;

static void *many_task(void *arg) {
  many_arg *m = arg;
  char num[16];
  snprintf(num, sizeof(num), "%d", m->i);
  char *a[] = {"echo", num, NULL};
  void *out = NULL;
  size_t olen = 0;
  int code = -1;
  int r = coro_process_run(a, NULL, 0, &out, &olen, NULL, NULL, &code,
                           CORO_FOREVER);
  CHECK_OK(r);
  char want[20];
  snprintf(want, sizeof(want), "%d\n", m->i);
  if (r == 0) CHECK_STREQ(out, want);
  CHECK_EQ(code, 0);
  m->ok = r == 0 && code == 0 && out != NULL && strcmp(out, want) == 0;
  free(out);
  return NULL;
}

static void *many_main(void *arg) {
  (void)arg;
  static many_arg m[MANY];
  coro_future *f[MANY];
  for (int i = 0; i < MANY; i++) {
    m[i].i = i;
    m[i].ok = 0;
    f[i] = coro_test_spawn(many_task, &m[i]);
  }
  int ok = 0;
  for (int i = 0; i < MANY; i++) {
    CHECK_OK(coro_test_join(f[i]));
    ok += m[i].ok;
  }
  CHECK_EQ(ok, MANY);
  return NULL;
}

static void test_200_children(void **state) {
  (void)state;
  assert_run_ok(many_main);
  assert_no_children();
}

/* ---- spawn errors, env, cwd ---------------------------------------------------- */

static void *spawn_errors_main(void *arg) {
  (void)arg;
  coro_process *p = (coro_process *)1;
  char *missing[] = {"no-such-program-libcoro", NULL};
  CHECK_ERR(spawn_argv(&p, missing), UV_ENOENT);
  CHECK(p == NULL);
  char *abs[] = {"/nonexistent/prog", NULL};
  CHECK_ERR(spawn_argv(&p, abs), UV_ENOENT);
  char *notexec[] = {"/tmp", NULL}; /* a directory */
  CHECK_ERR(spawn_argv(&p, notexec), UV_EACCES);
  CHECK_ERR(coro_process_run(missing, "x", 1, NULL, NULL, NULL, NULL, NULL,
                             CORO_FOREVER),
            UV_ENOENT);

  coro_process_opts o;
  memset(&o, 0, sizeof(o));
  char *pwd[] = {"pwd", NULL};
  o.argv = pwd;
  o.cwd = "/nonexistent-dir";
  CHECK_ERR(coro_process_spawn(&p, &o), UV_ENOENT);
  o.cwd = "/etc/hostname";
  CHECK_ERR(coro_process_spawn(&p, &o), UV_ENOTDIR);

  /* A good cwd, env, and file apart from argv[0]. */
  o.cwd = "/tmp";
  o.stdout_mode = CORO_STDIO_PIPE;
  CHECK_OK(coro_process_spawn(&p, &o));
  char buf[64];
  ssize_t n = coro_stream_read_line(coro_process_stdout(p), buf, sizeof(buf));
  CHECK_EQ(n, 5);
  CHECK(n == 5 && memcmp(buf, "/tmp\n", 5) == 0);
  CHECK_OK(coro_process_wait(p, CORO_FOREVER, NULL, NULL));
  coro_process_free(p);

  char *env[] = {"LIBCORO_X=forty-two", NULL};
  char *sh[] = {"my-name", "-c", "echo $LIBCORO_X $0; exec /usr/bin/env",
                NULL};
  memset(&o, 0, sizeof(o));
  o.file = "/bin/sh";
  o.argv = sh;
  o.env = env;
  o.stdout_mode = CORO_STDIO_PIPE;
  CHECK_OK(coro_process_spawn(&p, &o));
  n = coro_stream_read_line(coro_process_stdout(p), buf, sizeof(buf));
  CHECK(n > 0 && memcmp(buf, "forty-two my-name\n", (size_t)n) == 0);
  /* env prints the environment the shell was given (and what dash adds,
   * PWD): nothing of ours but LIBCORO_X. */
  int seen = 0;
  while ((n = coro_stream_read_line(coro_process_stdout(p), buf,
                                    sizeof(buf))) > 0) {
    if (n == 20 && memcmp(buf, "LIBCORO_X=forty-two\n", 20) == 0)
      seen++;
    else
      CHECK(n >= 4 && memcmp(buf, "PWD=", 4) == 0);
  }
  CHECK_EQ(seen, 1);
  CHECK_OK(coro_process_wait(p, CORO_FOREVER, NULL, NULL));
  coro_process_free(p);
  return NULL;
}

static void test_spawn_errors(void **state) {
  (void)state;
  assert_run_ok(spawn_errors_main);
  assert_no_children();
}

static void *bad_input_main(void *arg) {
  (void)arg;
  coro_process *p = NULL;
  coro_process_opts o;
  memset(&o, 0, sizeof(o));
  CHECK_ERR(coro_process_spawn(&p, NULL), -EINVAL);
  CHECK_ERR(coro_process_spawn(NULL, &o), -EINVAL);
  CHECK_ERR(coro_process_spawn(&p, &o), -EINVAL); /* argv NULL */
  char *empty[] = {NULL};
  o.argv = empty;
  CHECK_ERR(coro_process_spawn(&p, &o), -EINVAL);
  char *a[] = {"true", NULL};
  o.argv = a;
  o.stdout_mode = 42;
  CHECK_ERR(coro_process_spawn(&p, &o), -EINVAL);
  o.stdout_mode = CORO_STDIO_FD;
  o.stdout_fd = -1;
  CHECK_ERR(coro_process_spawn(&p, &o), -EINVAL);
  o.stdout_fd = 987; /* not open */
  CHECK_ERR(coro_process_spawn(&p, &o), UV_EBADF);
  CHECK(p == NULL);
  CHECK_ERR(coro_process_wait(NULL, CORO_FOREVER, NULL, NULL), -EINVAL);
  CHECK_ERR(coro_process_kill(NULL, SIGTERM), -EINVAL);
  CHECK_ERR(coro_process_pid(NULL), -EINVAL);
  CHECK(coro_process_stdin(NULL) == NULL);
  coro_process_free(NULL);
  CHECK_ERR(coro_process_run(NULL, NULL, 0, NULL, NULL, NULL, NULL, NULL,
                             CORO_FOREVER),
            -EINVAL);
  CHECK_ERR(coro_process_run(a, NULL, 3, NULL, NULL, NULL, NULL, NULL,
                             CORO_FOREVER),
            -EINVAL);
  CHECK_ERR(coro_process_run(a, NULL, 0, NULL, NULL, NULL, NULL, NULL, -2),
            -EINVAL);
  o.stdout_mode = CORO_STDIO_INHERIT;
  CHECK_OK(coro_process_spawn(&p, &o));
  CHECK_ERR(coro_process_wait(p, -2, NULL, NULL), -EINVAL);
  CHECK_ERR(coro_process_kill(p, -1), -EINVAL);
  CHECK_ERR(coro_process_kill(p, 1000), -EINVAL);
  CHECK_OK(coro_process_wait(p, CORO_FOREVER, NULL, NULL));
  coro_process_free(p);
  return NULL;
}

static void test_bad_input(void **state) {
  (void)state;
  assert_run_ok(bad_input_main);
  /* Outside a loop. */
  coro_process *p = NULL;
  coro_process_opts o;
  memset(&o, 0, sizeof(o));
  char *a[] = {"true", NULL};
  o.argv = a;
  assert_coro_err(coro_process_spawn(&p, &o), -EPERM);
  assert_coro_err(coro_process_run(a, NULL, 0, NULL, NULL, NULL, NULL, NULL,
                                   CORO_FOREVER),
                  -EPERM);
  assert_no_children();
}

/* ---- descriptors ----------------------------------------------------------------- */

static void *hygiene_main(void *arg) {
  (void)arg;
  /* Descriptors of the parent without close-on-exec. */
  int leaky = open("/dev/null", O_RDONLY);
  int pp[2];
  CHECK_OK(pipe(pp));
  CHECK(leaky >= 3);
  coro_process_opts o;
  memset(&o, 0, sizeof(o));
  char *ls[] = {"ls", "/proc/self/fd", NULL};
  o.argv = ls;
  o.stdin_mode = CORO_STDIO_PIPE;
  o.stdout_mode = CORO_STDIO_PIPE;
  o.stderr_mode = CORO_STDIO_PIPE;
  coro_process *p = NULL;
  CHECK_OK(coro_process_spawn(&p, &o));
  char buf[256];
  size_t len = 0;
  for (;;) {
    ssize_t n = coro_stream_read(coro_process_stdout(p), buf + len,
                                 sizeof(buf) - 1 - len);
    if (n <= 0) break;
    len += (size_t)n;
  }
  buf[len] = '\0';
  /* 0, 1, 2 and the directory ls reads. */
  CHECK_STREQ(buf, "0\n1\n2\n3\n");
  CHECK_OK(coro_process_wait(p, CORO_FOREVER, NULL, NULL));
  coro_process_free(p);
  /* The parent's descriptors are as they were. */
  CHECK_EQ(fcntl(leaky, F_GETFD), 0);
  CHECK_EQ(fcntl(pp[0], F_GETFD), 0);
  close(leaky);
  close(pp[0]);
  close(pp[1]);
  return NULL;
}

static void test_fd_hygiene(void **state) {
  (void)state;
  assert_run_ok(hygiene_main);
  assert_no_children();
}

static void *given_fd_main(void *arg) {
  (void)arg;
  int pp[2];
  CHECK_OK(pipe2(pp, O_CLOEXEC));
  coro_process_opts o;
  memset(&o, 0, sizeof(o));
  char *sh[] = {"/bin/sh", "-c", "echo to-fd; echo to-err >&2", NULL};
  o.argv = sh;
  o.stdout_mode = CORO_STDIO_FD;
  o.stdout_fd = pp[1];
  o.stderr_mode = CORO_STDIO_FD;
  o.stderr_fd = pp[1];
  coro_process *p = NULL;
  CHECK_OK(coro_process_spawn(&p, &o));
  CHECK(coro_process_stdout(p) == NULL);
  CHECK_OK(coro_process_wait(p, CORO_FOREVER, NULL, NULL));
  coro_process_free(p);
  CHECK_EQ(fcntl(pp[1], F_GETFD), FD_CLOEXEC); /* still the caller's */
  close(pp[1]);
  char buf[64];
  ssize_t n = read(pp[0], buf, sizeof(buf) - 1);
  CHECK_EQ(n, 13);
  if (n > 0) buf[n] = '\0';
  CHECK_STREQ(n > 0 ? buf : "", "to-fd\nto-err\n");
  close(pp[0]);
  return NULL;
}

static void test_given_fd(void **state) {
  (void)state;
  assert_run_ok(given_fd_main);
  assert_no_children();
}

/* ---- beside the process pool ----------------------------------------------- */

static int job_rev(const void *in, size_t n, void **out, size_t *out_len) {
  char *r = malloc(n > 0 ? n : 1);
  if (r == NULL) return -ENOMEM;
  for (size_t i = 0; i < n; i++) r[i] = ((const char *)in)[n - 1 - i];
  *out = r;
  *out_len = n;
  return 0;
}

static void *pool_beside_main(void *arg) {
  (void)arg;
  coro_pool *pool = NULL;
  CHECK_OK(coro_process_pool_new(&pool, 2));
  for (int round = 0; round < 20; round++) {
    coro_future *jobs[4];
    for (int j = 0; j < 4; j++)
      CHECK_OK(coro_run_in_process(&jobs[j], pool, job_rev, "abc", 3));
    coro_process *p[4];
    char *a[] = {"/bin/sh", "-c", "exit 7", NULL};
    for (int j = 0; j < 4; j++) CHECK_OK(spawn_argv(&p[j], a));
    for (int j = 0; j < 4; j++) {
      int code = -1, sig = -1;
      CHECK_OK(coro_process_wait(p[j], 10000, &code, &sig));
      CHECK_EQ(code, 7);
      CHECK_EQ(sig, 0);
      coro_process_free(p[j]);
      CHECK_OK(coro_await(jobs[j], NULL));
      const void *d = NULL;
      size_t n = 0;
      CHECK_OK(coro_future_bytes(jobs[j], &d, &n));
      CHECK(n == 3 && memcmp(d, "cba", 3) == 0);
      coro_future_release(jobs[j]);
    }
  }
  /* The pool still works after all those exits around it. */
  coro_future *job = NULL;
  CHECK_OK(coro_run_in_process(&job, pool, job_rev, "xy", 2));
  CHECK_OK(coro_await(job, NULL));
  coro_future_release(job);
  CHECK_OK(coro_pool_shutdown(pool, 1));
  coro_pool_free(pool);
  return NULL;
}

static void test_beside_process_pool(void **state) {
  (void)state;
  assert_run_ok(pool_beside_main);
  assert_no_children();
}

/* ---- the uv_spawn way --------------------------------------------------------- */

/* Where pidfds or posix_spawn's close_from are missing, children are
 * started with uv_spawn and reaped on SIGCHLD by libuv: the same tests
 * that way. */
extern _Thread_local int coro__process_use_uv_spawn;

static void test_uv_spawn_way(void **state) {
  (void)state;
#if defined(CORO__TSAN)
  /* ThreadSanitizer runs a signal handler late, at the thread's next
   * intercepted call; a SIGCHLD that lands just before epoll_wait blocks
   * is then never handled, and libuv's way waits for it forever (about one
   * run in ten here). Every other build runs this way. */
  fprintf(stderr, "skipped: the uv_spawn way needs SIGCHLD handled at once\n");
  skip();
#endif
  coro__process_use_uv_spawn = 1;
  assert_run_ok(exit_codes_main);
  assert_run_ok(killed_outside_main);
  assert_run_ok(run_basic_main);
  assert_run_ok(stdin_early_main);
  assert_run_ok(run_timeout_main);
  assert_run_ok(cancel_wait_main);
  assert_run_ok(free_running_main);
  assert_false(alive(free_pid));
  assert_run_ok(never_freed_main);
  assert_false(alive(free_pid));
  assert_run_ok(spawn_errors_main);
  assert_run_ok(hygiene_main);
  assert_run_ok(given_fd_main);
  assert_run_ok(pool_beside_main);
  coro__process_use_uv_spawn = 0;
  assert_no_children();
}

static void *empty_main(void *arg) { return arg; }

/* ---- SIGCHLD ignored ------------------------------------------------------ */

/* With SIGCHLD set to SIG_IGN the kernel reaps children itself and their
 * exit status is lost: spawn and wait must say so (-ECHILD), never report
 * a made-up exit code 0. (The uv_spawn way, taken where pidfds are
 * missing, as under Valgrind, installs libuv's own SIGCHLD handler and
 * sees the real status.) */
static int lost_or_real(int r, int code, int sig) {
  if (r == 0) return code == 3 && sig == 0;
  return r == -ECHILD;
}

static void *sigchld_ignored_main(void *arg) {
  (void)arg;
  struct sigaction ign, old;
  memset(&ign, 0, sizeof(ign));
  ign.sa_handler = SIG_IGN;
  sigemptyset(&ign.sa_mask);
  CHECK_EQ(sigaction(SIGCHLD, &ign, &old), 0);
  /* A child that waits for its stdin to close: it is surely watched. */
  coro_process_opts o;
  memset(&o, 0, sizeof(o));
  char *a1[] = {"/bin/sh", "-c", "read x; exit 3", NULL};
  o.argv = a1;
  o.stdin_mode = CORO_STDIO_PIPE;
  coro_process *p = NULL;
  CHECK_OK(coro_process_spawn(&p, &o));
  CHECK_OK(coro_stream_close(coro_process_stdin(p)));
  int code = -1, sig = -1;
  int r = coro_process_wait(p, CORO_FOREVER, &code, &sig);
  CHECK(lost_or_real(r, code, sig));
  CHECK_EQ(coro_process_wait(p, 0, &code, &sig), r); /* the same again */
  coro_process_free(p);
  /* Children that end at once may be gone before spawn watches them. */
  char *a2[] = {"/bin/sh", "-c", "exit 3", NULL};
  for (int i = 0; i < 20; i++) {
    r = spawn_argv(&p, a2);
    if (r == 0) {
      code = sig = -1;
      r = coro_process_wait(p, CORO_FOREVER, &code, &sig);
      CHECK(lost_or_real(r, code, sig));
      coro_process_free(p);
    } else {
      CHECK_ERR(r, -ECHILD);
      CHECK(p == NULL);
    }
  }
  CHECK_EQ(sigaction(SIGCHLD, &old, NULL), 0);
  return NULL;
}

static void test_sigchld_ignored(void **state) {
  (void)state;
  assert_run_ok(sigchld_ignored_main);
}

int main(int argc, char **argv) {
  /* libuv opens descriptors of its own once per process, with the first
   * loop (and the first child: its SIGCHLD pipe): open them before the
   * first test counts descriptors. */
  coro_run(empty_main, NULL, NULL);
  const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, coro_test_setup_os, coro_test_teardown_os)
      T(test_exit_codes),
      T(test_killed_from_outside),
      T(test_run_basic),
      T(test_run_big_output),
      T(test_streams_big_output),
      T(test_stdin_closed_early),
      T(test_run_timeout),
      T(test_cancel_wait),
      T(test_free_running),
      T(test_200_children),
      T(test_spawn_errors),
      T(test_bad_input),
      T(test_fd_hygiene),
      T(test_given_fd),
      T(test_beside_process_pool),
      T(test_uv_spawn_way),
      T(test_sigchld_ignored),
#undef T
  };
  return coro_test_main(argc, argv, tests, NULL, NULL);
}
