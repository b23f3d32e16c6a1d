/* SPDX-License-Identifier: MIT */
/* Child processes: the cost of spawn + wait of /bin/true per child, one at
 * a time and 16 at once; and pipe throughput parent -> cat -> parent (a
 * writer task feeds cat's stdin while the main task reads its stdout), in
 * MB/s (10^6 bytes). The peers (bench/peers/process_go.go,
 * bench/peers/process_asyncio.py) do the same.
 * Usage: bench_process [N_CHILDREN [MBYTES]]
 * Prints "process: X us/child mode=one|concurrent16 n=N peer=libcoro" and
 * "process: X MB/s mode=pipe mbytes=M chunk=65536 peer=libcoro". */
#include <coro.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CHUNK 65536
#define CONCURRENT 16

static long n_children = 2000;
static long mbytes = 1000;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int spawn_true(void) {
  static char *argv[] = {"/bin/true", NULL};
  coro_process_opts o;
  memset(&o, 0, sizeof(o));
  o.argv = argv;
  o.stdin_mode = CORO_STDIO_NULL;
  coro_process *p;
  int r = coro_process_spawn(&p, &o);
  if (r != 0) return r;
  int code = -1;
  r = coro_process_wait(p, CORO_FOREVER, &code, NULL);
  coro_process_free(p);
  return r != 0 ? r : code;
}

static long next_child, failures;

static void *spawner(void *arg) {
  (void)arg;
  while (next_child < n_children) {
    next_child++;
    if (spawn_true() != 0) failures++;
  }
  return NULL;
}

static int spawn_bench(int width, double *secs) {
  next_child = 0;
  failures = 0;
  coro_future *f[CONCURRENT];
  double t0 = now_s();
  for (int i = 0; i < width; i++)
    if (coro_spawn(&f[i], spawner, NULL) != 0) return -1;
  for (int i = 0; i < width; i++) {
    coro_await(f[i], NULL);
    coro_future_release(f[i]);
  }
  *secs = now_s() - t0;
  return failures == 0 ? 0 : -1;
}

typedef struct feed {
  coro_stream *s;
  long long total;
  int err;
} feed;

static void *feeder(void *arg) {
  feed *fd = arg;
  static char buf[CHUNK];
  memset(buf, 'x', sizeof(buf));
  for (long long sent = 0; sent < fd->total; sent += CHUNK)
    if ((fd->err = coro_stream_write(fd->s, buf, CHUNK)) != 0) break;
  coro_stream_close(fd->s);
  return NULL;
}

static int pipe_bench(double *secs) {
  static char *argv[] = {"cat", NULL};
  coro_process_opts o;
  memset(&o, 0, sizeof(o));
  o.argv = argv;
  o.stdin_mode = CORO_STDIO_PIPE;
  o.stdout_mode = CORO_STDIO_PIPE;
  coro_process *p;
  int r = coro_process_spawn(&p, &o);
  if (r != 0) return r;
  feed fd = {coro_process_stdin(p), (long long)mbytes * 1000000 / CHUNK * CHUNK,
             0};
  coro_stream *out = coro_process_stdout(p);
  coro_stream_set_limit(out, 4 * CHUNK);
  static char buf[4 * CHUNK];
  double t0 = now_s();
  coro_future *f;
  coro_spawn(&f, feeder, &fd);
  long long got = 0;
  ssize_t n;
  while ((n = coro_stream_read(out, buf, sizeof(buf))) > 0) got += n;
  *secs = now_s() - t0;
  coro_await(f, NULL);
  coro_future_release(f);
  coro_process_wait(p, CORO_FOREVER, NULL, NULL);
  coro_process_free(p);
  if (n < 0 || fd.err != 0 || got != fd.total) {
    fprintf(stderr, "pipe: got %lld of %lld bytes (%s)\n", got, fd.total,
            coro_strerror(n < 0 ? (int)n : fd.err));
    return -1;
  }
  return 0;
}

static void *bench_main(void *arg) {
  (void)arg;
  double secs;
  if (spawn_bench(1, &secs) != 0) {
    fprintf(stderr, "spawn failed\n");
    return coro_fail(-EIO);
  }
  printf("process: %.1f us/child mode=one n=%ld peer=libcoro\n",
         secs * 1e6 / (double)n_children, n_children);
  if (spawn_bench(CONCURRENT, &secs) != 0) return coro_fail(-EIO);
  printf("process: %.1f us/child mode=concurrent%d n=%ld peer=libcoro\n",
         secs * 1e6 / (double)n_children, CONCURRENT, n_children);
  if (pipe_bench(&secs) != 0) return coro_fail(-EIO);
  printf("process: %.0f MB/s mode=pipe mbytes=%ld chunk=%d peer=libcoro\n",
         (double)(mbytes * 1000000 / CHUNK * CHUNK) / 1e6 / secs, mbytes,
         CHUNK);
  return NULL;
}

int main(int argc, char **argv) {
  if (argc > 1) n_children = atol(argv[1]);
  if (argc > 2) mbytes = atol(argv[2]);
  if (n_children <= 0 || mbytes <= 0) {
    fprintf(stderr, "usage: bench_process [N_CHILDREN [MBYTES]]\n");
    return 2;
  }
  fflush(stdout);
  return coro_run(bench_main, NULL, NULL) == 0 ? 0 : 1;
}
