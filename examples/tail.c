/* SPDX-License-Identifier: MIT */
/* tail -f with libcoro: follow a growing file and print what is appended
 * to it, until SIGINT or SIGTERM; then say what it did:
 *
 *   tail: 42 lines, 1234 bytes; stopped by SIGINT
 *
 * The file is read with coro_fs_read on libuv's thread pool; at its end
 * the follower sleeps (coro_sleep) and reads again, and notices a file
 * that was truncated (coro_fs_stat gives a size below what it has read)
 * and starts again from its beginning.
 *
 * Stopping: coro_config.sigint_cancels_main makes the first SIGINT cancel
 * the main task (a second one kills the program as usual); a task waits
 * for SIGTERM with coro_signal and cancels main the same way. Either way
 * the call main was waiting in returns -ECANCELED, main prints the
 * summary and returns, and the program exits 0.
 *
 *   tail FILE              follow FILE from its current end until a signal
 *   tail                   demo: a writer task appends DEMO_LINES lines to
 *   tail --demo-sigterm    a temporary file while the follower prints them;
 *                          after the last one the follower sends the
 *                          program SIGINT (or SIGTERM), and the summary
 *                          says "42 lines, 1008 bytes; stopped by SIGINT". */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <coro.h>

enum { DEMO_LINES = 42, CHUNK = 64 * 1024 };

typedef struct tail_state {
  const char *path;
  int64_t poll_ms;       /* how long to sleep at the end of the file */
  long demo_stop_after;  /* demo: send demo_signal after this many lines */
  int demo_signal;
  int demo_sent;
  const char *stopped_by; /* "SIGTERM" once the SIGTERM task cancelled main */
  coro_future *main;
  long lines, bytes;
  int last_was_newline;
} tail_state;

/* Print a chunk as it came, counting its lines. */
static void emit(tail_state *st, const char *p, size_t n) {
  fwrite(p, 1, n, stdout);
  fflush(stdout);
  for (size_t i = 0; i < n; i++)
    if (p[i] == '\n') st->lines++;
  st->bytes += (long)n;
  st->last_was_newline = p[n - 1] == '\n';
}

/* Follow st->path from offset until an error or a cancellation (which is
 * how a signal stops it): returns that status. */
static int follow(tail_state *st, int fd, int64_t offset) {
  static char buf[CHUNK];
  for (;;) {
    ssize_t n = coro_fs_read(fd, buf, sizeof(buf), offset);
    if (n < 0) return (int)n;
    if (n > 0) {
      emit(st, buf, (size_t)n);
      offset += n;
      if (st->demo_stop_after > 0 && !st->demo_sent &&
          st->lines >= st->demo_stop_after) {
        st->demo_sent = 1;
        kill(getpid(), st->demo_signal);
      }
      continue;
    }
    /* At the end: wait, and start over if the file got shorter. */
    int r = coro_sleep(st->poll_ms);
    if (r != 0) return r;
    struct stat sb;
    r = coro_fs_stat(st->path, &sb);
    if (r != 0) return r;
    if (sb.st_size < offset) {
      fprintf(stderr, "tail: %s: file truncated\n", st->path);
      offset = 0;
    }
  }
}

/* Wait for SIGTERM, then cancel main. */
static void *sigterm_task(void *arg) {
  tail_state *st = arg;
  coro_signal *s = NULL;
  int r = coro_signal_new(&s, SIGTERM);
  if (r != 0) {
    fprintf(stderr, "tail: cannot watch SIGTERM: %s\n", coro_strerror(r));
    return NULL;
  }
  r = coro_signal_wait(s, CORO_FOREVER);
  coro_signal_free(s);
  if (r > 0) {
    st->stopped_by = "SIGTERM";
    coro_cancel(st->main);
  }
  return NULL;
}

/* ---- the demo's writer ---------------------------------------------------------- */

