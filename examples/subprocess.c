/* SPDX-License-Identifier: MIT */
/* subprocess: child processes, as in asyncio's create_subprocess_exec
 * examples.
 *
 * 1. Several commands at once, each in its own task with coro_process_run,
 *    their outputs collected and printed in a fixed order.
 * 2. A pipeline through pipes, with a libcoro task in the middle:
 *
 *      seq 1 100000 --> [task: keep multiples of 7, square them] --> sort -rn
 *
 *    The task reads seq's stdout line by line and writes to sort's stdin
 *    while another task reads sort's stdout, so no pipe can fill up and
 *    block the others; closing sort's stdin is its end of input.
 * 3. A command that hangs (sleep 60), killed when its time limit passes.
 *
 * Usage: subprocess */
#include <coro.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- 1. several commands at once --------------------------------------- */

typedef struct command {
  char *argv[4];
  char *out;      /* its stdout (malloc'd) */
  size_t len;
  int exit_status;
  int err;        /* coro_process_run's status */
} command;

static void *run_command(void *arg) {
  command *c = arg;
  void *out = NULL;
  c->err = coro_process_run(c->argv, NULL, 0, &out, &c->len, NULL, NULL,
                            &c->exit_status, 10000);
  c->out = out;
  return NULL;
}

static int several_commands(void) {
  command cmds[] = {
      {{"echo", "hello from echo", NULL}, NULL, 0, 0, 0},
      {{"uname", "-s", NULL}, NULL, 0, 0, 0},
      {{"date", "+%Y", NULL}, NULL, 0, 0, 0},
      {{"sh", "-c", "ls / | wc -l", NULL}, NULL, 0, 0, 0},
  };
  enum { N = sizeof(cmds) / sizeof(cmds[0]) };
  coro_future *f[N];
  for (int i = 0; i < N; i++)
    if (coro_spawn(&f[i], run_command, &cmds[i]) != 0) return -1;
  int ok = 0;
  for (int i = 0; i < N; i++) {
    coro_await(f[i], NULL);
    coro_future_release(f[i]);
    command *c = &cmds[i];
    if (c->err != 0) {
      printf("%s: %s\n", c->argv[0], coro_strerror(c->err));
      continue;
    }
    /* Print the first line of the output. */
    size_t n = strcspn(c->out, "\n");
    printf("%-5s exit %d: %.*s\n", c->argv[0], c->exit_status, (int)n, c->out);
    ok += c->exit_status == 0;
    free(c->out);
  }
  return ok;
}

/* ---- 2. a pipeline ------------------------------------------------------------ */

typedef struct sink {
  coro_stream *s;
  long lines;
  char first[3][32]; /* the first three lines */
} sink;

static void *read_sorted(void *arg) {
  sink *k = arg;
  char line[64];
  ssize_t n;
  while ((n = coro_stream_read_line(k->s, line, sizeof(line))) > 0) {
    if (k->lines < 3)
      snprintf(k->first[k->lines], sizeof(k->first[0]), "%.*s",
               (int)(n - 1), line);
    k->lines++;
  }
  return NULL;
}

static int spawn(coro_process **p, char **argv, int in, int out) {
  coro_process_opts o;
  memset(&o, 0, sizeof(o));
  o.argv = argv;
  o.stdin_mode = in;
  o.stdout_mode = out;
  return coro_process_spawn(p, &o);
}

static long pipeline(void) {
  char *seq_argv[] = {"seq", "1", "100000", NULL};
  char *sort_argv[] = {"sort", "-rn", NULL};
  coro_process *seq = NULL, *sort = NULL;
  if (spawn(&seq, seq_argv, CORO_STDIO_NULL, CORO_STDIO_PIPE) != 0) return -1;
  if (spawn(&sort, sort_argv, CORO_STDIO_PIPE, CORO_STDIO_PIPE) != 0) {
    coro_process_free(seq);
    return -1;
  }
  sink k = {coro_process_stdout(sort), 0, {"", "", ""}};
  coro_future *reader = NULL;
  coro_spawn(&reader, read_sorted, &k);

  /* The middle of the pipeline: this task. */
  coro_stream *from = coro_process_stdout(seq), *to = coro_process_stdin(sort);
  char line[64], sq[32];
  ssize_t n;
  long kept = 0;
  while ((n = coro_stream_read_line(from, line, sizeof(line))) > 0) {
    line[n - 1] = '\0';
    long long v = atoll(line);
    if (v % 7 != 0) continue;
    int len = snprintf(sq, sizeof(sq), "%lld\n", v * v);
    if (coro_stream_write(to, sq, (size_t)len) != 0) break;
    kept++;
  }
  coro_stream_close(to); /* sort's end of input: now it sorts and writes */

  coro_await(reader, NULL);
  coro_future_release(reader);
  int seq_status = -1, sort_status = -1;
  coro_process_wait(seq, CORO_FOREVER, &seq_status, NULL);
  coro_process_wait(sort, CORO_FOREVER, &sort_status, NULL);
  coro_process_free(seq);
  coro_process_free(sort);
  printf("pipeline: seq 1 100000 | multiples of 7 squared | sort -rn: %ld lines "
         "(sent %ld), largest %s %s %s; exit %d %d\n",
         k.lines, kept, k.first[0], k.first[1], k.first[2], seq_status,
         sort_status);
  return seq_status == 0 && sort_status == 0 && k.lines == kept ? k.lines : -1;
}

/* ---- 3. a command that hangs -------------------------------------------------- */

static int hang(void) {
  char *argv[] = {"sleep", "60", NULL};
  int r = coro_process_run(argv, NULL, 0, NULL, NULL, NULL, NULL, NULL, 200);
  printf("sleep 60 with a 200 ms limit: %s, killed and reaped\n",
         coro_err_name(r));
  return r == -ETIMEDOUT;
}

static void *main_task(void *arg) {
  (void)arg;
  int commands = several_commands();
  long lines = pipeline();
  int killed = hang();
  printf("done: %d commands ok, pipeline %ld lines, %d hanging child killed\n",
         commands, lines, killed);
  return NULL;
}

int main(void) { return coro_run(main_task, NULL, NULL) == 0 ? 0 : 1; }