static void *writer_task(void *arg) {
  tail_state *st = arg;
  int fd;
  int r = coro_fs_open(&fd, st->path, O_WRONLY | O_APPEND, 0);
  if (r != 0) return coro_fail(r);
  for (int i = 1; i <= DEMO_LINES && r == 0; i++) {
    char line[64];
    int n = snprintf(line, sizeof(line), "line %2d of %d: appended\n", i,
                     DEMO_LINES);
    ssize_t w = coro_fs_write(fd, line, (size_t)n, -1);
    if (w < 0) r = (int)w;
    else if (i % 5 == 0) r = coro_sleep(3); /* in bursts */
  }
  int c = coro_fs_close(fd);
  if (r == 0) r = c;
  return r != 0 ? coro_fail(r) : NULL;
}

/* ---- main ----------------------------------------------------------------------- */

static void *tail_main(void *arg) {
  tail_state *st = arg;
  st->main = coro_current();
  coro_future *term = NULL;
  int r = coro_spawn(&term, sigterm_task, st);
  if (r != 0) return coro_fail(r);
  coro_future *writer = NULL;
  int fd = -1;
  r = coro_fs_open(&fd, st->path, O_RDONLY, 0);
  int64_t start = 0;
  if (r == 0 && st->demo_stop_after == 0) {
    struct stat sb; /* a real file: only what is appended from now on */
    r = coro_fs_stat(st->path, &sb);
    start = sb.st_size;
  }
  if (r == 0 && st->demo_stop_after > 0)
    r = coro_spawn(&writer, writer_task, st);
  if (r == 0) r = follow(st, fd, start);
  if (r == -ECANCELED) {
    coro_uncancel(st->main); /* handled: stop cleanly */
    if (st->stopped_by == NULL) st->stopped_by = "SIGINT";
  }
  if (fd >= 0) coro_fs_close(fd);
  coro_cancel(term);
  coro_await(term, NULL);
  coro_future_release(term);
  if (writer != NULL) {
    int w = coro_await(writer, NULL);
    coro_future_release(writer);
    if (w != 0 && r == -ECANCELED) r = w;
  }
  if (st->bytes > 0 && !st->last_was_newline) putchar('\n');
  if (r == -ECANCELED) {
    printf("tail: %ld lines, %ld bytes; stopped by %s\n", st->lines,
           st->bytes, st->stopped_by);
    return NULL;
  }
  fprintf(stderr, "tail: %s: %s\n", st->path, coro_strerror(r));
  printf("tail: %ld lines, %ld bytes; failed\n", st->lines, st->bytes);
  return coro_fail(r);
}

int main(int argc, char **argv) {
  tail_state st;
  memset(&st, 0, sizeof(st));
  st.poll_ms = 100;
  char dir[] = "/tmp/coro-tail-XXXXXX";
  char path[64];
  int demo = argc < 2 || strcmp(argv[1], "--demo-sigterm") == 0;
  if (argc > 2 || (argc == 2 && argv[1][0] == '-' && !demo)) {
    fprintf(stderr, "usage: tail [FILE | --demo-sigterm]\n");
    return 2;
  }
  if (demo) {
    if (mkdtemp(dir) == NULL) {
      perror("tail: mkdtemp");
      return 1;
    }
    snprintf(path, sizeof(path), "%s/log", dir);
    FILE *f = fopen(path, "w");
    if (f == NULL) {
      perror("tail: create");
      rmdir(dir);
      return 1;
    }
    fclose(f);
    st.path = path;
    st.poll_ms = 5;
    st.demo_stop_after = DEMO_LINES;
    st.demo_signal = argc < 2 ? SIGINT : SIGTERM;
    /* The demo signals itself: a SIGINT its parent told it to ignore (a
     * background job of a shell) would never arrive, so take the default
     * back, which sigint_cancels_main needs. */
    if (st.demo_signal == SIGINT) signal(SIGINT, SIG_DFL);
  } else {
    st.path = argv[1];
  }
  coro_config cfg;
  memset(&cfg, 0, sizeof(cfg));
  cfg.sigint_cancels_main = 1;
  int r = coro_run_config(&cfg, tail_main, &st, NULL);
  if (demo) {
    unlink(path);
    rmdir(dir);
  }
  return r == 0 ? 0 : 1;
}
